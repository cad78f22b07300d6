//! `tally explain` end to end, on a small input written here by hand: one
//! event read six times (the survivor, an exact re-send, a late re-send in
//! JSON and one in Parquet, a conflicting duplicate and a quarantined record),
//! one whose survivor is read last, one that was only quarantined, and ids
//! that are not in the input. The survivor and the verdicts expected are
//! worked out with the model (`model.rs`), not taken from Tally.

use crate::common::{self, s};
use crate::model::{self, Event, Expected};
use crate::output::{self, blake3_file};
use crate::support;
use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tempfile::TempDir;

/// A JSON line of the event contract.
fn line(
    id: &str,
    ingested: &str,
    brand: Option<&str>,
    kind: &str,
    action: &str,
    tier: &str,
    country: &str,
) -> String {
    json!({
        "event_id": id,
        "occurred_at": "2026-05-02T09:30:00Z",
        "ingested_at": ingested,
        "creator_id": "cr-7",
        "template_id": "tpl-3",
        "brand_id": brand,
        "content_kind": kind,
        "action": action,
        "user_tier": tier,
        "country": country,
    })
    .to_string()
}

/// The event `ev-42` as first sent: an image used by a pro user in Brazil,
/// payable under both policies at different rates (regional pricing in v2).
fn ev42(ingested: &str, country: &str) -> String {
    line(
        "ev-42",
        ingested,
        Some("br-1"),
        "image",
        "use",
        "pro",
        country,
    )
}

const FIRST_SENT: &str = "2026-05-02T09:30:05Z";

/// The input directory: `a.jsonl`, `b.jsonl` and `c.parquet`.
struct Input {
    dir: PathBuf,
    a: Vec<String>,
    b: Vec<String>,
}

impl Input {
    fn file(&self, name: &str) -> String {
        // Files found in a directory are named by the directory joined with
        // their name.
        self.dir.join(name).display().to_string()
    }
}

fn write_input(root: &Path) -> Input {
    let dir = root.join("in");
    std::fs::create_dir_all(&dir).expect("create dir");
    let a = vec![
        line(
            "ev-other-1",
            FIRST_SENT,
            None,
            "template",
            "use",
            "pro",
            "US",
        ),
        // Line 2: the survivor.
        ev42(FIRST_SENT, "BR"),
        // Line 3: ev-43 as sent first, by a pro user; a later re-send with an
        // earlier ingested_at (b.jsonl line 5) differs and survives.
        line(
            "ev-43",
            "2026-05-02T12:00:00Z",
            None,
            "video",
            "view",
            "pro",
            "US",
        ),
        // Line 4: an exact re-send.
        ev42(FIRST_SENT, "BR"),
        // Line 5: an event that breaks the contract, and nothing else.
        line("ev-44", FIRST_SENT, None, "Video", "use", "pro", "US"),
    ];
    let b = vec![
        // Line 1: a late re-send, days later.
        ev42("2026-05-04T00:00:00Z", "BR"),
        // Line 2: blank (skipped, but it keeps its number).
        String::new(),
        // Line 3: a conflicting duplicate with the same ingested_at; the
        // tie-break on country (BR < US) keeps line 2 of a.jsonl.
        ev42(FIRST_SENT, "US"),
        // Line 4: the same event id with a bad country: quarantined.
        ev42(FIRST_SENT, "br"),
        // Line 5: ev-43 by an enterprise user, ingested earlier than a.jsonl
        // line 3.
        line(
            "ev-43",
            "2026-05-02T11:00:00Z",
            None,
            "video",
            "view",
            "enterprise",
            "US",
        ),
    ];
    std::fs::write(dir.join("a.jsonl"), a.join("\n") + "\n").expect("write");
    std::fs::write(dir.join("b.jsonl"), b.join("\n") + "\n").expect("write");
    write_parquet(&dir.join("c.parquet"));
    Input { dir, a, b }
}

/// `c.parquet`: row 0 another event, row 1 a late re-send of `ev-42`.
fn write_parquet(path: &Path) {
    let ms = |t: &str| model::parse_rfc3339(t).expect("a timestamp");
    let text = |values: [&str; 2]| -> ArrayRef { Arc::new(StringArray::from(values.to_vec())) };
    let occurred = ms("2026-05-02T09:30:00Z");
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("event_id", text(["ev-other-2", "ev-42"])),
        ("occurred_at", Arc::new(Int64Array::from(vec![occurred; 2]))),
        (
            "ingested_at",
            Arc::new(Int64Array::from(vec![
                ms(FIRST_SENT),
                ms("2026-05-03T08:00:00Z"),
            ])),
        ),
        ("creator_id", text(["cr-7", "cr-7"])),
        ("template_id", text(["tpl-9", "tpl-3"])),
        (
            "brand_id",
            Arc::new(StringArray::from(vec![None, Some("br-1")])),
        ),
        ("content_kind", text(["font", "image"])),
        ("action", text(["export", "use"])),
        ("user_tier", text(["teams", "pro"])),
        ("country", text(["DE", "BR"])),
    ];
    let schema = Schema::new(
        columns
            .iter()
            .map(|(name, array)| Field::new(*name, array.data_type().clone(), *name == "brand_id"))
            .collect::<Vec<_>>(),
    );
    assert_eq!(schema.field(1).data_type(), &DataType::Int64);
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .expect("a batch");
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), None).expect("a writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    std::fs::write(path, bytes).expect("write parquet");
}

