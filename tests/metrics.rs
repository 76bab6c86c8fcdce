//! `GET /metrics` as Prometheus sees it: a real `aiops serve` (configured through a
//! config file), real runs, a real Prometheus scraping it with the bearer token, and
//! the numbers read back through Prometheus's query API. Also: the worker's log
//! lines carry the run's and the step's span fields.

mod common;

use std::time::Duration;

use common::prometheus::Prometheus;
use common::serve::ServeProcess;
use common::{Api, Backend, TestDb};
use serde_json::{Value, json};

const TOKEN: &str = "scrape-token-0123456789";

const START: &str = "mutation($input: StartRunInput!) { startRun(input: $input) { id } }";
const RUN: &str = "query($id: UUID!) { run(id: $id) { id status } }";

async fn start(api: &Api, steps: Value) -> String {
    let data = api
        .data(START, json!({ "input": { "input": { "steps": steps } } }))
        .await;
    data["startRun"]["id"].as_str().expect("run id").to_owned()
}

async fn get_metrics(addr: &str, token: Option<&str>, accept: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("http://{addr}/metrics"));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(accept) = accept {
        req = req.header("accept", accept);
    }
    req.send().await.expect("GET /metrics")
}

/// Every sample line of the text format: `name{labels} value`, the value a number.
fn assert_samples_parse(body: &str) {
    let mut samples = 0;
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let name = series.split('{').next().unwrap_or_default();
        assert!(
            name.starts_with("aiops_")
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad metric name in {line:?}"
        );
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "bad value in {line:?}"
        );
        samples += 1;
    }
    assert!(samples > 20, "too few samples:\n{body}");
}

