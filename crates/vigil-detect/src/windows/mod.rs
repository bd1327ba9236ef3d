//! Rules over event-time windows (tumbling or hopping), with their signals computed by
//! DataFusion's two-phase aggregation so state stays bounded.
//!
//! ```text
//! batches ─► split by pane (hop) ─► raw rows, at most FOLD_ROWS per group
//!                                     │ fold: the rule's plan up to its Partial aggregate
//!                                     ▼
//!                     partial aggregate states per rule and pane (one row per service)
//!                                     │ watermark passes a window's end: the panes it spans
//!                                     ▼
//!            the rule's plan above its Partial aggregate (Final + projection)
//!                                     ▼
//!                  RuleEvaluator::observe / absent ─► anomaly events
//! ```
//!
//! A rule's signal is SQL, `SELECT service, CAST((<signal>) AS DOUBLE) FROM w WHERE <filter>
//! GROUP BY service`, planned once by DataFusion and split at its `Partial` aggregate: the
//! lower half (filter, partial aggregation) runs over every bite of raw rows, the upper half
//! (final aggregation, the signal's arithmetic) over the partial states of the panes a window
//! spans. Partial states are DataFusion's own: sums and counts for `avg`, a t-digest for
//! `approx_percentile_cont`, so a window's value is the same as one query over all its rows
//! (exactly, or within the sketch's error for percentiles).
//!
//! A tumbling window whose rows were never folded (the usual case: rows fold early only past
//! [`FOLD_ROWS`], or arrive as another replica's partial states) skips the states: the whole
//! plan runs once over its rows, the same Partial and Final aggregates in one pass, the same
//! values to the bit. On a minute's few thousand rows, running a plan costs more than the
//! aggregation in it, so this halves what closing a window costs.
//!
//! A rule whose filter names the services it reads (`service = 'a'`, `service IN ('a', 'b')`)
//! runs over only the batches that can hold them: a decoder's batch holds one service's
//! rows, and copying the other services' rows into the rule's input only for its filter to
//! drop them cost more than the rest of the rule. A batch of several services is always
//! read; the filter still decides row by row.
//!
//! Memory: raw rows are folded into partial states once a group holds [`FOLD_ROWS`] of them
//! (and before any window closes), so what stays is at most `FOLD_ROWS` rows per group plus
//! the partial states: services × open panes × folds, not events.
//!
//! Windows start at multiples of the hop and close in order when the watermark (the
//! caller's: latest event time minus the allowed lateness) passes their end; a window with no
//! rows still closes, so a firing series that stopped reporting resolves. A row is late when a
//! window it belongs to has already closed: it is counted ([`WindowedRules::late_rows`]), not
//! evaluated.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{SchemaRef, TimestampMicrosecondType};
use datafusion::prelude::SessionContext;
use vigil_core::schema::RecordKind;
use vigil_core::time::micros;

use crate::error::DetectError;
use crate::event::{AnomalyEvent, PendingAnomaly};
use crate::rules::{Rule, RuleEvaluator};
use crate::spec::{Condition, RuleSpec, SeriesLimits};

mod checkpoint;
mod clock;
mod plan;
mod shuffle;
#[cfg(test)]
mod tests;

pub use checkpoint::Checkpoint;
pub use shuffle::{Contribution, Partial, SavedStates, decode_ipc, encode_ipc};

use clock::{Batches, Filing, Group};
use plan::{Input, Plan, PlanError};

/// Raw rows a group holds before they are folded into partial aggregate states.
pub const FOLD_ROWS: usize = 65_536;

/// A rule, its plan and its partial states.
struct Compiled {
    evaluator: RuleEvaluator,
    /// Index of its group (clock and panes).
    group: usize,
    sql: String,
    plan: Option<Plan>,
    /// Partial aggregate states by pane start, each with where it came from when another
    /// replica folded it ([`WindowedRules::merge`]).
    states: BTreeMap<i64, Vec<(Option<Contribution>, RecordBatch)>>,
}

impl Compiled {
    fn plan_error(&self, e: PlanError) -> DetectError {
        // Planned at start against the same schema: a missing column was said then.
        plan_error(&self.evaluator.rule().name, false, &self.sql, e)
    }
}

