//! The spine end to end through the real binary: ingest → archive → SQL, checked against the
//! input itself and against DuckDB reading the same Delta table.

mod common;

use std::collections::BTreeMap;
use std::io::Write;

use common::{duckdb, generate, generate_with, json_rows, sql_rows, vigil, vigil_ok};

/// Per-service record count and sum of processing_time_ms, straight from the NDJSON.
fn expected(path: &std::path::Path) -> BTreeMap<String, (u64, f64)> {
    let mut out = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let e = out
            .entry(v["service"].as_str().unwrap().to_string())
            .or_insert((0u64, 0.0f64));
        e.0 += 1;
        e.1 += v["additional_data"]["processing_time_ms"]
            .as_f64()
            .unwrap_or(0.0);
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn ingest_then_sql_returns_the_input_counts_and_duckdb_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, _) = generate(dir.path(), "20m", "10", &["errors:token-service@5m+5m"]);
    let want = expected(&logs);
    assert_eq!(want.len(), 6, "all six services appear");
    let archive = dir.path().join("archive");
    let archive = archive.to_str().unwrap();
    // Small commits so the table has several files and several versions.
    vigil_ok(&[
        "ingest",
        "--archive",
        archive,
        "--max-rows",
        "20000",
        logs.to_str().unwrap(),
    ]);

    let rows = json_rows(&vigil_ok(&[
        "sql",
        "--archive",
        archive,
        "--format",
        "json",
        "SELECT service, count(*) AS n, sum(processing_time_ms) AS t FROM logs GROUP BY service ORDER BY service",
    ]));
    let got: BTreeMap<String, (u64, f64)> = rows
        .iter()
        .map(|r| {
            (
                r["service"].as_str().unwrap().to_string(),
                (r["n"].as_u64().unwrap(), r["t"].as_f64().unwrap()),
            )
        })
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (svc, (n, t)) in &want {
        assert_eq!(got[svc].0, *n, "{svc} count");
        assert!(close(got[svc].1, *t), "{svc} sum {} vs {t}", got[svc].1);
    }

    let table = format!("{archive}/logs");
    let duck = duckdb(&format!(
        "SELECT service, count(*) AS n, sum(processing_time_ms) AS t FROM delta_scan('{table}') GROUP BY service ORDER BY service"
    ));
    assert_eq!(duck.len(), want.len());
    for r in &duck {
        let svc = r["service"].as_str().unwrap();
        assert_eq!(r["n"].as_u64().unwrap(), want[svc].0, "duckdb {svc} count");
        assert!(
            close(r["t"].as_f64().unwrap(), want[svc].1),
            "duckdb {svc} sum"
        );
    }

    // Fields left in `additional_data` (JSON text) are read with JSON functions and `->>`,
    // with the answers DuckDB's JSON functions give.
    let ours = json_rows(&vigil_ok(&[
        "sql",
        "--archive",
        archive,
        "--format",
        "json",
        "SELECT json_get_str(additional_data, 'operation') AS op, count(*) AS n, \
         count(DISTINCT additional_data->>'deal_id') AS deals FROM logs \
         WHERE (additional_data->>'operation') IS NOT NULL GROUP BY 1 ORDER BY 1",
    ]));
    let duck = duckdb(&format!(
        "SELECT additional_data->>'operation' AS op, count(*) AS n, \
         count(DISTINCT additional_data->>'deal_id') AS deals FROM delta_scan('{table}') \
         WHERE (additional_data->>'operation') IS NOT NULL GROUP BY 1 ORDER BY 1"
    ));
    assert!(ours.len() >= 2, "{ours:?}");
    assert_eq!(ours, duck);
}

