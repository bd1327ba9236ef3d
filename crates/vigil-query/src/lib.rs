//! Read-only SQL over the archive with DataFusion.
//!
//! ```text
//! archive (Delta tables) ─► [Engine: SessionContext + Delta table providers] ─► CLI, HTTP, Postgres wire
//! ```
//!
//! Every table of the archive is registered under its name (`logs`, `metrics`,
//! `dead_letters`, ...) as the union of its tiers, each row once (the tier layout:
//! `vigil_store::Tier`), and each tier under `<name>_hot`, `<name>_warm`, `<name>_cold` where
//! it exists; a table that does not exist yet is registered empty with its schema, so a query
//! over a young archive returns no rows rather than failing. Filters reach every tier's scan,
//! so a query for the last hour skips warm and cold files by their statistics. Statements that would change
//! anything (DDL, DML, `SET`, `COPY`) are refused before planning.
#![warn(missing_docs)]

mod format;
pub mod http;
mod limits;
pub mod ops;
pub mod pg;
pub mod trace;

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::common::ParamValues;
use datafusion::datasource::{ViewTable, provider_as_source};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext, SessionState};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::sql::parser::Statement;
use futures::StreamExt;
use vigil_core::ErrorKind;
use vigil_core::schema::LogSchema;
use vigil_store::{Archive, StoreError, TableSpec, Tier, TierKey, TierViews};

pub use format::{Format, ResultWriter, escape_controls, render};
pub use limits::QueryLimits;
pub use trace::{Trace, read_trace};

/// A query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The archive could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The statement would modify something; only queries are allowed.
    #[error("only read-only queries are allowed (SELECT, WITH, EXPLAIN, SHOW, DESCRIBE): {0}")]
    ReadOnly(String),
    /// DataFusion rejected or failed the query.
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
    /// The archive has no vigil tables.
    #[error("no vigil archive at {0}: it has no logs, metrics or dead_letters table")]
    NoArchive(String),
    /// The result has more rows than the server returns in one answer.
    #[error("the result has more than {0} rows: add a LIMIT, or aggregate")]
    TooManyRows(usize),
    /// The query ran past its time limit and was stopped.
    #[error("the query ran longer than its limit of {0:?} and was stopped")]
    Timeout(Duration),
    /// Opening the archive (reading its tables' logs) ran past the time limit.
    #[error(
        "opening the archive took longer than the limit of {0:?}: is its object store reachable?"
    )]
    OpenTimeout(Duration),
}

impl QueryError {
    /// Who has to act, and whether a retry can help.
    pub fn kind(&self) -> ErrorKind {
        match self {
            QueryError::Store(e) => e.kind(),
            QueryError::ReadOnly(_)
            | QueryError::NoArchive(_)
            | QueryError::Timeout(_)
            | QueryError::TooManyRows(_) => ErrorKind::User,
            QueryError::OpenTimeout(_) => ErrorKind::External,
            QueryError::DataFusion(e) => match e {
                DataFusionError::SQL(..)
                | DataFusionError::Plan(_)
                | DataFusionError::SchemaError(..)
                | DataFusionError::NotImplemented(_)
                | DataFusionError::ResourcesExhausted(_)
                | DataFusionError::Execution(_) => ErrorKind::User,
                DataFusionError::ObjectStore(_) | DataFusionError::IoError(_) => {
                    ErrorKind::External
                }
                _ => ErrorKind::Internal,
            },
        }
    }
}

impl QueryError {
    /// The `outcome` label of `vigil_queries_total`.
    fn outcome(&self) -> &'static str {
        match self {
            QueryError::ReadOnly(_) => "refused",
            QueryError::Timeout(_) | QueryError::OpenTimeout(_) => "timeout",
            QueryError::TooManyRows(_) => "too_many_rows",
            e => match e.kind() {
                ErrorKind::User => "invalid",
                ErrorKind::External | ErrorKind::Internal => "failed",
            },
        }
    }
}

/// One statement served over `interface` (`http`, `pg`), counted in the process's metrics when
/// it ends; dropped before it ends (the client went away), it counts as `cancelled`.
pub(crate) struct Served {
    interface: &'static str,
    started: std::time::Instant,
    outcome: Option<&'static str>,
}

