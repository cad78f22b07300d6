//! Exit statuses through the real CLI. A usage mistake exits 2 before
//! anything is read or written, whether clap finds it (an unknown option, a
//! value out of range, an option that does not apply to the mode) or Tally
//! does (a count of arguments, a value that does not apply to the mode); any
//! other error exits 1. `tally compare` of two output directories exits 0
//! when they are identical and 3 when they differ, and `tally explain` of an
//! event that no record has exits 1.

use crate::common::{self, s};
use crate::sandbox::component;
use std::path::{Path, PathBuf};
use std::process::Output;
use tempfile::TempDir;

/// The exit status of a usage error.
const USAGE: i32 = 2;

/// The exit status of `tally compare A B` when the two outputs differ.
const OUTPUTS_DIFFER: i32 = 3;

/// A directory with a small input (10 events, each of its own key), the
/// hand-written `constant` rule, two identical output directories made from
/// them (`out-a`, `out-b`) and a third (`out-part`) from the first five
/// events and one more event of the first one's key: 4 keys unchanged, 1
/// changed, 5 only in `out-a`.
struct Setup {
    dir: TempDir,
    input: PathBuf,
    rule: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = TempDir::new().expect("temp dir");
        let input = common::small_jsonl(dir.path(), 10);
        let rule = component(dir.path(), "constant");
        let setup = Setup { dir, input, rule };
        for out in ["out-a", "out-b"] {
            setup.run(&setup.input, out);
        }
        let part = setup.dir.path().join("part.jsonl");
        let text = std::fs::read_to_string(&setup.input).expect("input");
        // The first five events, and one more of the first one's key.
        let mut lines: Vec<String> = text.lines().take(5).map(String::from).collect();
        lines.push(lines[0].replace("\"ev-0\"", "\"ev-100\""));
        std::fs::write(&part, lines.join("\n") + "\n").expect("write part");
        setup.run(&part, "out-part");
        setup
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, input: &Path, out: &str) {
        common::tally_ok(&[
            "run",
            "--input",
            s(input),
            "--rule",
            s(&self.rule),
            "--out",
            s(&self.path(out)),
            "--quiet",
        ]);
    }

    /// The files under the setup's directory, to show that a refused command
    /// wrote nothing.
    fn files(&self) -> Vec<(String, Vec<u8>)> {
        common::snapshot(self.dir.path())
            .into_iter()
            .filter(|(name, _)| !name.contains(".tally-lock"))
            .collect()
    }
}

/// Runs `tally <args>` and asserts a usage error: exit status 2, nothing on
/// stdout, and on stderr an `error:` line holding each of `parts` (no panic).
fn usage_error(args: &[&str], parts: &[&str]) -> String {
    let out = common::tally(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(USAGE),
        "tally {args:?} should exit {USAGE}:\nstdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        out.stdout.is_empty(),
        "tally {args:?} printed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.starts_with("error: ") && !stderr.contains("panicked"),
        "tally {args:?}: unexpected stderr: {stderr}"
    );
    common::assert_mentions(&stderr, parts);
    stderr
}

