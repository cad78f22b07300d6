//! Reconciliation with what an output already holds: a rerun with the same
//! rule changes nothing; a rerun with creator-pay 2.0.0 overwrites exactly the
//! rows whose figures the model says differ and restamps the others; events
//! that disappear from the input leave their keys as zeros (never deleted);
//! `--days` rewrites only its window; the commit log only ever grows.
//!
//! What each run must write is computed independently: the daily totals by
//! `model.rs`, and the reconciliation (written, changed, added, zeroed,
//! restamped) from the published rows read back with `output.rs`.

use crate::common::{self, s};
use crate::model::{self, Daily, Event, Expected, Totals};
use crate::output::{self, blake3_file};
use crate::support::{self, assert_maps_eq};
use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tempfile::TempDir;

const RECORDS: u64 = 80_000;
const PER_FILE: u64 = 20_000;
const SEED: u64 = 31_337;

/// `(day, creator_id, template_id)`.
pub type Key = (String, String, String);

const ZERO: Totals = Totals {
    events: 0,
    payable_events: 0,
    amount_micros: 0,
};

/// The rows of an output: figures and the rule hash each row is stamped with.
pub fn stamped_rows(out: &Path) -> BTreeMap<Key, (Totals, String)> {
    let mut rows = BTreeMap::new();
    for part in output::partitions(out) {
        for (creator, template, events, payable_events, amount_micros, hash) in part.rows {
            let totals = Totals {
                events,
                payable_events,
                amount_micros,
            };
            let key = (part.day.clone(), creator, template);
            assert!(rows.insert(key, (totals, hash)).is_none());
        }
    }
    rows
}

/// One row of a changeset file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub totals: Totals,
    pub rule_hash: String,
    pub change: String,
}

/// The files of commit `commit`'s changeset, as its log entry names it: a
/// directory `changes/commit=N/` of `day=D/part-0.parquet` partitions (one per
/// day with changes). Relative paths and bytes, sorted.
pub fn changeset_files(out: &Path, commit: u64) -> Files {
    let entry = log_entry(out, commit);
    let named = entry["changeset"]
        .as_str()
        .unwrap_or_else(|| panic!("no changeset in log entry {commit}"));
    assert!(
        named == format!("changes/commit={commit}/"),
        "commit {commit}'s changeset is {named}"
    );
    let path = out.join(named);
    if !path.exists() {
        // A commit that changed nothing has no changeset files.
        return Vec::new();
    }
    common::snapshot(&path)
        .into_iter()
        .map(|(name, bytes)| (format!("{}/{name}", named.trim_end_matches('/')), bytes))
        .collect()
}

/// The changeset of commit `commit`, keyed by row; asserts its columns and
/// that no key appears twice.
pub fn changeset(out: &Path, commit: u64) -> BTreeMap<Key, Change> {
    let mut rows = BTreeMap::new();
    for (name, _) in changeset_files(out, commit) {
        assert!(name.ends_with("/part-0.parquet"), "{name} in the changeset");
        // The day is the hive partition the file sits in.
        let file_day = Path::new(&name)
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|s| s.to_str())
            .and_then(|s| s.strip_prefix("day="))
            .unwrap_or_else(|| panic!("{name} is not in a day= partition"))
            .to_string();
        let file = std::fs::File::open(out.join(&name)).expect("a changeset file");
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).expect("a Parquet changeset");
        let names: Vec<String> = builder
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(
            names,
            [
                "creator_id",
                "template_id",
                "events",
                "payable_events",
                "amount_micros",
                "rule_hash",
                "change"
            ],
            "columns of {name}"
        );
        for batch in builder.build().expect("a reader") {
            let batch: RecordBatch = batch.expect("a readable batch");
            let text = |i: usize| batch.column(i).as_string::<i32>().clone();
            let int = |i: usize| batch.column(i).as_primitive::<Int64Type>().clone();
            let (creator, template) = (text(0), text(1));
            let (hash, change) = (text(5), text(6));
            let (events, payable, amount) = (int(2), int(3), int(4));
            for r in 0..batch.num_rows() {
                let key = (
                    file_day.clone(),
                    creator.value(r).to_string(),
                    template.value(r).to_string(),
                );
                let row = Change {
                    totals: Totals {
                        events: events.value(r),
                        payable_events: payable.value(r),
                        amount_micros: amount.value(r),
                    },
                    rule_hash: hash.value(r).to_string(),
                    change: change.value(r).to_string(),
                };
                assert!(
                    rows.insert(key.clone(), row).is_none(),
                    "{key:?} twice in the changeset of commit {commit}"
                );
            }
        }
    }
    rows
}

