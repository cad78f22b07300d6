//! Building a rule crate into a component: `cargo build` for
//! `wasm32-unknown-unknown` (LTO, one codegen unit, panic=abort, overflow
//! checks, SIMD, paths remapped so that builds are reproducible), then the
//! core module's function names are stripped of their symbol hashes and the
//! module is wrapped into a component with `wit-component`, using the
//! interface description the rules SDK embeds in it.

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
    /// The module's name section could not be read.
    #[error("reading the function names of {module} failed: {message}")]
    Names { module: PathBuf, message: String },
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
/// - the paths that end up in panic messages replaced by fixed names: the
///   crate's workspace (`/rule`), Cargo's home (`/cargo`, where registry and
///   git dependencies are), and every path or git dependency outside the
///   workspace (`/deps/<name>-<version>`), so that neither the directory the
///   crate sits in nor where the SDK was checked out changes the bytes.
fn rustflags(metadata: &serde_json::Value) -> String {
    let mut flags = vec![
        "-Ctarget-feature=+simd128".to_string(),
        "-Cllvm-args=-inline-threshold=1000".to_string(),
    ];
    let mut remaps: Vec<(String, String)> = Vec::new();
    let root = metadata["workspace_root"].as_str();
    if let Some(root) = root {
        remaps.push((root.to_string(), "/rule".to_string()));
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")));
    if let Some(home) = home {
        remaps.push((home.display().to_string(), "/cargo".to_string()));
    }
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let local = match package["source"].as_str() {
            None => true,
            Some(source) => source.starts_with("git+"),
        };
        let dir = package["manifest_path"]
            .as_str()
            .and_then(|manifest| Path::new(manifest).parent());
        let (Some(dir), Some(name), Some(version)) =
            (dir, package["name"].as_str(), package["version"].as_str())
        else {
            continue;
        };
        if local && !root.is_some_and(|root| dir.starts_with(root)) {
            remaps.push((dir.display().to_string(), format!("/deps/{name}-{version}")));
        }
    }
    // rustc applies the last matching prefix: the most specific one last.
    remaps.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.cmp(b)));
    remaps.dedup();
    flags.extend(
        remaps
            .into_iter()
            .map(|(from, to)| format!("--remap-path-prefix={from}={to}")),
    );
    flags.join("\x1f")
}

/// Rewrites the `name` section of a core module so that no function name
/// carries a symbol hash: each name is demangled without it
/// (`tally_rules_sdk::batch::classify` instead of
/// `_ZN15tally_rules_sdk5batch8classify17h0123456789abcdefE`). The hashes
/// derive from where Cargo found each crate (the absolute path of a path
/// dependency outside the workspace), so without this the same sources built
/// against an SDK checked out elsewhere would differ in these names alone.
/// The names stay readable in backtraces; every other byte is kept as it is.
pub fn names_without_hashes(module: &[u8]) -> Result<Vec<u8>, String> {
    use wasm_encoder::reencode::{RoundtripReencoder, utils};
    use wasmparser::{KnownCustom, Name, Parser, Payload};

    let mut out = wasm_encoder::Module::new();
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.map_err(|e| e.to_string())?;
        if let Payload::Version { encoding, .. } = &payload
            && *encoding != wasmparser::Encoding::Module
        {
            return Err("it is not a core WebAssembly module".into());
        }
        let names = match &payload {
            Payload::CustomSection(reader) => match reader.as_known() {
                KnownCustom::Name(reader) => Some(reader),
                _ => None,
            },
            _ => None,
        };
        if let Some(reader) = names {
            let mut names = wasm_encoder::NameSection::new();
            for subsection in reader {
                match subsection.map_err(|e| e.to_string())? {
                    Name::Function(map) => {
                        let mut functions = wasm_encoder::NameMap::new();
                        for naming in map {
                            let naming = naming.map_err(|e| e.to_string())?;
                            let name = format!("{:#}", rustc_demangle::demangle(naming.name));
                            functions.append(naming.index, &name);
                        }
                        names.functions(&functions);
                    }
                    other => {
                        utils::parse_custom_name_subsection(
                            &mut RoundtripReencoder,
                            &mut names,
                            other,
                        )
                        .map_err(|e| e.to_string())?;
                    }
                }
            }
            out.section(&names);
        } else if let Some((id, range)) = payload.as_section() {
            out.section(&wasm_encoder::RawSection {
                id,
                data: &module[range],
            });
        }
    }
    Ok(out.finish())
}

