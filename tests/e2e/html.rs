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

    assert_charts(dom, c);
    assert_tables(dom, c);

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

// ---------------------------------------------------------------------------
// The charts and tables in the page as the browser built it
// ---------------------------------------------------------------------------

/// The serialized `<svg>` chart with `id`, or `None`.
fn svg<'a>(dom: &'a str, id: &str) -> Option<&'a str> {
    let at = dom.find(&format!("<svg id=\"{id}\""))?;
    let end = dom[at..].find("</svg>").expect("end of the chart");
    Some(&dom[at..at + end])
}

/// The serialized table with `id`.
fn table<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!("<table id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table {id}"));
    let end = dom[at..].find("</table>").expect("end of the table");
    &dom[at..at + end]
}

/// The texts of the `<text class="{class}" …>` elements of a chart, in order.
fn texts<'a>(svg: &'a str, class: &str) -> Vec<&'a str> {
    svg.match_indices(&format!("<text class=\"{class}\""))
        .map(|(at, _)| {
            let open = at + svg[at..].find('>').expect("tag end") + 1;
            let close = open + svg[open..].find("</text>").expect("text end");
            &svg[open..close]
        })
        .collect()
}

/// The value of attribute `name` of the first element starting with `tag`.
fn attribute(svg: &str, tag: &str, name: &str) -> f64 {
    let at = svg.find(tag).unwrap_or_else(|| panic!("no {tag}"));
    let rest = &svg[at..svg[at..].find('>').map_or(svg.len(), |e| at + e)];
    let key = format!(" {name}=\"");
    let from = rest
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {rest}"))
        + key.len();
    rest[from..from + rest[from..].find('"').expect("quote")]
        .parse()
        .expect("a number")
}

/// A value label as a number: `+1,234.56` as 1234.56.
fn number(text: &str) -> f64 {
    text.replace([',', '+'], "")
        .parse()
        .unwrap_or_else(|_| panic!("{text:?} is not a number"))
}

/// The bars of each chart of the report: (chart id, values, money or not),
/// from the JSON.
fn charted(c: &Value) -> Vec<(String, Vec<i64>, bool)> {
    let deltas = |path: &[&str], keep: &dyn Fn(&Value) -> bool| -> Vec<i64> {
        let mut v = c;
        for key in path {
            v = &v[key];
        }
        v.as_array()
            .expect("a list")
            .iter()
            .filter(|x| keep(x))
            .map(|x| x["delta"].as_i64().expect("delta"))
            .collect()
    };
    let all = |_: &Value| true;
    let mut charts = vec![
        (
            "chart-verdict-change".to_string(),
            deltas(&["attribution", "by_verdict_change"], &all),
            true,
        ),
        (
            "chart-transition".to_string(),
            deltas(&["attribution", "by_transition"], &|t| t["delta"] != 0),
            true,
        ),
        (
            "chart-content-kind".to_string(),
            deltas(&["attribution", "by_content_kind"], &all),
            true,
        ),
        (
            "chart-user-tier".to_string(),
            deltas(&["attribution", "by_user_tier"], &all),
            true,
        ),
        (
            "chart-country".to_string(),
            deltas(&["attribution", "by_country"], &all),
            true,
        ),
    ];
    charts.push((
        "chart-histogram".to_string(),
        c["creator_change_histogram"]
            .as_array()
            .expect("histogram")
            .iter()
            .map(|b| b["creators"].as_i64().expect("creators"))
            .collect(),
        false,
    ));
    charts.push(("chart-days".to_string(), deltas(&["days"], &all), true));
    // Without a change that moved money there is no chart of reasons, and
    // without events none of kinds, tiers, countries or days.
    charts.retain(|(id, values, _)| {
        !values.is_empty() || id == "chart-verdict-change" || id == "chart-histogram"
    });
    charts
}

