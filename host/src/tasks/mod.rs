//! The phases of a run as separate tasks over a work directory, so that any
//! batch scheduler can run them, on one machine or many: `plan`, then every
//! `map` task and every `reduce` shard (each in any order, any number at once),
//! then `commit`.
//!
//! # The work directory (work format version 1)
//!
//! ```text
//! W/plan.json                     the plan (format, rule, inputs, shards, tasks)
//! W/rule.wasm                     the pinned rule component
//! W/map/task-I/shard-K-T.arrow    task I's valid records of shard K (spill format)
//! W/map/task-I/quarantine.jsonl   task I's quarantined records
//! W/map/task-I/done.json          task I's counts and the blake3 of its files
//! W/reduce/shard-K/rows.arrow     shard K's partial daily rows
//! W/reduce/shard-K/done.json      shard K's counts, the blake3 of rows.arrow and
//!                                 of every map task's done.json it read
//! ```
//!
//! A task writes its files into a hidden directory (`.tmp-…`) and publishes
//! them with one rename: a task killed mid-way leaves nothing under its name,
//! and a task already done (its `done.json` present) is not run again, so
//! running a task twice, at once or one after the other, leaves one set of
//! files. `commit` checks that every task is done and that the files are the
//! ones recorded, naming what is missing or damaged, and commits nothing
//! otherwise.

use crate::aggregate::{Aggregate, Contribution, Row};
use crate::ingest::{self, Format, InputFile, ReadOptions};
use crate::intern::Interner;
use crate::pipeline::{self, Computed, RunError, RunOptions};
use crate::report::{Counts, InputSummary, RuleSummary, RunReport, Timings};
use crate::rule::{Limits, Rule};
use crate::shard::reduce::{self, Partial};
use crate::shard::{self, SHARD_FORMAT_VERSION, merge, spill};
use arrow::array::{
    ArrayRef, AsArray, Int32Array, Int64Array, RecordBatch, StringArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, UInt64Type};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// The version of the work directory's layout and files.
pub const WORK_FORMAT_VERSION: u32 = 2;

/// What can go wrong with a task.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    #[error(transparent)]
    Run(#[from] RunError),
    /// The work directory is not in the state the task needs.
    #[error("{0}")]
    Work(String),
    /// A file of the work directory cannot be read or written.
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
}

impl From<ingest::IngestError> for TaskError {
    fn from(e: ingest::IngestError) -> Self {
        TaskError::Run(e.into())
    }
}

impl From<spill::SpillError> for TaskError {
    fn from(e: spill::SpillError) -> Self {
        TaskError::Run(e.into())
    }
}

fn io(path: &Path, e: impl std::fmt::Display) -> TaskError {
    TaskError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// One input file as the plan records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedFile {
    /// The path as it was found (what the quarantine names).
    pub name: String,
    /// Its content, size, format and absolute path (what tasks read).
    pub input: InputSummary,
    /// Its modification time when it was planned, in nanoseconds since
    /// 1970-01-01 UTC (what the survivor index records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_ns: Option<i64>,
}

/// `W/plan.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub work_format: u32,
    pub shard_format: u32,
    pub tally_version: String,
    pub run_id: String,
    /// The pinned rule; its component is `W/rule.wasm`.
    pub rule: RuleSummary,
    /// The rule sandbox's limits.
    pub rule_memory_bytes: u64,
    pub fuel_per_event: u64,
    /// The output directory the commit writes (absolute).
    pub out: String,
    /// The input files, sorted as a run sorts them.
    pub files: Vec<PlannedFile>,
    pub input_fingerprint: String,
    pub shards: u32,
    /// Each map task's files, as indices into `files`.
    pub tasks: Vec<Vec<usize>>,
    pub max_line_bytes: u64,
    pub batch_size: usize,
    /// The recomputed days, inclusive (days since 1970-01-01), or null.
    pub days: Option<(i32, i32)>,
}

/// What `tally plan` takes.
pub struct PlanOptions {
    pub inputs: Vec<PathBuf>,
    /// The rule, already loaded (resolved from a path or the registry).
    pub rule: Rule,
    /// The component's bytes.
    pub rule_bytes: Vec<u8>,
    /// The reference the rule was given as.
    pub rule_reference: String,
    pub limits: Limits,
    pub out: PathBuf,
    pub work: PathBuf,
    pub shards: u32,
    /// Input bytes per map task (files are never split).
    pub task_bytes: u64,
    pub read: ReadOptions,
    pub batch_size: usize,
    pub days: Option<(i32, i32)>,
    /// Draw the hashing of the inputs on a terminal.
    pub progress: bool,
}

