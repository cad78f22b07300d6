//! Tally on Spark (`local[2]`): the Python package's job gives the partitions
//! and the survivor index of `tally run`, byte for byte, on JSON lines and
//! Parquet; `tally verify` passes on its output, and `tally status` says what
//! it says of `tally run`'s, fresh or stale after a late file; a rerun after
//! a late file reconciles as `tally run` does; a rule whose bytes are not the
//! pinned ones is refused on the executors; a rule that traps fails the job,
//! and so does a reduce task's part of the survivor index that is missing or
//! damaged, and nothing is committed.
//!
//! Starting Spark takes seconds, so every Spark job of this module runs in
//! one Python process and one SparkSession, once for the test process; each
//! test then checks its part of what came out.

use crate::common::{self, s};
use crate::output;
use crate::sandbox::component_with;
use crate::support;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The Python of the project's virtualenv, where `make spark` installs the
/// package and PySpark.
fn python() -> PathBuf {
    let python = common::root().join(".venv/bin/python");
    let ready = python.is_file()
        && Command::new(&python)
            .args(["-c", "import tally.spark, pyspark"])
            .output()
            .is_ok_and(|o| o.status.success());
    assert!(
        ready,
        "{} cannot import tally.spark and pyspark: run `make spark` first",
        python.display()
    );
    python
}

/// Runs each job of `jobs.json` in one SparkSession, in order, and writes
/// what each gave (its report, or its error) to `results.json`. A job with
/// `tamper` has a reduce task's part of the survivor index removed or
/// damaged after the reduce tasks ran and before the driver commits; one with
/// `reducer_dir` only makes a reducer that writes its part there.
const JOBS: &str = r#"
import json, os, sys
from tally import _native as native
from tally import spark as tally_spark

class Tampered:
    """A plan whose commit first removes (or damages) the part of the
    survivor index of the first reduce task that wrote rows."""
    def __init__(self, plan, how):
        self.plan, self.how = plan, how
    def __getattr__(self, name):
        return getattr(self.plan, name)
    def commit(self, results):
        parts = [json.loads(r[1])["index"] for r in results]
        name = next(p["file"] for p in parts if p["rows"] > 0)
        path = os.path.join(str(self.plan.index_dir), name)
        if self.how == "remove":
            os.remove(path)
        else:
            with open(path, "r+b") as f:
                f.seek(os.path.getsize(path) // 2)
                byte = f.read(1)
                f.seek(-1, 1)
                f.write(bytes([byte[0] ^ 0xFF]))
        return self.plan.commit(results)

def run(session, job):
    """Runs one job; its plan (and the plan's directory of parts) goes when
    it returns."""
    if job.get("reducer_dir"):
        plan = native.plan(job["inputs"], job["rule"], job["out"])
        native.Reducer(plan.json, plan.rule_bytes, job["reducer_dir"])
        raise RuntimeError("a reducer was made for a directory that is not there")
    if job.get("tamper"):
        plan = native.plan(job["inputs"], job["rule"], job["out"], shards=job["shards"])
        return tally_spark.execute(session, Tampered(plan, job["tamper"]))
    rule_bytes = open(job["rule_bytes"], "rb").read() if job.get("rule_bytes") else None
    return tally_spark.run(
        session, job["inputs"], job["rule"], job["out"],
        shards=job.get("shards"), rule_bytes=rule_bytes)

jobs = json.load(open(sys.argv[1]))
session = tally_spark.session("local[2]")
session.sparkContext.setLogLevel("ERROR")
results = []
for job in jobs:
    try:
        report, summary = run(session, job)
        results.append({"ok": True, "report": report, "summary": summary})
    except Exception as e:
        results.append({"ok": False, "error": str(e)})
json.dump(results, open(sys.argv[2], "w"))
"#;

/// Everything the tests look at, made once.
struct Runs {
    dir: PathBuf,
    /// What each Spark job gave, by name.
    results: Vec<(String, serde_json::Value)>,
    /// The trap's output before the failed job, and after.
    trap_before: Vec<(String, Vec<u8>)>,
    trap_after: Vec<(String, Vec<u8>)>,
    /// `tally-spark run` on the command line: exit status, stdout, stderr.
    cli: (Option<i32>, String, String),
    /// What was left in runs' directories once every job had ended.
    left: Vec<String>,
}

impl Runs {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn result(&self, name: &str) -> &serde_json::Value {
        &self
            .results
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no job {name}"))
            .1
    }

    /// The report of a job that must have succeeded.
    fn report(&self, name: &str) -> &serde_json::Value {
        let result = self.result(name);
        assert_eq!(result["ok"], true, "{name} failed: {}", result["error"]);
        &result["report"]
    }

    /// The error of a job that must have failed.
    fn error(&self, name: &str) -> String {
        let result = self.result(name);
        assert_eq!(result["ok"], false, "{name} should have failed");
        result["error"]
            .as_str()
            .expect("an error message")
            .to_string()
    }
}

fn runs() -> &'static Runs {
    static RUNS: OnceLock<Runs> = OnceLock::new();
    RUNS.get_or_init(make_runs)
}

