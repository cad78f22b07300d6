//! Parquet: one unit of work per row group, decoded into Arrow batches and
//! validated row by row.
//!
//! Column types are checked against the contract per batch: a column of the
//! wrong type makes each of its rows `bad-type`, a missing column makes them
//! `missing-field`, so a file with a wrong schema is quarantined row by row with
//! a reason, never silently read.

use super::{Chunk, IngestError};
use crate::event::FIELDS;
use crate::intern::Interner;
use crate::validate::{EventColumns, Quarantined, Reason, Value, check};
use arrow::array::{
    Array, AsArray, Int32Array, Int32DictionaryArray, PrimitiveArray, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, TimeUnit};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

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

/// Rows decoded at once from a row group.
const BATCH_ROWS: usize = 65_536;

/// Fields from `creator_id` on, which repeat a lot and are read as dictionaries.
const DICTIONARY_FIELDS: std::ops::Range<usize> = 3..10;

/// A contract column of one batch, as the validator reads it.
enum Column {
    Missing,
    Str(StringArray),
    /// Epoch milliseconds (converted from any timestamp unit, or int64 as is).
    Millis(PrimitiveArray<Int64Type>),
    /// Dictionary-encoded strings: each distinct value is checked once.
    Dict(Int32DictionaryArray),
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
            t if is_timestamp || !is_string(t) => Column::WrongType,
            DataType::Dictionary(_, _) => {
                let wanted =
                    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
                match arrow::compute::cast(array, &wanted) {
                    Ok(cast) => Column::Dict(cast.as_dictionary::<Int32Type>().clone()),
                    Err(_) => Column::WrongType,
                }
            }
            _ => match arrow::compute::cast(array, &DataType::Utf8) {
                Ok(cast) => Column::Str(cast.as_string::<i32>().clone()),
                Err(_) => Column::WrongType,
            },
        }
    }

    fn value(&self, row: usize) -> Value<'_> {
        match self {
            Column::Missing => Value::Null,
            Column::WrongType => Value::Other,
            Column::Str(a) if a.is_valid(row) => Value::Str(a.value(row)),
            Column::Millis(a) if a.is_valid(row) => Value::TimestampMs(a.value(row)),
            Column::Dict(a) if a.is_valid(row) => {
                let values = a.values().as_string::<i32>();
                Value::Str(values.value(a.keys().value(row) as usize))
            }
            _ => Value::Null,
        }
    }
}

/// Whether a type is a string type, or a dictionary of one.
fn is_string(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, value) => is_string(value),
        _ => false,
    }
}

/// The check of one field for every row of a batch: per distinct value for a
/// dictionary column, per row otherwise.
enum Checked {
    Dict {
        keys: Int32Array,
        values: Vec<Result<u32, Reason>>,
        null: Result<u32, Reason>,
    },
    PerRow(usize, Column),
}

impl Checked {
    fn new(field: usize, column: Column, strings: &mut Interner) -> Checked {
        let Column::Dict(dict) = column else {
            return Checked::PerRow(field, column);
        };
        let values = dict.values().as_string::<i32>();
        let values = (0..values.len())
            .map(|i| check(field, Value::Str(values.value(i)), strings))
            .collect();
        Checked::Dict {
            keys: dict.keys().clone(),
            values,
            null: check(field, Value::Null, strings),
        }
    }

    fn get(&self, row: usize, strings: &mut Interner) -> Result<u32, Reason> {
        match self {
            Checked::Dict { keys, values, null } => match keys.is_valid(row) {
                true => values[keys.value(row) as usize],
                false => *null,
            },
            Checked::PerRow(field, column) => check(*field, column.value(row), strings),
        }
    }
}

/// Asks the reader to keep string columns dictionary-encoded where the file's
/// pages are, so each distinct value is decoded and checked once.
fn dictionary_hint(schema: &Schema) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let repeats = FIELDS[DICTIONARY_FIELDS].contains(&f.name().as_str());
            match f.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 if repeats => {
                    f.as_ref().clone().with_data_type(DataType::Dictionary(
                        Box::new(DataType::Int32),
                        Box::new(f.data_type().clone()),
                    ))
                }
                _ => f.as_ref().clone(),
            }
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// Reads and validates one row group; strings are interned into `strings`.
pub(super) fn read(
    path: &Path,
    rg: RowGroup,
    strings: &mut Interner,
) -> Result<Chunk, IngestError> {
    let plain = builder(path)?;
    let hint = Arc::new(dictionary_hint(plain.schema()));
    let file = File::open(path).map_err(|source| IngestError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let options = ArrowReaderOptions::new().with_schema(hint);
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options)
        .map_err(|e| parquet_error(path, e))?;
    let schema = builder.parquet_schema();
    let roots = schema.root_schema().get_fields().iter().enumerate();
    let wanted = roots
        .filter(|(_, f)| FIELDS.contains(&f.name()))
        .map(|(i, _)| i);
    let mask = ProjectionMask::roots(schema, wanted);
    let reader = builder
        .with_row_groups(vec![rg.index])
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| parquet_error(path, e))?;

    let mut events = EventColumns::new();
    events.source = rg.source;
    let mut quarantine = Vec::new();
    let mut row = rg.first_row;
    for batch in reader {
        let batch = batch.map_err(|e| parquet_error(path, e))?;
        let head: [Column; 3] = std::array::from_fn(|f| Column::of(&batch, f));
        let tail: Vec<Checked> = DICTIONARY_FIELDS
            .map(|f| Checked::new(f, Column::of(&batch, f), strings))
            .collect();
        for i in 0..batch.num_rows() {
            let values: [Value<'_>; 3] = std::array::from_fn(|f| head[f].value(i));
            let checked: [Result<u32, Reason>; 7] =
                std::array::from_fn(|f| tail[f].get(i, strings));
            match events.push_checked(&values, checked) {
                Ok(()) => events.position.push(row + i as u64),
                Err(reason) => quarantine.push(Quarantined {
                    source: rg.source,
                    position: row + i as u64,
                    reason,
                    raw: render_row(&batch, i),
                }),
            }
        }
        row += batch.num_rows() as u64;
    }
    Ok(Chunk {
        source: rg.source,
        seq: rg.index as u32,
        records: row - rg.first_row,
        interner: 0,
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
