//! `aiops bench --llm`: many team runs waiting on slow model calls in one worker
//! process (the memory and CPU each in-flight run costs), and the overhead a model
//! call gets from being a durable step (commit and event fan-out) on top of the
//! model server's own latency.
//!
//! The model server is a child process (this binary with `--llm-serve`): an
//! OpenAI-compatible endpoint on loopback that waits `--llm-delay-ms` before
//! streaming a short answer. RSS is the worker process's alone. Each team run makes two
//! model calls (the supervisor's node choice and its result); its node is analysed by
//! the rule-based analyst, so the numbers are the model path's own cost.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aiops_engine::agents::{TeamRun, start_team_run};
use aiops_engine::model::ProviderKind;
use aiops_engine::{Caller, EngineConfig, NewModel, NewProvider, RunStatus};
use anyhow::Context;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio_util::sync::CancellationToken;

const TEAM: &str = r#"
name: bench-llm
supervisor: { model: bench-model }
nodes:
  - id: svc
    kind: service
    match: { service: svc }
    supervisor: { model: builtin:rules }
    agents: [{ id: metrics, tools: [prometheus_query] }]
"#;

struct FakeModel {
    delay: Duration,
    /// Requests answered, and the time spent answering them (µs).
    answered: AtomicU64,
}

pub async fn run(
    database_url: &str,
    runs: usize,
    delay: Duration,
    alone: usize,
    catalog: aiops_engine::topology::Catalog,
) -> anyhow::Result<ExitCode> {
    // The model server runs in a process of its own, as a real one would: its
    // connections and buffers are not the worker's memory.
    let mut server = tokio::process::Command::new(std::env::current_exe()?)
        .args(["bench", "--llm-serve", "--database-url", "unused"])
        .args(["--llm-delay-ms", &delay.as_millis().to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the fake model server")?;
    let mut lines =
        tokio::io::BufReader::new(server.stdout.take().context("server stdout")?).lines();
    let addr = lines
        .next_line()
        .await?
        .context("the fake model server printed no address")?;
    let base = format!("http://{addr}/v1");

    let options = aiops_engine::EngineOptions {
        config: EngineConfig {
            max_concurrent_runs: runs.max(1),
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
    let shutdown = CancellationToken::new();
    tokio::spawn(engine.clone().listen(shutdown.clone()));
    tokio::spawn(aiops_engine::Worker::new(engine.clone()).run(shutdown.clone()));
    engine
        .create_provider(
            Caller::Local,
            NewProvider {
                name: "bench-fake".into(),
                kind: ProviderKind::OpenAi,
                base_url: base,
                azure_api_version: None,
                credential: None,
            },
        )
        .await?;
    engine
        .create_model(
            Caller::Local,
            NewModel::new("bench-model", "bench-fake", "fake"),
        )
        .await?;
    engine.apply_team(TEAM).await?;
    let alerts =
        json!([{ "labels": { "alertname": "Down", "service": "svc" }, "state": "firing" }]);
    let start = |engine: aiops_engine::Engine, alerts: Value| async move {
        start_team_run(
            &engine,
            TeamRun {
                alerts: Some(alerts),
                ..TeamRun::new("bench-llm")
            },
        )
        .await
    };

    // 1. Overhead per model step, one run at a time.
    let mut added = Vec::new();
    for _ in 0..alone {
        let run = start(engine.clone(), alerts.clone()).await?;
        super::bench::wait_done(&engine, run.id).await?;
        added.extend(llm_step_overheads(&engine, run.id, delay).await?);
    }
    let (p50_alone, p99_alone) = super::bench::summary(added);

    // 2. `runs` runs in flight at once, each waiting on its model call.
    let rss_before = rss_kib()?;
    let cpu_before = cpu_seconds()?;
    let started = Instant::now();
    // Started 64 at a time, so that all are in flight together (one by one, the
    // first would finish before the last started on Postgres).
    let started_runs: Vec<_> = futures::stream::iter(0..runs)
        .map(|_| start(engine.clone(), alerts.clone()))
        .buffer_unordered(64)
        .collect()
        .await;
    let mut ids = Vec::with_capacity(runs);
    for run in started_runs {
        ids.push(run?.id);
    }
    let all_started = started.elapsed();
    let mut peak = rss_kib()?;
    let mut in_flight_seen = 0;
    loop {
        peak = peak.max(rss_kib()?);
        let counts = engine.count_runs_by_status().await.unwrap_or_default();
        let count = |wanted: &[RunStatus]| -> i64 {
            counts
                .iter()
                .filter(|(s, _)| wanted.contains(s))
                .map(|(_, n)| n)
                .sum()
        };
        let done = count(&[RunStatus::Succeeded, RunStatus::Failed]);
        let running = count(&[RunStatus::Running]);
        in_flight_seen = in_flight_seen.max(running);
        if done as usize >= runs + alone {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "runs did not finish in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let wall = started.elapsed();
    let cpu = cpu_seconds()? - cpu_before;
    let mut loaded = Vec::new();
    let mut failed = 0;
    for id in ids.iter().take(200) {
        let run = engine.run(*id).await?;
        if run.status != RunStatus::Succeeded {
            failed += 1;
        }
        loaded.extend(llm_step_overheads(&engine, *id, delay).await?);
    }
    let (p50_loaded, p99_loaded) = super::bench::summary(loaded);
    shutdown.cancel();
    let per_run_kib = (peak.saturating_sub(rss_before)) as f64 / runs as f64;
    println!(
        "| runs | model delay | most running at once | wall | RSS before | peak RSS | RSS per in-flight run | CPU per run |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {runs} | {} ms | {in_flight_seen} | {:.1} s | {:.0} MiB | {:.0} MiB | {per_run_kib:.1} KiB | {:.2} ms |",
        delay.as_millis(),
        wall.as_secs_f64(),
        rss_before as f64 / 1024.0,
        peak as f64 / 1024.0,
        cpu * 1000.0 / runs as f64
    );
    println!();
    println!("| added latency per model step | p50 | p99 |");
    println!("|---|---|---|");
    println!("| one run at a time | {p50_alone:.1} ms | {p99_alone:.1} ms |");
    println!("| {runs} runs at once (200 sampled) | {p50_loaded:.1} ms | {p99_loaded:.1} ms |");
    println!(
        "\nall {runs} runs started after {:.1} s; model calls answered: {}; runs not succeeded: {failed} of the 200 sampled",
        all_started.as_secs_f64(),
        reqwest::get(format!("http://{addr}/answered"))
            .await?
            .text()
            .await?
    );
    Ok(ExitCode::SUCCESS)
}

/// `aiops bench --llm --llm-serve`: only the fake model server, on a free loopback
/// port; prints the address on stdout, answers until its stdin closes.
pub async fn serve(delay: Duration) -> anyhow::Result<ExitCode> {
    let model = Arc::new(FakeModel {
        delay,
        answered: AtomicU64::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(answer))
        .route(
            "/answered",
            axum::routing::get(|State(model): State<Arc<FakeModel>>| async move {
                model.answered.load(Ordering::Relaxed).to_string()
            }),
        )
        .with_state(model);
    let stdin_closed = async {
        let mut sink = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut sink).await;
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(stdin_closed)
        .await?;
    Ok(ExitCode::SUCCESS)
}

/// Each model step's duration (first start to finish) minus the server's delay, ms.
async fn llm_step_overheads(
    engine: &aiops_engine::Engine,
    run: aiops_engine::RunId,
    delay: Duration,
) -> anyhow::Result<Vec<f64>> {
    Ok(engine
        .steps(run)
        .await?
        .into_iter()
        .filter(|s| s.key.ends_with("/llm"))
        .filter_map(|s| Some((s.finished_at? - s.started_at?).num_microseconds()? as f64 / 1000.0))
        .map(|ms| ms - delay.as_secs_f64() * 1000.0)
        .collect())
}

/// The fake model: waits, then streams the answer the prompt asks for.
async fn answer(State(model): State<Arc<FakeModel>>, body: axum::body::Bytes) -> Response {
    tokio::time::sleep(model.delay).await;
    model.answered.fetch_add(1, Ordering::Relaxed);
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let system = request["messages"][0]["content"]
        .as_str()
        .unwrap_or_default();
    let text = if system.contains("Decide which nodes") {
        json!({ "nodes": ["svc"], "reason": "it alerts" })
    } else {
        json!({ "summary": "svc is down", "severity": "critical",
                "root_causes": [{ "node": "svc", "alert": "Down", "confidence": 0.8, "evidence": ["the alert"] }],
                "actions": [] })
    }
    .to_string();
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({ "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] })
        )
    };
    let usage =
        json!({ "choices": [], "usage": { "prompt_tokens": 500, "completion_tokens": 60 } });
    let sse = format!(
        "{}{}data: {usage}\n\ndata: [DONE]\n\n",
        chunk(json!({ "content": text }), Value::Null),
        chunk(json!({}), json!("stop")),
    );
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(sse))
        .unwrap_or_default()
}

fn rss_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS not in /proc/self/status")
}

fn cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which may hold spaces) start after ") ".
    let rest = stat
        .rsplit_once(") ")
        .map(|(_, r)| r)
        .context("bad /proc/self/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}