/// The query computing a rule's signal per service over the rows of a window (table `w`),
/// and their number where the condition weighs the value by it (`above usual`).
fn signal_sql(spec: &RuleSpec) -> String {
    let filter = spec
        .filter
        .as_deref()
        .map_or(String::new(), |f| format!(" WHERE {f}"));
    let rows = if spec.condition == Condition::AboveUsual {
        ", CAST(count(*) AS DOUBLE) AS rows"
    } else {
        ""
    };
    format!(
        "SELECT service, CAST(({}) AS DOUBLE) AS value{rows} FROM w{filter} GROUP BY service",
        spec.signal
    )
}

/// The columns of `schema` a rule's signal and filter read, planned over rows of `schema` as
/// the pipeline will at its first batch. An error in its signal or filter (an unknown column
/// or function, a signal that is not an aggregate) is found so when the pipeline file is
/// checked, not when data arrives.
pub fn rule_columns(spec: &RuleSpec, schema: &SchemaRef) -> Result<Vec<String>, DetectError> {
    let sql = signal_sql(spec);
    let ctx = plan::session();
    // Planning over an in-memory table does no I/O: no runtime needed.
    let plan = futures::executor::block_on(Plan::new(&ctx, &sql, schema))
        .map_err(|e| plan_error(&spec.name, spec.table == RecordKind::Logs, &sql, e))?;
    Ok(plan
        .scanned()
        .into_iter()
        .map(|i| schema.field(i).name().clone())
        .collect())
}

/// A rule's planning error; `logs`: the rule reads the logs table, where a field the records
/// carry may be promoted to a column.
fn plan_error(rule: &str, logs: bool, sql: &str, e: PlanError) -> DetectError {
    DetectError::Rule {
        rule: rule.to_string(),
        reason: match e {
            PlanError::DataFusion(e) => match missing_column(&e) {
                // A field the records carry is read once it is a column of its own.
                Some(c) if logs => format!(
                    "{e} (in `{sql}`). To read a field of the records, promote it: under \
                     [schema.logs.fields], `{c} = \"float64\"` for a member of the record \
                     itself, `\"additional_data.{c}\" = \"float64\"` for one of \
                     additional_data (types: {})",
                    vigil_core::schema::FieldType::names()
                ),
                _ => format!("{e} (in `{sql}`)"),
            },
            PlanError::NotAnAggregate => format!("the signal is not an aggregate (in `{sql}`)"),
            PlanError::ServiceColumn(t) => format!("service column is {t}"),
            PlanError::NotANumber => "the signal is not a number".into(),
        },
    }
}

/// The column a plan named that its table lacks.
fn missing_column(e: &datafusion::error::DataFusionError) -> Option<String> {
    match e.find_root() {
        datafusion::error::DataFusionError::SchemaError(s, _) => match s.as_ref() {
            datafusion::common::SchemaError::FieldNotFound { field, .. } => {
                Some(field.name.clone())
            }
            _ => None,
        },
        _ => None,
    }
}

/// Every rule of a pipeline over its windows.
pub struct WindowedRules {
    rules: Vec<Compiled>,
    groups: Vec<Group>,
    ctx: SessionContext,
    late: u64,
    fold_rows: usize,
    /// The latest end of a window closed so far.
    closed_through: Option<i64>,
}

impl WindowedRules {
    /// Compiles the pipeline's rules. Their SQL is planned at the first batch, when the
    /// input schema is known; errors in it surface from [`advance`](Self::advance).
    pub fn new(specs: &[RuleSpec]) -> Self {
        let mut rules = Vec::with_capacity(specs.len());
        let mut groups: Vec<Group> = Vec::new();
        for s in specs {
            let rule = Rule {
                name: s.name.clone(),
                severity: s.severity,
                condition: s.condition,
                no_data: s.no_data,
                window: s.window,
                for_: s.for_,
                keep_firing_for: s.keep_firing_for,
                labels: s.labels.clone(),
                annotations: s.annotations.clone(),
            };
            let sql = signal_sql(s);
            let (window, hop) = (micros(s.window).max(1), micros(s.hop).max(1));
            let group = match groups
                .iter()
                .position(|g| (g.table, g.window, g.hop) == (s.table, window, hop))
            {
                Some(g) => g,
                None => {
                    groups.push(Group::new(s.table, window, hop));
                    groups.len() - 1
                }
            };
            rules.push(Compiled {
                evaluator: RuleEvaluator::new(rule),
                group,
                sql,
                plan: None,
                states: BTreeMap::new(),
            });
        }
        Self {
            rules,
            groups,
            ctx: plan::session(),
            late: 0,
            fold_rows: FOLD_ROWS,
            closed_through: None,
        }
    }

