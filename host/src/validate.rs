//! Validation: applies the event contract to one record at a time.
//!
//! Readers (see `ingest`) turn each record into ten [`Value`]s, one per contract
//! field, whatever the input format. This module decides whether the record is
//! valid and, if so, appends it to a chunk's [`EventColumns`]; if not, it names
//! the first problem in field order as a [`Reason`]. It never reads files.

use crate::event::{
    ACTIONS, CONTENT_KINDS, FIELDS, MAX_EVENT_ID_BYTES, USER_TIERS, enum_code, parse_rfc3339_ms,
    timestamp_in_range, valid_country,
};
use crate::intern::Interner;
use std::fmt;

/// A field of one input record, as its reader found it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// Absent or null.
    Null,
    /// A string.
    Str(&'a str),
    /// An integer (JSON integer, Parquet int64).
    Int(i64),
    /// A Parquet timestamp, converted to UTC epoch milliseconds.
    TimestampMs(i64),
    /// Any other type (boolean, object, array, fractional number...).
    Other,
}

/// Why a record was quarantined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// The line is not a JSON object.
    MalformedJson,
    /// The line is longer than the limit of the run (`--max-line-bytes`).
    LineTooLong,
    /// A required field is absent or null (field index into [`FIELDS`]).
    MissingField(usize),
    /// A field has the wrong type.
    BadType(usize),
    /// A field's value is outside the valid values.
    BadValue(usize),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Reason::MalformedJson => f.write_str("malformed-json"),
            Reason::LineTooLong => f.write_str("line-too-long"),
            Reason::MissingField(i) => write!(f, "missing-field:{}", FIELDS[i]),
            Reason::BadType(i) => write!(f, "bad-type:{}", FIELDS[i]),
            Reason::BadValue(i) => write!(f, "bad-value:{}", FIELDS[i]),
        }
    }
}

/// A record that broke the contract, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// Index of the source file in the run's sorted input list.
    pub source: u32,
    /// 1-based line number (JSON) or 0-based row index (Parquet).
    pub position: u64,
    /// The first problem found.
    pub reason: Reason,
    /// The record as it was: the JSON line, or the Parquet row rendered as
    /// JSON; for a line over the limit, its first bytes only.
    pub raw: String,
    /// For a line over the limit, its length in bytes (without its line end).
    pub line_bytes: Option<u64>,
}

/// Valid events of one chunk, as columns. Strings are ids into an [`Interner`]:
/// the one the chunk was read with, then (after `dedup::merge`) the run's.
#[derive(Default, Clone)]
pub struct EventColumns {
    /// `event_id` of row `i` is `event_id_bytes[event_id_offsets[i]..event_id_offsets[i + 1]]`.
    pub event_id_offsets: Vec<u32>,
    /// The bytes of every `event_id`, back to back.
    pub event_id_bytes: Vec<u8>,
    /// UTC epoch milliseconds.
    pub occurred_at: Vec<i64>,
    /// UTC epoch milliseconds.
    pub ingested_at: Vec<i64>,
    /// String ids.
    pub creator: Vec<u32>,
    /// String ids.
    pub template: Vec<u32>,
    /// String ids, [`NO_BRAND`] for null.
    pub brand: Vec<u32>,
    /// Codes of [`CONTENT_KINDS`].
    pub content_kind: Vec<u8>,
    /// Codes of [`ACTIONS`].
    pub action: Vec<u8>,
    /// Codes of [`USER_TIERS`].
    pub user_tier: Vec<u8>,
    /// Two ASCII upper-case letters.
    pub country: Vec<[u8; 2]>,
    /// Where each event was read: the line (JSON) or row (Parquet) in the
    /// chunk's source file, filled in by the readers.
    pub position: Vec<u64>,
    /// Index of the source file in the run's sorted input list.
    pub source: u32,
}

/// The string id that stands for a null `brand_id`.
pub const NO_BRAND: u32 = u32::MAX;

impl EventColumns {
    /// An empty chunk.
    pub fn new() -> Self {
        EventColumns {
            event_id_offsets: vec![0],
            ..Default::default()
        }
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.occurred_at.len()
    }

