//! `tally run --stale-only`, `--chunk-days` and `--dry-run`: a run that
//! writes only the stale days, or commits its days in windows, or only says
//! what it would write. The truth is always a full recompute of a copy of
//! the output: the partitions (daily and monthly) and the survivor index a
//! narrowed or chunked run leaves must be those bytes.

use crate::common::{self, s};
use crate::model::Event;
use crate::status::{self, Base, base, noon, partitions, write_events};
use crate::support::count;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `tally run` with `inputs`, `rule`, `out`, `--quiet --json` and `extra`:
/// the exit code and the printed JSON report.
pub(crate) fn backfill(inputs: &[&Path], rule: &Path, out: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec![
        "run",
        "--rule",
        s(rule),
        "--out",
        s(out),
        "--quiet",
        "--json",
    ];
    for input in inputs {
        args.extend(["--input", s(input)]);
    }
    args.extend_from_slice(extra);
    let output = common::tally(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "tally {args:?}: {stderr}");
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("tally {args:?} printed no JSON ({e}): {stderr}"));
    assert_eq!(report["schema_version"], 1);
    (output.status.code().unwrap_or(-1), report)
}

/// `tally run` with `inputs`, `rule`, `out` and `extra`, which must succeed:
/// what it printed on stdout.
fn run_text(inputs: &[&Path], rule: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec!["run", "--rule", s(rule), "--out", s(out)];
    for input in inputs {
        args.extend(["--input", s(input)]);
    }
    args.extend_from_slice(extra);
    common::tally_ok(&args)
}

/// The survivor index's files, by name.
pub(crate) fn index(out: &Path) -> BTreeMap<String, Vec<u8>> {
    common::snapshot(out)
        .into_iter()
        .filter(|(name, _)| name.starts_with("_tally/survivors/"))
        .collect()
}

/// The commits of an output's log, oldest first.
pub(crate) fn log(out: &Path) -> Vec<Value> {
    let text = common::tally_ok(&["log", s(out), "--json"]);
    let log: Value = serde_json::from_str(&text).unwrap();
    let mut commits = log["commits"].as_array().unwrap().clone();
    commits.sort_by_key(|c| c["commit"].as_u64());
    commits
}