fn plan_path(work: &Path) -> PathBuf {
    work.join("plan.json")
}

fn rule_path(work: &Path) -> PathBuf {
    work.join("rule.wasm")
}

fn map_dir(work: &Path, task: usize) -> PathBuf {
    work.join("map").join(format!("task-{task}"))
}

fn reduce_dir(work: &Path, shard: u32) -> PathBuf {
    work.join("reduce").join(format!("shard-{shard}"))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), TaskError> {
    let text = serde_json::to_string_pretty(value).expect("task files serialize") + "\n";
    std::fs::write(path, text).map_err(|e| io(path, e))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, TaskError> {
    let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
    serde_json::from_str(&text).map_err(|e| io(path, format!("damaged: {e}")))
}

/// The blake3 of a file, read through a memory map (spill files can be
/// larger than a task's memory).
fn hash_file(path: &Path) -> Result<String, TaskError> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_mmap(path).map_err(|e| io(path, e))?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Splits files (with their sizes) into tasks of about `task_bytes` each, in
/// order.
fn split(sizes: &[u64], task_bytes: u64) -> Vec<Vec<usize>> {
    let mut tasks: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0u64;
    for (i, &size) in sizes.iter().enumerate() {
        match tasks.last_mut() {
            Some(task) if bytes < task_bytes.max(1) => task.push(i),
            _ => {
                tasks.push(vec![i]);
                bytes = 0;
            }
        }
        bytes += size;
    }
    tasks
}

/// `tally plan`: lists and fingerprints the inputs, pins the rule and splits
/// the inputs into map tasks; writes `W/plan.json` and `W/rule.wasm`. A work
/// directory that already holds a plan is refused.
pub fn plan(options: &PlanOptions) -> Result<Plan, TaskError> {
    let work = &options.work;
    if plan_path(work).exists() {
        return Err(TaskError::Work(format!(
            "{} already holds a plan; give an empty or new work directory",
            work.display()
        )));
    }
    let plan = new_plan(options)?.0;
    std::fs::create_dir_all(work).map_err(|e| io(work, e))?;
    // The rule first: a plan is only there once everything it names is.
    let rule = rule_path(work);
    std::fs::write(&rule, &options.rule_bytes).map_err(|e| io(&rule, e))?;
    publish_file(&plan_path(work), &plan)?;
    Ok(plan)
}

/// The plan of a run over `options` (its `work` and `rule_bytes` are not
/// used), with the input files as found (what [`ingest::check_unchanged`]
/// takes), without writing anything: lists and fingerprints the inputs,
/// refusing inputs that overlap the output.
pub fn new_plan(options: &PlanOptions) -> Result<(Plan, Vec<InputFile>), TaskError> {
    ingest::check_inputs_apart_from_output(&options.inputs, &options.out)?;
    let found = pipeline::find_inputs(&options.inputs, options.progress)?;
    let out = std::path::absolute(&options.out).map_err(|e| io(&options.out, e))?;
    let files: Vec<PlannedFile> = found
        .files
        .iter()
        .zip(&found.inputs)
        .map(|(f, input)| PlannedFile {
            name: f.path.display().to_string(),
            input: input.clone(),
            modified_ns: crate::survivors::modified_ns(f.modified),
        })
        .collect();
    let sizes: Vec<u64> = files.iter().map(|f| f.input.size).collect();
    let plan = Plan {
        work_format: WORK_FORMAT_VERSION,
        shard_format: SHARD_FORMAT_VERSION,
        tally_version: pipeline::VERSION.to_string(),
        run_id: found.run_id,
        rule: RuleSummary::of(&options.rule, &options.rule_reference),
        rule_memory_bytes: options.limits.memory_bytes as u64,
        fuel_per_event: options.limits.fuel_per_event,
        out: out.display().to_string(),
        input_fingerprint: found.fingerprint.to_hex().to_string(),
        shards: options.shards.clamp(1, shard::MAX_SHARDS),
        tasks: split(&sizes, options.task_bytes),
        files,
        max_line_bytes: options.read.max_line_bytes as u64,
        batch_size: options.batch_size.max(1),
        days: options.days,
    };
    Ok((plan, found.files))
}

/// Writes `value` as JSON to `path` through a temporary file and a rename.
fn publish_file<T: Serialize>(path: &Path, value: &T) -> Result<(), TaskError> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    write_json(&tmp, value)?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}

