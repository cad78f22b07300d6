//! The comparison report explains the money: on generated traffic, every
//! split of the change of the amount (by kind of verdict change, by reasons,
//! by content kind, user tier, country, day, and the creators' histogram)
//! adds up exactly to the total change; the splits say what the reference
//! policies say changed from creator-pay 1.0.0 to 2.0.0
//! (`docs/policies.md`); and swapping the rules turns each figure around.

use crate::common::{self, s};
use crate::compare::compare_json;
use crate::support;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use tempfile::TempDir;

const SEED: u64 = 1_300_012;

fn int(v: &Value, what: &str) -> i128 {
    i128::from(
        v.as_i64()
            .unwrap_or_else(|| panic!("{what}: {v} is not an integer")),
    )
}

fn list<'a>(c: &'a Value, path: &[&str]) -> &'a Vec<Value> {
    let mut v = c;
    for key in path {
        v = &v[key];
    }
    v.as_array()
        .unwrap_or_else(|| panic!("{} is not a list", path.join(".")))
}

/// The comparison of `a` against `b` on `inputs`, as JSON.
fn compare(inputs: &[&Path], a: &Path, b: &Path, extra: &[&str]) -> Value {
    let mut args = Vec::new();
    for input in inputs {
        args.extend(["--input", s(input)]);
    }
    args.extend(["--rule", s(a), "--rule", s(b)]);
    args.extend_from_slice(extra);
    compare_json(&args, &[]).1
}

/// Checks that every split of `c` adds up exactly to its totals: amounts in
/// 128-bit integers, each part's delta its own B minus A.
fn assert_adds_up(c: &Value, what: &str) {
    let total_a = int(&c["totals_a"]["amount_micros"], "totals_a");
    let total_b = int(&c["totals_b"]["amount_micros"], "totals_b");
    let delta = int(&c["amount_delta"], "amount_delta");
    assert_eq!(delta, total_b - total_a, "{what}: amount_delta");
    let unique = c["totals_a"]["unique"].as_u64().expect("unique");
    let changed: u64 = [
        "payable_to_not_payable",
        "not_payable_to_payable",
        "rate_changed",
        "reason_changed",
    ]
    .iter()
    .map(|k| c["verdicts"][k].as_u64().expect("a count"))
    .sum();
    let splits: [(&[&str], bool); 6] = [
        (&["attribution", "by_verdict_change"], false),
        (&["attribution", "by_transition"], false),
        (&["attribution", "by_content_kind"], true),
        (&["attribution", "by_user_tier"], true),
        (&["attribution", "by_country"], true),
        (&["days"], true),
    ];
    for (path, shares) in splits {
        let name = format!("{what}: {}", path.join("."));
        let parts = list(c, path);
        assert!(!parts.is_empty(), "{name} is empty");
        let (mut a, mut b, mut d, mut events) = (0i128, 0i128, 0i128, 0u64);
        for part in parts {
            let (pa, pb, pd) = (
                int(&part["amount_a"], &name),
                int(&part["amount_b"], &name),
                int(&part["delta"], &name),
            );
            assert_eq!(pd, pb - pa, "{name}: {part}");
            a += pa;
            b += pb;
            d += pd;
            events += part["events"].as_u64().expect("events");
        }
        assert_eq!(
            (a, b, d),
            (total_a, total_b, delta),
            "{name} does not add up"
        );
        assert_eq!(events, unique, "{name}: events");
        if shares {
            let sum = |field: &str| -> u64 {
                parts
                    .iter()
                    .map(|p| p[field].as_u64().expect("a count"))
                    .sum()
            };
            assert_eq!(sum("changed"), changed, "{name}: changed");
            assert_eq!(
                (sum("payable_a"), sum("payable_b")),
                (
                    c["totals_a"]["payable"].as_u64().expect("payable"),
                    c["totals_b"]["payable"].as_u64().expect("payable")
                ),
                "{name}: payable"
            );
        }
    }
    // Each kind of verdict change is the sum of its pairs of reasons.
    let mut per_kind: BTreeMap<String, (u64, i128)> = BTreeMap::new();
    for t in list(c, &["attribution", "by_transition"]) {
        let e = per_kind
            .entry(t["transition"].as_str().expect("kind").to_string())
            .or_default();
        e.0 += t["events"].as_u64().expect("events");
        e.1 += int(&t["delta"], "delta");
    }
    for k in list(c, &["attribution", "by_verdict_change"]) {
        let kind = k["transition"].as_str().expect("kind");
        let want = per_kind.get(kind).copied().unwrap_or_default();
        assert_eq!(
            (
                k["events"].as_u64().expect("events"),
                int(&k["delta"], "delta")
            ),
            want,
            "{what}: {kind}"
        );
        assert_eq!(k["events"], c["verdicts"][kind], "{what}: {kind}");
    }
    // The creators: every one gains, loses or stays; the histogram holds every
    // paid one, and its changes add up to the total change.
    let n = &c["creators"];
    let count = |f: &str| n[f].as_u64().unwrap_or_else(|| panic!("creators.{f}"));
    assert_eq!(
        count("gaining") + count("losing") + count("unchanged"),
        count("with_events"),
        "{what}: creators"
    );
    let buckets = list(c, &["creator_change_histogram"]);
    assert_eq!(buckets.len(), 16, "{what}: buckets");
    let held: u64 = buckets
        .iter()
        .map(|b| b["creators"].as_u64().expect("creators"))
        .sum();
    assert_eq!(
        held,
        count("with_events") - count("paid_under_neither"),
        "{what}"
    );
    let (mut a, mut b, mut d) = (0i128, 0i128, 0i128);
    for bucket in buckets {
        a += int(&bucket["amount_a"], "bucket");
        b += int(&bucket["amount_b"], "bucket");
        d += int(&bucket["delta"], "bucket");
    }
    assert_eq!(
        (a, b, d),
        (total_a, total_b, delta),
        "{what}: the histogram"
    );
    let bucket = |label: &str| -> &Value {
        buckets
            .iter()
            .find(|b| b["label"] == label)
            .unwrap_or_else(|| panic!("no bucket {label}"))
    };
    assert_eq!(
        bucket("new under B")["creators"].as_u64(),
        Some(count("paid_only_under_b")),
        "{what}"
    );
    assert_eq!(
        bucket("-100% (no longer paid)")["creators"].as_u64(),
        Some(count("paid_only_under_a")),
        "{what}"
    );
    assert_eq!(bucket("new under B")["amount_a"], 0, "{what}");
    assert_eq!(bucket("-100% (no longer paid)")["amount_b"], 0, "{what}");
}

