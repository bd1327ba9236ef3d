//! A Kafka source archived exactly once.
//!
//! ```text
//! poll ─► runs of messages per partition ─► decode ─► table writers ─► commit: dead_letters, then logs / metrics
//!   ▲                                                                     │ each commit carries, per partition,
//!   └── on assignment: resume each partition from the archive ◄───────────┘ a Delta `txn` (app id, next offset)
//! ```
//!
//! The archive is the source of truth for offsets. Every commit to a record table records, for
//! each partition whose messages it holds, `txn(app_id = "vigil:<topic>:<partition>",
//! version = next offset)` in the same Delta commit as the files, so either both are visible or
//! neither. A partition resumes from that version when it is assigned; offsets are then also
//! committed to the consumer group, for lag tooling only.
//!
//! Dead letters live in a table of their own, so a batch is two commits: dead letters first,
//! each partition's `txn` there being the offset after its last dead letter, then the records
//! table. A crash between the two re-reads the batch; dead letters below the recorded offset are
//! dropped instead of written twice.
//!
//! Rebalances are eager: all partitions are revoked, everything buffered is dropped (its
//! offsets were never committed, so the next owner reads it again), and each newly assigned
//! partition starts where the archive ends. A replica that kept writing after losing a
//! partition (a zombie) is fenced by Delta itself: two commits carrying the same app id
//! conflict, the later one fails, and its writer drops its buffer and re-reads its offsets.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type};
use tokio::runtime::Handle;
use vigil_config::{Kafka, Pipeline, Source};
use vigil_core::schema::{RecordKind, dead};
use vigil_decode::Decoder;
use vigil_kafka::{Assigned, Consumer, ConsumerSettings, MessageExt, TopicPartition};
use vigil_store::{AppTxn, Archive, StoreError, TableSpec, TableWriter, app_version};

use crate::detect::Detection;
use crate::error::PipelineError;
use crate::run::{RunOptions, Summary, decoder_options, flush_policy};
use crate::sink::SinkStats;

/// The Delta application id under which a partition's offset is recorded.
pub fn app_id(topic: &str, partition: i32) -> String {
    format!("vigil:{topic}:{partition}")
}

/// Attempts at a commit that fails for a reason other than fencing (e.g. the object store is
/// unreachable), with exponential backoff from 250 ms, before the pipeline stops with the error.
const COMMIT_ATTEMPTS: u32 = 8;

/// Partitions with an offset each, `None` where the archive has none.
type Positions = Vec<(TopicPartition, Option<i64>)>;

/// Offsets, per partition.
#[derive(Default)]
struct Book {
    /// Next offset recorded in the partition's records table.
    archived: HashMap<TopicPartition, i64>,
    /// Offset after the last dead letter recorded in `dead_letters`.
    dead_archived: HashMap<TopicPartition, i64>,
    /// Next offset after the last message buffered (not yet committed).
    buffered: HashMap<TopicPartition, i64>,
    /// Offset after the last dead letter buffered.
    dead_buffered: HashMap<TopicPartition, i64>,
}

/// A run of consecutive messages from one partition, copied out of librdkafka's buffers.
#[derive(Default)]
struct Run {
    tp: Option<TopicPartition>,
    kind: Option<RecordKind>,
    bytes: Vec<u8>,
    spans: Vec<(usize, usize, i64)>,
}

struct Tables {
    logs: Option<TableWriter>,
    metrics: Option<TableWriter>,
    dead: TableWriter,
}

impl Tables {
    fn records(&mut self, kind: RecordKind) -> &mut TableWriter {
        match kind {
            RecordKind::Logs => self.logs.as_mut(),
            RecordKind::Metrics => self.metrics.as_mut(),
        }
        .expect("a writer is opened for every kind a topic maps to")
    }

