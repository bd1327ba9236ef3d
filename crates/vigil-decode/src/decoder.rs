//! The push decoder: bytes in, `RecordBatch`es of records and dead letters out.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use memchr::memchr;
use simd_json::{Buffers, ErrorType, Node, Tape};
use vigil_core::schema::{LogSchema, RecordKind};

use crate::dead::{DeadLetters, ReasonCode, Rejection};
use crate::logs::LogRows;
use crate::metrics::MetricRows;
use crate::rows::{Rows, TimeBounds};
use crate::scan::{Decline, Scanner};
use crate::tape::span;
use crate::verbatim::Raw;

/// Limits and sizes of a [`Decoder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecoderOptions {
    /// Records (good and bad) buffered before [`Decoder::decode`] stops consuming input and
    /// waits for a [`Decoder::flush`].
    pub batch_size: usize,
    /// Input bytes buffered before [`Decoder::decode`] stops consuming, whatever the record
    /// count: a string column's offsets are 32-bit, so a batch must stay far below 2 GiB
    /// (8192 records near `max_record_bytes` would not).
    pub batch_bytes: usize,
    /// Records longer than this many bytes are dead letters without being parsed.
    pub max_record_bytes: usize,
    /// Records nesting objects and arrays deeper than this are dead letters.
    pub max_depth: usize,
    /// At most this many bytes of a rejected record are kept in the dead letter.
    pub dead_letter_raw_limit: usize,
    /// Records with an event time further than this ahead of the wall clock are dead letters
    /// (`timestamp_out_of_range`); `None`: no limit but year 9999.
    pub max_future_skew: Option<Duration>,
    /// Records with an event time further than this behind the wall clock are dead letters;
    /// `None`: no limit but year 0001.
    pub max_past: Option<Duration>,
    /// The service of a record that names none (logs of a library that writes no service,
    /// one file or topic per service); `None`: such a record is a dead letter.
    pub default_service: Option<String>,
    /// Read a promoted number or boolean field written as a string of one (`"503"` for an
    /// int32), and a metric's `value` written as a string of a number, as that value;
    /// without it such a record is a dead letter (`wrong_type`).
    pub coerce: bool,
}

impl Default for DecoderOptions {
    fn default() -> Self {
        Self {
            batch_size: 8192,
            batch_bytes: 64 << 20,
            max_record_bytes: 1 << 20,
            max_depth: 64,
            dead_letter_raw_limit: 64 << 10,
            max_future_skew: Some(Duration::from_secs(600)),
            max_past: None,
            default_service: None,
            coerce: false,
        }
    }
}

/// What one [`Decoder::flush`] returns: the good records and the dead letters decoded since the
/// previous flush. Either may be empty, never both.
#[derive(Debug, Clone)]
pub struct DecodedBatch {
    /// Rows of the `logs` or `metrics` schema: one batch per service, in service order, each
    /// holding that service's records in input order.
    pub records: Vec<RecordBatch>,
    /// Rows of the `dead_letters` schema.
    pub dead_letters: RecordBatch,
}

/// Running totals of a decoder since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Records decoded into rows.
    pub records: u64,
    /// Records turned into dead letters.
    pub dead_letters: u64,
    /// Blank lines skipped (not records).
    pub blank_lines: u64,
    /// Input bytes consumed.
    pub bytes: u64,
    /// Records parsed on their own rather than in a group: records that do not start like an
    /// object, and every record of a group that failed as a whole. On clean input this stays
    /// at zero; it measures how much bad input costs.
    pub parsed_alone: u64,
    /// Records of services beyond the per-batch limit of services with builders of their
    /// own, decoded into one shared group (memory stays bounded; the archive sorts them).
    pub overflowed: u64,
}

/// Consecutive well-formed-looking records are parsed as one JSON array of at most this many
/// bytes: simd-json's per-document set-up then costs once per group, not once per record.
const GROUP_BYTES: usize = 64 << 10;

