//! Shard spill files: valid records written by shard, read back one shard at a
//! time.
//!
//! Each writer thread of a run (or of a map task) writes, for every shard `K`,
//! one spill file `shard-K-T.arrow` (`T`: the thread), and one string table
//! `strings-T.arrow` that its spill files' string ids point into. Both are Arrow
//! IPC files with LZ4-compressed buffers. A spill file has one row per valid
//! record:
//!
//! | column | type | |
//! | --- | --- | --- |
//! | `event_id` | utf8 | |
//! | `occurred_at`, `ingested_at` | int64 | UTC epoch milliseconds |
//! | `creator_id`, `template_id` | uint32 | row of the string table |
//! | `brand_id` | uint32 | row of the string table, 4294967295 for null |
//! | `content_kind`, `action`, `user_tier` | uint8 | codes of the event contract's enumerations (`event.rs`) |
//! | `country` | fixed-size binary (2) | |
//! | `source` | uint32 | index of the input file in the run's sorted input list |
//! | `position` | uint64 | line (JSON) or row (Parquet) in that file |
//!
//! A string table has one utf8 column, `string`, each distinct string once.
//! Schema metadata holds `tally.shard_format` (the
//! [`SHARD_FORMAT_VERSION`]) and, in spill files,
//! `tally.shard` and `tally.shards`. Rows within a file come in no particular
//! order: dedup's survivor rule is a total order, so nothing downstream depends
//! on it. Strings travel as ids so that neither writing nor reading a record
//! hashes its strings: each is looked up once per writer.

use super::{SHARD_FORMAT_VERSION, shard_of};
use crate::ingest::Chunk;
use crate::intern::Interner;
use crate::validate::{EventColumns, NO_BRAND};
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{
    DataType, Field, Int64Type, Schema, SchemaRef, UInt8Type, UInt32Type, UInt64Type,
};
use arrow::ipc::CompressionType;
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::{FileWriter, IpcWriteOptions};
use hashbrown::HashMap;
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

fn format_metadata() -> (String, String) {
    (
        "tally.shard_format".to_string(),
        SHARD_FORMAT_VERSION.to_string(),
    )
}

/// The spill files' schema, with the shard's identity in its metadata.
pub fn schema(shard: u32, shards: u32) -> SchemaRef {
    let fields = vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("occurred_at", DataType::Int64, false),
        Field::new("ingested_at", DataType::Int64, false),
        Field::new("creator_id", DataType::UInt32, false),
        Field::new("template_id", DataType::UInt32, false),
        Field::new("brand_id", DataType::UInt32, false),
        Field::new("content_kind", DataType::UInt8, false),
        Field::new("action", DataType::UInt8, false),
        Field::new("user_tier", DataType::UInt8, false),
        Field::new("country", DataType::FixedSizeBinary(2), false),
        Field::new("source", DataType::UInt32, false),
        Field::new("position", DataType::UInt64, false),
    ];
    let metadata = std::collections::HashMap::from([
        format_metadata(),
        ("tally.shard".to_string(), shard.to_string()),
        ("tally.shards".to_string(), shards.to_string()),
    ]);
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

/// The string tables' schema.
pub fn strings_schema() -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        vec![Field::new("string", DataType::Utf8, false)],
        std::collections::HashMap::from([format_metadata()]),
    ))
}

fn ipc_writer(path: &Path, schema: &SchemaRef) -> Result<FileWriter<BufWriter<File>>, SpillError> {
    let file = File::create(path).map_err(|e| io(path, e))?;
    let options = IpcWriteOptions::default()
        .try_with_compression(Some(CompressionType::LZ4_FRAME))
        .map_err(|e| io(path, e))?;
    FileWriter::try_new_with_options(BufWriter::with_capacity(1 << 20, file), schema, options)
        .map_err(|e| io(path, e))
}

/// Finishes an IPC file; returns its size.
fn close(path: &Path, mut writer: FileWriter<BufWriter<File>>) -> Result<u64, SpillError> {
    writer.finish().map_err(|e| io(path, e))?;
    let file = writer.into_inner().map_err(|e| io(path, e))?;
    let file = file.into_inner().map_err(|e| io(path, e.error()))?;
    Ok(file.metadata().map_err(|e| io(path, e))?.len())
}

/// The most rows a spill batch holds.
const MAX_BATCH_ROWS: usize = 1 << 16;

