//! Deterministic synthetic usage events: the engine behind `tally gen`.
//!
//! This module owns the test and demo data of Tally: it writes `N` usage events for
//! May 2026, as newline-delimited JSON or as Parquet, into `events-00000.<ext>`,
//! `events-00001.<ext>`, ... under an output directory. The data looks like
//! production traffic and deliberately exercises every rule of the event contract
//! (`docs/event-contract.md`):
//!
//! - a skewed catalogue: a few thousand creators (Zipf-like traffic), tens of
//!   thousands of templates each owned by one creator, ~2% of the traffic from
//!   `test-` creators, brands on ~70% of the events;
//! - re-sends: ~5% exact re-sends (the identical record again), ~1% re-sends with a
//!   later `ingested_at`, ~0.05% conflicting duplicates (same `event_id`, other
//!   fields) whose `ingested_at` is earlier than, later than or equal to the
//!   original's, so that every branch of the survivor rule is used;
//! - ~0.5% broken records, cycling through every quarantine case of the contract,
//!   each with exactly one problem so that its reason code is unambiguous;
//! - JSON variety that consumers must accept: varying field order, RFC 3339 times in
//!   UTC or with an offset, epoch milliseconds, `brand_id` null or absent, unknown
//!   extra fields, escapes and non-ASCII text, an occasional blank line.
//!
//! [`GenSummary`] says exactly what was planted, so a test can predict the number of
//! quarantined, duplicate, conflicting and unique records of a run.
//!
//! # Populations
//!
//! [`generate_with`] adds [`Populations`]: groups of creators a policy may single
//! out (ids with a suffix, say), each taking a share of the new events and using
//! only the content kinds, actions, tiers and countries it lists (its re-sends and
//! conflicts too), read from a small JSON file (see [`Populations::parse`]).
//! Without populations, nothing is drawn for them: the output is what it always was.
//!
//! # Determinism
//!
//! The output is a pure function of `(events, seed, format, events_per_file)`: the
//! catalogue comes from one ChaCha8 stream of the seed, and file `i` from its own
//! stream `i + 1`, so files are generated in parallel (rayon) and come out
//! byte-identical whatever the number of threads (on a given platform: the
//! catalogue's Zipf weights use floating point). Re-sends and conflicts are planted
//! in the same file as their original. Both formats draw the same random numbers, so
//! the JSONL and Parquet outputs of one seed hold the same valid records (only the
//! broken ones differ), and give the same daily totals.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{ArrayRef, StringBuilder, TimestampMillisecondBuilder};
use arrow::datatypes::{DataType, Field as ArrowField, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

// ---------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------

/// Records per output file unless told otherwise.
pub const DEFAULT_EVENTS_PER_FILE: u64 = 1_000_000;

/// Output format of the generated files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Newline-delimited JSON, one object per line (`.jsonl`).
    Jsonl,
    /// Parquet with ZSTD compression (`.parquet`).
    Parquet,
}

impl Format {
    /// File name extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Parquet => "parquet",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jsonl" => Ok(Format::Jsonl),
            "parquet" => Ok(Format::Parquet),
            other => Err(format!(
                "unknown format {other:?} (expected \"jsonl\" or \"parquet\")"
            )),
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenOptions {
    /// Records written in total, re-sends and broken records included.
    pub events: u64,
    /// Seed of every random choice.
    pub seed: u64,
    /// Output directory (created if missing).
    pub out: PathBuf,
    /// Output format.
    pub format: Format,
    /// Records per file; the last file may hold fewer.
    pub events_per_file: u64,
}

impl GenOptions {
    /// Options with [`DEFAULT_EVENTS_PER_FILE`].
    pub fn new(events: u64, seed: u64, out: impl Into<PathBuf>, format: Format) -> Self {
        GenOptions {
            events,
            seed,
            out: out.into(),
            format,
            events_per_file: DEFAULT_EVENTS_PER_FILE,
        }
    }
}

/// What was written, and what was planted in it.
///
/// With it, the expected outcome of reading all the files is known exactly:
/// [`quarantined`](Self::quarantined), [`duplicates`](Self::duplicates) (of which
/// `conflicts` are conflicts) and [`unique`](Self::unique) records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenSummary {
    /// The files written, in order.
    pub files: Vec<PathBuf>,
    /// Records written (lines that are not blank, or Parquet rows).
    pub records: u64,
    /// Re-sends identical to their original (same bytes in JSONL).
    pub exact_resends: u64,
    /// Re-sends equal to their original except for a later `ingested_at`.
    pub late_resends: u64,
    /// Records sharing an `event_id` with exactly one other record but differing in
    /// some field other than `ingested_at`; each is counted once as a duplicate and
    /// once as a conflict (whichever of the pair survives).
    pub conflicts: u64,
    /// Broken records, by the reason code the contract gives them.
    pub broken: BTreeMap<String, u64>,
    /// Unique valid events (distinct `event_id`s) whose creator is a `test-` creator.
    pub test_creators: u64,
    /// Blank lines written between JSONL records (not records; always 0 for Parquet).
    pub blank_lines: u64,
    /// For each population, in the order configured: its name and its unique valid
    /// events (distinct `event_id`s). Empty without populations.
    pub populations: Vec<(String, u64)>,
}

impl GenSummary {
    /// Records the contract quarantines.
    pub fn quarantined(&self) -> u64 {
        self.broken.values().sum()
    }

    /// Valid records that are not the survivor of their `event_id`.
    pub fn duplicates(&self) -> u64 {
        self.exact_resends + self.late_resends + self.conflicts
    }

