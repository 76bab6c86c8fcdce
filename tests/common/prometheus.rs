//! Real Prometheus and Alertmanager processes for tests, and a `/metrics` endpoint
//! the test controls: the tools are tested against the servers they will talk to,
//! not against a fake that agrees with our reading of the API.
//!
//! Each server gets its own temporary directory (config, data, stderr log) and a
//! free loopback port, and is killed when dropped (also when the test panics).
//! Missing binaries skip the test with a message, except under `CI=true`, where
//! they fail it (as a missing Postgres does).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// How long a server may take to become ready, and a condition to come true.
const DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(200);

/// Serves `/metrics` in the Prometheus text format with values the test sets and
/// changes while Prometheus scrapes it.
pub struct MetricsEndpoint {
    addr: String,
    series: Arc<Mutex<Metrics>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Metrics {
    /// `name{labels}` → value, in a stable order.
    series: BTreeMap<String, f64>,
    /// Replaces the series when set.
    body: Option<String>,
}

impl MetricsEndpoint {
    pub async fn start() -> MetricsEndpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind metrics endpoint");
        let addr = listener.local_addr().expect("metrics addr").to_string();
        let series = Arc::new(Mutex::new(Metrics::default()));
        let shared = series.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_metrics(stream, shared.clone()));
            }
        });
        MetricsEndpoint { addr, series, task }
    }

    /// `host:port`, as a scrape target.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sets the series `name{labels}` to `value` (adding it if new).
    pub fn set(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        let key = series_key(name, labels);
        self.series
            .lock()
            .expect("metrics lock")
            .series
            .insert(key, value);
    }

    /// Stops serving the series `name{labels}`.
    pub fn remove(&self, name: &str, labels: &[(&str, &str)]) {
        let key = series_key(name, labels);
        self.series
            .lock()
            .expect("metrics lock")
            .series
            .remove(&key);
    }

    /// Serves `text` as the whole body from now on, instead of the series.
    pub fn set_body(&self, text: &str) {
        self.series.lock().expect("metrics lock").body = Some(text.to_owned());
    }
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn series_key(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_owned();
    }
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{name}{{{}}}", labels.join(","))
}

/// A value in the text format (`+Inf`, not Rust's `inf`).
fn sample(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        value.to_string()
    }
}

/// One connection: reads a request head, answers with the current body, closes.
async fn serve_metrics(mut stream: tokio::net::TcpStream, metrics: Arc<Mutex<Metrics>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    let body = {
        let m = metrics.lock().expect("metrics lock");
        match &m.body {
            Some(body) => body.clone(),
            None => m
                .series
                .iter()
                .map(|(k, v)| format!("{k} {}\n", sample(*v)))
                .collect::<String>(),
        }
    };
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A server process with its directory; killed and reaped on drop.
struct Server {
    name: &'static str,
    child: Child,
    dir: tempfile::TempDir,
    base_url: String,
}

impl Server {
    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary `name` (or the first of `names` on PATH, or the `env` override).
/// `None` skips the test outside CI; under `CI=true` a missing binary fails it.
fn binary(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Ok(path) = std::env::var(env) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI=true but none of {names:?} is on PATH (set {env}); .ci/run installs the \
             Debian packages prometheus and prometheus-alertmanager"
        );
    }
    eprintln!("SKIPPED: none of {names:?} is on PATH (set {env} to use another binary)");
    None
}

/// A free loopback port: bound, read and released (the caller retries if another
/// process takes it before the server binds it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Starts `binary` with `args(port)` in `dir` until `/-/ready` answers 200; retries
/// on another port when the chosen one was taken meanwhile.
async fn start_server(
    name: &'static str,
    binary: &Path,
    mut dir: tempfile::TempDir,
    args: impl Fn(u16) -> Vec<String>,
) -> Server {
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let port = free_port();
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("stderr log");
        let mut cmd = Command::new(binary);
        cmd.args(args(port))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({}): {e}", binary.display()));
        let mut server = Server {
            name,
            child,
            dir,
            base_url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                let log = server.stderr();
                if log.contains("address already in use") {
                    break;
                }
                panic!("{name} exited at startup ({status}); its stderr:\n{log}");
            }
            let ready = http
                .get(format!("{}/-/ready", server.base_url))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return server;
            }
            if Instant::now() > deadline {
                panic!(
                    "{name} not ready at {} within {DEADLINE:?}; its stderr:\n{}",
                    server.base_url,
                    server.stderr()
                );
            }
            tokio::time::sleep(POLL).await;
        }
        // The port was taken: take the directory back and try another.
        let _ = server.child.wait();
        dir = std::mem::replace(&mut server.dir, tempfile::tempdir().expect("temp dir"));
    }
    panic!("{name}: no free port after 3 attempts")
}

/// Kills the server if the test process dies without unwinding (SIGKILL, abort).
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// A real Alertmanager with one receiver that discards notifications and no
/// clustering (`--cluster.listen-address=`).
pub struct Alertmanager {
    server: Server,
}

impl Alertmanager {
    /// `None` when the binary is missing outside CI (the test then skips).
    pub async fn start() -> Option<Alertmanager> {
        let config = "route:\n  receiver: discard\n  group_wait: 0s\n  group_interval: 1s\n\
                      receivers:\n  - name: discard\n";
        Self::start_with_config(config).await
    }

