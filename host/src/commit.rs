//! Commit: writes a run's output into a staging directory beside `--out`, then
//! promotes it in one atomic step. Where each file goes is [`crate::layout`].
//!
//! Data files hold nothing run-specific: the same rows, rule and inputs give the
//! same bytes. Lineage goes into each Parquet file's key-value metadata; run ids
//! and times go into the JSON files under `_tally/`. Writers take a lock beside
//! the output, so two runs never claim the same commit number. The staging
//! directory gets hard links to everything the run does not rewrite, then is
//! swapped with the previous output (`renameat2(RENAME_EXCHANGE)`): a failed or
//! killed run leaves the previous output exactly as it was.
//!
//! Files are written into the staging directory without being flushed one
//! by one ([`write_staged`]); just before the swap, [`Staging::promote`]
//! flushes every file the commit wrote, and the directories holding them,
//! from many threads at once, so that the file system joins the flushes into
//! a few journal commits instead of one per file. Nothing is swapped in
//! before all of it is on disk.

use crate::layout;
use crate::reconcile::{Change, OutRow};
use crate::validate::Quarantined;
use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What every data file records about where it came from.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Lineage {
    pub rule_hash: String,
    pub rule_name: String,
    pub rule_version: String,
    pub rule_sdk_version: String,
    pub rule_world: String,
    /// For a partition, the fingerprint of the input files its events came
    /// from ([`crate::pipeline::day_fingerprint`]); for a run, of all its
    /// input files. Outputs of compute version 1 stamped every partition with
    /// the run's.
    pub input_fingerprint: String,
    pub tally_version: String,
    /// The version of how figures are computed from events and a rule
    /// ([`crate::pipeline::COMPUTE_VERSION`]); 1 in outputs written before it
    /// was recorded.
    #[serde(default = "compute_version_1")]
    pub compute_version: u32,
}

/// The compute version of metadata written before it was recorded.
pub fn compute_version_1() -> u32 {
    1
}

impl Lineage {
    /// The key-value metadata stamped into a partition file of `day`.
    pub fn key_values(&self, day: &str) -> Vec<KeyValue> {
        [
            ("tally.rule_hash", &self.rule_hash),
            ("tally.rule_name", &self.rule_name),
            ("tally.rule_version", &self.rule_version),
            ("tally.rule_sdk_version", &self.rule_sdk_version),
            ("tally.rule_world", &self.rule_world),
            ("tally.input_fingerprint", &self.input_fingerprint),
            ("tally.version", &self.tally_version),
            ("tally.compute_version", &self.compute_version.to_string()),
            ("tally.day", &day.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| KeyValue::new(k.to_string(), v.clone()))
        .collect()
    }
}

/// What can go wrong while writing output.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// A file operation failed.
    #[error("cannot write {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Parquet encoding failed.
    #[error("writing {path}: {message}")]
    Parquet { path: PathBuf, message: String },
    /// `--out` holds something that is not Tally output; it is never replaced.
    #[error(
        "{0} exists and is not a Tally output directory (no _tally/manifest.json); choose an empty or new directory"
    )]
    NotTallyOutput(PathBuf),
    /// `--out` is a Tally output in an earlier layout.
    #[error("{}", layout::legacy_message(.0))]
    LegacyLayout(PathBuf),
    /// A file the run must create already exists in the staged output.
    #[error("{0} already exists; a commit never overwrites a file it carries over or writes")]
    Exists(PathBuf),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CommitError + '_ {
    move |source| CommitError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The column of a daily partition (and of its changeset) whose value
/// differs on (nearly) every row: a day has one row per
/// `(creator_id, template_id)`, and a piece of content seldom has two
/// creators.
pub const DAILY_UNIQUE: &[&str] = &["template_id"];

/// The columns of a daily partition file.
pub fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("creator_id", DataType::Utf8, false),
        Field::new("template_id", DataType::Utf8, false),
        Field::new("events", DataType::Int64, false),
        Field::new("payable_events", DataType::Int64, false),
        Field::new("amount_micros", DataType::Int64, false),
        Field::new("rule_hash", DataType::Utf8, false),
    ]))
}

/// An exclusive lock on an output directory, held while a run commits.
pub struct Lock {
    _file: File,
}

fn sibling(out: &Path, suffix: &str) -> PathBuf {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    parent.join(format!(".{name}.tally-{suffix}"))
}

