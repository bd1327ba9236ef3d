//! The order rows are written in: partition (date), then group column (service), then time.
//!
//! The decoder emits one batch per service, in input order, and telemetry arrives in time
//! order per service. When every buffered batch holds one service and its times never go
//! backwards — within a batch or from one batch of a service to the next — the order is
//! already right: each partition is written as zero-copy slices of the buffered batches.
//!
//! Otherwise rows are bucketed by (date, group) in input order — a stable counting sort — and
//! each bucket is sorted by time (close to linear on nearly-sorted input), then gathered.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Date32Type, TimestampMicrosecondType};
use vigil_core::arrays::one_value;

/// Rows of one partition, in write order.
pub(crate) struct Partition {
    /// `Date32` value of the partition.
    pub date: i32,
    pub pieces: Vec<Piece>,
}

/// A run of rows in write order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Rows `offset..offset + len` of batch `batch`, already in order.
    Slice {
        batch: usize,
        offset: usize,
        len: usize,
    },
    /// Rows to gather, as `(batch, row)` pairs.
    Gather(Vec<(u32, u32)>),
}

/// Orders the rows of `batches` by `(date, group, time)`, split by date.
pub(crate) fn sort_rows(
    batches: &[RecordBatch],
    date_col: usize,
    group_col: Option<usize>,
    time_col: usize,
) -> Vec<Partition> {
    presorted(batches, date_col, group_col, time_col)
        .unwrap_or_else(|| bucket_sort(batches, date_col, group_col, time_col))
}

/// The partitions as slices, if every batch holds one group and times never go backwards
/// within a group.
fn presorted(
    batches: &[RecordBatch],
    date_col: usize,
    group_col: Option<usize>,
    time_col: usize,
) -> Option<Vec<Partition>> {
    // (group, batch) for every non-empty batch, in arrival order within a group.
    let mut order: Vec<(Option<&str>, usize)> = Vec::with_capacity(batches.len());
    for (bi, batch) in batches.iter().enumerate() {
        if batch.num_rows() == 0 {
            continue;
        }
        let group = match group_col {
            Some(g) => Some(one_value(batch.column(g).as_string::<i32>())?),
            None => None,
        };
        order.push((group, bi));
    }
    order.sort_by_key(|&(g, _)| g); // stable: keeps arrival order within a group
    let mut partitions: Vec<Partition> = Vec::new();
    let mut last: Option<(Option<&str>, i64)> = None;
    for &(group, bi) in &order {
        let batch = &batches[bi];
        let times = batch
            .column(time_col)
            .as_primitive::<TimestampMicrosecondType>()
            .values();
        if let Some((g, t)) = last
            && g == group
            && times[0] < t
        {
            return None;
        }
        if times.windows(2).any(|w| w[1] < w[0]) {
            return None;
        }
        last = Some((group, times[times.len() - 1]));
        // Times are sorted, so dates are too: each run of one date is one slice.
        let dates = batch.column(date_col).as_primitive::<Date32Type>().values();
        let mut start = 0;
        while start < dates.len() {
            let date = dates[start];
            let end = start + dates[start..].partition_point(|&d| d == date);
            let piece = Piece::Slice {
                batch: bi,
                offset: start,
                len: end - start,
            };
            match partitions.iter_mut().find(|p| p.date == date) {
                Some(p) => p.pieces.push(piece),
                None => partitions.push(Partition {
                    date,
                    pieces: vec![piece],
                }),
            }
            start = end;
        }
    }
    partitions.sort_by_key(|p| p.date);
    Some(partitions)
}

/// The general case: a stable bucket sort by (date, group), then by time within a bucket.
fn bucket_sort(
    batches: &[RecordBatch],
    date_col: usize,
    group_col: Option<usize>,
    time_col: usize,
) -> Vec<Partition> {
    // Bucket id per row, assigned in first-seen order.
    let mut bucket_of: HashMap<(i32, Option<&str>), u32, RandomState> = HashMap::default();
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
            Some(p) if p.date == keys[k].0 => p.pieces.push(Piece::Gather(rows)),
            _ => partitions.push(Partition {
                date: keys[k].0,
                pieces: vec![Piece::Gather(rows)],
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

    pub(super) fn batch(rows: &[(i32, &str, i64)]) -> RecordBatch {
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
            p.pieces
                .iter()
                .flat_map(|piece| match piece {
                    Piece::Gather(rows) => rows.clone(),
                    Piece::Slice { batch, offset, len } => (*offset..offset + len)
                        .map(|r| (*batch as u32, r as u32))
                        .collect(),
                })
                .map(|(bi, r)| {
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

#[cfg(test)]
mod presorted_tests {
    use super::tests::batch;
    use super::*;

    #[test]
    fn single_service_sorted_batches_become_slices() {
        let a = batch(&[(1, "a", 1), (1, "a", 5), (2, "a", 9)]);
        let b = batch(&[(1, "b", 2), (1, "b", 3)]);
        let c = batch(&[(2, "a", 10)]);
        let parts = sort_rows(&[a, b, c], 0, Some(1), 2);
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[0].pieces,
            vec![
                Piece::Slice {
                    batch: 0,
                    offset: 0,
                    len: 2
                },
                Piece::Slice {
                    batch: 1,
                    offset: 0,
                    len: 2
                }
            ]
        );
        assert_eq!(
            parts[1].pieces,
            vec![
                Piece::Slice {
                    batch: 0,
                    offset: 2,
                    len: 1
                },
                Piece::Slice {
                    batch: 2,
                    offset: 0,
                    len: 1
                }
            ]
        );
    }

    #[test]
    fn time_going_backwards_across_batches_falls_back_to_sorting() {
        let a = batch(&[(1, "a", 5)]);
        let b = batch(&[(1, "a", 3)]);
        let parts = sort_rows(&[a, b], 0, Some(1), 2);
        assert_eq!(parts[0].pieces, vec![Piece::Gather(vec![(1, 0), (0, 0)])]);
    }
}
