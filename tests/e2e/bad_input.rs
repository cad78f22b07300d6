//! Bad input: never a panic, always a clear error or a quarantined record.
//!
//! A truncated or corrupt compressed or Parquet file fails the run with an
//! error that names it, and leaves an existing output exactly as it was; bad
//! records inside readable files (a cut last line, invalid UTF-8, a Parquet
//! column of the wrong type or missing) are quarantined with the contract's
//! reason; empty files, empty directories, missing paths and an `--out` that
//! is not Tally's are handled plainly. Parquet timestamps of every unit and
//! strings in every Arrow encoding are read as the same events.

use crate::common::{self, s, snapshot};
use crate::model::{self, Expected};
use crate::output;
use crate::support::{self, assert_maps_eq, assert_seqs_eq, count};
use arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, LargeStringArray, StringArray, StringViewArray,
    TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
    TimestampSecondArray,
};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tempfile::TempDir;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A valid event as one JSON line, on 2026-05-`day`.
fn event_json(id: &str, day: u32, creator: &str, template: &str) -> String {
    format!(
        r#"{{"event_id":"{id}","occurred_at":"2026-05-{day:02}T10:00:00Z","ingested_at":"2026-05-{day:02}T10:00:05Z","creator_id":"{creator}","template_id":"{template}","brand_id":null,"content_kind":"template","action":"use","user_tier":"pro","country":"US"}}"#
    )
}

/// `n` valid events as JSONL text, over a few days, creators and templates.
fn events_text(n: usize) -> String {
    let mut text = String::new();
    for i in 0..n {
        let line = event_json(
            &format!("ev-{i}"),
            1 + (i % 5) as u32,
            &format!("cr-{}", i % 7),
            &format!("tpl-{}", i % 11),
        );
        text.push_str(&line);
        text.push('\n');
    }
    text
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).expect("gzip");
    gz.finish().expect("gzip")
}

/// zstd with a content checksum, as the `zstd` tool writes by default, so
/// that corruption is detectable.
fn zstd(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = zstd::stream::Encoder::new(Vec::new(), 3).expect("zstd");
    encoder.include_checksum(true).expect("zstd checksum");
    encoder.write_all(bytes).expect("zstd");
    encoder.finish().expect("zstd")
}

/// An output directory written by a good run, to check failed runs leave it alone.
struct Existing {
    dir: PathBuf,
    out: PathBuf,
    before: Vec<(String, Vec<u8>)>,
}

impl Existing {
    fn new(dir: &Path) -> Existing {
        let work = dir.join("existing");
        std::fs::create_dir_all(&work).expect("create dir");
        let input = common::small_jsonl(&work, 10);
        let out = dir.join("out");
        support::run(&[&input], &common::rule("creator-pay-v1"), &out, &[]);
        let before = snapshot(&out);
        Existing {
            dir: dir.to_path_buf(),
            out,
            before,
        }
    }

    /// Runs `tally run` on `inputs` into the existing output; expects a clean
    /// failure that leaves the output as it was. Returns stderr.
    fn run_fails(&self, inputs: &[&Path]) -> String {
        let rule = common::rule("creator-pay-v1");
        let mut args = vec!["run"];
        for input in inputs {
            args.extend(["--input", s(input)]);
        }
        args.extend(["--rule", s(&rule), "--out", s(&self.out), "--quiet"]);
        let stderr = common::tally_err(&args);
        assert!(
            snapshot(&self.out) == self.before,
            "a failed run changed the existing output; stderr: {stderr}"
        );
        for entry in std::fs::read_dir(&self.dir).expect("readable dir") {
            let name = entry.expect("dir entry").file_name();
            let name = name.to_string_lossy();
            assert!(
                !name.starts_with(".out.tally-staging-"),
                "a failed run left {name} behind"
            );
        }
        stderr
    }
}

// ---------------------------------------------------------------------------
// Compressed files
// ---------------------------------------------------------------------------

/// A good compressed file runs. Cut in half, missing its last bytes,
/// corrupted in the middle, followed by garbage, or empty (zero bytes are not
/// a compressed stream), it fails the run naming the file, alone or among
/// good files, and the existing output is untouched.
fn broken_compressed_files_fail(ext: &str, compress: fn(&[u8]) -> Vec<u8>) {
    let dir = TempDir::new().expect("temp dir");
    let existing = Existing::new(dir.path());
    let text = events_text(3_000);
    let whole = compress(text.as_bytes());

    let good = dir.path().join(format!("good.jsonl.{ext}"));
    std::fs::write(&good, &whole).expect("write");
    let report = support::run(
        &[&good],
        &common::rule("creator-pay-v1"),
        &dir.path().join("good-out"),
        &[],
    );
    assert_eq!(count(&report, "records"), 3_000);
    assert_eq!(count(&report, "unique"), 3_000);

    let mut corrupt = whole.clone();
    let middle = corrupt.len() / 2;
    for b in &mut corrupt[middle..middle + 16] {
        *b ^= 0x5a;
    }
    let mut trailing = whole.clone();
    trailing.extend_from_slice(b"this is not compressed data\n");
    let cases = [
        ("truncated", whole[..whole.len() / 2].to_vec()),
        ("tail-cut", whole[..whole.len() - 3].to_vec()),
        ("corrupt", corrupt),
        ("trailing-garbage", trailing),
        ("empty", Vec::new()),
    ];
    for (name, bytes) in cases {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).expect("create dir");
        let bad = sub.join(format!("{name}.jsonl.{ext}"));
        std::fs::write(&bad, bytes).expect("write");

        let stderr = existing.run_fails(&[&bad]);
        common::assert_mentions(&stderr, &[s(&bad), "truncated or corrupt"]);

        // Among good files, found in a directory: the run still fails.
        std::fs::copy(&good, sub.join("a-good.jsonl")).expect("copy");
        std::fs::write(sub.join("z-good.jsonl"), events_text(10)).expect("write");
        let stderr = existing.run_fails(&[&sub]);
        common::assert_mentions(&stderr, &[s(&bad), "truncated or corrupt"]);
    }
}

