//! `tally log` and `tally show`: an output's commit log.

use std::path::PathBuf;
use std::process::ExitCode;
use tally::lineage;
use tally::pipeline::LogEntry;
use tally::report::{money, thousands};

/// The version of `tally log --json`'s report: raised only when a field
/// changes meaning or disappears.
const LOG_SCHEMA_VERSION: u32 = 1;

/// What `tally log --json` prints: the commits, oldest first, each as its
/// `_tally/log/` entry holds it.
#[derive(serde::Serialize)]
struct LogReport<'a> {
    /// [`LOG_SCHEMA_VERSION`].
    schema_version: u32,
    commits: &'a [LogEntry],
}

/// The version of `tally show --json`'s report: raised only when a field
/// changes meaning or disappears.
const SHOW_SCHEMA_VERSION: u32 = 1;

/// What `tally show --json` prints: one commit's `_tally/log/` entry.
#[derive(serde::Serialize)]
struct ShowReport<'a> {
    /// [`SHOW_SCHEMA_VERSION`].
    schema_version: u32,
    #[serde(flatten)]
    commit: &'a LogEntry,
}

#[derive(clap::Args)]
pub struct LogArgs {
    /// The output directory.
    out: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ShowArgs {
    /// The output directory.
    out: PathBuf,
    /// The commit number (as `tally log` lists them).
    commit: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn log(args: LogArgs) -> anyhow::Result<ExitCode> {
    let entries = lineage::log(&args.out)?;
    if args.json {
        let report = LogReport {
            schema_version: LOG_SCHEMA_VERSION,
            commits: &entries,
        };
        super::print(&serde_json::to_string_pretty(&report)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = String::new();
    for e in &entries {
        let window = e
            .window
            .as_ref()
            .map_or("all days".to_string(), |(from, to)| format!("{from}..{to}"));
        let r = &e.reconcile;
        text.push_str(&format!(
            "commit {}  {}  {}@{} ({})  {}  {} partition(s): {} changed, {} added, {} zeroed, {} restamped, {} unchanged  amount {}\n",
            e.commit,
            e.committed_at,
            e.rule.name,
            e.rule.version,
            &e.rule.hash[..12],
            window,
            e.written.len(),
            thousands(r.changed),
            thousands(r.added),
            thousands(r.zeroed),
            thousands(r.restamped),
            thousands(r.unchanged),
            money(e.counts.amount_micros),
        ));
    }
    if entries.is_empty() {
        text.push_str("no commits\n");
    }
    super::print(&text)?;
    Ok(ExitCode::SUCCESS)
}

pub fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let e = lineage::commit(&args.out, args.commit)?;
    if args.json {
        let report = ShowReport {
            schema_version: SHOW_SCHEMA_VERSION,
            commit: &e,
        };
        super::print(&serde_json::to_string_pretty(&report)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = format!(
        "commit     {}\nrun        {}\nat         {}\ntally      {}\nrule       {}@{} blake3 {}\ninputs     {} file(s), fingerprint {}\n",
        e.commit,
        e.run_id,
        e.committed_at,
        e.tally_version,
        e.rule.name,
        e.rule.version,
        e.rule.hash,
        e.inputs.len(),
        e.input_fingerprint
    );
    for input in &e.inputs {
        text.push_str(&format!(
            "           {} ({} bytes, blake3 {})\n",
            input.path, input.size, input.blake3
        ));
    }
    let c = &e.counts;
    let r = &e.reconcile;
    text.push_str(&format!(
        "window     {}\nwritten    {}\nzeroed     {}\ncounts     {} records, {} quarantined, {} duplicates, {} unique, {} payable, amount {}\nrows       {} unchanged, {} changed, {} added, {} zeroed, {} restamped\nchangeset  {}\nquarantine {}\n",
        e.window.as_ref().map_or("all days".to_string(), |(f, t)| format!("{f}..{t}")),
        e.written.join(", "),
        if e.zeroed_days.is_empty() { "-".to_string() } else { e.zeroed_days.join(", ") },
        thousands(c.records),
        thousands(c.quarantined),
        thousands(c.duplicates),
        thousands(c.unique),
        thousands(c.payable),
        money(c.amount_micros),
        thousands(r.unchanged),
        thousands(r.changed),
        thousands(r.added),
        thousands(r.zeroed),
        thousands(r.restamped),
        e.changeset,
        e.quarantine.as_deref().unwrap_or("-")
    ));
    super::print(&text)?;
    Ok(ExitCode::SUCCESS)
}
