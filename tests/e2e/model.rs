//! An independent model of what a run must produce, written from
//! `docs/event-contract.md` and `docs/policies.md` alone: it shares no code
//! with the pipeline or the rule crates. The tests compare the real output of
//! `tally run` with what this model computes from the same input files.
//!
//! Everything here is deliberately plain (one record at a time, ordinary maps
//! and sorts): it is meant to be easy to check by reading, not fast.

#![allow(dead_code)]

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The contract's fields, in the order that decides which problem is reported.
pub const FIELDS: [&str; 10] = [
    "event_id",
    "occurred_at",
    "ingested_at",
    "creator_id",
    "template_id",
    "brand_id",
    "content_kind",
    "action",
    "user_tier",
    "country",
];

pub const CONTENT_KINDS: [&str; 5] = ["template", "image", "video", "audio", "font"];
pub const ACTIONS: [&str; 4] = ["view", "use", "export", "publish"];
pub const USER_TIERS: [&str; 4] = ["free", "pro", "teams", "enterprise"];

const MS_PER_DAY: i64 = 86_400_000;

/// A valid event, with its timestamps in UTC epoch milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event_id: String,
    pub occurred_ms: i64,
    pub ingested_ms: i64,
    pub creator_id: String,
    pub template_id: String,
    pub brand_id: Option<String>,
    pub content_kind: String,
    pub action: String,
    pub user_tier: String,
    pub country: String,
}

impl Event {
    /// Every field but `event_id` and `ingested_at`, in the tie-break order of
    /// the survivor rule. `Option` orders `None` first and `String` compares
    /// bytes, which is what the contract asks for.
    #[allow(clippy::type_complexity)]
    fn tie_break(&self) -> (i64, &str, &str, Option<&str>, &str, &str, &str, &str) {
        (
            self.occurred_ms,
            &self.creator_id,
            &self.template_id,
            self.brand_id.as_deref(),
            &self.content_kind,
            &self.action,
            &self.user_tier,
            &self.country,
        )
    }

    /// The UTC calendar day of `occurred_at`, as `YYYY-MM-DD`.
    pub fn day(&self) -> String {
        day_string(self.occurred_ms)
    }
}

/// One field of an input record, as found, whatever the input format.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Absent or null.
    Null,
    Str(String),
    /// A JSON integer (kept wide: JSON integers may exceed `i64`) or a Parquet int64.
    Int(i128),
    /// A Parquet timestamp, already in epoch milliseconds.
    Timestamp(i64),
    /// Anything else: boolean, object, array, a number with a fraction, another
    /// Parquet type.
    Other,
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

/// Applies the contract to one record: the event, or the reason code of its
/// first problem in field order.
pub fn validate(cells: &[Cell; 10]) -> Result<Event, String> {
    let event_id = string(&cells[0], 0)?;
    if event_id.is_empty() || event_id.len() > 128 {
        return Err(bad_value(0));
    }
    let occurred_ms = timestamp(&cells[1], 1)?;
    let ingested_ms = timestamp(&cells[2], 2)?;
    let creator_id = non_empty(&cells[3], 3)?;
    let template_id = non_empty(&cells[4], 4)?;
    let brand_id = match &cells[5] {
        Cell::Null => None,
        Cell::Str(s) => Some(s.clone()),
        _ => return Err(bad_type(5)),
    };
    let content_kind = one_of(&cells[6], 6, &CONTENT_KINDS)?;
    let action = one_of(&cells[7], 7, &ACTIONS)?;
    let user_tier = one_of(&cells[8], 8, &USER_TIERS)?;
    let country = string(&cells[9], 9)?;
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(bad_value(9));
    }
    Ok(Event {
        event_id,
        occurred_ms,
        ingested_ms,
        creator_id,
        template_id,
        brand_id,
        content_kind,
        action,
        user_tier,
        country,
    })
}

fn missing(i: usize) -> String {
    format!("missing-field:{}", FIELDS[i])
}

fn bad_type(i: usize) -> String {
    format!("bad-type:{}", FIELDS[i])
}

fn bad_value(i: usize) -> String {
    format!("bad-value:{}", FIELDS[i])
}

fn string(cell: &Cell, i: usize) -> Result<String, String> {
    match cell {
        Cell::Null => Err(missing(i)),
        Cell::Str(s) => Ok(s.clone()),
        _ => Err(bad_type(i)),
    }
}

