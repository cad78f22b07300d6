//! The survivor index: every valid record of a run's inputs, keyed by a hash
//! of its `event_id`, with what dedup's survivor rule compares and the input
//! file it came from. Every commit writes it under `_tally/survivors/`, so
//! that `tally status` ([`crate::status`]) can tell exactly which days a new,
//! changed or removed input file changes without reading the input files the
//! output already recorded.
//!
//! This module owns the index's format: it builds the index from a table of
//! records, writes it, installs it in a commit and reads it back. Deciding
//! what is stale is not its business.
//!
//! # Format (index format version 1)
//!
//! `_tally/survivors/manifest.json` names the run's input files (`inputs`:
//! absolute path, blake3, size and modification time, in the run's input
//! order) and the index files `shard-J.arrow`, `J` in `0..M`, with their rows,
//! size and blake3. `M` is the smallest power of two that keeps a file at
//! about [`ROWS_PER_FILE`] rows; file `J` holds the events whose
//! `shard(event_id, M)` (the [shard function](crate::shard)) is `J`. Each file
//! is Arrow IPC, uncompressed, in batches of [`BATCH_ROWS`] rows:
//!
//! | column | type | |
//! | --- | --- | --- |
//! | `id_hash` | uint64 | `xxh3_64(event_id, 0x54414C4C59534844)`: the shard hash |
//! | `id_hash_low` | uint64 | `xxh3_64(event_id, 0x54414C4C59494458)` (`TALLYIDX`) |
//! | `occurred_at`, `ingested_at` | int64 | UTC epoch milliseconds |
//! | `fields` | uint64 | [`fields_hash`] of the record's other fields |
//! | `source` | uint32 | the record's input file: an index into `inputs` |
//!
//! Rows are sorted by the 128-bit key `(id_hash, id_hash_low)`; the records
//! of one `event_id` are adjacent and in the survivor rule's order (then by
//! input file), so the first is the one dedup kept. Two distinct ids share a
//! key with odds of about `n² / 2¹²⁹` for `n` ids (about 1 in 10²¹ for a
//! billion); two records of one event that tie on both timestamps are told
//! apart by `fields`, a 64-bit hash.

use crate::commit::{self, CommitError};
use crate::dedup::Table;
use crate::event::{ACTIONS, CONTENT_KINDS, USER_TIERS, day_of};
use crate::intern::Interner;
use crate::report::InputSummary;
use crate::shard::{SHARD_FORMAT_VERSION, SHARD_SEED};
use crate::validate::{EventColumns, NO_BRAND};
use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, UInt32Type, UInt64Type};
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::{FileWriter, IpcWriteOptions};
use rayon::prelude::*;
use std::cmp::Ordering;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The version of the index's files and manifest.
pub const INDEX_FORMAT_VERSION: u32 = 1;

/// The seed of the low half of an event's key: the bytes `TALLYIDX`.
pub const ID_LOW_SEED: u64 = u64::from_be_bytes(*b"TALLYIDX");

/// The seed of [`fields_hash`]: the bytes `TALLYFLD`.
pub const FIELDS_SEED: u64 = u64::from_be_bytes(*b"TALLYFLD");

/// About how many rows one index file holds at most.
pub const ROWS_PER_FILE: u64 = 1 << 22;

/// Rows per batch of an index file.
pub const BATCH_ROWS: usize = 1 << 16;

/// About how many records are sorted and written at once while the index is
/// built: a bucket of the key space (one is sorted while the one before it
/// is written).
const BUCKET_ROWS: u64 = 1 << 19;

/// Parts a bucket is cut into to be sorted.
const FANOUT: usize = 256;

/// What can go wrong with the index.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// A file of the index cannot be written or read.
    #[error("survivor index {path}: {message}")]
    Io { path: PathBuf, message: String },
    /// A file of the index is not what this Tally writes.
    #[error("survivor index {path} is damaged: {message}")]
    Damaged { path: PathBuf, message: String },
    /// The records handed to the index are not in key order: a bug (a
    /// record outside its shard, say), never bad input.
    #[error("survivor index: {0}")]
    Order(String),
}

