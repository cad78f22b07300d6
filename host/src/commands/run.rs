//! `tally run`: the pipeline, end to end.

use super::status::plural;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tally::backfill::{BackfillOptions, Plan};
use tally::pipeline::{RunOptions, run_scoped};
use tally::report::{FailedRun, RuleSummary, RunReport, RunResult, Status};
use tally::rule::{Limits, Rule};
use tally::status::{ForRun, InputChange, StatusOptions};

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
    /// Write only the days `tally status` finds stale (with the same rule and
    /// inputs), and the days that have events but no partition yet; fresh
    /// days keep their bytes and their commit. Nothing stale: nothing is
    /// written. The written partitions are those a full recompute writes.
    /// When new input files only add events, only they are read and their
    /// events are added to the published rows. When a recorded file changed
    /// or went (or the new files cannot simply be added), only the files
    /// holding records of the stale days' events are read, where those are
    /// fewer than every file.
    #[arg(long)]
    stale_only: bool,
    /// Commit the days in windows of at most N days, each its own commit
    /// (the inputs are read once). After a failure the commits made stay;
    /// rerun with --stale-only to write only the days not committed yet.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    chunk_days: Option<u32>,
    /// Print what the run would write (the days and why, the commits, the
    /// inputs it reads) and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Recompute only the rows of these creators (a file, one creator id a
    /// line): every other creator's published rows stay as they are, with
    /// the rule hash they were stamped with. Only days where they have rows
    /// (published or new) are written. The list is kept in the output and
    /// the commit records it. Goes with --stale-only, --chunk-days and
    /// --dry-run.
    #[arg(long, value_name = "FILE")]
    creators: Option<PathBuf>,
    /// With --stale-only or --dry-run: hash every input file the output
    /// recorded to tell whether it changed, even those whose size and
    /// modification time are as recorded.
    #[arg(long)]
    checksum: bool,
    #[command(flatten)]
    read: super::ReadArgs,
    #[command(flatten)]
    spill: super::SpillArgs,
}

pub fn execute(args: Args) -> anyhow::Result<ExitCode> {
    if args.stale_only || args.chunk_days.is_some() || args.dry_run {
        return backfill(args);
    }
    if args.checksum {
        anyhow::bail!("--checksum goes with --stale-only or --dry-run");
    }
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
    let scope = match &args.creators {
        Some(path) => Some(tally::scope::CreatorScope::read(path)?),
        None => None,
    };
    let (options, rule) = load(args, loaded)?;
    let had_output = tally::layout::is_output(&options.out);
    run_scoped(&options, rule, scope.as_ref()).context(if had_output {
        "run failed; the previous output is untouched"
    } else {
        "run failed; nothing was written"
    })
}

/// Loads the rule (saying what it is in `loaded`) and makes the run's options.
fn load(args: Args, loaded: &mut Option<RuleSummary>) -> anyhow::Result<(RunOptions, Rule)> {
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
    Ok((options, rule))
}

/// The version of the JSON report of `tally run --stale-only`,
/// `--chunk-days` or `--dry-run`: raised only when a field changes meaning or
/// disappears.
pub const BACKFILL_REPORT_SCHEMA_VERSION: u32 = 1;

/// What `tally run --stale-only`, `--chunk-days` or `--dry-run` reports:
/// the plan, and the report of every commit made (none for a dry run, or
/// when nothing is stale).
#[derive(serde::Serialize)]
struct BackfillResult {
    /// [`BACKFILL_REPORT_SCHEMA_VERSION`].
    schema_version: u32,
    status: Status,
    error: Option<String>,
    dry_run: bool,
    rule_reference: String,
    rule: Option<RuleSummary>,
    inputs_given: Vec<String>,
    output: String,
    plan: Option<Plan>,
    commits: Vec<RunReport>,
}

