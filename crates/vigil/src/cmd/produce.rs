//! `vigil produce`: NDJSON lines → Kafka messages, for users and tests.

use std::io::BufRead;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use vigil_pipeline::{Counters, Input, check_readable};

use crate::cli::ProduceArgs;
use crate::output::{Progress, bytes, thousands};

/// How long the brokers have to answer before anything is sent.
const REACH_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let inputs = Input::from_args(&args.files)?;
    check_readable(&inputs)?;
    let properties = args.properties.iter().cloned().collect();
    let mut producer = vigil_kafka::Producer::new(&args.brokers, &properties)?;
    producer.reachable(REACH_TIMEOUT).with_context(|| {
        format!(
            "no Kafka broker at {} answered within {}s",
            args.brokers,
            REACH_TIMEOUT.as_secs()
        )
    })?;
    let counters = Arc::new(Counters::default());
    let total = inputs.iter().map(Input::file_size).sum::<Option<u64>>();
    let progress = Progress::start(counters.clone(), total);
    let started = Instant::now();
    let mut line = Vec::new();
    for input in &inputs {
        let mut reader = std::io::BufReader::with_capacity(1 << 20, input.open()?);
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", input.name()))?;
            if n == 0 {
                break;
            }
            counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
            let record = line.strip_suffix(b"\n").unwrap_or(&line);
            let record = record.strip_suffix(b"\r").unwrap_or(record);
            if record.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let key = args.key.as_deref().and_then(|k| key_of(record, k));
            producer.send(&args.topic, key.as_deref().map(str::as_bytes), record)?;
            counters.records.fetch_add(1, Ordering::Relaxed);
        }
    }
    let flushed = producer.flush(Duration::from_secs(60));
    progress.finish();
    let stats = producer.stats();
    let secs = started.elapsed().as_secs_f64();
    let sent = counters.records.load(Ordering::Relaxed);
    eprintln!(
        "produced {} messages, {} to `{}` in {secs:.2} s ({} messages/s); {} delivered, {} failed attempts, {} dropped",
        thousands(sent),
        bytes(counters.bytes.load(Ordering::Relaxed)),
        args.topic,
        thousands((sent as f64 / secs.max(1e-9)) as u64),
        thousands(stats.delivered),
        thousands(stats.failed_attempts),
        thousands(stats.dropped),
    );
    flushed?;
    Ok(ExitCode::SUCCESS)
}

/// The string value of top-level field `key` of a JSON object line, if it has one.
fn key_of(record: &[u8], key: &str) -> Option<String> {
    let v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(record).ok()?;
    match v.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        _ => None,
    }
}
