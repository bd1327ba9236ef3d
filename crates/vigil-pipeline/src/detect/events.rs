//! Anomaly events as rows of the `anomalies` table.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::TimestampMicrosecondArray;
use arrow::array::{ArrayRef, Date32Array, Float64Array, RecordBatch, StringArray};
use vigil_core::schema::anomaly_schema;
use vigil_core::time::date32_from_micros;
use vigil_detect::AnomalyEvent;

/// Rows of the `anomalies` table, partitioned by the day each event was detected.
pub(super) fn events_batch(events: &[AnomalyEvent]) -> RecordBatch {
    let text = |f: &dyn Fn(&AnomalyEvent) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(events.iter().map(f)))
    };
    let time = |f: &dyn Fn(&AnomalyEvent) -> Option<i64>| -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from_iter(events.iter().map(f)).with_timezone("UTC"))
    };
    let json = |m: &BTreeMap<String, String>| {
        serde_json::to_string(m).expect("a map of strings serialises")
    };
    let columns: Vec<ArrayRef> = vec![
        text(&|e| e.id.clone()),
        text(&|e| e.fingerprint.clone()),
        text(&|e| e.status.to_string()),
        text(&|e| e.rule.clone()),
        text(&|e| e.kind.clone()),
        text(&|e| e.severity.name().to_string()),
        text(&|e| e.service.clone()),
        Arc::new(Float64Array::from_iter(events.iter().map(|e| e.value))),
        Arc::new(Float64Array::from_iter(events.iter().map(|e| e.threshold))),
        text(&|e| e.window.clone()),
        text(&|e| e.for_.clone()),
        time(&|e| Some(e.starts_at)),
        time(&|e| e.ends_at),
        time(&|e| Some(e.detected_at)),
        text(&|e| json(&e.labels)),
        text(&|e| json(&e.annotations)),
        Arc::new(StringArray::from_iter(events.iter().map(|e| {
            e.incident
                .as_ref()
                .map(|i| serde_json::to_string(i).expect("an incident serialises"))
        }))),
        Arc::new(Date32Array::from_iter_values(
            events.iter().map(|e| date32_from_micros(e.detected_at)),
        )),
    ];
    RecordBatch::try_new(anomaly_schema(), columns).expect("columns match the anomalies schema")
}