    /// Bounds the series each rule remembers.
    pub fn with_series_limits(mut self, limits: SeriesLimits) -> Self {
        for r in &mut self.rules {
            r.evaluator.set_limits(limits);
        }
        self
    }

    /// Series forgotten so far because of the [`SeriesLimits`].
    pub fn evicted_series(&self) -> u64 {
        self.rules.iter().map(|r| r.evaluator.forgotten()).sum()
    }

    /// Folds raw rows into partial states once a group holds `rows` of them (default
    /// [`FOLD_ROWS`]).
    pub fn with_fold_rows(mut self, rows: usize) -> Self {
        self.fold_rows = rows.max(1);
        self
    }

    /// Rows that arrived after a window they belong to had closed.
    pub fn late_rows(&self) -> u64 {
        self.late
    }

    /// The latest end of any window closed so far.
    pub fn closed_through(&self) -> Option<i64> {
        self.closed_through
    }

    /// Every rule's pending series (holding, not yet for `for`) as of the windows closed so
    /// far: evidence for incidents before `for` ends.
    pub fn pending(&self) -> Vec<PendingAnomaly> {
        self.rules
            .iter()
            .flat_map(|r| {
                r.evaluator
                    .pending()
                    .map(|(service, since)| PendingAnomaly {
                        service: service.to_string(),
                        since,
                        rule: r.evaluator.rule().name.clone(),
                    })
            })
            .collect()
    }

    /// Raw rows not yet folded into partial aggregate states, over every group.
    pub fn raw_rows(&self) -> usize {
        self.groups.iter().map(|g| g.raw_rows).sum()
    }

    /// Partial aggregate state rows held, over every rule and pane.
    pub fn state_rows(&self) -> usize {
        self.rules
            .iter()
            .flat_map(|r| r.states.values().flatten())
            .map(|(_, b)| b.num_rows())
            .sum()
    }

    /// Files `batch` (rows of `kind`) into the panes its rows fall in. Rows are folded into
    /// partial states by the next [`advance`](Self::advance). Returns the batch's
    /// [`time_range`], found once for the caller and every group.
    pub fn push(&mut self, kind: RecordKind, batch: &RecordBatch) -> Option<(i64, i64)> {
        let range = time_range(batch)?;
        for g in 0..self.groups.len() {
            if self.groups[g].table != kind {
                continue;
            }
            for (pane, rows) in split_by_pane(&self.groups[g], batch, range) {
                if let Filing::Late = self.groups[g].admit(pane) {
                    self.late += rows.num_rows() as u64;
                    continue;
                }
                self.groups[g].file(pane, rows);
            }
        }
        Some(range)
    }

    /// Closes every window whose end is at or before `watermark`, oldest first, and returns
    /// the anomaly events their rules produce, detected at `watermark`. Folds raw rows into
    /// partial states first where a group holds more than its limit (see
    /// [`with_fold_rows`](Self::with_fold_rows)).
    pub async fn advance(&mut self, watermark: i64) -> Result<Vec<AnomalyEvent>, DetectError> {
        let mut out = Vec::new();
        for g in 0..self.groups.len() {
            if self.groups[g].raw_rows >= self.fold_rows {
                self.fold(g, i64::MAX).await?;
            }
            while let Some((start, end)) = self.groups[g].due(watermark) {
                self.closed_through = Some(self.closed_through.map_or(end, |c| c.max(end)));
                self.close(g, (start, end), watermark, &mut out).await?;
                let active = self
                    .rules
                    .iter()
                    .any(|r| r.group == g && r.evaluator.reported_series().next().is_some());
                let first_state = self
                    .rules
                    .iter()
                    .filter(|r| r.group == g)
                    .filter_map(|r| r.states.keys().next().copied())
                    .min();
                self.groups[g].skip_idle(watermark, active, first_state);
            }
        }
        Ok(out)
    }

