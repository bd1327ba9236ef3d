//! `vigil backtest`: a pipeline's rules over recorded telemetry, as fast as the machine
//! allows, in event-time order.
//!
//! The inputs are read in step: the next chunk always comes from the input whose latest event
//! time is furthest behind, so the watermark (the least advanced input's latest event time,
//! minus the allowed lateness) never closes a window another input still has rows for.
//! Detection is the live pipelines' ([`Detection`]), correlation included, writing its events
//! (each with its incident) to `--anomalies`. With `--spans` (OTLP/JSON lines, what the
//! collector's file exporter writes), traces are assembled from the spans rather than the logs.

use std::io::{BufRead, BufReader, Read};
use std::process::ExitCode;
use std::time::Instant;

use std::sync::Arc;

use vigil_core::schema::RecordKind;
use vigil_decode::{DecodedBatch, Decoder, OtlpEncoding};
use vigil_pipeline::source::{AnyDecoder, Parallel, Units};
use vigil_pipeline::{Counters, Detection, Input};

use crate::cli::BacktestArgs;
use crate::output::thousands;

/// Bytes read (or decoded, on other threads) at a time: small, so the watermark stays close
/// to the data and events are detected (and stamped) close to when a live run would.
const READ_BYTES: usize = 256 << 10;

struct Feed {
    kind: RecordKind,
    name: String,
    /// Where the records come from.
    reading: Reading,
    /// Lines read, for OTLP requests' dead letters.
    line: i64,
    latest: i64,
    done: bool,
}

/// A feed's input: read and decoded here (JSON lines records, or OTLP/JSON span requests one
/// per line), or JSON lines decoded on other threads.
enum Reading {
    Here(BufReader<Box<dyn Read + Send>>, AnyDecoder),
    Parallel(Parallel),
}

impl Feed {
    /// Reads and decodes about `buf.len()` bytes; marks the feed done at its end.
    fn step(&mut self, buf: &mut [u8]) -> std::io::Result<Vec<DecodedBatch>> {
        let mut batches = Vec::new();
        let (reader, decoder) = match &mut self.reading {
            Reading::Parallel(p) => {
                match p.next_unit().map_err(std::io::Error::other)? {
                    Some(unit) => batches = unit,
                    None => self.done = true,
                }
                return Ok(batches);
            }
            Reading::Here(reader, decoder) => (reader, decoder),
        };
        match decoder {
            AnyDecoder::Lines(d) => {
                let n = reader.read(buf)?;
                if n == 0 {
                    d.end_of_input();
                    self.done = true;
                } else {
                    d.decode_all(&buf[..n], |b| batches.push(b));
                }
                batches.extend(d.flush());
            }
            AnyDecoder::Otlp(decoder) => {
                let mut read = 0;
                let mut request = Vec::new();
                while read < buf.len() {
                    request.clear();
                    if reader.read_until(b'\n', &mut request)? == 0 {
                        self.done = true;
                        break;
                    }
                    read += request.len();
                    self.line += 1;
                    let text = request.trim_ascii();
                    if !text.is_empty() {
                        decoder.decode_messages(&self.name, None, [(text, self.line)]);
                    }
                }
                batches.extend(decoder.flush());
            }
        }
        Ok(batches)
    }

    /// Records decoded and dead letters.
    fn counts(&self) -> (u64, u64) {
        let stats: Vec<_> = match &self.reading {
            Reading::Parallel(p) => p.decoders.iter().map(|d| d.stats()).collect(),
            Reading::Here(_, decoder) => vec![decoder.stats()],
        };
        (
            stats.iter().map(|s| s.records).sum(),
            stats.iter().map(|s| s.dead_letters).sum(),
        )
    }
}

