//! A strict reader for the common record, straight from its bytes into simd-json's tape.
//!
//! Telemetry lines are short objects of short strings without escapes. For them simd-json's
//! machinery (a copy of the line into a padded buffer, a structural index, then the tape)
//! costs more than the reading itself, so [`Scanner::object`] reads such a line in one
//! forward pass, strings 16 bytes at a time, and writes the very nodes simd-json would: the
//! same `Object`/`Array` counts, keys and strings as `&str` into the line itself, integers as
//! `U64`/`I64`, other numbers as correctly rounded `F64`.
//!
//! It accepts a subset of JSON and nothing that is not JSON. Whatever it does not handle
//! itself — a string with an escape or a control character, an integer of 19 digits or more,
//! a float beyond `f64`, nesting deeper than the limit, and every kind of invalid input — it
//! declines, and the caller parses the record with simd-json, which either reads it or says
//! what is wrong with it. So the reasons of dead letters stay simd-json's.
//!
//! [`log_members`] goes one step further for a log record of the common shape: with the same
//! string, number and nesting rules it finds the record's known members where they are,
//! without writing a tape at all, and the log rows write them to their columns; what it
//! declines goes the way above.

use simd_json::{Node, StaticNode};

use crate::tape::key_eq;

/// The reader, with the stack of containers open at the cursor, kept from record to record.
#[derive(Default)]
pub(crate) struct Scanner {
    open: Vec<Open>,
    rest: Rest,
}

/// When a reader of plain records declines several in a row, it rests: see [`DECLINES`].
#[derive(Default)]
pub(crate) struct Rest {
    /// Records declined in a row.
    declined: u32,
    /// Records still to decline without reading them.
    resting: u32,
}

impl Rest {
    /// Whether to skip this record without trying it (counted as one of the rest).
    #[inline]
    pub(crate) fn resting(&mut self) -> bool {
        if self.resting > 0 {
            self.resting -= 1;
            return true;
        }
        false
    }

    /// Counts a record tried: read (`true`) or declined.
    #[inline]
    pub(crate) fn tried(&mut self, read: bool) {
        if read {
            self.declined = 0;
        } else {
            self.declined += 1;
            if self.declined == DECLINES {
                self.declined = 0;
                self.resting = REST;
            }
        }
    }
}

/// Declines in a row after which the reader rests for [`REST`] records: in a stream where most
/// records need simd-json (an escape in every message, say) reading each up to its first
/// escape would be wasted work, so then only [`DECLINES`] records in [`DECLINES`] + [`REST`]
/// are tried.
const DECLINES: u32 = 8;
const REST: u32 = 64;

/// An object or array being read: its node's index in the tape, its members or elements so
/// far.
#[derive(Clone, Copy)]
struct Open {
    at: usize,
    len: usize,
    object: bool,
}

impl Scanner {
    /// Reads `bytes` as one JSON object, whitespace around it allowed, nesting at most
    /// `max_depth` levels (the object itself is the first), into `tape` as simd-json's
    /// nodes. `false` if the record is not one this reader takes, or the reader is resting
    /// (see [`DECLINES`]); `tape` then holds nothing useful.
    pub(crate) fn object<'a>(
        &mut self,
        bytes: &'a [u8],
        max_depth: usize,
        tape: &mut Vec<Node<'a>>,
    ) -> bool {
        tape.clear();
        if self.rest.resting() {
            return false;
        }
        // At most a node per two bytes (`""`, `1,`, `{}`), so pushes never grow it.
        tape.reserve(bytes.len() / 2 + 1);
        self.open.clear();
        let read = read(bytes, max_depth, tape, &mut self.open).is_some();
        self.rest.tried(read);
        read
    }
}

