//! Kafka in, exactly once, against a real broker (Tansu) and a producer that is not vigil
//! (Python confluent-kafka): malformed messages become dead letters, and neither kill -9 at
//! random moments nor replicas joining and dying lose or duplicate a record.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::kafka::{
    Broker, Replica, Setup, client, count, pipeline, pipeline_with, query, wait_for,
};
use common::{free_port, http, metric, promtool_check_metrics, try_http, vigil_ok};

/// What the producers reported: good and bad totals, per-partition count and seq sum.
#[derive(Default, Debug)]
struct Sent {
    good: u64,
    bad: u64,
    partitions: BTreeMap<u64, (u64, u64)>,
}

impl Sent {
    fn add(&mut self, report: serde_json::Value) {
        self.good += report["good"].as_u64().unwrap();
        self.bad += report["bad"].as_u64().unwrap();
        for (p, c) in report["partitions"].as_object().unwrap() {
            let e = self.partitions.entry(p.parse().unwrap()).or_default();
            e.0 += c["count"].as_u64().unwrap();
            e.1 += c["seq_sum"].as_u64().unwrap();
        }
    }
}

/// The archive holds every good record once (count, distinct seq and seq sum per partition
/// equal what was sent) and every bad one once as a dead letter.
fn assert_exactly_once(archive: &Path, sent: &Sent, partitions: usize) {
    let rows = query(
        archive,
        &format!(
            "SELECT seq % {partitions} AS p, count(*) AS n, count(DISTINCT seq) AS d, sum(seq) AS s \
             FROM logs GROUP BY 1 ORDER BY 1"
        ),
    );
    let mut got = BTreeMap::new();
    for r in &rows {
        let n = r["n"].as_u64().unwrap();
        assert_eq!(
            n,
            r["d"].as_u64().unwrap(),
            "duplicates in partition {}",
            r["p"]
        );
        got.insert(r["p"].as_u64().unwrap(), (n, r["s"].as_u64().unwrap()));
    }
    assert_eq!(
        got, sent.partitions,
        "per-partition (count, seq sum): archive vs sent"
    );
    let dead = query(
        archive,
        "SELECT count(*) AS n, count(DISTINCT concat(source, ':', partition, ':', \"offset\")) AS d \
         FROM dead_letters",
    );
    let (n, d) = dead
        .first()
        .map(|r| (r["n"].as_u64().unwrap(), r["d"].as_u64().unwrap()))
        .unwrap_or((0, 0));
    assert_eq!(n, d, "duplicate dead letters");
    assert_eq!(n, sent.bad, "dead letters vs malformed messages sent");
}

#[test]
fn every_good_record_is_archived_and_every_bad_one_is_a_dead_letter() {
    let Setup {
        broker,
        dir,
        archive,
    } = Setup::new(&[("telemetry.logs", 3)]);
    let mut sent = Sent::default();
    sent.add(broker.produce("telemetry.logs", 0, 6000, 3, 50));
    assert_eq!(sent.bad, 120);

    let file = pipeline(dir.path(), &broker.addr, "telemetry.logs", "g1", &archive);
    let mut vigil = Replica::start(&file, "vigil");
    wait_for(
        &archive,
        "logs",
        sent.good,
        Duration::from_secs(90),
        &mut [&mut vigil],
    );
    wait_for(
        &archive,
        "dead_letters",
        sent.bad,
        Duration::from_secs(30),
        &mut [&mut vigil],
    );
    vigil.stop();
    assert_exactly_once(&archive, &sent, 3);

    // Every kind of bad input has its reason, its partition and offset.
    let reasons = query(
        &archive,
        "SELECT reason_code, count(*) AS n, min(partition) AS p, min(\"offset\") AS o \
         FROM dead_letters WHERE source = 'telemetry.logs' GROUP BY 1 ORDER BY 1",
    );
    let codes: Vec<&str> = reasons
        .iter()
        .map(|r| r["reason_code"].as_str().unwrap())
        .collect();
    assert!(codes.len() >= 7, "reason codes {codes:?}");
    for r in &reasons {
        assert!(
            r["p"].as_i64().unwrap() >= 0 && r["o"].as_i64().unwrap() >= 0,
            "{r}"
        );
    }

    // A restart reads nothing twice: the archive's offsets are where it resumes.
    let mut again = Replica::start(&file, "vigil-again");
    sent.add(broker.produce("telemetry.logs", 6000, 600, 3, 0));
    wait_for(
        &archive,
        "logs",
        sent.good,
        Duration::from_secs(60),
        &mut [&mut again],
    );
    again.stop();
    assert_exactly_once(&archive, &sent, 3);
}

