//! Remediation webhooks: admins configure them (the signing secret sealed at rest,
//! never shown, rotated with the other secrets), and `post_action` posts a signed,
//! versioned payload with an idempotency key to a real HTTP receiver on loopback —
//! on Postgres and SQLite, through the engine, GraphQL and real `aiops` processes.

#[macro_use]
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aiops_engine::auth::Role;
use aiops_engine::secrets::{Keyring, Secret, generate_key};
use aiops_engine::tools::{ErrorKind, action_payload, post_action};
use aiops_engine::{
    Caller, Engine, EngineOptions, NewAlertSource, NewWebhook, Principal, RunId, SourceAuth,
    UserId, WebhookTarget,
};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::{Backend, TestDb, fast_config, raw_db, serve_api, token_for};
use hmac::{Hmac, Mac};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "whsec-3b9f0c1d2e4a5f68";

fn hook(name: &str, url: &str) -> NewWebhook {
    NewWebhook {
        name: name.into(),
        url: url.into(),
        secret: Secret::new(SECRET),
        timeout_ms: None,
    }
}

/// A statement with `$n` placeholders on Postgres, `?` on SQLite.
fn statement(
    db: &sea_orm::DatabaseConnection,
    pg: &str,
    values: Vec<sea_orm::Value>,
) -> sea_orm::Statement {
    let backend = db.get_database_backend();
    let sql = if backend == sea_orm::DbBackend::Postgres {
        pg.to_owned()
    } else {
        pg.replace("$1", "?")
    };
    sea_orm::Statement::from_sql_and_values(backend, sql, values)
}

/// The stored `secret_encrypted` of webhook `name`, read behind the engine's back.
async fn stored(url: &str, name: &str) -> String {
    let db = raw_db(url).await;
    let row = db
        .query_one_raw(statement(
            &db,
            "SELECT secret_encrypted FROM webhooks WHERE name = $1",
            vec![name.into()],
        ))
        .await
        .unwrap()
        .expect("the row");
    row.try_get_by_index(0).unwrap()
}

/// An operator acting over the API: below admin.
fn operator() -> Principal {
    Principal {
        user_id: UserId::new(),
        username: "olga".into(),
        role: Role::Operator,
        api_key_id: None,
    }
}

