//! The forms of a comparison: text for a terminal, one self-contained HTML page
//! for a policy team (no network fetches, no script: styles and the charts are
//! inline), and Parquet files for machines.

use super::attribution::{Bucket, Share, Transition, VERDICT_CHANGES, VERDICT_CHANGES_SHOWN};
use super::chart::{self, Bar, Chart, Tone, Unit, esc};
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
            shown(&m.key),
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
    attribution_text(&mut out, c);
    creators_text(&mut out, c);
    days_text(&mut out, &c.days);
    let _ = writeln!(out, "\nsample of changed events");
    for e in &c.sample {
        let _ = writeln!(
            out,
            "  {} {} {}/{} {} {} {} {}: A {} {} -> B {} {}",
            shown(&e.event_id),
            e.day,
            shown(&e.creator_id),
            shown(&e.template_id),
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

/// The change from `a` to `b` relative to `a`, as a person reads it: `new`
/// when only B pays, `-` when neither does.
fn relative_text(a: i64, b: i64) -> String {
    match (a, b) {
        (0, 0) => "-".to_string(),
        (0, _) => "new".to_string(),
        _ => percent((i128::from(b) - i128::from(a)) as f64 / a as f64),
    }
}

/// A verdict-change kind as a person reads it.
fn change_shown(kind: &str) -> &'static str {
    VERDICT_CHANGES
        .iter()
        .position(|k| *k == kind)
        .map_or("?", |i| VERDICT_CHANGES_SHOWN[i])
}

/// A transition with its reasons, as a person reads it.
fn transition_shown(t: &Transition) -> String {
    match (&t.a_reason, &t.b_reason) {
        (Some(a), Some(b)) => format!(
            "{}: {} → {}",
            change_shown(t.transition),
            shown(a),
            shown(b)
        ),
        _ => change_shown(t.transition).to_string(),
    }
}

fn shares_text(out: &mut String, title: &str, shares: &[Share]) {
    let _ = writeln!(
        out,
        "  {title:<30} {:>12} {:>12} {:>18} {:>18} {:>18}",
        "events", "changed", "A", "B", "change"
    );
    for s in shares {
        let _ = writeln!(
            out,
            "    {:<28} {:>12} {:>12} {:>18} {:>18} {:>18} {:>9}",
            shown(&s.key),
            thousands(s.events),
            thousands(s.changed),
            money(s.amount_a),
            money(s.amount_b),
            signed_money(s.delta),
            relative_text(s.amount_a, s.amount_b)
        );
    }
}

/// Where the money moved, split by its causes.
fn attribution_text(out: &mut String, c: &Comparison) {
    let a = &c.attribution;
    let moving: Vec<(String, &Transition)> = a
        .by_transition
        .iter()
        .filter(|t| t.transition != VERDICT_CHANGES[4])
        .map(|t| (transition_shown(t), t))
        .collect();
    let width = moving
        .iter()
        .map(|(label, _)| label.chars().count())
        .chain(VERDICT_CHANGES_SHOWN.iter().map(|l| l.chars().count()))
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "\nwhere the money moved (each split adds up to the change of the amount, {})",
        signed_money(c.amount_delta)
    );
    let _ = writeln!(
        out,
        "  {:<w$} {:>12} {:>18} {:>18} {:>18}",
        "by verdict change",
        "events",
        "A",
        "B",
        "change",
        w = width + 2
    );
    for t in &a.by_verdict_change {
        let _ = writeln!(
            out,
            "    {:<width$} {:>12} {:>18} {:>18} {:>18}",
            change_shown(t.transition),
            thousands(t.events),
            money(t.amount_a),
            money(t.amount_b),
            signed_money(t.delta)
        );
    }
    let _ = writeln!(out, "  by verdict change and reason (A reason → B reason)");
    for (label, t) in &moving {
        let _ = writeln!(
            out,
            "    {label:<width$} {:>12} {:>18} {:>18} {:>18}",
            thousands(t.events),
            money(t.amount_a),
            money(t.amount_b),
            signed_money(t.delta)
        );
    }
    shares_text(out, "by content kind", &a.by_content_kind);
    shares_text(out, "by user tier", &a.by_user_tier);
    shares_text(out, "by country", &a.by_country);
}

