//! Log records → columns of the `logs` schema.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::SchemaRef;
use arrow::datatypes::{Date32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use simd_json::Node;
use vigil_core::schema::{FieldType, LogSchema, PromotedField, col};
use vigil_core::time::date32_from_micros;

use crate::aliases::{self, Slot, level_number};
use crate::column::{BoolColumn, PrimColumn, StrColumn};
use crate::dead::{ReasonCode, Rejection};
use crate::groups::{Columns, Groups};
use crate::rows::{
    ABSENT, Rows, TimeBounds, number_text, optional_str, read_timestamp, required_service,
    required_timestamp, unreadable,
};
use crate::tape::{as_f64, as_i64, is_null, key_eq, write_members, wrong_type};
use crate::verbatim::{Member, Raw};

/// The five optional string columns between `service` and the promoted ones.
const STRING_FIELDS: [&str; 5] = [
    "trace_id",
    "span_id",
    "parent_span_id",
    "user_id",
    "message",
];

enum PromotedBuilder {
    Int32(PrimColumn<Int32Type>),
    Int64(PrimColumn<Int64Type>),
    Float64(PrimColumn<Float64Type>),
    Boolean(BoolColumn),
    Utf8(StrColumn),
    Timestamp(PrimColumn<TimestampMicrosecondType>),
}

impl PromotedBuilder {
    fn new(t: FieldType, rows: usize) -> Self {
        match t {
            FieldType::Int32 => Self::Int32(PrimColumn::with_capacity(rows)),
            FieldType::Int64 => Self::Int64(PrimColumn::with_capacity(rows)),
            FieldType::Float64 => Self::Float64(PrimColumn::with_capacity(rows)),
            FieldType::Boolean => Self::Boolean(BoolColumn::with_capacity(rows)),
            FieldType::Utf8 => Self::Utf8(StrColumn::with_capacity(rows, 0)),
            FieldType::Timestamp => Self::Timestamp(PrimColumn::with_capacity(rows)),
        }
    }

    /// Appends a value already checked against the column's type ([`promote`], OTLP
    /// attributes).
    #[inline(always)]
    fn append_value(&mut self, v: Value<'_>) {
        match (self, v) {
            (Self::Int32(b), Value::Int(i)) => b.push(i as i32),
            (Self::Int64(b), Value::Int(i)) => b.push(i),
            (Self::Timestamp(b), Value::Int(i)) => b.push(i),
            (Self::Float64(b), Value::Float(f)) => b.push(f),
            (Self::Boolean(b), Value::Bool(x)) => b.push(x),
            (Self::Utf8(b), Value::Str(s)) => b.push(s),
            (b, _) => b.append_null(),
        }
    }

    fn append_null(&mut self) {
        match self {
            Self::Int32(b) => b.push_null(),
            Self::Int64(b) => b.push_null(),
            Self::Timestamp(b) => b.push_null(),
            Self::Float64(b) => b.push_null(),
            Self::Boolean(b) => b.push_null(),
            Self::Utf8(b) => b.push_null(),
        }
    }

    fn truncate(&mut self, rows: usize) {
        match self {
            Self::Int32(b) => b.truncate(rows),
            Self::Int64(b) => b.truncate(rows),
            Self::Timestamp(b) => b.truncate(rows),
            Self::Float64(b) => b.truncate(rows),
            Self::Boolean(b) => b.truncate(rows),
            Self::Utf8(b) => b.truncate(rows),
        }
    }

    /// The column so far; the builder is left sized for a batch like this one.
    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Int32(b) => Arc::new(b.finish()),
            Self::Int64(b) => Arc::new(b.finish()),
            Self::Float64(b) => Arc::new(b.finish()),
            Self::Boolean(b) => Arc::new(b.finish()),
            Self::Utf8(b) => b.finish(),
            Self::Timestamp(b) => Arc::new(b.finish().with_timezone("UTC")),
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

/// Validates a promoted value against its declared type. With `coerce` (`decode.coerce`), a
/// string of a number or boolean is read as one for a column of that type: `"503"` for an
/// int32.
#[inline]
fn promote<'t>(p: &PromotedField, node: &Node<'t>, coerce: bool) -> Result<Value<'t>, Rejection> {
    if is_null(node) {
        return Ok(Value::Null);
    }
    let field = || p.path();
    let t = p.field_type;
    if coerce
        && let Node::String(s) = node
        && t != FieldType::Utf8
        && t != FieldType::Timestamp
    {
        return coerced(p, s);
    }
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
            fits_int(p, i)
        }
        FieldType::Float64 => as_f64(node)
            .map(Value::Float)
            .ok_or_else(|| wrong_type(&field(), "a number", node)),
        FieldType::Boolean => match node {
            Node::Static(simd_json::StaticNode::Bool(b)) => Ok(Value::Bool(*b)),
            _ => Err(wrong_type(&field(), "a boolean", node)),
        },
        FieldType::Utf8 => match node {
            Node::String(s) => Ok(Value::Str(s)),
            _ => Err(wrong_type(&field(), "a string", node)),
        },
        FieldType::Timestamp => read_timestamp(&field(), node).map(Value::Int),
    }
}