#[test]
fn broken_gzip_files_fail_naming_the_file() {
    broken_compressed_files_fail("gz", gzip);
}

#[test]
fn broken_zstd_files_fail_naming_the_file() {
    broken_compressed_files_fail("zst", zstd);
}

#[test]
fn several_gzip_members_are_read_as_one_stream() {
    // `cat a.gz b.gz > ab.gz` is a valid gzip file holding both texts.
    let dir = TempDir::new().expect("temp dir");
    let text = events_text(100);
    let (first, second) = text.split_at(text.find("\n{\"event_id\":\"ev-60\"").unwrap() + 1);
    let mut both = gzip(first.as_bytes());
    both.extend(gzip(second.as_bytes()));
    let path = dir.path().join("members.jsonl.gz");
    std::fs::write(&path, both).expect("write");
    let out = dir.path().join("out");
    let report = support::run(&[&path], &common::rule("creator-pay-v1"), &out, &[]);
    assert_eq!(count(&report, "records"), 100);
    assert_eq!(count(&report, "unique"), 100);
}

// ---------------------------------------------------------------------------
// Bad lines in readable JSON files
// ---------------------------------------------------------------------------

#[test]
fn a_cut_last_line_is_quarantined_and_the_rest_processed() {
    let dir = TempDir::new().expect("temp dir");
    let mut text = events_text(50);
    let last = event_json("ev-last", 3, "cr-x", "tpl-x");
    let cut = &last[..last.len() / 2];
    text.push_str(cut);

    for (name, bytes) in [
        ("cut.jsonl", text.as_bytes().to_vec()),
        ("cut.jsonl.gz", gzip(text.as_bytes())),
        ("cut.jsonl.zst", zstd(text.as_bytes())),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        let out = dir.path().join(format!("out-{name}"));
        let report = support::run(&[&path], &common::rule("creator-pay-v1"), &out, &[]);
        assert_eq!(count(&report, "records"), 51, "{name}");
        assert_eq!(count(&report, "quarantined"), 1, "{name}");
        assert_eq!(count(&report, "unique"), 50, "{name}");
        let q = output::quarantine(&out);
        assert_eq!(q.len(), 1);
        assert_eq!(q[0]["file"], s(&path));
        assert_eq!(q[0]["line"], 51);
        assert_eq!(q[0]["reason"], "malformed-json");
        assert_eq!(q[0]["raw"], cut);
        let rows: i64 = output::daily(&output::partitions(&out))
            .values()
            .map(|t| t.events)
            .sum();
        assert_eq!(rows, 50);
    }
}

/// Runs one JSONL file and returns `(line, reason, raw)` of each quarantined record.
fn quarantined_lines(
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> (serde_json::Value, Vec<(u64, String, String)>) {
    quarantined_lines_with(dir, name, bytes, &[])
}

/// [`quarantined_lines`] with more arguments for `tally run`.
fn quarantined_lines_with(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    extra: &[&str],
) -> (serde_json::Value, Vec<(u64, String, String)>) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write");
    let out = dir.join(format!("out-{name}"));
    let report = support::run(&[&path], &common::rule("creator-pay-v1"), &out, extra);
    let q = output::quarantine(&out)
        .iter()
        .map(|q| {
            (
                q["line"].as_u64().expect("line"),
                q["reason"].as_str().expect("reason").to_string(),
                q["raw"].as_str().expect("raw").to_string(),
            )
        })
        .collect();
    (report, q)
}

/// `line` with the first `\u{1}` character replaced by `bytes`.
fn splice_bytes(line: &str, bytes: &[u8]) -> Vec<u8> {
    let mut line = line.as_bytes().to_vec();
    let at = line.iter().position(|&b| b == 1).expect("a marker");
    line.splice(at..at + 1, bytes.iter().copied());
    line
}

#[test]
fn invalid_utf8_in_a_field_or_key_is_malformed_json() {
    let dir = TempDir::new().expect("temp dir");
    let good = event_json("ok-1", 1, "cr-1", "tpl-1");
    let lines: Vec<Vec<u8>> = vec![
        // Inside creator_id.
        splice_bytes(
            &good
                .replace("ok-1", "bad-1")
                .replace("\"cr-1\"", "\"cr-\u{1}\""),
            &[0xff, 0xfe],
        ),
        good.clone().into_bytes(),
        good.replace("ok-1", "ok-2").into_bytes(),
        // Inside event_id: an invalid two-byte sequence.
        splice_bytes(&good.replace("ok-1", "bad-\u{1}"), &[0xc3, 0x28]),
        // Inside a key: a cut three-byte sequence.
        splice_bytes(
            &good
                .replace("ok-1", "bad-3")
                .replace("\"country\"", "\"count\u{1}ry\""),
            &[0xe2, 0x82],
        ),
        // A lone continuation byte as the whole line.
        vec![0x80],
    ];
    let text = lines.join(&b"\n"[..]);

    let (report, q) = quarantined_lines(dir.path(), "utf8.jsonl", &text);
    assert_eq!(count(&report, "records"), 6);
    assert_eq!(count(&report, "unique"), 2);
    let got: Vec<(u64, &str)> = q.iter().map(|(l, r, _)| (*l, r.as_str())).collect();
    assert_eq!(
        got,
        [
            (1, "malformed-json"),
            (4, "malformed-json"),
            (5, "malformed-json"),
            (6, "malformed-json")
        ]
    );
    // The raw line is kept, invalid bytes shown as replacement characters.
    for (line, _, raw) in &q {
        assert!(raw.contains('\u{fffd}'), "line {line}: {raw}");
    }
    assert!(q[0].2.starts_with("{\"event_id\":\"bad-1\""));
}

