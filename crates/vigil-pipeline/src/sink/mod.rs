//! The one sink of a pipeline: every source's batches go to its detection and into the
//! archive, and each batch's position moves into the same Delta commit as its rows.
//!
//! ```text
//! Step::Batch ─┬─► Detection (rules, correlation; one per pipeline)
//!              └─► TableWriter per table ─► commit: dead_letters, then logs / metrics,
//!                                           each with its partitions' `txn` actions
//! ```
//!
//! Commits happen when a table's flush policy is due, when positions moved with nothing to
//! write (blank messages) for a flush interval, and at the end. A commit that fails for an
//! external reason is retried with backoff; one that is *fenced* (another writer recorded one
//! of its partitions: a replica that lost its partitions without noticing) drops everything
//! buffered from positioned sources and tells each where the archive ends
//! ([`Feedback::Reposition`]). Retry and fencing live here and nowhere else.

mod dead_letter_topic;
mod positions;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use vigil_core::Partition;
use vigil_core::schema::{LogSchema, RecordKind};
use vigil_decode::privacy::Privacy;
use vigil_store::{AppTxn, Archive, Committed, FlushPolicy, StoreError, TableSpec, TableWriter};

pub use dead_letter_topic::DeadLetterTopic;

use crate::detect::Detection;
use crate::error::PipelineError;
use crate::source::{Feedback, SourceBatch, Step};
use crate::summary::SinkStats;
use positions::Positions;

/// Attempts at a commit that fails for a reason other than fencing (e.g. the object store is
/// unreachable), with exponential backoff from 250 ms, before the pipeline stops with the error.
const COMMIT_ATTEMPTS: u32 = 8;

/// What the sink knows of one source.
#[derive(Default)]
struct Origin {
    /// Where feedback goes; sources without positions get none.
    feedback: Option<Sender<Feedback>>,
    /// Dead letters go to this topic instead of the table.
    dead_letter_topic: Option<DeadLetterTopic>,
    /// Partitions assigned, with the table each feeds.
    partitions: HashMap<Partition, RecordKind>,
    /// The streams its rows came from (detection's watermark inputs).
    streams: HashSet<Arc<str>>,
    /// Batches of earlier epochs were read before a reposition: stale.
    epoch: u64,
    /// It sends nothing more.
    ended: bool,
}

/// The archive's tables a pipeline writes records into.
#[derive(Default)]
struct Tables {
    logs: Option<TableWriter>,
    metrics: Option<TableWriter>,
    spans: Option<TableWriter>,
    dead_letters: Option<TableWriter>,
}

/// The records tables, in the order they commit.
const RECORDS: [RecordKind; 3] = [RecordKind::Logs, RecordKind::Metrics, RecordKind::Spans];

impl Tables {
    /// The writer slot of `kind`'s table (`None`: dead letters).
    fn slot(&mut self, kind: Option<RecordKind>) -> &mut Option<TableWriter> {
        match kind {
            Some(RecordKind::Logs) => &mut self.logs,
            Some(RecordKind::Metrics) => &mut self.metrics,
            Some(RecordKind::Spans) => &mut self.spans,
            None => &mut self.dead_letters,
        }
    }

    fn slot_ref(&self, kind: Option<RecordKind>) -> &Option<TableWriter> {
        match kind {
            Some(RecordKind::Logs) => &self.logs,
            Some(RecordKind::Metrics) => &self.metrics,
            Some(RecordKind::Spans) => &self.spans,
            None => &self.dead_letters,
        }
    }
    fn all(&mut self) -> impl Iterator<Item = &mut TableWriter> {
        [
            &mut self.dead_letters,
            &mut self.logs,
            &mut self.metrics,
            &mut self.spans,
        ]
        .into_iter()
        .flatten()
    }
}

/// Writes every source's batches into the archive and hands them to detection.
pub struct Sink {
    archive: Archive,
    log_schema: LogSchema,
    policy: FlushPolicy,
    tables: Tables,
    detection: Option<Detection>,
    positions: Positions,
    origins: Vec<Origin>,
    /// The merge consumer of a distributed pipeline, if any.
    merge_origin: Option<u32>,
    stats: SinkStats,
    privacy: Option<Arc<Privacy>>,
    /// Threads each commit encodes on.
    threads: usize,
}

impl Sink {
    /// A sink into `archive` for `sources` sources (numbered from 0 in the order of the
    /// pipeline file); tables are created when their first rows arrive.
    pub fn new(
        archive: Archive,
        log_schema: LogSchema,
        policy: FlushPolicy,
        detection: Option<Detection>,
        sources: usize,
    ) -> Self {
        Self {
            archive,
            log_schema,
            policy,
            tables: Tables::default(),
            detection,
            positions: Positions::default(),
            origins: (0..sources).map(|_| Origin::default()).collect(),
            merge_origin: None,
            stats: SinkStats::default(),
            privacy: None,
            threads: 1,
        }
    }

