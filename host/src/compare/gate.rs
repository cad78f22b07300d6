//! `--fail-if`: thresholds that make a comparison fail, for gating rule changes
//! in CI.
//!
//! A condition is `<metric><op><threshold>`, for example
//! `relative-amount-change>=5%` or `changed-events>1000`. Metrics:
//!
//! - `relative-amount-change`: absolute value of the relative change of the
//!   amount (a ratio);
//! - `changed-share`: the share of unique events whose verdict changed (a
//!   ratio, at most 1);
//! - `amount-change-micros`: absolute value of the change of the amount, in
//!   micros;
//! - `changed-events`: events whose verdict changed;
//! - `payable-change`: absolute value of the change of payable events.
//!
//! A ratio's threshold is a number (`0.05`) or a percentage (`5%`); the others
//! take a number. Operators: `>`, `>=`, `<`, `<=`. Every metric is measured as
//! a value that is never negative, so a negative threshold is refused.
//!
//! Each condition is evaluated into an [`Outcome`]: the condition, the value
//! measured (exact, and as a person reads it) and whether it held.

use super::Comparison;
use crate::report::{money, thousands};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// The exit status of `tally compare` when a condition holds.
pub const GATE_TRIPPED: u8 = 3;

/// What a condition measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    RelativeAmountChange,
    AmountChangeMicros,
    ChangedShare,
    ChangedEvents,
    PayableChange,
}

const METRICS: [(&str, Metric); 5] = [
    ("relative-amount-change", Metric::RelativeAmountChange),
    ("amount-change-micros", Metric::AmountChangeMicros),
    ("changed-share", Metric::ChangedShare),
    ("changed-events", Metric::ChangedEvents),
    ("payable-change", Metric::PayableChange),
];

impl Metric {
    /// The name `--fail-if` knows it by.
    pub fn name(self) -> &'static str {
        METRICS
            .iter()
            .find(|(_, m)| *m == self)
            .map_or("?", |(n, _)| n)
    }

    /// Whether the metric is a ratio (its threshold may be a percentage, and
    /// it is shown as one); the others are counts (of events or micros).
    pub fn is_ratio(self) -> bool {
        matches!(self, Metric::RelativeAmountChange | Metric::ChangedShare)
    }

    /// The metric's value for a comparison.
    pub fn value(self, c: &Comparison) -> f64 {
        match self {
            Metric::RelativeAmountChange => c.amount_relative_change.abs(),
            Metric::AmountChangeMicros => c.amount_delta.unsigned_abs() as f64,
            Metric::ChangedShare => c.changed_share,
            Metric::ChangedEvents => c.verdicts.changed() as f64,
            Metric::PayableChange => c.payable_delta.unsigned_abs() as f64,
        }
    }

    /// The metric's value for a comparison, exactly: a count as an integer.
    fn measured(self, c: &Comparison) -> Measured {
        match self {
            Metric::RelativeAmountChange | Metric::ChangedShare => Measured::Ratio(self.value(c)),
            Metric::AmountChangeMicros => Measured::Count(c.amount_delta.unsigned_abs()),
            Metric::ChangedEvents => Measured::Count(c.verdicts.changed()),
            Metric::PayableChange => Measured::Count(c.payable_delta.unsigned_abs()),
        }
    }

    /// A value of the metric as a person reads it: a ratio as a percentage
    /// (with enough decimals to tell it from `threshold`), an amount as
    /// money with its micros, a count with thousands separators.
    pub fn shown(self, value: f64, threshold: f64) -> String {
        let measured = if self.is_ratio() {
            Measured::Ratio(value)
        } else {
            Measured::Count(value as u64)
        };
        self.show(measured, threshold)
    }

    fn show(self, measured: Measured, threshold: f64) -> String {
        match (self, measured) {
            (_, Measured::Ratio(ratio)) => percent_against(ratio, threshold),
            (Metric::AmountChangeMicros, Measured::Count(micros)) => format!(
                "{} = {} micros",
                money(micros.min(i64::MAX as u64) as i64),
                thousands(micros)
            ),
            (_, Measured::Count(n)) => thousands(n),
        }
    }
}

/// A measured value: a ratio, or a count (of events or micros) exactly.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Measured {
    Count(u64),
    Ratio(f64),
}

impl Measured {
    fn as_f64(self) -> f64 {
        match self {
            Measured::Count(n) => n as f64,
            Measured::Ratio(x) => x,
        }
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
}

const OPS: [(&str, Op); 4] = [(">=", Op::Ge), ("<=", Op::Le), (">", Op::Gt), ("<", Op::Lt)];

impl Op {
    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
        }
    }

    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        }
    }
}

/// One `--fail-if` condition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Condition {
    pub metric: Metric,
    pub op: Op,
    /// The threshold as a plain number (`5%` is 0.05).
    pub threshold: f64,
    /// Whether the threshold was written as a percentage (and is shown so).
    pub percent: bool,
}

