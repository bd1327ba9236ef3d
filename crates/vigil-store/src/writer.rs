//! Buffers batches for one table and commits them as sorted, partitioned Parquet files.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, mpsc};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use deltalake::DeltaTable;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::RecordBatchWriter;
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use tokio::io::AsyncWriteExt;

use crate::archive::{Archive, app_version};
use crate::error::StoreError;
use crate::file::{Buffered, ParquetFile, RowRun, StatsColumns, add_action};
use crate::sort::{Piece, sort_rows};
use crate::spec::{ROW_GROUP_ROWS, TableSpec};
use crate::tiers::Tier;

/// Frees `batches` on a thread kept for that. A commit's buffers are thousands of arrays and
/// hundreds of MB: freeing them took a two-thread ingest's main thread ~3 ms a commit, on the
/// critical path at the last one (both cores otherwise idle), and nothing waits for it.
fn drop_elsewhere(batches: Vec<RecordBatch>) {
    static DROPPER: OnceLock<Option<mpsc::Sender<Vec<RecordBatch>>>> = OnceLock::new();
    let dropper = DROPPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Vec<RecordBatch>>();
        std::thread::Builder::new()
            .name("vigil-drop".into())
            .spawn(move || rx.into_iter().for_each(drop))
            .ok()
            .map(|_| tx)
    });
    // Without the thread (none could be started, or it is gone) they are freed here.
    if let Some(tx) = dropper {
        let _ = tx.send(batches);
    }
}

/// Parts of a file's upload (object stores take multipart parts of at least 5 MiB).
const UPLOAD_PART_BYTES: usize = 8 << 20;

/// When a table's buffer is written out: whichever limit is reached first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushPolicy {
    /// Buffered rows.
    pub max_rows: usize,
    /// Buffered in-memory Arrow bytes.
    pub max_bytes: usize,
    /// Age of the oldest buffered row.
    pub interval: Duration,
}

impl FlushPolicy {
    /// Never due: the owner commits when it chooses (e.g. detection, after each window close).
    pub fn manual() -> Self {
        Self {
            max_rows: usize::MAX,
            max_bytes: usize::MAX,
            interval: Duration::MAX,
        }
    }
}

impl Default for FlushPolicy {
    /// Commit at 1,000,000 rows, 96 MiB of Arrow buffers, or 30 s after the oldest row
    /// arrived, whichever comes first. The bytes bound the memory: a commit holds its whole
    /// buffer while it sorts and encodes it, and the sources decode on meanwhile; at 96 MiB
    /// a 1 GB ingest peaks under 400 MB on two threads (BENCHMARKS.md, goal 6).
    fn default() -> Self {
        Self {
            max_rows: 1_000_000,
            max_bytes: 96 << 20,
            interval: Duration::from_secs(30),
        }
    }
}

/// What a commit wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The new table version.
    pub version: u64,
    /// Rows written.
    pub rows: usize,
    /// Parquet files added.
    pub files: usize,
}

/// An application transaction in a commit: `app_id` (e.g. a Kafka partition) moves from
/// `from`, the version this writer last saw recorded (`None`: none), to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppTxn {
    /// The application id.
    pub app_id: String,
    /// The version the committer expects the table to hold.
    pub from: Option<i64>,
    /// The version this commit records.
    pub to: i64,
}

/// Buffers batches for one table; [`commit`](Self::commit) writes them as Parquet files sorted
/// by (date, group, time), one or more per date partition, and commits them to the Delta log in
/// one transaction together with any application transaction versions (source offsets).
pub struct TableWriter {
    spec: TableSpec,
    table: DeltaTable,
    props: WriterProperties,
    policy: FlushPolicy,
    pending: Vec<RecordBatch>,
    /// Who each pending batch came from (see [`push_from`](Self::push_from)).
    origins: Vec<u32>,
    pending_rows: usize,
    pending_bytes: usize,
    oldest: Option<Instant>,
    date_col: usize,
    group_col: Option<usize>,
    time_col: usize,
    txns_seen: SeenTxns,
    /// The tier this table is in (the metrics' `tier` label).
    tier: Tier,
    /// Threads a commit encodes column chunks on.
    threads: usize,
}

/// Application transaction versions known to hold at table version `at`: read from the log
/// once, then carried over the writer's own commits while nobody else commits.
#[derive(Default)]
struct SeenTxns {
    at: Option<u64>,
    versions: HashMap<String, Option<i64>>,
}