fn non_empty(cell: &Cell, i: usize) -> Result<String, String> {
    let s = string(cell, i)?;
    if s.is_empty() {
        return Err(bad_value(i));
    }
    Ok(s)
}

fn one_of(cell: &Cell, i: usize, values: &[&str]) -> Result<String, String> {
    let s = string(cell, i)?;
    if !values.contains(&s.as_str()) {
        return Err(bad_value(i));
    }
    Ok(s)
}

/// 2000-01-01T00:00:00Z.
const FIRST_VALID_MS: i64 = 946_684_800_000;
/// 2101-01-01T00:00:00Z, the first instant after the valid range.
const END_VALID_MS: i64 = 4_133_980_800_000;

fn timestamp(cell: &Cell, i: usize) -> Result<i64, String> {
    let ms: i128 = match cell {
        Cell::Null => return Err(missing(i)),
        Cell::Str(s) => i128::from(parse_rfc3339(s).ok_or_else(|| bad_value(i))?),
        Cell::Int(n) => *n,
        Cell::Timestamp(ms) => i128::from(*ms),
        Cell::Other => return Err(bad_type(i)),
    };
    if (i128::from(FIRST_VALID_MS)..i128::from(END_VALID_MS)).contains(&ms) {
        Ok(ms as i64)
    } else {
        Err(bad_value(i))
    }
}

// ---------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    // Count days from 0000-03-01, so that the leap day ends each cycle.
    let (y, m) = if month <= 2 {
        (year - 1, month + 12)
    } else {
        (year, month)
    };
    let days_before_year = 365 * y + y.div_euclid(4) - y.div_euclid(100) + y.div_euclid(400);
    let days_before_month = (153 * (m - 3) + 2) / 5;
    days_before_year + days_before_month + day - 1 - 719_468
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// `YYYY-MM-DD` of the UTC day of an instant, found by walking from 1970
/// (slow, and plainly right for the years the contract allows).
pub fn day_string(ms: i64) -> String {
    let mut days = ms.div_euclid(MS_PER_DAY);
    let mut year = 1970;
    loop {
        let in_year = if is_leap(year) { 366 } else { 365 };
        if days < in_year {
            break;
        }
        days -= in_year;
        year += 1;
    }
    let mut month = 1;
    while days >= days_in_month(year, month) {
        days -= days_in_month(year, month);
        month += 1;
    }
    format!("{year:04}-{month:02}-{:02}", days + 1)
}

