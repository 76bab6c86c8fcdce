//! Secrets at rest (issue 8, item 1): alert-source credentials are encrypted with
//! AES-256-GCM under the master key, bound to their row, never shown, rotatable —
//! on Postgres and SQLite, through the engine, GraphQL and real `aiops` processes.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use aiops_engine::auth::Role;
use aiops_engine::secrets::{Keyring, Secret, generate_key};
use aiops_engine::{Caller, Engine, EngineOptions, NewAlertSource, SourceAuth};
use common::{Backend, TestDb, fast_config, raw_db, serve_api, token_for};
use sea_orm::ConnectionTrait;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "prom-bearer-7a1f3c9e55d04b2f";
const PASSWORD: &str = "basic-pass-0e9d8c7b6a";

fn bearer(name: &str) -> NewAlertSource {
    NewAlertSource {
        name: name.into(),
        prometheus_url: Some("http://127.0.0.1:9/".into()),
        alertmanager_url: None,
        auth: SourceAuth::Bearer(Secret::new(TOKEN)),
        timeout: Duration::from_secs(5),
    }
}

/// The stored `auth_encrypted` of source `name`, read behind the engine's back.
async fn stored(url: &str, name: &str) -> String {
    let db = raw_db(url).await;
    let row = db
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            db.get_database_backend(),
            if db.get_database_backend() == sea_orm::DbBackend::Postgres {
                "SELECT auth_encrypted FROM alert_sources WHERE name = $1"
            } else {
                "SELECT auth_encrypted FROM alert_sources WHERE name = ?"
            },
            [name.into()],
        ))
        .await
        .unwrap()
        .expect("the row");
    row.try_get_by_index(0).unwrap()
}

async fn at_rest(backend: Backend) {
    let Some(db) = TestDb::migrated(backend).await else {
        return;
    };
    let ring = Keyring::new(&generate_key(), &[]).unwrap();
    let kid = ring.active_id().to_owned();
    let engine = common::keyed_engine(&db.url, Some(ring)).await;
    let source = engine
        .create_alert_source(Caller::Local, bearer("prod"))
        .await
        .unwrap();
    assert_eq!(source.auth_hint.as_deref(), Some("…4b2f"));
    let basic = engine
        .create_alert_source(
            Caller::Local,
            NewAlertSource {
                name: "staging".into(),
                alertmanager_url: Some("https://am.example:9093".into()),
                prometheus_url: None,
                auth: SourceAuth::Basic {
                    username: "ops".into(),
                    password: Secret::new(PASSWORD),
                },
                timeout: Duration::from_secs(5),
            },
        )
        .await
        .unwrap();
    assert_eq!(basic.username.as_deref(), Some("ops"));

    // Ciphertext at rest, under the active key, never the plaintext.
    let sealed = stored(&db.url, "prod").await;
    assert!(sealed.starts_with(&format!("v1:{kid}:")), "{sealed}");
    assert!(!sealed.contains(TOKEN) && !sealed.contains("4b2f"));
    let conn = engine.alert_source_connection("prod").await.unwrap();
    assert_eq!(conn.auth, SourceAuth::Bearer(Secret::new(TOKEN)));
    assert_eq!(
        conn.source.prometheus_url.as_deref(),
        Some("http://127.0.0.1:9")
    );
    assert_eq!(engine.check_secrets().await.unwrap(), 2);

    // A ciphertext pasted into another row does not decrypt there.
    let raw = raw_db(&db.url).await;
    let copy = if raw.get_database_backend() == sea_orm::DbBackend::Postgres {
        "UPDATE alert_sources SET auth_encrypted = $1 WHERE name = 'staging'"
    } else {
        "UPDATE alert_sources SET auth_encrypted = ? WHERE name = 'staging'"
    };
    raw.execute_raw(sea_orm::Statement::from_sql_and_values(
        raw.get_database_backend(),
        copy,
        [sealed.clone().into()],
    ))
    .await
    .unwrap();
    let err = engine.alert_source_connection("staging").await.unwrap_err();
    assert!(err.to_string().contains("does not decrypt"), "{err}");
    assert!(!err.to_string().contains(TOKEN));
    let err = engine.check_secrets().await.unwrap_err();
    assert!(err.to_string().contains("does not decrypt"), "{err}");

    // Bad input says what and where, and writes nothing.
    for (bad, want) in [
        (
            NewAlertSource {
                prometheus_url: Some("http://user:pw@prom:9090".into()),
                ..bearer("x1")
            },
            "prometheusUrl: must not carry a user",
        ),
        (
            NewAlertSource {
                prometheus_url: Some("prom:9090".into()),
                ..bearer("x2")
            },
            "prometheusUrl: must start with http",
        ),
        (
            NewAlertSource {
                prometheus_url: None,
                ..bearer("x3")
            },
            "needs a prometheusUrl",
        ),
        (bearer("prod"), "already exists"),
        (bearer("bad name"), "name:"),
    ] {
        let err = engine
            .create_alert_source(Caller::Local, bad)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(want), "{err} (wanted {want})");
    }
    assert_eq!(engine.alert_sources().await.unwrap().len(), 2);

    // Without a key nothing is stored and nothing read.
    let keyless = common::keyed_engine(&db.url, None).await;
    let err = keyless
        .create_alert_source(Caller::Local, bearer("nokey"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("AIOPS_MASTER_KEY"), "{err}");
    let err = keyless.check_secrets().await.unwrap_err();
    assert!(err.to_string().contains("no master key"), "{err}");
    assert_eq!(keyless.alert_sources().await.unwrap().len(), 2);
}
both_backends!(
    credentials_are_encrypted_at_rest_and_bound_to_their_row,
    at_rest
);

