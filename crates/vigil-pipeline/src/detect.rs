//! Detection inside a running pipeline: decoded batches feed the rules' windows, the
//! watermark closes them, and the anomaly events go to the anomaly topic (key = fingerprint),
//! the archive's `anomalies` table and/or an NDJSON file.
//!
//! Restarts (Kafka pipelines): after every window close the rules' state and clocks are saved
//! as a side file of the `anomalies` table (`_vigil/detection/<name>.json`). A restarted
//! pipeline restores them, then replays from the archive the rows of the windows still open
//! at the checkpoint: with Kafka resuming from the archive's offsets, every row reaches its
//! window once, a firing episode does not fire again, and its resolution still comes.

use std::io::Write;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, Date32Array, Float64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{SchemaRef, TimestampMicrosecondType};
use tokio::runtime::Handle;
use vigil_config::Pipeline;
use vigil_core::schema::{RecordKind, anomaly_schema};
use vigil_core::time::parse_rfc3339_micros;
use vigil_detect::correlate::{IncidentState, WindowEvidence, edges_batch, origins_batch};
use vigil_detect::windows::Checkpoint;
use vigil_detect::{AnomalyEvent, Correlator, WindowedRules};
use vigil_store::{Archive, FlushPolicy, TableSpec, TableWriter};

use crate::error::PipelineError;

/// The rules of a pipeline and where their events go: the one detection path for live runs
/// (Kafka, files, generator) and `vigil backtest`.
pub struct Detection {
    engine: WindowedRules,
    correlator: Option<Correlator>,
    lateness: i64,
    longest_window: i64,
    /// Latest event time per source (a Kafka partition), and when it last moved.
    sources: std::collections::HashMap<String, (i64, std::time::Instant)>,
    latest: i64,
    topic: Option<(vigil_kafka::Producer, String)>,
    file: Option<std::io::BufWriter<std::fs::File>>,
    events: u64,
    archive: Option<Persist>,
}

/// The archive's part: the `anomalies` table, correlation's `service_edges` and
/// `error_origin`, and, for restartable sources, the checkpoint.
struct Persist {
    anomalies: TableWriter,
    /// `service_edges` and `error_origin`, when correlating.
    evidence: Option<(TableWriter, TableWriter)>,
    /// The checkpoint's side file.
    checkpoint: Option<String>,
}

/// What a checkpoint holds: the rules' state and clocks, and what correlation remembers.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Saved {
    #[serde(flatten)]
    rules: Checkpoint,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    incidents: Option<IncidentState>,
}

/// The source replayed rows are pushed as: it stops holding the watermark once replayed.
const REPLAY_SOURCE: &str = "archive replay";

