//! Help that a person can act on: every command's `--help` ends with
//! examples, and `tally completions` and `tally man` give a completion script
//! for each shell and a man page for each command.

use crate::common::{self, s};
use tempfile::TempDir;

const COMMANDS: [&str; 15] = [
    "run",
    "gen",
    "compare",
    "explain",
    "log",
    "show",
    "lineage",
    "verify",
    "plan",
    "map",
    "reduce",
    "commit",
    "status",
    "rule",
    "completions",
];

#[test]
fn every_command_s_help_ends_with_examples() {
    for command in COMMANDS {
        let help = common::tally_ok(&[command, "--help"]);
        let examples = help
            .rfind("Example")
            .unwrap_or_else(|| panic!("tally {command} --help has no examples:\n{help}"));
        assert!(
            help[examples..].contains(&format!("tally {command}")),
            "tally {command} --help: its examples do not show the command"
        );
    }
}

#[test]
fn completions_for_each_shell_and_a_man_page_for_each_command() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef tally"),
        ("fish", "complete -c tally"),
        ("elvish", "tally"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let script = common::tally_ok(&["completions", shell]);
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        assert!(
            script.contains("memory-limit"),
            "{shell}: options are missing"
        );
    }
    let out = common::tally(&["completions", "tcsh"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );

    let dir = TempDir::new().expect("temp dir");
    let man = dir.path().join("man1");
    let said = common::tally_ok(&["man", "--out", s(&man)]);
    for page in [
        "tally.1",
        "tally-run.1",
        "tally-compare.1",
        "tally-rule-publish.1",
        "tally-plan.1",
    ] {
        let text = std::fs::read_to_string(man.join(page))
            .unwrap_or_else(|e| panic!("{page}: {e} ({said})"));
        assert!(text.contains(".TH"), "{page} is not a man page");
    }
    let run = std::fs::read_to_string(man.join("tally-run.1")).unwrap();
    assert!(
        run.contains("memory\\-limit"),
        "the run page lacks its options"
    );
}
