//! `tally gen`: deterministic synthetic events.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Number of records to write (including re-sends and broken ones).
    #[arg(long)]
    events: u64,
    /// Seed: the same seed gives the same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
}

pub fn execute(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the generator is not wired yet")
}
