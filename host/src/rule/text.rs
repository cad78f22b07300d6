//! Showing text that came from a rule (its name, version, reasons, error
//! messages, export names) to a person.
//!
//! A rule is untrusted code and the strings it returns are untrusted text: a
//! newline in a reason would forge a line of the run summary, an ANSI escape
//! sequence would drive the terminal, and a 20 MB error message would bury
//! everything else. Every place that prints rule-supplied text for a person
//! passes it through [`shown`] first. Reports that name input files write
//! each name through [`shown_name`], and pass through [`shown_lines`] as a
//! whole, for the same reasons. Machine-readable outputs (JSON, Parquet)
//! keep the text as it is: their encoders escape what needs escaping.

use std::borrow::Cow;
use std::fmt::Write as _;

/// The most characters of one rule-supplied text that are shown.
pub const SHOWN_CHARS: usize = 256;

/// Whether `c` may not be shown as it is: control characters (C0, DEL and C1,
/// which covers the ESC and CSI that start ANSI escape sequences, and
/// newlines), the Unicode line and paragraph separators, zero-width and
/// bidirectional formatting characters (which reorder or hide what
/// surrounds them), and the byte order mark.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        )
}

/// Rule-supplied `text` as it may be shown to a person: on one line, with
/// every character [`needs_escape`] picks written as an escape (`\n`, `\r`,
/// `\t`, otherwise `\u{1b}` and the like), and cut after [`SHOWN_CHARS`]
/// characters with a note of the text's full length in bytes. Text that needs
/// none of this is returned as it is.
pub fn shown(text: &str) -> Cow<'_, str> {
    let mut chars = text.char_indices();
    let clean = chars
        .by_ref()
        .take(SHOWN_CHARS)
        .all(|(_, c)| !needs_escape(c));
    if clean && chars.next().is_none() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(4 * SHOWN_CHARS) + 32);
    for (count, c) in text.chars().enumerate() {
        if count == SHOWN_CHARS {
            let _ = write!(out, "… ({} bytes in all)", text.len());
            break;
        }
        push_shown(&mut out, c);
    }
    Cow::Owned(out)
}

/// Writes `c` as [`shown`] shows it.
fn push_shown(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if needs_escape(c) => out.extend(c.escape_unicode()),
        c => out.push(c),
    }
}

/// A name no one vetted (an input file's path, a key read from a file) as
/// it may be shown within a line of a report: every character
/// [`needs_escape`] picks, line ends included, written as [`shown`] writes
/// it; nothing cut.
pub fn shown_name(text: &str) -> Cow<'_, str> {
    escaped(text, false)
}

/// A report of several lines that names things no one vetted (input file
/// names, in `tally status`'s text and the plan of `tally run
/// --stale-only`), as it may be shown: every character but the line ends as
/// [`shown`] shows it, nothing cut.
pub fn shown_lines(text: &str) -> Cow<'_, str> {
    escaped(text, true)
}

/// `text` with every character [`needs_escape`] picks written as [`shown`]
/// writes it, its line ends kept as they are when `keep_lines`; nothing cut.
fn escaped(text: &str, keep_lines: bool) -> Cow<'_, str> {
    let escape = |c: char| needs_escape(c) && !(keep_lines && c == '\n');
    if !text.chars().any(escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 32);
    for c in text.chars() {
        if escape(c) {
            push_shown(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_shown_as_it_is() {
        for text in ["", "payable", "creator-pay@1.0.0", "évènement 🎉", "a\\nb"] {
            assert!(matches!(shown(text), Cow::Borrowed(t) if t == text));
        }
        let longest = "x".repeat(SHOWN_CHARS);
        assert_eq!(shown(&longest), longest);
    }

    #[test]
    fn a_name_is_kept_on_its_line_and_whole() {
        assert!(matches!(
            shown_name("late.jsonl"),
            Cow::Borrowed("late.jsonl")
        ));
        assert_eq!(
            shown_name("late\nerror: forged\u{1b}[2J.jsonl"),
            "late\\nerror: forged\\u{1b}[2J.jsonl"
        );
        let long = "x".repeat(2 * SHOWN_CHARS) + "\n";
        assert_eq!(shown_name(&long), "x".repeat(2 * SHOWN_CHARS) + "\\n");
    }

    #[test]
    fn lines_keep_their_ends_and_escape_the_rest() {
        let plain = "a.jsonl\n  b.jsonl\n";
        assert!(matches!(shown_lines(plain), Cow::Borrowed(t) if t == plain));
        assert_eq!(
            shown_lines("late\u{1b}[2J.jsonl\n\tx\r\u{202e}y\n"),
            "late\\u{1b}[2J.jsonl\n\\tx\\r\\u{202e}y\n"
        );
        let long = "x".repeat(2 * SHOWN_CHARS) + "\u{7}";
        assert_eq!(shown_lines(&long), "x".repeat(2 * SHOWN_CHARS) + "\\u{7}");
    }

    #[test]
    fn control_and_formatting_characters_are_escaped() {
        assert_eq!(shown("a\nb\r\tc"), "a\\nb\\r\\tc");
        assert_eq!(shown("\u{1b}[31mred\u{1b}[0m"), "\\u{1b}[31mred\\u{1b}[0m");
        assert_eq!(shown("\u{9b}2J"), "\\u{9b}2J");
        assert_eq!(shown("x\u{7f}\0"), "x\\u{7f}\\u{0}");
        assert_eq!(shown("left\u{202e}thgir"), "left\\u{202e}thgir");
        assert_eq!(shown("a\u{2028}b\u{200b}"), "a\\u{2028}b\\u{200b}");
        // Whatever goes in, nothing that needs escaping comes out.
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            let mut buffer = [0; 4];
            let out = shown(c.encode_utf8(&mut buffer));
            assert!(!out.chars().any(needs_escape), "{out}");
        }
    }

    #[test]
    fn long_text_is_cut() {
        let long = "é".repeat(10_000_000);
        let out = shown(&long);
        assert_eq!(
            out,
            format!("{}… (20000000 bytes in all)", "é".repeat(SHOWN_CHARS))
        );
        // Escapes count as one character each.
        let newlines = "\n".repeat(SHOWN_CHARS + 1);
        assert_eq!(
            shown(&newlines),
            format!("{}… (257 bytes in all)", "\\n".repeat(SHOWN_CHARS))
        );
    }
}
