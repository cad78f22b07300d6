//! `tally compare` end to end.
//!
//! Two rules on the same traffic: every figure of the report (totals, verdict
//! changes, the transition matrix, the days, the top movers, the sample and the
//! per-key deltas written with `--out`) equals both the difference of two
//! separate `tally run` outputs and an independent computation with the model
//! (`model.rs`: the contract and both policies written again from the
//! documents). The same rule twice gives an empty diff that no `--fail-if`
//! trips; `--fail-if` trips exactly at its threshold; and two output
//! directories compare key by key as a comparison done here says.

use crate::common::{self, s};
use crate::model::{self, Daily, Event, Expected, Verdict};
use crate::output::{self, blake3_file};
use crate::support::{self, assert_maps_eq, assert_seqs_eq, count, count_map};
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;
use tempfile::TempDir;

const SEED: u64 = 20_260_604;

/// The exit status of `tally compare` when a `--fail-if` condition holds.
const GATE_TRIPPED: i32 = 3;

/// The exit status of `tally compare A B` when two output directories differ.
pub const OUTPUTS_DIFFER: i32 = 3;

/// The verdict-change kinds of the report, in its order.
const KINDS: [&str; 5] = [
    "payable_to_not_payable",
    "not_payable_to_payable",
    "rate_changed",
    "reason_changed",
    "unchanged",
];

// ---------------------------------------------------------------------------
// Formatting as a person reads it (own code, used by the text and HTML checks)
// ---------------------------------------------------------------------------

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut groups: Vec<&str> = Vec::new();
    let mut end = digits.len();
    while end > 3 {
        groups.push(&digits[end - 3..end]);
        end -= 3;
    }
    groups.push(&digits[..end]);
    groups.reverse();
    groups.join(",")
}

/// Micros as currency units with six decimals: `-1,234.500000`.
pub fn money(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    format!("{sign}{}.{:06}", thousands(m / 1_000_000), m % 1_000_000)
}

/// Like [`money`], with a `+` before a gain.
pub fn signed_money(micros: i64) -> String {
    if micros > 0 {
        format!("+{}", money(micros))
    } else {
        money(micros)
    }
}

// ---------------------------------------------------------------------------
// Driving `tally compare`
// ---------------------------------------------------------------------------

/// `tally compare <args>` with extra environment variables.
pub fn compare(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(common::tally_bin());
    command.arg("compare").args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("tally runs")
}

/// What a finished command printed, for failure messages.
pub fn describe(args: &[&str], out: &Output) -> String {
    format!(
        "tally compare {args:?}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
            .chars()
            .take(2000)
            .collect::<String>(),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `tally compare <args> --format json --quiet`, which must exit 0; returns
/// the JSON as printed and parsed.
pub fn compare_json(args: &[&str], env: &[(&str, &str)]) -> (String, Value) {
    let mut full = args.to_vec();
    full.extend(["--format", "json", "--quiet"]);
    let out = compare(&full, env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(0) && !stderr.contains("panicked") && !stderr.contains("fail-if"),
        "{}",
        describe(&full, &out)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8 stdout");
    let value = serde_json::from_str(&text).expect("--format json prints JSON");
    (text, value)
}

/// The arguments of a rule comparison.
fn rule_args(inputs: &[&Path], a: &Path, b: &Path) -> Vec<String> {
    let mut args = Vec::new();
    for input in inputs {
        args.push("--input".to_string());
        args.push(s(input).to_string());
    }
    for rule in [a, b] {
        args.push("--rule".to_string());
        args.push(s(rule).to_string());
    }
    args
}

/// `Vec<String>` as `Vec<&str>`.
fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// A top-level number of the printed JSON, parsed from its text exactly
/// (serde_json's own float parsing is only best-effort by default).
pub fn exact_number(json_text: &str, key: &str) -> f64 {
    let tag = format!("\"{key}\": ");
    let at = json_text
        .find(&tag)
        .unwrap_or_else(|| panic!("no {key} in the JSON report"))
        + tag.len();
    let rest = &json_text[at..];
    let end = rest.find([',', '\n', '}']).unwrap_or(rest.len());
    rest[..end]
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{key}: {:?} is not a number", &rest[..end]))
}

fn u64_of(v: &Value, what: &str) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{what}: {v} is not a count"))
}

fn i64_of(v: &Value, what: &str) -> i64 {
    v.as_i64()
        .unwrap_or_else(|| panic!("{what}: {v} is not an integer"))
}

/// The JSON without its timing, which is the only run-specific figure.
fn without_elapsed(mut v: Value) -> Value {
    v.as_object_mut()
        .expect("a JSON object")
        .remove("elapsed_seconds")
        .expect("elapsed_seconds");
    v
}

// ---------------------------------------------------------------------------
// Reading Parquet files written by `--out`
// ---------------------------------------------------------------------------

/// A Parquet file's column names, rows (as JSON objects) and key-value metadata.
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Value>,
    pub metadata: BTreeMap<String, String>,
}

pub fn read_table(path: &Path) -> Table {
    let file =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).expect("a Parquet file");
    let metadata: BTreeMap<String, String> = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .into_iter()
        .flatten()
        .filter_map(|kv| Some((kv.key.clone(), kv.value.clone()?)))
        .collect();
    let columns: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut rows = Vec::new();
    for batch in builder.build().expect("a reader") {
        let batch = batch.expect("a readable batch");
        let schema = batch.schema();
        for r in 0..batch.num_rows() {
            let mut row = serde_json::Map::new();
            for (i, field) in schema.fields().iter().enumerate() {
                let column = batch.column(i);
                let value = if column.is_null(r) {
                    Value::Null
                } else {
                    match column.data_type() {
                        DataType::Utf8 => json!(column.as_string::<i32>().value(r)),
                        DataType::Int64 => json!(column.as_primitive::<Int64Type>().value(r)),
                        DataType::Boolean => json!(column.as_boolean().value(r)),
                        other => panic!("{}: column {} of type {other}", path.display(), field),
                    }
                };
                row.insert(field.name().clone(), value);
            }
            rows.push(Value::Object(row));
        }
    }
    Table {
        columns,
        rows,
        metadata,
    }
}

// ---------------------------------------------------------------------------
// What the report must say, computed here
// ---------------------------------------------------------------------------

/// A mover as the report lists it: `(key, amount_a, amount_b, delta)`.
type Mover = (String, i64, i64, i64);

fn movers_of(v: &Value, what: &str) -> Vec<Mover> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what} is not a list"))
        .iter()
        .map(|m| {
            (
                m["key"].as_str().expect("key").to_string(),
                i64_of(&m["amount_a"], what),
                i64_of(&m["amount_b"], what),
                i64_of(&m["delta"], what),
            )
        })
        .collect()
}

/// All gaining and all losing keys of `(amount_a, amount_b)` sums: largest
/// gain first, then largest loss first; ties by key.
fn all_movers(sums: &BTreeMap<String, (i64, i64)>) -> (Vec<Mover>, Vec<Mover>) {
    let movers: Vec<Mover> = sums
        .iter()
        .map(|(k, &(a, b))| (k.clone(), a, b, b - a))
        .collect();
    let mut gaining: Vec<Mover> = movers.iter().filter(|m| m.3 > 0).cloned().collect();
    gaining.sort_by(|x, y| y.3.cmp(&x.3).then(x.0.cmp(&y.0)));
    let mut losing: Vec<Mover> = movers.into_iter().filter(|m| m.3 < 0).collect();
    losing.sort_by(|x, y| x.3.cmp(&y.3).then(x.0.cmp(&y.0)));
    (gaining, losing)
}

/// The kind of change from verdict `a` to verdict `b`.
fn change_kind(a: &Verdict, b: &Verdict) -> &'static str {
    match (a.payable, b.payable) {
        (true, false) => "payable_to_not_payable",
        (false, true) => "not_payable_to_payable",
        _ if a.rate_micros != b.rate_micros => "rate_changed",
        _ if a.reason != b.reason => "reason_changed",
        _ => "unchanged",
    }
}

/// What a group of events adds up to under both policies: events, changed
/// verdicts, payable under A, payable under B, amount under A, under B.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Group {
    events: u64,
    changed: u64,
    payable: (u64, u64),
    amount: (i64, i64),
}

impl Group {
    fn add(&mut self, a: &Verdict, b: &Verdict) {
        self.events += 1;
        self.changed += u64::from(change_kind(a, b) != "unchanged");
        self.payable.0 += u64::from(a.payable);
        self.payable.1 += u64::from(b.payable);
        self.amount.0 += a.rate_micros;
        self.amount.1 += b.rate_micros;
    }

