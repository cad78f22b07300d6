//! `tally gen --populations FILE`: extra groups of creators, each with its
//! share of the new events and only the content kinds, actions, tiers and
//! countries it lists (re-sends and conflicts included), deterministic for a
//! seed; without populations the output is what it always was. A file that
//! does not describe populations is refused, saying why.

use crate::common::{self, s, tally_err, tally_ok};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

const POPULATIONS: &str = r#"{"populations": [
  {"name": "partners", "share": 0.1, "creators": 5, "creator_suffix": "-partner",
   "content_kinds": ["video"], "actions": ["publish", "export"],
   "user_tiers": ["enterprise"], "countries": ["DE", "XK"]},
  {"name": "edu", "share": 0.02, "creator_prefix": "edu-", "templates_per_creator": 1}
]}"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

/// `tally gen` into `dir/<name>`; returns the directory and stdout.
fn gen_into(dir: &Path, name: &str, seed: u64, format: &str, extra: &[&str]) -> (PathBuf, String) {
    let out = dir.join(name);
    let seed = seed.to_string();
    let mut args = vec![
        "gen",
        "--events",
        "30000",
        "--events-per-file",
        "12000",
        "--seed",
        &seed,
        "--format",
        format,
        "--out",
        s(&out),
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let stdout = tally_ok(&args);
    (out, stdout)
}

/// The number just before `word` in `text` (`1,234 unique`).
fn number_before(text: &str, word: &str) -> u64 {
    let words: Vec<&str> = text.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| w.trim_end_matches(',') == word)
        .unwrap_or_else(|| panic!("no {word:?} in: {text}"));
    words[at - 1].replace(',', "").parse().expect("a number")
}

/// A population's unique events as `tally gen` reports them
/// (`populations: partners 2,712 unique events (9.87%), ...`).
fn reported(stdout: &str, name: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("populations:"))
        .unwrap_or_else(|| panic!("no populations line in: {stdout}"));
    let after = line
        .split_once(&format!(" {name} "))
        .unwrap_or_else(|| panic!("no {name} in: {line}"))
        .1;
    after
        .split_whitespace()
        .next()
        .expect("a count")
        .replace(',', "")
        .parse()
        .expect("a number")
}

/// Every JSON record of the files under `dir` that parses as an object.
fn records(dir: &Path) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let bytes = std::fs::read(&file).expect("file");
        for line in bytes.split(|&b| b == b'\n') {
            if let Ok(serde_json::Value::Object(record)) = serde_json::from_slice(line) {
                out.push(record);
            }
        }
    }
    out
}

fn field<'a>(record: &'a serde_json::Map<String, serde_json::Value>, name: &str) -> &'a str {
    record.get(name).and_then(|v| v.as_str()).unwrap_or("")
}