    /// Whether the chunk holds no event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `event_id` of row `row`.
    pub fn event_id(&self, row: usize) -> &[u8] {
        &self.event_id_bytes
            [self.event_id_offsets[row] as usize..self.event_id_offsets[row + 1] as usize]
    }

    /// Checks a record against the contract; appends it if valid. Strings are
    /// interned into `strings`.
    pub fn push(&mut self, fields: &[Value<'_>; 10], strings: &mut Interner) -> Result<(), Reason> {
        let head = check_head(&fields[..3])?;
        let mut tail = [0u32; 7];
        for (i, slot) in tail.iter_mut().enumerate() {
            *slot = check(3 + i, fields[3 + i], strings)?;
        }
        self.store(head, tail);
        Ok(())
    }

    /// Like [`push`](Self::push), for a record whose fields from `creator_id`
    /// on were already checked with [`check`] (once per distinct value, when the
    /// input is dictionary-encoded).
    pub fn push_checked(
        &mut self,
        head: &[Value<'_>; 3],
        tail: [Result<u32, Reason>; 7],
    ) -> Result<(), Reason> {
        let head = check_head(head)?;
        let mut checked = [0u32; 7];
        for (slot, cell) in checked.iter_mut().zip(tail) {
            *slot = cell?;
        }
        self.store(head, checked);
        Ok(())
    }

    fn store(&mut self, (event_id, occurred_at, ingested_at): (&str, i64, i64), tail: [u32; 7]) {
        let [
            creator,
            template,
            brand,
            content_kind,
            action,
            user_tier,
            country,
        ] = tail;
        self.event_id_bytes.extend_from_slice(event_id.as_bytes());
        self.event_id_offsets.push(self.event_id_bytes.len() as u32);
        self.occurred_at.push(occurred_at);
        self.ingested_at.push(ingested_at);
        self.creator.push(creator);
        self.template.push(template);
        self.brand.push(brand);
        self.content_kind.push(content_kind as u8);
        self.action.push(action as u8);
        self.user_tier.push(user_tier as u8);
        self.country.push((country as u16).to_be_bytes());
    }
}

/// Checks `event_id`, `occurred_at` and `ingested_at`.
fn check_head<'a>(fields: &[Value<'a>]) -> Result<(&'a str, i64, i64), Reason> {
    let event_id = string(fields[0], 0)?;
    if event_id.is_empty() || event_id.len() > MAX_EVENT_ID_BYTES {
        return Err(Reason::BadValue(0));
    }
    Ok((event_id, timestamp(fields[1], 1)?, timestamp(fields[2], 2)?))
}

/// Checks one of the fields from `creator_id` (3) to `country` (9) and encodes
/// it as a `u32`: a string id (interned into `strings`, [`NO_BRAND`] for a null
/// brand), an enumeration code, or the two country letters.
pub fn check(field: usize, value: Value<'_>, strings: &mut Interner) -> Result<u32, Reason> {
    match field {
        3 | 4 => Ok(strings.intern(non_empty(value, field)?)),
        5 => match value {
            Value::Null => Ok(NO_BRAND),
            Value::Str(s) => Ok(strings.intern(s)),
            _ => Err(Reason::BadType(5)),
        },
        6 => enumeration(value, 6, &CONTENT_KINDS),
        7 => enumeration(value, 7, &ACTIONS),
        8 => enumeration(value, 8, &USER_TIERS),
        9 => {
            let country = string(value, 9)?.as_bytes();
            if !valid_country(country) {
                return Err(Reason::BadValue(9));
            }
            Ok(u16::from_be_bytes([country[0], country[1]]) as u32)
        }
        _ => unreachable!("only fields 3 to 9 are checked one by one"),
    }
}

fn string(value: Value<'_>, i: usize) -> Result<&str, Reason> {
    match value {
        Value::Null => Err(Reason::MissingField(i)),
        Value::Str(s) => Ok(s),
        _ => Err(Reason::BadType(i)),
    }
}

