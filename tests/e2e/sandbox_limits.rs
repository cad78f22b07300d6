//! The sandbox's limits beyond an endless loop and one growing memory (those
//! are in `sandbox`): fuel that follows the bytes a batch carries, one memory
//! cap for all the memories of a rule instance, limits on the reasons a rule
//! may return (so that no rule can make the host work without bound outside
//! the fuel), exact checks of the exported interface and of the metadata on
//! every load, and rule-supplied text shown escaped and cut wherever a person
//! reads it.
//!
//! Most rules here are the hand-written components of `tests/fixtures/rules/`,
//! some with a string of their text replaced (a name, a reason, an export).

use crate::common::{self, s};
use crate::sandbox::{Workspace, component, component_with, label};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tally::rule::{MAX_REASON_BYTES, MAX_REASONS_PER_BATCH, MAX_REASONS_PER_RUN};
use tempfile::TempDir;

/// Writes one valid event per template id (all on 2026-05-01, over three
/// creators, with event ids `<name>-<i>`) to `dir/<name>.jsonl`.
fn events_with_templates(dir: &Path, name: &str, templates: &[String]) -> PathBuf {
    let mut text = String::new();
    for (i, template) in templates.iter().enumerate() {
        let event = serde_json::json!({
            "event_id": format!("{name}-{i}"),
            "occurred_at": "2026-05-01T10:00:00Z",
            "ingested_at": "2026-05-01T10:00:01Z",
            "creator_id": format!("cr-{}", i % 3),
            "template_id": template,
            "content_kind": "template",
            "action": "publish",
            "user_tier": "pro",
            "country": "US",
        });
        text.push_str(&event.to_string());
        text.push('\n');
    }
    let path = dir.join(format!("{name}.jsonl"));
    std::fs::write(&path, text).expect("write input");
    path
}

/// `tally run` of `rule` over `input` into `dir/out`, expected to succeed;
/// returns the run report.
fn run_ok(dir: &Path, input: &Path, rule: &Path, extra: &[&str]) -> serde_json::Value {
    let out = dir.join("out");
    common::tally_ok(&common::run_args(input, rule, &out, extra));
    let report = common::report(&out);
    let checks = report["checks"].as_array().expect("checks");
    assert!(checks.iter().all(|c| c["ok"] == true), "{checks:?}");
    report
}

/// Asserts that `text` holds no character a terminal would act on (escape
/// sequences start with ESC or CSI) and has at most `lines` lines.
fn assert_inert(text: &str, lines: usize) {
    assert!(
        !text.contains(['\u{1b}', '\u{9b}', '\r']),
        "raw control characters in:\n{text}"
    );
    assert!(
        text.lines().count() <= lines,
        "more than {lines} lines:\n{text}"
    );
}

// Fuel follows the bytes of a batch.

/// One event whose template id is 60 MB of valid UTF-8 (ASCII and
/// multi-byte characters in turn, the slowest kind to check): the rule has to
/// look at every byte of it (the SDK checks the strings of a batch are
/// UTF-8), which a budget counted in events alone does not pay for. It is
/// classified like any other event.
#[test]
fn a_long_valid_string_is_paid_for_by_its_bytes() {
    let dir = TempDir::new().expect("temp dir");
    let long = format!("tpl-{}", "a€".repeat(60_000_000 / 4));
    assert!(long.len() >= 60_000_000);
    let templates = vec!["tpl-1".to_string(), long, "tpl-2".to_string()];
    let input = events_with_templates(dir.path(), "long", &templates);
    let report = run_ok(
        dir.path(),
        &input,
        &common::rule("creator-pay-v1"),
        &["--batch-size", "2", "--max-line-bytes", "100000000"],
    );
    let counts = &report["counts"];
    assert_eq!(counts["unique"], 3);
    assert_eq!(counts["classified"], 3);
    assert_eq!(counts["rows"], 3);
    let by_reason = counts["by_reason"].as_object().expect("by_reason");
    assert_eq!(
        by_reason.values().filter_map(|n| n.as_u64()).sum::<u64>(),
        3
    );
}

