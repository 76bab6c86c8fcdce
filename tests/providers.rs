//! Language-model providers, credentials and models: admins manage them (the API
//! key sealed at rest, never shown, rotated with the other secrets), teams may name
//! stored models, and `testModel` sends one real request with the decrypted key to an
//! OpenAI-compatible server on loopback — on Postgres and SQLite, through the engine,
//! GraphQL and real `aiops` processes.

#[macro_use]
mod common;

use std::sync::{Arc, Mutex};

use aiops_engine::auth::Role;
use aiops_engine::model::ProviderKind;
use aiops_engine::secrets::{Keyring, Secret, generate_key};
use aiops_engine::{Caller, Error, NewModel, NewProvider};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::{Backend, TestDb, raw_db, serve_api, token_for};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const KEY: &str = "sk-test-9f8e7d6c5b4a3f2e";

/// The stored `secret_encrypted` of credential `name`, read behind the engine's back.
async fn stored(url: &str, name: &str) -> String {
    let db = raw_db(url).await;
    let backend = db.get_database_backend();
    let sql = if backend == sea_orm::DbBackend::Postgres {
        "SELECT secret_encrypted FROM llm_credentials WHERE name = $1"
    } else {
        "SELECT secret_encrypted FROM llm_credentials WHERE name = ?"
    };
    let row = db
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            backend,
            sql,
            vec![name.into()],
        ))
        .await
        .unwrap()
        .expect("the row");
    row.try_get_by_index(0).unwrap()
}

fn provider(name: &str, base_url: &str, credential: Option<&str>) -> NewProvider {
    NewProvider {
        name: name.into(),
        kind: ProviderKind::OpenAi,
        base_url: base_url.into(),
        azure_api_version: None,
        credential: credential.map(str::to_owned),
    }
}

/// A team whose supervisor uses `model` and whose agent falls back to `default`.
fn team(model: &str) -> String {
    format!(
        "name: shop\nsupervisor: {{ model: {model} }}\nnodes:\n  - id: api\n    kind: service\n    \
         agents: [{{ id: a, model: [{model}, default], tools: [prometheus_query] }}]\n"
    )
}

const CREDENTIAL: &str =
    "mutation($n: String!, $s: String!) { createCredential(name: $n, secret: $s) { name hint } }";
const PROVIDER: &str = "mutation($i: CreateProviderInput!) { createProvider(input: $i) \
     { name kind baseUrl azureApiVersion credential } }";
const MODEL: &str = "mutation($i: CreateModelInput!) { createModel(input: $i) { name provider \
     upstream supportsTools supportsJson supportsStreaming streamUsage contextTokens \
     inputPricePerMtok outputPricePerMtok } }";

