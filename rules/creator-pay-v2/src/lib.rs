//! The reference `creator-pay` policy, version 2.0.0.
//!
//! Checked in order, the first clause that applies decides:
//!
//! 1. a creator id starting with `test-` is not payable (`test-creator`);
//! 2. a `view` of a `video` by a `teams` or `enterprise` user is payable at a
//!    flat 2000 micros (`video-view`); any other `view` is not payable
//!    (`view-only`);
//! 3. the free tier is not payable unless it publishes (`free-tier`);
//! 4. anything else is payable (`payable`) at
//!    `base(content_kind) * tier_pct(user_tier) / 100` micros (as in 1.0.0, but
//!    the `image` base is 8000), then times `80 / 100` in `BR`, `IN` and `ID`.

#![forbid(unsafe_code)]

use tally_rules_sdk::{Action, ContentKind, Event, Rule, UserTier, Verdict};

/// `creator-pay` 2.0.0.
#[derive(Debug, Default)]
pub struct CreatorPay;

impl Rule for CreatorPay {
    const NAME: &'static str = "creator-pay";
    const VERSION: &'static str = "2.0.0";

    fn classify(&self, event: &Event<'_>) -> Verdict {
        if event.creator_id.starts_with("test-") {
            return Verdict::not_payable("test-creator");
        }
        if event.action == Action::View {
            let teams_or_enterprise =
                matches!(event.user_tier, UserTier::Teams | UserTier::Enterprise);
            if event.content_kind == ContentKind::Video && teams_or_enterprise {
                return Verdict::payable_with(2_000, "video-view");
            }
            return Verdict::not_payable("view-only");
        }
        if event.user_tier == UserTier::Free && event.action != Action::Publish {
            return Verdict::not_payable("free-tier");
        }
        let rate = base(event.content_kind) * tier_pct(event.user_tier) / 100;
        if matches!(event.country, "BR" | "IN" | "ID") {
            Verdict::payable(rate * 80 / 100)
        } else {
            Verdict::payable(rate)
        }
    }
}

tally_rules_sdk::export_rule!(CreatorPay);

