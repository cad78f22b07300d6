//! The driver's side: the plan (the rule resolved and pinned once, the inputs
//! listed and fingerprinted, the directory the reduce tasks write their parts
//! of the survivor index into) and the commit of the reduce tasks' results,
//! through the same function as `tally commit`.

use crate::error::{TallyError, failed};
use crate::reduce::{Reduced, check_pinned, limits};
use crate::validate::Summary;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tally::commit::Quarantine;
use tally::ingest::{InputFile, ReadOptions};
use tally::report::Counts;
use tally::rule::{Limits, Rule};
use tally::shard::WorkDir;
use tally::tasks::{self, PlanOptions, TaskError};

/// Records one reduce task holds in memory unless told otherwise: about
/// 320 MiB at the 160 bytes a record the memory limit counts.
pub const RECORDS_PER_SHARD: u64 = 2_000_000;

/// A planned run: what the driver holds from the plan to the commit.
#[pyclass(frozen, module = "tally._native")]
pub struct Plan {
    plan: tasks::Plan,
    json: String,
    rule_bytes: Vec<u8>,
    files: Vec<InputFile>,
    /// Where the reduce tasks write their parts of the survivor index: made
    /// and locked with the plan, removed with everything in it when the last
    /// plan sharing it is dropped (a killed run's is removed by the next run
    /// beside it).
    index_dir: Arc<WorkDir>,
    started: Instant,
}

/// Plans a run: resolves the rule (a component file, or a reference into the
/// registry) and pins its hash, lists and fingerprints the inputs, and makes
/// the directory the reduce tasks write their parts of the survivor index
/// into, a hidden one in `work` (default: the output's parent directory),
/// which the driver and every executor must see at the same path. `shards`
/// defaults to enough shards for about two million records each, and at
/// least `min_shards`.
#[pyfunction]
#[pyo3(signature = (inputs, rule, out, *, registry=None, work=None, shards=None, min_shards=1, batch_size=None, days=None, max_line_bytes=None, rule_memory_mib=256, fuel_per_event=None))]
#[allow(clippy::too_many_arguments)]
pub fn plan(
    py: Python<'_>,
    inputs: Vec<PathBuf>,
    rule: String,
    out: PathBuf,
    registry: Option<PathBuf>,
    work: Option<PathBuf>,
    shards: Option<u32>,
    min_shards: u32,
    batch_size: Option<usize>,
    days: Option<String>,
    max_line_bytes: Option<usize>,
    rule_memory_mib: u32,
    fuel_per_event: Option<u64>,
) -> PyResult<Plan> {
    let started = Instant::now();
    let days = days
        .map(|d| tally::event::parse_day_range(&d))
        .transpose()
        .map_err(TallyError::new_err)?;
    if let Some(n) = shards
        && !(1..=tally::shard::MAX_SHARDS).contains(&n)
    {
        return Err(TallyError::new_err(format!(
            "shards must be 1 to {}, not {n}",
            tally::shard::MAX_SHARDS
        )));
    }
    if batch_size == Some(0) {
        return Err(TallyError::new_err("batch_size must be at least 1"));
    }
    if !(1..=65_536).contains(&rule_memory_mib) {
        return Err(TallyError::new_err("rule_memory_mib must be 1 to 65536"));
    }
    let limits = Limits {
        memory_bytes: (rule_memory_mib as usize) << 20,
        fuel_per_event: fuel_per_event.unwrap_or(Limits::default().fuel_per_event),
        ..Limits::default()
    };
    py.detach(|| {
        let location = tally::registry::location(registry.as_deref());
        let loaded = tally::registry::load(&rule, &location, limits).map_err(failed)?;
        let options = PlanOptions {
            inputs,
            rule: loaded.rule,
            rule_bytes: Vec::new(),
            rule_reference: rule,
            limits,
            out,
            work: PathBuf::new(),
            shards: 1,
            task_bytes: u64::MAX,
            read: ReadOptions {
                max_line_bytes: max_line_bytes.unwrap_or(tally::ingest::DEFAULT_MAX_LINE_BYTES),
            },
            batch_size: batch_size.unwrap_or(tally::pipeline::DEFAULT_BATCH_SIZE),
            days,
            progress: false,
        };
        let (mut plan, files) = tasks::new_plan(&options).map_err(failed)?;
        if let Some(f) = files
            .iter()
            .find(|f| f.format == tally::ingest::Format::JsonlZst)
        {
            return Err(TallyError::new_err(format!(
                "input {}: Spark's text reader has no zstd codec it can count on; give it .jsonl or .jsonl.gz, or run `tally run` on it",
                f.path.display()
            )));
        }
        plan.shards = shards.unwrap_or_else(|| {
            let records = tally::shard::memory::estimate_records(&files);
            let wanted = records.div_ceil(RECORDS_PER_SHARD).max(1);
            (wanted.min(u64::from(tally::shard::MAX_SHARDS)) as u32)
                .max(min_shards.clamp(1, tally::shard::MAX_SHARDS))
        });
        let json = serde_json::to_string(&plan)
            .map_err(|e| TallyError::new_err(e.to_string()))?;
        let index_dir = Arc::new(index_dir(&plan, work.as_deref())?);
        Ok(Plan {
            plan,
            json,
            rule_bytes: loaded.resolved.bytes,
            files,
            index_dir,
            started,
        })
    })
}

