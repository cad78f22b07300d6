//! Partial recompute: when a recorded input file changed or went,
//! `tally run --stale-only` reads only the input files holding records of
//! the stale days' events, and writes what a full recompute writes, index
//! included. The inputs here are one file per day, as many pipelines land
//! them, with re-sends of events in other days' files.

use crate::backfill::{backfill, full, index, stale_days};
use crate::model::{self, Event};
use crate::status::{self, Base, base, noon, partitions, write_events};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The base output's records rewritten as one file per day of
/// `occurred_at` under `days/`, and the output recomputed from them.
fn by_day(base: &Base) -> (PathBuf, BTreeMap<String, Vec<Event>>) {
    let mut days: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    for (_, path) in crate::support::files_in(&base.input) {
        for read in model::read_jsonl(&path) {
            if let Ok(event) = read.outcome {
                days.entry(event.day()).or_default().push(event);
            }
        }
    }
    let dir = base.path("days");
    for (day, events) in &days {
        write_events(&dir.join(format!("{day}.jsonl")), events);
    }
    std::fs::remove_dir_all(&base.out).unwrap();
    crate::support::run(&[&dir], &base.rule, &base.out, &[]);
    (dir, days)
}

/// The files a recompute of the `stale` days must read: those holding a
/// record of an event that has a record on one of them.
fn needed(dir: &Path, stale: &BTreeSet<String>) -> Vec<String> {
    let mut records: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (_, path) in crate::support::files_in(dir) {
        let file = std::fs::canonicalize(&path).unwrap().display().to_string();
        for read in model::read_jsonl(&path) {
            if let Ok(e) = read.outcome {
                records
                    .entry(e.event_id.clone())
                    .or_default()
                    .push((e.day(), file.clone()));
            }
        }
    }
    let mut files = BTreeSet::new();
    for held in records.values() {
        if held.iter().any(|(day, _)| stale.contains(day)) {
            files.extend(held.iter().map(|(_, f)| f.clone()));
        }
    }
    files.into_iter().collect()
}

const DAY: i64 = status::DAY_MS;

