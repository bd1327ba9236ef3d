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

    /// `(start, end)` of every member of an object, given its keys' tape indices in order and
    /// the exclusive end of the object's text. `false` if the bytes do not line up.
    pub(crate) fn spans(
        &self,
        tape: &[Node<'_>],
        keys: &[usize],
        end: usize,
        out: &mut Vec<(usize, usize)>,
    ) -> bool {
        out.clear();
        let mut starts = keys.iter().map(|&k| self.key_start(tape, k));
        let Some(mut start) = starts.next().flatten() else {
            return keys.is_empty();
        };
        for next in starts {
            let Some(next) = next else { return false };
            let Some(value_end) = self.value_end(next, b',') else {
                return false;
            };
            if value_end <= start {
                return false;
            }
            out.push((start, value_end));
            start = next;
        }
        match self.value_end(end, b'}') {
            Some(e) if e > start => {
                out.push((start, e));
                true
            }
            _ => false,
        }
    }

    /// Appends `{...}` holding the members `pick` (indices into `spans`), verbatim.
    pub(crate) fn write_object(
        &self,
        out: &mut String,
        spans: &[(usize, usize)],
        pick: &[usize],
    ) -> bool {
        let start = out.len();
        out.push('{');
        for (n, &i) in pick.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            let (s, e) = spans[i];
            match std::str::from_utf8(&self.bytes[s..e]) {
                Ok(text) => out.push_str(text),
                Err(_) => {
                    out.truncate(start);
                    return false;
                }
            }
        }
        out.push('}');
        true
    }
}
