//! `tally run`: the pipeline, end to end.

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use tally::pipeline::{RunOptions, run_loaded};
use tally::rule::Limits;

#[derive(clap::Args)]
pub struct Args {
    /// Input files or directories (searched recursively): .jsonl/.ndjson/.json,
    /// optionally .gz or .zst, and .parquet.
    #[arg(long = "input", short, required = true, num_args = 1..)]
    inputs: Vec<PathBuf>,
    /// The rule that classifies events: a component file, a full or short
    /// blake3 hash, `name@version` or `name@tag` from the registry.
    #[arg(long)]
    rule: String,
    /// The rule registry (default: $TALLY_REGISTRY, else ./tally-registry).
    #[arg(long)]
    registry: Option<PathBuf>,
    /// Output directory; replaced atomically when the run succeeds.
    #[arg(long)]
    out: PathBuf,
    /// Worker threads (default: one per core).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    threads: Option<usize>,
    /// Events per rule call.
    #[arg(long, default_value_t = tally::pipeline::DEFAULT_BATCH_SIZE as u32, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Memory cap of the rule sandbox, in MiB.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    rule_memory_mib: u32,
    /// Fuel (about one unit per WebAssembly instruction) per event classified.
    #[arg(long, default_value_t = Limits::default().fuel_per_event)]
    fuel_per_event: u64,
    /// Recompute only these days, `FROM..TO` inclusive (or one day); other
    /// published days are left exactly as they are.
    #[arg(long, value_parser = tally::event::parse_day_range, value_name = "FROM..TO")]
    days: Option<(i32, i32)>,
    /// Also write the JSON run report to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Print the JSON run report on stdout instead of the summary.
    #[arg(long)]
    json: bool,
    /// Never show progress bars.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    read: super::ReadArgs,
    #[command(flatten)]
    spill: super::SpillArgs,
}

pub fn execute(args: Args) -> anyhow::Result<ExitCode> {
    let limits = Limits {
        memory_bytes: (args.rule_memory_mib as usize) << 20,
        fuel_per_event: args.fuel_per_event,
        ..Limits::default()
    };
    let rule = super::load_rule(&args.rule, args.registry.as_deref(), limits)?;
    let spill = args.spill.options(Some(&super::parent_of(&args.out)));
    let options = RunOptions {
        inputs: args.inputs,
        rule: args.rule.into(),
        out: args.out,
        threads: args.threads,
        batch_size: args.batch_size as usize,
        limits,
        progress: !args.quiet,
        days: args.days,
        read: args.read.options(),
        spill,
    };
    let had_output = tally::layout::is_output(&options.out);
    let report = run_loaded(&options, rule).context(if had_output {
        "run failed; the previous output is untouched"
    } else {
        "run failed; nothing was written"
    })?;
    let json = serde_json::to_string_pretty(&report)? + "\n";
    if let Some(path) = &args.report {
        std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
    }
    super::print(&if args.json { json } else { report.to_string() })?;
    Ok(ExitCode::SUCCESS)
}
