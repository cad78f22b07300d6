//! A rule author's path outside this repository: a rule crate in a directory
//! of its own, depending on the SDK by path, built with `tally rule build`
//! (reproducibly, wherever the crate and the SDK sit), checked with
//! `tally rule test` and published with its golden cases; overflow traps in
//! the built rule as it panics in `cargo test`; and the SDK's version moves
//! with its sources.

use crate::common::{self, root, s};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

/// The Cargo target directory of the rule crates these tests write: one for
/// all of them, kept between runs, so that the SDK's dependencies are
/// compiled once.
fn target_dir() -> PathBuf {
    root().join("target/authoring")
}

/// Runs `tally` with the shared target directory for rule builds.
fn tally(args: &[&str]) -> Output {
    Command::new(common::tally_bin())
        .args(args)
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .expect("tally runs")
}

/// Runs `tally`, asserts exit status `code`, and returns stdout and stderr.
fn tally_code(args: &[&str], code: i32) -> (String, String) {
    let out = tally(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "tally {args:?}: expected exit status {code}\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "tally {args:?} panicked: {stderr}"
    );
    (stdout, stderr)
}

fn ok(args: &[&str]) -> String {
    tally_code(args, 0).0
}

/// The SDK's own version, from its Cargo.toml.
fn sdk_version() -> String {
    let manifest = std::fs::read_to_string(root().join("rules-sdk/Cargo.toml")).unwrap();
    manifest
        .lines()
        .find_map(|line| line.strip_prefix("version = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("rules-sdk/Cargo.toml has a version of its own")
        .to_string()
}

/// One golden case (or, without `expect`, one input event) of the event
/// contract, on 2026-05-01.
fn event(id: &str, creator: &str, action: &str, expect: Option<&str>) -> String {
    let expect = expect.map_or_else(String::new, |e| format!(r#","expect":{e}"#));
    format!(
        r#"{{"case":"{id}","event_id":"{id}","occurred_at":"2026-05-01T10:00:00Z","ingested_at":"2026-05-01T10:00:05Z","creator_id":"{creator}","template_id":"tpl-1","content_kind":"template","action":"{action}","user_tier":"pro","country":"US"{expect}}}"#
    )
}

/// Writes a rule crate as an author outside this repository would: its own
/// Cargo.toml (no workspace to inherit from), the SDK as a path dependency,
/// `src/lib.rs` and `golden.jsonl`.
fn write_crate(dir: &Path, package: &str, sdk: &Path, lib: &str, golden: &[String]) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            r#"[package]
name = "{package}"
version = "1.0.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
tally-rules-sdk = {{ path = "{}" }}
"#,
            sdk.display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("src/lib.rs"), lib).unwrap();
    std::fs::write(dir.join("golden.jsonl"), golden.join("\n") + "\n").unwrap();
}

const PAY_PUBLISHES: &str = r#"use tally_rules_sdk::{Action, Event, Rule, Verdict};

#[derive(Default)]
pub struct PayPublishes;

impl Rule for PayPublishes {
    const NAME: &'static str = "pay-publishes";
    const VERSION: &'static str = "1.0.0";

    fn classify(&self, event: &Event<'_>) -> Verdict {
        if event.creator_id.starts_with("test-") {
            return Verdict::not_payable("test-creator");
        }
        match event.action {
            Action::Publish => Verdict::payable(25_000),
            _ => Verdict::not_payable("not-a-publish"),
        }
    }
}

tally_rules_sdk::export_rule!(PayPublishes);
"#;

fn pay_publishes_cases() -> Vec<String> {
    vec![
        event(
            "p-1",
            "cr-1",
            "publish",
            Some(r#"{"payable":true,"rate_micros":25000,"reason":"payable"}"#),
        ),
        event(
            "p-2",
            "cr-1",
            "view",
            Some(r#"{"payable":false,"rate_micros":0,"reason":"not-a-publish"}"#),
        ),
        event(
            "p-3",
            "test-1",
            "publish",
            Some(r#"{"payable":false,"rate_micros":0,"reason":"test-creator"}"#),
        ),
    ]
}

/// Whether `haystack` holds `needle` anywhere.
fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// Copies what a checkout of this repository needs for the SDK to build
/// from it (the workspace manifest names every member).
fn copy_checkout(to: &Path) {
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
            common::copy_tree(&from, &to.join(part), &|name| {
                name == "target" || name.to_string_lossy().starts_with('.')
            });
        } else {
            std::fs::create_dir_all(to).unwrap();
            std::fs::copy(&from, to.join(part)).unwrap();
        }
    }
}

#[test]
fn a_rule_crate_outside_the_workspace_builds_reproducibly_and_is_tested_and_published() {
    let dir = TempDir::new().unwrap();
    let sdk = root().join("rules-sdk");
    let first = dir.path().join("first/pay-publishes");
    write_crate(
        &first,
        "pay-publishes",
        &sdk,
        PAY_PUBLISHES,
        &pay_publishes_cases(),
    );

    // Built twice: the same bytes, and the golden cases beside them.
    let out_a = dir.path().join("out/a.wasm");
    let said = ok(&["rule", "build", s(&first), "--out", s(&out_a)]);
    common::assert_mentions(
        &said,
        &["built", "golden cases copied to", "a.golden.jsonl"],
    );
    assert_eq!(
        std::fs::read(out_a.with_extension("golden.jsonl")).unwrap(),
        std::fs::read(first.join("golden.jsonl")).unwrap()
    );
    let a = std::fs::read(&out_a).unwrap();
    let out_b = dir.path().join("out/b.wasm");
    ok(&["rule", "build", s(&first), "--out", s(&out_b)]);
    assert!(
        a == std::fs::read(&out_b).unwrap(),
        "building the same crate twice gave different bytes"
    );

    // A copy of the crate in another directory, against a copy of this
    // repository's SDK in yet another: the same bytes. Neither directory is
    // in the component (panic locations name `/rule/...` and
    // `/deps/tally-rules-sdk-<version>/...`), nor are symbol hashes derived
    // from them.
    let checkout = dir.path().join("elsewhere/tally");
    copy_checkout(&checkout);
    let second = dir.path().join("second/deeper/my-copy");
    write_crate(
        &second,
        "pay-publishes",
        &checkout.join("rules-sdk"),
        PAY_PUBLISHES,
        &pay_publishes_cases(),
    );
    let out_c = dir.path().join("out/c.wasm");
    ok(&["rule", "build", s(&second), "--out", s(&out_c)]);
    let c = std::fs::read(&out_c).unwrap();
    assert!(
        a == c,
        "the same crate and SDK sources built in other directories differ: blake3 {} against {}",
        blake3::hash(&a),
        blake3::hash(&c)
    );
    for path in [dir.path(), &root()] {
        assert!(
            !contains(&a, s(path)),
            "the component names the directory {}",
            path.display()
        );
    }
    assert!(
        contains(&a, &format!("/deps/tally-rules-sdk-{}/", sdk_version())),
        "the SDK's panic locations are not remapped"
    );

    // The rule reports the SDK's own version.
    let inspected: serde_json::Value =
        serde_json::from_str(&ok(&["rule", "inspect", s(&out_a), "--json"])).unwrap();
    assert_eq!(inspected["name"], "pay-publishes");
    assert_eq!(inspected["sdk_version"], sdk_version().as_str());
    let hash = blake3::hash(&a).to_hex().to_string();

    // `rule test` on the crate builds it as `rule build` does and runs the
    // cases in the sandbox; on the component, it finds the copied cases.
    let said = ok(&["rule", "test", s(&first)]);
    common::assert_mentions(
        &said,
        &[
            "pay-publishes@1.0.0",
            &hash[..12],
            "passes all 3 golden cases",
        ],
    );
    let report: serde_json::Value =
        serde_json::from_str(&ok(&["rule", "test", s(&out_a), "--json"])).unwrap();
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["status"], "passed");
    assert_eq!(report["rule"]["hash"], hash.as_str());
    assert_eq!(report["rule"]["sdk_version"], sdk_version().as_str());
    assert_eq!(report["golden"]["cases"], 3);
    assert_eq!(report["golden"]["failed"], 0);
    assert_eq!(
        report["golden"]["file"],
        s(&out_a.with_extension("golden.jsonl"))
    );
    assert_eq!(report["failures"], serde_json::json!([]));
    assert!(report["error"].is_null());

    // A wrong expectation: exit status 1, the case named with what differs,
    // in text and in JSON.
    let wrong = dir.path().join("wrong.jsonl");
    let mut cases = pay_publishes_cases();
    cases[1] = event(
        "p-2",
        "cr-1",
        "view",
        Some(r#"{"payable":true,"rate_micros":25000,"reason":"payable"}"#),
    );
    std::fs::write(&wrong, cases.join("\n")).unwrap();
    let (stdout, stderr) = tally_code(&["rule", "test", s(&out_a), "--golden", s(&wrong)], 1);
    assert_eq!(stdout, "");
    common::assert_mentions(
        &stderr,
        &[
            "error: pay-publishes@1.0.0",
            "fails 1 of the 3 golden cases",
            s(&wrong),
            "line 2 (event_id \"p-2\", \"p-2\"): payable: expected true, got false; rate_micros: expected 25000, got 0; reason: expected \"payable\", got \"not-a-publish\"",
        ],
    );
    assert!(
        !stderr.contains("p-1") && !stderr.contains("p-3"),
        "{stderr}"
    );
    let (stdout, _) = tally_code(
        &["rule", "test", s(&out_a), "--golden", s(&wrong), "--json"],
        1,
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["status"], "failed");
    assert_eq!(report["golden"]["passed"], 2);
    assert_eq!(report["golden"]["failed"], 1);
    let failure = &report["failures"][0];
    assert_eq!(failure["line"], 2);
    assert_eq!(failure["event_id"], "p-2");
    assert_eq!(failure["expected"]["payable"], true);
    assert_eq!(failure["got"]["reason"], "not-a-publish");
    assert!(failure["error"].is_null());

    // Published from the crate directory: the same bytes as built.
    let registry = dir.path().join("registry");
    let said = ok(&["rule", "publish", s(&first), "--registry", s(&registry)]);
    common::assert_mentions(
        &said,
        &[
            "published pay-publishes@1.0.0",
            &hash,
            "3 golden cases",
            "pass",
        ],
    );
    // The copy of a reference rule builds outside the workspace as it is,
    // with only its SDK dependency pointed at the SDK, and passes its cases.
    let reference = dir.path().join("copied/creator-pay-v2");
    common::copy_tree(&root().join("rules/creator-pay-v2"), &reference, &|name| {
        name == "target"
    });
    let manifest = std::fs::read_to_string(reference.join("Cargo.toml")).unwrap();
    assert!(manifest.contains(r#"path = "../../rules-sdk""#));
    std::fs::write(
        reference.join("Cargo.toml"),
        manifest.replace(
            r#"path = "../../rules-sdk""#,
            &format!("path = \"{}\"", sdk.display()),
        ),
    )
    .unwrap();
    common::assert_mentions(
        &ok(&["rule", "test", s(&reference)]),
        &["creator-pay@2.0.0", "passes all", "golden cases"],
    );
}

/// A rule whose amount overflows `i64` for creator ids of 7 bytes or more:
/// 3·10¹⁸ micros per byte. Wrapped, 7 bytes would pay
/// 21·10¹⁸ − 2⁶⁴ = 2,553,255,926,290,448,384 micros.
const OVERFLOWING: &str = r#"use tally_rules_sdk::{Event, Rule, Verdict};

#[derive(Default)]
pub struct PerByte;

impl Rule for PerByte {
    const NAME: &'static str = "per-byte";
    const VERSION: &'static str = "1.0.0";

    fn classify(&self, event: &Event<'_>) -> Verdict {
        let bytes = event.creator_id.len() as i64;
        Verdict::payable(3_000_000_000_000_000_000 * bytes)
    }
}

tally_rules_sdk::export_rule!(PerByte);
"#;

const WRAPPED: i64 = 2_553_255_926_290_448_384;

#[test]
fn overflow_traps_in_the_built_rule_instead_of_paying_a_wrapped_amount() {
    assert_eq!(
        3_000_000_000_000_000_000i64.wrapping_mul(7),
        WRAPPED,
        "what a build without overflow checks would pay"
    );
    let dir = TempDir::new().unwrap();
    let krate = dir.path().join("per-byte");
    // The second case expects the wrapped amount: only a trap fails it.
    let cases = vec![
        event(
            "o-1",
            "c",
            "use",
            Some(r#"{"payable":true,"rate_micros":3000000000000000000,"reason":"payable"}"#),
        ),
        event(
            "o-2",
            "cr-0007",
            "use",
            Some(&format!(
                r#"{{"payable":true,"rate_micros":{WRAPPED},"reason":"payable"}}"#
            )),
        ),
    ];
    write_crate(
        &krate,
        "per-byte",
        &root().join("rules-sdk"),
        OVERFLOWING,
        &cases,
    );
    let wasm = dir.path().join("per-byte.wasm");
    ok(&["rule", "build", s(&krate), "--out", s(&wasm)]);

    // `rule test`: the overflowing case fails, without a verdict, and is
    // the only one that does.
    let (stdout, stderr) = tally_code(&["rule", "test", s(&wasm), "--json"], 1);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["status"], "failed", "{report}");
    let failures = report["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{report}");
    assert_eq!(failures[0]["line"], 2);
    assert_eq!(failures[0]["event_id"], "o-2");
    assert!(
        failures[0]["got"].is_null(),
        "the rule gave a verdict: {report}"
    );
    let error = failures[0]["error"].as_str().unwrap().to_lowercase();
    assert!(
        error.contains("trap") || error.contains("panic"),
        "not a trap: {error}"
    );
    common::assert_mentions(
        &stderr,
        &["fails 1 of the 2 golden cases", "line 2 (event_id \"o-2\""],
    );
    assert!(!stderr.contains(&WRAPPED.to_string()), "{stderr}");

    // Nor is it published.
    let registry = dir.path().join("registry");
    let (_, stderr) = tally_code(
        &["rule", "publish", s(&wasm), "--registry", s(&registry)],
        1,
    );
    common::assert_mentions(&stderr, &["not published", "line 2"]);
    assert!(!registry.exists());

    // `run`: the short creator is paid, the long one fails the run, and
    // nothing is committed.
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, event("e-1", "c", "use", None) + "\n").unwrap();
    let out = dir.path().join("out");
    let report: serde_json::Value = serde_json::from_str(&ok(&[
        "run",
        "--input",
        s(&input),
        "--rule",
        s(&wasm),
        "--out",
        s(&out),
        "--quiet",
        "--json",
    ]))
    .unwrap();
    assert_eq!(
        report["counts"]["amount_micros"], 3_000_000_000_000_000_000i64,
        "{report}"
    );
    let before = common::snapshot(&out);
    std::fs::write(
        &input,
        [
            event("e-1", "c", "use", None),
            event("e-2", "cr-0007", "use", None),
        ]
        .join("\n"),
    )
    .unwrap();
    let (stdout, stderr) = tally_code(
        &[
            "run",
            "--input",
            s(&input),
            "--rule",
            s(&wasm),
            "--out",
            s(&out),
            "--quiet",
        ],
        1,
    );
    let lower = stderr.to_lowercase();
    assert!(
        lower.contains("per-byte@1.0.0") && (lower.contains("trap") || lower.contains("panic")),
        "the run does not report the rule's trap: {stderr}"
    );
    assert!(!stdout.contains(&WRAPPED.to_string()));
    assert_eq!(
        common::snapshot(&out),
        before,
        "a failed run changed the output"
    );
}

#[test]
fn publishing_needs_golden_cases_and_runs_them_every_time() {
    let dir = TempDir::new().unwrap();
    let registry = dir.path().join("registry");
    let reg = s(&registry);
    // The reference component alone, without the golden cases `make rules`
    // puts beside it.
    let wasm = dir.path().join("v1.wasm");
    std::fs::copy(common::rule("creator-pay-v1"), &wasm).unwrap();

    let (_, stderr) = tally_code(&["rule", "publish", s(&wasm), "--registry", reg], 2);
    common::assert_mentions(
        &stderr,
        &[
            "no golden cases",
            s(&dir.path().join("v1.golden.jsonl")),
            "--golden",
            "--no-golden",
        ],
    );
    assert!(!registry.exists(), "a refused publish created the registry");
    let (_, stderr) = tally_code(&["rule", "test", s(&wasm)], 2);
    common::assert_mentions(&stderr, &["no golden cases", "--golden"]);
    tally_code(
        &[
            "rule",
            "publish",
            s(&wasm),
            "--no-golden",
            "--golden",
            s(&root().join("rules/creator-pay-v1/golden.jsonl")),
            "--registry",
            reg,
        ],
        2,
    );

    // A golden file that is not in the format: nothing is checked, and the
    // JSON report says so, with the line.
    let broken = dir.path().join("broken.jsonl");
    std::fs::write(&broken, "{\"event_id\":\"x\"}\n").unwrap();
    let (stdout, stderr) = tally_code(
        &["rule", "test", s(&wasm), "--golden", s(&broken), "--json"],
        1,
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["status"], "error");
    let error = report["error"].as_str().unwrap();
    common::assert_mentions(error, &[s(&broken), "line 1", "missing field"]);
    common::assert_mentions(&stderr, &["error: ", "line 1"]);

    let said = ok(&[
        "rule",
        "publish",
        s(&wasm),
        "--no-golden",
        "--registry",
        reg,
    ]);
    common::assert_mentions(&said, &["published creator-pay@1.0.0", "no golden cases"]);

    // The same bytes again, with cases one of which is wrong: they run, and
    // the publish fails although the bytes are published.
    let golden = std::fs::read_to_string(root().join("rules/creator-pay-v1/golden.jsonl")).unwrap();
    let total = golden.lines().filter(|l| !l.trim().is_empty()).count();
    let first = golden.lines().next().unwrap();
    assert!(
        first.contains(r#""expect":{"payable":false,"rate_micros":0,"reason":"test-creator"}"#)
    );
    let wrong = dir.path().join("wrong.jsonl");
    std::fs::write(
        &wrong,
        golden.replacen(
            r#""reason":"test-creator""#,
            r#""reason":"test-account""#,
            1,
        ),
    )
    .unwrap();
    let (_, stderr) = tally_code(
        &[
            "rule",
            "publish",
            s(&wasm),
            "--golden",
            s(&wrong),
            "--registry",
            reg,
        ],
        1,
    );
    common::assert_mentions(
        &stderr,
        &[
            &format!("fails 1 of the {total} golden cases"),
            "line 1 (event_id \"g1-01\"",
            "reason: expected \"test-account\", got \"test-creator\"",
        ],
    );
    let right = root().join("rules/creator-pay-v1/golden.jsonl");
    let said = ok(&[
        "rule",
        "publish",
        s(&wasm),
        "--golden",
        s(&right),
        "--registry",
        reg,
    ]);
    common::assert_mentions(
        &said,
        &[
            "already published",
            &format!("{total} golden cases"),
            s(&right),
            "pass",
        ],
    );
    // The component `make rules` built has its cases beside it.
    let said = ok(&[
        "rule",
        "publish",
        s(&common::rule("creator-pay-v1")),
        "--registry",
        reg,
    ]);
    common::assert_mentions(&said, &["already published", "creator-pay-v1.golden.jsonl"]);
}

/// The SDK's version is what every rule reports about the SDK it was built
/// with, so it must change whenever what the SDK compiles into a rule does:
/// its sources, its manifest (the exact wit-bindgen version) and the rule
/// interface. This pins the version to a hash of all of them.
#[test]
fn the_sdk_version_is_raised_when_its_sources_change() {
    const PINNED: (&str, &str) = (
        "0.2.0",
        "d85571a5884e020e93fb9a48cb86d72b4002fdadfefb80039040d1c14b5b58c0",
    );
    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut paths = vec![root().join("rules-sdk/Cargo.toml")];
    files(&root().join("rules-sdk/src"), &mut paths);
    files(&root().join("wit"), &mut paths);
    paths.sort();
    let mut hasher = blake3::Hasher::new();
    for path in &paths {
        let relative = path.strip_prefix(root()).unwrap();
        let bytes = std::fs::read(path).unwrap();
        hasher.update(s(relative).as_bytes());
        hasher.update(&[0]);
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    let hash = hasher.finalize().to_hex().to_string();
    let version = sdk_version();
    assert!(
        (version.as_str(), hash.as_str()) == PINNED,
        "the SDK's sources (rules-sdk/Cargo.toml, rules-sdk/src, wit/) hash to {hash} with version {version}; \
         pinned: version {} with {}. If the sources changed, raise `version` in rules-sdk/Cargo.toml \
         (semantic versioning for rule authors: a patch for a fix, a minor for an addition, a major \
         for a change that breaks a rule's sources), then pin the new version and hash here.",
        PINNED.0,
        PINNED.1
    );
}
