//! What each archive table looks like on disk: schema, partitioning, sort order, Parquet
//! properties.

use arrow::datatypes::SchemaRef;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use vigil_core::schema::{
    LogSchema, anomaly, anomaly_schema, col, dead, dead_letter_schema, edge, error_origin_schema,
    metric_schema, origin, service_edges_schema,
};

/// Rows per Parquet row group: small enough that statistics and the `trace_id` bloom filter
/// prune well, large enough that column chunks compress well.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// A table of the archive.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// Table name, also its directory under the archive root.
    pub name: String,
    /// Arrow schema of the batches written, partition column included.
    pub schema: SchemaRef,
    /// Delta partition column (a `Date32`).
    pub partition: &'static str,
    /// Files are sorted by this string column first (e.g. `service`), if any.
    pub sort_group: Option<&'static str>,
    /// ... then by this time column.
    pub sort_time: &'static str,
    /// Columns with a bloom filter in every row group.
    pub bloom_columns: Vec<&'static str>,
    /// Columns whose values are (nearly) unique, where a dictionary only costs time.
    pub plain_columns: Vec<&'static str>,
    /// Free text and JSON columns: min/max statistics would never prune anything there.
    pub no_stats_columns: Vec<&'static str>,
    /// Ids (strings of one length, nearly all different): written DELTA_LENGTH_BYTE_ARRAY,
    /// their bytes back to back and the lengths delta-packed, rather than PLAIN, each behind
    /// a four-byte length that zstd must read and cannot fold into the random bytes.
    pub delta_length_columns: Vec<&'static str>,
}

impl TableSpec {
    /// The `logs` table.
    pub fn logs(schema: &LogSchema) -> Self {
        Self {
            name: "logs".into(),
            schema: schema.schema().clone(),
            partition: col::DATE,
            sort_group: Some(col::SERVICE),
            sort_time: col::TIMESTAMP,
            bloom_columns: vec![col::TRACE_ID],
            plain_columns: vec![
                col::TIMESTAMP,
                col::TRACE_ID,
                col::SPAN_ID,
                col::PARENT_SPAN_ID,
                col::ADDITIONAL_DATA,
                col::EXTRA,
            ],
            no_stats_columns: vec![
                col::SPAN_ID,
                col::PARENT_SPAN_ID,
                col::MESSAGE,
                col::ADDITIONAL_DATA,
                col::EXTRA,
            ],
            delta_length_columns: vec![col::TRACE_ID, col::SPAN_ID, col::PARENT_SPAN_ID],
        }
    }

    /// The `metrics` table.
    pub fn metrics() -> Self {
        Self {
            name: "metrics".into(),
            schema: metric_schema(),
            partition: col::DATE,
            sort_group: Some(col::SERVICE),
            sort_time: col::TIMESTAMP,
            bloom_columns: vec![],
            plain_columns: vec![col::TIMESTAMP, col::EXTRA],
            no_stats_columns: vec![col::EXTRA],
            delta_length_columns: vec![],
        }
    }

    /// The `spans` table (from OTLP): sorted by service then start, a bloom filter on
    /// `trace_id` like `logs`.
    pub fn spans() -> Self {
        use vigil_core::schema::span;
        Self {
            name: "spans".into(),
            schema: vigil_core::schema::span_schema(),
            partition: col::DATE,
            sort_group: Some(col::SERVICE),
            sort_time: col::TIMESTAMP,
            bloom_columns: vec![col::TRACE_ID],
            plain_columns: vec![
                col::TIMESTAMP,
                span::END_TIME,
                col::TRACE_ID,
                col::SPAN_ID,
                col::PARENT_SPAN_ID,
                span::ATTRIBUTES,
                span::EXTRA,
            ],
            no_stats_columns: vec![
                col::SPAN_ID,
                col::PARENT_SPAN_ID,
                span::STATUS_MESSAGE,
                span::ATTRIBUTES,
                span::EXTRA,
            ],
            delta_length_columns: vec![col::TRACE_ID, col::SPAN_ID, col::PARENT_SPAN_ID],
        }
    }

    /// The table records of `kind` go to; `logs` with `log_schema`.
    pub fn records(kind: vigil_core::schema::RecordKind, log_schema: &LogSchema) -> Self {
        use vigil_core::schema::RecordKind;
        match kind {
            RecordKind::Logs => Self::logs(log_schema),
            RecordKind::Metrics => Self::metrics(),
            RecordKind::Spans => Self::spans(),
        }
    }

    /// The `dead_letters` table.
    pub fn dead_letters() -> Self {
        Self {
            name: "dead_letters".into(),
            schema: dead_letter_schema(),
            partition: col::DATE,
            sort_group: None,
            sort_time: dead::RECEIVED_AT,
            bloom_columns: vec![],
            plain_columns: vec![dead::RECEIVED_AT, dead::RAW, dead::REASON],
            no_stats_columns: vec![dead::RAW, dead::REASON],
            delta_length_columns: vec![],
        }
    }

    /// The `anomalies` table: every anomaly event, partitioned by the day it was detected.
    pub fn anomalies() -> Self {
        Self {
            name: "anomalies".into(),
            schema: anomaly_schema(),
            partition: col::DATE,
            sort_group: Some(anomaly::SERVICE),
            sort_time: anomaly::DETECTED_AT,
            bloom_columns: vec![],
            plain_columns: vec![anomaly::ID],
            no_stats_columns: vec![anomaly::LABELS, anomaly::ANNOTATIONS, anomaly::INCIDENT],
            delta_length_columns: vec![],
        }
    }

