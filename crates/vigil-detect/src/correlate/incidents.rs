//! Incidents: anomalies that overlap in time and are connected in the service dependency
//! graph, with the service the evidence points to as their root cause.
//!
//! **Grouping.** A firing anomaly joins an open incident when one of the incident's anomalies
//! is firing or ended less than the incident gap before this one started, and the two
//! services are connected: the same service, one depends on the other (a path of calls in
//! the graph learned from traces, either way), or one's failing traces started at the other.
//! Siblings (two services called by the same caller) are not connected through their caller
//! unless the caller is itself part of the incident. An anomaly connecting two open incidents
//! merges them into the older. An incident ends when all its anomalies have resolved and the
//! gap has passed. Anomalies detected at the same instant are filed before any of their events
//! is annotated, so none stands alone for its event only because the rules' order put it first.
//!
//! **Root cause.** Evidence is read from the incident's latest *wave* (the newest anomaly
//! and those active within five minutes of the wave's start; a flapping re-fire does not
//! carry a wave on) against the hour before the wave: a service failing steadily can keep
//! an incident open for hours, and judged over that whole life its steady failures would
//! outweigh every later fault. Anomalies still *pending* (their condition holds, their `for`
//! has not passed) in services connected to the wave's, since shortly before it, have their
//! evidence read with the wave's: a fault shorter than `for` does not fire before it explains
//! what did. Each candidate (the wave's services, and the services where the evidence points,
//! anomalous, pending or neither) is scored on three kinds of evidence:
//! - *origin*: the candidate's share of the incident services' failing traces that started
//!   there, above what they usually do in the hour before (failures propagate up the call
//!   tree, and [`assemble`](super::assemble) finds where each started), times the share of
//!   the incident's windows in which it stood out: a one-minute blip elsewhere does not
//!   explain a twenty-minute incident;
//! - *dependency*: the share of the incident's other services that depend on it (effects
//!   travel from callee to caller);
//! - *first*: whether its anomaly started first.
//!
//! When an origin's evidence reaches 0.25 the weights are 0.6 / 0.25 / 0.15. The *origin* may
//! instead be where the time was added: services whose own time per trace (their spans less
//! the spans they call, a callee's side of its callers' client spans included) rose well
//! beyond its usual, each judged by the windows it stood out in, from five minutes before
//! the wave on (a delay shows on its callers only once their latency has held for `for`),
//! by its rise against its usual times those windows, as a share of all candidates'. The
//! incident's services and those they call are candidates; any other service only when its
//! time rose twentyfold (a network delay to a service that nothing in the wave calls still
//! explains it). Weighted the same way. Of the two, the evidence that
//! rose more against its usual decides (failing traces against the usual count plus one a
//! window, time against the usual plus 1 ms): services that fail steadily all day rise little
//! when another fault adds latency, a new failure rises from nothing. Without either (e.g.
//! saturation), 0.6 dependency and 0.4 first, among the incident's own services.
//!
//! **Causes.** A rule may watch a cause rather than a symptom (`cause = true`: a saturated
//! CPU). When the wave holds such an anomaly (firing, or pending in a connected service, now
//! or in an episode seen pending since shortly before the wave: a saturation over before its
//! `for` still explains what fires after it), the service where it was active last is the
//! cause and outranks every other candidate: 0.6 of its score is that, 0.4 the evidence above
//! (which still decides among causes, and among the rest). The cost of a starved service
//! shows up in its callers' time and errors as much as in its own, so traces alone often
//! point one step up; saturation is where it started. It keeps that weight once resolved,
//! while its wave lasts: the slowness it caused outlives it.
//!
//! The confidence blends the top score with its margin over the runner-up. Every event of an
//! incident's anomalies carries the incident as it stands then, so a later event may name
//! another root cause as evidence grows; the id stays.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::evidence::{Moments, SAMPLES, WindowEvidence};
use crate::event::{AnomalyEvent, IncidentEvidence, IncidentView, PendingAnomaly, Status};
use crate::rules::fingerprint;

