//! The validated pipeline: what the rest of vigil runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vigil_core::schema::{LogSchema, RecordKind};

/// A validated pipeline file.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Pipeline name.
    pub name: String,
    /// Where records come from.
    pub sources: Vec<Source>,
    /// The `logs` schema, with promoted fields.
    pub log_schema: LogSchema,
    /// Decoder limits.
    pub decode: Decode,
    /// Where records go.
    pub archive: Archive,
    /// Tier ages.
    pub retention: Retention,
    /// Alerting rules.
    pub rules: Vec<RuleSpec>,
    /// Window closing.
    pub detect: Detect,
}

/// An alerting rule as written in the pipeline file, validated.
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
    /// The signal's value in a window where a known series has no rows (e.g. `0` for a
    /// count); `None`: no value, which never holds.
    pub no_data: Option<f64>,
    /// How long the condition must hold.
    pub for_: Duration,
    /// How urgent its alerts are.
    pub severity: Severity,
    /// Summary, runbook URL.
    pub annotations: BTreeMap<String, String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
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
    /// baseline detector, one per series) makes likely: no threshold to set. A lasting change
    /// becomes the new normal as the baseline adapts, and the alert then resolves.
    Baseline,
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

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "P1" => Ok(Self::P1),
            "P2" => Ok(Self::P2),
            "P3" => Ok(Self::P3),
            "P4" => Ok(Self::P4),
            _ => Err(format!("unknown severity `{s}`, expected P1, P2, P3 or P4")),
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
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            ">" => Ok(Self::Above),
            ">=" => Ok(Self::AtLeast),
            "<" => Ok(Self::Below),
            "<=" => Ok(Self::AtMost),
            _ => Err(format!("unknown comparison `{s}`, expected >, >=, < or <=")),
        }
    }
}

/// Window closing for detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detect {
    /// How late a record may be and still count.
    pub allowed_lateness: Duration,
    /// NDJSON file for anomaly events.
    pub anomalies_file: Option<PathBuf>,
    /// Kafka topic for anomaly events.
    pub anomaly_topic: Option<String>,
    /// Cross-service correlation; `None` when turned off.
    pub correlation: Option<Correlation>,
}

impl Default for Detect {
    fn default() -> Self {
        Self {
            allowed_lateness: Duration::from_secs(30),
            anomalies_file: None,
            anomaly_topic: None,
            correlation: Some(Correlation::default()),
        }
    }
}

/// Cross-service correlation: traces, the service graph, incidents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correlation {
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
}

impl Default for Correlation {
    fn default() -> Self {
        Self {
            trace_timeout: Duration::from_secs(10),
            window: Duration::from_secs(60),
            incident_gap: Duration::from_secs(600),
            max_open_traces: 1_000_000,
            duration_column: "processing_time_ms".into(),
            status_column: "status_code".into(),
        }
    }
}

/// A source of records.
#[derive(Debug, Clone)]
pub struct Source {
    /// Name used in logs, metrics and dead letters.
    pub name: String,
    /// What it reads.
    pub kind: SourceKind,
}

/// The kinds of source.
#[derive(Debug, Clone)]
pub enum SourceKind {
    /// NDJSON files, plain or gzip.
    File {
        /// Which table the records go to.
        records: RecordKind,
        /// Files, read in order.
        paths: Vec<PathBuf>,
    },
    /// NDJSON on standard input.
    Stdin {
        /// Which table the records go to.
        records: RecordKind,
    },
    /// A Kafka consumer group.
    Kafka(Kafka),
    /// The built-in generator (logs and metrics).
    Generator {
        /// What to generate.
        config: vigil_gen::Config,
        /// Pace to the wall clock.
        realtime: bool,
    },
}

/// A Kafka source: a consumer group over topics, each feeding one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kafka {
    /// Bootstrap servers.
    pub brokers: String,
    /// Consumer group id.
    pub group_id: String,
    /// Topics, each with the table it feeds.
    pub topics: Vec<(String, RecordKind)>,
    /// Start from the earliest offset (else the latest) where the archive has none.
    pub start_earliest: bool,
    /// Records per decoded batch.
    pub max_batch_records: usize,
    /// Longest a batch waits for more records.
    pub max_batch_wait: Duration,
    /// Fetched-but-unprocessed bytes per partition before fetching pauses.
    pub max_fetch_buffer: usize,
    /// librdkafka properties, applied last (they override vigil's defaults).
    pub properties: BTreeMap<String, String>,
    /// Send dead letters to this topic instead of the `dead_letters` table.
    pub dead_letter_topic: Option<String>,
}

/// Decoder limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decode {
    /// Records per batch.
    pub batch_size: usize,
    /// Longest record.
    pub max_record_bytes: usize,
    /// Deepest nesting.
    pub max_depth: usize,
    /// Raw bytes kept per dead letter.
    pub dead_letter_raw_limit: usize,
}

impl Default for Decode {
    fn default() -> Self {
        Self {
            batch_size: 8192,
            max_record_bytes: 1 << 20,
            max_depth: 64,
            dead_letter_raw_limit: 64 << 10,
        }
    }
}

/// The archive.
#[derive(Debug, Clone)]
pub struct Archive {
    /// Root URL or path.
    pub url: String,
    /// object_store options.
    pub storage_options: BTreeMap<String, String>,
    /// Flush limits.
    pub flush: Flush,
}

/// When a table's buffer is written and committed: whichever limit is reached first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flush {
    /// Rows.
    pub max_rows: usize,
    /// In-memory bytes.
    pub max_bytes: usize,
    /// Age of the oldest buffered row.
    pub interval: Duration,
}

impl Default for Flush {
    fn default() -> Self {
        Self {
            max_rows: 1_000_000,
            max_bytes: 256 << 20,
            interval: Duration::from_secs(30),
        }
    }
}

/// Tier ages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Hot until this age.
    pub hot: Duration,
    /// Warm until this age.
    pub warm: Duration,
    /// Deleted after this age.
    pub cold: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            hot: Duration::from_secs(7 * 86_400),
            warm: Duration::from_secs(30 * 86_400),
            cold: Duration::from_secs(365 * 86_400),
        }
    }
}
