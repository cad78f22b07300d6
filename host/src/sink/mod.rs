//! Sink: what serving an output from a database means, whatever the database.
//!
//! A sink applies each commit of an output directory to a target table
//! exactly once, in commit order. What a commit changed is its changeset,
//! `changes/commit=N/day=D/part-0.parquet` (see [`crate::layout`]): every row
//! that differs from the previous state, zeroed and restamped rows included,
//! with its new figures. Changesets are written with their commit and carried
//! over by every later commit, never rewritten, so every commit's changed rows
//! can be read back at any time: applying the changesets of commits `1..=N`
//! in order, as upserts into an empty table, leaves the table equal to the
//! output as of commit N (rows are never deleted, only zeroed).
//!
//! This module owns the output side: which commits there are ([`Source`]),
//! the rows each one changed, in a fixed order, read a chunk at a time
//! ([`Changeset`]), where a target's ledger says to resume ([`resume`]), and
//! the pace of the writes ([`Pace`]). It writes nothing; a target module
//! ([`postgres`]) owns the database side.
//!
//! **The order of a commit's rows** is by partition (day) and, within a day,
//! as the changeset file holds them (by creator, then template): row `i` of a
//! commit is the same row on every read, so a chunk is named by its first row
//! and its length, and a ledger entry `(commit, first_row, rows)` says exactly
//! which rows were applied.
//!
//! **Tables.** A sink serves the tables listed in [`TABLES`], each described
//! by a [`TableSpec`]: where its changesets are, their partition, key and
//! columns, and what the log says of them: the daily table ([`DAILY`]) and
//! the monthly one derived from it ([`MONTHLY`], changesets
//! `monthly_changes/commit=N/month=YYYY-MM/`, its partition a date, the
//! month's first day). Each goes into a target table of its own with a
//! ledger of its own; a further derived table is served by adding its spec
//! here and naming its target. A commit made before a derived table existed
//! has no changeset of it and no rows of it in its log entry: it is applied
//! as a commit without rows.

pub mod password;
pub mod postgres;

use crate::derived;
use crate::layout;
use crate::lineage::{self, LineageError};
use crate::pipeline::LogEntry;
use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use chrono::NaiveDate;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The type of a column of a served table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// A calendar date.
    Date,
    /// UTF-8 text.
    Text,
    /// A 64-bit signed integer.
    BigInt,
}

impl ColumnType {
    /// The Arrow type of the column in a changeset file.
    pub fn arrow(self) -> DataType {
        match self {
            ColumnType::Date => DataType::Date32,
            ColumnType::Text => DataType::Utf8,
            ColumnType::BigInt => DataType::Int64,
        }
    }
}

/// A column of a served table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
}

/// One table of an output that a sink serves: where its changesets are and
/// what their columns are.
#[derive(Debug)]
pub struct TableSpec {
    /// The table's directory in the output (`daily`).
    pub name: &'static str,
    /// The target table a sink writes when it is given no name.
    pub default_target: &'static str,
    /// The changeset's partition column (`day`), a date taken from the
    /// partition directory's name (`day=2026-05-01`); the first key column.
    pub partition: &'static str,
    /// The other columns of a changeset file, in order (the file's last
    /// column, `change`, says how a row changed and is not served).
    pub columns: &'static [Column],
    /// The key: the partition column and these columns.
    pub key: &'static [&'static str],
    /// Commit `N`'s changeset directory of this table, holding one
    /// `<partition>=VALUE/part-0.parquet` per partition with changes.
    pub changes_dir: fn(&Path, u64) -> PathBuf,
    /// The partition value of a partition directory's name without its
    /// `<partition>=` prefix, if it is one.
    pub parse_partition: fn(&str) -> Option<NaiveDate>,
    /// The key-value metadata key that stamps a changeset file with its
    /// partition value (checked against the directory it lies in).
    pub partition_stamp: &'static str,
    /// How many rows a commit's log entry says its changeset of this table
    /// holds (checked against the files).
    pub logged_rows: fn(&LogEntry) -> u64,
}

impl TableSpec {
    /// Every column of the served table: the partition column, then the
    /// changeset's columns.
    pub fn all_columns(&self) -> Vec<Column> {
        std::iter::once(Column {
            name: self.partition,
            ty: ColumnType::Date,
        })
        .chain(self.columns.iter().copied())
        .collect()
    }
}

fn parse_iso_day(text: &str) -> Option<NaiveDate> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    // Only the spelling Tally writes: `2026-5-1` is not a partition.
    (date.format("%Y-%m-%d").to_string() == text).then_some(date)
}

