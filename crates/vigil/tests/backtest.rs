//! `vigil backtest` over generated telemetry with injected incidents, against the seed's four
//! alerts in pipelines/deals.toml: each rule fires for the right service within a window of
//! its `for` elapsing, resolves after, a spike shorter than `for` fires nothing, and shuffled
//! input within the allowed lateness gives the same events; the request-rate baseline catches
//! a traffic drop on one service. And pipelines/applogs.toml over logs as pino writes them.

mod common;

use std::path::Path;

use common::{MIN, T0, assert_anomaly_contract, generate, micros};

fn backtest(dir: &Path, logs: &Path, metrics: &Path, name: &str) -> Vec<serde_json::Value> {
    common::backtest("deals.toml", logs, metrics, &dir.join(name))
}

fn of<'a>(events: &'a [serde_json::Value], rule: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["rule"] == rule).collect()
}

/// One firing and one resolved event for `service`, the firing detected within one window
/// after `for` elapsed from the incident's start, the resolution within two windows of its end.
fn assert_episode(
    events: &[serde_json::Value],
    rule: &str,
    service: &str,
    start_min: i64,
    end_min: i64,
    for_min: i64,
) {
    let e = of(events, rule);
    assert_eq!(e.len(), 2, "{rule}: {e:#?}");
    let (firing, resolved) = (e[0], e[1]);
    assert_eq!(firing["status"], "firing");
    assert_eq!(resolved["status"], "resolved");
    for ev in [firing, resolved] {
        assert_eq!(ev["service"], service);
        assert_eq!(ev["fingerprint"], firing["fingerprint"]);
        assert_eq!(ev["id"], firing["id"]);
    }
    let starts = micros(firing["starts_at"].as_str().unwrap());
    assert!(
        (T0 + start_min * MIN..=T0 + (start_min + 1) * MIN).contains(&starts),
        "{rule} starts_at {}",
        firing["starts_at"]
    );
    // Detected when the watermark (latest event time - 30 s allowed lateness) passes the end
    // of the window in which `for` elapsed: within that window plus the lateness.
    let detected = micros(firing["detected_at"].as_str().unwrap());
    let due = starts + for_min * MIN;
    let lateness = 30_000_000;
    assert!(
        (due..=due + MIN + lateness).contains(&detected),
        "{rule} detected_at {} (due {})",
        firing["detected_at"],
        due
    );
    let ends = micros(resolved["ends_at"].as_str().unwrap());
    assert!(
        (T0 + end_min * MIN..=T0 + (end_min + 2) * MIN).contains(&ends),
        "{rule} ends_at {}",
        resolved["ends_at"]
    );
}

#[test]
fn the_seeds_alerts_fire_for_the_right_service_and_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, metrics) = generate(
        dir.path(),
        "2h",
        "8",
        &[
            "errors:token-service@20m+15m",
            "latency:ai-service@30m+20m",
            "cpu:database@60m+20m",
            "errors:token-service@90m+5m",
        ],
    );
    let events = backtest(dir.path(), &logs, &metrics, "a.ndjson");
    for e in &events {
        assert_anomaly_contract(e);
    }
    assert_episode(&events, "Token Service Errors", "token-service", 20, 35, 10);
    assert_episode(&events, "AI Service Latency", "ai-service", 30, 50, 15);
    assert_episode(&events, "Database High CPU", "database", 60, 80, 15);
    // The 5-minute token-service spike at 90m is shorter than the rule's 10-minute `for`.
    assert!(
        of(&events, "Token Service Errors")
            .iter()
            .all(|e| micros(e["starts_at"].as_str().unwrap()) < T0 + 80 * MIN)
    );
    // Its callers' failures do take the gateway's availability below 99% for 5 minutes.
    assert!(!of(&events, "API Service Down").is_empty());
}

#[test]
fn shuffled_input_within_the_allowed_lateness_gives_the_same_events() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, metrics) = generate(dir.path(), "1h", "8", &["errors:token-service@10m+15m"]);
    let ordered = backtest(dir.path(), &logs, &metrics, "ordered.ndjson");
    // Shuffle lines within blocks of 100 (a few seconds of event time, well inside 30 s).
    let text = std::fs::read_to_string(&logs).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let mut state = 7u64;
    for block in lines.chunks_mut(100) {
        for i in (1..block.len()).rev() {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            block.swap(i, (state >> 33) as usize % (i + 1));
        }
    }
    let shuffled_path = dir.path().join("shuffled.ndjson");
    std::fs::write(&shuffled_path, lines.join("\n") + "\n").unwrap();
    let shuffled = backtest(
        dir.path(),
        &shuffled_path,
        &metrics,
        "shuffled-events.ndjson",
    );
    let strip = |events: Vec<serde_json::Value>| -> Vec<serde_json::Value> {
        events
            .into_iter()
            .map(|mut e| {
                e.as_object_mut().unwrap().remove("detected_at");
                e
            })
            .collect()
    };
    let ordered = strip(ordered);
    assert!(!ordered.is_empty());
    assert_eq!(ordered, strip(shuffled));
}

