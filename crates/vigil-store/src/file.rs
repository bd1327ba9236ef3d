//! One partition's rows as one Parquet file, its row groups encoded a column per task on as
//! many threads as the writer is given, and the Delta `add` action that references it.
//!
//! The bytes are those `ArrowWriter` writes for the same rows in the same row groups (same
//! pages, dictionaries, statistics, page index and bloom filters): each column chunk is encoded
//! by the column writer `ArrowWriter` itself would use, only on another thread. The `add`
//! action's statistics are those delta-rs computes from the file's footer (see
//! [`add_action`]), so readers prune files exactly as they did with delta-rs's own writer.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, mpsc};

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::compute::interleave;
use arrow::datatypes::{FieldRef, SchemaRef};
use chrono::Timelike;
use deltalake::kernel::Add;
use deltalake::protocol::{ColumnCountStat, ColumnValueStat, Stats};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves,
};
use parquet::basic::{LogicalType, TimeUnit, TimestampType, Type as PhysicalType};
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::properties::WriterProperties;
use parquet::file::statistics::Statistics;
use parquet::file::writer::SerializedFileWriter;

/// Rows of a row group below which its columns are encoded on the calling thread alone.
const MIN_PARALLEL_ROWS: usize = 4096;

/// Writes row groups into an in-memory Parquet file.
///
/// A row group's columns are encoded as tasks on the file's encoder threads and on the calling
/// thread while it waits: with helpers, the next row group's columns start while the last
/// columns of the one before are still encoding, so no thread waits for a row group's largest
/// column (at most two row groups are in flight).
pub(crate) struct ParquetFile {
    writer: SerializedFileWriter<Vec<u8>>,
    factory: ArrowRowGroupWriterFactory,
    /// The file's columns (the table's, less the partition column).
    fields: Vec<FieldRef>,
    /// Where each file column is in the table's batches.
    columns: Vec<usize>,
    /// How many Parquet leaf columns (column writers) each file column has.
    leaves: Vec<usize>,
    row_groups: usize,
    /// Where the chunks of each row group whose columns are queued or encoding come back,
    /// oldest first.
    in_flight: VecDeque<Results>,
    queue: Arc<Queue>,
    helpers: Vec<std::thread::JoinHandle<()>>,
    /// Helper threads to start at the first row group worth them.
    helpers_wanted: usize,
}

impl ParquetFile {
    /// A file of `file_schema`'s columns, taken by name from batches of the table's schema,
    /// with the Arrow schema in its footer as `ArrowWriter` puts it, encoded on up to
    /// `threads` threads (the calling one among them).
    pub fn new(
        file_schema: SchemaRef,
        table_schema: &SchemaRef,
        props: WriterProperties,
        threads: usize,
    ) -> Result<Self, ParquetError> {
        let columns = file_schema
            .fields()
            .iter()
            .map(|f| {
                table_schema.index_of(f.name()).map_err(|_| {
                    ParquetError::General(format!("no column {} in the table", f.name()))
                })
            })
            .collect::<Result<_, _>>()?;
        let fields: Vec<FieldRef> = file_schema.fields().iter().cloned().collect();
        let (writer, factory) =
            ArrowWriter::try_new(Vec::new(), file_schema, Some(props))?.into_serialized_writer()?;
        let descr = writer.schema_descr();
        let leaves = fields
            .iter()
            .map(|f| {
                (0..descr.num_columns())
                    .filter(|&i| descr.column(i).path().parts()[0] == *f.name())
                    .count()
            })
            .collect();
        let helpers_wanted = threads.clamp(1, fields.len().max(1)) - 1;
        Ok(Self {
            writer,
            factory,
            fields,
            columns,
            leaves,
            row_groups: 0,
            in_flight: VecDeque::new(),
            queue: Arc::new(Queue::default()),
            helpers: Vec::new(),
            helpers_wanted,
        })
    }

