//! Valid records on their way from a validate task to the reduce task of
//! their shard: Arrow IPC stream bytes (LZ4-compressed), one blob per shard,
//! strings as strings so that a blob needs nothing else to be read.
//!
//! | column | type | |
//! | --- | --- | --- |
//! | `event_id`, `creator_id`, `template_id` | utf8 | |
//! | `brand_id` | utf8, nullable | |
//! | `occurred_at`, `ingested_at` | int64 | UTC epoch milliseconds |
//! | `content_kind`, `action`, `user_tier` | uint8 | codes of the contract's enumerations |
//! | `country` | fixed-size binary (2) | |
//! | `source` | uint32 | index of the input file in the plan |
//! | `position` | uint64 | line (JSON; 0 where unknown) or row (Parquet) in that file |
//!
//! The schema's metadata holds the shard format, the shard and the shard
//! count; a blob read for another shard, or holding a record whose `event_id`
//! is not of its shard, is refused.

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeBinaryBuilder, Int64Builder, RecordBatch, StringBuilder,
    UInt8Builder, UInt32Builder, UInt64Builder,
};
use arrow::datatypes::{
    DataType, Field, Int64Type, Schema, SchemaRef, UInt8Type, UInt32Type, UInt64Type,
};
use arrow::ipc::CompressionType;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use std::sync::Arc;
use tally::ingest::Chunk;
use tally::intern::Interner;
use tally::shard::{SHARD_FORMAT_VERSION, shard_of};
use tally::validate::{EventColumns, NO_BRAND};

/// The schema of shard `shard` of `shards`.
pub fn schema(shard: u32, shards: u32) -> SchemaRef {
    let fields = vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("occurred_at", DataType::Int64, false),
        Field::new("ingested_at", DataType::Int64, false),
        Field::new("creator_id", DataType::Utf8, false),
        Field::new("template_id", DataType::Utf8, false),
        Field::new("brand_id", DataType::Utf8, true),
        Field::new("content_kind", DataType::UInt8, false),
        Field::new("action", DataType::UInt8, false),
        Field::new("user_tier", DataType::UInt8, false),
        Field::new("country", DataType::FixedSizeBinary(2), false),
        Field::new("source", DataType::UInt32, false),
        Field::new("position", DataType::UInt64, false),
    ];
    let metadata = std::collections::HashMap::from([
        (
            "tally.shard_format".to_string(),
            SHARD_FORMAT_VERSION.to_string(),
        ),
        ("tally.shard".to_string(), shard.to_string()),
        ("tally.shards".to_string(), shards.to_string()),
    ]);
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

/// The valid records of one shard gathered by a validate task: string ids
/// into the task's interner, and each record's input file.
#[derive(Default)]
pub struct ShardBuffer {
    events: EventColumns,
    sources: Vec<u32>,
}

