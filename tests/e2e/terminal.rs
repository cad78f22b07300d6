//! Progress on a real terminal: `tally run`, `tally gen`, `tally status`,
//! `tally verify`, `tally explain` and the tasks (`plan`, `map`, `reduce`,
//! `commit`) with stderr attached to a pseudo-terminal, what the terminal
//! received read back.
//!
//! A progress line appears while a stage works; its figures read as a person
//! writes them (rates with at most one decimal, an ETA only towards a known
//! total); and when the command ends nothing of the lines is left on the
//! screen (no stale `0 records` line). With `--quiet`, or when stderr is not a
//! terminal, nothing of them is written at all.

use crate::common::{self, s};
use crate::support;
use rustix::pty::{OpenptFlags, grantpt, ioctl_tiocgptpeer, openpt, unlockpt};
use rustix::termios::{Winsize, tcsetwinsize};
use std::io::Read;
use std::process::{Command, Stdio};
use tempfile::TempDir;

const ROWS: u16 = 40;
const COLS: u16 = 120;

/// What a command wrote to the terminal on its stderr, and how it ended.
struct OnTerminal {
    /// Every byte the terminal received.
    bytes: Vec<u8>,
    stdout: String,
    success: bool,
}

impl OnTerminal {
    /// The lines drawn, one for each time a line was written: the text
    /// between carriage returns and newlines, without escape sequences.
    fn drawn(&self) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.bytes);
        let mut plain = String::new();
        let mut chars = text.chars().peekable();
        while let Some(ch) = chars.next() {
            if ch == '\x1b' {
                // CSI: ESC [ parameters final byte (0x40..=0x7e); others:
                // ESC and one byte.
                if chars.next_if_eq(&'[').is_some() {
                    for c in chars.by_ref() {
                        if ('\x40'..='\x7e').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            } else {
                plain.push(ch);
            }
        }
        plain
            .split(['\r', '\n'])
            .map(|line| line.trim().to_string())
            .filter(|line| !line.is_empty())
            .collect()
    }

    /// The screen as the terminal shows it once the command has ended.
    fn screen(&self) -> String {
        let size = |n: u16| std::num::NonZeroU16::new(n).expect("a terminal has rows and columns");
        let mut parser = vt100::Parser::new(size(ROWS), size(COLS), 0);
        parser.process(&self.bytes);
        parser.screen().contents()
    }

    fn describe(&self) -> String {
        format!(
            "the terminal received {} bytes: {:?}\nstdout: {}",
            self.bytes.len(),
            String::from_utf8_lossy(&self.bytes),
            self.stdout
        )
    }
}

/// Runs `tally <args>` with stderr on a fresh pseudo-terminal of ROWS × COLS
/// (stdin empty, stdout a pipe) and returns what the terminal received.
fn on_terminal(args: &[&str]) -> OnTerminal {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("a pseudo-terminal");
    grantpt(&master).expect("grantpt");
    unlockpt(&master).expect("unlockpt");
    tcsetwinsize(
        &master,
        Winsize {
            ws_row: ROWS,
            ws_col: COLS,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .expect("terminal size");
    let terminal = ioctl_tiocgptpeer(&master, OpenptFlags::RDWR | OpenptFlags::NOCTTY)
        .expect("the terminal side of the pseudo-terminal");
    let mut command = Command::new(common::tally_bin());
    command
        .args(args)
        .env("TERM", "xterm-256color")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(terminal));
    let child = command.spawn().expect("tally runs");
    // The command holds the terminal side open until it is dropped: the
    // reader below sees the end only once no process has it open.
    drop(command);
    let mut master = std::fs::File::from(master);
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match master.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // EIO: every process closed the terminal side.
                Err(_) => break,
            }
        }
        bytes
    });
    let output = child.wait_with_output().expect("tally ends");
    let bytes = reader.join().expect("the reader ends");
    OnTerminal {
        bytes,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        success: output.status.success(),
    }
}

