//! Detection shared by replicas, with Kafka as the shuffle (`[detect] distributed = true`).
//!
//! ```text
//! every replica, stage 1 (its own partitions):          the partials topic (1 partition)
//!   decoded batch ─► partial states per rule and pane ─┐
//!   log rows ─► traces (keyed by trace id) closed ─────┴─► one message per batch ─┐
//!                                                                                   │
//! the replica owning the partials partition, stage 2 (group `<group>.merge`):  ◄───┘
//!   merge per source stream (revert on a re-read) ─► windows close at the watermark of
//!   every source partition ─► rules ─► incidents ─► anomaly topic, archive, Alertmanager
//! ```
//!
//! A message carries one source batch's partial states (Arrow IPC), the traces that closed
//! with it, the batch's source stream and offsets (`from`: where the archive had the stream
//! before it; `to`: the next offset) and its latest event time. Stage 2 numbers the streams
//! and remembers each one's last `to`: a message whose `from` is below it means the stream is
//! being read again (its replica died before the archive had those rows, or lost the
//! partition), so what the stream contributed from `from` on to windows still open is
//! dropped and the re-read rows take its place. Windows already closed keep what they saw:
//! the re-read rows are late for them. Each row therefore counts once.
//!
//! Stage 2's state (rules, clocks, merged states of open windows, each stream's offsets, the
//! next partials offset) is checkpointed after every window close; a new owner resumes from
//! it and skips partials it already merged.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};
use vigil_core::schema::RecordKind;
use vigil_core::time::micros;
use vigil_detect::correlate::SharedTraces;
use vigil_detect::windows::{Partial, SavedStates, decode_ipc, encode_ipc};
use vigil_detect::{Correlator, DetectError, WindowedRules};

use super::clock::Streams;
use crate::config::Pipeline;
use crate::error::PipelineError;

/// What a payload starts with: the format and its version.
const MAGIC: &[u8; 4] = b"vgp1";

/// Partial states per message, at most, in bytes of Arrow IPC (a broker's default message
/// limit is 1 MB); a batch's contribution above that takes several messages.
const MAX_MESSAGE: usize = 512 << 10;

/// Closed traces per message, at most.
const MAX_TRACES: usize = 2_000;

/// One source batch's contribution to detection.
#[derive(Debug, Default)]
pub(super) struct Message {
    /// The source stream (`topic:partition`).
    pub(super) stream: String,
    /// Where the archive had the stream before the batch (`None`: nowhere).
    pub(super) from: Option<i64>,
    /// The stream's next offset after the batch.
    pub(super) to: Option<i64>,
    /// The batch's latest event time (a heartbeat: the stream's).
    pub(super) latest: Option<i64>,
    /// One source batch's contribution may take several messages (each below
    /// [`MAX_MESSAGE`]): the first is part 0, and only it can start a re-read.
    pub(super) part: u32,
    /// A heartbeat: whether the stream has not moved for [`IDLE`](super::IDLE), so that
    /// windows need not wait for it.
    pub(super) idle: bool,
    pub(super) partials: Vec<Partial>,
    pub(super) traces: SharedTraces,
}

#[derive(Serialize, Deserialize)]
struct Header {
    stream: String,
    from: Option<i64>,
    to: Option<i64>,
    latest: Option<i64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    idle: bool,
    #[serde(default)]
    part: u32,
    /// (rule, pane, bytes of its Arrow IPC stream), in the order the streams follow.
    parts: Vec<(String, i64, u64)>,
    #[serde(default, skip_serializing_if = "SharedTraces::is_empty")]
    traces: SharedTraces,
}

