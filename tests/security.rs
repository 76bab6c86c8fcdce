//! Attacks found by outside testing (issue 6, part A) and API conformance for stock
//! clients (part C), against a real `aiops serve` process as an outsider would
//! make them: deep nesting, file writes through the script workflow, password
//! guessing, NUL bytes, oversized and slow requests, and what GraphiQL, urql and
//! Apollo send.

mod common;

use std::time::Duration;

use common::serve::{ADMIN_PASSWORD, ServeProcess};
use common::{Backend, TestDb, ws};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The first error's code and message, asserting there is one.
fn first_error(resp: &Value) -> (String, String) {
    let err = &resp["errors"][0];
    let code = err["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code: {resp}"))
        .to_owned();
    (code, err["message"].as_str().unwrap_or_default().to_owned())
}

async fn served(backend: Backend, env: &[(&str, &str)]) -> Option<(TestDb, ServeProcess)> {
    let db = TestDb::create(backend).await?;
    let serve = ServeProcess::start(&db.url, env).await;
    Some((db, serve))
}

/// A1: one unauthenticated request nested 10,000 deep used to overflow a worker's
/// stack and abort the process. Every spelling of it is now a BAD_REQUEST, over
/// POST, GET and WebSocket, and the process lives on.
async fn deep_nesting(backend: Backend) {
    let Some((_db, mut serve)) = served(backend, &[]).await else {
        return;
    };
    let anonymous = serve.api(None);
    let depth = 10_000;
    let literal = format!(
        "{{ health(x: {}1{}) }}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let objects = format!(
        "{{ health(x: {}1{}) }}",
        "{a: ".repeat(depth),
        "}".repeat(depth)
    );
    let selections = format!("{{ {} x {} }}", "a { ".repeat(depth), "} ".repeat(depth));
    for query in [&literal, &objects, &selections] {
        let resp = anonymous.gql(query, json!({})).await;
        let (code, message) = first_error(&resp);
        assert_eq!(code, "BAD_REQUEST", "{message}");
        assert!(message.contains("deeper than 64"), "{message}");
    }
    // Just under the bound, the parser and validator cope (here: an argument that
    // does not exist), also in a debug build's larger stack frames.
    let near = format!("{{ health(x: {}1{}) }}", "[".repeat(60), "]".repeat(60));
    assert_eq!(
        first_error(&anonymous.gql(&near, json!({})).await).0,
        "BAD_REQUEST"
    );
    let vars = json!({ "v": (0..60).fold(json!("x"), |v, _| json!([v])) });
    let resp = anonymous
        .gql("query($v: [[String]]) { health }", vars)
        .await;
    assert!(
        resp["errors"][0]["extensions"]["code"].is_string(),
        "{resp}"
    );
    serve.assert_alive();
    // Over GET too (2,000 deep: a URL has a length limit of its own).
    let deep_get = format!("{{ health(x: {}1{}) }}", "[".repeat(2000), "]".repeat(2000));
    let (status, _, resp) = anonymous.get(&deep_get).await;
    assert_eq!(status, 400);
    assert_eq!(first_error(&resp).0, "BAD_REQUEST");
    // Variables: deeper than the JSON parser's own bound, and deeper than ours.
    let vars = format!(
        "{{\"query\":\"query($v: String) {{ health }}\",\"variables\":{{\"v\":{}1{}}}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let (status, resp) = anonymous.post_raw(vars).await;
    assert_eq!(status, 400, "{resp}");
    assert_eq!(first_error(&resp).0, "BAD_REQUEST");
    let vars = json!({ "v": (0..100).fold(json!(1), |v, _| json!([v])) });
    let resp = anonymous.gql("query($v: String) { health }", vars).await;
    let (code, message) = first_error(&resp);
    assert_eq!(code, "BAD_REQUEST");
    assert!(
        message.contains("variables nest deeper than 64"),
        "{message}"
    );

    // Over WebSocket, from an authenticated client.
    let token = serve.admin_token().await;
    let mut client = ws::Client::authenticated(&serve.addr, ws::TRANSPORT_WS, &token).await;
    let deep_subscription = format!(
        "subscription {{ runUpdates(filter: {{ statuses: {}QUEUED{} }}) {{ id }} }}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    client.subscribe("1", &deep_subscription).await;
    let error = client.recv().await;
    assert_eq!(
        (error["id"].as_str(), error["type"].as_str()),
        (Some("1"), Some("error")),
        "an error message for the deep subscription: {error}"
    );
    assert_eq!(
        error["payload"][0]["extensions"]["code"], "BAD_REQUEST",
        "{error}"
    );

    serve.assert_alive();
    assert_eq!(
        anonymous.gql("{ health }", json!({})).await["data"]["health"],
        "ok"
    );
}
both_backends!(
    nesting_10000_deep_is_refused_and_the_server_lives,
    deep_nesting
);

/// A3: the script workflow (a test tool) cannot be started on a production server,
/// and even where it is enabled its `record_to` writes only inside the record
/// directory the operator chose.
async fn script_workflow(backend: Backend) {
    let Some((db, serve)) = served(backend, &[]).await else {
        return;
    };
    let admin = serve.api(Some(&serve.admin_token().await));
    const START: &str =
        "mutation($i: JSON!) { startRun(input: { workflow: \"script\", input: $i }) { id } }";
    const RUN: &str = "query($id: UUID!) { run(id: $id) { id status error } }";
    let resp = admin
        .gql(START, json!({ "i": { "steps": [{ "kind": "noop" }] } }))
        .await;
    let (code, message) = first_error(&resp);
    assert_eq!(code, "VALIDATION_FAILED");
    assert!(message.contains("unknown workflow \"script\""), "{message}");
    drop(serve);

    // Enabled, with a record directory: no path leaves it.
    let records = tempfile::tempdir().unwrap();
    let serve = ServeProcess::start(
        &db.url,
        &[
            ("AIOPS_ENABLE_SCRIPT_WORKFLOW", "1"),
            ("AIOPS_SCRIPT_RECORD_DIR", records.path().to_str().unwrap()),
        ],
    )
    .await;
    let victim = serve.data_dir.path().join("victim");
    std::fs::write(&victim, "untouched\n").unwrap();
    let admin = serve.api(Some(&serve.admin_token().await));
    for bad in [
        "../victim".to_owned(),
        victim.display().to_string(),
        "a/b.log".to_owned(),
    ] {
        let resp = admin
            .gql(
                START,
                json!({ "i": { "steps": [{ "kind": "noop" }], "record_to": bad } }),
            )
            .await;
        let (code, message) = first_error(&resp);
        assert_eq!(code, "VALIDATION_FAILED", "{bad}");
        assert!(message.contains("plain file name"), "{message}");
    }
    // A symbolic link planted in the record directory is not followed.
    #[cfg(unix)]
    std::os::unix::fs::symlink(&victim, records.path().join("link.log")).unwrap();
    let resp = admin
        .gql(
            START,
            json!({ "i": { "steps": [{ "kind": "noop" }], "record_to": "link.log" } }),
        )
        .await;
    let id = resp["data"]["startRun"]["id"].as_str().unwrap().to_owned();
    let run = admin.wait_for_run(RUN, &id, &["FAILED", "SUCCEEDED"]).await;
    assert_eq!(run["status"], "FAILED", "{run}");
    assert!(
        run["error"].as_str().unwrap().contains("record_to"),
        "{run}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");
    // A plain name works, inside the directory.
    let resp = admin
        .gql(
            START,
            json!({ "i": { "steps": [{ "kind": "noop" }], "record_to": "ok.log" } }),
        )
        .await;
    let id = resp["data"]["startRun"]["id"].as_str().unwrap().to_owned();
    admin.wait_for_run(RUN, &id, &["SUCCEEDED"]).await;
    assert_eq!(
        std::fs::read_to_string(records.path().join("ok.log"))
            .unwrap()
            .lines()
            .count(),
        1
    );
    // A7 and A6 through the same door: durations and sizes are bounded at input.
    let resp = admin
        .gql(
            START,
            json!({ "i": { "steps": [{ "kind": "sleep", "ms": 1e15 as u64 }] } }),
        )
        .await;
    let (code, message) = first_error(&resp);
    assert_eq!(code, "VALIDATION_FAILED");
    assert!(message.contains("steps[0].ms"), "{message}");
    let branches: Vec<Value> = (0..20_000).map(|_| json!([{ "kind": "noop" }])).collect();
    let resp = admin
        .gql(
            START,
            json!({ "i": { "steps": [{ "kind": "parallel", "branches": branches }] } }),
        )
        .await;
    let (code, message) = first_error(&resp);
    assert_eq!(code, "VALIDATION_FAILED");
    assert!(message.contains("20000 branches"), "{message}");
}
both_backends!(the_script_workflow_is_gated_and_confined, script_workflow);

/// A4: password guessing is rate-limited per username and per client address,
/// aliases count, and one request holds at most one login.
async fn login_limits(backend: Backend) {
    let Some((_db, serve)) = served(backend, &[("AIOPS_MUTATIONS_PER_MINUTE", "5")]).await else {
        return;
    };
    let anonymous = serve.api(None);
    const LOGIN: &str =
        "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }";
    for _ in 0..10 {
        let resp = anonymous
            .gql(LOGIN, json!({ "u": "admin", "p": "wrong password 123" }))
            .await;
        assert_eq!(first_error(&resp).0, "UNAUTHENTICATED", "{resp}");
    }
    // The right password no longer gets through this minute.
    let resp = anonymous
        .gql(LOGIN, json!({ "u": "admin", "p": ADMIN_PASSWORD }))
        .await;
    let (code, message) = first_error(&resp);
    assert_eq!(code, "BAD_REQUEST");
    assert!(
        message.contains("login attempts per minute per username"),
        "{message}"
    );
    assert!(
        resp["errors"][0]["extensions"]["retryAfterSeconds"]
            .as_u64()
            .is_some()
    );
    // Many aliased logins in one request: refused before any password is hashed.
    let aliased = format!(
        "mutation {{ {} }}",
        (0..499)
            .map(|i| format!("l{i}: login(username: \"u{i}\", password: \"p\") {{ token }}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let (code, message) = first_error(&anonymous.gql(&aliased, json!({})).await);
    assert_eq!(code, "BAD_REQUEST");
    assert!(
        message.contains("at most one login per request"),
        "{message}"
    );
    // Per client address: other usernames from the same address run out too.
    let mut refused = None;
    for i in 0..40 {
        let resp = anonymous
            .gql(
                LOGIN,
                json!({ "u": format!("user{i}"), "p": "wrong password 123" }),
            )
            .await;
        if first_error(&resp).0 == "BAD_REQUEST" {
            refused = Some((i, first_error(&resp).1));
            break;
        }
    }
    let (after, message) = refused.expect("the per-address limit applies");
    assert!(message.contains("per client address"), "{message}");
    assert!(after <= 30, "{after} attempts from one address");
}
both_backends!(logins_are_rate_limited, login_limits);

/// A4: every aliased root field of a mutation is charged to the key's budget.
async fn aliased_mutations(backend: Backend) {
    let Some((_db, serve)) = served(backend, &[("AIOPS_MUTATIONS_PER_MINUTE", "5")]).await else {
        return;
    };
    let admin = serve.api(Some(&serve.admin_token().await));
    let cancels = |n: usize| {
        format!(
            "mutation {{ {} }}",
            (0..n)
                .map(|i| format!("c{i}: cancelRun(id: \"{}\") {{ id }}", uuid::Uuid::now_v7()))
                .collect::<Vec<_>>()
                .join(" ")
        )
    };
    let (code, message) = first_error(&admin.gql(&cancels(6), json!({})).await);
    assert_eq!(code, "BAD_REQUEST");
    assert!(message.contains("needs 6 tokens"), "{message}");
    let resp = admin.gql(&cancels(5), json!({})).await;
    assert!(
        resp["errors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["extensions"]["code"] == "NOT_FOUND"),
        "five fit the budget: {resp}"
    );
    let resp = admin
        .gql(
            "mutation { createApiKey(input: { name: \"x\" }) { token } }",
            json!({}),
        )
        .await;
    let (code, message) = first_error(&resp);
    assert_eq!(code, "BAD_REQUEST", "createApiKey is charged too: {resp}");
    assert!(message.contains("rate limit exceeded"), "{message}");
}
both_backends!(aliased_mutations_are_each_charged, aliased_mutations);

/// A8: NUL in strings, the bearer scheme's case, oversized bodies (chunked or not),
/// and private SQLite files.
async fn small_things(backend: Backend) {
    let Some((db, serve)) = served(backend, &[]).await else {
        return;
    };
    let anonymous = serve.api(None);
    // NUL reaches no database, with or without a key, literal or variable.
    let resp = anonymous
        .gql(
            "mutation { login(username: \"ad\\u0000min\", password: \"x\") { token } }",
            json!({}),
        )
        .await;
    let (code, message) = first_error(&resp);
    assert_eq!(code, "BAD_REQUEST", "{resp}");
    assert!(message.contains("NUL"), "{message}");
    let resp = anonymous
        .gql(
            "mutation($u: String!) { login(username: $u, password: \"x\") { token } }",
            json!({ "u": "ad\u{0}min" }),
        )
        .await;
    let (code, message) = first_error(&resp);
    assert_eq!(code, "BAD_REQUEST", "{resp}");
    assert!(message.contains("variables.u"), "{message}");
    // The scheme of `Authorization` is case-insensitive.
    let token = serve.admin_token().await;
    let resp: Value = reqwest::Client::new()
        .post(format!("http://{}/graphql", serve.addr))
        .header("authorization", format!("bEaReR {token}"))
        .json(&json!({ "query": "{ me { username } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["data"]["me"]["username"], "admin", "{resp}");
    // Oversized bodies, announced or chunked: 413 with a GraphQL error document.
    let big = format!(
        "{{\"query\":\"{{ health }}\",\"x\":\"{}\"}}",
        "a".repeat(2 << 20)
    );
    let (status, resp) = anonymous.post_raw(big.clone()).await;
    assert_eq!(status, 413);
    assert_eq!(first_error(&resp).0, "BAD_REQUEST");
    let chunks = futures::stream::iter(
        big.into_bytes()
            .chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let resp = reqwest::Client::new()
        .post(format!("http://{}/graphql", serve.addr))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let body: Value = resp.json().await.expect("a JSON error document");
    let (code, message) = first_error(&body);
    assert_eq!(code, "BAD_REQUEST");
    assert!(message.contains("larger than 1048576 bytes"), "{message}");
    // SQLite: the database and its directory are private to the server's user.
    #[cfg(unix)]
    if backend == Backend::Sqlite {
        use std::os::unix::fs::PermissionsExt;
        let path = db.url.strip_prefix("sqlite://").unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(std::path::Path::new(path)), 0o600, "database file");
        for suffix in ["-wal", "-shm"] {
            let side = format!("{path}{suffix}");
            if std::path::Path::new(&side).exists() {
                assert_eq!(mode(std::path::Path::new(&side)), 0o600, "{side}");
            }
        }
    }
}
both_backends!(nul_bearer_case_body_limits_and_file_modes, small_things);

/// A fresh SQLite database in a directory the server creates: 0700 and 0600.
#[cfg(unix)]
#[tokio::test]
async fn a_new_sqlite_database_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("state");
    let url = format!("sqlite://{}/aiops.db", dir.display());
    let _serve = ServeProcess::start(&url, &[]).await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("aiops.db")), 0o600);
}

/// A5: a client that never finishes its headers, or just sits on a connection, is
/// cut off; at the connection cap new connections are refused at once.
async fn slow_clients(backend: Backend) {
    let Some((_db, serve)) = served(
        backend,
        &[
            ("AIOPS_HEADER_TIMEOUT_MS", "500"),
            ("AIOPS_MAX_CONNECTIONS", "3"),
        ],
    )
    .await
    else {
        return;
    };
    let addr = serve.addr.clone();
    // Half a request line, then silence: closed by the server.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /graphql HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a client that never sends its headers is cut off"
    );
    // Three connections fill the cap (each proven accepted by a round-trip, then idle);
    // the fourth is closed at once.
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let n = conn.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        idle.push(conn);
    }
    let mut fourth = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _ = fourth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let answer = tokio::time::timeout(Duration::from_secs(10), fourth.read(&mut buf))
        .await
        .expect("the fourth connection is closed, not left hanging");
    assert!(matches!(answer, Ok(0) | Err(_)), "refused at the cap");
    // The idle ones are cut off after the header timeout too; then there is room.
    for conn in &mut idle {
        let end = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf)).await;
        assert!(
            matches!(end, Ok(Ok(0)) | Ok(Err(_))),
            "idle keep-alive closed"
        );
    }
    let mut ok = None;
    for _ in 0..50 {
        if let Ok(r) = reqwest::get(format!("http://{addr}/healthz")).await {
            ok = Some(r.status());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ok, Some(reqwest::StatusCode::OK));
}
both_backends!(slow_and_surplus_connections_are_cut_off, slow_clients);

/// C1, C2, C6: what stock clients send. The standard introspection query (graphql-js
/// `getIntrospectionQuery`, as GraphiQL, codegen and Postman send it) is answered;
/// GET serves queries (urql's default) but never mutations; the subscription root is
/// `Subscription`; authentication errors say what is wrong and carry no bogus location.
async fn stock_clients(backend: Backend) {
    let Some((_db, serve)) = served(backend, &[]).await else {
        return;
    };
    let anonymous = serve.api(None);
    let introspection = include_str!("fixtures/introspection.graphql");
    let resp = anonymous.gql(introspection, json!({})).await;
    assert!(resp.get("errors").is_none(), "{resp}");
    assert_eq!(
        resp["data"]["__schema"]["subscriptionType"]["name"],
        "Subscription"
    );
    assert!(resp["data"]["__schema"]["types"].as_array().unwrap().len() > 20);
    let (status, _, resp) = anonymous.get("{ health }").await;
    assert_eq!((status, resp["data"]["health"].clone()), (200, json!("ok")));
    let (status, _, resp) = anonymous.get(introspection).await;
    assert_eq!(status, 200);
    assert!(resp.get("errors").is_none(), "{resp}");
    let admin = serve.api(Some(&serve.admin_token().await));
    let (status, _, resp) = admin.get("{ me { username } }").await;
    assert_eq!(
        (status, resp["data"]["me"]["username"].clone()),
        (200, json!("admin"))
    );
    let (status, headers, resp) = admin
        .get(&format!(
            "mutation {{ cancelRun(id: \"{}\") {{ id }} }}",
            uuid::Uuid::now_v7()
        ))
        .await;
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "POST");
    assert_eq!(first_error(&resp).0, "BAD_REQUEST");

    let resp = anonymous.gql("{ me { username } }", json!({})).await;
    let (code, message) = first_error(&resp);
    assert_eq!(code, "UNAUTHENTICATED");
    assert!(message.contains("missing API key"), "{message}");
    let wrong = serve.api(Some("aiops_nope_nope"));
    let resp = wrong.gql("{ health }", json!({})).await;
    assert_eq!(first_error(&resp).0, "UNAUTHENTICATED");
    for resp in [
        &resp,
        &anonymous.gql("{ me { username } }", json!({})).await,
    ] {
        let locations = &resp["errors"][0]["locations"];
        assert!(
            locations.is_null()
                || locations
                    .as_array()
                    .is_some_and(|l| l.iter().all(|p| p["line"] != 0)),
            "no line-0 location: {resp}"
        );
    }
    assert!(aiops_api::sdl().contains("type Subscription {"));
}
both_backends!(stock_clients_are_served, stock_clients);
