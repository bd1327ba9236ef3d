//! Log records → columns of the `logs` schema.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder,
    Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::SchemaRef;
use simd_json::Node;
use vigil_core::schema::{FieldType, LogSchema};
use vigil_core::time::date32_from_micros;

use crate::dead::{ReasonCode, Rejection};
use crate::groups::{Columns, Groups, sized_like};
use crate::rows::{
    Rows, TimeBounds, optional_str, read_timestamp, required_str, required_timestamp,
};
use crate::tape::{as_f64, as_i64, is_null, span, write_members, wrong_type};
use crate::verbatim::Raw;

/// Tape index meaning "field absent".
const ABSENT: usize = usize::MAX;

/// The five optional string columns between `service` and the promoted ones.
const STRING_FIELDS: [&str; 5] = [
    "trace_id",
    "span_id",
    "parent_span_id",
    "user_id",
    "message",
];

/// A validated promoted value, held until the whole record has passed validation.
#[derive(Clone, Copy)]
enum Promoted {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Tape index of a string node.
    Str(usize),
}

enum PromotedBuilder {
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
    Utf8(StringBuilder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl PromotedBuilder {
    fn new(t: FieldType, rows: usize) -> Self {
        match t {
            FieldType::Int32 => Self::Int32(Int32Builder::with_capacity(rows)),
            FieldType::Int64 => Self::Int64(Int64Builder::with_capacity(rows)),
            FieldType::Float64 => Self::Float64(Float64Builder::with_capacity(rows)),
            FieldType::Boolean => Self::Boolean(BooleanBuilder::with_capacity(rows)),
            FieldType::Utf8 => Self::Utf8(StringBuilder::with_capacity(rows, 0)),
            FieldType::Timestamp => Self::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            ),
        }
    }

    fn append(&mut self, v: Promoted, tape: &[Node<'_>]) {
        self.append_value(match v {
            Promoted::Null => Value::Null,
            Promoted::Int(i) => Value::Int(i),
            Promoted::Float(f) => Value::Float(f),
            Promoted::Bool(b) => Value::Bool(b),
            Promoted::Str(idx) => match tape[idx] {
                Node::String(s) => Value::Str(s),
                _ => Value::Null,
            },
        });
    }

    /// Appends a value already checked against the column's type (OTLP attributes).
    fn append_value(&mut self, v: Value<'_>) {
        match (self, v) {
            (Self::Int32(b), Value::Int(i)) => b.append_value(i as i32),
            (Self::Int64(b), Value::Int(i)) => b.append_value(i),
            (Self::Timestamp(b), Value::Int(i)) => b.append_value(i),
            (Self::Float64(b), Value::Float(f)) => b.append_value(f),
            (Self::Boolean(b), Value::Bool(x)) => b.append_value(x),
            (Self::Utf8(b), Value::Str(s)) => b.append_value(s),
            (Self::Int32(b), _) => b.append_null(),
            (Self::Int64(b), _) => b.append_null(),
            (Self::Timestamp(b), _) => b.append_null(),
            (Self::Float64(b), _) => b.append_null(),
            (Self::Boolean(b), _) => b.append_null(),
            (Self::Utf8(b), _) => b.append_null(),
        }
    }

    /// The column so far; the builder is left sized for `rows` more.
    fn finish(&mut self, rows: usize) -> ArrayRef {
        match self {
            Self::Int32(b) => {
                Arc::new(std::mem::replace(b, Int32Builder::with_capacity(rows)).finish())
            }
            Self::Int64(b) => {
                Arc::new(std::mem::replace(b, Int64Builder::with_capacity(rows)).finish())
            }
            Self::Float64(b) => {
                Arc::new(std::mem::replace(b, Float64Builder::with_capacity(rows)).finish())
            }
            Self::Boolean(b) => {
                Arc::new(std::mem::replace(b, BooleanBuilder::with_capacity(rows)).finish())
            }
            Self::Utf8(b) => {
                let next = sized_like(b);
                Arc::new(std::mem::replace(b, next).finish())
            }
            Self::Timestamp(b) => {
                let next = TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC");
                Arc::new(std::mem::replace(b, next).finish())
            }
        }
    }
}

/// A typed value for a promoted column, from a source that is not JSON text (OTLP).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(&'a str),
}

/// One log row from typed values: what OTLP log records become.
pub(crate) struct LogRow<'a> {
    pub(crate) timestamp: i64,
    pub(crate) level: Option<&'a str>,
    pub(crate) service: &'a str,
    /// trace_id, span_id, parent_span_id, user_id, message.
    pub(crate) strings: [Option<&'a str>; 5],
    /// One per promoted column, in column order.
    pub(crate) promoted: &'a [Value<'a>],
    pub(crate) additional_data: Option<&'a str>,
    pub(crate) extra: Option<&'a str>,
}

