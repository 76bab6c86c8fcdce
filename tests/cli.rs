//! The `aiops` binary as users run it: team validation, `serve` with no configuration,
//! users and API keys.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use aiops_engine::{Engine, EngineConfig, Error, Role};

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

#[tokio::test]
async fn serve_runs_with_no_configuration_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::serve::free_port();
    let log_path = dir.path().join("serve.log");
    let mut child = aiops()
        .arg("serve")
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("AIOPS_DATA_DIR")
        .env_remove("AIOPS_BOOTSTRAP_ADMIN_PASSWORD")
        .env("AIOPS_LISTEN", format!("127.0.0.1:{port}"))
        .env("AIOPS_ENABLE_SCRIPT_WORKFLOW", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
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
    let ready = ready.unwrap_or_else(|| {
        panic!(
            "serve answers /readyz: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        )
    });
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

    // The first start created the admin; its password is in a file only we can read.
    let password_file = dir.path().join("data/initial-admin-password");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&password_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let password = std::fs::read_to_string(&password_file)
        .unwrap()
        .trim()
        .to_owned();
    let url = format!("sqlite://{}", dir.path().join("data/aiops.db").display());
    let admin = engine_on(&url)
        .await
        .login("admin", &password)
        .await
        .unwrap();
    assert_eq!(admin.role, Role::Admin);

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
        .env("AIOPS_ENABLE_SCRIPT_WORKFLOW", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The events as JSON lines, then the run with its output.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[lines.len() - 2].contains("RUN_SUCCEEDED"), "{stdout}");
    let run: serde_json::Value = serde_json::from_str(lines[lines.len() - 1]).unwrap();
    assert_eq!(run["status"], "SUCCEEDED", "{stdout}");
    assert_eq!(run["output"]["output"], serde_json::json!({ "ok": true }));

    unsafe { kill(child.id() as i32, 15) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("initial-admin-password"), "{log}");
    assert!(!log.contains(&password), "the password must not be logged");
    assert!(
        !log.contains('\x1b'),
        "no colour codes in a log file: {log}"
    );
}

/// An engine on a database the CLI uses (already migrated by it).
async fn engine_on(url: &str) -> Engine {
    common::engine_on(
        url,
        EngineConfig::default(),
        aiops_engine::Workflows::default(),
    )
    .await
}

#[tokio::test]
async fn user_and_api_key_commands() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let cli = |args: &[&str]| {
        let mut cmd = aiops();
        cmd.args(args)
            .env("DATABASE_URL", &url)
            .env("AIOPS_LOG", "warn")
            .env_remove("AIOPS_USER_PASSWORD");
        cmd
    };
    let text = |out: &std::process::Output| {
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // Password from the environment.
    let out = cli(&[
        "user",
        "create",
        "--username",
        "alice",
        "--role",
        "operator",
    ])
    .env("AIOPS_USER_PASSWORD", "alice-password-1")
    .output()
    .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("user \"alice\" created with role OPERATOR"),
        "{stdout}"
    );

    // Password from the first line of stdin.
    let mut child = cli(&["user", "create", "--username", "bob", "--role", "VIEWER"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"bob-password-22\nignored second line\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out).1);

    // Refusals: short password (not echoed), taken username, unknown role.
    let out = cli(&["user", "create", "--username", "carol", "--role", "admin"])
        .env("AIOPS_USER_PASSWORD", "tiny-pw")
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("at least 12 characters") && !stderr.contains("tiny-pw"),
        "{stderr}"
    );
    let out = cli(&["user", "create", "--username", "alice", "--role", "admin"])
        .env("AIOPS_USER_PASSWORD", "another-password")
        .output()
        .unwrap();
    assert!(text(&out).1.contains("already taken"), "{}", text(&out).1);
    let out = cli(&["user", "create", "--username", "dave", "--role", "root"])
        .env("AIOPS_USER_PASSWORD", "another-password")
        .output()
        .unwrap();
    assert!(text(&out).1.contains("expected viewer, operator or admin"));

    let out = cli(&["user", "list"]).output().unwrap();
    let (stdout, _) = text(&out);
    assert_eq!(stdout.lines().count(), 3, "header and two users:\n{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("alice") && l.contains("OPERATOR"))
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("bob") && l.contains("VIEWER"))
    );

    // An API key: printed once on stdout, the note on stderr.
    let out = cli(&[
        "apikey",
        "create",
        "--username",
        "alice",
        "--name",
        "ci",
        "--role",
        "viewer",
        "--expires-days",
        "30",
    ])
    .output()
    .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let key = stdout.trim();
    assert!(aiops_engine::auth::api_key_prefix(key).is_some(), "{key}");
    assert!(
        stderr.contains("will not be shown again") && !stderr.contains(key),
        "{stderr}"
    );

    let engine = engine_on(&url).await;
    let principal = engine.authenticate(key).await.unwrap();
    assert_eq!(
        (principal.username.as_str(), principal.role),
        ("alice", Role::Viewer)
    );
    let alice = engine.user_by_username("alice").await.unwrap();
    let keys = engine
        .api_keys(
            aiops_engine::Caller::Local,
            alice.id,
            &aiops_engine::PageRequest::first(10),
        )
        .await
        .unwrap()
        .items;
    assert_eq!(keys.len(), 1);
    assert!(keys[0].expires_at.is_some());

    let out = cli(&["apikey", "list", "--username", "alice"])
        .output()
        .unwrap();
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains(&format!("aiops_{}_", keys[0].prefix)),
        "{stdout}"
    );
    assert!(!stdout.contains(key), "listing shows the prefix only");

    // More than the user's role is refused.
    let out = cli(&[
        "apikey",
        "create",
        "--username",
        "alice",
        "--name",
        "x",
        "--role",
        "admin",
    ])
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).1.contains("forbidden"), "{}", text(&out).1);

    let out = cli(&["apikey", "revoke", "--id", &keys[0].id.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(text(&out).0.contains("revoked"));
    assert!(matches!(
        engine.authenticate(key).await,
        Err(Error::Unauthenticated)
    ));
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

/// SQLite serves one process: while `aiops serve` holds a database file, a second
/// worker or a migration is refused with the reason (SQLite has no notifications
/// between processes: a second worker would never hear of a cancel). Short
/// administrative commands still work beside the server.
#[tokio::test]
async fn a_second_process_on_one_sqlite_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("one.db").display());
    let serve = common::serve::ServeProcess::start(&url, &[]).await;
    for args in [&["worker"][..], &["migrate"][..]] {
        let out = aiops()
            .args(args)
            .env("DATABASE_URL", &url)
            .env("AIOPS_LOG", "warn")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("in use by another process (aiops serve (pid"),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("use Postgres"), "{stderr}");
    }
    let out = aiops()
        .args(["user", "create", "--username", "beside", "--role", "viewer"])
        .env("DATABASE_URL", &url)
        .env("AIOPS_USER_PASSWORD", "a password of some length")
        .env("AIOPS_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(serve);
    // Once the server is gone, a worker may have the file.
    let mut worker = aiops()
        .arg("worker")
        .env("DATABASE_URL", &url)
        .env("AIOPS_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // It holds the file (its lock names it); a migration is refused because of it.
    let lock = dir.path().join("one.db.lock");
    let mut held = false;
    for _ in 0..200 {
        assert!(worker.try_wait().unwrap().is_none(), "the worker runs");
        if std::fs::read_to_string(&lock).is_ok_and(|s| s.starts_with("aiops worker (pid")) {
            held = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(held, "the worker took the database");
    let out = aiops()
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .env("AIOPS_LOG", "warn")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("(aiops worker (pid"));
    let _ = worker.kill();
    let _ = worker.wait();
}

#[test]
fn a_config_file_sits_below_the_environment_and_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let url = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
    let config = dir.path().join("aiops.toml");
    std::fs::write(&config, format!("database_url = \"{}\"\n", url("file.db"))).unwrap();
    let migrate = |env: Option<&str>, flag: Option<&str>| {
        let mut cmd = aiops();
        cmd.arg("--config").arg(&config).arg("migrate");
        cmd.env_remove("DATABASE_URL").env_remove("AIOPS_CONFIG");
        if let Some(url) = env {
            cmd.env("DATABASE_URL", url);
        }
        if let Some(url) = flag {
            cmd.args(["--database-url", url]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(migrate(None, None).contains(&url("file.db")), "the file");
    assert!(
        migrate(Some(&url("env.db")), None).contains(&url("env.db")),
        "the environment wins over the file"
    );
    assert!(
        migrate(Some(&url("env.db")), Some(&url("flag.db"))).contains(&url("flag.db")),
        "a flag wins over both"
    );

    // An unknown key (a typo) and a value of the wrong type are errors naming the
    // key and the file; nothing runs.
    for (text, expected) in [
        ("databse_url = \"x\"\n", "unknown key `databse_url`"),
        (
            "lease_ttl_ms = \"30s\"\n",
            "key `lease_ttl_ms`: invalid type",
        ),
    ] {
        std::fs::write(&config, text).unwrap();
        let out = aiops()
            .arg("--config")
            .arg(&config)
            .arg("migrate")
            .env_remove("DATABASE_URL")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(expected) && stderr.contains(&config.display().to_string()),
            "{stderr}"
        );
    }
}
