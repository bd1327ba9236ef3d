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
    let out = vigil(args);
    assert!(
        out.status.success(),
        "vigil {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Generated seed-format log lines (and metric samples) into `dir`.
pub fn generate(dir: &Path, duration: &str, rate: &str, incidents: &[&str]) -> (PathBuf, PathBuf) {
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
    for i in incidents {
        args.extend(["--incident", i]);
    }
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
