//! Write Tally classification rules in plain Rust.
//!
//! A rule looks at one content-usage event at a time and decides whether the
//! creator of the content is paid for it, how much, and why. Tally runs rules as
//! sandboxed WebAssembly components with no access to anything outside them
//! (their one import only reports a panic to the host), so the same events
//! always get the same verdicts, on every machine. This crate is everything a
//! rule needs: you implement [`Rule`] for a type, call [`export_rule!`] once, and
//! test it natively with [`testing`]. There is no WebAssembly, ABI or `unsafe`
//! code in a rule crate.
//!
//! # Writing a rule
//!
//! A rule is a library crate that depends on this one and builds as both a
//! `cdylib` (the WebAssembly module) and an `rlib` (for `cargo test`):
//!
//! ```toml
//! [package]
//! name = "my-rule"
//! version = "1.0.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib", "rlib"]
//!
//! [dependencies]
//! tally-rules-sdk = { path = "../../rules-sdk" }
//! ```
//!
//! (Inside the Tally repository, put it under `rules/` and add it to the
//! workspace members.) Then `src/lib.rs`, here a rule that pays exports and
//! publications, more for bigger plans, and nothing to test accounts:
//!
//! ```
//! use tally_rules_sdk::{Action, ContentKind, Event, Rule, UserTier, Verdict};
//!
//! #[derive(Default)]
//! pub struct PayExports;
//!
//! impl Rule for PayExports {
//!     const NAME: &'static str = "pay-exports";
//!     const VERSION: &'static str = "1.0.0";
//!
//!     fn classify(&self, event: &Event<'_>) -> Verdict {
//!         if event.creator_id.starts_with("test-") {
//!             return Verdict::not_payable("test-creator");
//!         }
//!         if !matches!(event.action, Action::Export | Action::Publish) {
//!             return Verdict::not_payable("not-an-export");
//!         }
//!         let base = match event.content_kind {
//!             ContentKind::Video => 40_000,
//!             ContentKind::Template | ContentKind::Image => 20_000,
//!             ContentKind::Audio | ContentKind::Font => 5_000,
//!         };
//!         let percent = match event.user_tier {
//!             UserTier::Free => 50,
//!             UserTier::Pro => 100,
//!             UserTier::Teams | UserTier::Enterprise => 150,
//!         };
//!         Verdict::payable(base * percent / 100)
//!     }
//! }
//!
//! tally_rules_sdk::export_rule!(PayExports);
//! # fn main() {
//! #     use tally_rules_sdk::testing::{classify_one, event};
//! #     let export = event().action(Action::Export).build();
//! #     assert_eq!(classify_one(&PayExports, &export), Verdict::payable(20_000));
//! # }
//! ```
//!
//! What a rule must know:
//!
//! - **Only the event counts.** [`Rule::classify`] must depend on nothing but
//!   its argument: there is no clock, randomness, file or network access inside
//!   the sandbox (the `std` functions for them fail or panic on
//!   `wasm32-unknown-unknown`). Nor may it depend on state kept from one batch
//!   to the next: the host may classify batches in any order, on any number of
//!   instances. The rule value is built with [`Default`] once per batch.
//! - **Amounts are integers.** Rates are `i64` micro-units of currency
//!   (1 unit = 1,000,000 micros). Use integer arithmetic, so results are exact
//!   and identical everywhere; write `base * percent / 100`, not `base as f64 *
//!   1.2`.
//! - **Verdicts follow two rules**, or the batch (and so the run) fails with a
//!   message: a rate is never negative, and it is 0 when the event is not
//!   payable. [`Verdict::not_payable`] takes care of the second.
//! - **Reasons are codes.** A reason is a short, stable `&'static str` such as
//!   `view-only`; reports group events by it. A batch may use at most 65,536
//!   distinct reasons.
//! - **A panic fails the run.** A rule that panics (an out-of-range index, an
//!   `unwrap` of `None`) aborts the whole batch, and the run fails. The SDK
//!   hands the panic's message and location to Tally before the rule stops,
//!   and Tally finds the event it panicked on, so the error reads
//!   `raised a panic at src/lib.rs:48:21: "no rate for tier" on event "e-1"
//!   at events/part-3.jsonl line 1042`; `tally explain --event e-1` shows it
//!   too. Return a verdict instead where you can.
//! - **Fast is easy.** `classify` is called once per event with a borrowing
//!   [`Event`]; the SDK allocates nothing per event. Avoid allocating in
//!   `classify` (no `format!`, no `to_string`) and it stays that way. A rule
//!   pays only for the fields it reads: `tally rule build` has `classify`
//!   inlined into the SDK's loop over the batch, and the compiler then drops
//!   the loads of every other field. That needs `classify` to stay modest in
//!   size; move long, rarely taken branches into functions of their own.
//!
//! # Testing a rule
//!
//! [`testing`] runs a rule natively. [`testing::event`] starts a valid event
//! with sensible defaults that a test adjusts; [`testing::classify_one`] and
//! [`testing::classify_batch`] put events through the same columnar encoding and
//! the same code as the WebAssembly export, so they also catch verdicts that
//! would fail in the host.
//!
//! A rule's tests go next to it, in a `#[cfg(test)] mod tests` of `src/lib.rs`
//! that starts with `use super::*;`. Each of the two functions below would be a
//! `#[test]` there:
//!
//! ```
//! # use tally_rules_sdk::{Action, ContentKind, Event, Rule, UserTier, Verdict};
//! # #[derive(Default)]
//! # pub struct PayExports;
//! # impl Rule for PayExports {
//! #     const NAME: &'static str = "pay-exports";
//! #     const VERSION: &'static str = "1.0.0";
//! #     fn classify(&self, event: &Event<'_>) -> Verdict {
//! #         if event.creator_id.starts_with("test-") {
//! #             return Verdict::not_payable("test-creator");
//! #         }
//! #         if !matches!(event.action, Action::Export | Action::Publish) {
//! #             return Verdict::not_payable("not-an-export");
//! #         }
//! #         let base = match event.content_kind {
//! #             ContentKind::Video => 40_000,
//! #             ContentKind::Template | ContentKind::Image => 20_000,
//! #             ContentKind::Audio | ContentKind::Font => 5_000,
//! #         };
//! #         let percent = match event.user_tier {
//! #             UserTier::Free => 50,
//! #             UserTier::Pro => 100,
//! #             UserTier::Teams | UserTier::Enterprise => 150,
//! #         };
//! #         Verdict::payable(base * percent / 100)
//! #     }
//! # }
//! use tally_rules_sdk::testing::{classify_batch, classify_one, event};
//!
//! fn pays_a_pro_video_export() {
//!     let export = event()
//!         .content_kind(ContentKind::Video)
//!         .action(Action::Export)
//!         .build();
//!     assert_eq!(classify_one(&PayExports, &export), Verdict::payable(40_000));
//! }
//!
//! fn test_creators_come_first() {
//!     let events = [
//!         event().creator_id("test-ann").action(Action::Publish).build(),
//!         event().action(Action::View).build(),
//!     ];
//!     assert_eq!(
//!         classify_batch(&PayExports, &events),
//!         Ok(vec![
//!             Verdict::not_payable("test-creator"),
//!             Verdict::not_payable("not-an-export"),
//!         ]),
//!     );
//! }
//! # fn main() {
//! #     pays_a_pro_video_export();
//! #     test_creators_come_first();
//! # }
//! ```
//!
//! The reference rules under `rules/` (`creator-pay-v1`, `creator-pay-v2`) have
//! complete test modules that cover every clause of their policies.
//!
//! Run the tests with:
//!
//! ```sh
//! cargo test -p my-rule
//! ```
//!
//! # Building and running a rule
//!
//! The `tally` command builds the crate into a rule component, shows what it
//! reports about itself, and runs it over events:
//!
//! ```sh
//! tally rule build rules/my-rule --out my-rule.wasm
//! tally rule inspect my-rule.wasm
//! tally run --input events/ --rule my-rule.wasm --out out/
//! ```
//!
//! - `tally rule build` compiles the crate for `wasm32-unknown-unknown` in
//!   release mode, with link-time optimization, `panic = "abort"` and
//!   WebAssembly SIMD, and turns the module into a WebAssembly component of the
//!   `tally:rules/rule` world. It needs the target: `rustup target add
//!   wasm32-unknown-unknown`. The build is reproducible: the same sources and
//!   toolchain give the same component, byte for byte, wherever they are
//!   checked out (`RUSTFLAGS` from the environment are not used).
//! - `tally rule inspect` loads the component and shows what its `metadata`
//!   export reports ([`Rule::NAME`], [`Rule::VERSION`] and the SDK version,
//!   [`SDK_VERSION`]), so you can check what you built before running it.
//! - `tally run` reads the events under `events/`, classifies the valid,
//!   deduplicated ones with the rule, batch by batch, and writes the results
//!   under `out/`, stamped with the content hash of the rule component.
//!
//! # How it works
//!
//! The contract between the host and a rule is the WIT package
//! `tally:rules@1.0.0` (`wit/rules.wit`). Events cross the sandbox boundary in
//! batches, as columns: fixed-width fields in bulk, enumerations as one byte,
//! creators, templates and brands dictionary-encoded. [`export_rule!`] generates
//! the component's `metadata` and `classify` exports; `classify` hands the batch
//! to [`batch::classify`], which checks it once up front (a malformed batch is
//! an error, never a panic), calls [`Rule::classify`] with a borrowing
//! [`Event`] per event, and returns the verdicts as columns. Building an
//! `Event` cannot fail after that check, so the compiler leaves out the loads
//! of fields a rule never reads: a rule pays only for what it looks at. The
//! [`batch`] module documents the format, for code that needs to produce or
//! check batches itself.

