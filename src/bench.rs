//! `aiops bench`: throughput and latency of the durable engine on a database.
//!
//! Three measurements, each on a fresh schema-migrated database the caller names:
//! 1. steps/s with R concurrent runs of S no-op steps (one in-process worker with R slots);
//! 2. latency of a single S-step run, start to RUN_SUCCEEDED, repeated;
//! 3. event commit → subscriber latency while R runs are live;
//! 4. event commit → GraphQL WebSocket client latency while R runs are live: the real
//!    HTTP API on a local port, one `graphql-transport-ws` connection per run.
//!
//! The script workflow's `noop` steps make every step a real durable checkpoint
//! with nothing else in it, so the numbers are the engine's own overhead.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use aiops_engine::{EngineConfig, EventKind, StartRun};
use anyhow::Context;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Database to measure (its schema is migrated; runs are left behind).
    #[arg(long = "database-url", env = "DATABASE_URL")]
    database_url: String,
    /// Concurrent runs.
    #[arg(long, default_value_t = 64)]
    runs: usize,
    /// No-op steps per run.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Runs executed in the throughput phase (kept `runs` at a time).
    #[arg(long, default_value_t = 1280)]
    total_runs: usize,
    /// Checkpoint writers committing concurrently (Postgres).
    #[arg(long, default_value_t = aiops_engine::EngineConfig::default().writer_shards)]
    writer_shards: usize,
    /// Repetitions of the single-run latency phase (with --llm: of the one-run-at-a-time
    /// phase, at most 20).
    #[arg(long, default_value_t = 200)]
    latency_samples: usize,
    /// Instead of the engine phases: time rule-based investigations of a 10-node team
    /// with 30 firing alerts against a real Prometheus the bench starts.
    #[arg(long)]
    investigation: bool,
    /// With --investigation: the Prometheus binary to start.
    #[arg(long, default_value = "prometheus")]
    prometheus: String,
    /// With --investigation: timed runs (after one warm-up run).
    #[arg(long, default_value_t = 20)]
    investigation_samples: usize,
    /// Instead of the engine phases: `--runs` team runs at once, each waiting on a
    /// model call of `--llm-delay-ms` (a fake model server in a child process): RSS and CPU
    /// per in-flight run, and the latency a durable model step adds.
    #[arg(long)]
    llm: bool,
    /// With --llm: how long the fake model takes to answer.
    #[arg(long, default_value_t = 2000)]
    llm_delay_ms: u64,
    /// With --llm: be only the fake model server (the bench starts one this way).
    #[arg(long, hide = true)]
    llm_serve: bool,
    /// Instead of the engine phases: Alertmanager notifications over the real HTTP
    /// API (new groups, then their de-duplicated repeats), and notification →
    /// RUN_STARTED latency.
    #[arg(long)]
    webhook: bool,
    /// With --webhook: new alert groups posted (each starts a run).
    #[arg(long, default_value_t = 500)]
    webhook_groups: usize,
    /// With --webhook: how often every group is posted again (repeats).
    #[arg(long, default_value_t = 10)]
    webhook_repeats: usize,
    /// With --webhook: clients posting at once.
    #[arg(long, default_value_t = 32)]
    webhook_clients: usize,
    /// Instead of the engine phases: schedule tick latency (fire time → run queued)
    /// with this many every-second schedules driven by the real tick.
    #[arg(long)]
    schedules: Option<usize>,
    /// With --schedules: how long the tick runs.
    #[arg(long, default_value_t = 30)]
    schedule_seconds: u64,
    #[command(flatten)]
    start: crate::bench_start::StartArgs,
    #[command(flatten)]
    crash: crate::bench_crash::CrashArgs,
    #[command(flatten)]
    history: crate::bench_history::HistoryArgs,
}

pub(crate) fn noop_script(steps: usize) -> serde_json::Value {
    json!({ "steps": (0..steps).map(|_| json!({ "kind": "noop" })).collect::<Vec<_>>() })
}

