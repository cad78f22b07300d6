//! The reference policies: the built components (through `tally run`), the
//! rule crates run natively through the SDK's test harness
//! (`tally_rules_sdk::testing::classify_batch`) and the policies as
//! `docs/policies.md` states them (`model.rs`) agree on every clause.
//!
//! The events cover every content kind × user tier × action, for a regular and
//! a `test-` creator, in BR, IN, ID and other countries, plus creator ids that
//! only look like test accounts. Each event gets its own template, so each
//! lands in its own `(day, creator, template)` row and the output shows its
//! verdict: `payable_events` is 0 or 1 and `amount_micros` its rate.

use crate::common;
use crate::model::{self, ACTIONS, CONTENT_KINDS, Event, USER_TIERS, Verdict};
use crate::output;
use crate::support::{self, assert_maps_eq, count, count_map};
use std::collections::BTreeMap;
use tally_rules_sdk::testing::classify_batch;
use tally_rules_sdk::{Action, ContentKind, Rule, UserTier};
use tempfile::TempDir;

/// Creators: a regular one, a test account, and ids that are not test accounts
/// although they look a little like one (only the `test-` prefix counts).
const CREATORS: [&str; 7] = [
    "cr-000042",
    "test-cr-0001",
    "test-",
    "test",
    "Test-ann",
    "ann-test-x",
    "testing",
];
const COUNTRIES: [&str; 6] = ["US", "BR", "IN", "ID", "DE", "BZ"];

/// Every combination for the first two creators, and a smaller sample (each
/// kind, tier and action at least once, in two countries) for the others.
fn events() -> Vec<Event> {
    let mut events = Vec::new();
    for (c, creator) in CREATORS.iter().enumerate() {
        for (k, kind) in CONTENT_KINDS.iter().enumerate() {
            for (t, tier) in USER_TIERS.iter().enumerate() {
                for (a, action) in ACTIONS.iter().enumerate() {
                    for (n, country) in COUNTRIES.iter().enumerate() {
                        let sample = (k + t + a + n) % 5 == 0 && n < 4;
                        if c >= 2 && !sample {
                            continue;
                        }
                        let i = events.len() as i64;
                        // Three days, so the rows spread over partitions.
                        let day = model::days_from_civil(2026, 5, 10 + i % 3);
                        let occurred_ms = day * 86_400_000 + (i % 1_440) * 60_000;
                        events.push(Event {
                            event_id: format!("policy-{i:05}"),
                            occurred_ms,
                            ingested_ms: occurred_ms + 1_500,
                            creator_id: creator.to_string(),
                            template_id: format!("tpl-{i:05}"),
                            brand_id: (i % 3 != 0).then(|| format!("brand-{}", i % 4)),
                            content_kind: kind.to_string(),
                            action: action.to_string(),
                            user_tier: tier.to_string(),
                            country: country.to_string(),
                        });
                    }
                }
            }
        }
    }
    events
}

fn json_line(e: &Event) -> String {
    serde_json::json!({
        "event_id": e.event_id,
        "occurred_at": e.occurred_ms,
        "ingested_at": e.ingested_ms,
        "creator_id": e.creator_id,
        "template_id": e.template_id,
        "brand_id": e.brand_id,
        "content_kind": e.content_kind,
        "action": e.action,
        "user_tier": e.user_tier,
        "country": e.country,
    })
    .to_string()
}

fn find<T: Copy>(all: &[T], name: fn(T) -> &'static str, wanted: &str) -> T {
    *all.iter()
        .find(|v| name(**v) == wanted)
        .unwrap_or_else(|| panic!("{wanted} is not a known value"))
}

/// The verdicts of a rule crate, natively, through the SDK harness.
fn native<R: Rule>(rule: &R, events: &[Event]) -> Vec<Verdict> {
    let sdk: Vec<tally_rules_sdk::Event<'_>> = events
        .iter()
        .map(|e| {
            tally_rules_sdk::testing::event()
                .event_id(&e.event_id)
                .occurred_at_ms(e.occurred_ms)
                .ingested_at_ms(e.ingested_ms)
                .creator_id(&e.creator_id)
                .template_id(&e.template_id)
                .brand_id(e.brand_id.as_deref())
                .content_kind(find(
                    &ContentKind::ALL,
                    ContentKind::as_str,
                    &e.content_kind,
                ))
                .action(find(&Action::ALL, Action::as_str, &e.action))
                .user_tier(find(&UserTier::ALL, UserTier::as_str, &e.user_tier))
                .country(&e.country)
                .build()
        })
        .collect();
    classify_batch(rule, &sdk)
        .expect("the batch classifies")
        .into_iter()
        .map(|v| Verdict {
            payable: v.payable,
            rate_micros: v.rate_micros,
            reason: v.reason,
        })
        .collect()
}

/// `(payable, rate)` per event from the component's output rows.
fn component(rule_name: &str, events: &[Event]) -> (Vec<(bool, i64)>, serde_json::Value) {
    let dir = TempDir::new().expect("temp dir");
    let input = dir.path().join("policy-events.jsonl");
    let text: String = events.iter().map(|e| json_line(e) + "\n").collect();
    std::fs::write(&input, text).expect("write input");
    let out = dir.path().join("out");
    // Small batches: verdicts must not depend on what else is in a call.
    let report = support::run(
        &[&input],
        &common::rule(rule_name),
        &out,
        &["--batch-size", "37"],
    );
    assert_eq!(count(&report, "unique"), events.len() as u64);
    let rows = output::daily(&output::partitions(&out));
    assert_eq!(rows.len(), events.len(), "one row per event");
    let verdicts = events
        .iter()
        .map(|e| {
            let key = (e.day(), e.creator_id.clone(), e.template_id.clone());
            let row = rows
                .get(&key)
                .unwrap_or_else(|| panic!("no row for {key:?}"));
            assert_eq!(row.events, 1, "{key:?}");
            assert!(
                row.payable_events == 0 || row.payable_events == 1,
                "{key:?}"
            );
            (row.payable_events == 1, row.amount_micros)
        })
        .collect();
    (verdicts, report)
}

