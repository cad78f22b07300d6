//! The rule registry: a content-addressed store of published rule components,
//! one directory of plain files that is safe to copy or to put on shared
//! storage.
//!
//! ```text
//! <registry>/blobs/<blake3>.wasm            the component bytes, named by their hash
//! <registry>/rules/<blake3>.json            the record: name, version, hash, world, SDK version, size, publish time
//! <registry>/versions/<name>@<version>      the hash; created once, never replaced
//! <registry>/tags/<name>@<tag>              the hash; moved atomically
//! <registry>/cache/<blake3>-<engine>-<key>.cwasm  compiled code, with a `.cwasm.json` sidecar
//! ```
//!
//! Every file is written under a temporary name in its directory, flushed,
//! and then renamed (or hard-linked, for `versions/`, so that of two
//! publishers of the same name and version exactly one wins): no file is ever
//! seen half-written under its final name.
//!
//! A rule is addressed by a [reference](resolve): a path to a `.wasm` file, a
//! full or unambiguous short hash, `name@version` or `name@tag`. Whatever the
//! reference, the bytes handed out are checked against the hash first, so a
//! blob modified after publishing is refused, never executed. [`load_rule`]
//! turns a reference into a loaded [`Rule`], using the registry's cache of
//! compiled code ([`cache`]), whose entries are authenticated with a secret
//! key of the user kept outside the registry ([`cache_key`]).

pub mod cache;
pub mod cache_key;
mod fsio;
pub mod golden;

use crate::rule::build::{self, BuildError};
use crate::rule::{Limits, Rule, RuleError, WORLD};
use cache::CacheOutcome;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// The environment variable naming the default registry.
pub const ENV_VAR: &str = "TALLY_REGISTRY";
/// The registry used when neither `--registry` nor `$TALLY_REGISTRY` is given,
/// relative to the current directory.
pub const DEFAULT_DIR: &str = "tally-registry";
/// The shortest hash prefix accepted as a reference.
pub const MIN_PREFIX: usize = 6;

/// The registry to use: `explicit` if given, else `$TALLY_REGISTRY` if set and
/// not empty, else `./tally-registry`.
pub fn location(explicit: Option<&Path>) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_path_buf();
    }
    match std::env::var_os(ENV_VAR) {
        Some(value) if !value.is_empty() => PathBuf::from(value),
        _ => PathBuf::from(DEFAULT_DIR),
    }
}

/// What can go wrong with the registry, a reference or a publish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The registry directory does not exist.
    #[error(
        "there is no rule registry at {}: publish a rule into it first (`tally rule publish`), or name another with --registry or ${ENV_VAR}",
        path.display()
    )]
    Missing { path: PathBuf },
    /// Reading or writing a file failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    /// The component is not a valid rule, or failed while running (the
    /// error names the file and the hash).
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// Building a rule crate failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The text is not a reference of any form.
    #[error(
        "{reference:?} is not a rule reference: {why}; a reference is a path to a .wasm file, a blake3 hash or a prefix of one (at least {MIN_PREFIX} hex digits), name@version or name@tag"
    )]
    BadReference { reference: String, why: String },
    /// The reference looks like a path, but there is no such file.
    #[error("rule file {} does not exist or is not a file", path.display())]
    FileMissing { path: PathBuf },
    /// No published rule has this hash or hash prefix.
    #[error(
        "no rule published in the registry at {} has a hash starting with {prefix} (`tally rule list` shows what is there)",
        registry.display()
    )]
    UnknownHash { prefix: String, registry: PathBuf },
    /// Several published rules have a hash starting with this prefix.
    #[error(
        "the hash prefix {prefix} is ambiguous in the registry at {}: it matches {}; give more digits",
        registry.display(),
        candidates.join(", ")
    )]
    AmbiguousHash {
        prefix: String,
        registry: PathBuf,
        candidates: Vec<String>,
    },
    /// No such version is published.
    #[error(
        "{name}@{version} is not published in the registry at {}{}",
        registry.display(),
        if known.is_empty() { format!(" (no version of {name} is)") } else { format!(" (published versions: {})", known.join(", ")) }
    )]
    UnknownVersion {
        name: String,
        version: String,
        registry: PathBuf,
        known: Vec<String>,
    },
    /// No such tag.
    #[error(
        "there is no tag {name}@{tag} in the registry at {} (set one with `tally rule tag {name} {tag} <hash>`)",
        registry.display()
    )]
    UnknownTag {
        name: String,
        tag: String,
        registry: PathBuf,
    },
    /// A stored blob's bytes do not hash to its name.
    #[error(
        "blob {} does not match its hash: its bytes hash to {actual}, not {expected}. It was modified after it was published and will not be loaded; run `tally rule verify`, and publish the original component again to restore it",
        blob.display()
    )]
    Tampered {
        blob: PathBuf,
        expected: String,
        actual: String,
    },
    /// A published rule's blob is missing.
    #[error(
        "blob {} of the published rule {expected} is missing; publish the component again to restore it",
        blob.display()
    )]
    MissingBlob { blob: PathBuf, expected: String },
    /// A registry file is unreadable or inconsistent.
    #[error("registry file {} is damaged: {message} (run `tally rule verify`)", path.display())]
    Damaged { path: PathBuf, message: String },
    /// Different bytes under a name and version that are already published.
    #[error(
        "{name}@{version} is already published with different bytes: the published rule is blake3 {published}, this component is blake3 {new}. A published version never changes: give the rule a new version"
    )]
    Conflict {
        name: String,
        version: String,
        published: String,
        new: String,
    },
    /// The rule's name cannot be used in the registry.
    #[error(
        "the rule name {name:?} cannot be published: names are 1 to 64 characters, start with a lower-case letter or digit, and hold only lower-case letters, digits, `.`, `_` and `-`"
    )]
    InvalidName { name: String },
    /// The rule's version is not a semantic version.
    #[error(
        "the version {version:?} of rule {name} cannot be published: it is not a semantic version ({reason}); a version is MAJOR.MINOR.PATCH, optionally -PRERELEASE and +BUILD, numbers without leading zeros (https://semver.org)"
    )]
    InvalidVersion {
        name: String,
        version: String,
        reason: crate::rule::VersionError,
    },
    /// The tag cannot be used.
    #[error(
        "{tag:?} is not a valid tag: tags are 1 to 64 characters, start with a lower-case letter, and hold only lower-case letters, digits, `.`, `_` and `-`"
    )]
    InvalidTag { tag: String },
    /// A golden file is not in the golden format.
    #[error("golden file {}{}: {message}", file.display(), line.map(|l| format!(" line {l}")).unwrap_or_default())]
    GoldenFormat {
        file: PathBuf,
        line: Option<usize>,
        message: String,
    },
    /// The rule gives other verdicts than its golden cases expect, or none.
    #[error(
        "{rule} fails {} of the {total} golden cases in {}{refused}:\n  {}",
        failures.len(),
        file.display(),
        failures.join("\n  ")
    )]
    GoldenFailed {
        rule: String,
        file: PathBuf,
        total: usize,
        /// One line per failed case: its line, event id, description and
        /// what differs (or the rule's error).
        failures: Vec<String>,
        /// What the failure stopped (", so it was not published"), or empty.
        refused: &'static str,
    },
    /// A tag would point at a rule of another name.
    #[error("cannot tag {hash} as {name}@{tag}: that rule is {actual}, not a version of {name}")]
    TagWrongName {
        name: String,
        tag: String,
        hash: String,
        actual: String,
    },
    /// A file's hash is not published.
    #[error(
        "{} (blake3 {hash}) is not published in the registry at {}; publish it first (`tally rule publish`)",
        path.display(),
        registry.display()
    )]
    NotPublished {
        path: PathBuf,
        hash: String,
        registry: PathBuf,
    },
}

