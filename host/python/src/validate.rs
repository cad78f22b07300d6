//! The validate task: Arrow batches of raw input (JSON lines, or the typed
//! columns of Parquet files) checked against the event contract as `tally
//! run` checks them, each valid record routed to its shard by Tally's shard
//! function, the quarantined ones rendered as lines of the quarantine file.
//!
//! A task's output is a batch of `(key int32, data binary)` rows: for
//! `key < shards`, a blob of that shard's valid records
//! ([`crate::records`]); for `key >= shards`, the task's summary (its counts
//! and quarantine, JSON), which travels to reduce partition `key % shards` and
//! on to the driver with that partition's result.

use crate::error::{TallyError, failed};
use crate::ffi::{ArrowBatch, import_batch};
use crate::records::ShardBuffer;
use arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, Int32Builder, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use pyo3::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use tally::ingest::{self, ReadOptions};
use tally::intern::Interner;
use tally::shard::shard_of;
use tally::tasks::Plan;
use tally::validate::{EventColumns, Quarantined};

/// Columns of a batch of JSON lines.
pub const LINE: &str = "line";
pub const FILE: &str = "file";
pub const BLOCK: &str = "block";
/// Columns added to a batch of Parquet rows (beside the contract's).
pub const ROW_FILE: &str = "_tally_file";
pub const ROW_INDEX: &str = "_tally_row";

/// A validate task's counts and quarantine.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    pub records: u64,
    pub valid: u64,
    pub quarantined_by_reason: BTreeMap<String, u64>,
    /// Valid records routed to each shard.
    pub routed: Vec<u64>,
    /// The input files (plan indices) the task read rows of.
    pub seen: BTreeSet<u32>,
    /// Quarantine lines with where they go in the file: input file, the
    /// byte where the reader's split of it starts, and the record's place in
    /// that split.
    pub quarantine: Vec<(u32, u64, u64, String)>,
}

/// Which input a validator reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Lines,
    Rows,
}

/// Where the rows of a JSON batch are: the split being read and how many of
/// its lines came before.
struct Split {
    file: String,
    block: i64,
    source: u32,
    lines: u64,
}

/// Validates one task's batches. Made once per task, fed its batches in
/// order, then finished.
#[pyclass(module = "tally._native")]
pub struct Validator {
    kind: Kind,
    shards: u32,
    read: ReadOptions,
    /// Each planned file by its absolute path.
    sources: HashMap<String, u32>,
    /// Each planned file's name and whether it is Parquet.
    names: Vec<(String, bool)>,
    strings: Interner,
    buffers: Vec<ShardBuffer>,
    /// Records a shard's buffer holds before it is sent on.
    flush_rows: usize,
    split: Option<Split>,
    summary: Summary,
}

/// The plan's file index of a path as Spark names it (`file:/a%20b.jsonl`
/// for `/a b.jsonl`; other schemes as they are).
fn source_of(sources: &HashMap<String, u32>, path: &str) -> Result<u32, String> {
    if let Some(&s) = sources.get(path) {
        return Ok(s);
    }
    let local = path
        .strip_prefix("file://")
        .or_else(|| path.strip_prefix("file:"))
        .map(percent_decode);
    match local.as_deref().and_then(|p| sources.get(p)) {
        Some(&s) => Ok(s),
        None => Err(format!("the input {path} is not one of the planned files")),
    }
}

