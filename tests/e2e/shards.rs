//! The out-of-core run: split by `event_id` into shards spilled to disk, it
//! gives the same bytes as the in-memory run, whatever the shard count, thread
//! count and batch size; a memory limit the input does not fit makes it spill
//! on its own; spill files are removed after success and after failure.

use crate::common::{self, s};
use crate::output;
use crate::sandbox;
use crate::support::{self, count};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

const SEED: u64 = 4_711;

/// Counts every way of running must agree on.
const COUNTS: [&str; 10] = [
    "records",
    "quarantined",
    "valid",
    "duplicates",
    "conflicts",
    "unique",
    "classified",
    "payable",
    "amount_micros",
    "rows",
];

/// Entries of `dir` whose names start with `.tally-spill-`.
fn spill_dirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(".tally-spill-"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `inputs` into `dir/<name>` with `extra`; returns the report and the
/// data files.
fn run(
    dir: &Path,
    name: &str,
    inputs: &[&Path],
    extra: &[&str],
) -> (serde_json::Value, Vec<(String, Vec<u8>)>) {
    let out = dir.join(name);
    let report = support::run(inputs, &common::rule("creator-pay-v1"), &out, extra);
    assert!(
        spill_dirs(dir).is_empty(),
        "{name}: spill files left behind"
    );
    (report, output::data_files(&out))
}

fn assert_same(
    what: &str,
    (report, files): &(serde_json::Value, Vec<(String, Vec<u8>)>),
    (want_report, want_files): &(serde_json::Value, Vec<(String, Vec<u8>)>),
) {
    for name in COUNTS {
        assert_eq!(
            count(report, name),
            count(want_report, name),
            "{what}: {name}"
        );
    }
    assert_eq!(
        report["counts"]["by_reason"], want_report["counts"]["by_reason"],
        "{what}"
    );
    let names = |f: &[(String, Vec<u8>)]| f.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(files), names(want_files), "{what}: files");
    for ((name, got), (_, want)) in files.iter().zip(want_files) {
        assert!(
            got == want,
            "{what}: {name} differs from the in-memory run's"
        );
    }
}

#[test]
fn every_shard_count_gives_the_in_memory_bytes() {
    let dir = TempDir::new().expect("temp dir");
    let (jsonl, _) = support::generate(dir.path(), "jsonl", 40_000, SEED, "jsonl", 15_000);
    let (parquet, _) =
        support::generate(dir.path(), "parquet", 30_000, SEED + 1, "parquet", 10_000);
    let inputs = [jsonl.as_path(), parquet.as_path()];
    let expected = run(dir.path(), "in-memory", &inputs, &[]);
    assert_eq!(expected.0["shards"], 1);
    assert!(count(&expected.0, "duplicates") > 0 && count(&expected.0, "quarantined") > 0);
    assert!(expected.1.len() > 20, "a month of days");

    for settings in [
        &["--shards", "1"][..],
        &["--shards", "2", "--threads", "1"],
        &["--shards", "3", "--batch-size", "1000"],
        &["--shards", "7", "--threads", "2", "--batch-size", "7"],
        &["--shards", "64"],
    ] {
        let got = run(
            dir.path(),
            &format!("out{}", settings.join("")),
            &inputs,
            settings,
        );
        assert_eq!(got.0["shards"], settings[1].parse::<u64>().unwrap());
        assert_same(&format!("{settings:?}"), &got, &expected);
    }
}

#[test]
fn a_memory_limit_the_input_does_not_fit_spills_beside_the_output() {
    let dir = TempDir::new().expect("temp dir");
    let (input, _) = support::generate(dir.path(), "in", 300_000, SEED + 2, "jsonl", 100_000);
    let expected = run(dir.path(), "in-memory", &[&input], &[]);
    let limited = run(
        dir.path(),
        "limited",
        &[&input],
        &["--memory-limit", "64MiB"],
    );
    let shards = limited.0["shards"].as_u64().expect("shards");
    assert!(
        shards > 1,
        "300,000 records in 64 MiB must spill: {}",
        limited.0
    );
    assert_eq!(limited.0["memory_limit_bytes"], 64u64 << 20);
    assert_same("--memory-limit 64MiB", &limited, &expected);

    // The human summary says how the run used memory.
    let text = common::tally_ok(&[
        "run",
        "--input",
        s(&input),
        "--rule",
        s(&common::rule("creator-pay-v1")),
        "--out",
        s(&dir.path().join("summary")),
        "--memory-limit",
        "64MiB",
        "--quiet",
    ]);
    common::assert_mentions(
        &text,
        &[
            "limit 64 MiB",
            &format!("spilled to disk in {shards} shards"),
        ],
    );

    // Sizes that are not sizes are usage errors.
    for bad in ["lots", "1KiB"] {
        let out = common::tally(&[
            "run",
            "--input",
            s(&input),
            "--rule",
            s(&common::rule("creator-pay-v1")),
            "--out",
            s(&dir.path().join("bad")),
            "--memory-limit",
            bad,
        ]);
        assert_eq!(out.status.code(), Some(2), "--memory-limit {bad}");
        assert!(!dir.path().join("bad").exists());
    }
}

