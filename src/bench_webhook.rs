//! `aiops bench --webhook`: the Alertmanager webhook over the real HTTP API on
//! loopback.
//!
//! 1. Latency from a new group's notification (just before the POST is sent) to its
//!    run's RUN_STARTED (as a subscriber in the same process sees it), one group at a
//!    time, with a worker (`--latency-samples`, at most 200).
//! 2. Notifications accepted per second: `--webhook-groups` groups of 3 alerts, each
//!    posted once (a run starts: STARTED) and then `--webhook-repeats` times
//!    (Alertmanager's repeats: DEDUPLICATED), by `--webhook-clients` concurrent
//!    clients. No worker runs then, so the numbers are the intake's own cost (token
//!    check, parsing, routing over the teams, the group lock, the de-duplication
//!    read and one transaction per notification). The runs they started are
//!    cancelled afterwards (and any a previous bench left queued, before phase 1).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use aiops_engine::{ApprovalMode, Caller, EngineConfig, EventKind, RunId};
use anyhow::Context;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const TEAM: &str = r#"
name: bench-webhook
supervisor: { model: builtin:rules }
alertmanager:
  matchers: ['team="bench"']
nodes:
  - id: svc
    kind: service
    match: { service: svc }
    agents: [{ id: metrics, tools: [prometheus_query] }]
"#;

/// What the webhook benchmark is asked to do.
pub struct WebhookBench {
    pub groups: usize,
    pub repeats: usize,
    pub clients: usize,
    pub latency_samples: usize,
}

/// A version-4 notification of group `group` (3 firing alerts).
fn notification(group: usize) -> Value {
    let alerts: Vec<Value> = (0..3)
        .map(|i| {
            json!({
                "status": "firing",
                "labels": { "alertname": format!("Alert{i}"), "service": "svc", "team": "bench",
                            "group": group.to_string() },
                "annotations": { "summary": "bench" },
                "startsAt": "2026-12-04T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.example/graph",
                "fingerprint": format!("{group:012x}{i:04x}"),
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{group=\"{group}\"}}"),
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "aiops",
        "groupLabels": { "group": group.to_string() },
        "commonLabels": { "team": "bench", "service": "svc", "group": group.to_string() },
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": alerts,
    })
}

pub async fn run(
    database_url: &str,
    bench: WebhookBench,
    catalog: aiops_engine::topology::Catalog,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        bench.groups > 0 && bench.clients > 0 && bench.latency_samples > 0,
        "bad sizes"
    );
    let options = aiops_engine::EngineOptions {
        config: EngineConfig::default(),
        workflows: aiops_engine::agents::register(aiops_engine::Workflows::default()),
        catalog,
        ..aiops_engine::EngineOptions::default()
    };
    let opened = crate::open::open_engine(
        database_url,
        options,
        crate::open::Access::Exclusive("aiops bench"),
    )
    .await?;
    let engine = opened.engine.clone();
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    tokio::spawn(engine.clone().listen(shutdown.clone()));
    engine.apply_team(TEAM).await?;
    // Runs an earlier bench left queued would compete with the latency phase.
    super::bench::cancel_queued(&engine, aiops_engine::Trigger::Alertmanager).await?;
    let name = format!("bench-{}", uuid::Uuid::now_v7().simple());
    let (_, token) = engine
        .create_alertmanager_receiver(Caller::Local, &name, ApprovalMode::Wait)
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/api/alertmanager/webhook", listener.local_addr()?);
    {
        let engine = engine.clone();
        let stop = shutdown.child_token();
        tokio::spawn(async move {
            aiops_api::serve_with(
                listener,
                engine,
                &aiops_api::ApiConfig::default(),
                async move { stop.cancelled().await },
            )
            .await
        });
    }
    let http = reqwest::Client::new();
    // Each bench run takes fresh groups (the database may hold earlier runs' groups).
    let base = (chrono::Utc::now().timestamp_millis() as usize % 1_000_000) * 100_000;
    let post = |group: usize| {
        let http = http.clone();
        let url = url.clone();
        let token = token.clone();
        async move {
            let answer: Value = http
                .post(&url)
                .bearer_auth(&token)
                .json(&notification(group))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            anyhow::Ok(answer["outcome"].as_str().unwrap_or_default().to_owned())
        }
    };
    let phase = |groups: Vec<usize>| {
        let post = &post;
        async move {
            let started = Instant::now();
            let outcomes: Vec<anyhow::Result<String>> = futures::stream::iter(groups)
                .map(post)
                .buffer_unordered(bench.clients)
                .collect()
                .await;
            let elapsed = started.elapsed();
            let mut counts = std::collections::BTreeMap::new();
            for o in outcomes {
                *counts.entry(o?).or_insert(0usize) += 1;
            }
            anyhow::Ok((elapsed, counts))
        }
    };

    // 1. Notification → RUN_STARTED, one new group at a time, with a worker (stopped
    //    afterwards: the throughput phase measures the intake alone).
    let worker_stop = shutdown.child_token();
    let worker = tokio::spawn(aiops_engine::Worker::new(engine.clone()).run(worker_stop.clone()));
    let mut latencies = Vec::with_capacity(bench.latency_samples);
    for i in 0..bench.latency_samples {
        let group = base + i;
        let sent = Instant::now();
        let answer: Value = http
            .post(&url)
            .bearer_auth(&token)
            .json(&notification(group))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let run: RunId = answer["routes"][0]["runId"]
            .as_str()
            .context("no run started")?
            .parse()?;
        let mut events = Box::pin(engine.subscribe(run, 0));
        let found = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(e) = events.next().await {
                if e?.kind == EventKind::RunStarted {
                    return anyhow::Ok(());
                }
            }
            anyhow::bail!("event stream of {run} ended before RUN_STARTED")
        })
        .await;
        found.context("RUN_STARTED within 60 s")??;
        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
        super::bench::wait_done(&engine, run).await?;
    }
    let (p50, p99) = super::bench::summary(latencies);
    worker_stop.cancel();
    worker.await??;

    // 2. New groups (each starts a run), then their repeats (each starts nothing).
    let new: Vec<usize> = (0..bench.groups)
        .map(|g| base + bench.latency_samples + g)
        .collect();
    let (new_time, new_counts) = phase(new.clone()).await?;
    let repeats: Vec<usize> = (0..bench.repeats)
        .flat_map(|_| new.iter().copied())
        .collect();
    let (repeat_time, repeat_counts) = phase(repeats.clone()).await?;
    let rate = |n: usize, t: Duration| n as f64 / t.as_secs_f64();
    super::bench::cancel_queued(&engine, aiops_engine::Trigger::Alertmanager).await?;

    println!(
        "| notifications | clients | accepted | per second | outcomes |\n|---|---|---|---|---|"
    );
    println!(
        "| new groups (3 alerts each) | {} | {} | {:.0}/s | {new_counts:?} |",
        bench.clients,
        new.len(),
        rate(new.len(), new_time)
    );
    println!(
        "| repeats (de-duplicated) | {} | {} | {:.0}/s | {repeat_counts:?} |",
        bench.clients,
        repeats.len(),
        rate(repeats.len(), repeat_time)
    );
    println!();
    println!(
        "| notification → RUN_STARTED ({} samples) | p50 | p99 |",
        bench.latency_samples
    );
    println!("|---|---|---|");
    println!("| one group at a time, one worker | {p50:.1} ms | {p99:.1} ms |");
    Ok(ExitCode::SUCCESS)
}
