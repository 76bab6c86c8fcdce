//! GraphQL over WebSocket (`/graphql/ws`) against the real server, on Postgres and
//! SQLite: both subprotocols, every close code, errors with `extensions.code`, size
//! and connection limits, revocation (in this process, in another engine, in another
//! `aiops serve` process), expiry and shutdown.

mod common;

use std::time::Duration;

use aiops_engine::auth::Role;
use aiops_engine::{ApiKeyId, Engine};
use common::serve::ServeProcess;
use common::ws::{Client, LEGACY, TRANSPORT_WS, WAIT, connect};
use common::{Api, Backend, Harness, fast_config, serve_api, serve_api_with, token_for};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;

/// Keys are revalidated every 2 s; a few rounds of slack for slow machines.
const REVOCATION_WAIT: Duration = Duration::from_secs(12);

const RUN_UPDATES: &str = "subscription { runUpdates { id status } }";

async fn key_id(engine: &Engine, token: &str) -> ApiKeyId {
    engine
        .authenticate(token)
        .await
        .expect("valid token")
        .api_key_id
        .expect("a key")
}

async fn init_timeout(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let config = aiops_api::ApiConfig {
        websocket_init_timeout: Duration::from_millis(1500),
        ..aiops_api::ApiConfig::default()
    };
    let addr = serve_api_with(&h.engine, config, h.shutdown.child_token()).await;
    let mut silent = Client::open(&addr, TRANSPORT_WS).await;
    // Pings are answered before connection_init too, but do not count as one.
    silent.assert_alive().await;
    assert_eq!(
        silent.closed(WAIT).await,
        (4408, "Connection initialisation timeout".to_owned())
    );
    let mut legacy = Client::open(&addr, LEGACY).await;
    assert_eq!(
        legacy.recv().await,
        json!({ "type": "connection_error", "payload": { "message": "Connection initialisation timeout" } })
    );
    assert_eq!(legacy.closed(WAIT).await.0, 4408);
}
both_backends!(connection_init_must_come_in_time, init_timeout);

async fn init_auth(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let config = aiops_api::ApiConfig {
        login_attempts_per_minute: 1,
        ..aiops_api::ApiConfig::default()
    };
    let addr = serve_api_with(&h.engine, config, h.shutdown.child_token()).await;
    let forbidden = (4403, "Forbidden".to_owned());
    for payload in [
        json!({}),
        json!({ "Authorization": "Bearer aiops_nothere1_0123456789abcdef0123456789abcdef" }),
        json!({ "Authorization": "Bearer not-a-key" }),
    ] {
        let mut client = Client::open(&addr, TRANSPORT_WS).await;
        client
            .send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        assert_eq!(client.closed(WAIT).await, forbidden, "{payload}");
    }
    let mut legacy = Client::open(&addr, LEGACY).await;
    legacy
        .init("aiops_nothere1_0123456789abcdef0123456789abcdef")
        .await;
    assert_eq!(
        legacy.recv().await,
        json!({ "type": "connection_error", "payload": { "message": "Forbidden" } })
    );
    assert_eq!(legacy.closed(WAIT).await, forbidden);

    // A valid key: its principal runs every operation of the socket.
    let token = token_for(&h.engine, "watcher", Role::Viewer).await;
    let mut client = Client::authenticated(&addr, TRANSPORT_WS, &token).await;
    client.subscribe("me", "{ me { username role } }").await;
    assert_eq!(
        client.recv().await,
        json!({ "id": "me", "type": "next", "payload": { "data": { "me": { "username": "watcher", "role": "VIEWER" } } } })
    );
    assert_eq!(
        client.recv().await,
        json!({ "id": "me", "type": "complete" })
    );
    // The client's address is in the session too: logins for different users from
    // one address run out of the per-address budget (3 × 1 per minute).
    let mut codes = Vec::new();
    for n in 0..4 {
        let id = format!("login{n}");
        client
            .subscribe(
                &id,
                &format!("mutation {{ login(username: \"nobody{n}\", password: \"wrong password!!\") {{ token }} }}"),
            )
            .await;
        let next = client.recv().await;
        assert_eq!(
            (next["id"].as_str(), next["type"].as_str()),
            (Some(id.as_str()), Some("next")),
            "{next}"
        );
        let err = &next["payload"]["errors"][0];
        codes.push((err["extensions"]["code"].clone(), err["message"].clone()));
        assert_eq!(client.recv().await, json!({ "id": id, "type": "complete" }));
    }
    assert!(
        codes[..3].iter().all(|(code, _)| code == "UNAUTHENTICATED"),
        "{codes:?}"
    );
    assert_eq!(codes[3].0, "BAD_REQUEST", "{codes:?}");
    assert!(
        codes[3]
            .1
            .as_str()
            .is_some_and(|m| m.contains("per client address")),
        "{codes:?}"
    );
}
both_backends!(connection_init_authenticates, init_auth);

