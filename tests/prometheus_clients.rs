//! The Prometheus and Alertmanager clients against the real servers
//! (tests/common/prometheus.rs): what they return, and how their failures are
//! classified.

mod common;

use std::time::Duration;

use aiops_engine::tools::{
    AlertStates, AlertmanagerClient, Auth, ErrorKind, Matcher, PrometheusClient, Silence,
};
use chrono::Utc;
use common::prometheus::{Alertmanager, MetricsEndpoint, Prometheus};
use serde_json::Value;

const RULES: &str = r#"
groups:
  - name: databases
    rules:
      - alert: DatabaseDown
        expr: db_up == 0
        for: 1s
        labels:
          severity: critical
"#;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A metrics endpoint serving `db_up{service="db"} 0` and `db_up{service="cache"} 1`,
/// and Prometheus scraping it with the `DatabaseDown` rule (and Alertmanager when
/// asked). `None`: the binaries are missing outside CI.
async fn servers(with_am: bool) -> Option<(MetricsEndpoint, Option<Alertmanager>, Prometheus)> {
    let metrics = MetricsEndpoint::start().await;
    metrics.set("db_up", &[("service", "db")], 0.0);
    metrics.set("db_up", &[("service", "cache")], 1.0);
    let am = match with_am {
        true => Some(Alertmanager::start().await?),
        false => None,
    };
    let prom = Prometheus::start(RULES, &[metrics.addr()], am.as_ref()).await?;
    prom.wait_for_samples("db_up").await;
    Some((metrics, am, prom))
}

