//! Alerting rules with Prometheus semantics, evaluated once per closed event-time window.
//!
//! ```text
//!                 condition holds              held for `for`
//!   inactive ───────────────────────► pending ───────────────► firing ──► (event: firing)
//!      ▲                                 │                        │
//!      └──────── condition fails ────────┘      condition fails   └──────► (event: resolved)
//! ```
//!
//! A rule watches one value per series (e.g. per service) per window. A series becomes
//! *pending* at the start of the first window where the condition holds, and *firing* at the
//! close of the window in which it has held, window after window, for the rule's `for`
//! duration (with `for = 0`, at once). One firing event is emitted per episode; the
//! fingerprint (rule and series) is stable, and the event id is the fingerprint plus the
//! episode's start, so re-emitting after a restart is recognisably the same event. The state
//! is a small serialisable value ([`RuleState`]), restored on restart so a running episode
//! neither fires twice nor loses its resolution.
//!
//! A series absent from a window (no data) counts as the condition not holding: report it
//! with [`RuleEvaluator::absent`] so a pending series resets and a firing one resolves.
//!
//! **Above usual.** A rule whose signal is a share of the window's rows (an error rate) can
//! fire on a share well above the series' own usual one rather than above a fixed threshold:
//! the usual share is the series' hits over its rows, each window weighted down by
//! `e^(-age / 1h)`, with a prior of twenty rows at 5%. After half an hour of history, a window
//! holds when it has a hit, its share is at least [`MIN_RISE`] times the usual, and chance
//! explains it less than one time in ten (the bound below, at [`RUN_LEVEL`]; once firing, the
//! first two suffice). The series fires once it has held for `for` and the run of holding
//! windows, taken as one, is well above: at least [`MIN_HITS`] hits and the Chernoff bound on
//! the binomial tail, `P(X >= hits) <= exp(-rows * KL(share || usual))`, below one in a
//! thousand (as for [`BASELINE_LEVEL`]); until then it stays pending. Volume counts: three
//! failures in ten requests of a service that never fails fire, three in a thousand do not,
//! and a service failing steadily at 12% fires only when it fails clearly more. Duration
//! counts too: with a `for` longer than a window, a one-minute burst does not fire however
//! large, and a rise too small to fire in one window fires when it lasts. A firing series
//! keeps firing while its share stays above twice the usual (hysteresis against flapping: it
//! need not stay beyond chance). Every window, holding or not, then joins the usual, so a
//! lasting change becomes the new normal within a few hours.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vigil_core::time::micros;
use vigil_core::units::format_duration;

use crate::baseline::{BaselineConfig, BaselineDetector};
use crate::event::{AnomalyEvent, Status};
use crate::spec::{Condition, SeriesLimits, Severity};

/// A baseline rule's condition holds while the series' [deviation](BaselineDetector::deviation)
/// is at least this: a value the learned baseline makes less likely than one in a thousand.
pub const BASELINE_LEVEL: f64 = 0.999;

/// Hits (e.g. failures) a window needs before an `above usual` rule can hold.
pub const MIN_HITS: f64 = 3.0;
/// How many times its usual share a window's share must be for an `above usual` rule to hold:
/// a busy service's rise from 0.3% to 0.5% may be beyond chance, but it is no incident.
pub const MIN_RISE: f64 = 2.0;
/// A window joins an `above usual` run when chance explains it less often than this (its own
/// Chernoff bound below one in ten): one failure among fifty requests of a service that fails
/// 0.5% of them is no start of a fault.
const RUN_LEVEL: f64 = 0.9;
/// How fast an `above usual` rule forgets: a window's weight falls by e every hour.
const USUAL_HORIZON: f64 = 3600.0 * 1e6;
/// History an `above usual` rule needs of a series before it can hold: half its horizon. A
/// few minutes of a busy service without failures make a usual of nearly zero, and its
/// first handful of failures would all look like a rise.
const WARM_UP: i64 = 1800 * 1_000_000;
/// The prior of an `above usual` rule's usual share: this many rows at [`PRIOR_SHARE`] (the
/// seed's 5% error-rate threshold), so a series just seen does not fire on its first failures.
const PRIOR_ROWS: f64 = 20.0;
const PRIOR_SHARE: f64 = 0.05;

/// What an `above usual` rule has learned of one series: its hits and rows, each window's
/// weight falling with its age.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Usual {
    /// Weighted hits.
    pub hits: f64,
    /// Weighted rows.
    pub rows: f64,
    /// Start of the last window learned, µs.
    pub at: i64,
    /// Start of the first window learned, µs.
    #[serde(default)]
    pub since: i64,
    /// Hits and rows of the current run of windows above the usual (see
    /// [`step`](Self::step)); zero outside one.
    #[serde(default)]
    pub run_hits: f64,
    /// Rows of that run.
    #[serde(default)]
    pub run_rows: f64,
}

impl Usual {
    /// The usual share, with its prior.
    fn share(&self) -> f64 {
        ((self.hits + PRIOR_ROWS * PRIOR_SHARE) / (self.rows + PRIOR_ROWS)).clamp(1e-4, 0.999)
    }

    /// Judges the window starting at `start` with `hits` of `rows` (more than none), then
    /// learns it. Returns whether it holds and whether the run of holding windows it ends is
    /// well above: at least [`MIN_HITS`] hits over the run and the binomial tail's Chernoff
    /// bound below one in a thousand (see the module docs). A window holds with some hits, a
    /// share at least [`MIN_RISE`] times the usual and, unless the series is `firing` already
    /// (hysteresis), chance explaining it less often than [`RUN_LEVEL`].
    fn step(&mut self, start: i64, hits: f64, rows: f64, firing: bool) -> (bool, bool) {
        let usual = self.share();
        let share = hits / rows;
        let above = hits >= 1.0
            && share >= MIN_RISE * usual
            && (firing || rows * kl(share, usual) >= (1.0 - RUN_LEVEL).recip().ln())
            && start.saturating_sub(self.since) >= WARM_UP;
        if above {
            self.run_hits += hits;
            self.run_rows += rows;
        } else {
            self.end_run();
        }
        let well_above = above
            && self.run_hits >= MIN_HITS
            && self.run_rows * kl(self.run_hits / self.run_rows, usual)
                >= (1.0 - BASELINE_LEVEL).recip().ln();
        self.learn(start, hits, rows);
        (above, well_above)
    }

