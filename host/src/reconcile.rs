//! Reconcile: merges a day's freshly computed rows with the rows already
//! published for that day.
//!
//! Recovery is "fix, then rerun", so a rerun must converge a downstream table
//! that applies upserts: unchanged rows stay, changed rows are overwritten, new
//! rows appear, and rows that no longer have events are written as zeros, never
//! deleted. Every row that differs from what was published goes into the
//! changeset. This module reads previous partitions and decides; `commit`
//! writes.

use arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::Int64Type;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::path::{Path, PathBuf};

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
    fn figures(&self) -> (i64, i64, i64) {
        (self.events, self.payable_events, self.amount_micros)
    }

    fn key(&self) -> (&[u8], &[u8]) {
        (self.creator.as_bytes(), self.template.as_bytes())
    }
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

/// What can go wrong while reading a published partition.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
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
    rule_hash: StringArray,
}

impl Published {
    /// Reads a partition file written by `commit`.
    pub fn read(path: &Path) -> Result<Published, ReconcileError> {
        let fail = |message: String| ReconcileError::Unreadable {
            path: path.to_path_buf(),
            message,
        };
        let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .map_err(|e| fail(e.to_string()))?;
        let batches = reader
            .collect::<Result<Vec<RecordBatch>, _>>()
            .map_err(|e| fail(e.to_string()))?;
        let schema = crate::commit::schema();
        let batch =
            arrow::compute::concat_batches(&schema, &batches).map_err(|e| fail(e.to_string()))?;
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
        Ok(Published {
            creator: strings("creator_id")?,
            template: strings("template_id")?,
            events: numbers("events")?,
            payable_events: numbers("payable_events")?,
            amount_micros: numbers("amount_micros")?,
            rule_hash: strings("rule_hash")?,
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
            self.rule_hash.value(i),
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