/// What a reconciling run must leave, computed from the published rows and
/// the freshly computed totals alone.
#[derive(Debug, Default)]
pub struct Reconciliation {
    /// Every row of the output afterwards, with its stamp.
    pub rows: BTreeMap<Key, (Totals, String)>,
    /// The rows that differ from the published ones, with how.
    pub changes: BTreeMap<Key, Change>,
    /// `unchanged, changed, added, zeroed, restamped`.
    pub counts: BTreeMap<&'static str, u64>,
    /// The days the run writes.
    pub written: BTreeSet<String>,
}

/// The reconciliation table: a key with new figures is `changed` (figures
/// differ), `restamped` (same figures, other rule) or unchanged; a new key is
/// `added`; a published key without events any more is written as zeros,
/// `zeroed` unless it was zeros already. Only days in `window` (all when
/// None) are touched.
pub fn reconcile(
    published: &BTreeMap<Key, (Totals, String)>,
    fresh: &Daily,
    rule_hash: &str,
    window: Option<(&str, &str)>,
) -> Reconciliation {
    let in_window = |day: &str| window.is_none_or(|(from, to)| from <= day && day <= to);
    let mut r = Reconciliation::default();
    for name in ["unchanged", "changed", "added", "zeroed", "restamped"] {
        r.counts.insert(name, 0);
    }
    let keys: BTreeSet<&Key> = published.keys().chain(fresh.keys()).collect();
    for key in keys {
        if !in_window(&key.0) {
            let kept = published
                .get(key)
                .expect("only published keys outside the window");
            r.rows.insert(key.clone(), kept.clone());
            continue;
        }
        r.written.insert(key.0.clone());
        let totals = fresh.get(key).copied().unwrap_or(ZERO);
        let change = match published.get(key) {
            None => Some("added"),
            Some((old, _)) if *old != totals => Some(if fresh.contains_key(key) {
                "changed"
            } else {
                "zeroed"
            }),
            Some((_, hash)) if hash != rule_hash => Some("restamped"),
            Some(_) => None,
        };
        *r.counts.get_mut(change.unwrap_or("unchanged")).unwrap() += 1;
        if let Some(change) = change {
            r.changes.insert(
                key.clone(),
                Change {
                    totals,
                    rule_hash: rule_hash.to_string(),
                    change: change.to_string(),
                },
            );
        }
        r.rows.insert(key.clone(), (totals, rule_hash.to_string()));
    }
    r
}

/// Asserts that a run (its report and `out`) did what `expected` says.
pub fn assert_reconciled(out: &Path, report: &serde_json::Value, expected: &Reconciliation) {
    let commit = report["commit"].as_u64().expect("commit in the report");
    for (name, count) in &expected.counts {
        assert_eq!(
            report["reconcile"][*name].as_u64(),
            Some(*count),
            "reconcile.{name} of commit {commit}: {}",
            report["reconcile"]
        );
    }
    assert_maps_eq(&stamped_rows(out), &expected.rows, "rows after the run");
    assert_maps_eq(
        &changeset(out, commit),
        &expected.changes,
        "changeset of the run",
    );
    let entry = log_entry(out, commit);
    assert_eq!(entry["reconcile"], report["reconcile"]);
    let written: Vec<&str> = entry["written"]
        .as_array()
        .expect("written")
        .iter()
        .map(|d| d.as_str().expect("a day"))
        .collect();
    let want: Vec<&str> = expected.written.iter().map(String::as_str).collect();
    assert_eq!(written, want, "days written by commit {commit}");
}

