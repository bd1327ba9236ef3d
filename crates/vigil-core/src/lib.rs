//! Shared vocabulary of vigil: error kinds, the Arrow schemas of the archive tables, event-time
//! helpers, durations and byte sizes as written in pipeline files, and the partitions whose
//! positions the archive records; and the process's own metrics, which every crate records into.
//!
//! ```text
//! sources ─► decode ─► detect / archive ─► query
//!    └───────── all of them speak vigil-core ─────────┘
//! ```
//!
//! Nothing here does I/O; every other crate depends on this one and on nothing above it.
#![warn(missing_docs)]

pub mod error;
pub mod metrics;
pub mod position;
pub mod schema;
pub mod time;
pub mod units;

pub use error::{ErrorKind, InvalidInput};
pub use position::Partition;
