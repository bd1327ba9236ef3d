//! The loader on hostile pipeline files: TOML built from the real sections and keys with
//! values no one should write (huge durations, sizes and counts, empty and odd strings,
//! unset variables), and plain garbage. It returns a pipeline or its problems, each located
//! inside the file, and never panics. The cargo-fuzz target `pipeline`
//! (crates/vigil-config/fuzz) runs the same on any bytes, longer.

use proptest::prelude::*;

const SECTIONS: &[&str] = &[
    "[pipeline]",
    "[[sources]]",
    "[sources.properties]",
    "[[rules]]",
    "[detect]",
    "[decode]",
    "[archive]",
    "[archive.flush]",
    "[archive.storage_options]",
    "[retention]",
    "[schema.logs.fields]",
];

const KEYS: &[&str] = &[
    "name",
    "type",
    "kind",
    "paths",
    "brokers",
    "group_id",
    "topics",
    "start_from",
    "max_batch_records",
    "max_batch_bytes",
    "max_batch_wait",
    "max_fetch_buffer",
    "duration",
    "rate",
    "start",
    "incidents",
    "realtime",
    "url",
    "max_rows",
    "max_bytes",
    "interval",
    "hot",
    "warm",
    "cold",
    "table",
    "window",
    "hop",
    "signal",
    "where",
    "condition",
    "for",
    "severity",
    "summary",
    "no_data",
    "allowed_lateness",
    "max_series",
    "series_ttl",
    "trace_timeout",
    "correlation_window",
    "max_open_traces",
    "batch_size",
    "max_record_bytes",
    "max_depth",
    "max_future_skew",
    "max_past",
    "anomaly_topic",
    "\"additional_data.x\"",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"4294967295w\"".to_string()),
        Just("\"18446744073709551615\"".to_string()),
        Just("\"99999999999TiB\"".to_string()),
        Just("\"0s\"".to_string()),
        Just("\"off\"".to_string()),
        Just("\"${UNSET}\"".to_string()),
        Just("\"${X:-${Y}}\"".to_string()),
        Just("\"baseline\"".to_string()),
        Just("\"> nan\"".to_string()),
        Just("\"avg(nope)\"".to_string()),
        Just("\"errors:token-service@1m+99999999w\"".to_string()),
        Just("[\"\"]".to_string()),
        Just("[{ name = \"\", kind = \"logs\" }]".to_string()),
        Just("9223372036854775807".to_string()),
        Just("-1".to_string()),
        Just("1e308".to_string()),
        Just("nan".to_string()),
        Just("true".to_string()),
        "\"[ -~]{0,12}\"".prop_map(|s| s.replace(['"', '\\'], "")),
    ]
}

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => proptest::sample::select(SECTIONS).prop_map(str::to_string),
        6 => (proptest::sample::select(KEYS), value()).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => "[ -~]{0,20}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_text_is_a_pipeline_or_its_problems(lines in proptest::collection::vec(line(), 0..40)) {
        let text = lines.join("\n");
        let env = |k: &str| (k == "X").then(|| "4294967295w".to_string());
        if let Err(e) = vigil_config::parse(&text, "hostile.toml", env) {
            prop_assert!(!e.problems.is_empty());
            for p in &e.problems {
                prop_assert!(p.line <= lines.len() + 1, "line {} of {}: {}", p.line, lines.len(), p.message);
            }
        }
    }
}
