//! The forms of a comparison: text for a terminal, one self-contained HTML page
//! for a policy team (no network fetches: styles and the chart are inline), and
//! Parquet files for machines.

use super::gate::{GATE_TRIPPED, Outcome};
use super::{Comparison, Mover, OutputDiff};
use crate::commit::CommitError;
use crate::report::{money, thousands};
use crate::rule::shown;
use arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::file::metadata::KeyValue;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

fn signed_money(micros: i64) -> String {
    if micros > 0 {
        format!("+{}", money(micros))
    } else {
        money(micros)
    }
}

fn percent(x: f64) -> String {
    format!("{:+.2}%", x * 100.0)
}

fn movers_text(out: &mut String, title: &str, movers: &[Mover]) {
    let _ = writeln!(out, "{title}");
    if movers.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for m in movers {
        let _ = writeln!(
            out,
            "  {:<24} {:>16} -> {:>16}  {:>16}",
            m.key,
            money(m.amount_a),
            money(m.amount_b),
            signed_money(m.delta)
        );
    }
}

/// How the verdicts moved, in one sentence.
fn verdict_summary(c: &Comparison) -> String {
    let v = &c.verdicts;
    format!(
        "{} changed ({:.2}% of unique events): {} payable → not payable, {} not payable → payable, {} rate changed, {} reason changed; {} unchanged",
        thousands(v.changed()),
        c.changed_share * 100.0,
        thousands(v.payable_to_not_payable),
        thousands(v.not_payable_to_payable),
        thousands(v.rate_changed),
        thousands(v.reason_changed),
        thousands(v.unchanged)
    )
}

/// The comparison as text.
pub fn text(c: &Comparison) -> String {
    let mut out = String::new();
    let (a, b) = (&c.totals_a, &c.totals_b);
    for (side, rule) in [("A", &c.a), ("B", &c.b)] {
        let _ = writeln!(
            out,
            "{side}  {}@{}  blake3 {}",
            shown(&rule.name),
            shown(&rule.version),
            rule.hash
        );
    }
    let _ = writeln!(
        out,
        "input fingerprint {}, {} records\n",
        c.input_fingerprint,
        thousands(c.records)
    );
    let _ = writeln!(
        out,
        "{:<16} {:>16} {:>16} {:>16} {:>9}",
        "", "A", "B", "change", ""
    );
    let _ = writeln!(
        out,
        "{:<16} {:>16} {:>16}",
        "unique events",
        thousands(a.unique),
        thousands(b.unique)
    );
    let _ = writeln!(
        out,
        "{:<16} {:>16} {:>16} {:>16} {:>9}",
        "payable events",
        thousands(a.payable),
        thousands(b.payable),
        format!("{:+}", c.payable_delta),
        percent(if a.payable == 0 {
            0.0
        } else {
            c.payable_delta as f64 / a.payable as f64
        })
    );
    let _ = writeln!(
        out,
        "{:<16} {:>16} {:>16} {:>16} {:>9}",
        "amount",
        money(a.amount_micros),
        money(b.amount_micros),
        signed_money(c.amount_delta),
        percent(c.amount_relative_change)
    );
    let _ = writeln!(out, "\nverdicts: {}", verdict_summary(c));
    let _ = writeln!(out, "\ntransitions (A reason -> B reason: events)");
    for (ra, row) in &c.transitions {
        for (rb, n) in row {
            let mark = if ra == rb { " " } else { "*" };
            let (ra, rb) = (shown(ra), shown(rb));
            let _ = writeln!(out, " {mark} {ra:<20} -> {rb:<20} {:>14}", thousands(*n));
        }
    }
    out.push('\n');
    movers_text(&mut out, "creators gaining most", &c.top_creators_gaining);
    movers_text(&mut out, "creators losing most", &c.top_creators_losing);
    movers_text(&mut out, "templates gaining most", &c.top_templates_gaining);
    movers_text(&mut out, "templates losing most", &c.top_templates_losing);
    movers_text(&mut out, "per day", &c.days);
    let _ = writeln!(out, "\nsample of changed events");
    for e in &c.sample {
        let _ = writeln!(
            out,
            "  {} {} {}/{} {} {} {} {}: A {} {} -> B {} {}",
            e.event_id,
            e.day,
            e.creator_id,
            e.template_id,
            e.content_kind,
            e.action,
            e.user_tier,
            e.country,
            shown(&e.a_reason),
            e.a_rate_micros,
            shown(&e.b_reason),
            e.b_rate_micros
        );
    }
    gates_text(&mut out, &c.gates);
    let _ = write!(out, "\nelapsed {:.2}s", c.elapsed_seconds);
    out
}