#[test]
fn invalid_utf8_anywhere_in_a_line_is_malformed_json() {
    // The contract: a line that is not valid UTF-8 is `malformed-json`,
    // wherever the bad bytes are. Unknown fields are ignored only once the
    // line is a JSON object, and a field of the wrong type is a bad type only
    // once the line is JSON.
    let dir = TempDir::new().expect("temp dir");
    let good = event_json("ok-1", 1, "cr-1", "tpl-1");
    let with_extra = |id: &str, extra: &[u8]| -> Vec<u8> {
        let mut line = good.replace("ok-1", id).into_bytes();
        line.pop(); // the closing brace
        line.extend_from_slice(extra);
        line.push(b'}');
        line
    };
    let lines = [
        good.clone().into_bytes(),
        // In the value of an unknown field.
        with_extra("bad-note", b",\"note\":\"caf\xe9\""),
        // Deep inside an unknown field.
        with_extra("bad-nested", b",\"client\":{\"tags\":[\"\xff\xfe\"]}"),
        // In a key inside an unknown field.
        with_extra("bad-nested-key", b",\"client\":{\"k\xff\":1}"),
        // Inside an array given as creator_id.
        splice_bytes(
            &good
                .replace("ok-1", "bad-array")
                .replace("\"cr-1\"", "[\"cr-\u{1}\"]"),
            &[0xff],
        ),
    ];
    let (report, q) = quarantined_lines(dir.path(), "utf8-anywhere.jsonl", &lines.join(&b"\n"[..]));
    let got: Vec<(u64, &str)> = q.iter().map(|(l, r, _)| (*l, r.as_str())).collect();
    assert_eq!(
        got,
        [
            (2, "malformed-json"),
            (3, "malformed-json"),
            (4, "malformed-json"),
            (5, "malformed-json")
        ],
        "(line, reason) of the quarantined lines; report counts: {}",
        report["counts"]
    );
    assert_eq!(count(&report, "unique"), 1);
}

#[test]
fn odd_but_valid_json_lines_are_read() {
    // CRLF line ends, blank and whitespace-only lines (not records, but
    // counted as lines), a repeated key (the last one counts), escapes,
    // unknown fields of every type, timestamps as epoch milliseconds and with
    // offsets and more than three fraction digits.
    let dir = TempDir::new().expect("temp dir");
    let lines = [
        event_json("a", 1, "cr-1", "tpl-1"),
        String::new(),
        "   \t ".to_string(),
        r#"{"event_id":"b","occurred_at":1777593600000,"ingested_at":"2026-05-01T02:00:00.9999+02:00","creator_id":"cr-\u0031","template_id":"tpl-1","content_kind":"video","action":"view","user_tier":"free","country":"BR","x":[1,{"y":null}],"z":1.5e3}"#.to_string(),
        r#"{"event_id":"c","occurred_at":"2026-05-01T23:59:59.9999999-00:30","ingested_at":"2026-05-02T00:31:00Z","creator_id":"cr-1","template_id":"tpl-2","brand_id":"acme","content_kind":"font","action":"view","user_tier":"free","country":"ID","action":"publish"}"#.to_string(),
        r#"{"event_id":"d","event_id":null,"occurred_at":"2026-05-01T10:00:00Z","ingested_at":"2026-05-01T10:00:00Z","creator_id":"cr-1","template_id":"tpl-1","content_kind":"font","action":"use","user_tier":"pro","country":"US"}"#.to_string(),
    ];
    let text = lines.join("\r\n") + "\r\n";
    let (report, q) = quarantined_lines(dir.path(), "odd.jsonl", text.as_bytes());
    assert_eq!(count(&report, "records"), 4);
    let got: Vec<(u64, &str)> = q.iter().map(|(l, r, _)| (*l, r.as_str())).collect();
    assert_eq!(got, [(6, "missing-field:event_id")]);
    assert_eq!(count(&report, "unique"), 3);

    let out = dir.path().join("out-odd.jsonl");
    let daily = output::daily(&output::partitions(&out));
    let key =
        |day: &str, template: &str| (day.to_string(), "cr-1".to_string(), template.to_string());
    // a: template use pro → 30000; b: a free video view → 0; c: 2026-05-02
    // 00:29:59.999Z UTC, a free font publish (the last action) → 2500.
    assert_eq!(daily[&key("2026-05-01", "tpl-1")].events, 2);
    assert_eq!(daily[&key("2026-05-01", "tpl-1")].amount_micros, 30_000);
    assert_eq!(daily[&key("2026-05-02", "tpl-2")].amount_micros, 2_500);
    assert_eq!(daily.len(), 2);
}

#[test]
fn a_line_longer_than_a_read_block_is_read_whole() {
    // Files are read in blocks of 4 MiB of whole lines: a 9 MiB line (a
    // valid event with a huge unknown field) spans several. It is over the
    // default line-length limit, which is raised for it.
    let dir = TempDir::new().expect("temp dir");
    let mut text = events_text(3);
    let huge = event_json("huge", 2, "cr-huge", "tpl-huge");
    let filler = "x".repeat(9 << 20);
    text.push_str(&huge.replace(
        "{\"event_id\"",
        &format!("{{\"filler\":\"{filler}\",\"event_id\""),
    ));
    text.push('\n');
    text.push_str("not json\n");
    text.push_str(&events_text(2).replace("ev-", "after-"));
    let limit = (10 << 20).to_string();
    let (report, q) = quarantined_lines_with(
        dir.path(),
        "long.jsonl",
        text.as_bytes(),
        &["--max-line-bytes", &limit],
    );
    assert_eq!(count(&report, "records"), 7);
    assert_eq!(count(&report, "unique"), 6);
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].0, q[0].1.as_str()), (5, "malformed-json"));
    let daily = output::daily(&output::partitions(&dir.path().join("out-long.jsonl")));
    assert!(daily.contains_key(&(
        "2026-05-02".to_string(),
        "cr-huge".to_string(),
        "tpl-huge".to_string()
    )));
}

