//! Test a rule natively with `cargo test`, no WebAssembly needed.
//!
//! [`event`] starts a valid event with sensible defaults; change what matters
//! to the test and call [`build`](EventBuilder::build). [`classify_one`] and
//! [`classify_batch`] encode events into the same columnar batch the host sends
//! and run the same code the WebAssembly export runs, so a test also checks that
//! the rule's verdicts survive the trip (a negative rate, for example, fails it).
//!
//! ```
//! use tally_rules_sdk::testing::{classify_batch, classify_one, event};
//! use tally_rules_sdk::{Action, Event, Rule, Verdict};
//!
//! #[derive(Default)]
//! struct PayUses;
//!
//! impl Rule for PayUses {
//!     const NAME: &'static str = "pay-uses";
//!     const VERSION: &'static str = "1.0.0";
//!
//!     fn classify(&self, event: &Event<'_>) -> Verdict {
//!         match event.action {
//!             Action::Use => Verdict::payable(1_000),
//!             _ => Verdict::not_payable("not-a-use"),
//!         }
//!     }
//! }
//!
//! assert_eq!(classify_one(&PayUses, &event().build()), Verdict::payable(1_000));
//!
//! let creator = String::from("creator-7");
//! let events = [
//!     event().creator_id(&creator).build(),
//!     event().action(Action::View).build(),
//! ];
//! assert_eq!(
//!     classify_batch(&PayUses, &events),
//!     Ok(vec![Verdict::payable(1_000), Verdict::not_payable("not-a-use")]),
//! );
//! ```

use crate::batch::{self, VerdictColumns};
use crate::{Action, ContentKind, Event, Rule, UserTier, Verdict};

/// 2026-05-01T12:00:00Z, the default `occurred_at_ms` of [`event`].
pub const DEFAULT_OCCURRED_AT_MS: i64 = 1_777_636_800_000;

/// A valid event to start a test from:
///
/// | field | default |
/// | --- | --- |
/// | `event_id` | `"event-1"` |
/// | `occurred_at_ms` | 2026-05-01T12:00:00Z ([`DEFAULT_OCCURRED_AT_MS`]) |
/// | `ingested_at_ms` | one minute later |
/// | `creator_id` | `"creator-1"` |
/// | `template_id` | `"template-1"` |
/// | `brand_id` | `None` |
/// | `content_kind` | [`ContentKind::Template`] |
/// | `action` | [`Action::Use`] |
/// | `user_tier` | [`UserTier::Pro`] |
/// | `country` | `"US"` |
pub fn event() -> EventBuilder<'static> {
    EventBuilder {
        event: Event {
            event_id: "event-1",
            occurred_at_ms: DEFAULT_OCCURRED_AT_MS,
            ingested_at_ms: DEFAULT_OCCURRED_AT_MS + 60_000,
            creator_id: "creator-1",
            template_id: "template-1",
            brand_id: None,
            content_kind: ContentKind::Template,
            action: Action::Use,
            user_tier: UserTier::Pro,
            country: "US",
        },
    }
}

/// Builds an [`Event`] for a test; start one with [`event`].
///
/// Each setter is named after the field it sets.
#[derive(Clone, Copy, Debug)]
#[must_use]
pub struct EventBuilder<'a> {
    event: Event<'a>,
}

impl<'a> EventBuilder<'a> {
    /// Sets `event_id`.
    pub fn event_id(mut self, event_id: &'a str) -> Self {
        self.event.event_id = event_id;
        self
    }

    /// Sets `occurred_at_ms`.
    pub fn occurred_at_ms(mut self, occurred_at_ms: i64) -> Self {
        self.event.occurred_at_ms = occurred_at_ms;
        self
    }

    /// Sets `ingested_at_ms`.
    pub fn ingested_at_ms(mut self, ingested_at_ms: i64) -> Self {
        self.event.ingested_at_ms = ingested_at_ms;
        self
    }

    /// Sets `creator_id`.
    pub fn creator_id(mut self, creator_id: &'a str) -> Self {
        self.event.creator_id = creator_id;
        self
    }

    /// Sets `template_id`.
    pub fn template_id(mut self, template_id: &'a str) -> Self {
        self.event.template_id = template_id;
        self
    }

    /// Sets `brand_id`: `.brand_id("acme")`, or `.brand_id(None)` for no brand.
    pub fn brand_id(mut self, brand_id: impl Into<Option<&'a str>>) -> Self {
        self.event.brand_id = brand_id.into();
        self
    }

    /// Sets `content_kind`.
    pub fn content_kind(mut self, content_kind: ContentKind) -> Self {
        self.event.content_kind = content_kind;
        self
    }

    /// Sets `action`.
    pub fn action(mut self, action: Action) -> Self {
        self.event.action = action;
        self
    }

    /// Sets `user_tier`.
    pub fn user_tier(mut self, user_tier: UserTier) -> Self {
        self.event.user_tier = user_tier;
        self
    }

    /// Sets `country`.
    pub fn country(mut self, country: &'a str) -> Self {
        self.event.country = country;
        self
    }

