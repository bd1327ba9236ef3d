//! What closed traces show, per event-time window: the calls between services aggregated
//! into `service_edges` rows (calls, errors, latency average / p95 / max), and each failing
//! trace's origin into `error_origin(service, window, failing_traces)`.
//!
//! A trace counts in the window of its first record. A window's evidence is final once every
//! trace that can count in it has closed: when the watermark passes the window's end plus the
//! trace timeout.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Float64Array, Int64Array, ListBuilder, RecordBatch, StringArray,
    StringBuilder, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field};
use datafusion_functions_aggregate_common::tdigest::{DEFAULT_MAX_SIZE, TDigest};
use serde::{Deserialize, Serialize};
use vigil_core::schema::{error_origin_schema, service_edges_schema};
use vigil_core::time::date32_from_micros;

use super::assemble::ClosedTrace;

/// Failing trace ids kept per window and origin, and per incident.
pub const SAMPLES: usize = 5;

/// Caller → callee over one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    /// The calling service.
    pub caller: String,
    /// The called service.
    pub callee: String,
    /// Calls seen.
    pub calls: i64,
    /// Calls whose callee span failed.
    pub errors: i64,
    /// Mean callee span duration, ms.
    pub latency_avg_ms: f64,
    /// 95th percentile of the callee span duration (t-digest), ms.
    pub latency_p95_ms: f64,
    /// Longest callee span, ms.
    pub latency_max_ms: f64,
}

/// The failing traces that started at one service in one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    /// Failing traces whose failure started there.
    pub failing_traces: i64,
    /// A few of their ids.
    pub samples: Vec<String>,
}

/// The count, sum and sum of squares of a quantity: its mean and spread, mergeable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    /// Values.
    pub n: f64,
    /// Their sum.
    pub sum: f64,
    /// The sum of their squares.
    pub sumsq: f64,
}

impl Moments {
    /// Adds one value.
    pub fn add(&mut self, x: f64) {
        self.n += 1.0;
        self.sum += x;
        self.sumsq += x * x;
    }

    /// Adds another's values.
    pub fn merge(&mut self, o: &Moments) {
        self.n += o.n;
        self.sum += o.sum;
        self.sumsq += o.sumsq;
    }

    /// The mean (0 without values).
    pub fn mean(&self) -> f64 {
        if self.n > 0.0 { self.sum / self.n } else { 0.0 }
    }

    /// The variance of the mean: the values' variance over their count.
    pub fn mean_variance(&self) -> f64 {
        if self.n < 2.0 {
            return 0.0;
        }
        let var = (self.sumsq - self.sum * self.sum / self.n) / (self.n - 1.0);
        var.max(0.0) / self.n
    }
}

/// Everything closed traces showed in one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowEvidence {
    /// Window start, µs since the epoch.
    pub start: i64,
    /// Window end (exclusive).
    pub end: i64,
    /// Caller → callee aggregates.
    pub edges: Vec<Edge>,
    /// Origin service → its failing traces.
    pub origins: BTreeMap<String, Origin>,
    /// (Failing service, origin service) → traces where that service failed and the failure
    /// started at that origin: which origin explains a service's failures.
    pub blame: BTreeMap<String, BTreeMap<String, i64>>,
    /// Per callee, the trace of its slowest call: a sample for latency incidents.
    pub slowest: BTreeMap<String, (f64, String)>,
    /// Per service, the time it spent itself per trace (ms): where latency started.
    #[serde(default)]
    pub self_ms: BTreeMap<String, Moments>,
    /// Per callee, `ln(1 + ms)` of the time each client span to it added to its span: the
    /// network to it, summarised so that a few slow calls move it little.
    #[serde(default)]
    pub gap_log: BTreeMap<String, Moments>,
    /// The same per caller and callee: whether a rise is the callee's (every caller's calls
    /// to it) or one caller's (its calls to every callee: a caller short of CPU is slow to
    /// send and to take the answer).
    #[serde(default)]
    pub edge_gap_log: BTreeMap<String, BTreeMap<String, Moments>>,
}

/// Keyed by service numbers: hashed, not ordered (a window's evidence is sorted by name when
/// it is final).
type ById<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// One window's rows while its traces are still closing.
#[derive(Default)]
struct Pending {
    /// Caller → callee: the calls seen.
    edges: ById<(u32, u32), EdgeCalls>,
    origins: ById<u32, (i64, Vec<Arc<str>>)>,
    blame: ById<(u32, u32), i64>,
    slowest: ById<u32, (f64, Arc<str>)>,
    self_ms: ById<u32, Moments>,
    gap_log: ById<u32, Moments>,
    edge_gap_log: ById<(u32, u32), Moments>,
}