/// Excess failing traces an incident needs before their origins count as evidence.
const MIN_FAILING_TRACES: f64 = 5.0;
const HOUR: i64 = 3600 * 1_000_000;
/// Windows of evidence kept beyond what open incidents need: enough for an anomaly whose
/// `for` reaches back that far to find its start's evidence.
const RETAINED: i64 = 2 * HOUR;
/// An edge not seen for this long (event time) leaves the graph.
const EDGE_TTL: i64 = 24 * HOUR;
/// Evidence (share of excess failing traces × share of windows) an origin needs to be a
/// candidate, and the incident to count as one of failures.
const MIN_EVIDENCE: f64 = 0.25;
/// Windows before an incident whose failing traces are its services' usual.
const USUAL_WINDOWS: usize = 60;
/// How far the time a caller's client spans add must rise on its calls to its other callees
/// (their median, two at least) for it to be the one short of time rather than a callee: a
/// round value between what ordinary minutes show (up to about 2.5 on the Nezha cases) and
/// a starved caller (10 to 20).
const STARVED_RISE: f64 = 5.0;
/// How far a service's own time per trace must rise to count as where latency started: in
/// standard errors of the difference of means, and as a share of its usual.
const SLOW_SIGMAS: f64 = 4.0;
const SLOW_SHARE: f64 = 0.2;
/// Added own time is judged against the usual plus this (ms): a service that usually takes
/// microseconds does not rise a hundredfold by taking one millisecond more.
const RISE_FLOOR_MS: f64 = 1.0;
/// Traces of a service before an incident needed for its usual own time to mean anything.
const MIN_USUAL_TRACES: f64 = 5.0;
/// Share of a service's failing traces that must start at another to connect them.
const BLAME_SHARE: f64 = 0.2;
/// Anomalies starting this close to one another are one wave of an incident; time evidence
/// is read from this long before the wave.
const WAVE_GAP: i64 = 5 * 60 * 1_000_000;
/// How far a service the incident's services do not call must have slowed, against its usual
/// own time plus [`RISE_FLOOR_MS`], to be a candidate: a delay on the network to a service
/// adds hundreds of times a call's usual time; other services' ordinary slowness rarely
/// twenty (ten and fifty score lower on the Nezha cases; BENCHMARKS.md).
const WIDE_RISE: f64 = 20.0;
/// Windows of a service's history its usual needs before it can fire by itself.
const MIN_ALARM_HISTORY: usize = 10;
/// Calls to a service a window needs for the time its callers' client spans add to count.
const MIN_GAP_CALLS: f64 = 3.0;
/// Windows in a row a service's own time must stand that far out before it fires by itself.
pub(super) const SLOW_ALARM_WINDOWS: u32 = 2;

/// One anomaly episode in an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Member {
    fingerprint: String,
    service: String,
    starts_at: i64,
    ends_at: Option<i64>,
    /// Its rule watches a cause.
    #[serde(default)]
    cause: bool,
}

/// A group of connected anomalies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Incident {
    id: String,
    members: Vec<Member>,
}

impl Incident {
    fn first_start(&self) -> i64 {
        self.members.iter().map(|m| m.starts_at).min().unwrap_or(0)
    }

    /// Whether an anomaly starting at `start` overlaps it, within `gap`.
    fn overlaps(&self, start: i64, gap: i64) -> bool {
        self.members
            .iter()
            .any(|m| m.ends_at.is_none_or(|end| end.saturating_add(gap) >= start))
    }

    fn services(&self) -> BTreeSet<&str> {
        self.members.iter().map(|m| m.service.as_str()).collect()
    }

    /// The start of its latest wave: the newest anomaly, and every anomaly that started
    /// within [`WAVE_GAP`] before the wave's start or was still firing at it, back to the
    /// first. Evidence is read from the wave on, against the hour before it: an incident
    /// kept open for hours by one service's flapping would otherwise judge every later fault
    /// by its whole life, where the steady errors dominate; an anomaly joining a fault still
    /// firing belongs to that fault's wave. A re-firing of an anomaly that resolved less than
    /// [`WAVE_GAP`] before (flapping) joins the wave it falls in but does not carry one on,
    /// and one that started over an hour before the newest is background, not wave.
    fn wave_start(&self) -> i64 {
        let flapping = |m: &Member| {
            self.members.iter().any(|o| {
                o.fingerprint == m.fingerprint
                    && o.ends_at
                        .is_some_and(|end| end <= m.starts_at && m.starts_at - end <= WAVE_GAP)
            })
        };
        let mut carriers: Vec<&Member> = self.members.iter().filter(|m| !flapping(m)).collect();
        let Some(newest) = carriers.iter().map(|m| m.starts_at).max() else {
            return self.first_start();
        };
        // An anomaly that started over an hour before the newest is the background the wave
        // is judged against (a service failing all day, kept firing), not part of the wave.
        carriers.retain(|m| m.starts_at >= newest.saturating_sub(HOUR));
        let mut since = newest;
        loop {
            let reaching = carriers
                .iter()
                .filter(|m| m.starts_at < since)
                .filter(|m| {
                    since - m.starts_at <= WAVE_GAP || m.ends_at.is_none_or(|end| end >= since)
                })
                .map(|m| m.starts_at)
                .min();
            match reaching {
                Some(s) => since = s,
                None => return since,
            }
        }
    }
}

/// A caller → callee edge of the learned graph.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Seen {
    calls: i64,
    /// End of the last window it was seen in.
    last: i64,
}

/// What incidents remember, serialisable for checkpoints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IncidentState {
    /// Caller → callee → when seen.
    graph: BTreeMap<String, BTreeMap<String, Seen>>,
    /// Recent windows' failure evidence by start (their edges are in `graph`).
    windows: BTreeMap<i64, WindowEvidence>,
    /// Open incidents, oldest first.
    open: Vec<Incident>,
    /// Per service, the latest episode of a cause rule pending there (since, last seen
    /// pending): a saturation shorter than its `for` still explains what fires after it.
    #[serde(default)]
    pending_causes: BTreeMap<String, (i64, i64)>,
    /// Per service, its current run of windows whose own time stood far out (see
    /// [`Incidents::slow_alarms`]).
    #[serde(default)]
    slow_runs: BTreeMap<String, SlowRun>,
}

/// A run of windows in which a service's own time per trace rose [`WIDE_RISE`]-fold or more.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct SlowRun {
    /// Start of its first window.
    since: i64,
    /// Windows in it: it fires at [`SLOW_ALARM_WINDOWS`].
    windows: u32,
}

