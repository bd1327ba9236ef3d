//! A real Kafka-protocol broker (Tansu) per test, a Kafka client that is not vigil (Python
//! confluent-kafka), and `vigil run` as a child process that can be killed.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{json_rows, vigil};

/// The Tansu binary: `VIGIL_TANSU` (set by .ci/run), the cache .ci/run installs into, or PATH.
fn tansu() -> PathBuf {
    if let Some(p) = std::env::var_os("VIGIL_TANSU") {
        return p.into();
    }
    let cached =
        Path::new(&std::env::var("HOME").unwrap_or_default()).join(".cache/vigil/tools/bin/tansu");
    if cached.exists() {
        return cached;
    }
    "tansu".into()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Tansu broker with in-memory storage on a free port; killed when dropped.
pub struct Broker {
    child: Child,
    /// `host:port`.
    pub addr: String,
}

impl Broker {
    pub fn start() -> Broker {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start the Tansu broker ({e}): run .ci/run, which installs it, or set VIGIL_TANSU"
                )
            });
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "Tansu did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Broker { child, addr }
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: usize) {
        client(&["create-topic", &self.addr, topic, &partitions.to_string()]);
    }

    /// Produces seed-format records `start..start+n` (every `bad_every`-th malformed) with
    /// confluent-kafka; returns its JSON report.
    pub fn produce(
        &self,
        topic: &str,
        start: u64,
        n: u64,
        partitions: usize,
        bad_every: u64,
    ) -> serde_json::Value {
        let out = client(&[
            "produce",
            &self.addr,
            topic,
            "--start",
            &start.to_string(),
            "--records",
            &n.to_string(),
            "--partitions",
            &partitions.to_string(),
            "--bad-every",
            &bad_every.to_string(),
        ]);
        serde_json::from_str(out.trim()).expect("producer report")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test's broker with its topics, and a temporary directory holding the archive.
pub struct Setup {
    pub broker: Broker,
    pub dir: tempfile::TempDir,
    /// `dir/archive`, not created yet.
    pub archive: PathBuf,
}

impl Setup {
    /// A fresh broker with each `(topic, partitions)` created.
    pub fn new(topics: &[(&str, usize)]) -> Setup {
        let broker = Broker::start();
        for (topic, partitions) in topics {
            broker.create_topic(topic, *partitions);
        }
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("archive");
        Setup {
            broker,
            dir,
            archive,
        }
    }
}

impl Broker {
    /// Every message of `topic` (until it has been idle for 5 s), as the client reports them:
    /// JSON objects with `key` and `value`.
    pub fn consume_all(&self, topic: &str) -> Vec<serde_json::Value> {
        client(&["consume", &self.addr, topic, "--count", "0", "--idle", "5"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// Runs the Python Kafka client; returns stdout.
pub fn client(args: &[&str]) -> String {
    super::py_script("kafka_client.py", args)
}

/// A pipeline file consuming `topic` (logs) from `broker` into `archive`, committing often.
pub fn pipeline(dir: &Path, broker: &str, topic: &str, group: &str, archive: &Path) -> PathBuf {
    pipeline_with(dir, broker, topic, group, archive, "")
}

/// [`pipeline`] with `extra` lines added to the Kafka source.
pub fn pipeline_with(
    dir: &Path,
    broker: &str,
    topic: &str,
    group: &str,
    archive: &Path,
    extra: &str,
) -> PathBuf {
    let path = dir.join(format!("{group}.toml"));
    let text = format!(
        r#"
[pipeline]
name = "kafka-test"

[[sources]]
type = "kafka"
brokers = "{broker}"
group_id = "{group}"
topics = [{{ name = "{topic}", kind = "logs" }}]
max_batch_records = 1000
max_batch_wait = "100ms"
{extra}

[sources.properties]
"session.timeout.ms" = 6000
"max.poll.interval.ms" = 10000
"heartbeat.interval.ms" = 1000

[schema.logs.fields]
"additional_data.seq" = "int64"
"additional_data.status_code" = "int32"
"additional_data.processing_time_ms" = "float64"

[decode]
max_record_bytes = "8KiB"

[archive]
url = "{archive}"

[archive.flush]
max_rows = 3000
interval = "300ms"
"#,
        archive = archive.display()
    );
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    path
}

/// `vigil run` as a child process.
pub struct Replica {
    child: Option<Child>,
    pub name: String,
    log: PathBuf,
}

impl Replica {
    pub fn start(pipeline: &Path, name: &str) -> Replica {
        Self::start_with(pipeline, name, &[])
    }

    /// [`Replica::start`] with more `vigil run` arguments.
    pub fn start_with(pipeline: &Path, name: &str, more: &[&str]) -> Replica {
        let log = pipeline.with_file_name(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["run", "--pipeline"])
            .env("VIGIL_LOG", "warn,vigil=debug")
            .arg(pipeline)
            .args(more)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("vigil starts");
        Replica {
            child: Some(child),
            name: name.into(),
            log,
        }
    }

    /// SIGKILL: no chance to commit anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM, then waits: the replica commits what it has and must exit 0.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let status = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                assert!(
                    s.success(),
                    "{} exited with {s}:\n{}",
                    self.name,
                    self.log_text()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop after SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Fails the test if the replica has exited on its own.
    pub fn assert_running(&mut self) {
        if let Some(c) = self.child.as_mut()
            && let Some(s) = c.try_wait().unwrap()
        {
            panic!(
                "{} exited on its own with {s}:\n{}",
                self.name,
                self.log_text()
            );
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Rows of a query over the archive, or none if the tables do not exist yet.
pub fn query(archive: &Path, sql: &str) -> Vec<serde_json::Value> {
    let out = vigil(&[
        "sql",
        "--archive",
        archive.to_str().unwrap(),
        "--format",
        "json",
        sql,
    ]);
    if !out.status.success() {
        return Vec::new();
    }
    json_rows(&String::from_utf8(out.stdout).unwrap())
}

/// `count(*)` of a table, 0 if it does not exist yet.
pub fn count(archive: &Path, table: &str) -> u64 {
    query(archive, &format!("SELECT count(*) AS n FROM {table}"))
        .first()
        .and_then(|r| r["n"].as_u64())
        .unwrap_or(0)
}

/// Waits until `count(table) >= n`, checking the replicas stay up; returns the count.
pub fn wait_for(
    archive: &Path,
    table: &str,
    n: u64,
    timeout: Duration,
    replicas: &mut [&mut Replica],
) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        let c = count(archive, table);
        if c >= n {
            return c;
        }
        for r in replicas.iter_mut() {
            r.assert_running();
        }
        if Instant::now() >= deadline {
            let logs: Vec<String> = replicas
                .iter()
                .map(|r| format!("--- {}\n{}", r.name, r.log_text()))
                .collect();
            panic!(
                "{table} has {c} rows, expected {n}, after {timeout:?}\n{}",
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
