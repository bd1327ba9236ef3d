//! Detection inside a running pipeline, one per pipeline: decoded batches of every source feed
//! the rules' windows, the watermark closes them, and the anomaly events go to the anomaly
//! topic (key = fingerprint), the archive's `anomalies` table and/or an NDJSON file.
//!
//! The watermark is the least advanced stream's latest event time minus the allowed lateness:
//! a partition that is behind (or a topic fetched in bigger bites) holds windows open rather
//! than seeing its rows declared late. A stream silent for [`IDLE`] stops holding them back.
//! See [`persist`] for what survives a restart.

mod alertmanager;
mod clock;
mod events;
mod persist;
mod shuffle;

use std::io::Write;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use vigil_core::schema::{RecordKind, col};
use vigil_core::time::{format_rfc3339, micros};
use vigil_detect::correlate::WindowEvidence;
use vigil_detect::windows::Contribution;
use vigil_detect::{AnomalyEvent, Correlator, WindowedRules};
use vigil_store::Archive;

use crate::config::Pipeline;
use crate::error::PipelineError;
use alertmanager::Alertmanager;
use clock::Streams;
use persist::{Persist, Saved, replay};
use shuffle::{MergeState, Message, Stage1};

pub use clock::IDLE;

/// The stream replayed rows are pushed as: it stops holding the watermark once replayed.
const REPLAY_STREAM: &str = "archive replay";

/// The rules of a pipeline and where their events go: the one detection path for live runs
/// (Kafka, files, generator) and `vigil backtest`.
pub struct Detection {
    engine: WindowedRules,
    correlator: Option<Correlator>,
    /// The table traces are assembled from ([`Pipeline::traces_from`]).
    traces: RecordKind,
    lateness: i64,
    longest_window: i64,
    streams: Streams,
    topic: Option<(vigil_kafka::Producer, String)>,
    file: Option<std::io::BufWriter<std::fs::File>>,
    alertmanager: Option<Alertmanager>,
    /// The latest event of every series firing now, by fingerprint: checkpointed, so a
    /// restarted pipeline keeps Alertmanager's alerts alive.
    firing: std::collections::BTreeMap<String, AnomalyEvent>,
    events: u64,
    archive: Option<Persist>,
    /// Detection shared with other replicas (`[detect] distributed`).
    shuffle: Option<Shuffle>,
}

/// A distributed pipeline's detection: stage 1 always; while this replica owns the partials
/// partition, `engine`, `correlator` and `streams` are stage 2's.
struct Shuffle {
    stage1: Stage1,
    /// Stage 2's bookkeeping, while this replica merges.
    merge: Option<MergeState>,
    /// To start stage 2 afresh when ownership moves.
    pipeline: Pipeline,
    /// Each kind's table schema: what stage 2 plans the rules over.
    tables: Vec<(RecordKind, SchemaRef)>,
}

/// What the merge consumer (the partials topic's consumer-group member) saw.
#[derive(Debug)]
pub enum Shuffled {
    /// This replica now merges; `expected`: every source stream (`topic:partition`) whose
    /// watermark windows must wait for.
    Owner {
        /// The source streams.
        expected: Vec<String>,
    },
    /// This replica merges no more.
    NotOwner,
    /// Messages of the partials partition, in order: (offset, payload).
    Messages(Vec<(i64, Vec<u8>)>),
}

