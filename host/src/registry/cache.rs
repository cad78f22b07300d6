//! The compiled-code cache:
//! `<registry>/cache/<rule hash>-<engine key>-<key id>.cwasm` for published
//! rules, and the same in the user's cache directory ([`user_dir`]) for
//! rules given as a file path; wasmtime's
//! serialization of the compiled component, with a sidecar `<...>.cwasm.json`
//! holding the rule hash, the engine key, the id of the cache key, the size
//! and blake3 hash of the `.cwasm` bytes, and a MAC.
//!
//! wasmtime loads compiled code without checking the machine code in it, so
//! the registry cannot vouch for its own cache: whoever can write the
//! registry could put other code in an entry and make its sidecar match. The
//! MAC closes that: it is a keyed blake3 hash over the rule hash, the engine
//! key and the code, under a secret [cache key](super::cache_key) of this
//! user on this machine, kept outside the registry. An entry is used only if
//! its sidecar names the same rule, engine and key, and the MAC over its
//! bytes verifies. Anything else (a missing or unreadable sidecar, a
//! truncated, modified or swapped `.cwasm`, a forged sidecar, code wasmtime
//! refuses to load) means the rule is compiled again from its verified blob
//! and the entry overwritten. Machines sharing a registry each have their own
//! key, and the key id in the file name keeps their entries apart.
//!
//! A cache that cannot be written (a read-only registry) only costs the
//! compile time; without a usable cache key the cache is not used at all.
//!
//! [`verify`] checks the cache without any key: compilation is deterministic
//! for one engine configuration, so each entry for this engine must be byte
//! for byte what compiling its rule's verified blob gives.

use super::cache_key::CacheKey;
use super::{Problem, Registry, RegistryError, fsio, list_dir, parse_hash};
use crate::rule::{self, Limits, Rule};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The file name suffix of compiled code.
const CODE_SUFFIX: &str = ".cwasm";
/// The file name suffix of a sidecar.
const SIDECAR_SUFFIX: &str = ".cwasm.json";

/// What loading through the cache did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "kebab-case")]
pub enum CacheOutcome {
    /// The cached code was valid and used.
    Hit,
    /// There was no entry: the rule was compiled and the entry written.
    Compiled,
    /// The entry was stale, corrupt or not authentic (why): the rule was
    /// compiled again from its verified blob and the entry overwritten.
    Rebuilt(String),
    /// The rule was compiled but the entry could not be written (why).
    NotWritten(String),
    /// There is no usable cache key (why): the rule was compiled and the
    /// cache neither read nor written.
    NoKey(String),
}

impl fmt::Display for CacheOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheOutcome::Hit => f.write_str("cache hit"),
            CacheOutcome::Compiled => f.write_str("compiled and cached"),
            CacheOutcome::Rebuilt(why) => write!(
                f,
                "cache entry rebuilt: recompiled from the verified blob ({why})"
            ),
            CacheOutcome::NotWritten(why) => write!(f, "compiled, not cached ({why})"),
            CacheOutcome::NoKey(why) => write!(f, "compiled, cache not used ({why})"),
        }
    }
}

/// The sidecar of a cache entry.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Sidecar {
    rule_hash: String,
    engine_key: String,
    /// The id of the cache key the MAC was made with.
    key_id: String,
    code_size: u64,
    code_blake3: String,
    /// Keyed blake3 over the rule hash, the engine key and the code
    /// ([`CacheKey::mac`]).
    mac: String,
}

/// The environment variable naming the directory where rules given as a
/// file path keep their compiled code.
pub const ENV_VAR: &str = "TALLY_CODE_CACHE";

/// Where rules given as a file path keep their compiled code (entries named
/// as in a registry's `cache/`): `$TALLY_CODE_CACHE` if set and not empty,
/// else `$XDG_CACHE_HOME/tally/code` if that is an absolute path, else
/// `$HOME/.cache/tally/code`; `None` when there is no home.
pub fn user_dir() -> Option<PathBuf> {
    super::cache_key::user_path(ENV_VAR, ("XDG_CACHE_HOME", ".cache"), "tally/code")
}

