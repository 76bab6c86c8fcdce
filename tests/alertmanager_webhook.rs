//! The Alertmanager webhook intake (§8, issue 10): a real Alertmanager posting to
//! the real HTTP server starts one run per alert group, its repeats start nothing,
//! and the group's resolution is recorded on the run and in its report; over plain
//! HTTP: tokens (401, nothing stored), payloads refused naming the field (400,
//! nothing stored), unrouted groups (200, recorded), new alerts joining an active
//! run, identical notifications at once, several teams, and receivers whose runs'
//! approvals are rejected without asking anyone.

mod common;

use std::time::Duration;

use aiops_engine::model::{AlertNotification, NotificationFilter, NotificationOutcome, Run};
use aiops_engine::page::PageRequest;
use aiops_engine::{
    ApprovalMode, ApprovalStatus, Caller, Decision, DefaultAlertSource, Engine, EngineOptions,
    EventKind, RunId, RunStatus, Trigger, Worker, Workflows,
};
use common::incident::{RULES, team_report_and_result};
use common::prometheus::{Alertmanager, MetricsEndpoint, Prometheus};
use common::{Api, Backend, TestDb, fast_config, wait_for_status};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// db ← api ← web; api and web may propose silences. Takes the groups of team
/// `checkout` that are not from staging.
const TEAM: &str = r#"
name: checkout
supervisor: { model: builtin:rules }
alertmanager:
  matchers: ['team="checkout"', 'env!="staging"']
nodes:
  - { id: db, kind: postgres, match: { service: db }, agents: [{ id: a, tools: [prometheus_query_range] }] }
  - { id: api, kind: service, depends_on: [db], match: { service: api }, agents: [{ id: a, tools: [alertmanager_silence] }] }
  - { id: web, kind: service, depends_on: [api], match: { service: web }, agents: [{ id: a, tools: [alertmanager_silence] }] }
"#;

const WEBHOOK: &str = "/api/alertmanager/webhook";

/// One alert of a hand-made notification.
struct A {
    fingerprint: &'static str,
    name: &'static str,
    service: &'static str,
    starts_at: &'static str,
    firing: bool,
}

const fn firing(fingerprint: &'static str, name: &'static str, service: &'static str) -> A {
    A {
        fingerprint,
        name,
        service,
        starts_at: "2026-12-04T10:00:00.123456789Z",
        firing: true,
    }
}

impl A {
    const fn resolved(self) -> A {
        A {
            firing: false,
            ..self
        }
    }

    const fn starting(self, starts_at: &'static str) -> A {
        A { starts_at, ..self }
    }
}

const DB_DOWN: A = firing("f0000000000000db", "ServiceDown", "db");
const API_ERRORS: A = firing("f000000000000api", "HighErrorRate", "api");
const WEB_ERRORS: A = firing("f000000000000web", "HighErrorRate", "web");

/// A webhook notification (payload version 4) of group `group` with `alerts`; the
/// group's labels are `team` (and `env` when given).
fn notification(group: &str, team: &str, env: Option<&str>, alerts: &[A]) -> Value {
    let mut group_labels = json!({ "team": team });
    if let Some(env) = env {
        group_labels["env"] = json!(env);
    }
    let all_resolved = alerts.iter().all(|a| !a.firing);
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{team=\"{team}\", group=\"{group}\"}}"),
        "truncatedAlerts": 0,
        "status": if all_resolved { "resolved" } else { "firing" },
        "receiver": "aiops",
        "groupLabels": group_labels,
        "commonLabels": group_labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": alerts.iter().map(|a| {
            let mut labels = group_labels.clone();
            labels["alertname"] = json!(a.name);
            labels["service"] = json!(a.service);
            json!({
                "status": if a.firing { "firing" } else { "resolved" },
                "labels": labels,
                "annotations": { "summary": format!("{} on {}", a.name, a.service) },
                "startsAt": a.starts_at,
                "endsAt": if a.firing { "0001-01-01T00:00:00Z" } else { "2026-12-04T11:00:00Z" },
                "generatorURL": "http://prometheus.example/graph",
                "fingerprint": a.fingerprint,
            })
        }).collect::<Vec<_>>(),
    })
}

