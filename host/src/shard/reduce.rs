//! Reduce: one shard's records deduplicated, classified and summed, as the
//! in-memory run does for the whole input.

use super::spill;
use crate::aggregate::Aggregate;
use crate::dedup::merge;
use crate::intern::Interner;
use crate::pipeline::{self, RunError};
use crate::report::{Counts, Timings};
use crate::rule::Rule;
use std::time::Instant;

/// What one shard contributes: its rows (string ids into `strings`) and its
/// counts from `valid` on (valid, duplicates, conflicts, unique, classified,
/// outside the window, payable, amount, reasons).
pub struct Partial {
    pub strings: Interner,
    pub aggregate: Aggregate,
    pub counts: Counts,
}

/// Reduces shard `shard` of `shards` from its spill files.
pub fn reduce(
    files: &[spill::SpillFile],
    shard: u32,
    shards: u32,
    rule: &Rule,
    batch_size: usize,
    days: Option<(i32, i32)>,
    timings: &mut Timings,
) -> Result<Partial, RunError> {
    let t = Instant::now();
    let (chunks, interners) = spill::read(files, shard, shards)?;
    let (table, _) = merge(chunks, interners)?;
    let mut counts = Counts {
        valid: table.len() as u64,
        ..Counts::default()
    };
    let deduped = pipeline::survive(table, days, &mut counts);
    timings.dedup += t.elapsed().as_secs_f64();
    let (_, aggregate) =
        pipeline::classify_and_sum(&deduped, &mut counts, rule, batch_size, false, timings)?;
    Ok(Partial {
        strings: deduped.table.strings,
        aggregate,
        counts,
    })
}
