//! `cargo bench -p vigil-benches --bench otlp`
//!
//! OTLP logs against vigil's JSON lines path, in records per second on one core: the same
//! generated seed-format records, once as NDJSON (the JSON decoder) and once as OTLP
//! `ExportLogsServiceRequest`s of 512 records each (what a collector's batch processor sends),
//! in protobuf and in OTLP/JSON, decoded by `OtlpDecoder` into the same `logs` columns. prost's
//! decode alone (no columns) is the ceiling of the protobuf path.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use vigil_core::schema::{LogSchema, RecordKind};
use vigil_decode::{Decoder, DecoderOptions, OtlpDecoder, OtlpEncoding};

/// Records per OTLP request.
const PER_REQUEST: usize = 512;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect()
}

fn attribute(key: &str, v: &serde_json::Value) -> KeyValue {
    use any_value::Value as V;
    let value = match v {
        serde_json::Value::String(s) => V::StringValue(s.clone()),
        serde_json::Value::Bool(b) => V::BoolValue(*b),
        serde_json::Value::Number(n) if n.is_i64() => V::IntValue(n.as_i64().unwrap()),
        serde_json::Value::Number(n) => V::DoubleValue(n.as_f64().unwrap()),
        other => V::StringValue(other.to_string()),
    };
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
    }
}

/// The NDJSON lines as OTLP requests: each record a `LogRecord` under its service's resource,
/// `additional_data`'s fields and `user_id` as attributes.
fn requests(ndjson: &[u8]) -> Vec<ExportLogsServiceRequest> {
    let text = std::str::from_utf8(ndjson).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    records
        .chunks(PER_REQUEST)
        .map(|chunk| {
            let mut by_service: Vec<ResourceLogs> = Vec::new();
            for r in chunk {
                let service = r["service"].as_str().unwrap();
                let t = vigil_core::time::parse_rfc3339_micros(
                    r["timestamp"].as_str().unwrap().as_bytes(),
                )
                .unwrap();
                let mut attributes = vec![attribute("user_id", &r["user_id"])];
                if let Some(ad) = r["additional_data"].as_object() {
                    attributes.extend(ad.iter().map(|(k, v)| attribute(k, v)));
                }
                let rec = LogRecord {
                    time_unix_nano: t as u64 * 1000,
                    severity_text: r["level"].as_str().unwrap_or("").into(),
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(
                            r["message"].as_str().unwrap_or("").into(),
                        )),
                    }),
                    attributes,
                    trace_id: hex(&format!("{:0>32}", r["trace_id"].as_str().unwrap_or(""))),
                    span_id: hex(r["span_id"].as_str().unwrap_or("")),
                    ..Default::default()
                };
                let at = by_service.iter().position(|rl| {
                    rl.resource.as_ref().unwrap().attributes[0]
                        .value
                        .as_ref()
                        .unwrap()
                        .value
                        == Some(any_value::Value::StringValue(service.into()))
                });
                let rl = match at {
                    Some(i) => &mut by_service[i],
                    None => {
                        by_service.push(ResourceLogs {
                            resource: Some(Resource {
                                attributes: vec![attribute("service.name", &service.into())],
                                ..Default::default()
                            }),
                            scope_logs: vec![ScopeLogs::default()],
                            ..Default::default()
                        });
                        by_service.last_mut().unwrap()
                    }
                };
                rl.scope_logs[0].log_records.push(rec);
            }
            ExportLogsServiceRequest {
                resource_logs: by_service,
            }
        })
        .collect()
}

fn opts() -> DecoderOptions {
    DecoderOptions {
        max_future_skew: None,
        max_record_bytes: 64 << 20,
        ..Default::default()
    }
}

fn decode_json_lines(input: &[u8]) -> u64 {
    let mut d = Decoder::logs(LogSchema::seed(), opts());
    let mut rows = 0;
    d.decode_all(input, |b| rows += b.num_records() as u64);
    d.end_of_input();
    rows + d.flush().map_or(0, |b| b.num_records() as u64)
}

fn decode_otlp(payloads: &[Vec<u8>], encoding: OtlpEncoding) -> u64 {
    let mut d = OtlpDecoder::new(RecordKind::Logs, encoding, LogSchema::seed(), opts());
    let mut rows = 0;
    for (i, p) in payloads.iter().enumerate() {
        d.decode_messages("bench", Some(0), [(p.as_slice(), i as i64)]);
        if d.buffered() >= 8192 {
            rows += d.flush().map_or(0, |b| b.num_records() as u64);
        }
    }
    rows + d.flush().map_or(0, |b| b.num_records() as u64)
}

fn bench(c: &mut Criterion) {
    let input = vigil_benches::seed_logs(16 << 20);
    let lines = input.iter().filter(|&&b| b == b'\n').count() as u64;
    let reqs = requests(&input);
    let proto: Vec<Vec<u8>> = reqs.iter().map(|r| r.encode_to_vec()).collect();
    let json: Vec<Vec<u8>> = reqs
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap())
        .collect();
    assert_eq!(decode_json_lines(&input), lines);
    assert_eq!(decode_otlp(&proto, OtlpEncoding::Protobuf), lines);
    assert_eq!(decode_otlp(&json, OtlpEncoding::Json), lines);
    let size = |p: &[Vec<u8>]| p.iter().map(Vec::len).sum::<usize>() >> 20;
    eprintln!(
        "{lines} records: NDJSON {} MiB, OTLP protobuf {} MiB, OTLP/JSON {} MiB",
        input.len() >> 20,
        size(&proto),
        size(&json)
    );

    let mut g = c.benchmark_group("otlp");
    g.throughput(Throughput::Elements(lines));
    g.sample_size(10);
    g.bench_function("json-lines", |b| {
        b.iter(|| black_box(decode_json_lines(&input)))
    });
    g.bench_function("otlp-proto", |b| {
        b.iter(|| black_box(decode_otlp(&proto, OtlpEncoding::Protobuf)))
    });
    g.bench_function("otlp-json", |b| {
        b.iter(|| black_box(decode_otlp(&json, OtlpEncoding::Json)))
    });
    g.bench_function("prost-decode-only", |b| {
        b.iter(|| {
            let n: usize = proto
                .iter()
                .map(|p| {
                    let r = ExportLogsServiceRequest::decode(p.as_slice()).unwrap();
                    r.resource_logs
                        .iter()
                        .map(|rl| rl.scope_logs[0].log_records.len())
                        .sum::<usize>()
                })
                .sum();
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
