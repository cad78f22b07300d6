//! Reduce: one shard's records deduplicated, classified and summed, as the
//! in-memory run does for the whole input.

use super::spill;
use crate::aggregate::Aggregate;
use crate::dedup::merge;
use crate::ingest::Chunk;
use crate::intern::Interner;
use crate::pipeline::{self, RunError};
use crate::progress::Progress;
use crate::report::{Counts, Timings};
use crate::rule::Rule;
use crate::scope::CreatorScope;
use std::time::Instant;

/// What one shard contributes: its rows (string ids into `strings`) and its
/// counts from `valid` on (valid, duplicates, conflicts, unique, classified,
/// outside the window, payable, amount, reasons).
pub struct Partial {
    pub strings: Interner,
    pub aggregate: Aggregate,
    pub counts: Counts,
    /// The shard's part of the survivor index: its valid records, kept until
    /// whoever writes the index takes them (dropping them frees the memory),
    /// or none when the shard has no part.
    pub index: Option<crate::survivors::Part>,
}

/// Reduces shard `shard` of `shards` from its spill files. With `progress`,
/// each stage (read, dedup, classify) draws its line on a terminal.
#[allow(clippy::too_many_arguments)]
pub fn reduce(
    files: &[spill::SpillFile],
    shard: u32,
    shards: u32,
    rule: &Rule,
    batch_size: usize,
    days: Option<(i32, i32)>,
    scope: Option<&CreatorScope>,
    progress: bool,
    timings: &mut Timings,
) -> Result<Partial, RunError> {
    let t = Instant::now();
    let bar = Progress::stage("read", progress);
    let (chunks, interners) = spill::read(files, shard, shards)?;
    bar.finish();
    let mut partial = reduce_chunks(
        chunks, interners, rule, batch_size, days, scope, t, progress, timings,
    )?;
    if let Some(crate::survivors::Part::Records(records)) = partial.index.as_mut() {
        // Buckets of the index are then cut from this shard's keys alone.
        records.shard = shard;
        records.shards = shards;
    }
    Ok(partial)
}

/// Reduces one shard's records, read into `chunks` (string ids into
/// `interners`) by whatever carried them (spill files, a Spark shuffle);
/// `started` is when reading them began, counted as dedup time. The
/// records are kept in the result for the survivor index, as those of shard
/// 0 of 1 (set [`crate::survivors::Records`]'s shard when it is known).
/// With `scope`, only the listed creators' events are classified and summed
/// ([`pipeline::narrow_to_scope`]). With `progress`, dedup and classify
/// draw their lines on a terminal.
#[allow(clippy::too_many_arguments)]
pub fn reduce_chunks(
    mut chunks: Vec<Chunk>,
    interners: Vec<Interner>,
    rule: &Rule,
    batch_size: usize,
    days: Option<(i32, i32)>,
    scope: Option<&CreatorScope>,
    started: Instant,
    progress: bool,
    timings: &mut Timings,
) -> Result<Partial, RunError> {
    let t = started;
    let bar = Progress::stage("dedup", progress);
    // In input-file order, as the in-memory run has them: of two identical
    // records in different files, dedup keeps the first it sees, and the
    // day's provenance names that one's file.
    chunks.sort_by_key(|c| c.source);
    let (table, _) = merge(chunks, interners)?;
    let mut counts = Counts {
        valid: table.len() as u64,
        ..Counts::default()
    };
    let mut deduped = pipeline::survive(table, days, &mut counts);
    let provenance = scope.map(|scope| pipeline::narrow_to_scope(&mut deduped, scope, &mut counts));
    bar.finish();
    timings.dedup += t.elapsed().as_secs_f64();
    let (_, mut aggregate) =
        pipeline::classify_and_sum(&deduped, &mut counts, rule, batch_size, progress, timings)?;
    if let Some(provenance) = provenance {
        aggregate.provenance = provenance;
    }
    let mut records = crate::survivors::Records::keep(deduped.table, 0, 1);
    let strings = std::mem::take(&mut records.table.strings);
    Ok(Partial {
        strings,
        aggregate,
        counts,
        index: Some(crate::survivors::Part::Records(records)),
    })
}