async fn at_rest(backend: Backend) {
    let Some(db) = TestDb::migrated(backend).await else {
        return;
    };
    let ring = Keyring::new(&generate_key(), &[]).unwrap();
    let kid = ring.active_id().to_owned();
    let engine = common::keyed_engine(&db.url, Some(ring)).await;
    let created = engine
        .create_webhook(
            Caller::Local,
            NewWebhook {
                timeout_ms: Some(2500),
                ..hook("restart", " https://remediate.example/hooks/aiops/ ")
            },
        )
        .await
        .unwrap();
    assert_eq!(created.secret_hint, "…5f68");
    assert_eq!(
        created.url, "https://remediate.example/hooks/aiops/",
        "exact, trimmed"
    );
    assert_eq!(created.timeout_ms, 2500);
    let default = engine
        .create_webhook(Caller::Local, hook("scale", "http://127.0.0.1:9/scale"))
        .await
        .unwrap();
    assert_eq!(default.timeout_ms, 10_000);

    // Ciphertext at rest, under the active key, never the plaintext.
    let sealed = stored(&db.url, "restart").await;
    assert!(sealed.starts_with(&format!("v1:{kid}:")), "{sealed}");
    assert!(!sealed.contains(SECRET) && !sealed.contains("5f68"));
    let target = engine.webhook_target("restart").await.unwrap();
    assert_eq!(
        (
            target.name.as_str(),
            target.url.as_str(),
            target.secret.expose()
        ),
        ("restart", "https://remediate.example/hooks/aiops/", SECRET)
    );
    assert_eq!(target.timeout, Duration::from_millis(2500));
    assert!(!format!("{target:?}").contains(SECRET), "{target:?}");
    assert_eq!(engine.check_secrets().await.unwrap(), 2);
    let listed = engine.webhooks().await.unwrap();
    assert_eq!(
        listed.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
        ["restart", "scale"]
    );
    assert!(!format!("{listed:?}").contains(SECRET));

    // A ciphertext pasted into another row does not decrypt there, and the error
    // says so without the secret.
    let raw = raw_db(&db.url).await;
    raw.execute_raw(statement(
        &raw,
        "UPDATE webhooks SET secret_encrypted = $1 WHERE name = 'scale'",
        vec![sealed.clone().into()],
    ))
    .await
    .unwrap();
    let err = engine.webhook_target("scale").await.unwrap_err();
    assert!(err.to_string().contains("does not decrypt"), "{err}");
    assert!(!err.to_string().contains(SECRET));
    let err = engine.check_secrets().await.unwrap_err();
    assert!(
        err.to_string().contains("webhooks.secret_encrypted"),
        "{err}"
    );

    // A missing webhook is named.
    let err = engine.webhook_target("nope").await.unwrap_err();
    assert!(matches!(err, aiops_engine::Error::NotFound { .. }), "{err}");
    assert_eq!(err.to_string(), "webhook nope not found");

    // Only admins manage webhooks.
    let operator = operator();
    let err = engine
        .create_webhook(Caller::Principal(&operator), hook("x0", "http://h/x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, aiops_engine::Error::Forbidden { .. }),
        "{err}"
    );
    let err = engine
        .delete_webhook(Caller::Principal(&operator), "restart")
        .await
        .unwrap_err();
    assert!(
        matches!(err, aiops_engine::Error::Forbidden { .. }),
        "{err}"
    );

    // Bad input says what and where, and writes nothing.
    for (bad, want) in [
        (
            hook("x1", "http://user:pw@hooks:8080/x"),
            "url: must not carry a user",
        ),
        (hook("x2", "hooks:8080/x"), "url: must start with http"),
        (hook("x3", "ftp://hooks/x"), "url: must start with http"),
        (hook("x4", "  "), "url: required"),
        (hook("x5", "https:///x"), "url: has no host"),
        (
            NewWebhook {
                secret: Secret::new("short-secret"),
                ..hook("x6", "http://h/x")
            },
            "secret: at least 16 characters",
        ),
        (
            NewWebhook {
                timeout_ms: Some(0),
                ..hook("x7", "http://h/x")
            },
            "timeoutMs:",
        ),
        (
            NewWebhook {
                timeout_ms: Some(300_001),
                ..hook("x8", "http://h/x")
            },
            "timeoutMs:",
        ),
        (hook("restart", "http://h/x"), "already exists"),
        (hook("bad name", "http://h/x"), "name:"),
    ] {
        let err = engine.create_webhook(Caller::Local, bad).await.unwrap_err();
        assert!(err.to_string().contains(want), "{err} (wanted {want})");
        assert!(!err.to_string().contains(SECRET), "{err}");
    }
    assert_eq!(engine.webhooks().await.unwrap().len(), 2);

    // Without a key nothing is stored.
    let keyless = common::keyed_engine(&db.url, None).await;
    let err = keyless
        .create_webhook(Caller::Local, hook("nokey", "http://h/x"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("AIOPS_MASTER_KEY"), "{err}");
    let err = keyless.check_secrets().await.unwrap_err();
    assert!(err.to_string().contains("no master key"), "{err}");

    engine.delete_webhook(Caller::Local, "scale").await.unwrap();
    let err = engine
        .delete_webhook(Caller::Local, "scale")
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "webhook scale not found");
    assert_eq!(engine.webhooks().await.unwrap().len(), 1);
}
both_backends!(webhook_secrets_are_sealed_at_rest_and_checked, at_rest);

async fn rotation(backend: Backend) {
    let Some(db) = TestDb::migrated(backend).await else {
        return;
    };
    let (k1, k2) = (generate_key(), generate_key());
    let old = common::keyed_engine(&db.url, Some(Keyring::new(&k1, &[]).unwrap())).await;
    old.create_webhook(Caller::Local, hook("restart", "http://h/restart"))
        .await
        .unwrap();
    old.create_alert_source(
        Caller::Local,
        NewAlertSource {
            name: "prod".into(),
            prometheus_url: Some("http://prom:9090".into()),
            alertmanager_url: None,
            auth: SourceAuth::Bearer(Secret::new("prom-bearer-7a1f3c9e55d04b2f")),
            timeout: Duration::from_secs(5),
        },
    )
    .await
    .unwrap();
    let before = stored(&db.url, "restart").await;

    let new_only = Keyring::new(&k2, &[]).unwrap();
    let new_kid = new_only.active_id().to_owned();
    let new_only = common::keyed_engine(&db.url, Some(new_only)).await;
    let err = new_only.webhook_target("restart").await.unwrap_err();
    assert!(err.to_string().contains("AIOPS_OLD_MASTER_KEYS"), "{err}");

    // Rotation counts the webhook's secret with the source's, once.
    let both = common::keyed_engine(&db.url, Some(Keyring::new(&k2, &[&k1]).unwrap())).await;
    assert_eq!(both.check_secrets().await.unwrap(), 2);
    let report = both.rotate_secrets(Caller::Local).await.unwrap();
    assert_eq!((report.rotated, report.current), (2, 0));
    let report = both.rotate_secrets(Caller::Local).await.unwrap();
    assert_eq!((report.rotated, report.current), (0, 2), "idempotent");
    let after = stored(&db.url, "restart").await;
    assert_ne!(before, after);
    assert!(after.starts_with(&format!("v1:{new_kid}:")), "{after}");

    // The old key can go: the new one alone reads the re-sealed secret.
    assert_eq!(new_only.check_secrets().await.unwrap(), 2);
    assert_eq!(
        new_only
            .webhook_target("restart")
            .await
            .unwrap()
            .secret
            .expose(),
        SECRET
    );
    let err = old.webhook_target("restart").await.unwrap_err();
    assert!(err.to_string().contains("not configured"), "{err}");
    let err = old
        .rotate_secrets(Caller::Principal(&operator()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, aiops_engine::Error::Forbidden { .. }),
        "{err}"
    );
}
both_backends!(rotation_reseals_webhook_secrets, rotation);

async fn over_graphql(backend: Backend) {
    let Some(db) = TestDb::migrated(backend).await else {
        return;
    };
    let engine =
        common::keyed_engine(&db.url, Some(Keyring::new(&generate_key(), &[]).unwrap())).await;
    let shutdown = CancellationToken::new();
    let addr = serve_api(&engine, shutdown.clone()).await;
    let admin = common::Api::new(&addr, Some(&token_for(&engine, "root", Role::Admin).await));
    let operator = common::Api::new(
        &addr,
        Some(&token_for(&engine, "olga", Role::Operator).await),
    );
    let viewer = common::Api::new(&addr, Some(&token_for(&engine, "eve", Role::Viewer).await));
    const CREATE: &str = "mutation($i: CreateWebhookInput!) { createWebhook(input: $i) { id name url secretHint timeoutMs } }";
    let input = json!({ "i": { "name": "restart", "url": "https://remediate.example/hook",
        "secret": SECRET, "timeoutMs": 5000 } });
    for forbidden in [&viewer, &operator] {
        let resp = forbidden.gql(CREATE, input.clone()).await;
        assert_eq!(
            resp["errors"][0]["extensions"]["code"], "FORBIDDEN",
            "{resp}"
        );
    }
    let created = admin.data(CREATE, input).await["createWebhook"].clone();
    assert_eq!(created["secretHint"], "…5f68", "{created}");
    assert_eq!(created["timeoutMs"], 5000);
    let resp = admin
        .gql(
            CREATE,
            json!({ "i": { "name": "bad", "url": "https://ops:pw@remediate.example/hook",
                "secret": SECRET } }),
        )
        .await;
    assert_eq!(
        resp["errors"][0]["extensions"]["code"], "VALIDATION_FAILED",
        "{resp}"
    );
    assert!(
        resp["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("url:")),
        "{resp}"
    );
    let resp = admin
        .gql(
            CREATE,
            json!({ "i": { "name": "neg", "url": "http://h/x", "secret": SECRET, "timeoutMs": -1 } }),
        )
        .await;
    assert_eq!(
        resp["errors"][0]["extensions"]["code"], "VALIDATION_FAILED",
        "{resp}"
    );
    let listed = viewer
        .data("{ webhooks { name url secretHint timeoutMs } }", json!({}))
        .await;
    assert_eq!(
        listed["webhooks"],
        json!([{ "name": "restart", "url": "https://remediate.example/hook",
                 "secretHint": "…5f68", "timeoutMs": 5000 }])
    );
    let resp = operator
        .gql("mutation { deleteWebhook(name: \"restart\") }", json!({}))
        .await;
    assert_eq!(
        resp["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{resp}"
    );
    let resp = admin
        .gql("mutation { deleteWebhook(name: \"restart\") }", json!({}))
        .await;
    assert_eq!(resp["data"]["deleteWebhook"], true, "{resp}");
    let resp = admin
        .gql("mutation { deleteWebhook(name: \"restart\") }", json!({}))
        .await;
    assert_eq!(
        resp["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{resp}"
    );
    // Nothing any client received carries the secret.
    for api in [&admin, &operator, &viewer] {
        for body in api.transcript.lock().unwrap().iter() {
            assert!(!body.contains(SECRET), "{body}");
        }
    }
    shutdown.cancel();
}
both_backends!(webhooks_over_graphql_never_show_the_secret, over_graphql);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_adds_lists_rotates_and_removes_without_printing_the_secret() {
    let Some(db) = TestDb::migrated(Backend::Sqlite).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (k1, k2) = (generate_key(), generate_key());
    let run = |args: &[&str], env: &[(&str, &str)], stdin: Option<&str>| {
        use std::io::Write;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_aiops"));
        cmd.args(args)
            .env("DATABASE_URL", &db.url)
            .env("AIOPS_DATA_DIR", dir.path())
            .env_remove("AIOPS_MASTER_KEY")
            .env_remove("AIOPS_OLD_MASTER_KEYS")
            .env_remove("AIOPS_WEBHOOK_SECRET")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let mut printed = String::new();
    let (code, out) = run(
        &[
            "webhook",
            "add",
            "restart",
            "--url",
            "https://remediate.example/hook",
        ],
        &[("AIOPS_MASTER_KEY", &k1), ("AIOPS_WEBHOOK_SECRET", SECRET)],
        None,
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("webhook \"restart\" added"), "{out}");
    printed += &out;
    // From stdin, with a timeout.
    let (code, out) = run(
        &[
            "webhook",
            "add",
            "scale",
            "--url",
            "http://h:8080/scale",
            "--timeout-ms",
            "2500",
        ],
        &[("AIOPS_MASTER_KEY", &k1)],
        Some(&format!("{SECRET}\n")),
    );
    assert_eq!(code, Some(0), "{out}");
    printed += &out;
    // No secret at all, or a short one: refused, saying why.
    let (code, out) = run(
        &["webhook", "add", "empty", "--url", "http://h/x"],
        &[("AIOPS_MASTER_KEY", &k1)],
        Some(""),
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("AIOPS_WEBHOOK_SECRET"), "{out}");
    let (code, out) = run(
        &["webhook", "add", "short", "--url", "http://h/x"],
        &[
            ("AIOPS_MASTER_KEY", &k1),
            ("AIOPS_WEBHOOK_SECRET", "tooshort"),
        ],
        None,
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("secret: at least 16 characters"), "{out}");
    assert!(!out.contains("tooshort"), "{out}");
    let (code, out) = run(
        &["webhook", "add", "creds", "--url", "http://a:b@h/x"],
        &[("AIOPS_MASTER_KEY", &k1), ("AIOPS_WEBHOOK_SECRET", SECRET)],
        None,
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("url: must not carry a user"), "{out}");
    printed += &out;

    let (code, out) = run(&["webhook", "list"], &[], None);
    assert_eq!(code, Some(0), "{out}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(
        (
            &lines[0]["name"],
            &lines[0]["secret_hint"],
            &lines[0]["timeout_ms"]
        ),
        (&json!("restart"), &json!("…5f68"), &json!(10_000))
    );
    assert_eq!(
        (&lines[1]["name"], &lines[1]["url"], &lines[1]["timeout_ms"]),
        (&json!("scale"), &json!("http://h:8080/scale"), &json!(2500))
    );
    printed += &out;

    let both = [
        ("AIOPS_MASTER_KEY", k2.as_str()),
        ("AIOPS_OLD_MASTER_KEYS", k1.as_str()),
    ];
    let (code, out) = run(&["secrets", "rotate"], &both, None);
    assert_eq!(
        (code, out.trim()),
        (
            Some(0),
            "2 secret(s) re-encrypted, 0 already under the active key"
        )
    );
    let (code, out) = run(&["secrets", "check"], &[("AIOPS_MASTER_KEY", &k2)], None);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run(&["webhook", "remove", "restart"], &[], None);
    assert_eq!(code, Some(0), "{out}");
    printed += &out;
    let (code, out) = run(&["webhook", "remove", "restart"], &[], None);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("webhook restart not found"), "{out}");
    assert!(!printed.contains(SECRET), "{printed}");
}

/// What the receiver got: the path, the headers and the exact body.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

type Inbox = Arc<Mutex<Vec<Received>>>;

/// A remediation endpoint on loopback: `/ok` answers JSON, `/empty` 204, `/text`
/// plain text, `/busy` 500 with Retry-After, `/limited` 429, `/bad` 400, `/moved`
/// a redirect to `/ok`, `/slow` after 5 s.
async fn receiver() -> (String, Inbox) {
    let inbox: Inbox = Arc::default();
    let kept = inbox.clone();
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let inbox = kept.clone();
        async move {
            let path = uri.path().to_owned();
            inbox.lock().unwrap().push(Received {
                path: path.clone(),
                headers,
                body,
            });
            answer(&path).await
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), inbox)
}

async fn answer(path: &str) -> Response {
    match path {
        "/ok" => axum::Json(json!({"accepted": true, "ticket": "CHG-1"})).into_response(),
        "/empty" => StatusCode::NO_CONTENT.into_response(),
        "/text" => "done".into_response(),
        "/busy" => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("retry-after", "3")],
            "database restarting",
        )
            .into_response(),
        "/limited" => (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response(),
        // Busy once, then accepting: the retry must carry the same key.
        "/flaky" => {
            static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            if CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                (StatusCode::SERVICE_UNAVAILABLE, "warming up").into_response()
            } else {
                axum::Json(json!({"accepted": true})).into_response()
            }
        }
        "/bad" => (StatusCode::BAD_REQUEST, "unknown action \"reboot\"").into_response(),
        "/moved" => (StatusCode::FOUND, [("location", "/ok")]).into_response(),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            StatusCode::OK.into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn header<'a>(received: &'a Received, name: &str) -> &'a str {
    received
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

/// Verifies the signature as a receiver would, with the shared secret.
fn signature_verifies(secret: &str, received: &Received, body: &[u8]) -> bool {
    let timestamp = header(received, "x-aiops-timestamp");
    let Some(hex) = header(received, "x-aiops-signature").strip_prefix("sha256=") else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    expected == hex
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn actions_are_posted_signed_with_an_idempotency_key() {
    let Some(db) = TestDb::migrated(Backend::Sqlite).await else {
        return;
    };
    let (base, inbox) = receiver().await;
    let engine =
        common::keyed_engine(&db.url, Some(Keyring::new(&generate_key(), &[]).unwrap())).await;
    engine
        .create_webhook(Caller::Local, hook("restart", &format!("{base}/ok")))
        .await
        .unwrap();
    // The target as the tool gets it: decrypted by the engine.
    let target = engine.webhook_target("restart").await.unwrap();
    let run = RunId::new();
    let key = format!("{run}/node:db/tool:call_1");
    let payload = action_payload(
        run,
        "payments",
        "db",
        "restart_service",
        &json!({"service": "postgres", "force": false}),
        &key,
    );
    let answer = post_action(&target, &payload, &key).await.unwrap();
    assert_eq!(answer, json!({"accepted": true, "ticket": "CHG-1"}));

    let first = inbox.lock().unwrap()[0].clone();
    assert_eq!(first.path, "/ok");
    assert_eq!(header(&first, "content-type"), "application/json");
    assert_eq!(header(&first, "idempotency-key"), key);
    let sent_at: i64 = header(&first, "x-aiops-timestamp").parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - sent_at).abs() < 60);
    assert!(signature_verifies(SECRET, &first, &first.body));
    assert!(!signature_verifies(
        "another-secret-of-16",
        &first,
        &first.body
    ));
    let mut tampered = first.body.to_vec();
    tampered.extend_from_slice(b" ");
    assert!(!signature_verifies(SECRET, &first, &tampered));
    // The body is exactly the payload: versioned, with every field.
    let body: Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(body, payload);
    assert_eq!(body["version"], 1);
    assert_eq!(body["run"], run.to_string());
    assert_eq!(
        (&body["team"], &body["node"], &body["action"]),
        (&json!("payments"), &json!("db"), &json!("restart_service"))
    );
    assert_eq!(body["args"], json!({"service": "postgres", "force": false}));
    assert_eq!(body["idempotency_key"], key);
    assert!(body["sent_at"].is_string());
    // No header carries the secret.
    for value in first.headers.values() {
        assert!(!value.to_str().unwrap_or("").contains(SECRET));
    }

    // A repeated call (a retried attempt) carries the same key and payload.
    post_action(&target, &payload, &key).await.unwrap();
    let second = inbox.lock().unwrap()[1].clone();
    assert_eq!(header(&second, "idempotency-key"), key);
    assert_eq!(second.body, first.body);
    assert!(signature_verifies(SECRET, &second, &second.body));

    let at = |path: &str| WebhookTarget {
        url: format!("{base}{path}"),
        ..target.clone()
    };
    // Answers without JSON.
    let answer = post_action(&at("/empty"), &payload, &key).await.unwrap();
    assert_eq!(answer, json!({"status": 204}));
    let answer = post_action(&at("/text"), &payload, &key).await.unwrap();
    assert_eq!(answer, json!({"status": 200, "body": "done"}));

    // The receiver's trouble passes, with its hint; the request's fault does not.
    let err = post_action(&at("/busy"), &payload, &key).await.unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::Retryable {
            retry_after: Some(Duration::from_secs(3))
        },
        "{err}"
    );
    assert!(
        err.message.contains("webhook \"restart\"") && err.message.contains("database restarting"),
        "{err}"
    );
    let err = post_action(&at("/limited"), &payload, &key)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let err = post_action(&at("/bad"), &payload, &key).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent, "{err}");
    assert!(err.message.contains("unknown action"), "{err}");
    // A redirect is not followed: the signed request goes nowhere else.
    let before = inbox.lock().unwrap().len();
    let err = post_action(&at("/moved"), &payload, &key)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent, "{err}");
    assert!(err.message.contains("redirects are not followed"), "{err}");
    assert_eq!(
        inbox.lock().unwrap().len(),
        before + 1,
        "only /moved was asked"
    );

    // Nobody listening, or no answer in time: retryable.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let refused = WebhookTarget {
        url: format!("http://{closed}/hook"),
        ..target.clone()
    };
    let err = post_action(&refused, &payload, &key).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let slow = WebhookTarget {
        timeout: Duration::from_millis(300),
        ..at("/slow")
    };
    let err = post_action(&slow, &payload, &key).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(!err.message.contains(SECRET), "{err}");
}