async fn rotation(backend: Backend) {
    let Some(db) = TestDb::migrated(backend).await else {
        return;
    };
    let (k1, k2) = (generate_key(), generate_key());
    let old = common::keyed_engine(&db.url, Some(Keyring::new(&k1, &[]).unwrap())).await;
    old.create_alert_source(Caller::Local, bearer("a"))
        .await
        .unwrap();
    old.create_alert_source(Caller::Local, bearer("b"))
        .await
        .unwrap();
    let before = stored(&db.url, "a").await;

    // The new key alone cannot read the old values, and says which key is missing.
    let new_only = common::keyed_engine(&db.url, Some(Keyring::new(&k2, &[]).unwrap())).await;
    let err = new_only.check_secrets().await.unwrap_err();
    assert!(err.to_string().contains("AIOPS_OLD_MASTER_KEYS"), "{err}");

    // New key active, old kept: old values decrypt; rotation moves them, once.
    let both = common::keyed_engine(&db.url, Some(Keyring::new(&k2, &[&k1]).unwrap())).await;
    assert_eq!(both.check_secrets().await.unwrap(), 2);
    let report = both.rotate_secrets(Caller::Local).await.unwrap();
    assert_eq!((report.rotated, report.current), (2, 0));
    let report = both.rotate_secrets(Caller::Local).await.unwrap();
    assert_eq!((report.rotated, report.current), (0, 2), "idempotent");
    let after = stored(&db.url, "a").await;
    assert_ne!(before, after);
    // Now the old key can go.
    assert_eq!(new_only.check_secrets().await.unwrap(), 2);
    assert_eq!(
        new_only.alert_source_connection("a").await.unwrap().auth,
        SourceAuth::Bearer(Secret::new(TOKEN))
    );
    let err = old.alert_source_connection("a").await.unwrap_err();
    assert!(err.to_string().contains("not configured"), "{err}");
}
both_backends!(rotation_reencrypts_and_old_keys_still_decrypt, rotation);