impl Condition {
    /// The threshold as written: `0.05`, `5%`, `1000`.
    pub fn threshold_text(&self) -> String {
        if self.percent {
            format!("{}%", percent_number(self.threshold))
        } else {
            self.threshold.to_string()
        }
    }

    /// Evaluates the condition on a comparison.
    pub fn evaluate(&self, c: &Comparison) -> Outcome {
        let measured = self.metric.measured(c);
        let value = measured.as_f64();
        Outcome {
            condition: self.to_string(),
            metric: self.metric.name(),
            op: self.op.symbol(),
            threshold: self.threshold,
            measured,
            shown: self.metric.show(measured, self.threshold),
            held: self.op.holds(value, self.threshold),
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}{}",
            self.metric.name(),
            self.op.symbol(),
            self.threshold_text()
        )
    }
}

/// The metric names, for error messages.
fn metric_names() -> String {
    METRICS.map(|(n, _)| n).join(", ")
}

impl FromStr for Condition {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        const FORM: &str = "expected <metric><op><threshold>, e.g. relative-amount-change>=5% or changed-events>1000";
        let text = text.trim();
        let at = text
            .find(['>', '<', '=', '!'])
            .ok_or_else(|| format!("no operator (>, >=, <, <=): {FORM}"))?;
        let (name, rest) = text.split_at(at);
        let name = name.trim();
        let op_len = rest
            .find(|ch: char| !matches!(ch, '>' | '<' | '=' | '!'))
            .unwrap_or(rest.len());
        let (op_text, number) = rest.split_at(op_len);
        let op = OPS
            .iter()
            .find(|(symbol, _)| *symbol == op_text)
            .map(|(_, op)| *op)
            .ok_or_else(|| format!("unknown operator {op_text:?} (one of >, >=, <, <=)"))?;
        if name.is_empty() {
            return Err(format!("no metric before {op_text:?}: {FORM}"));
        }
        let metric = METRICS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, m)| *m)
            .ok_or_else(|| format!("unknown metric {name:?} (one of {})", metric_names()))?;
        let number = number.trim();
        if number.is_empty() {
            return Err(format!("no threshold after {op_text:?}: {FORM}"));
        }
        let (digits, percent) = match number.strip_suffix('%') {
            Some(digits) => (digits.trim_end(), true),
            None => (number, false),
        };
        if percent && !metric.is_ratio() {
            return Err(format!(
                "{} is {}, not a ratio: give its threshold as a number, without %",
                metric.name(),
                if metric == Metric::AmountChangeMicros {
                    "an amount in micros"
                } else {
                    "a count of events"
                }
            ));
        }
        let threshold = parse_number(digits, percent).ok_or_else(|| {
            let what = if metric.is_ratio() {
                "a number or a percentage, e.g. 0.05 or 5%"
            } else {
                "a number, e.g. 1000"
            };
            format!("{number:?} is not a threshold: expected {what}")
        })?;
        if threshold < 0.0 {
            return Err(format!(
                "{} is measured as an absolute value, never negative: give a threshold of 0 or more",
                metric.name()
            ));
        }
        if metric == Metric::ChangedShare && threshold > 1.0 {
            let hint = if percent {
                String::new()
            } else {
                format!(" (for {number} percent, write {number}%)")
            };
            return Err(format!(
                "changed-share is a share of unique events, at most 1 (100%){hint}"
            ));
        }
        Ok(Condition {
            metric,
            op,
            threshold,
            percent,
        })
    }
}

/// A finite decimal number (`0.05`, `5`, `1e3`, `.5`), divided by 100 when
/// it is a percentage: `5` as a percentage is exactly the number `0.05`
/// parses to (the decimal point is moved, the number rounded once).
fn parse_number(digits: &str, percent: bool) -> Option<f64> {
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|ch| ch.is_ascii_digit() || matches!(ch, '.' | 'e' | 'E' | '+' | '-'))
            && s.chars().any(|ch| ch.is_ascii_digit())
    };
    if !plain(digits) {
        return None;
    }
    let value: f64 = if percent {
        let (mantissa, exponent) = match digits.find(['e', 'E']) {
            Some(at) => (&digits[..at], digits[at + 1..].parse::<i32>().ok()?),
            None => (digits, 0),
        };
        format!("{mantissa}e{}", exponent.checked_sub(2)?)
            .parse()
            .ok()?
    } else {
        digits.parse().ok()?
    };
    value.is_finite().then_some(value)
}