    /// Queues `runs` of rows (of the table's schema) as the next row group, and appends the
    /// oldest row group once more are in flight than the encoders can overlap (with no helper
    /// threads, the row group itself, encoded on the calling thread). Gathered rows are
    /// gathered a column at a time by the task that encodes the column.
    pub fn write_row_group(&mut self, runs: &[RowRun]) -> Result<(), ParquetError> {
        let rows: usize = runs.iter().map(RowRun::len).sum();
        if rows == 0 {
            return Ok(());
        }
        // A small row group is encoded sooner than a thread starts: the many small files of
        // a backfill over years of dates are written on the calling thread alone.
        if rows >= MIN_PARALLEL_ROWS {
            self.start_helpers();
        }
        let (done, results) = mpsc::channel();
        let mut writers = self
            .factory
            .create_column_writers(self.row_groups)?
            .into_iter();
        let mut tasks: Vec<Task> = self
            .columns
            .iter()
            .zip(&self.leaves)
            .zip(&self.fields)
            .enumerate()
            .map(|(column, ((&c, &leaves), field))| Task {
                column,
                field: Arc::clone(field),
                sources: runs.iter().map(|r| r.column(c)).collect(),
                writers: writers.by_ref().take(leaves).collect(),
                done: done.clone(),
            })
            .collect();
        // Largest first, so the last task of a row group is a short one.
        tasks.sort_by_cached_key(|t| Reverse(t.sources.iter().map(Source::size).sum::<usize>()));
        self.in_flight.push_back(results);
        self.queue.push(tasks);
        self.row_groups += 1;
        let overlap = usize::from(!self.helpers.is_empty());
        while self.in_flight.len() > overlap {
            self.append_oldest()?;
        }
        Ok(())
    }

    /// Starts the helper threads not started yet. A thread the system refuses leaves its
    /// share of the work to the others and the calling thread.
    fn start_helpers(&mut self) {
        while self.helpers.len() < self.helpers_wanted {
            let queue = Arc::clone(&self.queue);
            let started = std::thread::Builder::new()
                .name("vigil-encode".into())
                .spawn(move || {
                    while let Some(task) = queue.next() {
                        task.run()
                    }
                });
            match started {
                Ok(helper) => self.helpers.push(helper),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start an encoder thread; encoding on fewer");
                    self.helpers_wanted = self.helpers.len();
                }
            }
        }
    }

    /// Waits for the oldest row group in flight, encoding queued columns meanwhile, and
    /// appends its chunks in column order.
    fn append_oldest(&mut self) -> Result<(), ParquetError> {
        let Some(results) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let mut chunks: Vec<Option<Vec<ArrowColumnChunk>>> =
            (0..self.fields.len()).map(|_| None).collect();
        for _ in 0..self.fields.len() {
            let (column, encoded) = loop {
                match results.try_recv() {
                    Ok(r) => break r,
                    Err(mpsc::TryRecvError::Empty) => match self.queue.try_next() {
                        Some(task) => task.run(),
                        None => {
                            break results.recv().map_err(|_| {
                                ParquetError::General("an encoder panicked".into())
                            })?;
                        }
                    },
                    Err(mpsc::TryRecvError::Disconnected) => {
                        return Err(ParquetError::General("an encoder panicked".into()));
                    }
                }
            };
            chunks[column] = Some(encoded?);
        }
        let mut row_group = self.writer.next_row_group()?;
        for chunk in chunks.into_iter().flatten().flatten() {
            chunk.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
        Ok(())
    }

    /// The bytes appended since the last call, to upload while the next row groups encode.
    pub fn take_written(&mut self) -> Vec<u8> {
        // The writer counts its offsets itself: taking what it wrote does not move them.
        std::mem::take(self.writer.inner_mut())
    }

    /// The file's last bytes (its row groups still in flight among them) and its footer.
    pub fn finish(mut self) -> Result<(Vec<u8>, ParquetMetaData), ParquetError> {
        while !self.in_flight.is_empty() {
            self.append_oldest()?;
        }
        let metadata = self.writer.finish()?;
        Ok((self.take_written(), metadata))
    }
}

impl Drop for ParquetFile {
    fn drop(&mut self) {
        self.queue.close();
        for helper in self.helpers.drain(..) {
            // A helper that panicked has already failed its row group.
            let _ = helper.join();
        }
    }
}

/// A column of a row group, encoded: its index among the file's columns and its chunks.
type Encoded = (usize, Result<Vec<ArrowColumnChunk>, ParquetError>);

/// A row group's columns, as their tasks finish.
type Results = mpsc::Receiver<Encoded>;

