//! Report: the figures of a run, as a human summary and as JSON.
//!
//! The same [`RunReport`] value is printed for people and serialized for
//! machines, so the two never disagree. Invariant checks live here too: a run
//! whose counts do not add up fails before anything is committed.

use crate::rule::shown;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The rule a run used.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RuleSummary {
    pub hash: String,
    pub name: String,
    pub version: String,
    pub sdk_version: String,
    pub path: String,
}

impl RuleSummary {
    /// The summary of a loaded rule, given as `reference`.
    pub fn of(rule: &crate::rule::Rule, reference: &str) -> RuleSummary {
        RuleSummary {
            hash: rule.hash.to_hex().to_string(),
            name: rule.info.name.clone(),
            version: rule.info.version.clone(),
            sdk_version: rule.info.sdk_version.clone(),
            path: reference.to_string(),
        }
    }
}

/// One input file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputSummary {
    pub path: String,
    pub format: String,
    pub size: u64,
    pub blake3: String,
}

/// Counts in and out of every stage.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counts {
    /// Records read (blank lines excluded).
    pub records: u64,
    /// Records that broke the contract.
    pub quarantined: u64,
    /// Quarantined records per reason code.
    pub quarantined_by_reason: BTreeMap<String, u64>,
    /// Valid records.
    pub valid: u64,
    /// Valid records that lost to a survivor with the same `event_id`.
    pub duplicates: u64,
    /// Duplicates whose fields differ from their survivor's.
    pub conflicts: u64,
    /// Surviving (unique) events.
    pub unique: u64,
    /// Unique events outside the recomputed days (`--days`), not classified.
    pub outside_window: u64,
    /// Unique events of creators a scoped run does not recompute
    /// (`--creators`), not classified.
    #[serde(default)]
    pub outside_scope: u64,
    /// Unique events classified (inside the recomputed days, of the listed
    /// creators when the run is scoped).
    pub classified: u64,
    /// Unique events the rule found payable.
    pub payable: u64,
    /// Sum of the payable events' rates, in micros.
    pub amount_micros: i64,
    /// Unique events per verdict reason.
    pub by_reason: BTreeMap<String, u64>,
    /// Daily rows written.
    pub rows: u64,
    /// Day partitions written.
    pub days: u64,
}

/// Seconds spent in each stage.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    pub ingest: f64,
    pub dedup: f64,
    pub classify: f64,
    pub aggregate: f64,
    pub commit: f64,
    pub total: f64,
}

/// One invariant check.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// Everything about a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub tally_version: String,
    pub run_id: String,
    pub rule: RuleSummary,
    pub inputs: Vec<InputSummary>,
    pub input_fingerprint: String,
    pub output: String,
    pub threads: usize,
    pub batch_size: usize,
    /// The memory limit the run kept to, in bytes.
    #[serde(default)]
    pub memory_limit_bytes: u64,
    /// The shards the run was split into by `event_id`: 1 when it ran in
    /// memory, more when it spilled to disk.
    #[serde(default = "one")]
    pub shards: u32,
    pub counts: Counts,
    /// The commit this run made in the output's log.
    pub commit: u64,
    /// The recomputed days (`--days`), or null for every day.
    pub window: Option<(String, String)>,
    /// How the written rows differ from what the output held before.
    pub reconcile: crate::reconcile::ReconcileCounts,
    /// The derived tables' partitions the commit rebuilt.
    #[serde(default)]
    pub derived: Vec<crate::derived::DerivedWritten>,
    pub timings: Timings,
    /// Input records per second, end to end.
    pub records_per_second: f64,
    /// The most memory the process held at once up to the end of the run,
    /// in bytes (resident set; null where the system does not say).
    pub peak_memory_bytes: Option<u64>,
    pub checks: Vec<Check>,
    /// The creators the commit recomputed, when it was scoped
    /// (`--creators`); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<crate::scope::ScopeRecord>,
}

fn one() -> u32 {
    1
}

/// The version of the run report's JSON form, as `tally run` and `tally
/// commit` print it (`--json`) and write it (`--report`): raised only when a
/// field changes meaning or disappears; new fields may appear without it.
pub const RUN_REPORT_SCHEMA_VERSION: u32 = 1;

/// How a command that changes something ended, as its JSON report says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Succeeded,
    Failed,
}