impl Message {
    /// `vgp1`, the header's length (u32, big-endian), the header (JSON), then each part's
    /// partial states as an Arrow IPC stream.
    pub(super) fn encode(&self) -> Vec<u8> {
        let parts: Vec<Vec<u8>> = self
            .partials
            .iter()
            .map(|p| encode_ipc(&p.states.schema(), std::slice::from_ref(&p.states)))
            .collect();
        let header = Header {
            stream: self.stream.clone(),
            from: self.from,
            to: self.to,
            latest: self.latest,
            idle: self.idle,
            part: self.part,
            parts: self
                .partials
                .iter()
                .zip(&parts)
                .map(|(p, b)| (p.rule.clone(), p.pane, b.len() as u64))
                .collect(),
            traces: self.traces.clone(),
        };
        let header = serde_json::to_vec(&header).expect("a header serialises");
        let mut out =
            Vec::with_capacity(8 + header.len() + parts.iter().map(Vec::len).sum::<usize>());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(header.len() as u32).to_be_bytes());
        out.extend_from_slice(&header);
        for p in parts {
            out.extend_from_slice(&p);
        }
        out
    }

    /// The message as one or more payloads, each with at most [`MAX_MESSAGE`] bytes of
    /// partial states (one part may be bigger alone) and [`MAX_TRACES`] traces. The latest
    /// event time travels with the last, so the stream's watermark moves once all are merged.
    pub(super) fn encode_split(mut self) -> Vec<Vec<u8>> {
        let mut parts: Vec<Message> = Vec::new();
        let mut size = 0;
        let template = |part: u32, m: &Message| Message {
            stream: m.stream.clone(),
            from: m.from,
            to: m.to,
            part,
            ..Default::default()
        };
        let mut current = template(0, &self);
        for p in std::mem::take(&mut self.partials) {
            let bytes = p.states.get_array_memory_size();
            if !current.partials.is_empty() && size + bytes > MAX_MESSAGE {
                let next = template(current.part + 1, &self);
                parts.push(std::mem::replace(&mut current, next));
                size = 0;
            }
            size += bytes;
            current.partials.push(p);
        }
        let services = std::mem::take(&mut self.traces.services);
        let mut traces = std::mem::take(&mut self.traces.traces);
        while !traces.is_empty() {
            if current.traces.traces.len() >= MAX_TRACES || !current.partials.is_empty() {
                let next = template(current.part + 1, &self);
                parts.push(std::mem::replace(&mut current, next));
            }
            let rest = traces.split_off(traces.len().min(MAX_TRACES));
            current.traces = SharedTraces {
                services: services.clone(),
                traces: std::mem::replace(&mut traces, rest),
            };
        }
        current.latest = self.latest;
        current.idle = self.idle;
        parts.push(current);
        parts.iter().map(Message::encode).collect()
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<Self, DetectError> {
        let bad = |reason: String| DetectError::Shuffle { reason };
        if bytes.len() < 8 || &bytes[..4] != MAGIC {
            return Err(bad("not a vigil partials message (`vgp1`)".into()));
        }
        let len = u32::from_be_bytes(bytes[4..8].try_into().expect("4 bytes")) as usize;
        let body = &bytes[8..];
        if body.len() < len {
            return Err(bad("a partials message cut short".into()));
        }
        let header: Header = serde_json::from_slice(&body[..len])
            .map_err(|e| bad(format!("a partials message's header: {e}")))?;
        let mut at = len;
        let mut partials = Vec::with_capacity(header.parts.len());
        for (rule, pane, n) in header.parts {
            let end = at.saturating_add(n as usize);
            let Some(ipc) = body.get(at..end) else {
                return Err(bad("a partials message cut short".into()));
            };
            at = end;
            for states in decode_ipc(ipc)? {
                partials.push(Partial {
                    rule: rule.clone(),
                    pane,
                    states,
                });
            }
        }
        Ok(Self {
            stream: header.stream,
            from: header.from,
            to: header.to,
            latest: header.latest,
            idle: header.idle,
            part: header.part,
            partials,
            traces: header.traces,
        })
    }
}

