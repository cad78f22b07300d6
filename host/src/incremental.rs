//! Incremental recompute: late input files applied to the published days
//! without reading the input files the output already recorded.
//!
//! When every stale day is stale only because of the new input files'
//! records ([`crate::status`] says `new-events`, `moved-in`, `moved-out`
//! or `replaced`, nothing else), a day's rows after a full recompute are
//! its published rows plus the rows of the new events: every other event
//! keeps its survivor, so its verdict and its row are as published (with
//! the same rule and compute version).
//! `tally run --stale-only` then reads only the new files (once: the status
//! that planned the run read them, and the run takes what it read),
//! classifies their
//! new events, adds their rows to the published ones, and commits exactly
//! what a full recompute of all the inputs would write for those days,
//! byte for byte. The survivor index gains a layer holding the new files'
//! records ([`crate::survivors`]), so nothing of the index is rewritten.
//!
//! A new record earlier than an event's recorded survivor on both
//! timestamps displaces it, and so does the same record (same timestamps,
//! same fields) from a file that comes first among the inputs: that
//! recorded record is read back from its file (only the files holding
//! displaced survivors are read), classified, and its figures are taken
//! off its day's row, as a full recompute would no longer count it.
//!
//! It applies only when nothing else changed: a new record on a recorded
//! record's timestamps with other fields (a tie the index layer could not
//! order), another rule or compute version, an index with
//! [`survivors::MAX_LAYERS`] layers already: each makes the run recompute
//! the stale days from the files they need ([`crate::partial`], after a
//! second, whole read of the index; a tie adds the files of the recorded
//! records it ties with) or, when that is every file, from every input;
//! both write a fresh index without layers. A
//! changed or removed file, or an index without its per-day counts, makes
//! status read the whole index at once.

use crate::aggregate::{Aggregate, Contribution};
use crate::backfill::Plan;
use crate::commit;
use crate::event::{day_of, format_day, parse_day};
use crate::ingest;
use crate::pipeline::{self, Computed, Found, Planned, RunError, RunOptions};
use crate::reconcile::{Figures, Increment, key_of};
use crate::rule::Rule;
use crate::status::{Cause, Late};
use crate::survivors::{self, FieldHasher, IndexedInput};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Why the run cannot apply the new files to the published days, or `None`
/// when it can.
pub fn blocker(plan: &Plan, late: Option<&Late>) -> Option<String> {
    let Some(late) = late else {
        return Some(
            "the survivor index was read whole (a recorded file changed or went, or the index does not count each day's events)"
                .to_string(),
        );
    };
    if late.new_files.is_empty() {
        return Some("no input file is new".to_string());
    }
    if late.tied > 0 {
        return Some(format!(
            "{} event(s) of the new files tie with a recorded record on both timestamps but differ from it",
            late.tied
        ));
    }
    if late.manifest.layers.len() >= survivors::MAX_LAYERS {
        return Some(format!(
            "the survivor index has {} layers already",
            late.manifest.layers.len()
        ));
    }
    let new_records: u64 = plan
        .inputs
        .iter()
        .filter_map(|i| i.valid_records)
        .sum::<u64>()
        + late.manifest.layers.iter().map(|l| l.rows).sum::<u64>();
    let base: u64 = late.manifest.files.iter().map(|f| f.rows).sum();
    if new_records > base / 4 {
        return Some(
            "the index's layers would hold more than a quarter of its records".to_string(),
        );
    }
    for day in &plan.days {
        if let Some(cause) = day.causes.iter().find(|c| {
            !matches!(
                c,
                Cause::NewEvents { .. }
                    | Cause::MovedIn { .. }
                    | Cause::MovedOut { .. }
                    | Cause::Replaced { .. }
            )
        }) {
            return Some(format!(
                "{} is stale for another reason than the new files' events ({})",
                day.day,
                serde_json::to_value(cause)
                    .ok()
                    .and_then(|v| v["kind"].as_str().map(str::to_string))
                    .unwrap_or_default()
            ));
        }
    }
    None
}

fn invariant(message: String) -> RunError {
    RunError::Invariant(message)
}

