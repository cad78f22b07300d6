//! Where the money moved: the change of the amount between two rules, split
//! by its causes (the kind of verdict change and the reasons on both sides)
//! and by the event's content kind, user tier and country; how many creators
//! gain, lose or stay the same; and how the relative change per creator is
//! distributed.
//!
//! Every split is a partition of the unique events (or of the creators), so
//! the parts of each add up, exactly, to the total change. Money is summed in
//! `i128` while it adds up and checked into `i64` micros once, at the end;
//! floating point is only ever used for ratios that are shown.
//!
//! This module owns these sums and their buckets; reading the events and
//! rendering the figures are the callers'.

use crate::aggregate::AggregateError;
use serde::Serialize;

/// The kinds of verdict change, in the report's order; an event's kind is
/// the first that applies.
pub const VERDICT_CHANGES: [&str; 5] = [
    "payable_to_not_payable",
    "not_payable_to_payable",
    "rate_changed",
    "reason_changed",
    "unchanged",
];

/// [`VERDICT_CHANGES`] as a person reads them.
pub const VERDICT_CHANGES_SHOWN: [&str; 5] = [
    "payable → not payable",
    "not payable → payable",
    "payable → payable, rate changed",
    "same rate, reason changed",
    "unchanged",
];

/// The index into [`VERDICT_CHANGES`] of a change from verdict A
/// (`payable_a`, `rate_a`) to verdict B; `same_reason` says whether both
/// gave the same reason.
pub fn verdict_change(
    (payable_a, rate_a): (bool, i64),
    (payable_b, rate_b): (bool, i64),
    same_reason: bool,
) -> usize {
    match (payable_a, payable_b) {
        (true, false) => 0,
        (false, true) => 1,
        _ if rate_a != rate_b => 2,
        _ if !same_reason => 3,
        _ => 4,
    }
}

/// What a group of unique events adds up to under both rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sum {
    pub events: u64,
    /// Events whose verdict changed in any way.
    pub changed: u64,
    pub payable_a: u64,
    pub payable_b: u64,
    pub amount_a: i128,
    pub amount_b: i128,
}

impl Sum {
    /// Adds one event with its two verdicts.
    #[inline]
    pub fn add_event(
        &mut self,
        (payable_a, rate_a): (bool, i64),
        (payable_b, rate_b): (bool, i64),
        changed: bool,
    ) {
        self.events += 1;
        self.changed += u64::from(changed);
        self.payable_a += u64::from(payable_a);
        self.payable_b += u64::from(payable_b);
        self.amount_a += i128::from(rate_a);
        self.amount_b += i128::from(rate_b);
    }

    /// Adds another group's sums.
    pub fn merge(&mut self, other: &Sum) {
        self.events += other.events;
        self.changed += other.changed;
        self.payable_a += other.payable_a;
        self.payable_b += other.payable_b;
        self.amount_a += other.amount_a;
        self.amount_b += other.amount_b;
    }
}

/// An amount summed in `i128` as 64-bit micros, or the overflow error a run
/// would give.
pub fn micros(amount: i128) -> Result<i64, AggregateError> {
    i64::try_from(amount).map_err(|_| AggregateError::Overflow)
}

/// One group of events under both rules: a content kind, a user tier, a
/// country or a day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Share {
    pub key: String,
    /// Unique events.
    pub events: u64,
    /// Of those, the ones whose verdict changed.
    pub changed: u64,
    pub payable_a: u64,
    pub payable_b: u64,
    pub amount_a: i64,
    pub amount_b: i64,
    /// `amount_b - amount_a`.
    pub delta: i64,
}

impl Share {
    pub fn of(key: String, sum: &Sum) -> Result<Share, AggregateError> {
        Ok(Share {
            key,
            events: sum.events,
            changed: sum.changed,
            payable_a: sum.payable_a,
            payable_b: sum.payable_b,
            amount_a: micros(sum.amount_a)?,
            amount_b: micros(sum.amount_b)?,
            delta: micros(sum.amount_b - sum.amount_a)?,
        })
    }
}

/// The events of one kind of verdict change, or of one kind and pair of
/// reasons, under both rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transition {
    /// One of [`VERDICT_CHANGES`].
    pub transition: &'static str,
    /// The reasons under A and under B; absent when this is the whole kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b_reason: Option<String>,
    pub events: u64,
    pub amount_a: i64,
    pub amount_b: i64,
    pub delta: i64,
}

