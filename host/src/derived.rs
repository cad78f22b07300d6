//! Derived tables: built from the daily table in the same commit that writes
//! the days, so they never disagree with it.
//!
//! A derived table rolls the daily rows of a period up into one row per
//! creator. Its partition of a period is rebuilt whenever a commit writes any
//! day of that period, from every published day partition of it (those the
//! commit wrote, summed from the rows it has at hand, and those it carried
//! over, read back), and reconciled with what was
//! published like the daily table: a creator with no events any more is
//! written with zeros, never deleted, and every row that differs goes into
//! the table's changeset. Each partition's lineage lists the content hash of
//! every day partition it was built from.
//!
//! The one declared today is [`MONTHLY`]; a further table is another
//! [`Rollup`] (and, for a table built from a derived one, another source).

use crate::commit::{self, CommitError};
use crate::reconcile::{Change, Figures, ReconcileCounts, ReconcileError};
use arrow::array::{ArrayRef, AsArray, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::KeyValue;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A table of one row per `(period, creator_id)`, summed from the daily table.
#[derive(Debug, Clone, Copy)]
pub struct Rollup {
    /// The table's directory under the output root.
    pub table: &'static str,
    /// Its changesets' directory under the output root.
    pub changes: &'static str,
    /// The partition column (`month=YYYY-MM`).
    pub column: &'static str,
    /// Where its partitions' manifests go, under `_tally/`.
    pub manifests: &'static str,
    /// The period a day (`YYYY-MM-DD`) belongs to.
    pub period: fn(&str) -> String,
}

fn month_of(day: &str) -> String {
    day.get(..7).unwrap_or(day).to_string()
}

/// `monthly/month=YYYY-MM/part-0.parquet`: per month and creator, the events,
/// payable events and amount of every day of the month.
pub const MONTHLY: Rollup = Rollup {
    table: "monthly",
    changes: "monthly_changes",
    column: "month",
    manifests: "monthly",
    period: month_of,
};

/// Every derived table, in the order they are built.
pub const TABLES: [Rollup; 1] = [MONTHLY];

impl Rollup {
    /// `out/monthly/month=M`.
    pub fn partition_dir(&self, out: &Path, period: &str) -> PathBuf {
        out.join(self.table)
            .join(format!("{}={period}", self.column))
    }

    /// `out/monthly/month=M/part-0.parquet`.
    pub fn part_file(&self, out: &Path, period: &str) -> PathBuf {
        self.partition_dir(out, period)
            .join(crate::layout::PART_FILE)
    }

    /// `out/_tally/monthly`.
    pub fn manifests_dir(&self, out: &Path) -> PathBuf {
        crate::layout::meta_dir(out).join(self.manifests)
    }

    /// `out/_tally/monthly/month=M.json`: one partition's lineage.
    pub fn manifest(&self, out: &Path, period: &str) -> PathBuf {
        self.manifests_dir(out)
            .join(format!("{}={period}.json", self.column))
    }

    /// `out/monthly_changes/commit=N`: one commit's changeset of this table.
    pub fn changes_dir(&self, out: &Path, commit: u64) -> PathBuf {
        out.join(self.changes).join(format!("commit={commit}"))
    }

    /// `out/monthly_changes/commit=N/month=M/part-0.parquet`.
    pub fn change_file(&self, out: &Path, commit: u64, period: &str) -> PathBuf {
        self.changes_dir(out, commit)
            .join(format!("{}={period}", self.column))
            .join(crate::layout::PART_FILE)
    }

    /// The column whose value differs on every row of a partition (and of
    /// its changeset): one row per creator.
    pub const UNIQUE: &'static [&'static str] = &["creator_id"];

    /// The columns of a partition file.
    pub fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("creator_id", DataType::Utf8, false),
            Field::new("events", DataType::Int64, false),
            Field::new("payable_events", DataType::Int64, false),
            Field::new("amount_micros", DataType::Int64, false),
        ]))
    }
}

