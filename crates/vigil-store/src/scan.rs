//! Reading a table back in the shape vigil decodes into: the rows at or after an event time.
//! Detection replays its open windows from here after a restart.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::prelude::{Expr, SessionContext, col, lit};
use datafusion::scalar::ScalarValue;
use deltalake::DeltaTable;
use deltalake::delta_datafusion::FileSelection;
use futures::stream::{self, BoxStream, StreamExt};

use crate::archive::Archive;
use crate::error::StoreError;

impl Archive {
    /// The rows of `table` whose `column` (an event-time column) is at or after `since` (µs),
    /// as batches of `schema`: its columns in its order and types, whatever the files hold
    /// (strings read back as views, the partition column last, columns added since the files
    /// were written, which come back null). Empty when the table does not exist. Streams, so
    /// a long replay holds one batch at a time.
    pub async fn scan_since(
        &self,
        table: &str,
        column: &str,
        since: i64,
        schema: SchemaRef,
    ) -> Result<BoxStream<'static, Result<RecordBatch, StoreError>>, StoreError> {
        let Some(delta) = self.open(table).await? else {
            return Ok(stream::empty().boxed());
        };
        let from = lit(ScalarValue::TimestampMicrosecond(
            Some(since),
            Some("UTC".into()),
        ));
        scan(&delta, table, None, Some(col(column).gt_eq(from)), schema).await
    }
}

/// The rows of `table` (of only `files` when given) that pass `filter`, as batches of
/// `schema` (see [`conform`]).
pub(crate) async fn scan(
    table: &DeltaTable,
    name: &str,
    files: Option<FileSelection>,
    filter: Option<Expr>,
    schema: SchemaRef,
) -> Result<BoxStream<'static, Result<RecordBatch, StoreError>>, StoreError> {
    let name = name.to_string();
    let df_err = {
        let name = name.clone();
        move |e: datafusion::error::DataFusionError| StoreError::Delta {
            table: name.clone(),
            source: Box::new(e.into()),
        }
    };
    let ctx = SessionContext::new();
    table
        .update_datafusion_session(&ctx.state())
        .map_err(StoreError::delta(&name))?;
    let mut provider = table.table_provider();
    if let Some(files) = files {
        provider = provider.with_file_selection(files);
    }
    let provider = provider.await.map_err(&df_err)?;
    let mut df = ctx.read_table(provider).map_err(&df_err)?;
    if let Some(filter) = filter {
        df = df.filter(filter).map_err(&df_err)?;
    }
    let batches = df.execute_stream().await.map_err(&df_err)?;
    Ok(batches
        .map(move |b| {
            let b = b.map_err(&df_err)?;
            conform(&b, &schema).map_err(|source| StoreError::Arrow {
                table: name.clone(),
                source,
            })
        })
        .boxed())
}

/// `batch` with `schema`'s columns, in its order and types.
pub(crate) fn conform(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => arrow::compute::cast(c, f.data_type()),
            None => Ok(arrow::array::new_null_array(
                f.data_type(),
                batch.num_rows(),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
}