#[test]
fn a_window_recomputed_out_of_core_reconciles_like_in_memory() {
    let dir = TempDir::new().expect("temp dir");
    let (input, _) = support::generate(dir.path(), "in", 30_000, SEED + 3, "jsonl", 10_000);
    let v1 = common::rule("creator-pay-v1");
    let v2 = common::rule("creator-pay-v2");
    let mut outs = Vec::new();
    for (name, extra) in [("memory", &[][..]), ("sharded", &["--shards", "5"][..])] {
        let out = dir.path().join(name);
        support::run(&[&input], &v1, &out, extra);
        let mut args = vec!["--days", "2026-05-10..2026-05-12"];
        args.extend_from_slice(extra);
        let report = support::run(&[&input], &v2, &out, &args);
        assert!(count(&report, "outside_window") > 0);
        outs.push((report, output::data_files(&out), out));
    }
    let (a, b) = (&outs[0], &outs[1]);
    assert_same(
        "--days with --shards 5",
        &(b.0.clone(), b.1.clone()),
        &(a.0.clone(), a.1.clone()),
    );
    let changes = |out: &Path| {
        common::snapshot(&out.join("changes"))
            .into_iter()
            .collect::<Vec<_>>()
    };
    assert_eq!(changes(&a.2), changes(&b.2), "changesets differ");
}

#[test]
fn spill_files_are_removed_when_the_run_fails() {
    let dir = TempDir::new().expect("temp dir");
    let input = common::small_jsonl(dir.path(), 50);
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let trap = sandbox::component(dir.path(), "trap");
    let out = dir.path().join("out");
    let stderr = common::tally_err(&[
        "run",
        "--input",
        s(&input),
        "--rule",
        s(&trap),
        "--out",
        s(&out),
        "--shards",
        "3",
        "--work-dir",
        s(&work),
    ]);
    common::assert_mentions(&stderr, &["trapped", "nothing was written"]);
    assert!(
        spill_dirs(&work).is_empty(),
        "spill files left in {}",
        work.display()
    );
    assert!(spill_dirs(dir.path()).is_empty());
    assert!(!out.exists());
}

#[test]
fn compare_out_of_core_gives_the_in_memory_comparison() {
    let dir = TempDir::new().expect("temp dir");
    let (input, _) = support::generate(dir.path(), "in", 40_000, SEED + 4, "jsonl", 15_000);
    let (v1, v2) = (
        common::rule("creator-pay-v1"),
        common::rule("creator-pay-v2"),
    );
    let compare = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec![
            "compare",
            "--input",
            s(&input),
            "--rule",
            s(&v1),
            "--rule",
            s(&v2),
            "--format",
            "json",
            "--quiet",
            "--out",
            s(&out),
        ];
        args.extend_from_slice(extra);
        let mut json: serde_json::Value =
            serde_json::from_str(&common::tally_ok(&args)).expect("JSON");
        json.as_object_mut().unwrap().remove("elapsed_seconds");
        let mut files: Vec<Vec<u8>> = ["deltas.parquet", "changed-sample.parquet", "report.html"]
            .iter()
            .map(|f| std::fs::read(out.join(f)).expect("written"))
            .collect();
        // The text report, but for its last line: the time it took.
        let text = std::fs::read_to_string(out.join("report.txt")).expect("report.txt");
        let (report, elapsed) = text.rsplit_once('\n').expect("lines");
        assert!(elapsed.starts_with("elapsed "), "{elapsed}");
        files.push(report.as_bytes().to_vec());
        (json, files)
    };
    let (memory, memory_files) = compare("memory", &[]);
    assert!(
        !memory["sample"].as_array().expect("sample").is_empty(),
        "some verdicts change"
    );
    // The figures that explain the money are there to compare.
    for figure in [
        "by_transition",
        "by_content_kind",
        "by_user_tier",
        "by_country",
    ] {
        assert!(
            !memory["attribution"][figure]
                .as_array()
                .expect("a split")
                .is_empty(),
            "{figure}"
        );
    }
    assert!(memory["creators"]["losing"].as_u64() > Some(0));
    assert!(memory["days"].as_array().expect("days").len() > 20);
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    for shards in ["2", "5"] {
        let (sharded, files) = compare(
            &format!("sharded-{shards}"),
            &["--shards", shards, "--work-dir", s(&work)],
        );
        assert_eq!(sharded, memory, "--shards {shards}");
        for (name, (got, want)) in [
            "deltas.parquet",
            "changed-sample.parquet",
            "report.html",
            "report.txt",
        ]
        .iter()
        .zip(files.iter().zip(&memory_files))
        {
            assert!(got == want, "--shards {shards}: {name} differs");
        }
    }
    assert!(spill_dirs(&work).is_empty(), "spill files left behind");
}

#[test]
fn spill_directories_of_killed_runs_are_removed_and_live_ones_kept() {
    let dir = TempDir::new().expect("temp dir");
    let input = common::small_jsonl(dir.path(), 50);
    // Left by a run that was killed: nobody holds its lock.
    let abandoned = dir.path().join(".tally-spill-20260101T000000Z-deadbeef");
    std::fs::create_dir(&abandoned).unwrap();
    std::fs::write(abandoned.join("shard-0-0.arrow"), b"spilled").unwrap();
    // A run still going: its lock is held.
    let live = dir.path().join(".tally-spill-20260101T000000Z-live0000");
    std::fs::create_dir(&live).unwrap();
    let lock = std::fs::File::create(live.join(".lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let out = dir.path().join("out");
    let report = support::run(
        &[&input],
        &common::rule("creator-pay-v1"),
        &out,
        &["--shards", "2"],
    );
    assert_eq!(report["shards"], 2);
    assert!(
        !abandoned.exists(),
        "the killed run's spill directory is still there"
    );
    assert!(
        live.join(".lock").exists(),
        "a live run's spill directory was removed"
    );
    assert_eq!(
        spill_dirs(dir.path()),
        vec![live.clone()],
        "the run's own is gone"
    );
    drop(lock);
}
