//! Parquet: one unit of work per row group (or, when there are fewer row
//! groups than threads can share, per slice of one), decoded into Arrow
//! batches and validated row by row.
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
    Array, ArrayRef, AsArray, Int32Array, Int32DictionaryArray, PrimitiveArray, RecordBatch,
    StringArray,
};
use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, TimeUnit};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

/// One row group of one file, or a slice of its rows.
pub(super) struct RowGroup {
    pub source: u32,
    index: usize,
    /// The first row read, in the file.
    first_row: u64,
    /// Rows of the row group before the first one read.
    skip: u64,
    /// Rows read.
    rows: u64,
    /// Its order among the units of its file.
    seq: u32,
}

/// The fewest rows a slice of a row group gets: below that, reading the
/// footer and decoding the dictionaries again costs more than it shares.
const MIN_SLICE_ROWS: u64 = 32_768;

/// Splits row groups into slices of rows (in order) until there are about
/// `want` units of work, none under [`MIN_SLICE_ROWS`] rows; a file set with
/// enough row groups is left as it is. Each unit's `seq` is its order
/// within its file.
pub(super) fn slice(groups: Vec<RowGroup>, want: usize) -> Vec<RowGroup> {
    let per_group = want.div_ceil(groups.len().max(1)).max(1) as u64;
    let mut units = Vec::with_capacity(groups.len());
    let mut seq: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
    for group in groups {
        let slices = per_group.min(group.rows / MIN_SLICE_ROWS).max(1);
        let mut skip = 0;
        for k in 0..slices {
            let rows = group.rows * (k + 1) / slices - skip;
            let next = seq.entry(group.source).or_default();
            units.push(RowGroup {
                source: group.source,
                index: group.index,
                first_row: group.first_row + skip,
                skip,
                rows,
                seq: *next,
            });
            *next += 1;
            skip += rows;
        }
    }
    units
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
                skip: 0,
                rows: rg.num_rows().max(0) as u64,
                seq: index as u32,
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
    let mut builder = builder
        .with_row_groups(vec![rg.index])
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS);
    let whole = builder.metadata().row_group(rg.index).num_rows().max(0) as u64;
    if rg.rows < whole {
        let (skip, rows) = (rg.skip as usize, rg.rows as usize);
        builder = builder.with_row_selection(RowSelection::from(vec![
            RowSelector::skip(skip),
            RowSelector::select(rows),
        ]));
    }
    let reader = builder.build().map_err(|e| parquet_error(path, e))?;

    let mut events = EventColumns::new();
    events.source = rg.source;
    let mut quarantine = Vec::new();
    let mut row = rg.first_row;
    for batch in reader {
        let batch = batch.map_err(|e| parquet_error(path, e))?;
        let first = row;
        let at = |i: usize| first + i as u64;
        validate_batch(
            &batch,
            rg.source,
            &at,
            &mut events,
            &mut quarantine,
            strings,
        );
        row += batch.num_rows() as u64;
    }
    Ok(Chunk {
        source: rg.source,
        seq: rg.seq,
        records: row - rg.first_row,
        interner: 0,
        events,
        quarantine,
    })
}