impl TableWriter {
    /// Opens (or creates) the table in `archive`.
    pub async fn open(
        archive: &Archive,
        spec: TableSpec,
        policy: FlushPolicy,
    ) -> Result<Self, StoreError> {
        archive.check_commits()?;
        let table = archive.open_or_create(&spec).await?;
        let index = |name: &str| {
            spec.schema
                .index_of(name)
                .expect("spec columns are in its schema")
        };
        Ok(Self {
            props: spec.writer_properties(),
            date_col: index(spec.partition),
            group_col: spec.sort_group.map(index),
            time_col: index(spec.sort_time),
            table,
            spec,
            policy,
            pending: Vec::new(),
            origins: Vec::new(),
            pending_rows: 0,
            pending_bytes: 0,
            oldest: None,
            txns_seen: SeenTxns::default(),
            tier: Tier::Hot,
            threads: 1,
        })
    }

    /// The table is in `tier` (hot unless said): what its commits count as in the metrics.
    pub fn set_tier(&mut self, tier: Tier) {
        self.tier = tier;
    }

    /// Encodes the columns of each row group on up to `threads` threads (the committing one
    /// among them). The files are the same whatever the number.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    /// Writes the next files with `props` instead of the spec's defaults.
    pub fn set_writer_properties(&mut self, props: WriterProperties) {
        self.props = props;
    }

    /// The table's spec.
    pub fn spec(&self) -> &TableSpec {
        &self.spec
    }

    /// The Delta table as of the last commit.
    pub fn table(&self) -> &DeltaTable {
        &self.table
    }