#[test]
fn a_traffic_drop_fires_the_request_rate_baseline_for_the_service_and_nothing_before_it() {
    let dir = tempfile::tempdir().unwrap();
    // 80% of the requests that would reach deal-analysis-service stop arriving for 15 minutes,
    // after 90 minutes of normal traffic for the baselines to learn from. Its callers lose
    // those requests too, so they may fire as well; nothing may fire before the drop.
    let (logs, metrics) = generate(
        dir.path(),
        "2h",
        "5",
        &["traffic-drop:deal-analysis-service@90m+15m"],
    );
    let events = backtest(dir.path(), &logs, &metrics, "drop.ndjson");
    let baseline = of(&events, "Request Rate Anomaly");
    for e in &baseline {
        assert_anomaly_contract(e);
        assert_eq!(e["kind"], "baseline");
        assert_eq!(e["threshold"], serde_json::Value::Null);
        let starts = micros(e["starts_at"].as_str().unwrap());
        assert!(starts >= T0 + 90 * MIN, "nothing before the drop: {e:#}");
    }
    let dropped: Vec<_> = baseline
        .iter()
        .filter(|e| e["service"] == "deal-analysis-service")
        .collect();
    assert_eq!(dropped.len(), 2, "{baseline:#?}");
    assert_eq!(dropped[0]["status"], "firing");
    let starts = micros(dropped[0]["starts_at"].as_str().unwrap());
    assert!(starts <= T0 + 91 * MIN, "{}", dropped[0]["starts_at"]);
    assert!(
        dropped[0]["value"].as_f64().unwrap() < 0.5 * 190.0,
        "{:#}",
        dropped[0]
    );
    // Resolved once the traffic is back (the baseline's short-term mean needs a few windows).
    assert_eq!(dropped[1]["status"], "resolved");
    let ends = micros(dropped[1]["ends_at"].as_str().unwrap());
    assert!(
        (T0 + 105 * MIN..=T0 + 112 * MIN).contains(&ends),
        "{}",
        dropped[1]["ends_at"]
    );
}

#[test]
fn a_backtest_decodes_only_the_log_columns_its_rules_and_correlation_read() {
    let mut pipeline = vigil_config::load(&common::shipped_pipeline("deals.toml")).unwrap();
    let read = |p: &vigil_pipeline::Pipeline| vigil_pipeline::log_columns_read(p).unwrap();
    // deals.toml's log rules read level, parent_span_id, status_code and processing_time_ms
    // (with time and service, always read); correlation adds the span and trace ids.
    let rules = [
        "level",
        "parent_span_id",
        "processing_time_ms",
        "service",
        "status_code",
        "timestamp",
    ];
    let mut with_traces: Vec<&str> = rules
        .iter()
        .copied()
        .chain(["span_id", "trace_id"])
        .collect();
    with_traces.sort();
    assert_eq!(read(&pipeline), with_traces);
    pipeline.detect.correlation = None;
    assert_eq!(read(&pipeline), rules);
    // The columns each rule reads were planned when the file was checked; planned again
    // now, they are the same.
    assert!(pipeline.rules.iter().all(|r| r.reads.is_some()));
    for r in &mut pipeline.rules {
        r.reads = None;
    }
    assert_eq!(read(&pipeline), rules);
}

#[test]
fn applogs_reads_pino_s_own_shape_and_fires_on_its_fields() {
    // pipelines/applogs.toml over an hour of pino's JSON lines as pino writes them: no
    // service, `time` in epoch milliseconds, numeric levels, `msg`, flat `latency_ms` and
    // `status`. Errors and 5xx responses from minute 30 to 40 fire the two rules that read
    // them, for the pipeline's default service; latency stays low and fires nothing.
    use std::fmt::Write;
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("pino.log");
    let metrics = dir.path().join("metrics.ndjson");
    let mut text = String::new();
    for i in 0..3 * 3600i64 {
        let t_ms = T0 / 1000 + i * 1000 / 3;
        let bad = (3 * 1800..3 * 2400).contains(&i);
        let err = if bad { i % 3 == 0 } else { i % 100 == 0 };
        let (level, status) = if err { (50, 500) } else { (30, 200) };
        writeln!(
            text,
            r#"{{"level":{level},"time":{t_ms},"pid":7,"hostname":"h","msg":"request","latency_ms":{},"status":{status}}}"#,
            20 + i % 7
        )
        .unwrap();
    }
    std::fs::write(&logs, text).unwrap();
    std::fs::write(&metrics, "").unwrap();
    let events = common::backtest("applogs.toml", &logs, &metrics, &dir.path().join("out"));
    for rule in ["Error Rate", "Server Errors"] {
        let e = of(&events, rule);
        assert_eq!(e.len(), 2, "{rule}: {events:#?}");
        assert_eq!(
            (&e[0]["status"], &e[1]["status"]),
            (&"firing".into(), &"resolved".into())
        );
        assert_eq!(e[0]["service"], "app");
        let starts = micros(e[0]["starts_at"].as_str().unwrap());
        assert!(
            (T0 + 30 * MIN..=T0 + 31 * MIN).contains(&starts),
            "{rule} starts_at {}",
            e[0]["starts_at"]
        );
    }
    assert!(of(&events, "Slow Requests").is_empty(), "{events:#?}");
}
