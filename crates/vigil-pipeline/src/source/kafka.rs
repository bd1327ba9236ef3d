//! A Kafka consumer-group member as a source: assignment, repositioning and lag statistics.
//! Decoding happens here, per partition; archiving, offsets and fencing are the sink's.
//!
//! ```text
//! poll ─► runs of messages per partition ─► decode ─► SourceBatch + CheckpointDelta ─► sink
//!   ▲                                                                                   │
//!   └── on assignment: each partition resumes where the archive ends                    │
//!   └── Feedback::Reposition (a fenced commit) / Committed (offsets to the group) ◄─────┘
//! ```
//!
//! The archive is the source of truth for offsets: when partitions are assigned, each resumes
//! from the next offset the archive records for it (read inside librdkafka's rebalance
//! callback, before fetching starts). Rebalances are eager: all partitions are revoked, the
//! run being collected is dropped, and the sink drops what it buffered from this source (its
//! offsets were never committed, so the next owner reads it again). After a commit the sink
//! reports the offsets, which go to the group too, so lag tooling stays accurate.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use vigil_core::Partition;
use vigil_core::schema::RecordKind;
use vigil_decode::DecodedBatch;
use vigil_kafka::{Assigned, Consumer, MessageExt, TopicPartition};
use vigil_store::{Archive, TableSpec};

use super::{AnyDecoder, CheckpointDelta, Feedback, Source, SourceBatch, Step};
use crate::config::{KafkaSourceConfig, Pipeline};
use crate::error::PipelineError;
use crate::summary::{Counters, RunOptions, Summary};
use vigil_core::metrics::Counter;

/// How long one `next` waits for a message.
const POLL: Duration = Duration::from_millis(100);

/// Where the archive has each partition: the next offset to read, `None` where it has none.
type PositionsFn = dyn Fn(&[TopicPartition]) -> Result<Vec<Option<i64>>, Box<dyn std::error::Error + Send + Sync>>
    + Send
    + Sync;

/// A run of consecutive messages from one partition, copied out of librdkafka's buffers.
#[derive(Default)]
struct Run {
    partition: Option<(Partition, RecordKind)>,
    bytes: Vec<u8>,
    /// (start, end, offset) of each message in `bytes`.
    spans: Vec<(usize, usize, i64)>,
    started: Option<Instant>,
}

impl Run {
    fn clear(&mut self) {
        self.partition = None;
        self.bytes.clear();
        self.spans.clear();
        self.started = None;
    }
}

/// A consumer-group member over the source's topics.
pub struct KafkaSource {
    consumer: Consumer,
    /// Everything else, apart: a polled message borrows the consumer while it is handled.
    state: State,
}

struct State {
    name: String,
    config: KafkaSourceConfig,
    /// Reads the archive's positions.
    archived: Arc<PositionsFn>,
    routes: HashMap<String, RecordKind>,
    /// One decoder per topic: topics differ in format (JSON lines, OTLP).
    decoders: HashMap<String, AnyDecoder>,
    run: Run,
    /// Each assigned partition's next position (`None`: the archive has none and nothing was
    /// read yet): the `from` of its next batch.
    positions: HashMap<Partition, Option<i64>>,
    epoch: u64,
    /// With `until_end`: each assigned partition's high watermark when it was assigned.
    ends: HashMap<Partition, i64>,
    until_end: bool,
    ready: VecDeque<Step>,
    counters: Arc<Counters>,
    bytes: Counter,
    stop: Arc<AtomicBool>,
    /// Every partition is read to its end (`until_end`).
    ended: bool,
    /// Asked to stop.
    stopped: bool,
    messages: u64,
    first_message: Option<Instant>,
    last_error_log: Option<Instant>,
}

