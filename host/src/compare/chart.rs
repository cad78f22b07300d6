//! Bar charts for the HTML report, as inline SVG: nothing is fetched, nothing
//! runs, and every text in a chart (labels are data: days, reasons, countries)
//! is escaped here.
//!
//! A chart has an axis with ticks at round values, labelled in its unit, a
//! zero line placed where zero is on that axis (the axis always includes
//! zero), and each bar's value written beside it. Tick values are exact
//! integers (micros or counts); floating point only places things on the
//! page. The same figures give the same bytes.

use crate::report::thousands;
use std::fmt::Write as _;

/// What a chart's values count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Micros, shown as currency units.
    Money,
    /// Whole things (creators, events).
    Count,
}

/// The fill of a bar, by what its value means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// A gain.
    Up,
    /// A loss.
    Down,
    /// Neither.
    Flat,
    /// A count.
    Plain,
    /// A loss of everything (a creator no longer paid).
    Gone,
    /// A gain from nothing (a creator paid only under B).
    New,
}

impl Tone {
    /// The tone of a change: up, down or flat by its sign.
    pub fn of(value: i64) -> Tone {
        match value.signum() {
            1 => Tone::Up,
            -1 => Tone::Down,
            _ => Tone::Flat,
        }
    }

    /// The bar's class and fill (also set on the bar, so that a chart copied
    /// out of the page keeps its colours).
    pub fn style(self) -> (&'static str, &'static str) {
        match self {
            Tone::Up => ("up", "#2e9e5b"),
            Tone::Down => ("down", "#d04848"),
            Tone::Flat => ("flat", "#9a9a9a"),
            Tone::Plain => ("plain", "#3b6fb6"),
            Tone::Gone => ("gone", "#8b1a1a"),
            Tone::New => ("new", "#17663a"),
        }
    }
}

/// One bar: its category, its value and its tone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    pub label: String,
    pub value: i64,
    pub tone: Tone,
}

impl Bar {
    /// A change, toned by its sign.
    pub fn change(label: impl Into<String>, value: i64) -> Bar {
        Bar {
            label: label.into(),
            value,
            tone: Tone::of(value),
        }
    }
}

/// What a chart is: its id in the page, what it shows (for screen readers),
/// its unit and the title of its value axis.
#[derive(Debug, Clone, Copy)]
pub struct Chart<'a> {
    pub id: &'a str,
    pub description: &'a str,
    pub unit: Unit,
    pub axis: &'a str,
}

/// Escapes text for HTML and SVG, in element content and in attribute values
/// in either kind of quotes.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `10^n`.
fn pow10(n: u32) -> i128 {
    10i128.pow(n)
}

/// `micros` as currency units with `decimals` decimals (at most 6), rounded
/// half away from zero; `signed` puts `+` before a positive value.
pub fn units(micros: i128, decimals: u32, signed: bool) -> String {
    let decimals = decimals.min(6);
    let quantum = pow10(6 - decimals);
    let rounded = (micros.unsigned_abs() + quantum.unsigned_abs() / 2) / quantum.unsigned_abs();
    let whole = rounded / pow10(decimals).unsigned_abs();
    let fraction = rounded % pow10(decimals).unsigned_abs();
    let sign = match (micros.signum(), rounded) {
        (_, 0) => "",
        (-1, _) => "-",
        (1, _) if signed => "+",
        _ => "",
    };
    let whole = thousands(u64::try_from(whole).unwrap_or(u64::MAX));
    if decimals == 0 {
        format!("{sign}{whole}")
    } else {
        format!(
            "{sign}{whole}.{fraction:0width$}",
            width = decimals as usize
        )
    }
}

/// A count with thousands separators, `+` before a positive one if `signed`.
fn count(n: i128, signed: bool) -> String {
    let sign = match n.signum() {
        -1 => "-",
        1 if signed => "+",
        _ => "",
    };
    format!(
        "{sign}{}",
        thousands(u64::try_from(n.unsigned_abs()).unwrap_or(u64::MAX))
    )
}

/// The value axis: from `lo` to `hi` in steps of `step`, all exact
/// multiples of `step`, with zero in range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Axis {
    lo: i128,
    hi: i128,
    step: i128,
    unit: Unit,
}