    /// A window that does not hold (or says nothing) ends the run.
    fn end_run(&mut self) {
        self.run_hits = 0.0;
        self.run_rows = 0.0;
    }

    /// Learns the window starting at `start`.
    fn learn(&mut self, start: i64, hits: f64, rows: f64) {
        let age = start.saturating_sub(self.at).max(0) as f64;
        let keep = (-age / USUAL_HORIZON).exp();
        self.hits = self.hits * keep + hits;
        self.rows = self.rows * keep + rows;
        self.at = self.at.max(start);
    }
}

/// Kullback–Leibler divergence of Bernoulli(`a`) from Bernoulli(`b`), `b` in (0, 1).
fn kl(a: f64, b: f64) -> f64 {
    let term = |x: f64, y: f64| if x > 0.0 { x * (x / y).ln() } else { 0.0 };
    term(a, b) + term(1.0 - a, 1.0 - b)
}

/// A rule on one signal.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Name, e.g. `Token Service Errors`.
    pub name: String,
    /// Severity of its alerts.
    pub severity: Severity,
    /// When the condition holds.
    pub condition: Condition,
    /// The value of a window in which a series seen before has no rows (e.g. 0 for a
    /// count); `None`: such a window never holds.
    pub no_data: Option<f64>,
    /// Length of the windows the signal is computed over.
    pub window: Duration,
    /// How long the condition must hold before the alert fires.
    pub for_: Duration,
    /// How long a firing alert keeps firing once the condition stopped holding.
    pub keep_firing_for: Duration,
    /// Labels added to every event.
    pub labels: BTreeMap<String, String>,
    /// Annotations (summary, runbook URL) added to every event.
    pub annotations: BTreeMap<String, String>,
}

/// Where one series of a rule stands.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum SeriesState {
    /// The condition held from `since` (a window start), not yet for `for`.
    Pending {
        /// Start of the first window in which it held, µs since the epoch.
        since: i64,
    },
    /// The alert is firing since `since`.
    Firing {
        /// Start of the first window in which it held, µs since the epoch.
        since: i64,
        /// With `keep_firing_for`: start of the first window since which it has not held.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quiet_since: Option<i64>,
    },
}

/// Where a rule's series stand: every series not inactive.
pub type RuleState = BTreeMap<String, SeriesState>;

/// Everything a rule has learned, serialisable for checkpoints: its series' states and, for
/// baseline rules and rules with `no_data`, each series' detector and the series seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    /// Series pending or firing.
    pub series: RuleState,
    /// Baseline rules: each series' detector.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub baselines: BTreeMap<String, BaselineDetector>,
    /// `above usual` rules: each series' usual share.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub usual: BTreeMap<String, Usual>,
    /// Rules with `no_data`: every series seen.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub seen: std::collections::BTreeSet<String>,
    /// Baseline rules and rules with `no_data`: the start of the last window in which each
    /// series had rows, for [eviction](RuleEvaluator::evict).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub last_seen: BTreeMap<String, i64>,
}

/// A transition that becomes an anomaly event.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The series (e.g. the service).
    pub series: String,
    /// Firing or resolved.
    pub status: Status,
    /// The signal's value in the window that caused the transition.
    pub value: f64,
    /// When the episode started (first window in which the condition held).
    pub starts_at: i64,
    /// When it ended (end of the first window in which it no longer held), if resolved.
    pub ends_at: Option<i64>,
    /// For a baseline rule, the series' deviation in that window.
    pub deviation: Option<f64>,
}

/// Evaluates one rule over the values of its series, window by window.
#[derive(Debug, Clone)]
pub struct RuleEvaluator {
    rule: Rule,
    /// Everything it has learned: what a checkpoint saves.
    saved: Saved,
    /// How many series it may remember, and for how long without rows.
    limits: SeriesLimits,
    /// Series forgotten so far because of `limits`.
    forgotten: u64,
}

impl RuleEvaluator {
    /// A rule with nothing pending or firing.
    pub fn new(rule: Rule) -> Self {
        Self::restore(rule, RuleState::new())
    }

    /// A rule resumed from a checkpoint of its series' state alone.
    pub fn restore(rule: Rule, series: RuleState) -> Self {
        Self::resume(
            rule,
            Saved {
                series,
                ..Saved::default()
            },
        )
    }

    /// The rule.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// Where its series stand.
    pub fn state(&self) -> &RuleState {
        &self.saved.series
    }

    /// Series pending (holding, not yet for `for`), with the start of their first window that
    /// held.
    pub fn pending(&self) -> impl Iterator<Item = (&str, i64)> {
        self.saved
            .series
            .iter()
            .filter_map(|(s, state)| match state {
                SeriesState::Pending { since } => Some((s.as_str(), *since)),
                SeriesState::Firing { .. } => None,
            })
    }

    /// Everything to checkpoint.
    pub fn save(&self) -> &Saved {
        &self.saved
    }

    /// A rule resumed from [`save`](Self::save). Detectors that do not fit this build start
    /// afresh.
    pub fn resume(rule: Rule, mut saved: Saved) -> Self {
        saved.baselines.retain(|_, d| d.is_consistent());
        Self {
            rule,
            saved,
            limits: SeriesLimits::default(),
            forgotten: 0,
        }
    }

