//! Teams on language models: a real Prometheus holds the incident's metrics, a fake
//! provider (real HTTP on loopback, `tests/common/fake_llm.rs`) plays the models in
//! the OpenAI, Azure and Anthropic wire formats, and the investigation runs to its
//! report. Checked: the durable step keys, dependency order, tool calls answered with
//! real data, fallbacks and breakers, approvals, questions, budgets, repairs, usage.

mod common;

use std::sync::Arc;
use std::time::Duration;

use aiops_engine::agents::TeamRun;
use aiops_engine::llm::breaker::{BreakerConfig, BreakerState, Breakers};
use aiops_engine::llm::client::{CallLimits, LlmClient};
use aiops_engine::model::{ProviderKind, Step};
use aiops_engine::secrets::Secret;
use aiops_engine::{Caller, Decision, Engine, NewModel, NewProvider, RunStatus, StepStatus};
use common::fake_llm::{FakeLlm, Reply, Seen};
use common::incident::{Incident, team_report_and_result as report_and_result};
use common::prometheus::MetricsEndpoint;
use common::{Backend, wait_for_status};
use serde_json::{Value, json};

const KEY: &str = "sk-test-0123456789abcdef";

/// db ← api ← web on the model `brain`; one metrics agent per node.
const TEAM: &str = r#"
name: shop
supervisor: { model: [brain] }
nodes:
  - id: db
    kind: postgres
    match: { service: db }
    agents: [{ id: metrics, role: Metrics analyst, tools: [prometheus_query, ask_human] }]
  - id: api
    kind: service
    depends_on: [db]
    match: { service: api }
    agents: [{ id: metrics, tools: [prometheus_query] }]
  - id: web
    kind: service
    depends_on: [api]
    match: { service: web }
    agents: [{ id: metrics, tools: [prometheus_query] }]
"#;

fn client(breaker_open: Duration) -> LlmClient {
    LlmClient::new(
        Arc::new(Breakers::new(BreakerConfig {
            open_for: breaker_open,
            ..BreakerConfig::default()
        })),
        CallLimits {
            connect: Duration::from_secs(2),
            read: Duration::from_millis(700),
            deadline: Duration::from_secs(10),
        },
    )
}

fn cascade_metrics(m: &MetricsEndpoint) {
    m.set("svc_up", &[("service", "db")], 0.0);
    m.set("svc_up", &[("service", "api")], 1.0);
    m.set("svc_up", &[("service", "web")], 1.0);
}

/// The alerts of the cascade, given to the run (the webhook shape).
fn alerts() -> Value {
    let alert = |name: &str, service: &str, severity: &str| {
        json!({ "status": "firing", "startsAt": "2026-12-01T06:00:00Z", "annotations": {},
                "labels": { "alertname": name, "service": service, "severity": severity } })
    };
    json!({ "version": "4", "status": "firing", "alerts": [
        alert("ServiceDown", "db", "critical"),
        alert("HighErrorRate", "api", "warning"),
        alert("HighErrorRate", "web", "warning"),
    ]})
}

/// Starts the incident and stores `brain` (and `spare`) on the fake provider.
async fn start(
    backend: Backend,
    kind: ProviderKind,
    llm: LlmClient,
) -> Option<(Incident, FakeLlm)> {
    captured_logs();
    let incident = Incident::with_llm(backend, llm, cascade_metrics).await?;
    incident.prometheus.wait_for_samples("svc_up").await;
    let fake = FakeLlm::start_with_key(KEY).await;
    configure(&incident.engine, &fake, kind).await;
    Some((incident, fake))
}

async fn configure(engine: &Engine, fake: &FakeLlm, kind: ProviderKind) {
    engine
        .create_credential(Caller::Local, "fake-key", Secret::new(KEY))
        .await
        .expect("credential");
    let (base_url, version) = match kind {
        ProviderKind::OpenAi => (fake.openai_url(), None),
        ProviderKind::AzureOpenAi => (fake.base_url(), Some("2024-10-21".to_owned())),
        ProviderKind::Anthropic => (fake.base_url(), None),
    };
    engine
        .create_provider(
            Caller::Local,
            NewProvider {
                name: "fake".into(),
                kind,
                base_url,
                azure_api_version: version,
                credential: Some("fake-key".into()),
            },
        )
        .await
        .expect("provider");
    for (name, upstream) in [("brain", "brain-1"), ("spare", "spare-1")] {
        let mut model = NewModel::new(name, "fake", upstream);
        model.input_price_per_mtok = 100.0;
        model.output_price_per_mtok = 200.0;
        engine
            .create_model(Caller::Local, model)
            .await
            .expect("model");
    }
}

/// The text between `start` and the next `end`.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

/// A valid result for the default output schema.
fn valid_result() -> Value {
    json!({
        "summary": "db is down; api and web fail because of it",
        "severity": "critical",
        "root_causes": [{ "node": "db", "alert": "ServiceDown", "confidence": 0.9,
                          "evidence": ["svc_up{service=\"db\"} == 0 over the window"] }],
        "actions": [{ "description": "restore db", "tool": null, "status": "suggested" }]
    })
}

