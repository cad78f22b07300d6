//! `tally sink postgres`: applies an output's commits to a PostgreSQL table.

use super::usage::UsageError;
use std::path::PathBuf;
use std::process::ExitCode;
use tally::sink::postgres::{self, TableName, Url};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Apply an output's commits to PostgreSQL tables, each exactly once.
    ///
    /// Every commit not yet applied, in order: its changed rows (zeroed ones
    /// included) of the daily table, then of the monthly table, each into a
    /// table of its own, a chunk at a time, each chunk by binary COPY and one
    /// upsert with its ledger entry in one transaction.
    #[command(
        after_help = "The URL may also come from $TALLY_POSTGRES_URL (better than --url, which other users \
of the machine can see in the process list); its password is never printed. The table and its ledger \
(NAME_ledger) and the monthly table and its ledger are created when missing; a table with other columns \
is refused.\n\n\
Exit status: 0 when every commit is applied (or, with --dry-run, when the plan is made); 1 on any \
error, the table then holding whole chunks only, as its ledger records; 2 for a usage error (no URL, \
an invalid URL or table name).\n\n\
Examples:\n  TALLY_POSTGRES_URL=postgresql://tally@db.internal/serving tally sink postgres --out out/\n  \
tally sink postgres --out out/ --url 'postgresql://tally@/serving?host=/run/postgresql' --table serving.creator_daily\n  \
tally sink postgres --out out/ --table serving.creator_daily --monthly-table serving.creator_monthly\n  \
tally sink postgres --out out/ --max-rows-per-second 20000 --json\n  \
tally sink postgres --out out/ --dry-run"
    )]
    Postgres(PostgresArgs),
}

#[derive(clap::Args)]
pub struct PostgresArgs {
    /// The output directory whose commits are applied.
    #[arg(long)]
    out: PathBuf,
    /// The database: postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME (a
    /// Unix socket's directory as ?host=/run/postgresql), or libpq's
    /// `key=value` form. Default: $TALLY_POSTGRES_URL.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// The table, `NAME` or `SCHEMA.NAME` (lower-case letters, digits, _);
    /// its ledger is NAME_ledger beside it. Default: tally_daily in the
    /// connection's current schema.
    #[arg(long, value_name = "NAME", value_parser = clap::value_parser!(TableName))]
    table: Option<TableName>,
    /// The table of the monthly totals, `NAME` or `SCHEMA.NAME`; its ledger
    /// is NAME_ledger beside it. Default: the --table name followed by
    /// _monthly, in its schema; without --table, tally_monthly in the
    /// connection's current schema.
    #[arg(long, value_name = "NAME", value_parser = clap::value_parser!(TableName))]
    monthly_table: Option<TableName>,
    /// Rows per chunk: each chunk is one transaction with its own ledger
    /// entry.
    #[arg(long, value_name = "N", default_value_t = postgres::DEFAULT_CHUNK_ROWS, value_parser = clap::value_parser!(u64).range(1..))]
    chunk_rows: u64,
    /// Write at most this many rows a second: chunks of at most a second's
    /// rows, with a pause after each as the rate requires.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_rows_per_second: Option<u64>,
    /// Say what would be applied (and which tables created) without writing
    /// anything.
    #[arg(long)]
    dry_run: bool,
    /// Print the JSON report instead of the summary.
    #[arg(long)]
    json: bool,
    /// Never show progress.
    #[arg(long)]
    quiet: bool,
}

pub fn execute(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Postgres(args) => sink_postgres(args),
    }
}

fn sink_postgres(args: PostgresArgs) -> anyhow::Result<ExitCode> {
    let text = match args.url {
        Some(url) => url,
        None => std::env::var(postgres::URL_ENV).map_err(|_| {
            UsageError::new(format!(
                "no database given: set {} or give --url",
                postgres::URL_ENV
            ))
        })?,
    };
    let url = Url::parse(&text).map_err(|e| UsageError::new(e.to_string()))?;
    let options = postgres::Options {
        out: args.out,
        table: args.table,
        monthly_table: args.monthly_table,
        chunk_rows: args.chunk_rows,
        max_rows_per_second: args.max_rows_per_second,
        dry_run: args.dry_run,
        progress: !args.quiet,
    };
    // The error's text goes through the URL's mask: a server or a library
    // may quote what it was given.
    let report = postgres::sink(&options, &url)
        .map_err(|e| anyhow::anyhow!("{}", url.mask(&format!("{:#}", anyhow::Error::from(e)))))?;
    let text = if args.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        report.to_string()
    };
    super::print(&text)?;
    Ok(ExitCode::SUCCESS)
}
