//! Crash safety of the commit: a run killed with SIGKILL at any moment leaves
//! the output directory exactly in its previous state or exactly in the new
//! one, with a commit log that parses and has no gaps, and the next run
//! cleans up whatever the killed one left beside it. Concurrent runs on one
//! output are serialized: each gets its own, consecutive commit number.
//!
//! The kill times come from a fixed-seed generator, so a failure can be
//! replayed; about a third are spread over the whole run and the rest over
//! its commit (from the moment its staging directory appears).

use crate::common::{self, s, snapshot};
use crate::output;
use crate::support;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const SEED: u64 = 9_001;
/// Kills in all; each cycles through the variants of the new state.
const KILLS: usize = 24;

/// A small, fixed-seed pseudo-random sequence (SplitMix64).
struct Sequence(u64);

impl Sequence {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Copies a whole directory tree.
fn copy_tree(from: &Path, to: &Path) {
    common::copy_tree(from, to, &|_| false);
}

/// Fields of the JSON files that differ from run to run of the same work.
const RUN_SPECIFIC: [&str; 6] = [
    "run_id",
    "committed_at",
    "timings",
    "records_per_second",
    "peak_memory_bytes",
    "output",
];

fn strip_run_specific(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for key in RUN_SPECIFIC {
                map.remove(key);
            }
            map.values_mut().for_each(strip_run_specific);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_run_specific),
        _ => {}
    }
}

/// Every file of an output, JSON files without their run-specific fields
/// (pretty-printed again), others as they are.
fn normalized(out: &Path) -> Vec<(String, Vec<u8>)> {
    snapshot(out)
        .into_iter()
        .map(|(name, bytes)| {
            if name.ends_with(".json") {
                let mut value: Value = serde_json::from_slice(&bytes)
                    .unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
                strip_run_specific(&mut value);
                (name, serde_json::to_vec_pretty(&value).unwrap())
            } else {
                (name, bytes)
            }
        })
        .collect()
}

/// Where two snapshots first differ, for a readable failure.
fn first_difference(got: &[(String, Vec<u8>)], want: &[(String, Vec<u8>)]) -> String {
    let names = |x: &[(String, Vec<u8>)]| x.iter().map(|f| f.0.clone()).collect::<BTreeSet<_>>();
    let (g, w) = (names(got), names(want));
    if g != w {
        return format!(
            "files only here: {:?}; files missing: {:?}",
            g.difference(&w).collect::<Vec<_>>(),
            w.difference(&g).collect::<Vec<_>>()
        );
    }
    for ((name, a), (_, b)) in got.iter().zip(want) {
        if a != b {
            return format!("{name} differs");
        }
    }
    "no difference".to_string()
}

/// Asserts that every `_log/*.json` parses and that they are commits 1..=n,
/// each naming its own number; returns n.
fn check_log(out: &Path) -> u64 {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(out.join("_tally/log")).expect("a commit log") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let number: u64 = name
            .strip_suffix(".json")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("_log/{name} is not a commit"));
        let text = std::fs::read_to_string(&path).expect("readable log entry");
        let value: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("_log/{name} is corrupt: {e}"));
        assert_eq!(value["commit"].as_u64(), Some(number), "_log/{name}");
        numbers.push(number);
    }
    numbers.sort_unstable();
    let n = numbers.len() as u64;
    assert_eq!(numbers, (1..=n).collect::<Vec<_>>(), "commit numbers");
    n
}

