//! Correlation split across replicas: each assembles the traces of its own partitions
//! (records of one trace must reach one replica: keyed by trace id) and hands on what each
//! closed trace shows, with service names rather than its own numbers; one replica files
//! everyone's into evidence and incidents.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{ClosedTrace, Correlator, assemble::Call};

/// What one closed trace showed, as it travels between replicas. Services are numbers into
/// the [`SharedTraces::services`] it travels in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedTrace {
    /// The trace id.
    pub id: String,
    /// Event time of its first record, µs.
    pub time: i64,
    /// Calls: (caller, callee, callee's latency in ms, whether the callee failed).
    pub calls: Vec<(u32, u32, f64, bool)>,
    /// Where its failure started, if it failed.
    pub origin: Option<u32>,
    /// Services with a failing span.
    pub failing: Vec<u32>,
    /// Time each service spent itself, ms.
    pub self_ms: Vec<(u32, f64)>,
    /// Per client span, its callee and the time it added to the callee's span, ms.
    #[serde(default)]
    pub gaps: Vec<(u32, f64)>,
    /// Per client span (as `gaps`), its caller; empty from a replica that did not say.
    #[serde(default)]
    pub gap_callers: Vec<u32>,
}

/// Closed traces with the names of the services they mention.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SharedTraces {
    /// Service names.
    pub services: Vec<String>,
    /// The traces.
    pub traces: Vec<SharedTrace>,
}

impl SharedTraces {
    /// Whether it holds no trace.
    pub fn is_empty(&self) -> bool {
        self.traces.is_empty()
    }
}

impl Correlator {
    /// Stage 1: closes the traces whose time is up at `watermark` and returns what they show,
    /// to be filed by another replica's [`receive`](Self::receive). Nothing is kept.
    pub fn hand_on(&mut self, watermark: i64) -> SharedTraces {
        let closed = self.take_closed(watermark);
        let mut out = SharedTraces::default();
        let mut numbers = std::collections::HashMap::new();
        let mut number = |id: u32, out: &mut SharedTraces| -> u32 {
            *numbers.entry(id).or_insert_with(|| {
                out.services
                    .push(self.assembler.service_name(id).to_string());
                (out.services.len() - 1) as u32
            })
        };
        for t in closed {
            let calls = t
                .calls
                .iter()
                .map(|c| {
                    let (a, b) = (number(c.caller, &mut out), number(c.callee, &mut out));
                    (a, b, c.latency_ms, c.failed)
                })
                .collect();
            let origin = t.origin.map(|o| number(o, &mut out));
            let failing = t.failing.iter().map(|&s| number(s, &mut out)).collect();
            let self_ms = t
                .self_ms
                .iter()
                .map(|&(s, ms)| (number(s, &mut out), ms))
                .collect();
            let gaps = t
                .gaps
                .iter()
                .map(|&(_, s, ms)| (number(s, &mut out), ms))
                .collect();
            // Every caller or none: a trace received from a replica that did not say passes
            // on without them.
            let gap_callers = t
                .gaps
                .iter()
                .map(|&(caller, _, _)| caller)
                .collect::<Option<Vec<_>>>()
                .map_or_else(Vec::new, |callers| {
                    callers.into_iter().map(|c| number(c, &mut out)).collect()
                });
            out.traces.push(SharedTrace {
                id: t.trace_id.to_string(),
                time: t.time,
                calls,
                origin,
                failing,
                self_ms,
                gaps,
                gap_callers,
            });
        }
        out
    }

    /// Stage 2: files traces closed by other replicas; they count at the next
    /// [`advance`](Self::advance). A trace already received for its window is dropped (sent
    /// again after its records were read again).
    pub fn receive(&mut self, shared: SharedTraces) {
        let ids: Vec<u32> = shared
            .services
            .iter()
            .map(|s| self.assembler.service_id(s))
            .collect();
        let id = |n: u32| ids.get(n as usize).copied().unwrap_or(0);
        let (window, _) = self.evidence.window_and_settle();
        for t in shared.traces {
            let trace_id: Arc<str> = t.id.into();
            let seen = self.received.entry(t.time.div_euclid(window)).or_default();
            if !seen.insert(Arc::clone(&trace_id)) {
                self.repeated += 1;
                continue;
            }
            self.closed.push(ClosedTrace {
                trace_id,
                time: t.time,
                calls: t
                    .calls
                    .iter()
                    .map(|&(a, b, latency_ms, failed)| Call {
                        caller: id(a),
                        callee: id(b),
                        latency_ms,
                        failed,
                    })
                    .collect(),
                origin: t.origin.map(id),
                failing: t.failing.iter().map(|&s| id(s)).collect(),
                self_ms: t.self_ms.iter().map(|&(s, ms)| (id(s), ms)).collect(),
                gaps: t
                    .gaps
                    .iter()
                    .enumerate()
                    .map(|(i, &(s, ms))| (t.gap_callers.get(i).map(|&c| id(c)), id(s), ms))
                    .collect(),
            });
        }
    }

    /// Stage 2: forgets the ids of received traces whose windows are final at `watermark`.
    pub(super) fn forget_received(&mut self, watermark: i64) {
        let (window, settle) = self.evidence.window_and_settle();
        let keep_from = watermark
            .saturating_sub(settle)
            .div_euclid(window)
            .saturating_sub(1);
        self.received = self.received.split_off(&keep_from);
    }

    /// Traces received twice and counted once.
    pub fn repeated_traces(&self) -> u64 {
        self.repeated
    }
}