fn io_error(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> RegistryError {
    let path = path.to_path_buf();
    move |source| RegistryError::Io {
        path,
        action,
        source,
    }
}

/// What the registry records about a published rule (`rules/<hash>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub name: String,
    pub version: String,
    /// blake3 of the component bytes, 64 hex digits.
    pub hash: String,
    /// The WIT world the component implements.
    pub world: String,
    /// The rules SDK version it was built with (empty if none).
    pub sdk_version: String,
    /// Size of the component in bytes.
    pub size: u64,
    /// When it was published, RFC 3339 UTC.
    pub published_at: String,
}

impl Record {
    /// `name@version`.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// The first 12 hex digits of the hash.
    pub fn short_hash(&self) -> &str {
        &self.hash[..self.hash.len().min(12)]
    }
}

/// A published rule and the tags that point at it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    #[serde(flatten)]
    pub record: Record,
    pub tags: Vec<String>,
}

/// Which form a reference took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefKind {
    /// A path to a component file.
    Path,
    /// A full hash or an unambiguous prefix.
    Hash,
    /// `name@version`.
    Version,
    /// `name@tag`.
    Tag,
}

impl fmt::Display for RefKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RefKind::Path => "path",
            RefKind::Hash => "hash",
            RefKind::Version => "version",
            RefKind::Tag => "tag",
        })
    }
}

/// Where resolved bytes came from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// A component file named directly.
    File { path: PathBuf },
    /// A published rule.
    Registry {
        /// The registry's root directory.
        root: PathBuf,
        /// The blob the bytes were read from.
        blob: PathBuf,
        record: Record,
    },
}

/// A reference resolved to component bytes, already checked against the hash.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The reference as given.
    pub reference: String,
    pub kind: RefKind,
    /// blake3 of `bytes`.
    pub hash: blake3::Hash,
    pub bytes: Vec<u8>,
    pub origin: Origin,
}

impl Resolved {
    /// The path the bytes were read from.
    pub fn path(&self) -> &Path {
        match &self.origin {
            Origin::File { path } => path,
            Origin::Registry { blob, .. } => blob,
        }
    }

    /// The registry record, if the bytes came from the registry.
    pub fn record(&self) -> Option<&Record> {
        match &self.origin {
            Origin::File { .. } => None,
            Origin::Registry { record, .. } => Some(record),
        }
    }
}

/// A loaded rule and how it was found.
pub struct Loaded {
    /// The rule, its hash being the resolved hash.
    pub rule: Rule,
    pub resolved: Resolved,
    /// What the compiled-code cache did (`None` for a rule loaded from a
    /// file when there is no user cache directory: compiled without a cache).
    pub cache: Option<CacheOutcome>,
}

pub use crate::rule::{parse_version, valid_name, valid_version, version_order};

/// Whether `tag` can be a tag. Tags start with a letter, versions with a
/// digit, so `name@x` is never both.
pub fn valid_tag(tag: &str) -> bool {
    tag.as_bytes().first().is_some_and(u8::is_ascii_lowercase) && valid_name(tag)
}

/// Parses a 64-hex-digit hash.
fn parse_hash(text: &str) -> Option<blake3::Hash> {
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        blake3::Hash::from_hex(text.to_ascii_lowercase()).ok()
    } else {
        None
    }
}

