//! Golden cases: events with the verdicts a rule must give them, shipped with
//! the rule and checked by `tally rule test` and `tally rule publish` through
//! the compiled component.
//!
//! A golden file is JSON Lines: one object per line with the fields of the
//! event contract (`docs/event-contract.md`: `event_id`, `occurred_at`,
//! `ingested_at`, `creator_id`, `template_id`, optional `brand_id`,
//! `content_kind`, `action`, `user_tier`, `country`), valid as the contract
//! says, plus `expect: {"payable": bool, "rate_micros": int, "reason": str}` and
//! an optional `case` (a short description shown when the case fails). Blank
//! lines are skipped; other fields are ignored, as in event input.

use super::RegistryError;
use crate::event::{self, ACTIONS, CONTENT_KINDS, MAX_EVENT_ID_BYTES, USER_TIERS};
use crate::rule::{DictColumn, EventBatch, Rule, StringColumn};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// The file name of a golden file in a rule crate's directory, or next to a
/// component (where `<component stem>.golden.jsonl` is looked for first).
pub const FILE_NAME: &str = "golden.jsonl";

/// Cases per call into the rule.
const BATCH: usize = 4096;

/// The verdict a case expects (or that the rule gave).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    pub payable: bool,
    pub rate_micros: i64,
    pub reason: String,
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "payable={} rate_micros={} reason={}",
            self.payable, self.rate_micros, self.reason
        )
    }
}

/// One event of a golden file, checked against the contract.
#[derive(Debug, Clone)]
pub struct GoldenEvent {
    pub event_id: String,
    pub occurred_at: i64,
    pub ingested_at: i64,
    pub creator_id: String,
    pub template_id: String,
    pub brand_id: Option<String>,
    pub content_kind: u8,
    pub action: u8,
    pub user_tier: u8,
    pub country: [u8; 2],
}

/// One golden case.
#[derive(Debug, Clone)]
pub struct GoldenCase {
    /// 1-based line number in its file.
    pub line: usize,
    /// The optional description.
    pub case: Option<String>,
    pub event: GoldenEvent,
    pub expect: Expected,
}

impl GoldenCase {
    /// How a failure names the case: line, event id and description.
    pub fn label(&self) -> String {
        label(self.line, &self.event.event_id, self.case.as_deref())
    }
}

/// A case the rule failed: it gave another verdict than expected, or no
/// verdict at all (it trapped, ran out of fuel, returned an error...).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Mismatch {
    /// 1-based line number in the golden file.
    pub line: usize,
    pub event_id: String,
    /// The case's description, if it has one.
    pub case: Option<String>,
    pub expected: Expected,
    /// The verdict the rule gave; `None` when the call failed.
    pub got: Option<Expected>,
    /// Why the rule gave no verdict, when the call failed.
    pub error: Option<String>,
}

impl Mismatch {
    /// How the failure names the case: line, event id and description.
    pub fn label(&self) -> String {
        label(self.line, &self.event_id, self.case.as_deref())
    }
}

fn label(line: usize, event_id: &str, case: Option<&str>) -> String {
    let mut label = format!("line {line} (event_id {event_id:?}");
    if let Some(case) = case {
        label.push_str(&format!(", {case:?}"));
    }
    label.push(')');
    label
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(got) = &self.got else {
            let error = self.error.as_deref().unwrap_or("gave no verdict");
            return write!(f, "{}: the rule {error}", self.label());
        };
        let mut diffs = Vec::new();
        if self.expected.payable != got.payable {
            diffs.push(format!(
                "payable: expected {}, got {}",
                self.expected.payable, got.payable
            ));
        }
        if self.expected.rate_micros != got.rate_micros {
            diffs.push(format!(
                "rate_micros: expected {}, got {}",
                self.expected.rate_micros, got.rate_micros
            ));
        }
        if self.expected.reason != got.reason {
            diffs.push(format!(
                "reason: expected {:?}, got \"{}\"",
                self.expected.reason,
                crate::rule::shown(&got.reason)
            ));
        }
        write!(f, "{}: {}", self.label(), diffs.join("; "))
    }
}

