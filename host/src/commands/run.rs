//! `tally run`: the pipeline, end to end.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tally::pipeline::{RunOptions, run_loaded};
use tally::report::{FailedRun, RuleSummary, RunReport, RunResult};
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
    /// Also write the JSON run report to this file, whether the run succeeds
    /// or fails (`"status": "failed"` with the error).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Print the JSON run report on stdout instead of the summary; a failed
    /// run prints it too, and its error on stderr.
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
    let reference = args.rule.clone();
    let inputs_given = args
        .inputs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let failed = FailedRun {
        tally_version: tally::pipeline::VERSION.to_string(),
        rule: None,
        output: Some(args.out.display().to_string()),
        window: tally::report::window_text(args.days),
    };
    let (json, report) = (args.json, args.report.clone());
    let mut loaded = None;
    let outcome = run(args, &mut loaded);
    let result = match &outcome {
        Ok(report) => RunResult::succeeded(report.clone(), Some(reference), inputs_given, None),
        Err(err) => RunResult::failed(
            format!("{err:#}"),
            Some(reference),
            inputs_given,
            None,
            FailedRun {
                rule: loaded,
                ..failed
            },
        ),
    };
    conclude(outcome, &result, json, report.as_deref())
}

/// Loads the rule (saying what it is in `loaded` as soon as it is known, for
/// the report of a run that fails later) and runs the pipeline.
fn run(args: Args, loaded: &mut Option<RuleSummary>) -> anyhow::Result<RunReport> {
    let limits = Limits {
        memory_bytes: (args.rule_memory_mib as usize) << 20,
        fuel_per_event: args.fuel_per_event,
        ..Limits::default()
    };
    let rule = super::load_rule(&args.rule, args.registry.as_deref(), limits)?;
    *loaded = Some(RuleSummary::of(&rule, &args.rule));
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
    run_loaded(&options, rule).context(if had_output {
        "run failed; the previous output is untouched"
    } else {
        "run failed; nothing was written"
    })
}

/// Ends a run (`tally run`, `tally commit`): its JSON report goes to `file`
/// when given and, with `json`, to stdout (the summary otherwise) whether the
/// run succeeded or not; a failed run then ends with its error, which goes to
/// stderr as every error does. When the report cannot be written after a
/// failure, that is said on stderr, and the run's own error is the one
/// returned.
pub(super) fn conclude(
    outcome: anyhow::Result<RunReport>,
    result: &RunResult,
    json: bool,
    file: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let text = serde_json::to_string_pretty(result)? + "\n";
    let written = match file {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))
        }
        None => Ok(()),
    };
    match outcome {
        Ok(report) => {
            written?;
            super::print(&if json { text } else { report.to_string() })?;
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            if let Err(problem) = written {
                eprintln!("warning: the report of the failed run was not written: {problem:#}");
            }
            if json {
                super::print_report_of_failure(&text);
            }
            Err(err)
        }
    }
}
