//! NDJSON files and stdin, plain or gzip: read from their beginning on every run.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use vigil_core::schema::RecordKind;
use vigil_decode::{DecodedBatch, Decoder};

use super::parallel::{Parallel, UNIT_BYTES, Units};
use super::{Input, Source, SourceBatch, Step, summarize};
use crate::config::Pipeline;
use crate::error::PipelineError;
use crate::summary::{Counters, Summary};
use vigil_core::metrics::Counter;

/// Bytes read from the input at a time.
const READ_BYTES: usize = 1 << 20;

/// Files (in order) or stdin, decoded into one kind of record.
pub struct NdjsonSource {
    name: String,
    stream: Arc<str>,
    decoder: Decoder,
    inputs: VecDeque<Input>,
    reading: Option<(Input, Box<dyn Read + Send>)>,
    buf: Vec<u8>,
    ready: VecDeque<DecodedBatch>,
    counters: Arc<Counters>,
    bytes: Counter,
    stop: Arc<AtomicBool>,
    ended: bool,
    /// Decoding on several threads, when the run has them.
    parallel: Option<Parallel>,
}

impl NdjsonSource {
    /// A source reading `inputs` in order as records of `kind`, decoding on `threads`
    /// threads (more than one: that many decoders, each reading its own parts of a plain file
    /// or fed by a reader thread from stdin or gzip, the batches still in input order).
    pub fn new(
        name: &str,
        kind: RecordKind,
        inputs: Vec<Input>,
        pipeline: &Pipeline,
        counters: Arc<Counters>,
        stop: Arc<AtomicBool>,
        threads: usize,
    ) -> Result<Self, PipelineError> {
        let new_decoder =
            || Decoder::new(kind, pipeline.log_schema.clone(), pipeline.decode.clone());
        let parallel = if threads > 1 {
            Some(Parallel::start(
                name,
                inputs.iter().cloned().collect(),
                (0..threads).map(|_| new_decoder()).collect(),
                Units {
                    bytes: UNIT_BYTES,
                    below_consumer: false,
                },
                Arc::clone(&counters),
                Counters::bytes_of(name),
                Arc::clone(&stop),
            )?)
        } else {
            None
        };
        Ok(Self {
            name: name.into(),
            stream: Arc::from(name),
            decoder: new_decoder(),
            inputs: if parallel.is_some() {
                VecDeque::new()
            } else {
                inputs.into()
            },
            reading: None,
            buf: vec![0; READ_BYTES],
            ready: VecDeque::new(),
            counters,
            bytes: Counters::bytes_of(name),
            stop,
            ended: false,
            parallel,
        })
    }

    /// Reads the next chunk of input into the decoder; `false` once every input is read.
    fn read_more(&mut self) -> Result<bool, PipelineError> {
        if self.stop.load(Ordering::Relaxed) {
            // Stopping: what is decoded so far is handed over, the rest is not read.
            self.decoder.end_of_input();
            self.ready.extend(self.decoder.flush());
            return Ok(false);
        }
        let Some((input, reader)) = &mut self.reading else {
            let Some(input) = self.inputs.pop_front() else {
                return Ok(false);
            };
            let reader = input.open()?;
            self.decoder.begin_source(&input.name());
            self.reading = Some((input, reader));
            return Ok(true);
        };
        let n = match reader.read(&mut self.buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(true),
            Err(source) => {
                return Err(PipelineError::Input {
                    path: input.name().into(),
                    source,
                });
            }
        };
        if n == 0 {
            self.decoder.end_of_input();
            self.ready.extend(self.decoder.flush());
            self.reading = None;
            return Ok(true);
        }
        self.counters.add_bytes(&self.bytes, n);
        let ready = &mut self.ready;
        self.decoder
            .decode_all(&self.buf[..n], |b| ready.push_back(b));
        Ok(true)
    }
}

impl Source for NdjsonSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn next(&mut self) -> Result<Step, PipelineError> {
        loop {
            if let Some(batch) = self.ready.pop_front() {
                return Ok(Step::Batch(SourceBatch {
                    kind: self.decoder.kind(),
                    stream: Arc::clone(&self.stream),
                    batch,
                    delta: None,
                }));
            }
            if self.ended {
                return Ok(Step::End);
            }
            if let Some(p) = &mut self.parallel {
                match p.next_unit()? {
                    Some(batches) => self.ready.extend(batches),
                    None => self.ended = true,
                }
                continue;
            }
            self.ended = !self.read_more()?;
        }
    }

    fn summary(&self) -> Summary {
        match &self.parallel {
            Some(p) => summarize(&p.decoders),
            None => summarize([&self.decoder]),
        }
    }
}
