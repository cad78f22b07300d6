//! What a run refuses to read, and what it reads only so far: an input that is
//! (or overlaps) the output directory, inputs that are not regular files (a
//! FIFO, a link to a device), JSON lines over the length limit, and Parquet
//! pages whose checksum does not match.

use crate::common::{self, assert_mentions, s, snapshot};
use crate::output;
use crate::support::{self, count};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// One valid event on 2026-05-01.
fn event(id: &str) -> String {
    format!(
        r#"{{"event_id":"{id}","occurred_at":"2026-05-01T10:00:00Z","ingested_at":"2026-05-01T10:00:01Z","creator_id":"cr-1","template_id":"tpl-1","content_kind":"template","action":"use","user_tier":"pro","country":"US"}}"#
    )
}

/// Runs `tally` with `args`; fails the test if it has not ended within a
/// minute (an input that blocks would otherwise hang it forever).
fn tally_within_a_minute(args: &[&str]) -> Output {
    let mut child = Command::new(common::tally_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tally starts");
    let started = Instant::now();
    while child.try_wait().expect("wait for tally").is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().expect("kill tally");
            child.wait().expect("reap tally");
            panic!("tally {args:?} still running after a minute: it blocked on its input");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("tally output")
}

/// `tally run` that must fail (exit 1, an `error:` line, no panic) within a
/// minute; returns stderr.
fn run_refused(inputs: &[&Path], out: &Path) -> String {
    let mut args = vec!["run"];
    for input in inputs {
        args.extend(["--input", s(input)]);
    }
    let rule = common::rule("creator-pay-v1");
    args.extend(["--rule", s(&rule), "--out", s(out), "--quiet"]);
    let output = tally_within_a_minute(&args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(1),
        "tally {args:?} should fail:\nstderr: {stderr}"
    );
    assert!(
        stderr.starts_with("error: ") && !stderr.contains("panicked"),
        "tally {args:?}: unexpected stderr: {stderr}"
    );
    stderr
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success(), "mkfifo {}", path.display());
}

// ---------------------------------------------------------------------------
// The input and the output apart
// ---------------------------------------------------------------------------

#[test]
fn an_input_that_is_contains_or_lies_inside_the_output_is_refused() {
    let dir = TempDir::new().expect("temp dir");
    let root = dir.path();
    let events = root.join("events");
    std::fs::create_dir(&events).expect("mkdir");
    common::small_jsonl(&events, 10);
    let out = root.join("out");
    let rule = common::rule("creator-pay-v1");
    let report = support::run(&[&events], &rule, &out, &[]);
    assert_eq!(count(&report, "unique"), 10);
    let published = snapshot(&out);

    // The output itself, as given and through a symbolic link.
    let link = root.join("link-to-out");
    std::os::unix::fs::symlink(&out, &link).expect("symlink");
    for input in [&out, &link] {
        let stderr = run_refused(&[input], &out);
        assert_mentions(
            &stderr,
            &[s(input), &format!("is the output directory {}", s(&out))],
        );
    }
    // A file or directory inside it.
    let inside = out.join(&published[0].0);
    let stderr = run_refused(&[&events, &inside], &out);
    assert_mentions(&stderr, &[s(&inside), "is inside the output directory"]);
    // A directory that holds it, existing or not yet.
    let stderr = run_refused(&[root], &out);
    assert_mentions(
        &stderr,
        &[s(root), "contains the output directory", s(&out)],
    );
    let new_out = events.join("new-out");
    let stderr = run_refused(&[&events], &new_out);
    assert_mentions(
        &stderr,
        &[s(&events), "contains the output directory", s(&new_out)],
    );
    assert!(!new_out.exists(), "a refused run created its output");
    let dotted = root.join("events/./sub/../new-out");
    run_refused(&[&events], &dotted);

    assert!(
        snapshot(&out) == published,
        "a refused run changed the output"
    );
    // Side by side, they are fine.
    let report = support::run(&[&events], &rule, &root.join("elsewhere"), &[]);
    assert_eq!(count(&report, "unique"), 10);
}

// ---------------------------------------------------------------------------
// Only regular files
// ---------------------------------------------------------------------------

#[test]
fn a_fifo_given_as_input_is_refused_without_blocking() {
    let dir = TempDir::new().expect("temp dir");
    let fifo = dir.path().join("events.jsonl");
    mkfifo(&fifo);
    let stderr = run_refused(&[&fifo], &dir.path().join("out"));
    assert_mentions(&stderr, &[s(&fifo), "FIFO", "not a regular file"]);
}

