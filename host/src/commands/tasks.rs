//! `tally plan`, `map`, `reduce` and `commit`: the phases of a run as tasks
//! over a work directory, for batch schedulers.

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use tally::report::{FailedRun, RunResult};
use tally::rule::Limits;
use tally::tasks::{self, PlanOptions, TaskOutcome};

#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  tally plan --input events/ --rule creator-pay@prod --out out --work work --shards 16\n  seq 0 $(( $(jq '.tasks | length' work/plan.json) - 1 )) | xargs -P4 -I{} tally map --work work --task {}\n  seq 0 15 | xargs -P2 -I{} tally reduce --work work --shard {}\n  tally commit --work work"
)]
pub struct PlanArgs {
    /// Input files or directories (searched recursively).
    #[arg(long = "input", short, required = true, num_args = 1..)]
    inputs: Vec<PathBuf>,
    /// The rule: a component file, a hash, `name@version` or `name@tag`; its
    /// hash is pinned for every task.
    #[arg(long)]
    rule: String,
    /// The rule registry (default: $TALLY_REGISTRY, else ./tally-registry).
    #[arg(long)]
    registry: Option<PathBuf>,
    /// The output directory `tally commit` writes.
    #[arg(long)]
    out: PathBuf,
    /// The work directory (created; must not hold a plan yet).
    #[arg(long)]
    work: PathBuf,
    /// Shards by `event_id`: one reduce task each.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=tally::shard::MAX_SHARDS as i64))]
    shards: u32,
    /// Input bytes per map task, for example `1GiB` (files are never split).
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_task_size)]
    task_size: u64,
    /// Recompute only these days, `FROM..TO` inclusive.
    #[arg(long, value_parser = tally::event::parse_day_range, value_name = "FROM..TO")]
    days: Option<(i32, i32)>,
    /// Events per rule call.
    #[arg(long, default_value_t = tally::pipeline::DEFAULT_BATCH_SIZE as u32, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Memory cap of the rule sandbox, in MiB.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    rule_memory_mib: u32,
    /// Fuel per event classified.
    #[arg(long, default_value_t = Limits::default().fuel_per_event)]
    fuel_per_event: u64,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
    /// Never show progress bars.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    read: super::ReadArgs,
}

fn parse_task_size(text: &str) -> Result<u64, String> {
    tally::shard::memory::parse_bytes(text).map(|bytes| bytes.max(1))
}

