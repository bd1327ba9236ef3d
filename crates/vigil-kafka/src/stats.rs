//! Per-partition consumer lag and throughput, from librdkafka's statistics callback, kept
//! ready for the metrics endpoint.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rdkafka::statistics::Statistics;

use crate::consumer::TopicPartition;

/// One partition as librdkafka last reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionStats {
    /// Messages behind the partition's end (`end - committed`, as librdkafka computes it;
    /// vigil commits to the group after every archive commit). Before the group has a
    /// committed offset, `end` less where this assignment started reading (the archive's
    /// offset, or the log start when starting from the earliest); -1 when not known.
    pub consumer_lag: i64,
    /// High watermark: the next offset the broker will assign.
    pub high_watermark: i64,
    /// Offset last committed to the group.
    pub committed_offset: i64,
    /// Messages received since the client started.
    pub messages: u64,
    /// Bytes received since the client started.
    pub bytes: u64,
}

/// The latest statistics per `(topic, partition)`, and which brokers each client reached;
/// cheap to clone and share.
#[derive(Debug, Clone, Default)]
pub struct StatsBook(Arc<Mutex<Book>>);

#[derive(Debug, Default)]
struct Book {
    partitions: BTreeMap<(String, i32), PartitionStats>,
    /// Per client: how many brokers it is connected to.
    brokers_up: BTreeMap<String, usize>,
    /// Per consumer: its group membership as librdkafka reports it.
    groups: BTreeMap<String, Membership>,
    /// Where each assigned partition started reading, for its lag before the first commit.
    starts: BTreeMap<(String, i32), Start>,
}

/// Where a partition's reading started when it was assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At this offset (the archive's).
    At(i64),
    /// At the group's committed offset, else the log start (`auto.offset.reset=earliest`).
    Earliest,
    /// At the group's committed offset, else the end at assignment time.
    Latest,
}

/// A partition's lag: librdkafka's (against the group's committed offset) when it has one;
/// before any commit, the partition's end less where reading started, when that is known
/// (with `Latest` it is not: the end at assignment time is not reported).
fn lag(p: &rdkafka::statistics::Partition, start: Option<Start>) -> Option<i64> {
    if p.consumer_lag >= 0 {
        return Some(p.consumer_lag);
    }
    // librdkafka measures against the last stable offset under read_committed (its default).
    let end = if p.ls_offset >= 0 {
        p.ls_offset
    } else {
        p.hi_offset
    };
    let from = match start? {
        Start::At(o) => o,
        Start::Earliest => p.lo_offset,
        Start::Latest => return None,
    };
    (end >= 0 && from >= 0).then(|| (end - from).max(0))
}

/// A consumer's place in its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// It has joined the group and holds its assignment (possibly empty: more members than
    /// partitions), not in the middle of a rebalance.
    pub steady: bool,
    /// Partitions assigned to it.
    pub partitions: i32,
    /// librdkafka's words for the group state and join state.
    pub state: String,
}