/// `ratio` as a number of percent written as briefly as reads back exactly:
/// 0.05 is `5`, 0.125 is `12.5`, 0.07 is `7`.
fn percent_number(ratio: f64) -> String {
    let hundredfold = ratio * 100.0;
    for decimals in 0..=17 {
        let text = trim_zeros(format!("{hundredfold:.decimals$}"));
        if parse_number(&text, true) == Some(ratio) {
            return text;
        }
    }
    hundredfold.to_string()
}

/// `1.2500` as `1.25`, `3.000` as `3`.
fn trim_zeros(text: String) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// The decimals a percentage is shown with: two from 1% up (`12.34%`),
/// three significant digits below (`0.0123%`).
fn percent_decimals(hundredfold: f64) -> usize {
    let magnitude = hundredfold.abs();
    if magnitude == 0.0 || magnitude >= 1.0 {
        2
    } else {
        (2.0 - magnitude.log10().floor()).clamp(2.0, 15.0) as usize
    }
}

/// A ratio as a percentage: `7.31%`, `0.0123%`, `0%`.
pub fn percent(ratio: f64) -> String {
    percent_with(ratio, percent_decimals(ratio * 100.0))
}

fn percent_with(ratio: f64, decimals: usize) -> String {
    if ratio == 0.0 {
        return "0%".to_string();
    }
    format!("{:.decimals$}%", ratio * 100.0)
}

/// Like [`percent`], with up to four more decimals where it takes them for
/// a value that differs from `threshold` not to read the same as it: 5.0001%
/// held against `>5%` is not shown as 5.00%.
fn percent_against(ratio: f64, threshold: f64) -> String {
    let mut decimals = percent_decimals(ratio * 100.0);
    let most = decimals + 4;
    while ratio != threshold
        && decimals < most
        && percent_with(ratio, decimals) == percent_with(threshold, decimals)
    {
        decimals += 1;
    }
    percent_with(ratio, decimals)
}

/// A condition evaluated on a comparison: what `--format json` lists under
/// `gates`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// The condition as `tally` reads it, e.g. `relative-amount-change>=5%`.
    pub condition: String,
    pub metric: &'static str,
    pub op: &'static str,
    /// The threshold as a plain number (`5%` is 0.05).
    pub threshold: f64,
    /// The value measured: a ratio, or a count (of events, or micros).
    pub measured: Measured,
    /// The value measured as a person reads it: `7.31%`, `1,234`,
    /// `1,234.500000 = 1,234,500,000 micros`.
    pub shown: String,
    /// Whether the condition held (and so the comparison fails).
    pub held: bool,
}

