//! A writer's buffer remembers where each batch came from: dropping one source's rows (its
//! partitions were revoked) keeps every other source's, and their age.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    new_null_array,
};
use vigil_core::schema::{labels_type, metric_schema};
use vigil_store::{Archive, FlushPolicy, TableSpec, TableWriter};

/// `n` samples of one metric.
fn samples(n: usize) -> RecordBatch {
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

#[tokio::test]
async fn discarding_one_origin_keeps_the_rows_of_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::new(
        &format!("file://{}", dir.path().display()),
        &BTreeMap::new(),
    )
    .unwrap();
    let mut w = TableWriter::open(&archive, TableSpec::metrics(), FlushPolicy::default())
        .await
        .unwrap();
    w.push_from(1, samples(3));
    w.push_from(2, samples(5));
    w.push_from(1, samples(7));
    let due = w.due_in();
    w.discard_from(1);
    assert_eq!(w.pending_rows(), 5);
    assert!(w.due_in() <= due, "the kept rows keep their age");
    w.discard_from(3);
    assert_eq!(w.pending_rows(), 5);
    let committed = w.commit(&[]).await.unwrap().unwrap();
    assert_eq!(committed.rows, 5);
}
