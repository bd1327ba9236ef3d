//! Decoding one source's inputs on several threads. The inputs are cut into units of whole
//! lines, about [`UNIT_BYTES`] each, handed round-robin to workers with a decoder each; the
//! source takes the units' batches back in input order.
//!
//! A plain file is cut by the workers themselves: a unit's byte range follows from the file's
//! length (it ends after the last newline before its share's end), so each worker reads its
//! own units at their offsets and no thread reads for the others. Whichever worker is free
//! takes the next share, so a worker that got less of a core does not hold the others up
//! (with shares dealt round-robin, one fell a queue behind and left a core idle while the
//! other waited for room). Stdin and gzip can only be read in order: a reader thread cuts
//! them into units at line ends and hands each to the next worker. A plain file is read up
//! to the length it had when decoding started.
//!
//! Workers number each unit's lines from 1 and say how many it held; the source renumbers the
//! dead letters by the lines of the units before, so they name the line a single decoder would.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use arrow::array::{AsArray, Int64Array};
use arrow::datatypes::Int64Type;
use arrow::record_batch::RecordBatch;
use memchr::memrchr;
use vigil_core::schema::dead;
use vigil_decode::{DecodedBatch, Decoder};

use super::Input;
use crate::error::PipelineError;
use crate::summary::Counters;
use vigil_core::metrics::Counter;

/// Bytes read from the input at a time.
const READ_BYTES: usize = 1 << 20;

/// Bytes read first looking back for the newline a unit ends at, and at most at a time.
const FIRST_SCAN_BYTES: usize = 4 << 10;
const SCAN_BYTES: usize = 64 << 10;

/// Bytes of whole lines a worker decodes at a time, for a source feeding the archive: enough
/// that the per-service batches of a unit stay near the decoder's batch size.
pub const UNIT_BYTES: usize = 4 << 20;

/// A run of input bytes for one worker, from the reader thread.
struct Piece {
    bytes: Arc<Vec<u8>>,
    range: Range<usize>,
    /// The first piece of a unit: its input's name and whether the unit starts the input.
    begin: Option<(Arc<str>, bool)>,
    /// The last piece of a unit: it ends at a line boundary, or at its input's end (`eof`).
    end: bool,
    eof: bool,
}

/// A unit's batches, and what renumbering their dead letters needs.
struct Unit {
    batches: Vec<DecodedBatch>,
    /// Whether the unit starts its input.
    first: bool,
    /// Lines the unit held.
    lines: i64,
    /// Whether reading stopped within the unit (the run is stopping): no later unit is taken,
    /// so what is decoded stays a prefix of the input.
    stopped: bool,
}

/// A plain file the workers read parts of.
struct PlainFile {
    name: Arc<str>,
    path: PathBuf,
    /// Where its text starts: after a byte order mark, if it has one.
    start: u64,
    len: u64,
}

/// One unit of a plain file: the share of its bytes it decodes the lines of (see
/// [`Reading::decode`]).
struct Share {
    file: usize,
    bytes: Range<u64>,
}

/// How a source's inputs are cut and decoded.
#[derive(Debug, Clone, Copy)]
pub struct Units {
    /// Bytes of whole lines a worker decodes at a time (about).
    pub bytes: usize,
    /// The workers run below the priority of the thread that takes their units (nice
    /// +[`BELOW_CONSUMER`]), for a consumer that everything waits on (a backtest's
    /// detection). At the same priority, workers woken after waiting for room had run less
    /// than it, so the scheduler gave them its core whenever they woke: a backtest with
    /// correlation ran 12-22% slower with workers sharing the shares than with each dealt its
    /// own, and 4-7% faster with them below it (BENCHMARKS.md).
    pub below_consumer: bool,
}

/// How far below the consumer's priority the workers run, when they do (see
/// [`Units::below_consumer`]): nice 10, a tenth of the consumer's weight.
pub const BELOW_CONSUMER: i32 = 10;

/// Where a source's decoded units come from, in input order.
enum Decoded {
    /// From each worker in turn (a reader thread deals the units round-robin).
    InTurn {
        results: Vec<Receiver<Result<Unit, PipelineError>>>,
        next: usize,
    },
    /// From whichever worker decoded the next one (plain files).
    Shared(Arc<Shared>),
}

