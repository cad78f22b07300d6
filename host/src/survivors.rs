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
//! apart by `fields`, a 64-bit hash: records equal on both timestamps and
//! `fields` are taken for the same record, in the order of their input
//! files.
//!
//! The manifest also counts, per day and input file, the events whose
//! survivor is there (`days`, counted from each event's first record as the
//! files are written), so that status can start from those counts and look
//! up only the events of new records ([`lookup`]: the key column is read
//! batch by batch, the other columns only where a key matches).
//!
//! # Layers (index format 2)
//!
//! An incremental commit ([`crate::incremental`]) adds the records of the
//! input files it read as new to the index of the commit before instead of
//! rewriting it: one file `layer-K.arrow` of the same schema and order,
//! listed under `layers` (the manifest then says `"index_format": 2`, and
//! the new files are appended to `inputs`). A commit adds a layer only when
//! none of its records has the timestamps of a recorded record of the same
//! event with other fields, so readers merge an event's records across
//! files by `ingested_at`, then `occurred_at` ([`read_merged`], [`lookup`]).
//! Identical records on the same timestamps may then lie in several files,
//! the recorded ones first: of those, the survivor is the one in the input
//! file that comes first, as in a full recompute ([`crate::status`] takes
//! it so).

use crate::commit::{self, CommitError};
use crate::dedup::Table;
use crate::event::{ACTIONS, CONTENT_KINDS, USER_TIERS, day_of, format_day};
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

/// An event's 128-bit key: its shard hash, then a second hash.
pub type Key = (u64, u64);

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

