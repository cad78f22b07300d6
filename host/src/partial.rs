//! Partial recompute: the stale days recomputed from only the input files
//! that hold records of their events.
//!
//! When a recorded input file changed or went, `tally status` reads the
//! whole survivor index ([`crate::status::Whole`]), and with it learns, for
//! every day, which input files hold a record of an event that has a record
//! on that day. An event's surviving record is one of its records, so the
//! events a recompute puts on a day all have a record there; reading the
//! files that hold any record of any such event reads every record of every
//! event that can survive on the day. Deduplicating what those files hold
//! then gives each of those events the survivor a full recompute gives it,
//! and the day the rows that a full recompute writes, byte for byte. Events
//! of the files read with no record on the days written are left out: their
//! other records may not have been read.
//!
//! The run's counts and quarantine are those of the files it read. The
//! survivor index is rewritten whole, without reading the other files: the
//! published index's records of the files still among the inputs, merged
//! with the new and changed files' records that status read, in the order
//! a full recompute's index has them, so that the index too is the one a
//! full recompute writes.
//!
//! A run reads the whole index this way when a recorded file changed or
//! went, and also when the new files alone cannot be applied
//! ([`crate::incremental::blocker`]: another rule, too many layers, ...) but
//! the stale days may need fewer than every file. When a new record ties
//! with a recorded one on both timestamps but differs from it, their order
//! in the index takes the recorded record's details, which the index does
//! not hold (only a hash of them): the run then also reads the files of the
//! recorded records on those timestamps ([`Whole::tie_files`]) and orders
//! the records by their details. It applies when the files it reads fit
//! the memory limit: else the run reads every input, as before.

use crate::aggregate::Contribution;
use crate::backfill::Plan;
use crate::commit;
use crate::dedup::Table;
use crate::event::{day_of, parse_day};
use crate::ingest;
use crate::pipeline::{self, Computed, Planned, RunError, RunOptions};
use crate::rule::Rule;
use crate::status::Whole;
use crate::survivors::{self, Entry, IndexError, IndexWriter, Key, SurvivorOrder};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

fn invariant(message: String) -> RunError {
    RunError::Invariant(message)
}

/// Reads the files the days of `plan` need (as `whole` tells), recomputes
/// those days from them, and rewrites the survivor index: the computation a
/// commit of those days takes.
pub fn compute(
    options: &RunOptions,
    rule: Rule,
    plan: &Plan,
    whole: Whole,
) -> Result<Computed, RunError> {
    let days: BTreeSet<i32> = plan.days.iter().filter_map(|d| parse_day(&d.day)).collect();
    let planned = Planned::find(&options.inputs, &whole.blake3)?;
    let positions = whole.files_for(days.iter().copied());

    // The files the days need, read, validated and deduplicated together.
    let span = days.first().zip(days.last()).map(|(&a, &b)| (a, b));
    let found = planned.subset(&positions);
    let Planned {
        run_id,
        files,
        inputs,
        fingerprint,
    } = planned;
    let mut prepared = pipeline::prepare_found(found, &options.read, span, options.progress)?;
    pipeline::renumber_sources(&mut prepared, &positions);
    // Only the days written: the span may hold others, whose events' other
    // records were not all read.
    let mut counts = prepared.counts.clone();
    let deduped = &mut prepared.deduped;
    let kept: Vec<u32> = deduped
        .survivors
        .iter()
        .copied()
        .zip(deduped.table.rows(&deduped.survivors))
        .filter(|(_, (c, r))| days.contains(&day_of(c.occurred_at[*r])))
        .map(|(g, _)| g)
        .collect();
    let left_out = (deduped.survivors.len() - kept.len()) as u64;
    counts.classified -= left_out;
    counts.outside_window += left_out;
    deduped.survivors = kept;
    let mut timings = prepared.timings.clone();
    let (_, aggregate) = pipeline::classify_and_sum(
        &prepared.deduped,
        &mut counts,
        &rule,
        options.batch_size,
        options.progress,
        &mut timings,
    )
    .map_err(|e| e.naming_inputs(&commit::sources(&files)))?;
    let checks = pipeline::check_counts(&counts, &aggregate.rows)?;

    // The index of every input, from the published one and the new records.
    let t = std::time::Instant::now();
    let (work, dir) = pipeline::index_work_dir(&options.spill, &run_id)?;
    let out = commit::resolve(&options.out)?;
    let settled = settle_ties(&prepared.deduped.table, &whole.tied);
    let built = rewrite_index(&out, &whole, &settled, &dir, &files)?;
    check_provenance(&built, &aggregate.provenance, &days)?;
    timings.dedup += t.elapsed().as_secs_f64();

    let strings = std::mem::take(&mut prepared.deduped.table.strings);
    Ok(Computed {
        read: options.read,
        run_id,
        rule,
        files,
        inputs,
        fingerprint,
        strings,
        aggregate,
        quarantine: commit::Quarantine::Records(prepared.quarantine),
        counts,
        checks,
        timings,
        work: Some(work),
        shards: 1,
        index: Some(built),
        increment: None,
    })
}

