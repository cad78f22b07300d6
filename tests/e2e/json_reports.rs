//! One JSON reporting surface: every command that reports prints its report
//! as one JSON object with an integer `schema_version` when given `--json`;
//! lists sit under a named key. A run, a task commit or a publish that fails
//! still writes its report, with `"status": "failed"` and the error as stderr
//! gives it, and leaves what it would have changed as it was. `compare
//! --json` is `compare --format json`.

use crate::common::{self, s, snapshot};
use crate::sandbox::{Workspace, component};
use serde_json::Value;
use std::process::Output;
use tempfile::TempDir;

/// Runs `tally args`, expects exit status `code`, and returns stdout parsed
/// as a JSON object with an integer `schema_version`.
fn report(args: &[&str], code: i32) -> Value {
    report_and_stderr(args, code).0
}

/// [`report`], and what the command printed on stderr.
fn report_and_stderr(args: &[&str], code: i32) -> (Value, String) {
    let out = common::tally(args);
    let (stdout, stderr) = texts(&out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "tally {args:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "tally {args:?}: {stderr}");
    let value: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("tally {args:?} printed no JSON ({e}):\n{stdout}"));
    assert!(value.is_object(), "tally {args:?}: not an object: {value}");
    assert!(
        value["schema_version"].is_u64(),
        "tally {args:?}: no integer schema_version in {value}"
    );
    (value, stderr)
}

fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The error a failed command printed on stderr, without `error: ` and the
/// final line end: what its report's `error` must say.
fn error_of(stderr: &str) -> &str {
    stderr
        .strip_prefix("error: ")
        .and_then(|e| e.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("not one error: {stderr:?}"))
}