    /// The group as the report lists a day, a content kind, a tier or a
    /// country.
    fn share(&self, key: &str) -> Value {
        json!({
            "key": key,
            "events": self.events,
            "changed": self.changed,
            "payable_a": self.payable.0,
            "payable_b": self.payable.1,
            "amount_a": self.amount.0,
            "amount_b": self.amount.1,
            "delta": self.amount.1 - self.amount.0,
        })
    }

    /// The group as the report lists a kind of verdict change, with its
    /// reasons when given.
    fn transition(&self, kind: &str, reasons: Option<(&str, &str)>) -> Value {
        let mut v = json!({
            "transition": kind,
            "events": self.events,
            "amount_a": self.amount.0,
            "amount_b": self.amount.1,
            "delta": self.amount.1 - self.amount.0,
        });
        if let Some((a, b)) = reasons {
            v["a_reason"] = json!(a);
            v["b_reason"] = json!(b);
        }
        v
    }
}

/// The buckets of relative change per creator as the README documents them:
/// label, lower and upper edge in per cent (none: unbounded), and whether
/// each edge is included. `-100%` is its own bucket; creators paid only
/// under B are counted apart, in `new under B`.
type BucketEdges = (&'static str, Option<i64>, Option<i64>, bool, bool);

/// The buckets in the report's order, `new under B` left out.
const BUCKETS: [BucketEdges; 15] = [
    ("-100% (no longer paid)", Some(-100), Some(-100), true, true),
    ("(-100%, -50%)", Some(-100), Some(-50), false, false),
    ("[-50%, -20%)", Some(-50), Some(-20), true, false),
    ("[-20%, -10%)", Some(-20), Some(-10), true, false),
    ("[-10%, -5%)", Some(-10), Some(-5), true, false),
    ("[-5%, -1%)", Some(-5), Some(-1), true, false),
    ("[-1%, 0%)", Some(-1), Some(0), true, false),
    ("0%", Some(0), Some(0), true, true),
    ("(0%, +1%]", Some(0), Some(1), false, true),
    ("(+1%, +5%]", Some(1), Some(5), false, true),
    ("(+5%, +10%]", Some(5), Some(10), false, true),
    ("(+10%, +20%]", Some(10), Some(20), false, true),
    ("(+20%, +50%]", Some(20), Some(50), false, true),
    ("(+50%, +100%]", Some(50), Some(100), false, true),
    ("above +100%", Some(100), None, false, false),
];

/// The bucket of a creator paid `a` under A and `b` under B (`a > 0`): the
/// one whose edges hold `(b - a) / a`, compared as fractions; exactly one
/// must.
fn bucket_of(a: i64, b: i64) -> &'static str {
    let change = i128::from(b) - i128::from(a);
    let a = i128::from(a);
    // change / a against edge / 100, without division.
    let above = |edge: i64, inclusive: bool| {
        let (l, r) = (change * 100, i128::from(edge) * a);
        if inclusive { l >= r } else { l > r }
    };
    let holding: Vec<&str> = BUCKETS
        .iter()
        .filter(|(_, lo, hi, lo_in, hi_in)| {
            lo.is_none_or(|lo| above(lo, *lo_in)) && hi.is_none_or(|hi| !above(hi, !*hi_in))
        })
        .map(|b| b.0)
        .collect();
    assert_eq!(holding.len(), 1, "{a} -> {b} is in buckets {holding:?}");
    holding[0]
}

/// The creator counts and the histogram of relative change, worked out
/// from each creator's amounts under A and B.
fn creator_figures(amounts: &BTreeMap<String, (i64, i64)>) -> (Value, Value) {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    let mut buckets: BTreeMap<&str, (u64, i64, i64)> = BTreeMap::new();
    for &(a, b) in amounts.values() {
        *counts.entry("with_events").or_default() += 1;
        *counts
            .entry(match b.cmp(&a) {
                std::cmp::Ordering::Greater => "gaining",
                std::cmp::Ordering::Less => "losing",
                std::cmp::Ordering::Equal => "unchanged",
            })
            .or_default() += 1;
        let bucket = match (a, b) {
            (0, 0) => {
                *counts.entry("paid_under_neither").or_default() += 1;
                continue;
            }
            (0, _) => {
                *counts.entry("paid_only_under_b").or_default() += 1;
                "new under B"
            }
            (_, 0) => {
                *counts.entry("paid_only_under_a").or_default() += 1;
                bucket_of(a, b)
            }
            _ => bucket_of(a, b),
        };
        let sums = buckets.entry(bucket).or_default();
        sums.0 += 1;
        sums.1 += a;
        sums.2 += b;
    }
    let counts = json!({
        "with_events": counts.get("with_events").copied().unwrap_or(0),
        "gaining": counts.get("gaining").copied().unwrap_or(0),
        "losing": counts.get("losing").copied().unwrap_or(0),
        "unchanged": counts.get("unchanged").copied().unwrap_or(0),
        "paid_under_neither": counts.get("paid_under_neither").copied().unwrap_or(0),
        "paid_only_under_a": counts.get("paid_only_under_a").copied().unwrap_or(0),
        "paid_only_under_b": counts.get("paid_only_under_b").copied().unwrap_or(0),
    });
    let kind = |label: &str, lo: Option<i64>, hi: Option<i64>| match (label, lo, hi) {
        (_, Some(-100), Some(-100)) => "stopped",
        (_, Some(0), Some(0)) => "unchanged",
        (_, _, Some(hi)) if hi <= 0 => "decrease",
        _ => "increase",
    };
    let mut histogram: Vec<Value> = BUCKETS
        .iter()
        .map(|&(label, lo, hi, lo_in, hi_in)| {
            let (n, a, b) = buckets.get(label).copied().unwrap_or_default();
            json!({
                "label": label, "kind": kind(label, lo, hi),
                "min_percent": lo, "max_percent": hi,
                "includes_min": lo_in, "includes_max": hi_in,
                "creators": n, "amount_a": a, "amount_b": b, "delta": b - a,
            })
        })
        .collect();
    let (n, a, b) = buckets.get("new under B").copied().unwrap_or_default();
    histogram.push(json!({
        "label": "new under B", "kind": "new",
        "min_percent": null, "max_percent": null,
        "includes_min": false, "includes_max": false,
        "creators": n, "amount_a": a, "amount_b": b, "delta": b - a,
    }));
    (counts, Value::Array(histogram))
}

/// The figures of a report, computed from two runs' daily totals (which
/// must equal the model's) and the model's survivors classified by both
/// policies.
struct Want {
    unique: u64,
    payable: (u64, u64),
    amount: (i64, i64),
    verdicts: BTreeMap<String, u64>,
    transitions: BTreeMap<String, BTreeMap<String, u64>>,
    /// Every day with events, as the report lists it.
    days: Value,
    creators: (Vec<Mover>, Vec<Mover>),
    templates: (Vec<Mover>, Vec<Mover>),
    keys: BTreeMap<(String, String, String), [i64; 7]>,
    /// The report's `attribution`, `creators` and
    /// `creator_change_histogram`.
    attribution: Value,
    creator_counts: Value,
    histogram: Value,
}

