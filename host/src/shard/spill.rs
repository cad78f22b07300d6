//! Shard spill files: valid records written by shard, read back one shard at a
//! time.
//!
//! A spill file is an Arrow IPC file (LZ4-compressed buffers) with one row per
//! valid record and these columns:
//!
//! | column | type | |
//! | --- | --- | --- |
//! | `event_id` | utf8 | |
//! | `occurred_at`, `ingested_at` | int64 | UTC epoch milliseconds |
//! | `creator_id`, `template_id` | utf8 | |
//! | `brand_id` | utf8, nullable | |
//! | `content_kind`, `action`, `user_tier` | uint8 | codes of the event contract's enumerations (`event.rs`) |
//! | `country` | fixed-size binary (2) | |
//! | `source` | uint32 | index of the input file in the run's sorted input list |
//! | `position` | uint64 | line (JSON) or row (Parquet) in that file |
//!
//! Its schema metadata holds `tally.shard_format` (the
//! [`SHARD_FORMAT_VERSION`](super::SHARD_FORMAT_VERSION)), `tally.shard` and
//! `tally.shards`. Rows within a file come in no particular order: dedup's
//! survivor rule is a total order, so nothing downstream depends on it.

use super::{SHARD_FORMAT_VERSION, shard_of};
use crate::ingest::Chunk;
use crate::intern::Interner;
use crate::validate::{EventColumns, NO_BRAND};
use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeBinaryBuilder, Int64Builder, RecordBatch, StringBuilder,
    UInt8Builder, UInt32Builder, UInt64Builder,
};
use arrow::datatypes::{
    DataType, Field, Int64Type, Schema, SchemaRef, UInt8Type, UInt32Type, UInt64Type,
};
use arrow::ipc::CompressionType;
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::{FileWriter, IpcWriteOptions};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What can go wrong with a spill file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpillError {
    /// A spill file cannot be created, written or read.
    #[error("spill file {path}: {message}")]
    Io { path: PathBuf, message: String },
    /// A spill file is not one this Tally wrote for this shard.
    #[error("spill file {path} is damaged or not a shard file: {message}")]
    Damaged { path: PathBuf, message: String },
}

