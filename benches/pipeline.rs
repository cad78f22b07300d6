//! The whole pipeline, end to end, on generated events: Parquet and JSONL inputs.
//! Each run is the `tally` command as a user runs it, a fresh process writing a
//! fresh output directory, timed from start to exit. Reports records/s and the
//! peak resident memory of the run (from its JSON report), and the cost of
//! `tally compare` (v1 against v2 in one pass) relative to a single run.
//!
//! `cargo bench -p tally-benches --bench pipeline` (after `make rules`; the
//! `tally` binary is brought up to date first); `TALLY_BENCH_EVENTS` sets the
//! size (default 10,000,000), `TALLY_BENCH_RUNS` the runs per format (default
//! 3, the best and the median are shown).

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;
use tally::generate::Format;
use tally_benches::{env_number, events, root, rule, tally_binary};

/// Runs `tally` with `args`, output discarded; returns the wall time in seconds.
fn timed(tally: &Path, args: &[&OsStr]) -> f64 {
    let started = Instant::now();
    let status = Command::new(tally)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("tally runs");
    let seconds = started.elapsed().as_secs_f64();
    assert!(status.success(), "tally {args:?} failed");
    seconds
}

/// The best and the median of `times`.
fn best_and_median(mut times: Vec<f64>) -> (f64, f64) {
    times.sort_by(f64::total_cmp);
    (times[0], times[times.len() / 2])
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` runs benches with no such flag.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let count: u64 = env_number("TALLY_BENCH_EVENTS", 10_000_000);
    let runs: usize = env_number("TALLY_BENCH_RUNS", 3usize).max(1);
    let tally = tally_binary();
    let v1 = rule("creator-pay-v1");
    let v2 = rule("creator-pay-v2");
    let out = root().join("target/bench-data/out");
    println!(
        "pipeline, {count} records, creator-pay v1, `tally run` on {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut best_parquet = f64::MAX;
    for format in [Format::Parquet, Format::Jsonl] {
        let input = events(count, format);
        let mut times = Vec::new();
        let mut peak = 0;
        for _ in 0..runs {
            let _ = std::fs::remove_dir_all(&out);
            let args = [
                "run".as_ref(),
                "--input".as_ref(),
                input.as_os_str(),
                "--rule".as_ref(),
                v1.as_os_str(),
                "--out".as_ref(),
                out.as_os_str(),
                "--quiet".as_ref(),
            ];
            let seconds = timed(&tally, &args);
            let report = std::fs::read_to_string(out.join("_tally/report.json"))
                .expect("_tally/report.json");
            let report: serde_json::Value = serde_json::from_str(&report).expect("a JSON report");
            assert_eq!(report["counts"]["records"].as_u64(), Some(count));
            peak = peak.max(report["peak_memory_bytes"].as_u64().unwrap_or(0));
            let t = &report["timings"];
            let stage = |name: &str| t[name].as_f64().unwrap_or(f64::NAN);
            println!(
                "  {format:?}: {seconds:.2}s (ingest {:.2}, dedup {:.2}, classify {:.2}, aggregate {:.2}, commit {:.2})",
                stage("ingest"),
                stage("dedup"),
                stage("classify"),
                stage("aggregate"),
                stage("commit")
            );
            times.push(seconds);
        }
        let (best, median) = best_and_median(times);
        if format == Format::Parquet {
            best_parquet = best;
        }
        println!(
            "{format:?}: best {best:.2}s = {:.2} M records/s, median {median:.2}s = {:.2} M records/s, peak RSS {:.0} MiB",
            count as f64 / best / 1e6,
            count as f64 / median / 1e6,
            peak as f64 / (1 << 20) as f64
        );
    }

    // Two rules in one pass, against the best single run on the same input.
    let input = events(count, Format::Parquet);
    let times = (0..runs)
        .map(|_| {
            let args = [
                "compare".as_ref(),
                "--input".as_ref(),
                input.as_os_str(),
                "--rule".as_ref(),
                v1.as_os_str(),
                "--rule".as_ref(),
                v2.as_os_str(),
                "--quiet".as_ref(),
            ];
            timed(&tally, &args)
        })
        .collect();
    let (best, median) = best_and_median(times);
    println!(
        "compare v1 vs v2 on Parquet: best {best:.2}s = {:.2}x the best single run, median {median:.2}s",
        best / best_parquet
    );
}
