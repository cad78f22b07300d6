//! Reconcile: merges a day's freshly computed rows with the rows already
//! published for that day.
//!
//! Recovery is "fix, then rerun", so a rerun must converge a downstream table
//! that applies upserts: unchanged rows stay, changed rows are overwritten, new
//! rows appear, and rows that no longer have events are written as zeros, never
//! deleted. Every row that differs from what was published goes into the
//! changeset. This module reads previous partitions and decides; `commit`
//! writes.

use arrow::array::{Array, AsArray, DictionaryArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema};
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One output row of a day, with borrowed strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutRow<'a> {
    pub creator: &'a str,
    pub template: &'a str,
    pub events: i64,
    pub payable_events: i64,
    pub amount_micros: i64,
}

impl OutRow<'_> {
    /// Its events, payable events and amount.
    pub fn figures(&self) -> Figures {
        (self.events, self.payable_events, self.amount_micros)
    }

    /// What rows are ordered by: [`key_of`] its creator and template.
    pub fn key(&self) -> (&[u8], &[u8]) {
        key_of(self.creator, self.template)
    }
}

/// The key rows are ordered by in a partition: creator, then template, by
/// their bytes.
pub fn key_of<'a>(creator: &'a str, template: &'a str) -> (&'a [u8], &'a [u8]) {
    (creator.as_bytes(), template.as_bytes())
}

/// How a written row differs from the published one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// A key that was not published before.
    Added,
    /// Different figures.
    Changed,
    /// A published key with no events any more: written with zero figures.
    Zeroed,
    /// Same figures, computed by another rule: written with the new rule hash.
    Restamped,
}

impl Change {
    /// The lower-case name used in changesets.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Changed => "changed",
            Change::Zeroed => "zeroed",
            Change::Restamped => "restamped",
        }
    }
}

/// How many rows of each kind a reconciliation wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileCounts {
    pub unchanged: u64,
    pub changed: u64,
    pub added: u64,
    pub zeroed: u64,
    pub restamped: u64,
}

impl ReconcileCounts {
    /// Adds another day's counts.
    pub fn add(&mut self, other: &ReconcileCounts) {
        self.unchanged += other.unchanged;
        self.changed += other.changed;
        self.added += other.added;
        self.zeroed += other.zeroed;
        self.restamped += other.restamped;
    }

    fn count(&mut self, change: Option<Change>) {
        match change {
            None => self.unchanged += 1,
            Some(Change::Added) => self.added += 1,
            Some(Change::Changed) => self.changed += 1,
            Some(Change::Zeroed) => self.zeroed += 1,
            Some(Change::Restamped) => self.restamped += 1,
        }
    }
}

/// What can go wrong while reading a published partition or adding to it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
    /// An incremental computation does not fit the published rows of a day.
    #[error("the new rows of {day} do not fit its published partition: {message}")]
    Increment { day: String, message: String },
    /// The file could not be read as a Tally partition.
    #[error(
        "cannot read the published partition {path}: {message} (run `tally verify` on the output)"
    )]
    Unreadable { path: PathBuf, message: String },
}

/// The rows of a published partition file.
pub struct Published {
    creator: StringArray,
    template: StringArray,
    events: Int64Array,
    payable_events: Int64Array,
    amount_micros: Int64Array,
    /// Read as a dictionary: a partition's rows share one or a few hashes,
    /// and decoding a 64-character string per row would cost more than all
    /// the other columns together.
    rule_hash: DictionaryArray<Int32Type>,
    rule_hashes: StringArray,
}