/// A competent team: the supervisor picks web (its dependencies come along), each
/// node supervisor delegates once to its metrics agent, which queries Prometheus and
/// reports; the finding follows the data the agent got.
fn brain(seen: &Seen) -> Reply {
    let system = seen.system_text();
    if system.contains("Decide which nodes to investigate") {
        return Reply::json(
            json!({ "nodes": ["web"], "reason": "web alerts, follow its dependencies" }),
        );
    }
    if system.contains("Write the structured result") {
        return Reply::json(valid_result());
    }
    if let Some(node) = between(&system, "You supervise the investigation of node \"", "\"") {
        let last = seen.last_user_text();
        return match last.strip_prefix("Report of agent metrics:\n") {
            None => Reply::json(
                json!({ "delegate": { "agent": "metrics", "task": format!("check whether {node} is up") } }),
            ),
            Some(report) => {
                let status = if report.contains("DOWN") {
                    "failing"
                } else {
                    "degraded"
                };
                Reply::json(
                    json!({ "finding": { "status": status, "summary": format!("{node}: {report}") } }),
                )
            }
        };
    }
    if let Some(node) = between(&system, "investigating node \"", "\"") {
        let results = seen.tool_results();
        return match results.first() {
            // An id with a slash and a space: it must be escaped into one key segment.
            None => Reply::tool_calls([(
                format!("call/{node} 1"),
                "prometheus_query",
                json!({ "query": format!("svc_up{{service=\"{node}\"}}") }),
            )]),
            Some((_, content)) => {
                let down = content.contains("\"0\"");
                Reply::text(if down {
                    "svc_up is 0: DOWN"
                } else {
                    "svc_up is 1: up"
                })
            }
        };
    }
    Reply::status(
        400,
        Some(json!({ "error": { "message": format!("unexpected prompt: {system}") } })),
    )
}

async fn run_team(incident: &Incident, team: &str) -> aiops_engine::model::Run {
    incident
        .start_run(
            team,
            TeamRun {
                alerts: Some(alerts()),
                ..TeamRun::new("shop")
            },
        )
        .await
}

fn step<'a>(steps: &'a [Step], key: &str) -> &'a Step {
    steps.iter().find(|s| s.key == key).unwrap_or_else(|| {
        panic!(
            "no step {key}: {:?}",
            steps.iter().map(|s| &s.key).collect::<Vec<_>>()
        )
    })
}

async fn hierarchical_team(backend: Backend, kind: ProviderKind) {
    let Some((incident, fake)) = start(backend, kind, client(Duration::from_secs(30))).await else {
        return;
    };
    fake.respond("brain-1", brain);
    let run = run_team(&incident, TEAM).await;
    let run = incident.finish(run.id).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    let (report, result) = report_and_result(&run);
    assert_eq!(result, valid_result());
    assert!(
        report.contains("Supervisor's summary: db is down"),
        "{report}"
    );
    assert!(report.contains("brain (language model"), "{report}");
    // The finding of db cites the query its agent really ran.
    assert!(report.contains("svc_up{service="), "{report}");

    let steps = incident.engine.steps(run.id).await.expect("steps");
    step(&steps, "supervisor/decide/llm");
    step(&steps, "node/db/supervisor/round/0/llm");
    step(&steps, "node/db/agent/metrics/round/0/iter/0/llm");
    let call = step(
        &steps,
        "node/db/agent/metrics/round/0/iter/0/call/call%2Fdb 1",
    );
    assert_eq!(call.status, StepStatus::Succeeded);
    assert_eq!(
        call.input,
        Some(json!({ "query": "svc_up{service=\"db\"}" }))
    );
    step(&steps, "node/db/agent/metrics/round/0/iter/1/llm");
    step(&steps, "node/db/supervisor/round/1/llm");
    step(&steps, "node/web/supervisor/finding");
    step(&steps, "supervisor/report/llm");
    // The prompt version is recorded with each model call, and in the output.
    let decide = step(&steps, "supervisor/decide/llm");
    assert_eq!(decide.input.as_ref().unwrap()["prompt"], "supervisor@1");
    assert!(
        run.output.as_ref().unwrap()["prompts"]
            .as_array()
            .unwrap()
            .contains(&json!("agent@1"))
    );

    // Dependency order: every call about api comes after db's last, web after api's.
    let requests = fake.requests();
    let about = |node: &str| -> Vec<usize> {
        requests
            .iter()
            .enumerate()
            .filter(|(_, r)| r.system_text().contains(&format!("node \"{node}\"")))
            .map(|(i, _)| i)
            .collect()
    };
    let (db, api, web) = (about("db"), about("api"), about("web"));
    assert_eq!(
        (db.len(), api.len(), web.len()),
        (4, 4, 4),
        "two supervisor rounds and two agent turns per node"
    );
    assert!(db.iter().max() < api.iter().min() && api.iter().max() < web.iter().min());
    // The credential went out in the provider's own header, and nowhere else.
    let first = &requests[0];
    match kind {
        ProviderKind::OpenAi => assert_eq!(first.headers["authorization"], format!("Bearer {KEY}")),
        ProviderKind::AzureOpenAi => {
            assert_eq!(first.headers["api-key"], KEY);
            assert!(
                first.path.starts_with(
                    "/openai/deployments/brain-1/chat/completions?api-version=2024-10-21"
                ),
                "{}",
                first.path
            );
        }
        ProviderKind::Anthropic => {
            assert_eq!(first.headers["x-api-key"], KEY);
            assert!(first.headers.contains_key("anthropic-version"));
        }
    }

    // Usage: every call's tokens (the fake reports 100 in, 20 out) and cost at the
    // model's prices, summed over the steps into the run's.
    let calls = requests.len() as u64;
    let total: aiops_engine::Usage = steps.iter().map(|s| s.usage).sum();
    assert_eq!(
        (total.input_tokens, total.output_tokens),
        (100 * calls, 20 * calls)
    );
    let expected_cost = calls as f64 * (100.0 * 100.0 + 20.0 * 200.0) / 1e6;
    assert!(
        (total.cost_usd - expected_cost).abs() < 1e-9,
        "{} vs {expected_cost}",
        total.cost_usd
    );
    let events = incident
        .engine
        .events(run.id, 0, 10_000)
        .await
        .expect("events");
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains(KEY), "the key is in an event");
    assert!(!text.contains("LLM_TOKEN"), "live tokens are not stored");
    let stored = serde_json::to_string(
        &steps
            .iter()
            .map(|s| (&s.input, &s.output, &s.error))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(!stored.contains(KEY), "the key is in a step");
}

#[tokio::test]
async fn hierarchical_team_on_openai_wire_postgres() {
    hierarchical_team(Backend::Postgres, ProviderKind::OpenAi).await;
}