/// The layers of an output's survivor index.
fn index_layers(out: &Path) -> usize {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("_tally/survivors/manifest.json")).unwrap())
            .unwrap();
    manifest["layers"].as_array().map_or(0, Vec::len)
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_changed_or_removed_day_file_is_recomputed_from_the_files_its_days_need() {
    let base = base();
    let (dir, days) = by_day(&base);
    let day_names: Vec<&String> = days.keys().collect();
    assert!(
        day_names.len() >= 10,
        "the sample spans days: {day_names:?}"
    );
    let (changed, removed, moved_from) = (day_names[3], day_names[6], day_names[9]);

    // Late data first: an incremental run adds a layer to the index, which
    // the partial run below merges into the index it rewrites.
    let template = days[changed][0].clone();
    let late: Vec<Event> = [changed, day_names[4]]
        .iter()
        .flat_map(|day| {
            let template = template.clone();
            (0..5).map(move |i| Event {
                event_id: format!("late-{day}-{i}"),
                occurred_ms: noon(day) + i,
                ingested_ms: noon(day) + DAY + i,
                ..template.clone()
            })
        })
        .collect();
    write_events(&dir.join("late.jsonl"), &late);
    let (code, run) = backfill(&[&dir], &base.rule, &base.out, &["--stale-only"]);
    assert_eq!(code, 0, "{run:#}");
    assert_eq!(run["plan"]["incremental"], true, "{}", run["plan"]["reads"]);
    assert_eq!(index_layers(&base.out), 1);

    // The file of one day changes: a third of its records go, some change
    // creator, and it gains an earlier re-ingest of an event of another day
    // (which moves that event here). The file of another day goes.
    let mut events: Vec<Event> = days[changed]
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(i, e)| Event {
            creator_id: if i % 7 == 0 {
                format!("{}-renamed", e.creator_id)
            } else {
                e.creator_id.clone()
            },
            ..e.clone()
        })
        .collect();
    let mover = base.on_day(moved_from, 1)[0].0.clone();
    events.push(Event {
        occurred_ms: noon(changed) + 17,
        ingested_ms: mover.ingested_ms - 1,
        ..mover
    });
    write_events(&dir.join(format!("{changed}.jsonl")), &events);
    std::fs::remove_file(dir.join(format!("{removed}.jsonl"))).unwrap();

    // Status names the days; the plan reads only what they need.
    let (code, report) = status::status(&base.out, &[&dir], &base.rule, &[]);
    assert_eq!(code, 3);
    let stale = stale_days(&report);
    for day in [changed, removed, moved_from] {
        assert!(stale.contains(day), "{day} is stale: {stale:?}");
    }
    let (code, dry) = backfill(
        &[&dir],
        &base.rule,
        &base.out,
        &["--stale-only", "--dry-run"],
    );
    assert_eq!(code, 0, "{dry:#}");
    let plan = &dry["plan"];
    assert_eq!(plan["incremental"], false);
    assert_eq!(plan["partial"], true, "{}", plan["reads"]);
    let read = strings(&plan["read_files"]);
    assert_eq!(read, needed(&dir, &stale));
    assert!(
        read.len() < days.len() - 1,
        "fewer than every file: {read:?}"
    );
    assert_eq!(plan["input_files"], read.len());
    assert!(
        plan["reads"]
            .as_str()
            .unwrap()
            .starts_with(&format!("only the {} input files", read.len())),
        "{}",
        plan["reads"]
    );

    // The run writes what a full recompute writes, and the same index.
    let truth = full(&base, "truth", &[&dir], &base.rule);
    let (code, run) = backfill(&[&dir], &base.rule, &base.out, &["--stale-only"]);
    assert_eq!(code, 0, "{run:#}");
    assert_eq!(run["plan"]["partial"], true);
    assert_eq!(partitions(&base.out), partitions(&truth));
    assert_eq!(
        index(&base.out),
        index(&truth),
        "the index a full recompute writes"
    );
    assert_eq!(index_layers(&base.out), 0);

    // Nothing is stale after it, and a rerun writes nothing.
    let (code, after) = status::status(&base.out, &[&dir], &base.rule, &[]);
    assert_eq!(code, 0, "fresh after: {after:#}");
    let (code, again) = backfill(&[&dir], &base.rule, &base.out, &["--stale-only"]);
    assert_eq!(code, 0);
    assert!(again["commits"].as_array().unwrap().is_empty());

    // Then in chunks of one day: one commit a day, the same bytes.
    let copy = full(&base, "before-chunks", &[&dir], &base.rule);
    let second = day_names[12];
    std::fs::remove_file(dir.join(format!("{second}.jsonl"))).unwrap();
    let truth = full(&base, "truth-2", &[&dir], &base.rule);
    let (code, run) = backfill(
        &[&dir],
        &base.rule,
        &copy,
        &["--stale-only", "--chunk-days", "1"],
    );
    assert_eq!(code, 0, "{run:#}");
    assert_eq!(run["plan"]["partial"], true, "{}", run["plan"]["reads"]);
    assert_eq!(
        run["commits"].as_array().unwrap().len(),
        run["plan"]["days"].as_array().unwrap().len()
    );
    assert_eq!(partitions(&copy), partitions(&truth));
    assert_eq!(index(&copy), index(&truth));
}

