//! Subcommands of the `tally` binary, one module each.

pub mod compare;
pub mod explain;
pub mod generate;
pub mod lineage;
pub mod log;
pub mod rule;
pub mod run;
pub mod verify;

use std::io::Write;

/// Loads the rule a `--rule` argument names: a path, a full or short hash,
/// `name@version` or `name@tag` (see `tally rule`). Its bytes are always
/// checked against their hash; that hash is what gets stamped.
pub fn load_rule(
    reference: &str,
    registry: Option<&std::path::Path>,
    limits: tally::rule::Limits,
) -> anyhow::Result<tally::rule::Rule> {
    let registry = tally::registry::location(registry);
    Ok(tally::registry::load_rule(reference, &registry, limits)?)
}

/// Whether an error is only a closed stdout (for example `tally ... | head`).
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Prints to stdout, reporting a closed pipe as an error instead of panicking.
pub fn print(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()
}