/// The real path of an output directory: symbolic links resolved, so that
/// every spelling of it shares one lock and one swap. A directory that does
/// not exist yet is resolved through its parent (created if needed).
pub fn resolve(out: &Path) -> Result<PathBuf, CommitError> {
    if out.exists() {
        if !out.is_dir() {
            return Err(CommitError::NotTallyOutput(out.to_path_buf()));
        }
        return std::fs::canonicalize(out).map_err(io_error(out));
    }
    let name = out
        .file_name()
        .ok_or_else(|| CommitError::NotTallyOutput(out.to_path_buf()))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io_error(&parent))?;
    Ok(std::fs::canonicalize(&parent)
        .map_err(io_error(&parent))?
        .join(name))
}

/// Waits for and takes the lock of `out` (a file beside it).
pub fn lock(out: &Path) -> Result<Lock, CommitError> {
    let path = sibling(out, "lock");
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error(&path))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
        CommitError::Io {
            path: path.clone(),
            source: e.into(),
        }
    })?;
    Ok(Lock { _file: file })
}

/// What an output directory already holds.
#[derive(Debug, Default)]
pub struct Existing {
    /// Published days and their partition directories.
    pub days: std::collections::BTreeMap<i32, PathBuf>,
    /// The last commit number (0 when there is none).
    pub last_commit: u64,
}

/// Reads what `out` holds, refusing a directory that is not Tally output.
/// Call with the lock held.
pub fn existing(out: &Path) -> Result<Existing, CommitError> {
    let mut found = Existing::default();
    if !out.exists() {
        return Ok(found);
    }
    let entries: Vec<_> = std::fs::read_dir(out)
        .map_err(io_error(out))?
        .collect::<Result<_, _>>()
        .map_err(io_error(out))?;
    if layout::is_legacy(out) {
        return Err(CommitError::LegacyLayout(out.to_path_buf()));
    }
    if entries.is_empty() {
        return Ok(found);
    }
    if !layout::manifest(out).is_file() {
        return Err(CommitError::NotTallyOutput(out.to_path_buf()));
    }
    let daily = layout::daily_dir(out);
    if daily.is_dir() {
        for entry in std::fs::read_dir(&daily).map_err(io_error(&daily))? {
            let entry = entry.map_err(io_error(&daily))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(day) = name.strip_prefix("day=").and_then(crate::event::parse_day) {
                found.days.insert(day, entry.path());
            }
        }
    }
    let log = layout::log_dir(out);
    if log.is_dir() {
        for entry in std::fs::read_dir(&log).map_err(io_error(&log))? {
            let name = entry.map_err(io_error(&log))?.file_name();
            let number = layout::log_entry_number(&name.to_string_lossy());
            found.last_commit = found.last_commit.max(number.unwrap_or(0));
        }
    }
    Ok(found)
}

