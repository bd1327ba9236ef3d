//! Log records → columns of the `logs` schema.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder,
    Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use simd_json::Node;
use vigil_core::schema::{FieldType, LogSchema};
use vigil_core::time::date32_from_micros;

use crate::dead::{ReasonCode, Rejection};
use crate::rows::{Rows, optional_str, read_timestamp, required_str, required_timestamp};
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
    fn new(t: FieldType) -> Self {
        match t {
            FieldType::Int32 => Self::Int32(Int32Builder::new()),
            FieldType::Int64 => Self::Int64(Int64Builder::new()),
            FieldType::Float64 => Self::Float64(Float64Builder::new()),
            FieldType::Boolean => Self::Boolean(BooleanBuilder::new()),
            FieldType::Utf8 => Self::Utf8(StringBuilder::new()),
            FieldType::Timestamp => {
                Self::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            }
        }
    }

    fn append(&mut self, v: Promoted, tape: &[Node<'_>]) {
        match (self, v) {
            (Self::Int32(b), Promoted::Int(i)) => b.append_value(i as i32),
            (Self::Int64(b), Promoted::Int(i)) => b.append_value(i),
            (Self::Timestamp(b), Promoted::Int(i)) => b.append_value(i),
            (Self::Float64(b), Promoted::Float(f)) => b.append_value(f),
            (Self::Boolean(b), Promoted::Bool(x)) => b.append_value(x),
            (Self::Utf8(b), Promoted::Str(idx)) => match tape[idx] {
                Node::String(s) => b.append_value(s),
                _ => b.append_null(),
            },
            (Self::Int32(b), _) => b.append_null(),
            (Self::Int64(b), _) => b.append_null(),
            (Self::Timestamp(b), _) => b.append_null(),
            (Self::Float64(b), _) => b.append_null(),
            (Self::Boolean(b), _) => b.append_null(),
            (Self::Utf8(b), _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Int32(b) => Arc::new(b.finish()),
            Self::Int64(b) => Arc::new(b.finish()),
            Self::Float64(b) => Arc::new(b.finish()),
            Self::Boolean(b) => Arc::new(b.finish()),
            Self::Utf8(b) => Arc::new(b.finish()),
            Self::Timestamp(b) => Arc::new(b.finish()),
        }
    }
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
fn normalize_level(s: &str) -> Option<&'static str> {
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
    KNOWN
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(s))
        .map(|(_, v)| *v)
}

/// Column builders for the `logs` schema.
pub(crate) struct LogRows {
    schema: LogSchema,
    timestamp: TimestampMicrosecondBuilder,
    level: StringBuilder,
    service: StringBuilder,
    strings: [StringBuilder; 5],
    promoted: Vec<PromotedBuilder>,
    additional_data: StringBuilder,
    extra: StringBuilder,
    date: Date32Builder,
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
        let promoted = schema
            .promoted()
            .iter()
            .map(|p| PromotedBuilder::new(p.field_type))
            .collect();
        Self {
            timestamp: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            level: StringBuilder::new(),
            service: StringBuilder::new(),
            strings: std::array::from_fn(|_| StringBuilder::new()),
            promoted,
            additional_data: StringBuilder::new(),
            extra: StringBuilder::new(),
            date: Date32Builder::new(),
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
    fn append(&mut self, tape: &[Node<'_>], idx: usize, raw: Raw<'_>) -> Result<(), Rejection> {
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
            match key {
                "timestamp" => ts = value,
                "level" => level = value,
                "service" => service = value,
                "trace_id" => strs[0] = value,
                "span_id" => strs[1] = value,
                "parent_span_id" => strs[2] = value,
                "user_id" => strs[3] = value,
                "message" => strs[4] = value,
                "additional_data" => (ad, ad_member) = (value, member),
                _ => self.extras.push(member),
            }
        }

        // Validate everything before touching a builder, so a rejected record leaves no trace.
        let micros = required_timestamp(tape, ts)?;
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
        self.timestamp.append_value(micros);
        self.date.append_value(date32_from_micros(micros));
        self.service.append_value(service);
        match level {
            Level::Null => self.level.append_null(),
            Level::Known(l) => self.level.append_value(l),
            Level::Other(i) => {
                if let Node::String(s) = tape[i] {
                    self.level.append_value(s.to_ascii_uppercase());
                }
            }
        }
        for (b, &i) in self.strings.iter_mut().zip(&strs) {
            match i {
                ABSENT => b.append_null(),
                i => match tape[i] {
                    Node::String(s) => b.append_value(s),
                    _ => b.append_null(),
                },
            }
        }
        for (b, &v) in self.promoted.iter_mut().zip(&self.promoted_values) {
            b.append(v, tape);
        }
        let (ad_json, extra_json) = self.json.split_at(ad_len);
        append_json(&mut self.additional_data, ad_json);
        append_json(&mut self.extra, extra_json);
        Ok(())
    }

    fn len(&self) -> usize {
        self.timestamp.len()
    }

    fn finish(&mut self) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.timestamp.finish()),
            Arc::new(self.level.finish()),
            Arc::new(self.service.finish()),
        ];
        columns.extend(
            self.strings
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        columns.extend(self.promoted.iter_mut().map(PromotedBuilder::finish));
        columns.push(Arc::new(self.additional_data.finish()));
        columns.push(Arc::new(self.extra.finish()));
        columns.push(Arc::new(self.date.finish()));
        RecordBatch::try_new(self.schema.schema().clone(), columns)
            .expect("log columns match the schema")
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
