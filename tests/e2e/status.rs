//! `tally status`: which published days (and monthly partitions) a full
//! recompute would change, and why. Each case changes the inputs of a
//! generated output (late data, removed, changed or moved files, another
//! rule); the truth is a full recompute of a copy of the output, partition
//! bytes compared, and status must name exactly those partitions, with the
//! right causes, and read no input file the output recorded and still has.

use crate::common::{self, s};
use crate::model::{self, Event};
use crate::support;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

const SEED: u64 = 4242;

/// A generated output and what its inputs hold.
pub(crate) struct Base {
    pub(crate) dir: TempDir,
    pub(crate) input: PathBuf,
    pub(crate) out: PathBuf,
    pub(crate) rule: PathBuf,
    /// Every event's survivor, by `event_id`, with the file it is in.
    survivors: BTreeMap<String, (Event, PathBuf)>,
}

/// 20,000 generated records in four JSONL files, run with creator-pay 1.0.0.
pub(crate) fn base() -> Base {
    let dir = TempDir::new().expect("temp dir");
    let (input, _) = support::generate(dir.path(), "events", 20_000, SEED, "jsonl", 5_000);
    let rule = common::rule("creator-pay-v1");
    let out = dir.path().join("out");
    support::run(&[&input], &rule, &out, &[]);
    let mut located: Vec<(Event, PathBuf)> = Vec::new();
    for (_, path) in support::files_in(&input) {
        for read in model::read_jsonl(&path) {
            if let Ok(event) = read.outcome {
                located.push((event, path.clone()));
            }
        }
    }
    let deduped = model::dedup(located.iter().map(|(e, _)| e.clone()).collect());
    let survivors = deduped
        .survivors
        .into_iter()
        .map(|e| {
            // Identical records of one event are only ever in one file here:
            // the generator plants re-sends beside their original.
            let file = located
                .iter()
                .find(|(x, _)| *x == e)
                .map(|(_, f)| f.clone())
                .expect("the survivor is read from a file");
            (e.event_id.clone(), (e, file))
        })
        .collect();
    Base {
        dir,
        input,
        out,
        rule,
        survivors,
    }
}