/// The `--fail-if` conditions, each with the value measured and whether it
/// held; nothing when none was given.
fn gates_text(out: &mut String, gates: &[Outcome]) {
    if gates.is_empty() {
        return;
    }
    let held = gates.iter().filter(|g| g.held).count();
    let verdict = if held == 0 {
        "the comparison passes".to_string()
    } else {
        format!("the comparison fails (exit status {GATE_TRIPPED})")
    };
    let _ = writeln!(
        out,
        "\nfail-if: {held} of {} condition(s) hold, {verdict}",
        gates.len()
    );
    let width = gates.iter().map(|g| g.condition.len()).max().unwrap_or(0);
    for g in gates {
        let _ = writeln!(
            out,
            "  {:<13} {:<width$}  measured {}",
            if g.held { "holds" } else { "does not hold" },
            g.condition,
            g.shown
        );
    }
}

/// Rule-supplied text (names, reasons) for HTML: as [`shown`] to a person,
/// then escaped.
fn rule_esc(text: &str) -> String {
    esc(&shown(text))
}

/// Escapes text for HTML.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn movers_html(out: &mut String, title: &str, movers: &[Mover]) {
    let _ = write!(
        out,
        "<section><h3>{}</h3><table><tr><th>key</th><th>A</th><th>B</th><th>change</th></tr>",
        esc(title)
    );
    for m in movers {
        let class = if m.delta >= 0 { "up" } else { "down" };
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class='n {class}'>{}</td></tr>",
            esc(&m.key),
            money(m.amount_a),
            money(m.amount_b),
            signed_money(m.delta)
        );
    }
    if movers.is_empty() {
        out.push_str("<tr><td colspan=4>none</td></tr>");
    }
    out.push_str("</table></section>");
}