impl Transition {
    fn of(
        kind: usize,
        reasons: Option<(String, String)>,
        sum: &Sum,
    ) -> Result<Transition, AggregateError> {
        let (a_reason, b_reason) = reasons.unzip();
        Ok(Transition {
            transition: VERDICT_CHANGES[kind],
            a_reason,
            b_reason,
            events: sum.events,
            amount_a: micros(sum.amount_a)?,
            amount_b: micros(sum.amount_b)?,
            delta: micros(sum.amount_b - sum.amount_a)?,
        })
    }
}

/// The change of the amount split five ways; within each split the deltas
/// add up exactly to the comparison's `amount_delta`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Attribution {
    /// One entry per kind of verdict change, in [`VERDICT_CHANGES`] order
    /// (every kind, with zeros when no event changed so).
    pub by_verdict_change: Vec<Transition>,
    /// One entry per kind of verdict change and pair of reasons (A, B) that
    /// occurs, by kind, then A reason, then B reason.
    pub by_transition: Vec<Transition>,
    /// Per content kind with events, in the contract's order.
    pub by_content_kind: Vec<Share>,
    /// Per user tier with events, in the contract's order.
    pub by_user_tier: Vec<Share>,
    /// Per country with events, by country code.
    pub by_country: Vec<Share>,
}

impl Attribution {
    /// The attribution from sums per (kind, A reason, B reason) and per
    /// content kind, user tier and country (each already named and in order).
    pub fn of(
        transitions: impl IntoIterator<Item = ((usize, String, String), Sum)>,
        content_kinds: impl IntoIterator<Item = (String, Sum)>,
        user_tiers: impl IntoIterator<Item = (String, Sum)>,
        countries: impl IntoIterator<Item = (String, Sum)>,
    ) -> Result<Attribution, AggregateError> {
        let mut pairs: Vec<((usize, String, String), Sum)> = transitions.into_iter().collect();
        pairs.sort_by(|x, y| x.0.cmp(&y.0));
        let mut kinds = [Sum::default(); VERDICT_CHANGES.len()];
        for ((kind, _, _), sum) in &pairs {
            kinds[*kind].merge(sum);
        }
        let shares = |groups: &mut dyn Iterator<Item = (String, Sum)>| {
            groups
                .filter(|(_, sum)| sum.events > 0)
                .map(|(key, sum)| Share::of(key, &sum))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Attribution {
            by_verdict_change: kinds
                .iter()
                .enumerate()
                .map(|(kind, sum)| Transition::of(kind, None, sum))
                .collect::<Result<_, _>>()?,
            by_transition: pairs
                .into_iter()
                .map(|((kind, a, b), sum)| Transition::of(kind, Some((a, b)), &sum))
                .collect::<Result<_, _>>()?,
            by_content_kind: shares(&mut content_kinds.into_iter())?,
            by_user_tier: shares(&mut user_tiers.into_iter())?,
            by_country: shares(&mut countries.into_iter())?,
        })
    }
}

/// How many creators gain, lose and stay the same. A creator counts when it
/// has at least one unique event; `gaining + losing + unchanged` is all of
/// them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Creators {
    pub with_events: u64,
    /// Paid more under B.
    pub gaining: u64,
    /// Paid less under B.
    pub losing: u64,
    /// Paid the same (including nothing under either).
    pub unchanged: u64,
    /// Of the unchanged, those paid nothing under either rule (they are not in
    /// the histogram: their relative change is not a number).
    pub paid_under_neither: u64,
    /// Paid under A, nothing under B (the histogram's `-100%` bucket).
    pub paid_only_under_a: u64,
    /// Paid nothing under A, something under B (the histogram's `new` bucket:
    /// a relative change from zero is not a number).
    pub paid_only_under_b: u64,
}

/// The edges of the histogram of relative change per creator, in per cent
/// of the creator's amount under A. Decreases and increases use the same
/// magnitudes: a decrease by more than 1% and at most 5% is in
/// `[-5%, -1%)`, an increase by as much in `(+1%, +5%]`.
pub const EDGES_PERCENT: [i64; 6] = [1, 5, 10, 20, 50, 100];