/// The names of a directory's entries, hidden ones (temporary files) left out,
/// sorted; a missing directory has none.
fn list_dir(dir: &Path) -> Result<Vec<String>, RegistryError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(dir, "list")(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(dir, "list"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !fsio::is_hidden(&name) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The current time, RFC 3339 UTC to the second.
fn now_rfc3339() -> String {
    chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now())
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A problem found in the registry (by [`Registry::verify`], or while
/// listing).
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub path: PathBuf,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

/// Everything published, as read from `versions/` and `tags/`.
#[derive(Debug, Default)]
struct Scan {
    entries: Vec<Entry>,
    problems: Vec<Problem>,
}

/// An opened registry directory.
#[derive(Debug, Clone)]
pub struct Registry {
    root: PathBuf,
}

const SUBDIRS: [&str; 5] = ["blobs", "rules", "versions", "tags", "cache"];

impl Registry {
    /// Opens an existing registry.
    pub fn open(root: &Path) -> Result<Registry, RegistryError> {
        if !root.is_dir() {
            return Err(RegistryError::Missing {
                path: root.to_path_buf(),
            });
        }
        Ok(Registry {
            root: root.to_path_buf(),
        })
    }

    /// Opens a registry, creating its directories if they are missing.
    pub fn create(root: &Path) -> Result<Registry, RegistryError> {
        for dir in SUBDIRS {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(io_error(&path, "create the directory"))?;
        }
        Ok(Registry {
            root: root.to_path_buf(),
        })
    }

    /// The registry's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the bytes of the rule with this hash are stored.
    pub fn blob_path(&self, hash: &blake3::Hash) -> PathBuf {
        self.root
            .join("blobs")
            .join(format!("{}.wasm", hash.to_hex()))
    }

    /// Where the record of the rule with this hash is stored.
    pub fn record_path(&self, hash: &blake3::Hash) -> PathBuf {
        self.root
            .join("rules")
            .join(format!("{}.json", hash.to_hex()))
    }

    fn version_path(&self, name: &str, version: &str) -> PathBuf {
        self.root.join("versions").join(format!("{name}@{version}"))
    }

    fn tag_path(&self, name: &str, tag: &str) -> PathBuf {
        self.root.join("tags").join(format!("{name}@{tag}"))
    }

    /// The directory of the compiled-code cache.
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// The record of the rule with this hash, if there is one.
    pub fn record(&self, hash: &blake3::Hash) -> Result<Option<Record>, RegistryError> {
        let path = self.record_path(hash);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&path, "read")(e)),
        };
        let damaged = |message: String| RegistryError::Damaged {
            path: path.clone(),
            message,
        };
        let record: Record = serde_json::from_slice(&text)
            .map_err(|e| damaged(format!("not a rule record: {e}")))?;
        if record.hash != hash.to_hex().as_str() {
            return Err(damaged(format!(
                "it records the hash {}, not the one in its name",
                record.hash
            )));
        }
        Ok(Some(record))
    }

    /// Reads a `versions/` or `tags/` file: the hash it holds, if it exists.
    fn read_pointer(&self, path: &Path) -> Result<Option<blake3::Hash>, RegistryError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(path, "read")(e)),
        };
        parse_hash(text.trim())
            .map(Some)
            .ok_or_else(|| RegistryError::Damaged {
                path: path.to_path_buf(),
                message: if text.is_empty() {
                    "it is empty (a publish may be under way)".into()
                } else {
                    "it does not hold a blake3 hash".into()
                },
            })
    }

    /// The hash published as `name@version`, if any.
    pub fn version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<blake3::Hash>, RegistryError> {
        self.read_pointer(&self.version_path(name, version))
    }

    /// The hash tagged `name@tag`, if any.
    pub fn tag_target(&self, name: &str, tag: &str) -> Result<Option<blake3::Hash>, RegistryError> {
        self.read_pointer(&self.tag_path(name, tag))
    }

    /// The record a `versions/` or `tags/` file points at, checked to be of
    /// `name` (and `version`) and to be published.
    fn pointed_record(
        &self,
        pointer: &Path,
        hash: &blake3::Hash,
        name: &str,
        version: Option<&str>,
    ) -> Result<Record, RegistryError> {
        let damaged = |message: String| RegistryError::Damaged {
            path: pointer.to_path_buf(),
            message,
        };
        let record = self.record(hash)?.ok_or_else(|| {
            damaged(format!(
                "it points at {}, which has no record",
                hash.to_hex()
            ))
        })?;
        if record.name != name || version.is_some_and(|v| v != record.version) {
            return Err(damaged(format!(
                "it points at {} ({}), a rule of another name or version",
                hash.to_hex(),
                record.id()
            )));
        }
        if version.is_none() && self.version(&record.name, &record.version)? != Some(*hash) {
            return Err(damaged(format!(
                "it points at {} ({}), which is not published",
                hash.to_hex(),
                record.id()
            )));
        }
        Ok(record)
    }

    /// Reads everything published, collecting problems instead of failing on
    /// them.
    fn scan(&self) -> Result<Scan, RegistryError> {
        let mut scan = Scan::default();
        for file in list_dir(&self.root.join("versions"))? {
            let path = self.root.join("versions").join(&file);
            let Some((name, version)) = file.split_once('@') else {
                scan.problems.push(Problem {
                    path,
                    message: "not a name@version file".into(),
                });
                continue;
            };
            let record = self.read_pointer(&path).and_then(|hash| match hash {
                Some(hash) => self.pointed_record(&path, &hash, name, Some(version)),
                None => Err(RegistryError::Damaged {
                    path: path.clone(),
                    message: "it vanished while being read".into(),
                }),
            });
            match record {
                Ok(record) => scan.entries.push(Entry {
                    record,
                    tags: Vec::new(),
                }),
                Err(e) => scan.problems.push(Problem {
                    path,
                    message: e.to_string(),
                }),
            }
        }
        for file in list_dir(&self.root.join("tags"))? {
            let path = self.root.join("tags").join(&file);
            let Some((name, tag)) = file.split_once('@') else {
                scan.problems.push(Problem {
                    path,
                    message: "not a name@tag file".into(),
                });
                continue;
            };
            let target = match self.read_pointer(&path) {
                Ok(Some(hash)) => hash.to_hex().to_string(),
                Ok(None) => continue,
                Err(e) => {
                    scan.problems.push(Problem {
                        path,
                        message: e.to_string(),
                    });
                    continue;
                }
            };
            match scan
                .entries
                .iter_mut()
                .find(|e| e.record.hash == target && e.record.name == name)
            {
                Some(entry) => entry.tags.push(tag.to_string()),
                None => scan.problems.push(Problem {
                    path,
                    message: format!(
                        "it points at {target}, which is not a published version of {name}"
                    ),
                }),
            }
        }
        scan.entries.sort_by(|a, b| {
            a.record
                .name
                .cmp(&b.record.name)
                .then_with(|| version_order(&a.record.version, &b.record.version))
        });
        Ok(scan)
    }

    /// Every published rule with its tags, by name then version. Inconsistent
    /// entries are left out (see [`Registry::verify`]).
    pub fn entries(&self) -> Result<Vec<Entry>, RegistryError> {
        Ok(self.scan()?.entries)
    }

    /// Like [`Registry::entries`], with the problems met on the way.
    pub fn entries_and_problems(&self) -> Result<(Vec<Entry>, Vec<Problem>), RegistryError> {
        let scan = self.scan()?;
        Ok((scan.entries, scan.problems))
    }

    /// The tags pointing at a published rule.
    pub fn tags_of(&self, record: &Record) -> Result<Vec<String>, RegistryError> {
        Ok(self
            .entries()?
            .into_iter()
            .find(|e| e.record.hash == record.hash)
            .map(|e| e.tags)
            .unwrap_or_default())
    }

    /// The published record with this hash, if it is published.
    pub fn published(&self, hash: &blake3::Hash) -> Result<Option<Record>, RegistryError> {
        match self.record(hash)? {
            Some(record) if self.version(&record.name, &record.version)? == Some(*hash) => {
                Ok(Some(record))
            }
            _ => Ok(None),
        }
    }

    /// The bytes of a stored rule, checked against its hash: a modified blob
    /// is an error, so its bytes never reach a caller.
    pub fn read_blob(&self, hash: &blake3::Hash) -> Result<Vec<u8>, RegistryError> {
        let blob = self.blob_path(hash);
        let bytes = match std::fs::read(&blob) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(RegistryError::MissingBlob {
                    blob,
                    expected: hash.to_hex().to_string(),
                });
            }
            Err(e) => return Err(io_error(&blob, "read")(e)),
        };
        let actual = blake3::hash(&bytes);
        if actual != *hash {
            return Err(RegistryError::Tampered {
                blob,
                expected: hash.to_hex().to_string(),
                actual: actual.to_hex().to_string(),
            });
        }
        Ok(bytes)
    }

    /// Finds the published rule a registry reference (hash, prefix,
    /// `name@version` or `name@tag`) names.
    pub fn find(&self, reference: &str) -> Result<(RefKind, Record), RegistryError> {
        let bad = |why: &str| RegistryError::BadReference {
            reference: reference.to_string(),
            why: why.to_string(),
        };
        if let Some((name, rest)) = reference.split_once('@') {
            if !valid_name(name) {
                return Err(bad("the part before `@` is not a rule name"));
            }
            if valid_version(rest) {
                let Some(hash) = self.version(name, rest)? else {
                    let mut known: Vec<String> = self
                        .entries()?
                        .into_iter()
                        .filter(|e| e.record.name == name)
                        .map(|e| e.record.version)
                        .collect();
                    known.sort_by(|a, b| version_order(a, b));
                    return Err(RegistryError::UnknownVersion {
                        name: name.to_string(),
                        version: rest.to_string(),
                        registry: self.root.clone(),
                        known,
                    });
                };
                let record =
                    self.pointed_record(&self.version_path(name, rest), &hash, name, Some(rest))?;
                return Ok((RefKind::Version, record));
            }
            if valid_tag(rest) {
                let Some(hash) = self.tag_target(name, rest)? else {
                    return Err(RegistryError::UnknownTag {
                        name: name.to_string(),
                        tag: rest.to_string(),
                        registry: self.root.clone(),
                    });
                };
                let record = self.pointed_record(&self.tag_path(name, rest), &hash, name, None)?;
                return Ok((RefKind::Tag, record));
            }
            // Versions start with a digit: say what is wrong with one.
            if let Some(Err(why)) = rest
                .starts_with(|c: char| c.is_ascii_digit())
                .then(|| parse_version(rest))
            {
                return Err(bad(&format!(
                    "the part after `@` is neither a version nor a tag: as a version, {why}"
                )));
            }
            return Err(bad("the part after `@` is neither a version nor a tag"));
        }
        let hex = reference.len() >= MIN_PREFIX
            && reference.len() <= 64
            && reference.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex {
            return Err(bad(
                "it is not an existing file, a hash, name@version or name@tag",
            ));
        }
        let prefix = reference.to_ascii_lowercase();
        let mut matches = Vec::new();
        for file in list_dir(&self.root.join("versions"))? {
            let path = self.root.join("versions").join(&file);
            if let Ok(Some(hash)) = self.read_pointer(&path)
                && hash.to_hex().starts_with(&prefix)
                && !matches.iter().any(|(h, _)| *h == hash)
            {
                matches.push((hash, file));
            }
        }
        match matches.len() {
            0 => Err(RegistryError::UnknownHash {
                prefix,
                registry: self.root.clone(),
            }),
            1 => {
                let (hash, file) = matches.remove(0);
                let (name, version) = file.split_once('@').unwrap_or((&file, ""));
                let record = self.pointed_record(
                    &self.root.join("versions").join(&file),
                    &hash,
                    name,
                    Some(version),
                )?;
                Ok((RefKind::Hash, record))
            }
            _ => Err(RegistryError::AmbiguousHash {
                prefix,
                registry: self.root.clone(),
                candidates: matches
                    .iter()
                    .map(|(hash, file)| format!("{} ({file})", hash.to_hex()))
                    .collect(),
            }),
        }
    }

    /// Resolves a registry reference to its checked bytes.
    fn resolve(&self, reference: &str) -> Result<Resolved, RegistryError> {
        let (kind, record) = self.find(reference)?;
        let hash = parse_hash(&record.hash).ok_or_else(|| RegistryError::Damaged {
            path: self.root.join("rules"),
            message: format!("a record holds the hash {:?}", record.hash),
        })?;
        let bytes = self.read_blob(&hash)?;
        Ok(Resolved {
            reference: reference.to_string(),
            kind,
            hash,
            bytes,
            origin: Origin::Registry {
                root: self.root.clone(),
                blob: self.blob_path(&hash),
                record,
            },
        })
    }
}

