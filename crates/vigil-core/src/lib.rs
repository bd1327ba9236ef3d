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

pub mod arrays;
pub mod error;
pub mod metrics;
pub mod position;
pub mod schema;
pub mod time;
pub mod units;

pub use error::{ErrorKind, InvalidInput};
pub use position::Partition;

/// The directory of the package whose code expands it, as a `PathBuf`: `CARGO_MANIFEST_DIR`
/// as cargo and nextest set it when a test runs, else as it was when the code was compiled.
/// Tests read the repository's files through it: checkouts sharing one target directory run
/// a test binary compiled in another checkout, whose compile-time path may be gone or stale.
#[macro_export]
macro_rules! manifest_dir {
    () => {
        ::std::path::PathBuf::from(
            ::std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
    };
}
