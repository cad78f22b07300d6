//! Newline-delimited JSON: splits a file into blocks of whole lines, and turns
//! each line into the ten contract fields.
//!
//! Reading (and decompressing) a file is sequential; blocks are parsed in
//! parallel. A block remembers the number of its first line so quarantine
//! records can point at the exact line.

use super::{Chunk, Format, IngestError, InputFile};
use crate::event::FIELDS;
use crate::intern::Interner;
use crate::validate::{EventColumns, Quarantined, Reason, Value};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};
use std::sync::{Arc, Mutex};

/// Bytes read from a file per block (a block always ends at a line end).
const BLOCK_BYTES: usize = 4 << 20;

/// Whole lines of one file.
pub(super) struct Block {
    source: u32,
    seq: u32,
    first_line: u64,
    bytes: Vec<u8>,
}

impl Block {
    /// The block's buffer, to be used again (see [`Buffers`]).
    pub(super) fn into_buffer(self) -> Vec<u8> {
        self.bytes
    }
}

/// Block buffers handed back after parsing, for the next blocks to read into:
/// a new process's fresh memory costs a page fault per page, and a run reads
/// gigabytes of blocks.
#[derive(Default)]
pub(super) struct Buffers(Mutex<Vec<Vec<u8>>>);

impl Buffers {
    /// Buffers kept at most; more are freed.
    const KEPT: usize = 64;

    fn take(&self) -> Vec<u8> {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut buffer = kept.pop().unwrap_or_default();
        buffer.clear();
        buffer
    }

    pub(super) fn give(&self, buffer: Vec<u8>) {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let size = buffer.capacity();
        if kept.len() < Self::KEPT && (BLOCK_BYTES..=4 * BLOCK_BYTES).contains(&size) {
            kept.push(buffer);
        }
    }
}

/// The blocks of one file, read lazily into buffers from `buffers`. A read
/// error ends the sequence with `Err`.
pub(super) fn blocks(
    source: u32,
    file: &InputFile,
    buffers: Arc<Buffers>,
) -> impl Iterator<Item = Result<Block, IngestError>> + Send + use<> {
    let path = file.path.clone();
    let format = file.format;
    let mut reader: Option<Box<dyn Read + Send>> = None;
    let mut opened = false;
    let mut carry: Vec<u8> = Vec::new();
    let mut seq = 0u32;
    let mut next_line = 1u64;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let fail = |source| IngestError::Read {
            path: path.clone(),
            source,
        };
        if !opened {
            opened = true;
            match open(&path, format) {
                Ok(r) => reader = Some(r),
                Err(e) => {
                    done = true;
                    return Some(Err(fail(e)));
                }
            }
        }
        let r = reader.as_mut()?;
        // The unfinished line from the last block comes first. A line longer
        // than a block keeps growing in its own buffer.
        let mut bytes = if carry.capacity() >= BLOCK_BYTES {
            std::mem::take(&mut carry)
        } else {
            let mut bytes = buffers.take();
            bytes.append(&mut carry);
            bytes
        };
        let start = bytes.len();
        bytes.resize(start + BLOCK_BYTES, 0);
        let mut filled = start;
        while filled < bytes.len() {
            match r.read(&mut bytes[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    done = true;
                    return Some(Err(fail(e)));
                }
            }
        }
        bytes.truncate(filled);
        let at_end = filled < start + BLOCK_BYTES;
        if at_end {
            done = true;
            if bytes.is_empty() {
                return None;
            }
        } else {
            // Keep the unfinished last line for the next block.
            match memchr::memrchr(b'\n', &bytes) {
                Some(end) => {
                    carry.extend_from_slice(&bytes[end + 1..]);
                    bytes.truncate(end + 1);
                }
                None => {
                    // One line longer than a block: keep reading until it ends.
                    carry = bytes;
                    return Some(Ok(Block {
                        source,
                        seq: u32::MAX,
                        first_line: 0,
                        bytes: Vec::new(),
                    }));
                }
            }
        }
        let block = Block {
            source,
            seq,
            first_line: next_line,
            bytes,
        };
        seq += 1;
        next_line += memchr::memchr_iter(b'\n', &block.bytes).count() as u64;
        Some(Ok(block))
    })
    .filter(|b| !matches!(b, Ok(Block { seq: u32::MAX, .. })))
}

