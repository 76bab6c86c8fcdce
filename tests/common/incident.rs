//! An incident to investigate: a metrics endpoint with the values the test chooses,
//! a real Prometheus scraping it with the rules below (and an Alertmanager when
//! asked), and an engine whose default alert source is that Prometheus, executing
//! team runs.

use std::time::Duration;

use aiops_engine::agents::{TeamRun, start_team_run};
use aiops_engine::model::Run;
use aiops_engine::{DefaultAlertSource, Engine, EngineOptions, RunStatus, Worker, Workflows};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::prometheus::{Alertmanager, MetricsEndpoint, Prometheus};
use super::{Backend, TestDb, fast_config, wait_for_status};

/// `svc_up == 0` fires `ServiceDown`, `svc_errors > 5` fires `HighErrorRate`,
/// `svc_latency_seconds > 1` stays *pending* (its `for` is an hour), and
/// `cert_days_left < 7` fires `CertificateExpiring`.
pub const RULES: &str = r#"
groups:
  - name: incident
    rules:
      - alert: ServiceDown
        expr: svc_up == 0
        for: 1s
        labels: { severity: critical }
        annotations:
          summary: "{{ $labels.service }} is down"
          runbook_url: "https://runbooks.example/service-down"
      - alert: HighErrorRate
        expr: svc_errors > 5
        for: 1s
        labels: { severity: warning }
      - alert: SlowResponses
        expr: svc_latency_seconds > 1
        for: 1h
        labels: { severity: critical }
      - alert: CertificateExpiring
        expr: cert_days_left < 7
        for: 1s
        labels: { severity: warning }
"#;

/// The master key of incidents whose teams call models (credentials are sealed).
pub const TEST_MASTER_KEY: &str =
    "7777777777777777777777777777777777777777777777777777777777777777";

pub struct Incident {
    pub metrics: MetricsEndpoint,
    pub prometheus: Prometheus,
    pub alertmanager: Option<Alertmanager>,
    pub db: TestDb,
    pub engine: Engine,
    pub shutdown: CancellationToken,
}

impl Incident {
    /// Serves what `set` chooses, starts the servers and an engine with one
    /// in-process worker. `None`: a part is missing outside CI (the test skips).
    pub async fn start(
        backend: Backend,
        with_alertmanager: bool,
        set: impl FnOnce(&MetricsEndpoint),
    ) -> Option<Incident> {
        Self::launch(backend, with_alertmanager, true, None, set).await
    }

    /// Like [`Incident::start`], with the investigations calling models through `llm`
    /// (short timeouts, a breaker of its own).
    pub async fn with_llm(
        backend: Backend,
        llm: aiops_engine::llm::client::LlmClient,
        set: impl FnOnce(&MetricsEndpoint),
    ) -> Option<Incident> {
        Self::launch(backend, false, true, Some(llm), set).await
    }

    /// Like [`Incident::with_llm`] with the process's shared model client and no
    /// worker: runs wait for a worker process the test starts (its
    /// `AIOPS_MASTER_KEY` must be [`TEST_MASTER_KEY`]).
    pub async fn llm_without_worker(
        backend: Backend,
        set: impl FnOnce(&MetricsEndpoint),
    ) -> Option<Incident> {
        let llm = aiops_engine::llm::shared_client().clone();
        Self::launch(backend, false, false, Some(llm), set).await
    }

    /// Like [`Incident::start`], with no worker: runs wait for one the test starts.
    pub async fn without_worker(
        backend: Backend,
        with_alertmanager: bool,
        set: impl FnOnce(&MetricsEndpoint),
    ) -> Option<Incident> {
        Self::launch(backend, with_alertmanager, false, None, set).await
    }

    async fn launch(
        backend: Backend,
        with_alertmanager: bool,
        worker: bool,
        llm: Option<aiops_engine::llm::client::LlmClient>,
        set: impl FnOnce(&MetricsEndpoint),
    ) -> Option<Incident> {
        let metrics = MetricsEndpoint::start().await;
        set(&metrics);
        let alertmanager = match with_alertmanager {
            true => Some(Alertmanager::start().await?),
            false => None,
        };
        let prometheus = Prometheus::start(RULES, &[metrics.addr()], alertmanager.as_ref()).await?;
        let db = TestDb::migrated(backend).await?;
        let mut options = options(&prometheus, alertmanager.as_ref());
        if let Some(llm) = llm {
            options.workflows = aiops_engine::agents::register_with(Workflows::default(), llm);
            // Model calls retry fast here (the product waits 1 s, 2 s, 4 s).
            options.config.retry = aiops_engine::RetryPolicy {
                initial: Duration::from_millis(50),
                max_delay: Duration::from_millis(200),
                ..aiops_engine::RetryPolicy::default()
            };
            // Provider credentials are sealed at rest: a keyring is needed.
            options.keyring = Some(std::sync::Arc::new(
                aiops_engine::secrets::Keyring::new(TEST_MASTER_KEY, &[]).expect("test key"),
            ));
        }
        let engine = Engine::connect(&db.url, options).await.expect("engine");
        let shutdown = CancellationToken::new();
        tokio::spawn(engine.clone().listen(shutdown.clone()));
        if worker {
            tokio::spawn(Worker::new(engine.clone()).run(shutdown.child_token()));
        }
        Some(Incident {
            metrics,
            prometheus,
            alertmanager,
            db,
            engine,
            shutdown,
        })
    }

