//! Command-line interface. Configuration comes from flags or their environment
//! variables, is read once here, and is passed down explicitly.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use aiops_engine::topology::{self, Catalog};
use aiops_engine::{Engine, EngineConfig, StartRun, Workflows, store};
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// Default store: an SQLite file under ./data, so `aiops serve` works on a bare machine.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./data/aiops.db";

#[derive(Parser, Debug)]
#[command(
    name = "aiops",
    version,
    about = "AIOps Agent Executor: durable AI-agent teams that investigate alerts"
)]
pub struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, env = "AIOPS_LOG_JSON", global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// API, worker and background jobs in one process.
    Serve {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        engine: EngineArgs,
        /// Address the HTTP API listens on.
        #[arg(long, env = "AIOPS_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
    },
    /// An extra worker process (scale out on Postgres).
    Worker {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Team topology commands.
    Team {
        #[command(subcommand)]
        command: TeamCommand,
    },
    /// Start a run and optionally follow its events until it ends.
    Run {
        #[command(flatten)]
        db: DbArgs,
        /// Workflow to run (built in: `script`).
        #[arg(long, default_value = "script")]
        workflow: String,
        /// Input document: inline JSON, or @path to a JSON file.
        #[arg(long)]
        input: String,
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Print the run's events as JSON lines until it ends.
        #[arg(long)]
        follow: bool,
    },
    /// Measure steps/s, run latency and event latency (see BENCHMARKS.md).
    Bench(crate::bench::BenchArgs),
}

#[derive(Subcommand, Debug)]
enum TeamCommand {
    /// Check a team file (YAML or JSON); prints every violation and exits non-zero if any.
    Validate {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Validate and store a team file as the team's next version (nothing is stored
    /// when it has violations).
    Apply {
        #[command(flatten)]
        db: DbArgs,
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
}

#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// `postgres://…` or `sqlite://path`.
    #[arg(long = "database-url", env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub url: String,
}

#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    #[arg(long, env = "AIOPS_MAX_CONCURRENT_RUNS", default_value_t = 64)]
    max_concurrent_runs: usize,
    #[arg(long, env = "AIOPS_LEASE_TTL_MS", default_value_t = 30_000)]
    lease_ttl_ms: u64,
    #[arg(long, env = "AIOPS_HEARTBEAT_MS", default_value_t = 10_000)]
    heartbeat_ms: u64,
    #[arg(long, env = "AIOPS_POLL_MS", default_value_t = 1_000)]
    poll_ms: u64,
    #[arg(long, env = "AIOPS_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    shutdown_grace_ms: u64,
    #[arg(long, env = "AIOPS_RETENTION_DAYS", default_value_t = 30)]
    retention_days: u64,
}

impl EngineArgs {
    fn config(&self) -> anyhow::Result<EngineConfig> {
        anyhow::ensure!(
            self.max_concurrent_runs > 0,
            "AIOPS_MAX_CONCURRENT_RUNS must be at least 1"
        );
        anyhow::ensure!(
            self.heartbeat_ms > 0 && self.heartbeat_ms * 2 <= self.lease_ttl_ms,
            "AIOPS_HEARTBEAT_MS ({}) must be positive and at most half of AIOPS_LEASE_TTL_MS ({})",
            self.heartbeat_ms,
            self.lease_ttl_ms
        );
        Ok(EngineConfig {
            max_concurrent_runs: self.max_concurrent_runs,
            lease_ttl: Duration::from_millis(self.lease_ttl_ms),
            heartbeat_interval: Duration::from_millis(self.heartbeat_ms),
            poll_interval: Duration::from_millis(self.poll_ms.max(10)),
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
            retention: Duration::from_secs(self.retention_days * 24 * 3600),
            ..EngineConfig::default()
        })
    }
}

pub fn init_tracing(cli: &Cli) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIOPS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Connects, migrates, and builds the engine.
pub async fn open_engine(url: &str, config: EngineConfig) -> anyhow::Result<Engine> {
    let db = store::connect(url)
        .await
        .with_context(|| format!("connecting to {}", redact(url)))?;
    store::migrate(&db).await.context("applying migrations")?;
    Ok(Engine::with_connection(db, config, Workflows::builtin()))
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        t.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested");
        t.cancel();
    });
    token
}

pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { db, engine, listen } => {
            let engine = open_engine(&db.url, engine.config()?).await?;
            let shutdown = shutdown_token();
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            tracing::info!(database = %redact(&db.url), %listen, "aiops serve starting");
            let jobs = [
                tokio::spawn(engine.clone().listen(shutdown.clone())),
                tokio::spawn(engine.clone().retention_loop(shutdown.clone())),
            ];
            let worker = tokio::spawn(engine.worker().run(shutdown.clone()));
            let s = shutdown.clone();
            aiops_api::serve(listener, engine, async move { s.cancelled().await }).await?;
            worker.await??;
            for job in jobs {
                let _ = job.await;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker { db, engine } => {
            let engine = open_engine(&db.url, engine.config()?).await?;
            let shutdown = shutdown_token();
            let listener = tokio::spawn(engine.clone().listen(shutdown.clone()));
            let worker = engine.worker();
            tracing::info!(database = %redact(&db.url), worker = %worker.id(), "aiops worker starting");
            worker.run(shutdown).await?;
            let _ = listener.await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { db } => {
            let conn = store::connect(&db.url)
                .await
                .with_context(|| format!("connecting to {}", redact(&db.url)))?;
            store::migrate(&conn).await.context("applying migrations")?;
            println!("migrations applied to {}", redact(&db.url));
            Ok(ExitCode::SUCCESS)
        }
        Command::Team {
            command: TeamCommand::Validate { file },
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            match topology::parse_and_validate(&text, &Catalog::builtin()) {
                Ok(spec) => {
                    println!(
                        "{}: team \"{}\" is valid ({} nodes)",
                        file.display(),
                        spec.name,
                        spec.nodes.len()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(violations) => {
                    for v in &violations {
                        println!("{}: {v}", file.display());
                    }
                    eprintln!("{} violation(s); nothing was stored", violations.len());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Team {
            command: TeamCommand::Apply { db, file },
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let engine = open_engine(&db.url, EngineConfig::default()).await?;
            match engine.apply_team(&text).await {
                Ok((team, changed)) => {
                    let what = if changed {
                        "stored as version"
                    } else {
                        "unchanged at version"
                    };
                    println!("team \"{}\" {what} {}", team.name, team.version);
                    Ok(ExitCode::SUCCESS)
                }
                Err(aiops_engine::Error::Violations(violations)) => {
                    for v in &violations {
                        println!("{}: {v}", file.display());
                    }
                    eprintln!("{} violation(s); nothing was stored", violations.len());
                    Ok(ExitCode::FAILURE)
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Run {
            db,
            workflow,
            input,
            idempotency_key,
            follow,
        } => {
            let text = match input.strip_prefix('@') {
                Some(path) => {
                    std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?
                }
                None => input,
            };
            let input: serde_json::Value =
                serde_json::from_str(&text).context("--input is not valid JSON")?;
            let engine = open_engine(&db.url, EngineConfig::default()).await?;
            let mut req = StartRun::new(workflow, input);
            req.idempotency_key = idempotency_key;
            let run = engine.start_run(req).await?;
            println!(
                "{}",
                serde_json::json!({ "run_id": run.id, "status": run.status })
            );
            if follow {
                let listener = CancellationToken::new();
                tokio::spawn(engine.clone().listen(listener.clone()));
                let mut events = Box::pin(engine.subscribe(run.id, 0));
                while let Some(event) = events.next().await {
                    println!("{}", serde_json::to_string(&event?)?);
                }
                listener.cancel();
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => crate::bench::run(args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_hides_the_password_only() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/aiops"),
            "postgres://app:***@db:5432/aiops"
        );
        assert_eq!(
            redact("sqlite://./data/aiops.db"),
            "sqlite://./data/aiops.db"
        );
        assert_eq!(redact("postgres://app@db/aiops"), "postgres://app@db/aiops");
    }
}