async fn protocol_errors(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let addr = serve_api(&h.engine, h.shutdown.child_token()).await;
    let token = token_for(&h.engine, "viewer", Role::Viewer).await;

    let mut twice = Client::authenticated(&addr, TRANSPORT_WS, &token).await;
    twice.init(&token).await;
    assert_eq!(
        twice.closed(WAIT).await,
        (4429, "Too many initialisation requests".to_owned())
    );

    let mut early = Client::open(&addr, TRANSPORT_WS).await;
    early.subscribe("1", "{ health }").await;
    assert_eq!(early.closed(WAIT).await, (4401, "Unauthorized".to_owned()));

    // An id in use is refused, never replaced.
    let mut dup = Client::authenticated(&addr, TRANSPORT_WS, &token).await;
    dup.subscribe("dup", RUN_UPDATES).await;
    dup.assert_alive().await;
    dup.subscribe("dup", RUN_UPDATES).await;
    assert_eq!(
        dup.closed(WAIT).await,
        (4409, "Subscriber for dup already exists".to_owned())
    );

    for (text, says) in [
        ("not json", "not JSON"),
        (r#"{"payload":{}}"#, "type"),
        (
            r#"{"type":"start","id":"1","payload":{"query":"{ health }"}}"#,
            "unknown message type",
        ),
        (
            r#"{"type":"subscribe","payload":{"query":"{ health }"}}"#,
            "id",
        ),
        (r#"{"type":"subscribe","id":"1"}"#, "payload"),
        (
            r#"{"type":"subscribe","id":"1","payload":{"variables":{}}}"#,
            "query",
        ),
        (r#"{"type":"complete"}"#, "id"),
    ] {
        let mut client = Client::authenticated(&addr, TRANSPORT_WS, &token).await;
        client.send_text(text).await;
        let (code, reason) = client.closed(WAIT).await;
        assert_eq!(code, 4400, "{text}: {reason}");
        assert!(reason.contains(says), "{text}: {reason}");
    }

    // ping → pong with the same payload; a pong from the client is not answered.
    let mut client = Client::authenticated(&addr, TRANSPORT_WS, &token).await;
    client.send(json!({ "type": "ping" })).await;
    assert_eq!(client.recv().await, json!({ "type": "pong" }));
    client
        .send(json!({ "type": "pong", "payload": { "x": 1 } }))
        .await;
    client.assert_alive().await;

    // `complete` from the client stops the operation: its id is free again and no
    // result of it arrives.
    client.subscribe("stopped", RUN_UPDATES).await;
    client
        .send(json!({ "id": "stopped", "type": "complete" }))
        .await;
    client.subscribe("live", RUN_UPDATES).await;
    client.subscribe("stopped", "{ health }").await;
    assert_eq!(
        client.recv().await,
        json!({ "id": "stopped", "type": "next", "payload": { "data": { "health": "ok" } } })
    );
    assert_eq!(
        client.recv().await,
        json!({ "id": "stopped", "type": "complete" })
    );
    let operator = token_for(&h.engine, "operator", Role::Operator).await;
    let _w = h.spawn_worker();
    let run = Api::new(&addr, Some(&operator))
        .data(
            "mutation($input: StartRunInput!) { startRun(input: $input) { id } }",
            json!({ "input": { "input": { "steps": [{ "kind": "noop" }] } } }),
        )
        .await["startRun"]["id"]
        .clone();
    loop {
        let msg = client.recv().await;
        assert_eq!(msg["id"], "live", "only the live operation answers: {msg}");
        if msg["payload"]["data"]["runUpdates"] == json!({ "id": run, "status": "SUCCEEDED" }) {
            break;
        }
    }
    client.assert_alive().await;
}
both_backends!(protocol_violations_close_with_their_codes, protocol_errors);

async fn results_and_errors(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let config = aiops_api::ApiConfig {
        mutations_per_minute: 1,
        ..aiops_api::ApiConfig::default()
    };
    let addr = serve_api_with(&h.engine, config, h.shutdown.child_token()).await;
    let token = token_for(&h.engine, "operator", Role::Operator).await;
    let mut client = Client::authenticated(&addr, TRANSPORT_WS, &token).await;

    // Refused before execution: one `error` with the error list, no `complete`.
    let deep = format!("{{ {}x{} }}", "a { ".repeat(20), " }".repeat(20));
    for (id, query, says) in [
        ("syntax", "{ health", "expected"),
        ("unknown-field", "{ nope }", "nope"),
        ("too-deep", deep.as_str(), "levels deep"),
    ] {
        client.subscribe(id, query).await;
        let msg = client.recv().await;
        assert_eq!(
            (msg["id"].as_str(), msg["type"].as_str()),
            (Some(id), Some("error")),
            "{msg}"
        );
        let errors = msg["payload"].as_array().expect("a list of errors");
        assert_eq!(errors[0]["extensions"]["code"], "BAD_REQUEST", "{msg}");
        assert!(
            errors[0]["message"]
                .as_str()
                .is_some_and(|m| m.contains(says)),
            "{msg}"
        );
        client.assert_alive().await;
    }

    // Execution errors are results: `next` with the code, then `complete`.
    let unknown = uuid::Uuid::now_v7();
    client
        .subscribe(
            "events",
            &format!("subscription {{ runEvents(runId: \"{unknown}\") {{ seq }} }}"),
        )
        .await;
    let next = client.recv().await;
    assert_eq!(next["type"], "next", "{next}");
    assert_eq!(
        next["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{next}"
    );
    assert_eq!(
        client.recv().await,
        json!({ "id": "events", "type": "complete" })
    );

    // The request policy applies as over HTTP: the mutation budget (1 per minute).
    const CANCEL: &str =
        "mutation { cancelRun(id: \"00000000-0000-0000-0000-000000000000\") { id } }";
    client.subscribe("m1", CANCEL).await;
    let next = client.recv().await;
    assert_eq!(next["type"], "next", "{next}");
    assert_eq!(
        next["payload"]["errors"][0]["extensions"]["code"],
        "NOT_FOUND"
    );
    assert_eq!(
        client.recv().await,
        json!({ "id": "m1", "type": "complete" })
    );
    client.subscribe("m2", CANCEL).await;
    let refused = client.recv().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["payload"][0]["extensions"]["code"], "BAD_REQUEST");
    assert!(
        refused["payload"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("rate limit exceeded")),
        "{refused}"
    );
    client.assert_alive().await;
}
both_backends!(request_errors_and_execution_errors, results_and_errors);

async fn operation_cap(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let addr = serve_api(&h.engine, h.shutdown.child_token()).await;
    let token = token_for(&h.engine, "viewer", Role::Viewer).await;
    let mut client = Client::authenticated(&addr, TRANSPORT_WS, &token).await;
    for n in 0..100 {
        client.subscribe(&format!("s{n}"), RUN_UPDATES).await;
    }
    client.subscribe("one-too-many", RUN_UPDATES).await;
    let refused = client.recv().await;
    assert_eq!(
        (refused["id"].as_str(), refused["type"].as_str()),
        (Some("one-too-many"), Some("error")),
        "{refused}"
    );
    assert!(
        refused["payload"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("at most 100 operations")),
        "{refused}"
    );
    // Stopping one makes room.
    client.send(json!({ "id": "s0", "type": "complete" })).await;
    client.subscribe("room", "{ health }").await;
    assert_eq!(client.recv().await["type"], "next");
    assert_eq!(
        client.recv().await,
        json!({ "id": "room", "type": "complete" })
    );
}
both_backends!(operations_per_socket_are_capped, operation_cap);

async fn message_size(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let addr = serve_api(&h.engine, h.shutdown.child_token()).await;
    let token = token_for(&h.engine, "viewer", Role::Viewer).await;
    let mut bystander = Client::authenticated(&addr, TRANSPORT_WS, &token).await;

    // A frame header announcing 15 MB, and nothing after it: the server refuses from
    // the header alone, so it never waits for (or buffers) the payload.
    let mut announcer = Client::authenticated(&addr, TRANSPORT_WS, &token).await;
    let MaybeTlsStream::Plain(tcp) = announcer.ws.get_mut() else {
        panic!("plain TCP expected");
    };
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&15_000_000u64.to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]); // mask
    tcp.write_all(&header).await.expect("write frame header");
    assert_eq!(
        announcer.closed(WAIT).await,
        (1009, "Message larger than 1048576 bytes".to_owned())
    );

    // A whole 15 MB message: refused the same way (the client may see the reset of a
    // connection it is still writing to instead of the close frame).
    let mut sender = Client::authenticated(&addr, TRANSPORT_WS, &token).await;
    let big = json!({ "id": "big", "type": "subscribe", "payload": { "query": "{ health }", "pad": "x".repeat(15_000_000) } });
    let sent = sender.ws.send(Message::text(big.to_string())).await;
    if sent.is_ok() {
        match tokio::time::timeout(WAIT, sender.ws.next())
            .await
            .expect("an answer")
        {
            Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1009),
            Some(Ok(other)) => panic!("a 15 MB message was answered: {other:?}"),
            None | Some(Err(_)) => {}
        }
    }

    // The server goes on serving.
    bystander.subscribe("q", "{ health }").await;
    assert_eq!(
        bystander.recv().await,
        json!({ "id": "q", "type": "next", "payload": { "data": { "health": "ok" } } })
    );
    let mut newcomer = Client::authenticated(&addr, TRANSPORT_WS, &token).await;
    newcomer.assert_alive().await;
}
both_backends!(messages_over_1_mib_are_refused, message_size);

