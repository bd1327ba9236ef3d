//! Wires a pipeline together: one route for every source.
//!
//! ```text
//! Source (file | stdin | generator | kafka) ─► Step::Batch (RecordKind, DecodedBatch, CheckpointDelta)
//!    ─► Sink ─┬─► Detection (one per pipeline: rules, correlation, anomaly events)
//!             └─► archive: each table's files and the batch's positions (Delta `txn`
//!                 actions) in one Delta commit
//! ```
//!
//! [`source`] turns inputs into decoded batches, each with the checkpoint delta it advances;
//! [`Sink`] hands every batch to the pipeline's [`Detection`] and to the archive, and commits
//! rows and positions together, retrying and fencing in one place; [`run`] drives them, on one
//! thread or with each source on its own. [`config`] is what a pipeline is made of (read from
//! pipeline files by `vigil-config`). A library, so tests run whole pipelines in-process.
//!
//! Delivery: every record read is either a row or a dead letter, and everything decoded is
//! committed before [`run`] returns, including after a stop request; a source with positions
//! (Kafka) is archived exactly once across restarts, rebalances and zombie replicas.
#![warn(missing_docs)]

pub mod config;
mod detect;
mod error;
mod run;
mod sink;
pub mod source;
mod summary;

pub use config::{
    ArchiveConfig, DetectConfig, KafkaSourceConfig, OtlpSourceConfig, Pipeline, SourceConfig,
    SourceKind,
};
pub use detect::{Detection, IDLE, log_columns_read};
pub use error::PipelineError;
pub use run::run;
pub use sink::{DeadLetterTopic, Sink};
pub use source::{Input, check_readable};
pub use summary::{Counters, RunOptions, SinkStats, Summary};
pub use vigil_kafka::{Membership, PartitionStats, StatsBook};