/// Stage 1: this replica's rows folded and handed on. Keeps no rule state; correlation keeps
/// the traces still open.
pub(super) struct Stage1 {
    engine: WindowedRules,
    correlator: Option<Correlator>,
    /// The table traces are assembled from.
    traces: RecordKind,
    streams: Streams,
    lateness: i64,
    producer: vigil_kafka::Producer,
    topic: String,
    /// When heartbeats were last sent.
    beat: Instant,
    /// Each stream's rows read and not yet sent.
    pending: HashMap<String, Pending>,
    /// Partials messages and bytes sent.
    pub(super) sent: (u64, u64),
}

/// How often each stream read here is reported to the merging replica, rows or not.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// A stream's rows are folded and sent at least this often...
const SEND_EVERY: Duration = Duration::from_millis(500);

/// ...or once this many are pending.
const SEND_ROWS: usize = 65_536;

/// One stream's rows read since its last message: a contiguous offset range.
struct Pending {
    kind: RecordKind,
    from: Option<i64>,
    to: Option<i64>,
    rows: Vec<RecordBatch>,
    n: usize,
    latest: Option<i64>,
    since: Instant,
}

impl Stage1 {
    pub(super) fn new(pipeline: &Pipeline, topic: &str) -> Result<Self, PipelineError> {
        let k = pipeline
            .first_kafka()
            .expect("the config layer requires a Kafka source");
        let producer = vigil_kafka::Producer::new(
            &k.consumer.brokers,
            &vigil_kafka::connection_properties(&k.consumer.properties),
        )
        .map_err(PipelineError::kafka)?;
        Ok(Self {
            engine: WindowedRules::new(&pipeline.rules),
            correlator: pipeline.detect.correlation.as_ref().map(Correlator::new),
            traces: pipeline.traces_from(),
            streams: Streams::new(),
            lateness: micros(pipeline.detect.allowed_lateness),
            producer,
            topic: topic.to_string(),
            beat: Instant::now(),
            pending: HashMap::new(),
            sent: (0, 0),
        })
    }

    /// Takes one source batch's rows (of `kind`, from `stream`, moving it between offsets
    /// `from` and `to`). A stream's rows are folded and sent together every [`SEND_EVERY`]
    /// (or [`SEND_ROWS`] rows): one state row per rule, service and pane per interval rather
    /// than per batch.
    pub(super) async fn hand_on(
        &mut self,
        kind: RecordKind,
        stream: &str,
        rows: &[RecordBatch],
        offsets: Option<(Option<i64>, i64)>,
    ) -> Result<(), PipelineError> {
        // A batch that does not continue the pending ones (the stream was read again from the
        // archive's offset after a fenced commit): those rows come again; drop them.
        if let (Some(p), Some((from, _))) = (self.pending.get(stream), offsets)
            && p.to.is_some()
            && p.to != from
        {
            self.pending.remove(stream);
        }
        let p = self
            .pending
            .entry(stream.to_string())
            .or_insert_with(|| Pending {
                kind,
                from: offsets.and_then(|o| o.0),
                to: None,
                rows: Vec::new(),
                n: 0,
                latest: None,
                since: Instant::now(),
            });
        if let Some(o) = offsets {
            p.to = Some(o.1);
        }
        for b in rows {
            if let Some((_, t)) = vigil_detect::windows::time_range(b) {
                self.streams.note(stream, t);
                p.latest = Some(p.latest.map_or(t, |l: i64| l.max(t)));
            }
            if kind == self.traces
                && let Some(c) = &mut self.correlator
            {
                c.push(b);
            }
            p.n += b.num_rows();
            p.rows.push(b.clone());
        }
        if p.n >= SEND_ROWS || p.since.elapsed() >= SEND_EVERY {
            self.send_stream(stream).await?;
        }
        Ok(())
    }

