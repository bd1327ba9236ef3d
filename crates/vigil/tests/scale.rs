//! Detection shared by replicas (`[detect] distributed = true`), against a real broker: three
//! replicas in one consumer group give the anomalies one replica gives, through a replica
//! joining mid-stream and through kill -9 of the replica that merges.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::kafka::{Broker, Replica, Setup};
use common::{free_port, metric, try_http, vigil_ok};

/// What an alerting service compares: (rule, service, status, starts_at, ends_at, root cause).
type Key = (String, String, String, String, String, String);

/// `text` with every `${VAR:-default}` of `vars` replaced by its value.
fn substitute(mut text: String, vars: &[(&str, &str)]) -> String {
    for (var, value) in vars {
        let open = format!("${{{var}:-");
        while let Some(at) = text.find(&open) {
            let end = at + text[at..].find('}').unwrap();
            text.replace_range(at..=end, value);
        }
    }
    text
}

/// pipelines/services.toml reading `s.logs` and `s.metrics`, archiving into `archive`,
/// publishing to `anomalies`; distributed through `partials` when given.
fn pipeline(
    dir: &Path,
    broker: &Broker,
    group: &str,
    archive: &Path,
    anomalies: &str,
    partials: Option<&str>,
) -> PathBuf {
    let text = std::fs::read_to_string(common::shipped_pipeline("services.toml")).unwrap();
    let text = substitute(
        text,
        &[
            ("KAFKA_BROKERS", &broker.addr),
            ("VIGIL_GROUP_ID", group),
            ("LOGS_TOPIC", "s.logs"),
            ("METRICS_TOPIC", "s.metrics"),
            ("VIGIL_ARCHIVE", archive.to_str().unwrap()),
            ("VIGIL_FLUSH_INTERVAL", "1s"),
            ("VIGIL_ALLOWED_LATENESS", "5s"),
            ("ANOMALY_TOPIC", anomalies),
            ("ALERTMANAGER_URL", ""),
            ("VIGIL_DISTRIBUTED", &partials.is_some().to_string()),
            ("PARTIALS_TOPIC", partials.unwrap_or("unused")),
        ],
    )
    .replace(
        "start_from = \"earliest\"",
        "start_from = \"earliest\"\n\n[sources.properties]\n\"session.timeout.ms\" = 6000\n\"heartbeat.interval.ms\" = 1000",
    );
    let path = dir.join(format!("{group}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A replica with its `/metrics` port.
struct Running {
    replica: Replica,
    ops: String,
}

fn start(file: &Path, name: &str) -> Running {
    let ops = format!("127.0.0.1:{}", free_port());
    Running {
        replica: Replica::start_with(file, name, &["--listen", &ops]),
        ops,
    }
}

impl Running {
    fn metric(&self, name: &str) -> Option<f64> {
        let (_, text) = try_http(&self.ops, "GET", "/metrics", &[], "").ok()?;
        metric(&text, name, &[])
    }
}

/// Waits until some replica's detection has closed its windows through `through` (µs).
fn wait_closed(replicas: &mut [&mut Running], through: i64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let closed = replicas
            .iter()
            .filter_map(|r| r.metric("vigil_detection_closed_through_seconds"))
            .fold(f64::MIN, f64::max);
        if closed * 1e6 >= through as f64 {
            return;
        }
        for r in replicas.iter_mut() {
            r.replica.assert_running();
        }
        assert!(
            Instant::now() < deadline,
            "detection closed through {closed} s only, waiting for {} s:\n{}",
            through as f64 / 1e6,
            replicas
                .iter()
                .map(|r| r.replica.log_text())
                .collect::<Vec<_>>()
                .join("\n----\n")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The anomaly events of `topic` starting before `before`, by key, with how often each came
/// and the ids it came with.
fn events(broker: &Broker, topic: &str, before: &str) -> BTreeMap<Key, (usize, BTreeSet<String>)> {
    let mut out: BTreeMap<Key, (usize, BTreeSet<String>)> = BTreeMap::new();
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    for m in broker.consume_all(topic) {
        let e = &m["value"];
        if text(&e["starts_at"]).as_str() >= before {
            continue;
        }
        let key = (
            text(&e["rule"]),
            text(&e["service"]),
            text(&e["status"]),
            text(&e["starts_at"]),
            text(&e["ends_at"]),
            text(&e["incident"]["root_cause_service"]),
        );
        let entry = out.entry(key).or_default();
        entry.0 += 1;
        entry.1.insert(text(&e["id"]));
    }
    out
}

/// The lines of an NDJSON file with `timestamp` in `[from, to)` (RFC 3339 prefixes).
fn between(path: &Path, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let t = v["timestamp"].as_str().unwrap();
        if (from..to).contains(&t) {
            out.push_str(line);
            out.push('\n');
        }
    }
    let part = path.with_extension(format!("{from}.ndjson"));
    std::fs::write(&part, out).unwrap();
    part
}

/// Sends the logs (keyed by trace id: a trace's records meet in one replica, as the
/// OpenTelemetry collector's `partition_traces_by_id` does) and metrics between `from` and
/// `to`.
fn produce(broker: &Broker, logs: &Path, metrics: &Path, from: &str, to: &str) {
    for (topic, file, key) in [
        ("s.logs", logs, "trace_id"),
        ("s.metrics", metrics, "service"),
    ] {
        let part = between(file, from, to);
        vigil_ok(&[
            "produce",
            "--brokers",
            &broker.addr,
            "--topic",
            topic,
            "--key",
            key,
            part.to_str().unwrap(),
        ]);
    }
}

fn stop_all(replicas: &mut [Running]) {
    for r in replicas {
        r.replica.stop();
    }
}

fn wait_all(replicas: &mut [Running], through: &str) {
    wait_closed(
        &mut replicas.iter_mut().collect::<Vec<_>>(),
        common::micros(through),
        Duration::from_secs(300),
    );
}

#[test]
fn three_replicas_give_the_anomalies_of_one_through_a_join_and_a_kill_9() {
    let Setup { broker, dir, .. } = Setup::new(&[
        ("s.logs", 6),
        ("s.metrics", 2),
        ("one.anomalies", 1),
        ("three.anomalies", 1),
        ("three.partials", 1),
        ("kill.anomalies", 1),
        ("kill.partials", 1),
    ]);
    // Two incidents, a decoy (errors shorter than any rule's `for`) and a traffic drop,
    // after a quiet half hour; then a quiet end.
    let (logs, metrics) = common::generate(
        dir.path(),
        "70m",
        "4",
        &[
            "errors:database@32m+8m",
            "errors:token-service@44m+40s",
            "latency:ai-service@48m+6m",
            "traffic-drop:auth-service@57m+5m",
        ],
    );
    let settled = "2025-06-02T10:07:00Z";
    // Events of windows starting before this are compared (the last windows stay open in a
    // live run).
    let before = "2025-06-02T10:06:00";

    // Two replicas of a distributed pipeline while the first 25 minutes arrive; a third joins
    // and the next 13 minutes arrive; the merging replica is killed mid-incident (database
    // errors from 32m), before the rest arrives.
    produce(&broker, &logs, &metrics, "", "2025-06-02T09:25");
    let archive = dir.path().join("kill");
    let file = pipeline(
        dir.path(),
        &broker,
        "kill",
        &archive,
        "kill.anomalies",
        Some("kill.partials"),
    );
    let mut replicas: Vec<Running> = (0..2).map(|i| start(&file, &format!("kill-{i}"))).collect();
    wait_all(&mut replicas, "2025-06-02T09:20:00Z");
    replicas.push(start(&file, "kill-2"));
    produce(
        &broker,
        &logs,
        &metrics,
        "2025-06-02T09:25",
        "2025-06-02T09:38",
    );
    wait_all(&mut replicas, "2025-06-02T09:35:00Z");
    let owner = replicas
        .iter()
        .position(|r| r.metric("vigil_detection_merging") == Some(1.0))
        .expect("a replica merges");
    replicas[owner].replica.kill9();
    // Tansu 0.6 never hands a dead member's partitions to the members left (see
    // `py/kafka_client.py`), so the takeover is an operator's on such a broker: the others
    // leave cleanly and three replicas start in a new group. Offsets come from the archive,
    // stage 2's state from its checkpoint (named by the partials topic, not the group).
    stop_all(&mut replicas);
    produce(&broker, &logs, &metrics, "2025-06-02T09:38", "9999");
    let file = pipeline(
        dir.path(),
        &broker,
        "kill-again",
        &archive,
        "kill.anomalies",
        Some("kill.partials"),
    );
    let mut replicas: Vec<Running> = (0..3)
        .map(|i| start(&file, &format!("again-{i}")))
        .collect();
    wait_all(&mut replicas, settled);
    stop_all(&mut replicas);
    // The new merging replica took over mid-incident from the checkpoint, with open windows.
    let resumed = replicas
        .iter()
        .map(|r| r.replica.log_text())
        .find(|log| log.contains("merging the partials from_offset="))
        .expect("a replica merged");
    assert!(
        !resumed.contains("from_offset=0 ") && !resumed.contains("open_states=0\n"),
        "{resumed}"
    );
    eprintln!(
        "{}",
        resumed
            .lines()
            .filter(|l| l.contains("merging the partials") || l.contains("read again"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // One replica, detecting alone, over the whole stream: the reference.
    let file = pipeline(
        dir.path(),
        &broker,
        "one",
        &dir.path().join("one"),
        "one.anomalies",
        None,
    );
    let mut one = vec![start(&file, "one")];
    wait_all(&mut one, settled);
    stop_all(&mut one);
    let reference = events(&broker, "one.anomalies", before);
    let firing: BTreeSet<(&str, &str)> = reference
        .keys()
        .filter(|k| k.2 == "firing")
        .map(|k| (k.0.as_str(), k.1.as_str()))
        .collect();
    assert!(
        firing.len() >= 3,
        "the reference fires too little to compare: {reference:#?}"
    );
    assert!(reference.values().all(|(n, _)| *n == 1), "{reference:#?}");
    eprintln!("reference: {:#?}", reference.keys().collect::<Vec<_>>());

    // Three replicas in one group over the whole stream.
    let file = pipeline(
        dir.path(),
        &broker,
        "three",
        &dir.path().join("three"),
        "three.anomalies",
        Some("three.partials"),
    );
    let mut replicas: Vec<Running> = (0..3)
        .map(|i| start(&file, &format!("three-{i}")))
        .collect();
    wait_all(&mut replicas, settled);
    let merging = replicas
        .iter()
        .filter(|r| r.metric("vigil_detection_merging") == Some(1.0))
        .count();
    stop_all(&mut replicas);
    assert_eq!(merging, 1, "one replica merges");
    let three = events(&broker, "three.anomalies", before);
    assert_eq!(
        three.keys().collect::<Vec<_>>(),
        reference.keys().collect::<Vec<_>>()
    );
    assert!(three.values().all(|(n, _)| *n == 1), "{three:#?}");

    let killed = events(&broker, "kill.anomalies", before);
    assert_eq!(
        killed.keys().collect::<Vec<_>>(),
        reference.keys().collect::<Vec<_>>()
    );
    // At least once across the kill: an event published after the last checkpoint is
    // published again by the next merging replica, with the same id (a consumer drops it).
    let repeated = killed.values().filter(|(n, _)| *n > 1).count();
    eprintln!(
        "{repeated} of {} events published twice across the kill",
        killed.len()
    );
    for (key, (n, ids)) in &killed {
        assert!(*n <= 2 && ids.len() == 1, "{key:?}: {n} times, ids {ids:?}");
    }
}
