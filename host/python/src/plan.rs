//! The driver's side: the plan (the rule resolved and pinned once, the inputs
//! listed and fingerprinted) and the commit of the reduce tasks' results,
//! through the same function as `tally commit`.

use crate::error::{TallyError, failed};
use crate::reduce::{Reduced, check_pinned, limits};
use crate::validate::Summary;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tally::commit::Quarantine;
use tally::ingest::{InputFile, ReadOptions};
use tally::report::Counts;
use tally::rule::{Limits, Rule};
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
    started: Instant,
}

/// Plans a run: resolves the rule (a component file, or a reference into the
/// registry) and pins its hash, lists and fingerprints the inputs. `shards`
/// defaults to enough shards for about two million records each, and at
/// least `min_shards`.
#[pyfunction]
#[pyo3(signature = (inputs, rule, out, *, registry=None, shards=None, min_shards=1, batch_size=None, days=None, max_line_bytes=None, rule_memory_mib=256, fuel_per_event=None))]
#[allow(clippy::too_many_arguments)]
pub fn plan(
    py: Python<'_>,
    inputs: Vec<PathBuf>,
    rule: String,
    out: PathBuf,
    registry: Option<PathBuf>,
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
        Ok(Plan {
            plan,
            json,
            rule_bytes: loaded.resolved.bytes,
            files,
            started,
        })
    })
}

/// Reads what one reduce task sent: its partial rows and counts, and the
/// validate summaries it carried.
fn partial_of(rows: &[u8], reduced: Reduced) -> Result<tally::shard::reduce::Partial, TaskError> {
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(rows), None)
        .map_err(|e| TaskError::Work(format!("a reduce task's rows are damaged: {e}")))?;
    tasks::partial_from_rows(
        reader.map(|b| b.map_err(|e| e.to_string())),
        reduced.counts,
        reduced.provenance,
    )
    .map_err(|e| TaskError::Work(format!("a reduce task's rows are damaged: {e}")))
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
        let partials = reduced.into_iter().map(|(rows, r)| partial_of(&rows, r));
        tasks::commit_partials(
            plan,
            rule,
            counts,
            quarantine,
            partials,
            progress,
            self.started,
        )
        .map_err(|e| crate::error::chain(&e))
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
            started: self.started,
        })
    }

    /// The output directory the commit writes.
    #[getter]
    fn out(&self) -> &str {
        &self.plan.out
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
    /// returned), checks that every record is accounted for and the run's
    /// invariants, and reconciles and commits into the output as `tally run`
    /// does. Returns the run report as JSON and as the summary `tally run`
    /// prints.
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
