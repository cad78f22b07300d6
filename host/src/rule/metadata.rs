//! What a rule may say about itself. The name, version and SDK version a rule
//! reports are stamped into every output partition, shown in summaries and
//! used as registry keys, so they are checked every time a rule is loaded:
//! before it is run, published, shown or compared.

use super::RuleInfo;
use super::text::shown;
use std::fmt;

/// Whether `name` can be a rule name: 1 to 64 characters, starting with a
/// lower-case letter or digit, holding only lower-case letters, digits, `.`,
/// `_` and `-`.
pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// The longest rule (or SDK) version, in bytes.
pub const MAX_VERSION_BYTES: usize = 64;

/// Why a text is not a rule version.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VersionError {
    /// Longer than [`MAX_VERSION_BYTES`] (the length in bytes).
    TooLong(usize),
    /// Not a semantic version: what the `semver` crate says is wrong.
    Invalid(String),
}

impl fmt::Display for VersionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionError::TooLong(bytes) => write!(
                f,
                "it is {bytes} bytes long, more than the {MAX_VERSION_BYTES} a version may have"
            ),
            // The message may quote a character of the version: escaped.
            VersionError::Invalid(why) => f.write_str(&shown(why)),
        }
    }
}

impl std::error::Error for VersionError {}

/// Parses a rule version: a semantic version (<https://semver.org>, through
/// the `semver` crate) of at most [`MAX_VERSION_BYTES`] bytes:
/// `MAJOR.MINOR.PATCH`, numbers without leading zeros, optionally
/// `-PRERELEASE` (dot-separated identifiers of ASCII letters, digits and `-`,
/// numeric ones without leading zeros) and `+BUILD` (the same, leading zeros
/// allowed). Nothing else: no `v` prefix, no spaces, no missing parts.
pub fn parse_version(version: &str) -> Result<semver::Version, VersionError> {
    if version.len() > MAX_VERSION_BYTES {
        return Err(VersionError::TooLong(version.len()));
    }
    semver::Version::parse(version).map_err(|e| VersionError::Invalid(e.to_string()))
}

/// Whether `version` is a rule version (see [`parse_version`]).
pub fn valid_version(version: &str) -> bool {
    parse_version(version).is_ok()
}

/// Orders rule versions by semantic-version precedence: numbers compared as
/// numbers, a pre-release before its release (`1.0.0-rc.1` < `1.0.0-rc.2` <
/// `1.0.0-rc.10` < `1.0.0`), pre-release identifiers one by one (numeric ones
/// as numbers, and before alphanumeric ones). Build metadata does not count
/// for precedence; versions that differ only in it are put in a fixed order
/// (the `semver` crate's). Text that is not a version (which no check lets
/// through, but a hand-edited registry may hold) comes after every version,
/// in byte order.
pub fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (parse_version(a), parse_version(b)) {
        (Ok(x), Ok(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

/// Which part of a rule's metadata is unusable, with the text it reported.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BadMetadata {
    /// The name is not a valid rule name (see [`valid_name`]).
    Name(String),
    /// The version is not a semantic version (see [`parse_version`]), and
    /// why.
    Version(String, VersionError),
    /// The SDK version is neither empty nor a semantic version, and why.
    SdkVersion(String, VersionError),
}

impl fmt::Display for BadMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadMetadata::Name(name) => write!(
                f,
                "the name \"{}\" ({} bytes): a rule name is 1 to 64 characters, starts with a lower-case letter or digit, and holds only lower-case letters, digits, `.`, `_` and `-`",
                shown(name),
                name.len()
            ),
            BadMetadata::Version(version, why) => write!(
                f,
                "the version \"{}\" ({} bytes), which is not a semantic version: {why}. A rule version is MAJOR.MINOR.PATCH, optionally -PRERELEASE and +BUILD, numbers without leading zeros, at most {MAX_VERSION_BYTES} characters (https://semver.org)",
                shown(version),
                version.len()
            ),
            BadMetadata::SdkVersion(version, why) => write!(
                f,
                "the SDK version \"{}\" ({} bytes), which is not a semantic version: {why}. It is empty (no SDK) or a semantic version of at most {MAX_VERSION_BYTES} characters",
                shown(version),
                version.len()
            ),
        }
    }
}

