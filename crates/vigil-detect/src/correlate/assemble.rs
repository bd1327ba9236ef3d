//! Trace assembly: log records grouped into traces by `trace_id` within a bounded time, then
//! each trace into a tree of spans, its calls between services and, if it failed, the service
//! where the failure started.
//!
//! A trace opens with its first record and closes when the watermark passes that record's
//! time plus the trace timeout: by then (the watermark already allows for lateness) every
//! record of a trace no longer than the timeout has arrived, in whatever order and from
//! whatever partition. A record for a trace that has closed is late when the watermark has
//! passed it (counted, not used); otherwise it opens a new part of a long trace. Open traces
//! are capped: past the cap the oldest are closed early (counted), so memory is bounded by
//! the cap whatever the rate.
//!
//! Spans are the records sharing a `span_id` (a record without one is a span of its own): a
//! span runs from its earliest record, or its end minus its duration where a duration field
//! is given, to its latest record, and failed if any record is ERROR/CRITICAL or has a status
//! of 500 or more. A span's parent is the span its `parent_span_id` names; a span without one
//! (or naming a span that never arrived) is placed under the tightest span of the trace whose
//! time strictly contains it, i.e. by timing and call order. The failure's origin is the
//! deepest failing span with no failing child, the earliest such on a tie: where the tree is
//! unknown (every span a root) that is the earliest error. When that span is a client span
//! (an inner span of a service whose one child is another service's span), the origin is
//! the callee: it answered with an error it did not log, or never answered.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Float64Type, TimestampMicrosecondType};
use vigil_core::arrays::one_value;
use vigil_core::schema::{col, span};

/// Granularity of trace close times, µs.
const DUE_BUCKET: i64 = 250_000;

/// Spans of one trace beyond which the timing fallback (quadratic in spans) is not tried.
const MAX_TIMING_SPANS: usize = 512;

/// Spans one trace may hold; more are dropped (and counted): a trace of runaway depth or
/// fan-out must not hold unbounded memory or stall the pipeline when it closes.
pub const MAX_SPANS_PER_TRACE: usize = 10_000;

/// Distinct services remembered; records of further services count as [`OTHER_SERVICE`].
pub const MAX_SERVICES: usize = 10_000;

/// The name under which services beyond [`MAX_SERVICES`] are counted.
pub const OTHER_SERVICE: &str = "(other services)";

/// How traces are assembled.
#[derive(Debug, Clone)]
pub struct AssembleConfig {
    /// A trace closes this long (event time, µs) after its first record.
    pub timeout: i64,
    /// Open traces beyond which the oldest close early.
    pub max_open: usize,
    /// Column holding a span's duration in milliseconds, if the logs have it.
    pub duration_column: Option<String>,
    /// Column holding an HTTP-like status (failure when >= 500), if the logs have it.
    pub status_column: Option<String>,
}

/// The log columns [`Assembler::push`] reads, with `duration` and `status` the configured
/// ones: what a reader that needs only traces (a backtest) must decode. Kept beside `push`;
/// the test `assembling_from_its_log_columns_alone_gives_the_same_traces` fails if `push`
/// comes to read another.
pub fn log_columns<'a>(duration: &'a str, status: &'a str) -> Vec<&'a str> {
    vec![
        col::TIMESTAMP,
        col::SERVICE,
        col::TRACE_ID,
        col::SPAN_ID,
        col::PARENT_SPAN_ID,
        col::LEVEL,
        duration,
        status,
    ]
}

/// The columns of a `spans` batch that logs do not have.
struct SpanRows<'a> {
    end: &'a arrow::array::PrimitiveArray<TimestampMicrosecondType>,
    status: Option<&'a StringArray>,
}

impl<'a> SpanRows<'a> {
    /// `Some` when `batch` holds spans: it has their `end_time`.
    fn of(batch: &'a RecordBatch) -> Option<Self> {
        let end = batch
            .column_by_name(span::END_TIME)?
            .as_primitive_opt::<TimestampMicrosecondType>()?;
        let status = batch
            .column_by_name(span::STATUS)
            .and_then(|c| c.as_string_opt::<i32>());
        Some(Self { end, status })
    }

    /// OTLP's status says the span failed.
    fn failed(&self, row: usize) -> bool {
        self.status
            .is_some_and(|s| s.is_valid(row) && s.value(row) == "error")
    }
}

/// One span: the records of a trace sharing a `span_id`.
#[derive(Debug, Clone, Copy)]
struct Span {
    id: u64,
    /// 0: none given.
    parent: u64,
    service: u32,
    start: i64,
    end: i64,
    /// Time of the first failing record; `i64::MAX` if none.
    first_error: i64,
}