/// Whether a reference that is not an existing file was meant as a path.
fn looks_like_path(reference: &str) -> bool {
    reference.contains(std::path::MAIN_SEPARATOR)
        || reference.contains('/')
        || Path::new(reference)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("wasm"))
}

/// Resolves a reference to rule bytes that match their hash.
///
/// A reference is, tried in this order:
/// - a path to an existing file: its bytes are read and hashed, and no
///   registry is needed;
/// - `name@version` or `name@tag` (tags start with a letter, versions with a
///   digit);
/// - a full blake3 hash or a prefix of at least [`MIN_PREFIX`] hex digits that
///   only one published rule's hash starts with.
///
/// Bytes from the registry are checked against their hash: a modified blob is
/// an error ([`RegistryError::Tampered`]).
pub fn resolve(reference: &str, registry: &Path) -> Result<Resolved, RegistryError> {
    let path = Path::new(reference);
    if path.is_file() {
        let bytes = std::fs::read(path).map_err(io_error(path, "read"))?;
        return Ok(Resolved {
            reference: reference.to_string(),
            kind: RefKind::Path,
            hash: blake3::hash(&bytes),
            bytes,
            origin: Origin::File {
                path: path.to_path_buf(),
            },
        });
    }
    if looks_like_path(reference) && !reference.contains('@') {
        return Err(RegistryError::FileMissing {
            path: path.to_path_buf(),
        });
    }
    Registry::open(registry)?.resolve(reference)
}

