//! Rule-based investigations of real incidents: a real Prometheus scrapes values
//! each test chooses and fires the alerts of `tests/common/incident.rs`; a team
//! investigates them with no LLM, and the ranked root causes, the cited evidence,
//! the report's sections and the structured result are checked.

mod common;

use aiops_engine::agents::TeamRun;
use aiops_engine::{EventKind, RunStatus};
use common::Backend;
use common::incident::{Incident, report_and_result, roots};
use serde_json::json;

/// db ← api ← web, every node routed by its `service` label.
const CASCADE_TEAM: &str = r#"
name: shop
supervisor: { model: builtin:rules }
nodes:
  - id: db
    kind: postgres
    match: { service: db }
    agents: [{ id: metrics, tools: [prometheus_query_range, prometheus_query] }]
  - id: api
    kind: service
    depends_on: [db]
    match: { service: api }
    agents: [{ id: metrics, tools: [prometheus_query_range] }]
  - id: web
    kind: service
    depends_on: [api]
    match: { service: web }
    agents: [{ id: metrics, tools: [prometheus_query_range] }]
"#;

fn up(m: &common::prometheus::MetricsEndpoint, service: &str, value: f64) {
    m.set("svc_up", &[("service", service)], value);
}

fn errors(m: &common::prometheus::MetricsEndpoint, service: &str, value: f64) {
    m.set("svc_errors", &[("service", service)], value);
}

