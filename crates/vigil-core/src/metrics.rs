//! vigil's own metrics: one process-wide set, as Prometheus client libraries keep, that every
//! crate records into and `/metrics` encodes in Prometheus' text exposition format (0.0.4).
//!
//! Names follow Prometheus' conventions: the `vigil_` prefix, base units (`_seconds`,
//! `_bytes`), `_total` on counters, and labels whose values are bounded (sources, tables,
//! tiers, partitions, reasons, severities; never a service name, trace id or query text).
//!
//! Recording takes a short lock per call to find the labelled series; callers record per
//! batch, commit or query, never per record.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// What a family measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (or restarts at zero with the process).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations counted into buckets, with their sum and count.
    Histogram,
}

/// Buckets for latencies from a millisecond to a few minutes.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// One labelled series of a family.
#[derive(Debug)]
struct Series {
    /// Counter: the count; gauge: the value's bits; histogram: the observation count.
    value: AtomicU64,
    /// Histogram: the sum's bits.
    sum: AtomicU64,
    /// Histogram: observations at or below each bucket's bound (not cumulative here).
    buckets: Vec<AtomicU64>,
}

/// Metrics of one name: a series per combination of label values.
#[derive(Debug)]
pub struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    bounds: &'static [f64],
    series: Mutex<BTreeMap<Vec<String>, Arc<Series>>>,
}

impl Family {
    fn new(
        name: &'static str,
        help: &'static str,
        kind: Kind,
        labels: &'static [&'static str],
    ) -> Self {
        let f = Self {
            name,
            help,
            kind,
            labels,
            bounds: if kind == Kind::Histogram {
                LATENCY_BUCKETS
            } else {
                &[]
            },
            series: Mutex::default(),
        };
        if labels.is_empty() {
            // An unlabelled series reads 0 before its first event rather than being absent.
            f.series(&[]);
        }
        f
    }

    /// The family's name, e.g. `vigil_records_total`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The series of `values`, made on first use.
    fn series(&self, values: &[&str]) -> Arc<Series> {
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        // Looked up by borrowed values first: only a new series allocates.
        if let Some(s) = find(&series, values) {
            return Arc::clone(s);
        }
        let s = Arc::new(Series {
            value: AtomicU64::new(if self.kind == Kind::Gauge {
                0f64.to_bits()
            } else {
                0
            }),
            sum: AtomicU64::new(0f64.to_bits()),
            buckets: self.bounds.iter().map(|_| AtomicU64::new(0)).collect(),
        });
        series.insert(
            values.iter().map(|v| v.to_string()).collect(),
            Arc::clone(&s),
        );
        s
    }

    /// A counter's series, to add to without a lookup (per record, on hot paths).
    pub fn counter(&self, values: &[&str]) -> Counter {
        debug_assert_eq!(self.kind, Kind::Counter);
        Counter(self.series(values))
    }

    /// Adds `n` to a counter.
    pub fn inc_by(&self, values: &[&str], n: u64) {
        debug_assert_eq!(self.kind, Kind::Counter);
        self.series(values).value.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one to a counter.
    pub fn inc(&self, values: &[&str]) {
        self.inc_by(values, 1);
    }

    /// Sets a counter kept elsewhere (e.g. a client library's own total since it started).
    pub fn set_total(&self, values: &[&str], n: u64) {
        debug_assert_eq!(self.kind, Kind::Counter);
        self.series(values).value.store(n, Ordering::Relaxed);
    }

    /// Sets a gauge.
    pub fn set(&self, values: &[&str], v: f64) {
        debug_assert_eq!(self.kind, Kind::Gauge);
        self.series(values)
            .value
            .store(v.to_bits(), Ordering::Relaxed);
    }

    /// Adds `v` (negative: subtracts) to a gauge.
    pub fn add(&self, values: &[&str], v: f64) {
        debug_assert_eq!(self.kind, Kind::Gauge);
        add_f64(&self.series(values).value, v);
    }

    /// Counts an observation into a histogram.
    pub fn observe(&self, values: &[&str], v: f64) {
        debug_assert_eq!(self.kind, Kind::Histogram);
        let s = self.series(values);
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            s.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        add_f64(&s.sum, v);
        s.value.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops every series whose values `keep` rejects (e.g. partitions no longer assigned).
    pub fn retain(&self, mut keep: impl FnMut(&[String]) -> bool) {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        series.retain(|k, _| keep(k));
    }

    /// A counter's or gauge's current value (tests, health answers).
    pub fn value(&self, values: &[&str]) -> Option<f64> {
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let s = find(&series, values)?;
        let raw = s.value.load(Ordering::Relaxed);
        Some(match self.kind {
            Kind::Gauge => f64::from_bits(raw),
            Kind::Counter | Kind::Histogram => raw as f64,
        })
    }

    fn encode(&self, out: &mut String) {
        let kind = match self.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {kind}", self.name);
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        for (values, s) in series.iter() {
            let labels = |out: &mut String, le: Option<&str>| {
                let mut pairs: Vec<(&str, &str)> = self
                    .labels
                    .iter()
                    .copied()
                    .zip(values.iter().map(String::as_str))
                    .collect();
                pairs.extend(le.map(|le| ("le", le)));
                if pairs.is_empty() {
                    return;
                }
                out.push('{');
                for (i, (k, v)) in pairs.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"");
                    escape(out, v);
                    out.push('"');
                }
                out.push('}');
            };
            let raw = s.value.load(Ordering::Relaxed);
            match self.kind {
                Kind::Counter => {
                    out.push_str(self.name);
                    labels(out, None);
                    let _ = writeln!(out, " {raw}");
                }
                Kind::Gauge => {
                    out.push_str(self.name);
                    labels(out, None);
                    let _ = writeln!(out, " {}", number(f64::from_bits(raw)));
                }
                Kind::Histogram => {
                    let mut cumulative = 0;
                    for (bound, n) in self.bounds.iter().zip(&s.buckets) {
                        cumulative += n.load(Ordering::Relaxed);
                        let _ = write!(out, "{}_bucket", self.name);
                        labels(out, Some(&number(*bound)));
                        let _ = writeln!(out, " {cumulative}");
                    }
                    let _ = write!(out, "{}_bucket", self.name);
                    labels(out, Some("+Inf"));
                    let _ = writeln!(out, " {raw}");
                    let _ = write!(out, "{}_sum", self.name);
                    labels(out, None);
                    let _ = writeln!(
                        out,
                        " {}",
                        number(f64::from_bits(s.sum.load(Ordering::Relaxed)))
                    );
                    let _ = write!(out, "{}_count", self.name);
                    labels(out, None);
                    let _ = writeln!(out, " {raw}");
                }
            }
        }
    }
}