fn make_runs() -> Runs {
    let python = python();
    // One directory for the test process, emptied first: the runs outlive
    // any one test.
    let dir = common::root().join("target/e2e-spark");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("work directory");
    let v1 = common::rule("creator-pay-v1");
    let v2 = common::rule("creator-pay-v2");

    let (jsonl, _) = support::generate(&dir, "jsonl", 20_000, 7, "jsonl", 7_000);
    let (parquet, _) = support::generate(&dir, "parquet", 20_000, 8, "parquet", 7_000);
    late_file(&jsonl, &dir.join("late-status/late.jsonl"));
    // A late file: the first run reads two files, the rerun a third as well.
    let early = dir.join("late-1");
    let all = dir.join("late-2");
    for (target, count) in [(&early, 2), (&all, 3)] {
        std::fs::create_dir_all(target).expect("input directory");
        for (name, path) in support::files_in(&jsonl).into_iter().take(count) {
            let file = Path::new(&name).file_name().expect("a file name");
            std::fs::copy(&path, target.join(file)).expect("copy input");
        }
    }
    // What `tally run` makes of the same inputs.
    for (input, out) in [
        (&jsonl, "run-jsonl"),
        (&parquet, "run-parquet"),
        (&early, "run-late"),
        (&all, "run-late"),
        (&jsonl, "trap"),
    ] {
        support::run(&[input.as_path()], &v1, &dir.join(out), &[]);
    }
    let trap = component_with(
        &dir,
        "constant",
        "traps",
        &[(
            "(local.set $n (i32.load offset=20 (local.get $batch)))",
            "(local.set $n (i32.load offset=20 (local.get $batch))) unreachable",
        )],
    );
    let trap_before = common::snapshot(&dir.join("trap"));

    let job = |name: &str, input: &Path, rule: &Path, out: &str| {
        serde_json::json!({
            "name": name, "inputs": [s(input)], "rule": s(rule), "out": s(&dir.join(out)),
        })
    };
    let mut jobs = vec![
        job("jsonl", &jsonl, &v1, "spark-jsonl"),
        job("late-1", &early, &v1, "spark-late"),
        job("late-2", &all, &v1, "spark-late"),
        job("swapped", &jsonl, &v1, "spark-swapped"),
        job("trap", &jsonl, &trap, "trap"),
        job("part-missing", &early, &v1, "spark-part-missing"),
        job("part-damaged", &early, &v1, "spark-part-damaged"),
        job("unseen-dir", &early, &v1, "spark-unseen-dir"),
    ];
    jobs[0]["shards"] = 3.into();
    jobs[3]["rule_bytes"] = s(&v2).into();
    for (i, how) in [(5, "remove"), (6, "damage")] {
        jobs[i]["tamper"] = how.into();
        jobs[i]["shards"] = 2.into();
    }
    jobs[7]["reducer_dir"] = s(&dir.join("not-mounted")).into();
    let jobs_file = dir.join("jobs.json");
    std::fs::write(&jobs_file, serde_json::to_vec(&jobs).expect("JSON")).expect("write jobs");
    let script = dir.join("jobs.py");
    std::fs::write(&script, JOBS).expect("write script");
    let results_file = dir.join("results.json");
    let out = Command::new(&python)
        .args([s(&script), s(&jobs_file), s(&results_file)])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "the Spark jobs did not run:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&results_file).expect("results")).expect("JSON");
    let results = jobs
        .iter()
        .zip(results)
        .map(|(j, r)| (j["name"].as_str().expect("name").to_string(), r))
        .collect();
    let trap_after = common::snapshot(&dir.join("trap"));

    // The command line, on Parquet, the survivor index's parts written
    // into a work directory of its own.
    let work = dir.join("work");
    std::fs::create_dir_all(&work).expect("work directory");
    let cli = Command::new(common::root().join(".venv/bin/tally-spark"))
        .args(["run", "--input", s(&parquet), "--rule", s(&v1), "--out"])
        .arg(dir.join("spark-parquet"))
        .args(["--master", "local[2]", "--json", "--work", s(&work)])
        .output()
        .expect("tally-spark runs");
    let cli = (
        cli.status.code(),
        String::from_utf8_lossy(&cli.stdout).into_owned(),
        String::from_utf8_lossy(&cli.stderr).into_owned(),
    );
    let mut left = Vec::new();
    for d in [&dir, &work] {
        left.extend(
            std::fs::read_dir(d)
                .expect("readable dir")
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".tally")),
        );
    }
    Runs {
        dir,
        results,
        trap_before,
        trap_after,
        cli,
        left,
    }
}

