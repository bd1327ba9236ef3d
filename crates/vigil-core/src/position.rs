//! Where a record came from, so a dead letter or a checkpoint can point back at it.

use std::fmt;
use std::sync::Arc;

/// The position of one record in its source.
///
/// For a file or stdin the `offset` is the 1-based line number and `partition` is `None`; for
/// Kafka `source` is the topic, `partition` the partition and `offset` the message offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourcePosition {
    /// File path, `-` for stdin, topic name, or generator name.
    pub source: Arc<str>,
    /// Kafka partition, if the source has partitions.
    pub partition: Option<i32>,
    /// Line number (files) or message offset (Kafka).
    pub offset: i64,
}

impl fmt::Display for SourcePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.partition {
            Some(p) => write!(f, "{}[{}]@{}", self.source, p, self.offset),
            None => write!(f, "{}:{}", self.source, self.offset),
        }
    }
}