/// The entries beside `out` that a run made: its staging directories.
fn staging_leftovers(out: &Path) -> Vec<String> {
    let prefix = format!(
        ".{}.tally-staging-",
        out.file_name().unwrap().to_string_lossy()
    );
    std::fs::read_dir(out.parent().unwrap())
        .expect("readable parent")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// `tally run` arguments for `inputs`, `rule` and `out`, as `support::run`
/// passes them, plus `extra`.
fn run_args(inputs: &Path, rule: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        "--input",
        s(inputs),
        "--rule",
        s(rule),
        "--out",
        s(out),
        "--quiet",
        "--json",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

fn spawn(args: &[String], stdout: Stdio) -> Child {
    Command::new(common::tally_bin())
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("tally starts")
}

/// One way to move the output from the old state to a new one.
struct Variant {
    what: &'static str,
    inputs: PathBuf,
    rule: PathBuf,
    extra: Vec<String>,
    /// The new state, computed by the same run on a copy of the old state.
    reference: Vec<(String, Vec<u8>)>,
    /// How long the reference run took, and its commit stage.
    wall: Duration,
    commit: Duration,
}

#[test]
fn a_run_killed_during_commit_leaves_the_old_state_or_the_new_one() {
    let started = Instant::now();
    let dir = TempDir::new().expect("temp dir");
    let (input, _) = support::generate(dir.path(), "events", 250_000, SEED, "jsonl", 62_500);
    let (v1, v2) = (
        common::rule("creator-pay-v1"),
        common::rule("creator-pay-v2"),
    );

    // The old state: creator-pay 1.0.0 over every event.
    let old = dir.path().join("old");
    support::run(&[&input], &v1, &old, &[]);
    let old_state = snapshot(&old);
    let days: Vec<String> = output::partitions(&old)
        .into_iter()
        .map(|p| p.day)
        .collect();

    // Fewer events: one input file less (rows change and some are zeroed).
    let fewer = dir.path().join("fewer");
    std::fs::create_dir_all(&fewer).unwrap();
    for (_, path) in support::files_in(&input).into_iter().skip(1) {
        std::fs::copy(&path, fewer.join(path.file_name().unwrap())).unwrap();
    }
    let window = format!("{}..{}", days[0], days[days.len() / 2]);
    let variants: Vec<Variant> = [
        ("v2 over every event", &input, &v2, vec![]),
        ("v1 over fewer events", &fewer, &v1, vec![]),
        (
            "v2 over half the days",
            &input,
            &v2,
            vec!["--days".to_string(), window],
        ),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (what, inputs, rule, extra))| {
        let target = dir.path().join(format!("reference-{i}"));
        copy_tree(&old, &target);
        let extra_refs: Vec<&str> = extra.iter().map(String::as_str).collect();
        let t = Instant::now();
        let report = support::run(&[inputs], rule, &target, &extra_refs);
        let wall = t.elapsed();
        assert_eq!(report["commit"], 2);
        let commit = Duration::from_secs_f64(report["timings"]["commit"].as_f64().unwrap());
        Variant {
            what,
            inputs: inputs.clone(),
            rule: rule.clone(),
            extra,
            reference: normalized(&target),
            wall,
            commit,
        }
    })
    .collect();
    for v in &variants {
        assert!(
            v.reference != normalized(&old),
            "{}: the new state must differ from the old",
            v.what
        );
    }

    // Kill runs on one output, again and again.
    let out = dir.path().join("out");
    copy_tree(&old, &out);
    let mut sequence = Sequence(SEED);
    let mut outcomes: Vec<(usize, &str, String)> = Vec::new();
    for attempt in 0..KILLS {
        let variant = &variants[attempt % 3];
        let extra: Vec<&str> = variant.extra.iter().map(String::as_str).collect();
        let args = run_args(&variant.inputs, &variant.rule, &out, &extra);
        let leftovers: BTreeSet<String> = staging_leftovers(&out).into_iter().collect();
        let r = sequence.unit();
        let mut child = spawn(&args, Stdio::null());
        let spawned = Instant::now();
        let when = if attempt % 3 == 0 {
            // Anywhere in the run.
            let delay = variant.wall.mul_f64(r * 1.05);
            std::thread::sleep(delay);
            format!("{delay:?} after start")
        } else {
            // During the commit: once its staging directory exists.
            let mut waited = None;
            while spawned.elapsed() < variant.wall * 4 {
                if staging_leftovers(&out)
                    .iter()
                    .any(|n| !leftovers.contains(n))
                {
                    waited = Some(spawned.elapsed());
                    break;
                }
                if child.try_wait().expect("wait").is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_micros(300));
            }
            let delay = variant.commit.mul_f64(r * 1.1);
            std::thread::sleep(delay);
            match waited {
                Some(w) => format!("{delay:?} into the commit ({w:?} after start)"),
                None => "the commit was not seen".to_string(),
            }
        };
        let finished_first = child.try_wait().expect("wait").is_some();
        child.kill().ok();
        let status = child.wait().expect("wait");

        assert!(out.is_dir(), "attempt {attempt} ({when}): no output at all");
        let now = snapshot(&out);
        let state = if now == old_state {
            assert_eq!(check_log(&out), 1);
            "old"
        } else {
            let got = normalized(&out);
            assert!(
                got == variant.reference,
                "attempt {attempt}: {} killed {when}: neither the old state nor the new one: {}",
                variant.what,
                first_difference(&got, &variant.reference)
            );
            assert_eq!(check_log(&out), 2);
            // Back to the old state for the next attempt.
            std::fs::remove_dir_all(&out).unwrap();
            copy_tree(&old, &out);
            "new"
        };
        if finished_first {
            assert!(
                status.success(),
                "attempt {attempt}: the run failed on its own"
            );
            assert_eq!(
                state, "new",
                "attempt {attempt}: a finished run left the old state"
            );
        }
        outcomes.push((attempt, state, when));
    }
    for (attempt, state, when) in &outcomes {
        eprintln!("kill {attempt:2}: {state} ({when})");
    }
    let olds = outcomes.iter().filter(|o| o.1 == "old").count();
    eprintln!(
        "{} kills: {olds} left the old state, {} the new one",
        outcomes.len(),
        outcomes.len() - olds
    );

    // A normal run afterwards succeeds, cleans up what killed runs left
    // beside the output, and writes the new state.
    let leftovers = staging_leftovers(&out);
    eprintln!(
        "staging directories left by killed runs: {}",
        leftovers.len()
    );
    let report = support::run(&[&input], &v2, &out, &[]);
    assert_eq!(report["commit"], 2);
    assert_eq!(check_log(&out), 2);
    let got = normalized(&out);
    assert!(
        got == variants[0].reference,
        "after the kills: {}",
        first_difference(&got, &variants[0].reference)
    );
    assert_eq!(
        staging_leftovers(&out),
        Vec::<String>::new(),
        "staging left behind"
    );
    eprintln!("kills: {:?}", started.elapsed());
}