    /// Reads a small side file kept under the table's root, e.g. `_vigil/detection.json`;
    /// `None` if there is none. Delta readers (and VACUUM) ignore directories starting with
    /// `_`, so side files never show up as table data.
    pub async fn read_side_file(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let store = self.table.log_store().object_store(None);
        let path = object_store::path::Path::from(path);
        let err = |e: object_store::Error| StoreError::Delta {
            table: self.spec.name.clone(),
            source: Box::new(e.into()),
        };
        match store.get(&path).await {
            Ok(got) => Ok(Some(got.bytes().await.map_err(err)?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(err(e)),
        }
    }

    /// Replaces a side file (see [`read_side_file`](Self::read_side_file)) in one put: a
    /// reader sees the old or the new content, never a mix.
    pub async fn write_side_file(&self, path: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let store = self.table.log_store().object_store(None);
        store
            .put(&object_store::path::Path::from(path), bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| StoreError::Delta {
                table: self.spec.name.clone(),
                source: Box::new(e.into()),
            })
    }

    /// Buffers a batch of the table's schema. Empty batches are ignored.
    pub fn push(&mut self, batch: RecordBatch) {
        self.push_from(0, batch);
    }

    /// Buffers a batch that came from `origin` (e.g. one source of a pipeline), so that
    /// [`discard_from`](Self::discard_from) can drop that origin's rows and keep the rest.
    pub fn push_from(&mut self, origin: u32, batch: RecordBatch) {
        if batch.num_rows() == 0 {
            return;
        }
        debug_assert_eq!(batch.schema().fields(), self.spec.schema.fields());
        self.pending_rows += batch.num_rows();
        self.pending_bytes += batch.get_array_memory_size();
        self.oldest.get_or_insert_with(Instant::now);
        self.pending.push(batch);
        self.origins.push(origin);
    }

    /// Drops the buffered rows that came from `origin` without writing them (its source is
    /// re-read from the archive's positions), keeping every other origin's.
    pub fn discard_from(&mut self, origin: u32) {
        if !self.origins.contains(&origin) {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        let origins = std::mem::take(&mut self.origins);
        let oldest = self.oldest;
        self.discard();
        for (o, batch) in origins.into_iter().zip(pending) {
            if o != origin {
                self.push_from(o, batch);
            }
        }
        if !self.pending.is_empty() {
            self.oldest = oldest;
        }
    }

    /// Rows buffered and not yet committed.
    pub fn pending_rows(&self) -> usize {
        self.pending_rows
    }

    /// In-memory bytes buffered.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Whether a flush limit has been reached.
    pub fn is_due(&self) -> bool {
        self.pending_rows >= self.policy.max_rows
            || self.pending_bytes >= self.policy.max_bytes
            || self
                .oldest
                .is_some_and(|t| t.elapsed() >= self.policy.interval)
    }

    /// Time until the interval limit is reached, if anything is buffered.
    pub fn due_in(&self) -> Option<Duration> {
        self.oldest
            .map(|t| self.policy.interval.saturating_sub(t.elapsed()))
    }

    /// Writes the buffered rows as one sorted Parquet file per date partition, uploads them and
    /// returns their `add` actions; on failure, the error and the files already uploaded.
    async fn write_files(&self) -> Result<Vec<Add>, (StoreError, Vec<String>)> {
        let name = &self.spec.name;
        let delta = |e: deltalake::DeltaTableError| StoreError::delta(name)(e);
        let parquet = |e: parquet::errors::ParquetError| StoreError::Delta {
            table: name.clone(),
            source: Box::new(e.into()),
        };
        let object = |e: object_store::Error| delta(e.into());
        let fail = |e: StoreError| (e, Vec::new());
        // The file schema is the table's, as delta-rs derives it from the log, less the
        // partition column and less the columns this writer does not write (another pipeline
        // promoted them): a file without a column reads it as null.
        let table_schema = RecordBatchWriter::for_table(&self.table)
            .map_err(|e| fail(delta(e)))?
            .arrow_schema();
        let file_schema = Arc::new(Schema::new(
            table_schema
                .fields()
                .iter()
                .filter(|f| {
                    f.name() != self.spec.partition
                        && (self.spec.schema.index_of(f.name()).is_ok() || !f.is_nullable())
                })
                .cloned()
                .collect::<Vec<_>>(),
        ));
        let snapshot = self.table.snapshot().map_err(|e| fail(delta(e)))?;
        let stats_columns = StatsColumns::from_configuration(snapshot.metadata().configuration());
        // File names as delta-rs gives them (Hadoop's codec suffixes).
        let suffix = match self.props.compression(&ColumnPath::new(Vec::new())) {
            Compression::UNCOMPRESSED => "",
            Compression::SNAPPY => ".snappy",
            Compression::GZIP(_) => ".gz",
            Compression::LZO => ".lzo",
            Compression::BROTLI(_) => ".br",
            Compression::LZ4 => ".lz4",
            Compression::ZSTD(_) => ".zstd",
            Compression::LZ4_RAW => ".lz4raw",
        };
        let store = self.table.log_store().object_store(None);
        // Made at the first gathered run, shared by the rest.
        let mut buffered: Option<Arc<Buffered>> = None;
        let mut adds = Vec::new();
        let mut written = Vec::new();
        for part in sort_rows(&self.pending, self.date_col, self.group_col, self.time_col) {
            let date = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")
                + chrono::Duration::days(part.date.into());
            let date = date.format("%Y-%m-%d").to_string();
            let path = format!(
                "{}={date}/part-00000-{}-c000{suffix}.parquet",
                self.spec.partition,
                uuid::Uuid::new_v4()
            );
            // Uploaded as it is encoded, a part at a time once it outgrows one part: besides
            // the pending rows, only the columns being encoded (gathered a column at a time)
            // and a part or two of the file are in memory at once.
            let mut upload = BufWriter::with_capacity(
                Arc::clone(&store),
                object_store::path::Path::from(path.as_str()),
                UPLOAD_PART_BYTES,
            )
            .with_max_concurrency(2);
            let mut size = 0;
            let mut closing = false;
            let encoded = async {
                let mut file = ParquetFile::new(
                    file_schema.clone(),
                    &self.spec.schema,
                    self.props.clone(),
                    self.threads,
                )
                .map_err(parquet)?;
                for group in row_groups(&part.pieces) {
                    let rows = row_runs(&self.pending, &group, &mut buffered);
                    file.write_row_group(&rows).map_err(parquet)?;
                    drop(rows);
                    let bytes = file.take_written();
                    if !bytes.is_empty() {
                        size += bytes.len();
                        upload.put(bytes.into()).await.map_err(object)?;
                    }
                }
                let (bytes, metadata) = file.finish().map_err(parquet)?;
                size += bytes.len();
                upload.put(bytes.into()).await.map_err(object)?;
                closing = true;
                upload.shutdown().await.map_err(|e| {
                    object(object_store::Error::Generic {
                        store: "upload",
                        source: Box::new(e),
                    })
                })?;
                Ok(metadata)
            }
            .await;
            let metadata = match encoded {
                Ok(m) => m,
                Err(e) => {
                    // An upload that failed to complete cannot be aborted any more.
                    if !closing && let Err(abort) = upload.abort().await {
                        tracing::warn!(table = %name, file = %path, error = %abort, "cannot abort an upload; the object store's lifecycle rules will");
                    }
                    return Err((e, written));
                }
            };
            written.push(path.clone());
            match add_action(
                (self.spec.partition, date),
                path,
                size,
                &metadata,
                &stats_columns,
            ) {
                Ok(add) => adds.push(add),
                Err(e) => return Err((delta(e.into()), written)),
            }
        }
        Ok(adds)
    }

    /// The version last committed for an application id (e.g. a source's offsets), read from
    /// the table's `txn` actions as of the writer's snapshot.
    pub async fn app_version(&self, app_id: &str) -> Result<Option<i64>, StoreError> {
        app_version(&self.table, &self.spec.name, app_id).await
    }

    /// Brings the writer's snapshot up to the table's latest version (commits by others).
    pub async fn refresh(&mut self) -> Result<(), StoreError> {
        self.table
            .update_state()
            .await
            .map_err(StoreError::delta(&self.spec.name))
    }

    /// Drops everything buffered without writing it.
    pub fn discard(&mut self) {
        drop_elsewhere(std::mem::take(&mut self.pending));
        self.origins.clear();
        self.pending_rows = 0;
        self.pending_bytes = 0;
        self.oldest = None;
    }

    /// Writes everything buffered and commits it, with `txns` recorded in the same commit.
    /// Returns `None` when there was nothing to commit.
    ///
    /// Each transaction must still be where its `from` says, both in the snapshot the commit
    /// builds on and in any commit made concurrently; otherwise nothing is committed and the
    /// error [is fenced](StoreError::is_fenced). The snapshot matters as much as the race: it
    /// moves on with every commit (ours are rebased over others' that touch other ids), so a
    /// writer can hold a snapshot that already has another writer's record of a partition it is
    /// about to commit again.
    ///
    /// On any other error the buffer is kept, so the caller may retry; files written by the
    /// failed attempt are never referenced by the log.
    pub async fn commit(&mut self, txns: &[AppTxn]) -> Result<Option<Committed>, StoreError> {
        if self.pending.is_empty() && txns.is_empty() {
            return Ok(None);
        }
        self.check_txns(txns).await?;
        let name = self.spec.name.clone();
        let err = StoreError::delta(&name);
        let mut actions = Vec::new();
        let started = Instant::now();
        if !self.pending.is_empty() {
            let adds = self.write_files().await;
            match adds {
                Ok(adds) => actions.extend(adds.into_iter().map(Action::Add)),
                Err((e, written)) => {
                    self.remove_unreferenced(&written).await;
                    return Err(e);
                }
            }
        }
        let files = actions.len();
        let written_bytes: i64 = actions
            .iter()
            .map(|a| match a {
                Action::Add(add) => add.size,
                _ => 0,
            })
            .sum();
        let flushed = Instant::now();
        let now = chrono::Utc::now().timestamp_millis();
        let actions_txns: Vec<Transaction> = txns
            .iter()
            .map(|t| Transaction::new_with_last_update(&t.app_id, t.to, Some(now)))
            .collect();
        let operation = DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: Some(vec![self.spec.partition.to_string()]),
            predicate: None,
        };
        let snapshot = self.table.snapshot().map_err(StoreError::delta(&name))?;
        let read_version = snapshot.version();
        let written: Vec<String> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Add(add) => Some(add.path.clone()),
                _ => None,
            })
            .collect();
        let finalized = match CommitBuilder::from(
            CommitProperties::default().with_application_transactions(actions_txns),
        )
        .with_actions(actions)
        .build(Some(snapshot), self.table.log_store(), operation)
        .await
        {
            Ok(f) => f,
            Err(e) => {
                self.remove_unreferenced(&written).await;
                if metadata_changed(&e) {
                    // Another writer changed the table's schema (a pipeline that promotes
                    // one more field adds its column): a retry must build on the table as it
                    // is now, which still has every column this writer writes.
                    if let Err(e) = self.refresh().await {
                        tracing::warn!(table = %name, error = %e, "cannot reload the table after a schema change");
                    }
                }
                return Err(err(e));
            }
        };
        let version = finalized.version();
        self.table.state = Some(finalized.snapshot());
        // Others' commits rebased under ours are not read: the next check reads the log again.
        let seen = &mut self.txns_seen;
        if seen.at == Some(read_version) && version == read_version + 1 {
            seen.at = Some(version);
            seen.versions
                .extend(txns.iter().map(|t| (t.app_id.clone(), Some(t.to))));
        }
        let rows = self.pending_rows;
        self.discard();
        let m = vigil_core::metrics::metrics();
        let labels = [name.as_str(), self.tier.name()];
        m.flush_seconds
            .observe(&labels, (flushed - started).as_secs_f64());
        m.commit_seconds
            .observe(&labels, flushed.elapsed().as_secs_f64());
        m.archive_commits.inc(&labels);
        m.archive_rows.inc_by(&labels, rows as u64);
        m.archive_bytes.inc_by(&labels, written_bytes.max(0) as u64);
        tracing::debug!(table = %name, version, rows, files, "committed");
        Ok(Some(Committed {
            version,
            rows,
            files,
        }))
    }

