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
/// `daily/day=*/part-0.parquet` and the last commit's quarantine file (not the
/// manifests, report and log, which hold run ids and times).
pub fn data_files(out: &Path) -> Vec<(String, Vec<u8>)> {
    let quarantine = quarantine_path(out);
    crate::common::snapshot(out)
        .into_iter()
        .filter(|(name, _)| {
            (name.starts_with("daily/day=") && name.ends_with("/part-0.parquet"))
                || *name == quarantine
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
