//! `tally lineage`: which rule, which inputs and which run produced a number.

use std::path::PathBuf;
use std::process::ExitCode;
use tally::event::parse_day;
use tally::lineage;
use tally::pipeline::PartitionManifest;
use tally::report::money;

/// The version of `tally lineage --json`'s report of partitions: raised only
/// when a field changes meaning or disappears.
const PARTITIONS_SCHEMA_VERSION: u32 = 1;

/// What `tally lineage --json` prints without `--creator` and `--template`:
/// each day partition's manifest, by day.
#[derive(serde::Serialize)]
struct PartitionsReport<'a> {
    /// [`PARTITIONS_SCHEMA_VERSION`].
    schema_version: u32,
    partitions: &'a [PartitionManifest],
}

/// The version of `tally lineage --json`'s report of one row: raised only
/// when a field changes meaning or disappears.
const ROW_SCHEMA_VERSION: u32 = 1;

/// What `tally lineage --day D --creator C --template T --json` prints.
#[derive(serde::Serialize)]
struct RowReport<'a> {
    /// [`ROW_SCHEMA_VERSION`].
    schema_version: u32,
    #[serde(flatten)]
    row: &'a lineage::RowLineage,
}

#[derive(clap::Args)]
pub struct Args {
    /// The output directory.
    out: PathBuf,
    /// One day, YYYY-MM-DD.
    #[arg(long, value_parser = |s: &str| parse_day(s).ok_or(format!("{s:?} is not a date like 2026-05-01")))]
    day: Option<i32>,
    /// With --day and --template: one row's lineage.
    #[arg(long, requires_all = ["day", "template"])]
    creator: Option<String>,
    /// With --day and --creator: one row's lineage.
    #[arg(long, requires_all = ["day", "creator"])]
    template: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn describe(m: &PartitionManifest) -> String {
    let mut text = format!(
        "day        {}\nfile       {} (blake3 {})\nrule       {}@{} blake3 {}\ninputs     fingerprint {}\n",
        m.day,
        m.file,
        m.blake3,
        m.lineage.rule_name,
        m.lineage.rule_version,
        m.lineage.rule_hash,
        m.lineage.input_fingerprint
    );
    if m.lineage.compute_version >= 2 {
        text.push_str(&format!(
            "           the day's events came from {} of the run's {} file(s):\n",
            m.day_inputs.len(),
            m.inputs.len()
        ));
        for input in &m.day_inputs {
            text.push_str(&format!(
                "           {} ({} events, blake3 {})\n",
                tally::rule::shown_name(&input.path),
                input.events,
                input.blake3
            ));
        }
        text.push_str("read       the run read:\n");
    }
    for input in &m.inputs {
        text.push_str(&format!(
            "           {} ({} bytes, blake3 {})\n",
            tally::rule::shown_name(&input.path),
            input.size,
            input.blake3
        ));
    }
    text.push_str(&format!(
        "run        {} (commit {}, tally {}, compute version {})\nrows       {}, {} events, {} payable, amount {}\n",
        m.run_id,
        m.commit,
        m.lineage.tally_version,
        m.lineage.compute_version,
        m.rows,
        m.events,
        m.payable_events,
        money(m.amount_micros)
    ));
    if let Some(scope) = &m.scope {
        text.push_str(&format!(
            "scope      commit {} recomputed the rows of {} creator(s) (list {}); {} row(s) of other creators carried over{}\n",
            m.commit,
            scope.creators,
            scope.list,
            m.carried_rows,
            if m.kept_fingerprint {
                ", with the input fingerprint they were computed from"
            } else {
                ""
            }
        ));
    }
    if !m.rule_hashes.is_empty() {
        text.push_str(&format!(
            "rules      rows stamped with {} rules: {}\n",
            m.rule_hashes.len(),
            m.rule_hashes.join(", ")
        ));
    }
    text
}

pub fn execute(args: Args) -> anyhow::Result<ExitCode> {
    if let (Some(day), Some(creator), Some(template)) = (args.day, &args.creator, &args.template) {
        let row = lineage::row(&args.out, day, creator, template)?;
        let text = if args.json {
            serde_json::to_string_pretty(&RowReport {
                schema_version: ROW_SCHEMA_VERSION,
                row: &row,
            })?
        } else {
            format!(
                "row        {} / {} on {}: {} events, {} payable, amount {} ({} micros)\nstamped    {}\n{}",
                row.creator_id,
                row.template_id,
                row.day,
                row.events,
                row.payable_events,
                money(row.amount_micros),
                row.amount_micros,
                row.rule_hash,
                describe(&row.partition)
            )
        };
        super::print(&text)?;
        return Ok(ExitCode::SUCCESS);
    }
    let partitions = lineage::partitions(&args.out, args.day)?;
    let text = if args.json {
        serde_json::to_string_pretty(&PartitionsReport {
            schema_version: PARTITIONS_SCHEMA_VERSION,
            partitions: &partitions,
        })?
    } else if args.day.is_some() {
        partitions
            .iter()
            .map(describe)
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        partitions
            .iter()
            .map(|m| {
                let mixed = if m.rule_hashes.is_empty() {
                    String::new()
                } else {
                    format!("  MIXED rules ({})", m.rule_hashes.len())
                };
                format!(
                    "{}  commit {}  {}@{} ({})  inputs {}  run {}  {} rows, amount {}{mixed}\n",
                    m.day,
                    m.commit,
                    m.lineage.rule_name,
                    m.lineage.rule_version,
                    m.lineage
                        .rule_hash
                        .get(..12)
                        .unwrap_or(&m.lineage.rule_hash),
                    m.lineage
                        .input_fingerprint
                        .get(..12)
                        .unwrap_or(&m.lineage.input_fingerprint),
                    m.run_id,
                    m.rows,
                    money(m.amount_micros)
                )
            })
            .collect()
    };
    super::print(&text)?;
    Ok(ExitCode::SUCCESS)
}
