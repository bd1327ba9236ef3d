//! librdkafka's logs and error events, each kind at most once per [`REPEAT_EVERY`].
//!
//! A broker that cannot be reached makes librdkafka report the same failure several times a
//! second (a log line per connection attempt, then error events for it and for "all brokers
//! down"): eight lines a second of ERROR for as long as the outage lasts. Here the first of a
//! kind is logged at once and the rest of the interval is counted; the next one logged says
//! how many were held back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use tracing::Level;

/// How long after logging a kind of message its repeats are only counted.
pub(crate) const REPEAT_EVERY: Duration = Duration::from_secs(30);

/// When each kind was last logged and how many of it were held back since.
#[derive(Default)]
pub(crate) struct Quiet {
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Quiet {
    /// A librdkafka log line (`fac` is its kind: `FAIL`, `CONNECT`, ...). Warnings and errors
    /// are held back as said; notices and debug lines (librdkafka's `debug` setting, asked for)
    /// all pass.
    pub(crate) fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let level = match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => Level::ERROR,
            RDKafkaLogLevel::Warning => Level::WARN,
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => Level::INFO,
            RDKafkaLogLevel::Debug => Level::DEBUG,
        };
        // tracing orders levels by verbosity: WARN and ERROR are the ones at most WARN.
        let held = if level <= Level::WARN {
            match self.pass(&format!("log {fac}"), Instant::now()) {
                Some(held) => held,
                None => return,
            }
        } else {
            0
        };
        let more = more(held);
        match level {
            Level::ERROR => tracing::error!(target: "librdkafka", "{fac} {message}{more}"),
            Level::WARN => tracing::warn!(target: "librdkafka", "{fac} {message}{more}"),
            Level::INFO => tracing::info!(target: "librdkafka", "{fac} {message}{more}"),
            _ => tracing::debug!(target: "librdkafka", "{fac} {message}{more}"),
        }
    }

    /// A librdkafka error event: its kind is the error, its reason varies.
    pub(crate) fn error(&self, error: &KafkaError, reason: &str) {
        let kind = error.to_string();
        if let Some(held) = self.pass(&kind, Instant::now()) {
            tracing::error!(target: "librdkafka", "{kind}: {reason}{}", more(held));
        }
    }

    /// Whether a message of `kind` is logged `now`, and how many of its kind were held back
    /// since the last one logged.
    fn pass(&self, kind: &str, now: Instant) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match seen.get_mut(kind) {
            Some((last, held)) if now.duration_since(*last) < REPEAT_EVERY => {
                *held += 1;
                None
            }
            Some((last, held)) => {
                *last = now;
                Some(std::mem::take(held))
            }
            None => {
                seen.insert(kind.to_owned(), (now, 0));
                Some(0)
            }
        }
    }
}

fn more(held: u64) -> String {
    if held == 0 {
        String::new()
    } else {
        format!(
            " ({held} more like it in the last {}s)",
            REPEAT_EVERY.as_secs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_repeated_within_the_interval_is_counted_then_said() {
        let q = Quiet::default();
        let t = Instant::now();
        assert_eq!(q.pass("FAIL", t), Some(0));
        assert_eq!(q.pass("FAIL", t + Duration::from_millis(100)), None);
        assert_eq!(q.pass("FAIL", t + Duration::from_secs(29)), None);
        // Another kind is its own.
        assert_eq!(q.pass("CONNECT", t + Duration::from_secs(1)), Some(0));
        // After the interval: logged, with the two held back.
        assert_eq!(q.pass("FAIL", t + REPEAT_EVERY), Some(2));
        assert_eq!(
            q.pass("FAIL", t + REPEAT_EVERY + Duration::from_secs(1)),
            None
        );
        assert_eq!(more(0), "");
        assert_eq!(more(2), " (2 more like it in the last 30s)");
    }
}