impl KafkaSource {
    /// Joins the group and subscribes. `rt` runs the archive reads made during rebalances.
    pub fn new(
        name: &str,
        config: &KafkaSourceConfig,
        pipeline: &Pipeline,
        archive: Archive,
        opts: &RunOptions,
        rt: Handle,
    ) -> Result<Self, PipelineError> {
        let routes: HashMap<String, RecordKind> = config.topics.iter().cloned().collect();
        let decoders = routes
            .iter()
            .map(|(topic, &k)| {
                let format = config.formats.get(topic).copied();
                (topic.clone(), AnyDecoder::new(k, format, pipeline))
            })
            .collect();
        // Where each partition resumes: the next offset its table records. Read when
        // partitions are assigned (inside librdkafka's rebalance callback) and after a fenced
        // commit.
        let positions: Arc<PositionsFn> = {
            let routes = routes.clone();
            let tables: HashMap<RecordKind, String> = routes
                .values()
                .map(|&k| (k, table_of(pipeline, k)))
                .collect();
            Arc::new(move |tps: &[TopicPartition]| {
                let mut out = vec![None; tps.len()];
                for (kind, table) in &tables {
                    let (at, ids): (Vec<usize>, Vec<String>) = tps
                        .iter()
                        .enumerate()
                        .filter(|(_, tp)| routes.get(&tp.topic) == Some(kind))
                        .map(|(i, tp)| (i, Partition::new(&tp.topic, tp.partition).app_id()))
                        .unzip();
                    let found = rt.block_on(archive.app_versions(table, &ids))?;
                    for (i, v) in at.into_iter().zip(found) {
                        out[i] = v;
                    }
                }
                Ok(out)
            })
        };
        let resume = {
            let positions = Arc::clone(&positions);
            Box::new(move |tps: &[TopicPartition]| positions(tps))
        };
        let mut settings = config.consumer.clone();
        settings.topics = config.topics.iter().map(|(t, _)| t.clone()).collect();
        let consumer = Consumer::new(&settings, resume, opts.kafka_stats.clone())
            .map_err(PipelineError::kafka)?;
        tracing::info!(source = %name, brokers = %settings.brokers, group = %settings.group_id, topics = ?settings.topics, "consuming");
        Ok(Self {
            consumer,
            state: State {
                name: name.into(),
                config: config.clone(),
                archived: positions,
                routes,
                decoders,
                run: Run::default(),
                positions: HashMap::new(),
                epoch: 0,
                ends: HashMap::new(),
                until_end: opts.until_end,
                ready: VecDeque::new(),
                counters: Arc::clone(&opts.counters),
                bytes: Counters::bytes_of(name),
                stop: Arc::clone(&opts.stop),
                ended: false,
                stopped: false,
                messages: 0,
                first_message: None,
                last_error_log: None,
            },
        })
    }
}

impl State {
    /// Decodes the run collected so far into a batch with its delta.
    fn flush_run(&mut self) {
        let Some((partition, kind)) = self.run.partition.take() else {
            return;
        };
        if self.run.spans.is_empty() {
            self.run.clear();
            return;
        }
        let d = self
            .decoders
            .get_mut(&*partition.source)
            .expect("a decoder per routed topic");
        let bytes = &self.run.bytes;
        d.decode_messages(
            &partition.source,
            Some(partition.partition),
            self.run.spans.iter().map(|&(s, e, o)| (&bytes[s..e], o)),
        );
        let last = self.run.spans.last().expect("not empty").2;
        let batch = d.flush().unwrap_or_else(DecodedBatch::empty);
        self.run.clear();
        let from = self.positions.get(&partition).copied().flatten();
        self.positions.insert(partition.clone(), Some(last + 1));
        self.ready.push_back(Step::Batch(SourceBatch {
            kind,
            stream: Arc::from(partition.to_string()),
            batch,
            delta: Some(CheckpointDelta {
                partition,
                from,
                to: last + 1,
                epoch: self.epoch,
            }),
        }));
    }

    /// Drops what was read and not handed over.
    fn drop_unsent(&mut self) {
        self.run.clear();
        for d in self.decoders.values_mut() {
            let _ = d.flush();
        }
        self.ready.retain(|s| !matches!(s, Step::Batch(_)));
    }

    fn assignment_changed(
        &mut self,
        consumer: &Consumer,
        change: Assigned,
    ) -> Result<(), PipelineError> {
        match change {
            Assigned::Revoked => {
                self.drop_unsent();
                self.positions.clear();
                self.ends.clear();
                self.ready.push_back(Step::Revoked);
            }
            Assigned::Partitions(list) => {
                let mut assigned = Vec::with_capacity(list.len());
                for (tp, position) in list {
                    let partition = Partition::new(&tp.topic, tp.partition);
                    if self.until_end {
                        let end = consumer.high_watermark(&tp).map_err(PipelineError::kafka)?;
                        self.ends.insert(partition.clone(), end);
                    }
                    self.positions.insert(partition.clone(), position);
                    let kind = self.routes.get(&tp.topic).copied();
                    assigned.extend(kind.map(|k| (partition, k)));
                }
                self.ready.push_back(Step::Assigned(assigned));
            }
        }
        Ok(())
    }

    fn message(&mut self, m: &vigil_kafka::Message<'_>) {
        self.first_message.get_or_insert_with(Instant::now);
        self.messages += 1;
        let Some(&kind) = self.routes.get(m.topic()) else {
            return;
        };
        let partition = Partition::new(m.topic(), m.partition());
        let offset = m.offset();
        // Fetched before a reposition to a later offset: already archived.
        if self
            .positions
            .get(&partition)
            .copied()
            .flatten()
            .is_some_and(|next| offset < next)
        {
            return;
        }
        let payload = m.payload().unwrap_or_default();
        self.counters.add_bytes(&self.bytes, payload.len());
        let same = self.run.partition.as_ref().map(|(p, _)| p) == Some(&partition);
        let full = self.run.spans.len() >= self.config.max_batch_records
            || self.run.bytes.len() + payload.len() > self.config.max_batch_bytes;
        if !same || full {
            self.flush_run();
            self.run.partition = Some((partition, kind));
            self.run.started = Some(Instant::now());
        }
        let start = self.run.bytes.len();
        self.run.bytes.extend_from_slice(payload);
        self.run.spans.push((start, self.run.bytes.len(), offset));
    }