/// The records of `table` of the events whose keys are in `wanted`, by key,
/// in the table's order.
pub fn records_of(
    table: &Table,
    wanted: &std::collections::HashSet<Key>,
) -> std::collections::HashMap<Key, Vec<Record>> {
    let mut records: std::collections::HashMap<Key, Vec<Record>> = Default::default();
    if wanted.is_empty() {
        return records;
    }
    for c in &table.chunks {
        for r in 0..c.len() {
            let key = id_key(c.event_id(r));
            if wanted.contains(&key) {
                records
                    .entry(key)
                    .or_default()
                    .push(Record::of(c, r, &table.strings));
            }
        }
    }
    records
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
        (a.ingested_at, a.occurred_at)
            .cmp(&(b.ingested_at, b.occurred_at))
            .then_with(|| self.details(&a.details(), &b.details()))
            .then(a.source.cmp(&b.source))
    }

    /// Compares what the rule compares after the two timestamps, of two
    /// records of one table.
    pub fn details(&self, a: &Details, b: &Details) -> Ordering {
        let key = |x: &Details| {
            let brand = if x.brand == NO_BRAND {
                0
            } else {
                u64::from(x.brand) + 1
            };
            (
                x.creator,
                x.template,
                brand,
                self.kind[x.codes[0] as usize],
                self.action[x.codes[1] as usize],
                self.tier[x.codes[2] as usize],
                x.country,
            )
        };
        key(a).cmp(&key(b))
    }

    /// Compares two rows of one event as [`SurvivorOrder::items`] does,
    /// except that two records that tie on both timestamps and on their
    /// [`fields_hash`] are taken for the same record (as
    /// [`Entry::same_record`] takes them) and ordered by input file alone.
    /// Their details are looked up only when the hashes differ: records
    /// sent twice are common, and looking up their details cost as much as
    /// all the rest of the sort.
    fn rows(&self, a: &Row, b: &Row, ties: &Ties) -> Ordering {
        (a.ingested_at, a.occurred_at)
            .cmp(&(b.ingested_at, b.occurred_at))
            .then_with(|| {
                if a.fields == b.fields {
                    Ordering::Equal
                } else {
                    self.details(&ties.details(a.at), &ties.details(b.at))
                }
            })
            .then(a.source.cmp(&b.source))
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
/// enumeration codes.
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

/// An entry with its record's details, as [`build`] hands them out.
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

/// An index row as it is sorted (48 bytes): the entry, and the record's row
/// in its table, where its details are looked up in the rare case that two
/// records of one event tie on both timestamps but not on `fields`.
/// Carrying the details instead would make every row a third bigger, and
/// every row is copied several times on its way to the file.
#[derive(Debug, Clone, Copy, Default)]
struct Row {
    id_hash: u64,
    id_hash_low: u64,
    occurred_at: i64,
    ingested_at: i64,
    fields: u64,
    source: u32,
    /// The record's row in the table (its global index).
    at: u32,
}

/// A [`Row`] as six words: how rows wait between being made and being
/// sorted. Memory for words is handed out zeroed by the system, where rows
/// would first be zeroed by a pass over all of them.
type Packed = [u64; 6];

impl Row {
    fn key(&self) -> (u64, u64) {
        (self.id_hash, self.id_hash_low)
    }

    fn pack(&self) -> Packed {
        [
            self.id_hash,
            self.id_hash_low,
            self.occurred_at as u64,
            self.ingested_at as u64,
            self.fields,
            u64::from(self.source) | u64::from(self.at) << 32,
        ]
    }

    fn unpack(words: &Packed) -> Row {
        Row {
            id_hash: words[0],
            id_hash_low: words[1],
            occurred_at: words[2] as i64,
            ingested_at: words[3] as i64,
            fields: words[4],
            source: words[5] as u32,
            at: (words[5] >> 32) as u32,
        }
    }

    fn item(&self, ties: &Ties) -> Item {
        let details = ties.details(self.at);
        Item {
            id_hash: self.id_hash,
            id_hash_low: self.id_hash_low,
            occurred_at: self.occurred_at,
            ingested_at: self.ingested_at,
            fields: self.fields,
            source: self.source,
            creator: details.creator,
            template: details.template,
            brand: details.brand,
            codes: details.codes,
            country: details.country,
        }
    }
}

/// The columns of one chunk that hold its records' [`Details`], taken out
/// of the chunk (not copied) when its rows are made; the rest of the chunk
/// is dropped then.
#[derive(Default)]
struct DetailColumns {
    creator: Vec<u32>,
    template: Vec<u32>,
    brand: Vec<u32>,
    content_kind: Vec<u8>,
    action: Vec<u8>,
    user_tier: Vec<u8>,
    country: Vec<[u8; 2]>,
}

impl DetailColumns {
    fn take(c: &mut EventColumns) -> DetailColumns {
        DetailColumns {
            creator: std::mem::take(&mut c.creator),
            template: std::mem::take(&mut c.template),
            brand: std::mem::take(&mut c.brand),
            content_kind: std::mem::take(&mut c.content_kind),
            action: std::mem::take(&mut c.action),
            user_tier: std::mem::take(&mut c.user_tier),
            country: std::mem::take(&mut c.country),
        }
    }
}

/// The details of a table's records by global row, while their rows are
/// sorted.
struct Ties {
    /// Global row of each chunk's first row, plus the total at the end.
    starts: Vec<u32>,
    chunks: Vec<DetailColumns>,
}

impl Ties {
    fn details(&self, at: u32) -> Details {
        let chunk = self.starts.partition_point(|&s| s <= at) - 1;
        let (c, r) = (&self.chunks[chunk], (at - self.starts[chunk]) as usize);
        Details {
            creator: c.creator[r],
            template: c.template[r],
            brand: c.brand[r],
            codes: [c.content_kind[r], c.action[r], c.user_tier[r]],
            country: c.country[r],
        }
    }
}

/// Makes the entries of every valid record of `table` (shard `shard` of
/// `shards`; its string ids in byte order and hashed by `hasher`) in index
/// order, each with its record's details, a bucket of the key space at a
/// time, handing each bucket to `sink` in ascending order while the next one
/// is sorted. Each chunk of the table is dropped as soon as its entries are
/// made, all but the columns of the details.
pub fn build<E: Send + From<IndexError>>(
    table: Table,
    hasher: &FieldHasher,
    shard: u32,
    shards: u32,
    sink: &mut (dyn FnMut(Sorted) -> Result<(), E> + Send),
) -> Result<(), E> {
    sort_rows(
        table,
        hasher,
        shard,
        shards,
        BUCKET_ROWS,
        &|rows, _, ties| rows.iter().map(|r| r.item(ties)).collect(),
        &mut |pieces| sink(Sorted { pieces }),
    )
}

/// Writes the entries of every valid record of `table` (shard `shard` of
/// `shards`; its string ids in byte order and hashed by `hasher`) into
/// `writer`, dropping each chunk of the table as soon as its entries are
/// made. Their columns are laid out while they are sorted, on every core,
/// so that the writer only appends them.
pub fn write_index(
    table: Table,
    hasher: &FieldHasher,
    shard: u32,
    shards: u32,
    writer: &mut IndexWriter,
) -> Result<(), IndexError> {
    write_rows(table, hasher, shard, shards, BUCKET_ROWS, writer)
}

/// [`write_index`], sorting about `bucket_rows` rows at a time.
fn write_rows(
    table: Table,
    hasher: &FieldHasher,
    shard: u32,
    shards: u32,
    bucket_rows: u64,
    writer: &mut IndexWriter,
) -> Result<(), IndexError> {
    sort_rows(
        table,
        hasher,
        shard,
        shards,
        bucket_rows,
        &|rows, events, _| Piece {
            columns: Columns::of(rows),
            events,
            disorder: None,
        },
        &mut |pieces| pieces.iter().try_for_each(|p| writer.push_piece(p)),
    )
}

/// The rows of every valid record of `table` in index order, a bucket of
/// the key space (about `bucket_rows` rows) at a time: each of its parts
/// sorted, then turned into a `T` by `finish` (on every core, given the
/// part's rows and how many events they hold), and the bucket's parts handed
/// to `sink` in order while the next bucket is sorted. Each chunk of the
/// table is dropped as soon as its rows are made, all but the columns of
/// the details. Records of other shards are refused before anything is
/// sorted.
fn sort_rows<T: Send, E: Send + From<IndexError>>(
    table: Table,
    hasher: &FieldHasher,
    shard: u32,
    shards: u32,
    bucket_rows: u64,
    finish: &(dyn Fn(&[Row], u64, &Ties) -> T + Sync),
    sink: &mut (dyn FnMut(Vec<T>) -> Result<(), E> + Send),
) -> Result<(), E> {
    let buckets = (table.len() as u64).div_ceil(bucket_rows.max(1)).max(1) as usize;
    let parts = Parts::new(shard, shards, buckets);
    let Table { chunks, starts, .. } = table;
    let (made, details): (Vec<(Vec<Bucket>, u64)>, Vec<DetailColumns>) = chunks
        .into_par_iter()
        .zip(starts.par_iter())
        .map(|(mut c, &start)| {
            let made = make(&c, start, hasher, &parts, buckets);
            (made, DetailColumns::take(&mut c))
        })
        .unzip();
    let foreign: u64 = made.iter().map(|(_, foreign)| foreign).sum();
    if foreign > 0 {
        return Err(IndexError::Order(format!(
            "{foreign} of the records of shard {shard} of {shards} belong to other shards"
        ))
        .into());
    }
    let mut made: Vec<Vec<Bucket>> = made.into_iter().map(|(made, _)| made).collect();
    let ties = Ties {
        starts,
        chunks: details,
    };
    let order = SurvivorOrder::default();
    let sort = |made: &mut [Vec<Bucket>], b| sort_bucket(made, b, &parts, &order, &ties, finish);
    let mut current = Some(sort(&mut made, 0));
    for b in 0..buckets {
        let pieces = current.take().unwrap_or_default();
        let (next, done) = rayon::join(
            || (b + 1 < buckets).then(|| sort(&mut made, b + 1)),
            || sink(pieces),
        );
        done?;
        current = next;
    }
    Ok(())
}

/// One chunk's rows of one bucket, in the order of its parts, and where
/// each part's rows start (`offsets[p]..offsets[p + 1]`).
#[derive(Default)]
struct Bucket {
    rows: Vec<Packed>,
    offsets: Vec<u32>,
}

/// One chunk's rows by bucket, each bucket in the order of its parts (a
/// counting sort: the shard hashes first, to count each part's rows), and
/// how many of its records belong to other shards (left out). `start` is
/// the chunk's first global row.
fn make(
    c: &EventColumns,
    start: u32,
    hasher: &FieldHasher,
    parts: &Parts,
    buckets: usize,
) -> (Vec<Bucket>, u64) {
    let his: Vec<u64> = (0..c.len())
        .map(|r| xxh3_64_with_seed(c.event_id(r), SHARD_SEED))
        .collect();
    // Rows of each part.
    let mut counts = vec![0u32; buckets * FANOUT];
    let mut foreign = 0;
    for &hi in &his {
        match parts.of(hi) {
            Some(part) => counts[part] += 1,
            None => foreign += 1,
        }
    }
    // In a loop of their own: the strings' hashes are looked up all over
    // memory, and a short loop lets more of those lookups run at once.
    let fields: Vec<u64> = (0..c.len()).map(|r| hasher.hash(c, r)).collect();
    // By bucket first, each bucket's rows appended in order (a few places
    // written at once), then each bucket by part, within the core's cache.
    let mut by_bucket: Vec<Vec<Packed>> = counts
        .chunks(FANOUT)
        .map(|counts| Vec::with_capacity(counts.iter().sum::<u32>() as usize))
        .collect();
    for (r, (&hi, &fields)) in his.iter().zip(&fields).enumerate() {
        let Some(part) = parts.of(hi) else {
            continue;
        };
        let row = Row {
            id_hash: hi,
            id_hash_low: xxh3_64_with_seed(c.event_id(r), ID_LOW_SEED),
            occurred_at: c.occurred_at[r],
            ingested_at: c.ingested_at[r],
            fields,
            source: c.source,
            at: start + r as u32,
        };
        by_bucket[part / FANOUT].push(row.pack());
    }
    let made = by_bucket
        .into_iter()
        .zip(counts.chunks(FANOUT))
        .enumerate()
        .map(|(b, (rows, counts))| {
            let mut offsets = Vec::with_capacity(FANOUT + 1);
            let mut at = 0u32;
            offsets.push(at);
            for &n in counts {
                at += n;
                offsets.push(at);
            }
            let mut next = offsets[..FANOUT].to_vec();
            let mut sorted = vec![[0; 6]; rows.len()];
            // Every row here is of this shard, in bucket `b`.
            for (row, part) in rows.iter().filter_map(|r| Some((r, parts.of(r[0])?))) {
                let slot = &mut next[part - b * FANOUT];
                sorted[*slot as usize] = *row;
                *slot += 1;
            }
            Bucket {
                rows: sorted,
                offsets,
            }
        })
        .collect();
    (made, foreign)
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
    /// FANOUT + part`), or `None` for a key of another shard.
    fn of(&self, id_hash: u64) -> Option<usize> {
        let part = ((u128::from(id_hash) * self.fine) >> 64) as u64;
        let part = part.checked_sub(self.first)?;
        (part <= self.last).then_some(part as usize)
    }

    /// Where a key falls within its part, from 0 to 2⁶⁴: in the order of the
    /// keys of one part.
    fn fraction(&self, id_hash: u64) -> u64 {
        (u128::from(id_hash) * self.fine) as u64
    }
}

/// Bucket `b`'s rows of every chunk in index order: each of its parts
/// gathered from the chunks, sorted on its own (in the core's cache) and
/// finished, in parallel. The chunks' rows of the bucket are dropped then.
fn sort_bucket<T: Send>(
    made: &mut [Vec<Bucket>],
    b: usize,
    parts: &Parts,
    order: &SurvivorOrder,
    ties: &Ties,
    finish: &(dyn Fn(&[Row], u64, &Ties) -> T + Sync),
) -> Vec<T> {
    let chunks: &[Vec<Bucket>] = made;
    let pieces = (0..FANOUT)
        .into_par_iter()
        .map_init(PartRoom::default, |room, p| {
            let sources: Vec<&[Packed]> = chunks
                .iter()
                .map(|m| &m[b].rows[m[b].offsets[p] as usize..m[b].offsets[p + 1] as usize])
                .filter(|rows| !rows.is_empty())
                .collect();
            let (rows, events) = sort_part(&sources, parts, order, ties, room);
            finish(rows, events, ties)
        })
        .collect();
    for m in made.iter_mut() {
        m[b] = Bucket::default();
    }
    pieces
}

/// The rows of one part in index order, and how many events they hold. The
/// keys are hashes, spread evenly over the part's range, so a counting sort
/// on the next bits of the key, about one slot per row, puts nearly every
/// row in its place as it is gathered; only the few rows that share a slot
/// are left to sort. The records of one event then go in the survivor
/// rule's order.
fn sort_part<'r>(
    sources: &[&[Packed]],
    parts: &Parts,
    order: &SurvivorOrder,
    ties: &Ties,
    room: &'r mut PartRoom,
) -> (&'r [Row], u64) {
    let n: usize = sources.iter().map(|rows| rows.len()).sum();
    let bits = n.next_power_of_two().trailing_zeros().max(1);
    let slot = |r: &Packed| (parts.fraction(r[0]) >> (64 - bits)) as usize;
    // Where each slot's rows start, then where its next row goes.
    let next = &mut room.slots;
    next.clear();
    next.resize((1 << bits) + 1, 0);
    for rows in sources {
        for r in *rows {
            next[slot(r) + 1] += 1;
        }
    }
    let mut sum = 0;
    for at in next.iter_mut() {
        sum += *at;
        *at = sum;
    }
    room.starts.clone_from(next);
    if room.rows.len() < n {
        room.rows.resize(n, Row::default());
    }
    let piece = &mut room.rows[..n];
    for rows in sources {
        for r in *rows {
            let at = &mut next[slot(r)];
            piece[*at as usize] = Row::unpack(r);
            *at += 1;
        }
    }
    // Rows of one key share a slot.
    let mut events = n as u64;
    for s in room.starts.windows(2) {
        let shared = &mut piece[s[0] as usize..s[1] as usize];
        if shared.len() < 2 {
            continue;
        }
        shared.sort_unstable_by_key(Row::key);
        for event in shared.chunk_by_mut(|a, b| a.key() == b.key()) {
            if event.len() > 1 {
                events -= event.len() as u64 - 1;
                event.sort_by(|a, b| order.rows(a, b, ties));
            }
        }
    }
    (piece, events)
}

