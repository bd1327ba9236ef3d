//! Dead letters sent to a Kafka topic instead of the `dead_letters` table.

use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type};
use vigil_core::schema::dead;

use crate::error::PipelineError;

/// The original bytes as the value, where they came from and why in headers
/// (`vigil.source.topic`, `vigil.source.partition`, `vigil.source.offset`, `vigil.kind`,
/// `vigil.reason_code`, `vigil.reason`), as Kafka Connect's error topics do. Delivered before
/// the archive commit of the records around them; a crash between the two sends them again
/// (at least once).
pub struct DeadLetterTopic {
    producer: vigil_kafka::Producer,
    topic: String,
}

impl DeadLetterTopic {
    /// A producer for `topic` on `brokers`, with the connection properties (security, TLS)
    /// of the source's consumer.
    pub fn new(
        brokers: &str,
        properties: &std::collections::BTreeMap<String, String>,
        topic: &str,
    ) -> Result<Self, PipelineError> {
        Ok(Self {
            producer: vigil_kafka::Producer::new(
                brokers,
                &vigil_kafka::connection_properties(properties),
            )
            .map_err(PipelineError::kafka)?,
            topic: topic.into(),
        })
    }

    /// Queues the rows of a dead-letter batch for delivery.
    pub fn send(&mut self, batch: &RecordBatch) -> Result<(), PipelineError> {
        let schema = batch.schema();
        let col = |name: &str| batch.column(schema.index_of(name).expect("dead-letter schema"));
        let sources = col(dead::SOURCE).as_string::<i32>();
        let kinds = col(dead::KIND).as_string::<i32>();
        let partitions = col(dead::PARTITION).as_primitive::<Int32Type>();
        let offsets = col(dead::OFFSET).as_primitive::<Int64Type>();
        let codes = col(dead::REASON_CODE).as_string::<i32>();
        let reasons = col(dead::REASON).as_string::<i32>();
        let raws = col(dead::RAW).as_binary::<i32>();
        for i in 0..batch.num_rows() {
            let partition = partitions.value(i).to_string();
            let offset = offsets.value(i).to_string();
            let headers: [(&str, &[u8]); 6] = [
                ("vigil.source.topic", sources.value(i).as_bytes()),
                ("vigil.source.partition", partition.as_bytes()),
                ("vigil.source.offset", offset.as_bytes()),
                ("vigil.kind", kinds.value(i).as_bytes()),
                ("vigil.reason_code", codes.value(i).as_bytes()),
                ("vigil.reason", reasons.value(i).as_bytes()),
            ];
            self.producer
                .send_with_headers(&self.topic, None, raws.value(i), &headers)
                .map_err(PipelineError::kafka)?;
        }
        Ok(())
    }

    /// Waits until everything queued is delivered.
    pub fn flush(&mut self) -> Result<(), PipelineError> {
        self.producer
            .flush(Duration::from_secs(60))
            .map_err(PipelineError::kafka)
    }
}