impl Detection {
    /// `None` when the pipeline has no rules. `brokers` are the Kafka source's, used for the
    /// anomaly topic.
    pub fn new(
        pipeline: &Pipeline,
        brokers: Option<(&str, &std::collections::BTreeMap<String, String>)>,
    ) -> Result<Option<Self>, PipelineError> {
        if pipeline.rules.is_empty() {
            return Ok(None);
        }
        let engine = WindowedRules::new(&pipeline.rules);
        let correlator = pipeline.detect.correlation.as_ref().map(Correlator::new);
        let topic = match (&pipeline.detect.anomaly_topic, brokers) {
            (Some(t), Some((b, props))) => Some((
                vigil_kafka::Producer::new(b, &vigil_kafka::connection_properties(props))
                    .map_err(PipelineError::kafka)?,
                t.clone(),
            )),
            _ => None,
        };
        let file = match &pipeline.detect.anomalies_file {
            Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(p).map_err(
                |source| PipelineError::Input {
                    path: p.clone(),
                    source,
                },
            )?)),
            None => None,
        };
        let micros = |d: std::time::Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        Ok(Some(Self {
            engine,
            correlator,
            lateness: micros(pipeline.detect.allowed_lateness),
            longest_window: pipeline
                .rules
                .iter()
                .map(|r| micros(r.window))
                .max()
                .unwrap_or(0),
            sources: std::collections::HashMap::new(),
            latest: i64::MIN,
            topic,
            file,
            events: 0,
            archive: None,
        }))
    }

    /// Writes every event to the archive's `anomalies` table as well, committed as soon as
    /// it is published. With `checkpoint` (a name unique to the pipeline and consumer group),
    /// also saves the rules' state after each window close and restores the last one saved:
    /// then the rows of windows still open at that checkpoint are replayed from the archive
    /// (`tables`: each kind's decoded schema), so call this before consuming.
    pub async fn attach_archive(
        &mut self,
        archive: &Archive,
        checkpoint: Option<&str>,
        tables: &[(RecordKind, SchemaRef)],
    ) -> Result<(), PipelineError> {
        let policy = FlushPolicy {
            max_rows: usize::MAX,
            max_bytes: usize::MAX,
            interval: std::time::Duration::MAX,
        };
        let anomalies = TableWriter::open(archive, TableSpec::anomalies(), policy).await?;
        let evidence = match self.correlator {
            Some(_) => Some((
                TableWriter::open(archive, TableSpec::service_edges(), policy).await?,
                TableWriter::open(archive, TableSpec::error_origin(), policy).await?,
            )),
            None => None,
        };
        let mut persist = Persist {
            anomalies,
            evidence,
            checkpoint: None,
        };
        if let Some(name) = checkpoint {
            let path = format!("_vigil/detection/{}.json", sanitize(name));
            let saved = match persist.anomalies.read_side_file(&path).await? {
                Some(bytes) => serde_json::from_slice::<Saved>(&bytes).map_err(|e| {
                    PipelineError::Detect(format!("checkpoint {path} is unreadable: {e}"))
                })?,
                None => Saved::default(),
            };
            self.engine.restore(&saved.rules);
            if let (Some(c), Some(state)) = (&mut self.correlator, saved.incidents) {
                c.restore(state);
            }
            tracing::info!(checkpoint = %path, open_since = ?self.engine.open_since(), "detection state restored");
            persist.checkpoint = Some(path);
            if let Some(since) = self.engine.open_since() {
                self.replay(archive, since, tables).await?;
            }
        }
        self.archive = Some(persist);
        Ok(())
    }

    /// Pushes the archive's rows with event time at or after `since` into the windows.
    async fn replay(
        &mut self,
        archive: &Archive,
        since: i64,
        tables: &[(RecordKind, SchemaRef)],
    ) -> Result<(), PipelineError> {
        use datafusion::prelude::{col, lit};
        let engine = match vigil_query::Engine::open(archive).await {
            Ok(e) => e,
            Err(vigil_query::QueryError::NoArchive(_)) => return Ok(()),
            Err(e) => return Err(PipelineError::Detect(format!("replaying the archive: {e}"))),
        };
        let bad = |e: datafusion::error::DataFusionError| {
            PipelineError::Detect(format!("replaying the archive: {e}"))
        };
        let mut rows = 0;
        for (kind, schema) in tables {
            let from = lit(datafusion::scalar::ScalarValue::TimestampMicrosecond(
                Some(since),
                Some("UTC".into()),
            ));
            let df = engine
                .context()
                .table(kind.table())
                .await
                .map_err(bad)?
                .filter(col("timestamp").gt_eq(from))
                .map_err(bad)?;
            for batch in df.collect().await.map_err(bad)? {
                let batch = conform(&batch, schema).map_err(|e| {
                    PipelineError::Detect(format!("replaying `{}`: {e}", kind.table()))
                })?;
                rows += batch.num_rows();
                self.push(*kind, REPLAY_SOURCE, &batch);
            }
        }
        self.end_source(REPLAY_SOURCE);
        tracing::info!(rows, since = %vigil_core::time::format_rfc3339(since), "replayed the open windows from the archive");
        Ok(())
    }

    /// Files a decoded batch from `source` (e.g. `topic:partition`) into the rules' windows.
    pub fn push(&mut self, kind: RecordKind, source: &str, batch: &RecordBatch) {
        if let Ok(i) = batch.schema().index_of("timestamp")
            && let Some(t) =
                arrow::compute::max(batch.column(i).as_primitive::<TimestampMicrosecondType>())
        {
            self.latest = self.latest.max(t);
            let now = std::time::Instant::now();
            match self.sources.get_mut(source) {
                Some(e) if t > e.0 => *e = (t, now),
                Some(_) => {}
                None => {
                    self.sources.insert(source.to_string(), (t, now));
                }
            }
        }
        if kind == RecordKind::Logs
            && let Some(c) = &mut self.correlator
        {
            c.push(batch);
        }
        self.engine.push(kind, batch);
    }

    /// `source` has no more rows: it stops holding the watermark back.
    pub fn end_source(&mut self, source: &str) {
        self.sources.remove(source);
    }

    /// Every source stops holding the watermark back (a Kafka rebalance revoked them all).
    pub fn end_all_sources(&mut self) {
        self.sources.clear();
    }

    /// `source` (e.g. a Kafka partition just assigned) will deliver rows: until it does, or
    /// stays silent for the idle time, it holds the watermark back, so a source read first
    /// does not close windows that another's rows still fall in.
    pub fn expect_source(&mut self, source: &str) {
        self.sources
            .entry(source.to_string())
            .or_insert((i64::MIN, std::time::Instant::now()));
    }

    /// Closes the windows the watermark has passed and publishes their events. The watermark
    /// is the least advanced source's latest event time minus the allowed lateness: a
    /// partition that is behind (or a topic fetched in bigger bites) holds windows open
    /// rather than seeing its rows declared late. A source silent for `IDLE` stops holding
    /// them back.
    pub fn advance(&mut self, rt: &Handle) -> Result<(), PipelineError> {
        rt.block_on(self.advance_async())
    }

    /// [`advance`](Self::advance), from async code.
    pub async fn advance_async(&mut self) -> Result<(), PipelineError> {
        const IDLE: std::time::Duration = std::time::Duration::from_secs(10);
        let Some(slowest) = self
            .sources
            .values()
            .filter(|(_, moved)| moved.elapsed() < IDLE)
            .map(|(t, _)| *t)
            .min()
        else {
            return Ok(());
        };
        let watermark = slowest.saturating_sub(self.lateness);
        self.close_until(watermark, watermark).await
    }

    /// At the end of input: closes every window that holds a row, then waits for the events
    /// to be delivered.
    pub fn finish(&mut self, rt: &Handle) -> Result<(), PipelineError> {
        rt.block_on(self.finish_async())
    }

    /// [`finish`](Self::finish), from async code.
    pub async fn finish_async(&mut self) -> Result<(), PipelineError> {
        if self.latest != i64::MIN {
            // Every trace is complete: all of correlation's windows become final.
            self.close_until(self.latest.saturating_add(self.longest_window), i64::MAX)
                .await?;
        }
        self.deliver()
    }

    /// A stream stops but does not end (a Kafka pipeline shutting down): the events so far
    /// are delivered, and open windows stay open for the next run, which restores them from
    /// the checkpoint and the archive.
    pub fn stop(&mut self) -> Result<(), PipelineError> {
        self.deliver()
    }

    fn deliver(&mut self) -> Result<(), PipelineError> {
        if let Some((p, _)) = &mut self.topic {
            p.flush(std::time::Duration::from_secs(60))
                .map_err(PipelineError::kafka)?;
        }
        if let Some(f) = &mut self.file {
            f.flush().map_err(|source| PipelineError::Input {
                path: "anomalies".into(),
                source,
            })?;
        }
        tracing::info!(
            events = self.events,
            late_rows = self.engine.late_rows(),
            traces = self.correlator.as_ref().map(Correlator::traces),
            late_spans = self.correlator.as_ref().map(Correlator::late),
            traces_closed_early = self.correlator.as_ref().map(Correlator::forced_closes),
            "detection finished"
        );
        Ok(())
    }

    /// The latest event time pushed from `source`, if any.
    pub fn latest_of(&self, source: &str) -> Option<i64> {
        self.sources.get(source).map(|(t, _)| *t)
    }

    /// Rows that arrived after their window had closed.
    pub fn late_rows(&self) -> u64 {
        self.engine.late_rows()
    }

    /// The latest end of a window closed so far (event time, µs).
    pub fn closed_through(&self) -> Option<i64> {
        self.engine.closed_through()
    }

    /// Traces assembled so far, when correlating.
    pub fn traces(&self) -> Option<u64> {
        self.correlator.as_ref().map(Correlator::traces)
    }

    /// Anomaly events published so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Closes the rules' windows up to `watermark` and correlation's up to `traces_until`
    /// (evidence first, so events are filed with what the traces showed).
    async fn close_until(
        &mut self,
        watermark: i64,
        traces_until: i64,
    ) -> Result<(), PipelineError> {
        let detect = |e: vigil_detect::DetectError| PipelineError::Detect(e.to_string());
        let closed_before = self.engine.closed_through();
        let windows: Vec<WindowEvidence> = match &mut self.correlator {
            Some(c) => c.advance(traces_until).await.map_err(detect)?,
            None => Vec::new(),
        };
        let mut events = self.engine.advance(watermark).await.map_err(detect)?;
        if let Some(c) = &mut self.correlator {
            c.annotate(&mut events);
        }
        for e in &events {
            self.publish(e)?;
        }
        let Some(p) = &mut self.archive else {
            return Ok(());
        };
        if !events.is_empty() {
            p.anomalies.push(events_batch(&events));
            p.anomalies.commit(&[]).await?;
        }
        if let Some((edges, origins)) = &mut p.evidence
            && !windows.is_empty()
        {
            edges.push(edges_batch(&windows));
            edges.commit(&[]).await?;
            origins.push(origins_batch(&windows));
            origins.commit(&[]).await?;
        }
        // Rule state and clocks change only when a window closes.
        if let Some(path) = &p.checkpoint
            && self.engine.closed_through() != closed_before
        {
            let saved = Saved {
                rules: self.engine.checkpoint(),
                incidents: self.correlator.as_ref().map(|c| c.checkpoint().clone()),
            };
            let json = serde_json::to_vec(&saved).expect("a checkpoint serialises");
            p.anomalies.write_side_file(path, json).await?;
        }
        Ok(())
    }

    fn publish(&mut self, e: &AnomalyEvent) -> Result<(), PipelineError> {
        let json = serde_json::to_vec(e).expect("an event serialises");
        tracing::info!(rule = %e.rule, service = %e.service, status = %e.status, "anomaly");
        self.events += 1;
        if let Some((p, topic)) = &mut self.topic {
            p.send(topic, Some(e.fingerprint.as_bytes()), &json)
                .map_err(PipelineError::kafka)?;
        }
        if let Some(f) = &mut self.file {
            f.write_all(&json)
                .and_then(|()| f.write_all(b"\n"))
                .map_err(|source| PipelineError::Input {
                    path: "anomalies".into(),
                    source,
                })?;
        }
        Ok(())
    }
}

