//! Errors of the Kafka layer.

/// A Kafka client could not be created or used.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// librdkafka rejected the configuration or failed.
    #[error("kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    /// The pipeline could not say where to resume a partition.
    #[error("cannot resume {topic}[{partition}] from the archive: {reason}")]
    Resume {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Why.
        reason: String,
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