/// Per-window evidence from closed traces.
pub struct Evidence {
    window: i64,
    /// Wait after a window's end before it is final (the trace timeout).
    settle: i64,
    pending: BTreeMap<i64, Pending>,
    /// Rows for windows already final (their traces were cut by the open-trace cap or were
    /// long): counted, not used.
    stale: u64,
    /// The start of the next window to finalise, once one has been.
    next: Option<i64>,
}

/// The calls over one caller → callee edge in one window, in the order they were filed.
#[derive(Default)]
struct EdgeCalls {
    errors: i64,
    latencies: Vec<f64>,
}

impl EdgeCalls {
    fn add(&mut self, latency_ms: f64, failed: bool) {
        self.errors += i64::from(failed);
        self.latencies.push(latency_ms);
    }

    /// What the calls show, as `SELECT count(*), sum(CASE WHEN failed THEN 1 ELSE 0 END),
    /// avg(latency_ms), approx_percentile_cont(latency_ms, 0.95), max(latency_ms) … GROUP BY
    /// caller, callee` gives it (the test `edges_are_what_the_sql_aggregate_gives` holds it
    /// to that): the same sum in the same order, DataFusion's t-digest for the percentile.
    fn edge(self, caller: String, callee: String) -> Edge {
        let calls = self.latencies.len();
        let sum = self.latencies.iter().fold(0.0, |sum, &ms| sum + ms);
        let max = self
            .latencies
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let p95 = TDigest::new(DEFAULT_MAX_SIZE)
            .merge_unsorted_f64(self.latencies)
            .estimate_quantile(0.95);
        Edge {
            caller,
            callee,
            calls: calls as i64,
            errors: self.errors,
            latency_avg_ms: sum / calls as f64,
            latency_p95_ms: p95,
            latency_max_ms: max,
        }
    }
}

impl Evidence {
    /// Windows of `window` µs, final `settle` µs after their end.
    pub fn new(window: i64, settle: i64) -> Self {
        Self {
            window: window.max(1),
            settle,
            pending: BTreeMap::new(),
            stale: 0,
            next: None,
        }
    }

    /// The window length, µs, and how long after its end a window is final.
    pub fn window_and_settle(&self) -> (i64, i64) {
        (self.window, self.settle)
    }

    /// Closed traces that fell in windows already final.
    pub fn stale_traces(&self) -> u64 {
        self.stale
    }

    /// Files what closed traces show into their windows.
    pub fn add(&mut self, traces: Vec<ClosedTrace>) {
        for t in traces {
            let start = t.time.div_euclid(self.window) * self.window;
            if self.next.is_some_and(|next| start < next) {
                self.stale += 1;
                continue;
            }
            let p = self.pending.entry(start).or_default();
            for c in &t.calls {
                p.edges
                    .entry((c.caller, c.callee))
                    .or_default()
                    .add(c.latency_ms, c.failed);
                match p.slowest.get_mut(&c.callee) {
                    Some(slow) if c.latency_ms <= slow.0 => {}
                    Some(slow) => *slow = (c.latency_ms, Arc::clone(&t.trace_id)),
                    None => {
                        p.slowest
                            .insert(c.callee, (c.latency_ms, Arc::clone(&t.trace_id)));
                    }
                }
            }
            for &(service, ms) in &t.self_ms {
                p.self_ms.entry(service).or_default().add(ms);
            }
            for &(caller, callee, ms) in &t.gaps {
                p.gap_log.entry(callee).or_default().add(ms.ln_1p());
                if let Some(caller) = caller {
                    p.edge_gap_log
                        .entry((caller, callee))
                        .or_default()
                        .add(ms.ln_1p());
                }
            }
            if let Some(origin) = t.origin {
                let (n, samples) = p.origins.entry(origin).or_default();
                *n += 1;
                if samples.len() < SAMPLES {
                    samples.push(Arc::clone(&t.trace_id));
                }
                for &s in &t.failing {
                    *p.blame.entry((s, origin)).or_default() += 1;
                }
            }
        }
    }

