//! The rule sandbox: rule components that loop, grow their memory without end,
//! trap, return too few verdicts, return an error or import something fail the
//! run with an error that names the rule (name, version, blake3) and the
//! problem, and leave an existing output directory byte for byte as it was.
//! Files that are not rule components at all are refused clearly.
//!
//! The misbehaving rules are hand-written components in the text format under
//! `tests/fixtures/rules/`; each test turns its fixture into a binary component
//! with the `wat` crate, so the host only ever sees what `tally rule build`
//! would give it. `constant.wat` is a well-behaved rule written the same way.

use crate::common::{self, s, snapshot};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tally::rule::Limits;
use tempfile::TempDir;

/// Events in the input of every test.
const EVENTS: usize = 10;

/// Compiles `tests/fixtures/rules/<name>.wat` into a binary component at
/// `dir/<name>.wasm`.
pub fn component(dir: &Path, name: &str) -> PathBuf {
    component_with(dir, name, name, &[])
}

/// Compiles `tests/fixtures/rules/<fixture>.wat`, with each `(from, to)` of
/// `edits` replaced in its text, into a binary component at `dir/<name>.wasm`.
pub fn component_with(dir: &Path, fixture: &str, name: &str, edits: &[(&str, &str)]) -> PathBuf {
    let source = common::fixture(&format!("rules/{fixture}.wat"));
    let mut text = std::fs::read_to_string(&source).expect("fixture");
    for (from, to) in edits {
        assert!(text.contains(from), "{} has no {from:?}", source.display());
        text = text.replace(from, to);
    }
    let bytes = wat::parse_str(&text)
        .unwrap_or_else(|e| panic!("{} does not assemble: {e}", source.display()));
    assert!(
        bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [0x0d, 0, 1, 0],
        "{} is not a component",
        source.display()
    );
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, bytes).expect("write component");
    path
}

/// How rule-call errors name a rule: `name@version (blake3 <first 12 hex>)`.
pub fn label(name: &str, path: &Path) -> String {
    format!("{name}@0.1.0 (blake3 {})", &common::blake3_hex(path)[..12])
}

/// A working directory with a small input and an output directory written by
/// a successful run of `rule`.
pub struct Workspace {
    pub dir: TempDir,
    pub input: PathBuf,
    pub out: PathBuf,
    before: Vec<(String, Vec<u8>)>,
}

impl Workspace {
    /// The existing output is made by the hand-written `constant` rule.
    pub fn new() -> Workspace {
        let dir = TempDir::new().expect("temp dir");
        let rule = component(dir.path(), "constant");
        Workspace::with_output_of(dir, &rule)
    }

    /// The existing output is made by `rule`.
    pub fn with_output_of(dir: TempDir, rule: &Path) -> Workspace {
        let input = common::small_jsonl(dir.path(), EVENTS);
        let out = dir.path().join("out");
        common::tally_ok(&[
            "run",
            "--input",
            s(&input),
            "--rule",
            s(rule),
            "--out",
            s(&out),
            "--quiet",
        ]);
        let before = snapshot(&out);
        assert!(
            before
                .iter()
                .any(|(name, _)| name == "_tally/manifest.json"),
            "the first run wrote an output"
        );
        Workspace {
            dir,
            input,
            out,
            before,
        }
    }

    /// Runs `tally run` with `rule` into the existing output, expects it to
    /// fail cleanly and returns its stderr.
    pub fn run_fails(&self, rule: &Path, extra: &[&str]) -> String {
        let mut args = vec![
            "run",
            "--input",
            s(&self.input),
            "--rule",
            s(rule),
            "--out",
            s(&self.out),
            "--quiet",
        ];
        args.extend_from_slice(extra);
        let stderr = common::tally_err(&args);
        self.assert_untouched(&stderr);
        stderr
    }

    /// The output is exactly as the first run left it, and no staging
    /// directory was left beside it (the lock file stays, by design).
    pub fn assert_untouched(&self, stderr: &str) {
        assert!(
            snapshot(&self.out) == self.before,
            "a failed run changed the existing output; stderr: {stderr}"
        );
        for entry in std::fs::read_dir(self.dir.path()).expect("readable dir") {
            let name = entry.expect("dir entry").file_name();
            let name = name.to_string_lossy();
            assert!(
                !name.starts_with(".out.tally-staging-"),
                "a failed run left {name} behind"
            );
        }
    }
}