fn io(path: &Path, e: impl std::fmt::Display) -> IndexError {
    IndexError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn damaged(path: &Path, e: impl std::fmt::Display) -> IndexError {
    IndexError::Damaged {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// `out/_tally/survivors`.
pub fn dir(out: &Path) -> PathBuf {
    crate::layout::meta_dir(out).join("survivors")
}

/// `out/_tally/survivors/manifest.json`.
pub fn manifest_path(out: &Path) -> PathBuf {
    dir(out).join("manifest.json")
}

/// The name of index file `j`.
pub fn file_name(j: u32) -> String {
    format!("shard-{j}.arrow")
}

/// The 128-bit key of an `event_id`: its shard hash, then a second hash.
#[inline]
pub fn id_key(event_id: &[u8]) -> (u64, u64) {
    (
        xxh3_64_with_seed(event_id, SHARD_SEED),
        xxh3_64_with_seed(event_id, ID_LOW_SEED),
    )
}

/// How many index files `records` rows are spread over: a power of two.
pub fn file_count(records: u64) -> u32 {
    let files = records.div_ceil(ROWS_PER_FILE).max(1).next_power_of_two();
    u32::try_from(files)
        .unwrap_or(crate::shard::MAX_SHARDS)
        .min(crate::shard::MAX_SHARDS)
}

/// The index file of a key's first half, among `files`.
#[inline]
pub fn file_of(id_hash: u64, files: u32) -> u32 {
    ((u128::from(id_hash) * u128::from(files.max(1))) >> 64) as u32
}

/// The hash of the fields the survivor rule compares after the two
/// timestamps: `xxh3_64` with [`FIELDS_SEED`] of four 64-bit little-endian
/// words: `xxh3_64(creator_id)`, `xxh3_64(template_id)`, `xxh3_64(brand_id)`
/// (0 for a null brand; string hashes with seed 0), then `content_kind |
/// action << 8 | user_tier << 16 | country[0] << 24 | country[1] << 32 |
/// has_brand << 40`, the enumerations as their indices in the event
/// contract's lists of values and `has_brand` 1 unless the brand is null.
pub fn fields_hash(
    creator: &str,
    template: &str,
    brand: Option<&str>,
    codes: [u8; 3],
    country: [u8; 2],
) -> u64 {
    let hash = |s: &str| xxh3_64_with_seed(s.as_bytes(), 0);
    mix(
        hash(creator),
        hash(template),
        brand.map(hash),
        codes,
        country,
    )
}

fn mix(creator: u64, template: u64, brand: Option<u64>, codes: [u8; 3], country: [u8; 2]) -> u64 {
    let small = u64::from(codes[0])
        | u64::from(codes[1]) << 8
        | u64::from(codes[2]) << 16
        | u64::from(country[0]) << 24
        | u64::from(country[1]) << 32
        | u64::from(brand.is_some()) << 40;
    // Whole words: the hash reads back exactly what was stored.
    let mut bytes = [0u8; 32];
    for (at, word) in [creator, template, brand.unwrap_or(0), small]
        .into_iter()
        .enumerate()
    {
        bytes[at * 8..at * 8 + 8].copy_from_slice(&word.to_le_bytes());
    }
    xxh3_64_with_seed(&bytes, FIELDS_SEED)
}

/// [`fields_hash`] for the records of one table, with each string hashed once.
pub struct FieldHasher {
    strings: Vec<u64>,
}

impl FieldHasher {
    /// Hashes every string of `strings`, the interner the records' ids point into.
    pub fn new(strings: &Interner) -> FieldHasher {
        let all: Vec<&str> = strings.iter().collect();
        FieldHasher {
            strings: all
                .par_iter()
                .map(|s| xxh3_64_with_seed(s.as_bytes(), 0))
                .collect(),
        }
    }

    /// The [`fields_hash`] of row `r` of `c`.
    pub fn hash(&self, c: &EventColumns, r: usize) -> u64 {
        let brand = (c.brand[r] != NO_BRAND).then(|| self.strings[c.brand[r] as usize]);
        mix(
            self.strings[c.creator[r] as usize],
            self.strings[c.template[r] as usize],
            brand,
            [c.content_kind[r], c.action[r], c.user_tier[r]],
            c.country[r],
        )
    }
}

/// Rank of each enumeration code when its values are compared as bytes.
fn byte_ranks<const N: usize>(values: &[&str; N]) -> [u8; N] {
    let mut ranks = [0u8; N];
    for (i, v) in values.iter().enumerate() {
        ranks[i] = values
            .iter()
            .filter(|w| w.as_bytes() < v.as_bytes())
            .count() as u8;
    }
    ranks
}

/// The survivor rule as an order (smaller survives): `ingested_at`, then
/// `occurred_at`, creator, template, brand (null first), content kind,
/// action, user tier and country, strings and enumeration values by their
/// bytes. It must agree with [`crate::dedup`]'s.
pub struct SurvivorOrder {
    kind: [u8; 5],
    action: [u8; 4],
    tier: [u8; 4],
}

impl Default for SurvivorOrder {
    fn default() -> Self {
        SurvivorOrder {
            kind: byte_ranks(&CONTENT_KINDS),
            action: byte_ranks(&ACTIONS),
            tier: byte_ranks(&USER_TIERS),
        }
    }
}

impl SurvivorOrder {
    /// Compares two records of one table (whose string ids are in byte
    /// order), then their input files; identical records are equal.
    pub fn items(&self, a: &Item, b: &Item) -> Ordering {
        let key = |x: &Item| {
            let brand = if x.brand == NO_BRAND {
                0
            } else {
                u64::from(x.brand) + 1
            };
            (
                x.ingested_at,
                x.occurred_at,
                x.creator,
                x.template,
                brand,
                self.kind[x.codes[0] as usize],
                self.action[x.codes[1] as usize],
                self.tier[x.codes[2] as usize],
                x.country,
                x.source,
            )
        };
        key(a).cmp(&key(b))
    }

    /// Compares two records of any tables by the rule alone (not their files).
    pub fn records(&self, a: &Record, b: &Record) -> Ordering {
        let key = |x: &Record| {
            (
                x.ingested_at,
                x.occurred_at,
                x.creator.as_bytes().to_vec(),
                x.template.as_bytes().to_vec(),
                x.brand.as_ref().map(|b| b.as_bytes().to_vec()),
                self.kind[x.codes[0] as usize],
                self.action[x.codes[1] as usize],
                self.tier[x.codes[2] as usize],
                x.country,
            )
        };
        key(a).cmp(&key(b))
    }
}

/// One record with its strings: what the survivor rule compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub occurred_at: i64,
    pub ingested_at: i64,
    pub creator: String,
    pub template: String,
    pub brand: Option<String>,
    /// `content_kind`, `action` and `user_tier` codes.
    pub codes: [u8; 3],
    pub country: [u8; 2],
}

impl Record {
    /// Row `r` of `c`, whose string ids point into `strings`.
    pub fn of(c: &EventColumns, r: usize, strings: &Interner) -> Record {
        Record {
            occurred_at: c.occurred_at[r],
            ingested_at: c.ingested_at[r],
            creator: strings.get(c.creator[r]).to_string(),
            template: strings.get(c.template[r]).to_string(),
            brand: (c.brand[r] != NO_BRAND).then(|| strings.get(c.brand[r]).to_string()),
            codes: [c.content_kind[r], c.action[r], c.user_tier[r]],
            country: c.country[r],
        }
    }

    /// Its [`fields_hash`].
    pub fn fields_hash(&self) -> u64 {
        fields_hash(
            &self.creator,
            &self.template,
            self.brand.as_deref(),
            self.codes,
            self.country,
        )
    }
}

/// One row of the index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entry {
    pub id_hash: u64,
    pub id_hash_low: u64,
    pub occurred_at: i64,
    pub ingested_at: i64,
    pub fields: u64,
    /// The input file (for the index on disk, an index into its manifest's
    /// `inputs`).
    pub source: u32,
}

impl Entry {
    /// The event's 128-bit key.
    pub fn key(&self) -> (u64, u64) {
        (self.id_hash, self.id_hash_low)
    }

    /// The day of `occurred_at` (days since 1970-01-01).
    pub fn day(&self) -> i32 {
        day_of(self.occurred_at)
    }

    /// Whether two records of one event are the same but for their input
    /// file: equal timestamps and equal [`fields_hash`].
    pub fn same_record(&self, other: &Entry) -> bool {
        (self.ingested_at, self.occurred_at, self.fields)
            == (other.ingested_at, other.occurred_at, other.fields)
    }
}

/// What the survivor rule compares of a record besides its entry's
/// timestamps: string ids into its table's strings (in byte order) and
/// enumeration codes. Carried beside the entries while they are sorted, so
/// that ties are ordered without going back to the table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Details {
    pub creator: u32,
    pub template: u32,
    /// [`NO_BRAND`] for null.
    pub brand: u32,
    /// `content_kind`, `action` and `user_tier` codes.
    pub codes: [u8; 3],
    pub country: [u8; 2],
}

