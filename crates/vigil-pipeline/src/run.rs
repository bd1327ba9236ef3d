//! Running a pipeline: sources → decoders → sink, sequentially on one thread or with the
//! sink on its own thread behind a bounded channel (backpressure: a full channel blocks the
//! sources).

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use vigil_config::{Pipeline, Source, SourceKind};
use vigil_core::schema::{LogSchema, RecordKind};
use vigil_decode::{DecodeStats, DecodedBatch, Decoder, DecoderOptions};
use vigil_gen::Generator;
use vigil_store::{Archive, FlushPolicy};

use crate::detect::Detection;
use crate::error::PipelineError;
use crate::input::{Input, check_readable};
use crate::sink::{Sink, SinkStats};

/// Live totals, readable while the pipeline runs (progress bars, metrics).
#[derive(Debug, Default)]
pub struct Counters {
    /// Input bytes read (after decompression).
    pub bytes: AtomicU64,
    /// Records decoded into rows.
    pub records: AtomicU64,
    /// Records turned into dead letters.
    pub dead_letters: AtomicU64,
}

impl Counters {
    /// Counts a decoded batch's records and dead letters.
    pub fn count(&self, batch: &DecodedBatch) {
        self.records
            .fetch_add(batch.num_records() as u64, Ordering::Relaxed);
        self.dead_letters
            .fetch_add(batch.dead_letters.num_rows() as u64, Ordering::Relaxed);
    }
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// 1: everything on the calling thread. More: the sink gets its own thread and every
    /// source its own.
    pub threads: usize,
    /// Live totals.
    pub counters: Arc<Counters>,
    /// Set to stop reading; buffered data is still committed.
    pub stop: Arc<AtomicBool>,
    /// Per-partition consumer lag and throughput of the Kafka sources, for the metrics
    /// endpoint; refreshed every few seconds while they run.
    pub kafka_stats: vigil_kafka::StatsBook,
    /// Kafka sources stop once every assigned partition is read up to the high watermark it
    /// had when assigned (a backfill), instead of running until `stop`.
    pub until_end: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            counters: Arc::default(),
            stop: Arc::default(),
            until_end: false,
            kafka_stats: vigil_kafka::StatsBook::default(),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Records decoded into rows.
    pub records: u64,
    /// Dead letters.
    pub dead_letters: u64,
    /// Dead letters per reason code.
    pub reasons: BTreeMap<&'static str, u64>,
    /// Input bytes (after decompression).
    pub bytes: u64,
    /// Blank lines skipped.
    pub blank_lines: u64,
    /// What was committed.
    pub sink: SinkStats,
    /// Anomaly events the pipeline's rules produced.
    pub anomalies: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl Summary {
    pub(crate) fn add_decoder(&mut self, d: &Decoder) {
        let s: DecodeStats = d.stats();
        self.records += s.records;
        self.dead_letters += s.dead_letters;
        self.bytes += s.bytes;
        self.blank_lines += s.blank_lines;
        for (code, n) in d.dead_letter_counts() {
            if n > 0 {
                *self.reasons.entry(code.as_str()).or_default() += n;
            }
        }
    }

    pub(crate) fn merge(&mut self, o: Summary) {
        self.records += o.records;
        self.dead_letters += o.dead_letters;
        self.bytes += o.bytes;
        self.blank_lines += o.blank_lines;
        for (k, v) in o.reasons {
            *self.reasons.entry(k).or_default() += v;
        }
        self.sink.commits += o.sink.commits;
        self.sink.rows += o.sink.rows;
        self.sink.files += o.sink.files;
        self.anomalies += o.anomalies;
    }
}

/// The decoder limits of a pipeline.
pub fn decoder_options(p: &Pipeline) -> DecoderOptions {
    DecoderOptions {
        batch_size: p.decode.batch_size,
        max_record_bytes: p.decode.max_record_bytes,
        max_depth: p.decode.max_depth,
        dead_letter_raw_limit: p.decode.dead_letter_raw_limit,
    }
}

pub(crate) fn flush_policy(p: &Pipeline) -> FlushPolicy {
    FlushPolicy {
        max_rows: p.archive.flush.max_rows,
        max_bytes: p.archive.flush.max_bytes,
        interval: p.archive.flush.interval,
    }
}

/// The record kinds a source produces into the shared sink (Kafka sources have their own
/// writers: their commits carry their offsets).
fn kinds(s: &Source) -> Vec<RecordKind> {
    match &s.kind {
        SourceKind::File { records, .. } | SourceKind::Stdin { records } => vec![*records],
        SourceKind::Generator { .. } => vec![RecordKind::Logs, RecordKind::Metrics],
        SourceKind::Kafka(_) => vec![],
    }
}

type Emit<'a> = dyn FnMut(RecordKind, DecodedBatch) -> Result<(), PipelineError> + 'a;

/// Runs every source of `pipeline` to its end (or until `opts.stop`), archiving what they
/// produce, and commits everything before returning. Kafka sources have no end: they run until
/// `opts.stop`, each on a thread of its own.
pub fn run(pipeline: &Pipeline, opts: &RunOptions, rt: &Runtime) -> Result<Summary, PipelineError> {
    let started = Instant::now();
    let (streams, finite): (Vec<&Source>, Vec<&Source>) = pipeline
        .sources
        .iter()
        .partition(|s| matches!(s.kind, SourceKind::Kafka(_)));
    let mut summary = if streams.is_empty() {
        run_finite(pipeline, &finite, opts, rt)?
    } else {
        // The consumer loop drives the archive from librdkafka's rebalance callback through a
        // runtime handle, which needs a runtime with its own worker.
        let kafka_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("vigil-kafka-io")
            .enable_all()
            .build()
            .map_err(|e| PipelineError::Panicked(format!("cannot start a runtime: {e}")))?;
        std::thread::scope(|scope| {
            let consumers: Vec<_> = streams
                .iter()
                .map(|s| {
                    let handle = kafka_rt.handle().clone();
                    scope.spawn(move || {
                        let SourceKind::Kafka(k) = &s.kind else {
                            unreachable!("partitioned on the kind")
                        };
                        let r = crate::kafka::consume(pipeline, s, k, opts, &handle);
                        if r.is_err() {
                            opts.stop.store(true, Ordering::Relaxed);
                        }
                        r
                    })
                })
                .collect();
            let mut total = if finite.is_empty() {
                Ok(Summary::default())
            } else {
                run_finite(pipeline, &finite, opts, rt)
            };
            for c in consumers {
                let r = c
                    .join()
                    .unwrap_or_else(|p| Err(PipelineError::Panicked(panic_message(&p))));
                total = match (total, r) {
                    (Ok(mut t), Ok(s)) => {
                        t.merge(s);
                        Ok(t)
                    }
                    (Err(e), _) | (_, Err(e)) => Err(e),
                };
            }
            total
        })?
    };
    summary.elapsed = started.elapsed();
    Ok(summary)
}

fn run_finite(
    pipeline: &Pipeline,
    sources: &[&Source],
    opts: &RunOptions,
    rt: &Runtime,
) -> Result<Summary, PipelineError> {
    let archive = Archive::new(&pipeline.archive.url, &pipeline.archive.storage_options)?;
    for s in sources {
        if let SourceKind::File { paths, .. } = &s.kind {
            let inputs: Vec<Input> = paths.iter().cloned().map(Input::File).collect();
            check_readable(&inputs)?;
        }
    }
    let mut detection = Detection::new(pipeline, None)?;
    if let Some(d) = detection.as_mut() {
        // Events go to the `anomalies` table too. Finite sources start from their beginning
        // each run, so there is no rule state to resume.
        rt.block_on(d.attach_archive(&archive, None, &[]))?;
    }
    let mut sink = Sink::new(archive, pipeline.log_schema.clone(), flush_policy(pipeline));
    for kind in sources.iter().flat_map(|s| kinds(s)) {
        rt.block_on(sink.open(kind))?;
    }
    let mut summary = if opts.threads <= 1 {
        let mut total = Summary::default();
        let mut emit = |kind: RecordKind, batch: DecodedBatch| {
            if let Some(d) = detection.as_mut() {
                for r in &batch.records {
                    d.push(kind, kind.table(), r);
                }
                rt.block_on(d.advance_async())?;
            }
            rt.block_on(sink.accept(kind, batch))
                .map_err(PipelineError::from)
        };
        for s in sources {
            total.merge(read_source(pipeline, s, opts, &mut emit)?);
        }
        if let Some(d) = detection.as_mut() {
            rt.block_on(d.finish_async())?;
        }
        rt.block_on(sink.commit(true))?;
        total.sink = sink.stats();
        total
    } else {
        run_threaded(pipeline, sources, opts, rt, sink, &mut detection)?
    };
    summary.anomalies = detection.as_ref().map_or(0, Detection::events);
    Ok(summary)
}

enum Msg {
    Batch(RecordKind, DecodedBatch),
}

fn run_threaded(
    pipeline: &Pipeline,
    sources: &[&Source],
    opts: &RunOptions,
    rt: &Runtime,
    mut sink: Sink,
    detection: &mut Option<Detection>,
) -> Result<Summary, PipelineError> {
    // A few batches in flight: enough to keep decode and encode overlapped, few enough that
    // memory stays bounded when the archive is slower than the sources.
    let (tx, rx) = mpsc::sync_channel::<Msg>(4);
    let handle = rt.handle().clone();
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<SinkStats, PipelineError> {
            loop {
                let wait = sink.next_deadline().unwrap_or(Duration::from_secs(1));
                match rx.recv_timeout(wait) {
                    Ok(Msg::Batch(kind, batch)) => {
                        if let Some(d) = detection.as_mut() {
                            for r in &batch.records {
                                d.push(kind, kind.table(), r);
                            }
                            handle.block_on(d.advance_async())?;
                        }
                        handle.block_on(sink.accept(kind, batch))?
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => handle.block_on(sink.commit(false))?,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            if let Some(d) = detection.as_mut() {
                handle.block_on(d.finish_async())?;
            }
            handle.block_on(sink.commit(true))?;
            Ok(sink.stats())
        });
        let readers: Vec<_> = sources
            .iter()
            .map(|&s| {
                let tx = tx.clone();
                scope.spawn(move || {
                    let mut emit = |kind, batch| {
                        // A closed channel means the writer failed; its error is the one reported.
                        tx.send(Msg::Batch(kind, batch)).map_err(|_| {
                            PipelineError::Panicked("the archive writer stopped".into())
                        })
                    };
                    read_source(pipeline, s, opts, &mut emit)
                })
            })
            .collect();
        drop(tx);
        let mut total = Summary::default();
        let mut first_err = None;
        for r in readers {
            match r.join() {
                Ok(Ok(s)) => total.merge(s),
                Ok(Err(e)) => {
                    opts.stop.store(true, Ordering::Relaxed);
                    first_err.get_or_insert(e);
                }
                Err(p) => {
                    first_err.get_or_insert(PipelineError::Panicked(panic_message(&p)));
                }
            }
        }
        let writer = writer
            .join()
            .unwrap_or_else(|p| Err(PipelineError::Panicked(panic_message(&p))));
        match (writer, first_err) {
            // The writer's own failure explains a reader's "writer stopped".
            (Err(e), _) => Err(e),
            (Ok(_), Some(e)) => Err(e),
            (Ok(stats), None) => {
                total.sink = stats;
                Ok(total)
            }
        }
    })
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Reads one source to its end, emitting decoded batches.
fn read_source(
    pipeline: &Pipeline,
    source: &Source,
    opts: &RunOptions,
    emit: &mut Emit<'_>,
) -> Result<Summary, PipelineError> {
    let mut summary = Summary::default();
    match &source.kind {
        SourceKind::File { records, paths } => {
            let mut dec = Decoder::new(
                *records,
                pipeline.log_schema.clone(),
                decoder_options(pipeline),
            );
            for p in paths {
                read_input(&mut dec, &Input::File(p.clone()), opts, emit)?;
            }
            summary.add_decoder(&dec);
        }
        SourceKind::Stdin { records } => {
            let mut dec = Decoder::new(
                *records,
                pipeline.log_schema.clone(),
                decoder_options(pipeline),
            );
            read_input(&mut dec, &Input::Stdin, opts, emit)?;
            summary.add_decoder(&dec);
        }
        SourceKind::Generator { config, realtime } => {
            let (logs, metrics) = generate(
                config.clone(),
                *realtime,
                &pipeline.log_schema,
                decoder_options(pipeline),
                &source.name,
                opts,
                emit,
            )?;
            summary.add_decoder(&logs);
            summary.add_decoder(&metrics);
        }
        SourceKind::Kafka(_) => unreachable!("Kafka sources run in `kafka::consume`"),
    }
    Ok(summary)
}

/// Decodes one NDJSON input.
pub(crate) fn read_input(
    dec: &mut Decoder,
    input: &Input,
    opts: &RunOptions,
    emit: &mut Emit<'_>,
) -> Result<(), PipelineError> {
    let mut reader = input.open()?;
    dec.begin_source(&input.name());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        if opts.stop.load(Ordering::Relaxed) {
            break;
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(PipelineError::Input {
                    path: input.name().into(),
                    source,
                });
            }
        };
        opts.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
        feed(dec, &buf[..n], opts, emit)?;
    }
    dec.end_of_input();
    flush(dec, opts, emit)
}