// One memory cap for every memory of an instance.

/// Four core instances, each with a memory of its own, three of them grown
/// by 100 MiB: no memory is over the 256 MiB cap, but together they are.
#[test]
fn the_memory_cap_holds_for_all_memories_of_an_instance_together() {
    let ws = Workspace::new();
    let rule = component(ws.dir.path(), "grow-several-memories");
    let started = Instant::now();
    let stderr = ws.run_fails(&rule, &[]);
    common::assert_mentions(
        &stderr,
        &[
            &label("grow-several-memories", &rule),
            "tried to use more than its memory cap of 256 MiB (all its linear memories and tables together)",
            "(batch 0, 10 events)",
        ],
    );
    assert!(started.elapsed() < Duration::from_secs(20));

    // With room for all three (and the rule's own), it runs.
    let dir = TempDir::new().expect("temp dir");
    let input = common::small_jsonl(dir.path(), 10);
    let report = run_ok(dir.path(), &input, &rule, &["--rule-memory-mib", "512"]);
    assert_eq!(
        report["counts"]["by_reason"],
        serde_json::json!({ "nothing": 10 })
    );
}

/// Nine memories (the rule's own and eight more instances): refused when the
/// rule is loaded, before anything runs, with what it has and may have.
#[test]
fn a_rule_with_too_many_memories_is_refused_when_loaded() {
    let ws = Workspace::new();
    let rule = component(ws.dir.path(), "too-many-memories");
    let hash = common::blake3_hex(&rule);
    let expected =
        "has 9 linear memories and 0 tables; a rule may have at most 4 memories and 4 tables";
    let stderr = ws.run_fails(&rule, &[]);
    common::assert_mentions(&stderr, &[s(&rule), &hash, expected]);
    let stderr = common::tally_err(&["rule", "inspect", s(&rule)]);
    common::assert_mentions(&stderr, &[&hash, expected]);
}

// Reasons: hashed, and limited in number and length.

/// `template-reasons` returns each event's template id as its reason: the
/// counts per reason are right, however the events are batched.
#[test]
fn reasons_are_counted_per_name() {
    let dir = TempDir::new().expect("temp dir");
    let rule = component(dir.path(), "template-reasons");
    let templates: Vec<String> = (0..300).map(|i| format!("tpl-{}", i % 7)).collect();
    let input = events_with_templates(dir.path(), "seven", &templates);
    for batch_size in ["1", "13", "300"] {
        let report = run_ok(dir.path(), &input, &rule, &["--batch-size", batch_size]);
        let expected: serde_json::Map<String, serde_json::Value> = (0..7)
            .map(|t| {
                (
                    format!("tpl-{t}"),
                    (300 / 7 + usize::from(t < 300 % 7)).into(),
                )
            })
            .collect();
        assert_eq!(
            report["counts"]["by_reason"],
            serde_json::Value::Object(expected)
        );
    }
}

/// Past the limits on distinct reasons (per batch and per run), the run fails
/// at once, naming the rule and the limit, and commits nothing.
#[test]
fn distinct_reasons_are_limited_per_batch_and_per_run() {
    let ws = Workspace::new();
    let rule = component(ws.dir.path(), "template-reasons");
    let name = label("template-reasons", &rule);
    let distinct = MAX_REASONS_PER_RUN + 100;
    let templates: Vec<String> = (0..distinct).map(|i| format!("tpl-{i:05}")).collect();
    let input = events_with_templates(ws.dir.path(), "distinct", &templates);
    let run = |batch_size: usize| {
        let started = Instant::now();
        let stderr = ws.run_fails(
            &rule,
            &[
                "--input",
                s(&input),
                "--batch-size",
                &batch_size.to_string(),
            ],
        );
        assert!(started.elapsed() < Duration::from_secs(20), "{stderr}");
        stderr
    };

    // Batches within the per-batch limit, more distinct reasons over the run.
    let stderr = run(MAX_REASONS_PER_BATCH / 2);
    common::assert_mentions(
        &stderr,
        &[
            &name,
            &format!("exceeded the limit of {MAX_REASONS_PER_RUN} distinct reasons over the run"),
        ],
    );

    // One batch with more distinct reasons than a batch may have.
    let stderr = run(distinct);
    common::assert_mentions(
        &stderr,
        &[
            &name,
            &format!("exceeded the limit of {MAX_REASONS_PER_BATCH} distinct reasons in one batch"),
            &format!("(batch 0, {distinct} events)"),
        ],
    );
}