    fn all(&mut self) -> impl Iterator<Item = &mut TableWriter> {
        [
            self.logs.as_mut(),
            self.metrics.as_mut(),
            Some(&mut self.dead),
        ]
        .into_iter()
        .flatten()
    }
}

/// Consumes `kafka` until `opts.stop`, archiving every message exactly once. Runs on the
/// calling thread; `rt` must be a multi-threaded runtime (its handle drives the archive's I/O
/// from inside librdkafka's rebalance callback).
pub(crate) fn consume(
    pipeline: &Pipeline,
    source: &Source,
    kafka: &Kafka,
    opts: &RunOptions,
    rt: &Handle,
) -> Result<Summary, PipelineError> {
    let archive = Archive::new(&pipeline.archive.url, &pipeline.archive.storage_options)?;
    let routes: HashMap<String, RecordKind> = kafka.topics.iter().cloned().collect();
    let policy = flush_policy(pipeline);
    let open = |spec: TableSpec| rt.block_on(TableWriter::open(&archive, spec, policy));
    let has = |k: RecordKind| routes.values().any(|&v| v == k);
    let mut tables = Tables {
        logs: has(RecordKind::Logs)
            .then(|| open(TableSpec::logs(&pipeline.log_schema)))
            .transpose()?,
        metrics: has(RecordKind::Metrics)
            .then(|| open(TableSpec::metrics()))
            .transpose()?,
        dead: open(TableSpec::dead_letters())?,
    };
    let mut decoders: HashMap<RecordKind, Decoder> = routes
        .values()
        .map(|&k| {
            let d = Decoder::new(k, pipeline.log_schema.clone(), decoder_options(pipeline));
            (k, d)
        })
        .collect();

    // Where each assigned partition resumes, read from the archive during the rebalance. The
    // dead-letter offsets ride along to the loop through `resumed`.
    let resumed: Arc<std::sync::Mutex<Positions>> = Arc::default();
    let resume = {
        let archive = archive.clone();
        let routes = routes.clone();
        let schema = pipeline.log_schema.clone();
        let rt = rt.clone();
        let resumed = Arc::clone(&resumed);
        Box::new(move |tps: &[TopicPartition]| {
            let (main, deadv) = rt
                .block_on(archived_offsets(&archive, &schema, &routes, tps))
                .map_err(|e| e.to_string())?;
            resumed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(tps.iter().cloned().zip(deadv));
            Ok(main)
        })
    };
    let settings = ConsumerSettings {
        brokers: kafka.brokers.clone(),
        group_id: kafka.group_id.clone(),
        topics: kafka.topics.iter().map(|(t, _)| t.clone()).collect(),
        start_earliest: kafka.start_earliest,
        max_fetch_buffer: kafka.max_fetch_buffer,
        stats_interval: Duration::from_secs(5),
        properties: kafka.properties.clone(),
    };
    let consumer =
        Consumer::new(&settings, resume, opts.kafka_stats.clone()).map_err(PipelineError::kafka)?;
    let mut dlq = match &kafka.dead_letter_topic {
        Some(topic) => Some(DeadLetterTopic {
            producer: vigil_kafka::Producer::new(
                &kafka.brokers,
                &vigil_kafka::connection_properties(&kafka.properties),
            )
            .map_err(PipelineError::kafka)?,
            topic: topic.clone(),
        }),
        None => None,
    };
    tracing::info!(source = %source.name, brokers = %kafka.brokers, group = %kafka.group_id, topics = ?settings.topics, "consuming");

    let mut detection = Detection::new(pipeline, Some((&kafka.brokers, &kafka.properties)))?;
    if let Some(d) = detection.as_mut() {
        // Rule state survives restarts per pipeline and consumer group.
        let checkpoint = format!("{}-{}", pipeline.name, kafka.group_id);
        let mut kinds: Vec<RecordKind> = routes.values().copied().collect();
        kinds.sort_by_key(|k| k.table());
        kinds.dedup();
        let schemas: Vec<_> = kinds
            .into_iter()
            .map(|k| match k {
                RecordKind::Logs => (k, TableSpec::logs(&pipeline.log_schema).schema),
                RecordKind::Metrics => (k, TableSpec::metrics().schema),
            })
            .collect();
        rt.block_on(d.attach_archive(&archive, Some(&checkpoint), &schemas))?;
    }
    let mut book = Book::default();
    let mut run = Run::default();
    let mut sink_stats = SinkStats::default();
    let mut batch_started: Option<Instant> = None;
    let mut first_buffered: Option<Instant> = None;
    let mut last_error_log = Instant::now() - Duration::from_secs(60);
    let mut first_message: Option<Instant> = None;
    let mut messages = 0u64;
    // With `until_end`: each assigned partition's high watermark when it was assigned.
    let mut ends: HashMap<TopicPartition, i64> = HashMap::new();
    // Decodes the held run and hands it over (see `decode_and_hand_over`), then closes the
    // windows the watermark has passed, so an anomaly is published as soon as its window
    // closes rather than at the next batch timeout.
    macro_rules! flush_run {
        () => {
            decode_and_hand_over(
                &mut run,
                &mut decoders,
                &mut tables,
                &mut book,
                &mut dlq,
                &mut detection,
                opts,
            )
            .and_then(|()| detection.as_mut().map_or(Ok(()), |d| d.advance(rt)))
        };
    }
    // Commits everything buffered (see `commit`).
    macro_rules! commit_all {
        () => {
            commit(
                &consumer,
                &mut tables,
                &mut book,
                &mut dlq,
                &routes,
                rt,
                &mut sink_stats,
            )
        };
    }
    let result = 'consume: loop {
        if opts.stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        let polled = consumer.poll(Duration::from_millis(100));
        if let Some(e) = consumer.take_failure() {
            break Err(PipelineError::kafka(e));
        }
        let changes = consumer.take_assignments();
        if !changes.is_empty() {
            // Drop what was read before the change (held messages borrow nothing: they were
            // copied), then take the new starting points.
            drop_buffered(&mut run, &mut decoders, &mut tables, &mut book);
            batch_started = None;
            first_buffered = None;
            for change in changes {
                match change {
                    Assigned::Revoked => {
                        if let Some(d) = detection.as_mut() {
                            d.end_all_sources();
                        }
                        book.archived.clear();
                        book.dead_archived.clear();
                        ends.clear();
                    }
                    Assigned::Partitions(list) => {
                        // The writers' snapshots must include every commit the resume offsets
                        // were read from: each commit is checked against its snapshot's offsets
                        // (and Delta's conflict check against later commits), so an older
                        // snapshot would fence us off our own partitions.
                        for t in tables.all() {
                            if let Err(e) = rt.block_on(t.refresh()) {
                                break 'consume Err(e.into());
                            }
                        }
                        let dead =
                            std::mem::take(&mut *resumed.lock().unwrap_or_else(|e| e.into_inner()));
                        for (tp, o) in list {
                            if let Some(d) = detection.as_mut() {
                                d.expect_source(&format!("{}:{}", tp.topic, tp.partition));
                            }
                            if opts.until_end {
                                match consumer.high_watermark(&tp) {
                                    Ok(h) => ends.insert(tp.clone(), h),
                                    Err(e) => break 'consume Err(PipelineError::kafka(e)),
                                };
                            }
                            if let Some(o) = o {
                                book.archived.insert(tp, o);
                            }
                        }
                        for (tp, o) in dead {
                            if let Some(o) = o {
                                book.dead_archived.insert(tp, o);
                            }
                        }
                    }
                }
            }
        }
        let idle = match polled {
            None => true,
            Some(Err(e)) => {
                if last_error_log.elapsed() > Duration::from_secs(10) {
                    tracing::warn!(error = %e, "kafka consumer error (retrying)");
                    last_error_log = Instant::now();
                }
                true
            }
            Some(Ok(m)) => {
                first_message.get_or_insert_with(Instant::now);
                messages += 1;
                let tp = TopicPartition {
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                };
                let offset = m.offset();
                let behind = book.archived.get(&tp).is_some_and(|&next| offset < next);
                if let (false, Some(&kind)) = (behind, routes.get(&tp.topic)) {
                    opts.counters
                        .bytes
                        .fetch_add(m.payload().map_or(0, |p| p.len()) as u64, Ordering::Relaxed);
                    if run.tp.as_ref() != Some(&tp) || run.spans.len() >= kafka.max_batch_records {
                        if let Err(e) = flush_run!() {
                            break 'consume Err(e);
                        }
                        run.tp = Some(tp.clone());
                        run.kind = Some(kind);
                    }
                    let start = run.bytes.len();
                    run.bytes.extend_from_slice(m.payload().unwrap_or_default());
                    run.spans.push((start, run.bytes.len(), offset));
                    book.buffered.insert(tp, offset + 1);
                    batch_started.get_or_insert_with(Instant::now);
                    first_buffered.get_or_insert_with(Instant::now);
                }
                false
            }
        };
        if idle {
            if let Err(e) = flush_run!() {
                break 'consume Err(e);
            }
            let read_to = |tp: &TopicPartition| {
                book.buffered
                    .get(tp)
                    .or(book.archived.get(tp))
                    .copied()
                    .unwrap_or(0)
            };
            if opts.until_end
                && !ends.is_empty()
                && ends.iter().all(|(tp, &end)| read_to(tp) >= end)
            {
                tracing::info!("every assigned partition is read to its end");
                break Ok(());
            }
        }
        // A partial run is decoded once it has waited `max_batch_wait`.
        if batch_started.is_some_and(|t| t.elapsed() >= kafka.max_batch_wait) {
            if let Err(e) = flush_run!() {
                break 'consume Err(e);
            }
            batch_started = None;
        }
        // A table's flush policy, or offsets that moved with nothing to write (messages that
        // were all blank) once the interval passes: a restart should not re-read them.
        let offsets_due = first_buffered.is_some_and(|t| t.elapsed() >= policy.interval);
        if tables.all().any(|t| t.is_due()) || offsets_due {
            first_buffered = None;
            if let Err(e) = flush_run!() {
                break 'consume Err(e);
            }
            batch_started = None;
            if let Err(e) = commit_all!() {
                break Err(e);
            }
        }
    };
    let result = result.and_then(|()| {
        flush_run!()?;
        if let Some(d) = detection.as_mut() {
            d.stop()?;
        }
        commit_all!()
    });
    if let Some(t) = first_message {
        let secs = t.elapsed().as_secs_f64();
        tracing::info!(
            source = %source.name,
            messages,
            seconds = format!("{secs:.3}"),
            per_second = (messages as f64 / secs.max(1e-9)) as u64,
            "consumed and archived, timed from the first message"
        );
    }
    consumer.close();
    for ((topic, partition), s) in opts.kafka_stats.snapshot() {
        tracing::debug!(%topic, partition, lag = s.consumer_lag, messages = s.messages, bytes = s.bytes, "partition statistics");
    }
    result?;
    let mut summary = Summary {
        sink: sink_stats,
        anomalies: detection.as_ref().map_or(0, Detection::events),
        ..Summary::default()
    };
    for d in decoders.values() {
        summary.add_decoder(d);
    }
    Ok(summary)
}

