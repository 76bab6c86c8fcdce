//! Command-line interface. Configuration comes from flags or their environment
//! variables, is read once here, and is passed down explicitly.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use aiops_engine::topology;
use aiops_engine::{
    ApiKeyId, Caller, Engine, EngineConfig, EngineOptions, Role, RunId, RunStatus, StartRun,
    Worker, Workflows, database, page,
};

use crate::open::{Access, Opened, open_engine, redact};
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
    about = "AIOps Agent Executor: durable AI-agent teams that investigate alerts",
    after_help = "Environment: AIOPS_LOG chooses which logs are written (e.g. `debug` or \
                  `info,aiops_engine=debug`; default `info`). Logs go to stderr, coloured \
                  only on a terminal; NO_COLOR turns colours off."
)]
pub struct Cli {
    /// A TOML file of settings: keys are the environment variables without `AIOPS_`,
    /// in lower case (`listen = "0.0.0.0:8080"`). The environment overrides the
    /// file, flags override both; unknown keys are errors.
    #[arg(long, env = "AIOPS_CONFIG", global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "AIOPS_LOG_JSON", global = true,
          value_parser = clap::builder::BoolishValueParser::new())]
    log_json: bool,
    #[command(flatten)]
    workflows: WorkflowArgs,
    /// Let new schedules have 6 cron fields, seconds first (for tests and demos; a
    /// schedule firing every second starts a run every second).
    #[arg(long, env = "AIOPS_SCHEDULE_ALLOW_SECONDS", global = true,
          value_parser = clap::builder::BoolishValueParser::new())]
    schedule_allow_seconds: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// API, worker and background jobs in one process.
    #[command(
        after_help = "On first start with no users, creates user \"admin\": its password is \
                      AIOPS_BOOTSTRAP_ADMIN_PASSWORD if set, else random and written to \
                      <data-dir>/initial-admin-password, readable only by this OS user. \
                      Secrets are encrypted with AIOPS_MASTER_KEY (32 bytes, base64 or hex); \
                      without it, <data-dir>/master.key is used, and on SQLite generated \
                      (0600) on first start. It refuses to start when stored secrets do not \
                      decrypt. GET /metrics (Prometheus) is open unless AIOPS_METRICS_TOKEN is \
                      set; then it needs `Authorization: Bearer <token>`."
    )]
    Serve {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        engine: EngineArgs,
        /// Address the HTTP API listens on.
        #[arg(long, env = "AIOPS_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        /// Where `initial-admin-password` is written on first start and where
        /// `master.key` is read (or, on SQLite, generated) when AIOPS_MASTER_KEY is
        /// unset (default: the directory of the SQLite file, or ./data).
        #[arg(long, env = "AIOPS_DATA_DIR")]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// An extra worker process (scale out on Postgres).
    Worker {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        key: crate::sources::KeyArgs,
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
    /// Start a run (a running `aiops serve` or `aiops worker` on the same database
    /// executes it) and optionally follow its events until it ends.
    Run {
        #[command(flatten)]
        db: DbArgs,
        /// Workflow to run (built in: `script`, when enabled); not with --team.
        #[arg(long, default_value = "script", conflicts_with = "team")]
        workflow: String,
        /// Input document: inline JSON, or @path to a JSON file (not with --team).
        #[arg(long, required_unless_present = "team", conflicts_with = "team")]
        input: Option<String>,
        /// Run a team's investigation instead of a workflow: the team's name.
        #[arg(long)]
        team: Option<String>,
        /// With --team: the team version to pin (default: its latest).
        #[arg(long, requires = "team", value_parser = clap::value_parser!(i32).range(1..))]
        team_version: Option<i32>,
        /// With --team: the alerts to investigate, a JSON file in the Alertmanager webhook
        /// shape (`{"alerts": [...]}`) or a list; default: the alert source's firing alerts.
        #[arg(long, requires = "team")]
        alerts: Option<PathBuf>,
        /// With --team: a free-text task for the team.
        #[arg(long, requires = "team")]
        task: Option<String>,
        /// Starting twice with the same key returns the first run instead of a new one.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Follow the run until it ends: a workflow's events as JSON lines, or a team's
        /// progress (nodes, tool calls, findings) and then its report; a last line gives
        /// the run (status, output or result, error) as JSON. The exit status is 0 only
        /// if it succeeded.
        #[arg(long)]
        follow: bool,
        /// With --follow: say so on stderr when no worker has claimed the run after
        /// this many seconds (nothing is executing runs on this database).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
        unclaimed_warning_secs: u64,
    },
    /// Print the GraphQL schema (SDL), as committed in schema.graphql.
    Schema,
    /// Measure steps/s, run latency and event latency (see BENCHMARKS.md).
    Bench(crate::bench::BenchArgs),
    /// Users of the API and console.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// API keys (`Authorization: Bearer …`).
    Apikey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Alert sources: named connections to a Prometheus and/or an Alertmanager.
    Source {
        #[command(subcommand)]
        command: crate::sources::SourceCommand,
    },
    /// Cron schedules that start team runs (ticked by `aiops serve`).
    Schedule {
        #[command(subcommand)]
        command: crate::schedules::ScheduleCommand,
    },
    /// Remediation webhooks: where the `webhook_action` tool posts approved actions,
    /// signed with a secret.
    Webhook {
        #[command(subcommand)]
        command: crate::webhooks::WebhookCommand,
    },
    /// Alertmanager receivers: bearer tokens that may post notifications to
    /// POST /api/alertmanager/webhook.
    Receiver {
        #[command(subcommand)]
        command: crate::receivers::ReceiverCommand,
    },
    /// API keys of language-model providers, stored encrypted.
    Credential {
        #[command(subcommand)]
        command: crate::providers::CredentialCommand,
    },
    /// Language-model providers: OpenAI-compatible servers, Azure OpenAI, Anthropic.
    Provider {
        #[command(subcommand)]
        command: crate::providers::ProviderCommand,
    },
    /// Language models teams may name in `model:`, each served by a provider.
    Model {
        #[command(subcommand)]
        command: crate::providers::ModelCommand,
    },
    /// Secrets at rest: check them, rotate them to a new master key.
    #[command(
        after_help = "Secrets are encrypted with AIOPS_MASTER_KEY (32 bytes: base64 or hex); \
                      AIOPS_OLD_MASTER_KEYS (comma-separated) still decrypts values of earlier \
                      keys. Without AIOPS_MASTER_KEY, <data-dir>/master.key is used."
    )]
    Secrets {
        #[command(subcommand)]
        command: crate::sources::SecretsCommand,
    },
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Create a user. The password (at least 12 characters) is read from
    /// AIOPS_USER_PASSWORD or, if that is unset, from the first line of stdin.
    Create {
        #[command(flatten)]
        db: DbArgs,
        /// 3 to 64 characters: a-z 0-9 _ . -
        #[arg(long)]
        username: String,
        /// viewer, operator or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// List users.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Disable a user: no logins, their API keys stop working at once, their open
    /// subscriptions end. The last enabled admin cannot be disabled.
    Disable {
        #[command(flatten)]
        db: DbArgs,
        /// The user to disable.
        #[arg(long)]
        username: String,
    },
    /// Enable a disabled user again.
    Enable {
        #[command(flatten)]
        db: DbArgs,
        /// The user to enable.
        #[arg(long)]
        username: String,
    },
}