fn open(path: &std::path::Path, format: Format) -> std::io::Result<Box<dyn Read + Send>> {
    let file = BufReader::with_capacity(1 << 20, File::open(path)?);
    Ok(match format {
        Format::JsonlGz => Box::new(flate2::read::MultiGzDecoder::new(file)),
        Format::JsonlZst => Box::new(zstd::stream::read::Decoder::with_buffer(file)?),
        _ => Box::new(file),
    })
}

/// Parses and validates every line of a block.
pub(super) fn parse(block: &Block, strings: &mut Interner) -> Chunk {
    let mut events = EventColumns::new();
    events.source = block.source;
    let mut quarantine = Vec::new();
    let mut records = 0;
    let mut line_no = block.first_line;
    let mut rest = &block.bytes[..];
    while !rest.is_empty() {
        let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let mut line = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or(&[]);
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        let this_line = line_no;
        line_no += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        records += 1;
        // The whole line must be UTF-8, not only the strings serde looks into
        // (it skips unknown fields without checking them).
        let parsed = std::str::from_utf8(line)
            .ok()
            .and_then(|text| serde_json::from_str::<Record<'_>>(text).ok());
        let outcome = match parsed {
            Some(record) => events.push(&record.values(), strings),
            None => Err(Reason::MalformedJson),
        };
        match outcome {
            Ok(()) => events.position.push(this_line),
            Err(reason) => quarantine.push(Quarantined {
                source: block.source,
                position: this_line,
                reason,
                raw: String::from_utf8_lossy(line).into_owned(),
            }),
        }
    }
    Chunk {
        source: block.source,
        seq: block.seq,
        records,
        interner: 0,
        events,
        quarantine,
    }
}

/// A JSON value as far as the contract cares.
enum Json<'a> {
    Null,
    Str(Cow<'a, str>),
    Int(i64),
    Other,
}

/// The contract fields of one JSON object; unknown fields are skipped.
struct Record<'a>([Json<'a>; 10]);

impl<'a> Record<'a> {
    fn values(&self) -> [Value<'_>; 10] {
        std::array::from_fn(|i| match &self.0[i] {
            Json::Null => Value::Null,
            Json::Str(s) => Value::Str(s),
            Json::Int(n) => Value::Int(*n),
            Json::Other => Value::Other,
        })
    }
}

impl<'de> de::Deserialize<'de> for Record<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RecordVisitor)
    }
}

struct RecordVisitor;

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = Record<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields: [Json<'de>; 10] = std::array::from_fn(|_| Json::Null);
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match FIELDS.iter().position(|f| *f == key) {
                // A repeated key: the last one wins, as in most JSON readers.
                Some(i) => fields[i] = map.next_value::<Json<'de>>()?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Record(fields))
    }
}