// ---------------------------------------------------------------------------
// Parquet
// ---------------------------------------------------------------------------

/// Writes columns as a Parquet file with row groups of `rows_per_group`.
fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>, rows_per_group: usize) {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, array)| Field::new(*name, array.data_type().clone(), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(
        schema.clone(),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .expect("a batch");
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(rows_per_group.max(1)))
        .build();
    let file = std::fs::File::create(path).expect("create file");
    let mut writer = ArrowWriter::try_new(file, schema, Some(props)).expect("a writer");
    writer.write(&batch).expect("write batch");
    writer.close().expect("close");
}

fn utf8(values: &[Option<&str>]) -> ArrayRef {
    Arc::new(StringArray::from(values.to_vec()))
}

/// `n` valid events as Parquet columns: strings as Utf8, timestamps in UTC milliseconds.
fn good_columns(n: usize, prefix: &str) -> Vec<(&'static str, ArrayRef)> {
    let base = model::days_from_civil(2026, 5, 4) * 86_400_000;
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    let texts = |f: &dyn Fn(usize) -> &'static str| -> ArrayRef {
        utf8(&(0..n).map(|i| Some(f(i))).collect::<Vec<_>>())
    };
    let times = |offset: i64| -> ArrayRef {
        Arc::new(
            TimestampMillisecondArray::from(
                (0..n as i64)
                    .map(|i| base + i * 60_000 + offset)
                    .collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        )
    };
    vec![
        (
            "event_id",
            utf8(&ids.iter().map(|s| Some(s.as_str())).collect::<Vec<_>>()),
        ),
        ("occurred_at", times(0)),
        ("ingested_at", times(5_000)),
        ("creator_id", texts(&|i| ["cr-1", "cr-2"][i % 2])),
        (
            "template_id",
            texts(&|i| ["tpl-1", "tpl-2", "tpl-3"][i % 3]),
        ),
        ("brand_id", utf8(&vec![None; n])),
        ("content_kind", texts(&|_| "image")),
        ("action", texts(&|_| "export")),
        ("user_tier", texts(&|_| "teams")),
        ("country", texts(&|_| "DE")),
    ]
}

