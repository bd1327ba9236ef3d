//! OTLP → Arrow: OpenTelemetry's logs, spans and metrics, in protobuf or OTLP/JSON, into
//! the same column builders the JSON line decoder fills.
//!
//! ```text
//! payload (ExportLogs/Trace/MetricsServiceRequest) ─► prost / serde ─► per record:
//!     logs    → `logs`    resource `service.name` → service, severity → level, body → message,
//!                         ids as hex, attributes → promoted columns, the rest → additional_data
//!     spans   → `spans`   one row per span, `timestamp` its start
//!     metrics → `metrics` one row per gauge or sum point; histograms as Prometheus buckets
//! ```
//!
//! A payload is one message (a Kafka record, an HTTP body). One that does not decode is a
//! dead letter with its raw bytes; within a good payload, a record that cannot be stored (no
//! time, an implausible time, an invalid trace id) is a dead letter of its own, its raw bytes
//! the record re-encoded the way the payload was, and the rest of the payload is kept.
//!
//! Nothing is dropped: what has no column of its own (resource attributes beyond
//! `service.name`, the scope, span events and links, a metric's unit and temporality) is
//! kept as JSON text in `extra`, and attributes not promoted to a column in `additional_data`
//! (logs) or `attributes` (spans).
//!
//! Histograms are stored the way Prometheus stores them, so SQL can turn them into
//! percentiles: per point, one `<name>_bucket` row per bucket with the cumulative count and
//! an `le` label (its upper bound, `+Inf` last), a `<name>_count` and a `<name>_sum` row (and
//! `_min`/`_max` when given). Exponential histograms become the same `le` buckets, their
//! bounds `base^(index+1)` with `base = 2^(2^-scale)`. Summaries become one `<name>` row per
//! quantile (label `quantile`), with `_count` and `_sum`.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, Date32Builder, Float64Builder, Int32Builder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::SchemaRef;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{
    Metric, exponential_histogram_data_point::Buckets, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use vigil_core::schema::{FieldType, LogSchema, RecordKind, metric_schema};
use vigil_core::time::date32_from_micros;

use crate::dead::{DeadLetters, ReasonCode, Rejection};
use crate::decoder::{DecodeStats, DecodedBatch, DecoderOptions};
use crate::groups::{Columns, Groups, sized_like};
use crate::logs::{LogColumns, LogRow, Value, normalize_level};
use crate::metrics::{MetricColumns, Sample};
use crate::rows::TimeBounds;
use crate::tape::write_str;

/// How OTLP payloads are encoded: the collector's Kafka exporter's `otlp_proto` (its default)
/// or `otlp_json`; OTLP/HTTP's `application/x-protobuf` or `application/json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OtlpEncoding {
    /// Binary protobuf.
    Protobuf,
    /// OTLP/JSON: protobuf's JSON mapping with hex ids and integer enums.
    Json,
}

impl OtlpEncoding {
    /// The name used in pipeline files.
    pub fn name(self) -> &'static str {
        match self {
            OtlpEncoding::Protobuf => "otlp_proto",
            OtlpEncoding::Json => "otlp_json",
        }
    }
}

impl FromStr for OtlpEncoding {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "otlp_proto" | "otlp" => Ok(OtlpEncoding::Protobuf),
            "otlp_json" => Ok(OtlpEncoding::Json),
            _ => Err(()),
        }
    }
}

/// What one payload held: its records stored, and those rejected (as dead letters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Records (log records, spans, data points) stored as rows.
    pub records: u64,
    /// Records rejected.
    pub rejected: u64,
    /// Why the first rejected record was, for OTLP's partial-success message.
    pub first_reason: Option<String>,
}

/// Decodes OTLP payloads of one signal into batches of its table and dead letters.
pub struct OtlpDecoder {
    kind: RecordKind,
    encoding: OtlpEncoding,
    schema: LogSchema,
    logs: Groups<LogColumns>,
    spans: Groups<SpanColumns>,
    metrics: Groups<MetricColumns>,
    span_schema: SchemaRef,
    metric_schema: SchemaRef,
    dead: DeadLetters,
    opts: DecoderOptions,
    stats: DecodeStats,
    bounds: TimeBounds,
    buffered: usize,
    scratch: Scratch,
}

/// Per-record scratch, kept to reuse allocations.
#[derive(Default)]
struct Scratch {
    attrs: String,
    extra: String,
    text: String,
    /// Hex of the record's ids: trace, span, parent.
    ids: [String; 3],
    /// Which attributes went to a column of their own.
    used: Vec<bool>,
}