    /// Valid records that survive deduplication (one per valid `event_id`).
    pub fn unique(&self) -> u64 {
        self.records - self.quarantined() - self.duplicates()
    }
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenError {
    /// The options cannot be honoured.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// Reading or writing a file or directory failed.
    #[error("cannot write {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The Parquet writer failed.
    #[error("cannot write Parquet file {}", path.display())]
    Parquet {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        source: ParquetError,
    },
    /// Building an Arrow batch failed.
    #[error("cannot build the Arrow batch for {}", path.display())]
    Arrow {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        source: ArrowError,
    },
    /// A populations file cannot be read or does not describe populations.
    #[error("populations file {}: {message}", path.display())]
    Populations {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

/// Writes the events described by `opts` and returns what was planted.
///
/// `on_progress(n)` is called from the worker threads with the number of records
/// written since the previous call (`n` adds up to `opts.events`). Files named
/// `events-NNNNN.jsonl` or `events-NNNNN.parquet` that are left in `opts.out` from an
/// earlier run and not rewritten by this one are removed, so that the directory
/// holds exactly this data set.
pub fn generate(
    opts: &GenOptions,
    on_progress: &(dyn Fn(u64) + Sync),
) -> Result<GenSummary, GenError> {
    generate_with(opts, &Populations::default(), on_progress)
}

/// [`generate`] with extra `populations` of creators (none: exactly what
/// [`generate`] writes).
pub fn generate_with(
    opts: &GenOptions,
    populations: &Populations,
    on_progress: &(dyn Fn(u64) + Sync),
) -> Result<GenSummary, GenError> {
    if opts.events_per_file == 0 {
        return Err(GenError::InvalidOptions(
            "events_per_file must be at least 1".into(),
        ));
    }
    let n_files = opts.events.div_ceil(opts.events_per_file);
    let n_files = usize::try_from(n_files)
        .map_err(|_| GenError::InvalidOptions(format!("too many files ({n_files})")))?;

    fs::create_dir_all(&opts.out).map_err(|e| io_error(&opts.out, e))?;
    let files: Vec<PathBuf> = (0..n_files)
        .map(|i| opts.out.join(file_name(i, opts.format)))
        .collect();
    remove_stale_files(&opts.out, &files)?;

    let mut universe = Universe::build(opts.seed);
    universe.add_populations(populations, opts.seed)?;
    let faults: Vec<Fault> = match opts.format {
        Format::Jsonl => FAULTS.to_vec(),
        Format::Parquet => FAULTS.iter().copied().filter(|f| f.in_parquet()).collect(),
    };

    let per_file: Vec<FileStats> = files
        .par_iter()
        .enumerate()
        .map(|(index, path)| {
            let start = index as u64 * opts.events_per_file;
            let records = opts.events_per_file.min(opts.events - start);
            let job = FileJob {
                universe: &universe,
                populations,
                seed: opts.seed,
                index: index as u64,
                records,
                faults: &faults,
                on_progress,
            };
            write_file(&job, path, opts.format)
        })
        .collect::<Result<_, _>>()?;

    let mut summary = GenSummary {
        files,
        ..GenSummary::default()
    };
    let mut population_events = vec![0u64; populations.list.len()];
    for stats in &per_file {
        summary.records += stats.records;
        summary.exact_resends += stats.exact_resends;
        summary.late_resends += stats.late_resends;
        summary.conflicts += stats.conflicts;
        summary.test_creators += stats.test_creators;
        summary.blank_lines += stats.blank_lines;
        for (total, n) in population_events.iter_mut().zip(&stats.population_events) {
            *total += n;
        }
        for (fault, &count) in faults.iter().zip(&stats.broken) {
            if count > 0 {
                *summary.broken.entry(fault.reason()).or_insert(0) += count;
            }
        }
    }
    summary.populations = populations
        .list
        .iter()
        .map(|p| p.name.clone())
        .zip(population_events)
        .collect();
    Ok(summary)
}

fn file_name(index: usize, format: Format) -> String {
    format!("events-{index:05}.{}", format.extension())
}

fn io_error(path: &Path, source: io::Error) -> GenError {
    GenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Removes `events-<digits>.jsonl|parquet` files of an earlier run that are not in `keep`.
fn remove_stale_files(dir: &Path, keep: &[PathBuf]) -> Result<(), GenError> {
    let entries = fs::read_dir(dir).map_err(|e| io_error(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let path = entry.path();
        let generated = entry.file_name().to_str().is_some_and(is_generated_name);
        if generated && !keep.contains(&path) && path.is_file() {
            fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
        }
    }
    Ok(())
}

fn is_generated_name(name: &str) -> bool {
    let Some((digits, ext)) = name
        .strip_prefix("events-")
        .and_then(|rest| rest.split_once('.'))
    else {
        return false;
    };
    digits.len() >= 5
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (ext == "jsonl" || ext == "parquet")
}

// ---------------------------------------------------------------------------------
// Populations
// ---------------------------------------------------------------------------------

/// Extra groups of creators to generate traffic for, validated (see
/// [`Populations::parse`]). The default is none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Populations {
    list: Vec<Population>,
}

/// One population, as configured and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Population {
    name: String,
    /// Parts per million of the new events.
    share_ppm: u32,
    creators: u32,
    creator_prefix: String,
    creator_suffix: String,
    templates_per_creator: u32,
    /// Codes into [`KINDS`], [`ACTIONS`], [`TIERS`]; `None`: as the main traffic.
    content_kinds: Option<Vec<u8>>,
    actions: Option<Vec<u8>>,
    user_tiers: Option<Vec<u8>>,
    /// Two upper-case ASCII letters each; `None`: as the main traffic.
    countries: Option<Vec<String>>,
}

/// A population as written in the file.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PopulationSpec {
    name: String,
    share: f64,
    #[serde(default = "default_creators")]
    creators: u32,
    #[serde(default = "default_prefix")]
    creator_prefix: String,
    #[serde(default)]
    creator_suffix: String,
    #[serde(default = "default_templates")]
    templates_per_creator: u32,
    content_kinds: Option<Vec<String>>,
    actions: Option<Vec<String>>,
    user_tiers: Option<Vec<String>>,
    countries: Option<Vec<String>>,
}

fn default_creators() -> u32 {
    10
}

fn default_prefix() -> String {
    "cr-".to_string()
}

fn default_templates() -> u32 {
    3
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PopulationsFile {
    populations: Vec<PopulationSpec>,
}

/// The most creators one population may have.
pub const MAX_POPULATION_CREATORS: u32 = 100_000;
/// The most templates each creator of a population may have.
pub const MAX_TEMPLATES_PER_CREATOR: u32 = 100;
/// The longest creator id prefix or suffix, in bytes.
const MAX_AFFIX_BYTES: usize = 64;

impl Populations {
    /// Reads and checks a populations file (see [`Populations::parse`]).
    pub fn read(path: &Path) -> Result<Populations, GenError> {
        let text = fs::read_to_string(path).map_err(|e| GenError::Populations {
            path: path.to_path_buf(),
            message: format!("cannot read it: {e}"),
        })?;
        Populations::parse(&text).map_err(|message| GenError::Populations {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses and checks populations from JSON:
    ///
    /// ```json
    /// {"populations": [
    ///   {"name": "partners", "share": 0.05, "creators": 20, "creator_suffix": "-partner",
    ///    "content_kinds": ["video"], "actions": ["publish", "export"],
    ///    "user_tiers": ["enterprise"], "countries": ["DE", "FR"]}
    /// ]}
    /// ```
    ///
    /// `name` (1 to 32 lower-case letters, digits and `-`) and `share` (the
    /// fraction of new events, that is of every record but re-sends, conflicts
    /// and broken ones, from this population; more than 0, at most 1 with the
    /// others') are required. `creators` (default 10) creators have the ids
    /// `<creator_prefix><NNNNNN><creator_suffix>` (default prefix `cr-`, no
    /// suffix), each with `templates_per_creator` (default 3) templates
    /// `tpl-<name>-<NNNNNN>`. Each list, when given, holds the only values the
    /// population's events use, drawn uniformly; without it, values are drawn as
    /// for the main traffic. The error says what is wrong.
    pub fn parse(text: &str) -> Result<Populations, String> {
        let file: PopulationsFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut list: Vec<Population> = Vec::with_capacity(file.populations.len());
        let mut total_ppm = 0u64;
        for spec in file.populations {
            let population = Population::check(spec)?;
            if list.iter().any(|p| p.name == population.name) {
                return Err(format!("two populations are named {:?}", population.name));
            }
            total_ppm += u64::from(population.share_ppm);
            list.push(population);
        }
        if total_ppm > u64::from(PPM) {
            return Err(format!(
                "the shares add up to {}, more than 1",
                total_ppm as f64 / f64::from(PPM)
            ));
        }
        Ok(Populations { list })
    }

    /// Whether there is no population.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The population a new event comes from, if any: draws a number only
    /// when there are populations.
    fn pick(&self, rng: &mut ChaCha8Rng) -> Option<usize> {
        if self.list.is_empty() {
            return None;
        }
        let roll = rng.random_range(0..PPM);
        let mut end = 0;
        self.list.iter().position(|p| {
            end += p.share_ppm;
            roll < end
        })
    }
}

impl Population {
    fn check(spec: PopulationSpec) -> Result<Population, String> {
        let name = spec.name;
        let valid_name = (1..=32).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-');
        if !valid_name {
            return Err(format!(
                "population name {name:?}: 1 to 32 lower-case letters, digits and '-', not starting with '-'"
            ));
        }
        let fail = |message: String| format!("population {name:?}: {message}");
        if !(spec.share.is_finite() && spec.share > 0.0 && spec.share <= 1.0) {
            return Err(fail(format!(
                "share {} is not a fraction above 0 and at most 1",
                spec.share
            )));
        }
        let share_ppm = (spec.share * f64::from(PPM)).round() as u32;
        if share_ppm == 0 {
            return Err(fail(format!(
                "share {} is below one in a million",
                spec.share
            )));
        }
        if !(1..=MAX_POPULATION_CREATORS).contains(&spec.creators) {
            return Err(fail(format!(
                "creators {} is not 1 to {MAX_POPULATION_CREATORS}",
                spec.creators
            )));
        }
        if !(1..=MAX_TEMPLATES_PER_CREATOR).contains(&spec.templates_per_creator) {
            return Err(fail(format!(
                "templates_per_creator {} is not 1 to {MAX_TEMPLATES_PER_CREATOR}",
                spec.templates_per_creator
            )));
        }
        for (what, affix) in [
            ("creator_prefix", &spec.creator_prefix),
            ("creator_suffix", &spec.creator_suffix),
        ] {
            if affix.len() > MAX_AFFIX_BYTES || affix.chars().any(char::is_control) {
                return Err(fail(format!(
                    "{what} {affix:?}: at most {MAX_AFFIX_BYTES} bytes, no control characters"
                )));
            }
        }
        let codes = |field: &str, values: Option<Vec<String>>, known: &[&str]| {
            let Some(values) = values else {
                return Ok(None);
            };
            if values.is_empty() {
                return Err(fail(format!("{field} is empty (leave it out for any)")));
            }
            let mut codes: Vec<u8> = Vec::with_capacity(values.len());
            for value in &values {
                let code = known.iter().position(|k| k == value).ok_or_else(|| {
                    fail(format!(
                        "{field}: unknown value {value:?} (one of {})",
                        known.join(", ")
                    ))
                })? as u8;
                if codes.contains(&code) {
                    return Err(fail(format!("{field}: {value:?} is listed twice")));
                }
                codes.push(code);
            }
            Ok(Some(codes))
        };
        let content_kinds = codes("content_kinds", spec.content_kinds, &KINDS)?;
        let actions = codes("actions", spec.actions, &ACTIONS)?;
        let user_tiers = codes("user_tiers", spec.user_tiers, &TIERS)?;
        let countries = match spec.countries {
            None => None,
            Some(countries) => {
                if countries.is_empty() {
                    return Err(fail("countries is empty (leave it out for any)".into()));
                }
                for (i, country) in countries.iter().enumerate() {
                    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
                        return Err(fail(format!(
                            "countries: {country:?} is not two upper-case ASCII letters"
                        )));
                    }
                    if countries[..i].contains(country) {
                        return Err(fail(format!("countries: {country:?} is listed twice")));
                    }
                }
                Some(countries)
            }
        };
        Ok(Population {
            name,
            share_ppm,
            creators: spec.creators,
            creator_prefix: spec.creator_prefix,
            creator_suffix: spec.creator_suffix,
            templates_per_creator: spec.templates_per_creator,
            content_kinds,
            actions,
            user_tiers,
            countries,
        })
    }
}

// ---------------------------------------------------------------------------------
// Tunables
// ---------------------------------------------------------------------------------

/// Probabilities are in parts per million of the records.
const PPM: u32 = 1_000_000;
const BROKEN_PPM: u32 = 5_000;
const CONFLICT_PPM: u32 = 500;
const LATE_RESEND_PPM: u32 = 10_000;
const EXACT_RESEND_PPM: u32 = 50_000;
const TEST_CREATOR_PPM: u32 = 20_000;
const BLANK_LINE_PPM: u32 = 200;

const REGULAR_CREATORS: usize = 3_000;
const TEST_CREATORS: usize = 12;
const REGULAR_TEMPLATES: usize = 40_000;
const BRANDS: usize = 20_000;
/// Zipf exponents: traffic over creators, templates over creators, traffic over a
/// creator's templates, traffic over brands.
const CREATOR_TRAFFIC_S: f64 = 1.0;
const CREATOR_TEMPLATES_S: f64 = 0.8;
const TEMPLATE_TRAFFIC_S: f64 = 1.1;
const BRAND_TRAFFIC_S: f64 = 0.7;

/// Re-sends pick their original among this many recent originals of the file.
const RECENT: usize = 8_192;
const PROGRESS_STEP: u64 = 65_536;
const BATCH_ROWS: usize = 65_536;
const ROW_GROUP_ROWS: usize = 131_072;

const SECOND_MS: i64 = 1_000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
/// 2026-05-01T00:00:00Z; the month has 31 days.
const MONTH_START_MS: i64 = days_from_civil(2026, 5, 1) * DAY_MS;
const MONTH_DAYS: usize = 31;

const KINDS: [&str; 5] = ["template", "image", "video", "audio", "font"];
const KIND_WEIGHTS: [u32; 5] = [45, 25, 15, 10, 5];
const ACTIONS: [&str; 4] = ["view", "use", "export", "publish"];
const ACTION_WEIGHTS: [u32; 4] = [50, 28, 15, 7];
const TIERS: [&str; 4] = ["free", "pro", "teams", "enterprise"];
const TIER_WEIGHTS: [u32; 4] = [40, 30, 18, 12];
/// Percentage of events with a brand, by user tier (about 70% overall).
const BRAND_PCT_BY_TIER: [u32; 4] = [50, 80, 90, 95];
const COUNTRIES: [&str; 20] = [
    "US", "BR", "IN", "ID", "GB", "DE", "FR", "JP", "MX", "ES", "IT", "CA", "AU", "PH", "NG", "TR",
    "KR", "PL", "NL", "VN",
];
const COUNTRY_WEIGHTS: [u32; 20] = [
    180, 120, 120, 80, 60, 60, 50, 50, 40, 30, 30, 30, 30, 30, 20, 20, 20, 20, 20, 20,
];
/// Relative traffic by UTC hour.
const HOUR_WEIGHTS: [u32; 24] = [
    3, 2, 2, 2, 3, 4, 5, 6, 7, 8, 8, 8, 8, 8, 8, 8, 8, 8, 7, 7, 6, 5, 4, 3,
];
/// Non-UTC offsets (minutes) used for some RFC 3339 timestamps.
const OFFSETS_MIN: [i64; 5] = [120, -300, 330, 540, -180];

// ---------------------------------------------------------------------------------
// Broken records
// ---------------------------------------------------------------------------------

/// The contract's fields, in the order that decides which problem of a record is
/// reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    EventId,
    OccurredAt,
    IngestedAt,
    CreatorId,
    TemplateId,
    BrandId,
    ContentKind,
    Action,
    UserTier,
    Country,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::EventId => "event_id",
            Field::OccurredAt => "occurred_at",
            Field::IngestedAt => "ingested_at",
            Field::CreatorId => "creator_id",
            Field::TemplateId => "template_id",
            Field::BrandId => "brand_id",
            Field::ContentKind => "content_kind",
            Field::Action => "action",
            Field::UserTier => "user_tier",
            Field::Country => "country",
        }
    }

    fn is_timestamp(self) -> bool {
        matches!(self, Field::OccurredAt | Field::IngestedAt)
    }
}

/// The one problem planted in a broken record; everything else about it is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// A valid line cut short (JSONL).
    Truncated,
    /// The whole line is this text, which is not a JSON object (JSONL).
    Line(&'static str),
    /// `creator_id` holds bytes that are not UTF-8, so the line is not JSON (JSONL).
    InvalidUtf8,
    /// The field is left out (JSONL).
    Absent(Field),
    /// The field is null.
    Null(Field),
    /// The field holds this raw JSON, of the wrong type (JSONL).
    Json(Field, &'static str),
    /// The field holds this string, which is not a valid value.
    Str(Field, &'static str),
    /// The timestamp field holds these epoch milliseconds, outside 2000..=2100.
    Millis(Field, i64),
    /// `event_id` is longer than 128 bytes.
    LongId,
}

impl Fault {
    fn field(self) -> Option<Field> {
        match self {
            Fault::Truncated | Fault::Line(_) => None,
            Fault::InvalidUtf8 => Some(Field::CreatorId),
            Fault::LongId => Some(Field::EventId),
            Fault::Absent(f)
            | Fault::Null(f)
            | Fault::Json(f, _)
            | Fault::Str(f, _)
            | Fault::Millis(f, _) => Some(f),
        }
    }

    /// The reason code the contract gives a record with this problem.
    fn reason(self) -> String {
        match self {
            Fault::Truncated | Fault::Line(_) | Fault::InvalidUtf8 => "malformed-json".into(),
            Fault::Absent(f) | Fault::Null(f) => format!("missing-field:{}", f.name()),
            Fault::Json(f, _) => format!("bad-type:{}", f.name()),
            Fault::Str(f, _) | Fault::Millis(f, _) => format!("bad-value:{}", f.name()),
            Fault::LongId => "bad-value:event_id".into(),
        }
    }

    /// Whether the fault can be expressed in a Parquet file with the fixed schema.
    fn in_parquet(self) -> bool {
        match self {
            Fault::Null(_) | Fault::Millis(..) | Fault::LongId => true,
            Fault::Str(f, _) => !f.is_timestamp(),
            Fault::Truncated
            | Fault::Line(_)
            | Fault::InvalidUtf8
            | Fault::Absent(_)
            | Fault::Json(..) => false,
        }
    }
}

/// 2101-01-01T00:00:00Z.
const YEAR_2101_MS: i64 = 4_133_980_800_000;

/// Every way a record can break the contract; broken records cycle through these
/// (the Parquet ones through the subset that Parquet can express).
const FAULTS: &[Fault] = {
    use Field::*;
    &[
        // malformed-json
        Fault::Truncated,
        Fault::Line("[1,2]"),
        Fault::Line("\"usage-event\""),
        Fault::Line("42"),
        Fault::Line("null"),
        Fault::Line("this is not json"),
        Fault::Line("<html><body>502 Bad Gateway</body></html>"),
        Fault::InvalidUtf8,
        // missing-field: absent, then null
        Fault::Absent(EventId),
        Fault::Absent(OccurredAt),
        Fault::Absent(IngestedAt),
        Fault::Absent(CreatorId),
        Fault::Absent(TemplateId),
        Fault::Absent(ContentKind),
        Fault::Absent(Action),
        Fault::Absent(UserTier),
        Fault::Absent(Country),
        Fault::Null(EventId),
        Fault::Null(OccurredAt),
        Fault::Null(IngestedAt),
        Fault::Null(CreatorId),
        Fault::Null(TemplateId),
        Fault::Null(ContentKind),
        Fault::Null(Action),
        Fault::Null(UserTier),
        Fault::Null(Country),
        // bad-type: strings given as numbers, booleans, objects, arrays
        Fault::Json(EventId, "4711"),
        Fault::Json(EventId, "true"),
        Fault::Json(CreatorId, "123"),
        Fault::Json(CreatorId, "{\"id\":\"cr-000001\"}"),
        Fault::Json(TemplateId, "9876543"),
        Fault::Json(TemplateId, "[\"tpl-0000001\"]"),
        Fault::Json(BrandId, "17"),
        Fault::Json(BrandId, "false"),
        Fault::Json(ContentKind, "1"),
        Fault::Json(ContentKind, "[\"image\"]"),
        Fault::Json(Action, "0"),
        Fault::Json(Action, "{\"name\":\"view\"}"),
        Fault::Json(UserTier, "3"),
        Fault::Json(UserTier, "true"),
        Fault::Json(Country, "49"),
        Fault::Json(Country, "[\"US\"]"),
        // bad-type: timestamps of another JSON type
        Fault::Json(OccurredAt, "true"),
        Fault::Json(OccurredAt, "{\"ms\":1778000000000}"),
        Fault::Json(OccurredAt, "[2026,5,7]"),
        Fault::Json(OccurredAt, "1778000000000.5"),
        Fault::Json(IngestedAt, "false"),
        Fault::Json(IngestedAt, "{\"seconds\":1778000000}"),
        Fault::Json(IngestedAt, "[]"),
        Fault::Json(IngestedAt, "1778000000123.25"),
        // bad-value: event_id
        Fault::Str(EventId, ""),
        Fault::LongId,
        // bad-value: timestamps out of range or not RFC 3339
        Fault::Str(OccurredAt, "1999-12-31T23:59:59.999Z"),
        Fault::Str(OccurredAt, "2101-01-01T00:00:00.000Z"),
        Fault::Millis(OccurredAt, -DAY_MS),
        Fault::Millis(OccurredAt, YEAR_2101_MS),
        Fault::Str(OccurredAt, "2026-05-07T12:00:00.000"),
        Fault::Str(OccurredAt, "2026-13-07T12:00:00.000Z"),
        Fault::Str(OccurredAt, "not a timestamp"),
        Fault::Str(OccurredAt, "1778000000000"),
        Fault::Str(IngestedAt, "1970-01-01T00:00:00.000Z"),
        Fault::Str(IngestedAt, "2150-06-01T08:00:00.000+02:00"),
        Fault::Millis(IngestedAt, 0),
        Fault::Millis(IngestedAt, YEAR_2101_MS + 123_456_789),
        Fault::Str(IngestedAt, "2026-05-07"),
        Fault::Str(IngestedAt, "2026-05-32T10:00:00.000Z"),
        Fault::Str(IngestedAt, "yesterday"),
        Fault::Str(IngestedAt, ""),
        // bad-value: other fields
        Fault::Str(CreatorId, ""),
        Fault::Str(TemplateId, ""),
        Fault::Str(ContentKind, "Video"),
        Fault::Str(ContentKind, "gif"),
        Fault::Str(Action, "share"),
        Fault::Str(Action, "View"),
        Fault::Str(UserTier, "premium"),
        Fault::Str(UserTier, "Free"),
        Fault::Str(Country, "usa"),
        Fault::Str(Country, "u1"),
        Fault::Str(Country, "br"),
    ]
};

// ---------------------------------------------------------------------------------
// Catalogue and events
// ---------------------------------------------------------------------------------

const NO_BRAND: u32 = u32::MAX;

/// One usage event, as indexes into the [`Universe`]; cheap to copy and re-send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Event {
    id: u128,
    /// 0: dashed lower-case hex, 1: plain lower-case hex, 2: dashed upper-case hex.
    id_form: u8,
    occurred_ms: i64,
    ingested_ms: i64,
    creator: u32,
    template: u32,
    brand: u32,
    action: u8,
    tier: u8,
    country: u8,
    /// Random bits that pick the JSON presentation (see [`JsonStyle`]).
    style: u32,
}

/// Weighted choice among a few values.
struct Picker {
    cumulative: Vec<u32>,
}

impl Picker {
    fn new(weights: &[u32]) -> Self {
        let cumulative = weights
            .iter()
            .scan(0u32, |acc, &w| {
                *acc += w;
                Some(*acc)
            })
            .collect();
        Picker { cumulative }
    }

    fn pick(&self, rng: &mut ChaCha8Rng) -> usize {
        let total = self.cumulative[self.cumulative.len() - 1];
        let r = rng.random_range(0..total);
        self.cumulative.partition_point(|&c| c <= r)
    }
}

/// Cumulative Zipf weights `1/k^s` for ranks `1..=n`.
fn zipf_cumulative(n: usize, s: f64) -> Vec<f64> {
    let mut acc = 0.0;
    (1..=n)
        .map(|k| {
            acc += (k as f64).powf(-s);
            acc
        })
        .collect()
}

/// Draws a rank (0-based) from a cumulative weight table.
fn sample_cumulative(cumulative: &[f64], rng: &mut ChaCha8Rng) -> usize {
    let last = cumulative.len() - 1;
    let u = rng.random::<f64>() * cumulative[last];
    cumulative.partition_point(|&c| c <= u).min(last)
}

/// The creators, templates and brands shared by all files of a run.
struct Universe {
    /// Regular creators by traffic rank, then the test creators.
    creator_ids: Vec<String>,
    /// For each creator: its first template and its number of templates; a
    /// creator's templates are contiguous and in traffic-rank order.
    creator_templates: Vec<(u32, u32)>,
    creator_traffic: Vec<f64>,
    template_traffic: Vec<f64>,
    template_ids: Vec<String>,
    template_kinds: Vec<u8>,
    brand_ids: Vec<String>,
    brand_traffic: Vec<f64>,
    actions: Picker,
    tiers: Picker,
    countries: Picker,
    days: Picker,
    hours: Picker,
    /// [`COUNTRIES`], then the other countries the populations use.
    country_codes: Vec<String>,
    /// The populations' creators (after the regular and test creators) and
    /// what their events may use.
    populations: Vec<Group>,
}

/// A population in the catalogue: its creators and the codes its events use.
struct Group {
    first_creator: u32,
    creators: u32,
    actions: Option<Vec<u8>>,
    tiers: Option<Vec<u8>>,
    /// Indices into [`Universe::country_codes`].
    countries: Option<Vec<u8>>,
}

/// One of `codes`, uniformly, or one from `picker` when there is no list.
fn pick_code(codes: Option<&[u8]>, picker: &Picker, rng: &mut ChaCha8Rng) -> u8 {
    match codes {
        Some(codes) => codes[rng.random_range(0..codes.len())],
        None => picker.pick(rng) as u8,
    }
}

/// Another of `codes` than `current` (any of `0..all` without a list), or
/// `None` when there is no other.
fn other_code(codes: Option<&[u8]>, all: u8, current: u8, rng: &mut ChaCha8Rng) -> Option<u8> {
    let all: Vec<u8> = (0..all).collect();
    let codes = codes.unwrap_or(&all);
    let others: Vec<u8> = codes.iter().copied().filter(|&c| c != current).collect();
    (!others.is_empty()).then(|| others[rng.random_range(0..others.len())])
}

impl Universe {
    fn build(seed: u64) -> Self {
        let mut rng = stream_rng(seed, 0);

        // Every creator owns at least one template; big creators own many.
        let mut counts = vec![1u32; REGULAR_CREATORS];
        let ownership = zipf_cumulative(REGULAR_CREATORS, CREATOR_TEMPLATES_S);
        for _ in REGULAR_CREATORS..REGULAR_TEMPLATES {
            counts[sample_cumulative(&ownership, &mut rng)] += 1;
        }
        for _ in 0..TEST_CREATORS {
            counts.push(rng.random_range(2..=6));
        }

        let kinds = Picker::new(&KIND_WEIGHTS);
        let mut creator_templates = Vec::with_capacity(counts.len());
        let mut template_kinds = Vec::new();
        let mut first = 0u32;
        for &count in &counts {
            creator_templates.push((first, count));
            first += count;
            // A creator mostly makes one kind of content.
            let main_kind = kinds.pick(&mut rng) as u8;
            for _ in 0..count {
                let kind = if rng.random_range(0..4) == 0 {
                    kinds.pick(&mut rng) as u8
                } else {
                    main_kind
                };
                template_kinds.push(kind);
            }
        }

        // Affine maps with multipliers prime to 10 give distinct, scattered numbers.
        let mut creator_ids: Vec<String> = (0..REGULAR_CREATORS as u64)
            .map(|i| format!("cr-{:06}", (i * 387_433 + 104_729) % 1_000_000))
            .collect();
        creator_ids.extend((1..=TEST_CREATORS).map(|i| format!("test-cr-{i:04}")));
        let template_ids = (0..u64::from(first))
            .map(|i| format!("tpl-{:07}", (i * 7_368_787 + 1_234_567) % 10_000_000))
            .collect();
        let brand_ids = (0..BRANDS as u64)
            .map(|i| format!("brand-{:05}", (i * 31_337 + 4_242) % 100_000))
            .collect();

        let max_templates = counts.iter().copied().max().unwrap_or(1) as usize;
        // 2026-05-01 is a Friday: days 1, 2, 8, 9, ... are weekend days.
        let day_weights: Vec<u32> = (0..MONTH_DAYS)
            .map(|d| if matches!(d % 7, 1 | 2) { 7 } else { 10 })
            .collect();

        Universe {
            creator_ids,
            creator_templates,
            creator_traffic: zipf_cumulative(REGULAR_CREATORS, CREATOR_TRAFFIC_S),
            template_traffic: zipf_cumulative(max_templates, TEMPLATE_TRAFFIC_S),
            template_ids,
            template_kinds,
            brand_ids,
            brand_traffic: zipf_cumulative(BRANDS, BRAND_TRAFFIC_S),
            actions: Picker::new(&ACTION_WEIGHTS),
            tiers: Picker::new(&TIER_WEIGHTS),
            countries: Picker::new(&COUNTRY_WEIGHTS),
            days: Picker::new(&day_weights),
            hours: Picker::new(&HOUR_WEIGHTS),
            country_codes: COUNTRIES.iter().map(|c| c.to_string()).collect(),
            populations: Vec::new(),
        }
    }

    /// Adds the populations' creators, templates and countries to the
    /// catalogue; their templates' kinds come from a stream of their own, so
    /// the rest of the catalogue is as without them. A creator id that the
    /// catalogue already has is refused.
    fn add_populations(&mut self, populations: &Populations, seed: u64) -> Result<(), GenError> {
        if populations.is_empty() {
            return Ok(());
        }
        let mut rng = stream_rng(seed, u64::MAX);
        let mut ids: std::collections::HashSet<String> = self.creator_ids.iter().cloned().collect();
        let kinds = Picker::new(&KIND_WEIGHTS);
        for p in &populations.list {
            let first_creator = self.creator_ids.len() as u32;
            let first_template = self.template_ids.len();
            for i in 1..=p.creators {
                let id = format!("{}{i:06}{}", p.creator_prefix, p.creator_suffix);
                if !ids.insert(id.clone()) {
                    return Err(GenError::InvalidOptions(format!(
                        "population {:?}: creator id {id:?} is already a creator of the generated traffic; give the population a creator_prefix or creator_suffix of its own",
                        p.name
                    )));
                }
                self.creator_ids.push(id);
                self.creator_templates
                    .push((self.template_ids.len() as u32, p.templates_per_creator));
                for _ in 0..p.templates_per_creator {
                    let number = self.template_ids.len() - first_template + 1;
                    self.template_ids
                        .push(format!("tpl-{}-{number:06}", p.name));
                    let kind = pick_code(p.content_kinds.as_deref(), &kinds, &mut rng);
                    self.template_kinds.push(kind);
                }
            }
            let countries = match &p.countries {
                None => None,
                Some(list) => {
                    let mut codes = Vec::with_capacity(list.len());
                    for country in list {
                        let index = match self.country_codes.iter().position(|c| c == country) {
                            Some(index) => index,
                            None => {
                                self.country_codes.push(country.clone());
                                self.country_codes.len() - 1
                            }
                        };
                        let index = u8::try_from(index).map_err(|_| {
                            GenError::InvalidOptions(
                                "the populations use more than 200 countries".into(),
                            )
                        })?;
                        codes.push(index);
                    }
                    Some(codes)
                }
            };
            self.populations.push(Group {
                first_creator,
                creators: p.creators,
                actions: p.actions.clone(),
                tiers: p.user_tiers.clone(),
                countries,
            });
        }
        Ok(())
    }

    fn is_test_creator(&self, creator: u32) -> bool {
        (REGULAR_CREATORS..REGULAR_CREATORS + TEST_CREATORS).contains(&(creator as usize))
    }

    /// The population a creator belongs to, if any.
    fn group_of(&self, creator: u32) -> Option<&Group> {
        self.populations
            .iter()
            .find(|g| (g.first_creator..g.first_creator + g.creators).contains(&creator))
    }

    /// One of the creator's templates, popular ones more often.
    fn pick_template(&self, creator: usize, rng: &mut ChaCha8Rng) -> u32 {
        let (first, count) = self.creator_templates[creator];
        let rank = sample_cumulative(&self.template_traffic[..count as usize], rng);
        first + rank as u32
    }

    fn new_event(&self, rng: &mut ChaCha8Rng) -> Event {
        self.event_of(None, rng)
    }

    /// A new event of population `group`, or of the main traffic (with
    /// exactly the draws [`Universe::new_event`] always made).
    fn event_of(&self, group: Option<&Group>, rng: &mut ChaCha8Rng) -> Event {
        let creator = match group {
            Some(g) => (g.first_creator + rng.random_range(0..g.creators)) as usize,
            None if rng.random_range(0..PPM) < TEST_CREATOR_PPM => {
                REGULAR_CREATORS + rng.random_range(0..TEST_CREATORS)
            }
            None => sample_cumulative(&self.creator_traffic, rng),
        };
        let template = self.pick_template(creator, rng);
        let tier = usize::from(pick_code(
            group.and_then(|g| g.tiers.as_deref()),
            &self.tiers,
            rng,
        ));
        let action = pick_code(group.and_then(|g| g.actions.as_deref()), &self.actions, rng);
        let country = pick_code(
            group.and_then(|g| g.countries.as_deref()),
            &self.countries,
            rng,
        );
        let brand = if rng.random_range(0..100) < BRAND_PCT_BY_TIER[tier] {
            sample_cumulative(&self.brand_traffic, rng) as u32
        } else {
            NO_BRAND
        };

        let day = self.days.pick(rng) as i64;
        let hour = self.hours.pick(rng) as i64;
        let occurred_ms =
            MONTH_START_MS + day * DAY_MS + hour * HOUR_MS + rng.random_range(0..HOUR_MS);
        let delay_ms = match rng.random_range(0..100) {
            0..80 => rng.random_range(200..30 * SECOND_MS),
            80..95 => rng.random_range(30 * SECOND_MS..10 * MINUTE_MS),
            _ => rng.random_range(10 * MINUTE_MS..4 * HOUR_MS),
        };

        // A random (version 4 style) UUID.
        let mut id = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
        id = (id & !(0xf << 76)) | (0x4 << 76);
        id = (id & !(0x3 << 62)) | (0x2 << 62);
        let id_form = match rng.random_range(0..100) {
            0..80 => 0,
            80..95 => 1,
            _ => 2,
        };

        Event {
            id,
            id_form,
            occurred_ms,
            ingested_ms: occurred_ms + delay_ms,
            creator: creator as u32,
            template,
            brand,
            action,
            tier: tier as u8,
            country,
            style: rng.next_u32(),
        }
    }

    /// A record with the same `event_id` that differs from `original` in one field
    /// besides `ingested_at`; `order` 0, 1, 2 makes its `ingested_at` equal, earlier
    /// or later than the original's.
    fn conflicting(&self, original: &Event, order: u64, rng: &mut ChaCha8Rng) -> Event {
        let mut e = *original;
        e.style = rng.next_u32();
        let creator = e.creator as usize;
        let (_, templates) = self.creator_templates[creator];
        if let Some(group) = self.group_of(e.creator) {
            self.change_within(&mut e, group, rng);
        } else {
            self.change_any(&mut e, templates, rng);
        }
        let delay = original.ingested_ms - original.occurred_ms;
        e.ingested_ms = match order % 3 {
            0 => original.ingested_ms,
            1 => original.occurred_ms + rng.random_range(0..delay),
            _ => original.ingested_ms + rng.random_range(SECOND_MS..2 * HOUR_MS),
        };
        e
    }

    /// Changes one field of `e` (of a population's creator) to another value
    /// its population uses: its template, action, tier or country, or, when
    /// none of them has another value, when it occurred (a few ms earlier).
    fn change_within(&self, e: &mut Event, group: &Group, rng: &mut ChaCha8Rng) {
        let (_, templates) = self.creator_templates[e.creator as usize];
        let creator = e.creator as usize;
        for step in 0..4 {
            let field = (rng.random_range(0..4) + step) % 4;
            match field {
                0 if templates > 1 => {
                    let (first, _) = self.creator_templates[creator];
                    e.template =
                        first + (e.template - first + rng.random_range(1..templates)) % templates;
                    return;
                }
                1 => {
                    if let Some(a) = other_code(group.actions.as_deref(), 4, e.action, rng) {
                        e.action = a;
                        return;
                    }
                }
                2 => {
                    if let Some(t) = other_code(group.tiers.as_deref(), 4, e.tier, rng) {
                        e.tier = t;
                        return;
                    }
                }
                3 => {
                    let all = COUNTRIES.len() as u8;
                    if let Some(c) = other_code(group.countries.as_deref(), all, e.country, rng) {
                        e.country = c;
                        return;
                    }
                }
                _ => {}
            }
        }
        e.occurred_ms -= rng.random_range(1..1_000);
    }

    /// Changes one field of `e` (of the main traffic) to any other value.
    fn change_any(&self, e: &mut Event, templates: u32, rng: &mut ChaCha8Rng) {
        let creator = e.creator as usize;
        let original = *e;
        match rng.random_range(0..4) {
            0 if templates > 1 => {
                while e.template == original.template {
                    e.template = self.pick_template(creator, rng);
                }
            }
            0 | 1 => e.action = (e.action + rng.random_range(1..4)) % 4,
            2 => e.tier = (e.tier + rng.random_range(1..4)) % 4,
            _ => {
                e.country = (e.country + rng.random_range(1..COUNTRIES.len() as u8))
                    % COUNTRIES.len() as u8;
            }
        }
    }
}

/// ChaCha8 stream `stream` of `seed`: stream 0 is the catalogue, `i + 1` file `i`.
fn stream_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

// ---------------------------------------------------------------------------------
// Planning a file: which record goes where
// ---------------------------------------------------------------------------------

/// Receives the records of one file, in order.
trait Sink {
    /// Whether blank lines are written (JSONL) or only counted as skipped.
    const BLANK_LINES: bool;

    /// Writes `event`, broken by `fault` if given; `aux` is a random number for the
    /// fault's own choices.
    fn record(&mut self, event: &Event, fault: Option<Fault>, aux: u32) -> Result<(), GenError>;

    fn blank_line(&mut self) -> Result<(), GenError>;

    fn finish(self) -> Result<(), GenError>;
}

/// What one file holds, as counted while planting.
#[derive(Debug, Default)]
struct FileStats {
    records: u64,
    exact_resends: u64,
    late_resends: u64,
    conflicts: u64,
    /// Per entry of the fault table in use.
    broken: Vec<u64>,
    test_creators: u64,
    blank_lines: u64,
    /// New events per population.
    population_events: Vec<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resent {
    /// Not re-sent yet: may get re-sends or one conflict.
    Never,
    /// Re-sent unchanged or later: may get more re-sends, no conflict.
    Plainly,
    /// Has a conflicting record: gets nothing more.
    InConflict,
}

struct FileJob<'a> {
    universe: &'a Universe,
    populations: &'a Populations,
    seed: u64,
    index: u64,
    records: u64,
    faults: &'a [Fault],
    on_progress: &'a (dyn Fn(u64) + Sync),
}

fn write_file(job: &FileJob<'_>, path: &Path, format: Format) -> Result<FileStats, GenError> {
    let file = File::create(path).map_err(|e| io_error(path, e))?;
    let out = BufWriter::with_capacity(1 << 20, file);
    match format {
        Format::Jsonl => {
            let mut sink = JsonlSink::new(job.universe, out, path);
            let stats = plan_file(job, &mut sink)?;
            sink.finish()?;
            Ok(stats)
        }
        Format::Parquet => {
            let mut sink = ParquetSink::new(job.universe, out, path)?;
            let stats = plan_file(job, &mut sink)?;
            sink.finish()?;
            Ok(stats)
        }
    }
}

/// Draws the records of one file and hands them to `sink`.
///
/// The random draws do not depend on the format, so both formats get the same
/// events; only the fault table (and so the broken records' content) differs.
fn plan_file<S: Sink>(job: &FileJob<'_>, sink: &mut S) -> Result<FileStats, GenError> {
    let u = job.universe;
    let mut rng = stream_rng(job.seed, job.index + 1);
    let first_fault = rng.next_u32() as usize;
    let mut stats = FileStats {
        broken: vec![0; job.faults.len()],
        population_events: vec![0; job.populations.list.len()],
        ..FileStats::default()
    };
    let mut broken_total = 0usize;
    let mut recent: Vec<(Event, Resent)> = Vec::with_capacity(RECENT);
    let mut recent_next = 0usize;
    let mut unreported = 0u64;

    for _ in 0..job.records {
        let roll = rng.random_range(0..PPM);
        let aux = rng.next_u32();
        let mut original = false;
        if roll < BROKEN_PPM {
            // A fresh event: its id is shared with nothing else.
            let event = u.new_event(&mut rng);
            let k = (first_fault + broken_total) % job.faults.len();
            broken_total += 1;
            stats.broken[k] += 1;
            sink.record(&event, Some(job.faults[k]), aux)?;
        } else if roll < BROKEN_PPM + CONFLICT_PPM {
            match pick_recent(&recent, &mut rng, |r| r == Resent::Never) {
                Some(i) => {
                    let event = u.conflicting(&recent[i].0, stats.conflicts, &mut rng);
                    recent[i].1 = Resent::InConflict;
                    stats.conflicts += 1;
                    sink.record(&event, None, aux)?;
                }
                None => original = true,
            }
        } else if roll < BROKEN_PPM + CONFLICT_PPM + LATE_RESEND_PPM + EXACT_RESEND_PPM {
            let late = roll < BROKEN_PPM + CONFLICT_PPM + LATE_RESEND_PPM;
            match pick_recent(&recent, &mut rng, |r| r != Resent::InConflict) {
                Some(i) => {
                    let mut event = recent[i].0;
                    recent[i].1 = Resent::Plainly;
                    if late {
                        event.ingested_ms += rng.random_range(MINUTE_MS..6 * HOUR_MS);
                        event.style = rng.next_u32();
                        stats.late_resends += 1;
                    } else {
                        stats.exact_resends += 1;
                    }
                    sink.record(&event, None, aux)?;
                }
                None => original = true,
            }
        } else {
            original = true;
        }

        if original {
            let event = match job.populations.pick(&mut rng) {
                Some(p) => {
                    stats.population_events[p] += 1;
                    u.event_of(Some(&u.populations[p]), &mut rng)
                }
                None => u.new_event(&mut rng),
            };
            if u.is_test_creator(event.creator) {
                stats.test_creators += 1;
            }
            if recent.len() < RECENT {
                recent.push((event, Resent::Never));
            } else {
                recent[recent_next] = (event, Resent::Never);
                recent_next = (recent_next + 1) % RECENT;
            }
            sink.record(&event, None, aux)?;
        }
        stats.records += 1;

        if rng.random_range(0..PPM) < BLANK_LINE_PPM && S::BLANK_LINES {
            sink.blank_line()?;
            stats.blank_lines += 1;
        }
        unreported += 1;
        if unreported == PROGRESS_STEP {
            (job.on_progress)(unreported);
            unreported = 0;
        }
    }
    if unreported > 0 {
        (job.on_progress)(unreported);
    }
    Ok(stats)
}

/// A random recent original whose state passes `ok`, if a few tries find one.
fn pick_recent(
    recent: &[(Event, Resent)],
    rng: &mut ChaCha8Rng,
    ok: impl Fn(Resent) -> bool,
) -> Option<usize> {
    if recent.is_empty() {
        return None;
    }
    (0..4)
        .map(|_| rng.random_range(0..recent.len()))
        .find(|&i| ok(recent[i].1))
}

// ---------------------------------------------------------------------------------
// Text formatting
// ---------------------------------------------------------------------------------

/// Days since 1970-01-01 of a proleptic Gregorian date.
const fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a number of days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Appends `value` in decimal, zero-padded to `width` digits.
fn push_padded(buf: &mut Vec<u8>, value: i64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut n = value.unsigned_abs();
    let mut i = digits.len();
    while n > 0 {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let start = i.min(digits.len() - width.max(1));
    if value < 0 {
        buf.push(b'-');
    }
    buf.extend_from_slice(&digits[start..]);
}

fn push_int(buf: &mut Vec<u8>, value: i64) {
    push_padded(buf, value, 1);
}

/// Appends an RFC 3339 timestamp with milliseconds, in UTC (`Z`) or at an offset.
fn push_rfc3339(buf: &mut Vec<u8>, ms: i64, offset_min: i64) {
    let local = ms + offset_min * MINUTE_MS;
    let (year, month, day) = civil_from_days(local.div_euclid(DAY_MS));
    let in_day = local.rem_euclid(DAY_MS);
    push_padded(buf, year, 4);
    buf.push(b'-');
    push_padded(buf, month, 2);
    buf.push(b'-');
    push_padded(buf, day, 2);
    buf.push(b'T');
    push_padded(buf, in_day / HOUR_MS, 2);
    buf.push(b':');
    push_padded(buf, in_day / MINUTE_MS % 60, 2);
    buf.push(b':');
    push_padded(buf, in_day / SECOND_MS % 60, 2);
    buf.push(b'.');
    push_padded(buf, in_day % SECOND_MS, 3);
    if offset_min == 0 {
        buf.push(b'Z');
    } else {
        buf.push(if offset_min < 0 { b'-' } else { b'+' });
        push_padded(buf, offset_min.abs() / 60, 2);
        buf.push(b':');
        push_padded(buf, offset_min.abs() % 60, 2);
    }
}

/// Appends `s` as a JSON string literal.
fn push_json_str(buf: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            0..0x20 => {
                buf.extend_from_slice(b"\\u00");
                buf.push(HEX[usize::from(b >> 4)]);
                buf.push(HEX[usize::from(b & 0xf)]);
            }
            _ => buf.push(b),
        }
    }
    buf.push(b'"');
}

/// Writes the event id as a UUID (`8-4-4-4-12`) or as 32 plain hex digits.
fn format_event_id(out: &mut String, id: u128, form: u8) {
    let digits: &[u8; 16] = if form == 2 {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    out.clear();
    for i in 0..32 {
        if form != 1 && matches!(i, 8 | 12 | 16 | 20) {
            out.push('-');
        }
        let nibble = (id >> (124 - 4 * i)) & 0xf;
        out.push(char::from(digits[nibble as usize]));
    }
}

/// An `event_id` of 160 bytes, over the 128-byte limit.
fn format_long_id(out: &mut String, id: u128) {
    let mut one = String::with_capacity(32);
    format_event_id(&mut one, id, 1);
    out.clear();
    for _ in 0..5 {
        out.push_str(&one);
    }
}

// ---------------------------------------------------------------------------------
// JSONL
// ---------------------------------------------------------------------------------

/// The field orders producers use.
const FIELD_ORDERS: [[Field; 10]; 4] = {
    use Field::*;
    [
        [
            EventId,
            OccurredAt,
            IngestedAt,
            CreatorId,
            TemplateId,
            BrandId,
            ContentKind,
            Action,
            UserTier,
            Country,
        ],
        [
            Action,
            BrandId,
            ContentKind,
            Country,
            CreatorId,
            EventId,
            IngestedAt,
            OccurredAt,
            TemplateId,
            UserTier,
        ],
        [
            EventId,
            CreatorId,
            TemplateId,
            BrandId,
            Action,
            ContentKind,
            UserTier,
            Country,
            OccurredAt,
            IngestedAt,
        ],
        [
            Country,
            UserTier,
            Action,
            ContentKind,
            BrandId,
            TemplateId,
            CreatorId,
            IngestedAt,
            OccurredAt,
            EventId,
        ],
    ]
};

/// Unknown fields some producers add; consumers must ignore them. Each starts with
/// its separating comma.
const EXTRAS: [&str; 4] = [
    ",\"client\":{\"app\":\"editor\",\"version\":\"4.12.0\",\"action\":\"open\",\"country\":\"ZZ\"}",
    ",\"note\":\"caf\\u00e9 \\\"quoted\\\" back\\\\slash \\ud83d\\ude00\"",
    ",\"note\":\"café ☕ 日本語\"",
    ",\"retries\":2,\"sampled\":true,\"tags\":[\"a\",\"b\"],\"ratio\":0.25,\"trace\":null",
];

/// The presentation choices packed in [`Event::style`].
struct JsonStyle(u32);

impl JsonStyle {
    fn order(&self) -> &'static [Field; 10] {
        &FIELD_ORDERS[(self.0 & 3) as usize]
    }

    /// 5/8 RFC 3339 in UTC, 1/8 with an offset, 2/8 epoch milliseconds.
    fn timestamp(&self, field: Field) -> (u32, i64) {
        let bits = if field == Field::OccurredAt {
            self.0 >> 2
        } else {
            self.0 >> 8
        };
        let offset = OFFSETS_MIN[((bits >> 3) & 7) as usize % OFFSETS_MIN.len()];
        (bits & 7, offset)
    }

    fn brand_absent_when_none(&self) -> bool {
        self.0 & (1 << 14) != 0
    }

    /// 0..=2: a session id; 3..=6: one of [`EXTRAS`]; otherwise none.
    fn extra(&self) -> u32 {
        (self.0 >> 15) & 31
    }

    fn spaced(&self) -> bool {
        (self.0 >> 20) & 7 == 0
    }
}

struct JsonlSink<'a> {
    universe: &'a Universe,
    out: BufWriter<File>,
    path: &'a Path,
    line: Vec<u8>,
    scratch: String,
}

impl<'a> JsonlSink<'a> {
    fn new(universe: &'a Universe, out: BufWriter<File>, path: &'a Path) -> Self {
        JsonlSink {
            universe,
            out,
            path,
            line: Vec::with_capacity(1024),
            scratch: String::with_capacity(256),
        }
    }
}

impl Sink for JsonlSink<'_> {
    const BLANK_LINES: bool = true;

