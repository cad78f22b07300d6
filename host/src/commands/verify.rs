//! `tally verify`: recompute published partitions and compare.

use std::path::PathBuf;
use std::process::ExitCode;
use tally::event::parse_day;
use tally::pipeline::RunError;
use tally::verify::{VerifyReport, verify};

/// The version of `tally verify --json`'s report: raised only when a field
/// changes meaning or disappears.
const VERIFY_SCHEMA_VERSION: u32 = 1;

/// What `tally verify --json` prints.
#[derive(serde::Serialize)]
struct VerifyJson<'a> {
    /// [`VERIFY_SCHEMA_VERSION`].
    schema_version: u32,
    #[serde(flatten)]
    report: &'a VerifyReport,
}

#[derive(clap::Args)]
pub struct Args {
    /// The output directory.
    out: PathBuf,
    /// Only this day, YYYY-MM-DD.
    #[arg(long, value_parser = |s: &str| parse_day(s).ok_or(format!("{s:?} is not a date like 2026-05-01")))]
    day: Option<i32>,
    /// The rule registry the stamped rules are fetched from (default:
    /// $TALLY_REGISTRY, else ./tally-registry).
    #[arg(long)]
    registry: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Never show progress bars.
    #[arg(long)]
    quiet: bool,
}

pub fn execute(args: Args) -> anyhow::Result<ExitCode> {
    let registry = tally::registry::location(args.registry.as_deref());
    let load = |hash: &str| -> Result<tally::rule::Rule, RunError> {
        tally::registry::load_rule(hash, &registry, Default::default()).map_err(|e| {
            RunError::RuleUnavailable(format!(
                "rule {hash} cannot be fetched from the registry {}: {e}",
                registry.display()
            ))
        })
    };
    let report = verify(
        &args.out,
        args.day,
        tally::pipeline::DEFAULT_BATCH_SIZE,
        !args.quiet,
        &load,
    )?;
    if args.json {
        super::print(&serde_json::to_string_pretty(&VerifyJson {
            schema_version: VERIFY_SCHEMA_VERSION,
            report: &report,
        })?)?;
    } else {
        let mut text = String::new();
        for p in &report.partitions {
            if p.identical {
                text.push_str(&format!(
                    "{}  identical  (commit {}, rule {})\n",
                    p.day,
                    p.commit,
                    &p.rule_hash[..12]
                ));
                continue;
            }
            text.push_str(&format!(
                "{}  DIFFERS    (commit {}, {} difference(s))\n",
                p.day, p.commit, p.difference_count
            ));
            for d in &p.differences {
                let key = if d.key.is_empty() {
                    String::new()
                } else {
                    format!("{}: ", d.key)
                };
                text.push_str(&format!(
                    "    {key}{}: expected {}, found {}\n",
                    d.what, d.expected, d.actual
                ));
            }
        }
        for d in &report.derived {
            if d.identical {
                text.push_str(&format!(
                    "{} {}  identical  (commit {}, the sums of its days)\n",
                    d.table, d.period, d.commit
                ));
                continue;
            }
            text.push_str(&format!(
                "{} {}  DIFFERS    (commit {}, {} difference(s))\n",
                d.table, d.period, d.commit, d.difference_count
            ));
            for x in &d.differences {
                let key = if x.key.is_empty() {
                    String::new()
                } else {
                    format!("{}: ", tally::rule::shown_name(&x.key))
                };
                text.push_str(&format!(
                    "    {key}{}: expected {}, found {}\n",
                    x.what, x.expected, x.actual
                ));
            }
        }
        text.push_str(if report.identical() {
            "all partitions identical to their recomputation\n"
        } else {
            "some partitions differ from their recomputation\n"
        });
        super::print(&text)?;
    }
    Ok(if report.identical() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
