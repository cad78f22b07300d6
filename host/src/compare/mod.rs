//! Compare: what changes, in money, when rule B replaces rule A on the same
//! traffic — and how two published outputs differ key by key.
//!
//! A rule comparison ingests, validates and deduplicates once, classifies every
//! unique event with both rules, and builds both aggregations in the same run.
//! Everything in a [`Comparison`] is derived from the two verdict columns, so
//! its figures equal the difference of two separate runs; [`attribution`]
//! splits the change of the amount by its causes, exactly.

use crate::aggregate::{Aggregate, AggregateError, Row};
use crate::classify::Classified;
use crate::dedup::Deduped;
use crate::event::{ACTIONS, CONTENT_KINDS, USER_TIERS, day_of, format_day};
use crate::lineage;
use crate::pipeline::{self, RunError};
use crate::reconcile::Published;
use crate::report::RuleSummary;
use crate::rule::Rule;
use attribution::{Attribution, Bucket, Creators, Share, Sum, VERDICT_CHANGES, micros};
use hashbrown::HashMap;
use serde::Serialize;
use std::collections::{BTreeMap, BinaryHeap};
use std::path::Path;

pub mod attribution;
pub mod chart;
pub mod gate;
pub mod render;

/// The version of the JSON form of a rule comparison ([`Comparison`],
/// `schema_version`), raised when a field is removed or changes meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// Totals of one side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SideTotals {
    pub unique: u64,
    pub payable: u64,
    pub amount_micros: i64,
}

/// How the verdicts moved, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct VerdictChanges {
    /// Payable under A, not under B.
    pub payable_to_not_payable: u64,
    /// Not payable under A, payable under B.
    pub not_payable_to_payable: u64,
    /// Payable under both, at another rate.
    pub rate_changed: u64,
    /// Same payability and rate, another reason.
    pub reason_changed: u64,
    /// Same verdict.
    pub unchanged: u64,
}

impl VerdictChanges {
    /// Events whose verdict changed in any way.
    pub fn changed(&self) -> u64 {
        self.payable_to_not_payable
            + self.not_payable_to_payable
            + self.rate_changed
            + self.reason_changed
    }
}

/// Money moved for one creator, template or day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mover {
    pub key: String,
    pub amount_a: i64,
    pub amount_b: i64,
    pub delta: i64,
}

/// A changed event with both verdicts, so a person can see why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SampleEvent {
    pub event_id: String,
    pub day: String,
    pub creator_id: String,
    pub template_id: String,
    pub brand_id: Option<String>,
    pub content_kind: String,
    pub action: String,
    pub user_tier: String,
    pub country: String,
    pub a_payable: bool,
    pub a_rate_micros: i64,
    pub a_reason: String,
    pub b_payable: bool,
    pub b_rate_micros: i64,
    pub b_reason: String,
}

/// One key's rows under both rules: `(events, payable_events, amount_micros)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDelta {
    pub day: String,
    pub creator_id: String,
    pub template_id: String,
    pub a: (u64, u64, i64),
    pub b: (u64, u64, i64),
}

/// The comparison of two rules on the same events.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    pub a: RuleSummary,
    pub b: RuleSummary,
    pub input_fingerprint: String,
    pub records: u64,
    pub totals_a: SideTotals,
    pub totals_b: SideTotals,
    pub amount_delta: i64,
    /// `amount_delta / amount_a` (0 when A pays nothing and B neither; 1 when
    /// only B pays).
    pub amount_relative_change: f64,
    pub payable_delta: i64,
    pub verdicts: VerdictChanges,
    /// Share of unique events whose verdict changed.
    pub changed_share: f64,
    /// Events per (A reason, B reason).
    pub transitions: BTreeMap<String, BTreeMap<String, u64>>,
    pub top_creators_gaining: Vec<Mover>,
    pub top_creators_losing: Vec<Mover>,
    pub top_templates_gaining: Vec<Mover>,
    pub top_templates_losing: Vec<Mover>,
    /// Every day with unique events, in order: events, changed verdicts,
    /// payable events and amounts under both rules.
    pub days: Vec<Share>,
    /// The change of the amount split by its causes; each split adds up to
    /// `amount_delta` exactly.
    pub attribution: Attribution,
    /// How many creators gain, lose and stay the same.
    pub creators: Creators,
    /// The distribution of the relative change of the amount per creator,
    /// in buckets with the edges of [`attribution::EDGES_PERCENT`].
    pub creator_change_histogram: Vec<Bucket>,
    pub sample: Vec<SampleEvent>,
    /// The `--fail-if` conditions in the order given, each with the value
    /// measured and whether it held; empty when none was given.
    pub gates: Vec<gate::Outcome>,
    pub elapsed_seconds: f64,
    #[serde(skip)]
    pub keys: Vec<KeyDelta>,
}