async fn connection_cap(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let config = aiops_api::ApiConfig {
        max_websockets: 1,
        ..aiops_api::ApiConfig::default()
    };
    let addr = serve_api_with(&h.engine, config, h.shutdown.child_token()).await;
    let token = token_for(&h.engine, "viewer", Role::Viewer).await;
    let first = Client::authenticated(&addr, TRANSPORT_WS, &token).await;
    match connect(&addr, TRANSPORT_WS).await {
        Err(tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 503);
            let body: Value =
                serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).expect("JSON");
            assert_eq!(
                body["errors"][0]["extensions"]["code"], "BAD_REQUEST",
                "{body}"
            );
            assert!(
                body["errors"][0]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("too many open WebSockets")),
                "{body}"
            );
        }
        Err(e) => panic!("expected a 503 refusal, got {e}"),
        Ok(_) => panic!("a second socket was accepted over the cap of 1"),
    }
    // HTTP is not affected, and a closed socket frees its slot.
    assert_eq!(
        Api::new(&addr, None).data("{ health }", json!({})).await["health"],
        "ok"
    );
    first.close_and_wait().await;
    let mut next = Client::authenticated(&addr, TRANSPORT_WS, &token).await;
    next.assert_alive().await;
}
both_backends!(open_websockets_are_capped, connection_cap);

