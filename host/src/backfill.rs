//! Backfill: which days a run writes, in which commits, and why.
//!
//! A plain `tally run` writes every day of its window in one commit. This
//! module serves the runs that write less, or in steps:
//!
//! - `--stale-only` writes only the days [`crate::status`] finds stale (and
//!   the days a recompute gives events that have no partition yet): a day
//!   whose partition already matches the rule and the inputs keeps its bytes
//!   and its commit. The partitions written are those a full recompute
//!   writes, byte for byte. What it reads depends on why the days are
//!   stale: when only new files add events to them, only the new files are
//!   read ([`crate::incremental`]); when a recorded file changed or went,
//!   only the files holding records of those days' events
//!   ([`crate::partial`]); else every input.
//! - `--chunk-days N` commits the days in windows of at most `N` days, each
//!   its own commit with its own provenance, so that a long backfill lands in
//!   small auditable steps. The inputs are read and classified once. When a
//!   commit fails, those before it stay; rerun with `--stale-only` and only
//!   the days not committed yet are written.
//! - `--dry-run` prints the [`Plan`]: the days, why each is written, the
//!   commits, and the input files; nothing is read but what `tally status`
//!   reads (and, for a scoped run, the planned days' partitions), and
//!   nothing is written.
//! - `--creators FILE` ([`crate::scope`]) goes with all three: of the days
//!   planned, only those where a listed creator has rows (published, or new
//!   once the inputs are read) are written, only those creators' rows are
//!   recomputed, and every input is read.
//!
//! A window never spans a published day that stays as it is, so a commit
//! rewrites only the days it names.

use crate::event::{format_day, parse_day};
use crate::pipeline::{self, Computed, RunError, RunOptions};
use crate::report::RunReport;
use crate::rule::Rule;
use crate::scope::CreatorScope;
use crate::status::{Cause, DayStatus, FileRead, ForRun, IndexUsed, InputStatus, StatusReport};
use crate::survivors;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

/// How a run narrows and splits what it writes.
#[derive(Debug, Clone, Copy, Default)]
pub struct BackfillOptions {
    /// Write only the stale days.
    pub stale_only: bool,
    /// Commit at most this many days at a time.
    pub chunk_days: Option<u32>,
    /// Recompute only the rows of this many listed creators (`--creators`).
    pub creators: Option<usize>,
}

/// What decides the days a run writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Every day of the window (or every day).
    All,
    /// The stale days of the window, as `tally status` finds them.
    Stale,
    /// Every day: `--stale-only` was asked, but staleness cannot be told
    /// (no output yet, or no survivor index of its last commit).
    AllUnknown,
}

/// One day a run writes, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedDay {
    pub day: String,
    /// Whether the output has its partition now.
    pub published: bool,
    /// Whether that partition differs from what a recompute writes (always
    /// true for a day without a partition); null when it cannot be told.
    pub stale: Option<bool>,
    /// The events a recompute gives the day; null when it cannot be told
    /// without reading the inputs.
    pub events: Option<u64>,
    /// For a run scoped to listed creators: how many of the day's published
    /// rows are theirs (null for a day without a partition, or unscoped). A
    /// day with none is written only if the inputs give them events on it.
    pub creator_rows: Option<u64>,
    pub causes: Vec<Cause>,
}

/// One commit of a run: a window of days.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlannedCommit {
    pub from: String,
    pub to: String,
    /// The days of the window it writes.
    pub days: usize,
}

