//! Running a pipeline: every source into the one sink, on one thread, or each source on a
//! thread of its own with the sink on the calling thread behind a bounded channel
//! (backpressure: a full channel blocks the sources).

use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use vigil_core::schema::RecordKind;
use vigil_store::{Archive, TableSpec};

use crate::config::{Pipeline, SourceKind};
use crate::detect::Detection;
use crate::error::PipelineError;
use crate::sink::{DeadLetterTopic, Sink};
use crate::source::{self, Feedback, Source, Step};
use crate::summary::{Counters, RunOptions, SinkStats, Summary};

/// Runs every source of `pipeline` to its end (or until `opts.stop`; Kafka sources have no
/// end but that, or `until_end`), archiving what they produce and running the pipeline's rules
/// over it, and commits everything before returning.
pub fn run(pipeline: &Pipeline, opts: &RunOptions, rt: &Runtime) -> Result<Summary, PipelineError> {
    let started = Instant::now();
    let archive = pipeline.archive.open()?;
    // A Kafka source reads the archive's positions from inside librdkafka's rebalance
    // callback, on the thread that polls: through a runtime with a worker of its own.
    let kafka_rt = match pipeline.first_kafka() {
        Some(_) => Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("vigil-kafka-io")
                .enable_all()
                .build()
                .map_err(|e| PipelineError::Panicked(format!("cannot start a runtime: {e}")))?,
        ),
        None => None,
    };
    let io = kafka_rt.as_ref().map_or(rt.handle(), |k| k.handle());
    let mut sources = source::build(pipeline, &archive, opts, io)?;
    let resumable = sources.iter().any(|s| s.resumable());
    let distributed = pipeline.detect.partials_topic.is_some() && !pipeline.rules.is_empty();
    if distributed {
        sources.push(Box::new(source::MergeSource::new(pipeline, opts)?));
    }
    let mut sink = rt.block_on(open_sink(pipeline, archive, resumable, opts, sources.len()))?;
    let mut feedback: Vec<Option<Receiver<Feedback>>> = Vec::with_capacity(sources.len());
    for (i, s) in pipeline.sources.iter().enumerate() {
        let origin = i as u32;
        if let SourceKind::Kafka(k) = &s.kind {
            let (tx, rx) = mpsc::channel();
            sink.connect(origin, tx);
            feedback.push(Some(rx));
            if let Some(topic) = &k.dead_letter_topic {
                let dlq = DeadLetterTopic::new(&k.consumer.brokers, &k.consumer.properties, topic)?;
                sink.route_dead_letters(origin, dlq);
            }
        } else {
            feedback.push(None);
        }
    }
    if distributed {
        let origin = pipeline.sources.len() as u32;
        let (tx, rx) = mpsc::channel();
        sink.connect(origin, tx);
        sink.set_merge_origin(origin);
        feedback.push(Some(rx));
    }
    let route = Route {
        sources: &mut sources,
        feedback,
        opts,
        rt,
        resumable,
    };
    opts.running.store(true, Ordering::Relaxed);
    let result = if opts.threads <= 1 {
        route.inline(sink)
    } else {
        route.threaded(sink)
    };
    opts.running.store(false, Ordering::Relaxed);
    let (sink_stats, anomalies) = result?;
    let mut summary = Summary::default();
    for s in &sources {
        summary.merge(s.summary());
    }
    summary.sink = sink_stats;
    summary.anomalies = anomalies;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// The sink, its tables opened so an unusable archive fails before any input is read, and