async fn revoked_in_process(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let addr = serve_api(&h.engine, h.shutdown.child_token()).await;
    let token = token_for(&h.engine, "viewer", Role::Viewer).await;
    let other = token_for(&h.engine, "other", Role::Viewer).await;
    let mut watched = Client::authenticated(&addr, TRANSPORT_WS, &token).await;
    watched.subscribe("updates", RUN_UPDATES).await;
    watched.assert_alive().await;
    let mut legacy = Client::authenticated(&addr, LEGACY, &token).await;
    legacy.subscribe("updates", RUN_UPDATES).await;
    let mut bystander = Client::authenticated(&addr, TRANSPORT_WS, &other).await;
    // The key revokes itself over GraphQL.
    let id = key_id(&h.engine, &token).await;
    let revoked = Api::new(&addr, Some(&token))
        .data(
            "mutation($id: UUID!) { revokeApiKey(id: $id) { revokedAt } }",
            json!({ "id": id.0 }),
        )
        .await;
    assert!(revoked["revokeApiKey"]["revokedAt"].is_string());
    assert_eq!(
        watched.closed(REVOCATION_WAIT).await,
        (4403, "Forbidden".to_owned())
    );
    assert_eq!(
        legacy.recv().await,
        json!({ "type": "connection_error", "payload": { "message": "Forbidden" } })
    );
    assert_eq!(legacy.closed(WAIT).await.0, 4403);
    bystander.assert_alive().await;
}
both_backends!(revoking_a_key_closes_its_sockets, revoked_in_process);

