//! Helpers for the CLI integration tests: run the built `vigil` binary, generate inputs, ask
//! DuckDB.
#![allow(dead_code)]

pub mod kafka;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `vigil` with `args`; returns the output whatever the exit status.
pub fn vigil(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .env_remove("VIGIL_ARCHIVE")
        .output()
        .expect("vigil binary runs")
}

/// Runs `vigil` and requires success; returns stdout.
pub fn vigil_ok(args: &[&str]) -> String {
    vigil_ok_with(args, &[])
}

/// [`vigil_ok`] with environment variables set.
pub fn vigil_ok_with(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .env_remove("VIGIL_ARCHIVE")
        .envs(env.iter().copied())
        .output()
        .expect("vigil binary runs");
    assert!(
        out.status.success(),
        "vigil {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// A minute, in µs.
pub const MIN: i64 = 60_000_000;
/// 2025-06-02T09:00:00Z, the generator's default start, in µs since the epoch.
pub const T0: i64 = 1_748_854_800_000_000;

/// Microseconds since the epoch of an RFC 3339 time as vigil writes it.
pub fn micros(rfc3339: &str) -> i64 {
    vigil_core::time::parse_rfc3339_micros(rfc3339.as_bytes()).expect("vigil writes RFC 3339")
}

/// Generated seed-format log lines (and metric samples) into `dir`.
pub fn generate(dir: &Path, duration: &str, rate: &str, incidents: &[&str]) -> (PathBuf, PathBuf) {
    let args: Vec<&str> = incidents.iter().flat_map(|i| ["--incident", i]).collect();
    generate_with(dir, duration, rate, &args)
}

/// [`generate`] with any further `vigil generate` arguments (`--incident X`, `--client-spans`).
pub fn generate_with(dir: &Path, duration: &str, rate: &str, more: &[&str]) -> (PathBuf, PathBuf) {
    let logs = dir.join("logs.ndjson");
    let metrics = dir.join("metrics.ndjson");
    let mut args = vec![
        "generate",
        "--logs",
        logs.to_str().unwrap(),
        "--metrics",
        metrics.to_str().unwrap(),
        "--duration",
        duration,
        "--rate",
        rate,
    ];
    args.extend(more);
    vigil_ok(&args);
    (logs, metrics)
}

/// Parses `vigil sql --format json` output.
pub fn json_rows(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("json row"))
        .collect()
}

/// Runs `query` with `vigil sql --format json` over `archive`, requiring success; returns
/// the rows.
pub fn sql_rows(archive: &str, query: &str) -> Vec<serde_json::Value> {
    json_rows(&vigil_ok(&[
        "sql",
        "--archive",
        archive,
        "--format",
        "json",
        query,
    ]))
}

/// The Python with DuckDB and duckdb-ext-delta: `VIGIL_PYTHON` (set by .ci/run) or `python3`.
pub fn python() -> String {
    std::env::var("VIGIL_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs SQL in DuckDB with the Delta extension; returns rows as JSON objects.
pub fn duckdb(sql: &str) -> Vec<serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/duckdb_delta.py");
    let out = Command::new(python())
        .arg(script)
        .arg(sql)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "DuckDB failed (run .ci/run, or pip install -r .ci/requirements.txt and set VIGIL_PYTHON): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_rows(&String::from_utf8(out.stdout).unwrap())
}

/// Fails unless `e` is an anomaly event as DESIGN.md defines it: every field there, of its type.
pub fn assert_anomaly_contract(e: &serde_json::Value) {
    for (key, ok) in [
        ("id", e["id"].is_string()),
        ("fingerprint", e["fingerprint"].is_string()),
        (
            "status",
            matches!(e["status"].as_str(), Some("firing" | "resolved")),
        ),
        ("rule", e["rule"].is_string()),
        (
            "kind",
            matches!(e["kind"].as_str(), Some("threshold" | "baseline")),
        ),
        (
            "severity",
            matches!(e["severity"].as_str(), Some("P1" | "P2" | "P3" | "P4")),
        ),
        ("service", e["service"].is_string()),
        ("value", e["value"].is_number() || e["value"].is_null()),
        (
            "threshold",
            e["threshold"].is_number() || e["threshold"].is_null(),
        ),
        ("window", e["window"].is_string()),
        ("for", e["for"].is_string()),
        (
            "starts_at",
            e["starts_at"].as_str().is_some_and(|s| s.ends_with('Z')),
        ),
        (
            "ends_at",
            (e["status"] == "firing") == e["ends_at"].is_null(),
        ),
        ("detected_at", e["detected_at"].is_string()),
        ("labels", e["labels"].is_object()),
        ("annotations", e["annotations"]["summary"].is_string()),
        ("incident", e.get("incident").is_some()),
    ] {
        assert!(ok, "`{key}` breaks the anomaly contract in {e}");
    }
    // With correlation on (the default) every event carries its incident.
    let i = &e["incident"];
    if !i.is_null() {
        for (key, ok) in [
            ("id", i["id"].is_string()),
            ("root_cause_service", i["root_cause_service"].is_string()),
            (
                "confidence",
                i["confidence"]
                    .as_f64()
                    .is_some_and(|c| (0.0..=1.0).contains(&c)),
            ),
            (
                "related",
                i["related"]
                    .as_array()
                    .is_some_and(|r| r.contains(&e["fingerprint"])),
            ),
            (
                "evidence.sample_trace_ids",
                i["evidence"]["sample_trace_ids"].is_array(),
            ),
        ] {
            assert!(ok, "incident `{key}` breaks the anomaly contract in {e}");
        }
    }
}

/// A pipeline file shipped in `pipelines/`.
pub fn shipped_pipeline(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../pipelines")
        .join(file)
}

/// `vigil backtest` of the shipped pipeline `pipeline` over `logs` and `metrics`, events to
/// `out`; returns them, each checked against the anomaly contract.
pub fn backtest(pipeline: &str, logs: &Path, metrics: &Path, out: &Path) -> Vec<serde_json::Value> {
    vigil_ok(&[
        "backtest",
        "--pipeline",
        shipped_pipeline(pipeline).to_str().unwrap(),
        "--logs",
        logs.to_str().unwrap(),
        "--metrics",
        metrics.to_str().unwrap(),
        "--anomalies",
        out.to_str().unwrap(),
    ]);
    read_events(out)
}

/// The anomaly events of an NDJSON file, each checked against the contract.
pub fn read_events(path: &Path) -> Vec<serde_json::Value> {
    let events: Vec<serde_json::Value> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    events.iter().for_each(assert_anomaly_contract);
    events
}
