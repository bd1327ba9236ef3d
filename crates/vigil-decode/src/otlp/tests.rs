use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int32Type, TimestampMicrosecondType};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Histogram, HistogramDataPoint, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};
use vigil_core::schema::{PromotedField, col, span};

use super::*;

/// 2025-06-02T09:00:00Z in ns.
const T0: u64 = 1_748_854_800_000_000_000;

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", s(service)), kv("host.name", s("node-1"))],
        ..Default::default()
    })
}

fn opts() -> DecoderOptions {
    DecoderOptions {
        max_future_skew: None,
        ..DecoderOptions::default()
    }
}

fn spans_request() -> ExportTraceServiceRequest {
    let span = |id: u8, parent: Option<u8>, kind: i32, start: u64, ms: u64, error: bool| Span {
        trace_id: vec![0xab; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: format!("op-{id}"),
        kind,
        start_time_unix_nano: T0 + start,
        end_time_unix_nano: T0 + start + ms * 1_000_000,
        attributes: vec![
            kv(
                "http.response.status_code",
                any_value::Value::IntValue(if error { 500 } else { 200 }),
            ),
            kv("user_id", s("u-1")),
        ],
        status: Some(Status {
            code: if error { 2 } else { 0 },
            message: if error { "boom".into() } else { String::new() },
        }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: resource("frontend"),
                scope_spans: vec![ScopeSpans {
                    spans: vec![
                        span(1, None, 2, 0, 10, false),
                        span(2, Some(1), 3, 1_000, 8, false),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            },
            ResourceSpans {
                resource: resource("checkout"),
                scope_spans: vec![ScopeSpans {
                    spans: vec![span(3, Some(2), 2, 2_000, 5, true)],
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
    }
}

fn decode(
    kind: RecordKind,
    enc: OtlpEncoding,
    payloads: &[Vec<u8>],
) -> (OtlpDecoder, DecodedBatch) {
    let schema = LogSchema::new(vec![PromotedField::nested("attempt", FieldType::Int32)]).unwrap();
    let mut d = OtlpDecoder::new(kind, enc, schema, opts());
    d.decode_messages(
        "otlp_spans",
        Some(0),
        payloads
            .iter()
            .enumerate()
            .map(|(i, p)| (p.as_slice(), i as i64)),
    );
    let b = d.flush().expect("something decoded");
    (d, b)
}

fn strings(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let c = b.column_by_name(name).unwrap().as_string::<i32>();
    (0..c.len())
        .map(|i| c.is_valid(i).then(|| c.value(i).to_owned()))
        .collect()
}

#[test]
fn spans_become_rows_with_hex_ids_times_and_status_in_protobuf_and_json() {
    let req = spans_request();
    for (enc, bytes) in [
        (OtlpEncoding::Protobuf, req.encode_to_vec()),
        (OtlpEncoding::Json, serde_json::to_vec(&req).unwrap()),
    ] {
        let (d, b) = decode(RecordKind::Spans, enc, &[bytes]);
        assert_eq!(d.stats().records, 3);
        assert_eq!(b.dead_letters.num_rows(), 0);
        // One batch per service, in service order.
        assert_eq!(b.records.len(), 2);
        let (checkout, frontend) = (&b.records[0], &b.records[1]);
        assert_eq!(strings(checkout, col::SERVICE), [Some("checkout".into())]);
        assert_eq!(
            strings(frontend, col::TRACE_ID)[0].as_deref(),
            Some("ab".repeat(16).as_str())
        );
        assert_eq!(
            strings(frontend, col::SPAN_ID)[1].as_deref(),
            Some("0202020202020202")
        );
        assert_eq!(
            strings(frontend, col::PARENT_SPAN_ID),
            [None, Some("01".repeat(8))]
        );
        assert_eq!(
            strings(frontend, span::KIND),
            [Some("server".into()), Some("client".into())]
        );
        assert_eq!(strings(checkout, span::STATUS), [Some("error".into())]);
        assert_eq!(
            strings(checkout, span::STATUS_MESSAGE),
            [Some("boom".into())]
        );
        let http = checkout
            .column_by_name(span::HTTP_STATUS)
            .unwrap()
            .as_primitive::<Int32Type>();
        assert_eq!(http.value(0), 500);
        let dur = frontend
            .column_by_name(span::DURATION_MS)
            .unwrap()
            .as_primitive::<Float64Type>();
        assert_eq!(dur.values().to_vec(), [10.0, 8.0]);
        let start = frontend
            .column_by_name(col::TIMESTAMP)
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>();
        let end = frontend
            .column_by_name(span::END_TIME)
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>();
        assert_eq!(start.value(1), (T0 / 1000) as i64 + 1);
        assert_eq!(end.value(0) - start.value(0), 10_000);
        // The HTTP status has its column; the other attributes and the resource are kept.
        assert_eq!(
            strings(frontend, span::ATTRIBUTES)[0].as_deref(),
            Some(r#"{"user_id":"u-1"}"#)
        );
        assert_eq!(
            strings(frontend, span::EXTRA)[0].as_deref(),
            Some(r#"{"resource":{"host.name":"node-1"}}"#)
        );
    }
}

#[test]
fn logs_map_severity_body_ids_and_promote_typed_attributes() {
    let rec = |sev: i32, text: &str, body: any_value::Value, attempt: any_value::Value| LogRecord {
        time_unix_nano: T0,
        severity_number: sev,
        severity_text: text.into(),
        body: Some(AnyValue { value: Some(body) }),
        attributes: vec![
            kv("attempt", attempt),
            kv("user_id", s("u-7")),
            kv("cart", any_value::Value::IntValue(3)),
        ],
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        ..Default::default()
    };
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("checkout"),
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    rec(17, "", s("card declined"), any_value::Value::IntValue(2)),
                    rec(
                        9,
                        "warn",
                        any_value::Value::BoolValue(true),
                        s("not an int"),
                    ),
                    LogRecord {
                        time_unix_nano: 0,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let (d, b) = decode(
        RecordKind::Logs,
        OtlpEncoding::Protobuf,
        &[req.encode_to_vec()],
    );
    assert_eq!(d.stats().records, 2);
    let logs = &b.records[0];
    assert_eq!(
        strings(logs, col::LEVEL),
        [Some("ERROR".into()), Some("WARNING".into())]
    );
    assert_eq!(
        strings(logs, col::MESSAGE),
        [Some("card declined".into()), Some("true".into())]
    );
    assert_eq!(
        strings(logs, col::USER_ID),
        [Some("u-7".into()), Some("u-7".into())]
    );
    assert_eq!(
        strings(logs, col::SPAN_ID)[0].as_deref(),
        Some("0202020202020202")
    );
    let attempt = logs
        .column_by_name("attempt")
        .unwrap()
        .as_primitive::<Int32Type>();
    assert_eq!((attempt.value(0), attempt.is_null(1)), (2, true));
    // A value that does not fit its column is kept, not dropped.
    assert_eq!(
        strings(logs, col::ADDITIONAL_DATA),
        [
            Some(r#"{"cart":3}"#.into()),
            Some(r#"{"attempt":"not an int","cart":3}"#.into())
        ]
    );
    // The record with no time is a dead letter of its own, re-encoded.
    assert_eq!(b.dead_letters.num_rows(), 1);
    let code = b
        .dead_letters
        .column_by_name("reason_code")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(code.value(0), "missing_field");
    let raw = b
        .dead_letters
        .column_by_name("raw")
        .unwrap()
        .as_binary::<i32>();
    assert!(LogRecord::decode(raw.value(0)).is_ok());
}

#[test]
fn metrics_keep_points_and_store_histograms_as_cumulative_buckets() {
    let point = |v: f64| NumberDataPoint {
        time_unix_nano: T0,
        value: Some(number_data_point::Value::AsDouble(v)),
        attributes: vec![kv("route", s("/pay"))],
        ..Default::default()
    };
    let metric = |name: &str, data| Metric {
        name: name.into(),
        unit: "ms".into(),
        data: Some(data),
        ..Default::default()
    };
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource("checkout"),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    metric(
                        "queue.depth",
                        metric::Data::Gauge(Gauge {
                            data_points: vec![point(3.0)],
                        }),
                    ),
                    metric(
                        "requests",
                        metric::Data::Sum(Sum {
                            data_points: vec![point(7.0)],
                            aggregation_temporality: 2,
                            is_monotonic: true,
                        }),
                    ),
                    metric(
                        "latency",
                        metric::Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                time_unix_nano: T0,
                                count: 6,
                                sum: Some(60.0),
                                bucket_counts: vec![1, 2, 3],
                                explicit_bounds: vec![5.0, 10.0],
                                ..Default::default()
                            }],
                            aggregation_temporality: 1,
                        }),
                    ),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let (d, b) = decode(
        RecordKind::Metrics,
        OtlpEncoding::Json,
        &[serde_json::to_vec(&req).unwrap()],
    );
    let m = &b.records[0];
    assert_eq!(d.stats().records, 7);
    assert_eq!(
        strings(m, col::NAME)
            .into_iter()
            .flatten()
            .collect::<Vec<_>>(),
        [
            "queue.depth",
            "requests",
            "latency_bucket",
            "latency_bucket",
            "latency_bucket",
            "latency_count",
            "latency_sum"
        ]
    );
    assert_eq!(strings(m, col::TYPE)[1].as_deref(), Some("counter"));
    let v = m
        .column_by_name(col::VALUE)
        .unwrap()
        .as_primitive::<Float64Type>();
    assert_eq!(v.values().to_vec(), [3.0, 7.0, 1.0, 3.0, 6.0, 6.0, 60.0]);
    let labels = m.column_by_name(col::LABELS).unwrap().as_map();
    let le: Vec<String> = (2..5)
        .map(|i| {
            let entry = labels.value(i);
            let keys = entry.column(0).as_string::<i32>();
            let vals = entry.column(1).as_string::<i32>();
            let at = (0..keys.len()).find(|&k| keys.value(k) == "le").unwrap();
            vals.value(at).to_owned()
        })
        .collect();
    assert_eq!(le, ["5", "10", "+Inf"]);
    assert!(
        strings(m, col::EXTRA)[4]
            .as_deref()
            .unwrap()
            .contains(r#""temporality":"delta""#)
    );
}

#[test]
fn payloads_that_do_not_decode_are_dead_letters_with_their_bytes() {
    let good = spans_request().encode_to_vec();
    let truncated = good[..good.len() / 2].to_vec();
    let garbage = b"\xff\xff\xff\xffnot protobuf".to_vec();
    let (d, b) = decode(
        RecordKind::Spans,
        OtlpEncoding::Protobuf,
        &[garbage.clone(), truncated, good],
    );
    assert_eq!(
        d.stats().records,
        3,
        "the good payload after bad ones is kept"
    );
    assert_eq!(b.dead_letters.num_rows(), 2);
    let code = b
        .dead_letters
        .column_by_name("reason_code")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(
        (code.value(0), code.value(1)),
        ("invalid_protobuf", "invalid_protobuf")
    );
    let raw = b
        .dead_letters
        .column_by_name("raw")
        .unwrap()
        .as_binary::<i32>();
    assert_eq!(raw.value(0), garbage.as_slice());

    let (_, b) = decode(
        RecordKind::Spans,
        OtlpEncoding::Json,
        &[br#"{"resourceSpans": ["#.to_vec()],
    );
    let code = b
        .dead_letters
        .column_by_name("reason_code")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(code.value(0), "invalid_json");
}

#[test]
fn spans_with_bad_ids_or_times_are_rejected_alone() {
    let mut req = spans_request();
    let spans = &mut req.resource_spans[0].scope_spans[0].spans;
    spans[0].trace_id = vec![0; 16];
    spans[1].end_time_unix_nano = spans[1].start_time_unix_nano - 1;
    let mut d = OtlpDecoder::new(
        RecordKind::Spans,
        OtlpEncoding::Protobuf,
        LogSchema::default(),
        opts(),
    );
    let got = d
        .decode_payload(
            &req.encode_to_vec(),
            OtlpEncoding::Protobuf,
            "http",
            None,
            0,
        )
        .unwrap();
    assert_eq!((got.records, got.rejected), (1, 2));
    assert!(got.first_reason.unwrap().contains("trace_id"));
}

#[test]
fn otlp_json_with_integers_as_numbers_is_read_too() {
    let json = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"a"}}}}]}},
        "scopeSpans":[{{"spans":[{{"traceId":"{t}","spanId":"0102030405060708","name":"x","kind":2,
        "startTimeUnixNano":{s},"endTimeUnixNano":{e},"attributes":[{{"key":"n","value":{{"intValue":7}}}}]}}]}}]}}]}}"#,
        t = "ab".repeat(16),
        s = T0,
        e = T0 + 1_000_000
    );
    let (d, b) = decode(RecordKind::Spans, OtlpEncoding::Json, &[json.into_bytes()]);
    assert_eq!((d.stats().records, b.dead_letters.num_rows()), (1, 0));
    assert_eq!(
        strings(&b.records[0], span::ATTRIBUTES)[0].as_deref(),
        Some(r#"{"n":7}"#)
    );
}