#[test]
fn a_changed_record_on_a_recorded_records_time_with_other_fields_reads_that_records_file() {
    let base = base();
    let (dir, days) = by_day(&base);
    let day_names: Vec<&String> = days.keys().collect();
    let (changed, loses, wins) = (day_names[2], day_names[5], day_names[8]);
    // The changed file gains, on the timestamps of records of other days'
    // files, a record with another creator: ties the index cannot order (it
    // holds a hash of a record's fields). One sorts after the recorded
    // record and changes no day; one sorts first and replaces the survivor
    // of its day.
    let mut events = days[changed][1..].to_vec();
    let loser = base.on_day(loses, 1)[0].0.clone();
    let winner = base.on_day(wins, 1)[0].0.clone();
    events.push(Event {
        creator_id: format!("{}-tie", loser.creator_id),
        ..loser
    });
    events.push(Event {
        creator_id: format!("!{}", winner.creator_id),
        ..winner
    });
    write_events(&dir.join(format!("{changed}.jsonl")), &events);

    let (code, report) = status::status(&base.out, &[&dir], &base.rule, &[]);
    assert_eq!(code, 3);
    let stale = stale_days(&report);
    assert!(stale.contains(changed) && stale.contains(wins), "{stale:?}");
    assert!(!stale.contains(loses), "{stale:?}");
    // What the written days need, and the file of the record that the
    // losing one ties with.
    let mut expected: BTreeSet<String> = needed(&dir, &stale).into_iter().collect();
    let loses_file = std::fs::canonicalize(dir.join(format!("{loses}.jsonl"))).unwrap();
    assert!(!expected.contains(&loses_file.display().to_string()));
    expected.insert(loses_file.display().to_string());

    let truth = full(&base, "truth", &[&dir], &base.rule);
    let (code, run) = backfill(&[&dir], &base.rule, &base.out, &["--stale-only"]);
    assert_eq!(code, 0, "{run:#}");
    let plan = &run["plan"];
    assert_eq!(plan["partial"], true, "{}", plan["reads"]);
    assert!(
        plan["reads"]
            .as_str()
            .unwrap()
            .contains("2 event(s)' new records tie"),
        "{}",
        plan["reads"]
    );
    let read: BTreeSet<String> = strings(&plan["read_files"]).into_iter().collect();
    assert_eq!(read, expected);
    assert!(read.len() < days.len(), "fewer than every file: {read:?}");
    assert_eq!(partitions(&base.out), partitions(&truth));
    assert_eq!(
        index(&base.out),
        index(&truth),
        "the index a full recompute writes, the tied records in order"
    );
    let (code, after) = status::status(&base.out, &[&dir], &base.rule, &[]);
    assert_eq!(code, 0, "fresh after: {after:#}");
}

#[test]
fn what_the_new_files_alone_cannot_apply_is_recomputed_from_the_files_it_needs() {
    let base = base();
    let (dir, days) = by_day(&base);
    let day_names: Vec<&String> = days.keys().collect();

    // Another rule over a window of three days: the lookup cannot apply it,
    // the whole index tells the files those days need.
    let v2 = crate::common::rule("creator-pay-v2");
    let (from, to) = (day_names[4], day_names[6]);
    let window = format!("{from}..{to}");
    let copy = full(&base, "before-rule", &[&dir], &base.rule);
    let truth = base.path("truth-rule");
    crate::common::copy_tree(&copy, &truth, &|_| false);
    crate::support::run(&[&dir], &v2, &truth, &["--days", &window]);
    let (code, run) = backfill(&[&dir], &v2, &copy, &["--stale-only", "--days", &window]);
    assert_eq!(code, 0, "{run:#}");
    let plan = &run["plan"];
    assert_eq!(plan["partial"], true, "{}", plan["reads"]);
    let written: BTreeSet<String> = [from, day_names[5], to]
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(stale_days(&json_days(plan)), written);
    assert_eq!(strings(&plan["read_files"]), needed(&dir, &written));
    assert!(strings(&plan["read_files"]).len() < days.len());
    assert_eq!(partitions(&copy), partitions(&truth));
    assert_eq!(index(&copy), index(&truth));

    // New files holding more than a quarter of the records: too many for
    // an index layer, so the days they touch are recomputed from the
    // files those days need.
    let template = days[day_names[8]][0].clone();
    let many: Vec<Event> = (0..6_000)
        .map(|i| Event {
            event_id: format!("bulk-{i}"),
            occurred_ms: noon(day_names[8]) + i,
            ingested_ms: noon(day_names[8]) + DAY + i,
            ..template.clone()
        })
        .collect();
    write_events(&dir.join("bulk.jsonl"), &many);
    let truth = full(&base, "truth-bulk", &[&dir], &base.rule);
    let (code, run) = backfill(&[&dir], &base.rule, &base.out, &["--stale-only"]);
    assert_eq!(code, 0, "{run:#}");
    let plan = &run["plan"];
    assert_eq!(plan["incremental"], false);
    assert_eq!(plan["partial"], true, "{}", plan["reads"]);
    assert_eq!(partitions(&base.out), partitions(&truth));
    assert_eq!(index(&base.out), index(&truth));
}