/// What to compare and how much to show.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Top N creators and templates each way.
    pub top: usize,
    /// Changed events in the sample.
    pub sample: usize,
    pub batch_size: usize,
    pub progress: bool,
    /// How input files are read (the longest JSON line).
    pub read: crate::ingest::ReadOptions,
}

/// Compares two rules on the events of `inputs`, in one pass over the input:
/// in memory when the input fits `spill`'s memory limit, else shard by shard
/// out of core, with the same result.
pub fn compare_rules(
    inputs: &[std::path::PathBuf],
    (rule_a, ref_a): (&Rule, &str),
    (rule_b, ref_b): (&Rule, &str),
    options: Options,
    spill: &crate::shard::SpillOptions,
) -> Result<Comparison, RunError> {
    let started = std::time::Instant::now();
    let found = pipeline::find_inputs(inputs, options.progress)?;
    let fingerprint = found.fingerprint.to_hex().to_string();
    let shards = spill.shards_for(&found.files);
    let mut sums = Sums::new();
    // A rule's failure names the input file of the event it failed on.
    let sources = crate::commit::sources(&found.files);
    let named = |e: RunError| e.naming_inputs(&sources);
    let both = |deduped: &Deduped, sums: &mut Sums, progress: bool| -> Result<(), RunError> {
        let mut timings = crate::report::Timings::default();
        let mut counts = crate::report::Counts::default();
        let (ca, aa) = pipeline::classify_and_sum(
            deduped,
            &mut counts,
            rule_a,
            options.batch_size,
            progress,
            &mut timings,
        )
        .map_err(named)?;
        let (cb, ab) = pipeline::classify_and_sum(
            deduped,
            &mut counts,
            rule_b,
            options.batch_size,
            progress,
            &mut timings,
        )
        .map_err(named)?;
        sums.add(deduped, (&ca, &aa), (&cb, &ab), options);
        Ok(())
    };
    let records = if shards > 1 || spill.shards.is_some() {
        let spilled =
            crate::shard::spill_inputs(&found, &options.read, options.progress, spill, shards)?;
        let bar = crate::progress::Progress::counting(
            "shards",
            Some(u64::from(shards)),
            "shards",
            options.progress,
        );
        for w in &spilled.written {
            let (chunks, interners) = crate::shard::spill::read(&w.files, w.shard, shards)?;
            let (table, _) = crate::dedup::merge(chunks, interners)?;
            let deduped = pipeline::survive(table, None, &mut Default::default());
            both(&deduped, &mut sums, false)?;
            spilled.release(w.shard);
            bar.set(u64::from(w.shard) + 1);
        }
        bar.finish();
        spilled.counts.records
    } else {
        let prepared = pipeline::prepare_found(found, &options.read, None, options.progress)?;
        both(&prepared.deduped, &mut sums, options.progress)?;
        prepared.counts.records
    };
    let mut comparison = sums.finish(fingerprint, records, options)?;
    comparison.a = RuleSummary::of(rule_a, ref_a);
    comparison.b = RuleSummary::of(rule_b, ref_b);
    comparison.elapsed_seconds = started.elapsed().as_secs_f64();
    Ok(comparison)
}

fn relative(delta: i64, base: i64) -> f64 {
    match (delta, base) {
        (0, _) => 0.0,
        (_, 0) => 1.0_f64.copysign(delta as f64),
        _ => delta as f64 / base as f64,
    }
}

