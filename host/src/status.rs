//! Status: which published partitions a full recompute would change, and why.
//!
//! A full recompute (`tally run` over the given inputs with the given rule)
//! changes a day's partition when the rule's hash differs from the stamped
//! one, when [`COMPUTE_VERSION`] differs from the stamped one, or when the
//! day's provenance differs: the input files its events' surviving records
//! come from, with how many each, which is what its stamped fingerprint
//! ([`day_fingerprint`]) describes. The survivor index ([`crate::survivors`])
//! holds every valid record the output's last commit read; merged with the
//! records of the input files that are new or changed since, and without
//! those of files changed or removed, it gives every event's survivor after a
//! recompute, hence every day's provenance, exactly, without reading the
//! files already recorded. Only when a new record ties with a recorded one on
//! both timestamps but not on its other fields is the recorded one read back
//! from its file, to settle the tie.
//!
//! A monthly partition ([`crate::derived`]) is stale when any of its days is,
//! or when it was built from other day partitions than those published.
//!
//! This module reads an output and input files; it never writes anything.

use crate::derived::{self, DerivedManifest};
use crate::event::{format_day, parse_day};
use crate::ingest::{self, IngestError, InputFile};
use crate::layout;
use crate::lineage::{self, LineageError};
use crate::pipeline::{COMPUTE_VERSION, DayInput, PartitionManifest, day_fingerprint};
use crate::progress::Progress;
use crate::survivors::{self, Details, Entry, FieldHasher, IndexError, SurvivorOrder};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// What `tally status` takes.
#[derive(Debug, Clone)]
pub struct StatusOptions {
    /// The output directory.
    pub out: PathBuf,
    /// The input files and directories a recompute would read.
    pub inputs: Vec<PathBuf>,
    /// The blake3 (hex) of the rule a recompute would run.
    pub rule_hash: String,
    /// Hash every input file the index recorded, even those whose size and
    /// modification time are as recorded.
    pub checksum: bool,
    /// Read the whole survivor index, even when looking up the new records'
    /// events would do: slower, the same report (a cross-check).
    pub full_scan: bool,
    /// How a recompute reads input files. New and changed files are read
    /// that way. A recorded file is read again when this `max_line_bytes`
    /// and the index's read some of its lines differently.
    pub read: ingest::ReadOptions,
    /// For a run: keep the new files' records read ([`Late::read`]).
    pub keep: bool,
    /// Show progress on stderr (when it is a terminal).
    pub progress: bool,
}

/// Why the status of an output could not be told.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    #[error(transparent)]
    Lineage(#[from] LineageError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Dedup(#[from] crate::dedup::DedupError),
    /// A recorded file no longer holds a record its index entry describes,
    /// though its size and modification time are as recorded.
    #[error(
        "input {path} no longer holds a record the survivor index recorded from it, though its size and modification time are as recorded: its content changed; rerun with --checksum"
    )]
    RecordGone { path: String },
}

/// What happened to an input file since the output's last commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputChange {
    /// Recorded, with the recorded size and modification time (or, hashed,
    /// the recorded content).
    Unchanged,
    /// Recorded, with another size or modification time but the recorded
    /// content.
    Touched,
    /// Not recorded, with the content of a recorded file that is gone from
    /// its recorded path: that file, moved.
    Moved,
    /// Not recorded.
    New,
    /// Recorded, with other content.
    Changed,
    /// Recorded, and not among the inputs any more.
    Removed,
    /// Recorded, with the recorded content, but holding a line that the
    /// `max_line_bytes` given and the one the output was computed with read
    /// differently (a record under one, `line-too-long` under the other):
    /// read again.
    Reread,
}

/// An input file and what happened to it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InputStatus {
    /// Absolute path.
    pub path: String,
    pub change: InputChange,
    /// Its content's blake3 now (as recorded when it was not hashed; none
    /// when removed).
    pub blake3: Option<String>,
    /// The blake3 the index recorded, if it recorded the file.
    pub recorded_blake3: Option<String>,
    /// For a moved file: the path the index recorded it under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_from: Option<String>,
    /// For a file whose records were read: its valid records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_records: Option<u64>,
}

/// An input file whose content status read, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileRead {
    pub path: String,
    /// `hash` (its blake3, to tell whether it changed), `records` (its
    /// records, being new, changed or read again), `tie` (a record the index
    /// recorded from it, to settle a tie with a new one) or `lines` (its line
    /// lengths, when the `max_line_bytes` given is not the index's).
    pub read: &'static str,
}

/// Why a partition is stale.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Cause {
    /// The partition was computed by another rule than the one given.
    Rule { stamped: String, given: String },
    /// The partition was computed by another compute version.
    Compute { stamped: u32, current: u32 },
    /// Events no recorded input had, whose records are in `file`.
    NewEvents { file: String, events: u64 },
    /// Events whose surviving record moves to this day from the days in
    /// `from`, now the record in `file` (a record ingested earlier, with
    /// another `occurred_at`).
    MovedIn {
        file: String,
        events: u64,
        from: Vec<String>,
    },
    /// Events of this day whose surviving record moves to the days in `to`,
    /// now the record in `file`.
    MovedOut {
        file: String,
        events: u64,
        to: Vec<String>,
    },
    /// Events that stay on this day, their surviving record now the one in
    /// `file` (ingested earlier, a conflict that wins, or the only one left).
    Replaced { file: String, events: u64 },
    /// Events of this day with no valid record left.
    Dropped { events: u64 },
    /// A file whose content changed held the surviving record of `events`
    /// of this day's events.
    ChangedFile {
        file: String,
        old_blake3: String,
        new_blake3: String,
        events: u64,
    },
    /// A file read again (its lines read differently with the
    /// `max_line_bytes` given) held the surviving record of `events` of this
    /// day's events, and no longer gives that record.
    RereadFile { file: String, events: u64 },
    /// A file no longer among the inputs held the surviving record of
    /// `events` of this day's events.
    RemovedFile {
        file: String,
        blake3: String,
        events: u64,
    },
    /// The partition was computed from other inputs than the recorded ones
    /// give today (it was written before the last commit, which left it out
    /// of its `--days` window, say).
    Outdated {
        commit: u64,
        stamped_fingerprint: String,
        expected_fingerprint: String,
    },
    /// No partition: a recompute writes one, with `events` events.
    Unpublished { events: u64 },
    /// The output has no survivor index of its last commit, so the inputs
    /// cannot be checked: only a recompute can tell.
    NoIndex { reason: String },
    /// Days of this period whose partitions are stale (or unpublished).
    Days { stale: Vec<String> },
    /// A day partition of this period is not the one it was built from.
    DayChanged {
        day: String,
        built_from: Option<String>,
        current: Option<String>,
    },
}

/// One day of the daily table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DayStatus {
    pub day: String,
    /// Whether the output has its partition.
    pub published: bool,
    pub stale: bool,
    /// The events a recompute gives the day (0 when it drops them all);
    /// null without a survivor index, when only a recompute can tell.
    pub events: Option<u64>,
    pub causes: Vec<Cause>,
}

