//! Determinism: the data files of a run (every `daily/day=*/part-0.parquet` and the
//! quarantine file) are the same bytes whatever `--threads` and
//! `--batch-size`, for JSONL and Parquet input alike; the same files under
//! other names give the same partitions; and the same records cut into other
//! files, in another order and compression, give the same rows.

use crate::common;
use crate::output;
use crate::support::{self, assert_maps_eq, count};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tempfile::TempDir;

const SEED: u64 = 77;

/// The settings every run of one input is made with; all must agree.
const SETTINGS: [&[&str]; 5] = [
    &["--threads", "1", "--batch-size", "16384"],
    &["--threads", "2", "--batch-size", "16384"],
    &["--threads", "2", "--batch-size", "1000"],
    &["--threads", "1", "--batch-size", "1000"],
    &["--threads", "2", "--batch-size", "7"],
];

/// Data files by relative path, with their bytes.
type DataFiles = Vec<(String, Vec<u8>)>;

/// Runs `input` with every setting and asserts the data files are identical.
fn same_bytes_for_every_setting(dir: &Path, input: &Path, rule: &str) {
    let rule = common::rule(rule);
    let mut first: Option<(DataFiles, &[&str])> = None;
    for (i, settings) in SETTINGS.iter().enumerate() {
        let out = dir.join(format!("out-{i}"));
        let started = Instant::now();
        let report = support::run(&[input], &rule, &out, settings);
        eprintln!("{settings:?}: {:?}", started.elapsed());
        let files = output::data_files(&out);
        assert!(
            files
                .iter()
                .filter(|(n, _)| n.starts_with("daily/day="))
                .count()
                > 20,
            "a month of days"
        );
        assert!(count(&report, "quarantined") > 0);
        match &first {
            None => first = Some((files, settings)),
            Some((expected, with)) => {
                let names =
                    |f: &[(String, Vec<u8>)]| f.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
                assert_eq!(names(&files), names(expected), "{settings:?} vs {with:?}");
                for ((name, got), (_, want)) in files.iter().zip(expected) {
                    assert!(
                        got == want,
                        "{name} differs between {settings:?} and {with:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn jsonl_output_is_the_same_bytes_whatever_threads_and_batch_size() {
    let dir = TempDir::new().expect("temp dir");
    let (input, _) = support::generate(dir.path(), "events", 120_000, SEED, "jsonl", 40_000);
    same_bytes_for_every_setting(dir.path(), &input, "creator-pay-v2");
}

#[test]
fn parquet_output_is_the_same_bytes_whatever_threads_and_batch_size() {
    let dir = TempDir::new().expect("temp dir");
    // 150,000 rows in one file: two row groups, read in parallel, the bigger
    // one in slices of rows (two with one thread, four with two).
    let (input, _) = support::generate(dir.path(), "events", 150_000, SEED, "parquet", 150_000);
    same_bytes_for_every_setting(dir.path(), &input, "creator-pay-v1");
}

/// Copies `from`'s files into `to` under other names, so that they sort in
/// the opposite order, and half of them one directory deeper.
fn copy_renamed(from: &Path, to: &Path) -> Vec<(String, String)> {
    let files = support::files_in(from);
    let deeper = to.join("more");
    std::fs::create_dir_all(&deeper).expect("create dir");
    let mut renamed = Vec::new();
    for (i, (name, path)) in files.iter().enumerate() {
        let ext = path.extension().expect("extension").to_string_lossy();
        let target_dir = if i % 2 == 1 { &deeper } else { to };
        let target = target_dir.join(format!("batch-{}.{ext}", files.len() - i));
        std::fs::copy(path, &target).expect("copy");
        renamed.push((name.clone(), target.display().to_string()));
    }
    renamed
}

#[test]
fn renamed_input_files_give_the_same_partitions() {
    let dir = TempDir::new().expect("temp dir");
    for format in ["jsonl", "parquet"] {
        let (input, _) = support::generate(
            dir.path(),
            &format!("events-{format}"),
            60_000,
            SEED,
            format,
            15_000,
        );
        let copies = dir.path().join(format!("copies-{format}"));
        let renamed = copy_renamed(&input, &copies);
        let rule = common::rule("creator-pay-v1");
        let (a, b) = (
            dir.path().join(format!("out-a-{format}")),
            dir.path().join(format!("out-b-{format}")),
        );
        support::run(&[&input], &rule, &a, &[]);
        support::run(&[&copies], &rule, &b, &[]);
        assert!(
            output::partition_files(&a) == output::partition_files(&b),
            "{format}: partitions differ"
        );
        // The quarantine names the files as they were found, and otherwise
        // holds the same records.
        let mut original = output::quarantine(&a);
        for q in &mut original {
            let file = q["file"].as_str().expect("file").to_string();
            let new_name = &renamed
                .iter()
                .find(|(old, _)| *old == file)
                .expect("renamed")
                .1;
            q["file"] = serde_json::Value::from(new_name.as_str());
        }
        let key = |q: &serde_json::Value| q.to_string();
        let mut copied = output::quarantine(&b);
        original.sort_by_key(key);
        copied.sort_by_key(key);
        assert_eq!(original, copied, "{format}: quarantine");
        assert!(!copied.is_empty());
    }
}

/// Every line of the JSONL files of `dir`, in file order.
fn all_lines(dir: &Path) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    for (_, path) in support::files_in(dir) {
        let bytes = std::fs::read(path).expect("input");
        lines.extend(bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec));
        if lines.last().is_some_and(Vec::is_empty) {
            lines.pop();
        }
    }
    lines
}

/// Writes `lines` as one file of the given compression.
fn write_lines(path: &PathBuf, lines: &[Vec<u8>]) {
    let mut text = Vec::new();
    for line in lines {
        text.extend_from_slice(line);
        text.push(b'\n');
    }
    let name = path.to_string_lossy();
    let bytes = if name.ends_with(".gz") {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).expect("gzip");
        gz.finish().expect("gzip")
    } else if name.ends_with(".zst") {
        zstd::stream::encode_all(&text[..], 3).expect("zstd")
    } else {
        text
    };
    std::fs::write(path, bytes).expect("write input");
}

#[test]
fn the_same_records_split_and_shuffled_differently_give_the_same_rows() {
    let dir = TempDir::new().expect("temp dir");
    let (input, _) = support::generate(dir.path(), "events", 80_000, SEED, "jsonl", 20_000);
    let mut lines = all_lines(&input);

    // A fixed shuffle (a linear congruential generator driving Fisher-Yates):
    // re-sends and conflicts end up in other files than their originals, and
    // before them.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for i in (1..lines.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let j = (state >> 33) as usize % (i + 1);
        lines.swap(i, j);
    }
    // Uneven pieces in three encodings.
    let shuffled = dir.path().join("shuffled");
    std::fs::create_dir_all(&shuffled).expect("create dir");
    let cuts = [0, 7, 31_000, 52_345, lines.len()];
    let names = ["a.jsonl", "b.jsonl.gz", "c.ndjson.zst", "d.json"];
    for (k, name) in names.iter().enumerate() {
        write_lines(&shuffled.join(name), &lines[cuts[k]..cuts[k + 1]]);
    }

    let rule = common::rule("creator-pay-v2");
    let (a, b) = (dir.path().join("out-a"), dir.path().join("out-b"));
    let report_a = support::run(&[&input], &rule, &a, &[]);
    let report_b = support::run(
        &[&shuffled],
        &rule,
        &b,
        &["--threads", "1", "--batch-size", "999"],
    );
    for name in [
        "records",
        "quarantined",
        "valid",
        "duplicates",
        "conflicts",
        "unique",
        "payable",
        "amount_micros",
        "rows",
        "days",
    ] {
        assert_eq!(report_a["counts"][name], report_b["counts"][name], "{name}");
    }
    assert_eq!(
        report_a["counts"]["by_reason"],
        report_b["counts"]["by_reason"]
    );
    assert_eq!(
        report_a["counts"]["quarantined_by_reason"],
        report_b["counts"]["quarantined_by_reason"]
    );
    assert!(count(&report_a, "conflicts") > 0);

    let (parts_a, parts_b) = (output::partitions(&a), output::partitions(&b));
    assert_maps_eq(
        &output::daily(&parts_b),
        &output::daily(&parts_a),
        "daily rows",
    );
    // The metadata differs in the input fingerprint only: other files, other bytes.
    for (pa, pb) in parts_a.iter().zip(&parts_b) {
        let mut ma = pa.metadata.clone();
        let mut mb = pb.metadata.clone();
        let (fa, fb) = (
            ma.remove("tally.input_fingerprint"),
            mb.remove("tally.input_fingerprint"),
        );
        assert_ne!(fa, fb);
        assert_eq!(ma, mb, "day {}", pa.day);
    }
}
