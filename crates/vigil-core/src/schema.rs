//! Arrow schemas of the archive tables and of the batches the decoder produces.
//!
//! Every table carries a `date` column (UTC day of the event) used as the Delta partition
//! column; the archive writes it into the Delta log, not into the Parquet files.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

use crate::error::InvalidInput;

/// Column names shared by the schemas.
pub mod col {
    /// Event time, `Timestamp(Microsecond, "UTC")`.
    pub const TIMESTAMP: &str = "timestamp";
    /// Partition column: the UTC day of `timestamp` (or of `received_at` for dead letters).
    pub const DATE: &str = "date";
    /// Normalised log level.
    pub const LEVEL: &str = "level";
    /// Emitting service.
    pub const SERVICE: &str = "service";
    /// Trace id.
    pub const TRACE_ID: &str = "trace_id";
    /// Span id.
    pub const SPAN_ID: &str = "span_id";
    /// Parent span id.
    pub const PARENT_SPAN_ID: &str = "parent_span_id";
    /// User id.
    pub const USER_ID: &str = "user_id";
    /// Log message.
    pub const MESSAGE: &str = "message";
    /// What is left of `additional_data` after promotion, as JSON text.
    pub const ADDITIONAL_DATA: &str = "additional_data";
    /// Top-level fields the schema does not know, as JSON text.
    pub const EXTRA: &str = "extra";
    /// Metric name.
    pub const NAME: &str = "name";
    /// Metric type: gauge, counter or histogram.
    pub const TYPE: &str = "type";
    /// Metric value.
    pub const VALUE: &str = "value";
    /// Metric labels.
    pub const LABELS: &str = "labels";
}

/// Which stream a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// Structured log records.
    Logs,
    /// Metric samples.
    Metrics,
    /// Trace spans (from OTLP).
    Spans,
}

impl RecordKind {
    /// The archive table the kind lands in.
    pub fn table(self) -> &'static str {
        match self {
            RecordKind::Logs => "logs",
            RecordKind::Metrics => "metrics",
            RecordKind::Spans => "spans",
        }
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.table())
    }
}

impl FromStr for RecordKind {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "logs" | "log" => Ok(RecordKind::Logs),
            "metrics" | "metric" => Ok(RecordKind::Metrics),
            "spans" | "span" | "traces" => Ok(RecordKind::Spans),
            other => Err(InvalidInput(format!(
                "unknown record kind `{other}`, expected `logs`, `metrics` or `spans`"
            ))),
        }
    }
}

/// The type of a field promoted out of `additional_data` into its own column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// 32-bit signed integer; JSON integers (or floats with no fraction) in range.
    Int32,
    /// 64-bit signed integer.
    Int64,
    /// 64-bit float; any JSON number.
    Float64,
    /// JSON `true` / `false`.
    Boolean,
    /// JSON string.
    Utf8,
    /// RFC 3339 string or an epoch number (seconds or milliseconds), stored like `timestamp`.
    Timestamp,
}

impl FieldType {
    /// Every type, in the order pipeline files list them.
    pub const ALL: [FieldType; 6] = [
        FieldType::Int32,
        FieldType::Int64,
        FieldType::Float64,
        FieldType::Boolean,
        FieldType::Utf8,
        FieldType::Timestamp,
    ];

    /// The names of [`FieldType::ALL`], for messages: `int32, int64, …`.
    pub fn names() -> String {
        Self::ALL.map(FieldType::name).join(", ")
    }

    /// The Arrow type of the column.
    pub fn data_type(self) -> DataType {
        match self {
            FieldType::Int32 => DataType::Int32,
            FieldType::Int64 => DataType::Int64,
            FieldType::Float64 => DataType::Float64,
            FieldType::Boolean => DataType::Boolean,
            FieldType::Utf8 => DataType::Utf8,
            FieldType::Timestamp => timestamp_type(),
        }
    }