/// An engine executing investigations (a worker only when asked), the real API in
/// front of it, a team, and a receiver token.
struct Intake {
    db: TestDb,
    engine: Engine,
    addr: String,
    token: String,
    shutdown: CancellationToken,
    http: reqwest::Client,
}

impl Intake {
    async fn start(
        backend: Backend,
        mode: ApprovalMode,
        worker: bool,
        source: Option<DefaultAlertSource>,
    ) -> Option<Intake> {
        let db = TestDb::migrated(backend).await?;
        let engine = Engine::connect(
            &db.url,
            EngineOptions {
                config: fast_config(),
                workflows: aiops_engine::agents::register(Workflows::default()),
                application_name: "aiops test".into(),
                default_source: source,
                ..EngineOptions::default()
            },
        )
        .await
        .expect("engine");
        let shutdown = CancellationToken::new();
        tokio::spawn(engine.clone().listen(shutdown.clone()));
        if worker {
            tokio::spawn(Worker::new(engine.clone()).run(shutdown.child_token()));
        }
        engine.apply_team(TEAM).await.expect("apply team");
        let (_, token) = engine
            .create_alertmanager_receiver(Caller::Local, "prod", mode)
            .await
            .expect("receiver");
        let addr = common::serve_api(&engine, shutdown.child_token()).await;
        Some(Intake {
            db,
            engine,
            addr,
            token,
            shutdown,
            http: reqwest::Client::new(),
        })
    }

    fn start_worker(&self) {
        tokio::spawn(Worker::new(self.engine.clone()).run(self.shutdown.child_token()));
    }

    /// POSTs `body` with `token`: the status, the headers and the answer.
    async fn post_raw(
        &self,
        token: Option<&str>,
        body: String,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self
            .http
            .post(format!("http://{}{WEBHOOK}", self.addr))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("POST webhook");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("answer");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, value)
    }

    /// POSTs a notification with the receiver's token; the answer of a 200.
    async fn post(&self, body: &Value) -> Value {
        let (status, _, answer) = self.post_raw(Some(&self.token), body.to_string()).await;
        assert_eq!(status, 200, "{answer}");
        answer
    }

    /// Every stored notification, oldest first.
    async fn notifications(&self) -> Vec<AlertNotification> {
        let page = self
            .engine
            .alert_notifications(&NotificationFilter::default(), &PageRequest::first(500))
            .await
            .expect("notifications");
        page.items.into_iter().rev().collect()
    }

    /// Every run the webhook started, oldest first.
    async fn runs(&self) -> Vec<Run> {
        webhook_runs(&self.engine).await
    }
}

impl Drop for Intake {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn webhook_runs(engine: &Engine) -> Vec<Run> {
    let filter = aiops_engine::model::RunFilter {
        trigger: Some(Trigger::Alertmanager),
        ..Default::default()
    };
    let page = engine
        .list_runs(&filter, &PageRequest::first(100))
        .await
        .expect("runs");
    page.items.into_iter().rev().collect()
}

fn outcome(answer: &Value) -> &str {
    answer["outcome"].as_str().unwrap_or_default()
}

fn run_of(answer: &Value) -> RunId {
    answer["routes"][0]["runId"]
        .as_str()
        .unwrap_or_else(|| panic!("no run in {answer}"))
        .parse()
        .expect("run id")
}

async fn events_of(engine: &Engine, run: RunId, kind: EventKind) -> Vec<Value> {
    engine
        .events(run, 0, 10_000)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.payload)
        .collect()
}