/// The archive's offsets for `tps`: the records table's and the dead-letter table's.
async fn archived_offsets(
    archive: &Archive,
    schema: &vigil_core::schema::LogSchema,
    routes: &HashMap<String, RecordKind>,
    tps: &[TopicPartition],
) -> Result<(Vec<Option<i64>>, Vec<Option<i64>>), StoreError> {
    let mut tables = HashMap::new();
    for name in ["logs", "metrics", "dead_letters"] {
        tables.insert(name, archive.open(name).await?);
    }
    let mut main = Vec::with_capacity(tps.len());
    let mut dead = Vec::with_capacity(tps.len());
    for tp in tps {
        let id = app_id(&tp.topic, tp.partition);
        let name = match routes.get(&tp.topic) {
            Some(RecordKind::Metrics) => TableSpec::metrics().name,
            _ => TableSpec::logs(schema).name,
        };
        main.push(match &tables[name.as_str()] {
            Some(t) => app_version(t, &name, &id).await?,
            None => None,
        });
        dead.push(match &tables["dead_letters"] {
            Some(t) => app_version(t, "dead_letters", &id).await?,
            None => None,
        });
    }
    Ok((main, dead))
}

/// Decodes the held run of one partition's messages (up to `max_batch_records`, one simd-json
/// pass per group) and hands the result over at once: records to their table writer and to
/// detection (which keeps a watermark per partition), dead letters to the table or topic.
/// Dead letters the archive already has (from a batch whose records commit failed after its
/// dead letters committed) are dropped here.
fn decode_and_hand_over(
    run: &mut Run,
    decoders: &mut HashMap<RecordKind, Decoder>,
    tables: &mut Tables,
    book: &mut Book,
    dlq: &mut Option<DeadLetterTopic>,
    detection: &mut Option<Detection>,
    opts: &RunOptions,
) -> Result<(), PipelineError> {
    if run.spans.is_empty() {
        return Ok(());
    }
    let tp = run
        .tp
        .as_ref()
        .expect("a run with messages has a partition");
    let kind = run.kind.expect("a run with messages has a kind");
    let d = decoders.get_mut(&kind).expect("a decoder per routed kind");
    let bytes = &run.bytes;
    d.decode_messages(
        &tp.topic,
        Some(tp.partition),
        run.spans.iter().map(|&(s, e, o)| (&bytes[s..e], o)),
    );
    run.bytes.clear();
    run.spans.clear();
    let Some(batch) = d.flush() else {
        return Ok(());
    };
    opts.counters.count(&batch);
    let source = format!("{}:{}", tp.topic, tp.partition);
    let w = tables.records(kind);
    for records in batch.records {
        if let Some(d) = detection.as_mut() {
            d.push(kind, &source, &records);
        }
        w.push(records);
    }
    if batch.dead_letters.num_rows() > 0 {
        match dlq {
            Some(topic) => topic.send(&batch.dead_letters)?,
            None => {
                let dead = keep_new_dead_letters(batch.dead_letters, book);
                tables.dead.push(dead);
            }
        }
    }
    Ok(())
}