/// A push decoder for NDJSON streams and message batches.
///
/// Feed bytes with [`decode`](Self::decode) (newline-delimited, any split across calls) or
/// whole messages with [`decode_messages`](Self::decode_messages); take batches with
/// [`flush`](Self::flush). Every input record ends up either as a row or as a dead letter with
/// its raw bytes, position and reason; no input makes the decoder panic.
pub struct Decoder {
    kind: RecordKind,
    rows: Box<dyn Rows + Send>,
    dead: DeadLetters,
    opts: DecoderOptions,
    parser: Parser,
    stats: DecodeStats,
    /// Records buffered since the last flush, good or bad.
    buffered: usize,
    /// Input bytes of those records.
    buffered_bytes: usize,
    /// The event times accepted, as of the last `process`.
    bounds: TimeBounds,
    // NDJSON stream state.
    source: Arc<str>,
    next_line: i64,
    carry: Carry,
    lines: Vec<(usize, usize, i64)>,
}

/// An incomplete line carried between `decode` calls.
#[derive(Default)]
struct Carry {
    active: bool,
    bytes: Vec<u8>,
    /// Full length; more than `bytes.len()` once the line is known to be oversized.
    len: usize,
    line: i64,
}

struct Parser {
    /// Groups wrap records in an array, one level more than a record alone.
    group_buffers: Buffers,
    buffers: Buffers,
    tape: Tape<'static>,
    /// The tape of a record read by [`Scanner::object`], straight from its bytes.
    fast: Tape<'static>,
    scanner: Scanner,
    scratch: Vec<u8>,
    /// For each record of a group: offset in `scratch` where its first key's text starts,
    /// and where the record starts.
    key_offsets: Vec<usize>,
    starts: Vec<usize>,
    group: Vec<usize>,
}

impl DecodedBatch {
    /// No records and no dead letters: what a run of blank input decodes to.
    pub fn empty() -> Self {
        Self {
            records: Vec::new(),
            dead_letters: RecordBatch::new_empty(vigil_core::schema::dead_letter_schema()),
        }
    }

    /// Good records in all batches.
    pub fn num_records(&self) -> usize {
        self.records.iter().map(RecordBatch::num_rows).sum()
    }
}

impl Decoder {
    /// A decoder for log records with the given schema.
    pub fn logs(schema: LogSchema, opts: DecoderOptions) -> Self {
        let rows = Box::new(LogRows::new(schema, &opts));
        Self::with_rows(RecordKind::Logs, rows, opts)
    }

    /// A decoder for metric records.
    pub fn metrics(opts: DecoderOptions) -> Self {
        let rows = Box::new(MetricRows::new(&opts));
        Self::with_rows(RecordKind::Metrics, rows, opts)
    }

    /// A decoder for logs or metrics; logs use `schema`.
    ///
    /// # Panics
    /// For [`RecordKind::Spans`]: spans come from OTLP only ([`crate::OtlpDecoder`]), and the
    /// pipeline file refuses a JSON lines source of spans.
    pub fn new(kind: RecordKind, schema: LogSchema, opts: DecoderOptions) -> Self {
        match kind {
            RecordKind::Logs => Self::logs(schema, opts),
            RecordKind::Metrics => Self::metrics(opts),
            RecordKind::Spans => panic!("spans are decoded from OTLP only"),
        }
    }

    fn with_rows(kind: RecordKind, rows: Box<dyn Rows + Send>, opts: DecoderOptions) -> Self {
        Self {
            kind,
            rows,
            dead: DeadLetters::new(kind, opts.dead_letter_raw_limit),
            parser: Parser {
                group_buffers: Buffers::with_max_depth(GROUP_BYTES, opts.max_depth + 1),
                buffers: Buffers::with_max_depth(4096, opts.max_depth),
                tape: Tape(Vec::new()),
                fast: Tape(Vec::new()),
                scanner: Scanner::default(),
                scratch: Vec::new(),
                key_offsets: Vec::new(),
                starts: Vec::new(),
                group: Vec::new(),
            },
            opts,
            stats: DecodeStats::default(),
            bounds: TimeBounds::at(0, None, None),
            buffered: 0,
            buffered_bytes: 0,
            source: Arc::from("-"),
            next_line: 1,
            carry: Carry::default(),
            lines: Vec::new(),
        }
    }

