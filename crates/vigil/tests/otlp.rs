//! OpenTelemetry in: the Python OpenTelemetry SDK exporting to vigil's OTLP/HTTP receiver, and
//! OTLP payloads (protobuf and JSON) on Kafka as the collector's Kafka exporter writes them,
//! both into the `logs`, `spans` and `metrics` tables; bad requests answered 4xx, bad payloads
//! dead-lettered; privacy policies applied before anything is archived.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::kafka::{Broker, Replica, query, wait_for};
use common::{free_port, try_http};
use serde_json::Value;

/// Runs tests/py/otlp_client.py; returns its JSON report.
fn otlp_client(args: &[&str]) -> Value {
    serde_json::from_str(&common::py_script("otlp_client.py", args)).expect("one JSON report")
}

/// `vigil run` of `pipeline`, once its receiver listens on `addr`.
fn start_receiver(pipeline: &Path, addr: &str, name: &str) -> Replica {
    let mut vigil = Replica::start(pipeline, name);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        vigil.assert_running();
        assert!(
            Instant::now() < deadline,
            "the receiver did not listen on {addr}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    vigil
}

fn one(archive: &Path, sql: &str) -> Value {
    let rows = query(archive, sql);
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows.into_iter().next().unwrap()
}

fn n(archive: &Path, sql: &str) -> u64 {
    one(archive, sql)["n"].as_u64().unwrap()
}

const PRIVACY: &str = r#"
[privacy]
key = "test-only-key-0123456789"
fields = [{ field = "user_id", action = "pseudonymize" }]
"#;

#[test]
fn the_sdk_exports_traces_logs_and_metrics_to_the_receiver_and_the_archive_holds_them() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let pipeline = dir.path().join("otlp.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"
[pipeline]
name = "otlp-test"

[[sources]]
type = "otlp"
listen = "{addr}"
token = "s3cret"
max_body_bytes = "64KiB"

[archive]
url = "{archive}"

[archive.flush]
interval = "300ms"
{PRIVACY}"#,
            archive = archive.display()
        ),
    )
    .unwrap();
    let mut vigil = start_receiver(&pipeline, &addr, "receiver");

    // What a client gets wrong is answered 4xx with a message, and nothing is archived.
    let auth = "Authorization: Bearer s3cret";
    let proto = "Content-Type: application/x-protobuf";
    for (path, headers, body, want) in [
        ("/v1/traces", vec![proto], "x".to_string(), 401),
        (
            "/v1/traces",
            vec![proto, "Authorization: Bearer wrong"],
            "x".into(),
            401,
        ),
        (
            "/v1/traces",
            vec![proto, auth],
            "\u{ff}\u{ff}not protobuf".into(),
            400,
        ),
        (
            "/v1/logs",
            vec!["Content-Type: application/json", auth],
            r#"{"resourceLogs": ["#.into(),
            400,
        ),
        (
            "/v1/traces",
            vec!["Content-Type: text/plain", auth],
            "hello".into(),
            415,
        ),
        (
            "/v1/traces",
            vec![proto, auth, "Content-Encoding: br"],
            "x".into(),
            415,
        ),
        (
            "/v1/traces",
            vec![proto, auth, "Content-Encoding: gzip"],
            "not gzip".into(),
            400,
        ),
        ("/v1/traces", vec![proto, auth], "y".repeat(100 << 10), 413),
        ("/v1/profiles", vec![proto, auth], String::new(), 404),
    ] {
        let (status, body) = try_http(&addr, "POST", path, &headers, &body).unwrap();
        assert_eq!(status, want, "{path} {headers:?}: {body}");
    }
    let (status, _) = try_http(&addr, "GET", "/v1/traces", &[auth], "").unwrap();
    assert_eq!(status, 405);

    let sent = otlp_client(&[
        "sdk",
        &format!("http://{addr}"),
        "--traces",
        "20",
        "--token",
        "s3cret",
    ]);
    let spans = sent["spans"].as_u64().unwrap();
    let logs = sent["logs"].as_u64().unwrap();
    assert_eq!((spans, logs), (60, 40), "{sent}");
    wait_for(
        &archive,
        "spans",
        spans,
        Duration::from_secs(60),
        &mut [&mut vigil],
    );
    wait_for(
        &archive,
        "logs",
        logs,
        Duration::from_secs(60),
        &mut [&mut vigil],
    );
    vigil.stop();

    // Spans: every one, with its trace, duration, kind, status and HTTP status.
    let traces: BTreeSet<String> = query(&archive, "SELECT DISTINCT trace_id FROM spans")
        .iter()
        .map(|r| r["trace_id"].as_str().unwrap().to_owned())
        .collect();
    let want: BTreeSet<String> = sent["trace_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(traces, want);
    let durations = sent["span_durations_ms"].as_object().unwrap();
    for r in query(&archive, "SELECT span_id, duration_ms FROM spans") {
        let id = r["span_id"].as_str().unwrap();
        let got = r["duration_ms"].as_f64().unwrap();
        let want = durations[id].as_f64().unwrap();
        assert!(
            (got - want).abs() < 0.002,
            "span {id}: {got} ms, sent {want} ms"
        );
    }
    let errors = sent["error_traces"].as_u64().unwrap();
    assert_eq!(
        n(
            &archive,
            "SELECT count(*) AS n FROM spans WHERE status = 'error'"
        ),
        errors
    );
    assert_eq!(
        n(
            &archive,
            "SELECT count(*) AS n FROM spans WHERE service = 'checkout' AND kind = 'server' AND http_status = 500"
        ),
        errors
    );
    // Parents: each checkout span's parent is a frontend client span of the same trace.
    assert_eq!(
        n(
            &archive,
            "SELECT count(*) AS n FROM spans c JOIN spans p ON c.parent_span_id = p.span_id AND c.trace_id = p.trace_id \
             WHERE c.service = 'checkout' AND p.service = 'frontend' AND p.kind = 'client'"
        ),
        20
    );

    // Logs: levels, bodies, and the trace and span they were written in.
    assert_eq!(
        n(
            &archive,
            "SELECT count(*) AS n FROM logs WHERE level = 'ERROR'"
        ),
        sent["error_logs"].as_u64().unwrap()
    );
    assert_eq!(
        n(
            &archive,
            "SELECT count(*) AS n FROM logs l JOIN spans s ON l.span_id = s.span_id AND l.trace_id = s.trace_id"
        ),
        logs
    );
    assert_eq!(
        n(
            &archive,
            "SELECT count(*) AS n FROM logs WHERE message LIKE 'checkout %' AND service = 'checkout'"
        ),
        20
    );

    // Metrics: the counter's total per service, the histogram as buckets with its count.
    for service in ["frontend", "checkout"] {
        let r = one(
            &archive,
            &format!(
                "SELECT max(value) AS v FROM metrics WHERE name = 'requests' AND service = '{service}' AND type = 'counter'"
            ),
        );
        assert_eq!(r["v"].as_f64(), Some(20.0), "{service}");
        let r = one(
            &archive,
            &format!(
                "SELECT max(value) AS v FROM metrics WHERE name = 'request.duration_count' AND service = '{service}'"
            ),
        );
        assert_eq!(r["v"].as_f64(), Some(20.0), "{service}");
        let r = one(
            &archive,
            &format!(
                "SELECT max(value) AS v FROM metrics WHERE name = 'request.duration_bucket' AND service = '{service}'"
            ),
        );
        assert_eq!(r["v"].as_f64(), Some(20.0), "{service}");
    }
    assert_eq!(
        n(
            &archive,
            "SELECT count(*) AS n FROM metrics WHERE name = 'queue.depth' AND value = 3"
        ),
        2
    );

    // Privacy: no raw user id anywhere; the pseudonyms still join logs to spans.
    for (table, text) in [
        (
            "logs",
            "coalesce(user_id, '') || ' ' || coalesce(additional_data, '')",
        ),
        ("spans", "coalesce(attributes, '')"),
    ] {
        assert_eq!(
            n(
                &archive,
                &format!("SELECT count(*) AS n FROM {table} WHERE {text} LIKE '%user-%'")
            ),
            0,
            "{table}"
        );
    }
    assert_eq!(
        n(&archive, "SELECT count(DISTINCT user_id) AS n FROM logs"),
        5
    );
    assert!(
        n(
            &archive,
            "SELECT count(*) AS n FROM logs l JOIN spans s ON l.trace_id = s.trace_id \
             WHERE s.attributes LIKE '%\"user_id\":\"' || l.user_id || '\"%'"
        ) >= 20
    );
    assert_eq!(n(&archive, "SELECT count(*) AS n FROM dead_letters"), 0);
}