pub fn run(args: BacktestArgs) -> anyhow::Result<ExitCode> {
    // The time reported covers everything but starting the process: the file's check, the
    // decoders' start and detection's set-up as well as the run.
    let started = Instant::now();
    let mut pipeline = match vigil_config::load(&args.pipeline) {
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
    let inputs: Vec<(RecordKind, Input)> = [
        (RecordKind::Logs, args.logs.clone()),
        (RecordKind::Metrics, args.metrics.clone()),
        (RecordKind::Spans, args.spans.clone()),
    ]
    .into_iter()
    .filter_map(|(k, p)| p.map(|p| (k, Input::from_arg(p))))
    .collect();
    anyhow::ensure!(
        !inputs.is_empty(),
        "give --logs, --metrics, --spans or several"
    );
    anyhow::ensure!(
        inputs.iter().filter(|(_, i)| *i == Input::Stdin).count() <= 1,
        "only one of --logs, --metrics and --spans can read stdin (`-`)"
    );
    for (_, input) in &inputs {
        if let Input::File(path) = input {
            anyhow::ensure!(
                !super::same_file(path, &args.anomalies),
                "--anomalies {} is also an input",
                args.anomalies.display()
            );
        }
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if args.no_correlate {
        pipeline.detect.correlation = None;
    }
    // A backtest keeps nothing but what detection computes: log records are validated whole
    // (the same dead letters) but only the columns the rules and correlation read are written.
    let columns = vigil_pipeline::log_columns_read(&pipeline);
    let columns: Option<Vec<&str>> = columns
        .as_ref()
        .map(|c| c.iter().map(String::as_str).collect());
    let lines_decoder = |kind| {
        let mut d = Decoder::new(kind, pipeline.log_schema.clone(), pipeline.decode.clone());
        if let Some(c) = &columns {
            d.keep_only(c);
        }
        d
    };
    let mut feeds = Vec::new();
    for (kind, input) in inputs {
        vigil_pipeline::check_readable(std::slice::from_ref(&input))?;
        let reading = match kind {
            RecordKind::Spans => Reading::Here(
                BufReader::new(input.open()?),
                AnyDecoder::new(kind, Some(OtlpEncoding::Json), &pipeline),
            ),
            _ if threads > 1 => Reading::Parallel(Parallel::start(
                &input.name(),
                [input.clone()].into(),
                (0..threads).map(|_| lines_decoder(kind)).collect(),
                // Detection is what every unit waits for: the decoders make way for it.
                Units {
                    bytes: READ_BYTES,
                    below_consumer: true,
                },
                Arc::default(),
                Counters::bytes_of(&input.name()),
                Arc::default(),
            )?),
            _ => {
                let mut d = lines_decoder(kind);
                d.begin_source(&input.name());
                Reading::Here(
                    BufReader::new(input.open()?),
                    AnyDecoder::Lines(Box::new(d)),
                )
            }
        };
        feeds.push(Feed {
            kind,
            name: input.name(),
            reading,
            line: 0,
            latest: i64::MIN,
            done: false,
        });
    }
    // A backtest replays the past: it pages nobody.
    pipeline.detect.anomaly_topic = None;
    pipeline.detect.alertmanagers.clear();
    pipeline.detect.anomalies_file = Some(args.anomalies.clone());
    let mut detection = Detection::new(&pipeline)?.expect("rules were checked above");
    if args.spans.is_some() {
        detection.assemble_traces_from(RecordKind::Spans);
    }
    let rt = super::runtime()?;
    let mut buf = vec![0u8; READ_BYTES];
    while let Some(feed) = feeds
        .iter_mut()
        .filter(|f| !f.done)
        .min_by_key(|f| f.latest)
    {
        let batches = feed.step(&mut buf)?;
        for b in batches {
            for rows in &b.records {
                detection.push(feed.kind, &feed.name, rows);
            }
        }
        feed.latest = detection.latest_of(&feed.name).unwrap_or(feed.latest);
        if feed.done {
            detection.end_source(&feed.name);
        }
        rt.block_on(detection.advance())?;
    }
    // Every input is read: close every window that holds a row.
    rt.block_on(detection.finish())?;
    let records: u64 = feeds.iter().map(|f| f.counts().0).sum();
    let dead: u64 = feeds.iter().map(|f| f.counts().1).sum();
    let secs = started.elapsed().as_secs_f64();
    let (series, spans) = detection.forgotten();
    let mut capped = String::new();
    if series > 0 {
        capped += &format!(", {} rule series forgotten", thousands(series));
    }
    if spans > 0 {
        capped += &format!(", {} spans over a trace's cap", thousands(spans));
    }
    eprintln!(
        "backtest: {} records ({} dead letters, {} late rows{capped}{}) in {secs:.2} s ({} records/s); {} anomaly events → {}",
        thousands(records),
        thousands(dead),
        thousands(detection.late_rows()),
        detection
            .traces()
            .map_or(String::new(), |t| format!(", {} traces", thousands(t))),
        thousands((records as f64 / secs.max(1e-9)) as u64),
        detection.events(),
        args.anomalies.display()
    );
    Ok(ExitCode::SUCCESS)
}
