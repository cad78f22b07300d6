//! A rule that fails names why and on which event: the panic message and
//! location a rule built with the SDK reports, and the event (id, input file,
//! line) the failure comes from, in the errors of `run` (in memory and out of
//! core) and `compare`, and in `tally explain` of that event, which shows the
//! failure instead of failing. A rule's message is untrusted text: escape
//! sequences are escaped and megabytes are cut. A rule built without the
//! panic report (a hand-written component here) still gets its event named.
//!
//! The SDK-built rule is a crate written by the test into a directory outside
//! the workspace and built with `tally rule build`, as a rule author would.

use crate::common::{self, s, tally, tally_err, tally_ok};
use crate::sandbox::component_with;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tempfile::TempDir;

/// The rule's source: it panics on `ev-7` with a plain message and on
/// `ev-hostile` with a message full of terminal escapes, a forged line and
/// megabytes of text; every other event is not payable.
const RULE_SOURCE: &str = r#"use tally_rules_sdk::{Event, Rule, Verdict};

#[derive(Default)]
pub struct PanicsOnSome;

impl Rule for PanicsOnSome {
    const NAME: &'static str = "panics-on-some";
    const VERSION: &'static str = "0.1.0";

    fn classify(&self, event: &Event<'_>) -> Verdict {
        if event.event_id == "ev-7" {
            panic!("no rate for creator {}", event.creator_id);
        }
        if event.event_id == "ev-hostile" {
            hostile();
        }
        Verdict::not_payable("fine")
    }
}

#[inline(never)]
fn hostile() -> ! {
    panic!("\u{1b}[2J\u{1b}]0;owned\u{7}\nerror: forged line\r{}", "\u{1b}x".repeat(3 << 20))
}

tally_rules_sdk::export_rule!(PanicsOnSome);
"#;

/// The length in bytes of the hostile panic message.
const HOSTILE_BYTES: usize =
    "\u{1b}[2J\u{1b}]0;owned\u{7}\nerror: forged line\r".len() + (2 << 20) * 3;

/// Where in `lib.rs` the `ev-7` panic is raised: `src/lib.rs:LINE:COLUMN`.
fn panic_location() -> String {
    let (line, text) = RULE_SOURCE
        .lines()
        .enumerate()
        .find(|(_, text)| text.contains("no rate for creator"))
        .expect("the panic is in the source");
    let column = text.find("panic!").expect("a panic! call") + 1;
    format!("src/lib.rs:{}:{column}", line + 1)
}