    /// The name used in pipeline files.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Int32 => "int32",
            FieldType::Int64 => "int64",
            FieldType::Float64 => "float64",
            FieldType::Boolean => "bool",
            FieldType::Utf8 => "string",
            FieldType::Timestamp => "timestamp",
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FieldType {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "int32" | "int" => FieldType::Int32,
            "int64" | "long" => FieldType::Int64,
            "float64" | "float" | "double" => FieldType::Float64,
            "bool" | "boolean" => FieldType::Boolean,
            "string" | "utf8" => FieldType::Utf8,
            "timestamp" => FieldType::Timestamp,
            other => {
                return Err(InvalidInput(format!(
                    "unknown field type `{other}`, expected one of {}",
                    FieldType::names()
                )));
            }
        })
    }
}

/// A field of `additional_data`, or of the record itself, that gets its own typed column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotedField {
    /// Key inside `additional_data` (a direct child), or of the record when `top_level`.
    pub key: String,
    /// A member of the record itself (flat logs: `{"latency_ms": 12, ...}`), not of
    /// `additional_data`.
    pub top_level: bool,
    /// Column name in the archive; the key itself unless renamed.
    pub column: String,
    /// Column type; values of another JSON type make the record a dead letter.
    pub field_type: FieldType,
}

impl PromotedField {
    /// A field of `additional_data` promoted to a column of its own name.
    pub fn nested(key: &str, field_type: FieldType) -> Self {
        Self {
            key: key.into(),
            top_level: false,
            column: key.into(),
            field_type,
        }
    }

    /// Whether `key` names a field every log record has (a fixed column, `additional_data`):
    /// a member of the record under it cannot be promoted.
    pub fn is_record_field(key: &str) -> bool {
        LOG_FIXED_COLUMNS.contains(&key) || key == col::ADDITIONAL_DATA
    }

    /// Where the field is in a record: `additional_data.key`, or `key` at the top level.
    pub fn path(&self) -> String {
        if self.top_level {
            self.key.clone()
        } else {
            format!("additional_data.{}", self.key)
        }
    }
}

/// The Arrow type used for every event-time column.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The schema of decoded log batches and of the `logs` table.
#[derive(Debug, Clone)]
pub struct LogSchema {
    promoted: Arc<[PromotedField]>,
    schema: SchemaRef,
}

/// Columns every log batch has before the promoted ones.
pub const LOG_FIXED_COLUMNS: [&str; 8] = [
    col::TIMESTAMP,
    col::LEVEL,
    col::SERVICE,
    col::TRACE_ID,
    col::SPAN_ID,
    col::PARENT_SPAN_ID,
    col::USER_ID,
    col::MESSAGE,
];

impl LogSchema {
    /// Builds the schema, rejecting promoted columns that collide with each other or with the
    /// fixed columns.
    pub fn new(promoted: Vec<PromotedField>) -> Result<Self, InvalidInput> {
        let reserved =
            LOG_FIXED_COLUMNS
                .iter()
                .chain([&col::ADDITIONAL_DATA, &col::EXTRA, &col::DATE]);
        let mut seen: HashSet<&str> = reserved.copied().collect();
        let mut keys = HashSet::new();
        for p in &promoted {
            if p.top_level && PromotedField::is_record_field(&p.key) {
                return Err(InvalidInput(format!(
                    "`{}` is a field every log record has; only other fields can be promoted",
                    p.key
                )));
            }
            if !seen.insert(p.column.as_str()) {
                return Err(InvalidInput(format!(
                    "promoted field `{}` would be column `{}`, which already exists; rename it",
                    p.path(),
                    p.column
                )));
            }
            if !keys.insert((p.top_level, p.key.as_str())) {
                return Err(InvalidInput(format!("`{}` is promoted twice", p.path())));
            }
        }
        let utf8 = |name: &str| Field::new(name, DataType::Utf8, true);
        let mut fields = vec![
            Field::new(col::TIMESTAMP, timestamp_type(), false),
            utf8(col::LEVEL),
            Field::new(col::SERVICE, DataType::Utf8, false),
            utf8(col::TRACE_ID),
            utf8(col::SPAN_ID),
            utf8(col::PARENT_SPAN_ID),
            utf8(col::USER_ID),
            utf8(col::MESSAGE),
        ];
        fields.extend(
            promoted
                .iter()
                .map(|p| Field::new(&p.column, p.field_type.data_type(), true)),
        );
        fields.push(utf8(col::ADDITIONAL_DATA));
        fields.push(utf8(col::EXTRA));
        fields.push(Field::new(col::DATE, DataType::Date32, false));
        Ok(Self {
            promoted: promoted.into(),
            schema: Arc::new(Schema::new(fields)),
        })
    }