/// Resolves a reference and loads the rule. A rule from the registry is
/// compiled through the registry's cache ([`cache`]); a file through the
/// user's ([`cache::user_dir`]), or directly when there is none.
pub fn load(reference: &str, registry: &Path, limits: Limits) -> Result<Loaded, RegistryError> {
    let resolved = resolve(reference, registry)?;
    match &resolved.origin {
        Origin::File { path } => {
            let Some(dir) = cache::user_dir() else {
                let rule = Rule::from_bytes(path, &resolved.bytes, limits)?;
                return Ok(Loaded {
                    rule,
                    resolved,
                    cache: None,
                });
            };
            let (rule, outcome) = cache::load(&dir, &resolved.hash, &resolved.bytes, path, limits)?;
            Ok(Loaded {
                rule,
                resolved,
                cache: Some(outcome),
            })
        }
        Origin::Registry { root, blob, .. } => {
            let registry = Registry { root: root.clone() };
            let (rule, outcome) = cache::load(
                &registry.cache_dir(),
                &resolved.hash,
                &resolved.bytes,
                blob,
                limits,
            )?;
            Ok(Loaded {
                rule,
                resolved,
                cache: Some(outcome),
            })
        }
    }
}

/// Resolves a reference (see [`resolve`]) and loads the rule; its `hash` is
/// the resolved hash, the one to stamp on output.
pub fn load_rule(reference: &str, registry: &Path, limits: Limits) -> Result<Rule, RegistryError> {
    load(reference, registry, limits).map(|loaded| loaded.rule)
}

/// What `publish` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PublishStatus {
    /// The rule is now published.
    Published,
    /// The same bytes were already published under this name and version:
    /// nothing changed.
    AlreadyPublished,
    /// The same bytes were already published, but their blob or record was
    /// missing or damaged and has been written again.
    Restored,
}

/// The outcome of [`publish`].
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    pub status: PublishStatus,
    pub record: Record,
    /// The golden cases that were checked, if any were run.
    pub golden: Option<golden::GoldenSummary>,
    /// The component that was published (for a crate, where it was built).
    pub source: PathBuf,
}

