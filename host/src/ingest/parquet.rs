//! Parquet: one unit of work per row group, decoded into Arrow batches and
//! validated row by row.
//!
//! Column types are checked against the contract per batch: a column of the
//! wrong type makes each of its rows `bad-type`, a missing column makes them
//! `missing-field`, so a file with a wrong schema is quarantined row by row with
//! a reason, never silently read.

use super::{Chunk, IngestError};
use crate::event::FIELDS;
use crate::validate::{EventColumns, Quarantined, Value};
use arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Int64Type, TimeUnit};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::fs::File;
use std::path::Path;

/// One row group of one file.
pub(super) struct RowGroup {
    pub source: u32,
    index: usize,
    first_row: u64,
}

fn parquet_error(path: &Path, err: impl std::fmt::Display) -> IngestError {
    IngestError::Parquet {
        path: path.to_path_buf(),
        message: err.to_string(),
    }
}

fn builder(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>, IngestError> {
    let file = File::open(path).map_err(|source| IngestError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_error(path, e))
}

/// The row groups of a Parquet file (reads its footer only).
pub(super) fn row_groups(source: u32, path: &Path) -> Result<Vec<RowGroup>, IngestError> {
    let builder = builder(path)?;
    let mut first_row = 0u64;
    Ok(builder
        .metadata()
        .row_groups()
        .iter()
        .enumerate()
        .map(|(index, rg)| {
            let group = RowGroup {
                source,
                index,
                first_row,
            };
            first_row += rg.num_rows() as u64;
            group
        })
        .collect())
}

/// A contract column of one batch, as the validator reads it.
enum Column {
    Missing,
    Str(StringArray),
    /// Epoch milliseconds (converted from any timestamp unit, or int64 as is).
    Millis(PrimitiveArray<Int64Type>),
    WrongType,
}

impl Column {
    fn of(batch: &RecordBatch, field: usize) -> Column {
        let Some(array) = batch.column_by_name(FIELDS[field]) else {
            return Column::Missing;
        };
        let is_timestamp = matches!(field, 1 | 2);
        match array.data_type() {
            DataType::Timestamp(unit, _) if is_timestamp => {
                let Ok(cast) = arrow::compute::cast(array, &DataType::Int64) else {
                    return Column::WrongType;
                };
                let raw = cast.as_primitive::<Int64Type>();
                let to_ms = |v: i64| match unit {
                    TimeUnit::Second => v.saturating_mul(1000),
                    TimeUnit::Millisecond => v,
                    TimeUnit::Microsecond => v.div_euclid(1000),
                    TimeUnit::Nanosecond => v.div_euclid(1_000_000),
                };
                Column::Millis(raw.unary(to_ms))
            }
            DataType::Int64 if is_timestamp => {
                Column::Millis(array.as_primitive::<Int64Type>().clone())
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View if !is_timestamp => {
                to_utf8(array)
            }
            DataType::Dictionary(_, value)
                if !is_timestamp
                    && matches!(
                        **value,
                        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                    ) =>
            {
                to_utf8(array)
            }
            _ => Column::WrongType,
        }
    }

    fn value(&self, row: usize) -> Value<'_> {
        match self {
            Column::Missing => Value::Null,
            Column::WrongType => Value::Other,
            _ if self.is_null(row) => Value::Null,
            Column::Str(a) => Value::Str(a.value(row)),
            Column::Millis(a) => Value::TimestampMs(a.value(row)),
        }
    }

    fn is_null(&self, row: usize) -> bool {
        match self {
            Column::Str(a) => a.is_null(row),
            Column::Millis(a) => a.is_null(row),
            _ => false,
        }
    }
}

fn to_utf8(array: &ArrayRef) -> Column {
    match arrow::compute::cast(array, &DataType::Utf8) {
        Ok(cast) => Column::Str(cast.as_string::<i32>().clone()),
        Err(_) => Column::WrongType,
    }
}

/// Reads and validates one row group.
pub(super) fn read(path: &Path, rg: RowGroup, batch_rows: usize) -> Result<Chunk, IngestError> {
    let builder = builder(path)?;
    let schema = builder.parquet_schema();
    let roots = schema.root_schema().get_fields().iter().enumerate();
    let wanted = roots
        .filter(|(_, f)| FIELDS.contains(&f.name()))
        .map(|(i, _)| i);
    let mask = ProjectionMask::roots(schema, wanted);
    let reader = builder
        .with_row_groups(vec![rg.index])
        .with_projection(mask)
        .with_batch_size(batch_rows.max(1))
        .build()
        .map_err(|e| parquet_error(path, e))?;

    let mut events = EventColumns::new();
    let mut quarantine = Vec::new();
    let mut row = rg.first_row;
    for batch in reader {
        let batch = batch.map_err(|e| parquet_error(path, e))?;
        let columns: [Column; 10] = std::array::from_fn(|f| Column::of(&batch, f));
        for i in 0..batch.num_rows() {
            let values: [Value<'_>; 10] = std::array::from_fn(|f| columns[f].value(i));
            if let Err(reason) = events.push(&values) {
                quarantine.push(Quarantined {
                    source: rg.source,
                    position: row + i as u64,
                    reason,
                    raw: render_row(&batch, i),
                });
            }
        }
        row += batch.num_rows() as u64;
    }
    Ok(Chunk {
        source: rg.source,
        seq: rg.index as u32,
        records: row - rg.first_row,
        events,
        quarantine,
    })
}

/// A row rendered as a JSON object (null fields left out).
fn render_row(batch: &RecordBatch, row: usize) -> String {
    let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
    let rendered = writer
        .write(&batch.slice(row, 1))
        .and_then(|_| writer.finish());
    match rendered {
        Ok(()) => String::from_utf8_lossy(&writer.into_inner())
            .trim_end()
            .to_string(),
        Err(e) => format!("{{\"unrenderable_row\": {:?}}}", e.to_string()),
    }
}
