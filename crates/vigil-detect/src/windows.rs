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
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, BooleanArray, Float64Array, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, SchemaRef, TimestampMicrosecondType};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::MemTable;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::SessionStateBuilder;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::{SessionConfig, SessionContext};
use serde::{Deserialize, Serialize};
use vigil_config::RuleSpec;
use vigil_core::schema::RecordKind;

use crate::rules::{AnomalyEvent, Rule, RuleEvaluator, Saved};

/// Raw rows a group holds before they are folded into partial aggregate states.
pub const FOLD_ROWS: usize = 65_536;

/// Empty windows closed one by one while series are pending, firing or expected (`no_data`):
/// a week of minutes. After that many in a row (a clock far off, a source back after a long
/// outage) the rest of the gap is skipped rather than evaluated window by window.
const MAX_EMPTY_WINDOWS: i64 = 7 * 24 * 60;

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
    /// Correlation's aggregation failed (an internal error).
    #[error("correlation: {reason}")]
    Correlation {
        /// What went wrong.
        reason: String,
    },
}

/// A rule's physical plan, split at its partial aggregate.
struct Plan {
    /// The input schema it was planned for.
    input: SchemaRef,
    /// The `Partial` aggregate and everything under it.
    partial: Arc<dyn ExecutionPlan>,
    /// The whole plan (it contains `partial`).
    whole: Arc<dyn ExecutionPlan>,
}

struct Compiled {
    evaluator: RuleEvaluator,
    group: usize,
    sql: String,
    plan: Option<Plan>,
    /// Partial aggregate states by pane start.
    states: BTreeMap<i64, Vec<RecordBatch>>,
}

/// Rules sharing a table, a window length and a hop share their panes and their clock.
struct Group {
    table: RecordKind,
    window: i64,
    hop: i64,
    /// Start of the next window to close; `closed` once one has.
    next_close: Option<i64>,
    closed: bool,
    /// Rows not yet folded into partial states, by pane start.
    raw: BTreeMap<i64, Vec<RecordBatch>>,
    raw_rows: usize,
    /// Windows closed in a row without any rows.
    empty_run: i64,
}

impl Group {
    /// The first window a row of pane `pane` belongs to.
    fn first_window(&self, pane: i64) -> i64 {
        pane - self.window + self.hop
    }
}