/// What a run will write, and why: `tally run --dry-run`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub scope: Scope,
    /// Why the scope is what it is, in a sentence.
    pub reason: String,
    /// How many creators the run is scoped to (`--creators`), if it is: of
    /// `days`, it writes only those where they have rows.
    pub creators: Option<usize>,
    /// The `--days` window, if any.
    pub window: Option<(String, String)>,
    /// The days written, in order. Without a survivor index, days that have
    /// no partition yet are known only once the inputs are read.
    pub days: Vec<PlannedDay>,
    /// Published days of the window left exactly as they are (fresh).
    pub fresh_days: usize,
    /// Whether `days` holds every day the run writes. Without a survivor
    /// index, days that have no partition yet are known only once the
    /// inputs are read, and so are the windows of `--chunk-days`.
    pub days_known: bool,
    /// The commits, in order; for a run that writes nothing, none. When the
    /// days are not all known and the run commits in chunks, or the run is
    /// scoped to listed creators and commits in chunks or only the stale
    /// days, none either: the windows are made once the inputs are read.
    pub commits: Vec<PlannedCommit>,
    /// The survivor index status used, if any.
    pub index: Option<IndexUsed>,
    /// Every input file and what happened to it since the last commit
    /// (empty without an index).
    pub inputs: Vec<InputStatus>,
    /// Whether the run reads only the new input files and adds their events
    /// to the published rows ([`crate::incremental`]).
    pub incremental: bool,
    /// Why it does or does not, in a sentence.
    pub reads: String,
    /// Whether the run reads only the input files holding records of the
    /// events of the days it writes, and recomputes those days from them
    /// ([`crate::partial`]): when a recorded file changed or went, or the
    /// new files alone cannot be added and the days need fewer files.
    pub partial: bool,
    /// For an incremental run: the recorded survivors the new files'
    /// records displace (their files are read too).
    pub displaced: usize,
    /// The input files the run reads when it reads only some (incremental
    /// or partial), in input order; empty when it reads every one.
    pub read_files: Vec<String>,
    /// The input files a run reads (all of them, unless incremental), and
    /// their bytes.
    pub input_files: usize,
    pub input_bytes: u64,
    /// The input files read to make this plan, and why.
    pub files_read: Vec<FileRead>,
}

impl Plan {
    /// Whether the run writes anything: always, unless only stale days are
    /// written and none is.
    pub fn writes(&self) -> bool {
        self.scope != Scope::Stale || !self.days.is_empty()
    }
}

/// Whether `day` (days since 1970-01-01) is in `window`.
fn within(window: Option<(i32, i32)>, day: i32) -> bool {
    window.is_none_or(|(from, to)| (from..=to).contains(&day))
}

