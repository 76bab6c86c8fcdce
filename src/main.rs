//! The `aiops` binary: server, worker, migrations, team validation, runs and the
//! benchmark, configured from flags, environment variables and an optional TOML file.

mod bench;
mod bench_crash;
mod bench_history;
mod bench_investigation;
mod bench_llm;
mod bench_schedule;
mod bench_start;
mod bench_webhook;
mod cli;
mod config_file;
mod open;
mod progress;
mod providers;
mod receivers;
mod schedules;
mod sources;
mod webhooks;

use clap::Parser;

/// glibc's allocator serialises threads on its arena locks: 4 % of the SQLite
/// throughput profile waited there (BENCHMARKS.md, "mimalloc").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // First, while this is the only thread: the config file's values become
    // environment variables (see config_file.rs), so that clap and every other
    // reader of the environment see them, below the real environment and the flags.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let loaded = match config_file::apply(&args) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let cli = cli::Cli::parse_from(args);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        cli::init_tracing(&cli);
        loaded.log();
        match cli::dispatch(cli).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}
