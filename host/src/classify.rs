//! Classify: hands the surviving events to the rule in columnar batches, in
//! parallel, and collects one verdict per event.
//!
//! Batches are cut from the survivors in input order; each batch carries its own
//! small dictionaries of the creator, template and brand strings it uses. Each
//! batch runs in a fresh sandboxed instance (see `rule`), so verdicts do not
//! depend on the batch size or on which thread ran the batch.

use crate::dedup::Deduped;
use crate::intern::Interner;
use crate::rule::{DictColumn, EventBatch, Rule, RuleError, StringColumn};
use crate::validate::NO_BRAND;
use rayon::prelude::*;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// One verdict per survivor, in survivor order.
pub struct Classified {
    /// Whether each event is payable.
    pub payable: Vec<bool>,
    /// The amount for each event, in micros (0 when not payable).
    pub rate_micros: Vec<i64>,
    /// Index into `reasons` of each event's reason code.
    pub reason: Vec<u16>,
    /// The distinct reason codes.
    pub reasons: Vec<String>,
}

/// Maps global string ids to a batch's dictionary keys, one map per string
/// column; every slot holds `u32::MAX` between batches.
pub type Scratch = [Vec<u32>; 3];

/// Scratch space for [`build_batch`] over `deduped`.
pub fn scratch(deduped: &Deduped) -> Scratch {
    let n = deduped.table.strings.len();
    [vec![u32::MAX; n], vec![u32::MAX; n], vec![u32::MAX; n]]
}

/// Builds the columnar batch for the given rows (global row indices).
///
/// The rows are read once, in order, into the fixed-width columns and the raw
/// string ids; each string column is then turned into a dictionary in a pass of
/// its own, so that only one of the maps in `local` is in cache at a time.
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
    for (c, r) in table.rows(rows) {
        event_id.bytes.extend_from_slice(c.event_id(r));
        event_id.offsets.push(event_id.bytes.len() as u32);
        occurred_at.push(c.occurred_at[r]);
        ingested_at.push(c.ingested_at[r]);
        ids[0].push(c.creator[r]);
        ids[1].push(c.template[r]);
        ids[2].push(c.brand[r]);
        content_kind.push(c.content_kind[r]);
        action.push(c.action[r]);
        user_tier.push(c.user_tier[r]);
        country.extend_from_slice(&c.country[r]);
    }
    let [creator_id, template_id, brand_id] = ids;
    let [creators, templates, brands] = local;
    EventBatch {
        event_id,
        occurred_at,
        ingested_at,
        creator_id: dictionary(creator_id, creators, &table.strings),
        template_id: dictionary(template_id, templates, &table.strings),
        brand_id: dictionary(brand_id, brands, &table.strings),
        content_kind,
        action,
        user_tier,
        country,
    }
}

/// Turns global string ids into a batch dictionary: keys numbered in order of
/// first use, and the values they stand for. `map` holds `u32::MAX` for every
/// id before and after; [`NO_BRAND`] becomes the null key.
fn dictionary(mut keys: Vec<u32>, map: &mut [u32], strings: &Interner) -> DictColumn {
    let mut used = Vec::new();
    for key in &mut keys {
        if *key == NO_BRAND {
            continue;
        }
        let slot = &mut map[*key as usize];
        if *slot == u32::MAX {
            *slot = used.len() as u32;
            used.push(*key);
        }
        *key = *slot;
    }
    let mut values = StringColumn {
        offsets: Vec::with_capacity(used.len() + 1),
        bytes: Vec::new(),
    };
    values.offsets.push(0);
    for id in used {
        values.bytes.extend_from_slice(strings.get(id).as_bytes());
        values.offsets.push(values.bytes.len() as u32);
        map[id as usize] = u32::MAX;
    }
    DictColumn { keys, values }
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
    let mut reason = vec![0u16; n];
    let reasons: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let done = AtomicU64::new(0);

    deduped
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
                let verdicts = rule.classify(&batch, index)?;
                let global: Vec<u16> = {
                    let mut known = reasons.lock().unwrap_or_else(|e| e.into_inner());
                    verdicts
                        .reasons
                        .iter()
                        .map(|r| match known.iter().position(|k| k == r) {
                            Some(i) => i as u16,
                            None => {
                                known.push(r.clone());
                                (known.len() - 1) as u16
                            }
                        })
                        .collect()
                };
                for i in 0..rows.len() {
                    payable[i] = verdicts.payable[i] == 1;
                    rate[i] = verdicts.rate_micros[i];
                    reason[i] = global[verdicts.reason[i] as usize];
                }
                progress(done.fetch_add(rows.len() as u64, Ordering::Relaxed) + rows.len() as u64);
                Ok(())
            },
        )?;
    Ok(Classified {
        payable,
        rate_micros,
        reason,
        reasons: reasons.into_inner().unwrap_or_else(|e| e.into_inner()),
    })
}