/// The paths of the cache entry in the cache directory `dir` for a rule on
/// an engine under a cache key: code and sidecar.
pub fn entry_paths(
    dir: &Path,
    hash: &blake3::Hash,
    engine_key: &str,
    key_id: &str,
) -> (PathBuf, PathBuf) {
    let stem = format!("{}-{engine_key}-{key_id}", hash.to_hex());
    (
        dir.join(format!("{stem}{CODE_SUFFIX}")),
        dir.join(format!("{stem}{SIDECAR_SUFFIX}")),
    )
}

/// Loads cached code for the rule if its entry is sound and authentic.
/// `Ok(None)` when there is no entry at all; `Err(why)` when there is one but
/// it cannot be trusted.
fn cached(
    engine: &Engine,
    key: &CacheKey,
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
    if sidecar.rule_hash != hash.to_hex().as_str()
        || sidecar.engine_key != engine_key
        || sidecar.key_id != key.id()
    {
        return Err("the sidecar describes another rule, engine or cache key".into());
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
    // blake3::Hash compares in constant time.
    let authentic = blake3::Hash::from_hex(&sidecar.mac)
        .is_ok_and(|mac| mac == key.mac(hash, engine_key, &code));
    if !authentic {
        return Err(format!(
            "its MAC does not verify under the cache key {} ({}): the entry was not written by this user on this machine, or was modified or swapped since",
            key.id(),
            key.path().display()
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
    // The caller only passes bytes whose sidecar carries a valid MAC under
    // the user's cache key (kept outside the registry, readable by its owner
    // only) over the rule hash, `rule::engine_key` of this very engine
    // configuration and these exact bytes. Only `store` makes such MACs, right
    // after serializing a component compiled from the blob that was itself
    // checked against the rule hash. Someone who can write the registry but
    // not read the key cannot produce an entry that gets here; a truncated,
    // corrupted, swapped or forged entry is rebuilt instead.
    unsafe { Component::deserialize(engine, code) }
}

/// Serializes a component and writes its entry: the code first, then the
/// sidecar, each atomically, so a reader sees either a complete matching pair
/// or a pair that does not match (and is rebuilt).
fn store(
    component: &Component,
    key: &CacheKey,
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
        key_id: key.id().to_string(),
        code_size: code.len() as u64,
        code_blake3: blake3::hash(&code).to_hex().to_string(),
        mac: key.mac(hash, engine_key, &code).to_hex().to_string(),
    };
    let sidecar = serde_json::to_vec_pretty(&sidecar).map_err(|e| e.to_string())?;
    let dir = code_path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .and_then(|()| fsio::write_atomic(code_path, &code))
        .and_then(|()| fsio::write_atomic(sidecar_path, &sidecar))
        .map_err(|e| format!("cannot write {}: {e}", code_path.display()))
}

/// Loads a rule whose bytes were already checked against `hash`, using the
/// cache of compiled code in `dir` (a registry's `cache/`, or [`user_dir`])
/// under the user's cache key ([`CacheKey::load_or_create`]). `blob` names
/// the rule in messages.
pub fn load(
    dir: &Path,
    hash: &blake3::Hash,
    bytes: &[u8],
    blob: &Path,
    limits: Limits,
) -> Result<(Rule, CacheOutcome), RegistryError> {
    match CacheKey::load_or_create() {
        Ok(key) => load_with_key(dir, &key, hash, bytes, blob, limits),
        Err(why) => {
            let engine = rule::engine();
            let component = rule::compile(&engine, blob, hash, bytes)?;
            let rule = Rule::from_component(blob, *hash, bytes.len() as u64, &component, limits)?;
            Ok((rule, CacheOutcome::NoKey(why.to_string())))
        }
    }
}

/// [`load`] under a given cache key.
pub fn load_with_key(
    dir: &Path,
    key: &CacheKey,
    hash: &blake3::Hash,
    bytes: &[u8],
    blob: &Path,
    limits: Limits,
) -> Result<(Rule, CacheOutcome), RegistryError> {
    debug_assert_eq!(blake3::hash(bytes), *hash);
    let engine = rule::engine();
    let engine_key = rule::engine_key(&engine);
    let (code_path, sidecar_path) = entry_paths(dir, hash, &engine_key, key.id());
    let size = bytes.len() as u64;
    let rebuild_reason = match cached(&engine, key, hash, &engine_key, &code_path, &sidecar_path) {
        Ok(Some(component)) => match Rule::from_component(blob, *hash, size, &component, limits) {
            Ok(rule) => return Ok((rule, CacheOutcome::Hit)),
            Err(e) => Some(format!("the cached code does not load: {e}")),
        },
        Ok(None) => None,
        Err(why) => Some(why),
    };
    let component = rule::compile(&engine, blob, hash, bytes)?;
    let rule = Rule::from_component(blob, *hash, size, &component, limits)?;
    let stored = store(
        &component,
        key,
        hash,
        &engine_key,
        &code_path,
        &sidecar_path,
    );
    let outcome = match stored {
        Err(why) => CacheOutcome::NotWritten(why),
        Ok(()) => match rebuild_reason {
            Some(why) => CacheOutcome::Rebuilt(why),
            None => CacheOutcome::Compiled,
        },
    };
    Ok((rule, outcome))
}

/// What [`verify`] found about one cache entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryStatus {
    /// The code is byte for byte what compiling its rule gives.
    Ok,
    /// The code is not what compiling its rule gives: it was modified, or
    /// swapped for other code.
    Modified,
    /// Compiled for another engine (another wasmtime, target, CPU features or
    /// settings): it cannot be checked here, and this engine never loads it.
    OtherEngine,
    /// Its rule's blob is missing or damaged, or does not compile, so there
    /// is nothing to compare it with.
    Unchecked,
}

impl EntryStatus {
    /// A short label for listings.
    pub fn label(self) -> &'static str {
        match self {
            EntryStatus::Ok => "ok",
            EntryStatus::Modified => "MODIFIED",
            EntryStatus::OtherEngine => "skipped",
            EntryStatus::Unchecked => "unchecked",
        }
    }
}

/// One compiled-code cache entry, checked by [`verify`].
#[derive(Debug, Clone, Serialize)]
pub struct EntryCheck {
    /// The `.cwasm` file.
    pub path: PathBuf,
    /// The rule the entry is for, from its file name.
    pub rule_hash: String,
    /// `name@version`, if a record describes the rule.
    pub rule: Option<String>,
    /// The engine it was compiled for, from its file name.
    pub engine_key: String,
    /// The id of the cache key it was written under (none for entries of
    /// earlier versions, which carry no MAC and are never loaded).
    pub key_id: Option<String>,
    pub status: EntryStatus,
}

/// What [`verify`] found in the cache.
#[derive(Debug, Default)]
pub struct CacheVerification {
    pub entries: Vec<EntryCheck>,
    /// Modified entries.
    pub problems: Vec<Problem>,
    /// Harmless findings: leftovers, entries that cannot be checked.
    pub notes: Vec<Problem>,
}

/// Whether `text` is `len` lower-case hex digits.
fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The parts of a cache entry's file stem: the rule hash, the engine key and
/// the key id (absent in entries of earlier versions).
fn parse_entry_stem(stem: &str) -> Option<(blake3::Hash, &str, Option<&str>)> {
    let mut parts = stem.split('-');
    let hash = parse_hash(parts.next()?)?;
    let engine_key = parts.next().filter(|e| is_hex(e, 16))?;
    let key_id = parts.next();
    if key_id.is_some_and(|id| !is_hex(id, 8)) || parts.next().is_some() {
        return None;
    }
    Some((hash, engine_key, key_id))
}

/// Compiles a rule's verified blob with `engine` and serializes the code, as
/// [`load`] does before storing it.
fn compile_fresh(
    registry: &Registry,
    engine: &Engine,
    hash: &blake3::Hash,
) -> Result<Vec<u8>, String> {
    let bytes = registry.read_blob(hash).map_err(|e| match e {
        RegistryError::MissingBlob { .. } => {
            "it is the compiled code of a rule whose blob is not in the registry; it is never loaded (rules are loaded from their blobs), and can be deleted".to_string()
        }
        other => format!("it cannot be checked: {other}"),
    })?;
    let blob = registry.blob_path(hash);
    rule::compile(engine, &blob, hash, &bytes)
        .map_err(|e| format!("it cannot be checked: its rule does not compile: {e}"))?
        .serialize()
        .map_err(|e| format!("it cannot be checked: cannot serialize the compiled rule: {e:#}"))
}

/// Checks every entry of the cache without any cache key: each entry for
/// this engine is compared byte for byte with a fresh compile of its rule's
/// verified blob (compilation is deterministic for one engine
/// configuration). Entries for other engines are skipped. `rules` maps rule
/// hashes to `name@version`.
pub fn verify(
    registry: &Registry,
    rules: &HashMap<String, String>,
) -> Result<CacheVerification, RegistryError> {
    let dir = registry.cache_dir();
    let files = list_dir(&dir)?;
    let engine = rule::engine();
    let engine_key = rule::engine_key(&engine);
    let mut report = CacheVerification::default();
    // The entries for this engine, by rule: each rule is compiled once.
    let mut by_rule: BTreeMap<String, (blake3::Hash, Vec<usize>)> = BTreeMap::new();
    for file in &files {
        let path = dir.join(file);
        if let Some(stem) = file.strip_suffix(SIDECAR_SUFFIX) {
            if !files.contains(&format!("{stem}{CODE_SUFFIX}")) {
                report.notes.push(Problem {
                    path,
                    message: "a sidecar without its compiled code (harmless; it can be deleted)"
                        .into(),
                });
            }
            continue;
        }
        let parsed = file.strip_suffix(CODE_SUFFIX).and_then(parse_entry_stem);
        let Some((hash, entry_engine, key_id)) = parsed else {
            report.notes.push(Problem {
                path,
                message: "not a <blake3>-<engine>-<key>.cwasm cache entry; it is never read, and can be deleted".into(),
            });
            continue;
        };
        let hex = hash.to_hex().to_string();
        if key_id.is_none() {
            report.notes.push(Problem {
                path: path.clone(),
                message: "a cache entry of an earlier version, without a MAC: it is never loaded, and can be deleted".into(),
            });
        }
        if entry_engine == engine_key {
            by_rule
                .entry(hex.clone())
                .or_insert_with(|| (hash, Vec::new()))
                .1
                .push(report.entries.len());
        }
        report.entries.push(EntryCheck {
            path,
            rule: rules.get(&hex).cloned(),
            rule_hash: hex,
            engine_key: entry_engine.to_string(),
            key_id: key_id.map(str::to_string),
            status: EntryStatus::OtherEngine,
        });
    }

    for (hash, indices) in by_rule.values() {
        let fresh = compile_fresh(registry, &engine, hash);
        for &i in indices {
            let entry = &mut report.entries[i];
            let code = match &fresh {
                Ok(code) => code,
                Err(why) => {
                    entry.status = EntryStatus::Unchecked;
                    report.notes.push(Problem {
                        path: entry.path.clone(),
                        message: why.clone(),
                    });
                    continue;
                }
            };
            let stored = match std::fs::read(&entry.path) {
                Ok(stored) => stored,
                Err(e) => {
                    entry.status = EntryStatus::Unchecked;
                    report.problems.push(Problem {
                        path: entry.path.clone(),
                        message: format!("the compiled code cannot be read: {e}"),
                    });
                    continue;
                }
            };
            if stored == *code {
                entry.status = EntryStatus::Ok;
                continue;
            }
            entry.status = EntryStatus::Modified;
            report.problems.push(Problem {
                path: entry.path.clone(),
                message: format!(
                    "MODIFIED: this compiled code is not what its rule {}{} compiles to (it hashes to {}, a fresh compile to {}): it was modified or swapped for other code. Delete it (loading the rule compiles it again), and check who can write the registry and who can read the cache key",
                    entry.rule_hash,
                    entry.rule.as_deref().map(|r| format!(" ({r})")).unwrap_or_default(),
                    blake3::hash(&stored).to_hex(),
                    blake3::hash(code).to_hex(),
                ),
            });
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small component: the hand-written constant rule.
    fn component() -> Vec<u8> {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/rules/constant.wat");
        wat::parse_file(path).unwrap()
    }

    #[test]
    fn compiling_is_deterministic_for_one_engine_configuration() {
        let bytes = component();
        let hash = blake3::hash(&bytes);
        let path = Path::new("constant.wasm");
        // Two engines of the same configuration, as two processes would have.
        let (a, b) = (rule::engine(), rule::engine());
        assert_eq!(rule::engine_key(&a), rule::engine_key(&b));
        let first = rule::compile(&a, path, &hash, &bytes)
            .unwrap()
            .serialize()
            .unwrap();
        let second = rule::compile(&b, path, &hash, &bytes)
            .unwrap()
            .serialize()
            .unwrap();
        let third = rule::compile(&a, path, &hash, &bytes)
            .unwrap()
            .serialize()
            .unwrap();
        assert!(first == second && second == third, "compiled code differs");
    }

    #[test]
    fn entry_names_carry_rule_engine_and_key() {
        let hash = blake3::hash(b"x");
        let hex = hash.to_hex();
        let stem = format!("{hex}-0123456789abcdef-89abcdef");
        assert_eq!(
            parse_entry_stem(&stem),
            Some((hash, "0123456789abcdef", Some("89abcdef")))
        );
        assert_eq!(
            parse_entry_stem(&format!("{hex}-0123456789abcdef")),
            Some((hash, "0123456789abcdef", None))
        );
        for bad in [
            hex.to_string(),
            format!("{hex}-0123"),
            format!("{hex}-0123456789abcdef-89ABCDEF"),
            format!("{hex}-0123456789abcdef-89abcdef-00"),
            "x-0123456789abcdef-89abcdef".to_string(),
        ] {
            assert_eq!(parse_entry_stem(&bad), None, "{bad}");
        }
    }

    #[test]
    fn only_entries_with_a_valid_mac_under_this_key_are_used() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::create(&dir.path().join("registry")).unwrap();
        let key = CacheKey::load_or_create_at(&dir.path().join("a.key")).unwrap();
        let other = CacheKey::load_or_create_at(&dir.path().join("b.key")).unwrap();
        let bytes = component();
        let hash = blake3::hash(&bytes);
        let blob = registry.blob_path(&hash);
        std::fs::write(&blob, &bytes).unwrap();
        let load = |key: &CacheKey| {
            load_with_key(
                &registry.cache_dir(),
                key,
                &hash,
                &bytes,
                &blob,
                Limits::default(),
            )
            .unwrap()
            .1
        };
        assert_eq!(load(&key), CacheOutcome::Compiled);
        assert_eq!(load(&key), CacheOutcome::Hit);
        // Another key (another machine sharing the registry) has its own
        // entry and leaves this one alone.
        assert_eq!(load(&other), CacheOutcome::Compiled);
        assert_eq!(load(&other), CacheOutcome::Hit);
        assert_eq!(load(&key), CacheOutcome::Hit);

        // The other key's entry, copied over this one with its sidecar
        // edited to name this key: the MAC gives it away.
        let engine_key = rule::engine_key(&rule::engine());
        let (code, sidecar) = entry_paths(&registry.cache_dir(), &hash, &engine_key, key.id());
        let (other_code, other_sidecar) =
            entry_paths(&registry.cache_dir(), &hash, &engine_key, other.id());
        std::fs::copy(&other_code, &code).unwrap();
        let text = std::fs::read_to_string(&other_sidecar)
            .unwrap()
            .replace(other.id(), key.id());
        std::fs::write(&sidecar, text).unwrap();
        let CacheOutcome::Rebuilt(why) = load(&key) else {
            panic!("the entry was trusted");
        };
        assert!(why.contains("MAC does not verify"), "{why}");
        assert_eq!(load(&key), CacheOutcome::Hit);

        // Both entries are what compiling the rule gives.
        let rules = HashMap::from([(hash.to_hex().to_string(), "constant@0.1.0".to_string())]);
        let report = verify(&registry, &rules).unwrap();
        assert_eq!(report.entries.len(), 2);
        assert!(
            report.entries.iter().all(|e| e.status == EntryStatus::Ok),
            "{report:?}"
        );
        assert!(
            report.problems.is_empty() && report.notes.is_empty(),
            "{report:?}"
        );
    }
}