#[derive(clap::Args)]
pub struct MapArgs {
    /// The work directory `tally plan` wrote.
    #[arg(long)]
    work: PathBuf,
    /// The map task, from 0.
    #[arg(long)]
    task: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Never show progress bars.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
pub struct ReduceArgs {
    /// The work directory `tally plan` wrote.
    #[arg(long)]
    work: PathBuf,
    /// The shard, from 0.
    #[arg(long)]
    shard: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Never show progress bars.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
pub struct CommitArgs {
    /// The work directory, every map and reduce task done.
    #[arg(long)]
    work: PathBuf,
    /// Also write the JSON run report to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Print the JSON run report instead of the summary.
    #[arg(long)]
    json: bool,
    /// Never show progress bars.
    #[arg(long)]
    quiet: bool,
}

pub fn plan(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let limits = Limits {
        memory_bytes: (args.rule_memory_mib as usize) << 20,
        fuel_per_event: args.fuel_per_event,
        ..Limits::default()
    };
    let registry = tally::registry::location(args.registry.as_deref());
    let loaded = tally::registry::load(&args.rule, &registry, limits)?;
    let options = PlanOptions {
        inputs: args.inputs,
        rule: loaded.rule,
        rule_bytes: loaded.resolved.bytes.clone(),
        rule_reference: args.rule,
        limits,
        out: args.out,
        work: args.work,
        shards: args.shards,
        task_bytes: args.task_size,
        read: args.read.options(),
        batch_size: args.batch_size as usize,
        days: args.days,
        progress: !args.quiet,
    };
    let plan = tasks::plan(&options).context("plan failed")?;
    if args.json {
        let report = PlanReport {
            schema_version: PLAN_SCHEMA_VERSION,
            plan: &plan,
        };
        super::print(&serde_json::to_string_pretty(&report)?)?;
    } else {
        super::print(&format!(
            "planned {} map task(s) over {} file(s) and {} shard(s) in {}\nrule {}@{} blake3 {}\nnext: tally map --work {} --task I (I = 0..{}), then tally reduce --work {} --shard K (K = 0..{}), then tally commit --work {}",
            plan.tasks.len(),
            plan.files.len(),
            plan.shards,
            options.work.display(),
            tally::rule::shown(&plan.rule.name),
            tally::rule::shown(&plan.rule.version),
            plan.rule.hash,
            options.work.display(),
            plan.tasks.len() - 1,
            options.work.display(),
            plan.shards - 1,
            options.work.display(),
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The version of `tally plan --json`'s report: raised only when a field
/// changes meaning or disappears.
const PLAN_SCHEMA_VERSION: u32 = 1;

/// What `tally plan --json` prints: the plan as `W/plan.json` holds it.
#[derive(serde::Serialize)]
struct PlanReport<'a> {
    /// [`PLAN_SCHEMA_VERSION`].
    schema_version: u32,
    #[serde(flatten)]
    plan: &'a tasks::Plan,
}

/// The version of `tally map --json`'s and `tally reduce --json`'s report:
/// raised only when a field changes meaning or disappears.
const TASK_SCHEMA_VERSION: u32 = 1;

/// What `tally map --json` and `tally reduce --json` print.
#[derive(serde::Serialize)]
struct TaskReport<'a> {
    /// [`TASK_SCHEMA_VERSION`].
    schema_version: u32,
    #[serde(flatten)]
    outcome: &'a TaskOutcome,
}

fn outcome(outcome: &TaskOutcome, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        let report = TaskReport {
            schema_version: TASK_SCHEMA_VERSION,
            outcome,
        };
        super::print(&serde_json::to_string_pretty(&report)?)?;
    } else if outcome.ran {
        super::print(&format!(
            "{}: {} records in {:.2}s, published {}",
            outcome.task,
            tally::report::thousands(outcome.records),
            outcome.seconds,
            outcome.directory
        ))?;
    } else {
        super::print(&format!(
            "{}: already done ({}), nothing run again",
            outcome.task, outcome.directory
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn map(args: MapArgs) -> anyhow::Result<ExitCode> {
    let done = tasks::map(&args.work, args.task, !args.quiet)
        .with_context(|| format!("map task {} failed; nothing was published", args.task))?;
    outcome(&done, args.json)
}

pub fn reduce(args: ReduceArgs) -> anyhow::Result<ExitCode> {
    let done = tasks::reduce(&args.work, args.shard, !args.quiet).with_context(|| {
        format!(
            "reduce of shard {} failed; nothing was published",
            args.shard
        )
    })?;
    outcome(&done, args.json)
}

pub fn commit(args: CommitArgs) -> anyhow::Result<ExitCode> {
    // What the report of a failed commit can say comes from the plan; a plan
    // that cannot be read fails the commit too, and the report then names
    // only the work directory.
    let plan = tasks::read_plan(&args.work).ok();
    let rule_reference = plan.as_ref().map(|p| p.rule.path.clone());
    let inputs_given: Vec<String> = plan
        .as_ref()
        .map(|p| p.files.iter().map(|f| f.name.clone()).collect())
        .unwrap_or_default();
    let work = Some(args.work.display().to_string());
    let outcome = tasks::commit(&args.work, !args.quiet)
        .context("commit failed; the output directory is as it was");
    let result = match &outcome {
        Ok(report) => RunResult::succeeded(report.clone(), rule_reference, inputs_given, work),
        Err(err) => RunResult::failed(
            format!("{err:#}"),
            rule_reference,
            inputs_given,
            work,
            FailedRun {
                tally_version: tally::pipeline::VERSION.to_string(),
                rule: plan.as_ref().map(|p| p.rule.clone()),
                output: plan.as_ref().map(|p| p.out.clone()),
                window: plan
                    .as_ref()
                    .and_then(|p| tally::report::window_text(p.days)),
            },
        ),
    };
    super::run::conclude(outcome, &result, args.json, args.report.as_deref())
}
