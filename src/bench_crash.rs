//! `aiops bench --crash-loop`: throughput while worker processes are SIGKILLed, next
//! to the same workload without kills.
//!
//! Two phases, each on `--crash-runs` runs of `--crash-steps` `noop` steps (script
//! workflow), all queued before its workers start:
//! 1. baseline: `--crash-workers` `aiops worker` processes (this executable, script
//!    workflow enabled, lease `--lease-ttl-ms`, heartbeat a fifth of it, polling every
//!    50 ms) execute them; nobody is killed;
//! 2. crash loop: the same, but every `--kill-every-ms` a random worker is SIGKILLed
//!    and a replacement spawned at once. The killed worker's runs wait for their
//!    leases to expire, then a worker takes them over and replays their recorded
//!    steps.
//!
//! Throughput is read from the event log afterwards, by commit times: STEP_SUCCEEDED
//! events and finished runs per second between the first RUN_STARTED and the last
//! RUN_SUCCEEDED of the phase, and the fewest steps committed in one whole second of
//! it. Then every run of the phase is checked: SUCCEEDED, exactly `--crash-steps`
//! succeeded steps, one STEP_SUCCEEDED per step key (a completed step never ran
//! again), events 1..last_seq without a gap.
//!
//! Postgres runs the K processes. SQLite serves one process (`database::sqlite_lock`):
//! one worker, killed and restarted. The bench holds the SQLite lock only while it
//! queues a phase's runs; while workers execute it reads beside them.

use std::collections::HashMap;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use aiops_engine::model::RunFilter;
use aiops_engine::page::PageRequest;
use aiops_engine::{Engine, EventKind, RunId, RunStatus, StartRun};
use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::StreamExt;

/// How often idle workers look for runs whose leases expired.
const POLL_MS: u64 = 50;

/// A phase that has not finished after this long has stalled.
const PHASE_LIMIT: Duration = Duration::from_secs(600);

#[derive(clap::Args, Debug)]
pub struct CrashArgs {
    /// Instead of the engine phases: `aiops worker` processes executing runs while one
    /// of them is SIGKILLed every `--kill-every-ms` (and replaced), next to the same
    /// workload without kills; then every run is checked.
    #[arg(long)]
    pub crash_loop: bool,
    /// With --crash-loop: worker processes (Postgres; SQLite has one).
    #[arg(long, default_value_t = 4)]
    crash_workers: usize,
    /// With --crash-loop: runs per phase.
    #[arg(long, default_value_t = 400)]
    crash_runs: usize,
    /// With --crash-loop: `noop` steps per run.
    #[arg(long, default_value_t = 100)]
    crash_steps: usize,
    /// With --crash-loop: time between two kills.
    #[arg(long, default_value_t = 500)]
    kill_every_ms: u64,
    /// With --crash-loop: the workers' lease TTL (AIOPS_LEASE_TTL_MS): how long a
    /// killed worker's runs wait before they are taken over.
    #[arg(long, default_value_t = 2000)]
    lease_ttl_ms: u64,
}

/// What one phase did, read from the event log.
struct Phase {
    kills: usize,
    /// First RUN_STARTED to last RUN_SUCCEEDED.
    window: f64,
    steps: usize,
    /// None when the window is shorter than a second.
    slowest_second: Option<usize>,
    /// Runs claimed more than once.
    taken_over: usize,
    claims: i64,
}

impl Phase {
    fn steps_per_second(&self) -> f64 {
        self.steps as f64 / self.window
    }
}

