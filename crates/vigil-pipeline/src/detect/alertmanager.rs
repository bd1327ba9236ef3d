//! Anomalies posted to Alertmanager (`POST /api/v2/alerts`), as Prometheus posts its alerts:
//! a firing alert is re-sent every `resend` with `endsAt` four resends ahead (so it expires on
//! its own if vigil goes away), a resolved one is sent once with its end, and each post goes
//! to every Alertmanager configured (they deduplicate among themselves).
//!
//! Labels: `alertname` (the rule), `severity`, `service`, the rule's own labels, and, when
//! correlating, `incident` and `root_cause`. Alertmanager identifies an alert by its labels,
//! so when an alert's incident or root cause changes, the old label set is resolved as the new
//! one fires. Annotations: `summary`, `runbook_url`, `description`.
//!
//! Posting runs on a thread of its own, so an Alertmanager that is slow or down never holds up
//! the pipeline: what could not be posted is kept (up to [`MAX_OUTBOX`] alerts) and tried
//! again at the next resend. The Kafka topic and the `anomalies` table stay the durable record.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use vigil_core::time::{format_rfc3339, now_micros};
use vigil_detect::{AnomalyEvent, Status};

/// Alerts kept for posting while every Alertmanager is unreachable; beyond, the oldest go.
pub const MAX_OUTBOX: usize = 10_000;

/// How long one post may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

enum Msg {
    Events(Vec<AnomalyEvent>),
    /// Post what is pending, then answer.
    Flush(std_mpsc::Sender<()>),
}

/// The sink: hand it every anomaly event; it keeps Alertmanager in step.
pub struct Alertmanager {
    tx: mpsc::UnboundedSender<Msg>,
}

impl Alertmanager {
    /// Posts to each of `urls` (an Alertmanager's base URL, e.g. `http://alertmanager:9093`),
    /// re-sending firing alerts every `resend`.
    pub fn start(urls: Vec<String>, resend: Duration) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("vigil-alertmanager".into())
            .spawn(move || rt.block_on(Poster::new(urls, resend).run(rx)))?;
        Ok(Self { tx })
    }

    /// New events, in the order they happened.
    pub fn send(&self, events: &[AnomalyEvent]) {
        if !events.is_empty() {
            let _ = self.tx.send(Msg::Events(events.to_vec()));
        }
    }

    /// Waits (up to `timeout`) until everything sent so far has been posted once, or failed to.
    pub fn flush(&self, timeout: Duration) {
        let (done, wait) = std_mpsc::channel();
        if self.tx.send(Msg::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(timeout);
        }
    }
}

/// An alert as Alertmanager identifies it (by labels), with what it says.
#[derive(Debug, Clone, PartialEq)]
struct Alert {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    /// µs since the epoch.
    starts_at: i64,
}

impl Alert {
    fn of(e: &AnomalyEvent) -> Self {
        let mut labels = e.labels.clone();
        labels.insert("alertname".into(), e.rule.clone());
        labels.insert("severity".into(), e.severity.name().into());
        labels.insert("service".into(), e.service.clone());
        if let Some(i) = &e.incident {
            labels.insert("incident".into(), i.id.clone());
            labels.insert("root_cause".into(), i.root_cause_service.clone());
        }
        let mut annotations: BTreeMap<String, String> = e
            .annotations
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let value = e.value.map_or("no data".into(), |v| format!("{v}"));
        let threshold = e
            .threshold
            .map_or(String::new(), |t| format!(" (threshold {t})"));
        annotations.insert(
            "description".into(),
            format!(
                "{} on {}: {value}{threshold} over {} windows, for {}",
                e.rule, e.service, e.window, e.for_
            ),
        );
        annotations
            .entry("summary".into())
            .or_insert_with(|| format!("{} on {}", e.rule, e.service));
        Self {
            labels,
            annotations,
            starts_at: e.starts_at,
        }
    }

    /// The alert as Alertmanager's API takes it, ending at `ends_at` (µs).
    fn postable(&self, ends_at: i64) -> Value {
        json!({
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": format_rfc3339(self.starts_at),
            "endsAt": format_rfc3339(ends_at),
        })
    }
}

/// The posting side: what fires now, and what still has to go out.
struct Poster {
    urls: Vec<String>,
    resend: Duration,
    client: reqwest::Client,
    /// By fingerprint.
    firing: HashMap<String, Alert>,
    /// Resolved alerts not yet posted (firing ones go out with every post).
    resolved: Vec<Value>,
    /// Something changed since the last successful post.
    dirty: bool,
}