/// Decodes `%XX` escapes (as URIs write bytes); anything else is kept.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Validator {
    fn from_plan(plan: &Plan, kind: Kind) -> Self {
        let shards = plan.shards.max(1);
        Validator {
            kind,
            shards,
            read: ReadOptions {
                max_line_bytes: usize::try_from(plan.max_line_bytes).unwrap_or(usize::MAX),
            },
            sources: plan
                .files
                .iter()
                .enumerate()
                .map(|(i, f)| (f.input.path.clone(), i as u32))
                .collect(),
            names: plan
                .files
                .iter()
                .map(|f| (f.name.clone(), f.input.format == "parquet"))
                .collect(),
            strings: Interner::new(),
            buffers: (0..shards).map(|_| ShardBuffer::new()).collect(),
            // About 64 MiB of buffered records per task, whatever the shards.
            flush_rows: (1usize << 19).div_ceil(shards as usize).max(4_096),
            split: None,
            summary: Summary {
                routed: vec![0; shards as usize],
                ..Summary::default()
            },
        }
    }

    /// Routes the valid records of `events` (from the file `source`) to their
    /// shards; full buffers are encoded into `out`.
    fn route(
        &mut self,
        events: &EventColumns,
        source: u32,
        out: &mut Vec<(i32, Vec<u8>)>,
    ) -> Result<(), String> {
        for r in 0..events.len() {
            let k = shard_of(events.event_id(r), self.shards);
            self.buffers[k as usize].push(events, r, source);
            self.summary.routed[k as usize] += 1;
            if self.buffers[k as usize].len() >= self.flush_rows {
                out.push((k as i32, self.take(k)?));
            }
        }
        self.summary.valid += events.len() as u64;
        Ok(())
    }

    fn take(&mut self, shard: u32) -> Result<Vec<u8>, String> {
        self.buffers[shard as usize]
            .take(&self.strings, shard, self.shards)
            .map_err(|e| format!("cannot encode the records of shard {shard}: {e}"))
    }

    /// Records a quarantined record at `(source, block, ordinal)`; `line` is
    /// false where the reader cannot tell the line.
    fn quarantine(&mut self, q: &Quarantined, block: u64, ordinal: u64, line: bool) {
        *self
            .summary
            .quarantined_by_reason
            .entry(q.reason.to_string())
            .or_default() += 1;
        let mut text = tally::commit::quarantine_line(q, &self.names);
        if !line {
            // Spark splits a large file between tasks and does not say
            // which line of the file a split starts at.
            if let Ok(mut value) = serde_json::from_str::<serde_json::Value>(&text) {
                value["line"] = serde_json::Value::Null;
                value["line_unknown"] = "spark".into();
                text = value.to_string();
            }
        }
        self.summary
            .quarantine
            .push((q.source, block, ordinal, text));
    }

    fn push_lines(&mut self, batch: &RecordBatch) -> Result<Vec<(i32, Vec<u8>)>, String> {
        let column = |name: &str, to: &DataType| -> Result<ArrayRef, String> {
            let array = batch
                .column_by_name(name)
                .ok_or_else(|| format!("a batch of JSON lines has no column {name:?}"))?;
            arrow::compute::cast(array, to)
                .map_err(|e| format!("column {name:?} of a batch of JSON lines: {e}"))
        };
        let lines = column(LINE, &DataType::LargeBinary)?;
        let lines = lines.as_binary::<i64>();
        let files = column(FILE, &DataType::Utf8)?;
        let files: &StringArray = files.as_string::<i32>();
        let blocks = column(BLOCK, &DataType::Int64)?;
        let blocks = blocks.as_primitive::<Int64Type>();
        if files.null_count() > 0 || blocks.null_count() > 0 {
            return Err("a batch of JSON lines has rows without a file or split".into());
        }
        let mut out = Vec::new();
        let mut events = EventColumns::new();
        let mut quarantined = Vec::new();
        for r in 0..batch.num_rows() {
            let (file, block) = (files.value(r), blocks.value(r));
            let same = self
                .split
                .as_ref()
                .is_some_and(|s| s.block == block && s.file == file);
            if !same {
                let source = source_of(&self.sources, file)?;
                if let Some(done) = self.split.take() {
                    self.route(&events, done.source, &mut out)?;
                    events = EventColumns::new();
                }
                self.summary.seen.insert(source);
                self.split = Some(Split {
                    file: file.to_string(),
                    block,
                    source,
                    lines: 0,
                });
            }
            let split = self.split.as_mut().expect("set above");
            split.lines += 1;
            let (source, ordinal) = (split.source, split.lines);
            // Lines are numbered from the start of the file: known only in a
            // split that starts there.
            let known = block == 0;
            // A null line is no line at all (Spark gives none).
            let line = if lines.is_null(r) {
                &[][..]
            } else {
                lines.value(r)
            };
            let line_no = if known { ordinal } else { 0 };
            let record = ingest::validate_line(
                line,
                source,
                line_no,
                &self.read,
                &mut events,
                &mut quarantined,
                &mut self.strings,
            );
            if record {
                self.summary.records += 1;
            }
            for q in quarantined.drain(..) {
                self.quarantine(&q, block.max(0) as u64, ordinal, known);
            }
        }
        if let Some(split) = &self.split {
            let source = split.source;
            self.route(&events, source, &mut out)?;
        }
        Ok(out)
    }

    fn push_rows(&mut self, batch: &RecordBatch) -> Result<Vec<(i32, Vec<u8>)>, String> {
        let files = batch
            .column_by_name(ROW_FILE)
            .ok_or_else(|| format!("a batch of Parquet rows has no column {ROW_FILE:?}"))?;
        let files = arrow::compute::cast(files, &DataType::Utf8)
            .map_err(|e| format!("column {ROW_FILE:?}: {e}"))?;
        let files = files.as_string::<i32>();
        let rows = batch
            .column_by_name(ROW_INDEX)
            .ok_or_else(|| format!("a batch of Parquet rows has no column {ROW_INDEX:?}"))?;
        let rows = arrow::compute::cast(rows, &DataType::Int64)
            .map_err(|e| format!("column {ROW_INDEX:?}: {e}"))?;
        let rows = rows.as_primitive::<Int64Type>();
        if files.null_count() > 0 || rows.null_count() > 0 {
            return Err("a batch of Parquet rows has rows without a file or row index".into());
        }
        // The contract's columns alone: a quarantined row is rendered from
        // every column it is given.
        let keep: Vec<usize> = batch
            .schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| f.name() != ROW_FILE && f.name() != ROW_INDEX)
            .map(|(i, _)| i)
            .collect();
        let data = batch
            .project(&keep)
            .map_err(|e| format!("a batch of Parquet rows: {e}"))?;
        let mut out = Vec::new();
        let mut start = 0;
        while start < batch.num_rows() {
            let file = files.value(start);
            let end = start
                + (start..batch.num_rows())
                    .take_while(|&r| files.value(r) == file)
                    .count();
            let source = source_of(&self.sources, file)?;
            self.summary.seen.insert(source);
            let part = data.slice(start, end - start);
            let position = |i: usize| rows.value(start + i).max(0) as u64;
            let mut events = EventColumns::new();
            let mut quarantined = Vec::new();
            ingest::validate_rows(
                &part,
                source,
                &position,
                &mut events,
                &mut quarantined,
                &mut self.strings,
            );
            self.summary.records += part.num_rows() as u64;
            for q in &quarantined {
                self.quarantine(q, 0, q.position, true);
            }
            self.route(&events, source, &mut out)?;
            start = end;
        }
        Ok(out)
    }
}

