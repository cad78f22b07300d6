//! `tally rule`: build and inspect rule components, and the rule registry
//! (`publish`, `list`, `show`, `verify`, `tag`).

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tally::registry::{self, Origin, PublishStatus};
use tally::rule::{self, Limits, WORLD, build, shown};

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
    /// Compile a rule crate for wasm32-unknown-unknown and turn it into a component.
    Build {
        /// The rule crate's directory (holding its Cargo.toml).
        dir: PathBuf,
        /// Where to write the component (default: <crate name>.wasm).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Show a component's name, version, hash, world and imports; fails if it
    /// imports anything or does not implement the rule world.
    Inspect {
        /// The component (.wasm).
        component: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Publish a rule into the registry: validate it, run its golden cases,
    /// store it under its blake3 hash.
    Publish {
        /// A component (.wasm) or a rule crate directory (built first).
        source: PathBuf,
        /// The golden cases to check (default: golden.jsonl in the crate
        /// directory, or <component>.golden.jsonl, else golden.jsonl, next to
        /// the component).
        #[arg(long, value_name = "FILE")]
        golden: Option<PathBuf>,
        #[command(flatten)]
        registry: RegistryArg,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the published rules: name, version, hash, tags, publish time.
    List {
        #[command(flatten)]
        registry: RegistryArg,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Resolve a reference (path, hash or hash prefix, name@version, name@tag),
    /// check the bytes against the hash, load the rule and describe it.
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
    Verify {
        #[command(flatten)]
        registry: RegistryArg,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Point name@tag at a published version of the rule (moving it if it
    /// exists), e.g. `tally rule tag creator-pay prod 5c78a1`.
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
            let path = build::build(&dir, out.as_deref())?;
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            super::print(&format!(
                "built {} (blake3 {}, {} bytes)",
                path.display(),
                blake3::hash(&bytes).to_hex(),
                bytes.len()
            ))?;
        }
        Command::Inspect { component, json } => inspect(&component, json)?,
        Command::Publish {
            source,
            golden,
            registry,
            json,
        } => publish(&source, golden.as_deref(), &registry.path(), json)?,
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

fn inspect(component: &Path, json: bool) -> anyhow::Result<()> {
    let inspection = rule::inspect(component)?;
    if json {
        super::print(&serde_json::to_string_pretty(&inspection)?)?;
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

fn publish(
    source: &Path,
    golden: Option<&Path>,
    registry: &Path,
    json: bool,
) -> anyhow::Result<()> {
    let published = registry::publish(source, registry, golden, Limits::default())?;
    if json {
        super::print(&serde_json::to_string_pretty(&published)?)?;
        return Ok(());
    }
    let record = &published.record;
    let text = match published.status {
        PublishStatus::Published => {
            let golden = match &published.golden {
                Some(g) => format!("; {} golden cases in {} pass", g.cases, g.file.display()),
                None => "; no golden cases".to_string(),
            };
            format!(
                "published {} (blake3 {}, {} bytes) in {}{golden}",
                record.id(),
                record.hash,
                record.size,
                registry.display()
            )
        }
        PublishStatus::AlreadyPublished => format!(
            "{} is already published with these bytes (blake3 {}); nothing to do",
            record.id(),
            record.hash
        ),
        PublishStatus::Restored => format!(
            "{} is already published with these bytes (blake3 {}); its damaged or missing files were written again",
            record.id(),
            record.hash
        ),
    };
    super::print(&text)?;
    Ok(())
}

fn list(registry: &Path, json: bool) -> anyhow::Result<()> {
    let (entries, problems) = registry::Registry::open(registry)?.entries_and_problems()?;
    for problem in &problems {
        eprintln!("warning: {problem}");
    }
    if json {
        super::print(&serde_json::to_string_pretty(&entries)?)?;
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

/// What `tally rule show` prints as JSON.
#[derive(serde::Serialize)]
struct Shown<'a> {
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
            None => "compiled (files are not cached)".to_string(),
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

fn verify(registry: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let report = registry::verify(registry)?;
    if json {
        super::print(&serde_json::to_string_pretty(&report)?)?;
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