/// A histogram bucket's tone in the chart.
fn bucket_tone(b: &Bucket) -> Tone {
    match b.kind {
        "stopped" => Tone::Gone,
        "decrease" => Tone::Down,
        "increase" => Tone::Up,
        "new" => Tone::New,
        _ => Tone::Flat,
    }
}

/// How many creators gain, lose and stay the same, and the histogram.
fn creators_text(out: &mut String, c: &Comparison) {
    let n = &c.creators;
    let _ = writeln!(
        out,
        "\ncreators: {} with events; {} gain, {} lose, {} unchanged ({} paid under neither rule); {} paid only under A, {} only under B",
        thousands(n.with_events),
        thousands(n.gaining),
        thousands(n.losing),
        thousands(n.unchanged),
        thousands(n.paid_under_neither),
        thousands(n.paid_only_under_a),
        thousands(n.paid_only_under_b)
    );
    let _ = writeln!(
        out,
        "relative change of the amount per creator\n  {:<24} {:>10} {:>18}",
        "change", "creators", "amount change"
    );
    for b in &c.creator_change_histogram {
        let _ = writeln!(
            out,
            "  {:<24} {:>10} {:>18}",
            b.label,
            thousands(b.creators),
            signed_money(b.delta)
        );
    }
}

/// The per-day table.
fn days_text(out: &mut String, days: &[Share]) {
    let _ = writeln!(
        out,
        "\nper day\n  {:<10} {:>10} {:>10} {:>10} {:>10} {:>18} {:>18} {:>18}",
        "day", "events", "changed", "payable A", "payable B", "A", "B", "change"
    );
    for d in days {
        let _ = writeln!(
            out,
            "  {:<10} {:>10} {:>10} {:>10} {:>10} {:>18} {:>18} {:>18} {:>9}",
            d.key,
            thousands(d.events),
            thousands(d.changed),
            thousands(d.payable_a),
            thousands(d.payable_b),
            money(d.amount_a),
            money(d.amount_b),
            signed_money(d.delta),
            relative_text(d.amount_a, d.amount_b)
        );
    }
}

/// Rule-supplied text (names, reasons) for HTML: as [`shown`] to a person,
/// then escaped.
fn rule_esc(text: &str) -> String {
    esc(&shown(text))
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

/// The title of an axis of money.
const MONEY_AXIS: &str = "change of the amount, currency units (1 = 1,000,000 micros)";

/// A cell of money, coloured by the sign of a change when `change`.
fn money_cell(micros: i64, change: bool) -> String {
    if !change {
        return format!("<td class=n>{}</td>", money(micros));
    }
    let class = match micros.signum() {
        1 => " up",
        -1 => " down",
        _ => "",
    };
    format!("<td class='n{class}'>{}</td>", signed_money(micros))
}

/// A chart of changes, one row per category.
fn change_rows(id: &str, description: &str, bars: Vec<Bar>) -> String {
    chart::rows(
        &Chart {
            id,
            description,
            unit: Unit::Money,
            axis: MONEY_AXIS,
        },
        &bars,
    )
}

/// The change of the amount split by kind of verdict change and by reasons,
/// each a chart and a table.
fn transitions_html(out: &mut String, c: &Comparison) {
    let a = &c.attribution;
    let _ = write!(
        out,
        "<h3>By verdict change</h3>{}<table id=by-verdict-change><tr><th>verdict change</th><th>events</th><th>A</th><th>B</th><th>change</th></tr>",
        change_rows(
            "chart-verdict-change",
            "change of the amount by verdict change",
            a.by_verdict_change
                .iter()
                .map(|t| Bar::change(change_shown(t.transition), t.delta))
                .collect()
        )
    );
    for t in &a.by_verdict_change {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=n>{}</td>{}{}{}</tr>",
            esc(change_shown(t.transition)),
            thousands(t.events),
            money_cell(t.amount_a, false),
            money_cell(t.amount_b, false),
            money_cell(t.delta, true)
        );
    }
    let _ = write!(
        out,
        "<tr class=total><th>total</th><td class=n>{}</td>{}{}{}</tr></table>",
        thousands(c.totals_a.unique),
        money_cell(c.totals_a.amount_micros, false),
        money_cell(c.totals_b.amount_micros, false),
        money_cell(c.amount_delta, true)
    );
    let moving: Vec<Bar> = a
        .by_transition
        .iter()
        .filter(|t| t.delta != 0)
        .map(|t| Bar::change(transition_shown(t), t.delta))
        .collect();
    let _ = write!(
        out,
        "<h3>By verdict change and reason</h3>{}<table id=by-transition><tr><th>verdict change</th><th>A reason</th><th>B reason</th><th>events</th><th>A</th><th>B</th><th>change</th></tr>",
        if moving.is_empty() {
            "<p>No verdict change moved money.</p>".to_string()
        } else {
            change_rows(
                "chart-transition",
                "change of the amount by verdict change and reason",
                moving,
            )
        }
    );
    for t in &a.by_transition {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=n>{}</td>{}{}{}</tr>",
            esc(change_shown(t.transition)),
            rule_esc(t.a_reason.as_deref().unwrap_or_default()),
            rule_esc(t.b_reason.as_deref().unwrap_or_default()),
            thousands(t.events),
            money_cell(t.amount_a, false),
            money_cell(t.amount_b, false),
            money_cell(t.delta, true)
        );
    }
    out.push_str("</table>");
}