impl Axis {
    /// The axis for `values`: zero and every value in range, at most about
    /// six steps of 1, 2 or 5 times a power of ten.
    fn of(values: &[i64], unit: Unit) -> Axis {
        let lo = values.iter().copied().min().unwrap_or(0).min(0);
        let hi = values.iter().copied().max().unwrap_or(0).max(0);
        let span = i128::from(hi) - i128::from(lo);
        if span == 0 {
            let step = match unit {
                Unit::Money => 1_000_000,
                Unit::Count => 1,
            };
            return Axis {
                lo: 0,
                hi: step,
                step,
                unit,
            };
        }
        let wanted = (span + 4) / 5;
        let mut magnitude = 1i128;
        let step = loop {
            if let Some(&m) = [1, 2, 5].iter().find(|&&m| m * magnitude >= wanted) {
                break m * magnitude;
            }
            magnitude *= 10;
        };
        Axis {
            lo: i128::from(lo).div_euclid(step) * step,
            hi: -((-i128::from(hi)).div_euclid(step) * step),
            step,
            unit,
        }
    }

    /// The decimals a tick needs: none for a step of whole units.
    fn decimals(&self) -> u32 {
        let mut step = self.step;
        let mut zeros = 0;
        while step % 10 == 0 && zeros < 6 {
            step /= 10;
            zeros += 1;
        }
        6 - zeros
    }

    fn ticks(&self) -> impl Iterator<Item = i128> + '_ {
        (0..=(self.hi - self.lo) / self.step).map(|i| self.lo + i * self.step)
    }

    fn tick_label(&self, value: i128) -> String {
        match self.unit {
            Unit::Money => units(value, self.decimals(), false),
            Unit::Count => count(value, false),
        }
    }

    /// A bar's value as written beside it: money to the cent at least.
    fn value_label(&self, value: i64, signed: bool) -> String {
        match self.unit {
            Unit::Money => units(i128::from(value), self.decimals().max(2), signed),
            Unit::Count => count(i128::from(value), signed),
        }
    }

    /// Where `value` is between the axis ends, from 0 to 1.
    fn fraction(&self, value: i128) -> f64 {
        (value - self.lo) as f64 / (self.hi - self.lo) as f64
    }
}

/// The width a text takes at `size` pixels, about.
fn text_width(text: &str, size: f64) -> f64 {
    text.chars().count() as f64 * size * 0.6
}

/// At most `max` characters of `text`, with `…` when cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

const WIDTH: f64 = 900.0;
const TICK_FONT: f64 = 11.0;
const VALUE_FONT: f64 = 10.0;
const GRID: &str = "#e3e3e3";
const INK: &str = "#444";

fn open_svg(out: &mut String, chart: &Chart, height: f64) {
    let _ = write!(
        out,
        "<svg id='{}' class=chart role=img aria-label='{}' viewBox='0 0 {WIDTH} {height:.0}' width='{WIDTH}' height='{height:.0}' font-family='system-ui,sans-serif'><title>{}</title><rect class=frame x='0' y='0' width='{WIDTH}' height='{height:.0}' fill='#fff'/>",
        esc(chart.id),
        esc(chart.description),
        esc(chart.description)
    );
}

