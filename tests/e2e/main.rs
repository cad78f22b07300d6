//! End-to-end tests: each module drives the real `tally` binary on one topic.

mod bad_input;
mod build;
mod cache_trust;
mod common;
mod compare;
mod crash;
mod determinism;
mod explain;
mod html;
mod ingest_limits;
mod layout;
mod lineage;
mod model;
mod output;
mod policies;
mod reconcile;
mod registry;
mod sandbox;
mod sandbox_limits;
mod shards;
mod support;
mod survivors;
mod tasks;
mod terminal;
mod totals;
mod usage;
