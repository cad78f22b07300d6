//! Dedup: merges the validated chunks into one table and picks, for every
//! `event_id`, the surviving record.
//!
//! The survivor is the record with the smallest `ingested_at`, ties broken by the
//! smallest `(occurred_at, creator_id, template_id, brand_id, content_kind,
//! action, user_tier, country)`, null brand first, strings by bytes. Every other
//! record with the key is a duplicate, and a conflict as well when its fields
//! (other than `ingested_at`) differ from the survivor's. The rule is a total
//! order, so the result does not depend on the order records are seen in, nor on
//! the thread count. This module owns the merged table; it does not classify.

use crate::event::{ACTIONS, CONTENT_KINDS, USER_TIERS};
use crate::ingest::Chunk;
use crate::intern::Interner;
use crate::validate::{EventColumns, NO_BRAND};
use hashbrown::{DefaultHashBuilder, HashTable};
use rayon::prelude::*;
use std::cmp::Ordering;
use std::hash::BuildHasher;

/// Every valid record of a run, in input order, with strings shared by all chunks.
pub struct Table {
    /// The chunks' columns; string ids point into `strings`.
    pub chunks: Vec<EventColumns>,
    /// Global row index of each chunk's first row, plus the total at the end.
    pub starts: Vec<u32>,
    /// All creator, template and brand strings; ids are in byte order.
    pub strings: Interner,
}

impl Table {
    /// The chunk and the row within it of global row `g`.
    pub fn locate(&self, g: u32) -> (&EventColumns, usize) {
        let chunk = self.starts.partition_point(|&s| s <= g) - 1;
        (&self.chunks[chunk], (g - self.starts[chunk]) as usize)
    }

    /// The chunk and row of each of `rows` (global indices, ascending), found
    /// with a cursor instead of a search per row.
    pub fn rows<'a>(
        &'a self,
        rows: &'a [u32],
    ) -> impl Iterator<Item = (&'a EventColumns, usize)> + 'a {
        let mut chunk = rows
            .first()
            .map_or(0, |&g| self.starts.partition_point(|&s| s <= g) - 1);
        rows.iter().map(move |&g| {
            while g >= self.starts[chunk + 1] {
                chunk += 1;
            }
            (&self.chunks[chunk], (g - self.starts[chunk]) as usize)
        })
    }

    /// `rows` (global indices, ascending) split by chunk: each chunk that holds
    /// some of them, the global index of its first row, and those rows.
    pub fn segments<'a>(
        &'a self,
        mut rows: &'a [u32],
    ) -> impl Iterator<Item = (&'a EventColumns, u32, &'a [u32])> + 'a {
        let mut chunk = rows
            .first()
            .map_or(0, |&g| self.starts.partition_point(|&s| s <= g) - 1);
        std::iter::from_fn(move || {
            let (&first, _) = rows.split_first()?;
            while first >= self.starts[chunk + 1] {
                chunk += 1;
            }
            let end = self.starts[chunk + 1];
            let (here, rest) = rows.split_at(rows.partition_point(|&g| g < end));
            rows = rest;
            Some((&self.chunks[chunk], self.starts[chunk], here))
        })
    }

    /// Number of valid records.
    pub fn len(&self) -> usize {
        *self.starts.last().unwrap_or(&0) as usize
    }

    /// Whether there is no valid record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The table with its survivors.
pub struct Deduped {
    /// All valid records.
    pub table: Table,
    /// Global row indices of the surviving records, ascending.
    pub survivors: Vec<u32>,
    /// Valid records that lost to a survivor.
    pub duplicates: u64,
    /// Duplicates whose fields differ from their survivor's.
    pub conflicts: u64,
}

/// What can go wrong while deduplicating.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DedupError {
    /// More valid records than one run can address.
    #[error("{0} valid records is more than one run can hold (at most {max}); split the input", max = u32::MAX)]
    TooManyRecords(u64),
}

