//! End-to-end tests: each module drives the real `tally` binary on one topic.

mod bad_input;
mod common;
mod determinism;
mod model;
mod output;
mod policies;
mod registry;
mod sandbox;
mod support;
mod survivors;
mod totals;
