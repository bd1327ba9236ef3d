//! The pipeline file as written: serde structs, one per table. Every field's `///` doc is its
//! user reference (see `docs/pipeline.md`).
//!
//! Unknown keys are not rejected by serde here: the loader collects them with `serde_ignored`
//! so that *every* unknown key in the file is reported at once, with its location, instead of
//! only the first one that `deny_unknown_fields` would stop at.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// `[pipeline]`
#[derive(Debug, Deserialize, Default)]
pub struct RawMeta {
    /// Name of the pipeline, used in logs, metrics and as the Kafka transaction app id.
    pub name: Option<String>,
}

/// `[[sources]]` with `type = "file"`: NDJSON files, plain or gzip (detected by content).
#[derive(Debug, Deserialize)]
pub struct RawFileSource {
    /// Name of the source in logs and metrics; defaults to `file-<n>`.
    pub name: Option<String>,
    /// `logs` or `metrics`: the schema and table the records go to.
    pub kind: Spanned<String>,
    /// Files to read, in order (`-`: standard input); a path with `*`, `?` or `[` is a glob
    /// pattern, its files in name order (`"/var/log/app/*.ndjson"`), and one that matches
    /// nothing is an error at start, as a missing file is.
    pub paths: Vec<Spanned<String>>,
}

/// `[[sources]]` with `type = "otlp"`: an OTLP/HTTP receiver.
#[derive(Debug, Deserialize)]
pub struct RawOtlpSource {
    /// Name of the source; defaults to `otlp`.
    pub name: Option<String>,
    /// Address to listen on. Default `127.0.0.1:4318`.
    pub listen: Option<String>,
    /// Largest request body, e.g. `8MiB` (the default).
    pub max_body_bytes: Option<Spanned<RawSize>>,
    /// Bearer token requests must carry, usually `${OTLP_TOKEN}`.
    pub token: Option<String>,
    /// Requests queued for decoding before new ones get 503. Default 64.
    pub queue: Option<usize>,
}

/// `[privacy]`: per-field policies applied at ingest, before anything is archived or sent on.
#[derive(Debug, Deserialize, Default)]
pub struct RawPrivacy {
    /// The pseudonymization key, at least 16 bytes, from the environment:
    /// `key = "${VIGIL_PRIVACY_KEY}"`. Required when a field is pseudonymized.
    pub key: Option<String>,
    /// The policies, e.g. `{ field = "user_id", action = "pseudonymize" }`,
    /// `{ field = "email", action = "drop" }`,
    /// `{ field = "message", action = "redact", pattern = '\d{16}', replacement = "[card]" }`.
    #[serde(default)]
    pub fields: Vec<RawPrivacyField>,
}

/// One privacy policy.
#[derive(Debug, Deserialize)]
pub struct RawPrivacyField {
    /// The column, JSON key or metric label it applies to.
    pub field: Spanned<String>,
    /// `pseudonymize` (keyed HMAC-SHA-256), `drop` (null) or `redact` (regex replace).
    pub action: Spanned<String>,
    /// With `redact`: the regular expression to replace.
    pub pattern: Option<Spanned<String>>,
    /// With `redact`: what replaces each match. Default `[redacted]`.
    pub replacement: Option<String>,
}

/// `[[sources]]` with `type = "stdin"`: NDJSON on standard input.
#[derive(Debug, Deserialize)]
pub struct RawStdinSource {
    /// Name of the source in logs and metrics; defaults to `stdin`.
    pub name: Option<String>,
    /// `logs` or `metrics`.
    pub kind: Spanned<String>,
}

