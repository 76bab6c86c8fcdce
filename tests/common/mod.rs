//! Test harness: a fresh database per test (Postgres or SQLite) with the real
//! migrations, an engine with short timings, real worker processes, and a fake
//! model provider speaking the real wire formats (`fake_llm`).
//!
//! Postgres tests skip with a message when no server answers, except under
//! `CI=true`, where a missing Postgres fails them.

#![allow(dead_code)]

pub mod fake_llm;
pub mod incident;
pub mod prometheus;
pub mod serve;
pub mod ws;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aiops_engine::model::Run;
use aiops_engine::{
    Engine, EngineConfig, EngineOptions, Event, RunId, RunStatus, StartRun, Worker, Workflows,
    database,
};
use sea_orm::{ConnectionTrait, Database};
use tokio_util::sync::CancellationToken;

pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A database that exists for one test and is dropped after it.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// `None` when Postgres is not reachable outside CI (the test then skips).
    pub async fn create(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("aiops.db").display());
                Some(TestDb {
                    backend,
                    url,
                    name: String::new(),
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => {
                let admin = match Database::connect(admin_url()).await {
                    Ok(db) => db,
                    Err(e) => {
                        if std::env::var("CI").is_ok_and(|v| v == "true") {
                            panic!(
                                "CI=true but Postgres is unreachable at {}: {e}",
                                admin_url()
                            );
                        }
                        eprintln!("SKIPPED: Postgres unreachable at {} ({e})", admin_url());
                        return None;
                    }
                };
                let name = format!("aiops_test_{}", uuid::Uuid::now_v7().simple());
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                let base = admin_url();
                let url = format!(
                    "{}/{name}",
                    &base[..base.rfind('/').expect("admin url has a path")]
                );
                Some(TestDb {
                    backend,
                    url,
                    name,
                    _dir: None,
                })
            }
        }
    }
}

impl TestDb {
    /// A fresh database with the real migrations applied.
    pub async fn migrated(backend: Backend) -> Option<TestDb> {
        let db = TestDb::create(backend).await?;
        database::migrate(&db.url, "aiops test")
            .await
            .expect("migrate");
        Some(db)
    }
}

/// An engine on the (migrated) database at `url` holding `keyring` for secrets at rest.
pub async fn keyed_engine(url: &str, keyring: Option<aiops_engine::secrets::Keyring>) -> Engine {
    Engine::connect(
        url,
        EngineOptions {
            config: fast_config(),
            keyring: keyring.map(std::sync::Arc::new),
            application_name: "aiops test".into(),
            ..EngineOptions::default()
        },
    )
    .await
    .expect("connect")
}