/// A run of a row group's rows: a batch's rows as they are, or rows gathered from the
/// buffered batches by (batch, row).
pub(crate) enum RowRun {
    Batch(RecordBatch),
    Gather {
        from: Arc<Buffered>,
        rows: Arc<[(usize, usize)]>,
    },
}

impl RowRun {
    fn len(&self) -> usize {
        match self {
            Self::Batch(b) => b.num_rows(),
            Self::Gather { rows, .. } => rows.len(),
        }
    }

    /// The run's values of the table's column `c`.
    fn column(&self, c: usize) -> Source {
        match self {
            Self::Batch(b) => Source::Array(Arc::clone(b.column(c))),
            Self::Gather { from, rows } => Source::Gather {
                arrays: Arc::clone(&from.columns[c]),
                rows: Arc::clone(rows),
                size: from.row_bytes[c] * rows.len(),
            },
        }
    }
}

/// The buffered batches, a column at a time: what every gathered run of a commit gathers
/// from (made once, shared by the runs and their columns' tasks).
pub(crate) struct Buffered {
    columns: Vec<Arc<[ArrayRef]>>,
    /// About the bytes a row takes in each column.
    row_bytes: Vec<usize>,
}

impl Buffered {
    pub fn new(batches: &[RecordBatch]) -> Self {
        let width = batches.first().map_or(0, RecordBatch::num_columns);
        let rows = batches
            .iter()
            .map(RecordBatch::num_rows)
            .sum::<usize>()
            .max(1);
        let columns: Vec<Arc<[ArrayRef]>> = (0..width)
            .map(|c| batches.iter().map(|b| Arc::clone(b.column(c))).collect())
            .collect();
        let row_bytes = columns
            .iter()
            .map(|arrays| {
                arrays
                    .iter()
                    .map(|a| a.get_array_memory_size())
                    .sum::<usize>()
                    / rows
            })
            .collect();
        Self { columns, row_bytes }
    }
}

/// A run's values of one column, gathered when the column is encoded.
enum Source {
    Array(ArrayRef),
    Gather {
        arrays: Arc<[ArrayRef]>,
        rows: Arc<[(usize, usize)]>,
        size: usize,
    },
}

impl Source {
    /// About the bytes the values take (what orders a row group's tasks).
    fn size(&self) -> usize {
        match self {
            Self::Array(a) => a.get_array_memory_size(),
            Self::Gather { size, .. } => *size,
        }
    }

    fn array(self) -> Result<ArrayRef, ParquetError> {
        match self {
            Self::Array(a) => Ok(a),
            Self::Gather { arrays, rows, .. } => {
                let arrays: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
                Ok(interleave(&arrays, &rows)?)
            }
        }
    }
}

/// One file column of a row group: its values, the writers of its leaves, and where its
/// chunks go.
struct Task {
    column: usize,
    field: FieldRef,
    sources: Vec<Source>,
    writers: Vec<ArrowColumnWriter>,
    done: mpsc::Sender<Encoded>,
}

impl Task {
    fn run(self) {
        let Self {
            column,
            field,
            sources,
            mut writers,
            done,
        } = self;
        let encoded = (|| {
            for source in sources {
                let array = source.array()?;
                let leaves = compute_leaves(&field, &array)?;
                for (writer, leaf) in writers.iter_mut().zip(&leaves) {
                    writer.write(leaf)?;
                }
            }
            writers.into_iter().map(ArrowColumnWriter::close).collect()
        })();
        // The file stopped waiting (it failed or was dropped): nothing to report to.
        let _ = done.send((column, encoded));
    }
}

/// The column tasks of a file's row groups, in the order they were queued.
#[derive(Default)]
struct Queue {
    tasks: Mutex<(VecDeque<Task>, bool)>,
    ready: Condvar,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, (VecDeque<Task>, bool)> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, tasks: Vec<Task>) {
        self.lock().0.extend(tasks);
        self.ready.notify_all();
    }

    fn try_next(&self) -> Option<Task> {
        self.lock().0.pop_front()
    }

    /// The next task, waiting for one; `None` once the queue is closed.
    fn next(&self) -> Option<Task> {
        let mut q = self.lock();
        loop {
            if q.1 {
                return None;
            }
            if let Some(task) = q.0.pop_front() {
                return Some(task);
            }
            q = self.ready.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Drops the queued tasks and lets the helpers go.
    fn close(&self) {
        let mut q = self.lock();
        q.0.clear();
        q.1 = true;
        drop(q);
        self.ready.notify_all();
    }
}

/// Which columns get statistics in the `add` action: the table's
/// `delta.dataSkippingStatsColumns`, or its first `delta.dataSkippingNumIndexedCols` (32 by
/// default, -1 for all), partition columns not counted — as delta-rs decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StatsColumns {
    Named(Vec<String>),
    First(Option<usize>),
}