/// A small deterministic generator for kill times (no extra dependency).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + (self.0 >> 33) % (hi - lo)
    }
}

#[test]
fn kill_9_at_random_moments_loses_and_duplicates_nothing() {
    let Setup {
        broker,
        dir,
        archive,
    } = Setup::new(&[("logs", 4)]);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill schedule seed {seed}");
    let mut rng = Lcg(seed);

    let mut sent = Sent::default();
    let mut next = 0;
    let mut mid_stream_kills = 0;
    let kills = 6;
    for i in 0..kills {
        let before = count(&archive, "logs");
        // A new group per restart: Tansu 0.6 does not hand a dead member's partitions to the
        // members that remain (see `kafka_client.py`), and waiting out the dead member's session
        // is not what this test is about. It also proves the offsets come from the archive: a
        // new group has none of its own.
        let file = pipeline(
            dir.path(),
            &broker.addr,
            "logs",
            &format!("g2-{i}"),
            &archive,
        );
        let mut vigil = Replica::start(&file, &format!("vigil-{i}"));
        // Data keeps arriving while it runs, so the kill lands with work in flight.
        let producing = std::thread::scope(|scope| {
            let producer = scope.spawn(|| broker.produce("logs", next, 25_000, 4, 100));
            // Once it has joined the group and committed something, kill it at a random moment.
            wait_for(
                &archive,
                "logs",
                before + 1,
                Duration::from_secs(60),
                &mut [&mut vigil],
            );
            std::thread::sleep(Duration::from_millis(rng.next(0, 1500)));
            vigil.assert_running();
            let in_flight = !producer.is_finished();
            vigil.kill9();
            sent.add(producer.join().unwrap());
            in_flight
        });
        next += 25_000;
        let archived = count(&archive, "logs");
        eprintln!(
            "kill {i}: {archived} of {} archived, producer still running: {producing}",
            sent.good
        );
        // Mid-stream: this replica archived something and was killed with a backlog left.
        if archived > before && archived < sent.good {
            mid_stream_kills += 1;
        }
    }
    let file = pipeline(dir.path(), &broker.addr, "logs", "g2-last", &archive);
    let mut last = Replica::start(&file, "vigil-last");
    wait_for(
        &archive,
        "logs",
        sent.good,
        Duration::from_secs(120),
        &mut [&mut last],
    );
    wait_for(
        &archive,
        "dead_letters",
        sent.bad,
        Duration::from_secs(30),
        &mut [&mut last],
    );
    last.stop();
    assert_exactly_once(&archive, &sent, 4);
    assert!(
        mid_stream_kills >= 5,
        "only {mid_stream_kills} of {kills} kills landed mid-stream: the test did not test much"
    );
}