/// Room a thread reuses from part to part while it sorts them, so that it
/// is neither allocated nor cleared for each part.
#[derive(Default)]
struct PartRoom {
    slots: Vec<u32>,
    starts: Vec<u32>,
    rows: Vec<Row>,
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
        write_index(self.table, &self.hasher, self.shard, self.shards, writer)
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
            Part::File(path) => {
                read_columns(&path, &mut |columns| writer.push_piece(&Piece::of(columns)))
            }
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
    /// Layers added by incremental commits since `files` were written
    /// (`layer-K.arrow`, oldest first): each one file of every valid record
    /// of the input files that commit added, sorted like an index file.
    /// Present only in index format 2.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<IndexFile>,
    /// Per day (`YYYY-MM-DD`), per input file (its position in `inputs`):
    /// the events whose survivor is in that file. Absent when the commit
    /// that wrote the index did not count every event's day (a run limited
    /// to some days); `tally status` then reads the whole index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<Days>,
}

/// Per day, per input file: events whose survivor is there.
pub type Days = std::collections::BTreeMap<String, std::collections::BTreeMap<u32, u64>>;

/// The version of a manifest with layers.
pub const LAYERED_FORMAT_VERSION: u32 = 2;

/// At most this many layers: an incremental commit that would add more
/// recomputes from every input instead, which writes a fresh index.
pub const MAX_LAYERS: usize = 16;

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

/// The buffer in front of an index file: it gathers the small pieces of
/// the IPC format (headers, padding), while a column's values, bigger than
/// this, go straight from the batch to the file.
const FILE_BUFFER: usize = 64 << 10;

struct Open {
    number: u32,
    path: PathBuf,
    writer: FileWriter<BufWriter<Hashing>>,
    rows: u64,
}

/// Index rows in index order, column by column, as a batch of an index
/// file holds them.
#[derive(Debug, Default)]
struct Columns {
    id_hash: Vec<u64>,
    id_hash_low: Vec<u64>,
    occurred_at: Vec<i64>,
    ingested_at: Vec<i64>,
    fields: Vec<u64>,
    source: Vec<u32>,
}

impl Columns {
    fn with_capacity(rows: usize) -> Columns {
        Columns {
            id_hash: Vec::with_capacity(rows),
            id_hash_low: Vec::with_capacity(rows),
            occurred_at: Vec::with_capacity(rows),
            ingested_at: Vec::with_capacity(rows),
            fields: Vec::with_capacity(rows),
            source: Vec::with_capacity(rows),
        }
    }

    /// The columns of sorted rows.
    fn of(rows: &[Row]) -> Columns {
        Columns {
            id_hash: rows.iter().map(|r| r.id_hash).collect(),
            id_hash_low: rows.iter().map(|r| r.id_hash_low).collect(),
            occurred_at: rows.iter().map(|r| r.occurred_at).collect(),
            ingested_at: rows.iter().map(|r| r.ingested_at).collect(),
            fields: rows.iter().map(|r| r.fields).collect(),
            source: rows.iter().map(|r| r.source).collect(),
        }
    }

    fn len(&self) -> usize {
        self.id_hash.len()
    }

    fn is_empty(&self) -> bool {
        self.id_hash.is_empty()
    }

    fn push(&mut self, e: &Entry) {
        self.id_hash.push(e.id_hash);
        self.id_hash_low.push(e.id_hash_low);
        self.occurred_at.push(e.occurred_at);
        self.ingested_at.push(e.ingested_at);
        self.fields.push(e.fields);
        self.source.push(e.source);
    }

    /// Appends rows `range` of `other`.
    fn extend(&mut self, other: &Columns, range: std::ops::Range<usize>) {
        self.id_hash
            .extend_from_slice(&other.id_hash[range.clone()]);
        self.id_hash_low
            .extend_from_slice(&other.id_hash_low[range.clone()]);
        self.occurred_at
            .extend_from_slice(&other.occurred_at[range.clone()]);
        self.ingested_at
            .extend_from_slice(&other.ingested_at[range.clone()]);
        self.fields.extend_from_slice(&other.fields[range.clone()]);
        self.source.extend_from_slice(&other.source[range]);
    }

    fn entry(&self, i: usize) -> Entry {
        Entry {
            id_hash: self.id_hash[i],
            id_hash_low: self.id_hash_low[i],
            occurred_at: self.occurred_at[i],
            ingested_at: self.ingested_at[i],
            fields: self.fields[i],
            source: self.source[i],
        }
    }

    /// The columns as a batch of an index file (they are moved, not copied).
    fn batch(self, schema: SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from(self.id_hash)),
            Arc::new(UInt64Array::from(self.id_hash_low)),
            Arc::new(Int64Array::from(self.occurred_at)),
            Arc::new(Int64Array::from(self.ingested_at)),
            Arc::new(UInt64Array::from(self.fields)),
            Arc::new(UInt32Array::from(self.source)),
        ];
        RecordBatch::try_new(schema, columns)
    }
}

/// Index rows in columns, with how many events (distinct keys) they hold
/// and where they first break the key order, if anywhere: what the writer
/// checks, found apart from it (rows sorted here come with both, counted
/// while they were sorted, on every core).
struct Piece {
    columns: Columns,
    events: u64,
    /// A key that comes after a greater one, and that one.
    disorder: Option<((u64, u64), (u64, u64))>,
}

impl Piece {
    /// Rows from elsewhere, checked one by one.
    fn of(columns: Columns) -> Piece {
        let mut events = 0;
        let mut disorder = None;
        let mut last = None;
        for key in columns
            .id_hash
            .iter()
            .copied()
            .zip(columns.id_hash_low.iter().copied())
        {
            match last {
                Some(last) if key < last => {
                    disorder.get_or_insert((key, last));
                }
                Some(last) if key == last => {}
                _ => events += 1,
            }
            last = Some(key);
        }
        Piece {
            columns,
            events,
            disorder,
        }
    }

    fn key(&self, i: usize) -> (u64, u64) {
        (self.columns.id_hash[i], self.columns.id_hash_low[i])
    }
}

fn disorder(key: (u64, u64), last: (u64, u64)) -> IndexError {
    IndexError::Order(format!(
        "key {:016x}{:016x} comes after {:016x}{:016x}",
        key.0, key.1, last.0, last.1
    ))
}

/// Writes entries, pushed in index order, into index files: each entry into
/// the file of its key, in batches of [`BATCH_ROWS`] counted from the start of
/// each file, so that the bytes depend on the entries alone, never on how
/// they were pushed.
pub struct IndexWriter {
    paths: Vec<PathBuf>,
    open: Option<Open>,
    next: u32,
    batch: Columns,
    done: Vec<IndexFile>,
    last: Option<(u64, u64)>,
    records: u64,
    events: u64,
    days: DayCounts,
}

/// Events per day and input file, counted from each event's first record
/// (its survivor) as entries are written.
#[derive(Debug, Default)]
struct DayCounts {
    /// The day of `per_day[0]`.
    first: i32,
    /// Per day from `first`, per input file: events.
    per_day: Vec<Vec<u64>>,
}

impl DayCounts {
    fn add(&mut self, day: i32, source: u32) {
        if self.per_day.is_empty() {
            self.first = day;
        }
        if day < self.first {
            let shift = (self.first - day) as usize;
            self.per_day
                .splice(0..0, std::iter::repeat_with(Vec::new).take(shift));
            self.first = day;
        }
        let d = (day - self.first) as usize;
        if d >= self.per_day.len() {
            self.per_day.resize_with(d + 1, Vec::new);
        }
        let sources = &mut self.per_day[d];
        let s = source as usize;
        if s >= sources.len() {
            sources.resize(s + 1, 0);
        }
        sources[s] += 1;
    }

    fn days(&self) -> Days {
        let mut days = Days::new();
        for (d, sources) in self.per_day.iter().enumerate() {
            let counted: std::collections::BTreeMap<u32, u64> = sources
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(s, n)| (s as u32, *n))
                .collect();
            if !counted.is_empty() {
                days.insert(format_day(self.first + d as i32), counted);
            }
        }
        days
    }
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
    /// Per day, per input file: the events whose survivor is there, when
    /// the run counted them all.
    pub days: Option<Days>,
    /// For a layer added to a published index: that index. `files` is then
    /// the one layer file, `records` its rows and `events` the events of the
    /// whole index.
    pub base: Option<Base>,
}

