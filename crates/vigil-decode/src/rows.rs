//! The contract between the decoder and the per-kind column builders, and the field readers
//! both kinds share.

use arrow::array::RecordBatch;
use simd_json::Node;
use vigil_core::time::{micros_from_epoch_millis, parse_rfc3339_micros};

use crate::dead::{ReasonCode, Rejection};
use crate::tape::{as_f64, is_null, wrong_type};
use crate::verbatim::Raw;

/// Column builders for one record kind.
pub(crate) trait Rows {
    /// Validates the object at `tape[idx]`, parsed from `raw`, and appends it as one row. On
    /// `Err` nothing has been appended: every column still has the same length.
    fn append(&mut self, tape: &[Node<'_>], idx: usize, raw: Raw<'_>) -> Result<(), Rejection>;

    /// Rows appended since the last [`Rows::finish`].
    fn len(&self) -> usize;

    /// Takes the rows appended so far, one batch per service in service order, each in input
    /// order, and resets the builders.
    fn finish(&mut self) -> Vec<RecordBatch>;
}

/// Reads an event time: an RFC 3339 string or a number of epoch milliseconds.
pub(crate) fn read_timestamp(field: &str, node: &Node<'_>) -> Result<i64, Rejection> {
    match node {
        Node::String(s) => parse_rfc3339_micros(s.as_bytes()).ok_or_else(|| {
            let shown: String = s.chars().take(64).collect();
            Rejection::new(
                ReasonCode::InvalidTimestamp,
                format!("field `{field}` = {shown:?} is not an RFC 3339 timestamp"),
            )
        }),
        Node::Static(_) if !is_null(node) => as_f64(node)
            .and_then(micros_from_epoch_millis)
            .ok_or_else(|| wrong_type(field, "an RFC 3339 string or epoch milliseconds", node)),
        _ => Err(wrong_type(
            field,
            "an RFC 3339 string or epoch milliseconds",
            node,
        )),
    }
}

/// The required `timestamp` field. `idx == usize::MAX` means absent.
pub(crate) fn required_timestamp(tape: &[Node<'_>], idx: usize) -> Result<i64, Rejection> {
    match tape.get(idx) {
        None | Some(Node::Static(simd_json::StaticNode::Null)) => Err(Rejection::new(
            ReasonCode::MissingField,
            "required field `timestamp` is missing",
        )),
        Some(node) => read_timestamp("timestamp", node),
    }
}

/// A required, non-empty string field. `idx == usize::MAX` means absent.
pub(crate) fn required_str<'t>(
    tape: &[Node<'t>],
    idx: usize,
    field: &str,
) -> Result<&'t str, Rejection> {
    match tape.get(idx) {
        None | Some(Node::Static(simd_json::StaticNode::Null)) => Err(Rejection::new(
            ReasonCode::MissingField,
            format!("required field `{field}` is missing"),
        )),
        Some(Node::String("")) => Err(Rejection::new(
            ReasonCode::MissingField,
            format!("required field `{field}` is empty"),
        )),
        Some(Node::String(s)) => Ok(s),
        Some(other) => Err(wrong_type(field, "a string", other)),
    }
}

/// An optional string field: absent or null is `None`; any other non-string is an error.
pub(crate) fn optional_str<'t>(
    tape: &[Node<'t>],
    idx: usize,
    field: &str,
) -> Result<Option<&'t str>, Rejection> {
    match tape.get(idx) {
        None | Some(Node::Static(simd_json::StaticNode::Null)) => Ok(None),
        Some(Node::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong_type(field, "a string", other)),
    }
}