/// A service whose own time stood far out, or stopped: the trace evidence's own anomaly.
#[derive(Debug, Clone, PartialEq)]
pub struct SlowAlarm {
    /// The service.
    pub service: String,
    /// Start of the run's first window (µs).
    pub since: i64,
    /// Its end, once it resolved (µs).
    pub until: Option<i64>,
    /// When it fires, the rise of that window (the larger of its own time's, against the
    /// usual plus 1 ms, and its client spans' added time's); 0 when it resolves.
    pub rise: f64,
}

/// Groups anomaly events into incidents; see the module docs.
pub struct Incidents {
    state: IncidentState,
    gap: i64,
    /// The rules' pending series as of the events being filed (not checkpointed: the rules'
    /// checkpoint holds them).
    pending: Vec<PendingAnomaly>,
    /// Rules that watch a cause.
    causes: BTreeSet<String>,
}

impl Incidents {
    /// Incidents stay open `gap` µs after their last anomaly resolved.
    pub fn new(gap: i64) -> Self {
        Self {
            state: IncidentState::default(),
            gap,
            pending: Vec::new(),
            causes: BTreeSet::new(),
        }
    }

    /// Names the rules that watch a cause: a service where one fires is where the incident
    /// it joins starts.
    pub fn set_causes(&mut self, rules: BTreeSet<String>) {
        self.causes = rules;
    }

    /// The rules' series holding but not yet for `for` as of `now`: those connected to an
    /// incident's services since its wave began count as its evidence when events are filed,
    /// and a cause rule's episodes are remembered while recent (the latest per service).
    pub fn set_pending(&mut self, pending: Vec<PendingAnomaly>, now: i64) {
        let seen = &mut self.state.pending_causes;
        for p in pending.iter().filter(|p| self.causes.contains(&p.rule)) {
            let e = seen.entry(p.service.clone()).or_insert((p.since, now));
            if e.0 != p.since {
                *e = (p.since, now);
            }
            e.1 = e.1.max(now);
        }
        seen.retain(|_, (_, last)| last.saturating_add(RETAINED) >= now);
        self.pending = pending;
    }

    /// What to checkpoint.
    pub fn state(&self) -> &IncidentState {
        &self.state
    }

    /// Resumes from a checkpoint.
    pub fn restore(&mut self, state: IncidentState) {
        self.state = state;
    }

    /// Open incidents.
    pub fn open(&self) -> usize {
        self.state.open.len()
    }

    /// Learns from one final window: its edges join the graph, its failures become
    /// evidence.
    pub fn observe(&mut self, w: &WindowEvidence) {
        let s = &mut self.state;
        for e in &w.edges {
            let seen = s
                .graph
                .entry(e.caller.clone())
                .or_default()
                .entry(e.callee.clone())
                .or_insert(Seen {
                    calls: 0,
                    last: w.end,
                });
            seen.calls += e.calls;
            seen.last = seen.last.max(w.end);
        }
        for callees in s.graph.values_mut() {
            callees.retain(|_, seen| seen.last.saturating_add(EDGE_TTL) >= w.end);
        }
        s.graph.retain(|_, callees| !callees.is_empty());
        let keep_from = s
            .open
            .iter()
            .map(Incident::wave_start)
            .min()
            .unwrap_or(i64::MAX)
            .min(w.end.saturating_sub(RETAINED));
        // The graph holds what the edges taught; the window keeps only failure evidence.
        let failures = WindowEvidence {
            start: w.start,
            end: w.end,
            edges: Vec::new(),
            origins: w.origins.clone(),
            blame: w.blame.clone(),
            slowest: w.slowest.clone(),
            self_ms: w.self_ms.clone(),
            gap_log: w.gap_log.clone(),
            edge_gap_log: w.edge_gap_log.clone(),
        };
        s.windows.insert(w.start, failures);
        // An hour more: the usual failing traces before an incident (`USUAL_WINDOWS`).
        s.windows = s.windows.split_off(&keep_from.saturating_sub(HOUR));
    }