#[derive(Subcommand, Debug)]
enum ApiKeyCommand {
    /// Create an API key for a user and print it (once: it is not stored).
    Create {
        #[command(flatten)]
        db: DbArgs,
        /// The user the key acts as.
        #[arg(long)]
        username: String,
        /// What the key is for, shown in listings.
        #[arg(long)]
        name: String,
        /// viewer, operator or admin; at most the user's role (default: the user's role).
        #[arg(long, value_parser = parse_role)]
        role: Option<Role>,
        /// Days until the key expires (default: never).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=36_500))]
        expires_days: Option<u32>,
    },
    /// List a user's API keys (prefixes only, never the keys).
    List {
        #[command(flatten)]
        db: DbArgs,
        /// Whose keys to list.
        #[arg(long)]
        username: String,
    },
    /// Revoke an API key; it stops working at once.
    Revoke {
        #[command(flatten)]
        db: DbArgs,
        /// The key's id (from `aiops apikey list`), not the key itself.
        #[arg(long)]
        id: ApiKeyId,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse_ignore_case(s)
        .map_err(|_| format!("unknown role {s:?}: expected viewer, operator or admin"))
}

#[derive(Subcommand, Debug)]
enum TeamCommand {
    /// Check a team file (YAML or JSON); prints every violation and exits non-zero if any.
    Validate {
        /// The team file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Also accept the models stored in this database (`aiops model list`);
        /// without it, only the built-in models `default` and `builtin:rules`.
        #[arg(long = "database-url", value_name = "URL")]
        database_url: Option<String>,
    },
    /// Validate and store a team file as the team's next version (nothing is stored
    /// when it has violations).
    Apply {
        #[command(flatten)]
        db: DbArgs,
        /// The team file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
}

/// Which workflows this process can start and execute.
#[derive(Args, Debug, Clone, Default)]
pub struct WorkflowArgs {
    /// Register the built-in `script` workflow, a tool for tests, demos and benchmarks
    /// (not for production servers).
    #[arg(long, env = "AIOPS_ENABLE_SCRIPT_WORKFLOW", global = true,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub enable_script_workflow: bool,
    /// Directory in which script runs may append to `record_to` files (nowhere else);
    /// without it, scripts that ask for `record_to` are refused.
    #[arg(long, env = "AIOPS_SCRIPT_RECORD_DIR", global = true)]
    pub script_record_dir: Option<PathBuf>,
}

impl WorkflowArgs {
    /// The registry of workflows, built once per process.
    pub fn registry(&self) -> Workflows {
        let mut workflows = aiops_engine::agents::register(Workflows::default());
        if self.enable_script_workflow {
            workflows = workflows.with(
                aiops_engine::script::NAME,
                aiops_engine::script::ScriptWorkflow::new(self.script_record_dir.clone()),
            );
        }
        workflows
    }
}

#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// `postgres://user:password@host:port/database` or `sqlite://path` (the file and
    /// its directory are created when missing; the directory's parent must exist).
    #[arg(long = "database-url", env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub url: String,
}

#[derive(Args, Debug, Clone)]
pub struct ApiArgs {
    /// Browser origins allowed to call the API (CORS), comma-separated; none by default.
    #[arg(long, env = "AIOPS_CORS_ORIGINS", value_delimiter = ',')]
    cors_origins: Vec<String>,
    /// Mutations one API key may make per minute (every root field counts, aliases too).
    #[arg(long, env = "AIOPS_MUTATIONS_PER_MINUTE", default_value_t = 600)]
    mutations_per_minute: u32,
    /// Login attempts per minute per username; each client address gets three times this.
    #[arg(long, env = "AIOPS_LOGIN_ATTEMPTS_PER_MINUTE", default_value_t = 10)]
    login_attempts_per_minute: u32,
    /// Open HTTP connections at most (and, separately, open WebSockets); more are refused.
    #[arg(long, env = "AIOPS_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// A client must send a request's headers within this time (also the idle limit
    /// of a keep-alive connection).
    #[arg(long, env = "AIOPS_HEADER_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..=600_000))]
    header_timeout_ms: u64,
}

impl ApiArgs {
    fn config(&self) -> aiops_api::ApiConfig {
        aiops_api::ApiConfig {
            cors_origins: self
                .cors_origins
                .iter()
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
            mutations_per_minute: self.mutations_per_minute,
            login_attempts_per_minute: self.login_attempts_per_minute,
            max_connections: self.max_connections,
            max_websockets: self.max_connections,
            header_read_timeout: Duration::from_millis(self.header_timeout_ms),
            // A secret: from the environment (or the config file), never a flag.
            metrics_token: std::env::var("AIOPS_METRICS_TOKEN")
                .ok()
                .filter(|t| !t.trim().is_empty())
                .map(aiops_engine::secrets::Secret::new),
            ..aiops_api::ApiConfig::default()
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// Runs this process executes at once; more wait in the queue.
    #[arg(long, env = "AIOPS_MAX_CONCURRENT_RUNS", default_value_t = 64)]
    max_concurrent_runs: usize,
    /// How long a worker's claim on a run lasts without a heartbeat; after it, another
    /// worker takes the run over (how long a crashed worker's runs stay stuck).
    #[arg(long, env = "AIOPS_LEASE_TTL_MS", default_value_t = 30_000)]
    lease_ttl_ms: u64,
    /// How often a worker renews its claims; at most half of the lease TTL.
    #[arg(long, env = "AIOPS_HEARTBEAT_MS", default_value_t = 10_000)]
    heartbeat_ms: u64,
    /// How often a worker looks for work when no notification arrives (new runs wake
    /// it at once on Postgres and within the process on SQLite).
    #[arg(long, env = "AIOPS_POLL_MS", default_value_t = 1_000)]
    poll_ms: u64,
    /// On shutdown, how long running steps may finish before their runs are released
    /// for another worker.
    #[arg(long, env = "AIOPS_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    shutdown_grace_ms: u64,
    /// Finished runs (with their steps and events) are deleted after this many days.
    #[arg(long, env = "AIOPS_RETENTION_DAYS", default_value_t = 30)]
    retention_days: u64,
    /// Prometheus of the default alert source, which teams naming no source query
    /// (unless a stored source is called "default").
    #[arg(long, env = "AIOPS_PROMETHEUS_URL")]
    prometheus_url: Option<String>,
    /// Alertmanager of the default alert source.
    #[arg(long, env = "AIOPS_ALERTMANAGER_URL")]
    alertmanager_url: Option<String>,
}

impl EngineArgs {
    fn default_source(&self) -> anyhow::Result<Option<aiops_engine::DefaultAlertSource>> {
        Ok(aiops_engine::DefaultAlertSource::new(
            self.prometheus_url.clone(),
            self.alertmanager_url.clone(),
        )?)
    }

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
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIOPS_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("info,{}", database::QUIET_DATABASE_LOGS))
    });
    // Colours only for a person at a terminal: not in files, pipes or journald.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if cli.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Where files of this installation go: `--data-dir`/`AIOPS_DATA_DIR`, else the
/// directory of the SQLite database, else ./data.
pub(crate) fn data_dir(explicit: Option<PathBuf>, database_url: &str) -> PathBuf {
    if let Some(dir) = explicit {
        return dir;
    }
    let sqlite_dir = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .and_then(|rest| rest.split('?').next())
        .filter(|path| !path.is_empty() && *path != ":memory:")
        .and_then(|path| Path::new(path).parent())
        .map(|dir| {
            if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir.to_owned()
            }
        });
    sqlite_dir.unwrap_or_else(|| PathBuf::from("./data"))
}