/// Bars of the money moved per day, as inline SVG.
fn day_chart(days: &[Mover]) -> String {
    let (width, height, pad) = (900.0_f64, 240.0_f64, 30.0_f64);
    let max = days
        .iter()
        .map(|d| d.delta.unsigned_abs())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let bar = (width - 2.0 * pad) / days.len().max(1) as f64;
    let mid = height / 2.0;
    let mut svg = format!(
        "<svg role=img aria-label='money moved per day' viewBox='0 0 {width} {height}' width='100%'><line x1='{pad}' y1='{mid}' x2='{}' y2='{mid}' stroke='#888'/>",
        width - pad
    );
    for (i, d) in days.iter().enumerate() {
        let h = (d.delta.unsigned_abs() as f64 / max) * (mid - pad);
        let x = pad + i as f64 * bar;
        let (y, class) = if d.delta >= 0 {
            (mid - h, "up")
        } else {
            (mid, "down")
        };
        let _ = write!(
            svg,
            "<rect class='{class}' x='{x:.1}' y='{y:.1}' width='{:.1}' height='{h:.1}'><title>{}: {}</title></rect>",
            (bar - 2.0).max(1.0),
            esc(&d.key),
            signed_money(d.delta)
        );
    }
    if let (Some(first), Some(last)) = (days.first(), days.last()) {
        let _ = write!(
            svg,
            "<text x='{pad}' y='{}' font-size='12'>{}</text><text x='{}' y='{}' font-size='12' text-anchor='end'>{}</text>",
            height - 6.0,
            esc(&first.key),
            width - pad,
            height - 6.0,
            esc(&last.key)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The comparison as one self-contained HTML page.
pub fn html(c: &Comparison) -> String {
    let (a, b) = (&c.totals_a, &c.totals_b);
    let mut out = String::from(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Rule comparison</title><style>\
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0}\
td,th{border:1px solid #ddd;padding:.25em .6em}th{background:#f4f4f4;text-align:left}.n{text-align:right;font-variant-numeric:tabular-nums}\
.up{color:#17663a;fill:#2e9e5b}.down{color:#a12020;fill:#d04848}section{display:inline-block;vertical-align:top;margin-right:2em}\
code{font-size:12px}</style></head><body>",
    );
    let _ = write!(
        out,
        "<h1>Rule comparison</h1><p>A: <b>{}@{}</b> <code>{}</code><br>B: <b>{}@{}</b> <code>{}</code><br>Input fingerprint <code>{}</code>, {} records.</p>",
        rule_esc(&c.a.name),
        rule_esc(&c.a.version),
        esc(&c.a.hash),
        rule_esc(&c.b.name),
        rule_esc(&c.b.version),
        esc(&c.b.hash),
        esc(&c.input_fingerprint),
        thousands(c.records)
    );
    let class = if c.amount_delta >= 0 { "up" } else { "down" };
    let _ = write!(
        out,
        "<h2>Totals</h2><table id=totals><tr><th></th><th>A</th><th>B</th><th>change</th></tr>\
<tr><td>unique events</td><td class=n>{}</td><td class=n>{}</td><td></td></tr>\
<tr><td>payable events</td><td class=n>{}</td><td class=n>{}</td><td class=n>{:+}</td></tr>\
<tr><td>amount</td><td class=n id=amount-a>{}</td><td class=n id=amount-b>{}</td><td class='n {class}' id=amount-change>{} ({})</td></tr></table>",
        thousands(a.unique),
        thousands(b.unique),
        thousands(a.payable),
        thousands(b.payable),
        c.payable_delta,
        money(a.amount_micros),
        money(b.amount_micros),
        signed_money(c.amount_delta),
        percent(c.amount_relative_change)
    );
    let _ = write!(out, "<p>Verdicts: {}.</p>", esc(&verdict_summary(c)));
    if !c.gates.is_empty() {
        out.push_str("<h2>Fail-if conditions</h2><table id=gates><tr><th>condition</th><th>measured</th><th>held</th></tr>");
        for g in &c.gates {
            let class = if g.held { " class=down" } else { "" };
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td class=n>{}</td><td{class}>{}</td></tr>",
                esc(&g.condition),
                esc(&g.shown),
                if g.held { "holds" } else { "does not hold" }
            );
        }
        out.push_str("</table>");
    }
    let _ = write!(out, "<h2>Money moved per day</h2>{}", day_chart(&c.days));
    out.push_str("<h2>Who gains and loses</h2>");
    movers_html(&mut out, "Creators gaining most", &c.top_creators_gaining);
    movers_html(&mut out, "Creators losing most", &c.top_creators_losing);
    movers_html(&mut out, "Templates gaining most", &c.top_templates_gaining);
    movers_html(&mut out, "Templates losing most", &c.top_templates_losing);
    out.push_str("<h2>Verdict transitions</h2><table><tr><th>A reason</th><th>B reason</th><th>events</th></tr>");
    for (ra, row) in &c.transitions {
        for (rb, n) in row {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=n>{}</td></tr>",
                rule_esc(ra),
                rule_esc(rb),
                thousands(*n)
            );
        }
    }
    out.push_str("</table><h2>Sample of changed events</h2><table><tr><th>event</th><th>day</th><th>creator</th><th>template</th><th>kind</th><th>action</th><th>tier</th><th>country</th><th>A</th><th>B</th></tr>");
    for e in &c.sample {
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} {}</td><td>{} {}</td></tr>",
            esc(&e.event_id),
            esc(&e.day),
            esc(&e.creator_id),
            esc(&e.template_id),
            esc(&e.content_kind),
            esc(&e.action),
            esc(&e.user_tier),
            esc(&e.country),
            rule_esc(&e.a_reason),
            e.a_rate_micros,
            rule_esc(&e.b_reason),
            e.b_rate_micros
        );
    }
    out.push_str("</table></body></html>\n");
    out
}

/// The difference of two outputs as text.
pub fn output_diff_text(d: &OutputDiff) -> String {
    let mut out = format!(
        "A {}\nB {}\nkeys: {} unchanged, {} changed, {} only in A, {} only in B\namount: {} -> {} ({})\n",
        d.a,
        d.b,
        thousands(d.unchanged),
        thousands(d.changed),
        thousands(d.only_in_a),
        thousands(d.only_in_b),
        money(d.amount_a),
        money(d.amount_b),
        signed_money(d.amount_b - d.amount_a)
    );
    for x in &d.differences {
        let _ = writeln!(
            out,
            "  {} {}/{}: A {} B {}",
            x.day,
            x.creator_id,
            x.template_id,
            x.a.as_deref().unwrap_or("-"),
            x.b.as_deref().unwrap_or("-")
        );
    }
    out
}

fn write_parquet(
    path: &Path,
    batch: RecordBatch,
    metadata: Vec<KeyValue>,
) -> Result<(), CommitError> {
    let bytes = crate::commit::encode(path, batch.schema(), batch.columns().to_vec(), &metadata)?;
    crate::commit::write_file(path, &bytes)
}