/// Makes the run's directory for the parts of the survivor index in `work`,
/// or else beside the output, as an absolute path (the executors are handed
/// it as it is).
fn index_dir(plan: &tasks::Plan, work: Option<&Path>) -> PyResult<WorkDir> {
    let parent = match work {
        Some(work) => std::path::absolute(work).map_err(|e| {
            TallyError::new_err(format!("the work directory {}: {e}", work.display()))
        })?,
        None => {
            let out = tally::commit::resolve(Path::new(&plan.out)).map_err(failed)?;
            out.parent().unwrap_or(Path::new("/")).to_path_buf()
        }
    };
    // Named apart from the commit's own directory for the same run.
    WorkDir::create(&parent, &format!("{}-spark", plan.run_id)).map_err(|e| {
        TallyError::new_err(format!(
            "cannot make the directory for the survivor index's parts in {}: {}",
            parent.display(),
            crate::error::chain(&e)
        ))
    })
}

/// How a reduce task's shards are named in errors.
fn shards_text(reduced: &Reduced) -> String {
    let shards: Vec<String> = reduced.shards.keys().map(u32::to_string).collect();
    match shards.len() {
        0 => "a reduce task that held no records".to_string(),
        1 => format!("the reduce task of shard {}", shards[0]),
        _ => format!("the reduce task of shards {}", shards.join(", ")),
    }
}

/// Sorts the reduce tasks' results by the shards they reduced, so that their
/// parts of the survivor index follow each other in key order (a shard is a
/// range of keys). Each shard must have been reduced by one task (dedup needs
/// all of its records together), and no task's shards may fall between
/// another's.
fn sort_by_shard(reduced: &mut [(Vec<u8>, Reduced)]) -> Result<(), String> {
    let mut owner: BTreeMap<u32, usize> = BTreeMap::new();
    for (i, (_, r)) in reduced.iter().enumerate() {
        for &shard in r.shards.keys() {
            if owner.insert(shard, i).is_some() {
                return Err(format!(
                    "shard {shard} was reduced by two tasks: all of a shard's records must be reduced by one"
                ));
            }
        }
    }
    let mut finished = BTreeSet::new();
    let mut current = None;
    for (&shard, &task) in &owner {
        if current != Some(task) {
            if !finished.insert(task) {
                return Err(format!(
                    "{} holds shards on both sides of shards another task reduced (up to shard {shard}): each reduce task's shards must be consecutive",
                    shards_text(&reduced[task].1)
                ));
            }
            current = Some(task);
        }
    }
    reduced.sort_by_key(|(_, r)| r.shards.keys().next().copied());
    Ok(())
}