pub async fn run(database_url: &str, args: CrashArgs) -> anyhow::Result<ExitCode> {
    let sqlite = !database_url.starts_with("postgres");
    let workers = if sqlite { 1 } else { args.crash_workers };
    anyhow::ensure!(
        workers > 0
            && args.crash_runs > 0
            && args.crash_steps > 0
            && args.kill_every_ms > 0
            && args.lease_ttl_ms >= 10,
        "bad sizes"
    );
    // The bench only queues script runs (no record files) and reads.
    let options = aiops_engine::EngineOptions {
        workflows: aiops_engine::Workflows::default().with(
            aiops_engine::script::NAME,
            aiops_engine::script::ScriptWorkflow::new(None),
        ),
        ..aiops_engine::EngineOptions::default()
    };
    // Migrates under the lock, which is given up at once: the workers need it.
    let engine = crate::open::open_engine(
        database_url,
        options,
        crate::open::Access::Exclusive("aiops bench"),
    )
    .await?
    .engine
    .clone();
    let spawner = Spawner {
        exe: std::env::current_exe().context("finding this executable")?,
        database_url: database_url.to_owned(),
        lease_ttl_ms: args.lease_ttl_ms,
    };
    let baseline = phase(&engine, &spawner, &args, workers, None).await?;
    let crashing = phase(
        &engine,
        &spawner,
        &args,
        workers,
        Some(Duration::from_millis(args.kill_every_ms)),
    )
    .await?;

    let backend = if sqlite { "sqlite" } else { "postgres" };
    println!(
        "{backend}: {workers} `aiops worker` process(es) (lease {} ms, heartbeat {} ms, poll {POLL_MS} ms), \
         {} runs × {} noop steps per phase",
        args.lease_ttl_ms,
        spawner.heartbeat_ms(),
        args.crash_runs,
        args.crash_steps
    );
    println!();
    println!(
        "| phase | kills | steps/s | slowest second | runs/s | runs taken over | claims | window |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, p) in [
        ("baseline, no kills".to_owned(), &baseline),
        (
            format!("SIGKILL every {} ms", args.kill_every_ms),
            &crashing,
        ),
    ] {
        println!(
            "| {name} | {} | {:.0} | {} | {:.1} | {} | {} | {:.1} s |",
            p.kills,
            p.steps_per_second(),
            p.slowest_second.map_or("–".to_owned(), |n| n.to_string()),
            args.crash_runs as f64 / p.window,
            p.taken_over,
            p.claims,
            p.window
        );
    }
    println!();
    println!(
        "crash loop / baseline steps/s: {:.0} %",
        100.0 * crashing.steps_per_second() / baseline.steps_per_second()
    );
    println!(
        "checked, both phases: every run SUCCEEDED with exactly {} succeeded steps, one STEP_SUCCEEDED \
         per step (no completed step ran again), events 1..last_seq without a gap",
        args.crash_steps
    );
    Ok(ExitCode::SUCCESS)
}

/// Starts `aiops worker` processes on the bench's database.
struct Spawner {
    exe: std::path::PathBuf,
    database_url: String,
    lease_ttl_ms: u64,
}

impl Spawner {
    fn heartbeat_ms(&self) -> u64 {
        (self.lease_ttl_ms / 5).max(1)
    }

    fn spawn(&self) -> anyhow::Result<tokio::process::Child> {
        tokio::process::Command::new(&self.exe)
            .arg("worker")
            .env("DATABASE_URL", &self.database_url)
            .env("AIOPS_ENABLE_SCRIPT_WORKFLOW", "1")
            .env("AIOPS_LEASE_TTL_MS", self.lease_ttl_ms.to_string())
            .env("AIOPS_HEARTBEAT_MS", self.heartbeat_ms().to_string())
            .env("AIOPS_POLL_MS", POLL_MS.to_string())
            .env("AIOPS_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawning `aiops worker`")
    }
}