/// Checks every chart is on the page with a bar per figure, each bar's value
/// written beside it, an axis with ticks and its unit, and the zero line
/// where the axis has its zero tick.
fn assert_charts(dom: &str, c: &Value) {
    for (id, values, money) in charted(c) {
        let chart = svg(dom, &id).unwrap_or_else(|| panic!("no chart {id}"));
        assert_eq!(
            chart.matches("<rect class=\"bar ").count(),
            values.len(),
            "{id}: bars"
        );
        let written = texts(chart, "value");
        assert_eq!(written.len(), values.len(), "{id}: value labels");
        for (text, &value) in written.iter().zip(&values) {
            if money {
                // Currency units, to the cent or finer.
                let units = value as f64 / 1e6;
                assert!(
                    (number(text) - units).abs() <= 0.005 + 1e-9,
                    "{id}: {text:?} for {value} micros"
                );
                assert_eq!(text.starts_with('+'), value > 0, "{id}: {text:?}");
            } else {
                assert_eq!(number(text), value as f64, "{id}: {text:?}");
            }
        }
        let axis = texts(chart, "axis-title").join(" ");
        let unit = if money { "currency units" } else { "creators" };
        assert!(axis.contains(unit), "{id}: axis title {axis:?}");
        let ticks = texts(chart, "tick");
        assert!(ticks.len() >= 2, "{id}: ticks {ticks:?}");
        // The zero line is at the tick labelled 0: on the x axis of a chart of
        // rows, on the y axis of one of columns (its label sits 4 px below).
        let zero_tick = ticks
            .iter()
            .position(|t| number(t) == 0.0)
            .unwrap_or_else(|| panic!("{id}: no 0 among the ticks {ticks:?}"));
        let tick_at = chart
            .match_indices("<text class=\"tick\"")
            .nth(zero_tick)
            .expect("the tick")
            .0;
        let rows = chart.contains("<line class=\"zero\" x1=\"") && {
            let x1 = attribute(chart, "<line class=\"zero\"", "x1");
            let x2 = attribute(chart, "<line class=\"zero\"", "x2");
            x1 == x2
        };
        if rows {
            assert_eq!(
                attribute(&chart[tick_at..], "<text", "x"),
                attribute(chart, "<line class=\"zero\"", "x1"),
                "{id}: the zero line is not at the zero tick"
            );
        } else {
            assert_eq!(
                attribute(&chart[tick_at..], "<text", "y") - 4.0,
                attribute(chart, "<line class=\"zero\"", "y1"),
                "{id}: the zero line is not at the zero tick"
            );
        }
    }
    // The days are named under their bars.
    let days = c["days"].as_array().expect("days");
    let chart = svg(dom, "chart-days").expect("the chart of days");
    for day in [&days[0], &days[days.len() - 1]] {
        let key = day["key"].as_str().expect("day");
        assert!(
            texts(chart, "category").contains(&key),
            "{key} not under the chart"
        );
    }
}

/// Checks the tables of the attribution, the creators and the days.
fn assert_tables(dom: &str, c: &Value) {
    let rows = |t: &str| t.matches("<tr").count() - 1;
    let a = &c["attribution"];
    let total = table(dom, "by-verdict-change");
    assert_eq!(rows(total), 6, "five kinds and the total");
    let total_row = &total[total.find("<tr class=\"total\"").expect("the total row")..];
    let delta = c["amount_delta"].as_i64().expect("delta");
    assert!(
        total_row.contains(&format!(">{}<", signed_money(delta))),
        "{total_row}"
    );
    for (id, list) in [
        ("by-transition", &a["by_transition"]),
        ("by-content-kind", &a["by_content_kind"]),
        ("by-user-tier", &a["by_user_tier"]),
        ("by-country", &a["by_country"]),
        ("days", &c["days"]),
        ("histogram", &c["creator_change_histogram"]),
    ] {
        let t = table(dom, id);
        let list = list.as_array().expect("a list");
        assert_eq!(rows(t), list.len(), "{id}: rows");
        for part in list {
            let change = part["delta"].as_i64().expect("delta");
            assert!(
                t.contains(&format!(">{}<", signed_money(change))),
                "{id}: {part}"
            );
        }
    }
    let creators = table(dom, "creators");
    for field in [
        "with_events",
        "gaining",
        "losing",
        "unchanged",
        "paid_only_under_b",
    ] {
        let n = thousands(c["creators"][field].as_u64().expect("a count"));
        assert!(creators.contains(&format!(">{n}<")), "creators.{field} {n}");
    }
}

