//! Merge: the shards' partial sums added into the run's daily rows.
//!
//! Every `event_id` lives in one shard, so a `(day, creator, template)` row of
//! the whole run is the sum of that row in every shard. Strings are merged by
//! value and renumbered in byte order, and rows sorted, exactly as the
//! in-memory run orders them.

use super::reduce::Partial;
use crate::aggregate::{Aggregate, AggregateError, Contribution, Row, sum_provenance};
use crate::intern::Interner;
use crate::pipeline::RunError;
use crate::report::{Check, Counts};
use crate::rule::{MAX_REASONS_PER_RUN, Problem, Rule, RuleError};
use hashbrown::HashMap;

/// Sums of one row, amounts wide enough that the order of addition cannot
/// overflow them.
type Sums = (u64, u64, i128);

/// Adds partial results up.
pub struct Merger {
    strings: Interner,
    rows: HashMap<(i32, u32, u32), Sums>,
    counts: Counts,
    amount: i128,
    provenance: Vec<Contribution>,
}

impl Default for Merger {
    fn default() -> Self {
        Merger {
            strings: Interner::new(),
            rows: HashMap::new(),
            counts: Counts::default(),
            amount: 0,
            provenance: Vec::new(),
        }
    }
}

impl Merger {
    /// Adds one shard's rows and counts.
    pub fn add(&mut self, partial: Partial) -> Result<(), RunError> {
        let ids: Vec<u32> = partial
            .strings
            .iter()
            .map(|s| self.strings.intern(s))
            .collect();
        for r in &partial.aggregate.rows {
            let key = (r.day, ids[r.creator as usize], ids[r.template as usize]);
            let sums = self.rows.entry(key).or_default();
            sums.0 += r.events;
            sums.1 += r.payable_events;
            sums.2 += i128::from(r.amount_micros);
        }
        let (c, p) = (&mut self.counts, &partial.counts);
        c.valid += p.valid;
        c.duplicates += p.duplicates;
        c.conflicts += p.conflicts;
        c.unique += p.unique;
        c.classified += p.classified;
        c.outside_window += p.outside_window;
        c.outside_scope += p.outside_scope;
        c.payable += p.payable;
        for (reason, n) in &p.by_reason {
            *c.by_reason.entry(reason.clone()).or_default() += n;
        }
        self.amount += i128::from(p.amount_micros);
        self.provenance
            .extend_from_slice(&partial.aggregate.provenance);
        Ok(())
    }

    /// The merged strings (in byte order), rows (sorted by day, creator,
    /// template), the run's counts and its checks. `read` holds the counts of
    /// the reading side (records, valid, quarantined); the shards give the
    /// rest, and must have received every valid record. `rule` is named if
    /// its reasons, over all shards, are more than a run may have.
    pub fn finish(
        self,
        rule: &Rule,
        read: Counts,
    ) -> Result<(Interner, Aggregate, Counts, Vec<Check>), RunError> {
        let Merger {
            strings,
            rows,
            mut counts,
            amount,
            provenance,
        } = self;
        if counts.valid != read.valid {
            return Err(RunError::Invariant(format!(
                "valid records = the shards' records: {} = {}",
                read.valid, counts.valid
            )));
        }
        counts.records = read.records;
        counts.quarantined = read.quarantined;
        counts.quarantined_by_reason = read.quarantined_by_reason;
        if counts.by_reason.len() > MAX_REASONS_PER_RUN {
            return Err(RuleError::Call {
                rule: rule.label(),
                call: "all shards".to_string(),
                problem: Problem::TooManyReasons {
                    count: counts.by_reason.len(),
                    limit: MAX_REASONS_PER_RUN,
                    scope: "over the run",
                },
            }
            .into());
        }
        counts.amount_micros = i64::try_from(amount).map_err(|_| AggregateError::Overflow)?;
        let (sorted, order) = strings.sorted();
        let mut out = Vec::with_capacity(rows.len());
        for ((day, creator, template), (events, payable_events, amount)) in rows {
            out.push(Row {
                day,
                creator: order[creator as usize],
                template: order[template as usize],
                events,
                payable_events,
                amount_micros: i64::try_from(amount).map_err(|_| AggregateError::Overflow)?,
            });
        }
        out.sort_unstable_by_key(|r| (r.day, r.creator, r.template));
        let aggregate = Aggregate {
            rows: out,
            events: counts.classified,
            payable_events: counts.payable,
            amount_micros: counts.amount_micros,
            by_reason: counts.by_reason.clone(),
            provenance: sum_provenance(provenance),
        };
        let checks = crate::pipeline::check_counts(&counts, &aggregate.rows)?;
        Ok((sorted, aggregate, counts, checks))
    }
}
