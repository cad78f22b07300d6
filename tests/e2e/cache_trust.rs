//! The compiled-code cache is not trusted on the registry's word: an entry
//! swapped for another rule's code, its sidecar forged as anyone who can
//! write the registry could, is recompiled from the verified blob, and
//! `tally rule verify` reports it. Machines sharing a registry keep their own
//! entries; leftovers of interrupted writes are noted.
//!
//! A rule given as a file path has its compiled code cached the same way, in
//! the user's cache directory (`$TALLY_CODE_CACHE`), under the same key.
//!
//! Every command gets `--registry`, `$TALLY_CACHE_KEY` and
//! `$TALLY_CODE_CACHE` explicitly, so the tests neither read nor create a
//! cache key or compiled code in the home directory.

use crate::common::{self, s};
use crate::support;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

/// A temporary directory holding a registry, a cache key and the user's
/// cache of compiled code for rule files.
struct Machine {
    dir: TempDir,
    registry: PathBuf,
    key: PathBuf,
    code: PathBuf,
}

impl Machine {
    fn new() -> Machine {
        let dir = TempDir::new().expect("temp dir");
        let registry = dir.path().join("registry");
        let key = dir.path().join("state/cache.key");
        let code = dir.path().join("cache/code");
        Machine {
            dir,
            registry,
            key,
            code,
        }
    }

    /// `tally <args> --registry <registry>` with `key` as the cache key.
    fn tally_with_key(&self, key: &Path, args: &[&str]) -> Output {
        Command::new(common::tally_bin())
            .args(args)
            .args(["--registry", s(&self.registry)])
            .env("TALLY_CACHE_KEY", key)
            .env("TALLY_CODE_CACHE", &self.code)
            .output()
            .expect("tally runs")
    }

    /// [`Machine::tally_with_key`] with this machine's key; must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.tally_with_key(&self.key, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.contains("panicked"),
            "tally {args:?} failed:\nstdout: {}\nstderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// What `rule show <reference>` says about the compiled code.
    fn compiled(&self, reference: &str) -> String {
        self.compiled_with_key(&self.key, reference)
    }