    /// Deletes files a failed commit wrote: no log entry references them, and no reader ever
    /// sees them. Best effort: a file that cannot be deleted now (or one written before a crash)
    /// is left for a vacuum.
    async fn remove_unreferenced(&self, paths: &[String]) {
        let store = self.table.log_store().object_store(None);
        for p in paths {
            let path = object_store::path::Path::from(p.as_str());
            if let Err(e) = store.delete(&path).await {
                tracing::warn!(table = %self.spec.name, file = %p, error = %e, "cannot remove a file of a failed commit; a vacuum will");
            }
        }
        if !paths.is_empty() {
            tracing::debug!(table = %self.spec.name, files = paths.len(), "removed the files of a failed commit");
        }
    }

    /// Fails, fenced, when a transaction's recorded version in the current snapshot is not its
    /// `from`.
    async fn check_txns(&mut self, txns: &[AppTxn]) -> Result<(), StoreError> {
        if txns.is_empty() {
            return Ok(());
        }
        let at = self
            .table
            .snapshot()
            .map_err(StoreError::delta(&self.spec.name))?
            .version();
        if self.txns_seen.at != Some(at) {
            self.txns_seen = SeenTxns {
                at: Some(at),
                versions: HashMap::new(),
            };
        }
        for t in txns {
            let found = match self.txns_seen.versions.get(&t.app_id) {
                Some(&v) => v,
                None => {
                    let v = app_version(&self.table, &self.spec.name, &t.app_id).await?;
                    self.txns_seen.versions.insert(t.app_id.clone(), v);
                    v
                }
            };
            if found != t.from {
                return Err(StoreError::Fenced {
                    table: self.spec.name.clone(),
                    app_id: t.app_id.clone(),
                    expected: t.from,
                    found,
                });
            }
        }
        Ok(())
    }
}

