//! Error kinds shared by every crate's own error enum.
//!
//! Each library crate has one `thiserror` enum; every variant maps to an [`ErrorKind`] so
//! callers can decide, without matching on another crate's variants, whether to tell the user,
//! retry, or report a bug.

use std::fmt;

/// Who has to act on an error, and whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The user's input or configuration is wrong; the message says what would fix it.
    User,
    /// A service or resource outside vigil failed (object store, broker, file system).
    /// Retrying may help.
    External,
    /// vigil itself is wrong: an invariant broke. Retrying will not help.
    Internal,
}

impl ErrorKind {
    /// Whether retrying the same operation can succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::External)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::User => "user error",
            ErrorKind::External => "external error",
            ErrorKind::Internal => "internal error",
        })
    }
}

/// A value as a user wrote it (a duration, a size, a record kind, a severity, ...) that cannot
/// be used; the message names the value and what would be accepted. Always a user error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

impl InvalidInput {
    /// Who has to act: the user.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::User
    }
}
