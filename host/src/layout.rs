//! Layout: where each part of an output directory lives. One directory per
//! table, each holding nothing but that table's files, so that any reader
//! pointed at a table directory (or any glob under it) gets exactly that table:
//!
//! ```text
//! daily/day=YYYY-MM-DD/part-0.parquet              the daily totals (hive partitioning)
//! changes/commit=N/day=YYYY-MM-DD/part-0.parquet   each commit's changeset, per day with changes
//! monthly/month=YYYY-MM/part-0.parquet             derived tables ([`crate::derived`])
//! monthly_changes/commit=N/month=YYYY-MM/…         and their changesets
//! quarantine/commit=N/quarantine.jsonl             each commit's quarantined records
//! _tally/manifest.json                             the current state: every partition, its commit
//! _tally/report.json                               the last run's report
//! _tally/log/NNNNNNNN.json                         one file per commit, never rewritten
//! _tally/partitions/day=YYYY-MM-DD.json            each partition's lineage
//! _tally/monthly/month=YYYY-MM.json                each derived partition's lineage
//! ```
//!
//! Partition values are written as readers type them: `day` as an ISO date,
//! `commit` as a plain integer. Every function takes the output root; pass
//! `Path::new("")` for the path relative to it.

use std::path::{Path, PathBuf};

/// The daily totals table.
pub const DAILY: &str = "daily";
/// The changesets table.
pub const CHANGES: &str = "changes";
/// The quarantine records, one directory per commit.
pub const QUARANTINE: &str = "quarantine";
/// Tally's own metadata: manifest, report, commit log, partition lineage.
pub const META: &str = "_tally";
/// The data file inside each partition directory.
pub const PART_FILE: &str = "part-0.parquet";
/// The quarantine file inside each `quarantine/commit=N/` directory.
pub const QUARANTINE_FILE: &str = "quarantine.jsonl";
/// The version of this layout, recorded in the manifest.
pub const LAYOUT_VERSION: u32 = 2;

/// The marker of an output written in layout 1 (partitions at the root).
const LEGACY_MANIFEST: &str = "_manifest.json";

/// `out/daily`.
pub fn daily_dir(out: &Path) -> PathBuf {
    out.join(DAILY)
}

/// `out/daily/day=D`.
pub fn day_dir(out: &Path, day: &str) -> PathBuf {
    daily_dir(out).join(format!("day={day}"))
}

/// `out/daily/day=D/part-0.parquet`.
pub fn part_file(out: &Path, day: &str) -> PathBuf {
    day_dir(out, day).join(PART_FILE)
}

/// `out/_tally`.
pub fn meta_dir(out: &Path) -> PathBuf {
    out.join(META)
}

/// `out/_tally/manifest.json`: the current state; its presence marks an output.
pub fn manifest(out: &Path) -> PathBuf {
    meta_dir(out).join("manifest.json")
}

/// `out/_tally/report.json`.
pub fn report(out: &Path) -> PathBuf {
    meta_dir(out).join("report.json")
}

/// `out/_tally/log`.
pub fn log_dir(out: &Path) -> PathBuf {
    meta_dir(out).join("log")
}

/// `out/_tally/log/NNNNNNNN.json`.
pub fn log_entry(out: &Path, commit: u64) -> PathBuf {
    log_dir(out).join(format!("{commit:08}.json"))
}

/// The commit number of a log entry's file name, if it is one.
pub fn log_entry_number(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    (digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// `out/_tally/partitions`.
pub fn partitions_dir(out: &Path) -> PathBuf {
    meta_dir(out).join("partitions")
}

/// `out/_tally/partitions/day=D.json`: the lineage of one partition.
pub fn partition_manifest(out: &Path, day: &str) -> PathBuf {
    partitions_dir(out).join(format!("day={day}.json"))
}

/// The day of a partition manifest's file name, if it is one.
pub fn partition_manifest_day(name: &str) -> Option<&str> {
    name.strip_prefix("day=")?.strip_suffix(".json")
}

/// `out/changes`.
pub fn changes_table(out: &Path) -> PathBuf {
    out.join(CHANGES)
}

/// `out/changes/commit=N`: one commit's changeset.
pub fn changes_dir(out: &Path, commit: u64) -> PathBuf {
    changes_table(out).join(format!("commit={commit}"))
}

/// `out/changes/commit=N/day=D/part-0.parquet`.
pub fn change_file(out: &Path, commit: u64, day: &str) -> PathBuf {
    changes_dir(out, commit)
        .join(format!("day={day}"))
        .join(PART_FILE)
}

/// `out/quarantine`.
pub fn quarantine_table(out: &Path) -> PathBuf {
    out.join(QUARANTINE)
}

/// `out/quarantine/commit=N`.
pub fn quarantine_dir(out: &Path, commit: u64) -> PathBuf {
    quarantine_table(out).join(format!("commit={commit}"))
}

/// `out/quarantine/commit=N/quarantine.jsonl`: what commit N's run quarantined.
pub fn quarantine_file(out: &Path, commit: u64) -> PathBuf {
    quarantine_dir(out, commit).join(QUARANTINE_FILE)
}

/// Whether `dir` is a Tally output directory, in this layout or the earlier one.
pub fn is_output(dir: &Path) -> bool {
    manifest(dir).is_file() || is_legacy(dir)
}

/// Whether `dir` is a Tally output in layout 1, which kept partitions, the log
/// and the changesets side by side at its root.
pub fn is_legacy(dir: &Path) -> bool {
    dir.join(LEGACY_MANIFEST).is_file() && dir.join("_log").is_dir()
}

/// The message for an output in layout 1: what changed and what to do.
pub fn legacy_message(dir: &Path) -> String {
    format!(
        "{} is a Tally output in layout 1 (day=… partitions, _log/ and _changes/ at its root, \
         which readers globbing the directory mix up); this Tally writes layout {LAYOUT_VERSION}, \
         one directory per table (daily/, changes/, quarantine/, _tally/). \
         Recompute into a new directory (`tally run --out NEW`), or move this one aside",
        dir.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_read_like_the_layout() {
        let root = Path::new("");
        assert_eq!(
            part_file(root, "2026-05-01"),
            Path::new("daily/day=2026-05-01/part-0.parquet")
        );
        assert_eq!(
            change_file(root, 12, "2026-05-01"),
            Path::new("changes/commit=12/day=2026-05-01/part-0.parquet")
        );
        assert_eq!(
            quarantine_file(root, 3),
            Path::new("quarantine/commit=3/quarantine.jsonl")
        );
        assert_eq!(log_entry(root, 7), Path::new("_tally/log/00000007.json"));
        assert_eq!(
            partition_manifest(root, "2026-05-01"),
            Path::new("_tally/partitions/day=2026-05-01.json")
        );
    }

    #[test]
    fn names_parse_back() {
        assert_eq!(log_entry_number("00000007.json"), Some(7));
        assert_eq!(log_entry_number("7.json"), None);
        assert_eq!(log_entry_number("0000000x.json"), None);
        assert_eq!(
            partition_manifest_day("day=2026-05-01.json"),
            Some("2026-05-01")
        );
        assert_eq!(partition_manifest_day("other.json"), None);
    }
}