/// What `tally <args>` printed, for failure messages.
fn describe(args: &[&str], out: &Output) -> String {
    format!(
        "tally {args:?}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `tally compare` needs exactly two rules (and an input) or exactly two
/// output directories: any other count is a usage error that Tally finds
/// before it loads a rule or reads an input.
#[test]
fn compare_with_the_wrong_number_of_rules_or_directories_is_a_usage_error() {
    let setup = Setup::new();
    let before = setup.files();
    let (input, rule) = (s(&setup.input), s(&setup.rule));
    let missing = setup.path("no-such-rule.wasm");
    let missing = s(&missing);
    for (args, parts) in [
        (
            vec!["compare", "--input", input, "--rule", rule],
            &["give exactly two rules, --rule A --rule B", "one given"] as &[&str],
        ),
        (
            vec!["compare", "--input", input],
            &["give exactly two rules", "none given"],
        ),
        (
            // Counted before any rule is loaded: a missing file is not the
            // error.
            vec![
                "compare", "--input", input, "--rule", rule, "--rule", rule, "--rule", missing,
            ],
            &["give exactly two rules", "3 given"],
        ),
        (
            vec!["compare", "--rule", rule, "--rule", rule],
            &["give --input with --rule A --rule B, or two output directories"],
        ),
        (
            vec!["compare"],
            &["give --input with --rule A --rule B, or two output directories"],
        ),
    ] {
        usage_error(&args, parts);
    }
    let (a, b, part) = (
        setup.path("out-a"),
        setup.path("out-b"),
        setup.path("out-part"),
    );
    usage_error(
        &["compare", s(&a)],
        &["give exactly two output directories to compare; 1 given"],
    );
    usage_error(
        &["compare", s(&a), s(&b), s(&part)],
        &["give exactly two output directories to compare; 3 given"],
    );
    assert!(setup.files() == before, "a refused compare wrote something");
}

/// The options of a rule comparison do not apply to comparing two output
/// directories: each is refused (by clap, as conflicting with the
/// directories) instead of being silently ignored, and so is
/// `--format html`, which only rule comparisons have. `--out` writes nothing.
#[test]
fn compare_of_two_directories_refuses_options_of_rule_comparisons() {
    let setup = Setup::new();
    let before = setup.files();
    let (a, b) = (setup.path("out-a"), setup.path("out-b"));
    let (a, b) = (s(&a), s(&b));
    let cmp = setup.path("cmp");
    let registry = setup.path("registry");
    for (extra, option) in [
        (vec!["--out", s(&cmp)], "--out <OUT>"),
        (
            vec!["--fail-if", "changed-share>0"],
            "--fail-if <CONDITION>",
        ),
        (vec!["--batch-size", "100"], "--batch-size <BATCH_SIZE>"),
        (vec!["--registry", s(&registry)], "--registry <REGISTRY>"),
        (vec!["--max-line-bytes", "1000"], "--max-line-bytes <BYTES>"),
        (vec!["--input", s(&setup.input)], "--input <INPUTS>..."),
        (vec!["--rule", s(&setup.rule)], "--rule <RULES>"),
    ] {
        let mut args = vec!["compare", a, b];
        args.extend(&extra);
        usage_error(
            &args,
            &["the argument '[OUTPUTS]...' cannot be used with", option],
        );
        // Options first, directories after: the same (but `--input` takes
        // every path after it as an input).
        if option.starts_with("--input") {
            continue;
        }
        let mut args = vec!["compare"];
        args.extend(&extra);
        args.extend([a, b]);
        usage_error(&args, &["cannot be used with", option]);
    }
    usage_error(
        &["compare", a, b, "--format", "html"],
        &[
            "--format html applies to rule comparisons (--input with --rule A --rule B); comparing two output directories prints text or json",
        ],
    );
    assert!(setup.files() == before, "a refused compare wrote something");
    assert!(!cmp.exists());

    // What does apply is accepted.
    for extra in [
        &["--format", "json"] as &[&str],
        &["--format", "text"],
        &["--top", "3", "--sample", "5", "--quiet"],
    ] {
        let mut args = vec!["compare", a, b];
        args.extend(extra);
        let out = common::tally(&args);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&args, &out));
    }
}

