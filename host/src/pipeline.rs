//! The run: ingest → validate → dedup → classify → aggregate → commit, with the
//! report that describes it.
//!
//! This module only sequences the stages, times them and checks the invariants
//! between them; each stage lives in its own module.

use crate::aggregate::{Aggregate, AggregateError, aggregate};
use crate::classify::{Classified, classify};
use crate::commit::{self, CommitError, Lineage};
use crate::dedup::Table;
use crate::dedup::{DedupError, Deduped, dedup, merge};
use crate::derived;
use crate::event::format_day;
use crate::ingest::{self, IngestError};
use crate::intern::Interner;
use crate::layout;
use crate::progress::Progress;
use crate::reconcile::{OutRow, Published, ReconcileCounts, ReconcileError, reconcile_rows};
use crate::report::{self, Check, Counts, InputSummary, RuleSummary, RunReport, Timings};
use crate::rule::{self, Limits, Rule, RuleError};
use crate::scope::{self, CreatorScope, ScopeRecord};
use crate::shard::{self, SpillError};
use crate::survivors::{self, IndexError};
use crate::validate::Quarantined;
use parquet::file::metadata::KeyValue;
use rayon::prelude::*;
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Events per rule call unless told otherwise: large enough that a fresh
/// sandbox instance per batch costs little, small enough to spread over cores.
pub const DEFAULT_BATCH_SIZE: usize = 65_536;

/// The Tally version stamped into every output.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The version of how Tally computes figures from events and a rule: dedup,
/// the survivor order, the window, sums, reconciliation and what is stamped
/// into a partition. Bumped only when the same input and rule can give other
/// partitions, unlike [`VERSION`], so that a newer Tally does not make every
/// published day stale. 2: each partition stamped with its own day's input
/// fingerprint (1: with the run's).
pub const COMPUTE_VERSION: u32 = 2;

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
    /// Recompute only these days (inclusive, days since 1970-01-01).
    pub days: Option<(i32, i32)>,
    /// How input files are read (the longest JSON line).
    pub read: ingest::ReadOptions,
    /// The memory limit, and where records are spilled when the input does
    /// not fit it.
    pub spill: shard::SpillOptions,
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
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    #[error(transparent)]
    Spill(#[from] SpillError),
    #[error(transparent)]
    Derived(#[from] derived::DerivedError),
    #[error(transparent)]
    Lineage(#[from] crate::lineage::LineageError),
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The counts do not add up: a bug, never bad input.
    #[error("invariant broken, nothing committed: {0}")]
    Invariant(String),
    /// An incremental computation builds on a commit that is no longer the
    /// output's last.
    #[error(
        "the output's last commit is {now}, not {built_on} as when this run read it (another run committed meanwhile); nothing committed: run again"
    )]
    MovedOn { built_on: u64, now: u64 },
    /// A rule could not be fetched (for example from the registry).
    #[error("{0}")]
    RuleUnavailable(String),
    /// The worker pool could not be started.
    #[error("cannot run with {0} worker threads (1 to {max} on this machine)", max = rule::max_instances())]
    Threads(usize),
}

impl RunError {
    /// Names the input file of the event a rule failed on, if the error is
    /// such a failure: `sources` as [`commit::sources`] gives them.
    pub fn naming_inputs(self, sources: &[(String, bool)]) -> RunError {
        match self {
            RunError::Rule(e) => RunError::Rule(e.naming_inputs(sources)),
            e => e,
        }
    }
}

/// A run id: the start time and a random suffix.
pub fn run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let noise = blake3::hash(format!("{:?}{}", now, std::process::id()).as_bytes());
    let stamp = chrono::DateTime::from_timestamp(now.as_secs() as i64, 0)
        .map(|t| t.format("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_default();
    format!("{stamp}-{}", &noise.to_hex()[..8])
}

/// Runs the whole pipeline with the rule file `options.rule` and commits its
/// output. On error, the previous output is left exactly as it was.
pub fn run(options: &RunOptions) -> Result<RunReport, RunError> {
    let rule = Rule::load(&options.rule, options.limits)?;
    run_loaded(options, rule)
}

/// Like [`run`], with the rule already loaded (from the registry, say);
/// `options.rule` is only recorded as the reference it was given as.
pub fn run_loaded(options: &RunOptions, rule: Rule) -> Result<RunReport, RunError> {
    run_scoped(options, rule, None)
}

/// [`run_loaded`], committing only the rows of the creators of `scope` when
/// there is one ([`crate::scope`]).
pub fn run_scoped(
    options: &RunOptions,
    rule: Rule,
    scope: Option<&CreatorScope>,
) -> Result<RunReport, RunError> {
    ingest::check_inputs_apart_from_output(&options.inputs, &options.out)?;
    with_threads(options.threads, || run_in_pool(options, rule, scope))
}

/// Runs `work` on `threads` worker threads (one per core when `None`).
pub fn with_threads<T: Send>(
    threads: Option<usize>,
    work: impl FnOnce() -> Result<T, RunError> + Send,
) -> Result<T, RunError> {
    match threads {
        Some(n) if n == 0 || n > rule::max_instances() => Err(RunError::Threads(n)),
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map_err(|_| RunError::Threads(n))?
            .install(work),
        None => work(),
    }
}

/// Everything a run computed before it commits: what `tally verify` recomputes.
pub struct Computed {
    pub run_id: String,
    pub rule: Rule,
    pub files: Vec<ingest::InputFile>,
    pub inputs: Vec<InputSummary>,
    pub fingerprint: blake3::Hash,
    /// The creator, template and brand strings the rows' ids point into, in
    /// byte order.
    pub strings: Interner,
    pub aggregate: Aggregate,
    pub quarantine: commit::Quarantine,
    pub counts: Counts,
    pub checks: Vec<Check>,
    pub timings: Timings,
    /// Spill files the run still needs until it is committed (the rendered
    /// quarantine of an out-of-core run); removed when dropped.
    pub work: Option<shard::WorkDir>,
    /// How many shards the run was split into (1: in memory).
    pub shards: u32,
    /// How the inputs were read: recorded so that `verify` reads them the same
    /// way.
    pub read: ingest::ReadOptions,
    /// The survivor index of every valid record, written and waiting to be
    /// installed by the commit (none when the run was not asked for one).
    pub index: Option<survivors::Built>,
    /// Set when the rows add to the published rows of their days (an
    /// incremental run, computed from the commit its index layer names: the
    /// commit refuses to land on another).
    pub increment: Option<crate::reconcile::Increment>,
}

impl Computed {
    /// The lineage stamped into every partition this run writes.
    pub fn lineage(&self) -> Lineage {
        Lineage {
            rule_hash: self.rule.hash.to_hex().to_string(),
            rule_name: self.rule.info.name.clone(),
            rule_version: self.rule.info.version.clone(),
            rule_sdk_version: self.rule.info.sdk_version.clone(),
            rule_world: rule::WORLD.to_string(),
            input_fingerprint: self.fingerprint.to_hex().to_string(),
            tally_version: VERSION.to_string(),
            compute_version: COMPUTE_VERSION,
        }
    }

    /// The lineage stamped into the partition of `day`: the run's, with the
    /// fingerprint of the input files that day's events came from.
    pub fn day_lineage(&self, day: i32) -> Lineage {
        Lineage {
            input_fingerprint: day_fingerprint(&self.day_inputs(day)),
            ..self.lineage()
        }
    }

    /// The input files `day`'s events came from, and how many from each, in
    /// the order of the run's inputs.
    pub fn day_inputs(&self, day: i32) -> Vec<DayInput> {
        let provenance = &self.aggregate.provenance;
        let start = provenance.partition_point(|c| c.day < day);
        let end = provenance.partition_point(|c| c.day <= day);
        provenance[start..end]
            .iter()
            .map(|c| {
                let input = &self.inputs[c.source as usize];
                DayInput {
                    path: input.path.clone(),
                    blake3: input.blake3.clone(),
                    events: c.events,
                }
            })
            .collect()
    }

    /// The day's rows, sorted by key, with their strings.
    pub fn day_rows(&self, day: i32) -> Vec<OutRow<'_>> {
        let rows = &self.aggregate.rows;
        let start = rows.partition_point(|r| r.day < day);
        let end = rows.partition_point(|r| r.day <= day);
        let strings = &self.strings;
        rows[start..end]
            .iter()
            .map(|r| OutRow {
                creator: strings.get(r.creator),
                template: strings.get(r.template),
                events: r.events as i64,
                payable_events: r.payable_events as i64,
                amount_micros: r.amount_micros,
            })
            .collect()
    }
}