/// A run of a partition's rows: a zero-copy slice of a buffered batch, or rows to gather.
enum Run<'a> {
    Slice {
        batch: usize,
        offset: usize,
        len: usize,
    },
    Rows(&'a [(u32, u32)]),
}

/// A row group's runs as its encoders take them: slices of the `pending` batches, and each
/// stretch of gathered runs (one per service when rows come out of order) as one gather, from
/// the buffered columns made at the first (`buffered`) and shared by the rest. Gathering each
/// run on its own was quadratic in the services: 200,000 lines of 50,000 services in random
/// order took 320 s (BENCHMARKS.md).
fn row_runs(
    pending: &[RecordBatch],
    group: &[Run<'_>],
    buffered: &mut Option<Arc<Buffered>>,
) -> Vec<RowRun> {
    let mut runs = Vec::new();
    let mut gather: Vec<(usize, usize)> = Vec::new();
    let mut flush = |gather: &mut Vec<(usize, usize)>, runs: &mut Vec<RowRun>| {
        if !gather.is_empty() {
            let from = buffered.get_or_insert_with(|| Arc::new(Buffered::new(pending)));
            runs.push(RowRun::Gather {
                from: Arc::clone(from),
                rows: std::mem::take(gather).into(),
            });
        }
    };
    for run in group {
        match *run {
            Run::Slice { batch, offset, len } => {
                flush(&mut gather, &mut runs);
                runs.push(RowRun::Batch(pending[batch].slice(offset, len)));
            }
            Run::Rows(rows) => gather.extend(rows.iter().map(|&(b, r)| (b as usize, r as usize))),
        }
    }
    flush(&mut gather, &mut runs);
    runs
}

/// A partition's pieces cut into row groups of [`ROW_GROUP_ROWS`] rows (the last shorter).
fn row_groups(pieces: &[Piece]) -> Vec<Vec<Run<'_>>> {
    let mut groups = Vec::new();
    let mut group = Vec::new();
    let mut room = ROW_GROUP_ROWS;
    fn took<'a>(group: &mut Vec<Run<'a>>, room: &mut usize, n: usize) -> Option<Vec<Run<'a>>> {
        *room -= n;
        if *room == 0 {
            *room = ROW_GROUP_ROWS;
            Some(std::mem::take(group))
        } else {
            None
        }
    }
    for piece in pieces {
        match piece {
            Piece::Slice { batch, offset, len } => {
                let (mut offset, mut left) = (*offset, *len);
                while left > 0 {
                    let n = left.min(room);
                    group.push(Run::Slice {
                        batch: *batch,
                        offset,
                        len: n,
                    });
                    (offset, left) = (offset + n, left - n);
                    groups.extend(took(&mut group, &mut room, n));
                }
            }
            Piece::Gather(rows) => {
                let mut rest = rows.as_slice();
                while !rest.is_empty() {
                    let n = rest.len().min(room);
                    group.push(Run::Rows(&rest[..n]));
                    rest = &rest[n..];
                    groups.extend(took(&mut group, &mut room, n));
                }
            }
        }
    }
    if !group.is_empty() {
        groups.push(group);
    }
    groups
}

