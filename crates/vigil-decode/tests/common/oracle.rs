//! A reference model of the log decoder written with serde_json: what one NDJSON line must
//! become. Shared by the property tests and the fuzz target.
#![allow(dead_code)]

use serde_json::{Map, Value};
use vigil_core::schema::{FieldType, PromotedField};
use vigil_core::time::{micros_from_epoch, parse_rfc3339_micros};

/// A promoted value as the decoder stores it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

/// The row a good line becomes.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub timestamp: i64,
    pub level: Option<String>,
    pub service: String,
    pub strings: [Option<String>; 5],
    pub promoted: Vec<Cell>,
    pub additional_data: Option<Value>,
    pub extra: Option<Value>,
}

/// What a line becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    Blank,
    /// A dead letter; `None` accepts either `invalid_json` or `invalid_utf8`.
    Dead(Option<&'static str>),
    Row(Box<Row>),
}

pub struct Limits {
    pub max_record_bytes: usize,
    pub max_depth: usize,
}

const STRINGS: [&str; 5] = [
    "trace_id",
    "span_id",
    "parent_span_id",
    "user_id",
    "message",
];
const FIXED: [&str; 9] = [
    "timestamp",
    "level",
    "service",
    "trace_id",
    "span_id",
    "parent_span_id",
    "user_id",
    "message",
    "additional_data",
];

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Other names of the known fields, tried in order when the seed's name is absent.
const ALIASES: [(&str, &[&str]); 8] = [
    ("timestamp", &["@timestamp", "time", "ts"]),
    ("level", &["log.level", "severity", "levelname"]),
    ("service", &["service.name"]),
    ("trace_id", &["trace.id", "traceId", "traceID"]),
    ("span_id", &["span.id", "spanId", "spanID"]),
    (
        "parent_span_id",
        &["parent.id", "parentSpanId", "parentSpanID", "parentId"],
    ),
    ("user_id", &["user.id", "userId"]),
    ("message", &["msg", "event"]),
];

/// The value at `path` in `o`: a member of that name, else a path through nested objects.
fn at_path<'a>(o: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    o.get(path).or_else(|| {
        path.match_indices('.')
            .find_map(|(i, _)| match o.get(&path[..i]) {
                Some(Value::Object(inner)) => at_path(inner, &path[i + 1..]),
                _ => None,
            })
    })
}

/// Whether an alias's value may stand for `field`.
fn fits(field: &str, v: &Value) -> bool {
    match (field, v) {
        ("service", Value::String(s)) => !s.is_empty(),
        (_, Value::String(_)) => true,
        ("timestamp", Value::Number(_)) => true,
        ("level", v) => as_i64(v).is_some(),
        _ => false,
    }
}

/// `o` with each known field the record lacks (or, for `service`, has as an object) taken
/// from its first fitting alias; the members taken whole are removed, so what is left over is
/// `extra`.
fn with_aliases(o: &Map<String, Value>) -> Map<String, Value> {
    let mut out = o.clone();
    for (field, names) in ALIASES {
        let lacks = match o.get(field) {
            None => true,
            Some(Value::Object(_)) => field == "service",
            Some(_) => false,
        };
        if !lacks {
            continue;
        }
        let found = names.iter().find_map(|&name| {
            // A member of that name is the alias, fitting or not; else a nested path.
            match o.get(name) {
                Some(v) => fits(field, v).then(|| (name, v.clone(), true)),
                None => at_path(o, name)
                    .filter(|v| fits(field, v))
                    .map(|v| (name, v.clone(), false)),
            }
        });
        if let Some((name, v, whole)) = found {
            if whole {
                out.remove(name);
            }
            if let Some(object) = out.insert(field.to_string(), v) {
                // The `service` object stays, under its name, in `extra`.
                out.insert(format!("\0{field}"), object);
            }
        }
    }
    out
}

fn level(s: &str) -> String {
    match s.to_ascii_uppercase().as_str() {
        "WARN" => "WARNING".into(),
        "FATAL" | "CRIT" | "EMERGENCY" | "EMERG" | "ALERT" | "PANIC" | "DPANIC" => {
            "CRITICAL".into()
        }
        "ERR" | "SEVERE" => "ERROR".into(),
        other => other.into(),
    }
}

/// pino's and bunyan's numeric levels, and syslog's severities.
fn level_number(n: i64) -> String {
    match n {
        10 => "TRACE".into(),
        20 | 7 => "DEBUG".into(),
        30 | 6 => "INFO".into(),
        5 => "NOTICE".into(),
        40 | 4 => "WARNING".into(),
        50 | 3 => "ERROR".into(),
        60 | 0..=2 => "CRITICAL".into(),
        other => other.to_string(),
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| v.is_f64() && f.fract() == 0.0 && f.abs() < 9.2e18)
            .map(|f| f as i64)
    })
}