    /// Writes only the named columns of log records (besides `timestamp`, `service` and
    /// `date`, which every batch has); the others come out all null. For a reader that needs a
    /// few columns (a backtest's rules and correlation): every record is still validated, so
    /// the same records are dead letters, only less is written. Metric records are written
    /// whole. Each log column of a batch then comes as one block, and the decoder reuses its
    /// buffers: for batches that are read, not archived (Arrow counts a block shared by a
    /// column's buffers once per buffer, and the archive's flush threshold reads that count).
    pub fn keep_only(&mut self, columns: &[&str]) {
        self.rows.keep_only(columns);
    }

    /// The kind of record this decoder produces.
    pub fn kind(&self) -> RecordKind {
        self.kind
    }

    /// Totals since the decoder was created.
    pub fn stats(&self) -> DecodeStats {
        DecodeStats {
            overflowed: self.rows.overflowed(),
            ..self.stats
        }
    }

    /// Dead letters per reason since the decoder was created.
    pub fn dead_letter_counts(&self) -> impl Iterator<Item = (ReasonCode, u64)> + '_ {
        self.dead.counts()
    }

    /// Records buffered since the last flush, good or bad.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Starts a new NDJSON source (a file, stdin): ends the previous one as by
    /// [`end_of_input`](Self::end_of_input) and numbers lines from 1.
    pub fn begin_source(&mut self, name: &str) {
        self.begin_source_at(name, 1);
    }

    /// Starts `name` at line `line`: decoders sharing one input each take runs of its whole
    /// lines, and their dead letters name the lines a single decoder would.
    pub fn begin_source_at(&mut self, name: &str, line: i64) {
        self.end_of_input();
        self.source = Arc::from(name);
        self.next_line = line;
    }

    /// The number the next line of the current source will have: after whole lines decoded
    /// from [`begin_source_at`](Self::begin_source_at)`(name, 1)`, one more than their count.
    pub fn next_line(&self) -> i64 {
        self.next_line
    }

    /// Decodes newline-delimited records from `buf` and returns how many bytes were consumed.
    ///
    /// A line split across calls is carried over. Consumption stops early, at a line boundary,
    /// once `batch_size` records or `batch_bytes` bytes are buffered; call
    /// [`flush`](Self::flush) and pass the rest again.
    pub fn decode(&mut self, buf: &[u8]) -> usize {
        let mut pos = 0;
        if self.carry.active {
            match memchr(b'\n', buf) {
                None => {
                    self.carry_more(buf);
                    self.stats.bytes += buf.len() as u64;
                    return buf.len();
                }
                Some(i) => {
                    self.carry_more(&buf[..i]);
                    self.finish_carry();
                    pos = i + 1;
                }
            }
        }
        let mut lines = std::mem::take(&mut self.lines);
        loop {
            lines.clear();
            let mut exhausted = false;
            while self.buffered + lines.len() < self.opts.batch_size
                && self.buffered_bytes < self.opts.batch_bytes
            {
                let Some(i) = memchr(b'\n', &buf[pos..]) else {
                    exhausted = true;
                    break;
                };
                lines.push((pos, pos + i, self.next_line));
                self.next_line += 1;
                self.buffered_bytes += i + 1;
                pos += i + 1;
            }
            if !lines.is_empty() {
                let units: Vec<(&[u8], i64)> =
                    lines.iter().map(|&(s, e, n)| (&buf[s..e], n)).collect();
                let source = Arc::clone(&self.source);
                self.process(&source, None, &units);
            }
            if exhausted {
                // What is left has no newline: the start of a line the next call completes.
                if pos < buf.len() {
                    self.carry = Carry {
                        active: true,
                        bytes: std::mem::take(&mut self.carry.bytes),
                        len: 0,
                        line: self.next_line,
                    };
                    self.next_line += 1;
                    self.carry_more(&buf[pos..]);
                    pos = buf.len();
                }
                break;
            }
            // Blank lines take no room in the batch; keep going until it is really full.
            if self.buffered >= self.opts.batch_size || self.buffered_bytes >= self.opts.batch_bytes
            {
                break;
            }
        }
        self.lines = lines;
        self.stats.bytes += pos as u64;
        pos
    }

    /// Decodes all of `bytes` (newline-delimited, as [`decode`](Self::decode)), handing every
    /// batch that fills up to `emit`. Records of a batch not yet full stay buffered for the
    /// next call, or for [`flush`](Self::flush) at the end of the input. The drain loop every
    /// reader of NDJSON needs, once.
    pub fn decode_all(&mut self, mut bytes: &[u8], mut emit: impl FnMut(DecodedBatch)) {
        while !bytes.is_empty() {
            let used = self.decode(bytes);
            bytes = &bytes[used..];
            if !bytes.is_empty()
                && let Some(batch) = self.flush()
            {
                emit(batch);
            }
        }
    }

    /// Ends the current NDJSON source: a last line without a trailing newline is decoded.
    pub fn end_of_input(&mut self) {
        if self.carry.active {
            self.finish_carry();
        }
    }

    /// Decodes whole messages (one record each, e.g. Kafka messages) from one partition of
    /// `source`; each comes with its offset. Messages may contain newlines.
    pub fn decode_messages<'a>(
        &mut self,
        source: &str,
        partition: Option<i32>,
        messages: impl IntoIterator<Item = (&'a [u8], i64)>,
    ) {
        let units: Vec<(&[u8], i64)> = messages.into_iter().collect();
        let bytes: usize = units.iter().map(|(m, _)| m.len()).sum();
        self.stats.bytes += bytes as u64;
        self.buffered_bytes += bytes;
        self.process(source, partition, &units);
    }

    /// Takes everything decoded since the previous flush, or `None` if nothing was.
    pub fn flush(&mut self) -> Option<DecodedBatch> {
        self.buffered = 0;
        self.buffered_bytes = 0;
        if self.rows.len() == 0 && self.dead.len() == 0 {
            return None;
        }
        Some(DecodedBatch {
            records: self.rows.finish(),
            dead_letters: self.dead.finish(),
        })
    }

    fn carry_more(&mut self, bytes: &[u8]) {
        let c = &mut self.carry;
        c.len += bytes.len();
        // Past the record limit only the part a dead letter keeps is worth holding.
        let keep = if c.len > self.opts.max_record_bytes {
            self.opts.dead_letter_raw_limit
        } else {
            self.opts.max_record_bytes
        };
        let room = keep.saturating_sub(c.bytes.len());
        c.bytes.extend_from_slice(&bytes[..bytes.len().min(room)]);
        if c.bytes.len() > keep {
            c.bytes.truncate(keep);
        }
    }

    fn finish_carry(&mut self) {
        let carry = std::mem::take(&mut self.carry);
        self.buffered_bytes += carry.bytes.len();
        let source = Arc::clone(&self.source);
        if carry.len > self.opts.max_record_bytes {
            self.reject(
                &source,
                None,
                carry.line,
                &carry.bytes,
                carry.len,
                &self.oversized(carry.len),
            );
        } else {
            self.process(&source, None, &[(&carry.bytes, carry.line)]);
        }
        self.carry.bytes = carry.bytes;
        self.carry.bytes.clear();
    }

    fn oversized(&self, len: usize) -> Rejection {
        Rejection::new(
            ReasonCode::Oversized,
            format!(
                "record is {len} bytes, more than the limit of {}",
                self.opts.max_record_bytes
            ),
        )
    }

    fn reject(
        &mut self,
        source: &str,
        partition: Option<i32>,
        offset: i64,
        raw: &[u8],
        raw_len: usize,
        rejection: &Rejection,
    ) {
        self.dead
            .push(source, partition, offset, raw, raw_len, rejection);
        self.stats.dead_letters += 1;
        self.buffered += 1;
    }

    /// Decodes complete records. A record of the common shape goes straight from its bytes
    /// into its row ([`Rows::direct`]), another plain object into a tape ([`Scanner`]). Runs
    /// of other records that start like an object (`{` then a key) are
    /// parsed by simd-json together as one array; anything else, and every record of a group
    /// that fails as a whole, is parsed alone so it gets its own reason.
    fn process(&mut self, source: &str, partition: Option<i32>, units: &[(&[u8], i64)]) {
        self.bounds = TimeBounds::now(&self.opts);
        let mut group_start = 0;
        self.start_group();
        for (i, &(bytes, offset)) in units.iter().enumerate() {
            if bytes.len() > self.opts.max_record_bytes {
                self.parse_group(source, partition, &units[group_start..i]);
                self.reject(
                    source,
                    partition,
                    offset,
                    bytes,
                    bytes.len(),
                    &self.oversized(bytes.len()),
                );
                group_start = i + 1;
                continue;
            }
            match first_key_offset(bytes) {
                Shape::Blank => {
                    self.stats.blank_lines += 1;
                    self.parser.group.push(usize::MAX);
                }
                Shape::Object(key) => {
                    // Nothing before it waits for simd-json, so its row can go in now.
                    let direct = if group_start == i {
                        self.rows.direct(bytes, self.opts.max_depth, &self.bounds)
                    } else {
                        Err(Decline::Shape)
                    };
                    if direct.is_ok() {
                        group_start = i + 1;
                        self.appended(source, partition, bytes, offset, Ok(()));
                        continue;
                    }
                    let mut t = std::mem::replace(&mut self.parser.fast, Tape(Vec::new())).reset();
                    // Not plain: the scanner would decline it as well.
                    if direct != Err(Decline::Syntax)
                        && self
                            .parser
                            .scanner
                            .object(bytes, self.opts.max_depth, &mut t.0)
                    {
                        // The records before it that simd-json is to read go first: rows
                        // keep the input's order.
                        self.parse_group(source, partition, &units[group_start..i]);
                        group_start = i + 1;
                        let raw = Raw::new(bytes, bytes.as_ptr() as usize);
                        let read = self.rows.append(&t.0, 0, raw, &self.bounds);
                        self.parser.fast = t.reset();
                        self.appended(source, partition, bytes, offset, read);
                        continue;
                    }
                    self.parser.fast = t.reset();
                    let p = &mut self.parser;
                    if p.scratch.len() > 1 && p.scratch.len() + bytes.len() > GROUP_BYTES {
                        self.parse_group(source, partition, &units[group_start..i]);
                        group_start = i;
                    }
                    let p = &mut self.parser;
                    if p.scratch.len() > 1 {
                        p.scratch.extend_from_slice(b",\n");
                    }
                    p.key_offsets.push(p.scratch.len() + key);
                    p.starts.push(p.scratch.len());
                    p.scratch.extend_from_slice(bytes);
                    p.group.push(i - group_start);
                }
                Shape::Other => {
                    self.parse_group(source, partition, &units[group_start..i]);
                    self.parse_one(source, partition, bytes, offset);
                    group_start = i + 1;
                }
            }
        }
        self.parse_group(source, partition, &units[group_start..]);
    }

    fn start_group(&mut self) {
        let p = &mut self.parser;
        p.scratch.clear();
        p.scratch.push(b'[');
        p.key_offsets.clear();
        p.starts.clear();
        p.group.clear();
    }

    /// Parses the group collected in the scratch buffer; `units` are the records it was built
    /// from (blank ones included, marked `usize::MAX` in `group`).
    fn parse_group(&mut self, source: &str, partition: Option<i32>, units: &[(&[u8], i64)]) {
        if self.parser.key_offsets.is_empty() {
            self.start_group();
            return;
        }
        let Parser {
            group_buffers,
            tape,
            scratch,
            key_offsets,
            starts,
            group,
            ..
        } = &mut self.parser;
        scratch.push(b']');
        let len = scratch.len();
        scratch.resize(len + simd_json::INPUT_PADDING, b' ');
        let base = scratch.as_ptr() as usize;
        let mut t = std::mem::replace(tape, Tape(Vec::new())).reset();
        let ok = simd_json::fill_tape_padded(scratch, len, group_buffers, &mut t).is_ok()
            && aligned(&t.0, base, key_offsets);
        let mut failed = Vec::new();
        if ok {
            let mut idx = 1;
            let records = group.iter().filter(|&&u| u != usize::MAX);
            for (&u, &start) in records.zip(starts.iter()) {
                let (bytes, offset) = units[u];
                let raw = Raw::new(bytes, base + start);
                match self.rows.append(&t.0, idx, raw, &self.bounds) {
                    Ok(()) => {
                        self.stats.records += 1;
                        self.buffered += 1;
                    }
                    Err(r) => failed.push((bytes, offset, r)),
                }
                idx += span(&t.0[idx]);
            }
        }
        *tape = t.reset();
        let retry: Vec<usize> = if ok {
            Vec::new()
        } else {
            group.iter().copied().filter(|&u| u != usize::MAX).collect()
        };
        for (bytes, offset, r) in failed {
            self.reject(source, partition, offset, bytes, bytes.len(), &r);
        }
        for u in retry {
            let (bytes, offset) = units[u];
            self.parse_one(source, partition, bytes, offset);
        }
        self.start_group();
    }

    /// Counts a record its rows took, or makes it a dead letter.
    fn appended(
        &mut self,
        source: &str,
        partition: Option<i32>,
        bytes: &[u8],
        offset: i64,
        result: Result<(), Rejection>,
    ) {
        match result {
            Ok(()) => {
                self.stats.records += 1;
                self.buffered += 1;
            }
            Err(r) => self.reject(source, partition, offset, bytes, bytes.len(), &r),
        }
    }

    /// Parses one record on its own, so a failure is attributed to it alone.
    fn parse_one(&mut self, source: &str, partition: Option<i32>, bytes: &[u8], offset: i64) {
        let Parser {
            buffers,
            tape,
            scratch,
            ..
        } = &mut self.parser;
        self.stats.parsed_alone += 1;
        scratch.clear();
        scratch.extend_from_slice(bytes);
        let len = scratch.len();
        scratch.resize(len + simd_json::INPUT_PADDING, b' ');
        let mut t = std::mem::replace(tape, Tape(Vec::new())).reset();
        let base = scratch.as_ptr() as usize;
        let result = match simd_json::fill_tape_padded(scratch, len, buffers, &mut t) {
            Ok(()) => self
                .rows
                .append(&t.0, 0, Raw::new(bytes, base), &self.bounds),
            Err(e) => Err(parse_rejection(&e, bytes)),
        };
        *tape = t.reset();
        self.appended(source, partition, bytes, offset, result);
        // The group being collected (if any) used the same scratch buffer.
        self.start_group();
    }
}