/// Largest positive deltas first, then most negative first; ties by key.
fn movers(
    sums: &HashMap<String, (i128, i128)>,
    top: usize,
) -> Result<(Vec<Mover>, Vec<Mover>), AggregateError> {
    let mut all: Vec<Mover> = sums
        .iter()
        .filter(|(_, (a, b))| a != b)
        .map(|(key, &(a, b))| {
            Ok(Mover {
                key: key.clone(),
                amount_a: micros(a)?,
                amount_b: micros(b)?,
                delta: micros(b - a)?,
            })
        })
        .collect::<Result<_, AggregateError>>()?;
    all.sort_by(|x, y| y.delta.cmp(&x.delta).then_with(|| x.key.cmp(&y.key)));
    let gaining: Vec<Mover> = all
        .iter()
        .filter(|m| m.delta > 0)
        .take(top)
        .cloned()
        .collect();
    let mut losing: Vec<Mover> = all.into_iter().filter(|m| m.delta < 0).collect();
    losing.sort_by(|x, y| x.delta.cmp(&y.delta).then_with(|| x.key.cmp(&y.key)));
    losing.truncate(top);
    Ok((gaining, losing))
}

/// Countries are two upper-case ASCII letters: 26 × 26 of them.
const COUNTRY_SLOTS: usize = 26 * 26;

/// The slot of a (validated) country code.
fn country_slot(code: [u8; 2]) -> usize {
    usize::from(code[0].wrapping_sub(b'A')) * 26 + usize::from(code[1].wrapping_sub(b'A'))
}

/// The country code of a slot.
fn country_of(slot: usize) -> String {
    [b'A' + (slot / 26) as u8, b'A' + (slot % 26) as u8]
        .iter()
        .map(|&b| char::from(b))
        .collect()
}

/// One side's totals while they add up.
#[derive(Default)]
struct Totals {
    unique: u64,
    payable: u64,
    amount: i128,
}

impl Totals {
    fn checked(&self) -> Result<SideTotals, AggregateError> {
        Ok(SideTotals {
            unique: self.unique,
            payable: self.payable,
            amount_micros: micros(self.amount)?,
        })
    }
}

/// What a comparison adds up over the unique events, one table (the whole
/// input, or one shard of it) at a time; keys are strings, so tables with
/// their own string ids add up. Money is summed in `i128` and checked into
/// 64 bits once, when the comparison is finished.
struct Sums {
    /// Per (kind of verdict change, A reason, B reason).
    pairs: HashMap<(usize, String, String), Sum>,
    /// Amounts under A and B per creator (every creator with an event) and
    /// per template (those paid under either rule).
    creators: HashMap<String, (i128, i128)>,
    templates: HashMap<String, (i128, i128)>,
    days: HashMap<i32, Sum>,
    content_kinds: [Sum; CONTENT_KINDS.len()],
    user_tiers: [Sum; USER_TIERS.len()],
    countries: Vec<Sum>,
    /// The changed events with the smallest event ids (ids are random, so
    /// this is an unbiased and reproducible choice), sorted by id.
    sample: Vec<(Vec<u8>, SampleEvent)>,
    totals_a: Totals,
    totals_b: Totals,
    keys: HashMap<(i32, String, String), (Figures, Figures)>,
}

fn add_figures(into: &mut Figures, from: Figures) {
    into.0 += from.0;
    into.1 += from.1;
    into.2 += from.2;
}

impl Sums {
    fn new() -> Sums {
        Sums {
            pairs: HashMap::new(),
            creators: HashMap::new(),
            templates: HashMap::new(),
            days: HashMap::new(),
            content_kinds: Default::default(),
            user_tiers: Default::default(),
            countries: vec![Sum::default(); COUNTRY_SLOTS],
            sample: Vec::new(),
            totals_a: Totals::default(),
            totals_b: Totals::default(),
            keys: HashMap::new(),
        }
    }

