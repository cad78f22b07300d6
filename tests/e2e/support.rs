//! Driving `tally gen` and `tally run` for the data-path tests, and comparing
//! large results readably.

#![allow(dead_code)]

use crate::common::{self, s};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};

/// What `tally gen` says it planted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planted {
    pub records: u64,
    pub conflicts: u64,
    pub quarantined: u64,
    pub duplicates: u64,
    pub unique: u64,
}

/// Runs `tally gen` into `dir/<name>` and returns the directory and what was planted.
pub fn generate(
    dir: &Path,
    name: &str,
    events: u64,
    seed: u64,
    format: &str,
    per_file: u64,
) -> (PathBuf, Planted) {
    let out = dir.join(name);
    let stdout = common::tally_ok(&[
        "gen",
        "--events",
        &events.to_string(),
        "--seed",
        &seed.to_string(),
        "--out",
        s(&out),
        "--format",
        format,
        "--events-per-file",
        &per_file.to_string(),
        "--quiet",
    ]);
    // "wrote 200,000 records in 4 file(s) under ..."
    // "  planted: 10,053 exact re-sends, 1,882 late re-sends, 94 conflicts, 1,023 broken records"
    // "  a correct run reports 1,023 quarantined, 12,029 duplicates, 186,948 unique"
    let number_before = |word: &str| -> u64 {
        let words: Vec<&str> = stdout.split_whitespace().collect();
        let at = words
            .iter()
            .position(|w| w.trim_end_matches(',') == word)
            .unwrap_or_else(|| panic!("no {word:?} in gen output: {stdout}"));
        words[at - 1]
            .replace(',', "")
            .parse()
            .unwrap_or_else(|_| panic!("no number before {word:?} in: {stdout}"))
    };
    let planted = Planted {
        records: number_before("records"),
        conflicts: number_before("conflicts"),
        quarantined: number_before("quarantined"),
        duplicates: number_before("duplicates"),
        unique: number_before("unique"),
    };
    assert_eq!(planted.records, events);
    (out, planted)
}

/// The files of a directory (not recursive), sorted by name, each named as a
/// run given the directory will name it.
pub fn files_in(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("readable dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| (p.display().to_string(), p))
        .collect()
}

/// `tally run --quiet` with `inputs`, `rule` and `out`, plus `extra`; asserts
/// success without a panic and returns the JSON report.
pub fn run(inputs: &[&Path], rule: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["run"];
    for input in inputs {
        args.push("--input");
        args.push(s(input));
    }
    args.extend(["--rule", s(rule), "--out", s(out), "--quiet", "--json"]);
    args.extend_from_slice(extra);
    let output = common::tally(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && !stderr.contains("panicked"),
        "tally {args:?} failed:\nstderr: {stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("--json prints the report");
    // The printed report is the run's figures, as _tally/report.json holds
    // them, with what any run's report says, failed or not, around them.
    let mut figures = report.clone();
    let around = figures.as_object_mut().expect("the report is an object");
    assert_eq!(around.remove("schema_version"), Some(1.into()));
    assert_eq!(around.remove("status"), Some("succeeded".into()));
    assert_eq!(around.remove("error"), Some(serde_json::Value::Null));
    assert_eq!(around.remove("rule_reference"), Some(s(rule).into()));
    let given: Vec<serde_json::Value> = inputs.iter().map(|i| s(i).into()).collect();
    assert_eq!(around.remove("inputs_given"), Some(given.into()));
    assert_eq!(
        figures,
        common::report(out),
        "stdout and _tally/report.json differ"
    );
    let checks = report["checks"].as_array().expect("checks");
    assert!(
        checks.iter().all(|c| c["ok"] == true),
        "failed checks: {checks:?}"
    );
    // Linux says how much memory the run took at its peak.
    let peak = report["peak_memory_bytes"].as_u64().unwrap_or(0);
    assert!(peak > 1 << 20, "peak memory {peak} bytes");
    report
}

/// Asserts two maps are equal; on failure shows the first differences only.
pub fn assert_maps_eq<K: Ord + Debug, V: PartialEq + Debug>(
    got: &BTreeMap<K, V>,
    want: &BTreeMap<K, V>,
    what: &str,
) {
    if got == want {
        return;
    }
    let mut lines = Vec::new();
    for (k, v) in want {
        match got.get(k) {
            None => lines.push(format!("missing {k:?}: want {v:?}")),
            Some(g) if g != v => lines.push(format!("{k:?}: got {g:?}, want {v:?}")),
            Some(_) => {}
        }
    }
    for (k, v) in got {
        if !want.contains_key(k) {
            lines.push(format!("unexpected {k:?}: {v:?}"));
        }
    }
    let shown: Vec<&String> = lines.iter().take(12).collect();
    panic!(
        "{what}: {} differences ({} entries, {} expected); first ones:\n{shown:#?}",
        lines.len(),
        got.len(),
        want.len()
    );
}

/// Asserts two sequences are equal; on failure shows the first difference.
pub fn assert_seqs_eq<T: PartialEq + Debug>(got: &[T], want: &[T], what: &str) {
    if got == want {
        return;
    }
    let first = got.iter().zip(want).position(|(g, w)| g != w);
    match first {
        Some(i) => panic!(
            "{what}: first difference at {i}: got {:?}, want {:?} ({} vs {} items)",
            got[i],
            want[i],
            got.len(),
            want.len()
        ),
        None => panic!(
            "{what}: {} items, want {}; the longer one goes on with {:?}",
            got.len(),
            want.len(),
            if got.len() > want.len() {
                &got[want.len()..]
            } else {
                &want[got.len()..]
            }
            .iter()
            .take(5)
            .collect::<Vec<_>>()
        ),
    }
}

/// A report count as u64.
pub fn count(report: &serde_json::Value, name: &str) -> u64 {
    report["counts"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("counts.{name} in {}", report["counts"]))
}

/// A report map of counts (`by_reason`, `quarantined_by_reason`).
pub fn count_map(report: &serde_json::Value, name: &str) -> BTreeMap<String, u64> {
    report["counts"][name]
        .as_object()
        .unwrap_or_else(|| panic!("counts.{name}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().expect("a count")))
        .collect()
}