/// A reason one byte over the limit fails the run; one at the limit does not.
#[test]
fn reasons_are_limited_in_length() {
    let ws = Workspace::new();
    let rule = component(ws.dir.path(), "template-reasons");
    let at_limit = format!("tpl-{}", "x".repeat(MAX_REASON_BYTES - 4));
    let over = format!("{at_limit}y");
    let dir = TempDir::new().expect("temp dir");
    let input = events_with_templates(dir.path(), "at-limit", std::slice::from_ref(&at_limit));
    let report = run_ok(dir.path(), &input, &rule, &[]);
    assert_eq!(report["counts"]["by_reason"][&at_limit], 1);

    let input = events_with_templates(ws.dir.path(), "over", &[over]);
    let stderr = ws.run_fails(&rule, &["--input", s(&input)]);
    common::assert_mentions(
        &stderr,
        &[
            &label("template-reasons", &rule),
            &format!(
                "returned a reason of {} bytes, over the limit of {MAX_REASON_BYTES} bytes: \"{at_limit}…\"",
                MAX_REASON_BYTES + 1
            ),
        ],
    );
}

// The interface and the metadata are checked exactly, on every load.

/// A component exporting another version of the classifier interface (even
/// a compatible one) is not the rule world Tally implements: refused, by
/// `run` and by `rule inspect`, saying what it exports and what it must.
#[test]
fn only_the_exact_interface_version_is_accepted() {
    let ws = Workspace::new();
    for version in ["1.1.0", "1.0.1", "2.0.0"] {
        let rule = component_with(
            ws.dir.path(),
            "constant",
            &format!("classifier-{version}"),
            &[(
                "(export \"tally:rules/classifier@1.0.0\"",
                &format!("(export \"tally:rules/classifier@{version}\""),
            )],
        );
        let expected = format!(
            "exports \"tally:rules/classifier@{version}\"; a rule implements tally:rules/rule@1.0.0 and exports exactly tally:rules/classifier@1.0.0"
        );
        let stderr = ws.run_fails(&rule, &[]);
        common::assert_mentions(&stderr, &[&common::blake3_hex(&rule), &expected]);
        let stderr = common::tally_err(&["rule", "inspect", s(&rule)]);
        common::assert_mentions(&stderr, &[&expected]);
    }
}

/// A rule whose metadata is not a valid name and version is refused when it
/// is loaded, by `run` as by `rule inspect` (not only by `rule publish`),
/// before a byte of output is written: a 10 MiB name is not stamped into
/// every partition, and a name holding escape sequences and newlines is shown
/// escaped and cut.
#[test]
fn metadata_is_checked_on_every_load() {
    let ws = Workspace::new();
    // The name is the 10 MiB from 1 MiB on: zero bytes (valid UTF-8, but no
    // rule name).
    let huge = component_with(
        ws.dir.path(),
        "constant",
        "huge-name",
        &[
            (
                "(memory (export \"memory\") 1)",
                "(memory (export \"memory\") 200)",
            ),
            (
                "\"\\10\\00\\00\\00\" \"\\08\\00\\00\\00\"",
                "\"\\00\\00\\10\\00\" \"\\00\\00\\a0\\00\"",
            ),
        ],
    );
    let spoof = component_with(
        ws.dir.path(),
        "constant",
        "spoofing-name",
        &[(
            "(data (i32.const 16) \"constant\")",
            "(data (i32.const 16) \"ok\\0a\\1b[2Jx\")",
        )],
    );
    let cases = [
        (&huge, "reports the name \"\\u{0}\\u{0}", "(10485760 bytes)"),
        (&spoof, "reports the name \"ok\\n\\u{1b}[2Jx\"", "(8 bytes)"),
    ];
    for (rule, name, size) in cases {
        let hash = common::blake3_hex(rule);
        for stderr in [
            ws.run_fails(rule, &[]),
            common::tally_err(&["rule", "inspect", s(rule)]),
        ] {
            common::assert_mentions(
                &stderr,
                &[&hash, name, size, "a rule name is 1 to 64 characters"],
            );
            assert_inert(&stderr, 1);
            assert!(stderr.len() < 4_000, "{} bytes of error", stderr.len());
        }
    }
}