/// One record as the index orders it: `(ingested_at, occurred_at, fields)`.
type Timed = (i64, i64, u64);

/// The records read of each event in `tied`, distinct, in the survivor
/// rule's order: what orders a tie between a recorded and a new record,
/// both read (the run reads the files of the recorded records that new
/// ones tie with, see [`Whole::tie_files`]).
fn settle_ties(table: &Table, tied: &HashSet<Key>) -> HashMap<Key, Vec<Timed>> {
    let order = SurvivorOrder::default();
    survivors::records_of(table, tied)
        .into_iter()
        .map(|(key, mut rs)| {
            rs.sort_by(|a, b| order.records(a, b));
            let mut timed: Vec<Timed> = rs
                .iter()
                .map(|r| (r.ingested_at, r.occurred_at, r.fields_hash()))
                .collect();
            timed.dedup();
            (key, timed)
        })
        .collect()
}

/// Writes into `dir` the index of every input: the records of the index in
/// `out` still among the inputs merged with `whole`'s new records, each
/// event's records in the order a full recompute's index has them.
fn rewrite_index(
    out: &std::path::Path,
    whole: &Whole,
    settled: &HashMap<Key, Vec<Timed>>,
    dir: &std::path::Path,
    files: &[ingest::InputFile],
) -> Result<survivors::Built, RunError> {
    let new = &whole.new_entries;
    let mut writer = IndexWriter::create(dir, whole.records)?;
    let mut at = 0;
    let mut group: Vec<Entry> = Vec::new();
    let mut ranks: Vec<u32> = Vec::new();
    survivors::read_merged(out, &whole.manifest, &mut |old| {
        let mut batch = Vec::with_capacity(old.len());
        let mut i = 0;
        while i < old.len() {
            let key = old[i].key();
            while at < new.len() && new[at].key() < key {
                let end = survivors::group_end(new, at);
                batch.extend_from_slice(&new[at..end]);
                at = end;
            }
            let end = survivors::group_end(&old, i);
            group.clear();
            for e in &old[i..end] {
                let Some(&place) = whole.positions.get(e.source as usize) else {
                    return Err(IndexError::Damaged {
                        path: survivors::dir(out),
                        message: "a row names an input file the manifest does not list".to_string(),
                    });
                };
                if let Some(position) = place {
                    group.push(Entry {
                        source: position as u32,
                        ..*e
                    });
                }
            }
            while at < new.len() && new[at].key() == key {
                group.push(new[at]);
                at += 1;
            }
            order_group(&mut group, &mut ranks, settled.get(&key).map(Vec::as_slice));
            batch.extend_from_slice(&group);
            i = end;
        }
        writer.push(batch)
    })?;
    writer.push(new[at..].iter().copied())?;
    let finished = writer.finish_counted()?;
    let records = finished.1;
    if records != whole.records {
        return Err(invariant(format!(
            "records in the rewritten survivor index = records planned: {records} = {}",
            whole.records
        )));
    }
    Ok(pipeline::fresh_index(dir.to_path_buf(), finished, files))
}

/// Puts one event's records (the recorded ones in their index order, then
/// the new ones in theirs) in the order of a full recompute's index: by
/// `ingested_at`, then `occurred_at`; records on the same timestamps with
/// other fields in the survivor rule's order of their details, and the same
/// record in several files by file.
///
/// Each list has its records on one pair of timestamps in that order
/// already; where both lists hold records on one pair with other fields (a
/// tie, [`Whole::tied`]), `settled` has every record of the pair in that
/// order, read from the files.
fn order_group(group: &mut [Entry], ranks: &mut Vec<u32>, settled: Option<&[Timed]>) {
    if group.len() < 2 {
        return;
    }
    // Each record's rank among the distinct fields on its timestamps: as
    // `settled` has them where it has every record on them, else by first
    // appearance.
    ranks.clear();
    let mut seen: Vec<u64> = Vec::new();
    for (i, e) in group.iter().enumerate() {
        let time = (e.ingested_at, e.occurred_at);
        seen.clear();
        for earlier in &group[..i] {
            if (earlier.ingested_at, earlier.occurred_at) == time && !seen.contains(&earlier.fields)
            {
                seen.push(earlier.fields);
            }
        }
        let rank = seen
            .iter()
            .position(|&f| f == e.fields)
            .unwrap_or(seen.len());
        ranks.push(rank as u32);
    }
    if let Some(settled) = settled {
        let time = |e: &Entry| (e.ingested_at, e.occurred_at);
        let place = |e: &Entry| {
            settled
                .iter()
                .filter(|s| (s.0, s.1) == time(e))
                .position(|s| s.2 == e.fields)
        };
        for (i, e) in group.iter().enumerate() {
            let same_time = || group.iter().filter(|o| time(o) == time(e));
            if let Some(rank) = place(e)
                && same_time().all(|o| place(o).is_some())
            {
                ranks[i] = rank as u32;
            }
        }
    }
    let mut keyed: Vec<(Entry, u32)> = group.iter().copied().zip(ranks.iter().copied()).collect();
    keyed.sort_by_key(|(e, rank)| (e.ingested_at, e.occurred_at, *rank, e.source));
    for (slot, (e, _)) in group.iter_mut().zip(keyed) {
        *slot = e;
    }
}