    /// The promoted fields, in column order.
    pub fn promoted(&self) -> &[PromotedField] {
        &self.promoted
    }

    /// The Arrow schema, `date` last.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }
}

impl LogSchema {
    /// The seed's log format: `additional_data.status_code` as `int32` and
    /// `additional_data.processing_time_ms` as `float64`, the two fields its alerts read.
    /// What `vigil ingest` and the demo use without a pipeline file.
    pub fn seed() -> Self {
        Self::new(vec![
            PromotedField::nested("status_code", FieldType::Int32),
            PromotedField::nested("processing_time_ms", FieldType::Float64),
        ])
        .expect("the seed's fields do not collide")
    }
}

impl Default for LogSchema {
    fn default() -> Self {
        Self::new(Vec::new()).expect("no promoted fields cannot collide")
    }
}

/// The schema of decoded metric batches and of the `metrics` table.
pub fn metric_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(col::TIMESTAMP, timestamp_type(), false),
        Field::new(col::NAME, DataType::Utf8, false),
        Field::new(col::TYPE, DataType::Utf8, true),
        Field::new(col::SERVICE, DataType::Utf8, false),
        Field::new(col::VALUE, DataType::Float64, true),
        Field::new(col::LABELS, labels_type(), true),
        Field::new(col::EXTRA, DataType::Utf8, true),
        Field::new(col::DATE, DataType::Date32, false),
    ]))
}

/// Columns of the `spans` table beyond the shared ones (`timestamp` is the span's start).
pub mod span {
    /// When the span ended, `Timestamp(Microsecond, "UTC")`.
    pub const END_TIME: &str = "end_time";
    /// `end_time - timestamp` in milliseconds.
    pub const DURATION_MS: &str = "duration_ms";
    /// The operation, e.g. `GET /checkout`.
    pub const NAME: &str = "name";
    /// `server`, `client`, `internal`, `producer`, `consumer` or `unspecified`.
    pub const KIND: &str = "kind";
    /// `unset`, `ok` or `error`.
    pub const STATUS: &str = "status";
    /// The status description, if any.
    pub const STATUS_MESSAGE: &str = "status_message";
    /// `http.response.status_code` (or the older `http.status_code`), if given.
    pub const HTTP_STATUS: &str = "http_status";
    /// The span's other attributes, as a JSON object.
    pub const ATTRIBUTES: &str = "attributes";
    /// Resource attributes other than `service.name`, scope, events and links, as JSON.
    pub const EXTRA: &str = super::col::EXTRA;
}

/// The schema of the `spans` table: one row per span, `timestamp` its start.
pub fn span_schema() -> SchemaRef {
    let utf8 = |name: &str| Field::new(name, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new(col::TIMESTAMP, timestamp_type(), false),
        Field::new(span::END_TIME, timestamp_type(), false),
        Field::new(span::DURATION_MS, DataType::Float64, false),
        Field::new(col::SERVICE, DataType::Utf8, false),
        Field::new(col::TRACE_ID, DataType::Utf8, false),
        Field::new(col::SPAN_ID, DataType::Utf8, false),
        utf8(col::PARENT_SPAN_ID),
        utf8(span::NAME),
        utf8(span::KIND),
        utf8(span::STATUS),
        utf8(span::STATUS_MESSAGE),
        Field::new(span::HTTP_STATUS, DataType::Int32, true),
        utf8(span::ATTRIBUTES),
        utf8(span::EXTRA),
        Field::new(col::DATE, DataType::Date32, false),
    ]))
}

/// `Map<Utf8, Utf8>` with the field names Delta, Parquet and DuckDB expect.
pub fn labels_type() -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            "key_value",
            DataType::Struct(Fields::from(vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("value", DataType::Utf8, true),
            ])),
            false,
        )),
        false,
    )
}