/// The published index a layer is added to.
#[derive(Debug, Clone)]
pub struct Base {
    /// The commit that wrote it: the layer goes only onto that commit.
    pub commit: u64,
    /// Its directory (`OUT/_tally/survivors`).
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// The input files of the index with the layer: the recorded ones in
    /// their recorded order (their paths and times as found now), then the
    /// new ones.
    pub inputs: Vec<IndexedInput>,
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
            batch: Columns::default(),
            done: Vec::new(),
            last: None,
            records: 0,
            events: 0,
            days: DayCounts::default(),
        }
    }

    fn files(&self) -> u32 {
        self.paths.len() as u32
    }

    /// Appends entries, which must come after everything pushed before.
    pub fn push(&mut self, entries: impl IntoIterator<Item = Entry>) -> Result<(), IndexError> {
        let mut columns = Columns::default();
        for e in entries {
            columns.push(&e);
            if columns.len() == BATCH_ROWS {
                self.push_piece(&Piece::of(std::mem::take(&mut columns)))?;
            }
        }
        self.push_piece(&Piece::of(columns))
    }

    /// Appends rows, which must come after everything pushed before, to the
    /// batches of their files.
    fn push_piece(&mut self, piece: &Piece) -> Result<(), IndexError> {
        let columns = &piece.columns;
        if columns.is_empty() {
            return Ok(());
        }
        if let Some((key, last)) = piece.disorder {
            return Err(disorder(key, last));
        }
        let first = piece.key(0);
        let mut events = piece.events;
        match self.last {
            Some(last) if first < last => return Err(disorder(first, last)),
            Some(last) if first == last => events -= 1,
            _ => {}
        }
        self.events += events;
        // Each event's first record is its survivor: counted by its day
        // and file.
        let mut previous = self.last;
        for i in 0..columns.len() {
            let key = piece.key(i);
            if previous != Some(key) {
                self.days
                    .add(day_of(columns.occurred_at[i]), columns.source[i]);
                previous = Some(key);
            }
        }
        self.last = Some(piece.key(columns.len() - 1));
        let files = self.files();
        let mut at = 0;
        while at < columns.len() {
            let file = file_of(columns.id_hash[at], files);
            while self.open.as_ref().is_none_or(|o| o.number < file) {
                self.close()?;
                self.open_next()?;
            }
            // The keys are in order: this file's rows come first.
            let end = at + columns.id_hash[at..].partition_point(|&hi| file_of(hi, files) <= file);
            while at < end {
                if self.batch.is_empty() {
                    self.batch = Columns::with_capacity(BATCH_ROWS);
                }
                let take = (end - at).min(BATCH_ROWS - self.batch.len());
                self.batch.extend(columns, at..at + take);
                at += take;
                if self.batch.len() == BATCH_ROWS {
                    self.flush()?;
                }
            }
        }
        self.records += columns.len() as u64;
        Ok(())
    }

    fn open_next(&mut self) -> Result<(), IndexError> {
        let number = self.next;
        let path = self.paths[number as usize].clone();
        let file = File::create(&path).map_err(|e| io(&path, e))?;
        let out = BufWriter::with_capacity(
            FILE_BUFFER,
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
        let rows = self.batch.len() as u64;
        let batch = std::mem::take(&mut self.batch)
            .batch(open.writer.schema().clone())
            .map_err(|e| io(&open.path, e))?;
        open.writer.write(&batch).map_err(|e| io(&open.path, e))?;
        open.rows += rows;
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
    pub fn finish(self) -> Result<(Vec<IndexFile>, u64, u64), IndexError> {
        self.finish_counted()
            .map(|(files, records, events, _)| (files, records, events))
    }

    /// [`IndexWriter::finish`], with the events of each day per input file.
    pub fn finish_counted(mut self) -> Result<(Vec<IndexFile>, u64, u64, Days), IndexError> {
        self.close()?;
        while self.next < self.files() {
            self.open_next()?;
            self.close()?;
        }
        let days = self.days.days();
        Ok((self.done, self.records, self.events, days))
    }
}

/// Reads an index file (or a reduce task's part of the index), handing each
/// batch's entries to `each`, in order.
pub fn read_file(
    path: &Path,
    each: &mut dyn FnMut(Vec<Entry>) -> Result<(), IndexError>,
) -> Result<(), IndexError> {
    read_columns(path, &mut |columns| {
        each((0..columns.len()).map(|i| columns.entry(i)).collect())
    })
}

/// Reads an index file, handing each batch's columns to `each`, in order.
fn read_columns(
    path: &Path,
    each: &mut dyn FnMut(Columns) -> Result<(), IndexError>,
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
        let u64s = |i: usize| {
            batch
                .column(i)
                .as_primitive::<UInt64Type>()
                .values()
                .to_vec()
        };
        let i64s = |i: usize| {
            batch
                .column(i)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        };
        each(Columns {
            id_hash: u64s(0),
            id_hash_low: u64s(1),
            occurred_at: i64s(2),
            ingested_at: i64s(3),
            fields: u64s(4),
            source: batch
                .column(5)
                .as_primitive::<UInt32Type>()
                .values()
                .to_vec(),
        })?;
    }
    Ok(())
}

/// Installs a built index in a staged output: moves its files into
/// `_tally/survivors/` and writes the manifest naming `inputs` (the run's,
/// in input order). A layer ([`Built::base`]) is installed with
/// the files of the index it is added to, linked. Returns what the commit
/// log records of it.
pub fn install(
    built: &Built,
    inputs: &[InputSummary],
    max_line_bytes: usize,
    staging: &Path,
) -> Result<IndexSummary, CommitError> {
    let target = dir(staging);
    let fail = |path: &Path, source: std::io::Error| CommitError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(&target).map_err(|e| fail(&target, e))?;
    for f in &built.files {
        let (from, to) = (built.dir.join(&f.file), target.join(&f.file));
        // A rename where the work directory is on the output's file system,
        // else a copy.
        if std::fs::rename(&from, &to).is_err() {
            std::fs::copy(&from, &to).map_err(|e| fail(&to, e))?;
        }
    }
    let days = built.days.clone();
    let manifest = match &built.base {
        None => Manifest {
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
            layers: Vec::new(),
            days,
        },
        Some(base) => {
            let published = &base.manifest;
            for f in published.files.iter().chain(&published.layers) {
                let (from, to) = (base.dir.join(&f.file), target.join(&f.file));
                if std::fs::hard_link(&from, &to).is_err() {
                    std::fs::copy(&from, &to).map_err(|e| fail(&to, e))?;
                }
            }
            Manifest {
                index_format: LAYERED_FORMAT_VERSION,
                shard_format: SHARD_FORMAT_VERSION,
                records: published.records + built.records,
                events: built.events,
                // Status checked that the recorded files read alike with
                // this run's limit.
                max_line_bytes: max_line_bytes as u64,
                inputs: base.inputs.clone(),
                files: published.files.clone(),
                layers: published
                    .layers
                    .iter()
                    .chain(&built.files)
                    .cloned()
                    .collect(),
                days,
            }
        }
    };
    let text = serde_json::to_string_pretty(&manifest).expect("manifests serialize") + "\n";
    commit::write_staged(&manifest_path(staging), text.as_bytes())?;
    Ok(IndexSummary {
        manifest_blake3: blake3::hash(text.as_bytes()).to_hex().to_string(),
        records: manifest.records,
        events: manifest.events,
    })
}

/// The name of the `k`th layer file (from 1).
pub fn layer_name(k: usize) -> String {
    format!("layer-{k}.arrow")
}

/// An index file read into memory, its batches decoded in place.
struct Loaded {
    batches: Vec<RecordBatch>,
    /// The first row of each batch, and the total rows last.
    starts: Vec<usize>,
    /// Each batch's key columns, and its last key.
    high: Vec<arrow::buffer::ScalarBuffer<u64>>,
    low: Vec<arrow::buffer::ScalarBuffer<u64>>,
    last: Vec<(u64, u64)>,
}

impl Loaded {
    /// Reads `file` of the index in `dir`, checking its size and rows, and
    /// with `verify` its blake3, against the manifest's record of it.
    fn read(dir: &Path, file: &IndexFile, verify: bool) -> Result<Loaded, IndexError> {
        let path = dir.join(&file.file);
        let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
        if bytes.len() as u64 != file.bytes {
            return Err(damaged(
                &path,
                format!("{} bytes, recorded {}", bytes.len(), file.bytes),
            ));
        }
        if verify {
            let actual = blake3::Hasher::new()
                .update_rayon(&bytes)
                .finalize()
                .to_hex()
                .to_string();
            if actual != file.blake3 {
                return Err(damaged(
                    &path,
                    format!("blake3 {actual}, recorded {}", file.blake3),
                ));
            }
        }
        let buffer = arrow::buffer::Buffer::from_vec(bytes);
        let batches = decode(&buffer).map_err(|e| damaged(&path, e))?;
        let mut starts = vec![0];
        let (mut high, mut low, mut last) = (Vec::new(), Vec::new(), Vec::new());
        for b in &batches {
            if b.columns().iter().any(|c| c.null_count() > 0) {
                return Err(damaged(&path, "a column has nulls"));
            }
            starts.push(starts.last().copied().unwrap_or(0) + b.num_rows());
            let h = b.column(0).as_primitive::<UInt64Type>().values().clone();
            let l = b.column(1).as_primitive::<UInt64Type>().values().clone();
            if let (Some(&x), Some(&y)) = (h.last(), l.last()) {
                last.push((x, y));
                high.push(h);
                low.push(l);
            } else {
                return Err(damaged(&path, "an empty batch"));
            }
        }
        if starts.last().copied().unwrap_or(0) as u64 != file.rows {
            return Err(damaged(
                &path,
                format!("not the {} rows recorded", file.rows),
            ));
        }
        Ok(Loaded {
            batches,
            starts,
            high,
            low,
            last,
        })
    }

    fn rows(&self) -> usize {
        self.starts.last().copied().unwrap_or(0)
    }

    /// Row `r` of batch `b`.
    fn entry_at(&self, b: usize, r: usize) -> Entry {
        let batch = &self.batches[b];
        let u64s = |c: usize| batch.column(c).as_primitive::<UInt64Type>().value(r);
        let i64s = |c: usize| batch.column(c).as_primitive::<Int64Type>().value(r);
        Entry {
            id_hash: self.high[b][r],
            id_hash_low: self.low[b][r],
            occurred_at: i64s(2),
            ingested_at: i64s(3),
            fields: u64s(4),
            source: batch.column(5).as_primitive::<UInt32Type>().value(r),
        }
    }

