//! Errors of detection.

use vigil_core::ErrorKind;

/// A rule could not be set up or evaluated, or what another replica sent could not be read.
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
}

impl DetectError {
    /// Who has to act: a rule's SQL, or the pipeline file other replicas run, is the
    /// user's to fix.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DetectError::Rule { .. } | DetectError::Shuffle { .. } => ErrorKind::User,
        }
    }
}