async fn prometheus_reads_what_the_cluster_did(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    // Settings from a file: the script workflow, the metrics token (read outside
    // clap) and JSON logs; the environment still chooses the log filter.
    let config = tempfile::tempdir().expect("config dir");
    let config_path = config.path().join("aiops.toml");
    std::fs::write(
        &config_path,
        format!("enable_script_workflow = true\nmetrics_token = \"{TOKEN}\"\nlog_json = true\n"),
    )
    .expect("write config");
    let path = config_path.to_str().expect("utf-8 path");
    let serve = ServeProcess::start_with(
        &db.url,
        &[(
            "AIOPS_LOG",
            "warn,aiops_engine::worker=info,aiops_engine::context=debug",
        )],
        &["--config", path],
        true,
    )
    .await;

    // The token is required once configured, and the format follows Accept.
    let refused = get_metrics(&serve.addr, None, None).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.headers()["www-authenticate"],
        "Bearer realm=\"metrics\""
    );
    assert_eq!(
        get_metrics(&serve.addr, Some("wrong"), None).await.status(),
        401
    );
    let classic = get_metrics(&serve.addr, Some(TOKEN), None).await;
    assert_eq!(classic.status(), 200);
    assert_eq!(
        classic.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = classic.text().await.expect("body");
    assert_samples_parse(&body);
    for family in [
        "aiops_webhook_notifications_total{outcome=\"routed\"} 0",
        "aiops_webhook_notifications_total{outcome=\"deduplicated\"} 0",
        "aiops_webhook_notifications_total{outcome=\"unrouted\"} 0",
        "aiops_schedule_fires_total{outcome=\"fired\"} 0",
        "aiops_schedule_fires_total{outcome=\"skipped\"} 0",
        "aiops_schedule_fires_total{outcome=\"missed\"} 0",
        "aiops_schedule_fires_total{outcome=\"failed\"} 0",
        "aiops_runs{status=\"QUEUED\"} 0",
        "aiops_run_queue_depth 0",
        "aiops_approvals_pending 0",
        "aiops_cluster_stats_up 1",
        "aiops_leases_lost_total 0",
    ] {
        assert!(
            body.lines().any(|l| l == family),
            "missing {family:?}:\n{body}"
        );
    }

    // Two runs that succeed (with a model call's usage), one that fails, one that
    // waits for an approval.
    let api = serve.api(Some(&serve.admin_token().await));
    let work = json!({ "kind": "work", "ms": 5, "model": "gpt-test", "provider": "fake",
                       "usage": { "input_tokens": 100, "output_tokens": 20, "cost_usd": 0.5 } });
    let ok = [
        start(&api, json!([work, { "kind": "noop" }])).await,
        start(&api, json!([work])).await,
    ];
    let failed = start(
        &api,
        json!([{ "kind": "fail", "times": 1, "permanent": true }]),
    )
    .await;
    let waiting = start(
        &api,
        json!([{ "kind": "approval", "tool": "alertmanager_silence" }]),
    )
    .await;
    for id in &ok {
        api.wait_for_run(RUN, id, &["SUCCEEDED"]).await;
    }
    api.wait_for_run(RUN, &failed, &["FAILED"]).await;
    api.wait_for_run(RUN, &waiting, &["WAITING_APPROVAL"]).await;

    let open = get_metrics(
        &serve.addr,
        Some(TOKEN),
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    )
    .await;
    assert!(
        open.headers()["content-type"]
            .to_str()
            .expect("content type")
            .starts_with("application/openmetrics-text; version=1.0.0"),
        "{:?}",
        open.headers()
    );
    let body = open.text().await.expect("body");
    assert!(body.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    for line in [
        "# TYPE aiops_step_duration_seconds histogram",
        "# UNIT aiops_step_duration_seconds seconds",
        "# TYPE aiops_run_duration_seconds histogram",
        "# TYPE aiops_llm_tokens counter",
        "# UNIT aiops_llm_cost_usd usd",
    ] {
        assert!(body.lines().any(|l| l == line), "missing {line:?}:\n{body}");
    }

    let Some(prometheus) =
        Prometheus::start_with("groups: []\n", &[&serve.addr], None, Some(TOKEN)).await
    else {
        return;
    };
    // Prometheus's own parser accepted the exposition, with the token.
    prometheus.wait_for_healthy_targets().await;
    // A filter expression has samples only once the value is the expected one (the
    // cluster-wide values are shared for up to 5 s, so they may lag a scrape).
    for promql in [
        "aiops_runs{status=\"SUCCEEDED\"} == 2",
        "aiops_runs{status=\"FAILED\"} == 1",
        "aiops_runs{status=\"WAITING_APPROVAL\"} == 1",
        "aiops_runs{status=\"QUEUED\"} == 0",
        "aiops_run_queue_depth == 0",
        "aiops_approvals_pending == 1",
        "aiops_llm_tokens_total{provider=\"fake\",model=\"gpt-test\",direction=\"input\"} == 200",
        "aiops_llm_tokens_total{provider=\"fake\",model=\"gpt-test\",direction=\"output\"} == 40",
        "aiops_llm_cost_usd_total{provider=\"fake\",model=\"gpt-test\"} == 1",
        "aiops_step_duration_seconds_count{workflow=\"script\",kind=\"work\",status=\"SUCCEEDED\"} == 2",
        "aiops_step_duration_seconds_count{workflow=\"script\",kind=\"fail\",status=\"FAILED\"} == 1",
        "aiops_run_duration_seconds_count{workflow=\"script\",status=\"SUCCEEDED\"} == 2",
        "aiops_run_duration_seconds_count{workflow=\"script\",status=\"FAILED\"} == 1",
        "aiops_webhook_notifications_total{outcome=\"unrouted\"} == 0",
        "aiops_schedule_fires_total{outcome=\"missed\"} == 0",
        "aiops_build_info == 1",
    ] {
        prometheus.wait_for_samples(promql).await;
    }

    // A cancel is a terminal state reached by the API, not a worker: timed too.
    api.data(
        "mutation($id: UUID!) { cancelRun(id: $id) { status } }",
        json!({ "id": waiting }),
    )
    .await;
    for promql in [
        "aiops_run_duration_seconds_count{workflow=\"script\",status=\"CANCELLED\"} == 1",
        "aiops_approvals_pending == 0",
        "aiops_runs{status=\"CANCELLED\"} == 1",
    ] {
        prometheus.wait_for_samples(promql).await;
    }

    // Log lines inside a step carry the run's span (run_id, workflow, attempt) and
    // the step's (step_key).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let found = loop {
        let log = serve.log();
        let found = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|line| {
                let spans = line["spans"].as_array().cloned().unwrap_or_default();
                line["fields"]["message"] == "step attempt ended"
                    && spans
                        .iter()
                        .any(|s| s["name"] == "run" && s["run_id"] == ok[0].as_str())
                    && line["span"]["step_key"] == "s0"
            });
        if let Some(found) = found {
            break found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no step log line of run {} with its span fields:\n{log}",
            ok[0]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let run_span = found["spans"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "run"))
        .cloned()
        .expect("run span");
    assert_eq!(run_span["workflow"], "script", "{found}");
    assert_eq!(run_span["attempt"], 1, "{found}");
}

both_backends!(
    metrics_scraped_by_prometheus,
    prometheus_reads_what_the_cluster_did
);