impl OtlpDecoder {
    /// A decoder of `kind`'s signal (`logs`, `spans` or `metrics`) in `encoding`; `schema`
    /// says which log attributes get typed columns.
    pub fn new(
        kind: RecordKind,
        encoding: OtlpEncoding,
        schema: LogSchema,
        opts: DecoderOptions,
    ) -> Self {
        Self {
            kind,
            encoding,
            schema,
            logs: Groups::new(),
            spans: Groups::new(),
            metrics: Groups::new(),
            span_schema: vigil_core::schema::span_schema(),
            metric_schema: metric_schema(),
            dead: DeadLetters::new(kind, opts.dead_letter_raw_limit),
            opts,
            stats: DecodeStats::default(),
            bounds: TimeBounds::at(0, None, None),
            buffered: 0,
            scratch: Scratch::default(),
        }
    }

    /// The table the decoder fills.
    pub fn kind(&self) -> RecordKind {
        self.kind
    }

    /// The encoding of the payloads [`decode_messages`](Self::decode_messages) reads.
    pub fn encoding(&self) -> OtlpEncoding {
        self.encoding
    }

    /// Totals since the decoder was created; `records` counts rows.
    pub fn stats(&self) -> DecodeStats {
        self.stats
    }

    /// Dead letters per reason since the decoder was created.
    pub fn dead_letter_counts(&self) -> impl Iterator<Item = (ReasonCode, u64)> + '_ {
        self.dead.counts()
    }

    /// Rows and dead letters buffered since the last flush.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Decodes whole payloads (Kafka messages) from one partition of `source`, each with its
    /// offset; a payload that does not decode is a dead letter.
    pub fn decode_messages<'a>(
        &mut self,
        source: &str,
        partition: Option<i32>,
        messages: impl IntoIterator<Item = (&'a [u8], i64)>,
    ) {
        for (bytes, offset) in messages {
            if let Err(rejection) =
                self.decode_payload(bytes, self.encoding, source, partition, offset)
            {
                self.reject(source, partition, offset, bytes, &rejection);
            }
        }
    }

    /// Decodes one payload. `Err`: it is not an OTLP request of this signal at all (the
    /// caller dead-letters it, or answers 400); nothing was appended then.
    pub fn decode_payload(
        &mut self,
        bytes: &[u8],
        encoding: OtlpEncoding,
        source: &str,
        partition: Option<i32>,
        offset: i64,
    ) -> Result<Accepted, Rejection> {
        self.stats.bytes += bytes.len() as u64;
        if bytes.len() > self.opts.max_record_bytes {
            return Err(Rejection::new(
                ReasonCode::Oversized,
                format!(
                    "the payload is {} bytes, more than `decode.max_record_bytes` = {}",
                    bytes.len(),
                    self.opts.max_record_bytes
                ),
            ));
        }
        self.bounds = TimeBounds::now(&self.opts);
        let mut at = At {
            source,
            partition,
            offset,
            encoding,
            accepted: Accepted::default(),
        };
        match self.kind {
            RecordKind::Logs => {
                let req: ExportLogsServiceRequest = parse(bytes, encoding, "logs")?;
                self.logs_request(&req, &mut at);
            }
            RecordKind::Spans => {
                let req: ExportTraceServiceRequest = parse(bytes, encoding, "traces")?;
                self.spans_request(&req, &mut at);
            }
            RecordKind::Metrics => {
                let req: ExportMetricsServiceRequest = parse(bytes, encoding, "metrics")?;
                self.metrics_request(&req, &mut at);
            }
        }
        Ok(at.accepted)
    }

    /// Takes everything decoded since the previous flush, or `None` if nothing was.
    pub fn flush(&mut self) -> Option<DecodedBatch> {
        self.buffered = 0;
        let records = match self.kind {
            RecordKind::Logs => self.logs.finish(),
            RecordKind::Spans => self.spans.finish(),
            RecordKind::Metrics => self.metrics.finish(),
        };
        if records.is_empty() && self.dead.len() == 0 {
            return None;
        }
        Some(DecodedBatch {
            records,
            dead_letters: self.dead.finish(),
        })
    }

    fn reject(
        &mut self,
        source: &str,
        partition: Option<i32>,
        offset: i64,
        raw: &[u8],
        r: &Rejection,
    ) {
        self.dead.push(source, partition, offset, raw, raw.len(), r);
        self.stats.dead_letters += 1;
        self.buffered += 1;
    }

    /// A record of a good payload that cannot be stored: a dead letter holding it alone.
    fn reject_record<M: prost::Message + Serialize>(
        &mut self,
        at: &mut At<'_>,
        record: &M,
        r: Rejection,
    ) {
        let raw = match at.encoding {
            OtlpEncoding::Protobuf => record.encode_to_vec(),
            OtlpEncoding::Json => serde_json::to_vec(record).unwrap_or_default(),
        };
        at.accepted.rejected += 1;
        at.accepted
            .first_reason
            .get_or_insert_with(|| r.message.clone());
        self.reject(at.source, at.partition, at.offset, &raw, &r);
    }

    fn stored(&mut self, at: &mut At<'_>, rows: usize) {
        at.accepted.records += 1;
        self.stats.records += rows as u64;
        self.buffered += rows;
    }

    fn time(&self, nanos: u64, field: &str) -> Result<i64, Rejection> {
        if nanos == 0 {
            return Err(Rejection::new(
                ReasonCode::MissingField,
                format!("`{field}` is 0 (unknown)"),
            ));
        }
        self.bounds.check(field, (nanos / 1000) as i64)
    }

    fn logs_request(&mut self, req: &ExportLogsServiceRequest, at: &mut At<'_>) {
        let mut extra_base = String::new();
        for rl in &req.resource_logs {
            let service = service_name(rl.resource.as_ref());
            for sl in &rl.scope_logs {
                context_json(&mut extra_base, rl.resource.as_ref(), sl.scope.as_ref());
                for rec in &sl.log_records {
                    match self.log_row(service, &extra_base, rec) {
                        Ok(()) => self.stored(at, 1),
                        Err(r) => self.reject_record(at, rec, r),
                    }
                }
            }
        }
    }

    fn log_row(
        &mut self,
        service: &str,
        extra_base: &str,
        rec: &LogRecord,
    ) -> Result<(), Rejection> {
        let nanos = if rec.time_unix_nano != 0 {
            rec.time_unix_nano
        } else {
            rec.observed_time_unix_nano
        };
        let ts = self.time(nanos, "time_unix_nano")?;
        let level: Option<Cow<'_, str>> = if rec.severity_text.is_empty() {
            severity_level(rec.severity_number).map(Cow::Borrowed)
        } else {
            Some(normalize_level(&rec.severity_text).map_or_else(
                || Cow::Owned(rec.severity_text.to_ascii_uppercase()),
                Cow::Borrowed,
            ))
        };
        let s = &mut self.scratch;
        let [trace, span, _] = &mut s.ids;
        let trace_id = hex_id(trace, &rec.trace_id);
        let span_id = hex_id(span, &rec.span_id);
        s.text.clear();
        let message = match rec.body.as_ref().and_then(|b| b.value.as_ref()) {
            None => None,
            Some(any_value::Value::StringValue(v)) => Some(v.as_str()),
            Some(v) => {
                write_any(&mut s.text, v);
                Some(s.text.as_str())
            }
        };
        // Promoted attributes whose value fits their column; the rest stay in additional_data.
        let promoted = self.schema.promoted();
        let mut values: Vec<Value<'_>> = Vec::with_capacity(promoted.len());
        let used = &mut s.used;
        used.clear();
        used.resize(rec.attributes.len(), false);
        for p in promoted {
            let found = rec.attributes.iter().position(|kv| kv.key == p.key);
            let v = found.and_then(|i| fit(p.field_type, &rec.attributes[i]).map(|v| (i, v)));
            match v {
                Some((i, v)) => {
                    used[i] = true;
                    values.push(v);
                }
                None => values.push(Value::Null),
            }
        }
        let mut user_id = None;
        for (i, kv) in rec.attributes.iter().enumerate() {
            if !used[i]
                && (kv.key == "user_id" || kv.key == "user.id")
                && let Some(any_value::Value::StringValue(u)) =
                    kv.value.as_ref().and_then(|v| v.value.as_ref())
            {
                used[i] = true;
                user_id = Some(u.as_str());
                break;
            }
        }
        s.attrs.clear();
        write_attributes(
            &mut s.attrs,
            rec.attributes
                .iter()
                .zip(used.iter())
                .filter(|(_, u)| !**u)
                .map(|(kv, _)| kv),
        );
        s.extra.clear();
        s.extra.push_str(extra_base);
        if !rec.event_name.is_empty() {
            member(&mut s.extra, "event_name");
            write_str(&mut s.extra, &rec.event_name);
        }
        if rec.time_unix_nano != 0 && rec.observed_time_unix_nano != 0 {
            member(&mut s.extra, "observed_time_unix_nano");
            let _ = write!(s.extra, "{}", rec.observed_time_unix_nano);
        }
        if rec.flags != 0 {
            member(&mut s.extra, "flags");
            let _ = write!(s.extra, "{}", rec.flags);
        }
        close_object(&mut s.extra);
        let row = LogRow {
            timestamp: ts,
            level: level.as_deref(),
            service,
            strings: [trace_id, span_id, None, user_id, message],
            promoted: &values,
            additional_data: non_empty(&s.attrs),
            extra: non_empty(&s.extra),
        };
        let schema = &self.schema;
        self.logs
            .get(service, 1024, |rows| LogColumns::new(schema, rows))
            .append_row(&row);
        Ok(())
    }

    fn spans_request(&mut self, req: &ExportTraceServiceRequest, at: &mut At<'_>) {
        let mut extra_base = String::new();
        for rs in &req.resource_spans {
            let service = service_name(rs.resource.as_ref());
            for ss in &rs.scope_spans {
                context_json(&mut extra_base, rs.resource.as_ref(), ss.scope.as_ref());
                for span in &ss.spans {
                    match self.span_row(service, &extra_base, span) {
                        Ok(()) => self.stored(at, 1),
                        Err(r) => self.reject_record(at, span, r),
                    }
                }
            }
        }
    }

    fn span_row(&mut self, service: &str, extra_base: &str, span: &Span) -> Result<(), Rejection> {
        let invalid = |id: &[u8], len| id.len() != len || id.iter().all(|&b| b == 0);
        if invalid(&span.trace_id, 16) {
            return Err(Rejection::new(
                ReasonCode::InvalidValue,
                "span `trace_id` must be 16 bytes, not all zero",
            ));
        }
        if invalid(&span.span_id, 8) {
            return Err(Rejection::new(
                ReasonCode::InvalidValue,
                "span `span_id` must be 8 bytes, not all zero",
            ));
        }
        let start = self.time(span.start_time_unix_nano, "start_time_unix_nano")?;
        if span.end_time_unix_nano < span.start_time_unix_nano {
            return Err(Rejection::new(
                ReasonCode::InvalidValue,
                format!(
                    "span ends ({}) before it starts ({})",
                    span.end_time_unix_nano, span.start_time_unix_nano
                ),
            ));
        }
        let end = (span.end_time_unix_nano / 1000) as i64;
        let duration_ms = (span.end_time_unix_nano - span.start_time_unix_nano) as f64 / 1e6;
        let http = ["http.response.status_code", "http.status_code"];
        let mut http_status = None;
        let mut skip = usize::MAX;
        for (i, kv) in span.attributes.iter().enumerate() {
            if http.contains(&kv.key.as_str()) {
                http_status = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::IntValue(v)) => i32::try_from(*v).ok(),
                    Some(any_value::Value::StringValue(v)) => v.parse().ok(),
                    _ => None,
                };
                if http_status.is_some() {
                    skip = i;
                    break;
                }
            }
        }
        let s = &mut self.scratch;
        s.attrs.clear();
        write_attributes(
            &mut s.attrs,
            span.attributes
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, kv)| kv),
        );
        s.extra.clear();
        s.extra.push_str(extra_base);
        if !span.trace_state.is_empty() {
            member(&mut s.extra, "trace_state");
            write_str(&mut s.extra, &span.trace_state);
        }
        if span.flags != 0 {
            member(&mut s.extra, "flags");
            let _ = write!(s.extra, "{}", span.flags);
        }
        if !span.events.is_empty() {
            member(&mut s.extra, "events");
            s.extra.push('[');
            for (i, e) in span.events.iter().enumerate() {
                if i > 0 {
                    s.extra.push(',');
                }
                s.extra.push_str("{\"time_unix_nano\":");
                let _ = write!(s.extra, "{}", e.time_unix_nano);
                s.extra.push_str(",\"name\":");
                write_str(&mut s.extra, &e.name);
                if !e.attributes.is_empty() {
                    s.extra.push_str(",\"attributes\":");
                    write_attributes(&mut s.extra, e.attributes.iter());
                }
                s.extra.push('}');
            }
            s.extra.push(']');
        }
        if !span.links.is_empty() {
            member(&mut s.extra, "links");
            s.extra.push('[');
            for (i, l) in span.links.iter().enumerate() {
                if i > 0 {
                    s.extra.push(',');
                }
                s.extra.push_str("{\"trace_id\":\"");
                write_hex(&mut s.extra, &l.trace_id);
                s.extra.push_str("\",\"span_id\":\"");
                write_hex(&mut s.extra, &l.span_id);
                s.extra.push('"');
                if !l.attributes.is_empty() {
                    s.extra.push_str(",\"attributes\":");
                    write_attributes(&mut s.extra, l.attributes.iter());
                }
                s.extra.push('}');
            }
            s.extra.push(']');
        }
        close_object(&mut s.extra);
        let status = span.status.as_ref();
        let c = self.spans.get(service, 1024, |rows| {
            SpanColumns::new(&self.span_schema, rows)
        });
        c.start.append_value(start);
        c.end.append_value(end);
        c.duration.append_value(duration_ms);
        c.strings[0].append_value(service);
        let [trace, id, parent] = &mut s.ids;
        c.strings[1].append_option(hex_id(trace, &span.trace_id));
        c.strings[2].append_option(hex_id(id, &span.span_id));
        c.strings[3].append_option(hex_id(parent, &span.parent_span_id));
        c.strings[4].append_value(&span.name);
        c.strings[5].append_value(span_kind(span.kind));
        c.strings[6].append_value(match status.map_or(0, |s| s.code) {
            1 => "ok",
            2 => "error",
            _ => "unset",
        });
        c.strings[7].append_option(status.map(|s| s.message.as_str()).filter(|m| !m.is_empty()));
        c.http.append_option(http_status);
        c.strings[8].append_option(non_empty(&s.attrs));
        c.strings[9].append_option(non_empty(&s.extra));
        c.date.append_value(date32_from_micros(start));
        Ok(())
    }

    fn metrics_request(&mut self, req: &ExportMetricsServiceRequest, at: &mut At<'_>) {
        let mut context = String::new();
        for rm in &req.resource_metrics {
            let service = service_name(rm.resource.as_ref());
            for sm in &rm.scope_metrics {
                context_json(&mut context, rm.resource.as_ref(), sm.scope.as_ref());
                for m in &sm.metrics {
                    self.metric_rows(service, &context, m, at);
                }
            }
        }
    }

    fn metric_rows(&mut self, service: &str, context: &str, m: &Metric, at: &mut At<'_>) {
        use metric::Data;
        let mut extra = String::from(context);
        if !m.unit.is_empty() {
            member(&mut extra, "unit");
            write_str(&mut extra, &m.unit);
        }
        if !m.description.is_empty() {
            member(&mut extra, "description");
            write_str(&mut extra, &m.description);
        }
        let temporality = |t: i32| match t {
            1 => Some("delta"),
            2 => Some("cumulative"),
            _ => None,
        };
        let t = match &m.data {
            Some(Data::Sum(s)) => temporality(s.aggregation_temporality),
            Some(Data::Histogram(h)) => temporality(h.aggregation_temporality),
            Some(Data::ExponentialHistogram(h)) => temporality(h.aggregation_temporality),
            _ => None,
        };
        if let Some(t) = t {
            member(&mut extra, "temporality");
            write_str(&mut extra, t);
        }
        close_object(&mut extra);
        let extra = non_empty(&extra);
        let name = m.name.as_str();
        let names = Names::of(name);
        let mut rows: Vec<PointRow<'_>> = Vec::new();
        let emit = |this: &mut Self,
                    at: &mut At<'_>,
                    nanos: u64,
                    attributes: &[KeyValue],
                    rows: &mut Vec<PointRow<'_>>| {
            let ts = match this.time(nanos, "time_unix_nano") {
                Ok(ts) => ts,
                Err(r) => {
                    rows.clear();
                    at.accepted.rejected += 1;
                    at.accepted
                        .first_reason
                        .get_or_insert_with(|| r.message.clone());
                    let raw = match at.encoding {
                        OtlpEncoding::Protobuf => m.encode_to_vec(),
                        OtlpEncoding::Json => serde_json::to_vec(m).unwrap_or_default(),
                    };
                    this.reject(at.source, at.partition, at.offset, &raw, &r);
                    return;
                }
            };
            let mut labels: Vec<(&str, String)> = attributes
                .iter()
                .map(|kv| {
                    let mut v = String::new();
                    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                        Some(any_value::Value::StringValue(s)) => v.push_str(s),
                        Some(other) => write_any(&mut v, other),
                        None => {}
                    }
                    (kv.key.as_str(), v)
                })
                .collect();
            let n = rows.len();
            let c = this
                .metrics
                .get(service, 1024, |_| MetricColumns::new(&this.metric_schema));
            for (row_name, kind, value, label) in rows.drain(..) {
                let base = labels.len();
                if let Some((k, v)) = label {
                    labels.push((k, v));
                }
                c.append_sample(
                    &Sample {
                        timestamp: ts,
                        name: row_name,
                        kind,
                        service,
                        value,
                        extra,
                    },
                    &labels,
                );
                labels.truncate(base);
            }
            this.stats.records += n as u64;
            this.buffered += n;
            at.accepted.records += 1;
        };
        match &m.data {
            None => {}
            Some(Data::Gauge(g)) => {
                for p in &g.data_points {
                    if let Some(v) = number(p.value) {
                        rows.push((name, "gauge", v, None));
                        emit(self, at, p.time_unix_nano, &p.attributes, &mut rows);
                    }
                }
            }
            Some(Data::Sum(s)) => {
                let kind = if s.is_monotonic { "counter" } else { "gauge" };
                for p in &s.data_points {
                    if let Some(v) = number(p.value) {
                        rows.push((name, kind, v, None));
                        emit(self, at, p.time_unix_nano, &p.attributes, &mut rows);
                    }
                }
            }
            Some(Data::Histogram(h)) => {
                for p in &h.data_points {
                    let mut cumulative = 0u64;
                    for (i, &count) in p.bucket_counts.iter().enumerate() {
                        cumulative += count;
                        let le = p
                            .explicit_bounds
                            .get(i)
                            .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
                        rows.push((
                            names.bucket.as_str(),
                            "histogram",
                            cumulative as f64,
                            Some(("le", le)),
                        ));
                    }
                    summary_rows(&mut rows, &names, p.count, p.sum, p.min, p.max);
                    emit(self, at, p.time_unix_nano, &p.attributes, &mut rows);
                }
            }
            Some(Data::ExponentialHistogram(h)) => {
                for p in &h.data_points {
                    let base = 2f64.powf(2f64.powi(-p.scale));
                    let mut cumulative = 0u64;
                    let bucket = |rows: &mut Vec<_>, cumulative: u64, le: f64| {
                        rows.push((
                            names.bucket.as_str(),
                            "histogram",
                            cumulative as f64,
                            Some(("le", le.to_string())),
                        ));
                    };
                    if let Some(Buckets {
                        offset,
                        bucket_counts,
                    }) = &p.negative
                    {
                        // Most negative first: bucket i holds (-base^(offset+i+1), -base^(offset+i)].
                        for (i, &count) in bucket_counts.iter().enumerate().rev() {
                            cumulative += count;
                            bucket(&mut rows, cumulative, -base.powi(*offset + i as i32));
                        }
                    }
                    cumulative += p.zero_count;
                    bucket(&mut rows, cumulative, p.zero_threshold);
                    if let Some(Buckets {
                        offset,
                        bucket_counts,
                    }) = &p.positive
                    {
                        for (i, &count) in bucket_counts.iter().enumerate() {
                            cumulative += count;
                            bucket(&mut rows, cumulative, base.powi(*offset + i as i32 + 1));
                        }
                    }
                    rows.push((
                        names.bucket.as_str(),
                        "histogram",
                        p.count as f64,
                        Some(("le", "+Inf".to_owned())),
                    ));
                    summary_rows(&mut rows, &names, p.count, p.sum, p.min, p.max);
                    emit(self, at, p.time_unix_nano, &p.attributes, &mut rows);
                }
            }
            Some(Data::Summary(s)) => {
                for p in &s.data_points {
                    for q in &p.quantile_values {
                        rows.push((
                            name,
                            "summary",
                            q.value,
                            Some(("quantile", q.quantile.to_string())),
                        ));
                    }
                    summary_rows(&mut rows, &names, p.count, Some(p.sum), None, None);
                    emit(self, at, p.time_unix_nano, &p.attributes, &mut rows);
                }
            }
        }
    }
}