fn want(expected: &Expected, daily_a: &Daily, daily_b: &Daily) -> Want {
    let mut verdicts: BTreeMap<String, u64> = KINDS.iter().map(|k| (k.to_string(), 0)).collect();
    let mut transitions: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut kinds: BTreeMap<&str, Group> = BTreeMap::new();
    let mut pairs: BTreeMap<(usize, &str, &str), Group> = BTreeMap::new();
    let mut content_kinds: BTreeMap<&str, Group> = BTreeMap::new();
    let mut tiers: BTreeMap<&str, Group> = BTreeMap::new();
    let mut countries: BTreeMap<&str, Group> = BTreeMap::new();
    let mut day_groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut creator_amounts: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for event in &expected.survivors {
        let (a, b) = (model::creator_pay_v1(event), model::creator_pay_v2(event));
        let kind = change_kind(&a, &b);
        *verdicts.get_mut(kind).expect("a kind") += 1;
        *transitions
            .entry(a.reason.to_string())
            .or_default()
            .entry(b.reason.to_string())
            .or_default() += 1;
        let order = KINDS.iter().position(|k| *k == kind).expect("a kind");
        for group in [
            kinds.entry(kind).or_default(),
            pairs.entry((order, a.reason, b.reason)).or_default(),
            content_kinds.entry(&event.content_kind).or_default(),
            tiers.entry(&event.user_tier).or_default(),
            countries.entry(&event.country).or_default(),
            day_groups.entry(event.day()).or_default(),
        ] {
            group.add(&a, &b);
        }
        let amounts = creator_amounts.entry(event.creator_id.clone()).or_default();
        amounts.0 += a.rate_micros;
        amounts.1 += b.rate_micros;
    }
    // Kinds and tiers in the contract's order, countries by code.
    let in_order = |groups: &BTreeMap<&str, Group>, order: &[&str]| -> Value {
        let mut keys: Vec<&&str> = groups.keys().collect();
        keys.sort_by_key(|k| order.iter().position(|o| *o == **k).unwrap_or(usize::MAX));
        Value::Array(keys.into_iter().map(|k| groups[k].share(k)).collect())
    };
    let attribution = json!({
        "by_verdict_change": KINDS
            .iter()
            .map(|k| kinds.get(k).copied().unwrap_or_default().transition(k, None))
            .collect::<Vec<_>>(),
        "by_transition": pairs
            .iter()
            .map(|((order, a, b), g)| g.transition(KINDS[*order], Some((a, b))))
            .collect::<Vec<_>>(),
        "by_content_kind": in_order(&content_kinds, &["template", "image", "video", "audio", "font"]),
        "by_user_tier": in_order(&tiers, &["free", "pro", "teams", "enterprise"]),
        "by_country": in_order(&countries, &[]),
    });
    let (creator_counts, histogram) = creator_figures(&creator_amounts);

    let mut days: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut creators: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut templates: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut keys = BTreeMap::new();
    let all_keys: BTreeSet<&(String, String, String)> =
        daily_a.keys().chain(daily_b.keys()).collect();
    for key in all_keys {
        let a = daily_a.get(key).copied().unwrap_or_default();
        let b = daily_b.get(key).copied().unwrap_or_default();
        for (map, name) in [
            (&mut days, &key.0),
            (&mut creators, &key.1),
            (&mut templates, &key.2),
        ] {
            let sums = map.entry(name.clone()).or_default();
            sums.0 += a.amount_micros;
            sums.1 += b.amount_micros;
        }
        keys.insert(
            key.clone(),
            [
                a.events,
                a.payable_events,
                a.amount_micros,
                b.events,
                b.payable_events,
                b.amount_micros,
                b.amount_micros - a.amount_micros,
            ],
        );
    }
    let sum = |daily: &Daily, f: fn(&model::Totals) -> i64| daily.values().map(f).sum::<i64>();
    Want {
        unique: expected.unique(),
        payable: (
            sum(daily_a, |t| t.payable_events) as u64,
            sum(daily_b, |t| t.payable_events) as u64,
        ),
        amount: (
            sum(daily_a, |t| t.amount_micros),
            sum(daily_b, |t| t.amount_micros),
        ),
        verdicts,
        transitions,
        // Every day with events is listed; its amounts are the two runs'.
        days: {
            assert_eq!(
                day_groups.keys().collect::<Vec<_>>(),
                days.keys().collect::<Vec<_>>(),
                "days of the model and of the runs"
            );
            for (day, group) in &day_groups {
                assert_eq!(group.amount, days[day], "{day}: model and runs");
            }
            Value::Array(day_groups.iter().map(|(d, g)| g.share(d)).collect())
        },
        creators: all_movers(&creators),
        templates: all_movers(&templates),
        keys,
        attribution,
        creator_counts,
        histogram,
    }
}

fn transitions_of(v: &Value) -> BTreeMap<String, BTreeMap<String, u64>> {
    v.as_object()
        .expect("transitions is an object")
        .iter()
        .map(|(a, row)| {
            let row = row
                .as_object()
                .expect("a transitions row")
                .iter()
                .map(|(b, n)| (b.clone(), u64_of(n, "transition")))
                .collect();
            (a.clone(), row)
        })
        .collect()
}

/// The keys of `deltas.parquet` with their seven figures.
fn deltas_of(table: &Table) -> BTreeMap<(String, String, String), [i64; 7]> {
    let mut out = BTreeMap::new();
    for row in &table.rows {
        let text = |c: &str| row[c].as_str().expect("a string key").to_string();
        let int = |c: &str| i64_of(&row[c], c);
        let figures = [
            int("a_events"),
            int("a_payable_events"),
            int("a_amount_micros"),
            int("b_events"),
            int("b_payable_events"),
            int("b_amount_micros"),
            int("delta_amount_micros"),
        ];
        let key = (text("day"), text("creator_id"), text("template_id"));
        assert!(
            out.insert(key.clone(), figures).is_none(),
            "deltas.parquet has {key:?} twice"
        );
    }
    out
}

const DELTA_COLUMNS: [&str; 10] = [
    "day",
    "creator_id",
    "template_id",
    "a_events",
    "a_payable_events",
    "a_amount_micros",
    "b_events",
    "b_payable_events",
    "b_amount_micros",
    "delta_amount_micros",
];

/// Checks a v1 → v2 comparison against the two runs and the model. `top` is
/// the `--top` it was made with.
fn check_report(
    text: &str,
    c: &Value,
    w: &Want,
    expected: &Expected,
    runs: (&Value, &Value),
    top: usize,
    sample: usize,
) {
    let (run_a, run_b) = runs;
    // Identity: both rules, the input, the records read.
    for (side, rule, version, run) in [
        ("a", "creator-pay-v1", "1.0.0", run_a),
        ("b", "creator-pay-v2", "2.0.0", run_b),
    ] {
        assert_eq!(c[side]["hash"], blake3_file(&common::rule(rule)).as_str());
        assert_eq!(c[side]["hash"], run["rule"]["hash"]);
        assert_eq!(c[side]["name"], "creator-pay");
        assert_eq!(c[side]["version"], version);
    }
    assert_eq!(c["input_fingerprint"], run_a["input_fingerprint"]);
    assert_eq!(u64_of(&c["records"], "records"), count(run_a, "records"));
    assert_eq!(u64_of(&c["records"], "records"), expected.records);

    // Totals: each side equals its own run and the model.
    for (side, run, payable, amount) in [
        ("totals_a", run_a, w.payable.0, w.amount.0),
        ("totals_b", run_b, w.payable.1, w.amount.1),
    ] {
        let t = &c[side];
        assert_eq!(u64_of(&t["unique"], side), count(run, "unique"), "{side}");
        assert_eq!(u64_of(&t["unique"], side), w.unique, "{side}");
        assert_eq!(u64_of(&t["payable"], side), count(run, "payable"), "{side}");
        assert_eq!(u64_of(&t["payable"], side), payable, "{side}");
        assert_eq!(t["amount_micros"], run["counts"]["amount_micros"], "{side}");
        assert_eq!(i64_of(&t["amount_micros"], side), amount, "{side}");
    }
    let delta = w.amount.1 - w.amount.0;
    assert_eq!(i64_of(&c["amount_delta"], "amount_delta"), delta);
    assert_eq!(
        i64_of(&c["payable_delta"], "payable_delta"),
        w.payable.1 as i64 - w.payable.0 as i64
    );
    assert_eq!(
        exact_number(text, "amount_relative_change"),
        delta as f64 / w.amount.0 as f64,
        "amount_relative_change"
    );

    // Verdict changes and the transition matrix.
    let verdicts: BTreeMap<String, u64> = c["verdicts"]
        .as_object()
        .expect("verdicts")
        .iter()
        .map(|(k, v)| (k.clone(), u64_of(v, k)))
        .collect();
    assert_maps_eq(&verdicts, &w.verdicts, "verdict changes");
    let changed = w.unique - w.verdicts["unchanged"];
    assert_eq!(
        exact_number(text, "changed_share"),
        changed as f64 / w.unique as f64,
        "changed_share"
    );
    let transitions = transitions_of(&c["transitions"]);
    assert_eq!(
        transitions
            .values()
            .flat_map(|row| row.values())
            .sum::<u64>(),
        w.unique,
        "the transition matrix sums to the unique events"
    );
    assert_eq!(transitions, w.transitions, "transition matrix");
    // Its margins are each run's events per reason.
    let mut rows: BTreeMap<String, u64> = BTreeMap::new();
    let mut columns: BTreeMap<String, u64> = BTreeMap::new();
    for (a, row) in &transitions {
        for (b, n) in row {
            *rows.entry(a.clone()).or_default() += n;
            *columns.entry(b.clone()).or_default() += n;
        }
    }
    assert_maps_eq(
        &rows,
        &count_map(run_a, "by_reason"),
        "A reasons of the matrix",
    );
    assert_maps_eq(
        &columns,
        &count_map(run_b, "by_reason"),
        "B reasons of the matrix",
    );

    // Days, the attribution of the change, the creators and the top movers,
    // each compared whole.
    assert_eq!(c["schema_version"], 1);
    assert_seqs_eq(
        c["days"].as_array().expect("days"),
        w.days.as_array().expect("days"),
        "days",
    );
    for split in [
        "by_verdict_change",
        "by_transition",
        "by_content_kind",
        "by_user_tier",
        "by_country",
    ] {
        assert_seqs_eq(
            c["attribution"][split].as_array().expect("a split"),
            w.attribution[split].as_array().expect("a split"),
            split,
        );
    }
    assert_eq!(c["creators"], w.creator_counts, "creators");
    assert_seqs_eq(
        c["creator_change_histogram"].as_array().expect("histogram"),
        w.histogram.as_array().expect("histogram"),
        "creator_change_histogram",
    );
    let cut = |v: &[Mover]| v[..v.len().min(top)].to_vec();
    for (field, want) in [
        ("top_creators_gaining", cut(&w.creators.0)),
        ("top_creators_losing", cut(&w.creators.1)),
        ("top_templates_gaining", cut(&w.templates.0)),
        ("top_templates_losing", cut(&w.templates.1)),
    ] {
        assert_seqs_eq(&movers_of(&c[field], field), &want, field);
    }

    // The sample: changed events only, each with its fields and both verdicts.
    let survivors: HashMap<&str, &Event> = expected
        .survivors
        .iter()
        .map(|e| (e.event_id.as_str(), e))
        .collect();
    let items = c["sample"].as_array().expect("sample");
    assert_eq!(
        items.len() as u64,
        changed.min(sample as u64),
        "sample size"
    );
    let ids: BTreeSet<&str> = items
        .iter()
        .map(|e| e["event_id"].as_str().expect("event_id"))
        .collect();
    assert_eq!(ids.len(), items.len(), "an event twice in the sample");
    for item in items {
        let id = item["event_id"].as_str().expect("event_id");
        let event = survivors
            .get(id)
            .unwrap_or_else(|| panic!("sample event {id} is not a unique event"));
        let (a, b) = (model::creator_pay_v1(event), model::creator_pay_v2(event));
        assert_ne!(
            change_kind(&a, &b),
            "unchanged",
            "unchanged event {id} in the sample"
        );
        let want = json!({
            "event_id": event.event_id,
            "day": event.day(),
            "creator_id": event.creator_id,
            "template_id": event.template_id,
            "brand_id": event.brand_id,
            "content_kind": event.content_kind,
            "action": event.action,
            "user_tier": event.user_tier,
            "country": event.country,
            "a_payable": a.payable,
            "a_rate_micros": a.rate_micros,
            "a_reason": a.reason,
            "b_payable": b.payable,
            "b_rate_micros": b.rate_micros,
            "b_reason": b.reason,
        });
        assert_eq!(item, &want, "sample event {id}");
    }
}

