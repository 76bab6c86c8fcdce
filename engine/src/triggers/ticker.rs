//! The in-process tick: `tokio-cron-scheduler` calls [`tick`] every second on every
//! replica. A tick claims the due fires (`Engine::claim_due_fires`, one transaction,
//! `SKIP LOCKED`: replicas share the work and never fire a time twice) and starts
//! their runs. This is the one place fires, skips and misses are counted.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use tokio_util::sync::CancellationToken;

use super::schedule::{FireStart, start_fire};
use crate::engine::Engine;
use crate::metrics::ScheduleOutcome;

/// Runs one tick starts at once on Postgres. On SQLite they would only queue on its
/// single writer (measured: 200 every-second schedules, p99 fire → queued 1.4 s one
/// at a time, 9.7 s sixteen at a time).
const CONCURRENT_STARTS: usize = 16;

/// When the tick runs: every second (seconds first, as tokio-cron-scheduler reads it).
pub const TICK_EXPRESSION: &str = "* * * * * *";

#[derive(Debug, thiserror::Error)]
pub enum TickerError {
    #[error("the tick scheduler failed: {0}")]
    Scheduler(#[from] JobSchedulerError),
}

/// What one tick did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Fire times whose runs started.
    pub started: u64,
    /// Fire times not started because a run of their schedule was still active.
    pub skipped_overlap: u64,
    /// Fire times that passed during downtime and were not run.
    pub missed: u64,
    /// Fire times whose runs were refused for good (recorded on the fire).
    pub failed: u64,
    /// Fire times whose start is left to a later tick (database trouble).
    pub retrying: u64,
}

/// One tick at `now`: claims the due fires, starts their runs, and counts fires,
/// skips and misses (`aiops_schedule_fires_total`).
pub async fn tick(engine: &Engine, now: DateTime<Utc>) -> crate::Result<TickReport> {
    let claimed = engine.claim_due_fires(now).await?;
    let metrics = engine.metrics();
    metrics.schedule_fires(ScheduleOutcome::Skipped, claimed.skipped_overlap);
    metrics.schedule_fires(ScheduleOutcome::Missed, claimed.missed);
    let mut report = TickReport {
        skipped_overlap: claimed.skipped_overlap,
        missed: claimed.missed,
        ..TickReport::default()
    };
    if claimed.skipped_overlap > 0 || claimed.missed > 0 {
        tracing::info!(
            skipped_overlap = claimed.skipped_overlap,
            missed = claimed.missed,
            "schedule fire times not run"
        );
    }
    // Fires are independent (each has its own idempotency key): start several at
    // once, so a minute boundary where hundreds of schedules fire is not paced by
    // one commit after another.
    // Owned futures: borrowed ones make the tick's future not provably `Send`.
    let starts = claimed.due.iter().cloned().map(|fire| {
        let engine = engine.clone();
        async move {
            let started = start_fire(&engine, &fire).await;
            (fire, started)
        }
    });
    let concurrency = if engine.concurrent_writers() {
        CONCURRENT_STARTS
    } else {
        1
    };
    let mut starts = futures::stream::iter(starts).buffer_unordered(concurrency);
    while let Some((fire, started)) = starts.next().await {
        let fire = &fire;
        match started {
            FireStart::Started(run) => {
                report.started += 1;
                metrics.schedule_fire(ScheduleOutcome::Fired);
                tracing::debug!(schedule = %fire.schedule, fire_time = %fire.fire_time, run_id = %run, "schedule fired");
            }
            FireStart::Failed(reason) => {
                report.failed += 1;
                metrics.schedule_fire(ScheduleOutcome::Failed);
                tracing::warn!(schedule = %fire.schedule, fire_time = %fire.fire_time, %reason, "schedule fire refused");
            }
            FireStart::Retry(e) => {
                report.retrying += 1;
                tracing::warn!(schedule = %fire.schedule, fire_time = %fire.fire_time, error = %e, "schedule fire not started; a later tick retries it");
            }
        }
    }
    Ok(report)
}

/// The tick of one process (`aiops serve`).
pub struct Ticker {
    engine: Engine,
}

impl Ticker {
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }

    /// Ticks every second until `shutdown`. A tick that is still running when the
    /// next is due makes that one skip (they would only wait on each other).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), TickerError> {
        let mut scheduler = JobScheduler::new().await?;
        let busy = Arc::new(tokio::sync::Mutex::new(()));
        let engine = self.engine;
        let job = Job::new_async(TICK_EXPRESSION, move |_, _| {
            let engine = engine.clone();
            let busy = busy.clone();
            Box::pin(async move {
                let Ok(_running) = busy.try_lock() else {
                    return;
                };
                if let Err(e) = tick(&engine, Utc::now()).await {
                    tracing::warn!(error = %e, "schedule tick failed; the next tick tries again");
                }
            })
        })?;
        scheduler.add(job).await?;
        scheduler.start().await?;
        shutdown.cancelled().await;
        scheduler.shutdown().await?;
        Ok(())
    }
}