/// One partition of a derived table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeriodStatus {
    pub table: String,
    pub period: String,
    pub published: bool,
    pub stale: bool,
    pub causes: Vec<Cause>,
}

/// The survivor index status used.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IndexUsed {
    pub commit: u64,
    pub records: u64,
    pub events: u64,
    pub files: usize,
    /// Layers added by incremental commits.
    pub layers: usize,
    /// How it was read: `lookup` (only the events of new records, when no
    /// recorded file changed or went and the index counts every day's
    /// events) or `whole`.
    pub read: &'static str,
    /// The `max_line_bytes` its inputs were read with.
    pub max_line_bytes: u64,
}

/// The new input files as a status for a run read them (with the run's read
/// options): the run takes them instead of reading the files again.
pub struct NewRead {
    /// The files read: their positions among the inputs, in order.
    pub positions: Vec<usize>,
    /// How they were read.
    pub options: ingest::ReadOptions,
    pub read: crate::pipeline::Read,
}

impl std::fmt::Debug for NewRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewRead")
            .field("positions", &self.positions)
            .field("records", &self.read.records)
            .finish_non_exhaustive()
    }
}

/// What an incremental recompute ([`crate::incremental`]) needs of a status
/// that looked up only the new records' events.
#[derive(Debug)]
pub struct Late {
    /// The commit whose index it is, and the index.
    pub commit: u64,
    pub manifest: survivors::Manifest,
    /// Each recorded input file's position among the inputs now.
    pub positions: Vec<usize>,
    /// Each input's content blake3 now (hex), in input order.
    pub blake3: Vec<String>,
    /// The new input files: their positions, in order.
    pub new_files: Vec<usize>,
    /// The events of new records the index knows, with their recorded
    /// survivor (its source: its file's position among the inputs).
    pub known: HashMap<survivors::Key, Entry>,
    /// Of those, the events whose survivor a recompute takes from a new
    /// record (earlier on both timestamps than the recorded one, or the same
    /// record from a file that comes first), with the recorded survivor's
    /// file in the index's numbering.
    pub displaced: HashMap<survivors::Key, u32>,
    /// Events with a new record on a recorded record's timestamps with other
    /// fields: an incremental recompute needs none (its index layer would not
    /// tell their order).
    pub tied: u64,
    /// The new files as read (for a run: [`StatusOptions::read`]).
    pub read: Option<NewRead>,
}

impl Late {
    /// The input files (positions) holding the surviving record of an event
    /// of one of `days`, by the index's count of each day's events: files a
    /// recompute of those days reads whatever else it reads.
    pub fn survivor_files(&self, days: &BTreeSet<String>) -> BTreeSet<usize> {
        self.manifest
            .days
            .iter()
            .flatten()
            .filter(|(day, _)| days.contains(*day))
            .flat_map(|(_, sources)| sources.iter())
            .filter(|(_, events)| **events > 0)
            .filter_map(|(&source, _)| self.positions.get(source as usize).copied())
            .collect()
    }

    /// The positions among the inputs of the files holding displaced
    /// survivors, in order: read by an incremental recompute.
    pub fn displaced_files(&self) -> Vec<usize> {
        let files: BTreeSet<usize> = self
            .displaced
            .keys()
            .map(|k| self.known[k].source as usize)
            .collect();
        files.into_iter().collect()
    }
}

/// What a recompute of some days from some of the inputs
/// ([`crate::partial`]) needs of a status that read the whole survivor index
/// (a recorded file changed or went, say).
#[derive(Debug)]
pub struct Whole {
    /// The commit whose index it is, and the index.
    pub commit: u64,
    pub manifest: survivors::Manifest,
    /// Each recorded input file's position among the inputs now, or none
    /// when its recorded content is gone.
    pub positions: Vec<Option<usize>>,
    /// Each input's content blake3 now (hex), in input order.
    pub blake3: Vec<String>,
    /// Per day: the input files (positions) holding a record of an event
    /// that has a record on that day. A recompute of some days reads the
    /// files of those days: every record of every event that can survive
    /// on them is then read.
    pub needs: BTreeMap<i32, BTreeSet<usize>>,
    /// The records of the new and changed files, in index order, their
    /// `source` their file's position among the inputs.
    pub new_entries: Vec<Entry>,
    /// The index's records still among the inputs, plus the new ones: the
    /// rows of the index after a recompute.
    pub records: u64,
    /// The events with a new record on a recorded record's timestamps with
    /// other fields: the index holds a hash of the recorded record's
    /// fields, not the fields, so its place among the new records is told
    /// by reading it back.
    pub tied: HashSet<survivors::Key>,
    /// The files (positions) holding the recorded records on those
    /// timestamps: a recompute reads them too.
    pub tie_files: BTreeSet<usize>,
}

impl Whole {
    /// The input files (positions, in order) a recompute of `days` reads:
    /// those of the days, and those of the recorded records that new ones
    /// tie with.
    pub fn files_for(&self, days: impl IntoIterator<Item = i32>) -> Vec<usize> {
        let mut files = self.tie_files.clone();
        for day in days {
            files.extend(self.needs.get(&day).into_iter().flatten().copied());
        }
        files.into_iter().collect()
    }
}

/// What a status found that lets a run read less than every input: how it
/// read the survivor index decides which.
#[derive(Debug)]
pub enum ForRun {
    /// It looked up only the new records' events.
    Lookup(Box<Late>),
    /// It read the whole index.
    Whole(Box<Whole>),
}

impl ForRun {
    /// The lookup's findings, if it looked up.
    pub fn late(&self) -> Option<&Late> {
        match self {
            ForRun::Lookup(late) => Some(late.as_ref()),
            ForRun::Whole(_) => None,
        }
    }

    /// The whole read's findings, if it read the whole index.
    pub fn whole(&self) -> Option<&Whole> {
        match self {
            ForRun::Whole(whole) => Some(whole.as_ref()),
            ForRun::Lookup(_) => None,
        }
    }
}

/// What `tally status` found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusReport {
    pub out: String,
    pub rule_hash: String,
    pub compute_version: u32,
    /// Whether any partition is stale.
    pub stale: bool,
    pub stale_days: usize,
    pub stale_periods: usize,
    /// The `max_line_bytes` a recompute reads with.
    pub max_line_bytes: u64,
    /// The survivor index, or none (then every day is stale with cause
    /// `no-index`).
    pub index: Option<IndexUsed>,
    /// Every input file, given or recorded, and what happened to it (none
    /// without an index to compare them with).
    pub inputs: Vec<InputStatus>,
    /// Every input file whose content was read (hashed or parsed).
    pub files_read: Vec<FileRead>,
    pub days: Vec<DayStatus>,
    pub derived: Vec<PeriodStatus>,
}

/// Where a recorded input file is now.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// Among the inputs with its recorded content, at this position.
    Present(usize),
    /// Gone (removed, or its content changed): file id for causes.
    Gone(usize),
    /// Read again, at this position among the inputs (its lines read
    /// differently with the limit given): its recorded records are gone
    /// (file id for causes), its records read now are among the new ones.
    Reread { gone: usize, at: usize },
}