    fn record(&mut self, event: &Event, fault: Option<Fault>, aux: u32) -> Result<(), GenError> {
        self.line.clear();
        match fault {
            Some(Fault::Line(text)) => self.line.extend_from_slice(text.as_bytes()),
            Some(Fault::Truncated) => {
                render_object(
                    &mut self.line,
                    &mut self.scratch,
                    self.universe,
                    event,
                    None,
                );
                let cut = 1 + aux as usize % (self.line.len() - 1);
                self.line.truncate(cut);
            }
            _ => render_object(
                &mut self.line,
                &mut self.scratch,
                self.universe,
                event,
                fault,
            ),
        }
        self.line.push(b'\n');
        self.out
            .write_all(&self.line)
            .map_err(|e| io_error(self.path, e))
    }

    fn blank_line(&mut self) -> Result<(), GenError> {
        self.out
            .write_all(b"\n")
            .map_err(|e| io_error(self.path, e))
    }

    fn finish(mut self) -> Result<(), GenError> {
        self.out.flush().map_err(|e| io_error(self.path, e))
    }
}

/// Renders `event` as one JSON object (no newline), with `fault` planted in its field.
fn render_object(
    buf: &mut Vec<u8>,
    scratch: &mut String,
    u: &Universe,
    event: &Event,
    fault: Option<Fault>,
) {
    let style = JsonStyle(event.style);
    let (colon, comma): (&[u8], &[u8]) = if style.spaced() {
        (b": ", b", ")
    } else {
        (b":", b",")
    };
    let faulty = fault.and_then(Fault::field);
    buf.push(b'{');
    let mut first = true;
    for &field in style.order() {
        let fault = if faulty == Some(field) { fault } else { None };
        let absent = match fault {
            Some(Fault::Absent(_)) => true,
            Some(_) => false,
            None => {
                field == Field::BrandId && event.brand == NO_BRAND && style.brand_absent_when_none()
            }
        };
        if absent {
            continue;
        }
        if !first {
            buf.extend_from_slice(comma);
        }
        first = false;
        buf.push(b'"');
        buf.extend_from_slice(field.name().as_bytes());
        buf.push(b'"');
        buf.extend_from_slice(colon);
        match fault {
            Some(Fault::Null(_)) => buf.extend_from_slice(b"null"),
            Some(Fault::Json(_, raw)) => buf.extend_from_slice(raw.as_bytes()),
            Some(Fault::Str(_, s)) => push_json_str(buf, s),
            Some(Fault::Millis(_, ms)) => push_int(buf, ms),
            Some(Fault::LongId) => {
                format_long_id(scratch, event.id);
                push_json_str(buf, scratch);
            }
            Some(Fault::InvalidUtf8) => {
                buf.extend_from_slice(b"\"cr-\xff\xfe");
                buf.extend_from_slice(&u.creator_ids[event.creator as usize].as_bytes()[3..]);
                buf.push(b'"');
            }
            _ => push_field_value(buf, scratch, u, event, field, &style),
        }
    }
    match style.extra() {
        0..=2 => {
            buf.extend_from_slice(comma);
            buf.extend_from_slice(b"\"session\"");
            buf.extend_from_slice(colon);
            let session = (event.id as u64) ^ 0x5bd1_e995_9e37_79b9;
            scratch.clear();
            scratch.push_str("s-");
            for i in 0..12 {
                let nibble = (session >> (60 - 4 * i)) & 0xf;
                scratch.push(char::from(b"0123456789abcdef"[nibble as usize]));
            }
            push_json_str(buf, scratch);
        }
        n @ 3..=6 => buf.extend_from_slice(EXTRAS[(n - 3) as usize].as_bytes()),
        _ => {}
    }
    buf.push(b'}');
}

