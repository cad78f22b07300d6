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

/// Sums the verdicts of every survivor into daily rows.
pub fn aggregate(deduped: &Deduped, classified: &Classified) -> Result<Aggregate, AggregateError> {
    const PART: usize = 1 << 16;
    let table = &deduped.table;
    let merged: HashMap<(i32, u32, u32), Sums> = deduped
        .survivors
        .par_chunks(PART)
        .enumerate()
        .map(|(part, rows)| {
            let mut sums: HashMap<(i32, u32, u32), Sums> = HashMap::new();
            for (i, &g) in rows.iter().enumerate() {
                let at = part * PART + i;
                let (c, r) = table.locate(g);
                let key = (day_of(c.occurred_at[r]), c.creator[r], c.template[r]);
                let paid = classified.payable[at];
                add(
                    sums.entry(key).or_default(),
                    (1, paid as u64, classified.rate_micros[at]),
                )?;
            }
            Ok(sums)
        })
        .try_reduce(HashMap::new, |mut a, mut b| {
            if a.len() < b.len() {
                std::mem::swap(&mut a, &mut b);
            }
            for (key, sums) in b {
                add(a.entry(key).or_default(), sums)?;
            }
            Ok(a)
        })?;

    let mut rows: Vec<Row> = merged
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
        .collect();
    rows.par_sort_unstable_by_key(|r| (r.day, r.creator, r.template));

    let mut by_reason = BTreeMap::new();
    let mut counts = vec![0u64; classified.reasons.len()];
    for &r in &classified.reason {
        counts[r as usize] += 1;
    }
    for (name, count) in classified.reasons.iter().zip(counts) {
        by_reason.insert(name.clone(), count);
    }
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
    })
}
