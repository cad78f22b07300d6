//! Verify: recomputes published partitions from their recorded inputs with
//! their stamped rule, and reports whether they are identical or exactly how
//! they differ.
//!
//! A partition is checked three ways: its file still has the bytes its commit
//! recorded; its recorded inputs still have the recorded contents; and every
//! row equals a fresh computation (rows the file holds as zeros, left by
//! reconciliation, must be absent from the fresh computation).

use crate::event::parse_day;
use crate::ingest::{self, Format, InputFile};
use crate::lineage::{self, LineageError};
use crate::pipeline::{self, PartitionManifest, RunError};
use crate::reconcile::{OutRow, Published};
use crate::rule::Rule;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// At most this many row differences are listed per partition.
const MAX_LISTED: usize = 20;

/// One way a partition differs from its recomputation.
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    /// `creator_id/template_id`, or empty for the whole partition.
    pub key: String,
    pub what: String,
    pub expected: String,
    pub actual: String,
}

/// The outcome for one partition.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionCheck {
    pub day: String,
    pub commit: u64,
    pub rule_hash: String,
    pub identical: bool,
    /// Differences found (at most a few per partition are listed).
    pub differences: Vec<Difference>,
    /// How many differences there were in all.
    pub difference_count: u64,
    /// Rows a scoped commit carried over from earlier commits (other
    /// creators' rows): not recomputed here, as the inputs they were computed
    /// from are not the commit's.
    #[serde(skip_serializing_if = "is_zero")]
    pub carried_rows: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The outcome for one partition of a derived table (the monthly table).
#[derive(Debug, Clone, Serialize)]
pub struct DerivedCheck {
    pub table: String,
    pub period: String,
    pub commit: u64,
    /// Its file has the recorded bytes, it was built from the day partitions
    /// published now, and its rows are their sums.
    pub identical: bool,
    pub differences: Vec<Difference>,
    pub difference_count: u64,
}

/// What `tally verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub out: String,
    pub partitions: Vec<PartitionCheck>,
    /// The derived tables' partitions, checked against the daily table.
    pub derived: Vec<DerivedCheck>,
}

impl VerifyReport {
    /// Whether every partition is identical to its recomputation.
    pub fn identical(&self) -> bool {
        self.partitions.iter().all(|p| p.identical) && self.derived.iter().all(|d| d.identical)
    }
}