/// The input of a run after ingest, validation and dedup: what one or more
/// rules then classify.
pub struct Prepared {
    pub run_id: String,
    pub files: Vec<ingest::InputFile>,
    pub inputs: Vec<InputSummary>,
    pub fingerprint: blake3::Hash,
    pub deduped: Deduped,
    pub quarantine: Vec<Quarantined>,
    /// Counts up to dedup (and the window).
    pub counts: Counts,
    pub timings: Timings,
}

/// Ingests, validates and deduplicates. `days` keeps only survivors in a
/// window of days (inclusive); the others are counted as outside it.
pub fn prepare(
    inputs: &[PathBuf],
    read: &ingest::ReadOptions,
    days: Option<(i32, i32)>,
    progress: bool,
) -> Result<Prepared, RunError> {
    let found = find_inputs(inputs, progress)?;
    prepare_found(found, read, days, progress)
}

/// The input files of a run, listed and fingerprinted, and the run's id.
pub struct Found {
    pub run_id: String,
    pub files: Vec<ingest::InputFile>,
    pub inputs: Vec<InputSummary>,
    pub fingerprint: blake3::Hash,
}

/// Lists the input files and hashes them; with `progress`, a `hash inputs`
/// bar over the files is drawn on a terminal.
pub fn find_inputs(inputs: &[PathBuf], progress: bool) -> Result<Found, RunError> {
    let files = ingest::discover(inputs)?;
    let bar = Progress::counting("hash inputs", Some(files.len() as u64), "files", progress);
    let hashes = ingest::hash_files_counted(&files, &|| bar.inc(1))?;
    bar.finish();
    let fingerprint = ingest::fingerprint(&files, &hashes);
    let inputs = input_summaries(&files, &hashes);
    Ok(Found {
        run_id: run_id(),
        files,
        inputs,
        fingerprint,
    })
}

/// The inputs of a run that reads only some of them ([`crate::incremental`],
/// [`crate::partial`]), found again as its plan found them.
pub struct Planned {
    pub run_id: String,
    pub files: Vec<ingest::InputFile>,
    pub inputs: Vec<InputSummary>,
    pub fingerprint: blake3::Hash,
}

impl Planned {
    /// Finds `inputs` again, with the content hashes (hex, in input order)
    /// the plan's status took; refused when their number changed since.
    pub fn find(inputs: &[PathBuf], blake3: &[String]) -> Result<Planned, RunError> {
        let files = ingest::discover(inputs)?;
        if files.len() != blake3.len() {
            return Err(RunError::Invariant(
                "the input files changed while the run was planned".to_string(),
            ));
        }
        let hashes: Vec<blake3::Hash> = blake3
            .iter()
            .map(blake3::Hash::from_hex)
            .collect::<Result<_, _>>()
            .map_err(|e| RunError::Invariant(format!("an input's blake3: {e}")))?;
        Ok(Planned {
            run_id: run_id(),
            inputs: input_summaries(&files, &hashes),
            fingerprint: ingest::fingerprint(&files, &hashes),
            files,
        })
    }

    /// The files at `positions` among the inputs, to be read.
    pub fn subset(&self, positions: &[usize]) -> Found {
        Found {
            run_id: self.run_id.clone(),
            files: positions.iter().map(|&at| self.files[at].clone()).collect(),
            inputs: positions
                .iter()
                .map(|&at| self.inputs[at].clone())
                .collect(),
            fingerprint: self.fingerprint,
        }
    }
}

/// Numbers the records (and quarantined records) of a run over the input
/// files at `positions` by their files' positions among all the inputs.
pub fn renumber_sources(prepared: &mut Prepared, positions: &[usize]) {
    for c in &mut prepared.deduped.table.chunks {
        c.source = positions[c.source as usize] as u32;
    }
    for q in &mut prepared.quarantine {
        q.source = positions[q.source as usize] as u32;
    }
}