    /// The services whose own time per trace (their callers' client spans to them included),
    /// or the time those client spans add to their spans call by call, stood
    /// [`WIDE_RISE`]-fold above its usual in `w` and the window before (it fires), or no
    /// longer does (it resolves). Network delay to a service fires nothing else of that
    /// service: its own spans are no slower, only its callers', whose latency rules may hold
    /// only after the delay is over. Call once per final window, after [`Self::observe`].
    pub fn slow_alarms(&mut self, w: &WindowEvidence) -> Vec<SlowAlarm> {
        // Each service's usual: the hour before its run began (or before this window), so a
        // delay's first windows do not become the usual its next ones are judged against.
        // Without [`MIN_ALARM_HISTORY`] windows of it, nothing is usual yet (a pipeline's first
        // minutes).
        let usual = |service: &str, of: &dyn Fn(&WindowEvidence) -> &BTreeMap<String, Moments>| {
            let until = self
                .state
                .slow_runs
                .get(service)
                .map_or(w.start, |r| r.since);
            let (m, windows) = self.usual_moments(until, |b| of(b).get(service));
            (windows >= MIN_ALARM_HISTORY).then_some(m)
        };
        let mut far: BTreeMap<&str, f64> = w
            .self_ms
            .iter()
            .filter_map(|(s, m)| {
                let u = usual(s, &|w| &w.self_ms)?;
                let rise = (m.mean() - u.mean()) / (u.mean() + RISE_FLOOR_MS);
                (stands_out(m, &u) && rise >= WIDE_RISE).then_some((s.as_str(), rise))
            })
            .collect();
        // The time client spans add to a service's spans, call by call: a delay on the wire to
        // it shows there undiluted by its calls that were not delayed (the ratio of geometric
        // means of 1 + ms, over at least `MIN_GAP_CALLS` calls).
        for (s, m) in &w.gap_log {
            let Some(u) = usual(s, &|w| &w.gap_log) else {
                continue;
            };
            let rise = (m.mean() - u.mean()).exp();
            if m.n >= MIN_GAP_CALLS && u.n >= MIN_USUAL_TRACES && rise >= WIDE_RISE {
                let e = far.entry(s.as_str()).or_insert(rise);
                *e = e.max(rise);
            }
        }
        // A caller short of time itself (starved of CPU) is slow to send its calls and to take
        // their answers: the time its client spans add rises on its calls to every callee
        // alike, and its callees' spans look slow from its side. A service is not where the
        // time went when every caller whose calls to it slowed this window is such a caller.
        if !far.is_empty() {
            let callers = self.caller_rises(w, &far.keys().copied().collect());
            far.retain(|s, _| starved_caller(&callers, s).is_none());
        }
        let mut alarms = Vec::new();
        let runs = &mut self.state.slow_runs;
        runs.retain(|service, run| {
            if far.contains_key(service.as_str()) {
                return true;
            }
            if run.windows >= SLOW_ALARM_WINDOWS {
                alarms.push(SlowAlarm {
                    service: service.clone(),
                    since: run.since,
                    until: Some(w.start),
                    rise: 0.0,
                });
            }
            false
        });
        for (service, rise) in far {
            let run = runs.entry(service.to_string()).or_insert(SlowRun {
                since: w.start,
                windows: 0,
            });
            run.windows = run.windows.saturating_add(1);
            if run.windows == SLOW_ALARM_WINDOWS {
                alarms.push(SlowAlarm {
                    service: service.to_string(),
                    since: run.since,
                    until: None,
                    rise,
                });
            }
        }
        alarms
    }

