//! Cross-service correlation: which service is actually broken.
//!
//! ```text
//! log batches ─► assemble: traces by trace_id within the trace timeout ─► closed traces
//!                  (tree by parent_span_id, else timing; calls; failure origin)
//!                                              │ per window, final at end + timeout
//!                                              ▼
//!          evidence: service_edges (calls, errors, latency), error_origin, blame
//!                                              │
//!   anomaly events ─► incidents: connected anomalies grouped, root cause scored ─► event.incident
//! ```
//!
//! [`assemble`] groups records into traces and finds where each failing trace's failure
//! started; [`evidence`] aggregates closed traces per window into the `service_edges` and
//! `error_origin` rows the archive keeps; [`incidents`] learns the dependency graph from them
//! and files each anomaly event into an incident with a root-cause service.
//!
//! Memory: open traces (capped), the rows of windows whose traces are still closing, and a
//! couple of hours of per-window evidence (services², not events).
//!
//! Why assembly is a hash map and not a DataFusion query: a trace's records arrive over
//! seconds, across batches and partitions. Done as SQL, each step would group the open traces'
//! rows again (every record scanned once per step it stays open) and join spans to parents;
//! a keyed state touched once per record does the same work once. The same goes for what
//! the closed traces show: calls are summed into their caller → callee edge as they are
//! filed (DataFusion's t-digest for the latency percentile), not aggregated by a query per
//! window, which cost more in planning and streams than the few thousand calls it summed.
//!
//! Restarts: incidents, the graph and recent evidence are in the detection checkpoint; open
//! traces are not, but the archive replay of the rules' open windows refills them, so at most
//! the one window of evidence that was still settling at the stop is lost.

pub mod assemble;
pub mod evidence;
pub mod incidents;
mod shuffle;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::array::RecordBatch;

pub use assemble::{AssembleConfig, Assembler, ClosedTrace};
pub use evidence::{Evidence, WindowEvidence, edges_batch, origins_batch};
pub use incidents::{IncidentState, Incidents, SlowAlarm};
pub use shuffle::{SharedTrace, SharedTraces};

use vigil_core::time::micros;

use crate::rules::{Rule, Transition};
use crate::spec::Condition;
use crate::{AnomalyEvent, CorrelationConfig, PendingAnomaly, Severity, Status};

/// The rule name of the trace evidence's own anomalies ([`Correlator::take_events`]).
pub const SLOW_RULE: &str = "Service Own Time";

/// The rule of the trace evidence's own anomalies, over evidence windows of `window`: it
/// fires after [`SLOW_ALARM_WINDOWS`](incidents::SLOW_ALARM_WINDOWS) of them.
fn slow_rule(window: std::time::Duration) -> Rule {
    Rule {
        name: SLOW_RULE.into(),
        severity: Severity::P3,
        condition: Condition::Baseline,
        no_data: None,
        window,
        for_: window * incidents::SLOW_ALARM_WINDOWS,
        keep_firing_for: std::time::Duration::ZERO,
        labels: Default::default(),
        annotations: [(
            "summary".to_string(),
            "Own time per trace, or its callers' client spans' time per call, twentyfold its usual"
                .to_string(),
        )]
        .into(),
    }
}

/// Traces → evidence → incidents; see the module docs.
pub struct Correlator {
    assembler: Assembler,
    evidence: Evidence,
    incidents: Incidents,
    /// Traces closed early by the open-trace cap, waiting for the next advance.
    closed: Vec<ClosedTrace>,
    traces: u64,
    /// The trace evidence's own anomalies since the last [`Self::take_events`].
    events: Vec<AnomalyEvent>,
    /// The rule those events are of; `None` when they are not raised.
    alarm_rule: Option<Rule>,
    /// Ids of traces received from other replicas, by evidence window: a trace sent twice
    /// (its records read again after a replica died) counts once.
    received: BTreeMap<i64, HashSet<Arc<str>>>,
    /// Traces received twice and dropped.
    repeated: u64,
}

impl Correlator {
    /// A correlator with nothing learned yet, configured by the pipeline's `[detect]`.
    pub fn new(cfg: &CorrelationConfig) -> Self {
        let timeout = micros(cfg.trace_timeout).max(1);
        Self {
            assembler: Assembler::new(AssembleConfig {
                timeout,
                max_open: cfg.max_open_traces.max(1),
                duration_column: Some(cfg.duration_column.clone()),
                status_column: Some(cfg.status_column.clone()),
            }),
            evidence: Evidence::new(micros(cfg.window), timeout),
            incidents: Incidents::new(micros(cfg.incident_gap)),
            closed: Vec::new(),
            events: Vec::new(),
            alarm_rule: cfg.own_time_alarms.then(|| slow_rule(cfg.window)),
            traces: 0,
            received: BTreeMap::new(),
            repeated: 0,
        }
    }

