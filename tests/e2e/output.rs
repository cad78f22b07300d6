//! Reads what `tally run` committed: the daily Parquet partitions
//! (`daily/day=D/part-0.parquet`: rows and key-value metadata, the day taken
//! from the directory name), the quarantine file, and the data files' bytes.

#![allow(dead_code)]

use crate::model::{Daily, Totals};
use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::BTreeMap;
use std::path::Path;

/// One `daily/day=YYYY-MM-DD/part-0.parquet` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Partition {
    /// From the directory name.
    pub day: String,
    /// `(creator_id, template_id, events, payable_events, amount_micros, rule_hash)`.
    pub rows: Vec<(String, String, i64, i64, i64, String)>,
    /// The file's key-value metadata.
    pub metadata: BTreeMap<String, String>,
}

/// The columns every partition file has, in order.
const COLUMNS: [(&str, DataType); 6] = [
    ("creator_id", DataType::Utf8),
    ("template_id", DataType::Utf8),
    ("events", DataType::Int64),
    ("payable_events", DataType::Int64),
    ("amount_micros", DataType::Int64),
    ("rule_hash", DataType::Utf8),
];

/// Every partition of an output directory, by day. Also checks the layout:
/// `daily/` holds nothing but `day=` directories, each holding exactly
/// `part-0.parquet`, with the expected columns, rows sorted by creator then
/// template and no key twice.
pub fn partitions(out: &Path) -> Vec<Partition> {
    let mut days = Vec::new();
    let daily = out.join("daily");
    if !daily.is_dir() {
        return Vec::new();
    }
    for entry in std::fs::read_dir(&daily).expect("readable daily/") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        let day = name
            .strip_prefix("day=")
            .unwrap_or_else(|| panic!("daily/ holds {name}, not a day= partition"));
        days.push(day.to_string());
    }
    days.sort();
    days.iter().map(|day| partition(out, day)).collect()
}

fn partition(out: &Path, day: &str) -> Partition {
    let dir = out.join(format!("daily/day={day}"));
    // Nothing beside the data file, not even metadata.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("readable partition")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["part-0.parquet"], "data files in {}", dir.display());
    let path = dir.join("part-0.parquet");
    let file = std::fs::File::open(&path).expect("partition file");
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).expect("a Parquet file");
    let metadata: BTreeMap<String, String> = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .into_iter()
        .flatten()
        .filter_map(|kv| Some((kv.key.clone(), kv.value.clone()?)))
        .collect();
    let schema = builder.schema().clone();
    let got: Vec<(&str, &DataType)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type()))
        .collect();
    let wanted: Vec<(&str, &DataType)> = COLUMNS.iter().map(|(n, t)| (*n, t)).collect();
    assert_eq!(got, wanted, "columns of {}", path.display());

    let mut rows = Vec::new();
    for batch in builder.build().expect("a reader") {
        let batch: RecordBatch = batch.expect("a readable batch");
        let text = |i: usize| batch.column(i).as_string::<i32>().clone();
        let int = |i: usize| batch.column(i).as_primitive::<Int64Type>().clone();
        let (creator, template, hash) = (text(0), text(1), text(5));
        let (events, payable, amount) = (int(2), int(3), int(4));
        for r in 0..batch.num_rows() {
            rows.push((
                creator.value(r).to_string(),
                template.value(r).to_string(),
                events.value(r),
                payable.value(r),
                amount.value(r),
                hash.value(r).to_string(),
            ));
        }
    }
    assert!(!rows.is_empty(), "{} has no rows", path.display());
    for pair in rows.windows(2) {
        assert!(
            (&pair[0].0, &pair[0].1) < (&pair[1].0, &pair[1].1),
            "{}: rows not sorted by (creator, template) or a key twice: {:?} then {:?}",
            path.display(),
            pair[0],
            pair[1]
        );
    }
    Partition {
        day: day.to_string(),
        rows,
        metadata,
    }
}

/// The daily totals of an output directory, keyed like the model's.
pub fn daily(parts: &[Partition]) -> Daily {
    let mut daily = Daily::new();
    for part in parts {
        for (creator, template, events, payable_events, amount_micros, _) in &part.rows {
            let previous = daily.insert(
                (part.day.clone(), creator.clone(), template.clone()),
                Totals {
                    events: *events,
                    payable_events: *payable_events,
                    amount_micros: *amount_micros,
                },
            );
            assert!(previous.is_none(), "{creator} {template} twice");
        }
    }
    daily
}