/// Dead letters sent to a Kafka topic instead of the `dead_letters` table: the original bytes
/// as the value, where they came from and why in headers (`vigil.source.topic`,
/// `vigil.source.partition`, `vigil.source.offset`, `vigil.kind`, `vigil.reason_code`,
/// `vigil.reason`), as Kafka Connect's error topics do. Delivered before the archive commit of
/// the records around them; a crash between the two sends them again (at least once).
struct DeadLetterTopic {
    producer: vigil_kafka::Producer,
    topic: String,
}

impl DeadLetterTopic {
    fn send(&mut self, batch: &RecordBatch) -> Result<(), PipelineError> {
        let schema = batch.schema();
        let col = |name: &str| batch.column(schema.index_of(name).expect("dead-letter schema"));
        let sources = col(dead::SOURCE).as_string::<i32>();
        let kinds = col(dead::KIND).as_string::<i32>();
        let partitions = col(dead::PARTITION).as_primitive::<Int32Type>();
        let offsets = col(dead::OFFSET).as_primitive::<Int64Type>();
        let codes = col(dead::REASON_CODE).as_string::<i32>();
        let reasons = col(dead::REASON).as_string::<i32>();
        let raws = col(dead::RAW).as_binary::<i32>();
        for i in 0..batch.num_rows() {
            let partition = partitions.value(i).to_string();
            let offset = offsets.value(i).to_string();
            let headers: [(&str, &[u8]); 6] = [
                ("vigil.source.topic", sources.value(i).as_bytes()),
                ("vigil.source.partition", partition.as_bytes()),
                ("vigil.source.offset", offset.as_bytes()),
                ("vigil.kind", kinds.value(i).as_bytes()),
                ("vigil.reason_code", codes.value(i).as_bytes()),
                ("vigil.reason", reasons.value(i).as_bytes()),
            ];
            self.producer
                .send_with_headers(&self.topic, None, raws.value(i), &headers)
                .map_err(PipelineError::kafka)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), PipelineError> {
        self.producer
            .flush(Duration::from_secs(60))
            .map_err(PipelineError::kafka)
    }
}

/// Drops dead letters at offsets the archive already has, and notes the offset after the last
/// one kept per partition.
fn keep_new_dead_letters(batch: RecordBatch, book: &mut Book) -> RecordBatch {
    let schema = batch.schema();
    let col = |name: &str| batch.column(schema.index_of(name).expect("dead-letter schema"));
    let sources = col(dead::SOURCE).as_string::<i32>().clone();
    let partitions = col(dead::PARTITION).as_primitive::<Int32Type>().clone();
    let offsets = col(dead::OFFSET).as_primitive::<Int64Type>().clone();
    let mut keep = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let tp = TopicPartition {
            topic: sources.value(i).to_string(),
            partition: if partitions.is_null(i) {
                -1
            } else {
                partitions.value(i)
            },
        };
        let offset = offsets.value(i);
        let new = book
            .dead_archived
            .get(&tp)
            .is_none_or(|&next| offset >= next);
        if new {
            let next = book.dead_buffered.entry(tp).or_insert(0);
            *next = (*next).max(offset + 1);
        }
        keep.push(new);
    }
    if keep.iter().all(|&k| k) {
        return batch;
    }
    arrow::compute::filter_record_batch(&batch, &BooleanArray::from(keep))
        .expect("a mask as long as the batch")
}