impl Served {
    pub(crate) fn start(interface: &'static str) -> Self {
        vigil_core::metrics::metrics()
            .queries_in_flight
            .add(&[], 1.0);
        Self {
            interface,
            started: std::time::Instant::now(),
            outcome: None,
        }
    }

    /// The statement ended with `result`.
    pub(crate) fn end<T>(mut self, result: &Result<T, QueryError>) {
        self.outcome = Some(match result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        });
    }

    /// The statement failed with `e`.
    pub(crate) fn failed(mut self, e: &QueryError) {
        self.outcome = Some(e.outcome());
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let m = vigil_core::metrics::metrics();
        let outcome = self.outcome.unwrap_or("cancelled");
        m.queries_in_flight.add(&[], -1.0);
        m.queries.inc(&[self.interface, outcome]);
        m.query_seconds
            .observe(&[self.interface], self.started.elapsed().as_secs_f64());
    }
}

/// SQL statements running now in this process (over HTTP and the Postgres wire).
pub fn statements_in_flight() -> usize {
    vigil_core::metrics::metrics()
        .queries_in_flight
        .value(&[])
        .unwrap_or(0.0)
        .max(0.0) as usize
}

/// A DataFusion session over one archive.
pub struct Engine {
    ctx: SessionContext,
    limits: QueryLimits,
}

/// The rows of a query as they are computed, under its deadline.
pub struct ResultStream {
    inner: SendableRecordBatchStream,
    deadline: tokio::time::Instant,
    timeout: Duration,
}

impl ResultStream {
    /// The result's columns.
    pub fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    /// The next batch of rows; `None` at the end. Past the deadline the query is stopped
    /// and this is [`QueryError::Timeout`].
    pub async fn next(&mut self) -> Option<Result<RecordBatch, QueryError>> {
        match tokio::time::timeout_at(self.deadline, self.inner.next()).await {
            Ok(item) => item.map(|r| r.map_err(QueryError::from)),
            Err(_) => Some(Err(QueryError::Timeout(self.timeout))),
        }
    }
}

impl Engine {
    /// Opens every table of the archive, with the default [`QueryLimits`]. Fails if the
    /// archive has none of them.
    pub async fn open(archive: &Archive) -> Result<Self, QueryError> {
        Self::open_with(archive, QueryLimits::default()).await
    }

    /// Opens every table of the archive; every query runs under `limits`, and so does the
    /// opening itself (see [`QueryError::OpenTimeout`]).
    pub async fn open_with(archive: &Archive, limits: QueryLimits) -> Result<Self, QueryError> {
        within(limits.timeout, async {
            let views = ArchiveViews::load(archive).await?;
            Self::build(archive, &views, limits).await
        })
        .await
    }

    /// A new session over `views`.
    async fn build(
        archive: &Archive,
        views: &ArchiveViews,
        limits: QueryLimits,
    ) -> Result<Self, QueryError> {
        let started = std::time::Instant::now();
        let config = SessionConfig::new()
            .with_information_schema(true)
            .set_bool("datafusion.execution.parquet.pushdown_filters", true)
            .set_bool("datafusion.execution.parquet.reorder_filters", true);
        let ctx = SessionContext::new_with_config_rt(config, runtime(archive, limits)?);
        limits::guard_string_builders(&ctx, limits.max_string_bytes)?;
        // `additional_data` and `extra` are JSON text: `json_get_str(additional_data,
        // 'deal_id')`, `additional_data->>'deal_id'`, as analysts write it in DuckDB.
        let mut ctx = ctx;
        datafusion_functions_json::register_all(&mut ctx)?;
        let session = started.elapsed();
        let mut found = 0;
        for (spec, views) in &views.tables {
            let name = spec.name.as_str();
            let tiers = views.providers(&ctx.state()).await?;
            for (tier, provider) in &tiers {
                ctx.register_table(format!("{name}_{}", tier.name()), provider.clone())?;
            }
            let table: Arc<dyn TableProvider> = match tiers.as_slice() {
                [] => Arc::new(MemTable::try_new(spec.schema.clone(), vec![vec![]])?),
                [(_, only)] => only.clone(),
                [(first, p), rest @ ..] => {
                    let scan = |tier: Tier, p: &Arc<dyn TableProvider>| {
                        LogicalPlanBuilder::scan(
                            format!("{name}_{}", tier.name()),
                            provider_as_source(p.clone()),
                            None,
                        )
                    };
                    let mut plan = scan(*first, p)?;
                    for (tier, p) in rest {
                        plan = plan.union(scan(*tier, p)?.build()?)?;
                    }
                    Arc::new(ViewTable::new(plan.build()?, None))
                }
            };
            found += usize::from(!tiers.is_empty());
            ctx.register_table(name, table)?;
        }
        if found == 0 {
            return Err(QueryError::NoArchive(archive.root().to_string()));
        }
        tracing::debug!(
            session_us = session.as_micros() as u64,
            tables_us = (started.elapsed() - session).as_micros() as u64,
            "session built"
        );
        Ok(Self { ctx, limits })
    }