/// Dead-letter columns.
pub mod dead {
    /// When vigil rejected the record.
    pub const RECEIVED_AT: &str = "received_at";
    /// `logs` or `metrics`: the table the record was meant for.
    pub const KIND: &str = "kind";
    /// File path, `-` for stdin, or topic.
    pub const SOURCE: &str = "source";
    /// Kafka partition, null for files.
    pub const PARTITION: &str = "partition";
    /// Line number (files) or offset (Kafka).
    pub const OFFSET: &str = "offset";
    /// Machine-readable reason, e.g. `invalid_json`.
    pub const REASON_CODE: &str = "reason_code";
    /// Human-readable reason naming the field and what was wrong.
    pub const REASON: &str = "reason";
    /// The raw bytes, truncated to the dead-letter size limit.
    pub const RAW: &str = "raw";
    /// Length of the original record in bytes.
    pub const RAW_LEN: &str = "raw_len";
}

/// The schema of the `dead_letters` table.
pub fn dead_letter_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(dead::RECEIVED_AT, timestamp_type(), false),
        Field::new(dead::KIND, DataType::Utf8, false),
        Field::new(dead::SOURCE, DataType::Utf8, false),
        Field::new(dead::PARTITION, DataType::Int32, true),
        Field::new(dead::OFFSET, DataType::Int64, false),
        Field::new(dead::REASON_CODE, DataType::Utf8, false),
        Field::new(dead::REASON, DataType::Utf8, false),
        Field::new(dead::RAW, DataType::Binary, false),
        Field::new(dead::RAW_LEN, DataType::Int64, false),
        Field::new(col::DATE, DataType::Date32, false),
    ]))
}

/// Column names of the `anomalies` table: the anomaly event of DESIGN.md, one row per event.
pub mod anomaly {
    /// Unique per episode.
    pub const ID: &str = "id";
    /// Stable per rule and series; the Kafka key.
    pub const FINGERPRINT: &str = "fingerprint";
    /// `firing` or `resolved`.
    pub const STATUS: &str = "status";
    /// The rule's name.
    pub const RULE: &str = "rule";
    /// `threshold` or `baseline`.
    pub const KIND: &str = "kind";
    /// P1..P4.
    pub const SEVERITY: &str = "severity";
    /// The series' service.
    pub const SERVICE: &str = "service";
    /// The signal's value in the window that caused the event.
    pub const VALUE: &str = "value";
    /// The rule's threshold (null for baselines).
    pub const THRESHOLD: &str = "threshold";
    /// Window length, e.g. `1m`.
    pub const WINDOW: &str = "window";
    /// The rule's `for`, e.g. `10m`.
    pub const FOR: &str = "for";
    /// When the episode started.
    pub const STARTS_AT: &str = "starts_at";
    /// When it ended (null while firing).
    pub const ENDS_AT: &str = "ends_at";
    /// When vigil detected the change; its day is the partition.
    pub const DETECTED_AT: &str = "detected_at";
    /// The rule's labels, JSON object.
    pub const LABELS: &str = "labels";
    /// Summary, runbook URL, ..., JSON object.
    pub const ANNOTATIONS: &str = "annotations";
    /// The incident (correlation), JSON, null until correlated.
    pub const INCIDENT: &str = "incident";
}

/// The schema of the `anomalies` table.
pub fn anomaly_schema() -> SchemaRef {
    use anomaly::*;
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        text(ID, false),
        text(FINGERPRINT, false),
        text(STATUS, false),
        text(RULE, false),
        text(KIND, false),
        text(SEVERITY, false),
        text(SERVICE, false),
        Field::new(VALUE, DataType::Float64, true),
        Field::new(THRESHOLD, DataType::Float64, true),
        text(WINDOW, false),
        text(FOR, false),
        Field::new(STARTS_AT, timestamp_type(), false),
        Field::new(ENDS_AT, timestamp_type(), true),
        Field::new(DETECTED_AT, timestamp_type(), false),
        text(LABELS, false),
        text(ANNOTATIONS, false),
        text(INCIDENT, true),
        Field::new(col::DATE, DataType::Date32, false),
    ]))
}