#[test]
fn concurrent_runs_get_consecutive_commits() {
    let started = Instant::now();
    let dir = TempDir::new().expect("temp dir");
    let (input, _) = support::generate(dir.path(), "events", 60_000, SEED + 1, "jsonl", 30_000);
    let rules = [
        common::rule("creator-pay-v1"),
        common::rule("creator-pay-v2"),
    ];
    let hashes = rules.each_ref().map(|r| output::blake3_file(r));
    let out = dir.path().join("out");
    support::run(&[&input], &rules[0], &out, &[]);

    // The rows of a fresh run of each rule: what the output must hold after
    // a commit by that rule (reconciling adds nothing here: the same keys).
    let fresh = rules.each_ref().map(|rule| {
        let target = dir
            .path()
            .join(format!("fresh-{}", output::blake3_file(rule)));
        support::run(&[&input], rule, &target, &[]);
        output::partition_files(&target)
    });

    let mut committed = 1;
    for round in 0..3 {
        let children: Vec<Child> = (0..2)
            .map(|i| spawn(&run_args(&input, &rules[i], &out, &[]), Stdio::piped()))
            .collect();
        let reports: Vec<Value> = children
            .into_iter()
            .map(|child| {
                let done = child.wait_with_output().expect("wait");
                assert!(
                    done.status.success(),
                    "round {round}: a concurrent run failed: {}",
                    String::from_utf8_lossy(&done.stderr)
                );
                serde_json::from_slice(&done.stdout).expect("a JSON report")
            })
            .collect();
        let mut commits: Vec<u64> = reports
            .iter()
            .map(|r| r["commit"].as_u64().expect("commit"))
            .collect();
        commits.sort_unstable();
        assert_eq!(
            commits,
            [committed + 1, committed + 2],
            "round {round}: commit numbers"
        );
        committed += 2;
        assert_eq!(check_log(&out), committed);
        for report in &reports {
            let commit = report["commit"].as_u64().unwrap();
            let entry: Value = serde_json::from_slice(
                &std::fs::read(out.join(format!("_tally/log/{commit:08}.json"))).unwrap(),
            )
            .unwrap();
            assert_eq!(entry["run_id"], report["run_id"], "round {round}");
            assert_eq!(entry["rule"]["hash"], report["rule"]["hash"]);
        }

        // The output is the later commit's: its rule's rows, every partition
        // stamped with its hash.
        let last = reports
            .iter()
            .position(|r| r["commit"] == committed)
            .unwrap();
        assert!(
            output::partition_files(&out) == fresh[last],
            "round {round}: the output is not that of the last commit's rule"
        );
        for part in output::partitions(&out) {
            assert_eq!(part.metadata["tally.rule_hash"], hashes[last]);
        }
        assert_eq!(staging_leftovers(&out), Vec::<String>::new());
    }
    eprintln!("concurrent runs: {:?}", started.elapsed());
}

#[test]
fn an_output_reached_through_a_symlink_is_updated_where_it_is_or_refused() {
    // `--out` may name a symbolic link to an output directory (a "current"
    // link, say). A run must then commit into the directory the link points
    // to, keeping the link, or refuse and change nothing: the swap must not
    // replace the link itself and leave the real output behind.
    let dir = TempDir::new().expect("temp dir");
    let input = common::small_jsonl(dir.path(), 60);
    let real = dir.path().join("real");
    support::run(&[&input], &common::rule("creator-pay-v1"), &real, &[]);
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let before = snapshot(&real);

    let args = run_args(&input, &common::rule("creator-pay-v2"), &link, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let done = common::tally(&args);
    let is_link = std::fs::symlink_metadata(&link)
        .expect("the link is still there")
        .file_type()
        .is_symlink();
    if done.status.success() {
        let report: Value = serde_json::from_slice(&done.stdout).expect("a JSON report");
        assert!(
            is_link,
            "the run reported commit {} through {}, but replaced the link with a directory; \
             {} (where the link pointed) still holds {} commit(s)",
            report["commit"],
            link.display(),
            real.display(),
            check_log(&real)
        );
        assert_eq!(
            check_log(&real),
            2,
            "{} did not get the commit",
            real.display()
        );
    } else {
        assert!(is_link, "a refused run replaced the link");
        assert!(
            snapshot(&real) == before,
            "a refused run changed the output"
        );
    }
}
