//! `tally gen`: deterministic synthetic events.

use std::path::PathBuf;
use std::process::ExitCode;
use tally::generate::{DEFAULT_EVENTS_PER_FILE, Format, GenOptions, Populations, generate_with};
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
    /// A JSON file of extra populations of creators, each with a share of the
    /// new events and the content kinds, actions, tiers and countries it uses
    /// (see "Generated populations" in the README). Without it the output is
    /// as it always was.
    #[arg(long, value_name = "FILE")]
    populations: Option<PathBuf>,
}

pub fn execute(args: Args) -> anyhow::Result<ExitCode> {
    let options = GenOptions {
        events: args.events,
        seed: args.seed,
        out: args.out,
        format: args.format,
        events_per_file: args.events_per_file,
    };
    let populations = match &args.populations {
        Some(path) => Populations::read(path)?,
        None => Populations::default(),
    };
    let bar = Progress::start("generate", Some(args.events), !args.quiet);
    let summary = generate_with(&options, &populations, &|n| bar.inc(n))?;
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
    if !summary.populations.is_empty() {
        let unique = summary.unique().max(1) as f64;
        let each: Vec<String> = summary
            .populations
            .iter()
            .map(|(name, events)| {
                format!(
                    "{name} {} unique events ({:.2}%)",
                    thousands(*events),
                    100.0 * *events as f64 / unique
                )
            })
            .collect();
        super::print(&format!("  populations: {}", each.join(", ")))?;
    }
    Ok(ExitCode::SUCCESS)
}