fn io(path: &Path, e: impl std::fmt::Display) -> SpillError {
    SpillError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn damaged(path: &Path, e: impl std::fmt::Display) -> SpillError {
    SpillError::Damaged {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The spill files' schema, with the shard's identity in its metadata.
pub fn schema(shard: u32, shards: u32) -> SchemaRef {
    let utf8 = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    let fields = vec![
        utf8("event_id", false),
        Field::new("occurred_at", DataType::Int64, false),
        Field::new("ingested_at", DataType::Int64, false),
        utf8("creator_id", false),
        utf8("template_id", false),
        utf8("brand_id", true),
        Field::new("content_kind", DataType::UInt8, false),
        Field::new("action", DataType::UInt8, false),
        Field::new("user_tier", DataType::UInt8, false),
        Field::new("country", DataType::FixedSizeBinary(2), false),
        Field::new("source", DataType::UInt32, false),
        Field::new("position", DataType::UInt64, false),
    ];
    let metadata = HashMap::from([
        (
            "tally.shard_format".to_string(),
            SHARD_FORMAT_VERSION.to_string(),
        ),
        ("tally.shard".to_string(), shard.to_string()),
        ("tally.shards".to_string(), shards.to_string()),
    ]);
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

/// Rows of one shard gathered until they are written as one batch.
struct Buffer {
    event_id: StringBuilder,
    occurred_at: Int64Builder,
    ingested_at: Int64Builder,
    creator: StringBuilder,
    template: StringBuilder,
    brand: StringBuilder,
    content_kind: UInt8Builder,
    action: UInt8Builder,
    user_tier: UInt8Builder,
    country: FixedSizeBinaryBuilder,
    source: UInt32Builder,
    position: UInt64Builder,
    rows: usize,
}

impl Buffer {
    /// A buffer sized for `rows` rows, so that it does not grow as it fills.
    fn with_capacity(rows: usize) -> Self {
        let strings = || StringBuilder::with_capacity(rows, rows * 24);
        Buffer {
            event_id: StringBuilder::with_capacity(rows, rows * 40),
            occurred_at: Int64Builder::with_capacity(rows),
            ingested_at: Int64Builder::with_capacity(rows),
            creator: strings(),
            template: strings(),
            brand: strings(),
            content_kind: UInt8Builder::with_capacity(rows),
            action: UInt8Builder::with_capacity(rows),
            user_tier: UInt8Builder::with_capacity(rows),
            country: FixedSizeBinaryBuilder::with_capacity(rows, 2),
            source: UInt32Builder::with_capacity(rows),
            position: UInt64Builder::with_capacity(rows),
            rows: 0,
        }
    }

    fn push(&mut self, events: &EventColumns, r: usize, strings: &Interner) {
        // Event ids were checked as UTF-8 when they were read.
        self.event_id
            .append_value(String::from_utf8_lossy(events.event_id(r)));
        self.occurred_at.append_value(events.occurred_at[r]);
        self.ingested_at.append_value(events.ingested_at[r]);
        self.creator.append_value(strings.get(events.creator[r]));
        self.template.append_value(strings.get(events.template[r]));
        match events.brand[r] {
            NO_BRAND => self.brand.append_null(),
            id => self.brand.append_value(strings.get(id)),
        }
        self.content_kind.append_value(events.content_kind[r]);
        self.action.append_value(events.action[r]);
        self.user_tier.append_value(events.user_tier[r]);
        self.country
            .append_value(events.country[r])
            .expect("countries are two bytes");
        self.source.append_value(events.source);
        self.position
            .append_value(events.position.get(r).copied().unwrap_or(0));
        self.rows += 1;
    }

    fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
        self.rows = 0;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.occurred_at.finish()),
            Arc::new(self.ingested_at.finish()),
            Arc::new(self.creator.finish()),
            Arc::new(self.template.finish()),
            Arc::new(self.brand.finish()),
            Arc::new(self.content_kind.finish()),
            Arc::new(self.action.finish()),
            Arc::new(self.user_tier.finish()),
            Arc::new(self.country.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.position.finish()),
        ];
        RecordBatch::try_new(schema.clone(), columns)
    }
}

/// One shard's file, opened on its first row.
struct ShardFile {
    path: PathBuf,
    schema: SchemaRef,
    writer: Option<FileWriter<BufWriter<File>>>,
    buffer: Buffer,
    rows: u64,
}

impl ShardFile {
    fn flush(&mut self) -> Result<(), SpillError> {
        if self.buffer.rows == 0 {
            return Ok(());
        }
        let batch = self
            .buffer
            .finish(&self.schema)
            .map_err(|e| io(&self.path, e))?;
        if self.writer.is_none() {
            let file = File::create(&self.path).map_err(|e| io(&self.path, e))?;
            let options = IpcWriteOptions::default()
                .try_with_compression(Some(CompressionType::LZ4_FRAME))
                .map_err(|e| io(&self.path, e))?;
            let writer = FileWriter::try_new_with_options(
                BufWriter::with_capacity(1 << 20, file),
                &self.schema,
                options,
            )
            .map_err(|e| io(&self.path, e))?;
            self.writer = Some(writer);
        }
        let writer = self.writer.as_mut().expect("opened above");
        writer.write(&batch).map_err(|e| io(&self.path, e))
    }
}

/// What was written for one shard.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Written {
    pub shard: u32,
    /// Its files (none when the shard received no row).
    pub paths: Vec<PathBuf>,
    pub rows: u64,
    pub bytes: u64,
}

/// The spill files of one writer (a run, or one map task): for each worker
/// thread, one file per shard, named `{prefix}shard-{k}-{thread}.arrow` in
/// `dir`, so that threads never wait for each other and a shard's files can
/// be read back in parallel.
pub struct ShardWriters {
    /// `sets[thread][shard]`.
    sets: Vec<Vec<Mutex<ShardFile>>>,
    shards: u32,
    buffer_rows: usize,
}

/// The spill file of shard `shard` written by worker `set` with `prefix`
/// into `dir`.
pub fn shard_path(dir: &Path, prefix: &str, shard: u32, set: usize) -> PathBuf {
    dir.join(format!("{prefix}shard-{shard}-{set}.arrow"))
}

impl ShardWriters {
    /// Writers for `shards` shards into `dir` (which must exist), one set per
    /// thread of the current pool; each shard's rows are written in batches
    /// of `buffer_rows`.
    pub fn new(dir: &Path, prefix: &str, shards: u32, buffer_rows: usize) -> Self {
        let shards = shards.max(1);
        let sets = (0..rayon::current_num_threads().max(1))
            .map(|set| {
                (0..shards)
                    .map(|k| {
                        Mutex::new(ShardFile {
                            path: shard_path(dir, prefix, k, set),
                            schema: schema(k, shards),
                            writer: None,
                            buffer: Buffer::with_capacity(buffer_rows),
                            rows: 0,
                        })
                    })
                    .collect()
            })
            .collect();
        ShardWriters {
            sets,
            shards,
            buffer_rows: buffer_rows.max(1),
        }
    }