/// One row a data point becomes: name, type, value and an extra label (`le`, `quantile`).
type PointRow<'a> = (&'a str, &'static str, f64, Option<(&'static str, String)>);

/// The row names a histogram or summary point becomes, made once per metric.
struct Names {
    bucket: String,
    count: String,
    sum: String,
    min: String,
    max: String,
}

impl Names {
    fn of(name: &str) -> Self {
        Self {
            bucket: format!("{name}_bucket"),
            count: format!("{name}_count"),
            sum: format!("{name}_sum"),
            min: format!("{name}_min"),
            max: format!("{name}_max"),
        }
    }
}

/// Where the payload being decoded came from, and what it held so far.
struct At<'a> {
    source: &'a str,
    partition: Option<i32>,
    offset: i64,
    encoding: OtlpEncoding,
    accepted: Accepted,
}

fn summary_rows<'a>(
    rows: &mut Vec<PointRow<'a>>,
    names: &'a Names,
    count: u64,
    sum: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
) {
    rows.push((names.count.as_str(), "counter", count as f64, None));
    if let Some(sum) = sum {
        rows.push((names.sum.as_str(), "counter", sum, None));
    }
    if let Some(min) = min {
        rows.push((names.min.as_str(), "gauge", min, None));
    }
    if let Some(max) = max {
        rows.push((names.max.as_str(), "gauge", max, None));
    }
}