async fn revoked_elsewhere(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let addr = serve_api(&h.engine, h.shutdown.child_token()).await;
    let revoked = token_for(&h.engine, "revoked", Role::Viewer).await;
    let disabled = token_for(&h.engine, "disabled", Role::Viewer).await;
    let kept = token_for(&h.engine, "kept", Role::Viewer).await;
    let mut clients = Vec::new();
    for token in [&revoked, &disabled, &kept] {
        let mut client = Client::authenticated(&addr, TRANSPORT_WS, token).await;
        client.subscribe("updates", RUN_UPDATES).await;
        client.assert_alive().await;
        clients.push(client);
    }
    // Another process (its own pool, bus and clock) changes the database.
    let elsewhere = h.second_engine(fast_config()).await;
    elsewhere
        .revoke_api_key(
            aiops_engine::Caller::Local,
            key_id(&h.engine, &revoked).await,
        )
        .await
        .expect("revoke");
    let user = elsewhere.user_by_username("disabled").await.expect("user");
    elsewhere
        .set_user_disabled(aiops_engine::Caller::Local, user.id, true)
        .await
        .expect("disable");
    let forbidden = (4403, "Forbidden".to_owned());
    assert_eq!(clients[0].closed(REVOCATION_WAIT).await, forbidden);
    assert_eq!(clients[1].closed(REVOCATION_WAIT).await, forbidden);
    clients[2].assert_alive().await;
}
both_backends!(
    revocation_in_another_process_closes_sockets,
    revoked_elsewhere
);

async fn expired(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let addr = serve_api(&h.engine, h.shutdown.child_token()).await;
    let user = h
        .engine
        .create_user("brief", common::TEST_PASSWORD, Role::Viewer)
        .await
        .expect("user");
    let (_, token) = h
        .engine
        .create_api_key(
            aiops_engine::Caller::Local,
            user.id,
            "short",
            None,
            Some(Duration::from_secs(3)),
        )
        .await
        .expect("key");
    let mut client = Client::authenticated(&addr, TRANSPORT_WS, &token).await;
    client.subscribe("updates", RUN_UPDATES).await;
    client.assert_alive().await;
    assert_eq!(
        client
            .closed(Duration::from_secs(3) + REVOCATION_WAIT)
            .await,
        (4403, "Forbidden".to_owned())
    );
}
both_backends!(an_expiring_key_closes_its_sockets, expired);

/// The socket lives in a real `aiops serve` process; the key is revoked by this one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocation_reaches_a_served_process_postgres() {
    let Some(h) = Harness::new(Backend::Postgres).await else {
        return;
    };
    let served = ServeProcess::start(&h.db.url, &[]).await;
    let token = served.admin_token().await;
    let mut client = Client::authenticated(&served.addr, TRANSPORT_WS, &token).await;
    client.subscribe("updates", RUN_UPDATES).await;
    client.assert_alive().await;
    h.engine
        .revoke_api_key(aiops_engine::Caller::Local, key_id(&h.engine, &token).await)
        .await
        .expect("revoke");
    assert_eq!(
        client.closed(REVOCATION_WAIT).await,
        (4403, "Forbidden".to_owned())
    );
}

async fn shutdown(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let stop = CancellationToken::new();
    let addr = serve_api_with(&h.engine, aiops_api::ApiConfig::default(), stop.clone()).await;
    let token = token_for(&h.engine, "viewer", Role::Viewer).await;
    let mut client = Client::authenticated(&addr, TRANSPORT_WS, &token).await;
    client.subscribe("updates", RUN_UPDATES).await;
    client.assert_alive().await;
    let mut legacy = Client::authenticated(&addr, LEGACY, &token).await;
    let mut pending = Client::open(&addr, TRANSPORT_WS).await;
    stop.cancel();
    let going_away = (1001, "Server shutting down".to_owned());
    assert_eq!(client.closed(WAIT).await, going_away);
    assert_eq!(
        legacy.recv().await,
        json!({ "type": "connection_error", "payload": { "message": "Server shutting down" } })
    );
    assert_eq!(legacy.closed(WAIT).await, going_away);
    assert_eq!(pending.closed(WAIT).await, going_away);
    assert!(
        connect(&addr, TRANSPORT_WS).await.is_err(),
        "a stopped server accepts nothing"
    );
}
both_backends!(stopping_the_server_closes_its_sockets, shutdown);