/// The plan of a run over `status` (of the output and the inputs the run
/// reads, with the run's rule) within `window`. `inputs` are the run's input
/// files with their sizes; `fits` tells whether the input files at some
/// positions among them fit the run's memory limit together.
pub fn plan(
    status: Option<&StatusReport>,
    for_run: Option<&ForRun>,
    window: Option<(i32, i32)>,
    options: BackfillOptions,
    inputs: &[(String, u64)],
    fits: &dyn Fn(&[usize]) -> bool,
) -> Plan {
    let known = status.filter(|s| s.index.is_some());
    let scope = match (options.stale_only, known) {
        (false, _) => Scope::All,
        (true, Some(_)) => Scope::Stale,
        (true, None) => Scope::AllUnknown,
    };
    let mut reason = match (scope, status) {
        (Scope::All, _) => "every day of the window is written".to_string(),
        (Scope::Stale, _) => "only the stale days are written".to_string(),
        (Scope::AllUnknown, None) => {
            "the output has no partitions yet: every day is written".to_string()
        }
        (Scope::AllUnknown, Some(_)) => "the output has no survivor index of its last commit, \
             so staleness cannot be told: every day is written"
            .to_string(),
    };
    if let Some(n) = options.creators {
        let whose = format!(
            "where the {n} listed {} rows (published or new) are written, and only their rows are recomputed",
            if n == 1 {
                "creator has"
            } else {
                "creators have"
            }
        );
        reason = match scope {
            Scope::All => format!("the days of the window {whose}"),
            Scope::Stale => format!("only the stale days {whose}"),
            Scope::AllUnknown => format!("{reason}; of them, the days {whose}"),
        };
    }
    let in_window = |d: &DayStatus| parse_day(&d.day).is_some_and(|day| within(window, day));
    let (mut days, mut fresh_days) = (Vec::new(), 0);
    for d in status.map(|s| s.days.as_slice()).unwrap_or_default() {
        if !in_window(d) {
            continue;
        }
        let stale = known.is_some().then_some(d.stale);
        if scope == Scope::Stale && !d.stale {
            fresh_days += 1;
            continue;
        }
        days.push(PlannedDay {
            day: d.day.clone(),
            published: d.published,
            stale,
            events: d.events,
            creator_rows: None,
            causes: d.causes.clone(),
        });
    }
    // A derived partition stale with none of its days stale (its days were
    // replaced by hand, say): its days are written again, which rebuilds it.
    if scope == Scope::Stale
        && let Some(status) = status
    {
        for period in status.derived.iter().filter(|p| p.stale) {
            let of_period = |day: &str| {
                crate::derived::TABLES
                    .iter()
                    .any(|r| r.table == period.table && (r.period)(day) == period.period)
            };
            if days.iter().any(|p| of_period(&p.day)) {
                // Rebuilt with its stale days.
                continue;
            }
            for d in &status.days {
                if of_period(&d.day) && d.published && in_window(d) {
                    fresh_days -= 1;
                    days.push(PlannedDay {
                        day: d.day.clone(),
                        published: d.published,
                        stale: Some(false),
                        events: d.events,
                        creator_rows: None,
                        causes: period.causes.clone(),
                    });
                }
            }
        }
        days.sort_by(|a, b| a.day.cmp(&b.day));
    }
    let written: BTreeSet<i32> = days.iter().filter_map(|d| parse_day(&d.day)).collect();
    let keep: BTreeSet<i32> = status
        .map(|s| s.days.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|d| d.published && in_window(d))
        .filter_map(|d| parse_day(&d.day))
        .filter(|day| !written.contains(day))
        .collect();
    let days_known = known.is_some();
    let commits = match scope {
        // Without a chunk size, one commit over the window, as a plain run
        // makes, even when no day is known yet (an empty output).
        Scope::All | Scope::AllUnknown if options.chunk_days.is_none() => {
            vec![PlannedCommit {
                from: window.map_or_else(|| first_or(&written, "first day"), |w| format_day(w.0)),
                to: window.map_or_else(|| last_or(&written, "last day"), |w| format_day(w.1)),
                days: written.len(),
            }]
        }
        _ if !days_known || options.creators.is_some() => Vec::new(),
        _ => windows(&written, &keep, options.chunk_days)
            .into_iter()
            .map(|(from, to)| PlannedCommit {
                from: format_day(from),
                to: format_day(to),
                days: written.range(from..=to).count(),
            })
            .collect(),
    };
    let mut plan = Plan {
        scope,
        reason,
        creators: options.creators,
        window: crate::report::window_text(window),
        days,
        fresh_days,
        days_known,
        commits,
        index: status.and_then(|s| s.index.clone()),
        inputs: status.map(|s| s.inputs.clone()).unwrap_or_default(),
        incremental: false,
        reads: "every input file is read".to_string(),
        partial: false,
        displaced: 0,
        read_files: Vec::new(),
        input_files: inputs.len(),
        input_bytes: inputs.iter().map(|(_, size)| size).sum(),
        files_read: status.map(|s| s.files_read.clone()).unwrap_or_default(),
    };
    if scope == Scope::Stale && !plan.days.is_empty() {
        read_less(&mut plan, for_run, options, inputs, fits);
    }
    plan
}

