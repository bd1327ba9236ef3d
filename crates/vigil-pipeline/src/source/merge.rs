//! The merge consumer of a distributed pipeline: a member of the group `<group>.merge` on the
//! partials topic (one partition). Whichever replica owns that partition merges every
//! replica's partials; the others hold nothing. Its steps go to the sink, which hands them to
//! detection ([`Detection::shuffled`](crate::Detection::shuffled)).
//!
//! Where merging resumes is detection's business: its checkpoint holds the next partials
//! offset. A new owner reads the partition from its start and skips what the checkpoint
//! holds; the offset committed to the group after every checkpoint is for lag tooling.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use vigil_kafka::{Assigned, Consumer, ConsumerSettings, MessageExt, TopicPartition};

use super::{Feedback, Source, Step};
use crate::config::Pipeline;
use crate::detect::Shuffled;
use crate::error::PipelineError;
use crate::summary::{RunOptions, Summary};

/// How long one poll waits: short, so a pipeline run on one thread is not held up.
const POLL: Duration = Duration::from_millis(20);

/// Messages handed to detection at once, at most.
const MAX_MESSAGES: usize = 1_000;

/// The partials topic's consumer-group member.
pub struct MergeSource {
    consumer: Consumer,
    topic: String,
    /// The pipeline's Kafka topics: every partition's watermark counts.
    source_topics: Vec<String>,
    ready: VecDeque<Step>,
    stop: Arc<AtomicBool>,
    /// Every other source has ended (with `until_end`): stop merging.
    others_ended: bool,
}

impl MergeSource {
    /// Joins `<group>.merge` on the pipeline's partials topic.
    pub fn new(pipeline: &Pipeline, opts: &RunOptions) -> Result<Self, PipelineError> {
        let k = pipeline
            .first_kafka()
            .expect("the config layer requires a Kafka source");
        let topic = pipeline
            .detect
            .partials_topic
            .clone()
            .expect("a distributed pipeline");
        let settings = ConsumerSettings {
            brokers: k.consumer.brokers.clone(),
            group_id: format!("{}.merge", k.consumer.group_id),
            topics: vec![topic.clone()],
            start_earliest: true,
            properties: vigil_kafka::connection_properties(&k.consumer.properties),
            ..ConsumerSettings::default()
        };
        // Detection's checkpoint says where merging resumes, and it skips what it holds:
        // read from the partition's start (a start inside a record batch is answered from the
        // next batch by some brokers, Tansu 0.6 among them). Keep the topic's retention short.
        let resume = Box::new(|tps: &[TopicPartition]| Ok(vec![Some(0); tps.len()]));
        let consumer = Consumer::new(&settings, resume, vigil_kafka::StatsBook::default())
            .map_err(PipelineError::kafka)?;
        // One merging replica sees every partial only if the topic has one partition (a
        // broker that creates topics on first use may give it more).
        match consumer.partition_count(&topic) {
            Ok(1) => {}
            Ok(0) => {
                return Err(shuffle(format!(
                    "the partials topic `{topic}` does not exist: create it with one partition (README, \"Scaling detection out\")"
                )));
            }
            Ok(n) => {
                return Err(shuffle(format!(
                    "the partials topic `{topic}` has {n} partitions: it needs exactly one, so that one replica merges every partial"
                )));
            }
            Err(e) => return Err(PipelineError::kafka(e)),
        }
        let source_topics = pipeline
            .sources
            .iter()
            .filter_map(|s| match &s.kind {
                crate::config::SourceKind::Kafka(k) => {
                    Some(k.topics.iter().map(|(t, _)| t.clone()))
                }
                _ => None,
            })
            .flatten()
            .collect();
        tracing::info!(topic = %topic, group = %settings.group_id, "joining the merge group");
        Ok(Self {
            consumer,
            topic,
            source_topics,
            ready: VecDeque::new(),
            stop: Arc::clone(&opts.stop),
            others_ended: false,
        })
    }
}

/// Every partition of `topics`, as detection names streams.
fn expected(consumer: &Consumer, topics: &[String]) -> Result<Vec<String>, PipelineError> {
    let mut out = Vec::new();
    for t in topics {
        let n = consumer.partition_count(t).map_err(PipelineError::kafka)?;
        out.extend((0..n).map(|p| vigil_core::Partition::new(t, p as i32).to_string()));
    }
    Ok(out)
}

/// Turns the assignment changes since the last poll into steps.
fn assignments(
    consumer: &Consumer,
    topics: &[String],
    ready: &mut VecDeque<Step>,
) -> Result<(), PipelineError> {
    for change in consumer.take_assignments() {
        let step = match change {
            Assigned::Revoked => Shuffled::NotOwner,
            Assigned::Partitions(p) if p.is_empty() => continue,
            Assigned::Partitions(_) => Shuffled::Owner {
                expected: expected(consumer, topics)?,
            },
        };
        // Messages polled before the change belong to the old owner's turn.
        ready.retain(|s| !matches!(s, Step::Shuffle(Shuffled::Messages(_))));
        ready.push_back(Step::Shuffle(step));
    }
    if let Some(e) = consumer.take_failure() {
        return Err(PipelineError::kafka(e));
    }
    Ok(())
}

impl Source for MergeSource {
    fn name(&self) -> &str {
        "partials"
    }

    fn next(&mut self) -> Result<Step, PipelineError> {
        if let Some(step) = self.ready.pop_front() {
            return Ok(step);
        }
        if self.stop.load(Ordering::Relaxed) || self.others_ended {
            return Ok(Step::Stopped);
        }
        let mut messages = Vec::new();
        let mut wait = POLL;
        while messages.len() < MAX_MESSAGES {
            let polled = self.consumer.poll(wait);
            wait = Duration::ZERO;
            assignments(&self.consumer, &self.source_topics, &mut self.ready)?;
            match polled {
                None => break,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "partials consumer error (retrying)");
                    break;
                }
                Some(Ok(m)) => {
                    if !self.ready.is_empty() {
                        // Ownership changed: what follows is the new turn's.
                        self.ready.push_back(Step::Shuffle(Shuffled::Messages(vec![(
                            m.offset(),
                            m.payload().unwrap_or_default().to_vec(),
                        )])));
                        break;
                    }
                    messages.push((m.offset(), m.payload().unwrap_or_default().to_vec()));
                }
            }
        }
        if !messages.is_empty() {
            self.ready
                .push_front(Step::Shuffle(Shuffled::Messages(messages)));
        }
        Ok(self.ready.pop_front().unwrap_or(Step::Idle))
    }

    fn feedback(&mut self, feedback: Feedback) -> Result<(), PipelineError> {
        match feedback {
            Feedback::Committed(positions) => {
                let offsets: Vec<(TopicPartition, i64)> = positions
                    .into_iter()
                    .map(|(_, o)| {
                        (
                            TopicPartition {
                                topic: self.topic.clone(),
                                partition: 0,
                            },
                            o,
                        )
                    })
                    .collect();
                if let Err(e) = self.consumer.commit_to_group(&offsets) {
                    tracing::warn!(error = %e, "committing the partials offset to the group failed (the checkpoint has it)");
                }
            }
            Feedback::OthersEnded => self.others_ended = true,
            Feedback::Reposition { .. } => {}
        }
        Ok(())
    }

    fn close(&mut self) {
        self.consumer.close();
    }

    fn summary(&self) -> Summary {
        Summary::default()
    }
}

fn shuffle(reason: String) -> PipelineError {
    PipelineError::Detect(vigil_detect::DetectError::Shuffle { reason })
}
