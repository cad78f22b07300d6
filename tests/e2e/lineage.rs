//! Lineage and verification through the CLI: `tally log`, `show` and
//! `lineage` (text and JSON) say which rule, which inputs and which run
//! produced a day and a row, in agreement with the partitions' Parquet
//! metadata; `tally verify` recomputes partitions with their stamped rule
//! from the registry, passes on untouched output and pinpoints a partition
//! edited by hand (the row, both values) or damaged (its blake3).

use crate::common::{self, s};
use crate::output::{self, blake3_file, day_fingerprint};
use crate::support;
use arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch};
use arrow::datatypes::Int64Type;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::properties::WriterProperties;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Instant;
use tempfile::TempDir;

const SEED: u64 = 4_242;

/// An output made of two commits, with the registry that holds their rules:
/// commit 1 is creator-pay 1.0.0 over every day (named `creator-pay@1.0.0`),
/// commit 2 is creator-pay 2.0.0 over `recomputed` only (named by a short
/// hash).
struct Published {
    dir: TempDir,
    input: PathBuf,
    registry: PathBuf,
    out: PathBuf,
    reports: [Value; 2],
    hashes: [String; 2],
    days: Vec<String>,
    recomputed: String,
}

impl Published {
    fn new() -> Published {
        let dir = TempDir::new().expect("temp dir");
        let (input, _) = support::generate(dir.path(), "events", 40_000, SEED, "jsonl", 20_000);
        let registry = dir.path().join("registry");
        let mut hashes = Vec::new();
        for name in ["creator-pay-v1", "creator-pay-v2"] {
            let rule = common::rule(name);
            common::tally_ok(&["rule", "publish", s(&rule), "--registry", s(&registry)]);
            hashes.push(blake3_file(&rule));
        }
        let hashes: [String; 2] = hashes.try_into().unwrap();
        let out = dir.path().join("out");
        let first = support::run(
            &[&input],
            Path::new("creator-pay@1.0.0"),
            &out,
            &["--registry", s(&registry)],
        );
        assert_eq!(first["rule"]["hash"], hashes[0].as_str());
        let days: Vec<String> = output::partitions(&out)
            .into_iter()
            .map(|p| p.day)
            .collect();
        assert!(days.len() > 20, "a month of days");
        let recomputed = days[days.len() / 2].clone();
        let second = support::run(
            &[&input],
            Path::new(&hashes[1][..10]),
            &out,
            &[
                "--registry",
                s(&registry),
                "--days",
                &format!("{recomputed}..{recomputed}"),
            ],
        );
        assert_eq!(second["rule"]["hash"], hashes[1].as_str());
        Published {
            dir,
            input,
            registry,
            out,
            reports: [first, second],
            hashes,
            days,
            recomputed,
        }
    }

    /// `tally verify <out> --registry <registry> [extra]`.
    fn verify(&self, extra: &[&str]) -> Output {
        let mut args = vec!["verify", s(&self.out), "--registry", s(&self.registry)];
        args.extend_from_slice(extra);
        common::tally(&args)
    }

    /// `tally verify ... --json`: its exit code and report.
    fn verify_json(&self, extra: &[&str]) -> (i32, Value) {
        let mut args = vec!["--json"];
        args.extend_from_slice(extra);
        let out = self.verify(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "verify panicked: {stderr}");
        let report = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("verify --json printed no JSON ({e}); stderr: {stderr}"));
        (out.status.code().expect("an exit code"), report)
    }

    /// The input files as the manifests must record them: absolute paths,
    /// sizes and blake3 hashes, sorted by path.
    fn recorded_inputs(&self) -> Vec<(String, u64, String)> {
        let mut inputs: Vec<(String, u64, String)> = support::files_in(&self.input)
            .into_iter()
            .map(|(_, path)| {
                (
                    std::fs::canonicalize(&path).unwrap().display().to_string(),
                    std::fs::metadata(&path).unwrap().len(),
                    blake3_file(&path),
                )
            })
            .collect();
        inputs.sort();
        inputs
    }
}