/// Vertical bars, one per category left to right (days, buckets), with the
/// value axis on the left.
pub fn columns(chart: &Chart, bars: &[Bar]) -> String {
    let values: Vec<i64> = bars.iter().map(|b| b.value).collect();
    let axis = Axis::of(&values, chart.unit);
    let signed = chart.unit == Unit::Money;
    let value_labels: Vec<String> = bars
        .iter()
        .map(|b| axis.value_label(b.value, signed))
        .collect();
    let ticks: Vec<(i128, String)> = axis.ticks().map(|t| (t, axis.tick_label(t))).collect();
    let tick_width = ticks
        .iter()
        .map(|(_, l)| text_width(l, TICK_FONT))
        .fold(0.0, f64::max);
    let categories: Vec<String> = bars.iter().map(|b| cut(&b.label, 24)).collect();
    let category_width = categories
        .iter()
        .map(|l| text_width(l, TICK_FONT))
        .fold(0.0, f64::max);
    let right = 12.0;
    // Room for the axis title and the ticks, and for the first category's
    // label, which slants down to the left.
    let left = (36.0 + tick_width + 8.0).max(category_width * 0.71 - 8.0);
    let plot_width = WIDTH - left - right;
    let slot = plot_width / bars.len().max(1) as f64;
    let label_width = value_labels
        .iter()
        .map(|l| text_width(l, VALUE_FONT))
        .fold(0.0, f64::max);
    // Values fit across their bars, or are written along them; with too
    // many bars for either, each bar's value is in its tooltip only.
    let across = label_width + 2.0 <= slot;
    let written = across || slot >= VALUE_FONT + 2.0;
    let room = match (across, written) {
        (true, _) => VALUE_FONT + 5.0,
        (false, true) => label_width + 6.0,
        (false, false) => 4.0,
    };
    let room_above = if values.iter().any(|&v| v >= 0) {
        room
    } else {
        4.0
    };
    let room_below = if values.iter().any(|&v| v < 0) {
        room
    } else {
        0.0
    };
    // Category labels are slanted at 45°; every one that has room is shown.
    let every = (16.0 / slot).ceil().max(1.0) as usize;
    let (top, span) = (10.0, 240.0);
    let plot_top = top + room_above;
    let plot_bottom = plot_top + span;
    let bottom = plot_bottom + room_below;
    let height = bottom + category_width * 0.71 + 24.0;
    let y = |value: i128| plot_bottom - axis.fraction(value) * span;

    let mut out = String::new();
    open_svg(&mut out, chart, height);
    for (tick, label) in &ticks {
        let ty = y(*tick);
        let _ = write!(
            out,
            "<line x1='{left:.1}' y1='{ty:.1}' x2='{:.1}' y2='{ty:.1}' stroke='{GRID}'/><text class=tick x='{:.1}' y='{:.1}' font-size='{TICK_FONT}' text-anchor='end' fill='{INK}'>{}</text>",
            WIDTH - right,
            left - 6.0,
            ty + 4.0,
            esc(label)
        );
    }
    // A long axis title is written on two lines, broken before its
    // parenthesis.
    let title = match chart.axis.split_once(" (") {
        Some((first, rest)) if text_width(chart.axis, TICK_FONT) > span => format!(
            "<tspan x='0' dy='0'>{}</tspan><tspan x='0' dy='13'>({}</tspan>",
            esc(first),
            esc(rest)
        ),
        _ => esc(chart.axis),
    };
    let _ = write!(
        out,
        "<line class=axis x1='{left:.1}' y1='{plot_top:.1}' x2='{left:.1}' y2='{plot_bottom:.1}' stroke='{INK}'/><text class=axis-title transform='translate(12 {:.1}) rotate(-90)' font-size='{TICK_FONT}' text-anchor='middle' fill='{INK}'>{title}</text>",
        plot_top + span / 2.0
    );
    let zero = y(0);
    for (i, (bar, value_label)) in bars.iter().zip(&value_labels).enumerate() {
        let x = left + i as f64 * slot;
        let width = (slot * 0.8).max(1.0);
        let bar_x = x + (slot - width) / 2.0;
        let centre = x + slot / 2.0;
        let end = y(i128::from(bar.value));
        let (bar_top, bar_height) = (end.min(zero), (end - zero).abs());
        let (class, fill) = bar.tone.style();
        let _ = write!(
            out,
            "<rect class='bar {class}' x='{bar_x:.1}' y='{bar_top:.1}' width='{width:.1}' height='{bar_height:.1}' fill='{fill}'><title>{}: {}</title></rect>",
            esc(&bar.label),
            esc(value_label)
        );
        let below = bar.value < 0;
        let text = esc(value_label);
        if written && across {
            let ty = if below {
                end + VALUE_FONT + 2.0
            } else {
                end - 3.0
            };
            let _ = write!(
                out,
                "<text class=value x='{centre:.1}' y='{ty:.1}' font-size='{VALUE_FONT}' text-anchor='middle' fill='{INK}'>{text}</text>"
            );
        } else if written {
            let (ty, anchor) = if below {
                (end + 3.0, "end")
            } else {
                (end - 3.0, "start")
            };
            let _ = write!(
                out,
                "<text class=value transform='translate({:.1} {ty:.1}) rotate(-90)' font-size='{VALUE_FONT}' text-anchor='{anchor}' fill='{INK}'>{text}</text>",
                centre + VALUE_FONT * 0.35
            );
        }
        if i % every == 0 || i + 1 == bars.len() {
            let _ = write!(
                out,
                "<text class=category transform='translate({:.1} {:.1}) rotate(-45)' font-size='{TICK_FONT}' text-anchor='end' fill='{INK}'>{}</text>",
                centre + 3.0,
                bottom + 12.0,
                esc(&categories[i])
            );
        }
    }
    let _ = write!(
        out,
        "<line class=zero x1='{left:.1}' y1='{zero:.1}' x2='{:.1}' y2='{zero:.1}' stroke='#222' stroke-width='1.5'/></svg>",
        WIDTH - right
    );
    out
}

