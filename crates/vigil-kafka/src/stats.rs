//! Per-partition consumer lag and throughput, from librdkafka's statistics callback, kept
//! ready for the metrics endpoint.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rdkafka::statistics::Statistics;

/// One partition as librdkafka last reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionStats {
    /// Messages behind the partition's high watermark (`hi_offset - committed`, as librdkafka
    /// computes it; vigil commits to the group after every archive commit).
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
        let book = &mut all.partitions;
        for (topic, t) in &s.topics {
            // A partition this client no longer wants (revoked) leaves the book.
            book.retain(|(tp, partition), _| {
                tp != topic || t.partitions.get(partition).is_some_and(|p| p.desired)
            });
            for (&partition, p) in &t.partitions {
                if partition < 0 || !p.desired {
                    continue;
                }
                book.insert(
                    (topic.clone(), partition),
                    PartitionStats {
                        consumer_lag: p.consumer_lag,
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
            // librdkafka reports -1 until a partition has a committed offset.
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
