//! `cargo +nightly fuzz run detect` (from crates/vigil-detect), or `benches/scripts/fuzz.sh`.
//!
//! Records in, events out: batches of (time, service, value) built from the bytes, with times
//! anywhere in the i64 range, any float, up to 256 services, and watermarks that jump. A
//! threshold rule and a per-service baseline must never panic. (The proptest
//! `windows::tests::hostile` also checks the series remembered stay within their limits.)

#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use libfuzzer_sys::fuzz_target;
use vigil_core::schema::RecordKind;
use vigil_detect::{Condition, RuleSpec, SeriesLimits, Severity, WindowedRules};

const T0: i64 = 1_748_854_800_000_000;

fn rule(name: &str, signal: &str, condition: Condition, no_data: Option<f64>) -> RuleSpec {
    RuleSpec {
        name: name.into(),
        table: RecordKind::Metrics,
        window: Duration::from_secs(120),
        hop: Duration::from_secs(60),
        signal: signal.into(),
        filter: None,
        reads: None,
        cause: false,
        condition,
        no_data,
        for_: Duration::from_secs(120),
        keep_firing_for: Duration::ZERO,
        severity: Severity::P3,
        annotations: BTreeMap::new(),
        labels: BTreeMap::new(),
    }
}

fn batch(rows: &[(i64, String, f64)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("service", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.0))
                    .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1.as_str()))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ],
    )
    .unwrap()
}

fuzz_target!(|data: &[u8]| {
    let threshold = Condition::Threshold {
        comparison: ">".parse().unwrap(),
        threshold: 100.0,
    };
    let specs = [
        rule("big", "max(value)", threshold, None),
        rule("rate", "count(*)", Condition::Baseline, Some(0.0)),
    ];
    let limits = SeriesLimits {
        max: 64,
        ttl: Duration::from_secs(600),
    };
    let mut rules = WindowedRules::new(&specs).with_series_limits(limits);
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    // Each 18-byte chunk is one row: a time byte pattern, a service, a value; a chunk whose
    // first byte is 0xff ends a batch and advances the watermark to its time.
    let mut rows = Vec::new();
    for c in data.chunks_exact(18) {
        let word = i64::from_le_bytes(c[1..9].try_into().unwrap());
        let time = match c[0] % 4 {
            0 | 1 => T0 + (word % (4 * 3_600_000_000)),
            2 => T0 + i64::from(c[1]) * 60_000_000,
            _ => word,
        };
        if c[0] == 0xff {
            rules.push(RecordKind::Metrics, &batch(&rows));
            rows.clear();
            let _events = rt.block_on(rules.advance(time)).unwrap();
        } else {
            let value = f64::from_le_bytes(c[10..18].try_into().unwrap());
            rows.push((time, format!("s{}", c[9]), value));
        }
    }
    if !rows.is_empty() {
        rules.push(RecordKind::Metrics, &batch(&rows));
    }
    rt.block_on(rules.advance(i64::MAX)).unwrap();
});