/// The golden file that goes with a publish source, if there is one: in a
/// crate directory `golden.jsonl`; next to a component `x.wasm` the file
/// `x.golden.jsonl`, else `golden.jsonl`.
pub fn golden_file_for(source: &Path) -> Option<PathBuf> {
    if source.is_dir() {
        return Some(source.join(golden::FILE_NAME)).filter(|p| p.is_file());
    }
    let dir = source
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stem = source.file_stem()?.to_string_lossy();
    [
        dir.join(format!("{stem}.golden.jsonl")),
        dir.join(golden::FILE_NAME),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// The bytes of a rule: a component file's, or, for a rule crate directory,
/// those of the component built from it (in a temporary directory, as
/// `tally rule build` builds it).
pub fn component_bytes(source: &Path) -> Result<Vec<u8>, RegistryError> {
    if source.is_dir() {
        build_crate(source)
    } else {
        std::fs::read(source).map_err(io_error(source, "read the component"))
    }
}

/// Builds a rule crate into a temporary directory and returns the component's
/// bytes.
fn build_crate(dir: &Path) -> Result<Vec<u8>, RegistryError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let temp = std::env::temp_dir().join(format!("tally-publish-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&temp).map_err(io_error(&temp, "create the directory"))?;
    let built = build::build(dir, Some(&temp.join("rule.wasm")))
        .map_err(RegistryError::from)
        .and_then(|built| {
            std::fs::read(&built.component).map_err(io_error(&built.component, "read"))
        });
    let _ = std::fs::remove_dir_all(&temp);
    built
}

/// Runs the golden cases in `file` through `rule`: their summary when every
/// case passes, else [`RegistryError::GoldenFailed`] naming each failed case.
/// `refused` ends the message (what the failure stops, if anything).
pub fn check_golden(
    rule: &Rule,
    file: &Path,
    refused: &'static str,
) -> Result<golden::GoldenSummary, RegistryError> {
    let cases = golden::read(file)?;
    let mismatches = golden::check(rule, &cases)?;
    if !mismatches.is_empty() {
        return Err(RegistryError::GoldenFailed {
            rule: rule.label().to_string(),
            file: file.to_path_buf(),
            total: cases.len(),
            failures: mismatches.iter().map(ToString::to_string).collect(),
            refused,
        });
    }
    Ok(golden::GoldenSummary {
        file: file.to_path_buf(),
        cases: cases.len(),
    })
}

/// Publishes a rule: `source` is a component file or a rule crate directory
/// (built first). The component must be a valid rule, its name and version
/// usable, and it must pass the golden cases in `golden` (which callers
/// usually find with [`golden_file_for`]; `None` publishes without any).
/// The cases run whether or not these bytes are already published.
/// Publishing the same bytes again is a no-op; different bytes under a
/// published name and version are refused.
pub fn publish(
    source: &Path,
    registry: &Path,
    golden: Option<&Path>,
    limits: Limits,
) -> Result<Published, RegistryError> {
    let bytes = component_bytes(source)?;
    let hash = blake3::hash(&bytes);
    let hex = hash.to_hex().to_string();
    let rule = Rule::from_bytes(source, &bytes, limits)?;
    let (name, version) = (rule.info.name.clone(), rule.info.version.clone());
    if !valid_name(&name) {
        return Err(RegistryError::InvalidName { name });
    }
    if let Err(reason) = parse_version(&version) {
        return Err(RegistryError::InvalidVersion {
            name,
            version,
            reason,
        });
    }
    // Before anything else: a rule already published with other (or no)
    // golden cases is still checked against these.
    let golden_summary = match golden {
        Some(file) => Some(check_golden(&rule, file, ", so it was not published")?),
        None => None,
    };
    let record = Record {
        name: name.clone(),
        version: version.clone(),
        hash: hex.clone(),
        world: WORLD.to_string(),
        sdk_version: rule.info.sdk_version.clone(),
        size: bytes.len() as u64,
        published_at: now_rfc3339(),
    };
    // Only looked at until here: a refused publish creates nothing.
    let registry = Registry {
        root: registry.to_path_buf(),
    };
    let conflict = |published: blake3::Hash| RegistryError::Conflict {
        name: name.clone(),
        version: version.clone(),
        published: published.to_hex().to_string(),
        new: hex.clone(),
    };
    let outcome = |status, record| Published {
        status,
        record,
        golden: golden_summary.clone(),
        source: source.to_path_buf(),
    };

    match registry.version(&name, &version)? {
        Some(published) if published == hash => {
            let restored = restore(&registry, &hash, &bytes, &record)?;
            let record = registry.record(&hash)?.unwrap_or(record);
            let status = if restored {
                PublishStatus::Restored
            } else {
                PublishStatus::AlreadyPublished
            };
            return Ok(outcome(status, record));
        }
        Some(published) => return Err(conflict(published)),
        None => {}
    }

    // The blob and the record first, then the claim on name@version: a rule
    // is published at the moment its version file appears, complete.
    let registry = Registry::create(&registry.root)?;
    write_blob(&registry, &hash, &bytes)?;
    let record_path = registry.record_path(&hash);
    let record_json = serde_json::to_vec_pretty(&record).unwrap_or_default();
    fsio::write_atomic(&record_path, &record_json).map_err(io_error(&record_path, "write"))?;
    let version_path = registry.version_path(&name, &version);
    let claimed = fsio::create_new_atomic(&version_path, format!("{hex}\n").as_bytes())
        .map_err(io_error(&version_path, "write"))?;
    if !claimed {
        // Another publisher got there first.
        return match registry.version(&name, &version)? {
            Some(published) if published == hash => {
                let record = registry.record(&hash)?.unwrap_or(record);
                Ok(outcome(PublishStatus::AlreadyPublished, record))
            }
            Some(published) => {
                let _ = std::fs::remove_file(&record_path);
                let _ = std::fs::remove_file(registry.blob_path(&hash));
                Err(conflict(published))
            }
            None => Err(RegistryError::Damaged {
                path: version_path,
                message: "it could not be created, yet does not exist".into(),
            }),
        };
    }
    Ok(outcome(PublishStatus::Published, record))
}

/// Writes a blob unless an intact one is there.
fn write_blob(
    registry: &Registry,
    hash: &blake3::Hash,
    bytes: &[u8],
) -> Result<bool, RegistryError> {
    let blob = registry.blob_path(hash);
    let intact = std::fs::read(&blob).is_ok_and(|stored| blake3::hash(&stored) == *hash);
    if intact {
        return Ok(false);
    }
    fsio::write_atomic(&blob, bytes).map_err(io_error(&blob, "write"))?;
    Ok(true)
}

/// For a rule already published with these bytes: writes its blob and record
/// again if they are missing or damaged. Returns whether anything was written.
fn restore(
    registry: &Registry,
    hash: &blake3::Hash,
    bytes: &[u8],
    record: &Record,
) -> Result<bool, RegistryError> {
    let mut restored = write_blob(registry, hash, bytes)?;
    let intact = matches!(registry.record(hash), Ok(Some(r)) if r.name == record.name && r.version == record.version);
    if !intact {
        let path = registry.record_path(hash);
        let json = serde_json::to_vec_pretty(record).unwrap_or_default();
        fsio::write_atomic(&path, &json).map_err(io_error(&path, "write"))?;
        restored = true;
    }
    Ok(restored)
}

/// The outcome of [`tag`].
#[derive(Debug, Clone, Serialize)]
pub struct Tagged {
    pub name: String,
    pub tag: String,
    /// The rule the tag now points at.
    pub record: Record,
    /// The hash it pointed at before, if any.
    pub previous: Option<String>,
}

/// Points `name@tag` at the published rule `reference` names (a hash, a
/// prefix, a reference of any form, or a component file that is published),
/// which must be a version of `name`. Moving a tag is one atomic rename.
pub fn tag(
    registry: &Path,
    name: &str,
    tag: &str,
    reference: &str,
) -> Result<Tagged, RegistryError> {
    if !valid_name(name) {
        return Err(RegistryError::InvalidName {
            name: name.to_string(),
        });
    }
    if !valid_tag(tag) {
        return Err(RegistryError::InvalidTag {
            tag: tag.to_string(),
        });
    }
    let resolved = resolve(reference, registry)?;
    let registry = Registry::open(registry)?;
    let record = match resolved.origin {
        Origin::Registry { record, .. } => record,
        Origin::File { path } => {
            let record =
                registry
                    .published(&resolved.hash)?
                    .ok_or_else(|| RegistryError::NotPublished {
                        path,
                        hash: resolved.hash.to_hex().to_string(),
                        registry: registry.root.clone(),
                    })?;
            // The stored copy must be intact too.
            registry.read_blob(&resolved.hash)?;
            record
        }
    };
    if record.name != name {
        return Err(RegistryError::TagWrongName {
            name: name.to_string(),
            tag: tag.to_string(),
            hash: record.hash.clone(),
            actual: record.id(),
        });
    }
    let previous = registry
        .tag_target(name, tag)
        .ok()
        .flatten()
        .map(|h| h.to_hex().to_string());
    let path = registry.tag_path(name, tag);
    let dir = registry.root.join("tags");
    std::fs::create_dir_all(&dir).map_err(io_error(&dir, "create the directory"))?;
    fsio::write_atomic(&path, format!("{}\n", record.hash).as_bytes())
        .map_err(io_error(&path, "write"))?;
    Ok(Tagged {
        name: name.to_string(),
        tag: tag.to_string(),
        record,
        previous,
    })
}

/// One stored blob, re-hashed by [`Registry::verify`].
#[derive(Debug, Clone, Serialize)]
pub struct BlobCheck {
    pub path: PathBuf,
    /// The hash in its name.
    pub hash: String,
    /// `name@version`, if a record describes it.
    pub rule: Option<String>,
    pub ok: bool,
}

/// What [`Registry::verify`] found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    pub blobs: Vec<BlobCheck>,
    /// The compiled-code cache entries, each compared with a fresh compile of
    /// its rule ([`cache::verify`]).
    pub cache: Vec<cache::EntryCheck>,
    /// Anything wrong: tampered or missing blobs, damaged records, versions
    /// or tags, modified compiled code.
    pub problems: Vec<Problem>,
    /// Harmless leftovers (for example the record of an interrupted publish,
    /// or its temporary files).
    pub notes: Vec<Problem>,
}

impl Verification {
    /// Whether nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The temporary files in a directory (see [`fsio::is_temp`]), sorted.
fn temp_files(dir: &Path) -> Result<Vec<PathBuf>, RegistryError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(dir, "list")(e)),
    };
    let mut temps = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(dir, "list"))?;
        if fsio::is_temp(&entry.file_name().to_string_lossy()) {
            temps.push(entry.path());
        }
    }
    temps.sort();
    Ok(temps)
}