/// Queues the phase's runs, lets `workers` processes execute them (killing one every
/// `kill_every`, if given), then checks every run and reads the throughput off its
/// events.
async fn phase(
    engine: &Engine,
    spawner: &Spawner,
    args: &CrashArgs,
    workers: usize,
    kill_every: Option<Duration>,
) -> anyhow::Result<Phase> {
    let since = Utc::now();
    let mut ids = Vec::with_capacity(args.crash_runs);
    {
        // SQLite: no worker may hold the database while the bench writes to it.
        let _lock = aiops_engine::database::lock(&spawner.database_url, "aiops bench")?;
        for _ in 0..args.crash_runs {
            let run = engine
                .start_run(StartRun::new(
                    aiops_engine::script::NAME,
                    super::bench::noop_script(args.crash_steps),
                ))
                .await?;
            ids.push(run.id);
        }
    }
    let mut children = (0..workers)
        .map(|_| spawner.spawn())
        .collect::<anyhow::Result<Vec<_>>>()?;
    let began = Instant::now();
    let mut kills = 0;
    let mut kill_tick = kill_every
        .map(|every| tokio::time::interval_at(tokio::time::Instant::now() + every, every));
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    loop {
        let kill = async {
            match kill_tick.as_mut() {
                Some(tick) => tick.tick().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = poll.tick() => {
                if finished(engine, since).await? {
                    break;
                }
                for child in &mut children {
                    if let Some(status) = child.try_wait()? {
                        anyhow::bail!("an `aiops worker` exited on its own: {status}");
                    }
                }
                anyhow::ensure!(
                    began.elapsed() < PHASE_LIMIT,
                    "the runs did not finish within {} s",
                    PHASE_LIMIT.as_secs()
                );
            }
            _ = kill => {
                let victim = (uuid::Uuid::new_v4().as_u128() % workers as u128) as usize;
                // SIGKILL: no shutdown code runs; its leases stay until they expire.
                children[victim].kill().await?;
                children[victim] = spawner.spawn()?;
                kills += 1;
            }
        }
    }
    for child in &mut children {
        child.kill().await?;
    }

    let checks: Vec<anyhow::Result<Checked>> = futures::stream::iter(ids)
        .map(|id| check_run(engine, id, args.crash_steps))
        .buffer_unordered(16)
        .collect()
        .await;
    let mut first_start: Option<DateTime<Utc>> = None;
    let mut last_end: Option<DateTime<Utc>> = None;
    let mut step_times = Vec::with_capacity(args.crash_runs * args.crash_steps);
    let (mut taken_over, mut claims) = (0, 0);
    for checked in checks {
        let checked = checked?;
        first_start = Some(first_start.map_or(checked.started, |t| t.min(checked.started)));
        last_end = Some(last_end.map_or(checked.succeeded, |t| t.max(checked.succeeded)));
        step_times.extend(checked.step_times);
        taken_over += usize::from(checked.attempt > 1);
        claims += checked.attempt;
    }
    let (start, end) = first_start.zip(last_end).context("no runs")?;
    let window = (end - start).num_microseconds().unwrap_or(0) as f64 / 1e6;
    // Steps committed in each whole second of the window.
    let whole_seconds = window.floor() as usize;
    let mut per_second = vec![0; whole_seconds];
    for t in &step_times {
        let second = ((*t - start).num_milliseconds().max(0) / 1000) as usize;
        if let Some(n) = per_second.get_mut(second) {
            *n += 1;
        }
    }
    Ok(Phase {
        kills,
        window,
        steps: step_times.len(),
        slowest_second: per_second.into_iter().min(),
        taken_over,
        claims,
    })
}

/// Whether no run created since `since` is left to finish; a failed one is an error.
async fn finished(engine: &Engine, since: DateTime<Utc>) -> anyhow::Result<bool> {
    let filter = |statuses| RunFilter {
        statuses,
        created_after: Some(since),
        ..RunFilter::default()
    };
    let failed = engine
        .list_runs(
            &filter(vec![
                RunStatus::Failed,
                RunStatus::Cancelled,
                RunStatus::TimedOut,
            ]),
            &PageRequest::first(1),
        )
        .await?;
    if let Some(run) = failed.items.first() {
        anyhow::bail!("run {} ended {:?}: {:?}", run.id, run.status, run.error);
    }
    let open = engine
        .list_runs(
            &filter(vec![
                RunStatus::Queued,
                RunStatus::Running,
                RunStatus::Paused,
                RunStatus::WaitingApproval,
                RunStatus::WaitingInput,
                RunStatus::RetryWait,
            ]),
            &PageRequest::first(1),
        )
        .await?;
    Ok(open.items.is_empty())
}

/// A finished run, checked.
struct Checked {
    attempt: i64,
    started: DateTime<Utc>,
    succeeded: DateTime<Utc>,
    step_times: Vec<DateTime<Utc>>,
}

async fn check_run(engine: &Engine, id: RunId, steps: usize) -> anyhow::Result<Checked> {
    let run = engine.run(id).await?;
    anyhow::ensure!(
        run.status == RunStatus::Succeeded,
        "run {id} is {:?}",
        run.status
    );
    let recorded = engine.steps(id).await?;
    let succeeded = recorded
        .iter()
        .filter(|s| s.status == aiops_engine::StepStatus::Succeeded)
        .count();
    anyhow::ensure!(
        recorded.len() == steps && succeeded == steps,
        "run {id}: {} steps recorded, {succeeded} succeeded, expected {steps}",
        recorded.len()
    );
    let events = engine.events(id, 0, 1_000_000).await?;
    let gap_free = events.iter().zip(1..).all(|(e, seq)| e.seq == seq);
    anyhow::ensure!(
        gap_free && events.len() as i64 == run.last_seq,
        "run {id}: event seqs are not 1..{}",
        run.last_seq
    );
    let mut per_key: HashMap<&str, usize> = HashMap::new();
    let mut step_times = Vec::with_capacity(steps);
    let (mut started, mut ended) = (None, None);
    for e in &events {
        match e.kind {
            EventKind::StepSucceeded => {
                let key = e.payload["step_key"].as_str().unwrap_or_default();
                *per_key.entry(key).or_default() += 1;
                step_times.push(e.created_at);
            }
            EventKind::RunStarted => started = started.or(Some(e.created_at)),
            EventKind::RunSucceeded => ended = Some(e.created_at),
            _ => {}
        }
    }
    if let Some((key, n)) = per_key.iter().find(|(_, n)| **n > 1) {
        anyhow::bail!("run {id}: step {key} succeeded {n} times");
    }
    anyhow::ensure!(
        per_key.len() == steps,
        "run {id}: {} steps have STEP_SUCCEEDED, expected {steps}",
        per_key.len()
    );
    Ok(Checked {
        attempt: run.attempt,
        started: started.with_context(|| format!("run {id} has no RUN_STARTED"))?,
        succeeded: ended.with_context(|| format!("run {id} has no RUN_SUCCEEDED"))?,
        step_times,
    })
}
