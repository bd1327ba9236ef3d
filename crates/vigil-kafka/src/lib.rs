//! Kafka for vigil, on librdkafka (`rdkafka`).
//!
//! ```text
//! topics ─► [Consumer: group member, resumes each assigned partition from the archive] ─► pipeline
//! pipeline ─► [Producer: idempotent, key per message, retries with backoff] ─► topic
//! ```
//!
//! The consumer never commits offsets on its own: the pipeline records them in the archive's
//! Delta commits (the source of truth) and then tells the group, so lag tooling stays
//! accurate. On every assignment the consumer asks the pipeline, through a [`ResumeFn`], where
//! each partition's archive ends and starts there.
#![warn(missing_docs)]

mod config;
mod consumer;
mod error;
mod producer;
mod quiet;
mod stats;

pub use config::{ConsumerSettings, client_config, connection_properties};
pub use consumer::{Assigned, Consumer, Message, ResumeFn, TopicPartition};
pub use error::KafkaError;
pub use producer::{DeliveryStats, Producer};
pub use rdkafka::Message as MessageExt;
pub use stats::{Membership, PartitionStats, Start, StatsBook};