    /// Folds and sends what `stream` has pending, with the traces closed by now.
    async fn send_stream(&mut self, stream: &str) -> Result<(), PipelineError> {
        let Some(p) = self.pending.remove(stream) else {
            return Ok(());
        };
        let mut m = Message {
            stream: stream.to_string(),
            from: p.from,
            to: p.to,
            latest: p.latest,
            partials: self.engine.partials(p.kind, &p.rows).await?,
            ..Default::default()
        };
        if let (Some(c), Some(slowest)) = (&mut self.correlator, self.streams.slowest()) {
            m.traces = c.hand_on(slowest.saturating_sub(self.lateness));
        }
        if m.partials.is_empty() && m.traces.is_empty() && m.latest.is_none() && m.to.is_none() {
            return Ok(());
        }
        self.send(m)
    }

    /// Sends every stream's pending rows that have waited [`SEND_EVERY`] (all with `all`).
    pub(super) async fn send_due(&mut self, all: bool) -> Result<(), PipelineError> {
        let due: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| all || p.since.elapsed() >= SEND_EVERY)
            .map(|(s, _)| s.clone())
            .collect();
        for s in due {
            self.send_stream(&s).await?;
        }
        Ok(())
    }

    /// Tells the merging replica, every [`HEARTBEAT`], how far each stream read here is and
    /// whether it is idle: a stream whose reader says nothing holds windows open (its reader
    /// may have died; its rows will come from the next).
    pub(super) fn heartbeat(&mut self) -> Result<(), PipelineError> {
        if self.beat.elapsed() < HEARTBEAT {
            return Ok(());
        }
        self.beat = Instant::now();
        // A stream with rows pending sends them soon: its latest must not run ahead of them.
        let beats: Vec<Message> = self
            .streams
            .names()
            .filter(|s| !self.pending.contains_key(*s))
            .map(|s| Message {
                stream: s.to_string(),
                latest: self.streams.latest_of(s).filter(|&t| t != i64::MIN),
                idle: self.streams.is_idle(s),
                ..Default::default()
            })
            .collect();
        for m in beats {
            self.send(m)?;
        }
        Ok(())
    }

    fn send(&mut self, m: Message) -> Result<(), PipelineError> {
        let key = m.stream.clone();
        for bytes in m.encode_split() {
            self.sent.0 += 1;
            self.sent.1 += bytes.len() as u64;
            vigil_core::metrics::metrics()
                .shuffle_bytes
                .inc_by(&[], bytes.len() as u64);
            self.producer
                .send(&self.topic, Some(key.as_bytes()), &bytes)
                .map_err(PipelineError::kafka)?;
        }
        Ok(())
    }

    /// `stream` will deliver rows here.
    pub(super) fn expect(&mut self, stream: &str) {
        self.streams.expect(stream);
    }

    /// `stream` sends nothing more here. Rows of it not sent yet are dropped: it was revoked,
    /// and its next reader reads them again (from where the archive has it).
    pub(super) fn forget(&mut self, stream: &str, complete: bool) {
        self.pending.remove(stream);
        self.streams.end(stream, complete);
    }

    /// Waits for what was sent to be delivered.
    pub(super) fn flush(&mut self) -> Result<(), PipelineError> {
        self.producer
            .flush(Duration::from_secs(60))
            .map_err(PipelineError::kafka)
    }
}

/// Stage 2's bookkeeping while this replica merges: the source streams by number, each one's
/// last `to`, and the next partials offset to merge.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct MergeState {
    /// The next offset of the partials partition to merge.
    pub(super) next_offset: i64,
    /// Per stream number: its name, its last `to`, its latest event time.
    pub(super) streams: Vec<(String, Option<i64>, Option<i64>)>,
    /// Merged partial states of the windows still open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) states: Vec<SavedStates>,
    #[serde(skip)]
    numbers: HashMap<String, u32>,
}