#[test]
fn one_percent_malformed_lines_of_every_kind_are_dead_letters_and_the_rest_is_archived() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, _) = generate(dir.path(), "10m", "5", &[]);
    let good: Vec<String> = std::fs::read_to_string(&logs)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let deep = format!(
        r#"{{"timestamp":"2024-01-01T00:00:00Z","service":"s","x":{}{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let huge = format!(
        r#"{{"timestamp":"2024-01-01T00:00:00Z","service":"s","message":"{}"}}"#,
        "x".repeat(2 << 20)
    );
    let bad: Vec<(Vec<u8>, &str)> = vec![
        (
            b"{\"timestamp\": \"2024-01-01T00:00:00Z\", \"service\": \"a\"".to_vec(),
            "invalid_json",
        ),
        (
            b"{\"timestamp\":\"2024-01-01T00:00:00Z\",\"service\":\"\xc3\x28\"}".to_vec(),
            "invalid_utf8",
        ),
        (
            b"{\"level\":\"INFO\",\"service\":\"a\"}".to_vec(),
            "missing_field",
        ),
        (
            b"{\"timestamp\":\"2024-01-01T00:00:00Z\",\"level\":\"INFO\"}".to_vec(),
            "missing_field",
        ),
        (
            b"{\"timestamp\":\"2024-01-01T00:00:00Z\",\"service\":[\"a\"]}".to_vec(),
            "wrong_type",
        ),
        (
            b"{\"timestamp\":true,\"service\":\"a\"}".to_vec(),
            "wrong_type",
        ),
        (huge.into_bytes(), "oversized"),
        (deep.into_bytes(), "too_deep"),
    ];
    // Every hundredth line is bad, cycling through the kinds.
    let mut input = Vec::new();
    let mut expect_reasons: BTreeMap<&str, u64> = BTreeMap::new();
    for (i, line) in good.iter().enumerate() {
        if i % 99 == 98 {
            let (b, code) = &bad[(i / 99) % bad.len()];
            input.extend_from_slice(b);
            input.push(b'\n');
            *expect_reasons.entry(code).or_default() += 1;
        }
        input.extend_from_slice(line.as_bytes());
        input.push(b'\n');
    }
    let kinds: std::collections::BTreeSet<&str> = bad.iter().map(|(_, c)| *c).collect();
    assert_eq!(
        expect_reasons.len(),
        kinds.len(),
        "every kind of bad line appears"
    );
    let path = dir.path().join("mixed.ndjson");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(&input)
        .unwrap();
    // Decoded on three threads (units of whole lines, oversized lines among them, handed out
    // in turn) and on one: the same archive.
    let archive = dir.path().join("archive");
    let archive = archive.to_str().unwrap();
    let one = dir.path().join("one");
    let one = one.to_str().unwrap();
    for (archive, threads) in [(archive, "3"), (one, "1")] {
        let out = vigil(&[
            "ingest",
            "--threads",
            threads,
            "--archive",
            archive,
            path.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("dead letter"));
    }
    for sql in [
        "SELECT \"offset\", reason_code, reason FROM dead_letters ORDER BY \"offset\"",
        "SELECT service, count(*) AS n, min(timestamp) AS a, max(timestamp) AS b, \
         sum(length(message)) AS m FROM logs GROUP BY service ORDER BY service",
    ] {
        assert_eq!(sql_rows(archive, sql), sql_rows(one, sql), "{sql}");
    }

    let count = |sql: &str| sql_rows(archive, sql);
    assert_eq!(
        count("SELECT count(*) AS n FROM logs")[0]["n"],
        good.len() as u64
    );
    let reasons: BTreeMap<String, u64> = count(
        "SELECT reason_code, count(*) AS n, min(length(reason)) AS l FROM dead_letters GROUP BY reason_code",
    )
    .iter()
    .map(|r| {
        assert!(r["l"].as_u64().unwrap() > 10, "every dead letter explains itself");
        (r["reason_code"].as_str().unwrap().to_string(), r["n"].as_u64().unwrap())
    })
    .collect();
    let want: BTreeMap<String, u64> = expect_reasons
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    assert_eq!(reasons, want);
    // Raw bytes and positions point back into the file.
    let first = count(
        "SELECT \"offset\", raw FROM dead_letters WHERE reason_code = 'invalid_json' ORDER BY \"offset\" LIMIT 1",
    );
    let line_no = first[0]["offset"].as_u64().unwrap() as usize;
    let line = input.split(|&b| b == b'\n').nth(line_no - 1).unwrap();
    assert_eq!(line, &bad[0].0[..]);
}

