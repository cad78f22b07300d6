//! Totals end to end: on generated data, the daily totals `tally run` writes
//! for creator-pay 1.0.0 and 2.0.0 equal an independent computation from the
//! raw input files (`model.rs`: the contract's validation, survivor rule and
//! the two policies, written again from the documents), and so do every count
//! of the report and every quarantined record. The rule hash and the input
//! fingerprint in the partitions' metadata are checked too.

use crate::common;
use crate::model::{self, Event, Expected, Verdict};
use crate::output::{self, blake3_file};
use crate::support::{self, Planted, assert_maps_eq, assert_seqs_eq, count, count_map};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tempfile::TempDir;

const RECORDS: u64 = 200_000;
const PER_FILE: u64 = 50_000;
const SEED: u64 = 20_260_501;

/// A policy of the model.
type Policy = fn(&Event) -> Verdict;

/// The two reference rules with the model of their policy.
fn rules() -> [(&'static str, &'static str, Policy); 2] {
    [
        ("creator-pay-v1", "1.0.0", model::creator_pay_v1),
        ("creator-pay-v2", "2.0.0", model::creator_pay_v2),
    ]
}

/// Reads the generated files with the model and checks the model against
/// what the generator says it planted (a check of the model itself).
fn expect(input: &Path, planted: &Planted, files: usize) -> Expected {
    let listed = support::files_in(input);
    assert_eq!(listed.len(), files, "files in {}", input.display());
    let named: Vec<(String, &Path)> = listed
        .iter()
        .map(|(n, p)| (n.clone(), p.as_path()))
        .collect();
    let expected = Expected::of_files(&named);
    assert_eq!(expected.records, planted.records);
    assert_eq!(expected.quarantine.len() as u64, planted.quarantined);
    assert_eq!(expected.duplicates, planted.duplicates);
    assert_eq!(expected.unique(), planted.unique);
    assert_eq!(expected.conflicts, planted.conflicts);
    expected
}

/// Runs `rule` over `input` and compares everything with the model.
fn check_run(
    input: &Path,
    expected: &Expected,
    rule_name: &str,
    version: &str,
    policy: fn(&Event) -> Verdict,
    out: &Path,
) {
    let rule = common::rule(rule_name);
    let hash = blake3_file(&rule);
    let report = support::run(&[input], &rule, out, &[]);

    // Counts conserve, and each equals the model's.
    let (records, quarantined) = (count(&report, "records"), count(&report, "quarantined"));
    let (duplicates, unique) = (count(&report, "duplicates"), count(&report, "unique"));
    assert_eq!(records, quarantined + duplicates + unique);
    assert_eq!(records, expected.records);
    assert_eq!(quarantined, expected.quarantine.len() as u64);
    assert_eq!(count(&report, "valid"), expected.valid);
    assert_eq!(duplicates, expected.duplicates);
    assert_eq!(count(&report, "conflicts"), expected.conflicts);
    assert_eq!(unique, expected.unique());
    assert_maps_eq(
        &count_map(&report, "quarantined_by_reason"),
        &expected.quarantined_by_reason(),
        "quarantined by reason",
    );
    assert_maps_eq(
        &count_map(&report, "by_reason"),
        &expected.by_reason(policy),
        &format!("{rule_name}: unique events by verdict reason"),
    );

    // The daily totals, read back from the Parquet files.
    let parts = output::partitions(out);
    let got = output::daily(&parts);
    let want = expected.daily(policy);
    assert_maps_eq(&got, &want, &format!("{rule_name}: daily totals"));
    let payable: i64 = want.values().map(|t| t.payable_events).sum();
    let amount: i64 = want.values().map(|t| t.amount_micros).sum();
    assert_eq!(count(&report, "payable"), payable as u64);
    assert_eq!(report["counts"]["amount_micros"], amount);
    assert_eq!(count(&report, "rows"), want.len() as u64);
    let days: BTreeSet<&String> = want.keys().map(|(day, _, _)| day).collect();
    assert_eq!(count(&report, "days"), days.len() as u64);
    assert_eq!(parts.len(), days.len());

    // Lineage: the rule hash is the component's blake3, in every row and file.
    assert_eq!(report["rule"]["hash"], hash.as_str());
    let fingerprint = report["input_fingerprint"].as_str().expect("fingerprint");
    for part in &parts {
        assert!(
            part.rows.iter().all(|row| row.5 == hash),
            "day {}: a rule_hash other than {hash}",
            part.day
        );
        let meta = |key: &str| part.metadata.get(key).map(String::as_str);
        assert_eq!(meta("tally.rule_hash"), Some(hash.as_str()), "{}", part.day);
        assert_eq!(meta("tally.rule_name"), Some("creator-pay"));
        assert_eq!(meta("tally.rule_version"), Some(version));
        assert_eq!(meta("tally.rule_world"), Some("tally:rules/rule@1.0.0"));
        // Each day is stamped with the fingerprint of the files its events
        // came from, which the day's manifest lists.
        let manifest = output::day_manifest(out, &part.day);
        let day_print = output::day_fingerprint(&manifest);
        assert_eq!(meta("tally.input_fingerprint"), Some(day_print.as_str()));
        assert_ne!(
            day_print, fingerprint,
            "a day's fingerprint is not the run's"
        );
        assert_eq!(meta("tally.compute_version"), Some("2"));
        assert_eq!(meta("tally.day"), Some(part.day.as_str()));
    }

    // The quarantine holds exactly the broken records, in input order.
    let quarantine = output::quarantine(out);
    assert_seqs_eq(
        &output::quarantine_keys(out),
        &expected.quarantine,
        "quarantined (file, position, reason)",
    );
    let raws: Vec<Option<String>> = quarantine
        .iter()
        .map(|q| {
            q.get("line")
                .map(|_| q["raw"].as_str().expect("raw").to_string())
        })
        .collect();
    assert_seqs_eq(&raws, &expected.quarantine_raw, "quarantined raw lines");
    for q in &quarantine {
        assert!(q["raw"].is_string(), "no raw record in {q}");
    }
}