/// One forward pass, no recursion: the open containers on a stack of their own, the cursor
/// in a register. The outer loop reads a value; the inner one, what follows values (`,` or
/// closers) until the next value starts.
#[inline(never)]
fn read<'a>(
    b: &'a [u8],
    max_depth: usize,
    tape: &mut Vec<Node<'a>>,
    open: &mut Vec<Open>,
) -> Option<()> {
    let mut i = ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    loop {
        let c = *b.get(i)?;
        match c {
            b'"' => {
                let (s, next) = string(b, i)?;
                tape.push(Node::String(s));
                i = next;
            }
            b'{' | b'[' => {
                if open.len() == max_depth {
                    return None;
                }
                let object = c == b'{';
                let close = if object { b'}' } else { b']' };
                i = ws(b, i + 1);
                let empty = b.get(i) == Some(&close);
                open.push(Open {
                    at: tape.len(),
                    len: usize::from(!empty),
                    object,
                });
                // A placeholder (object or array): its counts are known when it closes.
                tape.push(Node::Object { len: 0, count: 0 });
                if !empty {
                    if object {
                        i = key(b, i, tape)?;
                    }
                    continue;
                }
            }
            b't' => i = word(b, i, b"true", StaticNode::Bool(true), tape)?,
            b'f' => i = word(b, i, b"false", StaticNode::Bool(false), tape)?,
            b'n' => i = word(b, i, b"null", StaticNode::Null, tape)?,
            _ => {
                let (n, next) = number(b, i)?;
                tape.push(Node::Static(n));
                i = next;
            }
        }
        // After a value: separators and closers up to the next value.
        loop {
            i = ws(b, i);
            let o = open.last_mut()?;
            let Open { at, len, object } = *o;
            match *b.get(i)? {
                b',' if len > 0 => {
                    o.len = len + 1;
                    i = ws(b, i + 1);
                    if object {
                        i = key(b, i, tape)?;
                    }
                    break;
                }
                b'}' if object => {
                    tape[at] = Node::Object {
                        len,
                        count: tape.len() - at - 1,
                    };
                    open.pop();
                    i += 1;
                    if open.is_empty() {
                        return (ws(b, i) == b.len()).then_some(());
                    }
                }
                b']' if !object => {
                    tape[at] = Node::Array {
                        len,
                        count: tape.len() - at - 1,
                    };
                    open.pop();
                    i += 1;
                }
                _ => return None,
            }
        }
    }
}

/// A scalar of a record as [`log_members`] found it: where it is in the record's bytes, not a
/// copy, so what holds it need not borrow them.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub(crate) enum Found {
    #[default]
    Absent,
    /// A string's text without its quotes, `bytes[start..end]`, checked as UTF-8.
    Str(usize, usize),
    Static(StaticNode),
}

impl Found {
    /// The node simd-json's tape would hold for it in `bytes`, the record it was found in.
    #[inline]
    pub(crate) fn node(self, bytes: &[u8]) -> Option<Node<'_>> {
        match self {
            Self::Absent => None,
            // SAFETY: `string` checked these bytes as UTF-8 (or as ASCII) when it found them,
            // in the same record.
            Self::Str(s, e) => Some(Node::String(unsafe {
                std::str::from_utf8_unchecked(&bytes[s..e])
            })),
            Self::Static(n) => Some(Node::Static(n)),
        }
    }
}

/// What [`log_members`] found in a log record.
#[derive(Default)]
pub(crate) struct LogMembers {
    /// The scalar members the caller knows, by the index its `known` gave their key.
    pub(crate) known: [Found; KNOWN],
    /// Per promoted field, its value among `additional_data`'s members.
    pub(crate) promoted: Vec<Found>,
    /// `additional_data`'s other members: runs of adjacent ones, each from its first key's
    /// quote to its last value's end (the separators between them as written), in order.
    pub(crate) runs: Vec<(usize, usize)>,
    /// Per member (by [`Member::slot`], `0` for the record's start), the key that followed it
    /// when last read as a string.
    follows: [Option<KeyText>; KNOWN + 2],
    /// Set when the record read last was declined for its shape, not for its syntax.
    other_shape: bool,
    /// The containers open inside a member being skipped ([`skip`]).
    nested: Vec<bool>,
}

/// Why [`log_members`] declined a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decline {
    /// Not of the shape it reads (a key it does not know, an object where a scalar belongs):
    /// the general reader of plain records may still take it.
    Shape,
    /// Not plain (an escape, a number beyond its reach, invalid JSON): that reader would
    /// decline it too.
    Syntax,
}