/// The part of the survivor index a reduce task wrote into `dir`, checked:
/// there, of the size, blake3 and rows the task recorded.
fn index_part(dir: &Path, reduced: &Reduced) -> Result<PathBuf, String> {
    let task = shards_text(reduced);
    let part = reduced.index.as_ref().ok_or_else(|| {
        format!("{task} sent no part of the survivor index (a reduce task of another Tally?)")
    })?;
    // A bare file name: the driver reads its own directory and nothing else.
    let mut components = Path::new(&part.file).components();
    if !matches!(
        (components.next(), components.next()),
        (Some(Component::Normal(_)), None)
    ) {
        return Err(format!(
            "{task} named its part of the survivor index {:?}, not a file of {}",
            part.file,
            dir.display()
        ));
    }
    let path = dir.join(&part.file);
    let bytes = match std::fs::metadata(&path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "the part of the survivor index {task} wrote, {}, is missing: the driver and every executor must see {} at the same path (tally-spark --work)",
                path.display(),
                dir.display()
            ));
        }
        Err(e) => {
            return Err(format!(
                "the part of the survivor index {task} wrote, {}: {e}",
                path.display()
            ));
        }
    };
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_mmap(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let actual = hasher.finalize().to_hex().to_string();
    if actual != part.blake3 || bytes != part.bytes {
        return Err(format!(
            "the part of the survivor index {task} wrote, {}, is damaged: blake3 {actual} of {bytes} bytes, written as {} of {} bytes",
            path.display(),
            part.blake3,
            part.bytes
        ));
    }
    let records: u64 = reduced.shards.values().sum();
    if part.rows != records {
        return Err(format!(
            "invariant broken: {task}: rows of its part of the survivor index = records reduced: {} = {records}",
            part.rows
        ));
    }
    Ok(path)
}

/// Reads what one reduce task sent: its partial rows and counts, with its
/// part of the survivor index in `index_dir`, checked.
fn partial_of(
    rows: &[u8],
    reduced: Reduced,
    index_dir: &Path,
) -> Result<tally::shard::reduce::Partial, TaskError> {
    let part = index_part(index_dir, &reduced).map_err(TaskError::Work)?;
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(rows), None)
        .map_err(|e| TaskError::Work(format!("a reduce task's rows are damaged: {e}")))?;
    let mut partial = tasks::partial_from_rows(
        reader.map(|b| b.map_err(|e| e.to_string())),
        reduced.counts,
        reduced.provenance,
    )
    .map_err(|e| TaskError::Work(format!("a reduce task's rows are damaged: {e}")))?;
    partial.index = Some(tally::survivors::Part::File(part));
    Ok(partial)
}

/// The reading side of the run from the validate tasks' summaries: its
/// counts, the records routed to each shard, and the quarantine lines in
/// input order, written to `quarantine`.
fn read_side(
    plan: &tasks::Plan,
    summaries: Vec<Summary>,
    quarantine: &mut impl Write,
) -> Result<(Counts, Vec<u64>, std::collections::BTreeSet<u32>), String> {
    let mut counts = Counts::default();
    let mut routed = vec![0u64; plan.shards as usize];
    let mut seen = std::collections::BTreeSet::new();
    let mut lines = Vec::new();
    for s in summaries {
        if s.routed.len() != routed.len() {
            return Err(format!(
                "a validate task routed records to {} shards, the plan has {}",
                s.routed.len(),
                plan.shards
            ));
        }
        counts.records += s.records;
        counts.valid += s.valid;
        for (reason, n) in s.quarantined_by_reason {
            counts.quarantined += n;
            *counts.quarantined_by_reason.entry(reason).or_default() += n;
        }
        for (total, n) in routed.iter_mut().zip(&s.routed) {
            *total += n;
        }
        seen.extend(s.seen);
        lines.extend(s.quarantine);
    }
    if counts.quarantined != lines.len() as u64 {
        return Err(format!(
            "quarantined records = quarantine lines: {} = {}",
            counts.quarantined,
            lines.len()
        ));
    }
    if counts.records != counts.valid + counts.quarantined {
        return Err(format!(
            "records read = valid + quarantined: {} = {} + {}",
            counts.records, counts.valid, counts.quarantined
        ));
    }
    // Input order: file, then where the split starts, then the record's
    // place in it.
    lines.sort_by_key(|(source, block, ordinal, _)| (*source, *block, *ordinal));
    for (_, _, _, line) in &lines {
        writeln!(quarantine, "{line}").map_err(|e| format!("writing the quarantine: {e}"))?;
    }
    Ok((counts, routed, seen))
}