/// Checks the metadata a rule reported: a valid name, a semantic version, and
/// an SDK version that is empty or a semantic version.
pub fn check(info: &RuleInfo) -> Result<(), BadMetadata> {
    if !valid_name(&info.name) {
        return Err(BadMetadata::Name(info.name.clone()));
    }
    if let Err(why) = parse_version(&info.version) {
        return Err(BadMetadata::Version(info.version.clone(), why));
    }
    if !info.sdk_version.is_empty()
        && let Err(why) = parse_version(&info.sdk_version)
    {
        return Err(BadMetadata::SdkVersion(info.sdk_version.clone(), why));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, version: &str, sdk_version: &str) -> RuleInfo {
        RuleInfo {
            name: name.into(),
            version: version.into(),
            sdk_version: sdk_version.into(),
        }
    }

    #[test]
    fn metadata_is_checked() {
        assert_eq!(check(&info("creator-pay", "1.0.0", "0.3.1")), Ok(()));
        assert_eq!(check(&info("a.b_c-9", "1.2.3-rc.1+b5", "")), Ok(()));
        let long = "x".repeat(10 << 20);
        let bad = [
            (info("", "1.0.0", ""), "the name \"\""),
            (info("Creator", "1.0.0", ""), "the name \"Creator\""),
            (info("a\nb", "1.0.0", ""), "the name \"a\\nb\""),
            (info(&long, "1.0.0", ""), "(10485760 bytes)"),
            (info("ok", "1.0", ""), "the version \"1.0\""),
            (info("ok", "\u{1b}[2J1.0.0", ""), "\"\\u{1b}[2J1.0.0\""),
            (info("ok", "1.0.0", "latest"), "the SDK version \"latest\""),
        ];
        for (info, expected) in bad {
            let message = check(&info).unwrap_err().to_string();
            assert!(message.contains(expected), "{message}");
            assert!(message.len() < 2_000, "{} bytes", message.len());
        }
    }

    #[test]
    fn names_and_versions() {
        for good in [
            "0.1.0",
            "1.0.0",
            "10.20.30",
            "1.0.0-alpha.1",
            "1.0.0+build.5",
            "1.0.0-0.3.7",
            "1.0.0-x.7.z.92",
            "1.0.0-alpha-1",
            "1.0.0-0a",
            "1.0.0+001",
            "18446744073709551615.0.0",
        ] {
            assert!(valid_version(good), "{good}");
        }
        for bad in [
            "", "1", "1.0", "01.0.0", "1.0.0-", "1.0.0+", "1..0", "v1.0.0",
        ] {
            assert!(!valid_version(bad), "{bad}");
        }
        for good in ["creator-pay", "a", "9lives", "x.y_z"] {
            assert!(valid_name(good), "{good}");
        }
        let long = "x".repeat(65);
        for bad in ["", "Creator", "-x", "a b", "a/b", long.as_str()] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    /// Versions are parsed by the `semver` crate: leading zeros (in numbers
    /// and numeric pre-release identifiers) and anything that is not
    /// `MAJOR.MINOR.PATCH[-PRE][+BUILD]` are refused, each saying why.
    #[test]
    fn invalid_versions_are_refused_with_the_reason() {
        let long = format!("1.0.0-{}", "a".repeat(59));
        assert_eq!(long.len(), 65);
        for (bad, why) in [
            ("01.0.0", "invalid leading zero in major version number"),
            ("1.00.0", "invalid leading zero in minor version number"),
            ("1.0.00", "invalid leading zero in patch version number"),
            (
                "1.0.0-rc.01",
                "invalid leading zero in pre-release identifier",
            ),
            ("1.0.0-00", "invalid leading zero in pre-release identifier"),
            (
                "v1.0.0",
                "unexpected character 'v' while parsing major version number",
            ),
            (
                "=1.0.0",
                "unexpected character '=' while parsing major version number",
            ),
            (
                " 1.0.0",
                "unexpected character ' ' while parsing major version number",
            ),
            (
                "1.0.0 ",
                "unexpected character ' ' after patch version number",
            ),
            (
                "1.0",
                "unexpected end of input while parsing minor version number",
            ),
            (
                "1.0.0.0",
                "unexpected character '.' after patch version number",
            ),
            (
                "garbage",
                "unexpected character 'g' while parsing major version number",
            ),
            ("", "empty string, expected a semver version"),
            (
                "1.0.0-",
                "empty identifier segment in pre-release identifier",
            ),
            (
                "1.0.0-a..b",
                "empty identifier segment in pre-release identifier",
            ),
            ("1.0.0+", "empty identifier segment in build metadata"),
            (
                "1.0.0-rc_1",
                "unexpected character '_' after pre-release identifier",
            ),
            (
                "18446744073709551616.0.0",
                "value of major version number exceeds u64::MAX",
            ),
            (
                long.as_str(),
                "it is 65 bytes long, more than the 64 a version may have",
            ),
        ] {
            assert!(!valid_version(bad), "{bad:?}");
            let err = parse_version(bad).unwrap_err().to_string();
            assert_eq!(err, why, "{bad:?}");
        }
        // What a rule may put in a version is shown escaped.
        let err = parse_version("1.0.0-\u{1b}").unwrap_err().to_string();
        assert!(!err.contains('\u{1b}'), "{err}");
    }

    #[test]
    fn a_bad_version_in_metadata_says_why() {
        for (version, why) in [
            (
                "1.0.0-rc.01",
                "invalid leading zero in pre-release identifier",
            ),
            ("1.02.0", "invalid leading zero in minor version number"),
            ("latest", "unexpected character 'l'"),
        ] {
            let message = check(&info("ok", version, "")).unwrap_err().to_string();
            assert_mentions(
                &message,
                &[&format!("the version \"{version}\""), why, "leading zeros"],
            );
            let message = check(&info("ok", "1.0.0", version))
                .unwrap_err()
                .to_string();
            assert_mentions(&message, &[&format!("the SDK version \"{version}\""), why]);
        }
    }

    fn assert_mentions(message: &str, parts: &[&str]) {
        for part in parts {
            assert!(message.contains(part), "no {part:?} in: {message}");
        }
    }

    /// Semantic-version precedence, the specification's own example among
    /// others, whatever order they come in.
    #[test]
    fn versions_sort_by_precedence() {
        let want = [
            "0.9.0",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0-rc.2",
            "1.0.0-rc.10",
            "1.0.0",
            "1.0.1",
            "1.9.0",
            "1.10.0",
            "2.0.0-rc.1",
            "2.0.0",
            "10.0.0",
        ];
        for rotation in 0..want.len() {
            let mut got: Vec<&str> = want.iter().rev().copied().collect();
            got.rotate_left(rotation);
            got.sort_by(|a, b| version_order(a, b));
            assert_eq!(got, want);
        }
        use std::cmp::Ordering::*;
        assert_eq!(version_order("1.0.0", "1.0.0-rc.1"), Greater);
        assert_eq!(version_order("1.0.0-rc.2", "1.0.0-rc.10"), Less);
        // Build metadata does not make a version newer; the order between
        // two builds of one version is fixed, and only equal text is equal.
        assert_eq!(version_order("1.0.0+b.2", "1.0.1"), Less);
        assert_eq!(version_order("1.0.0+b.2", "1.0.0-rc.1"), Greater);
        assert_eq!(
            version_order("1.0.0+b.2", "1.0.0+b.10"),
            version_order("1.0.0+b.10", "1.0.0+b.2").reverse()
        );
        assert_eq!(version_order("1.0.0+b.2", "1.0.0+b.2"), Equal);
        // Text that is no version goes last, in byte order.
        let mut mixed = vec!["zzz", "1.0.0", "01.0.0", "0.1.0"];
        mixed.sort_by(|a, b| version_order(a, b));
        assert_eq!(mixed, ["0.1.0", "1.0.0", "01.0.0", "zzz"]);
    }
}