/// `[[sources]]` with `type = "generator"`: built-in telemetry of the deals system, logs and
/// metrics.
#[derive(Debug, Deserialize, Default)]
pub struct RawGeneratorSource {
    /// Name of the source; defaults to `generator`.
    pub name: Option<String>,
    /// Random seed; the same seed gives the same telemetry. Default 42.
    pub seed: Option<u64>,
    /// Event time of the first record, RFC 3339. Default `2025-06-02T09:00:00Z`, or the
    /// current time when `realtime = true`.
    pub start: Option<Spanned<String>>,
    /// Event-time span to generate, e.g. `"1h"`. Default `1h`.
    pub duration: Option<Spanned<String>>,
    /// Mean requests per second entering at the gateway. Default 20.
    pub rate: Option<Spanned<f64>>,
    /// Metrics reporting interval. Default `10s`.
    pub metrics_interval: Option<Spanned<String>>,
    /// Incidents to inject, `kind:service@start+duration[*intensity]`, e.g.
    /// `"errors:token-service@30m+15m"`.
    #[serde(default)]
    pub incidents: Vec<Spanned<String>>,
    /// Log a client span in the caller around every call to another service, as
    /// OpenTelemetry instrumentation does. Default false.
    pub client_spans: Option<bool>,
    /// The system simulated: `deals` (the monitoring overview's six services, the default) or
    /// `mesh:N`, a mesh of N services (8 to 500: a gateway, edge services, two tiers of
    /// internal services and databases, `edge-NN`, `svc-NN`, `backend-NN`, `db-NN`).
    pub topology: Option<Spanned<String>>,
    /// Pace output to the wall clock instead of generating as fast as possible. Default false.
    pub realtime: Option<bool>,
}

/// `[[sources]]` with `type = "kafka"`: a consumer group over one or more topics, each mapped
/// to a table. Offsets are committed into the archive's Delta commits (exactly once) and, after
/// each archive commit, to the group so lag tooling stays accurate.
#[derive(Debug, Deserialize)]
pub struct RawKafkaSource {
    /// Name of the source in logs and metrics; defaults to `kafka`.
    pub name: Option<String>,
    /// Bootstrap servers, `host:port[,host:port...]` (librdkafka `bootstrap.servers`).
    pub brokers: Spanned<String>,
    /// Consumer group id. Default `vigil`.
    pub group_id: Option<String>,
    /// Topics and the table each feeds: `[{ name = "telemetry.logs", kind = "logs" }, ...]`.
    pub topics: Vec<RawTopic>,
    /// Where a partition with no archived offset starts: `earliest` (default) or `latest`.
    pub start_from: Option<Spanned<String>>,
    /// Messages of one partition decoded together as one batch and handed to the archive; a
    /// batch ends early when a message of another partition arrives. Default 8192.
    pub max_batch_records: Option<usize>,
    /// Message bytes decoded together as one batch at most; a batch ends early when the next
    /// message would pass it (bounds memory with large messages). Default `16MiB`.
    pub max_batch_bytes: Option<Spanned<RawSize>>,
    /// Longest a batch waits for more records. Default `1s`.
    pub max_batch_wait: Option<Spanned<String>>,
    /// Upper bound on fetched but unprocessed messages, in bytes, for the consumer's one queue
    /// across its partitions (librdkafka `queued.max.messages.kbytes`; fetching pauses beyond
    /// it and resumes 10 ms after it drains, `fetch.queue.backoff.ms`). Default `16MiB`.
    pub max_fetch_buffer: Option<Spanned<RawSize>>,
    /// Send dead letters to this Kafka topic (raw bytes as the value, source position and
    /// reason in headers) instead of the `dead_letters` table. At least once.
    pub dead_letter_topic: Option<String>,
    /// Any librdkafka property, passed through as is: `security.protocol`, `sasl.mechanism`,
    /// `sasl.username`, `ssl.ca.location`, `session.timeout.ms`, ...
    #[serde(default)]
    pub properties: BTreeMap<String, Spanned<RawScalar>>,
}

/// A topic of a Kafka source.
#[derive(Debug, Deserialize)]
pub struct RawTopic {
    /// Topic name.
    pub name: Spanned<String>,
    /// `logs`, `metrics` or `spans`.
    pub kind: Spanned<String>,
    /// `json` (vigil's JSON lines, the default), `otlp_proto` or `otlp_json`.
    pub format: Option<Spanned<String>>,
}

