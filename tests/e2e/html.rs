//! The HTML report of `tally compare` in a real browser: it is one
//! self-contained file (nothing fetched), and headless Chromium (Debian's
//! `chromium` package, installed by `make browser`) renders it without a
//! console error, with the totals, the chart and the top movers on the page.

use crate::common::{self, s};
use crate::compare::{self as cmp, exact_number, money, signed_money, thousands};
use crate::support;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long one browser run may take.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

/// The `chromium` on PATH. Missing, the test fails: the HTML report must be
/// checked in a real browser, not skipped.
fn chromium() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("chromium"))
                .find(|path| path.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "chromium is not installed: run `make browser` (it installs Debian's \
                 chromium package; `make test` does it first) to check the HTML report \
                 in a headless browser"
            )
        })
}

/// What a headless browser run printed.
struct Browsed {
    stdout: String,
    stderr: String,
}

impl Browsed {
    /// The lines of the log that report a page error or a console message
    /// (the report has no script, so it should cause none).
    fn page_errors(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
            .collect()
    }
}

/// Runs headless Chromium on `page` with a fresh profile and `extra`
/// arguments, logging to stderr; fails if it does not finish in time.
fn browse(page: &Path, extra: &[String]) -> Browsed {
    let work = TempDir::new().expect("temp dir");
    let profile = work.path().join("profile");
    let (stdout_path, stderr_path) = (work.path().join("stdout"), work.path().join("stderr"));
    let file = |p: &Path| std::fs::File::create(p).expect("log file");
    let url = format!(
        "file://{}",
        page.canonicalize().expect("page path").display()
    );
    let mut command = Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // Should the page try to fetch anything, no name resolves.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(file(&stdout_path))
        .stderr(file(&stderr_path));
    let mut child = command.spawn().expect("chromium starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for chromium") {
            break status;
        }
        if started.elapsed() > BROWSER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish on {url} within {BROWSER_TIMEOUT:?}; its log:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).expect("log")).into_owned();
    let browsed = Browsed {
        stdout: read(&stdout_path),
        stderr: read(&stderr_path),
    };
    assert!(
        status.success(),
        "chromium failed on {url}: {status}\n{}",
        browsed.stderr
    );
    browsed
}

/// The page as the browser built it.
fn dump_dom(page: &Path) -> Browsed {
    let browsed = browse(page, &["--dump-dom".to_string()]);
    assert!(
        browsed.stdout.contains("<body"),
        "no DOM dumped for {}:\n{}",
        page.display(),
        browsed.stderr
    );
    browsed
}

/// A 1200×1600 screenshot of `page`; returns the PNG bytes.
fn screenshot(page: &Path, png: &Path) -> Vec<u8> {
    browse(
        page,
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1200,1600".to_string(),
            "--hide-scrollbars".to_string(),
        ],
    );
    let bytes = std::fs::read(png).expect("the screenshot was written");
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 24,
        "not a PNG"
    );
    let be32 = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    assert_eq!(&bytes[12..16], b"IHDR");
    assert_eq!((be32(16), be32(20)), (1200, 1600), "screenshot size");
    bytes
}

/// The text of the element with `id` in serialized HTML (up to its first child).
fn element_text(dom: &str, id: &str) -> String {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element with id {id} in the page"));
    let open = at + dom[at..].find('>').expect("end of the tag") + 1;
    let close = open + dom[open..].find('<').expect("text ends");
    dom[open..close].trim().to_string()
}

/// Asserts the page fetches nothing: no URL with a scheme, no external
/// resource of any kind.
fn assert_self_contained(html: &str) {
    let lower = html.to_ascii_lowercase();
    for fetch in [
        "http://", "https://", "src=", "<link", "@import", "url(", "<iframe", "<object", "<embed",
        "srcset",
    ] {
        assert!(
            !lower.contains(fetch),
            "the report refers to something outside it ({fetch:?})"
        );
    }
    for (at, _) in lower.match_indices("href=") {
        let value = lower[at + 5..].trim_start_matches(['"', '\'']);
        assert!(
            value.starts_with('#'),
            "a link out of the page: {}",
            &html[at..at + 40]
        );
    }
}

/// Makes the report of `a` against `b` on `input`: the HTML printed with
/// `--format html`, the JSON and the report directory.
fn report(input: &Path, a: &Path, b: &Path, out: &Path) -> (String, String, Value) {
    let args = [
        "--input",
        s(input),
        "--rule",
        s(a),
        "--rule",
        s(b),
        "--top",
        "5",
        "--sample",
        "10",
        "--quiet",
    ];
    let mut html_args = args.to_vec();
    html_args.extend(["--format", "html", "--out", s(out)]);
    let printed = cmp::compare(&html_args, &[]);
    assert_eq!(
        printed.status.code(),
        Some(0),
        "{}",
        cmp::describe(&html_args, &printed)
    );
    let html = String::from_utf8(printed.stdout).expect("utf-8 HTML");
    let (text, json) = cmp::compare_json(&args[..args.len() - 1], &[]);
    // report.html is the page printed.
    let saved = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    assert_eq!(saved, html, "report.html and --format html differ");
    (html, text, json)
}