/// The output of a validate task: `(key, data)` rows.
pub fn blobs(rows: Vec<(i32, Vec<u8>)>) -> PyResult<ArrowBatch> {
    let mut keys = Int32Builder::with_capacity(rows.len());
    let mut data = BinaryBuilder::with_capacity(rows.len(), rows.iter().map(|r| r.1.len()).sum());
    for (key, blob) in &rows {
        keys.append_value(*key);
        data.append_value(blob);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Int32, false),
        Field::new("data", DataType::Binary, false),
    ]));
    let columns: Vec<ArrayRef> = vec![Arc::new(keys.finish()), Arc::new(data.finish())];
    let batch = RecordBatch::try_new(schema, columns).map_err(failed)?;
    Ok(ArrowBatch::new(batch))
}

#[pymethods]
impl Validator {
    /// A validator of JSON lines (`kind="lines"`: columns `line`, `file` and
    /// `block`, the byte its split of the file starts at) or of Parquet rows
    /// (`kind="rows"`: the contract's columns, `_tally_file` and
    /// `_tally_row`), for the plan `plan_json`.
    #[new]
    fn new(plan_json: &str, kind: &str) -> PyResult<Self> {
        let plan: Plan = serde_json::from_str(plan_json)
            .map_err(|e| TallyError::new_err(format!("not a Tally plan: {e}")))?;
        let kind = match kind {
            "lines" => Kind::Lines,
            "rows" => Kind::Rows,
            other => {
                return Err(TallyError::new_err(format!(
                    "kind must be \"lines\" or \"rows\", not {other:?}"
                )));
            }
        };
        Ok(Validator::from_plan(&plan, kind))
    }

    /// Validates a batch; returns the blobs of shards whose buffers filled.
    fn push(&mut self, py: Python<'_>, batch: &Bound<'_, PyAny>) -> PyResult<ArrowBatch> {
        let batch = import_batch(batch)?;
        let rows = py
            .detach(|| match self.kind {
                Kind::Lines => self.push_lines(&batch),
                Kind::Rows => self.push_rows(&batch),
            })
            .map_err(TallyError::new_err)?;
        blobs(rows)
    }

    /// The blobs of every shard not yet sent, and the task's summary under
    /// the key `shards + route` (`route`: the task's partition, so that
    /// summaries spread over the reduce partitions).
    fn finish(&mut self, py: Python<'_>, route: u32) -> PyResult<ArrowBatch> {
        let rows = py
            .detach(|| {
                let mut rows = Vec::new();
                for k in 0..self.shards {
                    if self.buffers[k as usize].len() > 0 {
                        rows.push((k as i32, self.take(k)?));
                    }
                }
                let summary = std::mem::take(&mut self.summary);
                let json = serde_json::to_vec(&summary).map_err(|e| e.to_string())?;
                let key =
                    (u64::from(self.shards) + u64::from(route) % u64::from(self.shards)) as i32;
                rows.push((key, json));
                Ok::<_, String>(rows)
            })
            .map_err(TallyError::new_err)?;
        blobs(rows)
    }
}