#[tokio::test]
async fn hierarchical_team_on_anthropic_wire() {
    hierarchical_team(Backend::Sqlite, ProviderKind::Anthropic).await;
}

#[tokio::test]
async fn hierarchical_team_on_azure_wire() {
    hierarchical_team(Backend::Sqlite, ProviderKind::AzureOpenAi).await;
}

/// The team with a fallback list: `[brain, spare]`.
fn with_spare(team: &str) -> String {
    team.replace("model: [brain]", "model: [brain, spare]")
}

#[tokio::test]
async fn faults_end_in_a_retry_or_the_fallback_never_a_hang() {
    // The breaker opens after five failures in a row; opened only for a moment, it
    // lets every scripted fault reach the primary.
    let Some((incident, fake)) = start(
        Backend::Sqlite,
        ProviderKind::OpenAi,
        client(Duration::from_millis(1)),
    )
    .await
    else {
        return;
    };
    // The primary fails every way there is, one fault per call; each call is retried
    // once on it, then goes to the spare, which answers.
    fake.script(
        "brain-1",
        [
            Reply::status(500, None),
            Reply::rate_limited(50),
            Reply::stall(Duration::from_secs(3)),
            Reply::drop_after(2),
            Reply::error_mid_stream(),
            Reply::malformed(),
            Reply::overloaded(),
            Reply::context_length(),
        ],
    );
    fake.respond("brain-1", |_| Reply::status(503, None));
    fake.respond("spare-1", brain);
    let run = run_team(&incident, &with_spare(TEAM)).await;
    let run = incident.finish(run.id).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    let (_, result) = report_and_result(&run);
    assert_eq!(result, valid_result());
    assert!(
        fake.remaining("brain-1") == 0,
        "every scripted fault was served"
    );
    // Retries of the primary were recorded on the steps (attempts > 1) and the
    // answers came from the spare.
    let steps = incident.engine.steps(run.id).await.expect("steps");
    let decide = step(&steps, "supervisor/decide/llm");
    assert_eq!(decide.output.as_ref().unwrap()["model"], "spare");
    assert!(steps.iter().any(|s| s.attempts > 1), "no step was retried");
}

/// Every log line this test binary writes (all its tests run in one process), for
/// scanning: installed once, at `debug`, before the first test starts its engine.
fn captured_logs() -> Arc<std::sync::Mutex<Vec<u8>>> {
    static LOGS: std::sync::OnceLock<Arc<std::sync::Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || LogSink(sink.clone()))
            .try_init()
            .expect("the only subscriber");
        logs
    })
    .clone()
}

struct LogSink(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A provider that quotes the key it refused: the key reaches no step, event or log
/// line, while the refusal itself is logged (masked) and the spare answers.
#[tokio::test]
async fn an_echoed_key_is_in_no_step_event_or_log_line() {
    let logs = captured_logs();
    let Some((incident, fake)) = start(
        Backend::Sqlite,
        ProviderKind::OpenAi,
        client(Duration::from_secs(30)),
    )
    .await
    else {
        return;
    };
    let refusal = json!({ "error": {
        "message": format!("Incorrect API key provided: {KEY}. You can find your API key at https://platform.openai.com/account/api-keys."),
        "type": "invalid_request_error", "code": "invalid_api_key" } });
    fake.respond("brain-1", move |_| Reply::status(401, refusal.clone()));
    fake.respond("spare-1", brain);
    let run = run_team(&incident, &with_spare(TEAM)).await;
    let run = incident.finish(run.id).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert!(!fake.requests_for("brain-1").is_empty(), "brain was asked");
    let steps = incident.engine.steps(run.id).await.expect("steps");
    let events = incident
        .engine
        .events(run.id, 0, 10_000)
        .await
        .expect("events");
    let stored = format!("{steps:?} {events:?} {run:?}");
    assert!(!stored.contains(KEY), "the key was stored");
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        logged.contains("Incorrect API key provided: ***"),
        "the refusal is logged, masked"
    );
    assert!(!logged.contains(KEY), "the key was logged");
}

#[tokio::test]
async fn an_open_breaker_sends_calls_to_the_fallback_and_closes_after_a_probe() {
    let llm = client(Duration::from_millis(1500));
    let breakers = llm.breakers().clone();
    let Some((incident, fake)) = start(Backend::Sqlite, ProviderKind::OpenAi, llm).await else {
        return;
    };
    // Five failures open the breaker of brain; the spare answers meanwhile.
    fake.respond("brain-1", |_| Reply::status(500, None));
    fake.respond("spare-1", brain);
    let run = run_team(&incident, &with_spare(TEAM)).await;
    let run = incident.finish(run.id).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    let statuses = breakers.statuses();
    let primary = statuses
        .iter()
        .find(|s| s.endpoint.contains("brain-1"))
        .expect("brain's breaker");
    assert_ne!(primary.state, BreakerState::Closed, "{statuses:?}");
    assert!(primary.consecutive_failures >= 5, "{statuses:?}");
    // Without the breaker each of the 14 model steps would try brain 3 times.
    let served_while_open = fake.requests_for("brain-1").len();
    assert!(
        served_while_open <= 10,
        "calls kept going to an open breaker: {served_while_open}"
    );

    // Healed: after the open period a probe reaches brain, succeeds, and closes it.
    fake.respond("brain-1", brain);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let run = run_team(&incident, &with_spare(TEAM)).await;
    let run = incident.finish(run.id).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert!(fake.requests_for("brain-1").len() > served_while_open);
    let primary = breakers
        .statuses()
        .into_iter()
        .find(|s| s.endpoint.contains("brain-1"))
        .unwrap();
    assert_eq!(primary.state, BreakerState::Closed);
}