/// What can stop a verification (as opposed to a difference, which is its
/// result).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error(transparent)]
    Lineage(#[from] LineageError),
    #[error(transparent)]
    Run(#[from] RunError),
}

impl PartitionCheck {
    fn differ(&mut self, key: String, what: &str, expected: impl ToString, actual: impl ToString) {
        self.identical = false;
        self.difference_count += 1;
        if self.differences.len() < MAX_LISTED {
            self.differences.push(Difference {
                key,
                what: what.to_string(),
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
    }
}

/// Recomputes the partitions of `out` (or only `day`'s). `load_rule` fetches a
/// rule by its hash (from the registry). With `progress`, the check of the
/// inputs and each recompute draw their stages on a terminal.
pub fn verify(
    out: &Path,
    day: Option<i32>,
    batch_size: usize,
    progress: bool,
    load_rule: &dyn Fn(&str) -> Result<Rule, RunError>,
) -> Result<VerifyReport, VerifyError> {
    let manifests = lineage::partitions(out, day)?;
    // Partitions written by the same commit share their inputs and rule.
    let mut by_commit: BTreeMap<u64, Vec<PartitionManifest>> = BTreeMap::new();
    for m in manifests {
        by_commit.entry(m.commit).or_default().push(m);
    }
    let mut checks = Vec::new();
    for group in by_commit.values() {
        checks.extend(verify_commit(out, group, batch_size, progress, load_rule)?);
    }
    checks.sort_by(|a, b| a.day.cmp(&b.day));
    // The derived tables are checked when the whole output is: with `--day`,
    // only that day is.
    let mut derived = Vec::new();
    if day.is_none() {
        for rollup in crate::derived::TABLES {
            for m in lineage::derived(out, &rollup)? {
                derived.push(verify_derived(out, &rollup, &m));
            }
        }
    }
    Ok(VerifyReport {
        out: out.display().to_string(),
        partitions: checks,
        derived,
    })
}

/// Checks a derived partition against the day partitions published now: the
/// same days with the same bytes as when it was built, its file with its
/// recorded bytes, and its rows the sums of those days' rows.
fn verify_derived(
    out: &Path,
    rollup: &crate::derived::Rollup,
    m: &crate::derived::DerivedManifest,
) -> DerivedCheck {
    let mut check = DerivedCheck {
        table: m.table.clone(),
        period: m.period.clone(),
        commit: m.commit,
        identical: true,
        differences: Vec::new(),
        difference_count: 0,
    };
    let mut differ = |key: String, what: &str, expected: String, actual: String| {
        check.identical = false;
        check.difference_count += 1;
        if check.differences.len() < MAX_LISTED {
            check.differences.push(Difference {
                key,
                what: what.to_string(),
                expected,
                actual,
            });
        }
    };
    let hash = |path: &Path| {
        std::fs::read(path).map_or_else(
            |e| format!("unreadable ({e})"),
            |b| blake3::hash(&b).to_hex().to_string(),
        )
    };
    let actual = hash(&out.join(&m.file));
    if actual != m.blake3 {
        differ(
            String::new(),
            &format!("blake3 of {}", m.file),
            m.blake3.clone(),
            actual,
        );
    }
    let days: Vec<PartitionManifest> = lineage::partitions(out, None)
        .unwrap_or_default()
        .into_iter()
        .filter(|d| (rollup.period)(&d.day) == m.period)
        .collect();
    let listed: Vec<(&str, &str)> = m
        .days
        .iter()
        .map(|d| (d.day.as_str(), d.blake3.as_str()))
        .collect();
    let published: Vec<(&str, &str)> = days
        .iter()
        .map(|d| (d.day.as_str(), d.blake3.as_str()))
        .collect();
    if listed != published {
        let show = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(d, h)| format!("{d} {}", &h[..h.len().min(12)]))
                .collect::<Vec<_>>()
                .join(", ")
        };
        differ(
            String::new(),
            "day partitions",
            show(&listed),
            show(&published),
        );
    }
    let mut sums: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
    for d in &days {
        let Ok(rows) = Published::read(&out.join(&d.file)) else {
            differ(
                String::new(),
                &format!("readable {}", d.file),
                "yes".into(),
                "no".into(),
            );
            continue;
        };
        for i in 0..rows.len() {
            let (r, _) = rows.row(i);
            let s = sums.entry(r.creator.to_string()).or_default();
            s.0 = s.0.saturating_add(r.events);
            s.1 = s.1.saturating_add(r.payable_events);
            s.2 = s.2.saturating_add(r.amount_micros);
        }
    }
    match crate::derived::read(&out.join(&m.file)) {
        Err(e) => differ(
            String::new(),
            "readable partition",
            "yes".into(),
            e.to_string(),
        ),
        Ok(rows) => {
            let figures = |f: &(i64, i64, i64)| format!("{}/{}/{}", f.0, f.1, f.2);
            for (creator, want) in &sums {
                match rows.get(creator) {
                    Some(got) if got == want => {}
                    Some(got) => differ(
                        creator.clone(),
                        "events/payable/amount",
                        figures(want),
                        figures(got),
                    ),
                    None => differ(creator.clone(), "row", figures(want), "missing".into()),
                }
            }
            for (creator, got) in &rows {
                if !sums.contains_key(creator) && *got != (0, 0, 0) {
                    differ(
                        creator.clone(),
                        "row",
                        "absent or zero".into(),
                        figures(got),
                    );
                }
            }
        }
    }
    check
}

fn verify_commit(
    out: &Path,
    group: &[PartitionManifest],
    batch_size: usize,
    progress: bool,
    load_rule: &dyn Fn(&str) -> Result<Rule, RunError>,
) -> Result<Vec<PartitionCheck>, VerifyError> {
    let first = &group[0];
    let mut checks: Vec<PartitionCheck> = group
        .iter()
        .map(|m| PartitionCheck {
            day: m.day.clone(),
            commit: m.commit,
            rule_hash: m.lineage.rule_hash.clone(),
            identical: true,
            differences: Vec::new(),
            difference_count: 0,
            carried_rows: m.carried_rows,
        })
        .collect();

    // The files must still be the ones the commit wrote.
    for (check, m) in checks.iter_mut().zip(group) {
        let path = out.join(&m.file);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let actual = blake3::hash(&bytes).to_hex().to_string();
                if actual != m.blake3 {
                    check.differ(
                        String::new(),
                        &format!("blake3 of {}", m.file),
                        &m.blake3,
                        actual,
                    );
                }
            }
            Err(e) => check.differ(String::new(), &format!("file {}", m.file), "present", e),
        }
    }

    // The inputs must still hold what the commit read.
    let files: Vec<InputFile> = first
        .inputs
        .iter()
        .map(|i| InputFile {
            path: PathBuf::from(&i.path),
            format: Format::from_name(&i.format).unwrap_or(Format::Jsonl),
            size: i.size,
            modified: None,
        })
        .collect();
    let mut inputs_ok = true;
    let bar = crate::progress::Progress::counting(
        "check inputs",
        Some(files.len() as u64),
        "files",
        progress,
    );
    for (file, recorded) in files.iter().zip(&first.inputs) {
        let actual = ingest::hash_files(std::slice::from_ref(file))
            .map(|h| h[0].to_hex().to_string())
            .unwrap_or_else(|e| format!("unreadable ({e})"));
        bar.inc(1);
        if actual != recorded.blake3 {
            inputs_ok = false;
            for check in &mut checks {
                check.differ(
                    String::new(),
                    &format!("input {} (cannot recompute)", recorded.path),
                    &recorded.blake3,
                    &actual,
                );
            }
        }
    }
    bar.finish();
    if !inputs_ok {
        return Ok(checks);
    }

    let rule = load_rule(&first.lineage.rule_hash)?;
    let window = first
        .window
        .as_ref()
        .and_then(|(from, to)| Some((parse_day(from)?, parse_day(to)?)));
    let paths: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
    // The inputs are read as the run read them: a line the run quarantined as
    // too long must be quarantined again, and one it parsed parsed again.
    let read = ingest::ReadOptions {
        max_line_bytes: first
            .max_line_bytes
            .map_or(ingest::DEFAULT_MAX_LINE_BYTES, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            }),
    };
    let computed = pipeline::compute(
        &paths,
        &read,
        rule,
        batch_size,
        window,
        progress,
        &crate::shard::SpillOptions::default(),
    )?;
    // Compute version 1 stamped every partition with the run's fingerprint;
    // later versions with the fingerprint of the day's own inputs.
    for (check, m) in checks.iter_mut().zip(group) {
        if m.kept_fingerprint {
            // A scoped commit kept the fingerprint its carried rows were
            // computed from: not the commit's inputs.
            continue;
        }
        let recomputed = match (m.lineage.compute_version, parse_day(&m.day)) {
            (1, _) | (_, None) => computed.lineage().input_fingerprint,
            (_, Some(day)) => computed.day_lineage(day).input_fingerprint,
        };
        if recomputed != m.lineage.input_fingerprint {
            check.differ(
                String::new(),
                "input fingerprint",
                &m.lineage.input_fingerprint,
                &recomputed,
            );
        }
    }

    for (check, m) in checks.iter_mut().zip(group) {
        let Some(day) = parse_day(&m.day) else {
            check.differ(String::new(), "day", "YYYY-MM-DD", &m.day);
            continue;
        };
        let published = match Published::read(&out.join(&m.file)) {
            Ok(p) => p,
            Err(e) => {
                check.differ(String::new(), "readable partition", "yes", e);
                continue;
            }
        };
        // A scoped commit's rows of its creators are what it recomputed.
        let scope = match &m.scope {
            Some(record) => match crate::scope::CreatorScope::kept(out, record) {
                Ok(scope) => Some(scope),
                Err(e) => {
                    check.differ(String::new(), "scope list", &record.list, e);
                    continue;
                }
            },
            None => None,
        };
        let within = |creator: &str| scope.as_ref().is_none_or(|s| s.contains(creator));
        let mut expected = computed.day_rows(day);
        expected.retain(|r| within(r.creator));
        compare_rows(check, &expected, &published, &m.lineage.rule_hash, &within);
    }
    Ok(checks)
}

