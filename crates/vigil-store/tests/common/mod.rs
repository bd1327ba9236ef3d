//! Helpers shared by the store's integration tests; each test binary uses some of them.
#![allow(dead_code)]

pub mod s3;

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    new_null_array,
};
use vigil_core::schema::{labels_type, metric_schema};

/// 2025-06-02T09:00:00Z in µs.
pub const T0: i64 = 1_748_854_800_000_000;

/// An archive in the local directory `dir`.
pub fn local_archive(dir: &std::path::Path) -> vigil_store::Archive {
    vigil_store::Archive::new(
        &format!("file://{}", dir.display()),
        &std::collections::BTreeMap::new(),
    )
    .unwrap()
}

/// `n` samples of one metric.
pub fn samples(n: usize) -> RecordBatch {
    samples_at(T0, n)
}

/// `n` samples of one metric, a microsecond apart from `t0` (µs).
pub fn samples_at(t0: i64, n: usize) -> RecordBatch {
    let day = (t0.div_euclid(86_400_000_000)) as i32;
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
        Arc::new(Date32Array::from_iter_values((0..n).map(|_| day))),
    ];
    RecordBatch::try_new(metric_schema(), columns).unwrap()
}