/// The shares of plain files, taken by whichever worker is free, and the units decoded from
/// them until the source takes them in order.
struct Shared {
    state: Mutex<SharedState>,
    /// Signalled to a worker waiting for room when the source has taken a quarter of the
    /// lead, and to all when the shares close.
    room: Condvar,
    /// Signalled to the source when the unit it waits for is done, or a worker ends.
    ready: Condvar,
    /// Units a worker may decode ahead of the one the source takes next.
    lead: usize,
    /// Units the source, once it waits, is woken for together: a wake-up for every unit
    /// (a futex, a decoder preempted, a switch back) cost a backtest's decoders 2-4% of
    /// their time when the source took a unit faster than the two decoded one.
    wake_for: usize,
}

struct SharedState {
    /// Shares in all; the next one a worker takes; units the source has taken.
    shares: usize,
    claimed: usize,
    taken: usize,
    /// Decoded units the source has not taken yet, by share.
    done: BTreeMap<usize, Result<Unit, PipelineError>>,
    /// Workers still running.
    workers: usize,
    /// No share is taken any more: a unit failed or stopped, or the source is done.
    closed: bool,
    /// Workers waiting for room; whether the source waits for the next unit.
    waiting_for_room: usize,
    waiting_for_next: bool,
}

impl SharedState {
    /// Whether the source, waiting for the next unit, is to be woken: that unit and the
    /// `wake_for - 1` after it are done (as many as are left), or the shares closed (those
    /// may never come).
    fn ready_for_source(&self, wake_for: usize) -> bool {
        let end = (self.taken + wake_for).min(self.shares);
        self.closed || (self.taken..end).all(|k| self.done.contains_key(&k))
    }
}

impl Shared {
    /// `shares` to decode by `workers`, at most `lead` units ahead of the source.
    fn new(shares: usize, workers: usize, lead: usize) -> Self {
        Self {
            state: Mutex::new(SharedState {
                shares,
                claimed: 0,
                taken: 0,
                done: BTreeMap::new(),
                workers,
                closed: false,
                waiting_for_room: 0,
                waiting_for_next: false,
            }),
            room: Condvar::new(),
            ready: Condvar::new(),
            lead,
            // An eighth of the lead: the units waited for are always within it, so they come.
            wake_for: (lead / 8).max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SharedState> {
        // The state stays whole whatever panicked while holding it: a worker's panic is
        // reported when it is joined.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(
        &self,
        on: &Condvar,
        state: MutexGuard<'a, SharedState>,
    ) -> MutexGuard<'a, SharedState> {
        on.wait(state).unwrap_or_else(|e| e.into_inner())
    }

    /// The next share for a worker once it is within the lead; `None` when none is left.
    fn claim(&self) -> Option<usize> {
        let mut s = self.lock();
        loop {
            if s.closed || s.claimed == s.shares {
                return None;
            }
            if s.claimed < s.taken + self.lead {
                s.claimed += 1;
                return Some(s.claimed - 1);
            }
            s.waiting_for_room += 1;
            s = self.wait(&self.room, s);
            s.waiting_for_room -= 1;
        }
    }

    /// A worker's unit of share `k`; `last` closes the shares (it failed or the run stops).
    fn put(&self, k: usize, unit: Result<Unit, PipelineError>, last: bool) {
        let mut s = self.lock();
        s.done.insert(k, unit);
        s.closed |= last;
        let next = s.waiting_for_next && s.ready_for_source(self.wake_for);
        // Woken after the lock is let go, so the woken thread does not block on it at once.
        drop(s);
        if last {
            self.room.notify_all();
        }
        if next {
            self.ready.notify_one();
        }
    }

    /// The next unit in input order; `None` once every unit is taken (or no worker is left
    /// to decode the next: one panicked, which joining it reports).
    fn take(&self) -> Option<Result<Unit, PipelineError>> {
        let mut s = self.lock();
        loop {
            let next = s.taken;
            if let Some(unit) = s.done.remove(&next) {
                s.taken += 1;
                // A waiting worker is woken once a quarter of the lead is free, and then
                // decodes that many units in a row: woken for every unit taken, the workers
                // took the source's core from it as often, when it was the one behind.
                let room = s.taken + self.lead - s.claimed;
                let wake = s.waiting_for_room > 0 && room >= self.lead.div_ceil(4);
                drop(s);
                if wake {
                    self.room.notify_one();
                }
                return Some(unit);
            }
            let none_coming = next == s.claimed && (s.closed || s.claimed == s.shares);
            if none_coming || s.workers == 0 {
                return None;
            }
            s.waiting_for_next = true;
            s = self.wait(&self.ready, s);
            s.waiting_for_next = false;
        }
    }

    /// Takes no more shares: workers end after the unit they are decoding.
    fn close(&self) {
        self.lock().closed = true;
        self.room.notify_all();
    }
}

/// Counts a worker out of [`SharedState::workers`] when it ends, panicking or not. A worker
/// that panics closes the shares: the unit it held never comes, so the others stop (rather
/// than wait for room behind it) and the source, once none is left, ends and reports it.
struct Leaving(Arc<Shared>);

impl Drop for Leaving {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.workers -= 1;
        s.closed |= std::thread::panicking();
        drop(s);
        self.0.room.notify_all();
        self.0.ready.notify_one();
    }
}