fn number(v: Option<number_data_point::Value>) -> Option<f64> {
    match v? {
        number_data_point::Value::AsDouble(d) => Some(d),
        number_data_point::Value::AsInt(i) => Some(i as f64),
    }
}

/// Parses a request of `signal` (`logs`, `traces`, `metrics`: for messages) in `encoding`.
pub fn parse<M: prost::Message + Default + DeserializeOwned>(
    bytes: &[u8],
    encoding: OtlpEncoding,
    signal: &str,
) -> Result<M, Rejection> {
    match encoding {
        OtlpEncoding::Protobuf => M::decode(bytes).map_err(|e| {
            Rejection::new(
                ReasonCode::InvalidProtobuf,
                format!("not an OTLP {signal} request in protobuf: {e}"),
            )
        }),
        OtlpEncoding::Json => serde_json::from_slice(bytes).or_else(|e| {
            // OTLP/JSON writes 64-bit integers as strings, and asks decoders to accept numbers
            // too: the serde mapping takes strings only, so retry with numbers quoted.
            let mut v: serde_json::Value = serde_json::from_slice(bytes).map_err(|_| {
                Rejection::new(
                    ReasonCode::InvalidJson,
                    format!("not an OTLP/JSON {signal} request: {e}"),
                )
            })?;
            quote_integers(&mut v);
            serde_json::from_value(v).map_err(|_| {
                Rejection::new(
                    ReasonCode::InvalidJson,
                    format!("not an OTLP/JSON {signal} request: {e}"),
                )
            })
        }),
    }
}

