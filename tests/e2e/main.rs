//! End-to-end tests: each module drives the real `tally` binary on one topic.

mod bad_input;
mod build;
mod common;
mod compare;
mod crash;
mod determinism;
mod explain;
mod html;
mod lineage;
mod model;
mod output;
mod policies;
mod reconcile;
mod registry;
mod sandbox;
mod support;
mod survivors;
mod totals;
