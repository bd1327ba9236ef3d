//! Sources: where records come from, and how far the archive has them.
//!
//! ```text
//! Source::next ─► Step::Batch(SourceBatch { kind, stream, batch, delta }) ─► Sink
//!      ▲          Step::Assigned / Revoked (partitions changing hands)            │
//!      └──────── Feedback::Committed / Reposition ◄────────────────────────────────┘
//! ```
//!
//! A source turns its input into decoded batches, each with the [`CheckpointDelta`] it
//! advances: the partition it read and the positions it moved between. The sink commits the
//! batch's rows and the delta in the same Delta commit (the delta becomes a `txn` action), so
//! a restart resumes exactly where the archive ends: *exactly once* means every record is in
//! the archive once, because the positions and the rows become visible together.
//!
//! Sources that are read from their beginning on every run (files, stdin, the generator) have
//! no positions: their batches carry no delta, and a run ends when they end. A partitioned
//! source (Kafka) is told where each partition resumes when it is assigned, from the archive,
//! and must then produce, per partition, deltas that chain: each batch's `from` is the
//! previous batch's `to`. When a commit is *fenced* (another writer recorded the partition
//! first), the sink drops what it buffered from the source and sends [`Feedback::Reposition`]
//! with a new epoch: the source restarts each partition it owns where the archive ends and
//! stamps later batches with that epoch, so the sink can tell them from batches read before.
//!
//! Ordering: the sink sees one source's steps in the order `next` returned them. Delivery: a
//! batch handed to the sink is archived unless its partition is revoked or fenced first, in
//! which case it is read again by whoever owns the partition next.
//!
//! Registry: [`build`] makes the sources of a pipeline's `[[sources]]`.

mod generator;
mod input;
mod kafka;
mod merge;
mod ndjson;
mod otlp;
mod parallel;

use std::sync::Arc;

use tokio::runtime::Handle;
use vigil_core::Partition;
use vigil_core::schema::RecordKind;
use vigil_decode::{DecodedBatch, Decoder, OtlpDecoder, OtlpEncoding};
use vigil_store::Archive;

use crate::config::{Pipeline, SourceConfig, SourceKind};
use crate::error::PipelineError;
use crate::summary::{Counters, RunOptions, Summary};

pub use generator::GeneratorSource;
pub use input::{Input, check_readable};
pub use kafka::KafkaSource;
pub use merge::MergeSource;
pub use ndjson::NdjsonSource;
pub use otlp::OtlpSource;
pub use parallel::{Parallel, Units};

/// How a batch moves its partition's position: the archive records `to` as the partition's
/// next position (a Delta `txn` action with the partition's app id) in the commit holding the
/// batch's rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointDelta {
    /// The partition read.
    pub partition: Partition,
    /// Its position before the batch, as the source last knew the archive to hold it (`None`:
    /// the archive has none). The commit is fenced if the table holds something else.
    pub from: Option<i64>,
    /// Its position after the batch: the next offset to read.
    pub to: i64,
    /// The [`Feedback::Reposition`] epoch the source was in when it read the batch.
    pub epoch: u64,
}

/// One step of a source's output: decoded rows, and the position they move.
#[derive(Debug)]
pub struct SourceBatch {
    /// Which table the records go to.
    pub kind: RecordKind,
    /// The ordered stream the rows come from (a partition, a file source): event time rises
    /// roughly in order within it, and detection's watermark waits for the least advanced.
    pub stream: Arc<str>,
    /// The rows and dead letters; possibly both empty when only the position moved (e.g. the
    /// messages were blank).
    pub batch: DecodedBatch,
    /// The position moved; `None` for sources without positions.
    pub delta: Option<CheckpointDelta>,
}

/// What [`Source::next`] produced.
#[derive(Debug)]
pub enum Step {
    /// Decoded records.
    Batch(SourceBatch),
    /// Partitions now owned, with the kind of records each holds. Each resumes where the
    /// archive ends, read when they were assigned.
    Assigned(Vec<(Partition, RecordKind)>),
    /// Every partition was taken away (eager rebalancing): what the sink buffered from this
    /// source must be dropped, not committed; the partitions' next owner reads it again.
    Revoked,
    /// What the merge consumer of a distributed pipeline saw.
    Shuffle(crate::detect::Shuffled),
    /// Nothing right now; ask again.
    Idle,
    /// The source has ended: its input is exhausted (a Kafka source run `until_end`: every
    /// partition is read to its end), so what it delivered is complete.
    End,
    /// The source was asked to stop: it sends nothing more, but its input goes on (the next
    /// run resumes it), so windows its streams still hold back stay open.
    Stopped,
}

impl Step {
    /// Whether the source sends nothing after this step.
    pub fn is_last(&self) -> bool {
        matches!(self, Step::End | Step::Stopped)
    }
}

/// What the sink tells a source after handling its batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feedback {
    /// These partitions' next positions are now in the archive.
    Committed(Vec<(Partition, i64)>),
    /// A commit was fenced: everything read so far is dropped; restart every partition owned
    /// now where the archive ends, and stamp the batches read from now on with `epoch`.
    Reposition {
        /// The new epoch.
        epoch: u64,
    },
    /// Every other source of the pipeline has ended (the merge consumer then stops).
    OthersEnded,
}