async fn over_graphql(backend: Backend) {
    let Some(db) = TestDb::migrated(backend).await else {
        return;
    };
    let engine =
        common::keyed_engine(&db.url, Some(Keyring::new(&generate_key(), &[]).unwrap())).await;
    let shutdown = CancellationToken::new();
    let addr = serve_api(&engine, shutdown.clone()).await;
    let admin = common::Api::new(&addr, Some(&token_for(&engine, "root", Role::Admin).await));
    let operator = admin.with_token(Some(&token_for(&engine, "olga", Role::Operator).await));
    let viewer = admin.with_token(Some(&token_for(&engine, "eve", Role::Viewer).await));
    let code = |resp: &Value| resp["errors"][0]["extensions"]["code"].clone();
    let message = |resp: &Value| {
        resp["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };

    // Below admin, nothing is created, deleted or shown of credentials.
    let cred_vars = json!({ "n": "openai-key", "s": KEY });
    let openai = json!({ "i": { "name": "openai", "kind": "OPENAI",
        "baseUrl": "https://api.openai.example/v1/", "credential": "openai-key" } });
    for forbidden in [&viewer, &operator] {
        for (query, vars) in [
            (CREDENTIAL, cred_vars.clone()),
            (PROVIDER, openai.clone()),
            (MODEL, json!({ "i": { "name": "m", "provider": "openai" } })),
            ("{ credentials { name } }", json!({})),
            ("mutation { deleteModel(name: \"m\") }", json!({})),
            ("mutation { deleteProvider(name: \"openai\") }", json!({})),
            (
                "mutation { deleteCredential(name: \"openai-key\") }",
                json!({}),
            ),
        ] {
            let resp = forbidden.gql(query, vars).await;
            assert_eq!(code(&resp), "FORBIDDEN", "{query}: {resp}");
        }
    }

    let created = admin.data(CREDENTIAL, cred_vars).await;
    assert_eq!(
        created["createCredential"],
        json!({ "name": "openai-key", "hint": "…3f2e" })
    );
    let created = admin.data(PROVIDER, openai).await;
    assert_eq!(
        created["createProvider"],
        json!({ "name": "openai", "kind": "OPENAI", "baseUrl": "https://api.openai.example/v1",
                "azureApiVersion": null, "credential": "openai-key" })
    );
    // A local server needs no credential; Azure takes an api-version.
    admin
        .data(
            PROVIDER,
            json!({ "i": { "name": "ollama", "kind": "OPENAI",
                "baseUrl": "http://127.0.0.1:11434/v1" } }),
        )
        .await;
    let azure = admin
        .data(
            PROVIDER,
            json!({ "i": { "name": "azure", "kind": "AZURE_OPENAI",
                "baseUrl": "https://x.openai.azure.com", "azureApiVersion": "2024-10-21",
                "credential": "openai-key" } }),
        )
        .await;
    assert_eq!(azure["createProvider"]["azureApiVersion"], "2024-10-21");

    let created = admin
        .data(
            MODEL,
            json!({ "i": { "name": "gpt-4o", "provider": "openai",
                "inputPricePerMtok": 2.5, "outputPricePerMtok": 10.0 } }),
        )
        .await;
    assert_eq!(
        created["createModel"],
        json!({ "name": "gpt-4o", "provider": "openai", "upstream": "gpt-4o",
                "supportsTools": true, "supportsJson": true, "supportsStreaming": true,
                "streamUsage": true, "contextTokens": 128000,
                "inputPricePerMtok": 2.5, "outputPricePerMtok": 10.0 })
    );
    admin
        .data(
            MODEL,
            json!({ "i": { "name": "qwen2.5:7b", "provider": "ollama", "upstream": "qwen2.5:7b-instruct",
                "supportsTools": false, "streamUsage": false, "contextTokens": 32768 } }),
        )
        .await;
    let updated = admin
        .data(
            "mutation { updateModel(name: \"gpt-4o\", input: { outputPricePerMtok: 12.5, \
             contextTokens: 64000 }) { name inputPricePerMtok outputPricePerMtok contextTokens } }",
            json!({}),
        )
        .await;
    assert_eq!(
        updated["updateModel"],
        json!({ "name": "gpt-4o", "inputPricePerMtok": 2.5, "outputPricePerMtok": 12.5,
                "contextTokens": 64000 })
    );

    // Operators and viewers list providers and models; only admins see credentials.
    let listed = operator
        .data(
            "{ providers { name kind credential } models { name provider upstream supportsTools } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listed,
        json!({
            "providers": [
                { "name": "azure", "kind": "AZURE_OPENAI", "credential": "openai-key" },
                { "name": "ollama", "kind": "OPENAI", "credential": null },
                { "name": "openai", "kind": "OPENAI", "credential": "openai-key" },
            ],
            "models": [
                { "name": "gpt-4o", "provider": "openai", "upstream": "gpt-4o", "supportsTools": true },
                { "name": "qwen2.5:7b", "provider": "ollama", "upstream": "qwen2.5:7b-instruct",
                  "supportsTools": false },
            ],
        })
    );
    viewer
        .data("{ providers { name } models { name } }", json!({}))
        .await;
    let creds = admin.data("{ credentials { name hint } }", json!({})).await;
    assert_eq!(
        creds["credentials"],
        json!([{ "name": "openai-key", "hint": "…3f2e" }])
    );

    // Bad input says which object and field, and stores nothing.
    let p = |name: &str, fields: Value| {
        let mut input = json!({ "name": name, "kind": "OPENAI", "baseUrl": "http://h/v1" });
        input
            .as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        json!({ "i": input })
    };
    let m = |name: &str, fields: Value| {
        let mut input = json!({ "name": name, "provider": "openai" });
        input
            .as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        json!({ "i": input })
    };
    for (query, vars, want) in [
        (
            PROVIDER,
            p("p1", json!({ "baseUrl": "ftp://h/v1" })),
            "provider \"p1\": baseUrl: must start with http",
        ),
        (
            PROVIDER,
            p(
                "p2",
                json!({ "baseUrl": format!("https://user:{KEY}@h/v1") }),
            ),
            "provider \"p2\": baseUrl: must not carry a user",
        ),
        (
            PROVIDER,
            p("p3", json!({ "baseUrl": "https://h/v1?key=1" })),
            "provider \"p3\": baseUrl: must not carry a query",
        ),
        (
            PROVIDER,
            p("p4", json!({ "credential": "nope" })),
            "provider \"p4\": credential: no credential named \"nope\"",
        ),
        (
            PROVIDER,
            p("p5", json!({ "azureApiVersion": "2024-10-21" })),
            "provider \"p5\": azureApiVersion: only for kind azure_openai",
        ),
        (
            PROVIDER,
            p("bad name", json!({})),
            "provider \"bad name\": name:",
        ),
        (
            PROVIDER,
            p("openai", json!({})),
            "a provider named \"openai\" already exists",
        ),
        (
            MODEL,
            m("m1", json!({ "inputPricePerMtok": -1.0 })),
            "model \"m1\": inputPricePerMtok:",
        ),
        (
            MODEL,
            m("m2", json!({ "outputPricePerMtok": -0.01 })),
            "model \"m2\": outputPricePerMtok:",
        ),
        (
            MODEL,
            m("m3", json!({ "provider": "nope" })),
            "model \"m3\": provider: no provider named \"nope\"",
        ),
        (
            MODEL,
            m("m4", json!({ "contextTokens": 0 })),
            "model \"m4\": contextTokens:",
        ),
        (
            MODEL,
            m("builtin:rules", json!({})),
            "model \"builtin:rules\": name: builtin:… names are reserved",
        ),
        (
            MODEL,
            m("builtin:gpt", json!({})),
            "model \"builtin:gpt\": name: builtin:… names are reserved",
        ),
        (
            MODEL,
            m("gpt-4o", json!({})),
            "a model named \"gpt-4o\" already exists",
        ),
        (
            CREDENTIAL,
            json!({ "n": "k2", "s": "line\nbreak" }),
            "credential \"k2\": secret:",
        ),
        (
            CREDENTIAL,
            json!({ "n": "openai-key", "s": KEY }),
            "a credential named \"openai-key\" already exists",
        ),
    ] {
        let resp = admin.gql(query, vars).await;
        let want_code = if want.contains("already exists") {
            "CONFLICT"
        } else {
            "VALIDATION_FAILED"
        };
        assert_eq!(code(&resp), want_code, "{resp}");
        assert!(message(&resp).starts_with(want), "{resp} (wanted {want})");
    }
    // An unknown kind is refused before the engine, naming the field.
    let resp = admin
        .gql(PROVIDER, p("p6", json!({ "kind": "BEDROCK" })))
        .await;
    assert_eq!(code(&resp), "BAD_REQUEST", "{resp}");
    assert!(
        message(&resp).contains("kind") && message(&resp).contains("BEDROCK"),
        "{resp}"
    );
    let counts = admin
        .data(
            "{ providers { name } models { name } credentials { name } }",
            json!({}),
        )
        .await;
    assert_eq!(
        (
            counts["providers"].as_array().unwrap().len(),
            counts["models"].as_array().unwrap().len(),
            counts["credentials"].as_array().unwrap().len()
        ),
        (3, 2, 1),
        "nothing invalid was stored"
    );

    // What is in use cannot go, and the refusal names the users.
    let resp = admin
        .gql(
            "mutation { deleteCredential(name: \"openai-key\") }",
            json!({}),
        )
        .await;
    assert_eq!(code(&resp), "CONFLICT", "{resp}");
    assert_eq!(
        message(&resp),
        "credential \"openai-key\" is used by provider(s) \"azure\", \"openai\": delete them first"
    );
    let resp = admin
        .gql("mutation { deleteProvider(name: \"openai\") }", json!({}))
        .await;
    assert_eq!(code(&resp), "CONFLICT", "{resp}");
    assert_eq!(
        message(&resp),
        "provider \"openai\" is used by model(s) \"gpt-4o\": delete them first"
    );

    // The key at rest is ciphertext; the engine alone decrypts it.
    let sealed = stored(&db.url, "openai-key").await;
    assert!(sealed.starts_with("v1:") && !sealed.contains(KEY) && !sealed.contains("3f2e"));
    let conn = engine
        .model_connection("gpt-4o")
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(conn.api_key.as_ref().map(Secret::expose), Some(KEY));
    assert_eq!(conn.provider.base_url, "https://api.openai.example/v1");
    assert_eq!(conn.model.output_price_per_mtok, 12.5);
    assert!(!format!("{conn:?}").contains(KEY));
    let local = engine
        .model_connection("qwen2.5:7b")
        .await
        .unwrap()
        .expect("stored");
    assert!(local.api_key.is_none());
    assert!(engine.model_connection("default").await.unwrap().is_none());
    assert_eq!(
        engine
            .model_names()
            .await
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        ["gpt-4o", "qwen2.5:7b"]
    );
    assert_eq!(engine.check_secrets().await.unwrap(), 1);

    // Deleting in order works; a missing name is NOT_FOUND.
    for query in [
        "mutation { deleteModel(name: \"gpt-4o\") }",
        "mutation { deleteProvider(name: \"openai\") }",
        "mutation { deleteProvider(name: \"azure\") }",
        "mutation { deleteCredential(name: \"openai-key\") }",
    ] {
        let resp = admin.gql(query, json!({})).await;
        assert!(resp["errors"].is_null(), "{query}: {resp}");
    }
    let resp = admin
        .gql(
            "mutation { deleteCredential(name: \"openai-key\") }",
            json!({}),
        )
        .await;
    assert_eq!(code(&resp), "NOT_FOUND", "{resp}");
    assert_eq!(message(&resp), "credential openai-key not found");
    let resp = admin
        .gql("mutation { deleteModel(name: \"gpt-4o\") }", json!({}))
        .await;
    assert_eq!(code(&resp), "NOT_FOUND", "{resp}");

    // Nothing any client received carries the key.
    let bodies = admin.transcript.lock().unwrap().clone();
    assert!(bodies.len() > 20, "{}", bodies.len());
    for body in &bodies {
        assert!(!body.contains(KEY) && !body.contains(&sealed), "{body}");
    }
    shutdown.cancel();
}
both_backends!(providers_over_graphql_never_show_the_key, over_graphql);

async fn teams_and_rotation(backend: Backend) {
    let Some(db) = TestDb::migrated(backend).await else {
        return;
    };
    let (k1, k2) = (generate_key(), generate_key());
    let engine = common::keyed_engine(&db.url, Some(Keyring::new(&k1, &[]).unwrap())).await;

    // Before the model exists, a team naming it is refused at each path.
    let err = engine.apply_team(&team("gpt-4o")).await.unwrap_err();
    let Error::Violations(violations) = err else {
        panic!("{err}")
    };
    let paths: Vec<&str> = violations.iter().map(|v| v.path.as_str()).collect();
    assert_eq!(
        paths,
        ["supervisor.model", "nodes[0].agents[0].model[0]"],
        "{violations:?}"
    );
    assert!(violations[0].message.contains("unknown model \"gpt-4o\""));

    engine
        .create_credential(Caller::Local, "openai-key", Secret::new(KEY))
        .await
        .unwrap();
    engine
        .create_provider(
            Caller::Local,
            provider("openai", "http://h/v1", Some("openai-key")),
        )
        .await
        .unwrap();
    engine
        .create_model(
            Caller::Local,
            NewModel::new("gpt-4o", "openai", "gpt-4o-2024-08-06"),
        )
        .await
        .unwrap();
    // Now it validates and applies; built-ins stay valid; an unknown one does not.
    let (applied, changed) = engine.apply_team(&team("gpt-4o")).await.unwrap();
    assert!(changed && applied.version == 1);
    engine.validate_team(&team("builtin:rules")).await.unwrap();
    let err = engine.apply_team(&team("gpt-5")).await.unwrap_err();
    let Error::Violations(violations) = err else {
        panic!("{err}")
    };
    assert_eq!(violations[0].path, "supervisor.model");
    assert!(
        violations[0].message.contains("unknown model \"gpt-5\""),
        "{violations:?}"
    );

    // A model the team names cannot be deleted; once the team stops naming it, it can.
    let err = engine
        .delete_model(Caller::Local, "gpt-4o")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    assert_eq!(
        err.to_string(),
        "model \"gpt-4o\" is used by team(s) \"shop\": change them first"
    );
    engine.apply_team(&team("builtin:rules")).await.unwrap();
    engine
        .create_model(
            Caller::Local,
            NewModel::new("spare", "openai", "gpt-4o-mini"),
        )
        .await
        .unwrap();
    engine.delete_model(Caller::Local, "spare").await.unwrap();
    engine.apply_team(&team("gpt-4o")).await.unwrap();

    // Rotation re-seals the key with the other secrets.
    let before = stored(&db.url, "openai-key").await;
    let both = common::keyed_engine(&db.url, Some(Keyring::new(&k2, &[&k1]).unwrap())).await;
    assert_eq!(both.check_secrets().await.unwrap(), 1);
    let report = both.rotate_secrets(Caller::Local).await.unwrap();
    assert_eq!((report.rotated, report.current), (1, 0));
    assert_ne!(stored(&db.url, "openai-key").await, before);
    let new_only = common::keyed_engine(&db.url, Some(Keyring::new(&k2, &[]).unwrap())).await;
    assert_eq!(new_only.check_secrets().await.unwrap(), 1);
    let conn = new_only.model_connection("gpt-4o").await.unwrap().unwrap();
    assert_eq!(conn.api_key.unwrap().expose(), KEY);
    assert_eq!(conn.model.upstream, "gpt-4o-2024-08-06");
    // The old key alone no longer reads it, and says so without the key.
    let err = engine.check_secrets().await.unwrap_err();
    assert!(
        err.to_string().contains("llm_credentials.secret_encrypted"),
        "{err}"
    );
    assert!(!err.to_string().contains(KEY));

    // Without a master key no credential is stored.
    let keyless = common::keyed_engine(&db.url, None).await;
    let err = keyless
        .create_credential(Caller::Local, "other", Secret::new(KEY))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("AIOPS_MASTER_KEY"), "{err}");
    assert!(!err.to_string().contains(KEY));
}
both_backends!(teams_name_stored_models_and_keys_rotate, teams_and_rotation);

/// What the model server received: the path, the headers and the JSON body.
type Inbox = Arc<Mutex<Vec<(String, HeaderMap, Value)>>>;

/// An OpenAI-compatible server on loopback: under `/good/v1` it answers "ok" (as a
/// stream when asked to stream), under `/bad/v1` it refuses the key with 401.
async fn model_server() -> (String, Inbox) {
    let inbox: Inbox = Arc::default();
    let kept = inbox.clone();
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let inbox = kept.clone();
        async move {
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let path = uri.path().to_owned();
            let stream = body["stream"] == true;
            inbox.lock().unwrap().push((path.clone(), headers, body));
            answer(&path, stream)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), inbox)
}

