//! Usage mistakes that Tally finds itself, past what clap checks: they end the
//! command like clap's own usage errors, with exit status 2 and nothing done.

use std::fmt;

/// The exit status of a usage error (clap's own uses the same).
pub const EXIT: u8 = 2;

/// A command line that asks for something the command cannot do: a missing
/// or extra argument, or an option that does not apply to the mode it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(String);

impl UsageError {
    pub fn new(message: impl Into<String>) -> UsageError {
        UsageError(message.into())
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Fails with a [`UsageError`] saying `message` unless `holds`.
pub fn ensure(holds: bool, message: impl FnOnce() -> String) -> Result<(), UsageError> {
    if holds {
        Ok(())
    } else {
        Err(UsageError::new(message()))
    }
}

/// Whether an error is (or was caused by) a usage error.
pub fn is_usage_error(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| cause.is::<UsageError>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn usage_errors_are_recognised_through_context() {
        let err = anyhow::Error::from(UsageError::new("give two rules"));
        assert!(is_usage_error(&err));
        assert_eq!(err.to_string(), "give two rules");
        let wrapped = Err::<(), _>(err).context("comparing").unwrap_err();
        assert!(is_usage_error(&wrapped));
        assert!(!is_usage_error(&anyhow::anyhow!("a file is missing")));
        assert_eq!(ensure(true, || unreachable!()), Ok(()));
        assert_eq!(
            ensure(false, || "no".into()),
            Err(UsageError::new("no".to_string()))
        );
    }
}