#[test]
fn jsonl_totals_equal_an_independent_computation() {
    let started = Instant::now();
    let dir = TempDir::new().expect("temp dir");
    let (input, planted) =
        support::generate(dir.path(), "events", RECORDS, SEED, "jsonl", PER_FILE);
    let expected = expect(&input, &planted, 4);
    assert!(expected.conflicts > 0 && expected.duplicates > 0 && !expected.quarantine.is_empty());
    for (i, (rule, version, policy)) in rules().into_iter().enumerate() {
        check_run(
            &input,
            &expected,
            rule,
            version,
            policy,
            &dir.path().join(format!("out-{i}")),
        );
    }
    eprintln!("jsonl totals: {:?}", started.elapsed());
}

#[test]
fn parquet_totals_equal_an_independent_computation() {
    let started = Instant::now();
    let dir = TempDir::new().expect("temp dir");
    let (input, planted) =
        support::generate(dir.path(), "events", RECORDS, SEED, "parquet", PER_FILE);
    let expected = expect(&input, &planted, 4);
    assert!(expected.conflicts > 0 && !expected.quarantine.is_empty());
    for (i, (rule, version, policy)) in rules().into_iter().enumerate() {
        check_run(
            &input,
            &expected,
            rule,
            version,
            policy,
            &dir.path().join(format!("out-{i}")),
        );
    }

    // The JSONL files of the same seed hold the same valid records (only the
    // broken ones differ): the same daily totals, read from either format.
    let (jsonl, planted) = support::generate(dir.path(), "jsonl", RECORDS, SEED, "jsonl", PER_FILE);
    let from_jsonl = expect(&jsonl, &planted, 4);
    let out = dir.path().join("out-jsonl");
    support::run(&[&jsonl], &common::rule("creator-pay-v2"), &out, &[]);
    let from_parquet = output::daily(&output::partitions(&dir.path().join("out-1")));
    assert_maps_eq(
        &output::daily(&output::partitions(&out)),
        &from_parquet,
        "v2 totals from JSONL against Parquet",
    );
    assert_maps_eq(
        &from_jsonl.daily(model::creator_pay_v2),
        &expected.daily(model::creator_pay_v2),
        "modelled totals from JSONL against Parquet",
    );
    eprintln!("parquet totals: {:?}", started.elapsed());
}