/// Narrows what a stale-only `plan` reads where it can: only the new input
/// files when they alone make the days stale ([`crate::incremental`]), only
/// the files holding records of the days' events when a recorded file
/// changed or went ([`crate::partial`]). Either reads its files in memory,
/// so it applies only when `fits` says they fit.
fn read_less(
    plan: &mut Plan,
    for_run: Option<&ForRun>,
    options: BackfillOptions,
    inputs: &[(String, u64)],
    fits: &dyn Fn(&[usize]) -> bool,
) {
    let late = for_run.and_then(ForRun::late);
    let too_big =
        "the files it would read do not fit the memory limit, and it reads them in memory";
    let narrow = |plan: &mut Plan, positions: Vec<usize>| {
        plan.input_files = positions.len();
        plan.input_bytes = positions
            .iter()
            .filter_map(|&at| inputs.get(at))
            .map(|(_, size)| size)
            .sum();
        plan.read_files = positions
            .iter()
            .filter_map(|&at| inputs.get(at))
            .map(|(path, _)| path.clone())
            .collect();
    };
    let blocker = match options.creators {
        Some(_) => Some("a run scoped to listed creators reads every input".to_string()),
        None => crate::incremental::blocker(plan, late),
    };
    let why = match (blocker, late) {
        (None, Some(late)) => {
            let mut read = late.new_files.clone();
            read.extend(late.displaced_files());
            read.sort_unstable();
            read.dedup();
            if fits(&read) {
                let displaced = late.displaced.len();
                plan.incremental = true;
                plan.displaced = displaced;
                plan.reads = if displaced == 0 {
                    "only the new input files are read: every stale day is stale only because they add events to it".to_string()
                } else {
                    format!(
                        "only the new input files are read, and the files of the {displaced} recorded survivor(s) their records displace"
                    )
                };
                narrow(plan, read);
                return;
            }
            too_big.to_string()
        }
        (None, None) => "the survivor index was not read".to_string(),
        (Some(why), _) => why,
    };
    plan.reads = format!("every input file is read: {why}");
    let Some(whole) = for_run
        .and_then(ForRun::whole)
        .filter(|_| options.creators.is_none())
    else {
        return;
    };
    let read = whole.files_for(plan.days.iter().filter_map(|d| parse_day(&d.day)));
    if read.len() == inputs.len() {
        plan.reads = format!(
            "every input file is read: each holds records of the written days' events{}",
            if whole.tied.is_empty() {
                ""
            } else {
                " or recorded records that new ones tie with"
            }
        );
    } else if !fits(&read) {
        plan.reads = format!("every input file is read: {too_big}");
    } else {
        plan.partial = true;
        let tied = match whole.tied.len() {
            0 => String::new(),
            events => format!(
                " (with the files of the recorded records that {events} event(s)' new records tie with on both timestamps)"
            ),
        };
        plan.reads = format!(
            "only the {} holding records of the written days' events{tied} {} read, and those days are recomputed from them",
            if read.len() == 1 {
                "input file".to_string()
            } else {
                format!("{} input files", read.len())
            },
            if read.len() == 1 { "is" } else { "are" },
        );
        narrow(plan, read);
    }
}

/// Fills in, for each published day of `plan`, how many of its rows are of
/// the creators of `scope` (reading those days' partitions in `out`).
pub fn count_creator_rows(
    plan: &mut Plan,
    out: &Path,
    scope: &CreatorScope,
) -> Result<(), RunError> {
    let existing = crate::commit::existing(&crate::commit::resolve(out)?)?;
    for day in &mut plan.days {
        let dir = parse_day(&day.day).and_then(|d| existing.days.get(&d));
        if let Some(dir) = dir {
            day.creator_rows = Some(scope.published_rows(&dir.join(crate::layout::PART_FILE))?);
        }
    }
    Ok(())
}

fn first_or(days: &BTreeSet<i32>, none: &str) -> String {
    days.first()
        .map_or_else(|| none.to_string(), |d| format_day(*d))
}

fn last_or(days: &BTreeSet<i32>, none: &str) -> String {
    days.last()
        .map_or_else(|| none.to_string(), |d| format_day(*d))
}