impl StatsColumns {
    /// From a table's configuration.
    pub fn from_configuration(config: &HashMap<String, String>) -> Self {
        if let Some(names) = config.get("delta.dataSkippingStatsColumns") {
            return Self::Named(names.split(',').map(|n| n.trim().to_string()).collect());
        }
        match config
            .get("delta.dataSkippingNumIndexedCols")
            .and_then(|n| n.trim().parse::<i64>().ok())
        {
            Some(n) if n < 0 => Self::First(None),
            Some(n) => Self::First(Some(n as usize)),
            None => Self::First(Some(32)),
        }
    }
}

/// The `add` action for a file of `partition` (column, `YYYY-MM-DD`) at `path` (relative to
/// the table root), `size` bytes, with `metadata` its footer.
pub(crate) fn add_action(
    partition: (&str, String),
    path: String,
    size: usize,
    metadata: &ParquetMetaData,
    stats_columns: &StatsColumns,
) -> Result<Add, serde_json::Error> {
    let stats = file_stats(metadata, stats_columns);
    let modification_time = chrono::Utc::now().timestamp_millis();
    Ok(Add {
        path,
        size: size as i64,
        partition_values: HashMap::from([(partition.0.to_string(), Some(partition.1))]),
        modification_time,
        data_change: true,
        stats: Some(serde_json::to_string(&stats)?),
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
        clustering_provider: None,
    })
}

/// A statistic's value, ordered within its type. Decimals (no vigil table has one) are left
/// without a minimum and maximum, where delta-rs would write them.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Value {
    Boolean(bool),
    Int32(i32),
    Int64(i64),
    Float32(f32),
    Float64(f64),
    Date(i32),
    /// UTC (`true`) or local.
    Timestamp(chrono::NaiveDateTime, bool),
    String(String),
}

impl Value {
    fn from_stats(stats: &Statistics, logical: Option<&LogicalType>, min: bool) -> Option<Self> {
        macro_rules! pick {
            ($v:expr) => {
                if min { $v.min_opt() } else { $v.max_opt() }
            };
        }
        Some(match (stats, logical) {
            (Statistics::Boolean(v), _) => Self::Boolean(*pick!(v)?),
            (Statistics::Int32(v), Some(LogicalType::Date)) => Self::Date(*pick!(v)?),
            (Statistics::Int32(_), Some(LogicalType::Decimal { .. })) => return None,
            (Statistics::Int32(v), _) => Self::Int32(*pick!(v)?),
            (
                Statistics::Int64(v),
                Some(LogicalType::Timestamp(TimestampType {
                    unit,
                    is_adjusted_to_u_t_c,
                })),
            ) => {
                let v = *pick!(v)?;
                let t = match unit {
                    TimeUnit::MILLIS => chrono::DateTime::from_timestamp_millis(v),
                    TimeUnit::MICROS => chrono::DateTime::from_timestamp_micros(v),
                    TimeUnit::NANOS => Some(chrono::DateTime::from_timestamp_nanos(v)),
                }?;
                Self::Timestamp(t.naive_utc(), *is_adjusted_to_u_t_c)
            }
            (Statistics::Int64(_), Some(LogicalType::Decimal { .. })) => return None,
            (Statistics::Int64(v), _) => Self::Int64(*pick!(v)?),
            (Statistics::Float(v), _) => Self::Float32(*pick!(v)?),
            (Statistics::Double(v), _) => Self::Float64(*pick!(v)?),
            (Statistics::ByteArray(v), Some(LogicalType::String)) => {
                let bytes = if min {
                    v.min_bytes_opt()
                } else {
                    v.max_bytes_opt()
                }?;
                Self::String(String::from_utf8(bytes.to_vec()).ok()?)
            }
            _ => return None,
        })
    }

