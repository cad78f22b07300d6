//! Rules: loading a rule component, checking it, and running it in the sandbox.
//!
//! This is the one place in the host that generates bindings for the rule
//! interface (`wit/rules.wit`). A [`Rule`] is a compiled component addressed by
//! the blake3 hash of its bytes. Every call runs in a fresh store and instance,
//! with no imports, a memory cap and a fuel budget, so a batch's verdicts depend
//! on nothing but the batch, and a misbehaving rule fails cleanly with an error
//! that names it. Turning a rule crate into a component is in [`build`].

pub mod build;

use std::fmt;
use std::path::{Path, PathBuf};
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig, ResourceLimiter,
    Store, Trap,
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

/// How much a rule may use per call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Cap on the rule's linear memory, in bytes.
    pub memory_bytes: usize,
    /// Fuel (roughly, WebAssembly instructions) allowed per event of a batch.
    pub fuel_per_event: u64,
    /// Fuel allowed per call on top of the per-event budget.
    pub fuel_per_call: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 256 << 20,
            fuel_per_event: 20_000,
            fuel_per_call: 50_000_000,
        }
    }
}

/// A short, readable name for a rule in messages: `name@version (hash)`.
#[derive(Debug, Clone)]
pub struct RuleLabel(pub String);

impl fmt::Display for RuleLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What went wrong inside a rule call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The rule trapped (the WebAssembly trap, e.g. `unreachable` or an
    /// out-of-bounds access).
    Trap(String),
    /// The rule used up its fuel budget (an endless or too-slow loop).
    OutOfFuel { budget: u64 },
    /// The rule tried to grow its memory past the cap.
    MemoryCap { cap: usize },
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
            Problem::Trap(t) => write!(f, "trapped: {t}"),
            Problem::OutOfFuel { budget } => {
                write!(
                    f,
                    "ran out of fuel (budget {budget}): it loops or is far too slow"
                )
            }
            Problem::MemoryCap { cap } => {
                write!(
                    f,
                    "tried to use more than its memory cap of {} MiB",
                    cap >> 20
                )
            }
            Problem::Returned(m) => write!(f, "returned an error: {m}"),
            Problem::BadVerdicts(m) => write!(f, "returned malformed verdicts: {m}"),
            Problem::Runtime(m) => write!(f, "failed: {m}"),
        }
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
    #[error("rule {path} (blake3 {hash}) is not a valid component: {message}")]
    Invalid {
        path: PathBuf,
        hash: String,
        message: String,
    },
    /// The component imports something; rules must import nothing.
    #[error(
        "rule {path} (blake3 {hash}) imports {imports:?}; a rule must import nothing (build it for wasm32-unknown-unknown)"
    )]
    Imports {
        path: PathBuf,
        hash: String,
        imports: Vec<String>,
    },
    /// The component does not implement the rule world.
    #[error("rule {path} (blake3 {hash}) does not implement {WORLD}: {message}")]
    WrongWorld {
        path: PathBuf,
        hash: String,
        message: String,
    },
    /// A call into the rule failed.
    #[error("rule {rule} {problem} ({call})")]
    Call {
        rule: RuleLabel,
        call: String,
        problem: Problem,
    },
}

impl RuleError {
    /// The problem inside a failed call, if this is one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            RuleError::Call { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

/// Store state: the memory cap, and whether the rule hit it.
struct Host {
    cap: usize,
    hit_cap: bool,
}

impl ResourceLimiter for Host {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.hit_cap = true;
            return Err(wasmtime::Error::msg("memory cap exceeded"));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
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
    let slots = max_instances() as u32;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .total_core_instances(slots * 4)
        .total_memories(slots * 2)
        .total_tables(slots * 4)
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
    /// import nothing and implement the world. `hash` and `size` describe the
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
        if !imports.is_empty() {
            return Err(RuleError::Imports {
                path,
                hash: hex,
                imports,
            });
        }
        let linker = Linker::<Host>::new(&engine);
        let wrong_world = |e: wasmtime::Error| RuleError::WrongWorld {
            path: path.clone(),
            hash: hex.clone(),
            message: format!("{e:#}"),
        };
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
        rule.info = rule.call("metadata", 0, |rule, store| {
            rule.tally_rules_classifier().call_metadata(store)
        })?;
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
        let fuel = self
            .limits
            .fuel_per_call
            .saturating_add(self.limits.fuel_per_event.saturating_mul(events as u64));
        let returned = self.call(&call, fuel, |rule, store| {
            rule.tally_rules_classifier().call_classify(store, batch)
        })?;
        let fail = |problem| RuleError::Call {
            rule: self.label(),
            call: call.clone(),
            problem,
        };
        let verdicts = returned.map_err(|m| fail(Problem::Returned(m)))?;
        check_verdicts(&verdicts, events).map_err(|m| fail(Problem::BadVerdicts(m)))?;
        Ok(verdicts)
    }

    /// Runs `f` against a fresh instance with the memory cap and `fuel` (0 means
    /// the per-call budget).
    fn call<R>(
        &self,
        what: &str,
        fuel: u64,
        f: impl FnOnce(&bindings::Rule, &mut Store<Host>) -> wasmtime::Result<R>,
    ) -> Result<R, RuleError> {
        let budget = if fuel == 0 {
            self.limits.fuel_per_call
        } else {
            fuel
        };
        let mut store = Store::new(
            &self.engine,
            Host {
                cap: self.limits.memory_bytes,
                hit_cap: false,
            },
        );
        store.limiter(|host| host);
        let outcome = store
            .set_fuel(budget)
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
                    Some(trap) => Problem::Trap(trap.to_string()),
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
/// read only from a component that imports nothing and implements the world;
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

    use super::*;

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