/// Writes a late file for the records of `input`'s first file: re-sends of
/// some of its events ingested before any of them, half of them on another
/// day, and events no file had. Against an output of `input`, it makes days
/// stale for every kind of cause a late file can give (new events, events
/// moving in and out, survivors replaced).
fn late_file(input: &Path, late: &Path) {
    let (_, first) = support::files_in(input)
        .into_iter()
        .next()
        .expect("an input file");
    let text = std::fs::read_to_string(first).expect("readable input");
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(i, _)| i % 50 == 0) {
        let Ok(Value::Object(mut record)) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if !record.get("event_id").is_some_and(Value::is_string) {
            continue;
        }
        record.insert("ingested_at".into(), "2026-01-01T00:00:00Z".into());
        if i % 100 == 0 {
            record.insert("occurred_at".into(), "2026-05-03T12:00:00Z".into());
        }
        lines.push(Value::Object(record.clone()).to_string());
        let id = format!("{}-late", record["event_id"].as_str().expect("a string"));
        record.insert("event_id".into(), id.into());
        lines.push(Value::Object(record).to_string());
    }
    std::fs::create_dir_all(late.parent().expect("a parent")).expect("late directory");
    std::fs::write(late, lines.join("\n") + "\n").expect("write the late file");
}

/// The counts every way of running must agree on.
const COUNTS: [&str; 9] = [
    "records",
    "quarantined",
    "valid",
    "duplicates",
    "conflicts",
    "unique",
    "payable",
    "amount_micros",
    "rows",
];

fn assert_same_counts(spark: &serde_json::Value, run: &serde_json::Value, what: &str) {
    for name in COUNTS {
        assert_eq!(
            spark["counts"][name], run["counts"][name],
            "{what}: {name} differs"
        );
    }
    assert_eq!(
        spark["counts"]["quarantined_by_reason"], run["counts"]["quarantined_by_reason"],
        "{what}: quarantine reasons differ"
    );
    let checks = spark["checks"].as_array().expect("checks");
    assert!(
        !checks.is_empty() && checks.iter().all(|c| c["ok"] == true),
        "{what}: {checks:?}"
    );
}

/// Asserts two lists of files are the same names with the same bytes.
fn assert_same_bytes(got: &[(String, Vec<u8>)], want: &[(String, Vec<u8>)], what: &str) {
    let names = |files: &[(String, Vec<u8>)]| -> Vec<String> {
        files.iter().map(|(n, _)| n.clone()).collect()
    };
    support::assert_seqs_eq(&names(got), &names(want), what);
    assert!(!got.is_empty(), "{what}: no files");
    for ((name, a), (_, b)) in got.iter().zip(want) {
        assert!(a == b, "{what}: {name} differs");
    }
}

/// Asserts two outputs hold the same data files (daily and monthly
/// partitions, the last commit's quarantine, the survivor index), byte for
/// byte.
fn assert_same_files(got: &Path, want: &Path) {
    let got_files = output::data_files(got);
    for (what, prefix) in [("monthly partition", "monthly/"), ("survivor index", INDEX)] {
        assert!(
            got_files.iter().any(|(n, _)| n.starts_with(prefix)),
            "no {what} in {}",
            got.display()
        );
    }
    let what = format!("{} against {}", got.display(), want.display());
    assert_same_bytes(&got_files, &output::data_files(want), &what);
}

/// The files of an output's survivor index (its files and manifest).
fn index_files(out: &Path) -> Vec<(String, Vec<u8>)> {
    output::data_files(out)
        .into_iter()
        .filter(|(n, _)| n.starts_with(INDEX))
        .collect()
}

/// Where an output keeps its survivor index.
const INDEX: &str = "_tally/survivors/";

