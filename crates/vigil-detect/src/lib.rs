//! Online anomaly detectors for metric series.
//!
//! ```text
//! metric samples ─► one detector per series ─► anomaly score in [0, 1] per sample ─► alerts
//! ```
//!
//! A detector sees one series' samples in time order, one at a time, and answers each with
//! an anomaly score at once: it never looks ahead, keeps bounded memory and does a bounded
//! amount of work per sample, so it can sit in a stream. [`baseline`] is the default: it needs
//! no threshold or tuning from the user. `vigil detect-series` runs it over a CSV file.
#![warn(missing_docs)]

pub mod baseline;

pub use baseline::{BaselineConfig, BaselineDetector};