/// One split of the change (by content kind, user tier or country): a chart
/// and a table.
fn shares_html(out: &mut String, (id, title, what): (&str, &str, &str), shares: &[Share]) {
    let description = format!("change of the amount by {what}");
    let _ = write!(
        out,
        "<h3>{}</h3>{}<table id=by-{id}><tr><th>{}</th><th>events</th><th>changed</th><th>payable A</th><th>payable B</th><th>A</th><th>B</th><th>change</th><th>relative</th></tr>",
        esc(title),
        if shares.is_empty() {
            "<p>No events.</p>".to_string()
        } else {
            change_rows(
                &format!("chart-{id}"),
                &description,
                shares
                    .iter()
                    .map(|s| Bar::change(s.key.clone(), s.delta))
                    .collect(),
            )
        },
        esc(what)
    );
    for s in shares {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td>{}{}{}<td class=n>{}</td></tr>",
            esc(&s.key),
            thousands(s.events),
            thousands(s.changed),
            thousands(s.payable_a),
            thousands(s.payable_b),
            money_cell(s.amount_a, false),
            money_cell(s.amount_b, false),
            money_cell(s.delta, true),
            esc(&relative_text(s.amount_a, s.amount_b))
        );
    }
    out.push_str("</table>");
}

/// How many creators gain, lose and stay the same; the histogram of their
/// relative change, as a chart and a table.
fn creators_html(out: &mut String, c: &Comparison) {
    let n = &c.creators;
    let _ = write!(
        out,
        "<h2>Creators</h2><table id=creators><tr><th>creators</th><th>count</th></tr>\
<tr><td>with events</td><td class=n>{}</td></tr><tr><td>gaining</td><td class='n up'>{}</td></tr>\
<tr><td>losing</td><td class='n down'>{}</td></tr><tr><td>unchanged</td><td class=n>{}</td></tr>\
<tr><td>of which paid under neither rule</td><td class=n>{}</td></tr>\
<tr><td>paid only under A (no longer paid)</td><td class=n>{}</td></tr>\
<tr><td>paid only under B (new)</td><td class=n>{}</td></tr></table>",
        thousands(n.with_events),
        thousands(n.gaining),
        thousands(n.losing),
        thousands(n.unchanged),
        thousands(n.paid_under_neither),
        thousands(n.paid_only_under_a),
        thousands(n.paid_only_under_b)
    );
    let bars: Vec<Bar> = c
        .creator_change_histogram
        .iter()
        .map(|b| Bar {
            label: b.label.clone(),
            value: i64::try_from(b.creators).unwrap_or(i64::MAX),
            tone: bucket_tone(b),
        })
        .collect();
    let _ = write!(
        out,
        "<h3>Relative change of the amount per creator</h3><p>Each creator paid under either rule, by the change of its amount relative to what A pays it. \
A bracket includes its edge, a parenthesis excludes it; creators paid only under B are counted apart (a change from nothing has no ratio), and creators paid under neither rule are left out.</p>{}\
<table id=histogram><tr><th>change</th><th>creators</th><th>A</th><th>B</th><th>change of the amount</th></tr>",
        chart::columns(
            &Chart {
                id: "chart-histogram",
                description: "creators by relative change of their amount",
                unit: Unit::Count,
                axis: "creators",
            },
            &bars
        )
    );
    for b in &c.creator_change_histogram {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=n>{}</td>{}{}{}</tr>",
            esc(&b.label),
            thousands(b.creators),
            money_cell(b.amount_a, false),
            money_cell(b.amount_b, false),
            money_cell(b.delta, true)
        );
    }
    out.push_str("</table>");
}

