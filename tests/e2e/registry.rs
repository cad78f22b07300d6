//! The rule registry through the real CLI: publishing (golden cases, the same
//! bytes twice, different bytes under a published version), resolving every
//! form of reference, moving tags, detecting a modified blob, and rebuilding
//! a corrupt compiled-code cache entry.
//!
//! Every command gets `--registry` explicitly, except in the test of the
//! default location, so `$TALLY_REGISTRY` in the environment changes nothing;
//! the cache key is a file in the test's directory (`$TALLY_CACHE_KEY`).

use crate::common::{self, s, snapshot};
use crate::sandbox::component_with;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

/// A temporary directory with a registry path inside it (not created).
struct Reg {
    dir: TempDir,
    path: PathBuf,
}

impl Reg {
    fn new() -> Reg {
        let dir = TempDir::new().expect("temp dir");
        let path = dir.path().join("registry");
        Reg { dir, path }
    }

    /// `tally <args> --registry <path>`, with a cache key of its own.
    fn tally(&self, args: &[&str]) -> Output {
        Command::new(common::tally_bin())
            .args(args)
            .args(["--registry", s(&self.path)])
            .env("TALLY_CACHE_KEY", self.dir.path().join("cache.key"))
            .output()
            .expect("tally runs")
    }

    /// `tally <args> --registry <path>`, which must succeed; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.tally(args);
        assert!(
            out.status.success(),
            "tally {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// `tally <args> --registry <path>`, which must fail with exit code 1
    /// (an `error:` line, no panic); returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.tally(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(1),
            "tally {args:?} should fail with exit code 1:\nstdout: {}\nstderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            stderr.starts_with("error: ") && !stderr.contains("panicked"),
            "tally {args:?}: unexpected stderr: {stderr}"
        );
        stderr
    }

    /// `tally rule show <reference> --json`.
    fn show(&self, reference: &str) -> serde_json::Value {
        let out = self.ok(&["rule", "show", reference, "--json"]);
        serde_json::from_str(&out).expect("show JSON")
    }

    /// A copy of a reference rule with its golden cases beside it, as
    /// `<dir>/<name>.wasm` and `<dir>/<name>.golden.jsonl`.
    fn reference_rule(&self, name: &str) -> PathBuf {
        let wasm = self.dir.path().join(format!("{name}.wasm"));
        std::fs::copy(common::rule(name), &wasm).expect("copy rule");
        std::fs::copy(
            common::root().join("rules").join(name).join("golden.jsonl"),
            self.dir.path().join(format!("{name}.golden.jsonl")),
        )
        .expect("copy golden file");
        wasm
    }

    /// Publishes both reference rules with their golden cases; returns their
    /// hashes (v1, v2).
    fn publish_reference_rules(&self) -> (String, String) {
        let mut hashes = Vec::new();
        for (name, cases) in [("creator-pay-v1", 14), ("creator-pay-v2", 15)] {
            let wasm = self.reference_rule(name);
            let out = self.ok(&["rule", "publish", s(&wasm)]);
            let hash = common::blake3_hex(&wasm);
            assert!(out.starts_with("published creator-pay@"), "{out}");
            assert!(out.contains(&hash), "{out}");
            assert!(out.contains(&format!("{cases} golden cases")), "{out}");
            hashes.push(hash);
        }
        (hashes.remove(0), hashes.remove(0))
    }

    fn blob(&self, hash: &str) -> PathBuf {
        self.path.join("blobs").join(format!("{hash}.wasm"))
    }

    /// The compiled-code cache entry of a rule: (code, sidecar).
    fn cache_entry(&self, hash: &str) -> (PathBuf, PathBuf) {
        let mut code = common::cache_code(&self.path.join("cache"), hash);
        assert_eq!(code.len(), 1, "one cache entry for {hash}: {code:?}");
        let code = code.remove(0);
        let sidecar = PathBuf::from(format!("{}.json", code.display()));
        (code, sidecar)
    }
}