    /// Waits until Prometheus has each alert in `state`.
    pub async fn wait_for(&self, alerts: &[&str], state: &str) {
        for name in alerts {
            self.prometheus.wait_for_alert(name, state).await;
        }
    }

    /// Waits until an alert of each of `services` (by its `service` label) fires.
    pub async fn wait_for_services(&self, services: &[&str]) {
        for service in services {
            self.prometheus
                .wait_for_samples(&format!(
                    "ALERTS{{alertstate=\"firing\",service=\"{service}\"}}"
                ))
                .await;
        }
    }

    /// Applies `team_yaml` and runs its investigation of the firing alerts to the end.
    pub async fn investigate(&self, team_yaml: &str) -> Run {
        let (team, _) = self.engine.apply_team(team_yaml).await.expect("apply team");
        let run = start_team_run(&self.engine, TeamRun::new(team.name))
            .await
            .expect("start team run");
        self.finish(run.id).await
    }

    /// Applies `team_yaml` and starts `run` of it.
    pub async fn start_run(&self, team_yaml: &str, run: TeamRun) -> Run {
        self.engine.apply_team(team_yaml).await.expect("apply team");
        start_team_run(&self.engine, run)
            .await
            .expect("start team run")
    }

    pub async fn finish(&self, id: aiops_engine::RunId) -> Run {
        wait_for_status(
            &self.engine,
            id,
            &[
                RunStatus::Succeeded,
                RunStatus::Failed,
                RunStatus::WaitingApproval,
                RunStatus::TimedOut,
            ],
            Duration::from_secs(60),
        )
        .await
    }
}

impl Drop for Incident {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The engine options of an incident: the investigation workflow, the servers as
/// the default alert source.
pub fn options(prometheus: &Prometheus, alertmanager: Option<&Alertmanager>) -> EngineOptions {
    EngineOptions {
        config: fast_config(),
        workflows: aiops_engine::agents::register(Workflows::default()),
        application_name: "aiops test".into(),
        default_source: DefaultAlertSource::new(
            Some(prometheus.url().to_owned()),
            alertmanager.map(|a| a.url().to_owned()),
        )
        .expect("valid URLs"),
        ..EngineOptions::default()
    }
}

/// The ranked root causes of a result: `(node, alert, [symptom nodes])`.
pub fn roots(result: &Value) -> Vec<(String, String, Vec<String>)> {
    result["root_causes"]
        .as_array()
        .expect("root_causes")
        .iter()
        .map(|r| {
            (
                r["node"].as_str().expect("node").to_owned(),
                r["alert"].as_str().expect("alert").to_owned(),
                r["symptoms"]
                    .as_array()
                    .expect("symptoms")
                    .iter()
                    .map(|s| s["node"].as_str().expect("symptom node").to_owned())
                    .collect(),
            )
        })
        .collect()
}

/// The report of a succeeded rule-based team run, with its four sections in order,
/// and its result valid against the default output schema.
pub fn report_and_result(run: &Run) -> (String, Value) {
    let (report, result) = team_report_and_result(run);
    assert!(
        report.contains("Rule-based analysis") && report.contains("builtin:rules"),
        "{report}"
    );
    (report, result)
}

/// [`report_and_result`] of a team run by any analyst (a language model too).
pub fn team_report_and_result(run: &Run) -> (String, Value) {
    assert_eq!(
        run.status,
        RunStatus::Succeeded,
        "run {} ended {}: {:?}",
        run.id,
        run.status,
        run.error
    );
    let output = run.output.as_ref().expect("output");
    let report = output["report"].as_str().expect("report").to_owned();
    let mut at = 0;
    for section in [
        "## Active alerts",
        "## Root cause analysis",
        "## Remediation",
        "## Conclusion",
    ] {
        let found = report[at..]
            .find(section)
            .unwrap_or_else(|| panic!("no {section} after byte {at} in:\n{report}"));
        at += found + section.len();
    }
    let result = output["result"].clone();
    aiops_engine::report::validate(&result, aiops_engine::report::default_output_schema())
        .unwrap_or_else(|problems| panic!("result invalid: {problems:?}\n{result:#}"));
    (report, result)
}