/// Horizontal bars, one row per category (causes, kinds, countries), with
/// the value axis at the bottom.
pub fn rows(chart: &Chart, bars: &[Bar]) -> String {
    let values: Vec<i64> = bars.iter().map(|b| b.value).collect();
    let axis = Axis::of(&values, chart.unit);
    let signed = chart.unit == Unit::Money;
    let value_labels: Vec<String> = bars
        .iter()
        .map(|b| axis.value_label(b.value, signed))
        .collect();
    let categories: Vec<String> = bars.iter().map(|b| cut(&b.label, 50)).collect();
    let left = 10.0
        + categories
            .iter()
            .map(|l| text_width(l, TICK_FONT))
            .fold(0.0, f64::max)
        + 10.0;
    let right = 16.0;
    let label_width = value_labels
        .iter()
        .map(|l| text_width(l, VALUE_FONT))
        .fold(0.0, f64::max)
        + 8.0;
    let room_left = if values.iter().any(|&v| v < 0) {
        label_width
    } else {
        0.0
    };
    let room_right = if values.iter().any(|&v| v >= 0) {
        label_width
    } else {
        0.0
    };
    let (plot_left, plot_right) = (left + room_left, WIDTH - right - room_right);
    let span = (plot_right - plot_left).max(1.0);
    let row = 22.0;
    let top = 8.0;
    let plot_bottom = top + row * bars.len().max(1) as f64;
    let height = plot_bottom + 44.0;
    let x = |value: i128| plot_left + axis.fraction(value) * span;

    let mut out = String::new();
    open_svg(&mut out, chart, height);
    for tick in axis.ticks() {
        let tx = x(tick);
        let _ = write!(
            out,
            "<line x1='{tx:.1}' y1='{top:.1}' x2='{tx:.1}' y2='{plot_bottom:.1}' stroke='{GRID}'/><text class=tick x='{tx:.1}' y='{:.1}' font-size='{TICK_FONT}' text-anchor='middle' fill='{INK}'>{}</text>",
            plot_bottom + 15.0,
            esc(&axis.tick_label(tick))
        );
    }
    let _ = write!(
        out,
        "<line class=axis x1='{plot_left:.1}' y1='{plot_bottom:.1}' x2='{plot_right:.1}' y2='{plot_bottom:.1}' stroke='{INK}'/><text class=axis-title x='{:.1}' y='{:.1}' font-size='{TICK_FONT}' text-anchor='middle' fill='{INK}'>{}</text>",
        plot_left + span / 2.0,
        plot_bottom + 34.0,
        esc(chart.axis)
    );
    let zero = x(0);
    for (i, ((bar, value_label), category)) in
        bars.iter().zip(&value_labels).zip(&categories).enumerate()
    {
        let y = top + i as f64 * row;
        let end = x(i128::from(bar.value));
        let (bar_left, bar_width) = (end.min(zero), (end - zero).abs());
        let (class, fill) = bar.tone.style();
        let middle = y + row / 2.0 + 4.0;
        let (value_x, anchor) = if bar.value < 0 {
            (end - 4.0, "end")
        } else {
            (end + 4.0, "start")
        };
        let _ = write!(
            out,
            "<text class=category x='{:.1}' y='{middle:.1}' font-size='{TICK_FONT}' text-anchor='end' fill='{INK}'>{}</text><rect class='bar {class}' x='{bar_left:.1}' y='{:.1}' width='{bar_width:.1}' height='{:.1}' fill='{fill}'><title>{}: {}</title></rect><text class=value x='{value_x:.1}' y='{middle:.1}' font-size='{VALUE_FONT}' text-anchor='{anchor}' fill='{INK}'>{}</text>",
            left - 10.0,
            esc(category),
            y + 3.0,
            row - 6.0,
            esc(&bar.label),
            esc(value_label),
            esc(value_label)
        );
    }
    let _ = write!(
        out,
        "<line class=zero x1='{zero:.1}' y1='{top:.1}' x2='{zero:.1}' y2='{plot_bottom:.1}' stroke='#222' stroke-width='1.5'/></svg>"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_round_half_away_from_zero() {
        assert_eq!(units(1_234_567_890, 2, false), "1,234.57");
        assert_eq!(units(-1_234_565_000, 2, true), "-1,234.57");
        assert_eq!(units(1_234_564_999, 2, true), "+1,234.56");
        assert_eq!(units(0, 2, true), "0.00");
        assert_eq!(units(-4_000, 2, true), "0.00");
        assert_eq!(units(5_000_000_000, 0, false), "5,000");
        assert_eq!(units(7, 6, false), "0.000007");
    }

    #[test]
    fn the_axis_holds_zero_and_every_value_in_round_steps() {
        let axis = Axis::of(&[-3_200_000, 11_900_000], Unit::Money);
        assert_eq!(
            (axis.lo, axis.hi, axis.step),
            (-5_000_000, 15_000_000, 5_000_000)
        );
        assert_eq!(axis.decimals(), 0);
        assert_eq!(
            axis.ticks().map(|t| axis.tick_label(t)).collect::<Vec<_>>(),
            ["-5", "0", "5", "10", "15"]
        );
        // Only losses: the axis ends at zero.
        let axis = Axis::of(&[-70, -1_300], Unit::Money);
        assert_eq!((axis.lo, axis.hi, axis.step), (-1_500, 0, 500));
        assert_eq!(axis.tick_label(-1_500), "-0.0015");
        // Nothing at all: one step up from zero.
        let axis = Axis::of(&[0, 0], Unit::Count);
        assert_eq!((axis.lo, axis.hi, axis.step), (0, 1, 1));
        // Extremes do not overflow.
        let axis = Axis::of(&[i64::MIN, i64::MAX], Unit::Money);
        assert!(axis.lo <= i128::from(i64::MIN) && axis.hi >= i128::from(i64::MAX));
    }

    /// The zero line is where zero is on the axis: a third of the way up when
    /// the axis runs from -5 to 10.
    #[test]
    fn the_zero_line_is_placed_at_zero() {
        let bars = [Bar::change("a", -5_000_000), Bar::change("b", 10_000_000)];
        let chart = Chart {
            id: "c",
            description: "d",
            unit: Unit::Money,
            axis: "units",
        };
        let svg = columns(&chart, &bars);
        let attr = |tag: &str, name: &str| -> f64 {
            let at = svg.find(tag).expect("the element");
            let rest = &svg[at..];
            let at = rest.find(&format!(" {name}='")).expect("the attribute") + name.len() + 3;
            rest[at..at + rest[at..].find('\'').unwrap()]
                .parse()
                .unwrap()
        };
        let zero = attr("<line class=zero", "y1");
        let axis_top = attr("<line class=axis", "y1");
        let axis_bottom = attr("<line class=axis", "y2");
        let third = axis_bottom - (axis_bottom - axis_top) / 3.0;
        assert!((zero - third).abs() < 0.11, "zero at {zero}, want {third}");
        // The loss hangs from the zero line, the gain stands on it.
        assert!((attr("<rect class='bar down'", "y") - zero).abs() < 0.11);
        let gain_top = attr("<rect class='bar up'", "y");
        let gain_height = attr("<rect class='bar up'", "height");
        assert!((gain_top + gain_height - zero).abs() < 0.11);
        assert!(svg.contains(">+10.00<") && svg.contains(">-5.00<"), "{svg}");
    }

    #[test]
    fn labels_are_escaped() {
        let chart = Chart {
            id: "c'<",
            description: "<d>",
            unit: Unit::Count,
            axis: "a&b",
        };
        let bars = [Bar {
            label: "<script>alert('x')</script>".to_string(),
            value: 3,
            tone: Tone::Plain,
        }];
        for svg in [columns(&chart, &bars), rows(&chart, &bars)] {
            assert!(!svg.contains("<script") && !svg.contains("<d>"), "{svg}");
            assert!(svg.contains("&lt;script&gt;alert(&#39;x&#39;)"), "{svg}");
            assert!(svg.contains("id='c&#39;&lt;'") && svg.contains("a&amp;b"));
        }
    }
}