impl Plan {
    fn commit_results(
        &self,
        results: Vec<(Vec<u8>, String, Vec<Vec<u8>>)>,
        progress: bool,
    ) -> Result<tally::report::RunReport, String> {
        let plan = &self.plan;
        // What was read must be what was planned and fingerprinted.
        tally::ingest::check_unchanged(&self.files).map_err(|e| crate::error::chain(&e))?;
        check_pinned(plan, &self.rule_bytes)?;
        let rule = Rule::from_bytes(Path::new(&plan.rule.path), &self.rule_bytes, limits(plan))
            .map_err(|e| crate::error::chain(&e))?;

        let mut reduced = Vec::with_capacity(results.len());
        let mut summaries = Vec::new();
        for (rows, json, carried) in results {
            let r: Reduced = serde_json::from_str(&json)
                .map_err(|e| format!("a reduce task's counts are damaged: {e}"))?;
            for s in carried {
                summaries.push(
                    serde_json::from_slice::<Summary>(&s)
                        .map_err(|e| format!("a validate task's summary is damaged: {e}"))?,
                );
            }
            reduced.push((rows, r));
        }
        sort_by_shard(&mut reduced)?;

        let mut file = tempfile::NamedTempFile::new()
            .map_err(|e| format!("cannot make a file for the quarantine: {e}"))?;
        let (counts, routed, seen) = {
            let mut out = std::io::BufWriter::new(file.as_file_mut());
            let side = read_side(plan, summaries, &mut out)?;
            out.flush()
                .map_err(|e| format!("writing the quarantine: {e}"))?;
            side
        };
        // Every record routed to a shard was reduced there, once.
        let mut reduced_by_shard = vec![0u64; routed.len()];
        for (_, r) in &reduced {
            for (&shard, &n) in &r.shards {
                match reduced_by_shard.get_mut(shard as usize) {
                    Some(total) => *total += n,
                    None => {
                        return Err(format!(
                            "a reduce task reduced shard {shard}, the plan has {}",
                            plan.shards
                        ));
                    }
                }
            }
        }
        for (k, (a, b)) in routed.iter().zip(&reduced_by_shard).enumerate() {
            if a != b {
                return Err(format!(
                    "invariant broken, nothing committed: shard {k}: records validated into it = records reduced: {a} = {b}"
                ));
            }
        }
        let unread: Vec<&str> = plan
            .files
            .iter()
            .enumerate()
            .filter(|(i, f)| f.input.size > 0 && !seen.contains(&(*i as u32)))
            .map(|(_, f)| f.name.as_str())
            .collect();
        if !unread.is_empty() {
            return Err(format!(
                "Spark read no record of {}; nothing committed",
                unread.join(", ")
            ));
        }

        let len = file
            .as_file()
            .metadata()
            .map_err(|e| format!("the quarantine file: {e}"))?
            .len();
        let quarantine = Quarantine::Rendered(vec![(file.path().to_path_buf(), 0, len)]);
        let index_dir = self.index_dir.path();
        let parts: Vec<PathBuf> = reduced
            .iter()
            .filter_map(|(_, r)| r.index.as_ref().map(|p| index_dir.join(&p.file)))
            .collect();
        let partials = reduced
            .into_iter()
            .map(|(rows, r)| partial_of(&rows, r, index_dir));
        let report = tasks::commit_partials(
            plan,
            rule,
            counts,
            quarantine,
            partials,
            progress,
            self.started,
        )
        .map_err(|e| crate::error::chain(&e))?;
        // The index holds them now; the directory itself goes with the plan.
        for part in parts {
            let _ = std::fs::remove_file(part);
        }
        Ok(report)
    }
}

