//! Rules: loading a rule component, checking it, and running it in the sandbox.
//!
//! This is the one place in the host that generates bindings for the rule
//! interface (`wit/rules.wit`). A [`Rule`] is a compiled component addressed by
//! the blake3 hash of its bytes. Every call runs in a fresh store and instance,
//! with no imports but the panic report, a memory cap and a fuel budget, so a batch's verdicts depend
//! on nothing but the batch, and a misbehaving rule fails cleanly with an error
//! that names it. Turning a rule crate into a component is in [`build`]; the
//! checks on what a rule says about itself are in [`metadata`]; text a rule
//! supplies is shown to people only through [`shown`].
//!
//! A rule may import one thing, the host's [`PANIC_INTERFACE`]
//! (`wit/diagnostics/panic.wit`), through which a rule built with the SDK
//! reports its panic's message and location just before it traps; the store
//! of the call keeps the last report (bounded), and a call that traps names
//! it. Which event of a batch a failure comes from is found by the caller,
//! which knows the events (see `classify`), and attached with
//! [`RuleError::OnEvent`].

pub mod build;
pub mod metadata;
mod text;

pub use metadata::{
    BadMetadata, MAX_VERSION_BYTES, VersionError, parse_version, valid_name, valid_version,
    version_order,
};
pub use text::{SHOWN_CHARS, shown, shown_lines, shown_name};

use std::fmt;
use std::path::{Path, PathBuf};
use wasmtime::component::{Component, Linker, WasmStr};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig, ResourceLimiter,
    Store, StoreContextMut, Trap,
};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "rule",
    });
}

pub use bindings::exports::tally::rules::classifier::{
    DictColumn, EventBatch, RuleInfo, StringColumn, Verdicts,
};

/// The WIT package and world a rule component must implement.
pub const WORLD: &str = "tally:rules/rule@1.0.0";

/// The one thing a rule component exports: the classifier interface of
/// [`WORLD`], with exactly this name and version.
pub const INTERFACE: &str = "tally:rules/classifier@1.0.0";

/// The functions of [`INTERFACE`].
const FUNCTIONS: [&str; 2] = ["metadata", "classify"];

/// The one thing a rule may import: the host's interface through which a
/// rule reports a panic before it traps (`wit/diagnostics/panic.wit`). Rules
/// built with the SDK import it; rules that import nothing run as well.
pub const PANIC_INTERFACE: &str = "tally:diagnostics/panic@1.0.0";

/// The most bytes of a panic message the host keeps (the start of it; its
/// full length is kept too).
pub const MAX_PANIC_MESSAGE_BYTES: usize = 4_096;
/// The most bytes of a panic's file name the host keeps.
pub const MAX_PANIC_FILE_BYTES: usize = 256;

/// The most distinct reasons a rule may return for one batch.
pub const MAX_REASONS_PER_BATCH: usize = 1_024;
/// The most distinct reasons a rule may use over a run (far below the
/// `u32` that numbers them).
pub const MAX_REASONS_PER_RUN: usize = 4_096;
/// The longest reason a rule may return, in bytes.
pub const MAX_REASON_BYTES: usize = 128;

/// The most core instances, linear memories and tables one instance of a rule
/// may have (a rule built by `tally rule build` needs far fewer). Memories
/// and tables are counted when the rule is loaded, core instances when it is
/// instantiated (the first time, to read its metadata, is part of loading).
pub const MAX_CORE_INSTANCES: u32 = 8;
/// See [`MAX_CORE_INSTANCES`].
pub const MAX_MEMORIES: u32 = 4;
/// See [`MAX_CORE_INSTANCES`].
pub const MAX_TABLES: u32 = 4;
/// What one table element counts for against the memory cap, in bytes (the
/// host keeps a pointer per element).
const TABLE_ELEMENT_BYTES: usize = 8;

/// How much a rule may use per call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Cap on the rule instance's memory, in bytes: all its linear memories
    /// and tables together.
    pub memory_bytes: usize,
    /// Fuel (roughly, WebAssembly instructions) allowed per event of a batch.
    pub fuel_per_event: u64,
    /// Fuel allowed per byte of a batch, as copied into the rule's memory
    /// (see [`batch_bytes`]).
    pub fuel_per_byte: u64,
    /// Fuel allowed per call on top of the per-event and per-byte budgets.
    pub fuel_per_call: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 256 << 20,
            fuel_per_event: 20_000,
            fuel_per_byte: 64,
            fuel_per_call: 50_000_000,
        }
    }
}

impl Limits {
    /// The fuel budget of a call given `events` events that take `bytes`
    /// bytes: `fuel_per_call + fuel_per_event × events + fuel_per_byte × bytes`.
    pub fn budget(&self, events: u64, bytes: u64) -> Budget {
        Budget {
            per_call: self.fuel_per_call,
            per_event: self.fuel_per_event,
            events,
            per_byte: self.fuel_per_byte,
            bytes,
        }
    }
}

/// The fuel a call may spend, with what it is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub per_call: u64,
    pub per_event: u64,
    /// Events in the batch (0 for a call without one).
    pub events: u64,
    pub per_byte: u64,
    /// Bytes of the batch (0 for a call without one).
    pub bytes: u64,
}

impl Budget {
    /// The whole budget (saturating: a budget never wraps to a small one).
    pub fn total(&self) -> u64 {
        self.per_call
            .saturating_add(self.per_event.saturating_mul(self.events))
            .saturating_add(self.per_byte.saturating_mul(self.bytes))
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "budget {} = {} per call + {} per event × {} events + {} per byte × {} bytes",
            self.total(),
            self.per_call,
            self.per_event,
            self.events,
            self.per_byte,
            self.bytes
        )
    }
}