    /// The event.
    #[must_use]
    pub fn build(self) -> Event<'a> {
        self.event
    }
}

impl<'a> From<EventBuilder<'a>> for Event<'a> {
    fn from(builder: EventBuilder<'a>) -> Self {
        builder.build()
    }
}

/// Classifies one event as a batch of one, the way the host would.
///
/// # Panics
///
/// If the batch fails, with its message: the event is not a valid event (a
/// lower-case country, say), or the verdict breaks the contract (a negative
/// rate, or a rate for an event that is not payable).
#[track_caller]
pub fn classify_one<R: Rule>(rule: &R, event: &Event<'_>) -> Verdict {
    match classify_batch(rule, std::slice::from_ref(event)) {
        Ok(verdicts) => verdicts[0],
        Err(message) => panic!("classifying {event:?} failed: {message}"),
    }
}

/// Classifies `events` as one batch, the way the host would: the events are
/// encoded into an [`EventBatch`](crate::batch::EventBatch), run through the
/// code the WebAssembly export runs, and the verdict columns are checked with
/// [`check_verdicts`](crate::batch::check_verdicts) and decoded, one verdict
/// per event, in order.
///
/// # Errors
///
/// The message the rule component would fail the run with.
pub fn classify_batch<R: Rule>(rule: &R, events: &[Event<'_>]) -> Result<Vec<Verdict>, String> {
    let batch = batch::encode(events)?;
    let columns = batch::classify_columns(rule, &batch)?;
    let reasons = columns.reasons.clone();
    let verdicts = VerdictColumns::into_verdicts(columns);
    batch::check_verdicts(&verdicts, events.len())?;
    let rows = verdicts
        .payable
        .iter()
        .zip(&verdicts.rate_micros)
        .zip(&verdicts.reason);
    Ok(rows
        .map(|((&payable, &rate_micros), &reason)| Verdict {
            payable: payable == 1,
            rate_micros,
            reason: reasons[usize::from(reason)],
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Mirror;

    impl Rule for Mirror {
        const NAME: &'static str = "mirror";
        const VERSION: &'static str = "1.0.0";

        fn classify(&self, event: &Event<'_>) -> Verdict {
            if event.brand_id.is_some() {
                Verdict::payable_with(i64::from(event.user_tier.code()), "branded")
            } else {
                Verdict::not_payable(event.content_kind.as_str())
            }
        }
    }

    #[test]
    fn default_event_is_valid_and_documented() {
        let e = event().build();
        assert_eq!(e.event_id, "event-1");
        assert_eq!(e.ingested_at_ms - e.occurred_at_ms, 60_000);
        assert_eq!((e.creator_id, e.template_id), ("creator-1", "template-1"));
        assert_eq!(e.brand_id, None);
        assert_eq!(
            (e.content_kind, e.action, e.user_tier, e.country),
            (ContentKind::Template, Action::Use, UserTier::Pro, "US")
        );
        assert_eq!(classify_one(&Mirror, &e), Verdict::not_payable("template"));
    }

    #[test]
    fn setters_take_borrowed_strings() {
        let brand = String::from("acme");
        let e: Event<'_> = event()
            .brand_id(brand.as_str())
            .user_tier(UserTier::Teams)
            .into();
        assert_eq!(e.brand_id, Some("acme"));
        assert_eq!(event().brand_id("x").brand_id(None).build().brand_id, None);
        assert_eq!(
            classify_one(&Mirror, &e),
            Verdict::payable_with(2, "branded")
        );
    }

    #[test]
    fn classify_batch_keeps_order_and_reasons() {
        let events = [
            event().content_kind(ContentKind::Video).build(),
            event()
                .brand_id("b")
                .user_tier(UserTier::Enterprise)
                .build(),
            event().content_kind(ContentKind::Font).build(),
            event().content_kind(ContentKind::Video).build(),
        ];
        assert_eq!(
            classify_batch(&Mirror, &events),
            Ok(vec![
                Verdict::not_payable("video"),
                Verdict::payable_with(3, "branded"),
                Verdict::not_payable("font"),
                Verdict::not_payable("video"),
            ])
        );
        assert_eq!(classify_batch(&Mirror, &[]), Ok(vec![]));
    }

    #[test]
    fn invalid_events_fail_like_they_would_in_the_host() {
        let lower = event().country("us").build();
        let message = classify_batch(&Mirror, &[lower]).unwrap_err();
        assert!(
            message.contains("not two ASCII upper-case letters"),
            "{message}"
        );
    }

    #[test]
    #[should_panic(expected = "returned a negative rate")]
    fn classify_one_panics_on_a_verdict_that_breaks_the_contract() {
        #[derive(Default)]
        struct Negative;
        impl Rule for Negative {
            const NAME: &'static str = "negative";
            const VERSION: &'static str = "1.0.0";
            fn classify(&self, _: &Event<'_>) -> Verdict {
                Verdict::payable(-1)
            }
        }
        classify_one(&Negative, &event().build());
    }
}