/// Two output directories: exit 0 when they are identical, 3 when they
/// differ (rows only on one side, or other figures), 1 when one cannot be
/// read; the report is printed on stdout whether they differ or not.
#[test]
fn compare_of_two_directories_exits_3_when_they_differ() {
    let setup = Setup::new();
    let (a, b, part) = (
        setup.path("out-a"),
        setup.path("out-b"),
        setup.path("out-part"),
    );
    let check = |x: &Path, y: &Path, code: i32, line: &str| {
        for format in ["text", "json"] {
            let args = ["compare", s(x), s(y), "--format", format];
            let out = common::tally(&args);
            assert_eq!(out.status.code(), Some(code), "{}", describe(&args, &out));
            assert!(out.stderr.is_empty(), "{}", describe(&args, &out));
            let stdout = String::from_utf8_lossy(&out.stdout);
            if format == "text" {
                assert!(stdout.contains(line), "{}", describe(&args, &out));
            } else {
                let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
                let differ = v["changed"] != 0 || v["only_in_a"] != 0 || v["only_in_b"] != 0;
                assert_eq!(differ, code == OUTPUTS_DIFFER, "{v}");
            }
        }
    };
    check(
        &a,
        &b,
        0,
        "keys: 10 unchanged, 0 changed, 0 only in A, 0 only in B",
    );
    check(
        &a,
        &a,
        0,
        "keys: 10 unchanged, 0 changed, 0 only in A, 0 only in B",
    );
    check(
        &a,
        &part,
        OUTPUTS_DIFFER,
        "keys: 4 unchanged, 1 changed, 5 only in A, 0 only in B",
    );
    check(
        &part,
        &a,
        OUTPUTS_DIFFER,
        "keys: 4 unchanged, 1 changed, 0 only in A, 5 only in B",
    );
    // An error is not a difference.
    let missing = setup.path("missing");
    let err = common::tally_err(&["compare", s(&a), s(&missing)]);
    common::assert_mentions(&err, &[s(&missing)]);

    // The status is documented in the command's help.
    let help = common::tally_ok(&["compare", "--help"]);
    common::assert_mentions(
        &help,
        &[
            "Exit status: 0 when",
            "3 when a --fail-if condition holds (rules) or the two output directories differ",
            "2 for a usage error",
        ],
    );
}

/// `tally explain` of an event no input record has prints that there is
/// none, and exits 1 with an `error:` line; an event that is there exits 0.
#[test]
fn explain_of_an_unknown_event_exits_1() {
    let setup = Setup::new();
    let input = s(&setup.input);
    let rule = s(&setup.rule);
    let args = [
        "explain", "--input", input, "--rule", rule, "--event", "ev-99",
    ];
    let out = common::tally(&args);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&args, &out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: no record with event_id \"ev-99\" in the input\n"
    );
    common::assert_mentions(
        &String::from_utf8_lossy(&out.stdout),
        &["event ev-99", "no record with this event_id in the input"],
    );
    let stdout = common::tally_ok(&[
        "explain", "--input", input, "--rule", rule, "--event", "ev-9",
    ]);
    common::assert_mentions(&stdout, &["event ev-9", "survivor", "not payable"]);
    let help = common::tally_ok(&["explain", "--help"]);
    common::assert_mentions(&help, &["exits with status 1"]);
}

/// Clap's own usage errors exit 2 as well: the same status for every usage
/// mistake, whoever finds it.
#[test]
fn clap_usage_errors_exit_2_too() {
    let setup = Setup::new();
    let out = setup.path("out-new");
    usage_error(
        &[
            "run",
            "--input",
            s(&setup.input),
            "--rule",
            s(&setup.rule),
            "--out",
            s(&out),
            "--batch-size",
            "0",
        ],
        &["invalid value '0' for '--batch-size <BATCH_SIZE>'"],
    );
    usage_error(&["compare", "--no-such-option"], &["unexpected argument"]);
    assert!(!out.exists());
}

/// `--threads 0` is a usage error, found by the argument parser before the
/// run starts (the library refuses 0 threads too, but that is an ordinary
/// error, exit 1).
#[test]
fn zero_threads_is_a_usage_error() {
    let setup = Setup::new();
    let out = setup.path("out-new");
    usage_error(
        &[
            "run",
            "--input",
            s(&setup.input),
            "--rule",
            s(&setup.rule),
            "--out",
            s(&out),
            "--threads",
            "0",
        ],
        &["invalid value '0' for '--threads <THREADS>'"],
    );
    assert!(!out.exists());
}
