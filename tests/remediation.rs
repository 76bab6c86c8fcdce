//! Approval-gated actions of an investigation against a real Alertmanager: the
//! proposed silence of a root cause's downstream symptoms is created exactly once
//! when approved — also when the worker is SIGKILLed right after its POST — and
//! not at all when rejected, with the report saying so and by whom. Plus the tool
//! failures a run must survive or report plainly: bad PromQL, an unreachable
//! Prometheus, invalid arguments.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aiops_engine::agents::{TeamRun, ToolOutcome, Toolbox};
use aiops_engine::workflow::WorkflowFuture;
use aiops_engine::{Decision, Engine, RunStatus, StepContext, Workflow, WorkflowError, Workflows};
use common::incident::{Incident, report_and_result};
use common::prometheus::MetricsEndpoint;
use common::{Backend, WorkerProcess, wait_for_status};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// db ← api ← web; the api and web agents may propose silences.
const TEAM: &str = r#"
name: shop
supervisor: { model: builtin:rules }
nodes:
  - { id: db, kind: postgres, match: { service: db }, agents: [{ id: a, tools: [prometheus_query_range] }] }
  - { id: api, kind: service, depends_on: [db], match: { service: api }, agents: [{ id: a, tools: [alertmanager_silence] }] }
  - { id: web, kind: service, depends_on: [api], match: { service: web }, agents: [{ id: a, tools: [alertmanager_silence] }] }
"#;

fn cascade(m: &MetricsEndpoint) {
    m.set("svc_up", &[("service", "db")], 0.0);
    m.set("svc_errors", &[("service", "api")], 30.0);
    m.set("svc_errors", &[("service", "web")], 30.0);
}

async fn firing(incident: &Incident) {
    incident
        .wait_for(&["ServiceDown", "HighErrorRate"], "firing")
        .await;
    incident.wait_for_services(&["api", "web"]).await;
}

/// Waits (up to a minute) until `run` succeeded or failed.
async fn ended(engine: &Engine, run: aiops_engine::RunId) -> aiops_engine::model::Run {
    wait_for_status(
        engine,
        run,
        &[RunStatus::Succeeded, RunStatus::Failed],
        Duration::from_secs(60),
    )
    .await
}

/// Every silence in the Alertmanager at `url`.
async fn silences(url: &str) -> Vec<Value> {
    let body: Value = reqwest::get(format!("{url}/api/v2/silences"))
        .await
        .expect("list silences")
        .json()
        .await
        .expect("silences JSON");
    body.as_array().expect("array").clone()
}

/// The pending approval of `run`, once it waits for one.
async fn the_approval(engine: &Engine, run: aiops_engine::RunId) -> aiops_engine::model::Approval {
    wait_for_status(
        engine,
        run,
        &[RunStatus::WaitingApproval],
        Duration::from_secs(60),
    )
    .await;
    let approvals = engine.approvals_of_run(run).await.expect("approvals");
    assert_eq!(
        approvals.len(),
        1,
        "one silence per root cause: {approvals:#?}"
    );
    approvals.into_iter().next().expect("approval")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rejected_silence_is_not_created_and_the_report_says_who_rejected_it() {
    let Some(incident) = Incident::start(Backend::Postgres, true, cascade).await else {
        return;
    };
    firing(&incident).await;
    let run = incident.start_run(TEAM, TeamRun::new("shop")).await;
    let approval = the_approval(&incident.engine, run.id).await;
    assert_eq!(approval.tool, "alertmanager_silence");
    // The approval shows exactly what would be posted: the symptoms, not the root.
    assert_eq!(
        approval.args["matchers"],
        json!([
            { "name": "alertname", "value": "HighErrorRate", "isRegex": true },
            { "name": "service", "value": "api|web", "isRegex": true }
        ]),
        "{:#}",
        approval.args
    );
    let marker = format!(
        "[aiops run={} step=supervisor/remediation/call/silence-db]",
        run.id
    );
    assert!(
        approval.args["comment"]
            .as_str()
            .expect("comment")
            .ends_with(&marker),
        "{:#}",
        approval.args
    );
    incident
        .engine
        .decide_approval(
            approval.id,
            Decision::Reject,
            "bob",
            Some("not during the failover"),
        )
        .await
        .expect("reject");
    let run = incident.finish(run.id).await;
    let (report, result) = report_and_result(&run);
    let remediation = &report[report.find("## Remediation").expect("section")..];
    assert!(
        remediation
            .contains("**rejected**: Silence the downstream symptom alerts of db (api, web)")
            && remediation.contains("rejected by bob: \"not during the failover\""),
        "{report}"
    );
    let action = result["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .find(|a| a["tool"] == "alertmanager_silence")
        .expect("silence action");
    assert_eq!(action["status"], "rejected");
    let am = incident.alertmanager.as_ref().expect("alertmanager");
    assert!(silences(am.url()).await.is_empty(), "nothing was silenced");
}

/// Forwards HTTP to Alertmanager, one request per connection; when armed, the first
/// `POST /api/v2/silences` reaches Alertmanager but its answer is never returned,
/// and `posted` is told (the test then kills the worker that sent it).
struct AnswerEatingProxy {
    url: String,
    posted: tokio::sync::mpsc::Receiver<()>,
    task: tokio::task::JoinHandle<()>,
}

impl AnswerEatingProxy {
    async fn start(target: &str) -> AnswerEatingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let armed = Arc::new(AtomicBool::new(true));
        let (tx, posted) = tokio::sync::mpsc::channel(1);
        let (target, flag) = (target.to_owned(), armed.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(forward(stream, target.clone(), flag.clone(), tx.clone()));
            }
        });
        AnswerEatingProxy { url, posted, task }
    }
}

