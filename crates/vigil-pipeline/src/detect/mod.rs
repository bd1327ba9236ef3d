//! Detection inside a running pipeline, one per pipeline: decoded batches of every source feed
//! the rules' windows, the watermark closes them, and the anomaly events go to the anomaly
//! topic (key = fingerprint), the archive's `anomalies` table and/or an NDJSON file.
//!
//! The watermark is the least advanced stream's latest event time minus the allowed lateness:
//! a partition that is behind (or a topic fetched in bigger bites) holds windows open rather
//! than seeing its rows declared late. A stream silent for [`IDLE`] stops holding them back.
//! See [`persist`] for what survives a restart.

mod alertmanager;
mod events;
mod persist;

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{SchemaRef, TimestampMicrosecondType};
use vigil_core::schema::RecordKind;
use vigil_core::time::{format_rfc3339, micros};
use vigil_detect::correlate::WindowEvidence;
use vigil_detect::{AnomalyEvent, Correlator, WindowedRules};
use vigil_store::Archive;

use crate::config::Pipeline;
use crate::error::PipelineError;
use alertmanager::Alertmanager;
use persist::{Persist, Saved, replay};

/// A stream that has not moved for this long stops holding the watermark back.
pub const IDLE: Duration = Duration::from_secs(10);

/// The stream replayed rows are pushed as: it stops holding the watermark once replayed.
const REPLAY_STREAM: &str = "archive replay";

/// The rules of a pipeline and where their events go: the one detection path for live runs
/// (Kafka, files, generator) and `vigil backtest`.
pub struct Detection {
    engine: WindowedRules,
    correlator: Option<Correlator>,
    lateness: i64,
    longest_window: i64,
    /// Latest event time per stream (a Kafka partition, a file source), and when it last moved.
    streams: HashMap<String, (i64, Instant)>,
    latest: i64,
    /// A stream ended with its input complete ([`end_source`](Self::end_source)).
    ended: bool,
    topic: Option<(vigil_kafka::Producer, String)>,
    file: Option<std::io::BufWriter<std::fs::File>>,
    alertmanager: Option<Alertmanager>,
    /// The latest event of every series firing now, by fingerprint: checkpointed, so a
    /// restarted pipeline keeps Alertmanager's alerts alive.
    firing: std::collections::BTreeMap<String, AnomalyEvent>,
    events: u64,
    archive: Option<Persist>,
}

