//! Log records → columns of the `logs` schema.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::datatypes::{Date32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use simd_json::Node;
use vigil_core::schema::{FieldType, LogSchema, PromotedField, col};
use vigil_core::time::date32_from_micros;

use crate::aliases::{self, Slot, level_number};
use crate::column::{Block, BoolColumn, Packed, PrimColumn, StrColumn};
use crate::dead::{ReasonCode, Rejection};
use crate::groups::{Columns, Groups};
use crate::rows::{
    ABSENT, Rows, TimeBounds, number_text, optional_str, read_timestamp, required_service,
    required_timestamp, unreadable,
};
use crate::scan::{self, Decline, KNOWN, LogMembers, Member::AdditionalData, Member::Known, Rest};
use crate::tape::{as_f64, as_i64, is_null, key_eq, write_members, wrong_type};
use crate::verbatim::{Member, Raw, write_runs};

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

    fn packed_size(&self) -> usize {
        match self {
            Self::Int32(b) => b.packed_size(),
            Self::Int64(b) => b.packed_size(),
            Self::Float64(b) => b.packed_size(),
            Self::Boolean(b) => b.packed_size(),
            Self::Utf8(b) => b.packed_size(),
            Self::Timestamp(b) => b.packed_size(),
        }
    }

    /// The column so far copied into `block`, the builder's buffers kept.
    fn pack(&mut self, block: &mut Block) -> Packed {
        match self {
            Self::Int32(b) => b.pack(block),
            Self::Int64(b) => b.pack(block),
            Self::Float64(b) => b.pack(block),
            Self::Boolean(b) => b.pack(block),
            Self::Utf8(b) => b.pack(block),
            Self::Timestamp(b) => b.pack(block),
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
    /// The columns written; the others get nothing per row and come out all null.
    keep: Keep,
}

impl LogColumns {
    /// Builders writing every column.
    pub(crate) fn new(schema: &LogSchema, rows: usize) -> Self {
        Self::keeping(schema, rows, Keep::all(schema))
    }

    /// Builders writing the columns `keep` names.
    fn keeping(schema: &LogSchema, rows: usize, keep: Keep) -> Self {
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
            keep,
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

    /// Validates and writes `level` and the optional strings, found on `tape` at `level`
    /// (under the name `level_name`) and `strs` ([`ABSENT`] where not in the record).
    fn write_level_and_strings(
        &mut self,
        tape: &[Node<'_>],
        level: usize,
        level_name: &str,
        strs: &[usize; 5],
    ) -> Result<(), Rejection> {
        // A column left out is written nothing, its values validated all the same.
        let keep = &self.keep;
        let kept = keep.level;
        match tape.get(level) {
            Some(Node::String(s)) if kept => match normalize_level(s) {
                Some(known) => self.level.push(known),
                None => self.level.push(&s.to_ascii_uppercase()),
            },
            None | Some(Node::String(_)) => self.level.push_null_if(kept),
            Some(n) if is_null(n) => self.level.push_null_if(kept),
            Some(n) => match as_i64(n) {
                Some(i) if kept => match level_number(i) {
                    Some(known) => self.level.push(known),
                    None => self.level.push(&i.to_string()),
                },
                Some(_) => {}
                None => return Err(wrong_type(level_name, "a string or a level number", n)),
            },
        }
        for (((field, &i), b), &kept) in (STRING_FIELDS.iter().zip(strs))
            .zip(&mut self.strings)
            .zip(&keep.strings)
        {
            let value = optional_str(tape, i, field)?;
            if kept {
                b.push_option(value);
            }
        }
        Ok(())
    }

    /// Validates and writes the promoted columns, `value(p)` the record's value for the
    /// `p`-th (`None` if it has none).
    #[inline]
    fn write_promoted<'t>(
        &mut self,
        schema: &LogSchema,
        coerce: bool,
        value: impl Fn(usize) -> Option<Node<'t>>,
    ) -> Result<(), Rejection> {
        for (((i, p), b), &kept) in (schema.promoted().iter().enumerate())
            .zip(&mut self.promoted)
            .zip(&self.keep.promoted)
        {
            match value(i) {
                None if kept => b.append_null(),
                None => {}
                Some(node) => {
                    let v = promote(p, &node, coerce)?;
                    if kept {
                        b.append_value(v);
                    }
                }
            }
        }
        Ok(())
    }
}

impl Columns for LogColumns {
    fn len(&self) -> usize {
        self.timestamp.len()
    }

    fn finish(&mut self) -> RecordBatch {
        if self.keep.packed {
            return self.finish_packed();
        }
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

impl LogColumns {
    /// The batch as one block (see [`Block`]), the builders' buffers kept; the columns left
    /// out all null.
    fn finish_packed(&mut self) -> RecordBatch {
        let rows = self.len();
        let strings = (self.strings.iter()).chain([
            &self.level,
            &self.service,
            &self.additional_data,
            &self.extra,
        ]);
        let size = self.timestamp.packed_size()
            + self.date.packed_size()
            + strings.map(StrColumn::packed_size).sum::<usize>()
            + self
                .promoted
                .iter()
                .map(PromotedBuilder::packed_size)
                .sum::<usize>()
            + Block::all_null_size(rows);
        let mut block = Block::new(rows, size);
        let keep = &self.keep;
        let string = |c: &mut StrColumn, kept: bool, block: &mut Block| {
            if kept {
                c.pack(block)
            } else {
                block.all_null(&DataType::Utf8)
            }
        };
        // In the schema's order, which gives each column its type.
        let fields = self.schema.fields();
        let mut columns: Vec<Packed> = Vec::with_capacity(fields.len());
        columns.push(self.timestamp.pack(&mut block));
        columns.push(string(&mut self.level, keep.level, &mut block));
        columns.push(self.service.pack(&mut block));
        for (c, &kept) in self.strings.iter_mut().zip(&keep.strings) {
            columns.push(string(c, kept, &mut block));
        }
        for (c, &kept) in self.promoted.iter_mut().zip(&keep.promoted) {
            columns.push(if kept {
                c.pack(&mut block)
            } else {
                block.all_null(fields[columns.len()].data_type())
            });
        }
        columns.push(string(
            &mut self.additional_data,
            keep.additional_data,
            &mut block,
        ));
        columns.push(string(&mut self.extra, keep.extra, &mut block));
        columns.push(self.date.pack(&mut block));
        let block = block.finish();
        let columns = (columns.iter().zip(fields))
            .map(|(c, f)| c.array(f.data_type(), &block))
            .collect();
        RecordBatch::try_new(self.schema.clone(), columns).expect("log columns match the schema")
    }
}

/// Which of the columns a record may leave out are written; the rest are all null.
#[derive(Clone)]
struct Keep {
    level: bool,
    /// trace_id, span_id, parent_span_id, user_id, message.
    strings: [bool; 5],
    /// One per promoted column.
    promoted: Vec<bool>,
    additional_data: bool,
    extra: bool,
    /// A batch is taken as one block, the builders' buffers kept (see `column::Block`): for
    /// a reader of some columns (a backtest's small batches), whose batches are not archived.
    packed: bool,
}

impl Keep {
    fn all(schema: &LogSchema) -> Self {
        Self {
            level: true,
            strings: [true; 5],
            promoted: vec![true; schema.promoted().len()],
            additional_data: true,
            extra: true,
            packed: false,
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
            packed: true,
        }
    }
}

/// Validates log records and routes them to their service's builders.
pub(crate) struct LogRows {
    rows: ServiceRows,
    scratch: Scratch,
    /// What a record of the common shape holds, read without a tape ([`Rows::direct`]).
    members: LogMembers,
    direct: Rest,
}

/// The rows of each service, and what a record needs to find its own.
struct ServiceRows {
    schema: LogSchema,
    groups: Groups<LogColumns>,
    /// Rows per group at the previous finish: the size new groups start with.
    hint: usize,
    /// `decode.default_service`.
    default_service: Option<String>,
    /// The columns its groups write (`keep_only`): each group keeps its own copy.
    keep: Keep,
}

impl ServiceRows {
    /// Appends a record's row: its time (on `tape` at `ts`, found under the name `ts_name`)
    /// and its service (at `service`), then what `write` writes to the rest of its service's
    /// columns. Columns are written as fields are validated; a rejection halfway truncates
    /// them back, so a rejected record leaves no trace (bad records are rare: undoing is
    /// cheaper than validating every field before writing any).
    #[inline(always)]
    fn append(
        &mut self,
        tape: &[Node<'_>],
        (ts, ts_name): (usize, &str),
        service: usize,
        bounds: &TimeBounds,
        write: impl FnOnce(&mut LogColumns, &LogSchema) -> Result<(), Rejection>,
    ) -> Result<(), Rejection> {
        let micros = required_timestamp(tape, ts, ts_name, bounds)?;
        let service = required_service(tape, service, self.default_service.as_deref())?;
        let (schema, hint, keep) = (&self.schema, self.hint, &self.keep);
        let c = self.groups.get(service, hint, |rows| {
            LogColumns::keeping(schema, rows, keep.clone())
        });
        let rows = c.len();
        c.push_time(micros);
        c.service.push(service);
        let written = write(c, schema);
        if written.is_err() {
            c.truncate(rows);
        }
        written
    }
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

/// Indices of the known scalar fields, as [`known_member`] gives them: the time, the level,
/// the service, then the five of [`STRING_FIELDS`] from `STRS` on.
const TS: usize = 0;
const LEVEL: usize = 1;
const SERVICE: usize = 2;
const STRS: usize = 3;

/// Which of the seed's fields a top-level key is, if any.
#[inline(always)]
fn known_member(b: &[u8]) -> Option<scan::Member> {
    // By length, then first byte: one comparison per known key.
    Some(match (b.len(), b.first()) {
        (9, Some(b't')) if b == b"timestamp" => Known(TS),
        (5, Some(b'l')) if b == b"level" => Known(LEVEL),
        (7, Some(b's')) if b == b"service" => Known(SERVICE),
        (8, Some(b't')) if b == b"trace_id" => Known(STRS),
        (7, Some(b's')) if b == b"span_id" => Known(STRS + 1),
        (14, Some(b'p')) if b == b"parent_span_id" => Known(STRS + 2),
        (7, Some(b'u')) if b == b"user_id" => Known(STRS + 3),
        (7, Some(b'm')) if b == b"message" => Known(STRS + 4),
        (15, Some(b'a')) if b == b"additional_data" => AdditionalData,
        _ => return None,
    })
}

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
        let keep = Keep::all(&schema);
        Self {
            members: LogMembers::new(schema.promoted().len()),
            direct: Rest::default(),
            scratch: Scratch {
                extras: Vec::new(),
                rest: Vec::new(),
                promoted_slots: vec![ABSENT; schema.promoted().len()],
                top_level: schema.promoted().iter().any(|p| p.top_level),
                coerce: opts.coerce,
                names: NAMES,
                renamed: false,
            },
            rows: ServiceRows {
                schema,
                groups: Groups::new(),
                hint: 1024,
                default_service: opts.default_service.clone(),
                keep,
            },
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
        let f = self.scratch.fields(tape, idx, len, &self.rows.schema);
        let scratch = &mut self.scratch;
        let ts = (f.ts, scratch.names[0]);
        self.rows.append(tape, ts, f.service, bounds, |c, schema| {
            scratch.write(c, schema, tape, raw, &f)
        })
    }

    fn direct(
        &mut self,
        bytes: &[u8],
        max_depth: usize,
        bounds: &TimeBounds,
    ) -> Result<(), Decline> {
        if self.direct.resting() {
            return Err(Decline::Shape);
        }
        let read = self.direct_row(bytes, max_depth, bounds);
        self.direct.tried(read.is_ok());
        read
    }

    fn overflowed(&self) -> u64 {
        self.rows.groups.overflowed()
    }

    fn len(&self) -> usize {
        self.rows.groups.len()
    }

    fn keep_only(&mut self, columns: &[&str]) {
        // Groups made before would go on writing every column.
        debug_assert_eq!(self.len(), 0, "columns are chosen before the first record");
        self.rows.keep = Keep::only(&self.rows.schema, columns);
    }

    fn finish(&mut self) -> Vec<RecordBatch> {
        let batches = self.rows.groups.finish();
        if let Some(max) = batches.iter().map(RecordBatch::num_rows).max() {
            self.rows.hint = max;
        }
        batches
    }
}

impl LogRows {
    /// [`Rows::direct`]: the record's members found by [`scan::log_members`], then validated
    /// and written as [`Scratch::write`] writes a record's from the tape. A record that fails
    /// validation is not appended (the general way then says why).
    fn direct_row(
        &mut self,
        bytes: &[u8],
        max_depth: usize,
        bounds: &TimeBounds,
    ) -> Result<(), Decline> {
        let promoted = self.rows.schema.promoted();
        let m = &mut self.members;
        let in_additional_data = |key: &[u8]| {
            (promoted.iter()).position(|p| !p.top_level && key_eq(p.key.as_bytes(), key))
        };
        scan::log_members(bytes, max_depth, known_member, in_additional_data, m)?;
        // The known fields as the tape would hold them; absent reads as null, as on the tape.
        let null = Node::Static(simd_json::StaticNode::Null);
        let tape: [Node<'_>; KNOWN] =
            std::array::from_fn(|k| m.known[k].node(bytes).unwrap_or(null));
        let coerce = self.scratch.coerce;
        let strs = std::array::from_fn(|i| STRS + i);
        let written = self
            .rows
            .append(&tape, (TS, NAMES[0]), SERVICE, bounds, |c, schema| {
                c.write_level_and_strings(&tape, LEVEL, NAMES[1], &strs)?;
                c.write_promoted(schema, coerce, |p| m.promoted[p].node(bytes))?;
                if c.keep.additional_data {
                    c.additional_data.push_written(|out| {
                        if !m.runs.is_empty() {
                            // SAFETY: `log_members` read the whole record: its strings checked
                            // as UTF-8, the rest JSON's ASCII punctuation, numbers, words and
                            // spaces.
                            let text = unsafe { std::str::from_utf8_unchecked(bytes) };
                            write_runs(out, text, m.runs.iter().map(|&run| Some(run)));
                        }
                    });
                }
                c.extra.push_null_if(c.keep.extra);
                Ok(())
            });
        // A record that fails validation: the general reader says why.
        written.map_err(|_| Decline::Shape)
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
            match known_member(key.as_bytes()) {
                Some(Known(TS)) => f.ts = value,
                Some(Known(LEVEL)) => f.level = value,
                Some(Known(SERVICE)) => {
                    if let Node::Object { .. } = tape[value] {
                        service_object = value;
                        self.extras.push(m);
                    } else {
                        f.service = value;
                    }
                }
                Some(Known(k)) => f.strs[k - STRS] = value,
                Some(AdditionalData) => f.ad = Some(m),
                None => self.extras.push(m),
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
        tape: &[Node<'_>],
        raw: Raw<'_>,
        f: &Fields,
    ) -> Result<(), Rejection> {
        c.write_level_and_strings(tape, f.level, self.names[1], &f.strs)?;

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
        let slots = &self.promoted_slots;
        c.write_promoted(schema, self.coerce, |p| {
            (slots[p] != ABSENT).then(|| tape[slots[p]])
        })?;

        if c.keep.additional_data {
            c.additional_data.push_written(|out| {
                // Members are left over only from an `additional_data` object.
                let Some(ad) = f.ad.filter(|_| !self.rest.is_empty()) else {
                    return;
                };
                let verbatim = raw
                    .value_end_of(tape, ad, raw.end())
                    .is_some_and(|ad_end| raw.write_object(out, tape, &self.rest, ad_end));
                if !verbatim {
                    write_members(out, tape, self.rest.iter().map(|m| m.key));
                }
            });
        }
        if c.keep.extra {
            c.extra.push_written(|out| {
                if !self.extras.is_empty() && !raw.write_object(out, tape, &self.extras, raw.end())
                {
                    write_members(out, tape, self.extras.iter().map(|m| m.key));
                }
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::Array;
    use vigil_core::schema::{FieldType, LogSchema, PromotedField};

    use super::*;
    use crate::DecoderOptions;
    use crate::scan::Scanner;

    /// Appends `bytes` the general way: the scanner's tape, else simd-json's.
    fn append_from_tape(
        rows: &mut LogRows,
        scanner: &mut Scanner,
        bytes: &[u8],
        max_depth: usize,
        bounds: &TimeBounds,
    ) -> Result<(), Rejection> {
        let mut tape = Vec::new();
        if scanner.object(bytes, max_depth, &mut tape) {
            return rows.append(&tape, 0, Raw::new(bytes, bytes.as_ptr() as usize), bounds);
        }
        let mut copy = bytes.to_vec();
        let len = copy.len();
        copy.resize(len + simd_json::INPUT_PADDING, b' ');
        let mut buffers = simd_json::Buffers::with_max_depth(64, max_depth);
        let mut t = simd_json::Tape::null().reset();
        let base = copy.as_ptr() as usize;
        match simd_json::fill_tape_padded(&mut copy, len, &mut buffers, &mut t) {
            Ok(()) => rows.append(&t.0, 0, Raw::new(bytes, base), bounds),
            Err(_) => Err(Rejection::new(ReasonCode::InvalidJson, "not JSON")),
        }
    }

    /// The generator's deterministic random numbers, in the shapes the records below need.
    struct Draw(vigil_gen::Rng);

    impl Draw {
        fn below(&mut self, n: usize) -> usize {
            self.0.below(n as u64) as usize
        }

        fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
            xs[self.below(xs.len())]
        }

        fn ws(&mut self) -> &'static str {
            ["", "", "", " ", "\t", "  "][self.below(6)]
        }
    }

    /// A value for a member of `additional_data` that is not promoted, nested up to `depth`.
    fn any_value(g: &mut Draw, depth: usize) -> String {
        match g.below(if depth == 0 { 5 } else { 7 }) {
            0 => g
                .pick(&["\"x\"", "\"é ü\"", "\"\"", "\"a\\\"b\"", "\"tab\\tx\""])
                .into(),
            1 => g
                .pick(&[
                    "0",
                    "-1",
                    "2.50",
                    "1e3",
                    "-0.0",
                    "12345678901234567890",
                    "7E-2",
                ])
                .into(),
            2 => g.pick(&["true", "false", "null"]).into(),
            3 => "\"deal-36518\"".into(),
            4 => "42".into(),
            5 => {
                let n = g.below(3);
                let items: Vec<String> = (0..n).map(|_| any_value(g, depth - 1)).collect();
                format!("[{}]", items.join(&format!(",{}", g.ws())))
            }
            _ => {
                let n = g.below(3);
                let items: Vec<String> = (0..n)
                    .map(|i| format!("\"k{i}\":{}{}", g.ws(), any_value(g, depth - 1)))
                    .collect();
                format!("{{{}}}", items.join(","))
            }
        }
    }

    fn record(g: &mut Draw) -> String {
        let mut members: Vec<String> = Vec::new();
        let scalar = |g: &mut Draw, usual: &[&str]| -> String {
            match g.below(12) {
                0 => "null".into(),
                1 => g
                    .pick(&["7", "true", "{}", "[\"x\"]", "\"\"", "\"a\\u00e9\""])
                    .into(),
                _ => g.pick(usual).into(),
            }
        };
        let known: [(&str, &[&str]); 8] = [
            (
                "timestamp",
                &[
                    "\"2025-06-02T09:00:00.010Z\"",
                    "\"2025-06-02T09:00:01+02:00\"",
                    "1748854800",
                    "1748854800123",
                    "\"2125-06-02T09:00:00Z\"",
                    "\"yesterday\"",
                ],
            ),
            (
                "level",
                &[
                    "\"INFO\"",
                    "\"warn\"",
                    "\"Error\"",
                    "30",
                    "\"custom\"",
                    "\"DEBUG\"",
                ],
            ),
            (
                "service",
                &["\"auth-service\"", "\"api-gateway\"", "\"db\""],
            ),
            ("trace_id", &["\"c0868a0ceb815ac03f35bc64\"", "\"t2\""]),
            ("span_id", &["\"2ea754c237e5fc74\""]),
            ("parent_span_id", &["\"b4f2ae8a97ec47d1\""]),
            ("user_id", &["\"user-3275\"", "\"ü\""]),
            (
                "message",
                &["\"Token verified\"", "\"Processing deal with ID: deal-1\""],
            ),
        ];
        for (key, usual) in known {
            // The time and the service are there most of the time, the rest half of it.
            if g.below(10)
                < if key == "timestamp" || key == "service" {
                    9
                } else {
                    5
                }
            {
                let v = scalar(g, usual);
                members.push(format!("\"{key}\":{}{v}", g.ws()));
            }
        }
        if g.below(10) < 8 {
            let ad = match g.below(10) {
                0 => "null".to_string(),
                1 => "\"text\"".to_string(),
                2 => "{}".to_string(),
                _ => {
                    let n = 1 + g.below(5);
                    let items: Vec<String> = (0..n)
                        .map(|_| {
                            let (k, v) = match g.below(8) {
                                0 | 1 => (
                                    "status_code",
                                    g.pick(&[
                                        "200",
                                        "503",
                                        "200.0",
                                        "2.5",
                                        "\"404\"",
                                        "3000000000",
                                        "null",
                                        "true",
                                    ])
                                    .to_string(),
                                ),
                                2 | 3 => (
                                    "processing_time_ms",
                                    g.pick(&["3.5", "7", "\"1.5\"", "-0.0", "1e400", "{}"])
                                        .to_string(),
                                ),
                                4 => ("operation", g.pick(&["\"route\"", "5", "null"]).to_string()),
                                _ => ("deal_id", any_value(g, 3)),
                            };
                            format!("{}\"{k}\"{}:{}{v}{}", g.ws(), g.ws(), g.ws(), g.ws())
                        })
                        .collect();
                    format!("{{{}}}", items.join(","))
                }
            };
            let at = g.below(members.len() + 1);
            members.insert(at, format!("\"additional_data\":{ad}"));
        }
        match g.below(20) {
            0 => members.push("\"host\":\"h1\"".into()),
            1 => members.push("\"latency_ms\":12.5".into()),
            // A key written twice, the second time with another value.
            2 => members.push(format!(
                "\"level\":{}",
                g.pick(&["\"ERROR\"", "null", "[]"])
            )),
            3 => members.push(format!("\"service\":{}", g.pick(&["\"db\"", "\"\""]))),
            4 => members.push("\"additional_data\":{\"deal_id\":1}".into()),
            _ => {}
        }
        let sep = format!("{},{}", g.ws(), g.ws());
        format!("{}{{{}}}{}", g.ws(), members.join(&sep), g.ws())
    }

    /// Log rows, and the options one run of the test reads records with.
    fn rows(coerce: bool, default_service: Option<&str>, keep: Option<&[&str]>) -> LogRows {
        let schema = LogSchema::new(vec![
            PromotedField::nested("status_code", FieldType::Int32),
            PromotedField::nested("processing_time_ms", FieldType::Float64),
            PromotedField::nested("operation", FieldType::Utf8),
            PromotedField {
                key: "latency_ms".into(),
                top_level: true,
                column: "latency_ms".into(),
                field_type: FieldType::Float64,
            },
        ])
        .unwrap();
        let opts = DecoderOptions {
            coerce,
            default_service: default_service.map(Into::into),
            ..DecoderOptions::default()
        };
        let mut rows = LogRows::new(schema, &opts);
        if let Some(columns) = keep {
            rows.keep_only(columns);
        }
        rows
    }

    #[test]
    fn records_read_without_a_tape_are_the_rows_the_tape_gives() {
        // 2025-06-02T09:00:00Z, a day of skew: the 2125 times are out of bounds.
        let bounds = TimeBounds::at(1_748_854_800_000_000, Some(86_400_000_000), None);
        // `decode.coerce`, `decode.default_service`, the columns kept, `decode.max_depth`.
        type Run<'a> = (bool, Option<&'a str>, Option<&'a [&'a str]>, usize);
        let runs: [Run<'_>; 4] = [
            (false, None, None, 64),
            (true, Some("unknown"), None, 64),
            (false, None, Some(&["level", "trace_id", "status_code"]), 3),
            (true, None, None, 2),
        ];
        for (run, (coerce, default_service, keep, max_depth)) in runs.into_iter().enumerate() {
            let mut g = Draw(vigil_gen::Rng::new(run as u64 + 1));
            let (mut direct, mut tape) = (
                rows(coerce, default_service, keep),
                rows(coerce, default_service, keep),
            );
            let (mut s1, mut s2) = (Scanner::default(), Scanner::default());
            let (mut taken, mut appended, mut syntax) = (0, 0, 0);
            for _ in 0..20_000 {
                // A third of the records damaged: a byte dropped, doubled or replaced, or the
                // line cut short, so invalid JSON and UTF-8 meet both readers too.
                let mut damaged = record(&mut g).into_bytes();
                if g.below(3) == 0 {
                    let at = g.below(damaged.len());
                    const BYTES: &[u8] = b"\"{}[],:\\ 0a-.eE\xc3\xff\x01";
                    match g.below(4) {
                        0 => drop(damaged.remove(at)),
                        1 => damaged.insert(at, damaged[at]),
                        2 => damaged[at] = BYTES[g.below(BYTES.len())],
                        _ => damaged.truncate(at),
                    }
                }
                let bytes = &damaged[..];
                let line = String::from_utf8_lossy(bytes);
                let before = direct.len();
                let general = append_from_tape(&mut tape, &mut s2, bytes, max_depth, &bounds);
                let read = direct.direct_row(bytes, max_depth, &bounds);
                if read.is_ok() {
                    assert!(
                        general.is_ok(),
                        "read without a tape, rejected with one: {line}"
                    );
                    taken += 1;
                } else {
                    // What is declined as not plain the scanner declines too: the decoder
                    // then goes straight to simd-json.
                    if read == Err(Decline::Syntax) {
                        let mut tape = Vec::new();
                        let scanned = Scanner::default().object(bytes, max_depth, &mut tape);
                        assert!(
                            !scanned,
                            "declined as not plain, read by the scanner: {line}"
                        );
                        syntax += 1;
                    }
                    assert_eq!(direct.len(), before, "declined but appended: {line}");
                    let again = append_from_tape(&mut direct, &mut s1, bytes, max_depth, &bounds);
                    assert_eq!(again.is_ok(), general.is_ok(), "{line}");
                }
                appended += usize::from(general.is_ok());
            }
            // Most records that have rows are of the common shape: the test must exercise
            // the reader, not only its declines.
            assert!(
                taken * 2 > appended,
                "run {run}: {taken} read of {appended}"
            );
            assert!(syntax > 100, "run {run}: {syntax} declined as not plain");
            let (direct, tape) = (direct.finish(), tape.finish());
            if keep.is_some() {
                // Packed: each batch, the columns left out included, is one allocation.
                for b in &direct {
                    let columns: Vec<&dyn Array> = b.columns().iter().map(|c| c.as_ref()).collect();
                    assert!(crate::column::one_block(&columns), "run {run}");
                }
            }
            assert_eq!(direct, tape, "run {run}");
        }
    }

    #[test]
    fn a_record_declined_says_whether_the_scanner_may_still_read_it() {
        let bounds = TimeBounds::at(1_748_854_800_000_000, None, None);
        let mut rows = rows(false, None, None);
        let base = r#""timestamp":"2025-06-02T09:00:00Z","service":"a""#;
        for (members, why) in [
            (r#""host":"h""#, Decline::Shape),
            (r#""level":{"name":"INFO"}"#, Decline::Shape),
            (r#""additional_data":"text""#, Decline::Shape),
            (
                r#""additional_data":{},"additional_data":{}"#,
                Decline::Shape,
            ),
            (r#""message":"say \"hi\"""#, Decline::Syntax),
            (r#""additional_data":{"a":"\u00e9"}"#, Decline::Syntax),
            (
                r#""additional_data":{"a":123456789012345678901}"#,
                Decline::Syntax,
            ),
            (r#""message":"x",,"#, Decline::Syntax),
            // Invalid JSON inside the members it skips over is seen too.
            (r#""additional_data":{"a":{"b"1}}"#, Decline::Syntax),
            (r#""additional_data":{"a":{"b":1,}}"#, Decline::Syntax),
            (r#""additional_data":{"a":[1,]}"#, Decline::Syntax),
            (r#""additional_data":{"a":[1 2]}"#, Decline::Syntax),
            (r#""additional_data":{"a":[{"b":tru}]}"#, Decline::Syntax),
        ] {
            let line = format!("{{{base},{members}}}");
            assert_eq!(
                rows.direct_row(line.as_bytes(), 64, &bounds),
                Err(why),
                "{line}"
            );
        }
        assert_eq!(rows.len(), 0);
    }

    #[test]
    fn a_member_nested_as_deep_as_allowed_is_read_without_recursion() {
        // 300,000 levels, within a `max_depth` set that high: a reader that recursed per level
        // would overflow a thread's stack; this one keeps the levels on the heap.
        let bounds = TimeBounds::at(1_748_854_800_000_000, None, None);
        let depth = 300_000;
        let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let line = format!(
            r#"{{"timestamp":"2025-06-02T09:00:00Z","service":"a","additional_data":{{"a":{deep}}}}}"#
        );
        let mut rows = rows(false, None, None);
        assert_eq!(rows.direct_row(line.as_bytes(), depth + 2, &bounds), Ok(()));
        // One level fewer allowed: declined, as the scanner and simd-json decline it.
        assert_eq!(
            rows.direct_row(line.as_bytes(), depth + 1, &bounds),
            Err(Decline::Syntax)
        );
        let batch = &rows.finish()[0];
        let ad = batch.column_by_name("additional_data").unwrap();
        let ad = ad
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        assert_eq!(ad.value(0), format!(r#"{{"a":{deep}}}"#));
    }

    #[test]
    fn a_seed_record_is_read_without_a_tape_and_its_other_members_kept_as_written() {
        let bounds = TimeBounds::at(1_748_854_800_000_000, None, None);
        let mut rows = rows(false, None, None);
        let line = r#"{"timestamp":"2025-06-02T09:00:00.010Z","level":"INFO","service":"auth-service","additional_data":{"a":1, "status_code":200,"b" : [1,{"c":null}] ,"d":"é","operation":"verify"}}"#;
        assert_eq!(rows.direct_row(line.as_bytes(), 64, &bounds), Ok(()));
        let batch = &rows.finish()[0];
        let column = |name: &str| batch.column_by_name(name).unwrap().clone();
        let ad = column("additional_data");
        let ad = ad
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        // Two runs (promoted members between them), each as written.
        assert_eq!(ad.value(0), r#"{"a":1,"b" : [1,{"c":null}] ,"d":"é"}"#);
        assert_eq!(batch.num_rows(), 1);
        assert!(column("extra").is_null(0));
    }
}