    /// A session over the same tables as `state` (its stores and caches too), with a memory
    /// pool of its own.
    fn derived(state: &SessionState, limits: QueryLimits) -> Result<Self, QueryError> {
        let runtime = RuntimeEnvBuilder::from_runtime_env(state.runtime_env())
            .with_memory_limit(limits.memory, 1.0)
            .build_arc()?;
        let state = SessionStateBuilder::new_from_existing(state.clone())
            .with_runtime_env(runtime)
            .build();
        Ok(Self {
            ctx: SessionContext::new_with_state(state),
            limits,
        })
    }

    /// The DataFusion session, for callers that register more tables.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Runs one read-only statement and streams its result, under the engine's limits.
    pub async fn sql_stream(&self, query: &str) -> Result<ResultStream, QueryError> {
        let state = self.ctx.state();
        self.stream(
            async move { Ok(state.create_logical_plan(query).await?) },
            None,
        )
        .await
    }

    /// Plans one parsed statement (the Postgres wire parses with its own dialect) and
    /// streams its result, like [`Engine::sql_stream`]. `params` fill `$1`, `$2`, ...;
    /// `timeout`, when shorter than the engine's, is the client's own limit.
    pub async fn statement_stream(
        &self,
        statement: Statement,
        params: Option<ParamValues>,
        timeout: Option<Duration>,
    ) -> Result<ResultStream, QueryError> {
        let state = self.ctx.state();
        let planned = async move {
            let plan = state.statement_to_plan(statement).await?;
            Ok(match params {
                Some(params) => plan.replace_params_with_values(&params)?,
                None => plan,
            })
        };
        self.stream(planned, timeout).await
    }

    /// Plans one parsed statement and checks that it is a query, without running it: the
    /// columns it will answer with.
    pub async fn describe(&self, statement: Statement) -> Result<LogicalPlan, QueryError> {
        let plan = self.ctx.state().statement_to_plan(statement).await?;
        read_only(&plan)?;
        Ok(plan)
    }

    /// Checks a plan is read-only and runs it under the deadline; the deadline covers
    /// planning and every batch of the answer.
    async fn stream(
        &self,
        plan: impl Future<Output = Result<LogicalPlan, QueryError>>,
        timeout: Option<Duration>,
    ) -> Result<ResultStream, QueryError> {
        let timeout = timeout.map_or(self.limits.timeout, |t| t.min(self.limits.timeout));
        let deadline = tokio::time::Instant::now() + timeout;
        let planned = async {
            let plan = plan.await?;
            read_only(&plan)?;
            let df = self.ctx.execute_logical_plan(plan).await?;
            Ok::<_, QueryError>(df.execute_stream().await?)
        };
        let inner = tokio::time::timeout_at(deadline, planned)
            .await
            .map_err(|_| QueryError::Timeout(timeout))??;
        Ok(ResultStream {
            inner,
            deadline,
            timeout,
        })
    }

    /// Runs one read-only statement and collects its result.
    pub async fn sql(&self, query: &str) -> Result<Vec<RecordBatch>, QueryError> {
        let mut stream = self.sql_stream(query).await?;
        let mut out = Vec::new();
        while let Some(batch) = stream.next().await {
            out.push(batch?);
        }
        Ok(out)
    }
}

