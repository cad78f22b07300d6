//! Recomputing only what is stale: after a late file holding about 1% of the
//! records is added to a 10 M record output, `tally run --stale-only` (which
//! then reads only the late file and adds its events to the published days)
//! against a full `tally run` of every input, each a fresh process, as a
//! user runs them.
//!
//! Two late files, both new events from `tally gen --seed 7` (so none of
//! them displaces a published survivor): `recent`, the generated records of
//! the last three days of the month (late data as it usually comes: for the
//! days just published), and `spread`, 100,000 records over every day.
//!
//! Then a corrected day: the same records as one Parquet file per day of
//! `occurred_at` (as many pipelines land them), one day's file replaced by
//! a copy without every tenth record. `--stale-only` then reads only the
//! files holding records of the stale days' events (a partial recompute).
//! Then conflicting re-sends: every hundredth record of one day sent again
//! on both its timestamps with another creator, a tie the survivor index
//! cannot order (it holds a hash of the fields): `--stale-only` reads that
//! day's file too, for the recorded records' fields.
//!
//! `cargo bench -p tally-benches --bench staleness` (after `make rules`);
//! `TALLY_BENCH_EVENTS` sets the output's size (default 10,000,000),
//! `TALLY_BENCH_RUNS` the runs of each (default 3).

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, TimestampMillisecondType};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;
use tally::generate::{Format, GenOptions, generate};
use tally_benches::{env_number, events, root, rule, tally_binary};

/// 2026-05-29T00:00:00Z in epoch milliseconds: the last three days of the
/// generated month start there.
const LAST_THREE_DAYS: i64 = 1_780_012_800_000;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let count: u64 = env_number("TALLY_BENCH_EVENTS", 10_000_000);
    let runs: usize = env_number("TALLY_BENCH_RUNS", 3usize).max(1);
    let tally = tally_binary();
    let input = events(count, Format::Parquet);
    let data = root().join("target/bench-data");
    let recent = late_file(
        &data.join(format!("late-recent-{count}")),
        // About 8.6% of the generated records fall on those days.
        count / 100 * 116 / 10,
        Some(LAST_THREE_DAYS),
    );
    let spread = late_file(
        &data.join(format!("late-spread-{count}")),
        count / 100,
        None,
    );
    let rule = rule("creator-pay-v1");
    let base = data.join("out-staleness-base");
    let out = data.join("out-staleness");
    println!(
        "staleness, {count} records from Parquet, creator-pay v1, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let run = |inputs: &[&Path], out: &Path, extra: &[&str]| -> f64 {
        let mut command = Command::new(&tally);
        command.arg("run");
        for i in inputs {
            command.arg("--input").arg(i);
        }
        let started = Instant::now();
        let status = command
            .arg("--rule")
            .arg(&rule)
            .arg("--out")
            .arg(out)
            .arg("--quiet")
            .args(extra)
            .stdout(Stdio::null())
            .status()
            .expect("tally runs");
        let seconds = started.elapsed().as_secs_f64();
        assert!(status.success(), "tally run failed");
        seconds
    };
    let _ = std::fs::remove_dir_all(&base);
    run(&[&input], &base, &[]);

    // Full runs and `--stale-only` runs of `inputs` into fresh copies of
    // `base`: their medians, and the last `--stale-only` run's plan, which
    // must say `read_less` (`incremental` or `partial`).
    let measure = |inputs: &[&Path], base: &Path, read_less: &str| {
        let mut full = Vec::new();
        let mut stale = Vec::new();
        let mut plan = serde_json::Value::Null;
        for _ in 0..runs {
            copy(base, &out);
            full.push(run(inputs, &out, &[]));
            copy(base, &out);
            let report = out.with_extension("json");
            stale.push(run(
                inputs,
                &out,
                &[
                    "--stale-only",
                    "--json",
                    "--report",
                    report.to_str().unwrap(),
                ],
            ));
            let report: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&report).expect("a report")).expect("JSON");
            plan = report["plan"].clone();
            assert_eq!(
                plan[read_less], true,
                "the stale-only run read every input: {}",
                plan["reads"]
            );
        }
        (median(&mut full), median(&mut stale), plan)
    };

    for (name, late) in [("recent", &recent), ("spread", &spread)] {
        let records = late_records(late);
        let (full, stale, plan) = measure(&[&input, late], &base, "incremental");
        let days = plan["days"].as_array().map_or(0, Vec::len);
        println!(
            "{name}: late file of {records} records ({:.2}% of the output's), {days} stale days: --stale-only {stale:.2}s, full run {full:.2}s: {:.1}% (medians of {runs})",
            records as f64 * 100.0 / count as f64,
            stale * 100.0 / full
        );
    }

    // A corrected day file among one file per day.
    let by_day = by_day_files(&input, &data.join(format!("by-day-{count}")));
    let work = data.join("by-day-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("a directory");
    let mut day_files = 0;
    for entry in std::fs::read_dir(&by_day).expect("the day files") {
        let path = entry.expect("an entry").path();
        if path.extension().is_some_and(|e| e == "parquet") {
            std::fs::hard_link(&path, work.join(path.file_name().unwrap()))
                .or_else(|_| std::fs::copy(&path, work.join(path.file_name().unwrap())).map(|_| ()))
                .expect("a day file linked");
            day_files += 1;
        }
    }
    let base = data.join("out-staleness-by-day-base");
    let _ = std::fs::remove_dir_all(&base);
    run(&[&work], &base, &[]);
    let corrected = work.join(format!("{CORRECTED_DAY}.parquet"));
    let kept = without_every_tenth(&by_day.join(format!("{CORRECTED_DAY}.parquet")), &corrected);
    let (full, stale, plan) = measure(&[&work], &base, "partial");
    let days = plan["days"].as_array().map_or(0, Vec::len);
    let read = plan["input_files"].as_u64().unwrap_or(0);
    println!(
        "corrected day: {CORRECTED_DAY} of {day_files} day files rewritten with {kept} records (every tenth dropped), {days} stale days, {read} files read: --stale-only {stale:.2}s, full run {full:.2}s: {:.1}% (medians of {runs})",
        stale * 100.0 / full
    );

    // Conflicting re-sends among the day files (the corrected one back as
    // it was): records of one day sent again on both their timestamps with
    // another creator, ties the survivor index cannot order.
    std::fs::remove_file(&corrected).expect("the corrected file removed");
    let original = by_day.join(format!("{CORRECTED_DAY}.parquet"));
    std::fs::hard_link(&original, &corrected)
        .or_else(|_| std::fs::copy(&original, &corrected).map(|_| ()))
        .expect("the day file back");
    let conflicts = data.join(format!("conflicts-{count}"));
    let resent = resent_with_another_creator(
        &by_day.join(format!("{CONFLICT_DAY}.parquet")),
        &conflicts.join("resent.parquet"),
        100,
    );
    let (full, stale, plan) = measure(&[&work, &conflicts], &base, "partial");
    let days = plan["days"].as_array().map_or(0, Vec::len);
    let read = plan["input_files"].as_u64().unwrap_or(0);
    println!(
        "conflicting re-sends: {resent} records of {CONFLICT_DAY} sent again with another creator, {days} stale days, {read} of {} files read: --stale-only {stale:.2}s, full run {full:.2}s: {:.1}% (medians of {runs})",
        day_files + 1,
        stale * 100.0 / full
    );
}