/// One bucket of the histogram of relative change per creator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bucket {
    /// The bucket as a person reads it: `[-5%, -1%)`, `0%`, `new under B`.
    pub label: String,
    /// `stopped` (paid under A only: -100%), `decrease`, `unchanged`,
    /// `increase`, or `new` (paid under B only).
    pub kind: &'static str,
    /// The lower and upper edges in per cent of A's amount; absent where
    /// there is none (above +100%, and for `new`).
    pub min_percent: Option<i64>,
    pub max_percent: Option<i64>,
    pub includes_min: bool,
    pub includes_max: bool,
    /// Creators in the bucket.
    pub creators: u64,
    /// What they are paid under A and B, and the change.
    pub amount_a: i64,
    pub amount_b: i64,
    pub delta: i64,
}

/// A bucket's shape: kind, min, max, includes min, includes max.
type Shape = (&'static str, Option<i64>, Option<i64>, bool, bool);

/// The buckets' shapes, in order.
fn bucket_shapes() -> Vec<Shape> {
    let e = EDGES_PERCENT;
    let mut shapes = vec![("stopped", Some(-100), Some(-100), true, true)];
    // Decreases from the largest magnitude down: [-e_i, -e_{i-1}); the first
    // excludes -100%, which is `stopped`.
    for i in (0..e.len()).rev() {
        let upper = if i == 0 { 0 } else { -e[i - 1] };
        shapes.push(("decrease", Some(-e[i]), Some(upper), i + 1 < e.len(), false));
    }
    shapes.push(("unchanged", Some(0), Some(0), true, true));
    for i in 0..e.len() {
        let lower = if i == 0 { 0 } else { e[i - 1] };
        shapes.push(("increase", Some(lower), Some(e[i]), false, true));
    }
    shapes.push(("increase", Some(e[e.len() - 1]), None, false, false));
    shapes.push(("new", None, None, false, false));
    shapes
}

fn signed_percent(p: i64) -> String {
    if p > 0 {
        format!("+{p}%")
    } else {
        format!("{p}%")
    }
}

fn bucket_label((kind, min, max, includes_min, includes_max): Shape) -> String {
    match (kind, min, max) {
        ("stopped", _, _) => "-100% (no longer paid)".to_string(),
        ("unchanged", _, _) => "0%".to_string(),
        ("new", _, _) => "new under B".to_string(),
        (_, Some(min), None) => format!("above {}", signed_percent(min)),
        (_, Some(min), Some(max)) => format!(
            "{}{}, {}{}",
            if includes_min { '[' } else { '(' },
            signed_percent(min),
            signed_percent(max),
            if includes_max { ']' } else { ')' }
        ),
        _ => kind.to_string(),
    }
}

/// The index of the bucket of a creator paid `a` under A and `b` under B
/// (not both zero), decided in integers: a magnitude `|b - a| / a` is at
/// most `e` per cent exactly when `|b - a| × 100 <= e × a`.
fn bucket_of(a: i128, b: i128) -> usize {
    let e = EDGES_PERCENT;
    let n = e.len();
    let within = |d: i128, edge: i64| d * 100 <= i128::from(edge) * a;
    match (a, b) {
        (0, _) => 2 * n + 3,
        (_, 0) => 0,
        _ if a == b => n + 1,
        _ if b < a => {
            let i = (0..n).find(|&i| within(a - b, e[i])).unwrap_or(n - 1);
            n - i
        }
        _ => {
            let i = (0..n).find(|&i| within(b - a, e[i])).unwrap_or(n);
            n + 2 + i
        }
    }
}

/// The creators' counts and the histogram of their relative change, from
/// each creator's amounts under A and B.
pub fn creators(
    amounts: impl IntoIterator<Item = (i128, i128)>,
) -> Result<(Creators, Vec<Bucket>), AggregateError> {
    let shapes = bucket_shapes();
    let mut sums = vec![(0u64, 0i128, 0i128); shapes.len()];
    let mut counts = Creators::default();
    for (a, b) in amounts {
        counts.with_events += 1;
        match b.cmp(&a) {
            std::cmp::Ordering::Greater => counts.gaining += 1,
            std::cmp::Ordering::Less => counts.losing += 1,
            std::cmp::Ordering::Equal => counts.unchanged += 1,
        }
        match (a, b) {
            (0, 0) => {
                counts.paid_under_neither += 1;
                continue;
            }
            (0, _) => counts.paid_only_under_b += 1,
            (_, 0) => counts.paid_only_under_a += 1,
            _ => {}
        }
        let sum = &mut sums[bucket_of(a, b)];
        sum.0 += 1;
        sum.1 += a;
        sum.2 += b;
    }
    let buckets = shapes
        .into_iter()
        .zip(sums)
        .map(|(shape, (creators, a, b))| {
            let (kind, min_percent, max_percent, includes_min, includes_max) = shape;
            Ok(Bucket {
                label: bucket_label(shape),
                kind,
                min_percent,
                max_percent,
                includes_min,
                includes_max,
                creators,
                amount_a: micros(a)?,
                amount_b: micros(b)?,
                delta: micros(b - a)?,
            })
        })
        .collect::<Result<_, AggregateError>>()?;
    Ok((counts, buckets))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        creators([])
            .unwrap()
            .1
            .into_iter()
            .map(|b| b.label)
            .collect()
    }

    #[test]
    fn buckets_are_labelled_by_their_edges() {
        assert_eq!(
            labels(),
            [
                "-100% (no longer paid)",
                "(-100%, -50%)",
                "[-50%, -20%)",
                "[-20%, -10%)",
                "[-10%, -5%)",
                "[-5%, -1%)",
                "[-1%, 0%)",
                "0%",
                "(0%, +1%]",
                "(+1%, +5%]",
                "(+5%, +10%]",
                "(+10%, +20%]",
                "(+20%, +50%]",
                "(+50%, +100%]",
                "above +100%",
                "new under B",
            ]
        );
    }

    /// Each creator lands in the bucket whose edges hold its relative change,
    /// an edge exactly in the bucket that includes it.
    #[test]
    fn edges_decide_exactly() {
        let label = |a: i128, b: i128| labels()[bucket_of(a, b)].clone();
        for (a, b, want) in [
            (100, 0, "-100% (no longer paid)"),
            (100, 1, "(-100%, -50%)"),
            (100, 49, "(-100%, -50%)"),
            (100, 50, "[-50%, -20%)"),
            (100, 51, "[-50%, -20%)"),
            (100, 95, "[-5%, -1%)"),
            (100, 99, "[-1%, 0%)"),
            (1_000_000, 999_999, "[-1%, 0%)"),
            (100, 100, "0%"),
            (1_000_000, 1_000_001, "(0%, +1%]"),
            (100, 101, "(0%, +1%]"),
            (100, 102, "(+1%, +5%]"),
            (100, 105, "(+1%, +5%]"),
            (100, 106, "(+5%, +10%]"),
            (100, 200, "(+50%, +100%]"),
            (100, 201, "above +100%"),
            (0, 7, "new under B"),
            // A third is not a whole number of per cent: 33.3…% is above 20%.
            (3, 4, "(+20%, +50%]"),
            (3, 2, "[-50%, -20%)"),
        ] {
            assert_eq!(label(a, b), want, "{a} -> {b}");
        }
    }

    #[test]
    fn counts_and_buckets_add_up() {
        let amounts = [(0, 0), (0, 5), (5, 0), (10, 10), (10, 11), (10, 9), (0, 0)];
        let (c, buckets) = creators(amounts).unwrap();
        assert_eq!(
            c,
            Creators {
                with_events: 7,
                gaining: 2,
                losing: 2,
                unchanged: 3,
                paid_under_neither: 2,
                paid_only_under_a: 1,
                paid_only_under_b: 1,
            }
        );
        assert_eq!(buckets.iter().map(|b| b.creators).sum::<u64>(), 5);
        let delta: i64 = amounts.iter().map(|(a, b)| b - a).sum::<i128>() as i64;
        assert_eq!(buckets.iter().map(|b| b.delta).sum::<i64>(), delta);
    }

    #[test]
    fn sums_past_64_bits_are_an_error() {
        let big = i128::from(i64::MAX);
        assert!(creators([(big, big), (big, big)]).is_err());
        assert!(micros(big + 1).is_err());
        assert_eq!(micros(big).unwrap(), i64::MAX);
    }
}