#[test]
fn unreadable_input_or_unusable_archive_fail_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a");
    let out = vigil(&[
        "ingest",
        "--archive",
        archive.to_str().unwrap(),
        "/does/not/exist.ndjson",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/does/not/exist.ndjson") && err.contains("No such file"),
        "{err}"
    );
    // Said once: the message carries its cause, which is not repeated after it.
    assert_eq!(err.matches("No such file").count(), 1, "{err}");

    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, "{}\n").unwrap();
    let out = vigil(&[
        "ingest",
        "--archive",
        file.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("archive") && err.contains("plain-file"),
        "{err}"
    );

    let out = vigil(&[
        "sql",
        "--archive",
        dir.path().join("empty").to_str().unwrap(),
        "SELECT 1",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no vigil archive"));
}

#[test]
fn sql_is_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, _) = generate(dir.path(), "1m", "2", &[]);
    let archive = dir.path().join("archive");
    let archive = archive.to_str().unwrap();
    vigil_ok(&["ingest", "--archive", archive, logs.to_str().unwrap()]);
    for stmt in [
        "DELETE FROM logs",
        "INSERT INTO logs SELECT * FROM logs",
        "CREATE TABLE x AS SELECT 1",
        "DROP TABLE logs",
        "COPY logs TO '/tmp/x.parquet'",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let out = vigil(&["sql", "--archive", archive, stmt]);
        assert!(!out.status.success(), "{stmt} must be refused");
    }
    let n = json_rows(&vigil_ok(&[
        "sql",
        "--archive",
        archive,
        "--format",
        "json",
        "SELECT count(*) AS n FROM logs",
    ]));
    assert!(n[0]["n"].as_u64().unwrap() > 0);
    // csv and table formats render too.
    assert!(
        vigil_ok(&[
            "sql",
            "--archive",
            archive,
            "--format",
            "csv",
            "SELECT service FROM logs LIMIT 1"
        ])
        .starts_with("service\n")
    );
    assert!(
        vigil_ok(&[
            "sql",
            "--archive",
            archive,
            "SELECT count(*) AS n FROM logs"
        ])
        .contains("| n")
    );
    // A result without rows still shows its columns, in both.
    let none = "SELECT service, level FROM logs WHERE service = 'none'";
    assert_eq!(
        vigil_ok(&["sql", "--archive", archive, "--format", "csv", none]),
        "service,level\n"
    );
    let table = vigil_ok(&["sql", "--archive", archive, none]);
    assert!(table.contains("| service | level |"), "{table}");
}

#[test]
fn gzip_and_stdin_inputs_are_ingested() {
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("logs.ndjson.gz");
    vigil_ok(&[
        "generate",
        "--logs",
        gz.to_str().unwrap(),
        "--duration",
        "2m",
        "--rate",
        "3",
    ]);
    let plain = dir.path().join("logs.ndjson");
    vigil_ok(&[
        "generate",
        "--logs",
        plain.to_str().unwrap(),
        "--duration",
        "2m",
        "--rate",
        "3",
    ]);
    let lines = std::fs::read_to_string(&plain).unwrap().lines().count() as u64;
    let archive = dir.path().join("archive");
    let archive = archive.to_str().unwrap();
    vigil_ok(&["ingest", "--archive", archive, gz.to_str().unwrap()]);
    let from_stdin = |args: &[&str], input: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["ingest", "--archive", archive])
            .args(args)
            .stdin(std::fs::File::open(input).unwrap())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    from_stdin(&[], &plain);
    // `-` names stdin too; a byte order mark before the first record (as Windows tools
    // write) is not part of it.
    let bom = dir.path().join("bom.ndjson");
    let mut text = "\u{feff}".as_bytes().to_vec();
    text.extend(std::fs::read(&plain).unwrap());
    std::fs::write(&bom, text).unwrap();
    from_stdin(&["-"], &bom);
    // pino's shape (`time`, `msg`, numeric levels, no service), the service given by flag.
    let pino = dir.path().join("pino.ndjson");
    std::fs::write(
        &pino,
        "{\"level\":50,\"time\":1717000000000,\"pid\":1,\"msg\":\"boom\"}\n\
         {\"level\":30,\"time\":1717000000001,\"pid\":1,\"msg\":\"ok\"}\n",
    )
    .unwrap();
    from_stdin(&["--service", "checkout", "-"], &pino);
    let n = json_rows(&vigil_ok(&[
        "sql",
        "--archive",
        archive,
        "--format",
        "json",
        "SELECT (SELECT count(*) FROM logs) AS n, (SELECT count(*) FROM dead_letters) AS dead, \
         (SELECT count(*) FROM logs WHERE service = 'checkout' AND level = 'ERROR' \
         AND message = 'boom' AND extra = '{\"pid\":1}') AS pino",
    ]));
    assert_eq!(n[0]["n"].as_u64().unwrap(), 3 * lines + 2);
    assert_eq!(n[0]["dead"].as_u64().unwrap(), 0);
    assert_eq!(n[0]["pino"].as_u64().unwrap(), 1);
}

#[test]
fn every_command_has_help() {
    for cmd in [
        "ingest",
        "sql",
        "run",
        "validate",
        "demo",
        "generate",
        "produce",
        "backtest",
        "detect-series",
        "trace",
    ] {
        let out = vigil_ok(&[cmd, "--help"]);
        assert!(out.contains("Usage: vigil"), "{cmd}: {out}");
    }
}

