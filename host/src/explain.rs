//! Explain: everything Tally did with one `event_id` — where each record with
//! that id was read, which one survived dedup and which were duplicates (or
//! quarantined, and why), and the verdict of each rule on the survivor; or,
//! when a rule fails on the survivor (it traps, panics, runs out of fuel...),
//! that failure, as the explanation of that rule's part.

use crate::classify::{build_batch, scratch};
use crate::event::{ACTIONS, CONTENT_KINDS, USER_TIERS, day_of, format_day};
use crate::ingest::ReadOptions;
use crate::pipeline::{self, RunError};
use crate::report::RuleSummary;
use crate::rule::{Panic, Problem, Rule, RuleError};
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

/// One rule's verdict on the surviving record, or how the rule failed on it.
#[derive(Debug, Clone, Serialize)]
pub struct RuleVerdict {
    pub rule: RuleSummary,
    /// The verdict (absent when the rule failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_micros: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How the rule failed on the event (absent when it gave a verdict).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

/// How a rule failed on an event.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// What happened, as the error of a run states it (rule text escaped).
    pub problem: String,
    /// The panic the rule reported before it trapped, as the rule reported
    /// it (bounded in length, not escaped), if it did.
    pub panic: Option<Panic>,
}

impl Failure {
    /// The failure of a rule call, if `error` is one (a rule that cannot be
    /// called at all is still an error of the command).
    fn of(error: &RuleError) -> Option<Failure> {
        let problem = error.problem()?;
        Some(Failure {
            problem: problem.to_string(),
            panic: match problem {
                Problem::Panicked(panic) => Some(Panic::clone(panic)),
                _ => None,
            },
        })
    }
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

/// Whether a quarantined record is one of `event_id` (`quoted`: the id as a
/// JSON string).
fn quarantined_as(q: &crate::validate::Quarantined, event_id: &str, quoted: &str) -> bool {
    match serde_json::from_str::<serde_json::Value>(&q.raw) {
        // A Parquet row is rendered as JSON too, whatever its column types.
        Ok(v) => v.get("event_id").is_some_and(|id| match id {
            serde_json::Value::String(id) => id == event_id,
            serde_json::Value::Number(id) => id.to_string() == event_id,
            _ => false,
        }),
        // Not JSON: a line that holds the id as a whole JSON string.
        Err(_) => q.raw.contains(quoted),
    }
}

/// The rows of `events` whose `event_id` is `id`.
fn only(events: &EventColumns, id: &[u8]) -> EventColumns {
    let mut kept = EventColumns::new();
    kept.source = events.source;
    for r in (0..events.len()).filter(|&r| events.event_id(r) == id) {
        kept.event_id_bytes.extend_from_slice(id);
        kept.event_id_offsets.push(kept.event_id_bytes.len() as u32);
        kept.occurred_at.push(events.occurred_at[r]);
        kept.ingested_at.push(events.ingested_at[r]);
        kept.creator.push(events.creator[r]);
        kept.template.push(events.template[r]);
        kept.brand.push(events.brand[r]);
        kept.content_kind.push(events.content_kind[r]);
        kept.action.push(events.action[r]);
        kept.user_tier.push(events.user_tier[r]);
        kept.country.push(events.country[r]);
        kept.position.push(events.position[r]);
    }
    kept
}

/// Explains `event_id` in `inputs`, read as `read` says, under each of
/// `rules` (with the reference each was given as).
pub fn explain(
    inputs: &[PathBuf],
    rules: &[(Rule, String)],
    event_id: &str,
    read: &ReadOptions,
    progress: bool,
) -> Result<Explanation, RunError> {
    // Only this event's records are kept as the inputs are read, so that any
    // input size fits in memory.
    let found = pipeline::find_inputs(inputs, progress)?;
    let quoted = serde_json::Value::String(event_id.to_string()).to_string();
    let bar = crate::progress::Progress::start("ingest", None, progress);
    let (chunks, interners) =
        crate::ingest::read_each(&found.files, read, &|n| bar.set(n), &|mut chunk, _| {
            chunk.events = only(&chunk.events, event_id.as_bytes());
            chunk
                .quarantine
                .retain(|q| quarantined_as(q, event_id, &quoted));
            Ok::<_, RunError>(chunk)
        })?;
    bar.finish();
    crate::ingest::check_unchanged(&found.files)?;
    let (table, chunks) = crate::dedup::merge(chunks, interners)?;
    let quarantine: Vec<_> = chunks.into_iter().flat_map(|c| c.quarantine).collect();
    let deduped = &pipeline::survive(table, None, &mut Default::default());
    let table = &deduped.table;
    let files = &found.files;
    let file = |source: u32| files[source as usize].path.display().to_string();
    let kind = |source: u32| match files[source as usize].format {
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
    for q in &quarantine {
        let parsed: Option<serde_json::Value> = serde_json::from_str(&q.raw).ok();
        seen.push(Seen {
            file: file(q.source),
            position_kind: kind(q.source),
            position: q.position,
            status: "quarantined",
            note: Some(q.reason.to_string()),
            record: parsed.unwrap_or_else(|| serde_json::Value::String(q.raw.clone())),
        });
    }
    seen.sort_by(|a, b| (&a.file, a.position).cmp(&(&b.file, b.position)));

    let mut verdicts = Vec::new();
    if let Some(g) = survivor {
        let mut local = scratch(deduped);
        let batch = build_batch(deduped, &[g], &mut local);
        for (rule, reference) in rules {
            let rule_summary = RuleSummary::of(rule, reference);
            verdicts.push(match rule.classify(&batch, 0) {
                Ok(v) => RuleVerdict {
                    rule: rule_summary,
                    payable: Some(v.payable[0] == 1),
                    rate_micros: Some(v.rate_micros[0]),
                    reason: Some(v.reasons[v.reason[0] as usize].clone()),
                    failure: None,
                },
                Err(error) => RuleVerdict {
                    rule: rule_summary,
                    payable: None,
                    rate_micros: None,
                    reason: None,
                    failure: Some(Failure::of(&error).ok_or(error)?),
                },
            });
        }
    }
    Ok(Explanation {
        event_id: event_id.to_string(),
        records: seen,
        verdicts,
    })
}