/// The size of a batch as copied into the rule's memory, in bytes: every
/// column's elements (strings and their offsets, dictionary keys and values,
/// timestamps, codes).
pub fn batch_bytes(batch: &EventBatch) -> u64 {
    fn strings(column: &StringColumn) -> usize {
        4 * column.offsets.len() + column.bytes.len()
    }
    fn dict(column: &DictColumn) -> usize {
        4 * column.keys.len() + strings(&column.values)
    }
    let bytes = strings(&batch.event_id)
        + 8 * (batch.occurred_at.len() + batch.ingested_at.len())
        + dict(&batch.creator_id)
        + dict(&batch.template_id)
        + dict(&batch.brand_id)
        + batch.content_kind.len()
        + batch.action.len()
        + batch.user_tier.len()
        + batch.country.len();
    bytes as u64
}

/// A short, readable name for a rule in messages: `name@version (hash)`.
#[derive(Debug, Clone)]
pub struct RuleLabel(pub String);

impl fmt::Display for RuleLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The panic a rule reported just before it trapped: the start of its
/// message and where in the rule's source it was raised. All of it is the
/// rule's own text, bounded in length by the host (see
/// [`MAX_PANIC_MESSAGE_BYTES`]) and shown through [`shown`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Panic {
    /// The message, at most [`MAX_PANIC_MESSAGE_BYTES`] of it (cut before a
    /// split character).
    pub message: String,
    /// The message's full length in bytes.
    pub message_bytes: u64,
    /// The source file, at most [`MAX_PANIC_FILE_BYTES`] of it; empty when
    /// the rule did not say.
    pub file: String,
    /// The file name's full length in bytes.
    pub file_bytes: u64,
    /// The line, 0 when the rule did not say.
    pub line: u32,
    /// The column, 0 when the rule did not say.
    pub column: u32,
}

impl Panic {
    /// Keeps the start of a reported message and file name.
    fn new(message: &str, file: &str, line: u32, column: u32) -> Panic {
        Panic {
            message: prefix(message, MAX_PANIC_MESSAGE_BYTES).to_string(),
            message_bytes: message.len() as u64,
            file: prefix(file, MAX_PANIC_FILE_BYTES).to_string(),
            file_bytes: file.len() as u64,
            line,
            column,
        }
    }
}

impl fmt::Display for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not "panicked": that is how the host itself would fail.
        f.write_str("raised a panic")?;
        if !self.file.is_empty() {
            write!(
                f,
                " at {}:{}:{}",
                shown_start(&self.file, self.file_bytes),
                self.line,
                self.column
            )?;
        }
        write!(
            f,
            ": \"{}\"",
            shown_start(&self.message, self.message_bytes)
        )
    }
}

/// The longest start of `text` of at most `max` bytes that ends on a
/// character boundary.
fn prefix(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The start `kept` of a rule-supplied text of `bytes` bytes in all, as
/// [`shown`] shows it, noting the full length when any of it is left out.
fn shown_start(kept: &str, bytes: u64) -> String {
    if bytes <= kept.len() as u64 {
        return shown(kept).into_owned();
    }
    let head: String = kept.chars().take(SHOWN_CHARS).collect();
    format!("{}… ({bytes} bytes in all)", shown(&head))
}

/// What went wrong inside a rule call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The rule trapped (the WebAssembly trap, e.g. `unreachable` or an
    /// out-of-bounds access) without reporting a panic.
    Trap(String),
    /// The rule reported a panic and then trapped.
    Panicked(Box<Panic>),
    /// The rule used up its fuel budget (an endless or too-slow loop).
    OutOfFuel { budget: Budget },
    /// The rule tried to grow its memories and tables, together, past the cap.
    MemoryCap { cap: usize },
    /// The rule returned more distinct reasons than one batch or one run may
    /// use: `scope` says which (`in one batch`, `over the run`).
    TooManyReasons {
        count: usize,
        limit: usize,
        scope: &'static str,
    },
    /// The rule returned a reason longer than [`MAX_REASON_BYTES`]: its
    /// length and its first characters.
    ReasonTooLong { bytes: usize, start: String },
    /// The rule returned an error.
    Returned(String),
    /// The rule returned malformed verdicts (wrong count, bad reason index...).
    BadVerdicts(String),
    /// Any other failure of the runtime.
    Runtime(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Trap(t) => write!(f, "trapped: {}", shown(t)),
            Problem::Panicked(panic) => panic.fmt(f),
            Problem::OutOfFuel { budget } => {
                write!(f, "ran out of fuel ({budget}): it loops or is far too slow")
            }
            Problem::MemoryCap { cap } => {
                write!(
                    f,
                    "tried to use more than its memory cap of {} MiB (all its linear memories and tables together)",
                    cap >> 20
                )
            }
            Problem::TooManyReasons {
                count,
                limit,
                scope,
            } => write!(
                f,
                "exceeded the limit of {limit} distinct reasons {scope} ({count} reasons)"
            ),
            Problem::ReasonTooLong { bytes, start } => write!(
                f,
                "returned a reason of {bytes} bytes, over the limit of {MAX_REASON_BYTES} bytes: \"{}…\"",
                shown(start)
            ),
            Problem::Returned(m) => write!(f, "returned an error: \"{}\"", shown(m)),
            Problem::BadVerdicts(m) => write!(f, "returned malformed verdicts: {}", shown(m)),
            Problem::Runtime(m) => write!(f, "failed: {}", shown(m)),
        }
    }
}

