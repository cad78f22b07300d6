//! Building a rule crate into a component: `cargo build` for
//! `wasm32-unknown-unknown` (LTO, one codegen unit, panic=abort, SIMD, paths
//! remapped so that builds are reproducible), then the core
//! module is wrapped into a component with `wit-component`, using the interface
//! description the rules SDK embeds in it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The target rules are compiled for; it provides no imports at all.
pub const TARGET: &str = "wasm32-unknown-unknown";

/// What can go wrong while building a rule.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `cargo` could not be started or failed.
    #[error("building the rule crate at {dir} failed: {message}")]
    Cargo { dir: PathBuf, message: String },
    /// The crate built, but produced no WebAssembly library.
    #[error(
        "the rule crate at {dir} produced no .wasm library; does its Cargo.toml have `crate-type = [\"cdylib\"]`?"
    )]
    NoArtifact { dir: PathBuf },
    /// The module could not be made into a component.
    #[error(
        "turning {module} into a component failed: {message} (does the crate call `tally_rules_sdk::export_rule!`?)"
    )]
    Componentize { module: PathBuf, message: String },
    /// Reading or writing a file failed.
    #[error("cannot access {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Turns a core WebAssembly module built with the rules SDK into a component.
pub fn componentize(module: &[u8]) -> Result<Vec<u8>, String> {
    wit_component::ComponentEncoder::default()
        .module(module)
        .and_then(|encoder| encoder.validate(true).encode())
        .map_err(|e| format!("{e:#}"))
}

/// The compiler flags of every rule build, replacing any from the environment
/// so that the same sources give the same component on every machine:
/// - WebAssembly SIMD on: the SDK's checks of a batch are vectorized with it
///   (every WebAssembly engine of note supports it);
/// - a higher inlining threshold, so that a rule's `classify` is inlined into
///   the SDK's loop over the batch and the loads of event fields the rule
///   does not read are dropped;
/// - the paths of the workspace and of Cargo's home, which end up in panic
///   messages, replaced by fixed names.
fn rustflags(metadata: &serde_json::Value) -> String {
    let mut flags = vec![
        "-Ctarget-feature=+simd128".to_string(),
        "-Cllvm-args=-inline-threshold=1000".to_string(),
    ];
    if let Some(root) = metadata["workspace_root"].as_str() {
        flags.push(format!("--remap-path-prefix={root}=/rule"));
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")));
    if let Some(home) = home {
        flags.push(format!("--remap-path-prefix={}=/cargo", home.display()));
    }
    flags.join("\x1f")
}

/// Builds the rule crate in `dir` and writes the component to `out` (default:
/// `<crate name>.wasm` in the current directory). Returns the component's path.
pub fn build(dir: &Path, out: Option<&Path>) -> Result<PathBuf, BuildError> {
    let manifest = dir.join("Cargo.toml");
    let cargo_error = |message: String| BuildError::Cargo {
        dir: dir.to_path_buf(),
        message,
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());

    let metadata = Command::new(&cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(&manifest)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| cargo_error(format!("cannot run cargo: {e}")))?;
    if !metadata.status.success() {
        return Err(cargo_error("`cargo metadata` failed".into()));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&metadata.stdout)
        .map_err(|e| cargo_error(format!("unreadable `cargo metadata` output: {e}")))?;
    let manifest_abs = std::fs::canonicalize(&manifest).map_err(|source| BuildError::Io {
        path: manifest.clone(),
        source,
    })?;
    let package = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| {
            p["manifest_path"]
                .as_str()
                .is_some_and(|m| Path::new(m) == manifest_abs)
        })
        .ok_or_else(|| cargo_error(format!("no package at {}", manifest.display())))?;
    let name = package["name"].as_str().unwrap_or("rule").to_string();
    // A target directory of their own keeps the rule profile's settings from
    // invalidating the host's build.
    let target_dir =
        Path::new(metadata["target_directory"].as_str().unwrap_or("target")).join("rule-build");

    let output = Command::new(&cargo)
        .args(["build", "--release", "--lib", "--target", TARGET])
        .args([
            "--message-format",
            "json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--package")
        .arg(&name)
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort")
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "3")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags(&metadata))
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| cargo_error(format!("cannot run cargo: {e}")))?;
    if !output.status.success() {
        return Err(cargo_error(format!(
            "`cargo build --target {TARGET}` failed (is the target installed? `rustup target add {TARGET}`)"
        )));
    }
    let module = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| {
            m["reason"] == "compiler-artifact" && m["target"]["name"] == name.replace('-', "_")
        })
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str().map(PathBuf::from))
                .collect::<Vec<_>>()
        })
        .find(|f| f.extension().is_some_and(|e| e == "wasm"))
        .ok_or_else(|| BuildError::NoArtifact {
            dir: dir.to_path_buf(),
        })?;

    let bytes = std::fs::read(&module).map_err(|source| BuildError::Io {
        path: module.clone(),
        source,
    })?;
    let component = componentize(&bytes).map_err(|message| BuildError::Componentize {
        module: module.clone(),
        message,
    })?;
    let out = out.map_or_else(|| PathBuf::from(format!("{name}.wasm")), Path::to_path_buf);
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| BuildError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let tmp = out.with_extension("wasm.tmp");
    std::fs::write(&tmp, &component)
        .and_then(|()| std::fs::rename(&tmp, &out))
        .map_err(|source| BuildError::Io {
            path: out.clone(),
            source,
        })?;
    Ok(out)
}
