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

/// Runs tests/py/`script` with `args`; returns its stdout, failing the test if it fails.
pub fn py_script(script: &str, args: &[&str]) -> String {
    let path = vigil_core::manifest_dir!().join("tests/py").join(script);
    let out = Command::new(python())
        .arg(path)
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{script} {args:?} failed (run .ci/run, or pip install -r .ci/requirements.txt and set VIGIL_PYTHON): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs Python `code` with `args`; returns its stdout.
pub fn py_script_inline(code: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .args(["-c", code])
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs SQL in DuckDB with the Delta extension; returns rows as JSON objects.
pub fn duckdb(sql: &str) -> Vec<serde_json::Value> {
    json_rows(&py_script("duckdb_delta.py", &[sql]))
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
    vigil_core::manifest_dir!()
        .join("../../pipelines")
        .join(file)
}

/// `vigil backtest` of the shipped pipeline `pipeline` over `logs` and `metrics`, events to
/// `out`; returns them, each checked against the anomaly contract.
pub fn backtest(pipeline: &str, logs: &Path, metrics: &Path, out: &Path) -> Vec<serde_json::Value> {
    backtest_with(pipeline, logs, metrics, out, &[])
}

/// [`backtest`] with more arguments (e.g. `--spans FILE`).
pub fn backtest_with(
    pipeline: &str,
    logs: &Path,
    metrics: &Path,
    out: &Path,
    more: &[&str],
) -> Vec<serde_json::Value> {
    let pipeline = shipped_pipeline(pipeline);
    let mut args = vec![
        "backtest",
        "--pipeline",
        pipeline.to_str().unwrap(),
        "--logs",
        logs.to_str().unwrap(),
        "--metrics",
        metrics.to_str().unwrap(),
        "--anomalies",
        out.to_str().unwrap(),
    ];
    args.extend(more);
    vigil_ok(&args);
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

/// One HTTP/1.1 request to `addr` (`host:port`): the status and the body. Headers in
/// `headers` are sent as given (`Name: value`).
pub fn http(addr: &str, method: &str, path: &str, headers: &[&str], body: &str) -> (u16, String) {
    try_http(addr, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"))
}

/// [`http`], or the error when nothing answers.
pub fn try_http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr)?;
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.push_str(body);
    conn.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A port nobody listens on now, on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Fails unless `promtool check metrics` (Debian's `prometheus`, installed by .ci/run) accepts
/// `text`: the exposition parses, and its names, types, units and help follow Prometheus'
/// conventions.
pub fn promtool_check_metrics(text: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs (apt-get install prometheus, as .ci/run does)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n--- the metrics:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of the sample `name{labels}` (labels as written, e.g. `table="logs"`), summed over
/// every series whose labels contain all of `labels`.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ')?;
        let (n, l) = series.split_once('{').unwrap_or((series, ""));
        if n == name && labels.iter().all(|want| l.contains(want)) {
            *found.get_or_insert(0.0) += value.parse::<f64>().ok()?;
        }
    }
    found
}