/// What checking a golden file found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GoldenSummary {
    pub file: PathBuf,
    pub cases: usize,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Timestamp {
    Millis(i64),
    Text(String),
}

#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    case: Option<String>,
    event_id: Option<String>,
    occurred_at: Option<Timestamp>,
    ingested_at: Option<Timestamp>,
    creator_id: Option<String>,
    template_id: Option<String>,
    #[serde(default)]
    brand_id: Option<String>,
    content_kind: Option<String>,
    action: Option<String>,
    user_tier: Option<String>,
    country: Option<String>,
    expect: Option<Expected>,
}

fn required<T>(value: Option<T>, field: &str) -> Result<T, String> {
    value.ok_or_else(|| format!("missing field `{field}`"))
}

fn timestamp(value: Option<Timestamp>, field: &str) -> Result<i64, String> {
    let ms = match required(value, field)? {
        Timestamp::Millis(ms) => ms,
        Timestamp::Text(text) => event::parse_rfc3339_ms(&text)
            .ok_or_else(|| format!("`{field}` {text:?} is not an RFC 3339 timestamp"))?,
    };
    if !event::timestamp_in_range(ms) {
        return Err(format!("`{field}` is outside the years 2000 to 2100"));
    }
    Ok(ms)
}

fn non_empty(value: Option<String>, field: &str) -> Result<String, String> {
    let value = required(value, field)?;
    if value.is_empty() {
        return Err(format!("`{field}` is empty"));
    }
    Ok(value)
}

fn enumeration(value: Option<String>, field: &str, values: &[&str]) -> Result<u8, String> {
    let value = required(value, field)?;
    event::enum_code(values, &value)
        .ok_or_else(|| format!("`{field}` {value:?} is not one of {}", values.join(", ")))
}

fn parse_line(text: &str) -> Result<(Option<String>, GoldenEvent, Expected), String> {
    let line: Line = serde_json::from_str(text).map_err(|e| format!("not a JSON object: {e}"))?;
    let event_id = non_empty(line.event_id, "event_id")?;
    if event_id.len() > MAX_EVENT_ID_BYTES {
        return Err(format!(
            "`event_id` is longer than {MAX_EVENT_ID_BYTES} bytes"
        ));
    }
    let country = required(line.country, "country")?;
    if !event::valid_country(country.as_bytes()) {
        return Err(format!(
            "`country` {country:?} is not two ASCII upper-case letters"
        ));
    }
    let event = GoldenEvent {
        event_id,
        occurred_at: timestamp(line.occurred_at, "occurred_at")?,
        ingested_at: timestamp(line.ingested_at, "ingested_at")?,
        creator_id: non_empty(line.creator_id, "creator_id")?,
        template_id: non_empty(line.template_id, "template_id")?,
        brand_id: line.brand_id,
        content_kind: enumeration(line.content_kind, "content_kind", &CONTENT_KINDS)?,
        action: enumeration(line.action, "action", &ACTIONS)?,
        user_tier: enumeration(line.user_tier, "user_tier", &USER_TIERS)?,
        country: [country.as_bytes()[0], country.as_bytes()[1]],
    };
    let expect = required(line.expect, "expect")?;
    if expect.rate_micros < 0 || (!expect.payable && expect.rate_micros != 0) {
        return Err(format!(
            "`expect` has rate_micros {} with payable {}: rates are never negative, and 0 when not payable",
            expect.rate_micros, expect.payable
        ));
    }
    Ok((line.case, event, expect))
}

/// Parses a golden file's text (`file` is for messages). A file without a
/// single case is an error: it most likely is not what its author meant.
pub fn parse(file: &Path, text: &str) -> Result<Vec<GoldenCase>, RegistryError> {
    let mut cases = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (case, event, expect) =
            parse_line(line).map_err(|message| RegistryError::GoldenFormat {
                file: file.to_path_buf(),
                line: Some(i + 1),
                message,
            })?;
        cases.push(GoldenCase {
            line: i + 1,
            case,
            event,
            expect,
        });
    }
    if cases.is_empty() {
        return Err(RegistryError::GoldenFormat {
            file: file.to_path_buf(),
            line: None,
            message: "the file holds no cases".into(),
        });
    }
    Ok(cases)
}

