//! Classify: hands the surviving events to the rule in columnar batches, in
//! parallel, and collects one verdict per event.
//!
//! Batches are cut from the survivors in input order; each batch carries its own
//! dictionaries of the creator, template and brand strings it uses, in byte
//! order. Each batch runs in a fresh sandboxed instance (see `rule`), so
//! verdicts do not depend on the batch size or on which thread ran the batch.
//!
//! When the rule fails on a batch, the error names the event it failed on:
//! the first batch that fails, in input order (whatever the threads did), is
//! classified again in fresh instances, a prefix at a time, to find the first
//! of its events the rule fails on (see [`locate`]), and that event's id and
//! input position go into the error (the caller, which knows the input
//! files, names the file with `RuleError::naming_inputs`).

use crate::dedup::Deduped;
use crate::intern::Interner;
use crate::rule::{
    DictColumn, EventBatch, FailedEvent, MAX_REASONS_PER_RUN, Problem, Rule, RuleError,
    StringColumn,
};
use crate::validate::NO_BRAND;
use hashbrown::HashMap;
use rayon::prelude::*;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// One verdict per survivor, in survivor order.
pub struct Classified {
    /// Whether each event is payable.
    pub payable: Vec<bool>,
    /// The amount for each event, in micros (0 when not payable).
    pub rate_micros: Vec<i64>,
    /// Index into `reasons` of each event's reason code.
    pub reason: Vec<u32>,
    /// The distinct reason codes (at most [`MAX_REASONS_PER_RUN`]).
    pub reasons: Vec<String>,
}

/// The distinct reasons of a run, each numbered by its first appearance.
#[derive(Default)]
struct Reasons {
    names: Vec<String>,
    index: HashMap<String, u32>,
}

impl Reasons {
    /// The run-wide numbers of a batch's reasons (each already checked by the
    /// rule's per-batch limits), adding those not seen before; `None` if that
    /// would take the run past [`MAX_REASONS_PER_RUN`].
    fn number(&mut self, batch: &[String]) -> Option<Vec<u32>> {
        let mut numbers = Vec::with_capacity(batch.len());
        for reason in batch {
            let number = match self.index.get(reason.as_str()) {
                Some(&number) => number,
                None => {
                    if self.names.len() >= MAX_REASONS_PER_RUN {
                        return None;
                    }
                    let number = self.names.len() as u32;
                    self.names.push(reason.clone());
                    self.index.insert(reason.clone(), number);
                    number
                }
            };
            numbers.push(number);
        }
        Some(numbers)
    }
}

/// Scratch space for building a batch's dictionaries: a bitmap with one bit
/// per string of the run (clear between batches), and each string's key in
/// the dictionary being built (meaningful only for the strings marked in it).
pub struct Scratch {
    bits: Vec<u64>,
    keys: Vec<u32>,
}

/// Scratch space for [`build_batch`] over `deduped`.
pub fn scratch(deduped: &Deduped) -> Scratch {
    // At least one slot: a null id looks up slot 0 (and ignores it).
    let strings = deduped.table.strings.len().max(1);
    Scratch {
        bits: vec![0; strings.div_ceil(64)],
        keys: vec![0; strings],
    }
}