impl MergeState {
    /// The number of `stream`, given one if new.
    pub(super) fn number(&mut self, stream: &str) -> u32 {
        if self.numbers.len() != self.streams.len() {
            self.numbers = self
                .streams
                .iter()
                .enumerate()
                .map(|(i, s)| (s.0.clone(), i as u32))
                .collect();
        }
        if let Some(&n) = self.numbers.get(stream) {
            return n;
        }
        let n = self.streams.len() as u32;
        self.streams.push((stream.to_string(), None, None));
        self.numbers.insert(stream.to_string(), n);
        n
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use vigil_detect::correlate::SharedTrace;

    use super::*;

    #[test]
    fn a_message_reads_back_as_written_and_garbage_is_refused() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("service", DataType::Utf8, true),
            Field::new("sum", DataType::Float64, true),
        ]));
        let states = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a", "b"])),
                Arc::new(Float64Array::from(vec![1.5, 2.5])),
            ],
        )
        .unwrap();
        let m = Message {
            stream: "logs:3".into(),
            from: Some(10),
            to: Some(42),
            latest: Some(1_000),
            idle: false,
            part: 0,
            partials: vec![
                Partial {
                    rule: "r1".into(),
                    pane: 60,
                    states: states.clone(),
                },
                Partial {
                    rule: "r2".into(),
                    pane: 120,
                    states: states.slice(1, 1),
                },
            ],
            traces: SharedTraces {
                services: vec!["db".into()],
                traces: vec![SharedTrace {
                    id: "t".into(),
                    time: 5,
                    calls: vec![],
                    origin: Some(0),
                    failing: vec![0],
                    self_ms: vec![(0, 1.0)],
                    gaps: vec![],
                    gap_callers: vec![],
                }],
            },
        };
        let bytes = m.encode();
        let back = Message::decode(&bytes).unwrap();
        assert_eq!(
            (back.stream.as_str(), back.from, back.to, back.latest),
            ("logs:3", Some(10), Some(42), Some(1_000))
        );
        assert_eq!(back.partials.len(), 2);
        assert_eq!(back.partials[0].states, states);
        assert_eq!(
            (back.partials[1].rule.as_str(), back.partials[1].pane),
            ("r2", 120)
        );
        assert_eq!(back.partials[1].states.num_rows(), 1);
        assert_eq!(back.traces, m.traces);
        for bad in [
            &b"{}"[..],
            &bytes[..bytes.len() - 3],
            b"vgp1\0\0\0\x09{\"a\":",
        ] {
            assert!(Message::decode(bad).is_err());
        }
    }

    #[test]
    fn a_big_contribution_is_split_and_only_the_last_part_moves_the_watermark() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Float64, true)]));
        let big = RecordBatch::try_new(
            schema,
            vec![Arc::new(Float64Array::from(vec![1.0; 40_000]))],
        )
        .unwrap();
        let m = Message {
            stream: "logs:0".into(),
            from: Some(5),
            to: Some(9),
            latest: Some(77),
            partials: (0..5)
                .map(|i| Partial {
                    rule: "r".into(),
                    pane: i,
                    states: big.clone(),
                })
                .collect(),
            traces: SharedTraces {
                services: vec!["a".into()],
                traces: (0..4_500)
                    .map(|i| SharedTrace {
                        id: i.to_string(),
                        time: i,
                        calls: vec![],
                        origin: None,
                        failing: vec![],
                        self_ms: vec![(0, 1.0)],
                        gaps: vec![],
                        gap_callers: vec![],
                    })
                    .collect(),
            },
            ..Default::default()
        };
        let parts: Vec<Message> = m
            .encode_split()
            .iter()
            .map(|b| Message::decode(b).unwrap())
            .collect();
        assert!(parts.len() >= 5, "{}", parts.len());
        for (i, p) in parts.iter().enumerate() {
            assert_eq!((p.part, p.from, p.to), (i as u32, Some(5), Some(9)));
            assert_eq!(p.latest, (i + 1 == parts.len()).then_some(77));
        }
        let panes: Vec<i64> = parts
            .iter()
            .flat_map(|p| p.partials.iter().map(|x| x.pane))
            .collect();
        assert_eq!(panes, [0, 1, 2, 3, 4]);
        let traces: usize = parts.iter().map(|p| p.traces.traces.len()).sum();
        assert_eq!(traces, 4_500);
    }
}
