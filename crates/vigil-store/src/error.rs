//! Errors of the archive.

use vigil_core::ErrorKind;

/// Something went wrong reading or writing the archive.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The archive URL cannot be used.
    #[error("invalid archive url `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it is unusable.
        reason: String,
    },
    /// The archive's settings would let two writers overwrite each other's commits.
    #[error(
        "archive `{url}`: {reason}, so two writers committing at once could overwrite each other's commit and lose its rows. Remove it (vigil commits with a conditional PUT, which AWS S3, MinIO, R2 and moto support), or set `[archive] single_writer = true` if exactly one vigil process ever writes this archive"
    )]
    UnsafeCommits {
        /// The archive root.
        url: String,
        /// The setting at fault.
        reason: String,
    },
    /// Another maintenance pass holds the archive's maintenance lock.
    #[error("archive `{url}`: another maintenance pass is running ({holder}); one runs at a time")]
    MaintenanceBusy {
        /// The archive root.
        url: String,
        /// Who holds the lock.
        holder: String,
    },
    /// A table exists with a schema vigil cannot write into.
    #[error("table `{table}` at {url} has an incompatible schema: {reason}")]
    IncompatibleSchema {
        /// Table name.
        table: String,
        /// Table URL.
        url: String,
        /// What differs.
        reason: String,
    },
    /// The Delta log or the object store failed.
    #[error("table `{table}`: {source}")]
    Delta {
        /// Table name.
        table: String,
        /// The underlying error (boxed: it is large, and errors travel through every `Result`).
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },
    /// An application transaction (e.g. a Kafka partition's offset) is no longer where the
    /// committer last saw it: another writer recorded it since. The commit was not made.
    #[error(
        "table `{table}`: `{app_id}` is at {found:?}, not at {expected:?} as this writer last saw: another writer committed it"
    )]
    Fenced {
        /// Table name.
        table: String,
        /// The application id.
        app_id: String,
        /// The version the committer expected.
        expected: Option<i64>,
        /// The version the table holds.
        found: Option<i64>,
    },
    /// Arrow failed while preparing a batch (a bug: batches are checked upstream).
    #[error("preparing a batch for `{table}`: {source}")]
    Arrow {
        /// Table name.
        table: String,
        /// The underlying error.
        #[source]
        source: arrow::error::ArrowError,
    },
}

impl StoreError {
    /// Who has to act, and whether a retry can help.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::InvalidUrl { .. }
            | StoreError::IncompatibleSchema { .. }
            | StoreError::UnsafeCommits { .. } => ErrorKind::User,
            StoreError::Delta { source, .. } => match source.as_ref() {
                deltalake::DeltaTableError::InvalidTableLocation(_)
                | deltalake::DeltaTableError::NotATable(_) => ErrorKind::User,
                _ => ErrorKind::External,
            },
            StoreError::Fenced { .. } | StoreError::MaintenanceBusy { .. } => ErrorKind::External,
            StoreError::Arrow { .. } => ErrorKind::Internal,
        }
    }

    /// Whether another writer recorded one of the commit's application transactions (e.g.
    /// another replica archived the same Kafka partition), before the commit's snapshot or
    /// concurrently with it: the committer was fenced off and must reload its offsets rather
    /// than retry.
    pub fn is_fenced(&self) -> bool {
        use deltalake::kernel::transaction::{CommitConflictError, TransactionError};
        matches!(self, StoreError::Fenced { .. })
            || matches!(
                self,
                StoreError::Delta { source, .. } if matches!(
                    source.as_ref(),
                    deltalake::DeltaTableError::Transaction {
                        source: TransactionError::CommitConflict(CommitConflictError::ConcurrentTransaction)
                    }
                )
            )
    }

    pub(crate) fn delta(table: &str) -> impl FnOnce(deltalake::DeltaTableError) -> StoreError + '_ {
        move |source| StoreError::Delta {
            table: table.to_string(),
            source: Box::new(source),
        }
    }
}
