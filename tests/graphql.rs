//! The GraphQL API over real HTTP and WebSocket, on Postgres and SQLite.

mod common;

use std::time::Duration;

use aiops_engine::auth::Role;
use common::ws::{self, TRANSPORT_WS};
use common::{Api, Backend, Harness, WorkerProcess, assert_no_secrets, serve_api, token_for};
use futures::StreamExt;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// The real server in front of the harness's engine, and a client holding an admin key.
async fn admin_api(h: &Harness) -> Api {
    let admin = token_for(&h.engine, "admin", Role::Admin).await;
    Api::new(
        &serve_api(&h.engine, h.shutdown.child_token()).await,
        Some(&admin),
    )
}

const START: &str =
    "mutation($input: StartRunInput!) { startRun(input: $input) { id status lastSeq } }";
const RUN: &str = "query($id: UUID!) { run(id: $id) { id status output error lastSeq
    steps { totalCount edges { node { key status attempts } } }
    events { totalCount edges { node { seq kind } } } } }";

/// The nodes of a connection's edges.
fn nodes(connection: &Value) -> Vec<Value> {
    connection["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("not a connection: {connection}"))
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

async fn start(api: &Api, steps: Value) -> String {
    let data = api
        .data(START, json!({ "input": { "input": { "steps": steps } } }))
        .await;
    data["startRun"]["id"].as_str().unwrap().to_owned()
}

async fn wait_status(api: &Api, id: &str, want: &str) -> Value {
    api.wait_for_run(RUN, id, &[want]).await
}

async fn runs_and_steps(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _w = h.spawn_worker();
    let api = admin_api(&h).await;
    assert_eq!(
        api.data("{ health workflows { name } }", json!({})).await,
        json!({ "health": "ok", "workflows": [{ "name": "script" }] })
    );
    // Each workflow describes its input with a JSON Schema (the console's start form).
    let described = api
        .data("{ workflows { description inputSchema } }", json!({}))
        .await;
    let schema = &described["workflows"][0]["inputSchema"];
    assert_eq!(schema["required"], json!(["steps"]), "{schema}");
    assert!(
        !described["workflows"][0]["description"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    let id = start(
        &api,
        json!([{ "kind": "noop" }, { "kind": "output", "value": { "ok": true } }]),
    )
    .await;
    let run = wait_status(&api, &id, "SUCCEEDED").await;
    assert_eq!(run["output"]["output"], json!({ "ok": true }));
    assert_eq!(
        nodes(&run["steps"]),
        vec![json!({ "key": "s0", "status": "SUCCEEDED", "attempts": 1 })]
    );
    assert_eq!(run["steps"]["totalCount"], 1);
    let seqs: Vec<i64> = nodes(&run["events"])
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=run["lastSeq"].as_i64().unwrap()).collect::<Vec<_>>()
    );
    assert_eq!(run["events"]["totalCount"], run["lastSeq"]);
    assert_eq!(nodes(&run["events"])[0]["kind"], "RUN_QUEUED");

    // GraphiQL's wiring (both endpoints, the key) is checked by tests/graphiql.rs.

    // Idempotency key: the same run back.
    let with_key =
        json!({ "input": { "input": { "steps": [{ "kind": "noop" }] }, "idempotencyKey": "k-1" } });
    let a = api.data(START, with_key.clone()).await["startRun"]["id"].clone();
    let b = api.data(START, with_key).await["startRun"]["id"].clone();
    assert_eq!(a, b);

    // Keyset pagination, newest first, and filters.
    for _ in 0..3 {
        start(&api, json!([{ "kind": "noop" }])).await;
    }
    const PAGE: &str = "query($first: Int!, $after: String) { runs(first: $first, after: $after) {
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor } edges { cursor node { id } } } }";
    let seen = field(&walk(&api, PAGE, json!({}), &["runs"], 2, None).await, "id");
    assert_eq!(seen.len(), 5, "every run exactly once across pages");
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 5);
    assert_eq!(seen[4], id, "newest first: the first run comes last");
    const FILTERED: &str = "query($f: RunFilterInput) { runs(first: 50, filter: $f) { edges { node { id status trigger } } } }";
    let succeeded = api
        .data(
            FILTERED,
            json!({ "f": { "statuses": ["SUCCEEDED"], "trigger": "API" } }),
        )
        .await;
    let edges = succeeded["runs"]["edges"].as_array().unwrap().clone();
    assert!(edges.iter().any(|e| e["node"]["id"] == id.as_str()));
    assert!(
        edges
            .iter()
            .all(|e| e["node"]["status"] == "SUCCEEDED" && e["node"]["trigger"] == "API")
    );
    // Several states at once (written into the SQL as constants, not bound).
    let ids = |data: &Value| -> Vec<String> {
        let edges = data["runs"]["edges"].as_array().unwrap();
        edges
            .iter()
            .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let either = json!({ "f": { "statuses": ["FAILED", "SUCCEEDED"] } });
    assert!(ids(&api.data(FILTERED, either).await).contains(&id));
    let neither = json!({ "f": { "statuses": ["FAILED", "CANCELLED"] } });
    assert!(!ids(&api.data(FILTERED, neither).await).contains(&id));
    let future = api
        .data(
            FILTERED,
            json!({ "f": { "createdAfter": "2999-01-01T00:00:00Z" } }),
        )
        .await;
    assert_eq!(future["runs"]["edges"], json!([]));
    assert_no_secrets(&h.db.url, &api.transcript, &[]).await;
}
both_backends!(runs_start_query_paginate, runs_and_steps);