impl Poster {
    fn new(urls: Vec<String>, resend: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(POST_TIMEOUT)
            .build()
            .expect("an HTTP client");
        Self {
            urls,
            resend,
            client,
            firing: HashMap::new(),
            resolved: Vec::new(),
            dirty: false,
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let mut resend = tokio::time::interval(self.resend);
        resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(Msg::Events(events)) => {
                        self.apply(&events);
                        // Whatever else is queued joins this post; flushes are answered after it.
                        let mut waiting = Vec::new();
                        while let Ok(msg) = rx.try_recv() {
                            match msg {
                                Msg::Events(more) => self.apply(&more),
                                Msg::Flush(done) => waiting.push(done),
                            }
                        }
                        self.post().await;
                        for done in waiting {
                            let _ = done.send(());
                        }
                    }
                    Some(Msg::Flush(done)) => {
                        if self.dirty {
                            self.post().await;
                        }
                        let _ = done.send(());
                    }
                    None => {
                        if self.dirty {
                            self.post().await;
                        }
                        return;
                    }
                },
                _ = resend.tick() => {
                    if self.dirty || !self.firing.is_empty() {
                        self.post().await;
                    }
                }
            }
        }
    }

    fn apply(&mut self, events: &[AnomalyEvent]) {
        let now = now_micros();
        for e in events {
            let alert = Alert::of(e);
            match e.status {
                Status::Firing => {
                    if let Some(old) = self.firing.insert(e.fingerprint.clone(), alert.clone())
                        && old.labels != alert.labels
                    {
                        // A new label set is a new alert to Alertmanager: end the old one.
                        self.resolved.push(old.postable(now));
                    }
                }
                Status::Resolved => {
                    let ends_at = e.ends_at.unwrap_or(now);
                    // Resolve the label set that was posted, which Alertmanager knows.
                    let posted = self.firing.remove(&e.fingerprint);
                    if let Some(old) = &posted
                        && old.labels != alert.labels
                    {
                        self.resolved.push(old.postable(ends_at));
                    }
                    self.resolved.push(alert.postable(ends_at));
                }
            }
            self.dirty = true;
        }
        if self.resolved.len() > MAX_OUTBOX {
            let dropped = self.resolved.len() - MAX_OUTBOX;
            self.resolved.drain(..dropped);
            tracing::warn!(
                dropped,
                "Alertmanager has been unreachable too long: dropped the oldest resolved alerts"
            );
        }
    }

    /// Posts every firing alert and the resolved ones pending to every Alertmanager; what is
    /// resolved stays pending until one of them took it.
    async fn post(&mut self) {
        let ends_at = now_micros() + 4 * self.resend.as_micros() as i64;
        let mut alerts: Vec<Value> = self.firing.values().map(|a| a.postable(ends_at)).collect();
        alerts.extend(self.resolved.iter().cloned());
        if alerts.is_empty() {
            self.dirty = false;
            return;
        }
        let body = serde_json::to_vec(&alerts).expect("alerts serialise");
        let mut delivered = false;
        for url in &self.urls {
            let endpoint = format!("{}/api/v2/alerts", url.trim_end_matches('/'));
            let sent = self
                .client
                .post(&endpoint)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            let m = &vigil_core::metrics::metrics().alerts_posted;
            match sent {
                Ok(r) if r.status().is_success() => {
                    m.inc(&["ok"]);
                    delivered = true;
                }
                Ok(r) => {
                    m.inc(&["rejected"]);
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    tracing::warn!(url = %endpoint, %status, answer = %text, "Alertmanager refused the alerts");
                }
                Err(e) => {
                    m.inc(&["unreachable"]);
                    tracing::warn!(url = %endpoint, error = %e, "cannot post alerts to Alertmanager; trying again at the next resend");
                }
            }
        }
        if delivered {
            self.resolved.clear();
            self.dirty = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    use vigil_detect::Severity;

    use super::*;

    /// An HTTP server that answers 200 to every request and keeps the bodies posted to
    /// `/api/v2/alerts`.
    fn capture() -> (String, Arc<Mutex<Vec<Vec<Value>>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let posts = Arc::new(Mutex::new(Vec::new()));
        let kept = posts.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let mut conn = BufReader::new(conn.unwrap());
                let mut line = String::new();
                conn.read_line(&mut line).unwrap();
                assert_eq!(line.trim(), "POST /api/v2/alerts HTTP/1.1");
                let mut length = 0;
                loop {
                    line.clear();
                    conn.read_line(&mut line).unwrap();
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                conn.read_exact(&mut body).unwrap();
                kept.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                conn.get_mut()
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .unwrap();
            }
        });
        (url, posts)
    }

    fn event(status: Status, fingerprint: &str, root_cause: Option<&str>) -> AnomalyEvent {
        AnomalyEvent {
            id: format!("{fingerprint}-1"),
            fingerprint: fingerprint.into(),
            status,
            rule: "Token Service Errors".into(),
            kind: "threshold".into(),
            severity: Severity::P2,
            service: "token-service".into(),
            value: Some(0.2),
            threshold: Some(0.05),
            window: "1m".into(),
            for_: "10m".into(),
            starts_at: 1_700_000_000_000_000,
            ends_at: (status == Status::Resolved).then_some(1_700_000_600_000_000),
            detected_at: 1_700_000_000_000_000,
            labels: BTreeMap::from([("team".into(), "identity".into())]),
            annotations: BTreeMap::from([
                ("summary".into(), "Token errors".into()),
                ("runbook_url".into(), "https://runbooks/t".into()),
            ]),
            incident: root_cause.map(|r| vigil_detect::IncidentView {
                id: "inc-1".into(),
                root_cause_service: r.into(),
                confidence: 0.9,
                related: vec![],
                services: vec![],
                evidence: vigil_detect::IncidentEvidence {
                    sample_trace_ids: vec![],
                    error_origins: BTreeMap::new(),
                    self_time_added_ms: BTreeMap::new(),
                    first_anomaly: "token-service".into(),
                    scores: BTreeMap::new(),
                },
            }),
        }
    }

    fn wait_for_posts(posts: &Mutex<Vec<Vec<Value>>>, n: usize) -> Vec<Vec<Value>> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = posts.lock().unwrap().clone();
            if got.len() >= n || std::time::Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn firing_alerts_are_resent_until_resolved_and_a_changed_root_cause_ends_the_old_alert() {
        let (url, posts) = capture();
        let resend = Duration::from_millis(300);
        let am = Alertmanager::start(vec![url], resend).unwrap();
        am.send(&[event(Status::Firing, "f1", Some("database"))]);
        // Posted at once, then again every resend while it fires.
        let got = wait_for_posts(&posts, 3);
        assert!(got.len() >= 3, "{got:?}");
        let first = &got[0][0];
        assert_eq!(first["labels"]["alertname"], "Token Service Errors");
        assert_eq!(first["labels"]["severity"], "P2");
        assert_eq!(first["labels"]["service"], "token-service");
        assert_eq!(first["labels"]["team"], "identity");
        assert_eq!(first["labels"]["incident"], "inc-1");
        assert_eq!(first["labels"]["root_cause"], "database");
        assert_eq!(first["annotations"]["summary"], "Token errors");
        assert_eq!(first["annotations"]["runbook_url"], "https://runbooks/t");
        assert_eq!(first["startsAt"], format_rfc3339(1_700_000_000_000_000));
        // Firing alerts end a few resends from now unless posted again.
        let ends = micros_of(first["endsAt"].as_str().unwrap());
        assert!(ends > now_micros() && ends <= now_micros() + 4 * 300_000 + 1_000_000);

        // The root cause changes: the old label set is resolved as the new one fires.
        am.send(&[event(Status::Firing, "f1", Some("token-service"))]);
        am.flush(Duration::from_secs(5));
        let last = posts.lock().unwrap().last().unwrap().clone();
        let causes: Vec<(&str, bool)> = last
            .iter()
            .map(|a| {
                let ended = micros_of(a["endsAt"].as_str().unwrap()) <= now_micros();
                (a["labels"]["root_cause"].as_str().unwrap(), ended)
            })
            .collect();
        assert!(causes.contains(&("database", true)), "{last:?}");
        assert!(causes.contains(&("token-service", false)), "{last:?}");

        // Resolved: sent once with its end, then nothing more is re-sent.
        am.send(&[event(Status::Resolved, "f1", Some("token-service"))]);
        am.flush(Duration::from_secs(5));
        let last = posts.lock().unwrap().last().unwrap().clone();
        assert_eq!(last.len(), 1, "{last:?}");
        assert_eq!(last[0]["endsAt"], format_rfc3339(1_700_000_600_000_000));
        let after = posts.lock().unwrap().len();
        std::thread::sleep(resend * 3);
        assert_eq!(
            posts.lock().unwrap().len(),
            after,
            "re-sent after resolving"
        );
    }

    #[test]
    fn resolved_alerts_wait_for_an_alertmanager_that_is_down() {
        // Nothing listens here yet.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut poster = Poster::new(
            vec![format!("http://127.0.0.1:{port}")],
            Duration::from_secs(60),
        );
        poster.apply(&[
            event(Status::Firing, "f1", None),
            event(Status::Resolved, "f1", None),
        ]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(poster.post());
        assert_eq!(poster.resolved.len(), 1, "dropped while nobody took it");
        assert!(poster.dirty);
    }

    /// RFC 3339 (as vigil writes it) to µs.
    fn micros_of(t: &str) -> i64 {
        vigil_core::time::parse_rfc3339_micros(t.as_bytes()).unwrap()
    }
}