/// A librdkafka property value: written as a string, number or boolean.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum RawScalar {
    /// A string.
    Text(String),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
}

impl RawScalar {
    /// The value as librdkafka takes it.
    pub fn to_property(&self) -> String {
        match self {
            Self::Text(s) => s.clone(),
            Self::Int(i) => i.to_string(),
            Self::Bool(b) => b.to_string(),
        }
    }
}

/// A size: a number of bytes or a string such as `"128MiB"`.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum RawSize {
    /// Bytes.
    Bytes(u64),
    /// With a unit.
    Text(String),
}

/// `[archive]`
#[derive(Debug, Deserialize, Default)]
pub struct RawArchive {
    /// Root of the archive: a path, `file://` or `s3://` URL. Tables live under it
    /// (`<url>/logs`, `<url>/metrics`, `<url>/dead_letters`). Default `./vigil-data`.
    pub url: Option<Spanned<String>>,
    /// Object-store options passed to `object_store`, e.g. `aws_endpoint`,
    /// `aws_access_key_id`, `aws_region`, `aws_allow_http`.
    #[serde(default)]
    pub storage_options: BTreeMap<String, String>,
    /// Exactly one vigil process ever writes this archive: allows an S3 store without
    /// conditional PUT (`AWS_S3_ALLOW_UNSAFE_RENAME`). Default false.
    pub single_writer: Option<bool>,
    /// `vigil run` runs a maintenance pass this often, e.g. `5m`. Default: never.
    pub maintain_every: Option<Spanned<String>>,
    /// When buffered rows are written out as Parquet and committed.
    #[serde(default)]
    pub flush: RawFlush,
    /// Where the warm and cold tiers live.
    #[serde(default)]
    pub tiers: RawTiers,
}

/// `[archive.tiers]`: each tier's root URL (default: `warm/` and `cold/` under the archive
/// root).
#[derive(Debug, Deserialize, Default)]
pub struct RawTiers {
    /// Root of the warm tier: a path, `file://` or `s3://` URL.
    pub warm: Option<Spanned<String>>,
    /// Root of the cold tier.
    pub cold: Option<Spanned<String>>,
}

/// `[archive.flush]`: a table is flushed when any limit is reached.
#[derive(Debug, Deserialize, Default)]
pub struct RawFlush {
    /// Rows buffered per table. Default 1 000 000.
    pub max_rows: Option<usize>,
    /// In-memory Arrow bytes buffered per table. Default `96MiB`.
    pub max_bytes: Option<Spanned<RawSize>>,
    /// Longest time a row waits before being committed. Default `30s`.
    pub interval: Option<Spanned<String>>,
}

/// `[schema]`
#[derive(Debug, Deserialize, Default)]
pub struct RawSchema {
    /// The `logs` schema.
    #[serde(default)]
    pub logs: RawLogSchema,
}

/// `[schema.logs]`
#[derive(Debug, Deserialize, Default)]
pub struct RawLogSchema {
    /// Fields promoted to typed columns: of `additional_data`,
    /// `"additional_data.status_code" = "int32"` or
    /// `"additional_data.status_code" = { type = "int32", column = "http_status" }`; or
    /// members of the record itself, as flat logs write them: `latency_ms = "float64"`.
    /// Promoting a field an existing archive lacks adds its column to the table (rows
    /// written before read it as null); a column whose type differs is refused.
    #[serde(default)]
    pub fields: BTreeMap<String, Spanned<RawField>>,
}

/// A promoted field's type, optionally with a column name.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawField {
    /// Just the type.
    Type(String),
    /// Type and column name.
    Full {
        /// int32, int64, float64, bool, string or timestamp.
        #[serde(rename = "type")]
        field_type: String,
        /// Column name; defaults to the key.
        column: Option<String>,
    },
}