/// Checks the files of `--out`: the deltas equal the two runs' partitions key
/// by key, the sample file holds the JSON sample, the JSON report is the
/// printed one and the text report carries the totals.
fn check_out(out: &Path, printed: &Value, w: &Want) {
    let deltas = read_table(&out.join("deltas.parquet"));
    assert_eq!(deltas.columns, DELTA_COLUMNS, "columns of deltas.parquet");
    assert_maps_eq(&deltas_of(&deltas), &w.keys, "deltas.parquet");
    let meta = |t: &Table, key: &str| t.metadata.get(key).cloned();
    let sample = read_table(&out.join("changed-sample.parquet"));
    for table in [&deltas, &sample] {
        assert_eq!(
            meta(table, "tally.rule_a_hash").as_deref(),
            printed["a"]["hash"].as_str()
        );
        assert_eq!(
            meta(table, "tally.rule_b_hash").as_deref(),
            printed["b"]["hash"].as_str()
        );
        assert_eq!(
            meta(table, "tally.input_fingerprint").as_deref(),
            printed["input_fingerprint"].as_str()
        );
    }
    assert_eq!(
        Value::Array(sample.rows),
        printed["sample"],
        "changed-sample.parquet against the JSON sample"
    );

    let saved: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("report.json")).expect("report.json"),
    )
    .expect("report.json is JSON");
    assert_eq!(saved, *printed, "report.json against the printed JSON");

    let text = std::fs::read_to_string(out.join("report.txt")).expect("report.txt");
    let amount_line = text
        .lines()
        .find(|l| l.starts_with("amount"))
        .unwrap_or_else(|| panic!("no amount line in report.txt:\n{text}"));
    for figure in [
        money(w.amount.0),
        money(w.amount.1),
        signed_money(w.amount.1 - w.amount.0),
    ] {
        assert!(
            amount_line.contains(&figure),
            "report.txt amount line {amount_line:?} lacks {figure}"
        );
    }
    let changed = w.unique - w.verdicts["unchanged"];
    assert!(
        text.contains(&format!("{} changed", thousands(changed))),
        "report.txt does not say {changed} changed:\n{text}"
    );
    let html = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    assert!(html.contains(&money(w.amount.0)) && html.contains(&money(w.amount.1)));
}

#[test]
fn report_equals_two_runs_and_an_independent_computation() {
    let started = Instant::now();
    let dir = TempDir::new().expect("temp dir");
    let (input, planted) = support::generate(dir.path(), "events", 200_000, SEED, "jsonl", 50_000);
    let files = support::files_in(&input);
    assert_eq!(files.len(), 4);
    let named: Vec<(String, &Path)> = files
        .iter()
        .map(|(n, p)| (n.clone(), p.as_path()))
        .collect();
    let expected = Expected::of_files(&named);
    assert_eq!(
        expected.unique(),
        planted.unique,
        "the model reads the input as planted"
    );

    // Two separate runs, which must agree with the model.
    let (v1, v2) = (
        common::rule("creator-pay-v1"),
        common::rule("creator-pay-v2"),
    );
    let (out_a, out_b) = (dir.path().join("run-a"), dir.path().join("run-b"));
    let run_a = support::run(&[&input], &v1, &out_a, &[]);
    let run_b = support::run(&[&input], &v2, &out_b, &[]);
    let daily_a = output::daily(&output::partitions(&out_a));
    let daily_b = output::daily(&output::partitions(&out_b));
    assert_maps_eq(
        &daily_a,
        &expected.daily(model::creator_pay_v1),
        "v1 run against the model",
    );
    assert_maps_eq(
        &daily_b,
        &expected.daily(model::creator_pay_v2),
        "v2 run against the model",
    );
    let w = want(&expected, &daily_a, &daily_b);
    // The data exercise every part of the report.
    assert!(w.verdicts["not_payable_to_payable"] > 0 && w.verdicts["rate_changed"] > 0);
    assert!(w.creators.0.len() > 1 && w.creators.1.len() > 1);
    assert!(w.templates.0.len() > 1 && w.templates.1.len() > 1);
    assert!(w.days.as_array().expect("days").len() > 20);
    // Creators gain, lose, stay, appear and are paid under neither rule.
    for count in [
        "gaining",
        "losing",
        "unchanged",
        "paid_under_neither",
        "paid_only_under_b",
    ] {
        assert!(u64_of(&w.creator_counts[count], count) > 0, "{count}");
    }

    // The full lists of movers (`--top` larger than any), so that every tie
    // of the order is checked; the data have ties.
    let everything = 10_000_000;
    let cmp_out = dir.path().join("compare");
    let mut args = rule_args(&[&input], &v1, &v2);
    args.extend(
        [
            "--out",
            s(&cmp_out),
            "--top",
            &everything.to_string(),
            "--sample",
            "40",
        ]
        .map(String::from),
    );
    let (text, full) = compare_json(&strs(&args), &[]);
    check_report(
        &text,
        &full,
        &w,
        &expected,
        (&run_a, &run_b),
        everything,
        40,
    );
    let ties = |movers: &[Mover]| movers.windows(2).filter(|p| p[0].3 == p[1].3).count();
    assert!(
        ties(&w.creators.0) + ties(&w.creators.1) > 0 && ties(&w.templates.0) > 0,
        "the data should have movers with equal deltas"
    );
    check_out(&cmp_out, &full, &w);

    // Top 5 only, on one thread with small batches, the input files given
    // one by one in reverse order: the same report, with the lists cut.
    let cmp_small = dir.path().join("compare-top5");
    let reversed: Vec<&Path> = files.iter().rev().map(|(_, p)| p.as_path()).collect();
    let mut args = rule_args(&reversed, &v1, &v2);
    args.extend(
        [
            "--out",
            s(&cmp_small),
            "--top",
            "5",
            "--sample",
            "40",
            "--batch-size",
            "999",
        ]
        .map(String::from),
    );
    let (text5, top5) = compare_json(&strs(&args), &[("RAYON_NUM_THREADS", "1")]);
    check_report(&text5, &top5, &w, &expected, (&run_a, &run_b), 5, 40);
    let mut a = without_elapsed(full.clone());
    let mut b = without_elapsed(top5.clone());
    for v in [&mut a, &mut b] {
        for field in [
            "top_creators_gaining",
            "top_creators_losing",
            "top_templates_gaining",
            "top_templates_losing",
        ] {
            v.as_object_mut().expect("object").remove(field);
        }
    }
    assert_eq!(
        a, b,
        "the report depends on --top, threads, batches or file order"
    );

    // The same command again, on three threads with large batches: the same
    // report and the same bytes in the Parquet files.
    let cmp_again = dir.path().join("compare-again");
    let mut args = rule_args(&[&input], &v1, &v2);
    args.extend(
        [
            "--out",
            s(&cmp_again),
            "--top",
            &everything.to_string(),
            "--sample",
            "40",
            "--batch-size",
            "100000",
        ]
        .map(String::from),
    );
    let (_, again) = compare_json(&strs(&args), &[("RAYON_NUM_THREADS", "3")]);
    assert_eq!(without_elapsed(again), without_elapsed(full));
    for name in ["deltas.parquet", "changed-sample.parquet"] {
        assert!(
            std::fs::read(cmp_out.join(name)).expect("file")
                == std::fs::read(cmp_again.join(name)).expect("file"),
            "{name} differs between two comparisons of the same input"
        );
    }
    eprintln!(
        "compare against runs and the model: {:?}",
        started.elapsed()
    );
}