/// Column names of the `service_edges` table: calls between services learned from traces,
/// one row per caller, callee and window.
pub mod edge {
    /// Window start (event time of the traces' first records).
    pub const WINDOW_START: &str = "window_start";
    /// Window end (exclusive).
    pub const WINDOW_END: &str = "window_end";
    /// The calling service.
    pub const CALLER: &str = "caller";
    /// The called service.
    pub const CALLEE: &str = "callee";
    /// Calls seen.
    pub const CALLS: &str = "calls";
    /// Calls whose callee span failed.
    pub const ERRORS: &str = "errors";
    /// Mean callee span duration, ms.
    pub const LATENCY_AVG_MS: &str = "latency_avg_ms";
    /// 95th percentile of callee span duration (t-digest), ms.
    pub const LATENCY_P95_MS: &str = "latency_p95_ms";
    /// Longest callee span, ms.
    pub const LATENCY_MAX_MS: &str = "latency_max_ms";
}

/// The schema of the `service_edges` table.
pub fn service_edges_schema() -> SchemaRef {
    use edge::*;
    Arc::new(Schema::new(vec![
        Field::new(WINDOW_START, timestamp_type(), false),
        Field::new(WINDOW_END, timestamp_type(), false),
        Field::new(CALLER, DataType::Utf8, false),
        Field::new(CALLEE, DataType::Utf8, false),
        Field::new(CALLS, DataType::Int64, false),
        Field::new(ERRORS, DataType::Int64, false),
        Field::new(LATENCY_AVG_MS, DataType::Float64, false),
        Field::new(LATENCY_P95_MS, DataType::Float64, false),
        Field::new(LATENCY_MAX_MS, DataType::Float64, false),
        Field::new(col::DATE, DataType::Date32, false),
    ]))
}

/// Column names of the `error_origin` table: per window, the services where failing traces
/// started.
pub mod origin {
    /// Window start (event time of the traces' first records).
    pub const WINDOW_START: &str = "window_start";
    /// Window end (exclusive).
    pub const WINDOW_END: &str = "window_end";
    /// The service where the failures started.
    pub const SERVICE: &str = "service";
    /// Failing traces whose failure started there.
    pub const FAILING_TRACES: &str = "failing_traces";
    /// A few of their trace ids.
    pub const SAMPLE_TRACE_IDS: &str = "sample_trace_ids";
}

/// The schema of the `error_origin` table.
pub fn error_origin_schema() -> SchemaRef {
    use origin::*;
    Arc::new(Schema::new(vec![
        Field::new(WINDOW_START, timestamp_type(), false),
        Field::new(WINDOW_END, timestamp_type(), false),
        Field::new(SERVICE, DataType::Utf8, false),
        Field::new(FAILING_TRACES, DataType::Int64, false),
        Field::new(
            SAMPLE_TRACE_IDS,
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            false,
        ),
        Field::new(col::DATE, DataType::Date32, false),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promoted_columns_sit_between_fixed_and_json_columns() {
        let s =
            LogSchema::new(vec![PromotedField::nested("status_code", FieldType::Int32)]).unwrap();
        let names: Vec<_> = s
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names[8], "status_code");
        assert_eq!(&names[9..], ["additional_data", "extra", "date"]);
    }

    #[test]
    fn promoted_column_colliding_with_fixed_column_is_rejected() {
        let err = LogSchema::new(vec![PromotedField {
            column: "service".into(),
            ..PromotedField::nested("svc", FieldType::Utf8)
        }])
        .unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        let top = |key: &str| PromotedField {
            top_level: true,
            column: format!("top_{key}"),
            ..PromotedField::nested(key, FieldType::Utf8)
        };
        let err = LogSchema::new(vec![top("message")]).unwrap_err();
        assert!(err.to_string().contains("every log record has"), "{err}");
        // The same key at the top level and inside additional_data: two fields.
        LogSchema::new(vec![
            top("region"),
            PromotedField::nested("region", FieldType::Utf8),
        ])
        .unwrap();
        let again = PromotedField {
            column: "region_again".into(),
            ..top("region")
        };
        let err = LogSchema::new(vec![top("region"), again]).unwrap_err();
        assert!(
            err.to_string().contains("`region` is promoted twice"),
            "{err}"
        );
    }
}