/// A rate as drawn: a number with at most one decimal, an optional metric
/// prefix, then the unit per second, e.g. `1.9M records/s`, `950 records/s`.
fn is_rate(number: &str, unit: &str) -> bool {
    let figure = number.trim_end_matches(['k', 'M', 'G']);
    let (whole, decimals) = figure.split_once('.').unwrap_or((figure, ""));
    !whole.is_empty()
        && whole.chars().all(|c| c.is_ascii_digit())
        && decimals.len() <= 1
        && decimals.chars().all(|c| c.is_ascii_digit())
        && matches!(unit, "records/s" | "shards/s" | "files/s")
}

/// Every rate in the drawn lines, as `(number, unit)`.
fn rates(lines: &[String]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        for (i, word) in words.iter().enumerate() {
            if word.ends_with("/s") && i > 0 {
                found.push((words[i - 1].to_string(), word.to_string()));
            }
        }
    }
    found
}

/// A duration as drawn: `0.4 s`, `12 s`, `3 min 05 s`, `1 h 02 min`.
fn is_duration(text: &str) -> bool {
    let words: Vec<&str> = text.split_whitespace().collect();
    let number = |w: &str| {
        let (whole, decimals) = w.split_once('.').unwrap_or((w, ""));
        !whole.is_empty()
            && whole.chars().all(|c| c.is_ascii_digit())
            && decimals.len() <= 1
            && decimals.chars().all(|c| c.is_ascii_digit())
    };
    match words.as_slice() {
        [n, "s"] => number(n),
        [m, "min", s, "s"] | [m, "h", s, "min"] => number(m) && number(s),
        _ => false,
    }
}

/// What follows `ETA ` in a line, up to the end of the line.
fn eta(line: &str) -> Option<&str> {
    line.split_once("ETA ").map(|(_, rest)| rest.trim())
}

/// Lines drawn that belong to none of `stages` (each a line's beginning).
fn of_no_stage(lines: &[String], stages: &[&str]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| !stages.iter().any(|stage| l.starts_with(stage)))
        .cloned()
        .collect()
}

#[test]
fn progress_lines_on_a_terminal_read_well_and_leave_nothing_behind() {
    let dir = TempDir::new().expect("temp dir");
    // Enough records for the stages to be drawn while they work, small
    // enough to stay quick.
    let (input, planted) = support::generate(dir.path(), "events", 400_000, 7, "jsonl", 100_000);
    let rule = common::rule("creator-pay-v1");
    let out = dir.path().join("out");
    // One thread and small batches: the stages last long enough for a few
    // redraws, and the classify bar moves in small steps.
    let args = [
        "run",
        "--input",
        s(&input),
        "--rule",
        s(&rule),
        "--out",
        s(&out),
        "--threads",
        "1",
        "--batch-size",
        "4096",
    ];
    let run = on_terminal(&args);
    assert!(run.success, "{}", run.describe());
    assert!(
        run.stdout.contains(&support_thousands(planted.records)),
        "the report is on stdout: {}",
        run.stdout
    );

    // A progress line appeared for ingest (a counter: no total, no ETA) and
    // for classify (a bar towards the unique events).
    let lines = run.drawn();
    let ingest: Vec<&String> = lines.iter().filter(|l| l.starts_with("ingest ")).collect();
    let classify: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("classify "))
        .collect();
    assert!(!ingest.is_empty(), "no ingest line: {}", run.describe());
    assert!(!classify.is_empty(), "no classify line: {}", run.describe());
    assert!(
        ingest
            .iter()
            .all(|l| l.contains(" records") && eta(l).is_none()),
        "an ingest line without a count, or with an ETA: {ingest:?}"
    );
    let unique = format!("/{}", support_thousands(planted.unique));
    assert!(
        classify
            .iter()
            .all(|l| l.contains('[') && l.contains(&unique)),
        "a classify line without its bar towards {unique}: {classify:?}"
    );

    // Rates have at most one decimal, and some were drawn.
    let run_rates = rates(&lines);
    assert!(!run_rates.is_empty(), "no rate was drawn: {lines:?}");
    for (number, unit) in &run_rates {
        assert!(is_rate(number, unit), "rate {number} {unit} in {lines:?}");
    }
    // An ETA, where there is one, is a duration; the classify bar, which
    // knows its total, shows one once it has a rate.
    for line in &lines {
        if let Some(left) = eta(line) {
            assert!(is_duration(left), "ETA {left:?} in {line:?}");
        }
    }
    let with_rate: Vec<&&String> = classify.iter().filter(|l| l.contains("/s")).collect();
    if with_rate.len() > 1 {
        assert!(
            with_rate.iter().any(|l| eta(l).is_some()),
            "no ETA on the classify bar: {with_rate:?}"
        );
    }

    // Nothing of the lines stays on the screen: no stale `0 records`, no
    // bar, no spinner.
    let screen = run.screen();
    assert!(
        !screen.contains("0 records"),
        "a stale line on the screen:\n{screen}"
    );
    assert!(
        screen.trim().is_empty(),
        "the progress lines were not cleared; the screen shows:\n{screen}\n{}",
        run.describe()
    );

    // `tally gen` draws a bar towards the records asked for, with an ETA
    // once it has a rate, and clears it too.
    let gen_out = dir.path().join("gen");
    let generated = on_terminal(&[
        "gen",
        "--events",
        "1000000",
        "--seed",
        "3",
        "--out",
        s(&gen_out),
    ]);
    assert!(generated.success, "{}", generated.describe());
    let lines = generated.drawn();
    let bars: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("generate ["))
        .collect();
    assert!(
        !bars.is_empty(),
        "no generate bar: {}",
        generated.describe()
    );
    assert!(bars.iter().all(|l| l.contains("/1,000,000")), "{bars:?}");
    for (number, unit) in rates(&lines) {
        assert!(is_rate(&number, &unit), "rate {number} {unit} in {lines:?}");
    }
    let etas: Vec<&str> = bars.iter().filter_map(|l| eta(l)).collect();
    for left in &etas {
        assert!(is_duration(left), "ETA {left:?} in {bars:?}");
    }
    assert!(
        generated.screen().trim().is_empty(),
        "the generate bar was not cleared:\n{}",
        generated.screen()
    );
    eprintln!(
        "run: {} lines drawn, {} rates; gen: {} bars, ETAs {etas:?}",
        run.drawn().len(),
        run_rates.len(),
        bars.len()
    );
}