fn replace(columns: &mut Vec<(&'static str, ArrayRef)>, name: &str, array: Option<ArrayRef>) {
    let at = columns
        .iter()
        .position(|(n, _)| *n == name)
        .expect("a column");
    match array {
        Some(array) => columns[at].1 = array,
        None => {
            columns.remove(at);
        }
    }
}

#[test]
fn parquet_with_a_wrong_schema_is_quarantined_row_by_row() {
    let dir = TempDir::new().expect("temp dir");
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).expect("create dir");
    const N: usize = 5;
    let ints =
        |n: usize| -> ArrayRef { Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())) };

    // (file, change, the reason of each row)
    type Change = Box<dyn Fn(&mut Vec<(&'static str, ArrayRef)>)>;
    let cases: Vec<(&str, Change, Vec<&str>)> = vec![
        (
            "a-creator-int64",
            Box::new(move |c| replace(c, "creator_id", Some(ints(N)))),
            vec!["bad-type:creator_id"; N],
        ),
        (
            "b-no-country",
            Box::new(|c| replace(c, "country", None)),
            vec!["missing-field:country"; N],
        ),
        (
            "c-no-event-id-and-creator-int64",
            Box::new(move |c| {
                replace(c, "event_id", None);
                replace(c, "creator_id", Some(ints(N)));
            }),
            vec!["missing-field:event_id"; N],
        ),
        (
            "d-occurred-as-text",
            Box::new(|c| {
                let text = utf8(&[Some("2026-05-04T10:00:00Z"); N]);
                replace(c, "occurred_at", Some(text));
            }),
            vec!["bad-type:occurred_at"; N],
        ),
        (
            "e-ingested-as-float",
            Box::new(|c| {
                let floats: ArrayRef = Arc::new(Float64Array::from(vec![1.777e12; N]));
                replace(c, "ingested_at", Some(floats));
            }),
            vec!["bad-type:ingested_at"; N],
        ),
        (
            "f-occurred-as-int32",
            Box::new(|c| {
                let small: ArrayRef = Arc::new(Int32Array::from(vec![1; N]));
                replace(c, "occurred_at", Some(small));
            }),
            vec!["bad-type:occurred_at"; N],
        ),
        (
            "g-brand-int64-and-a-null-id",
            Box::new(move |c| {
                replace(c, "brand_id", Some(ints(N)));
                let ids = utf8(&[Some("g-0"), Some("g-1"), None, Some("g-3"), Some("g-4")]);
                replace(c, "event_id", Some(ids));
            }),
            vec![
                "bad-type:brand_id",
                "bad-type:brand_id",
                "missing-field:event_id",
                "bad-type:brand_id",
                "bad-type:brand_id",
            ],
        ),
        (
            "h-kind-as-codes",
            Box::new(|c| {
                let codes: ArrayRef = Arc::new(Int32Array::from(vec![2; N]));
                replace(c, "content_kind", Some(codes));
            }),
            vec!["bad-type:content_kind"; N],
        ),
        (
            "i-extra-columns-are-ignored",
            Box::new(move |c| {
                c.push(("client_version", ints(N)));
                c.push(("note", utf8(&[Some("café"); N])));
            }),
            vec![],
        ),
    ];

    let mut expected = Vec::new();
    let mut files = Vec::new();
    for (name, change, reasons) in &cases {
        let mut columns = good_columns(N, name);
        change(&mut columns);
        let path = input.join(format!("{name}.parquet"));
        // Row groups of 2 rows: rows are numbered across row groups.
        write_parquet(&path, columns, 2);
        for (row, reason) in reasons.iter().enumerate() {
            expected.push((path.display().to_string(), row as u64, reason.to_string()));
        }
        files.push((path.display().to_string(), path));
    }

    let out = dir.path().join("out");
    let report = support::run(&[&input], &common::rule("creator-pay-v1"), &out, &[]);
    assert_eq!(count(&report, "records"), (N * cases.len()) as u64);
    assert_eq!(count(&report, "quarantined"), expected.len() as u64);
    assert_eq!(count(&report, "unique"), N as u64);
    assert_seqs_eq(
        &output::quarantine_keys(&out),
        &expected,
        "quarantined rows",
    );
    for q in output::quarantine(&out) {
        let raw: serde_json::Value =
            serde_json::from_str(q["raw"].as_str().expect("raw")).expect("raw rows are JSON");
        assert!(raw.is_object(), "{q}");
    }

    // The independent model reads the same files the same way.
    let named: Vec<(String, &Path)> = files
        .iter()
        .map(|(n, p)| (n.clone(), p.as_path()))
        .collect();
    let model = Expected::of_files(&named);
    assert_eq!(model.quarantine, expected);
    assert_maps_eq(
        &output::daily(&output::partitions(&out)),
        &model.daily(model::creator_pay_v1),
        "daily totals",
    );
}

#[test]
fn generated_parquet_quarantines_every_raw_record_with_its_fields() {
    let dir = TempDir::new().expect("temp dir");
    let (input, planted) = support::generate(dir.path(), "gen", 20_000, 11, "parquet", 20_000);
    assert!(planted.quarantined > 0);
    let out = dir.path().join("out");
    let report = support::run(&[&input], &common::rule("creator-pay-v1"), &out, &[]);
    assert_eq!(count(&report, "quarantined"), planted.quarantined);
    for q in output::quarantine(&out) {
        let raw: serde_json::Value =
            serde_json::from_str(q["raw"].as_str().expect("raw")).expect("raw rows are JSON");
        let raw = raw
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {q}"));
        let reason = q["reason"].as_str().expect("reason");
        let (kind, field) = reason.split_once(':').expect("a field's reason");
        // The field at fault is there unless it is missing; the others as written.
        assert_eq!(raw.contains_key(field), kind != "missing-field", "{q}");
        for name in [
            "event_id",
            "occurred_at",
            "ingested_at",
            "creator_id",
            "template_id",
            "content_kind",
            "action",
            "user_tier",
            "country",
        ] {
            if name == field {
                continue;
            }
            let value = raw.get(name).unwrap_or_else(|| panic!("no {name} in {q}"));
            assert!(value.is_string(), "{name} in {q}");
        }
        // Timestamps (tz "UTC") come out as instants in RFC 3339.
        for name in ["occurred_at", "ingested_at"] {
            if let Some(value) = raw.get(name).and_then(|v| v.as_str()) {
                chrono::DateTime::parse_from_rfc3339(value)
                    .unwrap_or_else(|e| panic!("{name} {value:?} in {q}: {e}"));
                assert!(value.ends_with('Z'), "{name} {value:?} in {q}");
            }
        }
    }
}

#[test]
fn quarantined_parquet_timestamps_show_their_time_zone() {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("zones.parquet");
    let mut columns = good_columns(3, "tz");
    let base = model::days_from_civil(2026, 5, 4) * 86_400_000;
    let zoned = |zone: &str, offset: i64| -> ArrayRef {
        Arc::new(
            TimestampMillisecondArray::from(
                (0..3)
                    .map(|i| base + i * 60_000 + offset)
                    .collect::<Vec<_>>(),
            )
            .with_timezone(zone),
        )
    };
    replace(
        &mut columns,
        "occurred_at",
        Some(zoned("America/New_York", 0)),
    );
    replace(
        &mut columns,
        "ingested_at",
        Some(zoned("Europe/Paris", 5_000)),
    );
    replace(
        &mut columns,
        "country",
        Some(utf8(&[Some("DE"), Some("Germany"), Some("DE")])),
    );
    write_parquet(&path, columns, 3);
    let out = dir.path().join("out");
    let report = support::run(&[&path], &common::rule("creator-pay-v1"), &out, &[]);
    assert_eq!(count(&report, "unique"), 2);
    let q = output::quarantine(&out);
    assert_eq!(q.len(), 1);
    assert_eq!(
        (&q[0]["row"], &q[0]["reason"]),
        (&1.into(), &"bad-value:country".into())
    );
    let raw: serde_json::Value =
        serde_json::from_str(q[0]["raw"].as_str().expect("raw")).expect("JSON");
    assert_eq!(
        raw,
        serde_json::json!({
            "event_id": "tz-1",
            "occurred_at": "2026-05-03T20:01:00-04:00",
            "ingested_at": "2026-05-04T02:01:05+02:00",
            "creator_id": "cr-2",
            "template_id": "tpl-2",
            "content_kind": "image",
            "action": "export",
            "user_tier": "teams",
            "country": "Germany",
        })
    );
}

#[test]
fn broken_parquet_files_fail_naming_the_file() {
    let dir = TempDir::new().expect("temp dir");
    let existing = Existing::new(dir.path());
    let good = dir.path().join("good.parquet");
    write_parquet(&good, good_columns(2_000, "p"), 500);
    let whole = std::fs::read(&good).expect("read");
    support::run(
        &[&good],
        &common::rule("creator-pay-v1"),
        &dir.path().join("good-out"),
        &[],
    );

    let cases = [
        ("half", whole[..whole.len() / 2].to_vec()),
        ("no-footer", whole[..whole.len() - 8].to_vec()),
        ("magic-only", b"PAR1".to_vec()),
        ("empty", Vec::new()),
        ("text", b"event_id,occurred_at\n1,2\n".to_vec()),
    ];
    for (name, bytes) in cases {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).expect("create dir");
        let bad = sub.join(format!("{name}.parquet"));
        std::fs::write(&bad, bytes).expect("write");
        let stderr = existing.run_fails(&[&bad]);
        common::assert_mentions(&stderr, &[s(&bad), "not a readable Parquet file"]);
        std::fs::copy(&good, sub.join("a-good.parquet")).expect("copy");
        let stderr = existing.run_fails(&[&sub]);
        common::assert_mentions(&stderr, &[s(&bad)]);
    }
}