impl LogMembers {
    /// `found`, noting a decline (`None`) as one for the record's shape.
    #[cold]
    fn shape<T>(&mut self, found: Option<T>) -> Option<T> {
        self.other_shape |= found.is_none();
        found
    }

    /// [`scalar`], noting an object or array as a decline for the record's shape.
    #[inline(always)]
    fn scalar(&mut self, b: &[u8], i: usize) -> Option<(Found, usize)> {
        let found = scalar(b, i);
        if found.is_none() && matches!(b.get(i), Some(b'{' | b'[')) {
            self.other_shape = true;
        }
        found
    }

    /// For records with `promoted` fields promoted out of `additional_data`.
    pub(crate) fn new(promoted: usize) -> Self {
        Self {
            promoted: vec![Found::Absent; promoted],
            ..Self::default()
        }
    }
}

/// How many scalar members [`LogMembers`] holds.
pub(crate) const KNOWN: usize = 8;

/// How [`log_members`] files a top-level key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Member {
    /// A scalar field, at this index of [`LogMembers::known`].
    Known(usize),
    /// `additional_data`: an object whose promoted members are read and the rest kept as runs.
    AdditionalData,
}

/// Reads a log record of the common shape straight from its bytes, without a tape: an object
/// whose every key `member` files, its scalars where `member` says, `additional_data` (once)
/// an object or null, whose members `promoted` may name (the others any JSON value, kept as
/// byte runs). Its strings, numbers and nesting are the ones [`Scanner::object`] reads.
/// Anything else it declines, saying why: the caller then reads the record the general way.
/// `out` is reset first.
pub(crate) fn log_members(
    b: &[u8],
    max_depth: usize,
    member: impl Fn(&[u8]) -> Option<Member>,
    promoted: impl Fn(&[u8]) -> Option<usize>,
    out: &mut LogMembers,
) -> Result<(), Decline> {
    out.other_shape = false;
    match members(b, max_depth, member, promoted, out) {
        Some(()) => Ok(()),
        None if out.other_shape => Err(Decline::Shape),
        None => Err(Decline::Syntax),
    }
}

/// [`log_members`]; a decline for the record's shape sets `out.other_shape`.
fn members(
    b: &[u8],
    max_depth: usize,
    member: impl Fn(&[u8]) -> Option<Member>,
    promoted: impl Fn(&[u8]) -> Option<usize>,
    out: &mut LogMembers,
) -> Option<()> {
    out.known = [Found::Absent; KNOWN];
    out.promoted.fill(Found::Absent);
    out.runs.clear();
    // Whether `additional_data` was a member (an object or null).
    let mut seen_additional_data = false;
    let mut i = ws(b, 0);
    if max_depth == 0 || b.get(i) != Some(&b'{') {
        return None;
    }
    i = ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        // `{}`: plain, and no record (the general reader says what it lacks).
        return out.shape(None);
    }
    // The member before this one ([`Member::slot`]), `0` before the first.
    let mut last = 0;
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        // A source writes its records' keys in much the same order: the key that followed
        // the last one in an earlier record is compared whole before the key is read as a
        // string.
        let (m, next) = match out.follows[last] {
            Some(k) if b.get(i..i + k.len).is_some_and(|t| key_eq(t, k.text())) => {
                (k.member, i + k.len)
            }
            _ => {
                let (key, next) = string(b, i)?;
                let Some(m) = member(key.as_bytes()) else {
                    return out.shape(None);
                };
                out.follows[last] = KeyText::new(&b[i..next], m);
                (m, next)
            }
        };
        last = m.slot();
        i = colon(b, next)?;
        match m {
            Member::Known(k) => {
                // Of a key written twice the last counts, as on the tape.
                let (v, next) = out.scalar(b, i)?;
                out.known[k] = v;
                i = next;
            }
            Member::AdditionalData => {
                if seen_additional_data {
                    return out.shape(None);
                }
                seen_additional_data = true;
                i = match b.get(i)? {
                    b'{' if max_depth > 1 => additional_data(b, i, max_depth, &promoted, out)?,
                    b'n' => literal(b, i, b"null")?,
                    // A string, a number: the general reader says it is the wrong type.
                    _ => return out.shape(None),
                };
            }
        }
        i = ws(b, i);
        match *b.get(i)? {
            b',' => i = ws(b, i + 1),
            b'}' => return (ws(b, i + 1) == b.len()).then_some(()),
            _ => return None,
        }
    }
}