/// Reads the new files of `late` (or takes them as its status read them),
/// classifies their new events of the days `plan` writes and adds their
/// rows to the published ones: the computation a commit of those days
/// takes, with the index layer of the new files.
pub fn compute(
    options: &RunOptions,
    rule: Rule,
    plan: &Plan,
    mut late: Late,
) -> Result<Computed, RunError> {
    let days: BTreeSet<i32> = plan.days.iter().filter_map(|d| parse_day(&d.day)).collect();
    let planned = Planned::find(&options.inputs, &late.blake3)?;
    // The new files alone: read, validated and deduplicated among themselves.
    let found = planned.subset(&late.new_files);
    let Planned {
        run_id,
        files,
        inputs,
        fingerprint,
    } = planned;
    let read = late
        .read
        .take()
        .filter(|r| r.positions == late.new_files && r.options == options.read);
    let mut prepared = match read {
        Some(read) => pipeline::prepare_read(found, read.read, None, options.progress),
        None => pipeline::prepare_found(found, &options.read, None, options.progress)?,
    };
    pipeline::renumber_sources(&mut prepared, &late.new_files);
    let mut counts = prepared.counts.clone();
    let mut timings = prepared.timings.clone();

    // Events the index knows keep their recorded survivor: the new records
    // of them are duplicates, conflicting when they differ from it.
    let deduped = &mut prepared.deduped;
    let hasher = FieldHasher::new(&deduped.table.strings);
    let survivor_of: HashMap<u32, ()> = deduped.survivors.iter().map(|&g| (g, ())).collect();
    // Per known event: (new records differing from the new survivor, new
    // records differing from the recorded one).
    let mut known: HashMap<survivors::Key, (u64, u64)> = HashMap::new();
    // Per known event, its new records: `occurred_at`, fields hash, and
    // whether dedup kept it among the new records.
    type NewRecord = (i64, u64, bool);
    let mut groups: HashMap<survivors::Key, Vec<NewRecord>> = HashMap::new();
    let mut g = 0u32;
    for c in &deduped.table.chunks {
        for r in 0..c.len() {
            let key = survivors::id_key(c.event_id(r));
            if late.known.contains_key(&key) && !late.displaced.contains_key(&key) {
                groups.entry(key).or_default().push((
                    c.occurred_at[r],
                    hasher.hash(c, r),
                    survivor_of.contains_key(&g),
                ));
            }
            g += 1;
        }
    }
    for (key, records) in &groups {
        let recorded = late.known[key];
        let new_survivor = records
            .iter()
            .find(|r| r.2)
            .map(|r| (r.0, r.1))
            .ok_or_else(|| invariant("an event of the new files has no survivor".to_string()))?;
        let differ = |a: (i64, u64)| records.iter().filter(|r| (r.0, r.1) != a).count() as u64;
        known.insert(
            *key,
            (
                differ(new_survivor),
                differ((recorded.occurred_at, recorded.fields)),
            ),
        );
    }
    for (late_conflicts, recorded_conflicts) in known.values() {
        counts.conflicts = counts.conflicts.saturating_sub(*late_conflicts) + recorded_conflicts;
        counts.duplicates += 1;
        counts.unique -= 1;
        counts.classified -= 1;
    }
    // The new events, per day and file (all days: the index counts them).
    let mut new_events: BTreeMap<(i32, u32), u64> = BTreeMap::new();
    let table = &deduped.table;
    let kept: Vec<u32> = deduped
        .survivors
        .iter()
        .copied()
        .zip(table.rows(&deduped.survivors))
        .filter(|(_, (c, r))| !known.contains_key(&survivors::id_key(c.event_id(*r))))
        .map(|(g, (c, r))| {
            *new_events
                .entry((day_of(c.occurred_at[r]), c.source))
                .or_default() += 1;
            g
        })
        .collect();
    let in_days: Vec<u32> = kept
        .iter()
        .copied()
        .zip(table.rows(&kept))
        .filter(|(_, (c, r))| days.contains(&day_of(c.occurred_at[*r])))
        .map(|(g, _)| g)
        .collect();
    counts.outside_window += (kept.len() - in_days.len()) as u64;
    counts.classified -= (kept.len() - in_days.len()) as u64;
    let unique_new = kept.len() as u64;
    deduped.survivors = in_days;

    let (_, delta) = pipeline::classify_and_sum(
        deduped,
        &mut counts,
        &rule,
        options.batch_size,
        options.progress,
        &mut timings,
    )
    .map_err(|e| e.naming_inputs(&commit::sources(&files)))?;
    let checks = pipeline::check_counts(&counts, &delta.rows)?;
    let gone = displaced_rows(options, &rule, &late, &files, &inputs, &run_id)?;

    // The days' rows are the published ones plus the new, less the
    // displaced survivors': the commit adds them up day by day as it
    // reconciles (and refuses to land on another commit than this one).
    let out = commit::resolve(&options.out)?;
    let existing = commit::existing(&out)?;
    if existing.last_commit != late.commit {
        return Err(RunError::MovedOn {
            built_on: late.commit,
            now: existing.last_commit,
        });
    }
    let mut increment = Increment::default();
    for (day, creator, template, figures) in gone.rows {
        if days.contains(&day) {
            increment
                .taken
                .entry(day)
                .or_default()
                .push((creator, template, figures));
        }
    }
    for taken in increment.taken.values_mut() {
        taken.sort_unstable_by(|a, b| key_of(&a.0, &a.1).cmp(&key_of(&b.0, &b.1)));
    }

    // Where the days' events come from: the index's count, and the new.
    let recorded = late.manifest.inputs.len();
    let mut provenance: BTreeMap<(i32, u32), u64> = BTreeMap::new();
    let mut index_days = late.manifest.days.clone().unwrap_or_default();
    for (day, sources) in late.manifest.days.iter().flatten() {
        let Some(d) = parse_day(day).filter(|d| days.contains(d)) else {
            continue;
        };
        for (&source, &events) in sources {
            let at = late.positions[source as usize] as u32;
            *provenance.entry((d, at)).or_default() += events;
        }
    }
    // A new file's position among the inputs, and in the index's inputs.
    let numbered: HashMap<u32, u32> = late
        .new_files
        .iter()
        .enumerate()
        .map(|(k, &at)| (at as u32, (recorded + k) as u32))
        .collect();
    for (&(day, at), &events) in &new_events {
        if days.contains(&day) {
            *provenance.entry((day, at)).or_default() += events;
        }
        *index_days
            .entry(format_day(day))
            .or_default()
            .entry(numbered[&at])
            .or_default() += events;
    }
    for &(day, at, source) in &gone.from {
        let less = |n: &mut u64| {
            n.checked_sub(1).ok_or_else(|| {
                invariant("a displaced survivor the index does not count".to_string())
            })
        };
        if days.contains(&day) {
            let n = provenance.entry((day, at)).or_default();
            *n = less(n)?;
        }
        let n = index_days
            .entry(format_day(day))
            .or_default()
            .entry(source)
            .or_default();
        *n = less(n)?;
    }
    provenance.retain(|_, n| *n > 0);
    for sources in index_days.values_mut() {
        sources.retain(|_, n| *n > 0);
    }
    index_days.retain(|_, sources| !sources.is_empty());
    let provenance: Vec<Contribution> = provenance
        .into_iter()
        .map(|((day, source), events)| Contribution {
            day,
            source,
            events,
        })
        .collect();
    let aggregate = Aggregate {
        rows: delta.rows,
        events: delta.events,
        payable_events: delta.payable_events,
        amount_micros: delta.amount_micros,
        by_reason: delta.by_reason,
        provenance,
    };

    // The index layer: every valid record of the new files.
    let t = std::time::Instant::now();
    let (work, dir) = pipeline::index_work_dir(&options.spill, &run_id)?;
    let mut table = prepared.deduped.table;
    for c in &mut table.chunks {
        c.source = numbered[&c.source];
    }
    let strings = std::mem::take(&mut table.strings);
    let layer = dir.join(survivors::layer_name(late.manifest.layers.len() + 1));
    let mut writer = survivors::IndexWriter::single(&layer);
    survivors::write_index(table, &FieldHasher::new(&strings), 0, 1, &mut writer)?;
    let (written, records, _) = writer.finish()?;
    let index_inputs: Vec<IndexedInput> = late
        .manifest
        .inputs
        .iter()
        .zip(&late.positions)
        .map(|(r, &at)| (r.blake3.clone(), at))
        .chain(
            late.new_files
                .iter()
                .map(|&at| (inputs[at].blake3.clone(), at)),
        )
        .map(|(blake3, at)| IndexedInput {
            path: inputs[at].path.clone(),
            blake3,
            size: files[at].size,
            modified_ns: survivors::modified_ns(files[at].modified),
        })
        .collect();
    let built = survivors::Built {
        dir,
        files: written,
        records,
        events: late.manifest.events + unique_new,
        modified: Vec::new(),
        days: Some(index_days),
        base: Some(survivors::Base {
            commit: late.commit,
            dir: survivors::dir(&out),
            manifest: late.manifest.clone(),
            inputs: index_inputs,
        }),
    };
    timings.dedup += t.elapsed().as_secs_f64();

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
        increment: Some(increment),
    })
}