/// A file as causes name it: present ones first, in input order, then the
/// recorded contents that are gone.
#[derive(Debug, Clone)]
struct FileInfo {
    path: String,
    blake3: String,
    change: InputChange,
    moved_from: Option<String>,
}

/// How one event's survivor moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Move {
    New,
    In,
    Out,
    Replaced,
    Dropped,
}

/// What a recompute would do, counted over the events.
#[derive(Default)]
struct Recount {
    /// Per day, per present file: the events whose survivor a recompute
    /// takes from that file.
    provenance: BTreeMap<i32, BTreeMap<usize, u64>>,
    /// Per (day, move, file): events and the other days involved.
    moves: BTreeMap<(i32, Move, usize), (u64, BTreeSet<i32>)>,
    /// Per (day, gone file): the day's events whose survivor was there.
    gone: BTreeMap<(i32, usize), u64>,
}

impl Recount {
    /// Adds the counts of `other`, made over other events.
    fn absorb(&mut self, other: Recount) {
        for (day, sources) in other.provenance {
            let mine = self.provenance.entry(day).or_default();
            for (file, n) in sources {
                *mine.entry(file).or_default() += n;
            }
        }
        for (key, (n, days)) in other.moves {
            let mine = self.moves.entry(key).or_default();
            mine.0 += n;
            mine.1.extend(days);
        }
        for (key, n) in other.gone {
            *self.gone.entry(key).or_default() += n;
        }
    }

    /// The events a recompute gives `day`.
    fn events(&self, day: i32) -> u64 {
        self.provenance.get(&day).map_or(0, |f| f.values().sum())
    }

    /// Counts one event: its survivor before (day, file id) and after (day,
    /// position of a present file).
    fn event(&mut self, before: Option<(i32, usize)>, after: Option<(i32, usize)>) {
        if let Some((day, file)) = after {
            *self
                .provenance
                .entry(day)
                .or_default()
                .entry(file)
                .or_default() += 1;
        }
        let mut add = |day: i32, kind: Move, file: usize, other: Option<i32>| {
            let entry = self.moves.entry((day, kind, file)).or_default();
            entry.0 += 1;
            entry.1.extend(other);
        };
        match (before, after) {
            (None, Some((day, file))) => add(day, Move::New, file, None),
            (Some((day, file)), None) => add(day, Move::Dropped, file, None),
            (Some((d0, f0)), Some((d1, f1))) if d0 == d1 && f0 != f1 => {
                add(d1, Move::Replaced, f1, None)
            }
            (Some((d0, _)), Some((d1, f1))) if d0 != d1 => {
                add(d1, Move::In, f1, Some(d0));
                add(d0, Move::Out, f1, Some(d1));
            }
            _ => {}
        }
    }
}

/// A new record that ties with a recorded one on both timestamps but not on
/// its other fields: the recorded one is read back to settle which survives.
struct Tie {
    key: (u64, u64),
    /// The best recorded record still present (its source: the recorded file).
    recorded: Entry,
    /// Its file's position among the inputs.
    recorded_at: usize,
    /// The best new record (its source: its file's position).
    new: Entry,
    /// Its details.
    new_details: Details,
    before: Option<(i32, usize)>,
}

/// The records of the new and changed input files.
struct NewRecords {
    /// The strings their details point into.
    strings: crate::intern::Interner,
    /// Sorted in index order; `source` is the file's position among the inputs.
    entries: Vec<Entry>,
    details: Vec<Details>,
    /// Each file's valid records, by its position among the inputs.
    valid: HashMap<usize, u64>,
}

/// What reading the whole index gathers for a recompute of some days from
/// some of the inputs ([`Whole`]).
struct Needs {
    /// Per day, per input position: whether that file holds a record of an
    /// event with a record on that day.
    files: hashbrown::HashMap<i32, Vec<bool>>,
    inputs: usize,
    /// Events with a new record on a recorded record's timestamps with
    /// other fields: their order in a rewritten index takes the recorded
    /// records' details, read back from their files.
    tied: HashSet<survivors::Key>,
    /// The files (positions) holding the recorded records on those
    /// timestamps.
    tie_files: BTreeSet<usize>,
    /// Recorded records still among the inputs.
    present: u64,
    /// One event's records now: (day, position).
    scratch: Vec<(i32, usize)>,
}

impl Needs {
    fn new(inputs: usize) -> Needs {
        Needs {
            files: hashbrown::HashMap::new(),
            inputs,
            tied: HashSet::new(),
            tie_files: BTreeSet::new(),
            present: 0,
            scratch: Vec::new(),
        }
    }

    /// One event: its recorded records `old` and its new records `new`.
    fn event(&mut self, old: &[Entry], new: &[Entry], places: &[Place]) {
        self.scratch.clear();
        let time = |e: &Entry| (e.ingested_at, e.occurred_at);
        let mut tied = false;
        for o in old {
            if let Some(Place::Present(at)) = places.get(o.source as usize) {
                self.present += 1;
                self.scratch.push((o.day(), *at));
                tied |= new
                    .iter()
                    .any(|n| time(n) == time(o) && n.fields != o.fields);
            }
        }
        if tied {
            self.tied.extend(old.first().map(Entry::key));
            // Every recorded record on a timestamp pair with a tie: each
            // one's place among the records there takes its details.
            for o in old {
                if let Some(Place::Present(at)) = places.get(o.source as usize)
                    && new.iter().any(|n| time(n) == time(o))
                {
                    self.tie_files.insert(*at);
                }
            }
        }
        self.scratch
            .extend(new.iter().map(|n| (n.day(), n.source as usize)));
        for &(day, _) in &self.scratch {
            let row = self
                .files
                .entry(day)
                .or_insert_with(|| vec![false; self.inputs]);
            for &(_, at) in &self.scratch {
                if let Some(cell) = row.get_mut(at) {
                    *cell = true;
                }
            }
        }
    }

    /// Adds what `other` gathered over other events.
    fn absorb(&mut self, other: Needs) {
        self.tied.extend(other.tied);
        self.tie_files.extend(other.tie_files);
        self.present += other.present;
        for (day, row) in other.files {
            match self.files.entry(day) {
                hashbrown::hash_map::Entry::Occupied(mut mine) => {
                    for (a, b) in mine.get_mut().iter_mut().zip(row) {
                        *a |= b;
                    }
                }
                hashbrown::hash_map::Entry::Vacant(slot) => {
                    slot.insert(row);
                }
            }
        }
    }

    /// Per day, the files: what [`Whole::needs`] holds.
    fn by_day(&self) -> BTreeMap<i32, BTreeSet<usize>> {
        self.files
            .iter()
            .map(|(&day, row)| {
                let files = row
                    .iter()
                    .enumerate()
                    .filter(|(_, needed)| **needed)
                    .map(|(at, _)| at)
                    .collect();
                (day, files)
            })
            .collect()
    }
}

/// Tells which partitions of `options.out` a full recompute would change.
pub fn status(options: &StatusOptions) -> Result<StatusReport, StatusError> {
    status_for_run(options).map(|(report, _)| report)
}