impl Published {
    /// Reads a partition file written by `commit`.
    pub fn read(path: &Path) -> Result<Published, ReconcileError> {
        let fail = |message: String| ReconcileError::Unreadable {
            path: path.to_path_buf(),
            message,
        };
        let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
        let schema = read_schema();
        // One batch of every row: no batches to put together afterwards.
        let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(
            file,
            ArrowReaderOptions::new().with_schema(schema.clone()),
        )
        .and_then(|b| {
            let rows = b.metadata().file_metadata().num_rows();
            b.with_batch_size(usize::try_from(rows).unwrap_or(1).max(1))
                .build()
        })
        .map_err(|e| fail(e.to_string()))?;
        let mut batches = reader
            .collect::<Result<Vec<RecordBatch>, _>>()
            .map_err(|e| fail(e.to_string()))?;
        let batch = match batches.len() {
            1 => batches.remove(0),
            _ => arrow::compute::concat_batches(&schema, &batches)
                .map_err(|e| fail(e.to_string()))?,
        };
        let strings = |name: &str| -> Result<StringArray, ReconcileError> {
            let column = batch
                .column_by_name(name)
                .ok_or_else(|| fail(format!("no column {name}")))?;
            let column = column
                .as_string_opt::<i32>()
                .ok_or_else(|| fail(format!("column {name} is not utf8")))?;
            if column.null_count() > 0 {
                return Err(fail(format!("column {name} has nulls")));
            }
            Ok(column.clone())
        };
        let numbers = |name: &str| -> Result<Int64Array, ReconcileError> {
            let column = batch
                .column_by_name(name)
                .ok_or_else(|| fail(format!("no column {name}")))?;
            let column = column
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| fail(format!("column {name} is not int64")))?;
            if column.null_count() > 0 {
                return Err(fail(format!("column {name} has nulls")));
            }
            Ok(column.clone())
        };
        let rule_hash = batch
            .column_by_name("rule_hash")
            .ok_or_else(|| fail("no column rule_hash".to_string()))?
            .as_dictionary_opt::<Int32Type>()
            .ok_or_else(|| fail("column rule_hash is not utf8".to_string()))?
            .clone();
        if rule_hash.null_count() > 0 {
            return Err(fail("column rule_hash has nulls".to_string()));
        }
        let rule_hashes = rule_hash
            .values()
            .as_string_opt::<i32>()
            .ok_or_else(|| fail("column rule_hash is not utf8".to_string()))?
            .clone();
        if rule_hashes.null_count() > 0 {
            return Err(fail("column rule_hash has nulls".to_string()));
        }
        let within = |k: &i32| usize::try_from(*k).is_ok_and(|k| k < rule_hashes.len());
        if !rule_hash.keys().values().iter().all(within) {
            return Err(fail("column rule_hash has a broken dictionary".to_string()));
        }
        Ok(Published {
            creator: strings("creator_id")?,
            template: strings("template_id")?,
            events: numbers("events")?,
            payable_events: numbers("payable_events")?,
            amount_micros: numbers("amount_micros")?,
            rule_hash,
            rule_hashes,
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.creator.len()
    }

    /// Whether the file has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `i` and the rule hash it was stamped with.
    pub fn row(&self, i: usize) -> (OutRow<'_>, &str) {
        (
            OutRow {
                creator: self.creator.value(i),
                template: self.template.value(i),
                events: self.events.value(i),
                payable_events: self.payable_events.value(i),
                amount_micros: self.amount_micros.value(i),
            },
            self.rule_hashes
                .value(self.rule_hash.keys().value(i) as usize),
        )
    }

    /// The rows sorted by key (files written by Tally already are).
    pub fn sorted_rows(&self) -> Vec<(OutRow<'_>, &str)> {
        let mut rows: Vec<_> = (0..self.len()).map(|i| self.row(i)).collect();
        if !rows.is_sorted_by(|a, b| a.0.key() <= b.0.key()) {
            rows.sort_by(|a, b| a.0.key().cmp(&b.0.key()));
        }
        rows
    }
}

/// The partition schema as [`Published::read`] reads it: `rule_hash` as a
/// dictionary.
fn read_schema() -> Arc<Schema> {
    let written = crate::commit::schema();
    Arc::new(Schema::new(
        written
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "rule_hash" => Arc::new(Field::new(
                    "rule_hash",
                    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                    false,
                )),
                _ => f.clone(),
            })
            .collect::<Vec<_>>(),
    ))
}

/// The rows to write for one day and how they differ from what was published.
pub struct Reconciled<'a> {
    /// Every row to write, sorted by key.
    pub rows: Vec<OutRow<'a>>,
    /// The rows that differ from the published ones, with how.
    pub changes: Vec<(OutRow<'a>, Change)>,
    pub counts: ReconcileCounts,
}

/// Merges a day's new rows (sorted by key) with its published rows (if any).
/// `rule_hash` is the hash every written row is stamped with.
pub fn reconcile<'a>(
    new: &[OutRow<'a>],
    published: Option<&'a Published>,
    rule_hash: &str,
) -> Reconciled<'a> {
    reconcile_rows(
        new,
        published.map(Published::sorted_rows).unwrap_or_default(),
        rule_hash,
    )
}

/// A row's events, payable events and amount.
pub type Figures = (i64, i64, i64);

/// How an incremental computation changes the published rows of a day: its
/// rows add to them, less the figures of the recorded survivors that new
/// records displaced.
#[derive(Debug, Default)]
pub struct Increment {
    /// Per day, sorted by key: the creator, template and figures to take
    /// off that row.
    pub taken: BTreeMap<i32, Vec<(String, String, Figures)>>,
}