/// What [`build`] wrote.
#[derive(Debug, Clone)]
pub struct Built {
    /// The component.
    pub component: PathBuf,
    /// The crate's golden cases, copied beside the component as
    /// `<component stem>.golden.jsonl`, when the crate has `golden.jsonl`.
    pub golden: Option<PathBuf>,
}

/// The golden file that goes with a component: `x.wasm` → `x.golden.jsonl`.
pub fn golden_beside(component: &Path) -> PathBuf {
    component.with_extension("golden.jsonl")
}

/// Builds the rule crate in `dir` and writes the component to `out` (default:
/// `<crate name>.wasm` in the current directory), and the crate's
/// `golden.jsonl`, if it has one, beside it (see [`golden_beside`]), so that
/// the component travels with its golden cases.
pub fn build(dir: &Path, out: Option<&Path>) -> Result<Built, BuildError> {
    let manifest = dir.join("Cargo.toml");
    let cargo_error = |message: String| BuildError::Cargo {
        dir: dir.to_path_buf(),
        message,
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());

    // Cargo runs in the crate's directory, so that its `rust-toolchain.toml`
    // and `.cargo/config.toml` apply wherever `tally` is run from.
    let manifest_abs = std::fs::canonicalize(&manifest).map_err(|source| BuildError::Io {
        path: manifest.clone(),
        source,
    })?;
    let crate_dir = manifest_abs.parent().unwrap_or(dir).to_path_buf();
    // With dependencies: where the path and git dependencies are is needed
    // to remap their paths.
    let metadata = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(&manifest_abs)
        .current_dir(&crate_dir)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| cargo_error(format!("cannot run cargo: {e}")))?;
    if !metadata.status.success() {
        return Err(cargo_error("`cargo metadata` failed".into()));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&metadata.stdout)
        .map_err(|e| cargo_error(format!("unreadable `cargo metadata` output: {e}")))?;
    let package = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| {
            p["source"].is_null()
                && p["manifest_path"]
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
        .arg(&manifest_abs)
        .current_dir(&crate_dir)
        .arg("--package")
        .arg(&name)
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort")
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "3")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        // Arithmetic overflow panics (and so traps) in the component as it
        // does in `cargo test`, instead of wrapping into a wrong amount.
        .env("CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS", "true")
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
    let bytes = names_without_hashes(&bytes).map_err(|message| BuildError::Names {
        module: module.clone(),
        message,
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
    write_atomic(&out, &component)?;
    let golden_source = dir.join(GOLDEN_FILE);
    let golden = if golden_source.is_file() {
        let golden = golden_beside(&out);
        let text = std::fs::read(&golden_source).map_err(|source| BuildError::Io {
            path: golden_source.clone(),
            source,
        })?;
        write_atomic(&golden, &text)?;
        Some(golden)
    } else {
        None
    };
    Ok(Built {
        component: out,
        golden,
    })
}

/// The golden file of a rule crate, in its directory.
const GOLDEN_FILE: &str = "golden.jsonl";

/// Writes `bytes` to `path` under a temporary name first, then renames it.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| BuildError::Io {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function_names(module: &[u8]) -> Vec<String> {
        let mut names = Vec::new();
        for payload in wasmparser::Parser::new(0).parse_all(module) {
            if let wasmparser::Payload::CustomSection(reader) = payload.unwrap()
                && let wasmparser::KnownCustom::Name(reader) = reader.as_known()
            {
                for subsection in reader {
                    if let wasmparser::Name::Function(map) = subsection.unwrap() {
                        names.extend(map.into_iter().map(|n| n.unwrap().name.to_string()));
                    }
                }
            }
        }
        names
    }

    /// The sections other than `name`, as (id, bytes).
    fn other_sections(module: &[u8]) -> Vec<(u8, Vec<u8>)> {
        wasmparser::Parser::new(0)
            .parse_all(module)
            .filter_map(|payload| {
                let payload = payload.unwrap();
                if let wasmparser::Payload::CustomSection(reader) = &payload
                    && reader.name() == "name"
                {
                    return None;
                }
                payload
                    .as_section()
                    .map(|(id, range)| (id, module[range].to_vec()))
            })
            .collect()
    }

    #[test]
    fn function_names_lose_their_symbol_hashes_and_nothing_else_changes() {
        let module = wat::parse_str(
            r#"(module $m
                 (func $_ZN15tally_rules_sdk5batch8classify17h0123456789abcdefE (param $x i32) (result i32)
                   local.get $x)
                 (func $_ZN15tally_rules_sdk5batch8classify17hfedcba9876543210E (result i32)
                   i32.const 7)
                 (func $plain_name)
                 (global $__stack_pointer (mut i32) (i32.const 0))
                 (export "f" (func 0))
                 (@custom "component-type" "x"))"#,
        )
        .unwrap();
        let rewritten = names_without_hashes(&module).unwrap();
        assert_eq!(
            function_names(&rewritten),
            [
                "tally_rules_sdk::batch::classify",
                "tally_rules_sdk::batch::classify",
                "plain_name"
            ]
        );
        assert_eq!(other_sections(&rewritten), other_sections(&module));
        // Module, local and global names are kept.
        let text = String::from_utf8_lossy(&rewritten);
        for kept in ["$m", "$x", "__stack_pointer"] {
            let kept = kept.trim_start_matches('$');
            assert!(text.contains(kept), "{kept} was dropped");
        }
        wasmparser::Validator::new()
            .validate_all(&rewritten)
            .unwrap();
        // Idempotent, and a module without names comes back as it was.
        assert_eq!(names_without_hashes(&rewritten).unwrap(), rewritten);
        let bare = wat::parse_str("(module (func (export \"f\")))").unwrap();
        let bare = other_sections(&bare)
            .into_iter()
            .fold(wasm_encoder::Module::new(), |mut m, (id, data)| {
                m.section(&wasm_encoder::RawSection { id, data: &data });
                m
            })
            .finish();
        assert_eq!(names_without_hashes(&bare).unwrap(), bare);
        assert!(names_without_hashes(b"\0asm\x0d\0\x01\0").is_err());
        assert!(names_without_hashes(b"not wasm").is_err());
    }

    #[test]
    fn paths_outside_the_workspace_are_remapped_most_specific_last() {
        let metadata = serde_json::json!({
            "workspace_root": "/home/ann/my-rule",
            "packages": [
                {"name": "my-rule", "version": "1.0.0", "source": null,
                 "manifest_path": "/home/ann/my-rule/Cargo.toml"},
                {"name": "helper", "version": "0.1.0", "source": null,
                 "manifest_path": "/home/ann/my-rule/helper/Cargo.toml"},
                {"name": "tally-rules-sdk", "version": "0.2.0", "source": null,
                 "manifest_path": "/src/tally/rules-sdk/Cargo.toml"},
                {"name": "tally-rules-sdk", "version": "0.2.0",
                 "source": "git+https://example.org/tally?rev=abc#abc",
                 "manifest_path": "/cargo-home/git/checkouts/tally-1/abc/rules-sdk/Cargo.toml"},
                {"name": "wit-bindgen", "version": "0.61.1",
                 "source": "registry+https://github.com/rust-lang/crates.io-index",
                 "manifest_path": "/cargo-home/registry/src/x/wit-bindgen-0.61.1/Cargo.toml"}
            ]
        });
        let flags = rustflags(&metadata);
        let remaps: Vec<&str> = flags
            .split('\x1f')
            .filter_map(|f| f.strip_prefix("--remap-path-prefix="))
            .collect();
        let sdk = "/src/tally/rules-sdk=/deps/tally-rules-sdk-0.2.0";
        let git = "/cargo-home/git/checkouts/tally-1/abc/rules-sdk=/deps/tally-rules-sdk-0.2.0";
        let root = "/home/ann/my-rule=/rule";
        for remap in [sdk, git, root] {
            assert!(remaps.contains(&remap), "{remap} missing from {remaps:?}");
        }
        assert!(!remaps.iter().any(|r| r.contains("helper")), "{remaps:?}");
        assert!(
            !remaps.iter().any(|r| r.contains("wit-bindgen")),
            "{remaps:?}"
        );
        let lengths: Vec<usize> = remaps
            .iter()
            .map(|r| r.split('=').next().unwrap().len())
            .collect();
        assert!(lengths.is_sorted(), "{remaps:?}");
        assert!(flags.starts_with("-Ctarget-feature=+simd128\x1f"));
    }
}
