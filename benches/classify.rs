//! The classification stage alone: each reference policy (creator-pay 1.0.0
//! and 2.0.0) as a sandboxed component (columnar batches, a fresh instance per
//! batch) against the same policy as plain native Rust, on the unique events
//! of 1 M generated records.
//!
//! `cargo bench -p tally-benches --bench classify` (after `make rules`).

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use tally::classify::classify;
use tally::dedup::{Deduped, dedup, merge};
use tally::generate::Format;
use tally::ingest;
use tally::rule::{Limits, Rule};
use tally_benches::{classify_native, events, rule};
use tally_rules_sdk::Rule as RuleType;

const BATCH: usize = tally::pipeline::DEFAULT_BATCH_SIZE;

/// The reference policies: the component's name, the same rule as native
/// Rust, and its reason codes.
const V1_REASONS: [&str; 4] = ["test-creator", "view-only", "free-tier", "payable"];
const V2_REASONS: [&str; 5] = [
    "test-creator",
    "video-view",
    "view-only",
    "free-tier",
    "payable",
];

fn bench(c: &mut Criterion) {
    let dir = events(1_000_000, Format::Parquet);
    let files = ingest::discover(&[dir]).expect("inputs");
    let (chunks, interners) =
        ingest::read_all(&files, &Default::default(), &|_| {}).expect("ingest");
    let (table, _) = merge(chunks, interners).expect("merge");
    let deduped = dedup(table);

    let mut group = c.benchmark_group("classify");
    group.sample_size(10);
    group.throughput(Throughput::Elements(deduped.survivors.len() as u64));
    policy(
        &mut group,
        &deduped,
        "v1",
        &creator_pay_v1::CreatorPay,
        &V1_REASONS,
    );
    policy(
        &mut group,
        &deduped,
        "v2",
        &creator_pay_v2::CreatorPay,
        &V2_REASONS,
    );
    group.finish();
}

/// Benchmarks one policy as a component (`<version>/wasm-component`) and as
/// native Rust (`<version>/native-rust`).
fn policy<R: RuleType + Sync>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    deduped: &Deduped,
    version: &str,
    native: &R,
    reasons: &[&str],
) {
    let wasm = Rule::load(&rule(&format!("creator-pay-{version}")), Limits::default())
        .expect("rule loads");
    // Both must agree before their speed means anything.
    let a = classify(deduped, &wasm, BATCH, &|_| {}).expect("classify");
    let b = classify_native(native, reasons, deduped, BATCH);
    assert_eq!(a.payable, b.payable);
    assert_eq!(a.rate_micros, b.rate_micros);
    group.bench_function(format!("{version}/wasm-component"), |bench| {
        bench.iter(|| classify(deduped, &wasm, BATCH, &|_| {}).expect("classify"))
    });
    group.bench_function(format!("{version}/native-rust"), |bench| {
        bench.iter(|| classify_native(native, reasons, deduped, BATCH))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
