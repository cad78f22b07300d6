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

/// The figures of a report, computed from two runs' daily totals (which
/// must equal the model's) and the model's survivors classified by both
/// policies.
struct Want {
    unique: u64,
    payable: (u64, u64),
    amount: (i64, i64),
    verdicts: BTreeMap<String, u64>,
    transitions: BTreeMap<String, BTreeMap<String, u64>>,
    days: Vec<Mover>,
    creators: (Vec<Mover>, Vec<Mover>),
    templates: (Vec<Mover>, Vec<Mover>),
    keys: BTreeMap<(String, String, String), [i64; 7]>,
}

fn want(expected: &Expected, daily_a: &Daily, daily_b: &Daily) -> Want {
    let mut verdicts: BTreeMap<String, u64> = KINDS.iter().map(|k| (k.to_string(), 0)).collect();
    let mut transitions: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for event in &expected.survivors {
        let (a, b) = (model::creator_pay_v1(event), model::creator_pay_v2(event));
        *verdicts.get_mut(change_kind(&a, &b)).expect("a kind") += 1;
        *transitions
            .entry(a.reason.to_string())
            .or_default()
            .entry(b.reason.to_string())
            .or_default() += 1;
    }

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
        // A day where neither rule pays anything moves no money and is not listed.
        days: days
            .into_iter()
            .filter(|(_, (a, b))| *a != 0 || *b != 0)
            .map(|(day, (a, b))| (day, a, b, b - a))
            .collect(),
        creators: all_movers(&creators),
        templates: all_movers(&templates),
        keys,
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

    // Days and the top movers, each list compared whole.
    assert_seqs_eq(&movers_of(&c["days"], "days"), &w.days, "days");
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
    assert!(w.days.len() > 20);

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

/// A condition's parts as `tally compare` states it on stderr.
fn tripped(stderr: &str) -> Vec<(String, String, f64, f64)> {
    // "fail-if: changed-share>=0.18 holds (measured 0.18)"
    stderr
        .lines()
        .filter_map(|line| line.strip_prefix("fail-if: "))
        .map(|rest| {
            let (condition, measured) = rest
                .split_once(" holds (measured ")
                .unwrap_or_else(|| panic!("unclear fail-if line: {rest}"));
            let measured: f64 = measured
                .strip_suffix(')')
                .and_then(|m| m.parse().ok())
                .unwrap_or_else(|| panic!("no measured value in: {rest}"));
            let at = condition.find(['<', '>']).expect("an operator");
            let digits = condition[at..].trim_start_matches(['<', '>', '=']);
            let op = &condition[at..condition.len() - digits.len()];
            (
                condition[..at].to_string(),
                op.to_string(),
                digits.parse().expect("a threshold"),
                measured,
            )
        })
        .collect()
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
    let mut not_holding: Vec<String> = Vec::new();
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
            not_holding.push(format!("{name}{op}{t}"));
        }
        if x.fract() == 0.0 {
            holding.push((name.to_string(), ">".to_string(), x - 1.0));
            holding.push((name.to_string(), ">=".to_string(), x - 0.5));
            not_holding.push(format!("{name}>={}", x + 1.0));
            not_holding.push(format!("{name}>{}", x + 0.5));
        }
    }
    let measured: HashMap<&str, f64> = metrics.into_iter().collect();

    // Each metric at exactly its value trips the gate on its own ...
    for (name, x) in metrics {
        let gate = format!("{name}>={x}");
        let mut args = strs(&base);
        args.extend(["--quiet", "--fail-if", &gate]);
        let out = compare(&args, &[]);
        assert_eq!(
            out.status.code(),
            Some(GATE_TRIPPED),
            "{}",
            describe(&args, &out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            tripped(&stderr),
            [(name.to_string(), ">=".to_string(), x, x)],
            "{stderr}"
        );
        // ... and just past it does not.
        let gate = format!("{name}>{x}");
        let mut args = strs(&base);
        args.extend(["--quiet", "--fail-if", &gate]);
        let out = compare(&args, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&args, &out));
        assert!(!String::from_utf8_lossy(&out.stderr).contains("fail-if"));
    }

    // None of the conditions that do not hold trips, all together.
    let mut args = strs(&base);
    args.push("--quiet");
    for gate in &not_holding {
        args.extend(["--fail-if", gate]);
    }
    let out = compare(&args, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&args, &out));
    assert_eq!(tripped(&String::from_utf8_lossy(&out.stderr)), []);

    // Mixed with all the ones that hold, exactly those are reported, each
    // with the measured value.
    let gates: Vec<String> = holding
        .iter()
        .map(|(name, op, t)| format!("{name}{op}{t}"))
        .collect();
    let mut args = strs(&base);
    args.push("--quiet");
    for gate in gates.iter().chain(&not_holding) {
        args.extend(["--fail-if", gate]);
    }
    let out = compare(&args, &[]);
    assert_eq!(
        out.status.code(),
        Some(GATE_TRIPPED),
        "{}",
        describe(&args, &out)
    );
    let reported = tripped(&String::from_utf8_lossy(&out.stderr));
    let want: Vec<(String, String, f64, f64)> = holding
        .iter()
        .map(|(name, op, t)| (name.clone(), op.clone(), *t, measured[name.as_str()]))
        .collect();
    assert_eq!(reported, want);

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
    args.push("--quiet");
    for gate in &gates {
        args.extend(["--fail-if", gate]);
    }
    let out = compare(&args, &[]);
    assert_eq!(
        out.status.code(),
        Some(GATE_TRIPPED),
        "{}",
        describe(&args, &out)
    );
    let want: Vec<(String, String, f64, f64)> = checks
        .iter()
        .map(|(n, x)| (n.to_string(), ">=".to_string(), *x, *x))
        .collect();
    assert_eq!(tripped(&String::from_utf8_lossy(&out.stderr)), want);

    // A condition that is not one is a usage error, before anything runs.
    for bad in [
        "changed>1",
        "changed-share",
        "changed-share=0.1",
        "changed-share>lots",
    ] {
        let mut args = strs(&base);
        args.extend(["--quiet", "--fail-if", bad]);
        let out = compare(&args, &[]);
        assert_eq!(out.status.code(), Some(2), "{}", describe(&args, &out));
        assert!(out.stdout.is_empty(), "{bad}: a report was printed");
    }
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

/// `tally compare A B --format json` with all differences listed.
fn compare_dirs(a: &Path, b: &Path, listed: usize) -> Value {
    let listed = listed.to_string();
    let (_, mut v) = compare_json(&[s(a), s(b), "--sample", &listed, "--top", "1"], &[]);
    assert_eq!(v["a"], s(a));
    assert_eq!(v["b"], s(b));
    let object = v.as_object_mut().expect("object");
    object.remove("a");
    object.remove("b");
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

    // The text form states the same counts.
    let stdout = common::tally_ok(&["compare", s(&out("v1")), s(&out("v2"))]);
    let line = format!(
        "keys: {} unchanged, {} changed, 0 only in A, 0 only in B",
        thousands(u64_of(&want["unchanged"], "unchanged")),
        thousands(u64_of(&want["changed"], "changed"))
    );
    assert!(stdout.contains(&line), "no {line:?} in:\n{stdout}");
}
