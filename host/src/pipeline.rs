//! The run: ingest → validate → dedup → classify → aggregate → commit, with the
//! report that describes it.
//!
//! This module only sequences the stages, times them and checks the invariants
//! between them; each stage lives in its own module.

use crate::aggregate::{AggregateError, aggregate};
use crate::classify::classify;
use crate::commit::{self, CommitError, Lineage};
use crate::dedup::{DedupError, dedup, merge};
use crate::ingest::{self, Format, IngestError};
use crate::progress::Progress;
use crate::report::{self, Counts, InputSummary, RuleSummary, RunReport, Timings};
use crate::rule::{self, Limits, Rule, RuleError};
use std::path::PathBuf;
use std::time::Instant;

/// The Tally version stamped into every output.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What `tally run` needs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Input files and directories.
    pub inputs: Vec<PathBuf>,
    /// The rule component.
    pub rule: PathBuf,
    /// The output directory (replaced atomically).
    pub out: PathBuf,
    /// Worker threads (default: one per core).
    pub threads: Option<usize>,
    /// Events per rule call.
    pub batch_size: usize,
    /// The sandbox's limits.
    pub limits: Limits,
    /// Show progress on stderr when it is a terminal.
    pub progress: bool,
}

/// Why a run failed. Nothing was committed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error(transparent)]
    Dedup(#[from] DedupError),
    #[error(transparent)]
    Aggregate(#[from] AggregateError),
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// The counts do not add up: a bug, never bad input.
    #[error("invariant broken, nothing committed: {0}")]
    Invariant(String),
    /// The worker pool could not be started.
    #[error("cannot start {0} worker threads")]
    Threads(usize),
}

/// A run id: the start time and a random suffix.
fn run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let noise = blake3::hash(format!("{:?}{}", now, std::process::id()).as_bytes());
    let stamp = chrono::DateTime::from_timestamp(now.as_secs() as i64, 0)
        .map(|t| t.format("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_default();
    format!("{stamp}-{}", &noise.to_hex()[..8])
}

fn format_name(format: Format) -> &'static str {
    match format {
        Format::Jsonl => "jsonl",
        Format::JsonlGz => "jsonl.gz",
        Format::JsonlZst => "jsonl.zst",
        Format::Parquet => "parquet",
    }
}

/// Runs the whole pipeline and commits its output. On error, the previous
/// output is left exactly as it was.
pub fn run(options: &RunOptions) -> Result<RunReport, RunError> {
    match options.threads {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map_err(|_| RunError::Threads(n))?
            .install(|| run_in_pool(options)),
        None => run_in_pool(options),
    }
}

fn run_in_pool(options: &RunOptions) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let run_id = run_id();
    let rule = Rule::load(&options.rule, options.limits)?;

    // Ingest and validate.
    let t = Instant::now();
    let files = ingest::discover(&options.inputs)?;
    let hashes = ingest::hash_files(&files)?;
    let fingerprint = ingest::fingerprint(&files, &hashes);
    let bar = Progress::start("ingest", None, options.progress);
    let (chunks, interners) = ingest::read_all(&files, &|n| bar.set(n))?;
    bar.finish();
    let mut counts = Counts::default();
    let mut quarantine = Vec::new();
    for chunk in &chunks {
        counts.records += chunk.records;
        counts.valid += chunk.events.len() as u64;
    }
    let ingest_s = t.elapsed().as_secs_f64();

    // Dedup.
    let t = Instant::now();
    let (table, chunks) = merge(chunks, interners)?;
    for mut chunk in chunks {
        quarantine.append(&mut chunk.quarantine);
    }
    counts.quarantined = quarantine.len() as u64;
    for q in &quarantine {
        *counts
            .quarantined_by_reason
            .entry(q.reason.to_string())
            .or_default() += 1;
    }
    let deduped = dedup(table);
    counts.duplicates = deduped.duplicates;
    counts.conflicts = deduped.conflicts;
    counts.unique = deduped.survivors.len() as u64;
    let dedup_s = t.elapsed().as_secs_f64();

    // Classify.
    let t = Instant::now();
    let bar = Progress::start("classify", Some(counts.unique), options.progress);
    let classified = classify(&deduped, &rule, options.batch_size, &|n| bar.set(n))?;
    bar.finish();
    let classify_s = t.elapsed().as_secs_f64();

    // Aggregate.
    let t = Instant::now();
    let aggregate = aggregate(&deduped, &classified)?;
    drop(classified);
    counts.payable = aggregate.payable_events;
    counts.amount_micros = aggregate.amount_micros;
    counts.by_reason = aggregate.by_reason.clone();
    counts.rows = aggregate.rows.len() as u64;
    let row_sums = aggregate.rows.iter().fold((0u64, 0u64, 0i64), |s, r| {
        (
            s.0 + r.events,
            s.1 + r.payable_events,
            s.2.wrapping_add(r.amount_micros),
        )
    });
    let checks = report::checks(&counts, row_sums);
    if let Some(failed) = checks.iter().find(|c| !c.ok) {
        return Err(RunError::Invariant(format!(
            "{}: {}",
            failed.name, failed.detail
        )));
    }
    let aggregate_s = t.elapsed().as_secs_f64();

    // Commit.
    let t = Instant::now();
    let lineage = Lineage {
        rule_hash: rule.hash.to_hex().to_string(),
        rule_name: rule.info.name.clone(),
        rule_version: rule.info.version.clone(),
        rule_sdk_version: rule.info.sdk_version.clone(),
        rule_world: rule::WORLD.to_string(),
        input_fingerprint: fingerprint.to_hex().to_string(),
        tally_version: VERSION.to_string(),
    };
    let staging = commit::stage(&options.out, &run_id)?;
    let partitions = commit::write_partitions(
        &staging.dir,
        &aggregate.rows,
        &deduped.table.strings,
        &lineage,
    )?;
    counts.days = partitions.len() as u64;
    let sources: Vec<(String, bool)> = files
        .iter()
        .map(|f| (f.path.display().to_string(), f.format == Format::Parquet))
        .collect();
    commit::write_quarantine(&staging.dir, &quarantine, &sources)?;
    let inputs: Vec<InputSummary> = files
        .iter()
        .zip(&hashes)
        .map(|(f, h)| InputSummary {
            path: f.path.display().to_string(),
            format: format_name(f.format).to_string(),
            size: f.size,
            blake3: h.to_hex().to_string(),
        })
        .collect();

    let total = started.elapsed().as_secs_f64();
    let report = RunReport {
        tally_version: VERSION.to_string(),
        run_id: run_id.clone(),
        rule: RuleSummary {
            hash: lineage.rule_hash.clone(),
            name: rule.info.name.clone(),
            version: rule.info.version.clone(),
            sdk_version: rule.info.sdk_version.clone(),
            path: options.rule.display().to_string(),
        },
        inputs: inputs.clone(),
        input_fingerprint: lineage.input_fingerprint.clone(),
        output: options.out.display().to_string(),
        threads: rayon::current_num_threads(),
        batch_size: options.batch_size,
        counts: counts.clone(),
        timings: Timings {
            ingest: ingest_s,
            dedup: dedup_s,
            classify: classify_s,
            aggregate: aggregate_s,
            commit: t.elapsed().as_secs_f64(),
            total,
        },
        records_per_second: counts.records as f64 / total.max(1e-9),
        checks,
    };
    let manifest = serde_json::json!({
        "tally_version": VERSION,
        "run_id": run_id,
        "lineage": lineage,
        "inputs": inputs,
        "counts": counts,
        "partitions": partitions,
        "quarantine": format!("{}/{}", commit::QUARANTINE_DIR, commit::QUARANTINE_FILE),
    });
    commit::write_file(
        &staging.dir.join(commit::MANIFEST),
        pretty(&manifest).as_bytes(),
    )?;
    commit::write_file(
        &staging.dir.join(commit::REPORT),
        pretty(&report).as_bytes(),
    )?;
    staging.promote()?;
    Ok(report)
}

/// Pretty JSON with a final newline.
fn pretty<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("reports serialize") + "\n"
}