/// An integer for an int32 or int64 column, if it fits.
fn fits_int<'t>(p: &PromotedField, i: i64) -> Result<Value<'t>, Rejection> {
    if p.field_type == FieldType::Int32 && i32::try_from(i).is_err() {
        return Err(Rejection::new(
            ReasonCode::InvalidValue,
            format!("field `{}` = {i} does not fit in int32", p.path()),
        ));
    }
    Ok(Value::Int(i))
}

/// A number or boolean column's value from a string (`decode.coerce`), read as JSON would
/// read the same text unquoted.
#[cold]
fn coerced<'t>(p: &PromotedField, s: &str) -> Result<Value<'t>, Rejection> {
    let value = match p.field_type {
        FieldType::Int32 | FieldType::Int64 => s.parse::<i64>().ok().map(|i| fits_int(p, i)),
        FieldType::Float64 => number_text(s).map(|f| Ok(Value::Float(f))),
        FieldType::Boolean => match s {
            "true" => Some(Ok(Value::Bool(true))),
            "false" => Some(Ok(Value::Bool(false))),
            _ => None,
        },
        FieldType::Utf8 | FieldType::Timestamp => unreachable!("strings are read as they are"),
    };
    value.unwrap_or_else(|| Err(unreadable(&p.path(), s, p.field_type.name())))
}

/// Normalises a log level: case-insensitive, `WARN` → `WARNING`; `FATAL`, `CRIT` and
/// syslog's and zap's graver names (`EMERGENCY`, `ALERT`, `PANIC`) → `CRITICAL`; `ERR` and
/// java.util.logging's `SEVERE` → `ERROR`. Unknown levels are kept, upper-cased.
#[inline]
pub(crate) fn normalize_level(s: &str) -> Option<&'static str> {
    const KNOWN: [(&str, &str); 17] = [
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
        ("EMERGENCY", "CRITICAL"),
        ("EMERG", "CRITICAL"),
        ("ALERT", "CRITICAL"),
        ("PANIC", "CRITICAL"),
        ("DPANIC", "CRITICAL"),
        ("SEVERE", "ERROR"),
        ("NOTICE", "NOTICE"),
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
    timestamp: PrimColumn<TimestampMicrosecondType>,
    level: StrColumn,
    service: StrColumn,
    strings: [StrColumn; 5],
    promoted: Vec<PromotedBuilder>,
    additional_data: StrColumn,
    extra: StrColumn,
    date: PrimColumn<Date32Type>,
}

impl LogColumns {
    pub(crate) fn new(schema: &LogSchema, rows: usize) -> Self {
        let string = || StrColumn::with_capacity(rows, 0);
        Self {
            schema: schema.schema().clone(),
            timestamp: PrimColumn::with_capacity(rows),
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
            date: PrimColumn::with_capacity(rows),
        }
    }

    /// Appends the two time columns of a row.
    #[inline]
    fn push_time(&mut self, micros: i64) {
        self.timestamp.push(micros);
        self.date.push(date32_from_micros(micros));
    }

    /// Drops the rows after the first `rows`: a record rejected halfway leaves no trace.
    fn truncate(&mut self, rows: usize) {
        self.timestamp.truncate(rows);
        self.date.truncate(rows);
        self.level.truncate(rows);
        self.service.truncate(rows);
        for b in &mut self.strings {
            b.truncate(rows);
        }
        for b in &mut self.promoted {
            b.truncate(rows);
        }
        self.additional_data.truncate(rows);
        self.extra.truncate(rows);
    }

