//! The survivor rule of deduplication, one field at a time: for each field of
//! the rule, two records with the same `event_id` differ in that field (and
//! in a later one that makes the survivor visible in the output), in both
//! orders within a file and across two files. The survivor is the smallest
//! `ingested_at` (as an instant, whatever the offset it is written with), then
//! the smallest `occurred_at`, then strings by their bytes (not their case,
//! not their number, not the enumeration's order), with a null brand first.

use crate::common;
use crate::model::{self, Daily, Expected, Totals};
use crate::output;
use crate::support::{self, assert_maps_eq, count};
use serde_json::json;
use tempfile::TempDir;

/// One record; `None` fields take the base value.
#[derive(Clone, Copy, Default)]
struct Record {
    occurred: Option<&'static str>,
    ingested: Option<&'static str>,
    creator: Option<&'static str>,
    template: Option<&'static str>,
    brand: Option<&'static str>,
    kind: Option<&'static str>,
    action: Option<&'static str>,
    tier: Option<&'static str>,
    country: Option<&'static str>,
}

/// A case: the record that must survive, the one that must not, and what the
/// survivor's row holds under creator-pay 2.0.0 (`payable_events`, `amount`).
struct Case {
    name: &'static str,
    winner: Record,
    loser: Record,
    conflict: bool,
    row: (i64, i64),
}

fn cases() -> Vec<Case> {
    let r = Record::default();
    vec![
        Case {
            name: "ingested-at-as-an-instant",
            // 12:00:09Z written at +02:00 is earlier than 12:00:10Z.
            winner: Record {
                ingested: Some("2026-05-05T14:00:09+02:00"),
                action: Some("view"),
                ..r
            },
            loser: Record {
                ingested: Some("2026-05-05T12:00:10Z"),
                ..r
            },
            conflict: true,
            row: (0, 0),
        },
        Case {
            name: "occurred-at-as-an-instant",
            winner: Record {
                occurred: Some("2026-05-06T01:00:00+02:00"),
                ..r
            },
            loser: Record {
                occurred: Some("2026-05-05T23:30:00Z"),
                action: Some("view"),
                ..r
            },
            conflict: true,
            row: (1, 30_000),
        },
        Case {
            name: "creator-by-bytes",
            winner: Record {
                creator: Some("cr-B"),
                ..r
            },
            loser: Record {
                creator: Some("cr-a"),
                action: Some("view"),
                ..r
            },
            conflict: true,
            row: (1, 30_000),
        },
        Case {
            name: "template-by-bytes-not-number",
            winner: Record {
                template: Some("tpl-10"),
                ..r
            },
            loser: Record {
                template: Some("tpl-9"),
                action: Some("view"),
                ..r
            },
            conflict: true,
            row: (1, 30_000),
        },
        Case {
            name: "null-brand-first",
            winner: Record {
                action: Some("view"),
                ..r
            },
            loser: Record {
                brand: Some("acme"),
                ..r
            },
            conflict: true,
            row: (0, 0),
        },
        Case {
            name: "brand-by-bytes",
            winner: Record {
                brand: Some("Zeta"),
                action: Some("view"),
                ..r
            },
            loser: Record {
                brand: Some("alpha"),
                ..r
            },
            conflict: true,
            row: (0, 0),
        },
        Case {
            name: "content-kind-by-bytes",
            // font < image as bytes; image comes first in the contract's list.
            winner: Record {
                kind: Some("font"),
                ..r
            },
            loser: Record {
                kind: Some("image"),
                ..r
            },
            conflict: true,
            row: (1, 5_000),
        },
        Case {
            name: "action-by-bytes",
            // use < view as bytes; view comes first in the contract's list.
            winner: Record {
                action: Some("use"),
                ..r
            },
            loser: Record {
                action: Some("view"),
                ..r
            },
            conflict: true,
            row: (1, 30_000),
        },
        Case {
            name: "user-tier-by-bytes",
            // enterprise < free as bytes; free comes first in the contract's list.
            winner: Record {
                tier: Some("enterprise"),
                ..r
            },
            loser: Record {
                tier: Some("free"),
                ..r
            },
            conflict: true,
            row: (1, 45_000),
        },
        Case {
            name: "country-by-bytes",
            winner: Record {
                country: Some("BR"),
                ..r
            },
            loser: Record {
                country: Some("US"),
                ..r
            },
            conflict: true,
            row: (1, 24_000),
        },
        Case {
            name: "exact-resend",
            winner: r,
            loser: r,
            conflict: false,
            row: (1, 30_000),
        },
        Case {
            name: "late-resend",
            winner: r,
            loser: Record {
                ingested: Some("2026-05-05T18:00:00Z"),
                ..r
            },
            conflict: false,
            row: (1, 30_000),
        },
    ]
}

