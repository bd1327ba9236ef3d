//! Helpers over simd-json's flat tape: node spans, type names, typed reads, and writing a
//! subtree back out as JSON text.
//!
//! A tape is the pre-order list of a document's nodes; an object or array node records how
//! many nodes its subtree holds, so a field can be skipped in O(1) without visiting it.

use simd_json::{Node, StaticNode};

use crate::dead::{ReasonCode, Rejection};

/// Number of tape nodes taken by the value starting at `node`, itself included.
#[inline]
pub(crate) fn span(node: &Node<'_>) -> usize {
    match node {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

/// The JSON type name of a node, for error messages.
pub(crate) fn type_name(node: &Node<'_>) -> &'static str {
    match node {
        Node::String(_) => "string",
        Node::Object { .. } => "object",
        Node::Array { .. } => "array",
        Node::Static(StaticNode::Null) => "null",
        Node::Static(StaticNode::Bool(_)) => "boolean",
        Node::Static(_) => "number",
    }
}

#[inline]
pub(crate) fn is_null(node: &Node<'_>) -> bool {
    matches!(node, Node::Static(StaticNode::Null))
}

/// The value of a JSON number as `f64`.
#[inline]
pub(crate) fn as_f64(node: &Node<'_>) -> Option<f64> {
    match node {
        Node::Static(StaticNode::I64(v)) => Some(*v as f64),
        Node::Static(StaticNode::U64(v)) => Some(*v as f64),
        Node::Static(StaticNode::F64(v)) => Some(*v),
        _ => None,
    }
}

/// The value of a JSON number as `i64`: integers in range, and floats with no fraction.
#[inline]
pub(crate) fn as_i64(node: &Node<'_>) -> Option<i64> {
    match node {
        Node::Static(StaticNode::I64(v)) => Some(*v),
        Node::Static(StaticNode::U64(v)) => i64::try_from(*v).ok(),
        Node::Static(StaticNode::F64(v)) if v.fract() == 0.0 && v.abs() < 9.2e18 => Some(*v as i64),
        _ => None,
    }
}

/// Whether two short strings (object keys, service names) are equal: a `memcmp` call per
/// comparison cost more than the comparison, so up to 32 bytes are compared as two
/// overlapping words.
#[inline]
pub(crate) fn key_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0..8 => a.iter().zip(b).all(|(x, y)| x == y),
        8..=16 => {
            let w =
                |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().unwrap_or_default());
            w(a, 0) == w(b, 0) && w(a, n - 8) == w(b, n - 8)
        }
        17..=32 => {
            let w = |s: &[u8], i: usize| {
                u128::from_le_bytes(s[i..i + 16].try_into().unwrap_or_default())
            };
            w(a, 0) == w(b, 0) && w(a, n - 16) == w(b, n - 16)
        }
        _ => a == b,
    }
}

/// ``field `name` must be a <expected>, found <type>``.
pub(crate) fn wrong_type(field: &str, expected: &str, node: &Node<'_>) -> Rejection {
    Rejection::new(
        ReasonCode::WrongType,
        format!(
            "field `{field}` must be {expected}, found {}",
            type_name(node)
        ),
    )
}

/// Writes JSON text for the object members listed in `members` (tape indices of keys, each
/// followed by its value) as one object. Recursion is bounded: simd-json rejected anything
/// nested deeper than the decoder's limit.
pub(crate) fn write_members(
    out: &mut String,
    tape: &[Node<'_>],
    members: impl IntoIterator<Item = usize>,
) {
    out.push('{');
    for (i, key) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if let Node::String(k) = tape[key] {
            write_str(out, k);
        }
        out.push(':');
        write_value(out, tape, key + 1);
    }
    out.push('}');
}

/// Writes the value at `tape[idx]` as JSON text; returns the index after it.
pub(crate) fn write_value(out: &mut String, tape: &[Node<'_>], idx: usize) -> usize {
    match tape[idx] {
        Node::String(s) => {
            write_str(out, s);
            idx + 1
        }
        Node::Static(s) => {
            write_static(out, s);
            idx + 1
        }
        Node::Object { len, .. } => {
            out.push('{');
            let mut next = idx + 1;
            for i in 0..len {
                if i > 0 {
                    out.push(',');
                }
                if let Node::String(k) = tape[next] {
                    write_str(out, k);
                }
                out.push(':');
                next = write_value(out, tape, next + 1);
            }
            out.push('}');
            next
        }
        Node::Array { len, .. } => {
            out.push('[');
            let mut next = idx + 1;
            for i in 0..len {
                if i > 0 {
                    out.push(',');
                }
                next = write_value(out, tape, next);
            }
            out.push(']');
            next
        }
    }
}

/// Writes a scalar as JSON text. Floats keep a fraction or exponent so they read back as
/// floats.
pub(crate) fn write_static(out: &mut String, s: StaticNode) {
    match s {
        StaticNode::Null => out.push_str("null"),
        StaticNode::Bool(true) => out.push_str("true"),
        StaticNode::Bool(false) => out.push_str("false"),
        StaticNode::I64(v) => out.push_str(itoa::Buffer::new().format(v)),
        StaticNode::U64(v) => out.push_str(itoa::Buffer::new().format(v)),
        StaticNode::F64(v) if v.is_finite() => out.push_str(ryu::Buffer::new().format_finite(v)),
        // The parser never produces these; `null` is what serde_json writes for them too.
        StaticNode::F64(_) => out.push_str("null"),
    }
}

/// Writes `s` as a JSON string literal.
pub(crate) fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(json: &str) -> String {
        let mut bytes = json.as_bytes().to_vec();
        let tape = simd_json::to_tape(&mut bytes).unwrap();
        let mut out = String::new();
        write_value(&mut out, &tape.0, 0);
        out
    }

    #[test]
    fn key_eq_is_byte_equality_at_every_length() {
        let base: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        for n in 0..=40 {
            let a = &base[..n];
            assert!(key_eq(a, a), "{n}");
            assert!(!key_eq(a, &base[..n.saturating_sub(1)]) || n == 0, "{n}");
            for i in 0..n {
                let mut b = a.to_vec();
                b[i] ^= 1;
                assert!(!key_eq(a, &b), "length {n}, byte {i}");
            }
        }
    }

    #[test]
    fn writes_valid_json_that_reads_back_equal() {
        for json in [
            r#"{"a":1,"b":[true,null,-2.5e-3],"c":{"d":"x\"y\\z\n\u0001é"}}"#,
            r#"[1.0,18446744073709551615,-9223372036854775808,{}]"#,
            r#""""#,
        ] {
            let out = round_trip(json);
            let a: serde_json::Value = serde_json::from_str(json).unwrap();
            let b: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(a, b, "{out}");
        }
    }

    #[test]
    fn simd_json_depth_limit_counts_the_outermost_level() {
        // The decoder's `max_depth` rests on this: a limit of N accepts N levels, not N + 1.
        let parse = |json: &[u8], limit: usize| {
            let mut b = json.to_vec();
            let mut buffers = simd_json::Buffers::with_max_depth(64, limit);
            simd_json::to_tape_with_buffers(&mut b, &mut buffers).is_ok()
        };
        assert!(parse(b"[[[1]]]", 3));
        assert!(!parse(b"[[[[1]]]]", 3));
        assert!(parse(br#"{"a":{"b":[1]}}"#, 3));
        assert!(!parse(br#"{"a":{"b":[[1]]}}"#, 3));
    }
}
