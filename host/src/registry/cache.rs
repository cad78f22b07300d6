//! The compiled-code cache: `<registry>/cache/<rule hash>-<engine key>.cwasm`,
//! wasmtime's serialization of the compiled component, with a sidecar
//! `<...>.cwasm.json` holding the rule hash, the engine key and the blake3 hash
//! and size of the `.cwasm` bytes.
//!
//! An entry is used only if its sidecar names the same rule and engine and
//! the code's bytes hash to what the sidecar says. Anything else (a missing
//! or unreadable sidecar, a truncated or modified `.cwasm`, code wasmtime
//! refuses to load) means the entry is compiled again from the verified blob
//! and overwritten. A cache that cannot be written (a read-only registry)
//! only costs the compile time.

use super::{Registry, RegistryError, fsio};
use crate::rule::{self, Limits, Rule};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// What loading through the cache did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "kebab-case")]
pub enum CacheOutcome {
    /// The cached code was valid and used.
    Hit,
    /// There was no entry: the rule was compiled and the entry written.
    Compiled,
    /// The entry was stale or corrupt (why): the rule was compiled again and
    /// the entry overwritten.
    Rebuilt(String),
    /// The rule was compiled but the entry could not be written (why).
    NotWritten(String),
}

impl fmt::Display for CacheOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheOutcome::Hit => f.write_str("cache hit"),
            CacheOutcome::Compiled => f.write_str("compiled and cached"),
            CacheOutcome::Rebuilt(why) => write!(f, "cache entry rebuilt ({why})"),
            CacheOutcome::NotWritten(why) => write!(f, "compiled, not cached ({why})"),
        }
    }
}

/// The sidecar of a cache entry.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Sidecar {
    rule_hash: String,
    engine_key: String,
    code_blake3: String,
    code_size: u64,
}

/// The paths of the cache entry for a rule on an engine: code and sidecar.
pub fn entry_paths(
    registry: &Registry,
    hash: &blake3::Hash,
    engine_key: &str,
) -> (PathBuf, PathBuf) {
    let code = registry
        .cache_dir()
        .join(format!("{}-{engine_key}.cwasm", hash.to_hex()));
    let mut sidecar = code.clone().into_os_string();
    sidecar.push(".json");
    (code, sidecar.into())
}

/// Loads cached code for the rule if its entry is sound. `Ok(None)` when there
/// is no entry at all; `Err(why)` when there is one but it cannot be trusted.
fn cached(
    engine: &Engine,
    hash: &blake3::Hash,
    engine_key: &str,
    code_path: &Path,
    sidecar_path: &Path,
) -> Result<Option<Component>, String> {
    let sidecar = match std::fs::read(sidecar_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return if code_path.exists() {
                Err("the sidecar is missing".into())
            } else {
                Ok(None)
            };
        }
        Err(e) => return Err(format!("the sidecar is unreadable: {e}")),
    };
    let sidecar: Sidecar =
        serde_json::from_slice(&sidecar).map_err(|e| format!("the sidecar is not valid: {e}"))?;
    if sidecar.rule_hash != hash.to_hex().as_str() || sidecar.engine_key != engine_key {
        return Err("the sidecar describes another rule or engine".into());
    }
    let code = std::fs::read(code_path).map_err(|e| format!("the code is unreadable: {e}"))?;
    let actual = blake3::hash(&code);
    if code.len() as u64 != sidecar.code_size || actual.to_hex().as_str() != sidecar.code_blake3 {
        return Err(format!(
            "the code hashes to {}, not {} as its sidecar says",
            actual.to_hex(),
            sidecar.code_blake3
        ));
    }
    deserialize(engine, &code)
        .map(Some)
        .map_err(|e| format!("wasmtime refused the code: {e:#}"))
}

/// Turns cached code back into a component.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, code: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize` trusts its input to be what
    // `Component::serialize` produced for a compatible engine: wasmtime checks
    // the format and the engine settings but not the machine code itself.
    // The caller only passes bytes that (1) sit under a name keyed by the rule
    // hash and by `rule::engine_key` of this very engine configuration, and
    // (2) hash (blake3) to the value in the sidecar written by `store` right
    // after serializing a component compiled from the blob that was itself
    // checked against the rule hash. A truncated, corrupted or mismatched
    // entry therefore never gets here; it is rebuilt instead. The remaining
    // trust is in whoever can write the registry directory, documented in
    // the README alongside the cache.
    unsafe { Component::deserialize(engine, code) }
}

/// Serializes a component and writes its entry: the code first, then the
/// sidecar, each atomically, so a reader sees either a complete matching pair
/// or a pair that does not match (and is rebuilt).
fn store(
    component: &Component,
    hash: &blake3::Hash,
    engine_key: &str,
    code_path: &Path,
    sidecar_path: &Path,
) -> Result<(), String> {
    let code = component
        .serialize()
        .map_err(|e| format!("cannot serialize the compiled code: {e:#}"))?;
    let sidecar = Sidecar {
        rule_hash: hash.to_hex().to_string(),
        engine_key: engine_key.to_string(),
        code_blake3: blake3::hash(&code).to_hex().to_string(),
        code_size: code.len() as u64,
    };
    let sidecar = serde_json::to_vec_pretty(&sidecar).map_err(|e| e.to_string())?;
    let dir = code_path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .and_then(|()| fsio::write_atomic(code_path, &code))
        .and_then(|()| fsio::write_atomic(sidecar_path, &sidecar))
        .map_err(|e| format!("cannot write {}: {e}", code_path.display()))
}

/// Loads a rule whose bytes were already checked against `hash`, using the
/// registry's cache of compiled code. `blob` names the rule in messages.
pub fn load(
    registry: &Registry,
    hash: &blake3::Hash,
    bytes: &[u8],
    blob: &Path,
    limits: Limits,
) -> Result<(Rule, CacheOutcome), RegistryError> {
    debug_assert_eq!(blake3::hash(bytes), *hash);
    let engine = rule::engine();
    let key = rule::engine_key(&engine);
    let (code_path, sidecar_path) = entry_paths(registry, hash, &key);
    let size = bytes.len() as u64;
    let rebuild_reason = match cached(&engine, hash, &key, &code_path, &sidecar_path) {
        Ok(Some(component)) => match Rule::from_component(blob, *hash, size, &component, limits) {
            Ok(rule) => return Ok((rule, CacheOutcome::Hit)),
            Err(e) => Some(format!("the cached code does not load: {e}")),
        },
        Ok(None) => None,
        Err(why) => Some(why),
    };
    let component = rule::compile(&engine, blob, hash, bytes)?;
    let rule = Rule::from_component(blob, *hash, size, &component, limits)?;
    let outcome = match store(&component, hash, &key, &code_path, &sidecar_path) {
        Err(why) => CacheOutcome::NotWritten(why),
        Ok(()) => match rebuild_reason {
            Some(why) => CacheOutcome::Rebuilt(why),
            None => CacheOutcome::Compiled,
        },
    };
    Ok((rule, outcome))
}
