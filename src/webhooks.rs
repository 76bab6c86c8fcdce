//! `aiops webhook …`: the remediation webhooks the `webhook_action` tool posts to.

use std::process::ExitCode;

use aiops_engine::{Caller, NewWebhook};
use clap::Subcommand;

use crate::cli::DbArgs;
use crate::sources::{KeyArgs, engine_with_keys, read_secret};

/// Where `aiops webhook add` reads the signing secret from (else stdin).
const SECRET_ENV: &str = "AIOPS_WEBHOOK_SECRET";

#[derive(Subcommand, Debug)]
pub enum WebhookCommand {
    /// Add a webhook. Its signing secret (at least 16 characters) is read from
    /// AIOPS_WEBHOOK_SECRET or, if unset, from stdin (never from the command line,
    /// which `ps` shows).
    Add {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// Unique name: letters, digits, '-', '_' or '.'.
        name: String,
        /// The http(s) URL actions are posted to, e.g. https://remediate.internal/hook.
        // `url` is the database URL's id (`DbArgs`).
        #[arg(long = "url", id = "webhook_url", value_name = "URL")]
        url: String,
        /// Request timeout in milliseconds (default 10000).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=300_000))]
        timeout_ms: Option<u64>,
    },
    /// List webhooks (the secret only as a hint).
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Remove a webhook.
    Remove {
        #[command(flatten)]
        db: DbArgs,
        /// The webhook to remove.
        name: String,
    },
}

pub async fn webhook_command(command: WebhookCommand) -> anyhow::Result<ExitCode> {
    match command {
        WebhookCommand::Add {
            db,
            key,
            name,
            url,
            timeout_ms,
        } => {
            let secret = read_secret(SECRET_ENV, "signing secret")?;
            let engine = engine_with_keys(&db, Some(key), "aiops webhook add").await?;
            let hook = engine
                .create_webhook(
                    Caller::Local,
                    NewWebhook {
                        name,
                        url,
                        secret,
                        timeout_ms,
                    },
                )
                .await?;
            println!("webhook \"{}\" added (id {})", hook.name, hook.id);
        }
        WebhookCommand::List { db } => {
            let engine = engine_with_keys(&db, None, "aiops webhook list").await?;
            for w in engine.webhooks().await? {
                let line = serde_json::json!({
                    "id": w.id.to_string(),
                    "name": w.name,
                    "url": w.url,
                    "secret_hint": w.secret_hint,
                    "timeout_ms": w.timeout_ms,
                });
                println!("{line}");
            }
        }
        WebhookCommand::Remove { db, name } => {
            let engine = engine_with_keys(&db, None, "aiops webhook remove").await?;
            engine.delete_webhook(Caller::Local, &name).await?;
            println!("webhook \"{name}\" removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}