/// Validates every row of a batch of contract columns from the file `source`,
/// row `i` being at `position(i)` in it: appends each to `events` or
/// `quarantine` (the row rendered as JSON from the batch's columns).
pub(super) fn validate_batch(
    batch: &RecordBatch,
    source: u32,
    position: &dyn Fn(usize) -> u64,
    events: &mut EventColumns,
    quarantine: &mut Vec<Quarantined>,
    strings: &mut Interner,
) {
    let head: [Column; 3] = std::array::from_fn(|f| Column::of(batch, f));
    let tail: Vec<Checked> = DICTIONARY_FIELDS
        .map(|f| Checked::new(f, Column::of(batch, f), strings))
        .collect();
    for i in 0..batch.num_rows() {
        let values: [Value<'_>; 3] = std::array::from_fn(|f| head[f].value(i));
        let checked: [Result<u32, Reason>; 7] = std::array::from_fn(|f| tail[f].get(i, strings));
        match events.push_checked(&values, checked) {
            Ok(()) => events.position.push(position(i)),
            Err(reason) => quarantine.push(Quarantined {
                source,
                position: position(i),
                reason,
                raw: render_row(batch, i),
                line_bytes: None,
            }),
        }
    }
}

/// A row rendered as a JSON object, its columns in the file's order (null
/// fields left out): strings as strings, numbers as numbers, binary as hex,
/// lists, maps and structs as JSON arrays and objects, timestamps in RFC 3339
/// with the offset of their time zone (a zone name included).
fn render_row(batch: &RecordBatch, row: usize) -> String {
    let mut text = String::from("{");
    for (field, column) in batch.schema_ref().fields().iter().zip(batch.columns()) {
        let value = render_cell(field, &column.slice(row, 1));
        if value.is_null() {
            continue;
        }
        if text.len() > 1 {
            text.push(',');
        }
        text.push_str(&serde_json::Value::String(field.name().clone()).to_string());
        text.push(':');
        text.push_str(&value.to_string());
    }
    text.push('}');
    text
}

/// The value of a one-row column as JSON.
fn render_cell(field: &Field, cell: &ArrayRef) -> serde_json::Value {
    if cell.is_null(0) {
        return serde_json::Value::Null;
    }
    if cell.data_type().is_temporal() {
        return render_time(cell);
    }
    let schema = Arc::new(Schema::new(vec![field.clone()]));
    let json = RecordBatch::try_new(schema, vec![cell.clone()])
        .and_then(|batch| {
            let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
            writer.write(&batch)?;
            writer.finish()?;
            Ok(writer.into_inner())
        })
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
    match json {
        Some(mut object) => object[field.name()].take(),
        // A type JSON has no form for: as arrow displays it.
        None => serde_json::Value::String(display(cell, true).unwrap_or_default()),
    }
}

/// A date, time, timestamp, duration or interval as arrow displays it (a
/// timestamp with its zone's offset); a timestamp whose zone arrow does not
/// know in UTC; a value outside the calendar as the number stored.
fn render_time(cell: &ArrayRef) -> serde_json::Value {
    if let Some(text) = display(cell, false) {
        return serde_json::Value::String(text);
    }
    if let DataType::Timestamp(unit, Some(_)) = cell.data_type() {
        let utc = DataType::Timestamp(*unit, Some("+00:00".into()));
        let retyped = cell.to_data().into_builder().data_type(utc).build();
        if let Some(text) = retyped
            .ok()
            .and_then(|data| display(&arrow::array::make_array(data), false))
        {
            return serde_json::Value::String(text);
        }
    }
    match arrow::compute::cast(cell, &DataType::Int64) {
        Ok(number) if number.is_valid(0) => {
            serde_json::Value::from(number.as_primitive::<Int64Type>().value(0))
        }
        _ => serde_json::Value::String(display(cell, true).unwrap_or_default()),
    }
}

/// The first value of `array` as arrow displays it; `None` if it cannot be
/// displayed, unless `errors` asks for the error as the text.
fn display(array: &ArrayRef, errors: bool) -> Option<String> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let options = FormatOptions::new().with_display_error(errors);
    let formatter = ArrayFormatter::try_new(array.as_ref(), &options);
    match formatter {
        Ok(formatter) if errors => {
            use std::fmt::Write;
            let mut text = String::new();
            write!(text, "{}", formatter.value(0)).ok().map(|()| text)
        }
        Ok(formatter) => formatter.value(0).try_to_string().ok(),
        Err(e) if errors => Some(format!("ERROR: {e}")),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array,
        LargeStringArray, ListArray, StructArray, TimestampMicrosecondArray,
        TimestampMillisecondArray,
    };
    use arrow::datatypes::Int32Type;

    fn render(columns: Vec<(&str, ArrayRef)>, row: usize) -> serde_json::Value {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
            .collect();
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap();
        let text = render_row(&batch, row);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    /// 2026-05-04T00:01:00Z in milliseconds.
    const T: i64 = 1_777_852_860_000;

    fn ms(zone: Option<&str>, values: Vec<Option<i64>>) -> ArrayRef {
        let array = TimestampMillisecondArray::from(values);
        Arc::new(match zone {
            Some(zone) => array.with_timezone(zone),
            None => array,
        })
    }

    #[test]
    fn rows_render_every_type_as_json() {
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), None]),
            Some(vec![Some(2)]),
        ]);
        let structs = StructArray::from(vec![(
            Arc::new(Field::new("a", DataType::Utf8, true)),
            Arc::new(StringArray::from(vec!["x", "y"])) as ArrayRef,
        )]);
        let columns: Vec<(&str, ArrayRef)> = vec![
            (
                "event_id",
                Arc::new(LargeStringArray::from(vec!["e0", "e1"])),
            ),
            ("utc", ms(Some("UTC"), vec![Some(0), Some(T)])),
            (
                "new_york",
                ms(Some("America/New_York"), vec![Some(0), Some(T)]),
            ),
            ("offset", ms(Some("+05:30"), vec![Some(0), Some(T)])),
            ("no_zone", ms(None, vec![Some(0), Some(T)])),
            (
                "not_a_zone",
                ms(Some("Mars/Olympus_Mons"), vec![Some(0), Some(T)]),
            ),
            (
                "micros",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![0, T * 1000 + 5])
                        .with_timezone("Europe/Paris"),
                ),
            ),
            (
                "beyond_calendars",
                ms(Some("UTC"), vec![Some(0), Some(i64::MAX)]),
            ),
            ("null", ms(Some("UTC"), vec![Some(0), None])),
            ("int", Arc::new(Int64Array::from(vec![1, -7]))),
            ("float", Arc::new(Float64Array::from(vec![1.0, 2.5]))),
            ("bool", Arc::new(BooleanArray::from(vec![true, false]))),
            (
                "binary",
                Arc::new(BinaryArray::from(vec![&b"a"[..], &b"\x01\xff"[..]])),
            ),
            (
                "decimal",
                Arc::new(
                    Decimal128Array::from(vec![1, 12345])
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                ),
            ),
            ("date", Arc::new(Date32Array::from(vec![0, 20577]))),
            ("list", Arc::new(list)),
            ("struct", Arc::new(structs)),
            (
                "dictionary",
                Arc::new(
                    vec!["video", "image"]
                        .into_iter()
                        .collect::<Int32DictionaryArray>(),
                ),
            ),
        ];
        assert_eq!(
            render(columns, 1),
            serde_json::json!({
                "event_id": "e1",
                "utc": "2026-05-04T00:01:00Z",
                "new_york": "2026-05-03T20:01:00-04:00",
                "offset": "2026-05-04T05:31:00+05:30",
                "no_zone": "2026-05-04T00:01:00",
                "not_a_zone": "2026-05-04T00:01:00Z",
                "micros": "2026-05-04T02:01:00.000005+02:00",
                "beyond_calendars": i64::MAX,
                "int": -7,
                "float": 2.5,
                "bool": false,
                "binary": "01ff",
                "decimal": 123.45,
                "date": "2026-05-04",
                "list": [2],
                "struct": {"a": "y"},
                "dictionary": "image",
            })
        );
    }

    #[test]
    fn rendered_columns_keep_the_file_order() {
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("z", Arc::new(Int64Array::from(vec![1]))),
            ("a", Arc::new(StringArray::from(vec!["q\"uote"]))),
        ];
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("z", DataType::Int64, false),
                Field::new("a", DataType::Utf8, false),
            ])),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap();
        assert_eq!(render_row(&batch, 0), r#"{"z":1,"a":"q\"uote"}"#);
    }
}