    /// Bounds the series it remembers (default [`SeriesLimits::default`]): at the cap, a new
    /// series first makes room by forgetting the longest silent ones.
    pub fn set_limits(&mut self, limits: SeriesLimits) {
        self.limits = limits;
    }

    /// Its limits.
    pub fn limits(&self) -> SeriesLimits {
        self.limits
    }

    /// [`evict`](Self::evict) by its own limits, at the close of the window starting `now`.
    pub fn forget_silent(&mut self, now: i64) -> u64 {
        let SeriesLimits { max, ttl } = self.limits;
        self.evict(now, micros(ttl), max)
    }

    /// Series forgotten so far because of its [`SeriesLimits`].
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// The value of `series` in the window `[window_start, window_start + window)`, which has
    /// just closed. Returns the transition it causes, if any. NaN never holds, nor does an
    /// `above usual` rule's value without its rows (see [`observe_rows`](Self::observe_rows)).
    pub fn observe(&mut self, series: &str, window_start: i64, value: f64) -> Option<Transition> {
        self.observe_rows(series, window_start, value, f64::NAN)
    }

    /// [`observe`](Self::observe) with the number of rows the value was computed over.
    pub fn observe_rows(
        &mut self,
        series: &str,
        window_start: i64,
        value: f64,
        rows: f64,
    ) -> Option<Transition> {
        if self.remembers() {
            match self.saved.last_seen.get_mut(series) {
                Some(t) => *t = (*t).max(window_start),
                None => {
                    // At the cap, make room for an eighth more before remembering a new one:
                    // a window of a million one-off names holds no more than the cap.
                    let max = self.limits.max;
                    if self.saved.last_seen.len() >= max {
                        let ttl = micros(self.limits.ttl);
                        self.evict(window_start, ttl, max.saturating_sub(max / 8 + 1));
                    }
                    self.saved
                        .last_seen
                        .insert(series.to_string(), window_start);
                }
            }
        }
        self.evaluate(series, window_start, value, rows)
    }

    /// Whether the rule keeps state per series beyond pending and firing ones.
    fn remembers(&self) -> bool {
        self.rule.no_data.is_some()
            || matches!(
                self.rule.condition,
                Condition::Baseline | Condition::AboveUsual
            )
    }

    fn evaluate(
        &mut self,
        series: &str,
        window_start: i64,
        value: f64,
        rows: f64,
    ) -> Option<Transition> {
        let window_end = window_start.saturating_add(micros(self.rule.window));
        if self.rule.no_data.is_some() && !self.saved.seen.contains(series) {
            self.saved.seen.insert(series.to_string());
        }
        // `ready`: whether a series that has held for `for` may fire (an `above usual` run
        // must also be well above as a whole).
        let (holds, ready, deviation) = match self.rule.condition {
            Condition::Threshold {
                comparison,
                threshold,
            } => (comparison.holds(value, threshold), true, None),
            Condition::Baseline => {
                let d = self
                    .saved
                    .baselines
                    .entry(series.to_string())
                    .or_insert_with(|| BaselineDetector::new(BaselineConfig::default()));
                d.score(window_start, value);
                (
                    d.deviation() >= BASELINE_LEVEL && d.departs(),
                    true,
                    Some(d.deviation()),
                )
            }
            Condition::AboveUsual => {
                if !(value.is_finite() && rows > 0.0) {
                    return self.says_nothing(series, window_start);
                }
                let firing = matches!(
                    self.saved.series.get(series),
                    Some(SeriesState::Firing { .. })
                );
                let u = self.saved.usual.entry(series.to_string()).or_insert(Usual {
                    hits: 0.0,
                    rows: 0.0,
                    at: window_start,
                    since: window_start,
                    run_hits: 0.0,
                    run_rows: 0.0,
                });
                let hits = (value * rows).round().clamp(0.0, rows);
                let (above, well_above) = u.step(window_start, hits, rows, firing);
                (above, well_above, None)
            }
        };
        if !holds {
            return self
                .not_holding(series, window_end, value)
                .map(|t| Transition { deviation, ..t });
        }
        let state = &mut self.saved.series;
        let since = match state.get_mut(series) {
            Some(SeriesState::Firing { quiet_since, .. }) => {
                *quiet_since = None;
                return None;
            }
            Some(SeriesState::Pending { since }) => *since,
            None => window_start,
        };
        if window_end - since >= micros(self.rule.for_) && ready {
            state.insert(
                series.to_string(),
                SeriesState::Firing {
                    since,
                    quiet_since: None,
                },
            );
            Some(Transition {
                series: series.to_string(),
                status: Status::Firing,
                value,
                starts_at: since,
                ends_at: None,
                deviation,
            })
        } else {
            state.insert(series.to_string(), SeriesState::Pending { since });
            None
        }
    }

    /// `series` had no value in the window starting at `window_start` (no data): the
    /// rule's `no_data` value if it has one, else a window that does not hold (for an `above
    /// usual` rule, one that [says nothing](Self::says_nothing)).
    pub fn absent(&mut self, series: &str, window_start: i64) -> Option<Transition> {
        if let Some(v) = self.rule.no_data {
            return self.evaluate(series, window_start, v, 0.0);
        }
        if self.rule.condition == Condition::AboveUsual {
            return self.says_nothing(series, window_start);
        }
        let window_end = window_start.saturating_add(micros(self.rule.window));
        self.not_holding(series, window_end, f64::NAN)
    }