async fn over_graphql(backend: Backend) {
    let Some(db) = TestDb::migrated(backend).await else {
        return;
    };
    let engine =
        common::keyed_engine(&db.url, Some(Keyring::new(&generate_key(), &[]).unwrap())).await;
    let shutdown = CancellationToken::new();
    let addr = serve_api(&engine, shutdown.clone()).await;
    let admin = common::Api::new(&addr, Some(&token_for(&engine, "root", Role::Admin).await));
    let viewer = common::Api::new(&addr, Some(&token_for(&engine, "eve", Role::Viewer).await));
    const CREATE: &str = "mutation($i: CreateAlertSourceInput!) { createAlertSource(input: $i) { id name prometheusUrl auth username authHint timeoutMs } }";
    let input = json!({ "i": { "name": "prod", "prometheusUrl": "http://prom:9090",
        "auth": "BASIC", "username": "ops", "secret": PASSWORD, "timeoutMs": 5000 } });
    let resp = viewer.gql(CREATE, input.clone()).await;
    assert_eq!(
        resp["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{resp}"
    );
    let created = admin.data(CREATE, input).await["createAlertSource"].clone();
    assert_eq!(
        created["authHint"], "…",
        "a password shows nothing: {created}"
    );
    assert_eq!(created["auth"], "BASIC");
    let resp = admin
        .gql(
            CREATE,
            json!({ "i": { "name": "p2", "prometheusUrl": "http://prom:9090", "auth": "BEARER" } }),
        )
        .await;
    assert_eq!(
        resp["errors"][0]["extensions"]["code"], "VALIDATION_FAILED",
        "{resp}"
    );
    let listed = viewer
        .data(
            "{ alertSources { name auth username authHint } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listed["alertSources"],
        json!([{ "name": "prod", "auth": "BASIC", "username": "ops", "authHint": "…" }])
    );
    let resp = admin
        .gql("mutation { deleteAlertSource(name: \"prod\") }", json!({}))
        .await;
    assert_eq!(resp["data"]["deleteAlertSource"], true, "{resp}");
    // Nothing any client received carries the secret.
    for body in admin
        .transcript
        .lock()
        .unwrap()
        .iter()
        .chain(viewer.transcript.lock().unwrap().iter())
    {
        assert!(!body.contains(PASSWORD), "{body}");
    }
    shutdown.cancel();
}
both_backends!(
    alert_sources_over_graphql_never_show_the_secret,
    over_graphql
);

/// What `aiops serve` wrote to stderr until it exited (or `within` passed).
fn serve_once(
    db_url: &str,
    data_dir: &std::path::Path,
    env: &[(&str, &str)],
) -> (Option<i32>, String) {
    let log = data_dir.join("serve.log");
    let mut cmd = common::aiops_process("serve");
    cmd.env("DATABASE_URL", db_url)
        .env(
            "AIOPS_LISTEN",
            format!("127.0.0.1:{}", common::serve::free_port()),
        )
        .env("AIOPS_DATA_DIR", data_dir)
        .env("AIOPS_BOOTSTRAP_ADMIN_PASSWORD", "served admin password 42")
        .env("AIOPS_LOG", "info")
        .env_remove("AIOPS_MASTER_KEY")
        .stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("aiops serve starting") || std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, std::fs::read_to_string(&log).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_generates_a_key_on_sqlite_and_refuses_secrets_it_cannot_read() {
    let Some(db) = TestDb::migrated(Backend::Sqlite).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // First start: a key is generated into the data directory (0600), and said so.
    let (status, log) = serve_once(&db.url, dir.path(), &[]);
    assert_eq!(status, None, "serve starts: {log}");
    let key_file = dir.path().join("master.key");
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert!(log.contains("generated one into this file"), "{log}");
    assert!(!log.contains(key.trim()), "the key itself is never logged");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A secret stored under that key (the CLI reads the same file).
    let engine = common::keyed_engine(&db.url, Some(Keyring::new(key.trim(), &[]).unwrap())).await;
    engine
        .create_alert_source(Caller::Local, bearer("prod"))
        .await
        .unwrap();
    drop(engine);
    let (status, log) = serve_once(&db.url, dir.path(), &[]);
    assert_eq!(status, None, "the same key reads it: {log}");
    // Another key: serve refuses to start, saying why, without the secret.
    let other = generate_key();
    let (status, log) = serve_once(&db.url, dir.path(), &[("AIOPS_MASTER_KEY", &other)]);
    assert_eq!(status, Some(1), "{log}");
    assert!(
        log.contains("not configured") && log.contains("AIOPS_OLD_MASTER_KEYS"),
        "{log}"
    );
    for secret in [TOKEN, other.as_str(), key.trim()] {
        assert!(!log.contains(secret), "{log}");
    }
    // The key file gone and no key given: refused, and no new key is made (it
    // could not read the stored secrets).
    std::fs::remove_file(&key_file).unwrap();
    let (status, log) = serve_once(&db.url, dir.path(), &[]);
    assert_eq!(status, Some(1), "{log}");
    assert!(log.contains("no master key is configured"), "{log}");
    assert!(!key_file.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_adds_lists_rotates_and_never_prints_the_secret() {
    let Some(db) = TestDb::migrated(Backend::Sqlite).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (k1, k2) = (generate_key(), generate_key());
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_aiops"));
        cmd.args(args)
            .env("DATABASE_URL", &db.url)
            .env("AIOPS_DATA_DIR", dir.path())
            .env_remove("AIOPS_MASTER_KEY")
            .env_remove("AIOPS_OLD_MASTER_KEYS");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, out) = run(
        &[
            "source",
            "add",
            "--name",
            "prod",
            "--prometheus-url",
            "http://prom:9090",
            "--auth",
            "bearer",
        ],
        &[("AIOPS_MASTER_KEY", &k1), ("AIOPS_SOURCE_SECRET", TOKEN)],
    );
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run(&["source", "list"], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("\"auth_hint\":\"…4b2f\"") && !out.contains(TOKEN),
        "{out}"
    );
    let (code, out) = run(&["secrets", "rotate"], &[("AIOPS_MASTER_KEY", &k2)]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("AIOPS_OLD_MASTER_KEYS"), "{out}");
    let both = [
        ("AIOPS_MASTER_KEY", k2.as_str()),
        ("AIOPS_OLD_MASTER_KEYS", k1.as_str()),
    ];
    let (code, out) = run(&["secrets", "rotate"], &both);
    assert_eq!(
        (code, out.trim()),
        (
            Some(0),
            "1 secret(s) re-encrypted, 0 already under the active key"
        )
    );
    let (code, out) = run(&["secrets", "check"], &[("AIOPS_MASTER_KEY", &k2)]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run(&["source", "remove", "--name", "prod"], &[]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run(&["source", "remove", "--name", "prod"], &[]);
    assert_eq!(code, Some(1), "{out}");
}

async fn default_source(backend: Backend) {
    let Some(db) = TestDb::migrated(backend).await else {
        return;
    };
    let bare =
        common::keyed_engine(&db.url, Some(Keyring::new(&generate_key(), &[]).unwrap())).await;
    let err = bare.alert_source_for(None).await.unwrap_err();
    assert!(err.to_string().contains("AIOPS_PROMETHEUS_URL"), "{err}");
    // The environment's source, for teams that name none.
    let env = aiops_engine::DefaultAlertSource::new(Some("http://prom:9090/".into()), None)
        .unwrap()
        .expect("a default");
    let with_env = Engine::connect(
        &db.url,
        EngineOptions {
            config: fast_config(),
            keyring: Some(Arc::new(Keyring::new(&generate_key(), &[]).unwrap())),
            default_source: Some(env),
            ..EngineOptions::default()
        },
    )
    .await
    .unwrap();
    let conn = with_env.alert_source_for(None).await.unwrap();
    assert_eq!(
        (
            conn.source.name.as_str(),
            conn.source.prometheus_url.as_deref(),
            &conn.auth
        ),
        ("default", Some("http://prom:9090"), &SourceAuth::None)
    );
    // A stored source called "default" wins over the environment; a named one is used
    // as named, and a missing name is an error naming it.
    with_env
        .create_alert_source(Caller::Local, bearer("default"))
        .await
        .unwrap();
    with_env
        .create_alert_source(Caller::Local, bearer("eu"))
        .await
        .unwrap();
    let conn = with_env.alert_source_for(None).await.unwrap();
    assert_eq!(conn.auth, SourceAuth::Bearer(Secret::new(TOKEN)));
    assert_eq!(
        with_env
            .alert_source_for(Some("eu"))
            .await
            .unwrap()
            .source
            .name,
        "eu"
    );
    let err = with_env.alert_source_for(Some("us")).await.unwrap_err();
    assert!(err.to_string().contains("us"), "{err}");
    // Bad environment URLs are refused naming the variable.
    let err = aiops_engine::DefaultAlertSource::new(None, Some("am:9093".into())).unwrap_err();
    assert!(err.to_string().contains("AIOPS_ALERTMANAGER_URL"), "{err}");
    assert_eq!(
        aiops_engine::DefaultAlertSource::new(None, None).unwrap(),
        None
    );
}
both_backends!(teams_without_a_source_use_the_default_one, default_source);