    /// An Alertmanager with the configuration `config` (`alertmanager.yml`), e.g.
    /// receivers with `webhook_configs`.
    pub async fn start_with_config(config: &str) -> Option<Alertmanager> {
        let binary = binary(
            "AIOPS_TEST_ALERTMANAGER",
            &["alertmanager", "prometheus-alertmanager"],
        )?;
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("alertmanager.yml"), config).expect("write config");
        let root = dir.path().to_owned();
        let server = start_server("alertmanager", &binary, dir, move |port| {
            vec![
                format!("--config.file={}", root.join("alertmanager.yml").display()),
                format!("--storage.path={}", root.join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--cluster.listen-address=".to_owned(),
                "--log.level=warn".to_owned(),
            ]
        })
        .await;
        Some(Alertmanager { server })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.server.base_url
    }

    /// `127.0.0.1:<port>`, as Prometheus's alerting target.
    pub fn addr(&self) -> &str {
        self.url().trim_start_matches("http://")
    }

    /// Waits until Alertmanager holds an alert named `name`, and returns it.
    pub async fn wait_for_alert(&self, name: &str) -> Value {
        let url = format!("{}/api/v2/alerts", self.url());
        let filter = format!("alertname=\"{name}\"");
        poll(
            &format!("alert {name} in Alertmanager"),
            &self.server,
            || {
                let request = reqwest::Client::new()
                    .get(&url)
                    .query(&[("filter", filter.as_str())]);
                async move {
                    let alerts: Value = request.send().await.ok()?.json().await.ok()?;
                    alerts.as_array()?.first().cloned()
                }
            },
        )
        .await
    }
}

/// A real Prometheus scraping the test's targets every second and evaluating its
/// rules every second, sending alerts to an Alertmanager when given one.
pub struct Prometheus {
    server: Server,
}

impl Prometheus {
    /// `rules_yaml` is a Prometheus rule file (`groups: …`); `scrape` are
    /// `host:port` targets of job `test`. `None` when the binary is missing outside
    /// CI (the test then skips).
    pub async fn start(
        rules_yaml: &str,
        scrape: &[&str],
        alertmanager: Option<&Alertmanager>,
    ) -> Option<Prometheus> {
        Self::start_with(rules_yaml, scrape, alertmanager, None).await
    }

    /// [`Prometheus::start`], sending `Authorization: Bearer <scrape_token>` with
    /// every scrape when given.
    pub async fn start_with(
        rules_yaml: &str,
        scrape: &[&str],
        alertmanager: Option<&Alertmanager>,
        scrape_token: Option<&str>,
    ) -> Option<Prometheus> {
        let binary = binary("AIOPS_TEST_PROMETHEUS", &["prometheus"])?;
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("rules.yml"), rules_yaml).expect("write rules");
        let targets: Vec<String> = scrape.iter().map(|t| format!("'{t}'")).collect();
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - rules.yml\n\
             scrape_configs:\n  - job_name: test\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        if let Some(token) = scrape_token {
            config.push_str(&format!(
                "    authorization:\n      type: Bearer\n      credentials: '{token}'\n"
            ));
        }
        if let Some(am) = alertmanager {
            config.push_str(&format!(
                "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{}']\n",
                am.addr()
            ));
        }
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("write config");
        let root = dir.path().to_owned();
        let server = start_server("prometheus", &binary, dir, move |port| {
            vec![
                format!("--config.file={}", root.join("prometheus.yml").display()),
                format!("--storage.tsdb.path={}", root.join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--log.level=warn".to_owned(),
            ]
        })
        .await;
        Some(Prometheus { server })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.server.base_url
    }

    /// Waits until every target of job `test` was scraped successfully (health
    /// `up`, no error) and returns the targets: Prometheus's own parser accepted
    /// what they serve.
    pub async fn wait_for_healthy_targets(&self) -> Value {
        let url = format!("{}/api/v1/targets", self.url());
        poll("healthy scrape targets", &self.server, || {
            let request = reqwest::Client::new().get(&url);
            async move {
                let body: Value = request.send().await.ok()?.json().await.ok()?;
                let targets = body["data"]["activeTargets"].as_array()?.clone();
                let healthy = !targets.is_empty()
                    && targets
                        .iter()
                        .all(|t| t["health"] == "up" && t["lastError"] == "");
                healthy.then_some(Value::Array(targets))
            }
        })
        .await
    }

    /// Waits until Prometheus reports the alert `name` in `state` (`pending` or
    /// `firing`), and returns it.
    pub async fn wait_for_alert(&self, name: &str, state: &str) -> Value {
        let url = format!("{}/api/v1/alerts", self.url());
        poll(&format!("alert {name} {state}"), &self.server, || {
            let request = reqwest::Client::new().get(&url);
            async move {
                let body: Value = request.send().await.ok()?.json().await.ok()?;
                body["data"]["alerts"]
                    .as_array()?
                    .iter()
                    .find(|a| a["labels"]["alertname"] == name && a["state"] == state)
                    .cloned()
            }
        })
        .await
    }

    /// Waits until the instant query `promql` returns at least one sample, and
    /// returns its result (scrapes take a second or two to land).
    pub async fn wait_for_samples(&self, promql: &str) -> Value {
        let url = format!("{}/api/v1/query", self.url());
        poll(&format!("samples of {promql}"), &self.server, || {
            let request = reqwest::Client::new().get(&url).query(&[("query", promql)]);
            async move {
                let body: Value = request.send().await.ok()?.json().await.ok()?;
                let result = &body["data"]["result"];
                (!result.as_array()?.is_empty()).then(|| result.clone())
            }
        })
        .await
    }
}

/// Polls `check` every 200 ms until it yields a value; panics with the server's
/// stderr after the deadline.
async fn poll<F, Fut>(what: &str, server: &Server, check: F) -> Value
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<Value>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: not seen within {DEADLINE:?}; {} stderr:\n{}",
                server.name,
                server.stderr()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}