#[test]
fn every_reporting_command_prints_one_versioned_json_object() {
    let dir = TempDir::new().expect("temp dir");
    let input = common::small_jsonl(dir.path(), 40);
    let (v1, v2) = (
        common::rule("creator-pay-v1"),
        common::rule("creator-pay-v2"),
    );
    let golden = common::root().join("rules/creator-pay-v1/golden.jsonl");
    let registry = dir.path().join("registry");
    let out = dir.path().join("out");
    let (out, input, v1, v2) = (s(&out), s(&input), s(&v1), s(&v2));
    let registry = s(&registry);

    let run = report(
        &[
            "run", "--input", input, "--rule", v1, "--out", out, "--quiet", "--json",
        ],
        0,
    );
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["commit"], 1);

    let published = report(
        &[
            "rule",
            "publish",
            v1,
            "--golden",
            s(&golden),
            "--registry",
            registry,
            "--json",
        ],
        0,
    );
    assert_eq!(published["status"], "succeeded");
    assert_eq!(published["outcome"], "published");
    assert_eq!(published["record"]["hash"], run["rule"]["hash"]);

    let listed = report(&["rule", "list", "--registry", registry, "--json"], 0);
    assert_eq!(
        listed["rules"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    let log = report(&["log", out, "--json"], 0);
    assert_eq!(log["commits"].as_array().map(Vec::len), Some(1), "{log}");
    let partitions = report(&["lineage", out, "--json"], 0);
    assert_eq!(
        partitions["partitions"].as_array().map(Vec::len),
        Some(1),
        "{partitions}"
    );
    let row = report(
        &[
            "lineage",
            out,
            "--day",
            "2026-05-01",
            "--creator",
            "cr-0",
            "--template",
            "tpl-0",
            "--json",
        ],
        0,
    );
    assert_eq!(row["creator_id"], "cr-0");

    let work = dir.path().join("work");
    let other = dir.path().join("out-tasks");
    let (work, other) = (s(&work), s(&other));
    let plan = report(
        &[
            "plan", "--input", input, "--rule", v1, "--out", other, "--work", work, "--shards",
            "2", "--json",
        ],
        0,
    );
    assert_eq!(plan["shards"], 2);
    let mut tasks = vec![report(
        &["map", "--work", work, "--task", "0", "--quiet", "--json"],
        0,
    )];
    for shard in ["0", "1"] {
        tasks.push(report(
            &["reduce", "--work", work, "--shard", shard, "--json"],
            0,
        ));
    }
    assert!(tasks.iter().all(|t| t["ran"] == true), "{tasks:?}");
    let committed = report(&["commit", "--work", work, "--quiet", "--json"], 0);
    assert_eq!(committed["status"], "succeeded");
    assert_eq!(committed["work"], work);
    assert_eq!(committed["rule_reference"], v1);

    for args in [
        &[
            "explain", "--input", input, "--rule", v1, "--event", "ev-1", "--json",
        ] as &[&str],
        &["show", out, "1", "--json"],
        &["verify", out, "--registry", registry, "--json"],
        &["rule", "test", v1, "--golden", s(&golden), "--json"],
        &["rule", "inspect", v1, "--json"],
        &[
            "rule",
            "show",
            "creator-pay@1.0.0",
            "--registry",
            registry,
            "--json",
        ],
        &["rule", "verify", "--registry", registry, "--json"],
        &[
            "compare", "--input", input, "--rule", v1, "--rule", v2, "--quiet", "--json",
        ],
        &["compare", out, other, "--json"],
    ] {
        report(args, 0);
    }
}

#[test]
fn a_run_that_fails_writes_its_report_and_leaves_the_output_as_it_was() {
    let ws = Workspace::new();
    let trap = component(ws.dir.path(), "trap");
    let file = ws.dir.path().join("report.json");
    // A report left by an earlier run is replaced, not kept.
    std::fs::write(&file, "{\"status\": \"succeeded\"}").expect("write");
    let stderr = ws.run_fails(&trap, &["--report", s(&file)]);
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("the report is written"))
            .expect("the report is JSON");
    assert_eq!(written["schema_version"], 1);
    assert_eq!(written["status"], "failed");
    assert_eq!(written["error"], error_of(&stderr));
    assert!(
        error_of(&stderr).starts_with("run failed; the previous output is untouched: "),
        "{stderr}"
    );
    assert_eq!(written["rule_reference"], s(&trap));
    assert_eq!(written["rule"]["hash"], common::blake3_hex(&trap).as_str());
    assert_eq!(written["inputs_given"], serde_json::json!([s(&ws.input)]));
    assert_eq!(written["output"], s(&ws.out));
    assert_eq!(written["window"], Value::Null);
    assert!(written.get("counts").is_none(), "{written}");

    // With --json the same report is printed on stdout, the error still on
    // stderr, the exit status still 1.
    let out = common::tally(&[
        "run",
        "--input",
        s(&ws.input),
        "--rule",
        s(&trap),
        "--out",
        s(&ws.out),
        "--quiet",
        "--json",
    ]);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    ws.assert_untouched(&stderr);
    let printed: Value = serde_json::from_str(&stdout).expect("--json prints the report");
    assert_eq!(printed, written);
}

#[test]
fn a_run_that_fails_before_it_reads_anything_still_writes_its_report() {
    let ws = Workspace::new();
    let rule = component(ws.dir.path(), "constant");
    let missing_input = ws.dir.path().join("no-such-events.jsonl");
    let missing_rule = ws.dir.path().join("no-such-rule.wasm");
    for (input, rule, loaded) in [
        (missing_input.as_path(), rule.as_path(), true),
        (ws.input.as_path(), missing_rule.as_path(), false),
    ] {
        let file = ws.dir.path().join("report.json");
        let stderr = ws.run_fails(
            rule,
            &[
                "--input",
                s(input),
                "--days",
                "2026-05-01..2026-05-02",
                "--report",
                s(&file),
            ],
        );
        let written: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).expect("the report is written"))
                .expect("the report is JSON");
        assert_eq!(written["status"], "failed", "{written}");
        assert_eq!(written["error"], error_of(&stderr));
        assert_eq!(written["rule_reference"], s(rule));
        // The second --input adds to the first.
        assert_eq!(
            written["inputs_given"],
            serde_json::json!([s(&ws.input), s(input)])
        );
        assert_eq!(written["output"], s(&ws.out));
        assert_eq!(
            written["window"],
            serde_json::json!(["2026-05-01", "2026-05-02"])
        );
        if loaded {
            assert_eq!(written["rule"]["hash"], common::blake3_hex(rule).as_str());
            common::assert_mentions(&stderr, &[s(input)]);
        } else {
            assert_eq!(written["rule"], Value::Null, "{written}");
            common::assert_mentions(&stderr, &[s(rule)]);
        }
        std::fs::remove_file(&file).expect("remove the report");
    }
}