/// Rows of one shard gathered until they are written as one batch: plain
/// vectors, each sized for a whole batch when its first row comes, so that
/// filling it never grows it, and handed to the batch as they are.
#[derive(Default)]
struct Buffer {
    capacity: usize,
    event_id_offsets: Vec<i32>,
    event_id_bytes: Vec<u8>,
    occurred_at: Vec<i64>,
    ingested_at: Vec<i64>,
    creator: Vec<u32>,
    template: Vec<u32>,
    brand: Vec<u32>,
    content_kind: Vec<u8>,
    action: Vec<u8>,
    user_tier: Vec<u8>,
    country: Vec<u8>,
    source: Vec<u32>,
    position: Vec<u64>,
}

impl Buffer {
    /// An empty buffer that takes memory for `rows` rows on its first row.
    fn new(rows: usize) -> Self {
        Buffer {
            capacity: rows,
            ..Buffer::default()
        }
    }

    /// A buffer sized for `rows` rows.
    fn with_capacity(rows: usize) -> Self {
        let mut event_id_offsets = Vec::with_capacity(rows + 1);
        event_id_offsets.push(0);
        Buffer {
            capacity: rows,
            event_id_offsets,
            event_id_bytes: Vec::with_capacity(rows * 40),
            occurred_at: Vec::with_capacity(rows),
            ingested_at: Vec::with_capacity(rows),
            creator: Vec::with_capacity(rows),
            template: Vec::with_capacity(rows),
            brand: Vec::with_capacity(rows),
            content_kind: Vec::with_capacity(rows),
            action: Vec::with_capacity(rows),
            user_tier: Vec::with_capacity(rows),
            country: Vec::with_capacity(rows * 2),
            source: Vec::with_capacity(rows),
            position: Vec::with_capacity(rows),
        }
    }

    fn rows(&self) -> usize {
        self.occurred_at.len()
    }

    /// Appends row `r` of `events`, its strings as ids `[creator, template,
    /// brand]` of the writer's table.
    fn push(&mut self, events: &EventColumns, r: usize, ids: [u32; 3]) {
        if self.event_id_offsets.is_empty() {
            // The first row since the buffer was made or written: the memory
            // of the batch written last is free again by now.
            *self = Buffer::with_capacity(self.capacity);
        }
        self.event_id_bytes.extend_from_slice(events.event_id(r));
        // Event ids are at most 128 bytes, and a batch holds at most
        // `MAX_BATCH_ROWS` rows: the offsets stay far below `i32::MAX`.
        self.event_id_offsets.push(self.event_id_bytes.len() as i32);
        self.occurred_at.push(events.occurred_at[r]);
        self.ingested_at.push(events.ingested_at[r]);
        self.creator.push(ids[0]);
        self.template.push(ids[1]);
        self.brand.push(ids[2]);
        self.content_kind.push(events.content_kind[r]);
        self.action.push(events.action[r]);
        self.user_tier.push(events.user_tier[r]);
        self.country.extend_from_slice(&events.country[r]);
        self.source.push(events.source);
        self.position
            .push(events.position.get(r).copied().unwrap_or(0));
    }

    /// The buffered rows as a batch; the buffer is then empty.
    fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
        use arrow::array::{FixedSizeBinaryArray, PrimitiveArray};
        use arrow::buffer::{Buffer as Bytes, OffsetBuffer, ScalarBuffer};
        let Buffer {
            capacity: _,
            event_id_offsets,
            event_id_bytes,
            occurred_at,
            ingested_at,
            creator,
            template,
            brand,
            content_kind,
            action,
            user_tier,
            country,
            source,
            position,
        } = std::mem::replace(self, Buffer::new(self.capacity));
        fn array<T: arrow::datatypes::ArrowPrimitiveType>(values: Vec<T::Native>) -> ArrayRef {
            Arc::new(PrimitiveArray::<T>::new(ScalarBuffer::from(values), None))
        }
        // Event ids were checked as UTF-8 when they were read; `try_new`
        // checks the batch's bytes again, in one pass.
        let event_id = StringArray::try_new(
            OffsetBuffer::new(ScalarBuffer::from(event_id_offsets)),
            Bytes::from_vec(event_id_bytes),
            None,
        )?;
        let country = FixedSizeBinaryArray::try_new(2, Bytes::from_vec(country), None)?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(event_id),
            array::<Int64Type>(occurred_at),
            array::<Int64Type>(ingested_at),
            array::<UInt32Type>(creator),
            array::<UInt32Type>(template),
            array::<UInt32Type>(brand),
            array::<UInt8Type>(content_kind),
            array::<UInt8Type>(action),
            array::<UInt8Type>(user_tier),
            Arc::new(country),
            array::<UInt32Type>(source),
            array::<UInt64Type>(position),
        ];
        RecordBatch::try_new(schema.clone(), columns)
    }
}

