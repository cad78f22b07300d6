//! Commit: writes the output into a staging directory beside `--out`, then
//! promotes it in one atomic step.
//!
//! Data files hold nothing run-specific: the same rows, rule and inputs give the
//! same bytes. Lineage (rule hash, name and version, input fingerprint, Tally
//! version) goes into each Parquet file's key-value metadata; the run id and
//! timings go into `_manifest.json` and `_report.json` beside the partitions.
//! Promotion swaps the staging directory with the previous output
//! (`renameat2(RENAME_EXCHANGE)`), so a failed or killed run leaves the previous
//! output exactly as it was.

use crate::aggregate::Row;
use crate::intern::Interner;
use crate::validate::Quarantined;
use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use rayon::prelude::*;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Name of the lineage manifest at the root of an output directory.
pub const MANIFEST: &str = "_manifest.json";
/// Name of the run report at the root of an output directory.
pub const REPORT: &str = "_report.json";
/// Directory of quarantined records in an output directory.
pub const QUARANTINE_DIR: &str = "_quarantine";
/// The quarantine file inside [`QUARANTINE_DIR`].
pub const QUARANTINE_FILE: &str = "quarantine.jsonl";
/// Name of the data file inside each `day=YYYY-MM-DD/` partition.
pub const PART_FILE: &str = "part-0.parquet";

/// What every data file records about where it came from.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Lineage {
    pub rule_hash: String,
    pub rule_name: String,
    pub rule_version: String,
    pub rule_sdk_version: String,
    pub rule_world: String,
    pub input_fingerprint: String,
    pub tally_version: String,
}

impl Lineage {
    fn key_values(&self, day: &str) -> Vec<KeyValue> {
        [
            ("tally.rule_hash", &self.rule_hash),
            ("tally.rule_name", &self.rule_name),
            ("tally.rule_version", &self.rule_version),
            ("tally.rule_sdk_version", &self.rule_sdk_version),
            ("tally.rule_world", &self.rule_world),
            ("tally.input_fingerprint", &self.input_fingerprint),
            ("tally.version", &self.tally_version),
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
        "{0} exists and is not a Tally output directory (no {MANIFEST}); choose an empty or new directory"
    )]
    NotTallyOutput(PathBuf),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CommitError + '_ {
    move |source| CommitError::Io {
        path: path.to_path_buf(),
        source,
    }
}

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

/// Checks that `out` may be replaced, clears staging leftovers of killed runs and
/// creates a fresh staging directory on the same file system.
pub fn stage(out: &Path, run_id: &str) -> Result<Staging, CommitError> {
    if out.exists() {
        let empty = std::fs::read_dir(out)
            .map_err(io_error(out))?
            .next()
            .is_none();
        if !empty && !out.join(MANIFEST).is_file() {
            return Err(CommitError::NotTallyOutput(out.to_path_buf()));
        }
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io_error(&parent))?;
    let name = out
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    let prefix = format!(".{name}.tally-");
    // Leftovers of runs that were killed: never the live output itself.
    if let Ok(entries) = std::fs::read_dir(&parent) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = parent.join(format!("{prefix}staging-{run_id}"));
    std::fs::create_dir(&dir).map_err(io_error(&dir))?;
    Ok(Staging {
        dir,
        out: out.to_path_buf(),
        promoted: false,
    })
}

impl Staging {
    /// Makes the staged output the output, atomically. The previous output, if
    /// any, is swapped out in the same step and then deleted.
    pub fn promote(mut self) -> Result<(), CommitError> {
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

/// A partition written by a run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Partition {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Path relative to the output root.
    pub file: String,
    pub rows: u64,
    pub events: u64,
    pub payable_events: u64,
    pub amount_micros: i64,
    /// blake3 of the file's bytes.
    pub blake3: String,
}

/// Writes one Parquet file per day under `dir/day=YYYY-MM-DD/`, in parallel.
pub fn write_partitions(
    dir: &Path,
    rows: &[Row],
    strings: &Interner,
    lineage: &Lineage,
) -> Result<Vec<Partition>, CommitError> {
    let mut days: Vec<&[Row]> = rows.chunk_by(|a, b| a.day == b.day).collect();
    days.retain(|d| !d.is_empty());
    days.par_iter()
        .map(|rows| write_day(dir, rows, strings, lineage))
        .collect()
}

fn write_day(
    dir: &Path,
    rows: &[Row],
    strings: &Interner,
    lineage: &Lineage,
) -> Result<Partition, CommitError> {
    let day = crate::event::format_day(rows[0].day);
    let relative = format!("day={day}/{PART_FILE}");
    let path = dir.join(&relative);
    let parent = path.parent().expect("partition files have a parent");
    std::fs::create_dir_all(parent).map_err(io_error(parent))?;

    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| strings.get(r.creator)),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| strings.get(r.template)),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.events as i64),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.payable_events as i64),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.amount_micros),
        )),
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
            lineage.rule_hash.as_str(),
            rows.len(),
        ))),
    ];
    let parquet_error = |e: &dyn std::fmt::Display| CommitError::Parquet {
        path: path.clone(),
        message: e.to_string(),
    };
    let batch = RecordBatch::try_new(schema(), columns).map_err(|e| parquet_error(&e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("level 3 is valid"),
        ))
        .set_created_by(format!("tally {}", lineage.tally_version))
        .set_key_value_metadata(Some(lineage.key_values(&day)))
        .build();
    let mut buffer = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut buffer, schema(), Some(props)).map_err(|e| parquet_error(&e))?;
    writer.write(&batch).map_err(|e| parquet_error(&e))?;
    writer.close().map_err(|e| parquet_error(&e))?;
    write_file(&path, &buffer)?;

    let sum = |f: fn(&Row) -> u64| rows.iter().map(f).sum::<u64>();
    Ok(Partition {
        day,
        file: relative,
        rows: rows.len() as u64,
        events: sum(|r| r.events),
        payable_events: sum(|r| r.payable_events),
        amount_micros: rows.iter().map(|r| r.amount_micros).sum(),
        blake3: blake3::hash(&buffer).to_hex().to_string(),
    })
}

/// Writes a file and flushes it to disk.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), CommitError> {
    let mut file = File::create(path).map_err(io_error(path))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_error(path))
}

/// Writes the quarantined records as JSON lines: `file`, `line` (JSON input) or
/// `row` (Parquet input), `reason` and `raw`, in input order.
pub fn write_quarantine(
    dir: &Path,
    records: &[Quarantined],
    sources: &[(String, bool)],
) -> Result<PathBuf, CommitError> {
    let qdir = dir.join(QUARANTINE_DIR);
    std::fs::create_dir_all(&qdir).map_err(io_error(&qdir))?;
    let path = qdir.join(QUARANTINE_FILE);
    let file = File::create(&path).map_err(io_error(&path))?;
    let mut out = BufWriter::new(file);
    for q in records {
        let (source, is_parquet) = &sources[q.source as usize];
        let position = if *is_parquet { "row" } else { "line" };
        let line = serde_json::json!({
            "file": source,
            position: q.position,
            "reason": q.reason.to_string(),
            "raw": q.raw,
        });
        serde_json::to_writer(&mut out, &line)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
            .map_err(io_error(&path))?;
    }
    let file = out.into_inner().map_err(|e| CommitError::Io {
        path: path.clone(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io_error(&path))?;
    Ok(path)
}
