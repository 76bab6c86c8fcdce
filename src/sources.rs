//! `aiops source …` (alert sources) and `aiops secrets …` (the master key).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use aiops_engine::secrets::{KeySource, Keyring, Secret};
use aiops_engine::{Caller, EngineOptions, NewAlertSource, SourceAuth};
use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};

use crate::cli::{DbArgs, data_dir};
use crate::open::{Access, Opened, open_engine};

/// Where the master key is found when the environment does not give it.
#[derive(Args, Debug, Clone)]
pub struct KeyArgs {
    /// Directory holding `master.key` when AIOPS_MASTER_KEY is unset (default: the
    /// directory of the SQLite file, or ./data).
    #[arg(long, env = "AIOPS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum SourceCommand {
    /// Add an alert source. A token or password is read from AIOPS_SOURCE_SECRET or,
    /// if unset, from stdin (never from the command line, which `ps` shows).
    Add {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// Unique name: letters, digits, '-', '_' or '.'.
        #[arg(long)]
        name: String,
        /// Base URL of the Prometheus HTTP API, e.g. http://prometheus:9090.
        #[arg(long)]
        prometheus_url: Option<String>,
        /// Base URL of the Alertmanager API, e.g. http://alertmanager:9093.
        #[arg(long)]
        alertmanager_url: Option<String>,
        /// How requests authenticate.
        #[arg(long, value_enum, default_value_t = AuthArg::None)]
        auth: AuthArg,
        /// The basic-auth user (with --auth basic).
        #[arg(long)]
        username: Option<String>,
        /// Request timeout in seconds.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
        timeout_secs: u64,
    },
    /// List alert sources (credentials only as a hint).
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Remove an alert source.
    Remove {
        #[command(flatten)]
        db: DbArgs,
        /// The source to remove.
        #[arg(long)]
        name: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AuthArg {
    None,
    Bearer,
    Basic,
}

#[derive(Subcommand, Debug)]
pub enum SecretsCommand {
    /// Re-encrypt every stored secret under the active key (AIOPS_MASTER_KEY), reading
    /// old values with the keys in AIOPS_OLD_MASTER_KEYS. Safe to repeat; retire an
    /// old key only once this reports nothing left to rotate.
    Rotate {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Check that every stored secret decrypts with the configured keys.
    Check {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        key: KeyArgs,
    },
}

/// The keyring for `url` from the environment or the data directory; generated
/// there only when `may_generate`. Logs where it came from (never the key).
pub fn load_keyring(
    url: &str,
    explicit_dir: Option<PathBuf>,
    may_generate: bool,
) -> anyhow::Result<Option<Arc<Keyring>>> {
    let dir = data_dir(explicit_dir, url);
    let Some((ring, source)) = Keyring::load(&dir, may_generate)? else {
        return Ok(None);
    };
    match source {
        KeySource::Environment => {}
        KeySource::File(path) => {
            tracing::info!(path = %path.display(), key_id = ring.active_id(), "master key read from file")
        }
        KeySource::Generated(path) => tracing::info!(
            path = %path.display(),
            key_id = ring.active_id(),
            "no master key configured: generated one into this file, readable only by this OS user; back it up, secrets stored in the database cannot be read without it"
        ),
    }
    Ok(Some(Arc::new(ring)))
}

/// The engine of a short administrative command, with the keyring when `key` is
/// given (commands that store or read secrets).
pub(crate) async fn engine_with_keys(
    db: &DbArgs,
    key: Option<KeyArgs>,
    holder: &'static str,
) -> anyhow::Result<Opened> {
    let keyring = match key {
        Some(k) => load_keyring(&db.url, k.data_dir, false)?,
        None => None,
    };
    let options = EngineOptions {
        keyring,
        ..EngineOptions::default()
    };
    open_engine(&db.url, options, Access::Shared(holder)).await
}

/// A secret from the environment variable `env`, else typed at the terminal (not
/// shown), else the first line of stdin; never from a flag, which `ps` shows. `what`
/// names it in the prompt and errors.
pub(crate) fn read_secret(env: &str, what: &str) -> anyhow::Result<Secret> {
    if let Ok(secret) = std::env::var(env) {
        return Ok(Secret::new(secret));
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let secret = rpassword::prompt_password(format!("{what}: "))
            .with_context(|| format!("reading the {what} from the terminal"))?;
        return Ok(Secret::new(secret));
    }
    let mut line = String::new();
    stdin
        .read_line(&mut line)
        .with_context(|| format!("reading the {what} from stdin"))?;
    let secret = line.trim_end_matches(['\r', '\n']).to_owned();
    anyhow::ensure!(
        !secret.is_empty(),
        "no {what} given: set {env} or write it on stdin"
    );
    Ok(Secret::new(secret))
}

/// The token or password of `aiops source add`.
fn read_source_secret() -> anyhow::Result<Secret> {
    read_secret("AIOPS_SOURCE_SECRET", "token or password")
}

pub async fn source_command(command: SourceCommand) -> anyhow::Result<ExitCode> {
    match command {
        SourceCommand::Add {
            db,
            key,
            name,
            prometheus_url,
            alertmanager_url,
            auth,
            username,
            timeout_secs,
        } => {
            let auth = match (auth, username) {
                (AuthArg::None, None) => SourceAuth::None,
                (AuthArg::Bearer, None) => SourceAuth::Bearer(read_source_secret()?),
                (AuthArg::Basic, Some(username)) => SourceAuth::Basic {
                    username,
                    password: read_source_secret()?,
                },
                (AuthArg::Basic, None) => anyhow::bail!("--auth basic needs --username"),
                (_, Some(_)) => anyhow::bail!("--username goes only with --auth basic"),
            };
            let engine = engine_with_keys(&db, Some(key), "aiops source add").await?;
            let source = engine
                .create_alert_source(
                    Caller::Local,
                    NewAlertSource {
                        name,
                        prometheus_url,
                        alertmanager_url,
                        auth,
                        timeout: Duration::from_secs(timeout_secs),
                    },
                )
                .await?;
            println!("alert source \"{}\" added (id {})", source.name, source.id);
        }
        SourceCommand::List { db } => {
            let engine = engine_with_keys(&db, None, "aiops source list").await?;
            for s in engine.alert_sources().await? {
                let line = serde_json::json!({
                    "id": s.id.to_string(),
                    "name": s.name,
                    "prometheus_url": s.prometheus_url,
                    "alertmanager_url": s.alertmanager_url,
                    "auth": s.auth_kind.as_str(),
                    "username": s.username,
                    "auth_hint": s.auth_hint,
                    "timeout_ms": s.timeout_ms,
                });
                println!("{line}");
            }
        }
        SourceCommand::Remove { db, name } => {
            let engine = engine_with_keys(&db, None, "aiops source remove").await?;
            engine.delete_alert_source(Caller::Local, &name).await?;
            println!("alert source \"{name}\" removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn secrets_command(command: SecretsCommand) -> anyhow::Result<ExitCode> {
    match command {
        SecretsCommand::Rotate { db, key } => {
            let engine = engine_with_keys(&db, Some(key), "aiops secrets rotate").await?;
            let report = engine.rotate_secrets(Caller::Local).await?;
            println!(
                "{} secret(s) re-encrypted, {} already under the active key",
                report.rotated, report.current
            );
        }
        SecretsCommand::Check { db, key } => {
            let engine = engine_with_keys(&db, Some(key), "aiops secrets check").await?;
            let n = engine.check_secrets().await?;
            println!("{n} stored secret(s) decrypt with the configured keys");
        }
    }
    Ok(ExitCode::SUCCESS)
}