/// OTLP/JSON's 64-bit integer fields: written as strings, sometimes as numbers.
const INT64_FIELDS: [&str; 9] = [
    "timeUnixNano",
    "startTimeUnixNano",
    "endTimeUnixNano",
    "observedTimeUnixNano",
    "intValue",
    "asInt",
    "count",
    "zeroCount",
    "bucketCounts",
];

/// Turns the integer numbers of OTLP/JSON's 64-bit fields into strings, at any depth.
fn quote_integers(v: &mut serde_json::Value) {
    use serde_json::Value as J;
    let quote = |x: &mut J| {
        if let J::Number(n) = x
            && (n.is_u64() || n.is_i64())
        {
            *x = J::String(n.to_string());
        }
    };
    match v {
        J::Object(map) => {
            for (k, x) in map.iter_mut() {
                if INT64_FIELDS.contains(&k.as_str()) {
                    match x {
                        J::Array(items) => items.iter_mut().for_each(quote),
                        x => quote(x),
                    }
                } else {
                    quote_integers(x);
                }
            }
        }
        J::Array(items) => items.iter_mut().for_each(quote_integers),
        _ => {}
    }
}

/// The resource's `service.name`; `unknown_service` (the SDKs' default) when it has none.
fn service_name(resource: Option<&Resource>) -> &str {
    resource
        .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) if !s.is_empty() => Some(s.as_str()),
            _ => None,
        })
        .unwrap_or("unknown_service")
}