/// The event a failed call was narrowed down to: the first event of its
/// batch that the rule fails on, and where it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedEvent {
    /// Its `event_id`.
    pub event_id: String,
    /// Index of its input file in the run's sorted input list.
    pub source: u32,
    /// Its input file and whether that is Parquet, once named with
    /// [`RuleError::naming_inputs`].
    pub file: Option<(String, bool)>,
    /// Its line (JSON, from 1) or row (Parquet, from 0) in that file.
    pub position: u64,
    /// Whether the rule fails on the event in a batch of its own too; if
    /// not, the rule fails on it only after the events before it in its
    /// batch (it keeps state from one event to the next).
    pub alone: bool,
}

impl fmt::Display for FailedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event \"{}\" at ", shown(&self.event_id))?;
        match &self.file {
            Some((file, false)) => write!(f, "{} line {}", shown(file), self.position)?,
            Some((file, true)) => write!(f, "{} row {}", shown(file), self.position)?,
            None => write!(
                f,
                "input file {} line or row {}",
                self.source, self.position
            )?,
        }
        if !self.alone {
            f.write_str(
                " (in a batch of its own the event passes: the rule fails on it only after the events before it)",
            )?;
        }
        Ok(())
    }
}

/// What can go wrong with a rule.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// The file could not be read.
    #[error("cannot read rule {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The bytes are a core WebAssembly module, not a component.
    #[error(
        "rule {path} (blake3 {hash}) is a core WebAssembly module, not a component; build rules with `tally rule build`"
    )]
    CoreModule { path: PathBuf, hash: String },
    /// The bytes are not a valid component.
    #[error(
        "rule {path} (blake3 {hash}) is not a valid component: {}",
        shown(message)
    )]
    Invalid {
        path: PathBuf,
        hash: String,
        message: String,
    },
    /// The component imports something other than [`PANIC_INTERFACE`].
    #[error(
        "rule {path} (blake3 {hash}) imports {}; a rule must import nothing but {PANIC_INTERFACE} (build it for wasm32-unknown-unknown with the rules SDK)",
        names(imports)
    )]
    Imports {
        path: PathBuf,
        hash: String,
        imports: Vec<String>,
    },
    /// The component does not implement the rule world.
    #[error(
        "rule {path} (blake3 {hash}) does not implement {WORLD}: {}",
        shown(message)
    )]
    WrongWorld {
        path: PathBuf,
        hash: String,
        message: String,
    },
    /// The component exports something other than exactly [`INTERFACE`]
    /// (another version of it, say).
    #[error(
        "rule {path} (blake3 {hash}) exports {}; a rule implements {WORLD} and exports exactly {INTERFACE} (functions {})",
        names(exports),
        FUNCTIONS.join(" and ")
    )]
    WrongExports {
        path: PathBuf,
        hash: String,
        exports: Vec<String>,
    },
    /// The component has more linear memories or tables than a rule may.
    #[error(
        "rule {path} (blake3 {hash}) has {memories} linear memories and {tables} tables; a rule may have at most {MAX_MEMORIES} memories and {MAX_TABLES} tables (their sizes together are capped by the memory cap)"
    )]
    TooManyMemories {
        path: PathBuf,
        hash: String,
        memories: u32,
        tables: u32,
    },
    /// The metadata the rule reports is unusable.
    #[error("rule {path} (blake3 {hash}) reports {problem}")]
    BadMetadata {
        path: PathBuf,
        hash: String,
        problem: BadMetadata,
    },
    /// A call into the rule failed.
    #[error("rule {rule} {problem} ({call})")]
    Call {
        rule: RuleLabel,
        call: String,
        problem: Problem,
    },
    /// A call into the rule failed, and the event it failed on was found:
    /// `problem` is what the rule did on that event.
    #[error("rule {rule} {problem} on {event} ({call})")]
    OnEvent {
        rule: RuleLabel,
        call: String,
        problem: Problem,
        event: Box<FailedEvent>,
    },
}

impl RuleError {
    /// The problem inside a failed call, if this is one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            RuleError::Call { problem, .. } | RuleError::OnEvent { problem, .. } => Some(problem),
            _ => None,
        }
    }

    /// The event a failed call was narrowed down to, if it was.
    pub fn event(&self) -> Option<&FailedEvent> {
        match self {
            RuleError::OnEvent { event, .. } => Some(event),
            _ => None,
        }
    }

    /// Names the input file of the event a failed call was narrowed down
    /// to: `sources` holds, for each input file of the run in order, its
    /// name and whether it is Parquet (as `commit::sources` gives them).
    pub fn naming_inputs(mut self, sources: &[(String, bool)]) -> RuleError {
        if let RuleError::OnEvent { event, .. } = &mut self
            && let Some(source) = sources.get(event.source as usize)
        {
            event.file = Some(source.clone());
        }
        self
    }
}

/// Names from a component (imports, exports) for a message: each passed
/// through [`shown`], at most 16 of them.
fn names(list: &[String]) -> String {
    const SHOWN: usize = 16;
    if list.is_empty() {
        return "nothing".to_string();
    }
    let mut text: Vec<String> = list
        .iter()
        .take(SHOWN)
        .map(|name| format!("\"{}\"", shown(name)))
        .collect();
    if list.len() > SHOWN {
        text.push(format!("and {} more", list.len() - SHOWN));
    }
    text.join(", ")
}

/// Store state: the memory cap, what the instance's memories and tables take
/// together so far, and whether the rule hit the cap.
///
/// The limiter sees every memory and table of the store (one store per
/// call), at their creation (from 0 to their initial size) and at each
/// growth, and sums them: however many core instances a component holds,
/// their memories and tables share the one cap.
struct Host {
    cap: usize,
    used: usize,
    hit_cap: bool,
    /// The last panic the rule reported in this call.
    panic: Option<Panic>,
}

impl Host {
    fn new(cap: usize) -> Host {
        Host {
            cap,
            used: 0,
            hit_cap: false,
            panic: None,
        }
    }