    /// Folds the raw rows of panes starting before `before` into every rule's partial states.
    async fn fold(&mut self, g: usize, before: i64) -> Result<(), DetectError> {
        let taken = self.groups[g].take_raw(before);
        for i in 0..self.rules.len() {
            if self.rules[i].group == g {
                self.fold_rule(i, &taken).await?;
            }
        }
        Ok(())
    }

    /// Folds `taken` raw rows (by pane) into rule `i`'s partial states.
    async fn fold_rule(&mut self, i: usize, taken: &[(i64, Batches)]) -> Result<(), DetectError> {
        for (pane, rows) in taken {
            if let Some(state) = self.partial(i, rows).await?
                && state.num_rows() > 0
            {
                self.rules[i]
                    .states
                    .entry(*pane)
                    .or_default()
                    .push((None, state));
            }
        }
        Ok(())
    }

    /// The rule's partial aggregate states over `rows` (`None`: none of them can pass its
    /// filter).
    async fn partial(
        &mut self,
        i: usize,
        rows: &Batches,
    ) -> Result<Option<RecordBatch>, DetectError> {
        self.with_plan(i, rows, async |p, rows| p.partial(rows).await.map(Some))
            .await
    }

    /// Runs rule `i`'s plan with `run` over the batches of `rows` whose rows can pass its
    /// filter (planned for their schema first, unless it already is). When none can, `run`
    /// is not called and the result is empty, as the plan's would be: the plan groups by
    /// service, so no rows make no groups. An error names the rule and its query.
    async fn with_plan<T: Default>(
        &mut self,
        i: usize,
        rows: &Batches,
        run: impl AsyncFnOnce(&Plan, Input<'_>) -> Result<T, PlanError>,
    ) -> Result<T, DetectError> {
        self.plan(i, &rows.schema()).await?;
        let r = &self.rules[i];
        let plan = r.plan.as_ref().expect("planned above");
        let kept = rows.of(plan.services());
        if kept.is_empty() {
            return Ok(T::default());
        }
        let input = match plan.counted(rows) {
            Some(states) => Input::States(states),
            None => Input::Rows(&kept),
        };
        run(plan, input).await.map_err(|e| r.plan_error(e))
    }

    /// Plans rule `i` for input `schema`, unless it already is.
    async fn plan(&mut self, i: usize, schema: &SchemaRef) -> Result<(), DetectError> {
        let r = &self.rules[i];
        if r.plan.as_ref().is_some_and(|p| p.reads(schema)) {
            return Ok(());
        }
        let plan = Plan::new(&self.ctx, &r.sql, schema)
            .await
            .map_err(|e| r.plan_error(e))?;
        self.rules[i].plan = Some(plan);
        Ok(())
    }

    /// Closes the window `[start, end)` of group `g` for each of its rules. The raw rows of
    /// its panes are folded into the rules' partial states and each signal finished from
    /// them, except where the window is one pane (tumbling) and a rule holds no states in it
    /// yet, the usual case: that rule's signal comes straight from the rows ([`Plan::whole`]:
    /// the same plan, run once instead of folding and then finishing).
    async fn close(
        &mut self,
        g: usize,
        (start, end): (i64, i64),
        detected_at: i64,
        out: &mut Vec<AnomalyEvent>,
    ) -> Result<(), DetectError> {
        let hop = self.groups[g].hop;
        let taken = self.groups[g].take_raw(end);
        let one_pane = match taken.as_slice() {
            [(pane, rows)] if *pane == start && hop == self.groups[g].window => Some(rows),
            _ => None,
        };
        let mut had_rows = false;
        for i in 0..self.rules.len() {
            if self.rules[i].group != g {
                continue;
            }
            let values = match one_pane {
                Some(rows) if self.rules[i].states.range(start..end).next().is_none() => {
                    // The same plan, run once over the rows ([`Plan::whole`]).
                    let values = self
                        .with_plan(i, rows, async |p, rows| p.whole(rows).await)
                        .await?;
                    had_rows |= !values.is_empty();
                    values
                }
                _ => {
                    self.fold_rule(i, &taken).await?;
                    let states: Vec<RecordBatch> = self.rules[i]
                        .states
                        .range(start..end)
                        .flat_map(|(_, s)| s.iter().map(|(_, b)| b.clone()))
                        .collect();
                    had_rows |= !states.is_empty();
                    self.finish(i, states).await?
                }
            };
            let r = &mut self.rules[i];
            // Panes before the next window's start are no longer needed.
            r.states = r.states.split_off(&start.saturating_add(hop));
            for (service, value, rows) in &values {
                if let Some(t) = r.evaluator.observe_rows(service, start, *value, *rows) {
                    out.push(r.evaluator.event(&t, detected_at));
                }
            }
            let missing: Vec<String> = r
                .evaluator
                .reported_series()
                .filter(|s| {
                    values
                        .binary_search_by(|(v, ..)| v.as_str().cmp(s))
                        .is_err()
                })
                .map(str::to_string)
                .collect();
            for s in missing {
                if let Some(t) = r.evaluator.absent(&s, start) {
                    out.push(r.evaluator.event(&t, detected_at));
                }
            }
            let evicted = r.evaluator.forget_silent(start);
            if evicted > 0 {
                tracing::debug!(rule = %r.evaluator.rule().name, evicted, "series forgotten");
            }
        }
        self.groups[g].closed_one(had_rows);
        Ok(())
    }

    /// The signal per service from a window's partial states, sorted by service.
    async fn finish(
        &self,
        i: usize,
        states: Vec<RecordBatch>,
    ) -> Result<Vec<(String, f64, f64)>, DetectError> {
        let r = &self.rules[i];
        let Some(plan) = r.plan.as_ref().filter(|_| !states.is_empty()) else {
            return Ok(Vec::new());
        };
        plan.finish(states).await.map_err(|e| r.plan_error(e))
    }
}

/// The earliest and latest event time (`timestamp`, µs) of `batch`'s rows; `None` when it has
/// no rows or no such column.
pub fn time_range(batch: &RecordBatch) -> Option<(i64, i64)> {
    let col = batch.schema().index_of("timestamp").ok()?;
    let ts = batch.column(col).as_primitive::<TimestampMicrosecondType>();
    if ts.null_count() > 0 {
        return Some((arrow::compute::min(ts)?, arrow::compute::max(ts)?));
    }
    let (lo, hi) = ts
        .values()
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), &t| (lo.min(t), hi.max(t)));
    (lo <= hi).then_some((lo, hi))
}