impl Drop for AnswerEatingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    mut stream: tokio::net::TcpStream,
    target: String,
    armed: Arc<AtomicBool>,
    posted: tokio::sync::mpsc::Sender<()>,
) {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let length: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..head_end + length].to_vec();
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let is_silence_post = method == reqwest::Method::POST && path.starts_with("/api/v2/silences");
    let answer = reqwest::Client::new()
        .request(method, format!("{target}{path}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("forward to Alertmanager");
    let status = answer.status().as_u16();
    let bytes = answer.bytes().await.expect("answer body");
    if is_silence_post && armed.swap(false, Ordering::SeqCst) {
        let _ = posted.send(()).await;
        // The sender never hears back: as if it died between POST and answer.
        std::future::pending::<()>().await;
    }
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        bytes.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&bytes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approved_silence_is_created_once_even_when_the_worker_dies_after_posting() {
    let Some(incident) = Incident::without_worker(Backend::Postgres, true, cascade).await else {
        return;
    };
    firing(&incident).await;
    let am_url = incident
        .alertmanager
        .as_ref()
        .expect("alertmanager")
        .url()
        .to_owned();
    let mut proxy = AnswerEatingProxy::start(&am_url).await;
    let worker_env = |am: &str| {
        vec![
            ("AIOPS_PROMETHEUS_URL", incident.prometheus.url().to_owned()),
            ("AIOPS_ALERTMANAGER_URL", am.to_owned()),
        ]
    };
    let spawn = |env: Vec<(&'static str, String)>| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        WorkerProcess::spawn(&incident.db.url, std::env::temp_dir().as_path(), &env)
    };
    let mut first = spawn(worker_env(&proxy.url));
    let run = incident.start_run(TEAM, TeamRun::new("shop")).await;
    let approval = the_approval(&incident.engine, run.id).await;
    incident
        .engine
        .decide_approval(approval.id, Decision::Approve, "alice", None)
        .await
        .expect("approve");
    tokio::time::timeout(Duration::from_secs(60), proxy.posted.recv())
        .await
        .expect("the worker posted the silence")
        .expect("proxy alive");
    first.kill();
    assert_eq!(
        silences(&am_url).await.len(),
        1,
        "the POST reached Alertmanager"
    );

    // Another worker takes the run over once the dead one's lease expires.
    let _second = spawn(worker_env(&am_url));
    let run = ended(&incident.engine, run.id).await;
    assert!(run.attempt >= 2, "taken over: attempt {}", run.attempt);
    let (report, result) = report_and_result(&run);
    let all = silences(&am_url).await;
    assert_eq!(all.len(), 1, "exactly one silence: {all:#?}");
    let silence = &all[0];
    assert_eq!(silence["status"]["state"], "active");
    assert_eq!(silence["comment"], approval.args["comment"]);
    assert_eq!(silence["matchers"][1]["value"], "api|web");
    let action = result["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .find(|a| a["tool"] == "alertmanager_silence")
        .expect("silence action");
    assert_eq!(action["status"], "executed", "{action:#}");
    let id = silence["id"].as_str().expect("id");
    assert!(
        action["detail"]
            .as_str()
            .expect("detail")
            .contains(&format!("silence {id} already existed")),
        "{action:#}"
    );
    assert!(
        report.contains("**done**: Silence the downstream"),
        "{report}"
    );
    incident.shutdown.cancel();
}

/// Calls one tool with the arguments of its input, as an agent would.
struct CallOneTool;

impl Workflow for CallOneTool {
    fn run(&self, ctx: StepContext) -> WorkflowFuture {
        Box::pin(async move {
            let engine = ctx.engine().clone();
            let source = engine
                .alert_source_for(None)
                .await
                .map_err(|e| e.to_string())
                .and_then(|c| {
                    aiops_engine::tools::SourceClients::connect(&c).map_err(|e| e.message)
                });
            let team = aiops_engine::topology::parse(TEAM).expect("team");
            let toolbox = Toolbox::new(
                aiops_engine::tools::Registry::builtin(),
                engine.clone(),
                source,
                Arc::new(team),
            );
            let input = ctx.input().clone();
            let tool = input["tool"].as_str().unwrap_or_default().to_owned();
            match toolbox
                .call(&ctx.branch("agent"), "c1", &tool, input["args"].clone())
                .await?
            {
                ToolOutcome::Done(v) => Ok(v),
                ToolOutcome::Failed(message) => Err(WorkflowError::Failed(message)),
                ToolOutcome::Declined { .. } => Err(WorkflowError::Failed("declined".into())),
            }
        })
    }
}

/// An engine running [`CallOneTool`] against `prometheus_url`, with its worker.
async fn tool_engine(
    prometheus_url: &str,
) -> Option<(common::TestDb, Engine, tokio_util::sync::CancellationToken)> {
    let db = common::TestDb::migrated(Backend::Sqlite).await?;
    let engine = Engine::connect(
        &db.url,
        aiops_engine::EngineOptions {
            config: common::fast_config(),
            workflows: aiops_engine::agents::register(
                Workflows::default().with("call", CallOneTool),
            ),
            default_source: aiops_engine::DefaultAlertSource::new(
                Some(prometheus_url.to_owned()),
                None,
            )
            .expect("url"),
            ..aiops_engine::EngineOptions::default()
        },
    )
    .await
    .expect("engine");
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(engine.clone().listen(shutdown.clone()));
    tokio::spawn(aiops_engine::Worker::new(engine.clone()).run(shutdown.child_token()));
    Some((db, engine, shutdown))
}

async fn call(engine: &Engine, tool: &str, args: Value) -> aiops_engine::model::Run {
    let run = engine
        .start_run(aiops_engine::StartRun::new(
            "call",
            json!({ "tool": tool, "args": args }),
        ))
        .await
        .expect("start");
    ended(engine, run.id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_promql_and_invalid_arguments_fail_for_good_naming_what_was_wrong() {
    let Some(incident) = Incident::start(Backend::Sqlite, false, cascade).await else {
        return;
    };
    incident.prometheus.wait_for_samples("svc_up").await;
    let Some((_db, engine, _stop)) = tool_engine(incident.prometheus.url()).await else {
        return;
    };
    let run = call(
        &engine,
        "prometheus_query",
        json!({ "query": "sum(rate(svc_errors[5m]" }),
    )
    .await;
    assert_eq!(run.status, RunStatus::Failed);
    let error = run.error.expect("error");
    assert!(
        error.contains("bad_data") && error.contains("parse error"),
        "{error}"
    );
    assert!(error.contains("query: sum(rate(svc_errors[5m]"), "{error}");
    let steps = engine.steps(run.id).await.expect("steps");
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].key, "agent/call/c1");
    assert_eq!(steps[0].attempts, 1, "a permanent failure is not retried");

    let run = call(
        &engine,
        "prometheus_query_range",
        json!({ "query": "up", "start": "2026-12-01T00:00:00Z", "end": "2026-12-01T01:00:00Z", "step": -5 }),
    )
    .await;
    let error = run.error.expect("error");
    assert!(
        error.contains("invalid arguments for prometheus_query_range"),
        "{error}"
    );
    assert!(error.contains("/step: "), "{error}");
    let steps = engine.steps(run.id).await.expect("steps");
    assert_eq!(
        steps[0].input,
        Some(
            json!({ "query": "up", "start": "2026-12-01T00:00:00Z", "end": "2026-12-01T01:00:00Z", "step": -5 })
        )
    );

    let run = call(
        &engine,
        "prometheus_query",
        json!({ "query": "svc_up", "time": "yesterday" }),
    )
    .await;
    // The schema accepts any short string; the tool names the field it could not read.
    assert!(
        run.error
            .expect("error")
            .contains("/time: \"yesterday\" is not an RFC 3339 time")
    );

    let run = call(&engine, "no_such_tool", json!({})).await;
    assert!(
        run.error
            .expect("error")
            .contains("unknown tool \"no_such_tool\"")
    );

    let events = engine.events(run.id, 0, 100).await.expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.kind == aiops_engine::EventKind::ToolCall)
    );
    assert!(
        events
            .iter()
            .any(|e| e.kind == aiops_engine::EventKind::ToolResult && e.payload["ok"] == false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_prometheus_is_retried_then_fails_clearly() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let nobody = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let Some((_db, engine, _stop)) = tool_engine(&nobody).await else {
        return;
    };
    let run = call(&engine, "prometheus_query", json!({ "query": "up" })).await;
    assert_eq!(run.status, RunStatus::Failed);
    let error = run.error.expect("error");
    assert!(
        error.contains("Connection refused") || error.contains("connect"),
        "{error}"
    );
    assert!(error.contains("query: up"), "{error}");
    let steps = engine.steps(run.id).await.expect("steps");
    assert_eq!(
        steps[0].attempts, 4,
        "retried three times with backoff: {:?}",
        steps[0]
    );

    // A team run whose source is down fails with the same plain reason, never hangs.
    engine.apply_team(TEAM).await.expect("team");
    let run = aiops_engine::agents::start_team_run(&engine, TeamRun::new("shop"))
        .await
        .expect("start");
    let run = ended(&engine, run.id).await;
    assert_eq!(run.status, RunStatus::Failed);
    let error = run.error.expect("error");
    assert!(
        error.starts_with("could not read the firing alerts of alert source \"default\": "),
        "{error}"
    );
    assert!(error.contains("Prometheus at "), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn topology_and_ask_human_are_tools_like_the_others() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let unused = format!("http://{}", listener.local_addr().expect("addr"));
    let Some((_db, engine, _stop)) = tool_engine(&unused).await else {
        return;
    };
    let run = call(&engine, "topology", json!({ "node": "api" })).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    let output = run.output.expect("output");
    assert_eq!(output["team"], "shop");
    assert_eq!(
        output["nodes"].as_array().map(Vec::len),
        Some(1),
        "{output}"
    );
    assert_eq!(output["nodes"][0]["depends_on"], json!(["db"]));
    assert_eq!(output["nodes"][0]["match"], json!({ "service": "api" }));

    let run = engine
        .start_run(aiops_engine::StartRun::new(
            "call",
            json!({ "tool": "ask_human", "args": { "question": "Is the failover done?" } }),
        ))
        .await
        .expect("start");
    wait_for_status(
        &engine,
        run.id,
        &[RunStatus::WaitingInput],
        Duration::from_secs(30),
    )
    .await;
    let question = engine
        .pending_questions(&aiops_engine::PageRequest::first(10))
        .await
        .expect("questions")
        .items
        .into_iter()
        .find(|q| q.run_id == run.id)
        .expect("the question");
    assert_eq!(question.question, "Is the failover done?");
    assert_eq!(question.step_key, "agent/call/c1");
    engine
        .answer_question(question.id, "yes, at 04:10", "carol")
        .await
        .expect("answer");
    let run = ended(&engine, run.id).await;
    assert_eq!(
        run.output,
        Some(json!({ "answer": "yes, at 04:10", "answered_by": "carol" })),
        "{:?}",
        run.error
    );
}