/// The run's work directory under `spill`'s (removed when dropped), and
/// the directory in it its survivor index is written to.
pub fn index_work_dir(
    spill: &shard::SpillOptions,
    run_id: &str,
) -> Result<(shard::WorkDir, PathBuf), RunError> {
    let parent = spill.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = shard::WorkDir::create(&parent, run_id)?;
    let dir = work.path().join("index");
    std::fs::create_dir_all(&dir).map_err(|source| {
        RunError::Commit(commit::CommitError::Io {
            path: dir.clone(),
            source,
        })
    })?;
    Ok((work, dir))
}

/// What a run over `files` that wrote a whole index into `dir` hands its
/// commit: the index as [`survivors::IndexWriter::finish_counted`] says.
pub fn fresh_index(
    dir: PathBuf,
    (written, records, events, days): (Vec<survivors::IndexFile>, u64, u64, survivors::Days),
    files: &[ingest::InputFile],
) -> survivors::Built {
    survivors::Built {
        dir,
        files: written,
        records,
        events,
        modified: files
            .iter()
            .map(|f| survivors::modified_ns(f.modified))
            .collect(),
        days: Some(days),
        base: None,
    }
}

/// What a run report and the lineage say of each input file.
pub fn input_summaries(files: &[ingest::InputFile], hashes: &[blake3::Hash]) -> Vec<InputSummary> {
    files
        .iter()
        .zip(hashes)
        .map(|(f, h)| InputSummary {
            // Absolute, so `tally verify` finds the inputs from anywhere.
            path: std::fs::canonicalize(&f.path)
                .unwrap_or_else(|_| f.path.clone())
                .display()
                .to_string(),
            format: f.format.name().to_string(),
            size: f.size,
            blake3: h.to_hex().to_string(),
        })
        .collect()
}

/// Counts the quarantined records, by reason.
fn count_quarantine(quarantine: &[Quarantined], counts: &mut Counts) {
    counts.quarantined += quarantine.len() as u64;
    for q in quarantine {
        *counts
            .quarantined_by_reason
            .entry(q.reason.to_string())
            .or_default() += 1;
    }
}

/// Input files read, validated and merged into one table: what dedup
/// starts from.
#[derive(Clone)]
pub struct Read {
    /// Every valid record.
    pub table: Table,
    /// Every other record.
    pub quarantine: Vec<Quarantined>,
    /// The records read, valid or not.
    pub records: u64,
    /// Seconds spent reading and validating.
    pub ingest_seconds: f64,
}

/// Reads and validates `files` and merges their valid records into one table.
pub fn read_files<E: From<ingest::IngestError> + From<crate::dedup::DedupError>>(
    files: &[ingest::InputFile],
    read: &ingest::ReadOptions,
    progress: bool,
) -> Result<Read, E> {
    let t = Instant::now();
    let bar = Progress::start("ingest", None, progress);
    let (chunks, interners) = ingest::read_all(files, read, &|n| bar.set(n))?;
    ingest::check_unchanged(files)?;
    bar.finish();
    let records = chunks.iter().map(|c| c.records).sum();
    let ingest_seconds = t.elapsed().as_secs_f64();
    let (table, chunks) = merge(chunks, interners)?;
    let mut quarantine = Vec::new();
    for mut chunk in chunks {
        quarantine.append(&mut chunk.quarantine);
    }
    Ok(Read {
        table,
        quarantine,
        records,
        ingest_seconds,
    })
}

/// [`prepare`] with the inputs already found.
pub fn prepare_found(
    found: Found,
    read: &ingest::ReadOptions,
    days: Option<(i32, i32)>,
    progress: bool,
) -> Result<Prepared, RunError> {
    let read = read_files::<RunError>(&found.files, read, progress)?;
    Ok(prepare_read(found, read, days, progress))
}

/// [`prepare`] with the inputs already found and read (`read` holds what
/// [`read_files`] gives for `found.files`).
pub fn prepare_read(
    found: Found,
    read: Read,
    days: Option<(i32, i32)>,
    progress: bool,
) -> Prepared {
    let mut timings = Timings {
        ingest: read.ingest_seconds,
        ..Timings::default()
    };
    let mut counts = Counts {
        records: read.records,
        valid: read.table.len() as u64,
        ..Counts::default()
    };

    // Dedup.
    let t = Instant::now();
    let bar = Progress::stage("dedup", progress);
    let quarantine = read.quarantine;
    count_quarantine(&quarantine, &mut counts);
    let deduped = survive(read.table, days, &mut counts);
    bar.finish();
    timings.dedup = t.elapsed().as_secs_f64();

    Prepared {
        run_id: found.run_id,
        files: found.files,
        inputs: found.inputs,
        fingerprint: found.fingerprint,
        deduped,
        quarantine,
        counts,
        timings,
    }
}

/// Deduplicates the valid records of `table` and keeps the survivors in the
/// window of days `days` (inclusive), if any; counts duplicates, conflicts,
/// unique events and those outside the window into `counts`.
pub fn survive(table: Table, days: Option<(i32, i32)>, counts: &mut Counts) -> Deduped {
    let mut deduped = dedup(table);
    counts.duplicates += deduped.duplicates;
    counts.conflicts += deduped.conflicts;
    let unique = deduped.survivors.len() as u64;
    counts.unique += unique;
    if let Some((from, to)) = days {
        let table = &deduped.table;
        let survivors = &deduped.survivors;
        let kept = survivors
            .iter()
            .zip(table.rows(survivors))
            .filter(|(_, (c, r))| (from..=to).contains(&crate::event::day_of(c.occurred_at[*r])))
            .map(|(&g, _)| g)
            .collect();
        deduped.survivors = kept;
    }
    let classified = deduped.survivors.len() as u64;
    counts.classified += classified;
    counts.outside_window += unique - classified;
    deduped
}

/// Sets aside the survivors of creators `scope` does not list, counting
/// them as outside the scope: a scoped run classifies only its creators'
/// events. Returns the provenance of all the survivors, taken before: a day's
/// fingerprint names every event of the day, whoever's it is.
pub fn narrow_to_scope(
    deduped: &mut Deduped,
    scope: &CreatorScope,
    counts: &mut Counts,
) -> Vec<crate::aggregate::Contribution> {
    let provenance = crate::aggregate::provenance(deduped);
    let table = &deduped.table;
    let listed: HashSet<u32> = scope
        .iter()
        .filter_map(|creator| table.strings.find(creator))
        .collect();
    let kept: Vec<u32> = deduped
        .survivors
        .iter()
        .zip(table.rows(&deduped.survivors))
        .filter(|(_, (c, r))| listed.contains(&c.creator[*r]))
        .map(|(&g, _)| g)
        .collect();
    let set_aside = (deduped.survivors.len() - kept.len()) as u64;
    deduped.survivors = kept;
    counts.classified -= set_aside;
    counts.outside_scope += set_aside;
    provenance
}