#[test]
fn compressed_jsonl_totals_equal_an_independent_computation() {
    // Files of 25,000 records (about 7 MiB once decompressed, so read in
    // several blocks), gzip, zstd and plain, with line numbers in the
    // quarantine counted in the decompressed text.
    let dir = TempDir::new().expect("temp dir");
    let (input, planted) =
        support::generate(dir.path(), "events", 100_000, SEED + 1, "jsonl", 25_000);
    for (i, (_, path)) in support::files_in(&input).into_iter().enumerate() {
        let text = std::fs::read(&path).expect("read");
        let (ext, bytes) = match i % 4 {
            0 | 3 => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                std::io::Write::write_all(&mut gz, &text).expect("gzip");
                ("jsonl.gz", gz.finish().expect("gzip"))
            }
            1 => (
                "jsonl.zst",
                zstd::stream::encode_all(&text[..], 1).expect("zstd"),
            ),
            _ => continue,
        };
        std::fs::write(path.with_extension(ext), bytes).expect("write");
        std::fs::remove_file(&path).expect("remove");
    }
    let expected = expect(&input, &planted, 4);
    let (rule, version, policy) = rules()[1];
    check_run(
        &input,
        &expected,
        rule,
        version,
        policy,
        &dir.path().join("out"),
    );
}

/// Copies `files` into `dir` under new names: reversed order, in a subdirectory.
fn copy_renamed(files: &[(String, PathBuf)], dir: &Path) {
    let nested = dir.join("nested");
    std::fs::create_dir_all(&nested).expect("create dir");
    for (i, (_, path)) in files.iter().rev().enumerate() {
        let target = if i % 2 == 0 { dir } else { &nested };
        std::fs::copy(path, target.join(format!("copy-{i}.ndjson"))).expect("copy");
    }
}

#[test]
fn input_fingerprint_depends_on_contents_not_paths() {
    let dir = TempDir::new().expect("temp dir");
    let (input, _) = support::generate(dir.path(), "events", 40_000, SEED, "jsonl", 10_000);
    let files = support::files_in(&input);
    assert_eq!(files.len(), 4);
    let rule = common::rule("creator-pay-v1");

    let fingerprints = |out: &Path, report: &serde_json::Value| -> String {
        let from_report = report["input_fingerprint"].as_str().expect("fingerprint");
        let manifest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("_tally/manifest.json"))
                .expect("_tally/manifest.json"),
        )
        .expect("manifest is JSON");
        assert_eq!(manifest["lineage"]["input_fingerprint"], from_report);
        let mut all = from_report.to_string();
        for part in output::partitions(out) {
            let day_print = output::day_fingerprint(&output::day_manifest(out, &part.day));
            assert_eq!(
                part.metadata
                    .get("tally.input_fingerprint")
                    .map(String::as_str),
                Some(day_print.as_str()),
                "day {}",
                part.day
            );
            all.push_str(&day_print);
        }
        all
    };

    let first = dir.path().join("out-first");
    let report = support::run(&[&input], &rule, &first, &[]);
    let original = fingerprints(&first, &report);

    // The same contents under other names, in another order and depth.
    let copies = dir.path().join("elsewhere");
    copy_renamed(&files, &copies);
    let second = dir.path().join("out-second");
    let report = support::run(&[&copies], &rule, &second, &[]);
    assert_eq!(fingerprints(&second, &report), original);
    // Nothing run-specific is in the partitions: the same bytes.
    assert!(output::partition_files(&first) == output::partition_files(&second));

    // Files given one by one, in another order: still the same.
    let third = dir.path().join("out-third");
    let paths: Vec<&Path> = files.iter().rev().map(|(_, p)| p.as_path()).collect();
    let report = support::run(&paths, &rule, &third, &[]);
    assert_eq!(fingerprints(&third, &report), original);

    // Other contents give another fingerprint: one file fewer, or one byte changed.
    let fourth = dir.path().join("out-fourth");
    let report = support::run(&paths[1..], &rule, &fourth, &[]);
    assert_ne!(fingerprints(&fourth, &report), original);
    let edited = dir.path().join("edited");
    copy_renamed(&files, &edited);
    let victim = edited.join("copy-0.ndjson");
    let mut bytes = std::fs::read(&victim).expect("copy");
    let at = bytes.iter().position(|&b| b == b'{').expect("a record") + 1;
    bytes.insert(at, b' ');
    std::fs::write(&victim, bytes).expect("write");
    let fifth = dir.path().join("out-fifth");
    let report = support::run(&[&edited], &rule, &fifth, &[]);
    assert_ne!(fingerprints(&fifth, &report), original);
    // ... though the records, and so the partitions' rows, are the same.
    assert_eq!(
        output::daily(&output::partitions(&fifth)),
        output::daily(&output::partitions(&first))
    );
}