    /// Every row, in order.
    fn entries(&self) -> Vec<Entry> {
        let mut out = Vec::with_capacity(self.rows());
        for b in 0..self.batches.len() {
            out.extend((0..self.batches[b].num_rows()).map(|r| self.entry_at(b, r)));
        }
        out
    }

    /// The rows of `key`, in the file's order.
    fn find(&self, key: (u64, u64)) -> Vec<Entry> {
        let mut found = Vec::new();
        let mut b = self.last.partition_point(|&k| k < key);
        if b == self.batches.len() {
            return found;
        }
        let (high, low) = (&self.high[b], &self.low[b]);
        let (mut lo, mut hi) = (0, high.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if (high[mid], low[mid]) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut r = lo;
        // The rows of one key may run on into the next batches.
        while b < self.batches.len() {
            if r == self.high[b].len() {
                b += 1;
                r = 0;
                continue;
            }
            if (self.high[b][r], self.low[b][r]) != key {
                break;
            }
            found.push(self.entry_at(b, r));
            r += 1;
        }
        found
    }
}

/// Where one batch of an index file lies: its rows and the byte range of
/// each column's values.
struct BatchAt {
    rows: usize,
    /// Per column: the file offset and length of its values.
    values: [(u64, usize); 6],
}

/// An index file looked up through its key column: the `id_hash` column
/// is read batch by batch, and the other columns only for the rows of the
/// keys looked up (whole batches where many keys fall).
struct Keys {
    file: File,
    path: PathBuf,
    batches: Vec<BatchAt>,
}

/// Above this many rows found in one batch, its columns are read whole.
const ROWS_READ_ONE_BY_ONE: usize = 256;

impl Keys {
    fn open(dir: &Path, file: &IndexFile) -> Result<Keys, IndexError> {
        use std::os::unix::fs::FileExt;
        let path = dir.join(&file.file);
        let opened = File::open(&path).map_err(|e| io(&path, e))?;
        let len = opened.metadata().map_err(|e| io(&path, e))?.len();
        if len != file.bytes {
            return Err(damaged(
                &path,
                format!("{len} bytes, recorded {}", file.bytes),
            ));
        }
        let read_at = |offset: u64, bytes: usize| -> Result<Vec<u8>, IndexError> {
            let mut buf = vec![0u8; bytes];
            opened
                .read_exact_at(&mut buf, offset)
                .map_err(|e| damaged(&path, format!("at byte {offset}: {e}")))?;
            Ok(buf)
        };
        let len = usize::try_from(len).map_err(|e| damaged(&path, e))?;
        if len < 10 {
            return Err(damaged(&path, "too short for an Arrow IPC file"));
        }
        let trailer = read_at((len - 10) as u64, 10)?;
        let footer_at = footer_start(len, &trailer).map_err(|e| damaged(&path, e))?;
        let footer_bytes = read_at(footer_at as u64, len - 10 - footer_at)?;
        let (footer, _) = index_footer(&footer_bytes).map_err(|e| damaged(&path, e))?;
        let widths = [8usize, 8, 8, 8, 8, 4];
        let mut batches = Vec::new();
        let mut rows = 0u64;
        for block in footer.recordBatches().into_iter().flatten() {
            let bad =
                |what: &str| damaged(&path, format!("batch at byte {}: {what}", block.offset()));
            let offset = u64::try_from(block.offset()).map_err(|_| bad("a negative offset"))?;
            let meta_len =
                usize::try_from(block.metaDataLength()).map_err(|_| bad("a negative length"))?;
            let body_len =
                u64::try_from(block.bodyLength()).map_err(|_| bad("a negative length"))?;
            let body = offset + meta_len as u64;
            if body + body_len > footer_at as u64 || meta_len < 8 {
                return Err(bad("runs past the file's end"));
            }
            let meta = read_at(offset, meta_len)?;
            // A continuation marker, the metadata's length, the metadata.
            let start = if meta[..4] == [0xff; 4] { 8 } else { 4 };
            let message =
                arrow::ipc::root_as_message(&meta[start..]).map_err(|e| bad(&e.to_string()))?;
            let header = message
                .header_as_record_batch()
                .ok_or_else(|| bad("not a record batch"))?;
            if header.compression().is_some() {
                return Err(bad("compressed"));
            }
            let n = usize::try_from(header.length()).map_err(|_| bad("a negative row count"))?;
            if header
                .nodes()
                .into_iter()
                .flatten()
                .any(|node| node.null_count() != 0)
            {
                return Err(bad("a column has nulls"));
            }
            let buffers: Vec<(u64, u64)> = header
                .buffers()
                .into_iter()
                .flatten()
                .map(|b| (b.offset() as u64, b.length() as u64))
                .collect();
            if buffers.len() != 12 {
                return Err(bad("not six columns"));
            }
            let mut values = [(0u64, 0usize); 6];
            for (c, width) in widths.iter().enumerate() {
                let (at, length) = buffers[2 * c + 1];
                if length < (n * width) as u64 || at + length > body_len {
                    return Err(bad("a column shorter than its rows"));
                }
                values[c] = (body + at, n * width);
            }
            batches.push(BatchAt { rows: n, values });
            rows += n as u64;
        }
        if rows != file.rows {
            return Err(damaged(
                &path,
                format!("not the {} rows recorded", file.rows),
            ));
        }
        Ok(Keys {
            file: opened,
            path,
            batches,
        })
    }

    /// Rows `rows` of column `c` of batch `b`, each widened to 64 bits.
    fn column(
        &self,
        b: usize,
        c: usize,
        rows: std::ops::Range<usize>,
        into: &mut Vec<u8>,
    ) -> Result<Vec<u64>, IndexError> {
        use std::os::unix::fs::FileExt;
        let width = if c == 5 { 4 } else { 8 };
        let (at, _) = self.batches[b].values[c];
        into.resize(rows.len() * width, 0);
        self.file
            .read_exact_at(into, at + (rows.start * width) as u64)
            .map_err(|e| io(&self.path, e))?;
        Ok(into
            .chunks_exact(width)
            .map(|w| {
                let mut word = [0u8; 8];
                word[..width].copy_from_slice(w);
                u64::from_le_bytes(word)
            })
            .collect())
    }

    /// Rows `rows` of batch `b`, whose `id_hash` values are `high`.
    fn entries(
        &self,
        b: usize,
        rows: std::ops::Range<usize>,
        high: &[u64],
        buffer: &mut Vec<u8>,
    ) -> Result<Vec<Entry>, IndexError> {
        let columns: Vec<Vec<u64>> = (1..6)
            .map(|c| self.column(b, c, rows.clone(), buffer))
            .collect::<Result<_, _>>()?;
        Ok(rows
            .enumerate()
            .map(|(i, r)| Entry {
                id_hash: high[r],
                id_hash_low: columns[0][i],
                occurred_at: columns[1][i] as i64,
                ingested_at: columns[2][i] as i64,
                fields: columns[3][i],
                source: columns[4][i] as u32,
            })
            .collect())
    }

