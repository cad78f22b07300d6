//! Lineage: reading back what an output directory says about itself — its
//! commit log, its partitions' manifests, and where a number came from.
//!
//! Everything here reads the metadata `commit` wrote; nothing is recomputed
//! (that is `verify`).

use crate::event::format_day;
use crate::layout;
use crate::pipeline::{LogEntry, PartitionManifest};
use crate::reconcile::Published;
use std::path::{Path, PathBuf};

/// What can go wrong while reading an output's metadata.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LineageError {
    /// A metadata file is missing or unreadable.
    #[error("cannot read {path}: {message}")]
    Unreadable { path: PathBuf, message: String },
    /// The commit does not exist.
    #[error("{out} has no commit {commit} (see `tally log {out}`)")]
    NoCommit { out: String, commit: u64 },
    /// The day has no partition.
    #[error("{out} has no partition for {day}")]
    NoDay { out: String, day: String },
    /// The output is in an earlier layout.
    #[error("{}", layout::legacy_message(.0))]
    LegacyLayout(PathBuf),
    /// The key has no row on that day.
    #[error("{out} has no row for creator {creator:?} and template {template:?} on {day}")]
    NoRow {
        out: String,
        day: String,
        creator: String,
        template: String,
    },
}

/// Reads one metadata file.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, LineageError> {
    let fail = |message: String| LineageError::Unreadable {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| fail(e.to_string()))
}

fn check_layout(out: &Path) -> Result<(), LineageError> {
    if layout::is_legacy(out) {
        return Err(LineageError::LegacyLayout(out.to_path_buf()));
    }
    let manifest = layout::manifest(out);
    if !manifest.is_file() {
        return Err(LineageError::Unreadable {
            path: manifest,
            message: "not a Tally output directory".to_string(),
        });
    }
    Ok(())
}

/// Every commit of the output's log, in order.
pub fn log(out: &Path) -> Result<Vec<LogEntry>, LineageError> {
    check_layout(out)?;
    let dir = layout::log_dir(out);
    let entries = std::fs::read_dir(&dir).map_err(|e| LineageError::Unreadable {
        path: dir.clone(),
        message: e.to_string(),
    })?;
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| layout::log_entry_number(&n.to_string_lossy()))
                .is_some()
        })
        .collect();
    paths.sort();
    paths.iter().map(|p| read_json(p)).collect()
}

/// One commit of the log.
pub fn commit(out: &Path, number: u64) -> Result<LogEntry, LineageError> {
    check_layout(out)?;
    let path = layout::log_entry(out, number);
    if !path.is_file() {
        return Err(LineageError::NoCommit {
            out: out.display().to_string(),
            commit: number,
        });
    }
    read_json(&path)
}

/// The manifests of the output's partitions, by day (optionally one day).
pub fn partitions(out: &Path, day: Option<i32>) -> Result<Vec<PartitionManifest>, LineageError> {
    check_layout(out)?;
    let days: Vec<PathBuf> = match day {
        Some(day) => {
            let path = layout::partition_manifest(out, &format_day(day));
            if !path.is_file() {
                return Err(LineageError::NoDay {
                    out: out.display().to_string(),
                    day: format_day(day),
                });
            }
            vec![path]
        }
        None => partition_days(out)?
            .iter()
            .map(|day| layout::partition_manifest(out, day))
            .collect(),
    };
    days.iter().map(|p| read_json(p)).collect()
}

/// The days with a partition manifest in an output (or a staged one, whose
/// layout is not checked), in order.
pub(crate) fn partition_days(out: &Path) -> Result<Vec<String>, LineageError> {
    let dir = layout::partitions_dir(out);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut days: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| LineageError::Unreadable {
            path: dir.clone(),
            message: e.to_string(),
        })?
        .flatten()
        .filter_map(|e| {
            layout::partition_manifest_day(&e.file_name().to_string_lossy()).map(String::from)
        })
        .collect();
    days.sort();
    Ok(days)
}

/// The manifests of a derived table's partitions, by period.
pub fn derived(
    out: &Path,
    rollup: &crate::derived::Rollup,
) -> Result<Vec<crate::derived::DerivedManifest>, LineageError> {
    check_layout(out)?;
    derived_in(out, rollup)
}

/// [`derived`] in an output or a staged one, whose layout is not checked.
pub(crate) fn derived_in(
    out: &Path,
    rollup: &crate::derived::Rollup,
) -> Result<Vec<crate::derived::DerivedManifest>, LineageError> {
    let dir = rollup.manifests_dir(out);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| LineageError::Unreadable {
            path: dir.clone(),
            message: e.to_string(),
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths.iter().map(|p| read_json(p)).collect()
}

/// One row with the lineage of the partition that holds it.
#[derive(Debug, serde::Serialize)]
pub struct RowLineage {
    pub day: String,
    pub creator_id: String,
    pub template_id: String,
    pub events: i64,
    pub payable_events: i64,
    pub amount_micros: i64,
    pub rule_hash: String,
    pub partition: PartitionManifest,
}

/// Where the number for `(day, creator, template)` came from.
pub fn row(
    out: &Path,
    day: i32,
    creator: &str,
    template: &str,
) -> Result<RowLineage, LineageError> {
    let partition = partitions(out, Some(day))?.remove(0);
    let path = out.join(&partition.file);
    let published = Published::read(&path).map_err(|e| LineageError::Unreadable {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let found = (0..published.len())
        .map(|i| published.row(i))
        .find(|(r, _)| r.creator == creator && r.template == template);
    let Some((r, hash)) = found else {
        return Err(LineageError::NoRow {
            out: out.display().to_string(),
            day: format_day(day),
            creator: creator.to_string(),
            template: template.to_string(),
        });
    };
    Ok(RowLineage {
        day: format_day(day),
        creator_id: creator.to_string(),
        template_id: template.to_string(),
        events: r.events,
        payable_events: r.payable_events,
        amount_micros: r.amount_micros,
        rule_hash: hash.to_string(),
        partition,
    })
}

/// The partition data file of a day.
pub fn part_file(out: &Path, day: &str) -> PathBuf {
    layout::part_file(out, day)
}