/// A staging directory beside the output, removed on drop unless promoted.
pub struct Staging {
    /// Where the new output is written.
    pub dir: PathBuf,
    out: PathBuf,
    promoted: bool,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.promoted {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Clears staging leftovers of killed runs and creates a fresh staging
/// directory on the same file system as `out`. Call with the lock held.
pub fn stage(out: &Path, run_id: &str) -> Result<Staging, CommitError> {
    let leftover = sibling(out, "staging-");
    let prefix = leftover
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = leftover.parent().unwrap_or(Path::new(".")).to_path_buf();
    std::fs::create_dir_all(&parent).map_err(io_error(&parent))?;
    for entry in std::fs::read_dir(&parent)
        .map_err(io_error(&parent))?
        .flatten()
    {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = sibling(out, &format!("staging-{run_id}"));
    std::fs::create_dir(&dir).map_err(io_error(&dir))?;
    Ok(Staging {
        dir,
        out: out.to_path_buf(),
        promoted: false,
    })
}

impl Staging {
    /// Carries the current output over into the staging directory, except the
    /// paths in `replaced` (relative to the output root) and what lies under
    /// them: everything else is linked (or copied where hard links are not
    /// possible). Nothing already staged is ever overwritten.
    pub fn carry_over(
        &self,
        replaced: &std::collections::HashSet<PathBuf>,
    ) -> Result<(), CommitError> {
        if self.out.is_dir() {
            self.carry(Path::new(""), replaced)?;
        }
        Ok(())
    }

    fn carry(
        &self,
        relative: &Path,
        replaced: &std::collections::HashSet<PathBuf>,
    ) -> Result<(), CommitError> {
        let from = self.out.join(relative);
        for entry in std::fs::read_dir(&from).map_err(io_error(&from))? {
            let entry = entry.map_err(io_error(&from))?;
            let path = relative.join(entry.file_name());
            if replaced.contains(&path) {
                continue;
            }
            if entry.file_type().map_err(io_error(&from))?.is_dir() {
                let to = self.dir.join(&path);
                std::fs::create_dir_all(&to).map_err(io_error(&to))?;
                self.carry(&path, replaced)?;
            } else {
                self.keep(&path)?;
            }
        }
        Ok(())
    }

    /// Links the file `relative` from the current output into the staging
    /// directory (copies it where hard links are not possible).
    fn keep(&self, relative: &Path) -> Result<(), CommitError> {
        let from = self.out.join(relative);
        let to = self.dir.join(relative);
        if to.symlink_metadata().is_ok() {
            return Err(CommitError::Exists(to));
        }
        match std::fs::hard_link(&from, &to) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(CommitError::Exists(to)),
            // Where hard links are not possible, a copy into a new file: never
            // over one the run has written.
            Err(_) => {
                let mut source = File::open(&from).map_err(io_error(&from))?;
                let mut target = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&to)
                    .map_err(|e| match e.kind() {
                        std::io::ErrorKind::AlreadyExists => CommitError::Exists(to.clone()),
                        _ => CommitError::Io {
                            path: to.clone(),
                            source: e,
                        },
                    })?;
                std::io::copy(&mut source, &mut target)
                    .map(drop)
                    .map_err(io_error(&to))
            }
        }
    }

    /// Makes the staged output the output, atomically. The previous output, if
    /// any, is swapped out in the same step and then deleted.
    pub fn promote(mut self) -> Result<(), CommitError> {
        self.flush()?;
        let out = self.out.clone();
        if out.exists() {
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                &self.dir,
                rustix::fs::CWD,
                &out,
                rustix::fs::RenameFlags::EXCHANGE,
            )
            .map_err(|e| CommitError::Io {
                path: out.clone(),
                source: e.into(),
            })?;
            // `self.dir` now holds the previous output; dropping removes it.
        } else {
            std::fs::rename(&self.dir, &out).map_err(io_error(&out))?;
            self.promoted = true;
        }
        sync_dir(out.parent().unwrap_or(Path::new(".")));
        Ok(())
    }

    /// Flushes to disk every file of the staging directory that this commit
    /// wrote, and every directory holding one. A file with a single link
    /// was written (or copied, or moved in) by this commit; one with more is
    /// a hard link to a file of the output, flushed by the commit that wrote
    /// it.
    fn flush(&self) -> Result<(), CommitError> {
        let mut paths = Vec::new();
        collect_new(&self.dir, &mut paths)?;
        paths.push(self.dir.clone());
        let threads = paths.len().clamp(1, FLUSH_THREADS);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let failed: std::sync::Mutex<Option<CommitError>> = std::sync::Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    loop {
                        let at = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(path) = paths.get(at) else { break };
                        if let Err(e) = File::open(path).and_then(|f| f.sync_all()) {
                            let mut failed = failed.lock().unwrap_or_else(|p| p.into_inner());
                            failed.get_or_insert(CommitError::Io {
                                path: path.clone(),
                                source: e,
                            });
                            break;
                        }
                    }
                });
            }
        });
        match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// How many files [`Staging::flush`] flushes at once.
const FLUSH_THREADS: usize = 16;

/// Adds to `paths` the files under `dir` with a single link and every
/// directory (under `dir`) holding one.
fn collect_new(dir: &Path, paths: &mut Vec<PathBuf>) -> Result<bool, CommitError> {
    let mut holds_new = false;
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let path = entry.path();
        let meta = entry.metadata().map_err(io_error(&path))?;
        if meta.is_dir() {
            if collect_new(&path, paths)? {
                paths.push(path);
                holds_new = true;
            }
        } else if std::os::unix::fs::MetadataExt::nlink(&meta) == 1 {
            paths.push(path);
            holds_new = true;
        }
    }
    Ok(holds_new)
}

