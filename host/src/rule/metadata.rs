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

/// Whether `version` is a semantic version: `MAJOR.MINOR.PATCH`, numbers
/// without leading zeros, optionally `-PRERELEASE` and `+BUILD` (dot-separated
/// identifiers of ASCII letters, digits and `-`). At most 64 characters.
pub fn valid_version(version: &str) -> bool {
    fn identifiers(text: &str) -> bool {
        text.split('.')
            .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    }
    if version.is_empty() || version.len() > 64 {
        return false;
    }
    let (rest, build) = match version.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (version, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    numbers.len() == 3
        && numbers.iter().all(|n| {
            !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
                && (n.len() == 1 || !n.starts_with('0'))
        })
        && pre.is_none_or(identifiers)
        && build.is_none_or(identifiers)
}

/// Which part of a rule's metadata is unusable, with the text it reported.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BadMetadata {
    /// The name is not a valid rule name (see [`valid_name`]).
    Name(String),
    /// The version is not a semantic version (see [`valid_version`]).
    Version(String),
    /// The SDK version is neither empty nor a semantic version.
    SdkVersion(String),
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
            BadMetadata::Version(version) => write!(
                f,
                "the version \"{}\" ({} bytes): a rule version is a semantic version (MAJOR.MINOR.PATCH, optionally -PRERELEASE and +BUILD) of at most 64 characters",
                shown(version),
                version.len()
            ),
            BadMetadata::SdkVersion(version) => write!(
                f,
                "the SDK version \"{}\" ({} bytes): it is empty (no SDK) or a semantic version of at most 64 characters",
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
    if !valid_version(&info.version) {
        return Err(BadMetadata::Version(info.version.clone()));
    }
    if !info.sdk_version.is_empty() && !valid_version(&info.sdk_version) {
        return Err(BadMetadata::SdkVersion(info.sdk_version.clone()));
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
}