/// Classifies the survivors with `rule` and sums them into daily rows; adds
/// the payable events, amounts and reasons to `counts`.
pub fn classify_and_sum(
    deduped: &Deduped,
    counts: &mut Counts,
    rule: &Rule,
    batch_size: usize,
    progress: bool,
    timings: &mut Timings,
) -> Result<(Classified, Aggregate), RunError> {
    let t = Instant::now();
    let bar = Progress::start("classify", Some(deduped.survivors.len() as u64), progress);
    let classified = classify(deduped, rule, batch_size, &|n| bar.set(n))?;
    bar.finish();
    timings.classify += t.elapsed().as_secs_f64();

    let t = Instant::now();
    let bar = Progress::stage("aggregate", progress);
    let aggregate = aggregate(deduped, &classified)?;
    bar.finish();
    counts.payable += aggregate.payable_events;
    counts.amount_micros = counts
        .amount_micros
        .checked_add(aggregate.amount_micros)
        .ok_or(AggregateError::Overflow)?;
    for (reason, n) in &aggregate.by_reason {
        *counts.by_reason.entry(reason.clone()).or_default() += n;
    }
    timings.aggregate += t.elapsed().as_secs_f64();
    Ok((classified, aggregate))
}

/// Checks that the counts add up and that the rows sum to them.
pub fn check_counts(
    counts: &Counts,
    rows: &[crate::aggregate::Row],
) -> Result<Vec<Check>, RunError> {
    let row_sums = rows.iter().fold((0u64, 0u64, 0i64), |s, r| {
        (
            s.0 + r.events,
            s.1 + r.payable_events,
            s.2.wrapping_add(r.amount_micros),
        )
    });
    let checks = report::checks(counts, row_sums);
    if let Some(failed) = checks.iter().find(|c| !c.ok) {
        return Err(RunError::Invariant(format!(
            "{}: {}",
            failed.name, failed.detail
        )));
    }
    Ok(checks)
}

/// Classifies the prepared events with `rule` and aggregates them; checks the
/// counts. Returns the verdicts too (for comparisons) and the counts.
pub fn classify_and_aggregate(
    prepared: &Prepared,
    rule: &Rule,
    batch_size: usize,
    progress: bool,
    timings: &mut Timings,
) -> Result<(Classified, Aggregate, Counts, Vec<Check>), RunError> {
    let mut counts = prepared.counts.clone();
    let (classified, aggregate) = classify_and_sum(
        &prepared.deduped,
        &mut counts,
        rule,
        batch_size,
        progress,
        timings,
    )?;
    let checks = check_counts(&counts, &aggregate.rows)?;
    Ok((classified, aggregate, counts, checks))
}

/// Ingests, validates, deduplicates, classifies and aggregates, and checks the
/// counts, without writing anything. `days` limits classification and rows to
/// a window of days (inclusive). Runs in memory when the input fits
/// `spill`'s memory limit, else out of core, shard by shard.
pub fn compute(
    inputs: &[PathBuf],
    read: &ingest::ReadOptions,
    rule: Rule,
    batch_size: usize,
    days: Option<(i32, i32)>,
    progress: bool,
    spill: &shard::SpillOptions,
) -> Result<Computed, RunError> {
    compute_with(
        inputs, read, rule, batch_size, days, progress, spill, false, None,
    )
}

/// [`compute`], and with `index`, the survivor index of every valid record
/// (in the days window or not), written into a work directory under
/// `spill`'s until the commit installs it. With `scope`, only the listed
/// creators' events are classified and summed ([`narrow_to_scope`]); the
/// days' provenance still counts every event.
#[allow(clippy::too_many_arguments)]
pub fn compute_with(
    inputs: &[PathBuf],
    read: &ingest::ReadOptions,
    rule: Rule,
    batch_size: usize,
    days: Option<(i32, i32)>,
    progress: bool,
    spill: &shard::SpillOptions,
    index: bool,
    scope: Option<&CreatorScope>,
) -> Result<Computed, RunError> {
    let found = find_inputs(inputs, progress)?;
    // A rule's failure names the input file of the event it failed on.
    let sources = commit::sources(&found.files);
    let named = |e: RunError| e.naming_inputs(&sources);
    let shards = spill.shards_for(&found.files);
    if shards > 1 || spill.shards.is_some() {
        return shard::compute(
            found, read, rule, batch_size, days, progress, spill, shards, index, scope,
        )
        .map_err(named);
    }
    let mut prepared = prepare_found(found, read, days, progress)?;
    let provenance =
        scope.map(|scope| narrow_to_scope(&mut prepared.deduped, scope, &mut prepared.counts));
    let mut timings = prepared.timings.clone();
    let (_, mut aggregate, counts, checks) =
        classify_and_aggregate(&prepared, &rule, batch_size, progress, &mut timings)
            .map_err(named)?;
    if let Some(provenance) = provenance {
        aggregate.provenance = provenance;
    }
    let Prepared {
        run_id,
        files,
        inputs,
        fingerprint,
        deduped,
        quarantine,
        ..
    } = prepared;
    let mut table = deduped.table;
    let strings = std::mem::take(&mut table.strings);
    let (index, work) = if index {
        // Counted as dedup's time: the index records what dedup saw.
        let t = Instant::now();
        let bar = Progress::stage("index", progress);
        let (work, dir) = index_work_dir(spill, &run_id)?;
        let mut writer = survivors::IndexWriter::create(&dir, table.len() as u64)?;
        let hasher = survivors::FieldHasher::new(&strings);
        // The records are dropped as their entries are made.
        survivors::write_index(table, &hasher, 0, 1, &mut writer)?;
        let built = finish_index(writer, dir, &files, counts.unique)?;
        bar.finish();
        timings.dedup += t.elapsed().as_secs_f64();
        (Some(built), Some(work))
    } else {
        drop(table);
        (None, None)
    };
    Ok(Computed {
        read: *read,
        run_id,
        rule,
        files,
        inputs,
        fingerprint,
        strings,
        aggregate,
        quarantine: commit::Quarantine::Records(quarantine),
        counts,
        checks,
        timings,
        work,
        shards: 1,
        index,
        increment: None,
    })
}