/// The events of the timestamp test, in nanoseconds since the epoch:
/// `(event_id, occurred_at, ingested_at, template_id, content_kind, action,
/// user_tier, country)`; `None` stands for a null.
type TimedEvent = (
    Option<&'static str>,
    Option<i64>,
    i64,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
);

fn ns(y: i64, mo: i64, d: i64, h: i64, mi: i64, sec: i64, frac_ns: i64) -> i64 {
    ((model::days_from_civil(y, mo, d) * 86_400 + h * 3_600 + mi * 60 + sec) * 1_000_000_000)
        + frac_ns
}

fn timed_events() -> Vec<TimedEvent> {
    let t = |d, h, frac| ns(2026, 5, d, h, 0, 0, frac);
    vec![
        // The last nanosecond of May 1st, and the first of May 2nd (UTC).
        (
            Some("u-0"),
            Some(ns(2026, 5, 1, 23, 59, 59, 999_999_999)),
            t(2, 1, 0),
            "tpl-1",
            "template",
            "use",
            "pro",
            Some("US"),
        ),
        (
            Some("u-1"),
            Some(ns(2026, 5, 2, 0, 0, 0, 1)),
            t(2, 1, 0),
            "tpl-1",
            "video",
            "export",
            "teams",
            Some("BR"),
        ),
        // The same event_id ingested 0.1 ms and 0.9 ms after 10:00: the same
        // millisecond once truncated, so the tie goes to the smaller template.
        (
            Some("dup"),
            Some(t(3, 9, 0)),
            t(3, 10, 100_000),
            "tpl-b",
            "image",
            "publish",
            "free",
            Some("IN"),
        ),
        (
            Some("dup"),
            Some(t(3, 9, 0)),
            t(3, 10, 900_000),
            "tpl-a",
            "image",
            "publish",
            "free",
            Some("IN"),
        ),
        // Out of range: the first instant of 2101, the last microsecond of 1999.
        (
            Some("u-4"),
            Some(ns(2101, 1, 1, 0, 0, 0, 0)),
            t(3, 10, 0),
            "tpl-1",
            "font",
            "use",
            "pro",
            Some("US"),
        ),
        (
            Some("u-5"),
            Some(ns(1999, 12, 31, 23, 59, 59, 999_999_000)),
            t(3, 10, 0),
            "tpl-1",
            "font",
            "use",
            "pro",
            Some("US"),
        ),
        // Bad values and nulls through the string columns, dictionaries included.
        (
            Some("u-6"),
            Some(t(4, 9, 0)),
            t(4, 10, 0),
            "tpl-1",
            "Video",
            "use",
            "pro",
            Some("US"),
        ),
        (
            Some("u-7"),
            Some(t(4, 9, 0)),
            t(4, 10, 0),
            "tpl-1",
            "font",
            "use",
            "pro",
            None,
        ),
        (
            Some("u-8"),
            None,
            t(4, 10, 0),
            "tpl-1",
            "font",
            "use",
            "pro",
            Some("US"),
        ),
        (
            None,
            Some(t(4, 9, 0)),
            t(4, 10, 0),
            "tpl-1",
            "font",
            "use",
            "pro",
            Some("US"),
        ),
    ]
}