/// The thresholds of every metric that no identical pair of rules may trip.
const NOTHING_CHANGED_GATES: [&str; 8] = [
    "changed-share>0",
    "relative-amount-change>0",
    "changed-events>=1",
    "changed-events>0",
    "payable-change>0",
    "payable-change>=1",
    "amount-change-micros>0",
    "relative-amount-change>=0.000001",
];

#[test]
fn the_same_rule_twice_is_an_empty_diff_under_any_gate() {
    let dir = TempDir::new().expect("temp dir");
    let (input, planted) =
        support::generate(dir.path(), "events", 50_000, SEED + 1, "jsonl", 25_000);
    let v1 = common::rule("creator-pay-v1");
    // The same rule by path, by a copy elsewhere and by its published version.
    let copy = dir.path().join("copy-of-v1.wasm");
    std::fs::copy(&v1, &copy).expect("copy");
    let registry = dir.path().join("registry");
    common::tally_ok(&["rule", "publish", s(&v1), "--registry", s(&registry)]);
    let hash = blake3_file(&v1);
    let run_out = dir.path().join("run");
    let run = support::run(&[&input], &v1, &run_out, &[]);

    for (i, (a, b)) in [
        (s(&v1).to_string(), s(&v1).to_string()),
        (s(&v1).to_string(), s(&copy).to_string()),
        ("creator-pay@1.0.0".to_string(), s(&v1).to_string()),
    ]
    .into_iter()
    .enumerate()
    {
        let out = dir.path().join(format!("compare-{i}"));
        let mut args: Vec<&str> = vec![
            "--input",
            s(&input),
            "--rule",
            &a,
            "--rule",
            &b,
            "--registry",
            s(&registry),
            "--out",
            s(&out),
        ];
        for gate in NOTHING_CHANGED_GATES {
            args.extend(["--fail-if", gate]);
        }
        // Exit 0 and no fail-if message, whatever the gates.
        let (text, c) = compare_json(&args, &[]);
        // Every gate is listed in the JSON, in order, none held, each
        // measuring nothing.
        let gates = gates_of(&text, &c);
        assert_eq!(gates.len(), NOTHING_CHANGED_GATES.len());
        for ((condition, held, _, measured, shown), gate) in gates.iter().zip(NOTHING_CHANGED_GATES)
        {
            assert_eq!((condition.as_str(), *held, *measured), (gate, false, 0.0));
            let zero = match condition_parts(gate).0.as_str() {
                "relative-amount-change" | "changed-share" => "0%",
                "amount-change-micros" => "0.000000 = 0 micros",
                _ => "0",
            };
            assert_eq!(shown, zero, "{gate}");
        }

        assert_eq!(c["a"]["hash"], hash.as_str());
        assert_eq!(c["b"]["hash"], hash.as_str());
        assert_eq!(c["totals_a"], c["totals_b"]);
        assert_eq!(u64_of(&c["totals_a"]["unique"], "unique"), planted.unique);
        assert_eq!(
            c["totals_a"]["amount_micros"],
            run["counts"]["amount_micros"]
        );
        for zero in ["amount_delta", "payable_delta"] {
            assert_eq!(c[zero], 0, "{zero}");
        }
        for zero in ["amount_relative_change", "changed_share"] {
            assert_eq!(exact_number(&text, zero), 0.0, "{zero}");
        }
        let mut verdicts = json!({});
        for kind in KINDS {
            verdicts[kind] = json!(0);
        }
        verdicts["unchanged"] = json!(planted.unique);
        assert_eq!(c["verdicts"], verdicts);
        // The matrix is its diagonal: each reason to itself, as the run counts them.
        let transitions = transitions_of(&c["transitions"]);
        let diagonal: BTreeMap<String, BTreeMap<String, u64>> = count_map(&run, "by_reason")
            .into_iter()
            .map(|(reason, n)| (reason.clone(), BTreeMap::from([(reason, n)])))
            .collect();
        assert_eq!(transitions, diagonal);
        for empty in [
            "top_creators_gaining",
            "top_creators_losing",
            "top_templates_gaining",
            "top_templates_losing",
            "sample",
        ] {
            assert_eq!(c[empty], json!([]), "{empty}");
        }
        let days = movers_of(&c["days"], "days");
        assert!(!days.is_empty());
        assert!(days.iter().all(|d| d.1 == d.2 && d.3 == 0), "{days:?}");
        // Nothing moved: every split of the change is zero, every event is
        // unchanged, and every paid creator is in the 0% bucket.
        for split in [
            "by_verdict_change",
            "by_transition",
            "by_content_kind",
            "by_user_tier",
            "by_country",
        ] {
            for part in c["attribution"][split].as_array().expect("a split") {
                assert_eq!(part["delta"], 0, "{split}: {part}");
                assert_eq!(part["amount_a"], part["amount_b"], "{split}: {part}");
            }
        }
        for kind in c["attribution"]["by_verdict_change"]
            .as_array()
            .expect("kinds")
        {
            let unchanged = kind["transition"] == "unchanged";
            assert_eq!(kind["events"] == 0, !unchanged, "{kind}");
        }
        let creators = &c["creators"];
        assert_eq!(creators["gaining"], 0);
        assert_eq!(creators["losing"], 0);
        assert_eq!(creators["unchanged"], creators["with_events"]);
        let paid = u64_of(&creators["with_events"], "creators")
            - u64_of(&creators["paid_under_neither"], "creators");
        for bucket in c["creator_change_histogram"].as_array().expect("histogram") {
            let want = if bucket["label"] == "0%" { paid } else { 0 };
            assert_eq!(u64_of(&bucket["creators"], "creators"), want, "{bucket}");
        }

        let deltas = deltas_of(&read_table(&out.join("deltas.parquet")));
        let daily = output::daily(&output::partitions(&run_out));
        assert_eq!(
            deltas.len(),
            daily.len(),
            "one delta row per key of the run"
        );
        for (key, t) in &daily {
            let f = [t.events, t.payable_events, t.amount_micros];
            let want = [f[0], f[1], f[2], f[0], f[1], f[2], 0];
            assert_eq!(deltas.get(key), Some(&want), "{key:?}");
        }
        assert!(
            read_table(&out.join("changed-sample.parquet"))
                .rows
                .is_empty()
        );
    }
}