/// Epoch milliseconds of `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, the
/// RFC 3339 date-time with an offset; sub-millisecond digits are truncated.
/// The forms RFC 3339 leaves to agreement between parties (a space instead
/// of `T`, a leap second) are not accepted here; the tests' inputs avoid them.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let digits = |from: usize, to: usize| -> Option<i64> {
        let part = b.get(from..to)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(part.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let at = |i: usize, allowed: &[u8]| b.get(i).is_some_and(|c| allowed.contains(c));
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt") && at(13, b":") && at(16, b":")) {
        return None;
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 7)?, digits(8, 10)?);
    let (hour, minute, second) = (digits(11, 13)?, digits(14, 16)?, digits(17, 19)?);
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if at(i, b".") {
        let start = i + 1;
        i = start;
        while at(i, b"0123456789") {
            i += 1;
        }
        if i == start {
            return None;
        }
        let mut first_three = b[start..i.min(start + 3)].to_vec();
        first_three.resize(3, b'0');
        millis = first_three
            .iter()
            .fold(0, |n, d| n * 10 + i64::from(d - b'0'));
    }
    let offset_minutes = match b.get(i) {
        Some(b'Z' | b'z') if b.len() == i + 1 => 0,
        Some(sign @ (b'+' | b'-')) if b.len() == i + 6 && at(i + 3, b":") => {
            let (h, m) = (digits(i + 1, i + 3)?, digits(i + 4, i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            if *sign == b'-' {
                -(h * 60 + m)
            } else {
                h * 60 + m
            }
        }
        _ => return None,
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

// ---------------------------------------------------------------------------
// Reading input files
// ---------------------------------------------------------------------------

/// What one input record became: its position (1-based line for JSON, 0-based
/// row for Parquet) and the event or the reason it is quarantined.
#[derive(Debug)]
pub struct Read {
    pub position: u64,
    pub outcome: Result<Event, String>,
    /// The JSON line as text (invalid UTF-8 replaced), for JSON input.
    pub raw: Option<String>,
}

/// The records of a JSON-lines file given as bytes (already decompressed).
pub fn read_jsonl_bytes(bytes: &[u8]) -> Vec<Read> {
    let mut out = Vec::new();
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    // A final newline ends the last line; it does not start another one.
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    for (index, line) in lines.into_iter().enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        out.push(Read {
            position: index as u64 + 1,
            outcome: json_cells(line).and_then(|cells| validate(&cells)),
            raw: Some(String::from_utf8_lossy(line).into_owned()),
        });
    }
    out
}

/// The records of a JSON-lines file, plain, `.gz` or `.zst`.
pub fn read_jsonl(path: &Path) -> Vec<Read> {
    let bytes = std::fs::read(path).expect("readable input");
    let name = path.to_string_lossy();
    let bytes = if name.ends_with(".gz") {
        let mut plain = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::MultiGzDecoder::new(&bytes[..]),
            &mut plain,
        )
        .expect("valid gzip");
        plain
    } else if name.ends_with(".zst") {
        zstd::stream::decode_all(&bytes[..]).expect("valid zstd")
    } else {
        bytes
    };
    read_jsonl_bytes(&bytes)
}

/// The ten contract fields of one JSON line, or `malformed-json`.
fn json_cells(line: &[u8]) -> Result<[Cell; 10], String> {
    // serde_json checks that the whole line is UTF-8 and keeps the last of
    // repeated keys.
    let value: Value = serde_json::from_slice(line).map_err(|_| "malformed-json".to_string())?;
    let Value::Object(object) = value else {
        return Err("malformed-json".to_string());
    };
    Ok(std::array::from_fn(|i| match object.get(FIELDS[i]) {
        None | Some(Value::Null) => Cell::Null,
        Some(Value::String(s)) => Cell::Str(s.clone()),
        Some(Value::Number(n)) => {
            if let Some(v) = n.as_i64() {
                Cell::Int(i128::from(v))
            } else if let Some(v) = n.as_u64() {
                Cell::Int(i128::from(v))
            } else {
                Cell::Other
            }
        }
        Some(_) => Cell::Other,
    }))
}

/// The records of a Parquet file: each column is judged by its type, as the
/// contract says (a missing column makes every row miss the field, a column of
/// another type makes every row a bad type).
pub fn read_parquet(path: &Path) -> Vec<Read> {
    let file = std::fs::File::open(path).expect("readable input");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("a Parquet file")
        .build()
        .expect("a Parquet reader");
    let mut out = Vec::new();
    let mut row = 0u64;
    for batch in reader {
        let batch = batch.expect("a readable batch");
        let mut columns: Vec<std::vec::IntoIter<Cell>> = (0..10)
            .map(|i| parquet_cells(&batch, i).into_iter())
            .collect();
        for _ in 0..batch.num_rows() {
            let cells: [Cell; 10] =
                std::array::from_fn(|i| columns[i].next().expect("a cell per row"));
            out.push(Read {
                position: row,
                outcome: validate(&cells),
                raw: None,
            });
            row += 1;
        }
    }
    out
}

fn parquet_cells(batch: &RecordBatch, field: usize) -> Vec<Cell> {
    let rows = batch.num_rows();
    let Some(column) = batch.column_by_name(FIELDS[field]) else {
        return vec![Cell::Null; rows];
    };
    let is_time = field == 1 || field == 2;
    let null_or = |r: usize, cell: Cell| {
        if column.is_null(r) { Cell::Null } else { cell }
    };
    let is_string =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    match column.data_type() {
        DataType::Timestamp(unit, _) if is_time => {
            let raw = arrow::compute::cast(column, &DataType::Int64).expect("timestamps cast");
            let raw = raw.as_primitive::<Int64Type>();
            (0..rows)
                .map(|r| {
                    let v = raw.value(r);
                    let ms = match unit {
                        TimeUnit::Second => v.checked_mul(1000).unwrap_or(i64::MAX),
                        TimeUnit::Millisecond => v,
                        TimeUnit::Microsecond => v.div_euclid(1000),
                        TimeUnit::Nanosecond => v.div_euclid(1_000_000),
                    };
                    null_or(r, Cell::Timestamp(ms))
                })
                .collect()
        }
        DataType::Int64 if is_time => {
            let raw = column.as_primitive::<Int64Type>();
            (0..rows)
                .map(|r| null_or(r, Cell::Int(i128::from(raw.value(r)))))
                .collect()
        }
        t if !is_time
            && (is_string(t) || matches!(t, DataType::Dictionary(_, v) if is_string(v))) =>
        {
            let text = arrow::compute::cast(column, &DataType::Utf8).expect("strings cast");
            let text = text.as_string::<i32>();
            (0..rows)
                .map(|r| null_or(r, Cell::Str(text.value(r).to_string())))
                .collect()
        }
        _ => vec![Cell::Other; rows],
    }
}

// ---------------------------------------------------------------------------
// Dedup, policies, totals
// ---------------------------------------------------------------------------

/// The outcome of deduplication.
#[derive(Debug)]
pub struct Deduped {
    pub survivors: Vec<Event>,
    pub duplicates: u64,
    pub conflicts: u64,
}

/// Keeps one event per `event_id`: the smallest `ingested_at`, then the
/// smallest other fields in contract order.
pub fn dedup(events: Vec<Event>) -> Deduped {
    let mut groups: HashMap<String, Vec<Event>> = HashMap::new();
    for event in events {
        groups
            .entry(event.event_id.clone())
            .or_default()
            .push(event);
    }
    let mut survivors = Vec::with_capacity(groups.len());
    let (mut duplicates, mut conflicts) = (0, 0);
    for (_, mut group) in groups {
        group.sort_by(|a, b| (a.ingested_ms, a.tie_break()).cmp(&(b.ingested_ms, b.tie_break())));
        let mut group = group.into_iter();
        let survivor = group.next().expect("groups are never empty");
        for other in group {
            duplicates += 1;
            if other.tie_break() != survivor.tie_break() {
                conflicts += 1;
            }
        }
        survivors.push(survivor);
    }
    Deduped {
        survivors,
        duplicates,
        conflicts,
    }
}

/// A rule's decision about one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub payable: bool,
    pub rate_micros: i64,
    pub reason: &'static str,
}