/// A loopback URL where nothing listens.
fn nobody_listens() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_return_what_was_scraped() {
    let Some((_metrics, _, prom)) = servers(false).await else {
        return;
    };
    let client = PrometheusClient::new(prom.url(), None, TIMEOUT).expect("client");

    let data = client
        .query("db_up{service=\"db\"}", None)
        .await
        .expect("query");
    assert_eq!(data["resultType"], "vector");
    let result = data["result"].as_array().expect("result");
    assert_eq!(result.len(), 1, "{data}");
    assert_eq!(result[0]["metric"]["service"], "db");
    assert_eq!(result[0]["value"][1], "0");

    let data = client
        .query("sum(db_up)", Some(Utc::now()))
        .await
        .expect("query at a time");
    assert_eq!(data["result"][0]["value"][1], "1");

    let end = Utc::now();
    let data = client
        .query_range(
            "db_up",
            end - chrono::Duration::minutes(1),
            end,
            Duration::from_secs(1),
        )
        .await
        .expect("query_range");
    assert_eq!(data["resultType"], "matrix");
    let series = data["result"].as_array().expect("result");
    assert_eq!(series.len(), 2, "{data}");
    for s in series {
        let values = s["values"].as_array().expect("values");
        assert!(!values.is_empty(), "{s}");
        let expected = if s["metric"]["service"] == "db" {
            "0"
        } else {
            "1"
        };
        assert!(values.iter().all(|v| v[1] == expected), "{s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_promql_is_permanent_in_prometheus_words() {
    let Some((_metrics, _, prom)) = servers(false).await else {
        return;
    };
    let client = PrometheusClient::new(prom.url(), None, TIMEOUT).expect("client");

    let error = client.query("sum(", None).await.expect_err("bad PromQL");
    assert_eq!(error.kind, ErrorKind::Permanent, "{error}");
    assert!(error.message.contains("parse error"), "{error}");
    assert!(error.message.contains("bad_data"), "{error}");
    assert!(error.message.ends_with("query: sum("), "{error}");

    let end = Utc::now();
    let error = client
        .query_range(
            "rate(db_up)",
            end - chrono::Duration::minutes(5),
            end,
            Duration::from_secs(15),
        )
        .await
        .expect_err("rate of a gauge without range");
    assert_eq!(error.kind, ErrorKind::Permanent, "{error}");
    assert!(error.message.contains("rate(db_up)"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_rules_and_targets_show_the_test_setup() {
    let Some((_metrics, _, prom)) = servers(false).await else {
        return;
    };
    prom.wait_for_alert("DatabaseDown", "firing").await;
    let client = PrometheusClient::new(prom.url(), None, TIMEOUT).expect("client");

    let alerts = client.alerts().await.expect("alerts");
    let alerts = alerts["alerts"].as_array().expect("alerts");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["labels"]["alertname"], "DatabaseDown");
    assert_eq!(alerts[0]["labels"]["service"], "db");
    assert_eq!(alerts[0]["state"], "firing");

    let rules = client.rules().await.expect("rules");
    let group = &rules["groups"][0];
    assert_eq!(group["name"], "databases", "{rules}");
    assert_eq!(group["rules"][0]["name"], "DatabaseDown");
    assert_eq!(group["rules"][0]["query"], "db_up == 0");
    assert_eq!(group["rules"][0]["state"], "firing");

    let targets = client.targets().await.expect("targets");
    let active = targets["activeTargets"].as_array().expect("active targets");
    assert_eq!(active.len(), 1, "{targets}");
    assert_eq!(active[0]["labels"]["job"], "test");
    assert_eq!(active[0]["health"], "up");
}

#[tokio::test]
async fn an_unreachable_prometheus_is_retryable_and_names_no_credentials() {
    let url = nobody_listens().replace("http://", "http://ops:hunter2@");
    let client = PrometheusClient::new(&url, None, TIMEOUT).expect("client");
    let error = client.query("up", None).await.expect_err("nobody listens");
    assert_eq!(
        error.kind,
        ErrorKind::Retryable { retry_after: None },
        "{error}"
    );
    assert!(error.message.contains("Connection refused"), "{error}");
    assert!(!error.message.contains("hunter2"), "{error}");
    assert!(error.message.ends_with("query: up"), "{error}");

    let client = PrometheusClient::new(
        &nobody_listens(),
        Some(Auth::Bearer("tok3n".into())),
        TIMEOUT,
    )
    .expect("client");
    for error in [
        client.alerts().await.expect_err("alerts"),
        client.rules().await.expect_err("rules"),
    ] {
        assert!(error.is_retryable(), "{error}");
        assert!(!error.message.contains("tok3n"), "{error}");
    }
}

#[tokio::test]
async fn too_many_points_are_refused_before_sending() {
    // Nobody listens: an error other than "unreachable" was decided before sending.
    let client = PrometheusClient::new(&nobody_listens(), None, TIMEOUT).expect("client");
    let end = Utc::now();
    let error = client
        .query_range(
            "up",
            end - chrono::Duration::days(1),
            end,
            Duration::from_secs(1),
        )
        .await
        .expect_err("86400 points");
    assert_eq!(error.kind, ErrorKind::Permanent, "{error}");
    assert!(error.message.contains("86400 points"), "{error}");
    assert!(error.message.contains("query: up"), "{error}");
}

/// Polls the Alertmanager client until `check` holds for the listed alerts.
async fn until_alerts(
    am: &AlertmanagerClient,
    filter: &[String],
    states: AlertStates,
    check: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let alerts = am.alerts(filter, states).await.expect("alerts");
        let alerts = alerts.as_array().expect("array").clone();
        if check(&alerts) {
            return alerts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met; last alerts: {alerts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_alerts_and_the_life_of_a_silence() {
    let Some((_metrics, Some(am), _prom)) = servers(true).await else {
        return;
    };
    am.wait_for_alert("DatabaseDown").await;
    let client = AlertmanagerClient::new(am.url(), None, TIMEOUT).expect("client");
    let database_down = vec!["alertname=\"DatabaseDown\"".to_owned()];

    let alerts = client
        .alerts(&database_down, AlertStates::default())
        .await
        .expect("alerts");
    assert_eq!(alerts.as_array().map(Vec::len), Some(1), "{alerts}");
    assert_eq!(alerts[0]["labels"]["service"], "db");
    assert_eq!(alerts[0]["status"]["state"], "active");
    let none = client
        .alerts(
            &["alertname=\"NoSuchAlert\"".to_owned()],
            AlertStates::default(),
        )
        .await
        .expect("alerts");
    assert_eq!(none, serde_json::json!([]));

    let now = Utc::now();
    let silence = Silence {
        matchers: vec![Matcher::equal("alertname", "DatabaseDown")],
        starts_at: now,
        ends_at: now + chrono::Duration::hours(1),
        created_by: "aiops".into(),
        comment: "[aiops run=test step=silence]".into(),
    };
    let id = client
        .create_silence(&silence)
        .await
        .expect("create silence");

    let silences = client.silences(&database_down).await.expect("silences");
    let found = silences
        .as_array()
        .expect("array")
        .iter()
        .find(|s| s["id"] == id.as_str())
        .unwrap_or_else(|| panic!("silence {id} not in {silences}"));
    assert_eq!(found["status"]["state"], "active");
    assert_eq!(found["comment"], "[aiops run=test step=silence]");
    let others = client
        .silences(&["alertname=\"Other\"".to_owned()])
        .await
        .expect("silences");
    assert_eq!(others, serde_json::json!([]));

    // The silenced alert leaves the unsilenced list and shows who silenced it.
    let unsilenced = AlertStates {
        silenced: false,
        ..AlertStates::default()
    };
    until_alerts(&client, &database_down, unsilenced, <[Value]>::is_empty).await;
    let alerts = client
        .alerts(&database_down, AlertStates::default())
        .await
        .expect("alerts");
    assert_eq!(alerts[0]["status"]["state"], "suppressed", "{alerts}");
    assert_eq!(
        alerts[0]["status"]["silencedBy"][0],
        id.as_str(),
        "{alerts}"
    );

    client.expire_silence(&id).await.expect("expire");
    let silences = client.silences(&database_down).await.expect("silences");
    let found = silences
        .as_array()
        .expect("array")
        .iter()
        .find(|s| s["id"] == id.as_str())
        .expect("expired silence still listed");
    assert_eq!(found["status"]["state"], "expired");
    client
        .expire_silence(&id)
        .await
        .expect("expiring twice is harmless");
    until_alerts(&client, &database_down, unsilenced, |a| a.len() == 1).await;

    let error = client
        .expire_silence("00000000-0000-0000-0000-000000000000")
        .await
        .expect_err("unknown silence");
    assert_eq!(error.kind, ErrorKind::Permanent, "{error}");

    let invalid = Silence {
        matchers: vec![],
        ..silence
    };
    let error = client
        .create_silence(&invalid)
        .await
        .expect_err("no matchers");
    assert_eq!(error.kind, ErrorKind::Permanent, "{error}");
}

#[tokio::test]
async fn an_unreachable_alertmanager_is_retryable() {
    let client = AlertmanagerClient::new(&nobody_listens(), None, TIMEOUT).expect("client");
    let error = client
        .alerts(&[], AlertStates::default())
        .await
        .expect_err("nobody listens");
    assert!(error.is_retryable(), "{error}");
}

/// A team that names no source reaches the environment's default source through the
/// engine, and a source without an Alertmanager says so instead of failing oddly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_source_of_the_environment_reaches_prometheus() {
    let Some((_metrics, _, prom)) = servers(false).await else {
        return;
    };
    let Some(db) = common::TestDb::create(common::Backend::Sqlite).await else {
        return;
    };
    aiops_engine::database::migrate(&db.url, "aiops test")
        .await
        .expect("migrate");
    let engine = aiops_engine::Engine::connect(
        &db.url,
        aiops_engine::EngineOptions {
            default_source: aiops_engine::DefaultAlertSource::new(
                Some(prom.url().to_owned()),
                None,
            )
            .expect("valid URL"),
            ..aiops_engine::EngineOptions::default()
        },
    )
    .await
    .expect("engine");
    let conn = engine
        .alert_source_for(None)
        .await
        .expect("the default source");
    let clients = aiops_engine::tools::SourceClients::connect(&conn).expect("clients");
    let data = clients
        .prometheus()
        .expect("a Prometheus")
        .query("db_up{service=\"cache\"}", None)
        .await
        .expect("query");
    assert_eq!(data["result"][0]["value"][1], "1", "{data}");
    let err = clients.alertmanager().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert!(
        err.message.contains("has no Alertmanager URL"),
        "{}",
        err.message
    );
}
