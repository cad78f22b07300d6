//! The classification stage alone: creator-pay 1.0.0 as a sandboxed component
//! (columnar batches, a fresh instance per batch) against the same policy as
//! plain native Rust, on the unique events of 1 M generated records.
//!
//! `cargo bench -p tally-benches --bench classify` (after `make rules`).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tally::classify::classify;
use tally::dedup::{dedup, merge};
use tally::generate::Format;
use tally::ingest;
use tally::rule::{Limits, Rule};
use tally_benches::{classify_native, events, rule};

const BATCH: usize = tally::pipeline::DEFAULT_BATCH_SIZE;

fn bench(c: &mut Criterion) {
    let dir = events(1_000_000, Format::Parquet);
    let files = ingest::discover(&[dir]).expect("inputs");
    let (chunks, interners) = ingest::read_all(&files, &|_| {}).expect("ingest");
    let (table, _) = merge(chunks, interners).expect("merge");
    let deduped = dedup(table);
    let wasm = Rule::load(&rule("creator-pay-v1"), Limits::default()).expect("rule loads");

    // Both must agree before their speed means anything.
    let a = classify(&deduped, &wasm, BATCH, &|_| {}).expect("classify");
    let b = classify_native(&deduped, BATCH);
    assert_eq!(a.payable, b.payable);
    assert_eq!(a.rate_micros, b.rate_micros);

    let mut group = c.benchmark_group("classify");
    group.sample_size(10);
    group.throughput(Throughput::Elements(deduped.survivors.len() as u64));
    group.bench_function("wasm-component", |bench| {
        bench.iter(|| classify(&deduped, &wasm, BATCH, &|_| {}).expect("classify"))
    });
    group.bench_function("native-rust", |bench| {
        bench.iter(|| classify_native(&deduped, BATCH))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