fn not_payable(reason: &'static str) -> Verdict {
    Verdict {
        payable: false,
        rate_micros: 0,
        reason,
    }
}

fn payable(rate_micros: i64, reason: &'static str) -> Verdict {
    Verdict {
        payable: true,
        rate_micros,
        reason,
    }
}

fn tier_percent(tier: &str) -> i64 {
    match tier {
        "free" => 50,
        "pro" => 100,
        "teams" => 120,
        "enterprise" => 150,
        other => panic!("not a user tier: {other}"),
    }
}

/// creator-pay 1.0.0, as `docs/policies.md` states it.
pub fn creator_pay_v1(e: &Event) -> Verdict {
    if e.creator_id.starts_with("test-") {
        return not_payable("test-creator");
    }
    if e.action == "view" {
        return not_payable("view-only");
    }
    if e.user_tier == "free" && e.action != "publish" {
        return not_payable("free-tier");
    }
    let base = match e.content_kind.as_str() {
        "template" => 30_000,
        "image" => 10_000,
        "video" => 50_000,
        "audio" => 8_000,
        "font" => 5_000,
        other => panic!("not a content kind: {other}"),
    };
    payable(base * tier_percent(&e.user_tier) / 100, "payable")
}

/// creator-pay 2.0.0, as `docs/policies.md` states it.
pub fn creator_pay_v2(e: &Event) -> Verdict {
    if e.creator_id.starts_with("test-") {
        return not_payable("test-creator");
    }
    if e.action == "view" {
        if e.content_kind == "video" && (e.user_tier == "teams" || e.user_tier == "enterprise") {
            return payable(2_000, "video-view");
        }
        return not_payable("view-only");
    }
    if e.user_tier == "free" && e.action != "publish" {
        return not_payable("free-tier");
    }
    let base = match e.content_kind.as_str() {
        "template" => 30_000,
        "image" => 8_000,
        "video" => 50_000,
        "audio" => 8_000,
        "font" => 5_000,
        other => panic!("not a content kind: {other}"),
    };
    let rate = base * tier_percent(&e.user_tier) / 100;
    if ["BR", "IN", "ID"].contains(&e.country.as_str()) {
        payable(rate * 80 / 100, "payable")
    } else {
        payable(rate, "payable")
    }
}

/// One daily output row's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub events: i64,
    pub payable_events: i64,
    pub amount_micros: i64,
}

