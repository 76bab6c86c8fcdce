//! The fake model provider (`common::fake_llm`) speaks the wire formats: driven with
//! raw HTTP and decoded by the engine's own SSE decoder and stream accumulators, its
//! answers give the text, tool calls, finish reasons and usage that were scripted, and
//! its faults look to a client as the real servers' do. Tests of the engine against
//! the fake rely on this.

mod common;

use std::time::{Duration, Instant};

use aiops_engine::llm::classify::{Verdict, classify};
use aiops_engine::llm::openai::{CompletedToolCall, WireUsage};
use aiops_engine::llm::sse::{SseDecoder, SseEvent};
use aiops_engine::llm::{anthropic, openai};
use common::fake_llm::{Dialect, FakeLlm, Outcome, Reply};
use futures::StreamExt;
use serde_json::{Value, json};

const KEY: &str = "sk-fake-test";
const ANTHROPIC_VERSION: &str = "2023-06-01";

/// POSTs `body` as JSON with `headers`.
async fn post(url: &str, headers: &[(&str, &str)], body: &Value) -> reqwest::Response {
    post_with(&reqwest::Client::new(), url, headers, body).await
}

async fn post_with(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> reqwest::Response {
    let mut request = client.post(url).json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("the fake answers")
}

fn bearer() -> (&'static str, String) {
    ("authorization", format!("Bearer {KEY}"))
}

fn openai_body(model: &str, user: &str, stream: bool, include_usage: bool) -> Value {
    let mut body = json!({
        "model": model,
        "messages": [
            { "role": "system", "content": "You are an SRE." },
            { "role": "user", "content": user },
        ],
        "tools": [{ "type": "function", "function": { "name": "prometheus_query", "description": "PromQL", "parameters": { "type": "object" } } }],
        "stream": stream,
    });
    if include_usage {
        body["stream_options"] = json!({ "include_usage": true });
    }
    body
}

fn anthropic_body(model: &str, user: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "max_tokens": 1024,
        "system": "You are an SRE.",
        "messages": [{ "role": "user", "content": [{ "type": "text", "text": user }] }],
        "tools": [{ "name": "prometheus_query", "description": "PromQL", "input_schema": { "type": "object" } }],
        "stream": stream,
    })
}

fn anthropic_headers() -> [(&'static str, &'static str); 2] {
    [("x-api-key", KEY), ("anthropic-version", ANTHROPIC_VERSION)]
}

/// The SSE events of a response body, and the error that ended it early, if any.
async fn events_of(response: reqwest::Response) -> (Vec<SseEvent>, Option<reqwest::Error>) {
    let mut decoder = SseDecoder::default();
    let mut events = Vec::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(bytes) => events.extend(decoder.push(&bytes)),
            Err(e) => return (events, Some(e)),
        }
    }
    events.extend(decoder.finish());
    (events, None)
}

/// The OpenAI completion and the text deltas one by one.
fn openai_decode(
    events: &[SseEvent],
) -> Result<(openai::Completion, Vec<String>), openai::StreamError> {
    let mut acc = openai::StreamAccumulator::default();
    let mut deltas = Vec::new();
    for e in events {
        deltas.extend(acc.push(&e.data)?);
    }
    Ok((acc.finish(), deltas))
}

fn anthropic_decode(
    events: &[SseEvent],
) -> Result<(anthropic::Completion, Vec<String>), anthropic::StreamError> {
    let mut acc = anthropic::StreamAccumulator::default();
    let mut deltas = Vec::new();
    for e in events {
        deltas.extend(acc.push(&e.data)?);
    }
    Ok((acc.finish(), deltas))
}

fn data_json(event: &SseEvent) -> Value {
    serde_json::from_str(&event.data).unwrap_or(Value::Null)
}