impl Details {
    /// The record these details and `entry` describe, with its strings.
    pub fn record(&self, entry: &Entry, strings: &Interner) -> Record {
        Record {
            occurred_at: entry.occurred_at,
            ingested_at: entry.ingested_at,
            creator: strings.get(self.creator).to_string(),
            template: strings.get(self.template).to_string(),
            brand: (self.brand != NO_BRAND).then(|| strings.get(self.brand).to_string()),
            codes: self.codes,
            country: self.country,
        }
    }
}

/// An entry with its record's details, as they are sorted while the index
/// is built (one flat record: 64 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Item {
    pub id_hash: u64,
    pub id_hash_low: u64,
    pub occurred_at: i64,
    pub ingested_at: i64,
    pub fields: u64,
    pub source: u32,
    pub creator: u32,
    pub template: u32,
    pub brand: u32,
    pub codes: [u8; 3],
    pub country: [u8; 2],
}

impl Item {
    /// The index row.
    pub fn entry(&self) -> Entry {
        Entry {
            id_hash: self.id_hash,
            id_hash_low: self.id_hash_low,
            occurred_at: self.occurred_at,
            ingested_at: self.ingested_at,
            fields: self.fields,
            source: self.source,
        }
    }

    /// The record's details.
    pub fn details(&self) -> Details {
        Details {
            creator: self.creator,
            template: self.template,
            brand: self.brand,
            codes: self.codes,
            country: self.country,
        }
    }

    fn key(&self) -> (u64, u64) {
        (self.id_hash, self.id_hash_low)
    }
}

/// Entries in index order, each with its record's details: a bucket of the
/// key space, in pieces one after the other.
pub struct Sorted {
    pub pieces: Vec<Vec<Item>>,
}

impl Sorted {
    /// The entries, in order.
    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.pieces.iter().flatten().map(Item::entry)
    }
}

/// One chunk's items, by bucket: each bucket's items in the order of their
/// parts, and where each part's items start (`offsets[p]..offsets[p + 1]`).
#[derive(Default)]
struct Bucket {
    items: Vec<Item>,
    offsets: Vec<u32>,
}

