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
use hashbrown::hash_table::Entry;
use hashbrown::{DefaultHashBuilder, HashTable};
use rayon::prelude::*;
use std::cmp::Ordering;
use std::hash::BuildHasher;

/// Every valid record of a run, in input order, with strings shared by all chunks.
#[derive(Clone)]
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

/// The group of a key seen only once.
const ALONE: u32 = u32::MAX;

/// A key seen more than once, while its rows are gone through.
struct Group {
    /// The best row so far.
    survivor: u32,
    /// Rows seen so far.
    rows: u32,
    /// Whether the fields of its first two rows differ.
    differs: bool,
}

/// Picks the survivor of every `event_id` and counts duplicates and conflicts.
pub fn dedup(table: Table) -> Deduped {
    let hasher = DefaultHashBuilder::default();
    // Scatter each chunk's rows to shards by the top bits of their key's hash.
    let scattered: Vec<Vec<Vec<(u64, u32)>>> = table
        .chunks
        .par_iter()
        .zip(&table.starts)
        .map(|(events, &start)| {
            // Room for an even share and some: hashes spread evenly.
            let share = events.len() / SHARDS;
            let mut shards: Vec<Vec<(u64, u32)>> = (0..SHARDS)
                .map(|_| Vec::with_capacity(share + share / 4 + 4))
                .collect();
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
            let key = |g: u32| {
                let (c, r) = table.locate(g);
                c.event_id(r)
            };
            // Each entry: (hash, current survivor, its key's group if the key
            // was seen more than once, else `ALONE`).
            let size = scattered.iter().map(|chunk| chunk[shard].len()).sum();
            let mut best: HashTable<(u64, u32, u32)> = HashTable::with_capacity(size);
            // Each key seen more than once: its current survivor, its rows so
            // far and, while it has two, whether their fields differ. Every
            // row of those keys, with its group, is kept for a second look,
            // which only keys of three or more records need: the group spares
            // looking a key up again, and two records are compared once.
            let mut groups: Vec<Group> = Vec::new();
            let mut shared: Vec<(u32, u32)> = Vec::new();
            for &(hash, g) in scattered.iter().flat_map(|chunk| &chunk[shard]) {
                let same = |&(h, s, _): &(u64, u32, u32)| h == hash && key(s) == key(g);
                match best.entry(hash, same, |&(h, _, _)| h) {
                    Entry::Occupied(mut found) => {
                        let entry = found.get_mut();
                        let (a, b) = (table.locate(g), table.locate(entry.1));
                        let order = if entry.2 == ALONE {
                            let (fa, fb) = (rule.fields(a.0, a.1), rule.fields(b.0, b.1));
                            entry.2 = groups.len() as u32;
                            groups.push(Group {
                                survivor: entry.1,
                                rows: 1,
                                differs: fa != fb,
                            });
                            shared.push((entry.2, entry.1));
                            (a.0.ingested_at[a.1].cmp(&b.0.ingested_at[b.1])).then(fa.cmp(&fb))
                        } else {
                            rule.cmp(a, b)
                        };
                        shared.push((entry.2, g));
                        let group = &mut groups[entry.2 as usize];
                        group.rows += 1;
                        if order == Ordering::Less {
                            entry.1 = g;
                            group.survivor = g;
                        }
                    }
                    Entry::Vacant(room) => {
                        room.insert((hash, g, ALONE));
                    }
                }
            }
            let (mut duplicates, mut conflicts) = (0, 0);
            for (group, g) in shared {
                let group = &groups[group as usize];
                if group.survivor == g {
                    continue;
                }
                duplicates += 1;
                let differs = if group.rows == 2 {
                    group.differs
                } else {
                    let ((a, ra), (b, rb)) = (table.locate(g), table.locate(group.survivor));
                    rule.fields(a, ra) != rule.fields(b, rb)
                };
                conflicts += u64::from(differs);
            }
            (
                best.into_iter().map(|(_, g, _)| g).collect(),
                duplicates,
                conflicts,
            )
        })
        .collect();
    drop(scattered);

    // In ascending order through a bitmap of the rows: cheaper than sorting
    // them.
    let mut kept = vec![0u64; table.len().div_ceil(64)];
    let (mut duplicates, mut conflicts, mut unique) = (0, 0, 0);
    for (s, d, c) in &per_shard {
        for &g in s {
            kept[g as usize / 64] |= 1 << (g % 64);
        }
        unique += s.len();
        duplicates += d;
        conflicts += c;
    }
    drop(per_shard);
    let mut survivors = Vec::with_capacity(unique);
    for (at, &word) in kept.iter().enumerate() {
        let mut word = word;
        while word != 0 {
            survivors.push((at * 64) as u32 + word.trailing_zeros());
            word &= word - 1;
        }
    }
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
    /// Survivors, duplicates and conflicts agree with a plain reference
    /// (every record of an event compared with every other) on records of
    /// one to five copies, sent again as they are, changed in one field,
    /// or with other timestamps, across chunks.
    #[test]
    fn dedup_agrees_with_a_plain_reference() {
        // SplitMix64: a fixed stream of numbers.
        let mut state = 11u64;
        let mut below = |n: u64| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) % n
        };
        type Fields = (
            i64,
            i64,
            String,
            String,
            Option<String>,
            usize,
            usize,
            usize,
            &'static str,
        );
        let mut records: Vec<(String, Fields)> = Vec::new();
        for i in 0..3_000 {
            let base: Fields = (
                below(3) as i64,
                below(3) as i64,
                format!("cr-{}", below(3)),
                format!("t-{}", below(3)),
                (below(2) == 0).then(|| format!("b-{}", below(2))),
                below(5) as usize,
                below(4) as usize,
                below(4) as usize,
                ["US", "DE"][below(2) as usize],
            );
            for _ in 0..1 + below(5) {
                let mut copy = base.clone();
                match below(6) {
                    0 => copy.3 = format!("t-{}", below(3)),
                    1 => copy.4 = None,
                    2 => copy.6 = below(4) as usize,
                    3 => copy.1 = below(3) as i64,
                    4 => copy.0 = below(3) as i64,
                    _ => {}
                }
                records.push((format!("e{i}"), copy));
            }
        }
        // Shuffled, so that an event's records are spread over the chunks.
        for i in (1..records.len()).rev() {
            records.swap(i, below(i as u64 + 1) as usize);
        }
        fn values((id, f): &(String, Fields)) -> [Value<'_>; 10] {
            [
                Value::Str(id),
                Value::Int(1_777_636_800_000 + f.0 * 86_400_000),
                Value::Int(1_777_636_800_000 + f.1),
                Value::Str(&f.2),
                Value::Str(&f.3),
                f.4.as_deref().map_or(Value::Null, Value::Str),
                Value::Str(CONTENT_KINDS[f.5]),
                Value::Str(ACTIONS[f.6]),
                Value::Str(USER_TIERS[f.7]),
                Value::Str(f.8),
            ]
        }
        let parts: Vec<&[(String, Fields)]> = records.chunks(1_000).collect();
        let chunks: Vec<(Chunk, Interner)> = parts
            .iter()
            .enumerate()
            .map(|(i, part)| chunk(&part.iter().map(values).collect::<Vec<_>>(), i))
            .collect();
        let (chunks, interners): (Vec<Chunk>, Vec<Interner>) =
            chunks.into_iter().unzip::<_, _, Vec<_>, Vec<_>>();
        let (table, _) = merge(chunks, interners).unwrap();
        let d = dedup(table);

        // The rule, field by field: smaller survives, then the earlier row.
        let (kind, action, tier) = (
            byte_ranks(&CONTENT_KINDS),
            byte_ranks(&ACTIONS),
            byte_ranks(&USER_TIERS),
        );
        let rule = |f: &Fields| {
            (
                f.1,
                f.0,
                f.2.clone(),
                f.3.clone(),
                f.4.clone(),
                kind[f.5],
                action[f.6],
                tier[f.7],
                f.8,
            )
        };
        let mut by_id: std::collections::BTreeMap<&str, Vec<u32>> = Default::default();
        for (g, (id, _)) in records.iter().enumerate() {
            by_id.entry(id).or_default().push(g as u32);
        }
        let (mut survivors, mut duplicates, mut conflicts) = (Vec::new(), 0, 0);
        for rows in by_id.values() {
            let best = *rows
                .iter()
                .min_by_key(|&&g| (rule(&records[g as usize].1), g))
                .unwrap();
            survivors.push(best);
            for &g in rows.iter().filter(|&&g| g != best) {
                duplicates += 1;
                // Every field but `ingested_at`.
                let others = |g: u32| {
                    let mut fields = rule(&records[g as usize].1);
                    fields.0 = 0;
                    fields
                };
                if others(g) != others(best) {
                    conflicts += 1;
                }
            }
        }
        survivors.sort();
        assert!(conflicts > 0 && duplicates > conflicts);
        assert_eq!(
            (d.survivors, d.duplicates, d.conflicts),
            (survivors, duplicates, conflicts)
        );
    }
}