/// `2026-05` as the month's first day; only the spelling Tally writes.
fn parse_iso_month(text: &str) -> Option<NaiveDate> {
    let date = NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").ok()?;
    (date.format("%Y-%m").to_string() == text).then_some(date)
}

/// Rows of the daily changeset a log entry counts: changed, added, zeroed
/// and restamped.
fn daily_changes(entry: &LogEntry) -> u64 {
    let r = &entry.reconcile;
    r.changed + r.added + r.zeroed + r.restamped
}

/// Rows of the monthly changeset a log entry counts: changed, added and
/// zeroed, over the monthly partitions the commit rebuilt (none in a commit
/// made before the monthly table existed).
fn monthly_changes(entry: &LogEntry) -> u64 {
    entry
        .derived
        .iter()
        .filter(|d| d.table == derived::MONTHLY.table)
        .map(|d| d.reconcile.changed + d.reconcile.added + d.reconcile.zeroed)
        .sum()
}

fn monthly_changes_dir(out: &Path, commit: u64) -> PathBuf {
    derived::MONTHLY.changes_dir(out, commit)
}

/// The daily totals (`daily/`), keyed by day, creator and template.
pub const DAILY: TableSpec = TableSpec {
    name: layout::DAILY,
    default_target: "tally_daily",
    partition: "day",
    columns: &[
        Column {
            name: "creator_id",
            ty: ColumnType::Text,
        },
        Column {
            name: "template_id",
            ty: ColumnType::Text,
        },
        Column {
            name: "events",
            ty: ColumnType::BigInt,
        },
        Column {
            name: "payable_events",
            ty: ColumnType::BigInt,
        },
        Column {
            name: "amount_micros",
            ty: ColumnType::BigInt,
        },
        Column {
            name: "rule_hash",
            ty: ColumnType::Text,
        },
    ],
    key: &["creator_id", "template_id"],
    changes_dir: layout::changes_dir,
    parse_partition: parse_iso_day,
    partition_stamp: "tally.day",
    logged_rows: daily_changes,
};

/// The monthly totals (`monthly/`, [`derived::MONTHLY`]), keyed by month
/// (its first day) and creator.
pub const MONTHLY: TableSpec = TableSpec {
    name: derived::MONTHLY.table,
    default_target: "tally_monthly",
    partition: derived::MONTHLY.column,
    columns: &[
        Column {
            name: "creator_id",
            ty: ColumnType::Text,
        },
        Column {
            name: "events",
            ty: ColumnType::BigInt,
        },
        Column {
            name: "payable_events",
            ty: ColumnType::BigInt,
        },
        Column {
            name: "amount_micros",
            ty: ColumnType::BigInt,
        },
    ],
    key: &["creator_id"],
    changes_dir: monthly_changes_dir,
    parse_partition: parse_iso_month,
    partition_stamp: "tally.month",
    logged_rows: monthly_changes,
};

/// Every table a sink serves, in the order each commit applies them.
pub const TABLES: &[&TableSpec] = &[&DAILY, &MONTHLY];

/// What can go wrong on the output side of a sink.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The output's metadata cannot be read.
    #[error(transparent)]
    Output(#[from] LineageError),
    /// The commit log has a gap or a misnumbered entry.
    #[error(
        "the commit log of {out} is not commits 1 to {last} in order (found commit {found} at position {position}); the output is damaged"
    )]
    Log {
        out: String,
        last: u64,
        found: u64,
        position: usize,
    },
    /// A changeset file or directory is missing, unreadable or not what its
    /// commit says it is.
    #[error("commit {commit}'s changeset: {path}: {message}")]
    Changeset {
        commit: u64,
        path: PathBuf,
        message: String,
    },
    /// The target's ledger does not fit the output's log.
    #[error("{0}")]
    Ledger(String),
}

