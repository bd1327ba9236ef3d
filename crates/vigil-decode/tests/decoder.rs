//! Behaviour of the decoder on hand-written inputs.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use vigil_core::schema::{FieldType, LogSchema, PromotedField};
use vigil_decode::{DecodedBatch, Decoder, DecoderOptions};

const SEED_LINE: &str = r#"{"timestamp": "2023-07-15T14:22:33.456Z", "level": "INFO", "service": "deal-analysis-service", "trace_id": "4f8b3a2c1d0e9f8a7b6c5d4e", "span_id": "1a2b3c4d5e6f7g8h", "user_id": "anonymized-if-applicable", "message": "Deal analysis completed successfully", "additional_data": {"deal_id": "deal-123", "processing_time_ms": 350, "ai_model_used": "gpt-4"}}"#;

fn schema() -> LogSchema {
    let f = PromotedField::nested;
    LogSchema::new(vec![
        f("status_code", FieldType::Int32),
        f("processing_time_ms", FieldType::Float64),
    ])
    .unwrap()
}

fn decode_all(dec: &mut Decoder, input: &[u8], chunk: usize) -> Vec<DecodedBatch> {
    let mut out = Vec::new();
    for piece in input.chunks(chunk) {
        dec.decode_all(piece, |b| out.push(b));
    }
    dec.end_of_input();
    out.extend(dec.flush());
    out
}

fn concat(batches: &[DecodedBatch]) -> (RecordBatch, RecordBatch) {
    let r: Vec<RecordBatch> = batches.iter().flat_map(|b| b.records.clone()).collect();
    (
        arrow::compute::concat_batches(&r[0].schema(), &r).unwrap(),
        dead_letters(batches),
    )
}

/// The dead letters of every batch, in one (for inputs without a good record too).
fn dead_letters(batches: &[DecodedBatch]) -> RecordBatch {
    let d: Vec<RecordBatch> = batches.iter().map(|b| b.dead_letters.clone()).collect();
    arrow::compute::concat_batches(&d[0].schema(), &d).unwrap()
}

fn col<'a>(b: &'a RecordBatch, name: &str) -> &'a dyn Array {
    b.column_by_name(name).unwrap().as_ref()
}

/// The value at `row` of a primitive column.
fn value<T: arrow::datatypes::ArrowPrimitiveType>(
    b: &RecordBatch,
    name: &str,
    row: usize,
) -> T::Native {
    col(b, name).as_primitive::<T>().value(row)
}

/// The non-null values of a string column.
fn texts<'a>(b: &'a RecordBatch, name: &str) -> Vec<&'a str> {
    col(b, name).as_string::<i32>().iter().flatten().collect()
}

#[test]
fn decodes_the_seed_example() {
    let mut dec = Decoder::logs(schema(), DecoderOptions::default());
    let (rows, dead) = concat(&decode_all(&mut dec, SEED_LINE.as_bytes(), 1 << 20));
    assert_eq!((rows.num_rows(), dead.num_rows()), (1, 0));
    let ts = value::<TimestampMicrosecondType>(&rows, "timestamp", 0);
    assert_eq!(
        vigil_core::time::format_rfc3339(ts),
        "2023-07-15T14:22:33.456Z"
    );
    assert_eq!(
        col(&rows, "service").as_string::<i32>().value(0),
        "deal-analysis-service"
    );
    assert_eq!(col(&rows, "level").as_string::<i32>().value(0), "INFO");
    assert_eq!(value::<Float64Type>(&rows, "processing_time_ms", 0), 350.0);
    assert!(col(&rows, "status_code").is_null(0));
    assert!(col(&rows, "parent_span_id").is_null(0));
    let rest: serde_json::Value =
        serde_json::from_str(col(&rows, "additional_data").as_string::<i32>().value(0)).unwrap();
    assert_eq!(
        rest,
        serde_json::json!({"deal_id": "deal-123", "ai_model_used": "gpt-4"})
    );
    assert!(col(&rows, "extra").is_null(0));
    let date = col(&rows, "date")
        .as_primitive::<arrow::datatypes::Date32Type>()
        .value(0);
    assert_eq!(vigil_core::time::format_date(date), "2023-07-15");
}

#[test]
fn normalises_levels_and_keeps_unknown_fields() {
    let input = concat_lines(&[
        r#"{"timestamp":1689430953456,"level":"warn","service":"a","host":"h1","additional_data":{"status_code":503}}"#,
        r#"{"timestamp":"2023-07-15T14:22:33+02:00","level":"fatal","service":"a"}"#,
        r#"{"timestamp":"2023-07-15T14:22:33Z","level":"notice","service":"a"}"#,
    ]);
    let mut dec = Decoder::logs(schema(), DecoderOptions::default());
    let (rows, dead) = concat(&decode_all(&mut dec, &input, 7));
    assert_eq!((rows.num_rows(), dead.num_rows()), (3, 0));
    let levels: Vec<_> = texts(&rows, "level");
    assert_eq!(levels, ["WARNING", "CRITICAL", "NOTICE"]);
    assert_eq!(
        col(&rows, "extra").as_string::<i32>().value(0),
        r#"{"host":"h1"}"#
    );
    assert_eq!(value::<Int32Type>(&rows, "status_code", 0), 503);
    assert_eq!(
        value::<TimestampMicrosecondType>(&rows, "timestamp", 0),
        1_689_430_953_456_000
    );
}

