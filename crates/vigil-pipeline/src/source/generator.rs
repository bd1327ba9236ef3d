//! The built-in generator of the deals system's telemetry (logs and metrics), as fast as it
//! goes or paced to the wall clock.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use vigil_core::schema::RecordKind;
use vigil_decode::{DecodedBatch, Decoder};
use vigil_gen::Generator;

use super::{Source, SourceBatch, Step, summarize};
use crate::config::Pipeline;
use crate::error::PipelineError;
use crate::summary::{Counters, Summary};
use vigil_core::metrics::Counter;

/// Generated logs and metrics, decoded like any NDJSON input.
pub struct GeneratorSource {
    name: String,
    generator: Generator,
    realtime: bool,
    /// Event time of the first record, and when generation started: the pace in real time.
    start: (i64, Instant),
    logs: Decoder,
    metrics: Decoder,
    streams: [Arc<str>; 2],
    lines: (Vec<u8>, Vec<u8>),
    ready: VecDeque<(RecordKind, DecodedBatch)>,
    counters: Arc<Counters>,
    bytes: Counter,
    stop: Arc<AtomicBool>,
    ended: bool,
}

impl GeneratorSource {
    /// Generates `config`'s telemetry; with `realtime`, each second of event time is handed
    /// over when the wall clock reaches it.
    pub fn new(
        name: &str,
        config: vigil_gen::Config,
        realtime: bool,
        pipeline: &Pipeline,
        counters: Arc<Counters>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        let mut logs = Decoder::logs(pipeline.log_schema.clone(), pipeline.decode.clone());
        let mut metrics = Decoder::metrics(pipeline.decode.clone());
        logs.begin_source(&format!("{name}:logs"));
        metrics.begin_source(&format!("{name}:metrics"));
        Self {
            name: name.into(),
            start: (config.start_micros, Instant::now()),
            generator: Generator::new(config),
            realtime,
            logs,
            metrics,
            streams: [
                Arc::from(format!("{name}:logs")),
                Arc::from(format!("{name}:metrics")),
            ],
            lines: (Vec::new(), Vec::new()),
            ready: VecDeque::new(),
            counters,
            bytes: Counters::bytes_of(name),
            stop,
            ended: false,
        }
    }

    /// Generates the next tick into the decoders; `false` once the generator is done.
    fn tick(&mut self) -> bool {
        let (lbuf, mbuf) = &mut self.lines;
        lbuf.clear();
        mbuf.clear();
        let more = !self.stop.load(Ordering::Relaxed) && self.generator.next_tick(lbuf, mbuf);
        self.counters
            .add_bytes(&self.bytes, lbuf.len() + mbuf.len());
        let ready = &mut self.ready;
        self.logs
            .decode_all(lbuf, |b| ready.push_back((RecordKind::Logs, b)));
        self.metrics
            .decode_all(mbuf, |b| ready.push_back((RecordKind::Metrics, b)));
        if !more {
            self.logs.end_of_input();
            self.metrics.end_of_input();
        }
        if !more || self.realtime {
            // In real time every second is handed over as it is generated.
            ready.extend(self.logs.flush().map(|b| (RecordKind::Logs, b)));
            ready.extend(self.metrics.flush().map(|b| (RecordKind::Metrics, b)));
        }
        if more && self.realtime {
            let (start, t0) = self.start;
            let due = Duration::from_micros((self.generator.watermark() - start).max(0) as u64);
            if let Some(wait) = due.checked_sub(t0.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        more
    }
}

impl Source for GeneratorSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn next(&mut self) -> Result<Step, PipelineError> {
        loop {
            if let Some((kind, batch)) = self.ready.pop_front() {
                // The generator makes logs and metrics only.
                let stream = match kind {
                    RecordKind::Metrics => &self.streams[1],
                    RecordKind::Logs | RecordKind::Spans => &self.streams[0],
                };
                return Ok(Step::Batch(SourceBatch {
                    kind,
                    stream: Arc::clone(stream),
                    batch,
                    delta: None,
                }));
            }
            if self.ended {
                return Ok(Step::End);
            }
            self.ended = !self.tick();
        }
    }

    fn summary(&self) -> Summary {
        summarize([&self.logs, &self.metrics])
    }
}