/// Walks a connection page by page with `$first`/`$after` and returns its nodes in
/// order. On every page it checks what `pageInfo` (and `totalCount`, when `total` is
/// given) says against what the walk has seen; the list must not change meanwhile.
async fn walk(
    api: &Api,
    query: &str,
    vars: Value,
    path: &[&str],
    first: usize,
    total: Option<usize>,
) -> Vec<Value> {
    let mut seen: Vec<Value> = Vec::new();
    let mut after = Value::Null;
    loop {
        let mut v = vars.clone();
        v["first"] = json!(first);
        v["after"] = after.clone();
        let mut page = api.data(query, v).await;
        for key in path {
            page = page[*key].clone();
        }
        let edges = page["edges"].as_array().unwrap().clone();
        let info = &page["pageInfo"];
        assert!(edges.len() <= first, "at most `first` edges: {page}");
        assert_eq!(
            info["hasPreviousPage"],
            json!(!after.is_null()),
            "items exist before every page but the first: {page}"
        );
        if let Some(n) = total {
            assert_eq!(page["totalCount"], json!(n), "{page}");
        }
        if let (Some(first_edge), Some(last_edge)) = (edges.first(), edges.last()) {
            assert_eq!(info["startCursor"], first_edge["cursor"]);
            assert_eq!(info["endCursor"], last_edge["cursor"]);
        }
        seen.extend(edges.iter().map(|e| e["node"].clone()));
        let has_next = info["hasNextPage"].as_bool().unwrap();
        if let Some(n) = total {
            assert_eq!(
                has_next,
                seen.len() < n,
                "after {} items: {page}",
                seen.len()
            );
        }
        if !has_next {
            break;
        }
        assert_eq!(edges.len(), first, "a page with a next page is full");
        after = info["endCursor"].clone();
    }
    if let Some(n) = total {
        assert_eq!(seen.len(), n, "every item exactly once: {seen:?}");
    }
    seen
}

