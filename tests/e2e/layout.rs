//! The output layout: one directory per table, read by the tools people use
//! (DuckDB, Polars, pyarrow from Python) with every pattern they would try on a
//! table directory, each giving exactly that table; per-commit quarantine; an
//! output in the earlier layout refused; a stale changeset never overwriting a
//! commit's own.

use crate::common::{self, s};
use crate::output;
use crate::reconcile::{changeset, quarantine_file};
use crate::support;
use std::path::Path;
use std::process::Command;
use tempfile::TempDir;

const SEED: u64 = 4242;

/// The figures a read of a table must give.
#[derive(Debug, PartialEq)]
struct Expected {
    rows: u64,
    sums: [i64; 3],
}

fn daily_expected(out: &Path) -> Expected {
    let mut sums = [0; 3];
    let mut rows = 0;
    for part in output::partitions(out) {
        for r in &part.rows {
            rows += 1;
            sums[0] += r.2;
            sums[1] += r.3;
            sums[2] += r.4;
        }
    }
    Expected { rows, sums }
}

fn changes_expected(out: &Path, commits: u64) -> Expected {
    let mut sums = [0; 3];
    let mut rows = 0;
    for commit in 1..=commits {
        for change in changeset(out, commit).values() {
            rows += 1;
            sums[0] += change.totals.events;
            sums[1] += change.totals.payable_events;
            sums[2] += change.totals.amount_micros;
        }
    }
    Expected { rows, sums }
}

/// Runs the reader script on `out`; returns what every read saw.
fn read_with_python(out: &Path) -> serde_json::Value {
    let script = common::root().join("tests/readers/read_tables.py");
    let result = Command::new("python3")
        .arg(&script)
        .arg(out)
        .output()
        .expect("python3 runs (`make python-deps` installs what the reader tests need)");
    assert!(
        result.status.success(),
        "{} failed (`make python-deps` installs duckdb, polars and pyarrow):\n{}",
        script.display(),
        String::from_utf8_lossy(&result.stderr)
    );
    serde_json::from_slice(&result.stdout).expect("the reader script prints JSON")
}

fn check_reads(seen: &serde_json::Value, table: &str, want: &Expected) {
    let reads = seen[table].as_object().expect("reads of the table");
    assert!(reads.len() >= 2, "{table}: {reads:?}");
    for (how, summary) in reads {
        assert!(
            summary.get("error").is_none(),
            "{table} read by {how} failed: {}",
            summary["error"]
        );
        assert_eq!(summary["rows"], want.rows, "{table} rows read by {how}");
        for (i, column) in ["events", "payable_events", "amount_micros"]
            .iter()
            .enumerate()
        {
            if table != "quarantine" {
                assert_eq!(
                    summary["sums"][column], want.sums[i],
                    "{table}.{column} summed by {how}"
                );
            }
        }
    }
}

fn type_of<'a>(seen: &'a serde_json::Value, table: &str, how: &str, column: &str) -> &'a str {
    seen[table][how]["types"][column]
        .as_str()
        .unwrap_or_else(|| panic!("no {column} in {table} read by {how}: {}", seen[table][how]))
}

#[test]
fn every_table_reads_exactly_in_duckdb_polars_and_pyarrow() {
    let dir = TempDir::new().expect("temp dir");
    let (input, planted) = support::generate(dir.path(), "events", 30_000, SEED, "parquet", 10_000);
    let out = dir.path().join("out");
    // Two commits: v1, then v2 over the same events, so that there are
    // changesets and two quarantines.
    support::run(&[&input], &common::rule("creator-pay-v1"), &out, &[]);
    support::run(&[&input], &common::rule("creator-pay-v2"), &out, &[]);

    // The root holds the tables and Tally's metadata, nothing else.
    let mut top: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(
        top,
        [
            "_tally",
            "changes",
            "daily",
            "monthly",
            "monthly_changes",
            "quarantine"
        ]
    );

    let seen = read_with_python(&out);
    let daily = daily_expected(&out);
    assert!(daily.rows > 1000, "{daily:?}");
    check_reads(&seen, "daily", &daily);
    let changes = changes_expected(&out, 2);
    assert!(changes.rows > 100, "{changes:?}");
    check_reads(&seen, "changes", &changes);
    // The monthly table: the daily one summed by month and creator; its
    // changesets: every row commit 1 added, and those v2 changed.
    let monthly = output::monthly(&out);
    assert_eq!(
        monthly,
        output::monthly_from_daily(&output::partitions(&out))
    );
    let sums = |rows: &mut dyn Iterator<Item = (i64, i64, i64)>| {
        rows.fold([0i64; 3], |s, r| [s[0] + r.0, s[1] + r.1, s[2] + r.2])
    };
    let want = Expected {
        rows: monthly.len() as u64,
        sums: sums(&mut monthly.values().copied()),
    };
    assert_eq!(want.sums, daily.sums);
    check_reads(&seen, "monthly", &want);
    let changed = seen["monthly_changes"]["duckdb/**"]["rows"]
        .as_u64()
        .unwrap();
    assert!(
        changed > monthly.len() as u64,
        "commit 1 adds every row, commit 2 changes some"
    );
    for how in ["duckdb/**", "polars/**", "pyarrow/typed"] {
        let read = &seen["monthly_changes"][how];
        assert!(
            read.get("error").is_none(),
            "monthly_changes by {how}: {read}"
        );
        assert_eq!(read["rows"], changed, "monthly_changes by {how}");
    }
    assert_eq!(
        type_of(&seen, "monthly_changes", "duckdb/**", "commit"),
        "BIGINT"
    );
    check_reads(
        &seen,
        "quarantine",
        &Expected {
            rows: 2 * planted.quarantined,
            sums: [0; 3],
        },
    );

    // `day` is a date and `commit` an integer wherever the reader infers
    // partition types, and where it is told them (pyarrow).
    for table in ["daily", "changes"] {
        assert_eq!(type_of(&seen, table, "duckdb/**", "day"), "DATE");
        assert_eq!(type_of(&seen, table, "polars/dir", "day"), "Date");
        assert_eq!(type_of(&seen, table, "pyarrow/typed", "day"), "date32[day]");
    }
    assert_eq!(type_of(&seen, "changes", "duckdb/**", "commit"), "BIGINT");
    assert_eq!(type_of(&seen, "changes", "polars/dir", "commit"), "Int64");
}

