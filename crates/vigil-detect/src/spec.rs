//! What a pipeline file declares about detection, validated: rules ([`RuleSpec`]) and
//! correlation ([`CorrelationConfig`]). `vigil-config` parses the file into these; the types
//! live here, beside the code that runs them, with their defaults.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vigil_core::InvalidInput;
use vigil_core::schema::RecordKind;

/// An alerting rule on a windowed signal.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSpec {
    /// Name.
    pub name: String,
    /// The stream its signal is computed over.
    pub table: RecordKind,
    /// Window length.
    pub window: Duration,
    /// How far apart windows start: the window for tumbling windows, less for hopping ones
    /// (it divides the window).
    pub hop: Duration,
    /// SQL aggregate per service per window.
    pub signal: String,
    /// SQL filter before aggregating.
    pub filter: Option<String>,
    /// When the rule's condition holds.
    pub condition: Condition,
    /// The rule watches a cause (a saturated resource), not a symptom: incidents take a
    /// service where it fires or is pending as their root cause.
    pub cause: bool,
    /// The signal's value in a window where a known series has no rows (e.g. `0` for a
    /// count); `None`: no value, which never holds.
    pub no_data: Option<f64>,
    /// How long the condition must hold.
    pub for_: Duration,
    /// How long a firing alert keeps firing after its condition stopped holding (Prometheus'
    /// `keep_firing_for`): a signal flapping around its threshold fires once, not again and
    /// again. Zero: it resolves in the first window that does not hold.
    pub keep_firing_for: Duration,
    /// How urgent its alerts are.
    pub severity: Severity,
    /// Summary, runbook URL.
    pub annotations: BTreeMap<String, String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The columns of its table its signal and filter read, as planned when the pipeline
    /// file was checked; `None` if it was not (see
    /// [`rule_columns`](crate::windows::rule_columns)).
    pub reads: Option<Vec<String>>,
}

/// A rule's condition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Condition {
    /// `value <comparison> threshold`.
    Threshold {
        /// How the value is compared.
        comparison: Comparison,
        /// The threshold.
        threshold: f64,
    },
    /// The value deviates from what the series' own baseline (learned by the default
    /// baseline detector, one per series) makes likely: no threshold to set. A window holds
    /// only while its own value lies away from the baseline too
    /// ([`BaselineDetector::departs`](crate::baseline::BaselineDetector::departs)), so a
    /// single spike does not hold through the minutes after it. A lasting change becomes the
    /// new normal as the baseline adapts, and the alert then resolves.
    Baseline,
    /// The value is a share of the window's rows (e.g. `avg(CASE WHEN level = 'ERROR' THEN 1.0
    /// ELSE 0.0 END)`, the error rate) and is well above the series' own usual share: a
    /// service that always fails 10% of its requests does not fire at 10%, one that never
    /// fails does at a few failures. See [`crate::rules`] for the test.
    AboveUsual,
}

/// How urgent an alert is, as in the seed's alert table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    /// Critical: page now.
    P1,
    /// High.
    P2,
    /// Medium.
    P3,
    /// Low.
    P4,
}

impl Severity {
    /// `P1`..`P4`.
    pub fn name(self) -> &'static str {
        match self {
            Self::P1 => "P1",
            Self::P2 => "P2",
            Self::P3 => "P3",
            Self::P4 => "P4",
        }
    }
}

impl FromStr for Severity {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        match s.to_ascii_uppercase().as_str() {
            "P1" => Ok(Self::P1),
            "P2" => Ok(Self::P2),
            "P3" => Ok(Self::P3),
            "P4" => Ok(Self::P4),
            _ => Err(InvalidInput(format!(
                "unknown severity `{s}`, expected P1, P2, P3 or P4"
            ))),
        }
    }
}

/// How a value is compared with the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `value > threshold`
    Above,
    /// `value >= threshold`
    AtLeast,
    /// `value < threshold`
    Below,
    /// `value <= threshold`
    AtMost,
}

impl Comparison {
    /// Whether `value <comparison> threshold`; NaN never holds.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::Above => value > threshold,
            Self::AtLeast => value >= threshold,
            Self::Below => value < threshold,
            Self::AtMost => value <= threshold,
        }
    }
}

impl FromStr for Comparison {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        match s {
            ">" => Ok(Self::Above),
            ">=" => Ok(Self::AtLeast),
            "<" => Ok(Self::Below),
            "<=" => Ok(Self::AtMost),
            _ => Err(InvalidInput(format!(
                "unknown comparison `{s}`, expected >, >=, < or <="
            ))),
        }
    }
}

/// Cross-service correlation: traces, the service graph, incidents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorrelationConfig {
    /// A trace is assembled from the records within this much event time of its first.
    pub trace_timeout: Duration,
    /// Window of the `service_edges` and `error_origin` tables.
    pub window: Duration,
    /// An incident stays open this long after its last anomaly resolved.
    pub incident_gap: Duration,
    /// Open traces beyond which the oldest are closed early.
    pub max_open_traces: usize,
    /// Log column with a span's duration in ms.
    pub duration_column: String,
    /// Log column with an HTTP-like status.
    pub status_column: String,
    /// Whether the trace evidence raises anomalies of its own
    /// ([`crate::correlate::Correlator::take_events`]).
    pub own_time_alarms: bool,
}

impl CorrelationConfig {
    /// The log columns traces are assembled from
    /// ([`log_columns`](crate::correlate::assemble::log_columns)).
    pub fn log_columns(&self) -> Vec<&str> {
        crate::correlate::assemble::log_columns(&self.duration_column, &self.status_column)
    }
}

impl Default for CorrelationConfig {
    fn default() -> Self {
        Self {
            trace_timeout: Duration::from_secs(10),
            window: Duration::from_secs(60),
            incident_gap: Duration::from_secs(600),
            max_open_traces: 1_000_000,
            duration_column: "processing_time_ms".into(),
            status_column: "status_code".into(),
            own_time_alarms: true,
        }
    }
}

/// How many series each rule remembers (baseline detectors, series expected with
/// `no_data`), and for how long a silent one is kept: per-series state stays bounded
/// whatever names the input invents. Pending and firing series are never forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesLimits {
    /// Series per rule; beyond, the longest silent are forgotten first.
    pub max: usize,
    /// A series without rows for this long is forgotten.
    pub ttl: Duration,
}

impl Default for SeriesLimits {
    /// 10,000 series per rule, forgotten after a day without rows.
    fn default() -> Self {
        Self {
            max: 10_000,
            ttl: Duration::from_secs(86_400),
        }
    }
}