/// The conditions `tally compare` states on stderr as holding, each as
/// (metric, operator, threshold as written, the measured value as shown).
fn tripped(stderr: &str) -> Vec<(String, String, String, String)> {
    // "fail-if: changed-share>=0.18 holds (measured 18.00%)"
    stderr
        .lines()
        .filter_map(|line| line.strip_prefix("fail-if: "))
        .map(|rest| {
            let (condition, measured) = rest
                .split_once(" holds (measured ")
                .unwrap_or_else(|| panic!("unclear fail-if line: {rest}"));
            let measured = measured
                .strip_suffix(')')
                .unwrap_or_else(|| panic!("no measured value in: {rest}"));
            let (name, op, threshold) = condition_parts(condition);
            (name, op, threshold, measured.to_string())
        })
        .collect()
}

/// `changed-share>=0.18` as its metric, operator and threshold as written.
fn condition_parts(condition: &str) -> (String, String, String) {
    let at = condition.find(['<', '>']).expect("an operator");
    let threshold = condition[at..].trim_start_matches(['<', '>', '=']);
    let op = &condition[at..condition.len() - threshold.len()];
    (
        condition[..at].to_string(),
        op.to_string(),
        threshold.to_string(),
    )
}

/// Every number after `"key": ` in a JSON text, in order, parsed from its
/// text exactly (serde_json's own float parsing may be one bit off).
fn exact_numbers(json_text: &str, key: &str) -> Vec<f64> {
    let tag = format!("\"{key}\": ");
    json_text
        .match_indices(&tag)
        .map(|(at, _)| {
            let rest = &json_text[at + tag.len()..];
            let end = rest.find([',', '\n', '}']).unwrap_or(rest.len());
            rest[..end]
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{key}: {:?} is not a number", &rest[..end]))
        })
        .collect()
}

/// A ratio as the report shows a measured one that equals its threshold:
/// a percentage with two decimals from 1% up, three significant digits
/// below.
fn percent_shown(ratio: f64) -> String {
    let hundredfold = ratio * 100.0;
    if ratio == 0.0 {
        "0%".to_string()
    } else if hundredfold >= 1.0 {
        format!("{hundredfold:.2}%")
    } else {
        let decimals = (2.0 - hundredfold.log10().floor()) as usize;
        format!("{hundredfold:.decimals$}%")
    }
}

/// A metric's value as the report shows it to a person: ratios as
/// percentages, the amount as money with its micros, counts with thousands
/// separators.
fn shown(metric: &str, value: f64) -> String {
    match metric {
        "relative-amount-change" | "changed-share" => percent_shown(value),
        "amount-change-micros" => format!(
            "{} = {} micros",
            money(value as i64),
            thousands(value as u64)
        ),
        _ => thousands(value as u64),
    }
}

/// Checks a measured value as the report shows it against a condition's
/// threshold: a count exactly; a ratio exactly when it equals the threshold,
/// else as a percentage with two to six decimals (more than two only when
/// two would read the same as the threshold), rounded from the value.
fn assert_shown(metric: &str, measured: f64, threshold: f64, got: &str) {
    let ratio = matches!(metric, "relative-amount-change" | "changed-share");
    if !ratio || measured == threshold {
        assert_eq!(got, shown(metric, measured), "{metric} against {threshold}");
        return;
    }
    let number = got
        .strip_suffix('%')
        .unwrap_or_else(|| panic!("{metric}: {got:?} is not a percentage"));
    let decimals = number.split_once('.').map_or(0, |(_, d)| d.len());
    let percent: f64 = number.parse().expect("a number");
    assert!(
        (2..=6).contains(&decimals),
        "{metric}: {got:?} against {threshold}"
    );
    assert!(
        (percent - measured * 100.0).abs() <= 0.5 * 10f64.powi(-(decimals as i32)) * 1.000_001,
        "{metric}: {got:?} is not {measured} rounded"
    );
    if decimals > 2 {
        assert_eq!(
            format!("{:.2}", measured * 100.0),
            format!("{:.2}", threshold * 100.0),
            "{metric}: more decimals than needed in {got:?} against {threshold}"
        );
    }
}

/// The `gates` of a JSON report: (condition, held, threshold, measured,
/// shown), the numbers parsed exactly from the text.
fn gates_of(json_text: &str, v: &Value) -> Vec<(String, bool, f64, f64, String)> {
    let gates = v["gates"].as_array().expect("gates is a list");
    let (thresholds, measured) = (
        exact_numbers(json_text, "threshold"),
        exact_numbers(json_text, "measured"),
    );
    assert_eq!(
        (thresholds.len(), measured.len()),
        (gates.len(), gates.len())
    );
    gates
        .iter()
        .zip(thresholds.iter().zip(&measured))
        .map(|(g, (t, m))| {
            let condition = g["condition"].as_str().expect("condition").to_string();
            let (name, op, _) = condition_parts(&condition);
            assert_eq!(
                (g["metric"].as_str(), g["op"].as_str()),
                (Some(name.as_str()), Some(op.as_str()))
            );
            if name != "relative-amount-change" && name != "changed-share" {
                // A count is an integer in the JSON, not a float.
                assert!(g["measured"].is_u64(), "{g}");
            }
            (
                condition,
                g["held"].as_bool().expect("held"),
                *t,
                *m,
                g["shown"].as_str().expect("shown").to_string(),
            )
        })
        .collect()
}