#[test]
fn a_replica_joining_and_another_dying_loses_and_duplicates_nothing() {
    let Setup {
        broker,
        dir,
        archive,
    } = Setup::new(&[("logs", 4)]);
    let file = pipeline(dir.path(), &broker.addr, "logs", "g3", &archive);

    let mut sent = Sent::default();
    sent.add(broker.produce("logs", 0, 30_000, 4, 200));
    let mut a = Replica::start(&file, "replica-a");
    wait_for(&archive, "logs", 1, Duration::from_secs(60), &mut [&mut a]);

    // B joins mid-stream: the group rebalances, A's partitions are revoked mid-batch and
    // shared between the two.
    let mut b = Replica::start(&file, "replica-b");
    sent.add(broker.produce("logs", 30_000, 15_000, 4, 200));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !b.log_text().contains("partitions assigned partitions=[\"") {
        assert!(
            std::time::Instant::now() < deadline,
            "B never got partitions:\n{}",
            b.log_text()
        );
        a.assert_running();
        b.assert_running();
        std::thread::sleep(Duration::from_millis(200));
    }

    // A dies mid-stream with a batch in flight.
    sent.add(broker.produce("logs", 45_000, 15_000, 4, 200));
    std::thread::sleep(Duration::from_millis(300));
    a.kill9();
    let at_death = count(&archive, "logs");
    eprintln!("A killed with {at_death} of {} archived", sent.good);

    // Tansu 0.6 never hands a dead member's partitions to the members left (its group
    // coordinator re-forms the group with the dead member's assignment; reproduced with plain
    // confluent-kafka clients in `kafka_client.py`'s notes). So the takeover is done the way an
    // operator would do it on such a broker: B leaves cleanly and C takes over every partition
    // from the archive's offsets, A's unfinished batch included.
    b.stop();
    let file_c = pipeline(dir.path(), &broker.addr, "logs", "g3-takeover", &archive);
    let mut c = Replica::start(&file_c, "replica-c");
    wait_for(
        &archive,
        "logs",
        sent.good,
        Duration::from_secs(120),
        &mut [&mut c],
    );
    wait_for(
        &archive,
        "dead_letters",
        sent.bad,
        Duration::from_secs(30),
        &mut [&mut c],
    );
    c.stop();
    assert_exactly_once(&archive, &sent, 4);
    assert!(
        b.log_text().contains("archived"),
        "replica B archived nothing while it shared the group:\n{}",
        b.log_text()
    );
}

#[test]
fn two_writers_on_the_same_partitions_are_fenced_not_duplicated() {
    // Two groups consuming the same topic into the same archive: each replica believes it owns
    // every partition, the situation of a zombie that lost its partitions without noticing.
    // Delta's conflict on the partitions' `txn` app ids must fence one of the two each time.
    let Setup {
        broker,
        dir,
        archive,
    } = Setup::new(&[("logs", 2)]);
    let mut sent = Sent::default();
    sent.add(broker.produce("logs", 0, 20_000, 2, 0));
    let mut x = Replica::start(
        &pipeline(dir.path(), &broker.addr, "logs", "gx", &archive),
        "x",
    );
    let mut y = Replica::start(
        &pipeline(dir.path(), &broker.addr, "logs", "gy", &archive),
        "y",
    );
    sent.add(broker.produce("logs", 20_000, 10_000, 2, 0));
    wait_for(
        &archive,
        "logs",
        sent.good,
        Duration::from_secs(120),
        &mut [&mut x, &mut y],
    );
    // Both keep running a little longer: nothing may be added twice.
    std::thread::sleep(Duration::from_secs(3));
    x.stop();
    y.stop();
    assert_exactly_once(&archive, &sent, 2);
    let fenced = x.log_text().matches("another consumer archived").count()
        + y.log_text().matches("another consumer archived").count();
    eprintln!("fenced commits: {fenced}");
}

#[test]
fn dead_letters_can_go_to_a_topic_instead_of_the_table() {
    let Setup {
        broker,
        dir,
        archive,
    } = Setup::new(&[("logs", 2), ("logs.dead", 1)]);
    let mut sent = Sent::default();
    sent.add(broker.produce("logs", 0, 2000, 2, 40));
    let file = pipeline_with(
        dir.path(),
        &broker.addr,
        "logs",
        "g4",
        &archive,
        r#"dead_letter_topic = "logs.dead""#,
    );
    vigil_ok(&["run", "--until-end", "--pipeline", file.to_str().unwrap()]);
    assert_eq!(count(&archive, "logs"), sent.good);
    assert_eq!(
        count(&archive, "dead_letters"),
        0,
        "dead letters went to the topic"
    );

    let lines = client(&[
        "consume",
        &broker.addr,
        "logs.dead",
        "--count",
        &sent.bad.to_string(),
        "--raw",
    ]);
    let messages: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(messages.len() as u64, sent.bad);
    let mut positions = std::collections::BTreeSet::new();
    for m in &messages {
        let h = &m["headers"];
        assert_eq!(h["vigil.source.topic"], "logs", "{m}");
        assert!(!h["vigil.reason_code"].as_str().unwrap().is_empty(), "{m}");
        assert!(m["value_len"].as_u64().unwrap() > 0, "{m}");
        positions.insert((
            h["vigil.source.partition"].as_str().unwrap().to_string(),
            h["vigil.source.offset"]
                .as_str()
                .unwrap()
                .parse::<i64>()
                .unwrap(),
        ));
    }
    assert_eq!(positions.len() as u64, sent.bad, "each bad message once");
}