/// Merges the interners the chunks were read with into one sorted table of
/// strings and rewrites the chunks' string ids into it.
pub fn merge(
    chunks: Vec<Chunk>,
    interners: Vec<Interner>,
) -> Result<(Table, Vec<Chunk>), DedupError> {
    let total: u64 = chunks.iter().map(|c| c.events.len() as u64).sum();
    if total >= u32::MAX as u64 {
        return Err(DedupError::TooManyRecords(total));
    }
    let mut global = Interner::new();
    for interner in &interners {
        for s in interner.iter() {
            global.intern(s);
        }
    }
    let (strings, order) = global.sorted();
    let maps: Vec<Vec<u32>> = interners
        .par_iter()
        .map(|interner| {
            interner
                .iter()
                .map(|s| order[global.find(s).expect("every string was interned") as usize])
                .collect()
        })
        .collect();
    let mut columns = Vec::with_capacity(chunks.len());
    let mut rest = Vec::with_capacity(chunks.len());
    for mut chunk in chunks {
        columns.push((chunk.interner, std::mem::take(&mut chunk.events)));
        rest.push(chunk);
    }
    columns.par_iter_mut().for_each(|(interner, events)| {
        let map = &maps[*interner];
        for id in events.creator.iter_mut().chain(events.template.iter_mut()) {
            *id = map[*id as usize];
        }
        for id in events.brand.iter_mut().filter(|id| **id != NO_BRAND) {
            *id = map[*id as usize];
        }
    });
    let columns: Vec<EventColumns> = columns.into_iter().map(|(_, events)| events).collect();
    let mut starts = Vec::with_capacity(columns.len() + 1);
    let mut at = 0u32;
    for events in &columns {
        starts.push(at);
        at += events.len() as u32;
    }
    starts.push(at);
    Ok((
        Table {
            chunks: columns,
            starts,
            strings,
        },
        rest,
    ))
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

/// Orders records by the survivor rule (smaller is better) and tells conflicts.
struct Rule {
    kind: [u8; 5],
    action: [u8; 4],
    tier: [u8; 4],
}

impl Rule {
    fn new() -> Self {
        Rule {
            kind: byte_ranks(&CONTENT_KINDS),
            action: byte_ranks(&ACTIONS),
            tier: byte_ranks(&USER_TIERS),
        }
    }

    /// Every field but `event_id` and `ingested_at`, in tie-break order.
    fn fields(&self, c: &EventColumns, r: usize) -> (i64, u32, u32, u64, u8, u8, u8, [u8; 2]) {
        // Null brand sorts first; string ids are already in byte order.
        let brand = if c.brand[r] == NO_BRAND {
            0
        } else {
            c.brand[r] as u64 + 1
        };
        (
            c.occurred_at[r],
            c.creator[r],
            c.template[r],
            brand,
            self.kind[c.content_kind[r] as usize],
            self.action[c.action[r] as usize],
            self.tier[c.user_tier[r] as usize],
            c.country[r],
        )
    }

    fn cmp(&self, a: (&EventColumns, usize), b: (&EventColumns, usize)) -> Ordering {
        a.0.ingested_at[a.1]
            .cmp(&b.0.ingested_at[b.1])
            .then_with(|| self.fields(a.0, a.1).cmp(&self.fields(b.0, b.1)))
    }
}

/// Number of hash shards deduplicated independently (in parallel).
const SHARDS: usize = 256;

/// Picks the survivor of every `event_id` and counts duplicates and conflicts.
pub fn dedup(table: Table) -> Deduped {
    let hasher = DefaultHashBuilder::default();
    // Scatter each chunk's rows to shards by the top bits of their key's hash.
    let scattered: Vec<Vec<Vec<(u64, u32)>>> = table
        .chunks
        .par_iter()
        .zip(&table.starts)
        .map(|(events, &start)| {
            let mut shards = vec![Vec::new(); SHARDS];
            for row in 0..events.len() {
                let hash = hasher.hash_one(events.event_id(row));
                // Bits of the hash that the tables below use neither for the bucket
                // (low bits) nor for the tag (top seven).
                shards[(hash >> 40) as usize % SHARDS].push((hash, start + row as u32));
            }
            shards
        })
        .collect();

    let rule = Rule::new();
    let per_shard: Vec<(Vec<u32>, u64, u64)> = (0..SHARDS)
        .into_par_iter()
        .map(|shard| {
            let rows = || {
                scattered
                    .iter()
                    .flat_map(|chunk| chunk[shard].iter().copied())
            };
            let key = |g: u32| {
                let (c, r) = table.locate(g);
                c.event_id(r)
            };
            // Each entry: (hash, current survivor, whether the key was seen twice).
            let size = scattered.iter().map(|chunk| chunk[shard].len()).sum();
            let mut best: HashTable<(u64, u32, bool)> = HashTable::with_capacity(size);
            // Every row of a key seen more than once; only these need a second look.
            let mut shared: Vec<(u64, u32)> = Vec::new();
            for (hash, g) in rows() {
                let same = |&(h, s, _): &(u64, u32, bool)| h == hash && key(s) == key(g);
                match best.find_mut(hash, same) {
                    Some(entry) => {
                        if !entry.2 {
                            entry.2 = true;
                            shared.push((hash, entry.1));
                        }
                        shared.push((hash, g));
                        if rule.cmp(table.locate(g), table.locate(entry.1)) == Ordering::Less {
                            entry.1 = g;
                        }
                    }
                    None => {
                        best.insert_unique(hash, (hash, g, false), |&(h, _, _)| h);
                    }
                }
            }
            let (mut duplicates, mut conflicts) = (0, 0);
            for (hash, g) in shared {
                let &(_, s, _) = best
                    .find(hash, |&(h, s, _)| h == hash && key(s) == key(g))
                    .expect("every row's key was inserted");
                if s != g {
                    duplicates += 1;
                    let ((a, ra), (b, rb)) = (table.locate(g), table.locate(s));
                    if rule.fields(a, ra) != rule.fields(b, rb) {
                        conflicts += 1;
                    }
                }
            }
            (
                best.into_iter().map(|(_, g, _)| g).collect(),
                duplicates,
                conflicts,
            )
        })
        .collect();
    drop(scattered);

    let mut survivors = Vec::new();
    let (mut duplicates, mut conflicts) = (0, 0);
    for (s, d, c) in per_shard {
        survivors.extend(s);
        duplicates += d;
        conflicts += c;
    }
    survivors.par_sort_unstable();
    Deduped {
        table,
        survivors,
        duplicates,
        conflicts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Value;

    fn record<'a>(
        id: &'a str,
        ingested: i64,
        template: &'a str,
        brand: Option<&'a str>,
    ) -> [Value<'a>; 10] {
        [
            Value::Str(id),
            Value::Int(1_777_636_800_000),
            Value::Int(1_777_636_800_000 + ingested),
            Value::Str("cr"),
            Value::Str(template),
            brand.map_or(Value::Null, Value::Str),
            Value::Str("image"),
            Value::Str("use"),
            Value::Str("pro"),
            Value::Str("US"),
        ]
    }

    /// A chunk with its own interner (index `interner` in the list given to merge).
    fn chunk(records: &[[Value<'_>; 10]], interner: usize) -> (Chunk, Interner) {
        let mut events = EventColumns::new();
        let mut strings = Interner::new();
        for r in records {
            events.push(r, &mut strings).unwrap();
        }
        let chunk = Chunk {
            source: 0,
            seq: 0,
            records: records.len() as u64,
            interner,
            events,
            quarantine: Vec::new(),
        };
        (chunk, strings)
    }

    /// `(event_id, template_id, brand_id)` of a survivor.
    type Survivor = (String, String, Option<String>);

    fn survivors_of(chunks: Vec<(Chunk, Interner)>) -> (Vec<Survivor>, u64, u64) {
        let (chunks, interners) = chunks.into_iter().unzip();
        let (table, _) = merge(chunks, interners).unwrap();
        let d = dedup(table);
        let rows = d
            .survivors
            .iter()
            .map(|&g| {
                let (c, r) = d.table.locate(g);
                (
                    String::from_utf8(c.event_id(r).to_vec()).unwrap(),
                    d.table.strings.get(c.template[r]).to_string(),
                    (c.brand[r] != NO_BRAND).then(|| d.table.strings.get(c.brand[r]).to_string()),
                )
            })
            .collect();
        (rows, d.duplicates, d.conflicts)
    }

    #[test]
    fn rows_and_segments_find_every_row_across_chunks() {
        let ids: Vec<String> = (0..9).map(|i| format!("e{i}")).collect();
        let records = |range: std::ops::Range<usize>| -> Vec<_> {
            ids[range]
                .iter()
                .map(|id| record(id, 0, "t", None))
                .collect()
        };
        // Chunks of 4, 0 (no valid record) and 5 rows.
        let chunks = vec![
            chunk(&records(0..4), 0),
            chunk(&[], 1),
            chunk(&records(4..9), 2),
        ];
        let (chunks, interners) = chunks.into_iter().unzip();
        let (table, _) = merge(chunks, interners).unwrap();
        assert_eq!(table.len(), 9);
        let id = |c: &EventColumns, r: usize| String::from_utf8(c.event_id(r).to_vec()).unwrap();
        let subsets: [&[u32]; 6] = [
            &[],
            &[0],
            &[3, 4],
            &[8],
            &[0, 1, 2, 3, 4, 5, 6, 7, 8],
            &[1, 5, 7],
        ];
        for rows in subsets {
            let expected: Vec<String> = rows
                .iter()
                .map(|&g| {
                    let (c, r) = table.locate(g);
                    id(c, r)
                })
                .collect();
            let by_row: Vec<String> = table.rows(rows).map(|(c, r)| id(c, r)).collect();
            let by_segment: Vec<String> = table
                .segments(rows)
                .flat_map(|(c, start, here)| {
                    assert!(!here.is_empty());
                    here.iter().map(move |&g| id(c, (g - start) as usize))
                })
                .collect();
            assert_eq!(by_row, expected, "rows {rows:?}");
            assert_eq!(by_segment, expected, "segments of {rows:?}");
        }
    }

    #[test]
    fn earliest_ingest_survives_across_chunks() {
        let a = chunk(
            &[record("e1", 20, "late", None), record("e2", 5, "t", None)],
            0,
        );
        let b = chunk(
            &[record("e1", 10, "early", None), record("e2", 5, "t", None)],
            1,
        );
        let (rows, duplicates, conflicts) = survivors_of(vec![a, b]);
        assert_eq!(rows.len(), 2);
        assert!(rows.contains(&("e1".into(), "early".into(), None)));
        assert_eq!(duplicates, 2);
        assert_eq!(
            conflicts, 1,
            "e1 differs in template; e2 is an exact re-send"
        );
    }

    #[test]
    fn ties_break_on_fields_with_null_brand_first_whatever_the_order() {
        let records = [
            record("e", 1, "b", Some("x")),
            record("e", 1, "a", Some("y")),
            record("e", 1, "a", None),
        ];
        for rotation in 0..3 {
            let mut rotated = records.to_vec();
            rotated.rotate_left(rotation);
            let (rows, duplicates, conflicts) = survivors_of(vec![chunk(&rotated, 0)]);
            assert_eq!(rows, vec![("e".into(), "a".into(), None)]);
            assert_eq!((duplicates, conflicts), (2, 2));
        }
    }

    #[test]
    fn enumerations_tie_break_by_bytes_not_codes() {
        let ranks = byte_ranks(&CONTENT_KINDS);
        // audio < font < image < template < video
        assert_eq!(ranks, [3, 2, 4, 0, 1]);
    }
}
