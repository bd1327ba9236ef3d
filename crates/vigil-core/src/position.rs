//! Where a replayable source is: its partitions and the positions the archive records for
//! them.

use std::fmt;
use std::sync::Arc;

/// One partition of a partitioned, replayable source (a Kafka topic's partition): the unit
/// whose read position the archive records, so a restart resumes where the archive ends.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    /// The topic (or other stream name).
    pub source: Arc<str>,
    /// The partition number.
    pub partition: i32,
}

impl Partition {
    /// A partition of `source`.
    pub fn new(source: &str, partition: i32) -> Self {
        Self {
            source: Arc::from(source),
            partition,
        }
    }

    /// The Delta application id under which the archive records the partition's next
    /// position (a `txn` action): `vigil:<topic>:<partition>`, as kafka-delta-ingest does.
    pub fn app_id(&self) -> String {
        format!("vigil:{}:{}", self.source, self.partition)
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source, self.partition)
    }
}
