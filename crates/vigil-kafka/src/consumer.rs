//! A consumer-group member that resumes every partition it is assigned from the archive.

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;

use crate::config::ConsumerSettings;
use crate::error::KafkaError;
use crate::quiet::Quiet;
use crate::stats::{Start, StatsBook};

pub use rdkafka::message::BorrowedMessage as Message;

/// A topic and partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
}

/// Where the archive ends for each partition: the next offset to read, or `None` when the
/// archive has nothing from it (the group's committed offset, else `auto.offset.reset`,
/// applies). Called during a rebalance, on the thread that polls.
pub type ResumeFn = Box<
    dyn Fn(&[TopicPartition]) -> Result<Vec<Option<i64>>, Box<dyn std::error::Error + Send + Sync>>
        + Send
        + Sync,
>;

/// A change of assignment, seen by the thread that polls, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assigned {
    /// Every partition was taken away (eager rebalancing): anything buffered from them must be
    /// dropped, not committed; their new owner reads it again from the archive's offsets.
    Revoked,
    /// Partitions now owned, each with the offset it resumes from (`None`: not in the archive).
    Partitions(Vec<(TopicPartition, Option<i64>)>),
}

struct Context {
    resume: ResumeFn,
    events: Mutex<Vec<Assigned>>,
    failure: Mutex<Option<KafkaError>>,
    stats: StatsBook,
    /// Where a partition the archive has no offset for starts, for its lag.
    fallback: Start,
    quiet: Quiet,
}

impl Context {
    fn push(&self, e: Assigned) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(e);
    }
}

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        self.stats.record(&statistics);
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.quiet.log(level, fac, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.quiet.error(&error, reason);
    }
}

impl ConsumerContext for Context {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
            if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
                tracing::warn!(?err, "rebalance error; dropping the assignment");
            }
            tracing::info!(partitions = tpl.count(), "partitions revoked");
            if let Err(e) = consumer.unassign() {
                tracing::warn!(error = %e, "unassign failed");
            }
            self.push(Assigned::Revoked);
            return;
        }
        let tps: Vec<TopicPartition> = tpl
            .elements()
            .iter()
            .map(|e| TopicPartition {
                topic: e.topic().to_string(),
                partition: e.partition(),
            })
            .collect();
        let offsets = match (self.resume)(&tps) {
            Ok(o) => o,
            Err(source) => {
                // Without the archive's offsets, reading could duplicate records: own nothing,
                // and let the poll loop stop with the error.
                let tp = tps.first().cloned().unwrap_or(TopicPartition {
                    topic: String::new(),
                    partition: -1,
                });
                *self.failure.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(KafkaError::Resume {
                        topic: tp.topic,
                        partition: tp.partition,
                        source,
                    });
                let _ = consumer.unassign();
                return;
            }
        };
        for (tp, offset) in tps.iter().zip(&offsets) {
            if let Some(o) = offset
                && let Err(e) =
                    tpl.set_partition_offset(&tp.topic, tp.partition, Offset::Offset(*o))
            {
                tracing::warn!(error = %e, topic = %tp.topic, partition = tp.partition, "cannot set start offset");
            }
        }
        tracing::info!(partitions = ?tps.iter().zip(&offsets).map(|(tp, o)| format!("{}[{}]@{}", tp.topic, tp.partition, o.map_or("group".into(), |o| o.to_string()))).collect::<Vec<_>>(), "partitions assigned");
        if let Err(e) = consumer.assign(tpl) {
            *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.into());
            return;
        }
        let positions: Vec<(TopicPartition, Option<i64>)> = tps.into_iter().zip(offsets).collect();
        self.stats.assigned(&positions, self.fallback);
        self.push(Assigned::Partitions(positions));
    }
}

/// A consumer-group member over the configured topics. Eager rebalancing only (range or
/// roundrobin assignors; the config layer rejects cooperative ones).
pub struct Consumer {
    inner: BaseConsumer<Context>,
}