/// Finishes an index written into `dir` for a run over `files`, checking
/// that it holds one event per unique event the run counted.
pub fn finish_index(
    writer: survivors::IndexWriter,
    dir: PathBuf,
    files: &[ingest::InputFile],
    unique: u64,
) -> Result<survivors::Built, RunError> {
    let finished = writer.finish_counted()?;
    let events = finished.2;
    if events != unique {
        return Err(RunError::Invariant(format!(
            "events in the survivor index = unique events: {events} = {unique}"
        )));
    }
    Ok(fresh_index(dir, finished, files))
}

/// An input file a day's events came from: its surviving records of that day.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DayInput {
    /// Absolute path, as the run found it.
    pub path: String,
    pub blake3: String,
    /// Unique events of the day whose surviving record is in this file.
    pub events: u64,
}

/// The fingerprint of what a day was computed from: the content hash of each
/// input file its events came from, with the number of events, sorted. A file
/// that holds none of the day's surviving records leaves it as it is, so a
/// late file stamps new bytes only into the days it adds events to.
pub fn day_fingerprint(inputs: &[DayInput]) -> String {
    let mut entries: Vec<(&str, u64)> = inputs
        .iter()
        .map(|i| (i.blake3.as_str(), i.events))
        .collect();
    entries.sort_unstable();
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"tally day inputs 1\n");
    for (hash, events) in entries {
        hasher.update(format!("{hash} {events}\n").as_bytes());
    }
    hasher.finalize().to_hex().to_string()
}

/// The lineage of one partition, written as `_tally/partitions/day=D.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PartitionManifest {
    pub day: String,
    pub file: String,
    pub blake3: String,
    pub rows: u64,
    pub events: i64,
    pub payable_events: i64,
    pub amount_micros: i64,
    pub commit: u64,
    pub run_id: String,
    pub lineage: Lineage,
    /// Every input file of the run that wrote it (what `tally verify` reads
    /// again: dedup spans all of them).
    pub inputs: Vec<InputSummary>,
    /// The input files the day's events came from, with how many each
    /// (its provenance; empty in outputs of compute version 1).
    #[serde(default)]
    pub day_inputs: Vec<DayInput>,
    /// The recomputed days of the run that wrote it, or null for every day.
    pub window: Option<(String, String)>,
    pub reconcile: ReconcileCounts,
    /// The longest JSON line the run parsed (`--max-line-bytes`); absent in
    /// outputs written before it was recorded, which used the default.
    #[serde(default)]
    pub max_line_bytes: Option<u64>,
    /// When the commit that wrote it was scoped to some creators: the scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ScopeRecord>,
    /// Rows of creators outside that scope, carried over as they were.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub carried_rows: u64,
    /// Whether the stamped input fingerprint is the one the partition had
    /// before the scoped commit (the carried rows were computed from those
    /// inputs, and the day's inputs changed since), not the commit's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kept_fingerprint: bool,
    /// Every rule hash its rows are stamped with, sorted, when there is more
    /// than one (rows carried over by a scoped commit); otherwise empty and
    /// every row has `lineage.rule_hash`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rule_hashes: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl PartitionManifest {
    /// Every rule hash its rows are stamped with.
    pub fn row_rule_hashes(&self) -> Vec<&str> {
        if self.rule_hashes.is_empty() {
            vec![self.lineage.rule_hash.as_str()]
        } else {
            self.rule_hashes.iter().map(String::as_str).collect()
        }
    }
}

/// One entry of the commit log (`_tally/log/NNNNNNNN.json`), never rewritten.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LogEntry {
    pub commit: u64,
    pub run_id: String,
    pub tally_version: String,
    /// [`COMPUTE_VERSION`] of the Tally that made the commit (1 before it was
    /// recorded).
    #[serde(default = "commit::compute_version_1")]
    pub compute_version: u32,
    /// When the commit was made (UTC).
    pub committed_at: String,
    pub rule: RuleSummary,
    pub input_fingerprint: String,
    pub inputs: Vec<InputSummary>,
    pub window: Option<(String, String)>,
    /// Days whose partitions this commit wrote.
    pub written: Vec<String>,
    /// Of those, days where every row was zeroed (no events any more).
    pub zeroed_days: Vec<String>,
    /// The derived tables' partitions this commit rebuilt (those of every
    /// period it wrote a day of), and how their rows changed.
    #[serde(default)]
    pub derived: Vec<derived::DerivedWritten>,
    pub counts: Counts,
    pub reconcile: ReconcileCounts,
    /// The changeset directory, relative to the output root: one partition
    /// per day with changes, `day=YYYY-MM-DD/part-0.parquet`.
    pub changeset: String,
    /// The file of the records this commit's run quarantined, relative to the
    /// output root.
    #[serde(default)]
    pub quarantine: Option<String>,
    /// The longest JSON line the run parsed (`--max-line-bytes`).
    #[serde(default)]
    pub max_line_bytes: Option<u64>,
    /// The survivor index this commit wrote under `_tally/survivors/`
    /// (absent in commits that wrote none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub survivor_index: Option<survivors::IndexSummary>,
    /// The creators this commit recomputed, when it was scoped (`--creators`);
    /// absent when it recomputed every creator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ScopeRecord>,
}

fn run_in_pool(
    options: &RunOptions,
    rule: Rule,
    scope: Option<&CreatorScope>,
) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let computed = compute_with(
        &options.inputs,
        &options.read,
        rule,
        options.batch_size,
        options.days,
        options.progress,
        &options.spill,
        true,
        scope,
    )?;
    commit_scoped(&computed, options, started, scope)
}

/// Reconciles what a run computed with the output `options.out` and commits
/// it; `started` is when the run began. `options.inputs` and `options.rule`
/// are only recorded.
pub fn commit_computed(
    computed: &Computed,
    options: &RunOptions,
    started: Instant,
) -> Result<RunReport, RunError> {
    commit_scoped(computed, options, started, None)
}

