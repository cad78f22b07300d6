//! `tally compare`: two rules on the same traffic, or two published outputs.

use super::usage;
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use tally::compare::{self, gate, render};

/// Exit status when a `--fail-if` condition holds.
pub const GATE_TRIPPED: u8 = gate::GATE_TRIPPED;

/// Exit status when two output directories compared differ: the same as a
/// tripped gate, "the comparison says no", distinct from an error (1).
pub const OUTPUTS_DIFFER: u8 = GATE_TRIPPED;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Html,
}

#[derive(clap::Args)]
#[command(
    after_help = "Exit status: 0 when the comparison is done (rules) or the two output \
directories are identical; 3 when a --fail-if condition holds (rules) or the two output \
directories differ (a key only in one of them, or with other figures); 2 for a usage error \
(an option that does not apply to the mode, one --rule, one directory); 1 for any other error.\n\n\
Examples:\n  tally compare --input events/ --rule creator-pay@prod --rule rules/v2.wasm\n  \
tally compare --input events/ --rule creator-pay@prod --rule creator-pay@2.0.0 --out cmp/ --fail-if 'relative-amount-change>=5%'\n  \
tally compare out-v1/ out-v2/ --json"
)]
pub struct Args {
    /// Two output directories to compare key by key (instead of --input and
    /// --rule); only --format text|json, --json, --top, --sample and --quiet
    /// apply.
    /// Exit status 0 if they are identical, 3 if they differ.
    #[arg(conflicts_with_all = ["inputs", "rules", "out", "fail_if", "batch_size", "registry", "max_line_bytes", "memory_limit", "shards", "work_dir"])]
    outputs: Vec<PathBuf>,
    /// Input files or directories (as for `tally run`).
    #[arg(long = "input", short, num_args = 1..)]
    inputs: Vec<PathBuf>,
    /// The current rule (A), then the candidate (B): give it exactly twice.
    #[arg(long = "rule", num_args = 1)]
    rules: Vec<String>,
    /// Write deltas.parquet, changed-sample.parquet and the report in every
    /// form (report.txt, report.json, report.html) into this directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// What to print on stdout (html only for rule comparisons).
    ///
    /// A rule comparison reports the totals under A and B; the verdict
    /// transitions; where the money moved (the change of the amount split by
    /// kind of verdict change and reasons, by content kind, user tier and
    /// country, each split adding up exactly to the total change); how many
    /// creators gain, lose and stay the same, and a histogram of their
    /// relative change; a per-day table; the top movers; a sample of changed
    /// events; and the --fail-if results. The HTML page draws the splits,
    /// the histogram and the days as charts; the JSON carries the same
    /// figures under "schema_version": 1. Default: text (json with --json).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Print the JSON report on stdout: the same as --format json, as every
    /// command that reports takes it.
    #[arg(long)]
    json: bool,
    /// Creators and templates listed each way.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Changed events in the sample.
    #[arg(long, default_value_t = 20)]
    sample: usize,
    /// Events per rule call.
    #[arg(long, default_value_t = tally::pipeline::DEFAULT_BATCH_SIZE as u32, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Fail (exit 3) when a condition holds, e.g. `relative-amount-change>=5%`
    /// or `changed-events>1000`; may be repeated.
    ///
    /// A condition is <metric><op><threshold>. Metrics, each an absolute
    /// value: the ratios relative-amount-change and changed-share (a
    /// threshold such as 0.05 or 5%), and amount-change-micros,
    /// changed-events and payable-change (a number). Operators: >, >=, <,
    /// <=. The report lists each condition with the value measured and
    /// whether it held (`gates` in JSON).
    #[arg(long = "fail-if", value_name = "CONDITION")]
    fail_if: Vec<gate::Condition>,
    /// Never show progress bars.
    #[arg(long)]
    quiet: bool,
    /// The rule registry for references that are not paths (default:
    /// $TALLY_REGISTRY, else ./tally-registry).
    #[arg(long)]
    registry: Option<PathBuf>,
    #[command(flatten)]
    read: super::ReadArgs,
    #[command(flatten)]
    spill: super::SpillArgs,
}

