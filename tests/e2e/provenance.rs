//! Per-day provenance and the derived monthly table: each day's partition is
//! stamped with the fingerprint of the input files its events came from, so a
//! late file changes the bytes of exactly the days it adds events to; the
//! monthly table is the daily one summed, rebuilt in the same commit, and
//! reconciled with zeros like it.

use crate::common::{self, s};
use crate::output::{self, day_fingerprint, day_manifest};
use crate::support;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use tempfile::TempDir;

const SEED: u64 = 1010;

/// The day every late event happens on, and the day whose records are sent
/// again (and lose dedup to what was published).
const LATE_DAY: &str = "2026-05-10";
const RESENT_DAY: &str = "2026-05-12";
const LATE_EVENTS: usize = 200;

/// Writes `late/late.jsonl`: `LATE_EVENTS` new events on `LATE_DAY`, and every
/// record of `RESENT_DAY` (with its `occurred_at` as a string) sent again with
/// a later `ingested_at`, so each loses to the record already published.
/// Returns the directory and how many records were re-sent.
fn write_late_file(dir: &Path, input: &Path) -> (std::path::PathBuf, usize) {
    let mut lines = Vec::new();
    for i in 0..LATE_EVENTS {
        lines.push(
            serde_json::json!({
                "event_id": format!("late-{i:05}"),
                "occurred_at": format!("{LATE_DAY}T{:02}:{:02}:00.000Z", i % 24, i % 60),
                "ingested_at": "2026-06-02T00:00:00.000Z",
                "creator_id": format!("cr-late-{}", i % 5),
                "template_id": format!("tpl-late-{}", i % 7),
                "content_kind": "template",
                "action": "use",
                "user_tier": "pro",
                "country": "DE",
            })
            .to_string(),
        );
    }
    let mut resent = 0;
    for (_, path) in support::files_in(input) {
        // Broken records planted by the generator include bytes that are not
        // UTF-8: such lines are not sent again.
        for line in std::fs::read(&path).unwrap().split(|&b| b == b'\n') {
            let Ok(mut record) = serde_json::from_slice::<Value>(line) else {
                continue;
            };
            let on_day = record["occurred_at"]
                .as_str()
                .is_some_and(|t| t.starts_with(RESENT_DAY));
            if on_day && record["event_id"].is_string() {
                record["ingested_at"] = Value::from("2026-07-01T00:00:00.000Z");
                lines.push(record.to_string());
                resent += 1;
            }
        }
    }
    let late = dir.join("late");
    std::fs::create_dir_all(&late).unwrap();
    std::fs::write(late.join("late.jsonl"), lines.join("\n") + "\n").unwrap();
    (late, resent)
}

fn part_bytes(out: &Path) -> BTreeMap<String, Vec<u8>> {
    output::partition_files(out).into_iter().collect()
}

