//! `tally rule`: build, test and inspect rule components, and the rule
//! registry (`publish`, `list`, `show`, `verify`, `tag`).

use super::usage::UsageError;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tally::registry::{self, Origin, PublishStatus, golden};
use tally::report::Status;
use tally::rule::{self, Limits, Rule, WORLD, build, shown};

/// Where the registry is.
#[derive(clap::Args)]
pub struct RegistryArg {
    /// The rule registry directory (default: $TALLY_REGISTRY if set, else
    /// ./tally-registry).
    #[arg(long, value_name = "DIR")]
    registry: Option<PathBuf>,
}

impl RegistryArg {
    fn path(&self) -> PathBuf {
        registry::location(self.registry.as_deref())
    }
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Compile a rule crate for wasm32-unknown-unknown and turn it into a
    /// component (overflow checks on); the crate's golden.jsonl is copied
    /// beside it as <component stem>.golden.jsonl.
    #[command(
        after_help = "Examples:\n  tally rule build rules/creator-pay-v2 --out creator-pay-v2.wasm\n  tally rule build ~/src/my-rule --out target/my-rule.wasm"
    )]
    Build {
        /// The rule crate's directory (holding its Cargo.toml).
        dir: PathBuf,
        /// Where to write the component (default: <crate name>.wasm).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run a rule's golden cases through the compiled component, in the
    /// sandbox, without publishing it; exits 1 if any case fails.
    #[command(
        after_help = "Examples:\n  tally rule test rules/creator-pay-v2\n  tally rule test creator-pay-v2.wasm --golden cases/edge.jsonl\n  tally rule test ~/src/my-rule --json > golden-report.json"
    )]
    Test {
        /// A rule crate directory (built first, as `tally rule build` does)
        /// or a component (.wasm).
        source: PathBuf,
        /// The golden cases (default: golden.jsonl in the crate directory, or
        /// <component>.golden.jsonl, else golden.jsonl, next to the
        /// component).
        #[arg(long, value_name = "FILE")]
        golden: Option<PathBuf>,
        /// Print a JSON report instead of text (also when a case fails).
        #[arg(long)]
        json: bool,
    },
    /// Show a component's name, version, hash, world and imports; fails if it
    /// is not a component, imports anything but the host's panic report
    /// (tally:diagnostics/panic@1.0.0), or does not implement the rule world.
    #[command(
        after_help = "Examples:\n  tally rule inspect creator-pay-v2.wasm\n  tally rule inspect creator-pay-v2.wasm --json"
    )]
    Inspect {
        /// The component (.wasm).
        component: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Publish a rule into the registry: validate it, run its golden cases
    /// (required unless --no-golden), store it under its blake3 hash.
    #[command(
        after_help = "Examples:\n  tally rule publish rules/creator-pay-v2 --registry tally-registry/\n  tally rule publish creator-pay-v2.wasm --golden cases/edge.jsonl\n  tally rule publish scratch.wasm --no-golden --json"
    )]
    Publish {
        /// A component (.wasm) or a rule crate directory (built first).
        source: PathBuf,
        /// The golden cases to check (default: golden.jsonl in the crate
        /// directory, or <component>.golden.jsonl, else golden.jsonl, next to
        /// the component). Publishing without any is refused unless
        /// --no-golden is given.
        #[arg(long, value_name = "FILE")]
        golden: Option<PathBuf>,
        /// Publish without golden cases.
        #[arg(long, conflicts_with = "golden")]
        no_golden: bool,
        #[command(flatten)]
        registry: RegistryArg,
        /// Print JSON instead of text, also when the publish fails
        /// (`"status": "failed"` with the error).
        #[arg(long)]
        json: bool,
    },
    /// List the published rules: name, version, hash, tags, publish time.
    #[command(
        after_help = "Examples:\n  tally rule list\n  tally rule list --registry /shared/tally-registry --json"
    )]
    List {
        #[command(flatten)]
        registry: RegistryArg,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Resolve a reference (path, hash or hash prefix, name@version, name@tag),
    /// check the bytes against the hash, load the rule and describe it.
    #[command(
        after_help = "Examples:\n  tally rule show creator-pay@prod\n  tally rule show 5c78a1 --json"
    )]
    Show {
        /// The rule reference.
        reference: String,
        #[command(flatten)]
        registry: RegistryArg,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every stored blob, check every record, version and tag, and
    /// compare each compiled-code cache entry with a fresh compile of its
    /// rule; fails if anything was modified or is missing.
    #[command(
        after_help = "Examples:\n  tally rule verify\n  tally rule verify --registry /shared/tally-registry --json"
    )]
    Verify {
        #[command(flatten)]
        registry: RegistryArg,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Point name@tag at a published version of the rule (moving it if it
    /// exists), e.g. `tally rule tag creator-pay prod 5c78a1`.
    #[command(
        after_help = "Examples:\n  tally rule tag creator-pay prod creator-pay@2.0.0\n  tally rule tag creator-pay canary 5c78a1"
    )]
    Tag {
        /// The rule name.
        name: String,
        /// The tag (starts with a letter, e.g. `prod`).
        tag: String,
        /// The published rule: a hash or prefix, name@version, name@tag or a
        /// component file.
        reference: String,
        #[command(flatten)]
        registry: RegistryArg,
    },
}

