//! The reference `creator-pay` policy, version 1.0.0.
//!
//! Checked in order, the first clause that applies decides:
//!
//! 1. a creator id starting with `test-` is not payable (`test-creator`);
//! 2. a `view` is not payable (`view-only`);
//! 3. the free tier is not payable unless it publishes (`free-tier`);
//! 4. anything else is payable (`payable`) at
//!    `base(content_kind) * tier_pct(user_tier) / 100` micros.

#![forbid(unsafe_code)]

use tally_rules_sdk::{Action, ContentKind, Event, Rule, UserTier, Verdict};

/// `creator-pay` 1.0.0.
#[derive(Debug, Default)]
pub struct CreatorPay;

impl Rule for CreatorPay {
    const NAME: &'static str = "creator-pay";
    const VERSION: &'static str = "1.0.0";

    fn classify(&self, event: &Event<'_>) -> Verdict {
        if event.creator_id.starts_with("test-") {
            return Verdict::not_payable("test-creator");
        }
        if event.action == Action::View {
            return Verdict::not_payable("view-only");
        }
        if event.user_tier == UserTier::Free && event.action != Action::Publish {
            return Verdict::not_payable("free-tier");
        }
        Verdict::payable(base(event.content_kind) * tier_pct(event.user_tier) / 100)
    }
}

tally_rules_sdk::export_rule!(CreatorPay);

/// The base rate of a content kind, in micros.
fn base(kind: ContentKind) -> i64 {
    match kind {
        ContentKind::Template => 30_000,
        ContentKind::Image => 10_000,
        ContentKind::Video => 50_000,
        ContentKind::Audio => 8_000,
        ContentKind::Font => 5_000,
    }
}

/// The percentage of the base rate paid for a user tier.
fn tier_pct(tier: UserTier) -> i64 {
    match tier {
        UserTier::Free => 50,
        UserTier::Pro => 100,
        UserTier::Teams => 120,
        UserTier::Enterprise => 150,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_rules_sdk::testing::{classify_batch, classify_one, event};

    const KINDS: [ContentKind; 5] = ContentKind::ALL;
    const TIERS: [UserTier; 4] = UserTier::ALL;

    fn verdict(kind: ContentKind, action: Action, tier: UserTier) -> Verdict {
        let e = event()
            .content_kind(kind)
            .action(action)
            .user_tier(tier)
            .build();
        classify_one(&CreatorPay, &e)
    }

    #[test]
    fn metadata() {
        assert_eq!(CreatorPay::NAME, "creator-pay");
        assert_eq!(CreatorPay::VERSION, "1.0.0");
        assert_eq!(CreatorPay::VERSION, env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn rates_for_every_kind_and_paying_tier() {
        // (kind, [pro, teams, enterprise]) = base * [100, 120, 150] / 100.
        let table = [
            (ContentKind::Template, [30_000, 36_000, 45_000]),
            (ContentKind::Image, [10_000, 12_000, 15_000]),
            (ContentKind::Video, [50_000, 60_000, 75_000]),
            (ContentKind::Audio, [8_000, 9_600, 12_000]),
            (ContentKind::Font, [5_000, 6_000, 7_500]),
        ];
        let tiers = [UserTier::Pro, UserTier::Teams, UserTier::Enterprise];
        for (kind, rates) in table {
            for (tier, rate) in tiers.into_iter().zip(rates) {
                for action in [Action::Use, Action::Export, Action::Publish] {
                    assert_eq!(
                        verdict(kind, action, tier),
                        Verdict::payable(rate),
                        "{kind} {action} {tier}"
                    );
                }
            }
        }
    }

    #[test]
    fn free_tier_publish_is_payable_at_half_rate() {
        let half = [15_000, 5_000, 25_000, 4_000, 2_500];
        for (kind, rate) in KINDS.into_iter().zip(half) {
            assert_eq!(
                verdict(kind, Action::Publish, UserTier::Free),
                Verdict::payable(rate),
                "{kind}"
            );
        }
    }

    #[test]
    fn free_tier_use_and_export_are_not_payable() {
        for kind in KINDS {
            for action in [Action::Use, Action::Export] {
                assert_eq!(
                    verdict(kind, action, UserTier::Free),
                    Verdict::not_payable("free-tier")
                );
            }
        }
    }

    #[test]
    fn views_are_never_payable() {
        for kind in KINDS {
            for tier in TIERS {
                assert_eq!(
                    verdict(kind, Action::View, tier),
                    Verdict::not_payable("view-only"),
                    "{kind} {tier}"
                );
            }
        }
    }

    #[test]
    fn test_creators_are_never_payable_and_come_first() {
        for kind in KINDS {
            for tier in TIERS {
                for action in Action::ALL {
                    let e = event()
                        .creator_id("test-ann")
                        .content_kind(kind)
                        .action(action)
                        .user_tier(tier)
                        .build();
                    assert_eq!(
                        classify_one(&CreatorPay, &e),
                        Verdict::not_payable("test-creator")
                    );
                }
            }
        }
        // Only the `test-` prefix counts.
        for creator in ["test", "Test-ann", "ann-test-", "testing"] {
            let e = event().creator_id(creator).build();
            assert_eq!(classify_one(&CreatorPay, &e), Verdict::payable(30_000));
        }
    }

    #[test]
    fn other_fields_do_not_matter() {
        let e = event()
            .country("BR")
            .brand_id("acme")
            .template_id("t-9")
            .build();
        assert_eq!(classify_one(&CreatorPay, &e), Verdict::payable(30_000));
    }

    #[test]
    fn a_batch_gets_one_verdict_per_event_in_order() {
        let events = [
            event().creator_id("test-bo").build(),
            event()
                .action(Action::View)
                .content_kind(ContentKind::Video)
                .build(),
            event().user_tier(UserTier::Free).build(),
            event()
                .user_tier(UserTier::Free)
                .action(Action::Publish)
                .content_kind(ContentKind::Video)
                .build(),
            event()
                .user_tier(UserTier::Enterprise)
                .content_kind(ContentKind::Font)
                .build(),
            event().creator_id("test-").action(Action::View).build(),
        ];
        assert_eq!(
            classify_batch(&CreatorPay, &events),
            Ok(vec![
                Verdict::not_payable("test-creator"),
                Verdict::not_payable("view-only"),
                Verdict::not_payable("free-tier"),
                Verdict::payable(25_000),
                Verdict::payable(7_500),
                Verdict::not_payable("test-creator"),
            ])
        );
    }

    #[test]
    fn batch_and_single_classification_agree_on_every_combination() {
        let mut events = Vec::new();
        for creator in ["creator-1", "test-1"] {
            for kind in KINDS {
                for action in Action::ALL {
                    for tier in TIERS {
                        events.push(
                            event()
                                .creator_id(creator)
                                .content_kind(kind)
                                .action(action)
                                .user_tier(tier)
                                .build(),
                        );
                    }
                }
            }
        }
        let batch = classify_batch(&CreatorPay, &events).unwrap();
        let single: Vec<_> = events.iter().map(|e| CreatorPay.classify(e)).collect();
        assert_eq!(batch, single);
    }
}
