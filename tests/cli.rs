//! The `aiops` binary as users run it: team validation and `serve` with no configuration.

use std::process::{Command, Stdio};
use std::time::Duration;

fn aiops() -> Command {
    Command::new(env!("CARGO_BIN_EXE_aiops"))
}

#[test]
fn team_validate_accepts_a_valid_team() {
    let out = aiops()
        .args(["team", "validate", "-f", "tests/fixtures/teams/valid.yaml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("is valid (3 nodes)"));
}

#[test]
fn team_validate_lists_every_violation_and_fails() {
    let out = aiops()
        .args([
            "team",
            "validate",
            "-f",
            "tests/fixtures/teams/invalid.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "unknown node \"ledger-db\"",
        "dependency cycle: checkout-web -> cart-api -> checkout-web",
        "unknown tool \"kubectl_exec\"",
        "limits.timeout_seconds",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert_eq!(
        stdout.lines().count(),
        4,
        "one line per violation:\n{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("4 violation(s)"));
}

#[test]
fn team_validate_reports_a_missing_file() {
    let out = aiops()
        .args(["team", "validate", "-f", "no/such/team.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("reading no/such/team.yaml"));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn serve_runs_with_no_configuration_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = aiops()
        .arg("serve")
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env("AIOPS_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut ready = None;
    for _ in 0..200 {
        if let Ok(resp) = client.get(format!("{base}/readyz")).send().await {
            ready = Some(resp);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = ready.expect("serve answers /readyz");
    assert_eq!(ready.status(), 200);
    let health: serde_json::Value = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert!(
        dir.path().join("data/aiops.db").exists(),
        "SQLite default under ./data"
    );

    // Runs started through the CLI against the same file are executed by serve's worker.
    let out = aiops()
        .args([
            "run",
            "--input",
            r#"{"steps":[{"kind":"noop"},{"kind":"output","value":{"ok":true}}]}"#,
            "--follow",
        ])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().last().unwrap().contains("RUN_SUCCEEDED"),
        "{stdout}"
    );

    unsafe { kill(child.id() as i32, 15) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn team_apply_stores_versions_and_refuses_invalid_files() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let apply = |file: &str| {
        aiops()
            .args(["team", "apply", "-f", file])
            .env("DATABASE_URL", &url)
            .env("AIOPS_LOG", "warn")
            .output()
            .unwrap()
    };
    let first = apply("tests/fixtures/teams/valid.yaml");
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("stored as version 1"));
    let again = apply("tests/fixtures/teams/valid.yaml");
    assert!(String::from_utf8_lossy(&again.stdout).contains("unchanged at version 1"));
    let bad = apply("tests/fixtures/teams/invalid.yaml");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("4 violation(s); nothing was stored"));
}