/// A day partition a derived partition was built from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Source {
    pub day: String,
    /// The blake3 of its `part-0.parquet`.
    pub blake3: String,
    /// The commit that wrote it.
    pub commit: u64,
    pub rule_hash: String,
    /// Every rule hash its rows are stamped with, when there is more than one
    /// (rows carried over by a scoped commit).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rule_hashes: Vec<String>,
}

/// The lineage of one derived partition (`_tally/monthly/month=M.json`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DerivedManifest {
    pub table: String,
    /// The partition value (`YYYY-MM` for the monthly table).
    pub period: String,
    pub file: String,
    pub blake3: String,
    pub rows: u64,
    pub events: i64,
    pub payable_events: i64,
    pub amount_micros: i64,
    pub commit: u64,
    pub run_id: String,
    pub tally_version: String,
    pub compute_version: u32,
    /// The day partitions it was built from, by day.
    pub days: Vec<Source>,
    pub reconcile: ReconcileCounts,
}

/// A derived partition a commit rebuilt, as its log entry and report say.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DerivedWritten {
    pub table: String,
    pub period: String,
    pub rows: u64,
    pub reconcile: ReconcileCounts,
}

impl DerivedManifest {
    /// What the log and the report say of it.
    pub fn written(&self) -> DerivedWritten {
        DerivedWritten {
            table: self.table.clone(),
            period: self.period.clone(),
            rows: self.rows,
            reconcile: self.reconcile,
        }
    }
}

/// What can go wrong while building a derived table.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DerivedError {
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    /// A day partition or a derived partition cannot be read.
    #[error("cannot read {path}: {message}")]
    Unreadable { path: PathBuf, message: String },
    /// A sum does not fit in 64 bits.
    #[error("the {table} total of creator {creator:?} in {period} overflows 64-bit micros")]
    Overflow {
        table: &'static str,
        period: String,
        creator: String,
    },
}

/// A day's rows summed per creator, in creator order: all a derived table
/// takes from a day partition.
pub type CreatorSums = Vec<(String, Figures)>;

/// Sums rows (in creator order) per creator; the error names the creator
/// whose sum does not fit in 64 bits.
pub fn creator_sums<'r>(
    rows: impl Iterator<Item = (&'r str, Figures)>,
) -> Result<CreatorSums, String> {
    let mut sums: CreatorSums = Vec::new();
    for (creator, figures) in rows {
        match sums.last_mut() {
            Some((current, sum)) if current == creator => {
                let add = |a: i64, b: i64| a.checked_add(b).ok_or_else(|| creator.to_string());
                *sum = (
                    add(sum.0, figures.0)?,
                    add(sum.1, figures.1)?,
                    add(sum.2, figures.2)?,
                );
            }
            _ => sums.push((creator.to_string(), figures)),
        }
    }
    Ok(sums)
}

/// A published day partition: its rows and where it came from.
pub struct Day<'a> {
    /// The partition file.
    pub path: PathBuf,
    pub source: Source,
    /// Its rows summed per creator, when the commit has them at hand (it
    /// wrote the partition); else they are read from `path`.
    pub sums: Option<&'a CreatorSums>,
}