// ---------------------------------------------------------------------------
// Screenshots
// ---------------------------------------------------------------------------

/// The layout width of every browser run here.
const WIDTH: u32 = 1200;

/// Runs headless Chromium at `WIDTH` × `height` CSS pixels, one device pixel
/// each.
fn browse_at(page: &Path, height: u32, extra: &[String]) -> Browsed {
    let mut args = vec![
        format!("--window-size={WIDTH},{height}"),
        "--force-device-scale-factor=1".to_string(),
        "--hide-scrollbars".to_string(),
    ];
    args.extend_from_slice(extra);
    browse(page, &args)
}

/// A box on the page, in CSS pixels from its top left corner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Area {
    x: u32,
    y: u32,
    width: u32,
    height: u32,
}

/// Where the browser laid out the page: its height, and each chart's box
/// and its zero line's box.
struct Layout {
    height: u32,
    charts: Vec<(String, Area, Area)>,
}

/// Lays `page` out in the browser with a script added (to a copy) that
/// measures the page and its charts after layout.
fn layout(page: &Path, dir: &Path) -> Layout {
    let html = std::fs::read_to_string(page).expect("the page");
    let probe = "<script>(() => {\
        const box = e => { const r = e.getBoundingClientRect(); \
          return [r.left + scrollX, r.top + scrollY, r.width, r.height].map(Math.round).join(' '); };\
        const lines = ['page ' + document.documentElement.scrollHeight];\
        for (const svg of document.querySelectorAll('svg.chart')) \
          lines.push('chart ' + svg.id + ' ' + box(svg) + ' ' + box(svg.querySelector('line.zero')));\
        const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = lines.join(';');\
        document.body.appendChild(pre); })()</script>";
    let probed = dir.join("probed.html");
    std::fs::write(&probed, html.replace("</body>", &format!("{probe}</body>"))).expect("write");
    let dom = browse_at(&probed, 1600, &["--dump-dom".to_string()]).stdout;
    let text = element_text(&dom, "probe");
    let mut layout = Layout {
        height: 0,
        charts: Vec::new(),
    };
    for line in text.split(';') {
        let words: Vec<&str> = line.split_whitespace().collect();
        let n = |i: usize| -> u32 { words[i].parse().unwrap_or_else(|_| panic!("{line}")) };
        match words[0] {
            "page" => layout.height = n(1),
            "chart" => {
                let area = |at: usize| Area {
                    x: n(at),
                    y: n(at + 1),
                    width: n(at + 2),
                    height: n(at + 3),
                };
                layout.charts.push((words[1].to_string(), area(2), area(6)));
            }
            other => panic!("unknown probe line {other}"),
        }
    }
    assert!(layout.height > 1000, "page height {}", layout.height);
    layout
}

/// A decoded screenshot: RGB pixels, row by row.
struct Image {
    width: u32,
    height: u32,
    rgb: Vec<[u8; 3]>,
}

impl Image {
    fn decode(bytes: &[u8]) -> Image {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = decoder.read_info().expect("a PNG header");
        let mut buffer = vec![0; reader.output_buffer_size().expect("a frame size")];
        let frame = reader.next_frame(&mut buffer).expect("a PNG frame");
        let channels = frame.color_type.samples();
        let rgb = buffer[..frame.buffer_size()]
            .chunks_exact(channels)
            .map(|p| match channels {
                1 | 2 => [p[0]; 3],
                _ => [p[0], p[1], p[2]],
            })
            .collect();
        Image {
            width: frame.width,
            height: frame.height,
            rgb,
        }
    }

    fn at(&self, x: u32, y: u32) -> [u8; 3] {
        self.rgb[(y * self.width + x) as usize]
    }

    /// The pixels of `area` (cut to the image).
    fn pixels(&self, area: Area) -> impl Iterator<Item = [u8; 3]> + '_ {
        let (x1, y1) = (
            (area.x + area.width).min(self.width),
            (area.y + area.height).min(self.height),
        );
        (area.y..y1).flat_map(move |y| (area.x..x1).map(move |x| self.at(x, y)))
    }
}