/// The JSON report of a run, written whether it succeeded or failed, so a
/// scheduler always has a report to read (and to attach to its alert).
///
/// A succeeded run carries every field of its [`RunReport`]; a failed one
/// carries what was known when it failed ([`FailedRun`]). The fields of this
/// struct are in both.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// [`RUN_REPORT_SCHEMA_VERSION`].
    pub schema_version: u32,
    pub status: Status,
    /// The error and its causes on one line (as printed on stderr after
    /// `error: `); null when the run succeeded.
    pub error: Option<String>,
    /// The rule as it was named (a path, a hash, `name@version` or
    /// `name@tag`); null only when a task run's plan could not be read.
    pub rule_reference: Option<String>,
    /// The inputs as they were named: the `--input` files and directories of
    /// a run, the planned files of a task run.
    pub inputs_given: Vec<String>,
    /// The work directory of a task run (`tally commit`); absent for `tally run`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work: Option<String>,
    #[serde(flatten)]
    pub figures: RunFigures,
}

/// The figures of a run's JSON report: all of them, or those known before
/// it failed.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum RunFigures {
    Succeeded(Box<RunReport>),
    Failed(Box<FailedRun>),
}

/// What the report of a failed run says besides the error: what it was asked
/// to do. Nothing was committed, so there are no counts of what was written.
#[derive(Debug, Clone, Serialize)]
pub struct FailedRun {
    pub tally_version: String,
    /// The rule, when it was loaded before the run failed; null when loading
    /// it was what failed.
    pub rule: Option<RuleSummary>,
    /// The output directory, as named; null only when a task run's plan
    /// could not be read.
    pub output: Option<String>,
    /// The recomputed days, or null for every day.
    pub window: Option<(String, String)>,
}

impl RunResult {
    /// The report of a run that succeeded.
    pub fn succeeded(
        report: RunReport,
        rule_reference: Option<String>,
        inputs_given: Vec<String>,
        work: Option<String>,
    ) -> RunResult {
        RunResult {
            schema_version: RUN_REPORT_SCHEMA_VERSION,
            status: Status::Succeeded,
            error: None,
            rule_reference,
            inputs_given,
            work,
            figures: RunFigures::Succeeded(Box::new(report)),
        }
    }

    /// The report of a run that failed with `error` (the whole chain of
    /// causes, on one line).
    pub fn failed(
        error: String,
        rule_reference: Option<String>,
        inputs_given: Vec<String>,
        work: Option<String>,
        failed: FailedRun,
    ) -> RunResult {
        RunResult {
            schema_version: RUN_REPORT_SCHEMA_VERSION,
            status: Status::Failed,
            error: Some(error),
            rule_reference,
            inputs_given,
            work,
            figures: RunFigures::Failed(Box::new(failed)),
        }
    }
}

/// A recomputed window, `(from, to)` as day numbers, the way reports show it;
/// None for a day outside the calendar (from a damaged plan, say) rather
/// than a panic.
pub fn window_text(days: Option<(i32, i32)>) -> Option<(String, String)> {
    let (from, to) = days?;
    Some((crate::event::day_text(from)?, crate::event::day_text(to)?))
}

/// The peak resident memory of this process so far, in bytes (Linux:
/// `VmHWM` in `/proc/self/status`; `None` elsewhere).
pub fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?;
    let kib: u64 = kib.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

