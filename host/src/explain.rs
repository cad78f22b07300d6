//! Explain: everything Tally did with one `event_id` — where each record with
//! that id was read, which one survived dedup and which were duplicates (or
//! quarantined, and why), and the verdict of each rule on the survivor.

use crate::classify::{build_batch, scratch};
use crate::event::{ACTIONS, CONTENT_KINDS, USER_TIERS, day_of, format_day};
use crate::ingest::ReadOptions;
use crate::pipeline::{self, RunError};
use crate::report::RuleSummary;
use crate::rule::Rule;
use crate::validate::{EventColumns, NO_BRAND};
use serde::Serialize;
use std::path::PathBuf;

/// One record that carried the event id.
#[derive(Debug, Clone, Serialize)]
pub struct Seen {
    pub file: String,
    /// `line` (JSON input) or `row` (Parquet input).
    pub position_kind: &'static str,
    pub position: u64,
    /// `survivor`, `duplicate` or `quarantined`.
    pub status: &'static str,
    /// For a quarantined record, the reason code; for a duplicate that differs
    /// from the survivor, `conflict`.
    pub note: Option<String>,
    /// The record: its fields as validated, or the raw quarantined record.
    pub record: serde_json::Value,
}

/// One rule's verdict on the surviving record.
#[derive(Debug, Clone, Serialize)]
pub struct RuleVerdict {
    pub rule: RuleSummary,
    pub payable: bool,
    pub rate_micros: i64,
    pub reason: String,
}

/// What `tally explain` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub event_id: String,
    pub records: Vec<Seen>,
    pub verdicts: Vec<RuleVerdict>,
}

fn fields(c: &EventColumns, r: usize, strings: &crate::intern::Interner) -> serde_json::Value {
    serde_json::json!({
        "event_id": String::from_utf8_lossy(c.event_id(r)),
        "occurred_at": chrono::DateTime::from_timestamp_millis(c.occurred_at[r]).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        "ingested_at": chrono::DateTime::from_timestamp_millis(c.ingested_at[r]).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        "day": format_day(day_of(c.occurred_at[r])),
        "creator_id": strings.get(c.creator[r]),
        "template_id": strings.get(c.template[r]),
        "brand_id": (c.brand[r] != NO_BRAND).then(|| strings.get(c.brand[r])),
        "content_kind": CONTENT_KINDS[c.content_kind[r] as usize],
        "action": ACTIONS[c.action[r] as usize],
        "user_tier": USER_TIERS[c.user_tier[r] as usize],
        "country": String::from_utf8_lossy(&c.country[r]),
    })
}

/// Explains `event_id` in `inputs`, read as `read` says, under each of
/// `rules` (with the reference each was given as).
pub fn explain(
    inputs: &[PathBuf],
    rules: &[(Rule, String)],
    event_id: &str,
    read: &ReadOptions,
) -> Result<Explanation, RunError> {
    let prepared = pipeline::prepare(inputs, read, None, false)?;
    let deduped = &prepared.deduped;
    let table = &deduped.table;
    let file = |source: u32| prepared.files[source as usize].path.display().to_string();
    let kind = |source: u32| match prepared.files[source as usize].format {
        crate::ingest::Format::Parquet => "row",
        _ => "line",
    };

    let mut records = Vec::new();
    let mut survivor = None;
    for (chunk, &start) in table.chunks.iter().zip(&table.starts) {
        for r in 0..chunk.len() {
            if chunk.event_id(r) != event_id.as_bytes() {
                continue;
            }
            let g = start + r as u32;
            let is_survivor = deduped.survivors.binary_search(&g).is_ok();
            if is_survivor {
                survivor = Some(g);
            }
            records.push((g, chunk, r, is_survivor));
        }
    }
    let survivor_fields = survivor.map(|g| {
        let (c, r) = table.locate(g);
        fields(c, r, &table.strings)
    });
    let mut seen: Vec<Seen> = records
        .iter()
        .map(|&(_, c, r, is_survivor)| {
            let record = fields(c, r, &table.strings);
            let differs = |s: &serde_json::Value| {
                let strip = |v: &serde_json::Value| {
                    let mut v = v.clone();
                    v.as_object_mut().map(|o| o.remove("ingested_at"));
                    v
                };
                strip(s) != strip(&record)
            };
            Seen {
                file: file(c.source),
                position_kind: kind(c.source),
                position: c.position[r],
                status: if is_survivor { "survivor" } else { "duplicate" },
                note: (!is_survivor && survivor_fields.as_ref().is_some_and(differs))
                    .then(|| "conflict".to_string()),
                record,
            }
        })
        .collect();
    let quoted = serde_json::Value::String(event_id.to_string()).to_string();
    for q in &prepared.quarantine {
        let parsed: Option<serde_json::Value> = serde_json::from_str(&q.raw).ok();
        let matches = match &parsed {
            // A Parquet row is rendered as JSON too, whatever its column types.
            Some(v) => v.get("event_id").is_some_and(|id| match id {
                serde_json::Value::String(id) => id == event_id,
                serde_json::Value::Number(id) => id.to_string() == event_id,
                _ => false,
            }),
            // Not JSON: a line that holds the id as a whole JSON string.
            None => q.raw.contains(&quoted),
        };
        if matches {
            seen.push(Seen {
                file: file(q.source),
                position_kind: kind(q.source),
                position: q.position,
                status: "quarantined",
                note: Some(q.reason.to_string()),
                record: parsed.unwrap_or_else(|| serde_json::Value::String(q.raw.clone())),
            });
        }
    }
    seen.sort_by(|a, b| (&a.file, a.position).cmp(&(&b.file, b.position)));

    let mut verdicts = Vec::new();
    if let Some(g) = survivor {
        let mut local = scratch(deduped);
        let batch = build_batch(deduped, &[g], &mut local);
        for (rule, reference) in rules {
            let v = rule.classify(&batch, 0)?;
            verdicts.push(RuleVerdict {
                rule: RuleSummary::of(rule, reference),
                payable: v.payable[0] == 1,
                rate_micros: v.rate_micros[0],
                reason: v.reasons[v.reason[0] as usize].clone(),
            });
        }
    }
    Ok(Explanation {
        event_id: event_id.to_string(),
        records: seen,
        verdicts,
    })
}