/// The reader (if any) and workers of one source.
pub struct Parallel {
    units: Decoded,
    /// Lines of the current input in the units taken so far.
    lines: i64,
    reader: Option<JoinHandle<Result<(), PipelineError>>>,
    workers: Vec<JoinHandle<Decoder>>,
    /// The workers' decoders, once every unit is done (for their counts).
    pub decoders: Vec<Decoder>,
}

impl Parallel {
    /// Starts a worker per decoder over `inputs`, cut into units of about `units.bytes`: read
    /// by the workers themselves when every input is a plain file, else by a reader thread.
    pub fn start(
        name: &str,
        inputs: VecDeque<Input>,
        decoders: Vec<Decoder>,
        units: Units,
        counters: Arc<Counters>,
        bytes: Counter,
        stop: Arc<AtomicBool>,
    ) -> Result<Self, PipelineError> {
        let unit_bytes = units.bytes;
        let below = units.below_consumer.then_some(BELOW_CONSUMER);
        let mut results = Vec::new();
        let mut workers = Vec::new();
        // Decoded units a worker may hold before the source takes them: up to `UNIT_BYTES` of
        // input, so small units (a backtest's sixteen of 256 KiB) do not leave a worker idle
        // while detection takes a burst of them, and an ingest's large ones do not hold more
        // memory. (Four of a backtest's units left the two cores idle a sixth of the time,
        // workers waiting on detection and detection on the next unit: 5% more wall time.)
        let unit_bytes = unit_bytes.max(1);
        let ahead = (UNIT_BYTES / unit_bytes).clamp(1, 16);
        let plain: Option<Vec<PlainFile>> = inputs
            .iter()
            .map(|i| {
                let (path, start, len) = i.plain_file()?;
                let name = Arc::from(i.name());
                Some(PlainFile {
                    name,
                    path,
                    start,
                    len,
                })
            })
            .collect();
        if let Some(files) = plain {
            let shares: Arc<[Share]> = shares(&files, unit_bytes as u64).into();
            let files: Arc<[PlainFile]> = files.into();
            // As many units ahead in all as the workers' queues held when each had its own.
            let lead = ahead * decoders.len();
            let shared = Arc::new(Shared::new(shares.len(), decoders.len(), lead));
            for (i, mut decoder) in decoders.into_iter().enumerate() {
                let (files, shares) = (Arc::clone(&files), Arc::clone(&shares));
                let (counters, bytes, stop) =
                    (Arc::clone(&counters), bytes.clone(), Arc::clone(&stop));
                let read = READ_BYTES.min(unit_bytes);
                let leaving = Leaving(Arc::clone(&shared));
                workers.push(spawn(format!("{name}-decode-{i}"), below, move || {
                    let shared = &leaving.0;
                    let mut reading = Reading {
                        files: &files,
                        open: None,
                        buf: vec![0u8; read],
                        counters: &counters,
                        bytes: &bytes,
                        stop: &stop,
                    };
                    while let Some(k) = shared.claim() {
                        let unit = reading.decode(&mut decoder, &shares[k]);
                        let over = unit.is_err() || stop.load(Ordering::Relaxed);
                        shared.put(k, unit, over);
                    }
                    decoder
                })?);
            }
            return Ok(Self::new(Decoded::Shared(shared), None, workers));
        }
        // Read buffers come back once decoded and are read into again: a fresh megabyte per
        // read cost the reader a page fault per page and its zeroing, as much as the read.
        // A whole unit fits in a worker's queue, so the reader moves on to the next worker;
        // the pool holds as many buffers as the queues can, so the reader rarely allocates.
        let queue = unit_bytes.div_ceil(READ_BYTES) + 2;
        let (spare_tx, spare_rx) = sync_channel::<Vec<u8>>(queue * decoders.len());
        let mut work = Vec::new();
        for (i, mut decoder) in decoders.into_iter().enumerate() {
            let (tx, rx) = sync_channel::<Piece>(queue);
            let (done_tx, done_rx) = sync_channel(ahead);
            work.push(tx);
            results.push(done_rx);
            let spare = spare_tx.clone();
            workers.push(spawn(format!("{name}-decode-{i}"), below, move || {
                decode_units(&mut decoder, rx, done_tx, spare);
                decoder
            })?);
        }
        let reader = spawn(format!("{name}-read"), below, move || {
            let buffers = Buffers {
                spare: spare_rx,
                len: READ_BYTES.min(unit_bytes),
            };
            read_units(inputs, work, &buffers, unit_bytes, &counters, &bytes, &stop)
        })?;
        Ok(Self::new(
            Decoded::InTurn { results, next: 0 },
            Some(reader),
            workers,
        ))
    }

