//! The `tally` command line: one `execute()` per subcommand in `commands/`.

mod commands;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Streams content-usage events through sandboxed WebAssembly rules into
/// lineage-stamped daily totals.
#[derive(Parser)]
#[command(name = "tally", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline: ingest, validate, dedup, classify, aggregate, commit.
    Run(commands::run::Args),
    /// Generate realistic synthetic events (deterministic for a seed).
    Gen(commands::generate::Args),
    /// Compare two rules on the same traffic (or two output directories).
    Compare(commands::compare::Args),
    /// Show what happened to one event: where it was read, dedup, verdicts.
    Explain(commands::explain::Args),
    /// List the commits of an output directory.
    Log(commands::log::LogArgs),
    /// Show one commit of an output directory.
    Show(commands::log::ShowArgs),
    /// Which rule, inputs and run produced a partition or a row.
    Lineage(commands::lineage::Args),
    /// Recompute published partitions from their recorded inputs and stamped rule.
    Verify(commands::verify::Args),
    /// Plan a run as tasks for a batch scheduler: pin the rule, list the
    /// inputs, split them into map tasks over N shards.
    Plan(commands::tasks::PlanArgs),
    /// Run one map task of a plan: read and validate its inputs into shards.
    Map(commands::tasks::MapArgs),
    /// Run one reduce task of a plan: dedup, classify and sum one shard.
    Reduce(commands::tasks::ReduceArgs),
    /// Check every task of a plan, merge the shards and commit the output.
    Commit(commands::tasks::CommitArgs),
    /// Build, inspect, publish, tag and verify rule components.
    #[command(subcommand)]
    Rule(commands::rule::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => commands::run::execute(args),
        Command::Gen(args) => commands::generate::execute(args),
        Command::Compare(args) => commands::compare::execute(args),
        Command::Explain(args) => commands::explain::execute(args),
        Command::Log(args) => commands::log::log(args),
        Command::Show(args) => commands::log::show(args),
        Command::Lineage(args) => commands::lineage::execute(args),
        Command::Verify(args) => commands::verify::execute(args),
        Command::Plan(args) => commands::tasks::plan(args),
        Command::Map(args) => commands::tasks::map(args),
        Command::Reduce(args) => commands::tasks::reduce(args),
        Command::Commit(args) => commands::tasks::commit(args),
        Command::Rule(command) => commands::rule::execute(command),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            if commands::is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            if commands::usage::is_usage_error(&err) {
                return ExitCode::from(commands::usage::EXIT);
            }
            ExitCode::FAILURE
        }
    }
}