/// [`status`], and what a run that reads less than every input needs: when
/// it looked up only the new records' events, what an incremental
/// recompute needs; when it read the whole index, what a recompute from
/// some of the inputs needs.
pub fn status_for_run(
    options: &StatusOptions,
) -> Result<(StatusReport, Option<ForRun>), StatusError> {
    status_for_run_with(options, None)
}

/// [`status_for_run`], with the new files' records an earlier status of
/// the same inputs read ([`Late::read`]): used instead of reading them
/// again when they are the files to read, read the same way.
pub fn status_for_run_with(
    options: &StatusOptions,
    earlier: Option<&NewRead>,
) -> Result<(StatusReport, Option<ForRun>), StatusError> {
    let out = &options.out;
    let partitions = lineage::partitions(out, None)?;
    let months = lineage::derived(out, &derived::MONTHLY)?;
    // What a recompute refuses, status refuses too.
    ingest::check_inputs_apart_from_output(&options.inputs, out)?;
    let found = ingest::discover(&options.inputs)?;

    let mut files_read = Vec::new();
    let (index, no_index) = match current_index(out)? {
        Ok(index) => (Some(index), None),
        Err(reason) => (None, Some(reason)),
    };
    let mut recount = Recount::default();
    let mut inputs = Vec::new();
    let mut files: Vec<FileInfo> = Vec::new();
    let mut late = None;
    if let Some((commit, manifest)) = &index {
        let bar = Progress::stage("check inputs", options.progress);
        let (places, new_files) =
            classify_inputs(&found, manifest, options, &mut files, &mut files_read)?;
        bar.finish();
        let (mut new, mut kept) = read_new(&found, &new_files, options, earlier, &mut files_read)?;
        let mut ties = Vec::new();
        let lookup = !options.full_scan
            && manifest.days.is_some()
            && places.iter().all(|p| matches!(p, Place::Present(_)));
        if lookup {
            let bar = Progress::stage("look up", options.progress);
            let (known, displaced, tied) = lookup_index(
                out,
                options.checksum,
                manifest,
                &places,
                &new,
                &mut recount,
                &mut ties,
            )?;
            bar.finish();
            let new_files = files
                .iter()
                .enumerate()
                .filter(|(_, f)| f.change == InputChange::New)
                .map(|(at, _)| at)
                .collect();
            late = Some(ForRun::Lookup(Box::new(Late {
                commit: *commit,
                manifest: manifest.clone(),
                positions: places
                    .iter()
                    .map(|p| match p {
                        Place::Present(at) | Place::Gone(at) | Place::Reread { gone: at, .. } => {
                            *at
                        }
                    })
                    .collect(),
                blake3: found
                    .iter()
                    .enumerate()
                    .map(|(at, _)| files[at].blake3.clone())
                    .collect(),
                new_files,
                known,
                displaced,
                tied,
                read: kept.take(),
            })));
        } else {
            let mut needs = Needs::new(found.len());
            let bar = Progress::start("index", Some(manifest.records), options.progress);
            merge_index(
                out,
                manifest,
                (&places, &new),
                &mut recount,
                &mut ties,
                &mut needs,
                &bar,
            )?;
            bar.finish();
            late = Some(ForRun::Whole(Box::new(Whole {
                commit: *commit,
                manifest: manifest.clone(),
                positions: places
                    .iter()
                    .map(|p| match p {
                        Place::Present(at) => Some(*at),
                        Place::Gone(_) | Place::Reread { .. } => None,
                    })
                    .collect(),
                blake3: (0..found.len())
                    .map(|at| files[at].blake3.clone())
                    .collect(),
                needs: needs.by_day(),
                // Taken from `new` once nothing else needs them.
                new_entries: Vec::new(),
                records: needs.present + new.entries.len() as u64,
                tied: std::mem::take(&mut needs.tied),
                tie_files: std::mem::take(&mut needs.tie_files),
            })));
        }
        let bar = (!ties.is_empty()).then(|| Progress::stage("ties", options.progress));
        settle_ties(
            &found,
            &files,
            ties,
            &new,
            manifest,
            &mut recount,
            &mut files_read,
        )?;
        if let Some(bar) = bar {
            bar.finish();
        }
        for (i, f) in files.iter().enumerate() {
            let recorded = manifest.inputs.iter().find(|r| r.path == f.path);
            inputs.push(InputStatus {
                path: f.path.clone(),
                change: f.change,
                blake3: (f.change != InputChange::Removed).then(|| f.blake3.clone()),
                recorded_blake3: recorded.map(|r| r.blake3.clone()),
                moved_from: f.moved_from.clone(),
                valid_records: new.valid.get(&i).copied(),
            });
        }
        // A changed file appears twice in `files`, its new content (present)
        // first, then its recorded content (gone): list it once.
        let mut seen = HashSet::new();
        inputs.retain(|i| seen.insert(i.path.clone()));
        if let Some(ForRun::Whole(whole)) = &mut late {
            whole.new_entries = std::mem::take(&mut new.entries);
        }
    }

    let days = day_statuses(options, &partitions, &recount, &files, no_index.as_deref());
    // The events of each day after a recompute (as published when that
    // cannot be told).
    let events: BTreeMap<String, u64> = match no_index {
        None => recount
            .provenance
            .iter()
            .map(|(&day, sources)| (format_day(day), sources.values().sum()))
            .collect(),
        Some(_) => partitions
            .iter()
            .map(|p| (p.day.clone(), p.events.max(0) as u64))
            .collect(),
    };
    let derived = period_statuses(&partitions, &months, &days, &events);
    let stale_days = days.iter().filter(|d| d.stale).count();
    let stale_periods = derived.iter().filter(|p| p.stale).count();
    let read = match late {
        Some(ForRun::Lookup(_)) => "lookup",
        _ => "whole",
    };
    let report = StatusReport {
        out: out.display().to_string(),
        rule_hash: options.rule_hash.clone(),
        compute_version: COMPUTE_VERSION,
        stale: stale_days + stale_periods > 0,
        stale_days,
        stale_periods,
        max_line_bytes: options.read.max_line_bytes as u64,
        index: index.map(|(commit, m)| IndexUsed {
            commit,
            records: m.records,
            events: m.events,
            files: m.files.len(),
            layers: m.layers.len(),
            read,
            max_line_bytes: m.max_line_bytes,
        }),
        inputs,
        files_read,
        days,
        derived,
    };
    Ok((report, late))
}

