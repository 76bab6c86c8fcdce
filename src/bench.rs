//! `aiops bench`: placeholder replaced below.
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {}

pub async fn run(_args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet")
}
