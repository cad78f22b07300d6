//! End-to-end tests: each module drives the real `tally` binary on one topic.

mod common;
mod sandbox;