/// Makes the entries of every valid record of `table` (shard `shard` of
/// `shards`; its string ids in byte order and hashed by `hasher`) in index
/// order, a bucket of the key space at a time, handing each bucket to `sink`
/// in ascending order while the next one is sorted. The records are read
/// once, in order, and each chunk of the table is dropped as soon as its
/// entries are made, so that the entries take the place of the records in
/// memory.
pub fn build<E: Send>(
    table: Table,
    hasher: &FieldHasher,
    shard: u32,
    shards: u32,
    sink: &mut (dyn FnMut(Sorted) -> Result<(), E> + Send),
) -> Result<(), E> {
    let buckets = (table.len() as u64).div_ceil(BUCKET_ROWS).max(1) as usize;
    let parts = Parts::new(shard, shards, buckets);
    let mut made: Vec<Vec<Bucket>> = table
        .chunks
        .into_par_iter()
        .map(|c| make(&c, hasher, &parts, buckets))
        .collect();
    let order = SurvivorOrder::default();
    let mut current = Some(sort_bucket(&mut made, 0, &order));
    for b in 0..buckets {
        let pieces = current.take().unwrap_or_default();
        let (next, done) = rayon::join(
            || (b + 1 < buckets).then(|| sort_bucket(&mut made, b + 1, &order)),
            || sink(Sorted { pieces }),
        );
        done?;
        current = next;
    }
    Ok(())
}

/// One chunk's items, by bucket, each bucket put in the order of its parts
/// (a counting sort of a bucket's share of one chunk: it fits the core's
/// cache).
fn make(c: &EventColumns, hasher: &FieldHasher, parts: &Parts, buckets: usize) -> Vec<Bucket> {
    let share = c.len() / buckets;
    let mut unsorted: Vec<Vec<Item>> = (0..buckets)
        .map(|_| Vec::with_capacity(share + share / 8 + 16))
        .collect();
    for r in 0..c.len() {
        let (id_hash, id_hash_low) = id_key(c.event_id(r));
        let item = Item {
            id_hash,
            id_hash_low,
            occurred_at: c.occurred_at[r],
            ingested_at: c.ingested_at[r],
            fields: hasher.hash(c, r),
            source: c.source,
            creator: c.creator[r],
            template: c.template[r],
            brand: c.brand[r],
            codes: [c.content_kind[r], c.action[r], c.user_tier[r]],
            country: c.country[r],
        };
        unsorted[parts.of(id_hash) / FANOUT].push(item);
    }
    unsorted
        .into_iter()
        .enumerate()
        .map(|(b, items)| {
            let part = |item: &Item| parts.of(item.id_hash) - b * FANOUT;
            let mut offsets = vec![0u32; FANOUT + 1];
            for item in &items {
                offsets[part(item) + 1] += 1;
            }
            for p in 0..FANOUT {
                offsets[p + 1] += offsets[p];
            }
            let mut next = offsets.clone();
            let mut sorted = vec![Item::default(); items.len()];
            for item in items {
                let slot = &mut next[part(&item)];
                sorted[*slot as usize] = item;
                *slot += 1;
            }
            Bucket {
                items: sorted,
                offsets,
            }
        })
        .collect()
}

/// Where a key falls: buckets of the key space of one shard, each cut into
/// [`FANOUT`] parts sorted on their own (each fits a core's cache).
struct Parts {
    fine: u128,
    first: u64,
    last: u64,
}

impl Parts {
    fn new(shard: u32, shards: u32, buckets: usize) -> Parts {
        let per_shard = (buckets * FANOUT) as u64;
        Parts {
            fine: u128::from(shards.max(1)) * u128::from(per_shard),
            first: u64::from(shard) * per_shard,
            last: per_shard - 1,
        }
    }

    /// The part of a key, counted from the shard's first (`bucket *
    /// FANOUT + part`). A record outside the shard lands in the first or last
    /// part; the writer's order check then names it.
    fn of(&self, id_hash: u64) -> usize {
        let part = ((u128::from(id_hash) * self.fine) >> 64) as u64;
        part.saturating_sub(self.first).min(self.last) as usize
    }
}

/// Bucket `b`'s items of every chunk in index order: each of its parts
/// gathered from the chunks and sorted on its own (in the core's cache), in
/// parallel. The chunks' items of the bucket are dropped then.
fn sort_bucket(made: &mut [Vec<Bucket>], b: usize, order: &SurvivorOrder) -> Vec<Vec<Item>> {
    let pieces = (0..FANOUT)
        .into_par_iter()
        .map(|p| {
            let range = |m: &Bucket| m.offsets[p] as usize..m.offsets[p + 1] as usize;
            let n = made.iter().map(|m| range(&m[b]).len()).sum();
            let mut piece = Vec::with_capacity(n);
            for m in made.iter() {
                piece.extend_from_slice(&m[b].items[range(&m[b])]);
            }
            piece.sort_unstable_by_key(Item::key);
            // The records of one event (few, and rare) in the survivor
            // rule's order.
            let mut at = 0;
            while at < piece.len() {
                let key = piece[at].key();
                let mut end = at + 1;
                while end < piece.len() && piece[end].key() == key {
                    end += 1;
                }
                if end - at > 1 {
                    piece[at..end].sort_by(|a, b| order.items(a, b));
                }
                at = end;
            }
            piece
        })
        .collect();
    for m in made.iter_mut() {
        m[b] = Bucket::default();
    }
    pieces
}

