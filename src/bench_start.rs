//! `aiops bench --start-runs`: runs started per second, over the real GraphQL API and
//! straight through `Engine::start_run`.
//!
//! For each count of `--start-clients` (32; a list such as `1,8,32,64` shows the
//! scaling), `--start-total` runs of the script workflow (10 `noop` steps) are started
//! by that many concurrent clients, each starting one run after another, twice (after
//! 200 starts of warm-up each):
//! 1. over HTTP: every start is a `POST /graphql` of `startRun` with an operator's API
//!    key (`Authorization: Bearer`) on HTTP/1.1 keep-alive connections (one per
//!    client) to the real API on a loopback port of this process. A start is timed
//!    from sending the request to its parsed answer: authentication (SHA-256 of the key
//!    and one read), the per-key mutation budget, GraphQL parsing and execution,
//!    `Engine::start_run`, JSON both ways;
//! 2. directly: as many tasks call `Engine::start_run` with the same run (trigger
//!    API), so the gap between the two rows is the API's share.
//!
//! The server's per-key mutation budget (`AIOPS_MUTATIONS_PER_MINUTE`, 600 by default)
//! would refuse all but the first 600 starts of a minute; the bench's server is
//! configured with a budget it cannot reach, and says so. Clients, server and the
//! engine share this process. No worker runs: the runs stay QUEUED and are cancelled
//! at the end (with any API runs an earlier bench left queued, before the first
//! measurement), which is timed too.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aiops_engine::{EngineConfig, StartRun, Trigger};
use anyhow::Context;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The bench server's mutations per minute per API key: never reached, so every
/// start still passes the limiter but none is refused.
const MUTATIONS_PER_MINUTE: u32 = 1_000_000_000;

/// `noop` steps in each run's script (never executed: no worker runs).
const STEPS: usize = 10;

/// Starts per client count and path before measuring: connections, prepared statements.
const WARM_UP: usize = 200;

#[derive(clap::Args, Debug)]
pub struct StartArgs {
    /// Instead of the engine phases: `startRun` over the real GraphQL API by concurrent
    /// clients (runs/s, latency), next to `Engine::start_run` called directly.
    #[arg(long)]
    pub start_runs: bool,
    /// With --start-runs: concurrent clients; a list (`1,8,32,64`) measures each count.
    #[arg(long, value_delimiter = ',', default_value = "32")]
    start_clients: Vec<usize>,
    /// With --start-runs: runs started per measurement.
    #[arg(long, default_value_t = 20_000)]
    start_total: usize,
}

/// One measurement: its wall time and every start's latency in ms.
struct Measured {
    elapsed: Duration,
    latencies: Vec<f64>,
}

impl Measured {
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

pub async fn run(database_url: &str, args: StartArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.start_total > 0 && !args.start_clients.is_empty() && !args.start_clients.contains(&0),
        "bad sizes"
    );
    // The runs are script runs (no record files).
    let options = aiops_engine::EngineOptions {
        config: EngineConfig::default(),
        workflows: aiops_engine::Workflows::default().with(
            aiops_engine::script::NAME,
            aiops_engine::script::ScriptWorkflow::new(None),
        ),
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
    super::bench::cancel_queued(&engine, Trigger::Api).await?;

    // startRun needs OPERATOR.
    let token = super::bench::bench_api_key(&engine, aiops_engine::auth::Role::Operator).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/graphql", listener.local_addr()?);
    let config = aiops_api::ApiConfig {
        mutations_per_minute: MUTATIONS_PER_MINUTE,
        ..aiops_api::ApiConfig::default()
    };
    {
        let engine = engine.clone();
        let stop = shutdown.child_token();
        tokio::spawn(async move {
            aiops_api::serve_with(
                listener,
                engine,
                &config,
                async move { stop.cancelled().await },
            )
            .await
        });
    }

    let body = json!({
        "query": "mutation($input: JSON) { startRun(input: {workflow: \"script\", input: $input}) { id status } }",
        "variables": { "input": super::bench::noop_script(STEPS) },
    })
    .to_string();
    let http = reqwest::Client::new();
    let over_http = move || {
        let (http, url, token, body) = (http.clone(), url.clone(), token.clone(), body.clone());
        async move {
            let answer: Value = http
                .post(&url)
                .bearer_auth(&token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            if let Some(errors) = answer.get("errors") {
                anyhow::bail!("startRun refused: {errors}");
            }
            let status = &answer["data"]["startRun"]["status"];
            anyhow::ensure!(status == "QUEUED", "startRun answered {answer}");
            Ok(())
        }
    };
    let direct = {
        let engine = engine.clone();
        move || {
            let engine = engine.clone();
            async move {
                let mut req =
                    StartRun::new(aiops_engine::script::NAME, super::bench::noop_script(STEPS));
                req.trigger = Trigger::Api;
                engine.start_run(req).await?;
                anyhow::Ok(())
            }
        }
    };

    let backend = if database_url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    println!(
        "note: the bench's API server allows {MUTATIONS_PER_MINUTE} mutations per minute per API key \
         (AIOPS_MUTATIONS_PER_MINUTE; default 600, i.e. 10 startRun/s per key)"
    );
    println!(
        "{backend}: {} runs per measurement, each a script of {STEPS} noop steps, no worker",
        args.start_total
    );
    println!();
    println!(
        "| clients | GraphQL startRun/s | p50 | p99 | Engine::start_run/s | p50 | p99 | GraphQL ÷ direct |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut started = 0;
    for &clients in &args.start_clients {
        drive(clients, WARM_UP, over_http.clone()).await?;
        let http_row = drive(clients, args.start_total, over_http.clone()).await?;
        drive(clients, WARM_UP, direct.clone()).await?;
        let direct_row = drive(clients, args.start_total, direct.clone()).await?;
        started += 2 * (WARM_UP + args.start_total);
        let (http_rate, direct_rate) = (http_row.per_second(), direct_row.per_second());
        let (http_p50, http_p99) = super::bench::summary(http_row.latencies);
        let (direct_p50, direct_p99) = super::bench::summary(direct_row.latencies);
        println!(
            "| {clients} | {http_rate:.0} | {http_p50:.2} ms | {http_p99:.2} ms | {direct_rate:.0} | {direct_p50:.2} ms | {direct_p99:.2} ms | {:.0} % |",
            100.0 * http_rate / direct_rate
        );
    }
    let cancelling = Instant::now();
    super::bench::cancel_queued(&engine, Trigger::Api).await?;
    println!();
    println!(
        "cleanup: {started} queued runs cancelled in {:.1} s",
        cancelling.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// `clients` tasks start `total` runs between them, each one after another with
/// `start`.
async fn drive<F, Fut>(clients: usize, total: usize, start: F) -> anyhow::Result<Measured>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let began = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (next, start) = (next.clone(), start.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    let t = Instant::now();
                    start().await?;
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await.context("a client panicked")??);
    }
    Ok(Measured {
        elapsed: began.elapsed(),
        latencies,
    })
}
