//! The `tally` command line: one `execute()` per subcommand in `commands/`.

mod commands;

use clap::{CommandFactory, Parser, Subcommand};
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
    #[command(
        after_help = "Examples:\n  tally run --input events/ --rule creator-pay@prod --out out/\n  tally run --input events/ --rule rules/v2.wasm --out out/ --days 2026-05-10..2026-05-12\n  tally run --input s3-copy/ --rule creator-pay@prod --out out/ --memory-limit 2GiB --json\n  tally run --input events/ --input late/ --rule creator-pay@prod --out out/ --stale-only --dry-run\n  tally run --input events/ --rule creator-pay@v2 --out out/ --stale-only --chunk-days 7\n  tally run --input events/ --rule creator-pay@v2 --out out/ --creators disputed.txt"
    )]
    Run(commands::run::Args),
    /// Generate realistic synthetic events (deterministic for a seed).
    #[command(
        after_help = "Examples:\n  tally gen --events 1000000 --out events/\n  tally gen --events 10000000 --format parquet --seed 42 --out events-parquet/\n  tally gen --events 1000000 --populations partners.json --out events-partners/"
    )]
    Gen(commands::generate::Args),
    /// Compare two rules on the same traffic (or two output directories).
    Compare(commands::compare::Args),
    /// Show what happened to one event: where it was read, dedup, verdicts.
    #[command(
        after_help = "Examples:\n  tally explain --input events/ --rule creator-pay@prod --event 34394d31-6080-400d-a8e1-9b75fb24cba6\n  tally explain --input events/ --rule creator-pay@1.0.0 --rule creator-pay@2.0.0 --event e-1 --json"
    )]
    Explain(commands::explain::Args),
    /// List the commits of an output directory.
    #[command(after_help = "Examples:\n  tally log out/\n  tally log out/ --json")]
    Log(commands::log::LogArgs),
    /// Show one commit of an output directory.
    #[command(after_help = "Examples:\n  tally show out/ 2")]
    Show(commands::log::ShowArgs),
    /// Which rule, inputs and run produced a partition or a row.
    #[command(
        after_help = "Examples:\n  tally lineage out/ --day 2026-05-10\n  tally lineage out/ --day 2026-05-10 --creator cr-000042 --template tpl-7 --json"
    )]
    Lineage(commands::lineage::Args),
    /// Recompute published partitions from their recorded inputs and stamped rule.
    #[command(
        after_help = "Examples:\n  tally verify out/ --registry tally-registry/\n  tally verify out/ --day 2026-05-10 --json"
    )]
    Verify(commands::verify::Args),
    /// Which published days (and monthly partitions) a full recompute would
    /// change, and why; exits 3 when any is stale.
    #[command(
        after_help = "Examples:\n  tally status --out out/ --input events/ --rule creator-pay@prod\n  tally status --out out/ --input events/ --input late/ --rule creator-pay@prod --json\n  tally status --out out/ --input events/ --rule creator-pay@prod --checksum || tally run --input events/ --rule creator-pay@prod --out out/ --stale-only"
    )]
    Status(commands::status::Args),
    /// Plan a run as tasks for a batch scheduler: pin the rule, list the
    /// inputs, split them into map tasks over N shards.
    Plan(commands::tasks::PlanArgs),
    /// Run one map task of a plan: read and validate its inputs into shards.
    #[command(after_help = "Examples:\n  tally map --work work/ --task 0")]
    Map(commands::tasks::MapArgs),
    /// Run one reduce task of a plan: dedup, classify and sum one shard.
    #[command(after_help = "Examples:\n  tally reduce --work work/ --shard 3")]
    Reduce(commands::tasks::ReduceArgs),
    /// Check every task of a plan, merge the shards and commit the output.
    #[command(after_help = "Examples:\n  tally commit --work work/ --json")]
    Commit(commands::tasks::CommitArgs),
    /// Build, test, inspect, publish, tag and verify rule components.
    #[command(
        subcommand,
        after_help = "Examples:\n  tally rule build rules/creator-pay-v2 --out creator-pay-v2.wasm\n  tally rule test rules/creator-pay-v2\n  tally rule publish rules/creator-pay-v2 --registry tally-registry/\n  tally rule tag creator-pay prod creator-pay@2.0.0\n  tally rule list --json"
    )]
    Rule(commands::rule::Command),
    /// Serve an output from a database: apply each of its commits exactly once.
    #[command(
        subcommand,
        after_help = "Examples:\n  tally sink postgres --out out/ --url postgresql://tally@db.internal/serving\n  TALLY_POSTGRES_URL='postgresql://tally@/serving?host=/run/postgresql' tally sink postgres --out out/ --dry-run"
    )]
    Sink(commands::sink::Command),
    /// Print a shell completion script for tally on stdout.
    #[command(
        after_help = "Examples:\n  tally completions bash > /etc/bash_completion.d/tally\n  tally completions zsh > \"${fpath[1]}/_tally\"\n  tally completions fish > ~/.config/fish/completions/tally.fish"
    )]
    Completions(commands::docs::CompletionsArgs),
    /// Write man pages, one per command, into a directory.
    #[command(
        after_help = "Examples:\n  tally man --out /usr/local/share/man/man1\n  man -l /usr/local/share/man/man1/tally-run.1"
    )]
    Man(commands::docs::ManArgs),
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
        Command::Status(args) => commands::status::execute(args),
        Command::Plan(args) => commands::tasks::plan(args),
        Command::Map(args) => commands::tasks::map(args),
        Command::Reduce(args) => commands::tasks::reduce(args),
        Command::Commit(args) => commands::tasks::commit(args),
        Command::Rule(command) => commands::rule::execute(command),
        Command::Sink(command) => commands::sink::execute(command),
        Command::Completions(args) => commands::docs::completions(args, Cli::command()),
        Command::Man(args) => commands::docs::man(args, Cli::command()),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            if commands::is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            // Errors name input files and carry text from rules: no
            // terminal control reaches stderr through them.
            eprintln!("error: {}", tally::rule::shown_lines(&format!("{err:#}")));
            if commands::usage::is_usage_error(&err) {
                return ExitCode::from(commands::usage::EXIT);
            }
            ExitCode::FAILURE
        }
    }
}