#[test]
fn quiet_or_not_a_terminal_writes_nothing_of_the_lines() {
    let dir = TempDir::new().expect("temp dir");
    let (input, _) = support::generate(dir.path(), "events", 50_000, 11, "jsonl", 25_000);
    let rule = common::rule("creator-pay-v1");

    // --quiet on a terminal: the terminal receives nothing at all.
    let out = dir.path().join("quiet");
    let quiet = on_terminal(&[
        "run",
        "--input",
        s(&input),
        "--rule",
        s(&rule),
        "--out",
        s(&out),
        "--quiet",
    ]);
    assert!(quiet.success, "{}", quiet.describe());
    assert!(quiet.bytes.is_empty(), "{}", quiet.describe());
    let gen_quiet = on_terminal(&[
        "gen",
        "--events",
        "20000",
        "--out",
        s(&dir.path().join("gen-quiet")),
        "--quiet",
    ]);
    assert!(gen_quiet.success, "{}", gen_quiet.describe());
    assert!(gen_quiet.bytes.is_empty(), "{}", gen_quiet.describe());

    // stderr a pipe, not a terminal: nothing on it either (and no escape
    // sequence on stdout).
    let out = dir.path().join("piped");
    let output = common::tally(&[
        "run",
        "--input",
        s(&input),
        "--rule",
        s(&rule),
        "--out",
        s(&out),
    ]);
    assert!(output.status.success());
    assert!(
        output.stderr.is_empty(),
        "stderr: {:?}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !output.stdout.contains(&0x1b),
        "an escape sequence on stdout"
    );
}