    /// An `above usual` rule's window without rows (or a value without its rows) says
    /// nothing either way: a low-volume series' run of windows above the usual, and its
    /// pending episode, go on through it, as a rate over a range goes on through a scrape
    /// without requests. Not through a silence as long as `for`: the run is then over, and
    /// the window does not hold.
    fn says_nothing(&mut self, series: &str, window_start: i64) -> Option<Transition> {
        if let Some(u) = self.saved.usual.get_mut(series) {
            let pending = matches!(
                self.saved.series.get(series),
                Some(SeriesState::Pending { .. })
            );
            if pending && window_start.saturating_sub(u.at) < micros(self.rule.for_) {
                return None;
            }
            u.end_run();
        }
        let window_end = window_start.saturating_add(micros(self.rule.window));
        self.not_holding(series, window_end, f64::NAN)
    }

    /// Series whose absence from a window must be reported with [`absent`](Self::absent):
    /// those pending or firing and, with `no_data`, every series seen.
    pub fn reported_series(&self) -> impl Iterator<Item = &str> {
        let Saved { series, seen, .. } = &self.saved;
        let more = seen.iter().filter(|s| !series.contains_key(*s));
        series.keys().chain(more).map(String::as_str)
    }

    /// Forgets series that have had no rows since `now - ttl`, and, beyond `max` series, the
    /// longest silent first; never a series pending or firing (its episode must end with a
    /// resolution). Returns how many were forgotten. Series a rule remembers are bounded:
    /// one-off names (a flood of bad service names) do not hold memory or cost work in every
    /// later window.
    pub fn evict(&mut self, now: i64, ttl: i64, max: usize) -> u64 {
        if !self.remembers() {
            return 0;
        }
        let Saved {
            series,
            baselines,
            usual,
            seen,
            last_seen,
        } = &mut self.saved;
        // Series of a checkpoint written before `last_seen` existed count as seen now.
        for s in baselines.keys().chain(usual.keys()).chain(seen.iter()) {
            if !last_seen.contains_key(s) {
                last_seen.insert(s.clone(), now);
            }
        }
        let cutoff = now.saturating_sub(ttl);
        let mut gone: Vec<String> = last_seen
            .iter()
            .filter(|&(s, &t)| t < cutoff && !series.contains_key(s))
            .map(|(s, _)| s.clone())
            .collect();
        let over = last_seen
            .len()
            .saturating_sub(gone.len())
            .saturating_sub(max);
        if over > 0 {
            let mut silent: Vec<(i64, &String)> = last_seen
                .iter()
                .filter(|&(s, &t)| t >= cutoff && !series.contains_key(s))
                .map(|(s, &t)| (t, s))
                .collect();
            silent.sort_unstable();
            gone.extend(silent.into_iter().take(over).map(|(_, s)| s.clone()));
        }
        for s in &gone {
            last_seen.remove(s);
            baselines.remove(s);
            usual.remove(s);
            seen.remove(s);
        }
        self.forgotten += gone.len() as u64;
        gone.len() as u64
    }

    /// Series the rule remembers (beyond pending and firing ones).
    pub fn remembered(&self) -> usize {
        self.saved.last_seen.len()
    }

    /// The window ending at `window_end` did not hold: a pending series is dropped, a firing
    /// one resolves once it has not held for `keep_firing_for`.
    fn not_holding(&mut self, series: &str, window_end: i64, value: f64) -> Option<Transition> {
        let window_start = window_end.saturating_sub(micros(self.rule.window));
        let keep = micros(self.rule.keep_firing_for);
        match self.saved.series.get_mut(series)? {
            SeriesState::Pending { .. } => {
                self.saved.series.remove(series);
                None
            }
            SeriesState::Firing { since, quiet_since } => {
                let quiet = *quiet_since.get_or_insert(window_start);
                if window_end.saturating_sub(quiet) < keep.max(1) {
                    return None;
                }
                let since = *since;
                self.saved.series.remove(series);
                Some(Transition {
                    series: series.to_string(),
                    status: Status::Resolved,
                    value,
                    starts_at: since,
                    ends_at: Some(window_end),
                    deviation: None,
                })
            }
        }
    }

    /// The anomaly event of a transition, detected at `detected_at`.
    pub fn event(&self, t: &Transition, detected_at: i64) -> AnomalyEvent {
        self.rule.event(t, detected_at)
    }
}

impl Rule {
    /// The anomaly event of a transition of one of this rule's series, detected at
    /// `detected_at`.
    pub fn event(&self, t: &Transition, detected_at: i64) -> AnomalyEvent {
        let fingerprint = fingerprint(&self.name, &t.series);
        let (kind, threshold) = match self.condition {
            Condition::Threshold { threshold, .. } => ("threshold", Some(threshold)),
            // Judged against the series' own usual level, as the contract's `baseline` is.
            Condition::Baseline | Condition::AboveUsual => ("baseline", None),
        };
        let mut annotations = self.annotations.clone();
        if let Some(d) = t.deviation {
            annotations.insert("deviation".into(), format!("{d:.4}"));
        }
        AnomalyEvent {
            id: format!("{fingerprint}-{}", t.starts_at),
            fingerprint,
            status: t.status,
            rule: self.name.clone(),
            kind: kind.into(),
            severity: self.severity,
            service: t.series.clone(),
            value: t.value.is_finite().then_some(t.value),
            threshold,
            window: format_duration(self.window),
            for_: format_duration(self.for_),
            starts_at: t.starts_at,
            ends_at: t.ends_at,
            detected_at,
            labels: self.labels.clone(),
            annotations,
            incident: None,
        }
    }
}