/// The records of one shard, kept after dedup until they are written into
/// the index: the table (its strings already hashed) and the shard.
pub struct Records {
    pub table: Table,
    pub hasher: FieldHasher,
    pub shard: u32,
    pub shards: u32,
}

impl Records {
    /// Keeps `table` (shard `shard` of `shards`) for the index; its strings
    /// are hashed now, so that the caller may take them.
    pub fn keep(table: Table, shard: u32, shards: u32) -> Records {
        Records {
            hasher: FieldHasher::new(&table.strings),
            table,
            shard,
            shards,
        }
    }

    /// Writes the records' entries into `writer`, dropping the records as
    /// it goes.
    pub fn write(self, writer: &mut IndexWriter) -> Result<(), IndexError> {
        build(
            self.table,
            &self.hasher,
            self.shard,
            self.shards,
            &mut |sorted| writer.push(sorted.entries()),
        )
    }
}

/// One shard's part of the index: its records, or their entries already
/// written into one file (by a reduce task, for the commit).
pub enum Part {
    Records(Records),
    File(PathBuf),
}

impl Part {
    /// Writes the part's entries into `writer`.
    pub fn write(self, writer: &mut IndexWriter) -> Result<(), IndexError> {
        match self {
            Part::Records(records) => records.write(writer),
            Part::File(path) => read_file(&path, &mut |entries| writer.push(entries)),
        }
    }
}

/// One file of the index, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IndexFile {
    pub file: String,
    pub rows: u64,
    pub bytes: u64,
    pub blake3: String,
}

/// An input file as the index records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IndexedInput {
    /// Absolute path, as the run found it.
    pub path: String,
    pub blake3: String,
    pub size: u64,
    /// Modification time, in nanoseconds since 1970-01-01 UTC, if the file
    /// system gave one.
    pub modified_ns: Option<i64>,
}

/// `_tally/survivors/manifest.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub index_format: u32,
    pub shard_format: u32,
    /// Valid records, one row each.
    pub records: u64,
    /// Distinct events (keys).
    pub events: u64,
    /// The longest JSON line the run parsed (`--max-line-bytes`).
    pub max_line_bytes: u64,
    /// The run's input files, in its input order.
    pub inputs: Vec<IndexedInput>,
    /// The index files, `shard-0.arrow` to `shard-(M-1).arrow`.
    pub files: Vec<IndexFile>,
}

/// What the commit log says of the index a commit wrote, so that an index
/// left by another commit is never taken for this one's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IndexSummary {
    /// The blake3 of `_tally/survivors/manifest.json`.
    pub manifest_blake3: String,
    pub records: u64,
    pub events: u64,
}

/// A modification time in nanoseconds since 1970-01-01 UTC.
pub fn modified_ns(time: Option<std::time::SystemTime>) -> Option<i64> {
    let time = time?;
    match time.duration_since(std::time::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).ok(),
        Err(before) => i64::try_from(before.duration().as_nanos()).ok().map(|n| -n),
    }
}

