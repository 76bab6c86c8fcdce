//! The path a new user takes: help that explains every flag, errors that say what is
//! wrong, a followed run that says when nothing executes it, a password that is not
//! shown, and users an admin can disable.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use aiops_engine::{Caller, Error, Role};
use common::serve::ServeProcess;
use common::{Api, Backend, Harness, TestDb, serve_api, token_for};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn aiops() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aiops"));
    cmd.env_remove("DATABASE_URL").env_remove("AIOPS_LOG");
    cmd
}

fn help_of(path: &[&str]) -> String {
    let out = aiops().args(path).arg("--help").output().unwrap();
    assert!(out.status.success(), "{path:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands a help text lists (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Each option of a help text with its description (clap puts it on the option's
/// line, or on the lines below it when descriptions are long).
fn options(help: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = help
        .lines()
        .skip_while(|l| *l != "Options:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if !trimmed.starts_with('-') {
            continue;
        }
        let flag = trimmed
            .split_whitespace()
            .find(|w| w.starts_with("--"))
            .unwrap_or(trimmed)
            .trim_end_matches(',')
            .to_owned();
        // Text after the flag and its value name on the same line, else the next lines.
        let same_line = trimmed.split("  ").skip(1).collect::<Vec<_>>().join(" ");
        let below: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| !l.trim_start().starts_with('-'))
            .map(|l| l.trim())
            .collect();
        found.push((flag, format!("{} {}", same_line.trim(), below.join(" "))));
    }
    found
}

#[test]
fn every_command_and_flag_is_described_with_its_environment_variable() {
    let mut queue: Vec<Vec<String>> = vec![vec![]];
    let mut seen = 0;
    while let Some(path) = queue.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let help = help_of(&args);
        seen += 1;
        for (flag, description) in options(&help) {
            assert!(
                description.trim().len() > 8,
                "`aiops {} --help`: {flag} has no description",
                args.join(" ")
            );
        }
        // What configures a long-running process can also come from the environment.
        if matches!(args.as_slice(), ["serve"] | ["worker"]) {
            for (flag, description) in options(&help) {
                if flag != "--help" {
                    assert!(
                        description.contains("[env: "),
                        "`aiops {}`: {flag} has no environment variable",
                        args.join(" ")
                    );
                }
            }
        }
        for sub in subcommands(&help) {
            let mut next = path.clone();
            next.push(sub);
            queue.push(next);
        }
    }
    // aiops, 17 commands, 2 team, 4 user, 3 apikey, 3 source, 7 schedule, 3 webhook,
    // 3 receiver, 3 credential, 3 provider, 4 model and 2 secrets subcommands.
    assert_eq!(seen, 55, "every command's help was read");
    let top = help_of(&[]);
    assert!(top.contains("AIOPS_LOG"), "{top}");
    assert!(help_of(&["serve"]).contains("AIOPS_BOOTSTRAP_ADMIN_PASSWORD"));
    assert!(help_of(&["user", "create"]).contains("AIOPS_USER_PASSWORD"));
}

/// A Postgres database URL on the test server naming a database that does not exist.
async fn missing_database_url() -> Option<String> {
    let db = TestDb::create(Backend::Postgres).await?;
    let base = &db.url[..db.url.rfind('/').unwrap()];
    Some(format!(
        "{base}/aiops_missing_{}",
        uuid::Uuid::now_v7().simple()
    ))
}