/// `_tally/log/NNNNNNNN.json` of an output, parsed.
pub fn log_entry(out: &Path, commit: u64) -> serde_json::Value {
    let path = out.join(format!("_tally/log/{commit:08}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("log entry {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The bytes of commit `commit`'s quarantine file, as its log entry names it.
pub fn quarantine_file(out: &Path, commit: u64) -> Vec<u8> {
    let entry = log_entry(out, commit);
    let named = entry["quarantine"]
        .as_str()
        .unwrap_or_else(|| panic!("no quarantine in log entry {commit}"));
    assert_eq!(
        named,
        format!("quarantine/commit={commit}/quarantine.jsonl")
    );
    std::fs::read(out.join(named)).unwrap_or_else(|e| panic!("{named}: {e}"))
}

/// Files by relative path, with their bytes.
pub type Files = Vec<(String, Vec<u8>)>;

/// The commit log and changesets of an output as runs append to it: each run
/// adds exactly the next number, and nothing already there ever changes.
pub struct History {
    out: PathBuf,
    /// The log entry, changeset files and quarantine file of every commit so far.
    commits: Vec<(Vec<u8>, Files, Vec<u8>)>,
}

impl History {
    pub fn new(out: &Path) -> History {
        History {
            out: out.to_path_buf(),
            commits: Vec::new(),
        }
    }

    /// Checks the log after one more run that reported `report`.
    pub fn record(&mut self, report: &serde_json::Value) {
        let number = self.commits.len() as u64 + 1;
        assert_eq!(report["commit"].as_u64(), Some(number), "commit number");
        let numbers = |dir: &str, parse: &dyn Fn(&str) -> Option<u64>| -> Vec<u64> {
            let path = self.out.join(dir);
            if !path.is_dir() {
                return Vec::new();
            }
            let mut numbers: Vec<u64> = std::fs::read_dir(path)
                .expect("readable dir")
                .map(|e| {
                    let name = e.expect("entry").file_name().to_string_lossy().into_owned();
                    parse(&name).unwrap_or_else(|| panic!("{dir}/{name} is not a commit"))
                })
                .collect();
            numbers.sort_unstable();
            numbers
        };
        let log_name = |name: &str| {
            let stem = name.strip_suffix(".json")?;
            (stem.len() == 8).then(|| stem.parse().ok()).flatten()
        };
        let partition = |name: &str| name.strip_prefix("commit=")?.parse().ok();
        let want: Vec<u64> = (1..=number).collect();
        assert_eq!(
            numbers("_tally/log", &log_name),
            want,
            "_tally/log/ after commit {number}"
        );
        assert_eq!(
            numbers("quarantine", &partition),
            want,
            "quarantine/ after commit {number}"
        );
        let changes = numbers("changes", &partition);
        assert!(
            changes.iter().all(|n| want.contains(n)),
            "changes/ after commit {number}: {changes:?}"
        );
        for (i, (log, changes, quarantine)) in self.commits.iter().enumerate() {
            let n = i as u64 + 1;
            assert!(
                std::fs::read(self.out.join(format!("_tally/log/{n:08}.json"))).unwrap() == *log,
                "_tally/log/{n:08}.json changed after commit {number}"
            );
            assert!(
                changeset_files(&self.out, n) == *changes,
                "the changeset of commit {n} changed after commit {number}"
            );
            assert!(
                quarantine_file(&self.out, n) == *quarantine,
                "the quarantine of commit {n} changed after commit {number}"
            );
        }
        let entry = log_entry(&self.out, number);
        assert_eq!(entry["commit"].as_u64(), Some(number));
        assert_eq!(entry["run_id"], report["run_id"]);
        assert_eq!(entry["rule"]["hash"], report["rule"]["hash"]);
        assert_eq!(entry["input_fingerprint"], report["input_fingerprint"]);
        assert_eq!(entry["window"], report["window"]);
        for key in [
            "records",
            "unique",
            "payable",
            "amount_micros",
            "rows",
            "days",
        ] {
            assert_eq!(entry["counts"][key], report["counts"][key], "counts.{key}");
        }
        self.commits.push((
            std::fs::read(self.out.join(format!("_tally/log/{number:08}.json"))).unwrap(),
            changeset_files(&self.out, number),
            quarantine_file(&self.out, number),
        ));
    }
}

/// A registry in `dir` with both reference rules published.
pub(crate) fn registry_with_both_rules(dir: &Path) -> PathBuf {
    let registry = dir.join("registry");
    for name in ["creator-pay-v1", "creator-pay-v2"] {
        let rule = common::rule(name);
        common::tally_ok(&["rule", "publish", s(&rule), "--registry", s(&registry)]);
    }
    registry
}

/// Asserts `tally verify` finds every partition identical to a recomputation.
pub(crate) fn assert_verifies(out: &Path, registry: &Path) {
    let done = common::tally(&["verify", s(out), "--registry", s(registry)]);
    assert_eq!(
        done.status.code(),
        Some(0),
        "verify {}:\n{}{}",
        out.display(),
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&done.stderr)
    );
}

/// The model of the input files in `dir`.
fn model_of(dir: &Path) -> Expected {
    let files = support::files_in(dir);
    let named: Vec<(String, &Path)> = files
        .iter()
        .map(|(n, p)| (n.clone(), p.as_path()))
        .collect();
    Expected::of_files(&named)
}

/// The files of `dir` (one level), by name, with their bytes.
fn dir_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("readable dir")
        .map(|e| {
            let path = e.expect("entry").path();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&path).expect("readable file"),
            )
        })
        .collect()
}

