//! Dead letters: records vigil could not decode, kept with their raw bytes, position and reason.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, Date32Builder, Int32Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use vigil_core::schema::{RecordKind, dead_letter_schema};
use vigil_core::time::date32_from_micros;

/// Why a record was rejected. The string form is the `reason_code` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonCode {
    /// Not valid JSON.
    InvalidJson,
    /// Not a protobuf message of the expected type (OTLP).
    InvalidProtobuf,
    /// Not valid UTF-8.
    InvalidUtf8,
    /// Valid JSON, but not an object.
    NotAnObject,
    /// A required field (`timestamp`, `service`, metric `name` or `value`) is absent or null.
    MissingField,
    /// A field has the wrong JSON type for its column.
    WrongType,
    /// `timestamp` is neither RFC 3339 nor an epoch number.
    InvalidTimestamp,
    /// `timestamp` is outside the plausible range: beyond the clock plus
    /// `decode.max_future_skew`, before the clock less `decode.max_past`, or outside years
    /// 0001–9999.
    TimestampOutOfRange,
    /// A value has the right type but cannot be stored (integer out of range, unknown
    /// metric type).
    InvalidValue,
    /// The record is longer than the configured limit.
    Oversized,
    /// The record nests deeper than the configured limit.
    TooDeep,
}

impl ReasonCode {
    /// Every code, for metrics and docs.
    pub const ALL: [ReasonCode; 11] = [
        ReasonCode::InvalidJson,
        ReasonCode::InvalidProtobuf,
        ReasonCode::InvalidUtf8,
        ReasonCode::NotAnObject,
        ReasonCode::MissingField,
        ReasonCode::WrongType,
        ReasonCode::InvalidTimestamp,
        ReasonCode::TimestampOutOfRange,
        ReasonCode::InvalidValue,
        ReasonCode::Oversized,
        ReasonCode::TooDeep,
    ];

    /// The machine-readable code stored in `reason_code`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::InvalidJson => "invalid_json",
            ReasonCode::InvalidProtobuf => "invalid_protobuf",
            ReasonCode::InvalidUtf8 => "invalid_utf8",
            ReasonCode::NotAnObject => "not_an_object",
            ReasonCode::MissingField => "missing_field",
            ReasonCode::WrongType => "wrong_type",
            ReasonCode::InvalidTimestamp => "invalid_timestamp",
            ReasonCode::TimestampOutOfRange => "timestamp_out_of_range",
            ReasonCode::InvalidValue => "invalid_value",
            ReasonCode::Oversized => "oversized",
            ReasonCode::TooDeep => "too_deep",
        }
    }
}

/// A rejected record's reason: a code and a message that names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Machine-readable reason.
    pub code: ReasonCode,
    /// Human-readable explanation, e.g. ``field `service` must be a string, found number``.
    pub message: String,
}

impl Rejection {
    pub(crate) fn new(code: ReasonCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Builds the `dead_letters` batch.
pub(crate) struct DeadLetters {
    kind: &'static str,
    raw_limit: usize,
    source: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    code: StringBuilder,
    reason: StringBuilder,
    raw: BinaryBuilder,
    raw_len: Int64Builder,
    counts: [u64; ReasonCode::ALL.len()],
    /// What a flush without dead letters returns, the usual case: built once, not ten empty
    /// columns and a schema per flush (3% of a backtest's decoding, which flushes every
    /// 256 KiB).
    empty: RecordBatch,
}

impl DeadLetters {
    pub(crate) fn new(kind: RecordKind, raw_limit: usize) -> Self {
        Self {
            kind: kind.table(),
            raw_limit,
            source: StringBuilder::new(),
            partition: Int32Builder::new(),
            offset: Int64Builder::new(),
            code: StringBuilder::new(),
            reason: StringBuilder::new(),
            raw: BinaryBuilder::new(),
            raw_len: Int64Builder::new(),
            counts: [0; ReasonCode::ALL.len()],
            empty: RecordBatch::new_empty(dead_letter_schema()),
        }
    }

    pub(crate) fn push(
        &mut self,
        source: &str,
        partition: Option<i32>,
        offset: i64,
        raw: &[u8],
        raw_len: usize,
        rejection: &Rejection,
    ) {
        self.source.append_value(source);
        self.partition.append_option(partition);
        self.offset.append_value(offset);
        self.code.append_value(rejection.code.as_str());
        self.reason.append_value(&rejection.message);
        self.raw.append_value(&raw[..raw.len().min(self.raw_limit)]);
        self.raw_len.append_value(raw_len as i64);
        self.counts[rejection.code as usize] += 1;
    }

    pub(crate) fn len(&self) -> usize {
        self.offset.len()
    }

    /// Dead letters per reason since the decoder was created.
    pub(crate) fn counts(&self) -> impl Iterator<Item = (ReasonCode, u64)> + '_ {
        ReasonCode::ALL
            .iter()
            .map(|&c| (c, self.counts[c as usize]))
    }

    pub(crate) fn finish(&mut self) -> RecordBatch {
        let n = self.len();
        if n == 0 {
            return self.empty.clone();
        }
        let now = vigil_core::time::now_micros();
        let mut received = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        received.append_value_n(now, n);
        let mut kind = StringBuilder::with_capacity(n, n * self.kind.len());
        let mut date = Date32Builder::with_capacity(n);
        for _ in 0..n {
            kind.append_value(self.kind);
        }
        date.append_value_n(date32_from_micros(now), n);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(received.finish()),
            Arc::new(kind.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.code.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.raw.finish()),
            Arc::new(self.raw_len.finish()),
            Arc::new(date.finish()),
        ];
        RecordBatch::try_new(self.empty.schema(), columns)
            .expect("dead-letter columns match the schema")
    }
}