impl Base {
    /// Survivors on `day`, by `event_id`, at most `n` of them.
    pub(crate) fn on_day(&self, day: &str, n: usize) -> Vec<(Event, PathBuf)> {
        self.survivors
            .values()
            .filter(|(e, _)| e.day() == day)
            .take(n)
            .cloned()
            .collect()
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A record as a JSON line, timestamps as epoch milliseconds.
pub(crate) fn line(e: &Event) -> String {
    json!({
        "event_id": e.event_id,
        "occurred_at": e.occurred_ms,
        "ingested_at": e.ingested_ms,
        "creator_id": e.creator_id,
        "template_id": e.template_id,
        "brand_id": e.brand_id,
        "content_kind": e.content_kind,
        "action": e.action,
        "user_tier": e.user_tier,
        "country": e.country,
    })
    .to_string()
}

pub(crate) fn write_events(path: &Path, events: &[Event]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let text: String = events.iter().map(|e| line(e) + "\n").collect();
    std::fs::write(path, text).unwrap();
}

pub(crate) const DAY_MS: i64 = 86_400_000;

/// Epoch milliseconds of noon on a day of May or June 2026.
pub(crate) fn noon(day: &str) -> i64 {
    let (year, month, d) = (
        day[..4].parse().unwrap(),
        day[5..7].parse().unwrap(),
        day[8..].parse().unwrap(),
    );
    model::days_from_civil(year, month, d) * DAY_MS + DAY_MS / 2
}

/// `tally status --json`: the exit code and the report.
pub(crate) fn status(out: &Path, inputs: &[&Path], rule: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["status", "--out", s(out), "--rule", s(rule), "--json"];
    for input in inputs {
        args.extend(["--input", s(input)]);
    }
    args.extend_from_slice(extra);
    let output = common::tally(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("panicked") && matches!(output.status.code(), Some(0 | 3)),
        "tally {args:?}: {:?}\n{stderr}",
        output.status
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("--json prints JSON");
    assert_eq!(report["schema_version"], 1);
    let code = output.status.code().unwrap();
    assert_eq!(
        code == 3,
        report["stale"] == true,
        "exit code and `stale` agree"
    );
    (code, report)
}

/// The partitions status calls stale: `daily/day=D` and `monthly/month=M`.
pub(crate) fn stale(report: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for d in report["days"].as_array().unwrap() {
        if d["stale"] == true {
            names.insert(format!("daily/day={}", d["day"].as_str().unwrap()));
        }
    }
    for p in report["derived"].as_array().unwrap() {
        if p["stale"] == true {
            names.insert(format!(
                "{}/month={}",
                p["table"].as_str().unwrap(),
                p["period"].as_str().unwrap()
            ));
        }
    }
    names
}

/// The partition files of an output, by partition.
pub(crate) fn partitions(out: &Path) -> BTreeMap<String, Vec<u8>> {
    common::snapshot(out)
        .into_iter()
        .filter(|(name, _)| {
            (name.starts_with("daily/day=") || name.starts_with("monthly/month="))
                && name.ends_with("/part-0.parquet")
        })
        .map(|(name, bytes)| (name.trim_end_matches("/part-0.parquet").to_string(), bytes))
        .collect()
}

/// The truth: the partitions a full recompute over `inputs` with `rule`
/// changes (or writes anew), found by running it on a copy of the output
/// and comparing bytes.
fn truth(base: &Base, name: &str, inputs: &[&Path], rule: &Path) -> BTreeSet<String> {
    let copy = base.path(name);
    common::copy_tree(&base.out, &copy, &|_| false);
    let before = partitions(&copy);
    support::run(inputs, rule, &copy, &[]);
    partitions(&copy)
        .into_iter()
        .filter(|(name, bytes)| before.get(name) != Some(bytes))
        .map(|(name, _)| name)
        .collect()
}

/// The causes status gives for a day.
fn causes(report: &Value, day: &str) -> Vec<Value> {
    report["days"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["day"] == day)
        .unwrap_or_else(|| panic!("no status for {day}"))["causes"]
        .as_array()
        .unwrap()
        .clone()
}

/// The kinds of causes of a day, sorted.
pub(crate) fn kinds(report: &Value, day: &str) -> Vec<String> {
    let mut kinds: Vec<String> = causes(report, day)
        .iter()
        .map(|c| c["kind"].as_str().unwrap().to_string())
        .collect();
    kinds.sort();
    kinds
}

/// The files status read and why: `(path, read)`.
fn reads(report: &Value) -> BTreeSet<(String, String)> {
    report["files_read"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["path"].as_str().unwrap().to_string(),
                r["read"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn absolute(path: &Path) -> String {
    std::fs::canonicalize(path).unwrap().display().to_string()
}

#[test]
fn an_unchanged_output_is_fresh_and_status_exits_0() {
    let base = base();
    let (code, report) = status(&base.out, &[&base.input], &base.rule, &[]);
    assert_eq!(code, 0);
    assert!(stale(&report).is_empty(), "{report:#}");
    assert_eq!(report["days"].as_array().unwrap().len(), 31);
    assert_eq!(report["derived"][0]["period"], "2026-05");
    assert!(reads(&report).is_empty(), "nothing is read: {report:#}");
    assert!(
        report["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["change"] == "unchanged")
    );
    // A rerun with the same inputs rewrites nothing, and stays fresh.
    assert!(truth(&base, "rerun", &[&base.input], &base.rule).is_empty());
    support::run(&[&base.input], &base.rule, &base.out, &[]);
    let (code, _) = status(&base.out, &[&base.input], &base.rule, &[]);
    assert_eq!(code, 0);

    // The text is a tree, one line per partition.
    let text = common::tally_ok(&[
        "status",
        "--out",
        s(&base.out),
        "--input",
        s(&base.input),
        "--rule",
        s(&base.rule),
    ]);
    common::assert_mentions(
        &text,
        &[
            "0 of 31 days stale",
            "4 unchanged",
            "2026-05-01  fresh",
            "monthly\n  2026-05  fresh",
        ],
    );
}

#[test]
fn late_data_marks_exactly_the_days_a_full_recompute_changes() {
    let base = base();
    let mut late = Vec::new();
    // New events for a published day, and for a day not published yet.
    let template = base.on_day("2026-05-07", 1)[0].0.clone();
    for i in 0..30 {
        late.push(Event {
            event_id: format!("late-{i:03}"),
            occurred_ms: noon("2026-05-07") + i,
            ingested_ms: noon("2026-05-08"),
            ..template.clone()
        });
    }
    for i in 0..5 {
        late.push(Event {
            event_id: format!("june-{i}"),
            occurred_ms: noon("2026-06-01") + i,
            ingested_ms: noon("2026-06-01") + 60_000,
            ..template.clone()
        });
    }
    // Later re-sends: duplicates that lose, changing nothing.
    for (e, _) in base.on_day("2026-05-12", 40) {
        late.push(Event {
            ingested_ms: e.ingested_ms + 3_600_000,
            ..e
        });
    }
    // Earlier re-ingests on another day: they displace their survivors.
    let moved = base.on_day("2026-05-14", 3);
    for (e, _) in &moved {
        late.push(Event {
            ingested_ms: e.ingested_ms - 60_000,
            occurred_ms: noon("2026-05-20"),
            ..e.clone()
        });
    }
    // Conflicts with the survivors' timestamps: a template that sorts first
    // wins (same day, another file), one that sorts last loses.
    let winners = base.on_day("2026-05-16", 2);
    for (e, _) in &winners {
        late.push(Event {
            template_id: "a-conflict".to_string(),
            ..e.clone()
        });
    }
    let losers = base.on_day("2026-05-18", 2);
    for (e, _) in &losers {
        late.push(Event {
            template_id: "~-conflict".to_string(),
            ..e.clone()
        });
    }
    let late_file = base.path("late/late.jsonl");
    write_events(&late_file, &late);
    let late_dir = base.path("late");

    let inputs = [base.input.as_path(), late_dir.as_path()];
    let (code, report) = status(&base.out, &inputs, &base.rule, &[]);
    assert_eq!(code, 3);
    let expected = truth(&base, "full", &inputs, &base.rule);
    assert_eq!(stale(&report), expected, "{report:#}");
    let names: BTreeSet<&str> = [
        "daily/day=2026-05-07",
        "daily/day=2026-05-14",
        "daily/day=2026-05-16",
        "daily/day=2026-05-20",
        "daily/day=2026-06-01",
        "monthly/month=2026-05",
        "monthly/month=2026-06",
    ]
    .into_iter()
    .collect();
    assert_eq!(
        expected.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        names
    );

    let late_path = absolute(&late_file);
    assert_eq!(
        causes(&report, "2026-05-07"),
        vec![json!({"kind": "new-events", "file": late_path, "events": 30})]
    );
    assert_eq!(
        causes(&report, "2026-05-14"),
        vec![json!({"kind": "moved-out", "file": late_path, "events": 3, "to": ["2026-05-20"]})]
    );
    assert_eq!(
        causes(&report, "2026-05-20"),
        vec![json!({"kind": "moved-in", "file": late_path, "events": 3, "from": ["2026-05-14"]})]
    );
    assert_eq!(
        causes(&report, "2026-05-16"),
        vec![json!({"kind": "replaced", "file": late_path, "events": 2})]
    );
    let june = report["days"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["day"] == "2026-06-01")
        .unwrap()
        .clone();
    assert_eq!(june["published"], false);
    assert_eq!(
        june["causes"],
        json!([{"kind": "new-events", "file": late_path, "events": 5}])
    );
    let may = report["derived"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["period"] == "2026-05")
        .unwrap()
        .clone();
    assert_eq!(
        may["causes"],
        json!([{"kind": "days", "stale": ["2026-05-07", "2026-05-14", "2026-05-16", "2026-05-20"]}])
    );

    // Read: the late file (hashed and parsed), and the files of the two
    // pairs of survivors the conflicts tie with, to settle the ties; no
    // other recorded file.
    let mut expected_reads: BTreeSet<(String, String)> = [
        (late_path.clone(), "hash".to_string()),
        (late_path.clone(), "records".to_string()),
    ]
    .into_iter()
    .collect();
    for (_, file) in winners.iter().chain(&losers) {
        expected_reads.insert((absolute(file), "tie".to_string()));
    }
    assert_eq!(reads(&report), expected_reads);
    let late_input = report["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["path"] == late_path)
        .unwrap()
        .clone();
    assert_eq!(late_input["change"], "new");
    assert_eq!(late_input["valid_records"], late.len());

    // The text names the causes under each stale day.
    let output = common::tally(&[
        "status",
        "--out",
        s(&base.out),
        "--input",
        s(&base.input),
        "--input",
        s(&late_dir),
        "--rule",
        s(&base.rule),
    ]);
    assert_eq!(output.status.code(), Some(3));
    let text = String::from_utf8(output.stdout).unwrap();
    common::assert_mentions(
        &text,
        &[
            "5 of 32 days stale, 2 of 2 derived partitions stale",
            "4 unchanged, 1 new",
            &format!("2026-05-07  STALE\n    └─ 30 new events in {late_path}"),
            &format!(
                "2026-05-14  STALE\n    └─ 3 events move out to 2026-05-20, now surviving in {late_path}"
            ),
            "2026-06-01  STALE (unpublished)",
            "2026-05-12  fresh",
            "2026-05-18  fresh",
            "monthly\n  2026-05  STALE\n    └─ stale days: 2026-05-07, 2026-05-14, 2026-05-16, 2026-05-20",
        ],
    );
}

/// A record identical to a survivor, ingested at the same instant, survives
/// instead of it when its file comes first in the input order: the day's
/// provenance then names that file.
#[test]
fn an_identical_record_wins_only_from_a_file_that_comes_first() {
    let base = base();
    let copies: Vec<Event> = base
        .on_day("2026-05-22", 4)
        .into_iter()
        .map(|(e, _)| e)
        .collect();
    for (name, stale_days) in [("z-late", 0), ("a-late", 1)] {
        let dir = base.path(name);
        write_events(&dir.join("copies.jsonl"), &copies);
        let inputs = [base.input.as_path(), dir.as_path()];
        let (_, report) = status(&base.out, &inputs, &base.rule, &[]);
        let expected = truth(&base, &format!("full-{name}"), &inputs, &base.rule);
        assert_eq!(stale(&report), expected, "{name}: {report:#}");
        assert_eq!(report["stale_days"], stale_days, "{name}");
        // Identical records tie exactly: nothing recorded is read back.
        assert!(reads(&report).iter().all(|(_, why)| why != "tie"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Removing a file drops the events only it held and hands the others to
/// the records left, wherever they are: here to a June day that had only a
/// losing duplicate until then.
#[test]
fn a_removed_file_marks_the_days_it_held_and_those_its_duplicates_move_to() {
    let base = base();
    let files: Vec<PathBuf> = support::files_in(&base.input)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    let removed = &files[1];
    // Re-sends, ingested later, of survivors in the file to be removed, on
    // a day no input has.
    let resent: Vec<Event> = base
        .survivors
        .values()
        .filter(|(_, f)| f == removed)
        .take(6)
        .map(|(e, _)| Event {
            ingested_ms: e.ingested_ms + 60_000,
            occurred_ms: noon("2026-06-02"),
            ..e.clone()
        })
        .collect();
    let late = base.path("late/resent.jsonl");
    write_events(&late, &resent);
    let all: Vec<&Path> = files
        .iter()
        .map(PathBuf::as_path)
        .chain([late.as_path()])
        .collect();
    support::run(&all, &base.rule, &base.out, &[]);
    let (code, _) = status(&base.out, &all, &base.rule, &[]);
    assert_eq!(code, 0, "the re-sends lose: nothing is stale");

    let kept: Vec<&Path> = all.iter().copied().filter(|p| *p != removed).collect();
    let (code, report) = status(&base.out, &kept, &base.rule, &[]);
    assert_eq!(code, 3);
    assert_eq!(
        stale(&report),
        truth(&base, "full", &kept, &base.rule),
        "{report:#}"
    );
    assert!(reads(&report).is_empty(), "nothing needs reading");
    let removed_path = absolute(removed);
    let input = report["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["path"] == removed_path)
        .unwrap()
        .clone();
    assert_eq!(input["change"], "removed");
    let june = causes(&report, "2026-06-02");
    assert!(
        june.contains(&json!({"kind": "moved-in", "file": absolute(&late), "events": resent.len(), "from": june_from(&resent, &base)})),
        "{june:?}"
    );
    for day in report["days"].as_array().unwrap() {
        let day_name = day["day"].as_str().unwrap();
        if day_name.starts_with("2026-05") && day["stale"] == true {
            let kinds = kinds(&report, day_name);
            assert!(
                kinds.contains(&"removed-file".to_string()),
                "{day_name}: {kinds:?}"
            );
        }
    }
}

/// The days the re-sent events' survivors were on.
fn june_from(resent: &[Event], base: &Base) -> Vec<String> {
    let days: BTreeSet<String> = resent
        .iter()
        .map(|e| base.survivors[&e.event_id].0.day())
        .collect();
    days.into_iter().collect()
}

#[test]
fn a_changed_file_is_read_and_a_moved_one_is_recognised() {
    let base = base();
    let files: Vec<PathBuf> = support::files_in(&base.input)
        .into_iter()
        .map(|(_, p)| p)
        .collect();

    // Moved: the same bytes under another name mark nothing stale.
    let moved_from = absolute(&files[3]);
    let moved_to = base.input.join("renamed.jsonl");
    std::fs::rename(&files[3], &moved_to).unwrap();
    let (code, report) = status(&base.out, &[&base.input], &base.rule, &[]);
    assert_eq!(code, 0, "{report:#}");
    assert!(truth(&base, "full-moved", &[&base.input], &base.rule).is_empty());
    let input = report["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["path"] == absolute(&moved_to))
        .unwrap()
        .clone();
    assert_eq!(input["change"], "moved");
    assert_eq!(input["moved_from"], moved_from);
    std::fs::rename(&moved_to, &files[3]).unwrap();

    // Changed: the first half of a file's lines only.
    let changed = &files[2];
    let text = std::fs::read(changed).unwrap();
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    let half: Vec<u8> = lines[..lines.len() / 2].join(&b'\n');
    std::fs::write(changed, [half, b"\n".to_vec()].concat()).unwrap();
    let (code, report) = status(&base.out, &[&base.input], &base.rule, &[]);
    assert_eq!(code, 3);
    assert_eq!(
        stale(&report),
        truth(&base, "full-changed", &[&base.input], &base.rule),
        "{report:#}"
    );
    let path = absolute(changed);
    assert_eq!(
        reads(&report),
        [
            (path.clone(), "hash".to_string()),
            (path.clone(), "records".to_string())
        ]
        .into_iter()
        .collect()
    );
    let stale_day = report["days"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["stale"] == true)
        .unwrap()["day"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        causes(&report, &stale_day)
            .iter()
            .any(|c| c["kind"] == "changed-file" && c["file"] == path),
        "{:?}",
        causes(&report, &stale_day)
    );
}

#[test]
fn another_rule_marks_every_partition_stale_with_cause_rule() {
    let base = base();
    let v2 = common::rule("creator-pay-v2");
    let (code, report) = status(&base.out, &[&base.input], &v2, &[]);
    assert_eq!(code, 3);
    let expected = truth(&base, "full", &[&base.input], &v2);
    assert_eq!(stale(&report), expected);
    assert_eq!(expected.len(), 32, "every day and the month");
    let v1_hash = common::blake3_hex(&base.rule);
    let v2_hash = common::blake3_hex(&v2);
    for day in report["days"].as_array().unwrap() {
        assert_eq!(
            day["causes"],
            json!([{"kind": "rule", "stamped": v1_hash, "given": v2_hash}]),
            "{day}"
        );
    }
}

/// Status recognises recorded files by path, size and modification time and
/// never reads them: a file whose bytes are replaced with others of the same
/// size, its modification time put back, goes unnoticed (whoever runs the
/// test, root included); `--checksum` hashes every file and finds it.
#[test]
fn status_does_not_read_the_files_the_output_recorded() {
    let base = base();
    let files: Vec<PathBuf> = support::files_in(&base.input)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    let target = &files[0];
    let modified = std::fs::metadata(target).unwrap().modified().unwrap();
    let size = std::fs::metadata(target).unwrap().len() as usize;
    std::fs::write(target, vec![b'\n'; size]).unwrap();
    std::fs::File::options()
        .write(true)
        .open(target)
        .unwrap()
        .set_modified(modified)
        .unwrap();

    let (code, report) = status(&base.out, &[&base.input], &base.rule, &[]);
    assert_eq!(code, 0, "{report:#}");
    assert!(reads(&report).is_empty());

    let (code, report) = status(&base.out, &[&base.input], &base.rule, &["--checksum"]);
    assert_eq!(code, 3);
    assert_eq!(
        reads(&report).len(),
        files.len() + 1,
        "every file hashed, one parsed"
    );
    assert_eq!(
        stale(&report),
        truth(&base, "full", &[&base.input], &base.rule)
    );
}

/// A day a `--days` run left out is computed from other inputs than those
/// the output recorded since.
#[test]
fn a_day_left_out_of_a_days_window_is_outdated() {
    let base = base();
    let template = base.on_day("2026-05-07", 1)[0].0.clone();
    let late: Vec<Event> = ["2026-05-07", "2026-05-25"]
        .iter()
        .enumerate()
        .map(|(i, day)| Event {
            event_id: format!("late-{i}"),
            occurred_ms: noon(day),
            ingested_ms: noon("2026-05-26"),
            ..template.clone()
        })
        .collect();
    let late_dir = base.path("late");
    write_events(&late_dir.join("late.jsonl"), &late);
    let inputs = [base.input.as_path(), late_dir.as_path()];
    support::run(&inputs, &base.rule, &base.out, &["--days", "2026-05-07"]);
    let (code, report) = status(&base.out, &inputs, &base.rule, &[]);
    assert_eq!(code, 3);
    assert_eq!(
        stale(&report),
        truth(&base, "full", &inputs, &base.rule),
        "{report:#}"
    );
    assert_eq!(report["stale_days"], 1);
    assert_eq!(kinds(&report, "2026-05-25"), ["outdated"]);
    assert!(reads(&report).is_empty(), "the late file is recorded now");
}

#[test]
fn outputs_without_provenance_or_index_are_stale_and_say_why() {
    let base = base();
    // Compute version 1 recorded no provenance.
    let old = base.path("old");
    common::copy_tree(&base.out, &old, &|_| false);
    for entry in std::fs::read_dir(old.join("_tally/partitions")).unwrap() {
        let path = entry.unwrap().path();
        let mut manifest: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        manifest["lineage"]
            .as_object_mut()
            .unwrap()
            .remove("compute_version");
        std::fs::write(&path, manifest.to_string()).unwrap();
    }
    let (code, report) = status(&old, &[&base.input], &base.rule, &[]);
    assert_eq!(code, 3);
    assert_eq!(report["stale_days"], 31);
    assert_eq!(
        causes(&report, "2026-05-03"),
        vec![json!({"kind": "compute", "stamped": 1, "current": 2})]
    );

    // Without its survivor index, inputs cannot be checked.
    std::fs::remove_dir_all(base.out.join("_tally/survivors")).unwrap();
    let (code, report) = status(&base.out, &[&base.input], &base.rule, &[]);
    assert_eq!(code, 3);
    assert_eq!(kinds(&report, "2026-05-03"), ["no-index"]);
    assert!(report["index"].is_null());
}

#[test]
fn usage_errors_exit_2_and_failures_1() {
    let base = base();
    let output = common::tally(&["status", "--out", s(&base.out), "--input", s(&base.input)]);
    assert_eq!(output.status.code(), Some(2), "no --rule");
    let elsewhere = base.path("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let stderr = common::tally_err(&[
        "status",
        "--out",
        s(&elsewhere),
        "--input",
        s(&base.input),
        "--rule",
        s(&base.rule),
    ]);
    common::assert_mentions(&stderr, &["not a Tally output directory"]);
}

#[test]
fn file_names_reach_the_terminal_escaped() {
    let base = base();
    // A late file whose name holds a terminal escape (clear the screen).
    let template = base.on_day("2026-05-07", 1)[0].0.clone();
    let late = vec![Event {
        event_id: "late-escaped".to_string(),
        ingested_ms: noon("2026-05-08"),
        ..template
    }];
    write_events(&base.path("late/late\u{1b}[2J.jsonl"), &late);
    // And one whose name would forge a line of the report.
    let forged = vec![Event {
        event_id: "late-forged".to_string(),
        ..late[0].clone()
    }];
    write_events(&base.path("late/late\nerror: forged.jsonl"), &forged);
    let late_dir = base.path("late");
    let no_forged_line = |text: &str| {
        assert!(
            !text.lines().any(|l| l.starts_with("error: forged")),
            "a forged line: {text}"
        );
        assert!(text.contains("late\\nerror: forged.jsonl"), "{text}");
    };
    let given = [
        "--out",
        s(&base.out),
        "--input",
        s(&base.input),
        "--input",
        s(&late_dir),
        "--rule",
        s(&base.rule),
    ];
    let output = common::tally(&[&["status"][..], &given].concat());
    assert_eq!(output.status.code(), Some(3));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(!text.contains('\u{1b}'), "a raw escape on stdout: {text:?}");
    assert!(text.contains("late\\u{1b}[2J.jsonl"), "{text}");
    no_forged_line(&text);
    // The plan of `tally run --stale-only` names them in its causes too.
    let output = common::tally(&[&["run"][..], &given, &["--stale-only", "--dry-run"]].concat());
    assert!(output.status.success());
    let plan =
        String::from_utf8(output.stderr).unwrap() + &String::from_utf8(output.stdout).unwrap();
    assert!(plan.contains("new event"), "{plan}");
    assert!(
        !plan.contains('\u{1b}'),
        "a raw escape in the plan: {plan:?}"
    );
    no_forged_line(&plan);
}

#[test]
fn an_error_naming_a_file_reaches_the_terminal_escaped() {
    let dir = TempDir::new().expect("temp dir");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    // Not Parquet: the run fails naming the file, whose name would clear
    // the screen.
    std::fs::write(input.join("bad\u{1b}[2J.parquet"), b"not parquet").unwrap();
    let (out, rule) = (dir.path().join("out"), common::rule("creator-pay-v1"));
    let stderr = common::tally_err(&common::run_args(&input, &rule, &out, &[]));
    assert!(!stderr.contains('\u{1b}'), "a raw escape: {stderr:?}");
    assert!(
        stderr.contains("bad\\u{1b}[2J.parquet"),
        "the file named, escaped: {stderr}"
    );
}