#[test]
fn each_commit_keeps_its_own_quarantine() {
    let dir = TempDir::new().expect("temp dir");
    let (input, planted) =
        support::generate(dir.path(), "events", 20_000, SEED + 1, "jsonl", 10_000);
    let out = dir.path().join("out");
    let rule = common::rule("creator-pay-v1");
    support::run(&[&input], &rule, &out, &[]);
    let first = quarantine_file(&out, 1);
    assert_eq!(
        first.iter().filter(|&&b| b == b'\n').count() as u64,
        planted.quarantined
    );
    let day = output::partitions(&out)[3].day.clone();
    support::run(&[&input], &rule, &out, &["--days", &day]);
    // The windowed run's quarantine is its own file; commit 1's is untouched.
    assert_eq!(quarantine_file(&out, 1), first);
    assert_eq!(quarantine_file(&out, 2), first);
    assert_eq!(
        output::quarantine_path(&out),
        "quarantine/commit=2/quarantine.jsonl"
    );
    let shown = common::tally_ok(&["show", s(&out), "1"]);
    common::assert_mentions(&shown, &["quarantine/commit=1/quarantine.jsonl"]);
}

#[test]
fn an_output_in_the_earlier_layout_is_refused_with_what_to_do() {
    let dir = TempDir::new().expect("temp dir");
    let input = common::small_jsonl(dir.path(), 20);
    let out = dir.path().join("old");
    // What layout 1 left: partitions, log and manifest at the root.
    std::fs::create_dir_all(out.join("day=2026-05-01")).unwrap();
    std::fs::create_dir_all(out.join("_log")).unwrap();
    std::fs::write(out.join("_manifest.json"), "{}").unwrap();
    std::fs::write(out.join("_log/00000001.json"), "{}").unwrap();
    let before = common::snapshot(&out);
    let rule = common::rule("creator-pay-v1");
    let err = common::tally_err(&[
        "run",
        "--input",
        s(&input),
        "--rule",
        s(&rule),
        "--out",
        s(&out),
    ]);
    common::assert_mentions(
        &err,
        &["layout 1", "daily/", "previous output is untouched"],
    );
    assert_eq!(common::snapshot(&out), before, "the old output was changed");
    for args in [
        vec!["log", s(&out)],
        vec!["lineage", s(&out)],
        vec!["verify", s(&out)],
    ] {
        let err = common::tally_err(&args);
        common::assert_mentions(&err, &["layout 1"]);
    }
}

#[test]
fn a_stale_changeset_never_replaces_the_commits_own() {
    let dir = TempDir::new().expect("temp dir");
    let (input, _) = support::generate(dir.path(), "events", 20_000, SEED + 2, "jsonl", 10_000);
    let out = dir.path().join("out");
    support::run(&[&input], &common::rule("creator-pay-v1"), &out, &[]);
    // A changeset and a quarantine numbered like the next commit, left there
    // by hand: the commit writes its own, whole, and drops these.
    let stale = out.join("changes/commit=2/day=2026-05-01");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::copy(
        out.join("changes/commit=1")
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
            .join("part-0.parquet"),
        stale.join("part-0.parquet"),
    )
    .unwrap();
    std::fs::create_dir_all(out.join("changes/commit=2/day=1999-01-01")).unwrap();
    std::fs::write(
        out.join("changes/commit=2/day=1999-01-01/part-0.parquet"),
        "stale",
    )
    .unwrap();
    std::fs::create_dir_all(out.join("quarantine/commit=2")).unwrap();
    std::fs::write(out.join("quarantine/commit=2/quarantine.jsonl"), "stale\n").unwrap();

    let report = support::run(&[&input], &common::rule("creator-pay-v2"), &out, &[]);
    assert_eq!(report["commit"], 2);
    let changes = changeset(&out, 2);
    assert!(!changes.is_empty());
    assert!(!out.join("changes/commit=2/day=1999-01-01").exists());
    // Every changed row of v2's commit is there, and only those.
    let rows = report["reconcile"]["changed"].as_u64().unwrap()
        + report["reconcile"]["added"].as_u64().unwrap()
        + report["reconcile"]["zeroed"].as_u64().unwrap()
        + report["reconcile"]["restamped"].as_u64().unwrap();
    assert_eq!(changes.len() as u64, rows);
    assert_ne!(quarantine_file(&out, 2), b"stale\n");
}

#[test]
fn a_failed_first_run_says_nothing_was_written() {
    let dir = TempDir::new().expect("temp dir");
    let input = common::small_jsonl(dir.path(), 20);
    let out = dir.path().join("out");
    let rule = crate::sandbox::component(dir.path(), "trap");
    let err = common::tally_err(&[
        "run",
        "--input",
        s(&input),
        "--rule",
        s(&rule),
        "--out",
        s(&out),
    ]);
    common::assert_mentions(&err, &["nothing was written"]);
    assert!(!err.contains("untouched"), "{err}");
    assert!(!out.exists());
}