#[tokio::test]
async fn every_model_down_parks_the_run_without_spending_attempts() {
    let llm = client(Duration::from_secs(30));
    let breakers = llm.breakers().clone();
    let Some((incident, fake)) = start(Backend::Sqlite, ProviderKind::OpenAi, llm).await else {
        return;
    };
    fake.respond("brain-1", |_| Reply::status(500, None));
    fake.respond("spare-1", |_| Reply::status(500, None));
    // Open both breakers first (five failures each).
    for model in ["brain-1", "spare-1"] {
        let key = format!("openai {} {model}", fake.openai_url());
        for _ in 0..5 {
            breakers.record(breakers.admit(&key).expect("closed"), true);
        }
    }
    assert!(
        breakers
            .statuses()
            .iter()
            .all(|s| s.state == BreakerState::Open)
    );
    let run = run_team(&incident, &with_spare(TEAM)).await;
    let run = wait_for_status(
        &incident.engine,
        run.id,
        &[RunStatus::RetryWait],
        Duration::from_secs(20),
    )
    .await;
    let steps = incident.engine.steps(run.id).await.expect("steps");
    let decide = step(&steps, "supervisor/decide/llm");
    assert_eq!(decide.status, StepStatus::RetryWait);
    assert_eq!(
        decide.attempts, 0,
        "waiting for a breaker spends no attempt"
    );
    assert!(
        decide
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("circuit breaker open"),
        "{:?}",
        decide.error
    );
    assert!(
        fake.requests().is_empty(),
        "no call went to an open breaker"
    );
}

#[tokio::test]
async fn the_result_is_repaired_or_the_run_fails_with_the_errors() {
    let Some((incident, fake)) = start(
        Backend::Sqlite,
        ProviderKind::OpenAi,
        client(Duration::from_secs(30)),
    )
    .await
    else {
        return;
    };
    // First answer misses `severity`; the repair request carries the error and the
    // second answer is valid.
    fake.respond("brain-1", |seen| {
        if seen.system_text().contains("Write the structured result") {
            if seen.last_user_text().contains("does not match the schema") {
                return Reply::json(valid_result());
            }
            let mut broken = valid_result();
            broken.as_object_mut().unwrap().remove("severity");
            return Reply::json(broken);
        }
        brain(seen)
    });
    let run = run_team(&incident, TEAM).await;
    let run = incident.finish(run.id).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    let steps = incident.engine.steps(run.id).await.expect("steps");
    step(&steps, "supervisor/report/repair/1/llm");
    let repair = fake
        .requests()
        .into_iter()
        .find(|r| r.last_user_text().contains("does not match the schema"))
        .expect("a repair request");
    assert!(
        repair
            .last_user_text()
            .contains("\"severity\" is a required property"),
        "{}",
        repair.last_user_text()
    );

    // Never valid: two repairs, then FAILED with the validation errors.
    fake.respond("brain-1", |seen| {
        if seen.system_text().contains("Write the structured result") {
            return Reply::json(json!({ "summary": "" , "severity": "apocalyptic", "root_causes": [], "actions": [] }));
        }
        brain(seen)
    });
    let run = run_team(&incident, TEAM).await;
    let run = incident.finish(run.id).await;
    assert_eq!(run.status, RunStatus::Failed);
    let error = run.error.unwrap_or_default();
    assert!(
        error.contains("after 2 repairs") && error.contains("/severity"),
        "{error}"
    );
    let steps = incident.engine.steps(run.id).await.expect("steps");
    step(&steps, "supervisor/report/repair/2/llm");
}

async fn pending_approval(
    engine: &Engine,
    run: aiops_engine::RunId,
) -> aiops_engine::model::Approval {
    wait_for_status(
        engine,
        run,
        &[RunStatus::WaitingApproval],
        Duration::from_secs(30),
    )
    .await;
    engine
        .approvals_of_run(run)
        .await
        .expect("approvals")
        .into_iter()
        .find(|a| a.status == aiops_engine::ApprovalStatus::Pending)
        .expect("a pending approval")
}

/// A budget of 500 tokens: the fake's calls use 120 each, so the fifth call asks.
fn small_budget(team: &str) -> String {
    format!("{team}limits: {{ max_tokens: 500 }}\n")
}

#[tokio::test]
async fn a_spent_budget_asks_to_extend_and_approval_continues() {
    let Some((incident, fake)) = start(
        Backend::Sqlite,
        ProviderKind::OpenAi,
        client(Duration::from_secs(30)),
    )
    .await
    else {
        return;
    };
    fake.respond("brain-1", brain);
    let run = run_team(&incident, &small_budget(TEAM)).await;
    let approval = pending_approval(&incident.engine, run.id).await;
    assert_eq!(approval.tool, "extend_budget");
    assert_eq!(approval.args["max_tokens"], 500);
    assert!(
        approval.args["used_tokens"].as_u64().unwrap() >= 500,
        "{}",
        approval.args
    );
    let calls_before = fake.requests().len();
    incident
        .engine
        .decide_approval(
            approval.id,
            Decision::Approve,
            "alice",
            Some("max_tokens=100000"),
        )
        .await
        .expect("approve");
    let run = incident.finish(run.id).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert!(
        fake.requests().len() > calls_before,
        "the run went on calling the model"
    );
    let (_, result) = report_and_result(&run);
    assert_eq!(result, valid_result());
}

#[tokio::test]
async fn a_refused_extension_finishes_with_what_the_run_has() {
    let Some((incident, fake)) = start(
        Backend::Sqlite,
        ProviderKind::OpenAi,
        client(Duration::from_secs(30)),
    )
    .await
    else {
        return;
    };
    fake.respond("brain-1", brain);
    let run = run_team(&incident, &small_budget(TEAM)).await;
    let approval = pending_approval(&incident.engine, run.id).await;
    let calls_before = fake.requests().len();
    incident
        .engine
        .decide_approval(approval.id, Decision::Reject, "bob", Some("enough"))
        .await
        .expect("reject");
    let run = incident.finish(run.id).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(
        fake.requests().len(),
        calls_before,
        "no model call after the refusal"
    );
    let (report, _) = report_and_result(&run);
    assert!(
        report.contains("budget ran out") && report.contains("rejected"),
        "{report}"
    );
}

