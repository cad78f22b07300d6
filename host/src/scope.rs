//! Entity-scoped backfill: the creators a run recomputes (`tally run
//! --creators FILE`), and what the output records of such a run.
//!
//! A scoped run reads and deduplicates every input as any run does (dedup
//! does not care whose events they are), classifies only the listed
//! creators' events, and commits only their rows: their published rows are
//! reconciled with the new ones, and every other creator's published rows
//! are carried over as they are, with the rule hash each was stamped with.
//! A partition whose rows then carry several rule hashes says so
//! (`rule_hashes` in its manifest, `tally.rule_hashes` in its footer), and
//! `tally status` and `tally lineage` show it. The list itself is kept in
//! the output (`_tally/scopes/commit=N.txt`, sorted, one id a line), so an
//! auditor can see exactly whose rows a commit recomputed, and `tally
//! verify` checks those rows.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What can be wrong with a list of creators.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    #[error("cannot read the creators file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the creators file {path} lists no creator (one creator id a line)")]
    Empty { path: PathBuf },
    #[error("the creators file {path}, line {line}: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// The creators a scoped run recomputes.
#[derive(Debug, Clone)]
pub struct CreatorScope {
    creators: BTreeSet<String>,
    /// The file as it was named.
    pub given: String,
}

impl CreatorScope {
    /// Reads a creators file: one creator id a line, surrounding spaces and
    /// blank lines ignored, duplicates counted once.
    pub fn read(path: &Path) -> Result<CreatorScope, ScopeError> {
        let text = std::fs::read(path).map_err(|source| ScopeError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let line_error = |line: usize, message: &str| ScopeError::Line {
            path: path.to_path_buf(),
            line,
            message: message.to_string(),
        };
        let mut creators = BTreeSet::new();
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            let line = std::str::from_utf8(line).map_err(|_| line_error(i + 1, "not UTF-8"))?;
            let id = line.trim();
            if id.is_empty() {
                continue;
            }
            if id.chars().any(char::is_control) {
                return Err(line_error(i + 1, "a creator id with a control character"));
            }
            creators.insert(id.to_string());
        }
        if creators.is_empty() {
            return Err(ScopeError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(CreatorScope {
            creators,
            given: path.display().to_string(),
        })
    }

    /// Whether `creator` is listed.
    pub fn contains(&self, creator: &str) -> bool {
        self.creators.contains(creator)
    }

    /// How many rows of the partition file at `path` are of these creators.
    pub fn published_rows(&self, path: &Path) -> Result<u64, crate::reconcile::ReconcileError> {
        let published = crate::reconcile::Published::read(path)?;
        Ok((0..published.len())
            .filter(|&i| self.contains(published.row(i).0.creator))
            .count() as u64)
    }

    /// The listed creators, in byte order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.creators.iter().map(String::as_str)
    }

    /// How many creators are listed.
    pub fn len(&self) -> usize {
        self.creators.len()
    }

    /// Whether none is (never, for a scope read from a file).
    pub fn is_empty(&self) -> bool {
        self.creators.is_empty()
    }

    /// The list as the output keeps it: sorted by bytes, one id a line.
    pub fn text(&self) -> String {
        self.creators.iter().map(|c| format!("{c}\n")).collect()
    }

    /// What a commit records of this scope, its list kept at `list`
    /// (relative to the output root).
    pub fn record(&self, list: &Path) -> ScopeRecord {
        ScopeRecord {
            creators: self.creators.len() as u64,
            list: list.display().to_string(),
            blake3: blake3::hash(self.text().as_bytes()).to_hex().to_string(),
            given: self.given.clone(),
        }
    }

    /// Reads the list a commit kept (see [`ScopeRecord::list`]), checking
    /// its hash.
    pub fn kept(out: &Path, record: &ScopeRecord) -> Result<CreatorScope, ScopeError> {
        let path = out.join(&record.list);
        let scope = CreatorScope::read(&path)?;
        let blake3 = blake3::hash(scope.text().as_bytes()).to_hex().to_string();
        if blake3 != record.blake3 {
            return Err(ScopeError::Line {
                path,
                line: 0,
                message: format!(
                    "its blake3 is {blake3}, the commit recorded {}",
                    record.blake3
                ),
            });
        }
        Ok(scope)
    }
}

/// The scope of a commit, as its log entry, its report and the manifests of
/// the partitions it wrote record it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScopeRecord {
    /// How many creators were recomputed.
    pub creators: u64,
    /// The list, relative to the output root (`_tally/scopes/commit=N.txt`).
    pub list: String,
    /// The blake3 of the list.
    pub blake3: String,
    /// The creators file as it was named.
    pub given: String,
}

/// `_tally/scopes/commit=N.txt`, relative to `root`.
pub fn list_path(root: &Path, commit: u64) -> PathBuf {
    crate::layout::meta_dir(root)
        .join("scopes")
        .join(format!("commit={commit}.txt"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_creators_file_is_one_id_a_line_trimmed_without_blanks_or_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creators.txt");
        std::fs::write(&path, "cr-2\r\n  cr-1 \n\ncr-2\n").unwrap();
        let scope = CreatorScope::read(&path).unwrap();
        assert_eq!(scope.len(), 2);
        assert!(scope.contains("cr-1") && scope.contains("cr-2") && !scope.contains("cr-3"));
        assert_eq!(scope.text(), "cr-1\ncr-2\n");

        std::fs::write(&path, "\n \n").unwrap();
        assert!(matches!(
            CreatorScope::read(&path),
            Err(ScopeError::Empty { .. })
        ));
        std::fs::write(&path, "cr-1\ncr-\u{1b}[31m\n").unwrap();
        let err = CreatorScope::read(&path).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("control"), "{err}");
        std::fs::write(&path, b"cr-1\n\xff\n").unwrap();
        assert!(
            CreatorScope::read(&path)
                .unwrap_err()
                .to_string()
                .contains("UTF-8")
        );
    }
}