/// `tally explain` with both reference rules; returns the JSON and the text.
fn explain(input: &Path, event: &str) -> (Value, String) {
    let (v1, v2) = (
        common::rule("creator-pay-v1"),
        common::rule("creator-pay-v2"),
    );
    let args = [
        "explain",
        "--input",
        s(input),
        "--rule",
        s(&v1),
        "--rule",
        s(&v2),
        "--event",
        event,
    ];
    let text = common::tally_ok(&args);
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let json = serde_json::from_str(&common::tally_ok(&with_json)).expect("--json prints JSON");
    (json, text)
}

/// The survivors the model finds in the input, by event id.
fn model_survivor(input: &Input, id: &str) -> Event {
    let files: Vec<(String, PathBuf)> = ["a.jsonl", "b.jsonl", "c.parquet"]
        .iter()
        .map(|n| (input.file(n), input.dir.join(n)))
        .collect();
    let named: Vec<(String, &Path)> = files
        .iter()
        .map(|(n, p)| (n.clone(), p.as_path()))
        .collect();
    Expected::of_files(&named)
        .survivors
        .into_iter()
        .find(|e| e.event_id == id)
        .unwrap_or_else(|| panic!("the model has no survivor for {id}"))
}

/// Where a record was read and what became of it, as `tally explain` shows
/// it: `(file, position kind, position, status, note)`.
type Shown<'a> = (&'a str, &'a str, u64, &'a str, Option<&'a str>);

/// Checks a record shown for a valid event against the JSON line it came
/// from: every field as sent, timestamps as the same instants.
fn assert_fields(shown: &Value, sent: &str) {
    let sent: Value = serde_json::from_str(sent).expect("JSON");
    for field in model::FIELDS {
        match field {
            "occurred_at" | "ingested_at" => {
                let got = shown[field].as_str().map(model::parse_rfc3339);
                let want = sent[field].as_str().map(model::parse_rfc3339);
                assert!(
                    got.is_some() && got == want,
                    "{field}: {shown} against {sent}"
                );
            }
            _ => assert_eq!(shown[field], sent[field], "{field}: {shown} against {sent}"),
        }
    }
}

/// The record of the text form for `(file, kind, position)`: its line with
/// what follows the colon.
fn text_entry<'t>(text: &'t str, file: &str, kind: &str, position: u64) -> &'t str {
    let head = format!("{file} {kind} {position}:");
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix(&head))
        .unwrap_or_else(|| panic!("no {head:?} in:\n{text}"))
}

/// Checks the verdicts shown against the model's policies on `survivor`.
fn assert_verdicts(json: &Value, text: &str, survivor: &Event) {
    let verdicts = json["verdicts"].as_array().expect("verdicts");
    let rules = [
        ("creator-pay-v1", "1.0.0", model::creator_pay_v1(survivor)),
        ("creator-pay-v2", "2.0.0", model::creator_pay_v2(survivor)),
    ];
    assert_eq!(
        verdicts.len(),
        rules.len(),
        "one verdict per rule: {verdicts:?}"
    );
    for (verdict, (rule, version, want)) in verdicts.iter().zip(rules) {
        assert_eq!(
            verdict["rule"]["hash"],
            blake3_file(&common::rule(rule)).as_str()
        );
        assert_eq!(verdict["rule"]["name"], "creator-pay");
        assert_eq!(verdict["rule"]["version"], version);
        assert_eq!(verdict["payable"], want.payable, "{rule}");
        assert_eq!(verdict["rate_micros"], want.rate_micros, "{rule}");
        assert_eq!(verdict["reason"], want.reason, "{rule}");
        let shown = text
            .lines()
            .find(|l| l.contains(&format!("creator-pay@{version}")))
            .unwrap_or_else(|| panic!("no verdict of {rule} in:\n{text}"));
        let payable = if want.payable {
            "payable"
        } else {
            "not payable"
        };
        let said = format!(
            ": {payable} at {} micros, reason {}",
            want.rate_micros, want.reason
        );
        assert!(shown.ends_with(&said), "{shown:?} should end with {said:?}");
    }
}