/// `tally status --json` of `out` against `inputs` with creator-pay v1: the
/// exit code and the report, without the output's path.
fn status(out: &Path, inputs: &[&Path]) -> (Option<i32>, Value) {
    let v1 = common::rule("creator-pay-v1");
    let mut args = vec!["status", "--out", s(out), "--rule", s(&v1), "--json"];
    for input in inputs {
        args.extend(["--input", s(input)]);
    }
    let output = common::tally(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("tally {args:?} printed no JSON ({e}): {stderr}"));
    assert_eq!(report["out"], s(out), "{report}");
    report
        .as_object_mut()
        .expect("the report is an object")
        .remove("out");
    (output.status.code(), report)
}

/// The kinds of the causes `report` gives, over every day.
fn cause_kinds(report: &Value) -> std::collections::BTreeSet<String> {
    report["days"]
        .as_array()
        .expect("days")
        .iter()
        .flat_map(|d| d["causes"].as_array().expect("causes"))
        .map(|c| c["kind"].as_str().expect("a kind").to_string())
        .collect()
}

#[test]
fn spark_gives_the_bytes_of_tally_run_on_json_lines() {
    let runs = runs();
    let report = runs.report("jsonl");
    assert_eq!(report["shards"], 3);
    let run = common::report(&runs.path("run-jsonl"));
    assert!(run["counts"]["quarantined"].as_u64() > Some(0));
    assert_same_counts(report, &run, "jsonl");
    // Daily and monthly partitions, and the quarantine with its files and
    // lines, byte for byte.
    assert_same_files(&runs.path("spark-jsonl"), &runs.path("run-jsonl"));
    assert_eq!(
        common::report(&runs.path("spark-jsonl"))["counts"],
        report["counts"]
    );
}

#[test]
fn spark_gives_the_partitions_of_tally_run_on_parquet_from_the_command_line() {
    let runs = runs();
    let (code, stdout, stderr) = &runs.cli;
    assert_eq!(*code, Some(0), "tally-spark failed: {stderr}");
    let report: serde_json::Value = serde_json::from_str(stdout).expect("--json prints JSON");
    let (spark, run) = (runs.path("spark-parquet"), runs.path("run-parquet"));
    assert_same_counts(&report, &common::report(&run), "parquet");
    // Quarantined rows are rendered from the columns Spark decoded, so the
    // quarantine is compared by file, row and reason.
    assert_same_bytes(
        &output::partition_files(&spark),
        &output::partition_files(&run),
        "daily partitions",
    );
    let monthly = |out: &Path| -> Vec<(String, Vec<u8>)> {
        output::data_files(out)
            .into_iter()
            .filter(|(n, _)| n.starts_with("monthly/"))
            .collect()
    };
    assert_same_bytes(&monthly(&spark), &monthly(&run), "monthly partitions");
    assert_same_bytes(&index_files(&spark), &index_files(&run), "survivor index");
    support::assert_seqs_eq(
        &output::quarantine_keys(&spark),
        &output::quarantine_keys(&run),
        "quarantine",
    );
}

#[test]
fn tally_verify_passes_on_the_output_of_spark() {
    let runs = runs();
    runs.report("jsonl");
    let registry = runs.path("registry");
    let v1 = common::rule("creator-pay-v1");
    // Publishing is idempotent; tests sharing the registry may race to it.
    let _ = common::tally(&["rule", "publish", s(&v1), "--registry", s(&registry)]);
    let verified = common::tally_ok(&[
        "verify",
        s(&runs.path("spark-jsonl")),
        "--registry",
        s(&registry),
        "--json",
    ]);
    let verified: serde_json::Value = serde_json::from_str(&verified).expect("JSON");
    let partitions = verified["partitions"].as_array().expect("partitions");
    assert!(!partitions.is_empty());
    for p in partitions {
        assert_eq!(p["identical"], true, "{p}");
    }
}

#[test]
fn a_rerun_after_a_late_file_reconciles_like_tally_run() {
    let runs = runs();
    let first = runs.report("late-1");
    let second = runs.report("late-2");
    assert_eq!(first["commit"], 1);
    assert_eq!(second["commit"], 2);
    let run = common::report(&runs.path("run-late"));
    assert_same_counts(second, &run, "rerun");
    // The same rows kept, changed, added and zeroed.
    assert_eq!(second["reconcile"], run["reconcile"]);
    assert!(
        second["reconcile"]["changed"].as_u64() > Some(0),
        "{}",
        second["reconcile"]
    );
    assert_same_files(&runs.path("spark-late"), &runs.path("run-late"));
    // The changeset of the second commit too.
    assert_eq!(
        output::changed_days(&runs.path("spark-late"), 2),
        output::changed_days(&runs.path("run-late"), 2)
    );
    let changes = |out: &Path| -> Vec<(String, Vec<u8>)> {
        common::snapshot(out)
            .into_iter()
            .filter(|(n, _)| n.starts_with("changes/commit=2/"))
            .collect()
    };
    assert_same_bytes(
        &changes(&runs.path("spark-late")),
        &changes(&runs.path("run-late")),
        "changeset of commit 2",
    );
}

