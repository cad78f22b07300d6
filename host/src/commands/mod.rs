//! Subcommands of the `tally` binary, one module each.

pub mod compare;
pub mod docs;
pub mod explain;
pub mod generate;
pub mod lineage;
pub mod log;
pub mod rule;
pub mod run;
pub mod sink;
pub mod status;
pub mod tasks;
pub mod usage;
pub mod verify;

use std::io::Write;

/// How input files are read: the options `run`, `status`, `compare` and
/// `explain` share.
#[derive(clap::Args)]
pub struct ReadArgs {
    /// The longest JSON line read, in bytes (without its line end); a longer
    /// line is quarantined as `line-too-long` and skipped.
    #[arg(long, value_name = "BYTES", default_value_t = tally::ingest::DEFAULT_MAX_LINE_BYTES as u64, value_parser = clap::value_parser!(u64).range(1..))]
    max_line_bytes: u64,
}

impl ReadArgs {
    /// The options as the library takes them.
    pub fn options(&self) -> tally::ingest::ReadOptions {
        tally::ingest::ReadOptions {
            max_line_bytes: usize::try_from(self.max_line_bytes).unwrap_or(usize::MAX),
        }
    }
}

/// How much memory a run may use, and where it spills the rest: the options
/// `run`, `compare` and `verify` share.
#[derive(clap::Args)]
pub struct SpillArgs {
    /// The memory the run may use, for example `2GiB` or `512MiB` (default:
    /// half of the machine's memory, or of its control group's limit). When
    /// the input does not fit, records are spilled to disk by shard.
    #[arg(long, value_name = "SIZE", value_parser = tally::shard::memory::parse_size)]
    memory_limit: Option<u64>,
    /// Split the run into exactly this many shards by `event_id`, spilling to
    /// disk even when the input would fit in memory.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=tally::shard::MAX_SHARDS as i64))]
    shards: Option<u32>,
    /// Where spill files are written (in a directory of their own, removed
    /// when the run ends).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<std::path::PathBuf>,
}

impl SpillArgs {
    /// The options as the library takes them; spill files go to `beside` when
    /// no `--work-dir` is given.
    pub fn options(&self, beside: Option<&std::path::Path>) -> tally::shard::SpillOptions {
        tally::shard::SpillOptions {
            memory_limit: self.memory_limit,
            shards: self.shards,
            work_dir: self
                .work_dir
                .clone()
                .or_else(|| beside.map(std::path::Path::to_path_buf)),
        }
    }
}

/// The directory an output directory lies in (where its spill files go).
pub fn parent_of(out: &std::path::Path) -> std::path::PathBuf {
    let absolute = std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
    absolute.parent().map_or_else(
        || std::path::PathBuf::from("."),
        std::path::Path::to_path_buf,
    )
}

/// Loads the rule a `--rule` argument names: a path, a full or short hash,
/// `name@version` or `name@tag` (see `tally rule`). Its bytes are always
/// checked against their hash; that hash is what gets stamped.
pub fn load_rule(
    reference: &str,
    registry: Option<&std::path::Path>,
    limits: tally::rule::Limits,
) -> anyhow::Result<tally::rule::Rule> {
    let registry = tally::registry::location(registry);
    Ok(tally::registry::load_rule(reference, &registry, limits)?)
}

/// Whether an error is only a closed stdout (for example `tally ... | head`).
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Prints to stdout, reporting a closed pipe as an error instead of panicking.
pub fn print(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Prints the report of a command that failed. The command's own error is
/// what it ends with: a report that cannot be printed is only said on stderr
/// (a closed stdout not even that), never put in the error's place.
pub fn print_report_of_failure(text: &str) {
    if let Err(problem) = print(text)
        && problem.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("warning: the report was not printed: {problem}");
    }
}