/// The part of a split with `key` (or `transition`).
fn part<'a>(c: &'a Value, split: &str, key: &str) -> &'a Value {
    list(c, &["attribution", split])
        .iter()
        .find(|p| p["key"] == key || p["transition"] == key)
        .unwrap_or_else(|| panic!("no {key} in {split}"))
}

/// creator-pay 2.0.0 against 1.0.0, as the policies document it: video views
/// by teams and enterprise users become payable at 2000 micros; images pay
/// less; BR, IN and ID pay 80%; nothing else changes, and nothing payable
/// stops being so.
fn assert_explains_v1_to_v2(c: &Value) {
    let kind = |k: &str| part(c, "by_verdict_change", k);
    for none in ["payable_to_not_payable", "reason_changed"] {
        assert_eq!(kind(none)["events"], 0, "{none}");
    }
    assert_eq!(kind("unchanged")["delta"], 0);
    // The new payable events are exactly the video views, at the flat rate.
    let gained = list(c, &["attribution", "by_transition"])
        .iter()
        .filter(|t| t["transition"] == "not_payable_to_payable")
        .collect::<Vec<_>>();
    assert_eq!(gained.len(), 1, "{gained:?}");
    assert_eq!(
        (
            gained[0]["a_reason"].as_str(),
            gained[0]["b_reason"].as_str()
        ),
        (Some("view-only"), Some("video-view"))
    );
    let views = gained[0]["events"].as_u64().expect("events");
    assert!(views > 0);
    assert_eq!(int(&gained[0]["delta"], "delta"), 2_000 * i128::from(views));
    // Rate changes only lower rates, and only payable to payable.
    for t in list(c, &["attribution", "by_transition"])
        .iter()
        .filter(|t| t["transition"] == "rate_changed")
    {
        assert_eq!(
            (t["a_reason"].as_str(), t["b_reason"].as_str()),
            (Some("payable"), Some("payable"))
        );
        assert!(int(&t["delta"], "delta") < 0, "{t}");
    }
    // Only video views of teams and enterprise users gain: free and pro lose,
    // as do every content kind but video (video views can outweigh).
    for tier in ["free", "pro"] {
        assert!(
            int(&part(c, "by_user_tier", tier)["delta"], tier) < 0,
            "{tier}"
        );
    }
    for content in ["template", "image", "audio", "font"] {
        let p = part(c, "by_content_kind", content);
        assert!(int(&p["delta"], content) < 0, "{content}: {p}");
        assert_eq!(p["payable_a"], p["payable_b"], "{content}: {p}");
    }
    // Regional pricing: the three countries lose about a fifth (80% of every
    // payable rate, images less again); elsewhere only images lose (a fifth
    // of their share) and video views gain.
    for country in list(c, &["attribution", "by_country"]) {
        let (a, d) = (
            int(&country["amount_a"], "country"),
            int(&country["delta"], "country"),
        );
        let code = country["key"].as_str().expect("country");
        if a == 0 {
            continue;
        }
        let percent = d * 100 / a;
        if ["BR", "IN", "ID"].contains(&code) {
            assert!((-40..=-15).contains(&percent), "{code}: {percent}%");
        } else {
            assert!((-15..=5).contains(&percent), "{code}: {percent}%");
        }
    }
}

