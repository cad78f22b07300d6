//! Newline-delimited JSON: splits a file into blocks of whole lines, and turns
//! each line into the ten contract fields.
//!
//! Reading (and decompressing) a file is sequential; blocks are parsed in
//! parallel. A block remembers the number of its first line so quarantine
//! records can point at the exact line. A line longer than the limit is
//! quarantined as `line-too-long`: the reader keeps its first bytes only and
//! discards the rest up to the next line end, so its length never costs memory.

use super::{Chunk, Format, IngestError, InputFile};
use crate::event::FIELDS;
use crate::intern::Interner;
use crate::validate::{EventColumns, Quarantined, Reason, Value};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Bytes read from a file per block (a block always ends at a line end).
const BLOCK_BYTES: usize = 4 << 20;

/// Bytes of a line over the limit kept as its quarantined `raw` text.
pub(super) const TOO_LONG_PREFIX_BYTES: usize = 4 << 10;

/// Whole lines of one file, or the beginning of one line over the limit.
pub(super) struct Block {
    source: u32,
    seq: u32,
    first_line: u64,
    /// Whole lines; for a line over the limit, its first bytes.
    bytes: Vec<u8>,
    /// For a line over the limit, its length in bytes (without its line end).
    too_long: Option<u64>,
    /// Lines longer than this (without their line end) are quarantined.
    max_line_bytes: usize,
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

/// The blocks of one file, read lazily into buffers from `buffers`; lines
/// longer than `max_line_bytes` come as blocks of their own, holding their
/// first bytes only. A read error ends the sequence with `Err`.
pub(super) fn blocks(
    source: u32,
    file: &InputFile,
    max_line_bytes: usize,
    buffers: Arc<Buffers>,
) -> impl Iterator<Item = Result<Block, IngestError>> + Send + use<> {
    Blocks {
        source,
        path: file.path.clone(),
        format: file.format,
        max_line_bytes,
        buffers,
        reader: None,
        carry: Vec::new(),
        skipping: None,
        seq: 0,
        next_line: 1,
        ended: false,
        done: false,
    }
}

/// A line over the limit, being discarded up to its end.
struct Skipping {
    /// Its bytes seen so far.
    seen: u64,
    /// Its first bytes.
    prefix: Vec<u8>,
    /// Its last byte seen (a `\r` before the line end is not counted).
    last: u8,
}

impl Skipping {
    fn new(line: &[u8]) -> Skipping {
        Skipping {
            seen: line.len() as u64,
            prefix: line[..line.len().min(TOO_LONG_PREFIX_BYTES)].to_vec(),
            last: line.last().copied().unwrap_or(b'\n'),
        }
    }
}

/// The reader behind [`blocks`].
struct Blocks {
    source: u32,
    path: PathBuf,
    format: Format,
    max_line_bytes: usize,
    buffers: Arc<Buffers>,
    reader: Option<Box<dyn Read + Send>>,
    /// The unfinished last line of the previous read.
    carry: Vec<u8>,
    /// A line over the limit whose end is still to be found.
    skipping: Option<Skipping>,
    seq: u32,
    next_line: u64,
    /// The file was read to its end.
    ended: bool,
    /// The sequence is over (read to the end, or failed).
    done: bool,
}

impl Iterator for Blocks {
    type Item = Result<Block, IngestError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let result = self.next_block();
        if !matches!(result, Ok(Some(_))) {
            self.done = true;
        }
        result.transpose()
    }
}

impl Blocks {
    fn fail(&self, source: std::io::Error) -> IngestError {
        IngestError::Read {
            path: self.path.clone(),
            source,
        }
    }