/// A new user's password: `AIOPS_USER_PASSWORD`, else typed at the terminal (not
/// shown, asked twice), else the first line of stdin. It never appears in the process
/// list or shell history.
fn read_new_password() -> anyhow::Result<String> {
    match std::env::var("AIOPS_USER_PASSWORD") {
        Ok(password) => return Ok(password),
        Err(std::env::VarError::NotUnicode(_)) => {
            anyhow::bail!("AIOPS_USER_PASSWORD is not valid UTF-8")
        }
        Err(std::env::VarError::NotPresent) => {}
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let password = rpassword::prompt_password("password (at least 12 characters): ")
            .context("reading the password from the terminal")?;
        let again = rpassword::prompt_password("the same password again: ")
            .context("reading the password from the terminal")?;
        anyhow::ensure!(
            password == again,
            "the two passwords differ; nothing was created"
        );
        anyhow::ensure!(!password.is_empty(), "no password given");
        return Ok(password);
    }
    let mut line = String::new();
    stdin
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    anyhow::ensure!(
        !password.is_empty(),
        "no password given: set AIOPS_USER_PASSWORD or write it on stdin"
    );
    Ok(password)
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
    // What every engine of this process is built from: made here, once.
    let schedule_seconds = cli.schedule_allow_seconds;
    let kit = EngineOptions {
        config: EngineConfig {
            schedule_seconds,
            ..EngineConfig::default()
        },
        workflows: cli.workflows.registry(),
        ..EngineOptions::default()
    };
    let with = |config: EngineConfig| EngineOptions {
        config: EngineConfig {
            schedule_seconds,
            ..config
        },
        ..kit.clone()
    };
    match cli.command {
        Command::Serve {
            db,
            engine,
            listen,
            data_dir: explicit_data_dir,
            api,
        } => {
            // Bound first: a port that is taken fails at once, before any migration.
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            let dir = data_dir(explicit_data_dir.clone(), &db.url);
            let config = engine.config()?;
            let default_source = engine.default_source()?;
            let open = |keyring| {
                open_engine(
                    &db.url,
                    EngineOptions {
                        keyring,
                        default_source: default_source.clone(),
                        ..with(config.clone())
                    },
                    Access::Exclusive("aiops serve"),
                )
            };
            let keyring = crate::sources::load_keyring(&db.url, explicit_data_dir.clone(), false)?;
            let mut opened = open(keyring.clone()).await?;
            // Only a single-process server (SQLite) may make its own key, and only for a
            // database without secrets (a new key cannot read old ones); replicas on
            // Postgres must share one from the environment or a file.
            if keyring.is_none()
                && !db.url.starts_with("postgres")
                && opened.check_secrets().await.is_ok_and(|n| n == 0)
            {
                drop(opened);
                let keyring = crate::sources::load_keyring(&db.url, explicit_data_dir, true)?;
                opened = open(keyring).await?;
            }
            let engine = opened.engine.clone();
            engine
                .check_secrets()
                .await
                .context("checking the stored secrets")?;
            let password = std::env::var("AIOPS_BOOTSTRAP_ADMIN_PASSWORD").ok();
            match engine
                .bootstrap_admin(&dir, password.as_deref())
                .await
                .context("creating the first admin user")?
            {
                Some(aiops_engine::auth::Bootstrapped::PasswordFile(path)) => tracing::info!(
                    path = %path.display(),
                    "no users yet: created user \"admin\" (ADMIN); its password is in this file, readable only by this OS user"
                ),
                Some(aiops_engine::auth::Bootstrapped::GivenPassword) => tracing::info!(
                    "no users yet: created user \"admin\" (ADMIN) with the password of AIOPS_BOOTSTRAP_ADMIN_PASSWORD"
                ),
                None => {}
            }
            let shutdown = shutdown_token();
            tracing::info!(
                database = %redact(&db.url),
                %listen,
                console = %format_args!("http://{listen}/"),
                "aiops serve starting"
            );
            let jobs = [
                tokio::spawn(engine.clone().listen(shutdown.clone())),
                tokio::spawn(engine.clone().retention_loop(shutdown.clone())),
            ];
            let worker = tokio::spawn(Worker::new(engine.clone()).run(shutdown.clone()));
            // serve = API + worker + scheduler: every replica ticks; the database
            // decides which one fires each fire time.
            let ticker = tokio::spawn(
                aiops_engine::triggers::Ticker::new(engine.clone()).run(shutdown.clone()),
            );
            // The process's one model client, the workflows' too: its breakers are
            // what `llmBreakers` shows.
            let llm = aiops_engine::llm::shared_client().clone();
            let services = aiops_api::Services::new(engine, llm);
            let s = shutdown.clone();
            aiops_api::serve_with(listener, services, &api.config(), async move {
                s.cancelled().await
            })
            .await?;
            worker.await??;
            if let Err(e) = ticker.await? {
                tracing::warn!(error = %e, "the schedule tick stopped");
            }
            for job in jobs {
                let _ = job.await;
            }
            drop(opened);
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker { db, engine, key } => {
            let keyring = crate::sources::load_keyring(&db.url, key.data_dir, false)?;
            let opened = open_engine(
                &db.url,
                EngineOptions {
                    keyring,
                    default_source: engine.default_source()?,
                    ..with(engine.config()?)
                },
                Access::Exclusive("aiops worker"),
            )
            .await?;
            let engine = opened.engine.clone();
            engine
                .check_secrets()
                .await
                .context("checking the stored secrets")?;
            let shutdown = shutdown_token();
            let listener = tokio::spawn(engine.clone().listen(shutdown.clone()));
            let worker = Worker::new(engine.clone());
            tracing::info!(database = %redact(&db.url), worker = %worker.id(), "aiops worker starting");
            worker.run(shutdown).await?;
            let _ = listener.await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { db } => {
            let _lock = database::lock(&db.url, "aiops migrate")?;
            database::migrate(&db.url, "aiops migrate")
                .await
                .with_context(|| format!("migrating {}", redact(&db.url)))?;
            println!("migrations applied to {}", redact(&db.url));
            Ok(ExitCode::SUCCESS)
        }
        Command::Team {
            command: TeamCommand::Validate { file, database_url },
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let checked = match database_url {
                None => topology::parse_and_validate(&text, &kit.catalog),
                Some(url) => {
                    let engine = open_engine(
                        &url,
                        with(EngineConfig::default()),
                        Access::Shared("aiops team validate"),
                    )
                    .await?;
                    match engine.validate_team(&text).await {
                        Ok(spec) => Ok(spec),
                        Err(aiops_engine::Error::Violations(violations)) => Err(violations),
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            match checked {
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
            let engine = open_engine(
                &db.url,
                with(EngineConfig::default()),
                Access::Shared("aiops team apply"),
            )
            .await?;
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
            team,
            team_version,
            alerts,
            task,
            idempotency_key,
            follow,
            unclaimed_warning_secs,
        } => {
            let engine = open_engine(
                &db.url,
                with(EngineConfig::default()),
                Access::Shared("aiops run"),
            )
            .await?;
            let run = match &team {
                Some(team) => {
                    let mut req = aiops_engine::agents::TeamRun::new(team.clone());
                    req.version = team_version;
                    req.task = task;
                    req.idempotency_key = idempotency_key;
                    if let Some(path) = alerts {
                        let text = std::fs::read_to_string(&path)
                            .with_context(|| format!("reading {}", path.display()))?;
                        req.alerts =
                            Some(serde_json::from_str(&text).with_context(|| {
                                format!("{} is not valid JSON", path.display())
                            })?);
                    }
                    aiops_engine::agents::start_team_run(&engine, req).await?
                }
                None => {
                    let input = input.unwrap_or_default();
                    let text = match input.strip_prefix('@') {
                        Some(path) => std::fs::read_to_string(path)
                            .with_context(|| format!("reading {path}"))?,
                        None => input,
                    };
                    let input: serde_json::Value =
                        serde_json::from_str(&text).context("--input is not valid JSON")?;
                    let mut req = StartRun::new(workflow, input);
                    req.idempotency_key = idempotency_key;
                    engine.start_run(req).await?
                }
            };
            println!(
                "{}",
                serde_json::json!({ "run_id": run.id, "status": run.status })
            );
            if !follow {
                return Ok(ExitCode::SUCCESS);
            }
            let listener = CancellationToken::new();
            tokio::spawn(engine.clone().listen(listener.clone()));
            let watchdog = tokio::spawn(warn_if_unclaimed(
                engine.engine.clone(),
                run.id,
                redact(&db.url),
                Duration::from_secs(unclaimed_warning_secs),
            ));
            let mut events = Box::pin(engine.subscribe(run.id, 0));
            while let Some(event) = events.next().await {
                let event = event?;
                if team.is_some() {
                    if let Some(line) = crate::progress::line(&event) {
                        println!("{line}");
                    }
                } else {
                    println!("{}", serde_json::to_string(&event)?);
                }
            }
            watchdog.abort();
            listener.cancel();
            let run = engine.run(run.id).await?;
            let last = match (&team, &run.output) {
                (Some(_), Some(output)) => {
                    if let Some(report) = output["report"].as_str() {
                        println!("\n{report}");
                    }
                    serde_json::json!({
                        "run_id": run.id, "status": run.status,
                        "result": output["result"], "error": run.error,
                    })
                }
                _ => serde_json::json!({
                    "run_id": run.id, "status": run.status,
                    "output": run.output, "error": run.error,
                }),
            };
            println!("{last}");
            Ok(if run.status == RunStatus::Succeeded {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Schema => {
            print!("{}", aiops_api::sdl());
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => crate::bench::run(args, kit.catalog.clone()).await,
        Command::User { command } => user_command(command).await,
        Command::Apikey { command } => api_key_command(command).await,
        Command::Source { command } => crate::sources::source_command(command).await,
        Command::Schedule { command } => {
            crate::schedules::schedule_command(command, kit.clone()).await
        }
        Command::Webhook { command } => crate::webhooks::webhook_command(command).await,
        Command::Receiver { command } => crate::receivers::receiver_command(command).await,
        Command::Credential { command } => crate::providers::credential_command(command).await,
        Command::Provider { command } => crate::providers::provider_command(command).await,
        Command::Model { command } => crate::providers::model_command(command).await,
        Command::Secrets { command } => crate::sources::secrets_command(command).await,
    }
}

/// Tells the person following a run when nothing picks it up: a run started from the
/// command line waits for a `serve` or `worker` process on the same database.
async fn warn_if_unclaimed(engine: Engine, run: RunId, database: String, after: Duration) {
    tokio::time::sleep(after).await;
    if let Ok(r) = engine.run(run).await
        && r.status == RunStatus::Queued
        && r.attempt == 0
    {
        eprintln!(
            "no worker has claimed run {run} after {} s: is `aiops serve` or `aiops worker` \
             running on {database}? (still waiting; Ctrl-C stops following, not the run)",
            after.as_secs()
        );
    }
}

/// The engine of a short administrative command (no workflows needed).
async fn admin_engine(url: &str, holder: &'static str) -> anyhow::Result<Opened> {
    open_engine(url, EngineOptions::default(), Access::Shared(holder)).await
}

async fn user_command(command: UserCommand) -> anyhow::Result<ExitCode> {
    match command {
        UserCommand::Create { db, username, role } => {
            let password = read_new_password()?;
            let engine = admin_engine(&db.url, "aiops user create").await?;
            let user = engine.create_user(&username, &password, role).await?;
            println!(
                "user \"{}\" created with role {} (id {})",
                user.username, user.role, user.id
            );
        }
        UserCommand::Disable { db, username } => set_disabled(&db, &username, true).await?,
        UserCommand::Enable { db, username } => set_disabled(&db, &username, false).await?,
        UserCommand::List { db } => {
            let engine = admin_engine(&db.url, "aiops user list").await?;
            println!(
                "{:<36}  {:<24}  {:<8}  {:<8}  CREATED",
                "ID", "USERNAME", "ROLE", "STATE"
            );
            let users = page::all(LIST_PAGE, |p| {
                let engine = &engine;
                async move { engine.users(&p).await }
            })
            .await?;
            for user in users {
                let state = if user.disabled { "disabled" } else { "active" };
                println!(
                    "{:<36}  {:<24}  {:<8}  {:<8}  {}",
                    user.id,
                    user.username,
                    user.role.as_str(),
                    state,
                    user.created_at.format("%Y-%m-%dT%H:%M:%SZ")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_disabled(db: &DbArgs, username: &str, disabled: bool) -> anyhow::Result<()> {
    let holder = if disabled {
        "aiops user disable"
    } else {
        "aiops user enable"
    };
    let engine = admin_engine(&db.url, holder).await?;
    let user = engine.user_by_username(username).await?;
    let user = engine
        .set_user_disabled(Caller::Local, user.id, disabled)
        .await?;
    let state = if user.disabled { "disabled" } else { "enabled" };
    println!("user \"{}\" {state}", user.username);
    Ok(())
}

/// Listings print whole lists, read in pages of this many.
const LIST_PAGE: u64 = 200;

async fn api_key_command(command: ApiKeyCommand) -> anyhow::Result<ExitCode> {
    match command {
        ApiKeyCommand::Create {
            db,
            username,
            name,
            role,
            expires_days,
        } => {
            let engine = admin_engine(&db.url, "aiops apikey create").await?;
            let user = engine.user_by_username(&username).await?;
            let expires_in = expires_days.map(|d| Duration::from_secs(u64::from(d) * 86_400));
            let (key, plaintext) = engine
                .create_api_key(Caller::Local, user.id, &name, role, expires_in)
                .await?;
            println!("{plaintext}");
            let expires = key.expires_at.map_or_else(
                || "never expires".to_owned(),
                |t| format!("expires {}", t.format("%Y-%m-%dT%H:%M:%SZ")),
            );
            eprintln!(
                "API key {} (\"{}\", role {}, {expires}) created for {}. \
                 Store it now: it will not be shown again.",
                key.id, key.name, key.role, user.username
            );
        }
        ApiKeyCommand::List { db, username } => {
            let engine = admin_engine(&db.url, "aiops apikey list").await?;
            let user = engine.user_by_username(&username).await?;
            let now = chrono::Utc::now();
            println!(
                "{:<36}  {:<16}  {:<8}  {:<7}  {:<20}  NAME",
                "ID", "KEY", "ROLE", "STATE", "LAST USED"
            );
            let keys = page::all(LIST_PAGE, |p| {
                let engine = &engine;
                async move { engine.api_keys(Caller::Local, user.id, &p).await }
            })
            .await?;
            for key in keys {
                let state = if key.revoked_at.is_some() {
                    "revoked"
                } else if !key.is_active(now) {
                    "expired"
                } else {
                    "active"
                };
                let last_used = key.last_used_at.map_or_else(
                    || "never".to_owned(),
                    |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                );
                println!(
                    "{:<36}  {:<16}  {:<8}  {:<7}  {:<20}  {}",
                    key.id,
                    format!("aiops_{}_…", key.prefix),
                    key.role.as_str(),
                    state,
                    last_used,
                    key.name
                );
            }
        }
        ApiKeyCommand::Revoke { db, id } => {
            let engine = admin_engine(&db.url, "aiops apikey revoke").await?;
            let key = engine.revoke_api_key(Caller::Local, id).await?;
            let at = key
                .revoked_at
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_default();
            println!("API key {} (\"{}\") revoked at {at}", key.id, key.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::data_dir;

    #[test]
    fn data_dir_follows_the_sqlite_file() {
        assert_eq!(
            data_dir(None, "sqlite://./data/aiops.db"),
            PathBuf::from("./data")
        );
        assert_eq!(
            data_dir(None, "sqlite:///var/lib/aiops/aiops.db?mode=rwc"),
            PathBuf::from("/var/lib/aiops")
        );
        assert_eq!(data_dir(None, "sqlite://aiops.db"), PathBuf::from("."));
        assert_eq!(
            data_dir(None, "postgres://app@db/aiops"),
            PathBuf::from("./data")
        );
        assert_eq!(
            data_dir(Some("/srv/aiops".into()), "sqlite://./data/aiops.db"),
            PathBuf::from("/srv/aiops")
        );
    }
}