    /// Accounts for a memory or table growing from `current` to `desired`
    /// bytes. Growth past the declared maximum is refused without being
    /// counted (the runtime refuses it after asking); growth past the cap
    /// ends the call.
    fn grow(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|maximum| desired > maximum) {
            return Ok(false);
        }
        let used = self.used.saturating_add(desired.saturating_sub(current));
        if used > self.cap {
            self.hit_cap = true;
            return Err(wasmtime::Error::msg("memory cap exceeded"));
        }
        self.used = used;
        Ok(true)
    }
}

impl ResourceLimiter for Host {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(current, desired, maximum)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let bytes = |elements: usize| elements.saturating_mul(TABLE_ELEMENT_BYTES);
        self.grow(bytes(current), bytes(desired), maximum.map(bytes))
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES as usize
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES as usize
    }

    fn tables(&self) -> usize {
        MAX_TABLES as usize
    }
}

/// A loaded, checked rule component, ready to classify batches (shareable
/// between threads).
pub struct Rule {
    /// The blake3 hash of the component's bytes.
    pub hash: blake3::Hash,
    /// What the rule says about itself.
    pub info: RuleInfo,
    /// Size of the component in bytes.
    pub size: u64,
    limits: Limits,
    engine: Engine,
    pre: bindings::RulePre<Host>,
}

/// Instances of one rule that may run at once: one per worker thread, with
/// room to spare (`--threads` may not exceed it).
pub fn max_instances() -> usize {
    4 * std::thread::available_parallelism().map_or(16, |n| n.get().max(16))
}
/// Bytes of each linear memory kept resident between instances.
const KEEP_RESIDENT: usize = 32 << 20;

/// The engine settings every rule runs with. Floating point is made
/// deterministic (NaNs canonicalized, relaxed SIMD deterministic) and fuel
/// metering is on, so a runaway rule stops at the same point on every machine.
pub fn engine() -> Engine {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .consume_fuel(true)
        .cranelift_nan_canonicalization(true)
        .relaxed_simd_deterministic(true)
        .cranelift_opt_level(OptLevel::Speed);
    // A fresh instance per batch: the pooling allocator reuses instance slots
    // and keeps the pages of linear memory it hands out resident (zeroing
    // them on reuse), instead of mapping and faulting in new memory each time.
    // The pool holds, for every instance that may run at once, as many core
    // instances, memories and tables as one rule may have ([`Rule`] refuses a
    // component with more, and each store's limiter counts them too), so a
    // rule never fails for how many threads happen to run it.
    let slots = max_instances() as u32;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .total_core_instances(slots * MAX_CORE_INSTANCES)
        .total_memories(slots * MAX_MEMORIES)
        .total_tables(slots * MAX_TABLES)
        .max_memories_per_module(1)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(1 << 16);
    let mut pooled = config.clone();
    pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    // The pool reserves address space up front; where that is refused (a
    // small `ulimit -v`, say), instances are allocated one by one instead.
    Engine::new(&pooled)
        .or_else(|_| Engine::new(&config))
        .expect("the engine configuration is valid")
}

