//! The Prometheus/Alertmanager harness works end to end: a series the test serves
//! is scraped, a rule over it fires after its `for`, and the firing alert reaches
//! Alertmanager with its labels; a rule with a long `for` stays pending.

mod common;

use common::prometheus::{Alertmanager, MetricsEndpoint, Prometheus};

const RULES: &str = r#"
groups:
  - name: test
    rules:
      - alert: DatabaseDown
        expr: db_up == 0
        for: 2s
        labels:
          severity: critical
        annotations:
          summary: "database {{ $labels.service }} is down"
      - alert: DatabaseDownLong
        expr: db_up == 0
        for: 1h
        labels:
          severity: warning
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_fires_and_reaches_alertmanager() {
    let metrics = MetricsEndpoint::start().await;
    metrics.set("db_up", &[("service", "db")], 0.0);
    let Some(am) = Alertmanager::start().await else {
        return;
    };
    let Some(prom) = Prometheus::start(RULES, &[metrics.addr()], Some(&am)).await else {
        return;
    };

    let firing = prom.wait_for_alert("DatabaseDown", "firing").await;
    assert_eq!(firing["labels"]["severity"], "critical");
    assert_eq!(firing["labels"]["service"], "db");

    let in_am = am.wait_for_alert("DatabaseDown").await;
    assert_eq!(in_am["labels"]["severity"], "critical", "{in_am}");
    assert_eq!(in_am["labels"]["service"], "db", "{in_am}");
    assert_eq!(in_am["labels"]["job"], "test", "{in_am}");
    assert_eq!(in_am["annotations"]["summary"], "database db is down");
    assert_eq!(in_am["status"]["state"], "active", "{in_am}");

    // Same expression, same evaluations, but `for: 1h`: still pending now that the
    // 2 s rule fires, and never sent to Alertmanager (only firing alerts are).
    let pending = prom.wait_for_alert("DatabaseDownLong", "pending").await;
    assert_eq!(pending["labels"]["severity"], "warning");
    let alerts: serde_json::Value = reqwest::get(format!(
        "{}/api/v2/alerts?filter=alertname%3D%22DatabaseDownLong%22",
        am.url()
    ))
    .await
    .expect("alertmanager alerts")
    .json()
    .await
    .expect("alerts json");
    assert_eq!(alerts, serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_values_change_at_runtime() {
    let metrics = MetricsEndpoint::start().await;
    metrics.set("queue_depth", &[("queue", "a")], 3.0);
    let Some(prom) = Prometheus::start("groups: []\n", &[metrics.addr()], None).await else {
        return;
    };
    let result = prom.wait_for_samples("queue_depth == 3").await;
    assert_eq!(result[0]["metric"]["queue"], "a");

    metrics.set("queue_depth", &[("queue", "a")], 42.0);
    let result = prom.wait_for_samples("queue_depth == 42").await;
    assert_eq!(result[0]["value"][1], "42");
}