#[test]
fn rerun_with_the_same_rule_changes_nothing_and_v2_changes_what_the_model_says() {
    let started = Instant::now();
    let dir = TempDir::new().expect("temp dir");
    let (input, _) = support::generate(dir.path(), "events", RECORDS, SEED, "jsonl", PER_FILE);
    let expected = model_of(&input);
    let (v1, v2) = (
        common::rule("creator-pay-v1"),
        common::rule("creator-pay-v2"),
    );
    let (h1, h2) = (blake3_file(&v1), blake3_file(&v2));
    let out = dir.path().join("out");
    let mut history = History::new(&out);

    // Commit 1, into an empty place: every row added.
    let report = support::run(&[&input], &v1, &out, &[]);
    history.record(&report);
    let daily_v1 = expected.daily(model::creator_pay_v1);
    assert_reconciled(
        &out,
        &report,
        &reconcile(&BTreeMap::new(), &daily_v1, &h1, None),
    );
    let first_files = output::data_files(&out);
    let first_rows = stamped_rows(&out);

    // Commit 2, the same rule: nothing changes, not a byte of data.
    let report = support::run(&[&input], &v1, &out, &[]);
    history.record(&report);
    assert_eq!(
        report["reconcile"],
        serde_json::json!({
            "unchanged": daily_v1.len(), "changed": 0, "added": 0, "zeroed": 0, "restamped": 0
        })
    );
    assert!(changeset(&out, 2).is_empty(), "a changeset with rows");
    let again = output::data_files(&out);
    assert_eq!(again.len(), first_files.len());
    for ((name, got), (want_name, want)) in again.iter().zip(&first_files) {
        assert_eq!(name, want_name);
        assert!(got == want, "{name} is not byte-identical after a rerun");
    }
    let log2 = log_entry(&out, 2);
    assert_eq!(log2["zeroed_days"], serde_json::json!([]));

    // Commit 3, creator-pay 2.0.0: exactly the keys whose figures the model
    // says differ are changed, with v2's figures; the others are restamped.
    let report = support::run(&[&input], &v2, &out, &[]);
    history.record(&report);
    let daily_v2 = expected.daily(model::creator_pay_v2);
    assert_eq!(
        daily_v1.keys().collect::<Vec<_>>(),
        daily_v2.keys().collect::<Vec<_>>(),
        "a rule decides figures, not keys"
    );
    let differ: BTreeMap<&Key, &Totals> = daily_v2
        .iter()
        .filter(|(k, t)| daily_v1[*k] != **t)
        .collect();
    assert!(
        !differ.is_empty() && differ.len() < daily_v2.len(),
        "v2 changes some rows and not others"
    );
    let changes = changeset(&out, 3);
    let changed: BTreeMap<&Key, &Totals> = changes
        .iter()
        .filter(|(_, c)| c.change == "changed")
        .map(|(k, c)| (k, &c.totals))
        .collect();
    assert_maps_eq(&changed, &differ, "changed rows against the model");
    for (key, c) in &changes {
        assert_eq!(c.rule_hash, h2, "{key:?}");
        if c.change != "changed" {
            assert_eq!(c.change, "restamped", "{key:?}");
            assert_eq!(
                c.totals, daily_v1[key],
                "{key:?}: restamped with other figures"
            );
            assert_eq!(c.totals, daily_v2[key], "{key:?}");
        }
    }
    assert_eq!(
        changes.len(),
        daily_v2.len(),
        "every row differs in figures or stamp"
    );
    assert_reconciled(&out, &report, &reconcile(&first_rows, &daily_v2, &h2, None));
    assert_eq!(report["reconcile"]["changed"], differ.len());
    assert_eq!(
        report["reconcile"]["restamped"],
        daily_v2.len() - differ.len()
    );

    // The partitions are those of a fresh v2 run into an empty directory:
    // rows, stamps, metadata, bytes.
    let fresh = dir.path().join("fresh-v2");
    support::run(&[&input], &v2, &fresh, &[]);
    assert_maps_eq(
        &stamped_rows(&out),
        &stamped_rows(&fresh),
        "rows against a fresh v2 run",
    );
    for part in output::partitions(&out) {
        assert_eq!(
            part.metadata.get("tally.rule_hash").map(String::as_str),
            Some(h2.as_str()),
            "day {}",
            part.day
        );
        assert_eq!(
            part.metadata.get("tally.rule_version").map(String::as_str),
            Some("2.0.0")
        );
    }
    let (got, want) = (
        output::partition_files(&out),
        output::partition_files(&fresh),
    );
    assert_eq!(got.len(), want.len());
    for ((name, got), (_, want)) in got.iter().zip(&want) {
        assert!(got == want, "{name} differs from a fresh v2 run's");
    }
    eprintln!("same rule, then v2: {:?}", started.elapsed());
}