#[test]
fn status_shows_its_stages_on_a_terminal_and_clears_them() {
    let dir = TempDir::new().expect("temp dir");
    let (input, _) = support::generate(dir.path(), "events", 200_000, 5, "jsonl", 50_000);
    let rule = common::rule("creator-pay-v1");
    let out = dir.path().join("out");
    support::run(&[&input], &rule, &out, &[]);
    // A recorded file changes: status hashes it, reads its records and the
    // whole survivor index.
    let (_, changed) = support::files_in(&input).remove(0);
    let mut text = std::fs::read(&changed).unwrap();
    let cut = text[..text.len() / 2]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    text.truncate(cut);
    std::fs::write(&changed, text).unwrap();
    let args = [
        "status",
        "--out",
        s(&out),
        "--input",
        s(&input),
        "--rule",
        s(&rule),
    ];
    let status = on_terminal(&args);
    assert!(status.stdout.contains("STALE"), "{}", status.describe());
    let lines = status.drawn();
    let records: u64 = {
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.join("_tally/survivors/manifest.json")).unwrap(),
        )
        .unwrap();
        manifest["records"].as_u64().unwrap()
    };
    let total = format!("/{}", support_thousands(records));
    // The index bar, the stage with the most work, is drawn; a stage that
    // ends before its first tick (checking the inputs, a few milliseconds
    // here) may not be, but every line drawn is one of the stages.
    assert!(
        lines.iter().any(|l| l.starts_with("index [")),
        "no index bar: {}",
        status.describe()
    );
    let stages = ["check inputs ", "ingest ", "index [", "look up ", "ties "];
    assert_eq!(
        of_no_stage(&lines, &stages),
        Vec::<String>::new(),
        "a line of no stage: {lines:?}"
    );
    assert!(
        lines
            .iter()
            .filter(|l| l.starts_with("index ["))
            .all(|l| l.contains(&total)),
        "an index bar not towards {total}: {lines:?}"
    );
    assert!(
        status.screen().trim().is_empty(),
        "the progress lines were not cleared:\n{}",
        status.screen()
    );
    let quiet = on_terminal(&[&args[..], &["--quiet"]].concat());
    assert!(quiet.stdout.contains("STALE"), "{}", quiet.describe());
    assert!(quiet.bytes.is_empty(), "{}", quiet.describe());
}

/// `1234567` as `1,234,567`.
fn support_thousands(n: u64) -> String {
    crate::compare::thousands(n)
}

#[test]
fn tasks_show_their_progress_on_a_terminal_and_clear_it() {
    let dir = TempDir::new().expect("temp dir");
    let (input, _) = support::generate(dir.path(), "events", 400_000, 9, "jsonl", 100_000);
    let rule = common::rule("creator-pay-v1");
    let work = dir.path().join("work");
    // Tiny batches: classify (a sandbox instance a batch) lasts long enough
    // to be drawn. plan: the inputs hashed, a bar over the files.
    let plan = on_terminal(&[
        "plan",
        "--input",
        s(&input),
        "--rule",
        s(&rule),
        "--out",
        s(&dir.path().join("out")),
        "--work",
        s(&work),
        "--shards",
        "2",
        "--batch-size",
        "10",
    ]);
    assert!(plan.success, "{}", plan.describe());
    assert_eq!(
        of_no_stage(&plan.drawn(), &["hash inputs "]),
        Vec::<String>::new()
    );
    assert!(plan.screen().trim().is_empty(), "{}", plan.screen());

    // map: a counter of the records read.
    let map = on_terminal(&["map", "--work", s(&work), "--task", "0"]);
    assert!(map.success, "{}", map.describe());
    let lines = map.drawn();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("map ") && l.contains(" records")),
        "no map line: {}",
        map.describe()
    );
    assert_eq!(of_no_stage(&lines, &["map "]), Vec::<String>::new());
    assert!(map.screen().trim().is_empty(), "{}", map.screen());

    // reduce: its stages, the classify bar among them.
    let reduce = on_terminal(&["reduce", "--work", s(&work), "--shard", "0"]);
    assert!(reduce.success, "{}", reduce.describe());
    assert!(reduce.stdout.contains("reduce 0"), "{}", reduce.describe());
    let lines = reduce.drawn();
    let stages = ["read ", "dedup ", "classify ", "aggregate "];
    assert_eq!(of_no_stage(&lines, &stages), Vec::<String>::new());
    let classify: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("classify "))
        .collect();
    assert!(
        !classify.is_empty(),
        "no classify line: {}",
        reduce.describe()
    );
    assert!(
        classify.iter().all(|l| l.contains('[') && l.contains('/')),
        "a classify line without its bar: {classify:?}"
    );
    for (number, unit) in rates(&lines) {
        assert!(is_rate(&number, &unit), "rate {number} {unit} in {lines:?}");
    }
    assert!(reduce.screen().trim().is_empty(), "{}", reduce.screen());

    // --quiet: the terminal receives nothing.
    let quiet = on_terminal(&["reduce", "--work", s(&work), "--shard", "1", "--quiet"]);
    assert!(quiet.success, "{}", quiet.describe());
    assert!(quiet.bytes.is_empty(), "{}", quiet.describe());

    // commit: the merge bar over the shards, then the commit stage.
    let commit = on_terminal(&["commit", "--work", s(&work)]);
    assert!(commit.success, "{}", commit.describe());
    let lines = commit.drawn();
    assert_eq!(
        of_no_stage(&lines, &["merge ", "commit "]),
        Vec::<String>::new()
    );
    assert!(commit.screen().trim().is_empty(), "{}", commit.screen());
}