#[test]
fn a_fifo_inside_an_input_directory_is_refused_without_blocking() {
    let dir = TempDir::new().expect("temp dir");
    let input = dir.path().join("in");
    std::fs::create_dir(&input).expect("mkdir");
    common::small_jsonl(&input, 5);
    let fifo = input.join("more.jsonl.gz");
    mkfifo(&fifo);
    // A FIFO that no input format would read is left alone.
    mkfifo(&input.join("notes"));
    let out = dir.path().join("out");
    let stderr = run_refused(&[&input], &out);
    assert_mentions(&stderr, &[s(&fifo), "FIFO", "not a regular file"]);
    assert!(!out.exists(), "a refused run created its output");
}

#[test]
fn links_to_devices_are_refused_without_reading_them() {
    let dir = TempDir::new().expect("temp dir");
    for (name, device) in [
        ("zero.jsonl", "/dev/zero"),
        ("random.jsonl.gz", "/dev/urandom"),
    ] {
        let link = dir.path().join(name);
        std::os::unix::fs::symlink(device, &link).expect("symlink");
        let stderr = run_refused(&[&link], &dir.path().join("out"));
        assert_mentions(
            &stderr,
            &[
                s(&link),
                &format!("a link to {device}"),
                "character device",
                "not a regular file",
            ],
        );
        // Inside a directory too.
        let input = dir.path().join(format!("in-{name}"));
        std::fs::create_dir(&input).expect("mkdir");
        common::small_jsonl(&input, 5);
        let inner = input.join(name);
        std::os::unix::fs::symlink(device, &inner).expect("symlink");
        let stderr = run_refused(&[&input], &dir.path().join("out"));
        assert_mentions(&stderr, &[s(&inner), "character device"]);
    }
}

// ---------------------------------------------------------------------------
// Line length
// ---------------------------------------------------------------------------

/// A line of `bytes` bytes holding a valid event `id` (an unknown field pads it).
fn long_line(id: &str, bytes: usize) -> String {
    let event = event(id);
    let padding = bytes - event.len() - r#","padding":"""#.len();
    let line = format!(
        "{},\"padding\":\"{}\"}}",
        &event[..event.len() - 1],
        "x".repeat(padding)
    );
    assert_eq!(line.len(), bytes);
    line
}

/// Writes `lines` gzip-compressed, each followed by a line end (`\r\n` for
/// those `crlf` lists), the last one without.
fn write_gz(path: &Path, lines: &[String], crlf: &[usize]) {
    let file = std::fs::File::create(path).expect("create");
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    for (i, line) in lines.iter().enumerate() {
        gz.write_all(line.as_bytes()).expect("write");
        if i + 1 < lines.len() {
            gz.write_all(if crlf.contains(&i) { b"\r\n" } else { b"\n" })
                .expect("write");
        }
    }
    gz.finish().expect("finish gzip");
}