/// Copies the input files of `from` into `to`, leaving out every record the
/// model reads as an event that `drop` selects (broken records are kept:
/// they are quarantined either way).
fn copy_without(from: &Path, to: &Path, drop: &dyn Fn(&Event) -> bool) -> u64 {
    std::fs::create_dir_all(to).expect("create dir");
    let mut dropped = 0;
    for (_, path) in support::files_in(from) {
        let bytes = std::fs::read(&path).expect("readable input");
        let reads = model::read_jsonl_bytes(&bytes);
        let gone: BTreeSet<u64> = reads
            .iter()
            .filter(|r| r.outcome.as_ref().is_ok_and(drop))
            .map(|r| r.position)
            .collect();
        dropped += gone.len() as u64;
        let mut kept = Vec::with_capacity(bytes.len());
        for (i, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
            if !gone.contains(&(i as u64 + 1)) {
                kept.extend_from_slice(line);
            }
        }
        std::fs::write(to.join(path.file_name().unwrap()), kept).expect("write input");
    }
    dropped
}

#[test]
fn removed_events_leave_their_keys_zeroed_not_deleted() {
    let started = Instant::now();
    let dir = TempDir::new().expect("temp dir");
    let (input, _) = support::generate(dir.path(), "events", RECORDS, SEED + 1, "jsonl", PER_FILE);
    let (v1, v2) = (
        common::rule("creator-pay-v1"),
        common::rule("creator-pay-v2"),
    );
    let (h1, h2) = (blake3_file(&v1), blake3_file(&v2));
    let out = dir.path().join("out");
    let mut history = History::new(&out);
    let report = support::run(&[&input], &v1, &out, &[]);
    history.record(&report);
    let published = stamped_rows(&out);

    // Drop every event of the creator with the most rows on one day, and
    // every event of another day.
    let days: BTreeSet<&String> = published.keys().map(|k| &k.0).collect();
    assert!(days.len() > 20, "a month of days");
    let creator_day = days.iter().nth(days.len() / 2).unwrap().to_string();
    let empty_day = days.iter().nth(3).unwrap().to_string();
    let mut per_creator: BTreeMap<&str, usize> = BTreeMap::new();
    for (day, creator, _) in published.keys() {
        if *day == creator_day && !creator.starts_with("test-") {
            *per_creator.entry(creator).or_default() += 1;
        }
    }
    let (creator, _) = per_creator
        .iter()
        .max_by_key(|(c, n)| (**n, std::cmp::Reverse(**c)))
        .expect("creators");
    let creator = creator.to_string();
    let gone_keys: Vec<Key> = published
        .keys()
        .filter(|(d, c, _)| (*d == creator_day && *c == creator) || *d == empty_day)
        .cloned()
        .collect();
    let creator_rows = gone_keys.iter().filter(|k| k.0 == creator_day).count();
    assert!(
        creator_rows >= 2,
        "{creator} has {creator_rows} rows on {creator_day}"
    );

    let fewer = dir.path().join("fewer");
    let dropped = copy_without(&input, &fewer, &|e| {
        (e.day() == creator_day && e.creator_id == creator) || e.day() == empty_day
    });
    assert!(dropped > 0);
    let expected = model_of(&fewer);
    let fresh = expected.daily(model::creator_pay_v1);
    for key in &gone_keys {
        assert!(!fresh.contains_key(key), "{key:?} still has events");
    }

    // Commit 2: the same rule over fewer events.
    let report = support::run(&[&fewer], &v1, &out, &[]);
    history.record(&report);
    let want = reconcile(&published, &fresh, &h1, None);
    assert_reconciled(&out, &report, &want);
    let rows = stamped_rows(&out);
    let changes = changeset(&out, 2);
    for key in &gone_keys {
        assert_eq!(
            rows.get(key),
            Some(&(ZERO, h1.clone())),
            "{key:?}: not kept as zeros"
        );
        let change = changes
            .get(key)
            .unwrap_or_else(|| panic!("{key:?} not in the changeset"));
        assert_eq!(change.change, "zeroed", "{key:?}");
        assert_eq!(change.totals, ZERO, "{key:?}");
    }
    assert!(report["reconcile"]["zeroed"].as_u64().unwrap() >= gone_keys.len() as u64);

    // The day without events keeps its partition, every row zero.
    let parts = output::partitions(&out);
    let empty = parts
        .iter()
        .find(|p| p.day == empty_day)
        .unwrap_or_else(|| panic!("the partition of {empty_day} was deleted"));
    assert_eq!(
        empty.rows.len(),
        published.keys().filter(|k| k.0 == empty_day).count()
    );
    assert!(empty.rows.iter().all(|r| (r.2, r.3, r.4) == (0, 0, 0)));
    assert_eq!(
        empty.metadata.get("tally.rule_hash").map(String::as_str),
        Some(h1.as_str())
    );
    let entry = log_entry(&out, 2);
    assert_eq!(entry["zeroed_days"], serde_json::json!([empty_day]));
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join(format!("_tally/partitions/day={empty_day}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["events"], 0);
    assert_eq!(manifest["amount_micros"], 0);
    assert_eq!(manifest["commit"], 2);
    // Zeroed rows are what a recomputation from the recorded inputs gives.
    let registry = registry_with_both_rules(dir.path());
    assert_verifies(&out, &registry);

    // Commit 3, v2 over the same fewer events: the zeros stay zeros, stamped
    // with v2's hash (restamped), never deleted.
    let report = support::run(&[&fewer], &v2, &out, &[]);
    history.record(&report);
    let want = reconcile(&rows, &expected.daily(model::creator_pay_v2), &h2, None);
    assert_reconciled(&out, &report, &want);
    let rows = stamped_rows(&out);
    let changes = changeset(&out, 3);
    for key in &gone_keys {
        assert_eq!(rows.get(key), Some(&(ZERO, h2.clone())), "{key:?}");
        assert_eq!(changes[key].change, "restamped", "{key:?}");
    }
    assert_eq!(report["reconcile"]["zeroed"], 0);
    assert_verifies(&out, &registry);

    // Commit 4, v2 over all the events again: the keys come back as changed.
    let report = support::run(&[&input], &v2, &out, &[]);
    history.record(&report);
    let back = model_of(&input).daily(model::creator_pay_v2);
    assert_reconciled(&out, &report, &reconcile(&rows, &back, &h2, None));
    let changes = changeset(&out, 4);
    for key in &gone_keys {
        assert_eq!(changes[key].change, "changed", "{key:?}");
        assert_eq!(changes[key].totals, back[key], "{key:?}");
    }
    eprintln!("zeroed keys: {:?}", started.elapsed());
}

#[test]
fn a_days_window_rewrites_only_its_partitions() {
    let started = Instant::now();
    let dir = TempDir::new().expect("temp dir");
    let (input, _) = support::generate(dir.path(), "events", RECORDS, SEED + 2, "jsonl", PER_FILE);
    let (v1, v2) = (
        common::rule("creator-pay-v1"),
        common::rule("creator-pay-v2"),
    );
    let (h1, h2) = (blake3_file(&v1), blake3_file(&v2));
    let out = dir.path().join("out");
    let mut history = History::new(&out);
    let report = support::run(&[&input], &v1, &out, &[]);
    history.record(&report);
    let published = stamped_rows(&out);
    let days: Vec<String> = output::partitions(&out)
        .into_iter()
        .map(|p| p.day)
        .collect();
    let day = days[days.len() / 3].clone();
    let before: BTreeMap<String, BTreeMap<String, Vec<u8>>> = days
        .iter()
        .map(|d| (d.clone(), dir_files(&out.join(format!("daily/day={d}")))))
        .collect();
    let manifest_of =
        |d: &str| std::fs::read(out.join(format!("_tally/partitions/day={d}.json"))).unwrap();
    let manifests_before: BTreeMap<String, Vec<u8>> =
        days.iter().map(|d| (d.clone(), manifest_of(d))).collect();

    // Commit 2: v2 over one day only.
    let report = support::run(&[&input], &v2, &out, &["--days", &format!("{day}..{day}")]);
    history.record(&report);
    assert_eq!(report["window"], serde_json::json!([day, day]));
    let expected = model_of(&input);
    let fresh: Daily = expected
        .daily(model::creator_pay_v2)
        .into_iter()
        .filter(|(k, _)| k.0 == day)
        .collect();
    let want = reconcile(&published, &fresh, &h2, Some((&day, &day)));
    assert_eq!(want.written, BTreeSet::from([day.clone()]));
    assert_reconciled(&out, &report, &want);
    assert!(changeset(&out, 2).keys().all(|k| k.0 == day));
    assert_eq!(report["counts"]["days"], 1);

    // Every other partition, data and manifest, is exactly as it was.
    for d in &days {
        let now = dir_files(&out.join(format!("daily/day={d}")));
        if *d == day {
            assert!(now["part-0.parquet"] != before[d]["part-0.parquet"]);
            continue;
        }
        assert_eq!(
            now.keys().collect::<Vec<_>>(),
            before[d].keys().collect::<Vec<_>>(),
            "files of day={d}"
        );
        for (name, bytes) in &now {
            assert!(*bytes == before[d][name], "day={d}/{name} was rewritten");
        }
        assert!(
            manifest_of(d) == manifests_before[d],
            "the manifest of day={d} was rewritten"
        );
    }
    for part in output::partitions(&out) {
        let want = if part.day == day { &h2 } else { &h1 };
        assert_eq!(
            part.metadata.get("tally.rule_hash"),
            Some(want),
            "{}",
            part.day
        );
    }

    // The recomputed day is what a full v2 run writes for it, to the byte.
    let full = dir.path().join("full-v2");
    support::run(&[&input], &v2, &full, &[]);
    let part = |o: &Path| std::fs::read(o.join(format!("daily/day={day}/part-0.parquet"))).unwrap();
    assert!(
        part(&out) == part(&full),
        "day={day} differs from a full v2 run's"
    );

    // A window over the rest of the month, again v2: the first day (still v1)
    // is restamped or changed; the window day is unchanged.
    let last = days.last().unwrap().clone();
    let report = support::run(
        &[&input],
        &v2,
        &out,
        &["--days", &format!("{}..{last}", days[0])],
    );
    history.record(&report);
    let now = stamped_rows(&out);
    assert_maps_eq(
        &now,
        &stamped_rows(&full),
        "a full window against a full run",
    );
    let unchanged = published.keys().filter(|k| k.0 == day).count() as u64;
    assert_eq!(report["reconcile"]["unchanged"].as_u64(), Some(unchanged));
    assert_verifies(&out, &registry_with_both_rules(dir.path()));
    eprintln!("days window: {:?}", started.elapsed());
}