#[tokio::test]
async fn ask_human_from_a_model_waits_for_the_answer_and_feeds_it_back() {
    let Some((incident, fake)) = start(
        Backend::Sqlite,
        ProviderKind::OpenAi,
        client(Duration::from_secs(30)),
    )
    .await
    else {
        return;
    };
    fake.respond("brain-1", |seen| {
        let system = seen.system_text();
        if between(&system, "investigating node \"", "\"") == Some("db") {
            let results = seen.tool_results();
            return match results.first() {
                None => Reply::tool_calls([(
                    "q1",
                    "ask_human",
                    json!({ "question": "Was db restarted on purpose?" }),
                )]),
                Some((id, content)) => {
                    assert_eq!(id, "q1");
                    Reply::text(&format!("the operator said {content}; DOWN"))
                }
            };
        }
        brain(seen)
    });
    let run = run_team(&incident, TEAM).await;
    wait_for_status(
        &incident.engine,
        run.id,
        &[RunStatus::WaitingInput],
        Duration::from_secs(30),
    )
    .await;
    let question = incident
        .engine
        .pending_questions(&aiops_engine::PageRequest::first(10))
        .await
        .expect("questions")
        .items
        .into_iter()
        .find(|q| q.run_id == run.id)
        .expect("the question");
    assert_eq!(question.question, "Was db restarted on purpose?");
    assert_eq!(
        question.step_key,
        "node/db/agent/metrics/round/0/iter/0/call/q1"
    );
    // Answered over GraphQL, by the call's id; a result for another id is refused
    // with the pending ids named, and the refusal is in the run's log.
    let shutdown = tokio_util::sync::CancellationToken::new();
    let addr = common::serve_api(&incident.engine, shutdown.clone()).await;
    let token = common::token_for(
        &incident.engine,
        "carol",
        aiops_engine::auth::Role::Operator,
    )
    .await;
    let api = common::Api::new(&addr, Some(&token));
    let submit = "mutation($run: UUID!, $call: String!, $result: String!) {
        submitToolResult(runId: $run, toolCallId: $call, result: $result) { status answer answeredBy }
    }";
    let (code, error) = api
        .error_code(
            submit,
            json!({ "run": run.id.0, "call": "q9", "result": "forged" }),
        )
        .await;
    assert_eq!(code, "CONFLICT", "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("\"q9\"") && message.contains("pending: q1"),
        "{message}"
    );
    let audited = incident
        .engine
        .events(run.id, 0, 10_000)
        .await
        .expect("events")
        .into_iter()
        .find(|e| e.kind == aiops_engine::EventKind::ToolResult && e.payload["call_id"] == "q9")
        .expect("the refusal is audited");
    assert_eq!(audited.payload["refused"], true);
    assert_eq!(audited.payload["submitted_by"], "carol");
    let answered = api
        .data(
            submit,
            json!({ "run": run.id.0, "call": "q1", "result": "no, it crashed" }),
        )
        .await;
    assert_eq!(
        answered["submitToolResult"],
        json!({ "status": "ANSWERED", "answer": "no, it crashed", "answeredBy": "carol" })
    );
    // The same call cannot be answered twice.
    let (code, _) = api
        .error_code(
            submit,
            json!({ "run": run.id.0, "call": "q1", "result": "again" }),
        )
        .await;
    assert_eq!(code, "CONFLICT");
    let run = incident.finish(run.id).await;
    shutdown.cancel();
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    let fed_back = fake
        .requests()
        .into_iter()
        .flat_map(|r| r.tool_results())
        .find(|(id, _)| id == "q1")
        .expect("the answer went back to the model");
    assert!(
        fed_back.1.contains("no, it crashed") && fed_back.1.contains("carol"),
        "{}",
        fed_back.1
    );
}

#[tokio::test]
async fn invalid_tool_arguments_and_unoffered_tools_go_back_to_the_model() {
    let Some((incident, fake)) = start(
        Backend::Sqlite,
        ProviderKind::OpenAi,
        client(Duration::from_secs(30)),
    )
    .await
    else {
        return;
    };
    fake.respond("brain-1", |seen| {
        let system = seen.system_text();
        if between(&system, "investigating node \"", "\"") == Some("api") {
            let results = seen.tool_results();
            return match results.len() {
                0 => Reply::invalid_tool_arguments("bad", "prometheus_query"),
                1 => Reply::tool_calls([("x", "alertmanager_silence", json!({}))]),
                _ => Reply::text(&format!(
                    "errors seen: {}",
                    results
                        .iter()
                        .map(|(_, c)| c.as_str())
                        .collect::<Vec<_>>()
                        .join(" | ")
                )),
            };
        }
        brain(seen)
    });
    let run = run_team(&incident, TEAM).await;
    let run = incident.finish(run.id).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    let last = fake
        .requests()
        .into_iter()
        .filter(|r| r.system_text().contains("investigating node \"api\""))
        .map(|r| r.tool_results())
        .max_by_key(|r| r.len())
        .unwrap();
    assert!(last[0].1.contains("not valid JSON"), "{last:?}");
    assert!(
        last[1].1.contains("not available to this agent"),
        "{last:?}"
    );
}

/// The cascade as a plan/execute team.
fn plan_team(max_iterations: u32) -> String {
    format!(
        "{}pattern: plan_execute\nlimits: {{ max_iterations: {max_iterations} }}\n",
        TEAM
    )
}

