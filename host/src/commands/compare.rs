//! `tally compare`: two rules on the same traffic, or two published outputs.

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use tally::compare::{self, gate, render};

/// Exit status when a `--fail-if` condition holds.
pub const GATE_TRIPPED: u8 = 3;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Html,
}

#[derive(clap::Args)]
pub struct Args {
    /// Two output directories to compare key by key (instead of --input and --rule).
    #[arg(conflicts_with_all = ["inputs", "rules"])]
    outputs: Vec<PathBuf>,
    /// Input files or directories (as for `tally run`).
    #[arg(long = "input", short, num_args = 1..)]
    inputs: Vec<PathBuf>,
    /// The current rule (A), then the candidate (B).
    #[arg(long = "rule", num_args = 1)]
    rules: Vec<String>,
    /// Write deltas.parquet, changed-sample.parquet and the report in every
    /// form (report.txt, report.json, report.html) into this directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// What to print on stdout.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Creators and templates listed each way.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Changed events in the sample.
    #[arg(long, default_value_t = 20)]
    sample: usize,
    /// Events per rule call.
    #[arg(long, default_value_t = tally::pipeline::DEFAULT_BATCH_SIZE as u32, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Fail (exit 3) when a condition holds, e.g. `relative-amount-change>=0.05`
    /// or `changed-share>0.01`; may be repeated.
    #[arg(long = "fail-if", value_name = "METRIC>=X")]
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
}

pub fn execute(args: Args) -> anyhow::Result<ExitCode> {
    if !args.outputs.is_empty() {
        anyhow::ensure!(
            args.outputs.len() == 2,
            "give exactly two output directories to compare"
        );
        anyhow::ensure!(
            args.fail_if.is_empty(),
            "--fail-if applies to rule comparisons"
        );
        let diff = compare::compare_outputs(
            &args.outputs[0],
            &args.outputs[1],
            args.sample.max(args.top),
        )?;
        let text = match args.format {
            Format::Json => serde_json::to_string_pretty(&diff)?,
            _ => render::output_diff_text(&diff),
        };
        super::print(&text)?;
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::ensure!(
        !args.inputs.is_empty(),
        "give --input with --rule A --rule B, or two output directories"
    );
    anyhow::ensure!(
        args.rules.len() == 2,
        "give exactly two rules: --rule A --rule B"
    );
    let a = super::load_rule(&args.rules[0], args.registry.as_deref(), Default::default())?;
    let b = super::load_rule(&args.rules[1], args.registry.as_deref(), Default::default())?;
    let options = compare::Options {
        top: args.top,
        sample: args.sample,
        batch_size: args.batch_size as usize,
        progress: !args.quiet,
        read: args.read.options(),
    };
    let comparison = compare::compare_rules(
        &args.inputs,
        (&a, &args.rules[0]),
        (&b, &args.rules[1]),
        options,
    )
    .context("comparison failed")?;
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
    super::print(match args.format {
        Format::Text => &text,
        Format::Json => &json,
        Format::Html => &html,
    })?;
    let tripped = gate::tripped(&comparison, &args.fail_if);
    if !tripped.is_empty() {
        for (condition, value) in &tripped {
            eprintln!("fail-if: {condition} holds (measured {value})");
        }
        return Ok(ExitCode::from(GATE_TRIPPED));
    }
    Ok(ExitCode::SUCCESS)
}
