//! The archive side of a pipeline: one [`TableWriter`] per table, opened on first use,
//! committed when its flush policy says so.

use std::time::Duration;

use vigil_core::schema::{LogSchema, RecordKind};
use vigil_decode::DecodedBatch;
use vigil_store::{Archive, FlushPolicy, StoreError, TableSpec, TableWriter};

/// Totals of what a sink committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Delta commits made.
    pub commits: u64,
    /// Rows committed, all tables.
    pub rows: u64,
    /// Parquet files written.
    pub files: u64,
}

/// Writes decoded batches into the archive.
pub struct Sink {
    archive: Archive,
    log_schema: LogSchema,
    policy: FlushPolicy,
    logs: Option<TableWriter>,
    metrics: Option<TableWriter>,
    dead_letters: Option<TableWriter>,
    stats: SinkStats,
}

impl Sink {
    /// A sink into `archive`; tables are created when their first rows arrive.
    pub fn new(archive: Archive, log_schema: LogSchema, policy: FlushPolicy) -> Self {
        Self {
            archive,
            log_schema,
            policy,
            logs: None,
            metrics: None,
            dead_letters: None,
            stats: SinkStats::default(),
        }
    }

    /// What has been committed so far.
    pub fn stats(&self) -> SinkStats {
        self.stats
    }

    /// Opens the writer of `table` now, creating the table if needed. Called up front so an
    /// unusable archive fails before any input is read.
    pub async fn open(&mut self, kind: RecordKind) -> Result<(), StoreError> {
        self.writer(Some(kind)).await.map(drop)
    }

    async fn writer(&mut self, kind: Option<RecordKind>) -> Result<&mut TableWriter, StoreError> {
        let (slot, spec) = match kind {
            Some(RecordKind::Logs) => (&mut self.logs, TableSpec::logs(&self.log_schema)),
            Some(RecordKind::Metrics) => (&mut self.metrics, TableSpec::metrics()),
            None => (&mut self.dead_letters, TableSpec::dead_letters()),
        };
        if slot.is_none() {
            *slot = Some(TableWriter::open(&self.archive, spec, self.policy).await?);
        }
        Ok(slot.as_mut().expect("just opened"))
    }

    /// Buffers a decoded batch of `kind` and commits every table that is due.
    pub async fn accept(
        &mut self,
        kind: RecordKind,
        batch: DecodedBatch,
    ) -> Result<(), StoreError> {
        if batch.num_records() > 0 {
            let writer = self.writer(Some(kind)).await?;
            for records in batch.records {
                writer.push(records);
            }
        }
        if batch.dead_letters.num_rows() > 0 {
            self.writer(None).await?.push(batch.dead_letters);
        }
        self.commit(false).await
    }

    /// Commits the tables whose flush policy is due (all of them with `force`).
    pub async fn commit(&mut self, force: bool) -> Result<(), StoreError> {
        for w in [&mut self.dead_letters, &mut self.logs, &mut self.metrics]
            .into_iter()
            .flatten()
        {
            if w.pending_rows() > 0
                && (force || w.is_due())
                && let Some(c) = w.commit(&[]).await?
            {
                self.stats.commits += 1;
                self.stats.rows += c.rows as u64;
                self.stats.files += c.files as u64;
            }
        }
        Ok(())
    }

    /// How long until a table's interval limit falls due; `None` if nothing is buffered.
    pub fn next_deadline(&self) -> Option<Duration> {
        [&self.dead_letters, &self.logs, &self.metrics]
            .into_iter()
            .flatten()
            .filter_map(TableWriter::due_in)
            .min()
    }
}