#[test]
fn otlp_on_kafka_in_protobuf_and_json_reaches_the_same_tables_and_bad_payloads_are_dead_letters() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let produce = |topic: &str, signal: &str, encoding: &str| {
        otlp_client(&[
            "kafka",
            &broker.addr,
            topic,
            "--signal",
            signal,
            "--encoding",
            encoding,
            "--count",
            "10",
            "--bad",
        ])
    };
    let spans = produce("otlp_spans", "traces", "proto");
    let logs = produce("otlp_logs", "logs", "json");
    let metrics = produce("otlp_metrics", "metrics", "proto");
    let pipeline = dir.path().join("kafka-otlp.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"
[pipeline]
name = "otlp-kafka"

[[sources]]
type = "kafka"
brokers = "{broker}"
group_id = "otlp"
topics = [
  {{ name = "otlp_spans", kind = "spans", format = "otlp_proto" }},
  {{ name = "otlp_logs", kind = "logs", format = "otlp_json" }},
  {{ name = "otlp_metrics", kind = "metrics", format = "otlp_proto" }},
]
max_batch_wait = "100ms"

[schema.logs.fields]
"additional_data.attempt" = "int64"

[archive]
url = "{archive}"
"#,
            broker = broker.addr,
            archive = archive.display()
        ),
    )
    .unwrap();
    common::vigil_ok(&[
        "run",
        "--pipeline",
        pipeline.to_str().unwrap(),
        "--until-end",
    ]);

    let records = |r: &Value| r["records"].as_u64().unwrap();
    assert_eq!(
        n(&archive, "SELECT count(*) AS n FROM spans"),
        records(&spans)
    );
    assert_eq!(
        n(&archive, "SELECT count(*) AS n FROM logs"),
        records(&logs)
    );
    // Gauge and sum points one row each; each histogram point its buckets, count, sum, min
    // and max: one `_count` row per point.
    assert_eq!(
        n(
            &archive,
            "SELECT count(*) AS n FROM metrics WHERE name IN ('queue.depth', 'requests', 'request.duration_count')"
        ),
        records(&metrics)
    );
    assert_eq!(
        n(
            &archive,
            "SELECT count(*) AS n FROM metrics WHERE name = 'request.duration_bucket'"
        ),
        50
    );
    let traces: BTreeSet<String> = query(
        &archive,
        "SELECT DISTINCT trace_id FROM spans UNION SELECT DISTINCT trace_id FROM logs",
    )
    .iter()
    .map(|r| r["trace_id"].as_str().unwrap().to_owned())
    .collect();
    let sent: BTreeSet<String> = spans["trace_ids"]
        .as_array()
        .unwrap()
        .iter()
        .chain(logs["trace_ids"].as_array().unwrap())
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(traces, sent);
    // The JSON logs' typed attribute has its column, `user_id` its own.
    assert_eq!(
        n(
            &archive,
            "SELECT count(*) AS n FROM logs WHERE attempt IS NOT NULL"
        ),
        records(&logs)
    );
    assert_eq!(
        n(
            &archive,
            "SELECT count(*) AS n FROM logs WHERE user_id LIKE 'user%'"
        ),
        records(&logs)
    );
    // Three bad messages per topic, each a dead letter with its bytes, by topic and reason.
    let dead = query(
        &archive,
        "SELECT kind, reason_code, count(*) AS n, min(raw_len) AS len, \
         sum(CASE WHEN length(encode(raw, 'hex')) = 2 * raw_len THEN 1 ELSE 0 END) AS whole \
         FROM dead_letters GROUP BY 1, 2 ORDER BY 1, 2",
    );
    let got: Vec<(String, String, u64)> = dead
        .iter()
        .map(|r| {
            assert!(r["len"].as_u64().unwrap() > 0, "{r}");
            assert_eq!(r["whole"], r["n"], "raw bytes kept whole: {r}");
            (
                r["kind"].as_str().unwrap().to_owned(),
                r["reason_code"].as_str().unwrap().to_owned(),
                r["n"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("logs".to_owned(), "invalid_json".to_owned(), 3),
            ("metrics".to_owned(), "invalid_protobuf".to_owned(), 3),
            ("spans".to_owned(), "invalid_protobuf".to_owned(), 3),
        ]
    );
}

/// Every message of `topics` from the beginning (until idle 3 s): how many, and how many hold
/// `needle` anywhere in their bytes.
fn scan_topics(broker: &str, topics: &[&str], needle: &str) -> (u64, u64) {
    let script = r#"
import sys, time
from confluent_kafka import Consumer
brokers, needle, topics = sys.argv[1], sys.argv[2].encode(), sys.argv[3:]
c = Consumer({"bootstrap.servers": brokers, "group.id": "scan-%d" % time.time_ns(),
              "auto.offset.reset": "earliest", "enable.auto.commit": False})
c.subscribe(topics)
n = hits = 0
last = time.time()
while time.time() - last < 3:
    m = c.poll(0.5)
    if m is None or m.error():
        continue
    last = time.time()
    n += 1
    hits += needle in (m.value() or b"") or needle in (m.key() or b"")
c.close()
print(n, hits)
"#;
    let mut args = vec![broker, needle];
    args.extend(topics);
    let text = common::py_script_inline(script, &args);
    let mut it = text.split_whitespace().map(|x| x.parse().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

/// With a Kafka topic of OTLP for a signal in the pipeline, the receiver validates, applies the
/// privacy policies and produces there; the pipeline's Kafka source archives it.
#[test]
fn a_receiver_in_front_of_kafka_forwards_with_privacy_applied_and_the_pipeline_reads_it_back() {
    let broker = Broker::start();
    let topics = ["otlp_spans", "otlp_logs", "otlp_metrics"];
    for t in topics {
        broker.create_topic(t, 1);
    }
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let addr = format!("127.0.0.1:{}", free_port());
    let pipeline = dir.path().join("forward.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"
[pipeline]
name = "otlp-forward"

[[sources]]
type = "otlp"
listen = "{addr}"

[[sources]]
type = "kafka"
brokers = "{broker}"
group_id = "forward"
topics = [
  {{ name = "otlp_spans", kind = "spans", format = "otlp_proto" }},
  {{ name = "otlp_logs", kind = "logs", format = "otlp_proto" }},
  {{ name = "otlp_metrics", kind = "metrics", format = "otlp_proto" }},
]
max_batch_wait = "100ms"

[archive]
url = "{archive}"

[archive.flush]
interval = "300ms"
{PRIVACY}"#,
            broker = broker.addr,
            archive = archive.display()
        ),
    )
    .unwrap();
    let mut vigil = start_receiver(&pipeline, &addr, "forwarder");
    let sent = otlp_client(&["sdk", &format!("http://{addr}"), "--traces", "10"]);
    wait_for(
        &archive,
        "spans",
        sent["spans"].as_u64().unwrap(),
        Duration::from_secs(60),
        &mut [&mut vigil],
    );
    wait_for(
        &archive,
        "logs",
        sent["logs"].as_u64().unwrap(),
        Duration::from_secs(60),
        &mut [&mut vigil],
    );
    vigil.stop();
    assert_eq!(n(&archive, "SELECT count(*) AS n FROM spans"), 30);
    assert_eq!(n(&archive, "SELECT count(*) AS n FROM logs"), 20);
    assert!(
        n(
            &archive,
            "SELECT count(*) AS n FROM metrics WHERE name = 'requests'"
        ) >= 2
    );
    // The topics never saw a raw user id; the archive holds their pseudonyms.
    let (messages, raw) = scan_topics(&broker.addr, &topics, "user-");
    assert!(messages >= 3, "{messages} messages");
    assert_eq!(raw, 0, "raw user ids on the topics");
    // One pseudonym per user, the one any path gives the raw value (the receiver's, kept by the
    // pipeline that reads it back): `p_` and HMAC-SHA-256 under the key.
    let want: BTreeSet<String> = common::py_script_inline(
        "import hmac, hashlib\nfor i in range(5): print('p_' + hmac.new(b'test-only-key-0123456789', b'user-%d' % i, hashlib.sha256).hexdigest()[:32])",
        &[],
    )
    .lines()
    .map(str::to_owned)
    .collect();
    let got: BTreeSet<String> = query(&archive, "SELECT DISTINCT user_id FROM logs")
        .iter()
        .map(|r| r["user_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, want);
}
