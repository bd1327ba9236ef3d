//! Copying object members verbatim from a record's original bytes.
//!
//! What vigil keeps as JSON text (`additional_data` minus promoted fields, unknown top-level
//! fields) is cut from the input exactly as written: numbers keep their digits, strings their
//! escapes, and no value is re-serialized. The tape has no byte offsets, but simd-json leaves
//! every string in place in its parse buffer, so a key's `&str` tells where its member starts;
//! a member ends where the next one starts, minus the separator. If a pointer is not where it
//! should be (say a future simd-json copies strings elsewhere), the caller falls back to
//! writing the members from the tape.

use simd_json::Node;

/// A record's original bytes and the address its copy in the parse buffer starts at.
#[derive(Clone, Copy)]
pub(crate) struct Raw<'a> {
    bytes: &'a [u8],
    base: usize,
}

impl<'a> Raw<'a> {
    pub(crate) fn new(bytes: &'a [u8], base: usize) -> Self {
        Self { bytes, base }
    }

    /// Exclusive end of the record's text.
    pub(crate) fn end(&self) -> usize {
        self.bytes.len()
    }

    /// Offset of the opening quote of the key at `tape[key]`.
    fn key_start(&self, tape: &[Node<'_>], key: usize) -> Option<usize> {
        let Node::String(k) = tape[key] else {
            return None;
        };
        let off = (k.as_ptr() as usize).checked_sub(self.base)?;
        (off >= 1 && off <= self.bytes.len() && self.bytes[off - 1] == b'"').then(|| off - 1)
    }

    /// The end of a value followed by `closer` (`,` between members, `}` after the last) at
    /// or before `next`, whitespace allowed around it.
    fn value_end(&self, next: usize, closer: u8) -> Option<usize> {
        let ws = |b: u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
        let mut i = next;
        while i > 0 && ws(self.bytes[i - 1]) {
            i -= 1;
        }
        if i == 0 || self.bytes[i - 1] != closer {
            return None;
        }
        i -= 1;
        while i > 0 && ws(self.bytes[i - 1]) {
            i -= 1;
        }
        Some(i)
    }

    /// `(start, end)` of member `j` of an object whose members' keys are at tape indices
    /// `keys` and whose text ends (exclusive) at `end`. `None` if the bytes do not line up.
    fn member(
        &self,
        tape: &[Node<'_>],
        keys: &[usize],
        j: usize,
        end: usize,
    ) -> Option<(usize, usize)> {
        let start = self.key_start(tape, keys[j])?;
        let value_end = match keys.get(j + 1) {
            Some(&next) => self.value_end(self.key_start(tape, next)?, b',')?,
            None => self.value_end(end, b'}')?,
        };
        (value_end > start).then_some((start, value_end))
    }

    /// The exclusive end of the value of member `j` (an object or array member's value).
    pub(crate) fn value_end_of(
        &self,
        tape: &[Node<'_>],
        keys: &[usize],
        j: usize,
        end: usize,
    ) -> Option<usize> {
        self.member(tape, keys, j, end).map(|(_, e)| e)
    }

    /// Appends `{...}` holding the members at positions `pick` of an object (keys at tape
    /// indices `keys`, text ending at `end`), verbatim. `false`, with `out` unchanged, if the
    /// bytes do not line up.
    pub(crate) fn write_object(
        &self,
        out: &mut String,
        tape: &[Node<'_>],
        keys: &[usize],
        end: usize,
        pick: &[usize],
    ) -> bool {
        let mark = out.len();
        out.push('{');
        for (n, &j) in pick.iter().enumerate() {
            let Some((s, e)) = self.member(tape, keys, j, end) else {
                out.truncate(mark);
                return false;
            };
            if n > 0 {
                out.push(',');
            }
            // SAFETY: simd-json validated the record as UTF-8, and `s..e` starts at a quote
            // and ends just after a complete JSON value, both on character boundaries.
            out.push_str(unsafe { std::str::from_utf8_unchecked(&self.bytes[s..e]) });
        }
        out.push('}');
        true
    }
}