/// A key for compiled code: a hash of everything that decides whether code
/// compiled by one engine can be loaded by another (wasmtime's version, the
/// target and its CPU features, and the engine settings), 16 hex digits.
/// Compiled code is only ever reused under the same key.
pub fn engine_key(engine: &Engine) -> String {
    use std::hash::Hash;
    /// Feeds everything hashed into blake3, so the key does not depend on
    /// the standard library's hasher.
    struct Blake3Hasher(blake3::Hasher);
    impl std::hash::Hasher for Blake3Hasher {
        fn finish(&self) -> u64 {
            let hash = self.0.finalize();
            u64::from_le_bytes(hash.as_bytes()[..8].try_into().unwrap_or_default())
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = Blake3Hasher(blake3::Hasher::new());
    hasher.0.update(b"tally compiled rule code, v1\0");
    hasher.0.update(std::env::consts::ARCH.as_bytes());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.0.finalize().to_hex()[..16].to_string()
}

/// Compiles component bytes with `engine` (binary format only; a core module
/// is refused with a hint). `path` and `hash` are for messages.
pub fn compile(
    engine: &Engine,
    path: &Path,
    hash: &blake3::Hash,
    bytes: &[u8],
) -> Result<Component, RuleError> {
    let hex = || hash.to_hex().to_string();
    if is_core_module(bytes) {
        return Err(RuleError::CoreModule {
            path: path.to_path_buf(),
            hash: hex(),
        });
    }
    // Binary only: `Component::new` would also take the text format, hashing
    // the text and answering garbage with text-parser errors.
    Component::from_binary(engine, bytes).map_err(|e| RuleError::Invalid {
        path: path.to_path_buf(),
        hash: hex(),
        message: format!("{e:#}"),
    })
}

/// Whether bytes are a core module (not a component), from the binary header.
fn is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}

/// The short form of a hash used in messages.
pub fn short_hash(hash: &blake3::Hash) -> String {
    hash.to_hex()[..12].to_string()
}

impl Rule {
    /// Reads, hashes, compiles and checks a rule component.
    pub fn load(path: &Path, limits: Limits) -> Result<Rule, RuleError> {
        let bytes = std::fs::read(path).map_err(|source| RuleError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Rule::from_bytes(path, &bytes, limits)
    }

    /// Compiles and checks a rule component from its bytes (`path` is for messages).
    pub fn from_bytes(path: &Path, bytes: &[u8], limits: Limits) -> Result<Rule, RuleError> {
        let hash = blake3::hash(bytes);
        let component = compile(&engine(), path, &hash, bytes)?;
        Rule::from_component(path, hash, bytes.len() as u64, &component, limits)
    }

    /// Checks an already compiled component and reads its metadata: it must
    /// import nothing but [`PANIC_INTERFACE`] and implement the world. `hash` and `size` describe the
    /// bytes it was compiled from (the caller vouches for them); `path` is for
    /// messages. The rule runs on the component's own engine, which must have
    /// been made by [`engine`].
    pub fn from_component(
        path: &Path,
        hash: blake3::Hash,
        size: u64,
        component: &Component,
        limits: Limits,
    ) -> Result<Rule, RuleError> {
        let path = path.to_path_buf();
        let hex = hash.to_hex().to_string();
        let engine = component.engine().clone();
        let imports = imports(&engine, component);
        if imports.iter().any(|name| name != PANIC_INTERFACE) {
            return Err(RuleError::Imports {
                path,
                hash: hex,
                imports,
            });
        }
        // Exactly the interface, by name and version: the runtime would also
        // accept a semver-compatible version (`@1.1.0`) for `@1.0.0`, and a
        // rule of another version must not be run and stamped as this one.
        if !exports_exactly_the_interface(&engine, component) {
            return Err(RuleError::WrongExports {
                path,
                hash: hex,
                exports: exports(&engine, component),
            });
        }
        // Known before anything runs, whatever allocator the engine uses: a
        // component that imports no modules (none to be given at
        // instantiation) says what it instantiates.
        let (memories, tables) = component
            .resources_required()
            .map_or((u32::MAX, u32::MAX), |r| (r.num_memories, r.num_tables));
        if memories > MAX_MEMORIES || tables > MAX_TABLES {
            return Err(RuleError::TooManyMemories {
                path,
                hash: hex,
                memories,
                tables,
            });
        }
        let mut linker = Linker::<Host>::new(&engine);
        let wrong_world = |e: wasmtime::Error| RuleError::WrongWorld {
            path: path.clone(),
            hash: hex.clone(),
            message: format!("{e:#}"),
        };
        define_panic_report(&mut linker).map_err(wrong_world)?;
        // A component that imports the interface with other functions or
        // types than the host's is refused here.
        let pre = linker.instantiate_pre(component).map_err(wrong_world)?;
        let pre = bindings::RulePre::new(pre).map_err(wrong_world)?;
        let mut rule = Rule {
            hash,
            info: RuleInfo {
                name: String::new(),
                version: String::new(),
                sdk_version: String::new(),
            },
            size,
            limits,
            engine,
            pre,
        };
        let info = rule.call("metadata", rule.limits.budget(0, 0), |rule, store| {
            rule.tally_rules_classifier().call_metadata(store)
        })?;
        metadata::check(&info).map_err(|problem| RuleError::BadMetadata {
            path,
            hash: hex,
            problem,
        })?;
        rule.info = info;
        Ok(rule)
    }

    /// `name@version (hash)`, for messages.
    pub fn label(&self) -> RuleLabel {
        RuleLabel(format!(
            "{}@{} (blake3 {})",
            self.info.name,
            self.info.version,
            short_hash(&self.hash)
        ))
    }

    /// Classifies one batch in a fresh instance and checks the verdicts' shape.
    /// `batch_index` is for messages.
    pub fn classify(&self, batch: &EventBatch, batch_index: usize) -> Result<Verdicts, RuleError> {
        let events = batch.occurred_at.len();
        let call = format!("batch {batch_index}, {events} events");
        let budget = self.limits.budget(events as u64, batch_bytes(batch));
        let returned = self.call(&call, budget, |rule, store| {
            rule.tally_rules_classifier().call_classify(store, batch)
        })?;
        let fail = |problem| RuleError::Call {
            rule: self.label(),
            call: call.clone(),
            problem,
        };
        let verdicts = returned.map_err(|m| fail(Problem::Returned(m)))?;
        check_reasons(&verdicts.reasons).map_err(fail)?;
        check_verdicts(&verdicts, events).map_err(|m| fail(Problem::BadVerdicts(m)))?;
        Ok(verdicts)
    }

    /// Runs `f` against a fresh instance with the memory cap and the fuel
    /// `budget`.
    fn call<R>(
        &self,
        what: &str,
        budget: Budget,
        f: impl FnOnce(&bindings::Rule, &mut Store<Host>) -> wasmtime::Result<R>,
    ) -> Result<R, RuleError> {
        let mut store = Store::new(&self.engine, Host::new(self.limits.memory_bytes));
        store.limiter(|host| host);
        let outcome = store
            .set_fuel(budget.total())
            .and_then(|()| self.pre.instantiate(&mut store))
            .and_then(|rule| f(&rule, &mut store));
        outcome.map_err(|e| {
            let problem = if store.data().hit_cap {
                Problem::MemoryCap {
                    cap: self.limits.memory_bytes,
                }
            } else {
                match e.downcast_ref::<Trap>() {
                    Some(Trap::OutOfFuel) => Problem::OutOfFuel { budget },
                    Some(trap) => match store.data_mut().panic.take() {
                        Some(panic) => Problem::Panicked(Box::new(panic)),
                        None => Problem::Trap(trap.to_string()),
                    },
                    None => Problem::Runtime(format!("{e:#}")),
                }
            };
            let rule = if self.info.name.is_empty() {
                RuleLabel(format!("(blake3 {})", short_hash(&self.hash)))
            } else {
                self.label()
            };
            RuleError::Call {
                rule,
                call: what.to_string(),
                problem,
            }
        })
    }
}

/// Defines [`PANIC_INTERFACE`] in `linker`: its `report` keeps the start of
/// the message and file name in the store. The strings are read in place
/// (lifting them costs the rule fuel by their length), and only the start of
/// each is copied, so a rule cannot make the host hold more than a few KiB.
fn define_panic_report(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    linker.instance(PANIC_INTERFACE)?.func_wrap(
        "report",
        |mut store: StoreContextMut<'_, Host>,
         (message, file, line, column): (WasmStr, WasmStr, u32, u32)| {
            let panic = {
                let message = message.to_str(&store)?;
                let file = file.to_str(&store)?;
                Panic::new(&message, &file, line, column)
            };
            store.data_mut().panic = Some(panic);
            Ok(())
        },
    )
}

/// The names of a component's imports.
fn imports(engine: &Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect()
}

/// The names of a component's exports.
fn exports(engine: &Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect()
}

/// Whether a component exports one thing, an instance named exactly
/// [`INTERFACE`], whose functions are exactly [`FUNCTIONS`] (besides them it
/// may only export the interface's types). The functions' types are checked
/// when the rule's bindings are made.
fn exports_exactly_the_interface(engine: &Engine, component: &Component) -> bool {
    use wasmtime::component::types::ComponentItem;
    let component_type = component.component_type();
    let mut exports = component_type
        .exports(engine)
        .map(|(name, item)| (name, item.ty));
    let (Some((name, ComponentItem::ComponentInstance(instance))), None) =
        (exports.next(), exports.next())
    else {
        return false;
    };
    if name != INTERFACE {
        return false;
    }
    let mut functions = Vec::new();
    for (name, item) in instance.exports(engine) {
        match item.ty {
            ComponentItem::ComponentFunc(_) => functions.push(name),
            ComponentItem::Type(_) => {}
            _ => return false,
        }
    }
    functions.sort_unstable();
    let mut expected = FUNCTIONS;
    expected.sort_unstable();
    functions == expected
}

/// Checks the reasons a rule returned for one batch against the limits: at
/// most [`MAX_REASONS_PER_BATCH`] of them, each at most [`MAX_REASON_BYTES`]
/// long.
fn check_reasons(reasons: &[String]) -> Result<(), Problem> {
    if reasons.len() > MAX_REASONS_PER_BATCH {
        return Err(Problem::TooManyReasons {
            count: reasons.len(),
            limit: MAX_REASONS_PER_BATCH,
            scope: "in one batch",
        });
    }
    match reasons.iter().find(|r| r.len() > MAX_REASON_BYTES) {
        Some(long) => Err(Problem::ReasonTooLong {
            bytes: long.len(),
            start: long.chars().take(MAX_REASON_BYTES).collect(),
        }),
        None => Ok(()),
    }
}

fn check_verdicts(v: &Verdicts, events: usize) -> Result<(), String> {
    for (column, len) in [
        ("payable", v.payable.len()),
        ("rate-micros", v.rate_micros.len()),
        ("reason", v.reason.len()),
    ] {
        if len != events {
            return Err(format!("{len} {column} values for {events} events"));
        }
    }
    // One branch-free sweep; the loop below only runs to say what is wrong.
    let reasons = v.reasons.len();
    let rows = v.payable.iter().zip(&v.rate_micros).zip(&v.reason);
    let fine = rows.fold(true, |fine, ((&payable, &rate), &reason)| {
        fine & (payable <= 1)
            & (rate >= 0)
            & (payable == 1 || rate == 0)
            & (usize::from(reason) < reasons)
    });
    if fine {
        return Ok(());
    }
    for i in 0..events {
        let (payable, rate, reason) = (v.payable[i], v.rate_micros[i], v.reason[i]);
        if payable > 1 {
            return Err(format!("event {i}: payable is {payable}, not 0 or 1"));
        }
        if rate < 0 || (payable == 0 && rate != 0) {
            return Err(format!(
                "event {i}: rate {rate} with payable {payable} (rates are never negative, and 0 when not payable)"
            ));
        }
        if reason as usize >= v.reasons.len() {
            return Err(format!(
                "event {i}: reason index {reason} but only {} reasons",
                v.reasons.len()
            ));
        }
    }
    Ok(())
}

/// What `tally rule inspect` shows about a component.
#[derive(Debug, serde::Serialize)]
pub struct Inspection {
    pub path: PathBuf,
    pub hash: String,
    pub size: u64,
    pub name: Option<String>,
    pub version: Option<String>,
    pub sdk_version: Option<String>,
    pub world: Option<&'static str>,
    pub exports: Vec<String>,
    pub imports: Vec<String>,
}

/// Describes a component without running it through a pipeline. Metadata is
/// read only from a component that imports nothing but [`PANIC_INTERFACE`]
/// and implements the world;
/// otherwise the error says why.
pub fn inspect(path: &Path) -> Result<Inspection, RuleError> {
    let bytes = std::fs::read(path).map_err(|source| RuleError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let hash = blake3::hash(&bytes);
    let engine = engine();
    let mut inspection = Inspection {
        path: path.to_path_buf(),
        hash: hash.to_hex().to_string(),
        size: bytes.len() as u64,
        name: None,
        version: None,
        sdk_version: None,
        world: None,
        exports: Vec::new(),
        imports: Vec::new(),
    };
    if !is_core_module(&bytes)
        && let Ok(component) = Component::from_binary(&engine, &bytes)
    {
        inspection.exports = exports(&engine, &component);
        inspection.imports = imports(&engine, &component);
    }
    let rule = Rule::from_bytes(path, &bytes, Limits::default())?;
    inspection.name = Some(rule.info.name);
    inspection.version = Some(rule.info.version);
    inspection.sdk_version = Some(rule.info.sdk_version);
    inspection.world = Some(WORLD);
    Ok(inspection)
}

#[cfg(test)]
mod tests {
    /// The rule interface is the product's contract: a released version of
    /// `tally:rules` is never edited. If this fails, the WIT file changed: if
    /// that was meant, publish it as a new package version (keeping the old
    /// one importable) and update this hash; if not, revert the change.
    #[test]
    fn the_released_rule_interface_is_unchanged() {
        let wit = include_str!("../../../wit/rules.wit");
        assert!(wit.contains("package tally:rules@1.0.0;"));
        assert_eq!(
            blake3::hash(wit.as_bytes()).to_hex().as_str(),
            "92963dece2301f9f6a231f2c9dc8ff6e1ccb10383710ca2f5c0802fff4f9ab2f",
            "wit/rules.wit changed: released interface versions are never edited"
        );
        // The world name the host reports must be the one the file declares.
        assert!(wit.contains("\nworld rule {"));
        assert_eq!(WORLD, "tally:rules/rule@1.0.0");
    }

    /// The host's diagnostics package is released too: never edited, only
    /// published as a new version (see above).
    #[test]
    fn the_released_diagnostics_interface_is_unchanged() {
        let wit = include_str!("../../../wit/diagnostics/panic.wit");
        assert!(wit.contains("package tally:diagnostics@1.0.0;"));
        assert_eq!(
            blake3::hash(wit.as_bytes()).to_hex().as_str(),
            "81201edfbff341c74792a1c7266438edd160436b83622834b81ae7d25791a71f",
            "wit/diagnostics/panic.wit changed: released interface versions are never edited"
        );
        assert!(wit.contains("\ninterface panic {") && wit.contains("    report: func("));
        assert_eq!(PANIC_INTERFACE, "tally:diagnostics/panic@1.0.0");
    }

    use super::*;

    #[test]
    fn a_reported_panic_is_kept_bounded_and_shown_escaped() {
        let panic = Panic::new("no rate for cr-1", "src/lib.rs", 8, 39);
        assert_eq!(
            Problem::Panicked(Box::new(panic)).to_string(),
            "raised a panic at src/lib.rs:8:39: \"no rate for cr-1\""
        );
        assert_eq!(
            Panic::new("boom", "", 0, 0).to_string(),
            "raised a panic: \"boom\""
        );

        // Escape sequences, a forged line and megabytes, in the message and
        // the file name, cut inside a multi-byte character.
        let message = format!(
            "\u{1b}[2J\u{1b}]0;title\u{7}\nerror: forged{}",
            "é".repeat(3 << 20)
        );
        let file = format!("\u{202e}{}", "f".repeat(1 << 20));
        let panic = Panic::new(&message, &file, 1, 2);
        assert!(panic.message.len() <= MAX_PANIC_MESSAGE_BYTES);
        assert!(panic.message.len() > MAX_PANIC_MESSAGE_BYTES - 4);
        assert!(message.starts_with(&panic.message));
        assert_eq!(panic.message_bytes, message.len() as u64);
        assert_eq!(panic.file.len(), MAX_PANIC_FILE_BYTES);
        assert_eq!(panic.file_bytes, file.len() as u64);
        let shown = panic.to_string();
        assert!(
            shown.starts_with(&format!(
                "raised a panic at \\u{{202e}}{}… ({} bytes in all):1:2: \"\\u{{1b}}[2J\\u{{1b}}]0;title\\u{{7}}\\nerror: forgedéé",
                // The file name's first 256 bytes: U+202E takes 3.
                "f".repeat(MAX_PANIC_FILE_BYTES - 3),
                file.len()
            )),
            "{shown}"
        );
        assert!(
            shown.ends_with(&format!("é… ({} bytes in all)\"", message.len())),
            "{shown}"
        );
        assert!(!shown.chars().any(|c| c.is_control()), "{shown}");
        assert!(shown.len() < 2_000, "{} bytes", shown.len());
    }

    fn verdicts(payable: Vec<u8>, rate: Vec<i64>, reason: Vec<u16>) -> Verdicts {
        Verdicts {
            payable,
            rate_micros: rate,
            reason,
            reasons: vec!["payable".into(), "view-only".into()],
        }
    }

    #[test]
    fn verdict_shape_is_checked() {
        assert!(check_verdicts(&verdicts(vec![1, 0], vec![5, 0], vec![0, 1]), 2).is_ok());
        let bad = [
            (
                verdicts(vec![1], vec![5], vec![0]),
                2,
                "1 payable values for 2 events",
            ),
            (verdicts(vec![2], vec![5], vec![0]), 1, "payable is 2"),
            (verdicts(vec![1], vec![-5], vec![0]), 1, "rate -5"),
            (
                verdicts(vec![0], vec![5], vec![1]),
                1,
                "rate 5 with payable 0",
            ),
            (verdicts(vec![1], vec![5], vec![2]), 1, "reason index 2"),
        ];
        for (v, n, expected) in bad {
            let err = check_verdicts(&v, n).unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn reasons_are_limited_in_number_and_length() {
        let many: Vec<String> = (0..=MAX_REASONS_PER_BATCH)
            .map(|i| format!("r{i}"))
            .collect();
        assert_eq!(check_reasons(&many[..MAX_REASONS_PER_BATCH]), Ok(()));
        let err = check_reasons(&many).unwrap_err();
        assert_eq!(
            err.to_string(),
            "exceeded the limit of 1024 distinct reasons in one batch (1025 reasons)"
        );
        let longest = "x".repeat(MAX_REASON_BYTES);
        assert_eq!(check_reasons(std::slice::from_ref(&longest)), Ok(()));
        let long = format!("{longest}\n\u{1b}[2J{}", "y".repeat(20 << 20));
        let bytes = long.len();
        let message = check_reasons(&["ok".into(), long]).unwrap_err().to_string();
        assert_eq!(
            message,
            format!(
                "returned a reason of {bytes} bytes, over the limit of 128 bytes: \"{longest}…\""
            )
        );
    }

    #[test]
    fn the_memory_cap_covers_every_memory_and_table_together() {
        let mut host = Host::new(100);
        // Three memories created, one grown: they add up.
        assert!(host.memory_growing(0, 30, None).unwrap());
        assert!(host.memory_growing(0, 30, Some(1_000)).unwrap());
        assert!(host.memory_growing(30, 50, None).unwrap());
        assert_eq!(host.used, 80);
        // Growth past a memory's own maximum is refused, and not counted.
        assert!(!host.memory_growing(50, 60, Some(55)).unwrap());
        assert_eq!(host.used, 80);
        // A table of 2 elements counts its bytes too.
        assert!(host.table_growing(0, 2, None).unwrap());
        assert_eq!(host.used, 80 + 2 * TABLE_ELEMENT_BYTES);
        assert!(!host.hit_cap);
        // The next byte of any of them is one too many.
        assert!(host.memory_growing(0, 5, None).is_err());
        assert!(host.hit_cap);
        let mut host = Host::new(100);
        assert!(host.table_growing(0, 13, None).is_err());
        assert!(host.hit_cap);
        assert_eq!(host.used, 0);
    }

    #[test]
    fn the_fuel_budget_grows_with_events_and_bytes() {
        let limits = Limits::default();
        let budget = limits.budget(10, 1_000);
        assert_eq!(budget.total(), 50_000_000 + 20_000 * 10 + 64 * 1_000);
        assert_eq!(
            budget.to_string(),
            "budget 50264000 = 50000000 per call + 20000 per event × 10 events + 64 per byte × 1000 bytes"
        );
        let huge = Limits {
            fuel_per_event: u64::MAX,
            ..limits
        };
        assert_eq!(huge.budget(2, 0).total(), u64::MAX);

        let column = |values: &[&str]| StringColumn {
            offsets: std::iter::once(0)
                .chain(values.iter().scan(0, |end, v| {
                    *end += v.len() as u32;
                    Some(*end)
                }))
                .collect(),
            bytes: values.concat().into_bytes(),
        };
        let long = "t".repeat(60 << 20);
        let dict = |values: &[&str]| DictColumn {
            keys: vec![0, 0],
            values: column(values),
        };
        let batch = EventBatch {
            event_id: column(&["e1", "e2"]),
            occurred_at: vec![0; 2],
            ingested_at: vec![0; 2],
            creator_id: dict(&["c"]),
            template_id: dict(&[long.as_str()]),
            brand_id: dict(&[]),
            content_kind: vec![0; 2],
            action: vec![0; 2],
            user_tier: vec![0; 2],
            country: b"USUS".to_vec(),
        };
        let event_ids = 3 * 4 + 4;
        let timestamps = 2 * 2 * 8;
        let keys = 3 * 2 * 4;
        let values = (2 * 4 + 1) + (2 * 4 + (60 << 20)) + 4;
        let codes = 3 * 2 + 4;
        assert_eq!(
            batch_bytes(&batch),
            (event_ids + timestamps + keys + values + codes) as u64
        );
    }

    /// The hand-written `constant` rule of the end-to-end tests, with
    /// `replace` applied to its text.
    fn constant_rule(replace: &[(&str, &str)]) -> Vec<u8> {
        let mut text = include_str!("../../../tests/fixtures/rules/constant.wat").to_string();
        for (from, to) in replace {
            assert!(text.contains(from), "{from}");
            text = text.replace(from, to);
        }
        wat::parse_str(&text).unwrap()
    }

    #[test]
    fn exports_and_metadata_are_checked_exactly() {
        let load = |bytes: &[u8]| Rule::from_bytes(Path::new("r.wasm"), bytes, Limits::default());
        let rule = load(&constant_rule(&[])).unwrap();
        assert_eq!(rule.info.name, "constant");

        for version in ["1.1.0", "1.0.1", "2.0.0", "0.9.0"] {
            let other = format!("\"tally:rules/classifier@{version}\" (instance");
            let bytes =
                constant_rule(&[("\"tally:rules/classifier@1.0.0\" (instance", other.as_str())]);
            let err = load(&bytes).err().unwrap();
            assert!(matches!(err, RuleError::WrongExports { .. }), "{err}");
            let message = err.to_string();
            assert!(
                message.contains(&format!(
                    "exports \"tally:rules/classifier@{version}\"; a rule implements tally:rules/rule@1.0.0 and exports exactly tally:rules/classifier@1.0.0"
                )),
                "{message}"
            );
        }
        // A second export beside the interface.
        let bytes = constant_rule(&[(
            "(export \"tally:rules/classifier@1.0.0\" (instance $classifier))",
            "(export \"tally:rules/classifier@1.0.0\" (instance $classifier))\n(export \"extra\" (core module $rule))",
        )]);
        let err = load(&bytes).err().unwrap();
        assert!(matches!(err, RuleError::WrongExports { .. }), "{err}");

        // A name that is not a rule name (same length, so the layout holds).
        let bytes = constant_rule(&[(
            "(data (i32.const 16) \"constant\")",
            "(data (i32.const 16) \"con\\1bstan\")",
        )]);
        let err = load(&bytes).err().unwrap();
        let message = err.to_string();
        assert!(matches!(err, RuleError::BadMetadata { .. }), "{message}");
        assert!(
            message.contains("reports the name \"con\\u{1b}stan\" (8 bytes)"),
            "{message}"
        );
    }

    #[test]
    fn core_modules_are_told_apart_from_components() {
        let core = wat::parse_str("(module)").unwrap();
        assert!(is_core_module(&core));
        let component = wat::parse_str("(component)").unwrap();
        assert!(!is_core_module(&component));
        let err = Rule::from_bytes(Path::new("m.wasm"), &core, Limits::default())
            .err()
            .unwrap();
        assert!(matches!(err, RuleError::CoreModule { .. }), "{err}");
    }
}