impl Span {
    fn failed(&self) -> bool {
        self.first_error != i64::MAX
    }
}

struct OpenTrace {
    first: i64,
    spans: Vec<Span>,
}

/// A call from one service's span to another's, seen in a closed trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Index into [`Assembler::service_name`].
    pub caller: u32,
    /// Index into [`Assembler::service_name`].
    pub callee: u32,
    /// The callee span's duration, milliseconds.
    pub latency_ms: f64,
    /// Whether the callee span failed.
    pub failed: bool,
}

/// What one closed trace contributes to the evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedTrace {
    /// The trace id.
    pub trace_id: Arc<str>,
    /// Event time of its first record: the window it counts in.
    pub time: i64,
    /// Its calls between different services.
    pub calls: Vec<Call>,
    /// If it failed: the service where the failure started.
    pub origin: Option<u32>,
    /// The services with a failing span, each once.
    pub failing: Vec<u32>,
    /// Per service in the trace (each once): the time its spans spent themselves, their
    /// duration less their children's, in milliseconds. Where latency starts.
    pub self_ms: Vec<(u32, f64)>,
    /// Per client span: its caller's service (`None` when a replica sharing the trace did
    /// not say), its callee's, and the time the client span adds to the callee's server
    /// span, ms (the network between them, the callee's queueing, the caller's own wait to
    /// send and receive).
    pub gaps: Vec<(Option<u32>, u32, f64)>,
}

/// Groups log records into traces; see the module docs.
pub struct Assembler {
    cfg: AssembleConfig,
    traces: HashMap<Arc<str>, OpenTrace, foldhash::fast::RandomState>,
    /// Close time → traces opened then (a trace may have closed early already).
    due: BTreeMap<i64, Vec<Arc<str>>>,
    services: Vec<Arc<str>>,
    service_ids: HashMap<Arc<str>, u32, foldhash::fast::RandomState>,
    /// The service of the last record.
    last_service: Option<u32>,
    /// The watermark of the last [`close`](Self::close).
    watermark: i64,
    /// Spans without a `span_id` get even ids counting down from here.
    anonymous: u64,
    late: u64,
    forced: u64,
    /// Spans dropped because their trace held [`MAX_SPANS_PER_TRACE`].
    dropped_spans: u64,
    /// Records whose service was counted as [`OTHER_SERVICE`].
    other_service: u64,
    scratch: Scratch,
}

/// Buffers reused by every trace's analysis.
#[derive(Default)]
struct Scratch {
    parent: Vec<Option<usize>>,
    depth: Vec<usize>,
    failing_child: Vec<bool>,
    /// Per span, the time its children cover within it (µs): their union, so calls made
    /// concurrently count once.
    children_us: Vec<i64>,
    /// Children's (parent, start, end), sorted to take the union per parent.
    intervals: Vec<(usize, i64, i64)>,
    /// Per span, how many children it has and the last of them.
    children: Vec<(u32, Option<usize>)>,
}

fn hash_id(s: &str) -> u64 {
    use std::hash::BuildHasher;
    // Fixed seed: ids must hash alike across calls; 0 is reserved for "none".
    foldhash::fast::FixedState::with_seed(0x7669_6769_6c00).hash_one(s) | 1
}

impl Assembler {
    /// An empty assembler.
    pub fn new(cfg: AssembleConfig) -> Self {
        Self {
            cfg,
            traces: HashMap::default(),
            due: BTreeMap::new(),
            services: Vec::new(),
            service_ids: HashMap::default(),
            last_service: None,
            watermark: i64::MIN,
            // Even, so never equal to a hashed id (always odd).
            anonymous: u64::MAX - 1,
            late: 0,
            forced: 0,
            dropped_spans: 0,
            other_service: 0,
            scratch: Scratch::default(),
        }
    }

    /// How it assembles.
    pub fn config(&self) -> &AssembleConfig {
        &self.cfg
    }

    /// The name of service `id`.
    pub fn service_name(&self, id: u32) -> &str {
        &self.services[id as usize]
    }

    /// Traces open now.
    pub fn open_traces(&self) -> usize {
        self.traces.len()
    }

    /// Records that arrived after their trace had closed and the watermark had passed them.
    pub fn late_records(&self) -> u64 {
        self.late
    }

    /// Traces closed before their time because the open-trace cap was reached.
    pub fn forced_closes(&self) -> u64 {
        self.forced
    }

    /// Spans dropped because their trace already held [`MAX_SPANS_PER_TRACE`].
    pub fn dropped_spans(&self) -> u64 {
        self.dropped_spans
    }

