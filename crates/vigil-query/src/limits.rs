//! What one query may use. A query that would take more fails with a clear error; none can
//! exhaust the process: buffering operators (sorts, joins, aggregations) draw on a memory
//! pool, the query and the streaming of its results run under a deadline, and the string
//! functions that build one value from a count (`repeat`, `lpad`, `rpad`) are capped.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};
use datafusion::prelude::SessionContext;

/// The resources one query may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Memory for operators that buffer rows (sorts, joins, aggregations), in bytes. A query
    /// that needs more fails with "resources exhausted".
    pub memory: usize,
    /// Wall time for the whole query, planning and streaming its results included.
    pub timeout: Duration,
    /// The longest string `repeat`, `lpad` and `rpad` may build, in bytes.
    pub max_string_bytes: usize,
}

impl Default for QueryLimits {
    /// 1 GiB of operator memory, 5 minutes, strings of 64 MiB.
    fn default() -> Self {
        Self {
            memory: 1 << 30,
            timeout: Duration::from_secs(300),
            max_string_bytes: 64 << 20,
        }
    }
}

/// Replaces `repeat`, `lpad` and `rpad` in `ctx` with versions that refuse to build a string
/// longer than `max_bytes` (DataFusion's own stop at 2 GiB per array, enough to take a
/// process down).
pub(crate) fn guard_string_builders(ctx: &SessionContext, max_bytes: usize) -> Result<()> {
    for (name, growth) in [
        ("repeat", Growth::Repeat),
        ("lpad", Growth::Pad),
        ("rpad", Growth::Pad),
    ] {
        let inner = ctx.udf(name)?;
        ctx.register_udf(ScalarUDF::new_from_impl(Guarded {
            inner,
            growth,
            max_bytes,
        }));
    }
    Ok(())
}

/// How a function's output length follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(s, n)`: `len(s) * n` bytes.
    Repeat,
    /// `lpad(s, n[, fill])`: `n` characters, at most 4 bytes each.
    Pad,
}

/// A string function that checks its output length before building it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Guarded {
    inner: Arc<ScalarUDF>,
    growth: Growth,
    max_bytes: usize,
}

impl Guarded {
    /// The most bytes any row of this call could produce.
    fn largest_output(&self, args: &[ColumnarValue]) -> Option<u128> {
        let count = args.get(1).map_or(0, largest_int);
        Some(match self.growth {
            Growth::Repeat => largest_len(args.first()?) as u128 * count.max(0) as u128,
            Growth::Pad => count.max(0) as u128 * 4,
        })
    }
}

/// The largest integer of an argument (0 for nulls and other types).
fn largest_int(v: &ColumnarValue) -> i64 {
    match v {
        ColumnarValue::Scalar(s) => match s.cast_to(&DataType::Int64) {
            Ok(ScalarValue::Int64(Some(n))) => n,
            _ => 0,
        },
        ColumnarValue::Array(a) => arrow::compute::cast(a, &DataType::Int64)
            .ok()
            .and_then(|a| arrow::compute::max(a.as_primitive::<Int64Type>()))
            .unwrap_or(0),
    }
}

/// The longest string of an argument, in bytes.
fn largest_len(v: &ColumnarValue) -> usize {
    match v {
        ColumnarValue::Scalar(s) => match s {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)) => s.len(),
            _ => 0,
        },
        ColumnarValue::Array(a) => match arrow::compute::cast(a, &DataType::LargeUtf8) {
            Ok(a) => {
                let a = a.as_string::<i64>();
                (0..a.len()).map(|i| a.value(i).len()).max().unwrap_or(0)
            }
            Err(_) => 0,
        },
    }
}

impl ScalarUDFImpl for Guarded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs<'_>) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let Some(bytes) = self.largest_output(&args.args)
            && bytes > self.max_bytes as u128
        {
            return exec_err!(
                "{} would build a string of {bytes} bytes; queries may build strings of at most {} bytes",
                self.inner.name(),
                self.max_bytes
            );
        }
        self.inner.invoke_with_args(args)
    }
}