    /// Per caller in window `w` of any of `services`, the rise of the time its client spans
    /// add, callee by callee (geometric means of 1 + ms, against the hour before `w`), over
    /// calls enough to judge.
    fn caller_rises<'w>(
        &self,
        w: &'w WindowEvidence,
        services: &BTreeSet<&str>,
    ) -> BTreeMap<&'w str, Vec<(&'w str, f64)>> {
        let mut out: BTreeMap<&str, Vec<(&str, f64)>> = BTreeMap::new();
        let wanted = w
            .edge_gap_log
            .iter()
            .filter(|(_, callees)| callees.keys().any(|c| services.contains(c.as_str())));
        for (caller, callees) in wanted {
            for (callee, now) in callees {
                if now.n < MIN_GAP_CALLS {
                    continue;
                }
                let (usual, _) = self.usual_moments(w.start, |b| {
                    b.edge_gap_log.get(caller).and_then(|c| c.get(callee))
                });
                if usual.n >= MIN_USUAL_TRACES {
                    let rise = (now.mean() - usual.mean()).exp();
                    out.entry(caller).or_default().push((callee, rise));
                }
            }
        }
        out
    }

    /// One figure's moments over the [`USUAL_WINDOWS`] windows before `until` (those `of`
    /// finds it in), and how many windows had it.
    fn usual_moments<'a>(
        &'a self,
        until: i64,
        of: impl Fn(&'a WindowEvidence) -> Option<&'a Moments>,
    ) -> (Moments, usize) {
        let mut m = Moments::default();
        let mut windows = 0;
        for b in self.state.windows.range(..until).rev().take(USUAL_WINDOWS) {
            if let Some(x) = of(b.1) {
                m.merge(x);
                windows += 1;
            }
        }
        (m, windows)
    }

    /// Files `events` into their incidents and sets each one's `incident` field. Events
    /// detected at the same instant (one evaluation of the rules) are filed together before any
    /// is annotated: anomalies firing at once are seen as one incident from its first event,
    /// rather than the first of them standing alone for an event because of the rules' order.
    pub fn annotate(&mut self, events: &mut [AnomalyEvent]) {
        for run in events.chunk_by_mut(|a, b| a.detected_at == b.detected_at) {
            let now = run[0].detected_at;
            for event in run.iter() {
                self.file(event);
            }
            for event in run.iter_mut() {
                let start = event.starts_at;
                let (at, _) = self
                    .position(&event.fingerprint, start)
                    .expect("every event was filed above");
                let view = self.view(&self.state.open[at], now);
                event.incident = Some(view);
            }
            let gap = self.gap;
            self.state.open.retain(|i| {
                i.members
                    .iter()
                    .any(|m| m.ends_at.is_none_or(|end| end.saturating_add(gap) >= now))
            });
        }
    }

    /// The open incident holding the anomaly `fingerprint` that started at `start`, and its
    /// member there.
    fn position(&self, fingerprint: &str, start: i64) -> Option<(usize, usize)> {
        self.state.open.iter().enumerate().find_map(|(i, inc)| {
            let m = inc
                .members
                .iter()
                .position(|m| m.fingerprint == fingerprint && m.starts_at == start)?;
            Some((i, m))
        })
    }

    /// Files one event: a firing anomaly joins (or founds) an incident, a later event of it
    /// updates its member.
    fn file(&mut self, event: &AnomalyEvent) {
        let start = event.starts_at;
        let member = Member {
            fingerprint: event.fingerprint.clone(),
            service: event.service.clone(),
            starts_at: start,
            ends_at: event.ends_at,
            cause: self.causes.contains(&event.rule),
        };
        match (self.position(&member.fingerprint, start), event.status) {
            (Some((i, m)), _) => self.state.open[i].members[m].ends_at = member.ends_at,
            (None, Status::Firing) => self.join(member, &event.id),
            // Resolved without its firing on record (state lost): an incident of its own.
            (None, Status::Resolved) => self.found(member, &event.id),
        }
    }

    fn found(&mut self, member: Member, event_id: &str) {
        self.state.open.push(Incident {
            id: format!("inc-{}", fingerprint("incident", event_id)),
            members: vec![member],
        });
    }

    /// Adds a firing anomaly to the incidents it connects to (merging them), or a new one.
    fn join(&mut self, member: Member, event_id: &str) {
        let hits: Vec<usize> = (0..self.state.open.len())
            .filter(|&i| {
                let inc = &self.state.open[i];
                inc.overlaps(member.starts_at, self.gap)
                    && inc
                        .services()
                        .iter()
                        .any(|s| self.connected(s, &member.service, inc.first_start()))
            })
            .collect();
        let Some((&first, rest)) = hits.split_first() else {
            return self.found(member, event_id);
        };
        for &i in rest.iter().rev() {
            let merged = self.state.open.remove(i);
            self.state.open[first].members.extend(merged.members);
        }
        self.state.open[first].members.push(member);
    }

    /// Whether `a` and `b` can affect each other (see the module docs).
    fn connected(&self, a: &str, b: &str, since: i64) -> bool {
        a == b
            || self.reaches(a, b)
            || self.reaches(b, a)
            || self.blames(a, b, since)
            || self.blames(b, a, since)
    }

    /// Whether `from` depends on `to` through calls.
    fn reaches(&self, from: &str, to: &str) -> bool {
        let mut seen = BTreeSet::from([from]);
        let mut queue = VecDeque::from([from]);
        while let Some(s) = queue.pop_front() {
            for callee in self.state.graph.get(s).into_iter().flat_map(|c| c.keys()) {
                if callee == to {
                    return true;
                }
                if seen.insert(callee) {
                    queue.push_back(callee);
                }
            }
        }
        false
    }

    /// Whether a good share of `service`'s failing traces from an hour before `since` on
    /// started at `origin`.
    fn blames(&self, service: &str, origin: &str, since: i64) -> bool {
        let (mut from_origin, mut all) = (0, 0);
        for w in self.state.windows.range(since.saturating_sub(HOUR)..) {
            if let Some(b) = w.1.blame.get(service) {
                from_origin += b.get(origin).copied().unwrap_or(0);
                all += b.values().sum::<i64>();
            }
        }
        from_origin >= MIN_FAILING_TRACES as i64 && from_origin as f64 >= BLAME_SHARE * all as f64
    }

    /// The incident as it stands at `now`, with its root cause.
    fn view(&self, inc: &Incident, now: i64) -> IncidentView {
        let first = inc.wave_start();
        // The wave's services: those of anomalies that started in it.
        let wave: BTreeSet<&str> = inc
            .members
            .iter()
            .filter(|m| m.starts_at >= first)
            .map(|m| m.service.as_str())
            .collect();
        // Anomalies still pending (holding, not yet for their `for`) in services connected to
        // the wave's, since shortly before it began: a fault shorter than `for` does not fire
        // before it explains what did. Their evidence is read with the wave's, so the evidence
        // can name them, though they are not (yet) the incident's. (Episodes that ended
        // without firing are not, except a cause rule's: counted for every rule, they named
        // the wrong service in six more Nezha cases.)
        let mut pending: BTreeMap<&str, i64> = BTreeMap::new();
        // Services where a cause (saturation) was part of the wave, firing or pending, with
        // when it was last active.
        let mut causes: BTreeMap<&str, i64> = BTreeMap::new();
        for m in inc
            .members
            .iter()
            .filter(|m| m.cause && m.starts_at >= first)
        {
            let until = causes.entry(m.service.as_str()).or_insert(i64::MIN);
            *until = (*until).max(m.ends_at.unwrap_or(now));
        }
        // Cause episodes seen pending since shortly before the wave, and those pending now.
        let remembered = self
            .state
            .pending_causes
            .iter()
            .map(|(s, &(since, last))| (s.as_str(), since, last.min(now), true));
        let current = self.pending.iter().map(|p| {
            (
                p.service.as_str(),
                p.since,
                now,
                self.causes.contains(&p.rule),
            )
        });
        for (service, since, until, cause) in remembered.chain(current) {
            if since < first.saturating_sub(WAVE_GAP) || since > now {
                continue;
            }
            let linked = wave.contains(service)
                || wave
                    .iter()
                    .any(|m| self.connected(m, service, inc.first_start()));
            if !linked {
                continue;
            }
            if cause {
                let last = causes.entry(service).or_insert(until);
                *last = (*last).max(until);
            }
            if !wave.contains(service) {
                let first_seen = pending.entry(service).or_insert(since);
                *first_seen = (*first_seen).min(since);
            }
        }
        let members: BTreeSet<&str> = wave.iter().chain(pending.keys()).copied().collect();
        // Evidence from the wave's start, or the earliest of those pending anomalies.
        let from = pending.values().copied().fold(first, i64::min);
        let windows: Vec<&WindowEvidence> = self
            .state
            .windows
            .range(..now)
            .map(|(_, w)| w)
            .filter(|w| w.end > from)
            .collect();
        // Failing traces of the incident's services by origin, above the usual: the mean of
        // the windows before the incident. A trace failing in several of the services counts
        // once: per window, the most any of them saw.
        let before = &self.usual_windows(from, inc)[..];
        let mut usual: BTreeMap<(&str, &str), f64> = BTreeMap::new();
        for w in before {
            for m in &members {
                for (o, n) in w.blame.get(*m).into_iter().flatten() {
                    *usual.entry((m, o.as_str())).or_default() += *n as f64 / before.len() as f64;
                }
            }
        }
        // Per origin: traces seen and expected over the incident's windows. Only an excess
        // well beyond the usual's Poisson noise is evidence.
        // A window supports an origin when its excess there is beyond that noise too: an
        // origin that explains the incident does so window after window, a blip does not.
        let mut seen: BTreeMap<&str, (f64, f64, usize)> = BTreeMap::new();
        for w in &windows {
            let mut most: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
            for m in &members {
                for (o, n) in w.blame.get(*m).into_iter().flatten() {
                    let usual = usual.get(&(*m, o.as_str())).copied().unwrap_or(0.0);
                    let e = most.entry(o).or_default();
                    *e = (e.0.max(*n as f64), e.1.max(usual));
                }
            }
            for (o, (n, usual)) in most {
                let e = seen.entry(o).or_default();
                let supports = n - usual >= (3.0 * (usual + 1.0).sqrt()).max(2.0);
                *e = (e.0 + n, e.1 + usual, e.2 + usize::from(supports));
            }
        }
        // Per origin: excess failing traces (beyond the noise), the share of windows it
        // stood out in, and how far it rose against its usual (one trace a window at least).
        let mut origins: BTreeMap<String, (f64, f64, f64)> = seen
            .into_iter()
            .map(|(o, (n, usual, supported))| {
                let excess = n - usual - 3.0 * (usual + 1.0).sqrt();
                let persistence = supported as f64 / windows.len().max(1) as f64;
                let rise = (n - usual) / (usual + windows.len().max(1) as f64);
                (o.to_string(), (excess, persistence, rise))
            })
            .collect();
        origins.retain(|_, (n, _, _)| *n > 0.0);
        let failing: f64 = origins.values().map(|(n, _, _)| n).sum();
        // Each origin's evidence: its share of the excess failing traces, times the share of
        // the incident's windows it was behind.
        let evidence: BTreeMap<&str, f64> = origins
            .iter()
            .map(|(o, (n, persistence, _))| (o.as_str(), n / failing * persistence))
            .collect();
        let failures =
            failing >= MIN_FAILING_TRACES && evidence.values().any(|e| *e >= MIN_EVIDENCE);
        // Where the incident's time went: added own time (a callee's share of its callers'
        // client spans included, so network delay counts on the callee's side).
        // Time is read from a wave-gap before the wave: a delay that fires nothing itself
        // until its callers' latency has held for `for` (network delay to a service shows
        // only on its callers' side) is over or nearly so when the wave starts; and up to a
        // wave-gap after its newest anomaly started: a later slowdown, with nothing of the
        // wave firing for it, is not what the wave is about (a wave may be filed long after
        // it started, when detection runs behind).
        let since = from.saturating_sub(WAVE_GAP);
        let newest = inc
            .members
            .iter()
            .map(|m| m.starts_at)
            .filter(|&s| s >= first)
            .max()
            .unwrap_or(first);
        let until = newest.saturating_add(WAVE_GAP).min(now);
        let time_windows: Vec<&WindowEvidence> = self
            .state
            .windows
            .range(since..until)
            .map(|(_, w)| w)
            .collect();
        let slowed = self.slowed(&members, &time_windows, &self.usual_windows(since, inc));
        let slow_evidence: BTreeMap<&str, f64> = slowed
            .iter()
            .map(|(s, (_, e, _))| (s.as_str(), *e))
            .collect();
        // The evidence of the larger change, each against its usual: failing traces that
        // started at an origin, or time a service added. Steady background failures (a
        // service failing 10% of the time all day) rise little, a network delay adds
        // hundreds of times a call's usual time, a new failure rises from nothing.
        let failure_rise = strongest(
            origins
                .iter()
                .map(|(o, (_, _, rise))| (evidence[o.as_str()], *rise)),
        );
        let slow_rise = strongest(slowed.values().map(|(_, e, rise)| (*e, *rise)));
        let by_time = slow_rise > 0.0 && (!failures || slow_rise > failure_rise);
        let (evidence, by_evidence) = if by_time {
            (slow_evidence, true)
        } else {
            (evidence, failures)
        };
        // Pending services are candidates only by their evidence: being called by everyone
        // (a database) or holding first says nothing of a series that has not fired.
        let starts: BTreeMap<&str, i64> = wave
            .iter()
            .map(|s| {
                let start = inc
                    .members
                    .iter()
                    .filter(|m| m.service == *s && m.starts_at >= first)
                    .map(|m| m.starts_at)
                    .min()
                    .unwrap_or(first);
                (*s, start)
            })
            .collect();
        let candidates: BTreeSet<&str> = wave
            .iter()
            .copied()
            .chain(causes.keys().copied())
            .chain(
                evidence
                    .iter()
                    .filter(|(_, e)| **e >= MIN_EVIDENCE)
                    .map(|(o, _)| *o),
            )
            .collect();
        let scores: BTreeMap<String, f64> = candidates
            .iter()
            .map(|&c| {
                let others: Vec<&str> = wave.iter().copied().filter(|m| *m != c).collect();
                let dependency = if others.is_empty() {
                    1.0
                } else {
                    others.iter().filter(|m| self.reaches(m, c)).count() as f64
                        / others.len() as f64
                };
                let earliest = match starts.get(c) {
                    Some(&s) if s == first => 1.0,
                    _ => 0.0,
                };
                let score = if by_evidence {
                    let origin = evidence.get(c).copied().unwrap_or(0.0);
                    0.6 * origin + 0.25 * dependency + 0.15 * earliest
                } else {
                    0.6 * dependency + 0.4 * earliest
                };
                // The cause active most recently explains the wave.
                let score = match causes.values().max() {
                    None => score,
                    Some(latest) => {
                        let cause = causes.get(c).is_some_and(|until| until == latest);
                        0.6 * f64::from(u8::from(cause)) + 0.4 * score
                    }
                };
                (c.to_string(), round(score))
            })
            .collect();
        let mut ranked: Vec<(&String, f64)> = scores.iter().map(|(c, s)| (c, *s)).collect();
        // Highest score; on a tie the earliest anomaly, then the name.
        ranked.sort_by(|a, b| {
            b.1.total_cmp(&a.1)
                .then_with(|| starts.get(a.0.as_str()).cmp(&starts.get(b.0.as_str())))
                .then_with(|| a.0.cmp(b.0))
        });
        let (root, top) = ranked
            .first()
            .map(|(c, s)| ((*c).clone(), *s))
            .unwrap_or_default();
        let second = ranked.get(1).map_or(0.0, |r| r.1);
        let margin = if top > 0.0 { (top - second) / top } else { 0.0 };
        let mut samples: Vec<String> = windows
            .iter()
            .filter_map(|w| w.origins.get(&root))
            .flat_map(|o| o.samples.iter().cloned())
            .take(SAMPLES)
            .collect();
        if samples.is_empty() {
            let mut slow: Vec<&(f64, String)> = windows
                .iter()
                .filter_map(|w| w.slowest.get(&root))
                .collect();
            slow.sort_by(|a, b| b.0.total_cmp(&a.0));
            samples = slow
                .into_iter()
                .take(SAMPLES)
                .map(|s| s.1.clone())
                .collect();
        }
        let mut related: Vec<String> = inc.members.iter().map(|m| m.fingerprint.clone()).collect();
        related.sort();
        related.dedup();
        let first_anomaly = inc
            .members
            .iter()
            .filter(|m| m.starts_at >= first)
            .min_by_key(|m| (m.starts_at, m.service.as_str()))
            .map(|m| m.service.clone())
            .unwrap_or_default();
        IncidentView {
            id: inc.id.clone(),
            root_cause_service: root,
            confidence: round(0.5 * top + 0.5 * margin),
            related,
            services: wave.iter().map(|s| s.to_string()).collect(),
            evidence: IncidentEvidence {
                sample_trace_ids: samples,
                error_origins: origins
                    .into_iter()
                    .map(|(o, (n, _, _))| (o, round(n)))
                    .collect(),
                self_time_added_ms: slowed
                    .into_iter()
                    .map(|(s, (ms, _, _))| (s, round(ms)))
                    .collect(),
                first_anomaly,
                scores,
            },
        }
    }

    /// The [`USUAL_WINDOWS`] windows that ended at least a window before `from`, leaving
    /// out those in which one of `inc`'s anomalies that had resolved by `from` was active:
    /// what is usual before evidence read from `from` on. An incident's earlier waves are what
    /// it is about, not its services' usual: judged against them, a fault that fails the way
    /// an earlier wave did shows no excess (an anomaly still active at `from` is the background
    /// the wave is judged against, and stays).
    fn usual_windows(&self, from: i64, inc: &Incident) -> Vec<&WindowEvidence> {
        let earlier: Vec<(i64, i64)> = inc
            .members
            .iter()
            .filter_map(|m| {
                m.ends_at
                    .filter(|&end| end <= from)
                    .map(|end| (m.starts_at, end))
            })
            .collect();
        let mut before: Vec<&WindowEvidence> = self
            .state
            .windows
            .values()
            .filter(|w| w.end.saturating_add(w.end - w.start) <= from)
            .filter(|w| {
                !earlier
                    .iter()
                    .any(|&(start, end)| w.start < end && w.end > start)
            })
            .collect();
        before.drain(..before.len().saturating_sub(USUAL_WINDOWS));
        before
    }

    /// Services whose own time per trace (span time less their calls') rose during the
    /// incident's `windows` well beyond its usual in `before`: those the incident's services
    /// call, or themselves, since latency travels from callee to caller; and any other whose
    /// rise reaches [`WIDE_RISE`]. A service is judged by the windows in which it stood out
    /// (well beyond its usual there): a delay of three minutes is not averaged away over a
    /// longer incident. Each with the mean time it added per trace in those windows (ms), its
    /// evidence (its rise times the windows it stood out in, as a share of all candidates')
    /// and its rise: the time added against its usual.
    fn slowed(
        &self,
        members: &BTreeSet<&str>,
        windows: &[&WindowEvidence],
        before: &[&WindowEvidence],
    ) -> BTreeMap<String, (f64, f64, f64)> {
        let near = |s: &str| members.contains(s) || members.iter().any(|m| self.reaches(m, s));
        let mut usual: BTreeMap<&str, Moments> = BTreeMap::new();
        for w in before {
            for (s, m) in &w.self_ms {
                usual.entry(s).or_default().merge(m);
            }
        }
        // Per service, its traces in the windows where it stood out, and how many those were;
        // and in how many of them every caller whose calls to it slowed was short of time
        // itself, and the most starved of those: then the time it added (its callers' client
        // spans to it are part of its own time) is that caller's.
        let mut stood_out: BTreeMap<&str, (Moments, usize)> = BTreeMap::new();
        let mut starved: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
        for w in windows {
            let out: BTreeSet<&str> = w
                .self_ms
                .iter()
                .filter(|(s, m)| usual.get(s.as_str()).is_some_and(|u| stands_out(m, u)))
                .map(|(s, _)| s.as_str())
                .collect();
            if out.is_empty() {
                continue;
            }
            let callers = self.caller_rises(w, &out);
            for s in out {
                let e = stood_out.entry(s).or_default();
                e.0.merge(&w.self_ms[s]);
                e.1 += 1;
                if let Some(caller) = starved_caller(&callers, s) {
                    *starved.entry(s).or_default().entry(caller).or_default() += 1;
                }
            }
        }
        let mut weighed: BTreeMap<&str, (f64, f64, f64)> = BTreeMap::new();
        for (s, (m, k)) in stood_out {
            let usual = usual[s].mean();
            let ms = m.mean() - usual;
            let rise = ms / (usual + RISE_FLOOR_MS);
            let caller = starved.get(s).and_then(|by| {
                let (&c, &n) = by
                    .iter()
                    .max_by_key(|(c, n)| (**n, std::cmp::Reverse(**c)))?;
                (n == k).then_some(c)
            });
            let to = caller.unwrap_or(s);
            if near(s) || near(to) || rise >= WIDE_RISE {
                let e = weighed.entry(to).or_insert((0.0, 0.0, 0.0));
                *e = (e.0.max(ms), e.1 + rise * k as f64, e.2.max(rise));
            }
        }
        let total: f64 = weighed.values().map(|w| w.1).sum();
        weighed
            .into_iter()
            .map(|(s, (ms, weight, rise))| (s.to_string(), (ms, weight / total, rise)))
            .collect()
    }
}