impl Registry {
    /// Re-hashes every stored blob, checks every record, version and tag,
    /// compares every compiled-code cache entry for this engine with a fresh
    /// compile of its rule, and notes leftover temporary files.
    pub fn verify(&self) -> Result<Verification, RegistryError> {
        let scan = self.scan()?;
        let mut report = Verification {
            problems: scan.problems,
            ..Verification::default()
        };
        let published: std::collections::HashMap<String, String> = scan
            .entries
            .iter()
            .map(|e| (e.record.hash.clone(), e.record.id()))
            .collect();

        let mut recorded = std::collections::HashMap::new();
        for file in list_dir(&self.root.join("rules"))? {
            let path = self.root.join("rules").join(&file);
            let Some(hash) = file.strip_suffix(".json").and_then(parse_hash) else {
                report.problems.push(Problem {
                    path,
                    message: "not a <blake3>.json record".into(),
                });
                continue;
            };
            match self.record(&hash) {
                Ok(Some(record)) => {
                    if !self.blob_path(&hash).is_file() {
                        report.problems.push(Problem {
                            path: self.blob_path(&hash),
                            message: format!(
                                "the blob of {} is missing; publish the component again to restore it",
                                record.id()
                            ),
                        });
                    }
                    if !published.contains_key(&record.hash) {
                        report.notes.push(Problem {
                            path,
                            message: format!(
                                "a record of {} that is not published (left by an interrupted or refused publish)",
                                record.id()
                            ),
                        });
                    }
                    recorded.insert(record.hash.clone(), record.id());
                }
                Ok(None) => {}
                Err(e) => report.problems.push(Problem {
                    path,
                    message: e.to_string(),
                }),
            }
        }

        for file in list_dir(&self.root.join("blobs"))? {
            let path = self.root.join("blobs").join(&file);
            let Some(hash) = file.strip_suffix(".wasm").and_then(parse_hash) else {
                report.problems.push(Problem {
                    path,
                    message: "not a <blake3>.wasm blob".into(),
                });
                continue;
            };
            let hex = hash.to_hex().to_string();
            let mut hasher = blake3::Hasher::new();
            hasher.update_mmap(&path).map_err(io_error(&path, "read"))?;
            let actual = hasher.finalize();
            let rule = recorded.get(&hex).cloned();
            let ok = actual == hash;
            if !ok {
                report.problems.push(Problem {
                    path: path.clone(),
                    message: format!(
                        "TAMPERED: its bytes hash to {}, not {hex}{}; it will not be loaded (publish the original component again to restore it)",
                        actual.to_hex(),
                        rule.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
                    ),
                });
            } else if rule.is_none() {
                report.notes.push(Problem {
                    path: path.clone(),
                    message: "a blob without a record (left by an interrupted or refused publish)"
                        .into(),
                });
            }
            report.blobs.push(BlobCheck {
                path,
                hash: hex,
                rule,
                ok,
            });
        }

        let cache = cache::verify(self, &recorded)?;
        report.cache = cache.entries;
        report.problems.extend(cache.problems);
        report.notes.extend(cache.notes);

        let dirs = std::iter::once(self.root.clone()).chain(SUBDIRS.map(|d| self.root.join(d)));
        for dir in dirs {
            for path in temp_files(&dir)? {
                report.notes.push(Problem {
                    path,
                    message: "a temporary file, left by an interrupted publish or write (or one still under way); it is never read, and can be deleted when nothing is writing to the registry".into(),
                });
            }
        }
        Ok(report)
    }
}

