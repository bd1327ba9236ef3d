//! Errors of a running pipeline.

use std::path::PathBuf;

use vigil_core::ErrorKind;
use vigil_store::StoreError;

/// A pipeline stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// An input could not be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Input {
        /// The file (`-` for stdin).
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The archive failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Kafka failed (configuration, broker, or reading offsets during a rebalance).
    #[error(transparent)]
    Kafka(Box<vigil_kafka::KafkaError>),
    /// Detection could not run a rule.
    #[error("detection: {0}")]
    Detect(String),
    /// A worker thread died; this is a bug.
    #[error("a pipeline thread panicked: {0}")]
    Panicked(String),
}

impl PipelineError {
    pub(crate) fn kafka(e: vigil_kafka::KafkaError) -> Self {
        Self::Kafka(Box::new(e))
    }

    /// Who has to act, and whether a retry can help.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PipelineError::Input { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound
                | std::io::ErrorKind::PermissionDenied
                | std::io::ErrorKind::IsADirectory
                | std::io::ErrorKind::InvalidData => ErrorKind::User,
                _ => ErrorKind::External,
            },
            PipelineError::Store(e) => e.kind(),
            PipelineError::Kafka(_) => ErrorKind::External,
            PipelineError::Detect(_) => ErrorKind::User,
            PipelineError::Panicked(_) => ErrorKind::Internal,
        }
    }
}
