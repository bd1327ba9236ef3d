//! The watermark of a set of streams: the least advanced live stream's latest event time. A
//! stream that has not moved for [`IDLE`] stops holding it back; once every stream ended
//! with its input complete, nothing does.
//!
//! Where the streams are read by other replicas (a distributed pipeline's merging replica),
//! silence here says nothing about the stream: its reader may have died, and its rows will
//! come once another reads it. There a stream stops holding the watermark only while its
//! reader says it is idle ([`told_idle`](Streams::told_idle)).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// A stream that has not moved for this long stops holding the watermark back.
pub const IDLE: Duration = Duration::from_secs(10);

/// Latest event time per stream (a Kafka partition, a file source), and when it last moved.
#[derive(Default)]
pub(super) struct Streams {
    streams: HashMap<String, (i64, Instant)>,
    latest: i64,
    /// A stream ended with its input complete.
    ended: bool,
    /// Idleness is what the streams' readers say, not silence here.
    told: bool,
    /// Streams their readers say are idle.
    idle: HashSet<String>,
}

impl Streams {
    pub(super) fn new() -> Self {
        Self {
            latest: i64::MIN,
            ..Default::default()
        }
    }

    /// Streams read elsewhere: idle only when their readers say so.
    pub(super) fn told() -> Self {
        Self {
            told: true,
            ..Self::new()
        }
    }

    /// `stream`'s reader says whether it is idle (has not moved for [`IDLE`]).
    pub(super) fn told_idle(&mut self, stream: &str, idle: bool) {
        if idle {
            self.idle.insert(stream.to_string());
        } else {
            self.idle.remove(stream);
        }
    }

    /// Whether `stream` has not moved for [`IDLE`].
    pub(super) fn is_idle(&self, stream: &str) -> bool {
        self.streams
            .get(stream)
            .is_none_or(|(_, moved)| moved.elapsed() >= IDLE)
    }

    /// The streams known here.
    pub(super) fn names(&self) -> impl Iterator<Item = &str> {
        self.streams.keys().map(String::as_str)
    }

    /// `stream` has a row at `t`.
    pub(super) fn note(&mut self, stream: &str, t: i64) {
        self.latest = self.latest.max(t);
        let now = Instant::now();
        match self.streams.get_mut(stream) {
            Some(e) if t > e.0 => *e = (t, now),
            Some(_) => {}
            None => {
                self.streams.insert(stream.to_string(), (t, now));
            }
        }
    }

    /// `stream` will deliver rows: until it does, or stays silent for [`IDLE`], it holds the
    /// watermark back.
    pub(super) fn expect(&mut self, stream: &str) {
        self.streams
            .entry(stream.to_string())
            .or_insert((i64::MIN, Instant::now()));
    }

    /// `stream` sends nothing more here; `complete`: its input has ended.
    pub(super) fn end(&mut self, stream: &str, complete: bool) {
        if self.streams.remove(stream).is_some() && complete {
            self.ended = true;
        }
    }

    /// The latest event time over every stream, if any.
    pub(super) fn latest(&self) -> Option<i64> {
        (self.latest != i64::MIN).then_some(self.latest)
    }

    /// The latest event time of `stream`, if it has one.
    pub(super) fn latest_of(&self, stream: &str) -> Option<i64> {
        self.streams.get(stream).map(|(t, _)| *t)
    }

    /// The least advanced live stream's latest event time; the latest of all once every
    /// stream ended complete; `None` while nothing may close.
    pub(super) fn slowest(&self) -> Option<i64> {
        let live = self
            .streams
            .iter()
            .filter(|(s, (_, moved))| match self.told {
                true => !self.idle.contains(*s),
                false => moved.elapsed() < IDLE,
            })
            .map(|(_, (t, _))| *t)
            .min();
        match live {
            Some(t) => Some(t),
            None if self.streams.is_empty() && self.ended => self.latest(),
            None => None,
        }
    }
}
