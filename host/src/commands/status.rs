//! `tally status`: which published partitions are stale, and why.

use std::path::PathBuf;
use std::process::ExitCode;
use tally::report::thousands;
use tally::rule::{shown_lines, shown_name};
use tally::status::{Cause, InputChange, StatusOptions, StatusReport, status};

/// The version of `tally status --json`'s report: raised only when a field
/// changes meaning or disappears.
const STATUS_SCHEMA_VERSION: u32 = 1;

/// The exit status when some partition is stale (0 when none is).
pub const STALE_EXIT: u8 = 3;

/// What `tally status --json` prints.
#[derive(serde::Serialize)]
struct StatusJson<'a> {
    /// [`STATUS_SCHEMA_VERSION`].
    schema_version: u32,
    #[serde(flatten)]
    report: &'a StatusReport,
}

#[derive(clap::Args)]
pub struct Args {
    /// The output directory.
    #[arg(long)]
    out: PathBuf,
    /// The input files or directories a recompute would read (as `tally run`
    /// takes them).
    #[arg(long = "input", short, required = true, num_args = 1..)]
    inputs: Vec<PathBuf>,
    /// The rule a recompute would run: a component file, a full or short
    /// blake3 hash, `name@version` or `name@tag` from the registry.
    #[arg(long)]
    rule: String,
    /// The rule registry (default: $TALLY_REGISTRY, else ./tally-registry).
    #[arg(long)]
    registry: Option<PathBuf>,
    /// Hash every input file the output recorded, even those whose size and
    /// modification time are as recorded.
    #[arg(long)]
    checksum: bool,
    /// Read the whole survivor index even when looking up the events of the
    /// new input files' records would do: slower, the same report.
    #[arg(long)]
    full_scan: bool,
    /// As `tally run` reads the inputs: a recorded JSON lines file is
    /// checked for lines this limit and the one the output was computed with
    /// read differently.
    #[command(flatten)]
    read: super::ReadArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Never show progress bars.
    #[arg(long)]
    quiet: bool,
}

pub fn execute(args: Args) -> anyhow::Result<ExitCode> {
    let registry = tally::registry::location(args.registry.as_deref());
    let rule = tally::registry::resolve(&args.rule, &registry)?;
    let report = status(&StatusOptions {
        out: args.out,
        inputs: args.inputs,
        rule_hash: rule.hash.to_hex().to_string(),
        checksum: args.checksum,
        full_scan: args.full_scan,
        read: args.read.options(),
        keep: false,
        progress: !args.quiet,
    })?;
    if args.json {
        super::print(&serde_json::to_string_pretty(&StatusJson {
            schema_version: STATUS_SCHEMA_VERSION,
            report: &report,
        })?)?;
    } else {
        super::print(&shown_lines(&render(&report, &args.rule)))?;
    }
    Ok(if report.stale {
        ExitCode::from(STALE_EXIT)
    } else {
        ExitCode::SUCCESS
    })
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// `n` (with thousands separators) and the noun for it.
pub(super) fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", thousands(n), if n == 1 { one } else { many })
}

/// One cause, as a line of the tree.
fn describe(cause: &Cause) -> String {
    match cause {
        Cause::Rule { stamped, given } => {
            format!("rule: stamped {}, given {}", short(stamped), short(given))
        }
        Cause::Compute { stamped, current } => {
            format!("compute version: stamped {stamped}, current {current}")
        }
        Cause::NewEvents { file, events } => {
            format!("{} in {file}", plural(*events, "new event", "new events"))
        }
        Cause::MovedIn { file, events, from } => format!(
            "{} from {}, now surviving in {file}",
            plural(*events, "event moves in", "events move in"),
            from.join(", ")
        ),
        Cause::MovedOut { file, events, to } => format!(
            "{} to {}, now surviving in {file}",
            plural(*events, "event moves out", "events move out"),
            to.join(", ")
        ),
        Cause::Replaced { file, events } => format!(
            "{} now in {file}",
            plural(
                *events,
                "event's surviving record is",
                "events' surviving records are"
            )
        ),
        Cause::RereadFile { file, events } => format!(
            "{file}, read again with another --max-line-bytes, no longer gives the surviving record of {}",
            plural(*events, "event", "events")
        ),
        Cause::Dropped { events } => format!(
            "{} no valid record left",
            plural(*events, "event has", "events have")
        ),
        Cause::ChangedFile {
            file,
            old_blake3,
            new_blake3,
            events,
        } => format!(
            "{file} changed (blake3 {} now {}): it held {}",
            short(old_blake3),
            short(new_blake3),
            plural(*events, "surviving record", "surviving records")
        ),
        Cause::RemovedFile {
            file,
            blake3,
            events,
        } => format!(
            "{file} (blake3 {}) is no longer an input: it held {}",
            short(blake3),
            plural(*events, "surviving record", "surviving records")
        ),
        Cause::Outdated {
            commit,
            stamped_fingerprint,
            expected_fingerprint,
        } => format!(
            "written by commit {commit} from other inputs than the recorded ones give now (fingerprint {}, a recompute stamps {})",
            short(stamped_fingerprint),
            short(expected_fingerprint)
        ),
        Cause::Unpublished { events } => format!(
            "no partition yet: a recompute writes one with {}",
            plural(*events, "event", "events")
        ),
        Cause::NoIndex { reason } => format!("inputs not checked: {reason}"),
        Cause::Days { stale } => format!("stale days: {}", stale.join(", ")),
        Cause::DayChanged {
            day,
            built_from,
            current,
        } => format!(
            "day {day}: built from partition {}, published now {}",
            built_from.as_deref().map_or("none", short),
            current.as_deref().map_or("none", short)
        ),
    }
}