fn sync_dir(dir: &Path) {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Encodes rows as a partition file stamped with `rule_hash` and the given
/// key-value metadata, staged ([`write_staged`]); returns the file's blake3.
pub fn write_rows(
    path: &Path,
    rows: &[OutRow<'_>],
    rule_hash: &str,
    key_values: &[KeyValue],
) -> Result<String, CommitError> {
    let stamped: Vec<(OutRow<'_>, &str)> = rows.iter().map(|r| (*r, rule_hash)).collect();
    write_stamped_rows(path, &stamped, key_values, &Repeated::default())
}

/// A string column of one value repeated, made once and shared (sliced) by
/// the partitions of a commit, whose rows nearly always carry one rule hash:
/// 64 bytes a row that every partition would otherwise copy.
#[derive(Default)]
pub struct Repeated {
    made: std::sync::Mutex<Option<(String, ArrayRef)>>,
}

impl Repeated {
    /// `len` times `value`.
    fn column(&self, value: &str, len: usize) -> ArrayRef {
        let mut made = self
            .made
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((v, column)) = &*made
            && v == value
            && column.len() >= len
        {
            return column.slice(0, len);
        }
        let column: ArrayRef = Arc::new(strings(std::iter::repeat_n(value, len)));
        *made = Some((value.to_string(), column.clone()));
        column
    }
}

/// The columns a partition's rows and a changeset's share: creator,
/// template, events, payable events and amount.
fn row_columns<'a>(rows: impl Iterator<Item = &'a OutRow<'a>> + Clone) -> Vec<ArrayRef> {
    vec![
        Arc::new(strings(rows.clone().map(|r| r.creator))),
        Arc::new(strings(rows.clone().map(|r| r.template))),
        Arc::new(Int64Array::from_iter_values(rows.clone().map(|r| r.events))),
        Arc::new(Int64Array::from_iter_values(
            rows.clone().map(|r| r.payable_events),
        )),
        Arc::new(Int64Array::from_iter_values(rows.map(|r| r.amount_micros))),
    ]
}

/// A string column of `values`, its buffers allocated once at their size.
fn strings<'a>(values: impl Iterator<Item = &'a str> + Clone) -> StringArray {
    let (count, bytes) = values
        .clone()
        .fold((0, 0), |(n, b), v| (n + 1, b + v.len()));
    let mut builder = arrow::array::StringBuilder::with_capacity(count, bytes);
    for v in values {
        builder.append_value(v);
    }
    builder.finish()
}

/// Encodes rows, each stamped with its own rule hash, as a partition file
/// with the given key-value metadata, staged ([`write_staged`]); returns the
/// file's blake3. When every row carries the same hash, the column is a
/// slice of `repeated`'s.
pub fn write_stamped_rows(
    path: &Path,
    rows: &[(OutRow<'_>, &str)],
    key_values: &[KeyValue],
    repeated: &Repeated,
) -> Result<String, CommitError> {
    let hashes: ArrayRef = match rows.first() {
        Some((_, first)) if rows.iter().all(|(_, h)| h == first) => {
            repeated.column(first, rows.len())
        }
        _ => Arc::new(strings(rows.iter().map(|(_, h)| *h))),
    };
    let mut columns = row_columns(rows.iter().map(|(r, _)| r));
    columns.push(hashes);
    let bytes = encode(path, schema(), columns, key_values, DAILY_UNIQUE)?;
    write_staged(path, &bytes)?;
    Ok(blake3::hash(&bytes).to_hex().to_string())
}

/// Encodes one batch as Parquet with Tally's fixed writer settings.
/// `unique` names the columns whose value differs on (nearly) every row,
/// such as the last column of a table's key: they are written without a
/// dictionary, which for them would cost time and bytes and save nothing.
pub fn encode(
    path: &Path,
    schema: Arc<Schema>,
    columns: Vec<ArrayRef>,
    key_values: &[KeyValue],
    unique: &[&str],
) -> Result<Vec<u8>, CommitError> {
    let parquet_error = |e: &dyn std::fmt::Display| CommitError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| parquet_error(&e))?;
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("level 1 is valid"),
        ))
        .set_created_by(format!("tally {}", crate::pipeline::VERSION))
        .set_key_value_metadata((!key_values.is_empty()).then(|| key_values.to_vec()));
    for column in unique {
        props = props.set_column_dictionary_enabled(ColumnPath::from(*column), false);
    }
    let props = props.build();
    let mut buffer = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut buffer, schema, Some(props)).map_err(|e| parquet_error(&e))?;
    writer.write(&batch).map_err(|e| parquet_error(&e))?;
    writer.close().map_err(|e| parquet_error(&e))?;
    Ok(buffer)
}