/// Runs a plan/execute team whose planner answers `planner(turn)`; returns the run,
/// the planner's requests and the report.
async fn plan_execute(
    max_iterations: u32,
    planner: impl Fn(usize) -> Value + Send + Sync + 'static,
) -> Option<(aiops_engine::model::Run, Vec<Seen>, String, Vec<Step>)> {
    let (incident, fake) = start(
        Backend::Sqlite,
        ProviderKind::OpenAi,
        client(Duration::from_secs(30)),
    )
    .await?;
    let turns = std::sync::atomic::AtomicUsize::new(0);
    fake.respond("brain-1", move |seen| {
        if seen.system_text().contains("Write the structured result") {
            return Reply::json(valid_result());
        }
        assert!(
            seen.system_text().contains("the planner of team \"shop\""),
            "{}",
            seen.system_text()
        );
        Reply::json(planner(
            turns.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
        ))
    });
    let run = run_team(&incident, &plan_team(max_iterations)).await;
    let run = incident.finish(run.id).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    let (report, _) = report_and_result(&run);
    let planner_requests: Vec<Seen> = fake
        .requests()
        .into_iter()
        .filter(|r| r.system_text().contains("the planner of team"))
        .collect();
    let steps = incident.engine.steps(run.id).await.expect("steps");
    Some((run, planner_requests, report, steps))
}

fn execute(query: &str) -> Value {
    json!({ "decision": "EXECUTE", "step": "check db", "tool": "prometheus_query", "context": { "query": query } })
}

#[tokio::test]
async fn plan_execute_stops_on_finish_with_real_evidence() {
    let Some((_, requests, report, steps)) = plan_execute(10, |turn| match turn {
        0 => json!({ "decision": "PLAN", "step": "look at db first" }),
        1 => execute("svc_up{service=\"db\"}"),
        _ => json!({ "decision": "FINISH", "step": "db is down" }),
    })
    .await
    else {
        return;
    };
    assert_eq!(requests.len(), 3);
    let exec = step(&steps, "plan/iter/1/call/exec");
    assert_eq!(exec.status, StepStatus::Succeeded);
    // What the planner got back is the executor's answer built from Prometheus's data.
    let answer: Value = serde_json::from_str(&requests[2].last_user_text()).expect("executor JSON");
    assert_eq!(answer["status"], "SUCCESS");
    assert!(
        answer["evidence"]
            .to_string()
            .contains("\"service\":\"db\""),
        "{answer}"
    );
    assert!(
        report.contains("the planner finished after 3 turns"),
        "{report}"
    );
    step(&steps, "plan/iter/0/llm");
    step(&steps, "supervisor/report/llm");
}

#[tokio::test]
async fn plan_execute_stops_at_max_iterations() {
    let Some((_, requests, report, _)) = plan_execute(4, |_| execute("svc_up")).await else {
        return;
    };
    assert_eq!(requests.len(), 4);
    assert!(report.contains("reached max_iterations (4)"), "{report}");
}

