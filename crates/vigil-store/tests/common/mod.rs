//! Helpers shared by the store's integration tests.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    new_null_array,
};
use vigil_core::schema::{labels_type, metric_schema};

/// `n` samples of one metric.
pub fn samples(n: usize) -> RecordBatch {
    let t0 = 1_748_854_800_000_000_i64;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMicrosecondArray::from_iter_values((0..n as i64).map(|i| t0 + i))
                .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from_iter_values((0..n).map(|_| "cpu_percent"))),
        Arc::new(StringArray::from_iter_values((0..n).map(|_| "gauge"))),
        Arc::new(StringArray::from_iter_values((0..n).map(|_| "database"))),
        Arc::new(Float64Array::from_iter_values((0..n).map(|i| i as f64))),
        new_null_array(&labels_type(), n),
        Arc::new(StringArray::from_iter((0..n).map(|_| None::<&str>))),
        Arc::new(Date32Array::from_iter_values((0..n).map(|_| 20_241))),
    ];
    RecordBatch::try_new(metric_schema(), columns).unwrap()
}