#[test]
fn populations_take_their_share_and_use_only_what_they_list() {
    let dir = TempDir::new().expect("temp dir");
    let config = write(dir.path(), "populations.json", POPULATIONS);
    let (events, stdout) = gen_into(
        dir.path(),
        "events",
        11,
        "jsonl",
        &["--populations", s(&config)],
    );
    let unique = number_before(&stdout, "unique");
    let partners = reported(&stdout, "partners");
    let edu = reported(&stdout, "edu");

    // Every record of a partner, re-sends and conflicts too, uses only what
    // the population lists; its creators and templates are its own.
    let mut partner_ids = BTreeSet::new();
    let mut edu_ids = BTreeSet::new();
    let mut partner_creators = BTreeSet::new();
    let mut seen: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let all = records(&events);
    for record in &all {
        let creator = field(record, "creator_id");
        let id = field(record, "event_id").to_string();
        if creator.ends_with("-partner") {
            assert!(creator.starts_with("cr-"), "{creator}");
            assert!(
                field(record, "template_id").starts_with("tpl-partners-"),
                "{record:?}"
            );
            for name in ["content_kind", "action", "user_tier", "country"] {
                seen.entry(name)
                    .or_default()
                    .insert(field(record, name).to_string());
            }
            partner_creators.insert(creator.to_string());
            partner_ids.insert(id);
        } else if creator.starts_with("edu-") {
            assert!(field(record, "template_id").starts_with("tpl-edu-"));
            edu_ids.insert(id);
        } else {
            let template = field(record, "template_id");
            assert!(
                !template.starts_with("tpl-partners-") && !template.starts_with("tpl-edu-"),
                "{record:?}"
            );
        }
    }
    let set = |values: &[&str]| {
        values
            .iter()
            .map(|v| v.to_string())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(seen["content_kind"], set(&["video"]));
    assert_eq!(seen["action"], set(&["export", "publish"]));
    assert_eq!(seen["user_tier"], set(&["enterprise"]));
    assert_eq!(seen["country"], set(&["DE", "XK"]));
    assert_eq!(partner_creators.len(), 5, "{partner_creators:?}");
    assert!(partner_creators.contains("cr-000001-partner"));

    // As many distinct events as reported, in the share configured (of the
    // new events: binomial, a few standard deviations wide).
    assert_eq!(partner_ids.len() as u64, partners);
    assert_eq!(edu_ids.len() as u64, edu);
    let share = |n: u64| n as f64 / unique as f64;
    assert!(
        (0.09..0.11).contains(&share(partners)),
        "{}",
        share(partners)
    );
    assert!((0.015..0.025).contains(&share(edu)), "{}", share(edu));
    assert!(
        stdout.contains(&format!(
            "partners {} unique events ({:.2}%)",
            tally::report::thousands(partners),
            100.0 * share(partners)
        )),
        "{stdout}"
    );

    // A run reads them as valid events, in both formats: what gen planted is
    // what the run counts.
    let (parquet, parquet_stdout) = gen_into(
        dir.path(),
        "events-parquet",
        11,
        "parquet",
        &["--populations", s(&config)],
    );
    assert_eq!(reported(&parquet_stdout, "partners"), partners);
    for (input, stdout) in [(&events, &stdout), (&parquet, &parquet_stdout)] {
        let out = dir
            .path()
            .join(format!("out-{}", input.display().to_string().len()));
        let report: serde_json::Value = serde_json::from_str(&tally_ok(&[
            "run",
            "--input",
            s(input),
            "--rule",
            s(&common::rule("creator-pay-v1")),
            "--out",
            s(&out),
            "--quiet",
            "--json",
        ]))
        .expect("JSON report");
        assert_eq!(
            report["counts"]["unique"].as_u64(),
            Some(number_before(stdout, "unique")),
            "{report}"
        );
        assert_eq!(
            report["counts"]["quarantined"].as_u64(),
            Some(number_before(stdout, "quarantined")),
            "{report}"
        );
    }
}

#[test]
fn populations_are_deterministic_and_absent_ones_change_nothing() {
    let dir = TempDir::new().expect("temp dir");
    let config = write(dir.path(), "populations.json", POPULATIONS);
    let with = ["--populations", s(&config)];
    let (a, _) = gen_into(dir.path(), "a", 5, "jsonl", &with);
    let (b, _) = gen_into(dir.path(), "b", 5, "jsonl", &with);
    let (c, _) = gen_into(dir.path(), "c", 6, "jsonl", &with);
    let bytes = |dir: &Path| {
        let mut files: Vec<(String, Vec<u8>)> = common::snapshot(dir);
        files.sort();
        files
    };
    assert!(
        bytes(&a) == bytes(&b),
        "the same seed and populations give the same bytes"
    );
    assert!(bytes(&a) != bytes(&c), "another seed gives other bytes");

    // No populations, or an empty list of them: the bytes of plain `tally gen`.
    let empty = write(dir.path(), "empty.json", r#"{"populations": []}"#);
    let (plain, plain_stdout) = gen_into(dir.path(), "plain", 5, "jsonl", &[]);
    let (none, none_stdout) = gen_into(
        dir.path(),
        "none",
        5,
        "jsonl",
        &["--populations", s(&empty)],
    );
    assert!(bytes(&plain) == bytes(&none));
    assert!(!plain_stdout.contains("populations"));
    assert_eq!(
        plain_stdout.replace(s(&plain), "DIR"),
        none_stdout.replace(s(&none), "DIR")
    );
    assert!(bytes(&plain) != bytes(&a));
}

#[test]
fn a_bad_populations_file_is_refused_with_the_reason() {
    let dir = TempDir::new().expect("temp dir");
    let out = dir.path().join("events");
    let cases = [
        (
            r#"{"populations": [{"name": "x", "share": 0.1, "tiers": ["pro"]}]}"#,
            "unknown field `tiers`",
        ),
        (
            r#"{"populations": [{"name": "x", "share": 0.7}, {"name": "y", "share": 0.4}]}"#,
            "the shares add up to 1.1, more than 1",
        ),
        (
            r#"{"populations": [{"name": "x", "share": 0}]}"#,
            "share 0 is not a fraction above 0 and at most 1",
        ),
        (
            r#"{"populations": [{"name": "x", "share": 0.1, "content_kinds": ["gif"]}]}"#,
            "content_kinds: unknown value \"gif\" (one of template, image, video, audio, font)",
        ),
        (
            r#"{"populations": [{"name": "x", "share": 0.1, "countries": ["de"]}]}"#,
            "countries: \"de\" is not two upper-case ASCII letters",
        ),
        (
            r#"{"populations": [{"name": "X y", "share": 0.1}]}"#,
            "population name \"X y\"",
        ),
        (
            r#"{"populations": [{"name": "x", "share": 0.1}, {"name": "x", "share": 0.1}]}"#,
            "two populations are named \"x\"",
        ),
        (
            r#"{"populations": [{"name": "x", "share": 0.1, "creators": 100000}]}"#,
            "is already a creator of the generated traffic",
        ),
        ("populations = []", "expected value at line 1 column 1"),
    ];
    for (i, (text, reason)) in cases.iter().enumerate() {
        let config = write(dir.path(), &format!("bad-{i}.json"), text);
        let stderr = tally_err(&[
            "gen",
            "--events",
            "100",
            "--out",
            s(&out),
            "--populations",
            s(&config),
        ]);
        common::assert_mentions(&stderr, &[reason]);
    }
    let stderr = tally_err(&[
        "gen",
        "--events",
        "100",
        "--out",
        s(&out),
        "--populations",
        s(&dir.path().join("missing.json")),
    ]);
    common::assert_mentions(&stderr, &["missing.json", "cannot read it"]);
}