#[test]
fn lines_over_the_limit_are_quarantined_and_the_rest_is_read() {
    let dir = TempDir::new().expect("temp dir");
    let limit = 64 << 10;
    // Lines 4 and 7 are over the limit: one longer than a read block, one
    // inside a block; line 9 is exactly the limit (with `\r\n`) and line 11,
    // the last, is over it without a line end.
    let lines = vec![
        event("a-1"),
        event("a-2"),
        event("a-3"),
        long_line("long-1", 5 << 20),
        event("b-1"),
        event("b-2"),
        long_line("long-2", limit + 1),
        event("c-1"),
        long_line("exact", limit),
        event("c-2"),
        long_line("long-3", 3 * limit),
    ];
    let input = dir.path().join("events.jsonl.gz");
    write_gz(&input, &lines, &[8]);
    let rule = common::rule("creator-pay-v1");
    let out = dir.path().join("out");
    let max = limit.to_string();
    let report = support::run(&[&input], &rule, &out, &["--max-line-bytes", &max]);
    assert_eq!(count(&report, "records"), 11);
    assert_eq!(count(&report, "quarantined"), 3);
    assert_eq!(count(&report, "unique"), 8);
    assert_eq!(
        report["counts"]["quarantined_by_reason"],
        serde_json::json!({ "line-too-long": 3 })
    );
    let quarantine = output::quarantine(&out);
    let got: Vec<(u64, &str)> = quarantine
        .iter()
        .map(|q| {
            (
                q["line"].as_u64().expect("line"),
                q["reason"].as_str().expect("reason"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (4, "line-too-long"),
            (7, "line-too-long"),
            (11, "line-too-long")
        ]
    );
    for (q, id) in quarantine.iter().zip(["long-1", "long-2", "long-3"]) {
        assert_eq!(q["file"], s(&input));
        let raw = q["raw"].as_str().expect("raw");
        assert!(raw.len() <= 4096, "raw of {} bytes", raw.len());
        assert!(
            raw.starts_with(&format!(r#"{{"event_id":"{id}""#)),
            "raw is not the line's beginning: {}",
            &raw[..80]
        );
    }

    // Explain finds a quarantined long line by the id at its start.
    let explained = common::tally_ok(&[
        "explain",
        "--input",
        s(&input),
        "--event",
        "long-1",
        "--max-line-bytes",
        &max,
        "--json",
    ]);
    let explained: serde_json::Value = serde_json::from_str(&explained).expect("JSON");
    let records = explained["records"].as_array().expect("records");
    assert_eq!(records.len(), 1, "{explained}");
    assert_eq!(records[0]["status"], "quarantined");
    assert_eq!(records[0]["note"], "line-too-long");
    assert_eq!(records[0]["position"], 4);

    // Compare reads alike.
    let compared = common::tally_ok(&[
        "compare",
        "--input",
        s(&input),
        "--rule",
        s(&rule),
        "--rule",
        s(&common::rule("creator-pay-v2")),
        "--max-line-bytes",
        &max,
        "--format",
        "json",
        "--quiet",
    ]);
    assert!(compared.trim_start().starts_with('{'), "{compared}");

    // With the limit raised, every line is read.
    let raised = dir.path().join("out-raised");
    let report = support::run(
        &[&input],
        &rule,
        &raised,
        &["--max-line-bytes", &(8 << 20).to_string()],
    );
    assert_eq!(count(&report, "quarantined"), 0);
    assert_eq!(count(&report, "unique"), 11);

    // Verify reads the inputs with the limit each run recorded: both outputs
    // (one below the default limit, one above it) recompute identically.
    let registry = dir.path().join("registry");
    common::tally_ok(&["rule", "publish", s(&rule), "--registry", s(&registry)]);
    for out in [&out, &raised] {
        let verified = common::tally_ok(&["verify", s(out), "--registry", s(&registry), "--json"]);
        let verified: serde_json::Value = serde_json::from_str(&verified).expect("JSON");
        let partitions = verified["partitions"].as_array().expect("partitions");
        assert!(!partitions.is_empty());
        for p in partitions {
            assert_eq!(p["identical"], true, "{}: {p}", out.display());
        }
    }
    let entry: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(raised.join("_tally/log/00000001.json")).expect("log entry"),
    )
    .expect("JSON");
    assert_eq!(entry["max_line_bytes"], 8 << 20);
}

#[test]
fn a_huge_line_is_skipped_without_being_held_in_memory() {
    // A gzip file of a few hundred kilobytes holding one line of 512 MiB,
    // between valid events, read with the default limit (1 MiB).
    let dir = TempDir::new().expect("temp dir");
    let input = dir.path().join("huge.jsonl.gz");
    let file = std::fs::File::create(&input).expect("create");
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    writeln!(gz, "{}", event("before")).expect("write");
    write!(gz, r#"{{"event_id":"huge","padding":""#).expect("write");
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..512 {
        gz.write_all(&chunk).expect("write");
    }
    writeln!(gz, "\"}}").expect("write");
    writeln!(gz, "{}", event("after")).expect("write");
    gz.finish().expect("finish gzip");

    let out = dir.path().join("out");
    let report = support::run(&[&input], &common::rule("creator-pay-v1"), &out, &[]);
    assert_eq!(count(&report, "records"), 3);
    assert_eq!(count(&report, "unique"), 2);
    let quarantine = output::quarantine(&out);
    assert_eq!(quarantine.len(), 1);
    assert_eq!(quarantine[0]["line"], 2);
    assert_eq!(quarantine[0]["reason"], "line-too-long");
    let peak = report["peak_memory_bytes"].as_u64().expect("peak memory");
    assert!(
        peak < 256 << 20,
        "a 512 MiB line took the run to a peak of {} MiB",
        peak >> 20
    );
}

// ---------------------------------------------------------------------------
// Parquet page checksums
// ---------------------------------------------------------------------------

/// The fixture: three valid events in pages with CRC-32 checksums; the
/// creator id `cr-flipme` appears once in the file, in a data page.
fn checksummed() -> PathBuf {
    common::fixture("parquet/page-checksums.parquet")
}

#[test]
fn parquet_page_checksums_are_verified() {
    let dir = TempDir::new().expect("temp dir");
    let rule = common::rule("creator-pay-v1");
    let report = support::run(&[&checksummed()], &rule, &dir.path().join("out"), &[]);
    assert_eq!(count(&report, "unique"), 3);

    // One byte of a value flipped: `cr-flipme` would read as `cr-glipme`.
    let mut bytes = std::fs::read(checksummed()).expect("fixture");
    let at = bytes
        .windows(9)
        .position(|w| w == b"cr-flipme")
        .expect("the marker value");
    bytes[at + 3] ^= 0x01;
    let flipped = dir.path().join("flipped.parquet");
    std::fs::write(&flipped, &bytes).expect("write");
    let out = dir.path().join("out-flipped");
    let stderr = run_refused(&[&flipped], &out);
    assert_mentions(&stderr, &[s(&flipped), "checksum"]);
    assert!(!out.exists(), "a failed run created its output");
}