fn admin_url() -> String {
    std::env::var("AIOPS_TEST_PG_ADMIN_URL").unwrap_or_else(|_| PG_ADMIN_URL.to_owned())
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.backend != Backend::Postgres {
            return;
        }
        let name = self.name.clone();
        // Drop runs outside any async context guarantee: use a private runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let admin = Database::connect(admin_url()).await.ok()?;
                admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// Timings scaled down so tests run in seconds.
pub fn fast_config() -> EngineConfig {
    EngineConfig {
        lease_ttl: Duration::from_millis(1500),
        heartbeat_interval: Duration::from_millis(300),
        poll_interval: Duration::from_millis(50),
        long_wait_threshold: Duration::from_millis(300),
        started_event_delay: Duration::from_millis(50),
        shutdown_grace: Duration::from_secs(2),
        ..EngineConfig::default()
    }
}

/// The workflows of test engines: the script workflow, writing `record_to` files
/// only inside `record_dir`.
pub fn test_workflows(record_dir: Option<&std::path::Path>) -> Workflows {
    Workflows::default().with(
        aiops_engine::script::NAME,
        aiops_engine::script::ScriptWorkflow::new(record_dir.map(std::path::Path::to_owned)),
    )
}

/// The `record_to` value for a file of the harness's record directory.
pub fn record_name(path: &std::path::Path) -> String {
    path.file_name()
        .expect("a file path")
        .to_string_lossy()
        .into_owned()
}

/// A run of the script workflow with `steps`.
pub fn script(steps: serde_json::Value) -> StartRun {
    StartRun::new("script", serde_json::json!({ "steps": steps }))
}

/// A run of the script workflow with `steps` that records every executed attempt in
/// `record_to` (a file of the harness's record directory).
pub fn recorded_script(steps: serde_json::Value, record_to: &Path) -> StartRun {
    StartRun::new(
        "script",
        serde_json::json!({ "steps": steps, "record_to": record_name(record_to) }),
    )
}

/// An engine on the (migrated) database at `url`.
pub async fn engine_on(url: &str, config: EngineConfig, workflows: Workflows) -> Engine {
    Engine::connect(
        url,
        EngineOptions {
            config,
            workflows,
            application_name: "aiops test".into(),
            ..EngineOptions::default()
        },
    )
    .await
    .expect("connect")
}

/// A connection to the test database itself, for what tests check or break behind
/// the engine's back (stored hashes, aged rows, a dropped table).
pub async fn raw_db(url: &str) -> sea_orm::DatabaseConnection {
    Database::connect(url).await.expect("connect")
}

/// A migrated engine on a fresh database, plus the database (keep it alive).
pub struct Harness {
    pub db: TestDb,
    pub engine: Engine,
    pub shutdown: CancellationToken,
    /// Where scripts' `record_to` files go (`AIOPS_SCRIPT_RECORD_DIR` of worker processes).
    pub record_dir: PathBuf,
    _record_dir: tempfile::TempDir,
}

impl Harness {
    pub async fn new(backend: Backend) -> Option<Harness> {
        Self::with_config(backend, fast_config()).await
    }

    pub async fn with_config(backend: Backend, config: EngineConfig) -> Option<Harness> {
        Self::with_workflows(backend, config, |w| w).await
    }

    /// A harness whose engine also runs the workflows `extra` registers.
    pub async fn with_workflows(
        backend: Backend,
        config: EngineConfig,
        extra: impl FnOnce(Workflows) -> Workflows,
    ) -> Option<Harness> {
        let db = TestDb::create(backend).await?;
        database::migrate(&db.url, "aiops test")
            .await
            .expect("migrate");
        let record_dir = tempfile::tempdir().expect("record dir");
        let engine = engine_on(
            &db.url,
            config,
            extra(test_workflows(Some(record_dir.path()))),
        )
        .await;
        let shutdown = CancellationToken::new();
        tokio::spawn(engine.clone().listen(shutdown.clone()));
        Some(Harness {
            db,
            engine,
            shutdown,
            record_dir: record_dir.path().to_owned(),
            _record_dir: record_dir,
        })
    }

    /// Starts an in-process worker; it stops when the harness is dropped.
    pub fn spawn_worker(&self) -> tokio::task::JoinHandle<aiops_engine::Result<()>> {
        tokio::spawn(Worker::new(self.engine.clone()).run(self.shutdown.child_token()))
    }

    /// A second engine (its own pool, writer and bus) on the same database, as
    /// another process would have.
    pub async fn second_engine(&self, config: EngineConfig) -> Engine {
        let engine = engine_on(&self.db.url, config, test_workflows(Some(&self.record_dir))).await;
        tokio::spawn(engine.clone().listen(self.shutdown.child_token()));
        engine
    }

    pub async fn wait_for_status(&self, id: RunId, want: &[RunStatus], within: Duration) -> Run {
        wait_for_status(&self.engine, id, want, within).await
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn wait_for_status(
    engine: &Engine,
    id: RunId,
    want: &[RunStatus],
    within: Duration,
) -> Run {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let run = engine.run(id).await.expect("read run");
        if want.contains(&run.status) {
            return run;
        }
        if tokio::time::Instant::now() >= deadline {
            let events = engine.events(id, 0, 1000).await.unwrap_or_default();
            panic!(
                "run {id} is {} (error {:?}, deadline {:?}, wake {:?}, lease {:?}), wanted {want:?} within {within:?}; events: {:#?}",
                run.status,
                run.error,
                run.deadline_at,
                run.wake_at,
                run.lease_expires_at,
                events
                    .iter()
                    .map(|e| (e.seq, e.kind, e.created_at, e.payload.clone()))
                    .collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts a run's stored events are numbered 1..=n with no gap, and returns them.
pub async fn assert_gap_free(engine: &Engine, id: RunId) -> Vec<Event> {
    let events = engine.events(id, 0, 100_000).await.expect("events");
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    let expected: Vec<i64> = (1..=events.len() as i64).collect();
    assert_eq!(
        seqs, expected,
        "event seqs of run {id} must be 1..n without gaps"
    );
    let run = engine.run(id).await.expect("run");
    assert_eq!(
        run.last_seq,
        events.len() as i64,
        "runs.last_seq matches the log"
    );
    events
}

/// `aiops <command>` as a long-running test process: the timings of
/// [`fast_config`], warnings only, stdout discarded.
pub fn aiops_process(command: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aiops"));
    cmd.arg(command)
        .env("AIOPS_LEASE_TTL_MS", "1500")
        .env("AIOPS_HEARTBEAT_MS", "300")
        .env("AIOPS_POLL_MS", "50")
        .env("AIOPS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    cmd
}

/// A real `aiops worker` process on the test database.
pub struct WorkerProcess {
    pub child: Child,
}

impl WorkerProcess {
    pub fn spawn(
        db_url: &str,
        record_dir: &std::path::Path,
        extra_env: &[(&str, &str)],
    ) -> WorkerProcess {
        let mut cmd = aiops_process("worker");
        cmd.env("DATABASE_URL", db_url)
            .env("AIOPS_ENABLE_SCRIPT_WORKFLOW", "1")
            .env("AIOPS_SCRIPT_RECORD_DIR", record_dir);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        WorkerProcess {
            child: cmd.spawn().expect("spawn aiops worker"),
        }
    }

    /// SIGKILL: no shutdown code runs, leases stay held until they expire.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait: the graceful path.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: plain libc call on a pid we own.
        unsafe {
            libc_kill(self.child.id() as i32, 15);
        }
        self.child.wait().expect("wait worker")
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Lines of a script's `record_to` file: `run_id/step_key attempt` per executed
/// attempt.
pub fn recorded(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Executions per `run_id/step_key` in a script's `record_to` file.
pub fn executions(path: &Path) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in recorded(path) {
        let key = line.rsplit_once(' ').map_or(line.as_str(), |(key, _)| key);
        *counts.entry(key.to_owned()).or_default() += 1;
    }
    counts
}

/// Executions per step key of `run` in a script's `record_to` file.
pub fn executions_of(path: &Path, run: RunId) -> HashMap<String, usize> {
    let prefix = format!("{run}/");
    executions(path)
        .into_iter()
        .filter_map(|(key, n)| Some((key.strip_prefix(&prefix)?.to_owned(), n)))
        .collect()
}

/// Defines `<name>_postgres` and `<name>_sqlite` tests from one async body taking
/// a `Backend`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$body($crate::common::Backend::Postgres).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$body($crate::common::Backend::Sqlite).await
            }
        }
    };
}

/// A loopback TCP proxy in front of Postgres that can simulate an outage: `cut`
/// drops every open connection and refuses new ones until `restore`.
pub struct FlakyProxy {
    pub port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl FlakyProxy {
    pub async fn start(target: &str) -> FlakyProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (up2, conns2, target) = (up.clone(), conns.clone(), target.to_owned());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: connection refused in effect
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns2.lock().expect("proxy lock").push(task.abort_handle());
            }
        });
        FlakyProxy {
            port,
            up,
            conns,
            accept,
        }
    }

    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().expect("proxy lock").drain(..) {
            c.abort();
        }
    }

    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// The real HTTP API on 127.0.0.1:0 in front of `engine`; stops with the token.
pub async fn serve_api(engine: &Engine, shutdown: CancellationToken) -> String {
    serve_api_with(engine, aiops_api::ApiConfig::default(), shutdown).await
}

pub async fn serve_api_with(
    engine: &Engine,
    config: aiops_api::ApiConfig,
    shutdown: CancellationToken,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind api");
    let addr = listener.local_addr().expect("api addr");
    let engine = engine.clone();
    tokio::spawn(async move {
        let stop = async move { shutdown.cancelled().await };
        let _ = aiops_api::serve_with(listener, engine, &config, stop).await;
    });
    format!("127.0.0.1:{}", addr.port())
}

/// The password every test user gets (long enough for the 12-character rule).
pub const TEST_PASSWORD: &str = "correct horse battery staple";

/// Creates a user with `role` and returns an API key for it.
pub async fn token_for(engine: &Engine, username: &str, role: aiops_engine::auth::Role) -> String {
    let user = engine
        .create_user(username, TEST_PASSWORD, role)
        .await
        .expect("create user");
    engine
        .create_api_key(aiops_engine::Caller::Local, user.id, "test", None, None)
        .await
        .expect("create key")
        .1
}

/// Every response body received by the `Api` clients of one test, for secret scans.
pub type Transcript = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// A GraphQL client over real HTTP, optionally with a bearer token.
pub struct Api {
    pub addr: String,
    pub token: Option<String>,
    client: reqwest::Client,
    pub transcript: Transcript,
}

impl Api {
    pub fn new(addr: &str, token: Option<&str>) -> Api {
        Api {
            addr: addr.to_owned(),
            token: token.map(str::to_owned),
            client: reqwest::Client::new(),
            transcript: Transcript::default(),
        }
    }

    /// Another client on the same server and transcript, with another token.
    pub fn with_token(&self, token: Option<&str>) -> Api {
        Api {
            addr: self.addr.clone(),
            token: token.map(str::to_owned),
            client: self.client.clone(),
            transcript: self.transcript.clone(),
        }
    }

    /// The whole GraphQL response document (`data` and/or `errors`).
    pub async fn gql(&self, query: &str, variables: serde_json::Value) -> serde_json::Value {
        self.post_raw(serde_json::json!({ "query": query, "variables": variables }).to_string())
            .await
            .1
    }

    /// POSTs `body` as it is (JSON or not, of any size): the status and the response
    /// document.
    pub async fn post_raw(&self, body: String) -> (u16, serde_json::Value) {
        let mut req = self
            .client
            .post(format!("http://{}/graphql", self.addr))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /graphql failed: {}", e.without_url()));
        let status = resp.status().as_u16();
        (status, self.document(status, resp).await)
    }

    /// `GET /graphql?query=…`: the status, the headers and the response document.
    pub async fn get(&self, query: &str) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        let mut req = self
            .client
            .get(format!("http://{}/graphql", self.addr))
            .query(&[("query", query)]);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET /graphql failed: {}", e.without_url()));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, self.document(status, resp).await)
    }

    /// A response's body, kept in the transcript and parsed as JSON.
    async fn document(&self, status: u16, resp: reqwest::Response) -> serde_json::Value {
        let text = resp.text().await.expect("response body");
        self.transcript
            .lock()
            .expect("transcript")
            .push(text.clone());
        serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("GraphQL response is not JSON ({e}), status {status}: {text}")
        })
    }

    /// `data`, asserting there are no errors.
    pub async fn data(&self, query: &str, variables: serde_json::Value) -> serde_json::Value {
        let resp = self.gql(query, variables).await;
        assert!(resp.get("errors").is_none(), "unexpected errors: {resp:#}");
        resp["data"].clone()
    }

    /// Reads the run `id` with `query` (taking `$id`, selecting `run { status }`)
    /// until its status is one of `want`; returns the `run`.
    pub async fn wait_for_run(&self, query: &str, id: &str, want: &[&str]) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let run = self.data(query, serde_json::json!({ "id": id })).await["run"].clone();
            if want.iter().any(|w| run["status"] == *w) {
                return run;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "run {id} never reached {want:?}: {run}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The `extensions.code` of the first error, asserting there is one.
    pub async fn error_code(
        &self,
        query: &str,
        variables: serde_json::Value,
    ) -> (String, serde_json::Value) {
        let resp = self.gql(query, variables).await;
        let err = resp["errors"][0].clone();
        let code = err["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("error without code: {resp:#}"));
        (code.to_owned(), err)
    }
}

/// Fails if any stored secret (password hash, API key hash) or a test password
/// appears in any response of the transcript. Plain API keys may appear only in the
/// response that created them: pass those responses' indexes in `allowed_tokens`.
pub async fn assert_no_secrets(db_url: &str, transcript: &Transcript, tokens: &[String]) {
    let db = &raw_db(db_url).await;
    let mut secrets: Vec<String> = vec![TEST_PASSWORD.to_owned()];
    for (table, col) in [("users", "password_hash"), ("api_keys", "key_hash")] {
        let rows = db
            .query_all_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                format!("SELECT {col} FROM {table}"),
            ))
            .await
            .expect("read secrets");
        for row in rows {
            let v: String = row.try_get_by_index(0).expect("secret column");
            secrets.push(v);
        }
    }
    let bodies = transcript.lock().expect("transcript").clone();
    assert!(!bodies.is_empty(), "nothing was scanned");
    for body in &bodies {
        for secret in &secrets {
            assert!(
                !body.contains(secret.as_str()),
                "a stored secret leaked in a response: {body}"
            );
        }
        // The hash-shaped parts of argon2 PHC strings must not show up either.
        assert!(!body.contains("$argon2"), "a password hash leaked: {body}");
        for token in tokens {
            let created_here = body.contains("\"token\"");
            assert!(
                created_here || !body.contains(token.as_str()),
                "an API key was echoed: {body}"
            );
        }
    }
}