fn absolute(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// The index of the output's last commit and that commit, or why there is
/// none.
fn current_index(out: &Path) -> Result<Result<(u64, survivors::Manifest), String>, StatusError> {
    let path = layout::manifest(out);
    let state: serde_json::Value = lineage::read_json(&path)?;
    let Some(commit) = state["commit"].as_u64() else {
        return Ok(Err(format!("{} names no commit", path.display())));
    };
    let entry = lineage::commit(out, commit)?;
    let Some(summary) = entry.survivor_index else {
        return Ok(Err(format!(
            "commit {commit} wrote no survivor index (a Tally before the index, or a run whose shards carried none); run `tally run` once to write it"
        )));
    };
    let Some((manifest, blake3)) = survivors::read_manifest(out)? else {
        return Ok(Err(format!(
            "{} is missing",
            survivors::manifest_path(out).display()
        )));
    };
    if blake3 != summary.manifest_blake3 {
        return Ok(Err(format!(
            "{} is not the one commit {commit} wrote",
            survivors::manifest_path(out).display()
        )));
    }
    Ok(Ok((commit, manifest)))
}

fn hash_file(file: &InputFile, files_read: &mut Vec<FileRead>) -> Result<String, StatusError> {
    files_read.push(FileRead {
        path: absolute(&file.path),
        read: "hash",
    });
    let hashes = ingest::hash_files(std::slice::from_ref(file))?;
    Ok(hashes[0].to_hex().to_string())
}

/// Places every recorded file and lists the files whose records must be
/// read (positions among the inputs). Fills `files`: the inputs in order,
/// then the recorded contents that are gone. Returns the recorded files'
/// places and the files to read.
fn classify_inputs(
    found: &[InputFile],
    manifest: &survivors::Manifest,
    options: &StatusOptions,
    files: &mut Vec<FileInfo>,
    files_read: &mut Vec<FileRead>,
) -> Result<(Vec<Place>, Vec<usize>), StatusError> {
    let checksum = options.checksum;
    let recorded: HashMap<&str, usize> = manifest
        .inputs
        .iter()
        .enumerate()
        .map(|(i, r)| (r.path.as_str(), i))
        .collect();
    let paths: Vec<String> = found.iter().map(|f| absolute(&f.path)).collect();
    let mut places: Vec<Option<Place>> = vec![None; manifest.inputs.len()];
    let mut to_read = Vec::new();
    let mut unrecorded = Vec::new();
    for (at, (file, path)) in found.iter().zip(&paths).enumerate() {
        let Some(&r) = recorded.get(path.as_str()) else {
            unrecorded.push(at);
            files.push(FileInfo {
                path: path.clone(),
                blake3: String::new(),
                change: InputChange::New,
                moved_from: None,
            });
            continue;
        };
        let rec = &manifest.inputs[r];
        let as_recorded = file.size == rec.size
            && rec.modified_ns.is_some()
            && survivors::modified_ns(file.modified) == rec.modified_ns;
        let (blake3, change) = if as_recorded && !checksum {
            (rec.blake3.clone(), InputChange::Unchanged)
        } else {
            let blake3 = hash_file(file, files_read)?;
            let change = if blake3 != rec.blake3 {
                InputChange::Changed
            } else if as_recorded {
                InputChange::Unchanged
            } else {
                InputChange::Touched
            };
            (blake3, change)
        };
        if change == InputChange::Changed {
            to_read.push(at);
        } else {
            places[r] = Some(Place::Present(at));
        }
        files.push(FileInfo {
            path: path.clone(),
            blake3,
            change,
            moved_from: None,
        });
    }
    // A file not recorded under its path may be a recorded one moved: the
    // same content as a recorded file gone from its path.
    for at in unrecorded {
        let blake3 = hash_file(&found[at], files_read)?;
        let moved = manifest
            .inputs
            .iter()
            .enumerate()
            .find(|(r, rec)| {
                places[*r].is_none() && rec.blake3 == blake3 && !paths.contains(&rec.path)
            })
            .map(|(r, _)| r);
        match moved {
            Some(r) => {
                places[r] = Some(Place::Present(at));
                files[at].change = InputChange::Moved;
                files[at].moved_from = Some(manifest.inputs[r].path.clone());
            }
            None => to_read.push(at),
        }
        files[at].blake3 = blake3;
    }
    // A recorded file read alike whatever the limit stays; one whose lines
    // the two limits read differently is read again.
    let recorded_limit = usize::try_from(manifest.max_line_bytes).unwrap_or(usize::MAX);
    let mut reread = HashMap::new();
    if recorded_limit != options.read.max_line_bytes {
        for (r, place) in places.iter_mut().enumerate() {
            let Some(Place::Present(at)) = *place else {
                continue;
            };
            let file = &found[at];
            if file.format == ingest::Format::Parquet {
                continue;
            }
            files_read.push(FileRead {
                path: absolute(&file.path),
                read: "lines",
            });
            if ingest::reads_differently(file, recorded_limit, options.read.max_line_bytes)? {
                files[at].change = InputChange::Reread;
                *place = None;
                reread.insert(r, at);
                to_read.push(at);
            }
        }
    }
    to_read.sort_unstable();
    // Recorded contents no longer among the inputs: removed, or replaced by
    // a changed file's new content.
    let places = places
        .into_iter()
        .enumerate()
        .map(|(r, place)| {
            place.unwrap_or_else(|| {
                let rec = &manifest.inputs[r];
                let change = if reread.contains_key(&r) {
                    InputChange::Reread
                } else if paths.contains(&rec.path) {
                    InputChange::Changed
                } else {
                    InputChange::Removed
                };
                files.push(FileInfo {
                    path: rec.path.clone(),
                    blake3: rec.blake3.clone(),
                    change,
                    moved_from: None,
                });
                let gone = files.len() - 1;
                match reread.get(&r) {
                    Some(&at) => Place::Reread { gone, at },
                    None => Place::Gone(gone),
                }
            })
        })
        .collect();
    Ok((places, to_read))
}

/// Reads the records of the files at `positions` among the inputs, and
/// makes their index entries; counts each file's valid records.
fn read_new(
    found: &[InputFile],
    positions: &[usize],
    options: &StatusOptions,
    earlier: Option<&NewRead>,
    files_read: &mut Vec<FileRead>,
) -> Result<(NewRecords, Option<NewRead>), StatusError> {
    let (read, keep) = (options.read, options.keep);
    let subset: Vec<InputFile> = positions.iter().map(|&at| found[at].clone()).collect();
    for file in &subset {
        files_read.push(FileRead {
            path: absolute(&file.path),
            read: "records",
        });
    }
    let was_read = match earlier {
        Some(e) if e.positions == positions && e.options == read => e.read.clone(),
        _ => crate::pipeline::read_files::<StatusError>(
            &subset,
            &read,
            options.progress && !subset.is_empty(),
        )?,
    };
    // Sorting for the lookup takes the table apart: a run keeps a copy.
    let (mut table, kept) = if keep {
        let table = was_read.table.clone();
        let kept = NewRead {
            positions: positions.to_vec(),
            options: read,
            read: was_read,
        };
        (table, Some(kept))
    } else {
        (was_read.table, None)
    };
    let mut valid = HashMap::new();
    for &at in positions {
        valid.insert(at, 0);
    }
    for c in &table.chunks {
        *valid.entry(positions[c.source as usize]).or_default() += c.len() as u64;
    }
    let hasher = FieldHasher::new(&table.strings);
    let strings = std::mem::take(&mut table.strings);
    let mut entries = Vec::with_capacity(table.len());
    let mut details = Vec::with_capacity(table.len());
    survivors::build(table, &hasher, 0, 1, &mut |sorted| {
        for item in sorted.pieces.into_iter().flatten() {
            entries.push(item.entry());
            details.push(item.details());
        }
        Ok::<_, StatusError>(())
    })?;
    for e in &mut entries {
        e.source = positions[e.source as usize] as u32;
    }
    Ok((
        NewRecords {
            strings,
            entries,
            details,
            valid,
        },
        kept,
    ))
}

/// What going through one index file gives.
struct FilePart {
    recount: Recount,
    ties: Vec<Tie>,
    needs: Needs,
    records: u64,
}

/// Goes through the index and the new records together, event by event,
/// the index files in parallel.
fn merge_index(
    out: &Path,
    manifest: &survivors::Manifest,
    (places, new): (&[Place], &NewRecords),
    recount: &mut Recount,
    ties: &mut Vec<Tie>,
    needs: &mut Needs,
    bar: &Progress,
) -> Result<(), StatusError> {
    let dir = survivors::dir(out);
    // The new records of each index file: a range, as their keys are in
    // order and the files hold ranges of keys.
    let files = manifest.files.len() as u32;
    let mut ranges = Vec::with_capacity(manifest.files.len());
    let mut at = 0;
    for j in 0..files {
        let from = at;
        while at < new.entries.len() && survivors::file_of(new.entries[at].id_hash, files) == j {
            at += 1;
        }
        ranges.push(from..at);
    }
    let inputs = needs.inputs;
    let parts = survivors::map_merged(out, manifest, &|j, old| {
        if old.iter().any(|e| e.source as usize >= places.len()) {
            return Err(StatusError::from(IndexError::Damaged {
                path: dir.clone(),
                message: "a row names an input file the manifest does not list".to_string(),
            }));
        }
        let mut part = FilePart {
            recount: Recount::default(),
            ties: Vec::new(),
            needs: Needs::new(inputs),
            records: old.len() as u64,
        };
        let range: std::ops::Range<usize> = ranges[j].clone();
        let mut at = range.start;
        let mut i = 0;
        while i < old.len() {
            let key = old[i].key();
            // New events before this one.
            let start = at;
            while at < range.end && new.entries[at].key() < key {
                at += 1;
            }
            new_only(new, start, at, &mut part.recount);
            new_needs(new, start, at, places, &mut part.needs);
            let end = survivors::group_end(&old, i);
            let from = at;
            while at < range.end && new.entries[at].key() == key {
                at += 1;
            }
            part.needs
                .event(&old[i..end], &new.entries[from..at], places);
            event(
                key,
                &old[i..end],
                new,
                from,
                at,
                places,
                &mut part.recount,
                &mut part.ties,
            );
            i = end;
        }
        new_only(new, at, range.end, &mut part.recount);
        new_needs(new, at, range.end, places, &mut part.needs);
        bar.inc(old.len() as u64);
        Ok(part)
    })?;
    let mut records = 0u64;
    for part in parts {
        records += part.records;
        recount.absorb(part.recount);
        ties.extend(part.ties);
        needs.absorb(part.needs);
    }
    if records != manifest.records {
        return Err(IndexError::Damaged {
            path: survivors::manifest_path(out),
            message: format!(
                "it counts {} records, its files hold {records}",
                manifest.records
            ),
        }
        .into());
    }
    // New records past every index file's keys (an index of no files).
    let start = ranges.last().map_or(0, |r| r.end);
    new_only(new, start, new.entries.len(), recount);
    new_needs(new, start, new.entries.len(), places, needs);
    Ok(())
}

/// The events of the new records in `new.entries[from..to]` that the index
/// does not know, for [`Needs`].
fn new_needs(new: &NewRecords, from: usize, to: usize, places: &[Place], needs: &mut Needs) {
    let mut i = from;
    while i < to {
        let end = survivors::group_end(&new.entries[..to], i);
        needs.event(&[], &new.entries[i..end], places);
        i = end;
    }
}

/// What a lookup found: the events known to the index with their recorded
/// survivors, those displaced (with the recorded survivor's file in the
/// index's numbering), and how many tie.
type Lookup = (
    HashMap<survivors::Key, Entry>,
    HashMap<survivors::Key, u32>,
    u64,
);

/// Looks up in the index only the events of the new records, starting from
/// the index's count of every day's events: for outputs whose recorded
/// files are all there as recorded. Returns the events it found with their
/// recorded survivors, those the new records displace, and how many events
/// have a new record on a recorded record's timestamps with other fields.
fn lookup_index(
    out: &Path,
    checksum: bool,
    manifest: &survivors::Manifest,
    places: &[Place],
    new: &NewRecords,
    recount: &mut Recount,
    ties: &mut Vec<Tie>,
) -> Result<Lookup, StatusError> {
    let damaged = |message: String| IndexError::Damaged {
        path: survivors::manifest_path(out),
        message,
    };
    let position = |source: usize| match places.get(source) {
        Some(Place::Present(at)) => Ok(*at),
        _ => Err(damaged(format!(
            "it names input file {source}, which it does not list"
        ))),
    };
    for (day, sources) in manifest.days.iter().flatten() {
        let day = parse_day(day).ok_or_else(|| damaged(format!("bad day {day}")))?;
        for (&source, &events) in sources {
            if events > 0 {
                *recount
                    .provenance
                    .entry(day)
                    .or_default()
                    .entry(position(source as usize)?)
                    .or_default() += events;
            }
        }
    }
    let mut keys: Vec<(u64, u64)> = new.entries.iter().map(Entry::key).collect();
    keys.dedup();
    let groups = survivors::lookup(out, manifest, &keys, checksum)?;
    let mut known = HashMap::with_capacity(groups.len());
    let mut displaced = HashMap::new();
    let mut tied = 0;
    let mut i = 0;
    while i < new.entries.len() {
        let key = new.entries[i].key();
        let end = survivors::group_end(&new.entries, i);
        match groups.get(&key) {
            None => new_only(new, i, end, recount),
            Some(old) => {
                for e in old {
                    position(e.source as usize)?;
                }
                let (survivor, at) = recorded_best(old, places)
                    .ok_or_else(|| damaged("an event without records".to_string()))?;
                // The index counted the recorded survivor: taken back, then
                // counted where a recompute puts it.
                let day = survivor.day();
                if let Some(sources) = recount.provenance.get_mut(&day) {
                    if let Some(n) = sources.get_mut(&at) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            sources.remove(&at);
                        }
                    }
                    if sources.is_empty() {
                        recount.provenance.remove(&day);
                    }
                }
                // A new record on a recorded record's timestamps with other
                // fields is a tie, which an index layer could not order.
                let time = |e: &Entry| (e.ingested_at, e.occurred_at);
                let on_a_tie = new.entries[i..end].iter().any(|n| {
                    old.iter()
                        .any(|o| time(o) == time(n) && o.fields != n.fields)
                });
                tied += u64::from(on_a_tie);
                // The new records are in survivor order: the first is the
                // best. Earlier on both timestamps, it displaces the recorded
                // survivor; on the same timestamps (then the same record), so
                // does a record from a file that comes first.
                let best = &new.entries[i];
                let displaces = match time(best).cmp(&time(&survivor)) {
                    std::cmp::Ordering::Less => true,
                    std::cmp::Ordering::Equal => (best.source as usize) < at,
                    std::cmp::Ordering::Greater => false,
                };
                if !on_a_tie && displaces {
                    displaced.insert(key, survivor.source);
                }
                known.insert(
                    key,
                    Entry {
                        source: at as u32,
                        ..survivor
                    },
                );
                event(key, old, new, i, end, places, recount, ties);
            }
        }
        i = end;
    }
    Ok((known, displaced, tied))
}

