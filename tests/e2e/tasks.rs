//! The phases as separate processes: `tally plan`, `map`, `reduce` (in a
//! shuffled order, killed and rerun, run twice at once) and `commit` give the
//! bytes of `tally run`; a missing or damaged task output, a changed input and
//! a swapped rule are refused, naming them, and nothing is committed; counts
//! that do not add up across shards fail the commit.

use crate::common::{self, s};
use crate::output;
use crate::support;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use tempfile::TempDir;

const SEED: u64 = 9_191;
const SHARDS: u32 = 4;

struct Work {
    dir: TempDir,
    input: PathBuf,
    work: PathBuf,
    out: PathBuf,
    tasks: usize,
}

impl Work {
    /// Generated input (JSONL and Parquet) and a plan over it.
    fn planned() -> Work {
        let dir = TempDir::new().expect("temp dir");
        let input = dir.path().join("in");
        let (jsonl, _) = support::generate(&input, "jsonl", 24_000, SEED, "jsonl", 8_000);
        let (parquet, _) = support::generate(&input, "parquet", 12_000, SEED + 1, "parquet", 6_000);
        assert!(jsonl.is_dir() && parquet.is_dir());
        let work = dir.path().join("work");
        let out = dir.path().join("out");
        common::tally_ok(&[
            "plan",
            "--input",
            s(&input),
            "--rule",
            s(&common::rule("creator-pay-v1")),
            "--out",
            s(&out),
            "--work",
            s(&work),
            "--shards",
            &SHARDS.to_string(),
            "--task-size",
            "1MiB",
        ]);
        let plan: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(work.join("plan.json")).unwrap())
                .unwrap();
        let tasks = plan["tasks"].as_array().expect("tasks").len();
        assert!(tasks > 2, "several map tasks: {plan}");
        Work {
            dir,
            input,
            work,
            out,
            tasks,
        }
    }

    fn map(&self, task: usize) -> String {
        common::tally_ok(&[
            "map",
            "--work",
            s(&self.work),
            "--task",
            &task.to_string(),
            "--quiet",
        ])
    }

    fn reduce(&self, shard: u32) -> String {
        common::tally_ok(&[
            "reduce",
            "--work",
            s(&self.work),
            "--shard",
            &shard.to_string(),
        ])
    }

    fn map_all(&self) {
        for task in 0..self.tasks {
            self.map(task);
        }
    }

    fn commit_err(&self) -> String {
        common::tally_err(&["commit", "--work", s(&self.work), "--quiet"])
    }

    /// `tally run` over the same input, into `dir/expected`.
    fn expected(&self) -> Vec<(String, Vec<u8>)> {
        let out = self.dir.path().join("expected");
        support::run(&[&self.input], &common::rule("creator-pay-v1"), &out, &[]);
        output::data_files(&out)
    }
}

#[test]
fn tasks_as_separate_processes_give_the_bytes_of_tally_run() {
    let w = Work::planned();
    // Map tasks backwards, one of them twice at once.
    let twice: Vec<_> = (0..2)
        .map(|_| {
            Command::new(common::tally_bin())
                .args(["map", "--work", s(&w.work), "--task", "1", "--quiet"])
                .output()
                .expect("tally runs")
        })
        .collect();
    for out in &twice {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for task in (0..w.tasks).rev() {
        w.map(task);
    }
    // Reduce in a shuffled order; a rerun does nothing.
    for shard in [2, 0, 3, 1] {
        let said = w.reduce(shard);
        assert!(said.contains("published"), "{said}");
    }
    assert!(w.reduce(0).contains("already done"));
    let report: serde_json::Value = serde_json::from_str(&common::tally_ok(&[
        "commit",
        "--work",
        s(&w.work),
        "--json",
        "--quiet",
    ]))
    .expect("JSON");
    assert_eq!(report["shards"], SHARDS);
    assert_eq!(report["commit"], 1);
    let got = output::data_files(&w.out);
    let want = w.expected();
    assert_eq!(got.len(), want.len());
    for ((name, a), (_, b)) in got.iter().zip(&want) {
        assert!(a == b, "{name} differs from tally run's");
    }
    // No leftovers of staged task directories.
    for dir in ["map", "reduce"] {
        for entry in std::fs::read_dir(w.work.join(dir)).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.starts_with(".tmp-"), "{dir}/{name} left behind");
        }
    }
}

