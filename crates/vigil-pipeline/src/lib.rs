//! Wires a pipeline together: sources → decode → archive, with backpressure and an orderly
//! shutdown. A library, so tests run whole pipelines in-process.
//!
//! ```text
//! file / stdin / generator ─► Decoder ─► (bounded channel) ─► Sink ─► TableWriter per table
//! ```
//!
//! Delivery: every record read is either a row or a dead letter, and everything decoded is
//! committed before [`run`] returns, including after a stop request.
#![warn(missing_docs)]

mod detect;
mod error;
mod input;
mod kafka;
mod run;
mod sink;

pub use detect::Detection;
pub use error::PipelineError;
pub use input::{Input, check_readable};
pub use kafka::app_id;
pub use run::{Counters, RunOptions, Summary, decoder_options, run};
pub use sink::{Sink, SinkStats};
pub use vigil_kafka::{PartitionStats, StatsBook};
