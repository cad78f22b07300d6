//! Paths and helpers shared by the end-to-end tests: the `tally` binary, the
//! built rule components and fixtures, and small readers for the output.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// The `tally` binary of the same profile as this test (built by `make test`,
/// or `cargo build --release` before `cargo test --release`).
pub fn tally_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps");
    let bin = profile_dir.join("tally");
    assert!(
        bin.is_file(),
        "{} is missing: build it first (`make test` does, or `cargo build --release -p tally`)",
        bin.display()
    );
    bin
}

/// A reference rule component built by `make rules`: `creator-pay-v1` or `creator-pay-v2`.
pub fn rule(name: &str) -> PathBuf {
    let path = root().join("target/rules").join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: build the rules first (`make rules`)",
        path.display()
    );
    path
}

/// A fixture file under tests/fixtures.
pub fn fixture(relative: &str) -> PathBuf {
    root().join("tests/fixtures").join(relative)
}

/// Runs `tally` with `args`.
pub fn tally(args: &[&str]) -> Output {
    Command::new(tally_bin())
        .args(args)
        .output()
        .expect("tally runs")
}

/// Runs `tally` and asserts it succeeded; returns stdout.
pub fn tally_ok(args: &[&str]) -> String {
    let out = tally(args);
    assert!(
        out.status.success(),
        "tally {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// The arguments of `tally run` of `input` with `rule` into `out`, quiet,
/// and `extra`.
pub fn run_args<'a>(
    input: &'a Path,
    rule: &'a Path,
    out: &'a Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        "--input",
        s(input),
        "--rule",
        s(rule),
        "--out",
        s(out),
        "--quiet",
    ];
    args.extend_from_slice(extra);
    args
}

/// Runs `tally`, expects the ordinary failure (exit code 1: not a panic, not
/// a signal; an `error:` line) and returns stderr.
pub fn tally_err(args: &[&str]) -> String {
    let out = tally(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "tally {args:?} should fail with exit code 1:\nstdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.starts_with("error: ") && !stderr.contains("panicked"),
        "tally {args:?}: unexpected stderr: {stderr}"
    );
    stderr
}

/// Asserts that `text` contains each of `parts`.
pub fn assert_mentions(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "expected {part:?} in:\n{text}");
    }
}

/// A path as `&str` for command lines.
pub fn s(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// Every file under `dir` with its bytes, relative paths sorted.
pub fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).expect("readable dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let rel = path.strip_prefix(base).unwrap().display().to_string();
                out.push((rel, std::fs::read(&path).expect("readable file")));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The JSON run report of an output directory.
pub fn report(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("_tally/report.json")).expect("_tally/report.json");
    serde_json::from_str(&text).expect("report is JSON")
}

/// A tiny valid JSONL input of `n` events on 2026-05-01.
pub fn small_jsonl(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("small.jsonl");
    let lines: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"event_id":"ev-{i}","occurred_at":"2026-05-01T10:00:00Z","ingested_at":"2026-05-01T10:00:01Z","creator_id":"cr-{c}","template_id":"tpl-{t}","content_kind":"template","action":"use","user_tier":"pro","country":"US"}}"#,
                c = i % 3,
                t = i % 5
            )
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").expect("write input");
    path
}

/// The blake3 hash of a file's bytes, in hex. It is computed with the input
/// hasher of the ingest stage, which has nothing to do with loading or
/// publishing rules.
pub fn blake3_hex(path: &Path) -> String {
    let file = tally::ingest::InputFile {
        path: path.to_path_buf(),
        format: tally::ingest::Format::Jsonl,
        size: std::fs::metadata(path).expect("file exists").len(),
        modified: None,
    };
    let hashes = tally::ingest::hash_files(&[file]).expect("file hashes");
    hashes[0].to_hex().to_string()
}

/// Copies a directory tree (files and directories only), leaving out the
/// entries whose name `skip` accepts.
pub fn copy_tree(from: &Path, to: &Path, skip: &dyn Fn(&std::ffi::OsStr) -> bool) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("readable dir") {
        let entry = entry.expect("entry");
        if skip(&entry.file_name()) {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target, skip);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// The `.cwasm` files of the compiled-code cache directory `dir` for a rule
/// (by its hash), sorted.
pub fn cache_code(dir: &Path, hash: &str) -> Vec<PathBuf> {
    let mut code: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("cache dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with(hash) && name.ends_with(".cwasm")
        })
        .collect();
    code.sort();
    code
}
