//! simd-json → Arrow decoding of vigil's log and metric records.
//!
//! ```text
//! sources ─► [decode] ─┬─► records  (RecordBatch, logs / metrics schema) ─► detect, archive
//!                      └─► dead letters (RecordBatch, dead_letters schema) ─► archive
//! ```
//!
//! The [`Decoder`] has the shape of arrow-json's: push bytes with [`Decoder::decode`], take
//! batches with [`Decoder::flush`]. A log record of the common shape (the seed's known
//! fields, `additional_data` an object, no escapes) is read in one pass over its own bytes
//! straight into its row. Any other record is read into a tape of simd-json's nodes, from
//! which the columns are built (no per-record DOM, no `serde_json::Value`): a plain record
//! by vigil's own reader in one pass, the rest by simd-json, runs of them parsed as one JSON
//! array so its per-document cost is paid per group, and simd-json's errors are the reasons
//! of dead letters. A record that fails on its own terms — invalid JSON or UTF-8, a missing
//! `timestamp` or `service`, a wrong type, too long, too deep — becomes a dead letter with
//! its raw bytes, position and reason; good records in the same input are unaffected.
#![warn(missing_docs)]

mod aliases;
mod column;
mod dead;
mod decoder;
mod groups;
mod logs;
mod metrics;
mod otlp;
pub mod privacy;
mod rows;
mod scan;
mod tape;
mod verbatim;

pub use dead::{ReasonCode, Rejection};
pub use decoder::{DecodeStats, DecodedBatch, Decoder, DecoderOptions};
pub use otlp::{Accepted, OtlpDecoder, OtlpEncoding, parse as parse_otlp, write_hex};