fn timestamp(v: &Value) -> Result<i64, &'static str> {
    match v {
        Value::String(s) => parse_rfc3339_micros(s.as_bytes()).ok_or("invalid_timestamp"),
        Value::Number(n) => n.as_f64().and_then(micros_from_epoch).ok_or("wrong_type"),
        _ => Err("wrong_type"),
    }
}

/// Whether the decoder's dead-letter `code` for `line` is what [`expect`] allows (`want`).
/// Invalid JSON (`want` = `None`) is `invalid_json` or `invalid_utf8`, or `too_deep` when its
/// brackets nest beyond the limit: the decoder stops at the depth limit and never reads on to
/// the error serde_json reports.
pub fn acceptable(code: &str, want: Option<&str>, line: &[u8], limits: &Limits) -> bool {
    match want {
        Some(w) => code == w,
        None => {
            code == "invalid_json"
                || code == "invalid_utf8"
                || (code == "too_deep" && bracket_depth(line) > limits.max_depth)
        }
    }
}

/// The deepest nesting of `[` and `{` outside strings, closed or not.
fn bracket_depth(line: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0, false, false);
    for &b in line {
        match (in_string, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (true, false, _) => {}
            (false, _, b'"') => in_string = true,
            (false, _, b'[' | b'{') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (false, _, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The expected outcome of one line (without its newline).
pub fn expect(line: &[u8], promoted: &[PromotedField], limits: &Limits) -> Expected {
    if line.len() > limits.max_record_bytes {
        return Expected::Dead(Some("oversized"));
    }
    if line
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
    {
        return Expected::Blank;
    }
    let Ok(v) = serde_json::from_slice::<Value>(line) else {
        return Expected::Dead(None);
    };
    match expect_value(&v, promoted, limits) {
        Ok(row) => Expected::Row(Box::new(row)),
        Err(code) => Expected::Dead(Some(code)),
    }
}

fn expect_value(
    v: &Value,
    promoted: &[PromotedField],
    limits: &Limits,
) -> Result<Row, &'static str> {
    if depth(v) > limits.max_depth {
        return Err("too_deep");
    }
    let Value::Object(o) = v else {
        return Err("not_an_object");
    };
    let o = &with_aliases(o);
    let ts = match o.get("timestamp") {
        None | Some(Value::Null) => return Err("missing_field"),
        Some(t) => timestamp(t)?,
    };
    // Years 0001 to 9999 (what RFC 3339 can write); the tests set no clock-relative bounds.
    if !(-62_135_596_800_000_000..=253_402_300_799_999_999).contains(&ts) {
        return Err("timestamp_out_of_range");
    }
    let service = match o.get("service") {
        None | Some(Value::Null) => return Err("missing_field"),
        Some(Value::String(s)) if s.is_empty() => return Err("missing_field"),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("wrong_type"),
    };
    let opt_str = |k: &str| match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err("wrong_type"),
    };
    let level = match o.get("level") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(level(s)),
        Some(v) => Some(level_number(as_i64(v).ok_or("wrong_type")?)),
    };
    let mut strings: [Option<String>; 5] = Default::default();
    for (i, k) in STRINGS.iter().enumerate() {
        strings[i] = opt_str(k)?;
    }
    let ad: Option<&Map<String, Value>> = match o.get("additional_data") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => return Err("wrong_type"),
    };
    let mut cells = Vec::new();
    for p in promoted {
        let from = if p.top_level { Some(o) } else { ad };
        let cell = match from.and_then(|m| m.get(&p.key)) {
            None | Some(Value::Null) => Cell::Null,
            Some(v) => match p.field_type {
                FieldType::Int32 | FieldType::Int64 => {
                    let i = match as_i64(v) {
                        Some(i) => i,
                        None if v.is_number() => return Err("invalid_value"),
                        None => return Err("wrong_type"),
                    };
                    if p.field_type == FieldType::Int32 && i32::try_from(i).is_err() {
                        return Err("invalid_value");
                    }
                    Cell::Int(i)
                }
                FieldType::Float64 => Cell::Float(v.as_f64().ok_or("wrong_type")?),
                FieldType::Boolean => Cell::Bool(v.as_bool().ok_or("wrong_type")?),
                FieldType::Utf8 => Cell::Str(v.as_str().ok_or("wrong_type")?.to_string()),
                FieldType::Timestamp => Cell::Int(timestamp(v)?),
            },
        };
        cells.push(cell);
    }
    let rest: Map<String, Value> = ad
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !promoted.iter().any(|p| !p.top_level && &p.key == *k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let extra: Map<String, Value> = o
        .iter()
        .filter(|(k, _)| !FIXED.contains(&k.as_str()))
        .filter(|(k, _)| !promoted.iter().any(|p| p.top_level && &p.key == *k))
        .map(|(k, v)| (k.trim_start_matches('\0').to_string(), v.clone()))
        .collect();
    Ok(Row {
        timestamp: ts,
        level,
        service,
        strings,
        promoted: cells,
        additional_data: (!rest.is_empty()).then_some(Value::Object(rest)),
        extra: (!extra.is_empty()).then_some(Value::Object(extra)),
    })
}