/// Reads the plan of a work directory, checking its format.
pub fn read_plan(work: &Path) -> Result<Plan, TaskError> {
    let path = plan_path(work);
    if !path.exists() {
        return Err(TaskError::Work(format!(
            "{} holds no plan: run `tally plan --work {}` first",
            work.display(),
            work.display()
        )));
    }
    let plan: Plan = read_json(&path)?;
    if plan.work_format != WORK_FORMAT_VERSION || plan.shard_format != SHARD_FORMAT_VERSION {
        return Err(TaskError::Work(format!(
            "{} is in work format {} and shard format {}; this Tally reads work format {WORK_FORMAT_VERSION}, shard format {SHARD_FORMAT_VERSION}",
            path.display(),
            plan.work_format,
            plan.shard_format
        )));
    }
    Ok(plan)
}

/// Loads the pinned rule, refusing a component whose hash is not the plan's.
fn pinned_rule(work: &Path, plan: &Plan) -> Result<Rule, TaskError> {
    let limits = Limits {
        memory_bytes: usize::try_from(plan.rule_memory_bytes).unwrap_or(usize::MAX),
        fuel_per_event: plan.fuel_per_event,
        ..Limits::default()
    };
    let path = rule_path(work);
    let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
    let hash = blake3::hash(&bytes).to_hex().to_string();
    if hash != plan.rule.hash {
        return Err(TaskError::Work(format!(
            "{} has blake3 {hash}, not the pinned rule's {}: refusing to run it",
            path.display(),
            plan.rule.hash
        )));
    }
    Ok(Rule::load(&path, limits).map_err(RunError::from)?)
}

/// A directory a task fills and then publishes under its final name.
struct Staged {
    tmp: PathBuf,
    target: PathBuf,
}

