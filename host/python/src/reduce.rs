//! The reduce task: one partition's shards of valid records deduplicated,
//! classified with the pinned rule and summed, as `tally reduce` does for one
//! shard. All records of an `event_id` are in one shard, so a partition that
//! holds several shards dedups each exactly, and the order its blobs arrive
//! in changes nothing: dedup's survivor rule is a total order, and records
//! are taken file by file, as a run reads them.
//!
//! The rule comes as bytes with the hash the plan pinned: bytes with another
//! blake3 are refused before anything is read or run.
//!
//! The partition's part of the survivor index (every valid record it reduced,
//! as `tally reduce` writes `index.arrow`) goes into a file of the run's index
//! directory, which the driver created and reads back: only its name, rows
//! and blake3 travel to the driver, so the driver never holds the index in
//! memory.

use crate::error::{TallyError, failed};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tally::aggregate::Contribution;
use tally::ingest::Chunk;
use tally::intern::Interner;
use tally::report::{Counts, Timings};
use tally::rule::{Limits, Rule};
use tally::shard::reduce::Partial;
use tally::survivors::{IndexFile, IndexWriter, Part};
use tally::tasks::Plan;

/// What a reduce task sends the driver beside its rows.
#[derive(Debug, Serialize, Deserialize)]
pub struct Reduced {
    /// Counts from `valid` on (valid, duplicates, conflicts, unique,
    /// classified, payable, amount, reasons).
    pub counts: Counts,
    /// Unique events per day and input file.
    pub provenance: Vec<Contribution>,
    /// Records reduced, by shard.
    pub shards: BTreeMap<u32, u64>,
    /// The partition's part of the survivor index: a file of the run's index
    /// directory, with its rows, size and blake3 (absent only when a reduce
    /// task of another Tally sent none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexFile>,
}

/// The sandbox limits the plan pinned.
pub fn limits(plan: &Plan) -> Limits {
    Limits {
        memory_bytes: usize::try_from(plan.rule_memory_bytes).unwrap_or(usize::MAX),
        fuel_per_event: plan.fuel_per_event,
        ..Limits::default()
    }
}

/// Checks that `bytes` are the pinned rule's, before anything runs.
pub fn check_pinned(plan: &Plan, bytes: &[u8]) -> Result<(), String> {
    let hash = blake3::hash(bytes).to_hex().to_string();
    if hash != plan.rule.hash {
        return Err(format!(
            "the rule given has blake3 {hash}, not the pinned rule's {}: refusing to run it",
            plan.rule.hash
        ));
    }
    Ok(())
}

/// Compiled rules by hash and limits: a Python worker runs many tasks, and
/// compiling a rule takes longer than loading it.
type Compiled = Vec<((String, u64, u64), Arc<Rule>)>;
static RULES: Mutex<Compiled> = Mutex::new(Vec::new());

/// The pinned rule, compiled once per process.
fn pinned_rule(plan: &Plan, bytes: &[u8]) -> Result<Arc<Rule>, PyErr> {
    let key = (
        plan.rule.hash.clone(),
        plan.rule_memory_bytes,
        plan.fuel_per_event,
    );
    let mut rules = RULES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, rule)) = rules.iter().find(|(k, _)| *k == key) {
        return Ok(rule.clone());
    }
    let path = std::path::PathBuf::from(&plan.rule.path);
    let rule = Arc::new(Rule::from_bytes(&path, bytes, limits(plan)).map_err(failed)?);
    rules.push((key, rule.clone()));
    Ok(rule)
}

/// Reduces one partition: fed its `(key, blob)` pairs, then finished.
#[pyclass(module = "tally._native")]
pub struct Reducer {
    plan: Plan,
    rule: Arc<Rule>,
    threads: usize,
    chunks: Vec<Chunk>,
    interners: Vec<Interner>,
    shards: BTreeMap<u32, u64>,
    summaries: Vec<Vec<u8>>,
    index_dir: PathBuf,
    started: Instant,
}

#[pymethods]
impl Reducer {
    /// A reducer for the plan `plan_json` with the rule `rule_bytes`, refused
    /// unless its blake3 is the plan's pinned hash; it writes its part of the
    /// survivor index into `index_dir` (`Plan.index_dir`, which must be there
    /// already: the driver reads the part from it); `threads` classify at
    /// once.
    #[new]
    #[pyo3(signature = (plan_json, rule_bytes, index_dir, threads=1))]
    fn new(
        plan_json: &str,
        rule_bytes: &[u8],
        index_dir: PathBuf,
        threads: usize,
    ) -> PyResult<Self> {
        let plan: Plan = serde_json::from_str(plan_json)
            .map_err(|e| TallyError::new_err(format!("not a Tally plan: {e}")))?;
        check_pinned(&plan, rule_bytes).map_err(TallyError::new_err)?;
        // Checked before anything is reduced: a directory the driver made
        // but this machine cannot see is a mount missing here.
        if !index_dir.is_dir() {
            return Err(TallyError::new_err(format!(
                "the run's survivor index directory {} is not there on this machine: the driver and every executor must see it at the same path (tally-spark --work)",
                index_dir.display()
            )));
        }
        let rule = pinned_rule(&plan, rule_bytes)?;
        Ok(Reducer {
            plan,
            rule,
            threads: threads.max(1),
            chunks: Vec::new(),
            interners: Vec::new(),
            shards: BTreeMap::new(),
            summaries: Vec::new(),
            index_dir,
            started: Instant::now(),
        })
    }