    /// Adds the survivors of `deduped` with their verdicts and rows under
    /// both rules.
    fn add(
        &mut self,
        deduped: &Deduped,
        (ca, aa): (&Classified, &Aggregate),
        (cb, ab): (&Classified, &Aggregate),
        options: Options,
    ) {
        let table = &deduped.table;
        let strings = &table.strings;
        let mut pairs: HashMap<(usize, u32, u32), Sum> = HashMap::new();
        let mut creators: HashMap<u32, (i128, i128)> = HashMap::new();
        let mut templates: HashMap<u32, (i128, i128)> = HashMap::new();
        let mut sample: BinaryHeap<(Vec<u8>, usize)> = BinaryHeap::new();
        for (i, (c, r)) in table.rows(&deduped.survivors).enumerate() {
            let a = (ca.payable[i], ca.rate_micros[i]);
            let b = (cb.payable[i], cb.rate_micros[i]);
            let (reason_a, reason_b) = (ca.reason[i], cb.reason[i]);
            // Reasons are compared as text only when the verdicts are
            // otherwise the same: each rule numbers its reasons its own way.
            let kind = attribution::verdict_change(a, b, {
                a != b || ca.reasons[reason_a as usize] == cb.reasons[reason_b as usize]
            });
            let changed = kind != VERDICT_CHANGES.len() - 1;
            for sum in [
                pairs.entry((kind, reason_a, reason_b)).or_default(),
                self.days.entry(day_of(c.occurred_at[r])).or_default(),
            ]
            .into_iter()
            .chain(self.content_kinds.get_mut(usize::from(c.content_kind[r])))
            .chain(self.user_tiers.get_mut(usize::from(c.user_tier[r])))
            .chain(self.countries.get_mut(country_slot(c.country[r])))
            {
                sum.add_event(a, b, changed);
            }
            let (rate_a, rate_b) = (i128::from(a.1), i128::from(b.1));
            let creator = creators.entry(c.creator[r]).or_default();
            creator.0 += rate_a;
            creator.1 += rate_b;
            if a.1 != 0 || b.1 != 0 {
                let template = templates.entry(c.template[r]).or_default();
                template.0 += rate_a;
                template.1 += rate_b;
            }
            if changed && options.sample > 0 {
                let id = c.event_id(r);
                if sample.len() < options.sample {
                    sample.push((id.to_vec(), i));
                } else if sample.peek().is_some_and(|(top, _)| id < top.as_slice()) {
                    sample.pop();
                    sample.push((id.to_vec(), i));
                }
            }
        }
        for ((kind, a, b), sum) in pairs {
            let key = (
                kind,
                ca.reasons[a as usize].clone(),
                cb.reasons[b as usize].clone(),
            );
            self.pairs.entry(key).or_default().merge(&sum);
        }
        for (into, from) in [
            (&mut self.creators, creators),
            (&mut self.templates, templates),
        ] {
            for (k, (a, b)) in from {
                let e = into.entry(strings.get(k).to_string()).or_default();
                e.0 += a;
                e.1 += b;
            }
        }
        for (id, i) in sample.into_vec() {
            let g = deduped.survivors[i];
            let (c, r) = table.locate(g);
            let event = SampleEvent {
                event_id: String::from_utf8_lossy(c.event_id(r)).into_owned(),
                day: format_day(day_of(c.occurred_at[r])),
                creator_id: strings.get(c.creator[r]).to_string(),
                template_id: strings.get(c.template[r]).to_string(),
                brand_id: (c.brand[r] != crate::validate::NO_BRAND)
                    .then(|| strings.get(c.brand[r]).to_string()),
                content_kind: CONTENT_KINDS[c.content_kind[r] as usize].to_string(),
                action: ACTIONS[c.action[r] as usize].to_string(),
                user_tier: USER_TIERS[c.user_tier[r] as usize].to_string(),
                country: String::from_utf8_lossy(&c.country[r]).into_owned(),
                a_payable: ca.payable[i],
                a_rate_micros: ca.rate_micros[i],
                a_reason: ca.reasons[ca.reason[i] as usize].clone(),
                b_payable: cb.payable[i],
                b_rate_micros: cb.rate_micros[i],
                b_reason: cb.reasons[cb.reason[i] as usize].clone(),
            };
            self.sample.push((id, event));
        }
        self.sample.sort_by(|x, y| x.0.cmp(&y.0));
        self.sample.truncate(options.sample);
        for (mine, c) in [(&mut self.totals_a, ca), (&mut self.totals_b, cb)] {
            mine.unique += c.payable.len() as u64;
            mine.payable += c.payable.iter().filter(|&&p| p).count() as u64;
            mine.amount += c.rate_micros.iter().map(|&r| i128::from(r)).sum::<i128>();
        }
        for (day, creator, template, a, b) in key_deltas(&aa.rows, &ab.rows) {
            let key = (
                day,
                strings.get(creator).to_string(),
                strings.get(template).to_string(),
            );
            let e = self.keys.entry(key).or_default();
            add_figures(&mut e.0, a);
            add_figures(&mut e.1, b);
        }
    }