#[test]
fn deals_pipeline_consumes_both_topics_from_the_environment() {
    let Setup {
        broker,
        dir,
        archive,
    } = Setup::new(&[("prod.logs", 2), ("prod.metrics", 1)]);
    let (logs, metrics) = common::generate(dir.path(), "10m", "5", &[]);
    produce(
        &broker,
        &[("prod.logs", &logs), ("prod.metrics", &metrics)],
        &["--key", "service"],
    );
    let lines = |p: &Path| std::fs::read_to_string(p).unwrap().lines().count() as u64;
    run_deals(
        &broker,
        &archive,
        &[
            ("LOGS_TOPIC", "prod.logs"),
            ("METRICS_TOPIC", "prod.metrics"),
            ("VIGIL_GROUP_ID", "deals-test"),
        ],
    );
    assert_eq!(count(&archive, "logs"), lines(&logs));
    assert_eq!(count(&archive, "metrics"), lines(&metrics));
    assert_eq!(count(&archive, "dead_letters"), 0);
}

#[test]
fn anomalies_reach_the_anomaly_topic_and_match_the_contract() {
    let Setup {
        broker,
        dir,
        archive,
    } = Setup::new(&[("t.logs", 2), ("t.metrics", 1), ("t.anomalies", 1)]);
    let (logs, metrics) =
        common::generate(dir.path(), "40m", "5", &["errors:token-service@10m+15m"]);
    // The metrics partition ends early (its services stopped reporting at 26m): read to its
    // end, it must not hold back the windows the logs go on to close, nor must a log
    // partition whose records end a little before the other's.
    let (metrics, _) = split_at(&metrics, "2025-06-02T09:26:00");
    produce(&broker, &[("t.logs", &logs), ("t.metrics", &metrics)], &[]);
    run_deals(
        &broker,
        &archive,
        &[
            ("LOGS_TOPIC", "t.logs"),
            ("METRICS_TOPIC", "t.metrics"),
            ("ANOMALY_TOPIC", "t.anomalies"),
            ("VIGIL_GROUP_ID", "anomaly-test"),
        ],
    );

    // An alerting service's view: a plain confluent-kafka consumer.
    let messages = broker.consume_all("t.anomalies");
    assert!(!messages.is_empty());
    for m in &messages {
        let e = &m["value"];
        assert_eq!(m["key"], e["fingerprint"], "key = fingerprint: {m}");
        common::assert_anomaly_contract(e);
    }
    let token: Vec<&serde_json::Value> = messages
        .iter()
        .map(|m| &m["value"])
        .filter(|e| e["rule"] == "Token Service Errors")
        .collect();
    assert_eq!(token.len(), 2, "{token:#?}");
    assert_eq!(token[0]["status"], "firing");
    assert_eq!(token[0]["service"], "token-service");
    assert_eq!(token[1]["status"], "resolved");
}

