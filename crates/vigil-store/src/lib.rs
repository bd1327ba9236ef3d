//! The archive: Delta Lake tables of Parquet files on an object store.
//!
//! ```text
//! pipeline sink ─► RecordBatch ─► [TableWriter: buffer → sort → Parquet → Delta commit + txn] ─► object store
//!                                                                          ▲
//!              vigil-query (SQL), Archive::scan_since (detection's replay) read the same tables
//! ```
//!
//! Each table ([`TableSpec::all`]: `logs`, `metrics`, `dead_letters`, and detection's
//! `anomalies`, `service_edges`, `error_origin`) lives under the archive root, is partitioned
//! by `date`, and holds zstd Parquet files sorted by (service, time) with page-level
//! statistics (page index) and a bloom filter on `trace_id`. A commit is atomic: readers see
//! all of its files or none, and source offsets can ride in the same commit as Delta `txn`
//! actions ([`AppTxn`], checked against what the table holds so a writer that lost its
//! partitions is fenced), which is what makes ingestion exactly-once. [`FlushPolicy`] says
//! when a writer's buffer is due; [`Retention`] the tier ages (validated, not yet enforced).
//!
//! *Durable* means committed to the Delta log: [`TableWriter::commit`] returns only after the
//! log entry is written.
#![warn(missing_docs)]

mod archive;
mod error;
mod file;
mod maintain;
mod ranges;
mod retention;
mod scan;
mod sort;
mod spec;
mod tiers;
mod writer;

pub use archive::{Archive, app_version};
pub use error::StoreError;
pub use maintain::{COLD_ZSTD_LEVEL, MaintainOptions, TableReport};
pub use ranges::CachingRegistry;
pub use retention::Retention;
pub use spec::{ROW_GROUP_ROWS, TableSpec};
pub use tiers::{LAYOUT_PATH, Layout, TableLayout, Tier, TierKey, TierViews};
pub use writer::{AppTxn, Committed, FlushPolicy, TableWriter};