/// Writes one day's part of a changeset: the rows that differ from the
/// previous output, as Parquet with the columns of a partition plus `change`
/// (the commit and the day are the partition directories above it). Staged
/// like [`write_staged`].
pub fn write_changes(
    path: &Path,
    changes: &[(OutRow<'_>, Change)],
    rule_hash: &str,
    key_values: &[KeyValue],
    repeated: &Repeated,
) -> Result<(), CommitError> {
    let mut fields: Vec<Field> = schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("change", DataType::Utf8, false));
    let mut columns = row_columns(changes.iter().map(|(r, _)| r));
    columns.extend([
        repeated.column(rule_hash, changes.len()),
        Arc::new(strings(changes.iter().map(|(_, c)| c.as_str()))),
    ]);
    let bytes = encode(
        path,
        Arc::new(Schema::new(fields)),
        columns,
        key_values,
        DAILY_UNIQUE,
    )?;
    write_staged(path, &bytes)
}

/// Writes a file into a staging directory, without flushing it:
/// [`Staging::promote`] does, with every other file the commit wrote.
pub fn write_staged(path: &Path, bytes: &[u8]) -> Result<(), CommitError> {
    create_parent(path)?;
    std::fs::write(path, bytes).map_err(io_error(path))
}

/// Writes a file and flushes it to disk.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), CommitError> {
    create_parent(path)?;
    let mut file = File::create(path).map_err(io_error(path))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_error(path))
}

/// Each input file's name as the quarantine names it, and whether it is
/// Parquet (a record's position is then a row, else a line).
pub fn sources(files: &[crate::ingest::InputFile]) -> Vec<(String, bool)> {
    files
        .iter()
        .map(|f| {
            (
                f.path.display().to_string(),
                f.format == crate::ingest::Format::Parquet,
            )
        })
        .collect()
}

/// One quarantined record as a line of the quarantine file (without its line
/// end): `sources` gives each input file's name and whether it is Parquet.
pub fn quarantine_line(q: &Quarantined, sources: &[(String, bool)]) -> String {
    let (source, is_parquet) = &sources[q.source as usize];
    let position = if *is_parquet { "row" } else { "line" };
    let mut line = serde_json::json!({
        "file": source,
        position: q.position,
        "reason": q.reason.to_string(),
        "raw": q.raw,
    });
    if let Some(bytes) = q.line_bytes {
        line["line_bytes"] = bytes.into();
    }
    line.to_string()
}

/// The records a run quarantined: held in memory, or already written as
/// quarantine lines into byte ranges of other files (an out-of-core run's),
/// in order.
#[derive(Debug, Clone)]
pub enum Quarantine {
    Records(Vec<Quarantined>),
    Rendered(Vec<(PathBuf, u64, u64)>),
}

/// Writes the quarantine file: one JSON object per line, in input order.
/// Staged like [`write_staged`].
pub fn write_quarantine(
    path: &Path,
    quarantine: &Quarantine,
    sources: &[(String, bool)],
) -> Result<(), CommitError> {
    create_parent(path)?;
    let path = path.to_path_buf();
    let file = File::create(&path).map_err(io_error(&path))?;
    let mut out = BufWriter::new(file);
    match quarantine {
        Quarantine::Records(records) => {
            for q in records {
                let mut line = quarantine_line(q, sources);
                line.push('\n');
                out.write_all(line.as_bytes()).map_err(io_error(&path))?;
            }
        }
        Quarantine::Rendered(ranges) => {
            use std::io::{Read, Seek};
            for (from, offset, len) in ranges {
                let mut source = File::open(from).map_err(io_error(from))?;
                source
                    .seek(std::io::SeekFrom::Start(*offset))
                    .map_err(io_error(from))?;
                let copied =
                    std::io::copy(&mut source.take(*len), &mut out).map_err(io_error(&path))?;
                if copied != *len {
                    return Err(CommitError::Io {
                        path: from.clone(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "the quarantine spill file is shorter than recorded",
                        ),
                    });
                }
            }
        }
    }
    out.into_inner().map(drop).map_err(|e| CommitError::Io {
        path: path.clone(),
        source: e.into_error(),
    })
}

