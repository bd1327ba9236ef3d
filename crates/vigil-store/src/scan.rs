//! Reading a table back in the shape vigil decodes into: the rows at or after an event time.
//! Detection replays its open windows from here after a restart.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::prelude::{SessionContext, col, lit};
use datafusion::scalar::ScalarValue;
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
        let name = table.to_string();
        let df_err = {
            let name = name.clone();
            move |e: datafusion::error::DataFusionError| StoreError::Delta {
                table: name.clone(),
                source: Box::new(e.into()),
            }
        };
        let ctx = SessionContext::new();
        delta
            .update_datafusion_session(&ctx.state())
            .map_err(StoreError::delta(table))?;
        let provider = delta.table_provider().await.map_err(&df_err)?;
        let from = lit(ScalarValue::TimestampMicrosecond(
            Some(since),
            Some("UTC".into()),
        ));
        let batches = ctx
            .read_table(provider)
            .and_then(|df| df.filter(col(column).gt_eq(from)))
            .map_err(&df_err)?
            .execute_stream()
            .await
            .map_err(&df_err)?;
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
