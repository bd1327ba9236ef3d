//! The archive: Delta Lake tables of Parquet files on an object store.
//!
//! ```text
//! decode ─► RecordBatch ─► [TableWriter: buffer → sort → Parquet → Delta commit] ─► object store
//!                                                                     ▲
//!                                             vigil-query reads the same tables
//! ```
//!
//! Each table (`logs`, `metrics`, `dead_letters`) lives under the archive root, is partitioned
//! by `date`, and holds zstd Parquet files sorted by (service, time) with page-level
//! statistics (page index) and a bloom filter on `trace_id`. A commit is atomic: readers see
//! all of its files or none, and source offsets can ride in the same commit as Delta `txn`
//! actions, which is what makes ingestion exactly-once.
//!
//! *Durable* means committed to the Delta log: [`TableWriter::commit`] returns only after the
//! log entry is written.
#![warn(missing_docs)]

mod archive;
mod error;
mod sort;
mod spec;
mod writer;

pub use archive::Archive;
pub use error::StoreError;
pub use spec::{ROW_GROUP_ROWS, TableSpec};
pub use writer::{AppTxn, Committed, FlushPolicy, TableWriter, app_version};
