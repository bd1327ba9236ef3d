//! Rules over tumbling event-time windows, with their signals computed by DataFusion.
//!
//! ```text
//! batches ─► split by window ─► open windows (per table and window length)
//!                                   │ watermark passes a window's end
//!                                   ▼
//!        SELECT service, <signal> FROM window WHERE <filter> GROUP BY service   (DataFusion)
//!                                   ▼
//!                  RuleEvaluator::observe / absent ─► anomaly events
//! ```
//!
//! Windows close in order when the watermark (the caller's: latest event time minus the
//! allowed lateness) passes their end; a window with no rows still closes, so a firing series
//! that stopped reporting resolves. A row for a window already closed is late: it is counted
//! ([`WindowedRules::late_rows`]), not evaluated.
//!
//! Limitation, stated plainly: an open window keeps its rows (Arrow batches) until it closes,
//! so memory grows with the rate times the window plus lateness, not only with services ×
//! windows. Partial aggregate state per window is the planned replacement.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, BooleanArray, Float64Array, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, TimestampMicrosecondType};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use vigil_config::RuleSpec;
use vigil_core::schema::RecordKind;

use crate::rules::{AnomalyEvent, Comparison, Rule, RuleEvaluator, Severity};

/// A rule could not be set up or evaluated.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The rule is not valid (its SQL, its severity, ...).
    #[error("rule `{rule}`: {reason}")]
    Rule {
        /// Rule name.
        rule: String,
        /// What is wrong.
        reason: String,
    },
}

struct Compiled {
    evaluator: RuleEvaluator,
    table: RecordKind,
    window: i64,
    sql: String,
}

#[derive(Default)]
struct Windows {
    /// Start of the oldest window not yet closed.
    next_open: Option<i64>,
    open: BTreeMap<i64, Vec<RecordBatch>>,
}

