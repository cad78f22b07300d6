//! `tally rule build` and `tally rule inspect`.

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use tally::rule::{self, build};

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
        Command::Inspect { component, json } => {
            let inspection = rule::inspect(&component)?;
            if json {
                super::print(&serde_json::to_string_pretty(&inspection)?)?;
            } else {
                let none = || "-".to_string();
                super::print(&format!(
                    "path     {}\nname     {}\nversion  {}\nsdk      {}\nblake3   {}\nsize     {} bytes\nworld    {}\nexports  {}\nimports  {}",
                    inspection.path.display(),
                    inspection.name.clone().unwrap_or_else(none),
                    inspection.version.clone().unwrap_or_else(none),
                    inspection.sdk_version.clone().unwrap_or_else(none),
                    inspection.hash,
                    inspection.size,
                    inspection.world.unwrap_or("-"),
                    inspection.exports.join(", "),
                    if inspection.imports.is_empty() {
                        "none".to_string()
                    } else {
                        inspection.imports.join(", ")
                    },
                ))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
