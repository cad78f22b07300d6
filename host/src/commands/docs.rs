//! `tally completions` and `tally man`: shell completions and man pages,
//! generated from the command line's own definition.

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(clap::Args)]
pub struct ManArgs {
    /// The directory the pages are written into (created if missing):
    /// `tally.1`, `tally-run.1` and one per command.
    #[arg(long)]
    out: PathBuf,
}

pub fn completions(args: CompletionsArgs, mut command: clap::Command) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "tally", &mut script);
    super::print(&String::from_utf8_lossy(&script))?;
    Ok(ExitCode::SUCCESS)
}

pub fn man(args: ManArgs, command: clap::Command) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    clap_mangen::generate_to(command, &args.out)
        .with_context(|| format!("writing man pages into {}", args.out.display()))?;
    let mut pages: Vec<String> = std::fs::read_dir(&args.out)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("tally") && name.ends_with(".1"))
        .collect();
    pages.sort();
    super::print(&format!(
        "wrote {} man page(s) into {}: {}",
        pages.len(),
        args.out.display(),
        pages.join(", ")
    ))?;
    Ok(ExitCode::SUCCESS)
}