#[test]
fn explain_shows_every_record_of_an_event_and_both_verdicts() {
    let dir = TempDir::new().expect("temp dir");
    let input = write_input(dir.path());
    let (json, text) = explain(&input.dir, "ev-42");
    assert_eq!(json["event_id"], "ev-42");
    assert!(text.starts_with("event ev-42\n"), "{text}");

    // (file, kind, position, status, note, the record as sent)
    let (a, b, c) = (
        input.file("a.jsonl"),
        input.file("b.jsonl"),
        input.file("c.parquet"),
    );
    let parquet_resend = line(
        "ev-42",
        "2026-05-03T08:00:00Z",
        Some("br-1"),
        "image",
        "use",
        "pro",
        "BR",
    );
    let want: Vec<(Shown, &str)> = vec![
        ((&a, "line", 2, "survivor", None), &input.a[1]),
        ((&a, "line", 4, "duplicate", None), &input.a[3]),
        ((&b, "line", 1, "duplicate", None), &input.b[0]),
        ((&b, "line", 3, "duplicate", Some("conflict")), &input.b[2]),
        (
            (&b, "line", 4, "quarantined", Some("bad-value:country")),
            &input.b[3],
        ),
        ((&c, "row", 1, "duplicate", None), &parquet_resend),
    ];
    let records = json["records"].as_array().expect("records");
    let got: Vec<Shown> = records
        .iter()
        .map(|r| {
            (
                r["file"].as_str().expect("file"),
                r["position_kind"].as_str().expect("position_kind"),
                r["position"].as_u64().expect("position"),
                r["status"].as_str().expect("status"),
                r["note"].as_str(),
            )
        })
        .collect();
    let expected: Vec<Shown> = want.iter().map(|(shown, _)| *shown).collect();
    assert_eq!(got, expected, "the records of ev-42, in input order");

    for (record, ((file, kind, position, status, note), sent)) in records.iter().zip(&want) {
        if *status == "quarantined" {
            // The raw record, as it was sent.
            let sent: Value = serde_json::from_str(sent).expect("JSON");
            assert_eq!(record["record"], sent);
        } else {
            assert_fields(&record["record"], sent);
        }
        let entry = text_entry(&text, file, kind, *position);
        let said = match note {
            Some(note) => format!(" {status} ({note})"),
            None => format!(" {status}"),
        };
        assert_eq!(entry, said, "text of {file} {kind} {position}");
    }

    // The survivor is the one the contract picks, and the verdicts are the
    // policies' on it.
    let survivor = model_survivor(&input, "ev-42");
    assert_eq!(survivor.country, "BR");
    assert_eq!(
        survivor.ingested_ms,
        model::parse_rfc3339(FIRST_SENT).unwrap()
    );
    assert_fields(&records[0]["record"], &input.a[1]);
    assert_verdicts(&json, &text, &survivor);
    assert_eq!(json["verdicts"][0]["rate_micros"], 10_000);
    assert_eq!(json["verdicts"][1]["rate_micros"], 6_400);
}

