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

    /// `(start, end)` of the members from `first` to `last` of an object whose text ends
    /// (exclusive) at `end`: from the first key's quote to the end of the last value, the
    /// separators between them as written. `None` if the bytes do not line up.
    fn cut(
        &self,
        tape: &[Node<'_>],
        first: Member,
        last: Member,
        end: usize,
    ) -> Option<(usize, usize)> {
        let start = self.key_start(tape, first.key)?;
        let value_end = match last.next {
            Member::LAST => self.value_end(end, b'}')?,
            next => self.value_end(self.key_start(tape, next)?, b',')?,
        };
        (value_end > start).then_some((start, value_end))
    }

    /// The exclusive end of member `m`'s value (an object or array member's value), in an
    /// object whose text ends at `end`.
    pub(crate) fn value_end_of(&self, tape: &[Node<'_>], m: Member, end: usize) -> Option<usize> {
        self.cut(tape, m, m, end).map(|(_, e)| e)
    }

    /// Appends `{...}` holding `members` (in object order) of an object whose text ends at
    /// `end`, verbatim: each run of adjacent members is one copy. `false`, with `out`
    /// unchanged, if the bytes do not line up.
    pub(crate) fn write_object(
        &self,
        out: &mut String,
        tape: &[Node<'_>],
        members: &[Member],
        end: usize,
    ) -> bool {
        let mut n = 0;
        let runs = std::iter::from_fn(|| {
            let first = *members.get(n)?;
            let mut m = n + 1;
            while m < members.len() && members[m].key == members[m - 1].next {
                m += 1;
            }
            n = m;
            Some(self.cut(tape, first, members[m - 1], end))
        });
        // SAFETY: the record was read (by simd-json or the scanner) as valid UTF-8 JSON.
        write_runs(
            out,
            unsafe { std::str::from_utf8_unchecked(self.bytes) },
            runs,
        )
    }
}

/// Appends `{...}` holding the runs `text[start..end]` of an object's members as written (a
/// run from its first key's quote to its last value's end, the separators inside it kept),
/// joined by commas. `false`, with `out` unchanged, at the first run that is `None` (the
/// bytes did not line up).
pub(crate) fn write_runs(
    out: &mut String,
    text: &str,
    runs: impl IntoIterator<Item = Option<(usize, usize)>>,
) -> bool {
    let mark = out.len();
    out.push('{');
    for (n, run) in runs.into_iter().enumerate() {
        let Some((start, end)) = run else {
            out.truncate(mark);
            return false;
        };
        if n > 0 {
            out.push(',');
        }
        out.push_str(&text[start..end]);
    }
    out.push('}');
    true
}

/// An object member on the tape: where its key is, and where the next member's key is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Member {
    /// Tape index of the key.
    pub(crate) key: usize,
    /// Tape index of the next member's key, or [`Member::LAST`].
    pub(crate) next: usize,
}

impl Member {
    /// `next` of an object's last member.
    pub(crate) const LAST: usize = usize::MAX;

    /// Walks the members of the object at `tape[obj]` (`len` of them).
    pub(crate) fn of_object<'a, 't>(
        tape: &'a [Node<'t>],
        obj: usize,
        len: usize,
    ) -> impl Iterator<Item = (Member, &'t str)> + use<'a, 't> {
        let mut key = obj + 1;
        (0..len).map(move |i| {
            let Node::String(k) = tape[key] else {
                unreachable!("object keys are strings on the tape")
            };
            let after = key + 1 + crate::tape::span(&tape[key + 1]);
            let m = Member {
                key,
                next: if i + 1 < len { after } else { Member::LAST },
            };
            key = after;
            (m, k)
        })
    }
}