impl Staged {
    fn new(target: PathBuf) -> Result<Staged, TaskError> {
        let parent = target.parent().expect("task directories have a parent");
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        let name = target
            .file_name()
            .expect("task directories have a name")
            .to_string_lossy()
            .into_owned();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let tmp = parent.join(format!(".tmp-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&tmp).map_err(|e| io(&tmp, e))?;
        Ok(Staged { tmp, target })
    }

    /// Publishes the directory; when another run of the task published first,
    /// keeps that one. Returns whether this one was published.
    fn publish(self) -> Result<bool, TaskError> {
        let published = match std::fs::rename(&self.tmp, &self.target) {
            Ok(()) => true,
            Err(_) if self.target.join("done.json").exists() => false,
            Err(e) => return Err(io(&self.target, e)),
        };
        Ok(published)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

/// One file a task wrote, with its hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskFile {
    pub name: String,
    pub bytes: u64,
    pub blake3: String,
    /// For a spill file, the string table its ids point into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strings: Option<String>,
}

impl TaskFile {
    fn of(path: &Path, strings: Option<&Path>) -> Result<TaskFile, TaskError> {
        let name = |p: &Path| {
            p.file_name()
                .expect("task files have names")
                .to_string_lossy()
                .into_owned()
        };
        Ok(TaskFile {
            name: name(path),
            bytes: std::fs::metadata(path).map_err(|e| io(path, e))?.len(),
            blake3: hash_file(path)?,
            strings: strings.map(name),
        })
    }

    /// Checks that `dir/name` still has its recorded blake3.
    fn check(&self, dir: &Path) -> Result<PathBuf, TaskError> {
        let path = dir.join(&self.name);
        let actual = hash_file(&path)?;
        if actual != self.blake3 {
            return Err(TaskError::Work(format!(
                "{} is damaged: blake3 {actual}, recorded {}; nothing committed",
                path.display(),
                self.blake3
            )));
        }
        Ok(path)
    }
}

/// A map task's records of one shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MapShard {
    pub rows: u64,
    pub files: Vec<TaskFile>,
}

/// `W/map/task-I/done.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MapDone {
    pub task: usize,
    pub files: Vec<usize>,
    pub records: u64,
    pub valid: u64,
    pub quarantined: u64,
    /// Quarantined records per reason.
    pub quarantined_by_reason: std::collections::BTreeMap<String, u64>,
    /// `shards[k]`: shard k's records and spill files.
    pub shards: Vec<MapShard>,
    /// The string tables of the spill files.
    pub strings: Vec<TaskFile>,
    pub quarantine_blake3: String,
}

/// What a task did.
#[derive(Debug, Clone, Serialize)]
pub struct TaskOutcome {
    pub task: String,
    /// False when the task had already been done (nothing was run again).
    pub ran: bool,
    pub directory: String,
    pub records: u64,
    pub seconds: f64,
}

/// `tally map --task I`: reads and validates task I's files (checking they
/// are the ones planned), writes their valid records into the plan's shards,
/// and their quarantine and counts.
pub fn map(work: &Path, task: usize, progress: bool) -> Result<TaskOutcome, TaskError> {
    let started = Instant::now();
    let plan = read_plan(work)?;
    let Some(indices) = plan.tasks.get(task) else {
        return Err(TaskError::Work(format!(
            "the plan has map tasks 0 to {}, not {task}",
            plan.tasks.len().saturating_sub(1)
        )));
    };
    let target = map_dir(work, task);
    if target.join("done.json").exists() {
        let done: MapDone = read_json(&target.join("done.json"))?;
        return Ok(TaskOutcome {
            task: format!("map {task}"),
            ran: false,
            directory: target.display().to_string(),
            records: done.records,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    // The task's files, each checked to be the planned one.
    let mut files = Vec::with_capacity(indices.len());
    for &i in indices {
        let planned = &plan.files[i];
        let path = PathBuf::from(&planned.input.path);
        let found = ingest::discover(std::slice::from_ref(&path))?;
        let [file] = <[InputFile; 1]>::try_from(found).map_err(|_| {
            TaskError::Work(format!("input {} is no longer one file", path.display()))
        })?;
        let hash = ingest::hash_files(std::slice::from_ref(&file))?[0]
            .to_hex()
            .to_string();
        if hash != planned.input.blake3 {
            return Err(TaskError::Work(format!(
                "input {} changed since the plan (blake3 {hash}, planned {})",
                path.display(),
                planned.input.blake3
            )));
        }
        files.push(file);
    }

    let staged = Staged::new(target.clone())?;
    let read = ReadOptions {
        max_line_bytes: usize::try_from(plan.max_line_bytes).unwrap_or(usize::MAX),
    };
    // Buffers as a run with a 2 GiB limit has them: about 256 MiB in all.
    let writers = spill::ShardWriters::new(
        &staged.tmp,
        "",
        plan.shards,
        shard::buffer_rows(2 << 30, plan.shards),
    );
    let global = |local: u32| indices[local as usize] as u32;
    let bar = crate::progress::Progress::start("map", None, progress);
    let (summaries, _) =
        ingest::read_each(&files, &read, &|n| bar.set(n), &|mut chunk, strings| {
            chunk.events.source = global(chunk.events.source);
            writers.write(&chunk.events, strings, chunk.interner)?;
            for q in &mut chunk.quarantine {
                q.source = global(q.source);
            }
            Ok::<_, TaskError>((chunk.records, chunk.events.len() as u64, chunk.quarantine))
        })?;
    ingest::check_unchanged(&files)?;
    bar.finish();
    let written = writers.finish()?;

    // The quarantine, rendered as the commit writes it, in input order.
    let sources: Vec<(String, bool)> = plan
        .files
        .iter()
        .map(|f| (f.name.clone(), f.input.format == Format::Parquet.name()))
        .collect();
    let mut records = 0;
    let mut valid = 0;
    let quarantine_path = staged.tmp.join("quarantine.jsonl");
    let mut quarantined = 0;
    let mut quarantined_by_reason = std::collections::BTreeMap::new();
    {
        let file = std::fs::File::create(&quarantine_path).map_err(|e| io(&quarantine_path, e))?;
        let mut out = std::io::BufWriter::new(file);
        for (r, v, qs) in summaries {
            records += r;
            valid += v;
            for q in qs {
                quarantined += 1;
                *quarantined_by_reason
                    .entry(q.reason.to_string())
                    .or_default() += 1;
                let mut line = crate::commit::quarantine_line(&q, &sources);
                line.push('\n');
                out.write_all(line.as_bytes())
                    .map_err(|e| io(&quarantine_path, e))?;
            }
        }
        out.flush().map_err(|e| io(&quarantine_path, e))?;
    }
    let mut shards = Vec::with_capacity(written.len());
    let mut tables: Vec<PathBuf> = Vec::new();
    for w in &written {
        let mut files = Vec::new();
        for f in &w.files {
            files.push(TaskFile::of(&f.path, Some(&f.strings))?);
            if !tables.contains(&f.strings) {
                tables.push(f.strings.clone());
            }
        }
        shards.push(MapShard {
            rows: w.rows,
            files,
        });
    }
    tables.sort();
    let strings = tables
        .iter()
        .map(|p| TaskFile::of(p, None))
        .collect::<Result<Vec<_>, _>>()?;
    let spilled: u64 = written.iter().map(|w| w.rows).sum();
    if spilled != valid {
        return Err(RunError::Invariant(format!(
            "map task {task}: valid records = records spilled: {valid} = {spilled}"
        ))
        .into());
    }
    let done = MapDone {
        task,
        files: indices.clone(),
        records,
        valid,
        quarantined,
        quarantined_by_reason,
        shards,
        strings,
        quarantine_blake3: hash_file(&quarantine_path)?,
    };
    write_json(&staged.tmp.join("done.json"), &done)?;
    let ran = staged.publish()?;
    Ok(TaskOutcome {
        task: format!("map {task}"),
        ran,
        directory: target.display().to_string(),
        records,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Every map task's `done.json`, checked to be present, or an error naming
/// the missing tasks.
fn maps_done(work: &Path, plan: &Plan) -> Result<Vec<(MapDone, String)>, TaskError> {
    let mut done = Vec::new();
    let mut missing = Vec::new();
    for task in 0..plan.tasks.len() {
        let path = map_dir(work, task).join("done.json");
        if path.exists() {
            let hash = hash_file(&path)?;
            done.push((read_json::<MapDone>(&path)?, hash));
        } else {
            missing.push(task.to_string());
        }
    }
    if !missing.is_empty() {
        return Err(TaskError::Work(format!(
            "map task(s) {} of {} not done (no {}/map/task-I/done.json)",
            missing.join(", "),
            work.display(),
            work.display()
        )));
    }
    Ok(done)
}

/// `W/reduce/shard-K/done.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReduceDone {
    pub shard: u32,
    pub counts: Counts,
    /// Partial daily rows in `rows_file`.
    pub rows: u64,
    pub rows_file: TaskFile,
    /// The blake3 of every map task's `done.json` this shard read, by task.
    pub maps: Vec<String>,
    /// The shard's unique events per day and input file (the plan's file
    /// index).
    pub provenance: Vec<Contribution>,
    /// The shard's part of the survivor index, `index.arrow` (absent from
    /// shards reduced by a Tally that wrote none: the commit then writes no
    /// index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<TaskFile>,
}

/// `tally reduce --shard K`: dedups, classifies with the pinned rule and sums
/// shard K's records from every map task. With `progress`, its stages draw
/// their lines on a terminal.
pub fn reduce(work: &Path, shard: u32, progress: bool) -> Result<TaskOutcome, TaskError> {
    let started = Instant::now();
    let plan = read_plan(work)?;
    if shard >= plan.shards {
        return Err(TaskError::Work(format!(
            "the plan has shards 0 to {}, not {shard}",
            plan.shards - 1
        )));
    }
    let target = reduce_dir(work, shard);
    if target.join("done.json").exists() {
        let done: ReduceDone = read_json(&target.join("done.json"))?;
        return Ok(TaskOutcome {
            task: format!("reduce {shard}"),
            ran: false,
            directory: target.display().to_string(),
            records: done.counts.valid,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let maps = maps_done(work, &plan)?;
    let rule = pinned_rule(work, &plan)?;
    // Shard K's spill files and their string tables, each checked against its
    // map task's record.
    let mut files = Vec::new();
    let mut expected = 0u64;
    for (done, _) in &maps {
        let Some(mine) = done.shards.get(shard as usize) else {
            return Err(TaskError::Work(format!(
                "map task {} recorded {} shards, the plan has {}",
                done.task,
                done.shards.len(),
                plan.shards
            )));
        };
        expected += mine.rows;
        let dir = map_dir(work, done.task);
        for f in &mine.files {
            let table = done
                .strings
                .iter()
                .find(|t| Some(&t.name) == f.strings.as_ref())
                .ok_or_else(|| {
                    TaskError::Work(format!(
                        "{}: {} has no string table recorded",
                        dir.join("done.json").display(),
                        f.name
                    ))
                })?;
            files.push(spill::SpillFile {
                path: f.check(&dir)?,
                strings: table.check(&dir)?,
            });
        }
    }
    let mut timings = Timings::default();
    let mut partial = reduce::reduce(
        &files,
        shard,
        plan.shards,
        &rule,
        plan.batch_size,
        plan.days,
        None,
        progress,
        &mut timings,
    )
    .map_err(|e| {
        // A rule's failure names the input file of the event it failed on.
        let sources: Vec<(String, bool)> = plan
            .files
            .iter()
            .map(|f| (f.name.clone(), f.input.format == Format::Parquet.name()))
            .collect();
        e.naming_inputs(&sources)
    })?;
    if partial.counts.valid != expected {
        return Err(RunError::Invariant(format!(
            "shard {shard}: records read back = records the map tasks spilled: {} = {expected}",
            partial.counts.valid
        ))
        .into());
    }
    let staged = Staged::new(target.clone())?;
    let rows_path = staged.tmp.join("rows.arrow");
    write_rows(&rows_path, &partial)?;
    let index_path = staged.tmp.join("index.arrow");
    let index = match partial.index.take() {
        Some(part) => {
            let mut writer = crate::survivors::IndexWriter::single(&index_path);
            part.write(&mut writer).map_err(RunError::from)?;
            writer.finish().map_err(RunError::from)?;
            Some(TaskFile::of(&index_path, None)?)
        }
        None => None,
    };
    let done = ReduceDone {
        shard,
        counts: partial.counts.clone(),
        rows: partial.aggregate.rows.len() as u64,
        rows_file: TaskFile::of(&rows_path, None)?,
        maps: maps.into_iter().map(|(_, hash)| hash).collect(),
        provenance: partial.aggregate.provenance.clone(),
        index,
    };
    write_json(&staged.tmp.join("done.json"), &done)?;
    let ran = staged.publish()?;
    Ok(TaskOutcome {
        task: format!("reduce {shard}"),
        ran,
        directory: target.display().to_string(),
        records: done.counts.valid,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The schema of a shard's partial daily rows.
pub fn rows_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("day", DataType::Int32, false),
        Field::new("creator_id", DataType::Utf8, false),
        Field::new("template_id", DataType::Utf8, false),
        Field::new("events", DataType::UInt64, false),
        Field::new("payable_events", DataType::UInt64, false),
        Field::new("amount_micros", DataType::Int64, false),
    ]))
}

/// Writes a shard's partial rows as an Arrow IPC file.
fn write_rows(path: &Path, partial: &Partial) -> Result<(), TaskError> {
    let batch = rows_batch(partial).map_err(|e| io(path, e))?;
    let file = std::fs::File::create(path).map_err(|e| io(path, e))?;
    let mut writer =
        arrow::ipc::writer::FileWriter::try_new(std::io::BufWriter::new(file), &rows_schema())
            .map_err(|e| io(path, e))?;
    writer.write(&batch).map_err(|e| io(path, e))?;
    writer.finish().map_err(|e| io(path, e))
}

/// A shard's partial rows as one batch of [`rows_schema`], strings resolved.
pub fn rows_batch(partial: &Partial) -> Result<RecordBatch, arrow::error::ArrowError> {
    let rows = &partial.aggregate.rows;
    let strings = &partial.strings;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.day))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| strings.get(r.creator)),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| strings.get(r.template)),
        )),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.events))),
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.payable_events),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.amount_micros),
        )),
    ];
    RecordBatch::try_new(rows_schema(), columns)
}