/// Starts `out` as a JSON object holding the resource's other attributes and the scope; the
/// caller adds members with [`member`] and ends it with [`close_object`].
fn context_json(
    out: &mut String,
    resource: Option<&Resource>,
    scope: Option<&InstrumentationScope>,
) {
    out.clear();
    if let Some(r) = resource {
        let rest = r.attributes.iter().filter(|kv| kv.key != "service.name");
        if rest.clone().next().is_some() {
            member(out, "resource");
            write_attributes(out, rest);
        }
    }
    if let Some(s) = scope
        && !(s.name.is_empty() && s.version.is_empty() && s.attributes.is_empty())
    {
        member(out, "scope");
        out.push_str("{\"name\":");
        write_str(out, &s.name);
        if !s.version.is_empty() {
            out.push_str(",\"version\":");
            write_str(out, &s.version);
        }
        if !s.attributes.is_empty() {
            out.push_str(",\"attributes\":");
            write_attributes(out, s.attributes.iter());
        }
        out.push('}');
    }
}

/// Adds a member's key to an object being written (opened on the first member).
fn member(out: &mut String, key: &str) {
    out.push(if out.is_empty() { '{' } else { ',' });
    write_str(out, key);
    out.push(':');
}

/// Ends an object started by [`member`]; an object with no member stays empty text.
fn close_object(out: &mut String) {
    if !out.is_empty() {
        out.push('}');
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Writes attributes as a JSON object, values as their JSON; nothing when there are none.
fn write_attributes<'a>(out: &mut String, attributes: impl Iterator<Item = &'a KeyValue>) {
    let start = out.len();
    for kv in attributes {
        out.push(if out.len() == start { '{' } else { ',' });
        write_str(out, &kv.key);
        out.push(':');
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(v) => write_any(out, v),
            None => out.push_str("null"),
        }
    }
    if out.len() != start {
        out.push('}');
    }
}

