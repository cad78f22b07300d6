//! Incremental recompute: `tally run --stale-only` applies late input files
//! to the published days without reading the recorded inputs, when the late
//! files only add events, and `tally status` looks up only their events in
//! the survivor index. The truth is a full recompute of a copy of the
//! output: the partitions must be its bytes, and status must say what it
//! says when it reads the whole index (`--full-scan`).

use crate::backfill::{backfill, full, index};
use crate::common::{self, s};
use crate::model::Event;
use crate::status::{self, Base, base, noon, partitions, write_events};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// `tally status`, once looking the new records up and once reading the
/// whole index: both must say the same. Returns the exit code and report.
fn status_both_ways(base: &Base, inputs: &[&Path]) -> (i32, Value) {
    let (code, looked_up) = status::status(&base.out, inputs, &base.rule, &[]);
    let (full_code, whole) = status::status(&base.out, inputs, &base.rule, &["--full-scan"]);
    assert_eq!(whole["index"]["read"], "whole");
    let strip = |report: &Value| {
        let mut report = report.clone();
        report["index"]["read"] = Value::Null;
        report["files_read"] = Value::Null;
        report
    };
    assert_eq!(
        strip(&looked_up),
        strip(&whole),
        "lookup and full scan agree"
    );
    assert_eq!(code, full_code);
    (code, looked_up)
}

/// Status, both ways, finds exactly the partitions `stale` stale (exit
/// code 3).
fn assert_stale(base: &Base, inputs: &[&Path], stale: &[&str]) {
    let (code, report) = status_both_ways(base, inputs);
    assert_eq!(code, 3);
    assert_eq!(
        status::stale(&report),
        stale.iter().map(|s| s.to_string()).collect()
    );
}

/// A late file of new events on `days`, `n` a day, with `prefix` ids.
fn new_events(base: &Base, prefix: &str, days: &[&str], n: i64) -> Vec<Event> {
    let template = base.on_day("2026-05-07", 1)[0].0.clone();
    days.iter()
        .flat_map(|day| {
            let template = template.clone();
            (0..n).map(move |i| Event {
                event_id: format!("{prefix}-{day}-{i:03}"),
                occurred_ms: noon(day) + i,
                ingested_ms: noon("2026-06-10") + i,
                creator_id: format!("late-creator-{}", i % 3),
                ..template.clone()
            })
        })
        .collect()
}

/// `tally run --stale-only`, which must succeed incrementally reading
/// `files` input files; returns its report.
fn incremental_run(base: &Base, inputs: &[&Path], files: u64, why: &str) -> Value {
    let (code, run) = backfill(inputs, &base.rule, &base.out, &["--stale-only"]);
    assert_eq!(code, 0, "{run:#}");
    assert_eq!(run["plan"]["incremental"], true, "{}", run["plan"]["reads"]);
    assert_eq!(run["plan"]["input_files"], files, "{why}");
    run
}

/// `tally run --stale-only` over inputs with a tie, which cannot add an
/// index layer: it must recompute the stale days from the files they need
/// and the files of the recorded records the new ones tie with, and write
/// what a full recompute into `name` writes, index included.
fn recompute_for_a_tie(base: &Base, inputs: &[&Path], name: &str) -> Value {
    let truth = full(base, name, inputs, &base.rule);
    let (code, run) = backfill(inputs, &base.rule, &base.out, &["--stale-only"]);
    assert_eq!(code, 0, "{run:#}");
    assert_eq!(run["plan"]["incremental"], false);
    assert!(
        run["plan"]["reads"].as_str().unwrap().contains("tie"),
        "{}",
        run["plan"]["reads"]
    );
    assert_eq!(partitions(&base.out), partitions(&truth));
    assert_eq!(index(&base.out), index(&truth), "a fresh index");
    run
}

/// Status after a run: everything fresh, the index with `layers` layers.
fn assert_fresh(base: &Base, inputs: &[&Path], layers: u64) {
    let (code, after) = status_both_ways(base, inputs);
    assert_eq!(code, 0, "fresh after: {after:#}");
    assert_eq!(after["index"]["layers"], layers);
}