/// Reads a shard's partial rows back.
fn read_rows(
    path: &Path,
    counts: Counts,
    provenance: Vec<Contribution>,
) -> Result<Partial, TaskError> {
    let damaged = |e: &dyn std::fmt::Display| io(path, format!("damaged: {e}"));
    let file = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let reader = arrow::ipc::reader::FileReader::try_new(std::io::BufReader::new(file), None)
        .map_err(|e| damaged(&e))?;
    if reader.schema() != rows_schema() {
        return Err(damaged(&"not a partial-rows file"));
    }
    partial_from_rows(
        reader.map(|b| b.map_err(|e| e.to_string())),
        counts,
        provenance,
    )
    .map_err(|e| damaged(&e))
}

/// A shard's partial result from its rows (batches of [`rows_schema`]), its
/// counts and its provenance; an error says what is wrong with the rows.
pub fn partial_from_rows(
    batches: impl IntoIterator<Item = Result<RecordBatch, String>>,
    counts: Counts,
    provenance: Vec<Contribution>,
) -> Result<Partial, String> {
    let mut strings = Interner::new();
    let mut rows = Vec::new();
    for batch in batches {
        let batch = batch?;
        if batch.schema() != rows_schema() {
            return Err("not a batch of partial rows".to_string());
        }
        if let Some(i) = batch.columns().iter().position(|c| c.null_count() > 0) {
            return Err(format!(
                "column {} has nulls",
                rows_schema().field(i).name()
            ));
        }
        let day = batch.column(0).as_primitive::<Int32Type>();
        let creator = batch.column(1).as_string::<i32>();
        let template = batch.column(2).as_string::<i32>();
        let events = batch.column(3).as_primitive::<UInt64Type>();
        let payable = batch.column(4).as_primitive::<UInt64Type>();
        let amount = batch.column(5).as_primitive::<Int64Type>();
        for r in 0..batch.num_rows() {
            rows.push(Row {
                day: day.value(r),
                creator: strings.intern(creator.value(r)),
                template: strings.intern(template.value(r)),
                events: events.value(r),
                payable_events: payable.value(r),
                amount_micros: amount.value(r),
            });
        }
    }
    Ok(Partial {
        strings,
        aggregate: Aggregate {
            rows,
            events: counts.classified,
            payable_events: counts.payable,
            amount_micros: counts.amount_micros,
            by_reason: counts.by_reason.clone(),
            provenance,
        },
        counts,
        index: None,
    })
}