    /// Reads what comes next into `buffer` (at least a byte unless the file
    /// ended); returns how much.
    fn read_some(&mut self, buffer: &mut [u8]) -> Result<usize, IngestError> {
        if self.ended {
            return Ok(0);
        }
        if self.reader.is_none() {
            self.reader = Some(open(&self.path, self.format).map_err(|e| self.fail(e))?);
        }
        loop {
            let read = match self.reader.as_mut() {
                Some(reader) => reader.read(buffer),
                None => Ok(0),
            };
            match read {
                Ok(0) => {
                    // Read to the end: the file (and its decompressor) can go.
                    self.ended = true;
                    self.reader = None;
                    return Ok(0);
                }
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.fail(e)),
            }
        }
    }

    /// Reads into `bytes` from its current length until it holds `want` bytes
    /// or the file ends; returns whether it ended.
    fn fill(&mut self, bytes: &mut Vec<u8>, want: usize) -> Result<bool, IngestError> {
        if self.ended {
            return Ok(true);
        }
        let mut filled = bytes.len();
        bytes.resize(want, 0);
        while filled < want {
            match self.read_some(&mut bytes[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        bytes.truncate(filled);
        Ok(self.ended)
    }

    /// The next block, or `None` at the end of the file.
    fn next_block(&mut self) -> Result<Option<Block>, IngestError> {
        if let Some(skipping) = self.skipping.take() {
            return self.skip(skipping).map(Some);
        }
        // The unfinished line from the last read comes first. A line longer
        // than a block (but within the limit) keeps growing in its own buffer.
        let mut bytes = if self.carry.capacity() >= BLOCK_BYTES {
            std::mem::take(&mut self.carry)
        } else {
            let mut bytes = self.buffers.take();
            bytes.append(&mut self.carry);
            bytes
        };
        // A line may end with `\r\n`: a line of the limit's length then holds
        // one byte more before its `\n`.
        let limit = self.max_line_bytes.saturating_add(1);
        loop {
            let want = bytes.len() + BLOCK_BYTES;
            if self.fill(&mut bytes, want)? {
                // The last block; `parse` checks the length of its lines,
                // which are at most the limit and a block long.
                return Ok((!bytes.is_empty()).then(|| self.block(bytes, None)));
            }
            match memchr::memrchr(b'\n', &bytes) {
                Some(end) => {
                    // Keep the unfinished last line for the next block, or, if
                    // it is already too long, its beginning only.
                    let tail = &bytes[end + 1..];
                    if tail.len() > limit {
                        self.skipping = Some(Skipping::new(tail));
                    } else {
                        self.carry.extend_from_slice(tail);
                    }
                    bytes.truncate(end + 1);
                    return Ok(Some(self.block(bytes, None)));
                }
                None if bytes.len() > limit => {
                    let skipping = Skipping::new(&bytes);
                    self.buffers.give(bytes);
                    return self.skip(skipping).map(Some);
                }
                // One line longer than a block: keep reading until it ends.
                None => {}
            }
        }
    }

    /// Discards the rest of a line over the limit; returns its block. What
    /// follows its end is kept for the next block.
    fn skip(&mut self, mut skipping: Skipping) -> Result<Block, IngestError> {
        let mut buffer = self.buffers.take();
        buffer.resize(BLOCK_BYTES, 0);
        loop {
            let n = self.read_some(&mut buffer)?;
            if n == 0 {
                // The file ends inside the line.
                break;
            }
            let read = &buffer[..n];
            if let Some(end) = memchr::memchr(b'\n', read) {
                skipping.seen += end as u64;
                if end > 0 {
                    skipping.last = read[end - 1];
                }
                self.carry.extend_from_slice(&read[end + 1..]);
                break;
            }
            skipping.seen += n as u64;
            skipping.last = read[n - 1];
        }
        self.buffers.give(buffer);
        let length = skipping.seen - u64::from(skipping.last == b'\r');
        Ok(self.block(skipping.prefix, Some(length)))
    }

    fn block(&mut self, bytes: Vec<u8>, too_long: Option<u64>) -> Block {
        let block = Block {
            source: self.source,
            seq: self.seq,
            first_line: self.next_line,
            bytes,
            too_long,
            max_line_bytes: self.max_line_bytes,
        };
        self.seq += 1;
        self.next_line += match too_long {
            Some(_) => 1,
            None => memchr::memchr_iter(b'\n', &block.bytes).count() as u64,
        };
        block
    }
}

/// Whether `file` holds a line whose length (without its line end, and
/// without a `\r` before it) is more than `shorter` and at most `longer`
/// bytes: a line that limits of `shorter` and `longer` bytes read
/// differently, a record under one and `line-too-long` under the other.
/// Finds line ends only; parses nothing.
pub(super) fn has_line_between(
    file: &InputFile,
    shorter: u64,
    longer: u64,
) -> Result<bool, IngestError> {
    let fail = |source| IngestError::Read {
        path: file.path.clone(),
        source,
    };
    let differs = |length: u64, last: u8| {
        let length = length - u64::from(last == b'\r');
        length > shorter && length <= longer
    };
    let mut reader = open(&file.path, file.format).map_err(fail)?;
    let mut buffer = vec![0; BLOCK_BYTES];
    // The line read so far: its length, and its last byte.
    let (mut length, mut last) = (0u64, 0u8);
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail(e)),
        };
        let read = &buffer[..n];
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', read) {
            length += (end - start) as u64;
            if end > start {
                last = read[end - 1];
            }
            if differs(length, last) {
                return Ok(true);
            }
            (length, last, start) = (0, 0, end + 1);
        }
        length += (n - start) as u64;
        if n > start {
            last = read[n - 1];
        }
    }
    Ok(differs(length, last))
}