    /// Appends a row of typed values; `row.promoted` has one value per promoted column.
    pub(crate) fn append_row(&mut self, row: &LogRow<'_>) {
        self.push_time(row.timestamp);
        self.level.push_option(row.level);
        self.service.push(row.service);
        for (b, v) in self.strings.iter_mut().zip(row.strings) {
            b.push_option(v);
        }
        for (b, &v) in self.promoted.iter_mut().zip(row.promoted) {
            b.append_value(v);
        }
        self.additional_data.push_option(row.additional_data);
        self.extra.push_option(row.extra);
    }
}

impl Columns for LogColumns {
    fn len(&self) -> usize {
        self.timestamp.len()
    }

    fn finish(&mut self) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        columns.push(Arc::new(self.timestamp.finish().with_timezone("UTC")));
        columns.push(self.level.finish());
        columns.push(self.service.finish());
        columns.extend(self.strings.iter_mut().map(StrColumn::finish));
        columns.extend(self.promoted.iter_mut().map(PromotedBuilder::finish));
        columns.push(self.additional_data.finish());
        columns.push(self.extra.finish());
        columns.push(Arc::new(self.date.finish()));
        RecordBatch::try_new(self.schema.clone(), columns).expect("log columns match the schema")
    }
}

/// Which of the columns a record may leave out are written; the rest are all null.
struct Keep {
    level: bool,
    /// trace_id, span_id, parent_span_id, user_id, message.
    strings: [bool; 5],
    /// One per promoted column.
    promoted: Vec<bool>,
    additional_data: bool,
    extra: bool,
}

impl Keep {
    fn all(schema: &LogSchema) -> Self {
        Self {
            level: true,
            strings: [true; 5],
            promoted: vec![true; schema.promoted().len()],
            additional_data: true,
            extra: true,
        }
    }

    fn only(schema: &LogSchema, columns: &[&str]) -> Self {
        let kept = |name: &str| columns.contains(&name);
        Self {
            level: kept(col::LEVEL),
            strings: STRING_FIELDS.map(kept),
            promoted: schema.promoted().iter().map(|p| kept(&p.column)).collect(),
            additional_data: kept(col::ADDITIONAL_DATA),
            extra: kept(col::EXTRA),
        }
    }
}

/// Validates log records and routes them to their service's builders.
pub(crate) struct LogRows {
    schema: LogSchema,
    keep: Keep,
    groups: Groups<LogColumns>,
    /// Rows per group at the previous finish: the size new groups start with.
    rows_hint: usize,
    scratch: Scratch,
    /// `decode.default_service`.
    default_service: Option<String>,
}