#[tokio::test]
async fn plan_execute_stops_after_three_failures_of_the_same_tool() {
    let Some((_, requests, report, steps)) = plan_execute(10, |_| execute("svc_up{")).await else {
        return;
    };
    assert_eq!(requests.len(), 3);
    assert!(
        report.contains("prometheus_query failed 3 times in a row"),
        "{report}"
    );
    let exec = step(&steps, "plan/iter/2/call/exec");
    assert_eq!(exec.status, StepStatus::Failed);
    let answer: Value = serde_json::from_str(&requests[2].last_user_text()).expect("executor JSON");
    assert_eq!(answer["status"], "FAILED");
    assert!(
        answer["advice"].as_str().unwrap().contains("parse error"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_stream_loses_nothing_and_repeats_no_completed_call() {
    let Some(incident) = Incident::llm_without_worker(Backend::Postgres, cascade_metrics).await
    else {
        return;
    };
    incident.prometheus.wait_for_samples("svc_up").await;
    let fake = FakeLlm::start_with_key(KEY).await;
    configure(&incident.engine, &fake, ProviderKind::OpenAi).await;
    // Paced: each answer streams for a while, so the kill lands mid-stream.
    fake.respond("brain-1", |seen| {
        brain(seen).paced(Duration::from_millis(60))
    });
    let env = [
        ("AIOPS_PROMETHEUS_URL", incident.prometheus.url().to_owned()),
        (
            "AIOPS_MASTER_KEY",
            common::incident::TEST_MASTER_KEY.to_owned(),
        ),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let spawn =
        || common::WorkerProcess::spawn(&incident.db.url, std::env::temp_dir().as_path(), &env);
    let mut first = spawn();
    let run = run_team(&incident, TEAM).await;
    // Kill once a few calls are done and another is streaming.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let seen = fake.requests();
        let completed = seen
            .iter()
            .filter(|r| r.outcome == common::fake_llm::Outcome::Completed)
            .count();
        let streaming = seen
            .iter()
            .any(|r| r.outcome == common::fake_llm::Outcome::InFlight);
        if completed >= 4 && streaming {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never mid-stream: {completed} completed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill();
    let _second = spawn();
    let run = wait_for_status(
        &incident.engine,
        run.id,
        &[RunStatus::Succeeded, RunStatus::Failed],
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert!(run.attempt >= 2, "taken over: attempt {}", run.attempt);
    let seen = fake.wait_settled(Duration::from_secs(5)).await;
    assert!(
        seen.iter()
            .any(|r| r.outcome == common::fake_llm::Outcome::Disconnected),
        "the kill cut a stream"
    );
    let mut completed: Vec<String> = seen
        .iter()
        .filter(|r| r.outcome == common::fake_llm::Outcome::Completed)
        .map(|r| r.body.to_string())
        .collect();
    let total = completed.len();
    completed.sort();
    completed.dedup();
    assert_eq!(completed.len(), total, "a completed call was issued twice");
    let (_, result) = report_and_result(&run);
    assert_eq!(result, valid_result());
}

#[tokio::test]
async fn streamed_tokens_reach_live_subscribers_and_are_not_stored() {
    use futures::StreamExt;
    let Some((incident, fake)) = start(
        Backend::Sqlite,
        ProviderKind::Anthropic,
        client(Duration::from_secs(30)),
    )
    .await
    else {
        return;
    };
    fake.respond("brain-1", |seen| {
        brain(seen).paced(Duration::from_millis(20))
    });
    incident.engine.apply_team(TEAM).await.expect("team");
    let run = aiops_engine::agents::start_team_run(
        &incident.engine,
        TeamRun {
            alerts: Some(alerts()),
            ..TeamRun::new("shop")
        },
    )
    .await
    .expect("start");
    let mut live = Box::pin(incident.engine.subscribe_live(run.id));
    let mut text = String::new();
    let mut branches = std::collections::BTreeSet::new();
    while !text.contains("svc_up is 0: DOWN") {
        let event = tokio::time::timeout(Duration::from_secs(30), live.next())
            .await
            .expect("tokens keep coming")
            .expect("stream open");
        assert_eq!(event.kind, aiops_engine::EventKind::LlmToken);
        assert_eq!(event.payload["model"], "brain");
        text.push_str(event.payload["text"].as_str().expect("text"));
        branches.insert(event.branch.clone());
    }
    assert!(
        branches.contains("node/db/agent/metrics/round/0/iter/1"),
        "{branches:?}"
    );
    let run = incident.finish(run.id).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    let stored = incident
        .engine
        .events(run.id, 0, 10_000)
        .await
        .expect("events");
    assert!(
        stored
            .iter()
            .all(|e| e.kind != aiops_engine::EventKind::LlmToken)
    );
}

/// `runEvents` over GraphQL: the stored events in order, and the model's tokens
/// interleaved as live events (each carrying the seq of the stored event it follows);
/// reading the log afterwards shows no token.
#[tokio::test]
async fn streamed_tokens_reach_run_events_subscribers_over_graphql() {
    use common::ws::{Client, TRANSPORT_WS};
    let Some((incident, fake)) = start(
        Backend::Sqlite,
        ProviderKind::OpenAi,
        client(Duration::from_secs(30)),
    )
    .await
    else {
        return;
    };
    fake.respond("brain-1", |seen| {
        brain(seen).paced(Duration::from_millis(20))
    });
    let shutdown = tokio_util::sync::CancellationToken::new();
    let addr = common::serve_api(&incident.engine, shutdown.clone()).await;
    let token = common::token_for(&incident.engine, "vera", aiops_engine::auth::Role::Viewer).await;
    let run = run_team(&incident, TEAM).await;
    let mut ws = Client::authenticated(&addr, TRANSPORT_WS, &token).await;
    ws.subscribe_with(
        "events",
        "subscription($id: UUID!) { runEvents(runId: $id) { seq kind live branch payload } }",
        json!({ "id": run.id.0 }),
    )
    .await;
    let mut last_stored = 0;
    let mut tokens = 0;
    let mut text = String::new();
    loop {
        let event = ws.next_data("events").await["runEvents"].clone();
        let seq = event["seq"].as_i64().expect("seq");
        if event["live"] == true {
            assert_eq!(event["kind"], "LLM_TOKEN", "{event}");
            assert_eq!(seq, last_stored, "a live event carries the seq it follows");
            assert!(event["branch"].is_string(), "{event}");
            text.push_str(event["payload"]["text"].as_str().unwrap_or_default());
            tokens += 1;
            continue;
        }
        assert_eq!(
            seq,
            last_stored + 1,
            "stored events in order, no gap: {event}"
        );
        assert!(event["branch"].is_null());
        last_stored = seq;
        if event["kind"] == "RUN_SUCCEEDED" || event["kind"] == "RUN_FAILED" {
            assert_eq!(event["kind"], "RUN_SUCCEEDED", "{event}");
            break;
        }
    }
    assert!(tokens > 0, "no token reached the subscriber");
    assert!(!text.is_empty(), "the tokens carry the model's text");
    let api = common::Api::new(&addr, Some(&token));
    let stored = api
        .data(
            "query($id: UUID!) { run(id: $id) { events(first: 200) { edges { node { kind live } } } } }",
            json!({ "id": run.id.0 }),
        )
        .await;
    let edges = stored["run"]["events"]["edges"]
        .as_array()
        .expect("edges")
        .clone();
    assert_eq!(edges.len() as i64, last_stored);
    assert!(
        edges
            .iter()
            .all(|e| e["node"]["kind"] != "LLM_TOKEN" && e["node"]["live"] == false),
        "a token was stored"
    );
    shutdown.cancel();
}

/// A receiver of remediation webhooks counting what it is posted.
async fn webhook_receiver() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let posts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = posts.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, posts)
}

/// db's agent may restart it through the webhook (an approval-gated tool).
fn restart_team() -> String {
    TEAM.replace(
        "tools: [prometheus_query, ask_human]",
        "tools: [prometheus_query, webhook_action]",
    )
}

async fn model_proposed_restart(decision: Decision) {
    let Some((incident, fake)) = start(
        Backend::Sqlite,
        ProviderKind::OpenAi,
        client(Duration::from_secs(30)),
    )
    .await
    else {
        return;
    };
    let (url, posts) = webhook_receiver().await;
    incident
        .engine
        .create_webhook(
            Caller::Local,
            aiops_engine::NewWebhook {
                name: "default".into(),
                url,
                secret: Secret::new("a-signing-secret-of-some-length"),
                timeout_ms: None,
            },
        )
        .await
        .expect("webhook");
    fake.respond("brain-1", |seen| {
        let system = seen.system_text();
        if between(&system, "investigating node \"", "\"") == Some("db") {
            let results = seen.tool_results();
            return match results.first() {
                None => Reply::tool_calls([(
                    "restart-1",
                    "webhook_action",
                    json!({ "action": "restart db" }),
                )]),
                Some((_, content)) => Reply::text(&format!("restart: {content}; DOWN")),
            };
        }
        brain(seen)
    });
    let run = run_team(&incident, &restart_team()).await;
    let approval = pending_approval(&incident.engine, run.id).await;
    assert_eq!(approval.tool, "webhook_action");
    assert_eq!(approval.args["action"], "restart db");
    assert_eq!(
        approval.step_key,
        "node/db/agent/metrics/round/0/iter/0/call/restart-1/approval"
    );
    assert_eq!(
        posts.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing runs before the decision"
    );
    incident
        .engine
        .decide_approval(
            approval.id,
            decision,
            "alice",
            Some("not now, failover in progress"),
        )
        .await
        .expect("decide");
    let run = incident.finish(run.id).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    let fed_back = fake
        .requests()
        .into_iter()
        .flat_map(|r| r.tool_results())
        .find(|(id, _)| id == "restart-1")
        .expect("the outcome went back to the model")
        .1;
    match decision {
        Decision::Approve => {
            assert_eq!(
                posts.load(std::sync::atomic::Ordering::SeqCst),
                1,
                "executed exactly once"
            );
            assert!(!fed_back.contains("not approved"), "{fed_back}");
        }
        Decision::Reject => {
            assert_eq!(posts.load(std::sync::atomic::Ordering::SeqCst), 0);
            assert!(
                fed_back.contains("not approved: rejected by alice: not now, failover in progress"),
                "{fed_back}"
            );
        }
    }
}

#[tokio::test]
async fn an_approved_tool_proposed_by_the_model_runs_exactly_once() {
    model_proposed_restart(Decision::Approve).await;
}

#[tokio::test]
async fn a_rejected_tool_proposed_by_the_model_feeds_the_reason_back() {
    model_proposed_restart(Decision::Reject).await;
}

#[tokio::test]
async fn independent_nodes_are_investigated_in_parallel() {
    let Some((incident, fake)) = start(
        Backend::Sqlite,
        ProviderKind::OpenAi,
        client(Duration::from_secs(30)),
    )
    .await
    else {
        return;
    };
    // db and cache are independent; web depends on both.
    let team = r#"
name: shop
supervisor: { model: [brain] }
nodes:
  - { id: db, kind: postgres, match: { service: db }, agents: [{ id: metrics, tools: [prometheus_query] }] }
  - { id: api, kind: cache, match: { service: api }, agents: [{ id: metrics, tools: [prometheus_query] }] }
  - { id: web, kind: service, depends_on: [db, api], match: { service: web }, agents: [{ id: metrics, tools: [prometheus_query] }] }
"#;
    fake.respond("brain-1", |seen| {
        brain(seen).paced(Duration::from_millis(40))
    });
    let run = run_team(&incident, team).await;
    let run = incident.finish(run.id).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    let requests = fake.requests();
    let span = |node: &str| {
        let times: Vec<std::time::Instant> = requests
            .iter()
            .filter(|r| r.system_text().contains(&format!("node \"{node}\"")))
            .map(|r| r.at)
            .collect();
        (*times.iter().min().unwrap(), *times.iter().max().unwrap())
    };
    let (db, api, web) = (span("db"), span("api"), span("web"));
    // The two independent node teams overlap in time; web starts after both.
    assert!(
        db.0 < api.1 && api.0 < db.1,
        "db {db:?} and api {api:?} did not overlap"
    );
    assert!(web.0 > db.1 && web.0 > api.1);
}

#[tokio::test]
async fn cancelling_a_run_aborts_its_model_call_at_once() {
    let Some((incident, fake)) = start(
        Backend::Sqlite,
        ProviderKind::OpenAi,
        client(Duration::from_secs(30)),
    )
    .await
    else {
        return;
    };
    // The first answer trickles for 20 s (paced under the read timeout).
    fake.respond("brain-1", |seen| {
        brain(seen).paced(Duration::from_millis(500))
    });
    let run = run_team(&incident, TEAM).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !fake
        .requests()
        .iter()
        .any(|r| r.outcome == common::fake_llm::Outcome::InFlight)
    {
        assert!(tokio::time::Instant::now() < deadline, "no call started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancelled_at = std::time::Instant::now();
    incident.engine.cancel_run(run.id).await.expect("cancel");
    let seen = fake.wait_settled(Duration::from_secs(3)).await;
    assert!(cancelled_at.elapsed() < Duration::from_secs(3));
    assert!(
        seen.iter()
            .any(|r| r.outcome == common::fake_llm::Outcome::Disconnected),
        "the streaming call was cut: {:?}",
        seen.iter().map(|r| &r.outcome).collect::<Vec<_>>()
    );
    assert!(
        seen.iter()
            .all(|r| r.outcome != common::fake_llm::Outcome::Completed)
    );
    let run = incident.engine.run(run.id).await.expect("run");
    assert_eq!(run.status, RunStatus::Cancelled);
}

#[tokio::test]
async fn an_unconfigured_default_model_means_the_rules_without_model_steps() {
    let Some((incident, fake)) = start(
        Backend::Sqlite,
        ProviderKind::OpenAi,
        client(Duration::from_secs(30)),
    )
    .await
    else {
        return;
    };
    let team = TEAM.replace("model: [brain]", "model: default");
    let run = run_team(&incident, &team).await;
    let run = incident.finish(run.id).await;
    let (report, _) = common::incident::report_and_result(&run);
    assert!(report.contains("Rule-based analysis"), "{report}");
    let steps = incident.engine.steps(run.id).await.expect("steps");
    assert!(
        steps.iter().all(|s| !s.key.ends_with("/llm")),
        "{:?}",
        steps.iter().map(|s| &s.key).collect::<Vec<_>>()
    );
    assert_eq!(step(&steps, "models").output, Some(json!([])));
    assert!(fake.requests().is_empty());

    // Once a model named `default` is stored, the same team uses it.
    incident
        .engine
        .create_model(Caller::Local, NewModel::new("default", "fake", "brain-1"))
        .await
        .expect("default model");
    fake.respond("brain-1", brain);
    let run = run_team(&incident, &team).await;
    let run = incident.finish(run.id).await;
    let (report, _) = report_and_result(&run);
    assert!(report.contains("default (language model"), "{report}");
}