/// The recorded survivor of an event whose records are `old` (in index
/// order), with its file's position among the inputs: the first record still
/// present or, of the records identical to it (in several files), the one in
/// the file that comes first. Identical records on the same timestamps are
/// compared wherever they lie: an index layer's follow the recorded ones.
fn recorded_best(old: &[Entry], places: &[Place]) -> Option<(Entry, usize)> {
    let present = |e: &Entry| match places.get(e.source as usize) {
        Some(Place::Present(at)) => Some(*at),
        _ => None,
    };
    let (first, mut at) = old.iter().find_map(|e| Some((*e, present(e)?)))?;
    let mut best = first;
    for e in old {
        if (e.ingested_at, e.occurred_at) != (first.ingested_at, first.occurred_at) {
            continue;
        }
        if let Some(e_at) = present(e)
            && first.same_record(e)
            && e_at < at
        {
            (best, at) = (*e, e_at);
        }
    }
    Some((best, at))
}

/// Events of the new records in `new.entries[from..to]` that the index does
/// not know: each a new event, its first record the survivor.
fn new_only(new: &NewRecords, from: usize, to: usize, recount: &mut Recount) {
    let mut i = from;
    while i < to {
        let e = &new.entries[i];
        recount.event(None, Some((e.day(), e.source as usize)));
        i = survivors::group_end(&new.entries[..to], i);
    }
}