/// A plan's days as a status report's: `{"days": [{"day", "stale"}]}`.
fn json_days(plan: &Value) -> Value {
    serde_json::json!({ "days": plan["days"] })
}

/// `line` with an unknown field in front that makes it `bytes` long.
fn padded(line: &str, bytes: usize) -> String {
    let pad = bytes - line.len() - "\"pad\":\"\",".len();
    format!("{{\"pad\":\"{}\",{}", "x".repeat(pad), &line[1..])
}

/// The causes of `day` in a status report, by kind.
fn cause_kinds(report: &Value, day: &str) -> BTreeSet<String> {
    report["days"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["day"] == day)
        .flat_map(|d| d["causes"].as_array().unwrap().iter())
        .map(|c| c["kind"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn another_max_line_bytes_rereads_the_files_it_reads_differently() {
    let base = base();
    let (dir, days) = by_day(&base);
    let names: Vec<&String> = days.keys().collect();
    let (long_day, other, longest) = (names[3], names[8], names[5]);
    // A file of its own holds the first event of four other days (taken out
    // of their day files), and two lines of 3,000 bytes: a new event, and an
    // earlier re-ingest of an event of another day that moves it to
    // `long_day`. Another day's file gains a line of 2 MiB, too long for
    // both limits.
    let template = days[long_day][0].clone();
    let mover = base.on_day(other, 1)[0].0.clone();
    let long = [
        Event {
            event_id: "long-new".to_string(),
            occurred_ms: noon(long_day) + 5,
            ingested_ms: noon(long_day) + DAY,
            ..template.clone()
        },
        Event {
            occurred_ms: noon(long_day) + 7,
            ingested_ms: mover.ingested_ms - 1,
            ..mover
        },
    ];
    let append = |day: &str, lines: Vec<String>| {
        let path = dir.join(format!("{day}.jsonl"));
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        for line in lines {
            text.push_str(&line);
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
    };
    let mut mixed = Vec::new();
    for day in &names[10..14] {
        let (first, rest) = days[*day].split_first().unwrap();
        write_events(&dir.join(format!("{day}.jsonl")), rest);
        mixed.push(status::line(first));
    }
    mixed.extend(long.iter().map(|e| padded(&status::line(e), 3000)));
    // And an event of `conflict` of its own, with a long earlier re-ingest
    // with another creator: the file's count of that day's events stays the
    // same whichever record survives.
    let conflict = names[12];
    let own = Event {
        event_id: "mixed-own".to_string(),
        occurred_ms: noon(conflict),
        ingested_ms: noon(conflict) + DAY,
        ..days[conflict][0].clone()
    };
    mixed.push(status::line(&own));
    mixed.push(padded(
        &status::line(&Event {
            creator_id: format!("{}-long", own.creator_id),
            ingested_ms: own.ingested_ms - 1,
            ..own.clone()
        }),
        3000,
    ));
    append("mixed", mixed);
    append(longest, vec![padded(&status::line(&template), 2 << 20)]);
    let small = ["--max-line-bytes", "1500"];
    crate::support::run(&[&dir], &base.rule, &base.out, &small);

    // With the limit the output was computed with, nothing is stale and no
    // file is opened.
    let (code, report) = status::status(&base.out, &[&dir], &base.rule, &small);
    assert_eq!(code, 0, "{report:#}");
    assert!(report["files_read"].as_array().unwrap().is_empty());
    assert_eq!(report["index"]["max_line_bytes"], 1500);

    // With the default limit, the JSON files are scanned; only the file the
    // two limits read differently is read again, and the days stale are
    // exactly those a full recompute changes.
    let truth = full(&base, "truth", &[&dir], &base.rule);
    let (code, report) = status::status(&base.out, &[&dir], &base.rule, &[]);
    assert_eq!(code, 3, "{report:#}");
    assert_eq!(report["max_line_bytes"], 1 << 20);
    let change = |day: &str| {
        let path = std::fs::canonicalize(dir.join(format!("{day}.jsonl"))).unwrap();
        let input = report["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["path"] == path.display().to_string())
            .unwrap_or_else(|| panic!("{} among the inputs", path.display()));
        input["change"].as_str().unwrap().to_string()
    };
    assert_eq!(change("mixed"), "reread");
    assert_eq!(change(longest), "unchanged");
    let scanned = report["files_read"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["read"] == "lines")
        .count();
    assert_eq!(scanned, days.len() + 1);
    let current = partitions(&base.out);
    let differ: BTreeSet<String> = partitions(&truth)
        .into_iter()
        .filter(|(name, bytes)| name.starts_with("daily/") && current.get(name) != Some(bytes))
        .map(|(name, _)| name.trim_start_matches("daily/day=").to_string())
        .collect();
    assert_eq!(stale_days(&report), differ);
    assert!(differ.contains(long_day.as_str()) && differ.contains(other.as_str()));
    // The day whose survivor in the re-read file changes is stale; the days
    // of its other survivors keep their bytes.
    assert!(differ.contains(conflict.as_str()));
    assert!(
        cause_kinds(&report, conflict).contains("reread-file"),
        "{:#}",
        report["days"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["day"] == conflict.as_str())
            .unwrap()
    );
    for day in [names[10], names[11], names[13]] {
        assert!(!differ.contains(day.as_str()), "{day} stays fresh");
    }
    assert!(
        differ.len() < days.len() / 2,
        "days the long lines do not touch stay fresh: {differ:?}"
    );
    assert!(cause_kinds(&report, other).contains("moved-out"));

    // The run recomputes those days from the files they need, as a full
    // recompute with that limit would, index (and its limit) included.
    let before = full(&base, "before", &[&dir], &base.rule);
    crate::support::run(&[&dir], &base.rule, &before, &small);
    let (code, run) = backfill(&[&dir], &base.rule, &base.out, &["--stale-only"]);
    assert_eq!(code, 0, "{run:#}");
    assert_eq!(run["plan"]["partial"], true, "{}", run["plan"]["reads"]);
    assert_eq!(partitions(&base.out), partitions(&truth));
    assert_eq!(index(&base.out), index(&truth));
    let (code, after) = status::status(&base.out, &[&dir], &base.rule, &[]);
    assert_eq!(code, 0, "fresh after: {after:#}");

    // Back to the smaller limit: the long lines' records are gone again.
    let (code, report) = status::status(&base.out, &[&dir], &base.rule, &small);
    assert_eq!(code, 3);
    assert!(
        cause_kinds(&report, long_day).contains("reread-file"),
        "{:#}",
        report["days"]
    );
    let (code, run) = backfill(
        &[&dir],
        &base.rule,
        &base.out,
        &["--stale-only", small[0], small[1]],
    );
    assert_eq!(code, 0, "{run:#}");
    assert_eq!(partitions(&base.out), partitions(&before));
    assert_eq!(index(&base.out), index(&before));
}