/// The fill of each kind of bar in the report (`up`, `down`, `flat`,
/// `gone`, `new`).
const BAR_FILLS: [(&str, [u8; 3]); 5] = [
    ("up", [0x2e, 0x9e, 0x5b]),
    ("down", [0xd0, 0x48, 0x48]),
    ("flat", [0x9a, 0x9a, 0x9a]),
    ("gone", [0x8b, 0x1a, 0x1a]),
    ("new", [0x17, 0x66, 0x3a]),
];

fn near(p: [u8; 3], q: [u8; 3]) -> bool {
    p.iter().zip(q).all(|(a, b)| a.abs_diff(b) <= 3)
}

/// Takes a screenshot of `page` as tall as the page and checks that the
/// picture is not blank and that every chart drew: its bars in their
/// colours, in proportion to its area, each colour the data call for, and
/// its zero line. Returns what is wrong, if anything.
fn check_screenshot(page: &Path, dir: &Path, c: &Value) -> Vec<String> {
    let layout = layout(page, dir);
    let png = dir.join("page.png");
    browse_at(
        page,
        layout.height,
        &[format!("--screenshot={}", png.display())],
    );
    let image = Image::decode(&std::fs::read(&png).expect("the screenshot"));
    assert_eq!(
        (image.width, image.height),
        (WIDTH, layout.height),
        "screenshot size"
    );
    let mut problems = Vec::new();
    let white = [0xff; 3];
    let inked = image.rgb.iter().filter(|p| !near(**p, white)).count();
    if inked * 100 < image.rgb.len() * 2 {
        problems.push(format!("the page is nearly blank: {inked} inked pixels"));
    }
    let charts = charted(c);
    let laid: Vec<&String> = layout.charts.iter().map(|(id, _, _)| id).collect();
    assert_eq!(
        laid,
        charts.iter().map(|(id, _, _)| id).collect::<Vec<_>>(),
        "the charts laid out"
    );
    for ((id, area, zero), (_, values, money)) in layout.charts.iter().zip(&charts) {
        let mut fills = [0usize; BAR_FILLS.len()];
        let mut all = 0;
        for p in image.pixels(*area) {
            all += 1;
            if let Some(i) = BAR_FILLS.iter().position(|(_, fill)| near(p, *fill)) {
                fills[i] += 1;
            }
        }
        let bars: usize = fills.iter().sum();
        if bars * 100 < all {
            problems.push(format!("{id}: {bars} bar pixels of {all}"));
        }
        // A chart of changes draws gains green and losses red: each colour
        // that a bar of at least a tenth of the largest one calls for.
        if *money {
            let largest = values.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0);
            for (tone, sign) in [("up", 1), ("down", -1)] {
                let wanted = values
                    .iter()
                    .any(|v| v.signum() == sign && v.unsigned_abs() * 10 >= largest);
                let i = BAR_FILLS
                    .iter()
                    .position(|(t, _)| *t == tone)
                    .expect("a tone");
                if wanted && fills[i] < 40 {
                    problems.push(format!("{id}: {} {tone} pixels", fills[i]));
                }
            }
        }
        // The zero line: dark along its length (at each point along it, the
        // darkest pixel across its thickness, which antialiasing may spread
        // over two or three pixels).
        let darkest = |points: &mut dyn Iterator<Item = (u32, u32)>| {
            points
                .filter(|&(x, y)| x < image.width && y < image.height)
                .map(|(x, y)| image.at(x, y))
                .min_by_key(|p| p.iter().map(|&v| u32::from(v)).sum::<u32>())
                .unwrap_or([0xff; 3])
        };
        let line: Vec<[u8; 3]> = if zero.width <= 4 {
            (zero.y..zero.y + zero.height)
                .map(|y| {
                    darkest(&mut (zero.x.saturating_sub(1)..=zero.x + zero.width).map(|x| (x, y)))
                })
                .collect()
        } else {
            (zero.x..zero.x + zero.width)
                .map(|x| {
                    darkest(&mut (zero.y.saturating_sub(1)..=zero.y + zero.height).map(|y| (x, y)))
                })
                .collect()
        };
        let dark = line.iter().filter(|p| p.iter().all(|&v| v < 120)).count();
        if line.is_empty() || dark * 10 < line.len() * 8 {
            problems.push(format!(
                "{id}: zero line {dark} dark of {} pixels",
                line.len()
            ));
        }
    }
    problems
}