#[test]
fn the_demo_archives_an_hour_and_shows_the_alerts_its_incident_raised() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("demo");
    let out = vigil_ok(&["demo", "--archive", archive.to_str().unwrap()]);
    assert!(
        out.contains("Volume, errors and latency per service"),
        "{out}"
    );
    let alerts: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("Token Service Errors"))
        .collect();
    assert_eq!(alerts.len(), 2, "{out}");
    assert!(
        alerts[0].contains("firing") && alerts[0].contains("token-service"),
        "{out}"
    );
    assert!(alerts[1].contains("resolved"), "{out}");
    // The token-service alert and the gateway's availability alert are one incident, whose
    // root cause is token-service.
    let incidents: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("inc-"))
        .collect();
    assert_eq!(incidents.len(), 1, "{out}");
    assert!(
        incidents[0].contains("root cause token-service")
            && incidents[0].contains("api-gateway")
            && incidents[0].contains("token-service"),
        "{out}"
    );
    // `vigil trace` works on the demo archive, with the sample trace the demo suggests.
    let next = out
        .lines()
        .find(|l| l.trim_start().starts_with("vigil trace"))
        .expect("the demo suggests a trace");
    let trace_id = next.split_whitespace().last().unwrap();
    let tree = vigil_ok(&["trace", "--archive", archive.to_str().unwrap(), trace_id]);
    assert!(
        tree.contains("token-service") && tree.contains("ERROR"),
        "{tree}"
    );
    // The same events are rows of the archive's `anomalies` table, typed.
    let events = std::fs::read_to_string(archive.join("anomalies.ndjson")).unwrap();
    let query = "SELECT status, fingerprint, CAST(starts_at AS VARCHAR) AS s FROM anomalies \
                 WHERE rule = 'Token Service Errors' ORDER BY detected_at";
    let sql = |archive: &std::path::Path| {
        vigil_ok(&[
            "sql",
            "--archive",
            archive.to_str().unwrap(),
            "--format",
            "csv",
            query,
        ])
    };
    let rows = sql(&archive);
    let token: Vec<serde_json::Value> = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["rule"] == "Token Service Errors")
        .collect();
    let expected: String = token
        .iter()
        .map(|e| {
            format!(
                "{},{},{}\n",
                e["status"].as_str().unwrap(),
                e["fingerprint"].as_str().unwrap(),
                e["starts_at"].as_str().unwrap().replace(".000Z", "Z")
            )
        })
        .collect();
    assert!(rows.ends_with(&expected), "{rows}\nvs\n{expected}");
    // A second run replaces the demo archive rather than adding to it.
    vigil_ok(&["demo", "--archive", archive.to_str().unwrap()]);
    assert_eq!(sql(&archive), rows);
}

#[test]
fn trace_shows_one_trace_across_services_as_a_tree_of_its_spans() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, _) = generate(dir.path(), "10m", "10", &["errors:token-service@2m+5m"]);
    let archive = dir.path().join("archive");
    let archive = archive.to_str().unwrap();
    vigil_ok(&[
        "ingest",
        "--archive",
        archive,
        "--max-rows",
        "5000",
        logs.to_str().unwrap(),
    ]);
    // The trace with the most spans, and what its records say about their parents.
    let mut traces: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for line in std::fs::read_to_string(&logs).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        traces
            .entry(v["trace_id"].as_str().unwrap().into())
            .or_default()
            .push(v);
    }
    let (id, records) = traces.iter().max_by_key(|(_, r)| r.len()).unwrap();
    let parent_of: BTreeMap<&str, Option<&str>> = records
        .iter()
        .map(|r| (r["span_id"].as_str().unwrap(), r["parent_span_id"].as_str()))
        .collect();
    assert!(parent_of.len() >= 3, "a trace of several spans");

    let tree: serde_json::Value = serde_json::from_str(&vigil_ok(&[
        "trace",
        "--archive",
        archive,
        "--format",
        "json",
        id,
    ]))
    .unwrap();
    assert_eq!(tree["records"].as_u64(), Some(records.len() as u64));
    // Every span once, each under the parent its records name; one root, the entry point.
    let mut seen = BTreeMap::new();
    fn walk(
        s: &serde_json::Value,
        parent: Option<&str>,
        seen: &mut BTreeMap<String, Option<String>>,
    ) {
        let id = s["span_id"].as_str().unwrap();
        assert_eq!(s["parent_span_id"].as_str(), parent, "{s}");
        assert!(
            seen.insert(id.into(), parent.map(str::to_string)).is_none(),
            "{id} twice"
        );
        for c in s["children"].as_array().unwrap() {
            walk(c, Some(id), seen);
        }
    }
    let roots = tree["roots"].as_array().unwrap();
    assert_eq!(roots.len(), 1, "{tree:#}");
    walk(&roots[0], None, &mut seen);
    let want: BTreeMap<String, Option<String>> = parent_of
        .iter()
        .map(|(s, p)| (s.to_string(), p.map(str::to_string)))
        .collect();
    assert_eq!(seen, want);

    // The text form names every service of the trace; an unknown id is an error.
    let text = vigil_ok(&["trace", "--archive", archive, id]);
    for r in records {
        assert!(text.contains(r["service"].as_str().unwrap()), "{text}");
    }
    assert!(
        text.starts_with(&format!("trace {id}: {} records", records.len())),
        "{text}"
    );
    let out = vigil(&["trace", "--archive", archive, "0000000000000000"]);
    assert_eq!(out.status.code(), Some(1));
}

