//! A real `aiops serve` process on a free loopback port, for tests that attack or
//! crash the server as an outside client would.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The password of the `admin` user every served test database starts with.
pub const ADMIN_PASSWORD: &str = "served admin password 42";

pub struct ServeProcess {
    pub child: Child,
    pub addr: String,
    pub data_dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl ServeProcess {
    /// Starts `aiops serve` on `db_url` and waits until `/healthz` answers.
    pub async fn start(db_url: &str, extra_env: &[(&str, &str)]) -> ServeProcess {
        let data_dir = tempfile::tempdir().expect("data dir");
        let addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_aiops"));
        cmd.arg("serve")
            .env("DATABASE_URL", db_url)
            .env("AIOPS_LISTEN", &addr)
            .env("AIOPS_DATA_DIR", data_dir.path())
            .env("AIOPS_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("AIOPS_LEASE_TTL_MS", "1500")
            .env("AIOPS_HEARTBEAT_MS", "300")
            .env("AIOPS_POLL_MS", "50")
            .env("AIOPS_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn aiops serve");
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("aiops serve exited during start-up: {status}");
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
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("aiops serve did not answer /healthz within 30 s");
    }

    /// An API key of the bootstrap admin, obtained with the `login` mutation.
    pub async fn admin_token(&self) -> String {
        let resp: serde_json::Value = reqwest::Client::new()
            .post(format!("http://{}/graphql", self.addr))
            .json(&serde_json::json!({
                "query": "mutation($p: String!) { login(username: \"admin\", password: $p) { token } }",
                "variables": { "p": ADMIN_PASSWORD },
            }))
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("login response");
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