fn push_field_value(
    buf: &mut Vec<u8>,
    scratch: &mut String,
    u: &Universe,
    event: &Event,
    field: Field,
    style: &JsonStyle,
) {
    match field {
        Field::EventId => {
            format_event_id(scratch, event.id, event.id_form);
            push_json_str(buf, scratch);
        }
        Field::OccurredAt | Field::IngestedAt => {
            let ms = if field == Field::OccurredAt {
                event.occurred_ms
            } else {
                event.ingested_ms
            };
            match style.timestamp(field) {
                (0..=4, _) => {
                    buf.push(b'"');
                    push_rfc3339(buf, ms, 0);
                    buf.push(b'"');
                }
                (5, offset) => {
                    buf.push(b'"');
                    push_rfc3339(buf, ms, offset);
                    buf.push(b'"');
                }
                _ => push_int(buf, ms),
            }
        }
        Field::CreatorId => push_json_str(buf, &u.creator_ids[event.creator as usize]),
        Field::TemplateId => push_json_str(buf, &u.template_ids[event.template as usize]),
        Field::BrandId => match event.brand {
            NO_BRAND => buf.extend_from_slice(b"null"),
            brand => push_json_str(buf, &u.brand_ids[brand as usize]),
        },
        Field::ContentKind => {
            let kind = u.template_kinds[event.template as usize];
            push_json_str(buf, KINDS[usize::from(kind)]);
        }
        Field::Action => push_json_str(buf, ACTIONS[usize::from(event.action)]),
        Field::UserTier => push_json_str(buf, TIERS[usize::from(event.tier)]),
        Field::Country => push_json_str(buf, &u.country_codes[usize::from(event.country)]),
    }
}