    /// Names the rules that watch a cause (`RuleSpec::cause`): their anomalies point an
    /// incident at their service.
    pub fn with_causes(mut self, rules: impl IntoIterator<Item = String>) -> Self {
        self.incidents.set_causes(rules.into_iter().collect());
        self
    }

    /// Files a batch of log records.
    pub fn push(&mut self, logs: &RecordBatch) {
        self.assembler.push(logs, &mut self.closed);
    }

    /// Closes the traces whose time is up at `watermark`, and returns the windows of
    /// evidence that became final (already learned from, for the archive to keep).
    pub fn advance(&mut self, watermark: i64) -> Vec<WindowEvidence> {
        let closed = self.take_closed(watermark);
        self.evidence.add(closed);
        let assembler = &self.assembler;
        let windows = self
            .evidence
            .finalise(watermark, &|id| assembler.service_name(id).to_string());
        for w in &windows {
            self.incidents.observe(w);
            let Some(rule) = &self.alarm_rule else {
                continue;
            };
            for a in self.incidents.slow_alarms(w) {
                let firing = a.until.is_none();
                let transition = Transition {
                    series: a.service,
                    status: if firing {
                        Status::Firing
                    } else {
                        Status::Resolved
                    },
                    value: if firing { a.rise } else { f64::NAN },
                    starts_at: a.since,
                    ends_at: a.until,
                    deviation: None,
                };
                self.events.push(rule.event(&transition, watermark));
            }
        }
        if !self.received.is_empty() {
            self.forget_received(watermark);
        }
        windows
    }

    /// The anomalies the trace evidence raised by itself since the last call, detected at
    /// the watermark that made their window final: a service whose own time per trace (its
    /// callers' client spans to it included), or the time those client spans add to its
    /// spans call by call, stood twentyfold above its usual for two windows, rule
    /// [`SLOW_RULE`]. Publish them with the rules' events, annotated with them.
    pub fn take_events(&mut self) -> Vec<AnomalyEvent> {
        std::mem::take(&mut self.events)
    }

    /// The traces closed early by the cap and those whose time is up at `watermark`, counted.
    fn take_closed(&mut self, watermark: i64) -> Vec<ClosedTrace> {
        let mut closed = std::mem::take(&mut self.closed);
        closed.extend(self.assembler.close(watermark));
        self.traces += closed.len() as u64;
        closed
    }

    /// The rules' series holding but not yet for `for`, as of `now` (the end of the windows
    /// closed so far): evidence for the events filed next, and a cause rule's episodes are
    /// remembered, so a saturation shorter than its `for` still explains what fires after it.
    /// Pending series change only when windows close: call it then.
    pub fn set_pending(&mut self, pending: Vec<PendingAnomaly>, now: i64) {
        self.incidents.set_pending(pending, now);
    }

    /// Files the events into their incidents (in order; those detected at the same instant
    /// together) and sets each one's `incident`.
    pub fn annotate(&mut self, events: &mut [AnomalyEvent]) {
        self.incidents.annotate(events);
    }

    /// What incidents remember, for a checkpoint (open traces are not in it: the archive
    /// replay brings their rows back).
    pub fn checkpoint(&self) -> &IncidentState {
        self.incidents.state()
    }

    /// Resumes from a checkpoint.
    pub fn restore(&mut self, state: IncidentState) {
        self.incidents.restore(state);
    }

    /// Traces closed so far.
    pub fn traces(&self) -> u64 {
        self.traces
    }

    /// Traces being assembled now.
    pub fn open_traces(&self) -> usize {
        self.assembler.open_traces()
    }

    /// Records too late for their trace, plus traces too late for their window.
    pub fn late(&self) -> u64 {
        self.assembler.late_records() + self.evidence.stale_traces()
    }

    /// Traces closed early because the open-trace cap was reached.
    pub fn forced_closes(&self) -> u64 {
        self.assembler.forced_closes()
    }

    /// Spans dropped because their trace already held the most a trace may.
    pub fn dropped_spans(&self) -> u64 {
        self.assembler.dropped_spans()
    }
}

#[cfg(test)]
mod tests;