async fn legacy_protocol(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _w = h.spawn_worker();
    let addr = serve_api(&h.engine, h.shutdown.child_token()).await;
    let token = token_for(&h.engine, "operator", Role::Operator).await;
    let mut client = Client::open(&addr, LEGACY).await;
    client.init(&token).await;
    // `ka` right after the ack, as subscriptions-transport-ws servers do.
    let ack = tokio::time::timeout(WAIT, client.ws.next())
        .await
        .expect("ack");
    assert!(
        matches!(ack, Some(Ok(Message::Text(ref t))) if t.as_str() == r#"{"type":"connection_ack"}"#),
        "{ack:?}"
    );
    let ka = tokio::time::timeout(WAIT, client.ws.next())
        .await
        .expect("ka");
    assert!(
        matches!(ka, Some(Ok(Message::Text(ref t))) if t.as_str() == r#"{"type":"ka"}"#),
        "{ka:?}"
    );

    client.subscribe("q", "{ health }").await;
    assert_eq!(
        client.recv().await,
        json!({ "id": "q", "type": "data", "payload": { "data": { "health": "ok" } } })
    );
    assert_eq!(
        client.recv().await,
        json!({ "id": "q", "type": "complete" })
    );

    client.subscribe("bad", "{ health").await;
    let err = client.recv().await;
    assert_eq!(
        (err["id"].as_str(), err["type"].as_str()),
        (Some("bad"), Some("error")),
        "{err}"
    );
    assert_eq!(
        err["payload"][0]["extensions"]["code"], "BAD_REQUEST",
        "{err}"
    );

    // A mutation and a subscription to its run's events, to the end of the run.
    client
        .subscribe_with(
            "start",
            "mutation($input: StartRunInput!) { startRun(input: $input) { id } }",
            json!({ "input": { "input": { "steps": [{ "kind": "noop" }] } } }),
        )
        .await;
    let started = client.recv().await;
    let run = started["payload"]["data"]["startRun"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{started}"))
        .to_owned();
    assert_eq!(
        client.recv().await,
        json!({ "id": "start", "type": "complete" })
    );
    client
        .subscribe(
            "events",
            &format!("subscription {{ runEvents(runId: \"{run}\") {{ seq kind }} }}"),
        )
        .await;
    let mut seqs = Vec::new();
    loop {
        let msg = client.recv().await;
        match msg["type"].as_str() {
            Some("data") => seqs.push(msg["payload"]["data"]["runEvents"]["seq"].as_i64()),
            Some("complete") => break,
            _ => panic!("unexpected {msg}"),
        }
    }
    let n = h
        .engine
        .run(run.parse().expect("run id"))
        .await
        .expect("run")
        .last_seq;
    assert_eq!(seqs, (1..=n).map(Some).collect::<Vec<_>>());

    // `stop` ends an operation and is confirmed with `complete` (after any update sent
    // before the server read the stop: on Postgres, late hints about the finished run).
    client.subscribe("updates", RUN_UPDATES).await;
    client
        .send(json!({ "id": "updates", "type": "stop" }))
        .await;
    loop {
        let msg = client.recv().await;
        assert_eq!(msg["id"], "updates", "{msg}");
        if msg["type"] == "complete" {
            break;
        }
        assert_eq!(msg["type"], "data", "{msg}");
    }

    client.send(json!({ "type": "connection_terminate" })).await;
    let end = tokio::time::timeout(WAIT, client.ws.next())
        .await
        .expect("the socket ends");
    assert!(
        matches!(end, None | Some(Ok(Message::Close(_))) | Some(Err(_))),
        "{end:?}"
    );
}
both_backends!(legacy_graphql_ws_protocol, legacy_protocol);

async fn negotiation(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let addr = serve_api(&h.engine, h.shutdown.child_token()).await;
    // No subprotocol we speak: 400, as before.
    match connect(&addr, "soap").await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 400),
        other => panic!("expected 400, got {:?}", other.map(|_| ())),
    }
    // The first offered one we speak is chosen and echoed as offered.
    let mut req = format!("ws://{addr}/graphql/ws")
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "soap, graphql-ws, graphql-transport-ws"
            .parse()
            .expect("header"),
    );
    let (_, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket");
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .map(|v| v.as_bytes()),
        Some(&b"graphql-ws"[..])
    );
}
both_backends!(subprotocol_negotiation, negotiation);

