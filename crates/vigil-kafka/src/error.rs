//! Errors of the Kafka layer.

/// A Kafka client could not be created or used.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// librdkafka rejected the configuration or failed.
    #[error("kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    /// The pipeline could not say where to resume a partition.
    #[error("cannot resume {topic}[{partition}] from the archive: {source}")]
    Resume {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Why (the archive's error).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A message could not be delivered after every retry.
    #[error("delivery to `{topic}` failed after {attempts} attempts: {reason}")]
    Delivery {
        /// Topic.
        topic: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        reason: String,
    },
}

impl KafkaError {
    /// Who has to act, and whether a retry can help: a configuration librdkafka rejects is the
    /// user's to fix; everything else is the broker or the archive failing.
    pub fn kind(&self) -> vigil_core::ErrorKind {
        use rdkafka::error::KafkaError as E;
        match self {
            KafkaError::Client(E::ClientConfig(..)) => vigil_core::ErrorKind::User,
            _ => vigil_core::ErrorKind::External,
        }
    }
}