impl Member {
    /// Its index in [`LogMembers::follows`]: from 1 on.
    fn slot(self) -> usize {
        match self {
            Self::Known(k) => 1 + k,
            Self::AdditionalData => 1 + KNOWN,
        }
    }
}

/// A top-level key as a record wrote it, quotes included, and what it is.
#[derive(Clone, Copy)]
pub(crate) struct KeyText {
    member: Member,
    len: usize,
    bytes: [u8; 32],
}

impl KeyText {
    /// `None` for a key too long to keep (it is then read as a string every time).
    fn new(text: &[u8], member: Member) -> Option<Self> {
        let mut bytes = [0; 32];
        bytes.get_mut(..text.len())?.copy_from_slice(text);
        Some(Self {
            member,
            len: text.len(),
            bytes,
        })
    }

    fn text(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// `additional_data`'s object at `at` (the second level): promoted members into
/// `out.promoted`, the rest as runs. The index after its `}`.
fn additional_data(
    b: &[u8],
    at: usize,
    max_depth: usize,
    promoted: impl Fn(&[u8]) -> Option<usize>,
    out: &mut LogMembers,
) -> Option<usize> {
    let mut i = ws(b, at + 1);
    if b.get(i) == Some(&b'}') {
        return Some(i + 1);
    }
    // The run being read: its first key's quote, and the end of its last value so far.
    let mut run: Option<(usize, usize)> = None;
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_at = i;
        let (key, next) = string(b, i)?;
        i = colon(b, next)?;
        match promoted(key.as_bytes()) {
            Some(p) => {
                // Of a key written twice the last counts, as on the tape.
                let (v, next) = out.scalar(b, i)?;
                out.promoted[p] = v;
                i = next;
                out.runs.extend(run.take());
            }
            None => {
                // Mostly a string: read here rather than through the general skip.
                i = match b.get(i) {
                    Some(b'"') => string(b, i)?.1,
                    _ => skip(b, i, 2, max_depth, &mut out.nested)?,
                };
                let start = run.map_or(key_at, |(s, _)| s);
                run = Some((start, i));
            }
        }
        i = ws(b, i);
        match *b.get(i)? {
            b',' => i = ws(b, i + 1),
            b'}' => {
                out.runs.extend(run);
                return Some(i + 1);
            }
            _ => return None,
        }
    }
}

/// The `:` after a key that ends before `i`; the index of the member's value.
#[inline(always)]
fn colon(b: &[u8], i: usize) -> Option<usize> {
    let i = ws(b, i);
    (b.get(i) == Some(&b':')).then(|| ws(b, i + 1))
}

/// A string, number, `true`, `false` or `null` at `i`, and the index after it.
#[inline(always)]
fn scalar(b: &[u8], i: usize) -> Option<(Found, usize)> {
    Some(match *b.get(i)? {
        b'"' => {
            let (s, next) = string(b, i)?;
            (Found::Str(i + 1, i + 1 + s.len()), next)
        }
        b't' => (
            Found::Static(StaticNode::Bool(true)),
            literal(b, i, b"true")?,
        ),
        b'f' => (
            Found::Static(StaticNode::Bool(false)),
            literal(b, i, b"false")?,
        ),
        b'n' => (Found::Static(StaticNode::Null), literal(b, i, b"null")?),
        b'{' | b'[' => return None,
        _ => {
            let (n, next) = number(b, i)?;
            (Found::Static(n), next)
        }
    })
}

/// The index after the value at `i`, inside `open` containers, checked as
/// [`Scanner::object`] checks it (nesting within `max_depth` included). No recursion, as
/// there: `nested` holds the containers opened inside the value (`true` for an object), so a
/// hostile record nested as deep as `max_depth` allows costs memory, not the stack.
fn skip(
    b: &[u8],
    mut i: usize,
    open: usize,
    max_depth: usize,
    nested: &mut Vec<bool>,
) -> Option<usize> {
    nested.clear();
    loop {
        // A value at `i`.
        match *b.get(i)? {
            c @ (b'{' | b'[') => {
                if open + nested.len() == max_depth {
                    return None;
                }
                let object = c == b'{';
                i = ws(b, i + 1);
                if b.get(i) == Some(if object { &b'}' } else { &b']' }) {
                    i += 1;
                } else {
                    nested.push(object);
                    if object {
                        i = member_key(b, i)?;
                    }
                    continue;
                }
            }
            _ => i = scalar(b, i)?.1,
        }
        // After a value: separators and closers up to the next value, or the end of it.
        loop {
            let Some(&object) = nested.last() else {
                return Some(i);
            };
            i = ws(b, i);
            match *b.get(i)? {
                b',' => {
                    i = ws(b, i + 1);
                    if object {
                        i = member_key(b, i)?;
                    }
                    break;
                }
                b'}' if object => {
                    nested.pop();
                    i += 1;
                }
                b']' if !object => {
                    nested.pop();
                    i += 1;
                }
                _ => return None,
            }
        }
    }
}

/// A member's key at `i` and its `:`: the index of its value.
#[inline(always)]
fn member_key(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    colon(b, string(b, i)?.1)
}

/// The index after `word` at `i`.
#[inline(always)]
fn literal(b: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    (b.get(i..i + word.len())? == word).then_some(i + word.len())
}

/// A member's key at `i` and the `:` after it; the index of its value.
#[inline(always)]
fn key<'a>(b: &'a [u8], i: usize, tape: &mut Vec<Node<'a>>) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let (key, next) = string(b, i)?;
    tape.push(Node::String(key));
    colon(b, next)
}