/// The last commit's quarantine file, relative to the output (as the
/// manifest names it).
pub fn quarantine_path(out: &Path) -> String {
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("_tally/manifest.json")).expect("_tally/manifest.json"),
    )
    .expect("manifest JSON");
    let path = manifest["quarantine"]
        .as_str()
        .expect("quarantine in manifest");
    assert!(
        path.starts_with("quarantine/commit=") && path.ends_with("/quarantine.jsonl"),
        "{path}"
    );
    path.to_string()
}

/// The last commit's quarantine file as JSON objects, in order.
pub fn quarantine(out: &Path) -> Vec<serde_json::Value> {
    let path = out.join(quarantine_path(out));
    let text = std::fs::read_to_string(&path).expect("the quarantine file");
    text.lines()
        .map(|line| serde_json::from_str(line).expect("quarantine lines are JSON"))
        .collect()
}

/// `(file, line or row, reason)` of every quarantined record, in file order.
pub fn quarantine_keys(out: &Path) -> Vec<(String, u64, String)> {
    quarantine(out)
        .iter()
        .map(|q| {
            let position = q
                .get("line")
                .or_else(|| q.get("row"))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or_else(|| panic!("no line or row in {q}"));
            (
                q["file"].as_str().expect("file").to_string(),
                position,
                q["reason"].as_str().expect("reason").to_string(),
            )
        })
        .collect()
}

/// The bytes of the data files of an output: every
/// `daily/day=*/part-0.parquet` and `monthly/month=*/part-0.parquet`, the last
/// commit's quarantine file and the survivor index (`_tally/survivors/`: its
/// files and its manifest); not the other manifests, the report and the log,
/// which hold run ids and times.
pub fn data_files(out: &Path) -> Vec<(String, Vec<u8>)> {
    let quarantine = quarantine_path(out);
    crate::common::snapshot(out)
        .into_iter()
        .filter(|(name, _)| {
            ((name.starts_with("daily/day=") || name.starts_with("monthly/month="))
                && name.ends_with("/part-0.parquet"))
                || *name == quarantine
                || name.starts_with("_tally/survivors/")
        })
        .map(|(name, bytes)| {
            // The commit number is not data: name the file alike in every output.
            if name == quarantine {
                ("quarantine".to_string(), bytes)
            } else {
                (name, bytes)
            }
        })
        .collect()
}

/// The bytes of the partition files only.
pub fn partition_files(out: &Path) -> Vec<(String, Vec<u8>)> {
    data_files(out)
        .into_iter()
        .filter(|(name, _)| name.starts_with("daily/day="))
        .collect()
}

/// The blake3 hash of a file, in hex.
pub fn blake3_file(path: &Path) -> String {
    blake3::hash(&std::fs::read(path).expect("readable file"))
        .to_hex()
        .to_string()
}