/// A source of records. Runs on a thread of its own (or the pipeline's only thread); `next`
/// may block briefly (a Kafka poll waits up to 100 ms) but returns [`Step::Idle`] rather than
/// waiting for input indefinitely, so the pipeline can stop it and commit on time.
pub trait Source: Send {
    /// The source's name, as in the pipeline file.
    fn name(&self) -> &str;

    /// The next step. After [`Step::End`] or [`Step::Stopped`] it is not called again.
    fn next(&mut self) -> Result<Step, PipelineError>;

    /// Whether the archive records its positions: a restart resumes it where the archive
    /// ends, and detection keeps its windows open across restarts rather than closing them all
    /// when the source ends.
    fn resumable(&self) -> bool {
        false
    }

    /// Handles the sink's feedback; a source without positions gets none.
    fn feedback(&mut self, feedback: Feedback) -> Result<(), PipelineError> {
        let _ = feedback;
        Ok(())
    }

    /// Called once everything it produced is committed (or the pipeline failed): leave
    /// consumer groups, release what it holds.
    fn close(&mut self) {}

    /// What it read: records, dead letters by reason, bytes.
    fn summary(&self) -> Summary;
}

/// Decoder totals into a summary.
fn summarize<'a>(decoders: impl IntoIterator<Item = &'a Decoder>) -> Summary {
    let mut s = Summary::default();
    for d in decoders {
        s.add_decoder(d);
    }
    s
}

/// A decoder of one input format: vigil's JSON lines, or OTLP requests.
pub enum AnyDecoder {
    /// JSON lines (`Decoder`).
    Lines(Box<Decoder>),
    /// OTLP payloads, one request per message.
    Otlp(Box<OtlpDecoder>),
}

impl AnyDecoder {
    /// A decoder of `kind` records: OTLP in `format` if given, else JSON lines.
    pub fn new(kind: RecordKind, format: Option<OtlpEncoding>, pipeline: &Pipeline) -> Self {
        let (schema, opts) = (pipeline.log_schema.clone(), pipeline.decode.clone());
        match format {
            Some(enc) => Self::Otlp(Box::new(OtlpDecoder::new(kind, enc, schema, opts))),
            None => Self::Lines(Box::new(Decoder::new(kind, schema, opts))),
        }
    }

    /// Decodes whole messages of one partition of `source`, each with its offset.
    pub fn decode_messages<'a>(
        &mut self,
        source: &str,
        partition: Option<i32>,
        messages: impl IntoIterator<Item = (&'a [u8], i64)>,
    ) {
        match self {
            Self::Lines(d) => d.decode_messages(source, partition, messages),
            Self::Otlp(d) => d.decode_messages(source, partition, messages),
        }
    }

    /// Takes everything decoded since the previous flush.
    pub fn flush(&mut self) -> Option<DecodedBatch> {
        match self {
            Self::Lines(d) => d.flush(),
            Self::Otlp(d) => d.flush(),
        }
    }

    /// Totals since the decoder was created.
    pub fn stats(&self) -> vigil_decode::DecodeStats {
        match self {
            Self::Lines(d) => d.stats(),
            Self::Otlp(d) => d.stats(),
        }
    }

    /// Adds the decoder's totals to `s`.
    pub fn add_to(&self, s: &mut Summary) {
        match self {
            Self::Lines(d) => s.add_decoder(d),
            Self::Otlp(d) => s.add_decoded(d.stats(), d.dead_letter_counts()),
        }
    }
}

/// The sources of `pipeline`, in the order the file lists them. `rt` drives the archive reads
/// a Kafka source makes from inside librdkafka's rebalance callback; it must not be the
/// runtime of the thread the source runs on.
pub fn build(
    pipeline: &Pipeline,
    archive: &Archive,
    opts: &RunOptions,
    rt: &Handle,
) -> Result<Vec<Box<dyn Source>>, PipelineError> {
    let mut sources: Vec<Box<dyn Source>> = Vec::with_capacity(pipeline.sources.len());
    for s in &pipeline.sources {
        sources.push(build_one(pipeline, s, archive, opts, rt)?);
    }
    Ok(sources)
}

fn build_one(
    pipeline: &Pipeline,
    source: &SourceConfig,
    archive: &Archive,
    opts: &RunOptions,
    rt: &Handle,
) -> Result<Box<dyn Source>, PipelineError> {
    let counters: Arc<Counters> = Arc::clone(&opts.counters);
    let stop = Arc::clone(&opts.stop);
    Ok(match &source.kind {
        SourceKind::File { records, paths } => {
            let inputs = Input::expand(paths)?;
            check_readable(&inputs)?;
            Box::new(NdjsonSource::new(
                &source.name,
                *records,
                inputs,
                pipeline,
                counters,
                stop,
                opts.threads,
            )?)
        }
        SourceKind::Stdin { records } => Box::new(NdjsonSource::new(
            &source.name,
            *records,
            vec![Input::Stdin],
            pipeline,
            counters,
            stop,
            opts.threads,
        )?),
        SourceKind::Generator { config, realtime } => Box::new(GeneratorSource::new(
            &source.name,
            config.clone(),
            *realtime,
            pipeline,
            counters,
            stop,
        )),
        SourceKind::Otlp(o) => Box::new(OtlpSource::new(
            &source.name,
            o,
            pipeline,
            counters,
            stop,
            rt,
        )?),
        SourceKind::Kafka(k) => Box::new(KafkaSource::new(
            &source.name,
            k,
            pipeline,
            archive.clone(),
            opts,
            rt.clone(),
        )?),
    })
}