    /// Takes one blob of the partition: a shard's records (`key` below the
    /// shard count) or a validate task's summary, passed on to the driver.
    fn add(&mut self, py: Python<'_>, key: i64, blob: &Bound<'_, PyAny>) -> PyResult<()> {
        let blob = crate::error::bytes_of(blob)?;
        let blob = blob.as_slice();
        let shards = self.plan.shards;
        if key < 0 {
            return Err(TallyError::new_err(format!("blob key {key} is negative")));
        }
        if key >= i64::from(shards) {
            self.summaries.push(blob.to_vec());
            return Ok(());
        }
        let shard = key as u32;
        let files = self.plan.files.len();
        let read = py.detach(|| {
            crate::records::read(
                blob,
                shard,
                shards,
                files,
                &mut self.chunks,
                &mut self.interners,
            )
        });
        let rows = read.map_err(|e| TallyError::new_err(format!("shard {shard}: {e}")))?;
        *self.shards.entry(shard).or_default() += rows;
        Ok(())
    }

    /// Dedups, classifies and sums what the partition holds, and writes its
    /// part of the survivor index into the index directory. Returns its
    /// partial daily rows (Arrow IPC stream bytes), what it reduced (JSON,
    /// [`Reduced`], naming the index part) and the validate summaries it was
    /// handed.
    #[allow(clippy::type_complexity)]
    fn finish<'py>(
        &mut self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyBytes>, String, Vec<Bound<'py, PyBytes>>)> {
        let mut chunks = std::mem::take(&mut self.chunks);
        let interners = std::mem::take(&mut self.interners);
        // File by file, as a run reads its inputs: of two records equal in
        // every field, the one from the earlier file survives, as in `tally run`.
        chunks.sort_by_key(|c| c.source);
        for (seq, chunk) in chunks.iter_mut().enumerate() {
            chunk.seq = seq as u32;
        }
        let plan = &self.plan;
        let rule = self.rule.clone();
        let threads = self.threads;
        let started = self.started;
        let index_dir = self.index_dir.clone();
        let shards = std::mem::take(&mut self.shards);
        let result = py.detach(|| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| format!("cannot start {threads} threads: {e}"))?;
            let mut timings = Timings::default();
            let mut partial = pool
                .install(|| {
                    tally::shard::reduce::reduce_chunks(
                        chunks,
                        interners,
                        &rule,
                        plan.batch_size,
                        plan.days,
                        None,
                        started,
                        false,
                        &mut timings,
                    )
                })
                .map_err(|e| {
                    let sources: Vec<(String, bool)> = plan
                        .files
                        .iter()
                        .map(|f| (f.name.clone(), f.input.format == "parquet"))
                        .collect();
                    crate::error::chain(&e.naming_inputs(&sources))
                })?;
            let index =
                pool.install(|| write_part(&mut partial, &shards, plan.shards, &index_dir))?;
            let batch = tally::tasks::rows_batch(&partial).map_err(|e| e.to_string())?;
            let mut writer = arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &batch.schema())
                .map_err(|e| e.to_string())?;
            writer.write(&batch).map_err(|e| e.to_string())?;
            writer.finish().map_err(|e| e.to_string())?;
            let rows = writer.into_inner().map_err(|e| e.to_string())?;
            let reduced = Reduced {
                counts: partial.counts,
                provenance: partial.aggregate.provenance,
                shards,
                index: Some(index),
            };
            let json = serde_json::to_string(&reduced).map_err(|e| e.to_string())?;
            Ok::<_, String>((rows, json))
        });
        let (rows, json) = result.map_err(TallyError::new_err)?;
        let summaries = self
            .summaries
            .drain(..)
            .map(|s| PyBytes::new(py, &s))
            .collect();
        Ok((PyBytes::new(py, &rows), json, summaries))
    }
}

/// Writes the partition's part of the survivor index (the records `partial`
/// kept) into a new file of `dir`, as `tally reduce` writes `index.arrow`,
/// and says what it wrote. `shards` are the shards the partition reduced, of
/// `count`.
fn write_part(
    partial: &mut Partial,
    shards: &BTreeMap<u32, u64>,
    count: u32,
    dir: &Path,
) -> Result<IndexFile, String> {
    let mut part = partial.index.take().ok_or_else(|| {
        "the reduce kept no records for the survivor index: a bug in Tally".to_string()
    })?;
    // The records' keys all fall in their shard: the index is then sorted in
    // buckets of that shard's key space alone, as `tally reduce` sorts it.
    if let (Part::Records(records), Some((&shard, _)), 1) =
        (&mut part, shards.first_key_value(), shards.len())
    {
        records.shard = shard;
        records.shards = count;
    }
    // A name of its own for every attempt: Spark may run a task twice (a
    // retry, a speculative copy), and the driver reads only the file the
    // attempt it kept names.
    let file = tempfile::Builder::new()
        .prefix("part-")
        .suffix(".arrow")
        .tempfile_in(dir)
        .map_err(|e| {
            format!(
                "cannot write a part of the survivor index into {}: {e}",
                dir.display()
            )
        })?;
    let path = file.path().to_path_buf();
    let mut writer = IndexWriter::single(&path);
    part.write(&mut writer)
        .map_err(|e| crate::error::chain(&e))?;
    let (written, _, _) = writer.finish().map_err(|e| crate::error::chain(&e))?;
    let written = written.into_iter().next().ok_or_else(|| {
        format!(
            "{}: no part of the survivor index was written",
            path.display()
        )
    })?;
    // Written in full: kept for the driver, which removes it with the
    // directory when the run ends.
    file.keep().map_err(|e| {
        format!(
            "cannot keep the part of the survivor index {}: {}",
            path.display(),
            e.error
        )
    })?;
    Ok(written)
}
