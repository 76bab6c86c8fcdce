//! `aiops credential …`, `aiops provider …` and `aiops model …`: the language models
//! teams may name, the providers that serve them and the providers' API keys.

use std::process::ExitCode;
use std::sync::Arc;

use aiops_engine::llm::breaker::Breakers;
use aiops_engine::llm::client::{CallLimits, LlmClient};
use aiops_engine::model::ProviderKind;
use aiops_engine::{Caller, NewModel, NewProvider};
use clap::Subcommand;

use crate::cli::DbArgs;
use crate::sources::{KeyArgs, engine_with_keys, read_secret};

/// Where `aiops credential add` reads the API key from (else stdin).
const SECRET_ENV: &str = "AIOPS_CREDENTIAL_SECRET";

#[derive(Subcommand, Debug)]
pub enum CredentialCommand {
    /// Add a provider's API key. It is read from AIOPS_CREDENTIAL_SECRET or, if
    /// unset, from stdin (never from the command line, which `ps` shows), and stored
    /// encrypted.
    Add {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// Unique name: letters, digits, '-', '_' or '.'.
        name: String,
    },
    /// List credentials (the key only as a hint).
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Remove a credential (refused while a provider uses it).
    Remove {
        #[command(flatten)]
        db: DbArgs,
        /// The credential to remove.
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ProviderCommand {
    /// Add a provider: where models are called and with which credential.
    Add {
        #[command(flatten)]
        db: DbArgs,
        /// Unique name: letters, digits, '-', '_' or '.'.
        name: String,
        /// openai (any OpenAI-compatible server), azure_openai or anthropic.
        #[arg(long, value_parser = parse_kind)]
        kind: ProviderKind,
        /// OpenAI-compatible: up to /v1 (https://api.openai.com/v1,
        /// http://127.0.0.1:11434/v1); Azure: the resource endpoint; Anthropic: the host.
        #[arg(long)]
        base_url: String,
        /// Azure only: the data-plane api-version (default: the v1 surface).
        #[arg(long)]
        api_version: Option<String>,
        /// The credential's name (none for servers without keys).
        #[arg(long)]
        credential: Option<String>,
    },
    /// List providers.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Remove a provider (refused while a model uses it).
    Remove {
        #[command(flatten)]
        db: DbArgs,
        /// The provider to remove.
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Add a model teams may name in `model:`.
    Add {
        #[command(flatten)]
        db: DbArgs,
        /// The name teams use (not `builtin:…`).
        name: String,
        /// The provider that serves it.
        #[arg(long)]
        provider: String,
        /// The model id sent to the provider (Azure: the deployment; default: NAME).
        #[arg(long)]
        upstream: Option<String>,
        /// The model cannot call tools.
        #[arg(long)]
        no_tools: bool,
        /// The model has no JSON output mode.
        #[arg(long)]
        no_json: bool,
        /// Ask for whole answers instead of streams.
        #[arg(long)]
        no_streaming: bool,
        /// Do not ask for usage in the stream (servers that refuse `stream_options`).
        #[arg(long)]
        no_stream_usage: bool,
        /// The context window in tokens.
        #[arg(long, default_value_t = aiops_engine::DEFAULT_CONTEXT_TOKENS)]
        context_tokens: i64,
        /// USD per million input tokens.
        #[arg(long, default_value_t = 0.0)]
        input_price: f64,
        /// USD per million output tokens.
        #[arg(long, default_value_t = 0.0)]
        output_price: f64,
    },
    /// List models.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Remove a model.
    Remove {
        #[command(flatten)]
        db: DbArgs,
        /// The model to remove.
        name: String,
    },
    /// Send the model one tiny request with its provider's key; exits 1 unless it
    /// answers.
    Test {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// The model to test.
        name: String,
    },
}

fn parse_kind(s: &str) -> Result<ProviderKind, String> {
    s.parse()
}

pub async fn credential_command(command: CredentialCommand) -> anyhow::Result<ExitCode> {
    match command {
        CredentialCommand::Add { db, key, name } => {
            let secret = read_secret(SECRET_ENV, "API key")?;
            let engine = engine_with_keys(&db, Some(key), "aiops credential add").await?;
            let c = engine
                .create_credential(Caller::Local, &name, secret)
                .await?;
            println!("credential \"{}\" added (id {})", c.name, c.id);
        }
        CredentialCommand::List { db } => {
            let engine = engine_with_keys(&db, None, "aiops credential list").await?;
            for c in engine.credentials(Caller::Local).await? {
                let line = serde_json::json!({
                    "id": c.id.to_string(),
                    "name": c.name,
                    "hint": c.hint,
                });
                println!("{line}");
            }
        }
        CredentialCommand::Remove { db, name } => {
            let engine = engine_with_keys(&db, None, "aiops credential remove").await?;
            engine.delete_credential(Caller::Local, &name).await?;
            println!("credential \"{name}\" removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn provider_command(command: ProviderCommand) -> anyhow::Result<ExitCode> {
    match command {
        ProviderCommand::Add {
            db,
            name,
            kind,
            base_url,
            api_version,
            credential,
        } => {
            let engine = engine_with_keys(&db, None, "aiops provider add").await?;
            let p = engine
                .create_provider(
                    Caller::Local,
                    NewProvider {
                        name,
                        kind,
                        base_url,
                        azure_api_version: api_version,
                        credential,
                    },
                )
                .await?;
            println!("provider \"{}\" added (id {})", p.name, p.id);
        }
        ProviderCommand::List { db } => {
            let engine = engine_with_keys(&db, None, "aiops provider list").await?;
            for p in engine.providers().await? {
                let line = serde_json::json!({
                    "id": p.id.to_string(),
                    "name": p.name,
                    "kind": p.kind.as_str(),
                    "base_url": p.base_url,
                    "azure_api_version": p.azure_api_version,
                    "credential": p.credential,
                });
                println!("{line}");
            }
        }
        ProviderCommand::Remove { db, name } => {
            let engine = engine_with_keys(&db, None, "aiops provider remove").await?;
            engine.delete_provider(Caller::Local, &name).await?;
            println!("provider \"{name}\" removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn model_command(command: ModelCommand) -> anyhow::Result<ExitCode> {
    match command {
        ModelCommand::Add {
            db,
            name,
            provider,
            upstream,
            no_tools,
            no_json,
            no_streaming,
            no_stream_usage,
            context_tokens,
            input_price,
            output_price,
        } => {
            let upstream = upstream.unwrap_or_else(|| name.clone());
            let new = NewModel {
                supports_tools: !no_tools,
                supports_json: !no_json,
                supports_streaming: !no_streaming,
                stream_usage: !no_stream_usage,
                context_tokens,
                input_price_per_mtok: input_price,
                output_price_per_mtok: output_price,
                ..NewModel::new(name, provider, upstream)
            };
            let engine = engine_with_keys(&db, None, "aiops model add").await?;
            let m = engine.create_model(Caller::Local, new).await?;
            println!("model \"{}\" added (id {})", m.name, m.id);
        }
        ModelCommand::List { db } => {
            let engine = engine_with_keys(&db, None, "aiops model list").await?;
            for m in engine.models().await? {
                let line = serde_json::json!({
                    "id": m.id.to_string(),
                    "name": m.name,
                    "provider": m.provider,
                    "upstream": m.upstream,
                    "supports_tools": m.supports_tools,
                    "supports_json": m.supports_json,
                    "supports_streaming": m.supports_streaming,
                    "stream_usage": m.stream_usage,
                    "context_tokens": m.context_tokens,
                    "input_price_per_mtok": m.input_price_per_mtok,
                    "output_price_per_mtok": m.output_price_per_mtok,
                });
                println!("{line}");
            }
        }
        ModelCommand::Remove { db, name } => {
            let engine = engine_with_keys(&db, None, "aiops model remove").await?;
            engine.delete_model(Caller::Local, &name).await?;
            println!("model \"{name}\" removed");
        }
        ModelCommand::Test { db, key, name } => {
            let engine = engine_with_keys(&db, Some(key), "aiops model test").await?;
            let conn = engine
                .model_connection(&name)
                .await?
                .ok_or_else(|| anyhow::anyhow!("model {name} not found"))?;
            let client = LlmClient::new(Arc::new(Breakers::default()), CallLimits::default());
            let result = aiops_engine::llm::probe::probe(&client, &conn).await;
            let line = serde_json::json!({
                "ok": result.ok,
                "latency_ms": result.latency.as_millis() as u64,
                "message": result.message,
            });
            println!("{line}");
            if !result.ok {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