impl Detection {
    /// `None` when the pipeline has no rules. The anomaly topic, if any, is published through
    /// the brokers of the pipeline's first Kafka source.
    pub fn new(pipeline: &Pipeline) -> Result<Option<Self>, PipelineError> {
        if pipeline.rules.is_empty() {
            return Ok(None);
        }
        let engine = fresh_engine(pipeline);
        let correlator = fresh_correlator(pipeline);
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
        let shuffle = match &pipeline.detect.partials_topic {
            Some(topic) => Some(Shuffle {
                stage1: Stage1::new(pipeline, topic)?,
                merge: None,
                pipeline: pipeline.clone(),
                tables: Vec::new(),
            }),
            None => None,
        };
        Ok(Some(Self {
            shuffle,
            engine,
            correlator,
            traces: pipeline.traces_from(),
            lateness: micros(pipeline.detect.allowed_lateness),
            longest_window: pipeline
                .rules
                .iter()
                .map(|r| micros(r.window))
                .max()
                .unwrap_or(0),
            streams: Streams::new(),
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
        if let Some(shuffle) = &mut self.shuffle {
            // Stage 2's state is loaded when this replica starts merging.
            shuffle.tables = tables.to_vec();
            self.archive = Some(persist);
            return Ok(());
        }
        if let Some(saved) = persist.load().await? {
            self.restore(saved);
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

    /// Puts back what a checkpoint holds of the rules, incidents and firing alerts, and
    /// returns stage 2's bookkeeping if it has any. The firing alerts are posted again:
    /// Alertmanager forgets an alert four resends after its last post.
    fn restore(&mut self, saved: Saved) -> Option<MergeState> {
        self.engine.restore(&saved.rules);
        if let (Some(c), Some(state)) = (&mut self.correlator, saved.incidents) {
            c.restore(state);
        }
        if let Some(am) = &self.alertmanager {
            am.send(&saved.firing);
        }
        self.firing = saved
            .firing
            .into_iter()
            .map(|e| (e.fingerprint.clone(), e))
            .collect();
        saved.merge
    }

    /// A source batch's decoded rows (of `kind`, from `stream`, moving its position between
    /// `offsets`): into the rules' windows, or, when distributed, folded and handed on.
    pub async fn accept(
        &mut self,
        kind: RecordKind,
        stream: &str,
        rows: &[RecordBatch],
        offsets: Option<(Option<i64>, i64)>,
    ) -> Result<(), PipelineError> {
        match &mut self.shuffle {
            Some(s) => s.stage1.hand_on(kind, stream, rows, offsets).await,
            None => {
                for b in rows {
                    self.push(kind, stream, b);
                }
                Ok(())
            }
        }
    }

    /// Assembles traces from `kind`'s batches instead (a backtest given spans).
    pub fn assemble_traces_from(&mut self, kind: RecordKind) {
        self.traces = kind;
    }

    /// Files a decoded batch from `stream` (e.g. `topic:partition`) into the rules' windows.
    pub fn push(&mut self, kind: RecordKind, stream: &str, batch: &RecordBatch) {
        if kind == self.traces
            && let Some(c) = &mut self.correlator
        {
            c.push(batch);
        }
        if let Some((_, latest)) = self.engine.push(kind, batch) {
            self.streams.note(stream, latest);
        }
    }

    /// `stream` has no more rows (its input is complete): it stops holding the watermark
    /// back, and once every stream has ended, windows close up to the latest row less the
    /// allowed lateness.
    pub fn end_source(&mut self, stream: &str) {
        match &mut self.shuffle {
            Some(s) => s.stage1.forget(stream, true),
            None => self.streams.end(stream, true),
        }
    }

    /// `stream` sends nothing more here (a partition revoked, a source stopped), though its
    /// input goes on elsewhere or later: it stops holding the watermark back, but does not
    /// count as complete.
    pub fn forget_source(&mut self, stream: &str) {
        match &mut self.shuffle {
            Some(s) => s.stage1.forget(stream, false),
            None => self.streams.end(stream, false),
        }
    }

    /// `stream` (e.g. a Kafka partition just assigned) will deliver rows: until it does, or
    /// stays silent for [`IDLE`], it holds the watermark back, so a stream read first does not
    /// close windows that another's rows still fall in.
    pub fn expect_source(&mut self, stream: &str) {
        match &mut self.shuffle {
            Some(s) => s.stage1.expect(stream),
            None => self.streams.expect(stream),
        }
    }

    /// Sends every partial this replica has not sent yet (a distributed pipeline's stage 1):
    /// before its sources stop, so what the archive commits is all handed on.
    pub async fn send_pending(&mut self) -> Result<(), PipelineError> {
        match &mut self.shuffle {
            Some(s) => s.stage1.send_due(true).await,
            None => Ok(()),
        }
    }

    /// Whether replicas share detection (`[detect] distributed`).
    pub fn distributed(&self) -> bool {
        self.shuffle.is_some()
    }

    /// Handles what the merge consumer saw. Returns the partials offset this replica's
    /// checkpoint now holds, when it saved one (for the consumer group's lag tooling).
    pub async fn shuffled(&mut self, s: Shuffled) -> Result<Option<i64>, PipelineError> {
        let Some(shuffle) = &mut self.shuffle else {
            return Ok(None);
        };
        let m = vigil_core::metrics::metrics();
        match s {
            Shuffled::Owner { expected } => {
                self.take_over(&expected).await?;
                m.merging.set(&[], 1.0);
                Ok(None)
            }
            Shuffled::NotOwner => {
                if shuffle.merge.take().is_some() {
                    self.engine = fresh_engine(&shuffle.pipeline);
                    self.correlator = fresh_correlator(&shuffle.pipeline);
                    self.streams = Streams::new();
                    self.firing.clear();
                    tracing::info!("no longer merging the partials");
                }
                m.merging.set(&[], 0.0);
                // Detection's gauges belong to the merging replica now.
                m.watermark_lag.retain(|_| false);
                m.closed_through.retain(|_| false);
                Ok(None)
            }
            Shuffled::Messages(messages) => {
                if shuffle.merge.is_none() {
                    return Ok(None);
                }
                let before = self.closed_through();
                // Windows close between messages, as they would have as the rows came: a
                // later heartbeat saying a stream is idle must not find its rows unclosed.
                for (offset, bytes) in messages {
                    self.merge_one(offset, &bytes)?;
                    self.advance().await?;
                }
                let merge = self.shuffle.as_ref().and_then(|s| s.merge.as_ref());
                Ok(merge
                    .filter(|_| self.closed_through() != before)
                    .map(|m| m.next_offset))
            }
        }
    }

    /// Starts merging: stage 2's state from the checkpoint (if any), then every source stream
    /// holds the watermark back until heard from or idle.
    async fn take_over(&mut self, expected: &[String]) -> Result<(), PipelineError> {
        let shuffle = self.shuffle.as_ref().expect("distributed");
        for (kind, schema) in &shuffle.tables {
            self.engine.prepare(*kind, schema).await?;
        }
        let saved = match &self.archive {
            Some(p) => p.load().await?.unwrap_or_default(),
            None => Saved::default(),
        };
        let mut merge = self.restore(saved).unwrap_or_default();
        self.engine.restore_states(&merge.states)?;
        merge.states.clear();
        self.streams = Streams::told();
        for (name, _, latest) in &merge.streams {
            if let Some(t) = latest {
                self.streams.note(name, *t);
            }
        }
        for s in expected {
            self.streams.expect(s);
        }
        tracing::info!(
            from_offset = merge.next_offset,
            streams = expected.len(),
            open_states = self.engine.state_rows(),
            "merging the partials"
        );
        self.shuffle.as_mut().expect("distributed").merge = Some(merge);
        Ok(())
    }

    /// Merges one partials message, unless an earlier checkpoint already holds it.
    fn merge_one(&mut self, offset: i64, bytes: &[u8]) -> Result<(), PipelineError> {
        let m = vigil_core::metrics::metrics();
        let merge = self
            .shuffle
            .as_mut()
            .and_then(|s| s.merge.as_mut())
            .expect("merging");
        if offset < merge.next_offset {
            m.shuffle_messages.inc(&["skipped"]);
            return Ok(());
        }
        merge.next_offset = offset + 1;
        let msg = match Message::decode(bytes) {
            Ok(msg) => msg,
            Err(e) => {
                // Not ours, or from another version: skipping it beats stopping detection
                // for every replica.
                m.shuffle_messages.inc(&["unreadable"]);
                tracing::error!(offset, error = %e, "unreadable partials message skipped");
                return Ok(());
            }
        };
        let n = merge.number(&msg.stream);
        let from = msg.from.unwrap_or(i64::MIN);
        let entry = &mut merge.streams[n as usize];
        self.streams.told_idle(&msg.stream, msg.idle);
        if msg.to.is_none() {
            // A heartbeat.
            m.shuffle_messages.inc(&["heartbeat"]);
        } else if msg.part == 0 && entry.1.is_some_and(|last| from < last) {
            // Read again from `from`: what it gave open windows from there on is replaced.
            let dropped = self.engine.revert(n, from);
            m.shuffle_messages.inc(&["reread"]);
            tracing::info!(stream = %msg.stream, from, dropped, "a source stream is being read again");
        } else {
            m.shuffle_messages.inc(&["merged"]);
        }
        if msg.to.is_some() {
            entry.1 = msg.to;
        }
        if let Some(t) = msg.latest {
            entry.2 = Some(entry.2.map_or(t, |l| l.max(t)));
        }
        for p in msg.partials {
            self.engine
                .merge(p, Contribution { stream: n, from })
                .map_err(PipelineError::from)?;
        }
        if let Some(c) = &mut self.correlator {
            c.receive(msg.traces);
        }
        if let Some(t) = msg.latest {
            self.streams.note(&msg.stream, t);
        }
        Ok(())
    }

    /// Closes the windows the watermark has passed and publishes their events.
    pub async fn advance(&mut self) -> Result<(), PipelineError> {
        if let Some(s) = &mut self.shuffle {
            s.stage1.send_due(false).await?;
            s.stage1.heartbeat()?;
        }
        let Some(slowest) = self.streams.slowest() else {
            return Ok(());
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
        if let Some(c) = self.engine.closed_through() {
            m.closed_through.set(&[], c as f64 / 1e6);
        }
        if let Some(w) = watermark {
            let lag = vigil_core::time::now_micros().saturating_sub(w);
            m.watermark_lag.set(&[], lag as f64 / 1e6);
        }
    }

    /// At the end of input: closes every window that holds a row, then waits for the events
    /// to be delivered.
    pub async fn finish(&mut self) -> Result<(), PipelineError> {
        if let Some(latest) = self.streams.latest().filter(|_| self.shuffle.is_none()) {
            // Every trace is complete: all of correlation's windows become final.
            self.close_until(latest.saturating_add(self.longest_window), i64::MAX)
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
        if let Some(s) = &mut self.shuffle {
            s.stage1.flush()?;
            let (messages, bytes) = s.stage1.sent;
            tracing::info!(messages, bytes, "partials handed on");
        }
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
        self.streams.latest_of(stream)
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
            Some(c) => c.advance(traces_until),
            None => Vec::new(),
        };
        let mut events = self.engine.advance(watermark).await?;
        if let Some(c) = self.correlator.as_mut() {
            let raised = c.take_events();
            if !raised.is_empty() {
                events.extend(raised);
                events.sort_by_key(|e| e.detected_at);
            }
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
            let merge = self
                .shuffle
                .as_ref()
                .and_then(|s| s.merge.as_ref())
                .map(|m| {
                    let mut m = m.clone();
                    m.states = self.engine.saved_states();
                    m
                });
            let saved = Saved {
                rules: self.engine.checkpoint(),
                incidents: self.correlator.as_ref().map(|c| c.checkpoint().clone()),
                firing: self.firing.values().cloned().collect(),
                merge,
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

/// The columns of log records detection reads: its rules' signals and filters on logs, what
/// correlation assembles traces from, and the event time and service. `None` if a rule cannot
/// be planned over the log schema (then read every column).
pub fn log_columns_read(pipeline: &Pipeline) -> Option<Vec<String>> {
    let schema = pipeline.log_schema.schema();
    let mut columns: Vec<String> = vec![col::TIMESTAMP.into(), col::SERVICE.into()];
    for rule in pipeline
        .rules
        .iter()
        .filter(|r| r.table == RecordKind::Logs)
    {
        // Planned when the pipeline file was checked, over the same columns.
        match &rule.reads {
            Some(reads) => columns.extend(reads.iter().cloned()),
            None => columns.extend(vigil_detect::windows::rule_columns(rule, schema).ok()?),
        }
    }
    if let Some(c) = &pipeline.detect.correlation {
        columns.extend(c.log_columns().into_iter().map(String::from));
    }
    columns.sort();
    columns.dedup();
    Some(columns)
}

/// The pipeline's rules with nothing learned.
fn fresh_engine(pipeline: &Pipeline) -> WindowedRules {
    WindowedRules::new(&pipeline.rules).with_series_limits(pipeline.detect.series)
}

/// The pipeline's correlator with nothing learned, if it correlates.
fn fresh_correlator(pipeline: &Pipeline) -> Option<Correlator> {
    let causes = pipeline
        .rules
        .iter()
        .filter(|r| r.cause)
        .map(|r| r.name.clone());
    pipeline
        .detect
        .correlation
        .as_ref()
        .map(|c| Correlator::new(c).with_causes(causes))
}
