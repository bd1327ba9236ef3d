//! Anomalies reach a real Alertmanager (Debian's `prometheus-alertmanager`, installed by
//! .ci/run) as alerts: read back from its API while the episode fires, with the labels and
//! annotations routing and runbooks need, and gone once the episode resolved.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, generate, http, micros, try_http};

/// An Alertmanager on a free port, with a route that notifies nobody; killed when dropped.
struct Alertmanager {
    child: Child,
    addr: String,
}

impl Alertmanager {
    fn start(dir: &Path) -> Alertmanager {
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n",
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let binary = ["prometheus-alertmanager", "alertmanager"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").output().is_ok())
            .expect("Alertmanager is installed (apt-get install prometheus-alertmanager, as .ci/run does)");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address={addr}"))
            // No cluster: no gossip port to collide with other tests.
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Alertmanager starts");
        let am = Alertmanager { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !try_http(&am.addr, "GET", "/-/ready", &[], "").is_ok_and(|(s, _)| s == 200) {
            assert!(Instant::now() < deadline, "Alertmanager never became ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        am
    }

    /// The alerts it holds now, named `name`.
    fn alerts(&self, name: &str) -> Vec<serde_json::Value> {
        let (status, body) = http(&self.addr, "GET", "/api/v2/alerts", &[], "");
        assert_eq!(status, 200, "{body}");
        let all: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        all.into_iter()
            .filter(|a| a["labels"]["alertname"] == name)
            .collect()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_episode_fires_in_alertmanager_and_resolves_there() {
    let dir = tempfile::tempdir().unwrap();
    let am = Alertmanager::start(dir.path());
    let (logs, _) = generate(dir.path(), "40m", "8", &["errors:token-service@5m+20m"]);
    let pipeline = dir.path().join("alerts.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"[pipeline]
name = "alerts"

[[sources]]
type = "stdin"
kind = "logs"

[archive]
url = "{archive}"

[detect]
allowed_lateness = "10s"
alertmanagers = ["http://{am}"]
alertmanager_resend = "2s"

[[rules]]
name = "Token Service Errors"
table = "logs"
window = "1m"
signal = "avg(CASE WHEN level IN ('ERROR', 'CRITICAL') THEN 1.0 ELSE 0.0 END)"
where = "service = 'token-service'"
condition = "> 0.05"
for = "5m"
severity = "P2"
summary = "Token service error rate above 5%"
runbook_url = "https://runbooks.example.com/deals/token-service-errors"
labels = {{ team = "identity" }}
"#,
            archive = dir.path().join("archive").display(),
            am = am.addr,
        ),
    )
    .unwrap();

    // The records up to 25 minutes in: the episode has fired and still fires.
    let text = std::fs::read_to_string(&logs).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let time = |l: &str| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        micros(v["timestamp"].as_str().unwrap())
    };
    let t0 = time(lines[0]);
    const MIN: i64 = 60_000_000;
    let split = lines.iter().position(|l| time(l) >= t0 + 25 * MIN).unwrap();
    let mut vigil = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["run", "--pipeline", pipeline.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = vigil.stdin.take().unwrap();
    for l in &lines[..split] {
        writeln!(stdin, "{l}").unwrap();
    }
    stdin.flush().unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    let firing = loop {
        let found = am.alerts("Token Service Errors");
        if !found.is_empty() {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "no alert in Alertmanager after a minute"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(firing.len(), 1, "{firing:?}");
    let a = &firing[0];
    assert_eq!(a["status"]["state"], "active", "{a}");
    assert_eq!(a["labels"]["severity"], "P2", "{a}");
    assert_eq!(a["labels"]["service"], "token-service", "{a}");
    assert_eq!(a["labels"]["team"], "identity", "{a}");
    assert_eq!(
        a["annotations"]["summary"], "Token service error rate above 5%",
        "{a}"
    );
    assert_eq!(
        a["annotations"]["runbook_url"], "https://runbooks.example.com/deals/token-service-errors",
        "{a}"
    );
    assert!(a["annotations"]["description"].is_string(), "{a}");
    // It started when the errors did (event time), and ends only if vigil stops re-sending it.
    let starts = micros(a["startsAt"].as_str().unwrap());
    assert!(
        (t0 + 4 * MIN..=t0 + 7 * MIN).contains(&starts),
        "starts {} min in",
        (starts - t0) / MIN
    );
    let ends = micros(a["endsAt"].as_str().unwrap());
    let now = chrono::Utc::now().timestamp_micros();
    assert!(ends > now, "{a}");

    // Re-sent while it fires: Alertmanager sees it updated.
    let updated = a["updatedAt"].clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    while am.alerts("Token Service Errors")[0]["updatedAt"] == updated {
        assert!(Instant::now() < deadline, "not re-sent");
        std::thread::sleep(Duration::from_millis(200));
    }

    // The rest: the errors stop, the episode resolves, and Alertmanager lets the alert go.
    for l in &lines[split..] {
        writeln!(stdin, "{l}").unwrap();
    }
    drop(stdin);
    let out = vigil.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(!log.contains("Alertmanager"), "{log}");
    let left = am.alerts("Token Service Errors");
    assert!(left.is_empty(), "still active after resolving: {left:?}");
}