/// What `c` says with A and B swapped: every part's amounts swapped and its
/// delta negated, the verdict changes each way swapped.
fn swapped(c: &Value) -> Value {
    let mut v = c.clone();
    let swap = |p: &mut Value| {
        let (a, b) = (p["amount_a"].clone(), p["amount_b"].clone());
        p["amount_a"] = b;
        p["amount_b"] = a;
        p["delta"] = Value::from(-p["delta"].as_i64().expect("delta"));
        if p.get("payable_a").is_some() {
            let (a, b) = (p["payable_a"].clone(), p["payable_b"].clone());
            p["payable_a"] = b;
            p["payable_b"] = a;
        }
        if p.get("a_reason").is_some() {
            let (a, b) = (p["a_reason"].clone(), p["b_reason"].clone());
            p["a_reason"] = b;
            p["b_reason"] = a;
        }
        let turned = match p.get("transition").and_then(Value::as_str) {
            Some("payable_to_not_payable") => Some("not_payable_to_payable"),
            Some("not_payable_to_payable") => Some("payable_to_not_payable"),
            _ => None,
        };
        if let Some(t) = turned {
            p["transition"] = Value::from(t);
        }
    };
    for split in [
        "by_verdict_change",
        "by_transition",
        "by_content_kind",
        "by_user_tier",
        "by_country",
    ] {
        for p in v["attribution"][split].as_array_mut().expect("a split") {
            swap(p);
        }
    }
    for p in v["days"].as_array_mut().expect("days") {
        swap(p);
    }
    // The pairs are listed by kind, then reasons: sort the swapped ones so.
    let order = |t: &Value| {
        let kinds = [
            "payable_to_not_payable",
            "not_payable_to_payable",
            "rate_changed",
            "reason_changed",
            "unchanged",
        ];
        (
            kinds.iter().position(|k| t["transition"] == *k),
            t["a_reason"].as_str().map(String::from),
            t["b_reason"].as_str().map(String::from),
        )
    };
    let pairs = v["attribution"]["by_transition"]
        .as_array_mut()
        .expect("pairs");
    pairs.sort_by_key(order);
    let kinds = v["attribution"]["by_verdict_change"]
        .as_array_mut()
        .expect("kinds");
    kinds.sort_by_key(order);
    v
}