impl Detection {
    /// `None` when the pipeline has no rules. The anomaly topic, if any, is published through
    /// the brokers of the pipeline's first Kafka source.
    pub fn new(pipeline: &Pipeline) -> Result<Option<Self>, PipelineError> {
        if pipeline.rules.is_empty() {
            return Ok(None);
        }
        let engine = WindowedRules::new(&pipeline.rules).with_series_limits(pipeline.detect.series);
        let causes = pipeline
            .rules
            .iter()
            .filter(|r| r.cause)
            .map(|r| r.name.clone());
        let correlator = pipeline
            .detect
            .correlation
            .as_ref()
            .map(|c| Correlator::new(c).with_causes(causes));
        let topic = match (&pipeline.detect.anomaly_topic, pipeline.first_kafka()) {
            (Some(t), Some(k)) => Some((
                vigil_kafka::Producer::new(
                    &k.consumer.brokers,
                    &vigil_kafka::connection_properties(&k.consumer.properties),
                )
                .map_err(PipelineError::kafka)?,
                t.clone(),
            )),
            _ => None,
        };
        let file = match &pipeline.detect.anomalies_file {
            Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(p).map_err(
                |source| PipelineError::Output {
                    path: p.clone(),
                    source,
                },
            )?)),
            None => None,
        };
        let alertmanager = match pipeline.detect.alertmanagers.as_slice() {
            [] => None,
            urls => Some(
                Alertmanager::start(urls.to_vec(), pipeline.detect.alertmanager_resend).map_err(
                    |e| PipelineError::Panicked(format!("cannot start the Alertmanager sink: {e}")),
                )?,
            ),
        };
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
            streams: HashMap::new(),
            latest: i64::MIN,
            ended: false,
            topic,
            file,
            alertmanager,
            firing: Default::default(),
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
        let persist = Persist::open(archive, self.correlator.is_some(), checkpoint).await?;
        if let Some(saved) = persist.load().await? {
            self.engine.restore(&saved.rules);
            if let (Some(c), Some(state)) = (&mut self.correlator, saved.incidents) {
                c.restore(state);
            }
            // Alertmanager forgets an alert four resends after its last post.
            if let Some(am) = &self.alertmanager {
                am.send(&saved.firing);
            }
            self.firing = saved
                .firing
                .into_iter()
                .map(|e| (e.fingerprint.clone(), e))
                .collect();
            if let Some(since) = self.engine.open_since() {
                let rows = replay(archive, since, tables, |kind, batch| {
                    self.push(kind, REPLAY_STREAM, batch)
                })
                .await?;
                self.forget_source(REPLAY_STREAM);
                tracing::info!(rows, since = %format_rfc3339(since), "replayed the open windows from the archive");
            }
        }
        self.archive = Some(persist);
        Ok(())
    }

    /// Files a decoded batch from `stream` (e.g. `topic:partition`) into the rules' windows.
    pub fn push(&mut self, kind: RecordKind, stream: &str, batch: &RecordBatch) {
        if let Ok(i) = batch.schema().index_of("timestamp")
            && let Some(t) =
                arrow::compute::max(batch.column(i).as_primitive::<TimestampMicrosecondType>())
        {
            self.latest = self.latest.max(t);
            let now = Instant::now();
            match self.streams.get_mut(stream) {
                Some(e) if t > e.0 => *e = (t, now),
                Some(_) => {}
                None => {
                    self.streams.insert(stream.to_string(), (t, now));
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

    /// `stream` has no more rows (its input is complete): it stops holding the watermark
    /// back, and once every stream has ended, windows close up to the latest row less the
    /// allowed lateness.
    pub fn end_source(&mut self, stream: &str) {
        if self.streams.remove(stream).is_some() {
            self.ended = true;
        }
    }

    /// `stream` sends nothing more here (a partition revoked, a source stopped), though its
    /// input goes on elsewhere or later: it stops holding the watermark back, but does not
    /// count as complete.
    pub fn forget_source(&mut self, stream: &str) {
        self.streams.remove(stream);
    }

    /// `stream` (e.g. a Kafka partition just assigned) will deliver rows: until it does, or
    /// stays silent for [`IDLE`], it holds the watermark back, so a stream read first does not
    /// close windows that another's rows still fall in.
    pub fn expect_source(&mut self, stream: &str) {
        self.streams
            .entry(stream.to_string())
            .or_insert((i64::MIN, Instant::now()));
    }

    /// Closes the windows the watermark has passed and publishes their events.
    pub async fn advance(&mut self) -> Result<(), PipelineError> {
        let live = self
            .streams
            .values()
            .filter(|(_, moved)| moved.elapsed() < IDLE)
            .map(|(t, _)| *t)
            .min();
        let slowest = match live {
            Some(t) => t,
            // Every stream ended with its input complete: nothing holds the watermark back.
            None if self.streams.is_empty() && self.ended && self.latest != i64::MIN => self.latest,
            None => return Ok(()),
        };
        let watermark = slowest.saturating_sub(self.lateness);
        let result = self.close_until(watermark, watermark).await;
        self.record_metrics(Some(watermark));
        result
    }

    /// Sets detection's gauges and totals in the process's metrics.
    fn record_metrics(&self, watermark: Option<i64>) {
        let m = vigil_core::metrics::metrics();
        let late = self.engine.late_rows() + self.correlator.as_ref().map_or(0, Correlator::late);
        m.late_records.set_total(&[], late);
        if let Some(c) = &self.correlator {
            m.open_traces.set(&[], c.open_traces() as f64);
        }
        if let Some(w) = watermark {
            let lag = vigil_core::time::now_micros().saturating_sub(w);
            m.watermark_lag.set(&[], lag as f64 / 1e6);
        }
    }

    /// At the end of input: closes every window that holds a row, then waits for the events
    /// to be delivered.
    pub async fn finish(&mut self) -> Result<(), PipelineError> {
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
        if let Some(am) = &self.alertmanager {
            am.flush(Duration::from_secs(15));
        }
        if let Some((p, _)) = &mut self.topic {
            p.flush(Duration::from_secs(60))
                .map_err(PipelineError::kafka)?;
        }
        if let Some(f) = &mut self.file {
            f.flush().map_err(|source| PipelineError::Output {
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
            spans_dropped = self.correlator.as_ref().map(Correlator::dropped_spans),
            series_forgotten = self.engine.evicted_series(),
            "detection finished"
        );
        self.record_metrics(None);
        Ok(())
    }

    /// The latest event time pushed from `stream`, if any.
    pub fn latest_of(&self, stream: &str) -> Option<i64> {
        self.streams.get(stream).map(|(t, _)| *t)
    }

    /// Rows that arrived after their window had closed.
    pub fn late_rows(&self) -> u64 {
        self.engine.late_rows()
    }

    /// What detection's state caps dropped so far: rule series forgotten (silent past
    /// `detect.series_ttl`, or beyond `detect.max_series`) and spans past a trace's cap.
    pub fn forgotten(&self) -> (u64, u64) {
        (
            self.engine.evicted_series(),
            self.correlator
                .as_ref()
                .map_or(0, Correlator::dropped_spans),
        )
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
        let closed_before = self.engine.closed_through();
        let windows: Vec<WindowEvidence> = match &mut self.correlator {
            Some(c) => c.advance(traces_until).await?,
            None => Vec::new(),
        };
        let mut events = self.engine.advance(watermark).await?;
        if let Some(c) = self.correlator.as_mut() {
            let closed = self.engine.closed_through();
            if let Some(now) = closed.filter(|_| closed != closed_before) {
                c.set_pending(self.engine.pending(), now);
            }
            c.annotate(&mut events);
        }
        for e in &events {
            self.publish(e)?;
        }
        if let Some(am) = &self.alertmanager {
            am.send(&events);
        }
        let Some(p) = &mut self.archive else {
            return Ok(());
        };
        p.write(&events, &windows).await?;
        // Rule state and clocks change only when a window closes.
        if p.keeps_checkpoint() && self.engine.closed_through() != closed_before {
            let saved = Saved {
                rules: self.engine.checkpoint(),
                incidents: self.correlator.as_ref().map(|c| c.checkpoint().clone()),
                firing: self.firing.values().cloned().collect(),
            };
            p.save(&saved).await?;
        }
        Ok(())
    }

    fn publish(&mut self, e: &AnomalyEvent) -> Result<(), PipelineError> {
        let json = serde_json::to_vec(e).expect("an event serialises");
        tracing::info!(rule = %e.rule, service = %e.service, status = %e.status, "anomaly");
        self.events += 1;
        vigil_core::metrics::metrics()
            .anomalies
            .inc(&[e.severity.name(), &e.status.to_string()]);
        match e.status {
            vigil_detect::Status::Firing => {
                self.firing.insert(e.fingerprint.clone(), e.clone());
            }
            vigil_detect::Status::Resolved => {
                self.firing.remove(&e.fingerprint);
            }
        }
        if let Some((p, topic)) = &mut self.topic {
            p.send(topic, Some(e.fingerprint.as_bytes()), &json)
                .map_err(PipelineError::kafka)?;
        }
        if let Some(f) = &mut self.file {
            f.write_all(&json)
                .and_then(|()| f.write_all(b"\n"))
                .map_err(|source| PipelineError::Output {
                    path: "anomalies".into(),
                    source,
                })?;
        }
        Ok(())
    }
}