#[test]
fn records_of_other_logging_libraries_are_read_under_their_names() {
    // pino, bunyan, zap, logrus, the Elastic Common Schema (dotted keys, then nested objects),
    // Google Cloud's structured logging, Python's logging: each as its library writes it.
    let input = concat_lines(&[
        r#"{"level":30,"time":1689430953456,"pid":7,"hostname":"h","service":"pino","msg":"hello"}"#,
        r#"{"name":"app","level":50,"time":"2023-07-15T14:22:33.456Z","service":"bunyan","msg":"boom","v":0}"#,
        r#"{"level":"error","ts":1689430953.456,"caller":"main.go:12","service":"zap","msg":"failed"}"#,
        r#"{"level":"warning","msg":"slow","time":"2023-07-15T16:22:33.456+02:00","service":"logrus"}"#,
        r#"{"@timestamp":"2023-07-15T14:22:33.456Z","log.level":"ERROR","message":"m","service.name":"ecs","trace.id":"t1","span.id":"s1","parent.id":"p1","user.id":"u1"}"#,
        r#"{"@timestamp":"2023-07-15T14:22:33.456Z","log":{"level":"info","logger":"x"},"service":{"name":"ecs-nested","version":"1.2"},"trace":{"id":"t2"},"message":"n"}"#,
        r#"{"timestamp":"2023-07-15T14:22:33.456Z","severity":"EMERGENCY","service":"gcp","message":"down","traceId":"t3","spanId":"s3"}"#,
        r#"{"timestamp":"2023-07-15T14:22:33.456Z","levelname":"CRITICAL","service":"python","event":"started"}"#,
    ]);
    let mut dec = Decoder::logs(schema(), DecoderOptions::default());
    let (rows, dead) = concat(&decode_all(&mut dec, &input, 7));
    assert_eq!((rows.num_rows(), dead.num_rows()), (8, 0));
    let strings = |name: &str| -> Vec<Option<String>> {
        col(&rows, name)
            .as_string::<i32>()
            .iter()
            .map(|s| s.map(str::to_string))
            .collect()
    };
    let mut by_service: Vec<_> = strings("service")
        .into_iter()
        .zip(strings("level"))
        .zip(strings("message"))
        .zip(strings("trace_id"))
        .zip(strings("extra"))
        .zip(
            col(&rows, "timestamp")
                .as_primitive::<TimestampMicrosecondType>()
                .values()
                .iter(),
        )
        .map(|(((((s, l), m), t), e), &ts)| (s.unwrap(), l, m, t, e, ts))
        .collect();
    by_service.sort();
    let some = |s: &str| Some(s.to_string());
    let ts = 1_689_430_953_456_000;
    assert_eq!(
        by_service,
        [
            (
                "bunyan".into(),
                some("ERROR"),
                some("boom"),
                None,
                some(r#"{"name":"app","v":0}"#),
                ts
            ),
            ("ecs".into(), some("ERROR"), some("m"), some("t1"), None, ts),
            (
                "ecs-nested".into(),
                some("INFO"),
                some("n"),
                some("t2"),
                // The objects an alias was read from are kept whole.
                some(
                    r#"{"log":{"level":"info","logger":"x"},"service":{"name":"ecs-nested","version":"1.2"},"trace":{"id":"t2"}}"#
                ),
                ts
            ),
            (
                "gcp".into(),
                some("CRITICAL"),
                some("down"),
                some("t3"),
                None,
                ts
            ),
            (
                "logrus".into(),
                some("WARNING"),
                some("slow"),
                None,
                None,
                ts
            ),
            (
                "pino".into(),
                some("INFO"),
                some("hello"),
                None,
                some(r#"{"pid":7,"hostname":"h"}"#),
                ts
            ),
            (
                "python".into(),
                some("CRITICAL"),
                some("started"),
                None,
                None,
                ts
            ),
            (
                "zap".into(),
                some("ERROR"),
                some("failed"),
                None,
                some(r#"{"caller":"main.go:12"}"#),
                ts
            ),
        ]
    );
    let ecs = strings("service")
        .iter()
        .position(|s| s.as_deref() == Some("ecs"))
        .unwrap();
    let row = |name: &str| strings(name)[ecs].clone();
    assert_eq!(
        (row("span_id"), row("parent_span_id"), row("user_id")),
        (some("s1"), some("p1"), some("u1"))
    );
}

#[test]
fn the_seed_s_names_win_and_a_guessed_name_never_makes_a_dead_letter() {
    let input = concat_lines(&[
        // Both names: the seed's is the field, the other stays in `extra`.
        r#"{"timestamp":"2024-01-01T00:00:00Z","time":"12:00","service":"a","message":"m","msg":"other"}"#,
        // An alias of the wrong type is not taken: the record is read, the member kept.
        r#"{"timestamp":"2024-01-01T00:00:00Z","service":"b","event":{"kind":"x"},"severity":{"n":1}}"#,
        // A `service` object without a name is still the wrong type.
        r#"{"timestamp":"2024-01-01T00:00:00Z","service":{"version":"1"}}"#,
        // A time under an alias that is no time says which field it read.
        r#"{"time":"yesterday","service":"c"}"#,
        // Levels as numbers: pino's, syslog's, and one of neither kept as written.
        r#"{"timestamp":"2024-01-01T00:00:00Z","service":"d","level":99}"#,
        r#"{"timestamp":"2024-01-01T00:00:00Z","service":"d","level":4}"#,
        r#"{"timestamp":"2024-01-01T00:00:00Z","service":"d","level":2.5}"#,
        // Of a key written twice the last counts, as for the seed's own names.
        r#"{"ts":[],"ts":"2024-01-01T00:00:00Z","service":"e"}"#,
        r#"{"ts":"2024-01-01T00:00:00Z","ts":[],"service":"e"}"#,
    ]);
    let mut dec = Decoder::logs(schema(), DecoderOptions::default());
    let (rows, dead) = concat(&decode_all(&mut dec, &input, 7));
    assert_eq!((rows.num_rows(), dead.num_rows()), (5, 4));
    let s = |b: &RecordBatch, name: &str, i: usize| {
        let a = col(b, name).as_string::<i32>();
        a.is_valid(i).then(|| a.value(i).to_string())
    };
    assert_eq!(s(&rows, "message", 0).as_deref(), Some("m"));
    assert_eq!(
        s(&rows, "extra", 0).as_deref(),
        Some(r#"{"time":"12:00","msg":"other"}"#)
    );
    assert_eq!(s(&rows, "message", 1), None);
    assert_eq!(s(&rows, "level", 1), None);
    assert_eq!(
        s(&rows, "extra", 1).as_deref(),
        Some(r#"{"event":{"kind":"x"},"severity":{"n":1}}"#)
    );
    assert_eq!(s(&rows, "level", 2).as_deref(), Some("99"));
    assert_eq!(s(&rows, "level", 3).as_deref(), Some("WARNING"));
    let reasons: Vec<_> = (0..3).map(|i| s(&dead, "reason", i).unwrap()).collect();
    assert_eq!(
        reasons,
        [
            "field `service` must be a string, found object",
            r#"field `time` = "yesterday" is not an RFC 3339 timestamp"#,
            "field `level` must be a string or a level number, found number",
        ]
    );
    assert_eq!(
        s(&dead, "reason", 3).as_deref(),
        Some("required field `timestamp` is missing")
    );
    assert_eq!(s(&rows, "extra", 4), None);
}

#[test]
fn a_record_without_a_service_takes_the_default_one_if_set() {
    let input = concat_lines(&[
        r#"{"time":"2024-01-01T00:00:00Z","level":30,"msg":"a"}"#,
        r#"{"time":"2024-01-01T00:00:00Z","service":null,"msg":"b"}"#,
        r#"{"time":"2024-01-01T00:00:00Z","service":"billing","msg":"c"}"#,
        r#"{"time":"2024-01-01T00:00:00Z","service":"","msg":"d"}"#,
    ]);
    let opts = DecoderOptions {
        default_service: Some("checkout".into()),
        ..DecoderOptions::default()
    };
    let mut dec = Decoder::logs(schema(), opts.clone());
    let (rows, dead) = concat(&decode_all(&mut dec, &input, 7));
    assert_eq!((rows.num_rows(), dead.num_rows()), (3, 1));
    let services: Vec<_> = texts(&rows, "service");
    // Batches come one per service, in service order.
    assert_eq!(services, ["billing", "checkout", "checkout"]);
    // Without it, the records naming no service are dead letters, as before.
    let mut dec = Decoder::logs(schema(), DecoderOptions::default());
    let (rows, dead) = concat(&decode_all(&mut dec, &input, 7));
    assert_eq!((rows.num_rows(), dead.num_rows()), (1, 3));
    let metrics = concat_lines(&[r#"{"timestamp":"2024-01-01T00:00:00Z","name":"cpu","value":1}"#]);
    let mut dec = Decoder::metrics(opts);
    let (rows, dead) = concat(&decode_all(&mut dec, &metrics, 7));
    assert_eq!((rows.num_rows(), dead.num_rows()), (1, 0));
    assert_eq!(
        col(&rows, "service").as_string::<i32>().value(0),
        "checkout"
    );
}

#[test]
fn flat_records_promote_their_own_members() {
    // Most structured logs are flat: the fields a rule reads sit beside `message`.
    let top = |k: &str, t| PromotedField {
        top_level: true,
        ..PromotedField::nested(k, t)
    };
    let schema = LogSchema::new(vec![
        top("latency_ms", FieldType::Float64),
        top("status", FieldType::Int32),
        PromotedField::nested("status_code", FieldType::Int32),
    ])
    .unwrap();
    let input = concat_lines(&[
        r#"{"timestamp":"2024-01-01T00:00:00Z","service":"a","latency_ms":12.5,"status":503,"path":"/x","additional_data":{"status_code":200,"status":1}}"#,
        r#"{"timestamp":"2024-01-01T00:00:01Z","service":"a","status":"oops"}"#,
    ]);
    let mut dec = Decoder::logs(schema, DecoderOptions::default());
    let (rows, dead) = concat(&decode_all(&mut dec, &input, 7));
    assert_eq!((rows.num_rows(), dead.num_rows()), (1, 1));
    assert_eq!(value::<Float64Type>(&rows, "latency_ms", 0), 12.5);
    assert_eq!(value::<Int32Type>(&rows, "status", 0), 503);
    assert_eq!(value::<Int32Type>(&rows, "status_code", 0), 200);
    // The record's own `status` and additional_data's are two fields.
    assert_eq!(
        col(&rows, "additional_data").as_string::<i32>().value(0),
        r#"{"status":1}"#
    );
    assert_eq!(
        col(&rows, "extra").as_string::<i32>().value(0),
        r#"{"path":"/x"}"#
    );
    assert_eq!(
        texts(&dead, "reason")[0],
        "field `status` must be an integer, found string"
    );
}

#[test]
fn numbers_written_as_strings_are_read_with_coerce_and_dead_letters_without() {
    let input = concat_lines(&[
        r#"{"timestamp":"2024-01-01T00:00:00Z","service":"a","additional_data":{"status_code":"503","processing_time_ms":"12.5"}}"#,
        r#"{"timestamp":"2024-01-01T00:00:01Z","service":"a","additional_data":{"status_code":"abc"}}"#,
        r#"{"timestamp":"2024-01-01T00:00:02Z","service":"a","additional_data":{"status_code":"9999999999"}}"#,
        r#"{"timestamp":"2024-01-01T00:00:03Z","service":"a","additional_data":{"processing_time_ms":"NaN"}}"#,
    ]);
    let coerce = DecoderOptions {
        coerce: true,
        ..DecoderOptions::default()
    };
    let mut dec = Decoder::logs(schema(), coerce.clone());
    let (rows, dead) = concat(&decode_all(&mut dec, &input, 7));
    assert_eq!((rows.num_rows(), dead.num_rows()), (1, 3));
    assert_eq!(value::<Int32Type>(&rows, "status_code", 0), 503);
    assert_eq!(value::<Float64Type>(&rows, "processing_time_ms", 0), 12.5);
    assert_eq!(
        texts(&dead, "reason"),
        [
            r#"field `additional_data.status_code` = "abc" cannot be read as int32"#,
            "field `additional_data.status_code` = 9999999999 does not fit in int32",
            r#"field `additional_data.processing_time_ms` = "NaN" cannot be read as float64"#,
        ]
    );
    // Without it, as the data contract says: a wrong type.
    let mut dec = Decoder::logs(schema(), DecoderOptions::default());
    let batches = decode_all(&mut dec, &input, 7);
    assert_eq!(
        batches.iter().map(DecodedBatch::num_records).sum::<usize>(),
        0
    );
    let dead = dead_letters(&batches);
    assert_eq!(texts(&dead, "reason_code"), ["wrong_type"; 4]);
    // A metric's value alike.
    let metrics = concat_lines(&[
        r#"{"timestamp":"2024-01-01T00:00:00Z","name":"cpu","service":"a","value":"87.5"}"#,
        r#"{"timestamp":"2024-01-01T00:00:00Z","name":"cpu","service":"a","value":"high"}"#,
    ]);
    let mut dec = Decoder::metrics(coerce);
    let (rows, dead) = concat(&decode_all(&mut dec, &metrics, 7));
    assert_eq!(value::<Float64Type>(&rows, "value", 0), 87.5);
    assert_eq!(
        texts(&dead, "reason"),
        [r#"field `value` = "high" cannot be read as a number"#]
    );
}

#[test]
fn epoch_seconds_and_milliseconds_are_both_read() {
    // The same instant as `date +%s`, Python's `time.time()`, `Date.now()` and RFC 3339;
    // epoch microseconds are milliseconds past year 9999: a dead letter that says so.
    let input = concat_lines(&[
        r#"{"timestamp":1689430953,"service":"a"}"#,
        r#"{"timestamp":1689430953.456,"service":"a"}"#,
        r#"{"timestamp":1689430953456,"service":"a"}"#,
        r#"{"timestamp":"2023-07-15T14:22:33.456Z","service":"a"}"#,
        r#"{"timestamp":1689430953456000,"service":"a"}"#,
    ]);
    let mut dec = Decoder::logs(schema(), DecoderOptions::default());
    let (rows, dead) = concat(&decode_all(&mut dec, &input, 7));
    assert_eq!((rows.num_rows(), dead.num_rows()), (4, 1));
    let times: Vec<i64> = col(&rows, "timestamp")
        .as_primitive::<TimestampMicrosecondType>()
        .values()
        .to_vec();
    assert_eq!(
        times,
        [
            1_689_430_953_000_000,
            1_689_430_953_456_000,
            1_689_430_953_456_000,
            1_689_430_953_456_000
        ]
    );
    assert_eq!(texts(&dead, "reason_code")[0], "timestamp_out_of_range");
}

#[test]
fn a_json_array_or_a_second_value_on_a_line_is_said_plainly() {
    // A pretty-printed array of records: its brackets, and a record with the array's comma.
    // A record indented inside it is still one object on its line, and read.
    let input = concat_lines(&[
        "[",
        r#"  {"timestamp":"2024-01-01T00:00:00Z","service":"s","message":"a } in \" a string"},"#,
        r#"  {"timestamp":"2024-01-01T00:00:01Z","service":"s"}"#,
        "]",
        r#"{"timestamp":"2024-01-01T00:00:02Z","service":"s"}{"timestamp":"2024-01-01T00:00:03Z","service":"s"}"#,
        r#"{"timestamp":"2024-01-01T00:00:02Z","service":"s""#,
        r#"{"timestamp":"2024-01-01T00:00:02Z","service":tru},"#,
    ]);
    let mut dec = Decoder::logs(schema(), DecoderOptions::default());
    let (rows, dead) = concat(&decode_all(&mut dec, &input, 7));
    assert_eq!((rows.num_rows(), dead.num_rows()), (1, 6));
    let reasons: Vec<&str> = texts(&dead, "reason");
    assert!(
        reasons[0].starts_with(
            "invalid JSON: `[` of a JSON array; records are one JSON object per line ("
        ),
        "{reasons:?}"
    );
    assert_eq!(
        reasons[1],
        "invalid JSON: \",\" after the object, at character 83; records are one JSON object per line"
    );
    assert!(
        reasons[2].starts_with("invalid JSON: `]` of a JSON array"),
        "{reasons:?}"
    );
    assert_eq!(
        reasons[3],
        "invalid JSON: \"{\\\"timestamp\\\":\\\"20\" after the object, at character 50; records are one \
         JSON object per line"
    );
    // Not an object that ends, or one that is not JSON itself: simd-json's own reason.
    assert!(!reasons[4].contains("after the object"), "{reasons:?}");
    assert!(!reasons[5].contains("after the object"), "{reasons:?}");
    let codes = dead
        .column_by_name("reason_code")
        .unwrap()
        .as_string::<i32>();
    assert!(codes.iter().flatten().all(|c| c == "invalid_json"));
}

#[test]
fn a_pretty_printed_object_is_said_to_be_split_over_lines() {
    // As `jq .` and `json.dumps(indent=2)` write a record.
    let input = concat_lines(&[
        "{",
        r#"  "timestamp": "2024-01-01T00:00:00Z","#,
        r#"  "service": "a""#,
        "},",
        r#"{"timestamp":"2024-01-01T00:00:02Z","service":"s""#,
    ]);
    let mut dec = Decoder::logs(schema(), DecoderOptions::default());
    let batches = decode_all(&mut dec, &input, 7);
    assert_eq!(
        batches.iter().map(DecodedBatch::num_records).sum::<usize>(),
        0
    );
    let dead = dead_letters(&batches);
    assert_eq!(dead.num_rows(), 5);
    let reasons: Vec<&str> = texts(&dead, "reason");
    let split = "a record split over lines (pretty-printed JSON); records are one JSON object per \
                 line, as `jq -c` writes them (";
    for (reason, start) in reasons.iter().zip([
        "invalid JSON: `{` alone on its line: ",
        "invalid JSON: member \"timestamp\": outside an object: ",
        "invalid JSON: member \"service\": outside an object: ",
        "invalid JSON: `}` alone on its line: ",
    ]) {
        assert!(reason.starts_with(&format!("{start}{split}")), "{reason}");
    }
    // A line cut short is not taken for one.
    assert!(!reasons[4].contains("split over lines"), "{reasons:?}");
}

fn concat_lines(lines: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    for l in lines {
        v.extend_from_slice(l.as_bytes());
        v.push(b'\n');
    }
    v
}

#[test]
fn every_kind_of_bad_line_is_a_dead_letter_and_good_lines_survive() {
    let good = r#"{"timestamp":"2024-01-01T00:00:00Z","service":"s","message":"ok"}"#;
    let deep = format!(
        r#"{{"timestamp":"2024-01-01T00:00:00Z","service":"s","x":{}{}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    let huge = format!(
        r#"{{"timestamp":"2024-01-01T00:00:00Z","service":"s","message":"{}"}}"#,
        "x".repeat(5000)
    );
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{\"timestamp\":\"2024-01-01T00:00:00Z\",\"service\":".to_vec(), "invalid_json"),
        (b"not json at all".to_vec(), "invalid_json"),
        (b"{\"timestamp\":\"2024-01-01T00:00:00Z\",\"service\":\"\xff\xfe\"}".to_vec(), "invalid_utf8"),
        (b"[1,2,3]".to_vec(), "not_an_object"),
        (b"{\"service\":\"s\"}".to_vec(), "missing_field"),
        (b"{\"timestamp\":\"2024-01-01T00:00:00Z\"}".to_vec(), "missing_field"),
        (b"{\"timestamp\":\"2024-01-01T00:00:00Z\",\"service\":7}".to_vec(), "wrong_type"),
        (b"{\"timestamp\":\"yesterday\",\"service\":\"s\"}".to_vec(), "invalid_timestamp"),
        (b"{\"timestamp\":\"2024-01-01T00:00:00Z\",\"service\":\"s\",\"additional_data\":{\"status_code\":\"500\"}}".to_vec(), "wrong_type"),
        (b"{\"timestamp\":\"2024-01-01T00:00:00Z\",\"service\":\"s\",\"additional_data\":{\"status_code\":99999999999}}".to_vec(), "invalid_value"),
        (huge.into_bytes(), "oversized"),
        (deep.into_bytes(), "too_deep"),
        // Two lines that are only JSON together, and one line with two objects.
        (b"{\"timestamp\":\"2024-01-01T00:00:00Z\",\"service\":\"s\",\"a\":[1".to_vec(), "invalid_json"),
        (b"2]}".to_vec(), "invalid_json"),
        (b"{\"timestamp\":\"2024-01-01T00:00:00Z\",\"service\":\"s\"},{\"timestamp\":\"2024-01-01T00:00:00Z\",\"service\":\"s\"}".to_vec(), "invalid_json"),
    ];
    let mut input = Vec::new();
    let mut want = Vec::new();
    let mut line = 0;
    for (bad, code) in &cases {
        for _ in 0..3 {
            input.extend_from_slice(good.as_bytes());
            input.push(b'\n');
            line += 1;
        }
        input.extend_from_slice(bad);
        input.push(b'\n');
        line += 1;
        want.push((line, *code));
    }
    let opts = DecoderOptions {
        max_record_bytes: 4096,
        max_depth: 16,
        ..Default::default()
    };
    for chunk in [1 << 20, 100, 1] {
        let mut dec = Decoder::logs(schema(), opts.clone());
        let (rows, dead) = concat(&decode_all(&mut dec, &input, chunk));
        assert_eq!(rows.num_rows(), 3 * cases.len(), "chunk {chunk}");
        let got: Vec<(i64, &str)> = (0..dead.num_rows())
            .map(|r| {
                (
                    value::<Int64Type>(&dead, "offset", r),
                    col(&dead, "reason_code").as_string::<i32>().value(r),
                )
            })
            .collect();
        assert_eq!(got, want, "chunk {chunk}");
        for r in 0..dead.num_rows() {
            assert_eq!(col(&dead, "source").as_string::<i32>().value(r), "-");
            assert!(!col(&dead, "reason").as_string::<i32>().value(r).is_empty());
        }
    }
}

#[test]
fn clean_input_is_parsed_in_groups() {
    // Plain records are read straight from their bytes; those with escapes go to simd-json,
    // runs of them parsed as one document. Either way none is parsed alone, and the rows
    // keep the input's order.
    let escaped = SEED_LINE.replace("completed successfully", r#"\"done\"\u00e9"#);
    let mut input = Vec::new();
    for i in 0..1000 {
        let line = if i % 3 == 0 { SEED_LINE } else { &escaped };
        input.extend_from_slice(line.as_bytes());
        input.push(b'\n');
    }
    let mut dec = Decoder::logs(schema(), DecoderOptions::default());
    let (rows, _) = concat(&decode_all(&mut dec, &input, 1 << 16));
    assert_eq!(rows.num_rows(), 1000);
    // Pins simd-json's in-place strings, on which the grouped path relies.
    assert_eq!(dec.stats().parsed_alone, 0);
    let messages = col(&rows, "message").as_string::<i32>();
    for i in 0..1000 {
        let want = if i % 3 == 0 {
            "Deal analysis completed successfully"
        } else {
            "Deal analysis \"done\"\u{e9}"
        };
        assert_eq!(messages.value(i), want, "row {i}");
    }
}

#[test]
fn stops_at_batch_size_on_a_line_boundary() {
    let input = concat_lines(&[SEED_LINE; 10]);
    let mut dec = Decoder::logs(
        schema(),
        DecoderOptions {
            batch_size: 4,
            ..Default::default()
        },
    );
    let used = dec.decode(&input);
    assert_eq!(used, 4 * (SEED_LINE.len() + 1));
    assert_eq!(dec.flush().unwrap().num_records(), 4);
}

/// A batch is bounded in bytes as well as in records: long records, all of one service, could
/// otherwise fill a string column past its 32-bit offsets before `batch_size` is reached.
#[test]
fn stops_at_batch_bytes_on_a_line_boundary() {
    let input = concat_lines(&[SEED_LINE; 10]);
    let line = SEED_LINE.len() + 1;
    let opts = DecoderOptions {
        batch_bytes: 3 * line + 1,
        ..Default::default()
    };
    let mut dec = Decoder::logs(schema(), opts.clone());
    assert_eq!(dec.decode(&input), 4 * line);
    assert_eq!(dec.flush().unwrap().num_records(), 4);
    // Every byte of the input still becomes a row, in batches of at most four.
    let mut dec = Decoder::logs(schema(), opts);
    let batches = decode_all(&mut dec, &input, 1 << 16);
    let sizes: Vec<usize> = batches.iter().map(DecodedBatch::num_records).collect();
    assert_eq!(sizes, [4, 4, 2]);
    assert_eq!(concat(&batches).0.num_rows(), 10);
}

#[test]
fn an_oversized_line_split_across_calls_keeps_a_bounded_prefix() {
    let opts = DecoderOptions {
        max_record_bytes: 1000,
        dead_letter_raw_limit: 100,
        ..Default::default()
    };
    let long = format!("{}\n{SEED_LINE}\n", "y".repeat(10_000));
    let mut dec = Decoder::logs(schema(), opts);
    let (rows, dead) = concat(&decode_all(&mut dec, long.as_bytes(), 333));
    assert_eq!(rows.num_rows(), 1);
    assert_eq!(dead.num_rows(), 1);
    assert_eq!(
        col(&dead, "reason_code").as_string::<i32>().value(0),
        "oversized"
    );
    assert_eq!(col(&dead, "raw").as_binary::<i32>().value(0).len(), 100);
    assert_eq!(value::<Int64Type>(&dead, "raw_len", 0), 10_000);
}

#[test]
fn messages_carry_their_partition_and_offset() {
    let mut dec = Decoder::logs(schema(), DecoderOptions::default());
    let pretty = "{\n  \"timestamp\": \"2024-01-01T00:00:00Z\",\n  \"service\": \"s\"\n}";
    dec.decode_messages(
        "telemetry.logs",
        Some(3),
        [
            (SEED_LINE.as_bytes(), 10),
            (b"{oops".as_slice(), 11),
            (pretty.as_bytes(), 12),
        ],
    );
    let b = dec.flush().unwrap();
    assert_eq!(b.num_records(), 2);
    let d = &b.dead_letters;
    assert_eq!(d.num_rows(), 1);
    assert_eq!(
        col(d, "source").as_string::<i32>().value(0),
        "telemetry.logs"
    );
    assert_eq!(col(d, "partition").as_primitive::<Int32Type>().value(0), 3);
    assert_eq!(col(d, "offset").as_primitive::<Int64Type>().value(0), 11);
    assert_eq!(col(d, "raw").as_binary::<i32>().value(0), b"{oops");
}

#[test]
fn metrics_of_other_shapes_are_read_under_their_names() {
    // StatsD and Datadog style `metric` with `tags`; Prometheus' `__name__`; OpenTelemetry's
    // `attributes`; `time` for the time. Tags as a list of "k:v" strings are no labels: kept.
    let input = concat_lines(&[
        r#"{"time":1704067210,"metric":"cpu","service":"db","value":87.5,"tags":{"host":"h1"}}"#,
        r#"{"@timestamp":"2024-01-01T00:00:10Z","__name__":"up","service":"db","value":1,"attributes":{"job":"node"}}"#,
        r#"{"timestamp":"2024-01-01T00:00:10Z","metric_name":"req","service":"db","value":3,"tags":["env:prod"]}"#,
        r#"{"timestamp":"2024-01-01T00:00:10Z","name":"q","metric":"other","service":"db","value":4}"#,
    ]);
    let mut dec = Decoder::metrics(DecoderOptions::default());
    let (rows, dead) = concat(&decode_all(&mut dec, &input, 7));
    assert_eq!((rows.num_rows(), dead.num_rows()), (4, 0));
    let names: Vec<_> = texts(&rows, "name");
    assert_eq!(names, ["cpu", "up", "req", "q"]);
    let labels = col(&rows, "labels").as_map();
    let label = |i: usize| -> Vec<String> {
        let m = labels.value(i);
        let k = m.column(0).as_string::<i32>();
        let v = m.column(1).as_string::<i32>();
        (0..m.len())
            .map(|j| format!("{}={}", k.value(j), v.value(j)))
            .collect()
    };
    assert_eq!(
        (label(0), label(1)),
        (vec!["host=h1".to_string()], vec!["job=node".to_string()])
    );
    assert!(labels.is_null(2));
    let extra = col(&rows, "extra").as_string::<i32>();
    assert_eq!(extra.value(2), r#"{"tags":["env:prod"]}"#);
    // The seed's `name` wins; `metric` stays.
    assert_eq!(extra.value(3), r#"{"metric":"other"}"#);
    assert!(extra.is_null(0) && extra.is_null(1));
    assert_eq!(
        value::<TimestampMicrosecondType>(&rows, "timestamp", 0),
        1_704_067_210_000_000
    );
}

#[test]
fn decodes_metrics_with_labels() {
    let input = concat_lines(&[
        r#"{"timestamp":"2024-01-01T00:00:10Z","name":"cpu_percent","type":"Gauge","service":"database","value":87.5,"labels":{"instance":"db-0","port":5432,"tls":true}}"#,
        r#"{"timestamp":"2024-01-01T00:00:10Z","name":"requests_total","type":"counter","service":"web","value":10,"unit":"1"}"#,
        r#"{"timestamp":"2024-01-01T00:00:10Z","name":"x","type":"meter","service":"api","value":1}"#,
        r#"{"timestamp":"2024-01-01T00:00:10Z","name":"x","service":"api","value":"1"}"#,
        r#"{"timestamp":"2024-01-01T00:00:10Z","name":"x","service":"api","labels":{"a":{"b":1}},"value":1}"#,
    ]);
    let mut dec = Decoder::metrics(DecoderOptions::default());
    let (rows, dead) = concat(&decode_all(&mut dec, &input, 1 << 20));
    assert_eq!(rows.num_rows(), 2);
    assert_eq!(col(&rows, "type").as_string::<i32>().value(0), "gauge");
    assert_eq!(value::<Float64Type>(&rows, "value", 1), 10.0);
    assert_eq!(
        col(&rows, "extra").as_string::<i32>().value(1),
        r#"{"unit":"1"}"#
    );
    let labels = col(&rows, "labels").as_map();
    let first = labels.value(0);
    let keys: Vec<_> = first
        .column(0)
        .as_string::<i32>()
        .iter()
        .flatten()
        .collect();
    let values: Vec<_> = first
        .column(1)
        .as_string::<i32>()
        .iter()
        .flatten()
        .collect();
    assert_eq!(keys, ["instance", "port", "tls"]);
    assert_eq!(values, ["db-0", "5432", "true"]);
    assert!(labels.is_null(1));
    let codes: Vec<_> = texts(&dead, "reason_code");
    assert_eq!(codes, ["invalid_value", "wrong_type", "wrong_type"]);
    assert_eq!(col(&dead, "kind").as_string::<i32>().value(0), "metrics");
}

#[test]
fn blank_lines_are_skipped_and_line_numbers_still_count_them() {
    let input = format!("\n  \n{SEED_LINE}\r\n\n{{\"x\":1}}\n");
    let mut dec = Decoder::logs(schema(), DecoderOptions::default());
    let (rows, dead) = concat(&decode_all(&mut dec, input.as_bytes(), 5));
    assert_eq!(rows.num_rows(), 1);
    assert_eq!(value::<Int64Type>(&dead, "offset", 0), 5);
    assert_eq!(dec.stats().blank_lines, 3);
}

#[test]
fn a_last_line_without_newline_is_decoded_at_end_of_input() {
    let mut dec = Decoder::logs(schema(), DecoderOptions::default());
    assert_eq!(dec.decode(SEED_LINE.as_bytes()), SEED_LINE.len());
    assert!(dec.flush().is_none());
    dec.end_of_input();
    assert_eq!(dec.flush().unwrap().num_records(), 1);
}

#[test]
fn unpromoted_fields_are_kept_verbatim() {
    let line = r#"{"timestamp":"2024-01-01T00:00:00Z", "service":"s", "additional_data": {"big": 123456789012345678901234567890, "status_code": 200 , "s": "a\"b\u00e9", "arr": [1, 2.50]}, "host" : "h\n"}"#;
    for chunk in [1 << 20, 3] {
        let mut dec = Decoder::logs(schema(), DecoderOptions::default());
        let (rows, _) = concat(&decode_all(&mut dec, line.as_bytes(), chunk));
        assert_eq!(
            col(&rows, "additional_data").as_string::<i32>().value(0),
            // Adjacent members are one cut, the separator between them as written.
            r#"{"big": 123456789012345678901234567890,"s": "a\"b\u00e9", "arr": [1, 2.50]}"#
        );
        assert_eq!(
            col(&rows, "extra").as_string::<i32>().value(0),
            r#"{"host" : "h\n"}"#
        );
        assert_eq!(value::<Int32Type>(&rows, "status_code", 0), 200);
    }
}

#[test]
fn batches_hold_one_service_each_in_input_order() {
    let lines: Vec<String> = (0..30)
        .map(|i| {
            format!(
                r#"{{"timestamp":"2024-01-01T00:00:{:02}Z","service":"svc-{}","message":"m{i}"}}"#,
                i,
                i % 3
            )
        })
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let mut dec = Decoder::logs(schema(), DecoderOptions::default());
    let batches = decode_all(&mut dec, &concat_lines(&refs), 1 << 20);
    let records = &batches[0].records;
    assert_eq!(records.len(), 3);
    for (g, b) in records.iter().enumerate() {
        let services = col(b, "service").as_string::<i32>();
        assert!(services.iter().all(|s| s == Some(&format!("svc-{g}")[..])));
        let messages: Vec<_> = col(b, "message")
            .as_string::<i32>()
            .iter()
            .flatten()
            .collect();
        let want: Vec<String> = (0..30)
            .filter(|i| i % 3 == g)
            .map(|i| format!("m{i}"))
            .collect();
        assert_eq!(messages, want);
    }
}

#[test]
fn services_past_the_group_limit_share_one_group_and_only_their_rows_count() {
    // 1024 services get builders of their own; the rows of the rest share one group.
    // Records rejected after their service was read (here: a status code of the wrong type)
    // are rows of no group and are not counted.
    let mut input = String::new();
    for s in 0..1030 {
        input.push_str(&format!(
            r#"{{"timestamp":"2024-01-01T00:00:00Z","service":"s{s:04}","additional_data":{{"status_code":200}}}}"#
        ));
        input.push('\n');
    }
    for s in [3, 1027, 1028, 2000] {
        input.push_str(&format!(
            r#"{{"timestamp":"2024-01-01T00:00:00Z","service":"s{s:04}","level":"INFO","additional_data":{{"status_code":"x"}}}}"#
        ));
        input.push('\n');
    }
    let mut dec = Decoder::logs(schema(), DecoderOptions::default());
    let (rows, dead) = concat(&decode_all(&mut dec, input.as_bytes(), 1 << 20));
    assert_eq!((rows.num_rows(), dead.num_rows()), (1030, 4));
    assert_eq!(dec.stats().overflowed, 6);
    let levels = col(&rows, "level");
    assert_eq!(
        levels.null_count(),
        1030,
        "no row took a rejected record's level"
    );
}

#[test]
fn a_decoder_keeping_some_columns_writes_those_alike_nulls_the_rest_and_rejects_the_same_records() {
    let lines = [
        SEED_LINE.to_string(),
        // Dead letters whose fault is in a column left out: still dead.
        SEED_LINE.replace(r#""message": "Deal analysis completed successfully""#, r#""message": 7"#),
        SEED_LINE.replace(r#""processing_time_ms": 350"#, r#""processing_time_ms": "slow""#),
        SEED_LINE.replace(r#""level": "INFO""#, r#""level": "warn", "x": [1, {"y": 2}]"#),
        SEED_LINE.replace(r#""deal_id": "deal-123", "#, ""),
        r#"{"timestamp": "2023-07-15T14:22:34Z", "service": "api", "additional_data": {"status_code": 503}}"#.into(),
    ]
    .join("\n");
    let mut whole = Decoder::logs(schema(), DecoderOptions::default());
    let mut some = Decoder::logs(schema(), DecoderOptions::default());
    let kept = ["level", "trace_id", "processing_time_ms"];
    some.keep_only(&kept);
    let (a, a_dead) = concat(&decode_all(&mut whole, lines.as_bytes(), 1 << 20));
    let (b, b_dead) = concat(&decode_all(&mut some, lines.as_bytes(), 7));
    assert_eq!((a.num_rows(), a_dead.num_rows()), (4, 2));
    // The same dead letters, but for when each was received.
    for (i, field) in a_dead.schema().fields().iter().enumerate() {
        if field.name() != "received_at" {
            assert_eq!(
                a_dead.column(i),
                b_dead.column(i),
                "dead letters' {}",
                field.name()
            );
        }
    }
    assert_eq!(a.schema(), b.schema());
    for (i, field) in a.schema().fields().iter().enumerate() {
        let name = field.name().as_str();
        if ["timestamp", "service", "date"].contains(&name) || kept.contains(&name) {
            assert_eq!(
                a.column(i),
                b.column(i),
                "{name} as a whole decoder writes it"
            );
        } else {
            assert_eq!(b.column(i).null_count(), b.num_rows(), "{name} left out");
        }
    }
    // The columns left out did have values to leave out.
    for name in [
        "message",
        "span_id",
        "status_code",
        "additional_data",
        "extra",
    ] {
        assert!(
            col(&a, name).null_count() < a.num_rows(),
            "{name} has values"
        );
    }
}