/// `tally run` with `--stale-only`, `--chunk-days` or `--dry-run`: plans
/// which days to write from the output's status, then (unless a dry run)
/// computes once and commits window by window.
fn backfill(args: Args) -> anyhow::Result<ExitCode> {
    let (json, file, dry_run, checksum) =
        (args.json, args.report.clone(), args.dry_run, args.checksum);
    let mut backfill = BackfillOptions {
        stale_only: args.stale_only,
        chunk_days: args.chunk_days,
        creators: None,
    };
    let mut result = BackfillResult {
        schema_version: BACKFILL_REPORT_SCHEMA_VERSION,
        status: Status::Succeeded,
        error: None,
        dry_run,
        rule_reference: args.rule.clone(),
        rule: None,
        inputs_given: args
            .inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        output: args.out.display().to_string(),
        plan: None,
        commits: Vec::new(),
    };
    let outcome = (|| -> anyhow::Result<()> {
        let scope = match &args.creators {
            Some(path) => Some(tally::scope::CreatorScope::read(path)?),
            None => None,
        };
        backfill.creators = scope.as_ref().map(tally::scope::CreatorScope::len);
        let (options, rule) = load(args, &mut result.rule)?;
        let status_for_run = |full_scan: bool, earlier: Option<&tally::status::NewRead>| {
            tally::status::status_for_run_with(
                &StatusOptions {
                    out: options.out.clone(),
                    inputs: options.inputs.clone(),
                    rule_hash: rule.hash.to_hex().to_string(),
                    checksum,
                    full_scan,
                    read: options.read,
                    // Only an incremental run, from the lookup, takes them.
                    keep: !full_scan,
                    progress: options.progress,
                },
                earlier,
            )
            .context("telling which days are stale")
        };
        let (status, mut late) = if tally::layout::is_output(&options.out) {
            let (status, late) = status_for_run(false, None)?;
            (Some(status), late)
        } else {
            (None, None)
        };
        let files = tally::ingest::discover(&options.inputs)?;
        let sizes: Vec<(String, u64)> = files
            .iter()
            .map(|f| (f.path.display().to_string(), f.size))
            .collect();
        // Reading only some files, a run reads them in memory.
        let in_memory = tally::shard::SpillOptions {
            shards: None,
            ..options.spill.clone()
        };
        let fits = |positions: &[usize]| {
            let subset: Vec<_> = positions
                .iter()
                .filter_map(|&at| files.get(at).cloned())
                .collect();
            in_memory.shards_for(&subset) == 1
        };
        let mut plan = tally::backfill::plan(
            status.as_ref(),
            late.as_ref(),
            options.days,
            backfill,
            &sizes,
            &fits,
        );
        // The new files alone cannot be applied (another rule, too many
        // index layers, ...): read whole, the index may still tell a few
        // files the stale days need. Not when the files holding the days'
        // survivors are every file already.
        let planned_days: std::collections::BTreeSet<String> =
            plan.days.iter().map(|d| d.day.clone()).collect();
        let survivor_files = match &late {
            Some(ForRun::Lookup(l)) => Some(l.survivor_files(&planned_days).len()),
            _ => None,
        };
        let recomputes_stale = plan.scope == tally::backfill::Scope::Stale
            && plan.writes()
            && !plan.incremental
            && scope.is_none();
        if recomputes_stale && survivor_files == Some(files.len()) {
            plan.reads
                .push_str(", and every input file holds survivors of the written days' events");
        }
        if recomputes_stale && survivor_files.is_some_and(|n| n < files.len()) {
            // The new files the lookup read are not read again.
            let earlier = match &late {
                Some(ForRun::Lookup(l)) => l.read.as_ref(),
                _ => None,
            };
            let (whole_status, whole) = status_for_run(true, earlier)?;
            let narrowed = tally::backfill::plan(
                Some(&whole_status),
                whole.as_ref(),
                options.days,
                backfill,
                &sizes,
                &fits,
            );
            if narrowed.partial {
                (plan, late) = (narrowed, whole);
            } else {
                plan.reads = narrowed.reads;
            }
        }
        if let Some(scope) = &scope {
            tally::backfill::count_creator_rows(&mut plan, &options.out, scope)
                .context("reading the planned days' partitions")?;
        }
        if !json && !dry_run {
            eprint!("{}", render_plan(&plan, false));
        }
        result.plan = Some(plan.clone());
        if dry_run {
            return Ok(());
        }
        let had_output = tally::layout::is_output(&options.out);
        let ran = tally::backfill::run(
            &options,
            rule,
            &plan,
            late,
            backfill.chunk_days,
            scope.as_ref(),
            &mut |report| {
                if !json {
                    eprintln!(
                        "committed {}: days {}",
                        report.commit,
                        report.window.as_ref().map_or_else(
                            || "all".to_string(),
                            |(from, to)| format!("{from}..{to}")
                        )
                    );
                }
            },
        );
        match ran {
            Ok(reports) => {
                result.commits = reports;
                Ok(())
            }
            Err(failed) => {
                let made = failed.committed.len();
                result.commits = failed.committed;
                Err(anyhow::Error::new(*failed.source).context(match (made, had_output) {
                    (0, true) => "run failed; the previous output is untouched".to_string(),
                    (0, false) => "run failed; nothing was written".to_string(),
                    (n, _) => format!(
                        "run failed after {n} commit{}; those stay, the days of the others are as they were (rerun with --stale-only to write the rest)",
                        if n == 1 { "" } else { "s" }
                    ),
                }))
            }
        }
    })();
    if let Err(err) = &outcome {
        result.status = Status::Failed;
        result.error = Some(format!("{err:#}"));
    }
    let text = serde_json::to_string_pretty(&result)? + "\n";
    if let Some(path) = &file {
        let written =
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()));
        if outcome.is_ok() {
            written?;
        } else if let Err(problem) = written {
            eprintln!("warning: the report of the failed run was not written: {problem:#}");
        }
    }
    match outcome {
        Ok(()) => {
            if json {
                super::print(&text)?;
            } else {
                let mut summary = match (&result.plan, dry_run) {
                    (Some(plan), true) => render_plan(plan, true),
                    _ => String::new(),
                };
                for report in &result.commits {
                    summary.push_str(&report.to_string());
                }
                if result.commits.is_empty() && !dry_run {
                    summary.push_str(match &result.plan {
                        Some(plan) if plan.creators.is_some() && plan.writes() => {
                            "nothing to write: the listed creators have no rows on the days to write\n"
                        }
                        _ => "nothing to write: every day is fresh\n",
                    });
                }
                if !summary.is_empty() {
                    super::print(&summary)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            if json {
                super::print_report_of_failure(&text);
            }
            Err(err)
        }
    }
}

/// The plan as text: what is written, why, in which commits, and what is read.
fn render_plan(plan: &Plan, dry_run: bool) -> String {
    let mut text = format!(
        "{}plan: {}\n",
        if dry_run {
            "dry run, nothing is written; "
        } else {
            ""
        },
        plan.reason
    );
    if let Some((from, to)) = &plan.window {
        text.push_str(&format!("  window: {from}..{to}\n"));
    }
    let events: Option<u64> = plan.days.iter().map(|d| d.events).sum();
    let with_rows = plan
        .days
        .iter()
        .filter(|d| d.creator_rows.is_some_and(|n| n > 0))
        .count();
    let events = events.map_or_else(String::new, |e| {
        format!(" ({})", plural(e, "event", "events"))
    });
    let fresh = plural(plan.fresh_days as u64, "fresh day", "fresh days");
    text.push_str(&match plan.creators {
        None => format!(
            "  {} to write{events}, {fresh} left as they are\n",
            plural(plan.days.len() as u64, "day", "days"),
        ),
        Some(_) => format!(
            "  {}{events}, each written if the listed creators have rows on it ({with_rows} with published rows of theirs), {fresh} left as they are\n",
            plural(plan.days.len() as u64, "candidate day", "candidate days"),
        ),
    });
    for day in &plan.days {
        let state = match (day.stale, day.published) {
            (Some(false), _) => "fresh",
            (Some(true), true) => "stale",
            (None, true) => "published",
            (_, false) => "unpublished",
        };
        let events = day.events.map_or_else(String::new, |e| {
            format!(", {}", plural(e, "event", "events"))
        });
        let rows = day.creator_rows.map_or_else(String::new, |n| {
            format!(
                ", {} of the listed creators",
                plural(n, "published row", "published rows")
            )
        });
        text.push_str(&format!("  {}  {state}{events}{rows}\n", day.day));
        super::status::tree(&mut text, &day.causes);
    }
    if !plan.days_known {
        text.push_str("  days without a partition yet are known only once the inputs are read\n");
    }
    if !plan.writes() {
        text.push_str("  nothing to write: every day is fresh\n");
    } else if plan.commits.is_empty() {
        text.push_str("  commits: windows of the days found once the inputs are read\n");
    } else {
        text.push_str(&format!(
            "  {}:\n",
            plural(plan.commits.len() as u64, "commit", "commits")
        ));
    }
    for c in &plan.commits {
        text.push_str(&format!(
            "    {}..{} ({})\n",
            c.from,
            c.to,
            plural(c.days as u64, "day", "days")
        ));
    }
    if plan.writes() {
        text.push_str(&format!(
            "  {}: {} ({} bytes)\n",
            match (plan.incremental, plan.displaced) {
                (true, 0) =>
                    "reads only the new input files, adding their events to the published rows"
                        .to_string(),
                (true, n) => format!(
                    "reads the new input files and the files of the {} they displace, adding and taking off their events",
                    plural(n as u64, "recorded survivor", "recorded survivors")
                ),
                (false, _) if plan.partial =>
                    "reads only the input files holding records of the written days' events, recomputing those days from them"
                        .to_string(),
                (false, _) => "reads every input file".to_string(),
            },
            plural(plan.input_files as u64, "file", "files"),
            tally::report::thousands(plan.input_bytes)
        ));
        if !plan.incremental && !plan.partial && plan.scope == tally::backfill::Scope::Stale {
            let why = plan.reads.strip_prefix("every input file is read: ");
            text.push_str(&format!("    ({})\n", why.unwrap_or(&plan.reads)));
        }
    }
    // The inputs that changed since the last commit: what makes days stale.
    for input in &plan.inputs {
        let change = match input.change {
            InputChange::Unchanged | InputChange::Touched => continue,
            InputChange::New => "new",
            InputChange::Changed => "changed",
            InputChange::Moved => "moved",
            InputChange::Removed => "removed",
            InputChange::Reread => "read again (--max-line-bytes)",
        };
        let records = input.valid_records.map_or_else(String::new, |n| {
            format!(", {}", plural(n, "valid record", "valid records"))
        });
        text.push_str(&format!(
            "    {}  {change}{records}\n",
            tally::rule::shown_name(&input.path)
        ));
    }
    // Causes name input files: their names reach a terminal escaped.
    tally::rule::shown_lines(&text).into_owned()
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