impl Args {
    /// What to print: `--format`, or json with `--json`; `--json` with
    /// another format is a usage error.
    fn format(&self) -> Result<Format, usage::UsageError> {
        match (self.json, self.format) {
            (true, Some(Format::Json) | None) => Ok(Format::Json),
            (true, Some(other)) => Err(usage::UsageError::new(format!(
                "--json prints the JSON report; it cannot be given with --format {}",
                match other {
                    Format::Text => "text",
                    Format::Json => "json",
                    Format::Html => "html",
                }
            ))),
            (false, format) => Ok(format.unwrap_or(Format::Text)),
        }
    }
}

pub fn execute(args: Args) -> anyhow::Result<ExitCode> {
    let format = args.format()?;
    if !args.outputs.is_empty() {
        return compare_outputs(&args, format);
    }
    usage::ensure(!args.inputs.is_empty(), || {
        "give --input with --rule A --rule B, or two output directories".into()
    })?;
    usage::ensure(args.rules.len() == 2, || {
        format!(
            "give exactly two rules, --rule A --rule B (the current rule, then the candidate); {} given",
            match args.rules.len() {
                0 => "none".to_string(),
                1 => "one".to_string(),
                n => n.to_string(),
            }
        )
    })?;
    let a = super::load_rule(&args.rules[0], args.registry.as_deref(), Default::default())?;
    let b = super::load_rule(&args.rules[1], args.registry.as_deref(), Default::default())?;
    let options = compare::Options {
        top: args.top,
        sample: args.sample,
        batch_size: args.batch_size as usize,
        progress: !args.quiet,
        read: args.read.options(),
    };
    let mut comparison = compare::compare_rules(
        &args.inputs,
        (&a, &args.rules[0]),
        (&b, &args.rules[1]),
        options,
        &args.spill.options(None),
    )
    .context("comparison failed")?;
    comparison.gates = gate::evaluate(&comparison, &args.fail_if);
    let json = serde_json::to_string_pretty(&comparison)? + "\n";
    let text = render::text(&comparison);
    let html = render::html(&comparison);
    if let Some(out) = &args.out {
        render::write_out(out, &comparison)?;
        for (name, body) in [
            ("report.txt", &text),
            ("report.json", &json),
            ("report.html", &html),
        ] {
            let path = out.join(name);
            std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    super::print(match format {
        Format::Text => &text,
        Format::Json => &json,
        Format::Html => &html,
    })?;
    let mut tripped = false;
    for outcome in comparison.gates.iter().filter(|g| g.held) {
        eprintln!(
            "fail-if: {} holds (measured {})",
            outcome.condition, outcome.shown
        );
        tripped = true;
    }
    if tripped {
        return Ok(ExitCode::from(GATE_TRIPPED));
    }
    Ok(ExitCode::SUCCESS)
}

/// `tally compare A B`: two output directories key by key. The options of rule
/// comparisons are refused by clap (they conflict with the directories); a
/// report form this mode does not have is refused here.
fn compare_outputs(args: &Args, format: Format) -> anyhow::Result<ExitCode> {
    usage::ensure(args.outputs.len() == 2, || {
        format!(
            "give exactly two output directories to compare; {} given",
            args.outputs.len()
        )
    })?;
    usage::ensure(format != Format::Html, || {
        "--format html applies to rule comparisons (--input with --rule A --rule B); comparing two output directories prints text or json".into()
    })?;
    let diff = compare::compare_outputs(
        &args.outputs[0],
        &args.outputs[1],
        args.sample.max(args.top),
    )?;
    let text = match format {
        Format::Json => serde_json::to_string_pretty(&diff)?,
        _ => render::output_diff_text(&diff),
    };
    super::print(&text)?;
    Ok(if diff.identical() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(OUTPUTS_DIFFER)
    })
}