/// The day whose records the conflicting re-sends copy.
const CONFLICT_DAY: &str = "2026-05-20";

/// Writes every `every`-th record of `from` to `to` (a fresh directory's
/// file) with `!` put before its `creator_id`: on the same timestamps, a
/// record that wins the survivor rule's tie-break against the original.
/// Returns the records written.
fn resent_with_another_creator(from: &Path, to: &Path, every: usize) -> usize {
    let dir = to.parent().expect("a directory");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("a directory");
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(from).expect("a day file"))
        .expect("Parquet")
        .build()
        .expect("a reader");
    let mut writer: Option<ArrowWriter<File>> = None;
    let (mut at, mut written) = (0usize, 0usize);
    for batch in reader {
        let batch = batch.expect("a batch");
        let keep: BooleanArray = (0..batch.num_rows())
            .map(|i| Some((at + i) % every == 0))
            .collect();
        at += batch.num_rows();
        let part = arrow::compute::filter_record_batch(&batch, &keep).expect("filtered");
        let schema = part.schema();
        let (column, field) = schema.column_with_name("creator_id").expect("creator_id");
        let as_text = arrow::compute::cast(part.column(column), &DataType::Utf8).expect("text");
        let renamed: StringArray = as_text
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(|v| format!("!{v}")))
            .collect();
        let mut columns = part.columns().to_vec();
        columns[column] = arrow::compute::cast(&renamed, field.data_type()).expect("cast back");
        let part = RecordBatch::try_new(schema.clone(), columns).expect("a batch");
        written += part.num_rows();
        writer
            .get_or_insert_with(|| {
                ArrowWriter::try_new(File::create(to).expect("a file"), schema, None)
                    .expect("a writer")
            })
            .write(&part)
            .expect("written");
    }
    writer.expect("one batch at least").close().expect("closed");
    written
}

/// The day whose file the corrected-day case rewrites.
const CORRECTED_DAY: &str = "2026-05-15";

const DAY_MS: i64 = 86_400_000;

