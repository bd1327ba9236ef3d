//! How a run is set up and what it reports: options, live counters, the summary.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use vigil_decode::{DecodeStats, DecodedBatch, Decoder};
use vigil_store::Committed;

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

    /// Counts input bytes read.
    pub fn add_bytes(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
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