fn changeset_error(commit: u64, path: &Path, message: impl Into<String>) -> SinkError {
    SinkError::Changeset {
        commit,
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// An output directory as a sink reads it: its identity and its commits.
#[derive(Debug)]
pub struct Source {
    /// The output directory, as given.
    pub out: PathBuf,
    /// What identifies the output: the run id of its first commit, which no
    /// later commit changes. A target holds the rows of one output only.
    pub id: String,
    /// Every commit, in order: commit `i + 1` at index `i`.
    pub commits: Vec<LogEntry>,
}

impl Source {
    /// Reads the commit log of `out`, checking it is commits 1 to N.
    pub fn open(out: &Path) -> Result<Source, SinkError> {
        let commits = lineage::log(out)?;
        for (position, entry) in commits.iter().enumerate() {
            if entry.commit != position as u64 + 1 {
                return Err(SinkError::Log {
                    out: out.display().to_string(),
                    last: commits.len() as u64,
                    found: entry.commit,
                    position: position + 1,
                });
            }
        }
        Ok(Source {
            out: out.to_path_buf(),
            id: commits
                .first()
                .map(|c| c.run_id.clone())
                .unwrap_or_default(),
            commits,
        })
    }

    /// The log entry of commit `number` (1-based).
    pub fn commit(&self, number: u64) -> &LogEntry {
        &self.commits[(number - 1) as usize]
    }

    /// The changeset of commit `number` in `table`: its files and their
    /// rows, checked against the commit's log entry.
    pub fn changeset(&self, table: &TableSpec, number: u64) -> Result<Changeset, SinkError> {
        let entry = self.commit(number);
        let expected = (table.logged_rows)(entry);
        let dir = (table.changes_dir)(&self.out, number);
        let mut files = Vec::new();
        if dir.is_dir() {
            let prefix = format!("{}=", table.partition);
            let entries = std::fs::read_dir(&dir)
                .map_err(|e| changeset_error(number, &dir, e.to_string()))?;
            for item in entries {
                let item = item.map_err(|e| changeset_error(number, &dir, e.to_string()))?;
                let name = item.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let partition = name
                    .strip_prefix(&prefix)
                    .and_then(table.parse_partition)
                    .ok_or_else(|| {
                        changeset_error(
                            number,
                            &item.path(),
                            format!("not a {prefix}… partition of the changeset"),
                        )
                    })?;
                let path = item.path().join(layout::PART_FILE);
                let rows = check_file(table, entry, &name[prefix.len()..], &path)?;
                files.push(ChangeFile {
                    partition,
                    path,
                    rows,
                });
            }
        } else if dir.exists() {
            return Err(changeset_error(number, &dir, "not a directory"));
        } else if expected > 0 {
            return Err(changeset_error(
                number,
                &dir,
                format!(
                    "missing, but the commit's log entry counts {expected} changed row(s) of the {} table; the output is damaged (a sink applies each commit from its changeset, so changesets must be kept)",
                    table.name
                ),
            ));
        }
        files.sort_by_key(|f| f.partition);
        let rows: u64 = files.iter().map(|f| f.rows).sum();
        if rows != expected {
            return Err(changeset_error(
                number,
                &dir,
                format!(
                    "holds {rows} row(s), but the commit's log entry counts {expected} changed row(s) of the {} table; the output is damaged",
                    table.name
                ),
            ));
        }
        Ok(Changeset {
            commit: number,
            columns: table.columns,
            files,
            rows,
        })
    }
}

/// Checks a changeset file's columns and lineage; returns its row count.
fn check_file(
    table: &TableSpec,
    entry: &LogEntry,
    partition: &str,
    path: &Path,
) -> Result<u64, SinkError> {
    let fail = |message: String| changeset_error(entry.commit, path, message);
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| fail(e.to_string()))?;
    let fields = builder.schema().fields();
    let found: Vec<(&str, &DataType)> = fields
        .iter()
        .map(|f| (f.name().as_str(), f.data_type()))
        .collect();
    let wanted: Vec<(&str, DataType)> = table
        .columns
        .iter()
        .map(|c| (c.name, c.ty.arrow()))
        .chain([("change", DataType::Utf8)])
        .collect();
    let matches = found.len() == wanted.len()
        && found
            .iter()
            .zip(&wanted)
            .all(|((n, t), (wn, wt))| n == wn && *t == wt);
    if !matches {
        let show = |columns: Vec<String>| columns.join(", ");
        return Err(fail(format!(
            "its columns are ({}), not ({})",
            show(found.iter().map(|(n, t)| format!("{n} {t}")).collect()),
            show(wanted.iter().map(|(n, t)| format!("{n} {t}")).collect()),
        )));
    }
    let metadata = builder.metadata().file_metadata();
    let stamped = |key: &str| -> Option<String> {
        metadata
            .key_value_metadata()?
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone())
    };
    if let Some(day) = stamped(table.partition_stamp)
        && day != partition
    {
        return Err(fail(format!(
            "is stamped for {day} but lies in the partition of {partition}"
        )));
    }
    if let Some(hash) = stamped("tally.rule_hash")
        && hash != entry.rule.hash
    {
        return Err(fail(format!(
            "is stamped with rule {hash}, but commit {} ran rule {}",
            entry.commit, entry.rule.hash
        )));
    }
    u64::try_from(metadata.num_rows()).map_err(|_| fail("a negative row count".to_string()))
}