/// Pushes `bytes` through the decoder, emitting a batch whenever one is full.
fn feed(
    dec: &mut Decoder,
    mut bytes: &[u8],
    opts: &RunOptions,
    emit: &mut Emit<'_>,
) -> Result<(), PipelineError> {
    while !bytes.is_empty() {
        let used = dec.decode(bytes);
        bytes = &bytes[used..];
        if !bytes.is_empty() || used == 0 {
            flush(dec, opts, emit)?;
        }
    }
    Ok(())
}

fn flush(dec: &mut Decoder, opts: &RunOptions, emit: &mut Emit<'_>) -> Result<(), PipelineError> {
    if let Some(batch) = dec.flush() {
        opts.counters.count(&batch);
        emit(dec.kind(), batch)?;
    }
    Ok(())
}

fn generate(
    config: vigil_gen::Config,
    realtime: bool,
    schema: &LogSchema,
    options: DecoderOptions,
    name: &str,
    opts: &RunOptions,
    emit: &mut Emit<'_>,
) -> Result<(Decoder, Decoder), PipelineError> {
    let mut logs = Decoder::logs(schema.clone(), options.clone());
    let mut metrics = Decoder::metrics(options);
    logs.begin_source(&format!("{name}:logs"));
    metrics.begin_source(&format!("{name}:metrics"));
    let start = config.start_micros;
    let mut generator = Generator::new(config);
    let t0 = Instant::now();
    let (mut lbuf, mut mbuf) = (Vec::new(), Vec::new());
    while !opts.stop.load(Ordering::Relaxed) && generator.next_tick(&mut lbuf, &mut mbuf) {
        opts.counters
            .bytes
            .fetch_add((lbuf.len() + mbuf.len()) as u64, Ordering::Relaxed);
        feed(&mut logs, &lbuf, opts, emit)?;
        feed(&mut metrics, &mbuf, opts, emit)?;
        lbuf.clear();
        mbuf.clear();
        if realtime {
            // Emit each second of event time when the wall clock reaches it; flush so the
            // sink sees records promptly.
            flush(&mut logs, opts, emit)?;
            flush(&mut metrics, opts, emit)?;
            let due = Duration::from_micros((generator.watermark() - start).max(0) as u64);
            if let Some(wait) = due.checked_sub(t0.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    logs.end_of_input();
    metrics.end_of_input();
    flush(&mut logs, opts, emit)?;
    flush(&mut metrics, opts, emit)?;
    Ok((logs, metrics))
}