fn work_script(steps: usize) -> serde_json::Value {
    json!({ "steps": (0..steps).map(|_| json!({ "kind": "work", "ms": 5 })).collect::<Vec<_>>() })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub(crate) fn summary(mut xs: Vec<f64>) -> (f64, f64) {
    xs.sort_by(|a, b| a.total_cmp(b));
    (percentile(&xs, 0.5), percentile(&xs, 0.99))
}

/// Event latencies by where in its run the event falls: RUN_STARTED (every run is
/// claimed at once, so these wait for one claim), the first step event (queued behind
/// every run's start), the steps after it, and RUN_SUCCEEDED. Where the tail comes from.
#[derive(Default)]
struct RunLags {
    /// RUN_STARTED: stamped when the claim began, seen after it committed.
    start: Vec<f64>,
    /// The first step event: what the run did first once claimed.
    first_step: Vec<f64>,
    steps: Vec<f64>,
    end: Vec<f64>,
    /// Whether this run's first step event was seen (one run per value, then merged).
    stepped: bool,
}

impl RunLags {
    fn record(&mut self, kind: &str, lag_ms: f64) {
        match kind {
            "RUN_STARTED" => self.start.push(lag_ms),
            "RUN_SUCCEEDED" => self.end.push(lag_ms),
            _ if !self.stepped => {
                self.stepped = true;
                self.first_step.push(lag_ms)
            }
            _ => self.steps.push(lag_ms),
        }
    }

    fn merge(&mut self, run: RunLags) {
        self.start.extend(run.start);
        self.first_step.extend(run.first_step);
        self.steps.extend(run.steps);
        self.end.extend(run.end);
    }

    fn all(&self) -> Vec<f64> {
        [&self.start, &self.first_step, &self.steps, &self.end]
            .into_iter()
            .flatten()
            .copied()
            .collect()
    }

    fn describe(&self) -> String {
        let part = |name: &str, xs: &[f64]| {
            let (p50, p99) = summary(xs.to_vec());
            format!("{name} {p50:.2}/{p99:.2} ms ({})", xs.len())
        };
        format!(
            "{}, {}, {}, {}",
            part("start", &self.start),
            part("first step", &self.first_step),
            part("steps", &self.steps),
            part("end", &self.end)
        )
    }
}

pub async fn run(
    args: BenchArgs,
    catalog: aiops_engine::topology::Catalog,
) -> anyhow::Result<ExitCode> {
    if args.start.start_runs {
        return crate::bench_start::run(&args.database_url, args.start).await;
    }
    if args.crash.crash_loop {
        return crate::bench_crash::run(&args.database_url, args.crash).await;
    }
    if args.history.history {
        return crate::bench_history::run(&args.database_url, args.history, catalog).await;
    }
    if args.llm_serve {
        return crate::bench_llm::serve(Duration::from_millis(args.llm_delay_ms)).await;
    }
    if args.llm {
        return crate::bench_llm::run(
            &args.database_url,
            args.runs,
            Duration::from_millis(args.llm_delay_ms),
            // One run at a time before the crowd: at most 20 (they take two model
            // calls each, which is long with a long `--llm-delay-ms`).
            args.latency_samples.clamp(1, 20),
            catalog,
        )
        .await;
    }
    if let Some(schedules) = args.schedules {
        return crate::bench_schedule::run(
            &args.database_url,
            schedules,
            args.schedule_seconds,
            catalog,
        )
        .await;
    }
    if args.webhook {
        return crate::bench_webhook::run(
            &args.database_url,
            crate::bench_webhook::WebhookBench {
                groups: args.webhook_groups,
                repeats: args.webhook_repeats,
                clients: args.webhook_clients,
                latency_samples: args.latency_samples.clamp(1, 200),
            },
            catalog,
        )
        .await;
    }
    if args.investigation {
        return crate::bench_investigation::run(
            &args.database_url,
            &args.prometheus,
            args.investigation_samples.max(1),
            catalog,
        )
        .await;
    }
    anyhow::ensure!(
        args.runs > 0 && args.steps > 0 && args.total_runs >= args.runs,
        "bad sizes"
    );
    let config = EngineConfig {
        max_concurrent_runs: args.runs,
        writer_shards: args.writer_shards,
        ..EngineConfig::default()
    };
    // The benchmark runs the script workflow (no record files).
    let workflows = aiops_engine::Workflows::default().with(
        aiops_engine::script::NAME,
        aiops_engine::script::ScriptWorkflow::new(None),
    );
    let options = aiops_engine::EngineOptions {
        config,
        workflows,
        catalog,
        ..aiops_engine::EngineOptions::default()
    };
    let opened = crate::open::open_engine(
        &args.database_url,
        options,
        crate::open::Access::Exclusive("aiops bench"),
    )
    .await?;
    let engine = opened.engine.clone();
    let shutdown = CancellationToken::new();
    tokio::spawn(engine.clone().listen(shutdown.clone()));
    // The warm-up worker stops before the throughput phase; the listener keeps running.
    let warmup_stop = shutdown.child_token();
    let warmup_worker =
        tokio::spawn(aiops_engine::Worker::new(engine.clone()).run(warmup_stop.clone()));
    let backend = if args.database_url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };

    // Warm-up: connections, prepared statements, caches.
    for _ in 0..3 {
        let run = engine
            .start_run(StartRun::new("script", noop_script(args.steps)))
            .await?;
        wait_done(&engine, run.id).await?;
    }

    // 1. Throughput: all runs queued up front while no worker runs, then one worker
    //    with `runs` slots executes them; enqueueing is timed separately.
    warmup_stop.cancel();
    let _ = warmup_worker.await;
    // One reader of the engine's changes counts completions, so watching costs
    // nothing per run.
    let warmup = succeeded_runs(&engine).await?;
    let mut changes = engine.changes();
    let enqueue_started = Instant::now();
    for _ in 0..args.total_runs {
        engine
            .start_run(StartRun::new("script", noop_script(args.steps)))
            .await?;
    }
    let enqueue_per_s = args.total_runs as f64 / enqueue_started.elapsed().as_secs_f64();
    let worker = tokio::spawn(aiops_engine::Worker::new(engine.clone()).run(shutdown.clone()));
    let started = Instant::now();
    let mut finished = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    while finished < args.total_runs {
        anyhow::ensure!(
            Instant::now() < deadline,
            "throughput phase stalled: {finished} of {} runs finished",
            args.total_runs
        );
        match tokio::time::timeout(Duration::from_millis(200), changes.next()).await {
            Ok(Some(aiops_engine::Change::Event(e))) => match e.kind {
                EventKind::RunSucceeded => finished += 1,
                EventKind::RunFailed | EventKind::RunTimedOut => {
                    anyhow::bail!("run {} ended {:?}", e.run_id, e.kind)
                }
                _ => {}
            },
            Ok(Some(aiops_engine::Change::Run(_))) => {}
            // Fell behind (the feed is bounded), or quiet: count in the database.
            Ok(Some(aiops_engine::Change::Resync)) | Ok(None) | Err(_) => {
                finished = succeeded_runs(&engine).await? - warmup
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let steps_per_s = (args.total_runs * args.steps) as f64 / elapsed;

    // 2. Single-run latency, nothing else running.
    let mut latencies = Vec::with_capacity(args.latency_samples);
    let mut timelines = Vec::with_capacity(args.latency_samples);
    for _ in 0..args.latency_samples {
        let t = Instant::now();
        let t0 = chrono::Utc::now();
        let run = engine
            .start_run(StartRun::new("script", noop_script(args.steps)))
            .await?;
        wait_done(&engine, run.id).await?;
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        let seen = chrono::Utc::now();
        timelines.push((t0, engine.events(run.id, 0, 1000).await?, seen));
    }
    let (run_p50, run_p99) = summary(latencies);
    print_breakdown(&timelines);

    // 3. Event latency with `runs` live runs, each watched by a subscriber. Runs use
    //    short work steps so they stay live long enough to overlap.
    let mut watchers = Vec::new();
    for _ in 0..args.runs {
        let run = engine
            .start_run(StartRun::new("script", work_script(args.steps)))
            .await?;
        let stream = engine.subscribe(run.id, 0);
        watchers.push(tokio::spawn(async move {
            let mut stream = Box::pin(stream);
            let mut lags = RunLags::default();
            while let Some(event) = stream.next().await {
                let event = event?;
                // created_at is taken just before the commit; this includes the commit itself.
                let lag = (chrono::Utc::now() - event.created_at)
                    .num_microseconds()
                    .unwrap_or(0) as f64
                    / 1000.0;
                if event.kind != EventKind::RunQueued {
                    lags.record(event.kind.as_str(), lag);
                }
            }
            anyhow::Ok(lags)
        }));
    }
    let mut lags = RunLags::default();
    for w in watchers {
        lags.merge(w.await??);
    }
    println!(
        "event latency p50/p99 by part of the run: {}",
        lags.describe()
    );
    let lags = lags.all();
    let samples = lags.len();
    let (ev_p50, ev_p99) = summary(lags);

    shutdown.cancel();
    let _ = worker.await;

    // 4. The same through the real GraphQL API, as a WebSocket client sees it.
    let ws_lags = ws_latency(&engine, &args).await?;
    println!(
        "WebSocket latency p50/p99 by part of the run: {}",
        ws_lags.describe()
    );
    let ws_lags = ws_lags.all();
    let ws_samples = ws_lags.len();
    let (ws_p50, ws_p99) = summary(ws_lags);

    println!(
        "| backend | runs × steps | steps/s | 1-run p50 | 1-run p99 | event p50 | event p99 | ws p50 | ws p99 | runs enqueued/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {backend} | {} × {} ({} runs) | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms ({} events) | {:.2} ms | {:.2} ms ({} events) | {:.0} |",
        args.runs,
        args.steps,
        args.total_runs,
        steps_per_s,
        run_p50,
        run_p99,
        ev_p50,
        ev_p99,
        samples,
        ws_p50,
        ws_p99,
        ws_samples,
        enqueue_per_s
    );
    Ok(ExitCode::SUCCESS)
}

/// Where a single run's time goes: medians over the latency samples of the gaps
/// between its events' `created_at` (each taken just before its commit starts), so
/// each gap is one durable commit plus what runs before the next one.
fn print_breakdown(
    timelines: &[(
        chrono::DateTime<chrono::Utc>,
        Vec<aiops_engine::Event>,
        chrono::DateTime<chrono::Utc>,
    )],
) {
    let ms = |a: chrono::DateTime<chrono::Utc>, b: chrono::DateTime<chrono::Utc>| {
        (b - a).num_microseconds().unwrap_or(0) as f64 / 1000.0
    };
    let mut parts: Vec<(&str, Vec<f64>)> = [
        "start → RUN_QUEUED",
        "RUN_QUEUED → RUN_STARTED",
        "RUN_STARTED → first step",
        "step → next step (mean)",
        "last step → RUN_SUCCEEDED",
        "RUN_SUCCEEDED → seen",
    ]
    .into_iter()
    .map(|name| (name, Vec::new()))
    .collect();
    for (t0, events, seen) in timelines {
        let at = |kind: EventKind| events.iter().find(|e| e.kind == kind).map(|e| e.created_at);
        let steps: Vec<_> = events
            .iter()
            .filter(|e| e.kind == EventKind::StepSucceeded)
            .map(|e| e.created_at)
            .collect();
        let (Some(queued), Some(started), Some(done), Some(first), Some(last)) = (
            at(EventKind::RunQueued),
            at(EventKind::RunStarted),
            at(EventKind::RunSucceeded),
            steps.first().copied(),
            steps.last().copied(),
        ) else {
            continue;
        };
        let gaps = (steps.len().max(2) - 1) as f64;
        let values = [
            ms(*t0, queued),
            ms(queued, started),
            ms(started, first),
            ms(first, last) / gaps,
            ms(last, done),
            ms(done, *seen),
        ];
        for ((_, xs), v) in parts.iter_mut().zip(values) {
            xs.push(v);
        }
    }
    println!("single-run breakdown (median of {} runs):", timelines.len());
    for (name, xs) in parts {
        println!("  {name}: {:.3} ms", summary(xs).0);
    }
}

/// An API key of a new user with `role` (the database may be reused: a fresh user per
/// invocation), for a bench's clients of the real API.
pub(crate) async fn bench_api_key(
    engine: &aiops_engine::Engine,
    role: aiops_engine::auth::Role,
) -> anyhow::Result<String> {
    let username = format!("bench_{}", uuid::Uuid::now_v7().simple());
    let password = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let user = engine.create_user(&username, &password, role).await?;
    let (_, token) = engine
        .create_api_key(aiops_engine::Caller::Local, user.id, "bench", None, None)
        .await?;
    Ok(token)
}

/// Phase 4: `runs` runs of `steps` × 5 ms work steps are queued while no worker runs,
/// each gets a `graphql-transport-ws` client subscribed to `runEvents` over the real HTTP
/// API, and only when every subscription has delivered RUN_QUEUED (so it is live) does a
/// worker start. Returns receive time − `createdAt` in ms for every event but RUN_QUEUED.
async fn ws_latency(engine: &aiops_engine::Engine, args: &BenchArgs) -> anyhow::Result<RunLags> {
    let shutdown = CancellationToken::new();
    tokio::spawn(engine.clone().listen(shutdown.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    {
        let engine = engine.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            aiops_api::serve(listener, engine, async move { shutdown.cancelled().await }).await
        });
    }
    let token = bench_api_key(engine, aiops_engine::auth::Role::Viewer).await?;

    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(args.runs);
    let mut watchers = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        let run = engine
            .start_run(StartRun::new("script", work_script(args.steps)))
            .await?;
        watchers.push(tokio::spawn(ws_watch(
            port,
            token.clone(),
            run.id.to_string(),
            ready_tx.clone(),
        )));
    }
    drop(ready_tx);
    for n in 0..args.runs {
        match tokio::time::timeout(Duration::from_secs(60), ready_rx.recv()).await {
            Ok(Some(())) => {}
            // Every watcher ended or none got ready in time: report the first error.
            Ok(None) | Err(_) => {
                for w in watchers {
                    if w.is_finished() {
                        w.await??;
                    }
                }
                anyhow::bail!(
                    "only {n} of {} WebSocket subscriptions became live",
                    args.runs
                );
            }
        }
    }
    let worker = tokio::spawn(aiops_engine::Worker::new(engine.clone()).run(shutdown.clone()));
    let mut lags = RunLags::default();
    let result = async {
        for w in watchers {
            lags.merge(w.await??);
        }
        anyhow::Ok(())
    }
    .await;
    shutdown.cancel();
    let _ = worker.await;
    result?;
    Ok(lags)
}

/// One GraphQL WebSocket client following one run until `complete`.
async fn ws_watch(
    port: u16,
    token: String,
    run_id: String,
    ready: tokio::sync::mpsc::Sender<()>,
) -> anyhow::Result<RunLags> {
    let mut req = format!("ws://127.0.0.1:{port}/graphql/ws").into_client_request()?;
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .context("WebSocket connect")?;
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    ws.send(Message::text(init.to_string())).await?;
    let query = format!(
        "subscription {{ runEvents(runId: \"{run_id}\", afterSeq: 0) {{ seq kind createdAt }} }}"
    );
    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": { "query": query } });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut lags = RunLags::default();
    let mut last_kind = String::new();
    let mut ready = Some(ready);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .with_context(|| format!("run {run_id}: no `complete` within 120 s"))?;
        // The receive time, before any parsing.
        let received = chrono::Utc::now();
        let msg = match msg {
            Some(msg) => msg?,
            None => anyhow::bail!("run {run_id}: WebSocket closed before `complete`"),
        };
        let text = match msg {
            Message::Text(text) => text,
            Message::Close(frame) => anyhow::bail!("run {run_id}: WebSocket closed: {frame:?}"),
            _ => continue,
        };
        let v: serde_json::Value = serde_json::from_str(&text)?;
        match v["type"].as_str() {
            Some("connection_ack") => ws.send(Message::text(subscribe.to_string())).await?,
            Some("next") => {
                let event = &v["payload"]["data"]["runEvents"];
                let kind = event["kind"].as_str().unwrap_or_default();
                if kind == "RUN_QUEUED" {
                    // Committed before the subscription: it only proves it is live.
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(()).await;
                    }
                } else {
                    let created = event["createdAt"]
                        .as_str()
                        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                        .with_context(|| format!("run {run_id}: event without createdAt: {v}"))?;
                    let lag = (received - created.with_timezone(&chrono::Utc))
                        .num_microseconds()
                        .unwrap_or(0) as f64
                        / 1000.0;
                    lags.record(kind, lag);
                }
                last_kind = kind.to_owned();
            }
            Some("complete") => break,
            Some("ping") => {
                ws.send(Message::text(json!({ "type": "pong" }).to_string()))
                    .await?
            }
            Some("pong") | Some("ka") => {}
            _ => anyhow::bail!("run {run_id}: unexpected message {v}"),
        }
    }
    anyhow::ensure!(
        last_kind == "RUN_SUCCEEDED",
        "run {run_id} ended with {last_kind} over WebSocket"
    );
    let _ = ws.close(None).await;
    Ok(lags)
}