#[test]
fn a_task_commit_that_fails_writes_its_report() {
    let dir = TempDir::new().expect("temp dir");
    let input = common::small_jsonl(dir.path(), 20);
    let rule = common::rule("creator-pay-v1");
    let (work, out) = (dir.path().join("work"), dir.path().join("out"));
    common::tally_ok(&[
        "plan",
        "--input",
        s(&input),
        "--rule",
        s(&rule),
        "--out",
        s(&out),
        "--work",
        s(&work),
        "--shards",
        "2",
    ]);
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("plan.json")).expect("plan"))
            .expect("plan JSON");
    let names: Vec<Value> = plan["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["name"].clone())
        .collect();

    // No task has run: the commit fails, commits nothing, and says so in
    // its report too.
    let file = dir.path().join("report.json");
    let args = [
        "commit",
        "--work",
        s(&work),
        "--quiet",
        "--json",
        "--report",
        s(&file),
    ];
    let (printed, stderr) = report_and_stderr(&args, 1);
    assert!(!out.exists(), "a failed commit wrote {}", out.display());
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("the report is written"))
            .expect("the report is JSON");
    assert_eq!(printed, written);
    assert_eq!(written["status"], "failed");
    assert_eq!(written["error"], error_of(&stderr));
    assert_eq!(written["work"], s(&work));
    assert_eq!(written["rule_reference"], s(&rule));
    assert_eq!(written["rule"]["hash"], common::blake3_hex(&rule).as_str());
    assert_eq!(written["inputs_given"], Value::Array(names));
    assert_eq!(written["output"], plan["out"]);

    // A work directory without a plan: the report names only the work
    // directory.
    let empty = dir.path().join("empty-work");
    std::fs::create_dir(&empty).expect("mkdir");
    let args = ["commit", "--work", s(&empty), "--quiet", "--json"];
    let (printed, stderr) = report_and_stderr(&args, 1);
    assert_eq!(printed["error"], error_of(&stderr));
    assert_eq!(printed["rule_reference"], Value::Null);
    assert_eq!(printed["rule"], Value::Null);
    assert_eq!(printed["output"], Value::Null);
    assert_eq!(printed["inputs_given"], serde_json::json!([]));
}

#[test]
fn a_publish_that_fails_prints_its_report_and_publishes_nothing() {
    let dir = TempDir::new().expect("temp dir");
    let registry = dir.path().join("registry");
    // creator-pay 1.0.0 held to the cases of 2.0.0, which pays otherwise.
    let rule = dir.path().join("creator-pay-v1.wasm");
    std::fs::copy(common::rule("creator-pay-v1"), &rule).expect("copy rule");
    let golden = common::root().join("rules/creator-pay-v2/golden.jsonl");
    let args = [
        "rule",
        "publish",
        s(&rule),
        "--golden",
        s(&golden),
        "--registry",
        s(&registry),
        "--json",
    ];
    let (printed, stderr) = report_and_stderr(&args, 1);
    assert_eq!(printed["schema_version"], 1);
    assert_eq!(printed["status"], "failed");
    assert_eq!(printed["error"], error_of(&stderr));
    common::assert_mentions(&stderr, &["golden cases", s(&golden)]);
    assert_eq!(printed["source"], s(&rule));
    assert_eq!(printed["registry"], s(&registry));
    assert_eq!(printed["golden_file"], s(&golden));
    for absent in ["outcome", "component", "golden", "record"] {
        assert_eq!(printed[absent], Value::Null, "{absent}: {printed}");
    }
    assert!(
        !registry.exists(),
        "a failed publish made the registry {}",
        registry.display()
    );
}

