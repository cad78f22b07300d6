//! `tally explain`: what happened to one event.

use std::path::PathBuf;
use std::process::ExitCode;
use tally::explain::{Explanation, explain};
use tally::rule::{shown, shown_name};

/// The version of `tally explain --json`'s report: raised only when a field
/// changes meaning or disappears.
const EXPLAIN_SCHEMA_VERSION: u32 = 1;

/// What `tally explain --json` prints.
#[derive(serde::Serialize)]
struct ExplainReport<'a> {
    /// [`EXPLAIN_SCHEMA_VERSION`].
    schema_version: u32,
    #[serde(flatten)]
    explanation: &'a Explanation,
}

#[derive(clap::Args)]
pub struct Args {
    /// Input files or directories (as for `tally run`).
    #[arg(long = "input", short, required = true, num_args = 1..)]
    inputs: Vec<PathBuf>,
    /// A rule to classify the event with; may be given twice (A and B). A
    /// rule that fails on the event (a panic, a trap, out of fuel) is shown
    /// with its failure, and the panic's message and location, in place of
    /// a verdict.
    #[arg(long = "rule", num_args = 1)]
    rules: Vec<String>,
    /// The event's `event_id`. An id that no input record has is explained
    /// as such, and the command then exits with status 1.
    #[arg(long)]
    event: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
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
    let rules = args
        .rules
        .iter()
        .map(|r| {
            super::load_rule(r, args.registry.as_deref(), Default::default())
                .map(|rule| (rule, r.clone()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let e = explain(
        &args.inputs,
        &rules,
        &args.event,
        &args.read.options(),
        !args.quiet,
    )?;
    if args.json {
        let report = ExplainReport {
            schema_version: EXPLAIN_SCHEMA_VERSION,
            explanation: &e,
        };
        super::print(&serde_json::to_string_pretty(&report)?)?;
    } else {
        let mut text = format!("event {}\n", e.event_id);
        if e.records.is_empty() {
            text.push_str("  no record with this event_id in the input\n");
        }
        // File names and records come from the input: each kept on its
        // line, with nothing a terminal would act on.
        for s in &e.records {
            text.push_str(&format!(
                "  {} {} {}: {}{}\n    {}\n",
                shown_name(&s.file),
                s.position_kind,
                s.position,
                s.status,
                s.note
                    .as_ref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default(),
                shown_name(&s.record.to_string())
            ));
        }
        for v in &e.verdicts {
            let verdict = match (&v.failure, v.payable, v.rate_micros, &v.reason) {
                // The problem is already escaped.
                (Some(failure), ..) => format!("fails: {}", failure.problem),
                (None, Some(payable), Some(rate), Some(reason)) => format!(
                    "{} at {rate} micros, reason {}",
                    if payable { "payable" } else { "not payable" },
                    shown(reason)
                ),
                _ => "no verdict".to_string(),
            };
            text.push_str(&format!(
                "  {}@{} ({}): {verdict}\n",
                shown(&v.rule.name),
                shown(&v.rule.version),
                v.rule.hash.get(..12).unwrap_or(&v.rule.hash),
            ));
        }
        super::print(&text)?;
    }
    // The report is printed all the same (JSON readers get JSON); the exit
    // status tells a script that there was nothing to explain.
    anyhow::ensure!(
        !e.records.is_empty(),
        "no record with event_id {:?} in the input",
        args.event
    );
    Ok(ExitCode::SUCCESS)
}
