//! Errors of detection.

use vigil_core::ErrorKind;

/// A rule could not be set up or evaluated, or correlation failed.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The rule is not valid (its SQL, its severity, ...).
    #[error("rule `{rule}`: {reason}")]
    Rule {
        /// Rule name.
        rule: String,
        /// What is wrong.
        reason: String,
    },
    /// Partial states or traces from another replica could not be read (a replica running
    /// another pipeline file or version, or a damaged message).
    #[error("shuffle: {reason}")]
    Shuffle {
        /// What is wrong.
        reason: String,
    },
    /// Correlation's aggregation failed (an internal error).
    #[error("correlation: {reason}")]
    Correlation {
        /// What went wrong.
        reason: String,
    },
}

impl DetectError {
    /// Who has to act: a rule's SQL is the user's to fix; correlation failing is a bug.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DetectError::Rule { .. } | DetectError::Shuffle { .. } => ErrorKind::User,
            DetectError::Correlation { .. } => ErrorKind::Internal,
        }
    }
}
