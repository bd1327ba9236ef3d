//! Errors of a running pipeline.

use std::path::PathBuf;

use vigil_core::ErrorKind;
use vigil_detect::DetectError;
use vigil_kafka::KafkaError;
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
    /// An output file (e.g. `detect.anomalies_file`) could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Output {
        /// The file.
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
    Kafka(Box<KafkaError>),
    /// Detection could not run a rule, or correlation failed.
    #[error("detection: {0}")]
    Detect(#[from] DetectError),
    /// A receiver could not listen on its address.
    #[error("source `{source_name}` cannot listen on {addr}: {error}")]
    Listen {
        /// The source.
        source_name: String,
        /// The address asked for.
        addr: String,
        /// Why.
        error: std::io::Error,
    },
    /// A worker thread died or a runtime could not start; this is a bug.
    #[error("a pipeline thread failed: {0}")]
    Panicked(String),
}

impl PipelineError {
    pub(crate) fn kafka(e: KafkaError) -> Self {
        Self::Kafka(Box::new(e))
    }

    /// Who has to act, and whether a retry can help.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PipelineError::Input { source, .. } | PipelineError::Output { source, .. } => {
                match source.kind() {
                    std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::IsADirectory
                    | std::io::ErrorKind::InvalidData => ErrorKind::User,
                    _ => ErrorKind::External,
                }
            }
            PipelineError::Store(e) => e.kind(),
            PipelineError::Kafka(e) => e.kind(),
            PipelineError::Detect(e) => e.kind(),
            PipelineError::Listen { .. } => ErrorKind::User,
            PipelineError::Panicked(_) => ErrorKind::Internal,
        }
    }
}