/// [`commit_computed`], committing only the rows of the creators of `scope`
/// when there is one ([`crate::scope`]): the other creators' published rows
/// are carried over as they are.
pub fn commit_scoped(
    computed: &Computed,
    options: &RunOptions,
    started: Instant,
    scope: Option<&CreatorScope>,
) -> Result<RunReport, RunError> {
    let lineage = computed.lineage();
    let report = RunReport {
        tally_version: VERSION.to_string(),
        run_id: computed.run_id.clone(),
        rule: RuleSummary::of(&computed.rule, &options.rule.display().to_string()),
        inputs: computed.inputs.clone(),
        input_fingerprint: lineage.input_fingerprint.clone(),
        output: options.out.display().to_string(),
        threads: rayon::current_num_threads(),
        batch_size: options.batch_size,
        memory_limit_bytes: options.spill.limit(),
        shards: computed.shards,
        records_per_second: 0.0,
        peak_memory_bytes: None,
        counts: computed.counts.clone(),
        commit: 0,
        window: report::window_text(options.days),
        reconcile: ReconcileCounts::default(),
        derived: Vec::new(),
        timings: computed.timings.clone(),
        checks: computed.checks.clone(),
        scope: None,
    };
    commit_output(computed, options, report, started, scope)
}

/// Reconciles the computed rows with the output, writes the new state into a
/// staging directory and promotes it. Completes and returns the report.
fn commit_output(
    computed: &Computed,
    options: &RunOptions,
    mut report: RunReport,
    started: Instant,
    scope: Option<&CreatorScope>,
) -> Result<RunReport, RunError> {
    let t = Instant::now();
    let bar = Progress::stage("commit", options.progress);
    // The directory itself, not a symbolic link to it: the lock and the swap
    // must be the same whatever path leads there.
    let out = &commit::resolve(&options.out)?;
    let _lock = commit::lock(out)?;
    let existing = commit::existing(out)?;
    // A layer of the survivor index adds to the index of the commit it was
    // computed from, and the rows of an incremental run to its partitions.
    if let Some(base) = computed.index.as_ref().and_then(|b| b.base.as_ref())
        && base.commit != existing.last_commit
    {
        return Err(RunError::MovedOn {
            built_on: base.commit,
            now: existing.last_commit,
        });
    }
    let number = existing.last_commit + 1;
    let staging = commit::stage(out, &computed.run_id)?;
    let lineage = computed.lineage();
    let in_window = |day: &i32| {
        options
            .days
            .is_none_or(|(from, to)| (from..=to).contains(day))
    };

    // The days this run writes: every day in the window it has rows for (a
    // computation may span several commits' windows), and every published
    // day in the window (whose rows are zeroed if it has no events any more).
    let mut days: Vec<i32> = computed
        .aggregate
        .rows
        .iter()
        .map(|r| r.day)
        .filter(in_window)
        .collect();
    days.extend(existing.days.keys().copied().filter(in_window));
    days.sort_unstable();
    days.dedup();
    // A scoped commit writes the days where its creators have rows, new or
    // published; the others stay as they are.
    if let Some(scope) = scope {
        let scoped = scoped_days(computed, &existing, scope, in_window)?;
        days.retain(|d| scoped.contains(d));
    }

    let root = Path::new("");
    let scope_record = scope.map(|s| s.record(&scope::list_path(root, number)));
    let to = Writing {
        existing: &existing,
        staging: &staging,
        out,
        commit: number,
        window: &report.window,
        hashes: commit::Repeated::default(),
    };
    let (written, sums): (Vec<PartitionManifest>, Vec<Option<derived::CreatorSums>>) = days
        .par_iter()
        .map(|&day| write_partition(computed, &to, day, scope.zip(scope_record.as_ref())))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .unzip();

    // Everything this run does not rewrite is carried over as it is: other
    // days, the log, earlier changesets and quarantines, and anything else kept
    // there. What this commit writes replaces whatever stood there (a stale
    // changeset or quarantine of the same number included).
    let mut replaced: HashSet<PathBuf> = days
        .iter()
        .flat_map(|d| {
            let day = format_day(*d);
            [
                layout::day_dir(root, &day),
                layout::partition_manifest(root, &day),
            ]
        })
        .collect();
    replaced.extend([
        layout::manifest(root),
        layout::report(root),
        layout::changes_dir(root, number),
        layout::quarantine_dir(root, number),
        // Never carried over: an index describes the commit that wrote it.
        survivors::dir(root),
        scope::list_path(root, number),
    ]);
    // The derived tables' partitions of every period this commit writes a day
    // of are rebuilt.
    let periods: Vec<(derived::Rollup, Vec<String>)> = derived::TABLES
        .iter()
        .map(|rollup| {
            let mut periods: Vec<String> =
                written.iter().map(|m| (rollup.period)(&m.day)).collect();
            periods.dedup();
            (*rollup, periods)
        })
        .collect();
    for (rollup, periods) in &periods {
        replaced.insert(rollup.changes_dir(root, number));
        for period in periods {
            replaced.insert(rollup.partition_dir(root, period));
            replaced.insert(rollup.manifest(root, period));
        }
    }
    staging.carry_over(&replaced)?;
    let derived = build_derived(
        &periods,
        out,
        &staging.dir,
        &written,
        &sums,
        number,
        &computed.run_id,
    )?;

    let mut reconciled = ReconcileCounts::default();
    let mut zeroed_days = Vec::new();
    for manifest in &written {
        reconciled.add(&manifest.reconcile);
        if manifest.events == 0 {
            zeroed_days.push(manifest.day.clone());
        }
    }
    let changeset = format!("{}/", layout::changes_dir(root, number).display());
    let quarantine = layout::quarantine_file(root, number);
    let sources = commit::sources(&computed.files);
    commit::write_quarantine(
        &staging.dir.join(&quarantine),
        &computed.quarantine,
        &sources,
    )?;
    if let Some(scope) = scope {
        let path = staging.dir.join(scope::list_path(root, number));
        commit::create_parent(&path)?;
        commit::write_staged(&path, scope.text().as_bytes())?;
    }
    let survivor_index = match &computed.index {
        Some(built) => Some(survivors::install(
            built,
            &computed.inputs,
            computed.read.max_line_bytes,
            &staging.dir,
        )?),
        None => None,
    };

    report.commit = number;
    report.reconcile = reconciled;
    report.derived = derived
        .iter()
        .map(derived::DerivedManifest::written)
        .collect();
    report.counts.rows = written.iter().map(|m| m.rows).sum();
    report.counts.days = written.len() as u64;
    report.scope = scope_record.clone();
    let entry = LogEntry {
        commit: number,
        run_id: computed.run_id.clone(),
        tally_version: VERSION.to_string(),
        compute_version: COMPUTE_VERSION,
        committed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        rule: report.rule.clone(),
        input_fingerprint: lineage.input_fingerprint.clone(),
        inputs: computed.inputs.clone(),
        window: report.window.clone(),
        written: written.iter().map(|m| m.day.clone()).collect(),
        zeroed_days,
        derived: derived
            .iter()
            .map(derived::DerivedManifest::written)
            .collect(),
        counts: report.counts.clone(),
        reconcile: reconciled,
        changeset,
        quarantine: Some(quarantine.display().to_string()),
        max_line_bytes: Some(computed.read.max_line_bytes as u64),
        survivor_index,
        scope: scope_record,
    };
    commit::write_new_file(
        &layout::log_entry(&staging.dir, number),
        pretty(&entry).as_bytes(),
    )?;

    // The current state: every partition with the commit that last wrote it.
    let mut partitions: Vec<serde_json::Value> = Vec::new();
    // Every published day this commit did not write (outside its window, or
    // without a creator of its scope) is carried over.
    let rewritten: HashSet<&str> = written.iter().map(|m| m.day.as_str()).collect();
    for day in existing
        .days
        .keys()
        .copied()
        .filter(|d| !rewritten.contains(format_day(*d).as_str()))
    {
        let path = layout::partition_manifest(&staging.dir, &format_day(day));
        let manifest = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| serde_json::from_str::<PartitionManifest>(&text).ok());
        partitions.push(match manifest {
            Some(m) => partition_summary(&m),
            None => serde_json::json!({ "day": format_day(day), "manifest": "unreadable" }),
        });
    }
    partitions.extend(written.iter().map(partition_summary));
    partitions.sort_by(|a, b| a["day"].as_str().cmp(&b["day"].as_str()));
    let manifest = serde_json::json!({
        "layout": layout::LAYOUT_VERSION,
        "tally_version": VERSION,
        "commit": number,
        "run_id": computed.run_id,
        "lineage": lineage,
        "inputs": computed.inputs,
        "partitions": partitions,
        "derived": derived_summary(&staging.dir)?,
        "quarantine": quarantine.display().to_string(),
    });
    commit::write_staged(
        &layout::manifest(&staging.dir),
        pretty(&manifest).as_bytes(),
    )?;

    report.timings.commit = t.elapsed().as_secs_f64();
    report.timings.total = started.elapsed().as_secs_f64();
    report.records_per_second = report.counts.records as f64 / report.timings.total.max(1e-9);
    report.peak_memory_bytes = crate::report::peak_memory();
    commit::write_staged(&layout::report(&staging.dir), pretty(&report).as_bytes())?;
    staging.promote()?;
    bar.finish();
    Ok(report)
}