fn drop_buffered(
    run: &mut Run,
    decoders: &mut HashMap<RecordKind, Decoder>,
    tables: &mut Tables,
    book: &mut Book,
) {
    run.bytes.clear();
    run.spans.clear();
    for d in decoders.values_mut() {
        let _ = d.flush();
    }
    for t in tables.all() {
        t.discard();
    }
    book.buffered.clear();
    book.dead_buffered.clear();
}

/// Commits dead letters, then each records table with its partitions' offsets, then tells the
/// group. A fenced commit (another replica archived the same partition) drops everything
/// buffered and repositions every assigned partition at the archive's offsets.
fn commit(
    consumer: &Consumer,
    tables: &mut Tables,
    book: &mut Book,
    dlq: &mut Option<DeadLetterTopic>,
    routes: &HashMap<String, RecordKind>,
    rt: &Handle,
    stats: &mut SinkStats,
) -> Result<(), PipelineError> {
    if let Some(topic) = dlq {
        topic.flush()?;
    }
    let dead_txns: Vec<AppTxn> = book
        .dead_buffered
        .iter()
        .map(|(tp, &o)| txn(tp, book.dead_archived.get(tp), o))
        .collect();
    let outcome = (|| {
        commit_with_retry(&mut tables.dead, &dead_txns, rt, stats)?;
        book.dead_archived.extend(book.dead_buffered.drain());
        for kind in [RecordKind::Logs, RecordKind::Metrics] {
            let moved: BTreeMap<&TopicPartition, i64> = book
                .buffered
                .iter()
                .filter(|(tp, o)| {
                    routes.get(&tp.topic) == Some(&kind) && book.archived.get(tp) != Some(o)
                })
                .map(|(tp, &o)| (tp, o))
                .collect();
            let txns: Vec<AppTxn> = moved
                .iter()
                .map(|(tp, &o)| txn(tp, book.archived.get(*tp), o))
                .collect();
            let writer = match kind {
                RecordKind::Logs => tables.logs.as_mut(),
                RecordKind::Metrics => tables.metrics.as_mut(),
            };
            let Some(writer) = writer else { continue };
            commit_with_retry(writer, &txns, rt, stats)?;
            let moved: Vec<(TopicPartition, i64)> =
                moved.into_iter().map(|(tp, o)| (tp.clone(), o)).collect();
            tracing::debug!(table = kind.table(), offsets = ?moved, "archived");
            if let Err(e) = consumer.commit_to_group(&moved) {
                tracing::warn!(error = %e, "committing offsets to the group failed (the archive has them)");
            }
            book.archived.extend(moved);
        }
        book.buffered.clear();
        Ok::<(), StoreError>(())
    })();
    match outcome {
        Ok(()) => Ok(()),
        Err(e) if e.is_fenced() => {
            tracing::warn!(error = %e, "another consumer archived the same partitions: dropping this batch and resuming from the archive");
            for t in tables.all() {
                t.discard();
                rt.block_on(t.refresh())?;
            }
            book.buffered.clear();
            book.dead_buffered.clear();
            reposition(consumer, book, routes, tables, rt)
        }
        Err(e) => Err(e.into()),
    }
}