/// How the timestamp columns are stored.
#[derive(Debug, Clone, Copy)]
enum Time {
    Seconds(Option<&'static str>),
    Millis(Option<&'static str>),
    Micros(Option<&'static str>),
    Nanos(Option<&'static str>),
    EpochMillisInt64,
}

/// How the string columns are stored.
#[derive(Debug, Clone)]
enum Text {
    Utf8,
    Large,
    View,
    Dictionary(DataType, DataType),
    /// A different encoding per column.
    Mixed,
}

fn time_column(values: &[Option<i64>], time: Time) -> ArrayRef {
    let scaled = |unit: i64| -> Vec<Option<i64>> {
        values
            .iter()
            .map(|v| v.map(|ns| ns.div_euclid(unit)))
            .collect()
    };
    match time {
        Time::Seconds(tz) => {
            Arc::new(TimestampSecondArray::from(scaled(1_000_000_000)).with_timezone_opt(tz))
        }
        Time::Millis(tz) => {
            Arc::new(TimestampMillisecondArray::from(scaled(1_000_000)).with_timezone_opt(tz))
        }
        Time::Micros(tz) => {
            Arc::new(TimestampMicrosecondArray::from(scaled(1_000)).with_timezone_opt(tz))
        }
        Time::Nanos(tz) => {
            Arc::new(TimestampNanosecondArray::from(scaled(1)).with_timezone_opt(tz))
        }
        Time::EpochMillisInt64 => Arc::new(Int64Array::from(scaled(1_000_000))),
    }
}

fn text_column(values: &[Option<&str>], text: &Text, column: usize) -> ArrayRef {
    let plain = utf8(values);
    let text = match text {
        Text::Mixed => match column % 4 {
            0 => Text::Large,
            1 => Text::View,
            2 => Text::Dictionary(DataType::UInt16, DataType::LargeUtf8),
            _ => Text::Dictionary(DataType::Int8, DataType::Utf8),
        },
        other => other.clone(),
    };
    match text {
        Text::Utf8 => plain,
        Text::Large => Arc::new(LargeStringArray::from(values.to_vec())),
        Text::View => Arc::new(StringViewArray::from(values.to_vec())),
        Text::Dictionary(key, value) => {
            let wanted = DataType::Dictionary(Box::new(key), Box::new(value));
            let array = arrow::compute::cast(&plain, &wanted).expect("cast to a dictionary");
            assert_eq!(array.data_type(), &wanted);
            array
        }
        Text::Mixed => unreachable!("resolved above"),
    }
}

fn write_timed(path: &Path, time: Time, text: &Text) {
    let events = timed_events();
    let strings = |f: &dyn Fn(&TimedEvent) -> Option<&'static str>| -> Vec<Option<&'static str>> {
        events.iter().map(f).collect()
    };
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("event_id", text_column(&strings(&|e| e.0), text, 0)),
        (
            "occurred_at",
            time_column(&events.iter().map(|e| e.1).collect::<Vec<_>>(), time),
        ),
        (
            "ingested_at",
            time_column(&events.iter().map(|e| Some(e.2)).collect::<Vec<_>>(), time),
        ),
        (
            "creator_id",
            text_column(&strings(&|_| Some("cr-1")), text, 1),
        ),
        (
            "template_id",
            text_column(&strings(&|e| Some(e.3)), text, 2),
        ),
        (
            "brand_id",
            text_column(&strings(&|e| (e.3 == "tpl-a").then_some("acme")), text, 3),
        ),
        (
            "content_kind",
            text_column(&strings(&|e| Some(e.4)), text, 4),
        ),
        ("action", text_column(&strings(&|e| Some(e.5)), text, 5)),
        ("user_tier", text_column(&strings(&|e| Some(e.6)), text, 6)),
        ("country", text_column(&strings(&|e| e.7), text, 7)),
    ];
    write_parquet(path, columns, 3);
}

#[test]
fn parquet_timestamp_units_and_string_encodings_are_read_alike() {
    let dir = TempDir::new().expect("temp dir");
    let utc = Some("UTC");
    let variants: Vec<(&str, Time, Text)> = vec![
        ("seconds", Time::Seconds(utc), Text::Utf8),
        ("millis", Time::Millis(utc), Text::Utf8),
        ("millis-naive", Time::Millis(None), Text::Utf8),
        ("micros", Time::Micros(utc), Text::Utf8),
        ("nanos", Time::Nanos(utc), Text::Utf8),
        ("nanos-plus-two", Time::Nanos(Some("+02:00")), Text::Utf8),
        ("micros-tokyo", Time::Micros(Some("Asia/Tokyo")), Text::Utf8),
        ("epoch-millis", Time::EpochMillisInt64, Text::Utf8),
        ("large-utf8", Time::Millis(utc), Text::Large),
        ("utf8-view", Time::Micros(utc), Text::View),
        (
            "dict-int32",
            Time::Millis(utc),
            Text::Dictionary(DataType::Int32, DataType::Utf8),
        ),
        (
            "dict-int8",
            Time::Nanos(None),
            Text::Dictionary(DataType::Int8, DataType::Utf8),
        ),
        (
            "dict-uint16-large",
            Time::Millis(utc),
            Text::Dictionary(DataType::UInt16, DataType::LargeUtf8),
        ),
        (
            "dict-utf8-view",
            Time::Millis(utc),
            Text::Dictionary(DataType::Int32, DataType::Utf8View),
        ),
        (
            "dict-int64-keys",
            Time::Micros(utc),
            Text::Dictionary(DataType::Int64, DataType::Utf8),
        ),
        (
            "dict-uint8",
            Time::Seconds(None),
            Text::Dictionary(DataType::UInt8, DataType::Utf8),
        ),
        ("mixed", Time::Micros(utc), Text::Mixed),
    ];

    // What every variant must give, worked out by hand (creator-pay 1.0.0):
    // u-0 is a pro template use on May 1st (30000), u-1 a teams video export
    // on May 2nd (60000), and `dup` survives as tpl-a, a free image publish
    // (5000), with one conflicting duplicate.
    let day = |d: &str, template: &str| {
        (
            format!("2026-05-{d}"),
            "cr-1".to_string(),
            template.to_string(),
        )
    };
    let totals = |amount| model::Totals {
        events: 1,
        payable_events: 1,
        amount_micros: amount,
    };
    let by_hand: model::Daily = [
        (day("01", "tpl-1"), totals(30_000)),
        (day("02", "tpl-1"), totals(60_000)),
        (day("03", "tpl-a"), totals(5_000)),
    ]
    .into_iter()
    .collect();
    let reasons_by_hand = [
        (4, "bad-value:occurred_at"),
        (5, "bad-value:occurred_at"),
        (6, "bad-value:content_kind"),
        (7, "missing-field:country"),
        (8, "missing-field:occurred_at"),
        (9, "missing-field:event_id"),
    ];

    let rule = common::rule("creator-pay-v1");
    for (name, time, text) in variants {
        let path = dir.path().join(format!("{name}.parquet"));
        write_timed(&path, time, &text);
        let out = dir.path().join(format!("out-{name}"));
        let report = support::run(&[&path], &rule, &out, &[]);
        assert_eq!(count(&report, "records"), 10, "{name}");
        assert_eq!(count(&report, "duplicates"), 1, "{name}");
        assert_eq!(count(&report, "conflicts"), 1, "{name}");
        assert_maps_eq(&output::daily(&output::partitions(&out)), &by_hand, name);
        let reasons: Vec<(u64, String)> = output::quarantine_keys(&out)
            .into_iter()
            .map(|(_, row, reason)| (row, reason))
            .collect();
        let want: Vec<(u64, String)> = reasons_by_hand
            .iter()
            .map(|(r, why)| (*r, why.to_string()))
            .collect();
        assert_eq!(reasons, want, "{name}");

        // The model reads the file to the same result.
        let model = Expected::of_files(&[(path.display().to_string(), &path)]);
        assert_maps_eq(
            &model.daily(model::creator_pay_v1),
            &by_hand,
            &format!("model, {name}"),
        );
    }
}

// ---------------------------------------------------------------------------
// Empty and missing inputs, and the output directory
// ---------------------------------------------------------------------------

#[test]
fn empty_input_files_give_an_empty_but_sane_output() {
    let dir = TempDir::new().expect("temp dir");
    let empty_parquet = dir.path().join("no-rows.parquet");
    write_parquet(&empty_parquet, good_columns(0, "none"), 10);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty.jsonl", Vec::new()),
        ("blank.jsonl", b"\n\n   \r\n\t\n".to_vec()),
        ("blank.jsonl.gz", gzip(b"\n\n")),
        ("nothing.jsonl.zst", zstd(b"")),
        (
            "no-rows.parquet",
            std::fs::read(&empty_parquet).expect("read"),
        ),
    ];
    let rule = common::rule("creator-pay-v1");
    for (name, bytes) in cases {
        let sub = dir.path().join(format!("in-{name}"));
        std::fs::create_dir_all(&sub).expect("create dir");
        let path = sub.join(name);
        std::fs::write(&path, bytes).expect("write");
        let out = dir.path().join(format!("out-{name}"));
        let report = support::run(&[&path], &rule, &out, &[]);
        for field in [
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
            assert_eq!(count(&report, field), 0, "{name}: {field}");
        }
        assert_eq!(report["inputs"].as_array().map(Vec::len), Some(1), "{name}");
        assert!(output::partitions(&out).is_empty(), "{name}");
        assert!(output::quarantine(&out).is_empty(), "{name}");
        assert!(out.join("_tally/manifest.json").is_file(), "{name}");
    }
}

#[test]
fn no_input_files_is_a_clear_error() {
    let dir = TempDir::new().expect("temp dir");
    let rule = common::rule("creator-pay-v1");
    let out = dir.path().join("out");
    let run = |input: &Path| {
        common::tally_err(&[
            "run",
            "--input",
            s(input),
            "--rule",
            s(&rule),
            "--out",
            s(&out),
            "--quiet",
        ])
    };

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).expect("create dir");
    common::assert_mentions(&run(&empty), &["no input files", s(&empty)]);

    // Only files a directory walk skips: other extensions and hidden files.
    let skipped = dir.path().join("skipped");
    std::fs::create_dir_all(skipped.join(".hidden")).expect("create dir");
    std::fs::write(skipped.join("README.md"), "# events\n").expect("write");
    std::fs::write(skipped.join("events.csv"), "a,b\n").expect("write");
    std::fs::write(skipped.join(".events.jsonl"), events_text(3)).expect("write");
    std::fs::write(skipped.join(".hidden/events.jsonl"), events_text(3)).expect("write");
    common::assert_mentions(&run(&skipped), &["no input files", s(&skipped)]);
    assert!(!out.exists(), "a failed run created the output");
}

#[test]
fn a_missing_or_unreadable_input_is_a_clear_error() {
    let dir = TempDir::new().expect("temp dir");
    let existing = Existing::new(dir.path());
    let missing = dir.path().join("missing.jsonl");
    let stderr = existing.run_fails(&[&missing]);
    common::assert_mentions(&stderr, &[s(&missing), "No such file"]);

    // One good input does not make a missing one acceptable.
    let good = dir.path().join("good.jsonl");
    std::fs::write(&good, events_text(5)).expect("write");
    let stderr = existing.run_fails(&[&good, &missing]);
    common::assert_mentions(&stderr, &[s(&missing), "No such file"]);

    // A file named explicitly must be of a known format.
    let csv = dir.path().join("events.csv");
    std::fs::write(&csv, "event_id\n1\n").expect("write");
    let stderr = existing.run_fails(&[&csv]);
    common::assert_mentions(&stderr, &[s(&csv), "unknown format"]);
}

#[test]
fn an_out_directory_that_is_not_tally_output_is_refused() {
    let dir = TempDir::new().expect("temp dir");
    let input = common::small_jsonl(dir.path(), 5);
    let rule = common::rule("creator-pay-v1");

    let precious = dir.path().join("precious");
    std::fs::create_dir_all(precious.join("photos")).expect("create dir");
    std::fs::write(precious.join("notes.txt"), "do not delete\n").expect("write");
    std::fs::write(precious.join("photos/cat.jpg"), [0xff, 0xd8, 0xff]).expect("write");
    let before = snapshot(&precious);
    let stderr = common::tally_err(&[
        "run",
        "--input",
        s(&input),
        "--rule",
        s(&rule),
        "--out",
        s(&precious),
        "--quiet",
    ]);
    common::assert_mentions(&stderr, &[s(&precious), "not a Tally output directory"]);
    assert!(snapshot(&precious) == before, "the directory was changed");

    // A regular file in the way is refused too, and left as it was.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "keep me\n").expect("write");
    let stderr = common::tally_err(&[
        "run",
        "--input",
        s(&input),
        "--rule",
        s(&rule),
        "--out",
        s(&file),
        "--quiet",
    ]);
    common::assert_mentions(&stderr, &[s(&file)]);
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "keep me\n");

    // An empty directory is fine.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).expect("create dir");
    let report = support::run(&[&input], &rule, &empty, &[]);
    assert_eq!(count(&report, "unique"), 5);
}