/// The hand-written `constant@0.1.0` rule (tests/fixtures/rules/constant.wat)
/// at `<dir>/<file>`, with `note` appended as a custom section when given: the
/// same rule and metadata, different bytes.
fn constant(dir: &Path, file: &str, note: Option<&str>) -> PathBuf {
    let mut bytes =
        wat::parse_file(common::fixture("rules/constant.wat")).expect("constant.wat assembles");
    if let Some(note) = note {
        // A custom section: id 0, size, then a name and the payload.
        let name = b"note";
        let size = 1 + name.len() + note.len();
        assert!(size < 128, "one-byte LEB128 sizes only");
        bytes.extend([0, size as u8, name.len() as u8]);
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(note.as_bytes());
    }
    let path = dir.join(file);
    std::fs::write(&path, bytes).expect("write component");
    path
}

/// A golden case for the constant rule, expecting `expect`.
fn constant_case(id: &str, expect: &str) -> String {
    format!(
        r#"{{"case":"anything","event_id":"{id}","occurred_at":"2026-05-01T10:00:00Z","ingested_at":"2026-05-01T10:00:01Z","creator_id":"cr-1","template_id":"tpl-1","content_kind":"template","action":"use","user_tier":"pro","country":"US","expect":{expect}}}"#
    )
}