    /// Every event of `keys` (sorted) in this file, with its rows: the key
    /// column is walked once beside the keys.
    fn find(
        &self,
        keys: &[Key],
        found: &mut std::collections::HashMap<Key, Vec<Entry>>,
    ) -> Result<(), IndexError> {
        let wanted: std::collections::HashSet<Key> = keys.iter().copied().collect();
        let mut highs: Vec<u64> = keys.iter().map(|k| k.0).collect();
        highs.dedup();
        let (mut bytes, mut buffer) = (Vec::new(), Vec::new());
        let mut k = 0;
        for (b, batch) in self.batches.iter().enumerate() {
            if k == highs.len() {
                break;
            }
            let high = self.column(b, 0, 0..batch.rows, &mut bytes)?;
            // The runs of rows whose `id_hash` is a key's; a run that ends
            // the batch may go on in the next one, so its key stays.
            let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
            let mut i = 0;
            while i < high.len() && k < highs.len() {
                match high[i].cmp(&highs[k]) {
                    Ordering::Less => i += 1,
                    Ordering::Greater => k += 1,
                    Ordering::Equal => {
                        let from = i;
                        while i < high.len() && high[i] == highs[k] {
                            i += 1;
                        }
                        runs.push(from..i);
                        if i < high.len() {
                            k += 1;
                        }
                    }
                }
            }
            let total: usize = runs.iter().map(|r| r.len()).sum();
            if total == 0 {
                continue;
            }
            let entries: Vec<Entry> = if total > ROWS_READ_ONE_BY_ONE {
                let all = self.entries(b, 0..batch.rows, &high, &mut buffer)?;
                runs.iter().flat_map(|r| all[r.clone()].to_vec()).collect()
            } else {
                let mut out = Vec::with_capacity(total);
                for r in runs {
                    out.extend(self.entries(b, r, &high, &mut buffer)?);
                }
                out
            };
            for e in entries {
                if wanted.contains(&e.key()) {
                    found.entry(e.key()).or_default().push(e);
                }
            }
        }
        Ok(())
    }
}

/// Where the footer of an Arrow IPC file of `len` bytes starts, from the
/// file's last 10 bytes.
fn footer_start(len: usize, trailer: &[u8]) -> Result<usize, String> {
    let trailer: [u8; 10] = trailer.try_into().map_err(|_| "no trailer")?;
    let footer_len = arrow::ipc::reader::read_footer_length(trailer).map_err(|e| e.to_string())?;
    (len - 10)
        .checked_sub(footer_len)
        .ok_or_else(|| "the footer runs past the file's start".to_string())
}

/// The footer of an index file and its schema, checked to be an index
/// file's.
fn index_footer(bytes: &[u8]) -> Result<(arrow::ipc::Footer<'_>, Schema), String> {
    let footer = arrow::ipc::root_as_footer(bytes).map_err(|e| e.to_string())?;
    let schema = arrow::ipc::convert::try_fb_to_schema(footer.schema().ok_or("no schema")?)
        .map_err(|e| e.to_string())?;
    if schema.fields() != self::schema(0, 1).fields() {
        return Err(format!(
            "not an index file of index format {INDEX_FORMAT_VERSION}"
        ));
    }
    Ok((footer, schema))
}

/// The record batches of an index file held in `buffer`, without copying.
fn decode(buffer: &arrow::buffer::Buffer) -> Result<Vec<RecordBatch>, String> {
    use arrow::ipc::reader::FileDecoder;
    let len = buffer.len();
    if len < 10 {
        return Err("too short for an Arrow IPC file".to_string());
    }
    let footer_at = footer_start(len, &buffer[len - 10..])?;
    let (footer, schema) = index_footer(&buffer[footer_at..len - 10])?;
    let decoder = FileDecoder::new(Arc::new(schema), footer.version());
    let mut batches = Vec::new();
    for block in footer.recordBatches().into_iter().flatten() {
        let block_len = block.bodyLength() as usize + block.metaDataLength() as usize;
        let offset = usize::try_from(block.offset()).map_err(|e| e.to_string())?;
        if offset
            .checked_add(block_len)
            .is_none_or(|end| end > footer_at)
        {
            return Err("a batch runs past the file's end".to_string());
        }
        let data = buffer.slice_with_length(offset, block_len);
        if let Some(batch) = decoder
            .read_record_batch(block, &data)
            .map_err(|e| e.to_string())?
        {
            batches.push(batch);
        }
    }
    Ok(batches)
}

/// The end of the records of the event of `entries[from]`, which are
/// adjacent: a scan, as an event has a record or two (a binary search
/// would cost about twenty key comparisons an event).
#[inline]
pub fn group_end(entries: &[Entry], from: usize) -> usize {
    let key = entries[from].key();
    let mut end = from + 1;
    while end < entries.len() && entries[end].key() == key {
        end += 1;
    }
    end
}

/// Stable-merges the records of one event from several files of an index
/// (each in survivor order) into survivor order. Records of one event in
/// two files never tie on both timestamps: a layer is added only when none
/// of its records does with a recorded one.
fn merge_group(group: &mut [Entry]) {
    group.sort_by_key(|e| (e.ingested_at, e.occurred_at));
}

/// Every event of `keys` (sorted, distinct) that the index in `out`
/// described by `manifest` knows, with its records in survivor order.
/// Reads only the index files that hold one of the keys; checks their
/// sizes and rows, and with `verify` their blake3 (layers always).
pub fn lookup(
    out: &Path,
    manifest: &Manifest,
    keys: &[(u64, u64)],
    verify: bool,
) -> Result<std::collections::HashMap<Key, Vec<Entry>>, IndexError> {
    let dir = dir(out);
    let files = manifest.files.len() as u32;
    // Each index file's keys, looked up in parallel.
    let mut jobs = Vec::new();
    let mut at = 0;
    for (j, file) in manifest.files.iter().enumerate() {
        let from = at;
        while at < keys.len() && file_of(keys[at].0, files) == j as u32 {
            at += 1;
        }
        if from < at {
            jobs.push((file, &keys[from..at]));
        }
    }
    let parts = jobs
        .into_par_iter()
        .map(|(file, keys)| {
            let mut found = std::collections::HashMap::new();
            if verify {
                let loaded = Loaded::read(&dir, file, true)?;
                for &key in keys {
                    let rows = loaded.find(key);
                    if !rows.is_empty() {
                        found.insert(key, rows);
                    }
                }
            } else {
                Keys::open(&dir, file)?.find(keys, &mut found)?;
            }
            Ok(found)
        })
        .collect::<Result<Vec<_>, IndexError>>()?;
    // Every key lies in one file only.
    let mut found: std::collections::HashMap<Key, Vec<Entry>> = std::collections::HashMap::new();
    for part in parts {
        found.extend(part);
    }
    for layer in &manifest.layers {
        let loaded = Loaded::read(&dir, layer, true)?;
        for &key in keys {
            let rows = loaded.find(key);
            if !rows.is_empty() {
                let group = found.entry(key).or_default();
                group.extend(rows);
                merge_group(group);
            }
        }
    }
    Ok(found)
}

/// The layers of the index in `out` described by `manifest`, their entries
/// sorted in index order and cut at the index files' key ranges: the
/// entries of index file `j` are `entries[ranges[j].clone()]`.
struct Layered {
    entries: Vec<Entry>,
    ranges: Vec<std::ops::Range<usize>>,
}

impl Layered {
    fn read(dir: &Path, manifest: &Manifest) -> Result<Layered, IndexError> {
        let mut entries: Vec<Entry> = Vec::new();
        for layer in &manifest.layers {
            entries.extend(Loaded::read(dir, layer, true)?.entries());
        }
        // Stable: a layer's records of one event keep their order.
        entries.sort_by_key(|e| (e.key(), e.ingested_at, e.occurred_at));
        let files = manifest.files.len() as u32;
        let mut ranges = Vec::with_capacity(manifest.files.len());
        let mut at = 0;
        for j in 0..files {
            let from = at;
            while at < entries.len() && file_of(entries[at].id_hash, files) == j {
                at += 1;
            }
            ranges.push(from..at);
        }
        if at != entries.len() {
            return Err(damaged(
                &dir.join(layer_name(1)),
                "a layer holds a key outside every index file",
            ));
        }
        Ok(Layered { entries, ranges })
    }