/// One partition's file of a changeset.
#[derive(Debug, Clone)]
pub struct ChangeFile {
    pub partition: NaiveDate,
    pub path: PathBuf,
    pub rows: u64,
}

/// The rows one commit changed in one table, in the sink's order.
#[derive(Debug, Clone)]
pub struct Changeset {
    pub commit: u64,
    columns: &'static [Column],
    /// By partition.
    pub files: Vec<ChangeFile>,
    /// Rows in all.
    pub rows: u64,
}

/// Rows of one partition, read from its changeset file: the table's
/// columns (without `change`), in order.
#[derive(Debug)]
pub struct Part {
    pub partition: NaiveDate,
    pub batch: RecordBatch,
}

impl Changeset {
    /// Rows `from..from + count` of the commit (fewer at its end), as parts
    /// of one partition each.
    pub fn read(&self, from: u64, count: u64) -> Result<Vec<Part>, SinkError> {
        let end = from.saturating_add(count).min(self.rows);
        let mut parts = Vec::new();
        let mut start = 0u64;
        for file in &self.files {
            let (lo, hi) = (start.max(from), (start + file.rows).min(end));
            start += file.rows;
            if lo >= hi {
                continue;
            }
            let fail = |message: String| changeset_error(self.commit, &file.path, message);
            let reader = std::fs::File::open(&file.path).map_err(|e| fail(e.to_string()))?;
            let offset = usize::try_from(lo - (start - file.rows)).unwrap_or(usize::MAX);
            let limit = usize::try_from(hi - lo).unwrap_or(usize::MAX);
            let batches = ParquetRecordBatchReaderBuilder::try_new(reader)
                .map(|b| {
                    b.with_offset(offset)
                        .with_limit(limit)
                        .with_batch_size(limit)
                })
                .and_then(|b| b.build())
                .map_err(|e| fail(e.to_string()))?;
            let mut read = 0u64;
            for batch in batches {
                let batch = batch.map_err(|e| fail(e.to_string()))?;
                let names: Vec<&str> = self.columns.iter().map(|c| c.name).collect();
                let indices: Vec<usize> = names
                    .iter()
                    .map(|n| batch.schema().index_of(n))
                    .collect::<Result<_, _>>()
                    .map_err(|e| fail(e.to_string()))?;
                let batch = batch.project(&indices).map_err(|e| fail(e.to_string()))?;
                if let Some(column) = batch.columns().iter().position(|c| c.null_count() > 0) {
                    return Err(fail(format!("column {} has nulls", names[column])));
                }
                read += batch.num_rows() as u64;
                parts.push(Part {
                    partition: file.partition,
                    batch,
                });
            }
            if read != hi - lo {
                return Err(fail(format!(
                    "holds fewer rows than its footer says ({read} of {} read)",
                    hi - lo
                )));
            }
        }
        Ok(parts)
    }
}

/// One entry of a target's ledger: a chunk of a commit's rows applied in
/// the same transaction as the entry was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub commit: u64,
    /// The chunk's first row, in the sink's order of the commit's rows.
    pub first_row: u64,
    /// Rows in the chunk.
    pub rows: u64,
    /// Rows of the whole commit.
    pub commit_rows: u64,
    /// Whether the chunk is the commit's last: the commit is applied.
    pub complete: bool,
    pub rule_hash: String,
}

/// Where to go on from, as a ledger says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Commits `1..=applied` are applied.
    pub applied: u64,
    /// The first row of commit `applied + 1` not applied yet (0 unless a
    /// sink stopped in the middle of it), with the commit's row count then.
    pub next_row: u64,
    pub partial_rows: Option<u64>,
}

