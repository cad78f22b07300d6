//! `tally rule build`: the same sources give the same component, byte for
//! byte, wherever the checkout is, so a rule's hash can be recomputed from its
//! sources.

use crate::common::{self, root, rule, tally_ok};
use std::path::Path;
use tempfile::TempDir;

/// Copies the sources under `from` to `to`, leaving out build output and
/// hidden entries.
fn copy_sources(from: &Path, to: &Path) {
    common::copy_tree(from, to, &|name| {
        name == "target" || name.to_string_lossy().starts_with('.')
    });
}

#[test]
fn a_rule_builds_to_the_same_bytes_from_another_checkout() {
    let dir = TempDir::new().expect("temp dir");
    let checkout = dir.path().join("elsewhere");
    std::fs::create_dir_all(&checkout).expect("creating the copy");
    for part in [
        "Cargo.toml",
        "Cargo.lock",
        "wit",
        "rules-sdk",
        "rules",
        "host",
        "tests",
        "benches",
    ] {
        let from = root().join(part);
        if from.is_dir() {
            copy_sources(&from, &checkout.join(part));
        } else {
            std::fs::copy(&from, checkout.join(part)).expect("copying a manifest");
        }
    }
    let out = dir.path().join("v1.wasm");
    tally_ok(&[
        "rule",
        "build",
        checkout.join("rules/creator-pay-v1").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let here = std::fs::read(rule("creator-pay-v1")).expect("the rule built by `make rules`");
    let there = std::fs::read(&out).expect("the rule built from the copy");
    assert!(
        here == there,
        "the same sources built in two places differ: blake3 {} against {}",
        blake3::hash(&here),
        blake3::hash(&there)
    );
}