fn open(path: &std::path::Path, format: Format) -> std::io::Result<Box<dyn Read + Send>> {
    let file = BufReader::with_capacity(1 << 20, File::open(path)?);
    Ok(match format {
        Format::JsonlGz => Box::new(flate2::read::MultiGzDecoder::new(file)),
        Format::JsonlZst => Box::new(zstd::stream::read::Decoder::with_buffer(file)?),
        _ => Box::new(file),
    })
}

/// The first bytes of a line over the limit as text: cut at most
/// [`TOO_LONG_PREFIX_BYTES`] long before an unfinished character, with invalid
/// UTF-8 shown as replacement characters.
fn prefix_text(line: &[u8]) -> String {
    let mut bytes = &line[..line.len().min(TOO_LONG_PREFIX_BYTES)];
    // Drop a character cut in the middle (at most 3 bytes of a 4-byte one).
    for back in 1..=bytes.len().min(3) {
        let byte = bytes[bytes.len() - back];
        if byte & 0xC0 != 0x80 {
            let width = match byte {
                0xF0.. => 4,
                0xE0.. => 3,
                0xC0.. => 2,
                _ => 1,
            };
            if width > back {
                bytes = &bytes[..bytes.len() - back];
            }
            break;
        }
    }
    String::from_utf8_lossy(bytes).into_owned()
}