    /// The windows final at `watermark`, oldest first; `name` turns service ids into names.
    pub fn finalise(
        &mut self,
        watermark: i64,
        name: &dyn Fn(u32) -> String,
    ) -> Vec<WindowEvidence> {
        let mut out = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            let start = *entry.key();
            let end = start.saturating_add(self.window);
            if end.saturating_add(self.settle) > watermark {
                break;
            }
            let p = entry.remove();
            self.next = Some(end);
            out.push(self.window_evidence(start, end, p, name));
        }
        out
    }

    fn window_evidence(
        &self,
        start: i64,
        end: i64,
        p: Pending,
        name: &dyn Fn(u32) -> String,
    ) -> WindowEvidence {
        let mut edges: Vec<Edge> = p
            .edges
            .into_iter()
            .map(|((caller, callee), calls)| calls.edge(name(caller), name(callee)))
            .collect();
        edges.sort_unstable_by(|a, b| (&a.caller, &a.callee).cmp(&(&b.caller, &b.callee)));
        let mut blame: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        for ((s, o), n) in p.blame {
            blame.entry(name(s)).or_default().insert(name(o), n);
        }
        WindowEvidence {
            start,
            end,
            edges,
            origins: p
                .origins
                .into_iter()
                .map(|(o, (n, samples))| {
                    let samples = samples.iter().map(|s| s.to_string()).collect();
                    (
                        name(o),
                        Origin {
                            failing_traces: n,
                            samples,
                        },
                    )
                })
                .collect(),
            blame,
            slowest: p
                .slowest
                .into_iter()
                .map(|(s, (ms, t))| (name(s), (ms, t.to_string())))
                .collect(),
            self_ms: p.self_ms.into_iter().map(|(s, m)| (name(s), m)).collect(),
            gap_log: p.gap_log.into_iter().map(|(s, m)| (name(s), m)).collect(),
            edge_gap_log: p.edge_gap_log.into_iter().fold(
                BTreeMap::new(),
                |mut by: BTreeMap<String, BTreeMap<String, Moments>>, ((a, b), m)| {
                    by.entry(name(a)).or_default().insert(name(b), m);
                    by
                },
            ),
        }
    }
}

fn times(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_iter_values(values).with_timezone("UTC"))
}

fn days(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(Date32Array::from_iter_values(
        values.map(date32_from_micros),
    ))
}

/// Rows of the `service_edges` table for `windows`.
pub fn edges_batch(windows: &[WindowEvidence]) -> RecordBatch {
    let rows: Vec<(&WindowEvidence, &Edge)> = windows
        .iter()
        .flat_map(|w| w.edges.iter().map(move |e| (w, e)))
        .collect();
    let text = |f: &dyn Fn(&Edge) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(_, e)| f(e)),
        ))
    };
    let int = |f: &dyn Fn(&Edge) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|(_, e)| f(e))))
    };
    let float = |f: &dyn Fn(&Edge) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|(_, e)| f(e)),
        ))
    };
    RecordBatch::try_new(
        service_edges_schema(),
        vec![
            times(rows.iter().map(|(w, _)| w.start)),
            times(rows.iter().map(|(w, _)| w.end)),
            text(&|e| &e.caller),
            text(&|e| &e.callee),
            int(&|e| e.calls),
            int(&|e| e.errors),
            float(&|e| e.latency_avg_ms),
            float(&|e| e.latency_p95_ms),
            float(&|e| e.latency_max_ms),
            days(rows.iter().map(|(w, _)| w.start)),
        ],
    )
    .expect("columns match the service_edges schema")
}

/// Rows of the `error_origin` table for `windows`.
pub fn origins_batch(windows: &[WindowEvidence]) -> RecordBatch {
    let rows: Vec<(&WindowEvidence, &String, &Origin)> = windows
        .iter()
        .flat_map(|w| w.origins.iter().map(move |(s, o)| (w, s, o)))
        .collect();
    let mut samples = ListBuilder::new(StringBuilder::new()).with_field(Arc::new(Field::new(
        "item",
        DataType::Utf8,
        true,
    )));
    for (_, _, o) in &rows {
        samples.append_value(o.samples.iter().map(Some));
    }
    RecordBatch::try_new(
        error_origin_schema(),
        vec![
            times(rows.iter().map(|(w, _, _)| w.start)),
            times(rows.iter().map(|(w, _, _)| w.end)),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(_, s, _)| s.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|(_, _, o)| o.failing_traces),
            )),
            Arc::new(samples.finish()),
            days(rows.iter().map(|(w, _, _)| w.start)),
        ],
    )
    .expect("columns match the error_origin schema")
}