/// The fingerprint a partition's manifest must carry, by the recipe the README
/// gives: blake3 of `tally day inputs 1\n`, then `<blake3> <events>\n` for each
/// input file the day's events came from, sorted. Checks on the way that the
/// day's inputs are some of the run's, and account for every event of the day.
pub fn day_fingerprint(m: &serde_json::Value) -> String {
    let run: Vec<(String, String)> = m["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["path"].as_str().unwrap().to_string(),
                i["blake3"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut entries = Vec::new();
    let mut events = 0;
    for i in m["day_inputs"].as_array().expect("day_inputs") {
        let pair = (
            i["path"].as_str().unwrap().to_string(),
            i["blake3"].as_str().unwrap().to_string(),
        );
        assert!(run.contains(&pair), "{pair:?} is not an input of the run");
        let n = i["events"].as_u64().unwrap();
        assert!(n > 0, "a day input with no events: {i}");
        events += n;
        entries.push(format!("{} {n}\n", pair.1));
    }
    assert_eq!(
        events,
        m["events"].as_u64().unwrap(),
        "the day's inputs account for its events"
    );
    entries.sort();
    let mut text = String::from("tally day inputs 1\n");
    text.extend(entries);
    blake3::hash(text.as_bytes()).to_hex().to_string()
}

/// The manifest of a day's partition, `_tally/partitions/day=D.json`.
pub fn day_manifest(out: &Path, day: &str) -> serde_json::Value {
    let path = out.join(format!("_tally/partitions/day={day}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("a partition manifest"))
        .expect("a partition manifest is JSON")
}

/// The monthly table: `(month, creator_id)` to `(events, payable_events,
/// amount_micros)`. Also checks its layout: `monthly/` holds nothing but
/// `month=YYYY-MM` directories, each holding exactly `part-0.parquet` with the
/// table's columns, creators in byte order, none twice.
pub fn monthly(out: &Path) -> BTreeMap<(String, String), (i64, i64, i64)> {
    let mut rows = BTreeMap::new();
    let dir = out.join("monthly");
    if !dir.is_dir() {
        return rows;
    }
    for entry in std::fs::read_dir(&dir).expect("readable monthly/") {
        let name = entry
            .expect("dir entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let month = name
            .strip_prefix("month=")
            .unwrap_or_else(|| panic!("monthly/ holds {name}, not a month= partition"))
            .to_string();
        assert_eq!(month.len(), 7, "{name}");
        let part = dir.join(&name);
        let names: Vec<String> = std::fs::read_dir(&part)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["part-0.parquet"], "{}", part.display());
        let file = std::fs::File::open(part.join("part-0.parquet")).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let mut previous: Option<String> = None;
        for batch in reader {
            let batch = batch.unwrap();
            let columns: Vec<(String, DataType)> = batch
                .schema()
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect();
            assert_eq!(
                columns,
                [
                    ("creator_id".to_string(), DataType::Utf8),
                    ("events".to_string(), DataType::Int64),
                    ("payable_events".to_string(), DataType::Int64),
                    ("amount_micros".to_string(), DataType::Int64),
                ]
            );
            let creator = batch.column(0).as_string::<i32>();
            let figure = |c: usize, i: usize| batch.column(c).as_primitive::<Int64Type>().value(i);
            for i in 0..batch.num_rows() {
                let c = creator.value(i).to_string();
                if let Some(p) = &previous {
                    assert!(p.as_bytes() < c.as_bytes(), "{month}: {p} then {c}");
                }
                previous = Some(c.clone());
                rows.insert(
                    (month.clone(), c),
                    (figure(1, i), figure(2, i), figure(3, i)),
                );
            }
        }
    }
    rows
}

/// The daily table summed by `(month, creator_id)`: what the monthly table
/// must hold (a creator whose daily rows are all zeros has a zero row).
pub fn monthly_from_daily(parts: &[Partition]) -> BTreeMap<(String, String), (i64, i64, i64)> {
    let mut sums: BTreeMap<(String, String), (i64, i64, i64)> = BTreeMap::new();
    for part in parts {
        for (creator, _, events, payable, amount, _) in &part.rows {
            let s = sums
                .entry((part.day[..7].to_string(), creator.clone()))
                .or_default();
            s.0 += events;
            s.1 += payable;
            s.2 += amount;
        }
    }
    sums
}

/// The days with a changeset file in commit `commit`, in order.
pub fn changed_days(out: &Path, commit: u64) -> Vec<String> {
    let dir = out.join(format!("changes/commit={commit}"));
    let mut days: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                name.strip_prefix("day=")
                    .expect("day= directories")
                    .to_string()
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    days.sort();
    days
}

/// Commit `commit`'s changeset of the monthly table: `(month, creator_id)` to
/// its `change`.
pub fn monthly_changes(out: &Path, commit: u64) -> BTreeMap<(String, String), String> {
    let mut changes = BTreeMap::new();
    let dir = out.join(format!("monthly_changes/commit={commit}"));
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return changes;
    };
    for entry in entries {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let month = name
            .strip_prefix("month=")
            .expect("month= directories")
            .to_string();
        let file = std::fs::File::open(dir.join(&name).join("part-0.parquet")).unwrap();
        for batch in ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
        {
            let batch = batch.unwrap();
            let creator = batch.column(0).as_string::<i32>();
            let change = batch.column(4).as_string::<i32>();
            for i in 0..batch.num_rows() {
                changes.insert(
                    (month.clone(), creator.value(i).to_string()),
                    change.value(i).to_string(),
                );
            }
        }
    }
    changes
}