    fn new(
        units: Decoded,
        reader: Option<JoinHandle<Result<(), PipelineError>>>,
        workers: Vec<JoinHandle<Decoder>>,
    ) -> Self {
        Self {
            units,
            lines: 0,
            reader,
            workers,
            decoders: Vec::new(),
        }
    }

    /// The batches of the next unit in input order; `None` once every unit is done.
    pub fn next_unit(&mut self) -> Result<Option<Vec<DecodedBatch>>, PipelineError> {
        let unit = match &mut self.units {
            Decoded::InTurn { results, next } => {
                let unit = results.get(*next).and_then(|rx| rx.recv().ok());
                if unit.is_some() {
                    *next = (*next + 1) % results.len();
                }
                unit
            }
            Decoded::Shared(shared) => shared.take(),
        };
        if let Some(unit) = unit {
            let Unit {
                mut batches,
                first,
                lines,
                stopped,
            } = match unit {
                Ok(unit) => unit,
                Err(e) => return self.finish().and(Err(e)),
            };
            if first {
                self.lines = 0;
            }
            renumber(&mut batches, self.lines);
            self.lines += lines;
            if stopped {
                self.finish()?;
            }
            return Ok(Some(batches));
        }
        // In turn, a worker without the next unit means there is none.
        self.finish().map(|()| None)
    }

    /// Joins the reader and the workers (which stop once nobody takes their units).
    fn finish(&mut self) -> Result<(), PipelineError> {
        match &mut self.units {
            Decoded::InTurn { results, .. } => results.clear(),
            Decoded::Shared(shared) => shared.close(),
        }
        let panicked = || PipelineError::Panicked("a decoding thread panicked".into());
        let read = match self.reader.take() {
            Some(r) => r.join().map_err(|_| panicked())?,
            None => Ok(()),
        };
        for w in self.workers.drain(..) {
            self.decoders.push(w.join().map_err(|_| panicked())?);
        }
        read
    }
}

impl Drop for Parallel {
    /// Workers waiting for room end: nobody takes their units any more (those dealt in turn
    /// end as their queues' receivers go).
    fn drop(&mut self) {
        if let Decoded::Shared(shared) = &self.units {
            shared.close();
        }
    }
}

/// Starts a thread named `name` running `f`, `nice` below the process's priority if given.
fn spawn<T: Send + 'static>(
    name: String,
    nice: Option<i32>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, PipelineError> {
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            if let Some(nice) = nice {
                lower_priority(nice);
            }
            f()
        })
        .map_err(|e| PipelineError::Panicked(format!("cannot start a thread: {e}")))
}

/// Lowers the calling thread's priority by `nice` (on Linux a thread has its own nice value;
/// lowering it needs no privilege). Where it cannot, the thread runs as it is: only speed is
/// at stake.
fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's own id; no memory is passed.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, (now + nice).min(19));
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// Cuts plain files into shares of `unit_bytes`, in input order (an empty file has one, empty).
fn shares(files: &[PlainFile], unit: u64) -> Vec<Share> {
    files
        .iter()
        .enumerate()
        .flat_map(|(file, f)| {
            (0..f.len.div_ceil(unit).max(1)).map(move |k| Share {
                file,
                bytes: k * unit..((k + 1) * unit).min(f.len),
            })
        })
        .collect()
}

/// What a worker reads plain files with.
struct Reading<'a> {
    files: &'a [PlainFile],
    /// The file of the last share read, open.
    open: Option<(usize, File)>,
    buf: Vec<u8>,
    counters: &'a Counters,
    bytes: &'a Counter,
    stop: &'a AtomicBool,
}