    /// Records whose service was one too many to remember ([`MAX_SERVICES`]).
    pub fn other_service_records(&self) -> u64 {
        self.other_service
    }

    /// The number of service `name`, given one if it has none yet.
    pub fn service_id(&mut self, name: &str) -> u32 {
        // Decoded batches come grouped by service: the last one usually matches.
        if let Some(id) = self.last_service
            && *self.services[id as usize] == *name
        {
            return id;
        }
        if let Some(&id) = self.service_ids.get(name) {
            self.last_service = Some(id);
            return id;
        }
        let name = if self.services.len() < MAX_SERVICES {
            name
        } else {
            self.other_service += 1;
            if let Some(&id) = self.service_ids.get(OTHER_SERVICE) {
                return id;
            }
            OTHER_SERVICE
        };
        let id = self.services.len() as u32;
        let name: Arc<str> = name.into();
        self.services.push(Arc::clone(&name));
        self.service_ids.insert(name, id);
        self.last_service = Some(id);
        id
    }

    /// Files a batch of log records. Records without a `trace_id` are not part of a trace
    /// and are skipped; closed traces come out of [`close`](Self::close).
    pub fn push(&mut self, batch: &RecordBatch, out: &mut Vec<ClosedTrace>) {
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
        };
        let (Some(traces), Some(services), Some(ts)) = (
            text(col::TRACE_ID),
            text(col::SERVICE),
            batch
                .column_by_name(col::TIMESTAMP)
                .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>()),
        ) else {
            return;
        };
        let spans = text(col::SPAN_ID);
        let parents = text(col::PARENT_SPAN_ID);
        let levels = text(col::LEVEL);
        let number = |name: &Option<String>| {
            let c = batch.column_by_name(name.as_deref()?)?;
            if !c.data_type().is_numeric() {
                return None;
            }
            let c = arrow::compute::cast(c, &DataType::Float64).ok()?;
            Some(c.as_primitive::<Float64Type>().clone())
        };
        // A `spans` batch (OTLP) says when each span started and ended, and whether it failed.
        let span_rows = SpanRows::of(batch);
        let durations = match span_rows {
            Some(_) => None,
            None => number(&self.cfg.duration_column),
        };
        let statuses = match span_rows {
            Some(_) => number(&Some(span::HTTP_STATUS.to_owned())),
            None => number(&self.cfg.status_column),
        };
        // A decoded batch holds one service: known already, it is looked up once.
        let batch_service = one_value(services).and_then(|s| self.service_ids.get(s).copied());
        for row in 0..batch.num_rows() {
            let Some(trace_id) = value(Some(traces), row) else {
                continue;
            };
            let (start, t) = match &span_rows {
                Some(s) => (ts.value(row), s.end.value(row)),
                None => {
                    let t = ts.value(row);
                    let start = match &durations {
                        Some(d) if d.is_valid(row) && d.value(row) > 0.0 => {
                            t.saturating_sub((d.value(row) * 1000.0) as i64)
                        }
                        _ => t,
                    };
                    (start, t)
                }
            };
            let failed = matches!(value(levels, row), Some("ERROR" | "CRITICAL"))
                || span_rows.as_ref().is_some_and(|s| s.failed(row))
                || statuses
                    .as_ref()
                    .is_some_and(|s| s.is_valid(row) && s.value(row) >= 500.0);
            let id = match value(spans, row) {
                Some(s) => hash_id(s),
                None => {
                    self.anonymous -= 2;
                    self.anonymous
                }
            };
            let span = Span {
                id,
                parent: value(parents, row).map_or(0, hash_id),
                service: match batch_service {
                    Some(id) => id,
                    None => self.service_id(services.value(row)),
                },
                start: start.min(t),
                end: t,
                first_error: if failed { t } else { i64::MAX },
            };
            self.add(trace_id, t, span, out);
        }
    }

    fn add(&mut self, trace_id: &str, t: i64, span: Span, out: &mut Vec<ClosedTrace>) {
        if let Some(open) = self.traces.get_mut(trace_id) {
            open.first = open.first.min(t);
            // A span's records usually arrive together: look at the latest few only; the
            // rest are merged when the trace closes.
            let full = open.spans.len() >= MAX_SPANS_PER_TRACE;
            match open
                .spans
                .iter_mut()
                .rev()
                .take(8)
                .find(|s| s.id == span.id)
            {
                Some(s) => merge(s, &span),
                None if full => self.dropped_spans += 1,
                None => open.spans.push(span),
            }
            return;
        }
        if t < self.watermark {
            self.late += 1;
            return;
        }
        let id: Arc<str> = trace_id.into();
        // Due times rounded up to the next bucket: traces opened close together share one
        // entry, and none closes before its time.
        let due = t.saturating_add(self.cfg.timeout);
        let bucket = due.div_euclid(DUE_BUCKET).saturating_add(1) * DUE_BUCKET;
        self.due.entry(bucket).or_default().push(Arc::clone(&id));
        let mut spans = Vec::with_capacity(8);
        spans.push(span);
        self.traces.insert(id, OpenTrace { first: t, spans });
        if self.traces.len() > self.cfg.max_open {
            let closed = self.close_first(i64::MAX, self.traces.len() - self.cfg.max_open);
            self.forced += closed.len() as u64;
            out.extend(closed);
        }
    }

    /// Closes every trace whose time is up at `watermark` (event time minus the allowed
    /// lateness) and returns what they show.
    pub fn close(&mut self, watermark: i64) -> Vec<ClosedTrace> {
        self.watermark = self.watermark.max(watermark);
        self.close_first(watermark, usize::MAX)
    }

    /// Closes up to `limit` traces due at or before `until`, oldest first.
    fn close_first(&mut self, until: i64, limit: usize) -> Vec<ClosedTrace> {
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(mut entry) = self.due.first_entry() else {
                break;
            };
            if *entry.key() > until {
                break;
            }
            let ids = entry.get_mut();
            while out.len() < limit
                && let Some(id) = ids.pop()
            {
                if let Some(open) = self.traces.remove(&id) {
                    out.push(analyse(id, open, &mut self.scratch));
                }
            }
            if ids.is_empty() {
                entry.remove();
            }
        }
        out
    }
}

