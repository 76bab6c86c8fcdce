//! A real `aiops serve` process on a free loopback port, for tests that attack or
//! crash the server as an outside client would.

use std::process::Child;
use std::time::Duration;

use super::Api;

/// The password of the `admin` user every served test database starts with.
pub const ADMIN_PASSWORD: &str = "served admin password 42";

pub struct ServeProcess {
    pub child: Child,
    pub addr: String,
    pub data_dir: tempfile::TempDir,
    /// Where its stderr (the logs) goes, when captured.
    log: Option<std::path::PathBuf>,
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl ServeProcess {
    /// Starts `aiops serve` on `db_url` and waits until `/healthz` answers.
    pub async fn start(db_url: &str, extra_env: &[(&str, &str)]) -> ServeProcess {
        Self::start_with(db_url, extra_env, &[], false).await
    }

    /// [`ServeProcess::start`] with extra arguments after `serve`, and the process's
    /// stderr written to a file ([`ServeProcess::log`]) when `capture_log`.
    pub async fn start_with(
        db_url: &str,
        extra_env: &[(&str, &str)],
        args: &[&str],
        capture_log: bool,
    ) -> ServeProcess {
        let data_dir = tempfile::tempdir().expect("data dir");
        let addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = super::aiops_process("serve");
        cmd.args(args);
        let log = capture_log.then(|| data_dir.path().join("stderr.log"));
        if let Some(path) = &log {
            cmd.stderr(std::fs::File::create(path).expect("log file"));
        }
        cmd.env("DATABASE_URL", db_url)
            .env("AIOPS_LISTEN", &addr)
            .env("AIOPS_DATA_DIR", data_dir.path())
            .env("AIOPS_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn aiops serve");
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(Some(status)) = child.try_wait() {
                let log = log
                    .as_ref()
                    .and_then(|p| std::fs::read_to_string(p).ok())
                    .unwrap_or_default();
                panic!("aiops serve exited during start-up: {status}\n{log}");
            }
            if client
                .get(format!("http://{addr}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return ServeProcess {
                    child,
                    addr,
                    data_dir,
                    log,
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("aiops serve did not answer /healthz within 30 s");
    }

    /// What the process logged so far (started with `capture_log`).
    pub fn log(&self) -> String {
        let path = self.log.as_ref().expect("started with capture_log");
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// A GraphQL client of this process, optionally with a bearer token.
    pub fn api(&self, token: Option<&str>) -> Api {
        Api::new(&self.addr, token)
    }

    /// An API key of the bootstrap admin, obtained with the `login` mutation.
    pub async fn admin_token(&self) -> String {
        let resp = self
            .api(None)
            .gql(
                "mutation($p: String!) { login(username: \"admin\", password: $p) { token } }",
                serde_json::json!({ "p": ADMIN_PASSWORD }),
            )
            .await;
        resp["data"]["login"]["token"]
            .as_str()
            .unwrap_or_else(|| panic!("admin login failed: {resp}"))
            .to_owned()
    }

    /// Panics if the process has exited (a crash), else returns.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("aiops serve died: {status}");
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
