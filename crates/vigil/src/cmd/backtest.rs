//! `vigil backtest`: a pipeline's rules over recorded telemetry, as fast as the machine
//! allows, in event-time order.
//!
//! The inputs are read in step: the next chunk always comes from the input whose latest event
//! time is furthest behind, so the watermark (the least advanced input's latest event time,
//! minus the allowed lateness) never closes a window another input still has rows for.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;
use vigil_core::schema::RecordKind;
use vigil_decode::{Decoder, DecoderOptions};
use vigil_detect::WindowedRules;
use vigil_pipeline::Input;

use crate::cli::BacktestArgs;
use crate::output::thousands;

struct Feed {
    kind: RecordKind,
    reader: Box<dyn Read + Send>,
    decoder: Decoder,
    latest: i64,
    done: bool,
}

pub fn run(args: BacktestArgs) -> anyhow::Result<ExitCode> {
    let pipeline = match vigil_config::load(&args.pipeline) {
        Ok(p) => p,
        Err(e) => {
            eprint!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    anyhow::ensure!(
        !pipeline.rules.is_empty(),
        "{} has no [[rules]] to backtest",
        args.pipeline.display()
    );
    let inputs: Vec<(RecordKind, PathBuf)> = [
        (RecordKind::Logs, args.logs.clone()),
        (RecordKind::Metrics, args.metrics.clone()),
    ]
    .into_iter()
    .filter_map(|(k, p)| p.map(|p| (k, p)))
    .collect();
    anyhow::ensure!(!inputs.is_empty(), "give --logs, --metrics or both");
    let opts = DecoderOptions {
        batch_size: pipeline.decode.batch_size,
        max_record_bytes: pipeline.decode.max_record_bytes,
        max_depth: pipeline.decode.max_depth,
        dead_letter_raw_limit: pipeline.decode.dead_letter_raw_limit,
    };
    for (_, path) in &inputs {
        anyhow::ensure!(
            !same_file(path, &args.anomalies),
            "--anomalies {} is also an input",
            args.anomalies.display()
        );
    }
    let mut feeds = Vec::new();
    for (kind, path) in inputs {
        let input = Input::File(path);
        vigil_pipeline::check_readable(std::slice::from_ref(&input))?;
        let mut decoder = Decoder::new(kind, pipeline.log_schema.clone(), opts.clone());
        decoder.begin_source(&input.name());
        feeds.push(Feed {
            kind,
            reader: input.open()?,
            decoder,
            latest: i64::MIN,
            done: false,
        });
    }
    let mut engine = WindowedRules::new(&pipeline.rules)?;
    let lateness = i64::try_from(pipeline.detect.allowed_lateness.as_micros()).unwrap_or(0);
    let longest_window = pipeline
        .rules
        .iter()
        .map(|r| i64::try_from(r.window.as_micros()).unwrap_or(0))
        .max()
        .unwrap_or(0);
    let rt = super::runtime()?;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&args.anomalies)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", args.anomalies.display()))?,
    );
    let started = Instant::now();
    let (mut firing, mut resolved) = (0u64, 0u64);
    // Small reads keep the watermark close to the data, so events are detected (and stamped)
    // close to when a live run would detect them.
    let mut buf = vec![0u8; 256 << 10];
    let mut write_events = |events: Vec<vigil_detect::AnomalyEvent>| -> anyhow::Result<()> {
        for e in events {
            match e.status {
                vigil_detect::Status::Firing => firing += 1,
                vigil_detect::Status::Resolved => resolved += 1,
            }
            serde_json::to_writer(&mut out, &e)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    };
    while let Some(feed) = feeds
        .iter_mut()
        .filter(|f| !f.done)
        .min_by_key(|f| f.latest)
    {
        let n = feed.reader.read(&mut buf)?;
        let mut batches = Vec::new();
        if n == 0 {
            feed.decoder.end_of_input();
            batches.extend(feed.decoder.flush());
            feed.done = true;
        } else {
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                let used = feed.decoder.decode(rest);
                rest = &rest[used..];
                if !rest.is_empty() || used == 0 {
                    batches.extend(feed.decoder.flush());
                }
            }
            batches.extend(feed.decoder.flush());
        }
        for b in batches {
            for rows in &b.records {
                feed.latest = feed.latest.max(latest_time(rows));
                engine.push(feed.kind, rows);
            }
        }
        let pending = feeds.iter().filter(|f| !f.done).map(|f| f.latest).min();
        if let Some(w) = pending {
            write_events(rt.block_on(engine.advance(w.saturating_sub(lateness)))?)?;
        }
    }
    // Every input is read: close every window that holds a row.
    let end = feeds.iter().map(|f| f.latest).max().unwrap_or(i64::MIN);
    write_events(rt.block_on(engine.advance(end.saturating_add(longest_window)))?)?;
    out.flush()?;
    let records: u64 = feeds.iter().map(|f| f.decoder.stats().records).sum();
    let dead: u64 = feeds.iter().map(|f| f.decoder.stats().dead_letters).sum();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "backtest: {} records ({} dead letters, {} late rows) in {secs:.2} s ({} records/s); {} firing and {} resolved events → {}",
        thousands(records),
        thousands(dead),
        thousands(engine.late_rows()),
        thousands((records as f64 / secs.max(1e-9)) as u64),
        firing,
        resolved,
        args.anomalies.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn latest_time(batch: &RecordBatch) -> i64 {
    batch
        .schema()
        .index_of("timestamp")
        .ok()
        .and_then(|i| {
            arrow::compute::max(batch.column(i).as_primitive::<TimestampMicrosecondType>())
        })
        .unwrap_or(i64::MIN)
}