/// Checks that a group's tape is an array with exactly one object per record, each starting
/// where its record starts.
///
/// Without this, records that are not JSON on their own could combine into valid JSON across
/// the separators (`{"a":[1` then `2]}`), or one line could hold two objects. simd-json keeps
/// strings in place in the input buffer, so each object's first key must sit at the offset
/// computed from its record; the separators between records are the only commas between
/// objects, which pins every object to its own record.
fn aligned(tape: &[Node<'_>], base: usize, key_offsets: &[usize]) -> bool {
    let Some(Node::Array { len, .. }) = tape.first() else {
        return false;
    };
    if *len != key_offsets.len() {
        return false;
    }
    let mut idx = 1;
    for &off in key_offsets {
        match (tape.get(idx), tape.get(idx + 1)) {
            (Some(obj @ Node::Object { len, .. }), Some(Node::String(key)))
                if *len > 0 && key.as_ptr() as usize == base + off =>
            {
                idx += span(obj);
            }
            _ => return false,
        }
    }
    true
}

enum Shape {
    Blank,
    /// Starts with `{` then a `"`: the offset just past that quote.
    Object(usize),
    Other,
}

/// JSON's whitespace.
fn is_ws(b: &u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn first_key_offset(bytes: &[u8]) -> Shape {
    let Some(open) = bytes.iter().position(|b| !is_ws(b)) else {
        return Shape::Blank;
    };
    if bytes[open] != b'{' {
        return Shape::Other;
    }
    match bytes[open + 1..].iter().position(|b| !is_ws(b)) {
        Some(q) if bytes[open + 1 + q] == b'"' => Shape::Object(open + q + 2),
        _ => Shape::Other,
    }
}

fn parse_rejection(e: &simd_json::Error, bytes: &[u8]) -> Rejection {
    match e.error() {
        ErrorType::InvalidUtf8 => Rejection::new(
            ReasonCode::InvalidUtf8,
            format!("record is not valid UTF-8 ({e})"),
        ),
        ErrorType::DepthLimitExceeded => Rejection::new(
            ReasonCode::TooDeep,
            format!("record nests too deeply ({e})"),
        ),
        _ => Rejection::new(ReasonCode::InvalidJson, invalid_json(e, bytes)),
    }
}

/// Why a record is not JSON: simd-json's reason, said plainly for the two mistakes that make
/// most such lines, JSON that is not one object per line (a pretty-printed array's `[`, `]`
/// and `},`) and a second value after the object, where simd-json says only "InternalError".
fn invalid_json(e: &simd_json::Error, bytes: &[u8]) -> String {
    let Some(first) = bytes.iter().position(|b| !is_ws(b)) else {
        return format!("invalid JSON: {e}");
    };
    // A pretty-printed object: its `{`, its members, its `}`, each on a line of its own.
    const SPLIT: &str = "a record split over lines (pretty-printed JSON); records are one JSON \
                         object per line, as `jq -c` writes them";
    let alone = || bytes[first + 1..].iter().all(|b| is_ws(b) || *b == b',');
    match bytes[first] {
        c @ (b'[' | b']') => {
            return format!(
                "invalid JSON: `{}` of a JSON array; records are one JSON object per line ({e})",
                char::from(c)
            );
        }
        c @ (b'{' | b'}') if alone() => {
            return format!(
                "invalid JSON: `{}` alone on its line: {SPLIT} ({e})",
                char::from(c)
            );
        }
        b'"' if let Some(key) = member_key(&bytes[first..]) => {
            return format!("invalid JSON: member {key}: outside an object: {SPLIT} ({e})");
        }
        _ => {}
    }
    if let Some(end) = object_end(bytes, first)
        && let Some(extra) = bytes[end..].iter().position(|b| !is_ws(b))
        // The object itself is JSON (checked on this rare path only), so what follows it is
        // what is wrong.
        && simd_json::to_tape(&mut bytes[first..end].to_vec()).is_ok()
    {
        let at = end + extra;
        let shown = String::from_utf8_lossy(&bytes[at..bytes.len().min(at + 16)]);
        return format!(
            "invalid JSON: {shown:?} after the object, at character {at}; records are one JSON \
             object per line"
        );
    }
    format!("invalid JSON: {e}")
}

/// The key of a line that starts like an object's member (`"key":`), quotes included, at
/// most 40 characters of it.
fn member_key(bytes: &[u8]) -> Option<String> {
    let close = 1 + bytes[1..].iter().position(|&b| b == b'"' || b == b'\\')?;
    if bytes[close] != b'"' {
        return None;
    }
    let colon = bytes[close + 1..].iter().position(|b| !is_ws(b))?;
    (bytes[close + 1 + colon] == b':').then(|| {
        let key = String::from_utf8_lossy(&bytes[..=close]);
        key.chars().take(40).collect()
    })
}

/// Where the object starting at `bytes[start]` ends (just after its closing brace) by its
/// brackets and strings alone, if it starts one and ends.
fn object_end(bytes: &[u8], start: usize) -> Option<usize> {
    if bytes[start] != b'{' {
        return None;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &c) in bytes.iter().enumerate().skip(start) {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}