/// The values of `field` in `nodes`, as text.
fn field(nodes: &[Value], field: &str) -> Vec<String> {
    nodes
        .iter()
        .map(|n| match &n[field] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

const PAGE_INFO: &str = "totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }";

async fn every_list_pages(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _w = h.spawn_worker();
    let api = admin_api(&h).await;

    // Five approvals and five questions, waiting in two runs; a run of five steps.
    let branches = |kind: &str| -> Value {
        (0..5)
            .map(|i| match kind {
                "approval" => {
                    json!([{ "kind": "approval", "tool": "webhook_action", "args": { "n": i } }])
                }
                _ => json!([{ "kind": "question", "text": format!("q{i}") }]),
            })
            .collect()
    };
    let approvals_run = start(
        &api,
        json!([{ "kind": "parallel", "branches": branches("approval") }]),
    )
    .await;
    let questions_run = start(
        &api,
        json!([{ "kind": "parallel", "branches": branches("question") }]),
    )
    .await;
    let steps_run = start(
        &api,
        json!(
            (0..5)
                .map(|_| json!({ "kind": "noop" }))
                .collect::<Vec<_>>()
        ),
    )
    .await;
    wait_status(&api, &approvals_run, "WAITING_APPROVAL").await;
    wait_status(&api, &questions_run, "WAITING_INPUT").await;
    let done = wait_status(&api, &steps_run, "SUCCEEDED").await;

    let q = format!(
        "query($first: Int!, $after: String) {{ pendingApprovals(first: $first, after: $after) {{ {PAGE_INFO} edges {{ cursor node {{ id runId requestedAt }} }} }} }}"
    );
    let approvals = walk(&api, &q, json!({}), &["pendingApprovals"], 2, Some(5)).await;
    let of_run = api
        .data(
            "query($id: UUID!) { run(id: $id) { approvals { id } } }",
            json!({ "id": approvals_run }),
        )
        .await;
    let mut expected = field(of_run["run"]["approvals"].as_array().unwrap(), "id");
    let mut listed = field(&approvals, "id");
    let times = field(&approvals, "requestedAt");
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "oldest first: {times:?}"
    );
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected, "the pending approvals are the run's five");

    let q = format!(
        "query($first: Int!, $after: String) {{ pendingQuestions(first: $first, after: $after) {{ {PAGE_INFO} edges {{ cursor node {{ id question createdAt }} }} }} }}"
    );
    let questions = walk(&api, &q, json!({}), &["pendingQuestions"], 2, Some(5)).await;
    let mut texts = field(&questions, "question");
    texts.sort();
    assert_eq!(texts, ["q0", "q1", "q2", "q3", "q4"]);
    let times = field(&questions, "createdAt");
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "oldest first: {times:?}"
    );

    let q = format!(
        "query($id: UUID!, $first: Int!, $after: String) {{ run(id: $id) {{ steps(first: $first, after: $after) {{ {PAGE_INFO} edges {{ cursor node {{ key }} }} }} }} }}"
    );
    let steps = walk(
        &api,
        &q,
        json!({ "id": steps_run }),
        &["run", "steps"],
        2,
        Some(5),
    )
    .await;
    assert_eq!(field(&steps, "key"), ["s0", "s1", "s2", "s3", "s4"]);

    let last_seq = done["lastSeq"].as_u64().unwrap() as usize;
    let q = format!(
        "query($id: UUID!, $first: Int!, $after: String) {{ run(id: $id) {{ events(first: $first, after: $after) {{ {PAGE_INFO} edges {{ cursor node {{ seq }} }} }} }} }}"
    );
    let events = walk(
        &api,
        &q,
        json!({ "id": steps_run }),
        &["run", "events"],
        3,
        Some(last_seq),
    )
    .await;
    let seqs: Vec<String> = (1..=last_seq).map(|n| n.to_string()).collect();
    assert_eq!(field(&events, "seq"), seqs);

    // Users by name; API keys oldest first.
    for name in ["dora", "bob", "carol", "eve"] {
        token_for(&h.engine, name, Role::Viewer).await;
    }
    let q = format!(
        "query($first: Int!, $after: String) {{ users(first: $first, after: $after) {{ {PAGE_INFO} edges {{ cursor node {{ username }} }} }} }}"
    );
    let users = walk(&api, &q, json!({}), &["users"], 2, Some(5)).await;
    assert_eq!(
        field(&users, "username"),
        ["admin", "bob", "carol", "dora", "eve"]
    );

    let mut keys = vec![
        api.data("{ me { apiKeyId } }", json!({})).await["me"]["apiKeyId"]
            .as_str()
            .unwrap()
            .to_owned(),
    ];
    for i in 0..4 {
        let created = api
            .data(
                "mutation($n: String!) { createApiKey(input: { name: $n }) { apiKey { id } } }",
                json!({ "n": format!("key-{i}") }),
            )
            .await;
        keys.push(
            created["createApiKey"]["apiKey"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let q = format!(
        "query($first: Int!, $after: String) {{ apiKeys(first: $first, after: $after) {{ {PAGE_INFO} edges {{ cursor node {{ id }} }} }} }}"
    );
    let listed = walk(&api, &q, json!({}), &["apiKeys"], 2, Some(5)).await;
    assert_eq!(field(&listed, "id"), keys);

    // Teams by name, and a team's versions oldest first.
    let spec = include_str!("fixtures/teams/valid.yaml");
    const APPLY: &str =
        "mutation($s: String!) { applyTeam(spec: $s) { changed team { version } } }";
    for name in ["team-c", "team-a", "team-b"] {
        let named = spec.replacen("name: checkout-oncall", &format!("name: {name}"), 1);
        api.data(APPLY, json!({ "s": named })).await;
    }
    for timeout in [400, 500] {
        let edited = spec
            .replacen("name: checkout-oncall", "name: team-b", 1)
            .replacen(
                "timeout_seconds: 300",
                &format!("timeout_seconds: {timeout}"),
                1,
            );
        let applied = api.data(APPLY, json!({ "s": edited })).await;
        assert_eq!(applied["applyTeam"]["changed"], true);
    }
    let q = format!(
        "query($first: Int!, $after: String) {{ teams(first: $first, after: $after) {{ {PAGE_INFO} edges {{ cursor node {{ name version }} }} }} }}"
    );
    let teams = walk(&api, &q, json!({}), &["teams"], 2, Some(3)).await;
    assert_eq!(field(&teams, "name"), ["team-a", "team-b", "team-c"]);
    assert_eq!(
        field(&teams, "version"),
        ["1", "3", "1"],
        "at the latest version"
    );
    let q = format!(
        "query($first: Int!, $after: String) {{ team(name: \"team-b\") {{ versions(first: $first, after: $after) {{ {PAGE_INFO} edges {{ cursor node {{ version spec }} }} }} }} }}"
    );
    let versions = walk(&api, &q, json!({}), &["team", "versions"], 2, Some(3)).await;
    assert_eq!(field(&versions, "version"), ["1", "2", "3"]);
    assert_eq!(versions[2]["spec"]["limits"]["timeout_seconds"], 500);

    // hasPreviousPage asks whether anything lies at or before the cursor *now*: once
    // the first approval is decided, nothing pending does.
    const FROM: &str = "query($after: String) { pendingApprovals(first: 10, after: $after) {
        totalCount pageInfo { hasPreviousPage hasNextPage } edges { node { id } } } }";
    let cursor = api
        .data(
            "{ pendingApprovals(first: 1) { pageInfo { endCursor } } }",
            json!({}),
        )
        .await["pendingApprovals"]["pageInfo"]["endCursor"]
        .clone();
    api.data(
        "mutation($id: UUID!) { approve(id: $id) { status } }",
        json!({ "id": approvals[0]["id"] }),
    )
    .await;
    let rest = api.data(FROM, json!({ "after": cursor })).await["pendingApprovals"].clone();
    assert_eq!(rest["totalCount"], 4);
    assert_eq!(
        rest["pageInfo"],
        json!({ "hasPreviousPage": false, "hasNextPage": false })
    );
    assert_eq!(field(&nodes(&rest), "id"), field(&approvals[1..], "id"));

    // Cursors are opaque and checked; page sizes are bounded.
    for after in ["garbage", "eyJub3QiOiJhIGtleSJ9"] {
        let (code, err) = api.error_code(FROM, json!({ "after": after })).await;
        assert_eq!(code, "BAD_REQUEST");
        assert!(
            err["message"].as_str().unwrap().contains("`after`"),
            "{err}"
        );
    }
    for first in [0, 201] {
        let (code, _) = api
            .error_code(
                "query($f: Int!) { users(first: $f) { totalCount } }",
                json!({ "f": first }),
            )
            .await;
        assert_eq!(code, "BAD_REQUEST", "first: {first}");
    }
    assert_no_secrets(&h.db.url, &api.transcript, &[]).await;
}
both_backends!(
    every_list_is_a_connection_walked_page_by_page,
    every_list_pages
);