impl Increment {
    /// A day's rows after the increment: its published rows with events
    /// (sorted by key), plus `added` (sorted by key), less what is taken.
    /// Rows left without events are dropped: the reconciliation with the
    /// published rows zeroes them, as it zeroes those of a full recompute.
    pub fn apply<'a>(
        &'a self,
        day: i32,
        published: &[(OutRow<'a>, &'a str)],
        added: &[OutRow<'a>],
    ) -> Result<Vec<OutRow<'a>>, ReconcileError> {
        let broken = |message: &str| ReconcileError::Increment {
            day: crate::event::format_day(day),
            message: message.to_string(),
        };
        let add = |a: &OutRow<'a>, b: &OutRow<'a>| -> Result<OutRow<'a>, ReconcileError> {
            match (
                a.events.checked_add(b.events),
                a.payable_events.checked_add(b.payable_events),
                a.amount_micros.checked_add(b.amount_micros),
            ) {
                (Some(events), Some(payable_events), Some(amount_micros)) => Ok(OutRow {
                    events,
                    payable_events,
                    amount_micros,
                    ..*a
                }),
                _ => Err(broken("a row's figures overflow")),
            }
        };
        let mut old = published.iter().map(|(r, _)| r).filter(|r| r.events > 0);
        let mut rows: Vec<OutRow<'a>> = Vec::with_capacity(published.len() + added.len());
        let (mut a, mut b) = (old.next(), added.iter().peekable());
        loop {
            let row = match (a, b.peek()) {
                (None, None) => break,
                (Some(o), None) => {
                    a = old.next();
                    *o
                }
                (None, Some(n)) => {
                    let n = **n;
                    b.next();
                    n
                }
                (Some(o), Some(n)) => match o.key().cmp(&n.key()) {
                    Ordering::Less => {
                        a = old.next();
                        *o
                    }
                    Ordering::Greater => {
                        let n = **n;
                        b.next();
                        n
                    }
                    Ordering::Equal => {
                        let sum = add(o, n)?;
                        a = old.next();
                        b.next();
                        sum
                    }
                },
            };
            if rows.last().is_some_and(|last| last.key() >= row.key()) {
                return Err(broken("rows out of key order"));
            }
            rows.push(row);
        }
        for (creator, template, (events, payable, amount)) in
            self.taken.get(&day).map_or(&[][..], Vec::as_slice)
        {
            let key = key_of(creator, template);
            let at = rows
                .binary_search_by(|r| r.key().cmp(&key))
                .map_err(|_| broken("a displaced survivor's row is not published"))?;
            let row = &mut rows[at];
            let less = |have: i64, take: i64| have.checked_sub(take).filter(|n| *n >= 0);
            match (
                less(row.events, *events),
                less(row.payable_events, *payable),
                row.amount_micros.checked_sub(*amount),
            ) {
                (Some(e), Some(p), Some(m)) => {
                    row.events = e;
                    row.payable_events = p;
                    row.amount_micros = m;
                }
                _ => return Err(broken("a row has less than its displaced survivors")),
            }
        }
        rows.retain(|r| r.events > 0);
        Ok(rows)
    }
}

