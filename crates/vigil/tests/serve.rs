//! `vigil serve` over HTTP, as an analyst's client uses it: a token is required, results come
//! as JSON, CSV or Arrow, and nothing but a query gets through.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use common::{generate, sql_rows, vigil_ok};

/// A `vigil serve` child, stopped when dropped.
struct Server {
    child: Child,
    /// The HTTP address, `host:port`.
    addr: String,
    /// The Postgres-wire port, when served.
    pg_port: Option<String>,
    /// The rest of its stderr (kept open: a closed pipe would fail its next log line).
    stderr: BufReader<std::process::ChildStderr>,
}

impl Server {
    fn start(archive: &str, token: &str) -> Server {
        Self::start_with(archive, &[], &[("VIGIL_SQL_TOKEN", token)])
    }

    /// `vigil serve --archive ARCHIVE --http 127.0.0.1:0` and `more`, with `env`; waits for
    /// its listening lines (one per protocol).
    fn start_with(archive: &str, more: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["serve", "--archive", archive, "--http", "127.0.0.1:0"])
            .args(more)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("vigil runs");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let mut read_line = || {
            line.clear();
            stderr.read_line(&mut line).unwrap();
            line.clone()
        };
        let http = read_line();
        let addr = http
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("no address in {http:?}"))
            .to_string();
        let pg_port = more.contains(&"--pg").then(|| {
            let pg = read_line();
            pg.split("postgres://")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|addr| addr.rsplit(':').next())
                .unwrap_or_else(|| panic!("no address in {pg:?}"))
                .to_string()
        });
        Server {
            child,
            addr,
            pg_port,
            stderr,
        }
    }

    /// `POST /sql`: status, content type and body.
    fn post(&self, query: &str, headers: &[&str]) -> (u16, String, Vec<u8>) {
        let mut conn = TcpStream::connect(&self.addr).unwrap();
        let mut req = format!(
            "POST /sql HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.addr,
            query.len()
        );
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        req.push_str(query);
        conn.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        conn.read_to_end(&mut raw).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let status = head[9..12].parse().unwrap();
        let content_type = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-type: ")
                    .map(String::from)
            })
            .unwrap_or_default();
        (status, content_type, raw[split + 4..].to_vec())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serve_answers_queries_with_a_token_and_refuses_everything_else() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, _) = generate(dir.path(), "10m", "5", &[]);
    let archive = dir.path().join("archive");
    let archive = archive.to_str().unwrap();
    vigil_ok(&["ingest", "--archive", archive, logs.to_str().unwrap()]);
    let server = Server::start(archive, "s3cret");
    let auth = "Authorization: Bearer s3cret";
    let query = "SELECT service, count(*) AS n FROM logs GROUP BY service ORDER BY service";

    // No token, a wrong one: refused.
    for headers in [&[][..], &["Authorization: Bearer nope"][..]] {
        let (status, _, body) = server.post(query, headers);
        assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    }

    // JSON by default: the same rows as `vigil sql`.
    let (status, content_type, body) = server.post(query, &[auth]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(content_type, "application/json");
    let got: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
    assert_eq!(got, sql_rows(archive, query));
    assert_eq!(got.len(), 6);

    // CSV and Arrow IPC by Accept.
    let (status, content_type, body) = server.post(query, &[auth, "Accept: text/csv"]);
    assert_eq!(
        (status, content_type.as_str()),
        (200, "text/csv; charset=utf-8")
    );
    let csv = String::from_utf8(body).unwrap();
    assert_eq!(csv.lines().next(), Some("service,n"));
    assert_eq!(csv.lines().count(), 7);
    // No rows: still the header line.
    let none = "SELECT service, count(*) AS n FROM logs WHERE service = 'none' GROUP BY 1";
    let (status, _, body) = server.post(none, &[auth, "Accept: text/csv"]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(String::from_utf8(body).unwrap(), "service,n\n");
    // A nested value (as the metrics' `labels` map) as its text, as `vigil sql` writes it.
    let nested = "SELECT map(['k'], [service]) AS m FROM logs ORDER BY service LIMIT 1";
    let (status, _, body) = server.post(nested, &[auth, "Accept: text/csv"]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(String::from_utf8(body).unwrap(), "m\n{k: ai-service}\n");
    let (status, content_type, body) = server.post(
        query,
        &[auth, "Accept: application/vnd.apache.arrow.stream"],
    );
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/vnd.apache.arrow.stream")
    );
    assert_eq!(
        &body[..4],
        &[0xff; 4],
        "an Arrow IPC stream starts with a continuation marker"
    );

    // Nothing but a query: each refused with a message saying why, and the archive unchanged.
    for statement in [
        "CREATE TABLE t AS SELECT 1",
        "INSERT INTO logs SELECT * FROM logs",
        "COPY (SELECT 1) TO '/tmp/vigil-serve-copy.csv'",
        "CREATE EXTERNAL TABLE p (line VARCHAR) STORED AS CSV LOCATION '/etc/passwd'",
        "SET datafusion.execution.batch_size = 1",
        "SELEC nonsense",
    ] {
        let (status, content_type, body) = server.post(statement, &[auth]);
        assert_eq!(
            status,
            400,
            "{statement}: {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(content_type, "application/json");
        let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(
            error["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{error}"
        );
    }
    assert!(!std::path::Path::new("/tmp/vigil-serve-copy.csv").exists());
    let again: Vec<serde_json::Value> =
        serde_json::from_slice(&server.post(query, &[auth]).2).unwrap();
    assert_eq!(again, got);
    drop(server);

    // The memory limit holds for the first statement (its session built) and for those after
    // (their session derived from it while the archive is unchanged), and an ordinary query
    // still answers after each refusal.
    let server = Server::start_with(
        archive,
        &["--memory", "32MiB"],
        &[("VIGIL_SQL_TOKEN", "s3cret")],
    );
    let hungry = include_str!("../../../fixtures/hostile/queries/array_agg.sql");
    for _ in 0..2 {
        let (status, _, body) = server.post(hungry, &[auth]);
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 400, "{body}");
        assert!(
            body.to_lowercase().contains("resources exhausted"),
            "{body}"
        );
        let (status, _, body) = server.post(query, &[auth]);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
        assert_eq!(rows, got);
    }
    drop(server);

    // The statuses the README gives: 413 past `--max-rows`, 503 past `--timeout`.
    let server = Server::start_with(
        archive,
        &["--max-rows", "100", "--timeout", "2s"],
        &[("VIGIL_SQL_TOKEN", "s3cret")],
    );
    let (status, _, body) = server.post("SELECT value FROM generate_series(1, 101)", &[auth]);
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("more than 100 rows"), "{body}");
    let endless = include_str!("../../../fixtures/hostile/queries/endless.sql");
    let (status, _, body) = server.post(endless, &[auth]);
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("longer than its limit of 2s"), "{body}");
    let (status, _, body) = server.post("SELECT value FROM generate_series(1, 100)", &[auth]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

/// psql as `user` with `password`: one command, unaligned and tuples only.
fn psql(port: &str, user: &str, password: &str, command: &str) -> std::process::Output {
    Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", port, "-U", user, "-d", "vigil"])
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", command])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql runs (Debian postgresql-client; .ci/run installs it)")
}

#[test]
fn serve_speaks_postgres_to_psql_and_drivers_with_scram_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, _) = generate(dir.path(), "10m", "5", &[]);
    let archive = dir.path().join("archive");
    let archive = archive.to_str().unwrap();
    vigil_ok(&["ingest", "--archive", archive, logs.to_str().unwrap()]);
    let server = Server::start_with(
        archive,
        &["--pg", "127.0.0.1:0"],
        &[
            ("VIGIL_SQL_TOKEN", "t"),
            ("VIGIL_SQL_USER", "analyst"),
            ("VIGIL_SQL_PASSWORD", "correct horse"),
        ],
    );
    let port = server.pg_port.as_deref().unwrap();
    let ok = |command: &str| {
        let out = psql(port, "analyst", "correct horse", command);
        assert!(
            out.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };

    // The same answer as `vigil sql`, over the wire.
    let query = "SELECT service, count(*) AS n FROM logs GROUP BY service ORDER BY service";
    let want: Vec<String> = sql_rows(archive, query)
        .iter()
        .map(|r| format!("{}|{}", r["service"].as_str().unwrap(), r["n"]))
        .collect();
    let got = ok(query);
    assert_eq!(got.lines().collect::<Vec<_>>(), want);
    assert_eq!(want.len(), 6);

    // What psql's \dt and Grafana's Postgres data source ask before any query: the tables
    // and columns, through pg_catalog and information_schema.
    let tables = ok("\\dt");
    assert!(tables.contains("|logs|"), "{tables}");
    let grafana_tables = ok(
        "SELECT quote_ident(table_name) AS \"table\" FROM information_schema.tables \
         WHERE quote_ident(table_schema) NOT IN ('information_schema', 'pg_catalog') ORDER BY 1",
    );
    assert!(
        grafana_tables.lines().any(|t| t == "logs"),
        "{grafana_tables}"
    );
    let columns = ok(
        "SELECT quote_ident(column_name) AS \"column\", data_type AS \"type\" \
         FROM information_schema.columns WHERE quote_ident(table_name) = 'logs'",
    );
    assert!(
        columns.lines().any(|c| c.starts_with("timestamp|")),
        "{columns}"
    );
    // Client settings are the connection's own; the session is read-only.
    let shown = ok("SET statement_timeout = '30s'; SHOW statement_timeout");
    assert_eq!(shown.lines().last(), Some("30000ms"), "{shown}");
    assert!(ok("BEGIN; SELECT 1; COMMIT").contains('1'));

    // A driver binding parameters server-side (the extended protocol), on a pooled
    // connection that outlives a new commit: the second query sees the new rows.
    let script = r#"
import sys, psycopg
port, archive_cmd = sys.argv[1], sys.argv[2:]
with psycopg.connect(host="127.0.0.1", port=port, user="analyst", password="correct horse",
                     dbname="vigil", autocommit=True) as conn:
    q = "SELECT count(*) FROM logs WHERE service = %s AND level <> %s"
    print(conn.execute(q, ("gateway", "DEBUG")).fetchone()[0])
    print(conn.execute("SELECT count(*) FROM logs").fetchone()[0])
    import subprocess; subprocess.run(archive_cmd, check=True, capture_output=True)
    print(conn.execute("SELECT count(*) FROM logs").fetchone()[0])
"#;
    std::fs::create_dir(dir.path().join("more")).unwrap();
    let (more, _) = common::generate_with(&dir.path().join("more"), "1m", "5", &["--seed", "9"]);
    let more = more.to_str().unwrap();
    let vigil = env!("CARGO_BIN_EXE_vigil");
    let out =
        common::py_script_inline(script, &[port, vigil, "ingest", "--archive", archive, more]);
    let counts: Vec<u64> = out.lines().map(|l| l.parse().unwrap()).collect();
    let gateway = "SELECT count(*) AS n FROM logs WHERE service = 'gateway' AND level <> 'DEBUG'";
    let before: u64 = want
        .iter()
        .map(|r| r.rsplit('|').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(counts[1], before);
    assert!(
        counts[2] > counts[1],
        "a pooled connection saw no new commit: {counts:?}"
    );
    assert_eq!(
        counts[0] as i64,
        sql_rows(archive, gateway)[0]["n"].as_i64().unwrap()
    );

    // Nothing but a query, whatever the spelling; the archive is unchanged afterwards.
    for statement in [
        "INSERT INTO logs SELECT * FROM logs",
        "COPY (SELECT 1) TO '/tmp/vigil-pg-copy.csv'",
        "COPY logs FROM STDIN",
        "CREATE EXTERNAL TABLE p (line VARCHAR) STORED AS CSV LOCATION '/etc/passwd'",
        "CREATE TABLE t AS SELECT 1",
        "DROP TABLE logs",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let out = psql(port, "analyst", "correct horse", statement);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("ERROR"),
            "{statement}: {err}"
        );
    }
    assert!(!std::path::Path::new("/tmp/vigil-pg-copy.csv").exists());
    assert_eq!(
        ok("SELECT count(*) FROM logs").trim(),
        counts[2].to_string()
    );

    // A wrong password, an unknown user: refused alike.
    for (user, password) in [("analyst", "wrong"), ("postgres", "correct horse")] {
        let out = psql(port, user, password, "SELECT 1");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{user}/{password} got in");
        assert!(
            err.to_lowercase()
                .contains("password authentication failed"),
            "{user}: {err}"
        );
    }

    // The shipped Grafana dashboard's panels, as Grafana sends them over the wire: its time
    // macro expanded to the archive's hour, each answers rows.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            vigil_core::manifest_dir!()
                .join("../../deploy/compose/grafana/dashboards/vigil-services.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let span = &sql_rows(
        archive,
        "SELECT min(timestamp) AS a, max(timestamp) AS b FROM logs",
    )[0];
    let filter = format!(
        "timestamp BETWEEN '{}' AND '{}'",
        span["a"].as_str().unwrap(),
        span["b"].as_str().unwrap()
    );
    let panels = dashboard["panels"].as_array().unwrap();
    for panel in panels {
        let sql = panel["targets"][0]["rawSql"].as_str().unwrap();
        let sql = sql.replace("$__timeFilter(timestamp)", &filter);
        let rows = ok(&sql);
        assert!(rows.lines().count() > 10, "{}: {rows}", panel["title"]);
    }

    // Its own metrics and health, without a token (a Prometheus server and the kubelet
    // have none): every statement above counted once by its outcome.
    let (status, text) = common::http(&server.addr, "GET", "/metrics", &[], "");
    assert_eq!(status, 200);
    common::promtool_check_metrics(&text);
    let pg = |outcome: &str| {
        let outcome = format!("outcome=\"{outcome}\"");
        common::metric(
            &text,
            "vigil_queries_total",
            &["interface=\"pg\"", &outcome],
        )
        .unwrap_or(0.0)
    };
    // INSERT, CREATE TABLE AS and DROP plan, and are refused on their plan (the COPYs and
    // CREATE EXTERNAL TABLE are refused earlier, as invalid or before planning).
    assert!(pg("refused") >= 3.0, "{text}");
    assert!(pg("ok") >= 8.0, "{text}");
    assert_eq!(pg("failed"), 0.0, "{text}");
    assert!(
        common::metric(
            &text,
            "vigil_query_duration_seconds_count",
            &["interface=\"pg\""]
        )
        .unwrap()
            >= 14.0,
        "{text}"
    );
    let (status, ready) = common::http(&server.addr, "GET", "/readyz", &[], "");
    assert_eq!(status, 200, "{ready}");
    assert!(ready.contains(r#""archive":{"detail""#), "{ready}");
}

/// SIGTERM while a statement runs: no new connection is taken, the running statement still
/// gets its whole answer, and the server exits 0 once it is sent.
#[test]
fn serve_finishes_running_statements_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, _) = generate(dir.path(), "1m", "5", &[]);
    let archive = dir.path().join("archive");
    let archive = archive.to_str().unwrap();
    vigil_ok(&["ingest", "--archive", archive, logs.to_str().unwrap()]);
    let mut server = Server::start(archive, "t");
    let slow = "SELECT count(*) AS n FROM generate_series(1, 600000000)";
    let answer = std::thread::scope(|scope| {
        let running = scope.spawn(|| server.post(slow, &["Authorization: Bearer t"]));
        // Running once the server counts it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (_, m) = common::http(&server.addr, "GET", "/metrics", &[], "");
            if common::metric(&m, "vigil_queries_in_flight", &[]) == Some(1.0) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never running:\n{m}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let pid = server.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        // Closed to new connections from now on (give it a moment to stop listening).
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(common::try_http(&server.addr, "GET", "/healthz", &[], "").is_err());
        running.join().unwrap()
    });
    let (status, _, body) = answer;
    let body = String::from_utf8(body).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.trim(), r#"[{"n":600000000}]"#);
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "{exit}");
    let mut stderr = String::new();
    server.stderr.read_to_string(&mut stderr).unwrap();
    assert!(
        stderr.contains("waiting for 1 statements running"),
        "{stderr}"
    );
}