/// The rule component, built once for all the tests of this module from a
/// crate in a temporary directory outside the workspace. Its build output is
/// kept under the workspace's `target/` so that later test runs reuse it.
fn sdk_rule() -> &'static Path {
    static RULE: OnceLock<(TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = RULE.get_or_init(|| {
        let dir = TempDir::new().expect("temp dir");
        let krate = dir.path().join("panics-on-some");
        std::fs::create_dir_all(krate.join("src")).expect("crate dir");
        let manifest = format!(
            "[package]\nname = \"panics-on-some\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
             [lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n\n\
             [dependencies]\ntally-rules-sdk = {{ path = {:?} }}\n\n[workspace]\n",
            common::root().join("rules-sdk").display().to_string()
        );
        std::fs::write(krate.join("Cargo.toml"), manifest).expect("manifest");
        std::fs::write(krate.join("src/lib.rs"), RULE_SOURCE).expect("source");
        // The workspace's lock file pins the SDK's dependencies.
        std::fs::copy(common::root().join("Cargo.lock"), krate.join("Cargo.lock"))
            .expect("lock file");
        let out = dir.path().join("panics-on-some.wasm");
        let output = std::process::Command::new(common::tally_bin())
            .args(["rule", "build", s(&krate), "--out", s(&out)])
            .env(
                "CARGO_TARGET_DIR",
                common::root().join("target/e2e-rule-crates"),
            )
            .output()
            .expect("tally runs");
        assert!(
            output.status.success(),
            "tally rule build failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        (dir, out)
    });
    path
}

/// `n` valid events `ev-0` … `ev-{n-1}`, one per line, plus `extra` lines.
fn input(dir: &Path, n: usize, extra: &[&str]) -> PathBuf {
    let path = common::small_jsonl(dir, n);
    if !extra.is_empty() {
        let mut text = std::fs::read_to_string(&path).expect("input");
        for id in extra {
            text.push_str(&format!(
                r#"{{"event_id":"{id}","occurred_at":"2026-05-01T10:00:00Z","ingested_at":"2026-05-01T10:00:01Z","creator_id":"cr-9","template_id":"tpl-9","content_kind":"video","action":"use","user_tier":"pro","country":"US"}}"#
            ));
            text.push('\n');
        }
        std::fs::write(&path, text).expect("input");
    }
    path
}

fn run_err(input: &Path, rule: &Path, out: &Path, extra: &[&str]) -> String {
    tally_err(&common::run_args(input, rule, out, extra))
}

#[test]
fn a_panic_names_its_message_location_and_event() {
    let rule = sdk_rule();
    let dir = TempDir::new().expect("temp dir");
    let input = input(dir.path(), 10, &[]);
    let out = dir.path().join("out");
    let hash = &common::blake3_hex(rule)[..12];
    let expected = format!(
        "rule panics-on-some@0.1.0 (blake3 {hash}) raised a panic at {}: \"no rate for creator cr-1\" on event \"ev-7\" at {} line 8 (batch ",
        panic_location(),
        input.display()
    );
    // In memory, in batches of every size, and out of core.
    for extra in [
        &[][..],
        &["--batch-size", "3"],
        &["--batch-size", "1", "--threads", "4"],
        &["--shards", "3"],
    ] {
        let stderr = run_err(&input, rule, &out, extra);
        common::assert_mentions(&stderr, &[&expected]);
        assert!(!out.exists(), "nothing is written");
    }
    let stderr = run_err(&input, rule, &out, &["--batch-size", "4"]);
    common::assert_mentions(&stderr, &[&expected, "(batch 1, 4 events)"]);

    // Comparing it with a rule that works names the same failure.
    let stderr = tally_err(&[
        "compare",
        "--input",
        s(&input),
        "--rule",
        s(&common::rule("creator-pay-v1")),
        "--rule",
        s(rule),
    ]);
    common::assert_mentions(&stderr, &[&expected]);
}

/// A scoped backfill classifies only the listed creators' events: the rule
/// never sees another creator's event, so one it fails on does not stop the
/// run, in memory or out of core. Listing that event's creator does.
#[test]
fn a_scoped_backfill_shows_the_rule_only_the_listed_creators_events() {
    let rule = sdk_rule();
    let v1 = common::rule("creator-pay-v1");
    let dir = TempDir::new().expect("temp dir");
    // ev-0 … ev-9 of creators cr-0, cr-1, cr-2 in turn: ev-7 is cr-1's.
    let input = input(dir.path(), 10, &[]);
    let others = dir.path().join("others.txt");
    std::fs::write(&others, "cr-0\ncr-2\n").expect("list");
    let failing = dir.path().join("failing.txt");
    std::fs::write(&failing, "cr-1\n").expect("list");
    for (n, extra) in [&[][..], &["--shards", "3"]].into_iter().enumerate() {
        let out = dir.path().join(format!("out-{n}"));
        crate::support::run(&[&input], &v1, &out, extra);
        let scoped = |list| [&["--creators", list][..], extra].concat();
        let report = crate::support::run(&[&input], rule, &out, &scoped(s(&others)));
        let count = |name: &str| crate::support::count(&report, name);
        assert_eq!(
            (count("unique"), count("classified"), count("outside_scope")),
            (10, 7, 3),
            "{extra:?}: {:#}",
            report["counts"]
        );
        // The rule finds every event it sees not payable, for "fine".
        assert_eq!(
            crate::support::count_map(&report, "by_reason"),
            [("fine".to_string(), 7)].into()
        );
        assert_eq!(count("payable"), 0);
        assert_eq!(report["scope"]["creators"], 2);

        let before = common::snapshot(&out);
        let stderr = run_err(&input, rule, &out, &scoped(s(&failing)));
        common::assert_mentions(&stderr, &["no rate for creator cr-1", "on event \"ev-7\""]);
        assert_eq!(
            common::snapshot(&out),
            before,
            "{extra:?}: the output is untouched"
        );
    }
    // The summary says what was classified and what was set aside.
    let out = dir.path().join("out-text");
    crate::support::run(&[&input], &v1, &out, &[]);
    let text = tally_ok(&common::run_args(
        &input,
        rule,
        &out,
        &["--creators", s(&others)],
    ));
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("classified"))
        .unwrap_or_else(|| panic!("no classified line in:\n{text}"));
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>().join(" "),
        "classified 7 (the listed creators' events; 3 of other creators not classified)"
    );
}