impl Reading<'_> {
    /// Decodes the lines of `share`: from just after the last newline before its start to
    /// just after the last newline before its end (from the file's start for its first share,
    /// to the file's end for its last). Units so cut end where a reader cutting each read at
    /// its last newline would cut them, so a backtest's batches, and the times it stamps, are
    /// those of one thread.
    fn decode(&mut self, decoder: &mut Decoder, share: &Share) -> Result<Unit, PipelineError> {
        let f = &self.files[share.file];
        let err = |source: std::io::Error| PipelineError::Input {
            path: f.path.clone(),
            source: if source.kind() == std::io::ErrorKind::UnexpectedEof {
                std::io::Error::new(
                    source.kind(),
                    format!(
                        "the file got shorter than its {} bytes while it was read",
                        f.len
                    ),
                )
            } else {
                source
            },
        };
        if self.open.as_ref().is_none_or(|(i, _)| *i != share.file) {
            self.open = Some((share.file, File::open(&f.path).map_err(err)?));
        }
        let Some((_, file)) = &self.open else {
            unreachable!("opened above")
        };
        let from = line_break(file, share.bytes.start, f.len, &mut self.buf)
            .map_err(err)?
            .max(f.start);
        let to = line_break(file, share.bytes.end, f.len, &mut self.buf).map_err(err)?;
        decoder.begin_source_at(&f.name, 1);
        let mut batches = Vec::new();
        let mut at = from;
        while at < to && !self.stop.load(Ordering::Relaxed) {
            let n = (to - at).min(self.buf.len() as u64) as usize;
            file.read_exact_at(&mut self.buf[..n], at).map_err(err)?;
            self.counters.add_bytes(self.bytes, n);
            decoder.decode_all(&self.buf[..n], |b| batches.push(b));
            at += n as u64;
        }
        if at == f.len {
            decoder.end_of_input();
        }
        batches.extend(decoder.flush());
        Ok(Unit {
            batches,
            first: share.bytes.start == 0,
            lines: decoder.next_line() - 1,
            stopped: at < to,
        })
    }
}

/// Where a unit ending at byte `at` of a file of `len` bytes ends: just after the last newline
/// before `at` (0 if none, `len` at or past the end).
fn line_break(file: &File, at: u64, len: u64, buf: &mut [u8]) -> std::io::Result<u64> {
    if at >= len {
        return Ok(len);
    }
    // A line is rarely longer than the first read; longer ones are read in growing steps.
    let mut to = at;
    let mut step = FIRST_SCAN_BYTES;
    while to > 0 {
        let from = to.saturating_sub(step.min(buf.len()) as u64);
        let n = (to - from) as usize;
        file.read_exact_at(&mut buf[..n], from)?;
        if let Some(i) = memrchr(b'\n', &buf[..n]) {
            return Ok(from + i as u64 + 1);
        }
        to = from;
        step = (step * 2).min(SCAN_BYTES);
    }
    Ok(0)
}

/// Moves the dead letters' line numbers of a unit by the `lines` of its input before it.
fn renumber(batches: &mut [DecodedBatch], lines: i64) {
    if lines == 0 {
        return;
    }
    for b in batches {
        let d = &mut b.dead_letters;
        if d.num_rows() == 0 {
            continue;
        }
        let Ok(i) = d.schema().index_of(dead::OFFSET) else {
            continue;
        };
        let moved: Int64Array = d.column(i).as_primitive::<Int64Type>().unary(|o| o + lines);
        let mut columns = d.columns().to_vec();
        columns[i] = Arc::new(moved);
        *d = RecordBatch::try_new(d.schema(), columns).expect("the same schema");
    }
}