    /// Sends source `origin` feedback (committed positions, repositions) through `to`.
    pub fn connect(&mut self, origin: u32, to: Sender<Feedback>) {
        self.origins[origin as usize].feedback = Some(to);
    }

    /// Source `origin` is the merge consumer of a distributed pipeline: it hears when every
    /// other source has ended, and the partials offset of each detection checkpoint.
    pub fn set_merge_origin(&mut self, origin: u32) {
        self.merge_origin = Some(origin);
    }

    /// Applies `privacy`'s policies to every batch before anything else sees it.
    pub fn set_privacy(&mut self, privacy: Option<Arc<Privacy>>) {
        self.privacy = privacy;
    }

    /// Encodes each commit's column chunks on up to `threads` threads (tables opened from now
    /// on).
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    /// Sends source `origin`'s dead letters to a Kafka topic instead of the table.
    pub fn route_dead_letters(&mut self, origin: u32, topic: DeadLetterTopic) {
        self.origins[origin as usize].dead_letter_topic = Some(topic);
    }

    /// What has been committed so far.
    pub fn stats(&self) -> SinkStats {
        self.stats
    }

    /// The pipeline's detection, if it has rules.
    pub fn detection(&self) -> Option<&Detection> {
        self.detection.as_ref()
    }

    /// Opens the writer of `kind`'s table (`None`: the dead letters') now, creating the table
    /// if needed. Called up front so an unusable archive fails before any input is read.
    pub async fn open(&mut self, kind: Option<RecordKind>) -> Result<(), StoreError> {
        self.writer(kind).await.map(drop)
    }

    /// The writer of `kind`'s table (`None`: dead letters), opened on first use.
    async fn writer(&mut self, kind: Option<RecordKind>) -> Result<&mut TableWriter, StoreError> {
        let spec = match kind {
            Some(k) => TableSpec::records(k, &self.log_schema),
            None => TableSpec::dead_letters(),
        };
        let slot = self.tables.slot(kind);
        if slot.is_none() {
            let mut w = TableWriter::open(&self.archive, spec, self.policy).await?;
            w.set_threads(self.threads);
            *slot = Some(w);
        }
        Ok(slot.as_mut().expect("just opened"))
    }

    /// Handles one step of source `origin`, then commits what is due.
    pub async fn handle(&mut self, origin: u32, step: Step) -> Result<(), PipelineError> {
        match step {
            Step::Batch(batch) => {
                let started = std::time::Instant::now();
                self.accept(origin, batch).await?;
                vigil_core::metrics::metrics()
                    .batch_seconds
                    .observe(&[], started.elapsed().as_secs_f64());
            }
            Step::Assigned(partitions) => self.assigned(origin, partitions).await?,
            Step::Revoked => self.revoked(origin),
            Step::End => self.ended(origin, true).await?,
            Step::Stopped => self.ended(origin, false).await?,
            Step::Shuffle(s) => {
                if let Some(d) = &mut self.detection
                    && let Some(offset) = d.shuffled(s).await?
                {
                    let partials = Partition::new("partials", 0);
                    self.feedback(origin, Feedback::Committed(vec![(partials, offset)]));
                }
            }
            Step::Idle => return self.tick().await,
        }
        self.commit(false).await
    }

    /// Time passed with nothing new: windows whose streams went idle may close, and tables
    /// whose interval passed are committed.
    pub async fn tick(&mut self) -> Result<(), PipelineError> {
        if let Some(d) = &mut self.detection {
            d.advance().await?;
        }
        self.commit(false).await
    }