/// `[retention]`: how long data stays in each tier.
#[derive(Debug, Deserialize, Default)]
pub struct RawRetention {
    /// Age until which data stays in the hot tier. Default `7d`.
    pub hot: Option<Spanned<String>>,
    /// Age until which data stays in the warm tier. Default `30d`.
    pub warm: Option<Spanned<String>>,
    /// Age after which data is deleted. Default `365d`.
    pub cold: Option<Spanned<String>>,
    /// How long a file removed by maintenance stays for queries already reading it.
    /// Default `1h`.
    pub grace: Option<Spanned<String>>,
}

/// `[decode]`
#[derive(Debug, Deserialize, Default)]
pub struct RawDecode {
    /// Records per decoded batch. Default 8192.
    pub batch_size: Option<usize>,
    /// Longer records are dead letters. Default `1MiB`.
    pub max_record_bytes: Option<Spanned<RawSize>>,
    /// Deeper records are dead letters. Default 64.
    pub max_depth: Option<usize>,
    /// Bytes of a bad record kept in its dead letter. Default `64KiB`.
    pub dead_letter_raw_limit: Option<Spanned<RawSize>>,
    /// Records whose event time is further than this ahead of vigil's clock are dead letters
    /// (`timestamp_out_of_range`): one wrong clock must not move detection's watermark or
    /// make a partition years away. `"off"`: only years after 9999 are refused. Default `10m`.
    pub max_future_skew: Option<Spanned<String>>,
    /// Records whose event time is further than this behind vigil's clock are dead letters.
    /// Default `"off"`: any age since year 0001 (backfills and replays of old data).
    pub max_past: Option<Spanned<String>>,
    /// The service of a record that names none, e.g. `"checkout"` for the logs of a library
    /// that writes no service (pino, zap, logrus). Default: such a record is a dead letter
    /// (`missing_field`).
    pub default_service: Option<Spanned<String>>,
    /// Read a promoted number or boolean field written as a string of one (`"503"` for an
    /// int32 column, `"true"` for a bool), and a metric's `value` written as a string of a
    /// number, as that value, as Elasticsearch's `coerce` does.
    /// Default `false`: such a record is a dead letter (`wrong_type`); a string that is no
    /// such value always is (`invalid_value`).
    pub coerce: Option<bool>,
}

/// `[[rules]]`: an alerting rule on a windowed signal.
#[derive(Debug, Deserialize)]
pub struct RawRule {
    /// Name of the rule, e.g. `Token Service Errors`.
    pub name: String,
    /// `logs` or `metrics`: the stream the signal is computed over.
    pub table: Spanned<String>,
    /// Window length, e.g. `"1m"`.
    pub window: Spanned<String>,
    /// How far apart windows start, e.g. `"1m"` with a `"5m"` window: hopping windows that
    /// overlap. Default: the window (tumbling). Must divide the window.
    pub hop: Option<Spanned<String>>,
    /// SQL aggregate computed per service per window, e.g.
    /// `"avg(CASE WHEN level = 'ERROR' THEN 1.0 ELSE 0.0 END)"`.
    pub signal: Spanned<String>,
    /// SQL filter applied before aggregating, e.g. `"service = 'token-service'"`.
    #[serde(rename = "where")]
    pub filter: Option<String>,
    /// Comparison and threshold, e.g. `"> 0.05"` or `"< 0.99"`; or `"baseline"`: the value
    /// deviates from the series' learned normal level (no threshold), and holds only while
    /// the window's own value lies away from it (not in the minutes after a single spike).
    pub condition: Spanned<String>,
    /// The value of a window in which a series seen before has no rows, e.g. `0` for a
    /// count. Default: no value (the condition does not hold).
    pub no_data: Option<Spanned<f64>>,
    /// How long the condition must hold before the alert fires. Default `0s`.
    #[serde(rename = "for")]
    pub for_: Option<Spanned<String>>,
    /// How long a firing alert keeps firing after its condition stopped holding, as
    /// Prometheus' `keep_firing_for`. Default `0s`.
    pub keep_firing_for: Option<Spanned<String>>,
    /// P1, P2, P3 or P4.
    pub severity: Spanned<String>,
    /// One-line description for the alert.
    pub summary: Option<String>,
    /// Link to the runbook.
    pub runbook_url: Option<String>,
    /// Labels added to the alert.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The rule watches a cause, not a symptom (a saturated resource): a service where it
    /// fires or is pending is where an incident it is connected to starts. Default `false`.
    pub cause: Option<bool>,
}

