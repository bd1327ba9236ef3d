//! Read-only SQL over the archive with DataFusion.
//!
//! ```text
//! archive (Delta tables) ─► [Engine: SessionContext + Delta table providers] ─► CLI, HTTP, Postgres wire
//! ```
//!
//! Every table of the archive is registered under its name (`logs`, `metrics`,
//! `dead_letters`); a table that does not exist yet is registered empty with its schema, so a
//! query over a young archive returns no rows rather than failing. Statements that would change
//! anything (DDL, DML, `SET`, `COPY`) are refused before planning.
#![warn(missing_docs)]

mod format;
pub mod trace;

use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::catalog::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use vigil_core::ErrorKind;
use vigil_core::schema::LogSchema;
use vigil_store::{Archive, StoreError, TableSpec};

pub use format::{Format, render};
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
}

impl QueryError {
    /// Who has to act, and whether a retry can help.
    pub fn kind(&self) -> ErrorKind {
        match self {
            QueryError::Store(e) => e.kind(),
            QueryError::ReadOnly(_) | QueryError::NoArchive(_) => ErrorKind::User,
            QueryError::DataFusion(e) => match e {
                DataFusionError::SQL(..)
                | DataFusionError::Plan(_)
                | DataFusionError::SchemaError(..)
                | DataFusionError::NotImplemented(_) => ErrorKind::User,
                DataFusionError::ObjectStore(_) | DataFusionError::IoError(_) => {
                    ErrorKind::External
                }
                _ => ErrorKind::Internal,
            },
        }
    }
}

/// A DataFusion session over one archive.
pub struct Engine {
    ctx: SessionContext,
}

impl Engine {
    /// Opens every table of the archive. Fails if the archive has none of them.
    pub async fn open(archive: &Archive) -> Result<Self, QueryError> {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .set_bool("datafusion.execution.parquet.pushdown_filters", true)
            .set_bool("datafusion.execution.parquet.reorder_filters", true);
        let ctx = SessionContext::new_with_config(config);
        let mut found = 0;
        for spec in TableSpec::all(&LogSchema::default()) {
            let name = spec.name.as_str();
            match archive.open(name).await? {
                Some(table) => {
                    table.update_datafusion_session(&ctx.state()).map_err(|e| {
                        StoreError::Delta {
                            table: name.into(),
                            source: Box::new(e),
                        }
                    })?;
                    let provider = table.table_provider().await?;
                    ctx.register_table(name, provider)?;
                    found += 1;
                }
                None => {
                    let empty = MemTable::try_new(spec.schema.clone(), vec![vec![]])?;
                    ctx.register_table(name, Arc::new(empty))?;
                }
            }
        }
        if found == 0 {
            return Err(QueryError::NoArchive(archive.root().to_string()));
        }
        Ok(Self { ctx })
    }

    /// The DataFusion session, for callers that register more tables.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Runs one read-only statement and collects its result.
    pub async fn sql(&self, query: &str) -> Result<Vec<RecordBatch>, QueryError> {
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = self
            .ctx
            .sql_with_options(query, options)
            .await
            .map_err(|e| match e {
                DataFusionError::Plan(msg) if msg.contains("not supported") => {
                    QueryError::ReadOnly(msg)
                }
                other => QueryError::DataFusion(other),
            })?;
        Ok(df.collect().await?)
    }
}