/// Builds the columnar batch for the given rows (global row indices).
///
/// The rows are gathered a column at a time within each chunk, the string
/// columns as raw ids, which [`dictionary`] then turns into keys and values.
pub fn build_batch(deduped: &Deduped, rows: &[u32], local: &mut Scratch) -> EventBatch {
    let table = &deduped.table;
    let n = rows.len();
    let mut event_id = StringColumn {
        offsets: Vec::with_capacity(n + 1),
        bytes: Vec::with_capacity(n * 36),
    };
    event_id.offsets.push(0);
    let mut occurred_at = Vec::with_capacity(n);
    let mut ingested_at = Vec::with_capacity(n);
    let mut ids: [Vec<u32>; 3] = std::array::from_fn(|_| Vec::with_capacity(n));
    let mut content_kind = Vec::with_capacity(n);
    let mut action = Vec::with_capacity(n);
    let mut user_tier = Vec::with_capacity(n);
    let mut country = Vec::with_capacity(2 * n);
    // A column at a time within each chunk: tight loops without a capacity
    // check per value.
    for (c, start, rows) in table.segments(rows) {
        let rows = || rows.iter().map(|&g| (g - start) as usize);
        for r in rows() {
            event_id.bytes.extend_from_slice(c.event_id(r));
            event_id.offsets.push(event_id.bytes.len() as u32);
        }
        occurred_at.extend(rows().map(|r| c.occurred_at[r]));
        ingested_at.extend(rows().map(|r| c.ingested_at[r]));
        ids[0].extend(rows().map(|r| c.creator[r]));
        ids[1].extend(rows().map(|r| c.template[r]));
        ids[2].extend(rows().map(|r| c.brand[r]));
        content_kind.extend(rows().map(|r| c.content_kind[r]));
        action.extend(rows().map(|r| c.action[r]));
        user_tier.extend(rows().map(|r| c.user_tier[r]));
        country.extend(rows().flat_map(|r| c.country[r]));
    }
    let [creator_id, template_id, brand_id] = ids;
    EventBatch {
        event_id,
        occurred_at,
        ingested_at,
        creator_id: dictionary(creator_id, local, &table.strings),
        template_id: dictionary(template_id, local, &table.strings),
        brand_id: dictionary(brand_id, local, &table.strings),
        content_kind,
        action,
        user_tier,
        country,
    }
}

/// The most string bytes per event a span dictionary may carry (ids of the
/// usual kind are 10 to 40 bytes long).
const SPAN_BYTES_PER_EVENT: usize = 64;

/// Turns global string ids into a batch dictionary; [`NO_BRAND`] becomes the
/// null key. Ids are in byte order, and so are the values of the dictionary.
///
/// When the ids a batch uses lie close together, the dictionary is simply
/// every string from the lowest id to the highest: a key is an id minus the
/// lowest, and the values are one slice of the run's strings. That span is
/// used only while it is small next to the batch: fewer strings than there are
/// events, and at most [`SPAN_BYTES_PER_EVENT`] bytes per event. Otherwise the
/// dictionary holds just the strings used (see [`sparse_dictionary`]). Either
/// way, each event carries the same strings.
fn dictionary(mut ids: Vec<u32>, scratch: &mut Scratch, strings: &Interner) -> DictColumn {
    // `NO_BRAND` is `u32::MAX`, so it never lowers the minimum.
    let (first, last) = ids.iter().fold((u32::MAX, 0), |(first, last), &id| {
        let used = id != NO_BRAND;
        (first.min(id), last.max(if used { id } else { 0 }))
    });
    if first > last || (last - first) as usize >= ids.len() {
        return sparse_dictionary(ids, (first, last), scratch, strings);
    }
    let (bytes, ends) = strings.span(first, last);
    if bytes.len() > SPAN_BYTES_PER_EVENT * ids.len() {
        return sparse_dictionary(ids, (first, last), scratch, strings);
    }
    for id in &mut ids {
        *id = if *id == NO_BRAND {
            NO_BRAND
        } else {
            *id - first
        };
    }
    let mut offsets = Vec::with_capacity(ends.len() + 1);
    offsets.push(0);
    offsets.extend(ends);
    DictColumn {
        keys: ids,
        values: StringColumn {
            offsets,
            bytes: bytes.to_vec(),
        },
    }
}

/// A dictionary of just the strings a batch uses, in id order, each key its
/// string's position among them; `first` and `last` are the lowest and highest
/// id used (`u32::MAX` and 0 when every id is null).
///
/// Three passes without data-dependent branches: mark the ids used in a
/// bitmap, sweep the marked ids in order (numbering them and copying their
/// strings), then replace each id with its number.
fn sparse_dictionary(
    mut ids: Vec<u32>,
    (first, last): (u32, u32),
    scratch: &mut Scratch,
    strings: &Interner,
) -> DictColumn {
    let Scratch { bits, keys } = scratch;
    for &id in &ids {
        let used = id != NO_BRAND;
        let id = if used { id as usize } else { 0 };
        bits[id / 64] |= u64::from(used) << (id % 64);
    }
    let mut values = StringColumn {
        offsets: vec![0],
        bytes: Vec::new(),
    };
    let mut next = 0;
    // The words that hold every id used (none when every id is null).
    let words = if first <= last {
        first as usize / 64..last as usize / 64 + 1
    } else {
        0..0
    };
    for (word, bits) in words.clone().zip(&mut bits[words]) {
        let mut set = std::mem::take(bits);
        while set != 0 {
            let id = word * 64 + set.trailing_zeros() as usize;
            set &= set - 1;
            keys[id] = next;
            next += 1;
            values
                .bytes
                .extend_from_slice(strings.get(id as u32).as_bytes());
            values.offsets.push(values.bytes.len() as u32);
        }
    }
    for id in &mut ids {
        let used = *id != NO_BRAND;
        let key = keys[if used { *id as usize } else { 0 }];
        *id = if used { key } else { NO_BRAND };
    }
    DictColumn { keys: ids, values }
}