/// Writes `deltas.parquet` (per key, both rules' figures and the amount
/// delta) and `changed-sample.parquet` under `dir`, both with the two rule
/// hashes in their metadata.
pub fn write_out(dir: &Path, c: &Comparison) -> Result<(), CommitError> {
    std::fs::create_dir_all(dir).map_err(|source| CommitError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let metadata = vec![
        KeyValue::new("tally.rule_a_hash".to_string(), c.a.hash.clone()),
        KeyValue::new(
            "tally.rule_a".to_string(),
            format!("{}@{}", c.a.name, c.a.version),
        ),
        KeyValue::new("tally.rule_b_hash".to_string(), c.b.hash.clone()),
        KeyValue::new(
            "tally.rule_b".to_string(),
            format!("{}@{}", c.b.name, c.b.version),
        ),
        KeyValue::new(
            "tally.input_fingerprint".to_string(),
            c.input_fingerprint.clone(),
        ),
        KeyValue::new(
            "tally.version".to_string(),
            crate::pipeline::VERSION.to_string(),
        ),
    ];
    let k = &c.keys;
    let int = |f: &dyn Fn(&super::KeyDelta) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(k.iter().map(f)))
    };
    let text = |f: &dyn Fn(&super::KeyDelta) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(k.iter().map(f)))
    };
    let fields = ["day", "creator_id", "template_id"]
        .into_iter()
        .map(|n| Field::new(n, DataType::Utf8, false))
        .chain(
            [
                "a_events",
                "a_payable_events",
                "a_amount_micros",
                "b_events",
                "b_payable_events",
                "b_amount_micros",
                "delta_amount_micros",
            ]
            .into_iter()
            .map(|n| Field::new(n, DataType::Int64, false)),
        )
        .collect::<Vec<_>>();
    let columns = vec![
        text(&|d| &d.day),
        text(&|d| &d.creator_id),
        text(&|d| &d.template_id),
        int(&|d| d.a.0 as i64),
        int(&|d| d.a.1 as i64),
        int(&|d| d.a.2),
        int(&|d| d.b.0 as i64),
        int(&|d| d.b.1 as i64),
        int(&|d| d.b.2),
        int(&|d| d.b.2 - d.a.2),
    ];
    let path = dir.join("deltas.parquet");
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| {
        CommitError::Parquet {
            path: path.clone(),
            message: e.to_string(),
        }
    })?;
    write_parquet(&path, batch, metadata.clone())?;

    let s = &c.sample;
    let strings = |f: &dyn Fn(&super::SampleEvent) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(s.iter().map(f)))
    };
    let mut fields: Vec<Field> = ["event_id", "day", "creator_id", "template_id"]
        .into_iter()
        .map(|n| Field::new(n, DataType::Utf8, false))
        .collect();
    fields.push(Field::new("brand_id", DataType::Utf8, true));
    fields.extend(
        ["content_kind", "action", "user_tier", "country"]
            .into_iter()
            .map(|n| Field::new(n, DataType::Utf8, false)),
    );
    fields.extend([
        Field::new("a_payable", DataType::Boolean, false),
        Field::new("a_rate_micros", DataType::Int64, false),
        Field::new("a_reason", DataType::Utf8, false),
        Field::new("b_payable", DataType::Boolean, false),
        Field::new("b_rate_micros", DataType::Int64, false),
        Field::new("b_reason", DataType::Utf8, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        strings(&|e| &e.event_id),
        strings(&|e| &e.day),
        strings(&|e| &e.creator_id),
        strings(&|e| &e.template_id),
        Arc::new(StringArray::from_iter(
            s.iter().map(|e| e.brand_id.as_deref()),
        )),
        strings(&|e| &e.content_kind),
        strings(&|e| &e.action),
        strings(&|e| &e.user_tier),
        strings(&|e| &e.country),
        Arc::new(BooleanArray::from_iter(s.iter().map(|e| Some(e.a_payable)))),
        Arc::new(Int64Array::from_iter_values(
            s.iter().map(|e| e.a_rate_micros),
        )),
        strings(&|e| &e.a_reason),
        Arc::new(BooleanArray::from_iter(s.iter().map(|e| Some(e.b_payable)))),
        Arc::new(Int64Array::from_iter_values(
            s.iter().map(|e| e.b_rate_micros),
        )),
        strings(&|e| &e.b_reason),
    ];
    let path = dir.join("changed-sample.parquet");
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| {
        CommitError::Parquet {
            path: path.clone(),
            message: e.to_string(),
        }
    })?;
    write_parquet(&path, batch, metadata)
}