// Rule-supplied text is escaped and cut wherever people read it.

/// A rule error of 20 MB that starts with an escape sequence and a newline
/// is shown on one line, escaped and cut.
#[test]
fn a_huge_rule_error_is_cut_and_escaped() {
    let ws = Workspace::new();
    // The error is the 20 MB from 5 MiB on (far above the batch): a message
    // and zero bytes.
    let rule = component_with(
        ws.dir.path(),
        "returns-error",
        "returns-huge-error",
        &[
            (
                "(memory (export \"memory\") 1)",
                "(memory (export \"memory\") 500)",
            ),
            (
                "(data (i32.const 128) \"no verdicts for this batch\")",
                "(data (i32.const 5242880) \"\\1b[2J\\0aerror: forged line\")",
            ),
            ("(i32.const 128)", "(i32.const 5242880)"),
            ("(i32.const 26)", "(i32.const 20000000)"),
        ],
    );
    let stderr = ws.run_fails(&rule, &[]);
    common::assert_mentions(
        &stderr,
        &[
            &label("returns-error", &rule),
            "returned an error: \"\\u{1b}[2J\\nerror: forged line\\u{0}",
            "(20000000 bytes in all)",
        ],
    );
    assert_inert(&stderr, 1);
    assert!(stderr.len() < 4_000, "{} bytes of error", stderr.len());
}

/// A reason holding an escape sequence and a newline is shown escaped in
/// the run summary, the comparison report (text and HTML) and `explain`, and
/// kept as it is in the JSON report.
#[test]
fn reasons_are_shown_escaped() {
    let dir = TempDir::new().expect("temp dir");
    let constant = component(dir.path(), "constant");
    // "nothing" is 7 bytes: so is the reason put in its place.
    let rule = component_with(
        dir.path(),
        "constant",
        "sneaky",
        &[(
            "(data (i32.const 56) \"nothing\")",
            "(data (i32.const 56) \"\\1b[2J\\0aok\")",
        )],
    );
    let raw = "\u{1b}[2J\nok";
    let escaped = "\\u{1b}[2J\\nok";
    let input = common::small_jsonl(dir.path(), 10);
    let out = dir.path().join("out");

    let summary = common::tally_ok(&[
        "run",
        "--input",
        s(&input),
        "--rule",
        s(&rule),
        "--out",
        s(&out),
        "--quiet",
    ]);
    common::assert_mentions(&summary, &[escaped]);
    assert_inert(&summary, 100);
    assert!(
        !summary
            .lines()
            .any(|line| line.trim_start().starts_with("ok")),
        "a reason forged a line:\n{summary}"
    );
    let report = common::report(&out);
    assert_eq!(report["counts"]["by_reason"][raw], 10);

    for format in ["text", "html"] {
        let compared = common::tally_ok(&[
            "compare",
            "--input",
            s(&input),
            "--rule",
            s(&constant),
            "--rule",
            s(&rule),
            "--format",
            format,
        ]);
        common::assert_mentions(&compared, &[escaped]);
        assert_inert(&compared, 1_000);
    }

    let explained = common::tally_ok(&[
        "explain",
        "--input",
        s(&input),
        "--rule",
        s(&rule),
        "--event",
        "ev-3",
    ]);
    common::assert_mentions(&explained, &[&format!("reason {escaped}")]);
    assert_inert(&explained, 20);
}
