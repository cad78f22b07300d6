//! The reduce task: one partition's shards of valid records deduplicated,
//! classified with the pinned rule and summed, as `tally reduce` does for one
//! shard. All records of an `event_id` are in one shard, so a partition that
//! holds several shards dedups each exactly, and the order its blobs arrive
//! in changes nothing: dedup's survivor rule is a total order, and records
//! are taken file by file, as a run reads them.
//!
//! The rule comes as bytes with the hash the plan pinned: bytes with another
//! blake3 are refused before anything is read or run.

use crate::error::{TallyError, failed};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tally::aggregate::Contribution;
use tally::ingest::Chunk;
use tally::intern::Interner;
use tally::report::{Counts, Timings};
use tally::rule::{Limits, Rule};
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
    started: Instant,
}

#[pymethods]
impl Reducer {
    /// A reducer for the plan `plan_json` with the rule `rule_bytes`, refused
    /// unless its blake3 is the plan's pinned hash; `threads` classify at
    /// once.
    #[new]
    #[pyo3(signature = (plan_json, rule_bytes, threads=1))]
    fn new(plan_json: &str, rule_bytes: &[u8], threads: usize) -> PyResult<Self> {
        let plan: Plan = serde_json::from_str(plan_json)
            .map_err(|e| TallyError::new_err(format!("not a Tally plan: {e}")))?;
        check_pinned(&plan, rule_bytes).map_err(TallyError::new_err)?;
        let rule = pinned_rule(&plan, rule_bytes)?;
        Ok(Reducer {
            plan,
            rule,
            threads: threads.max(1),
            chunks: Vec::new(),
            interners: Vec::new(),
            shards: BTreeMap::new(),
            summaries: Vec::new(),
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

    /// Dedups, classifies and sums what the partition holds. Returns its
    /// partial daily rows (Arrow IPC stream bytes), what it reduced (JSON,
    /// [`Reduced`]) and the validate summaries it was handed.
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
        let result = py.detach(|| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| format!("cannot start {threads} threads: {e}"))?;
            let mut timings = Timings::default();
            let partial = pool
                .install(|| {
                    tally::shard::reduce::reduce_chunks(
                        chunks,
                        interners,
                        &rule,
                        plan.batch_size,
                        plan.days,
                        started,
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
            let batch = tally::tasks::rows_batch(&partial).map_err(|e| e.to_string())?;
            let mut writer = arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &batch.schema())
                .map_err(|e| e.to_string())?;
            writer.write(&batch).map_err(|e| e.to_string())?;
            writer.finish().map_err(|e| e.to_string())?;
            let rows = writer.into_inner().map_err(|e| e.to_string())?;
            let reduced = Reduced {
                counts: partial.counts,
                provenance: partial.aggregate.provenance,
                shards: std::mem::take(&mut self.shards),
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