#[test]
fn explain_picks_the_survivor_by_the_contract_not_by_read_order() {
    let dir = TempDir::new().expect("temp dir");
    let input = write_input(dir.path());
    let (json, text) = explain(&input.dir, "ev-43");
    let (a, b) = (input.file("a.jsonl"), input.file("b.jsonl"));
    let records = json["records"].as_array().expect("records");
    let got: Vec<(&str, u64, &str, Option<&str>)> = records
        .iter()
        .map(|r| {
            (
                r["file"].as_str().expect("file"),
                r["position"].as_u64().expect("position"),
                r["status"].as_str().expect("status"),
                r["note"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (a.as_str(), 3, "duplicate", Some("conflict")),
            (b.as_str(), 5, "survivor", None),
        ]
    );
    assert_fields(&records[0]["record"], &input.a[2]);
    assert_fields(&records[1]["record"], &input.b[4]);
    assert_eq!(text_entry(&text, &a, "line", 3), " duplicate (conflict)");
    assert_eq!(text_entry(&text, &b, "line", 5), " survivor");

    // The enterprise user's record survives: a paid video view under v2.
    let survivor = model_survivor(&input, "ev-43");
    assert_eq!(survivor.user_tier, "enterprise");
    assert_verdicts(&json, &text, &survivor);
    assert_eq!(json["verdicts"][0]["reason"], "view-only");
    assert_eq!(json["verdicts"][1]["reason"], "video-view");
}

#[test]
fn explain_of_an_event_that_was_only_quarantined() {
    let dir = TempDir::new().expect("temp dir");
    let input = write_input(dir.path());
    let (json, text) = explain(&input.dir, "ev-44");
    let a = input.file("a.jsonl");
    let sent: Value = serde_json::from_str(&input.a[4]).expect("JSON");
    assert_eq!(
        json["records"],
        json!([{
            "file": a,
            "position_kind": "line",
            "position": 5,
            "status": "quarantined",
            "note": "bad-value:content_kind",
            "record": sent,
        }])
    );
    // Nothing survived, so no rule classified it.
    assert_eq!(json["verdicts"], json!([]));
    assert_eq!(
        text_entry(&text, &a, "line", 5),
        " quarantined (bad-value:content_kind)"
    );
    assert!(
        !text.contains("creator-pay@"),
        "a verdict for a quarantined event:\n{text}"
    );
}

#[test]
fn explain_finds_a_quarantined_parquet_row() {
    let dir = TempDir::new().expect("temp dir");
    let (input, planted) = support::generate(dir.path(), "gen", 5_000, 5, "parquet", 5_000);
    assert!(planted.quarantined > 0);
    let out = dir.path().join("out");
    support::run(&[&input], &common::rule("creator-pay-v1"), &out, &[]);
    let quarantined = output::quarantine(&out);
    // A row whose event_id can be read.
    let (q, raw, id) = quarantined
        .iter()
        .find_map(|q| {
            let raw: Value = serde_json::from_str(q["raw"].as_str()?).ok()?;
            let id = raw.get("event_id")?.as_str()?.to_string();
            let about_id = q["reason"].as_str()?.ends_with(":event_id");
            (!about_id).then(|| (q.clone(), raw, id))
        })
        .expect("a quarantined row with its event_id");
    let (json, text) = explain(&input, &id);
    let found: Vec<&Value> = json["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["status"] == "quarantined")
        .collect();
    assert_eq!(
        found,
        [&json!({
            "file": q["file"],
            "position_kind": "row",
            "position": q["row"],
            "status": "quarantined",
            "note": q["reason"],
            "record": raw,
        })],
        "{json}"
    );
    let file = q["file"].as_str().expect("file");
    let row = q["row"].as_u64().expect("row");
    let reason = q["reason"].as_str().expect("reason");
    assert_eq!(
        text_entry(&text, file, "row", row),
        format!(" quarantined ({reason})")
    );
}

/// `tally explain` of an event no record has, which must exit 1 with an
/// `error:` line naming it, having printed the explanation all the same:
/// (JSON, text).
fn explain_unknown(input: &Path, event: &str) -> (Value, String) {
    let (v1, v2) = (
        common::rule("creator-pay-v1"),
        common::rule("creator-pay-v2"),
    );
    let args = [
        "explain",
        "--input",
        s(input),
        "--rule",
        s(&v1),
        "--rule",
        s(&v2),
        "--event",
        event,
    ];
    let mut printed = Vec::new();
    for json in [false, true] {
        let mut args = args.to_vec();
        if json {
            args.push("--json");
        }
        let out = common::tally(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "tally {args:?}: {stderr}");
        assert_eq!(
            stderr,
            format!("error: no record with event_id {event:?} in the input\n"),
            "tally {args:?}"
        );
        printed.push(String::from_utf8(out.stdout).expect("utf-8 stdout"));
    }
    let json = serde_json::from_str(&printed[1]).expect("--json prints JSON");
    (json, printed.remove(0))
}

#[test]
fn explain_of_an_unknown_event_says_there_is_no_record() {
    let dir = TempDir::new().expect("temp dir");
    let input = write_input(dir.path());
    // An id nowhere in the input, and one that is only a prefix of ids that are.
    for id in ["ev-404", "ev-4", "ev-42 "] {
        let (json, text) = explain_unknown(&input.dir, id);
        assert_eq!(
            json,
            json!({"schema_version": 1, "event_id": id, "records": [], "verdicts": []}),
            "{id:?}"
        );
        assert!(
            text.contains("no record with this event_id in the input"),
            "{id:?}: {text}"
        );
        assert!(!text.contains("creator-pay@"), "{id:?}: {text}");
    }
}

#[test]
fn explain_lists_no_malformed_record_of_another_event() {
    // A truncated line of event ev-420 is quarantined as malformed JSON. Its
    // event id cannot be read, and it is not ev-42: explaining ev-42 must not
    // list it as one of ev-42's records.
    let dir = TempDir::new().expect("temp dir");
    let input = write_input(dir.path());
    let broken = r#"{"event_id":"ev-420","occurred_at":"2026-05-02T09:30:00Z","ingested_at":"#;
    std::fs::write(input.dir.join("d.jsonl"), format!("{broken}\n")).expect("write");
    let (json, _) = explain(&input.dir, "ev-42");
    let d = input.file("d.jsonl");
    let listed: Vec<&Value> = json["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["file"] == d.as_str())
        .collect();
    assert!(
        listed.is_empty(),
        "explain --event ev-42 lists the malformed line of ev-420 as a record of ev-42: {listed:?}"
    );
    assert_eq!(json["records"].as_array().expect("records").len(), 6);
}