/// The recorded survivors the new files displace, read back from their
/// files and classified: what they added to their days' rows, to be taken
/// off.
#[derive(Default)]
struct Gone {
    /// Per row: day, creator, template and figures.
    rows: Vec<(i32, String, String, Figures)>,
    /// Per record: its day, its file's position among the inputs and its
    /// file in the index's numbering.
    from: Vec<(i32, u32, u32)>,
}

/// Reads the files of the displaced survivors (only those), finds each
/// displaced record by its key, timestamps and fields, and classifies them.
fn displaced_rows(
    options: &RunOptions,
    rule: &Rule,
    late: &Late,
    files: &[ingest::InputFile],
    inputs: &[crate::report::InputSummary],
    run_id: &str,
) -> Result<Gone, RunError> {
    let positions = late.displaced_files();
    if positions.is_empty() {
        return Ok(Gone::default());
    }
    let found = Found {
        run_id: run_id.to_string(),
        files: positions.iter().map(|&at| files[at].clone()).collect(),
        inputs: positions.iter().map(|&at| inputs[at].clone()).collect(),
        fingerprint: blake3::hash(b""),
    };
    let mut prepared = pipeline::prepare_found(found, &options.read, None, false)?;
    for c in &mut prepared.deduped.table.chunks {
        c.source = positions[c.source as usize] as u32;
    }
    let table = &prepared.deduped.table;
    let hasher = FieldHasher::new(&table.strings);
    let mut wanted: HashMap<survivors::Key, survivors::Entry> =
        late.displaced.keys().map(|k| (*k, late.known[k])).collect();
    let mut gone = Gone::default();
    let mut rows = Vec::with_capacity(wanted.len());
    let mut g = 0u32;
    for c in &table.chunks {
        for r in 0..c.len() {
            let key = survivors::id_key(c.event_id(r));
            if let Some(e) = wanted.get(&key)
                && e.source == c.source
                && (e.ingested_at, e.occurred_at) == (c.ingested_at[r], c.occurred_at[r])
                && e.fields == hasher.hash(c, r)
            {
                gone.from
                    .push((day_of(e.occurred_at), e.source, late.displaced[&key]));
                wanted.remove(&key);
                rows.push(g);
            }
            g += 1;
        }
    }
    if let Some(e) = wanted.values().next() {
        return Err(invariant(format!(
            "{} no longer holds a record the survivor index recorded from it, though its size and modification time are as recorded: its content changed; rerun with --checksum",
            inputs[e.source as usize].path
        )));
    }
    rows.sort_unstable();
    prepared.deduped.survivors = rows;
    let (_, aggregate) = pipeline::classify_and_sum(
        &prepared.deduped,
        &mut crate::report::Counts::default(),
        rule,
        options.batch_size,
        false,
        &mut crate::report::Timings::default(),
    )?;
    let strings = &prepared.deduped.table.strings;
    let count = |n: u64| {
        i64::try_from(n).map_err(|_| invariant("a displaced row's count overflows".to_string()))
    };
    gone.rows = aggregate
        .rows
        .iter()
        .map(|r| {
            Ok((
                r.day,
                strings.get(r.creator).to_string(),
                strings.get(r.template).to_string(),
                (count(r.events)?, count(r.payable_events)?, r.amount_micros),
            ))
        })
        .collect::<Result<_, RunError>>()?;
    Ok(gone)
}