fn agree(
    rule_name: &str,
    version: &str,
    policy: fn(&Event) -> Verdict,
    native: Vec<Verdict>,
    expected_reasons: &[&str],
) {
    let events = events();
    let documented: Vec<Verdict> = events.iter().map(policy).collect();
    let (built, report) = component(rule_name, &events);
    assert_eq!(report["rule"]["version"], version);
    assert_eq!(native.len(), events.len());

    let mut disagreements = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let doc = documented[i];
        let nat = native[i];
        let comp = built[i];
        if nat != doc || comp != (doc.payable, doc.rate_micros) {
            disagreements.push(format!(
                "{} {} {} {} {}: documented {doc:?}, native {nat:?}, component {comp:?}",
                e.creator_id, e.content_kind, e.user_tier, e.action, e.country
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{rule_name}: {} of {} events disagree:\n{}",
        disagreements.len(),
        events.len(),
        disagreements.join("\n")
    );

    // The reasons, as the report counts them, are the documented ones, and
    // every clause was reached.
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    for v in &documented {
        *by_reason.entry(v.reason.to_string()).or_default() += 1;
    }
    assert_maps_eq(&count_map(&report, "by_reason"), &by_reason, "by reason");
    let reached: Vec<&str> = by_reason.keys().map(String::as_str).collect();
    assert_eq!(reached, expected_reasons, "{rule_name}: clauses reached");
    let payable = documented.iter().filter(|v| v.payable).count() as u64;
    assert_eq!(count(&report, "payable"), payable);
}

#[test]
fn creator_pay_v1_component_native_crate_and_document_agree() {
    let events = events();
    let native = native(&creator_pay_v1::CreatorPay, &events);
    agree(
        "creator-pay-v1",
        "1.0.0",
        model::creator_pay_v1,
        native,
        &["free-tier", "payable", "test-creator", "view-only"],
    );
}

#[test]
fn creator_pay_v2_component_native_crate_and_document_agree() {
    let events = events();
    let native = native(&creator_pay_v2::CreatorPay, &events);
    agree(
        "creator-pay-v2",
        "2.0.0",
        model::creator_pay_v2,
        native,
        &[
            "free-tier",
            "payable",
            "test-creator",
            "video-view",
            "view-only",
        ],
    );
}

#[test]
fn the_documented_policies_give_the_documented_rates() {
    // A few rates straight from the tables of docs/policies.md, so that the
    // model above is checked against the document, not only against the code.
    let base = events().into_iter().next().expect("an event");
    let with = |kind: &str, action: &str, tier: &str, country: &str, creator: &str| Event {
        content_kind: kind.to_string(),
        action: action.to_string(),
        user_tier: tier.to_string(),
        country: country.to_string(),
        creator_id: creator.to_string(),
        ..base.clone()
    };
    let rate = |v: Verdict| (v.payable, v.rate_micros, v.reason);
    let v1 = |e: &Event| rate(model::creator_pay_v1(e));
    let v2 = |e: &Event| rate(model::creator_pay_v2(e));
    let cr = "cr-1";
    assert_eq!(
        v1(&with("audio", "use", "teams", "US", cr)),
        (true, 9_600, "payable")
    );
    assert_eq!(
        v1(&with("video", "publish", "free", "US", cr)),
        (true, 25_000, "payable")
    );
    assert_eq!(
        v1(&with("image", "export", "enterprise", "BR", cr)),
        (true, 15_000, "payable")
    );
    assert_eq!(
        v1(&with("font", "export", "free", "US", cr)),
        (false, 0, "free-tier")
    );
    assert_eq!(
        v1(&with("video", "view", "enterprise", "US", cr)),
        (false, 0, "view-only")
    );
    assert_eq!(
        v1(&with("video", "use", "pro", "US", "test-x")),
        (false, 0, "test-creator")
    );
    assert_eq!(
        v2(&with("image", "use", "teams", "IN", cr)),
        (true, 7_680, "payable")
    );
    assert_eq!(
        v2(&with("image", "use", "teams", "US", cr)),
        (true, 9_600, "payable")
    );
    assert_eq!(
        v2(&with("font", "publish", "free", "ID", cr)),
        (true, 2_000, "payable")
    );
    assert_eq!(
        v2(&with("video", "view", "teams", "BR", cr)),
        (true, 2_000, "video-view")
    );
    assert_eq!(
        v2(&with("video", "view", "pro", "US", cr)),
        (false, 0, "view-only")
    );
    assert_eq!(
        v2(&with("video", "view", "free", "US", cr)),
        (false, 0, "view-only")
    );
    assert_eq!(
        v2(&with("template", "view", "enterprise", "US", cr)),
        (false, 0, "view-only")
    );
    assert_eq!(
        v2(&with("video", "view", "enterprise", "US", "test-")),
        (false, 0, "test-creator")
    );
}
