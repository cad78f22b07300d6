//! What a rule says about one event.

/// A rule's decision about one event.
///
/// Build one with [`Verdict::payable`], [`Verdict::payable_with`] or
/// [`Verdict::not_payable`]. The host rejects a batch (the run fails) if a rule
/// returns a negative rate, or a non-zero rate for an event that is not payable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Verdict {
    /// Whether the creator is paid for this event.
    pub payable: bool,
    /// The amount for this one event, in micro-units of currency
    /// (1 unit = 1,000,000 micros); 0 when the event is not payable.
    pub rate_micros: i64,
    /// A short reason code, for example `payable` or `view-only`. Reports group
    /// events by it, so keep the set of codes small and stable.
    pub reason: &'static str,
}

impl Verdict {
    /// The reason code of [`Verdict::payable`].
    pub const PAYABLE: &'static str = "payable";

    /// Payable at `rate_micros`, with the reason `payable`.
    pub const fn payable(rate_micros: i64) -> Self {
        Self::payable_with(rate_micros, Self::PAYABLE)
    }

    /// Payable at `rate_micros`, with a reason of your own.
    pub const fn payable_with(rate_micros: i64, reason: &'static str) -> Self {
        Self {
            payable: true,
            rate_micros,
            reason,
        }
    }

    /// Not payable (rate 0), with this reason.
    pub const fn not_payable(reason: &'static str) -> Self {
        Self {
            payable: false,
            rate_micros: 0,
            reason,
        }
    }

    /// Checks the two rules every verdict obeys: the rate is never negative,
    /// and it is 0 when the event is not payable.
    #[inline]
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.rate_micros < 0 {
            Err(format!("a negative rate ({})", self.rate_micros))
        } else if !self.payable && self.rate_micros != 0 {
            Err(format!(
                "a rate of {} for an event that is not payable (reason `{}`)",
                self.rate_micros, self.reason
            ))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors() {
        assert_eq!(
            Verdict::payable(30_000),
            Verdict {
                payable: true,
                rate_micros: 30_000,
                reason: "payable"
            }
        );
        assert_eq!(
            Verdict::payable_with(2_000, "video-view"),
            Verdict {
                payable: true,
                rate_micros: 2_000,
                reason: "video-view"
            }
        );
        assert_eq!(
            Verdict::not_payable("view-only"),
            Verdict {
                payable: false,
                rate_micros: 0,
                reason: "view-only"
            }
        );
    }

    #[test]
    fn check_rejects_rates_that_break_the_contract() {
        assert!(Verdict::payable(0).check().is_ok());
        assert!(Verdict::not_payable("x").check().is_ok());
        assert!(Verdict::payable(-1).check().is_err());
        let paid_but_not_payable = Verdict {
            rate_micros: 5,
            ..Verdict::not_payable("x")
        };
        assert!(paid_but_not_payable.check().is_err());
    }
}