    fn compiled_with_key(&self, key: &Path, reference: &str) -> String {
        let out = self.tally_with_key(key, &["rule", "show", reference, "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let shown: Value = serde_json::from_slice(&out.stdout).expect("show JSON");
        shown["compiled"].as_str().expect("compiled").to_string()
    }

    /// `rule verify`: its exit code, stdout and stderr.
    fn verify(&self) -> (Option<i32>, String, String) {
        let out = self.tally_with_key(&self.key, &["rule", "verify"]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `rule verify --json`, which must succeed or fail with exit code 1.
    fn verify_json(&self) -> Value {
        let out = self.tally_with_key(&self.key, &["rule", "verify", "--json"]);
        assert!(matches!(out.status.code(), Some(0 | 1)), "{out:?}");
        serde_json::from_slice(&out.stdout).expect("verify JSON")
    }

    /// Publishes both reference rules; returns their hashes (v1, v2).
    fn publish_reference_rules(&self) -> (String, String) {
        let mut hashes = Vec::new();
        for name in ["creator-pay-v1", "creator-pay-v2"] {
            let wasm = common::rule(name);
            let out = self.ok(&["rule", "publish", s(&wasm)]);
            assert!(out.starts_with("published creator-pay@"), "{out}");
            hashes.push(common::blake3_hex(&wasm));
        }
        (hashes.remove(0), hashes.remove(0))
    }

    /// The `.cwasm` files of the registry's cache for a rule, sorted.
    fn cache_code(&self, hash: &str) -> Vec<PathBuf> {
        common::cache_code(&self.registry.join("cache"), hash)
    }

    /// The one entry of the registry's cache for a rule: (code, sidecar).
    fn cache_entry(&self, hash: &str) -> (PathBuf, PathBuf) {
        cache_entry_in(&self.registry.join("cache"), hash)
    }
}

/// The one entry of the cache directory `dir` for a rule: (code, sidecar).
fn cache_entry_in(dir: &Path, hash: &str) -> (PathBuf, PathBuf) {
    let mut code = common::cache_code(dir, hash);
    assert_eq!(code.len(), 1, "one cache entry for {hash}: {code:?}");
    let code = code.remove(0);
    let sidecar = sidecar_of(&code);
    (code, sidecar)
}

fn sidecar_of(code: &Path) -> PathBuf {
    PathBuf::from(format!("{}.json", code.display()))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("readable")).expect("JSON")
}

/// Puts v2's compiled code in v1's entry of the registry's cache and edits
/// v1's sidecar to match it, as anyone who can write the registry could: the
/// size and plain blake3 of the new code, and the (valid, for v2) MAC of
/// v2's sidecar.
fn swap_in_v2(machine: &Machine, v1: &str, v2: &str) -> PathBuf {
    swap_in_v2_in(&machine.registry.join("cache"), v1, v2)
}

/// [`swap_in_v2`] in the cache directory `dir`.
fn swap_in_v2_in(dir: &Path, v1: &str, v2: &str) -> PathBuf {
    let (code1, sidecar1) = cache_entry_in(dir, v1);
    let (code2, sidecar2) = cache_entry_in(dir, v2);
    std::fs::copy(&code2, &code1).expect("copy code");
    let mut forged = read_json(&sidecar1);
    let v2_side = read_json(&sidecar2);
    assert_eq!(forged["rule_hash"], v1);
    forged["code_blake3"] = common::blake3_hex(&code1).into();
    forged["code_size"] = std::fs::metadata(&code1).unwrap().len().into();
    // v2's MAC, valid for v2's hash: the only MAC at hand without the key.
    if let Some(mac) = v2_side.get("mac") {
        forged["mac"] = mac.clone();
    }
    std::fs::write(&sidecar1, serde_json::to_vec_pretty(&forged).unwrap()).expect("forge");
    code1
}

/// `tally run` of `rule` over `input` into `out`: its report.
fn run(machine: &Machine, input: &Path, rule: &str, out: &Path) -> Value {
    let stdout = machine.ok(&[
        "run",
        "--input",
        s(input),
        "--rule",
        rule,
        "--out",
        s(out),
        "--quiet",
        "--json",
    ]);
    serde_json::from_str(&stdout).expect("run report")
}

/// The totals a run reports.
fn totals(report: &Value) -> (u64, i64, String, String) {
    (
        report["counts"]["payable"].as_u64().expect("payable"),
        report["counts"]["amount_micros"]
            .as_i64()
            .expect("amount_micros"),
        report["rule"]["hash"].as_str().expect("hash").to_string(),
        report["rule"]["version"]
            .as_str()
            .expect("version")
            .to_string(),
    )
}

#[test]
fn a_swapped_cache_entry_is_recompiled_and_reported() {
    let machine = Machine::new();
    let (events, _) = support::generate(machine.dir.path(), "events", 3_000, 12, "jsonl", 3_000);
    let (v1, v2) = machine.publish_reference_rules();
    machine.ok(&["rule", "tag", "creator-pay", "prod", &v1]);

    // What each rule really pays, from the component files (not through the
    // registry's cache).
    let out = |name: &str| machine.dir.path().join(name);
    let want_v1 = totals(&run(
        &machine,
        &events,
        s(&common::rule("creator-pay-v1")),
        &out("file-v1"),
    ));
    let want_v2 = totals(&run(
        &machine,
        &events,
        s(&common::rule("creator-pay-v2")),
        &out("file-v2"),
    ));
    assert_eq!(
        (want_v1.2.as_str(), want_v1.3.as_str()),
        (v1.as_str(), "1.0.0")
    );
    assert_ne!(want_v1.1, want_v2.1, "the two rules pay differently");

    // Both compiled into the cache, which is then sound.
    assert_eq!(machine.compiled("creator-pay@prod"), "compiled and cached");
    assert_eq!(machine.compiled("creator-pay@2.0.0"), "compiled and cached");
    assert_eq!(machine.compiled("creator-pay@prod"), "cache hit");
    let (code, stdout, stderr) = machine.verify();
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    common::assert_mentions(
        &stdout,
        &[
            "2 blobs checked",
            "2 compiled-code entries checked",
            "0 problems",
        ],
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("ok ") && l.contains("compiled code"))
            .count(),
        2,
        "{stdout}"
    );

    // v2's code in v1's entry, the sidecar forged to match.
    let swapped = swap_in_v2(&machine, &v1, &v2);

    // `rule verify` recompiles v1 and finds the entry is not its code.
    let (code, stdout, stderr) = machine.verify();
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    common::assert_mentions(
        &stdout,
        &["MODIFIED", &v1, "creator-pay@1.0.0", "1 problems"],
    );
    common::assert_mentions(
        &stderr,
        &["failed verification", s(&swapped), "MODIFIED", "swapped"],
    );
    let report = machine.verify_json();
    let entries = report["cache"].as_array().expect("cache entries");
    let status = |hash: &str| {
        entries
            .iter()
            .find(|e| e["rule_hash"] == hash)
            .map(|e| e["status"].clone())
    };
    assert_eq!(status(&v1), Some("modified".into()));
    assert_eq!(status(&v2), Some("ok".into()));

    // Loading it recompiles from the verified blob, and says so.
    let compiled = machine.compiled("creator-pay@prod");
    assert!(
        compiled.starts_with("cache entry rebuilt: recompiled from the verified blob"),
        "{compiled}"
    );
    common::assert_mentions(&compiled, &["MAC does not verify"]);
    assert_eq!(machine.compiled("creator-pay@prod"), "cache hit");
    let (code, stdout, _) = machine.verify();
    assert_eq!(code, Some(0), "the entry was rewritten: {stdout}");

    // A run through the swapped entry pays what v1 pays, stamped v1.
    swap_in_v2(&machine, &v1, &v2);
    let report = run(&machine, &events, "creator-pay@prod", &out("registry-v1"));
    assert_eq!(totals(&report), want_v1);
    let report = run(&machine, &events, &v1[..12], &out("registry-v1-again"));
    assert_eq!(totals(&report), want_v1);
    // ... and `tally verify` recomputes the same figures.
    machine.ok(&["verify", s(&out("registry-v1"))]);
    let (code, stdout, _) = machine.verify();
    assert_eq!(code, Some(0), "{stdout}");
}

#[test]
fn machines_sharing_a_registry_keep_their_own_cache_entries() {
    let machine = Machine::new();
    let (v1, _) = machine.publish_reference_rules();
    let other_key = machine.dir.path().join("other-machine/cache.key");
    assert_eq!(machine.compiled("creator-pay@1.0.0"), "compiled and cached");
    let (mine, _) = machine.cache_entry(&v1);
    // The other machine compiles its own entry, and leaves this one alone.
    assert_eq!(
        machine.compiled_with_key(&other_key, "creator-pay@1.0.0"),
        "compiled and cached"
    );
    assert_eq!(
        machine.compiled_with_key(&other_key, "creator-pay@1.0.0"),
        "cache hit"
    );
    assert_eq!(machine.compiled("creator-pay@1.0.0"), "cache hit");
    let entries = machine.cache_code(&v1);
    assert_eq!(entries.len(), 2, "{entries:?}");

    // Both keys are private files, made on first use.
    for key in [&machine.key, &other_key] {
        let mode = std::fs::metadata(key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", key.display());
    }

    // Either machine checks both entries: compiling is deterministic.
    let (code, stdout, stderr) = machine.verify();
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    common::assert_mentions(&stdout, &["2 compiled-code entries checked", "0 problems"]);

    // One machine's entry copied over the other's, sidecar and all, the key
    // id edited to match: the MAC is under the wrong key.
    let theirs = entries.iter().find(|p| **p != mine).unwrap();
    let mut forged = read_json(&sidecar_of(theirs));
    forged["key_id"] = read_json(&sidecar_of(&mine))["key_id"].clone();
    assert_ne!(forged, read_json(&sidecar_of(theirs)), "two key ids");
    std::fs::write(sidecar_of(&mine), serde_json::to_vec(&forged).unwrap()).unwrap();
    std::fs::copy(theirs, &mine).unwrap();
    let compiled = machine.compiled("creator-pay@1.0.0");
    assert!(compiled.starts_with("cache entry rebuilt"), "{compiled}");
    common::assert_mentions(&compiled, &["MAC does not verify"]);
    assert_eq!(
        machine.compiled_with_key(&other_key, "creator-pay@1.0.0"),
        "cache hit"
    );
    assert_eq!(machine.compiled("creator-pay@1.0.0"), "cache hit");
}

#[test]
fn a_cache_key_others_may_read_is_not_used() {
    let machine = Machine::new();
    let (v1, _) = machine.publish_reference_rules();
    assert_eq!(machine.compiled("creator-pay@1.0.0"), "compiled and cached");
    std::fs::set_permissions(&machine.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let compiled = machine.compiled("creator-pay@1.0.0");
    assert!(
        compiled.starts_with("compiled, cache not used"),
        "{compiled}"
    );
    common::assert_mentions(&compiled, &[s(&machine.key), "chmod 600"]);
    assert_eq!(machine.cache_code(&v1).len(), 1);
    std::fs::set_permissions(&machine.key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(machine.compiled("creator-pay@1.0.0"), "cache hit");
}

#[test]
fn rule_verify_notes_leftovers_and_skips_other_engines() {
    let machine = Machine::new();
    let (v1, _) = machine.publish_reference_rules();
    machine.compiled("creator-pay@1.0.0");
    let (code, _) = machine.cache_entry(&v1);

    // What a publish or cache write killed half-way leaves behind.
    let temps: Vec<PathBuf> = ["blobs", "rules", "versions", "cache"]
        .iter()
        .map(|dir| machine.registry.join(dir))
        .chain([machine.registry.clone()])
        .map(|dir| dir.join(".tmp-4242-0-123456789"))
        .collect();
    for temp in &temps {
        std::fs::write(temp, b"half a file").unwrap();
    }
    // Code compiled by another engine (another wasmtime or CPU), and code of
    // a rule the registry does not hold.
    let other_engine = machine
        .registry
        .join(format!("cache/{v1}-0123456789abcdef-01234567.cwasm"));
    std::fs::write(&other_engine, b"compiled elsewhere").unwrap();
    let stem = code.file_name().unwrap().to_string_lossy().into_owned();
    let unknown_rule = "ab".repeat(32);
    let orphan = machine
        .registry
        .join("cache")
        .join(stem.replacen(&v1, &unknown_rule, 1));
    std::fs::write(&orphan, b"never loaded").unwrap();

    let (status, stdout, stderr) = machine.verify();
    assert_eq!(
        status,
        Some(0),
        "leftovers are harmless: {stdout}\n{stderr}"
    );
    for temp in &temps {
        let name = format!("{}: ", temp.display());
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("note: {name}")))
            .unwrap_or_else(|| panic!("no note on {name}:\n{stdout}"));
        common::assert_mentions(line, &["temporary file", "interrupted"]);
    }
    common::assert_mentions(
        &stdout,
        &[
            "skipped",
            "(for another engine)",
            "1 for another engine skipped",
            s(&orphan),
            "not in the registry",
            "0 problems",
        ],
    );
    let report = machine.verify_json();
    let notes = report["notes"].as_array().unwrap();
    assert!(notes.len() > temps.len(), "{notes:?}");
    assert_eq!(report["problems"], serde_json::json!([]));

    // Nothing else minds them.
    assert_eq!(machine.compiled("creator-pay@1.0.0"), "cache hit");
    let list = machine.ok(&["rule", "list"]);
    assert_eq!(list.lines().count(), 3, "{list}");
}

#[test]
fn a_rule_file_is_compiled_once_into_the_users_cache_and_a_swapped_entry_there_is_recompiled() {
    let machine = Machine::new();
    let (events, _) = support::generate(machine.dir.path(), "events", 2_000, 5, "jsonl", 2_000);
    let (file1, file2) = (
        common::rule("creator-pay-v1"),
        common::rule("creator-pay-v2"),
    );
    let (v1, v2) = (common::blake3_hex(&file1), common::blake3_hex(&file2));
    let out = |name: &str| machine.dir.path().join(name);

    // The first load compiles into $TALLY_CODE_CACHE, the next ones load
    // from it; nothing goes into a registry.
    assert_eq!(machine.compiled(s(&file1)), "compiled and cached");
    assert_eq!(machine.compiled(s(&file1)), "cache hit");
    assert_eq!(machine.compiled(s(&file2)), "compiled and cached");
    assert_eq!(common::cache_code(&machine.code, &v1).len(), 1);
    assert!(!machine.registry.exists(), "a rule file needs no registry");
    let want = totals(&run(&machine, &events, s(&file1), &out("before")));
    assert_eq!((want.2.as_str(), want.3.as_str()), (v1.as_str(), "1.0.0"));

    // v2's code in v1's entry, the sidecar forged to match: loading v1's
    // file recompiles it from the file's bytes, and says so.
    swap_in_v2_in(&machine.code, &v1, &v2);
    let compiled = machine.compiled(s(&file1));
    assert!(
        compiled.starts_with("cache entry rebuilt"),
        "the swapped entry was used: {compiled}"
    );
    assert_eq!(machine.compiled(s(&file1)), "cache hit");
    let after = totals(&run(&machine, &events, s(&file1), &out("after")));
    assert_eq!(after, want, "the run paid what v1 pays");

    // Another key (another user) neither uses nor overwrites the entry.
    let other = machine.dir.path().join("other/cache.key");
    assert_eq!(
        machine.compiled_with_key(&other, s(&file1)),
        "compiled and cached"
    );
    assert_eq!(common::cache_code(&machine.code, &v1).len(), 2);
    assert_eq!(machine.compiled(s(&file1)), "cache hit");
}
