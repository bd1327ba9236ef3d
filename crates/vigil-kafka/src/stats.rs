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

/// The latest statistics per `(topic, partition)`; cheap to clone and share.
#[derive(Debug, Clone, Default)]
pub struct StatsBook(Arc<Mutex<BTreeMap<(String, i32), PartitionStats>>>);

impl StatsBook {
    /// Records a statistics report (partition -1, librdkafka's internal one, is skipped).
    pub fn record(&self, s: &Statistics) {
        let mut book = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (topic, t) in &s.topics {
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
    }

    /// A copy of the latest figures.
    pub fn snapshot(&self) -> BTreeMap<(String, i32), PartitionStats> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