pub(crate) async fn wait_done(
    engine: &aiops_engine::Engine,
    id: aiops_engine::RunId,
) -> anyhow::Result<()> {
    let mut events = Box::pin(engine.subscribe(id, 0));
    let deadline = tokio::time::sleep(Duration::from_secs(120));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            e = events.next() => match e {
                Some(e) => {
                    let e = e?;
                    if e.kind == EventKind::RunSucceeded {
                        return Ok(());
                    }
                    anyhow::ensure!(
                        !matches!(e.kind, EventKind::RunFailed | EventKind::RunCancelled | EventKind::RunTimedOut),
                        "run {id} ended {:?}: {}", e.kind, e.payload
                    );
                }
                None => anyhow::bail!("event stream of {id} ended early"),
            },
            _ = &mut deadline => return Err(anyhow::anyhow!("run {id} did not finish in 120 s")).context("bench"),
        }
    }
}

async fn succeeded_runs(engine: &aiops_engine::Engine) -> anyhow::Result<usize> {
    let counts = engine.count_runs_by_status().await?;
    Ok(counts
        .iter()
        .find(|(s, _)| *s == aiops_engine::RunStatus::Succeeded)
        .map_or(0, |(_, n)| *n as usize))
}

/// Cancels every queued run that `trigger` started (benches run no worker for them).
pub(crate) async fn cancel_queued(
    engine: &aiops_engine::Engine,
    trigger: aiops_engine::Trigger,
) -> anyhow::Result<()> {
    let filter = aiops_engine::model::RunFilter {
        statuses: vec![aiops_engine::RunStatus::Queued],
        trigger: Some(trigger),
        ..Default::default()
    };
    loop {
        let page = engine
            .list_runs(&filter, &aiops_engine::page::PageRequest::first(200))
            .await?;
        if page.items.is_empty() {
            return Ok(());
        }
        let cancels = page.items.iter().map(|r| engine.cancel_run(r.id));
        for result in futures::future::join_all(cancels).await {
            result?;
        }
    }
}