fn answer(path: &str, stream: bool) -> Response {
    match (path, stream) {
        ("/good/v1/chat/completions", false) => axum::Json(json!({
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": "ok" },
                          "finish_reason": "stop" }],
            "usage": { "prompt_tokens": 5, "completion_tokens": 1 },
        }))
        .into_response(),
        ("/good/v1/chat/completions", true) => {
            let chunks = [
                json!({ "choices": [{ "index": 0, "delta": { "role": "assistant", "content": "o" },
                                      "finish_reason": null }] }),
                json!({ "choices": [{ "index": 0, "delta": { "content": "k" },
                                      "finish_reason": "stop" }] }),
                json!({ "choices": [], "usage": { "prompt_tokens": 5, "completion_tokens": 1 } }),
            ];
            let mut sse: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
            sse.push_str("data: [DONE]\n\n");
            ([("content-type", "text/event-stream")], sse).into_response()
        }
        ("/bad/v1/chat/completions", _) => (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({ "error": { "message": "Incorrect API key",
                                          "type": "invalid_request_error",
                                          "code": "invalid_api_key" } })),
        )
            .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_model_calls_the_provider_with_the_decrypted_key() {
    let Some(db) = TestDb::migrated(Backend::Sqlite).await else {
        return;
    };
    let (base, inbox) = model_server().await;
    let engine =
        common::keyed_engine(&db.url, Some(Keyring::new(&generate_key(), &[]).unwrap())).await;
    let shutdown = CancellationToken::new();
    let addr = serve_api(&engine, shutdown.clone()).await;
    let admin = common::Api::new(&addr, Some(&token_for(&engine, "root", Role::Admin).await));
    let operator = admin.with_token(Some(&token_for(&engine, "olga", Role::Operator).await));
    let viewer = admin.with_token(Some(&token_for(&engine, "eve", Role::Viewer).await));
    admin
        .data(CREDENTIAL, json!({ "n": "key", "s": KEY }))
        .await;
    for (name, path) in [("good", "/good/v1"), ("bad", "/bad/v1")] {
        admin
            .data(
                PROVIDER,
                json!({ "i": { "name": name, "kind": "OPENAI",
                    "baseUrl": format!("{base}{path}"), "credential": "key" } }),
            )
            .await;
    }
    for (name, provider, streaming) in [
        ("streamed", "good", true),
        ("whole", "good", false),
        ("denied", "bad", false),
    ] {
        admin
            .data(
                MODEL,
                json!({ "i": { "name": name, "provider": provider, "upstream": "gpt-test",
                    "supportsStreaming": streaming } }),
            )
            .await;
    }
    const TEST: &str = "mutation($n: String!) { testModel(name: $n) { ok latencyMs message } }";

    let resp = viewer.gql(TEST, json!({ "n": "whole" })).await;
    assert_eq!(
        resp["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{resp}"
    );
    for name in ["streamed", "whole"] {
        let test = operator.data(TEST, json!({ "n": name })).await["testModel"].clone();
        assert_eq!(test["ok"], true, "{test}");
        assert!(
            test["latencyMs"].as_i64().is_some_and(|ms| ms >= 0),
            "{test}"
        );
        assert_eq!(
            test["message"],
            format!("model \"{name}\" answered \"ok\" (5 input, 1 output tokens)")
        );
    }
    let test = admin.data(TEST, json!({ "n": "denied" })).await["testModel"].clone();
    assert_eq!(test["ok"], false, "{test}");
    let said = test["message"].as_str().unwrap();
    assert!(
        said.contains("answered 401") && said.contains("Incorrect API key"),
        "{said}"
    );
    assert!(!said.contains(KEY), "{said}");
    let resp = operator.gql(TEST, json!({ "n": "nope" })).await;
    assert_eq!(
        resp["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{resp}"
    );

    // The server saw the decrypted key and the tiny request: streamed when the model
    // streams, whole otherwise.
    let got = inbox.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    for (path, headers, body) in &got {
        assert_eq!(
            headers["authorization"].to_str().unwrap(),
            format!("Bearer {KEY}"),
            "{path}"
        );
        assert_eq!(body["model"], "gpt-test");
        assert_eq!(body["max_tokens"], 8);
        assert!(body["tools"].as_array().is_none_or(Vec::is_empty), "{body}");
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(
            messages.last().unwrap()["content"],
            "Reply with the word ok."
        );
    }
    assert_eq!(got[0].2["stream"], true);
    assert_eq!(got[0].2["stream_options"]["include_usage"], true);
    assert_eq!(got[1].2["stream"], false);

    // The breakers of the endpoints called, for viewers: a refused key is not the
    // endpoint's illness.
    let breakers = viewer
        .data(
            "{ llmBreakers { endpoint state consecutiveFailures retryAt } }",
            json!({}),
        )
        .await["llmBreakers"]
        .clone();
    let breakers = breakers.as_array().unwrap();
    assert_eq!(breakers.len(), 2, "{breakers:?}");
    for b in breakers {
        assert_eq!(
            (&b["state"], &b["consecutiveFailures"], &b["retryAt"]),
            (&json!("CLOSED"), &json!(0), &Value::Null),
            "{b}"
        );
        assert!(
            b["endpoint"].as_str().unwrap().contains("/v1 gpt-test"),
            "{b}"
        );
    }
    for body in admin.transcript.lock().unwrap().iter() {
        assert!(!body.contains(KEY), "{body}");
    }
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_adds_a_key_from_stdin_and_lists_only_its_hint() {
    let Some(db) = TestDb::migrated(Backend::Sqlite).await else {
        return;
    };
    let (base, inbox) = model_server().await;
    let dir = tempfile::tempdir().unwrap();
    let master = generate_key();
    let run = |args: &[&str], stdin: Option<&str>| {
        use std::io::Write;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_aiops"));
        cmd.args(args)
            .env("DATABASE_URL", &db.url)
            .env("AIOPS_DATA_DIR", dir.path())
            .env("AIOPS_MASTER_KEY", &master)
            .env_remove("AIOPS_OLD_MASTER_KEYS")
            .env_remove("AIOPS_CREDENTIAL_SECRET")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
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
    let url = format!("{base}/good/v1");
    for (args, stdin) in [
        (
            &["credential", "add", "openai-key"][..],
            Some(format!("{KEY}\n")),
        ),
        (
            &[
                "provider",
                "add",
                "local",
                "--kind",
                "openai",
                "--base-url",
                &url,
                "--credential",
                "openai-key",
            ][..],
            None,
        ),
        (
            &[
                "model",
                "add",
                "small",
                "--provider",
                "local",
                "--upstream",
                "gpt-test",
                "--no-streaming",
                "--input-price",
                "0.15",
                "--output-price",
                "0.6",
            ][..],
            None,
        ),
    ] {
        let (code, out) = run(args, stdin.as_deref());
        assert_eq!(code, Some(0), "{args:?}: {out}");
        printed += &out;
    }
    let (code, out) = run(&["credential", "list"], None);
    assert_eq!(code, Some(0), "{out}");
    let line: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (&line["name"], &line["hint"]),
        (&json!("openai-key"), &json!("…3f2e"))
    );
    printed += &out;
    let (code, out) = run(&["model", "list"], None);
    assert_eq!(code, Some(0), "{out}");
    let line: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (
            &line["provider"],
            &line["supports_streaming"],
            &line["output_price_per_mtok"]
        ),
        (&json!("local"), &json!(false), &json!(0.6))
    );
    let (code, out) = run(&["model", "test", "small"], None);
    assert_eq!(code, Some(0), "{out}");
    let line: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(line["ok"], true, "{out}");
    printed += &out;
    assert_eq!(
        inbox.lock().unwrap()[0].1["authorization"]
            .to_str()
            .unwrap(),
        format!("Bearer {KEY}")
    );
    // Refusals name what is in the way, or what is wrong.
    let (code, out) = run(&["credential", "remove", "openai-key"], None);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("used by provider(s) \"local\""), "{out}");
    let (code, out) = run(
        &[
            "provider",
            "add",
            "x",
            "--kind",
            "bedrock",
            "--base-url",
            "http://h",
        ],
        None,
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("unknown provider kind \"bedrock\""), "{out}");
    let (code, out) = run(&["credential", "add", "empty"], Some(""));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("AIOPS_CREDENTIAL_SECRET"), "{out}");
    for args in [
        &["model", "remove", "small"][..],
        &["provider", "remove", "local"][..],
        &["credential", "remove", "openai-key"][..],
    ] {
        let (code, out) = run(args, None);
        assert_eq!(code, Some(0), "{args:?}: {out}");
        printed += &out;
    }
    assert!(!printed.contains(KEY), "{printed}");
}