/// Row `row` of a string column, if the column exists and the value is non-empty. Inlined:
/// it runs four times per record, and the call cost as much as the lookup.
#[inline]
fn value(a: Option<&StringArray>, row: usize) -> Option<&str> {
    a.filter(|a| a.is_valid(row))
        .map(|a| a.value(row))
        .filter(|s| !s.is_empty())
}

fn merge(into: &mut Span, s: &Span) {
    into.start = into.start.min(s.start);
    into.end = into.end.max(s.end);
    into.first_error = into.first_error.min(s.first_error);
    if into.parent == 0 {
        into.parent = s.parent;
    }
}

/// The tree of one trace, its calls and its failure's origin.
fn analyse(trace_id: Arc<str>, open: OpenTrace, scratch: &mut Scratch) -> ClosedTrace {
    let mut spans = open.spans;
    spans.sort_unstable_by_key(|s| s.id);
    spans.dedup_by(|later, kept| {
        let same = later.id == kept.id;
        if same {
            merge(kept, later);
        }
        same
    });
    let n = spans.len();
    let Scratch {
        parent,
        depth,
        failing_child,
        children_us,
        intervals,
        children,
    } = scratch;
    parent.clear();
    parent.extend((0..n).map(|i| {
        let s = &spans[i];
        let named = (s.parent != 0)
            .then(|| spans.binary_search_by_key(&s.parent, |p| p.id).ok())
            .flatten()
            .filter(|&p| p != i);
        named.or_else(|| enclosing(&spans, i))
    }));
    depths(parent, depth);
    // At most one call per span under a parent: sized once, not grown call by call.
    let mut calls = Vec::with_capacity(n.saturating_sub(1));
    failing_child.clear();
    failing_child.resize(n, false);
    intervals.clear();
    for (i, s) in spans.iter().enumerate() {
        let Some(p) = parent[i] else { continue };
        if s.failed() {
            failing_child[p] = true;
        }
        intervals.push((p, s.start, s.end));
        if spans[p].service != s.service {
            calls.push(Call {
                caller: spans[p].service,
                callee: s.service,
                latency_ms: (s.end - s.start) as f64 / 1000.0,
                failed: s.failed(),
            });
        }
    }
    children.clear();
    children.resize(n, (0, None));
    for (i, p) in parent.iter().enumerate() {
        if let Some(p) = *p {
            children[p] = (children[p].0 + 1, Some(i));
        }
    }
    // The callee of a client span: an inner span of a service (its parent in the same
    // service) whose one child is in another service.
    let callee = |i: usize| -> Option<usize> {
        let inner = parent[i].is_some_and(|p| spans[p].service == spans[i].service);
        match children[i] {
            (1, Some(c)) if inner && spans[c].service != spans[i].service => Some(c),
            _ => None,
        }
    };
    // A failing client span whose callee's span did not fail points at the callee: it
    // answered with an error it did not log (or never answered).
    let origin = (0..n)
        .filter(|&i| spans[i].failed() && !failing_child[i])
        .min_by_key(|&i| {
            (
                std::cmp::Reverse(depth[i]),
                spans[i].first_error,
                spans[i].service,
            )
        })
        .map(|i| callee(i).map_or(spans[i].service, |c| spans[c].service));
    let mut failing: Vec<u32> = spans
        .iter()
        .filter(|s| s.failed())
        .map(|s| s.service)
        .collect();
    failing.sort_unstable();
    failing.dedup();
    let gaps: Vec<(Option<u32>, u32, f64)> = (0..n)
        .filter_map(|i| {
            let c = callee(i)?;
            let added = (spans[i].end - spans[i].start) - (spans[c].end - spans[c].start);
            Some((
                Some(spans[i].service),
                spans[c].service,
                added.max(0) as f64 / 1000.0,
            ))
        })
        .collect();
    covered(&spans, intervals, children_us);
    // A span's own time is what its children leave of it: calls made concurrently count
    // once (their union, within the span), so a fan-out of parallel calls does not hide
    // the caller's own work, nor make it negative. An inner span of a service
    // (its parent in the same service) whose one child is in another service is a client
    // span: what it adds to its child is the network between them and the callee's
    // queueing, counted on the callee's side of the edge, not as the caller's own time. (A
    // service's entry span with one call is not: its own time is its work.)
    let mut self_ms: Vec<(u32, f64)> = spans
        .iter()
        .zip(children_us.iter())
        .enumerate()
        .map(|(i, (s, &c))| {
            let own = (s.end - s.start - c) as f64 / 1000.0;
            (callee(i).map_or(s.service, |c| spans[c].service), own)
        })
        .collect();
    self_ms.sort_unstable_by_key(|(service, _)| *service);
    self_ms.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            kept.1 += later.1;
        }
        same
    });
    ClosedTrace {
        trace_id,
        time: open.first,
        calls,
        origin,
        failing,
        self_ms,
        gaps,
    }
}

