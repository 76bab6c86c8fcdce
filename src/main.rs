//! The `aiops` binary: server, worker, migrations, team validation, runs and the
//! benchmark, all configured from flags and environment variables.

mod bench;
mod bench_investigation;
mod bench_llm;
mod bench_webhook;
mod cli;
mod open;
mod progress;
mod providers;
mod receivers;
mod sources;
mod webhooks;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    cli::init_tracing(&args);
    match cli::dispatch(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