    /// Index file `j` of `manifest` read, with the layers' entries of its
    /// keys merged in.
    fn merged(&self, dir: &Path, manifest: &Manifest, j: usize) -> Result<Vec<Entry>, IndexError> {
        let base = Loaded::read(dir, &manifest.files[j], true)?.entries();
        let layer = &self.entries[self.ranges[j].clone()];
        if layer.is_empty() {
            return Ok(base);
        }
        let mut merged = Vec::with_capacity(base.len() + layer.len());
        let (mut b, mut l) = (0, 0);
        while b < base.len() || l < layer.len() {
            let key = match (base.get(b), layer.get(l)) {
                (Some(x), Some(y)) => x.key().min(y.key()),
                (Some(x), None) => x.key(),
                (None, Some(y)) => y.key(),
                (None, None) => break,
            };
            let start = merged.len();
            while b < base.len() && base[b].key() == key {
                merged.push(base[b]);
                b += 1;
            }
            let only_base = l >= layer.len() || layer[l].key() != key;
            while l < layer.len() && layer[l].key() == key {
                merged.push(layer[l]);
                l += 1;
            }
            if !only_base {
                merge_group(&mut merged[start..]);
            }
        }
        Ok(merged)
    }
}

/// Reads the whole index in `out` described by `manifest`, its layers
/// merged in, handing each index file's entries (in index order) to
/// `each`, one file after the other; the next file is read while `each`
/// takes one. Checks every file against the manifest.
pub fn read_merged(
    out: &Path,
    manifest: &Manifest,
    each: &mut dyn FnMut(Vec<Entry>) -> Result<(), IndexError>,
) -> Result<(), IndexError> {
    let dir = dir(out);
    let layered = Layered::read(&dir, manifest)?;
    std::thread::scope(|scope| {
        let (send, receive) = std::sync::mpsc::sync_channel(1);
        let (dir, layered) = (&dir, &layered);
        scope.spawn(move || {
            for j in 0..manifest.files.len() {
                let merged = layered.merged(dir, manifest, j);
                let failed = merged.is_err();
                if send.send(merged).is_err() || failed {
                    return;
                }
            }
        });
        // The reader stops at the first error, or when this side stops
        // taking (dropping `receive` on an error of `each`).
        for merged in receive {
            each(merged?)?;
        }
        Ok(())
    })
}

/// Reads the whole index in `out` described by `manifest`, its layers
/// merged in, and hands each index file's entries (in index order) with the
/// file's number to `each`, files in parallel; returns what `each` gives,
/// in file order. Checks every file against the manifest.
pub fn map_merged<R: Send, E: Send + From<IndexError>>(
    out: &Path,
    manifest: &Manifest,
    each: &(dyn Fn(usize, Vec<Entry>) -> Result<R, E> + Sync),
) -> Result<Vec<R>, E> {
    let dir = dir(out);
    let layered = Layered::read(&dir, manifest)?;
    (0..manifest.files.len())
        .into_par_iter()
        .map(|j| each(j, layered.merged(&dir, manifest, j)?))
        .collect()
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
    if manifest.index_format != INDEX_FORMAT_VERSION
        && manifest.index_format != LAYERED_FORMAT_VERSION
    {
        return Err(damaged(
            &path,
            format!(
                "index format {}; this Tally reads index formats {INDEX_FORMAT_VERSION} and {LAYERED_FORMAT_VERSION}",
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
            Ok::<_, IndexError>(())
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
    /// The manifest of the index files `written` into `dir`, with a layer
    /// of one entry written beside them.
    fn with_layer(
        dir: &Path,
        (files, records, events, days): (Vec<IndexFile>, u64, u64, Days),
        entry: Entry,
    ) -> Manifest {
        let mut layer = IndexWriter::single(&dir.join(layer_name(1)));
        layer.push([entry]).unwrap();
        let (layers, ..) = layer.finish().unwrap();
        Manifest {
            index_format: LAYERED_FORMAT_VERSION,
            shard_format: SHARD_FORMAT_VERSION,
            records: records + 1,
            events,
            max_line_bytes: 0,
            inputs: Vec::new(),
            files,
            layers,
            days: Some(days),
        }
    }

    /// Looking keys up, reading only the key columns or the whole file,
    /// finds every record of an event, even one whose records run on from
    /// one batch into the next, and nothing for an absent key; a layer's
    /// records are merged in by their timestamps; and the days counted while
    /// writing are the survivors'.
    #[test]
    fn lookups_find_every_record_across_batches_and_layers() {
        let out = tempfile::tempdir().unwrap();
        let dir = dir(out.path());
        std::fs::create_dir_all(&dir).unwrap();
        // Three records an event, keys in order: rows 65,535 to 65,537 are
        // one event's, across the first two batches.
        let entries: Vec<Entry> = (0..70_000u64)
            .map(|i| Entry {
                id_hash: (i / 3) << 40,
                id_hash_low: 7,
                occurred_at: 1_777_636_800_000 + (i % 3) as i64 * 86_400_000,
                ingested_at: 1_777_640_000_000 + (i % 3) as i64 * 10,
                fields: i,
                source: (i % 2) as u32,
            })
            .collect();
        let mut writer = IndexWriter::create(&dir, entries.len() as u64).unwrap();
        writer.push(entries.iter().copied()).unwrap();
        let (files, records, events, days) = writer.finish_counted().unwrap();
        assert_eq!(files.len(), 1);
        // Each event's survivor is its first record: day 0 of the three.
        let survivors = events;
        assert_eq!(
            days.values().flat_map(|s| s.values()).sum::<u64>(),
            survivors
        );
        assert_eq!(days.len(), 1, "{days:?}");
        // A layer: one more record of event 21,845, ingested in between.
        let straddling = (21_845u64 << 40, 7);
        let layer_entry = Entry {
            id_hash: straddling.0,
            id_hash_low: 7,
            occurred_at: 1_777_636_800_000,
            ingested_at: 1_777_640_000_000 + 15,
            fields: 1,
            source: 2,
        };
        let manifest = with_layer(&dir, (files, records, events, days), layer_entry);
        let keys = [
            (0, 7),
            (5 << 40, 8),
            straddling,
            (23_333 << 40, 7),
            (u64::MAX, 0),
        ];
        let quick = lookup(out.path(), &manifest, &keys, false).unwrap();
        let whole = lookup(out.path(), &manifest, &keys, true).unwrap();
        assert_eq!(quick, whole);
        assert_eq!(quick.len(), 3, "absent keys are not found");
        assert_eq!(quick[&(0, 7)], entries[0..3].to_vec());
        assert_eq!(quick[&(23_333 << 40, 7)], entries[69_999..70_000].to_vec());
        let mut expected = entries[65_535..65_538].to_vec();
        expected.insert(2, layer_entry);
        assert_eq!(quick[&straddling], expected, "merged by timestamps");
        // The whole index, layers merged in, as status reads it.
        let mut merged = Vec::new();
        read_merged(out.path(), &manifest, &mut |batch| {
            merged.extend(batch);
            Ok(())
        })
        .unwrap();
        assert_eq!(merged.len(), 70_001);
        assert_eq!(merged[65_535..65_539], expected[..]);
    }

    /// The whole index of several files, a layer merged in, reads the same
    /// file by file in order (the next read ahead) and in parallel; an error
    /// of the reader's caller stops the reading, and a damaged file is
    /// refused either way.
    #[test]
    fn the_whole_index_reads_alike_in_order_and_in_parallel() {
        let out = tempfile::tempdir().unwrap();
        let dir = dir(out.path());
        std::fs::create_dir_all(&dir).unwrap();
        let mut sorted: Vec<Entry> = (0..200_000u64)
            .map(|i| {
                let (hi, lo) = id_key(format!("ev-{i}").as_bytes());
                Entry {
                    id_hash: hi,
                    id_hash_low: lo,
                    occurred_at: 1_777_636_800_000 + i as i64,
                    ingested_at: 1_777_640_000_000 + i as i64,
                    fields: i,
                    source: (i % 3) as u32,
                }
            })
            .collect();
        sorted.sort_by_key(|e| e.key());
        let mut writer = IndexWriter::to_paths((0..4).map(|j| dir.join(file_name(j))).collect());
        writer.push(sorted.iter().copied()).unwrap();
        let (files, records, events, days) = writer.finish_counted().unwrap();
        assert_eq!(files.len(), 4);
        let at = sorted
            .iter()
            .position(|e| file_of(e.id_hash, 4) == 2)
            .unwrap();
        let later = Entry {
            ingested_at: sorted[at].ingested_at + 1,
            fields: 99,
            source: 3,
            ..sorted[at]
        };
        let manifest = with_layer(&dir, (files, records, events, days), later);
        let mut in_order = Vec::new();
        read_merged(out.path(), &manifest, &mut |batch| {
            in_order.push(batch);
            Ok(())
        })
        .unwrap();
        let parallel = map_merged(out.path(), &manifest, &|j, batch| {
            Ok::<_, IndexError>((j, batch))
        })
        .unwrap();
        assert_eq!(
            parallel.iter().map(|(j, _)| *j).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        assert_eq!(
            in_order,
            parallel.into_iter().map(|(_, b)| b).collect::<Vec<_>>()
        );
        let mut expected = sorted.clone();
        expected.insert(at + 1, later);
        assert_eq!(in_order.concat(), expected);

        let mut calls = 0;
        let stopped = read_merged(out.path(), &manifest, &mut |_| {
            calls += 1;
            Err(IndexError::Order("stop".to_string()))
        });
        assert!(matches!(stopped, Err(IndexError::Order(_))));
        assert_eq!(calls, 1);

        let last = dir.join(file_name(3));
        let mut bytes = std::fs::read(&last).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        std::fs::write(&last, bytes).unwrap();
        let damaged =
            |e: &IndexError| matches!(e, IndexError::Damaged { path, .. } if *path == last);
        let err = read_merged(out.path(), &manifest, &mut |_| Ok(())).unwrap_err();
        assert!(damaged(&err), "{err}");
        let err = map_merged(out.path(), &manifest, &|_, _| Ok::<_, IndexError>(())).unwrap_err();
        assert!(damaged(&err), "{err}");
    }

    /// The bytes of index files for fixed entries, as index format 1 has
    /// always written them: a change here is a new index format version.
    #[test]
    fn index_files_keep_their_bytes() {
        let mut sorted: Vec<Entry> = (0..600_000u64)
            .map(|i| {
                let (hi, lo) = id_key(format!("ev-{}", i / 2).as_bytes());
                Entry {
                    id_hash: hi,
                    id_hash_low: lo,
                    occurred_at: 1_777_636_800_000 + (i % 97) as i64 * 3_600_000,
                    ingested_at: 1_777_640_000_000 + i as i64,
                    fields: i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    source: (i % 5) as u32,
                }
            })
            .collect();
        sorted.sort_by_key(|e| (e.key(), e.ingested_at));
        let dir = tempfile::tempdir().unwrap();
        let mut writer =
            IndexWriter::to_paths((0..4).map(|j| dir.path().join(file_name(j))).collect());
        writer.push(sorted.iter().copied()).unwrap();
        let (files, records, events) = writer.finish().unwrap();
        assert_eq!((records, events), (600_000, 300_000));
        let got: Vec<(u64, u64, &str)> = files
            .iter()
            .map(|f| (f.rows, f.bytes, f.blake3.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    150_110,
                    6_607_506,
                    "125c36488c58cd1239cc8af16946af01e4d5be0e8187b816d2faf342b5d6e4c1"
                ),
                (
                    149_794,
                    6_593_810,
                    "3269727ca6807a5216e3f7afb64ce74bce1b1856ff776ec52fa5e556848c799b"
                ),
                (
                    150_428,
                    6_621_586,
                    "7b78ebde4c84e7448b9ff43023d8c677581e01524456fbc6ef7996046bbccab7"
                ),
                (
                    149_668,
                    6_588_178,
                    "e32b01e731d42b6a62901dd2c17663c785ea99134d3f0ea17cfc9ebfd6ca742c"
                ),
            ]
        );
    }

    /// A record with owned strings, for tables built in tests.
    #[derive(Clone)]
    struct Owned {
        id: String,
        occurred: i64,
        ingested: i64,
        creator: String,
        template: String,
        brand: Option<String>,
        codes: [usize; 3],
        country: &'static str,
    }

    impl Owned {
        fn values(&self) -> [Value<'_>; 10] {
            [
                Value::Str(&self.id),
                Value::Int(self.occurred),
                Value::Int(self.ingested),
                Value::Str(&self.creator),
                Value::Str(&self.template),
                self.brand.as_deref().map_or(Value::Null, Value::Str),
                Value::Str(CONTENT_KINDS[self.codes[0]]),
                Value::Str(ACTIONS[self.codes[1]]),
                Value::Str(USER_TIERS[self.codes[2]]),
                Value::Str(self.country),
            ]
        }

        fn record(&self) -> Record {
            Record {
                occurred_at: self.occurred,
                ingested_at: self.ingested,
                creator: self.creator.clone(),
                template: self.template.clone(),
                brand: self.brand.clone(),
                codes: self.codes.map(|c| c as u8),
                country: self.country.as_bytes().try_into().unwrap(),
            }
        }
    }

    /// A fixed stream of numbers (SplitMix64).
    struct Numbers(u64);

    impl Numbers {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) % n
        }
    }

    /// The records of `events` events in `files` files: one to four records
    /// each, sent again as they are, or changed in a field with the same
    /// timestamps, or with other timestamps.
    fn mixed(events: usize, files: usize) -> Vec<Vec<Owned>> {
        let mut n = Numbers(7);
        let mut out = vec![Vec::new(); files];
        for i in 0..events {
            let base = Owned {
                id: format!("ev-{i}"),
                occurred: 1_777_636_800_000 + n.below(3) as i64 * 86_400_000,
                ingested: 1_777_640_000_000 + n.below(4) as i64,
                creator: format!("cr-{}", n.below(5)),
                template: format!("tpl-{}", n.below(5)),
                brand: (n.below(3) > 0).then(|| format!("b-{}", n.below(3))),
                codes: [
                    n.below(5) as usize,
                    n.below(4) as usize,
                    n.below(4) as usize,
                ],
                country: ["US", "DE", "FR"][n.below(3) as usize],
            };
            for _ in 0..1 + n.below(4) {
                let mut copy = base.clone();
                match n.below(5) {
                    0 => copy.template = format!("tpl-{}", n.below(5)),
                    1 => copy.brand = None,
                    2 => copy.codes[n.below(3) as usize] = n.below(4) as usize,
                    3 => copy.ingested += n.below(3) as i64 - 1,
                    _ => {}
                }
                out[n.below(files as u64) as usize].push(copy);
            }
        }
        out
    }

    /// A table of `files` (file `f` is input `f`), each file read in two
    /// chunks with interners of their own.
    fn table_of(files: &[Vec<Owned>]) -> Table {
        let mut chunks = Vec::new();
        let mut interners = Vec::new();
        for (source, records) in files.iter().enumerate() {
            let half = records.len() / 2;
            for (seq, part) in [&records[..half], &records[half..]].into_iter().enumerate() {
                let mut events = EventColumns::new();
                let mut strings = Interner::new();
                for r in part {
                    events.push(&r.values(), &mut strings).unwrap();
                }
                events.source = source as u32;
                chunks.push(Chunk {
                    source: source as u32,
                    seq: seq as u32,
                    records: part.len() as u64,
                    interner: interners.len(),
                    events,
                    quarantine: Vec::new(),
                });
                interners.push(strings);
            }
        }
        merge(chunks, interners).unwrap().0
    }

    /// The index files of `entries`, sorted here the plain way: by key,
    /// then by the survivor rule (records equal on both timestamps and
    /// `fields` taken for one), then by input file.
    fn reference(files: &[Vec<Owned>], dir: &Path) -> (Vec<IndexFile>, u64, u64) {
        let order = SurvivorOrder::default();
        let mut rows: Vec<(Entry, Record)> = files
            .iter()
            .enumerate()
            .flat_map(|(source, records)| {
                records.iter().map(move |r| {
                    let record = r.record();
                    let (id_hash, id_hash_low) = id_key(r.id.as_bytes());
                    let entry = Entry {
                        id_hash,
                        id_hash_low,
                        occurred_at: r.occurred,
                        ingested_at: r.ingested,
                        fields: record.fields_hash(),
                        source: source as u32,
                    };
                    (entry, record)
                })
            })
            .collect();
        rows.sort_by(|(a, ra), (b, rb)| {
            a.key()
                .cmp(&b.key())
                .then_with(|| {
                    if (a.ingested_at, a.occurred_at, a.fields)
                        == (b.ingested_at, b.occurred_at, b.fields)
                    {
                        Ordering::Equal
                    } else {
                        order.records(ra, rb)
                    }
                })
                .then(a.source.cmp(&b.source))
        });
        let mut writer = four_files(dir);
        writer.push(rows.iter().map(|(e, _)| *e)).unwrap();
        writer.finish().unwrap()
    }

    /// A writer of an index in four files.
    fn four_files(dir: &Path) -> IndexWriter {
        std::fs::create_dir_all(dir).unwrap();
        IndexWriter::to_paths((0..4).map(|j| dir.join(file_name(j))).collect())
    }

    /// The index written from a table, whole or shard by shard, in buckets
    /// of any size, directly or through a reduce task's file, is the same
    /// bytes as the entries sorted the plain way.
    #[test]
    fn every_way_of_writing_the_index_gives_the_same_bytes() {
        // About 5,000 records in 3 input files.
        let files = mixed(2_000, 3);
        let dir = tempfile::tempdir().unwrap();
        let expected = reference(&files, &dir.path().join("reference"));
        for bucket_rows in [1, 97, 1 << 19] {
            let path = dir.path().join(format!("whole-{bucket_rows}"));
            let mut writer = four_files(&path);
            let table = table_of(&files);
            let hasher = FieldHasher::new(&table.strings);
            write_rows(table, &hasher, 0, 1, bucket_rows, &mut writer).unwrap();
            assert_eq!(writer.finish().unwrap(), expected, "{bucket_rows}");
        }
        for shards in [2u32, 5] {
            let by_shard = |k: u32| -> Vec<Vec<Owned>> {
                files
                    .iter()
                    .map(|f| {
                        f.iter()
                            .filter(|r| crate::shard::shard_of(r.id.as_bytes(), shards) == k)
                            .cloned()
                            .collect()
                    })
                    .collect()
            };
            let path = dir.path().join(format!("shards-{shards}"));
            let mut writer = four_files(&path);
            for k in 0..shards {
                let table = table_of(&by_shard(k));
                let hasher = FieldHasher::new(&table.strings);
                // Through a file, as a reduce task hands its part over.
                let part = path.join(format!("part-{k}.arrow"));
                let mut single = IndexWriter::single(&part);
                write_rows(table, &hasher, k, shards, 61, &mut single).unwrap();
                single.finish().unwrap();
                Part::File(part).write(&mut writer).unwrap();
            }
            assert_eq!(writer.finish().unwrap(), expected, "{shards} shards");
        }
    }

    /// Rows that crowd a few slots of a part come out sorted all the same.
    #[test]
    fn crowded_parts_are_sorted() {
        let order = SurvivorOrder::default();
        let rows = 3_000u32;
        let ties = Ties {
            starts: vec![0, rows],
            chunks: vec![DetailColumns {
                creator: vec![0; rows as usize],
                template: vec![0; rows as usize],
                brand: vec![NO_BRAND; rows as usize],
                content_kind: vec![0; rows as usize],
                action: vec![0; rows as usize],
                user_tier: vec![0; rows as usize],
                country: vec![*b"US"; rows as usize],
            }],
        };
        let parts = Parts::new(0, 1, 1);
        let mut n = Numbers(3);
        // One key, then keys from 40 values, all in part 3.
        for values in [1, 40] {
            let keys: Vec<u64> = (0..values).map(|_| (3 << 56) | n.below(1 << 56)).collect();
            let made: Vec<Packed> = (0..rows)
                .map(|at| {
                    Row {
                        id_hash: keys[n.below(values) as usize],
                        id_hash_low: n.below(500),
                        ingested_at: n.below(3) as i64,
                        source: n.below(4) as u32,
                        at,
                        ..Row::default()
                    }
                    .pack()
                })
                .collect();
            let (a, b) = made.split_at(1_000);
            let mut room = PartRoom::default();
            let (sorted, events) = sort_part(&[a, b], &parts, &order, &ties, &mut room);
            let key = |r: &Row| (r.id_hash, r.id_hash_low, r.ingested_at, r.source);
            let mut expected: Vec<_> = made.iter().map(|w| key(&Row::unpack(w))).collect();
            expected.sort();
            assert_eq!(sorted.iter().map(key).collect::<Vec<_>>(), expected);
            let mut keys: Vec<_> = expected.iter().map(|k| (k.0, k.1)).collect();
            keys.dedup();
            assert_eq!(events, keys.len() as u64);
        }
    }

    /// Rows out of order, within what is pushed or after what was pushed
    /// before, are refused.
    #[test]
    fn rows_out_of_order_are_refused() {
        let entry = |hi: u64| Entry {
            id_hash: hi,
            ..Entry::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let mut writer = IndexWriter::single(&dir.path().join("a.arrow"));
        assert!(matches!(
            writer.push([entry(2), entry(1)]),
            Err(IndexError::Order(_))
        ));
        let mut writer = IndexWriter::single(&dir.path().join("b.arrow"));
        writer.push([entry(1), entry(2), entry(2)]).unwrap();
        writer.push([entry(2), entry(3)]).unwrap();
        assert!(matches!(writer.push([entry(1)]), Err(IndexError::Order(_))));
        let (_, records, events) = writer.finish().unwrap();
        assert_eq!((records, events), (5, 3));
        // Records of other shards among a shard's.
        let table = table_of(&mixed(500, 2));
        let hasher = FieldHasher::new(&table.strings);
        let mut writer = IndexWriter::single(&dir.path().join("c.arrow"));
        assert!(matches!(
            write_rows(table, &hasher, 1, 3, 1 << 19, &mut writer),
            Err(IndexError::Order(_))
        ));
    }
}