#![warn(missing_docs)]

// The generated bindings name this crate by its absolute path, which must also
// resolve inside the crate itself.
extern crate self as tally_rules_sdk;

pub mod batch;
mod event;
pub mod testing;
mod verdict;

pub use event::{Action, ContentKind, Event, UserTier};
pub use verdict::Verdict;

/// The version of this SDK, reported by every rule built with it.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A classification rule.
///
/// Implement it for a type (usually a unit struct), give the rule a name and a
/// version, and export it with [`export_rule!`]. See the [crate
/// documentation](crate) for a complete example.
pub trait Rule: Default {
    /// The rule's name, for example `creator-pay`. Versions of one policy share
    /// a name.
    const NAME: &'static str;

    /// The rule's semantic version, for example `1.0.0`.
    const VERSION: &'static str;

    /// Decides about one event.
    ///
    /// This must depend on nothing but `event` (see the crate documentation).
    fn classify(&self, event: &Event<'_>) -> Verdict;
}

/// Exports a [`Rule`] as the rule component's `metadata` and `classify`
/// functions.
///
/// Call it once per rule crate, with the rule type:
///
/// ```
/// # use tally_rules_sdk::{Event, Rule, Verdict};
/// #[derive(Default)]
/// pub struct PayNothing;
///
/// impl Rule for PayNothing {
///     const NAME: &'static str = "pay-nothing";
///     const VERSION: &'static str = "0.1.0";
///
///     fn classify(&self, _event: &Event<'_>) -> Verdict {
///         Verdict::not_payable("unpaid")
///     }
/// }
///
/// tally_rules_sdk::export_rule!(PayNothing);
/// ```
///
/// The exported functions are only emitted when compiling for WebAssembly, so
/// that a native build (tests, or a program that links several rules) has no
/// clashing symbols.
///
/// The `unsafe` glue of the component ABI comes from this crate's macros, and
/// rustc does not report a crate's `unsafe_code` lint for code expanded from
/// another crate's macros: a rule crate can `#![forbid(unsafe_code)]`, as the
/// reference rules do. (The expansion deliberately carries no
/// `#[allow(unsafe_code)]`, which `forbid` would reject.)
#[macro_export]
macro_rules! export_rule {
    ($rule:ty) => {
        const _: () = {
            #[allow(dead_code)]
            struct TallyRuleExport;

            impl $crate::__private::Guest for TallyRuleExport {
                fn metadata() -> $crate::batch::RuleInfo {
                    $crate::batch::metadata::<$rule>()
                }

                fn classify(
                    batch: $crate::batch::EventBatch,
                ) -> $crate::__private::Result<$crate::batch::Verdicts, $crate::__private::String>
                {
                    $crate::__private::classify::<$rule>(batch)
                }
            }

            #[cfg(target_arch = "wasm32")]
            $crate::__private::bindings::export!(
                TallyRuleExport with_types_in $crate::__private::bindings
            );
        };
    };
}

/// What [`export_rule!`] expands to refers to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use std::result::Result;
    pub use std::string::String;