/// Rebuilds each derived table's partitions of `periods` in the staging
/// directory, from the day partitions there (written by this commit, whose
/// per-creator `sums` are at hand, or carried over), reconciled with those
/// published in `out`; writes their manifests.
fn build_derived(
    periods: &[(derived::Rollup, Vec<String>)],
    out: &Path,
    staging: &Path,
    written: &[PartitionManifest],
    sums: &[Option<derived::CreatorSums>],
    commit: u64,
    run_id: &str,
) -> Result<Vec<derived::DerivedManifest>, RunError> {
    let jobs: Vec<(derived::Rollup, &String)> = periods
        .iter()
        .flat_map(|(rollup, periods)| periods.iter().map(move |p| (*rollup, p)))
        .collect();
    let staged = crate::lineage::partition_days(staging)?;
    jobs.par_iter()
        .map(|(rollup, period)| {
            let mut days = Vec::new();
            for day in &staged {
                if (rollup.period)(day) != **period {
                    continue;
                }
                let (manifest, day_sums) = match written.iter().position(|m| m.day == *day) {
                    Some(at) => (written[at].clone(), sums[at].as_ref()),
                    None => (
                        crate::lineage::read_json(&layout::partition_manifest(staging, day))?,
                        None,
                    ),
                };
                days.push(derived::Day {
                    path: staging.join(&manifest.file),
                    source: derived::Source {
                        day: day.clone(),
                        blake3: manifest.blake3,
                        commit: manifest.commit,
                        rule_hash: manifest.lineage.rule_hash,
                        rule_hashes: manifest.rule_hashes,
                    },
                    sums: day_sums,
                });
            }
            let published = rollup.part_file(out, period);
            let manifest = derived::build(
                rollup,
                period,
                &days,
                Some(&published),
                staging,
                commit,
                run_id,
            )?;
            commit::write_staged(
                &rollup.manifest(staging, period),
                pretty(&manifest).as_bytes(),
            )?;
            Ok(manifest)
        })
        .collect()
}

/// Every derived table's partitions in a (staged) output, from their
/// manifests: `{ "monthly": [ { "month": ..., "file": ..., ... } ] }`.
fn derived_summary(dir: &Path) -> Result<serde_json::Value, RunError> {
    let mut tables = serde_json::Map::new();
    for rollup in derived::TABLES {
        let mut partitions = Vec::new();
        for m in crate::lineage::derived_in(dir, &rollup)? {
            partitions.push(serde_json::json!({
                rollup.column: m.period,
                "file": m.file,
                "commit": m.commit,
                "blake3": m.blake3,
                "rows": m.rows,
                "events": m.events,
                "amount_micros": m.amount_micros,
            }));
        }
        tables.insert(rollup.table.to_string(), partitions.into());
    }
    Ok(tables.into())
}

fn partition_summary(m: &PartitionManifest) -> serde_json::Value {
    serde_json::json!({
        "day": m.day,
        "file": m.file,
        "commit": m.commit,
        "rule_hash": m.lineage.rule_hash,
        "blake3": m.blake3,
        "rows": m.rows,
        "events": m.events,
        "amount_micros": m.amount_micros,
    })
}

/// The days of `window` where a creator of `scope` has rows: new ones in
/// what was computed, or published ones in `existing`. A scoped commit
/// writes only those.
pub fn scoped_days(
    computed: &Computed,
    existing: &commit::Existing,
    scope: &CreatorScope,
    window: impl Fn(&i32) -> bool,
) -> Result<BTreeSet<i32>, RunError> {
    let mut scoped: BTreeSet<i32> = computed
        .aggregate
        .rows
        .iter()
        .filter(|r| window(&r.day) && scope.contains(computed.strings.get(r.creator)))
        .map(|r| r.day)
        .collect();
    for (day, dir) in &existing.days {
        if !scoped.contains(day)
            && window(day)
            && scope.published_rows(&dir.join(layout::PART_FILE))? > 0
        {
            scoped.insert(*day);
        }
    }
    Ok(scoped)
}

