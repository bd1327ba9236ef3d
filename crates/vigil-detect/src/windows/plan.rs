//! A rule's physical plan split at its `Partial` aggregate: the lower half folds bites of raw
//! rows into partial aggregate states, the upper half (final aggregation and the signal's
//! arithmetic) turns a window's partial states into one value per service.
//!
//! The plan is made once per input schema; each run swaps the plan's in-memory source (raw
//! rows, or the partial states under the upper half) for the rows at hand, so nothing is
//! planned again per bite or per window.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, RecordBatchOptions,
    StringArray,
};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::MemTable;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::DataFusionError;
use datafusion::execution::{SessionStateBuilder, TaskContext};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, InListExpr, Literal};
use datafusion::physical_expr::{PhysicalExpr, split_conjunction};
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;

use super::clock::Batches;

/// Why a plan could not be made or run: DataFusion's error, or a signal that is not what a
/// rule needs. The caller names the rule.
#[derive(Debug)]
pub(super) enum PlanError {
    DataFusion(DataFusionError),
    NotAnAggregate,
    ServiceColumn(DataType),
    NotANumber,
}

impl From<DataFusionError> for PlanError {
    fn from(e: DataFusionError) -> Self {
        Self::DataFusion(e)
    }
}

/// A session that keeps a plan's Partial and Final aggregates apart: one partition and no
/// physical optimizer (which would merge them into one Single aggregate).
pub(super) fn session() -> SessionContext {
    let state = SessionStateBuilder::new()
        .with_config(SessionConfig::new().with_target_partitions(1))
        .with_default_features()
        .with_physical_optimizer_rules(vec![])
        .build();
    SessionContext::new_with_state(state)
}

/// What a plan runs over: raw rows, or its partial states of them ([`Plan::counted`]).
pub(super) enum Input<'a> {
    Rows(&'a [RecordBatch]),
    States(RecordBatch),
}

/// A rule's physical plan, split at its partial aggregate.
pub(super) struct Plan {
    /// The input schema it was planned for.
    input: SchemaRef,
    /// The `Partial` aggregate and everything under it.
    partial: Arc<dyn ExecutionPlan>,
    /// The whole plan (it contains `partial`).
    whole: Arc<dyn ExecutionPlan>,
    /// What the plans run with, made once: a session's task context copies its function
    /// registries (some three hundred functions), which cost more than a small window's rows.
    task: Arc<TaskContext>,
    /// The services whose rows its filter can keep, where the filter names them (see
    /// [`services_kept`]); `None`: any service's.
    services: Option<Vec<String>>,
    /// Whether its partial states are only rows counted per service ([`counts_rows`]).
    counts_rows: bool,
}