/// Reads and parses a golden file.
pub fn read(file: &Path) -> Result<Vec<GoldenCase>, RegistryError> {
    let text = std::fs::read_to_string(file).map_err(|source| RegistryError::Io {
        path: file.to_path_buf(),
        action: "read the golden file",
        source,
    })?;
    parse(file, &text)
}

/// A dictionary column under construction.
#[derive(Default)]
struct Dict {
    keys: Vec<u32>,
    values: Vec<String>,
}

impl Dict {
    fn push(&mut self, value: Option<&str>) {
        let Some(value) = value else {
            self.keys.push(u32::MAX);
            return;
        };
        let key = match self.values.iter().position(|v| v == value) {
            Some(k) => k,
            None => {
                self.values.push(value.to_string());
                self.values.len() - 1
            }
        };
        self.keys.push(key as u32);
    }

    fn finish(self) -> DictColumn {
        DictColumn {
            keys: self.keys,
            values: strings(self.values.iter().map(String::as_str)),
        }
    }
}

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> StringColumn {
    let mut column = StringColumn {
        offsets: vec![0],
        bytes: Vec::new(),
    };
    for value in values {
        column.bytes.extend_from_slice(value.as_bytes());
        column.offsets.push(column.bytes.len() as u32);
    }
    column
}

/// The columnar batch of some events, in order, as the pipeline would hand
/// them to a rule.
pub fn batch(events: &[&GoldenEvent]) -> EventBatch {
    let (mut creator, mut template, mut brand) =
        (Dict::default(), Dict::default(), Dict::default());
    for e in events {
        creator.push(Some(&e.creator_id));
        template.push(Some(&e.template_id));
        brand.push(e.brand_id.as_deref());
    }
    EventBatch {
        event_id: strings(events.iter().map(|e| e.event_id.as_str())),
        occurred_at: events.iter().map(|e| e.occurred_at).collect(),
        ingested_at: events.iter().map(|e| e.ingested_at).collect(),
        creator_id: creator.finish(),
        template_id: template.finish(),
        brand_id: brand.finish(),
        content_kind: events.iter().map(|e| e.content_kind).collect(),
        action: events.iter().map(|e| e.action).collect(),
        user_tier: events.iter().map(|e| e.user_tier).collect(),
        country: events.iter().flat_map(|e| e.country).collect(),
    }
}

/// Classifies every case through `rule` and compares the verdicts with the
/// expectations. Returns the cases that failed, in file order (empty when
/// every case passes). When a call fails (a trap, say), the cases of that
/// call are classified one by one to find which of them it fails on; each is
/// a failed case with the rule's error. A call that fails although each of
/// its cases passes alone (too many distinct reasons in one batch) is an
/// error.
pub fn check(rule: &Rule, cases: &[GoldenCase]) -> Result<Vec<Mismatch>, crate::rule::RuleError> {
    let mut mismatches = Vec::new();
    for (index, chunk) in cases.chunks(BATCH).enumerate() {
        let events: Vec<&GoldenEvent> = chunk.iter().map(|c| &c.event).collect();
        match rule.classify(&batch(&events), index) {
            Ok(verdicts) => {
                for (i, case) in chunk.iter().enumerate() {
                    let got = Expected {
                        payable: verdicts.payable[i] == 1,
                        rate_micros: verdicts.rate_micros[i],
                        reason: verdicts.reasons[verdicts.reason[i] as usize].clone(),
                    };
                    if got != case.expect {
                        mismatches.push(mismatch(case, Some(got), None));
                    }
                }
            }
            Err(err) if chunk.len() == 1 => {
                mismatches.push(mismatch(&chunk[0], None, Some(problem(&err))));
            }
            Err(err) => {
                let before = mismatches.len();
                let mut failed = false;
                for case in chunk {
                    let one = std::slice::from_ref(case);
                    let found = check(rule, one)?;
                    failed |= found.iter().any(|m| m.got.is_none());
                    mismatches.extend(found);
                }
                if !failed {
                    mismatches.truncate(before);
                    return Err(err);
                }
            }
        }
    }
    Ok(mismatches)
}