#[tokio::test]
async fn openai_streams_text_and_usage_only_when_asked() {
    let fake = FakeLlm::start_with_key(KEY).await;
    let answer = "The database is down since 10:02 because its disk is full.";
    fake.script(
        "gpt-test",
        [
            Reply::text(answer).with_usage(321, 12),
            Reply::text("Second answer."),
        ],
    );
    let url = format!("{}/chat/completions", fake.openai_url());
    let (name, value) = bearer();

    let response = post(
        &url,
        &[(name, &value)],
        &openai_body("gpt-test", "Why?", true, true),
    )
    .await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let (events, error) = events_of(response).await;
    assert!(error.is_none(), "{error:?}");
    let (c, deltas) = openai_decode(&events).expect("a clean stream");
    assert!(deltas.len() >= 5, "the text streams in pieces: {deltas:?}");
    assert_eq!(deltas.concat(), answer);
    assert_eq!(c.text, answer);
    assert_eq!(c.finish_reason.as_deref(), Some("stop"));
    assert_eq!(
        c.usage,
        Some(WireUsage {
            prompt_tokens: 321,
            completion_tokens: 12
        })
    );
    assert!(c.done);
    assert!(c.tool_calls.is_empty());
    let usage_chunk = data_json(&events[events.len() - 2]);
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["total_tokens"], 333);

    // Without stream_options there is no usage chunk at all.
    let response = post(
        &url,
        &[(name, &value)],
        &openai_body("gpt-test", "Again?", true, false),
    )
    .await;
    let (events, _) = events_of(response).await;
    let (c, _) = openai_decode(&events).expect("a clean stream");
    assert_eq!(
        (c.text.as_str(), c.usage, c.done),
        ("Second answer.", None, true)
    );
    assert!(events.iter().all(|e| !e.data.contains("usage")));

    let seen = fake.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].dialect, Dialect::OpenAi);
    assert_eq!((seen[0].stream, seen[0].include_usage), (true, true));
    assert_eq!((seen[1].stream, seen[1].include_usage), (true, false));
    assert!(seen.iter().all(|s| s.outcome == Outcome::Completed));
    assert_eq!(seen[0].headers["authorization"], value);
    assert_eq!(seen[1].last_user_text(), "Again?");
    assert_eq!(seen[1].system_text(), "You are an SRE.");
    assert_eq!(seen[1].tool_names(), ["prometheus_query"]);
    assert_eq!(fake.remaining("gpt-test"), 0);
}

#[tokio::test]
async fn openai_streams_parallel_tool_calls_in_fragments() {
    let fake = FakeLlm::start().await;
    // Ids with a slash and a space: the engine must cope with whatever a server sends.
    fake.script(
        "gpt-test",
        [
            Reply::tool_calls([
                (
                    "call_1",
                    "prometheus_query",
                    json!({ "query": "up{job=\"db\"}" }),
                ),
                ("call 2/b", "topology", json!({})),
            ])
            .with_text("Let me check."),
            Reply::invalid_tool_arguments("call_x", "prometheus_query"),
        ],
    );
    let url = format!("{}/chat/completions", fake.openai_url());
    let response = post(&url, &[], &openai_body("gpt-test", "Why?", true, true)).await;
    let (events, _) = events_of(response).await;
    let (c, _) = openai_decode(&events).expect("a clean stream");
    assert_eq!(c.text, "Let me check.");
    assert_eq!(c.finish_reason.as_deref(), Some("tool_calls"));
    assert!(c.done);
    assert_eq!(
        c.tool_calls,
        vec![
            CompletedToolCall {
                id: "call_1".into(),
                name: "prometheus_query".into(),
                arguments: Ok(json!({ "query": "up{job=\"db\"}" })),
            },
            CompletedToolCall {
                id: "call 2/b".into(),
                name: "topology".into(),
                arguments: Ok(json!({})),
            },
        ]
    );
    // Each call's arguments arrive in two or more fragments after the id and name.
    for index in [0, 1] {
        let fragments = events
            .iter()
            .map(data_json)
            .filter(|chunk| {
                let part = &chunk["choices"][0]["delta"]["tool_calls"][0];
                part["index"] == index && part.get("id").is_none()
            })
            .count();
        assert!(fragments >= 2, "call {index} in {fragments} fragments");
    }

    let response = post(&url, &[], &openai_body("gpt-test", "Again?", true, false)).await;
    let (events, _) = events_of(response).await;
    let (c, _) = openai_decode(&events).expect("a clean stream");
    assert!(c.done);
    assert_eq!(c.tool_calls.len(), 1);
    assert_eq!(c.tool_calls[0].id, "call_x");
    let err = c.tool_calls[0].arguments.clone().unwrap_err();
    assert!(err.contains("not valid JSON"), "{err}");
}