/// One shard's file, opened on its first batch.
struct ShardFile {
    path: PathBuf,
    schema: SchemaRef,
    writer: Option<FileWriter<BufWriter<File>>>,
    buffer: Buffer,
    rows: u64,
}

impl ShardFile {
    fn flush(&mut self) -> Result<(), SpillError> {
        if self.buffer.rows() == 0 {
            return Ok(());
        }
        let batch = self
            .buffer
            .finish(&self.schema)
            .map_err(|e| io(&self.path, e))?;
        if self.writer.is_none() {
            self.writer = Some(ipc_writer(&self.path, &self.schema)?);
        }
        let writer = self.writer.as_mut().expect("opened above");
        writer.write(&batch).map_err(|e| io(&self.path, e))
    }
}

/// A spill file and the string table its ids point into.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SpillFile {
    pub path: PathBuf,
    pub strings: PathBuf,
}

/// What was written for one shard.
#[derive(Debug, Clone)]
pub struct Written {
    pub shard: u32,
    /// Its files (none when the shard received no row).
    pub files: Vec<SpillFile>,
    pub rows: u64,
}

/// What one writer thread writes: a file per shard and its string table.
struct Set {
    files: Vec<ShardFile>,
    strings_path: PathBuf,
    /// Every string its files refer to; ids are rows of the table.
    strings: Interner,
    /// For each interner the records come with (by its index), the id in
    /// `strings` of each of its ids, `u32::MAX` where not yet looked up.
    ids: HashMap<usize, Vec<u32>>,
}

/// Maps string ids of one interner to ids of a writer's table.
struct Ids<'a> {
    /// The interner the records' ids point into.
    from: &'a Interner,
    /// For each of its ids, the id in `to`, `u32::MAX` where not yet looked up.
    map: &'a mut Vec<u32>,
    to: &'a mut Interner,
}

impl Ids<'_> {
    /// The table id of string `id` of the records' interner.
    fn get(&mut self, id: u32) -> u32 {
        if id == NO_BRAND {
            return NO_BRAND;
        }
        let slot = &mut self.map[id as usize];
        if *slot == u32::MAX {
            *slot = self.to.intern(self.from.get(id));
        }
        *slot
    }
}

/// The spill files of one writer (a run, or one map task), one set per
/// worker thread, so that threads never wait for each other and a shard's
/// files can be read back in parallel.
pub struct ShardWriters {
    sets: Vec<Mutex<Set>>,
    shards: u32,
    buffer_rows: usize,
}

/// The spill file of shard `shard` written by worker `set` with `prefix`
/// into `dir`.
pub fn shard_path(dir: &Path, prefix: &str, shard: u32, set: usize) -> PathBuf {
    dir.join(format!("{prefix}shard-{shard}-{set}.arrow"))
}

/// The string table of worker `set` with `prefix` in `dir`.
pub fn strings_path(dir: &Path, prefix: &str, set: usize) -> PathBuf {
    dir.join(format!("{prefix}strings-{set}.arrow"))
}

impl ShardWriters {
    /// Writers for `shards` shards into `dir` (which must exist), one set per
    /// thread of the current pool; each shard's rows are written in batches
    /// of `buffer_rows` (1 to 65,536).
    pub fn new(dir: &Path, prefix: &str, shards: u32, buffer_rows: usize) -> Self {
        let shards = shards.max(1);
        let buffer_rows = buffer_rows.clamp(1, MAX_BATCH_ROWS);
        let sets = (0..rayon::current_num_threads().max(1))
            .map(|set| {
                Mutex::new(Set {
                    files: (0..shards)
                        .map(|k| ShardFile {
                            path: shard_path(dir, prefix, k, set),
                            schema: schema(k, shards),
                            writer: None,
                            buffer: Buffer::new(buffer_rows),
                            rows: 0,
                        })
                        .collect(),
                    strings_path: strings_path(dir, prefix, set),
                    strings: Interner::new(),
                    ids: HashMap::new(),
                })
            })
            .collect();
        ShardWriters {
            sets,
            shards,
            buffer_rows,
        }
    }