/// Where a commit writes its partitions, and what it is.
struct Writing<'a> {
    existing: &'a commit::Existing,
    staging: &'a commit::Staging,
    /// The output (resolved), for the published partitions' manifests.
    out: &'a Path,
    commit: u64,
    window: &'a Option<(String, String)>,
    /// The rule hash column the partitions share.
    hashes: commit::Repeated,
}

/// Rows, each with the rule hash it is stamped with.
type Stamped<'a> = Vec<(OutRow<'a>, &'a str)>;

/// Reconciles and writes one day's partition, and its part of the changeset,
/// into the staging directory. Returns its manifest and its rows summed per
/// creator (for the derived tables).
fn write_partition(
    computed: &Computed,
    to: &Writing<'_>,
    day: i32,
    scope: Option<(&CreatorScope, &ScopeRecord)>,
) -> Result<(PartitionManifest, Option<derived::CreatorSums>), RunError> {
    let mut lineage = computed.day_lineage(day);
    let day_name = format_day(day);
    let published = match to.existing.days.get(&day) {
        Some(dir) => Some(Published::read(&dir.join(layout::PART_FILE))?),
        None => None,
    };
    let mut new = computed.day_rows(day);
    // A scoped commit reconciles the listed creators' rows only; the others'
    // published rows are carried over with the rule hash each was stamped
    // with.
    let (old, carried): (Stamped<'_>, Stamped<'_>) = match (scope, published.as_ref()) {
        (Some((scope, _)), Some(p)) => {
            new.retain(|r| scope.contains(r.creator));
            p.sorted_rows()
                .into_iter()
                .partition(|(r, _)| scope.contains(r.creator))
        }
        (Some((scope, _)), None) => {
            new.retain(|r| scope.contains(r.creator));
            (Vec::new(), Vec::new())
        }
        (None, p) => (
            p.map(Published::sorted_rows).unwrap_or_default(),
            Vec::new(),
        ),
    };
    if let Some(increment) = &computed.increment {
        new = increment.apply(day, &old, &new)?;
    }
    let mut merged = reconcile_rows(&new, old, &lineage.rule_hash);
    merged.counts.unchanged += carried.len() as u64;
    let mut rows: Vec<(OutRow<'_>, &str)> = merged
        .rows
        .iter()
        .map(|r| (*r, lineage.rule_hash.as_str()))
        .chain(carried.iter().copied())
        .collect();
    // The reconciled rows are in key order already; carried rows go among them.
    if !carried.is_empty() {
        rows.sort_by(|a, b| a.0.key().cmp(&b.0.key()));
    }
    // Every hash the rows are stamped with, when they are not all this run's.
    let mut stamped: BTreeSet<&str> = carried.iter().map(|(_, h)| *h).collect();
    if !merged.rows.is_empty() {
        stamped.insert(&lineage.rule_hash);
    }
    let rule_hashes: Vec<String> = if stamped.iter().all(|h| *h == lineage.rule_hash) {
        Vec::new()
    } else {
        stamped.into_iter().map(str::to_string).collect()
    };
    // Carried rows were computed from the inputs the partition was stamped
    // with; when the day's inputs changed since, that stamp stays, so that
    // the day reads as computed from other inputs than today's.
    let mut kept_fingerprint = false;
    if scope.is_some() && !carried.is_empty() {
        let path = layout::partition_manifest(to.out, &day_name);
        let before: PartitionManifest = crate::lineage::read_json(&path)?;
        if before.lineage.input_fingerprint != lineage.input_fingerprint {
            lineage.input_fingerprint = before.lineage.input_fingerprint;
            kept_fingerprint = true;
        }
    }
    let file = layout::part_file(Path::new(""), &day_name);
    commit::create_parent(&to.staging.dir.join(&file))?;
    let mut key_values = lineage.key_values(&day_name);
    if !rule_hashes.is_empty() {
        key_values.push(KeyValue::new(
            "tally.rule_hashes".to_string(),
            rule_hashes.join(","),
        ));
    }
    if let Some((_, record)) = scope {
        key_values.push(KeyValue::new(
            "tally.scope_creators".to_string(),
            record.blake3.clone(),
        ));
    }
    let blake3 =
        commit::write_stamped_rows(&to.staging.dir.join(&file), &rows, &key_values, &to.hashes)?;
    // Without them (a sum overflows), the derived tables read the file back,
    // which reports the overflow.
    let sums = derived::creator_sums(rows.iter().map(|(r, _)| (r.creator, r.figures()))).ok();
    let manifest = PartitionManifest {
        file: file.display().to_string(),
        day: day_name,
        blake3,
        rows: rows.len() as u64,
        events: rows.iter().map(|(r, _)| r.events).sum(),
        payable_events: rows.iter().map(|(r, _)| r.payable_events).sum(),
        amount_micros: rows.iter().map(|(r, _)| r.amount_micros).sum(),
        commit: to.commit,
        run_id: computed.run_id.clone(),
        lineage,
        inputs: computed.inputs.clone(),
        day_inputs: computed.day_inputs(day),
        window: to.window.clone(),
        reconcile: merged.counts,
        max_line_bytes: Some(computed.read.max_line_bytes as u64),
        scope: scope.map(|(_, record)| record.clone()),
        carried_rows: carried.len() as u64,
        kept_fingerprint,
        rule_hashes,
    };
    commit::write_staged(
        &layout::partition_manifest(&to.staging.dir, &manifest.day),
        pretty(&manifest).as_bytes(),
    )?;
    if !merged.changes.is_empty() {
        let path = layout::change_file(&to.staging.dir, to.commit, &manifest.day);
        commit::create_parent(&path)?;
        commit::write_changes(
            &path,
            &merged.changes,
            &manifest.lineage.rule_hash,
            &manifest.lineage.key_values(&manifest.day),
            &to.hashes,
        )?;
    }
    Ok((manifest, sums))
}

/// Pretty JSON with a final newline.
fn pretty<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("reports serialize") + "\n"
}