/// Creates the directory a file goes into.
pub fn create_parent(path: &Path) -> Result<(), CommitError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(io_error(dir))
        }
        _ => Ok(()),
    }
}

/// Writes a file that must not exist yet (a commit log entry): two writers can
/// never both create it. Staged like [`write_staged`].
pub fn write_new_file(path: &Path, bytes: &[u8]) -> Result<(), CommitError> {
    create_parent(path)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_error(path))?;
    file.write_all(bytes).map_err(io_error(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_rule_hash_column_gives_the_bytes_of_a_column_of_its_own() {
        let dir = tempfile::TempDir::new().unwrap();
        let row = |creator, events| OutRow {
            creator,
            template: "t",
            events,
            payable_events: 1,
            amount_micros: 5,
        };
        let rows = [row("a", 1), row("b", 2), row("c", 3)];
        let (h1, h2) = ("1".repeat(64), "2".repeat(64));
        let write = |name: &str, stamped: &[(OutRow<'_>, &str)], repeated: &Repeated| {
            let path = dir.path().join(name);
            write_stamped_rows(&path, stamped, &[], repeated).unwrap();
            std::fs::read(path).unwrap()
        };
        let one: Vec<(OutRow<'_>, &str)> = rows.iter().map(|r| (*r, h1.as_str())).collect();
        let alone = write("alone", &one, &Repeated::default());
        // Made longer by an earlier, bigger partition, then sliced.
        let shared = Repeated::default();
        let longer: Vec<(OutRow<'_>, &str)> = one.iter().chain(&one).copied().collect();
        write("longer", &longer, &shared);
        assert_eq!(write("sliced", &one, &shared), alone);
        // Another hash is not taken from the column made for the first.
        let other: Vec<(OutRow<'_>, &str)> = rows.iter().map(|r| (*r, h2.as_str())).collect();
        assert_eq!(
            write("other", &other, &shared),
            write("other-alone", &other, &Repeated::default())
        );
        assert_ne!(write("other-again", &other, &shared), alone);
        // Rows stamped with several hashes get a column of their own.
        let mixed = [(rows[0], h1.as_str()), (rows[1], h2.as_str())];
        let read = crate::reconcile::Published::read(&{
            let path = dir.path().join("mixed");
            write_stamped_rows(&path, &mixed, &[], &shared).unwrap();
            path
        })
        .unwrap();
        assert_eq!(read.row(0).1, h1);
        assert_eq!(read.row(1).1, h2);
    }

    #[test]
    fn a_promote_flushes_what_the_commit_wrote_and_not_what_it_carried_over() {
        let dir = tempfile::TempDir::new().unwrap();
        let out = dir.path().join("out");
        let published = out.join("daily/day=2026-05-01/part-0.parquet");
        create_parent(&published).unwrap();
        std::fs::write(&published, b"published").unwrap();
        let staging = stage(&out, "run").unwrap();
        // Carried over: a hard link to the output's file.
        staging
            .carry_over(&std::collections::HashSet::new())
            .unwrap();
        // Written: a day, and a copy made where a link was not possible.
        let written = staging.dir.join("daily/day=2026-05-02/part-0.parquet");
        write_staged(&written, b"written").unwrap();
        let copied = staging.dir.join("_tally/copied.json");
        write_staged(&copied, b"{}").unwrap();

        let mut paths = Vec::new();
        assert!(collect_new(&staging.dir, &mut paths).unwrap());
        paths.sort();
        let mut want = vec![
            staging.dir.join("_tally"),
            copied,
            staging.dir.join("daily"),
            staging.dir.join("daily/day=2026-05-02"),
            written.clone(),
        ];
        want.sort();
        assert_eq!(paths, want, "the carried-over day is not flushed again");

        staging.promote().unwrap();
        assert_eq!(
            std::fs::read(out.join("daily/day=2026-05-02/part-0.parquet")).unwrap(),
            b"written"
        );
        assert_eq!(std::fs::read(&published).unwrap(), b"published");
    }
}
