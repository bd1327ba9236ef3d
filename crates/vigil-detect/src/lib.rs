//! Detection: rules over event-time windows, the baseline detector, correlation, and the
//! anomaly events they produce.
//!
//! ```text
//! decoded batches ─► windows (DataFusion partial/final aggregates) ─► rules ─► AnomalyEvent
//!        └────────► correlate (traces, service graph) ──────────────────────► its incident
//! metric samples ─► one baseline detector per series ─► anomaly score in [0, 1] per sample
//! ```
//!
//! A detector sees one series' samples in time order, one at a time, and answers each with
//! an anomaly score at once: it never looks at later samples, keeps bounded memory and does
//! a bounded amount of work per sample. [`baseline`] is the rules' detector: it needs no
//! threshold, no tuning and nothing known in advance, so it can sit in a stream.
//! [`resonance`] (after ARTime) is told the series' range and length first, as NAB tells
//! every detector; [`ensemble`] adds the baseline's evidence to it, and is what
//! `vigil detect-series` runs over a CSV file by default.
//!
//! [`rules`] turns per-window signal values into alerts with Prometheus semantics (pending →
//! firing after `for` → resolved, one firing per episode, state that survives a restart) and
//! into the anomaly events of DESIGN.md. [`windows`] feeds them: tumbling or hopping
//! event-time windows closed by a watermark, each rule's signal computed by DataFusion SQL per
//! service in two phases (partial aggregate states per bite of rows, final per window), so
//! memory is bounded by services × open panes rather than by events. [`correlate`] assembles
//! traces, learns the service dependency graph and groups anomalies into incidents with a
//! root-cause service. [`event`] is the anomaly event of DESIGN.md (times in µs until
//! serialised as RFC 3339). [`spec`] holds what a pipeline file declares about all of this
//! (`vigil-config` parses into it). The pipeline (`vigil-pipeline`) feeds and drives it.
#![warn(missing_docs)]

pub mod baseline;
pub mod correlate;
pub mod ensemble;
mod error;
pub mod event;
pub mod resonance;
pub mod rules;
pub mod spec;
#[cfg(test)]
mod testing;
pub mod windows;

pub use baseline::{BaselineConfig, BaselineDetector};
pub use correlate::Correlator;
pub use ensemble::EnsembleDetector;
pub use error::DetectError;
pub use event::{AnomalyEvent, IncidentEvidence, IncidentView, PendingAnomaly, Status};
pub use resonance::{ResonanceDetector, SeriesShape};
pub use rules::{Rule, RuleEvaluator};
pub use spec::{Comparison, Condition, CorrelationConfig, RuleSpec, SeriesLimits, Severity};
pub use windows::WindowedRules;