impl<'de> de::Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Json::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        // Larger than any valid timestamp either way; saturating keeps it an integer.
        Ok(Json::Int(i64::try_from(v).unwrap_or(i64::MAX)))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Json::Other)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Json::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Json::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Json::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(text: &[u8]) -> (Chunk, Interner) {
        let mut strings = Interner::new();
        let block = Block {
            source: 0,
            seq: 0,
            first_line: 1,
            bytes: text.to_vec(),
        };
        (parse(&block, &mut strings), strings)
    }

    const GOOD: &str = r#"{"event_id":"e1","occurred_at":"2026-05-01T12:00:00Z","ingested_at":1777636800000,"creator_id":"cr-1","template_id":"t\u00e9","brand_id":null,"content_kind":"video","action":"view","user_tier":"teams","country":"BR","extra":{"x":[1]}}"#;

    #[test]
    fn parses_valid_lines_and_skips_blank_ones() {
        let text = format!("{GOOD}\n\n  \r\n{GOOD}\r\n");
        let (c, strings) = chunk(text.as_bytes());
        assert_eq!(c.records, 2);
        assert_eq!(c.events.len(), 2);
        assert!(c.quarantine.is_empty());
        assert_eq!(strings.get(c.events.template[0]), "té");
    }

    #[test]
    fn quarantines_with_line_numbers_and_reasons() {
        let text = [
            GOOD.as_bytes(),
            b"[1,2]",
            b"{\"event_id\": \"e\xff\"}",
            &GOOD.as_bytes()[..40],
            GOOD.replace("\"ingested_at\":1777636800000", "\"ingested_at\":1.5")
                .as_bytes(),
            GOOD.replace("\"country\":\"BR\"", "\"country\":true")
                .as_bytes(),
            GOOD.replace(",\"user_tier\":\"teams\"", "").as_bytes(),
        ]
        .join(&b"\n"[..]);
        let (c, _) = chunk(&text);
        let got: Vec<(u64, String)> = c
            .quarantine
            .iter()
            .map(|q| (q.position, q.reason.to_string()))
            .collect();
        assert_eq!(
            got,
            vec![
                (2, "malformed-json".to_string()),
                (3, "malformed-json".to_string()),
                (4, "malformed-json".to_string()),
                (5, "bad-type:ingested_at".to_string()),
                (6, "bad-type:country".to_string()),
                (7, "missing-field:user_tier".to_string()),
            ]
        );
        assert_eq!(c.quarantine[0].raw, "[1,2]");
        assert_eq!(c.records, 7);
    }

    #[test]
    fn blocks_end_at_line_ends_and_count_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        let line = format!("{GOOD}\n");
        let n = BLOCK_BYTES / line.len() * 3 + 7;
        std::fs::write(&path, line.repeat(n)).unwrap();
        let file = InputFile {
            path,
            format: Format::Jsonl,
            size: 0,
            modified: None,
        };
        let blocks: Vec<Block> = super::blocks(0, &file, Default::default())
            .map(Result::unwrap)
            .collect();
        assert!(blocks.len() >= 3);
        let mut expected_line = 1;
        for block in &blocks {
            assert_eq!(block.first_line, expected_line);
            assert!(block.bytes.ends_with(b"\n"));
            expected_line += memchr::memchr_iter(b'\n', &block.bytes).count() as u64;
        }
        let mut strings = Interner::new();
        let total: u64 = blocks
            .into_iter()
            .map(|b| parse(&b, &mut strings).records)
            .sum();
        assert_eq!(total, n as u64);
    }

    #[test]
    fn recycled_buffers_and_a_line_longer_than_a_block_keep_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        let line = format!("{GOOD}\n");
        let long = format!("{}\n", "x".repeat(BLOCK_BYTES * 2 + 5));
        let mut text = line.repeat(BLOCK_BYTES / line.len() + 3);
        text.push_str(&long);
        text.push_str(&line.repeat(BLOCK_BYTES / line.len() * 2));
        std::fs::write(&path, &text).unwrap();
        let file = InputFile {
            path,
            format: Format::Jsonl,
            size: 0,
            modified: None,
        };
        let buffers = Arc::new(Buffers::default());
        let mut read = Vec::new();
        let mut expected_line = 1;
        for block in super::blocks(0, &file, buffers.clone()) {
            let block = block.unwrap();
            assert_eq!(block.first_line, expected_line);
            expected_line += memchr::memchr_iter(b'\n', &block.bytes).count() as u64;
            read.extend_from_slice(&block.bytes);
            // Handed back at once, so the next block reads into it.
            buffers.give(block.into_buffer());
        }
        assert!(
            read == text.as_bytes(),
            "the blocks do not add up to the file"
        );
    }
}