#[inline(always)]
fn ws(b: &[u8], mut i: usize) -> usize {
    // Loggers write compact JSON: most calls find no whitespace, in one comparison.
    if b.get(i).is_some_and(|&c| c > b' ') {
        return i;
    }
    while let Some(&c) = b.get(i)
        && matches!(c, b' ' | b'\t' | b'\n' | b'\r')
    {
        i += 1;
    }
    i
}

#[inline]
fn word<'a>(
    b: &[u8],
    i: usize,
    word: &[u8],
    node: StaticNode,
    tape: &mut Vec<Node<'a>>,
) -> Option<usize> {
    let next = literal(b, i, word)?;
    tape.push(Node::Static(node));
    Some(next)
}

/// The string whose opening quote is at `at`, without its quotes, and the index after its
/// closing quote; `None` for one with an escape or a control character (simd-json's to
/// unescape or reject), or not UTF-8.
#[inline(always)]
fn string(b: &[u8], at: usize) -> Option<(&str, usize)> {
    let start = at + 1;
    let mut i = start;
    let mut high = 0;
    loop {
        if let Some(chunk) = b.get(i..i + 16) {
            let chunk: &[u8; 16] = chunk.try_into().expect("16 bytes");
            let (stops, h) = stops16(chunk);
            if stops == 0 {
                high |= h;
                i += 16;
                continue;
            }
            // `stops` has 16 bits: `first` is below 16.
            let first = stops.trailing_zeros() as usize & 15;
            high |= h & ((1 << first) - 1);
            if chunk[first] != b'"' {
                return None;
            }
            i += first;
            break;
        }
        match *b.get(i)? {
            b'"' => break,
            b'\\' | 0..0x20 => return None,
            c => {
                high |= u32::from(c >> 7);
                i += 1;
            }
        }
    }
    let s = &b[start..i];
    let s = if high == 0 {
        // SAFETY: every byte of `s` was looked at (by 16 or on its own) and none has its high
        // bit set: `s` is ASCII.
        unsafe { std::str::from_utf8_unchecked(s) }
    } else {
        std::str::from_utf8(s).ok()?
    };
    Some((s, i + 1))
}