impl Plan {
    /// Plans `sql` (which reads the table `w`) over rows of `schema`.
    pub(super) async fn new(
        ctx: &SessionContext,
        sql: &str,
        schema: &SchemaRef,
    ) -> Result<Self, PlanError> {
        let table = MemTable::try_new(Arc::clone(schema), vec![vec![]])?;
        ctx.register_table("w", Arc::new(table))?;
        let planned = async { ctx.sql(sql).await?.create_physical_plan().await }.await;
        let _ = ctx.deregister_table("w");
        let whole = planned?;
        let mut partial = None;
        whole.apply(|node| {
            if let Some(agg) = node.downcast_ref::<AggregateExec>()
                && *agg.mode() == AggregateMode::Partial
            {
                partial = Some(Arc::clone(node));
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        let partial = partial.ok_or(PlanError::NotAnAggregate)?;
        let mut services = None;
        partial.apply(|node| {
            Ok(match node.downcast_ref::<FilterExec>() {
                Some(filter) => {
                    services = services_kept(filter.predicate());
                    TreeNodeRecursion::Stop
                }
                None => TreeNodeRecursion::Continue,
            })
        })?;
        Ok(Self {
            input: Arc::clone(schema),
            counts_rows: counts_rows(&partial),
            partial,
            whole,
            task: ctx.task_ctx(),
            services,
        })
    }

    /// The services whose rows the plan's filter can keep, if it names them: rows of any
    /// other service add nothing to its signal.
    pub(super) fn services(&self) -> Option<&[String]> {
        self.services.as_deref()
    }

    /// The input columns the plan reads (indices into its input schema): its scan's
    /// projection, or every column if it has none.
    pub(super) fn scanned(&self) -> Vec<usize> {
        let mut scanned = None;
        let _ = self.partial.apply(|node| {
            scanned = memory_scan(node);
            Ok(match scanned {
                Some(_) => TreeNodeRecursion::Stop,
                None => TreeNodeRecursion::Continue,
            })
        });
        scanned
            .flatten()
            .unwrap_or_else(|| (0..self.input.fields().len()).collect())
    }

    /// The schema of the partial aggregate states.
    pub(super) fn partial_schema(&self) -> SchemaRef {
        self.partial.schema()
    }

    /// Whether the plan was made for rows of `schema`.
    pub(super) fn reads(&self, schema: &SchemaRef) -> bool {
        &self.input == schema
    }

    /// Its partial aggregate states made from how many rows of each service `rows` holds,
    /// without reading them, where the plan only counts rows per service ([`counts_rows`])
    /// and each batch holds one service's rows. `None` otherwise: the plan then reads them.
    pub(super) fn counted(&self, rows: &Batches) -> Option<RecordBatch> {
        if !self.counts_rows {
            return None;
        }
        let counts = rows.counts()?;
        let schema = self.partial.schema();
        let services: ArrayRef =
            Arc::new(StringArray::from_iter_values(counts.iter().map(|c| c.0)));
        let rows: ArrayRef = Arc::new(Int64Array::from_iter_values(
            counts.iter().map(|c| c.1 as i64),
        ));
        let mut columns = vec![services];
        columns.resize(schema.fields().len(), rows);
        // `counts_rows` checked the states' types when the plan was made.
        RecordBatch::try_new(schema, columns).ok()
    }

    /// The partial aggregate states of `rows`, as one batch.
    pub(super) async fn partial(&self, rows: Input<'_>) -> Result<RecordBatch, PlanError> {
        let rows = match rows {
            Input::Rows(rows) => rows,
            Input::States(states) => return Ok(states),
        };
        let plan = with_rows(&self.partial, rows, &self.input)?;
        let out = collect(plan, Arc::clone(&self.task)).await?;
        Ok(arrow::compute::concat_batches(&self.partial.schema(), &out)
            .map_err(DataFusionError::from)?)
    }

    /// The signal per service from a window's partial states, with the rows it was computed
    /// over where the query counts them, sorted by service (see [`values`]).
    pub(super) async fn finish(
        &self,
        states: Vec<RecordBatch>,
    ) -> Result<Vec<(String, f64, f64)>, PlanError> {
        let partial = &self.partial;
        let states: Arc<dyn ExecutionPlan> = MemorySourceConfig::try_new_exec(
            std::slice::from_ref(&states),
            partial.schema(),
            None,
        )?;
        let whole = replace_node(&self.whole, &mut |node| {
            Ok(Arc::ptr_eq(node, partial).then(|| Arc::clone(&states)))
        })?;
        values(&collect(whole, Arc::clone(&self.task)).await?)
    }

    /// The signal per service straight from raw `rows`, as [`partial`](Self::partial) and
    /// then [`finish`](Self::finish) give it: the same plan, its Partial and Final
    /// aggregates, run once over the rows instead of twice with the states in between.
    pub(super) async fn whole(
        &self,
        rows: Input<'_>,
    ) -> Result<Vec<(String, f64, f64)>, PlanError> {
        let rows = match rows {
            Input::Rows(rows) => rows,
            Input::States(states) => return self.finish(vec![states]).await,
        };
        let plan = with_rows(&self.whole, rows, &self.input)?;
        values(&collect(plan, Arc::clone(&self.task)).await?)
    }
}

/// The services a filter keeps rows of, when one of its conjuncts names them: `service =
/// 'a'` (either way round), `service IN ('a', 'b')`, or such terms joined by `OR`. A row of
/// any other service (or none) fails that conjunct, so the whole filter. `None` when no
/// conjunct says (`service <> 'a'`, `lower(service) = 'a'`, `service = 'a' OR level = 'ERROR'`).
fn services_kept(predicate: &Arc<dyn PhysicalExpr>) -> Option<Vec<String>> {
    fn text(e: &Arc<dyn PhysicalExpr>) -> Option<String> {
        match e.downcast_ref::<Literal>()?.value() {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)) => Some(s.clone()),
            _ => None,
        }
    }
    fn named(e: &Arc<dyn PhysicalExpr>) -> Option<Vec<String>> {
        if let Some(b) = e.downcast_ref::<BinaryExpr>() {
            return match b.op() {
                Operator::Eq if is_service(b.left()) => Some(vec![text(b.right())?]),
                Operator::Eq if is_service(b.right()) => Some(vec![text(b.left())?]),
                Operator::Or => {
                    let mut services = named(b.left())?;
                    services.extend(named(b.right())?);
                    Some(services)
                }
                _ => None,
            };
        }
        let list = e.downcast_ref::<InListExpr>()?;
        if list.negated() || !is_service(list.expr()) {
            return None;
        }
        list.list().iter().map(text).collect()
    }
    split_conjunction(predicate).into_iter().find_map(named)
}

/// Whether `e` is the `service` column.
fn is_service(e: &Arc<dyn PhysicalExpr>) -> bool {
    e.downcast_ref::<Column>()
        .is_some_and(|c| c.name() == "service")
}

/// Whether a plan's `partial` aggregate only counts rows per service: grouped by the
/// `service` column alone, straight over the rows (no filter), each of its aggregates a plain
/// `count` of a constant (`count(*)`), its states a string and counts. Its states for a window
/// are then the number of rows of each service, which batches of one service each give
/// without a row being read: a request rate (`count(*)` per service) needs no grouping.
fn counts_rows(partial: &Node) -> bool {
    let Some(agg) = partial.downcast_ref::<AggregateExec>() else {
        return false;
    };
    let group = agg.group_expr();
    let by_service = group.is_single() && matches!(group.expr(), [(e, _)] if is_service(e));
    let constant = |e: &Arc<dyn PhysicalExpr>| {
        e.downcast_ref::<Literal>()
            .is_some_and(|l| !l.value().is_null())
    };
    let counts = !agg.aggr_expr().is_empty()
        && agg.aggr_expr().iter().all(|a| {
            a.fun().name() == "count" && !a.is_distinct() && a.expressions().iter().all(constant)
        })
        && agg.filter_expr().iter().all(Option::is_none);
    let schema = agg.schema();
    let types = schema.fields().iter().enumerate().all(|(i, f)| {
        f.data_type()
            == if i == 0 {
                &DataType::Utf8
            } else {
                &DataType::Int64
            }
    });
    by_service && counts && types && memory_scan(agg.input()).is_some()
}

/// The whole plan's output as (service, value, rows), sorted by service. A null value is NaN
/// (the condition then never holds); so is `rows` where the query does not count them.
fn values(batches: &[RecordBatch]) -> Result<Vec<(String, f64, f64)>, PlanError> {
    let mut values = Vec::new();
    for b in batches {
        let services = b.column(0);
        let Some(services) = services.as_string_opt::<i32>() else {
            return Err(PlanError::ServiceColumn(services.data_type().clone()));
        };
        let Some(v) = b.column(1).as_any().downcast_ref::<Float64Array>() else {
            return Err(PlanError::NotANumber);
        };
        let rows = b
            .columns()
            .get(2)
            .map(|c| c.as_any().downcast_ref::<Float64Array>())
            .map(|c| c.ok_or(PlanError::NotANumber))
            .transpose()?;
        for row in 0..b.num_rows() {
            if services.is_null(row) {
                continue;
            }
            let value = if v.is_null(row) {
                f64::NAN
            } else {
                v.value(row)
            };
            let rows = rows.map_or(f64::NAN, |r| r.value(row));
            values.push((services.value(row).to_string(), value, rows));
        }
    }
    values.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(values)
}

/// `plan`, planned over an in-memory table, reading `rows` (of `schema`) instead: a plan made
/// once runs over every new bite of rows without being planned again. The scan is given the
/// columns it projects, each concatenated into one array: a window's rows come as many small
/// batches (a decoder's batch per service), and a plan run batch by batch spends more on each
/// batch's way through its streams than on the rows.
fn with_rows(
    plan: &Arc<dyn ExecutionPlan>,
    rows: &[RecordBatch],
    schema: &SchemaRef,
) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
    replace_node(plan, &mut |node| {
        let Some(projection) = memory_scan(node) else {
            return Ok(None);
        };
        let projection = projection.unwrap_or_else(|| (0..schema.fields().len()).collect());
        let projected = Arc::new(schema.project(&projection)?);
        // Column by column rather than `RecordBatch::project` and `concat_batches`: projecting
        // each batch builds a schema per batch (+13 M of a one-hour backtest's 3,120 M).
        let columns = projection
            .iter()
            .map(|&c| {
                let parts: Vec<&dyn Array> = rows.iter().map(|b| b.column(c).as_ref()).collect();
                arrow::compute::concat(&parts)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let n = rows.iter().map(RecordBatch::num_rows).sum();
        let batch = RecordBatch::try_new_with_options(
            Arc::clone(&projected),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(n)),
        )?;
        let exec: Node = MemorySourceConfig::try_new_exec(&[vec![batch]], projected, None)?;
        Ok(Some(exec))
    })
}

type Node = Arc<dyn ExecutionPlan>;

/// The projection of `node` if it is an in-memory scan (`Some(None)`: every column).
fn memory_scan(node: &Node) -> Option<Option<Vec<usize>>> {
    let source = node.downcast_ref::<DataSourceExec>()?;
    let memory = source.data_source().downcast_ref::<MemorySourceConfig>()?;
    Some(memory.projection().clone())
}

/// `plan` with the first node `swap` gives a replacement for (in pre-order) replaced by it.
/// The replacement has the properties of the node it replaces (the same schema, partitioning
/// and ordering: in-memory rows for in-memory rows), so the nodes above it are rebuilt
/// keeping theirs, not deriving them again: on a small bite of rows, deriving a plan's
/// properties cost more than running it.
fn replace_node<F>(node: &Node, swap: &mut F) -> Result<Node, DataFusionError>
where
    F: FnMut(&Node) -> Result<Option<Node>, DataFusionError>,
{
    if let Some(new) = swap(node)? {
        return Ok(new);
    }
    let children = node.children();
    for (i, child) in children.iter().enumerate() {
        let new = replace_node(child, swap)?;
        if !Arc::ptr_eq(&new, child) {
            let mut rebuilt: Vec<Node> = children.into_iter().cloned().collect();
            rebuilt[i] = new;
            return Arc::clone(node).replace_children(
                rebuilt,
                ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep),
            );
        }
    }
    Ok(Arc::clone(node))
}
