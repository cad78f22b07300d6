//! Arrow batches in and out of Python through the Arrow C data interface and
//! the Arrow PyCapsule protocol (`__arrow_c_array__`): pyarrow, and anything
//! else that speaks the protocol, hands its buffers over without a copy or a
//! row of Python. This module owns the only unsafe code of the package.
#![allow(unsafe_code)]

use arrow::array::{Array, RecordBatch, StructArray};
use arrow::datatypes::{DataType, Schema};
use arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyCapsuleMethods, PyTuple};
use std::sync::Arc;

/// Imports a record batch from an object with `__arrow_c_array__` (a
/// `pyarrow.RecordBatch`, say), checking its buffers.
pub fn import_batch(obj: &Bound<'_, PyAny>) -> PyResult<RecordBatch> {
    if !obj.hasattr("__arrow_c_array__")? {
        return Err(PyTypeError::new_err(format!(
            "expected an Arrow record batch (an object with __arrow_c_array__), got {}",
            obj.get_type().name()?
        )));
    }
    let pair = obj.call_method0("__arrow_c_array__")?;
    let (schema, array): (Bound<'_, PyCapsule>, Bound<'_, PyCapsule>) = pair.extract()?;
    let schema_ptr = schema
        .pointer_checked(Some(c"arrow_schema"))?
        .cast::<FFI_ArrowSchema>();
    let array_ptr = array
        .pointer_checked(Some(c"arrow_array"))?
        .cast::<FFI_ArrowArray>();
    // SAFETY: capsules with these names hold the C data interface's structs
    // (the protocol says so, and the names were checked above). The array is
    // moved out, leaving a released one behind for its capsule to drop; the
    // schema is only read while its capsule is alive.
    let data = unsafe {
        let array = FFI_ArrowArray::from_raw(array_ptr.as_ptr());
        arrow::ffi::from_ffi(array, schema_ptr.as_ref())
    }
    .map_err(|e| PyValueError::new_err(format!("not a valid Arrow array: {e}")))?;
    // The producer's buffers are not trusted: offsets, lengths and UTF-8 are
    // checked before any value is read.
    data.validate_full()
        .map_err(|e| PyValueError::new_err(format!("not a valid Arrow array: {e}")))?;
    if !matches!(data.data_type(), DataType::Struct(_)) {
        return Err(PyTypeError::new_err(format!(
            "expected a record batch (a struct array), got an array of {}",
            data.data_type()
        )));
    }
    let (fields, columns, nulls) = StructArray::from(data).into_parts();
    if nulls.is_some_and(|n| n.null_count() > 0) {
        return Err(PyValueError::new_err(
            "a record batch cannot have null rows",
        ));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| PyValueError::new_err(format!("not a valid record batch: {e}")))
}

/// A record batch made in Rust, for Python to import with
/// `pyarrow.record_batch(batch)` (the PyCapsule protocol): no copy.
#[pyclass(frozen, module = "tally._native")]
pub struct ArrowBatch {
    batch: RecordBatch,
}

impl ArrowBatch {
    pub fn new(batch: RecordBatch) -> Self {
        ArrowBatch { batch }
    }
}

#[pymethods]
impl ArrowBatch {
    /// The batch as the `(schema, array)` capsules of the Arrow PyCapsule
    /// protocol. A requested schema is not honoured: the batch comes as it
    /// is, which the protocol allows.
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_array__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let _ = requested_schema;
        let array = StructArray::from(self.batch.clone());
        let (array, schema) = arrow::ffi::to_ffi(&array.to_data())
            .map_err(|e| PyValueError::new_err(format!("cannot export the batch: {e}")))?;
        // Each capsule owns its struct; dropping it releases what the
        // consumer did not take.
        let schema = PyCapsule::new_with_value(py, schema, c"arrow_schema")?;
        let array = PyCapsule::new_with_value(py, array, c"arrow_array")?;
        PyTuple::new(py, [schema, array])
    }

    /// Rows in the batch.
    #[getter]
    fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }
}