/// Validates a promoted value against its declared type.
fn promote(t: FieldType, key: &str, node: &Node<'_>, idx: usize) -> Result<Promoted, Rejection> {
    if is_null(node) {
        return Ok(Promoted::Null);
    }
    let field = || format!("additional_data.{key}");
    match t {
        FieldType::Int32 | FieldType::Int64 => {
            let Some(i) = as_i64(node) else {
                return Err(match node {
                    Node::Static(s) if as_f64(node).is_some() => Rejection::new(
                        ReasonCode::InvalidValue,
                        format!("field `{}` must be an integer, found {s}", field()),
                    ),
                    _ => wrong_type(&field(), "an integer", node),
                });
            };
            if t == FieldType::Int32 && i32::try_from(i).is_err() {
                return Err(Rejection::new(
                    ReasonCode::InvalidValue,
                    format!("field `{}` = {i} does not fit in int32", field()),
                ));
            }
            Ok(Promoted::Int(i))
        }
        FieldType::Float64 => as_f64(node)
            .map(Promoted::Float)
            .ok_or_else(|| wrong_type(&field(), "a number", node)),
        FieldType::Boolean => match node {
            Node::Static(simd_json::StaticNode::Bool(b)) => Ok(Promoted::Bool(*b)),
            _ => Err(wrong_type(&field(), "a boolean", node)),
        },
        FieldType::Utf8 => match node {
            Node::String(_) => Ok(Promoted::Str(idx)),
            _ => Err(wrong_type(&field(), "a string", node)),
        },
        FieldType::Timestamp => read_timestamp(&field(), node).map(Promoted::Int),
    }
}

/// Normalises a log level: case-insensitive, `WARN` → `WARNING`, `FATAL`/`CRIT` →
/// `CRITICAL`, `ERR` → `ERROR`. Unknown levels are kept, upper-cased.
pub(crate) fn normalize_level(s: &str) -> Option<&'static str> {
    const KNOWN: [(&str, &str); 10] = [
        ("INFO", "INFO"),
        ("ERROR", "ERROR"),
        ("DEBUG", "DEBUG"),
        ("WARNING", "WARNING"),
        ("WARN", "WARNING"),
        ("CRITICAL", "CRITICAL"),
        ("FATAL", "CRITICAL"),
        ("CRIT", "CRITICAL"),
        ("ERR", "ERROR"),
        ("TRACE", "TRACE"),
    ];
    // Most logs write a name exactly as listed: an exact pass first is far cheaper than
    // comparing every entry without case.
    KNOWN
        .iter()
        .find(|(k, _)| *k == s)
        .or_else(|| KNOWN.iter().find(|(k, _)| k.eq_ignore_ascii_case(s)))
        .map(|(_, v)| *v)
}

/// The builders of one service's rows.
pub(crate) struct LogColumns {
    schema: SchemaRef,
    timestamp: TimestampMicrosecondBuilder,
    level: StringBuilder,
    service: StringBuilder,
    strings: [StringBuilder; 5],
    promoted: Vec<PromotedBuilder>,
    additional_data: StringBuilder,
    extra: StringBuilder,
    date: Date32Builder,
}

impl LogColumns {
    pub(crate) fn new(schema: &LogSchema, rows: usize) -> Self {
        let string = || StringBuilder::with_capacity(rows, 0);
        Self {
            schema: schema.schema().clone(),
            timestamp: TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            level: string(),
            service: string(),
            strings: std::array::from_fn(|_| string()),
            promoted: schema
                .promoted()
                .iter()
                .map(|p| PromotedBuilder::new(p.field_type, rows))
                .collect(),
            additional_data: string(),
            extra: string(),
            date: Date32Builder::with_capacity(rows),
        }
    }
}

impl LogColumns {
    /// Appends a row of typed values; `row.promoted` has one value per promoted column.
    pub(crate) fn append_row(&mut self, row: &LogRow<'_>) {
        self.timestamp.append_value(row.timestamp);
        self.date.append_value(date32_from_micros(row.timestamp));
        self.level.append_option(row.level);
        self.service.append_value(row.service);
        for (b, v) in self.strings.iter_mut().zip(row.strings) {
            b.append_option(v);
        }
        for (b, &v) in self.promoted.iter_mut().zip(row.promoted) {
            b.append_value(v);
        }
        self.additional_data.append_option(row.additional_data);
        self.extra.append_option(row.extra);
    }
}