/// A statement's runtime: a memory pool of its own (the limit is each query's), and the
/// footers of the files and the object stores (with the small ranges they keep) shared with
/// the statements before, where the archive keeps them.
fn runtime(archive: &Archive, limits: QueryLimits) -> Result<Arc<RuntimeEnv>, QueryError> {
    let mut builder = RuntimeEnvBuilder::new()
        .with_memory_limit(limits.memory, 1.0)
        .with_cache_manager(
            CacheManagerConfig::default().with_file_metadata_cache(archive.file_metadata_cache()),
        );
    if let Some(stores) = archive.object_store_registry() {
        builder = builder.with_object_store_registry(stores);
    }
    Ok(builder.build_arc()?)
}

/// `open` (of the archive, or a session over it), stopped after `timeout`: an object store
/// that accepts connections and never answers would otherwise hold the caller for
/// `object_store`'s own retries, minutes past the `--timeout` the user asked for.
async fn within<T>(
    timeout: Duration,
    open: impl Future<Output = Result<T, QueryError>>,
) -> Result<T, QueryError> {
    tokio::time::timeout(timeout, open)
        .await
        .map_err(|_| QueryError::OpenTimeout(timeout))?
}

/// Every table of an archive as a reader sees it at one moment.
struct ArchiveViews {
    tables: Vec<(TableSpec, TierViews)>,
}

impl ArchiveViews {
    async fn load(archive: &Archive) -> Result<Self, QueryError> {
        let (archive, _) = archive.clone().with_recorded_tiers().await?;
        let mut tables = Vec::new();
        for spec in TableSpec::all(&LogSchema::default()) {
            let views = archive.tier_views(spec.name.as_str()).await?;
            tables.push((spec, views));
        }
        Ok(Self { tables })
    }

    /// What the views read: equal keys, the same rows.
    fn key(&self) -> Vec<TierKey> {
        self.tables.iter().map(|(_, v)| v.key()).collect()
    }
}

/// Sets up a session built afresh.
type Prepare = dyn Fn(&SessionContext) -> Result<(), QueryError> + Send + Sync;

/// The sessions of a server: each statement gets a session over the archive as it is when
/// the statement starts, with a memory pool of its own. While no table has changed, the
/// session is derived from the one before (its catalog and functions kept), rather than
/// built again: checking costs the tables' update (one listing of each log), building them
/// every table's providers and, for the Postgres wire, its catalog.
pub struct Sessions {
    archive: Archive,
    limits: QueryLimits,
    /// Run on every session built afresh (the Postgres wire adds its catalog).
    prepare: Box<Prepare>,
    kept: std::sync::Mutex<Option<(Vec<TierKey>, SessionState)>>,
}

impl Sessions {
    /// Sessions over `archive` (opened with its read cache, for a server); every query runs
    /// under `limits`, and `prepare` sets up each session built.
    pub fn new(
        archive: Archive,
        limits: QueryLimits,
        prepare: impl Fn(&SessionContext) -> Result<(), QueryError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            archive,
            limits,
            prepare: Box::new(prepare),
            kept: std::sync::Mutex::new(None),
        }
    }

    /// A session over the archive as it is now, opened within the query time limit.
    pub async fn engine(&self) -> Result<Engine, QueryError> {
        within(self.limits.timeout, self.open()).await
    }

    async fn open(&self) -> Result<Engine, QueryError> {
        let views = ArchiveViews::load(&self.archive).await?;
        let key = views.key();
        if let Some((kept_key, state)) = &*self.kept.lock().unwrap_or_else(|e| e.into_inner())
            && *kept_key == key
        {
            return Engine::derived(state, self.limits);
        }
        let engine = Engine::build(&self.archive, &views, self.limits).await?;
        (self.prepare)(engine.context())?;
        *self.kept.lock().unwrap_or_else(|e| e.into_inner()) = Some((key, engine.ctx.state()));
        Ok(engine)
    }
}

/// Refuses a plan that is not a query: DDL (`CREATE EXTERNAL TABLE` included), DML (`INSERT`,
/// `COPY ... TO`), and statements (`SET`, transactions). The plan is checked, not the text,
/// so no spelling gets past it.
fn read_only(plan: &LogicalPlan) -> Result<(), QueryError> {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(plan)
        .map_err(|e| match e {
            DataFusionError::Plan(msg) => QueryError::ReadOnly(msg),
            other => QueryError::DataFusion(other),
        })
}
