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
//! `cargo bench -p tally-benches --bench staleness` (after `make rules`);
//! `TALLY_BENCH_EVENTS` sets the output's size (default 10,000,000),
//! `TALLY_BENCH_RUNS` the runs of each (default 3).

use arrow::array::{Array, AsArray, BooleanArray};
use arrow::datatypes::TimestampMillisecondType;
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

    for (name, late) in [("recent", &recent), ("spread", &spread)] {
        let records = late_records(late);
        let mut full = Vec::new();
        let mut stale = Vec::new();
        let mut days = 0;
        for _ in 0..runs {
            copy(&base, &out);
            full.push(run(&[&input, late], &out, &[]));
            copy(&base, &out);
            let report = out.with_extension("json");
            stale.push(run(
                &[&input, late],
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
            assert_eq!(
                report["plan"]["incremental"], true,
                "the stale-only run read every input: {}",
                report["plan"]["reads"]
            );
            days = report["plan"]["days"].as_array().map_or(0, Vec::len);
        }
        let (full, stale) = (median(&mut full), median(&mut stale));
        println!(
            "{name}: late file of {records} records ({:.2}% of the output's), {days} stale days: --stale-only {stale:.2}s, full run {full:.2}s: {:.1}% (medians of {runs})",
            records as f64 * 100.0 / count as f64,
            stale * 100.0 / full
        );
    }
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