// ---------------------------------------------------------------------------------
// Parquet
// ---------------------------------------------------------------------------------

/// The Arrow schema of the generated Parquet files: the contract's fields in order,
/// all nullable, timestamps in UTC milliseconds.
pub fn parquet_schema() -> SchemaRef {
    let utf8 = |name: &str| ArrowField::new(name, DataType::Utf8, true);
    let timestamp = |name: &str| {
        ArrowField::new(
            name,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        )
    };
    Arc::new(Schema::new(vec![
        utf8("event_id"),
        timestamp("occurred_at"),
        timestamp("ingested_at"),
        utf8("creator_id"),
        utf8("template_id"),
        utf8("brand_id"),
        utf8("content_kind"),
        utf8("action"),
        utf8("user_tier"),
        utf8("country"),
    ]))
}

/// Column builders of the batch being filled.
struct Columns {
    event_id: StringBuilder,
    occurred_at: TimestampMillisecondBuilder,
    ingested_at: TimestampMillisecondBuilder,
    creator_id: StringBuilder,
    template_id: StringBuilder,
    brand_id: StringBuilder,
    content_kind: StringBuilder,
    action: StringBuilder,
    user_tier: StringBuilder,
    country: StringBuilder,
}

impl Columns {
    fn new() -> Self {
        let strings = |bytes_per_row: usize| {
            StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * bytes_per_row)
        };
        Columns {
            event_id: strings(36),
            occurred_at: TimestampMillisecondBuilder::with_capacity(BATCH_ROWS),
            ingested_at: TimestampMillisecondBuilder::with_capacity(BATCH_ROWS),
            creator_id: strings(9),
            template_id: strings(11),
            brand_id: strings(11),
            content_kind: strings(8),
            action: strings(7),
            user_tier: strings(10),
            country: strings(2),
        }
    }

    fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.occurred_at.finish().with_timezone("UTC")),
            Arc::new(self.ingested_at.finish().with_timezone("UTC")),
            Arc::new(self.creator_id.finish()),
            Arc::new(self.template_id.finish()),
            Arc::new(self.brand_id.finish()),
            Arc::new(self.content_kind.finish()),
            Arc::new(self.action.finish()),
            Arc::new(self.user_tier.finish()),
            Arc::new(self.country.finish()),
        ];
        RecordBatch::try_new(schema.clone(), columns)
    }
}