#[test]
fn a_restart_mid_incident_neither_fires_twice_nor_loses_the_resolution() {
    // The topic also holds records whose times are implausible (fixtures/hostile/times.ndjson:
    // past year 9999, decades ahead, before year 1); they once crashed every restart.
    // One partition per topic: the watermark is the least advanced partition's until every
    // partition is read to its end.
    let Setup {
        broker,
        dir,
        archive,
    } = Setup::new(&[("r.logs", 1), ("r.metrics", 1), ("r.anomalies", 1)]);
    // Token-service errors from 10m to 25m: the rule (10m `for`) fires at about 20m. The
    // pipeline stops at 22m, mid-incident, and the rest arrives after it restarts.
    let (logs, metrics) =
        common::generate(dir.path(), "40m", "5", &["errors:token-service@10m+15m"]);
    let split = "2025-06-02T09:22:00";
    let (logs1, logs2) = split_at(&logs, split);
    let (metrics1, metrics2) = split_at(&metrics, split);
    let hostile = std::fs::read_to_string(
        vigil_core::manifest_dir!().join("../../fixtures/hostile/times.ndjson"),
    )
    .unwrap();
    let mut lines: Vec<String> = std::fs::read_to_string(&logs1)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.insert(200, hostile.trim_end().to_string());
    std::fs::write(&logs1, lines.join("\n") + "\n").unwrap();
    let env = [
        ("LOGS_TOPIC", "r.logs"),
        ("METRICS_TOPIC", "r.metrics"),
        ("ANOMALY_TOPIC", "r.anomalies"),
        ("VIGIL_GROUP_ID", "restart-test"),
    ];
    let token_events = || -> Vec<serde_json::Value> {
        broker
            .consume_all("r.anomalies")
            .into_iter()
            .map(|m| m["value"].clone())
            .filter(|e| e["rule"] == "Token Service Errors")
            .collect()
    };
    produce(
        &broker,
        &[("r.logs", &logs1), ("r.metrics", &metrics1)],
        &[],
    );
    run_deals(&broker, &archive, &env);
    let before = token_events();
    assert_eq!(before.len(), 1, "fired before the stop: {before:#?}");
    assert_eq!(before[0]["status"], "firing");

    produce(
        &broker,
        &[("r.logs", &logs2), ("r.metrics", &metrics2)],
        &[],
    );
    run_deals(&broker, &archive, &env);
    let after = token_events();
    let statuses: Vec<_> = after
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["firing", "resolved"], "{after:#?}");
    assert_eq!(after[0]["id"], after[1]["id"], "the same episode");
    // The windows open at the stop were rebuilt from the archive: resolved as the incident
    // ended (25m), as a run without the restart would.
    let ends = after[1]["ends_at"].as_str().unwrap();
    assert!(
        ("2025-06-02T09:25:00".."2025-06-02T09:27:01").contains(&ends),
        "{ends}"
    );
    // The anomalies table holds the same two events, once each.
    let rows = query(
        &archive,
        "SELECT status, id FROM anomalies WHERE rule = 'Token Service Errors' ORDER BY detected_at",
    );
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert_eq!(rows[0]["status"], "firing");
    assert_eq!(rows[1]["status"], "resolved");
    assert_eq!(rows[0]["id"], after[0]["id"]);
    // The implausible records are dead letters, once each across the restart.
    let dead = query(
        &archive,
        "SELECT reason_code, count(*) AS n FROM dead_letters GROUP BY reason_code",
    );
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!(dead[0]["reason_code"], "timestamp_out_of_range");
    assert_eq!(dead[0]["n"], 3);
}

/// Splits an NDJSON file of records into those before `at` (an RFC 3339 prefix) and the rest.
fn split_at(path: &Path, at: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let text = std::fs::read_to_string(path).unwrap();
    let (mut first, mut rest) = (String::new(), String::new());
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let part = if v["timestamp"].as_str().unwrap() < at {
            &mut first
        } else {
            &mut rest
        };
        part.push_str(line);
        part.push('\n');
    }
    let a = path.with_extension("1.ndjson");
    let b = path.with_extension("2.ndjson");
    std::fs::write(&a, first).unwrap();
    std::fs::write(&b, rest).unwrap();
    (a, b)
}

/// `vigil produce` of each `(topic, file)`, with `extra` flags.
fn produce(broker: &Broker, inputs: &[(&str, &Path)], extra: &[&str]) {
    for (topic, file) in inputs {
        let mut args = vec!["produce", "--brokers", &broker.addr, "--topic", topic];
        args.extend(extra);
        args.push(file.to_str().unwrap());
        vigil_ok(&args);
    }
}