/// The invariants every run must satisfy.
pub fn checks(counts: &Counts, row_sums: (u64, u64, i64)) -> Vec<Check> {
    let c = counts;
    let check = |name: &str, ok: bool, detail: String| Check {
        name: name.to_string(),
        ok,
        detail,
    };
    vec![
        check(
            "records = quarantined + duplicates + unique",
            c.records == c.quarantined + c.duplicates + c.unique,
            format!(
                "{} = {} + {} + {}",
                c.records, c.quarantined, c.duplicates, c.unique
            ),
        ),
        check(
            "valid = duplicates + unique",
            c.valid == c.duplicates + c.unique,
            format!("{} = {} + {}", c.valid, c.duplicates, c.unique),
        ),
        check(
            "unique = classified + outside the window + outside the scope",
            c.unique == c.classified + c.outside_window + c.outside_scope,
            format!(
                "{} = {} + {} + {}",
                c.unique, c.classified, c.outside_window, c.outside_scope
            ),
        ),
        check(
            "payable <= unique",
            c.payable <= c.unique,
            format!("{} <= {}", c.payable, c.unique),
        ),
        check(
            "daily rows sum to the classified totals",
            row_sums == (c.classified, c.payable, c.amount_micros),
            format!(
                "rows: {} events, {} payable, {} micros; classified: {} events, {} payable, {} micros",
                row_sums.0, row_sums.1, row_sums.2, c.classified, c.payable, c.amount_micros
            ),
        ),
    ]
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Micros as currency units with six decimals.
pub fn money(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    format!("{sign}{}.{:06}", thousands(m / 1_000_000), m % 1_000_000)
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        let t = &self.timings;
        writeln!(f, "tally {} run {}", self.tally_version, self.run_id)?;
        writeln!(
            f,
            "rule      {}@{}  blake3 {}",
            shown(&self.rule.name),
            shown(&self.rule.version),
            self.rule.hash
        )?;
        writeln!(
            f,
            "input     {} file(s), fingerprint {}",
            self.inputs.len(),
            self.input_fingerprint
        )?;
        writeln!(f, "records   {:>14}", thousands(c.records))?;
        writeln!(f, "  quarantined {:>10}", thousands(c.quarantined))?;
        for (reason, n) in &c.quarantined_by_reason {
            writeln!(f, "      {reason:<28} {:>10}", thousands(*n))?;
        }
        writeln!(
            f,
            "  duplicates  {:>10}  ({} conflicting)",
            thousands(c.duplicates),
            thousands(c.conflicts)
        )?;
        writeln!(f, "  unique      {:>10}", thousands(c.unique))?;
        if c.outside_scope > 0 {
            writeln!(
                f,
                "  classified  {:>10}  (the listed creators' events; {} of other creators not classified)",
                thousands(c.classified),
                thousands(c.outside_scope)
            )?;
        }
        for (reason, n) in &c.by_reason {
            let reason = shown(reason);
            writeln!(f, "      {reason:<28} {:>10}", thousands(*n))?;
        }
        writeln!(f, "payable   {:>14}", thousands(c.payable))?;
        writeln!(
            f,
            "amount    {:>14}  ({} micros)",
            money(c.amount_micros),
            c.amount_micros
        )?;
        if c.outside_window > 0 {
            writeln!(
                f,
                "  outside --days {:>8} (not classified)",
                thousands(c.outside_window)
            )?;
        }
        writeln!(
            f,
            "output    {}: commit {}, {} rows in {} day partition(s) written",
            self.output,
            self.commit,
            thousands(c.rows),
            c.days
        )?;
        if let Some(scope) = &self.scope {
            writeln!(
                f,
                "  scope   the rows of {} creator(s) of {} recomputed (kept as {}); \
                 the other creators' rows carried over as they were",
                thousands(scope.creators),
                crate::rule::shown_name(&scope.given),
                scope.list
            )?;
        }
        let r = &self.reconcile;
        writeln!(
            f,
            "  rows    {} unchanged, {} changed, {} added, {} zeroed, {} restamped",
            thousands(r.unchanged),
            thousands(r.changed),
            thousands(r.added),
            thousands(r.zeroed),
            thousands(r.restamped)
        )?;
        for table in crate::derived::TABLES {
            let mine: Vec<_> = self
                .derived
                .iter()
                .filter(|d| d.table == table.table)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let mut r = crate::reconcile::ReconcileCounts::default();
            for d in &mine {
                r.add(&d.reconcile);
            }
            writeln!(
                f,
                "  {}: {} partition(s) rebuilt ({}), {} rows: {} unchanged, {} changed, {} added, {} zeroed",
                table.table,
                mine.len(),
                mine.iter()
                    .map(|d| d.period.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                thousands(mine.iter().map(|d| d.rows).sum()),
                thousands(r.unchanged),
                thousands(r.changed),
                thousands(r.added),
                thousands(r.zeroed)
            )?;
        }
        writeln!(
            f,
            "time      {:.2}s (ingest {:.2}, dedup {:.2}, classify {:.2}, aggregate {:.2}, commit {:.2}), {} records/s, {} threads",
            t.total,
            t.ingest,
            t.dedup,
            t.classify,
            t.aggregate,
            t.commit,
            thousands(self.records_per_second as u64),
            self.threads
        )?;
        let limit = format!("limit {} MiB", thousands(self.memory_limit_bytes >> 20));
        let mode = if self.shards > 1 {
            format!("{limit}, spilled to disk in {} shards", self.shards)
        } else {
            format!("{limit}, in memory")
        };
        match self.peak_memory_bytes {
            Some(bytes) => writeln!(
                f,
                "memory    {} MiB at the peak ({mode})",
                thousands(bytes >> 20)
            )?,
            None => writeln!(f, "memory    {mode}")?,
        }
        let failed: Vec<_> = self.checks.iter().filter(|c| !c.ok).collect();
        if failed.is_empty() {
            write!(f, "checks    all {} passed", self.checks.len())
        } else {
            write!(f, "checks    FAILED:")?;
            for c in failed {
                write!(f, " {} ({});", c.name, c.detail)?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(money(1_500_000), "1.500000");
        assert_eq!(money(12_345_678_901), "12,345.678901");
    }

    #[test]
    fn a_failed_run_s_report_says_what_was_asked_and_why_it_failed() {
        let result = RunResult::failed(
            "run failed; nothing was written: no input".to_string(),
            Some("creator-pay@prod".to_string()),
            vec!["events/".to_string()],
            None,
            FailedRun {
                tally_version: "9.9.9".to_string(),
                rule: None,
                output: Some("out/".to_string()),
                window: window_text(Some((20_574, 20_575))),
            },
        );
        assert_eq!(
            serde_json::to_value(&result).unwrap(),
            serde_json::json!({
                "schema_version": RUN_REPORT_SCHEMA_VERSION,
                "status": "failed",
                "error": "run failed; nothing was written: no input",
                "rule_reference": "creator-pay@prod",
                "inputs_given": ["events/"],
                "tally_version": "9.9.9",
                "rule": null,
                "output": "out/",
                "window": ["2026-05-01", "2026-05-02"],
            })
        );
        // A day no calendar has is left out rather than a panic.
        assert_eq!(window_text(Some((i32::MAX, i32::MAX))), None);
    }

    #[test]
    fn a_succeeded_run_s_report_is_its_figures_and_nothing_clashes_with_them() {
        let report = RunReport {
            tally_version: "9.9.9".to_string(),
            run_id: "run-1".to_string(),
            rule: RuleSummary::default(),
            inputs: Vec::new(),
            input_fingerprint: "f".to_string(),
            output: "out/".to_string(),
            threads: 2,
            batch_size: 8,
            memory_limit_bytes: 1 << 30,
            shards: 1,
            counts: Counts::default(),
            commit: 3,
            window: None,
            reconcile: Default::default(),
            derived: Vec::new(),
            timings: Timings::default(),
            records_per_second: 0.0,
            peak_memory_bytes: None,
            checks: Vec::new(),
            scope: None,
        };
        let figures = serde_json::to_value(&report).unwrap();
        let result = RunResult::succeeded(
            report,
            Some("rule.wasm".to_string()),
            vec!["a.jsonl".to_string()],
            Some("work/".to_string()),
        );
        let mut printed = serde_json::to_value(&result).unwrap();
        let around = printed.as_object_mut().unwrap();
        for (key, value) in [
            (
                "schema_version",
                serde_json::json!(RUN_REPORT_SCHEMA_VERSION),
            ),
            ("status", serde_json::json!("succeeded")),
            ("error", serde_json::Value::Null),
            ("rule_reference", serde_json::json!("rule.wasm")),
            ("inputs_given", serde_json::json!(["a.jsonl"])),
            ("work", serde_json::json!("work/")),
        ] {
            assert_eq!(around.remove(key), Some(value), "{key}");
        }
        // Had a key of the envelope clashed with one of the figures, one of
        // the two would be missing here.
        assert_eq!(printed, figures);
    }

    #[test]
    fn checks_catch_broken_counts() {
        let counts = Counts {
            records: 10,
            quarantined: 1,
            valid: 9,
            duplicates: 2,
            unique: 7,
            classified: 7,
            payable: 3,
            amount_micros: 90,
            ..Default::default()
        };
        assert!(checks(&counts, (7, 3, 90)).iter().all(|c| c.ok));
        assert!(!checks(&counts, (7, 3, 91)).iter().all(|c| c.ok));
        let lost = Counts {
            unique: 6,
            classified: 6,
            ..counts
        };
        assert!(!checks(&lost, (6, 3, 90)).iter().all(|c| c.ok));
    }
}
