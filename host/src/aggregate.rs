//! Aggregate: sums the classified events into one row per
//! `(day, creator_id, template_id)`, and totals per reason.
//!
//! Sums are exact integers; an overflow is an error, never a wrap. Rows come out
//! sorted by day, then creator, then template (string ids are in byte order), so
//! the output does not depend on how the work was split.

use crate::classify::Classified;
use crate::dedup::Deduped;
use crate::event::day_of;
use hashbrown::HashMap;
use rayon::prelude::*;
use std::collections::BTreeMap;

/// One output row, with string ids into the table's strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Days since 1970-01-01 (UTC).
    pub day: i32,
    pub creator: u32,
    pub template: u32,
    /// Unique valid events.
    pub events: u64,
    /// Of those, payable ones.
    pub payable_events: u64,
    /// Sum of their rates, in micros.
    pub amount_micros: i64,
}

/// The daily rows and the totals they came from.
pub struct Aggregate {
    /// Sorted by `(day, creator, template)`.
    pub rows: Vec<Row>,
    /// Events classified.
    pub events: u64,
    /// Payable events.
    pub payable_events: u64,
    /// Sum of all rates.
    pub amount_micros: i64,
    /// Events per reason code.
    pub by_reason: BTreeMap<String, u64>,
    /// How many of each day's events came from each input file: the day's
    /// provenance, sorted by day, then file.
    pub provenance: Vec<Contribution>,
}

/// The events of one day that came from one input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Contribution {
    /// Days since 1970-01-01 (UTC).
    pub day: i32,
    /// Index of the file in the run's sorted input list.
    pub source: u32,
    /// Unique events of that day whose surviving record came from that file.
    pub events: u64,
}

/// Adds contributions up by `(day, source)`; sorted by day, then file.
pub fn sum_provenance(parts: impl IntoIterator<Item = Contribution>) -> Vec<Contribution> {
    let mut sums: BTreeMap<(i32, u32), u64> = BTreeMap::new();
    for c in parts {
        *sums.entry((c.day, c.source)).or_default() += c.events;
    }
    sums.into_iter()
        .map(|((day, source), events)| Contribution {
            day,
            source,
            events,
        })
        .collect()
}

/// How many of the survivors of each day came from each input file, as
/// [`aggregate`] counts them: for a run that classifies only some of the
/// survivors (a scoped run, [`crate::scope`]), the provenance of them all,
/// taken before the others are set aside.
pub fn provenance(deduped: &Deduped) -> Vec<Contribution> {
    const PART: usize = 1 << 18;
    let table = &deduped.table;
    let parts: Vec<HashMap<(i32, u32), u64>> = deduped
        .survivors
        .par_chunks(PART)
        .map(|rows| {
            let mut counts: HashMap<(i32, u32), u64> = HashMap::new();
            for (c, r) in table.rows(rows) {
                *counts
                    .entry((day_of(c.occurred_at[r]), c.source))
                    .or_default() += 1;
            }
            counts
        })
        .collect();
    sum_provenance(
        parts
            .into_iter()
            .flatten()
            .map(|((day, source), events)| Contribution {
                day,
                source,
                events,
            }),
    )
}

/// What can go wrong while aggregating.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AggregateError {
    /// An amount does not fit in 64 bits.
    #[error("amounts overflow 64-bit micros (rates returned by the rule are implausibly large)")]
    Overflow,
}

type Sums = (u64, u64, i64);

fn add(into: &mut Sums, from: Sums) -> Result<(), AggregateError> {
    into.0 += from.0;
    into.1 += from.1;
    into.2 = into.2.checked_add(from.2).ok_or(AggregateError::Overflow)?;
    Ok(())
}

/// Rows are spread over this many partitions by a hash of their key, so that
/// each partition's map stays small enough for the cache and partitions are
/// summed in parallel without merging.
const PARTITIONS: usize = 64;

type Key = (i32, u32, u32);