/// Appends `value`, or what `fault` puts in `field` instead.
fn append_str(b: &mut StringBuilder, field: Field, fault: Option<Fault>, value: Option<&str>) {
    let value = match fault {
        Some(Fault::Null(f)) if f == field => None,
        Some(Fault::Str(f, s)) if f == field => Some(s),
        _ => value,
    };
    b.append_option(value);
}

fn append_ts(b: &mut TimestampMillisecondBuilder, field: Field, fault: Option<Fault>, ms: i64) {
    match fault {
        Some(Fault::Null(f)) if f == field => b.append_null(),
        Some(Fault::Millis(f, v)) if f == field => b.append_value(v),
        _ => b.append_value(ms),
    }
}

struct ParquetSink<'a> {
    universe: &'a Universe,
    writer: ArrowWriter<BufWriter<File>>,
    path: &'a Path,
    schema: SchemaRef,
    columns: Columns,
    rows: usize,
    scratch: String,
}

impl<'a> ParquetSink<'a> {
    fn new(universe: &'a Universe, out: BufWriter<File>, path: &'a Path) -> Result<Self, GenError> {
        let parquet_error = |source| GenError::Parquet {
            path: path.to_path_buf(),
            source,
        };
        // No key-value metadata beyond the Arrow schema: nothing about the time or
        // place of writing, so the files are reproducible.
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_column_dictionary_enabled(ColumnPath::from("event_id"), false)
            .build();
        let schema = parquet_schema();
        let writer =
            ArrowWriter::try_new(out, schema.clone(), Some(props)).map_err(parquet_error)?;
        Ok(ParquetSink {
            universe,
            writer,
            path,
            schema,
            columns: Columns::new(),
            rows: 0,
            scratch: String::with_capacity(256),
        })
    }

    fn flush_batch(&mut self) -> Result<(), GenError> {
        if self.rows == 0 {
            return Ok(());
        }
        let batch = self
            .columns
            .finish(&self.schema)
            .map_err(|source| GenError::Arrow {
                path: self.path.to_path_buf(),
                source,
            })?;
        self.rows = 0;
        self.writer
            .write(&batch)
            .map_err(|source| GenError::Parquet {
                path: self.path.to_path_buf(),
                source,
            })
    }
}