#[test]
fn explain_shows_the_failure_of_a_rule_on_its_event() {
    let rule = sdk_rule();
    let v1 = common::rule("creator-pay-v1");
    let dir = TempDir::new().expect("temp dir");
    let input = input(dir.path(), 10, &[]);
    let explain = |event: &str, json: bool| {
        let mut args = vec![
            "explain",
            "--input",
            s(&input),
            "--rule",
            s(rule),
            "--rule",
            s(&v1),
            "--event",
            event,
        ];
        if json {
            args.push("--json");
        }
        tally_ok(&args)
    };
    let text = explain("ev-7", false);
    common::assert_mentions(
        &text,
        &[
            &format!("{} line 8: survivor", input.display()),
            &format!(
                "panics-on-some@0.1.0 ({}): fails: raised a panic at {}: \"no rate for creator cr-1\"\n",
                &common::blake3_hex(rule)[..12],
                panic_location()
            ),
            "creator-pay@1.0.0",
        ],
    );
    let json: serde_json::Value = serde_json::from_str(&explain("ev-7", true)).expect("JSON");
    let failing = &json["verdicts"][0];
    assert_eq!(failing["rule"]["name"], "panics-on-some");
    assert!(failing.get("payable").is_none(), "{failing}");
    let panic = &failing["failure"]["panic"];
    assert_eq!(panic["message"], "no rate for creator cr-1");
    assert_eq!(panic["message_bytes"], 24);
    assert_eq!(panic["file"], "src/lib.rs");
    assert_eq!(
        format!("src/lib.rs:{}:{}", panic["line"], panic["column"]),
        panic_location()
    );
    // The other rule's verdict is there as usual.
    let working = &json["verdicts"][1];
    assert_eq!(working["rule"]["name"], "creator-pay");
    assert!(working["failure"].is_null() && working["payable"].is_boolean());

    // On an event it does not fail on, the rule gives its verdict.
    let json: serde_json::Value = serde_json::from_str(&explain("ev-3", true)).expect("JSON");
    assert_eq!(json["verdicts"][0]["reason"], "fine");
    assert_eq!(json["verdicts"][0]["payable"], false);
    assert!(json["verdicts"][0].get("failure").is_none());
}