/// `inputs` of a log entry or manifest as `(path, size, blake3)`, sorted.
fn inputs_of(value: &Value) -> Vec<(String, u64, String)> {
    let mut inputs: Vec<(String, u64, String)> = value["inputs"]
        .as_array()
        .unwrap_or_else(|| panic!("no inputs in {value}"))
        .iter()
        .map(|i| {
            (
                i["path"].as_str().expect("path").to_string(),
                i["size"].as_u64().expect("size"),
                i["blake3"].as_str().expect("blake3").to_string(),
            )
        })
        .collect();
    inputs.sort();
    inputs
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn log_show_and_lineage_say_which_rule_inputs_and_run() {
    let started = Instant::now();
    let p = Published::new();
    let out = s(&p.out);
    let inputs = p.recorded_inputs();
    let fingerprint = p.reports[0]["input_fingerprint"].as_str().unwrap();
    let run_ids = [
        p.reports[0]["run_id"].as_str().unwrap(),
        p.reports[1]["run_id"].as_str().unwrap(),
    ];

    // `tally log --json`: both commits, what each read, with which rule.
    let log = json(&common::tally_ok(&["log", out, "--json"]));
    assert_eq!(log["schema_version"], 1);
    let entries = log["commits"].as_array().expect("a list of commits");
    assert_eq!(entries.len(), 2);
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry["commit"], i + 1);
        assert_eq!(entry["run_id"], run_ids[i]);
        assert_eq!(entry["rule"]["hash"], p.hashes[i].as_str());
        assert_eq!(entry["rule"]["name"], "creator-pay");
        assert_eq!(entry["input_fingerprint"], fingerprint);
        assert_eq!(inputs_of(entry), inputs);
        assert_eq!(entry["reconcile"], p.reports[i]["reconcile"]);
        let on_disk = json(
            &std::fs::read_to_string(p.out.join(format!("_tally/log/{:08}.json", i + 1))).unwrap(),
        );
        assert_eq!(*entry, on_disk, "log --json against _tally/log/");
        let committed = entry["committed_at"].as_str().expect("committed_at");
        assert!(
            chrono::DateTime::parse_from_rfc3339(committed).is_ok(),
            "{committed}"
        );
    }
    assert_eq!(entries[0]["rule"]["version"], "1.0.0");
    assert_eq!(entries[1]["rule"]["version"], "2.0.0");
    assert_eq!(entries[0]["window"], Value::Null);
    assert_eq!(
        entries[0]["written"].as_array().unwrap().len(),
        p.days.len()
    );
    assert_eq!(
        entries[1]["window"],
        serde_json::json!([p.recomputed, p.recomputed])
    );
    assert_eq!(entries[1]["written"], serde_json::json!([p.recomputed]));

    // `tally log`: one line per commit.
    let text = common::tally_ok(&["log", out]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    common::assert_mentions(
        lines[0],
        &[
            "commit 1",
            "creator-pay@1.0.0",
            &p.hashes[0][..12],
            "all days",
        ],
    );
    let window = format!("{0}..{0}", p.recomputed);
    common::assert_mentions(
        lines[1],
        &["commit 2", "creator-pay@2.0.0", &p.hashes[1][..12], &window],
    );

    // `tally show`: one commit, in full.
    let mut shown = json(&common::tally_ok(&["show", out, "2", "--json"]));
    let version = shown
        .as_object_mut()
        .and_then(|o| o.remove("schema_version"));
    assert_eq!(version, Some(1.into()));
    assert_eq!(shown, entries[1]);
    let text = common::tally_ok(&["show", out, "2"]);
    let mut wanted = vec![
        run_ids[1],
        &p.hashes[1],
        fingerprint,
        "creator-pay@2.0.0",
        &window,
        entries[1]["changeset"].as_str().unwrap(),
    ];
    wanted.extend(inputs.iter().map(|i| i.0.as_str()));
    common::assert_mentions(&text, &wanted);
    let missing = common::tally_err(&["show", out, "3"]);
    common::assert_mentions(&missing, &["no commit 3"]);

    // `tally lineage --json`: every day, in agreement with its file's metadata.
    let all = json(&common::tally_ok(&["lineage", out, "--json"]));
    assert_eq!(all["schema_version"], 1);
    let all = all["partitions"].as_array().expect("a list of partitions");
    let parts = output::partitions(&p.out);
    assert_eq!(all.len(), parts.len());
    for (m, part) in all.iter().zip(&parts) {
        let i = usize::from(part.day == p.recomputed);
        let meta = |key: &str| part.metadata.get(key).map(String::as_str).unwrap();
        assert_eq!(m["day"], part.day.as_str());
        assert_eq!(m["lineage"]["rule_hash"], meta("tally.rule_hash"));
        assert_eq!(m["lineage"]["rule_hash"], p.hashes[i].as_str());
        assert_eq!(m["lineage"]["rule_version"], meta("tally.rule_version"));
        assert_eq!(
            m["lineage"]["input_fingerprint"],
            meta("tally.input_fingerprint")
        );
        assert_eq!(
            m["lineage"]["input_fingerprint"],
            day_fingerprint(m).as_str()
        );
        assert_eq!(m["lineage"]["compute_version"], 2);
        assert_eq!(meta("tally.compute_version"), "2");
        assert_eq!(m["commit"], i + 1);
        assert_eq!(m["run_id"], run_ids[i]);
        let file = format!("daily/day={}/part-0.parquet", part.day);
        assert_eq!(m["file"], file.as_str());
        assert_eq!(m["blake3"], blake3_file(&p.out.join(&file)).as_str());
        assert_eq!(m["rows"], part.rows.len());
        assert_eq!(m["events"], part.rows.iter().map(|r| r.2).sum::<i64>());
        assert_eq!(
            m["amount_micros"],
            part.rows.iter().map(|r| r.4).sum::<i64>()
        );
        assert_eq!(inputs_of(m), inputs);
    }
    let text = common::tally_ok(&["lineage", out]);
    assert_eq!(text.lines().count(), parts.len(), "{text}");
    for (line, m) in text.lines().zip(all) {
        let recomputed = line.starts_with(&p.recomputed);
        let (commit, run) = if recomputed {
            ("commit 2", run_ids[1])
        } else {
            ("commit 1", run_ids[0])
        };
        common::assert_mentions(line, &[commit, run, &day_fingerprint(m)[..12]]);
    }

    // One day, and one row of it, for each commit.
    for (i, day) in [&p.days[1], &p.recomputed].into_iter().enumerate() {
        let one = json(&common::tally_ok(&["lineage", out, "--day", day, "--json"]));
        assert_eq!(one["schema_version"], 1);
        let one = one["partitions"].as_array().expect("a list");
        assert_eq!(one.len(), 1);
        assert_eq!(one[0]["day"], day.as_str());
        assert_eq!(one[0]["commit"], i + 1);
        let text = common::tally_ok(&["lineage", out, "--day", day]);
        let day_print = day_fingerprint(&one[0]);
        let mut wanted = vec![
            day.as_str(),
            &p.hashes[i],
            &day_print,
            run_ids[i],
            if i == 0 { "commit 1" } else { "commit 2" },
        ];
        wanted.extend(inputs.iter().map(|x| x.0.as_str()));
        common::assert_mentions(&text, &wanted);

        let part = parts.iter().find(|x| x.day == *day).unwrap();
        let row = part
            .rows
            .iter()
            .find(|r| r.4 > 0)
            .expect("a row with an amount");
        let (creator, template) = (row.0.as_str(), row.1.as_str());
        let args = [
            "lineage",
            out,
            "--day",
            day,
            "--creator",
            creator,
            "--template",
            template,
        ];
        let mut with_json = args.to_vec();
        with_json.push("--json");
        let found = json(&common::tally_ok(&with_json));
        assert_eq!(found["schema_version"], 1);
        assert_eq!(found["day"], day.as_str());
        assert_eq!(found["creator_id"], creator);
        assert_eq!(found["template_id"], template);
        assert_eq!(found["events"], row.2);
        assert_eq!(found["payable_events"], row.3);
        assert_eq!(found["amount_micros"], row.4);
        assert_eq!(found["rule_hash"], row.5.as_str());
        assert_eq!(
            found["rule_hash"],
            part.metadata["tally.rule_hash"].as_str()
        );
        assert_eq!(found["partition"], one[0], "the row's partition lineage");
        let text = common::tally_ok(&args);
        common::assert_mentions(
            &text,
            &[
                creator,
                template,
                &format!("{} micros", row.4),
                &format!("stamped    {}", row.5),
                run_ids[i],
                &day_print,
            ],
        );
    }
    let missing = common::tally_err(&[
        "lineage",
        out,
        "--day",
        &p.days[0],
        "--creator",
        "cr-nobody",
        "--template",
        "tpl-nothing",
    ]);
    common::assert_mentions(&missing, &["no row", "cr-nobody", "tpl-nothing"]);
    eprintln!("log, show, lineage: {:?}", started.elapsed());
}

