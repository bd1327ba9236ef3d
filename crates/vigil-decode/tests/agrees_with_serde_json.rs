//! Property: on any input, the decoder produces exactly the rows and dead letters that a
//! serde_json-based reference model (tests/common/oracle.rs) says it should, however the input
//! is split across `decode` calls.

mod common;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use common::oracle::{Cell, Expected, Limits, Row, acceptable, expect};
use proptest::prelude::*;
use serde_json::Value;
use vigil_core::schema::{FieldType, LogSchema, PromotedField};
use vigil_decode::{Decoder, DecoderOptions};

fn promoted() -> Vec<PromotedField> {
    let f = PromotedField::nested;
    // Members of the record itself, one with the key of a field of additional_data.
    let top = |k: &str, column: &str, t| PromotedField {
        top_level: true,
        column: column.into(),
        ..f(k, t)
    };
    vec![
        top("latency", "latency", FieldType::Float64),
        top("region", "top_region", FieldType::Utf8),
        f("status_code", FieldType::Int32),
        f("processing_time_ms", FieldType::Float64),
        f("bytes", FieldType::Int64),
        f("cached", FieldType::Boolean),
        f("region", FieldType::Utf8),
        f("started", FieldType::Timestamp),
    ]
}

const LIMITS: Limits = Limits {
    max_record_bytes: 2048,
    max_depth: 6,
};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(8, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-z]{1,6}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn timestamp() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        6 => (1970u32..2100, 1u32..13, 1u32..29, 0u32..24, 0u32..60, 0u32..60, 0u32..1_000_000,
              prop_oneof![Just("Z".to_string()), Just("+02:00".to_string()), Just("-05:30".to_string())])
            .prop_map(|(y, mo, d, h, mi, s, f, z)| Some(Value::String(
                format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{f:06}{z}")))),
        2 => (0i64..4_000_000_000_000).prop_map(|ms| Some(Value::from(ms))),
        1 => (0.0f64..4e12).prop_map(|ms| Some(Value::from(ms))),
        1 => ".{0,30}".prop_map(|s| Some(Value::String(s))),
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        1 => json_value().prop_map(Some),
    ]
}

fn optional(s: impl Strategy<Value = Value> + 'static) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        6 => s.prop_map(Some),
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        1 => json_value().prop_map(Some),
    ]
}

fn additional_data() -> impl Strategy<Value = Option<Value>> {
    let fields = (
        optional(prop_oneof![
            (100i64..600).prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            Just(Value::from(200.0))
        ]),
        optional(
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
        ),
        optional(any::<i64>().prop_map(Value::from)),
        optional(any::<bool>().prop_map(Value::Bool)),
        optional(".{0,8}".prop_map(Value::String)),
        optional((0i64..4_000_000_000_000).prop_map(Value::from)),
        prop::collection::vec(("[a-z_]{1,8}", json_value()), 0..3),
    );
    let object = fields.prop_map(|(sc, pt, b, c, r, st, rest)| {
        let mut members: Vec<(String, Value)> = Vec::new();
        for (k, v) in [
            ("status_code", sc),
            ("processing_time_ms", pt),
            ("bytes", b),
            ("cached", c),
            ("region", r),
            ("started", st),
        ] {
            if let Some(v) = v {
                members.push((k.into(), v));
            }
        }
        members.extend(rest);
        members
    });
    prop_oneof![
        6 => object.prop_map(|m| Some(Value::String(object_text(&m)))),
        1 => Just(None),
        1 => json_value().prop_map(|v| Some(Value::String(v.to_string()))),
    ]
}

/// JSON text of an object from members in order, duplicates allowed.
fn object_text(members: &[(String, Value)]) -> String {
    let body: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), raw(v)))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// Values whose text is already JSON are marked by being wrapped in a string by the strategy
/// above; everything else is serialized.
fn raw(v: &Value) -> String {
    v.to_string()
}