/// `name` as one path segment.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `batch` with `schema`'s columns, in its order and types (the archive may return strings
/// as views and puts partition columns last).
fn conform(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => arrow::compute::cast(c, f.data_type()),
            None => Ok(arrow::array::new_null_array(
                f.data_type(),
                batch.num_rows(),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
}

/// Rows of the `anomalies` table.
fn events_batch(events: &[AnomalyEvent]) -> RecordBatch {
    let text = |f: &dyn Fn(&AnomalyEvent) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(events.iter().map(f)))
    };
    let time = |s: &str| parse_rfc3339_micros(s.as_bytes()).expect("vigil writes RFC 3339");
    let json = |m: &std::collections::BTreeMap<String, String>| {
        serde_json::to_string(m).expect("a map of strings serialises")
    };
    let detected: Vec<i64> = events.iter().map(|e| time(&e.detected_at)).collect();
    let columns: Vec<ArrayRef> = vec![
        text(&|e| e.id.clone()),
        text(&|e| e.fingerprint.clone()),
        text(&|e| e.status.to_string()),
        text(&|e| e.rule.clone()),
        text(&|e| e.kind.clone()),
        text(&|e| e.severity_name().to_string()),
        text(&|e| e.service.clone()),
        Arc::new(Float64Array::from_iter(events.iter().map(|e| e.value))),
        Arc::new(Float64Array::from_iter(events.iter().map(|e| e.threshold))),
        text(&|e| e.window.clone()),
        text(&|e| e.for_.clone()),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(events.iter().map(|e| time(&e.starts_at)))
                .with_timezone("UTC"),
        ),
        Arc::new(
            TimestampMicrosecondArray::from_iter(
                events.iter().map(|e| e.ends_at.as_deref().map(time)),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(detected.iter().copied())
                .with_timezone("UTC"),
        ),
        text(&|e| json(&e.labels)),
        text(&|e| json(&e.annotations)),
        Arc::new(StringArray::from_iter(
            events
                .iter()
                .map(|e| e.incident.as_ref().map(|i| i.to_string())),
        )),
        Arc::new(Date32Array::from_iter_values(
            detected
                .iter()
                .map(|&t| t.div_euclid(86_400_000_000) as i32),
        )),
    ];
    RecordBatch::try_new(anomaly_schema(), columns).expect("columns match the anomalies schema")
}