/// Per-record positions on the tape, kept to reuse their allocations.
struct Scratch {
    /// Members of the record that are not known fields, and of `additional_data` that are
    /// not promoted: the two JSON columns.
    extras: Vec<Member>,
    rest: Vec<Member>,
    /// Per promoted column, the tape index of its value in this record.
    promoted_slots: Vec<usize>,
    /// Whether some promoted fields are members of the record itself.
    top_level: bool,
    /// `decode.coerce`.
    coerce: bool,
    /// The names this record's time and level were found under ([`NAMES`] unless aliases),
    /// for its reasons; `renamed` when they are not [`NAMES`].
    names: [&'static str; 2],
    renamed: bool,
}

/// The seed's names of the time and the level.
const NAMES: [&str; 2] = ["timestamp", "level"];

/// Where a record's known top-level fields are on the tape ([`ABSENT`] if not there).
struct Fields {
    ts: usize,
    level: usize,
    service: usize,
    /// trace_id, span_id, parent_span_id, user_id, message.
    strs: [usize; 5],
    /// The `additional_data` member (its value is at `key + 1`).
    ad: Option<Member>,
}

impl LogRows {
    pub(crate) fn new(schema: LogSchema, opts: &crate::DecoderOptions) -> Self {
        Self {
            default_service: opts.default_service.clone(),
            keep: Keep::all(&schema),
            groups: Groups::new(),
            rows_hint: 1024,
            scratch: Scratch {
                extras: Vec::new(),
                rest: Vec::new(),
                promoted_slots: vec![ABSENT; schema.promoted().len()],
                top_level: schema.promoted().iter().any(|p| p.top_level),
                coerce: opts.coerce,
                names: NAMES,
                renamed: false,
            },
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
        let f = self.scratch.fields(tape, idx, len, &self.schema);
        let micros = required_timestamp(tape, f.ts, self.scratch.names[0], bounds)?;
        let service = required_service(tape, f.service, self.default_service.as_deref())?;
        let (schema, hint) = (&self.schema, self.rows_hint);
        let c = self
            .groups
            .get(service, hint, |rows| LogColumns::new(schema, rows));
        // Columns are written as fields are validated; a rejection halfway truncates them
        // back, so a rejected record leaves no trace (bad records are rare: undoing is cheaper
        // than validating every field before writing any).
        let rows = c.len();
        c.push_time(micros);
        c.service.push(service);
        let written = self.scratch.write(c, schema, &self.keep, tape, raw, &f);
        if written.is_err() {
            c.truncate(rows);
        }
        written
    }

    fn overflowed(&self) -> u64 {
        self.groups.overflowed()
    }

    fn len(&self) -> usize {
        self.groups.len()
    }

    fn keep_only(&mut self, columns: &[&str]) {
        self.keep = Keep::only(&self.schema, columns);
    }

    fn finish(&mut self) -> Vec<RecordBatch> {
        let batches = self.groups.finish();
        if let Some(max) = batches.iter().map(RecordBatch::num_rows).max() {
            self.rows_hint = max;
        }
        batches
    }
}

impl Scratch {
    /// Finds the known fields of the object at `tape[idx]` (`len` members) and the promoted
    /// ones at its top level; the others go to `extras`.
    fn fields(&mut self, tape: &[Node<'_>], idx: usize, len: usize, schema: &LogSchema) -> Fields {
        let mut f = Fields {
            ts: ABSENT,
            level: ABSENT,
            service: ABSENT,
            strs: [ABSENT; 5],
            ad: None,
        };
        self.extras.clear();
        self.promoted_slots.fill(ABSENT);
        if self.renamed {
            self.names = NAMES;
            self.renamed = false;
        }
        // A `service` object (ECS's `{"name": …}`) is a place to look for the name.
        let mut service_object = ABSENT;
        for (m, key) in Member::of_object(tape, idx, len) {
            let value = m.key + 1;
            // By length, then first byte: one comparison per known key.
            let b = key.as_bytes();
            match (b.len(), b.first()) {
                (9, Some(b't')) if key == "timestamp" => f.ts = value,
                (5, Some(b'l')) if key == "level" => f.level = value,
                (7, Some(b's')) if key == "service" => {
                    if let Node::Object { .. } = tape[value] {
                        service_object = value;
                        self.extras.push(m);
                    } else {
                        f.service = value;
                    }
                }
                (8, Some(b't')) if key == "trace_id" => f.strs[0] = value,
                (7, Some(b's')) if key == "span_id" => f.strs[1] = value,
                (14, Some(b'p')) if key == "parent_span_id" => f.strs[2] = value,
                (7, Some(b'u')) if key == "user_id" => f.strs[3] = value,
                (7, Some(b'm')) if key == "message" => f.strs[4] = value,
                (15, Some(b'a')) if key == "additional_data" => f.ad = Some(m),
                _ => self.extras.push(m),
            }
        }
        if self.top_level && !self.extras.is_empty() {
            self.take_promoted(tape, schema);
        }
        if !self.extras.is_empty() {
            self.aliases(tape, &mut f);
            if f.service == ABSENT {
                // Not found inside it either: said to be of the wrong type.
                f.service = service_object;
            }
        }
        f
    }

    /// Takes the promoted fields of the record's top level out of `extras`; of a key written
    /// twice the last counts, as within `additional_data`.
    fn take_promoted(&mut self, tape: &[Node<'_>], schema: &LogSchema) {
        let promoted = schema.promoted();
        let slots = &mut self.promoted_slots;
        self.extras.retain(|m| {
            let Node::String(key) = tape[m.key] else {
                return true;
            };
            let p = (promoted.iter())
                .position(|p| p.top_level && key_eq(p.key.as_bytes(), key.as_bytes()));
            if let Some(p) = p {
                slots[p] = m.key + 1;
            }
            p.is_none()
        });
    }

    /// Fills the known fields the record lacks from their [`aliases`] among `extras`.
    #[cold]
    fn aliases(&mut self, tape: &[Node<'_>], f: &mut Fields) {
        let [trace, span, parent, user, message] = &mut f.strs;
        let mut slots = [
            (Slot::Timestamp, &mut f.ts),
            (Slot::Level, &mut f.level),
            (Slot::Service, &mut f.service),
            (Slot::Str(0), trace),
            (Slot::Str(1), span),
            (Slot::Str(2), parent),
            (Slot::Str(3), user),
            (Slot::Str(4), message),
        ];
        let names = &mut self.names;
        let renamed = &mut self.renamed;
        aliases::fill(tape, &mut self.extras, &mut slots, |slot, name| {
            match slot {
                Slot::Timestamp => names[0] = name,
                Slot::Level => names[1] = name,
                _ => {}
            }
            *renamed = true;
        });
    }

    /// Validates and writes the fields after `timestamp` and `service`, in the order their
    /// errors are reported: level, the optional strings, `additional_data` and its promoted
    /// members, then the JSON columns. On `Err` some columns may have been written: the
    /// caller truncates them.
    fn write(
        &mut self,
        c: &mut LogColumns,
        schema: &LogSchema,
        keep: &Keep,
        tape: &[Node<'_>],
        raw: Raw<'_>,
        f: &Fields,
    ) -> Result<(), Rejection> {
        match tape.get(f.level) {
            Some(Node::String(s)) if keep.level => match normalize_level(s) {
                Some(known) => c.level.push(known),
                None => c.level.push(&s.to_ascii_uppercase()),
            },
            None | Some(Node::String(_)) => c.level.push_null(),
            Some(n) if is_null(n) => c.level.push_null(),
            Some(n) => match as_i64(n) {
                Some(i) if keep.level => match level_number(i) {
                    Some(known) => c.level.push(known),
                    None => c.level.push(&i.to_string()),
                },
                Some(_) => c.level.push_null(),
                None => return Err(wrong_type(self.names[1], "a string or a level number", n)),
            },
        }
        for (((field, &i), b), &kept) in (STRING_FIELDS.iter().zip(&f.strs))
            .zip(&mut c.strings)
            .zip(&keep.strings)
        {
            let value = optional_str(tape, i, field)?;
            b.push_option(value.filter(|_| kept));
        }

        self.rest.clear();
        if let Some(ad) = f.ad {
            match tape[ad.key + 1] {
                Node::Object { len, .. } => {
                    for (m, key) in Member::of_object(tape, ad.key + 1, len) {
                        match (schema.promoted().iter())
                            .position(|p| !p.top_level && key_eq(p.key.as_bytes(), key.as_bytes()))
                        {
                            Some(p) => self.promoted_slots[p] = m.key + 1,
                            None => self.rest.push(m),
                        }
                    }
                }
                Node::Static(simd_json::StaticNode::Null) => {}
                ref other => return Err(wrong_type("additional_data", "an object", other)),
            }
        }
        for (((p, &slot), b), &kept) in (schema.promoted().iter().zip(&self.promoted_slots))
            .zip(&mut c.promoted)
            .zip(&keep.promoted)
        {
            match slot {
                ABSENT => b.append_null(),
                i => {
                    let value = promote(p, &tape[i], self.coerce)?;
                    b.append_value(if kept { value } else { Value::Null });
                }
            }
        }

        c.additional_data.push_written(|out| {
            // Members are left over only from an `additional_data` object.
            let Some(ad) =
                f.ad.filter(|_| keep.additional_data && !self.rest.is_empty())
            else {
                return;
            };
            let verbatim = raw
                .value_end_of(tape, ad, raw.end())
                .is_some_and(|ad_end| raw.write_object(out, tape, &self.rest, ad_end));
            if !verbatim {
                write_members(out, tape, self.rest.iter().map(|m| m.key));
            }
        });
        c.extra.push_written(|out| {
            if keep.extra
                && !self.extras.is_empty()
                && !raw.write_object(out, tape, &self.extras, raw.end())
            {
                write_members(out, tape, self.extras.iter().map(|m| m.key));
            }
        });
        Ok(())
    }
}