/// `tally compare <args> --format json --quiet`, expecting exit status
/// `code`: the JSON text and value, and stderr.
fn compare_json_status(args: &[&str], code: i32) -> (String, Value, String) {
    let mut full = args.to_vec();
    full.extend(["--format", "json", "--quiet"]);
    let out = compare(&full, &[]);
    assert_eq!(out.status.code(), Some(code), "{}", describe(&full, &out));
    let text = String::from_utf8(out.stdout).expect("utf-8 stdout");
    let value = serde_json::from_str(&text).expect("--format json prints JSON");
    (
        text,
        value,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn fail_if_trips_exactly_at_its_threshold() {
    let dir = TempDir::new().expect("temp dir");
    let (input, _) = support::generate(dir.path(), "events", 30_000, SEED + 2, "jsonl", 30_000);
    let (v1, v2) = (
        common::rule("creator-pay-v1"),
        common::rule("creator-pay-v2"),
    );
    let base = rule_args(&[&input], &v1, &v2);
    let (text, c) = compare_json(&strs(&base), &[]);
    // No condition given: no gates.
    assert_eq!(c["gates"], json!([]));

    // Each metric as measured, from the JSON report.
    let changed: u64 = KINDS[..4]
        .iter()
        .map(|k| u64_of(&c["verdicts"][k], k))
        .sum();
    let unique = u64_of(&c["totals_a"]["unique"], "unique");
    let amount_delta = i64_of(&c["amount_delta"], "amount_delta");
    let payable_delta = i64_of(&c["payable_delta"], "payable_delta");
    let relative = exact_number(&text, "amount_relative_change");
    let share = exact_number(&text, "changed_share");
    assert_eq!(share, changed as f64 / unique as f64);
    let metrics: [(&str, f64); 5] = [
        ("relative-amount-change", relative.abs()),
        ("amount-change-micros", amount_delta.unsigned_abs() as f64),
        ("changed-share", share),
        ("changed-events", changed as f64),
        ("payable-change", payable_delta.unsigned_abs() as f64),
    ];
    for (name, x) in metrics {
        assert!(x > 0.0, "{name} should be positive on this data");
    }

    // Conditions around each measured value X: the ones that hold and the
    // ones that do not (one representable number above or below, and for the
    // counts one above or below).
    let mut holding: Vec<(String, String, f64)> = Vec::new();
    let mut not_holding: Vec<(String, String, f64)> = Vec::new();
    for (name, x) in metrics {
        for (op, t) in [
            (">=", x),
            ("<=", x),
            (">", x.next_down()),
            ("<", x.next_up()),
        ] {
            holding.push((name.to_string(), op.to_string(), t));
        }
        for (op, t) in [
            (">", x),
            ("<", x),
            (">=", x.next_up()),
            ("<=", x.next_down()),
        ] {
            not_holding.push((name.to_string(), op.to_string(), t));
        }
        if x.fract() == 0.0 {
            holding.push((name.to_string(), ">".to_string(), x - 1.0));
            holding.push((name.to_string(), ">=".to_string(), x - 0.5));
            not_holding.push((name.to_string(), ">=".to_string(), x + 1.0));
            not_holding.push((name.to_string(), ">".to_string(), x + 0.5));
        }
    }
    let measured: HashMap<&str, f64> = metrics.into_iter().collect();
    let written = |(name, op, t): &(String, String, f64)| format!("{name}{op}{t}");

    // Each metric at exactly its value trips the gate on its own, and says
    // so with the value as a person reads it ...
    for (name, x) in metrics {
        let gate = format!("{name}>={x}");
        let mut args = strs(&base);
        args.extend(["--fail-if", &gate]);
        let (json_text, v, stderr) = compare_json_status(&args, GATE_TRIPPED);
        assert_eq!(
            tripped(&stderr),
            [(
                name.to_string(),
                ">=".to_string(),
                x.to_string(),
                shown(name, x)
            )],
            "{stderr}"
        );
        assert_eq!(
            gates_of(&json_text, &v),
            [(gate.clone(), true, x, x, shown(name, x))]
        );
        // ... and just past it does not.
        let gate = format!("{name}>{x}");
        let mut args = strs(&base);
        args.extend(["--fail-if", &gate]);
        let (json_text, v, stderr) = compare_json_status(&args, 0);
        assert!(!stderr.contains("fail-if"), "{stderr}");
        assert_eq!(
            gates_of(&json_text, &v),
            [(gate.clone(), false, x, x, shown(name, x))]
        );
    }

    // None of the conditions that do not hold trips, all together.
    let mut args = strs(&base);
    let gates: Vec<String> = not_holding.iter().map(written).collect();
    for gate in &gates {
        args.extend(["--fail-if", gate]);
    }
    let (json_text, v, stderr) = compare_json_status(&args, 0);
    assert_eq!(tripped(&stderr), []);
    let listed = gates_of(&json_text, &v);
    assert_eq!(listed.len(), not_holding.len());
    for ((condition, held, t, m, got), (name, op, threshold)) in listed.iter().zip(&not_holding) {
        assert_eq!(condition, &format!("{name}{op}{threshold}"));
        assert!(!held, "{condition} held");
        assert_eq!(
            (*t, *m),
            (*threshold, measured[name.as_str()]),
            "{condition}"
        );
        assert_shown(name, *m, *threshold, got);
    }

    // Mixed with all the ones that hold, exactly those are reported, each
    // with the measured value, and the JSON lists every condition in the
    // order given, with whether it held.
    let all: Vec<(String, String, f64)> = holding.iter().chain(&not_holding).cloned().collect();
    let gates: Vec<String> = all.iter().map(written).collect();
    let mut args = strs(&base);
    for gate in &gates {
        args.extend(["--fail-if", gate]);
    }
    let (json_text, v, stderr) = compare_json_status(&args, GATE_TRIPPED);
    let reported = tripped(&stderr);
    let want: Vec<(String, String, String)> = holding
        .iter()
        .map(|(name, op, t)| (name.clone(), op.clone(), t.to_string()))
        .collect();
    assert_eq!(
        reported
            .iter()
            .map(|(name, op, t, _)| (name.clone(), op.clone(), t.clone()))
            .collect::<Vec<_>>(),
        want
    );
    for ((name, _, _, got), (_, _, threshold)) in reported.iter().zip(&holding) {
        assert_shown(name, measured[name.as_str()], *threshold, got);
    }
    let listed = gates_of(&json_text, &v);
    assert_eq!(listed.len(), all.len());
    for (i, ((condition, held, t, m, got), (name, _, threshold))) in
        listed.iter().zip(&all).enumerate()
    {
        assert_eq!(condition, &gates[i]);
        assert_eq!(*held, i < holding.len(), "{condition}");
        assert_eq!(
            (*t, *m),
            (*threshold, measured[name.as_str()]),
            "{condition}"
        );
        assert_shown(name, *m, *threshold, got);
    }

    // With A and B swapped the changes of amount and of payable events change
    // sign; their gates take the absolute value.
    let swapped = rule_args(&[&input], &v2, &v1);
    let (swapped_text, sw) = compare_json(&strs(&swapped), &[]);
    assert_eq!(i64_of(&sw["amount_delta"], "amount_delta"), -amount_delta);
    assert_eq!(
        i64_of(&sw["payable_delta"], "payable_delta"),
        -payable_delta
    );
    let relative_swapped = exact_number(&swapped_text, "amount_relative_change");
    assert!(
        relative_swapped * relative < 0.0,
        "{relative} then {relative_swapped}"
    );
    let checks = [
        ("amount-change-micros", amount_delta.unsigned_abs() as f64),
        ("payable-change", payable_delta.unsigned_abs() as f64),
        ("relative-amount-change", relative_swapped.abs()),
    ];
    let gates: Vec<String> = checks.iter().map(|(n, x)| format!("{n}>={x}")).collect();
    let mut args = strs(&swapped);
    for gate in &gates {
        args.extend(["--fail-if", gate]);
    }
    let (_, _, stderr) = compare_json_status(&args, GATE_TRIPPED);
    let want: Vec<(String, String, String, String)> = checks
        .iter()
        .map(|(n, x)| (n.to_string(), ">=".to_string(), x.to_string(), shown(n, *x)))
        .collect();
    assert_eq!(tripped(&stderr), want);

    // A condition that is not one is a usage error, before anything runs,
    // that says what is wrong.
    for (bad, says) in [
        ("changed>1", "unknown metric \"changed\""),
        ("changed-share", "no operator"),
        (
            "changed-share=0.1",
            "unknown operator \"=\" (one of >, >=, <, <=)",
        ),
        ("changed-share>lots", "\"lots\" is not a threshold"),
        (
            "changed-share>5",
            "at most 1 (100%) (for 5 percent, write 5%)",
        ),
        (
            "changed-events>5%",
            "changed-events is a count of events, not a ratio",
        ),
        ("relative-amount-change<-1%", "never negative"),
    ] {
        let mut args = strs(&base);
        args.extend(["--quiet", "--fail-if", bad]);
        let out = compare(&args, &[]);
        assert_eq!(out.status.code(), Some(2), "{}", describe(&args, &out));
        assert!(out.stdout.is_empty(), "{bad}: a report was printed");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("'{bad}'")) && stderr.contains(says),
            "{bad}: {stderr}"
        );
    }
}

#[test]
fn fail_if_takes_percentages_and_reports_every_condition() {
    let dir = TempDir::new().expect("temp dir");
    let (input, _) = support::generate(dir.path(), "events", 30_000, SEED + 2, "jsonl", 30_000);
    let (v1, v2) = (
        common::rule("creator-pay-v1"),
        common::rule("creator-pay-v2"),
    );
    let base = rule_args(&[&input], &v1, &v2);
    let (text, _) = compare_json(&strs(&base), &[]);
    let relative = exact_number(&text, "amount_relative_change").abs();
    let share = exact_number(&text, "changed_share");
    // Whole percents just below and above each ratio.
    let (share_below, share_above) = ((share * 100.0).floor(), (share * 100.0).floor() + 1.0);
    let relative_above = (relative * 100.0).floor() + 1.0;
    assert!(share_below >= 1.0, "the changed share is {share}");
    let conditions = [
        format!("changed-share>={share_below}%"),
        format!("changed-share>={share_above}%"),
        format!("relative-amount-change>{relative_above}%"),
        "changed-events>=1".to_string(),
    ];
    let out_dir = dir.path().join("cmp");
    let mut args = strs(&base);
    args.extend(["--out", s(&out_dir)]);
    for condition in &conditions {
        args.extend(["--fail-if", condition]);
    }

    // JSON: every condition as written, the threshold as a plain number
    // (exactly the number the fraction written out reads as), the value
    // measured and whether it held.
    let (json_text, v, stderr) = compare_json_status(&args, GATE_TRIPPED);
    let gates = gates_of(&json_text, &v);
    let changed = exact_numbers(&json_text, "changed_share");
    assert_eq!(changed, [share]);
    let fraction = |percent: f64| -> f64 { format!("{percent}e-2").parse().expect("a number") };
    let want = [
        (conditions[0].clone(), true, fraction(share_below), share),
        (conditions[1].clone(), false, fraction(share_above), share),
        (
            conditions[2].clone(),
            false,
            fraction(relative_above),
            relative,
        ),
    ];
    for (got, want) in gates.iter().zip(&want) {
        assert_eq!(
            (&got.0, got.1, got.2, got.3),
            (&want.0, want.1, want.2, want.3)
        );
        assert_eq!(got.4, percent_shown(want.3), "{}", got.0);
    }
    assert!(gates[3].1, "changed-events>=1 holds");
    assert_eq!(
        tripped(&stderr)
            .into_iter()
            .map(|(name, op, t, _)| format!("{name}{op}{t}"))
            .collect::<Vec<_>>(),
        [conditions[0].clone(), conditions[3].clone()]
    );
    // The report written with --out says the same.
    let written: Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("report.json")).expect("report.json"),
    )
    .expect("JSON");
    assert_eq!(written["gates"], v["gates"]);

    // Text: a line per condition, with the value measured as a person reads
    // it and whether it held, after how many held.
    let mut args = strs(&base);
    args.push("--quiet");
    for condition in &conditions {
        args.extend(["--fail-if", condition]);
    }
    let out = compare(&args, &[]);
    assert_eq!(
        out.status.code(),
        Some(GATE_TRIPPED),
        "{}",
        describe(&args, &out)
    );
    let report = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        report.contains(
            "\nfail-if: 2 of 4 condition(s) hold, the comparison fails (exit status 3)\n"
        ),
        "{report}"
    );
    let width = conditions.iter().map(String::len).max().unwrap_or(0);
    for (condition, held, _, measured, shown) in &gates {
        let line = format!(
            "  {:<13} {condition:<width$}  measured {shown}",
            if *held { "holds" } else { "does not hold" }
        );
        assert!(
            report.contains(&format!("{line}\n")),
            "no {line:?} in:\n{report}"
        );
        // A ratio reads as a percentage with two decimals (it is above 1%
        // here), never as a raw float.
        if condition.starts_with("changed-share") {
            assert_eq!(shown, &format!("{:.2}%", measured * 100.0));
        }
    }
    let events_line = report
        .lines()
        .find(|l| l.contains("changed-events>=1"))
        .expect("the changed-events line");
    let shown_count = events_line.rsplit("measured ").next().expect("a value");
    assert!(
        shown_count.chars().all(|c| c.is_ascii_digit() || c == ','),
        "{events_line}"
    );
    // The stderr lines use the same figures.
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (condition, held, _, _, shown) in &gates {
        let line = format!("fail-if: {condition} holds (measured {shown})");
        assert_eq!(stderr.contains(&line), *held, "{line:?} in {stderr}");
    }

    // Nothing holds: exit 0, and the text says the comparison passes.
    let mut args = strs(&base);
    args.extend(["--quiet", "--fail-if", &conditions[1]]);
    let out = compare(&args, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&args, &out));
    let report = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        report.contains("\nfail-if: 0 of 1 condition(s) hold, the comparison passes\n"),
        "{report}"
    );

    // The help names the option's value plainly and shows a percentage.
    let help = common::tally_ok(&["compare", "--help"]);
    assert!(help.contains("--fail-if <CONDITION>"), "{help}");
    assert!(help.contains("relative-amount-change>=5%"), "{help}");
    assert!(!help.contains("<METRIC>=X>"), "{help}");
}