/// [`reconcile`] with the published rows (sorted by key, each with the
/// rule hash it was stamped with) already read: all of a partition's, or
/// some of them (those of a scoped commit's creators).
pub fn reconcile_rows<'a>(
    new: &[OutRow<'a>],
    old: Vec<(OutRow<'a>, &'a str)>,
    rule_hash: &str,
) -> Reconciled<'a> {
    let mut out = Reconciled {
        rows: Vec::with_capacity(new.len().max(old.len())),
        changes: Vec::new(),
        counts: ReconcileCounts::default(),
    };
    let (mut i, mut j) = (0, 0);
    while i < new.len() || j < old.len() {
        let order = match (new.get(i), old.get(j)) {
            (Some(n), Some((o, _))) => n.key().cmp(&o.key()),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        let (row, change) = match order {
            Ordering::Less => {
                i += 1;
                (new[i - 1], Some(Change::Added))
            }
            Ordering::Greater => {
                j += 1;
                let (o, hash) = old[j - 1];
                let zero = OutRow {
                    events: 0,
                    payable_events: 0,
                    amount_micros: 0,
                    ..o
                };
                let change = if o.figures() != (0, 0, 0) {
                    Some(Change::Zeroed)
                } else if hash != rule_hash {
                    Some(Change::Restamped)
                } else {
                    None
                };
                (zero, change)
            }
            Ordering::Equal => {
                i += 1;
                j += 1;
                let (n, (o, hash)) = (new[i - 1], old[j - 1]);
                let change = if n.figures() != o.figures() {
                    Some(Change::Changed)
                } else if hash != rule_hash {
                    Some(Change::Restamped)
                } else {
                    None
                };
                (n, change)
            }
        };
        out.counts.count(change);
        if let Some(change) = change {
            out.changes.push((row, change));
        }
        out.rows.push(row);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(creator: &'static str, template: &'static str, events: i64) -> OutRow<'static> {
        OutRow {
            creator,
            template,
            events,
            payable_events: events / 2,
            amount_micros: events * 1000,
        }
    }

    #[test]
    fn an_increment_adds_to_the_published_rows_and_takes_off_the_displaced() {
        let published = [
            (row("a", "t", 2), "h"),
            (row("b", "t", 4), "h"),
            (row("c", "t", 0), "h"),
            (row("d", "t", 1), "h"),
        ];
        let added = [row("b", "t", 2), row("bb", "t", 6), row("c", "t", 2)];
        let mut increment = Increment::default();
        increment.taken.insert(
            7,
            vec![
                ("a".to_string(), "t".to_string(), (2, 1, 2000)),
                ("b".to_string(), "t".to_string(), (1, 0, 1000)),
            ],
        );
        let rows = increment.apply(7, &published, &added).unwrap();
        // `a` lost its only event; the zeroed `c` counts from zero again.
        let b = OutRow {
            events: 5,
            payable_events: 3,
            amount_micros: 5000,
            ..row("b", "t", 0)
        };
        assert_eq!(
            rows,
            [b, row("bb", "t", 6), row("c", "t", 2), row("d", "t", 1)]
        );
        // Another day takes nothing off.
        assert_eq!(increment.apply(8, &published, &[]).unwrap().len(), 3);
    }

    #[test]
    fn an_increment_that_does_not_fit_is_refused() {
        let published = [(row("a", "t", 2), "h")];
        let mut increment = Increment::default();
        increment
            .taken
            .insert(1, vec![("z".to_string(), "t".to_string(), (1, 0, 0))]);
        let err = increment.apply(1, &published, &[]).unwrap_err();
        assert!(err.to_string().contains("not published"), "{err}");
        increment
            .taken
            .insert(1, vec![("a".to_string(), "t".to_string(), (3, 0, 0))]);
        let err = increment.apply(1, &published, &[]).unwrap_err();
        assert!(err.to_string().contains("less than"), "{err}");
        let unsorted = [row("b", "t", 1), row("a", "t", 1)];
        let err = Increment::default().apply(1, &[], &unsorted).unwrap_err();
        assert!(err.to_string().contains("order"), "{err}");
        let huge = OutRow {
            amount_micros: i64::MAX,
            ..row("a", "t", 1)
        };
        let err = Increment::default()
            .apply(1, &published, &[huge])
            .unwrap_err();
        assert!(err.to_string().contains("overflow"), "{err}");
    }

    #[test]
    fn without_a_previous_partition_every_row_is_added() {
        let new = [row("a", "t", 2), row("b", "t", 4)];
        let r = reconcile(&new, None, "h");
        assert_eq!(r.rows, new);
        assert_eq!(r.counts.added, 2);
        assert_eq!(r.changes.len(), 2);
    }

    #[test]
    fn follows_the_reconcile_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.parquet");
        let published = [row("a", "t", 2), row("b", "t", 4), row("c", "t", 6)];
        crate::commit::write_rows(&path, &published, "old", &[]).unwrap();
        let published = Published::read(&path).unwrap();

        // a unchanged (but other rule: restamped), b changed, c gone, d new.
        let new = [row("a", "t", 2), row("b", "t", 5), row("d", "t", 1)];
        let r = reconcile(&new, Some(&published), "new");
        let written: Vec<(&str, i64)> = r.rows.iter().map(|r| (r.creator, r.events)).collect();
        assert_eq!(written, [("a", 2), ("b", 5), ("c", 0), ("d", 1)]);
        let changes: Vec<(&str, Change)> = r.changes.iter().map(|(r, c)| (r.creator, *c)).collect();
        assert_eq!(
            changes,
            [
                ("a", Change::Restamped),
                ("b", Change::Changed),
                ("c", Change::Zeroed),
                ("d", Change::Added)
            ]
        );

        // The same rows and rule again: nothing changes.
        let same = reconcile(
            &published
                .sorted_rows()
                .iter()
                .map(|r| r.0)
                .collect::<Vec<_>>(),
            Some(&published),
            "old",
        );
        assert!(same.changes.is_empty());
        assert_eq!(same.counts.unchanged, 3);
    }
}