    /// Writes every row of `events` (string ids into `strings`, the interner
    /// numbered `interner`) to its shard.
    pub fn write(
        &self,
        events: &EventColumns,
        strings: &Interner,
        interner: usize,
    ) -> Result<(), SpillError> {
        let set = &self.sets[rayon::current_thread_index().unwrap_or(0) % self.sets.len()];
        let mut set = set.lock().unwrap_or_else(|e| e.into_inner());
        let Set {
            files,
            strings: table,
            ids,
            ..
        } = &mut *set;
        let map = ids.entry(interner).or_default();
        if map.len() < strings.len() {
            map.resize(strings.len(), u32::MAX);
        }
        let mut to_table = Ids {
            from: strings,
            map,
            to: table,
        };
        for r in 0..events.len() {
            let ids = [
                to_table.get(events.creator[r]),
                to_table.get(events.template[r]),
                to_table.get(events.brand[r]),
            ];
            let file = &mut files[shard_of(events.event_id(r), self.shards) as usize];
            file.buffer.push(events, r, ids);
            file.rows += 1;
            if file.buffer.rows() >= self.buffer_rows {
                file.flush()?;
            }
        }
        Ok(())
    }

    /// Writes what is buffered and closes every file.
    pub fn finish(self) -> Result<Vec<Written>, SpillError> {
        let mut written: Vec<Written> = (0..self.shards)
            .map(|shard| Written {
                shard,
                files: Vec::new(),
                rows: 0,
            })
            .collect();
        for set in self.sets {
            let mut set = set.into_inner().unwrap_or_else(|e| e.into_inner());
            let mut used = false;
            for (k, file) in set.files.iter_mut().enumerate() {
                file.flush()?;
                written[k].rows += file.rows;
                if let Some(writer) = file.writer.take() {
                    close(&file.path, writer)?;
                    used = true;
                    written[k].files.push(SpillFile {
                        path: file.path.clone(),
                        strings: set.strings_path.clone(),
                    });
                }
            }
            if used {
                let path = &set.strings_path;
                let table = StringArray::from_iter_values(set.strings.iter());
                let batch = RecordBatch::try_new(strings_schema(), vec![Arc::new(table)])
                    .map_err(|e| io(path, e))?;
                let mut writer = ipc_writer(path, &strings_schema())?;
                writer.write(&batch).map_err(|e| io(path, e))?;
                close(path, writer)?;
            }
        }
        Ok(written)
    }
}

/// Reads the spill files of shard `shard` of `shards` back, in parallel, into
/// chunks and the interners their string ids point into (one per file), one
/// chunk per run of rows from the same input file.
pub fn read(
    files: &[SpillFile],
    shard: u32,
    shards: u32,
) -> Result<(Vec<Chunk>, Vec<Interner>), SpillError> {
    use rayon::prelude::*;
    let read: Vec<(Vec<Chunk>, Interner)> = files
        .par_iter()
        .enumerate()
        .map(|(i, file)| {
            let (mut chunks, strings) = read_file(file, shard, shards)?;
            for chunk in &mut chunks {
                chunk.interner = i;
            }
            Ok((chunks, strings))
        })
        .collect::<Result<_, SpillError>>()?;
    let mut chunks = Vec::new();
    let mut interners = Vec::new();
    for (mut c, strings) in read {
        chunks.append(&mut c);
        interners.push(strings);
    }
    for (seq, chunk) in chunks.iter_mut().enumerate() {
        chunk.seq = seq as u32;
    }
    Ok((chunks, interners))
}

fn open(
    path: &Path,
    expected: &SchemaRef,
    what: &str,
) -> Result<FileReader<BufReader<File>>, SpillError> {
    let file = File::open(path).map_err(|e| io(path, e))?;
    let reader = FileReader::try_new(BufReader::with_capacity(1 << 20, file), None)
        .map_err(|e| damaged(path, e))?;
    if reader.schema().as_ref() != expected.as_ref() {
        return Err(damaged(
            path,
            format!(
                "expected {what} in shard format {SHARD_FORMAT_VERSION}, found schema metadata {:?}",
                reader.schema().metadata()
            ),
        ));
    }
    Ok(reader)
}

/// A string table.
fn read_strings(path: &Path) -> Result<Interner, SpillError> {
    let mut strings = Interner::new();
    for batch in open(path, &strings_schema(), "a string table")? {
        let batch = batch.map_err(|e| damaged(path, e))?;
        let column = batch.column(0).as_string::<i32>();
        if column.null_count() > 0 {
            return Err(damaged(path, "the string table has nulls"));
        }
        for s in column.iter().flatten() {
            let before = strings.len();
            if strings.intern(s) as usize != before {
                return Err(damaged(path, format!("{s:?} is in the string table twice")));
            }
        }
    }
    Ok(strings)
}

fn read_file(
    file: &SpillFile,
    shard: u32,
    shards: u32,
) -> Result<(Vec<Chunk>, Interner), SpillError> {
    let strings = read_strings(&file.strings)?;
    let mut chunks = Vec::new();
    let path = &file.path;
    let what = format!("shard {shard} of {shards}");
    for batch in open(path, &schema(shard, shards), &what)? {
        let batch = batch.map_err(|e| damaged(path, e))?;
        append(&batch, strings.len(), &mut chunks).map_err(|e| damaged(path, e))?;
    }
    Ok((chunks, strings))
}