/// The partition's offset moving from what this consumer last saw archived to `to`.
fn txn(tp: &TopicPartition, from: Option<&i64>, to: i64) -> AppTxn {
    AppTxn {
        app_id: app_id(&tp.topic, tp.partition),
        from: from.copied(),
        to,
    }
}

fn commit_with_retry(
    writer: &mut TableWriter,
    txns: &[AppTxn],
    rt: &Handle,
    stats: &mut SinkStats,
) -> Result<(), StoreError> {
    if writer.pending_rows() == 0 && txns.is_empty() {
        return Ok(());
    }
    let mut attempt = 1;
    loop {
        match rt.block_on(writer.commit(txns)) {
            Ok(committed) => {
                if let Some(c) = committed {
                    stats.commits += 1;
                    stats.rows += c.rows as u64;
                    stats.files += c.files as u64;
                }
                return Ok(());
            }
            Err(e) if e.is_fenced() || attempt >= COMMIT_ATTEMPTS => return Err(e),
            Err(e) => {
                let wait = Duration::from_millis(250 << (attempt - 1).min(5));
                tracing::warn!(table = %writer.spec().name, error = %e, attempt, "commit failed; retrying in {wait:?}");
                std::thread::sleep(wait);
                attempt += 1;
            }
        }
    }
}

/// Re-reads the archive's offsets for the whole assignment and restarts each partition there.
fn reposition(
    consumer: &Consumer,
    book: &mut Book,
    routes: &HashMap<String, RecordKind>,
    tables: &mut Tables,
    rt: &Handle,
) -> Result<(), PipelineError> {
    let assignment = consumer.assignment().map_err(PipelineError::kafka)?;
    book.archived.clear();
    book.dead_archived.clear();
    let mut positions = Vec::with_capacity(assignment.len());
    for tp in assignment {
        let id = app_id(&tp.topic, tp.partition);
        let main = match routes.get(&tp.topic) {
            Some(&kind) => rt.block_on(tables.records(kind).app_version(&id))?,
            None => None,
        };
        if let Some(v) = rt.block_on(tables.dead.app_version(&id))? {
            book.dead_archived.insert(tp.clone(), v);
        }
        if let Some(v) = main {
            book.archived.insert(tp.clone(), v);
        }
        positions.push((tp, main));
    }
    consumer
        .reposition(&positions)
        .map_err(PipelineError::kafka)
}