impl Consumer {
    /// Creates the consumer and subscribes. `resume` says where the archive ends per
    /// partition; it is called on every assignment. librdkafka's statistics (per-partition lag
    /// and throughput) are recorded into `stats` every `settings.stats_interval`.
    pub fn new(
        settings: &ConsumerSettings,
        resume: ResumeFn,
        stats: StatsBook,
    ) -> Result<Self, KafkaError> {
        let ctx = Context {
            resume,
            events: Mutex::default(),
            failure: Mutex::default(),
            stats,
            fallback: if settings.start_earliest {
                Start::Earliest
            } else {
                Start::Latest
            },
            quiet: Quiet::default(),
        };
        let inner: BaseConsumer<Context> = settings.client_config().create_with_context(ctx)?;
        let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
        inner.subscribe(&topics)?;
        Ok(Self { inner })
    }

    /// Waits up to `timeout` for the next message. Rebalances happen inside this call; check
    /// [`take_assignments`](Self::take_assignments) after it.
    pub fn poll(&self, timeout: Duration) -> Option<KafkaResult<Message<'_>>> {
        self.inner.poll(timeout)
    }

    /// Assignment changes since the last call, oldest first.
    pub fn take_assignments(&self) -> Vec<Assigned> {
        std::mem::take(
            &mut *self
                .inner
                .context()
                .events
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// A failure inside a rebalance (e.g. the archive could not be read), if one happened.
    pub fn take_failure(&self) -> Option<KafkaError> {
        self.inner
            .context()
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// The partitions currently assigned.
    pub fn assignment(&self) -> Result<Vec<TopicPartition>, KafkaError> {
        Ok(self
            .inner
            .assignment()?
            .elements()
            .iter()
            .map(|e| TopicPartition {
                topic: e.topic().to_string(),
                partition: e.partition(),
            })
            .collect())
    }

    /// Restarts assigned partitions at the given offsets (`None`: the group's committed offset,
    /// else `auto.offset.reset`), dropping whatever was fetched for them.
    pub fn reposition(
        &self,
        positions: &[(TopicPartition, Option<i64>)],
    ) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for (tp, o) in positions {
            let offset = o.map_or(Offset::Stored, Offset::Offset);
            tpl.add_partition_offset(&tp.topic, tp.partition, offset)?;
        }
        self.inner.assign(&tpl).map_err(KafkaError::from)?;
        let ctx = self.inner.context();
        ctx.stats.assigned(positions, ctx.fallback);
        Ok(())
    }

    /// The partition's high watermark: the offset the next produced message will get.
    pub fn high_watermark(&self, tp: &TopicPartition) -> Result<i64, KafkaError> {
        let (_, high) =
            self.inner
                .fetch_watermarks(&tp.topic, tp.partition, Duration::from_secs(10))?;
        Ok(high)
    }

    /// How many partitions `topic` has.
    pub fn partition_count(&self, topic: &str) -> Result<usize, KafkaError> {
        let md = self
            .inner
            .fetch_metadata(Some(topic), Duration::from_secs(10))?;
        Ok(md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len()))
    }

    /// Tells the group how far the archive goes (next offsets), without waiting. The archive,
    /// not the group, is the source of truth; this keeps lag tooling accurate.
    pub fn commit_to_group(&self, offsets: &[(TopicPartition, i64)]) -> Result<(), KafkaError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (tp, o) in offsets {
            tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*o))?;
        }
        self.inner
            .commit(&tpl, CommitMode::Async)
            .map_err(KafkaError::from)
    }

    /// Leaves the group cleanly (partitions are revoked first, so they move at once).
    pub fn close(&self) {
        self.inner.unsubscribe();
        // Serve the revocation so the group rebalances now rather than after the session
        // timeout.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            let _ = self.inner.poll(Duration::from_millis(100));
            if self
                .inner
                .assignment()
                .map(|a| a.count() == 0)
                .unwrap_or(true)
            {
                break;
            }
        }
    }
}