/// detection attached (restored from its checkpoint when the pipeline resumes).
async fn open_sink(
    pipeline: &Pipeline,
    archive: Archive,
    resumable: bool,
    opts: &RunOptions,
    origins: usize,
) -> Result<Sink, PipelineError> {
    let mut kinds: Vec<RecordKind> = Vec::new();
    for s in &pipeline.sources {
        let more = match &s.kind {
            SourceKind::File { records, .. } | SourceKind::Stdin { records } => vec![*records],
            SourceKind::Generator { .. } => vec![RecordKind::Logs, RecordKind::Metrics],
            SourceKind::Kafka(k) => k.topics.iter().map(|(_, kind)| *kind).collect(),
            SourceKind::Otlp(_) => vec![RecordKind::Logs, RecordKind::Spans, RecordKind::Metrics],
        };
        for k in more {
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
    }
    let mut detection = Detection::new(pipeline)?;
    if let Some(d) = &mut detection {
        // Rule state survives restarts per pipeline and consumer group. Sources read from
        // their beginning on every run have no rule state to resume.
        let checkpoint = match (resumable, pipeline.first_kafka()) {
            // One merging replica at a time: one checkpoint for them all, named
            // by the partials it has merged, whatever the consumer group.
            (_, Some(_)) if d.distributed() => pipeline
                .detect
                .partials_topic
                .as_ref()
                .map(|t| format!("{}-{t}", pipeline.name)),
            (true, Some(k)) => Some(checkpoint_name(
                &pipeline.name,
                &k.consumer.group_id,
                opts.replica.as_deref(),
            )),
            _ => None,
        };
        let schemas: Vec<_> = kinds
            .iter()
            .map(|&k| (k, TableSpec::records(k, &pipeline.log_schema).schema))
            .collect();
        d.attach_archive(&archive, checkpoint.as_deref(), &schemas)
            .await?;
    }
    let mut sink = Sink::new(
        archive,
        pipeline.log_schema.clone(),
        pipeline.archive.flush,
        detection,
        origins,
    );
    sink.set_privacy(pipeline.privacy.clone());
    sink.set_threads(opts.threads);
    for k in kinds {
        sink.open(Some(k)).await?;
    }
    if resumable {
        sink.open(None).await?;
    }
    Ok(sink)
}

/// The sources of a run, the feedback each hears from the sink, and how the run ends.
struct Route<'a> {
    sources: &'a mut [Box<dyn Source>],
    feedback: Vec<Option<Receiver<Feedback>>>,
    opts: &'a RunOptions,
    rt: &'a Runtime,
    /// Detection keeps its windows open at the end (see [`Sink::finish`]).
    resumable: bool,
}

/// The name of a pipeline's detection checkpoint: per pipeline, consumer group and replica.
/// Replicas sharing a group each evaluate the rules over their own partitions, so each keeps
/// its own state; a stable replica id ([`RunOptions::replica`], e.g. a StatefulSet pod's name)
/// lets a restarted replica find its own again.
fn checkpoint_name(pipeline: &str, group: &str, replica: Option<&str>) -> String {
    match replica.filter(|r| !r.is_empty()) {
        Some(replica) => format!("{pipeline}-{group}-{replica}"),
        None => format!("{pipeline}-{group}"),
    }
}