/// Writes an OTLP value as JSON: bytes as base64 (as OTLP/JSON does), non-finite floats as
/// strings.
fn write_any(out: &mut String, v: &any_value::Value) {
    use any_value::Value as V;
    match v {
        V::StringValue(s) => write_str(out, s),
        V::BoolValue(b) => out.push_str(if *b { "true" } else { "false" }),
        V::IntValue(i) => out.push_str(itoa::Buffer::new().format(*i)),
        V::DoubleValue(d) if d.is_finite() => out.push_str(ryu::Buffer::new().format(*d)),
        V::DoubleValue(d) => write_str(out, &d.to_string()),
        V::BytesValue(b) => {
            use base64::Engine as _;
            write_str(out, &base64::engine::general_purpose::STANDARD.encode(b));
        }
        V::ArrayValue(a) => {
            out.push('[');
            for (i, x) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match &x.value {
                    Some(x) => write_any(out, x),
                    None => out.push_str("null"),
                }
            }
            out.push(']');
        }
        V::KvlistValue(kv) => {
            if kv.values.is_empty() {
                out.push_str("{}");
            } else {
                write_attributes(out, kv.values.iter());
            }
        }
    }
}

/// An attribute's value as a promoted column of type `t`, if it has a fitting type.
fn fit(t: FieldType, kv: &KeyValue) -> Option<Value<'_>> {
    use any_value::Value as V;
    let v = kv
        .value
        .as_ref()
        .and_then(|v: &AnyValue| v.value.as_ref())?;
    Some(match (t, v) {
        (FieldType::Int32, V::IntValue(i)) => {
            i32::try_from(*i).ok()?;
            Value::Int(*i)
        }
        (FieldType::Int64 | FieldType::Timestamp, V::IntValue(i)) => Value::Int(*i),
        (FieldType::Float64, V::DoubleValue(d)) => Value::Float(*d),
        (FieldType::Float64, V::IntValue(i)) => Value::Float(*i as f64),
        (FieldType::Boolean, V::BoolValue(b)) => Value::Bool(*b),
        (FieldType::Utf8, V::StringValue(s)) => Value::Str(s),
        _ => return None,
    })
}

