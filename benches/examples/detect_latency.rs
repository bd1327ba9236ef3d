//! Detection latency at a sustained rate: from the watermark passing a window's end to the
//! window's rules evaluated and their anomaly events written.
//!
//! ```sh
//! cargo run --release -p vigil-benches --example detect_latency -- [RECORDS_PER_S] [SECONDS] [WINDOW]
//! ```
//!
//! `WINDOW` (e.g. `10s`) replaces every rule's window, so a run of a few minutes closes more
//! than the two or three 1-minute windows it would otherwise; the work of a close does not
//! grow with the window (rows are folded into partial states as they arrive).
//!
//! The built-in generator produces telemetry in real time (event time = wall time since the
//! start) at about `RECORDS_PER_S` log records per second (default 100 000) for `SECONDS`
//! (default 200). Each second of event time is released in tenths, each at the wall time of
//! its last record, decoded, pushed into the live pipelines' [`Detection`] (the rules of
//! pipelines/deals.toml, with `for = 0` so that the injected incidents, a minute on and a
//! minute off, write events at window closes) and the watermark advanced.
//!
//! Latency is measured from the release of the data that moved the watermark past a
//! window's end to the close returning with its events written to an NDJSON file: decoding
//! that tenth of a second, filing it, folding, the final aggregation of every rule and the
//! write. Reported apart: how long after `E + allowed_lateness` (wall time) the window
//! closed, which adds the wait for the least advanced source (metrics arrive every 10 s,
//! so the watermark trails the logs by up to that). Printed: windows closed, percentiles,
//! the same for closes that wrote events, and whether the run kept up with real time.

use std::io::BufRead;
use std::time::{Duration, Instant};

use vigil_core::schema::RecordKind;
use vigil_decode::Decoder;
use vigil_gen::{Generator, Incident, IncidentKind};
use vigil_pipeline::Detection;

fn main() {
    let mut args = std::env::args().skip(1);
    let target: f64 = args
        .next()
        .map_or(100_000.0, |a| a.parse().expect("records per second"));
    let seconds: u64 = args.next().map_or(200, |a| a.parse().expect("seconds"));
    let window = args
        .next()
        .map(|w| vigil_core::units::parse_duration(&w).expect("a window such as 10s"));
    let deals = concat!(env!("CARGO_MANIFEST_DIR"), "/../pipelines/deals.toml");
    let mut pipeline = vigil_config::load(std::path::Path::new(deals)).expect("deals.toml loads");
    for r in &mut pipeline.rules {
        r.for_ = Duration::ZERO;
        if let Some(w) = window {
            (r.window, r.hop) = (w, w);
        }
    }
    let events = std::env::temp_dir().join(format!("detect-latency-{}.ndjson", std::process::id()));
    pipeline.detect.anomaly_topic = None;
    pipeline.detect.anomalies_file = Some(events.clone());
    let lateness = i64::try_from(pipeline.detect.allowed_lateness.as_micros()).unwrap();
    let mut detection = Detection::new(&pipeline)
        .expect("detection")
        .expect("deals.toml has rules");

    // A generated request makes about 4.6 log lines (measured below and printed).
    let mut incidents = Vec::new();
    for m in (1..seconds / 60 + 1).step_by(2) {
        let at = Duration::from_secs(m * 60);
        incidents.push(Incident::new(
            IncidentKind::Errors,
            "token-service",
            at,
            Duration::from_secs(60),
        ));
        incidents.push(Incident::new(
            IncidentKind::Latency,
            "ai-service",
            at,
            Duration::from_secs(60),
        ));
    }
    let cfg = vigil_gen::Config {
        rate: target / 4.6,
        duration: Duration::from_secs(seconds),
        incidents,
        ..vigil_gen::Config::default()
    };
    let t0 = cfg.start_micros;
    let mut generator = Generator::new(cfg);
    let options = pipeline.decode.clone();
    let mut logs_decoder = Decoder::new(
        RecordKind::Logs,
        pipeline.log_schema.clone(),
        options.clone(),
    );
    let mut metrics_decoder =
        Decoder::new(RecordKind::Metrics, pipeline.log_schema.clone(), options);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();

    let (mut logs, mut metrics) = (Vec::new(), Vec::new());
    let (mut closes, mut with_events, mut after_due) = (Vec::new(), Vec::new(), Vec::new());
    let mut closed = None;
    let mut behind = Duration::ZERO;
    let mut records = 0u64;
    let started = Instant::now();
    let wall =
        |event_micros: i64| started + Duration::from_micros((event_micros - t0).max(0) as u64);
    let mut second = 0i64;
    while generator.next_tick(&mut logs, &mut metrics) {
        // Tenths of the second, each released when its last record is due.
        let lines: Vec<&[u8]> = logs.split_inclusive(|&b| b == b'\n').collect();
        let tenth = lines.len().div_ceil(10).max(1);
        for (i, chunk) in lines.chunks(tenth).enumerate() {
            let due = wall(t0 + second * 1_000_000 + (i as i64 + 1) * 100_000);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            } else {
                behind = behind.max(now - due);
            }
            let released = Instant::now();
            let bytes: Vec<u8> = chunk.concat();
            let mut push = |d: &mut Decoder, kind, bytes: &[u8], detection: &mut Detection| {
                // The decoder takes what fits in its batch; the rest waits for a flush.
                let mut batches = Vec::new();
                d.decode_all(bytes, |b| batches.push(b));
                batches.extend(d.flush());
                for b in &batches {
                    for r in &b.records {
                        if kind == RecordKind::Logs {
                            records += r.num_rows() as u64;
                        }
                        detection.push(kind, kind.table(), r);
                    }
                }
            };
            push(&mut logs_decoder, RecordKind::Logs, &bytes, &mut detection);
            if i == 0 {
                let m = std::mem::take(&mut metrics);
                push(
                    &mut metrics_decoder,
                    RecordKind::Metrics,
                    &m,
                    &mut detection,
                );
            }
            let before = detection.events();
            rt.block_on(detection.advance()).expect("advance");
            if let Some(c) = detection.closed_through()
                && closed != Some(c)
            {
                closed = Some(c);
                let latency = released.elapsed();
                after_due.push(Instant::now().saturating_duration_since(wall(c + lateness)));
                closes.push(latency);
                if detection.events() > before {
                    with_events.push(latency);
                }
            }
        }
        logs.clear();
        second += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    detection.stop().expect("events delivered");
    println!(
        "detect_latency: {} log records in {secs:.1} s ({:.0} records/s, target {target:.0}); {} events",
        records,
        records as f64 / secs,
        detection.events()
    );
    report("window closes", &mut closes);
    report("closes that wrote events", &mut with_events);
    report(
        "after E + lateness (incl. waiting for metrics)",
        &mut after_due,
    );
    println!(
        "fell behind real time by at most {:.0} ms (0: kept up)",
        behind.as_secs_f64() * 1e3
    );
    let written = std::fs::File::open(&events).map(|f| std::io::BufReader::new(f).lines().count());
    println!("events file: {} lines", written.unwrap_or(0));
    let _ = std::fs::remove_file(events);
}

fn report(what: &str, latencies: &mut [Duration]) {
    if latencies.is_empty() {
        println!("{what}: none");
        return;
    }
    latencies.sort();
    let at =
        |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    println!(
        "{what}: {} — latency p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        latencies.len(),
        at(0.5),
        at(0.95),
        at(1.0)
    );
}
