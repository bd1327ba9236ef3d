//! Decoding one source's inputs on several threads: a reader thread cuts the inputs into units
//! of whole lines, about [`UNIT_BYTES`] each, and hands them round-robin to workers with a
//! decoder each; the source takes the units' batches back in input order. Each unit starts at
//! a known line of its input, so dead letters name the same line as a single decoder would.

use std::collections::VecDeque;
use std::io::Read;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use memchr::{memchr_iter, memrchr};
use vigil_decode::{DecodedBatch, Decoder};

use super::Input;
use crate::error::PipelineError;
use crate::summary::Counters;
use vigil_core::metrics::Counter;

/// Bytes read from the input at a time.
const READ_BYTES: usize = 1 << 20;

/// Bytes of whole lines a worker decodes at a time, for a source feeding the archive: enough
/// that the per-service batches of a unit stay near the decoder's batch size.
pub const UNIT_BYTES: usize = 4 << 20;

/// A run of input bytes for one worker.
struct Piece {
    bytes: Arc<Vec<u8>>,
    range: Range<usize>,
    /// The first piece of a unit: its input's name and the line it starts at.
    begin: Option<(Arc<str>, i64)>,
    /// The last piece of a unit: it ends at a line boundary, or at its input's end (`eof`).
    end: bool,
    eof: bool,
}

/// The reader and workers of one source.
pub struct Parallel {
    results: Vec<Receiver<Vec<DecodedBatch>>>,
    next: usize,
    reader: Option<JoinHandle<Result<(), PipelineError>>>,
    workers: Vec<JoinHandle<Decoder>>,
    /// The workers' decoders, once every unit is done (for their counts).
    pub decoders: Vec<Decoder>,
}

impl Parallel {
    /// Starts a reader over `inputs`, cutting them into units of about `unit_bytes`, and a
    /// worker per decoder.
    pub fn start(
        name: &str,
        inputs: VecDeque<Input>,
        decoders: Vec<Decoder>,
        unit_bytes: usize,
        counters: Arc<Counters>,
        bytes: Counter,
        stop: Arc<AtomicBool>,
    ) -> Result<Self, PipelineError> {
        let spawn_err =
            |e: std::io::Error| PipelineError::Panicked(format!("cannot start a thread: {e}"));
        let mut work = Vec::new();
        let mut results = Vec::new();
        let mut workers = Vec::new();
        // Read buffers come back once decoded and are read into again: a fresh megabyte per
        // read cost the reader a page fault per page and its zeroing, as much as the read.
        // A whole unit fits in a worker's queue, so the reader moves on to the next worker;
        // the pool holds as many buffers as the queues can, so the reader rarely allocates.
        let queue = unit_bytes.div_ceil(READ_BYTES) + 2;
        let (spare_tx, spare_rx) = sync_channel::<Vec<u8>>(queue * decoders.len());
        for (i, mut decoder) in decoders.into_iter().enumerate() {
            let (tx, rx) = sync_channel::<Piece>(queue);
            let (done_tx, done_rx) = sync_channel(1);
            work.push(tx);
            results.push(done_rx);
            let spare = spare_tx.clone();
            workers.push(
                std::thread::Builder::new()
                    .name(format!("{name}-decode-{i}"))
                    .spawn(move || {
                        decode_units(&mut decoder, rx, done_tx, spare);
                        decoder
                    })
                    .map_err(spawn_err)?,
            );
        }
        let reader = std::thread::Builder::new()
            .name(format!("{name}-read"))
            .spawn(move || {
                let buffers = Buffers {
                    spare: spare_rx,
                    len: READ_BYTES.min(unit_bytes),
                };
                read_units(inputs, work, &buffers, unit_bytes, &counters, &bytes, &stop)
            })
            .map_err(spawn_err)?;
        Ok(Self {
            results,
            next: 0,
            reader: Some(reader),
            workers,
            decoders: Vec::new(),
        })
    }