impl Columns for LogColumns {
    fn len(&self) -> usize {
        self.timestamp.len()
    }

    fn finish(&mut self) -> RecordBatch {
        let rows = self.len();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        let mut string = |b: &mut StringBuilder| {
            let next = sized_like(b);
            columns.push(Arc::new(std::mem::replace(b, next).finish()));
        };
        let mut ts = TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC");
        std::mem::swap(&mut ts, &mut self.timestamp);
        let ts: ArrayRef = Arc::new(ts.finish());
        string(&mut self.level);
        string(&mut self.service);
        for b in &mut self.strings {
            string(b);
        }
        let promoted: Vec<ArrayRef> = self.promoted.iter_mut().map(|b| b.finish(rows)).collect();
        string(&mut self.additional_data);
        string(&mut self.extra);
        columns.insert(0, ts);
        columns.splice(8..8, promoted);
        let mut date = Date32Builder::with_capacity(rows);
        std::mem::swap(&mut date, &mut self.date);
        columns.push(Arc::new(date.finish()));
        RecordBatch::try_new(self.schema.clone(), columns).expect("log columns match the schema")
    }
}

/// Validates log records and routes them to their service's builders.
pub(crate) struct LogRows {
    schema: LogSchema,
    groups: Groups<LogColumns>,
    /// Rows per group at the previous finish: the size new groups start with.
    rows_hint: usize,
    // Per-record scratch, kept to reuse allocations.
    promoted_slots: Vec<usize>,
    promoted_values: Vec<Promoted>,
    /// Key tape indices of the record's members, and of additional_data's.
    top: Vec<usize>,
    ad_keys: Vec<usize>,
    /// Positions in `ad_keys` of members that are not promoted, and in `top` of unknown fields.
    rest: Vec<usize>,
    extras: Vec<usize>,
    json: String,
}

impl LogRows {
    pub(crate) fn new(schema: LogSchema) -> Self {
        Self {
            groups: Groups::new(),
            rows_hint: 1024,
            promoted_slots: vec![ABSENT; schema.promoted().len()],
            promoted_values: Vec::with_capacity(schema.promoted().len()),
            top: Vec::new(),
            ad_keys: Vec::new(),
            rest: Vec::new(),
            extras: Vec::new(),
            json: String::new(),
            schema,
        }
    }
}

