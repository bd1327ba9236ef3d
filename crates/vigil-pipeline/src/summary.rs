//! How a run is set up and what it reports: options, live counters, the summary.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arrow::array::AsArray;
use vigil_core::metrics::{Counter, metrics};
use vigil_core::schema::RecordKind;
use vigil_decode::{DecodeStats, DecodedBatch, Decoder};
use vigil_store::Committed;

/// Live totals, readable while the pipeline runs (the progress line); each count also goes to
/// the process's metrics, per source.
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
    /// Counts a decoded batch of `source`'s records (for `kind`'s table) and dead letters.
    pub fn count(&self, source: &str, kind: RecordKind, batch: &DecodedBatch) {
        let m = metrics();
        let records = batch.num_records() as u64;
        self.records.fetch_add(records, Ordering::Relaxed);
        if records > 0 {
            m.records.inc_by(&[source, kind.table()], records);
        }
        let dead = &batch.dead_letters;
        if dead.num_rows() == 0 {
            return;
        }
        self.dead_letters
            .fetch_add(dead.num_rows() as u64, Ordering::Relaxed);
        if let Some(codes) = dead
            .column_by_name(vigil_core::schema::dead::REASON_CODE)
            .and_then(|c| c.as_string_opt::<i32>())
        {
            // Dead letters of one batch mostly share a reason or two.
            let mut by_reason: Vec<(&str, u64)> = Vec::new();
            for code in codes.iter().flatten() {
                match by_reason.iter_mut().find(|(c, _)| *c == code) {
                    Some((_, n)) => *n += 1,
                    None => by_reason.push((code, 1)),
                }
            }
            for (code, n) in by_reason {
                m.dead_letters.inc_by(&[source, code], n);
            }
        }
    }

    /// Counts input bytes a source read; `source` is its series of `vigil_input_bytes_total`
    /// ([`Counters::bytes_of`]).
    pub fn add_bytes(&self, source: &Counter, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        source.inc_by(n as u64);
    }

    /// The series `source`'s input bytes are counted in.
    pub fn bytes_of(source: &str) -> Counter {
        metrics().input_bytes.counter(&[source])
    }
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// 1: everything on the calling thread. More: every source gets a thread of its own and
    /// the sink keeps the calling thread.
    pub threads: usize,
    /// Live totals.
    pub counters: Arc<Counters>,
    /// Set to stop reading; what was read is still committed.
    pub stop: Arc<AtomicBool>,
    /// Set while the pipeline reads: its archive tables are open and its sources built (for
    /// `/readyz`).
    pub running: Arc<AtomicBool>,
    /// Per-partition consumer lag and throughput of the Kafka sources, for the metrics
    /// endpoint; refreshed every few seconds while they run.
    pub kafka_stats: vigil_kafka::StatsBook,
    /// Kafka sources stop once every assigned partition is read up to the high watermark it
    /// had when assigned (a backfill), instead of running until `stop`.
    pub until_end: bool,
    /// This replica's stable id, when several share a consumer group (e.g. a StatefulSet
    /// pod's name): each keeps its own detection checkpoint.
    pub replica: Option<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            counters: Arc::default(),
            stop: Arc::default(),
            running: Arc::default(),
            until_end: false,
            replica: None,
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
    /// Adds a decoder's totals.
    pub fn add_decoder(&mut self, d: &Decoder) {
        self.add_decoded(d.stats(), d.dead_letter_counts());
    }

    /// Adds a decoder's totals and dead letters by reason.
    pub fn add_decoded(
        &mut self,
        s: DecodeStats,
        reasons: impl IntoIterator<Item = (vigil_decode::ReasonCode, u64)>,
    ) {
        self.records += s.records;
        self.dead_letters += s.dead_letters;
        self.bytes += s.bytes;
        self.blank_lines += s.blank_lines;
        for (code, n) in reasons {
            if n > 0 {
                *self.reasons.entry(code.as_str()).or_default() += n;
            }
        }
    }

    /// Adds another source's totals (decoded records, dead letters, bytes).
    pub(crate) fn merge(&mut self, o: Summary) {
        self.records += o.records;
        self.dead_letters += o.dead_letters;
        self.bytes += o.bytes;
        self.blank_lines += o.blank_lines;
        for (k, v) in o.reasons {
            *self.reasons.entry(k).or_default() += v;
        }
    }
}

/// Totals of what a sink committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Delta commits made.
    pub commits: u64,
    /// Rows committed, all tables.
    pub rows: u64,
    /// Parquet files written.
    pub files: u64,
    /// Commits fenced off by another writer.
    pub fenced: u64,
    /// Batches dropped because they were read before their source was repositioned.
    pub stale_batches: u64,
}

impl SinkStats {
    pub(crate) fn add(&mut self, committed: Option<Committed>) {
        if let Some(c) = committed {
            self.commits += 1;
            self.rows += c.rows as u64;
            self.files += c.files as u64;
        }
    }
}
