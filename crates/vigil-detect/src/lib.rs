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
//!
//! [`rules`] turns per-window signal values into alerts with Prometheus semantics (pending →
//! firing after `for` → resolved, one firing per episode, state that survives a restart) and
//! into the anomaly events of DESIGN.md. [`windows`] feeds them: tumbling or hopping
//! event-time windows closed by a watermark, each rule's signal computed by DataFusion SQL per
//! service in two phases (partial aggregate states per bite of rows, final per window), so
//! memory is bounded by services × open panes rather than by events. [`correlate`] assembles
//! traces, learns the service dependency graph and groups anomalies into incidents with a
//! root-cause service.
#![warn(missing_docs)]

pub mod baseline;
pub mod correlate;
pub mod rules;
pub mod windows;

pub use baseline::{BaselineConfig, BaselineDetector};
pub use correlate::{Correlator, IncidentView};
pub use rules::{AnomalyEvent, Rule, RuleEvaluator, Status};
pub use vigil_config::{Comparison, Condition, Severity};
pub use windows::{DetectError, WindowedRules};
