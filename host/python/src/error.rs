//! Errors as Python sees them: `tally.TallyError`, with the whole chain of
//! causes in its message.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes};

create_exception!(
    _native,
    TallyError,
    PyException,
    "A Tally task failed: bad input, a rule that failed or was refused, or an output that cannot be committed."
);

/// An error and its causes, as `tally` prints them (`what: why: ...`).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// A library error as a [`TallyError`].
pub fn failed(e: impl std::error::Error + 'static) -> PyErr {
    TallyError::new_err(chain(&e))
}

/// The bytes of a `bytes` or `bytearray` (what Spark gives for a binary
/// column).
pub fn bytes_of(value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = value.cast::<PyBytes>() {
        Ok(b.as_bytes().to_vec())
    } else if let Ok(b) = value.cast::<PyByteArray>() {
        Ok(b.to_vec())
    } else {
        Err(PyTypeError::new_err(format!(
            "expected bytes, got {}",
            value.get_type().name()?
        )))
    }
}