/// Rewrites a partition file with the same schema and metadata and one
/// amount increased by one; returns `(creator, template, events, payable,
/// old amount)` of that row.
fn edit_one_amount(path: &Path) -> (String, String, i64, i64, i64) {
    let file = std::fs::File::open(path).expect("partition");
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).expect("a Parquet file");
    let schema = builder.schema().clone();
    let key_values = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned();
    let batches: Vec<RecordBatch> = builder
        .build()
        .expect("a reader")
        .collect::<Result<_, _>>()
        .expect("readable batches");
    let batch = arrow::compute::concat_batches(&schema, &batches).expect("one batch");
    let amounts = batch.column(4).as_primitive::<Int64Type>();
    let at = (0..batch.num_rows())
        .find(|&r| amounts.value(r) > 0)
        .expect("a row with an amount");
    let row = (
        batch.column(0).as_string::<i32>().value(at).to_string(),
        batch.column(1).as_string::<i32>().value(at).to_string(),
        batch.column(2).as_primitive::<Int64Type>().value(at),
        batch.column(3).as_primitive::<Int64Type>().value(at),
        amounts.value(at),
    );
    let edited: Int64Array = (0..batch.num_rows())
        .map(|r| amounts.value(r) + i64::from(r == at))
        .collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns[4] = Arc::new(edited);
    let batch = RecordBatch::try_new(schema.clone(), columns).expect("same schema");
    let props = WriterProperties::builder()
        .set_key_value_metadata(key_values)
        .build();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, schema, Some(props)).expect("a writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    std::fs::write(path, bytes).expect("rewrite the partition");
    row
}

