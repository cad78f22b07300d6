//! `--fail-if`: thresholds that make a comparison fail, for gating rule changes
//! in CI.
//!
//! A condition is `<metric><op><number>`, for example
//! `relative-amount-change>=0.05`. Metrics: `relative-amount-change` (absolute
//! value of the relative change of the amount), `amount-change-micros` (absolute
//! value), `changed-share` (share of unique events whose verdict changed),
//! `changed-events`, `payable-change` (absolute change of payable events).
//! Operators: `>`, `>=`, `<`, `<=`.

use super::Comparison;
use std::fmt;
use std::str::FromStr;

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
    fn name(self) -> &'static str {
        METRICS
            .iter()
            .find(|(_, m)| *m == self)
            .map_or("?", |(n, _)| n)
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
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
        }
    }

    fn symbol(self) -> &'static str {
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
    pub threshold: f64,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}{}",
            self.metric.name(),
            self.op.symbol(),
            self.threshold
        )
    }
}

impl FromStr for Condition {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let at = text.find(['>', '<']).ok_or_else(|| {
            format!("{text:?}: expected <metric><op><number>, e.g. changed-share>0.01")
        })?;
        let (name, rest) = text.split_at(at);
        let (op, number) = if let Some(n) = rest.strip_prefix(">=") {
            (Op::Ge, n)
        } else if let Some(n) = rest.strip_prefix("<=") {
            (Op::Le, n)
        } else if let Some(n) = rest.strip_prefix('>') {
            (Op::Gt, n)
        } else {
            (Op::Lt, &rest[1..])
        };
        let metric = METRICS
            .iter()
            .find(|(n, _)| *n == name.trim())
            .map(|(_, m)| *m)
            .ok_or_else(|| {
                let names: Vec<&str> = METRICS.iter().map(|(n, _)| *n).collect();
                format!(
                    "{text:?}: unknown metric {name:?} (one of {})",
                    names.join(", ")
                )
            })?;
        let threshold: f64 = number
            .trim()
            .parse()
            .map_err(|_| format!("{text:?}: {number:?} is not a number"))?;
        if !threshold.is_finite() {
            return Err(format!("{text:?}: the threshold must be a finite number"));
        }
        Ok(Condition {
            metric,
            op,
            threshold,
        })
    }
}

/// The conditions that hold for `c`, each with the measured value.
pub fn tripped(c: &Comparison, conditions: &[Condition]) -> Vec<(Condition, f64)> {
    conditions
        .iter()
        .map(|cond| (*cond, cond.metric.value(c)))
        .filter(|(cond, value)| cond.op.holds(*value, cond.threshold))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_conditions() {
        let c: Condition = "relative-amount-change>=0.05".parse().unwrap();
        assert_eq!(
            (c.metric, c.op, c.threshold),
            (Metric::RelativeAmountChange, Op::Ge, 0.05)
        );
        let c: Condition = "changed-events>10".parse().unwrap();
        assert_eq!((c.metric, c.op), (Metric::ChangedEvents, Op::Gt));
        assert_eq!(c.to_string(), "changed-events>10");
        assert!("changed>1".parse::<Condition>().is_err());
        assert!("changed-share".parse::<Condition>().is_err());
        assert!("changed-share>x".parse::<Condition>().is_err());
        assert!("changed-share>inf".parse::<Condition>().is_err());
    }

    #[test]
    fn operators_trip_at_their_boundary() {
        assert!(Op::Ge.holds(0.5, 0.5));
        assert!(!Op::Gt.holds(0.5, 0.5));
        assert!(Op::Le.holds(0.5, 0.5));
        assert!(!Op::Lt.holds(0.5, 0.5));
    }
}