/// Where a target whose ledger for `source` holds `entries` (sorted by
/// commit, then first row) goes on from; an error when the ledger does not
/// fit the output's log (chunks missing or overlapping, a commit the output
/// does not have, a commit made by another rule than the log says).
pub fn resume(source: &Source, entries: &[LedgerEntry]) -> Result<Position, SinkError> {
    let out = source.out.display();
    let mut applied = 0u64;
    let mut next_row = 0u64;
    let mut partial_rows = None;
    for e in entries {
        let last = source.commits.len() as u64;
        if e.commit == 0 || e.commit > last {
            return Err(SinkError::Ledger(format!(
                "the ledger records commit {} of output {}, but {out} has {last} commit(s): was the output restored from an older copy?",
                e.commit, source.id
            )));
        }
        let logged = &source.commit(e.commit).rule.hash;
        if &e.rule_hash != logged {
            return Err(SinkError::Ledger(format!(
                "the ledger records commit {} as made by rule {}, but the log of {out} says rule {logged}",
                e.commit, e.rule_hash
            )));
        }
        if e.commit <= applied {
            return Err(SinkError::Ledger(format!(
                "the ledger records rows {}..{} of commit {} after the commit was complete: its entries overlap",
                e.first_row,
                e.first_row + e.rows,
                e.commit
            )));
        }
        if e.commit > applied + 1 {
            return Err(SinkError::Ledger(format!(
                "the ledger records commit {} while commit {} is not complete: its entries are out of order",
                e.commit,
                applied + 1
            )));
        }
        if let Some(rows) = partial_rows
            && rows != e.commit_rows
        {
            return Err(SinkError::Ledger(format!(
                "the ledger records commit {} as {rows} rows in one chunk and {} in another",
                e.commit, e.commit_rows
            )));
        }
        if e.first_row != next_row || e.first_row + e.rows > e.commit_rows {
            return Err(SinkError::Ledger(format!(
                "the ledger's chunks of commit {} do not follow each other: rows {}..{} after {next_row} of {}",
                e.commit,
                e.first_row,
                e.first_row + e.rows,
                e.commit_rows
            )));
        }
        next_row = e.first_row + e.rows;
        if e.complete {
            if next_row != e.commit_rows {
                return Err(SinkError::Ledger(format!(
                    "the ledger marks commit {} applied after {next_row} of its {} rows",
                    e.commit, e.commit_rows
                )));
            }
            applied += 1;
            next_row = 0;
            partial_rows = None;
        } else {
            partial_rows = Some(e.commit_rows);
        }
    }
    Ok(Position {
        applied,
        next_row,
        partial_rows,
    })
}

/// The chunks `(first_row, rows)` that apply rows `from..total`, at most
/// `size` rows each; one empty chunk for a commit without rows, so that it
/// too gets its ledger entry.
pub fn chunks(from: u64, total: u64, size: u64) -> Vec<(u64, u64)> {
    let size = size.max(1);
    if total == 0 {
        return vec![(0, 0)];
    }
    let mut out = Vec::new();
    let mut at = from;
    while at < total {
        let rows = size.min(total - at);
        out.push((at, rows));
        at += rows;
    }
    out
}

/// Paces writes to at most a number of rows per second: after each chunk,
/// waits until the rows written so far are no more than the rate allows
/// for the time spent.
#[derive(Debug)]
pub struct Pace {
    per_second: Option<u64>,
    started: Instant,
    rows: u64,
}

impl Pace {
    /// A pace of at most `per_second` rows a second (none: as fast as the
    /// target goes).
    pub fn new(per_second: Option<u64>) -> Pace {
        Pace {
            per_second,
            started: Instant::now(),
            rows: 0,
        }
    }

    /// The largest chunk that keeps the writes smooth: one second's rows.
    pub fn chunk_rows(&self, wanted: u64) -> u64 {
        self.per_second
            .map_or(wanted, |rate| wanted.min(rate))
            .max(1)
    }

    /// Counts `rows` written and waits as long as the rate says.
    pub fn wrote(&mut self, rows: u64) {
        self.rows += rows;
        if let Some(wait) = self.wait() {
            std::thread::sleep(wait);
        }
    }