    async fn accept(&mut self, origin: u32, mut b: SourceBatch) -> Result<(), PipelineError> {
        let o = &mut self.origins[origin as usize];
        if b.delta.as_ref().is_some_and(|d| d.epoch < o.epoch) {
            self.stats.stale_batches += 1;
            return Ok(());
        }
        // Before detection, the archive or any topic sees a value.
        if let Some(p) = &self.privacy {
            p.apply(&mut b.batch);
        }
        if !o.streams.contains(&b.stream) {
            o.streams.insert(Arc::clone(&b.stream));
        }
        if let Some(d) = &mut self.detection {
            let offsets = b.delta.as_ref().map(|d| (d.from, d.to));
            d.accept(b.kind, &b.stream, &b.batch.records, offsets)
                .await?;
        }
        if b.batch.num_records() > 0 {
            let writer = self.writer(Some(b.kind)).await?;
            for rows in b.batch.records {
                writer.push_from(origin, rows);
            }
        }
        let dead = b.batch.dead_letters;
        if dead.num_rows() > 0 {
            if let Some(topic) = &mut self.origins[origin as usize].dead_letter_topic {
                topic.send(&dead)?;
            } else if let Some(delta) = &b.delta {
                if !self.positions.knows_dead(&delta.partition) {
                    let id = delta.partition.app_id();
                    let version = self.writer(None).await?.app_version(&id).await?;
                    self.positions
                        .set_dead_archived(delta.partition.clone(), version);
                }
                let dead = self.positions.new_dead_letters(&delta.partition, dead);
                self.writer(None).await?.push_from(origin, dead);
            } else {
                self.writer(None).await?.push_from(origin, dead);
            }
        }
        if let Some(delta) = &b.delta {
            self.positions.advance(origin, b.kind, delta);
        }
        if let Some(d) = &mut self.detection {
            d.advance().await?;
        }
        Ok(())
    }

    async fn assigned(
        &mut self,
        origin: u32,
        partitions: Vec<(Partition, RecordKind)>,
    ) -> Result<(), PipelineError> {
        // The writers' snapshots must include every commit the resume positions were read
        // from: each commit is checked against its snapshot's positions (and Delta's conflict
        // check against later commits), so an older snapshot would fence us off our own
        // partitions.
        for t in self.tables.all() {
            t.refresh().await?;
        }
        let o = &mut self.origins[origin as usize];
        for (p, kind) in partitions {
            if let Some(d) = &mut self.detection {
                d.expect_source(&p.to_string());
            }
            o.partitions.insert(p, kind);
        }
        Ok(())
    }

    fn revoked(&mut self, origin: u32) {
        for t in self.tables.all() {
            t.discard_from(origin);
        }
        let o = &mut self.origins[origin as usize];
        let partitions: Vec<Partition> = o.partitions.drain().map(|(p, _)| p).collect();
        self.positions.forget(&partitions);
        if let Some(d) = &mut self.detection {
            for p in &partitions {
                d.forget_source(&p.to_string());
            }
        }
    }

    /// `origin` sends nothing more. If its input is `complete`, its streams stop holding the
    /// watermark back, and the windows the others allow close now; otherwise (asked to stop)
    /// they stay open for the next run.
    async fn ended(&mut self, origin: u32, complete: bool) -> Result<(), PipelineError> {
        self.origins[origin as usize].ended = true;
        if let Some(merge) = self.merge_origin
            && merge != origin
            && (0..self.origins.len() as u32).all(|o| o == merge || self.origins[o as usize].ended)
        {
            self.feedback(merge, Feedback::OthersEnded);
        }
        let Some(d) = &mut self.detection else {
            return Ok(());
        };
        // What it read is committed at the end: its partials are handed on first.
        d.send_pending().await?;
        let o = &self.origins[origin as usize];
        // Partitions assigned but never heard from are held back too.
        let assigned = o.partitions.keys().map(Partition::to_string);
        for s in o.streams.iter().map(|s| s.to_string()).chain(assigned) {
            if complete {
                d.end_source(&s);
            } else {
                d.forget_source(&s);
            }
        }
        if complete {
            d.advance().await?;
        }
        Ok(())
    }

    /// How long until something falls due: a table's interval, or positions that moved with
    /// nothing to write. `None` when nothing is buffered.
    pub fn next_deadline(&self) -> Option<Duration> {
        let tables = [
            &self.tables.dead_letters,
            &self.tables.logs,
            &self.tables.metrics,
        ];
        let positions = self
            .positions
            .oldest()
            .map(|t| self.policy.interval.saturating_sub(t.elapsed()));
        tables
            .into_iter()
            .flatten()
            .filter_map(TableWriter::due_in)
            .chain(positions)
            .min()
    }

