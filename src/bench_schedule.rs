//! `aiops bench --schedules N`: schedule tick latency, from a fire time to its run
//! being queued (the run's `created_at`), p50/p99/max.
//!
//! `N` every-second schedules (a seconds field, as tests and demos may use) of a
//! rule-based team, overlap `allow`, driven by the real in-process tick
//! ([`aiops_engine::triggers::Ticker`], `tokio-cron-scheduler`) for
//! `--schedule-seconds`. So each second N fire times come due at once, and the
//! latency includes the tick's own scheduling (it wakes on the second), the claim
//! transaction and one run start per fire. No worker runs: the runs stay queued and
//! are cancelled, and the schedules deleted, at the end (a database left with
//! every-second schedules would keep firing under `aiops serve`).

use std::process::ExitCode;
use std::time::Duration;

use aiops_engine::model::{OverlapPolicy, RunFilter, Schedule};
use aiops_engine::page::PageRequest;
use aiops_engine::{Caller, EngineConfig, NewSchedule, Trigger};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const TEAM: &str = r#"
name: bench-schedule
supervisor: { model: builtin:rules }
nodes:
  - id: svc
    kind: service
    match: { service: svc }
    agents: [{ id: metrics, tools: [prometheus_query] }]
"#;

pub async fn run(
    database_url: &str,
    schedules: usize,
    seconds: u64,
    catalog: aiops_engine::topology::Catalog,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(schedules > 0 && seconds > 1, "bad sizes");
    let options = aiops_engine::EngineOptions {
        config: EngineConfig {
            schedule_seconds: true,
            ..EngineConfig::default()
        },
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
    engine.apply_team(TEAM).await?;

    let tag = uuid::Uuid::now_v7().simple().to_string();
    let mut created: Vec<Schedule> = Vec::with_capacity(schedules);
    for i in 0..schedules {
        let mut new = NewSchedule::new(format!("bench-{tag}-{i}"), "bench-schedule", "* * * * * *");
        new.input = json!({ "task": "bench" });
        new.overlap = OverlapPolicy::Allow;
        created.push(engine.create_schedule(Caller::Local, new).await?);
    }

    let shutdown = CancellationToken::new();
    let ticker = tokio::spawn(
        aiops_engine::triggers::Ticker::new(engine.clone()).run(shutdown.child_token()),
    );
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    shutdown.cancel();
    ticker.await??;

    let mut latencies = Vec::new();
    let mut fires_total = 0usize;
    for s in &created {
        let fires = engine
            .schedule_fires(s.id, &PageRequest::first(10_000))
            .await?
            .items;
        fires_total += fires.len();
        let filter = RunFilter {
            trigger: Some(Trigger::Schedule),
            trigger_id: Some(s.id.to_string()),
            ..RunFilter::default()
        };
        let runs = engine
            .list_runs(&filter, &PageRequest::first(10_000))
            .await?
            .items;
        for fire in &fires {
            let Some(run) = fire.run_id.and_then(|id| runs.iter().find(|r| r.id == id)) else {
                continue;
            };
            let late = run.created_at - fire.fire_time;
            latencies.push(late.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0);
        }
    }
    let started = latencies.len();

    // Clean up: the schedules (their fire records go with them) and the queued runs.
    for s in &created {
        engine.delete_schedule(Caller::Local, s.id).await?;
    }
    crate::bench::cancel_queued(&engine, Trigger::Schedule).await?;

    anyhow::ensure!(started > 0, "no fire started a run in {seconds} s");
    let max = latencies.iter().copied().fold(0.0, f64::max);
    let (p50, p99) = crate::bench::summary(latencies);
    println!(
        "| every-second schedules | seconds | fire times | runs started | fire time → run queued p50 | p99 | max |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {schedules} | {seconds} | {fires_total} | {started} | {p50:.1} ms | {p99:.1} ms | {max:.1} ms |"
    );
    Ok(ExitCode::SUCCESS)
}
