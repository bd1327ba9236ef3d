//! The contract between the decoder and the per-kind column builders, and the field readers
//! both kinds share.

use arrow::array::RecordBatch;
use simd_json::Node;
use vigil_core::time::{format_rfc3339, micros_from_epoch, parse_rfc3339_micros};

use crate::dead::{ReasonCode, Rejection};
use crate::scan::Decline;
use crate::tape::{as_f64, is_null, wrong_type};
use crate::verbatim::Raw;

/// Tape index meaning "field absent" in the readers below.
pub(crate) const ABSENT: usize = usize::MAX;

/// Column builders for one record kind.
pub(crate) trait Rows {
    /// Validates the object at `tape[idx]`, parsed from `raw`, and appends it as one row; its
    /// event time must lie within `bounds`. On `Err` nothing has been appended: every column
    /// still has the same length.
    fn append(
        &mut self,
        tape: &[Node<'_>],
        idx: usize,
        raw: Raw<'_>,
        bounds: &TimeBounds,
    ) -> Result<(), Rejection>;

    /// Reads a record of the common shape straight from its bytes into a row, without a
    /// tape, if this kind has such a reader. Any record it does not take or that fails
    /// validation is declined, saying why, nothing appended: the caller then reads it with
    /// [`Rows::append`], which appends it or says why not.
    fn direct(
        &mut self,
        _bytes: &[u8],
        _max_depth: usize,
        _bounds: &TimeBounds,
    ) -> Result<(), Decline> {
        Err(Decline::Shape)
    }

    /// Rows appended since the last [`Rows::finish`].
    fn len(&self) -> usize;

    /// Rows that shared the overflow group because their batch had too many services.
    fn overflowed(&self) -> u64;

    /// Takes the rows appended so far, one batch per service in service order, each in input
    /// order, and resets the builders.
    fn finish(&mut self) -> Vec<RecordBatch>;

    /// Writes only the columns named (and those every batch needs); the others are all null.
    /// Records are validated as before. Kinds without the option write every column.
    fn keep_only(&mut self, _columns: &[&str]) {}
}

/// Reads an event time: an RFC 3339 string, or a number of epoch seconds or milliseconds
/// (see [`micros_from_epoch`]).
pub(crate) fn read_timestamp(field: &str, node: &Node<'_>) -> Result<i64, Rejection> {
    match node {
        Node::String(s) => parse_rfc3339_micros(s.as_bytes()).ok_or_else(|| {
            let shown: String = s.chars().take(64).collect();
            Rejection::new(
                ReasonCode::InvalidTimestamp,
                format!("field `{field}` = {shown:?} is not an RFC 3339 timestamp"),
            )
        }),
        Node::Static(_) if !is_null(node) => {
            as_f64(node).and_then(micros_from_epoch).ok_or_else(|| {
                wrong_type(
                    field,
                    "an RFC 3339 string or epoch seconds or milliseconds",
                    node,
                )
            })
        }
        _ => Err(wrong_type(
            field,
            "an RFC 3339 string or epoch seconds or milliseconds",
            node,
        )),
    }
}

/// The event times a record may have. Outside them it is a dead letter
/// (`timestamp_out_of_range`): one implausible clock must not move detection's watermark,
/// nor make a date partition years away, nor a time RFC 3339 cannot write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeBounds {
    /// Earliest accepted, µs.
    pub(crate) min: i64,
    /// Latest accepted, µs.
    pub(crate) max: i64,
}

/// 0001-01-01T00:00:00Z: RFC 3339 has four-digit years.
const EARLIEST: i64 = -62_135_596_800_000_000;
/// 9999-12-31T23:59:59.999999Z.
const LATEST: i64 = 253_402_300_799_999_999;