    /// The batches of the next unit in input order; `None` once every unit is done.
    pub fn next_unit(&mut self) -> Result<Option<Vec<DecodedBatch>>, PipelineError> {
        if let Some(rx) = self.results.get(self.next)
            && let Ok(batches) = rx.recv()
        {
            self.next = (self.next + 1) % self.results.len();
            return Ok(Some(batches));
        }
        // Units go round-robin: a worker without the next unit means there is none.
        self.results.clear();
        let panicked = || PipelineError::Panicked("a decoding thread panicked".into());
        let read = match self.reader.take() {
            Some(r) => r.join().map_err(|_| panicked())?,
            None => Ok(()),
        };
        for w in self.workers.drain(..) {
            self.decoders.push(w.join().map_err(|_| panicked())?);
        }
        read.map(|()| None)
    }
}

/// Decodes the pieces it is given, sending each unit's batches when the unit ends.
fn decode_units(
    decoder: &mut Decoder,
    pieces: Receiver<Piece>,
    done: SyncSender<Vec<DecodedBatch>>,
    spare: SyncSender<Vec<u8>>,
) {
    let mut out = Vec::new();
    for p in pieces {
        if let Some((name, line)) = &p.begin {
            decoder.begin_source_at(name, *line);
        }
        decoder.decode_all(&p.bytes[p.range.clone()], |b| out.push(b));
        if p.eof {
            decoder.end_of_input();
        }
        if p.end {
            out.extend(decoder.flush());
            if done.send(std::mem::take(&mut out)).is_err() {
                return;
            }
        }
        // The last piece of a read hands its buffer back; a full pool lets it go.
        if let Ok(buf) = Arc::try_unwrap(p.bytes) {
            let _ = spare.try_send(buf);
        }
    }
}

/// Read buffers handed back by the workers.
struct Buffers {
    spare: Receiver<Vec<u8>>,
    /// Bytes read at a time: every buffer is this long.
    len: usize,
}

impl Buffers {
    fn take(&self) -> Vec<u8> {
        match self.spare.try_recv() {
            Ok(buf) if buf.len() == self.len => buf,
            _ => vec![0u8; self.len],
        }
    }
}

/// Reads every input, cutting it into units at line ends, each unit to the next worker.
fn read_units(
    inputs: VecDeque<Input>,
    workers: Vec<SyncSender<Piece>>,
    buffers: &Buffers,
    unit_bytes: usize,
    counters: &Counters,
    bytes: &Counter,
    stop: &AtomicBool,
) -> Result<(), PipelineError> {
    let mut w = 0;
    // A worker is gone only when the source is being dropped: nothing more to do.
    let send = |w: usize, p: Piece| workers[w].send(p).is_ok();
    for input in inputs {
        let name: Arc<str> = Arc::from(input.name());
        let mut reader = input.open()?;
        let mut line = 1i64;
        let mut unit = 0usize;
        let mut begin = Some((Arc::clone(&name), line));
        loop {
            let mut buf = buffers.take();
            let n = if stop.load(Ordering::Relaxed) {
                0
            } else {
                match reader.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(source) => {
                        return Err(PipelineError::Input {
                            path: input.name().into(),
                            source,
                        });
                    }
                }
            };
            if n == 0 {
                let eof = Piece {
                    bytes: Arc::new(Vec::new()),
                    range: 0..0,
                    begin: begin.take(),
                    end: true,
                    eof: true,
                };
                if !send(w, eof) || stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                w = (w + 1) % workers.len();
                break;
            }
            counters.add_bytes(bytes, n);
            let buf = Arc::new(buf);
            unit += n;
            let cut = if unit >= unit_bytes {
                memrchr(b'\n', &buf[..n]).map(|p| p + 1)
            } else {
                None
            };
            let head = cut.unwrap_or(n);
            let piece = Piece {
                bytes: Arc::clone(&buf),
                range: 0..head,
                begin: begin.take(),
                end: cut.is_some(),
                eof: false,
            };
            if !send(w, piece) {
                return Ok(());
            }
            line += memchr_iter(b'\n', &buf[..head]).count() as i64;
            if cut.is_some() {
                w = (w + 1) % workers.len();
                unit = n - head;
                begin = Some((Arc::clone(&name), line));
                if head < n {
                    let rest = Piece {
                        bytes: Arc::clone(&buf),
                        range: head..n,
                        begin: begin.take(),
                        end: false,
                        eof: false,
                    };
                    if !send(w, rest) {
                        return Ok(());
                    }
                    line += memchr_iter(b'\n', &buf[head..n]).count() as i64;
                }
            }
        }
    }
    Ok(())
}
