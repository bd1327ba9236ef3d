//! An S3 server for tests: the moto server .ci/run starts once per run (`VIGIL_S3_ENDPOINT`),
//! or, without it, a moto server of this test's own, started from the venv of `VIGIL_PYTHON`
//! (`pip install -r .ci/requirements.txt`) and stopped when the test ends. Used by the store's
//! tests and, through `#[path]`, by the CLI's. Either way moto runs through `moto_server.py`,
//! which makes conditional PUTs atomic as S3 does: plain moto lets two racing
//! `If-None-Match: *` PUTs of one Delta version both succeed under load, and a commit is lost.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A running S3 server; a server this test started stops when it is dropped.
pub struct S3 {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    server: Option<Child>,
}

impl S3 {
    /// The shared server, or a new one.
    pub fn start() -> S3 {
        if let Ok(endpoint) = std::env::var("VIGIL_S3_ENDPOINT") {
            return S3 {
                endpoint,
                server: None,
            };
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let python = std::env::var("VIGIL_PYTHON").unwrap_or_else(|_| "python3".into());
        let server = Command::new(&python)
            .arg(vigil_core::manifest_dir!().join("../vigil-store/tests/common/moto_server.py"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start moto with {python} ({e}): run .ci/run, or pip install -r .ci/requirements.txt and set VIGIL_PYTHON")
            });
        let s3 = S3 {
            endpoint: format!("http://127.0.0.1:{port}"),
            server: Some(server),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s3
    }

    /// A new, empty bucket with a name no other test uses.
    pub fn bucket(&self) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "vigil-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        // moto creates a bucket on an unsigned `PUT /<bucket>`.
        let addr = self.endpoint.trim_start_matches("http://");
        let mut conn = TcpStream::connect(addr).expect("connect to the S3 server");
        write!(
            conn,
            "PUT /{name} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        conn.read_to_string(&mut reply).unwrap();
        assert!(
            reply.starts_with("HTTP/1.1 200"),
            "creating bucket {name}: {reply}"
        );
        name
    }

    /// object_store options for this server (moto takes any credentials).
    pub fn options(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("aws_endpoint".to_string(), self.endpoint.clone()),
            ("aws_region".to_string(), "us-east-1".to_string()),
            ("aws_access_key_id".to_string(), "vigil-test".to_string()),
            (
                "aws_secret_access_key".to_string(),
                "vigil-test".to_string(),
            ),
        ])
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}