pub(super) fn tree(text: &mut String, causes: &[Cause]) {
    for (i, cause) in causes.iter().enumerate() {
        let branch = if i + 1 == causes.len() {
            "└─"
        } else {
            "├─"
        };
        // A cause names input files: kept on its line.
        text.push_str(&format!("    {branch} {}\n", shown_name(&describe(cause))));
    }
}

/// The report as a readable tree: the inputs, then every day and every
/// derived partition, fresh or stale with its causes.
fn render(report: &StatusReport, rule: &str) -> String {
    let mut text = format!(
        "{}: {} of {} days stale, {} of {} derived partitions stale (rule {rule}, {}; compute version {})\n",
        report.out,
        report.stale_days,
        report.days.len(),
        report.stale_periods,
        report.derived.len(),
        short(&report.rule_hash),
        report.compute_version
    );
    let changes = [
        (InputChange::Unchanged, "unchanged"),
        (InputChange::Touched, "touched"),
        (InputChange::Moved, "moved"),
        (InputChange::New, "new"),
        (InputChange::Changed, "changed"),
        (InputChange::Removed, "removed"),
        (InputChange::Reread, "read again"),
    ];
    let counts: Vec<String> = changes
        .iter()
        .filter_map(|(change, name)| {
            let n = report.inputs.iter().filter(|i| i.change == *change).count();
            (n > 0).then(|| format!("{n} {name}"))
        })
        .collect();
    let read: std::collections::BTreeSet<&str> =
        report.files_read.iter().map(|r| r.path.as_str()).collect();
    text.push_str(&format!(
        "inputs: {}; {} read\n",
        counts.join(", "),
        plural(read.len() as u64, "file", "files")
    ));
    for input in &report.inputs {
        let note = match input.change {
            InputChange::Unchanged | InputChange::Touched => continue,
            InputChange::Moved => format!(
                "moved from {}",
                input.moved_from.as_deref().unwrap_or("another path")
            ),
            InputChange::New | InputChange::Changed => format!(
                "{}, {}",
                if input.change == InputChange::New {
                    "new"
                } else {
                    "changed"
                },
                plural(
                    input.valid_records.unwrap_or(0),
                    "valid record",
                    "valid records"
                )
            ),
            InputChange::Removed => "removed".to_string(),
            InputChange::Reread => format!(
                "read again: --max-line-bytes {} reads its lines otherwise than {}, {}",
                report.max_line_bytes,
                report.index.as_ref().map_or(0, |i| i.max_line_bytes),
                plural(
                    input.valid_records.unwrap_or(0),
                    "valid record",
                    "valid records"
                )
            ),
        };
        text.push_str(&format!(
            "  {}  {}\n",
            shown_name(&input.path),
            shown_name(&note)
        ));
    }
    if let Some(index) = &report.index {
        let layers = match index.layers {
            0 => String::new(),
            n => format!(", {}", plural(n as u64, "layer", "layers")),
        };
        let read = match index.read {
            "lookup" => "; the new records' events looked up",
            _ => "; read whole",
        };
        text.push_str(&format!(
            "survivor index of commit {}: {} of {}{layers}{read}\n",
            index.commit,
            plural(index.records, "record", "records"),
            plural(index.events, "event", "events")
        ));
    }
    text.push_str("daily\n");
    for day in &report.days {
        let state = match (day.stale, day.published) {
            (false, _) => "fresh",
            (true, true) => "STALE",
            (true, false) => "STALE (unpublished)",
        };
        text.push_str(&format!("  {}  {state}\n", day.day));
        tree(&mut text, &day.causes);
    }
    let mut table = "";
    for p in &report.derived {
        if p.table != table {
            table = &p.table;
            text.push_str(&format!("{table}\n"));
        }
        let state = match (p.stale, p.published) {
            (false, _) => "fresh",
            (true, true) => "STALE",
            (true, false) => "STALE (unpublished)",
        };
        text.push_str(&format!("  {}  {state}\n", p.period));
        tree(&mut text, &p.causes);
    }
    text
}