    pub use bindings::exports::tally::rules::classifier::Guest;
    pub use wit_bindgen::rt;

    /// The component's `classify` export.
    pub fn classify<R: crate::Rule>(
        batch: crate::batch::EventBatch,
    ) -> Result<crate::batch::Verdicts, String> {
        #[cfg(target_arch = "wasm32")]
        report_panics();
        crate::batch::classify(&R::default(), &batch)
    }

    /// Installs, once per instance, a panic hook that hands the panic's
    /// message and location to the host (`tally:diagnostics/panic`) before
    /// the rule traps: on `wasm32-unknown-unknown` a panic otherwise ends as
    /// a bare `unreachable` trap, its message lost.
    #[cfg(target_arch = "wasm32")]
    fn report_panics() {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            std::panic::set_hook(std::boxed::Box::new(|info| {
                let message = info
                    .payload_as_str()
                    .unwrap_or("(a panic whose payload is not a string)");
                let (file, line, column) = info
                    .location()
                    .map_or(("", 0, 0), |l| (l.file(), l.line(), l.column()));
                bindings::tally::diagnostics::panic::report(message, file, line, column);
            }));
        });
    }

    /// Bindings generated from `wit/rules.wit` and `wit/diagnostics/`: the
    /// component ABI glue, the only `unsafe` code of the SDK.
    #[allow(unsafe_code, missing_docs)]
    pub mod bindings {
        wit_bindgen::generate!({
            path: ["../wit", "../wit/diagnostics"],
            world: "tally:diagnostics/reporting-rule",
            pub_export_macro: true,
            default_bindings_module: "::tally_rules_sdk::__private::bindings",
            runtime_path: "::tally_rules_sdk::__private::rt",
        });
    }
}