    /// Writes every row of `events` (string ids into `strings`) to its shard.
    pub fn write(&self, events: &EventColumns, strings: &Interner) -> Result<(), SpillError> {
        let n = self.shards;
        let mut by_shard: Vec<Vec<u32>> = vec![Vec::new(); n as usize];
        for r in 0..events.len() {
            by_shard[shard_of(events.event_id(r), n) as usize].push(r as u32);
        }
        let set = &self.sets[rayon::current_thread_index().unwrap_or(0) % self.sets.len()];
        for (k, rows) in by_shard.iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let mut shard = set[k].lock().unwrap_or_else(|e| e.into_inner());
            for &r in rows {
                shard.buffer.push(events, r as usize, strings);
                if shard.buffer.rows >= self.buffer_rows {
                    shard.flush()?;
                }
            }
            shard.rows += rows.len() as u64;
        }
        Ok(())
    }

    /// Writes what is buffered and closes every file.
    pub fn finish(self) -> Result<Vec<Written>, SpillError> {
        let mut written: Vec<Written> = (0..self.shards)
            .map(|shard| Written {
                shard,
                paths: Vec::new(),
                rows: 0,
                bytes: 0,
            })
            .collect();
        for set in self.sets {
            for (k, shard) in set.into_iter().enumerate() {
                let mut shard = shard.into_inner().unwrap_or_else(|e| e.into_inner());
                shard.flush()?;
                let w = &mut written[k];
                w.rows += shard.rows;
                if let Some(mut writer) = shard.writer.take() {
                    writer.finish().map_err(|e| io(&shard.path, e))?;
                    let file = writer.into_inner().map_err(|e| io(&shard.path, e))?;
                    let file = file.into_inner().map_err(|e| io(&shard.path, e.error()))?;
                    w.bytes += file.metadata().map_err(|e| io(&shard.path, e))?.len();
                    w.paths.push(shard.path.clone());
                }
            }
        }
        Ok(written)
    }
}

/// Reads the spill files of shard `shard` of `shards` back, in parallel, into
/// chunks and the interners their string ids point into (one per file), one
/// chunk per run of rows from the same input file.
pub fn read(
    paths: &[PathBuf],
    shard: u32,
    shards: u32,
) -> Result<(Vec<Chunk>, Vec<Interner>), SpillError> {
    use rayon::prelude::*;
    let files: Vec<(Vec<Chunk>, Interner)> = paths
        .par_iter()
        .enumerate()
        .map(|(i, path)| {
            let mut chunks = read_file(path, shard, shards)?;
            let strings = std::mem::take(&mut chunks.1);
            for chunk in &mut chunks.0 {
                chunk.interner = i;
            }
            Ok((chunks.0, strings))
        })
        .collect::<Result<_, SpillError>>()?;
    let mut chunks = Vec::new();
    let mut interners = Vec::new();
    for (mut c, strings) in files {
        chunks.append(&mut c);
        interners.push(strings);
    }
    for (seq, chunk) in chunks.iter_mut().enumerate() {
        chunk.seq = seq as u32;
    }
    Ok((chunks, interners))
}

fn read_file(path: &Path, shard: u32, shards: u32) -> Result<(Vec<Chunk>, Interner), SpillError> {
    let mut strings = Interner::new();
    let mut chunks = Vec::new();
    let file = File::open(path).map_err(|e| io(path, e))?;
    let reader = FileReader::try_new(BufReader::with_capacity(1 << 20, file), None)
        .map_err(|e| damaged(path, e))?;
    let expected = schema(shard, shards);
    if reader.schema().as_ref() != expected.as_ref() {
        return Err(damaged(
            path,
            format!(
                "expected shard {shard} of {shards} in shard format {SHARD_FORMAT_VERSION}, found schema metadata {:?}",
                reader.schema().metadata()
            ),
        ));
    }
    for batch in reader {
        let batch = batch.map_err(|e| damaged(path, e))?;
        append(&batch, &mut strings, &mut chunks).map_err(|e| damaged(path, e))?;
    }
    Ok((chunks, strings))
}