/// Every rule of a pipeline over its windows.
pub struct WindowedRules {
    rules: Vec<Compiled>,
    windows: HashMap<(RecordKind, i64), Windows>,
    ctx: SessionContext,
    late: u64,
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl WindowedRules {
    /// Compiles the pipeline's rules.
    pub fn new(specs: &[RuleSpec]) -> Result<Self, DetectError> {
        let mut rules = Vec::with_capacity(specs.len());
        for s in specs {
            let bad = |reason: String| DetectError::Rule {
                rule: s.name.clone(),
                reason,
            };
            let rule = Rule {
                name: s.name.clone(),
                severity: s.severity.parse::<Severity>().map_err(bad)?,
                comparison: s.comparison.parse::<Comparison>().map_err(bad)?,
                threshold: s.threshold,
                window: s.window,
                for_: s.for_,
                labels: s.labels.clone(),
                annotations: s.annotations.clone(),
            };
            let filter = s
                .filter
                .as_deref()
                .map_or(String::new(), |f| format!(" WHERE {f}"));
            let sql = format!(
                "SELECT service, CAST(({}) AS DOUBLE) AS value FROM w{filter} GROUP BY service ORDER BY service",
                s.signal
            );
            rules.push(Compiled {
                evaluator: RuleEvaluator::new(rule),
                table: s.table,
                window: micros(s.window).max(1),
                sql,
            });
        }
        let mut windows = HashMap::new();
        for r in &rules {
            windows
                .entry((r.table, r.window))
                .or_insert_with(Windows::default);
        }
        Ok(Self {
            rules,
            windows,
            ctx: SessionContext::new(),
            late: 0,
        })
    }

    /// Rows that arrived after their window had closed.
    pub fn late_rows(&self) -> u64 {
        self.late
    }

    /// Files `batch` (rows of `kind`) into the windows its rows fall in.
    pub fn push(&mut self, kind: RecordKind, batch: &RecordBatch) {
        if batch.num_rows() == 0 {
            return;
        }
        let Ok(col) = batch.schema().index_of("timestamp") else {
            return;
        };
        let ts = batch.column(col).as_primitive::<TimestampMicrosecondType>();
        for (&(k, len), w) in self.windows.iter_mut() {
            if k != kind {
                continue;
            }
            let starts: Vec<i64> = ts
                .values()
                .iter()
                .map(|t| t.div_euclid(len) * len)
                .collect();
            let mut distinct = starts.clone();
            distinct.sort_unstable();
            distinct.dedup();
            for start in distinct {
                let mask = BooleanArray::from_iter(starts.iter().map(|&s| Some(s == start)));
                if w.next_open.is_some_and(|open| start < open) {
                    self.late += mask.true_count() as u64;
                    continue;
                }
                w.next_open.get_or_insert(start);
                let rows = if distinct_is_whole(&mask) {
                    batch.clone()
                } else {
                    filter_record_batch(batch, &mask).expect("mask as long as the batch")
                };
                w.open.entry(start).or_default().push(rows);
            }
            if let Some(first) = w.open.keys().next().copied() {
                // A window opened before the oldest one seen so far (out of order, not late).
                w.next_open = Some(w.next_open.map_or(first, |o| o.min(first)));
            }
        }
    }

    /// Closes every window whose end is at or before `watermark`, oldest first, and returns
    /// the anomaly events their rules produce, detected at `watermark`.
    pub async fn advance(&mut self, watermark: i64) -> Result<Vec<AnomalyEvent>, DetectError> {
        let mut keys: Vec<(RecordKind, i64)> = self.windows.keys().copied().collect();
        keys.sort_by_key(|&(k, len)| (k.table(), len));
        let mut out = Vec::new();
        for key in keys {
            loop {
                let w = self.windows.get_mut(&key).expect("a key listed above");
                let Some(start) = w.next_open else { break };
                let end = start.saturating_add(key.1);
                if end > watermark {
                    break;
                }
                let batches = w.open.remove(&start).unwrap_or_default();
                w.next_open = Some(end);
                self.close(key, start, batches, watermark, &mut out).await?;
            }
        }
        Ok(out)
    }

    async fn close(
        &mut self,
        key: (RecordKind, i64),
        start: i64,
        batches: Vec<RecordBatch>,
        detected_at: i64,
        out: &mut Vec<AnomalyEvent>,
    ) -> Result<(), DetectError> {
        for i in 0..self.rules.len() {
            if (self.rules[i].table, self.rules[i].window) != key {
                continue;
            }
            let values = if batches.is_empty() {
                Vec::new()
            } else {
                self.signal(i, &batches).await?
            };
            let r = &mut self.rules[i];
            let mut seen = Vec::with_capacity(values.len());
            for (service, value) in &values {
                seen.push(service.clone());
                if let Some(t) = r.evaluator.observe(service, start, *value) {
                    out.push(r.evaluator.event(&t, detected_at));
                }
            }
            let missing: Vec<String> = r
                .evaluator
                .active_series()
                .filter(|s| !seen.iter().any(|x| x == s))
                .map(str::to_string)
                .collect();
            for s in missing {
                if let Some(t) = r.evaluator.absent(&s, start) {
                    out.push(r.evaluator.event(&t, detected_at));
                }
            }
        }
        Ok(())
    }

    async fn signal(
        &self,
        i: usize,
        batches: &[RecordBatch],
    ) -> Result<Vec<(String, f64)>, DetectError> {
        let r = &self.rules[i];
        let bad = |reason: String| DetectError::Rule {
            rule: r.evaluator.rule().name.clone(),
            reason,
        };
        let schema = batches[0].schema();
        let table =
            MemTable::try_new(schema, vec![batches.to_vec()]).map_err(|e| bad(e.to_string()))?;
        self.ctx
            .register_table("w", Arc::new(table))
            .map_err(|e| bad(e.to_string()))?;
        let result = async {
            let df = self.ctx.sql(&r.sql).await?;
            df.collect().await
        }
        .await;
        let _ = self.ctx.deregister_table("w");
        let batches = result.map_err(|e| bad(format!("{e} (in `{}`)", r.sql)))?;
        let mut values = Vec::new();
        for b in &batches {
            let services = b.column(0);
            let Some(services) = services.as_string_opt::<i32>() else {
                return Err(bad(format!("service column is {}", services.data_type())));
            };
            if b.column(1).data_type() != &DataType::Float64 {
                return Err(bad("the signal is not a number".into()));
            }
            let v = b
                .column(1)
                .as_any()
                .downcast_ref::<Float64Array>()
                .expect("checked");
            for row in 0..b.num_rows() {
                if services.is_null(row) {
                    continue;
                }
                let value = if v.is_null(row) {
                    f64::NAN
                } else {
                    v.value(row)
                };
                values.push((services.value(row).to_string(), value));
            }
        }
        Ok(values)
    }
}

fn distinct_is_whole(mask: &BooleanArray) -> bool {
    mask.true_count() == mask.len()
}