#[test]
fn a_hostile_panic_message_is_bounded_and_escaped() {
    let rule = sdk_rule();
    let dir = TempDir::new().expect("temp dir");
    let input = input(dir.path(), 3, &["ev-hostile"]);
    let out = dir.path().join("out");
    let stderr = run_err(&input, rule, &out, &[]);
    // One line, nothing that drives a terminal, and short.
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        !stderr.trim_end().chars().any(|c| c.is_control()),
        "{stderr:?}"
    );
    assert!(stderr.len() < 4_096, "{} bytes of error", stderr.len());
    common::assert_mentions(
        &stderr,
        &[
            "raised a panic at src/lib.rs:",
            "\"\\u{1b}[2J\\u{1b}]0;owned\\u{7}\\nerror: forged line\\r\\u{1b}x\\u{1b}x",
            &format!("… ({HOSTILE_BYTES} bytes in all)\""),
            &format!("on event \"ev-hostile\" at {} line 4", input.display()),
        ],
    );

    // explain: the same text escaped; the JSON holds the start of the
    // message as the rule reported it, and its full length.
    let args = [
        "explain",
        "--input",
        s(&input),
        "--rule",
        s(rule),
        "--event",
        "ev-hostile",
    ];
    let text = tally_ok(&args);
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{text:?}"
    );
    assert!(text.len() < 8_192, "{} bytes of explanation", text.len());
    let output = tally(&[&args[..], &["--json"]].concat());
    assert!(output.status.success());
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let panic = &json["verdicts"][0]["failure"]["panic"];
    let message = panic["message"].as_str().expect("message");
    assert!(message.starts_with("\u{1b}[2J\u{1b}]0;owned\u{7}\nerror: forged line\r"));
    assert!(
        message.len() <= 4_096 && message.len() > 4_000,
        "{}",
        message.len()
    );
    assert_eq!(panic["message_bytes"], HOSTILE_BYTES);
    assert!(
        // 4 KiB of escape characters, each written `\u001b` in JSON.
        output.stdout.len() < 32_768,
        "{} bytes",
        output.stdout.len()
    );
}

/// The hand-written `constant` rule, changed to trap (a bare `unreachable`,
/// with no panic report) on every batch that holds an `event_id` with the
/// digit 7, or (`stateful`) on every batch of more than 5 events.
fn hand_written_trap(dir: &Path, stateful: bool) -> PathBuf {
    let start = "(local.set $n (i32.load offset=20 (local.get $batch)))";
    let condition = if stateful {
        "(i32.gt_u (local.get $n) (i32.const 5))"
    } else {
        "(local.get $seven)"
    };
    let scan = format!(
        "{start}
         (local.set $p (i32.load offset=8 (local.get $batch)))
         (local.set $end (i32.add (local.get $p) (i32.load offset=12 (local.get $batch))))
         (block $done (loop $scan
           (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
           (if (i32.eq (i32.load8_u (local.get $p)) (i32.const 0x37))
             (then (local.set $seven (i32.const 1))))
           (local.set $p (i32.add (local.get $p) (i32.const 1)))
           (br $scan)))
         (if {condition} (then unreachable))"
    );
    let name = if stateful { "traps-late" } else { "traps-on-7" };
    component_with(
        dir,
        "constant",
        name,
        &[
            (start, &scan),
            (
                "(local $ret i32)",
                "(local $ret i32) (local $p i32) (local $end i32) (local $seven i32)",
            ),
        ],
    )
}

#[test]
fn a_rule_without_the_panic_report_still_names_the_event() {
    let dir = TempDir::new().expect("temp dir");
    let input = input(dir.path(), 10, &[]);
    let out = dir.path().join("out");
    let rule = hand_written_trap(dir.path(), false);
    for extra in [&[][..], &["--batch-size", "2"], &["--shards", "2"]] {
        let stderr = run_err(&input, &rule, &out, extra);
        common::assert_mentions(
            &stderr,
            &[&format!(
                "trapped: wasm trap: wasm `unreachable` instruction executed on event \"ev-7\" at {} line 8 (batch ",
                input.display()
            )],
        );
    }
    let text = tally_ok(&[
        "explain",
        "--input",
        s(&input),
        "--rule",
        s(&rule),
        "--event",
        "ev-7",
    ]);
    common::assert_mentions(
        &text,
        &["fails: trapped: wasm trap: wasm `unreachable` instruction executed\n"],
    );

    // A rule that fails only after earlier events of its batch: the event it
    // fails on is named, with a note that it passes alone.
    let rule = hand_written_trap(dir.path(), true);
    let stderr = run_err(&input, &rule, &out, &[]);
    common::assert_mentions(
        &stderr,
        &[&format!(
            "on event \"ev-5\" at {} line 6 (in a batch of its own the event passes: the rule fails on it only after the events before it) (batch 0, 10 events)",
            input.display()
        )],
    );
}
