//! The usage-event contract, version 1: field names, enumerations and timestamps.
//!
//! This module owns the vocabulary shared by every stage: which fields exist, in
//! which order problems are reported, the byte codes enumerations travel with
//! (the same codes as the rule interface in `wit/rules.wit`), and how a timestamp
//! becomes UTC epoch milliseconds and a day. It holds no data and does no I/O.

use chrono::{DateTime, Datelike, NaiveDate};

/// The contract's fields, in the order problems are reported.
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

/// The longest valid `event_id`, in bytes.
pub const MAX_EVENT_ID_BYTES: usize = 128;

/// Valid values of `content_kind`; the index is the code in the rule interface.
pub const CONTENT_KINDS: [&str; 5] = ["template", "image", "video", "audio", "font"];
/// Valid values of `action`; the index is the code in the rule interface.
pub const ACTIONS: [&str; 4] = ["view", "use", "export", "publish"];
/// Valid values of `user_tier`; the index is the code in the rule interface.
pub const USER_TIERS: [&str; 4] = ["free", "pro", "teams", "enterprise"];

/// Milliseconds in a day.
pub const MS_PER_DAY: i64 = 86_400_000;
/// 2000-01-01T00:00:00Z, the first valid instant.
pub const MIN_TIMESTAMP_MS: i64 = 946_684_800_000;
/// 2101-01-01T00:00:00Z, the first instant after the valid range.
pub const END_TIMESTAMP_MS: i64 = 4_133_980_800_000;

/// The code of an enumeration value, if it is one of `values` exactly.
pub fn enum_code(values: &[&str], value: &str) -> Option<u8> {
    values.iter().position(|v| *v == value).map(|i| i as u8)
}

/// Whether a UTC instant lies in the years 2000 to 2100.
pub fn timestamp_in_range(ms: i64) -> bool {
    (MIN_TIMESTAMP_MS..END_TIMESTAMP_MS).contains(&ms)
}

/// Parses an RFC 3339 timestamp with offset into UTC epoch milliseconds
/// (sub-millisecond digits are truncated toward the past).
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Whether a country code is exactly two ASCII upper-case letters.
pub fn valid_country(value: &[u8]) -> bool {
    value.len() == 2 && value.iter().all(u8::is_ascii_uppercase)
}

/// The output day of an instant: days since 1970-01-01, UTC.
pub fn day_of(ms: i64) -> i32 {
    ms.div_euclid(MS_PER_DAY) as i32
}

/// A day number as `YYYY-MM-DD`.
pub fn format_day(day: i32) -> String {
    day_text(day).expect("days of valid timestamps are within chrono's range")
}

/// A day number as `YYYY-MM-DD`, or `None` for a day outside chrono's
/// calendar (a day number read from a damaged file, say).
pub fn day_text(day: i32) -> Option<String> {
    let date = NaiveDate::from_num_days_from_ce_opt(day.checked_add(719_163)?)?;
    Some(format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        date.month(),
        date.day()
    ))
}

/// Parses `YYYY-MM-DD` into a day number.
pub fn parse_day(text: &str) -> Option<i32> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(date.num_days_from_ce() - 719_163)
}

/// Parses `FROM..TO` (inclusive) or a single `YYYY-MM-DD` into day numbers.
pub fn parse_day_range(text: &str) -> Result<(i32, i32), String> {
    let (from, to) = text.split_once("..").unwrap_or((text, text));
    let day = |t: &str| parse_day(t).ok_or_else(|| format!("{t:?} is not a date like 2026-05-01"));
    let (from, to) = (day(from)?, day(to)?);
    if from > to {
        return Err(format!("{text}: the first day is after the last"));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_bounds_are_the_years_2000_to_2100() {
        assert_eq!(
            parse_rfc3339_ms("2000-01-01T00:00:00Z"),
            Some(MIN_TIMESTAMP_MS)
        );
        assert_eq!(
            parse_rfc3339_ms("2101-01-01T00:00:00Z"),
            Some(END_TIMESTAMP_MS)
        );
        assert!(timestamp_in_range(MIN_TIMESTAMP_MS));
        assert!(!timestamp_in_range(MIN_TIMESTAMP_MS - 1));
        assert!(timestamp_in_range(END_TIMESTAMP_MS - 1));
        assert!(!timestamp_in_range(END_TIMESTAMP_MS));
    }

    #[test]
    fn offsets_are_converted_to_utc() {
        let z = parse_rfc3339_ms("2026-05-01T12:34:56.789Z").unwrap();
        let plus2 = parse_rfc3339_ms("2026-05-01T14:34:56.789+02:00").unwrap();
        assert_eq!(z, plus2);
        assert_eq!(format_day(day_of(z)), "2026-05-01");
        assert_eq!(
            format_day(day_of(
                parse_rfc3339_ms("2026-05-02T01:00:00+02:00").unwrap()
            )),
            "2026-05-01"
        );
        assert_eq!(parse_day("2026-05-01"), Some(day_of(z)));
    }

    #[test]
    fn day_ranges() {
        let may1 = parse_day("2026-05-01").unwrap();
        assert_eq!(
            parse_day_range("2026-05-01..2026-05-03"),
            Ok((may1, may1 + 2))
        );
        assert_eq!(parse_day_range("2026-05-01"), Ok((may1, may1)));
        assert!(parse_day_range("2026-05-03..2026-05-01").is_err());
        assert!(parse_day_range("May..June").is_err());
    }

    #[test]
    fn rejects_what_is_not_rfc3339() {
        for bad in [
            "2026-05-01",
            "2026-05-01T12:00:00",
            "yesterday",
            "",
            "2026-13-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn enums_match_exactly() {
        assert_eq!(enum_code(&CONTENT_KINDS, "video"), Some(2));
        assert_eq!(enum_code(&CONTENT_KINDS, "Video"), None);
        assert_eq!(enum_code(&USER_TIERS, "enterprise"), Some(3));
        assert!(valid_country(b"BR"));
        assert!(!valid_country(b"br"));
        assert!(!valid_country(b"USA"));
    }
}