#[test]
fn publish_and_resolve_by_every_form_of_reference() {
    let reg = Reg::new();
    let (v1, v2) = reg.publish_reference_rules();
    assert_ne!(v1, v2);

    // The layout is plain files named by hash, name@version.
    for hash in [&v1, &v2] {
        assert_eq!(common::blake3_hex(&reg.blob(hash)), *hash);
        let record: serde_json::Value = serde_json::from_slice(
            &std::fs::read(reg.path.join("rules").join(format!("{hash}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(record["hash"], hash.as_str());
        assert_eq!(record["world"], "tally:rules/rule@1.0.0");
        assert_eq!(record["name"], "creator-pay");
        assert!(
            record["sdk_version"]
                .as_str()
                .is_some_and(|v| !v.is_empty())
        );
        let published = record["published_at"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(published).is_ok() && published.ends_with('Z'),
            "{published}"
        );
    }
    let claim = std::fs::read_to_string(reg.path.join("versions/creator-pay@1.0.0")).unwrap();
    assert_eq!(claim.trim(), v1);

    // Every form of reference resolves to the right rule.
    let v1_path = reg.dir.path().join("creator-pay-v1.wasm");
    let cases = [
        (s(&v1_path).to_string(), "path", &v1, "1.0.0"),
        (v1.clone(), "hash", &v1, "1.0.0"),
        (v2[..8].to_string(), "hash", &v2, "2.0.0"),
        (v2[..6].to_ascii_uppercase(), "hash", &v2, "2.0.0"),
        ("creator-pay@1.0.0".to_string(), "version", &v1, "1.0.0"),
        ("creator-pay@2.0.0".to_string(), "version", &v2, "2.0.0"),
    ];
    for (reference, kind, hash, version) in &cases {
        let shown = reg.show(reference);
        assert_eq!(shown["kind"], *kind, "{reference}");
        assert_eq!(shown["hash"], hash.as_str(), "{reference}");
        assert_eq!(shown["name"], "creator-pay", "{reference}");
        assert_eq!(shown["version"], *version, "{reference}");
        // A published file is recognised as such.
        assert_eq!(shown["published"]["hash"], hash.as_str(), "{reference}");
    }

    // A tag.
    let out = reg.ok(&["rule", "tag", "creator-pay", "prod", &v1[..10]]);
    common::assert_mentions(&out, &["creator-pay@prod -> creator-pay@1.0.0", &v1]);
    let shown = reg.show("creator-pay@prod");
    assert_eq!(shown["kind"], "tag");
    assert_eq!(shown["hash"], v1.as_str());
    assert_eq!(shown["tags"], serde_json::json!(["prod"]));

    // The text forms.
    let text = reg.ok(&["rule", "show", "creator-pay@prod"]);
    common::assert_mentions(
        &text,
        &[
            "creator-pay@prod (tag)",
            "version    1.0.0",
            &v1,
            "tags       prod",
        ],
    );
    let list = reg.ok(&["rule", "list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    common::assert_mentions(lines[1], &["creator-pay", "1.0.0", &v1[..12], "prod"]);
    common::assert_mentions(lines[2], &["creator-pay", "2.0.0", &v2[..12]]);
    let list: serde_json::Value =
        serde_json::from_str(&reg.ok(&["rule", "list", "--json"])).unwrap();
    assert_eq!(list["schema_version"], 1);
    let list = &list["rules"];
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["version"], "1.0.0");
    assert_eq!(list[0]["tags"], serde_json::json!(["prod"]));
    assert_eq!(list[1]["hash"], v2.as_str());
    assert_eq!(list[1]["tags"], serde_json::json!([]));

    // References that resolve to nothing say why.
    let err = reg.fails(&["rule", "show", "creator-pay@3.0.0"]);
    common::assert_mentions(
        &err,
        &["creator-pay@3.0.0 is not published", "1.0.0, 2.0.0"],
    );
    let err = reg.fails(&["rule", "show", "creator-pay@staging"]);
    common::assert_mentions(&err, &["no tag creator-pay@staging"]);
    let err = reg.fails(&["rule", "show", "abc"]);
    common::assert_mentions(&err, &["not a rule reference"]);
    let unknown = if v1.starts_with("ffffff") || v2.starts_with("ffffff") {
        "eeeeee"
    } else {
        "ffffff"
    };
    let err = reg.fails(&["rule", "show", unknown]);
    common::assert_mentions(&err, &["no rule published", unknown]);
    let err = reg.fails(&["rule", "show", "missing/rule.wasm"]);
    common::assert_mentions(&err, &["missing/rule.wasm does not exist"]);

    // An ambiguous prefix lists its candidates. Two real hashes sharing six
    // hex digits take millions of tries to find, so a second claim whose hash
    // shares exactly six digits with v1 is planted by hand.
    let seventh = if &v1[6..7] == "0" { "1" } else { "0" };
    let twin = format!("{}{seventh}{}", &v1[..6], &v1[7..]);
    std::fs::write(reg.path.join("versions/other@1.0.0"), format!("{twin}\n")).unwrap();
    let err = reg.fails(&["rule", "show", &v1[..6]]);
    common::assert_mentions(
        &err,
        &[
            "ambiguous",
            &format!("{v1} (creator-pay@1.0.0)"),
            &format!("{twin} (other@1.0.0)"),
        ],
    );
    // One more digit settles it.
    assert_eq!(reg.show(&v1[..7])["hash"], v1.as_str());
}

#[test]
fn a_path_needs_no_registry() {
    let reg = Reg::new();
    let wasm = common::rule("creator-pay-v1");
    let shown = reg.show(s(&wasm));
    assert_eq!(shown["kind"], "path");
    assert_eq!(shown["hash"], common::blake3_hex(&wasm).as_str());
    assert_eq!(shown["published"], serde_json::Value::Null);
    assert!(!reg.path.exists(), "showing a file created no registry");

    // Anything but a path needs the registry, and says where it looked.
    let err = reg.fails(&["rule", "show", "creator-pay@1.0.0"]);
    common::assert_mentions(&err, &["no rule registry at", s(&reg.path), "--registry"]);
}

#[test]
fn tags_move_and_only_point_at_versions_of_their_name() {
    let reg = Reg::new();
    let (v1, v2) = reg.publish_reference_rules();

    reg.ok(&["rule", "tag", "creator-pay", "prod", &v1]);
    assert_eq!(reg.show("creator-pay@prod")["version"], "1.0.0");

    let out = reg.ok(&["rule", "tag", "creator-pay", "prod", "creator-pay@2.0.0"]);
    common::assert_mentions(
        &out,
        &[
            "creator-pay@prod -> creator-pay@2.0.0",
            &v2,
            &format!("was {}", &v1[..12]),
        ],
    );
    let shown = reg.show("creator-pay@prod");
    assert_eq!(shown["version"], "2.0.0");
    assert_eq!(shown["hash"], v2.as_str());
    let moved = std::fs::read_to_string(reg.path.join("tags/creator-pay@prod")).unwrap();
    assert_eq!(moved.trim(), v2);
    assert_eq!(reg.show("creator-pay@1.0.0")["tags"], serde_json::json!([]));

    // Back again, by tag.
    reg.ok(&["rule", "tag", "creator-pay", "stable", "creator-pay@prod"]);
    reg.ok(&["rule", "tag", "creator-pay", "prod", &v1[..8]]);
    assert_eq!(reg.show("creator-pay@prod")["hash"], v1.as_str());
    assert_eq!(reg.show("creator-pay@stable")["hash"], v2.as_str());

    // A tag only points at a published version of its own name.
    let other = constant(reg.dir.path(), "constant.wasm", None);
    reg.ok(&["rule", "publish", s(&other), "--no-golden"]);
    let constant_hash = common::blake3_hex(&other);
    let err = reg.fails(&["rule", "tag", "creator-pay", "prod", &constant_hash]);
    common::assert_mentions(
        &err,
        &["that rule is constant@0.1.0, not a version of creator-pay"],
    );
    let unpublished = constant(reg.dir.path(), "unpublished.wasm", Some("x"));
    let err = reg.fails(&["rule", "tag", "constant", "prod", s(&unpublished)]);
    common::assert_mentions(
        &err,
        &["is not published", &common::blake3_hex(&unpublished)],
    );
    let err = reg.fails(&["rule", "tag", "creator-pay", "1.0.1", &v1]);
    common::assert_mentions(&err, &["not a valid tag"]);
    assert_eq!(reg.show("creator-pay@prod")["hash"], v1.as_str());
}

#[test]
fn a_modified_blob_is_reported_and_never_loaded() {
    let reg = Reg::new();
    let (v1, v2) = reg.publish_reference_rules();
    reg.ok(&["rule", "tag", "creator-pay", "prod", &v1]);
    let out = reg.ok(&["rule", "verify"]);
    common::assert_mentions(&out, &["2 blobs checked", "0 problems"]);
    // Compile it once, so a cache entry exists for the original bytes.
    reg.show("creator-pay@1.0.0");

    let blob = reg.blob(&v1);
    let mut bytes = std::fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&blob, &bytes).unwrap();

    let out = reg.tally(&["rule", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    common::assert_mentions(&stdout, &["TAMPERED", &v1, "1 problems", &v2]);
    common::assert_mentions(
        &stderr,
        &[
            "failed verification",
            s(&blob),
            "TAMPERED",
            "(creator-pay@1.0.0)",
        ],
    );

    // Every way to reach it refuses it, even with its compiled code cached.
    for reference in [
        v1.as_str(),
        &v1[..8],
        "creator-pay@1.0.0",
        "creator-pay@prod",
    ] {
        let err = reg.fails(&["rule", "show", reference]);
        common::assert_mentions(
            &err,
            &[s(&blob), "does not match its hash", "will not be loaded"],
        );
    }
    let err = reg.fails(&["rule", "tag", "creator-pay", "canary", &v1]);
    common::assert_mentions(&err, &["does not match its hash"]);
    // The other rule is fine.
    assert_eq!(reg.show("creator-pay@2.0.0")["hash"], v2.as_str());

    // Publishing the original again restores the blob.
    let out = reg.ok(&["rule", "publish", s(&common::rule("creator-pay-v1"))]);
    common::assert_mentions(&out, &["already published", "written again"]);
    reg.ok(&["rule", "verify"]);
    assert_eq!(reg.show("creator-pay@prod")["hash"], v1.as_str());
}

#[test]
fn publishing_the_same_bytes_twice_is_a_no_op() {
    let reg = Reg::new();
    let wasm = reg.reference_rule("creator-pay-v1");
    let first = reg.ok(&["rule", "publish", s(&wasm)]);
    assert!(first.starts_with("published creator-pay@1.0.0"), "{first}");
    let before = snapshot(&reg.path);
    let second = reg.ok(&["rule", "publish", s(&wasm)]);
    common::assert_mentions(
        &second,
        &[
            "creator-pay@1.0.0 is already published",
            &common::blake3_hex(&wasm),
            "nothing to do",
        ],
    );
    let json: serde_json::Value =
        serde_json::from_str(&reg.ok(&["rule", "publish", s(&wasm), "--json"])).unwrap();
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["status"], "succeeded");
    assert_eq!(json["outcome"], "already-published");
    assert!(
        snapshot(&reg.path) == before,
        "a repeated publish changed the registry"
    );
}

#[test]
fn different_bytes_under_a_published_version_are_refused() {
    let reg = Reg::new();
    let a = constant(reg.dir.path(), "a.wasm", None);
    let b = constant(reg.dir.path(), "b.wasm", Some("a different build"));
    let (hash_a, hash_b) = (common::blake3_hex(&a), common::blake3_hex(&b));
    assert_ne!(hash_a, hash_b);
    // Both are valid rules with the same metadata.
    for path in [&a, &b] {
        let shown = reg.show(s(path));
        assert_eq!(
            (shown["name"].as_str(), shown["version"].as_str()),
            (Some("constant"), Some("0.1.0"))
        );
    }

    reg.ok(&["rule", "publish", s(&a), "--no-golden"]);
    let before = snapshot(&reg.path);
    let err = reg.fails(&["rule", "publish", s(&b), "--no-golden"]);
    common::assert_mentions(
        &err,
        &[
            "constant@0.1.0 is already published with different bytes",
            &hash_a,
            &hash_b,
            "new version",
        ],
    );
    assert!(
        snapshot(&reg.path) == before,
        "a refused publish changed the registry"
    );
    assert_eq!(reg.show("constant@0.1.0")["hash"], hash_a.as_str());
}

#[test]
fn golden_cases_gate_publishing() {
    let reg = Reg::new();
    let wasm = constant(reg.dir.path(), "constant.wasm", None);
    let golden = reg.dir.path().join("constant.golden.jsonl");

    // A wrong expectation: the rule pays nothing.
    let good = constant_case(
        "g-1",
        r#"{"payable":false,"rate_micros":0,"reason":"nothing"}"#,
    );
    let wrong = constant_case(
        "g-2",
        r#"{"payable":true,"rate_micros":1000,"reason":"payable"}"#,
    );
    std::fs::write(&golden, format!("{good}\n{wrong}\n")).unwrap();
    let err = reg.fails(&["rule", "publish", s(&wasm)]);
    common::assert_mentions(
        &err,
        &[
            "constant@0.1.0",
            "fails 1 of the 2 golden cases",
            s(&golden),
            "not published",
            "line 2 (event_id \"g-2\", \"anything\")",
            "payable: expected true, got false",
            "rate_micros: expected 1000, got 0",
            "reason: expected \"payable\", got \"nothing\"",
        ],
    );
    assert!(
        !err.contains("g-1"),
        "a passing case is not reported: {err}"
    );
    assert!(!reg.path.exists(), "a refused publish created the registry");

    // A golden file that is not in the format names the line.
    std::fs::write(
        &golden,
        format!("{good}\n{}\n", good.replace("\"pro\"", "\"gold\"")),
    )
    .unwrap();
    let err = reg.fails(&["rule", "publish", s(&wasm)]);
    common::assert_mentions(&err, &[s(&golden), "line 2", "`user_tier` \"gold\""]);

    // `golden.jsonl` beside the component is used too, and --golden wins.
    std::fs::remove_file(&golden).unwrap();
    let shared = reg.dir.path().join("golden.jsonl");
    std::fs::write(&shared, format!("{wrong}\n")).unwrap();
    let err = reg.fails(&["rule", "publish", s(&wasm)]);
    common::assert_mentions(&err, &["fails 1 of the 1 golden cases", s(&shared)]);
    let explicit = reg.dir.path().join("right.jsonl");
    std::fs::write(&explicit, format!("{good}\n")).unwrap();
    let out = reg.ok(&["rule", "publish", s(&wasm), "--golden", s(&explicit)]);
    common::assert_mentions(
        &out,
        &[
            "published constant@0.1.0",
            "1 golden cases",
            s(&explicit),
            "pass",
        ],
    );
}

#[test]
fn publishing_a_crate_builds_it_and_runs_its_golden_cases() {
    let reg = Reg::new();
    let out = reg.ok(&[
        "rule",
        "publish",
        s(&common::root().join("rules/creator-pay-v2")),
    ]);
    common::assert_mentions(
        &out,
        &[
            "published creator-pay@2.0.0",
            "15 golden cases",
            "golden.jsonl",
        ],
    );
    // The same build as `make rules`.
    let built = common::blake3_hex(&common::rule("creator-pay-v2"));
    assert_eq!(reg.show("creator-pay@2.0.0")["hash"], built.as_str());
}

#[test]
fn a_corrupt_compiled_cache_entry_is_rebuilt() {
    let reg = Reg::new();
    let (v1, v2) = reg.publish_reference_rules();
    let compiled = |reference: &str| {
        reg.show(reference)["compiled"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(compiled("creator-pay@1.0.0"), "compiled and cached");
    assert_eq!(compiled("creator-pay@1.0.0"), "cache hit");
    let (code, sidecar) = reg.cache_entry(&v1);
    let good = std::fs::read(&code).unwrap();

    // A flipped byte in the compiled code.
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0xff;
    std::fs::write(&code, &bad).unwrap();
    let outcome = compiled("creator-pay@1.0.0");
    assert!(outcome.starts_with("cache entry rebuilt"), "{outcome}");
    common::assert_mentions(&outcome, &["hashes to"]);
    let rewritten = std::fs::read(&code).unwrap();
    assert_ne!(rewritten, bad, "the corrupt entry was overwritten");
    let side: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sidecar).unwrap()).unwrap();
    assert_eq!(side["code_blake3"], common::blake3_hex(&code).as_str());
    assert_eq!(side["rule_hash"], v1.as_str());
    assert_eq!(compiled("creator-pay@1.0.0"), "cache hit");

    // A truncated entry.
    std::fs::write(&code, &rewritten[..rewritten.len() / 3]).unwrap();
    assert!(compiled(&v1).starts_with("cache entry rebuilt"));
    // A missing or unreadable sidecar.
    std::fs::remove_file(&sidecar).unwrap();
    common::assert_mentions(&compiled(&v1), &["rebuilt", "sidecar is missing"]);
    std::fs::write(&sidecar, "{").unwrap();
    common::assert_mentions(&compiled(&v1), &["rebuilt", "sidecar is not valid"]);
    // Another rule's entry, code and sidecar consistent with each other,
    // copied over this one: stale, not trusted.
    compiled("creator-pay@2.0.0");
    let (code2, sidecar2) = reg.cache_entry(&v2);
    std::fs::copy(&code2, &code).unwrap();
    std::fs::copy(&sidecar2, &sidecar).unwrap();
    common::assert_mentions(
        &compiled(&v1),
        &["rebuilt", "another rule, engine or cache key"],
    );
    // A forged sidecar that matches other code, without the cache key's MAC:
    // the entry is rebuilt; the code never runs.
    let junk = b"not compiled code at all".to_vec();
    std::fs::write(&code, &junk).unwrap();
    let mut forged = side.clone();
    forged["code_blake3"] = common::blake3_hex(&code).into();
    forged["code_size"] = junk.len().into();
    std::fs::write(&sidecar, serde_json::to_vec(&forged).unwrap()).unwrap();
    common::assert_mentions(&compiled(&v1), &["rebuilt", "MAC does not verify"]);

    // Whatever happened, the rule loaded is the published one.
    let shown = reg.show("creator-pay@1.0.0");
    assert_eq!(shown["compiled"], "cache hit");
    assert_eq!(shown["hash"], v1.as_str());
    assert_eq!(shown["version"], "1.0.0");
}

#[test]
fn the_default_registry_is_tally_registry_or_the_environment() {
    let reg = Reg::new();
    reg.publish_reference_rules();
    let cwd = TempDir::new().expect("temp dir");
    let run = |env: Option<&Path>| {
        let mut command = Command::new(common::tally_bin());
        command.args(["rule", "list"]).current_dir(cwd.path());
        match env {
            Some(path) => command.env("TALLY_REGISTRY", path),
            None => command.env_remove("TALLY_REGISTRY"),
        };
        command.output().expect("tally runs")
    };
    let out = run(None);
    assert_eq!(out.status.code(), Some(1));
    common::assert_mentions(
        &String::from_utf8_lossy(&out.stderr),
        &["no rule registry at tally-registry"],
    );
    let out = run(Some(&reg.path));
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    // ./tally-registry is found from the current directory.
    std::fs::rename(&reg.path, cwd.path().join("tally-registry")).unwrap();
    let out = run(None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    common::assert_mentions(
        &String::from_utf8_lossy(&out.stdout),
        &["creator-pay", "2.0.0"],
    );
}

/// The hand-written `constant` rule reporting `version` (moved to an offset
/// with room for it), at `<dir>/constant-<version>.wasm`: one component, with
/// its own hash, per version.
fn constant_at(dir: &Path, version: &str) -> PathBuf {
    assert!(
        version.len() < 128 && !version.contains(['"', '\\']),
        "{version}"
    );
    component_with(
        dir,
        "constant",
        &format!("constant-{version}"),
        &[
            (
                "(data (i32.const 48) \"0.1.0\")",
                &format!("(data (i32.const 128) \"{version}\")"),
            ),
            (
                "\"\\30\\00\\00\\00\" \"\\05\\00\\00\\00\"",
                &format!(
                    "\"\\80\\00\\00\\00\" \"\\{:02x}\\00\\00\\00\"",
                    version.len()
                ),
            ),
        ],
    )
}

/// Versions are semantic versions, ordered by semver precedence: a release
/// after its pre-releases, numeric pre-release identifiers as numbers. That
/// is the order of `rule list` (text and JSON) and of the published versions
/// an unknown version's error names. A version with a leading zero is not a
/// semantic version: publishing a rule that reports one is refused, saying
/// why, and so is a reference that asks for one.
#[test]
fn versions_follow_semver_precedence_and_leading_zeros_are_refused() {
    let reg = Reg::new();
    // Published in an order that neither the order of the text nor that of
    // the numbers alone gives back.
    let mut hashes = std::collections::BTreeMap::new();
    for version in ["1.0.0", "1.0.0-rc.10", "1.0.0-rc.2", "0.9.0", "1.0.0-rc.1"] {
        let wasm = constant_at(reg.dir.path(), version);
        let out = reg.ok(&["rule", "publish", s(&wasm), "--no-golden"]);
        assert!(
            out.starts_with(&format!("published constant@{version} ")),
            "{out}"
        );
        hashes.insert(version, common::blake3_hex(&wasm));
    }
    let newest_last = ["0.9.0", "1.0.0-rc.1", "1.0.0-rc.2", "1.0.0-rc.10", "1.0.0"];

    let list: serde_json::Value =
        serde_json::from_str(&reg.ok(&["rule", "list", "--json"])).unwrap();
    let listed: Vec<&str> = list["rules"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| e["version"].as_str().expect("version"))
        .collect();
    assert_eq!(listed, newest_last);
    let text = reg.ok(&["rule", "list"]);
    let listed: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().nth(1).expect("version column"))
        .collect();
    assert_eq!(listed, newest_last, "{text}");
    let err = reg.fails(&["rule", "show", "constant@2.0.0"]);
    common::assert_mentions(
        &err,
        &[&format!("(published versions: {})", newest_last.join(", "))],
    );
    // Each version resolves to its own rule.
    for (version, hash) in &hashes {
        let shown = reg.show(&format!("constant@{version}"));
        assert_eq!(shown["hash"], hash.as_str(), "{version}");
        assert_eq!(shown["version"], *version);
    }

    // Leading zeros: refused when published (and when the rule is loaded
    // at all), saying which part is wrong; the registry is left as it was.
    let before = snapshot(&reg.path);
    for (version, why) in [
        (
            "1.0.0-rc.01",
            "invalid leading zero in pre-release identifier",
        ),
        ("01.0.0", "invalid leading zero in major version number"),
        ("1.02.0", "invalid leading zero in minor version number"),
        (
            "1.0",
            "unexpected end of input while parsing minor version number",
        ),
        (
            "v1.0.0",
            "unexpected character 'v' while parsing major version number",
        ),
    ] {
        let wasm = constant_at(reg.dir.path(), version);
        let expected = [
            &format!("reports the version \"{version}\"") as &str,
            "which is not a semantic version",
            why,
            "numbers without leading zeros",
        ];
        let err = reg.fails(&["rule", "publish", s(&wasm), "--no-golden"]);
        common::assert_mentions(&err, &expected);
        let err = common::tally_err(&["rule", "inspect", s(&wasm)]);
        common::assert_mentions(&err, &expected);
    }
    assert!(
        snapshot(&reg.path) == before,
        "a refused publish changed the registry"
    );
    // A reference that asks for such a version says what is wrong with it.
    let err = reg.fails(&["rule", "show", "constant@1.0.0-rc.01"]);
    common::assert_mentions(
        &err,
        &[
            "neither a version nor a tag: as a version, invalid leading zero in pre-release identifier",
        ],
    );
}