/// Appends a spill batch as chunks, splitting it where the source file changes.
/// String ids must be below `strings` (or be a null brand).
fn append(batch: &RecordBatch, strings: usize, chunks: &mut Vec<Chunk>) -> Result<(), String> {
    let col = |i: usize| batch.column(i);
    for (i, array) in batch.columns().iter().enumerate() {
        if array.null_count() > 0 {
            return Err(format!(
                "column {} has nulls",
                batch.schema().field(i).name()
            ));
        }
    }
    let event_id = col(0).as_string::<i32>();
    let occurred_at = col(1).as_primitive::<Int64Type>().values();
    let ingested_at = col(2).as_primitive::<Int64Type>().values();
    let creator = col(3).as_primitive::<UInt32Type>().values();
    let template = col(4).as_primitive::<UInt32Type>().values();
    let brand = col(5).as_primitive::<UInt32Type>().values();
    let content_kind = col(6).as_primitive::<UInt8Type>().values();
    let action = col(7).as_primitive::<UInt8Type>().values();
    let user_tier = col(8).as_primitive::<UInt8Type>().values();
    let country = col(9).as_fixed_size_binary();
    let source = col(10).as_primitive::<UInt32Type>().values();
    let position = col(11).as_primitive::<UInt64Type>().values();
    let in_table = |id: u32| (id as usize) < strings;
    if !creator
        .iter()
        .chain(template.iter())
        .all(|&id| in_table(id))
        || !brand.iter().all(|&id| id == NO_BRAND || in_table(id))
    {
        return Err(format!(
            "a string id is outside the table of {strings} strings"
        ));
    }
    let codes = [
        (
            content_kind,
            crate::event::CONTENT_KINDS.len(),
            "content_kind",
        ),
        (action, crate::event::ACTIONS.len(), "action"),
        (user_tier, crate::event::USER_TIERS.len(), "user_tier"),
    ];
    for (values, limit, name) in codes {
        if let Some(bad) = values.iter().find(|&&c| usize::from(c) >= limit) {
            return Err(format!("{name} code {bad} is out of range"));
        }
    }
    let mut start = 0;
    while start < batch.num_rows() {
        let from = source[start];
        let end = start + source[start..].iter().take_while(|&&s| s == from).count();
        let offsets = &event_id.value_offsets()[start..=end];
        let base = offsets[0] as usize;
        let bytes = &event_id.value_data()[base..offsets[end - start] as usize];
        let events = EventColumns {
            event_id_offsets: offsets
                .iter()
                .map(|&o| (o as usize - base) as u32)
                .collect(),
            event_id_bytes: bytes.to_vec(),
            occurred_at: occurred_at[start..end].to_vec(),
            ingested_at: ingested_at[start..end].to_vec(),
            creator: creator[start..end].to_vec(),
            template: template[start..end].to_vec(),
            brand: brand[start..end].to_vec(),
            content_kind: content_kind[start..end].to_vec(),
            action: action[start..end].to_vec(),
            user_tier: user_tier[start..end].to_vec(),
            country: (start..end)
                .map(|r| {
                    let c = country.value(r);
                    [c[0], c[1]]
                })
                .collect(),
            position: position[start..end].to_vec(),
            source: from,
        };
        chunks.push(Chunk {
            source: from,
            seq: chunks.len() as u32,
            records: events.len() as u64,
            interner: 0,
            events,
            quarantine: Vec::new(),
        });
        start = end;
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
        writers.write(&a, &strings, 0).unwrap();
        writers.write(&b, &strings, 0).unwrap();
        let written = writers.finish().unwrap();
        assert_eq!(written.iter().map(|w| w.rows).sum::<u64>(), 800);
        let mut seen = 0;
        for w in &written {
            let (chunks, interners) = read(&w.files, w.shard, 3).unwrap();
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
            .write(&events(&mut strings, 200, 0), &strings, 0)
            .unwrap();
        let written = writers.finish().unwrap();
        let file = written[0].files[0].clone();
        let path = file.path.clone();
        // Another shard's file.
        let err = read(std::slice::from_ref(&file), 1, 2)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("expected shard 1 of 2"), "{err}");
        // Cut short.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = read(std::slice::from_ref(&file), 0, 2)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains(&path.display().to_string()) && err.contains("damaged"),
            "{err}"
        );
    }
}