/// Classifies every survivor with `rule`, `batch_size` events per call.
/// `progress` receives the number of events classified so far.
pub fn classify(
    deduped: &Deduped,
    rule: &Rule,
    batch_size: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Classified, RuleError> {
    let n = deduped.survivors.len();
    let batch_size = batch_size.max(1);
    let mut payable = vec![false; n];
    let mut rate_micros = vec![0i64; n];
    let mut reason = vec![0u32; n];
    let reasons: Mutex<Reasons> = Mutex::new(Reasons::default());
    let done = AtomicU64::new(0);
    // Which batches were classified, and the first (in input order) that
    // failed so far, for naming the first failure whatever the threads did.
    let finished: Vec<AtomicBool> = (0..n.div_ceil(batch_size))
        .map(|_| AtomicBool::new(false))
        .collect();
    let failed: Mutex<Option<(usize, RuleError)>> = Mutex::new(None);

    let outcome = deduped
        .survivors
        .par_chunks(batch_size)
        .zip(payable.par_chunks_mut(batch_size))
        .zip(rate_micros.par_chunks_mut(batch_size))
        .zip(reason.par_chunks_mut(batch_size))
        .enumerate()
        .try_for_each_init(
            || scratch(deduped),
            |local, (index, (((rows, payable), rate), reason))| {
                let batch = build_batch(deduped, rows, local);
                let verdicts = match rule.classify(&batch, index) {
                    Ok(verdicts) => verdicts,
                    Err(error) => {
                        let mut failed = failed.lock().unwrap_or_else(|e| e.into_inner());
                        if failed.as_ref().is_none_or(|(first, _)| index < *first) {
                            *failed = Some((index, error));
                        }
                        return Err(None);
                    }
                };
                let global = reasons
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .number(&verdicts.reasons)
                    .ok_or_else(|| {
                        Some(RuleError::Call {
                            rule: rule.label(),
                            call: format!("batch {index}, {} events", rows.len()),
                            problem: Problem::TooManyReasons {
                                count: MAX_REASONS_PER_RUN + 1,
                                limit: MAX_REASONS_PER_RUN,
                                scope: "over the run",
                            },
                        })
                    })?;
                for (out, &v) in payable.iter_mut().zip(&verdicts.payable) {
                    *out = v == 1;
                }
                rate.copy_from_slice(&verdicts.rate_micros);
                for (out, &v) in reason.iter_mut().zip(&verdicts.reason) {
                    *out = global[usize::from(v)];
                }
                finished[index].store(true, Ordering::Relaxed);
                progress(done.fetch_add(rows.len() as u64, Ordering::Relaxed) + rows.len() as u64);
                Ok(())
            },
        );
    if let Err(error) = outcome {
        return Err(
            match failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
                Some((index, error)) => {
                    first_failure(deduped, rule, batch_size, &finished, index, error)
                }
                None => error.expect("a stop without a failed batch carries its error"),
            },
        );
    }
    Ok(Classified {
        payable,
        rate_micros,
        reason,
        reasons: reasons
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .names,
    })
}