/// B4: live views survive a lost LISTEN connection. The server's database link (its
/// pool and its LISTEN connection, through a proxy) is cut; meanwhile another
/// process finishes a run and asks for an approval, and those notifications are
/// lost. Once the link is back, the server re-reads what changed and the open
/// `runUpdates` and `approvalRequested` subscriptions deliver both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_views_resync_after_a_lost_listen_connection_postgres() {
    let Some(h) = Harness::new(Backend::Postgres).await else {
        return;
    };
    let proxy = common::FlakyProxy::start("127.0.0.1:5432").await;
    let db_name = h.db.url.rsplit('/').next().unwrap().to_owned();
    let via_proxy = format!("postgres://postgres@127.0.0.1:{}/{db_name}", proxy.port);
    let server = common::engine_on(&via_proxy, fast_config(), common::test_workflows(None)).await;
    tokio::spawn(server.clone().listen(h.shutdown.child_token()));
    let addr = serve_api(&server, h.shutdown.child_token()).await;
    let token = token_for(&h.engine, "watcher", Role::Viewer).await;
    let mut client = Client::authenticated(&addr, TRANSPORT_WS, &token).await;
    client
        .subscribe_live(
            "done",
            "subscription { runUpdates(filter: { statuses: [SUCCEEDED] }) { id status } }",
        )
        .await;
    client
        .subscribe_live(
            "inbox",
            "subscription { approvalRequested { id runId tool } }",
        )
        .await;
    // The other process (the harness's engine and worker) does the work.
    let _w = h.spawn_worker();
    let start = |steps: Value| {
        h.engine.start_run(aiops_engine::StartRun::new(
            "script",
            json!({ "steps": steps }),
        ))
    };
    // Live while connected: the server hears the other process.
    let first = start(json!([{ "kind": "noop" }])).await.unwrap();
    let msg = client.recv().await;
    assert_eq!(
        msg["payload"]["data"]["runUpdates"]["id"],
        first.id.to_string(),
        "{msg}"
    );

    proxy.cut();
    let missed = start(json!([{ "kind": "noop" }])).await.unwrap();
    let asking = start(json!([{ "kind": "approval", "tool": "alertmanager_silence" }]))
        .await
        .unwrap();
    h.wait_for_status(missed.id, &[aiops_engine::RunStatus::Succeeded], WAIT)
        .await;
    h.wait_for_status(asking.id, &[aiops_engine::RunStatus::WaitingApproval], WAIT)
        .await;
    proxy.restore();

    let mut seen_run = false;
    let mut seen_approval = false;
    while !(seen_run && seen_approval) {
        let msg = tokio::time::timeout(Duration::from_secs(30), client.recv())
            .await
            .expect("the missed changes arrive after the link is back");
        match msg["id"].as_str() {
            Some("done") => {
                let run = &msg["payload"]["data"]["runUpdates"];
                assert_eq!(run["id"], missed.id.to_string(), "{msg}");
                seen_run = true;
            }
            Some("inbox") => {
                let approval = &msg["payload"]["data"]["approvalRequested"];
                assert_eq!(approval["runId"], asking.id.to_string(), "{msg}");
                assert_eq!(approval["tool"], "alertmanager_silence");
                seen_approval = true;
            }
            _ => panic!("unexpected message {msg}"),
        }
    }
}

/// B3: `runEvents(afterSeq: lastSeq)` of a finished run completes at once.
async fn finished_run_events(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _w = h.spawn_worker();
    let addr = serve_api(&h.engine, h.shutdown.child_token()).await;
    let token = token_for(&h.engine, "reader", Role::Viewer).await;
    let run = h
        .engine
        .start_run(aiops_engine::StartRun::new(
            "script",
            json!({ "steps": [{ "kind": "noop" }] }),
        ))
        .await
        .unwrap();
    let done = h
        .wait_for_status(run.id, &[aiops_engine::RunStatus::Succeeded], WAIT)
        .await;
    let mut client = Client::authenticated(&addr, TRANSPORT_WS, &token).await;
    client
        .subscribe_with(
            "tail",
            "subscription($id: UUID!, $after: Int!) { runEvents(runId: $id, afterSeq: $after) { seq } }",
            json!({ "id": run.id.to_string(), "after": done.last_seq }),
        )
        .await;
    assert_eq!(
        client.recv().await,
        json!({ "type": "complete", "id": "tail" })
    );
}
both_backends!(
    run_events_of_a_finished_run_complete_at_once,
    finished_run_events
);