/// Parses and validates every line of a block.
pub(super) fn parse(block: &Block, strings: &mut Interner) -> Chunk {
    let mut events = EventColumns::new();
    events.source = block.source;
    let mut quarantine = Vec::new();
    let mut records = 0;
    if let Some(length) = block.too_long {
        quarantine.push(Quarantined {
            source: block.source,
            position: block.first_line,
            reason: Reason::LineTooLong,
            raw: prefix_text(&block.bytes),
            line_bytes: Some(length),
        });
        records = 1;
    }
    let mut line_no = block.first_line;
    let mut rest = match block.too_long {
        Some(_) => &[][..],
        None => &block.bytes[..],
    };
    while !rest.is_empty() {
        let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let mut line = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or(&[]);
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        let this_line = line_no;
        line_no += 1;
        let at = (block.source, this_line);
        if parse_line(
            line,
            at,
            block.max_line_bytes,
            &mut events,
            &mut quarantine,
            strings,
        ) {
            records += 1;
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

/// Parses and validates one line (without its line end) found at `(source,
/// line)`: appends it to `events` or `quarantine`. Returns whether it is a
/// record (blank lines are not).
pub(super) fn parse_line(
    line: &[u8],
    (source, line_no): (u32, u64),
    max_line_bytes: usize,
    events: &mut EventColumns,
    quarantine: &mut Vec<Quarantined>,
    strings: &mut Interner,
) -> bool {
    if line.len() > max_line_bytes {
        quarantine.push(Quarantined {
            source,
            position: line_no,
            reason: Reason::LineTooLong,
            raw: prefix_text(line),
            line_bytes: Some(line.len() as u64),
        });
        return true;
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        return false;
    }
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
        Ok(()) => events.position.push(line_no),
        Err(reason) => quarantine.push(Quarantined {
            source,
            position: line_no,
            reason,
            raw: String::from_utf8_lossy(line).into_owned(),
            line_bytes: None,
        }),
    }
    true
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
            too_long: None,
            max_line_bytes: super::super::DEFAULT_MAX_LINE_BYTES,
        };
        (parse(&block, &mut strings), strings)
    }

    fn file(text: &[u8]) -> (tempfile::TempDir, InputFile) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        std::fs::write(&path, text).unwrap();
        let file = InputFile {
            path,
            format: Format::Jsonl,
            size: 0,
            modified: None,
        };
        (dir, file)
    }

    /// A quarantined record as `(line, reason, raw, length)`.
    type Seen = (u64, String, String, Option<u64>);

    /// Every block of `text` read with `limit`, with what each parses to:
    /// `(first line, records, quarantined)`.
    fn read(text: &[u8], limit: usize) -> Vec<(u64, u64, Vec<Seen>)> {
        let (_dir, file) = file(text);
        let mut strings = Interner::new();
        super::blocks(0, &file, limit, Default::default())
            .map(|block| {
                let block = block.unwrap();
                let chunk = parse(&block, &mut strings);
                let quarantined = chunk
                    .quarantine
                    .iter()
                    .map(|q| {
                        (
                            q.position,
                            q.reason.to_string(),
                            q.raw.clone(),
                            q.line_bytes,
                        )
                    })
                    .collect();
                (block.first_line, chunk.records, quarantined)
            })
            .collect()
    }

    #[test]
    fn a_line_over_the_limit_is_skipped_to_its_end() {
        let limit = 1000;
        let long = format!(
            "{{\"event_id\":\"long\",\"x\":\"{}\"}}",
            "é".repeat(BLOCK_BYTES)
        );
        let text = format!("{GOOD}\n{long}\r\n{GOOD}\n{GOOD}\n");
        let blocks = read(text.as_bytes(), limit);
        // The first line, then the long one (no line end seen in the first
        // read, so it comes alone), then the rest.
        let too_long: Vec<_> = blocks.iter().flat_map(|b| b.2.clone()).collect();
        assert_eq!(
            too_long.len(),
            1,
            "{:?}",
            too_long.iter().map(|q| (q.0, &q.1)).collect::<Vec<_>>()
        );
        let (line, reason, raw, length) = &too_long[0];
        assert_eq!((*line, reason.as_str()), (2, "line-too-long"));
        assert_eq!(*length, Some(long.len() as u64));
        // Its first bytes, cut before a character split in two.
        assert!(long.starts_with(raw.as_str()));
        assert!(raw.len() <= TOO_LONG_PREFIX_BYTES && raw.len() > TOO_LONG_PREFIX_BYTES - 4);
        assert_eq!(blocks.iter().map(|b| b.1).sum::<u64>(), 4);
        let last = blocks.last().unwrap();
        assert_eq!((last.0, last.1), (3, 2));
    }

    #[test]
    fn lines_over_the_limit_are_caught_within_a_block_and_at_the_end() {
        let line = |n: usize| format!("{{\"event_id\":\"{}\"}}", "x".repeat(n - 15));
        assert_eq!(line(100).len(), 100);
        // Exactly the limit (with \r\n), one byte over, and over at the end
        // of the file without a line end; the file ends inside the last one.
        let text = format!("{}\r\n{}\n{GOOD}\n{}", line(300), line(301), line(5000));
        let blocks = read(text.as_bytes(), 300);
        let got: Vec<(u64, String, Option<u64>)> = blocks
            .iter()
            .flat_map(|b| b.2.iter().map(|q| (q.0, q.1.clone(), q.3)))
            .collect();
        assert_eq!(
            got,
            [
                (1, "bad-value:event_id".to_string(), None),
                (2, "line-too-long".to_string(), Some(301)),
                (4, "line-too-long".to_string(), Some(5000)),
            ]
        );
        assert_eq!(blocks.iter().map(|b| b.1).sum::<u64>(), 4);
    }

    #[test]
    fn a_line_between_two_limits_is_found_as_the_reader_measures_it() {
        let line = |n: usize| format!("{{\"event_id\":\"{}\"}}", "x".repeat(n - 15));
        // Lines of 300 bytes (with \r\n), 301 bytes, one across a block
        // boundary, and a last one without a line end.
        let across = line(BLOCK_BYTES + 10);
        let text = format!(
            "{}\r\n{}\n{across}\n{GOOD}\n{}",
            line(300),
            line(301),
            line(700)
        );
        let (_dir, file) = file(text.as_bytes());
        let between = |a, b| has_line_between(&file, a, b).unwrap();
        // What the limits decide: the lines each one quarantines as too long.
        let too_long = |limit: usize| -> Vec<u64> {
            read(text.as_bytes(), limit)
                .iter()
                .flat_map(|b| b.2.iter())
                .filter(|q| q.1 == "line-too-long")
                .map(|q| q.0)
                .collect()
        };
        for (a, b) in [
            (299, 300),
            (300, 301),
            (301, 699),
            (699, 700),
            (700, 701),
            (701, BLOCK_BYTES as u64 + 9),
            (BLOCK_BYTES as u64 + 9, BLOCK_BYTES as u64 + 10),
            (BLOCK_BYTES as u64 + 10, u64::MAX),
        ] {
            let differs = too_long(a as usize) != too_long(b as usize);
            assert_eq!(between(a, b), differs, "limits {a} and {b}");
        }
        assert!(!between(301, 699));
        assert!(between(299, 300) && between(699, 700) && between(701, BLOCK_BYTES as u64 + 10));
    }

    #[test]
    fn a_file_that_ends_inside_a_long_line_ends_there() {
        let text = format!("{GOOD}\n{}", "y".repeat(BLOCK_BYTES * 2 + 3));
        let blocks = read(text.as_bytes(), 1 << 20);
        let got: Vec<_> = blocks
            .iter()
            .flat_map(|b| b.2.iter().map(|q| (q.0, q.3)))
            .collect();
        assert_eq!(got, [(2, Some(BLOCK_BYTES as u64 * 2 + 3))]);
        assert_eq!(blocks.iter().map(|b| b.1).sum::<u64>(), 2);
    }

    #[test]
    fn the_prefix_of_a_long_line_is_whole_characters() {
        assert_eq!(prefix_text(b"abc"), "abc");
        let text = "€".repeat(TOO_LONG_PREFIX_BYTES);
        let prefix = prefix_text(text.as_bytes());
        assert!(text.starts_with(&prefix));
        assert_eq!(prefix.len(), TOO_LONG_PREFIX_BYTES / 3 * 3);
        assert_eq!(prefix_text(b"a\xffb"), "a\u{fffd}b");
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
        let blocks: Vec<Block> = super::blocks(0, &file, usize::MAX, Default::default())
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
        for block in super::blocks(0, &file, usize::MAX, buffers.clone()) {
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