    /// The `service_edges` table: calls between services per window, learned from traces.
    pub fn service_edges() -> Self {
        Self {
            name: "service_edges".into(),
            schema: service_edges_schema(),
            partition: col::DATE,
            sort_group: Some(edge::CALLER),
            sort_time: edge::WINDOW_START,
            bloom_columns: vec![],
            plain_columns: vec![],
            no_stats_columns: vec![],
            delta_length_columns: vec![],
        }
    }

    /// The `error_origin` table: per window, where failing traces started.
    pub fn error_origin() -> Self {
        Self {
            name: "error_origin".into(),
            schema: error_origin_schema(),
            partition: col::DATE,
            sort_group: Some(origin::SERVICE),
            sort_time: origin::WINDOW_START,
            bloom_columns: vec![],
            plain_columns: vec![],
            no_stats_columns: vec![],
            delta_length_columns: vec![],
        }
    }

    /// Every table of an archive, `logs` with `log_schema`: records, dead letters, then what
    /// detection writes.
    pub fn all(log_schema: &LogSchema) -> [TableSpec; 7] {
        [
            Self::logs(log_schema),
            Self::metrics(),
            Self::spans(),
            Self::dead_letters(),
            Self::anomalies(),
            Self::service_edges(),
            Self::error_origin(),
        ]
    }

    /// Parquet properties: zstd, page-level statistics (so the page index is written),
    /// bloom filters, no dictionaries on unique columns, ids and the sorted time
    /// delta-encoded, and the sort order recorded in the file metadata.
    pub fn writer_properties(&self) -> WriterProperties {
        self.writer_properties_at(1)
    }

    /// [`writer_properties`](Self::writer_properties) with zstd at `level` (1 for hot files,
    /// written often; higher for cold ones, written once and kept long).
    pub fn writer_properties_at(&self, level: i32) -> WriterProperties {
        let file_columns: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .filter(|n| *n != self.partition)
            .collect();
        let position = |name: &str| file_columns.iter().position(|c| *c == name);
        let sorting = self
            .sort_group
            .into_iter()
            .chain([self.sort_time])
            .filter_map(position)
            .map(|i| SortingColumn {
                column_idx: i as i32,
                descending: false,
                nulls_first: false,
            })
            .collect();
        let mut b = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(level.clamp(1, 22)).expect("levels 1 to 22 are valid"),
            ))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_sorting_columns(Some(sorting))
            .set_created_by(format!("vigil {}", env!("CARGO_PKG_VERSION")));
        for c in &self.bloom_columns {
            b = b
                .set_column_bloom_filter_enabled((*c).into(), true)
                .set_column_bloom_filter_fpp((*c).into(), 0.01)
                .set_column_bloom_filter_max_ndv((*c).into(), ROW_GROUP_ROWS as u64 / 2);
        }
        for c in &self.plain_columns {
            b = b.set_column_dictionary_enabled((*c).into(), false);
        }
        for c in &self.delta_length_columns {
            b = b.set_column_encoding((*c).into(), Encoding::DELTA_LENGTH_BYTE_ARRAY);
        }
        // The time, sorted within each group: a few bits per delta where PLAIN spends eight
        // bytes a value for zstd to squeeze (ingest: 1.6% fewer instructions, logs files 1.7%
        // smaller; BENCHMARKS.md). Where the column keeps a dictionary (the few window starts
        // of `service_edges`, an anomaly's detection time) this is the dictionary's fallback.
        b = b.set_column_encoding(self.sort_time.into(), Encoding::DELTA_BINARY_PACKED);
        for c in &self.no_stats_columns {
            b = b.set_column_statistics_enabled((*c).into(), EnabledStatistics::None);
        }
        b.build()
    }
}

#[cfg(test)]
mod tests {
    use parquet::schema::types::ColumnPath;

    use super::*;

    #[test]
    fn every_table_writes_its_sorted_time_and_its_ids_delta_encoded_at_every_level() {
        for spec in TableSpec::all(&LogSchema::default()) {
            for level in [1, crate::maintain::COLD_ZSTD_LEVEL] {
                let props = spec.writer_properties_at(level);
                let time = ColumnPath::from(spec.sort_time);
                assert_eq!(
                    props.encoding(&time),
                    Some(Encoding::DELTA_BINARY_PACKED),
                    "{} at zstd {level}",
                    spec.name
                );
                for c in &spec.delta_length_columns {
                    assert_eq!(
                        props.encoding(&ColumnPath::from(*c)),
                        Some(Encoding::DELTA_LENGTH_BYTE_ARRAY),
                        "{}.{c}",
                        spec.name
                    );
                    // A dictionary would come first and make the encoding a fallback.
                    assert!(!props.dictionary_enabled(&ColumnPath::from(*c)), "{c}");
                }
            }
        }
        let logs = TableSpec::logs(&LogSchema::default());
        assert_eq!(
            logs.delta_length_columns,
            [col::TRACE_ID, col::SPAN_ID, col::PARENT_SPAN_ID]
        );
    }
}