    /// With `until_end`: whether every assigned partition is read to its end.
    fn at_end(&self) -> bool {
        self.until_end
            && !self.ends.is_empty()
            && self
                .ends
                .iter()
                .all(|(p, &end)| self.positions.get(p).copied().flatten().unwrap_or(0) >= end)
    }
}

impl Source for KafkaSource {
    fn name(&self) -> &str {
        &self.state.name
    }

    fn next(&mut self) -> Result<Step, PipelineError> {
        let Self { consumer, state } = self;
        // Polls until a step is ready: one message at a time would hand the sink an `Idle`
        // per message (a thread wake-up each in the threaded route).
        loop {
            if let Some(step) = state.ready.pop_front() {
                return Ok(step);
            }
            if state.stopped {
                return Ok(Step::Stopped);
            }
            if state.ended {
                return Ok(Step::End);
            }
            if state.stop.load(Ordering::Relaxed) {
                state.flush_run();
                state.stopped = true;
                continue;
            }
            let polled = consumer.poll(POLL);
            if let Some(e) = consumer.take_failure() {
                return Err(PipelineError::kafka(e));
            }
            // Assignment changes happen inside poll, before the message it returns.
            for change in consumer.take_assignments() {
                state.assignment_changed(consumer, change)?;
            }
            let idle = match polled {
                None => true,
                Some(Err(e)) => {
                    if state
                        .last_error_log
                        .is_none_or(|t| t.elapsed() > Duration::from_secs(10))
                    {
                        tracing::warn!(error = %e, "kafka consumer error (retrying)");
                        state.last_error_log = Some(Instant::now());
                    }
                    true
                }
                Some(Ok(m)) => {
                    state.message(&m);
                    false
                }
            };
            let waited = state
                .run
                .started
                .is_some_and(|t| t.elapsed() >= state.config.max_batch_wait);
            if idle || waited {
                state.flush_run();
            }
            if idle && state.ready.is_empty() {
                if !state.at_end() {
                    return Ok(Step::Idle);
                }
                tracing::info!(source = %state.name, "every assigned partition is read to its end");
                state.ended = true;
            }
        }
    }

    fn resumable(&self) -> bool {
        true
    }

    fn feedback(&mut self, feedback: Feedback) -> Result<(), PipelineError> {
        let Self { consumer, state } = self;
        match feedback {
            Feedback::Committed(positions) => {
                let offsets: Vec<(TopicPartition, i64)> = positions
                    .into_iter()
                    .map(|(p, o)| (topic_partition(&p), o))
                    .collect();
                if let Err(e) = consumer.commit_to_group(&offsets) {
                    tracing::warn!(error = %e, "committing offsets to the group failed (the archive has them)");
                }
            }
            Feedback::OthersEnded => {}
            Feedback::Reposition { epoch } => {
                state.drop_unsent();
                state.epoch = epoch;
                let tps: Vec<TopicPartition> =
                    state.positions.keys().map(topic_partition).collect();
                if tps.is_empty() {
                    return Ok(());
                }
                let archived = (state.archived)(&tps).map_err(|source| {
                    PipelineError::kafka(vigil_kafka::KafkaError::Resume {
                        topic: tps[0].topic.clone(),
                        partition: tps[0].partition,
                        source,
                    })
                })?;
                let restart: Vec<(TopicPartition, Option<i64>)> =
                    tps.into_iter().zip(archived).collect();
                tracing::info!(source = %state.name, positions = ?restart, "restarting where the archive ends");
                for (tp, at) in &restart {
                    state
                        .positions
                        .insert(Partition::new(&tp.topic, tp.partition), *at);
                }
                consumer
                    .reposition(&restart)
                    .map_err(PipelineError::kafka)?;
            }
        }
        Ok(())
    }

    fn close(&mut self) {
        let state = &self.state;
        if let Some(t) = state.first_message {
            let secs = t.elapsed().as_secs_f64();
            tracing::info!(
                source = %state.name,
                messages = state.messages,
                seconds = format!("{secs:.3}"),
                per_second = (state.messages as f64 / secs.max(1e-9)) as u64,
                "consumed and archived, timed from the first message"
            );
        }
        self.consumer.close();
    }

    fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for d in self.state.decoders.values() {
            d.add_to(&mut s);
        }
        s
    }
}

fn topic_partition(p: &Partition) -> TopicPartition {
    TopicPartition {
        topic: p.source.to_string(),
        partition: p.partition,
    }
}

/// The table records of `kind` go to.
fn table_of(pipeline: &Pipeline, kind: RecordKind) -> String {
    TableSpec::records(kind, &pipeline.log_schema).name
}