/// Compares a recomputed day with its published rows.
fn compare_rows(
    check: &mut PartitionCheck,
    expected: &[OutRow<'_>],
    published: &Published,
    rule_hash: &str,
    within: &dyn Fn(&str) -> bool,
) {
    let mut actual: BTreeMap<(&str, &str), (OutRow<'_>, &str)> = BTreeMap::new();
    for i in 0..published.len() {
        let (row, hash) = published.row(i);
        if within(row.creator) {
            actual.insert((row.creator, row.template), (row, hash));
        }
    }
    let key = |r: &OutRow<'_>| format!("{}/{}", r.creator, r.template);
    let figures = |r: &OutRow<'_>| format!("{}/{}/{}", r.events, r.payable_events, r.amount_micros);
    for e in expected {
        match actual.remove(&(e.creator, e.template)) {
            None => check.differ(key(e), "row (events/payable/amount)", figures(e), "missing"),
            Some((a, hash)) => {
                if (a.events, a.payable_events, a.amount_micros)
                    != (e.events, e.payable_events, e.amount_micros)
                {
                    check.differ(key(e), "events/payable/amount", figures(e), figures(&a));
                }
                if hash != rule_hash {
                    check.differ(key(e), "rule_hash", rule_hash, hash);
                }
            }
        }
    }
    // What is left must be rows reconciliation zeroed.
    for (a, _) in actual.values() {
        if (a.events, a.payable_events, a.amount_micros) != (0, 0, 0) {
            check.differ(
                key(a),
                "row (events/payable/amount)",
                "absent or zero",
                figures(a),
            );
        }
    }
}