/// `batch`'s rows split by the pane of `g` their event time falls in, in pane order, given
/// their [`time_range`]. A batch within one pane is kept whole; rows usually come in time
/// order, so each pane's rows are a run: those become zero-copy slices, and only a batch
/// whose time goes back is filtered into copies.
fn split_by_pane(g: &Group, batch: &RecordBatch, (lo, hi): (i64, i64)) -> Vec<(i64, RecordBatch)> {
    let Ok(col) = batch.schema().index_of("timestamp") else {
        return Vec::new();
    };
    let ts = batch.column(col).as_primitive::<TimestampMicrosecondType>();
    // Most batches (a decoder's batch per service, a second of a partition) fall in one pane.
    if g.pane(lo) == g.pane(hi) {
        return vec![(g.pane(lo), batch.clone())];
    }
    let panes: Vec<i64> = ts.values().iter().map(|&t| g.pane(t)).collect();
    if panes.is_sorted() {
        let mut out = Vec::new();
        let mut start = 0;
        for run in panes.chunk_by(|a, b| a == b) {
            out.push((run[0], batch.slice(start, run.len())));
            start += run.len();
        }
        return out;
    }
    let mut distinct = panes.clone();
    distinct.sort_unstable();
    distinct.dedup();
    distinct
        .into_iter()
        .map(|pane| {
            let mask = BooleanArray::from_iter(panes.iter().map(|&p| Some(p == pane)));
            let rows = filter_record_batch(batch, &mask).expect("mask as long as the batch");
            (pane, rows)
        })
        .collect()
}