async fn repeats_start_nothing_and_news_are_recorded_on_the_active_run(backend: Backend) {
    let Some(intake) = Intake::start(backend, ApprovalMode::Wait, false, None).await else {
        return;
    };
    // A new group: one run, whose input is the notification.
    let first = notification("g1", "checkout", None, &[DB_DOWN, API_ERRORS]);
    let answer = intake.post(&first).await;
    assert_eq!(outcome(&answer), "STARTED", "{answer}");
    let run = run_of(&answer);
    let stored = intake.engine.run(run).await.expect("run");
    assert_eq!(stored.trigger, Trigger::Alertmanager);
    assert_eq!(
        stored.trigger_id.as_deref(),
        answer["notificationId"].as_str()
    );
    assert_eq!(stored.input["alerts"]["groupKey"], first["groupKey"]);

    // Alertmanager's repeat (repeat_interval): nothing new.
    let answer = intake.post(&first).await;
    assert_eq!(outcome(&answer), "DEDUPLICATED", "{answer}");
    assert_eq!(run_of(&answer), run, "names the run that has them");

    // A new alert joins the group while the run is active: recorded on it.
    let grown = notification("g1", "checkout", None, &[DB_DOWN, API_ERRORS, WEB_ERRORS]);
    let answer = intake.post(&grown).await;
    assert_eq!(outcome(&answer), "RECORDED", "{answer}");
    assert_eq!(run_of(&answer), run);
    let joined = events_of(&intake.engine, run, EventKind::AlertFiring).await;
    assert_eq!(joined.len(), 1);
    assert_eq!(
        joined[0]["alerts"][0]["fingerprint"],
        WEB_ERRORS.fingerprint
    );

    // The database recovers: its alert resolves; recorded once, however often sent.
    let healing = notification(
        "g1",
        "checkout",
        None,
        &[DB_DOWN.resolved(), API_ERRORS, WEB_ERRORS],
    );
    assert_eq!(outcome(&intake.post(&healing).await), "RECORDED");
    assert_eq!(outcome(&intake.post(&healing).await), "DEDUPLICATED");
    let resolved = events_of(&intake.engine, run, EventKind::AlertResolved).await;
    assert_eq!(resolved.len(), 1, "{resolved:#?}");
    assert_eq!(resolved[0]["alerts"][0]["fingerprint"], DB_DOWN.fingerprint);
    assert_eq!(intake.runs().await.len(), 1, "one run for the group");
    common::assert_gap_free(&intake.engine, run).await;

    // The run's report marks the resolved alert and lists the one that joined.
    intake.start_worker();
    let done = wait_for_status(
        &intake.engine,
        run,
        &[RunStatus::Succeeded, RunStatus::Failed],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(done.status, RunStatus::Succeeded, "{:?}", done.error);
    let (report, _) = team_report_and_result(&done);
    let active = &report[report.find("## Active alerts").expect("section")
        ..report.find("## Root cause analysis").expect("section")];
    let db_row = active
        .lines()
        .find(|l| l.contains("ServiceDown"))
        .expect("db's alert");
    assert!(
        db_row.contains("**resolved** at 2026-12-04T11:00:00Z"),
        "{active}"
    );
    assert!(
        active.contains("**Joined during the investigation**")
            && active.contains("HighErrorRate{service=\"web\", team=\"checkout\"}"),
        "{active}"
    );

    // After the run ended, a repeat is still nothing new; the database failing
    // again (a new startsAt) is a new incident: a new run.
    assert_eq!(outcome(&intake.post(&grown).await), "DEDUPLICATED");
    let again = notification(
        "g1",
        "checkout",
        None,
        &[
            DB_DOWN.starting("2026-12-04T12:00:00Z"),
            API_ERRORS,
            WEB_ERRORS,
        ],
    );
    let answer = intake.post(&again).await;
    assert_eq!(outcome(&answer), "STARTED", "{answer}");
    assert_ne!(run_of(&answer), run);

    let outcomes: Vec<NotificationOutcome> = intake
        .notifications()
        .await
        .iter()
        .map(|n| n.outcome)
        .collect();
    use NotificationOutcome::*;
    assert_eq!(
        outcomes,
        [
            Started,
            Deduplicated,
            Recorded,
            Recorded,
            Deduplicated,
            Deduplicated,
            Started
        ]
    );
}
both_backends!(
    repeats_start_nothing_and_news_are_recorded,
    repeats_start_nothing_and_news_are_recorded_on_the_active_run
);

async fn refusals_store_nothing(backend: Backend) {
    let Some(intake) = Intake::start(backend, ApprovalMode::Wait, false, None).await else {
        return;
    };
    let body = notification("g1", "checkout", None, &[DB_DOWN]).to_string();
    let admin = common::token_for(&intake.engine, "alice", aiops_engine::Role::Admin).await;
    let wrong = format!("aiopsam_abcd1234_{}", "A".repeat(32));
    for token in [
        None,
        Some("nonsense"),
        Some(wrong.as_str()),
        Some(admin.as_str()),
    ] {
        let (status, headers, answer) = intake.post_raw(token, body.clone()).await;
        assert_eq!(status, 401, "{token:?}: {answer}");
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"),
            "{headers:?}"
        );
        assert!(!answer.to_string().contains(&intake.token));
    }

    let mut bad_time = notification("g1", "checkout", None, &[DB_DOWN, API_ERRORS]);
    bad_time["alerts"][1]["startsAt"] = json!("yesterday");
    let mut old_version = notification("g1", "checkout", None, &[DB_DOWN]);
    old_version["version"] = json!("3");
    let mut too_many = notification("g1", "checkout", None, &[DB_DOWN]);
    too_many["alerts"] = Value::Array(vec![too_many["alerts"][0].clone(); 1001]);
    for (body, wanted) in [
        (bad_time.to_string(), "alerts[1].startsAt: "),
        (old_version.to_string(), "version: \"3\" is not supported"),
        (too_many.to_string(), "at most 1000 per notification"),
        ("[]".to_owned(), "invalid notification"),
    ] {
        let (status, _, answer) = intake.post_raw(Some(&intake.token), body).await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap_or_default()
                .contains(wanted),
            "wanted {wanted:?}: {answer}"
        );
    }
    let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(2 << 20));
    assert_eq!(intake.post_raw(Some(&intake.token), huge).await.0, 413);
    assert!(intake.notifications().await.is_empty(), "nothing stored");
    assert!(intake.runs().await.is_empty());

    // No team takes staging groups (env!="staging") nor other teams' groups:
    // answered 200 (Alertmanager must not retry), recorded as unrouted.
    for unrouted in [
        notification("g2", "checkout", Some("staging"), &[DB_DOWN]),
        notification("g3", "payments", None, &[DB_DOWN]),
    ] {
        let answer = intake.post(&unrouted).await;
        assert_eq!(outcome(&answer), "UNROUTED", "{answer}");
    }
    let stored = intake.notifications().await;
    assert_eq!(stored.len(), 2);
    assert!(
        stored[0]
            .reason
            .starts_with("no team's alertmanager matchers match")
            && stored[0].reason.contains("staging"),
        "{}",
        stored[0].reason
    );
    assert_eq!(stored[0].receiver, "prod");
    assert!(intake.runs().await.is_empty());

    // A deleted receiver's token stops working.
    intake
        .engine
        .delete_alertmanager_receiver(Caller::Local, "prod")
        .await
        .expect("delete");
    let (status, _, _) = intake.post_raw(Some(&intake.token), body).await;
    assert_eq!(status, 401);
}
both_backends!(refusals, refusals_store_nothing);

