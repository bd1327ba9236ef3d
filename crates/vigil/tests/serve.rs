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
    addr: String,
}

impl Server {
    fn start(archive: &str, token: &str) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["serve", "--archive", archive, "--http", "127.0.0.1:0"])
            .env("VIGIL_SQL_TOKEN", token)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("vigil runs");
        let mut line = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Server { child, addr }
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
}