/// `tally commit`: checks that every task is done and consistent, merges the
/// shards' sums, checks the invariants across shards, and reconciles and
/// commits into the planned output as `tally run` does.
pub fn commit(work: &Path, progress: bool) -> Result<RunReport, TaskError> {
    let started = Instant::now();
    let plan = read_plan(work)?;
    let maps = maps_done(work, &plan)?;
    let mut missing = Vec::new();
    let mut reduces = Vec::new();
    for shard in 0..plan.shards {
        let path = reduce_dir(work, shard).join("done.json");
        if path.exists() {
            reduces.push(read_json::<ReduceDone>(&path)?);
        } else {
            missing.push(shard.to_string());
        }
    }
    if !missing.is_empty() {
        return Err(TaskError::Work(format!(
            "reduce shard(s) {} of {} not done (no {}/reduce/shard-K/done.json); nothing committed",
            missing.join(", "),
            work.display(),
            work.display()
        )));
    }
    let map_hashes: Vec<&String> = maps.iter().map(|(_, h)| h).collect();
    let rule = pinned_rule(work, &plan)?;

    // Map side: records, valid records and the quarantine, in input order.
    let mut counts = Counts::default();
    let mut ranges = Vec::new();
    for (done, _) in &maps {
        counts.records += done.records;
        counts.valid += done.valid;
        counts.quarantined += done.quarantined;
        for (reason, n) in &done.quarantined_by_reason {
            *counts
                .quarantined_by_reason
                .entry(reason.clone())
                .or_default() += n;
        }
        let path = map_dir(work, done.task).join("quarantine.jsonl");
        let actual = hash_file(&path)?;
        if actual != done.quarantine_blake3 {
            return Err(TaskError::Work(format!(
                "{} is damaged: blake3 {actual}, recorded {}; nothing committed",
                path.display(),
                done.quarantine_blake3
            )));
        }
        let len = std::fs::metadata(&path).map_err(|e| io(&path, e))?.len();
        ranges.push((path, 0, len));
    }
    let quarantine = crate::commit::Quarantine::Rendered(ranges);

    // Reduce side: each shard read what the map tasks hold now, whole.
    let partials = reduces.iter().map(|done| {
        let dir = reduce_dir(work, done.shard);
        if done.maps.len() != map_hashes.len()
            || done.maps.iter().zip(&map_hashes).any(|(a, b)| a != *b)
        {
            return Err(TaskError::Work(format!(
                "{} was reduced from other map outputs than {} holds now: rerun it (remove the directory first); nothing committed",
                dir.display(),
                work.join("map").display()
            )));
        }
        let spilled: u64 = maps
            .iter()
            .filter_map(|(m, _)| m.shards.get(done.shard as usize))
            .map(|m| m.rows)
            .sum();
        if done.counts.valid != spilled {
            return Err(RunError::Invariant(format!(
                "shard {}: records reduced = records the map tasks spilled: {} = {spilled}",
                done.shard, done.counts.valid
            ))
            .into());
        }
        let path = done.rows_file.check(&dir)?;
        let mut partial = read_rows(&path, done.counts.clone(), done.provenance.clone())?;
        partial.index = match &done.index {
            Some(file) => Some(crate::survivors::Part::File(file.check(&dir)?)),
            None => None,
        };
        Ok(partial)
    });
    commit_partials(&plan, rule, counts, quarantine, partials, progress, started)
}