/// The schema of an index file.
pub fn schema(file: u32, files: u32) -> SchemaRef {
    let metadata: std::collections::HashMap<String, String> = [
        ("tally.index_format", INDEX_FORMAT_VERSION.to_string()),
        ("tally.shard_format", SHARD_FORMAT_VERSION.to_string()),
        ("tally.index_file", file.to_string()),
        ("tally.index_files", files.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Arc::new(
        Schema::new(vec![
            Field::new("id_hash", DataType::UInt64, false),
            Field::new("id_hash_low", DataType::UInt64, false),
            Field::new("occurred_at", DataType::Int64, false),
            Field::new("ingested_at", DataType::Int64, false),
            Field::new("fields", DataType::UInt64, false),
            Field::new("source", DataType::UInt32, false),
        ])
        .with_metadata(metadata),
    )
}

/// A file being written, hashed as its bytes go out.
struct Hashing {
    out: File,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

struct Open {
    number: u32,
    path: PathBuf,
    writer: FileWriter<BufWriter<Hashing>>,
    rows: u64,
}

/// Writes entries, pushed in index order, into index files: each entry into
/// the file of its key, in batches of [`BATCH_ROWS`] counted from the start of
/// each file, so that the bytes depend on the entries alone, never on how
/// they were pushed.
pub struct IndexWriter {
    paths: Vec<PathBuf>,
    open: Option<Open>,
    next: u32,
    batch: Vec<Entry>,
    done: Vec<IndexFile>,
    last: Option<(u64, u64)>,
    records: u64,
    events: u64,
}

/// An index written into a directory, not yet installed in a commit.
#[derive(Debug, Clone)]
pub struct Built {
    pub dir: PathBuf,
    pub files: Vec<IndexFile>,
    pub records: u64,
    pub events: u64,
    /// Each input file's modification time when the run found it
    /// ([`modified_ns`]), in input order.
    pub modified: Vec<Option<i64>>,
}

impl IndexWriter {
    /// A writer of the final index files for `records` rows into `dir`
    /// (created if needed).
    pub fn create(dir: &Path, records: u64) -> Result<IndexWriter, IndexError> {
        let files = file_count(records);
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        Ok(IndexWriter::to_paths(
            (0..files).map(|j| dir.join(file_name(j))).collect(),
        ))
    }

    /// A writer of one file holding every entry (a shard's part of the index,
    /// handed from a reduce task to the commit).
    pub fn single(path: &Path) -> IndexWriter {
        IndexWriter::to_paths(vec![path.to_path_buf()])
    }

    fn to_paths(paths: Vec<PathBuf>) -> IndexWriter {
        IndexWriter {
            paths,
            open: None,
            next: 0,
            batch: Vec::with_capacity(BATCH_ROWS),
            done: Vec::new(),
            last: None,
            records: 0,
            events: 0,
        }
    }

    fn files(&self) -> u32 {
        self.paths.len() as u32
    }

    /// Appends entries, which must come after everything pushed before.
    pub fn push(&mut self, entries: impl IntoIterator<Item = Entry>) -> Result<(), IndexError> {
        for e in entries {
            let key = e.key();
            match self.last {
                Some(last) if key < last => {
                    return Err(IndexError::Order(format!(
                        "key {:016x}{:016x} comes after {:016x}{:016x}",
                        key.0, key.1, last.0, last.1
                    )));
                }
                Some(last) if key == last => {}
                _ => self.events += 1,
            }
            self.last = Some(key);
            let file = file_of(e.id_hash, self.files());
            while self.open.as_ref().is_none_or(|o| o.number < file) {
                self.close()?;
                self.open_next()?;
            }
            self.batch.push(e);
            self.records += 1;
            if self.batch.len() == BATCH_ROWS {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn open_next(&mut self) -> Result<(), IndexError> {
        let number = self.next;
        let path = self.paths[number as usize].clone();
        let file = File::create(&path).map_err(|e| io(&path, e))?;
        let out = BufWriter::with_capacity(
            1 << 20,
            Hashing {
                out: file,
                hasher: blake3::Hasher::new(),
                bytes: 0,
            },
        );
        // Uncompressed: keys and hashes do not compress, and LZ4 saved 15%
        // of the bytes for 15% more of the index's time.
        let options = IpcWriteOptions::default()
            .try_with_compression(None)
            .map_err(|e| io(&path, e))?;
        let writer = FileWriter::try_new_with_options(out, &schema(number, self.files()), options)
            .map_err(|e| io(&path, e))?;
        self.open = Some(Open {
            number,
            path,
            writer,
            rows: 0,
        });
        self.next += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), IndexError> {
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch =
            batch(&self.batch, open.writer.schema().clone()).map_err(|e| io(&open.path, e))?;
        open.writer.write(&batch).map_err(|e| io(&open.path, e))?;
        open.rows += self.batch.len() as u64;
        self.batch.clear();
        Ok(())
    }

    fn close(&mut self) -> Result<(), IndexError> {
        self.flush()?;
        let Some(mut open) = self.open.take() else {
            return Ok(());
        };
        open.writer.finish().map_err(|e| io(&open.path, e))?;
        let out = open.writer.into_inner().map_err(|e| io(&open.path, e))?;
        let out = out.into_inner().map_err(|e| io(&open.path, e.error()))?;
        self.done.push(IndexFile {
            file: open
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            rows: open.rows,
            bytes: out.bytes,
            blake3: out.hasher.finalize().to_hex().to_string(),
        });
        Ok(())
    }

    /// Writes what is buffered and every file not written yet (empty), and
    /// says what was written.
    pub fn finish(mut self) -> Result<(Vec<IndexFile>, u64, u64), IndexError> {
        self.close()?;
        while self.next < self.files() {
            self.open_next()?;
            self.close()?;
        }
        Ok((self.done, self.records, self.events))
    }
}

fn batch(entries: &[Entry], schema: SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(
            entries.iter().map(|e| e.id_hash),
        )),
        Arc::new(UInt64Array::from_iter_values(
            entries.iter().map(|e| e.id_hash_low),
        )),
        Arc::new(Int64Array::from_iter_values(
            entries.iter().map(|e| e.occurred_at),
        )),
        Arc::new(Int64Array::from_iter_values(
            entries.iter().map(|e| e.ingested_at),
        )),
        Arc::new(UInt64Array::from_iter_values(
            entries.iter().map(|e| e.fields),
        )),
        Arc::new(UInt32Array::from_iter_values(
            entries.iter().map(|e| e.source),
        )),
    ];
    RecordBatch::try_new(schema, columns)
}

/// Reads an index file (or a reduce task's part of the index), handing each
/// batch's entries to `each`, in order.
pub fn read_file(
    path: &Path,
    each: &mut dyn FnMut(Vec<Entry>) -> Result<(), IndexError>,
) -> Result<(), IndexError> {
    let file = File::open(path).map_err(|e| io(path, e))?;
    let reader = FileReader::try_new(BufReader::with_capacity(1 << 20, file), None)
        .map_err(|e| damaged(path, e))?;
    let expected = schema(0, 1);
    if reader.schema().fields() != expected.fields()
        || reader.schema().metadata().get("tally.index_format")
            != Some(&INDEX_FORMAT_VERSION.to_string())
    {
        return Err(damaged(
            path,
            format!("not an index file of index format {INDEX_FORMAT_VERSION}"),
        ));
    }
    for batch in reader {
        let batch = batch.map_err(|e| damaged(path, e))?;
        if batch.columns().iter().any(|c| c.null_count() > 0) {
            return Err(damaged(path, "a column has nulls"));
        }
        let hi = batch.column(0).as_primitive::<UInt64Type>().values();
        let lo = batch.column(1).as_primitive::<UInt64Type>().values();
        let occurred = batch.column(2).as_primitive::<Int64Type>().values();
        let ingested = batch.column(3).as_primitive::<Int64Type>().values();
        let fields = batch.column(4).as_primitive::<UInt64Type>().values();
        let source = batch.column(5).as_primitive::<UInt32Type>().values();
        let entries = (0..batch.num_rows())
            .map(|i| Entry {
                id_hash: hi[i],
                id_hash_low: lo[i],
                occurred_at: occurred[i],
                ingested_at: ingested[i],
                fields: fields[i],
                source: source[i],
            })
            .collect();
        each(entries)?;
    }
    Ok(())
}

/// Installs a built index in a staged output: moves its files into
/// `_tally/survivors/` and writes the manifest naming `inputs` (the run's,
/// in input order). Returns what the commit log records of it.
pub fn install(
    built: &Built,
    inputs: &[InputSummary],
    max_line_bytes: usize,
    staging: &Path,
) -> Result<IndexSummary, CommitError> {
    let target = dir(staging);
    std::fs::create_dir_all(&target).map_err(|source| CommitError::Io {
        path: target.clone(),
        source,
    })?;
    for f in &built.files {
        let (from, to) = (built.dir.join(&f.file), target.join(&f.file));
        // A rename where the work directory is on the output's file system,
        // else a copy.
        if std::fs::rename(&from, &to).is_err() {
            std::fs::copy(&from, &to).map_err(|source| CommitError::Io {
                path: to.clone(),
                source,
            })?;
        }
    }
    let manifest = Manifest {
        index_format: INDEX_FORMAT_VERSION,
        shard_format: SHARD_FORMAT_VERSION,
        records: built.records,
        events: built.events,
        max_line_bytes: max_line_bytes as u64,
        inputs: inputs
            .iter()
            .enumerate()
            .map(|(i, input)| IndexedInput {
                path: input.path.clone(),
                blake3: input.blake3.clone(),
                size: input.size,
                modified_ns: built.modified.get(i).copied().flatten(),
            })
            .collect(),
        files: built.files.clone(),
    };
    let text = serde_json::to_string_pretty(&manifest).expect("manifests serialize") + "\n";
    commit::write_file(&manifest_path(staging), text.as_bytes())?;
    Ok(IndexSummary {
        manifest_blake3: blake3::hash(text.as_bytes()).to_hex().to_string(),
        records: built.records,
        events: built.events,
    })
}

/// The index of an output and the blake3 of its manifest, or `None` when
/// it has none.
pub fn read_manifest(out: &Path) -> Result<Option<(Manifest, String)>, IndexError> {
    let path = manifest_path(out);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path, e)),
    };
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| damaged(&path, e))?;
    if manifest.index_format != INDEX_FORMAT_VERSION {
        return Err(damaged(
            &path,
            format!(
                "index format {}; this Tally reads index format {INDEX_FORMAT_VERSION}",
                manifest.index_format
            ),
        ));
    }
    Ok(Some((manifest, blake3::hash(&text).to_hex().to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup::{dedup, merge};
    use crate::ingest::Chunk;
    use crate::validate::Value;

    /// Fixed values: a change here is a new index format version.
    #[test]
    fn keys_and_field_hashes_are_stable() {
        let ids: [&[u8]; 3] = [b"", b"e-1", b"0f8fad5b-d9cb-469f-a165-70867728950e"];
        let keys: Vec<(u64, u64)> = ids.iter().map(|id| id_key(id)).collect();
        let fields = [
            fields_hash("cr-1", "tpl-1", None, [0, 1, 1], *b"US"),
            fields_hash("cr-1", "tpl-1", Some(""), [0, 1, 1], *b"US"),
            fields_hash("cr-1", "tpl-1", Some("brand"), [4, 3, 3], *b"DE"),
        ];
        // The first halves are the shard hashes the shard module pins (from
        // an independent xxHash implementation).
        assert_eq!(
            keys,
            [
                (0x8e26_cfca_6cac_4c29, 0x7442_0448_27f7_301a),
                (0xe1a3_132c_a7cf_793d, 0xb2f3_52a1_e01e_33a9),
                (0xb8eb_0965_8ea0_5fd2, 0xd7fa_5001_7ef9_ead0),
            ]
        );
        // A null brand is not an empty one.
        assert_eq!(
            fields,
            [
                0x21f0_a6e8_57dc_8c12,
                0x1055_9182_7130_a570,
                0xda04_d1f5_f03c_6a17
            ]
        );
    }

    #[test]
    fn file_counts_are_powers_of_two_that_hold_the_rows() {
        assert_eq!(file_count(0), 1);
        assert_eq!(file_count(ROWS_PER_FILE), 1);
        assert_eq!(file_count(ROWS_PER_FILE + 1), 2);
        assert_eq!(file_count(3 * ROWS_PER_FILE), 4);
        assert_eq!(file_of(u64::MAX, 4), 3);
        assert_eq!(file_of(0, 4), 0);
    }

    fn record<'a>(id: &'a str, ingested: i64, template: &'a str, day: i64) -> [Value<'a>; 10] {
        [
            Value::Str(id),
            Value::Int(1_777_636_800_000 + day * 86_400_000),
            Value::Int(1_777_636_800_000 + ingested),
            Value::Str("cr"),
            Value::Str(template),
            Value::Null,
            Value::Str("image"),
            Value::Str("use"),
            Value::Str("pro"),
            Value::Str("US"),
        ]
    }

    fn table(files: &[Vec<[Value<'_>; 10]>]) -> Table {
        let mut chunks = Vec::new();
        let mut interners = Vec::new();
        for (source, records) in files.iter().enumerate() {
            let mut events = EventColumns::new();
            let mut strings = Interner::new();
            for r in records {
                events.push(r, &mut strings).unwrap();
            }
            events.source = source as u32;
            chunks.push(Chunk {
                source: source as u32,
                seq: 0,
                records: records.len() as u64,
                interner: source,
                events,
                quarantine: Vec::new(),
            });
            interners.push(strings);
        }
        merge(chunks, interners).unwrap().0
    }

    /// The first entry of each event is the record dedup keeps, whatever the
    /// bucket size, and entries come out in key order.
    #[test]
    fn the_first_record_of_each_event_is_the_survivor() {
        let mut files: Vec<Vec<[Value<'_>; 10]>> = vec![Vec::new(), Vec::new(), Vec::new()];
        let ids: Vec<String> = (0..3000).map(|i| format!("ev-{i}")).collect();
        let templates = ["a", "b", "c"];
        for (i, id) in ids.iter().enumerate() {
            // Up to three records per event across files, with ties.
            for copy in 0..(i % 4) {
                let file = (i + copy) % 3;
                let ingested = ((i * 7 + copy * 3) % 5) as i64;
                let template = templates[(i + copy) % 3];
                files[file].push(record(id, ingested, template, (copy % 2) as i64));
            }
        }
        let deduped = dedup(table(&files));
        let mut expected: Vec<(u64, u64, i64, i64, u64, u32)> = deduped
            .survivors
            .iter()
            .map(|&g| {
                let (c, r) = deduped.table.locate(g);
                let (hi, lo) = id_key(c.event_id(r));
                let f = Record::of(c, r, &deduped.table.strings).fields_hash();
                (hi, lo, c.occurred_at[r], c.ingested_at[r], f, c.source)
            })
            .collect();
        expected.sort();
        let t = table(&files);
        let records = t.len();
        let hasher = FieldHasher::new(&t.strings);
        let mut entries = Vec::new();
        build(t, &hasher, 0, 1, &mut |s: Sorted| {
            entries.extend(s.entries());
            Ok::<_, ()>(())
        })
        .unwrap();
        assert!(entries.windows(2).all(|w| w[0].key() <= w[1].key()));
        assert_eq!(entries.len(), records);
        let mut firsts = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if i == 0 || entries[i - 1].key() != e.key() {
                firsts.push((
                    e.id_hash,
                    e.id_hash_low,
                    e.occurred_at,
                    e.ingested_at,
                    e.fields,
                    e.source,
                ));
            }
        }
        firsts.sort();
        assert_eq!(firsts, expected);
    }

    /// The files' bytes depend on the entries only, not on how they were
    /// pushed; reading them back gives the entries.
    #[test]
    fn files_are_the_same_bytes_however_entries_are_pushed() {
        let entries: Vec<Entry> = (0..200_000u64)
            .map(|i| {
                let (hi, lo) = id_key(format!("ev-{i}").as_bytes());
                Entry {
                    id_hash: hi,
                    id_hash_low: lo,
                    occurred_at: i as i64,
                    ingested_at: 2 * i as i64,
                    fields: i,
                    source: (i % 3) as u32,
                }
            })
            .collect::<Vec<_>>();
        let mut sorted = entries;
        sorted.sort_by_key(|e| e.key());
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, pieces: usize| {
            let path = dir.path().join(name);
            let mut writer =
                IndexWriter::to_paths((0..4).map(|j| path.join(file_name(j))).collect());
            std::fs::create_dir_all(&path).unwrap();
            for part in sorted.chunks(sorted.len().div_ceil(pieces)) {
                writer.push(part.iter().copied()).unwrap();
            }
            writer.finish().unwrap()
        };
        let (a, records, events) = write("a", 1);
        let (b, _, _) = write("b", 7);
        assert_eq!(a, b);
        assert_eq!((records, events), (200_000, 200_000));
        let mut back = Vec::new();
        for f in &a {
            read_file(&dir.path().join("b").join(&f.file), &mut |e| {
                back.extend(e);
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(back, sorted);
        let mut writer = IndexWriter::single(&dir.path().join("c.arrow"));
        writer.push(sorted[10..11].iter().copied()).unwrap();
        assert!(matches!(
            writer.push(sorted[5..6].iter().copied()),
            Err(IndexError::Order(_))
        ));
    }
}