#[tokio::test]
async fn anthropic_streams_text_and_tool_use() {
    let fake = FakeLlm::start_with_key(KEY).await;
    fake.script(
        "claude-test",
        [
            Reply::tool_calls([(
                "toolu_1",
                "prometheus_query",
                json!({ "query": "pg_up == 0" }),
            )])
            .with_text("Checking the database.")
            .with_usage(210, 48),
            Reply::text("All clear."),
        ],
    );
    let url = format!("{}/v1/messages", fake.base_url());

    let response = post(
        &url,
        &anthropic_headers(),
        &anthropic_body("claude-test", "Why is the database down?", true),
    )
    .await;
    assert_eq!(response.status(), 200);
    let (events, error) = events_of(response).await;
    assert!(error.is_none(), "{error:?}");
    // Every event is named, and named after its data's type.
    for e in &events {
        assert_eq!(e.event.as_deref(), data_json(e)["type"].as_str(), "{e:?}");
    }
    assert!(events.iter().any(|e| e.event.as_deref() == Some("ping")));
    let json_deltas = events
        .iter()
        .filter(|e| data_json(e)["delta"]["type"] == "input_json_delta")
        .count();
    assert!(json_deltas >= 2, "the input in {json_deltas} pieces");
    let (c, deltas) = anthropic_decode(&events).expect("a clean stream");
    assert!(deltas.len() >= 3, "{deltas:?}");
    assert_eq!(c.text, "Checking the database.");
    assert_eq!(c.stop_reason.as_deref(), Some("tool_use"));
    assert_eq!(
        c.usage,
        anthropic::Usage {
            input_tokens: 210,
            output_tokens: 48
        }
    );
    assert!(c.done);
    assert_eq!(
        c.tool_calls,
        vec![CompletedToolCall {
            id: "toolu_1".into(),
            name: "prometheus_query".into(),
            arguments: Ok(json!({ "query": "pg_up == 0" })),
        }]
    );

    // The tool result goes back in a user message; the next answer ends the turn.
    let mut body = anthropic_body("claude-test", "Why is the database down?", true);
    body["messages"].as_array_mut().unwrap().extend([
        json!({ "role": "assistant", "content": [{ "type": "tool_use", "id": "toolu_1", "name": "prometheus_query", "input": {} }] }),
        json!({ "role": "user", "content": [{ "type": "tool_result", "tool_use_id": "toolu_1", "content": "pg_up 0" }] }),
    ]);
    let (events, _) = events_of(post(&url, &anthropic_headers(), &body).await).await;
    let (c, _) = anthropic_decode(&events).expect("a clean stream");
    assert_eq!(c.text, "All clear.");
    assert_eq!(c.stop_reason.as_deref(), Some("end_turn"));
    assert_eq!(c.usage.input_tokens, 100, "the default usage");

    let seen = fake.requests_for("claude-test");
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].dialect, Dialect::Anthropic);
    assert_eq!(seen[1].headers["anthropic-version"], ANTHROPIC_VERSION);
    assert_eq!(seen[1].system_text(), "You are an SRE.");
    assert_eq!(seen[1].last_user_text(), "Why is the database down?");
    assert_eq!(seen[1].tool_result_ids(), ["toolu_1"]);
    assert_eq!(seen[1].tool_results()[0].1, "pg_up 0");
    assert_eq!(seen[1].tool_names(), ["prometheus_query"]);
}