/// Whether own times `now` are well beyond `usual`: [`SLOW_SIGMAS`] standard errors and
/// [`SLOW_SHARE`] of the usual, over enough usual traces to mean anything.
fn stands_out(now: &Moments, usual: &Moments) -> bool {
    let added = now.mean() - usual.mean();
    let noise = (now.mean_variance() + usual.mean_variance()).sqrt();
    usual.n >= MIN_USUAL_TRACES && added > SLOW_SIGMAS * noise && added > SLOW_SHARE * usual.mean()
}

/// The most starved of the callers of `service` among `callers` (each with its rises, callee
/// by callee: see [`Incidents::caller_rises`]) whose calls to it rose [`STARVED_RISE`]-fold,
/// when every one of them is short of time itself: its calls to at least two other callees
/// rose as much (their median), as a caller starved of CPU is slow to send and take back
/// every call. `None` when one of them is not, or no caller's calls to it rose.
fn starved_caller<'a>(
    callers: &BTreeMap<&'a str, Vec<(&'a str, f64)>>,
    service: &str,
) -> Option<&'a str> {
    let mut most: Option<(&str, f64)> = None;
    for (&caller, rises) in callers {
        if !rises
            .iter()
            .any(|&(callee, rise)| callee == service && rise >= STARVED_RISE)
        {
            continue;
        }
        let mut others: Vec<f64> = rises
            .iter()
            .filter(|(callee, _)| *callee != service)
            .map(|r| r.1)
            .collect();
        if others.len() < 2 {
            return None;
        }
        let row = median(&mut others);
        if row < STARVED_RISE {
            return None;
        }
        if most.is_none_or(|(_, m)| row > m) {
            most = Some((caller, row));
        }
    }
    most.map(|(caller, _)| caller)
}

/// The median of `values` (not empty).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The largest rise among `(evidence, rise)` pairs whose evidence makes a candidate; 0 if none.
fn strongest(rises: impl Iterator<Item = (f64, f64)>) -> f64 {
    rises
        .filter(|(e, _)| *e >= MIN_EVIDENCE)
        .map(|(_, r)| r)
        .fold(0.0, f64::max)
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