/// The check of `day` in a verify report.
fn check_of<'a>(report: &'a Value, day: &str) -> &'a Value {
    report["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .find(|c| c["day"] == day)
        .unwrap_or_else(|| panic!("no check of {day} in {report}"))
}

#[test]
fn verify_passes_untouched_output_and_pinpoints_modified_files() {
    let started = Instant::now();
    let p = Published::new();

    // Untouched: every partition is identical to its recomputation.
    let untouched = p.verify(&[]);
    let text = String::from_utf8(untouched.stdout).unwrap();
    assert_eq!(untouched.status.code(), Some(0), "{text}");
    for day in &p.days {
        assert!(
            text.lines()
                .any(|l| l.starts_with(day.as_str()) && l.contains("identical")),
            "{day} in:\n{text}"
        );
    }
    common::assert_mentions(&text, &["all partitions identical"]);
    let (code, report) = p.verify_json(&[]);
    assert_eq!(code, 0);
    let checks = report["partitions"].as_array().unwrap();
    assert_eq!(checks.len(), p.days.len());
    for check in checks {
        assert_eq!(check["identical"], true, "{check}");
        let recomputed = check["day"] == p.recomputed.as_str();
        assert_eq!(check["commit"], if recomputed { 2 } else { 1 });
        assert_eq!(
            check["rule_hash"],
            p.hashes[usize::from(recomputed)].as_str()
        );
    }

    // One amount edited by hand, the file rewritten with the same schema and
    // metadata: that day differs, at that row, with both values.
    let edited_day = p.days[2].clone();
    let edited_file = format!("daily/day={edited_day}/part-0.parquet");
    let manifest_blake3 = json(
        &std::fs::read_to_string(
            p.out
                .join(format!("_tally/partitions/day={edited_day}.json")),
        )
        .unwrap(),
    )["blake3"]
        .as_str()
        .unwrap()
        .to_string();
    let (creator, template, events, payable, amount) = edit_one_amount(&p.out.join(&edited_file));
    let key = format!("{creator}/{template}");
    let was = format!("{events}/{payable}/{amount}");
    let now = format!("{events}/{payable}/{}", amount + 1);
    let (code, report) = p.verify_json(&[]);
    assert_eq!(code, 1, "{report}");
    let check = check_of(&report, &edited_day);
    assert_eq!(check["identical"], false);
    let differences = check["differences"].as_array().unwrap();
    assert!(
        differences.iter().any(|d| d["key"] == key.as_str()
            && d["expected"] == was.as_str()
            && d["actual"] == now.as_str()),
        "no difference at {key} ({was} -> {now}): {check}"
    );
    assert!(
        differences
            .iter()
            .any(|d| d["what"].as_str().unwrap().contains(&edited_file)
                && d["expected"] == manifest_blake3.as_str()),
        "no blake3 difference: {check}"
    );
    assert_eq!(check["difference_count"], 2, "{check}");
    for day in p.days.iter().filter(|d| **d != edited_day) {
        assert_eq!(check_of(&report, day)["identical"], true, "{day}");
    }
    let out = p.verify(&[]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    common::assert_mentions(
        &text,
        &[
            &format!("{edited_day}  DIFFERS"),
            &format!("{key}: events/payable/amount: expected {was}, found {now}"),
            &manifest_blake3,
            "some partitions differ",
        ],
    );
    let other = &p.days[5];
    let (code, report) = p.verify_json(&["--day", other]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["partitions"].as_array().unwrap().len(), 1);

    // Bytes flipped in another file: its blake3 no longer matches.
    let flipped_day = p.recomputed.clone();
    let flipped = p
        .out
        .join(format!("daily/day={flipped_day}/part-0.parquet"));
    let recorded = json(
        &std::fs::read_to_string(
            p.out
                .join(format!("_tally/partitions/day={flipped_day}.json")),
        )
        .unwrap(),
    )["blake3"]
        .as_str()
        .unwrap()
        .to_string();
    let mut bytes = std::fs::read(&flipped).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 4] {
        *b ^= 0xA5;
    }
    std::fs::write(&flipped, &bytes).unwrap();
    let actual = blake3_file(&flipped);
    let (code, report) = p.verify_json(&["--day", &flipped_day]);
    assert_eq!(code, 1, "{report}");
    let check = check_of(&report, &flipped_day);
    assert_eq!(check["identical"], false);
    assert!(
        check["differences"].as_array().unwrap().iter().any(|d| {
            d["key"] == ""
                && d["what"] == format!("blake3 of daily/day={flipped_day}/part-0.parquet").as_str()
                && d["expected"] == recorded.as_str()
                && d["actual"] == actual.as_str()
        }),
        "no blake3 mismatch reported: {check}"
    );
    let out = p.verify(&[]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    common::assert_mentions(
        &text,
        &[
            &format!("{flipped_day}  DIFFERS"),
            &format!(
                "blake3 of daily/day={flipped_day}/part-0.parquet: expected {recorded}, found {actual}"
            ),
        ],
    );
    for day in p
        .days
        .iter()
        .filter(|d| **d != edited_day && **d != flipped_day)
    {
        assert!(
            text.lines()
                .any(|l| l.starts_with(day.as_str()) && l.contains("identical")),
            "{day} not identical in:\n{text}"
        );
    }

    // An input changed since: nothing can be recomputed, and verify says
    // which input.
    let (_, first_input) = support::files_in(&p.input).remove(0);
    let canonical = std::fs::canonicalize(&first_input).unwrap();
    let mut text = std::fs::read(&first_input).unwrap();
    text.extend_from_slice(b"\n");
    std::fs::write(&first_input, text).unwrap();
    let (code, report) = p.verify_json(&["--day", &p.days[5]]);
    assert_eq!(code, 1, "{report}");
    let check = check_of(&report, &p.days[5]);
    assert!(
        check["differences"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["what"]
                .as_str()
                .unwrap()
                .contains(&canonical.display().to_string())),
        "the changed input is not named: {check}"
    );
    eprintln!("verify: {:?}", started.elapsed());
}

#[test]
fn verify_needs_the_stamped_rule_in_the_registry() {
    let p = Published::new();

    // A registry with creator-pay 1.0.0 only: the v1 days verify, the day
    // stamped with 2.0.0 cannot, and the error says which rule and where.
    let partial = p.dir.path().join("only-v1");
    common::tally_ok(&[
        "rule",
        "publish",
        s(&common::rule("creator-pay-v1")),
        "--registry",
        s(&partial),
    ]);
    let verify = |extra: &[&str]| {
        let mut args = vec!["verify", s(&p.out), "--registry", s(&partial)];
        args.extend_from_slice(extra);
        common::tally(&args)
    };
    let out = verify(&["--day", &p.days[0]]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for extra in [&[][..], &["--day", &p.recomputed]] {
        let out = verify(extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.starts_with("error: ") && !stderr.contains("panicked"),
            "{stderr}"
        );
        common::assert_mentions(&stderr, &[&p.hashes[1], s(&partial)]);
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("identical"),
            "a verdict without the rule"
        );
    }

    // No registry at all there.
    let nowhere = p.dir.path().join("no-registry");
    let out = common::tally(&["verify", s(&p.out), "--registry", s(&nowhere)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    common::assert_mentions(&stderr, &[s(&nowhere)]);
    assert!(
        p.hashes.iter().any(|h| stderr.contains(h.as_str())),
        "no rule hash in: {stderr}"
    );

    // $TALLY_REGISTRY names the registry when --registry is not given.
    let out = Command::new(common::tally_bin())
        .args(["verify", s(&p.out)])
        .env("TALLY_REGISTRY", &p.registry)
        .current_dir(p.dir.path())
        .output()
        .expect("tally runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