/// Every condition evaluated on `c`, in the order given.
pub fn evaluate(c: &Comparison, conditions: &[Condition]) -> Vec<Outcome> {
    conditions.iter().map(|cond| cond.evaluate(c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Condition {
        text.parse()
            .unwrap_or_else(|e| panic!("{text:?} is refused: {e}"))
    }

    fn refused(text: &str) -> String {
        match text.parse::<Condition>() {
            Ok(c) => panic!("{text:?} is accepted as {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn parses_conditions() {
        let c = parse("relative-amount-change>=0.05");
        assert_eq!(
            (c.metric, c.op, c.threshold, c.percent),
            (Metric::RelativeAmountChange, Op::Ge, 0.05, false)
        );
        assert_eq!(c.to_string(), "relative-amount-change>=0.05");
        let c = parse("changed-events>10");
        assert_eq!((c.metric, c.op), (Metric::ChangedEvents, Op::Gt));
        assert_eq!(c.to_string(), "changed-events>10");
        for (text, op) in [
            ("payable-change>1", Op::Gt),
            ("payable-change>=1", Op::Ge),
            ("payable-change<1", Op::Lt),
            ("payable-change<=1", Op::Le),
            (" payable-change <= 1 ", Op::Le),
        ] {
            assert_eq!(parse(text).op, op, "{text}");
        }
        assert_eq!(parse("amount-change-micros>1e6").threshold, 1e6);
        assert_eq!(parse("changed-share>.5").threshold, 0.5);
    }

    #[test]
    fn ratios_take_percentages() {
        let c = parse("relative-amount-change>=5%");
        assert_eq!(
            (c.metric, c.op, c.threshold, c.percent),
            (Metric::RelativeAmountChange, Op::Ge, 0.05, true)
        );
        assert_eq!(c.to_string(), "relative-amount-change>=5%");
        // The same number as the fraction written out, exactly.
        for (percent, fraction) in [
            ("5%", "0.05"),
            ("7%", "0.07"),
            ("12.5%", "0.125"),
            ("0.1%", "0.001"),
            ("33.3%", "0.333"),
            ("100%", "1"),
            ("0%", "0"),
            ("5 %", "0.05"),
            ("1e-3%", "0.00001"),
            ("2.5E1%", "0.25"),
        ] {
            let a = parse(&format!("changed-share>{percent}"));
            let b = parse(&format!("changed-share>{fraction}"));
            assert_eq!(a.threshold, b.threshold, "{percent} vs {fraction}");
            assert!(a.percent && !b.percent);
        }
        // Shown as written, and read back the same.
        for text in [
            "changed-share<7%",
            "changed-share<12.5%",
            "changed-share>0.01%",
        ] {
            let c = parse(text);
            assert_eq!(c.to_string(), text);
            assert_eq!(parse(&c.to_string()), c);
        }
        // A threshold made in code reads back the same too.
        for threshold in [0.05, 0.07, 1.0 / 3.0, 0.123_456_789, 1e-9] {
            let c = Condition {
                metric: Metric::RelativeAmountChange,
                op: Op::Gt,
                threshold,
                percent: true,
            };
            assert_eq!(parse(&c.to_string()).threshold, threshold, "{c}");
        }
    }

    #[test]
    fn refuses_bad_conditions_clearly() {
        let cases = [
            ("changed-share", "no operator (>, >=, <, <=)"),
            ("changed-share=0.1", "unknown operator \"=\""),
            ("changed-share==0.1", "unknown operator \"==\""),
            ("changed-share=>0.1", "unknown operator \"=>\""),
            ("changed-share!=0.1", "unknown operator \"!=\""),
            ("changed-share>>0.1", "unknown operator \">>\""),
            (">0.1", "no metric before \">\""),
            (
                "changed>1",
                "unknown metric \"changed\" (one of relative-amount-change, amount-change-micros, changed-share, changed-events, payable-change)",
            ),
            ("changed-share>", "no threshold after \">\""),
            (
                "changed-share>x",
                "\"x\" is not a threshold: expected a number or a percentage, e.g. 0.05 or 5%",
            ),
            (
                "changed-events>lots",
                "\"lots\" is not a threshold: expected a number, e.g. 1000",
            ),
            ("changed-share>inf", "\"inf\" is not a threshold"),
            ("changed-share>5%%", "\"5%%\" is not a threshold"),
            (
                "changed-events>5%",
                "changed-events is a count of events, not a ratio: give its threshold as a number, without %",
            ),
            (
                "amount-change-micros>=1%",
                "amount-change-micros is an amount in micros, not a ratio",
            ),
            (
                "relative-amount-change<-5%",
                "relative-amount-change is measured as an absolute value, never negative",
            ),
        ];
        for (text, message) in cases {
            let error = refused(text);
            assert!(
                error.contains(message),
                "{text:?}: {error:?} does not say {message:?}"
            );
        }
        assert!(refused("changed-share>1e999").contains("is not a threshold"));
        assert!(refused("changed-share>NaN").contains("is not a threshold"));
        assert_eq!(
            refused("changed-share>5"),
            "changed-share is a share of unique events, at most 1 (100%) (for 5 percent, write 5%)"
        );
        assert!(refused("changed-share>150%").contains("at most 1 (100%)"));
        // A relative change may well exceed 100%.
        assert_eq!(parse("relative-amount-change>150%").threshold, 1.5);
        assert_eq!(parse("relative-amount-change>2").threshold, 2.0);
    }

    #[test]
    fn operators_trip_at_their_boundary() {
        assert!(Op::Ge.holds(0.5, 0.5));
        assert!(!Op::Gt.holds(0.5, 0.5));
        assert!(Op::Le.holds(0.5, 0.5));
        assert!(!Op::Lt.holds(0.5, 0.5));
    }

    #[test]
    fn measured_values_read_as_a_person_writes_them() {
        let ratio = Metric::RelativeAmountChange;
        assert_eq!(ratio.shown(0.073_149_2, 0.05), "7.31%");
        assert_eq!(ratio.shown(0.0, 0.05), "0%");
        assert_eq!(ratio.shown(1.5, 0.05), "150.00%");
        assert_eq!(ratio.shown(0.000_123_4, 0.05), "0.0123%");
        // Enough decimals to tell the value from the threshold it is held
        // against, and no more.
        assert_eq!(ratio.shown(0.050_000_1, 0.05), "5.00001%");
        assert_eq!(ratio.shown(0.05, 0.05), "5.00%");
        // Up to four more decimals, however close.
        assert_eq!(ratio.shown(0.05_f64.next_up(), 0.05), "5.000000%");
        assert_eq!(Metric::ChangedShare.shown(0.18, 0.18), "18.00%");
        assert_eq!(Metric::ChangedEvents.shown(1_234_567.0, 10.0), "1,234,567");
        assert_eq!(Metric::PayableChange.shown(12.0, 10.0), "12");
        assert_eq!(
            Metric::AmountChangeMicros.shown(1_234_500_000.0, 0.0),
            "1,234.500000 = 1,234,500,000 micros"
        );
        assert_eq!(percent(0.0005), "0.0500%");
        assert_eq!(percent(0.5), "50.00%");
    }
}