/// The series whose label values are `values`.
fn find<'a>(
    series: &'a BTreeMap<Vec<String>, Arc<Series>>,
    values: &[&str],
) -> Option<&'a Arc<Series>> {
    series
        .iter()
        .find(|(k, _)| k.iter().map(String::as_str).eq(values.iter().copied()))
        .map(|(_, s)| s)
}

/// One series of a counter family, held by whoever counts into it.
#[derive(Debug, Clone)]
pub struct Counter(Arc<Series>);

impl Counter {
    /// Adds `n`.
    pub fn inc_by(&self, n: u64) {
        self.0.value.fetch_add(n, Ordering::Relaxed);
    }
}

fn add_f64(cell: &AtomicU64, v: f64) {
    let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
        Some((f64::from_bits(bits) + v).to_bits())
    });
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        v.to_string()
    }
}

/// Label values escape `\`, `"` and newlines.
fn escape(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Every metric vigil exposes.
#[derive(Debug)]
pub struct Metrics {
    /// Records decoded into rows, per source and table.
    pub records: Family,
    /// Input bytes read (after decompression), per source.
    pub input_bytes: Family,
    /// Records turned into dead letters, per source and reason code.
    pub dead_letters: Family,
    /// Messages received per Kafka topic and partition (the client's total since it started).
    pub kafka_messages: Family,
    /// Bytes received per Kafka topic and partition (the client's total since it started).
    pub kafka_bytes: Family,
    /// Messages behind the end of the log, per assigned topic and partition: from the committed
    /// offset, or before the first commit from where reading started.
    pub consumer_lag: Family,
    /// Time the sink spends on one decoded batch (detection and buffering).
    pub batch_seconds: Family,
    /// Time writing a commit's data files, per table and tier.
    pub flush_seconds: Family,
    /// Time committing to a table's Delta log (after its files are written), per table and tier.
    pub commit_seconds: Family,
    /// Delta commits, per table and tier.
    pub archive_commits: Family,
    /// Rows committed, per table and tier.
    pub archive_rows: Family,
    /// Parquet bytes committed, per table and tier.
    pub archive_bytes: Family,
    /// Commits fenced off because another writer recorded the same partitions.
    pub fenced_commits: Family,
    /// Commits that failed and were retried.
    pub commit_retries: Family,
    /// OTLP/HTTP requests answered 503 because the pipeline was behind.
    pub otlp_throttled: Family,
    /// Anomaly events published, per severity and status.
    pub anomalies: Family,
    /// Rows that arrived after their detection window closed.
    pub late_records: Family,
    /// Traces being assembled by correlation.
    pub open_traces: Family,
    /// Wall clock minus detection's watermark.
    pub watermark_lag: Family,
    /// Event time through which detection has closed its windows.
    pub closed_through: Family,
    /// Bytes of partials messages sent to the shuffle topic (distributed detection).
    pub shuffle_bytes: Family,
    /// Partials messages handled by the merging replica, per outcome (`merged`, `reread`, `heartbeat`, `skipped`, `unreadable`).
    pub shuffle_messages: Family,
    /// 1 while this replica merges the partials of a distributed pipeline.
    pub merging: Family,
    /// Alerts posted to Alertmanager, per outcome.
    pub alerts_posted: Family,
    /// SQL statements answered, per interface (`http`, `pg`) and outcome.
    pub queries: Family,
    /// Time to answer a SQL statement (planning, running, streaming the rows), per interface.
    pub query_seconds: Family,
    /// SQL statements running now.
    pub queries_in_flight: Family,
    /// The running build; always 1.
    pub build_info: Family,
}

impl Metrics {
    fn new() -> Self {
        use Kind::{Counter, Gauge, Histogram};
        let m = Self {
            records: Family::new(
                "vigil_records_total",
                "Records decoded into rows.",
                Counter,
                &["source", "table"],
            ),
            input_bytes: Family::new(
                "vigil_input_bytes_total",
                "Input bytes read, after decompression.",
                Counter,
                &["source"],
            ),
            dead_letters: Family::new(
                "vigil_dead_letters_total",
                "Records turned into dead letters.",
                Counter,
                &["source", "reason"],
            ),
            kafka_messages: Family::new(
                "vigil_kafka_received_messages_total",
                "Messages received from a Kafka partition since the consumer started.",
                Counter,
                &["topic", "partition"],
            ),
            kafka_bytes: Family::new(
                "vigil_kafka_received_bytes_total",
                "Bytes received from a Kafka partition since the consumer started.",
                Counter,
                &["topic", "partition"],
            ),
            consumer_lag: Family::new(
                "vigil_kafka_consumer_lag",
                "Messages between the committed offset (before the first commit: where reading started) and the end of an assigned partition.",
                Gauge,
                &["topic", "partition"],
            ),
            batch_seconds: Family::new(
                "vigil_batch_duration_seconds",
                "Time the sink spends on one decoded batch: detection and buffering.",
                Histogram,
                &[],
            ),
            flush_seconds: Family::new(
                "vigil_archive_flush_duration_seconds",
                "Time writing the Parquet files of one commit.",
                Histogram,
                &["table", "tier"],
            ),
            commit_seconds: Family::new(
                "vigil_archive_commit_duration_seconds",
                "Time committing to a Delta log once the files are written.",
                Histogram,
                &["table", "tier"],
            ),
            archive_commits: Family::new(
                "vigil_archive_commits_total",
                "Delta commits.",
                Counter,
                &["table", "tier"],
            ),
            archive_rows: Family::new(
                "vigil_archive_rows_total",
                "Rows committed.",
                Counter,
                &["table", "tier"],
            ),
            archive_bytes: Family::new(
                "vigil_archive_written_bytes_total",
                "Parquet bytes committed.",
                Counter,
                &["table", "tier"],
            ),
            fenced_commits: Family::new(
                "vigil_archive_fenced_commits_total",
                "Commits refused because another writer recorded the same partitions.",
                Counter,
                &[],
            ),
            otlp_throttled: Family::new(
                "vigil_otlp_throttled_requests_total",
                "OTLP/HTTP requests answered 503 (Retry-After) because the pipeline was behind.",
                Counter,
                &[],
            ),
            commit_retries: Family::new(
                "vigil_archive_commit_retries_total",
                "Commits that failed and were retried.",
                Counter,
                &[],
            ),
            anomalies: Family::new(
                "vigil_anomalies_total",
                "Anomaly events published.",
                Counter,
                &["severity", "status"],
            ),
            late_records: Family::new(
                "vigil_late_records_total",
                "Rows that arrived after their detection window had closed.",
                Counter,
                &[],
            ),
            open_traces: Family::new(
                "vigil_correlation_open_traces",
                "Traces being assembled by correlation.",
                Gauge,
                &[],
            ),
            watermark_lag: Family::new(
                "vigil_watermark_lag_seconds",
                "Wall-clock time minus detection's event-time watermark.",
                Gauge,
                &[],
            ),
            closed_through: Family::new(
                "vigil_detection_closed_through_seconds",
                "Event time (seconds since the epoch) through which detection has closed its windows.",
                Gauge,
                &[],
            ),
            shuffle_bytes: Family::new(
                "vigil_shuffle_sent_bytes_total",
                "Bytes of partials messages sent to the shuffle topic.",
                Counter,
                &[],
            ),
            shuffle_messages: Family::new(
                "vigil_shuffle_messages_total",
                "Partials messages handled by the merging replica, per outcome.",
                Counter,
                &["outcome"],
            ),
            merging: Family::new(
                "vigil_detection_merging",
                "1 while this replica merges the partials of a distributed pipeline.",
                Gauge,
                &[],
            ),
            alerts_posted: Family::new(
                "vigil_alertmanager_posts_total",
                "Posts of alerts to Alertmanager.",
                Counter,
                &["outcome"],
            ),
            queries: Family::new(
                "vigil_queries_total",
                "SQL statements answered.",
                Counter,
                &["interface", "outcome"],
            ),
            query_seconds: Family::new(
                "vigil_query_duration_seconds",
                "Time to answer a SQL statement, rows streamed included.",
                Histogram,
                &["interface"],
            ),
            queries_in_flight: Family::new(
                "vigil_queries_in_flight",
                "SQL statements running now.",
                Gauge,
                &[],
            ),
            build_info: Family::new(
                "vigil_build_info",
                "The running build; always 1.",
                Gauge,
                &["version"],
            ),
        };
        m.build_info.set(&[env!("CARGO_PKG_VERSION")], 1.0);
        m
    }

    fn families(&self) -> [&Family; 28] {
        [
            &self.build_info,
            &self.records,
            &self.input_bytes,
            &self.dead_letters,
            &self.kafka_messages,
            &self.kafka_bytes,
            &self.consumer_lag,
            &self.batch_seconds,
            &self.flush_seconds,
            &self.commit_seconds,
            &self.archive_commits,
            &self.archive_rows,
            &self.archive_bytes,
            &self.fenced_commits,
            &self.commit_retries,
            &self.otlp_throttled,
            &self.anomalies,
            &self.late_records,
            &self.open_traces,
            &self.watermark_lag,
            &self.closed_through,
            &self.shuffle_bytes,
            &self.shuffle_messages,
            &self.merging,
            &self.alerts_posted,
            &self.queries,
            &self.query_seconds,
            &self.queries_in_flight,
        ]
    }

    /// Every family in the text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 << 10);
        for f in self.families() {
            f.encode(&mut out);
        }
        out
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_encode_in_the_text_format() {
        let f = Family::new("t_seconds", "A latency.", Kind::Histogram, &["table"]);
        f.observe(&["logs"], 0.003);
        f.observe(&["logs"], 500.0);
        let mut out = String::new();
        f.encode(&mut out);
        assert!(out.starts_with("# HELP t_seconds A latency.\n# TYPE t_seconds histogram\n"));
        assert!(out.contains("t_seconds_bucket{table=\"logs\",le=\"0.0025\"} 0\n"));
        assert!(out.contains("t_seconds_bucket{table=\"logs\",le=\"0.005\"} 1\n"));
        assert!(out.contains("t_seconds_bucket{table=\"logs\",le=\"120\"} 1\n"));
        assert!(out.contains("t_seconds_bucket{table=\"logs\",le=\"+Inf\"} 2\n"));
        assert!(out.contains("t_seconds_sum{table=\"logs\"} 500.003\n"));
        assert!(out.contains("t_seconds_count{table=\"logs\"} 2\n"));

        let c = Family::new("c_total", "Counts.", Kind::Counter, &["reason"]);
        c.inc_by(&["a \"quoted\"\\\nvalue"], 3);
        let mut out = String::new();
        c.encode(&mut out);
        assert!(out.ends_with("c_total{reason=\"a \\\"quoted\\\"\\\\\\nvalue\"} 3\n"));

        let g = Family::new("g", "Level.", Kind::Gauge, &[]);
        g.add(&[], 2.5);
        g.add(&[], -1.0);
        assert_eq!(g.value(&[]), Some(1.5));
        g.retain(|_| false);
        assert_eq!(g.value(&[]), None);
    }

    #[test]
    fn every_family_is_named_by_the_conventions() {
        let m = Metrics::new();
        for f in m.families() {
            assert!(f.name.starts_with("vigil_"), "{}", f.name);
            assert_eq!(
                f.name.ends_with("_total"),
                f.kind == Kind::Counter,
                "{}",
                f.name
            );
        }
    }

    #[test]
    fn the_shipped_alert_rules_use_only_metrics_vigil_exposes() {
        let rules = crate::manifest_dir!().join("../../deploy/compose/prometheus/vigil-alerts.yml");
        let text = std::fs::read_to_string(&rules).unwrap();
        let m = Metrics::new();
        let names: Vec<String> = m
            .families()
            .iter()
            .flat_map(|f| {
                let n = f.name.to_string();
                match f.kind {
                    Kind::Histogram => ["_bucket", "_sum", "_count"]
                        .iter()
                        .map(|s| format!("{n}{s}"))
                        .collect(),
                    _ => vec![n],
                }
            })
            .collect();
        let mut used = 0;
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("vigil_") {
                assert!(names.iter().any(|n| n == word), "{word} is not a metric");
                used += 1;
            }
        }
        assert!(used >= 10, "only {used} metric references");
    }
}