/// Merges the shards' partial results of a planned run, checks the invariants
/// across shards, and reconciles and commits into the planned output as
/// `tally run` does: what `tally commit` and a Spark job's driver share.
/// `read` holds the counts of the reading side (records, valid, quarantined),
/// `quarantine` its quarantined records in input order; `started` is when the
/// run began. The partials come in shard order: their parts of the survivor
/// index are written one after the other (when one has none, no index is).
pub fn commit_partials(
    plan: &Plan,
    rule: Rule,
    read: Counts,
    quarantine: crate::commit::Quarantine,
    partials: impl Iterator<Item = Result<Partial, TaskError>>,
    progress: bool,
    started: Instant,
) -> Result<RunReport, TaskError> {
    let bar = crate::progress::Progress::counting(
        "merge",
        Some(u64::from(plan.shards)),
        "shards",
        progress,
    );
    let mut merger = merge::Merger::default();
    // The index goes into a work directory beside the output, so that the
    // commit moves its files instead of copying them.
    let out = crate::commit::resolve(Path::new(&plan.out)).map_err(RunError::from)?;
    let parent = out.parent().unwrap_or(Path::new(".")).to_path_buf();
    let work = shard::WorkDir::create(&parent, &plan.run_id).map_err(RunError::from)?;
    let index_dir = work.path().join("index");
    let mut writer = Some(
        crate::survivors::IndexWriter::create(&index_dir, read.valid).map_err(RunError::from)?,
    );
    for (i, partial) in partials.enumerate() {
        let mut partial = partial?;
        match (writer.as_mut(), partial.index.take()) {
            (Some(w), Some(part)) => part.write(w).map_err(RunError::from)?,
            (_, None) => writer = None,
            (None, Some(_)) => {}
        }
        merger.add(partial)?;
        bar.set(i as u64 + 1);
    }
    bar.finish();
    let (strings, aggregate, counts, checks) = merger.finish(&rule, read)?;

    let files: Vec<InputFile> = plan
        .files
        .iter()
        .map(|f| InputFile {
            path: PathBuf::from(&f.name),
            format: Format::from_name(&f.input.format).unwrap_or(Format::Jsonl),
            size: f.input.size,
            modified: None,
        })
        .collect();
    let fingerprint = blake3::Hash::from_hex(&plan.input_fingerprint)
        .map_err(|e| TaskError::Work(format!("the plan's input fingerprint: {e}")))?;
    let read = ReadOptions {
        max_line_bytes: usize::try_from(plan.max_line_bytes).unwrap_or(usize::MAX),
    };
    let index = match writer {
        Some(writer) => {
            let mut built = pipeline::finish_index(writer, index_dir, &[], counts.unique)?;
            built.modified = plan.files.iter().map(|f| f.modified_ns).collect();
            Some(built)
        }
        None => None,
    };
    let computed = Computed {
        run_id: plan.run_id.clone(),
        rule,
        files,
        inputs: plan.files.iter().map(|f| f.input.clone()).collect(),
        fingerprint,
        strings,
        aggregate,
        quarantine,
        counts,
        checks,
        timings: Timings::default(),
        work: Some(work),
        read,
        shards: plan.shards,
        index,
        increment: None,
    };
    let options = RunOptions {
        inputs: plan.files.iter().map(|f| PathBuf::from(&f.name)).collect(),
        rule: PathBuf::from(&plan.rule.path),
        out: PathBuf::from(&plan.out),
        threads: None,
        batch_size: plan.batch_size,
        limits: Limits::default(),
        progress,
        days: plan.days,
        read,
        spill: shard::SpillOptions {
            shards: Some(plan.shards),
            ..Default::default()
        },
    };
    Ok(pipeline::commit_computed(&computed, &options, started)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_split_into_tasks_in_order() {
        assert_eq!(
            split(&[10, 10, 10, 10, 10], 20),
            vec![vec![0, 1], vec![2, 3], vec![4]]
        );
        assert_eq!(split(&[50, 1, 1], 20), vec![vec![0], vec![1, 2]]);
        assert_eq!(split(&[], 20), Vec::<Vec<usize>>::new());
        assert_eq!(split(&[5, 5], 0), vec![vec![0], vec![1]]);
    }
}