/// Where the rules stand, for a checkpoint: each rule's series state and each group's next
/// window to close. Open windows' rows are not in it (they are in the archive).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Rule name → what it has learned.
    pub rules: BTreeMap<String, Saved>,
    /// `table/window/hop` (µs) → start of the next window to close.
    pub next_close: BTreeMap<String, i64>,
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

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
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
                labels: s.labels.clone(),
                annotations: s.annotations.clone(),
            };
            let filter = s
                .filter
                .as_deref()
                .map_or(String::new(), |f| format!(" WHERE {f}"));
            let sql = format!(
                "SELECT service, CAST(({}) AS DOUBLE) AS value FROM w{filter} GROUP BY service",
                s.signal
            );
            let (window, hop) = (micros(s.window).max(1), micros(s.hop).max(1));
            let group = match groups
                .iter()
                .position(|g| (g.table, g.window, g.hop) == (s.table, window, hop))
            {
                Some(g) => g,
                None => {
                    groups.push(Group {
                        table: s.table,
                        window,
                        hop,
                        next_close: None,
                        closed: false,
                        raw: BTreeMap::new(),
                        raw_rows: 0,
                        empty_run: 0,
                    });
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
        // One partition and no physical optimizer: the plan keeps its Partial and Final
        // aggregates apart (the optimizer would merge them into one Single aggregate).
        let state = SessionStateBuilder::new()
            .with_config(SessionConfig::new().with_target_partitions(1))
            .with_default_features()
            .with_physical_optimizer_rules(vec![])
            .build();
        Self {
            rules,
            groups,
            ctx: SessionContext::new_with_state(state),
            late: 0,
            fold_rows: FOLD_ROWS,
            closed_through: None,
        }
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

    /// Raw rows not yet folded into partial aggregate states, over every group.
    pub fn raw_rows(&self) -> usize {
        self.groups.iter().map(|g| g.raw_rows).sum()
    }

    /// Partial aggregate state rows held, over every rule and pane.
    pub fn state_rows(&self) -> usize {
        self.rules
            .iter()
            .flat_map(|r| r.states.values().flatten())
            .map(RecordBatch::num_rows)
            .sum()
    }

    /// Files `batch` (rows of `kind`) into the panes its rows fall in. Rows are folded into
    /// partial states by the next [`advance`](Self::advance).
    pub fn push(&mut self, kind: RecordKind, batch: &RecordBatch) {
        if batch.num_rows() == 0 {
            return;
        }
        let Ok(col) = batch.schema().index_of("timestamp") else {
            return;
        };
        let ts = batch.column(col).as_primitive::<TimestampMicrosecondType>();
        for g in self.groups.iter_mut().filter(|g| g.table == kind) {
            let panes: Vec<i64> = ts
                .values()
                .iter()
                .map(|t| t.div_euclid(g.hop) * g.hop)
                .collect();
            let mut distinct = panes.clone();
            distinct.sort_unstable();
            distinct.dedup();
            for pane in distinct {
                let mask = BooleanArray::from_iter(panes.iter().map(|&p| Some(p == pane)));
                let first = g.first_window(pane);
                match g.next_close {
                    Some(next) if g.closed && first < next => {
                        self.late += mask.true_count() as u64;
                        continue;
                    }
                    // Out of order before any window closed: the clock starts earlier.
                    Some(next) if first < next => g.next_close = Some(first),
                    Some(_) => {}
                    None => g.next_close = Some(first),
                }
                let rows = if mask.true_count() == mask.len() {
                    batch.clone()
                } else {
                    filter_record_batch(batch, &mask).expect("mask as long as the batch")
                };
                g.raw_rows += rows.num_rows();
                g.raw.entry(pane).or_default().push(rows);
            }
        }
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
            loop {
                let group = &mut self.groups[g];
                let Some(start) = group.next_close else { break };
                let end = start.saturating_add(group.window);
                if end > watermark {
                    break;
                }
                group.closed = true;
                self.closed_through = Some(self.closed_through.map_or(end, |c| c.max(end)));
                self.fold(g, end).await?;
                self.close(g, start, watermark, &mut out).await?;
                self.skip_idle(g, watermark);
            }
        }
        Ok(out)
    }

    /// After a close: moves the clock to the next window, jumping over windows that have no
    /// rows and no series to resolve (a gap in the data, or a timestamp far ahead).
    fn skip_idle(&mut self, g: usize, watermark: i64) {
        let active = self
            .rules
            .iter()
            .any(|r| r.group == g && r.evaluator.reported_series().next().is_some());
        let group = &mut self.groups[g];
        let next = group.next_close.expect("a window just closed") + group.hop;
        let first_data = self
            .rules
            .iter()
            .filter(|r| r.group == g)
            .filter_map(|r| r.states.keys().next().copied())
            .chain(group.raw.keys().next().copied())
            .min();
        // The next window with data, or (no data at all) the first one the watermark does
        // not allow yet.
        let data_at = match first_data {
            Some(pane) => group.first_window(pane),
            None => (watermark - group.window).div_euclid(group.hop) * group.hop + group.hop,
        };
        group.next_close = Some(if active && group.empty_run < MAX_EMPTY_WINDOWS {
            // Series to resolve or to count as absent: empty windows close one by one.
            next
        } else {
            if active && data_at > next {
                tracing::warn!(
                    from = next,
                    to = data_at,
                    "no rows for a week of windows; skipping ahead to the next data"
                );
            }
            next.max(data_at)
        });
    }

    /// Folds the raw rows of panes starting before `before` into every rule's partial states.
    async fn fold(&mut self, g: usize, before: i64) -> Result<(), DetectError> {
        let group = &mut self.groups[g];
        let panes: Vec<i64> = group.raw.range(..before).map(|(&p, _)| p).collect();
        if panes.is_empty() {
            return Ok(());
        }
        let mut taken = Vec::with_capacity(panes.len());
        for p in panes {
            let rows = group.raw.remove(&p).expect("listed above");
            group.raw_rows -= rows.iter().map(RecordBatch::num_rows).sum::<usize>();
            taken.push((p, rows));
        }
        for i in 0..self.rules.len() {
            if self.rules[i].group != g {
                continue;
            }
            for (pane, rows) in &taken {
                let state = self.partial(i, rows).await?;
                if state.num_rows() > 0 {
                    self.rules[i].states.entry(*pane).or_default().push(state);
                }
            }
        }
        Ok(())
    }

    /// The rule's partial aggregate states over `rows`.
    async fn partial(
        &mut self,
        i: usize,
        rows: &[RecordBatch],
    ) -> Result<RecordBatch, DetectError> {
        let schema = rows[0].schema();
        self.plan(i, &schema).await?;
        let r = &self.rules[i];
        let plan = r.plan.as_ref().expect("planned above");
        let bad = |e: datafusion::error::DataFusionError| r.error(e.to_string());
        let partial = with_rows(&plan.partial, rows.to_vec(), &schema).map_err(bad)?;
        let out = collect(partial, self.ctx.task_ctx()).await.map_err(bad)?;
        arrow::compute::concat_batches(&plan.partial.schema(), &out)
            .map_err(|e| r.error(e.to_string()))
    }

    /// Plans rule `i` for input `schema`, unless it already is.
    async fn plan(&mut self, i: usize, schema: &SchemaRef) -> Result<(), DetectError> {
        if self.rules[i]
            .plan
            .as_ref()
            .is_some_and(|p| &p.input == schema)
        {
            return Ok(());
        }
        let r = &self.rules[i];
        let bad = |e: datafusion::error::DataFusionError| r.error(format!("{e} (in `{}`)", r.sql));
        let table = MemTable::try_new(Arc::clone(schema), vec![vec![]]).map_err(bad)?;
        self.ctx.register_table("w", Arc::new(table)).map_err(bad)?;
        let planned = async {
            let df = self.ctx.sql(&r.sql).await?;
            df.create_physical_plan().await
        }
        .await;
        let _ = self.ctx.deregister_table("w");
        let whole = planned.map_err(bad)?;
        let mut partial = None;
        whole
            .apply(|node| {
                if let Some(agg) = node.downcast_ref::<AggregateExec>()
                    && *agg.mode() == AggregateMode::Partial
                {
                    partial = Some(Arc::clone(node));
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
            .map_err(bad)?;
        let Some(partial) = partial else {
            return Err(r.error(format!("the signal is not an aggregate (in `{}`)", r.sql)));
        };
        self.rules[i].plan = Some(Plan {
            input: Arc::clone(schema),
            partial,
            whole,
        });
        Ok(())
    }

    /// Closes the window `[start, start + window)` of group `g` for each of its rules.
    async fn close(
        &mut self,
        g: usize,
        start: i64,
        detected_at: i64,
        out: &mut Vec<AnomalyEvent>,
    ) -> Result<(), DetectError> {
        let (window, hop) = (self.groups[g].window, self.groups[g].hop);
        let has_rows = self
            .rules
            .iter()
            .any(|r| r.group == g && r.states.range(start..start + window).next().is_some());
        let group = &mut self.groups[g];
        group.empty_run = if has_rows { 0 } else { group.empty_run + 1 };
        for i in 0..self.rules.len() {
            if self.rules[i].group != g {
                continue;
            }
            let states: Vec<RecordBatch> = self.rules[i]
                .states
                .range(start..start + window)
                .flat_map(|(_, s)| s.iter().cloned())
                .collect();
            let values = self.finish(i, states).await?;
            let r = &mut self.rules[i];
            // Panes before the next window's start are no longer needed.
            r.states = r.states.split_off(&(start + hop));
            let mut seen = Vec::with_capacity(values.len());
            for (service, value) in &values {
                seen.push(service.clone());
                if let Some(t) = r.evaluator.observe(service, start, *value) {
                    out.push(r.evaluator.event(&t, detected_at));
                }
            }
            let missing: Vec<String> = r
                .evaluator
                .reported_series()
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

    /// The signal per service from a window's partial states, sorted by service.
    async fn finish(
        &self,
        i: usize,
        states: Vec<RecordBatch>,
    ) -> Result<Vec<(String, f64)>, DetectError> {
        let r = &self.rules[i];
        let Some(plan) = r.plan.as_ref().filter(|_| !states.is_empty()) else {
            return Ok(Vec::new());
        };
        let bad = |e: datafusion::error::DataFusionError| r.error(format!("{e} (in `{}`)", r.sql));
        let partial = &plan.partial;
        let whole = Arc::clone(&plan.whole)
            .transform_down(|node| {
                if !Arc::ptr_eq(&node, partial) {
                    return Ok(Transformed::no(node));
                }
                let exec: Arc<dyn ExecutionPlan> = MemorySourceConfig::try_new_exec(
                    std::slice::from_ref(&states),
                    partial.schema(),
                    None,
                )?;
                Ok(Transformed::new(exec, true, TreeNodeRecursion::Jump))
            })
            .map_err(bad)?
            .data;
        let batches = collect(whole, self.ctx.task_ctx()).await.map_err(bad)?;
        let mut values = Vec::new();
        for b in &batches {
            let services = b.column(0);
            let Some(services) = services.as_string_opt::<i32>() else {
                return Err(r.error(format!("service column is {}", services.data_type())));
            };
            if b.column(1).data_type() != &DataType::Float64 {
                return Err(r.error("the signal is not a number".into()));
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
        values.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(values)
    }

    /// Where the rules stand, to be saved with [`restore`](Self::restore) in mind.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            rules: self
                .rules
                .iter()
                .map(|r| (r.evaluator.rule().name.clone(), r.evaluator.save().clone()))
                .collect(),
            next_close: self
                .groups
                .iter()
                .filter(|g| g.closed)
                .filter_map(|g| Some((group_key(g), g.next_close?)))
                .collect(),
        }
    }

    /// Resumes from a checkpoint: each rule's series state (a rule that is new starts
    /// empty) and each group's clock, so windows closed before the checkpoint do not close
    /// again and rows for them count as late.
    pub fn restore(&mut self, c: &Checkpoint) {
        for r in &mut self.rules {
            if let Some(saved) = c.rules.get(&r.evaluator.rule().name) {
                r.evaluator = RuleEvaluator::resume(r.evaluator.rule().clone(), saved.clone());
            }
        }
        for g in &mut self.groups {
            if let Some(&next) = c.next_close.get(&group_key(g)) {
                g.next_close = Some(next);
                g.closed = true;
            }
        }
    }

    /// The earliest event time a row can have and still count (the start of the oldest open
    /// window), if any window has closed.
    pub fn open_since(&self) -> Option<i64> {
        self.groups
            .iter()
            .filter(|g| g.closed)
            .filter_map(|g| g.next_close)
            .min()
    }
}

/// `plan`, planned over an in-memory table, reading `rows` (of `schema`) instead: a plan made
/// once runs over every new bite of rows without being planned again.
pub(crate) fn with_rows(
    plan: &Arc<dyn ExecutionPlan>,
    rows: Vec<RecordBatch>,
    schema: &SchemaRef,
) -> Result<Arc<dyn ExecutionPlan>, datafusion::error::DataFusionError> {
    let mut rows = Some(rows);
    Ok(Arc::clone(plan)
        .transform_down(|node| {
            let Some(source) = node.downcast_ref::<DataSourceExec>() else {
                return Ok(Transformed::no(node));
            };
            let projection = source
                .data_source()
                .downcast_ref::<MemorySourceConfig>()
                .and_then(|m| m.projection().clone());
            let exec: Arc<dyn ExecutionPlan> = MemorySourceConfig::try_new_exec(
                &[rows.take().unwrap_or_default()],
                Arc::clone(schema),
                projection,
            )?;
            Ok(Transformed::new(exec, true, TreeNodeRecursion::Jump))
        })?
        .data)
}

fn group_key(g: &Group) -> String {
    format!("{}/{}/{}", g.table.table(), g.window, g.hop)
}

impl Compiled {
    fn error(&self, reason: String) -> DetectError {
        DetectError::Rule {
            rule: self.evaluator.rule().name.clone(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema, TimeUnit};

    const MIN: i64 = 60_000_000;
    const T0: i64 = 1_748_854_800_000_000; // 2025-06-02T09:00:00Z

    fn spec(name: &str, signal: &str, window: u64, hop: u64, condition: (&str, f64)) -> RuleSpec {
        RuleSpec {
            name: name.into(),
            table: RecordKind::Metrics,
            window: Duration::from_secs(window),
            hop: Duration::from_secs(hop),
            signal: signal.into(),
            filter: None,
            condition: vigil_config::Condition::Threshold {
                comparison: condition.0.parse().unwrap(),
                threshold: condition.1,
            },
            no_data: None,
            for_: Duration::ZERO,
            severity: vigil_config::Severity::P3,
            annotations: BTreeMap::new(),
            labels: BTreeMap::new(),
        }
    }

    fn batch(rows: &[(i64, &str, f64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("service", DataType::Utf8, false),
            Field::new("value", DataType::Float64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.0))
                        .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )
        .unwrap()
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Deterministic pseudo-random values (xorshift), for rows no test can tune to.
    fn noise(n: usize, seed: u64) -> Vec<f64> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 10_000) as f64 / 10.0
            })
            .collect()
    }

    /// (window start, service, value) of the firing events.
    fn values_of(events: &[AnomalyEvent]) -> Vec<(String, String, f64)> {
        events
            .iter()
            .filter(|e| e.status == crate::Status::Firing)
            .map(|e| (e.starts_at.clone(), e.service.clone(), e.value.unwrap()))
            .collect()
    }

    #[test]
    fn folded_partial_states_give_the_same_signal_as_one_query_over_all_rows() {
        // 3 services, 20 000 rows over one minute, pushed in bites of 1 000 and folded every
        // 2 500 rows: many partial states per window must merge to the whole-window value.
        let values = noise(20_000, 7);
        let services = ["a", "b", "c"];
        let rows: Vec<(i64, &str, f64)> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| (T0 + (i as i64 * 3_000) % MIN, services[i % 3], v))
            .collect();
        let signal = "sum(value) / count(*) + max(value) - min(value) + count(DISTINCT value)";
        let mut specs = vec![spec("mix", signal, 60, 60, (">", -1e18))];
        specs.push(spec(
            "p95",
            "approx_percentile_cont(value, 0.95)",
            60,
            60,
            (">", -1e18),
        ));
        let mut folded = WindowedRules::new(&specs).with_fold_rows(2_500);
        let mut whole = WindowedRules::new(&specs).with_fold_rows(usize::MAX);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        run(async {
            for chunk in rows.chunks(1_000) {
                folded.push(RecordKind::Metrics, &batch(chunk));
                whole.push(RecordKind::Metrics, &batch(chunk));
                a.extend(folded.advance(T0).await.unwrap());
                assert!(folded.raw_rows() < 2_500 + 1_000, "raw rows are folded");
            }
            assert!(
                folded.state_rows() >= 6 * 2,
                "several partial states per service"
            );
            a.extend(folded.advance(T0 + MIN).await.unwrap());
            b.extend(whole.advance(T0 + MIN).await.unwrap());
        });
        assert_eq!(a.len(), 6, "{a:?}");
        assert_eq!(values_of(&a).len(), values_of(&b).len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(
                (&x.rule, &x.service, &x.starts_at),
                (&y.rule, &y.service, &y.starts_at)
            );
            let p95 = x.rule == "p95";
            let (x, y) = (x.value.unwrap(), y.value.unwrap());
            // A t-digest merged from parts is within its error of one built at once; the
            // other aggregates are exact.
            let tolerance = if p95 { 0.02 } else { 1e-9 } * y.abs();
            assert!((x - y).abs() <= tolerance, "{x} vs {y}");
        }
        // And the exact signal matches arithmetic done here.
        let a_rows: Vec<f64> = rows.iter().filter(|r| r.1 == "a").map(|r| r.2).collect();
        let mean = a_rows.iter().sum::<f64>() / a_rows.len() as f64;
        let max = a_rows.iter().cloned().fold(f64::MIN, f64::max);
        let min = a_rows.iter().cloned().fold(f64::MAX, f64::min);
        let mut distinct = a_rows.clone();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        let mix_a = a
            .iter()
            .find(|e| e.rule == "mix" && e.service == "a")
            .and_then(|e| e.value)
            .unwrap();
        let expected = mean + max - min + distinct.len() as f64;
        assert!((mix_a - expected).abs() < 1e-6, "{mix_a} vs {expected}");
    }

    #[test]
    fn hopping_windows_overlap_and_each_counts_its_own_rows() {
        // One row per minute for ten minutes; 3-minute windows every minute count 3 rows
        // once full, and the first ones (which start before the data) fewer.
        let rows: Vec<(i64, &str, f64)> = (0..10).map(|i| (T0 + i * MIN + 1, "a", 1.0)).collect();
        let mut w = WindowedRules::new(&[spec("n", "count(*)", 180, 60, (">", 2.5))]);
        let (mut events, mut counts) = (Vec::new(), Vec::new());
        let mut every = WindowedRules::new(&[spec("n", "count(*)", 180, 60, (">", -1.0))]);
        run(async {
            w.push(RecordKind::Metrics, &batch(&rows));
            every.push(RecordKind::Metrics, &batch(&rows));
            events = w.advance(T0 + 20 * MIN).await.unwrap();
            counts = every.advance(T0 + 20 * MIN).await.unwrap();
        });
        // Windows start every minute from T0-2m; their counts are 1, 2, then 3 (from T0),
        // then 2 and 1 as the data ends. `> 2.5` fires at the first window of 3 rows and
        // resolves at the first window of 2 (starting at T0+8m, ending at T0+11m).
        let statuses: Vec<_> = events
            .iter()
            .map(|e| (e.status, e.starts_at.clone(), e.value))
            .collect();
        assert_eq!(statuses.len(), 2, "{statuses:?}");
        assert_eq!(statuses[0].0, crate::Status::Firing);
        assert_eq!(statuses[0].1, "2025-06-02T09:00:00.000Z");
        assert_eq!(statuses[0].2, Some(3.0));
        assert_eq!(statuses[1].0, crate::Status::Resolved);
        assert_eq!(
            events[1].ends_at.as_deref(),
            Some("2025-06-02T09:11:00.000Z")
        );
        assert_eq!(statuses[1].2, Some(2.0));
        // The always-holding rule fires at the first window, which starts 2 minutes before
        // the first row (hopping windows containing it) with a count of 1.
        assert_eq!(counts[0].starts_at, "2025-06-02T08:58:00.000Z");
        assert_eq!(counts[0].value, Some(1.0));
        // Nothing kept once every window closed.
        assert_eq!(w.raw_rows() + w.state_rows(), 0);
    }

    #[test]
    fn rows_of_closed_windows_are_late_and_counted_not_evaluated() {
        let mut w = WindowedRules::new(&[spec("n", "count(*)", 60, 60, (">", 1.5))]);
        let events = run(async {
            w.push(RecordKind::Metrics, &batch(&[(T0 + 1, "a", 1.0)]));
            let mut e = w.advance(T0 + MIN).await.unwrap();
            // Three rows for the closed window: late, so the count stays 1 and nothing fires.
            w.push(RecordKind::Metrics, &batch(&[(T0 + 2, "a", 1.0); 3]));
            e.extend(w.advance(T0 + 3 * MIN).await.unwrap());
            e
        });
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(w.late_rows(), 3);
    }

    #[test]
    fn a_far_future_watermark_skips_empty_windows_instead_of_closing_each() {
        let mut w = WindowedRules::new(&[spec("n", "count(*)", 1, 1, (">", 0.5))]);
        let events = run(async {
            w.push(RecordKind::Metrics, &batch(&[(T0, "a", 1.0)]));
            // A hundred years of one-second windows: only the first holds data.
            w.advance(T0 + 100 * 365 * 24 * 60 * MIN).await.unwrap()
        });
        let statuses: Vec<_> = events.iter().map(|e| e.status).collect();
        assert_eq!(statuses, [crate::Status::Firing, crate::Status::Resolved]);
        // With `no_data` every empty window counts, up to a week of them; beyond, the gap is
        // skipped (this would otherwise close 3 billion windows).
        let mut counted = spec("n", "count(*)", 1, 1, ("<", 0.5));
        counted.no_data = Some(0.0);
        let mut w = WindowedRules::new(&[counted]);
        let events = run(async {
            w.push(RecordKind::Metrics, &batch(&[(T0, "a", 1.0)]));
            w.advance(T0 + 100 * 365 * 24 * 60 * MIN).await.unwrap()
        });
        assert_eq!(
            events.len(),
            1,
            "fires at the first empty window: {events:?}"
        );
        assert_eq!(events[0].value, Some(0.0));
    }

    #[test]
    fn a_checkpoint_restores_rule_state_and_the_clock() {
        let specs = [spec("n", "count(*)", 60, 60, (">", 0.5))];
        let mut w = WindowedRules::new(&specs);
        let first = run(async {
            w.push(RecordKind::Metrics, &batch(&[(T0, "a", 1.0)]));
            w.advance(T0 + MIN).await.unwrap()
        });
        assert_eq!(first.len(), 1, "fires");
        let saved: Checkpoint =
            serde_json::from_str(&serde_json::to_string(&w.checkpoint()).unwrap()).unwrap();
        let mut r = WindowedRules::new(&specs);
        r.restore(&saved);
        assert_eq!(r.open_since(), Some(T0 + MIN));
        let after = run(async {
            // The closed window's row again (a replay): late, not a second firing.
            r.push(
                RecordKind::Metrics,
                &batch(&[(T0, "a", 1.0), (T0 + MIN, "a", 1.0)]),
            );
            let mut e = r.advance(T0 + 2 * MIN).await.unwrap();
            e.extend(r.advance(T0 + 3 * MIN).await.unwrap());
            e
        });
        let statuses: Vec<_> = after.iter().map(|e| e.status).collect();
        assert_eq!(statuses, [crate::Status::Resolved], "{after:?}");
        assert_eq!(r.late_rows(), 1);
    }
}