/// The commit that last wrote each day's partition.
fn day_commits(out: &Path) -> BTreeMap<String, u64> {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("_tally/manifest.json")).unwrap()).unwrap();
    manifest["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["day"].as_str().unwrap().to_string(),
                p["commit"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// A full recompute over `inputs` with `rule`, into a copy of the base
/// output named `name`.
pub(crate) fn full(base: &Base, name: &str, inputs: &[&Path], rule: &Path) -> PathBuf {
    let copy = base.path(name);
    common::copy_tree(&base.out, &copy, &|_| false);
    crate::support::run(inputs, rule, &copy, &[]);
    copy
}

/// The stale days of a status report, as `YYYY-MM-DD`.
pub(crate) fn stale_days(report: &Value) -> BTreeSet<String> {
    report["days"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["stale"] == true)
        .map(|d| d["day"].as_str().unwrap().to_string())
        .collect()
}

/// A late file: new events for a published day and for an unpublished one,
/// and earlier re-ingests that move three events of 2026-05-14 to
/// 2026-05-20.
fn late_file(base: &Base) -> PathBuf {
    let template = base.on_day("2026-05-07", 1)[0].0.clone();
    let mut late: Vec<Event> = (0..25)
        .map(|i| Event {
            event_id: format!("late-{i:03}"),
            occurred_ms: noon("2026-05-07") + i,
            ingested_ms: noon("2026-05-08"),
            ..template.clone()
        })
        .collect();
    late.extend((0..4).map(|i| Event {
        event_id: format!("june-{i}"),
        occurred_ms: noon("2026-06-02") + i,
        ingested_ms: noon("2026-06-02") + 60_000,
        ..template.clone()
    }));
    for (e, _) in base.on_day("2026-05-14", 3) {
        late.push(Event {
            ingested_ms: e.ingested_ms - 60_000,
            occurred_ms: noon("2026-05-20"),
            ..e
        });
    }
    let path = base.path("late/late.jsonl");
    write_events(&path, &late);
    path
}

/// The days each commit of a run report wrote.
fn written(report: &Value) -> Vec<Vec<String>> {
    report["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let first = c["commit"].as_u64().unwrap();
            assert!(first > 0);
            c["window"]
                .as_array()
                .map(|w| {
                    vec![
                        w[0].as_str().unwrap().to_string(),
                        w[1].as_str().unwrap().to_string(),
                    ]
                })
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn stale_only_writes_exactly_the_stale_days_and_matches_a_full_recompute() {
    let base = base();
    let late = late_file(&base);
    let inputs = [base.input.as_path(), late.parent().unwrap()];
    let (_, before) = status::status(&base.out, &inputs, &base.rule, &[]);
    let stale = stale_days(&before);
    assert_eq!(
        stale,
        ["2026-05-07", "2026-05-14", "2026-05-20", "2026-06-02"]
            .map(String::from)
            .into(),
        "the late file's days"
    );
    let commits_before = day_commits(&base.out);
    let truth = full(&base, "full", &inputs, &base.rule);

    let (code, report) = backfill(&inputs, &base.rule, &base.out, &["--stale-only"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["status"], "succeeded");
    assert_eq!(report["plan"]["scope"], "stale");
    // Each stale day is its own commit: fresh published days lie between.
    assert_eq!(
        written(&report),
        stale
            .iter()
            .map(|d| vec![d.clone(), d.clone()])
            .collect::<Vec<_>>()
    );
    let planned: BTreeSet<String> = report["plan"]["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["day"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(planned, stale);
    for c in report["commits"].as_array().unwrap() {
        assert_eq!(c["counts"]["days"], 1, "one day per commit");
    }

    assert_eq!(
        partitions(&base.out),
        partitions(&truth),
        "daily and monthly bytes"
    );
    // Incremental: the late file and the file of each displaced survivor
    // are read; the index gains a layer.
    assert_eq!(report["plan"]["incremental"], true);
    assert_eq!(report["plan"]["displaced"], 3);
    assert!(index(&base.out).contains_key("_tally/survivors/layer-1.arrow"));
    // Fresh days kept their partitions and the commit that wrote them.
    let after = day_commits(&base.out);
    for (day, commit) in &commits_before {
        if !stale.contains(day) {
            assert_eq!(after.get(day), Some(commit), "{day} was rewritten");
        }
    }
    let (code, fresh) = status::status(&base.out, &inputs, &base.rule, &[]);
    assert_eq!(code, 0, "nothing stale after: {fresh:#}");

    // An unchanged rerun finds nothing stale and writes nothing.
    let snapshot = common::snapshot(&base.out);
    let (code, again) = backfill(&inputs, &base.rule, &base.out, &["--stale-only"]);
    assert_eq!(code, 0);
    assert_eq!(again["commits"], serde_json::json!([]));
    assert_eq!(again["plan"]["days"], serde_json::json!([]));
    assert_eq!(common::snapshot(&base.out), snapshot, "nothing was written");
    let text = run_text(&inputs, &base.rule, &base.out, &["--stale-only", "--quiet"]);
    assert!(
        text.contains("nothing to write: every day is fresh"),
        "{text}"
    );
}

#[test]
fn a_chunked_backfill_commits_windows_and_resumes_after_it_is_killed() {
    let base = base();
    let v2 = common::rule("creator-pay-v2");
    let inputs = [base.input.as_path()];
    let truth = full(&base, "full", &inputs, &v2);
    let days = day_commits(&base.out).len();
    assert!(days > 20, "{days} days");

    // Killed as soon as its first commit is made.
    let mut child = Command::new(common::tally_bin())
        .args([
            "run",
            "--stale-only",
            "--chunk-days",
            "1",
            "--quiet",
            "--rule",
            s(&v2),
            "--out",
            s(&base.out),
            "--input",
            s(&base.input),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        let first = line.starts_with("committed ");
        seen.push(line);
        if first {
            child.kill().unwrap();
            break;
        }
    }
    child.wait().unwrap();
    let made = log(&base.out).len() - 1;
    assert!(
        made >= 1 && made < days,
        "killed after {made} of {days} commits: {seen:#?}"
    );

    // The days committed are fresh; the others still stale, for the rule.
    let (code, mid) = status::status(&base.out, &inputs, &v2, &[]);
    assert_eq!(code, 3);
    assert_eq!(stale_days(&mid).len(), days - made, "{mid:#}");
    for day in stale_days(&mid) {
        assert_eq!(status::kinds(&mid, &day), ["rule"], "{day}");
    }

    // Resumed in windows of at most 5 days: only the rest is written.
    let (code, report) = backfill(
        &inputs,
        &v2,
        &base.out,
        &["--stale-only", "--chunk-days", "5"],
    );
    assert_eq!(code, 0, "{report:#}");
    let windows = written(&report);
    let total: u64 = report["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["counts"]["days"].as_u64().unwrap())
        .sum();
    assert_eq!(total as usize, days - made);
    for (c, w) in report["commits"].as_array().unwrap().iter().zip(&windows) {
        assert!(c["counts"]["days"].as_u64().unwrap() <= 5, "{w:?}");
    }
    assert_eq!(partitions(&base.out), partitions(&truth));
    assert_eq!(index(&base.out), index(&truth));
    let (code, _) = status::status(&base.out, &inputs, &v2, &[]);
    assert_eq!(code, 0);
    // Every commit of the log names its window and its rule.
    for entry in log(&base.out).iter().skip(1) {
        assert_eq!(entry["rule"]["hash"], truth_rule_hash(&truth), "{entry:#}");
        assert!(entry["window"].is_array(), "{entry:#}");
    }
}

fn truth_rule_hash(out: &Path) -> Value {
    common::report(out)["rule"]["hash"].clone()
}

#[test]
fn chunk_days_on_a_new_output_gives_the_bytes_of_one_run() {
    let base = base();
    let out = base.path("chunked");
    let (code, report) = backfill(&[&base.input], &base.rule, &out, &["--chunk-days", "7"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["plan"]["scope"], "all");
    let commits = report["commits"].as_array().unwrap();
    let days = day_commits(&base.out).len();
    assert_eq!(commits.len(), days.div_ceil(7), "{report:#}");
    for c in commits {
        assert!(c["counts"]["days"].as_u64().unwrap() <= 7);
    }
    assert_eq!(partitions(&out), partitions(&base.out));
    assert_eq!(index(&out), index(&base.out));

    // --stale-only on an output that does not exist yet writes every day.
    let fresh = base.path("fresh");
    let (code, report) = backfill(&[&base.input], &base.rule, &fresh, &["--stale-only"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["plan"]["scope"], "all-unknown");
    assert_eq!(partitions(&fresh), partitions(&base.out));
}

#[test]
fn dry_run_says_what_a_run_would_write_and_writes_nothing() {
    let base = base();
    let late = late_file(&base);
    let inputs = [base.input.as_path(), late.parent().unwrap()];
    let (_, status) = status::status(&base.out, &inputs, &base.rule, &[]);
    let snapshot = common::snapshot(&base.out);

    let (code, report) = backfill(
        &inputs,
        &base.rule,
        &base.out,
        &["--dry-run", "--stale-only", "--chunk-days", "2"],
    );
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["commits"], serde_json::json!([]));
    let plan = &report["plan"];
    let days = plan["days"].as_array().unwrap();
    assert_eq!(
        days.iter()
            .map(|d| d["day"].as_str().unwrap().to_string())
            .collect::<BTreeSet<_>>(),
        stale_days(&status)
    );
    for d in days {
        let day = d["day"].as_str().unwrap();
        let want = status["days"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["day"] == day)
            .unwrap();
        assert_eq!(d["causes"], want["causes"], "{day}");
        assert_eq!(d["events"], want["events"], "{day}");
        assert!(d["events"].as_u64().unwrap() > 0, "{day}");
    }
    assert_eq!(
        plan["commits"],
        serde_json::json!([
            { "from": "2026-05-07", "to": "2026-05-07", "days": 1 },
            { "from": "2026-05-14", "to": "2026-05-14", "days": 1 },
            { "from": "2026-05-20", "to": "2026-05-20", "days": 1 },
            { "from": "2026-06-02", "to": "2026-06-02", "days": 1 },
        ])
    );
    // The late file, and the files of the three survivors it displaces.
    let displaced: BTreeSet<PathBuf> = base
        .on_day("2026-05-14", 3)
        .into_iter()
        .map(|(_, file)| file)
        .collect();
    assert_eq!(plan["input_files"], 1 + displaced.len());
    assert_eq!(
        common::snapshot(&base.out),
        snapshot,
        "a dry run writes nothing"
    );

    // As text, on stdout: the days, their causes and the commits.
    let text = run_text(
        &inputs,
        &base.rule,
        &base.out,
        &["--dry-run", "--stale-only"],
    );
    common::assert_mentions(
        &text,
        &[
            "dry run",
            "4 days to write",
            "2026-05-20",
            "new events",
            "4 commits",
            "reads the new input files and the files of the 3 recorded survivors they displace",
        ],
    );
    assert_eq!(
        common::snapshot(&base.out),
        snapshot,
        "a dry run writes nothing"
    );

    // A plain run's dry run writes every day of its window.
    let (_, all) = backfill(
        &inputs,
        &base.rule,
        &base.out,
        &["--dry-run", "--days", "2026-05-01..2026-05-10"],
    );
    assert_eq!(all["plan"]["scope"], "all");
    assert_eq!(all["plan"]["days"].as_array().unwrap().len(), 10);
    assert_eq!(all["plan"]["commits"].as_array().unwrap().len(), 1);
}

/// Rows keyed by day, creator and template, with their totals and hash.
type Rows = BTreeMap<crate::reconcile::Key, (crate::model::Totals, String)>;

/// Every `step`th creator with rows on `day`, `n` of them.
fn creators_of_day(rows: &Rows, day: &str, step: usize, n: usize) -> Vec<String> {
    let mut on_day: Vec<String> = rows
        .keys()
        .filter(|(d, _, _)| d == day)
        .map(|(_, c, _)| c.clone())
        .collect();
    on_day.dedup();
    let creators: Vec<String> = on_day.into_iter().step_by(step).take(n).collect();
    assert_eq!(creators.len(), n, "creators of {day}");
    creators
}

/// The rows of a scoped commit of `new` over `before`: `new`'s rows of the
/// `scoped` creators, `before`'s of every other.
fn scoped_rows(before: &Rows, new: &Rows, scoped: impl Fn(&str) -> bool) -> Rows {
    before
        .iter()
        .filter(|((_, c, _), _)| !scoped(c))
        .chain(new.iter().filter(|((_, c, _), _)| scoped(c)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn a_creators_scoped_backfill_touches_only_the_listed_creators_rows() {
    let base = base();
    let v2 = common::rule("creator-pay-v2");
    let before = crate::reconcile::stamped_rows(&base.out);
    let before_files = partitions(&base.out);
    let truth = full(&base, "full", &[&base.input], &v2);
    let v2_rows = crate::reconcile::stamped_rows(&truth);
    let v1_hash = truth_rule_hash(&base.out);
    let v2_hash = truth_rule_hash(&truth);

    // Three creators of one day, listed with blanks, spaces and a repeat.
    let creators = creators_of_day(&before, "2026-05-09", 50, 3);
    let list = base.path("creators.txt");
    std::fs::write(
        &list,
        format!(
            "{}\n\n  {} \n{}\n{}\n",
            creators[0], creators[1], creators[2], creators[0]
        ),
    )
    .unwrap();
    let scoped = |c: &str| creators.iter().any(|x| x == c);

    let report = crate::support::run(&[&base.input], &v2, &base.out, &["--creators", s(&list)]);
    assert_eq!(report["scope"]["creators"], 3, "{report:#}");
    assert_eq!(report["scope"]["list"], "_tally/scopes/commit=2.txt");
    // Only the listed creators' events were classified, the others set aside.
    let listed = |rows: &Rows, field: fn(&crate::model::Totals) -> i64| -> i64 {
        rows.iter()
            .filter(|((_, c, _), _)| scoped(c))
            .map(|(_, (t, _))| field(t))
            .sum()
    };
    let classified = count(&report, "classified");
    assert_eq!(classified as i64, listed(&v2_rows, |t| t.events));
    assert_eq!(
        count(&report, "payable") as i64,
        listed(&v2_rows, |t| t.payable_events)
    );
    assert_eq!(
        report["counts"]["amount_micros"],
        listed(&v2_rows, |t| t.amount_micros)
    );
    assert!(classified > 0);
    assert_eq!(
        count(&report, "outside_scope"),
        count(&report, "unique") - classified
    );
    let mut sorted = creators.clone();
    sorted.sort();
    assert_eq!(
        std::fs::read_to_string(base.out.join("_tally/scopes/commit=2.txt")).unwrap(),
        sorted.iter().map(|c| format!("{c}\n")).collect::<String>()
    );

    // The listed creators' rows are v2's, stamped v2; every other row is as
    // it was, stamped v1.
    let after = crate::reconcile::stamped_rows(&base.out);
    let want = scoped_rows(&before, &v2_rows, scoped);
    crate::support::assert_maps_eq(&after, &want, "rows after the scoped backfill");
    assert!(
        after
            .iter()
            .any(|((_, c, _), (_, h))| scoped(c) && *h == v2_hash)
    );

    // Days without a listed creator keep their bytes and their commit.
    let touched: BTreeSet<String> = after
        .keys()
        .filter(|(_, c, _)| scoped(c))
        .map(|(d, _, _)| d.clone())
        .collect();
    assert!(
        !touched.is_empty() && touched.len() < before_files.len() / 2,
        "{touched:?}"
    );
    let after_files = partitions(&base.out);
    let commits = day_commits(&base.out);
    for (name, bytes) in &before_files {
        let Some(day) = name.strip_prefix("daily/day=") else {
            continue;
        };
        if touched.contains(day) {
            assert_eq!(commits[day], 2, "{day}");
        } else {
            assert_eq!(after_files.get(name), Some(bytes), "{day} was rewritten");
            assert_eq!(commits[day], 1, "{day}");
        }
    }

    // Lineage and status show the partitions whose rows mix rule hashes.
    let lineage: Value =
        serde_json::from_str(&common::tally_ok(&["lineage", s(&base.out), "--json"])).unwrap();
    let mut hashes = vec![
        v1_hash.as_str().unwrap().to_string(),
        v2_hash.as_str().unwrap().to_string(),
    ];
    hashes.sort();
    for p in lineage["partitions"].as_array().unwrap() {
        let day = p["day"].as_str().unwrap();
        if touched.contains(day) {
            assert_eq!(p["rule_hashes"], serde_json::json!(hashes), "{day}");
            assert_eq!(p["scope"]["creators"], 3, "{day}");
            assert!(p["carried_rows"].as_u64().unwrap() > 0, "{day}");
        } else {
            assert!(p.get("rule_hashes").is_none(), "{day}");
        }
    }
    let text = common::tally_ok(&["lineage", s(&base.out), "--day", touched.first().unwrap()]);
    common::assert_mentions(
        &text,
        &["scope", "rows stamped with 2 rules", "carried over"],
    );
    let (_, v1_status) = status::status(&base.out, &[&base.input], &base.rule, &[]);
    assert_eq!(
        stale_days(&v1_status),
        touched,
        "stale for v1: the mixed days"
    );
    for day in &touched {
        assert_eq!(status::kinds(&v1_status, day), ["rule"], "{day}");
    }
    let (_, v2_status) = status::status(&base.out, &[&base.input], &v2, &[]);
    assert_eq!(
        stale_days(&v2_status).len(),
        before_files
            .keys()
            .filter(|n| n.starts_with("daily/"))
            .count()
    );
    let log = log(&base.out);
    assert_eq!(log[1]["scope"]["creators"], 3);
    assert!(log[0].get("scope").is_none());

    // The monthly table follows its days; verify checks the recomputed rows.
    assert_eq!(
        crate::output::monthly(&base.out),
        crate::output::monthly_from_daily(&crate::output::partitions(&base.out))
    );
    let registry = crate::reconcile::registry_with_both_rules(base.dir.path());
    crate::reconcile::assert_verifies(&base.out, &registry);

    // An empty list is refused before anything is read.
    std::fs::write(&list, "\n \n").unwrap();
    let err = common::tally_err(&[
        "run",
        "--creators",
        s(&list),
        "--rule",
        s(&v2),
        "--out",
        s(&base.out),
        "--input",
        s(&base.input),
    ]);
    common::assert_mentions(&err, &["creators file", "lists no creator"]);
}

#[test]
fn a_scoped_backfill_plans_dry_runs_commits_in_chunks_and_writes_only_stale_days() {
    let base = base();
    let v2 = common::rule("creator-pay-v2");
    let inputs = [base.input.as_path()];
    let before = crate::reconcile::stamped_rows(&base.out);
    let v2_rows = crate::reconcile::stamped_rows(&full(&base, "full", &inputs, &v2));
    let days_before = day_commits(&base.out);

    // Two creators of one day; their rows lie on some days, not all.
    let creators = creators_of_day(&before, "2026-05-12", 40, 2);
    let list = base.path("creators.txt");
    std::fs::write(&list, format!("{}\n{}\n", creators[0], creators[1])).unwrap();
    let scoped = |c: &str| creators.iter().any(|x| x == c);
    let touched: BTreeSet<String> = before
        .keys()
        .chain(v2_rows.keys())
        .filter(|(_, c, _)| scoped(c))
        .map(|(d, _, _)| d.clone())
        .collect();
    assert!(
        touched.len() >= 3 && touched.len() < days_before.len(),
        "{touched:?}"
    );
    let creator_rows = |day: &str| {
        before
            .keys()
            .filter(|(d, c, _)| d == day && scoped(c))
            .count() as u64
    };

    // A dry run says whose rows, and how many of them each day holds.
    let snapshot = common::snapshot(&base.out);
    let (code, dry) = backfill(
        &inputs,
        &v2,
        &base.out,
        &["--dry-run", "--stale-only", "--creators", s(&list)],
    );
    assert_eq!(code, 0, "{dry:#}");
    let plan = &dry["plan"];
    assert_eq!(plan["scope"], "stale");
    assert_eq!(plan["creators"], 2);
    assert_eq!(plan["incremental"], false);
    common::assert_mentions(
        plan["reads"].as_str().unwrap(),
        &["every input file is read", "scoped to listed creators"],
    );
    common::assert_mentions(plan["reason"].as_str().unwrap(), &["2 listed creators"]);
    let planned = plan["days"].as_array().unwrap();
    assert_eq!(
        planned.len(),
        days_before.len(),
        "the rule changed: every day"
    );
    for d in planned {
        let day = d["day"].as_str().unwrap();
        assert_eq!(d["creator_rows"], creator_rows(day), "{day}");
    }
    assert_eq!(
        plan["commits"],
        serde_json::json!([]),
        "the windows are known once the inputs are read"
    );
    let text = run_text(
        &inputs,
        &v2,
        &base.out,
        &["--dry-run", "--chunk-days", "2", "--creators", s(&list)],
    );
    common::assert_mentions(
        &text,
        &[
            "dry run",
            "the days of the window where the 2 listed creators have rows",
            "only their rows are recomputed",
            "published rows of the listed creators",
            "each written if the listed creators have rows on it",
        ],
    );
    assert_eq!(
        common::snapshot(&base.out),
        snapshot,
        "a dry run writes nothing"
    );

    // In windows of two of the days where they have rows, each a scoped
    // commit; every other day keeps its bytes and its commit.
    let (code, report) = backfill(
        &inputs,
        &v2,
        &base.out,
        &["--stale-only", "--chunk-days", "2", "--creators", s(&list)],
    );
    assert_eq!(code, 0, "{report:#}");
    // A window never spans a published day left as it is: each run of
    // consecutive touched days is split in twos.
    let mut runs: Vec<usize> = vec![0];
    for day in days_before.keys() {
        match touched.contains(day) {
            true => *runs.last_mut().unwrap() += 1,
            false => runs.push(0),
        }
    }
    let commits = report["commits"].as_array().unwrap();
    assert_eq!(
        commits.len(),
        runs.iter().map(|n| n.div_ceil(2)).sum::<usize>(),
        "{report:#}"
    );
    let mut written_days = BTreeSet::new();
    for c in commits {
        assert_eq!(c["scope"]["creators"], 2);
        let n = c["counts"]["days"].as_u64().unwrap();
        assert!((1..=2).contains(&n), "{c:#}");
    }
    for (day, commit) in day_commits(&base.out) {
        if commit > 1 {
            written_days.insert(day);
        } else {
            assert!(!touched.contains(&day), "{day} was not written");
        }
    }
    assert_eq!(written_days, touched);
    let after = crate::reconcile::stamped_rows(&base.out);
    let want = scoped_rows(&before, &v2_rows, scoped);
    crate::support::assert_maps_eq(&after, &want, "rows after the scoped backfill");
    assert_eq!(
        crate::output::monthly(&base.out),
        crate::output::monthly_from_daily(&crate::output::partitions(&base.out))
    );

    // Back to v1, stale days only: the mixed days are stale for v1, and a
    // scoped run of v1 writes only those and gives back v1's rows, after
    // which nothing is stale.
    let (_, v1_status) = status::status(&base.out, &inputs, &base.rule, &[]);
    assert_eq!(stale_days(&v1_status), touched);
    let (code, back) = backfill(
        &inputs,
        &base.rule,
        &base.out,
        &["--stale-only", "--creators", s(&list)],
    );
    assert_eq!(code, 0, "{back:#}");
    assert_eq!(crate::reconcile::stamped_rows(&base.out), before);
    let (code, fresh) = status::status(&base.out, &inputs, &base.rule, &[]);
    assert_eq!(code, 0, "nothing stale after: {fresh:#}");
    let text = run_text(
        &inputs,
        &base.rule,
        &base.out,
        &["--stale-only", "--quiet", "--creators", s(&list)],
    );
    assert!(
        text.contains("nothing to write: every day is fresh"),
        "{text}"
    );
}