/// Whether a commit failed because a concurrent commit changed the table's metadata.
fn metadata_changed(e: &deltalake::DeltaTableError) -> bool {
    use deltalake::kernel::transaction::{CommitConflictError, TransactionError};
    matches!(
        e,
        deltalake::DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(CommitConflictError::MetadataChanged)
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field};

    #[test]
    fn batches_dropped_elsewhere_are_freed_there_not_kept() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let values: arrow::array::ArrayRef = Arc::new(Int64Array::from_iter_values(0..1000));
        let batch = RecordBatch::try_new(schema, vec![Arc::clone(&values)]).unwrap();
        assert_eq!(Arc::strong_count(&values), 2);
        drop_elsewhere(vec![batch.clone(), batch]);
        let started = Instant::now();
        while Arc::strong_count(&values) > 1 {
            assert!(started.elapsed() < Duration::from_secs(10), "never freed");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_row_groups_gathered_runs_are_one_gather_from_columns_collected_once() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let pending: Vec<RecordBatch> = (0..4)
            .map(|b| {
                let values = Int64Array::from_iter_values((0..3).map(|r| b * 10 + r));
                RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(values)]).unwrap()
            })
            .collect();
        // One gathered run per service, a slice, then two more services.
        let (a, b, c, d) = (
            vec![(0, 0), (2, 1)],
            vec![(1, 2)],
            vec![(3, 0)],
            vec![(0, 2), (3, 1)],
        );
        let group = [
            Run::Rows(&a),
            Run::Rows(&b),
            Run::Slice {
                batch: 2,
                offset: 0,
                len: 1,
            },
            Run::Rows(&c),
            Run::Rows(&d),
        ];
        let mut buffered = None;
        let runs = row_runs(&pending, &group, &mut buffered);
        let shape: Vec<String> = runs
            .iter()
            .map(|r| match r {
                RowRun::Batch(b) => format!("slice of {}", b.num_rows()),
                RowRun::Gather { rows, .. } => format!("gather {rows:?}"),
            })
            .collect();
        assert_eq!(
            shape,
            [
                "gather [(0, 0), (2, 1), (1, 2)]",
                "slice of 1",
                "gather [(3, 0), (0, 2), (3, 1)]"
            ]
        );
        let (RowRun::Gather { from: first, .. }, RowRun::Gather { from: last, .. }) =
            (&runs[0], &runs[2])
        else {
            unreachable!()
        };
        assert!(
            Arc::ptr_eq(first, last),
            "the buffered columns are collected once"
        );
        assert!(Arc::ptr_eq(first, buffered.as_ref().unwrap()));
    }
}