/// Decodes the pieces it is given, sending each unit's batches when the unit ends.
fn decode_units(
    decoder: &mut Decoder,
    pieces: Receiver<Piece>,
    done: SyncSender<Result<Unit, PipelineError>>,
    spare: SyncSender<Vec<u8>>,
) {
    let mut batches = Vec::new();
    let mut first = false;
    for p in pieces {
        if let Some((name, starts)) = &p.begin {
            decoder.begin_source_at(name, 1);
            first = *starts;
        }
        decoder.decode_all(&p.bytes[p.range.clone()], |b| batches.push(b));
        if p.eof {
            decoder.end_of_input();
        }
        if p.end {
            batches.extend(decoder.flush());
            let unit = Unit {
                batches: std::mem::take(&mut batches),
                first,
                lines: decoder.next_line() - 1,
                stopped: false,
            };
            if done.send(Ok(unit)).is_err() {
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
        let mut unit = 0usize;
        let mut begin = Some((Arc::clone(&name), true));
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
            if cut.is_some() {
                w = (w + 1) % workers.len();
                unit = n - head;
                begin = Some((Arc::clone(&name), false));
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
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Write;

    use arrow::array::Array;
    use arrow::datatypes::DataType;
    use vigil_core::schema::{LogSchema, RecordKind, col};
    use vigil_decode::DecoderOptions;

    use super::super::input::write_gzip;
    use super::*;

    /// Per service, its messages in order; and every dead letter's input, line and reason.
    type Seen = (BTreeMap<String, Vec<String>>, Vec<(String, i64, String)>);

    fn strings(b: &RecordBatch, name: &str) -> Vec<String> {
        let c = arrow::compute::cast(b.column_by_name(name).unwrap(), &DataType::Utf8).unwrap();
        let c = c.as_string::<i32>();
        (0..c.len()).map(|i| c.value(i).to_string()).collect()
    }

    fn collect(seen: &mut Seen, batches: impl IntoIterator<Item = DecodedBatch>) {
        for b in batches {
            for r in &b.records {
                let services = strings(r, col::SERVICE);
                for (s, m) in services.into_iter().zip(strings(r, col::MESSAGE)) {
                    seen.0.entry(s).or_default().push(m);
                }
            }
            let d = &b.dead_letters;
            let offsets = d
                .column_by_name(dead::OFFSET)
                .unwrap()
                .as_primitive::<Int64Type>();
            let sources = strings(d, dead::SOURCE);
            let reasons = strings(d, dead::REASON_CODE);
            for (i, (s, r)) in sources.into_iter().zip(reasons).enumerate() {
                seen.1.push((s, offsets.value(i), r));
            }
        }
    }

    fn decoder() -> Decoder {
        let opts = DecoderOptions {
            batch_size: 7,
            ..DecoderOptions::default()
        };
        Decoder::new(RecordKind::Logs, LogSchema::default(), opts)
    }

    /// Lines of three services; every seventh is not JSON, every eleventh blank, and one is
    /// far longer than a unit.
    fn lines(tag: &str, n: usize, end_with_newline: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            match i {
                _ if i % 7 == 3 => write!(out, "{{not json {tag} {i}").unwrap(),
                _ if i % 11 == 5 => {}
                _ => {
                    let message = if i == 40 {
                        "x".repeat(3000)
                    } else {
                        format!("{tag} {i}")
                    };
                    write!(
                        out,
                        r#"{{"timestamp":"2026-01-01T00:00:{:02}Z","level":"INFO","service":"svc-{}","message":"{message}"}}"#,
                        i % 60,
                        i % 3
                    )
                    .unwrap();
                }
            }
            if i + 1 < n || end_with_newline {
                out.push(b'\n');
            }
        }
        out
    }

    fn parallel(inputs: &[Input], threads: usize, unit_bytes: usize) -> Seen {
        parallel_stopping(inputs, threads, unit_bytes, false)
    }

    fn parallel_stopping(inputs: &[Input], threads: usize, unit_bytes: usize, stop: bool) -> Seen {
        let mut p = Parallel::start(
            "test",
            inputs.iter().cloned().collect(),
            (0..threads).map(|_| decoder()).collect(),
            Units {
                bytes: unit_bytes,
                below_consumer: false,
            },
            Arc::default(),
            Counters::bytes_of("test"),
            Arc::new(AtomicBool::new(stop)),
        )
        .unwrap();
        let mut seen = Seen::default();
        while let Some(batches) = p.next_unit().unwrap() {
            collect(&mut seen, batches);
        }
        seen
    }

    #[test]
    fn units_read_by_workers_or_by_a_reader_decode_as_one_decoder_does() {
        const BOM: &[u8] = "\u{feff}".as_bytes();
        let dir = tempfile::tempdir().unwrap();
        let contents = [
            lines("a", 300, true),
            Vec::new(),
            lines("b", 200, false),
            b"\n\n".to_vec(),
            lines("c", 90, true),
            // A byte order mark is not part of the first record.
            [BOM, &lines("d", 40, true)].concat(),
        ];
        // The same files plain (the workers read their own units) and gzip (a reader thread
        // cuts them).
        let mut plain = Vec::new();
        let mut gzip = Vec::new();
        for (i, c) in contents.iter().enumerate() {
            let p = dir.path().join(format!("{i}.ndjson"));
            std::fs::write(&p, c).unwrap();
            assert!(Input::File(p.clone()).plain_file().is_some());
            plain.push(Input::File(p));
            let g = dir.path().join(format!("{i}.ndjson.gz"));
            write_gzip(&g, c);
            assert!(Input::File(g.clone()).plain_file().is_none());
            gzip.push(Input::File(g));
        }
        let mut want = Seen::default();
        let mut one = decoder();
        for (input, c) in plain.iter().zip(&contents) {
            one.begin_source(&input.name());
            one.decode_all(c.strip_prefix(BOM).unwrap_or(c), |b| {
                collect(&mut want, [b])
            });
            one.end_of_input();
            collect(&mut want, one.flush());
        }
        assert!(want.1.len() > 60 && want.0.len() == 3, "{want:?}");
        for threads in [2, 3] {
            // Units smaller than a line, than a few lines, and larger than a whole file.
            for unit in [100, 1000, 1 << 20] {
                assert_eq!(parallel(&plain, threads, unit), want, "{threads} {unit}");
            }
        }
        // A gzip input's dead letters name its own path; otherwise the same.
        let mut want_gz = want.clone();
        for d in &mut want_gz.1 {
            d.0.push_str(".gz");
        }
        for unit in [100, 1 << 20] {
            assert_eq!(parallel(&gzip, 2, unit), want_gz, "gzip {unit}");
        }
    }

    #[test]
    fn a_file_that_shrinks_while_it_is_read_is_an_error_that_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.ndjson");
        std::fs::write(&path, lines("a", 30, true)).unwrap();
        // Planned at a length the file no longer has.
        let files = [PlainFile {
            name: Arc::from("a.ndjson"),
            path: path.clone(),
            start: 0,
            len: std::fs::metadata(&path).unwrap().len() + 4096,
        }];
        let (counters, bytes, stop) = (Counters::default(), Counters::bytes_of("t"), false.into());
        let mut reading = Reading {
            files: &files,
            open: None,
            buf: vec![0u8; 1 << 16],
            counters: &counters,
            bytes: &bytes,
            stop: &stop,
        };
        let share = Share {
            file: 0,
            bytes: 0..files[0].len,
        };
        let Err(e) = reading.decode(&mut decoder(), &share) else {
            panic!("a short file decoded");
        };
        let e = e.to_string();
        assert!(e.contains("a.ndjson") && e.contains("got shorter"), "{e}");
    }

    /// A decoded unit of `lines` lines and no batches, as a worker hands it over.
    fn unit(lines: i64) -> Result<Unit, PipelineError> {
        Ok(Unit {
            batches: Vec::new(),
            first: false,
            lines,
            stopped: false,
        })
    }

    #[test]
    fn a_waiting_source_is_woken_for_a_few_units_at_once_or_the_last_or_a_close() {
        // A lead of 32, a backtest's: woken for four units at a time.
        let shared = Shared::new(10, 2, 32);
        assert_eq!(shared.wake_for, 4);
        let mut s = shared.lock();
        for k in [1, 2, 3] {
            s.done.insert(k, unit(0));
            assert!(!s.ready_for_source(4), "woken before the next unit is done");
        }
        s.done.insert(0, unit(0));
        assert!(s.ready_for_source(4));
        // Near the end, for the units left.
        s.taken = 8;
        s.done.insert(9, unit(0));
        assert!(!s.ready_for_source(4));
        s.done.insert(8, unit(0));
        assert!(s.ready_for_source(4));
        // Closed: the units waited for may never come.
        s.taken = 4;
        assert!(!s.ready_for_source(4));
        s.closed = true;
        assert!(s.ready_for_source(4));
        drop(s);
        // A short lead (an ingest's, a unit per worker) wakes it for every unit.
        assert_eq!(Shared::new(10, 2, 2).wake_for, 1);
        // Through `put`: the source sleeps until the group is done, then takes it in order.
        let shared = Arc::new(Shared::new(4, 2, 16));
        for k in 0..4 {
            assert_eq!(shared.claim(), Some(k));
        }
        let (took_tx, took) = std::sync::mpsc::channel();
        let taking = Arc::clone(&shared);
        let taker = std::thread::spawn(move || {
            for _ in 0..4 {
                took_tx.send(taking.take().is_some()).unwrap();
            }
        });
        let wait = std::time::Duration::from_millis(100);
        std::thread::sleep(wait);
        shared.put(0, unit(0), false);
        assert!(
            took.recv_timeout(wait).is_err(),
            "woken for one unit of two"
        );
        shared.put(1, unit(0), false);
        assert!(took.recv_timeout(wait * 50).unwrap());
        assert!(took.recv_timeout(wait * 50).unwrap());
        shared.put(3, unit(0), false);
        shared.put(2, unit(0), false);
        assert!(took.recv_timeout(wait * 50).unwrap());
        assert!(took.recv_timeout(wait * 50).unwrap());
        taker.join().unwrap();
    }

    #[test]
    fn shares_go_to_whichever_worker_is_free_and_come_back_in_order() {
        let shared = Arc::new(Shared::new(5, 2, 3));
        let lines = |u: Option<Result<Unit, PipelineError>>| u.unwrap().unwrap().lines;
        // One worker is busy with share 0; the other takes 1 and 2, as far as the lead goes.
        assert_eq!(shared.claim(), Some(0));
        assert_eq!(shared.claim(), Some(1));
        assert_eq!(shared.claim(), Some(2));
        let (tx, rx) = std::sync::mpsc::channel();
        let waiting = Arc::clone(&shared);
        let claimer = std::thread::spawn(move || tx.send(waiting.claim()).unwrap());
        let wait = std::time::Duration::from_millis(100);
        assert!(
            rx.recv_timeout(wait).is_err(),
            "a share beyond the lead was taken"
        );
        // Done out of order, taken in order; taking one makes room for the next share.
        shared.put(2, unit(2), false);
        shared.put(1, unit(1), false);
        let (took_tx, took) = std::sync::mpsc::channel();
        let taking = Arc::clone(&shared);
        let taker = std::thread::spawn(move || took_tx.send(lines(taking.take())).unwrap());
        assert!(
            took.recv_timeout(wait).is_err(),
            "a unit was taken before share 0's"
        );
        assert!(rx.recv_timeout(wait).is_err());
        shared.put(0, unit(0), false);
        assert_eq!(took.recv_timeout(wait * 50).unwrap(), 0);
        assert_eq!(rx.recv_timeout(wait * 50).unwrap(), Some(3));
        taker.join().unwrap();
        claimer.join().unwrap();
        assert_eq!(lines(shared.take()), 1);
        assert_eq!(lines(shared.take()), 2);
        // A unit that stops the run closes the shares: share 4 is never taken, and the
        // source ends after share 3.
        shared.put(3, unit(3), true);
        assert_eq!(shared.claim(), None);
        assert_eq!(lines(shared.take()), 3);
        assert!(shared.take().is_none());
        // Workers gone (one panicked holding a share): the source stops waiting for it.
        let gone = Arc::new(Shared::new(2, 1, 2));
        gone.lock().claimed = 1;
        drop(Leaving(Arc::clone(&gone)));
        assert!(gone.take().is_none());
        // A worker that panics closes the shares: the other stops instead of waiting behind
        // the unit that never comes.
        let shared = Arc::new(Shared::new(9, 2, 2));
        shared.lock().claimed = 2;
        let leaving = Leaving(Arc::clone(&shared));
        let panicked = std::thread::spawn(move || {
            let _leaving = leaving;
            panic!("a worker's panic");
        });
        assert!(panicked.join().is_err());
        shared.put(1, unit(1), false);
        assert_eq!(shared.claim(), None);
        drop(Leaving(Arc::clone(&shared)));
        assert!(shared.take().is_none());
    }

    /// The nice values of this process's threads named `name`.
    #[cfg(target_os = "linux")]
    fn nice_of_threads(name: &str) -> Vec<i64> {
        let mut nice = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let path = task.path();
            let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            if comm.trim() != name {
                continue;
            }
            let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
            // After "pid (comm) ": state is field 3, nice field 19.
            if let Some((_, rest)) = stat.rsplit_once(") ") {
                nice.push(rest.split(' ').nth(16).unwrap().parse().unwrap());
            }
        }
        nice
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn workers_run_below_the_consumer_when_asked_and_at_its_priority_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.ndjson");
        std::fs::write(&path, lines("a", 300, true)).unwrap();
        // SAFETY: reads the calling thread's nice value.
        let ours = i64::from(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) });
        for (name, below, want) in [
            ("nice-a", true, (ours + i64::from(BELOW_CONSUMER)).min(19)),
            ("nice-b", false, ours),
        ] {
            // Units of 100 bytes: the workers fill the lead and wait, nothing taken.
            let p = Parallel::start(
                name,
                [Input::File(path.clone())].into(),
                vec![decoder(), decoder()],
                Units {
                    bytes: 100,
                    below_consumer: below,
                },
                Arc::default(),
                Counters::bytes_of(name),
                Arc::default(),
            )
            .unwrap();
            let worker = format!("{name}-decode-0");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            // The thread may be seen before it has lowered its priority: looked at until then.
            let mut seen = nice_of_threads(&worker);
            while seen != vec![want] && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
                seen = nice_of_threads(&worker);
            }
            assert_eq!(seen, vec![want], "{name}");
            drop(p);
        }
    }

    #[test]
    fn a_stopped_run_ends_without_reading_plain_or_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("a.ndjson");
        std::fs::write(&plain, lines("a", 300, true)).unwrap();
        let gzip = dir.path().join("a.ndjson.gz");
        write_gzip(&gzip, &lines("a", 300, true));
        for input in [plain, gzip] {
            let seen = parallel_stopping(&[Input::File(input)], 2, 100, true);
            assert_eq!(seen, Seen::default());
        }
    }
}