    /// Commits what is due (everything with `force`): a table whose flush policy is due, and
    /// every table with positions that have waited a flush interval. Dead letters go first,
    /// whenever a records table commits: a partition's position never passes dead letters the
    /// archive does not have. Then the sources hear what was committed. A fenced commit
    /// repositions the sources instead of failing.
    pub async fn commit(&mut self, force: bool) -> Result<(), PipelineError> {
        let positions_due = self
            .positions
            .oldest()
            .is_some_and(|t| t.elapsed() >= self.policy.interval);
        let due = |t: &Option<TableWriter>| t.as_ref().is_some_and(TableWriter::is_due);
        let moved = |kind| !self.positions.txns(kind).is_empty();
        let go = RECORDS
            .map(|k| force || due(self.tables.slot_ref(Some(k))) || (positions_due && moved(k)));
        let dead = go.iter().any(|&g| g)
            || due(&self.tables.dead_letters)
            || (positions_due && !self.positions.dead_txns().is_empty());
        if !dead {
            return Ok(());
        }
        for o in &mut self.origins {
            if let Some(topic) = &mut o.dead_letter_topic {
                topic.flush()?;
            }
        }
        match self.commit_tables(go).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_fenced() => {
                self.stats.fenced += 1;
                vigil_core::metrics::metrics().fenced_commits.inc(&[]);
                tracing::warn!(error = %e, "another writer archived the same partitions: dropping this batch and resuming from the archive");
                self.fenced().await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Commits the dead letters, then the records tables chosen (one flag per [`RECORDS`]).
    async fn commit_tables(&mut self, go: [bool; 3]) -> Result<(), StoreError> {
        let dead_txns = self.positions.dead_txns();
        if !dead_txns.is_empty() || self.tables.dead_letters.is_some() {
            let writer = self.writer(None).await?;
            let committed = commit_with_retry(writer, &dead_txns).await?;
            self.stats.add(committed);
            self.positions.dead_committed();
        }
        for (kind, go) in RECORDS.into_iter().zip(go) {
            let moves = self.positions.txns(kind);
            let open = self.tables.slot_ref(Some(kind)).is_some();
            if !go || (moves.is_empty() && !open) {
                continue;
            }
            let txns: Vec<AppTxn> = moves.iter().map(|(_, _, t)| t.clone()).collect();
            let writer = self.writer(Some(kind)).await?;
            let committed = commit_with_retry(writer, &txns).await?;
            self.stats.add(committed);
            self.positions.committed(kind);
            let mut by_origin: HashMap<u32, Vec<(Partition, i64)>> = HashMap::new();
            for (p, origin, t) in moves {
                by_origin.entry(origin).or_default().push((p, t.to));
            }
            for (origin, positions) in by_origin {
                tracing::debug!(table = kind.table(), offsets = ?positions, "archived");
                self.feedback(origin, Feedback::Committed(positions));
            }
        }
        Ok(())
    }

    /// After a fenced commit: drops what positioned sources buffered and tells each to restart
    /// its partitions where the archive ends, in a new epoch.
    async fn fenced(&mut self) -> Result<(), PipelineError> {
        for t in self.tables.all() {
            t.refresh().await?;
        }
        for origin in 0..self.origins.len() as u32 {
            if self.origins[origin as usize].feedback.is_none() {
                continue;
            }
            for t in self.tables.all() {
                t.discard_from(origin);
            }
            let moved = self.positions.partitions_of(origin);
            let o = &mut self.origins[origin as usize];
            self.positions
                .forget(o.partitions.keys().chain(moved.iter().map(|(p, _)| p)));
            o.epoch += 1;
            let epoch = o.epoch;
            self.feedback(origin, Feedback::Reposition { epoch });
        }
        Ok(())
    }

    fn feedback(&self, origin: u32, feedback: Feedback) {
        if let Some(to) = &self.origins[origin as usize].feedback {
            // A source that has stopped listening has ended; nothing to tell it.
            let _ = to.send(feedback);
        }
    }

    /// At the end of a run: detection's last word (every window closed when `close_windows`,
    /// else only delivered: a resumable source continues them on its next run), then every
    /// table committed. Dropping the sink afterwards disconnects the sources' feedback.
    pub async fn finish(&mut self, close_windows: bool) -> Result<(), PipelineError> {
        if let Some(d) = &mut self.detection {
            d.send_pending().await?;
            if close_windows {
                d.finish().await?;
            } else {
                d.stop()?;
            }
        }
        self.commit(true).await
    }
}

/// Commits `writer` with `txns`, retrying external failures with backoff; fencing is returned
/// at once.
async fn commit_with_retry(
    writer: &mut TableWriter,
    txns: &[AppTxn],
) -> Result<Option<Committed>, StoreError> {
    if writer.pending_rows() == 0 && txns.is_empty() {
        return Ok(None);
    }
    let mut attempt = 1;
    loop {
        match writer.commit(txns).await {
            Ok(committed) => return Ok(committed),
            Err(e) if e.is_fenced() || attempt >= COMMIT_ATTEMPTS => return Err(e),
            Err(e) => {
                let wait = Duration::from_millis(250 << (attempt - 1).min(5));
                vigil_core::metrics::metrics().commit_retries.inc(&[]);
                tracing::warn!(table = %writer.spec().name, error = %e, attempt, "commit failed; retrying in {wait:?}");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        }
    }
}