#[test]
fn constant_rule_classifies_every_event() {
    let dir = TempDir::new().expect("temp dir");
    let rule = component(dir.path(), "constant");
    let hash = common::blake3_hex(&rule);

    let shown = common::tally_ok(&["rule", "inspect", s(&rule), "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&shown).expect("inspect JSON");
    assert_eq!(shown["name"], "constant");
    assert_eq!(shown["version"], "0.1.0");
    assert_eq!(shown["sdk_version"], "");
    assert_eq!(shown["hash"], hash.as_str());
    assert_eq!(shown["world"], "tally:rules/rule@1.0.0");
    assert_eq!(
        shown["exports"],
        serde_json::json!(["tally:rules/classifier@1.0.0"])
    );
    assert_eq!(shown["imports"], serde_json::json!([]));

    // Several batches, so the counts come from more than one call.
    let input = common::small_jsonl(dir.path(), EVENTS);
    let out = dir.path().join("out");
    common::tally_ok(&[
        "run",
        "--input",
        s(&input),
        "--rule",
        s(&rule),
        "--out",
        s(&out),
        "--batch-size",
        "3",
        "--quiet",
    ]);
    let report = common::report(&out);
    assert_eq!(report["rule"]["name"], "constant");
    assert_eq!(report["rule"]["version"], "0.1.0");
    assert_eq!(report["rule"]["hash"], hash.as_str());
    let counts = &report["counts"];
    assert_eq!(counts["records"], EVENTS);
    assert_eq!(counts["quarantined"], 0);
    assert_eq!(counts["unique"], EVENTS);
    assert_eq!(counts["payable"], 0);
    assert_eq!(counts["amount_micros"], 0);
    assert_eq!(
        counts["by_reason"],
        serde_json::json!({ "nothing": EVENTS })
    );
    // small_jsonl spreads the events over 3 creators x 5 templates on one day:
    // 10 events give 10 distinct (creator, template) pairs.
    assert_eq!(counts["rows"], EVENTS);
    assert_eq!(counts["days"], 1);
    let checks = report["checks"].as_array().expect("checks");
    assert!(checks.iter().all(|c| c["ok"] == true), "{checks:?}");
}

/// The fuel budget an out-of-fuel error states, checked against its parts:
/// `budget B = C per call + E per event × N events + P per byte × S bytes`.
/// Returns the events and bytes it was given for.
fn stated_budget(stderr: &str, limits: &Limits) -> (u64, u64) {
    let numbers = |text: &str| -> Vec<u64> {
        text.split(|c: char| !c.is_ascii_digit())
            .filter(|n| !n.is_empty())
            .map(|n| n.parse().expect("number"))
            .collect()
    };
    let start = stderr
        .find("ran out of fuel (budget ")
        .expect("out of fuel");
    let end = start + stderr[start..].find(')').expect("closing parenthesis");
    let parts = numbers(&stderr[start..end]);
    let [budget, per_call, per_event, events, per_byte, bytes] = parts[..] else {
        panic!("unexpected budget in {stderr}");
    };
    assert_eq!(
        (per_call, per_event, per_byte),
        (
            limits.fuel_per_call,
            limits.fuel_per_event,
            limits.fuel_per_byte
        ),
        "{stderr}"
    );
    assert_eq!(budget, per_call + per_event * events + per_byte * bytes);
    (events, bytes)
}

#[test]
fn endless_loop_runs_out_of_fuel_quickly_and_deterministically() {
    let ws = Workspace::new();
    let rule = component(ws.dir.path(), "loop-forever");
    let limits = Limits::default();

    let started = Instant::now();
    let first = ws.run_fails(&rule, &[]);
    let elapsed = started.elapsed();
    eprintln!("loop-forever stopped after {elapsed:?} with the default fuel");
    assert!(
        elapsed < Duration::from_secs(5),
        "the endless loop took {elapsed:?} to stop"
    );
    common::assert_mentions(
        &first,
        &[
            &label("loop-forever", &rule),
            "ran out of fuel (budget ",
            &format!("(batch 0, {EVENTS} events)"),
        ],
    );
    // The budget counts the batch's events and its bytes.
    let (events, bytes) = stated_budget(&first, &limits);
    assert_eq!(events, EVENTS as u64);
    assert!(bytes > 0, "{first}");

    // The same fuel runs out at the same point: the same error, word for word,
    // whatever the number of threads.
    let second = ws.run_fails(&rule, &[]);
    assert_eq!(first, second);
    let one_thread = ws.run_fails(&rule, &["--threads", "1"]);
    assert_eq!(first, one_thread);

    // The budget follows --fuel-per-event.
    let small = ws.run_fails(&rule, &["--fuel-per-event", "1000"]);
    let small_limits = Limits {
        fuel_per_event: 1000,
        ..limits
    };
    assert_eq!(stated_budget(&small, &small_limits), (events, bytes));
}

#[test]
fn memory_growth_is_stopped_by_the_cap() {
    let ws = Workspace::new();
    let rule = component(ws.dir.path(), "grow-memory");
    let name = label("grow-memory", &rule);

    let stderr = ws.run_fails(&rule, &["--rule-memory-mib", "16"]);
    common::assert_mentions(
        &stderr,
        &[
            &name,
            "tried to use more than its memory cap of 16 MiB",
            &format!("(batch 0, {EVENTS} events)"),
        ],
    );

    let started = Instant::now();
    let stderr = ws.run_fails(&rule, &[]);
    eprintln!(
        "grow-memory stopped after {:?} with the default cap",
        started.elapsed()
    );
    common::assert_mentions(
        &stderr,
        &[&name, "tried to use more than its memory cap of 256 MiB"],
    );
}

#[test]
fn trap_is_reported() {
    // The existing output here comes from the real creator-pay-v1 rule.
    let dir = TempDir::new().expect("temp dir");
    let ws = Workspace::with_output_of(dir, &common::rule("creator-pay-v1"));
    let rule = component(ws.dir.path(), "trap");
    let stderr = ws.run_fails(&rule, &[]);
    common::assert_mentions(
        &stderr,
        &[
            &label("trap", &rule),
            "trapped:",
            "unreachable",
            &format!("(batch 0, {EVENTS} events)"),
        ],
    );
}

#[test]
fn too_few_verdicts_are_refused() {
    let ws = Workspace::new();
    let rule = component(ws.dir.path(), "too-few-verdicts");
    let stderr = ws.run_fails(&rule, &["--batch-size", "5"]);
    common::assert_mentions(
        &stderr,
        &[
            &label("too-few-verdicts", &rule),
            "returned malformed verdicts: 0 payable values for 5 events",
        ],
    );
}

#[test]
fn returned_error_is_reported() {
    let ws = Workspace::new();
    let rule = component(ws.dir.path(), "returns-error");
    let stderr = ws.run_fails(&rule, &[]);
    common::assert_mentions(
        &stderr,
        &[
            &label("returns-error", &rule),
            "returned an error: \"no verdicts for this batch\"",
            &format!("(batch 0, {EVENTS} events)"),
        ],
    );
}

#[test]
fn rule_that_imports_is_refused() {
    let ws = Workspace::new();
    let rule = component(ws.dir.path(), "imports-something");
    let hash = common::blake3_hex(&rule);
    let import = "wasi:clocks/monotonic-clock@0.2.0";

    let stderr = ws.run_fails(&rule, &[]);
    common::assert_mentions(&stderr, &[&hash, import, "a rule must import nothing"]);

    let stderr = common::tally_err(&["rule", "inspect", s(&rule)]);
    common::assert_mentions(
        &stderr,
        &[s(&rule), &hash, import, "a rule must import nothing"],
    );
    let stderr = common::tally_err(&["rule", "inspect", "--json", s(&rule)]);
    common::assert_mentions(&stderr, &[&hash, import]);
}

#[test]
fn core_module_is_refused() {
    let ws = Workspace::new();
    let core = wat::parse_str(
        r#"(module
             (memory (export "memory") 1)
             (func (export "classify") (param i32) (result i32) (local.get 0)))"#,
    )
    .expect("core module assembles");
    let path = ws.dir.path().join("core.wasm");
    std::fs::write(&path, core).expect("write module");
    let hash = common::blake3_hex(&path);

    for stderr in [
        ws.run_fails(&path, &[]),
        common::tally_err(&["rule", "inspect", s(&path)]),
    ] {
        common::assert_mentions(
            &stderr,
            &[
                s(&path),
                &hash,
                "is a core WebAssembly module, not a component",
            ],
        );
    }
}

#[test]
fn files_that_are_not_components_are_refused() {
    let ws = Workspace::new();
    let good = std::fs::read(component(ws.dir.path(), "constant")).expect("component");
    let cases: [(&str, Vec<u8>); 5] = [
        ("text.wasm", b"this is not a rule\n".to_vec()),
        ("png.wasm", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec()),
        ("empty.wasm", Vec::new()),
        ("truncated.wasm", good[..good.len() / 2].to_vec()),
        // A rule's source, not a built rule: rules are binary components.
        (
            "constant.wat",
            std::fs::read(common::fixture("rules/constant.wat")).expect("fixture"),
        ),
    ];
    for (name, bytes) in cases {
        let path = ws.dir.path().join(name);
        std::fs::write(&path, bytes).expect("write file");
        let hash = common::blake3_hex(&path);
        for stderr in [
            ws.run_fails(&path, &[]),
            common::tally_err(&["rule", "inspect", s(&path)]),
        ] {
            common::assert_mentions(&stderr, &[s(&path), &hash, "is not a valid component"]);
            // Binary garbage is not answered with text-parser complaints.
            assert!(
                !stderr.contains("utf-8") && !stderr.contains("expected `(`"),
                "{name}: {stderr}"
            );
        }
    }

    let missing = ws.dir.path().join("missing.wasm");
    let stderr = ws.run_fails(&missing, &[]);
    common::assert_mentions(&stderr, &[s(&missing), "does not exist"]);
    let stderr = common::tally_err(&["rule", "inspect", s(&missing)]);
    common::assert_mentions(&stderr, &[s(&missing), "No such file"]);
}