#[tokio::test]
async fn non_streamed_answers_in_both_dialects() {
    let fake = FakeLlm::start().await;
    let call = ("call_1", "prometheus_query", json!({ "query": "up" }));
    fake.script(
        "gpt-test",
        [Reply::tool_calls([call.clone()]).with_usage(7, 3)],
    );
    fake.script(
        "claude-test",
        [Reply::tool_calls([call]).with_text("Checking.")],
    );

    let url = format!("{}/chat/completions", fake.openai_url());
    let response = post(&url, &[], &openai_body("gpt-test", "Why?", false, false)).await;
    assert_eq!(response.status(), 200);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    let function = &choice["message"]["tool_calls"][0]["function"];
    assert_eq!(function["name"], "prometheus_query");
    let arguments: Value = serde_json::from_str(function["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({ "query": "up" }));
    assert_eq!(
        v["usage"],
        json!({ "prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10 })
    );

    let url = format!("{}/v1/messages", fake.base_url());
    let mut body = anthropic_body("claude-test", "Why?", false);
    body.as_object_mut().unwrap().remove("stream");
    let v: Value = post(&url, &anthropic_headers(), &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(
        v["content"][0],
        json!({ "type": "text", "text": "Checking." })
    );
    assert_eq!(
        v["content"][1],
        json!({ "type": "tool_use", "id": "call_1", "name": "prometheus_query", "input": { "query": "up" } })
    );
    assert_eq!(
        v["usage"],
        json!({ "input_tokens": 100, "output_tokens": 20 })
    );
    assert!(
        fake.requests()
            .iter()
            .all(|s| !s.stream && s.outcome == Outcome::Completed)
    );
}

#[tokio::test]
async fn azure_routes_on_the_deployment_with_api_key() {
    let fake = FakeLlm::start_with_key(KEY).await;
    fake.script("prod-gpt4o", [Reply::text("From the deployment.")]);
    fake.script("gpt-4o-mini", [Reply::text("From the v1 surface.")]);
    let url = format!(
        "{}/openai/deployments/prod-gpt4o/chat/completions?api-version=2024-10-21",
        fake.base_url()
    );
    // Azure ignores the body's model: the deployment decides.
    let body = openai_body("ignored-model", "Why?", true, true);
    let response = post(&url, &[("api-key", KEY)], &body).await;
    assert_eq!(response.status(), 200);
    let (events, _) = events_of(response).await;
    let (c, _) = openai_decode(&events).expect("a clean stream");
    assert_eq!((c.text.as_str(), c.done), ("From the deployment.", true));
    assert!(c.usage.is_some());

    // A Bearer token is not Azure's key header.
    let (name, value) = bearer();
    let response = post(&url, &[(name, &value)], &body).await;
    assert_eq!(response.status(), 401);

    let v1 = format!("{}/openai/v1/chat/completions", fake.base_url());
    let response = post(
        &v1,
        &[("api-key", KEY)],
        &openai_body("gpt-4o-mini", "Why?", true, false),
    )
    .await;
    let (events, _) = events_of(response).await;
    assert_eq!(
        openai_decode(&events).unwrap().0.text,
        "From the v1 surface."
    );

    let seen = fake.requests();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| s.dialect == Dialect::Azure));
    assert_eq!(seen[0].model, "prod-gpt4o");
    assert_eq!(
        seen[0].path,
        "/openai/deployments/prod-gpt4o/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(seen[0].headers["api-key"], KEY);
    assert_eq!(seen[1].outcome, Outcome::Faulted("status 401".into()));
    assert_eq!(seen[2].model, "gpt-4o-mini");
    assert!(fake.requests_for("ignored-model").is_empty());
}

#[tokio::test]
async fn http_errors_as_the_engine_classifies_them() {
    let fake = FakeLlm::start().await;
    fake.script(
        "gpt-test",
        [
            Reply::rate_limited(1500),
            Reply::overloaded(),
            Reply::context_length(),
            Reply::reject_stream_options(),
            Reply::status(502, None),
            Reply::status(418, json!({ "custom": true })).with_header("x-should-retry", "false"),
        ],
    );
    fake.script(
        "claude-test",
        [Reply::overloaded(), Reply::rate_limited(200)],
    );
    let openai_url = format!("{}/chat/completions", fake.openai_url());
    let anthropic_url = format!("{}/v1/messages", fake.base_url());

    let classified = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap();
        let c = classify("fake", status, &headers, &body, chrono::Utc::now());
        (status, headers, body, c)
    };
    let body = openai_body("gpt-test", "Why?", true, true);

    let (status, headers, body_text, c) = classified(post(&openai_url, &[], &body).await).await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after-ms"], "1500");
    assert_eq!(headers["retry-after"], "2");
    let v: Value = serde_json::from_str(&body_text).unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(
        c.verdict,
        Verdict::Retry {
            after: Some(Duration::from_millis(1500))
        }
    );

    let (status, _, _, c) = classified(post(&openai_url, &[], &body).await).await;
    assert_eq!((status, c.verdict), (503, Verdict::Retry { after: None }));

    let (status, _, _, c) = classified(post(&openai_url, &[], &body).await).await;
    assert_eq!((status, c.verdict), (400, Verdict::Permanent));
    assert!(c.message.contains("context window"), "{}", c.message);

    let (status, _, _, c) = classified(post(&openai_url, &[], &body).await).await;
    assert_eq!((status, c.verdict), (400, Verdict::WithoutStreamOptions));

    let (status, _, body_text, _) = classified(post(&openai_url, &[], &body).await).await;
    assert_eq!(status, 502);
    let v: Value = serde_json::from_str(&body_text).unwrap();
    assert_eq!(v["error"]["type"], "server_error");

    let (status, _, body_text, c) = classified(post(&openai_url, &[], &body).await).await;
    assert_eq!(
        (status, body_text.as_str(), c.verdict),
        (418, r#"{"custom":true}"#, Verdict::Permanent)
    );

    let body = anthropic_body("claude-test", "Why?", true);
    let (status, _, body_text, c) =
        classified(post(&anthropic_url, &anthropic_headers(), &body).await).await;
    assert_eq!(status, 529);
    let v: Value = serde_json::from_str(&body_text).unwrap();
    assert_eq!(
        v,
        json!({ "type": "error", "error": { "type": "overloaded_error", "message": "Overloaded" } })
    );
    assert_eq!(c.verdict, Verdict::Retry { after: None });

    let (status, headers, body_text, _) =
        classified(post(&anthropic_url, &anthropic_headers(), &body).await).await;
    assert_eq!(
        (status, &headers["retry-after-ms"], &headers["retry-after"]),
        (429, &"200".parse().unwrap(), &"1".parse().unwrap())
    );
    assert!(body_text.contains("rate_limit_error"));

    let seen = fake.requests();
    assert_eq!(seen.len(), 8);
    assert!(
        seen.iter()
            .all(|s| matches!(s.outcome, Outcome::Faulted(_))),
        "{seen:?}"
    );
}

#[tokio::test]
async fn streams_that_break_after_200() {
    let fake = FakeLlm::start().await;
    fake.script(
        "gpt-test",
        [
            Reply::drop_after(3),
            Reply::error_mid_stream(),
            Reply::malformed(),
        ],
    );
    fake.script(
        "claude-test",
        [Reply::error_mid_stream(), Reply::drop_after(4)],
    );
    let openai_url = format!("{}/chat/completions", fake.openai_url());
    let anthropic_url = format!("{}/v1/messages", fake.base_url());
    let body = openai_body("gpt-test", "Why?", true, true);

    // Dropped: three events, then the connection closes without [DONE].
    let response = post(&openai_url, &[], &body).await;
    assert_eq!(response.status(), 200);
    let (events, error) = events_of(response).await;
    assert!(error.is_some(), "the body ends in an error");
    assert_eq!(events.len(), 3);
    let (c, _) = openai_decode(&events).expect("good chunks");
    assert!(!c.done);
    assert_eq!(c.finish_reason, None);
    assert!(!c.text.is_empty());

    let (events, error) = events_of(post(&openai_url, &[], &body).await).await;
    assert!(error.is_none());
    match openai_decode(&events) {
        Err(openai::StreamError::Server(e)) => assert_eq!(e.kind.as_deref(), Some("server_error")),
        other => panic!("expected an error in the stream, got {other:?}"),
    }

    let (events, _) = events_of(post(&openai_url, &[], &body).await).await;
    assert!(matches!(
        openai_decode(&events),
        Err(openai::StreamError::Malformed(_))
    ));

    let body = anthropic_body("claude-test", "Why?", true);
    let (events, _) = events_of(post(&anthropic_url, &anthropic_headers(), &body).await).await;
    assert_eq!(events.last().unwrap().event.as_deref(), Some("error"));
    match anthropic_decode(&events) {
        Err(e @ anthropic::StreamError::Server(_)) => {
            assert!(e.to_string().ends_with("Overloaded"), "{e}")
        }
        other => panic!("expected an error in the stream, got {other:?}"),
    }

    let (events, error) = events_of(post(&anthropic_url, &anthropic_headers(), &body).await).await;
    assert!(error.is_some());
    assert_eq!(events.len(), 4);
    let (c, _) = anthropic_decode(&events).expect("good events");
    assert!(!c.done);
    assert_eq!(c.stop_reason, None);

    let outcomes: Vec<Outcome> = fake
        .wait_settled(Duration::from_secs(5))
        .await
        .into_iter()
        .map(|s| s.outcome)
        .collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Faulted("dropped after 3 events".into()),
            Outcome::Faulted("error mid-stream".into()),
            Outcome::Faulted("malformed".into()),
            Outcome::Faulted("error mid-stream".into()),
            Outcome::Faulted("dropped after 4 events".into()),
        ]
    );
}

#[tokio::test]
async fn a_stall_trips_the_clients_read_timeout() {
    let fake = FakeLlm::start().await;
    fake.script("gpt-test", [Reply::stall(Duration::from_secs(2))]);
    let client = reqwest::Client::builder()
        .read_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let url = format!("{}/chat/completions", fake.openai_url());
    let started = Instant::now();
    let response = post_with(
        &client,
        &url,
        &[],
        &openai_body("gpt-test", "Why?", true, false),
    )
    .await;
    assert_eq!(response.status(), 200);
    let (events, error) = events_of(response).await;
    let elapsed = started.elapsed();
    let error = error.expect("the read times out");
    assert!(error.is_timeout(), "{error:?}");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    assert_eq!(events.len(), 2, "the first events came before the stall");
    assert_ne!(fake.requests()[0].outcome, Outcome::Completed);
}

#[tokio::test]
async fn wrong_or_missing_keys_are_401_in_each_dialect() {
    let fake = FakeLlm::start_with_key(KEY).await;
    fake.script("gpt-test", [Reply::text("never served")]);
    let openai_url = format!("{}/chat/completions", fake.openai_url());
    let body = openai_body("gpt-test", "Why?", true, false);
    for headers in [vec![], vec![("authorization", "Bearer sk-wrong")]] {
        let response = post(&openai_url, &headers, &body).await;
        assert_eq!(response.status(), 401);
        let v: Value = response.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_api_key");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    let anthropic_url = format!("{}/v1/messages", fake.base_url());
    let body = anthropic_body("gpt-test", "Why?", true);
    let response = post(
        &anthropic_url,
        &[
            ("x-api-key", "wrong"),
            ("anthropic-version", ANTHROPIC_VERSION),
        ],
        &body,
    )
    .await;
    assert_eq!(response.status(), 401);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "authentication_error");
    // Refused requests are logged but take no scripted reply.
    assert_eq!(fake.requests().len(), 3);
    assert_eq!(fake.remaining("gpt-test"), 1);

    // Anthropic requires its version header, whatever the key.
    let response = post(&anthropic_url, &[("x-api-key", KEY)], &body).await;
    assert_eq!(response.status(), 400);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn respond_fifo_exhaustion_and_outcomes() {
    let fake = FakeLlm::start().await;
    // Parallel callers: the answer depends on what was asked, not on arrival order.
    fake.respond("gpt-test", |seen| {
        if seen.last_user_text().contains("disk") {
            Reply::text("The disk is full.")
        } else {
            Reply::text("The network is fine.")
        }
    });
    // A scripted reply goes first; the function answers once the script is used up.
    fake.script("gpt-test", [Reply::text("Scripted first.")]);
    let url = format!("{}/chat/completions", fake.openai_url());
    let ask = |question: &'static str| {
        let url = url.clone();
        async move {
            let response = post(&url, &[], &openai_body("gpt-test", question, true, false)).await;
            let (events, _) = events_of(response).await;
            openai_decode(&events).unwrap().0.text
        }
    };
    assert_eq!(ask("anything").await, "Scripted first.");
    let (disk, network) = tokio::join!(ask("How is the disk?"), ask("How is the network?"));
    assert_eq!(
        (disk.as_str(), network.as_str()),
        ("The disk is full.", "The network is fine.")
    );

    // Nothing scripted: a loud 500 naming the model.
    let response = post(&url, &[], &openai_body("other-model", "Why?", true, false)).await;
    assert_eq!(response.status(), 500);
    let v: Value = response.json().await.unwrap();
    assert_eq!(
        v["error"]["message"],
        "fake LLM: no scripted reply left for model other-model"
    );

    // A client that leaves after the first chunk: Disconnected, never Completed.
    let words = "one two three four five six seven eight nine ten eleven twelve";
    fake.script(
        "slow-model",
        [Reply::text(words).paced(Duration::from_millis(30))],
    );
    let response = post(&url, &[], &openai_body("slow-model", "Why?", true, false)).await;
    let mut body = response.bytes_stream();
    let first = body.next().await.expect("a first chunk").expect("bytes");
    assert!(first.starts_with(b"data: "));
    drop(body);
    let seen = fake.wait_settled(Duration::from_secs(5)).await;
    let outcomes: Vec<(&str, &Outcome)> = seen
        .iter()
        .map(|s| (s.model.as_str(), &s.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("gpt-test", &Outcome::Completed),
            ("gpt-test", &Outcome::Completed),
            ("gpt-test", &Outcome::Completed),
            (
                "other-model",
                &Outcome::Faulted("fake LLM: no scripted reply left for model other-model".into())
            ),
            ("slow-model", &Outcome::Disconnected),
        ]
    );
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let fake = FakeLlm::start().await;
    let response = post(
        &format!("{}/v1/completions", fake.base_url()),
        &[],
        &json!({}),
    )
    .await;
    assert_eq!(response.status(), 404);
    assert!(fake.requests().is_empty());
}