/// `vigil ingest --pipeline F` writes to F's archive, unless `--archive` says otherwise.
#[test]
fn ingest_with_a_pipeline_file_uses_its_archive_unless_told_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, _) = generate(dir.path(), "1m", "2", &[]);
    let theirs = dir.path().join("pipeline-archive");
    let pipeline = dir.path().join("p.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[pipeline]\nname = \"p\"\n\n[[sources]]\ntype = \"stdin\"\nkind = \"logs\"\n\n[archive]\nurl = \"{}\"\n",
            theirs.display()
        ),
    )
    .unwrap();
    let count = |archive: &std::path::Path| {
        common::sql_rows(archive.to_str().unwrap(), "SELECT count(*) AS n FROM logs")[0]["n"]
            .as_u64()
            .unwrap()
    };
    let files = [pipeline.to_str().unwrap(), logs.to_str().unwrap()];
    vigil_ok(&["ingest", "--pipeline", files[0], files[1]]);
    let n = count(&theirs);
    assert!(n > 0);
    let mine = dir.path().join("mine");
    vigil_ok(&[
        "ingest",
        "--pipeline",
        files[0],
        "--archive",
        mine.to_str().unwrap(),
        files[1],
    ]);
    assert_eq!(count(&mine), n);
    assert_eq!(count(&theirs), n, "--archive was not obeyed");
}

/// A pipeline that promotes one more field than the one that made the archive adds its
/// column: the rows archived before read it as null, the new ones have it, and DuckDB reads
/// both; a pipeline without it goes on writing to the table. (Before, the table was refused
/// as incompatible.)
#[test]
fn promoting_one_more_field_adds_its_column_to_an_existing_archive() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, _) = generate_with(dir.path(), "5m", "10", &["--client-spans"]);
    let archive = dir.path().join("archive");
    let archive = archive.to_str().unwrap();
    let logs = logs.to_str().unwrap();
    vigil_ok(&["ingest", "--archive", archive, logs]);
    let seed_fields = [
        "--field",
        "status_code=int32",
        "--field",
        "processing_time_ms=float64",
    ];
    let mut args = vec!["ingest", "--archive", archive];
    args.extend(seed_fields);
    args.extend(["--field", "span_kind=utf8", logs]);
    vigil_ok(&args);
    // A pipeline that does not promote it (the default one) still writes to the table.
    vigil_ok(&["ingest", "--archive", archive, logs]);
    let query = "SELECT span_kind, count(*) AS n FROM logs GROUP BY span_kind ORDER BY span_kind";
    let rows = sql_rows(archive, query);
    let count = |kind: Option<&str>| {
        rows.iter()
            .find(|r| r["span_kind"].as_str() == kind)
            .map_or(0, |r| r["n"].as_u64().unwrap())
    };
    let total = rows.iter().map(|r| r["n"].as_u64().unwrap()).sum::<u64>();
    let client = count(Some("client"));
    assert!(client > 100, "{rows:?}");
    // The first and third ingests' rows, and the second's other spans, have none.
    assert_eq!(count(None), total - client, "{rows:?}");
    assert_eq!(total % 3, 0, "the same file three times: {rows:?}");
    let duck = duckdb(&format!(
        "SELECT count(span_kind) AS k, count(*) AS n FROM delta_scan('{archive}/logs')"
    ));
    assert_eq!(duck[0]["k"].as_u64(), Some(client), "{duck:?}");
    assert_eq!(duck[0]["n"].as_u64(), Some(total), "{duck:?}");
}