async fn cascade(backend: Backend) {
    let Some(incident) = Incident::start(backend, false, |m| {
        up(m, "db", 0.0);
        errors(m, "api", 40.0);
        errors(m, "web", 12.0);
        up(m, "api", 1.0);
        up(m, "web", 1.0);
    })
    .await
    else {
        return;
    };
    incident
        .wait_for(&["ServiceDown", "HighErrorRate"], "firing")
        .await;
    // Both HighErrorRate alerts (api and web) must be firing before the run looks.
    incident.wait_for_services(&["db", "api", "web"]).await;
    let run = incident.investigate(CASCADE_TEAM).await;
    let (report, result) = report_and_result(&run);

    assert_eq!(
        roots(&result),
        vec![(
            "db".to_owned(),
            "ServiceDown".to_owned(),
            vec!["api".to_owned(), "web".to_owned()]
        )],
        "{result:#}"
    );
    let root = &result["root_causes"][0];
    let confidence = root["confidence"].as_f64().expect("confidence");
    assert!((0.7..=0.95).contains(&confidence), "{confidence}");
    assert!(
        root["reason"]
            .as_str()
            .expect("reason")
            .contains("2 failing nodes depend on it (api, web)"),
        "{root:#}"
    );
    // Cited: the rule's expression over the window with a graph link, and the alert.
    let evidence = root["evidence"].as_array().expect("evidence");
    let metric = evidence
        .iter()
        .find(|e| e["kind"] == "metric")
        .unwrap_or_else(|| panic!("no metric evidence: {evidence:#?}"));
    assert_eq!(metric["query"], "svc_up == 0");
    assert_eq!(metric["confirms"], true, "{metric:#}");
    assert!(metric["start"].is_string() && metric["end"].is_string());
    let link = metric["url"].as_str().expect("graph link");
    assert!(
        link.starts_with(&format!(
            "{}/graph?g0.expr=svc_up+%3D%3D+0",
            incident.prometheus.url()
        )),
        "{link}"
    );
    assert!(
        evidence
            .iter()
            .any(|e| e["kind"] == "alert" && e["starts_at"].is_string()),
        "{evidence:#?}"
    );
    assert!(report.contains("`svc_up == 0` from "), "{report}");
    assert!(report.contains("[graph]("), "{report}");
    assert!(
        report.contains("- Alert `ServiceDown{instance=")
            && report.contains("service=\"db\", severity=\"critical\"}` firing since 20"),
        "{report}"
    );
    assert!(report.contains("Restore db first"), "{report}");
    assert!(
        report.contains("https://runbooks.example/service-down"),
        "{report}"
    );
    assert_eq!(result["severity"], "critical");
    assert!(
        result["summary"]
            .as_str()
            .expect("summary")
            .contains("The most likely root cause is db"),
        "{result:#}"
    );

    // The run pinned the team version; tool calls and findings are in its log.
    assert!(run.team_version_id.is_some());
    let events = incident
        .engine
        .events(run.id, 0, 10_000)
        .await
        .expect("events");
    let count = |kind| events.iter().filter(|e| e.kind == kind).count();
    assert!(count(EventKind::ToolCall) >= 4, "{events:#?}");
    assert_eq!(count(EventKind::ToolCall), count(EventKind::ToolResult));
    assert_eq!(count(EventKind::Finding), 3, "one finding per node");
    let steps = incident.engine.steps(run.id).await.expect("steps");
    let keys: Vec<&str> = steps.iter().map(|s| s.key.as_str()).collect();
    assert!(keys.contains(&"supervisor/call/alerts"), "{keys:?}");
    assert!(
        keys.contains(&"node/db/agent/metrics/iter/0/call/rule-0"),
        "{keys:?}"
    );
    // Dependencies first: db's finding is written before api's, api's before web's.
    let finding_of = |node: &str| {
        events
            .iter()
            .position(|e| e.kind == EventKind::Finding && e.payload["node"] == node)
            .unwrap_or_else(|| panic!("no finding of {node}"))
    };
    assert!(finding_of("db") < finding_of("api") && finding_of("api") < finding_of("web"));
    let api_finding = &events[finding_of("api")].payload;
    assert_eq!(
        api_finding["failing_upstream"],
        json!(["db"]),
        "{api_finding}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cascade_has_the_database_as_root_postgres() {
    cascade(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cascade_has_the_database_as_root_sqlite() {
    cascade(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_independent_incidents_give_two_roots() {
    let Some(incident) = Incident::start(Backend::Postgres, false, |m| {
        up(m, "orders-db", 0.0);
        errors(m, "orders-api", 9.0);
        up(m, "search-index", 0.0);
        errors(m, "search-api", 30.0);
    })
    .await
    else {
        return;
    };
    incident
        .wait_for(&["ServiceDown", "HighErrorRate"], "firing")
        .await;
    incident
        .wait_for_services(&["orders-db", "orders-api", "search-index", "search-api"])
        .await;
    let team = r#"
name: two-stacks
supervisor: { model: builtin:rules }
nodes:
  - { id: orders-db, kind: postgres, match: { service: orders-db }, agents: [{ id: a }] }
  - { id: orders-api, kind: service, depends_on: [orders-db], match: { service: orders-api }, agents: [{ id: a }] }
  - { id: search-index, kind: elasticsearch, match: { service: search-index }, agents: [{ id: a }] }
  - { id: search-api, kind: service, depends_on: [search-index], match: { service: search-api }, agents: [{ id: a }] }
"#;
    let run = incident.investigate(team).await;
    let (report, result) = report_and_result(&run);
    let mut got = roots(&result);
    got.sort();
    assert_eq!(
        got,
        vec![
            (
                "orders-db".into(),
                "ServiceDown".into(),
                vec!["orders-api".into()]
            ),
            (
                "search-index".into(),
                "ServiceDown".into(),
                vec!["search-api".into()]
            ),
        ],
        "{result:#}"
    );
    assert!(report.contains("2 independent root causes"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shared_dependency_ranks_above_a_lone_failure() {
    let Some(incident) = Incident::start(Backend::Postgres, false, |m| {
        up(m, "db", 0.0);
        errors(m, "api", 20.0);
        errors(m, "batch", 20.0);
        errors(m, "reports", 20.0);
        // A lone, more severe failure elsewhere.
        up(m, "cache", 0.0);
    })
    .await
    else {
        return;
    };
    incident
        .wait_for(&["ServiceDown", "HighErrorRate"], "firing")
        .await;
    incident
        .wait_for_services(&["db", "api", "batch", "reports", "cache"])
        .await;
    let team = r#"
name: shared
supervisor: { model: builtin:rules }
nodes:
  - { id: db, kind: postgres, match: { service: db }, agents: [{ id: a }] }
  - { id: cache, kind: redis, match: { service: cache }, agents: [{ id: a }] }
  - { id: api, kind: service, depends_on: [db], match: { service: api }, agents: [{ id: a }] }
  - { id: batch, kind: service, depends_on: [db], match: { service: batch }, agents: [{ id: a }] }
  - { id: reports, kind: service, depends_on: [db, cache], match: { service: reports }, agents: [{ id: a }] }
"#;
    let run = incident.investigate(team).await;
    let (_, result) = report_and_result(&run);
    let got = roots(&result);
    assert_eq!(got.len(), 2, "{result:#}");
    assert_eq!(got[0].0, "db");
    assert_eq!(got[0].2, vec!["api", "batch", "reports"]);
    assert_eq!(got[1].0, "cache");
    assert_eq!(got[1].2, vec!["reports"]);
    let c = |i: usize| {
        result["root_causes"][i]["confidence"]
            .as_f64()
            .expect("confidence")
    };
    assert!(c(0) > c(1), "{result:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leaf_symptom_over_healthy_dependencies_is_its_own_root() {
    let Some(incident) = Incident::start(Backend::Postgres, false, |m| {
        up(m, "db", 1.0);
        errors(m, "api", 0.0);
        errors(m, "web", 50.0);
    })
    .await
    else {
        return;
    };
    incident.wait_for(&["HighErrorRate"], "firing").await;
    let run = incident.investigate(CASCADE_TEAM).await;
    let (report, result) = report_and_result(&run);
    assert_eq!(
        roots(&result),
        vec![("web".to_owned(), "HighErrorRate".to_owned(), vec![])],
        "{result:#}"
    );
    assert!(
        result["root_causes"][0]["reason"]
            .as_str()
            .expect("reason")
            .contains("none of the nodes it depends on is failing"),
        "{result:#}"
    );
    // Its dependencies were looked at and are reported healthy.
    assert!(report.contains("**Also checked**"), "{report}");
    assert!(
        report.contains("`db`: db (postgres) shows no firing alert"),
        "{report}"
    );
    assert!(
        report.contains("`api`: api (service) shows no firing alert"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_alert_matching_no_node_is_reported_unmatched() {
    let Some(incident) = Incident::start(Backend::Sqlite, false, |m| {
        m.set("cert_days_left", &[("service", "billing-gateway")], 3.0);
    })
    .await
    else {
        return;
    };
    incident.wait_for(&["CertificateExpiring"], "firing").await;
    let run = incident.investigate(CASCADE_TEAM).await;
    let (report, result) = report_and_result(&run);
    assert_eq!(roots(&result), vec![], "never invents a node: {result:#}");
    assert_eq!(
        result["unmatched_alerts"][0]["alert"],
        "CertificateExpiring"
    );
    assert_eq!(
        result["unmatched_alerts"][0]["labels"]["service"],
        "billing-gateway"
    );
    assert!(report.contains("**Unmatched alerts**"), "{report}");
    assert!(report.contains("(matches no node)"), "{report}");
    assert!(
        result["summary"]
            .as_str()
            .expect("summary")
            .contains("none of which concerns a node"),
        "{result:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pending_alert_is_context_never_a_cause() {
    let Some(incident) = Incident::start(Backend::Postgres, false, |m| {
        // The database is slow but its alert is only pending; the API fails.
        m.set("svc_latency_seconds", &[("service", "db")], 5.0);
        up(m, "db", 1.0);
        errors(m, "api", 25.0);
    })
    .await
    else {
        return;
    };
    incident.wait_for(&["SlowResponses"], "pending").await;
    incident.wait_for(&["HighErrorRate"], "firing").await;
    let run = incident.investigate(CASCADE_TEAM).await;
    let (report, result) = report_and_result(&run);
    assert_eq!(
        roots(&result),
        vec![("api".to_owned(), "HighErrorRate".to_owned(), vec![])],
        "{result:#}"
    );
    assert!(report.contains("pending (not a cause)"), "{report}");
    assert!(
        report.contains("not firing: SlowResponses (pending)"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn explicit_alerts_are_investigated_instead_of_the_firing_ones() {
    let Some(incident) = Incident::start(Backend::Sqlite, false, |m| {
        up(m, "db", 1.0);
    })
    .await
    else {
        return;
    };
    incident.prometheus.wait_for_samples("svc_up").await;
    // Alertmanager's webhook shape, as a receiver would forward it.
    let alerts = json!({ "version": "4", "status": "firing", "alerts": [
        { "status": "firing", "labels": { "alertname": "HighErrorRate", "service": "web", "severity": "warning" },
          "startsAt": "2026-11-30T10:00:00Z", "annotations": {} },
        { "status": "resolved", "labels": { "alertname": "ServiceDown", "service": "db" },
          "startsAt": "2026-11-30T09:00:00Z" }
    ]});
    let mut req = TeamRun::new("shop");
    req.alerts = Some(alerts);
    req.task = Some("Why is checkout failing?".into());
    let run = incident.start_run(CASCADE_TEAM, req).await;
    let run = incident.finish(run.id).await;
    let (report, result) = report_and_result(&run);
    assert_eq!(
        roots(&result),
        vec![("web".to_owned(), "HighErrorRate".to_owned(), vec![])]
    );
    assert!(report.contains("resolved (not a cause)"), "{report}");
    assert!(
        report.contains("Task: Why is checkout failing?"),
        "{report}"
    );
    let steps = incident.engine.steps(run.id).await.expect("steps");
    assert!(
        steps.iter().all(|s| s.key != "supervisor/call/alerts"),
        "given alerts are not fetched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_alerts_are_refused_before_a_run_is_stored() {
    let Some(incident) = Incident::start(Backend::Sqlite, false, |_| {}).await else {
        return;
    };
    incident
        .engine
        .apply_team(CASCADE_TEAM)
        .await
        .expect("apply");
    let mut req = TeamRun::new("shop");
    req.alerts = Some(json!([{ "labels": { "alertname": "A" } }, { "labels": { "service": 5 } }]));
    let err = aiops_engine::agents::start_team_run(&incident.engine, req)
        .await
        .expect_err("bad alert");
    assert!(
        err.to_string()
            .contains("alerts[1].labels.service: must be a string"),
        "{err}"
    );
    let mut req = TeamRun::new("shop");
    req.version = Some(7);
    let err = aiops_engine::agents::start_team_run(&incident.engine, req)
        .await
        .expect_err("no version 7");
    assert!(err.to_string().contains("shop@7"), "{err}");
    let err = aiops_engine::agents::start_team_run(&incident.engine, TeamRun::new("nope"))
        .await
        .expect_err("no team");
    assert!(err.to_string().contains("nope"), "{err}");
    let runs = incident
        .engine
        .list_runs(&Default::default(), &aiops_engine::PageRequest::first(10))
        .await
        .expect("runs");
    assert!(runs.items.is_empty(), "nothing stored");
}

/// The README's three commands, as real processes: `serve` pointed at the real
/// Prometheus, `team apply` of the example team, `run --team … --follow` printing
/// progress, the report and the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_readme_path_serve_apply_run_follow() {
    let metrics = common::prometheus::MetricsEndpoint::start().await;
    metrics.set("svc_up", &[("service", "payments-db")], 0.0);
    metrics.set("svc_errors", &[("service", "payments-api")], 17.0);
    let Some(prometheus) =
        common::prometheus::Prometheus::start(common::incident::RULES, &[metrics.addr()], None)
            .await
    else {
        return;
    };
    prometheus.wait_for_alert("ServiceDown", "firing").await;
    prometheus.wait_for_alert("HighErrorRate", "firing").await;
    let dir = tempfile::tempdir().expect("dir");
    let db = format!("sqlite://{}", dir.path().join("aiops.db").display());
    let _serve =
        common::serve::ServeProcess::start(&db, &[("AIOPS_PROMETHEUS_URL", prometheus.url())])
            .await;
    let cli = move |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_aiops"))
            .args(args)
            .env("DATABASE_URL", &db)
            .env("AIOPS_LOG", "warn")
            .output()
            .expect("run aiops");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = cli(&["team", "apply", "-f", "examples/checkout.yaml"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) =
        tokio::task::spawn_blocking(move || cli(&["run", "--team", "checkout", "--follow"]))
            .await
            .expect("join");
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains("payments-db/metrics: prometheus_query_range"),
        "{out}"
    );
    assert!(
        out.contains("node payments-db: payments-db (postgres) is failing: ServiceDown"),
        "{out}"
    );
    // web is neither alerting nor a dependency of a failing node: not investigated.
    assert!(!out.contains("node web:"), "{out}");
    // Progress comes as it happens: dependencies first, each call with its result.
    let db_done = out.find("node payments-db:").expect("db finding");
    let api_call = out
        .find("payments-api/metrics: prometheus_query_range")
        .expect("api call");
    assert!(db_done < api_call, "dependencies first: {out}");
    let progress = &out[..out.find("run succeeded").expect("run succeeded")];
    let calls = progress
        .lines()
        .filter(|l| l.starts_with("  ") && l.contains(": "))
        .count();
    let results = progress.lines().filter(|l| l.ends_with(" ok")).count();
    assert_eq!((calls, results), (6, 6), "each call and its result: {out}");
    assert!(
        out.contains("## Root cause analysis") && out.contains("### 1. `payments-db`"),
        "{out}"
    );
    let last: serde_json::Value =
        serde_json::from_str(out.lines().last().expect("last line")).expect("JSON last line");
    assert_eq!(last["status"], "SUCCEEDED", "{last}");
    assert_eq!(last["result"]["root_causes"][0]["node"], "payments-db");
    assert_eq!(
        last["result"]["root_causes"][0]["symptoms"][0]["node"],
        "payments-api"
    );
}

/// `startRun` with a team over GraphQL: the run pins the version, and shows its
/// report, result and team version; mistakes are VALIDATION_FAILED or NOT_FOUND.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn team_runs_over_graphql() {
    let Some(incident) = Incident::start(Backend::Sqlite, false, |m| {
        up(m, "db", 1.0);
    })
    .await
    else {
        return;
    };
    incident.engine.apply_team(CASCADE_TEAM).await.expect("v1");
    let v2 = CASCADE_TEAM.replace("kind: postgres", "kind: mysql");
    incident.engine.apply_team(&v2).await.expect("v2");
    let addr = common::serve_api(&incident.engine, incident.shutdown.child_token()).await;
    let token = common::token_for(&incident.engine, "oncall", aiops_engine::Role::Operator).await;
    let api = common::Api::new(&addr, Some(&token));
    let start =
        "mutation($input: StartRunInput!) { startRun(input: $input) { id workflow teamVersion } }";
    let alerts = json!({ "alerts": [{ "labels": { "alertname": "HighErrorRate", "service": "api", "severity": "warning" }, "startsAt": "2026-12-01T00:00:00Z" }] });
    let answer = api
        .gql(
            start,
            json!({ "input": { "team": "shop", "teamVersion": 1, "alerts": alerts, "task": "why?" } }),
        )
        .await;
    let run = &answer["data"]["startRun"];
    assert_eq!(run["workflow"], "investigation", "{answer}");
    assert_eq!(run["teamVersion"], 1, "{answer}");
    let id = run["id"].as_str().expect("id").to_owned();
    incident
        .finish(aiops_engine::RunId(id.parse().expect("uuid")))
        .await;
    let answer = api
        .gql(
            "query($id: UUID!) { run(id: $id) { status teamVersion team { name version } report result } }",
            json!({ "id": id }),
        )
        .await;
    let run = &answer["data"]["run"];
    assert_eq!(run["status"], "SUCCEEDED", "{answer}");
    assert_eq!(run["teamVersion"], 1);
    assert_eq!(run["team"]["version"], 1);
    let report = run["report"].as_str().expect("report");
    assert!(
        report.starts_with("# Incident report: shop (version 1)"),
        "{report}"
    );
    assert!(
        report.contains("`db`: db (postgres)"),
        "pinned version 1: {report}"
    );
    assert_eq!(run["result"]["root_causes"][0]["node"], "api");

    for (input, code, says) in [
        (json!({ "team": "nope" }), "NOT_FOUND", "nope"),
        (
            json!({ "team": "shop", "teamVersion": 9 }),
            "NOT_FOUND",
            "shop@9",
        ),
        (
            json!({ "team": "shop", "alerts": [{ "labels": "x" }] }),
            "VALIDATION_FAILED",
            "alerts[0].labels",
        ),
        (
            json!({ "team": "shop", "input": {} }),
            "VALIDATION_FAILED",
            "not `input`",
        ),
        (
            json!({ "workflow": "script", "task": "x" }),
            "VALIDATION_FAILED",
            "name the team",
        ),
    ] {
        let answer = api.gql(start, json!({ "input": input })).await;
        let error = &answer["errors"][0];
        assert_eq!(error["extensions"]["code"], code, "{input}: {answer}");
        assert!(
            error["message"].as_str().expect("message").contains(says),
            "{input}: {answer}"
        );
    }
}

/// The result is checked against the team's own `output_schema`: a schema it meets
/// passes, one it breaks fails the run with every problem and where.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_result_is_checked_against_the_teams_output_schema() {
    let Some(incident) = Incident::start(Backend::Sqlite, false, |m| up(m, "db", 1.0)).await else {
        return;
    };
    let alerts = json!([{ "labels": { "alertname": "HighErrorRate", "service": "api" } }]);
    let with_schema = |name: &str, schema: &str| {
        CASCADE_TEAM.replace(
            "name: shop",
            &format!("name: {name}\noutput_schema: {schema}"),
        )
    };
    let met = with_schema(
        "strict-ok",
        r#"{ type: object, required: [summary, root_causes], properties: { root_causes: { type: array, minItems: 1 } } }"#,
    );
    let mut req = TeamRun::new("strict-ok");
    req.alerts = Some(alerts.clone());
    let run = incident.start_run(&met, req).await;
    let run = incident.finish(run.id).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);

    let broken = with_schema(
        "strict-bad",
        r#"{ type: object, required: [ticket], properties: { severity: { enum: [sev1, sev2] } } }"#,
    );
    let mut req = TeamRun::new("strict-bad");
    req.alerts = Some(alerts);
    let run = incident.start_run(&broken, req).await;
    let run = incident.finish(run.id).await;
    assert_eq!(run.status, RunStatus::Failed);
    let error = run.error.expect("error");
    assert!(
        error.starts_with("the result does not match the team's output_schema: "),
        "{error}"
    );
    assert!(
        error.contains("\"ticket\" is a required property"),
        "{error}"
    );
    assert!(error.contains("/severity: "), "{error}");
}

/// A real incident fires many alerts at once: 150 of them (far more than a model's
/// 16 KiB tool result holds) are all read, routed and cited.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_of_alerts_is_read_whole() {
    let Some(incident) = Incident::start(Backend::Sqlite, false, |m| {
        up(m, "db", 1.0);
        for i in 0..150 {
            m.set(
                "svc_errors",
                &[("service", "api"), ("pod", &format!("api-{i:03}"))],
                50.0,
            );
        }
    })
    .await
    else {
        return;
    };
    incident
        .prometheus
        .wait_for_samples("count(ALERTS{alertstate=\"firing\",service=\"api\"}) == 150")
        .await;
    let run = incident.investigate(CASCADE_TEAM).await;
    let (report, result) = report_and_result(&run);
    assert_eq!(
        roots(&result),
        vec![("api".to_owned(), "HighErrorRate".to_owned(), vec![])]
    );
    assert_eq!(result["root_causes"][0]["labels"]["service"], "api");
    assert_eq!(report.matches("| firing | api |").count(), 150, "{report}");
    let metric = result["root_causes"][0]["evidence"]
        .as_array()
        .expect("evidence")
        .iter()
        .find(|e| e["kind"] == "metric")
        .cloned()
        .expect("metric evidence");
    assert!(
        metric["summary"]
            .as_str()
            .expect("summary")
            .contains("held for 150 series"),
        "{metric:#}"
    );
}