/// The commit windows that write `days`: each as long as it can be without
/// spanning a day of `keep` (published days left as they are) or holding
/// more than `chunk` days of `days`.
pub fn windows(days: &BTreeSet<i32>, keep: &BTreeSet<i32>, chunk: Option<u32>) -> Vec<(i32, i32)> {
    let chunk = chunk.map_or(usize::MAX, |c| c.max(1) as usize);
    let mut out: Vec<(i32, i32)> = Vec::new();
    let mut held = 0;
    for &day in days {
        match out.last_mut() {
            Some((from, to)) if held < chunk && keep.range(*from..=day).next().is_none() => {
                *to = day;
                held += 1;
            }
            _ => {
                out.push((day, day));
                held = 1;
            }
        }
    }
    out
}

/// A run that failed part-way: the commits it made before it failed stay.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct BackfillError {
    /// The reports of the commits made before the failure.
    pub committed: Vec<RunReport>,
    #[source]
    pub source: Box<RunError>,
}

impl From<RunError> for BackfillError {
    fn from(source: RunError) -> Self {
        BackfillError {
            committed: Vec::new(),
            source: Box::new(source),
        }
    }
}

/// Runs the pipeline once and commits the days `plan` writes, one commit per
/// window: those of the plan, or, when the plan could not know every day
/// (no index), windows made from the days the computation found. Calls
/// `committed` after each commit. Writes nothing when the plan writes
/// nothing. With a `scope`, each commit writes only the days of its window
/// where the listed creators have rows, and only their rows; the windows are
/// made of those days.
pub fn run(
    options: &RunOptions,
    rule: Rule,
    plan: &Plan,
    for_run: Option<ForRun>,
    chunk_days: Option<u32>,
    scope: Option<&CreatorScope>,
    committed: &mut dyn FnMut(&RunReport),
) -> Result<Vec<RunReport>, BackfillError> {
    if !plan.writes() {
        return Ok(Vec::new());
    }
    crate::ingest::check_inputs_apart_from_output(&options.inputs, &options.out)
        .map_err(RunError::from)?;
    let started = Instant::now();
    let stale: BTreeSet<i32> = plan.days.iter().filter_map(|d| parse_day(&d.day)).collect();
    // Only the span of the stale days is classified.
    let span = match plan.scope {
        Scope::Stale => match (stale.first(), stale.last()) {
            (Some(&from), Some(&to)) => Some((from, to)),
            _ => return Ok(Vec::new()),
        },
        Scope::All | Scope::AllUnknown => options.days,
    };
    let mut computed = pipeline::with_threads(options.threads, || match for_run {
        Some(ForRun::Lookup(late)) if plan.incremental && scope.is_none() => {
            crate::incremental::compute(options, rule, plan, *late)
        }
        Some(ForRun::Whole(whole)) if plan.partial && scope.is_none() => {
            crate::partial::compute(options, rule, plan, *whole)
        }
        _ => pipeline::compute_with(
            &options.inputs,
            &options.read,
            rule,
            options.batch_size,
            span,
            options.progress,
            &options.spill,
            true,
            scope,
        ),
    })?;
    let existing =
        crate::commit::existing(&crate::commit::resolve(&options.out).map_err(RunError::from)?)
            .map_err(RunError::from)?;
    let published: BTreeSet<i32> = existing
        .days
        .keys()
        .copied()
        .filter(|d| within(span, *d))
        .collect();
    // A scoped run writes only the days where its creators have rows.
    let scoped = match scope {
        Some(scope) => Some(pipeline::scoped_days(&computed, &existing, scope, |d| {
            within(span, *d)
        })?),
        None => None,
    };
    let narrow = |days: &mut BTreeSet<i32>| {
        if let Some(scoped) = &scoped {
            days.retain(|d| scoped.contains(d));
        }
    };
    let windows = match plan.scope {
        Scope::Stale => {
            // Every day the computation has events for that has no partition
            // is written too, whatever the plan said.
            let mut days = stale;
            days.extend(
                computed
                    .aggregate
                    .rows
                    .iter()
                    .map(|r| r.day)
                    .filter(|d| !published.contains(d)),
            );
            narrow(&mut days);
            let keep: BTreeSet<i32> = published.difference(&days).copied().collect();
            windows(&days, &keep, chunk_days)
        }
        Scope::All | Scope::AllUnknown => {
            let mut days = published;
            days.extend(computed.aggregate.rows.iter().map(|r| r.day));
            narrow(&mut days);
            match chunk_days {
                Some(_) => windows(&days, &BTreeSet::new(), chunk_days),
                None if scoped.as_ref().is_some_and(BTreeSet::is_empty) => Vec::new(),
                None => vec![span.unwrap_or((i32::MIN, i32::MAX))],
            }
        }
    };
    let index = computed.index.take();
    let mut reports = Vec::new();
    for (i, &window) in windows.iter().enumerate() {
        // Every commit installs the index (it describes all the inputs); all
        // but the last install links to its files.
        let last = i + 1 == windows.len();
        match commit_window(
            &mut computed,
            index.as_ref(),
            last,
            (i, window),
            options,
            scope,
            started,
        ) {
            Ok(report) => {
                committed(&report);
                reports.push(report);
            }
            Err(source) => {
                return Err(BackfillError {
                    committed: reports,
                    source: Box::new(source),
                });
            }
        }
    }
    Ok(reports)
}