/// Checks the rendered DOM shows the comparison's totals, chart and movers.
fn assert_shows(dom: &str, text: &str, c: &Value) {
    let amount = |side: &str| c[side]["amount_micros"].as_i64().expect("amount");
    let (a, b) = (amount("totals_a"), amount("totals_b"));
    assert_eq!(element_text(dom, "amount-a"), money(a));
    assert_eq!(element_text(dom, "amount-b"), money(b));
    // The change: the amount, then the relative change in per cent with two
    // decimals.
    let change = element_text(dom, "amount-change");
    let prefix = format!("{} (", signed_money(b - a));
    let percent = change
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix("%)"))
        .unwrap_or_else(|| panic!("amount-change {change:?} is not \"{prefix}…%)\""));
    let percent: f64 = percent
        .trim_start_matches('+')
        .parse()
        .unwrap_or_else(|_| panic!("no per cent in {change:?}"));
    let want = if a == 0 {
        0.0
    } else {
        (b - a) as f64 / a as f64 * 100.0
    };
    assert!(
        (percent - want).abs() <= 0.005 + 1e-9,
        "amount-change {change:?}: want {want:.4}%"
    );
    assert_eq!(
        exact_number(text, "amount_relative_change") * 100.0,
        want,
        "the JSON's relative change"
    );

    // The totals table: unique and payable events under A and B.
    let totals = &dom[dom.find("id=\"totals\"").expect("the totals table")..];
    let totals = &totals[..totals.find("</table>").expect("end of the table")];
    for side in ["totals_a", "totals_b"] {
        for field in ["unique", "payable"] {
            let n = thousands(c[side][field].as_u64().expect("count"));
            assert!(
                totals.contains(&format!(">{n}<")),
                "{side}.{field} {n} not in the totals table"
            );
        }
    }

    // The chart of money moved per day: one bar per day of the report.
    let svg_at = dom.find("<svg").expect("an <svg> chart");
    let svg = &dom[svg_at..svg_at + dom[svg_at..].find("</svg>").expect("end of the chart")];
    let days = c["days"].as_array().expect("days");
    assert!(!days.is_empty());
    assert_eq!(
        svg.matches("<rect").count(),
        days.len(),
        "bars in the chart"
    );
    for day in [&days[0], &days[days.len() - 1]] {
        assert!(
            svg.contains(day["key"].as_str().expect("day")),
            "{day} not in the chart"
        );
    }

    // The top movers each way are on the page.
    for list in [
        "top_creators_gaining",
        "top_creators_losing",
        "top_templates_gaining",
        "top_templates_losing",
    ] {
        for mover in c[list].as_array().expect("movers") {
            let key = mover["key"].as_str().expect("key");
            assert!(
                dom.contains(&format!(">{key}<")),
                "{list}: {key} not on the page"
            );
        }
    }
}

#[test]
fn html_report_renders_in_headless_chromium_with_the_totals() {
    let started = Instant::now();
    chromium();
    let dir = TempDir::new().expect("temp dir");
    let (input, _) = support::generate(dir.path(), "events", 20_000, 4242, "jsonl", 20_000);
    let (v1, v2) = (
        common::rule("creator-pay-v1"),
        common::rule("creator-pay-v2"),
    );

    // v1 against v2, and a rule against itself (an empty diff).
    for (name, a, b) in [("v1-v2", &v1, &v2), ("v1-v1", &v1, &v1)] {
        let out = dir.path().join(name);
        let (html, text, c) = report(&input, a, b, &out);
        assert!(
            html.trim_start()
                .to_ascii_lowercase()
                .starts_with("<!doctype html>")
        );
        assert_self_contained(&html);

        let page = out.join("report.html");
        let browsed = dump_dom(&page);
        assert_eq!(
            browsed.page_errors(),
            Vec::<&str>::new(),
            "{name}: page errors"
        );
        assert_shows(&browsed.stdout, &text, &c);
        if name == "v1-v1" {
            assert_eq!(
                element_text(&browsed.stdout, "amount-change"),
                "0.000000 (+0.00%)"
            );
            for list in ["top_creators_gaining", "top_templates_losing"] {
                assert_eq!(c[list], serde_json::json!([]));
            }
        } else {
            assert!(
                c["top_creators_gaining"]
                    .as_array()
                    .is_some_and(|l| !l.is_empty())
            );
            assert!(
                c["top_creators_losing"]
                    .as_array()
                    .is_some_and(|l| !l.is_empty())
            );
        }
    }

    // A screenshot of the report holds far more than one of an empty page.
    let blank = dir.path().join("blank.html");
    std::fs::write(&blank, "<!doctype html><html><body></body></html>\n").expect("write");
    let empty = screenshot(&blank, &dir.path().join("blank.png"));
    let shot = screenshot(
        &dir.path().join("v1-v2/report.html"),
        &dir.path().join("report.png"),
    );
    assert!(
        shot.len() > 3 * empty.len(),
        "the report's screenshot ({} bytes) is hardly more than an empty page's ({} bytes)",
        shot.len(),
        empty.len()
    );
    eprintln!("html report in chromium: {:?}", started.elapsed());
}

#[test]
fn page_errors_are_caught() {
    // The check of the browser's log is not blind: a page that throws and
    // logs an error is caught by it.
    chromium();
    let dir = TempDir::new().expect("temp dir");
    let page = dir.path().join("broken.html");
    std::fs::write(
        &page,
        "<!doctype html><html><body><p id=x>x</p><script>console.error('logged');\
         throw new Error('thrown')</script></body></html>\n",
    )
    .expect("write");
    let browsed = dump_dom(&page);
    let errors = browsed.page_errors();
    assert!(
        errors
            .iter()
            .any(|l| l.contains("Uncaught") && l.contains("thrown")),
        "the thrown error was not seen: {errors:?}\n{}",
        browsed.stderr
    );
    assert!(errors.iter().any(|l| l.contains("logged")), "{errors:?}");
    assert_eq!(element_text(&browsed.stdout, "x"), "x");
}
