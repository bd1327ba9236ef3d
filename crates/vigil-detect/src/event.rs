//! The anomaly event of DESIGN.md: what rules emit, correlation annotates with its incident,
//! and the pipeline publishes (anomaly topic, `anomalies` table, NDJSON).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::spec::Severity;

/// An event's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The condition has held for `for`.
    Firing,
    /// It no longer holds.
    Resolved,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        })
    }
}

/// A series whose rule's condition holds but not yet for the rule's `for`: no event yet, but
/// evidence an incident may use (a fault shorter than `for` never fires, yet explains what
/// does).
#[derive(Debug, Clone, PartialEq)]
pub struct PendingAnomaly {
    /// The service the series belongs to.
    pub service: String,
    /// Start of the first window in which the condition held (µs).
    pub since: i64,
    /// The rule's name.
    pub rule: String,
}

/// The anomaly event of DESIGN.md, one per state change; its Kafka key is `fingerprint`.
///
/// Times are microseconds since the epoch until the event is serialised: as JSON they are
/// RFC 3339 strings (the contract), in the `anomalies` table timestamps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyEvent {
    /// Unique per episode: the fingerprint and the episode's start.
    pub id: String,
    /// Stable per rule and series.
    pub fingerprint: String,
    /// `firing` or `resolved`.
    pub status: Status,
    /// The rule's name.
    pub rule: String,
    /// `threshold` or `baseline`.
    pub kind: String,
    /// P1–P4.
    pub severity: Severity,
    /// The service the series belongs to.
    pub service: String,
    /// The signal's value in the window that caused the event (null for no data).
    pub value: Option<f64>,
    /// The rule's threshold (null for baselines).
    pub threshold: Option<f64>,
    /// Window length, e.g. `1m`.
    pub window: String,
    /// The rule's `for`, e.g. `10m`.
    #[serde(rename = "for")]
    pub for_: String,
    /// When the episode started (µs; RFC 3339 in JSON).
    #[serde(with = "rfc3339")]
    pub starts_at: i64,
    /// When it ended; null while firing (µs; RFC 3339 in JSON).
    #[serde(with = "rfc3339::option")]
    pub ends_at: Option<i64>,
    /// When vigil detected the change (µs; RFC 3339 in JSON).
    #[serde(with = "rfc3339")]
    pub detected_at: i64,
    /// The rule's labels.
    pub labels: BTreeMap<String, String>,
    /// Summary, runbook URL, ...
    pub annotations: BTreeMap<String, String>,
    /// The incident this anomaly belongs to (correlation); null without correlation.
    pub incident: Option<IncidentView>,
}

/// Event times as RFC 3339 strings in JSON (`#[serde(with = "rfc3339")]`).
mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use vigil_core::time::{format_rfc3339, parse_rfc3339_micros};

    pub fn serialize<S: Serializer>(micros: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_rfc3339(*micros))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse_rfc3339_micros(text.as_bytes())
            .ok_or_else(|| D::Error::custom(format!("`{text}` is not an RFC 3339 time")))
    }

    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(micros: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
            match micros {
                Some(m) => super::serialize(m, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
            #[derive(Deserialize)]
            struct Time(#[serde(with = "super")] i64);
            Ok(Option::<Time>::deserialize(d)?.map(|t| t.0))
        }
    }
}

/// The incident of an anomaly as it stands: what the event's `incident` field holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentView {
    /// Stable for the incident's life.
    pub id: String,
    /// The service the evidence points to.
    pub root_cause_service: String,
    /// 0..1.
    pub confidence: f64,
    /// Fingerprints of the incident's anomalies.
    pub related: Vec<String>,
    /// The services with anomalies in it.
    pub services: Vec<String>,
    /// Sample trace ids and the scores behind the choice.
    pub evidence: IncidentEvidence,
}

/// Why the root cause was chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentEvidence {
    /// Failing traces that started at the root cause (or, without failures, its slowest).
    pub sample_trace_ids: Vec<String>,
    /// Failing traces of the incident's services by origin, above the usual.
    pub error_origins: BTreeMap<String, f64>,
    /// In an incident without failures to go by: the services (the incident's, and those they
    /// call) whose own time per trace rose well beyond its usual, by how much (ms).
    #[serde(default)]
    pub self_time_added_ms: BTreeMap<String, f64>,
    /// The service whose anomaly started first.
    pub first_anomaly: String,
    /// Each candidate's score.
    pub scores: BTreeMap<String, f64>,
}
