//! `[[rules]]` and `[detect]`: alerting rules, window closing and correlation.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;
use vigil_core::units::format_duration;
use vigil_detect::{Comparison, Condition, CorrelationConfig, RuleSpec, SeriesLimits, Severity};

use super::Validator;
use crate::raw::{RawDetect, RawRule};

/// The longest window or hop a rule may have: event-time arithmetic stays far from
/// overflow, and a window longer than a year is not an alerting window.
const MAX_WINDOW: Duration = Duration::from_secs(366 * 86_400);

impl Validator<'_> {
    pub(super) fn series_limits(&mut self, d: &RawDetect) -> Option<SeriesLimits> {
        let defaults = SeriesLimits::default();
        let ttl = self.duration(&d.series_ttl, defaults.ttl)?;
        let max = d.max_series.unwrap_or(defaults.max);
        if max == 0 {
            self.problem(None, "`detect.max_series` must be at least 1".into());
            return None;
        }
        Some(SeriesLimits { max, ttl })
    }

    pub(super) fn rule(&mut self, raw: RawRule) -> Option<RuleSpec> {
        let table = self.record_kind(&raw.table);
        let window = self.duration(&Some(raw.window.clone()), Duration::ZERO);
        let for_ = self.duration(&raw.for_, Duration::ZERO);
        let keep_firing_for = self.duration(&raw.keep_firing_for, Duration::ZERO);
        if window.is_some_and(|w| w.is_zero()) {
            self.problem(
                Some(raw.window.span()),
                "`window` must be longer than 0".into(),
            );
        }
        if window.is_some_and(|w| w > MAX_WINDOW) {
            self.problem(
                Some(raw.window.span()),
                "`window` must be at most 366d".into(),
            );
            return None;
        }
        let hop = match (&raw.hop, window) {
            (None, w) => w,
            (Some(h), Some(w)) => {
                let hop = self.duration(&raw.hop, w)?;
                if hop.is_zero() || hop > w || w.as_micros() % hop.as_micros() != 0 {
                    self.problem(
                        Some(h.span()),
                        format!(
                            "`hop` must be longer than 0 and divide the window ({}) evenly",
                            format_duration(w)
                        ),
                    );
                    return None;
                }
                Some(hop)
            }
            (Some(_), None) => None,
        };
        let cond = raw.condition.get_ref().trim();
        let condition = if cond == "baseline" {
            Some(Condition::Baseline)
        } else if cond == "above usual" {
            Some(Condition::AboveUsual)
        } else {
            let split = cond
                .find(|c: char| !matches!(c, '<' | '>' | '='))
                .unwrap_or(cond.len());
            let (op, number) = cond.split_at(split);
            let threshold = number.trim().parse::<f64>().ok().filter(|t| t.is_finite());
            match (op.parse::<Comparison>(), threshold) {
                (Ok(comparison), Some(threshold)) => Some(Condition::Threshold {
                    comparison,
                    threshold,
                }),
                _ => {
                    self.problem(
                        Some(raw.condition.span()),
                        format!(
                            "condition `{cond}` should be a comparison and a number, e.g. `> 0.05`, `baseline` or `above usual`"
                        ),
                    );
                    None
                }
            }
        };
        if let Some(v) = &raw.no_data
            && !v.get_ref().is_finite()
        {
            self.problem(Some(v.span()), "`no_data` must be a finite number".into());
        }
        let severity = match raw.severity.get_ref().parse::<Severity>() {
            Ok(s) => s,
            Err(e) => {
                self.problem(Some(raw.severity.span()), e.to_string());
                return None;
            }
        };
        let mut annotations = BTreeMap::new();
        if let Some(s) = raw.summary {
            annotations.insert("summary".to_string(), s);
        }
        if let Some(u) = raw.runbook_url {
            annotations.insert("runbook_url".to_string(), u);
        }
        Some(RuleSpec {
            name: raw.name,
            table: table?,
            window: window.filter(|w| !w.is_zero())?,
            hop: hop?,
            signal: raw.signal.into_inner(),
            filter: raw.filter,
            condition: condition?,
            no_data: raw.no_data.map(Spanned::into_inner),
            for_: for_?,
            keep_firing_for: keep_firing_for?,
            severity,
            annotations,
            labels: raw.labels,
            cause: raw.cause.unwrap_or(false),
            reads: None,
        })
    }

    /// `Some(None)`: correlation turned off.
    pub(super) fn correlation(&mut self, d: &RawDetect) -> Option<Option<CorrelationConfig>> {
        let default = CorrelationConfig::default();
        let trace_timeout = self.duration(&d.trace_timeout, default.trace_timeout);
        let window = self.duration(&d.correlation_window, default.window);
        let incident_gap = self.duration(&d.incident_gap, default.incident_gap);
        let mut ok = true;
        for (name, parsed, span) in [
            ("trace_timeout", trace_timeout, &d.trace_timeout),
            ("correlation_window", window, &d.correlation_window),
        ] {
            if parsed.is_some_and(|p| p.is_zero()) {
                self.problem(
                    span.as_ref().map(|s| s.span()),
                    format!("`detect.{name}` must be longer than 0"),
                );
                ok = false;
            }
        }
        if d.max_open_traces == Some(0) {
            self.problem(None, "`detect.max_open_traces` must be at least 1".into());
            ok = false;
        }
        ok.then_some(())?;
        let (trace_timeout, window, incident_gap) = (trace_timeout?, window?, incident_gap?);
        Some(d.correlate.unwrap_or(true).then(|| CorrelationConfig {
            trace_timeout,
            window,
            incident_gap,
            max_open_traces: d.max_open_traces.unwrap_or(default.max_open_traces),
            duration_column: d.duration_column.clone().unwrap_or(default.duration_column),
            status_column: d.status_column.clone().unwrap_or(default.status_column),
            own_time_alarms: d.own_time_alarms.unwrap_or(default.own_time_alarms),
        }))
    }
}