impl StatsBook {
    /// Notes where newly assigned partitions start reading: each partition's offset, or
    /// `None` to follow the group's committed offset and then `fallback`.
    pub fn assigned(&self, positions: &[(TopicPartition, Option<i64>)], fallback: Start) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (tp, at) in positions {
            all.starts.insert(
                (tp.topic.clone(), tp.partition),
                at.map_or(fallback, Start::At),
            );
        }
    }

    /// Records a statistics report (partition -1, librdkafka's internal one, is skipped), and
    /// sets the process's metrics from it.
    pub fn record(&self, s: &Statistics) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // The cluster's brokers, not librdkafka's internal one.
        let up = s
            .brokers
            .values()
            .filter(|b| b.source != "internal" && b.state == "UP")
            .count();
        all.brokers_up.insert(s.name.clone(), up);
        if let Some(g) = &s.cgrp {
            all.groups.insert(
                s.name.clone(),
                Membership {
                    steady: g.state == "up" && g.join_state == "steady",
                    partitions: g.assignment_size,
                    state: format!("{}/{}", g.state, g.join_state),
                },
            );
        }
        let Book {
            partitions: book,
            starts,
            ..
        } = &mut *all;
        for (topic, t) in &s.topics {
            // A partition this client no longer wants (revoked) leaves the book.
            book.retain(|(tp, partition), _| {
                tp != topic || t.partitions.get(partition).is_some_and(|p| p.desired)
            });
            for (&partition, p) in &t.partitions {
                if partition < 0 || !p.desired {
                    continue;
                }
                let key = (topic.clone(), partition);
                let start = starts.get(&key).copied();
                book.insert(
                    key,
                    PartitionStats {
                        consumer_lag: lag(p, start).unwrap_or(-1),
                        high_watermark: p.hi_offset,
                        committed_offset: p.committed_offset,
                        messages: p.rxmsgs,
                        bytes: p.rxbytes,
                    },
                );
            }
        }
        let m = vigil_core::metrics::metrics();
        // Partitions no longer assigned leave the lag gauge; the totals stay, as counters do.
        m.consumer_lag.retain(|k| {
            k[1].parse()
                .is_ok_and(|p: i32| book.contains_key(&(k[0].clone(), p)))
        });
        for ((topic, partition), p) in book.iter() {
            let labels = [topic.as_str(), &partition.to_string()];
            // Unknown (-1) before the partition's end is, or before its first commit when it
            // started at the end: no figure rather than a wrong one.
            if p.consumer_lag >= 0 {
                m.consumer_lag.set(&labels, p.consumer_lag as f64);
            }
            m.kafka_messages.set_total(&labels, p.messages);
            m.kafka_bytes.set_total(&labels, p.bytes);
        }
    }

    /// A copy of the latest figures.
    pub fn snapshot(&self) -> BTreeMap<(String, i32), PartitionStats> {
        let book = self.0.lock().unwrap_or_else(|e| e.into_inner());
        book.partitions.clone()
    }

    /// Every consumer's group membership, as last reported.
    pub fn memberships(&self) -> Vec<Membership> {
        let book = self.0.lock().unwrap_or_else(|e| e.into_inner());
        book.groups.values().cloned().collect()
    }

    /// Whether every client that reported has a broker up: `None` before any report.
    pub fn brokers_up(&self) -> Option<bool> {
        let book = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if book.brokers_up.is_empty() {
            return None;
        }
        Some(book.brokers_up.values().all(|&up| up > 0))
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::statistics::Partition;

    use super::*;

    /// What librdkafka reports for a partition with a log from offset 10 to 100.
    fn partition(committed: Option<i64>) -> Partition {
        Partition {
            lo_offset: 10,
            hi_offset: 100,
            ls_offset: 100,
            committed_offset: committed.unwrap_or(-1001),
            consumer_lag: committed.map_or(-1, |c| 100 - c),
            desired: true,
            ..Partition::default()
        }
    }

    #[test]
    fn lag_before_the_first_commit_counts_from_where_reading_started() {
        // Before any commit librdkafka says -1: a backlog would look like no lag at all.
        let fresh = partition(None);
        assert_eq!(lag(&fresh, Some(Start::Earliest)), Some(90));
        assert_eq!(lag(&fresh, Some(Start::At(40))), Some(60));
        assert_eq!(lag(&fresh, Some(Start::Latest)), None);
        assert_eq!(lag(&fresh, None), None);
        // The end not yet known.
        let unknown = Partition {
            hi_offset: -1001,
            ls_offset: -1001,
            ..fresh
        };
        assert_eq!(lag(&unknown, Some(Start::At(40))), None);
        // Once the group has an offset, librdkafka's figure is the one.
        let committed = partition(Some(95));
        assert_eq!(lag(&committed, Some(Start::At(40))), Some(5));
        assert_eq!(lag(&committed, Some(Start::Latest)), Some(5));
    }
}