impl Sink for ParquetSink<'_> {
    const BLANK_LINES: bool = false;

    fn record(&mut self, event: &Event, fault: Option<Fault>, _aux: u32) -> Result<(), GenError> {
        let u = self.universe;
        let c = &mut self.columns;
        if fault == Some(Fault::LongId) {
            format_long_id(&mut self.scratch, event.id);
        } else {
            format_event_id(&mut self.scratch, event.id, event.id_form);
        }
        append_str(&mut c.event_id, Field::EventId, fault, Some(&self.scratch));
        append_ts(
            &mut c.occurred_at,
            Field::OccurredAt,
            fault,
            event.occurred_ms,
        );
        append_ts(
            &mut c.ingested_at,
            Field::IngestedAt,
            fault,
            event.ingested_ms,
        );
        let creator = &u.creator_ids[event.creator as usize];
        append_str(&mut c.creator_id, Field::CreatorId, fault, Some(creator));
        let template = &u.template_ids[event.template as usize];
        append_str(&mut c.template_id, Field::TemplateId, fault, Some(template));
        let brand = u.brand_ids.get(event.brand as usize).map(String::as_str);
        append_str(&mut c.brand_id, Field::BrandId, fault, brand);
        let kind = KINDS[usize::from(u.template_kinds[event.template as usize])];
        append_str(&mut c.content_kind, Field::ContentKind, fault, Some(kind));
        let action = ACTIONS[usize::from(event.action)];
        append_str(&mut c.action, Field::Action, fault, Some(action));
        let tier = TIERS[usize::from(event.tier)];
        append_str(&mut c.user_tier, Field::UserTier, fault, Some(tier));
        let country = &u.country_codes[usize::from(event.country)];
        append_str(&mut c.country, Field::Country, fault, Some(country));
        self.rows += 1;
        if self.rows == BATCH_ROWS {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn blank_line(&mut self) -> Result<(), GenError> {
        Ok(())
    }

    fn finish(mut self) -> Result<(), GenError> {
        self.flush_batch()?;
        self.writer.close().map_err(|source| GenError::Parquet {
            path: self.path.to_path_buf(),
            source,
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::{BTreeSet, HashMap};
    use std::sync::atomic::{AtomicU64, Ordering};

    use arrow::array::{Array, AsArray, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::TimestampMillisecondType;
    use chrono::{DateTime, Datelike, Utc};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use serde_json::Value;

    /// A directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir()
                .join(format!("tally-gen-test-{}-{tag}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn options(dir: &Path, events: u64, seed: u64, format: Format, per_file: u64) -> GenOptions {
        GenOptions {
            events_per_file: per_file,
            ..GenOptions::new(events, seed, dir, format)
        }
    }

    fn run(opts: &GenOptions) -> GenSummary {
        let progress = AtomicU64::new(0);
        let summary = generate(opts, &|n| {
            progress.fetch_add(n, Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(progress.load(Ordering::Relaxed), opts.events);
        assert_eq!(summary.records, opts.events);
        summary
    }

    fn read_all(files: &[PathBuf]) -> Vec<Vec<u8>> {
        files.iter().map(|f| fs::read(f).unwrap()).collect()
    }

    // -----------------------------------------------------------------------------
    // An independent reading of the contract (shared/spec/events.md).
    // -----------------------------------------------------------------------------

    /// A valid record, normalised; the field order is the survivor order.
    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
    struct Rec {
        ingested_at: i64,
        occurred_at: i64,
        creator_id: String,
        template_id: String,
        brand_id: Option<String>,
        content_kind: String,
        action: String,
        user_tier: String,
        country: String,
        event_id: String,
    }

    impl Rec {
        /// Everything but `ingested_at`: what must match for a duplicate not to be a
        /// conflict.
        fn content(&self) -> Rec {
            Rec {
                ingested_at: 0,
                ..self.clone()
            }
        }
    }

    /// A field's value, as read from JSON or Parquet.
    enum Raw<'a> {
        Missing,
        Str(&'a str),
        Int(i64),
        Other,
    }

    fn in_years(ms: i64) -> bool {
        DateTime::<Utc>::from_timestamp_millis(ms)
            .is_some_and(|t| (2000..=2100).contains(&t.year()))
    }

    /// Checks the ten fields in contract order; returns every problem found, or the
    /// normalised record.
    fn check_fields<'a>(get: impl Fn(&str) -> Raw<'a>) -> Result<Rec, Vec<String>> {
        let mut problems = Vec::new();
        let mut strings: HashMap<&str, Option<String>> = HashMap::new();
        let mut times: HashMap<&str, i64> = HashMap::new();
        for name in [
            "event_id",
            "occurred_at",
            "ingested_at",
            "creator_id",
            "template_id",
            "brand_id",
            "content_kind",
            "action",
            "user_tier",
            "country",
        ] {
            let timestamp = name.ends_with("_at");
            let raw = get(name);
            if let Raw::Missing = raw {
                if name != "brand_id" {
                    problems.push(format!("missing-field:{name}"));
                }
                strings.insert(name, None);
                continue;
            }
            if timestamp {
                let ms = match raw {
                    Raw::Str(s) => DateTime::parse_from_rfc3339(s)
                        .ok()
                        .map(|t| t.timestamp_millis()),
                    Raw::Int(ms) => Some(ms),
                    _ => {
                        problems.push(format!("bad-type:{name}"));
                        continue;
                    }
                };
                match ms.filter(|&ms| in_years(ms)) {
                    Some(ms) => {
                        times.insert(name, ms);
                    }
                    None => problems.push(format!("bad-value:{name}")),
                }
                continue;
            }
            let Raw::Str(s) = raw else {
                problems.push(format!("bad-type:{name}"));
                continue;
            };
            let valid = match name {
                "event_id" => (1..=128).contains(&s.len()),
                "creator_id" | "template_id" => !s.is_empty(),
                "brand_id" => true,
                "content_kind" => KINDS.contains(&s),
                "action" => ACTIONS.contains(&s),
                "user_tier" => TIERS.contains(&s),
                _ => s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase()),
            };
            if !valid {
                problems.push(format!("bad-value:{name}"));
            }
            strings.insert(name, Some(s.to_string()));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut s = |name| strings.remove(name).flatten().unwrap_or_default();
        Ok(Rec {
            event_id: s("event_id"),
            creator_id: s("creator_id"),
            template_id: s("template_id"),
            content_kind: s("content_kind"),
            action: s("action"),
            user_tier: s("user_tier"),
            country: s("country"),
            brand_id: strings.remove("brand_id").flatten(),
            occurred_at: times["occurred_at"],
            ingested_at: times["ingested_at"],
        })
    }

    fn check_json_line(line: &[u8]) -> Result<Rec, Vec<String>> {
        let malformed = || Err(vec!["malformed-json".to_string()]);
        let Ok(value) = serde_json::from_slice::<Value>(line) else {
            return malformed();
        };
        let Value::Object(object) = value else {
            return malformed();
        };
        check_fields(|name| match object.get(name) {
            None | Some(Value::Null) => Raw::Missing,
            Some(Value::String(s)) => Raw::Str(s),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) => Raw::Int(i),
                // Integers beyond i64 are out of range; fractions are a bad type.
                None if n.is_u64() => Raw::Int(i64::MAX),
                None => Raw::Other,
            },
            Some(_) => Raw::Other,
        })
    }

    /// Every JSONL record of the files, checked, plus the number of blank lines.
    fn check_jsonl(files: &[PathBuf]) -> (Vec<Result<Rec, Vec<String>>>, u64) {
        let mut results = Vec::new();
        let mut blank = 0;
        for file in files {
            let bytes = fs::read(file).unwrap();
            assert_eq!(bytes.last(), Some(&b'\n'), "{file:?} ends with a newline");
            for line in bytes[..bytes.len() - 1].split(|&b| b == b'\n') {
                assert!(!line.contains(&b'\r'));
                if line.is_empty() {
                    blank += 1;
                } else {
                    results.push(check_json_line(line));
                }
            }
        }
        (results, blank)
    }

    fn check_parquet(files: &[PathBuf]) -> Vec<Result<Rec, Vec<String>>> {
        let mut results = Vec::new();
        for file in files {
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(file).unwrap())
                .unwrap()
                .build()
                .unwrap();
            for batch in reader {
                let batch = batch.unwrap();
                let strings: Vec<Option<&StringArray>> = batch
                    .columns()
                    .iter()
                    .map(|c| c.as_string_opt::<i32>())
                    .collect();
                let times: Vec<Option<&TimestampMillisecondArray>> = batch
                    .columns()
                    .iter()
                    .map(|c| c.as_primitive_opt::<TimestampMillisecondType>())
                    .collect();
                let schema = batch.schema();
                for row in 0..batch.num_rows() {
                    results.push(check_fields(|name| {
                        let i = schema.index_of(name).unwrap();
                        if batch.column(i).is_null(row) {
                            Raw::Missing
                        } else if let Some(s) = strings[i] {
                            Raw::Str(s.value(row))
                        } else if let Some(t) = times[i] {
                            Raw::Int(t.value(row))
                        } else {
                            Raw::Other
                        }
                    }));
                }
            }
        }
        results
    }

    /// What the contract's deduplication makes of the valid records.
    #[derive(Debug, Default, PartialEq, Eq)]
    struct Dedup {
        unique: u64,
        duplicates: u64,
        conflicts: u64,
        test_creators: u64,
        /// Conflicting pairs whose `ingested_at` are equal / differ.
        tied_conflicts: u64,
        untied_conflicts: u64,
    }

    fn dedup(valid: &[Rec]) -> Dedup {
        let mut groups: HashMap<&str, Vec<&Rec>> = HashMap::new();
        for rec in valid {
            groups.entry(&rec.event_id).or_default().push(rec);
        }
        let mut d = Dedup::default();
        for group in groups.values() {
            let survivor = group.iter().min().unwrap();
            d.unique += 1;
            d.duplicates += group.len() as u64 - 1;
            if survivor.creator_id.starts_with("test-") {
                d.test_creators += 1;
            }
            for other in group.iter().filter(|r| r.content() != survivor.content()) {
                d.conflicts += 1;
                if other.ingested_at == survivor.ingested_at {
                    d.tied_conflicts += 1;
                } else {
                    d.untied_conflicts += 1;
                }
            }
        }
        d
    }

    /// Counts the reasons of the broken records; checks each has exactly one problem.
    fn reasons(results: &[Result<Rec, Vec<String>>]) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for problems in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(problems.len(), 1, "one planted problem, got {problems:?}");
            *counts.entry(problems[0].clone()).or_insert(0) += 1;
        }
        counts
    }

    fn expected_reasons(format: Format) -> BTreeSet<String> {
        FAULTS
            .iter()
            .filter(|f| format == Format::Jsonl || f.in_parquet())
            .map(|f| f.reason())
            .collect()
    }

    fn valid(results: Vec<Result<Rec, Vec<String>>>) -> Vec<Rec> {
        results.into_iter().filter_map(Result::ok).collect()
    }

    // -----------------------------------------------------------------------------
    // Tests
    // -----------------------------------------------------------------------------

    #[test]
    fn jsonl_records_follow_the_plan() {
        let dir = TempDir::new("jsonl");
        let summary = run(&options(dir.path(), 60_000, 7, Format::Jsonl, 25_000));
        assert_eq!(summary.files.len(), 3);
        assert!(summary.files[2].ends_with("events-00002.jsonl"));

        let (results, blank) = check_jsonl(&summary.files);
        assert_eq!(results.len() as u64, summary.records);
        assert_eq!(blank, summary.blank_lines);

        // Every broken record has exactly one problem, and it is the planted one.
        let counts = reasons(&results);
        assert_eq!(counts, summary.broken);
        let seen: BTreeSet<String> = counts.keys().cloned().collect();
        assert_eq!(seen, expected_reasons(Format::Jsonl));

        let d = dedup(&valid(results));
        assert_eq!(d.unique, summary.unique());
        assert_eq!(d.duplicates, summary.duplicates());
        assert_eq!(d.conflicts, summary.conflicts);
        assert_eq!(d.test_creators, summary.test_creators);
        assert!(d.tied_conflicts >= 1, "{d:?}");
        assert!(d.untied_conflicts >= 1, "{d:?}");
    }

    #[test]
    fn every_fault_is_planted_in_jsonl() {
        // Cycling through the table: with enough broken records, every entry appears.
        let u = Universe::build(3);
        let mut rng = stream_rng(3, 9);
        let mut buf = Vec::new();
        let mut scratch = String::new();
        for &fault in FAULTS {
            let event = u.new_event(&mut rng);
            buf.clear();
            match fault {
                Fault::Line(text) => buf.extend_from_slice(text.as_bytes()),
                Fault::Truncated => {
                    render_object(&mut buf, &mut scratch, &u, &event, None);
                    buf.truncate(buf.len() / 2);
                }
                _ => render_object(&mut buf, &mut scratch, &u, &event, Some(fault)),
            }
            let problems = check_json_line(&buf).unwrap_err();
            assert_eq!(
                problems,
                vec![fault.reason()],
                "{fault:?}: {}",
                String::from_utf8_lossy(&buf)
            );
        }
    }

    #[test]
    fn proportions_look_like_traffic() {
        let dir = TempDir::new("mix");
        let events = 100_000;
        let summary = run(&options(dir.path(), events, 11, Format::Jsonl, 50_000));
        let share = |n: u64| n as f64 / events as f64;
        let within =
            |x: f64, lo: f64, hi: f64| assert!((lo..=hi).contains(&x), "{x} not in {lo}..={hi}");
        within(share(summary.exact_resends), 0.045, 0.055);
        within(share(summary.late_resends), 0.008, 0.012);
        within(share(summary.conflicts), 0.0002, 0.001);
        within(share(summary.quarantined()), 0.004, 0.006);
        within(
            summary.test_creators as f64 / summary.unique() as f64,
            0.015,
            0.025,
        );
        assert!(summary.blank_lines > 0);

        let (results, _) = check_jsonl(&summary.files);
        let records = valid(results);
        let n = records.len() as f64;
        let share_of =
            |pred: &dyn Fn(&Rec) -> bool| records.iter().filter(|r| pred(r)).count() as f64 / n;
        within(share_of(&|r| r.brand_id.is_some()), 0.65, 0.75);
        within(share_of(&|r| r.action == "view"), 0.45, 0.55);
        within(share_of(&|r| r.user_tier == "free"), 0.35, 0.45);
        within(share_of(&|r| r.content_kind == "template"), 0.25, 0.65);

        // All of May 2026 (UTC), and ingestion after occurrence by at most a few hours.
        let days: BTreeSet<i64> = records
            .iter()
            .map(|r| r.occurred_at.div_euclid(DAY_MS))
            .collect();
        let may_1 = days_from_civil(2026, 5, 1);
        assert_eq!(days, (may_1..may_1 + 31).collect());
        assert!(
            records
                .iter()
                .all(|r| r.ingested_at - r.occurred_at <= 12 * HOUR_MS)
        );

        // Skewed creators, repeated (creator, template) pairs, ~20 countries.
        let mut per_creator: HashMap<&str, u64> = HashMap::new();
        let mut pairs: BTreeSet<(&str, &str)> = BTreeSet::new();
        let mut countries = BTreeSet::new();
        for r in &records {
            *per_creator.entry(&r.creator_id).or_default() += 1;
            pairs.insert((&r.creator_id, &r.template_id));
            countries.insert(r.country.as_str());
        }
        let mut sizes: Vec<u64> = per_creator.values().copied().collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        let top_30: u64 = sizes.iter().take(30).sum();
        assert!(
            top_30 as f64 / n > 0.3,
            "top creators carry much of the traffic"
        );
        assert!(per_creator.len() > 1_000);
        assert!((pairs.len() as f64) < n / 2.0, "pairs repeat");
        assert_eq!(countries.len(), COUNTRIES.len());
        for code in ["BR", "IN", "ID", "US", "DE", "FR", "GB", "JP"] {
            assert!(countries.contains(code));
        }
    }

    #[test]
    fn jsonl_shows_every_presentation() {
        let dir = TempDir::new("shapes");
        let summary = run(&options(dir.path(), 20_000, 5, Format::Jsonl, 20_000));
        let text = String::from_utf8_lossy(&fs::read(&summary.files[0]).unwrap()).into_owned();
        for needle in [
            "Z\"",
            "+02:00\"",
            "-05:00\"",
            "\"occurred_at\":17",
            "\"brand_id\":null",
            "\"session\":\"s-",
            "\"client\":{",
            "\\u00e9",
            "日本語",
            "\"event_id\": \"",
            "\n\n",
        ] {
            assert!(text.contains(needle), "no {needle:?}");
        }
        // Some valid records have no brand_id at all.
        assert!(text.lines().any(|l| l.starts_with('{')
            && l.ends_with('}')
            && !l.contains("brand_id")
            && check_json_line(l.as_bytes()).is_ok()));
        // Exact re-sends are byte-identical lines.
        let mut lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
        let total = lines.len();
        lines.sort_unstable();
        lines.dedup();
        let repeated = total - lines.len();
        assert!(
            repeated as u64 >= summary.exact_resends,
            "{repeated} repeated lines"
        );
    }

    #[test]
    fn output_is_deterministic_whatever_the_thread_count() {
        for format in [Format::Jsonl, Format::Parquet] {
            let mut outputs = Vec::new();
            for threads in [1, 2, 2] {
                let dir = TempDir::new("det");
                let opts = options(dir.path(), 23_000, 99, format, 5_000);
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let summary = pool.install(|| run(&opts));
                assert_eq!(summary.files.len(), 5);
                outputs.push((summary.broken.clone(), read_all(&summary.files)));
            }
            assert!(outputs.windows(2).all(|w| w[0] == w[1]), "{format}");

            let dir = TempDir::new("det-other");
            let other = run(&options(dir.path(), 23_000, 100, format, 5_000));
            assert_ne!(read_all(&other.files), outputs[0].1, "the seed matters");
        }
    }

    #[test]
    fn parquet_reads_back_with_the_schema() {
        let dir = TempDir::new("parquet");
        let events = 140_000;
        let summary = run(&options(dir.path(), events, 21, Format::Parquet, 150_000));
        assert_eq!(summary.files.len(), 1);
        assert!(summary.files[0].ends_with("events-00000.parquet"));
        assert_eq!(summary.blank_lines, 0);

        let builder =
            ParquetRecordBatchReaderBuilder::try_new(File::open(&summary.files[0]).unwrap())
                .unwrap();
        assert_eq!(builder.schema().fields(), parquet_schema().fields());
        let metadata = builder.metadata();
        assert_eq!(metadata.file_metadata().num_rows() as u64, events);
        assert_eq!(metadata.num_row_groups(), 2);
        assert_eq!(metadata.row_group(0).num_rows() as usize, ROW_GROUP_ROWS);
        for column in metadata.row_group(0).columns() {
            assert!(matches!(column.compression(), Compression::ZSTD(_)));
        }
        let keys: Vec<&str> = metadata
            .file_metadata()
            .key_value_metadata()
            .into_iter()
            .flatten()
            .map(|kv| kv.key.as_str())
            .collect();
        assert_eq!(keys, ["ARROW:schema"]);

        let results = check_parquet(&summary.files);
        assert_eq!(results.len() as u64, events);
        let counts = reasons(&results);
        assert_eq!(counts, summary.broken);
        let seen: BTreeSet<String> = counts.keys().cloned().collect();
        assert_eq!(seen, expected_reasons(Format::Parquet));
        assert!(
            !seen
                .iter()
                .any(|r| r == "malformed-json" || r.starts_with("bad-type"))
        );

        let d = dedup(&valid(results));
        assert_eq!(d.unique, summary.unique());
        assert_eq!(d.duplicates, summary.duplicates());
        assert_eq!(d.conflicts, summary.conflicts);
        assert_eq!(d.test_creators, summary.test_creators);
    }

    #[test]
    fn both_formats_hold_the_same_valid_records() {
        let jsonl_dir = TempDir::new("same-j");
        let parquet_dir = TempDir::new("same-p");
        let jsonl = run(&options(jsonl_dir.path(), 30_000, 4, Format::Jsonl, 10_000));
        let parquet = run(&options(
            parquet_dir.path(),
            30_000,
            4,
            Format::Parquet,
            10_000,
        ));
        assert_eq!(jsonl.duplicates(), parquet.duplicates());
        assert_eq!(jsonl.quarantined(), parquet.quarantined());
        assert_eq!(jsonl.test_creators, parquet.test_creators);
        let mut a = valid(check_jsonl(&jsonl.files).0);
        let mut b = valid(check_parquet(&parquet.files));
        a.sort();
        b.sort();
        assert_eq!(a.len() as u64, jsonl.records - jsonl.quarantined());
        assert!(a == b, "same valid records in both formats");
    }

    #[test]
    fn timestamps_match_chrono() {
        let mut rng = stream_rng(1, 1);
        let mut buf = Vec::new();
        for i in 0..20_000 {
            let ms = match i {
                0 => 0,
                1 => -1,
                2 => MONTH_START_MS,
                3 => YEAR_2101_MS - 1,
                _ => rng.random_range(-DAY_MS * 365 * 40..DAY_MS * 365 * 140),
            };
            let offset = OFFSETS_MIN[i % OFFSETS_MIN.len()] * i64::from(i % 2 == 0);
            buf.clear();
            push_rfc3339(&mut buf, ms, offset);
            let text = std::str::from_utf8(&buf).unwrap();
            let parsed = DateTime::parse_from_rfc3339(text).unwrap();
            assert_eq!(parsed.timestamp_millis(), ms, "{text}");
            assert_eq!(
                i64::from(parsed.offset().local_minus_utc()),
                offset * 60,
                "{text}"
            );
            if offset == 0 {
                let expected = DateTime::<Utc>::from_timestamp_millis(ms).unwrap();
                assert_eq!(text, expected.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
            }
        }
        assert_eq!(
            DateTime::<Utc>::from_timestamp_millis(MONTH_START_MS)
                .unwrap()
                .to_rfc3339(),
            "2026-05-01T00:00:00+00:00"
        );
        assert_eq!(
            DateTime::<Utc>::from_timestamp_millis(YEAR_2101_MS)
                .unwrap()
                .to_rfc3339(),
            "2101-01-01T00:00:00+00:00"
        );
        buf.clear();
        push_int(&mut buf, -86_400_000);
        push_int(&mut buf, 0);
        assert_eq!(buf, b"-864000000");
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut buf = Vec::new();
        let nasty = "a\"b\\c\nd\te\u{1}f é";
        push_json_str(&mut buf, nasty);
        let back: String = serde_json::from_slice(&buf).unwrap();
        assert_eq!(back, nasty);

        let mut id = String::new();
        format_event_id(&mut id, 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef, 0);
        assert_eq!(id, "01234567-89ab-cdef-0123-456789abcdef");
        format_event_id(&mut id, 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef, 1);
        assert_eq!(id, "0123456789abcdef0123456789abcdef");
        format_event_id(&mut id, 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef, 2);
        assert_eq!(id, "01234567-89AB-CDEF-0123-456789ABCDEF");
        format_long_id(&mut id, 7);
        assert!(id.len() > 128);
    }

    #[test]
    fn stale_files_are_replaced_and_others_kept() {
        let dir = TempDir::new("stale");
        run(&options(dir.path(), 3_000, 1, Format::Jsonl, 1_000));
        fs::write(dir.path().join("notes.txt"), "keep me").unwrap();
        fs::write(dir.path().join("events-final.jsonl"), "keep me").unwrap();
        let summary = run(&options(dir.path(), 1_500, 1, Format::Parquet, 1_000));
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "events-00000.parquet",
                "events-00001.parquet",
                "events-final.jsonl",
                "notes.txt"
            ]
        );
        assert_eq!(summary.files.len(), 2);
    }

    #[test]
    fn edge_cases() {
        let dir = TempDir::new("edge");
        let empty = run(&options(dir.path(), 0, 1, Format::Jsonl, 10));
        assert!(empty.files.is_empty());
        assert_eq!(empty.unique(), 0);

        let one = run(&options(dir.path(), 1, 1, Format::Jsonl, 10));
        assert_eq!(one.files.len(), 1);

        let err = generate(&options(dir.path(), 10, 1, Format::Jsonl, 0), &|_| {}).unwrap_err();
        assert!(matches!(err, GenError::InvalidOptions(_)), "{err}");

        let blocker = dir.path().join("a-file");
        fs::write(&blocker, "").unwrap();
        let err = generate(
            &options(&blocker.join("out"), 10, 1, Format::Jsonl, 10),
            &|_| {},
        )
        .unwrap_err();
        assert!(matches!(err, GenError::Io { .. }));
        assert!(err.to_string().contains("a-file"), "{err}");

        assert_eq!("parquet".parse::<Format>(), Ok(Format::Parquet));
        assert_eq!("jsonl".parse::<Format>(), Ok(Format::Jsonl));
        assert!("csv".parse::<Format>().is_err());
        assert_eq!(Format::Jsonl.to_string(), "jsonl");
        assert_eq!(
            GenOptions::new(5, 6, "x", Format::Jsonl).events_per_file,
            1_000_000
        );
    }
}