#[test]
fn charts_draw_in_a_screenshot() {
    chromium();
    let dir = TempDir::new().expect("temp dir");
    let (input, _) = support::generate(dir.path(), "events", 30_000, 1313, "jsonl", 30_000);
    let out = dir.path().join("cmp");
    let (_, _, c) = report(
        &input,
        &common::rule("creator-pay-v1"),
        &common::rule("creator-pay-v2"),
        &out,
    );
    let page = out.join("report.html");
    let problems = check_screenshot(&page, dir.path(), &c);
    assert_eq!(problems, Vec::<String>::new(), "the report's screenshot");

    // The check is not blind: the same page with its bars hidden, or with
    // its charts gone, fails it, chart by chart.
    let html = std::fs::read_to_string(&page).expect("the page");
    for (name, style) in [
        ("no-bars", "svg.chart .bar{visibility:hidden}"),
        ("no-charts", "svg.chart{visibility:hidden}"),
    ] {
        let broken = dir.path().join(format!("{name}.html"));
        std::fs::write(
            &broken,
            html.replace("</head>", &format!("<style>{style}</style></head>")),
        )
        .expect("write");
        let problems = check_screenshot(&broken, dir.path(), &c);
        for (id, _, _) in charted(&c) {
            assert!(
                problems.iter().any(|p| p.starts_with(&format!("{id}: "))),
                "{name}: {id} passed: {problems:?}"
            );
        }
    }
}

#[test]
fn creator_ids_and_reasons_are_text_in_the_page() {
    chromium();
    let dir = TempDir::new().expect("temp dir");
    // Creator and template ids that are markup, paid by both rules.
    let hostile = [
        "<img src=x onerror=alert(1)>",
        "</table><script>document.title='owned'</script>",
        "a'b\"c&amp;<svg onload=alert(2)>",
    ];
    let lines: Vec<String> = (0..30)
        .map(|i| {
            let id = serde_json::to_string(hostile[i % hostile.len()]).expect("JSON");
            format!(
                r#"{{"event_id":"ev-{i}","occurred_at":"2026-05-0{d}T10:00:00Z","ingested_at":"2026-05-0{d}T10:00:01Z","creator_id":{id},"template_id":{id},"content_kind":"image","action":"use","user_tier":"pro","country":"{country}"}}"#,
                d = 1 + i % 3,
                country = if i % 2 == 0 { "BR" } else { "US" }
            )
        })
        .collect();
    let input = dir.path().join("hostile.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").expect("write");
    let out = dir.path().join("cmp");
    let (html, _, c) = report(
        &input,
        &common::rule("creator-pay-v1"),
        &common::rule("creator-pay-v2"),
        &out,
    );
    assert!(
        c["top_creators_losing"]
            .as_array()
            .is_some_and(|l| l.len() == hostile.len()),
        "{}",
        c["top_creators_losing"]
    );
    for id in hostile {
        assert!(!html.contains(id), "{id} is in the page as markup");
    }
    let browsed = dump_dom(&out.join("report.html"));
    assert_eq!(browsed.page_errors(), Vec::<&str>::new());
    let dom = &browsed.stdout;
    // Nothing from the data became an element or an attribute: the page has
    // no image, no script, and one svg per chart.
    // (The ids' own text holds `src=`, so the page is checked as the
    // browser built it: no attribute fetches anything.)
    for markup in [
        "<img",
        "<script",
        "onerror=\"",
        "onload=\"",
        "src=\"",
        "href=\"",
    ] {
        assert!(!dom.contains(markup), "{markup} in the page");
    }
    assert_eq!(dom.matches("<svg").count(), charted(&c).len());
    assert!(dom.contains("<title>Rule comparison</title>"));
    // The ids are on the page as text, escaped as the browser serializes it.
    assert!(
        dom.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "the first id as text"
    );
    assert!(
        dom.contains("a'b\"c&amp;amp;&lt;svg onload=alert(2)&gt;"),
        "the third id as text"
    );
    assert_charts(dom, &c);
    assert_tables(dom, &c);
}