/// One output directory's rows by key.
type Rows = BTreeMap<(String, String, String), (i64, i64, i64)>;

fn rows_of(out: &Path) -> Rows {
    output::daily(&output::partitions(out))
        .into_iter()
        .map(|(k, t)| (k, (t.events, t.payable_events, t.amount_micros)))
        .collect()
}

/// What comparing two outputs must say, worked out here key by key.
fn diff_of(a: &Rows, b: &Rows) -> Value {
    let keys: BTreeSet<&(String, String, String)> = a.keys().chain(b.keys()).collect();
    let (mut only_a, mut only_b, mut changed, mut unchanged) = (0, 0, 0, 0);
    let mut differences = Vec::new();
    let show = |f: Option<&(i64, i64, i64)>| f.map(|f| format!("{}/{}/{}", f.0, f.1, f.2));
    for key in keys {
        let (x, y) = (a.get(key), b.get(key));
        match (x, y) {
            (Some(x), Some(y)) if x == y => {
                unchanged += 1;
                continue;
            }
            (Some(_), Some(_)) => changed += 1,
            (Some(_), None) => only_a += 1,
            (None, _) => only_b += 1,
        }
        differences.push(json!({
            "day": key.0, "creator_id": key.1, "template_id": key.2,
            "a": show(x), "b": show(y),
        }));
    }
    json!({
        "only_in_a": only_a,
        "only_in_b": only_b,
        "changed": changed,
        "unchanged": unchanged,
        "amount_a": a.values().map(|f| f.2).sum::<i64>(),
        "amount_b": b.values().map(|f| f.2).sum::<i64>(),
        "differences": differences,
    })
}

/// `tally compare A B --format json` with all differences listed. It exits 0
/// when the outputs are identical and 3 when they differ.
fn compare_dirs(a: &Path, b: &Path, listed: usize) -> Value {
    let listed = listed.to_string();
    let args = [
        s(a),
        s(b),
        "--sample",
        &listed,
        "--top",
        "1",
        "--format",
        "json",
    ];
    let out = compare(&args, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.is_empty() && matches!(out.status.code(), Some(0 | OUTPUTS_DIFFER)),
        "{}",
        describe(&args, &out)
    );
    let mut v: Value = serde_json::from_slice(&out.stdout).expect("--format json prints JSON");
    let identical = v["changed"] == 0 && v["only_in_a"] == 0 && v["only_in_b"] == 0;
    assert_eq!(
        out.status.code(),
        Some(if identical { 0 } else { OUTPUTS_DIFFER }),
        "{}",
        describe(&args, &out)
    );
    assert_eq!(v["a"], s(a));
    assert_eq!(v["b"], s(b));
    assert_eq!(v["schema_version"], 1);
    let object = v.as_object_mut().expect("object");
    object.remove("a");
    object.remove("b");
    object.remove("schema_version");
    v
}

#[test]
fn comparing_two_output_directories_key_by_key() {
    let dir = TempDir::new().expect("temp dir");
    let (input, _) = support::generate(dir.path(), "events", 60_000, SEED + 3, "jsonl", 20_000);
    let files = support::files_in(&input);
    assert_eq!(files.len(), 3);
    let (v1, v2) = (
        common::rule("creator-pay-v1"),
        common::rule("creator-pay-v2"),
    );
    let out = |name: &str| -> PathBuf { dir.path().join(name) };
    support::run(&[&input], &v1, &out("v1"), &[]);
    support::run(&[&input], &v1, &out("v1-again"), &[]);
    support::run(&[&input], &v2, &out("v2"), &[]);
    support::run(&[&files[0].1, &files[1].1], &v1, &out("v1-part"), &[]);
    let rows = |name: &str| rows_of(&out(name));

    // Identical outputs, the same directory or a recompute: all unchanged.
    let v1_rows = rows("v1");
    for other in ["v1", "v1-again"] {
        let got = compare_dirs(&out("v1"), &out(other), 1_000_000);
        assert_eq!(got, diff_of(&v1_rows, &rows(other)), "v1 against {other}");
        assert_eq!(u64_of(&got["unchanged"], "unchanged"), v1_rows.len() as u64);
        assert_eq!(got["differences"], json!([]));
    }

    // v1 against v2: the same keys, some changed.
    let want = diff_of(&v1_rows, &rows("v2"));
    assert!(u64_of(&want["changed"], "changed") > 0 && u64_of(&want["unchanged"], "unchanged") > 0);
    assert_eq!(want["only_in_a"], 0);
    assert_eq!(compare_dirs(&out("v1"), &out("v2"), 1_000_000), want);

    // A recompute over part of the input: keys only on one side, each way.
    for (a, b) in [("v1", "v1-part"), ("v1-part", "v1")] {
        let want = diff_of(&rows(a), &rows(b));
        let only = if a == "v1" { "only_in_a" } else { "only_in_b" };
        assert!(
            u64_of(&want[only], only) > 0,
            "{a} against {b}: nothing {only}"
        );
        assert_eq!(
            compare_dirs(&out(a), &out(b), 1_000_000),
            want,
            "{a} against {b}"
        );
        // By default only the first differences are listed, in key order.
        let default = compare_dirs(&out(a), &out(b), 20);
        let all = want["differences"].as_array().expect("list");
        let first: Vec<Value> = all[..all.len().min(20)].to_vec();
        assert_eq!(default["differences"], json!(first));
    }

    // The text form states the same counts; they differ, so the exit
    // status is 3.
    let (a, b) = (out("v1"), out("v2"));
    let args = [s(&a), s(&b)];
    let output = compare(&args, &[]);
    assert_eq!(
        output.status.code(),
        Some(OUTPUTS_DIFFER),
        "{}",
        describe(&args, &output)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8 stdout");
    let line = format!(
        "keys: {} unchanged, {} changed, 0 only in A, 0 only in B",
        thousands(u64_of(&want["unchanged"], "unchanged")),
        thousands(u64_of(&want["changed"], "changed"))
    );
    assert!(stdout.contains(&line), "no {line:?} in:\n{stdout}");
}