    /// How long to wait before the next write, if at all.
    fn wait(&self) -> Option<Duration> {
        let rate = self.per_second?;
        let due = Duration::from_secs_f64(self.rows as f64 / rate as f64);
        due.checked_sub(self.started.elapsed())
            .filter(|d| !d.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        commit: u64,
        first_row: u64,
        rows: u64,
        commit_rows: u64,
        complete: bool,
    ) -> LedgerEntry {
        LedgerEntry {
            commit,
            first_row,
            rows,
            commit_rows,
            complete,
            rule_hash: format!("h{commit}"),
        }
    }

    fn source(commits: u64) -> Source {
        let log = (1..=commits)
            .map(|n| {
                let mut e: LogEntry = serde_json::from_value(serde_json::json!({
                    "commit": n, "run_id": format!("run-{n}"), "tally_version": "0",
                    "committed_at": "2026-05-01T00:00:00.000Z",
                    "rule": {"hash": "", "name": "r", "version": "1.0.0", "sdk_version": "", "path": ""},
                    "input_fingerprint": "f", "inputs": [], "window": null, "written": [],
                    "zeroed_days": [], "counts": crate::report::Counts::default(),
                    "reconcile": {"unchanged": 0, "changed": 0,
                    "added": 0, "zeroed": 0, "restamped": 0}, "changeset": ""
                }))
                .expect("a log entry");
                e.rule.hash = format!("h{n}");
                e
            })
            .collect();
        Source {
            out: PathBuf::from("out"),
            id: "run-1".into(),
            commits: log,
        }
    }

    #[test]
    fn resumes_after_the_last_complete_chunk() {
        let s = source(3);
        let none = resume(&s, &[]).unwrap();
        assert_eq!(
            (none.applied, none.next_row, none.partial_rows),
            (0, 0, None)
        );
        let ledger = [
            entry(1, 0, 10, 10, true),
            entry(2, 0, 4, 9, false),
            entry(2, 4, 4, 9, false),
        ];
        let at = resume(&s, &ledger).unwrap();
        assert_eq!((at.applied, at.next_row, at.partial_rows), (1, 8, Some(9)));
        let done = [
            ledger.to_vec(),
            vec![entry(2, 8, 1, 9, true), entry(3, 0, 0, 0, true)],
        ]
        .concat();
        let at = resume(&s, &done).unwrap();
        assert_eq!((at.applied, at.next_row, at.partial_rows), (3, 0, None));
    }

    #[test]
    fn refuses_a_ledger_that_does_not_fit_the_log() {
        let s = source(2);
        let cases: [(&[LedgerEntry], &str); 6] = [
            (&[entry(3, 0, 1, 1, true)], "has 2 commit(s)"),
            (&[entry(2, 0, 1, 1, true)], "out of order"),
            (
                &[entry(1, 0, 4, 9, false), entry(1, 5, 4, 9, true)],
                "do not follow",
            ),
            (&[entry(1, 0, 4, 9, true)], "applied after 4 of its 9 rows"),
            (
                &[entry(1, 0, 4, 9, false), entry(1, 4, 5, 10, true)],
                "as 9 rows in one chunk and 10",
            ),
            (
                &[entry(1, 0, 4, 4, true), entry(1, 0, 4, 4, true)],
                "overlap",
            ),
        ];
        for (ledger, message) in cases {
            let err = resume(&s, ledger).unwrap_err().to_string();
            assert!(err.contains(message), "{ledger:?}: {err}");
        }
        let mut other_rule = entry(1, 0, 1, 1, true);
        other_rule.rule_hash = "x".into();
        let err = resume(&s, &[other_rule]).unwrap_err().to_string();
        assert!(err.contains("made by rule x"), "{err}");
    }

    #[test]
    fn chunks_cover_the_rows_once() {
        assert_eq!(chunks(0, 0, 10), [(0, 0)]);
        assert_eq!(chunks(0, 25, 10), [(0, 10), (10, 10), (20, 5)]);
        assert_eq!(chunks(12, 25, 10), [(12, 10), (22, 3)]);
        assert_eq!(chunks(0, 3, 0), [(0, 1), (1, 1), (2, 1)]);
    }

    #[test]
    fn a_pace_bounds_chunks_and_waits() {
        let mut pace = Pace::new(Some(1_000));
        assert_eq!(pace.chunk_rows(50_000), 1_000);
        pace.rows = 2_000;
        let wait = pace.wait().expect("two seconds' rows at once");
        assert!(wait > Duration::from_millis(1_500), "{wait:?}");
        let free = Pace::new(None);
        assert_eq!(free.chunk_rows(50_000), 50_000);
        assert_eq!(free.wait(), None);
    }

    #[test]
    fn partitions_are_only_tally_spelled_days() {
        assert_eq!(
            parse_iso_day("2026-05-01"),
            NaiveDate::from_ymd_opt(2026, 5, 1)
        );
        assert_eq!(parse_iso_day("2026-5-1"), None);
        assert_eq!(parse_iso_day("yesterday"), None);
        assert_eq!(
            parse_iso_month("2026-05"),
            NaiveDate::from_ymd_opt(2026, 5, 1)
        );
        assert_eq!(parse_iso_month("2026-5"), None);
        assert_eq!(parse_iso_month("2026-13"), None);
        assert_eq!(parse_iso_month("2026-05-01"), None);
    }
}