async fn error_codes(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let api = admin_api(&h).await;
    let (code, err) = api
        .error_code(
            START,
            json!({ "input": { "input": { "steps": [{ "kind": "teleport" }] } } }),
        )
        .await;
    assert_eq!(code, "VALIDATION_FAILED");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("unknown variant `teleport`"),
        "{err}"
    );
    let (code, _) = api
        .error_code(
            "mutation($id: UUID!) { approve(id: $id) { id } }",
            json!({ "id": uuid::Uuid::now_v7() }),
        )
        .await;
    assert_eq!(code, "NOT_FOUND");
    let id = start(&api, json!([{ "kind": "work", "ms": 10 }])).await;
    api.data(
        "mutation($id: UUID!) { cancelRun(id: $id) { status } }",
        json!({ "id": id }),
    )
    .await;
    let (code, err) = api
        .error_code(
            "mutation($id: UUID!) { resumeRun(id: $id) { status } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(code, "CONFLICT");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("CANCELLED to RUNNING"),
        "{err}"
    );
    let (code, _) = api.error_code("{ runs(first: ", json!({})).await;
    assert_eq!(code, "BAD_REQUEST", "syntax errors are the client's");
    let (code, _) = api
        .error_code("{ run(id: \"not-a-uuid\") { id } }", json!({}))
        .await;
    assert_eq!(code, "BAD_REQUEST");

    // Limits: depth and complexity.
    // Depth counts fields; introspection (deeper in every client's standard query) is exempt.
    let deep = format!("{{ {} x {} }}", "a { ".repeat(13), "} ".repeat(13));
    let (code, err) = api.error_code(&deep, json!({})).await;
    assert_eq!(code, "BAD_REQUEST");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("14 levels deep; at most 12"),
        "{err}"
    );
    let introspection = "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } } } } }";
    api.data(introspection, json!({})).await;
    let wide = format!(
        "{{ {} }}",
        (0..1100)
            .map(|i| format!("h{i}: health"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let (code, err) = api.error_code(&wide, json!({})).await;
    assert_eq!(code, "BAD_REQUEST");
    assert!(
        err["message"].as_str().unwrap().contains("too complex"),
        "{err}"
    );

    // A list costs `first` times its selection: nested lists multiply.
    let (code, err) = api
        .error_code(
            "{ runs(first: 200) { edges { node { steps(first: 200) { edges { node { key } } } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(code, "BAD_REQUEST");
    assert!(
        err["message"].as_str().unwrap().contains("too complex"),
        "{err}"
    );
    // What a console asks for passes.
    api.data(
        "{ runs(first: 50) { pageInfo { hasNextPage endCursor } edges { cursor node { id status trigger createdAt stepCount team { name } } } }
           pendingApprovals(first: 20) { totalCount edges { node { id runId tool expiresAt } } } }",
        json!({}),
    )
    .await;
    api.data(RUN, json!({ "id": id })).await;

    // Lookups by id answer null for unknown ids, like `run`.
    let missing = api
        .data(
            "query($id: UUID!) { run(id: $id) { id } approval(id: $id) { id } question(id: $id) { id } }",
            json!({ "id": uuid::Uuid::now_v7() }),
        )
        .await;
    assert_eq!(
        missing,
        json!({ "run": null, "approval": null, "question": null })
    );

    // Team documents: dry run and apply, violations with paths.
    let bad = include_str!("fixtures/teams/invalid.yaml");
    let v = api
        .data(
            "query($s: String!) { validateTeam(spec: $s) { valid violations { path message } } }",
            json!({ "s": bad }),
        )
        .await;
    assert_eq!(v["validateTeam"]["valid"], false);
    assert_eq!(v["validateTeam"]["violations"].as_array().unwrap().len(), 4);
    let (code, err) = api
        .error_code(
            "mutation($s: String!) { applyTeam(spec: $s) { changed } }",
            json!({ "s": bad }),
        )
        .await;
    assert_eq!(code, "VALIDATION_FAILED");
    assert_eq!(err["extensions"]["violations"].as_array().unwrap().len(), 4);
    assert!(err["extensions"]["violations"][0]["path"].is_string());
    let good = include_str!("fixtures/teams/valid.yaml");
    let applied = api
        .data(
            "mutation($s: String!) { applyTeam(spec: $s) { changed team { name version } } }",
            json!({ "s": good }),
        )
        .await;
    assert_eq!(applied["applyTeam"]["team"]["version"], 1);
    assert_no_secrets(&h.db.url, &api.transcript, &[]).await;
}
both_backends!(errors_carry_codes_and_limits_apply, error_codes);

async fn approvals_over_graphql(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _w = h.spawn_worker();
    let api = admin_api(&h).await;
    let id = start(&api, json!([{ "kind": "approval", "tool": "webhook_action", "args": { "url": "x" } }, { "kind": "question", "text": "proceed?" }])).await;
    wait_status(&api, &id, "WAITING_APPROVAL").await;
    let pending = api
        .data(
            "{ pendingApprovals { edges { node { id runId tool status } } } }",
            json!({}),
        )
        .await;
    let approval = nodes(&pending["pendingApprovals"])[0].clone();
    assert_eq!(
        (approval["runId"].as_str(), approval["tool"].as_str()),
        (Some(id.as_str()), Some("webhook_action"))
    );
    let decided = api
        .data(
            "mutation($id: UUID!) { approve(id: $id, comment: \"go\") { status comment } }",
            json!({ "id": approval["id"] }),
        )
        .await;
    assert_eq!(
        decided["approve"],
        json!({ "status": "APPROVED", "comment": "go" })
    );
    let (code, _) = api
        .error_code(
            "mutation($id: UUID!) { reject(id: $id) { status } }",
            json!({ "id": approval["id"] }),
        )
        .await;
    assert_eq!(code, "CONFLICT", "second decision");
    wait_status(&api, &id, "WAITING_INPUT").await;
    let q = nodes(
        &api.data(
            "{ pendingQuestions { edges { node { id question } } } }",
            json!({}),
        )
        .await["pendingQuestions"],
    )[0]
    .clone();
    assert_eq!(q["question"], "proceed?");
    let answered = api
        .data(
            "mutation($id: UUID!) { answerQuestion(id: $id, answer: \"yes\") { status answer } }",
            json!({ "id": q["id"] }),
        )
        .await;
    assert_eq!(
        answered["answerQuestion"],
        json!({ "status": "ANSWERED", "answer": "yes" })
    );
    wait_status(&api, &id, "SUCCEEDED").await;

    // Pause at a step boundary, resume, and the run's usage.
    let steps: Vec<_> = (0..6)
        .map(|_| json!({ "kind": "work", "ms": 100 }))
        .collect();
    let long = start(&api, json!(steps)).await;
    wait_status(&api, &long, "RUNNING").await;
    let paused = api
        .data(
            "mutation($id: UUID!) { pauseRun(id: $id) { id } }",
            json!({ "id": long }),
        )
        .await;
    assert_eq!(paused["pauseRun"]["id"], long.as_str());
    wait_status(&api, &long, "PAUSED").await;
    let resumed = api
        .data(
            "mutation($id: UUID!) { resumeRun(id: $id) { status } }",
            json!({ "id": long }),
        )
        .await;
    assert_eq!(resumed["resumeRun"]["status"], "RUNNING");
    wait_status(&api, &long, "SUCCEEDED").await;
    let usage = api
        .data(
            "query($id: UUID!) { run(id: $id) { usage { inputTokens outputTokens costUsd } } }",
            json!({ "id": long }),
        )
        .await;
    assert_eq!(
        usage["run"]["usage"],
        json!({ "inputTokens": 0, "outputTokens": 0, "costUsd": 0.0 }),
        "no LLM calls yet"
    );
    assert_no_secrets(&h.db.url, &api.transcript, &[]).await;
}
both_backends!(approvals_and_questions_over_graphql, approvals_over_graphql);

/// A `graphql-transport-ws` (or legacy `graphql-ws`) client collecting `runEvents`.
async fn subscribe_events(
    addr: &str,
    protocol: &'static str,
    token: &str,
    run_id: &str,
    after_seq: i64,
    take: usize,
) -> Vec<i64> {
    let mut client = ws::Client::authenticated(addr, protocol, token).await;
    let query = format!(
        "subscription {{ runEvents(runId: \"{run_id}\", afterSeq: {after_seq}) {{ seq kind }} }}"
    );
    client.subscribe("1", &query).await;
    let mut seqs = Vec::new();
    while seqs.len() < take {
        let v = client.recv().await;
        match v["type"].as_str() {
            Some("next") | Some("data") => {
                seqs.push(v["payload"]["data"]["runEvents"]["seq"].as_i64().unwrap())
            }
            Some("complete") => break,
            Some("ping") | Some("pong") => {}
            other => panic!("unexpected message {other:?}: {v}"),
        }
    }
    // Disconnect abruptly, like a dropped network.
    drop(client);
    seqs
}

async fn subscription_reconnect(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let addr = serve_api(&h.engine, h.shutdown.child_token()).await;
    let token = token_for(&h.engine, "watcher", Role::Viewer).await;
    let operator = token_for(&h.engine, "operator", Role::Operator).await;
    let api = Api::new(&addr, Some(&operator));
    let steps: Vec<_> = (0..12)
        .map(|_| json!({ "kind": "work", "ms": 40 }))
        .collect();
    let id = start(&api, json!(steps)).await;
    // The worker runs in another process: on Postgres its events reach this API
    // process through LISTEN/NOTIFY.
    let _worker = WorkerProcess::spawn(&h.db.url, &h.record_dir, &[]);
    let first = subscribe_events(&addr, "graphql-transport-ws", &token, &id, 0, 6).await;
    assert_eq!(first, (1..=6).collect::<Vec<_>>());
    let k = *first.last().unwrap();
    let rest = subscribe_events(&addr, "graphql-ws", &token, &id, k, usize::MAX).await;
    let run = wait_status(&api, &id, "SUCCEEDED").await;
    let n = run["lastSeq"].as_i64().unwrap();
    assert_eq!(
        rest,
        ((k + 1)..=n).collect::<Vec<_>>(),
        "every later event exactly once"
    );
    assert_no_secrets(&h.db.url, &api.transcript, &[]).await;
}
both_backends!(
    subscription_reconnect_after_seq_misses_nothing,
    subscription_reconnect
);

#[test]
fn schema_graphql_matches_the_code() {
    let sdl = aiops_api::sdl();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    if std::env::var("AIOPS_UPDATE_SCHEMA").is_ok() {
        std::fs::write(path, &sdl).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == sdl,
        "schema.graphql is out of date: run `AIOPS_UPDATE_SCHEMA=1 cargo test --test graphql schema` (or `aiops schema > schema.graphql`)"
    );
}

async fn authorization_matrix(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let addr = serve_api(&h.engine, h.shutdown.child_token()).await;
    let tokens = [
        ("viewer", token_for(&h.engine, "viewer", Role::Viewer).await),
        (
            "operator",
            token_for(&h.engine, "operator", Role::Operator).await,
        ),
        ("admin", token_for(&h.engine, "admin", Role::Admin).await),
    ];
    let anonymous = Api::new(&addr, None);
    let unknown = json!({ "id": uuid::Uuid::now_v7() });
    let bad_script = json!({ "input": { "input": { "steps": [] } } });
    // (operation, variables, least role, the error an authorised caller gets)
    let ops: Vec<(&str, Value, Role, Option<&str>)> = vec![
        (
            "{ runs { edges { cursor } } }",
            json!({}),
            Role::Viewer,
            None,
        ),
        (
            "{ pendingApprovals { totalCount } }",
            json!({}),
            Role::Viewer,
            None,
        ),
        (
            "{ pendingQuestions { totalCount } }",
            json!({}),
            Role::Viewer,
            None,
        ),
        (
            "{ teams { edges { node { name } } } }",
            json!({}),
            Role::Viewer,
            None,
        ),
        (
            "query($id: UUID!) { approval(id: $id) { id } question(id: $id) { id } }",
            unknown.clone(),
            Role::Viewer,
            None,
        ),
        ("{ me { username } }", json!({}), Role::Viewer, None),
        (
            "{ users { edges { node { username } } } }",
            json!({}),
            Role::Admin,
            None,
        ),
        (START, bad_script, Role::Operator, Some("VALIDATION_FAILED")),
        (
            "mutation($id: UUID!) { pauseRun(id: $id) { id } }",
            unknown.clone(),
            Role::Operator,
            Some("NOT_FOUND"),
        ),
        (
            "mutation($id: UUID!) { resumeRun(id: $id) { id } }",
            unknown.clone(),
            Role::Operator,
            Some("NOT_FOUND"),
        ),
        (
            "mutation($id: UUID!) { cancelRun(id: $id) { id } }",
            unknown.clone(),
            Role::Operator,
            Some("NOT_FOUND"),
        ),
        (
            "mutation($id: UUID!) { retryRun(id: $id) { id } }",
            unknown.clone(),
            Role::Operator,
            Some("NOT_FOUND"),
        ),
        (
            "mutation($id: UUID!) { approve(id: $id) { id } }",
            unknown.clone(),
            Role::Operator,
            Some("NOT_FOUND"),
        ),
        (
            "mutation($id: UUID!) { reject(id: $id) { id } }",
            unknown.clone(),
            Role::Operator,
            Some("NOT_FOUND"),
        ),
        (
            "mutation($id: UUID!) { answerQuestion(id: $id, answer: \"x\") { id } }",
            unknown.clone(),
            Role::Operator,
            Some("NOT_FOUND"),
        ),
        (
            "mutation { applyTeam(spec: \"name: x\") { changed } }",
            json!({}),
            Role::Admin,
            Some("VALIDATION_FAILED"),
        ),
        (
            "mutation { createUser(username: \"newbie\", password: \"short\", role: VIEWER) { id } }",
            json!({}),
            Role::Admin,
            Some("VALIDATION_FAILED"),
        ),
        (
            "mutation($id: UUID!) { revokeApiKey(id: $id) { id } }",
            unknown.clone(),
            Role::Admin,
            Some("NOT_FOUND"),
        ),
        (
            "mutation { createApiKey(input: { name: \"own\" }) { apiKey { prefix } } }",
            json!({}),
            Role::Viewer,
            None,
        ),
    ];
    for (query, vars, needed, authorised_error) in &ops {
        let (code, _) = anonymous.error_code(query, vars.clone()).await;
        assert_eq!(code, "UNAUTHENTICATED", "anonymous {query}");
        for (name, token) in &tokens {
            let api = anonymous.with_token(Some(token));
            let role = match *name {
                "viewer" => Role::Viewer,
                "operator" => Role::Operator,
                _ => Role::Admin,
            };
            let resp = api.gql(query, vars.clone()).await;
            let code = resp["errors"][0]["extensions"]["code"].as_str();
            if role_rank(role) >= role_rank(*needed) {
                assert_eq!(code, *authorised_error, "{name} may {query}: {resp}");
            } else {
                assert_eq!(code, Some("FORBIDDEN"), "{name} may not {query}: {resp}");
            }
        }
    }
    assert_eq!(
        anonymous.data("{ health }", json!({})).await["health"],
        "ok",
        "health is public"
    );

    // Subscriptions: any role may watch; no token, a bad token → the socket is closed.
    let id = start(
        &anonymous.with_token(Some(&tokens[1].1)),
        json!([{ "kind": "noop" }]),
    )
    .await;
    for (_, token) in &tokens {
        let _w = h.spawn_worker();
        let seqs = subscribe_events(&addr, "graphql-transport-ws", token, &id, 0, 1).await;
        assert_eq!(seqs, vec![1]);
    }
    for bad in ["", "aiops_nothere1_0123456789abcdef0123456789abcdef"] {
        assert_ws_rejected(&addr, bad).await;
    }

    // Revocation is immediate.
    let viewer = anonymous.with_token(Some(&tokens[0].1));
    let me = viewer
        .data("{ me { username role apiKeyId } }", json!({}))
        .await;
    assert_eq!(me["me"]["role"], "VIEWER");
    let revoked = viewer
        .data(
            "mutation($id: UUID!) { revokeApiKey(id: $id) { revokedAt } }",
            json!({ "id": me["me"]["apiKeyId"] }),
        )
        .await;
    assert!(revoked["revokeApiKey"]["revokedAt"].is_string());
    let (code, _) = viewer.error_code("{ me { username } }", json!({})).await;
    assert_eq!(code, "UNAUTHENTICATED");
    assert_ws_rejected(&addr, &tokens[0].1).await;

    // Keys are shown once; logins mint expiring keys; nothing secret is ever echoed.
    let admin = anonymous.with_token(Some(&tokens[2].1));
    let created = admin
        .data("mutation { createApiKey(input: { name: \"ci\", role: VIEWER }) { token apiKey { prefix role } } }", json!({}))
        .await;
    let new_token = created["createApiKey"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(new_token.starts_with(
        &format!("aiops_{}_", created["createApiKey"]["apiKey"]["prefix"].as_str().unwrap())
    ));
    let listed = admin
        .data("{ apiKeys { edges { node { prefix name } } } }", json!({}))
        .await;
    assert!(!listed.to_string().contains(&new_token));
    let login = anonymous
        .data(
            "mutation($p: String!) { login(username: \"operator\", password: $p) { token apiKey { expiresAt } } }",
            json!({ "p": common::TEST_PASSWORD }),
        )
        .await;
    assert!(login["login"]["apiKey"]["expiresAt"].is_string());
    let (code, err) = anonymous
        .error_code(
            "mutation { login(username: \"operator\", password: \"wrong password!!\") { token } }",
            json!({}),
        )
        .await;
    assert_eq!(code, "UNAUTHENTICATED");
    let (_, err_unknown) = anonymous
        .error_code(
            "mutation { login(username: \"nobody\", password: \"wrong password!!\") { token } }",
            json!({}),
        )
        .await;
    assert_eq!(
        err["message"], err_unknown["message"],
        "no hint whether the user exists"
    );
    let mut all_tokens: Vec<String> = tokens.iter().map(|(_, t)| t.clone()).collect();
    all_tokens.push(new_token);
    assert_no_secrets(&h.db.url, &anonymous.transcript, &all_tokens).await;
}
both_backends!(every_role_against_every_operation, authorization_matrix);

/// The attack on a real `aiops serve`: the admin makes a VIEWER key for a dashboard;
/// whoever holds that key tries to turn it into admin rights.
async fn down_scoped_key_attack(backend: Backend) {
    let Some(db) = common::TestDb::create(backend).await else {
        return;
    };
    let mut server = common::serve::ServeProcess::start(&db.url, &[]).await;
    let admin = Api::new(&server.addr, Some(&server.admin_token().await));
    let me = admin.data("{ me { apiKeyId role } }", json!({})).await["me"].clone();
    assert_eq!(me["role"], "ADMIN");
    let admin_key = me["apiKeyId"].as_str().unwrap().to_owned();
    const CREATE: &str = "mutation($n: String!, $r: Role) { createApiKey(input: { name: $n, role: $r }) { token apiKey { id role } } }";
    let grafana = admin
        .data(CREATE, json!({ "n": "grafana", "r": "VIEWER" }))
        .await["createApiKey"]
        .clone();
    let viewer_key = grafana["apiKey"]["id"].as_str().unwrap().to_owned();
    let viewer = admin.with_token(grafana["token"].as_str());

    for role in ["ADMIN", "OPERATOR"] {
        let (code, err) = viewer
            .error_code(CREATE, json!({ "n": "escalate", "r": role }))
            .await;
        assert_eq!(code, "FORBIDDEN", "{err}");
        let message = err["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("role {role}")) && message.contains("caller has role VIEWER"),
            "says what was asked and what the caller has: {message}"
        );
    }
    let child = viewer
        .data(CREATE, json!({ "n": "child", "r": null }))
        .await["createApiKey"]["apiKey"]
        .clone();
    assert_eq!(child["role"], "VIEWER", "without a role: the caller's");

    let listed = viewer
        .data(
            "{ apiKeys { totalCount edges { node { id role } } } }",
            json!({}),
        )
        .await["apiKeys"]
        .clone();
    assert_eq!(
        field(&nodes(&listed), "id"),
        [viewer_key.clone(), child["id"].as_str().unwrap().to_owned()],
        "the admin's keys are not listed"
    );
    assert_eq!(listed["totalCount"], 2);
    let all = admin.data("{ apiKeys { totalCount } }", json!({})).await;
    assert_eq!(all["apiKeys"]["totalCount"], 3, "the admin sees every key");

    const REVOKE: &str = "mutation($id: UUID!) { revokeApiKey(id: $id) { id revokedAt } }";
    let (code, err) = viewer.error_code(REVOKE, json!({ "id": admin_key })).await;
    assert_eq!(code, "FORBIDDEN", "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("revoke an API key with role ADMIN"),
        "{err}"
    );
    assert_eq!(
        admin.data("{ me { role } }", json!({})).await["me"]["role"],
        "ADMIN",
        "the admin's key still works"
    );
    let revoked = viewer.data(REVOKE, json!({ "id": viewer_key })).await;
    assert!(
        revoked["revokeApiKey"]["revokedAt"].is_string(),
        "a key may revoke itself"
    );
    let (code, _) = viewer.error_code("{ me { role } }", json!({})).await;
    assert_eq!(code, "UNAUTHENTICATED");
    server.assert_alive();
}
both_backends!(
    a_down_scoped_key_cannot_mint_list_or_revoke_stronger_keys,
    down_scoped_key_attack
);

fn role_rank(r: Role) -> u8 {
    match r {
        Role::Viewer => 1,
        Role::Operator => 2,
        Role::Admin => 3,
    }
}

async fn assert_ws_rejected(addr: &str, token: &str) {
    let payload = if token.is_empty() {
        json!({})
    } else {
        ws::bearer_payload(token)
    };
    let mut client = ws::Client::open(addr, TRANSPORT_WS).await;
    client
        .send(json!({ "type": "connection_init", "payload": payload }))
        .await;
    let msg = tokio::time::timeout(Duration::from_secs(5), client.ws.next())
        .await
        .expect("an answer");
    match msg {
        // graphql-transport-ws: a rejected connection_init closes with 4403 Forbidden.
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(u16::from(frame.code), 4403, "{frame:?}");
            assert_eq!(frame.reason.as_str(), "Forbidden", "{frame:?}");
        }

        other => panic!("expected the socket to be closed, got {other:?}"),
    }
}

async fn listing_cost(backend: Backend) {
    let Some(db) = common::TestDb::create(backend).await else {
        return;
    };
    aiops_engine::database::migrate(&db.url, "aiops test")
        .await
        .unwrap();
    // The engine counts the statements it sends, list queries included.
    let engine =
        common::engine_on(&db.url, common::fast_config(), common::test_workflows(None)).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let admin = token_for(&engine, "admin", Role::Admin).await;
    let api = Api::new(
        &serve_api(&engine, shutdown.child_token()).await,
        Some(&admin),
    );
    let team = engine
        .apply_team(include_str!("fixtures/teams/valid.yaml"))
        .await
        .unwrap()
        .0;
    for _ in 0..100 {
        let mut req =
            aiops_engine::StartRun::new("script", json!({ "steps": [{ "kind": "noop" }] }));
        req.team_id = Some(team.id);
        req.team_version_id = Some(team.version_id);
        engine.start_run(req).await.unwrap();
    }
    let list = |n: usize| {
        format!(
            "{{ runs(first: {n}) {{ edges {{ node {{ id stepCount team {{ name version }} }} }} }} }}"
        )
    };
    let mut cost = Vec::new();
    for n in [10, 100] {
        api.data(&list(n), json!({})).await; // warm: authentication's once-a-minute write
        // The engine's counter also sees its background tasks' statements (which only
        // add): the least of a few listings is the listing's own cost.
        let mut least = u64::MAX;
        for _ in 0..3 {
            let before = engine.stats().statements;
            let data = api.data(&list(n), json!({})).await;
            least = least.min(engine.stats().statements - before);
            let edges = data["runs"]["edges"].as_array().unwrap();
            assert_eq!(edges.len(), n);
            assert!(
                edges
                    .iter()
                    .all(|e| e["node"]["team"]["name"] == team.name.as_str()
                        && e["node"]["stepCount"] == 0)
            );
        }
        cost.push(least);
    }
    assert_eq!(
        cost[0], cost[1],
        "listing 10 or 100 runs costs the same number of statements: {cost:?}"
    );
    assert!(cost[1] <= 6, "a handful of statements in all: {cost:?}");
    shutdown.cancel();
    assert_no_secrets(&db.url, &api.transcript, &[]).await;
}
both_backends!(
    listing_runs_with_team_and_step_count_costs_constant_queries,
    listing_cost
);

/// A `graphql-transport-ws` socket with `query` subscribed as `s`, listening once
/// this returns.
async fn open_subscription(addr: &str, token: &str, query: &str) -> ws::Client {
    let mut client = ws::Client::authenticated(addr, TRANSPORT_WS, token).await;
    client.subscribe_live("s", query).await;
    client
}

/// The `data` of the subscription's next result that satisfies `pred`.
async fn next_matching(client: &mut ws::Client, pred: impl Fn(&Value) -> bool) -> Value {
    loop {
        let v = client.next_data("s").await;
        if pred(&v) {
            return v;
        }
    }
}

async fn live_inbox(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _w = h.spawn_worker();
    let addr = serve_api(&h.engine, h.shutdown.child_token()).await;
    let viewer = token_for(&h.engine, "viewer", Role::Viewer).await;
    let operator = token_for(&h.engine, "operator", Role::Operator).await;
    let api = Api::new(&addr, Some(&operator));
    let mut updates = open_subscription(
        &addr,
        &viewer,
        "subscription { runUpdates(filter: { trigger: API }) { id status } }",
    )
    .await;
    let mut inbox = open_subscription(
        &addr,
        &viewer,
        "subscription { approvalRequested { id runId tool status } }",
    )
    .await;
    let id = start(
        &api,
        json!([{ "kind": "approval", "tool": "alertmanager_silence" }]),
    )
    .await;
    let requested = next_matching(&mut inbox, |_| true).await["approvalRequested"].clone();
    assert_eq!(
        (requested["runId"].as_str(), requested["tool"].as_str()),
        (Some(id.as_str()), Some("alertmanager_silence"))
    );
    assert_eq!(requested["status"], "PENDING");
    next_matching(&mut updates, |v| {
        v["runUpdates"]["id"] == id.as_str() && v["runUpdates"]["status"] == "WAITING_APPROVAL"
    })
    .await;
    api.data(
        "mutation($id: UUID!) { approve(id: $id) { status } }",
        json!({ "id": requested["id"] }),
    )
    .await;
    next_matching(&mut updates, |v| {
        v["runUpdates"]["id"] == id.as_str() && v["runUpdates"]["status"] == "SUCCEEDED"
    })
    .await;
    assert_no_secrets(&h.db.url, &api.transcript, &[]).await;
}
both_backends!(run_updates_and_approval_requested_are_live, live_inbox);

async fn protections(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let config = aiops_api::ApiConfig {
        cors_origins: vec!["https://console.example".into()],
        mutations_per_minute: 3,
        ..aiops_api::ApiConfig::default()
    };
    let addr = common::serve_api_with(&h.engine, config, h.shutdown.child_token()).await;
    let a = token_for(&h.engine, "op-a", Role::Operator).await;
    let b = token_for(&h.engine, "op-b", Role::Operator).await;
    let api = Api::new(&addr, Some(&a));
    let unknown = json!({ "id": uuid::Uuid::now_v7() });
    const CANCEL: &str = "mutation($id: UUID!) { cancelRun(id: $id) { id } }";
    for _ in 0..3 {
        assert_eq!(api.error_code(CANCEL, unknown.clone()).await.0, "NOT_FOUND");
    }
    let (code, err) = api.error_code(CANCEL, unknown.clone()).await;
    assert_eq!(code, "BAD_REQUEST");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("rate limit exceeded"),
        "{err}"
    );
    assert!(err["extensions"]["retryAfterSeconds"].as_u64().unwrap() >= 1);
    assert_eq!(
        api.data("{ me { username } }", json!({})).await["me"]["username"],
        "op-a",
        "queries are not limited"
    );
    let other = api.with_token(Some(&b));
    assert_eq!(
        other.error_code(CANCEL, unknown).await.0,
        "NOT_FOUND",
        "each key has its own budget"
    );

    // Request bodies over 1 MiB are refused before parsing.
    let client = reqwest::Client::new();
    let big = format!(
        "{{\"query\":\"{{ health }}\",\"pad\":\"{}\"}}",
        "x".repeat(2 * 1024 * 1024)
    );
    // Its own client: the server closes this connection, which must not be reused.
    let sent = reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await;
    // The server answers 413 from Content-Length alone and closes; a client still
    // uploading may see the closed connection instead of the answer.
    match sent {
        Ok(resp) => assert_eq!(resp.status(), 413),
        Err(e) => assert!(
            e.is_request(),
            "refused while uploading, not an unrelated failure: {e}"
        ),
    }

    // CORS: the configured origin may call from a browser, others may not.
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, format!("http://{addr}/graphql"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type",
            )
            .send()
    };
    let ok = preflight("https://console.example").await.unwrap();
    assert_eq!(
        ok.headers().get("access-control-allow-origin").unwrap(),
        "https://console.example"
    );
    let denied = preflight("https://evil.example").await.unwrap();
    assert!(
        denied
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    assert_no_secrets(&h.db.url, &api.transcript, &[]).await;
}
both_backends!(rate_limit_body_limit_and_cors, protections);

async fn internal_errors_are_opaque(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let api = admin_api(&h).await;
    let id = start(&api, json!([{ "kind": "noop" }])).await;
    // Break the database under the server: the next read of steps fails in SQL.
    common::raw_db(&h.db.url)
        .await
        .execute_unprepared("DROP TABLE steps")
        .await
        .unwrap();
    let (code, err) = api
        .error_code(
            "query($id: UUID!) { run(id: $id) { steps { edges { node { key } } } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(code, "INTERNAL");
    let message = err["message"].as_str().unwrap();
    assert!(message.starts_with("internal error (id "), "{message}");
    // The path (`run.steps`) is the client's own query; message and extensions are ours.
    let body = format!("{} {}", err["message"], err["extensions"]).to_lowercase();
    for leak in [
        "steps",
        "select",
        "relation",
        "no such table",
        "sqlx",
        "panicked",
    ] {
        assert!(
            !body.contains(leak),
            "internal detail {leak:?} reached the client: {err}"
        );
    }
}
both_backends!(
    internal_errors_reach_clients_only_as_an_id,
    internal_errors_are_opaque
);
