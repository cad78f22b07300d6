//! `tally gen`: deterministic synthetic events.

use std::path::PathBuf;
use std::process::ExitCode;
use tally::generate::{DEFAULT_EVENTS_PER_FILE, Format, GenOptions, generate};
use tally::progress::Progress;
use tally::report::thousands;

#[derive(clap::Args)]
pub struct Args {
    /// Number of records to write (including re-sends and broken ones).
    #[arg(long)]
    events: u64,
    /// Seed: the same seed, count and format give the same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// File format: jsonl or parquet.
    #[arg(long, default_value = "jsonl")]
    format: Format,
    /// Records per file.
    #[arg(long, default_value_t = DEFAULT_EVENTS_PER_FILE)]
    events_per_file: u64,
    /// Never show a progress bar.
    #[arg(long)]
    quiet: bool,
}

pub fn execute(args: Args) -> anyhow::Result<ExitCode> {
    let options = GenOptions {
        events: args.events,
        seed: args.seed,
        out: args.out,
        format: args.format,
        events_per_file: args.events_per_file,
    };
    let bar = Progress::start("generate", Some(args.events), !args.quiet);
    let summary = generate(&options, &|n| bar.inc(n))?;
    bar.finish();
    let broken: u64 = summary.broken.values().sum();
    super::print(&format!(
        "wrote {} records in {} file(s) under {}\n  planted: {} exact re-sends, {} late re-sends, {} conflicts, {} broken records\n  a correct run reports {} quarantined, {} duplicates, {} unique",
        thousands(summary.records),
        summary.files.len(),
        options.out.display(),
        thousands(summary.exact_resends),
        thousands(summary.late_resends),
        thousands(summary.conflicts),
        thousands(broken),
        thousands(summary.quarantined()),
        thousands(summary.duplicates()),
        thousands(summary.unique()),
    ))?;
    Ok(ExitCode::SUCCESS)
}
