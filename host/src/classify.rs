//! Classify: hands the surviving events to the rule in columnar batches, in
//! parallel, and collects one verdict per event.
//!
//! Batches are cut from the survivors in input order; each batch carries its own
//! small dictionaries of the creator, template and brand strings it uses. Each
//! batch runs in a fresh sandboxed instance (see `rule`), so verdicts do not
//! depend on the batch size or on which thread ran the batch.

use crate::dedup::Deduped;
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
    let mut columns: [DictColumn; 3] = std::array::from_fn(|_| DictColumn {
        keys: Vec::with_capacity(n),
        values: StringColumn {
            offsets: vec![0],
            bytes: Vec::new(),
        },
    });
    let mut touched: [Vec<u32>; 3] = Default::default();
    let mut content_kind = Vec::with_capacity(n);
    let mut action = Vec::with_capacity(n);
    let mut user_tier = Vec::with_capacity(n);
    let mut country = Vec::with_capacity(2 * n);
    for (c, r) in table.rows(rows) {
        event_id.bytes.extend_from_slice(c.event_id(r));
        event_id.offsets.push(event_id.bytes.len() as u32);
        occurred_at.push(c.occurred_at[r]);
        ingested_at.push(c.ingested_at[r]);
        for k in 0..3 {
            let id = [c.creator[r], c.template[r], c.brand[r]][k];
            let column = &mut columns[k];
            if id == NO_BRAND {
                column.keys.push(u32::MAX);
                continue;
            }
            let slot = &mut local[k][id as usize];
            if *slot == u32::MAX {
                *slot = touched[k].len() as u32;
                touched[k].push(id);
                let values = &mut column.values;
                values
                    .bytes
                    .extend_from_slice(table.strings.get(id).as_bytes());
                values.offsets.push(values.bytes.len() as u32);
            }
            column.keys.push(*slot);
        }
        content_kind.push(c.content_kind[r]);
        action.push(c.action[r]);
        user_tier.push(c.user_tier[r]);
        country.extend_from_slice(&c.country[r]);
    }
    for (map, ids) in local.iter_mut().zip(touched) {
        for id in ids {
            map[id as usize] = u32::MAX;
        }
    }
    let [creator_id, template_id, brand_id] = columns;
    EventBatch {
        event_id,
        occurred_at,
        ingested_at,
        creator_id,
        template_id,
        brand_id,
        content_kind,
        action,
        user_tier,
        country,
    }
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