/// `webhook_action` as an agent calls it: one durable tool call of the node `api`.
struct WebhookCall;

impl aiops_engine::Workflow for WebhookCall {
    fn run(&self, ctx: aiops_engine::StepContext) -> aiops_engine::workflow::WorkflowFuture {
        Box::pin(async move {
            let team = aiops_engine::topology::parse(
                "name: shop\nwebhook: remediate\nsupervisor: { model: builtin:rules }\n\
                 nodes: [{ id: api, kind: service, agents: [{ id: a, tools: [webhook_action] }] }]\n",
            )
            .expect("team");
            let toolbox = aiops_engine::agents::Toolbox::new(
                aiops_engine::tools::Registry::builtin(),
                ctx.engine().clone(),
                Err("no alert source".into()),
                Arc::new(team),
            );
            let agent = ctx.branch("node").branch("api").branch("agent").branch("a");
            let args =
                json!({ "action": "restart", "args": { "deployment": "api", "replicas": 3 } });
            match toolbox.call(&agent, "c1", "webhook_action", args).await? {
                aiops_engine::agents::ToolOutcome::Done(v) => Ok(v),
                other => Err(aiops_engine::WorkflowError::Failed(format!("{other:?}"))),
            }
        })
    }
}

/// An approved `webhook_action` posts the versioned payload, signed, and its retry
/// after a 503 carries the same Idempotency-Key (`run/step key`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_webhook_action_is_signed_and_its_retry_keeps_the_key() {
    let Some(db) = TestDb::migrated(Backend::Sqlite).await else {
        return;
    };
    let (url, inbox) = receiver().await;
    let ring = Keyring::new(&generate_key(), &[]).unwrap();
    let engine = Engine::connect(
        &db.url,
        EngineOptions {
            config: fast_config(),
            keyring: Some(Arc::new(ring)),
            workflows: aiops_engine::Workflows::default().with("hook", WebhookCall),
            application_name: "aiops test".into(),
            ..EngineOptions::default()
        },
    )
    .await
    .expect("connect");
    engine
        .create_webhook(Caller::Local, hook("remediate", &format!("{url}/flaky")))
        .await
        .expect("webhook");
    let stop = CancellationToken::new();
    tokio::spawn(engine.clone().listen(stop.clone()));
    tokio::spawn(aiops_engine::Worker::new(engine.clone()).run(stop.child_token()));
    let run = engine
        .start_run(aiops_engine::StartRun::new("hook", json!({})))
        .await
        .expect("start");
    let waiting = common::wait_for_status(
        &engine,
        run.id,
        &[aiops_engine::RunStatus::WaitingApproval],
        Duration::from_secs(30),
    )
    .await;
    assert!(
        inbox.lock().unwrap().is_empty(),
        "nothing is sent before approval"
    );
    let approval = engine
        .approvals_of_run(waiting.id)
        .await
        .expect("approvals")[0]
        .clone();
    assert_eq!(approval.tool, "webhook_action");
    assert_eq!(approval.args["args"]["replicas"], 3);
    engine
        .decide_approval(approval.id, aiops_engine::Decision::Approve, "alice", None)
        .await
        .expect("approve");
    let done = common::wait_for_status(
        &engine,
        run.id,
        &[
            aiops_engine::RunStatus::Succeeded,
            aiops_engine::RunStatus::Failed,
        ],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        done.status,
        aiops_engine::RunStatus::Succeeded,
        "{:?}",
        done.error
    );
    assert_eq!(done.output, Some(json!({ "accepted": true })));
    let got = inbox.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "a 503, then the retry");
    let key = format!("{}/node/api/agent/a/call/c1", run.id);
    for received in &got {
        assert_eq!(header(received, "idempotency-key"), key);
        assert!(signature_verifies(SECRET, received, &received.body));
        let payload: Value = serde_json::from_slice(&received.body).expect("JSON");
        assert_eq!(payload["version"], 1);
        assert_eq!(payload["run"], run.id.to_string());
        assert_eq!(payload["team"], "shop");
        assert_eq!(payload["node"], "api");
        assert_eq!(payload["action"], "restart");
        assert_eq!(
            payload["args"],
            json!({ "deployment": "api", "replicas": 3 })
        );
        assert_eq!(payload["idempotency_key"], key);
    }
    stop.cancel();
}
