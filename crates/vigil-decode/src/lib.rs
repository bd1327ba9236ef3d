//! simd-json → Arrow decoding of vigil's log and metric records.
//!
//! ```text
//! sources ─► [decode] ─┬─► records  (RecordBatch, logs / metrics schema) ─► detect, archive
//!                      └─► dead letters (RecordBatch, dead_letters schema) ─► archive
//! ```
//!
//! The [`Decoder`] has the shape of arrow-json's: push bytes with [`Decoder::decode`], take
//! batches with [`Decoder::flush`]. It builds columns straight from a tape of simd-json's
//! nodes (no per-record DOM, no `serde_json::Value`). A plain record (no escapes, nothing
//! unusual) is read into that tape in one pass over its own bytes; any other is left to
//! simd-json, runs of them parsed as one JSON array so its per-document cost is paid per
//! group, and simd-json's errors are the reasons of dead letters. A record that fails on its
//! own terms — invalid JSON or UTF-8, a missing `timestamp` or `service`, a wrong type, too
//! long, too deep — becomes a dead letter with its raw bytes, position and reason; good
//! records in the same input are unaffected.
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