#[test]
fn compare_json_is_format_json_and_refuses_another_format() {
    let dir = TempDir::new().expect("temp dir");
    let input = common::small_jsonl(dir.path(), 30);
    let (v1, v2) = (
        common::rule("creator-pay-v1"),
        common::rule("creator-pay-v2"),
    );
    let rules = [
        "compare",
        "--input",
        s(&input),
        "--rule",
        s(&v1),
        "--rule",
        s(&v2),
        "--quiet",
    ];
    // The comparison's own time is the one figure that may differ.
    let without_time = |mut v: Value| {
        v.as_object_mut()
            .expect("an object")
            .remove("elapsed_seconds")
            .expect("elapsed_seconds");
        v
    };
    let json = report(&[&rules[..], &["--json"]].concat(), 0);
    let format = report(&[&rules[..], &["--format", "json"]].concat(), 0);
    let both = report(&[&rules[..], &["--json", "--format", "json"]].concat(), 0);
    assert_eq!(without_time(json.clone()), without_time(format));
    assert_eq!(without_time(json), without_time(both));

    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for (out, rule) in [(&a, &v1), (&b, &v2)] {
        common::tally_ok(&[
            "run",
            "--input",
            s(&input),
            "--rule",
            s(rule),
            "--out",
            s(out),
            "--quiet",
        ]);
    }
    let outputs = ["compare", s(&a), s(&b)];
    let code = common::tally(&outputs).status.code().expect("an exit code");
    let json = common::tally(&[&outputs[..], &["--json"]].concat());
    let format = common::tally(&[&outputs[..], &["--format", "json"]].concat());
    assert_eq!(json.status.code(), Some(code));
    assert_eq!(json.stdout, format.stdout);
    report(&[&outputs[..], &["--json"]].concat(), code);

    // --json with another format is a usage error: exit 2, nothing on
    // stdout, nothing compared or written.
    let cmp = dir.path().join("cmp");
    let rules_writing = [&rules[..], &["--out", s(&cmp)]].concat();
    for (args, format) in [
        (&rules_writing, "html"),
        (&rules_writing, "text"),
        (&outputs.to_vec(), "html"),
        (&outputs.to_vec(), "text"),
    ] {
        let mut args = args.clone();
        args.extend(["--json", "--format", format]);
        let out = common::tally(&args);
        let (stdout, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert_eq!(
            stderr,
            format!(
                "error: --json prints the JSON report; it cannot be given with --format {format}\n"
            )
        );
        assert!(!cmp.exists(), "{args:?} wrote {}", cmp.display());
    }
}

#[test]
fn a_failed_publish_leaves_an_existing_registry_as_it_was() {
    let dir = TempDir::new().expect("temp dir");
    let registry = dir.path().join("registry");
    common::tally_ok(&[
        "rule",
        "publish",
        s(&common::rule("creator-pay-v2")),
        "--golden",
        s(&common::root().join("rules/creator-pay-v2/golden.jsonl")),
        "--registry",
        s(&registry),
    ]);
    let before = snapshot(&registry);
    let bad_golden = dir.path().join("bad.jsonl");
    std::fs::write(&bad_golden, "{ not a case\n").expect("write");
    let printed = report(
        &[
            "rule",
            "publish",
            s(&common::rule("creator-pay-v1")),
            "--golden",
            s(&bad_golden),
            "--registry",
            s(&registry),
            "--json",
        ],
        1,
    );
    assert_eq!(printed["status"], "failed");
    assert!(
        printed["error"]
            .as_str()
            .is_some_and(|e| e.contains(s(&bad_golden))),
        "{printed}"
    );
    assert!(
        snapshot(&registry) == before,
        "a failed publish changed the registry"
    );
}