/// Builds the partition of `period` from `days` (every published day of the
/// period, in order) into `staging`, reconciled with `published` (the
/// partition file as it stood, if any). Returns its manifest.
pub fn build(
    rollup: &Rollup,
    period: &str,
    days: &[Day<'_>],
    published: Option<&Path>,
    staging: &Path,
    commit: u64,
    run_id: &str,
) -> Result<DerivedManifest, DerivedError> {
    let mut sums: BTreeMap<String, Figures> = BTreeMap::new();
    let overflow = |creator: &str| DerivedError::Overflow {
        table: rollup.table,
        period: period.to_string(),
        creator: creator.to_string(),
    };
    for day in days {
        match day.sums {
            Some(day_sums) => {
                for (creator, figures) in day_sums {
                    add(&mut sums, creator, *figures, &overflow)?;
                }
            }
            None => add_day(&day.path, &mut sums, &overflow)?,
        }
    }

    // Reconcile: creators published before and absent now are written as zeros.
    let before = match published {
        Some(path) if path.is_file() => read(path)?,
        _ => BTreeMap::new(),
    };
    let mut counts = ReconcileCounts::default();
    let mut changes: Vec<(&str, Figures, Change)> = Vec::new();
    for creator in before.keys() {
        if !sums.contains_key(creator) {
            sums.insert(creator.clone(), (0, 0, 0));
        }
    }
    for (creator, figures) in &sums {
        let change = match before.get(creator) {
            None => Some(Change::Added),
            Some(old) if old == figures => None,
            Some(_) if *figures == (0, 0, 0) => Some(Change::Zeroed),
            Some(_) => Some(Change::Changed),
        };
        match change {
            None => counts.unchanged += 1,
            Some(Change::Added) => counts.added += 1,
            Some(Change::Zeroed) => counts.zeroed += 1,
            Some(_) => counts.changed += 1,
        }
        if let Some(change) = change {
            changes.push((creator, *figures, change));
        }
    }

    let key_values = key_values(rollup, period, days);
    let relative = rollup.part_file(Path::new(""), period);
    let path = staging.join(&relative);
    commit::create_parent(&path)?;
    let rows: Vec<(&str, Figures)> = sums.iter().map(|(c, f)| (c.as_str(), *f)).collect();
    let bytes = commit::encode(
        &path,
        Rollup::schema(),
        columns(&rows),
        &key_values,
        Rollup::UNIQUE,
    )?;
    commit::write_staged(&path, &bytes)?;
    if !changes.is_empty() {
        let path = rollup.change_file(staging, commit, period);
        let mut fields: Vec<Field> = Rollup::schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("change", DataType::Utf8, false));
        let rows: Vec<(&str, Figures)> = changes.iter().map(|(c, f, _)| (*c, *f)).collect();
        let mut columns = columns(&rows);
        columns.push(Arc::new(StringArray::from_iter_values(
            changes.iter().map(|(_, _, c)| c.as_str()),
        )));
        let bytes = commit::encode(
            &path,
            Arc::new(Schema::new(fields)),
            columns,
            &key_values,
            Rollup::UNIQUE,
        )?;
        commit::write_staged(&path, &bytes)?;
    }
    let total = |f: fn(&Figures) -> i64| {
        let sum: i128 = sums.values().map(|x| i128::from(f(x))).sum();
        i64::try_from(sum).map_err(|_| DerivedError::Overflow {
            table: rollup.table,
            period: period.to_string(),
            creator: "(all creators)".to_string(),
        })
    };
    Ok(DerivedManifest {
        table: rollup.table.to_string(),
        period: period.to_string(),
        file: relative.display().to_string(),
        blake3: blake3::hash(&bytes).to_hex().to_string(),
        rows: sums.len() as u64,
        events: total(|f| f.0)?,
        payable_events: total(|f| f.1)?,
        amount_micros: total(|f| f.2)?,
        commit,
        run_id: run_id.to_string(),
        tally_version: crate::pipeline::VERSION.to_string(),
        compute_version: crate::pipeline::COMPUTE_VERSION,
        days: days.iter().map(|d| d.source.clone()).collect(),
        reconcile: counts,
    })
}