/// The base rate of a content kind, in micros.
fn base(kind: ContentKind) -> i64 {
    match kind {
        ContentKind::Template => 30_000,
        ContentKind::Image => 8_000,
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
    const REGIONAL: [&str; 3] = ["BR", "IN", "ID"];

    fn verdict(kind: ContentKind, action: Action, tier: UserTier, country: &str) -> Verdict {
        let e = event()
            .content_kind(kind)
            .action(action)
            .user_tier(tier)
            .country(country)
            .build();
        classify_one(&CreatorPay, &e)
    }

    #[test]
    fn metadata() {
        assert_eq!(CreatorPay::NAME, "creator-pay");
        assert_eq!(CreatorPay::VERSION, "2.0.0");
        assert_eq!(CreatorPay::VERSION, env!("CARGO_PKG_VERSION"));
    }

    /// (kind, [free, pro, teams, enterprise]) = base * [50, 100, 120, 150] / 100.
    const RATES: [(ContentKind, [i64; 4]); 5] = [
        (ContentKind::Template, [15_000, 30_000, 36_000, 45_000]),
        (ContentKind::Image, [4_000, 8_000, 9_600, 12_000]),
        (ContentKind::Video, [25_000, 50_000, 60_000, 75_000]),
        (ContentKind::Audio, [4_000, 8_000, 9_600, 12_000]),
        (ContentKind::Font, [2_500, 5_000, 6_000, 7_500]),
    ];

    /// The same rates times 80 / 100, for BR, IN and ID.
    const REGIONAL_RATES: [(ContentKind, [i64; 4]); 5] = [
        (ContentKind::Template, [12_000, 24_000, 28_800, 36_000]),
        (ContentKind::Image, [3_200, 6_400, 7_680, 9_600]),
        (ContentKind::Video, [20_000, 40_000, 48_000, 60_000]),
        (ContentKind::Audio, [3_200, 6_400, 7_680, 9_600]),
        (ContentKind::Font, [2_000, 4_000, 4_800, 6_000]),
    ];

    #[test]
    fn rates_for_every_kind_and_tier() {
        for (kind, rates) in RATES {
            for (tier, rate) in TIERS.into_iter().zip(rates) {
                // The free tier is only paid when it publishes.
                let actions: &[Action] = if tier == UserTier::Free {
                    &[Action::Publish]
                } else {
                    &[Action::Use, Action::Export, Action::Publish]
                };
                for &action in actions {
                    for country in ["US", "DE", "JP", "BZ", "NI", "IE"] {
                        assert_eq!(
                            verdict(kind, action, tier, country),
                            Verdict::payable(rate),
                            "{kind} {action} {tier} {country}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn regional_pricing_in_br_in_and_id() {
        for (kind, rates) in REGIONAL_RATES {
            for (tier, rate) in TIERS.into_iter().zip(rates) {
                for country in REGIONAL {
                    assert_eq!(
                        verdict(kind, Action::Publish, tier, country),
                        Verdict::payable(rate),
                        "{kind} {tier} {country}"
                    );
                }
            }
        }
    }

    #[test]
    fn regional_pricing_divides_after_the_tier_percentage() {
        // Teams image: 8000 * 120 / 100 = 9600, then 9600 * 80 / 100 = 7680.
        let v = verdict(ContentKind::Image, Action::Use, UserTier::Teams, "IN");
        assert_eq!(v, Verdict::payable(7_680));
        assert_eq!(v.reason, "payable");
    }

    #[test]
    fn video_views_by_teams_and_enterprise_pay_a_flat_rate_everywhere() {
        for tier in [UserTier::Teams, UserTier::Enterprise] {
            for country in ["US", "BR", "IN", "ID"] {
                assert_eq!(
                    verdict(ContentKind::Video, Action::View, tier, country),
                    Verdict::payable_with(2_000, "video-view"),
                    "{tier} {country}"
                );
            }
        }
    }

    #[test]
    fn every_other_view_is_view_only() {
        for kind in KINDS {
            for tier in TIERS {
                let video_view = kind == ContentKind::Video
                    && matches!(tier, UserTier::Teams | UserTier::Enterprise);
                if video_view {
                    continue;
                }
                for country in ["US", "BR"] {
                    assert_eq!(
                        verdict(kind, Action::View, tier, country),
                        Verdict::not_payable("view-only"),
                        "{kind} {tier} {country}"
                    );
                }
            }
        }
        // Views come before the free tier: a free video view is view-only.
        assert_eq!(
            verdict(ContentKind::Video, Action::View, UserTier::Free, "US"),
            Verdict::not_payable("view-only")
        );
    }

    #[test]
    fn free_tier_use_and_export_are_not_payable() {
        for kind in KINDS {
            for action in [Action::Use, Action::Export] {
                for country in ["US", "BR"] {
                    assert_eq!(
                        verdict(kind, action, UserTier::Free, country),
                        Verdict::not_payable("free-tier")
                    );
                }
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
                        .country("BR")
                        .build();
                    assert_eq!(
                        classify_one(&CreatorPay, &e),
                        Verdict::not_payable("test-creator")
                    );
                }
            }
        }
        for creator in ["test", "Test-ann", "ann-test-", "testing"] {
            let e = event().creator_id(creator).build();
            assert_eq!(classify_one(&CreatorPay, &e), Verdict::payable(30_000));
        }
    }

    #[test]
    fn a_batch_gets_one_verdict_per_event_in_order() {
        let events = [
            event()
                .creator_id("test-bo")
                .content_kind(ContentKind::Video)
                .action(Action::View)
                .user_tier(UserTier::Enterprise)
                .build(),
            event()
                .content_kind(ContentKind::Video)
                .action(Action::View)
                .user_tier(UserTier::Teams)
                .country("BR")
                .build(),
            event()
                .content_kind(ContentKind::Video)
                .action(Action::View)
                .build(),
            event()
                .user_tier(UserTier::Free)
                .action(Action::Export)
                .build(),
            event()
                .user_tier(UserTier::Free)
                .action(Action::Publish)
                .content_kind(ContentKind::Image)
                .country("ID")
                .build(),
            event().content_kind(ContentKind::Image).build(),
        ];
        assert_eq!(
            classify_batch(&CreatorPay, &events),
            Ok(vec![
                Verdict::not_payable("test-creator"),
                Verdict::payable_with(2_000, "video-view"),
                Verdict::not_payable("view-only"),
                Verdict::not_payable("free-tier"),
                Verdict::payable(3_200),
                Verdict::payable(8_000),
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
                        for country in ["US", "BR", "IN", "ID", "FR"] {
                            events.push(
                                event()
                                    .creator_id(creator)
                                    .content_kind(kind)
                                    .action(action)
                                    .user_tier(tier)
                                    .country(country)
                                    .build(),
                            );
                        }
                    }
                }
            }
        }
        let batch = classify_batch(&CreatorPay, &events).unwrap();
        let single: Vec<_> = events.iter().map(|e| CreatorPay.classify(e)).collect();
        assert_eq!(batch, single);
    }
}