/// A stable identifier of a rule's series: 16 hex digits of FNV-1a over the rule name and the
/// series, so every replica and every restart computes the same one.
pub fn fingerprint(rule: &str, series: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in rule.bytes().chain([0xff]).chain(series.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Comparison;

    const MIN: i64 = 60_000_000;

    /// The seed's Token Service Errors: error rate > 5% for 10 minutes, P2, 1-minute windows.
    /// A baseline rule on a count, with `no_data = 0` and a 2-minute `for`.
    fn request_rate() -> Rule {
        Rule {
            name: "Request Rate Anomaly".into(),
            condition: Condition::Baseline,
            no_data: Some(0.0),
            for_: Duration::from_secs(120),
            ..token_errors()
        }
    }

    fn token_errors() -> Rule {
        Rule {
            name: "Token Service Errors".into(),
            severity: Severity::P2,
            condition: Condition::Threshold {
                comparison: Comparison::Above,
                threshold: 0.05,
            },
            no_data: None,
            window: Duration::from_secs(60),
            for_: Duration::from_secs(600),
            keep_firing_for: Duration::ZERO,
            labels: BTreeMap::from([("team".into(), "platform".into())]),
            annotations: BTreeMap::from([("summary".into(), "token-service errors".into())]),
        }
    }

    /// Feeds one value per minute from `t0`; returns (minute index, transition).
    fn feed(e: &mut RuleEvaluator, values: &[f64]) -> Vec<(usize, Transition)> {
        let t0 = 1_748_854_800_000_000; // 2025-06-02T09:00:00Z
        values
            .iter()
            .enumerate()
            .filter_map(|(i, &v)| {
                e.observe("token-service", t0 + i as i64 * MIN, v)
                    .map(|t| (i, t))
            })
            .collect()
    }

    #[test]
    fn fires_when_the_condition_held_for_every_window_of_for_and_resolves_after() {
        let mut e = RuleEvaluator::new(token_errors());
        // Holding for five windows is pending since the first of them (evidence for incidents).
        let mut pending = RuleEvaluator::new(token_errors());
        feed(&mut pending, &[0.01, 0.01, 0.01, 0.2, 0.2, 0.2, 0.2, 0.2]);
        let t3 = 1_748_854_800_000_000 + 3 * MIN;
        assert_eq!(
            pending.pending().collect::<Vec<_>>(),
            [("token-service", t3)]
        );
        let mut values = vec![0.01; 3];
        values.extend([0.2; 12]);
        values.extend([0.01; 3]);
        let events = feed(&mut e, &values);
        assert_eq!(e.pending().count(), 0, "resolved: nothing pending");
        assert_eq!(events.len(), 2, "{events:?}");
        // Held from minute 3; the 10th holding window (minute 12) closes 10 minutes later.
        assert_eq!(events[0].0, 12);
        assert_eq!(events[0].1.status, Status::Firing);
        assert_eq!(events[0].1.starts_at, 1_748_854_800_000_000 + 3 * MIN);
        // Resolved at the close of the first window where it no longer holds (minute 15).
        assert_eq!(events[1].0, 15);
        assert_eq!(events[1].1.status, Status::Resolved);
        assert_eq!(events[1].1.ends_at, Some(1_748_854_800_000_000 + 16 * MIN));
    }

    #[test]
    fn keep_firing_for_fires_a_flapping_signal_once_and_resolves_after_a_quiet_stretch() {
        let rule = Rule {
            for_: Duration::from_secs(120),
            keep_firing_for: Duration::from_secs(300),
            ..token_errors()
        };
        // Around the threshold, quiet for up to four minutes at a time, then quiet for good.
        let mut values = vec![0.2; 3];
        for _ in 0..5 {
            values.extend([0.01; 4]);
            values.extend([0.2; 2]);
        }
        values.extend([0.01; 8]);
        let events = feed(&mut RuleEvaluator::new(rule.clone()), &values);
        let statuses: Vec<Status> = events.iter().map(|(_, t)| t.status).collect();
        assert_eq!(statuses, [Status::Firing, Status::Resolved], "{events:?}");
        // Quiet from minute 33 (the 34th value): resolved as the fifth quiet window closes.
        assert_eq!(events[1].0, 37);
        assert_eq!(events[1].1.ends_at, Some(1_748_854_800_000_000 + 38 * MIN));
        // Without it, the same signal fires and resolves again and again.
        let flapping = feed(
            &mut RuleEvaluator::new(Rule {
                keep_firing_for: Duration::ZERO,
                ..rule.clone()
            }),
            &values,
        );
        assert_eq!(flapping.len(), 12, "{flapping:?}");
        // The quiet stretch survives a checkpoint: resumed mid-way, it resolves on time.
        let mut e = RuleEvaluator::new(rule.clone());
        let cut = 36;
        feed(&mut e, &values[..cut]);
        let saved: Saved = serde_json::from_str(&serde_json::to_string(e.save()).unwrap()).unwrap();
        let mut resumed = RuleEvaluator::resume(rule, saved);
        let t0 = 1_748_854_800_000_000;
        let rest: Vec<(usize, Transition)> = values[cut..]
            .iter()
            .enumerate()
            .filter_map(|(i, &v)| {
                let at = cut + i;
                resumed
                    .observe("token-service", t0 + at as i64 * MIN, v)
                    .map(|t| (at, t))
            })
            .collect();
        assert_eq!(rest.len(), 1, "{rest:?}");
        assert_eq!(rest[0].0, 37);
    }

    #[test]
    fn a_spike_shorter_than_for_fires_nothing() {
        let mut e = RuleEvaluator::new(token_errors());
        let mut values = vec![0.2; 9];
        values.push(0.0);
        values.extend([0.2; 9]);
        assert!(feed(&mut e, &values).is_empty());
        assert!(e.state().contains_key("token-service"), "pending again");
    }

    #[test]
    fn one_firing_per_episode_and_none_again_after_a_restart() {
        let mut e = RuleEvaluator::new(token_errors());
        let firing = feed(&mut e, &[0.2; 11]);
        assert_eq!(firing.len(), 1);
        // Checkpoint, restart, carry on with the same episode: no second firing event.
        let saved = serde_json::to_string(e.state()).unwrap();
        let mut restarted =
            RuleEvaluator::restore(token_errors(), serde_json::from_str(&saved).unwrap());
        let t0 = 1_748_854_800_000_000;
        assert_eq!(restarted.observe("token-service", t0 + 11 * MIN, 0.3), None);
        let resolved = restarted
            .observe("token-service", t0 + 12 * MIN, 0.0)
            .expect("the resolution survives the restart");
        assert_eq!(resolved.status, Status::Resolved);
        let a = e.event(&firing[0].1, t0 + 11 * MIN);
        let b = restarted.event(&resolved, t0 + 13 * MIN);
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.id, b.id, "the same episode");
    }

    #[test]
    fn no_data_resolves_a_firing_series_and_resets_a_pending_one() {
        let mut e = RuleEvaluator::new(token_errors());
        feed(&mut e, &[0.2; 10]);
        let t0 = 1_748_854_800_000_000;
        let t = e.absent("token-service", t0 + 10 * MIN).expect("resolved");
        assert_eq!(t.status, Status::Resolved);
        assert!(t.value.is_nan());
        let mut p = RuleEvaluator::new(token_errors());
        feed(&mut p, &[0.2; 5]);
        assert_eq!(p.absent("token-service", t0 + 5 * MIN), None);
        assert!(p.state().is_empty());
    }

    #[test]
    fn for_zero_fires_on_the_first_holding_window_and_nan_never_holds() {
        let mut rule = token_errors();
        rule.for_ = Duration::ZERO;
        let mut e = RuleEvaluator::new(rule);
        assert!(feed(&mut e, &[f64::NAN, f64::NAN]).is_empty());
        let mut e2 = e.clone();
        let t0 = 1_748_854_800_000_000;
        assert_eq!(
            e2.observe("token-service", t0, 0.5).map(|t| t.status),
            Some(Status::Firing)
        );
    }

    #[test]
    fn events_have_the_fields_of_the_anomaly_contract() {
        let mut e = RuleEvaluator::new(token_errors());
        let events = feed(&mut e, &[0.2; 10]);
        let ev = e.event(&events[0].1, 1_748_855_400_500_000);
        let json: serde_json::Value = serde_json::to_value(&ev).unwrap();
        for key in [
            "id",
            "fingerprint",
            "status",
            "rule",
            "kind",
            "severity",
            "service",
            "value",
            "threshold",
            "window",
            "for",
            "starts_at",
            "ends_at",
            "detected_at",
            "labels",
            "annotations",
            "incident",
        ] {
            assert!(json.get(key).is_some(), "missing `{key}` in {json}");
        }
        assert_eq!(json["status"], "firing");
        assert_eq!(json["severity"], "P2");
        assert_eq!(json["window"], "1m");
        assert_eq!(json["for"], "10m");
        assert_eq!(json["starts_at"], "2025-06-02T09:00:00.000Z");
        assert_eq!(json["ends_at"], serde_json::Value::Null);
        assert_eq!(json["kind"], "threshold");
        assert_eq!(
            ev.fingerprint,
            fingerprint("Token Service Errors", "token-service")
        );
        assert_ne!(
            ev.fingerprint,
            fingerprint("Token Service Errors", "api-gateway")
        );
    }

    #[test]
    fn a_baseline_rule_fires_when_a_count_stops_and_resolves_when_it_is_back() {
        let rule = request_rate();
        let mut e = RuleEvaluator::new(rule);
        let t0 = 1_748_854_800_000_000;
        let mut events = Vec::new();
        let mut x = 7u64;
        for i in 0..200 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let normal = 100.0 + ((x >> 33) % 21) as f64 - 10.0;
            let start = t0 + i * MIN;
            // Minutes 150..160: no rows at all, which `no_data` makes a count of 0.
            let t = if (150..160).contains(&i) {
                assert!(
                    e.reported_series().any(|s| s == "token-service"),
                    "still known"
                );
                e.absent("token-service", start)
            } else {
                e.observe("token-service", start, normal)
            };
            events.extend(t.map(|t| (i, t)));
        }
        let got: Vec<_> = events.iter().map(|(i, t)| (*i, t.status)).collect();
        // Fires at the close of the second window without rows (`for` = 2 windows), and
        // resolves once the count is back and the baseline's short-term mean settles.
        assert_eq!(got.len(), 2, "{events:?}");
        assert_eq!(got[0], (151, Status::Firing));
        assert_eq!(got[1].1, Status::Resolved);
        assert!((160..168).contains(&got[1].0), "{got:?}");
        let ev = e.event(&events[0].1, t0);
        assert_eq!(ev.kind, "baseline");
        assert_eq!(ev.threshold, None);
        assert_eq!(ev.value, Some(0.0));
        assert!(
            ev.annotations["deviation"].starts_with("0.99")
                || ev.annotations["deviation"] == "1.0000"
        );
    }

    #[test]
    fn a_baseline_rule_holds_only_while_its_samples_stay_away_so_one_spike_does_not_fire_it() {
        // A p95 latency of about 6 ms; `for` = 3 windows. One minute at 260 ms (a single
        // slow request) keeps the mean of the last few residuals far out for several
        // minutes after it, while every later sample is back to normal: the rule must not
        // fire on it. The same 260 ms held for four minutes fires at the third.
        let run = |spike: std::ops::Range<i64>| {
            let mut e = RuleEvaluator::new(Rule {
                name: "Service Latency".into(),
                condition: Condition::Baseline,
                for_: Duration::from_secs(180),
                ..token_errors()
            });
            let t0 = 1_748_854_800_000_000;
            let mut x = 11u64;
            let mut fired = Vec::new();
            for i in 0..300 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let normal = 6.0 + ((x >> 33) % 100) as f64 / 50.0 - 1.0;
                let v = if spike.contains(&i) { 260.0 } else { normal };
                if let Some(t) = e.observe("svc", t0 + i * MIN, v)
                    && t.status == Status::Firing
                {
                    fired.push(i);
                }
            }
            fired
        };
        assert_eq!(run(200..201), Vec::<i64>::new(), "one spike");
        assert_eq!(run(200..204).first(), Some(&202), "four minutes away");
    }

    #[test]
    fn a_baseline_rule_resumed_from_a_checkpoint_goes_on_as_if_never_stopped() {
        let rule = request_rate();
        let t0 = 1_748_854_800_000_000;
        let value = |i: i64| {
            if (150..160).contains(&i) {
                5.0
            } else {
                100.0 + (i * 37 % 21) as f64 - 10.0
            }
        };
        let run = |e: &mut RuleEvaluator, range: std::ops::Range<i64>| -> Vec<(i64, Status)> {
            range
                .filter_map(|i| {
                    e.observe("token-service", t0 + i * MIN, value(i))
                        .map(|t| (i, t.status))
                })
                .collect()
        };
        let mut straight = RuleEvaluator::new(rule.clone());
        let expected = run(&mut straight, 0..200);
        assert_eq!(expected.len(), 2, "{expected:?}");
        // Stopped after minute 152 (mid-drop, firing), saved as JSON, resumed.
        let mut first = RuleEvaluator::new(rule.clone());
        let mut got = run(&mut first, 0..153);
        let json = serde_json::to_string(first.save()).unwrap();
        let mut resumed = RuleEvaluator::resume(rule, serde_json::from_str(&json).unwrap());
        got.extend(run(&mut resumed, 153..200));
        assert_eq!(got, expected);
        assert_eq!(resumed.save(), straight.save());
    }

    #[test]
    fn silent_series_are_forgotten_after_the_ttl_and_the_most_silent_beyond_the_cap() {
        let mut e = RuleEvaluator::new(request_rate());
        let t0 = 1_748_854_800_000_000;
        // 1,000 one-off services in the first window, then one steady service.
        for i in 0..1_000 {
            e.observe(&format!("once-{i}"), t0, 3.0);
        }
        for i in 0..30 {
            e.observe("steady", t0 + i * MIN, 100.0);
        }
        assert_eq!(e.remembered(), 1_001);
        // Over the cap of 100: the most silent go first, the steady one stays.
        assert_eq!(e.evict(t0 + 30 * MIN, 3_600 * 1_000_000, 100), 901);
        assert_eq!(e.remembered(), 100);
        assert!(e.save().last_seen.contains_key("steady"));
        for i in 30..120 {
            e.observe("steady", t0 + i * MIN, 100.0);
        }
        // Silent for longer than the TTL: forgotten, baselines and all.
        assert_eq!(e.evict(t0 + 120 * MIN, 3_600 * 1_000_000, 100), 99);
        assert_eq!(e.remembered(), 1);
        assert_eq!(e.save().baselines.len(), 1);
        // A firing series is never forgotten: its resolution is still owed.
        let mut e = RuleEvaluator::new(request_rate());
        for i in 0..200 {
            e.observe("x", t0 + i * MIN, 100.0 + (i % 7) as f64);
        }
        let fired = (200..203).any(|i| e.observe("x", t0 + i * MIN, 0.0).is_some());
        assert!(fired);
        assert_eq!(e.evict(t0 + 10_000 * MIN, MIN, 0), 0);
        assert_eq!(e.remembered(), 1);
    }

    #[test]
    fn a_flood_of_new_series_in_one_window_never_holds_more_than_the_cap() {
        let mut e = RuleEvaluator::new(request_rate());
        e.set_limits(SeriesLimits {
            max: 100,
            ttl: std::time::Duration::from_secs(86_400),
        });
        let t0 = 1_748_854_800_000_000;
        for i in 0..10_000 {
            e.observe(&format!("once-{i}"), t0, 1.0);
            assert!(e.remembered() <= 100);
        }
        assert!(e.save().baselines.len() <= 100);
        assert!(e.forgotten() >= 9_900);
    }

    #[test]
    fn extreme_values_keep_the_checkpoint_loadable() {
        let mut e = RuleEvaluator::new(request_rate());
        let t0 = 1_748_854_800_000_000;
        for (i, v) in [1e308, -1e308, f64::MAX, 5.0, f64::INFINITY, f64::NAN, 7.0]
            .into_iter()
            .enumerate()
        {
            e.observe("svc", t0 + i as i64 * MIN, v);
        }
        let json = serde_json::to_string(e.save()).unwrap();
        assert!(!json.contains("null"), "{json}");
        let back: Saved = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, e.save());
    }

    /// The error rate judged against the service's own usual share, one-minute windows and
    /// `for = 1m`.
    fn errors_above_usual() -> Rule {
        Rule {
            name: "Error Rate".into(),
            condition: Condition::AboveUsual,
            for_: Duration::from_secs(60),
            ..token_errors()
        }
    }

    /// Feeds `(failures, requests)` per minute from minute `from` after `t0`; returns (index
    /// into `windows`, status).
    fn feed_rows(e: &mut RuleEvaluator, from: i64, windows: &[(u32, u32)]) -> Vec<(usize, Status)> {
        let t0 = 1_748_854_800_000_000 + from * MIN;
        windows
            .iter()
            .enumerate()
            .filter_map(|(i, &(hits, rows))| {
                let share = f64::from(hits) / f64::from(rows.max(1));
                e.observe_rows("svc", t0 + i as i64 * MIN, share, f64::from(rows))
                    .map(|t| (i, t.status))
            })
            .collect()
    }

    #[test]
    fn above_usual_ignores_a_service_failing_at_its_usual_rate_and_fires_when_it_fails_more() {
        let mut e = RuleEvaluator::new(errors_above_usual());
        // Three hours at about 12% of 50 requests a minute, with the usual binomial scatter
        // (3 to 10 failures): a fixed `> 0.05` would fire almost every minute.
        let steady: Vec<(u32, u32)> = (0..180).map(|i| ([6, 3, 9, 5, 7, 10][i % 6], 50)).collect();
        assert!(feed_rows(&mut e, 0, &steady).is_empty());
        // Twice its usual failures for two minutes: well beyond chance at that volume.
        let rise = feed_rows(&mut e, 180, &[(25, 50), (27, 50), (6, 50)]);
        assert_eq!(rise, vec![(0, Status::Firing), (2, Status::Resolved)]);
    }

    #[test]
    fn above_usual_weighs_failures_by_volume() {
        // A service that never fails: three failures of ten requests fire, the same share of
        // two requests (one failure) is too few to mean anything, and three of a thousand
        // are within chance at that volume.
        let quiet: Vec<(u32, u32)> = vec![(0, 10); 120];
        for (window, fires) in [((3, 10), true), ((1, 2), false), ((3, 1000), false)] {
            let mut e = RuleEvaluator::new(errors_above_usual());
            assert!(feed_rows(&mut e, 0, &quiet).is_empty());
            let got = feed_rows(&mut e, 120, &[window]);
            assert_eq!(!got.is_empty(), fires, "{window:?}: {got:?}");
        }
    }

    #[test]
    fn above_usual_waits_for_half_an_hour_of_history() {
        // A busy service quiet for ten minutes, then a handful of failures: far above a usual
        // of nearly nothing, but ten minutes are no usual yet.
        let mut e = RuleEvaluator::new(errors_above_usual());
        assert!(feed_rows(&mut e, 0, &[(0, 500); 10]).is_empty());
        assert!(feed_rows(&mut e, 10, &[(6, 500)]).is_empty());
        assert!(feed_rows(&mut e, 11, &[(0, 500); 30]).is_empty());
        assert_eq!(
            feed_rows(&mut e, 41, &[(6, 500)]),
            vec![(0, Status::Firing)]
        );
    }

    /// An error rate `above usual` with `for = "2m"`, after an hour of `quiet` windows.
    fn two_minute_rule_after(quiet: (u32, u32)) -> RuleEvaluator {
        let mut e = RuleEvaluator::new(Rule {
            for_: Duration::from_secs(120),
            ..errors_above_usual()
        });
        feed_rows(&mut e, 0, &vec![quiet; 60]);
        e
    }

    #[test]
    fn above_usual_judges_a_run_of_windows_as_one_and_a_burst_waits_for_its_for() {
        let quiet = (0, 100);
        // A one-minute burst, however large, is over before `for`: nothing fires.
        let mut e = two_minute_rule_after(quiet);
        assert!(feed_rows(&mut e, 60, &[(30, 100), (0, 100)]).is_empty());
        // Two failures a minute are too few in any one minute, but three minutes of them
        // are well above a usual of none: the run fires, from its first window.
        let mut e = two_minute_rule_after(quiet);
        let got = feed_rows(&mut e, 60, &[(2, 100), (2, 100), (2, 100), (0, 100)]);
        assert_eq!(got, vec![(1, Status::Firing), (3, Status::Resolved)]);
        let pending_from = 1_748_854_800_000_000 + 60 * MIN;
        let mut e2 = two_minute_rule_after(quiet);
        feed_rows(&mut e2, 60, &[(2, 100)]);
        assert_eq!(e2.pending().collect::<Vec<_>>(), [("svc", pending_from)]);
        // Firing, it keeps firing while the share stays above twice its usual, though none
        // of those later windows would fire on its own (hysteresis), and resolves when not.
        let mut e = two_minute_rule_after(quiet);
        let got = feed_rows(
            &mut e,
            60,
            &[(10, 100), (10, 100), (2, 100), (2, 100), (2, 100), (0, 100)],
        );
        assert_eq!(got, vec![(1, Status::Firing), (5, Status::Resolved)]);
    }

    #[test]
    fn above_usual_goes_on_through_a_minute_without_requests() {
        // A service of a few requests a minute; when it fails half of them, some minutes
        // have no requests at all. Such a minute says nothing: the run goes on through it.
        let quiet = (0, 4);
        let mut e = two_minute_rule_after(quiet);
        let got = feed_rows(&mut e, 60, &[(2, 4), (0, 0), (4, 8), (0, 4)]);
        assert_eq!(got, vec![(2, Status::Firing), (3, Status::Resolved)]);
        // The same when the minute is absent from the windows' output altogether.
        let mut e = two_minute_rule_after(quiet);
        let t = 1_748_854_800_000_000 + 60 * MIN;
        assert_eq!(e.observe_rows("svc", t, 0.5, 4.0), None);
        assert_eq!(e.absent("svc", t + MIN), None);
        let fired = e.observe_rows("svc", t + 2 * MIN, 0.5, 8.0).expect("fires");
        assert_eq!((fired.status, fired.starts_at), (Status::Firing, t));
        // A silence as long as `for` ends the run: what follows starts afresh.
        let mut e = two_minute_rule_after(quiet);
        assert!(feed_rows(&mut e, 60, &[(2, 4), (0, 0), (0, 0), (4, 8), (0, 4)]).is_empty());
    }

    #[test]
    fn a_lasting_rise_becomes_the_usual_and_the_alert_resolves() {
        let mut e = RuleEvaluator::new(errors_above_usual());
        feed_rows(&mut e, 0, &vec![(1, 100); 120]);
        let got = feed_rows(&mut e, 120, &vec![(20, 100); 600]);
        assert_eq!(got.first(), Some(&(0, Status::Firing)));
        assert!(
            matches!(got.last(), Some((i, Status::Resolved)) if *i < 400),
            "{got:?}"
        );
        // Its usual survives a checkpoint.
        let json = serde_json::to_string(e.save()).unwrap();
        let back: Saved = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, e.save());
        assert!(back.usual["svc"].rows > 1000.0);
    }
}