impl Route<'_> {
    /// Everything on the calling thread: the sources take turns, one step each.
    fn inline(self, mut sink: Sink) -> Result<(SinkStats, u64), PipelineError> {
        let Route {
            sources,
            mut feedback,
            opts,
            rt,
            resumable,
        } = self;
        let mut live = vec![true; sources.len()];
        let result = (|| {
            while live.iter().any(|&l| l) {
                for (i, source) in sources.iter_mut().enumerate() {
                    if !live[i] {
                        continue;
                    }
                    if let Some(rx) = &feedback[i] {
                        for fb in rx.try_iter() {
                            source.feedback(fb)?;
                        }
                    }
                    let step = source.next()?;
                    live[i] = !step.is_last();
                    count(&opts.counters, source.name(), &step);
                    rt.block_on(sink.handle(i as u32, step))?;
                }
            }
            Ok(())
        })();
        let result = result.and_then(|()| rt.block_on(sink.finish(!resumable)));
        let stats = (sink.stats(), sink.detection().map_or(0, Detection::events));
        drop(sink);
        for (source, rx) in sources.iter_mut().zip(feedback.iter_mut()) {
            if let Some(rx) = rx.take() {
                for fb in rx.try_iter() {
                    let _ = source.feedback(fb);
                }
            }
            source.close();
        }
        result.map(|()| stats)
    }

    /// Each source on a thread of its own, the sink on the calling thread.
    fn threaded(self, mut sink: Sink) -> Result<(SinkStats, u64), PipelineError> {
        let Route {
            sources,
            mut feedback,
            opts,
            rt,
            resumable,
        } = self;
        // A few batches in flight: enough to keep decode and encode overlapped, few enough that
        // memory stays bounded when the archive is slower than the sources.
        let (tx, rx) = mpsc::sync_channel::<(u32, Step)>(4);
        let first_error: Mutex<Option<PipelineError>> = Mutex::new(None);
        let fail = |e: PipelineError| {
            opts.stop.store(true, Ordering::Relaxed);
            first_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(e);
        };
        let stats = std::thread::scope(|scope| {
            for (i, (source, fb)) in sources.iter_mut().zip(feedback.iter_mut()).enumerate() {
                let tx = tx.clone();
                let fb = fb.take();
                let fail = &fail;
                std::thread::Builder::new()
                    .name(format!("vigil-source-{i}"))
                    .spawn_scoped(scope, move || {
                        if let Err(e) = feed(i as u32, source.as_mut(), fb.as_ref(), &tx, opts) {
                            fail(e);
                        }
                        // Everything it sent is committed once the sink hangs up; until then it
                        // still hears what was committed (a Kafka source tells its group).
                        drop(tx);
                        if let Some(fb) = fb {
                            for f in fb.iter() {
                                if let Err(e) = source.feedback(f) {
                                    tracing::warn!(error = %e, "feedback after the end");
                                }
                            }
                        }
                        source.close();
                    })
                    .expect("a thread can be started");
            }
            drop(tx);
            let result = (|| {
                loop {
                    let wait = sink.next_deadline().unwrap_or(Duration::from_secs(1));
                    match rx.recv_timeout(wait) {
                        Ok((origin, step)) => rt.block_on(sink.handle(origin, step))?,
                        Err(mpsc::RecvTimeoutError::Timeout) => rt.block_on(sink.tick())?,
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
                rt.block_on(sink.finish(!resumable))
            })();
            if let Err(e) = result {
                fail(e);
            }
            // Stops the sources (their sends fail) and hangs up their feedback.
            drop(rx);
            let stats = (sink.stats(), sink.detection().map_or(0, Detection::events));
            drop(sink);
            stats
        });
        match first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    }
}

/// Runs one source to its end, sending its steps to the sink.
fn feed(
    origin: u32,
    source: &mut dyn Source,
    feedback: Option<&Receiver<Feedback>>,
    to: &mpsc::SyncSender<(u32, Step)>,
    opts: &RunOptions,
) -> Result<(), PipelineError> {
    loop {
        if let Some(rx) = feedback {
            for fb in rx.try_iter() {
                source.feedback(fb)?;
            }
        }
        let step = source.next()?;
        let end = step.is_last();
        count(&opts.counters, source.name(), &step);
        if to.send((origin, step)).is_err() {
            // The sink stopped; its error is the one reported.
            return Ok(());
        }
        if end {
            return Ok(());
        }
    }
}

fn count(counters: &Counters, source: &str, step: &Step) {
    if let Step::Batch(b) = step {
        counters.count(source, b.kind, &b.batch);
    }
}

#[cfg(test)]
mod tests {
    use super::checkpoint_name;

    #[test]
    fn each_replica_keeps_its_own_checkpoint() {
        assert_eq!(checkpoint_name("deals", "vigil", None), "deals-vigil");
        assert_eq!(checkpoint_name("deals", "vigil", Some("")), "deals-vigil");
        assert_ne!(
            checkpoint_name("deals", "vigil", Some("vigil-0")),
            checkpoint_name("deals", "vigil", Some("vigil-1"))
        );
    }
}
