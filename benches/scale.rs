//! Bounded memory at scale: `tally run --memory-limit` on a large Parquet
//! input, as a user runs it (a fresh process into an empty output directory).
//! Reports the wall time, records/s, the peak resident memory (from the run's
//! report) against the limit, and how many shards the run spilled into.
//!
//! `cargo bench -p tally-benches --bench scale` (after `make rules`);
//! `TALLY_BENCH_EVENTS` sets the size (default 100,000,000: about 4 GB of
//! Parquet, generated once under `target/bench-data/`, and as much again of
//! spill files while it runs), `TALLY_BENCH_MEMORY_LIMIT` the limit (default
//! `2GiB`), `TALLY_BENCH_RUNS` the runs (default 1).

use std::process::{Command, Stdio};
use std::time::Instant;
use tally::generate::Format;
use tally_benches::{env_number, events, root, rule, tally_binary};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let count: u64 = env_number("TALLY_BENCH_EVENTS", 100_000_000);
    let limit = std::env::var("TALLY_BENCH_MEMORY_LIMIT").unwrap_or_else(|_| "2GiB".into());
    let runs: usize = env_number("TALLY_BENCH_RUNS", 1usize).max(1);
    let tally = tally_binary();
    let input = events(count, Format::Parquet);
    let out = root().join("target/bench-data/out-scale");
    let limit_bytes = tally::shard::memory::parse_size(&limit).expect("a memory limit");
    println!(
        "scale, {count} records from Parquet, creator-pay v1, --memory-limit {limit}, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for _ in 0..runs {
        let _ = std::fs::remove_dir_all(&out);
        let started = Instant::now();
        let status = Command::new(&tally)
            .arg("run")
            .arg("--input")
            .arg(&input)
            .arg("--rule")
            .arg(rule("creator-pay-v1"))
            .arg("--out")
            .arg(&out)
            .args(["--memory-limit", &limit, "--quiet"])
            .stdout(Stdio::null())
            .status()
            .expect("tally runs");
        let seconds = started.elapsed().as_secs_f64();
        assert!(status.success(), "tally run failed");
        let report: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("_tally/report.json")).expect("report"),
        )
        .expect("a JSON report");
        assert_eq!(report["counts"]["records"].as_u64(), Some(count));
        let peak = report["peak_memory_bytes"].as_u64().unwrap_or(0);
        let t = &report["timings"];
        let stage = |name: &str| t[name].as_f64().unwrap_or(f64::NAN);
        println!(
            "{seconds:.1}s = {:.2} M records/s, peak RSS {} MiB of a {} MiB limit ({}), {} shards (ingest+spill {:.1}, dedup {:.1}, classify {:.1}, aggregate {:.1}, commit {:.1})",
            count as f64 / seconds / 1e6,
            peak >> 20,
            limit_bytes >> 20,
            if peak <= limit_bytes {
                "within"
            } else {
                "OVER"
            },
            report["shards"],
            stage("ingest"),
            stage("dedup"),
            stage("classify"),
            stage("aggregate"),
            stage("commit")
        );
    }
}