#[test]
fn a_late_file_changes_the_bytes_of_exactly_the_days_it_adds_events_to() {
    let dir = TempDir::new().expect("temp dir");
    let (input, _) = support::generate(dir.path(), "events", 40_000, SEED, "jsonl", 10_000);
    let rule = common::rule("creator-pay-v1");
    let before = dir.path().join("before");
    support::run(&[&input], &rule, &before, &[]);
    let (late, resent) = write_late_file(dir.path(), &input);
    assert!(resent > 100, "only {resent} records re-sent");

    // A full run of all inputs into a new output, and the same run into the
    // published one (reconciled).
    let after = dir.path().join("after");
    let report = support::run(&[&input, &late], &rule, &after, &[]);
    assert_eq!(support::count(&report, "unique"), {
        let first: Value = common::report(&before);
        support::count(&first, "unique") + LATE_EVENTS as u64
    });
    let rerun = support::run(&[&input, &late], &rule, &before, &[]);

    let published = part_bytes(&after);
    let reconciled = part_bytes(&before);
    assert_eq!(
        published, reconciled,
        "a rerun gives the bytes of a new output"
    );

    // Against a run without the late file, only the late day differs.
    let without = dir.path().join("without");
    support::run(&[&input], &rule, &without, &[]);
    let original = part_bytes(&without);
    assert_eq!(
        original.keys().collect::<Vec<_>>(),
        published.keys().collect::<Vec<_>>()
    );
    let late_file = format!("daily/day={LATE_DAY}/part-0.parquet");
    for (name, bytes) in &original {
        if *name == late_file {
            assert_ne!(bytes, &published[name], "{name} has new events");
        } else {
            assert!(
                bytes == &published[name],
                "{name}: no event of that day is in the late file, yet its bytes changed"
            );
        }
    }
    assert!(
        original.contains_key(&late_file),
        "{late_file} was published"
    );

    // The late day's provenance names the late file with its events; the
    // re-sent day's does not name it, and its fingerprint is unchanged.
    let late_path = std::fs::canonicalize(late.join("late.jsonl")).unwrap();
    let manifest = day_manifest(&after, LATE_DAY);
    let from_late: Vec<&Value> = manifest["day_inputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["path"] == s(&late_path))
        .collect();
    assert_eq!(from_late.len(), 1, "{manifest}");
    assert_eq!(from_late[0]["events"], LATE_EVENTS);
    assert_eq!(
        manifest["lineage"]["input_fingerprint"],
        day_fingerprint(&manifest).as_str()
    );
    let resent_day = day_manifest(&after, RESENT_DAY);
    assert!(
        resent_day["day_inputs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["path"] != s(&late_path)),
        "{resent_day}"
    );
    assert_eq!(
        resent_day["lineage"]["input_fingerprint"],
        day_manifest(&without, RESENT_DAY)["lineage"]["input_fingerprint"]
    );

    // The rerun changed rows of the late day only, and the month it is in.
    let log: Value = serde_json::from_str(
        &std::fs::read_to_string(before.join("_tally/log/00000002.json")).unwrap(),
    )
    .unwrap();
    let changes = output::changed_days(&before, 2);
    assert_eq!(changes, [LATE_DAY.to_string()], "{log}");
    assert_eq!(rerun["derived"][0]["table"], "monthly");
    assert_eq!(rerun["derived"][0]["period"], &LATE_DAY[..7]);
    assert_eq!(log["derived"], rerun["derived"]);
    assert!(rerun["derived"][0]["reconcile"]["added"].as_u64().unwrap() > 0);
    assert_eq!(
        output::monthly(&before),
        output::monthly_from_daily(&output::partitions(&before))
    );

    // Verify recomputes every day's fingerprint from the inputs.
    let registry = dir.path().join("registry");
    let golden = common::root().join("rules/creator-pay-v1/golden.jsonl");
    common::tally_ok(&[
        "rule",
        "publish",
        s(&rule),
        "--golden",
        s(&golden),
        "--registry",
        s(&registry),
    ]);
    common::tally_ok(&["verify", s(&before), "--registry", s(&registry)]);
}

#[test]
fn a_rerun_without_an_input_zeroes_the_monthly_rows_of_creators_gone() {
    let dir = TempDir::new().expect("temp dir");
    let (input, _) = support::generate(dir.path(), "events", 30_000, SEED + 1, "parquet", 10_000);
    let files = support::files_in(&input);
    assert_eq!(files.len(), 3);
    let rule = common::rule("creator-pay-v1");
    let out = dir.path().join("out");
    support::run(&[&input], &rule, &out, &[]);
    let first = output::monthly(&out);
    assert_eq!(first, output::monthly_from_daily(&output::partitions(&out)));
    assert!(first.values().all(|f| f.0 > 0), "no zero rows yet");

    // Only the first file: creators seen only in the others are zeroed in the
    // daily table, and so in the monthly one.
    support::run(&[&files[0].1], &rule, &out, &[]);
    let second = output::monthly(&out);
    assert_eq!(
        second,
        output::monthly_from_daily(&output::partitions(&out))
    );
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        second.keys().collect::<Vec<_>>(),
        "rows are never deleted"
    );
    let zeroed: Vec<_> = second.iter().filter(|(_, f)| **f == (0, 0, 0)).collect();
    assert!(
        !zeroed.is_empty(),
        "some creators were only in the other files"
    );
    let changes = output::monthly_changes(&out, 2);
    for ((month, creator), _) in &zeroed {
        assert_eq!(
            changes
                .get(&(month.clone(), creator.clone()))
                .map(String::as_str),
            Some("zeroed"),
            "{month} {creator}"
        );
    }
    for (key, change) in &changes {
        assert_ne!(
            first[key], second[key],
            "{key:?} is in the changeset as {change}"
        );
    }

    // The monthly partition's manifest names the day partitions it was built
    // from, as they are now.
    let months: Vec<&String> = second.keys().map(|(m, _)| m).collect();
    let month = months[0];
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join(format!("_tally/monthly/month={month}.json"))).unwrap(),
    )
    .unwrap();
    let days: Vec<(String, String)> = output::partitions(&out)
        .iter()
        .filter(|p| p.day.starts_with(month.as_str()))
        .map(|p| {
            let file = out.join(format!("daily/day={}/part-0.parquet", p.day));
            (p.day.clone(), output::blake3_file(&file))
        })
        .collect();
    let listed: Vec<(String, String)> = manifest["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["day"].as_str().unwrap().to_string(),
                d["blake3"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(listed, days);
    assert_eq!(manifest["commit"], 2);
    let file = out.join(format!("monthly/month={month}/part-0.parquet"));
    assert_eq!(manifest["blake3"], output::blake3_file(&file).as_str());

    // `tally verify` checks the monthly partitions against the daily table,
    // and finds one whose bytes were changed.
    let registry = dir.path().join("registry");
    let golden = common::root().join("rules/creator-pay-v1/golden.jsonl");
    let publish = ["rule", "publish", s(&rule), "--golden", s(&golden)];
    common::tally_ok(&[&publish[..], &["--registry", s(&registry)]].concat());
    let verify = ["verify", s(&out), "--registry", s(&registry)];
    let text = common::tally_ok(&verify);
    common::assert_mentions(&text, &[&format!("monthly {month}  identical")]);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.push(b'\n');
    std::fs::write(&file, bytes).unwrap();
    let result = common::tally(&verify);
    assert_eq!(result.status.code(), Some(1));
    let text = String::from_utf8_lossy(&result.stdout);
    common::assert_mentions(
        &text,
        &[&format!("monthly {month}  DIFFERS"), "blake3 of monthly/"],
    );
}