/// One event known to the index (`old`, in survivor order), with its new
/// records `new.entries[from..to]` (in survivor order too).
#[allow(clippy::too_many_arguments)]
fn event(
    key: (u64, u64),
    old: &[Entry],
    new: &NewRecords,
    from: usize,
    to: usize,
    places: &[Place],
    recount: &mut Recount,
    ties: &mut Vec<Tie>,
) {
    let survivor = &old[0];
    let new_best = (from < to).then(|| (new.entries[from], new.details[from]));
    let mut gone = |file: usize| {
        *recount.gone.entry((survivor.day(), file)).or_default() += 1;
        Some((survivor.day(), file))
    };
    let before = match places[survivor.source as usize] {
        Place::Present(at) => Some((survivor.day(), at)),
        Place::Gone(file) => gone(file),
        // The file read again gives the same record, the best of the new
        // ones: the survivor stays where it was.
        Place::Reread { gone: file, at } => match new_best {
            Some((n, _)) if n.source as usize == at && n.same_record(survivor) => {
                Some((survivor.day(), at))
            }
            _ => gone(file),
        },
    };
    let best = recorded_best(old, places);
    let after = match (best, new_best) {
        (None, None) => None,
        (Some((b, at)), None) => Some((b.day(), at)),
        (None, Some((n, _))) => Some((n.day(), n.source as usize)),
        (Some((b, at)), Some((n, details))) => {
            let old_first = (b.ingested_at, b.occurred_at).cmp(&(n.ingested_at, n.occurred_at));
            let old_wins = match old_first {
                std::cmp::Ordering::Less => true,
                std::cmp::Ordering::Greater => false,
                std::cmp::Ordering::Equal if b.fields == n.fields => at < n.source as usize,
                std::cmp::Ordering::Equal => {
                    ties.push(Tie {
                        key,
                        recorded: b,
                        recorded_at: at,
                        new: n,
                        new_details: details,
                        before,
                    });
                    return;
                }
            };
            if old_wins {
                Some((b.day(), at))
            } else {
                Some((n.day(), n.source as usize))
            }
        }
    };
    recount.event(before, after);
}

/// Settles each tie by reading the recorded record back from its file (each
/// file once) and comparing it with the new one by the survivor rule.
fn settle_ties(
    found: &[InputFile],
    files: &[FileInfo],
    ties: Vec<Tie>,
    new: &NewRecords,
    manifest: &survivors::Manifest,
    recount: &mut Recount,
    files_read: &mut Vec<FileRead>,
) -> Result<(), StatusError> {
    let mut by_file: BTreeMap<usize, Vec<Tie>> = BTreeMap::new();
    for tie in ties {
        by_file.entry(tie.recorded_at).or_default().push(tie);
    }
    let order = SurvivorOrder::default();
    let read = ingest::ReadOptions {
        max_line_bytes: usize::try_from(manifest.max_line_bytes).unwrap_or(usize::MAX),
    };
    for (at, ties) in by_file {
        let file = &found[at];
        files_read.push(FileRead {
            path: files[at].path.clone(),
            read: "tie",
        });
        let (chunks, interners) = ingest::read_all(std::slice::from_ref(file), &read, &|_| {})?;
        ingest::check_unchanged(std::slice::from_ref(file))?;
        let (table, _) = crate::dedup::merge(chunks, interners)?;
        let wanted: HashSet<(u64, u64)> = ties.iter().map(|t| t.key).collect();
        let records = survivors::records_of(&table, &wanted);
        for tie in ties {
            let recorded = records
                .get(&tie.key)
                .and_then(|rs| {
                    rs.iter().find(|r| {
                        r.ingested_at == tie.recorded.ingested_at
                            && r.occurred_at == tie.recorded.occurred_at
                            && r.fields_hash() == tie.recorded.fields
                    })
                })
                .ok_or_else(|| StatusError::RecordGone {
                    path: files[at].path.clone(),
                })?;
            let candidate = tie.new_details.record(&tie.new, &new.strings);
            let after = match order.records(recorded, &candidate) {
                std::cmp::Ordering::Less => (tie.recorded.day(), at),
                std::cmp::Ordering::Greater => (tie.new.day(), tie.new.source as usize),
                std::cmp::Ordering::Equal => {
                    if at < tie.new.source as usize {
                        (tie.recorded.day(), at)
                    } else {
                        (tie.new.day(), tie.new.source as usize)
                    }
                }
            };
            recount.event(tie.before, Some(after));
        }
    }
    Ok(())
}