fn record() -> impl Strategy<Value = String> {
    (
        timestamp(),
        optional(
            prop_oneof![
                Just("INFO"),
                Just("warn"),
                Just("Error"),
                Just("fatal"),
                Just("TRACE"),
                Just("debug")
            ]
            .prop_map(Value::from)
            .boxed()
            .prop_union(
                prop_oneof![Just(30), Just(50), Just(3), Just(99), Just(-1)]
                    .prop_map(Value::from)
                    .boxed(),
            ),
        ),
        optional(
            prop_oneof![
                Just("api-gateway".to_string()),
                Just(String::new()),
                ".{1,10}".boxed()
            ]
            .prop_map(Value::String),
        ),
        prop::collection::vec(optional(".{0,16}".prop_map(Value::String)), 5),
        additional_data(),
        prop::collection::vec(
            (
                prop_oneof![
                    3 => "[a-z]{1,8}".boxed(),
                    1 => Just("latency".to_string()).boxed(),
                    1 => Just("region".to_string()).boxed(),
                    // Aliases, twice in a record when the shape writes them too.
                    1 => prop_oneof![Just("ts"), Just("msg"), Just("log"), Just("severity")]
                        .prop_map(String::from)
                        .boxed()
                ],
                prop_oneof![
                    2 => json_value().boxed(),
                    1 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from).boxed(),
                    1 => ".{0,8}".prop_map(Value::String).boxed()
                ]
            ),
            0..3,
        ),
        any::<prop::sample::Index>(),
        0usize..4,
    )
        .prop_map(|(ts, level, service, strs, ad, extra, shuffle, shape)| {
            let mut members: Vec<(String, String)> = Vec::new();
            // The seed's names (0), or another logging library's: pino's (1), the Elastic
            // Common Schema's dotted keys (2) and nested objects (3).
            let renamed: &[(&str, &str)] = match shape {
                1 => &[("timestamp", "time"), ("message", "msg")],
                2 => &[
                    ("timestamp", "@timestamp"),
                    ("level", "log.level"),
                    ("service", "service.name"),
                    ("trace_id", "trace.id"),
                    ("span_id", "span.id"),
                    ("user_id", "user.id"),
                ],
                3 => &[("timestamp", "ts")],
                _ => &[],
            };
            let nested: &[(&str, &str, &str)] = match shape {
                3 => &[
                    ("service", "service", r#"{"name":{},"version":"1.2"}"#),
                    ("level", "log", r#"{"level":{}}"#),
                    ("trace_id", "trace", r#"{"id":{}}"#),
                ],
                _ => &[],
            };
            let mut put = |k: &str, v: Option<Value>| {
                let Some(v) = v else { return };
                let text = raw(&v);
                if let Some((_, alias)) = renamed.iter().find(|(f, _)| *f == k) {
                    members.push((alias.to_string(), text));
                } else if let Some((_, outer, inner)) = nested.iter().find(|(f, ..)| *f == k) {
                    members.push((outer.to_string(), inner.replace("{}", &text)));
                } else {
                    members.push((k.to_string(), text));
                }
            };
            put("timestamp", ts);
            put("level", level);
            put("service", service);
            for (k, v) in [
                "trace_id",
                "span_id",
                "parent_span_id",
                "user_id",
                "message",
            ]
            .iter()
            .zip(strs)
            {
                put(k, v);
            }
            for (k, v) in extra {
                put(&k, Some(v));
            }
            if let Some(Value::String(text)) = ad {
                members.push(("additional_data".into(), text));
            }
            let n = members.len();
            if n > 1 {
                members.swap(0, shuffle.index(n));
            }
            let body: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), v))
                .collect();
            format!("{{{}}}", body.join(","))
        })
}

fn line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        14 => record().prop_map(String::into_bytes),
        2 => (record(), any::<prop::sample::Index>()).prop_map(|(r, i)| {
            let mut b = r.into_bytes();
            b.truncate(i.index(b.len()));
            b
        }),
        1 => (record(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(r, i, x)| {
            let mut b = r.into_bytes();
            let at = i.index(b.len());
            b.insert(at, if x == b'\n' { b'x' } else { x });
            b
        }),
        1 => prop::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..40),
        1 => prop_oneof![Just(b"".to_vec()), Just(b"  \r".to_vec()), Just(b"[1,2]".to_vec()), Just(b"{}".to_vec()),
                          Just(b"{\"a\":1}{\"b\":2}".to_vec()), Just(b"{\"a\":[1".to_vec()), Just(b"2]}".to_vec())],
        1 => (1usize..10).prop_map(|d| {
            let mut s = String::from("{\"timestamp\":\"2024-01-01T00:00:00Z\",\"service\":\"s\",\"deep\":");
            s.push_str(&"[".repeat(d));
            s.push_str(&"]".repeat(d));
            s.push('}');
            s.into_bytes()
        }),
    ]
}

fn cell(batch: &RecordBatch, column: usize, row: usize, t: FieldType) -> Cell {
    let a = batch.column(column);
    if a.is_null(row) {
        return Cell::Null;
    }
    match t {
        FieldType::Int32 => Cell::Int(i64::from(a.as_primitive::<Int32Type>().value(row))),
        FieldType::Int64 => Cell::Int(a.as_primitive::<Int64Type>().value(row)),
        FieldType::Float64 => Cell::Float(a.as_primitive::<Float64Type>().value(row)),
        FieldType::Boolean => Cell::Bool(a.as_boolean().value(row)),
        FieldType::Utf8 => Cell::Str(a.as_string::<i32>().value(row).to_string()),
        FieldType::Timestamp => Cell::Int(a.as_primitive::<TimestampMicrosecondType>().value(row)),
    }
}

fn opt_string(batch: &RecordBatch, column: usize, row: usize) -> Option<String> {
    let a = batch.column(column).as_string::<i32>();
    (!a.is_null(row)).then(|| a.value(row).to_string())
}