#[test]
fn every_split_of_the_change_adds_up_exactly_and_explains_v2() {
    let dir = TempDir::new().expect("temp dir");
    let (jsonl, _) = support::generate(dir.path(), "jsonl", 120_000, SEED, "jsonl", 60_000);
    let (parquet, _) =
        support::generate(dir.path(), "parquet", 60_000, SEED + 1, "parquet", 30_000);
    let (v1, v2) = (
        common::rule("creator-pay-v1"),
        common::rule("creator-pay-v2"),
    );
    for (name, inputs) in [
        ("jsonl", vec![jsonl.as_path()]),
        ("parquet", vec![parquet.as_path()]),
        ("both", vec![jsonl.as_path(), parquet.as_path()]),
    ] {
        let forward = compare(&inputs, &v1, &v2, &[]);
        assert_adds_up(&forward, &format!("{name} v1 -> v2"));
        assert_explains_v1_to_v2(&forward);
        assert!(int(&forward["amount_delta"], "delta") < 0, "v2 pays less");
        // Creators paid only under v2 (by video views alone) are counted as new.
        assert!(forward["creators"]["paid_only_under_b"].as_u64() > Some(0));

        let backward = compare(&inputs, &v2, &v1, &[]);
        assert_adds_up(&backward, &format!("{name} v2 -> v1"));
        let want = swapped(&forward);
        for split in [
            "by_verdict_change",
            "by_transition",
            "by_content_kind",
            "by_user_tier",
            "by_country",
        ] {
            assert_eq!(
                backward["attribution"][split], want["attribution"][split],
                "{name}: {split} with the rules swapped"
            );
        }
        assert_eq!(backward["days"], want["days"], "{name}: days swapped");
        // Creators new under v2 are the ones no longer paid going back.
        assert_eq!(
            backward["creators"]["paid_only_under_a"],
            forward["creators"]["paid_only_under_b"]
        );
        assert_eq!(
            backward["creators"]["gaining"],
            forward["creators"]["losing"]
        );
        assert_eq!(
            backward["creators"]["losing"],
            forward["creators"]["gaining"]
        );
    }

    // The same through the out-of-core path, shard by shard.
    let work = dir.path().join("work");
    std::fs::create_dir(&work).expect("work dir");
    let inputs = [jsonl.as_path(), parquet.as_path()];
    let mut memory = compare(&inputs, &v1, &v2, &[]);
    let mut sharded = compare(
        &inputs,
        &v1,
        &v2,
        &["--shards", "4", "--work-dir", s(&work)],
    );
    assert_adds_up(&sharded, "sharded v1 -> v2");
    for v in [&mut memory, &mut sharded] {
        v.as_object_mut().expect("object").remove("elapsed_seconds");
    }
    assert_eq!(sharded, memory, "out of core and in memory");
}

#[test]
fn no_valid_events_is_an_empty_explanation() {
    let dir = TempDir::new().expect("temp dir");
    let input = dir.path().join("broken.jsonl");
    std::fs::write(&input, "{\"event_id\":\"x\"}\nnot json\n").expect("write");
    let c = compare(
        &[&input],
        &common::rule("creator-pay-v1"),
        &common::rule("creator-pay-v2"),
        &[],
    );
    assert_eq!(c["records"], 2);
    assert_eq!(c["amount_delta"], 0);
    for split in [
        "by_transition",
        "by_content_kind",
        "by_user_tier",
        "by_country",
    ] {
        assert_eq!(c["attribution"][split], serde_json::json!([]), "{split}");
    }
    assert_eq!(c["days"], serde_json::json!([]));
    let kinds = list(&c, &["attribution", "by_verdict_change"]);
    assert_eq!(kinds.len(), 5);
    assert!(kinds.iter().all(|k| k["events"] == 0 && k["delta"] == 0));
    assert_eq!(c["creators"]["with_events"], 0);
    let buckets = list(&c, &["creator_change_histogram"]);
    assert_eq!(buckets.len(), 16);
    assert!(buckets.iter().all(|b| b["creators"] == 0));
}
