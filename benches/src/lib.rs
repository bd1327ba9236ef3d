//! Shared inputs for vigil's benchmarks: deterministic seed-format telemetry from the built-in
//! generator, and the typed Arrow schema arrow-json is given for the same records; and [`nab`],
//! a scorer for the Numenta Anomaly Benchmark.
#![warn(missing_docs)]

pub mod nab;

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// At least `min_bytes` of seed-format NDJSON log lines from the generator (seed 7, with an
/// error incident so the data has ERROR lines too).
pub fn seed_logs(min_bytes: usize) -> Vec<u8> {
    let cfg = vigil_gen::Config {
        seed: 7,
        rate: 200.0,
        duration: std::time::Duration::from_secs(24 * 3600),
        incidents: vec!["errors:database@10m+10m".parse().expect("valid incident")],
        ..Default::default()
    };
    let mut g = vigil_gen::Generator::new(cfg);
    let (mut logs, mut metrics) = (Vec::with_capacity(min_bytes + (1 << 20)), Vec::new());
    while logs.len() < min_bytes && g.next_tick(&mut logs, &mut metrics) {
        metrics.clear();
    }
    logs
}

/// The schema arrow-json decodes the generator's log lines into: the same top-level columns
/// as vigil's `logs` table, with `additional_data` as a struct of its typed fields (arrow-json
/// cannot keep part of an object as JSON text).
pub fn arrow_json_log_schema() -> SchemaRef {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        // "+00:00" rather than "UTC": arrow-json resolves named zones only with chrono-tz.
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            false,
        ),
        s("level"),
        Field::new("service", DataType::Utf8, false),
        s("trace_id"),
        s("span_id"),
        s("parent_span_id"),
        s("user_id"),
        s("message"),
        Field::new(
            "additional_data",
            DataType::Struct(Fields::from(vec![
                Field::new("processing_time_ms", DataType::Float64, true),
                Field::new("status_code", DataType::Int32, true),
                s("operation"),
                s("endpoint"),
                s("method"),
                s("deal_id"),
                s("ai_model_used"),
                Field::new("tokens_used", DataType::Int64, true),
                Field::new("rows", DataType::Int64, true),
            ])),
            true,
        ),
    ]))
}