#[test]
fn a_rule_whose_bytes_are_not_the_pinned_ones_is_refused_on_the_executors() {
    let runs = runs();
    let error = runs.error("swapped");
    let pinned = common::blake3_hex(&common::rule("creator-pay-v1"));
    let given = common::blake3_hex(&common::rule("creator-pay-v2"));
    common::assert_mentions(
        &error,
        &[
            // Raised in the Python worker of a reduce task, failing the job.
            "An exception was thrown from the Python worker",
            "in _reduce",
            "TallyError",
            &format!(
                "the rule given has blake3 {given}, not the pinned rule's {pinned}: refusing to run it"
            ),
        ],
    );
    assert!(
        !runs.path("spark-swapped").exists(),
        "an output was committed"
    );
}

#[test]
fn a_rule_that_traps_fails_the_job_and_commits_nothing() {
    let runs = runs();
    let error = runs.error("trap");
    common::assert_mentions(&error, &["TallyError", "trapped", "unreachable"]);
    assert!(!runs.trap_before.is_empty());
    assert!(
        runs.trap_before == runs.trap_after,
        "the output changed after a failed job"
    );
    // No staging or spill directory left beside it either.
    let left: Vec<String> = std::fs::read_dir(&runs.dir)
        .expect("readable dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".trap") && !n.ends_with("tally-lock"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn tally_status_says_of_a_spark_output_what_it_says_of_tally_runs() {
    let runs = runs();
    runs.report("jsonl");
    runs.report("late-2");
    let (jsonl, late) = (runs.path("jsonl"), runs.path("late-status"));
    let (spark, run) = (runs.path("spark-jsonl"), runs.path("run-jsonl"));
    // Fresh on the inputs it was computed from, after one commit and after
    // a rerun with a late file.
    let (code, fresh) = status(&spark, &[&jsonl]);
    assert_eq!(code, Some(0), "{fresh}");
    assert_eq!(fresh["stale"], false);
    assert_eq!(fresh, status(&run, &[&jsonl]).1);
    let (code, rerun) = status(&runs.path("spark-late"), &[&runs.path("late-2")]);
    assert_eq!(code, Some(0), "{rerun}");
    // Stale with a late file, naming the same days and causes as for the
    // output of `tally run`.
    let (code, stale) = status(&spark, &[&jsonl, &late]);
    assert_eq!(code, Some(3), "{stale}");
    assert_eq!(stale, status(&run, &[&jsonl, &late]).1);
    let kinds = cause_kinds(&stale);
    for kind in ["new-events", "moved-in", "moved-out", "replaced"] {
        assert!(kinds.contains(kind), "no {kind} cause: {kinds:?}");
    }
    let late_file = s(&late.join("late.jsonl")).to_string();
    let new_events = stale["days"]
        .as_array()
        .expect("days")
        .iter()
        .flat_map(|d| d["causes"].as_array().expect("causes"))
        .find(|c| c["kind"] == "new-events")
        .expect("a new-events cause");
    assert_eq!(new_events["file"], late_file.as_str());
}

#[test]
fn a_missing_or_damaged_part_of_the_survivor_index_fails_the_commit_and_commits_nothing() {
    let runs = runs();
    for (job, what) in [
        ("part-missing", "is missing"),
        ("part-damaged", "is damaged"),
    ] {
        let error = runs.error(job);
        common::assert_mentions(
            &error,
            &[
                "commit failed; the output directory is as it was",
                "the part of the survivor index the reduce task of shard",
                what,
            ],
        );
        let out = runs.path(&format!("spark-{job}"));
        assert!(!out.exists(), "{job}: an output was committed");
    }
    // A reduce task that cannot see the run's directory of parts fails
    // before it reduces anything.
    let unseen = runs.path("not-mounted");
    common::assert_mentions(
        &runs.error("unseen-dir"),
        &[&format!(
            "the run's survivor index directory {} is not there on this machine",
            unseen.display()
        )],
    );
    // Every job's directory of parts is gone, failed or not.
    assert!(runs.left.is_empty(), "left behind: {:?}", runs.left);
}