pub fn execute(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Build { dir, out } => {
            let built = build::build(&dir, out.as_deref())?;
            let path = &built.component;
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let golden = match &built.golden {
                Some(golden) => format!("; its golden cases copied to {}", golden.display()),
                None => format!(
                    "; the crate has no {} (publishing will want golden cases)",
                    golden::FILE_NAME
                ),
            };
            let beside = build::golden_beside(path);
            if built.golden.is_none() && beside.is_file() {
                eprintln!(
                    "warning: {} is not from this build (the crate has no {}), yet `tally rule test` and `tally rule publish` of {} would run it",
                    beside.display(),
                    golden::FILE_NAME,
                    path.display()
                );
            }
            super::print(&format!(
                "built {} (blake3 {}, {} bytes){golden}",
                path.display(),
                blake3::hash(&bytes).to_hex(),
                bytes.len()
            ))?;
        }
        Command::Test {
            source,
            golden,
            json,
        } => test(&source, golden.as_deref(), json)?,
        Command::Inspect { component, json } => inspect(&component, json)?,
        Command::Publish {
            source,
            golden,
            no_golden,
            registry,
            json,
        } => {
            let golden = if no_golden {
                None
            } else {
                Some(golden_file(&source, golden.as_deref(), "publish")?)
            };
            publish(&source, golden.as_deref(), &registry.path(), json)?;
        }
        Command::List { registry, json } => list(&registry.path(), json)?,
        Command::Show {
            reference,
            registry,
            json,
        } => show(&reference, &registry.path(), json)?,
        Command::Verify { registry, json } => return verify(&registry.path(), json),
        Command::Tag {
            name,
            tag,
            reference,
            registry,
        } => {
            let tagged = registry::tag(&registry.path(), &name, &tag, &reference)?;
            let moved = match &tagged.previous {
                Some(previous) if *previous == tagged.record.hash => " (unchanged)".to_string(),
                Some(previous) => format!(" (was {})", &previous[..12]),
                None => String::new(),
            };
            super::print(&format!(
                "{}@{} -> {} (blake3 {}){moved}",
                tagged.name,
                tagged.tag,
                tagged.record.id(),
                tagged.record.hash
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The golden file a command runs: the one given, else the one that goes
/// with `source`. None at all is a usage error; `command` says which command
/// wanted them.
fn golden_file(source: &Path, given: Option<&Path>, command: &str) -> anyhow::Result<PathBuf> {
    if let Some(given) = given {
        return Ok(given.to_path_buf());
    }
    if !source.exists() {
        anyhow::bail!("{} does not exist", source.display());
    }
    if let Some(found) = registry::golden_file_for(source) {
        return Ok(found);
    }
    let looked = if source.is_dir() {
        format!(
            "{} does not exist",
            source.join(golden::FILE_NAME).display()
        )
    } else {
        format!(
            "neither {} nor {} exists",
            build::golden_beside(source).display(),
            source
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .join(golden::FILE_NAME)
                .display()
        )
    };
    let skip = if command == "publish" {
        ", or publish without them with --no-golden"
    } else {
        ""
    };
    Err(UsageError::new(format!(
        "no golden cases to {command} {} with: {looked}; write the cases there (JSON Lines: an event and the verdict it must get, one a line), name a file with --golden{skip}",
        source.display()
    ))
    .into())
}

/// The version of the JSON report of `tally rule test`; raised when a field
/// changes meaning or goes away.
const TEST_REPORT_SCHEMA_VERSION: u32 = 1;

/// What `tally rule test --json` prints.
#[derive(serde::Serialize)]
struct TestReport {
    schema_version: u32,
    /// `passed`, `failed` (a case failed) or `error` (nothing could be
    /// checked: the build failed, the golden file is malformed...).
    status: &'static str,
    source: PathBuf,
    rule: Option<TestedRule>,
    golden: Option<TestedCases>,
    /// The failed cases, in file order.
    failures: Vec<golden::Mismatch>,
    /// What went wrong, when `status` is `error`.
    error: Option<String>,
}

#[derive(serde::Serialize)]
struct TestedRule {
    name: String,
    version: String,
    sdk_version: String,
    hash: String,
    size: u64,
}

#[derive(serde::Serialize)]
struct TestedCases {
    file: PathBuf,
    cases: usize,
    passed: usize,
    failed: usize,
}

fn test(source: &Path, golden: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let file = golden_file(source, golden, "test")?;
    let mut report = TestReport {
        schema_version: TEST_REPORT_SCHEMA_VERSION,
        status: "error",
        source: source.to_path_buf(),
        rule: None,
        golden: None,
        failures: Vec::new(),
        error: None,
    };
    let outcome = run_cases(source, &file, &mut report);
    if let Err(err) = &outcome {
        report.error = Some(format!("{err:#}"));
    }
    if json {
        super::print(&serde_json::to_string_pretty(&report)?)?;
    }
    let rule = outcome?;
    let cases = report.golden.as_ref().map_or(0, |g| g.cases);
    if !report.failures.is_empty() {
        return Err(registry::RegistryError::GoldenFailed {
            rule: rule.label().to_string(),
            file,
            total: cases,
            failures: report.failures.iter().map(ToString::to_string).collect(),
            refused: "",
        }
        .into());
    }
    if !json {
        super::print(&format!(
            "{} passes all {cases} golden cases in {}",
            shown(&rule.label().to_string()),
            file.display()
        ))?;
    }
    Ok(())
}

/// Loads (or builds) the rule and runs the cases of `file`, filling in
/// `report` as it goes.
fn run_cases(source: &Path, file: &Path, report: &mut TestReport) -> anyhow::Result<Rule> {
    let cases = golden::read(file)?;
    let bytes = registry::component_bytes(source)?;
    let rule = Rule::from_bytes(source, &bytes, Limits::default())?;
    report.rule = Some(TestedRule {
        name: rule.info.name.clone(),
        version: rule.info.version.clone(),
        sdk_version: rule.info.sdk_version.clone(),
        hash: rule.hash.to_hex().to_string(),
        size: rule.size,
    });
    let failures = golden::check(&rule, &cases)?;
    report.golden = Some(TestedCases {
        file: file.to_path_buf(),
        cases: cases.len(),
        passed: cases.len() - failures.len(),
        failed: failures.len(),
    });
    report.status = if failures.is_empty() {
        "passed"
    } else {
        "failed"
    };
    report.failures = failures;
    Ok(rule)
}

/// The version of `tally rule inspect --json`'s report: raised only when a
/// field changes meaning or disappears.
const INSPECT_SCHEMA_VERSION: u32 = 1;

/// What `tally rule inspect --json` prints.
#[derive(serde::Serialize)]
struct InspectReport<'a> {
    /// [`INSPECT_SCHEMA_VERSION`].
    schema_version: u32,
    #[serde(flatten)]
    inspection: &'a rule::Inspection,
}

fn inspect(component: &Path, json: bool) -> anyhow::Result<()> {
    let inspection = rule::inspect(component)?;
    if json {
        let report = InspectReport {
            schema_version: INSPECT_SCHEMA_VERSION,
            inspection: &inspection,
        };
        super::print(&serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    let or_dash = |text: &Option<String>| {
        text.as_deref()
            .map_or_else(|| "-".to_string(), |text| shown(text).into_owned())
    };
    let list = |names: &[String]| {
        names
            .iter()
            .map(|name| shown(name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    super::print(&format!(
        "path     {}\nname     {}\nversion  {}\nsdk      {}\nblake3   {}\nsize     {} bytes\nworld    {}\nexports  {}\nimports  {}",
        inspection.path.display(),
        or_dash(&inspection.name),
        or_dash(&inspection.version),
        or_dash(&inspection.sdk_version),
        inspection.hash,
        inspection.size,
        inspection.world.unwrap_or("-"),
        list(&inspection.exports),
        if inspection.imports.is_empty() {
            "none".to_string()
        } else {
            list(&inspection.imports)
        },
    ))?;
    Ok(())
}

/// The version of `tally rule publish --json`'s report: raised only when a
/// field changes meaning or disappears.
const PUBLISH_SCHEMA_VERSION: u32 = 1;

/// What `tally rule publish --json` prints, whether the publish succeeded or
/// failed.
#[derive(serde::Serialize)]
struct PublishReport<'a> {
    /// [`PUBLISH_SCHEMA_VERSION`].
    schema_version: u32,
    status: Status,
    /// The error and its causes on one line (as printed on stderr after
    /// `error: `); null when the publish succeeded.
    error: Option<String>,
    /// What a publish that succeeded did: `published`, `already-published`
    /// (nothing changed) or `restored` (damaged files written again); null
    /// when it failed.
    outcome: Option<PublishStatus>,
    /// The source as named: a component or a rule crate directory.
    source: &'a Path,
    /// The component published (for a crate, where it was built); null when
    /// the publish failed.
    component: Option<&'a Path>,
    registry: &'a Path,
    /// The golden cases run (null with `--no-golden`).
    golden_file: Option<&'a Path>,
    /// The golden cases that passed; null when the publish failed or ran none.
    golden: Option<&'a golden::GoldenSummary>,
    /// The registry's record of the rule; null when the publish failed.
    record: Option<&'a registry::Record>,
}

fn publish(
    source: &Path,
    golden: Option<&Path>,
    registry: &Path,
    json: bool,
) -> anyhow::Result<()> {
    let outcome =
        registry::publish(source, registry, golden, Limits::default()).map_err(anyhow::Error::from);
    if json {
        let published = outcome.as_ref().ok();
        let report = PublishReport {
            schema_version: PUBLISH_SCHEMA_VERSION,
            status: if published.is_some() {
                Status::Succeeded
            } else {
                Status::Failed
            },
            error: outcome.as_ref().err().map(|err| format!("{err:#}")),
            outcome: published.map(|p| p.status),
            source,
            component: published.map(|p| p.source.as_path()),
            registry,
            golden_file: golden,
            golden: published.and_then(|p| p.golden.as_ref()),
            record: published.map(|p| &p.record),
        };
        let text = serde_json::to_string_pretty(&report)?;
        if outcome.is_ok() {
            super::print(&text)?;
        } else {
            super::print_report_of_failure(&text);
        }
    }
    let published = outcome?;
    if json {
        return Ok(());
    }
    let record = &published.record;
    let golden = match &published.golden {
        Some(g) => format!("; {} golden cases in {} pass", g.cases, g.file.display()),
        None => "; no golden cases (--no-golden)".to_string(),
    };
    let text = match published.status {
        PublishStatus::Published => format!(
            "published {} (blake3 {}, {} bytes) in {}{golden}",
            record.id(),
            record.hash,
            record.size,
            registry.display()
        ),
        PublishStatus::AlreadyPublished => format!(
            "{} is already published with these bytes (blake3 {}); nothing to do{golden}",
            record.id(),
            record.hash
        ),
        PublishStatus::Restored => format!(
            "{} is already published with these bytes (blake3 {}); its damaged or missing files were written again{golden}",
            record.id(),
            record.hash
        ),
    };
    super::print(&text)?;
    Ok(())
}

/// The version of `tally rule list --json`'s report: raised only when a field
/// changes meaning or disappears.
const LIST_SCHEMA_VERSION: u32 = 1;

/// What `tally rule list --json` prints: the published rules, in the order
/// of the text listing.
#[derive(serde::Serialize)]
struct ListReport<'a> {
    /// [`LIST_SCHEMA_VERSION`].
    schema_version: u32,
    rules: &'a [registry::Entry],
}

fn list(registry: &Path, json: bool) -> anyhow::Result<()> {
    let (entries, problems) = registry::Registry::open(registry)?.entries_and_problems()?;
    for problem in &problems {
        eprintln!("warning: {problem}");
    }
    if json {
        let report = ListReport {
            schema_version: LIST_SCHEMA_VERSION,
            rules: &entries,
        };
        super::print(&serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    if entries.is_empty() {
        super::print(&format!("no rules published in {}", registry.display()))?;
        return Ok(());
    }
    let rows: Vec<[String; 5]> = entries
        .iter()
        .map(|e| {
            [
                shown(&e.record.name).into_owned(),
                shown(&e.record.version).into_owned(),
                e.record.short_hash().to_string(),
                if e.tags.is_empty() {
                    "-".to_string()
                } else {
                    e.tags.join(",")
                },
                e.record.published_at.clone(),
            ]
        })
        .collect();
    let header = ["NAME", "VERSION", "HASH", "TAGS", "PUBLISHED"].map(String::from);
    let mut widths = [0usize; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let text: Vec<String> = std::iter::once(&header)
        .chain(&rows)
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, w)| format!("{cell:w$}"))
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect();
    super::print(&text.join("\n"))?;
    Ok(())
}

/// The version of `tally rule show --json`'s report: raised only when a field
/// changes meaning or disappears.
const SHOW_SCHEMA_VERSION: u32 = 1;

/// What `tally rule show` prints as JSON.
#[derive(serde::Serialize)]
struct Shown<'a> {
    /// [`SHOW_SCHEMA_VERSION`].
    schema_version: u32,
    reference: &'a str,
    kind: registry::RefKind,
    name: &'a str,
    version: &'a str,
    sdk_version: &'a str,
    hash: String,
    size: u64,
    world: &'static str,
    path: &'a Path,
    published: Option<&'a registry::Record>,
    tags: Vec<String>,
    compiled: String,
}

fn show(reference: &str, registry: &Path, json: bool) -> anyhow::Result<()> {
    let loaded = registry::load(reference, registry, Limits::default())?;
    let resolved = &loaded.resolved;
    // A file may also be published: say so.
    let on_file = match &resolved.origin {
        Origin::File { .. } => registry::Registry::open(registry)
            .ok()
            .and_then(|r| r.published(&resolved.hash).ok().flatten()),
        Origin::Registry { .. } => None,
    };
    let record = resolved.record().or(on_file.as_ref());
    let tags = match (record, registry::Registry::open(registry)) {
        (Some(record), Ok(r)) => r.tags_of(record).unwrap_or_default(),
        _ => Vec::new(),
    };
    let info = &loaded.rule.info;
    let shown = Shown {
        schema_version: SHOW_SCHEMA_VERSION,
        reference,
        kind: resolved.kind,
        name: &info.name,
        version: &info.version,
        sdk_version: &info.sdk_version,
        hash: resolved.hash.to_hex().to_string(),
        size: loaded.rule.size,
        world: WORLD,
        path: resolved.path(),
        published: record,
        tags,
        compiled: match &loaded.cache {
            Some(outcome) => outcome.to_string(),
            None => "compiled, not cached (no cache directory: set $TALLY_CODE_CACHE or $HOME)"
                .to_string(),
        },
    };
    if json {
        super::print(&serde_json::to_string_pretty(&shown)?)?;
        return Ok(());
    }
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            rule::shown(s).into_owned()
        }
    };
    super::print(&format!(
        "reference  {} ({})\nname       {}\nversion    {}\nsdk        {}\nblake3     {}\nsize       {} bytes\nworld      {}\npath       {}\npublished  {}\ntags       {}\ncompiled   {}",
        shown.reference,
        shown.kind,
        or_dash(shown.name),
        or_dash(shown.version),
        or_dash(shown.sdk_version),
        shown.hash,
        shown.size,
        shown.world,
        shown.path.display(),
        record.map_or_else(|| "no".to_string(), |r| r.published_at.clone()),
        if shown.tags.is_empty() {
            "-".to_string()
        } else {
            shown.tags.join(", ")
        },
        shown.compiled,
    ))?;
    Ok(())
}

/// The version of `tally rule verify --json`'s report: raised only when a
/// field changes meaning or disappears.
const VERIFY_SCHEMA_VERSION: u32 = 1;

/// What `tally rule verify --json` prints.
#[derive(serde::Serialize)]
struct VerifyReport<'a> {
    /// [`VERIFY_SCHEMA_VERSION`].
    schema_version: u32,
    #[serde(flatten)]
    verification: &'a registry::Verification,
}

fn verify(registry: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let report = registry::verify(registry)?;
    if json {
        super::print(&serde_json::to_string_pretty(&VerifyReport {
            schema_version: VERIFY_SCHEMA_VERSION,
            verification: &report,
        })?)?;
    } else {
        let mut lines: Vec<String> = report
            .blobs
            .iter()
            .map(|b| {
                format!(
                    "{:8}  {}  {}",
                    if b.ok { "ok" } else { "TAMPERED" },
                    b.hash,
                    b.rule.as_deref().unwrap_or("-")
                )
            })
            .collect();
        lines.extend(report.cache.iter().map(|c| {
            format!(
                "{:8}  {}  {}  compiled code {}{}",
                c.status.label(),
                c.rule_hash,
                c.rule
                    .as_deref()
                    .map_or_else(|| "-".to_string(), |r| rule::shown(r).into_owned()),
                c.path.file_name().map_or_else(
                    || c.path.display().to_string(),
                    |n| n.to_string_lossy().into_owned()
                ),
                match c.status {
                    registry::cache::EntryStatus::OtherEngine => " (for another engine)",
                    _ => "",
                }
            )
        }));
        lines.extend(report.notes.iter().map(|n| format!("note: {n}")));
        let skipped = report
            .cache
            .iter()
            .filter(|c| c.status == registry::cache::EntryStatus::OtherEngine)
            .count();
        lines.push(format!(
            "{} blobs checked, {} compiled-code entries checked{} in {}, {} problems",
            report.blobs.len(),
            report.cache.len() - skipped,
            if skipped == 0 {
                String::new()
            } else {
                format!(" ({skipped} for another engine skipped)")
            },
            registry.display(),
            report.problems.len()
        ));
        super::print(&lines.join("\n"))?;
    }
    if report.ok() {
        return Ok(ExitCode::SUCCESS);
    }
    let problems: Vec<String> = report.problems.iter().map(|p| format!("  {p}")).collect();
    anyhow::bail!(
        "the registry at {} failed verification:\n{}",
        registry.display(),
        problems.join("\n")
    )
}