fn stderr_of(args: &[&str]) -> String {
    let out = aiops().args(args).output().unwrap();
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

#[tokio::test]
async fn postgres_connection_errors_say_what_is_wrong_once() {
    let Some(missing) = missing_database_url().await else {
        return;
    };
    let name = &missing[missing.rfind('/').unwrap() + 1..];
    let err = stderr_of(&["migrate", "--database-url", &missing]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "database \"{name}\" does not exist on 127.0.0.1:5432"
        )),
        "{err}"
    );
    assert_eq!(err.matches("does not exist").count(), 1, "said once: {err}");
    assert!(!err.contains("line"), "no source line of the server: {err}");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refused = format!("postgres://app:s3cret@127.0.0.1:{port}/aiops");
    let err = stderr_of(&["user", "list", "--database-url", &refused]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("connection refused by 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
    assert!(!err.contains("timed out"), "{err}");
}

#[test]
fn an_sqlite_path_creates_only_its_own_directory() {
    let root = tempfile::tempdir().unwrap();
    let deep = root.path().join("typo/more/aiops.db");
    let url = format!("sqlite://{}", deep.display());
    let err = stderr_of(&["user", "list", "--database-url", &url]);
    assert!(err.contains("does not exist"), "{err}");
    assert!(!root.path().join("typo").exists(), "no directory trail");

    let own = root.path().join("data/aiops.db");
    let out = aiops()
        .args(["user", "list", "--database-url"])
        .arg(format!("sqlite://{}", own.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(own.exists());
}

#[test]
fn a_yaml_error_says_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("team.yaml");
    std::fs::write(&file, "name: [unclosed\nnodes: {").unwrap();
    let out = aiops()
        .args(["team", "validate", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("YAML"), "{text}");
}

/// `run --follow` with nothing executing runs says so and which database it used;
/// with a server it ends with the run's output and exits by the run's outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_run_says_when_nothing_executes_it_and_ends_with_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("aiops.db").display());
    let mut child = aiops()
        .args([
            "run",
            "--follow",
            "--unclaimed-warning-secs",
            "1",
            "--database-url",
            &url,
        ])
        .args(["--input", r#"{"steps":[{"kind":"noop"}]}"#])
        .env("AIOPS_ENABLE_SCRIPT_WORKFLOW", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let warning = tokio::task::spawn_blocking(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("no worker has claimed"))
    });
    let warning = tokio::time::timeout(Duration::from_secs(30), warning)
        .await
        .expect("the warning comes")
        .unwrap()
        .expect("the warning is on stderr");
    child.kill().unwrap();
    let _ = child.wait();
    assert!(warning.contains("after 1 s"), "{warning}");
    assert!(warning.contains(&url), "names the database: {warning}");

    // With a server executing runs: the output is the last line; failure exits 1.
    let served = ServeProcess::start(&url, &[("AIOPS_ENABLE_SCRIPT_WORKFLOW", "1")]).await;
    let follow = |steps: Value| {
        aiops()
            .args(["run", "--follow", "--database-url", &url, "--input"])
            .arg(json!({ "steps": steps }).to_string())
            .env("AIOPS_ENABLE_SCRIPT_WORKFLOW", "1")
            .output()
            .unwrap()
    };
    let out = follow(json!([{ "kind": "output", "value": { "answer": 42 } }]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "SUCCEEDED");
    assert_eq!(last["output"]["output"]["answer"], 42);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("no worker"));

    let out = follow(json!([{ "kind": "fail", "times": 1, "permanent": true }]));
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "FAILED");
    assert!(last["error"].as_str().unwrap().contains("scripted failure"));
    drop(served);
}

/// `user create` at a terminal: the password is asked twice and never echoed.
#[test]
fn user_create_does_not_echo_the_password() {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("aiops.db").display());
    let (mut master, slave) = unsafe {
        let (mut m, mut s) = (0, 0);
        assert_eq!(
            libc::openpty(
                &mut m,
                &mut s,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null()
            ),
            0
        );
        (std::fs::File::from_raw_fd(m), OwnedFd::from_raw_fd(s))
    };
    let mut cmd = aiops();
    cmd.args([
        "user",
        "create",
        "--username",
        "alice",
        "--role",
        "viewer",
        "--database-url",
        &url,
    ])
    .env_remove("AIOPS_USER_PASSWORD")
    .stdin(slave.try_clone().unwrap())
    .stdout(slave.try_clone().unwrap())
    .stderr(slave);
    // The terminal becomes the child's controlling terminal (what /dev/tty opens).
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let password = "a password nobody sees";
    let mut seen = Vec::new();
    let read_until = |master: &mut std::fs::File, what: &str, seen: &mut Vec<u8>| {
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(seen).contains(what) {
            let n = master.read(&mut buf).unwrap();
            assert!(
                n > 0,
                "terminal closed before {what:?}: {}",
                String::from_utf8_lossy(seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    };
    // Typing before the prompt has turned echo off would be echoed by the terminal
    // itself: wait, as a person would, until it is off.
    let echo_off = |master: &std::fs::File| {
        use std::os::fd::AsRawFd;
        for _ in 0..500 {
            let mut t: libc::termios = unsafe { std::mem::zeroed() };
            assert_eq!(unsafe { libc::tcgetattr(master.as_raw_fd(), &mut t) }, 0);
            if t.c_lflag & libc::ECHO == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("echo was never turned off");
    };
    read_until(&mut master, "password", &mut seen);
    echo_off(&master);
    writeln!(master, "{password}").unwrap();
    read_until(&mut master, "again", &mut seen);
    echo_off(&master);
    writeln!(master, "{password}").unwrap();
    read_until(&mut master, "created", &mut seen);
    assert!(child.wait().unwrap().success());
    let screen = String::from_utf8_lossy(&seen);
    assert!(
        !screen.contains(password),
        "the password was shown: {screen}"
    );
    assert!(
        !screen.contains("nobody"),
        "no part of it was shown: {screen}"
    );
}

async fn disable_users(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let stop = CancellationToken::new();
    let addr = serve_api(&h.engine, stop.clone()).await;
    let admin = Api::new(
        &addr,
        Some(&token_for(&h.engine, "root", Role::Admin).await),
    );
    let operator_token = token_for(&h.engine, "oper", Role::Operator).await;
    let operator = admin.with_token(Some(&operator_token));
    let me = "query { me { userId } }";
    let operator_id = operator.data(me, json!({})).await["me"]["userId"].clone();
    let admin_id = admin.data(me, json!({})).await["me"]["userId"].clone();
    let disable = "mutation($id: UUID!) { disableUser(id: $id) { username disabled } }";
    let enable = "mutation($id: UUID!) { enableUser(id: $id) { username disabled } }";

    // Only admins; never themselves.
    let (code, _) = operator
        .error_code(disable, json!({ "id": admin_id }))
        .await;
    assert_eq!(code, "FORBIDDEN");
    let (code, err) = admin.error_code(disable, json!({ "id": admin_id })).await;
    assert_eq!(code, "CONFLICT", "{err}");

    let user = admin.data(disable, json!({ "id": operator_id })).await;
    assert_eq!(
        user["disableUser"],
        json!({ "username": "oper", "disabled": true })
    );
    let (code, _) = operator.error_code(me, json!({})).await;
    assert_eq!(code, "UNAUTHENTICATED", "their keys stop at once");
    assert!(h.engine.login("oper", common::TEST_PASSWORD).await.is_err());
    let user = admin.data(enable, json!({ "id": operator_id })).await;
    assert_eq!(user["enableUser"]["disabled"], false);
    operator.data(me, json!({})).await;

    // The last enabled admin stays enabled, whoever asks.
    let root = h.engine.user_by_username("root").await.unwrap();
    let refused = h
        .engine
        .set_user_disabled(Caller::Local, root.id, true)
        .await;
    assert!(
        matches!(refused, Err(Error::Conflict(ref m)) if m.contains("last enabled admin")),
        "{refused:?}"
    );

    // Two admins disabling each other at once (root disabled meanwhile): one stays.
    for round in 0..10 {
        let mut pair = Vec::new();
        for name in ["a", "b"] {
            let user = h
                .engine
                .create_user(
                    &format!("{name}-admin-{round}"),
                    common::TEST_PASSWORD,
                    Role::Admin,
                )
                .await
                .unwrap();
            let principal = h
                .engine
                .login(&user.username, common::TEST_PASSWORD)
                .await
                .unwrap();
            pair.push((user, principal));
        }
        h.engine
            .set_user_disabled(Caller::Local, root.id, true)
            .await
            .unwrap();
        let [(a, pa), (b, pb)] = &pair[..] else {
            unreachable!()
        };
        let (ra, rb) = tokio::join!(
            h.engine
                .set_user_disabled(Caller::Principal(pa), b.id, true),
            h.engine
                .set_user_disabled(Caller::Principal(pb), a.id, true),
        );
        assert_eq!(
            ra.is_ok() as u8 + rb.is_ok() as u8,
            1,
            "round {round}: {ra:?} {rb:?}"
        );
        let refused = if ra.is_ok() { rb } else { ra };
        assert!(matches!(refused, Err(Error::Conflict(_))), "{refused:?}");
        // Back to root as the only enabled admin.
        h.engine
            .set_user_disabled(Caller::Local, root.id, false)
            .await
            .unwrap();
        for (user, _) in &pair {
            h.engine
                .set_user_disabled(Caller::Local, user.id, true)
                .await
                .unwrap();
        }
    }
    stop.cancel();
}
both_backends!(admins_disable_and_enable_users, disable_users);

#[test]
fn user_disable_and_enable_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("aiops.db").display());
    let cli = |args: &[&str]| {
        aiops()
            .args(args)
            .args(["--database-url", &url])
            .env("AIOPS_USER_PASSWORD", common::TEST_PASSWORD)
            .output()
            .unwrap()
    };
    for (name, role) in [("boss", "admin"), ("carol", "operator")] {
        let out = cli(&["user", "create", "--username", name, "--role", role]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = cli(&["user", "disable", "--username", "carol"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "user \"carol\" disabled"
    );
    let list = String::from_utf8(cli(&["user", "list"]).stdout).unwrap();
    let carol = list.lines().find(|l| l.contains("carol")).unwrap();
    assert!(carol.contains("disabled"), "{list}");

    let out = cli(&["user", "disable", "--username", "boss"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("last enabled admin"), "{err}");

    let out = cli(&["user", "enable", "--username", "carol"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "user \"carol\" enabled"
    );
    let out = cli(&["user", "disable", "--username", "nobody"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nobody"),
        "names the user"
    );
}

/// A taken port fails `serve` at once, before it creates, migrates or bootstraps
/// anything.
#[test]
fn serve_binds_its_port_before_touching_the_database() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("data/aiops.db");
    let out = aiops()
        .args(["serve", "--listen", &addr, "--database-url"])
        .arg(format!("sqlite://{}", database.display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("binding {addr}")), "{err}");
    assert!(
        !dir.path().join("data").exists(),
        "nothing was created: {err}"
    );
}
