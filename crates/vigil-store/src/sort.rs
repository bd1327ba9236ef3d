//! The order rows are written in: partition (date), then group column (service), then time.
//!
//! Telemetry arrives nearly in time order, interleaved across a handful of services. Rather
//! than a general comparison sort over all rows, rows are bucketed by (date, group) in input
//! order — a stable counting sort — and each bucket is then sorted by time, which for
//! nearly-sorted input is close to linear.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Date32Type, TimestampMicrosecondType};

/// Rows of one partition, in write order, as `(batch, row)` pairs.
pub(crate) struct Partition {
    /// `Date32` value of the partition.
    pub date: i32,
    pub rows: Vec<(u32, u32)>,
}

/// Orders the rows of `batches` by `(date, group, time)`, split by date.
pub(crate) fn sort_rows(
    batches: &[RecordBatch],
    date_col: usize,
    group_col: Option<usize>,
    time_col: usize,
) -> Vec<Partition> {
    // Bucket id per row, assigned in first-seen order.
    let mut bucket_of: HashMap<(i32, Option<&str>), u32> = HashMap::new();
    let mut keys: Vec<(i32, Option<&str>)> = Vec::new();
    let mut row_bucket: Vec<u32> = Vec::with_capacity(batches.iter().map(|b| b.num_rows()).sum());
    for batch in batches {
        let dates = batch.column(date_col).as_primitive::<Date32Type>();
        let groups = group_col.map(|g| batch.column(g).as_string::<i32>());
        let mut last: Option<((i32, Option<&str>), u32)> = None;
        for r in 0..batch.num_rows() {
            let key = (
                dates.value(r),
                groups.and_then(|g| (!g.is_null(r)).then(|| g.value(r))),
            );
            // Consecutive rows often share a bucket; skip the hash lookup then.
            let id = match last {
                Some((k, id)) if k == key => id,
                _ => *bucket_of.entry(key).or_insert_with(|| {
                    keys.push(key);
                    (keys.len() - 1) as u32
                }),
            };
            last = Some((key, id));
            row_bucket.push(id);
        }
    }
    // Counting sort by bucket, stable.
    let mut starts = vec![0usize; keys.len() + 1];
    for &b in &row_bucket {
        starts[b as usize + 1] += 1;
    }
    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    let mut fill = starts.clone();
    let mut ordered = vec![(0u32, 0u32); row_bucket.len()];
    let mut i = 0;
    for (bi, batch) in batches.iter().enumerate() {
        for r in 0..batch.num_rows() {
            let b = row_bucket[i] as usize;
            ordered[fill[b]] = (bi as u32, r as u32);
            fill[b] += 1;
            i += 1;
        }
    }
    let times: Vec<_> = batches
        .iter()
        .map(|b| {
            b.column(time_col)
                .as_primitive::<TimestampMicrosecondType>()
                .values()
                .clone()
        })
        .collect();
    let mut by_key: Vec<usize> = (0..keys.len()).collect();
    by_key.sort_by(|&a, &b| keys[a].cmp(&keys[b]));
    let mut partitions: Vec<Partition> = Vec::new();
    for k in by_key {
        let mut rows = ordered[starts[k]..starts[k + 1]].to_vec();
        rows.sort_by_key(|&(b, r)| times[b as usize][r as usize]);
        match partitions.last_mut() {
            Some(p) if p.date == keys[k].0 => p.rows.extend(rows),
            _ => partitions.push(Partition {
                date: keys[k].0,
                rows,
            }),
        }
    }
    partitions
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Date32Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;

    fn batch(rows: &[(i32, &str, i64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("date", DataType::Date32, false),
            Field::new("service", DataType::Utf8, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    rows.iter().map(|r| r.2),
                )),
            ],
        )
        .unwrap()
    }

    #[test]
    fn orders_by_date_then_group_then_time_across_batches() {
        let a = batch(&[(2, "b", 5), (1, "b", 9), (1, "a", 7), (2, "a", 1)]);
        let b = batch(&[(1, "a", 3), (1, "b", 1), (2, "b", 2)]);
        let parts = sort_rows(&[a.clone(), b.clone()], 0, Some(1), 2);
        let dates: Vec<i32> = parts.iter().map(|p| p.date).collect();
        assert_eq!(dates, [1, 2]);
        let flat = |p: &Partition| -> Vec<(String, i64)> {
            p.rows
                .iter()
                .map(|&(bi, r)| {
                    let batch = [&a, &b][bi as usize];
                    let s = batch
                        .column(1)
                        .as_string::<i32>()
                        .value(r as usize)
                        .to_string();
                    let t = batch
                        .column(2)
                        .as_primitive::<TimestampMicrosecondType>()
                        .value(r as usize);
                    (s, t)
                })
                .collect()
        };
        assert_eq!(
            flat(&parts[0]),
            [
                ("a".into(), 3),
                ("a".into(), 7),
                ("b".into(), 1),
                ("b".into(), 9)
            ]
        );
        assert_eq!(
            flat(&parts[1]),
            [("a".into(), 1), ("b".into(), 2), ("b".into(), 5)]
        );
    }
}