#[pymethods]
impl Plan {
    /// The plan as JSON (what the tasks take).
    #[getter]
    fn json(&self) -> &str {
        &self.json
    }

    /// The pinned rule component.
    #[getter]
    fn rule_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.rule_bytes)
    }

    /// The pinned rule's blake3.
    #[getter]
    fn rule_hash(&self) -> &str {
        &self.plan.rule.hash
    }

    /// The shard count.
    #[getter]
    fn shards(&self) -> u32 {
        self.plan.shards
    }

    /// The same plan with `shards` shards.
    fn with_shards(&self, shards: u32) -> PyResult<Plan> {
        if !(1..=tally::shard::MAX_SHARDS).contains(&shards) {
            return Err(TallyError::new_err(format!(
                "shards must be 1 to {}, not {shards}",
                tally::shard::MAX_SHARDS
            )));
        }
        let mut plan = self.plan.clone();
        plan.shards = shards;
        let json = serde_json::to_string(&plan).map_err(|e| TallyError::new_err(e.to_string()))?;
        Ok(Plan {
            plan,
            json,
            rule_bytes: self.rule_bytes.clone(),
            files: self.files.clone(),
            index_dir: self.index_dir.clone(),
            started: self.started,
        })
    }

    /// The output directory the commit writes.
    #[getter]
    fn out(&self) -> &str {
        &self.plan.out
    }

    /// The directory the reduce tasks write their parts of the survivor
    /// index into (what `Reducer` takes), an absolute path: the driver and
    /// every executor must see it at this path.
    #[getter]
    fn index_dir(&self) -> PathBuf {
        self.index_dir.path().to_path_buf()
    }

    /// The input files to read, in order: `(absolute path, format)`, the
    /// format one of `jsonl`, `jsonl.gz` and `parquet`.
    #[getter]
    fn files(&self) -> Vec<(String, String)> {
        self.plan
            .files
            .iter()
            .map(|f| (f.input.path.clone(), f.input.format.clone()))
            .collect()
    }

    /// Merges the reduce tasks' results (what each `Reducer.finish`
    /// returned), checks that every record is accounted for, the run's
    /// invariants and every task's part of the survivor index (there, with
    /// the blake3 it was written with), and reconciles and commits into the
    /// output, survivor index included, as `tally run` does. Returns the run
    /// report as JSON and as the summary `tally run` prints.
    #[pyo3(signature = (results, progress=false))]
    fn commit(
        &self,
        py: Python<'_>,
        results: Vec<(Bound<'_, PyAny>, String, Vec<Bound<'_, PyAny>>)>,
        progress: bool,
    ) -> PyResult<(String, String)> {
        let mut owned = Vec::with_capacity(results.len());
        for (rows, json, summaries) in results {
            let summaries = summaries
                .iter()
                .map(crate::error::bytes_of)
                .collect::<PyResult<Vec<_>>>()?;
            owned.push((crate::error::bytes_of(&rows)?, json, summaries));
        }
        let results = owned;
        let report = py
            .detach(|| self.commit_results(results, progress))
            .map_err(|e| {
                TallyError::new_err(format!(
                    "commit failed; the output directory is as it was: {e}"
                ))
            })?;
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| TallyError::new_err(e.to_string()))?;
        Ok((json, report.to_string()))
    }
}
