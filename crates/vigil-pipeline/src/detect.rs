//! Detection inside a running pipeline: decoded batches feed the rules' windows, the
//! watermark closes them, and the anomaly events go to the anomaly topic (key = fingerprint)
//! and/or an NDJSON file.

use std::io::Write;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;
use tokio::runtime::Handle;
use vigil_config::Pipeline;
use vigil_core::schema::RecordKind;
use vigil_detect::{AnomalyEvent, WindowedRules};

use crate::error::PipelineError;

/// The rules of a pipeline and where their events go: the one detection path for live runs
/// (Kafka, files, generator) and `vigil backtest`.
pub struct Detection {
    engine: WindowedRules,
    lateness: i64,
    longest_window: i64,
    /// Latest event time per source (a Kafka partition), and when it last moved.
    sources: std::collections::HashMap<String, (i64, std::time::Instant)>,
    latest: i64,
    topic: Option<(vigil_kafka::Producer, String)>,
    file: Option<std::io::BufWriter<std::fs::File>>,
    events: u64,
}

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
        let engine = WindowedRules::new(&pipeline.rules)
            .map_err(|e| PipelineError::Detect(e.to_string()))?;
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
        }))
    }

    /// Files a decoded batch from `source` (e.g. `topic:partition`) into the rules' windows.
    pub fn push(&mut self, kind: RecordKind, source: &str, batch: &RecordBatch) {
        if let Ok(i) = batch.schema().index_of("timestamp")
            && let Some(t) =
                arrow::compute::max(batch.column(i).as_primitive::<TimestampMicrosecondType>())
        {
            self.latest = self.latest.max(t);
            let e = self
                .sources
                .entry(source.to_string())
                .or_insert((i64::MIN, std::time::Instant::now()));
            if t > e.0 {
                *e = (t, std::time::Instant::now());
            }
        }
        self.engine.push(kind, batch);
    }

    /// `source` has no more rows: it stops holding the watermark back.
    pub fn end_source(&mut self, source: &str) {
        self.sources.remove(source);
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
        self.close_until(slowest.saturating_sub(self.lateness))
            .await
    }

    /// At the end of input: closes every window that holds a row, then waits for the events
    /// to be delivered.
    pub fn finish(&mut self, rt: &Handle) -> Result<(), PipelineError> {
        rt.block_on(self.finish_async())
    }

    /// [`finish`](Self::finish), from async code.
    pub async fn finish_async(&mut self) -> Result<(), PipelineError> {
        if self.latest != i64::MIN {
            self.close_until(self.latest.saturating_add(self.longest_window))
                .await?;
        }
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

    /// Anomaly events published so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    async fn close_until(&mut self, watermark: i64) -> Result<(), PipelineError> {
        let events = self
            .engine
            .advance(watermark)
            .await
            .map_err(|e| PipelineError::Detect(e.to_string()))?;
        for e in events {
            self.publish(&e)?;
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