fn rows_of(batch: &RecordBatch, promoted: &[PromotedField]) -> Vec<Row> {
    let n = promoted.len();
    (0..batch.num_rows())
        .map(|r| Row {
            timestamp: batch
                .column(0)
                .as_primitive::<TimestampMicrosecondType>()
                .value(r),
            level: opt_string(batch, 1, r),
            service: opt_string(batch, 2, r).unwrap(),
            strings: std::array::from_fn(|i| opt_string(batch, 3 + i, r)),
            promoted: promoted
                .iter()
                .enumerate()
                .map(|(i, p)| cell(batch, 8 + i, r, p.field_type))
                .collect(),
            additional_data: opt_string(batch, 8 + n, r).map(|s| serde_json::from_str(&s).unwrap()),
            extra: opt_string(batch, 9 + n, r).map(|s| serde_json::from_str(&s).unwrap()),
        })
        .collect()
}

fn check(lines: &[Vec<u8>], splits: &[usize], batch_size: usize) -> Result<(), TestCaseError> {
    let promoted = promoted();
    let mut input = Vec::new();
    for l in lines {
        input.extend_from_slice(l);
        input.push(b'\n');
    }
    let mut dec = Decoder::logs(
        LogSchema::new(promoted.clone()).unwrap(),
        DecoderOptions {
            batch_size,
            // Of the order of a batch's bytes, so either bound may end a batch.
            batch_bytes: batch_size * 200,
            max_record_bytes: LIMITS.max_record_bytes,
            max_depth: LIMITS.max_depth,
            dead_letter_raw_limit: 4096,
            max_future_skew: None,
            max_past: None,
            default_service: None,
            coerce: false,
        },
    );
    let (mut rows, mut dead) = (Vec::new(), Vec::new());
    let mut collect = |d: &mut Decoder| {
        if let Some(b) = d.flush() {
            for r in &b.records {
                rows.extend(rows_of(r, &promoted));
            }
            let dl = &b.dead_letters;
            for r in 0..dl.num_rows() {
                dead.push((
                    dl.column(4).as_primitive::<Int64Type>().value(r),
                    dl.column(5).as_string::<i32>().value(r).to_string(),
                    dl.column(7).as_binary::<i32>().value(r).to_vec(),
                ));
            }
        }
    };
    let mut rest: &[u8] = &input;
    let mut cuts = splits.iter().cycle();
    while !rest.is_empty() {
        let take = (*cuts.next().unwrap()).clamp(1, rest.len());
        let mut chunk = &rest[..take];
        while !chunk.is_empty() {
            let used = dec.decode(chunk);
            chunk = &chunk[used..];
            if !chunk.is_empty() {
                collect(&mut dec);
            }
        }
        rest = &rest[take..];
    }
    dec.end_of_input();
    collect(&mut dec);

    let mut want_rows = Vec::new();
    let mut want_dead = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        match expect(l, &promoted, &LIMITS) {
            Expected::Blank => {}
            Expected::Row(r) => want_rows.push(*r),
            Expected::Dead(code) => want_dead.push((i as i64 + 1, code, l.clone())),
        }
    }
    prop_assert_eq!(
        rows.len(),
        want_rows.len(),
        "rows: got {:?}\nwant {:?}\ndead {:?}",
        rows,
        want_rows,
        dead
    );
    // Batches hold one service each, so rows come out grouped by service; within a service
    // they keep input order.
    let by_service = |rows: &[Row]| {
        let mut m: std::collections::BTreeMap<String, Vec<Row>> = Default::default();
        for r in rows {
            m.entry(r.service.clone()).or_default().push(r.clone());
        }
        m
    };
    prop_assert_eq!(by_service(&rows), by_service(&want_rows));
    prop_assert_eq!(
        dead.len(),
        want_dead.len(),
        "dead letters: got {:?} want {:?}",
        dead,
        want_dead
    );
    for ((line, code, raw), (want_line, want_code, want_raw)) in dead.iter().zip(&want_dead) {
        prop_assert_eq!(line, want_line);
        prop_assert!(
            acceptable(code, *want_code, want_raw, &LIMITS),
            "{code} where {want_code:?} for line {:?}",
            String::from_utf8_lossy(want_raw)
        );
        let keep = want_raw.len().min(4096);
        prop_assert_eq!(&raw[..], &want_raw[..keep]);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn decoder_agrees_with_serde_json(
        lines in prop::collection::vec(line(), 1..40),
        splits in prop::collection::vec(1usize..400, 1..8),
        batch_size in prop_oneof![Just(3usize), Just(8192)],
    ) {
        check(&lines, &splits, batch_size)?;
    }
}

/// Found by the `decode` fuzz target: blank lines, then a line deeper than `max_depth` that
/// starts with whitespace and is never closed, fed one byte at a time.
#[test]
fn an_unclosed_deep_line_after_blank_lines_fed_byte_by_byte() {
    let lines = [b"".to_vec(), b"".to_vec(), b"\t[[[[[[[[[[[[".to_vec()];
    check(&lines, &[1], 16).unwrap();
    check(&lines, &[1], 8192).unwrap();
}