/// pipelines/deals.toml to the end of its topics, configured only through the environment.
fn run_deals(broker: &Broker, archive: &Path, env: &[(&str, &str)]) {
    run_shipped("deals.toml", broker, archive, env);
}

/// A pipeline file of pipelines/ to the end of its topics, configured only through the
/// environment.
fn run_shipped(file: &str, broker: &Broker, archive: &Path, env: &[(&str, &str)]) {
    let path = common::shipped_pipeline(file);
    let mut env = env.to_vec();
    env.push(("KAFKA_BROKERS", &broker.addr));
    env.push(("VIGIL_ARCHIVE", archive.to_str().unwrap()));
    common::vigil_ok_with(
        &["run", "--until-end", "--pipeline", path.to_str().unwrap()],
        &env,
    );
}

/// The lines of `text` shuffled within blocks of `per_block` lines (deterministically): out of
/// order, but by less than the allowed lateness.
fn shuffled_within(text: &str, per_block: usize) -> String {
    let mut out = String::with_capacity(text.len());
    let lines: Vec<&str> = text.lines().collect();
    for block in lines.chunks(per_block) {
        let mut block = block.to_vec();
        // A fixed permutation: order by a hash of the line.
        block.sort_by_key(|l| {
            l.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            })
        });
        for l in block {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

#[test]
fn traces_split_across_partitions_and_out_of_order_still_find_where_failures_start() {
    let Setup {
        broker,
        dir,
        archive,
    } = Setup::new(&[("c.logs", 3), ("c.metrics", 1), ("c.anomalies", 1)]);
    let (logs, metrics) = common::generate(dir.path(), "50m", "8", &["errors:database@30m+12m"]);
    // About 37 log records a second: blocks of 400 lines span about 11 s of event time, well
    // within the 30 s allowed lateness.
    let shuffled = dir.path().join("shuffled.ndjson");
    std::fs::write(
        &shuffled,
        shuffled_within(&std::fs::read_to_string(&logs).unwrap(), 400),
    )
    .unwrap();
    // Keyed by span: the spans of one trace land on different partitions.
    produce(&broker, &[("c.logs", &shuffled)], &["--key", "span_id"]);
    produce(&broker, &[("c.metrics", &metrics)], &[]);
    let env = [
        ("LOGS_TOPIC", "c.logs"),
        ("METRICS_TOPIC", "c.metrics"),
        ("ANOMALY_TOPIC", "c.anomalies"),
        ("VIGIL_GROUP_ID", "correlation-test"),
    ];
    run_shipped("services.toml", &broker, &archive, &env);

    // Where failing traces started while the database failed: the database, and hardly
    // anywhere else (a trace cut apart would start its failure at a caller).
    let origins = query(
        &archive,
        "SELECT service, sum(failing_traces) AS n FROM error_origin \
         WHERE window_start >= TIMESTAMP '2025-06-02T09:31:00Z' \
           AND window_start < TIMESTAMP '2025-06-02T09:41:00Z' \
         GROUP BY service ORDER BY n DESC",
    );
    assert_eq!(origins[0]["service"], "database", "{origins:#?}");
    let n = |r: &serde_json::Value| r["n"].as_i64().unwrap();
    let elsewhere: i64 = origins[1..].iter().map(n).sum();
    assert!(
        n(&origins[0]) > 100 && elsewhere * 20 < n(&origins[0]),
        "{origins:#?}"
    );
    // The database failed once per failing trace that started there.
    let db_errors = query(
        &archive,
        "SELECT count(*) AS n FROM logs WHERE service = 'database' AND level = 'ERROR' \
         AND timestamp >= TIMESTAMP '2025-06-02T09:31:00Z' \
         AND timestamp < TIMESTAMP '2025-06-02T09:41:00Z'",
    );
    let db_errors = n(&db_errors[0]);
    assert!(
        (n(&origins[0]) - db_errors).abs() * 50 <= db_errors,
        "{} traces started at the database, which logged {db_errors} errors",
        n(&origins[0])
    );
    // The dependency graph was learned: each call of the deals system, with the failures.
    let edges = query(
        &archive,
        "SELECT caller, callee, sum(calls) AS calls, sum(errors) AS errors FROM service_edges \
         GROUP BY caller, callee ORDER BY caller, callee",
    );
    let pairs: Vec<(String, String)> = edges
        .iter()
        .map(|e| {
            (
                e["caller"].as_str().unwrap().into(),
                e["callee"].as_str().unwrap().into(),
            )
        })
        .collect();
    for (caller, callee) in [
        ("api-gateway", "auth-service"),
        ("api-gateway", "deal-analysis-service"),
        ("api-gateway", "token-service"),
        ("auth-service", "database"),
        ("deal-analysis-service", "ai-service"),
        ("deal-analysis-service", "database"),
        ("ai-service", "token-service"),
        ("token-service", "database"),
    ] {
        assert!(
            pairs.contains(&(caller.into(), callee.into())),
            "{caller} → {callee} missing from {pairs:?}"
        );
    }
    assert_eq!(
        pairs.len(),
        8,
        "no edge that the system does not have: {pairs:?}"
    );

    // The anomalies: one incident, the database its root cause, its samples real traces.
    let events: Vec<serde_json::Value> = broker
        .consume_all("c.anomalies")
        .into_iter()
        .map(|m| m["value"].clone())
        .collect();
    assert!(events.len() >= 4, "{events:#?}");
    let ids: std::collections::BTreeSet<&str> = events
        .iter()
        .map(|e| e["incident"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "{events:#?}");
    let last = &events.last().unwrap()["incident"];
    assert_eq!(last["root_cause_service"], "database", "{last}");
    let sample = last["evidence"]["sample_trace_ids"][0].as_str().unwrap();
    let tree = vigil_ok(&["trace", "--archive", archive.to_str().unwrap(), sample]);
    assert!(
        tree.contains("database") && tree.contains("ERROR"),
        "{tree}"
    );
}

/// `vigil_kafka_consumer_lag` of topic `logs`'s partitions 0–3 in a `/metrics` text, those
/// it reports.
fn logs_lag(metrics: &str) -> Vec<f64> {
    (0..4)
        .filter_map(|p| {
            let partition = format!("partition=\"{p}\"");
            metric(
                metrics,
                "vigil_kafka_consumer_lag",
                &["topic=\"logs\"", &partition],
            )
        })
        .collect()
}

/// The production surface of `vigil run` against a real broker: `/readyz` turns ready once the
/// replica holds its partitions; `/metrics` passes `promtool check metrics` and shows consumer
/// lag per partition, before the first commit too; its log lines are JSON in the seed's format; and SIGTERM mid-stream
/// commits everything read so far (nothing had been committed: the flush interval is an hour),
/// exits 0 well within the grace period, and the next start resumes exactly where it stopped.
#[test]
fn sigterm_mid_stream_commits_what_was_read_and_the_next_start_resumes() {
    let Setup {
        broker,
        dir,
        archive,
    } = Setup::new(&[("logs", 4)]);
    let file = pipeline(dir.path(), &broker.addr, "logs", "g-term", &archive);
    // Nothing is committed until the end: whatever the archive holds after SIGTERM, the
    // shutdown committed.
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("max_rows = 3000", "max_rows = 10000000")
        .replace("interval = \"300ms\"", "interval = \"1h\"")
        .replace(
            "\"heartbeat.interval.ms\" = 1000",
            "\"heartbeat.interval.ms\" = 1000\n\"statistics.interval.ms\" = 500",
        );
    let hour = dir.path().join("term.toml");
    std::fs::write(&hour, text).unwrap();
    let ops = format!("127.0.0.1:{}", free_port());
    let mut vigil = Replica::start_with(
        &hour,
        "vigil-term",
        &["--listen", &ops, "--log-format", "json", "--grace", "20s"],
    );

    // Ready once it has a broker and its assignment.
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = loop {
        vigil.assert_running();
        if let Ok((status, body)) = try_http(&ops, "GET", "/readyz", &[], "")
            && status == 200
        {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "never ready:\n{}",
            vigil.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    for check in ["pipeline", "archive", "kafka", "group"] {
        assert_eq!(ready["checks"][check]["ok"], true, "{ready}");
    }
    assert_eq!(http(&ops, "GET", "/healthz", &[], "").0, 200);

    let mut sent = Sent::default();
    let (read_at_term, stopped_in) = std::thread::scope(|scope| {
        let producer = scope.spawn(|| broker.produce("logs", 0, 40_000, 4, 100));
        // Read, decoded, not yet committed.
        let deadline = Instant::now() + Duration::from_secs(60);
        let metrics = loop {
            vigil.assert_running();
            let (_, m) = http(&ops, "GET", "/metrics", &[], "");
            if metric(&m, "vigil_records_total", &["table=\"logs\""]).unwrap_or(0.0) >= 2000.0 {
                break m;
            }
            assert!(Instant::now() < deadline, "nothing read:\n{m}");
            std::thread::sleep(Duration::from_millis(200));
        };
        promtool_check_metrics(&metrics);
        // Lag before any commit (librdkafka has none to measure from): the backlog since where
        // reading started, the log start here, on every partition, not an absent gauge.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, m) = http(&ops, "GET", "/metrics", &[], "");
            let lags = logs_lag(&m);
            if lags.len() == 4 && lags.iter().all(|&l| l > 0.0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no lag before the first commit: {lags:?}\n{m}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(
            count(&archive, "logs"),
            0,
            "committed before the flush interval"
        );
        assert!(
            !producer.is_finished(),
            "the producer finished first: not mid-stream"
        );
        let (_, m) = http(&ops, "GET", "/metrics", &[], "");
        let read = metric(&m, "vigil_records_total", &["table=\"logs\""]).unwrap() as u64;
        let started = Instant::now();
        vigil.stop();
        let stopped_in = started.elapsed();
        sent.add(producer.join().unwrap());
        (read, stopped_in)
    });
    let archived = count(&archive, "logs");
    eprintln!("{read_at_term} read at SIGTERM, {archived} archived, stopped in {stopped_in:?}");
    assert!(
        archived >= read_at_term,
        "read {read_at_term}, archived {archived}"
    );
    assert!(
        archived < sent.good,
        "everything was archived: not mid-stream"
    );
    assert!(stopped_in < Duration::from_secs(15), "{stopped_in:?}");
    let log = vigil.log_text();
    for line in log.lines() {
        let l: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert_eq!(l["service"], "vigil", "{line}");
        assert!(
            l["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{line}"
        );
        assert!(
            ["INFO", "WARN", "ERROR", "DEBUG"].contains(&l["level"].as_str().unwrap_or("")),
            "{line}"
        );
        assert!(l["message"].is_string(), "{line}");
    }
    assert!(log.contains("SIGTERM: stopping"), "{log}");

    // The same group resumes from the archive's positions and finishes the job; its lag
    // per partition falls to 0 once everything is committed.
    let ops = format!("127.0.0.1:{}", free_port());
    let mut next = Replica::start_with(&file, "vigil-resume", &["--listen", &ops]);
    wait_for(
        &archive,
        "logs",
        sent.good,
        Duration::from_secs(120),
        &mut [&mut next],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, m) = http(&ops, "GET", "/metrics", &[], "");
        let lags = logs_lag(&m);
        if lags == [0.0; 4] {
            promtool_check_metrics(&m);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lag per partition {lags:?}:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    next.stop();
    assert_exactly_once(&archive, &sent, 4);
}

#[test]
fn producing_to_a_broker_that_does_not_answer_fails_soon_and_says_so_once() {
    // Nothing listens on the port: librdkafka retries every few milliseconds and reported
    // each failure (350 lines of ERROR in a minute, then "10 messages still undelivered").
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, "{\"a\":1}\n").unwrap();
    let brokers = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let out = common::vigil(&[
        "produce",
        "--brokers",
        &brokers,
        "--topic",
        "t",
        input.to_str().unwrap(),
    ]);
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("no Kafka broker at {brokers} answered within 10s")),
        "{err}"
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
    // Each kind of librdkafka complaint once, not once per attempt.
    assert!(err.lines().count() < 10, "{err}");
}