/// The record as a JSON line; `tag` keeps each arrangement's rows apart.
fn line(id: &str, tag: &str, r: &Record) -> String {
    json!({
        "event_id": id,
        "occurred_at": r.occurred.unwrap_or("2026-05-05T12:00:00Z"),
        "ingested_at": r.ingested.unwrap_or("2026-05-05T12:00:10Z"),
        "creator_id": format!("{}-{tag}", r.creator.unwrap_or("cr")),
        "template_id": r.template.unwrap_or("tpl"),
        "brand_id": r.brand,
        "content_kind": r.kind.unwrap_or("template"),
        "action": r.action.unwrap_or("use"),
        "user_tier": r.tier.unwrap_or("pro"),
        "country": r.country.unwrap_or("US"),
    })
    .to_string()
}

#[test]
fn the_survivor_follows_the_contract_field_by_field() {
    let dir = TempDir::new().expect("temp dir");
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).expect("create dir");
    let cases = cases();

    // Four arrangements of each pair: winner first or last in one file, or
    // in the first or the second of two files.
    let (mut one, mut first, mut second) = (Vec::new(), Vec::new(), Vec::new());
    let mut want = Daily::new();
    for (c, case) in cases.iter().enumerate() {
        for arrangement in 0..4 {
            let id = format!("{}-{arrangement}", case.name);
            let tag = format!("{c}{arrangement}");
            let (w, l) = (line(&id, &tag, &case.winner), line(&id, &tag, &case.loser));
            match arrangement {
                0 => one.extend([w, l]),
                1 => one.extend([l, w]),
                2 => {
                    first.push(w);
                    second.push(l);
                }
                _ => {
                    first.push(l);
                    second.push(w);
                }
            }
            let occurred = case.winner.occurred.unwrap_or("2026-05-05T12:00:00Z");
            let day = model::day_string(model::parse_rfc3339(occurred).expect("a timestamp"));
            let key = (
                day,
                format!("{}-{tag}", case.winner.creator.unwrap_or("cr")),
                case.winner.template.unwrap_or("tpl").to_string(),
            );
            let totals = Totals {
                events: 1,
                payable_events: case.row.0,
                amount_micros: case.row.1,
            };
            assert!(want.insert(key, totals).is_none());
        }
    }
    for (name, lines) in [("a.jsonl", one), ("b.jsonl", first), ("c.jsonl", second)] {
        std::fs::write(input.join(name), lines.join("\n") + "\n").expect("write input");
    }

    let out = dir.path().join("out");
    let report = support::run(
        &[&input],
        &common::rule("creator-pay-v2"),
        &out,
        &["--threads", "2", "--batch-size", "5"],
    );
    let pairs = (cases.len() * 4) as u64;
    let conflicts = cases.iter().filter(|c| c.conflict).count() as u64 * 4;
    assert_eq!(count(&report, "records"), 2 * pairs);
    assert_eq!(count(&report, "quarantined"), 0);
    assert_eq!(count(&report, "duplicates"), pairs);
    assert_eq!(count(&report, "unique"), pairs);
    assert_eq!(count(&report, "conflicts"), conflicts);
    let got = output::daily(&output::partitions(&out));
    assert_maps_eq(&got, &want, "survivors' rows");

    // The model agrees with the cases worked out by hand.
    let files = support::files_in(&input);
    let named: Vec<(String, &std::path::Path)> = files
        .iter()
        .map(|(n, p)| (n.clone(), p.as_path()))
        .collect();
    let expected = Expected::of_files(&named);
    assert_eq!(expected.conflicts, conflicts);
    assert_maps_eq(
        &expected.daily(model::creator_pay_v2),
        &want,
        "the model's survivors",
    );
}