/// Re-hashes every blob of the registry at `registry` (see
/// [`Registry::verify`]).
pub fn verify(registry: &Path) -> Result<Verification, RegistryError> {
    Registry::open(registry)?.verify()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_semantic() {
        for good in [
            "1.0.0",
            "0.1.0",
            "10.20.30",
            "1.0.0-rc.1",
            "1.0.0+build.5",
            "1.2.3-alpha-1+x",
        ] {
            assert!(valid_version(good), "{good}");
        }
        for bad in [
            "1.0",
            "1",
            "01.0.0",
            "1.0.0-",
            "1.0.0+",
            "v1.0.0",
            "1.0.0-a..b",
            "1.0.0-rc.01",
            "1.00.0",
            "prod",
            "",
            "1.0.0/x",
        ] {
            assert!(!valid_version(bad), "{bad}");
        }
    }

    #[test]
    fn names_and_tags_are_safe_file_names() {
        for good in ["creator-pay", "a", "rule_2.x", "9lives"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "",
            "Creator",
            "a/b",
            "..",
            ".hidden",
            "a@b",
            "a b",
            &"x".repeat(65),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(valid_tag("prod"));
        assert!(!valid_tag("1.0.0"), "a version is never a tag");
        assert!(!valid_tag("9lives"));
    }

    #[test]
    fn versions_sort_by_semver_precedence() {
        let mut v = vec![
            "10.0.0",
            "2.0.0",
            "2.0.0-rc.10",
            "2.0.0-rc.2",
            "2.0.0-rc.1",
            "1.10.0",
            "1.9.0",
        ];
        v.sort_by(|a, b| version_order(a, b));
        assert_eq!(
            v,
            [
                "1.9.0",
                "1.10.0",
                "2.0.0-rc.1",
                "2.0.0-rc.2",
                "2.0.0-rc.10",
                "2.0.0",
                "10.0.0"
            ]
        );
    }

    /// `rule list` (the scan) and the versions an unknown version's error
    /// lists follow semver precedence, not the order of the files.
    #[test]
    fn published_versions_are_listed_by_precedence() {
        // Written in an order that text order and the old by-number order
        // both get wrong.
        let versions = ["1.0.0", "1.0.0-rc.10", "1.0.0-rc.2", "1.0.0-rc.1", "0.9.0"];
        let rules: Vec<(&str, &str, &[u8])> =
            versions.iter().map(|v| ("r", *v, v.as_bytes())).collect();
        let (_dir, registry) = registry_with(&rules);
        let listed: Vec<String> = registry
            .entries()
            .unwrap()
            .into_iter()
            .map(|e| e.record.version)
            .collect();
        let want = ["0.9.0", "1.0.0-rc.1", "1.0.0-rc.2", "1.0.0-rc.10", "1.0.0"];
        assert_eq!(listed, want);
        let err = registry.find("r@2.0.0").unwrap_err().to_string();
        assert!(
            err.contains(&format!("published versions: {}", want.join(", "))),
            "{err}"
        );
    }

    /// A reference whose version is not one says what is wrong with it.
    #[test]
    fn a_malformed_version_in_a_reference_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::create(&dir.path().join("r")).unwrap();
        for (reference, why) in [
            (
                "r@1.0.0-rc.01",
                "invalid leading zero in pre-release identifier",
            ),
            ("r@01.0.0", "invalid leading zero in major version number"),
            (
                "r@1.0",
                "unexpected end of input while parsing minor version number",
            ),
        ] {
            let err = registry.find(reference).unwrap_err().to_string();
            assert!(
                err.contains(&format!("neither a version nor a tag: as a version, {why}")),
                "{reference}: {err}"
            );
        }
    }

    #[test]
    fn the_location_defaults_to_the_environment_then_the_current_directory() {
        assert_eq!(location(Some(Path::new("/r"))), PathBuf::from("/r"));
        // The environment is process-wide: only read it here.
        let expected = match std::env::var_os(ENV_VAR) {
            Some(v) if !v.is_empty() => PathBuf::from(v),
            _ => PathBuf::from(DEFAULT_DIR),
        };
        assert_eq!(location(None), expected);
    }

    #[test]
    fn references_that_are_not_one_are_refused_without_touching_the_registry() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nothing-here");
        for (reference, expected) in [
            ("abc", "not a rule reference"),
            ("Creator@1.0.0", "not a rule name"),
            ("creator-pay@", "neither a version nor a tag"),
            ("creator-pay@1.0", "neither a version nor a tag"),
            ("missing/rule.wasm", "does not exist"),
            ("rule.wasm", "does not exist"),
        ] {
            let registry = Registry::create(&missing).unwrap();
            let err = match reference.contains('/') || reference.ends_with(".wasm") {
                true => resolve(reference, registry.root()).unwrap_err(),
                false => registry.find(reference).unwrap_err(),
            };
            assert!(err.to_string().contains(expected), "{reference}: {err}");
        }
        let err = resolve("abcdef", &dir.path().join("nope")).unwrap_err();
        assert!(matches!(err, RegistryError::Missing { .. }), "{err}");
    }

    /// A registry with two published hashes sharing a prefix, written by hand.
    fn registry_with(hashes: &[(&str, &str, &[u8])]) -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::create(dir.path()).unwrap();
        for (name, version, bytes) in hashes {
            let hash = blake3::hash(bytes);
            let record = Record {
                name: name.to_string(),
                version: version.to_string(),
                hash: hash.to_hex().to_string(),
                world: WORLD.into(),
                sdk_version: String::new(),
                size: bytes.len() as u64,
                published_at: now_rfc3339(),
            };
            std::fs::write(registry.blob_path(&hash), bytes).unwrap();
            std::fs::write(
                registry.record_path(&hash),
                serde_json::to_vec(&record).unwrap(),
            )
            .unwrap();
            assert!(
                fsio::create_new_atomic(
                    &registry.version_path(name, version),
                    format!("{}\n", hash.to_hex()).as_bytes()
                )
                .unwrap()
            );
        }
        (dir, registry)
    }

    #[test]
    fn hashes_and_prefixes_resolve_and_ambiguity_lists_candidates() {
        let (_dir, registry) = registry_with(&[("a", "1.0.0", b"rule-a")]);
        let full = blake3::hash(b"rule-a").to_hex().to_string();
        // Two real hashes sharing 6 hex digits take millions of tries to
        // find; a version file pointing at a made-up hash that shares exactly
        // 6 digits makes a prefix ambiguous just the same.
        let seventh = if &full[6..7] == "0" { "1" } else { "0" };
        let twin = format!("{}{seventh}{}", &full[..6], &full[7..]);
        std::fs::write(registry.version_path("b", "1.0.0"), format!("{twin}\n")).unwrap();

        let (kind, record) = registry.find(&full).unwrap();
        assert_eq!((kind, record.id().as_str()), (RefKind::Hash, "a@1.0.0"));
        let (kind, record) = registry.find(&full[..7].to_ascii_uppercase()).unwrap();
        assert_eq!((kind, record.id().as_str()), (RefKind::Hash, "a@1.0.0"));
        let err = registry.find(&full[..6]).unwrap_err();
        let RegistryError::AmbiguousHash { candidates, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(
            candidates,
            &[format!("{full} (a@1.0.0)"), format!("{twin} (b@1.0.0)")]
        );
        let err = registry.find(&full[..5]).unwrap_err();
        assert!(matches!(err, RegistryError::BadReference { .. }), "{err}");
        let err = registry.find(&twin).unwrap_err().to_string();
        assert!(err.contains("which has no record"), "{err}");

        let (kind, record) = registry.find("a@1.0.0").unwrap();
        assert_eq!(
            (kind, record.hash.as_str()),
            (RefKind::Version, full.as_str())
        );
        let resolved = registry.resolve("a@1.0.0").unwrap();
        assert_eq!(resolved.bytes, b"rule-a");
        let err = registry.find("a@2.0.0").unwrap_err().to_string();
        assert!(err.contains("published versions: 1.0.0"), "{err}");
        let err = registry.find("a@prod").unwrap_err().to_string();
        assert!(err.contains("no tag a@prod"), "{err}");
    }

    #[test]
    fn a_modified_blob_is_never_handed_out() {
        let (_dir, registry) = registry_with(&[("a", "1.0.0", b"original")]);
        let hash = blake3::hash(b"original");
        std::fs::write(registry.blob_path(&hash), b"0riginal").unwrap();
        let err = registry.resolve("a@1.0.0").unwrap_err();
        assert!(matches!(err, RegistryError::Tampered { .. }), "{err}");
        let report = registry.verify().unwrap();
        assert!(!report.ok());
        assert!(report.problems[0].message.contains("TAMPERED"));
        std::fs::remove_file(registry.blob_path(&hash)).unwrap();
        let err = registry.resolve("a@1.0.0").unwrap_err();
        assert!(matches!(err, RegistryError::MissingBlob { .. }), "{err}");
    }

    #[test]
    fn tags_must_point_at_published_versions_of_their_name() {
        let (dir, registry) = registry_with(&[("a", "1.0.0", b"one"), ("b", "1.0.0", b"two")]);
        let one = blake3::hash(b"one").to_hex().to_string();
        let tagged = tag(dir.path(), "a", "prod", &one[..10]).unwrap();
        assert_eq!(tagged.previous, None);
        assert_eq!(registry.find("a@prod").unwrap().1.hash, one);
        let err = tag(dir.path(), "b", "prod", &one).unwrap_err().to_string();
        assert!(
            err.contains("that rule is a@1.0.0, not a version of b"),
            "{err}"
        );
        let err = tag(dir.path(), "a", "1.0.0", &one).unwrap_err();
        assert!(matches!(err, RegistryError::InvalidTag { .. }), "{err}");
        let entries = registry.entries().unwrap();
        assert_eq!(entries[0].tags, vec!["prod".to_string()]);
        assert!(entries[1].tags.is_empty());
    }
}
