//! Tally: streams content-usage events through validation, deduplication,
//! classification by a sandboxed WebAssembly rule, and aggregation into daily
//! totals per creator and template, stamped with the rule's content hash.
//!
//! The modules follow the data:
//!
//! - [`ingest`] finds and reads input files (JSONL, `.gz`, `.zst`, Parquet);
//! - [`validate`] applies the event contract ([`event`]) and quarantines bad records;
//! - [`dedup`] merges everything into one table and keeps one record per `event_id`;
//! - [`classify`] hands columnar batches to the [`rule`] in its sandbox;
//! - [`aggregate`] sums verdicts into daily rows;
//! - [`reconcile`] merges the new rows with what the output already holds;
//! - [`commit`] writes lineage-stamped Parquet and promotes it atomically, in
//!   the directories [`layout`] names;
//! - [`report`] describes the run for people and machines.
//!
//! [`pipeline::run`] runs them in order, in memory or, when the input does not
//! fit the memory limit, shard by shard out of core ([`shard`]); [`tasks`]
//! runs the same phases as separate plan, map, reduce and commit tasks over a
//! work directory; [`lineage`] reads back where output
//! came from and [`verify`] recomputes it; every commit writes a
//! [`survivors`] index, from which [`status`] tells which published days are
//! stale and why, and [`backfill`] writes only those, reading only the new
//! input files ([`incremental`]) or only those the stale days need
//! ([`partial`]) where it can; [`generate`] makes synthetic input.
//!
//! ```no_run
//! use tally::pipeline::{run, RunOptions};
//! use tally::rule::Limits;
//!
//! let report = run(&RunOptions {
//!     inputs: vec!["events/".into()],
//!     rule: "creator-pay-v1.wasm".into(),
//!     out: "out/".into(),
//!     threads: None,
//!     batch_size: tally::pipeline::DEFAULT_BATCH_SIZE,
//!     limits: Limits::default(),
//!     progress: false,
//!     days: None,
//!     read: Default::default(),
//!     spill: Default::default(),
//! })?;
//! println!("{report}");
//! # Ok::<(), tally::pipeline::RunError>(())
//! ```

pub mod aggregate;
pub mod backfill;
pub mod classify;
pub mod commit;
pub mod compare;
pub mod dedup;
pub mod derived;
pub mod event;
pub mod explain;
pub mod generate;
pub mod incremental;
pub mod ingest;
pub mod intern;
pub mod layout;
pub mod lineage;
pub mod partial;
pub mod pipeline;
pub mod progress;
pub mod reconcile;
pub mod registry;
pub mod report;
pub mod rule;
pub mod scope;
pub mod shard;
pub mod sink;
pub mod status;
pub mod survivors;
pub mod tasks;
pub mod validate;
pub mod verify;
