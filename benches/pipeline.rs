//! The whole pipeline, end to end, on generated events: Parquet and JSONL inputs.
//! Reports records/s and the peak resident memory of the run, and the cost of
//! `tally compare` (v1 against v2 in one pass) relative to a single run.
//!
//! `cargo bench -p tally-benches --bench pipeline` (after `make rules`);
//! `TALLY_BENCH_EVENTS` sets the size (default 10,000,000), `TALLY_BENCH_RUNS`
//! the runs per format (default 3, the best and the median are shown).

use std::time::Instant;
use tally::compare;
use tally::generate::Format;
use tally::pipeline::{RunOptions, run};
use tally::rule::{Limits, Rule};
use tally_benches::{events, root, rule};

/// Peak resident memory of this process since the last reset, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Resets the peak so each run is measured alone (Linux `clear_refs`).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` runs benches with no such flag.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let count: u64 = std::env::var("TALLY_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let runs: usize = std::env::var("TALLY_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let rule = rule("creator-pay-v1");
    println!(
        "pipeline, {count} records, creator-pay v1, {} threads",
        rayon::current_num_threads()
    );
    let mut best_parquet = f64::MAX;
    for format in [Format::Parquet, Format::Jsonl] {
        let input = events(count, format);
        let out = root().join("target/bench-data/out");
        let mut times = Vec::new();
        let mut peak = 0;
        for _ in 0..runs {
            reset_peak_rss();
            let started = Instant::now();
            let report = run(&RunOptions {
                inputs: vec![input.clone()],
                rule: rule.clone(),
                out: out.clone(),
                threads: None,
                batch_size: tally::pipeline::DEFAULT_BATCH_SIZE,
                limits: Limits::default(),
                progress: false,
                days: None,
            })
            .expect("the pipeline runs");
            times.push(started.elapsed().as_secs_f64());
            peak = peak.max(peak_rss());
            assert_eq!(report.counts.records, count);
            let t = &report.timings;
            println!(
                "  {format:?}: {:.2}s (ingest {:.2}, dedup {:.2}, classify {:.2}, aggregate {:.2}, commit {:.2})",
                t.total, t.ingest, t.dedup, t.classify, t.aggregate, t.commit
            );
        }
        times.sort_by(f64::total_cmp);
        let (best, median) = (times[0], times[times.len() / 2]);
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
    let a = Rule::load(&rule, Limits::default()).expect("rule v1");
    let b = Rule::load(&tally_benches::rule("creator-pay-v2"), Limits::default()).expect("rule v2");
    let mut times = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let options = compare::Options {
            top: 10,
            sample: 20,
            batch_size: tally::pipeline::DEFAULT_BATCH_SIZE,
            progress: false,
        };
        compare::compare_rules(
            std::slice::from_ref(&input),
            (&a, "v1"),
            (&b, "v2"),
            options,
        )
        .expect("the comparison runs");
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    println!(
        "compare v1 vs v2 on Parquet: best {:.2}s = {:.2}x the best single run",
        times[0],
        times[0] / best_parquet
    );
}