/// Checks that the rewritten index counts, for each day written, the events
/// the recompute found there, file by file: the index and the files read
/// agree on every survivor of those days.
fn check_provenance(
    built: &survivors::Built,
    provenance: &[Contribution],
    days: &BTreeSet<i32>,
) -> Result<(), RunError> {
    let mut computed: BTreeMap<(i32, u32), u64> = BTreeMap::new();
    for c in provenance {
        *computed.entry((c.day, c.source)).or_default() += c.events;
    }
    let mut indexed: BTreeMap<(i32, u32), u64> = BTreeMap::new();
    for (day, sources) in built.days.iter().flatten() {
        let Some(day) = parse_day(day).filter(|d| days.contains(d)) else {
            continue;
        };
        for (&source, &events) in sources {
            if events > 0 {
                indexed.insert((day, source), events);
            }
        }
    }
    computed.retain(|_, n| *n > 0);
    if computed != indexed {
        let differ = computed
            .iter()
            .find(|(k, n)| indexed.get(k) != Some(n))
            .map(|(k, _)| *k)
            .or_else(|| indexed.keys().find(|k| !computed.contains_key(k)).copied());
        return Err(invariant(format!(
            "the rewritten survivor index and the files read disagree on the events of {} from input {}",
            differ.map_or_else(String::new, |(d, _)| crate::event::format_day(d)),
            differ.map_or(0, |(_, s)| s)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ingested_at: i64, fields: u64, source: u32) -> Entry {
        Entry {
            id_hash: 1,
            id_hash_low: 2,
            occurred_at: 0,
            ingested_at,
            fields,
            source,
        }
    }

    #[test]
    fn a_group_is_ordered_by_time_then_as_listed_then_by_file() {
        // Recorded: two records on one timestamp with other fields (in
        // their details' order), then a later one; new: the first record
        // again, from an earlier file, and an earlier record.
        let mut group = vec![
            entry(10, 7, 3),
            entry(10, 5, 1),
            entry(20, 7, 2),
            entry(10, 7, 0),
            entry(5, 9, 4),
        ];
        order_group(&mut group, &mut Vec::new(), None);
        let order: Vec<(i64, u64, u32)> = group
            .iter()
            .map(|e| (e.ingested_at, e.fields, e.source))
            .collect();
        assert_eq!(
            order,
            vec![(5, 9, 4), (10, 7, 0), (10, 7, 3), (10, 5, 1), (20, 7, 2)]
        );
    }

    #[test]
    fn a_tie_is_ordered_as_the_records_read_back_are() {
        // Recorded: two records on one timestamp, in their order, and two
        // on a later one; new: a record on each timestamp with other fields.
        let recorded = [
            entry(10, 7, 3),
            entry(10, 5, 1),
            entry(20, 4, 2),
            entry(20, 3, 0),
        ];
        let new = [entry(10, 9, 4), entry(20, 8, 4)];
        let order = |settled: Option<&[Timed]>| {
            let mut group: Vec<Entry> = recorded.iter().chain(&new).copied().collect();
            order_group(&mut group, &mut Vec::new(), settled);
            group
                .iter()
                .map(|e| (e.ingested_at, e.fields))
                .collect::<Vec<_>>()
        };
        // The records read back rank the new one between the first two; on
        // the later timestamps one recorded record was not read, and the
        // order there stays as the lists had it.
        let settled = [(10, 0, 7), (10, 0, 9), (10, 0, 5), (20, 0, 8), (20, 0, 4)];
        assert_eq!(
            order(Some(&settled)),
            vec![(10, 7), (10, 9), (10, 5), (20, 4), (20, 3), (20, 8)]
        );
        assert_eq!(
            order(None),
            vec![(10, 7), (10, 5), (10, 9), (20, 4), (20, 3), (20, 8)]
        );
    }
}