/// The money moved per day: a chart and the per-day table.
fn days_html(out: &mut String, days: &[Share]) {
    let bars: Vec<Bar> = days
        .iter()
        .map(|d| Bar::change(d.key.clone(), d.delta))
        .collect();
    let _ = write!(
        out,
        "<h2>Money moved per day</h2>{}<table id=days><tr><th>day</th><th>events</th><th>changed</th><th>payable A</th><th>payable B</th><th>A</th><th>B</th><th>change</th><th>relative</th></tr>",
        if bars.is_empty() {
            "<p>No events.</p>".to_string()
        } else {
            chart::columns(
                &Chart {
                    id: "chart-days",
                    description: "change of the amount per day",
                    unit: Unit::Money,
                    axis: MONEY_AXIS,
                },
                &bars,
            )
        }
    );
    for d in days {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td>{}{}{}<td class=n>{}</td></tr>",
            esc(&d.key),
            thousands(d.events),
            thousands(d.changed),
            thousands(d.payable_a),
            thousands(d.payable_b),
            money_cell(d.amount_a, false),
            money_cell(d.amount_b, false),
            money_cell(d.delta, true),
            esc(&relative_text(d.amount_a, d.amount_b))
        );
    }
    out.push_str("</table>");
}

/// The comparison as one self-contained HTML page.
pub fn html(c: &Comparison) -> String {
    let (a, b) = (&c.totals_a, &c.totals_b);
    let mut out = String::from(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Rule comparison</title><style>\
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0}\
td,th{border:1px solid #ddd;padding:.25em .6em}th{background:#f4f4f4;text-align:left}.n{text-align:right;font-variant-numeric:tabular-nums}\
.up{color:#17663a;fill:#2e9e5b}.down{color:#a12020;fill:#d04848}section{display:inline-block;vertical-align:top;margin-right:2em}\
code{font-size:12px}.chart{display:block;max-width:100%;height:auto;margin:.5em 0}tr.total th,tr.total td{font-weight:bold}</style></head><body>",
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
    let _ = write!(
        out,
        "<h2>Where the money moved</h2><p>Each split adds up exactly to the change of the amount, {}.</p>",
        signed_money(c.amount_delta)
    );
    transitions_html(&mut out, c);
    let a = &c.attribution;
    for (names, shares) in [
        (
            ("content-kind", "By content kind", "content kind"),
            &a.by_content_kind,
        ),
        (("user-tier", "By user tier", "user tier"), &a.by_user_tier),
        (("country", "By country", "country"), &a.by_country),
    ] {
        shares_html(&mut out, names, shares);
    }
    creators_html(&mut out, c);
    days_html(&mut out, &c.days);
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
    let bytes = crate::commit::encode(
        path,
        batch.schema(),
        batch.columns().to_vec(),
        &metadata,
        &[],
    )?;
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