/// For 16 bytes: a bit per byte that stops a plain string run (`"`, `\`, a control
/// character), and a bit per byte with its high bit set (part of a multi-byte character).
/// Bit `k` is byte `k`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn stops16(chunk: &[u8; 16]) -> (u32, u32) {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of the x86_64 baseline, and the unaligned load reads exactly the
    // 16 bytes of `chunk`.
    unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // Unsigned v <= 0x1f: max(v, 0x1f) is 0x1f.
        let control = _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x1f)), _mm_set1_epi8(0x1f));
        let stops = _mm_or_si128(_mm_or_si128(quote, backslash), control);
        (_mm_movemask_epi8(stops) as u32, _mm_movemask_epi8(v) as u32)
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn stops16(chunk: &[u8; 16]) -> (u32, u32) {
    stops16_words(chunk)
}

/// [`stops16`] in plain 64-bit arithmetic, for targets without SSE2. A borrow can set bits
/// above the first stopping byte of a word, never below it, and the reader looks only at the
/// lowest stop, so that is the same answer.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn stops16_words(b: &[u8; 16]) -> (u32, u32) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    // The high bit of each byte, gathered into the low 8 bits.
    let gather = |m: u64| (((m & HIGHS) >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32;
    let half = |at: usize| {
        let w = u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let stops = zero(w ^ (ONES * u64::from(b'"')))
            | zero(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGHS);
        (gather(stops), gather(w))
    };
    let (s0, h0) = half(0);
    let (s1, h1) = half(8);
    // Spurious bits of the second word matter only if the first has no stop.
    let stops = if s0 != 0 { s0 } else { s1 << 8 };
    (stops, h0 | h1 << 8)
}

/// Powers of ten a double holds exactly: with a mantissa below 2^53 one multiplication or
/// division by them rounds once, so the result is the correctly rounded value (Clinger).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The number at `at`, by JSON's grammar, and the index after it, typed as simd-json types
/// it: an integer is `U64` (or `I64` when negative), anything with a fraction or an exponent
/// `F64`.
fn number(b: &[u8], at: usize) -> Option<(StaticNode, usize)> {
    let mut i = at;
    let negative = b[i] == b'-';
    if negative {
        i += 1;
    }
    let digit = |i: usize| b.get(i).filter(|c| c.is_ascii_digit()).copied();
    let int_start = i;
    let mut num: u64 = 0;
    match digit(i)? {
        b'0' => i += 1,
        _ => {
            while let Some(d) = digit(i) {
                num = num.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
                i += 1;
            }
        }
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    let mut float = false;
    if b.get(i) == Some(&b'.') {
        float = true;
        i += 1;
        let frac_start = i;
        while let Some(d) = digit(i) {
            num = num.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
            i += 1;
        }
        frac_digits = i - frac_start;
        if frac_digits == 0 {
            return None;
        }
    }
    let mut exp: i64 = 0;
    if let Some(b'e' | b'E') = b.get(i) {
        float = true;
        i += 1;
        let exp_negative = b.get(i) == Some(&b'-');
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        let exp_start = i;
        while let Some(d) = digit(i) {
            // Past four digits the value is 0 or infinite: simd-json's to settle.
            if i - exp_start >= 4 {
                return None;
            }
            exp = exp * 10 + i64::from(d - b'0');
            i += 1;
        }
        if i == exp_start {
            return None;
        }
        if exp_negative {
            exp = -exp;
        }
    }
    if !float {
        // 19 digits and more: simd-json's large-integer rules decide.
        let n = if negative {
            StaticNode::I64((num as i64).wrapping_neg())
        } else {
            StaticNode::U64(num)
        };
        return (int_digits <= 18).then_some((n, i));
    }
    let e10 = exp - frac_digits as i64;
    let value = if int_digits + frac_digits <= 19 && num < (1 << 53) && e10.abs() <= 22 {
        let m = num as f64;
        let p = POW10[e10.unsigned_abs() as usize];
        let v = if e10 < 0 { m / p } else { m * p };
        if negative { -v } else { v }
    } else {
        // SAFETY: every byte from `at` to `i` was matched above as a sign, digit, `.`,
        // `e`/`E` or exponent sign: ASCII.
        let text = unsafe { std::str::from_utf8_unchecked(&b[at..i]) };
        text.parse::<f64>().ok()?
    };
    value.is_finite().then_some((StaticNode::F64(value), i))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// simd-json's tape of `json` alone, as `(debug text)` per node, or `None` if it fails.
    fn simd(json: &str, depth: usize) -> Option<Vec<String>> {
        let mut bytes = json.as_bytes().to_vec();
        let mut buffers = simd_json::Buffers::with_max_depth(64, depth);
        let len = bytes.len();
        bytes.resize(len + simd_json::INPUT_PADDING, b' ');
        let mut tape = simd_json::Tape::null().reset();
        simd_json::fill_tape_padded(&mut bytes, len, &mut buffers, &mut tape).ok()?;
        Some(tape.0.iter().map(|n| format!("{n:?}")).collect())
    }

    fn ours(json: &str, depth: usize) -> Option<Vec<String>> {
        let mut tape = Vec::new();
        Scanner::default()
            .object(json.as_bytes(), depth, &mut tape)
            .then(|| tape.iter().map(|n| format!("{n:?}")).collect())
    }

    /// Whatever this reader takes, simd-json reads to the same nodes (floats to the same
    /// bits: `{:?}` prints the shortest text that round-trips).
    fn agrees(json: &str) -> bool {
        let (a, b) = (ours(json, 8), simd(json, 8));
        if let Some(a) = &a {
            assert_eq!(Some(a), b.as_ref(), "{json}");
        }
        a.is_some()
    }

    #[test]
    fn a_record_reads_to_the_nodes_simd_json_gives() {
        for json in [
            r#"{"timestamp":"2025-06-02T09:00:00.006Z","level":"INFO","service":"auth","additional_data":{"processing_time_ms":5.2,"status_code":200,"rows":[1,-2,3.5e2,true,false,null,{}],"x":[]}}"#,
            r#" { "a" : 1 , "b" : [ 1 , { "c" : "d" } ] }  "#,
            "{\"a\":\t\"caf\u{e9} \u{1F600} \u{4e2d}\u{6587} long enough to take words\"}\r\n",
            r#"{"a":0,"b":-0,"c":-0.0,"d":0.5,"e":1E5,"f":1e-5,"g":2.5E+3,"h":123456789012345678}"#,
            r#"{"n":-123456789012345678,"f":0.1,"g":1.7976931348623157e308,"h":5e-324,"i":123456789.123456789012}"#,
            r#"{}"#,
            r#"{"":""}"#,
            r#"{"a":{"b":{"c":{"d":{}}}}}"#,
        ] {
            assert!(agrees(json), "declined: {json}");
        }
    }

    #[test]
    fn declines_what_it_leaves_to_simd_json_and_everything_invalid() {
        for json in [
            // simd-json reads these; this reader leaves them to it.
            r#"{"a":"x\"y"}"#,
            r#"{"a":"\u00e9"}"#,
            r#"{"a":1234567890123456789}"#,
            r#"{"a":-9223372036854775808}"#,
            r#"{"a":1e400}"#,
            r#"{"a":1e00001}"#,
            // Not JSON at all.
            r#"{"a":1"#,
            r#"{"a":1}}"#,
            r#"{"a":1} {"b":2}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":-}"#,
            r#"{"a":1e}"#,
            r#"{"a":+1}"#,
            r#"{"a":tru}"#,
            r#"{"a":nul}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":1,}"#,
            r#"{,}"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            r#"{"a":'x'}"#,
            "{\"a\":\"tab\there\"}",
            "{\"a\":\"nul\u{0}\"}",
            "[1]",
            "\"x\"",
            "",
        ] {
            assert!(!agrees(json), "took: {json}");
        }
        // Not UTF-8: a lone continuation byte, a truncated sequence, an overlong encoding.
        for bytes in [
            &b"{\"a\":\"\x80\"}"[..],
            b"{\"a\":\"long enough for a word \xe2\x82\"}",
            b"{\"a\":\"\xc0\xaf\"}",
        ] {
            assert!(!Scanner::default().object(bytes, 8, &mut Vec::new()));
        }
    }

    #[test]
    fn the_word_stops_are_the_vector_stops() {
        let alphabet = [
            b'a', b'"', b'\\', 0, 0x1f, 0x20, 0x7f, 0x80, 0xc3, 0xff, b'Z',
        ];
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..100_000 {
            let chunk: Vec<u8> = (0..16)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    alphabet[(x % alphabet.len() as u64) as usize]
                })
                .collect();
            let chunk: [u8; 16] = chunk.try_into().expect("16 bytes");
            let (s, h) = stops16(&chunk);
            let (ws, wh) = stops16_words(&chunk);
            assert_eq!(h, wh, "{chunk:?}");
            assert_eq!(s.trailing_zeros(), ws.trailing_zeros(), "{chunk:?}");
        }
    }

    #[test]
    fn rests_after_declines_in_a_row_and_tries_again() {
        let mut scanner = Scanner::default();
        let mut tape = Vec::new();
        let (plain, escaped) = (&br#"{"a":"b"}"#[..], &br#"{"a":"\"b\""}"#[..]);
        // A plain record between declines resets the count.
        for _ in 0..DECLINES - 1 {
            assert!(!scanner.object(escaped, 8, &mut tape));
        }
        assert!(scanner.object(plain, 8, &mut tape));
        for _ in 0..DECLINES {
            assert!(!scanner.object(escaped, 8, &mut tape));
        }
        // Resting: even a plain record is left to simd-json, then reading resumes.
        for _ in 0..REST {
            assert!(!scanner.object(plain, 8, &mut tape));
        }
        assert!(scanner.object(plain, 8, &mut tape));
    }

    #[test]
    fn nests_as_deep_as_simd_json_and_no_deeper() {
        for depth in 1..6 {
            for levels in 1..8 {
                let json = format!(
                    "{{\"a\":{}1{}}}",
                    "[".repeat(levels - 1),
                    "]".repeat(levels - 1)
                );
                assert_eq!(
                    ours(&json, depth).is_some(),
                    simd(&json, depth).is_some(),
                    "{json} at depth {depth}"
                );
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]
        #[test]
        fn numbers_read_to_simd_json_s_values_bit_for_bit(
            n in "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?"
        ) {
            let taken = agrees(&format!("{{\"v\":{n}}}"));
            // What the reader promises to read itself: integers under 19 digits, and any
            // fraction or exponent whose value is a finite `f64`.
            let integer = !n.contains(['.', 'e', 'E']);
            let digits = n.trim_start_matches('-').len();
            let promised = if integer {
                digits <= 18
            } else {
                n.parse::<f64>().is_ok_and(f64::is_finite)
            };
            proptest::prop_assert_eq!(taken, promised, "{}", n);
        }
    }

    #[test]
    fn short_numbers_are_read_here_not_left_to_simd_json() {
        for n in [
            "0",
            "-7",
            "200",
            "5.2",
            "-0.25",
            "1e3",
            "123456.789",
            "9007199254740991.0",
        ] {
            assert!(agrees(&format!("{{\"v\":{n}}}")), "{n}");
        }
    }

    #[test]
    fn strings_of_every_length_and_position_of_a_stop_byte_agree() {
        for len in 0..40 {
            for at in 0..=len {
                for stop in ["\\n", "\u{1}", "\u{e9}", "\u{20ac}", "x"] {
                    let mut s: String = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"[..len].into();
                    s.insert_str(at.min(s.len()), stop);
                    let json = format!("{{\"k{s}\":\"{s}\",\"z\":1}}");
                    let taken = agrees(&json);
                    assert_eq!(taken, !stop.starts_with('\\') && stop != "\u{1}", "{json}");
                }
            }
        }
    }
}
