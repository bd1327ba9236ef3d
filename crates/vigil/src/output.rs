//! Human-readable numbers, the progress bar and the one-line run summary.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use vigil_pipeline::{Counters, Summary};

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `92_100_000` → `92.1 MB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The one-line summary of an ingest or run.
pub fn summary_line(s: &Summary) -> String {
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    let total = s.records + s.dead_letters;
    let mut line = format!(
        "{} records, {} in {:.2} s ({} records/s, {}/s); {} dead letter{}",
        thousands(total),
        bytes(s.bytes),
        secs,
        thousands((total as f64 / secs) as u64),
        bytes((s.bytes as f64 / secs) as u64),
        thousands(s.dead_letters),
        if s.dead_letters == 1 { "" } else { "s" },
    );
    if !s.reasons.is_empty() {
        let reasons: Vec<String> = s
            .reasons
            .iter()
            .map(|(k, v)| format!("{k} {}", thousands(*v)))
            .collect();
        line.push_str(&format!(" ({})", reasons.join(", ")));
    }
    line.push_str(&format!(
        "; {} commit{}, {} file{}",
        s.sink.commits,
        if s.sink.commits == 1 { "" } else { "s" },
        s.sink.files,
        if s.sink.files == 1 { "" } else { "s" }
    ));
    line
}

/// What to say after the summary when no record was archived though some were read: every
/// one a dead letter, as when the input is not NDJSON of the kind asked for.
pub fn none_archived_hint(s: &Summary, kind: &str, archive: &str) -> Option<String> {
    (s.records == 0 && s.dead_letters > 0).then(|| {
        let missing = s.reasons.get("missing_field") == Some(&s.dead_letters);
        let why = if missing && kind == "logs" {
            "every one lacks a required field: a time, or a service (pino, zap and logrus \
             write none: give it with --service NAME)."
                .to_string()
        } else {
            format!(
                "every one is a dead letter. Is the input NDJSON {kind} (one JSON object per \
                 line; `--kind` says which)?"
            )
        };
        format!(
            "no record was archived: {why} Their reasons: vigil sql --archive {archive} \
             \"SELECT reason, count(*) FROM dead_letters GROUP BY 1\""
        )
    })
}

/// A progress bar on stderr while `counters` move, when stderr is a terminal.
pub struct Progress {
    bar: Option<ProgressBar>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    pub fn start(counters: Arc<Counters>, total_bytes: Option<u64>) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            return Self {
                bar: None,
                stop,
                thread: None,
            };
        }
        let bar = match total_bytes {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template(
                    "{bar:30} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
                )
                .expect("valid template"),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {bytes} {bytes_per_sec} {msg}")
                    .expect("valid template"),
            ),
        };
        let (b, s) = (bar.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                b.set_position(counters.bytes.load(Ordering::Relaxed));
                b.set_message(format!(
                    "{} records, {} dead letters",
                    thousands(counters.records.load(Ordering::Relaxed)),
                    thousands(counters.dead_letters.load(Ordering::Relaxed))
                ));
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Self {
            bar: Some(bar),
            stop,
            thread: Some(thread),
        }
    }

    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_that_archived_nothing_says_so() {
        let mut s = Summary {
            records: 0,
            dead_letters: 3,
            ..Summary::default()
        };
        let hint = none_archived_hint(&s, "logs", "a").unwrap();
        assert!(hint.contains("every one is a dead letter"), "{hint}");
        // Every one lacking a field: most likely logs that name no service.
        s.reasons.insert("missing_field", 3);
        let hint = none_archived_hint(&s, "logs", "a").unwrap();
        assert!(hint.contains("--service NAME"), "{hint}");
        assert!(
            !none_archived_hint(&s, "metrics", "a")
                .unwrap()
                .contains("--service")
        );
        s.reasons.clear();
        s.records = 1;
        assert_eq!(none_archived_hint(&s, "logs", "a"), None);
        s.records = 0;
        s.dead_letters = 0;
        assert_eq!(none_archived_hint(&s, "logs", "a"), None);
    }

    #[test]
    fn numbers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(92_100_000), "92.1 MB");
    }
}
