//! Tally for Python and Spark: the shard tasks of a run on Arrow batches.
//!
//! The module `tally._native` (re-exported by the `tally` package) gives:
//!
//! - on the driver, [`plan`](plan::plan) (the rule resolved and its hash
//!   pinned, the inputs listed and fingerprinted, a directory made for the
//!   parts of the survivor index) and `Plan.commit` (the reduce tasks' sums
//!   merged, checked, reconciled and committed with Tally's lineage and
//!   survivor index, through the same function as `tally commit`);
//! - on the executors, [`Validator`](validate::Validator) (raw JSON lines or
//!   Parquet columns checked against the event contract, each valid record
//!   routed to its shard) and [`Reducer`](reduce::Reducer) (one partition's
//!   shards deduplicated, classified with the pinned rule and summed, and
//!   its part of the survivor index written into the plan's directory).
//!
//! Batches cross into Rust through the Arrow C data interface (the PyCapsule
//! protocol), with no per-row Python. The Tally library itself knows nothing
//! of Python.
//!
//! ```python
//! import pyarrow as pa
//! from tally import _native as tally
//!
//! plan = tally.plan(["events/"], "creator-pay-v1.wasm", "out")
//! lines = pa.record_batch({"line": [b'{"event_id": "e1"}'],
//!                          "file": [plan.files[0][0]], "block": [0]})
//! validator = tally.Validator(plan.json, "lines")
//! blobs = [pa.record_batch(validator.push(lines)), pa.record_batch(validator.finish(0))]
//! ```

mod error;
mod ffi;
mod plan;
mod records;
mod reduce;
mod validate;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("TallyError", m.py().get_type::<error::TallyError>())?;
    m.add("__version__", tally::pipeline::VERSION)?;
    m.add("SHARD_FORMAT_VERSION", tally::shard::SHARD_FORMAT_VERSION)?;
    m.add("FIELDS", tally::event::FIELDS.to_vec())?;
    m.add_function(wrap_pyfunction!(plan::plan, m)?)?;
    m.add_function(wrap_pyfunction!(shard_of, m)?)?;
    m.add_class::<plan::Plan>()?;
    m.add_class::<validate::Validator>()?;
    m.add_class::<reduce::Reducer>()?;
    m.add_class::<ffi::ArrowBatch>()?;
    Ok(())
}

/// The shard (`0..shards`) of an `event_id`: Tally's shard function.
#[pyfunction]
fn shard_of(event_id: &str, shards: u32) -> PyResult<u32> {
    if shards == 0 {
        return Err(error::TallyError::new_err("shards must be at least 1"));
    }
    Ok(tally::shard::shard_of(event_id.as_bytes(), shards))
}