    /// As delta-rs writes it: dates as `YYYY-MM-DD`, timestamps truncated to the millisecond
    /// with the fraction left out when it is zero.
    fn into_json(self) -> serde_json::Value {
        match self {
            Self::Boolean(v) => v.into(),
            Self::Int32(v) => v.into(),
            Self::Int64(v) => v.into(),
            Self::Float32(v) => v.into(),
            Self::Float64(v) => v.into(),
            Self::Date(days) => (chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")
                + chrono::Duration::days(days.into()))
            .format("%Y-%m-%d")
            .to_string()
            .into(),
            Self::Timestamp(t, utc) => {
                let format = match (utc, t.nanosecond() == 0) {
                    (true, true) => "%Y-%m-%dT%H:%M:%SZ",
                    (true, false) => "%Y-%m-%dT%H:%M:%S%.3fZ",
                    (false, true) => "%Y-%m-%d %H:%M:%S",
                    (false, false) => "%Y-%m-%d %H:%M:%S%.3f",
                };
                t.format(format).to_string().into()
            }
            Self::String(s) => s.into(),
        }
    }
}

/// Minimum, maximum and null count of a column over the file's row groups.
fn file_stats(metadata: &ParquetMetaData, which: &StatsColumns) -> Stats {
    let schema = metadata.file_metadata().schema_descr();
    let top_level = |i: usize| schema.column(i).path().parts()[0].clone();
    let indexed: Vec<usize> = match which {
        StatsColumns::Named(names) => (0..schema.num_columns())
            .filter(|&i| names.iter().any(|n| *n == schema.column(i).path().string()))
            .collect(),
        StatsColumns::First(limit) => {
            let mut tops: Vec<String> = Vec::new();
            let mut idx = Vec::new();
            for i in 0..schema.num_columns() {
                let top = top_level(i);
                if !tops.contains(&top) {
                    if limit.is_some_and(|l| tops.len() >= l) {
                        break;
                    }
                    tops.push(top);
                }
                idx.push(i);
            }
            idx
        }
    };
    let mut stats = Stats {
        num_records: metadata.file_metadata().num_rows(),
        ..Stats::default()
    };
    for i in indexed {
        let column = schema.column(i);
        // Nested columns (none in vigil's tables) are left without statistics.
        if column.path().parts().len() != 1 || column.max_rep_level() > 0 {
            continue;
        }
        let logical = column
            .logical_type_ref()
            .cloned()
            .or(match column.converted_type() {
                parquet::basic::ConvertedType::UTF8 => Some(LogicalType::String),
                parquet::basic::ConvertedType::DATE => Some(LogicalType::Date),
                _ => None,
            });
        // Binary columns get no statistics at all.
        if column.physical_type() == PhysicalType::BYTE_ARRAY
            && logical != Some(LogicalType::String)
        {
            continue;
        }
        let mut seen = false;
        let (mut min, mut max, mut nulls): (Option<Value>, Option<Value>, u64) = (None, None, 0);
        for rg in metadata.row_groups() {
            let Some(s) = rg.column(i).statistics() else {
                continue;
            };
            seen = true;
            nulls += s.null_count_opt().unwrap_or_default();
            if s.min_bytes_opt().is_none() || s.max_bytes_opt().is_none() {
                continue;
            }
            if let Some(v) = Value::from_stats(s, logical.as_ref(), true) {
                min = Some(match min {
                    Some(m) if m < v => m,
                    _ => v,
                });
            }
            if let Some(v) = Value::from_stats(s, logical.as_ref(), false) {
                max = Some(match max {
                    Some(m) if m > v => m,
                    _ => v,
                });
            }
        }
        if !seen {
            continue;
        }
        let name = column.name().to_string();
        if let Some(v) = min {
            stats
                .min_values
                .insert(name.clone(), ColumnValueStat::Value(v.into_json()));
        }
        if let Some(v) = max {
            stats
                .max_values
                .insert(name.clone(), ColumnValueStat::Value(v.into_json()));
        }
        stats
            .null_count
            .insert(name, ColumnCountStat::Value(nulls as i64));
    }
    stats
}