/// Appends a spill batch as chunks, splitting it where the source file changes.
fn append(
    batch: &RecordBatch,
    strings: &mut Interner,
    chunks: &mut Vec<Chunk>,
) -> Result<(), String> {
    let col = |i: usize| batch.column(i);
    let event_id = col(0).as_string::<i32>();
    let occurred_at = col(1).as_primitive::<Int64Type>();
    let ingested_at = col(2).as_primitive::<Int64Type>();
    let creator = col(3).as_string::<i32>();
    let template = col(4).as_string::<i32>();
    let brand = col(5).as_string::<i32>();
    let content_kind = col(6).as_primitive::<UInt8Type>();
    let action = col(7).as_primitive::<UInt8Type>();
    let user_tier = col(8).as_primitive::<UInt8Type>();
    let country = col(9).as_fixed_size_binary();
    let source = col(10).as_primitive::<UInt32Type>();
    let position = col(11).as_primitive::<UInt64Type>();
    for (i, array) in batch.columns().iter().enumerate() {
        if i != 5 && array.null_count() > 0 {
            return Err(format!(
                "column {} has nulls",
                batch.schema().field(i).name()
            ));
        }
    }
    let checked = |code: u8, limit: usize, name: &str| {
        if usize::from(code) < limit {
            Ok(code)
        } else {
            Err(format!("{name} code {code} is out of range"))
        }
    };
    let mut r = 0;
    while r < batch.num_rows() {
        let from = source.value(r);
        let mut events = EventColumns::new();
        events.source = from;
        while r < batch.num_rows() && source.value(r) == from {
            let id = event_id.value(r).as_bytes();
            events.event_id_bytes.extend_from_slice(id);
            events
                .event_id_offsets
                .push(events.event_id_bytes.len() as u32);
            events.occurred_at.push(occurred_at.value(r));
            events.ingested_at.push(ingested_at.value(r));
            events.creator.push(strings.intern(creator.value(r)));
            events.template.push(strings.intern(template.value(r)));
            events.brand.push(if brand.is_null(r) {
                NO_BRAND
            } else {
                strings.intern(brand.value(r))
            });
            events.content_kind.push(checked(
                content_kind.value(r),
                crate::event::CONTENT_KINDS.len(),
                "content_kind",
            )?);
            events.action.push(checked(
                action.value(r),
                crate::event::ACTIONS.len(),
                "action",
            )?);
            events.user_tier.push(checked(
                user_tier.value(r),
                crate::event::USER_TIERS.len(),
                "user_tier",
            )?);
            let c = country.value(r);
            events.country.push([c[0], c[1]]);
            events.position.push(position.value(r));
            r += 1;
        }
        chunks.push(Chunk {
            source: from,
            seq: chunks.len() as u32,
            records: events.len() as u64,
            interner: 0,
            events,
            quarantine: Vec::new(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Value;

    fn events(strings: &mut Interner, n: usize, source: u32) -> EventColumns {
        let mut events = EventColumns::new();
        events.source = source;
        for i in 0..n {
            let id = format!("e-{i}");
            let brand = if i % 3 == 0 {
                Value::Null
            } else {
                Value::Str("brand-x")
            };
            let fields = [
                Value::Str(&id),
                Value::Str("2026-05-01T10:00:00Z"),
                Value::Str("2026-05-01T10:00:01Z"),
                Value::Str(if i % 2 == 0 { "cr-a" } else { "cr-b" }),
                Value::Str("tpl-1"),
                brand,
                Value::Str("video"),
                Value::Str("use"),
                Value::Str("pro"),
                Value::Str("BR"),
            ];
            events.push(&fields, strings).expect("valid");
            events.position.push(i as u64 + 1);
        }
        events
    }

    #[test]
    fn records_come_back_in_their_shard_with_every_field() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut strings = Interner::new();
        let a = events(&mut strings, 500, 0);
        let b = events(&mut strings, 300, 1);
        let writers = ShardWriters::new(dir.path(), "t-", 3, 64);
        writers.write(&a, &strings).unwrap();
        writers.write(&b, &strings).unwrap();
        let written = writers.finish().unwrap();
        assert_eq!(written.iter().map(|w| w.rows).sum::<u64>(), 800);
        let mut seen = 0;
        for w in &written {
            let (chunks, interners) = read(&w.paths, w.shard, 3).unwrap();
            let rows: usize = chunks.iter().map(|c| c.events.len()).sum();
            assert_eq!(rows as u64, w.rows);
            for c in &chunks {
                let strings = &interners[c.interner];
                let original = if c.source == 0 { &a } else { &b };
                for r in 0..c.events.len() {
                    let id = c.events.event_id(r);
                    assert_eq!(shard_of(id, 3), w.shard);
                    let i = c.events.position[r] as usize - 1;
                    assert_eq!(id, original.event_id(i));
                    assert_eq!(
                        strings.get(c.events.creator[r]),
                        if i.is_multiple_of(2) { "cr-a" } else { "cr-b" }
                    );
                    assert_eq!(c.events.brand[r] == NO_BRAND, i.is_multiple_of(3));
                    assert_eq!(c.events.country[r], *b"BR");
                    assert_eq!(c.events.occurred_at[r], original.occurred_at[i]);
                    seen += 1;
                }
            }
        }
        assert_eq!(seen, 800);
    }

    #[test]
    fn a_damaged_or_foreign_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut strings = Interner::new();
        let writers = ShardWriters::new(dir.path(), "", 2, 1_000);
        writers
            .write(&events(&mut strings, 200, 0), &strings)
            .unwrap();
        let written = writers.finish().unwrap();
        let path = written[0].paths[0].clone();
        // Another shard's file.
        let err = read(std::slice::from_ref(&path), 1, 2)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("expected shard 1 of 2"), "{err}");
        // Cut short.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = read(std::slice::from_ref(&path), 0, 2)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains(&path.display().to_string()) && err.contains("damaged"),
            "{err}"
        );
    }
}