/// Appends `bytes` as lower-case hex.
pub fn write_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xf)] as char);
    }
}

/// An id as hex in `out` (reused); `None` when empty or all zero (OTLP's "no id").
fn hex_id<'a>(out: &'a mut String, bytes: &[u8]) -> Option<&'a str> {
    out.clear();
    if bytes.iter().all(|&b| b == 0) {
        return None;
    }
    write_hex(out, bytes);
    Some(out)
}

/// OTLP's severity number as vigil's level.
fn severity_level(n: i32) -> Option<&'static str> {
    Some(match n {
        1..=4 => "TRACE",
        5..=8 => "DEBUG",
        9..=12 => "INFO",
        13..=16 => "WARNING",
        17..=20 => "ERROR",
        21..=24 => "CRITICAL",
        _ => return None,
    })
}

fn span_kind(kind: i32) -> &'static str {
    match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}

/// The builders of one service's spans.
struct SpanColumns {
    schema: SchemaRef,
    start: TimestampMicrosecondBuilder,
    end: TimestampMicrosecondBuilder,
    duration: Float64Builder,
    /// service, trace_id, span_id, parent_span_id, name, kind, status, status_message,
    /// attributes, extra.
    strings: [StringBuilder; 10],
    http: Int32Builder,
    date: Date32Builder,
}

impl SpanColumns {
    fn new(schema: &SchemaRef, rows: usize) -> Self {
        let ts = || TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC");
        Self {
            schema: schema.clone(),
            start: ts(),
            end: ts(),
            duration: Float64Builder::with_capacity(rows),
            strings: std::array::from_fn(|_| StringBuilder::with_capacity(rows, 0)),
            http: Int32Builder::with_capacity(rows),
            date: Date32Builder::with_capacity(rows),
        }
    }
}

impl Columns for SpanColumns {
    fn len(&self) -> usize {
        self.date.len()
    }

    fn finish(&mut self) -> RecordBatch {
        let mut s: Vec<ArrayRef> = self
            .strings
            .iter_mut()
            .map(|b| {
                let next = sized_like(b);
                Arc::new(std::mem::replace(b, next).finish()) as ArrayRef
            })
            .collect();
        let (attributes, extra) = (s.remove(8), s.remove(8));
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.start.finish()),
            Arc::new(self.end.finish()),
            Arc::new(self.duration.finish()),
        ];
        columns.extend(s);
        columns.push(Arc::new(self.http.finish()));
        columns.push(attributes);
        columns.push(extra);
        columns.push(Arc::new(self.date.finish()));
        RecordBatch::try_new(self.schema.clone(), columns).expect("span columns match the schema")
    }
}

#[cfg(test)]
mod tests;
