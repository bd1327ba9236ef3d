//! The names other logging libraries give the seed's fields.
//!
//! pino, bunyan, logrus and zap write `msg` and `time` (zap `ts`); the Elastic Common Schema
//! writes `@timestamp`, `log.level`, `service.name`, `trace.id`, either as dotted keys or as
//! nested objects; Google Cloud's structured logs `severity`; Python's `levelname`; OpenTelemetry
//! and Zipkin style JSON `traceId`, `spanId`. Metrics: StatsD and Datadog style `metric` and
//! `tags`, Prometheus' `__name__`, OpenTelemetry's `attributes`. A record that lacks a field
//! under the seed's name takes it from the first of these names it has, so such records are
//! archived and judged rather than dead letters.
//!
//! Two rules keep a guess from doing harm. The seed's own name always wins: a record with both
//! `message` and `msg` keeps `msg` in `extra`. And an alias is taken only when its value has the
//! field's type (a string; for the time also a number; for the level also an integer), so an
//! unrelated member that happens to share a name (`"event": {...}`) stays in `extra` and never
//! makes a record a dead letter. A member taken whole leaves `extra`; one read inside a nested
//! object (`"service": {"name": …, "version": …}`) leaves that object in `extra` as written, so
//! nothing is dropped.

use simd_json::{Node, StaticNode};

use crate::rows::ABSENT;
use crate::tape::as_i64;
use crate::verbatim::Member;

/// A known field of a log or metric record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Slot {
    Timestamp,
    Level,
    Service,
    /// trace_id, span_id, parent_span_id, user_id, message.
    Str(usize),
    /// A metric's `name`.
    Name,
    /// A metric's `labels`.
    Labels,
}

/// Each known field's other names, tried in order.
const ALIASES: [(Slot, &[&str]); 10] = [
    (Slot::Timestamp, &["@timestamp", "time", "ts"]),
    (Slot::Level, &["log.level", "severity", "levelname"]),
    (Slot::Service, &["service.name"]),
    (Slot::Str(0), &["trace.id", "traceId", "traceID"]),
    (Slot::Str(1), &["span.id", "spanId", "spanID"]),
    (
        Slot::Str(2),
        &["parent.id", "parentSpanId", "parentSpanID", "parentId"],
    ),
    (Slot::Str(3), &["user.id", "userId"]),
    (Slot::Str(4), &["msg", "event"]),
    (Slot::Name, &["metric", "metric_name", "__name__"]),
    (Slot::Labels, &["tags", "attributes", "dimensions"]),
];

/// Whether `node` may be taken as the value of `slot`.
fn fits(slot: Slot, node: &Node<'_>) -> bool {
    match (slot, node) {
        (Slot::Service | Slot::Name, Node::String(s)) => !s.is_empty(),
        (Slot::Labels, Node::Object { .. }) => true,
        (Slot::Labels, _) => false,
        (_, Node::String(_)) => true,
        (Slot::Timestamp, Node::Static(s)) => !matches!(s, StaticNode::Null | StaticNode::Bool(_)),
        (Slot::Level, n @ Node::Static(_)) => as_i64(n).is_some(),
        _ => false,
    }
}

/// Where an alias was found: the tape index of its value, and the name it was found under.
struct Found {
    value: usize,
    name: &'static str,
    /// A member of its own (taken out of `extra`), not a value inside a nested object (which
    /// stays).
    whole: bool,
}

/// Fills each of `slots` (a known field and the tape index of its value, [`ABSENT`] when the
/// record lacks it) that the record lacks from the first of its aliases among `members` (the
/// record's members under no known name, its `extra`) with a value that fits. A member taken
/// whole leaves `members`, with any earlier member of the same name: a key written twice is
/// one field, its last value. `named` hears the name each slot was found under.
pub(crate) fn fill(
    tape: &[Node<'_>],
    members: &mut Vec<Member>,
    slots: &mut [(Slot, &mut usize)],
    mut named: impl FnMut(Slot, &'static str),
) {
    for (slot, at) in slots {
        if **at != ABSENT {
            continue;
        }
        let Some(found) = find(*slot, tape, members) else {
            continue;
        };
        if found.whole {
            members.retain(|m| key(tape, m) != found.name);
        }
        **at = found.value;
        named(*slot, found.name);
    }
}

fn key<'t>(tape: &[Node<'t>], m: &Member) -> &'t str {
    match tape[m.key] {
        Node::String(k) => k,
        _ => unreachable!("object keys are strings on the tape"),
    }
}

/// The first of `slot`'s aliases among `members` with a value that fits: for each name in
/// turn, the last member of that name, else a path through nested objects.
fn find(slot: Slot, tape: &[Node<'_>], members: &[Member]) -> Option<Found> {
    let names = ALIASES.iter().find(|(s, _)| *s == slot)?.1;
    let last = |k: &str| members.iter().rfind(|m| key(tape, m) == k).map(|m| m.key);
    names.iter().find_map(|&name| {
        let (value, whole) = match last(name) {
            Some(k) => (k + 1, true),
            // `log.level` also as `"log": {"level": …}`.
            None => (path(tape, &last, name)?, false),
        };
        fits(slot, &tape[value]).then_some(Found { value, name, whole })
    })
}

/// The tape index of the value at dotted `path` through nested objects, `last` finding the
/// key of the last member of a name where the path starts: at each `.` in turn, that member
/// for what comes before it, when an object, holding the rest as a member of that name or as
/// a path again.
fn path(tape: &[Node<'_>], last: &dyn Fn(&str) -> Option<usize>, path: &str) -> Option<usize> {
    path.match_indices('.').find_map(|(i, _)| {
        let (outer, rest) = (&path[..i], &path[i + 1..]);
        let at = last(outer)?;
        let Node::Object { len, .. } = tape[at + 1] else {
            return None;
        };
        let inner = |k: &str| {
            (Member::of_object(tape, at + 1, len))
                .filter(|(_, key)| *key == k)
                .last()
                .map(|(m, _)| m.key)
        };
        match inner(rest) {
            Some(key) => Some(key + 1),
            None => self::path(tape, &inner, rest),
        }
    })
}

/// A numeric level as a name: pino's and bunyan's (10 trace … 60 fatal) and syslog's
/// severities (0 emergency … 7 debug, as GELF writes them). Other numbers have none.
pub(crate) fn level_number(n: i64) -> Option<&'static str> {
    Some(match n {
        10 => "TRACE",
        20 | 7 => "DEBUG",
        30 | 6 => "INFO",
        5 => "NOTICE",
        40 | 4 => "WARNING",
        50 | 3 => "ERROR",
        60 | 0..=2 => "CRITICAL",
        _ => return None,
    })
}