/// Daily totals keyed by `(day, creator_id, template_id)`.
pub type Daily = BTreeMap<(String, String, String), Totals>;

/// Everything the model predicts for a run over some input files.
#[derive(Debug)]
pub struct Expected {
    /// Records read (blank lines excluded).
    pub records: u64,
    /// `(file, position, reason)` of every quarantined record, in input order.
    pub quarantine: Vec<(String, u64, String)>,
    /// The raw text of each quarantined JSON line (None for Parquet rows).
    pub quarantine_raw: Vec<Option<String>>,
    pub valid: u64,
    pub duplicates: u64,
    pub conflicts: u64,
    pub survivors: Vec<Event>,
}

impl Expected {
    /// Reads `files` (named as the run will name them), in the order given.
    pub fn of_files(files: &[(String, &Path)]) -> Expected {
        let mut records = 0;
        let mut quarantine = Vec::new();
        let mut quarantine_raw = Vec::new();
        let mut valid = Vec::new();
        for (name, path) in files {
            let reads = if path.extension().is_some_and(|e| e == "parquet") {
                read_parquet(path)
            } else {
                read_jsonl(path)
            };
            for read in reads {
                records += 1;
                match read.outcome {
                    Ok(event) => valid.push(event),
                    Err(reason) => {
                        quarantine.push((name.clone(), read.position, reason));
                        quarantine_raw.push(read.raw);
                    }
                }
            }
        }
        let valid_count = valid.len() as u64;
        let deduped = dedup(valid);
        Expected {
            records,
            quarantine,
            quarantine_raw,
            valid: valid_count,
            duplicates: deduped.duplicates,
            conflicts: deduped.conflicts,
            survivors: deduped.survivors,
        }
    }

    pub fn unique(&self) -> u64 {
        self.survivors.len() as u64
    }

    /// Quarantined records per reason code.
    pub fn quarantined_by_reason(&self) -> BTreeMap<String, u64> {
        let mut by = BTreeMap::new();
        for (_, _, reason) in &self.quarantine {
            *by.entry(reason.clone()).or_insert(0) += 1;
        }
        by
    }

    /// The daily totals under `policy`.
    pub fn daily(&self, policy: fn(&Event) -> Verdict) -> Daily {
        let mut daily = Daily::new();
        for event in &self.survivors {
            let verdict = policy(event);
            let key = (
                event.day(),
                event.creator_id.clone(),
                event.template_id.clone(),
            );
            let row = daily.entry(key).or_default();
            row.events += 1;
            if verdict.payable {
                row.payable_events += 1;
                row.amount_micros += verdict.rate_micros;
            }
        }
        daily
    }

    /// Unique events per verdict reason under `policy`.
    pub fn by_reason(&self, policy: fn(&Event) -> Verdict) -> BTreeMap<String, u64> {
        let mut by = BTreeMap::new();
        for event in &self.survivors {
            *by.entry(policy(event).reason.to_string()).or_insert(0) += 1;
        }
        by
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_reads_timestamps_as_the_contract_says() {
        let may_first = days_from_civil(2026, 5, 1) * MS_PER_DAY;
        assert_eq!(may_first, 1_777_593_600_000);
        assert_eq!(parse_rfc3339("2026-05-01T00:00:00Z"), Some(may_first));
        assert_eq!(
            parse_rfc3339("2026-05-01T02:00:00.1239+02:00"),
            Some(may_first + 123)
        );
        assert_eq!(parse_rfc3339("2026-04-30T19:00:00-05:00"), Some(may_first));
        assert_eq!(parse_rfc3339("2000-01-01T00:00:00Z"), Some(FIRST_VALID_MS));
        assert_eq!(parse_rfc3339("2101-01-01T00:00:00Z"), Some(END_VALID_MS));
        for bad in [
            "2026-05-01",
            "2026-05-01T00:00:00",
            "2026-05-01T00:00:00.Z",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-05-01T24:00:00Z",
            "2026-05-01T00:00:00+2:00",
            "1778000000000",
            "",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert_eq!(day_string(may_first - 1), "2026-04-30");
        assert_eq!(day_string(may_first), "2026-05-01");
        assert_eq!(day_string(FIRST_VALID_MS), "2000-01-01");
        assert_eq!(day_string(END_VALID_MS - 1), "2100-12-31");
        assert_eq!(
            day_string(days_from_civil(2028, 2, 29) * MS_PER_DAY),
            "2028-02-29"
        );
    }
}