/// Adds a day partition's figures to `sums`, per creator. Reads only the
/// creator and figure columns; a day's rows are sorted by creator, so each
/// creator's rows are summed as one run and looked up once.
fn add_day(
    path: &Path,
    sums: &mut BTreeMap<String, Figures>,
    overflow: &dyn Fn(&str) -> DerivedError,
) -> Result<(), DerivedError> {
    let fail = |message: String| DerivedError::Unreadable {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| fail(e.to_string()))?;
    let mask = parquet::arrow::ProjectionMask::columns(
        builder.parquet_schema(),
        ["creator_id", "events", "payable_events", "amount_micros"],
    );
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| fail(e.to_string()))?;
    for batch in reader {
        let batch = batch.map_err(|e| fail(e.to_string()))?;
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .filter(|c| c.null_count() == 0)
                .ok_or_else(|| fail(format!("no column {name} without nulls")))
        };
        let creators = column("creator_id")?
            .as_string_opt::<i32>()
            .ok_or_else(|| fail("column creator_id is not utf8".to_string()))?;
        let number = |name: &str| -> Result<&Int64Array, DerivedError> {
            column(name)?
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| fail(format!("column {name} is not int64")))
        };
        let (events, payable, amount) = (
            number("events")?,
            number("payable_events")?,
            number("amount_micros")?,
        );
        let rows = (0..batch.num_rows()).map(|i| {
            (
                creators.value(i),
                (events.value(i), payable.value(i), amount.value(i)),
            )
        });
        for (creator, sum) in creator_sums(rows).map_err(|creator| overflow(&creator))? {
            add(sums, &creator, sum, overflow)?;
        }
    }
    Ok(())
}

/// Adds one creator's figures to `sums`.
fn add(
    sums: &mut BTreeMap<String, Figures>,
    creator: &str,
    figures: Figures,
    overflow: &dyn Fn(&str) -> DerivedError,
) -> Result<(), DerivedError> {
    let sum = match sums.get_mut(creator) {
        Some(sum) => sum,
        None => sums.entry(creator.to_string()).or_default(),
    };
    sum.0 = sum
        .0
        .checked_add(figures.0)
        .ok_or_else(|| overflow(creator))?;
    sum.1 = sum
        .1
        .checked_add(figures.1)
        .ok_or_else(|| overflow(creator))?;
    sum.2 = sum
        .2
        .checked_add(figures.2)
        .ok_or_else(|| overflow(creator))?;
    Ok(())
}

fn columns(rows: &[(&str, Figures)]) -> Vec<ArrayRef> {
    vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1.0))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1.1))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1.2))),
    ]
}

/// The lineage stamped into a derived partition: the table, the period, the
/// Tally that built it and every day partition it was built from.
fn key_values(rollup: &Rollup, period: &str, days: &[Day<'_>]) -> Vec<KeyValue> {
    let sources: Vec<String> = days
        .iter()
        .map(|d| format!("{} {}", d.source.day, d.source.blake3))
        .collect();
    let mut rules: Vec<&str> = days
        .iter()
        .flat_map(|d| std::iter::once(&d.source.rule_hash).chain(&d.source.rule_hashes))
        .map(String::as_str)
        .collect();
    rules.sort_unstable();
    rules.dedup();
    [
        ("tally.table".to_string(), rollup.table.to_string()),
        (format!("tally.{}", rollup.column), period.to_string()),
        (
            "tally.version".to_string(),
            crate::pipeline::VERSION.to_string(),
        ),
        (
            "tally.compute_version".to_string(),
            crate::pipeline::COMPUTE_VERSION.to_string(),
        ),
        ("tally.rule_hashes".to_string(), rules.join(",")),
        ("tally.days".to_string(), sources.join(",")),
    ]
    .into_iter()
    .map(|(k, v)| KeyValue::new(k, v))
    .collect()
}

/// The rows of a published derived partition, by creator.
pub fn read(path: &Path) -> Result<BTreeMap<String, Figures>, DerivedError> {
    let fail = |message: String| DerivedError::Unreadable {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| fail(e.to_string()))?;
    let mut rows = BTreeMap::new();
    for batch in reader {
        let batch = batch.map_err(|e| fail(e.to_string()))?;
        if batch.schema().fields() != Rollup::schema().fields() {
            return Err(fail(format!(
                "columns {:?}, not those of a derived table",
                batch.schema().fields()
            )));
        }
        let creator = batch.column(0).as_string::<i32>();
        let events = batch.column(1).as_primitive::<Int64Type>();
        let payable = batch.column(2).as_primitive::<Int64Type>();
        let amount = batch.column(3).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            rows.insert(
                creator.value(i).to_string(),
                (events.value(i), payable.value(i), amount.value(i)),
            );
        }
    }
    Ok(rows)
}