/// The status of every published day and of every day a recompute would
/// publish.
fn day_statuses(
    options: &StatusOptions,
    partitions: &[PartitionManifest],
    recount: &Recount,
    files: &[FileInfo],
    no_index: Option<&str>,
) -> Vec<DayStatus> {
    let mut days: Vec<DayStatus> = Vec::new();
    let mut published = HashSet::new();
    for m in partitions {
        let mut causes = Vec::new();
        // Rows a scoped commit carried over may be stamped with other rules
        // than the partition's: each one other than the given is a cause.
        for stamped in m.row_rule_hashes() {
            if stamped != options.rule_hash {
                causes.push(Cause::Rule {
                    stamped: stamped.to_string(),
                    given: options.rule_hash.clone(),
                });
            }
        }
        if m.lineage.compute_version != COMPUTE_VERSION {
            causes.push(Cause::Compute {
                stamped: m.lineage.compute_version,
                current: COMPUTE_VERSION,
            });
        }
        let day = parse_day(&m.day);
        if let Some(day) = day {
            published.insert(day);
        }
        match (no_index, day) {
            (Some(reason), _) => causes.push(Cause::NoIndex {
                reason: reason.to_string(),
            }),
            (None, Some(day)) => {
                let expected = expected_fingerprint(recount, files, day);
                let moved = input_causes(recount, files, day);
                let current = m.lineage.compute_version == COMPUTE_VERSION;
                // A file read again keeps its path and content, so the day's
                // fingerprint does not show a survivor it no longer gives.
                let reread = moved.iter().any(|c| matches!(c, Cause::RereadFile { .. }));
                if expected != m.lineage.input_fingerprint || !current || reread {
                    if moved.is_empty() && current {
                        causes.push(Cause::Outdated {
                            commit: m.commit,
                            stamped_fingerprint: m.lineage.input_fingerprint.clone(),
                            expected_fingerprint: expected,
                        });
                    }
                    causes.extend(moved);
                }
            }
            (None, None) => {}
        }
        let events = match (no_index, day) {
            (None, Some(day)) => Some(recount.events(day)),
            _ => None,
        };
        days.push(DayStatus {
            day: m.day.clone(),
            published: true,
            stale: !causes.is_empty(),
            events,
            causes,
        });
    }
    // Days with events and no partition.
    for (&day, sources) in &recount.provenance {
        if published.contains(&day) {
            continue;
        }
        let mut causes = input_causes(recount, files, day);
        if causes.is_empty() {
            causes.push(Cause::Unpublished {
                events: sources.values().sum(),
            });
        }
        days.push(DayStatus {
            day: format_day(day),
            published: false,
            stale: true,
            events: Some(sources.values().sum()),
            causes,
        });
    }
    days.sort_by(|a, b| a.day.cmp(&b.day));
    days
}

/// The fingerprint a recompute stamps into `day`'s partition.
fn expected_fingerprint(recount: &Recount, files: &[FileInfo], day: i32) -> String {
    let inputs: Vec<DayInput> = recount
        .provenance
        .get(&day)
        .into_iter()
        .flatten()
        .map(|(&file, &events)| DayInput {
            path: files[file].path.clone(),
            blake3: files[file].blake3.clone(),
            events,
        })
        .collect();
    day_fingerprint(&inputs)
}

/// The causes of `day` that come from its events' survivors moving.
fn input_causes(recount: &Recount, files: &[FileInfo], day: i32) -> Vec<Cause> {
    let days = |set: &BTreeSet<i32>| set.iter().map(|&d| format_day(d)).collect();
    let mut causes = Vec::new();
    let mut dropped = 0;
    for ((_, kind, file), (events, other)) in recount
        .moves
        .range((day, Move::New, 0)..=(day, Move::Dropped, usize::MAX))
    {
        let (events, name) = (*events, files[*file].path.clone());
        match kind {
            Move::New => causes.push(Cause::NewEvents { file: name, events }),
            Move::In => causes.push(Cause::MovedIn {
                file: name,
                events,
                from: days(other),
            }),
            Move::Out => causes.push(Cause::MovedOut {
                file: name,
                events,
                to: days(other),
            }),
            Move::Replaced => causes.push(Cause::Replaced { file: name, events }),
            Move::Dropped => dropped += events,
        }
    }
    if dropped > 0 {
        causes.push(Cause::Dropped { events: dropped });
    }
    for (&(_, file), &events) in recount.gone.range((day, 0)..=(day, usize::MAX)) {
        let f = &files[file];
        causes.push(match f.change {
            InputChange::Changed => Cause::ChangedFile {
                file: f.path.clone(),
                old_blake3: f.blake3.clone(),
                new_blake3: files
                    .iter()
                    .find(|x| x.path == f.path && x.change == InputChange::Changed)
                    .map(|x| x.blake3.clone())
                    .unwrap_or_default(),
                events,
            },
            InputChange::Reread => Cause::RereadFile {
                file: f.path.clone(),
                events,
            },
            _ => Cause::RemovedFile {
                file: f.path.clone(),
                blake3: f.blake3.clone(),
                events,
            },
        });
    }
    causes
}

/// The status of every partition of the derived tables: stale when a day of
/// its period is, or when it was built from other day partitions than
/// those published.
fn period_statuses(
    partitions: &[PartitionManifest],
    months: &[DerivedManifest],
    days: &[DayStatus],
    events: &BTreeMap<String, u64>,
) -> Vec<PeriodStatus> {
    let rollup = derived::MONTHLY;
    let mut periods: BTreeSet<String> = months.iter().map(|m| m.period.clone()).collect();
    periods.extend(days.iter().map(|d| (rollup.period)(&d.day)));
    let mut out = Vec::new();
    for period in periods {
        let manifest = months.iter().find(|m| m.period == period);
        let mut causes = Vec::new();
        let stale: Vec<String> = days
            .iter()
            .filter(|d| d.stale && (rollup.period)(&d.day) == period)
            .map(|d| d.day.clone())
            .collect();
        match manifest {
            Some(m) => {
                if m.compute_version != COMPUTE_VERSION {
                    causes.push(Cause::Compute {
                        stamped: m.compute_version,
                        current: COMPUTE_VERSION,
                    });
                }
                if !stale.is_empty() {
                    causes.push(Cause::Days { stale });
                }
                let current: BTreeMap<&str, &str> = partitions
                    .iter()
                    .filter(|p| (rollup.period)(&p.day) == period)
                    .map(|p| (p.day.as_str(), p.blake3.as_str()))
                    .collect();
                let built: BTreeMap<&str, &str> = m
                    .days
                    .iter()
                    .map(|s| (s.day.as_str(), s.blake3.as_str()))
                    .collect();
                let all: BTreeSet<&str> = current.keys().chain(built.keys()).copied().collect();
                for day in all {
                    let (was, now) = (built.get(day), current.get(day));
                    if was != now {
                        causes.push(Cause::DayChanged {
                            day: day.to_string(),
                            built_from: was.map(|s| s.to_string()),
                            current: now.map(|s| s.to_string()),
                        });
                    }
                }
            }
            None => {
                let events = events
                    .iter()
                    .filter(|(day, _)| (rollup.period)(day) == period)
                    .map(|(_, n)| n)
                    .sum();
                causes.push(Cause::Unpublished { events });
                if !stale.is_empty() {
                    causes.push(Cause::Days { stale });
                }
            }
        }
        out.push(PeriodStatus {
            table: rollup.table.to_string(),
            period,
            published: manifest.is_some(),
            stale: !causes.is_empty(),
            causes,
        });
    }
    out
}