fn partition_of(&(day, creator, template): &Key) -> usize {
    let mixed = (u64::from(creator) << 32 | u64::from(template)) ^ (day as u64).rotate_left(17);
    (mixed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % PARTITIONS
}

/// Events per reason code (every reason the rule returned, used or not).
fn by_reason(classified: &Classified) -> BTreeMap<String, u64> {
    let mut counts = vec![0u64; classified.reasons.len()];
    for &r in &classified.reason {
        if let Some(count) = counts.get_mut(r as usize) {
            *count += 1;
        }
    }
    classified.reasons.iter().cloned().zip(counts).collect()
}

/// Sums the verdicts of every survivor into daily rows.
pub fn aggregate(deduped: &Deduped, classified: &Classified) -> Result<Aggregate, AggregateError> {
    const PART: usize = 1 << 18;
    let table = &deduped.table;
    // Pass 1: each survivor's key and index, scattered to partitions, and the
    // events per day and source file.
    type Scattered = Vec<Vec<(Key, u32)>>;
    type Sources = HashMap<(i32, u32), u64>;
    let (scattered, provenance): (Vec<Scattered>, Vec<Sources>) = deduped
        .survivors
        .par_chunks(PART)
        .enumerate()
        .map(|(part, rows)| {
            let mut partitions = vec![Vec::new(); PARTITIONS];
            let mut provenance: HashMap<(i32, u32), u64> = HashMap::new();
            for (i, (c, r)) in table.rows(rows).enumerate() {
                let key = (day_of(c.occurred_at[r]), c.creator[r], c.template[r]);
                partitions[partition_of(&key)].push((key, (part * PART + i) as u32));
                *provenance.entry((key.0, c.source)).or_default() += 1;
            }
            (partitions, provenance)
        })
        .unzip();
    let provenance = sum_provenance(provenance.into_iter().flatten().map(
        |((day, source), events)| Contribution {
            day,
            source,
            events,
        },
    ));
    // Pass 2: each partition summed on its own; keys never span partitions.
    let partitions: Vec<Vec<Row>> = (0..PARTITIONS)
        .into_par_iter()
        .map(|p| {
            let mut sums: HashMap<Key, Sums> = HashMap::new();
            for &(key, at) in scattered.iter().flat_map(|parts| &parts[p]) {
                let at = at as usize;
                let paid = classified.payable[at];
                add(
                    sums.entry(key).or_default(),
                    (1, paid as u64, classified.rate_micros[at]),
                )?;
            }
            Ok(sums
                .into_iter()
                .map(
                    |((day, creator, template), (events, payable_events, amount_micros))| Row {
                        day,
                        creator,
                        template,
                        events,
                        payable_events,
                        amount_micros,
                    },
                )
                .collect())
        })
        .collect::<Result<_, AggregateError>>()?;
    drop(scattered);
    let mut rows = partitions.concat();
    rows.par_sort_unstable_by_key(|r| (r.day, r.creator, r.template));

    let by_reason = by_reason(classified);
    let mut amount_micros = 0i64;
    for &rate in &classified.rate_micros {
        amount_micros = amount_micros
            .checked_add(rate)
            .ok_or(AggregateError::Overflow)?;
    }
    Ok(Aggregate {
        rows,
        events: classified.payable.len() as u64,
        payable_events: classified.payable.iter().filter(|&&p| p).count() as u64,
        amount_micros,
        by_reason,
        provenance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reason numbers are not cut to 16 bits: with more than 65,536 distinct
    /// reasons, each is counted under its own name.
    #[test]
    fn counts_per_reason_are_exact_past_16_bits() {
        let distinct = 70_000u32;
        let reasons: Vec<String> = (0..distinct).map(|i| format!("r{i}")).collect();
        // Reason i is used i % 3 times.
        let reason: Vec<u32> = (0..distinct)
            .flat_map(|i| std::iter::repeat_n(i, (i % 3) as usize))
            .collect();
        let n = reason.len();
        let classified = Classified {
            payable: vec![false; n],
            rate_micros: vec![0; n],
            reason,
            reasons,
        };
        let counts = by_reason(&classified);
        assert_eq!(counts.len(), distinct as usize);
        for i in [0u32, 1, 2, 65_535, 65_536, 65_537, 69_999] {
            assert_eq!(counts[&format!("r{i}")], u64::from(i % 3), "r{i}");
        }
        assert_eq!(counts.values().sum::<u64>(), n as u64);
    }
}