    /// The comparison; an amount that does not fit 64-bit micros is the
    /// error a run would give.
    fn finish(
        self,
        input_fingerprint: String,
        records: u64,
        options: Options,
    ) -> Result<Comparison, AggregateError> {
        let Sums {
            pairs,
            creators,
            templates,
            days,
            content_kinds,
            user_tiers,
            countries,
            sample,
            totals_a,
            totals_b,
            keys,
        } = self;
        let (totals_a, totals_b) = (totals_a.checked()?, totals_b.checked()?);
        let (top_creators_gaining, top_creators_losing) = movers(&creators, options.top)?;
        let (top_templates_gaining, top_templates_losing) = movers(&templates, options.top)?;
        let (creator_counts, creator_change_histogram) =
            attribution::creators(creators.into_values())?;
        let mut transitions: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        let mut kinds = [0u64; VERDICT_CHANGES.len()];
        for ((kind, a, b), sum) in &pairs {
            kinds[*kind] += sum.events;
            *transitions
                .entry(a.clone())
                .or_default()
                .entry(b.clone())
                .or_default() += sum.events;
        }
        let verdicts = VerdictChanges {
            payable_to_not_payable: kinds[0],
            not_payable_to_payable: kinds[1],
            rate_changed: kinds[2],
            reason_changed: kinds[3],
            unchanged: kinds[4],
        };
        let attribution = Attribution::of(
            pairs,
            CONTENT_KINDS
                .iter()
                .map(|k| k.to_string())
                .zip(content_kinds),
            USER_TIERS.iter().map(|t| t.to_string()).zip(user_tiers),
            countries
                .into_iter()
                .enumerate()
                .map(|(slot, sum)| (country_of(slot), sum)),
        )?;
        let mut days: Vec<(i32, Sum)> = days.into_iter().collect();
        days.sort_by_key(|d| d.0);
        let days = days
            .into_iter()
            .map(|(day, sum)| Share::of(format_day(day), &sum))
            .collect::<Result<_, _>>()?;
        let mut keys: Vec<_> = keys.into_iter().collect();
        keys.sort_by(|x, y| x.0.cmp(&y.0));
        let amount_delta =
            micros(i128::from(totals_b.amount_micros) - i128::from(totals_a.amount_micros))?;
        Ok(Comparison {
            schema_version: SCHEMA_VERSION,
            a: RuleSummary::default(),
            b: RuleSummary::default(),
            input_fingerprint,
            records,
            totals_a,
            totals_b,
            amount_delta,
            amount_relative_change: relative(amount_delta, totals_a.amount_micros),
            payable_delta: totals_b.payable as i64 - totals_a.payable as i64,
            changed_share: if totals_a.unique == 0 {
                0.0
            } else {
                verdicts.changed() as f64 / totals_a.unique as f64
            },
            verdicts,
            transitions,
            top_creators_gaining,
            top_creators_losing,
            top_templates_gaining,
            top_templates_losing,
            days,
            attribution,
            creators: creator_counts,
            creator_change_histogram,
            sample: sample.into_iter().map(|(_, e)| e).collect(),
            gates: Vec::new(),
            elapsed_seconds: 0.0,
            keys: keys
                .into_iter()
                .map(|((day, creator_id, template_id), (a, b))| KeyDelta {
                    day: format_day(day),
                    creator_id,
                    template_id,
                    a,
                    b,
                })
                .collect(),
        })
    }
}

type Figures = (u64, u64, i64);

/// Merges the two sides' rows (both sorted by key).
fn key_deltas(a: &[Row], b: &[Row]) -> Vec<(i32, u32, u32, Figures, Figures)> {
    let key = |r: &Row| (r.day, r.creator, r.template);
    let figures = |r: &Row| (r.events, r.payable_events, r.amount_micros);
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    while i < a.len() || j < b.len() {
        let (ka, kb) = (a.get(i).map(key), b.get(j).map(key));
        let (k, fa, fb) = match (ka, kb) {
            (Some(x), Some(y)) if x == y => {
                i += 1;
                j += 1;
                (x, figures(&a[i - 1]), figures(&b[j - 1]))
            }
            (Some(x), y) if y.is_none_or(|y| x < y) => {
                i += 1;
                (x, figures(&a[i - 1]), (0, 0, 0))
            }
            (_, Some(y)) => {
                j += 1;
                (y, (0, 0, 0), figures(&b[j - 1]))
            }
            _ => unreachable!("the loop runs while a row is left"),
        };
        out.push((k.0, k.1, k.2, fa, fb));
    }
    out
}