fn paths(given: &[PathBuf]) -> Vec<&Path> {
    given.iter().map(PathBuf::as_path).collect()
}

fn write(base: &Base, name: &str, events: &[Event]) -> PathBuf {
    let path = base.path(&format!("{name}/late.jsonl"));
    write_events(&path, events);
    path.parent().unwrap().to_path_buf()
}

#[test]
fn late_files_are_added_to_the_published_days_without_reading_the_recorded_inputs() {
    let base = base();
    // New events on two published days and on an unpublished one, and
    // re-sends of published events ingested later: duplicates, one in three
    // of them conflicting.
    let mut late = new_events(&base, "a", &["2026-05-03", "2026-05-21", "2026-06-04"], 12);
    let resent = base.on_day("2026-05-11", 9);
    for (i, (e, _)) in resent.iter().enumerate() {
        late.push(Event {
            ingested_ms: e.ingested_ms + 3_600_000,
            template_id: if i % 3 == 0 {
                format!("{}-changed", e.template_id)
            } else {
                e.template_id.clone()
            },
            ..e.clone()
        });
    }
    // One broken line: quarantined by the incremental run.
    let first = write(&base, "late-a", &late);
    let file = first.join("late.jsonl");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("{\"event_id\": \"broken\"}\n");
    std::fs::write(&file, text).unwrap();
    // Every input so far: each step adds its late files.
    let mut given = vec![base.input.clone(), first.clone()];
    let inputs = paths(&given);

    let (code, report) = status_both_ways(&base, &inputs);
    assert_eq!(code, 3);
    assert_eq!(report["index"]["read"], "lookup");
    let stale = status::stale(&report);
    assert_eq!(
        stale,
        [
            "daily/day=2026-05-03",
            "daily/day=2026-05-21",
            "daily/day=2026-06-04",
            "monthly/month=2026-05",
            "monthly/month=2026-06"
        ]
        .map(String::from)
        .into(),
        "the re-sends change nothing"
    );
    // Status read only the late file's records.
    for read in report["files_read"].as_array().unwrap() {
        assert!(read["path"].as_str().unwrap().contains("late-a"), "{read}");
    }

    // Stale: exit code 3.
    let text = common::tally(&[
        "status",
        "--out",
        s(&base.out),
        "--rule",
        s(&base.rule),
        "--input",
        s(inputs[0]),
        "--input",
        s(inputs[1]),
    ]);
    assert_eq!(text.status.code(), Some(3));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("the new records' events looked up"), "{text}");
    let plan = common::tally_ok(&[
        "run",
        "--stale-only",
        "--dry-run",
        "--rule",
        s(&base.rule),
        "--out",
        s(&base.out),
        "--input",
        s(inputs[0]),
        "--input",
        s(inputs[1]),
    ]);
    assert!(
        plan.contains(
            "reads only the new input files, adding their events to the published rows: 1 file"
        ),
        "{plan}"
    );

    let truth = full(&base, "full-a", &inputs, &base.rule);
    let (code, run) = backfill(&inputs, &base.rule, &base.out, &["--stale-only"]);
    assert_eq!(code, 0, "{run:#}");
    assert_eq!(run["plan"]["incremental"], true, "{:#}", run["plan"]);
    assert_eq!(run["plan"]["input_files"], 1);
    let counts = &run["commits"][0]["counts"];
    assert_eq!(
        counts["records"],
        late.len() + 1,
        "only the late file is read"
    );
    assert_eq!(counts["quarantined"], 1);
    assert_eq!(counts["duplicates"], resent.len());
    assert_eq!(counts["conflicts"], resent.len().div_ceil(3));
    assert_eq!(counts["unique"], 36);
    assert_eq!(
        partitions(&base.out),
        partitions(&truth),
        "daily and monthly bytes"
    );
    let quarantine = common::snapshot(&base.out)
        .into_iter()
        .filter(|(name, _)| name.contains("quarantine"))
        .count();
    assert!(quarantine > 0);
    let (code, after) = status_both_ways(&base, &inputs);
    assert_eq!(code, 0, "fresh after: {after:#}");
    assert_eq!(after["index"]["layers"], 1);
    assert_eq!(after["index"]["events"], {
        let (_, t) = status::status(&truth, &inputs, &base.rule, &[]);
        t["index"]["events"].clone()
    });

    // A second late file: a second layer; still the bytes of a full
    // recompute, and a commit per window with --chunk-days.
    let second = write(
        &base,
        "late-b",
        &new_events(&base, "b", &["2026-05-05", "2026-05-06", "2026-05-25"], 5),
    );
    given.push(second);
    let inputs = paths(&given);
    let truth = full(&base, "full-b", &inputs, &base.rule);
    let (code, run) = backfill(
        &inputs,
        &base.rule,
        &base.out,
        &["--stale-only", "--chunk-days", "2"],
    );
    assert_eq!(code, 0, "{run:#}");
    assert_eq!(run["plan"]["incremental"], true);
    assert_eq!(
        run["commits"].as_array().unwrap().len(),
        2,
        "05-05..06, then 05-25"
    );
    assert_eq!(partitions(&base.out), partitions(&truth));
    assert_fresh(&base, &inputs, 2);
    // Every partition recomputes from the inputs its lineage names.
    let registry = base.path("registry");
    common::tally_ok(&["rule", "publish", s(&base.rule), "--registry", s(&registry)]);
    let verified =
        common::tally_ok(&["verify", s(&base.out), "--registry", s(&registry), "--json"]);
    let verified: Value = serde_json::from_str(&verified).unwrap();
    let checked = verified["partitions"].as_array().unwrap();
    assert!(checked.len() > 30);
    for p in checked {
        assert_eq!(p["identical"], true, "{p}");
    }

    // An earlier re-ingest that moves an event to another day displaces its
    // recorded survivor: the file holding it is read back (and no other
    // recorded file), its figures come off its day.
    let (moved, _) = base.on_day("2026-05-14", 1)[0].clone();
    let third = write(
        &base,
        "late-c",
        &[Event {
            ingested_ms: moved.ingested_ms - 60_000,
            occurred_ms: noon("2026-05-20"),
            ..moved
        }],
    );
    given.push(third);
    let inputs = paths(&given);
    let truth = full(&base, "full-c", &inputs, &base.rule);
    assert_stale(
        &base,
        &inputs,
        &[
            "daily/day=2026-05-14",
            "daily/day=2026-05-20",
            "monthly/month=2026-05",
        ],
    );
    let run = incremental_run(&base, &inputs, 2, "the new file and the survivor's");
    assert!(
        run["plan"]["reads"]
            .as_str()
            .unwrap()
            .contains("1 recorded survivor"),
        "{}",
        run["plan"]["reads"]
    );
    assert_eq!(partitions(&base.out), partitions(&truth));
    assert_fresh(&base, &inputs, 3);

    // The same records again, on the same timestamps: from a file that
    // comes after the recorded one, a duplicate; from a file that comes
    // first, it displaces the recorded survivor (whose file is read back)
    // and takes the day's provenance. Both incremental.
    let (again, _) = base.on_day("2026-05-18", 1)[0].clone();
    let (first_again, _) = base.on_day("2026-05-19", 1)[0].clone();
    let later = write(&base, "late-e", &[again]);
    let sooner = write(&base, "a-first", &[first_again]);
    given.extend([later, sooner]);
    let inputs = paths(&given);
    let truth = full(&base, "full-e", &inputs, &base.rule);
    assert_stale(
        &base,
        &inputs,
        &["daily/day=2026-05-19", "monthly/month=2026-05"],
    );
    let run = incremental_run(&base, &inputs, 3, "the new files and the survivor's");
    assert_eq!(run["commits"][0]["counts"]["duplicates"], 1);
    assert_eq!(partitions(&base.out), partitions(&truth));
    assert_fresh(&base, &inputs, 4);

    // A new record on a recorded survivor's timestamps with other fields:
    // an index layer could not tell their order, so the index is written
    // anew.
    let (tied, _) = base.on_day("2026-05-16", 1)[0].clone();
    let fourth = write(
        &base,
        "late-d",
        &[Event {
            // Sorts first: this record wins the tie.
            template_id: format!("!{}", tied.template_id),
            ..tied
        }],
    );
    given.push(fourth);
    let inputs = paths(&given);
    let run = recompute_for_a_tie(&base, &inputs, "full-d");
    // Not every file: those of the stale day's events, and the recorded
    // record's.
    assert_eq!(run["plan"]["partial"], true, "{}", run["plan"]["reads"]);
    let files: usize = inputs
        .iter()
        .map(|i| crate::support::files_in(i).len())
        .sum();
    assert!(
        run["plan"]["input_files"].as_u64() < Some(files as u64),
        "{}",
        run["plan"]["reads"]
    );
    let (code, after) = status_both_ways(&base, &inputs);
    assert_eq!(code, 0);
    assert_eq!(after["index"]["layers"], 0);

    // Another rule: every day stale with cause "rule", read in full.
    let v2 = common::rule("creator-pay-v2");
    let truth = full(&base, "full-v2", &inputs, &v2);
    let (code, run) = backfill(&inputs, &v2, &base.out, &["--stale-only"]);
    assert_eq!(code, 0, "{run:#}");
    assert_eq!(run["plan"]["incremental"], false);
    assert_eq!(partitions(&base.out), partitions(&truth));
}