fn non_empty(value: Value<'_>, i: usize) -> Result<&str, Reason> {
    let s = string(value, i)?;
    if s.is_empty() {
        return Err(Reason::BadValue(i));
    }
    Ok(s)
}

fn enumeration(value: Value<'_>, i: usize, values: &[&str]) -> Result<u32, Reason> {
    enum_code(values, string(value, i)?)
        .map(u32::from)
        .ok_or(Reason::BadValue(i))
}

fn timestamp(value: Value<'_>, i: usize) -> Result<i64, Reason> {
    let ms = match value {
        Value::Null => return Err(Reason::MissingField(i)),
        Value::Str(s) => parse_rfc3339_ms(s).ok_or(Reason::BadValue(i))?,
        Value::Int(ms) | Value::TimestampMs(ms) => ms,
        Value::Other => return Err(Reason::BadType(i)),
    };
    if timestamp_in_range(ms) {
        Ok(ms)
    } else {
        Err(Reason::BadValue(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> [Value<'static>; 10] {
        [
            Value::Str("e1"),
            Value::Str("2026-05-01T12:00:00Z"),
            Value::Int(1_777_636_800_000),
            Value::Str("cr-1"),
            Value::Str("tpl-1"),
            Value::Null,
            Value::Str("video"),
            Value::Str("view"),
            Value::Str("teams"),
            Value::Str("BR"),
        ]
    }

    fn reason(change: impl FnOnce(&mut [Value<'static>; 10])) -> Option<String> {
        let mut fields = good();
        change(&mut fields);
        EventColumns::new()
            .push(&fields, &mut Interner::new())
            .err()
            .map(|r| r.to_string())
    }

    #[test]
    fn a_valid_record_is_appended() {
        let mut columns = EventColumns::new();
        columns.push(&good(), &mut Interner::new()).unwrap();
        assert_eq!(columns.len(), 1);
        assert_eq!(columns.event_id(0), b"e1");
        assert_eq!(columns.brand[0], NO_BRAND);
        assert_eq!(columns.content_kind[0], 2);
        assert_eq!(columns.country[0], *b"BR");
    }

    #[test]
    fn each_problem_has_its_code() {
        let long = Box::leak("x".repeat(129).into_boxed_str());
        type Change = Box<dyn FnOnce(&mut [Value<'static>; 10])>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|f| f[0] = Value::Null), "missing-field:event_id"),
            (Box::new(|f| f[0] = Value::Int(3)), "bad-type:event_id"),
            (Box::new(|f| f[0] = Value::Str("")), "bad-value:event_id"),
            (
                Box::new(move |f| f[0] = Value::Str(long)),
                "bad-value:event_id",
            ),
            (Box::new(|f| f[1] = Value::Other), "bad-type:occurred_at"),
            (
                Box::new(|f| f[1] = Value::Str("May 1st")),
                "bad-value:occurred_at",
            ),
            (Box::new(|f| f[1] = Value::Int(0)), "bad-value:occurred_at"),
            (
                Box::new(|f| f[2] = Value::Null),
                "missing-field:ingested_at",
            ),
            (Box::new(|f| f[3] = Value::Str("")), "bad-value:creator_id"),
            (Box::new(|f| f[4] = Value::Other), "bad-type:template_id"),
            (Box::new(|f| f[5] = Value::Int(1)), "bad-type:brand_id"),
            (
                Box::new(|f| f[6] = Value::Str("Video")),
                "bad-value:content_kind",
            ),
            (Box::new(|f| f[7] = Value::Str("share")), "bad-value:action"),
            (Box::new(|f| f[8] = Value::Null), "missing-field:user_tier"),
            (Box::new(|f| f[9] = Value::Str("br")), "bad-value:country"),
            (Box::new(|f| f[9] = Value::Str("BRA")), "bad-value:country"),
        ];
        for (change, expected) in cases {
            assert_eq!(reason(change).as_deref(), Some(expected));
        }
    }

    #[test]
    fn the_first_problem_in_field_order_wins() {
        let got = reason(|f| {
            f[9] = Value::Null;
            f[3] = Value::Int(1);
        });
        assert_eq!(got.as_deref(), Some("bad-type:creator_id"));
    }
}
