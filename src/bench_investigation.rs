//! `aiops bench --investigation`: a rule-based investigation end to end against a
//! real Prometheus. The bench serves a metrics endpoint in which each of 10 services
//! breaks three ways (30 firing alerts), starts `prometheus` on a free loopback port
//! with its rules, waits for all 30 alerts to fire, and then times team runs of a
//! 10-node team (a tree under `svc0`) from `start_team_run` to RUN_SUCCEEDED.

use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use aiops_engine::agents::{TeamRun, start_team_run};
use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const NODES: usize = 10;

const RULES: &str = r#"
groups:
  - name: bench
    rules:
      - { alert: ServiceDown, expr: svc_up == 0, for: 1s, labels: { severity: critical } }
      - { alert: HighErrorRate, expr: svc_errors > 5, for: 1s, labels: { severity: warning } }
      - { alert: Saturated, expr: svc_saturation > 0.9, for: 1s, labels: { severity: warning } }
"#;

/// The metrics every service exposes: down, erroring and saturated.
fn metrics_body() -> String {
    let mut body = String::new();
    for i in 0..NODES {
        body.push_str(&format!(
            "svc_up{{service=\"svc{i}\"}} 0\nsvc_errors{{service=\"svc{i}\"}} 42\nsvc_saturation{{service=\"svc{i}\"}} 0.97\n"
        ));
    }
    body
}

/// A tree: svc0 at the root, svc<i> depends on svc<(i-1)/2>.
fn team_yaml() -> String {
    let mut yaml =
        "name: bench-investigation\nsupervisor: { model: builtin:rules }\nnodes:\n".to_owned();
    for i in 0..NODES {
        let deps = if i == 0 {
            String::new()
        } else {
            format!(", depends_on: [svc{}]", (i - 1) / 2)
        };
        yaml.push_str(&format!(
            "  - {{ id: svc{i}, kind: service, match: {{ service: svc{i} }}{deps}, agents: [{{ id: metrics, tools: [prometheus_query_range, prometheus_query] }}] }}\n"
        ));
    }
    yaml
}

pub async fn run(
    database_url: &str,
    prometheus: &str,
    samples: usize,
    catalog: aiops_engine::topology::Catalog,
) -> anyhow::Result<ExitCode> {
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let metrics_addr = metrics.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = metrics.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let body = metrics_body();
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    let dir = tempfile_dir()?;
    std::fs::write(dir.join("rules.yml"), RULES)?;
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\nrule_files: [rules.yml]\n\
             scrape_configs:\n  - job_name: bench\n    static_configs: [{{ targets: ['{metrics_addr}'] }}]\n"
        ),
    )?;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let mut server = tokio::process::Command::new(prometheus)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {prometheus} (install the `prometheus` package)"))?;
    let url = format!("http://127.0.0.1:{port}");
    let result = measure(database_url, &url, samples, catalog).await;
    let _ = server.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(
    database_url: &str,
    prometheus_url: &str,
    samples: usize,
    catalog: aiops_engine::topology::Catalog,
) -> anyhow::Result<ExitCode> {
    wait_for_firing(prometheus_url, NODES * 3).await?;
    let options = aiops_engine::EngineOptions {
        workflows: aiops_engine::agents::register(aiops_engine::Workflows::default()),
        catalog,
        default_source: aiops_engine::DefaultAlertSource::new(
            Some(prometheus_url.to_owned()),
            None,
        )?,
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
    engine.apply_team(&team_yaml()).await?;

    let mut times = Vec::new();
    let mut steps = 0;
    // One warm-up run, then the samples.
    for i in 0..=samples {
        let started = Instant::now();
        let run = start_team_run(&engine, TeamRun::new("bench-investigation")).await?;
        super::bench::wait_done(&engine, run.id).await?;
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        let run = engine.run(run.id).await?;
        let result = &run.output.as_ref().context("no output")?["result"];
        anyhow::ensure!(
            result["root_causes"][0]["node"] == "svc0"
                && result["root_causes"][0]["symptoms"]
                    .as_array()
                    .map(Vec::len)
                    == Some(NODES - 1),
            "unexpected result: {result}"
        );
        if i > 0 {
            times.push(elapsed);
            steps = engine.steps(run.id).await?.len();
        }
    }
    shutdown.cancel();
    let (p50, _) = super::bench::summary(times.clone());
    let max = times.iter().copied().fold(0.0, f64::max);
    println!("| nodes | firing alerts | steps per run | runs | p50 | max |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {NODES} | {} | {steps} | {samples} | {p50:.0} ms | {max:.0} ms |",
        NODES * 3
    );
    Ok(ExitCode::SUCCESS)
}

/// Waits until Prometheus reports `want` firing alerts.
async fn wait_for_firing(url: &str, want: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = reqwest::Client::new();
    loop {
        let firing = async {
            let body: serde_json::Value = client
                .get(format!("{url}/api/v1/alerts"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            Some(
                body["data"]["alerts"]
                    .as_array()?
                    .iter()
                    .filter(|a| a["state"] == "firing")
                    .count(),
            )
        }
        .await
        .unwrap_or(0);
        if firing >= want {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "Prometheus at {url} has {firing} of {want} alerts firing after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("aiops-bench-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