impl TimeBounds {
    /// The bounds at wall-clock time `now` (µs): no later than `now + max_future_skew`, no
    /// earlier than `now - max_past`, and always within years 0001–9999.
    pub(crate) fn at(now: i64, max_future_skew: Option<i64>, max_past: Option<i64>) -> Self {
        Self {
            min: max_past.map_or(EARLIEST, |p| now.saturating_sub(p).max(EARLIEST)),
            max: max_future_skew.map_or(LATEST, |s| now.saturating_add(s).min(LATEST)),
        }
    }

    /// The bounds now, under `opts`' skew and age limits.
    pub(crate) fn now(opts: &crate::DecoderOptions) -> Self {
        let limit = |d: Option<std::time::Duration>| d.map(vigil_core::time::micros);
        Self::at(
            vigil_core::time::now_micros(),
            limit(opts.max_future_skew),
            limit(opts.max_past),
        )
    }

    /// `micros`, the value of `field`, if within the bounds.
    #[inline]
    pub(crate) fn check(&self, field: &str, micros: i64) -> Result<i64, Rejection> {
        if (self.min..=self.max).contains(&micros) {
            Ok(micros)
        } else {
            Err(self.out_of_range(field, micros))
        }
    }

    #[cold]
    fn out_of_range(&self, field: &str, micros: i64) -> Rejection {
        let reason = if !(EARLIEST..=LATEST).contains(&micros) {
            format!(
                "`{field}` ({micros} µs since 1970) is outside years 0001 to 9999, the times \
                 RFC 3339 can write"
            )
        } else if micros > self.max {
            format!(
                "`{field}` {} is later than {}, the latest plausible time (the clock plus \
                 `decode.max_future_skew`)",
                format_rfc3339(micros),
                format_rfc3339(self.max)
            )
        } else {
            format!(
                "`{field}` {} is earlier than {}, the earliest accepted time (the clock less \
                 `decode.max_past`)",
                format_rfc3339(micros),
                format_rfc3339(self.min)
            )
        };
        Rejection::new(ReasonCode::TimestampOutOfRange, reason)
    }
}

/// The required event time, within `bounds`, read from the member named `field` (`timestamp`,
/// or the alias it was found under). `idx == ABSENT` means absent.
pub(crate) fn required_timestamp(
    tape: &[Node<'_>],
    idx: usize,
    field: &str,
    bounds: &TimeBounds,
) -> Result<i64, Rejection> {
    match tape.get(idx) {
        // The usual case first, without the general reader's error paths.
        Some(Node::String(s)) if let Some(micros) = parse_rfc3339_micros(s.as_bytes()) => {
            bounds.check(field, micros)
        }
        None | Some(Node::Static(simd_json::StaticNode::Null)) => Err(Rejection::new(
            ReasonCode::MissingField,
            "required field `timestamp` is missing",
        )),
        Some(node) => bounds.check(field, read_timestamp(field, node)?),
    }
}

/// A required, non-empty string field. `idx == ABSENT` means absent.
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

/// The required `service`, or `default` (`decode.default_service`) for a record that has
/// none (absent or null). `idx == ABSENT` means absent.
#[inline]
pub(crate) fn required_service<'a>(
    tape: &[Node<'a>],
    idx: usize,
    default: Option<&'a str>,
) -> Result<&'a str, Rejection> {
    match (tape.get(idx), default) {
        (None | Some(Node::Static(simd_json::StaticNode::Null)), Some(d)) => Ok(d),
        _ => required_str(tape, idx, "service"),
    }
}

/// A number written as a string (`decode.coerce`), read as JSON reads it unquoted: a finite
/// one.
pub(crate) fn number_text(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// ``field `name` = "…" cannot be read as <what>``: a string `decode.coerce` found no value in.
#[cold]
pub(crate) fn unreadable(field: &str, s: &str, what: &str) -> Rejection {
    let shown: String = s.chars().take(32).collect();
    Rejection::new(
        ReasonCode::InvalidValue,
        format!("field `{field}` = {shown:?} cannot be read as {what}"),
    )
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
