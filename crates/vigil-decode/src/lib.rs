//! simd-json → Arrow decoding of vigil's log and metric records.
//!
//! ```text
//! sources ─► [decode] ─┬─► records  (RecordBatch, logs / metrics schema) ─► detect, archive
//!                      └─► dead letters (RecordBatch, dead_letters schema) ─► archive
//! ```
//!
//! The [`Decoder`] has the shape of arrow-json's: push bytes with [`Decoder::decode`], take
//! batches with [`Decoder::flush`]. It builds columns straight from simd-json's tape (no
//! per-record DOM, no `serde_json::Value`), and parses runs of records as one JSON array so
//! simd-json's per-document cost is paid per group. A record that fails on its own terms —
//! invalid JSON or UTF-8, a missing `timestamp` or `service`, a wrong type, too long, too
//! deep — becomes a dead letter with its raw bytes, position and reason; good records in the
//! same input are unaffected.
#![warn(missing_docs)]

mod column;
mod dead;
mod decoder;
mod groups;
mod logs;
mod metrics;
mod otlp;
pub mod privacy;
mod rows;
mod tape;
mod verbatim;

pub use dead::{ReasonCode, Rejection};
pub use decoder::{DecodeStats, DecodedBatch, Decoder, DecoderOptions};
pub use otlp::{Accepted, OtlpDecoder, OtlpEncoding, parse as parse_otlp, write_hex};