impl ShardBuffer {
    pub fn new() -> Self {
        ShardBuffer {
            events: EventColumns::new(),
            sources: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Appends row `r` of `from`, read from the input file `source`.
    pub fn push(&mut self, from: &EventColumns, r: usize, source: u32) {
        let to = &mut self.events;
        to.event_id_bytes.extend_from_slice(from.event_id(r));
        to.event_id_offsets.push(to.event_id_bytes.len() as u32);
        to.occurred_at.push(from.occurred_at[r]);
        to.ingested_at.push(from.ingested_at[r]);
        to.creator.push(from.creator[r]);
        to.template.push(from.template[r]);
        to.brand.push(from.brand[r]);
        to.content_kind.push(from.content_kind[r]);
        to.action.push(from.action[r]);
        to.user_tier.push(from.user_tier[r]);
        to.country.push(from.country[r]);
        to.position.push(from.position.get(r).copied().unwrap_or(0));
        self.sources.push(source);
    }

    /// Encodes the buffer as a blob of shard `shard` of `shards` (its string
    /// ids resolved in `strings`) and empties it.
    pub fn take(
        &mut self,
        strings: &Interner,
        shard: u32,
        shards: u32,
    ) -> Result<Vec<u8>, arrow::error::ArrowError> {
        let e = std::mem::replace(&mut self.events, EventColumns::new());
        let sources = std::mem::take(&mut self.sources);
        let n = sources.len();
        let mut event_id = StringBuilder::with_capacity(n, e.event_id_bytes.len());
        for r in 0..n {
            // Event ids were checked as UTF-8 when they were validated.
            event_id.append_value(String::from_utf8_lossy(e.event_id(r)));
        }
        let strings_of = |ids: &[u32]| {
            let mut b = StringBuilder::with_capacity(n, n * 16);
            for &id in ids {
                if id == NO_BRAND {
                    b.append_null();
                } else {
                    b.append_value(strings.get(id));
                }
            }
            b.finish()
        };
        let mut country = FixedSizeBinaryBuilder::with_capacity(n, 2);
        for c in &e.country {
            country.append_value(c)?;
        }
        let u8s = |v: &[u8]| {
            let mut b = UInt8Builder::with_capacity(n);
            b.append_slice(v);
            b.finish()
        };
        let i64s = |v: &[i64]| {
            let mut b = Int64Builder::with_capacity(n);
            b.append_slice(v);
            b.finish()
        };
        let mut source = UInt32Builder::with_capacity(n);
        source.append_slice(&sources);
        let mut position = UInt64Builder::with_capacity(n);
        position.append_slice(&e.position);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(event_id.finish()),
            Arc::new(i64s(&e.occurred_at)),
            Arc::new(i64s(&e.ingested_at)),
            Arc::new(strings_of(&e.creator)),
            Arc::new(strings_of(&e.template)),
            Arc::new(strings_of(&e.brand)),
            Arc::new(u8s(&e.content_kind)),
            Arc::new(u8s(&e.action)),
            Arc::new(u8s(&e.user_tier)),
            Arc::new(country.finish()),
            Arc::new(source.finish()),
            Arc::new(position.finish()),
        ];
        let schema = schema(shard, shards);
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        let options =
            IpcWriteOptions::default().try_with_compression(Some(CompressionType::LZ4_FRAME))?;
        let mut writer = StreamWriter::try_new_with_options(Vec::new(), &schema, options)?;
        writer.write(&batch)?;
        writer.finish()?;
        writer.into_inner()
    }
}

/// Reads a blob of shard `shard` of `shards` into chunks, one per run of
/// records from the same input file (below `sources`), with an interner of
/// their own appended to `interners`. Returns the records read.
pub fn read(
    blob: &[u8],
    shard: u32,
    shards: u32,
    sources: usize,
    chunks: &mut Vec<Chunk>,
    interners: &mut Vec<Interner>,
) -> Result<u64, String> {
    let reader = StreamReader::try_new(std::io::Cursor::new(blob), None)
        .map_err(|e| format!("not a record blob: {e}"))?;
    let expected = schema(shard, shards);
    if reader.schema() != expected {
        return Err(format!(
            "not a record blob of shard {shard} of {shards} in shard format {SHARD_FORMAT_VERSION} (schema metadata {:?})",
            reader.schema().metadata()
        ));
    }
    let interner = interners.len();
    let mut strings = Interner::new();
    let mut rows = 0;
    for batch in reader {
        let batch = batch.map_err(|e| format!("a damaged record blob: {e}"))?;
        rows += append(
            &batch,
            shard,
            shards,
            sources,
            interner,
            &mut strings,
            chunks,
        )?;
    }
    interners.push(strings);
    Ok(rows)
}

fn append(
    batch: &RecordBatch,
    shard: u32,
    shards: u32,
    sources: usize,
    interner: usize,
    strings: &mut Interner,
    chunks: &mut Vec<Chunk>,
) -> Result<u64, String> {
    for (i, array) in batch.columns().iter().enumerate() {
        if i != 5 && array.null_count() > 0 {
            return Err(format!(
                "column {} has nulls",
                batch.schema().field(i).name()
            ));
        }
    }
    let col = |i: usize| batch.column(i);
    let event_id = col(0).as_string::<i32>();
    let occurred_at = col(1).as_primitive::<Int64Type>().values();
    let ingested_at = col(2).as_primitive::<Int64Type>().values();
    let creator = col(3).as_string::<i32>();
    let template = col(4).as_string::<i32>();
    let brand = col(5).as_string::<i32>();
    let content_kind = col(6).as_primitive::<UInt8Type>().values();
    let action = col(7).as_primitive::<UInt8Type>().values();
    let user_tier = col(8).as_primitive::<UInt8Type>().values();
    let country = col(9).as_fixed_size_binary();
    let source = col(10).as_primitive::<UInt32Type>().values();
    let position = col(11).as_primitive::<UInt64Type>().values();
    let codes = [
        (
            content_kind,
            tally::event::CONTENT_KINDS.len(),
            "content_kind",
        ),
        (action, tally::event::ACTIONS.len(), "action"),
        (user_tier, tally::event::USER_TIERS.len(), "user_tier"),
    ];
    for (values, limit, name) in codes {
        if let Some(bad) = values.iter().find(|&&c| usize::from(c) >= limit) {
            return Err(format!("{name} code {bad} is out of range"));
        }
    }
    if let Some(bad) = source.iter().find(|&&s| s as usize >= sources) {
        return Err(format!(
            "input file {bad} is not in the plan ({sources} files)"
        ));
    }
    let mut start = 0;
    while start < batch.num_rows() {
        let from = source[start];
        let end = start + source[start..].iter().take_while(|&&s| s == from).count();
        let mut events = EventColumns::new();
        events.source = from;
        for r in start..end {
            let id = event_id.value(r);
            if shard_of(id.as_bytes(), shards) != shard {
                return Err(format!(
                    "event {id:?} belongs to shard {} of {shards}, not {shard}",
                    shard_of(id.as_bytes(), shards)
                ));
            }
            events.event_id_bytes.extend_from_slice(id.as_bytes());
            events
                .event_id_offsets
                .push(events.event_id_bytes.len() as u32);
            events.occurred_at.push(occurred_at[r]);
            events.ingested_at.push(ingested_at[r]);
            events.creator.push(strings.intern(creator.value(r)));
            events.template.push(strings.intern(template.value(r)));
            events.brand.push(if brand.is_null(r) {
                NO_BRAND
            } else {
                strings.intern(brand.value(r))
            });
            events.content_kind.push(content_kind[r]);
            events.action.push(action[r]);
            events.user_tier.push(user_tier[r]);
            let c = country.value(r);
            events.country.push([c[0], c[1]]);
            events.position.push(position[r]);
        }
        chunks.push(Chunk {
            source: from,
            seq: chunks.len() as u32,
            records: events.len() as u64,
            interner,
            events,
            quarantine: Vec::new(),
        });
        start = end;
    }
    Ok(batch.num_rows() as u64)
}