/// Per span, the time its children's `intervals` cover within it (µs): the length of their
/// union clipped to the span, so concurrent calls count once and never more than the span.
fn covered(spans: &[Span], intervals: &mut [(usize, i64, i64)], children_us: &mut Vec<i64>) {
    children_us.clear();
    children_us.resize(spans.len(), 0);
    intervals.sort_unstable();
    for run in intervals.chunk_by(|a, b| a.0 == b.0) {
        let p = &spans[run[0].0];
        let mut total = 0;
        let mut current: Option<(i64, i64)> = None;
        for &(_, start, end) in run {
            let (start, end) = (start.max(p.start), end.min(p.end));
            if end <= start {
                continue;
            }
            current = match current {
                Some((s, e)) if start <= e => Some((s, e.max(end))),
                Some((s, e)) => {
                    total += e - s;
                    Some((start, end))
                }
                None => Some((start, end)),
            };
        }
        total += current.map_or(0, |(s, e)| e - s);
        children_us[run[0].0] = total;
    }
}

/// Each span's depth in the tree of `parent` links, in linear time: a walk up stops at the
/// first span whose depth is known. Spans on a cycle of parent ids (bad input) are roots.
pub(super) fn depths(parent: &[Option<usize>], depth: &mut Vec<usize>) {
    const UNKNOWN: usize = usize::MAX;
    const ON_PATH: usize = usize::MAX - 1;
    depth.clear();
    depth.resize(parent.len(), UNKNOWN);
    let mut path = Vec::new();
    for i in 0..parent.len() {
        let mut at = i;
        // Up to a root, a known depth, or back onto this walk (a cycle).
        let base = loop {
            match depth[at] {
                UNKNOWN => {}
                ON_PATH => break 0,
                d => break d + 1,
            }
            depth[at] = ON_PATH;
            path.push(at);
            match parent[at] {
                Some(p) => at = p,
                None => break 0,
            }
        };
        for (k, &span) in path.iter().rev().enumerate() {
            depth[span] = base + k;
        }
        path.clear();
    }
}

/// The tightest other span whose time strictly contains span `i`'s: its caller by timing.
fn enclosing(spans: &[Span], i: usize) -> Option<usize> {
    if spans.len() > MAX_TIMING_SPANS {
        return None;
    }
    let c = &spans[i];
    spans
        .iter()
        .enumerate()
        .filter(|&(j, p)| {
            j != i && p.start <= c.start && c.end <= p.end && p.end - p.start > c.end - c.start
        })
        .min_by_key(|(_, p)| (p.end - p.start, p.start))
        .map(|(j, _)| j)
}