#[test]
fn a_reduce_killed_mid_way_and_rerun_gives_the_same_result() {
    let w = Work::planned();
    w.map_all();
    let shard_dir = w.work.join("reduce/shard-0");
    for delay_ms in [0u64, 5, 20, 60, 150] {
        let _ = std::fs::remove_dir_all(&shard_dir);
        let mut child = Command::new(common::tally_bin())
            .args(["reduce", "--work", s(&w.work), "--shard", "0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tally runs");
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        // Published whole or not at all.
        if shard_dir.exists() {
            assert!(shard_dir.join("done.json").is_file());
            assert!(shard_dir.join("rows.arrow").is_file());
        }
    }
    let _ = std::fs::remove_dir_all(&shard_dir);
    w.reduce(0);
    let first = std::fs::read(shard_dir.join("rows.arrow")).unwrap();
    std::fs::remove_dir_all(&shard_dir).unwrap();
    w.reduce(0);
    assert_eq!(
        std::fs::read(shard_dir.join("rows.arrow")).unwrap(),
        first,
        "a rerun gave other rows"
    );
    for shard in 1..SHARDS {
        w.reduce(shard);
    }
    common::tally_ok(&["commit", "--work", s(&w.work), "--quiet"]);
    assert_eq!(output::data_files(&w.out), w.expected());
}

#[test]
fn commit_refuses_missing_or_damaged_task_outputs_and_commits_nothing() {
    let w = Work::planned();
    // Nothing mapped yet.
    let err = common::tally_err(&["reduce", "--work", s(&w.work), "--shard", "0"]);
    common::assert_mentions(&err, &["map task(s) 0, 1", "not done"]);
    w.map_all();
    for shard in 0..SHARDS - 1 {
        w.reduce(shard);
    }
    let err = w.commit_err();
    common::assert_mentions(
        &err,
        &[
            &format!("reduce shard(s) {} ", SHARDS - 1),
            "nothing committed",
        ],
    );
    assert!(!w.out.exists());
    w.reduce(SHARDS - 1);

    // A damaged partial-rows file.
    let rows = w.work.join("reduce/shard-1/rows.arrow");
    let good = std::fs::read(&rows).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x55;
    std::fs::write(&rows, &bad).unwrap();
    let err = w.commit_err();
    common::assert_mentions(&err, &[s(&rows), "damaged", "nothing committed"]);
    assert!(!w.out.exists());
    std::fs::write(&rows, &good).unwrap();

    // A map output changed after the shards were reduced.
    let quarantine = w.work.join("map/task-0/quarantine.jsonl");
    let good_q = std::fs::read(&quarantine).unwrap();
    std::fs::write(&quarantine, b"").unwrap();
    let err = w.commit_err();
    common::assert_mentions(&err, &[s(&quarantine), "damaged"]);
    std::fs::write(&quarantine, &good_q).unwrap();

    // A damaged spill file is refused by the reduce that reads it.
    let spill = std::fs::read_dir(w.work.join("map/task-0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("shard-2-")
        })
        .expect("a spill file of shard 2");
    let mut bytes = std::fs::read(&spill).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 1;
    std::fs::write(&spill, &bytes).unwrap();
    std::fs::remove_dir_all(w.work.join("reduce/shard-2")).unwrap();
    let err = common::tally_err(&["reduce", "--work", s(&w.work), "--shard", "2"]);
    common::assert_mentions(&err, &[s(&spill), "damaged"]);
    assert!(!w.work.join("reduce/shard-2").exists());
    assert!(!w.out.exists(), "nothing was committed");
}

/// The invariants hold across shards: a reduce output whose counts do not
/// add up (edited here, as a faulty engine or disk might leave it) fails the
/// commit, naming the invariant, and nothing is committed.
#[test]
fn counts_that_do_not_add_up_across_shards_fail_the_commit() {
    let w = Work::planned();
    w.map_all();
    for shard in 0..SHARDS {
        w.reduce(shard);
    }
    let done = w.work.join("reduce/shard-1/done.json");
    let good = std::fs::read_to_string(&done).unwrap();
    let edited = |field: &str, by: i64| {
        let mut value: serde_json::Value = serde_json::from_str(&good).unwrap();
        let n = value["counts"][field].as_i64().expect("a count");
        value["counts"][field] = (n + by).into();
        std::fs::write(&done, serde_json::to_string(&value).unwrap()).unwrap();
    };
    for (field, by, invariant) in [
        (
            "valid",
            1,
            "shard 1: records reduced = records the map tasks spilled",
        ),
        (
            "duplicates",
            1,
            "records = quarantined + duplicates + unique",
        ),
        ("payable", -1, "daily rows sum to the classified totals"),
        (
            "amount_micros",
            7,
            "daily rows sum to the classified totals",
        ),
    ] {
        edited(field, by);
        let err = w.commit_err();
        common::assert_mentions(&err, &["invariant broken, nothing committed", invariant]);
        assert!(!w.out.exists(), "{field}: nothing is committed");
    }
    std::fs::write(&done, &good).unwrap();
    common::tally_ok(&["commit", "--work", s(&w.work), "--quiet"]);
    assert_eq!(output::data_files(&w.out), w.expected());
}

#[test]
fn a_swapped_rule_a_changed_input_and_bad_task_numbers_are_refused() {
    let w = Work::planned();
    // An input changed after the plan.
    let victim = support::files_in(&w.input.join("jsonl"))
        .into_iter()
        .map(|(_, p)| p)
        .next()
        .expect("an input file");
    let original = std::fs::read(&victim).unwrap();
    let mut changed = original.clone();
    changed.extend_from_slice(b"\n");
    std::fs::write(&victim, &changed).unwrap();
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.work.join("plan.json")).unwrap()).unwrap();
    let canonical = std::fs::canonicalize(&victim).unwrap();
    let task = plan["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .position(|t| {
            t.as_array().unwrap().iter().any(|i| {
                plan["files"][i.as_u64().unwrap() as usize]["input"]["path"] == s(&canonical)
            })
        })
        .expect("the file's task");
    let err = common::tally_err(&[
        "map",
        "--work",
        s(&w.work),
        "--task",
        &task.to_string(),
        "--quiet",
    ]);
    common::assert_mentions(&err, &[s(&canonical), "changed since the plan"]);
    assert!(!w.work.join(format!("map/task-{task}")).exists());
    std::fs::write(&victim, &original).unwrap();
    w.map_all();

    // The pinned rule swapped for another.
    let pinned = w.work.join("rule.wasm");
    std::fs::copy(common::rule("creator-pay-v2"), &pinned).unwrap();
    let err = common::tally_err(&["reduce", "--work", s(&w.work), "--shard", "0"]);
    common::assert_mentions(&err, &[s(&pinned), "not the pinned rule's", "refusing"]);
    assert!(!w.work.join("reduce/shard-0").exists());

    // Task and shard numbers outside the plan.
    let err = common::tally_err(&["map", "--work", s(&w.work), "--task", "999"]);
    common::assert_mentions(&err, &["not 999"]);
    let err = common::tally_err(&["reduce", "--work", s(&w.work), "--shard", "99"]);
    common::assert_mentions(&err, &["shards 0 to 3, not 99"]);
    // A second plan into the same work directory.
    let err = common::tally_err(&[
        "plan",
        "--input",
        s(&w.input),
        "--rule",
        s(&common::rule("creator-pay-v1")),
        "--out",
        s(&w.out),
        "--work",
        s(&w.work),
        "--shards",
        "2",
    ]);
    common::assert_mentions(&err, &["already holds a plan"]);
    // No plan at all.
    let empty = w.dir.path().join("empty");
    let err = common::tally_err(&["commit", "--work", s(&empty)]);
    common::assert_mentions(&err, &["holds no plan"]);
}