/// `[detect]`: how windows close.
#[derive(Debug, Deserialize, Default)]
pub struct RawDetect {
    /// How late a record may arrive and still count in its window: windows close when the
    /// watermark (latest event time minus this) passes their end. Default `30s`.
    pub allowed_lateness: Option<Spanned<String>>,
    /// Where anomaly events go as NDJSON, in addition to the topic. Optional.
    pub anomalies_file: Option<String>,
    /// Kafka topic the anomaly events are published to (key = fingerprint), through the
    /// brokers of the pipeline's Kafka source. Optional.
    pub anomaly_topic: Option<String>,
    /// Alertmanagers the anomalies are posted to as alerts (`POST /api/v2/alerts`), by base
    /// URL, e.g. `["http://alertmanager:9093"]`; every one of an HA cluster. Optional.
    pub alertmanagers: Option<Vec<Spanned<String>>>,
    /// How often firing alerts are posted again (Prometheus' `resend-delay`); each post says
    /// the alert ends four of these later unless posted again. Default `1m`.
    pub alertmanager_resend: Option<Spanned<String>>,
    /// Replicas share detection through Kafka: each folds its own partitions' rows into
    /// partial aggregate states and closed traces and sends them to `partials_topic`, whose
    /// one partition's owner merges everyone's, closes the windows, files incidents and
    /// publishes the anomalies. Needs a Kafka source. Default `false`: each replica detects
    /// over its own partitions only, right with one replica.
    pub distributed: Option<bool>,
    /// The internal topic of a distributed pipeline (one partition). Default
    /// `<pipeline name>.partials`.
    pub partials_topic: Option<String>,
    /// Correlate: assemble traces, learn the service graph, group anomalies into incidents
    /// with a root cause. Default `true` (when the pipeline has rules).
    pub correlate: Option<bool>,
    /// A trace is assembled from the records within this much event time of its first.
    /// Default `10s`.
    pub trace_timeout: Option<Spanned<String>>,
    /// Window of the `service_edges` and `error_origin` tables. Default `1m`.
    pub correlation_window: Option<Spanned<String>>,
    /// An incident stays open this long after its last anomaly resolved. Default `10m`.
    pub incident_gap: Option<Spanned<String>>,
    /// The trace evidence raises anomalies of its own, rule `Service Own Time` (P3): a service
    /// whose own time per trace (its callers' client spans to it included), or the time
    /// those client spans add to its spans call by call, stood twentyfold above its usual for
    /// two correlation windows, as a network delay to it does while its own spans look
    /// normal; not when every caller whose calls to it slowed is slow on its calls to other
    /// services too (a caller starved of CPU). Default `true`.
    pub own_time_alarms: Option<bool>,
    /// Open traces beyond which the oldest are closed early (bounds memory). Default 1000000.
    pub max_open_traces: Option<usize>,
    /// Log column holding a span's duration in milliseconds, used to place spans without
    /// `parent_span_id` by timing. Default `processing_time_ms`.
    pub duration_column: Option<String>,
    /// Log column holding an HTTP-like status: 500 or more marks a span failed, as ERROR and
    /// CRITICAL do. Default `status_code`.
    pub status_column: Option<String>,
    /// Series each rule remembers (baseline detectors, series expected with `no_data`);
    /// beyond, the longest silent are forgotten. Pending and firing series are kept.
    /// Default 10000.
    pub max_series: Option<usize>,
    /// A series without rows for this long is forgotten. Default `1d`.
    pub series_ttl: Option<Spanned<String>>,
}