#[test]
fn a_damaged_index_layer_is_refused_by_name() {
    let base = base();
    let first = write(&base, "late-a", &new_events(&base, "a", &["2026-05-03"], 4));
    let inputs = [base.input.as_path(), first.as_path()];
    let (code, run) = backfill(&inputs, &base.rule, &base.out, &["--stale-only"]);
    assert_eq!(code, 0, "{run:#}");
    assert_eq!(run["plan"]["incremental"], true);
    let layer = base.out.join("_tally/survivors/layer-1.arrow");
    let mut bytes = std::fs::read(&layer).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();
    let output = common::tally(&[
        "status",
        "--out",
        s(&base.out),
        "--rule",
        s(&base.rule),
        "--input",
        s(inputs[0]),
        "--input",
        s(inputs[1]),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("layer-1.arrow") && stderr.contains("damaged"),
        "{stderr}"
    );
}

#[test]
fn a_late_record_on_a_recorded_records_time_with_other_fields_is_recomputed() {
    let base = base();
    // An event with a second, later record: not its survivor.
    let mut records: std::collections::BTreeMap<String, Vec<Event>> = Default::default();
    for (_, path) in crate::support::files_in(&base.input) {
        for read in crate::model::read_jsonl(&path) {
            if let Ok(e) = read.outcome {
                records.entry(e.event_id.clone()).or_default().push(e);
            }
        }
    }
    let time = |e: &Event| (e.ingested_ms, e.occurred_ms);
    let later = records
        .values_mut()
        .find_map(|rs| {
            rs.sort_by_key(time);
            (rs.len() > 1 && time(&rs[0]) < time(&rs[rs.len() - 1]))
                .then(|| rs[rs.len() - 1].clone())
        })
        .expect("the generator plants later re-sends");
    // The same timestamps with other fields (it loses to the survivor, so
    // changes nothing itself), beside a new event that makes a day stale.
    let mut late = new_events(&base, "t", &["2026-05-09"], 2);
    late.push(Event {
        template_id: format!("{}-other", later.template_id),
        ..later
    });
    let file = write(&base, "late-t", &late);
    let inputs = [base.input.as_path(), file.as_path()];
    let (code, _) = status_both_ways(&base, &inputs);
    assert_eq!(code, 3);
    // Every input file holds records of the stale day's events, or the
    // recorded record the new one ties with: each is read.
    let run = recompute_for_a_tie(&base, &inputs, "full-t");
    common::assert_mentions(
        run["plan"]["reads"].as_str().unwrap(),
        &["every input file is read", "each holds records", "tie with"],
    );
}