/// The records of the Parquet files in `input` as one file per day of
/// `occurred_at` (`YYYY-MM-DD.parquet`; records without one in
/// `undated.parquet`) in `dir`. Made once.
fn by_day_files(input: &Path, dir: &Path) -> PathBuf {
    let done = dir.join(".complete");
    if done.is_file() {
        return dir.to_path_buf();
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("a directory");
    let mut sources: Vec<PathBuf> = std::fs::read_dir(input)
        .expect("the generated files")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    sources.sort();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .set_max_row_group_row_count(Some(1 << 17))
        .build();
    let mut writers: std::collections::BTreeMap<String, ArrowWriter<File>> =
        std::collections::BTreeMap::new();
    for source in sources {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&source).expect("a file"))
            .expect("Parquet")
            .build()
            .expect("a reader");
        for batch in reader {
            let batch = batch.expect("a batch");
            let occurred = batch
                .column_by_name("occurred_at")
                .expect("occurred_at")
                .as_primitive::<TimestampMillisecondType>();
            let mut rows: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
            for i in 0..occurred.len() {
                let name = if occurred.is_valid(i) {
                    tally::event::format_day(occurred.value(i).div_euclid(DAY_MS) as i32)
                } else {
                    "undated".to_string()
                };
                rows.entry(name).or_default().push(i as u32);
            }
            for (name, rows) in rows {
                let indices = arrow::array::UInt32Array::from(rows);
                let columns = batch
                    .columns()
                    .iter()
                    .map(|c| arrow::compute::take(c, &indices, None).expect("taken"))
                    .collect();
                let part =
                    arrow::array::RecordBatch::try_new(batch.schema(), columns).expect("a batch");
                let writer = writers.entry(name.clone()).or_insert_with(|| {
                    ArrowWriter::try_new(
                        File::create(dir.join(format!("{name}.parquet"))).expect("a file"),
                        batch.schema(),
                        Some(props.clone()),
                    )
                    .expect("a writer")
                });
                writer.write(&part).expect("written");
            }
        }
    }
    for writer in writers.into_values() {
        writer.close().expect("closed");
    }
    std::fs::write(&done, b"").expect("marking the day files complete");
    dir.to_path_buf()
}

/// Writes `from` without every tenth record to `to` (through a temporary
/// file, so a hard link at `to` keeps the original); returns the records
/// kept.
fn without_every_tenth(from: &Path, to: &Path) -> usize {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(from).expect("a day file"))
        .expect("Parquet")
        .build()
        .expect("a reader");
    let temporary = to.with_extension("tmp");
    let mut writer: Option<ArrowWriter<File>> = None;
    let (mut at, mut kept) = (0usize, 0usize);
    for batch in reader {
        let batch = batch.expect("a batch");
        let keep: BooleanArray = (0..batch.num_rows())
            .map(|i| Some((at + i) % 10 != 9))
            .collect();
        at += batch.num_rows();
        let part = arrow::compute::filter_record_batch(&batch, &keep).expect("filtered");
        kept += part.num_rows();
        writer
            .get_or_insert_with(|| {
                ArrowWriter::try_new(
                    File::create(&temporary).expect("a file"),
                    part.schema(),
                    None,
                )
                .expect("a writer")
            })
            .write(&part)
            .expect("written");
    }
    writer.expect("one batch at least").close().expect("closed");
    std::fs::rename(&temporary, to).expect("the corrected file in place");
    kept
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn copy(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let status = Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp runs");
    assert!(status.success(), "copying the output failed");
}

/// A directory holding one late Parquet file: `count` records generated
/// with seed 7, kept only from `since` (epoch ms of `occurred_at`) when
/// given. Made once.
fn late_file(dir: &Path, count: u64, since: Option<i64>) -> PathBuf {
    let done = dir.join(".complete");
    if done.is_file() {
        return dir.to_path_buf();
    }
    let _ = std::fs::remove_dir_all(dir);
    let generated = dir.with_extension("gen");
    let _ = std::fs::remove_dir_all(&generated);
    generate(
        &GenOptions {
            events: count,
            seed: 7,
            out: generated.clone(),
            format: Format::Parquet,
            events_per_file: count.max(1),
        },
        &|_| {},
    )
    .expect("generating the late file");
    std::fs::create_dir_all(dir).expect("a directory");
    let source = generated.join("events-00000.parquet");
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&source).expect("generated"))
        .expect("Parquet")
        .build()
        .expect("a reader");
    let mut writer: Option<ArrowWriter<File>> = None;
    for batch in reader {
        let batch = batch.expect("a batch");
        let keep: BooleanArray = match since {
            None => BooleanArray::from(vec![true; batch.num_rows()]),
            Some(since) => {
                let occurred = batch
                    .column_by_name("occurred_at")
                    .expect("occurred_at")
                    .as_primitive::<TimestampMillisecondType>();
                (0..occurred.len())
                    .map(|i| Some(occurred.is_valid(i) && occurred.value(i) >= since))
                    .collect()
            }
        };
        let kept = arrow::compute::filter_record_batch(&batch, &keep).expect("filtered");
        let writer = writer.get_or_insert_with(|| {
            ArrowWriter::try_new(
                File::create(dir.join("late.parquet")).expect("a file"),
                kept.schema(),
                None,
            )
            .expect("a writer")
        });
        writer.write(&kept).expect("written");
    }
    writer.expect("one batch at least").close().expect("closed");
    let _ = std::fs::remove_dir_all(&generated);
    std::fs::write(&done, b"").expect("marking the late file complete");
    dir.to_path_buf()
}

fn late_records(dir: &Path) -> i64 {
    let file = File::open(dir.join("late.parquet")).expect("the late file");
    ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("Parquet")
        .metadata()
        .file_metadata()
        .num_rows()
}