fn mismatch(case: &GoldenCase, got: Option<Expected>, error: Option<String>) -> Mismatch {
    Mismatch {
        line: case.line,
        event_id: case.event.event_id.clone(),
        case: case.case.clone(),
        expected: case.expect.clone(),
        got,
        error,
    }
}

/// What went wrong in a call, without the rule's name (the report names it
/// once).
fn problem(err: &crate::rule::RuleError) -> String {
    err.problem()
        .map_or_else(|| err.to_string(), ToString::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"case":"a publish","event_id":"g-1","occurred_at":"2026-05-01T10:00:00Z","ingested_at":1777629601000,"creator_id":"cr-1","template_id":"tpl-1","content_kind":"video","action":"publish","user_tier":"free","country":"BR","expect":{"payable":true,"rate_micros":25000,"reason":"payable"}}"#;

    #[test]
    fn parses_a_case() {
        let text = format!("\n{GOOD}\n\n");
        let cases = parse(Path::new("g.jsonl"), &text).unwrap();
        assert_eq!(cases.len(), 1);
        let c = &cases[0];
        assert_eq!(c.line, 2);
        assert_eq!(c.case.as_deref(), Some("a publish"));
        assert_eq!(c.event.content_kind, 2);
        assert_eq!(c.event.action, 3);
        assert_eq!(c.event.user_tier, 0);
        assert_eq!(&c.event.country, b"BR");
        assert_eq!(c.event.brand_id, None);
        assert_eq!(c.expect.rate_micros, 25_000);
        assert_eq!(c.label(), "line 2 (event_id \"g-1\", \"a publish\")");
    }

    #[test]
    fn bad_lines_are_refused_with_their_line_number() {
        for (change, expected) in [
            (("\"video\"", "\"Video\""), "`content_kind` \"Video\""),
            (("\"BR\"", "\"br\""), "`country`"),
            (
                ("\"payable\":true", "\"payable\":false"),
                "rate_micros 25000",
            ),
            (("\"event_id\":\"g-1\",", ""), "missing field `event_id`"),
            (
                ("\"reason\":\"payable\"", "\"reason\":\"payable\",\"x\":1"),
                "unknown field",
            ),
            (("2026-05-01T10:00:00Z", "yesterday"), "RFC 3339"),
        ] {
            let text = format!("{GOOD}\n{}", GOOD.replace(change.0, change.1));
            let err = parse(Path::new("g.jsonl"), &text).unwrap_err().to_string();
            assert!(err.contains("g.jsonl line 2"), "{err}");
            assert!(err.contains(expected), "{expected}: {err}");
        }
        let err = parse(Path::new("g.jsonl"), "\n").unwrap_err().to_string();
        assert!(err.contains("no cases"), "{err}");
    }

    #[test]
    fn batches_are_dictionary_encoded_with_null_brands() {
        let mut a = parse(Path::new("g"), GOOD).unwrap().remove(0).event;
        let mut b = a.clone();
        b.event_id = "g-2".into();
        b.brand_id = Some("acme".into());
        b.template_id = "tpl-2".into();
        a.country = *b"US";
        let batch = batch(&[&a, &b]);
        assert_eq!(batch.event_id.offsets, vec![0, 3, 6]);
        assert_eq!(batch.event_id.bytes, b"g-1g-2");
        assert_eq!(batch.creator_id.keys, vec![0, 0]);
        assert_eq!(batch.template_id.keys, vec![0, 1]);
        assert_eq!(batch.template_id.values.bytes, b"tpl-1tpl-2");
        assert_eq!(batch.brand_id.keys, vec![u32::MAX, 0]);
        assert_eq!(batch.brand_id.values.bytes, b"acme");
        assert_eq!(batch.country, b"USBR");
    }
}