/// The version of the JSON form of a comparison of two outputs
/// ([`OutputDiff`], `schema_version`), raised when a field is removed or
/// changes meaning.
pub const OUTPUT_DIFF_SCHEMA_VERSION: u32 = 1;

/// How two published outputs differ, key by key.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OutputDiff {
    /// [`OUTPUT_DIFF_SCHEMA_VERSION`].
    pub schema_version: u32,
    pub a: String,
    pub b: String,
    pub only_in_a: u64,
    pub only_in_b: u64,
    pub changed: u64,
    pub unchanged: u64,
    pub amount_a: i64,
    pub amount_b: i64,
    /// The first differing keys (day, creator, template), with both figures.
    pub differences: Vec<OutputDifference>,
}

impl OutputDiff {
    /// Whether the two outputs hold the same keys with the same figures.
    pub fn identical(&self) -> bool {
        self.only_in_a == 0 && self.only_in_b == 0 && self.changed == 0
    }
}

/// One key that differs between two outputs.
#[derive(Debug, Clone, Serialize)]
pub struct OutputDifference {
    pub day: String,
    pub creator_id: String,
    pub template_id: String,
    /// `events/payable_events/amount_micros`, or null when absent.
    pub a: Option<String>,
    pub b: Option<String>,
}

/// Compares two output directories key by key (zero rows count as rows).
pub fn compare_outputs(
    a: &Path,
    b: &Path,
    listed: usize,
) -> Result<OutputDiff, crate::lineage::LineageError> {
    let days_a = lineage::partitions(a, None)?;
    let days_b = lineage::partitions(b, None)?;
    let mut days: Vec<String> = days_a
        .iter()
        .chain(&days_b)
        .map(|m| m.day.clone())
        .collect();
    days.sort();
    days.dedup();
    let mut diff = OutputDiff {
        schema_version: OUTPUT_DIFF_SCHEMA_VERSION,
        a: a.display().to_string(),
        b: b.display().to_string(),
        ..OutputDiff::default()
    };
    let read = |out: &Path, day: &str| -> Result<Option<Published>, crate::lineage::LineageError> {
        let path = lineage::part_file(out, day);
        if !path.is_file() {
            return Ok(None);
        }
        Published::read(&path)
            .map(Some)
            .map_err(|e| crate::lineage::LineageError::Unreadable {
                path,
                message: e.to_string(),
            })
    };
    for day in &days {
        let (pa, pb) = (read(a, day)?, read(b, day)?);
        let rows = |p: &Option<Published>| -> BTreeMap<(String, String), (i64, i64, i64)> {
            p.iter()
                .flat_map(|p| (0..p.len()).map(|i| p.row(i).0))
                .map(|r| {
                    (
                        (r.creator.to_string(), r.template.to_string()),
                        (r.events, r.payable_events, r.amount_micros),
                    )
                })
                .collect()
        };
        let (ra, rb) = (rows(&pa), rows(&pb));
        let fmt = |f: &(i64, i64, i64)| format!("{}/{}/{}", f.0, f.1, f.2);
        let mut keys: Vec<&(String, String)> = ra.keys().chain(rb.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let (x, y) = (ra.get(key), rb.get(key));
            diff.amount_a += x.map_or(0, |f| f.2);
            diff.amount_b += y.map_or(0, |f| f.2);
            match (x, y) {
                (Some(x), Some(y)) if x == y => {
                    diff.unchanged += 1;
                    continue;
                }
                (Some(_), Some(_)) => diff.changed += 1,
                (Some(_), None) => diff.only_in_a += 1,
                _ => diff.only_in_b += 1,
            }
            if diff.differences.len() < listed {
                diff.differences.push(OutputDifference {
                    day: day.clone(),
                    creator_id: key.0.clone(),
                    template_id: key.1.clone(),
                    a: x.map(fmt),
                    b: y.map(fmt),
                });
            }
        }
    }
    Ok(diff)
}