async fn identical_notifications_at_once_start_one_run(backend: Backend) {
    let Some(intake) = Intake::start(backend, ApprovalMode::Wait, false, None).await else {
        return;
    };
    // Another team that takes the same groups: each team investigates them.
    let other = TEAM
        .replace("name: checkout", "name: checkout-dba")
        .replace("'env!=\"staging\"'", "'service!~\"x.*\"'");
    intake.engine.apply_team(&other).await.expect("team");
    let body = notification("g1", "checkout", None, &[DB_DOWN, API_ERRORS]);
    let answers = futures::future::join_all((0..12).map(|_| intake.post(&body))).await;
    let started = answers.iter().filter(|a| outcome(a) == "STARTED").count();
    assert_eq!(started, 1, "{answers:#?}");
    let started = answers
        .iter()
        .find(|a| outcome(a) == "STARTED")
        .expect("one");
    let teams: Vec<&str> = started["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .map(|r| r["team"].as_str().expect("team"))
        .collect();
    assert_eq!(teams, ["checkout", "checkout-dba"]);
    assert!(
        answers
            .iter()
            .filter(|a| outcome(a) != "STARTED")
            .all(|a| outcome(a) == "DEDUPLICATED"),
        "{answers:#?}"
    );
    let runs = intake.runs().await;
    assert_eq!(runs.len(), 2, "one run per team");
    assert_ne!(runs[0].team_id, runs[1].team_id);
}
both_backends!(
    identical_notifications_at_once,
    identical_notifications_at_once_start_one_run
);

async fn a_rejecting_receiver_rejects_approvals_without_asking(backend: Backend) {
    // An Alertmanager that is never called: the silence is rejected before.
    let source = DefaultAlertSource::new(None, Some("http://127.0.0.1:9".into())).expect("url");
    let Some(intake) = Intake::start(backend, ApprovalMode::Reject, true, source).await else {
        return;
    };
    let answer = intake
        .post(&notification(
            "g1",
            "checkout",
            None,
            &[DB_DOWN, API_ERRORS, WEB_ERRORS],
        ))
        .await;
    let run = run_of(&answer);
    let done = wait_for_status(
        &intake.engine,
        run,
        &[
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::WaitingApproval,
        ],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(done.status, RunStatus::Succeeded, "{:?}", done.error);
    assert_eq!(done.approval_mode, ApprovalMode::Reject);
    let approvals = intake
        .engine
        .approvals_of_run(run)
        .await
        .expect("approvals");
    assert_eq!(approvals.len(), 1, "{approvals:#?}");
    let a = &approvals[0];
    assert_eq!(a.tool, "alertmanager_silence");
    assert_eq!(a.status, ApprovalStatus::Rejected);
    assert_eq!(a.decided_by.as_deref(), Some("system"));
    let comment = a.comment.as_deref().unwrap_or_default();
    assert!(
        comment.contains("ALERTMANAGER") && comment.contains("approval mode REJECT"),
        "{comment}"
    );
    let requested = events_of(&intake.engine, run, EventKind::ApprovalRequested).await;
    let decided = events_of(&intake.engine, run, EventKind::ApprovalDecided).await;
    assert_eq!((requested.len(), decided.len()), (1, 1));
    assert_eq!(decided[0]["decided_by"], "system");
    let (report, result) = team_report_and_result(&done);
    assert!(
        report.contains("**rejected**: Silence the downstream symptom alerts of db")
            && report.contains("rejected by system"),
        "{report}"
    );
    let silence = result["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .find(|a| a["tool"] == "alertmanager_silence")
        .expect("silence action");
    assert_eq!(silence["status"], "rejected");
    // Nobody is asked: nothing is left pending.
    assert!(
        intake
            .engine
            .pending_approvals(&PageRequest::first(10))
            .await
            .expect("pending")
            .items
            .is_empty()
    );
}
both_backends!(
    rejecting_receiver,
    a_rejecting_receiver_rejects_approvals_without_asking
);

/// Sets the cascade: db down, api and web erroring.
fn cascade(m: &MetricsEndpoint) {
    m.set("svc_up", &[("service", "db")], 0.0);
    m.set("svc_errors", &[("service", "api")], 30.0);
    m.set("svc_errors", &[("service", "web")], 30.0);
}

/// The team of the real Alertmanager's groups (grouped by `job`).
const LAB_TEAM: &str = r#"
name: lab
supervisor: { model: builtin:rules }
alertmanager:
  matchers: ['job="test"']
nodes:
  - { id: db, kind: postgres, match: { service: db }, agents: [{ id: a, tools: [prometheus_query_range] }] }
  - { id: api, kind: service, depends_on: [db], match: { service: api }, agents: [{ id: a, tools: [alertmanager_silence] }] }
  - { id: web, kind: service, depends_on: [api], match: { service: web }, agents: [{ id: a, tools: [alertmanager_silence] }] }
"#;

/// Polls `check` every 100 ms for up to 45 s.
async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within 45 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_alertmanager_starts_one_run_per_group_and_its_resolution_is_recorded() {
    let Some(db) = TestDb::migrated(Backend::Postgres).await else {
        return;
    };
    // The team and the receiver first: Alertmanager's configuration needs the token.
    let setup = common::keyed_engine(&db.url, None).await;
    setup.apply_team(LAB_TEAM).await.expect("team");
    let (_, token) = setup
        .create_alertmanager_receiver(Caller::Local, "lab", ApprovalMode::Wait)
        .await
        .expect("receiver");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind api");
    let addr = listener.local_addr().expect("addr").to_string();
    let config = format!(
        "route:\n  receiver: aiops\n  group_by: ['job']\n  group_wait: 1s\n  group_interval: 1s\n  \
         repeat_interval: 2s\n\
         receivers:\n  - name: aiops\n    webhook_configs:\n      - url: 'http://{addr}{WEBHOOK}'\n        \
         send_resolved: true\n        max_alerts: 1000\n        http_config:\n          \
         authorization:\n            type: Bearer\n            credentials: '{token}'\n"
    );
    let metrics = MetricsEndpoint::start().await;
    cascade(&metrics);
    let Some(alertmanager) = Alertmanager::start_with_config(&config).await else {
        return;
    };
    let Some(prometheus) = Prometheus::start(RULES, &[metrics.addr()], Some(&alertmanager)).await
    else {
        return;
    };
    let engine = Engine::connect(
        &db.url,
        common::incident::options(&prometheus, Some(&alertmanager)),
    )
    .await
    .expect("engine");
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    tokio::spawn(engine.clone().listen(shutdown.clone()));
    tokio::spawn(Worker::new(engine.clone()).run(shutdown.child_token()));
    {
        let engine = engine.clone();
        let stop = shutdown.child_token();
        tokio::spawn(async move {
            let _ = aiops_api::serve_with(
                listener,
                engine,
                &aiops_api::ApiConfig::default(),
                async move { stop.cancelled().await },
            )
            .await;
        });
    }

    // Alertmanager posts the group: one run, which stops at the silence it proposes.
    let run = eventually("a run started by Alertmanager", || {
        let engine = engine.clone();
        async move { webhook_runs(&engine).await.into_iter().next() }
    })
    .await;
    let run = wait_for_status(
        &engine,
        run.id,
        &[
            RunStatus::WaitingApproval,
            RunStatus::Succeeded,
            RunStatus::Failed,
        ],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(run.status, RunStatus::WaitingApproval, "{:?}", run.error);

    // Repeats arrive every repeat_interval and start nothing.
    let notifications = |outcome| {
        let engine = engine.clone();
        async move {
            let filter = NotificationFilter {
                outcome: Some(outcome),
                receiver: None,
            };
            engine
                .alert_notifications(&filter, &PageRequest::first(100))
                .await
                .expect("notifications")
                .items
        }
    };
    eventually("a repeat notification", || async {
        let repeats = notifications(NotificationOutcome::Deduplicated).await;
        (repeats.len() >= 2).then_some(())
    })
    .await;
    assert_eq!(
        webhook_runs(&engine).await.len(),
        1,
        "repeats start nothing"
    );
    let started = notifications(NotificationOutcome::Started).await;
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].receiver, "lab");
    assert_eq!(started[0].group_labels["job"], "test");
    assert_eq!(run.trigger_id, Some(started[0].id.to_string()));

    // Everything recovers: Alertmanager sends the resolution, recorded on the run.
    metrics.set("svc_up", &[("service", "db")], 1.0);
    metrics.set("svc_errors", &[("service", "api")], 0.0);
    metrics.set("svc_errors", &[("service", "web")], 0.0);
    let resolved = eventually("the resolution on the run", || {
        let engine = engine.clone();
        async move {
            let found = events_of(&engine, run.id, EventKind::AlertResolved).await;
            let n: usize = found
                .iter()
                .map(|e| e["alerts"].as_array().map_or(0, Vec::len))
                .sum();
            (n >= 3).then_some(found)
        }
    })
    .await;
    assert_eq!(resolved[0]["receiver"], "lab");

    // The person rejects the silence; the report says the alerts resolved meanwhile.
    let approval = engine
        .approvals_of_run(run.id)
        .await
        .expect("approvals")
        .into_iter()
        .next()
        .expect("the silence");
    engine
        .decide_approval(approval.id, Decision::Reject, "bob", Some("it recovered"))
        .await
        .expect("reject");
    let done = wait_for_status(
        &engine,
        run.id,
        &[RunStatus::Succeeded, RunStatus::Failed],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(done.status, RunStatus::Succeeded, "{:?}", done.error);
    let (report, _) = team_report_and_result(&done);
    let active = &report[report.find("## Active alerts").expect("section")
        ..report.find("## Root cause analysis").expect("section")];
    for alert in ["ServiceDown", "HighErrorRate"] {
        let row = active
            .lines()
            .find(|l| l.contains(alert))
            .unwrap_or_else(|| panic!("{alert} in {active}"));
        assert!(row.contains("**resolved** at"), "{active}");
    }
    assert_eq!(webhook_runs(&engine).await.len(), 1);

    // A wrong token: 401, nothing stored.
    let answer = reqwest::Client::new()
        .post(format!("http://{addr}{WEBHOOK}"))
        .bearer_auth(format!("aiopsam_abcd1234_{}", "B".repeat(32)))
        .json(&notification("g9", "checkout", None, &[DB_DOWN]))
        .send()
        .await
        .expect("post");
    assert_eq!(answer.status().as_u16(), 401);
    let stored = engine
        .alert_notifications(&NotificationFilter::default(), &PageRequest::first(500))
        .await
        .expect("notifications")
        .items;
    assert!(
        stored
            .iter()
            .all(|n| n.receiver == "lab" && !n.group_key.contains("g9")),
        "only Alertmanager's notifications are stored: {stored:#?}"
    );
}

/// Receivers over GraphQL: admins create them (the token only in that answer),
/// viewers list them and the notifications without tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receivers_over_graphql_show_the_token_once() {
    let Some(intake) = Intake::start(Backend::Sqlite, ApprovalMode::Wait, false, None).await else {
        return;
    };
    let admin = common::token_for(&intake.engine, "alice", aiops_engine::Role::Admin).await;
    let viewer = common::token_for(&intake.engine, "victor", aiops_engine::Role::Viewer).await;
    let api = Api::new(&intake.addr, Some(&admin));
    let created = api
        .gql(
            "mutation { createAlertmanagerReceiver(input: { name: \"staging\", approvalMode: REJECT }) \
             { token receiver { name tokenPrefix approvalMode } } }",
            json!({}),
        )
        .await;
    let token = created["data"]["createAlertmanagerReceiver"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned();
    let receiver = &created["data"]["createAlertmanagerReceiver"]["receiver"];
    assert_eq!(receiver["approvalMode"], "REJECT");
    assert!(token.starts_with(&format!(
        "aiopsam_{}_",
        receiver["tokenPrefix"].as_str().unwrap()
    )));
    // Stored only as its SHA-256; in no event either.
    use sea_orm::ConnectionTrait;
    let db = common::raw_db(&intake.db.url).await;
    let stored: Vec<(String, String)> = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT token_hash, token_prefix FROM alertmanager_receivers WHERE name = 'staging'",
        ))
        .await
        .expect("receiver row")
        .into_iter()
        .map(|r| {
            (
                r.try_get_by_index(0).unwrap(),
                r.try_get_by_index(1).unwrap(),
            )
        })
        .collect();
    use sha2::Digest;
    let hash: String = sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        stored,
        [(hash, receiver["tokenPrefix"].as_str().unwrap().to_owned())]
    );
    // The new token works at once.
    let (status, _, answer) = intake
        .post_raw(
            Some(&token),
            notification("g1", "checkout", None, &[DB_DOWN]).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{answer}");

    let viewer_api = api.with_token(Some(&viewer));
    let listed = viewer_api
        .gql(
            "{ alertmanagerReceivers { name tokenPrefix approvalMode lastUsedAt } \
               alertNotifications(first: 10) { edges { node { receiver outcome reason groupLabels \
                 routes { team outcome runId newAlerts } } } pageInfo { hasNextPage } } }",
            json!({}),
        )
        .await;
    let names: Vec<&str> = listed["data"]["alertmanagerReceivers"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"))
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["prod", "staging"]);
    let node = &listed["data"]["alertNotifications"]["edges"][0]["node"];
    assert_eq!(node["receiver"], "staging");
    assert_eq!(node["outcome"], "STARTED");
    assert_eq!(node["routes"][0]["team"], "checkout");
    assert_eq!(node["groupLabels"]["team"], "checkout");
    assert!(!listed.to_string().contains(&token), "no token in listings");
    let run: RunId = node["routes"][0]["runId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let events = intake.engine.events(run, 0, 1000).await.expect("events");
    assert!(
        !format!("{events:?}").contains(&token),
        "no token in events"
    );
    // Viewers neither create nor delete.
    let refused = viewer_api
        .gql(
            "mutation { deleteAlertmanagerReceiver(name: \"staging\") }",
            json!({}),
        )
        .await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "FORBIDDEN");
    let deleted = api
        .gql(
            "mutation { deleteAlertmanagerReceiver(name: \"staging\") }",
            json!({}),
        )
        .await;
    assert_eq!(deleted["data"]["deleteAlertmanagerReceiver"], true);
    let (status, _, _) = intake
        .post_raw(
            Some(&token),
            notification("g1", "checkout", None, &[DB_DOWN]).to_string(),
        )
        .await;
    assert_eq!(status, 401);
    // A team document's matchers are validated with their paths.
    let bad = TEAM.replace("'env!=\"staging\"'", "'env'");
    let err = intake.engine.apply_team(&bad).await.unwrap_err();
    assert!(
        err.to_string().contains("alertmanager.matchers[1]"),
        "{err}"
    );
}

fn aiops(db: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_aiops"))
        .args(args)
        .env("DATABASE_URL", db)
        .env("AIOPS_LOG", "error")
        .output()
        .unwrap()
}

/// `aiops receiver add|list|remove`: the token is printed once, works, is never
/// listed, and stops working when its receiver is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_commands() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("aiops.db").display());
    let ok = |args: &[&str]| {
        let out = aiops(&db, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (token, said) = ok(&["receiver", "add", "prod"]);
    let token = token.trim().to_owned();
    assert!(token.starts_with("aiopsam_"), "{token}");
    assert!(said.contains("receiver \"prod\" added"), "{said}");
    assert!(!said.contains(&token), "the token goes to stdout only");
    ok(&["receiver", "add", "nightly", "--approval-mode", "reject"]);

    let out = aiops(&db, &["receiver", "add", "prod"]);
    assert!(!out.status.success(), "a second receiver named prod");
    let out = aiops(
        &db,
        &["receiver", "add", "x", "--approval-mode", "sometimes"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--approval-mode") && err.contains("wait or reject"),
        "{err}"
    );

    let (list, _) = ok(&["receiver", "list"]);
    assert!(!list.contains(&token), "list shows no token: {list}");
    let lines: Vec<Value> = list
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let modes: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap(),
                l["approval_mode"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(modes, [("nightly", "REJECT"), ("prod", "WAIT")], "{list}");
    let prefix = lines[1]["token_prefix"].as_str().unwrap();
    let secret = token.strip_prefix("aiopsam_").unwrap();
    assert!(
        secret.starts_with(&format!("{prefix}_")) && prefix.len() >= 8,
        "{prefix}"
    );

    let engine = common::engine_on(&db, fast_config(), Default::default()).await;
    assert_eq!(
        engine.authenticate_receiver(&token).await.unwrap().name,
        "prod"
    );
    ok(&["receiver", "remove", "prod"]);
    assert!(matches!(
        engine.authenticate_receiver(&token).await,
        Err(aiops_engine::Error::Unauthenticated)
    ));
    let out = aiops(&db, &["receiver", "remove", "prod"]);
    assert!(!out.status.success(), "removing it twice");
    let (list, _) = ok(&["receiver", "list"]);
    assert_eq!(list.lines().count(), 1, "{list}");
}