#[test]
fn verify_and_explain_show_their_progress_on_a_terminal_and_clear_it() {
    let dir = TempDir::new().expect("temp dir");
    let (input, _) = support::generate(dir.path(), "events", 400_000, 13, "jsonl", 100_000);
    let rule = common::rule("creator-pay-v1");
    let registry = dir.path().join("registry");
    common::tally_ok(&["rule", "publish", s(&rule), "--registry", s(&registry)]);
    let out = dir.path().join("out");
    support::run(&[&input], &rule, &out, &[]);

    // verify: the inputs checked, then the recompute's stages.
    let args = ["verify", s(&out), "--registry", s(&registry)];
    let verify = on_terminal(&args);
    assert!(verify.success, "{}", verify.describe());
    assert!(verify.stdout.contains("identical"), "{}", verify.describe());
    let lines = verify.drawn();
    let stages = [
        "check inputs ",
        "hash inputs ",
        "ingest ",
        "dedup ",
        "classify ",
        "aggregate ",
    ];
    assert_eq!(of_no_stage(&lines, &stages), Vec::<String>::new());
    assert!(
        lines.iter().any(|l| l.starts_with("ingest ")),
        "no ingest line: {}",
        verify.describe()
    );
    for (number, unit) in rates(&lines) {
        assert!(is_rate(&number, &unit), "rate {number} {unit} in {lines:?}");
    }
    assert!(verify.screen().trim().is_empty(), "{}", verify.screen());
    let quiet = on_terminal(&[&args[..], &["--quiet"]].concat());
    assert!(quiet.success, "{}", quiet.describe());
    assert!(quiet.bytes.is_empty(), "{}", quiet.describe());

    // explain: the inputs hashed and read, for one event's records.
    let (_, first) = support::files_in(&input).remove(0);
    // The first record with an id (the generated files hold broken ones too).
    let bytes = std::fs::read(&first).unwrap();
    let event = bytes
        .split(|&b| b == b'\n')
        .find_map(|line| {
            let record: serde_json::Value = serde_json::from_slice(line).ok()?;
            Some(record["event_id"].as_str()?.to_string())
        })
        .expect("a record with an event id");
    let args = [
        "explain",
        "--input",
        s(&input),
        "--rule",
        s(&rule),
        "--event",
        &event,
    ];
    let explain = on_terminal(&args);
    assert!(explain.success, "{}", explain.describe());
    assert!(explain.stdout.contains(&event), "{}", explain.describe());
    let lines = explain.drawn();
    assert_eq!(
        of_no_stage(&lines, &["hash inputs ", "ingest "]),
        Vec::<String>::new()
    );
    assert!(
        lines.iter().any(|l| l.starts_with("ingest ")),
        "no ingest line: {}",
        explain.describe()
    );
    assert!(explain.screen().trim().is_empty(), "{}", explain.screen());
    let quiet = on_terminal(&[&args[..], &["--quiet"]].concat());
    assert!(quiet.success, "{}", quiet.describe());
    assert!(quiet.bytes.is_empty(), "{}", quiet.describe());
}
