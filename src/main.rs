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

/// mimalloc's `purge_delay` option in the bundled v3 (`mi_option_t` 15) and its
/// default there, read off the built option table (the header's comment says 10).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const MI_DEFAULT_PURGE_DELAY_MS: std::ffi::c_long = 1000;

/// How long mimalloc keeps freed memory before returning it to the system.
const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// Freed memory goes back to the system after 10 ms instead of mimalloc's default
/// second. With 10,000 runs in flight (`aiops bench --llm`, 30 s model call) the peak
/// RSS was 1,020 MiB with the default, 971 MiB with 10 ms and 949 MiB with 0; 0 cost
/// ~18 % of run starts per second in the engine bench, 10 ms nothing measurable
/// (BENCHMARKS.md). An operator's `MIMALLOC_PURGE_DELAY` wins; a bundled mimalloc
/// whose option 15 does not hold the purge delay's default is left alone.
fn return_freed_memory_soon() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: plain calls into mimalloc's option table, which takes any option number.
    unsafe {
        if libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) == MI_DEFAULT_PURGE_DELAY_MS {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
        }
    }
}

fn main() -> std::process::ExitCode {
    return_freed_memory_soon();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_memory_goes_back_soon_unless_the_operator_says_otherwise() {
        return_freed_memory_soon();
        // SAFETY: reads mimalloc's option table.
        let delay = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        match std::env::var("MIMALLOC_PURGE_DELAY") {
            Ok(set) => assert_eq!(delay.to_string(), set.trim()),
            Err(_) => assert_eq!(delay, PURGE_DELAY_MS),
        }
    }
}