/// Commits the days of `window` of what was computed: the `number`th
/// commit of a run, the `last` or not.
fn commit_window(
    computed: &mut Computed,
    index: Option<&survivors::Built>,
    last: bool,
    (number, window): (usize, (i32, i32)),
    options: &RunOptions,
    scope: Option<&CreatorScope>,
    started: Instant,
) -> Result<RunReport, RunError> {
    computed.index = match index {
        Some(built) if !last => Some(linked(built, number)?),
        built => built.cloned(),
    };
    // The `number`th commit of an incremental run builds on the one before.
    if let Some(base) = computed.index.as_mut().and_then(|b| b.base.as_mut()) {
        base.commit += number as u64;
    }
    let whole = (i32::MIN, i32::MAX);
    let options = RunOptions {
        days: (window != whole).then_some(window),
        ..options.clone()
    };
    let computed = &*computed;
    pipeline::with_threads(options.threads, || {
        pipeline::commit_scoped(computed, &options, started, scope)
    })
}

/// A copy of a built index (hard links to its files where the file system
/// allows) in its own directory of the run's work directory, for a commit
/// that installs it while a later commit needs it too.
fn linked(built: &survivors::Built, number: usize) -> Result<survivors::Built, RunError> {
    // Beside the index, in the run's work directory, removed with it.
    let parent = built.dir.parent().unwrap_or(&built.dir);
    let dir = parent.join(format!("index-commit-{number}"));
    let fail = |path: &Path, source: std::io::Error| {
        RunError::Commit(crate::commit::CommitError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    std::fs::create_dir_all(&dir).map_err(|e| fail(&dir, e))?;
    for f in &built.files {
        let (from, to) = (built.dir.join(&f.file), dir.join(&f.file));
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).map_err(|e| fail(&to, e))?;
        }
    }
    Ok(survivors::Built {
        dir,
        ..built.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(days: &[i32]) -> BTreeSet<i32> {
        days.iter().copied().collect()
    }

    #[test]
    fn windows_never_span_a_kept_day_and_hold_at_most_a_chunk() {
        let days = set(&[1, 2, 3, 5, 6, 9, 10, 11, 12]);
        // Day 4 is kept (published and fresh), 7 and 8 have no partition.
        let keep = set(&[4]);
        assert_eq!(
            windows(&days, &keep, None),
            vec![(1, 3), (5, 12)],
            "a day without a partition does not split a window"
        );
        assert_eq!(
            windows(&days, &keep, Some(2)),
            vec![(1, 2), (3, 3), (5, 6), (9, 10), (11, 12)]
        );
        assert_eq!(
            windows(&BTreeSet::new(), &keep, Some(3)),
            Vec::<(i32, i32)>::new()
        );
        assert_eq!(windows(&set(&[7]), &keep, Some(1)), vec![(7, 7)]);
    }

    /// A whole read of an index over three input files, whose day 10 needs
    /// files 0 and 2 and day 11 every file.
    fn whole(tie_files: &[usize]) -> ForRun {
        ForRun::Whole(Box::new(crate::status::Whole {
            commit: 1,
            manifest: survivors::Manifest {
                index_format: survivors::INDEX_FORMAT_VERSION,
                shard_format: crate::shard::SHARD_FORMAT_VERSION,
                records: 0,
                events: 0,
                max_line_bytes: 0,
                inputs: Vec::new(),
                files: Vec::new(),
                layers: Vec::new(),
                days: None,
            },
            positions: Vec::new(),
            blake3: Vec::new(),
            needs: [(10, set_of(&[0, 2])), (11, set_of(&[0, 1, 2]))]
                .into_iter()
                .collect(),
            new_entries: Vec::new(),
            records: 0,
            tied: if tie_files.is_empty() {
                Default::default()
            } else {
                [(1, 2)].into_iter().collect()
            },
            tie_files: set_of(tie_files),
        }))
    }

    fn set_of(files: &[usize]) -> BTreeSet<usize> {
        files.iter().copied().collect()
    }

    /// A stale-only plan writing `days`, narrowed by `read_less`.
    fn narrowed(days: &[i32], for_run: &ForRun, fits: bool) -> Plan {
        let inputs: Vec<(String, u64)> = (0..3).map(|i| (format!("/in/{i}.jsonl"), 100)).collect();
        let options = BackfillOptions {
            stale_only: true,
            ..BackfillOptions::default()
        };
        let mut plan = plan(None, None, None, options, &inputs, &|_| true);
        plan.scope = Scope::Stale;
        plan.days = days
            .iter()
            .map(|&d| PlannedDay {
                day: format_day(d),
                published: true,
                stale: Some(true),
                events: None,
                creator_rows: None,
                causes: Vec::new(),
            })
            .collect();
        read_less(&mut plan, Some(for_run), options, &inputs, &|_| fits);
        plan
    }

    #[test]
    fn a_partial_read_takes_the_files_of_its_days_and_its_ties_when_they_fit() {
        let plan = narrowed(&[10], &whole(&[]), true);
        assert!(plan.partial && !plan.incremental);
        assert_eq!(plan.read_files, vec!["/in/0.jsonl", "/in/2.jsonl"]);
        assert_eq!((plan.input_files, plan.input_bytes), (2, 200));
        assert!(
            plan.reads.starts_with("only the 2 input files"),
            "{}",
            plan.reads
        );

        let every = narrowed(&[10, 11], &whole(&[]), true);
        assert!(!every.partial);
        assert!(
            every.reads.contains("each holds records"),
            "{}",
            every.reads
        );
        assert_eq!(every.input_files, 3);

        let big = narrowed(&[10], &whole(&[]), false);
        assert!(!big.partial);
        assert!(big.reads.contains("memory limit"), "{}", big.reads);
        assert_eq!((big.input_files, big.read_files.len()), (3, 0));

        // New records tie with recorded ones in a file the day reads
        // anyway, then in another: that one is read too.
        let tied = narrowed(&[10], &whole(&[2]), true);
        assert!(tied.partial);
        assert_eq!(tied.read_files, vec!["/in/0.jsonl", "/in/2.jsonl"]);
        assert!(
            tied.reads.contains("1 event(s)' new records tie"),
            "{}",
            tied.reads
        );
        let tied = narrowed(&[10], &whole(&[1]), true);
        assert!(!tied.partial);
        assert_eq!(tied.input_files, 3);
        assert!(tied.reads.contains("tie with"), "{}", tied.reads);
    }
}
