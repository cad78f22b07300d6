//! Fixtures shared by the benchmarks: generated inputs cached under
//! `target/bench-data/`, the reference rule components, and the native
//! classification the sandbox is measured against.

use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use tally::classify::Classified;
use tally::dedup::Deduped;
use tally::generate::{Format, GenOptions, generate};
use tally_rules_sdk::{Action, ContentKind, Event, Rule, UserTier};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ sits in the workspace")
        .to_path_buf()
}

/// Builds the `tally` binary if it is out of date, and returns its path.
pub fn tally_binary() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "tally",
            "--bin",
            "tally",
        ])
        .current_dir(root())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building tally failed");
    root().join("target/release/tally")
}

/// A number from the environment variable `name`, or `default` when it is
/// unset or not a number.
pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A reference rule built by `make rules`.
pub fn rule(name: &str) -> PathBuf {
    let path = root().join("target/rules").join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `make rules`",
        path.display()
    );
    path
}

/// Generated events (seed 42), created on first use and kept for later runs.
pub fn events(count: u64, format: Format) -> PathBuf {
    let name = match format {
        Format::Jsonl => "jsonl",
        Format::Parquet => "parquet",
    };
    let dir = root().join(format!("target/bench-data/{name}-{count}"));
    let done = dir.join(".complete");
    if !done.is_file() {
        let _ = std::fs::remove_dir_all(&dir);
        eprintln!("generating {count} events as {name} in {}", dir.display());
        generate(
            &GenOptions {
                events: count,
                seed: 42,
                out: dir.clone(),
                format,
                events_per_file: 1_000_000,
            },
            &|_| {},
        )
        .expect("generating benchmark input");
        std::fs::write(&done, b"").expect("marking the input complete");
    }
    dir
}

/// A policy run as plain native Rust over the table, split into the same
/// batches and threads as the sandboxed classification and walking the table
/// with the same row cursor. `reasons` lists the rule's reason codes.
pub fn classify_native<R: Rule + Sync>(
    rule: &R,
    reasons: &[&str],
    deduped: &Deduped,
    batch_size: usize,
) -> Classified {
    let n = deduped.survivors.len();
    let mut payable = vec![false; n];
    let mut rate_micros = vec![0i64; n];
    let mut reason = vec![0u32; n];
    let table = &deduped.table;
    deduped
        .survivors
        .par_chunks(batch_size)
        .zip(payable.par_chunks_mut(batch_size))
        .zip(rate_micros.par_chunks_mut(batch_size))
        .zip(reason.par_chunks_mut(batch_size))
        .for_each(|(((rows, payable), rate), reason)| {
            for (i, (c, r)) in table.rows(rows).enumerate() {
                let brand = c.brand[r];
                let event = Event {
                    event_id: std::str::from_utf8(c.event_id(r)).unwrap_or(""),
                    occurred_at_ms: c.occurred_at[r],
                    ingested_at_ms: c.ingested_at[r],
                    creator_id: table.strings.get(c.creator[r]),
                    template_id: table.strings.get(c.template[r]),
                    brand_id: (brand != u32::MAX).then(|| table.strings.get(brand)),
                    content_kind: ContentKind::from_code(c.content_kind[r]).expect("valid code"),
                    action: Action::from_code(c.action[r]).expect("valid code"),
                    user_tier: UserTier::from_code(c.user_tier[r]).expect("valid code"),
                    country: std::str::from_utf8(&c.country[r]).unwrap_or(""),
                };
                let verdict = rule.classify(&event);
                payable[i] = verdict.payable;
                rate[i] = verdict.rate_micros;
                reason[i] = reasons
                    .iter()
                    .position(|&x| x == verdict.reason)
                    .unwrap_or(0) as u32;
            }
        });
    Classified {
        payable,
        rate_micros,
        reason,
        reasons: reasons.iter().map(|r| r.to_string()).collect(),
    }
}