impl Rows for LogRows {
    fn append(
        &mut self,
        tape: &[Node<'_>],
        idx: usize,
        raw: Raw<'_>,
        bounds: &TimeBounds,
    ) -> Result<(), Rejection> {
        let Node::Object { len, .. } = tape[idx] else {
            return Err(Rejection::new(
                ReasonCode::NotAnObject,
                format!(
                    "a log record must be a JSON object, found {}",
                    crate::tape::type_name(&tape[idx])
                ),
            ));
        };
        let (mut ts, mut level, mut service, mut ad, mut ad_member) =
            (ABSENT, ABSENT, ABSENT, ABSENT, 0);
        let mut strs = [ABSENT; 5];
        self.top.clear();
        self.extras.clear();
        let mut next = idx + 1;
        for member in 0..len {
            let key_idx = next;
            self.top.push(key_idx);
            let Node::String(key) = tape[key_idx] else {
                unreachable!("object keys are strings on the tape")
            };
            let value = key_idx + 1;
            next = value + span(&tape[value]);
            // By length, then first byte: one comparison per known key.
            let b = key.as_bytes();
            match (b.len(), b.first()) {
                (9, Some(b't')) if key == "timestamp" => ts = value,
                (5, Some(b'l')) if key == "level" => level = value,
                (7, Some(b's')) if key == "service" => service = value,
                (8, Some(b't')) if key == "trace_id" => strs[0] = value,
                (7, Some(b's')) if key == "span_id" => strs[1] = value,
                (14, Some(b'p')) if key == "parent_span_id" => strs[2] = value,
                (7, Some(b'u')) if key == "user_id" => strs[3] = value,
                (7, Some(b'm')) if key == "message" => strs[4] = value,
                (15, Some(b'a')) if key == "additional_data" => (ad, ad_member) = (value, member),
                _ => self.extras.push(member),
            }
        }

        // Validate everything before touching a builder, so a rejected record leaves no trace.
        let micros = required_timestamp(tape, ts, bounds)?;
        let service = required_str(tape, service, "service")?;
        let level = match optional_str(tape, level, "level")? {
            None => Level::Null,
            Some(s) => normalize_level(s).map_or(Level::Other(level), Level::Known),
        };
        for (field, &i) in STRING_FIELDS.iter().zip(&strs) {
            optional_str(tape, i, field)?;
        }

        self.promoted_slots.fill(ABSENT);
        self.ad_keys.clear();
        self.rest.clear();
        if ad != ABSENT {
            match tape[ad] {
                Node::Object { len, .. } => {
                    let mut next = ad + 1;
                    for member in 0..len {
                        let key_idx = next;
                        self.ad_keys.push(key_idx);
                        let Node::String(key) = tape[key_idx] else {
                            unreachable!("object keys are strings on the tape")
                        };
                        next = key_idx + 1 + span(&tape[key_idx + 1]);
                        match self.schema.promoted().iter().position(|p| p.key == key) {
                            Some(p) => self.promoted_slots[p] = key_idx + 1,
                            None => self.rest.push(member),
                        }
                    }
                }
                Node::Static(simd_json::StaticNode::Null) => {}
                ref other => return Err(wrong_type("additional_data", "an object", other)),
            }
        }
        self.promoted_values.clear();
        for (p, &slot) in self.schema.promoted().iter().zip(&self.promoted_slots) {
            let v = match slot {
                ABSENT => Promoted::Null,
                i => promote(p.field_type, &p.key, &tape[i], i)?,
            };
            self.promoted_values.push(v);
        }
        let ad_len = self.write_json(tape, raw, ad_member);

        // Append.
        let (schema, hint) = (&self.schema, self.rows_hint);
        let c = self
            .groups
            .get(service, hint, |rows| LogColumns::new(schema, rows));
        c.timestamp.append_value(micros);
        c.date.append_value(date32_from_micros(micros));
        c.service.append_value(service);
        match level {
            Level::Null => c.level.append_null(),
            Level::Known(l) => c.level.append_value(l),
            Level::Other(i) => {
                if let Node::String(s) = tape[i] {
                    c.level.append_value(s.to_ascii_uppercase());
                }
            }
        }
        for (b, &i) in c.strings.iter_mut().zip(&strs) {
            match i {
                ABSENT => b.append_null(),
                i => match tape[i] {
                    Node::String(s) => b.append_value(s),
                    _ => b.append_null(),
                },
            }
        }
        for (b, &v) in c.promoted.iter_mut().zip(&self.promoted_values) {
            b.append(v, tape);
        }
        let (ad_json, extra_json) = self.json.split_at(ad_len);
        append_json(&mut c.additional_data, ad_json);
        append_json(&mut c.extra, extra_json);
        Ok(())
    }

    fn overflowed(&self) -> u64 {
        self.groups.overflowed()
    }

    fn len(&self) -> usize {
        self.groups.len()
    }

    fn finish(&mut self) -> Vec<RecordBatch> {
        let batches = self.groups.finish();
        if let Some(max) = batches.iter().map(RecordBatch::num_rows).max() {
            self.rows_hint = max;
        }
        batches
    }
}

impl LogRows {
    /// Writes both JSON columns into `self.json`, `additional_data`'s rest first, then
    /// `extra`; returns where the first ends. Verbatim from the input when the bytes line up,
    /// else re-serialized from the tape.
    fn write_json(&mut self, tape: &[Node<'_>], raw: Raw<'_>, ad_member: usize) -> usize {
        self.json.clear();
        if self.rest.is_empty() && self.extras.is_empty() {
            return 0;
        }
        let ad_end = if self.rest.is_empty() {
            Some(0)
        } else {
            raw.value_end_of(tape, &self.top, ad_member, raw.end())
        };
        if let Some(ad_end) = ad_end {
            let mut ok = self.rest.is_empty()
                || raw.write_object(&mut self.json, tape, &self.ad_keys, ad_end, &self.rest);
            let ad_len = self.json.len();
            ok = ok
                && (self.extras.is_empty()
                    || raw.write_object(&mut self.json, tape, &self.top, raw.end(), &self.extras));
            if ok {
                return ad_len;
            }
            self.json.clear();
        }
        if !self.rest.is_empty() {
            let keys: Vec<usize> = self.rest.iter().map(|&m| self.ad_keys[m]).collect();
            write_members(&mut self.json, tape, &keys);
        }
        let ad_len = self.json.len();
        if !self.extras.is_empty() {
            let keys: Vec<usize> = self.extras.iter().map(|&m| self.top[m]).collect();
            write_members(&mut self.json, tape, &keys);
        }
        ad_len
    }
}

enum Level {
    Null,
    Known(&'static str),
    Other(usize),
}

fn append_json(b: &mut StringBuilder, json: &str) {
    if json.is_empty() {
        b.append_null();
    } else {
        b.append_value(json);
    }
}