/// The error of the first batch, in input order, that the rule fails on,
/// narrowed down to its event: batch `index` failed with `error`, and the
/// batches before it that were not `finished` (the run stopped before they
/// ran) are classified now, to find any that fails first.
fn first_failure(
    deduped: &Deduped,
    rule: &Rule,
    batch_size: usize,
    finished: &[AtomicBool],
    index: usize,
    error: RuleError,
) -> RuleError {
    let rows = |i: usize| {
        let all = &deduped.survivors;
        &all[i * batch_size..((i + 1) * batch_size).min(all.len())]
    };
    let earlier = (0..index)
        .into_par_iter()
        .filter(|&i| !finished[i].load(Ordering::Relaxed))
        .map_init(
            || scratch(deduped),
            |local, i| {
                let batch = build_batch(deduped, rows(i), local);
                rule.classify(&batch, i).err().map(|error| (i, error))
            },
        )
        .find_map_first(|failure| failure);
    let (index, error) = earlier.unwrap_or((index, error));
    locate(deduped, rows(index), rule, index, error)
}

/// Finds the event of the batch `rows` (batch number `index`) that the rule
/// failed on with `error`.
///
/// The rule goes through a batch's events in order and stops at the first it
/// fails on, so every prefix of the batch that holds that event fails and no
/// shorter one does: a binary search over prefix lengths, in fresh instances,
/// finds it in about log2(batch size) calls. The event is then classified
/// alone, which tells whether it fails by itself. The problem stays the
/// batch's (its fuel budget is the batch's, say). Only failures while events
/// are classified (a trap or panic, fuel, memory) are searched: an error
/// returned or malformed verdicts concern the batch, and are returned as
/// they are, as is an error that is not a failed call.
pub fn locate(
    deduped: &Deduped,
    rows: &[u32],
    rule: &Rule,
    index: usize,
    error: RuleError,
) -> RuleError {
    let RuleError::Call {
        rule: label,
        call,
        problem,
    } = error
    else {
        return error;
    };
    let searched = matches!(
        problem,
        Problem::Trap(_)
            | Problem::Panicked(_)
            | Problem::OutOfFuel { .. }
            | Problem::MemoryCap { .. }
    );
    if !searched || rows.is_empty() {
        return RuleError::Call {
            rule: label,
            call,
            problem,
        };
    }
    let mut local = scratch(deduped);
    let mut fails = |rows: &[u32]| {
        let batch = build_batch(deduped, rows, &mut local);
        rule.classify(&batch, index).is_err()
    };
    // Prefixes of `passes` events pass; of `fail` events fail (the whole
    // batch did).
    let (mut passes, mut fail) = (0, rows.len());
    while fail - passes > 1 {
        let middle = passes + (fail - passes) / 2;
        if fails(&rows[..middle]) {
            fail = middle;
        } else {
            passes = middle;
        }
    }
    let row = rows[fail - 1];
    let alone = fails(&[row]);
    let (chunk, r) = deduped.table.locate(row);
    RuleError::OnEvent {
        rule: label,
        call,
        problem,
        event: Box::new(FailedEvent {
            event_id: String::from_utf8_lossy(chunk.event_id(r)).into_owned(),
            source: chunk.source,
            file: None,
            position: chunk.position.get(r).copied().unwrap_or(0),
            alone,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup::{dedup, merge};
    use crate::ingest::Chunk;
    use crate::validate::{EventColumns, Value};

    /// 400 events over 200 templates and 40 brands (every third event has
    /// none), deduplicated.
    fn table() -> Deduped {
        let templates = (0..400).map(|i| format!("tpl-{:03}", (i * 7) % 200));
        table_of(&templates.collect::<Vec<_>>())
    }

    /// One event per template given, with 40 brands (every third event has
    /// none), deduplicated.
    fn table_of(templates: &[String]) -> Deduped {
        let mut events = EventColumns::new();
        let mut strings = Interner::new();
        let n = templates.len();
        let (mut ids, mut brands) = (vec![], vec![]);
        for i in 0..n {
            ids.push(format!("ev-{i:04}"));
            brands.push(format!("br-{:02}", i % 40));
        }
        for i in 0..n {
            let record = [
                Value::Str(&ids[i]),
                Value::Int(1_777_636_800_000 + i as i64),
                Value::Int(1_777_636_900_000),
                Value::Str(if i % 2 == 0 { "cr-a" } else { "cr-b" }),
                Value::Str(&templates[i]),
                if i % 3 == 0 {
                    Value::Null
                } else {
                    Value::Str(&brands[i])
                },
                Value::Str("image"),
                Value::Str("use"),
                Value::Str("pro"),
                Value::Str("BR"),
            ];
            events.push(&record, &mut strings).unwrap();
        }
        let chunk = Chunk {
            source: 0,
            seq: 0,
            records: n as u64,
            interner: 0,
            events,
            quarantine: Vec::new(),
        };
        let (table, _) = merge(vec![chunk], vec![strings]).unwrap();
        dedup(table)
    }

    fn value(column: &StringColumn, key: u32) -> &str {
        let (start, end) = (
            column.offsets[key as usize],
            column.offsets[key as usize + 1],
        );
        std::str::from_utf8(&column.bytes[start as usize..end as usize]).unwrap()
    }

    /// Every event of the batch carries its own strings, whichever way its
    /// dictionaries were built, and the scratch space is left clean.
    fn check_batch(deduped: &Deduped, rows: &[u32], local: &mut Scratch) -> [usize; 3] {
        let batch = build_batch(deduped, rows, local);
        let table = &deduped.table;
        for (i, (c, r)) in table.rows(rows).enumerate() {
            assert_eq!(
                value(&batch.creator_id.values, batch.creator_id.keys[i]),
                table.strings.get(c.creator[r])
            );
            assert_eq!(
                value(&batch.template_id.values, batch.template_id.keys[i]),
                table.strings.get(c.template[r])
            );
            match c.brand[r] {
                NO_BRAND => assert_eq!(batch.brand_id.keys[i], u32::MAX),
                brand => assert_eq!(
                    value(&batch.brand_id.values, batch.brand_id.keys[i]),
                    table.strings.get(brand)
                ),
            }
            assert_eq!(batch.event_id.offsets.len(), rows.len() + 1);
        }
        assert!(local.bits.iter().all(|&word| word == 0));
        [&batch.creator_id, &batch.template_id, &batch.brand_id]
            .map(|column| column.values.offsets.len() - 1)
    }

    /// The hand-written `constant` rule of the end-to-end tests, changed to
    /// trap (`unreachable`, as a rule built without the panic report does)
    /// when `condition` holds at the start of `classify`, where `$n` is the
    /// batch's number of events and `$seven` whether an `event_id` of the
    /// batch holds the digit 7.
    fn trapping_rule(condition: &str) -> Rule {
        let text = include_str!("../../tests/fixtures/rules/constant.wat");
        let start = "(local.set $n (i32.load offset=20 (local.get $batch)))";
        assert!(text.contains(start) && text.contains("(local $ret i32)"));
        let scan = format!(
            "{start}
             (local.set $p (i32.load offset=8 (local.get $batch)))
             (local.set $end (i32.add (local.get $p) (i32.load offset=12 (local.get $batch))))
             (block $done (loop $scan
               (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
               (if (i32.eq (i32.load8_u (local.get $p)) (i32.const 0x37))
                 (then (local.set $seven (i32.const 1))))
               (local.set $p (i32.add (local.get $p) (i32.const 1)))
               (br $scan)))
             (if {condition} (then unreachable))"
        );
        let text = text.replace(start, &scan).replace(
            "(local $ret i32)",
            "(local $ret i32) (local $p i32) (local $end i32) (local $seven i32)",
        );
        let bytes = wat::parse_str(&text).unwrap();
        Rule::from_bytes(
            std::path::Path::new("trap.wasm"),
            &bytes,
            crate::rule::Limits::default(),
        )
        .unwrap()
    }

    #[test]
    fn a_failure_names_the_first_event_the_rule_fails_on() {
        let deduped = table();
        let rule = trapping_rule("(local.get $seven)");
        // ev-0007 is the first id with a 7; ev-0017, ev-0027... fail too.
        for batch_size in [1, 3, 7, 8, 64, 400] {
            for threads in [1, 4] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let error = pool
                    .install(|| classify(&deduped, &rule, batch_size, &|_| {}))
                    .err()
                    .unwrap();
                let event = error.event().expect("the event is named");
                assert_eq!(event.event_id, "ev-0007", "batch size {batch_size}");
                assert!(event.alone);
                assert!(
                    matches!(error.problem(), Some(Problem::Trap(t)) if t.contains("unreachable")),
                    "{error}"
                );
                let message = error.to_string();
                let batch = 7 / batch_size;
                assert!(
                    message.contains("on event \"ev-0007\" at input file 0 line or row 0 (batch")
                        && message.contains(&format!("(batch {batch}, ")),
                    "{message}"
                );
                let named = error.naming_inputs(&[("events.parquet".into(), true)]);
                assert!(
                    named
                        .to_string()
                        .contains("on event \"ev-0007\" at events.parquet row 0 ("),
                    "{named}"
                );
            }
        }
    }

    #[test]
    fn a_failure_that_needs_earlier_events_says_so() {
        // Fails once a batch has more than 5 events: on the sixth, which
        // passes alone.
        let deduped = table();
        let rule = trapping_rule("(i32.gt_u (local.get $n) (i32.const 5))");
        let error = classify(&deduped, &rule, 64, &|_| {}).err().unwrap();
        let event = error.event().expect("the event is named");
        assert_eq!(event.event_id, "ev-0005");
        assert!(!event.alone);
        assert!(
            error
                .to_string()
                .contains("(in a batch of its own the event passes: the rule fails on it only after the events before it)"),
            "{error}"
        );
        // A rule that passes every batch of 5 classifies everything.
        assert!(classify(&deduped, &rule, 5, &|_| {}).is_ok());
    }

    #[test]
    fn reasons_are_numbered_by_hash_up_to_the_run_limit() {
        let names = |range: std::ops::Range<usize>| -> Vec<String> {
            range.map(|i| format!("reason-{i}")).collect()
        };
        let mut reasons = Reasons::default();
        assert_eq!(reasons.number(&names(0..3)), Some(vec![0, 1, 2]));
        // Known reasons keep their numbers, in any order, repeated or not.
        let again = vec!["reason-2".to_string(), "reason-0".into(), "reason-2".into()];
        assert_eq!(reasons.number(&again), Some(vec![2, 0, 2]));
        // Up to the limit, and not one more.
        let numbers = reasons.number(&names(0..MAX_REASONS_PER_RUN)).unwrap();
        assert_eq!(numbers, (0..MAX_REASONS_PER_RUN as u32).collect::<Vec<_>>());
        assert_eq!(reasons.number(&names(5..7)), Some(vec![5, 6]));
        let over = names(MAX_REASONS_PER_RUN..MAX_REASONS_PER_RUN + 1);
        assert_eq!(reasons.number(&over), None);
        assert_eq!(reasons.names.len(), MAX_REASONS_PER_RUN);
    }

    #[test]
    fn dictionaries_carry_each_events_strings() {
        let deduped = table();
        let mut local = scratch(&deduped);
        let all = &deduped.survivors;
        assert_eq!(all.len(), 400);

        // 400 events over 200 templates: the whole span of template ids.
        let sizes = check_batch(&deduped, all, &mut local);
        assert_eq!(sizes, [2, 200, 40]);

        // Three events far apart: just the strings they use.
        let rows = [all[0], all[1], all[399]];
        let sizes = check_batch(&deduped, &rows, &mut local);
        assert_eq!(sizes[1], 3);
        assert_eq!(sizes[2], 1, "events 0 and 399 have no brand");

        // One event without a brand: an empty brand dictionary.
        let sizes = check_batch(&deduped, &[all[3]], &mut local);
        assert_eq!(sizes, [1, 1, 0]);

        // Close ids but long strings: just the strings used, not the span.
        let long = |i: usize| format!("tpl-{i:02}-{}", "x".repeat(1_000));
        let mut templates: Vec<String> = (0..30).map(|i| long(i % 2 * 19)).collect();
        templates.extend((0..20).map(long));
        let deduped = table_of(&templates);
        let mut local = scratch(&deduped);
        let all = &deduped.survivors;
        let sizes = check_batch(&deduped, &all[..30], &mut local);
        assert_eq!(sizes[1], 2, "templates 0 and 19 only, not the 18 between");
        let sizes = check_batch(&deduped, all, &mut local);
        assert_eq!(sizes[1], 20);

        // Every batch size agrees on each event's strings.
        let deduped = table();
        let mut local = scratch(&deduped);
        let all = &deduped.survivors;
        for size in [1, 7, 64, 399] {
            for rows in all.chunks(size) {
                check_batch(&deduped, rows, &mut local);
            }
        }
    }
}
