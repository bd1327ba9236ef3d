//! The pipeline file as written: serde structs, one per table. Every field's `///` doc is its
//! user reference (see `docs/pipeline.md`).
//!
//! Unknown keys are not rejected by serde here: the loader collects them with `serde_ignored`
//! so that *every* unknown key in the file is reported at once, with its location, instead of
//! only the first one that `deny_unknown_fields` would stop at.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// `[pipeline]`
#[derive(Debug, Deserialize, Default)]
pub struct RawMeta {
    /// Name of the pipeline, used in logs, metrics and as the Kafka transaction app id.
    pub name: Option<String>,
}

/// `[[sources]]` with `type = "file"`: NDJSON files, plain or gzip (detected by content).
#[derive(Debug, Deserialize)]
pub struct RawFileSource {
    /// Name of the source in logs and metrics; defaults to `file-<n>`.
    pub name: Option<String>,
    /// `logs` or `metrics`: the schema and table the records go to.
    pub kind: Spanned<String>,
    /// Files to read, in order.
    pub paths: Vec<Spanned<String>>,
}

/// `[[sources]]` with `type = "stdin"`: NDJSON on standard input.
#[derive(Debug, Deserialize)]
pub struct RawStdinSource {
    /// Name of the source in logs and metrics; defaults to `stdin`.
    pub name: Option<String>,
    /// `logs` or `metrics`.
    pub kind: Spanned<String>,
}

/// `[[sources]]` with `type = "generator"`: built-in telemetry of the deals system, logs and
/// metrics.
#[derive(Debug, Deserialize, Default)]
pub struct RawGeneratorSource {
    /// Name of the source; defaults to `generator`.
    pub name: Option<String>,
    /// Random seed; the same seed gives the same telemetry. Default 42.
    pub seed: Option<u64>,
    /// Event time of the first record, RFC 3339. Default `2025-06-02T09:00:00Z`, or the
    /// current time when `realtime = true`.
    pub start: Option<Spanned<String>>,
    /// Event-time span to generate, e.g. `"1h"`. Default `1h`.
    pub duration: Option<Spanned<String>>,
    /// Mean requests per second entering at the gateway. Default 20.
    pub rate: Option<Spanned<f64>>,
    /// Metrics reporting interval. Default `10s`.
    pub metrics_interval: Option<Spanned<String>>,
    /// Incidents to inject, `kind:service@start+duration[*intensity]`, e.g.
    /// `"errors:token-service@30m+15m"`.
    #[serde(default)]
    pub incidents: Vec<Spanned<String>>,
    /// Pace output to the wall clock instead of generating as fast as possible. Default false.
    pub realtime: Option<bool>,
}

/// A size: a number of bytes or a string such as `"128MiB"`.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum RawSize {
    /// Bytes.
    Bytes(u64),
    /// With a unit.
    Text(String),
}

/// `[archive]`
#[derive(Debug, Deserialize, Default)]
pub struct RawArchive {
    /// Root of the archive: a path, `file://` or `s3://` URL. Tables live under it
    /// (`<url>/logs`, `<url>/metrics`, `<url>/dead_letters`). Default `./vigil-data`.
    pub url: Option<Spanned<String>>,
    /// Object-store options passed to `object_store`, e.g. `aws_endpoint`,
    /// `aws_access_key_id`, `aws_region`, `aws_allow_http`.
    #[serde(default)]
    pub storage_options: BTreeMap<String, String>,
    /// When buffered rows are written out as Parquet and committed.
    #[serde(default)]
    pub flush: RawFlush,
}

/// `[archive.flush]`: a table is flushed when any limit is reached.
#[derive(Debug, Deserialize, Default)]
pub struct RawFlush {
    /// Rows buffered per table. Default 1 000 000.
    pub max_rows: Option<usize>,
    /// In-memory Arrow bytes buffered per table. Default `256MiB`.
    pub max_bytes: Option<Spanned<RawSize>>,
    /// Longest time a row waits before being committed. Default `30s`.
    pub interval: Option<Spanned<String>>,
}

/// `[schema]`
#[derive(Debug, Deserialize, Default)]
pub struct RawSchema {
    /// The `logs` schema.
    #[serde(default)]
    pub logs: RawLogSchema,
}

/// `[schema.logs]`
#[derive(Debug, Deserialize, Default)]
pub struct RawLogSchema {
    /// Fields of `additional_data` promoted to typed columns:
    /// `"additional_data.status_code" = "int32"` or
    /// `"additional_data.status_code" = { type = "int32", column = "http_status" }`.
    #[serde(default)]
    pub fields: BTreeMap<String, Spanned<RawField>>,
}

/// A promoted field's type, optionally with a column name.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawField {
    /// Just the type.
    Type(String),
    /// Type and column name.
    Full {
        /// int32, int64, float64, bool, string or timestamp.
        #[serde(rename = "type")]
        field_type: String,
        /// Column name; defaults to the key.
        column: Option<String>,
    },
}

/// `[retention]`: how long data stays in each tier.
#[derive(Debug, Deserialize, Default)]
pub struct RawRetention {
    /// Age until which data stays in the hot tier. Default `7d`.
    pub hot: Option<Spanned<String>>,
    /// Age until which data stays in the warm tier. Default `30d`.
    pub warm: Option<Spanned<String>>,
    /// Age after which data is deleted. Default `365d`.
    pub cold: Option<Spanned<String>>,
}

/// `[decode]`
#[derive(Debug, Deserialize, Default)]
pub struct RawDecode {
    /// Records per decoded batch. Default 8192.
    pub batch_size: Option<usize>,
    /// Longer records are dead letters. Default `1MiB`.
    pub max_record_bytes: Option<Spanned<RawSize>>,
    /// Deeper records are dead letters. Default 64.
    pub max_depth: Option<usize>,
    /// Bytes of a bad record kept in its dead letter. Default `64KiB`.
    pub dead_letter_raw_limit: Option<Spanned<RawSize>>,
}
