//! The generator: requests → spans → log lines, plus per-service metrics.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use vigil_core::InvalidInput;
use vigil_core::time::{MICROS_PER_SECOND, parse_rfc3339_micros, write_rfc3339};

use crate::incident::{Incident, IncidentKind};
use crate::rng::Rng;
use crate::topology::{Node, System, Topology};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Config {
    /// Seed of the random stream: the same seed gives the same bytes.
    pub seed: u64,
    /// Event time of the first record, microseconds since the epoch.
    pub start_micros: i64,
    /// Event-time span to generate.
    pub duration: Duration,
    /// Mean requests per second entering at `api-gateway`.
    pub rate: f64,
    /// How often each service reports its metrics.
    pub metrics_interval: Duration,
    /// Share of operations that fail on their own in normal operation.
    pub base_error_rate: f64,
    /// Incidents to inject.
    pub incidents: Vec<Incident>,
    /// Log a client span in the caller around each call to another service (the shape of
    /// OpenTelemetry traces): `HTTP <op>`, whose child is the callee's span, with the time on
    /// the wire (about a millisecond, more under a `network` incident) between the two.
    pub client_spans: bool,
    /// The system simulated: the deals system, or a larger mesh.
    pub topology: Topology,
}

/// The highest `rate` the generator takes: a million requests per second already makes
/// about five million log lines per second of event time.
pub const MAX_RATE: f64 = 1e6;

impl Config {
    /// Checks what input alone could make unusable: a rate that is not a positive number up
    /// to [`MAX_RATE`] (NaN would never advance, infinity never finish a tick), a metrics
    /// interval of zero.
    pub fn check(&self) -> Result<(), InvalidInput> {
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= MAX_RATE) {
            return Err(InvalidInput(format!(
                "rate {} is not a number of requests per second between 0 and {MAX_RATE}",
                self.rate
            )));
        }
        if self.metrics_interval.is_zero() {
            return Err(InvalidInput(
                "the metrics interval must be longer than 0".into(),
            ));
        }
        for i in &self.incidents {
            i.check_service(self.topology)?;
            // One that starts at or after the end would silently not happen.
            if i.start >= self.duration {
                return Err(InvalidInput(format!(
                    "incident `{i}` starts at {}, not within the {} generated",
                    vigil_core::units::format_duration(i.start),
                    vigil_core::units::format_duration(self.duration)
                )));
            }
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            seed: 42,
            start_micros: parse_rfc3339_micros(b"2025-06-02T09:00:00Z").expect("valid literal"),
            duration: Duration::from_secs(3600),
            rate: 20.0,
            metrics_interval: Duration::from_secs(10),
            base_error_rate: 0.0008,
            incidents: Vec::new(),
            client_spans: false,
            topology: Topology::Deals,
        }
    }
}

/// Per-service activity within the current metrics interval, and totals.
#[derive(Debug, Clone, Copy, Default)]
struct ServiceStats {
    requests_total: u64,
    errors_total: u64,
    busy_ms: f64,
}

/// Produces telemetry one second of event time at a time, in event-time order.
pub struct Generator {
    cfg: Config,
    rng: Rng,
    /// Start of the next tick, relative to `start_micros`.
    tick: i64,
    next_metrics: i64,
    end: i64,
    /// Log lines generated but not yet due: spans finish after the tick their request began in.
    pending: Vec<(i64, String)>,
    system: Arc<System>,
    /// Each incident's service, by index (`usize::MAX`: not in the system).
    incident_services: Vec<usize>,
    stats: Vec<ServiceStats>,
    memory_mb: Vec<f64>,
    records: u64,
}

/// How a span ended.
struct Outcome {
    end: i64,
    failed: bool,
    /// Ended the request early without failing (e.g. 401 from auth).
    rejected: bool,
}

struct Request<'a> {
    trace_id: String,
    user_id: Option<u32>,
    deal_id: u32,
    endpoint: &'a str,
    method: &'a str,
}

impl Generator {
    /// A generator for `cfg` (see [`Config::check`]: an incident on a service the system does
    /// not have injects nothing).
    pub fn new(cfg: Config) -> Self {
        let mut rng = Rng::new(cfg.seed);
        let system = System::build(cfg.topology);
        let n = system.services.len();
        // Six memory and CPU levels, repeated over larger systems.
        let memory_mb = (0..n)
            .map(|i| 256.0 + 128.0 * (i % 6) as f64 + 64.0 * rng.f64())
            .collect();
        let incident_services = cfg
            .incidents
            .iter()
            .map(|i| system.index(&i.service).unwrap_or(usize::MAX))
            .collect();
        Self {
            end: cfg.duration.as_micros() as i64,
            rng,
            tick: 0,
            next_metrics: 0,
            pending: Vec::new(),
            system: Arc::new(system),
            incident_services,
            stats: vec![ServiceStats::default(); n],
            memory_mb,
            records: 0,
            cfg,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Records (log lines and metric samples) produced so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Event time up to which everything has been produced.
    pub fn watermark(&self) -> i64 {
        self.cfg.start_micros + self.tick
    }

    /// Whether everything has been produced.
    pub fn is_done(&self) -> bool {
        self.tick >= self.end && self.pending.is_empty()
    }

    /// Appends the next second of event time as NDJSON: log lines to `logs`, metric samples to
    /// `metrics`. Returns `false` once the configured duration has been produced.
    pub fn next_tick(&mut self, logs: &mut Vec<u8>, metrics: &mut Vec<u8>) -> bool {
        if self.is_done() {
            return false;
        }
        let tick_end = self.tick + MICROS_PER_SECOND;
        if self.tick < self.end {
            let n = self.rng.poisson(self.cfg.rate);
            for _ in 0..n {
                let at = self.tick + self.rng.below(MICROS_PER_SECOND as u64) as i64;
                self.request(at);
            }
        }
        // Emit everything due before the end of this tick, in event-time order.
        self.pending.sort_by_key(|(ts, _)| *ts);
        let due = if self.tick >= self.end {
            self.pending.len()
        } else {
            self.pending
                .partition_point(|(ts, _)| *ts < self.cfg.start_micros + tick_end)
        };
        for (_, line) in self.pending.drain(..due) {
            logs.extend_from_slice(line.as_bytes());
            logs.push(b'\n');
            self.records += 1;
        }
        let interval = self.cfg.metrics_interval.as_micros().max(1) as i64;
        while self.next_metrics < tick_end && self.next_metrics <= self.end {
            self.metrics(self.next_metrics, interval, metrics);
            self.next_metrics += interval;
        }
        self.tick = tick_end;
        true
    }

    fn active(&self, service: usize, offset: i64) -> impl Iterator<Item = &Incident> {
        self.cfg
            .incidents
            .iter()
            .zip(&self.incident_services)
            .filter(move |(i, s)| **s == service && i.active_at(offset))
            .map(|(i, _)| i)
    }

    fn request(&mut self, at: i64) {
        let system = Arc::clone(&self.system);
        let routes = &system.routes;
        let mut pick = self.rng.f64() * routes.iter().map(|e| e.weight).sum::<f64>();
        let endpoint = routes
            .iter()
            .find(|e| {
                pick -= e.weight;
                pick < 0.0
            })
            .unwrap_or(&routes[0]);
        for (inc, &service) in self.cfg.incidents.iter().zip(&self.incident_services) {
            if inc.kind == IncidentKind::TrafficDrop
                && inc.active_at(at)
                && endpoint.root.involves(service)
                && self.rng.chance(inc.intensity)
            {
                return;
            }
        }
        let mut trace_id = String::with_capacity(24);
        self.rng.hex(&mut trace_id, 24);
        let req = Request {
            trace_id,
            user_id: (!self.rng.chance(0.1)).then(|| 1 + self.rng.below(5000) as u32),
            deal_id: 1 + self.rng.below(100_000) as u32,
            endpoint: &endpoint.path,
            method: endpoint.method,
        };
        self.span(&endpoint.root, &req, None, at);
    }

    /// Runs one span and its children; logs the span when it completes.
    fn span(
        &mut self,
        call: &Node,
        req: &Request<'_>,
        parent: Option<&str>,
        start: i64,
    ) -> Outcome {
        let system = Arc::clone(&self.system);
        let mut span_id = String::with_capacity(16);
        self.rng.hex(&mut span_id, 16);
        let mut p_fail = self.cfg.base_error_rate;
        let mut self_ms = self.rng.lognormal(call.self_ms, 0.35);
        let mut outage = false;
        let mut p_silent: f64 = 0.0;
        for inc in self.active(call.service, start) {
            match inc.kind {
                IncidentKind::Errors => p_fail = p_fail.max(inc.intensity),
                IncidentKind::Outage => {
                    p_fail = p_fail.max(inc.intensity);
                    outage = true;
                }
                IncidentKind::Latency => self_ms *= inc.intensity,
                IncidentKind::Exception => p_silent = p_silent.max(inc.intensity),
                // A starved CPU queues the work: 1 / (1 - utilisation), up to 4×.
                IncidentKind::Cpu => {
                    self_ms /= 1.0 - (inc.intensity / 100.0).clamp(0.0, 0.75);
                }
                IncidentKind::TrafficDrop | IncidentKind::Network => {}
            }
        }
        let own_failure = self.rng.chance(p_fail);
        // Drawn only under an `exception` incident: other streams keep their bytes.
        let silent = !own_failure && p_silent > 0.0 && self.rng.chance(p_silent);
        if own_failure && outage {
            self_ms = self_ms.min(5.0);
        }
        let rejected =
            system.auth == Some(call.service) && call.op == "verify_token" && self.rng.chance(0.01);
        if self.rng.chance(0.03) {
            self.debug_line(call, req, &span_id, parent, start);
        }
        let mut t = start + (self_ms * 300.0) as i64;
        let mut failed_child = None;
        let mut rejected_by_child = false;
        if !own_failure && !silent && !rejected {
            for child in &call.children {
                let r = if self.cfg.client_spans {
                    self.client_span(call, child, req, &span_id, t)
                } else {
                    // Time on the wire shows as the caller's own.
                    let half = (self.network_delay_ms(child, t) * 500.0) as i64;
                    let r = self.span(child, req, Some(&span_id), t + half);
                    Outcome {
                        end: r.end + half,
                        ..r
                    }
                };
                t = r.end + (self.rng.f64() * 500.0) as i64;
                if r.failed {
                    failed_child = Some(child.service);
                    break;
                }
                if r.rejected {
                    rejected_by_child = true;
                    break;
                }
            }
        }
        // Spans log at completion, with millisecond timestamps like the seed's.
        let end = ((t + (self_ms * 700.0) as i64) / 1000 + 1) * 1000;
        let (level, status, message, failed): (&str, u16, String, bool) = if silent {
            // Thrown and not logged: no level above INFO, no status (0: not written).
            (
                "INFO",
                0,
                system.success_message(call.service, &call.op).into(),
                false,
            )
        } else if own_failure {
            let status = if outage { 503 } else { 500 };
            let level = if outage && !system.database[call.service] {
                "CRITICAL"
            } else {
                "ERROR"
            };
            (
                level,
                status,
                system.failure_message(call.service).into(),
                true,
            )
        } else if let Some(child) = failed_child {
            if self.rng.chance(0.9) {
                (
                    "ERROR",
                    502,
                    format!("Upstream call to {} failed", system.services[child]),
                    true,
                )
            } else {
                (
                    "WARNING",
                    200,
                    format!(
                        "Upstream {} failed; served fallback",
                        system.services[child]
                    ),
                    false,
                )
            }
        } else if rejected {
            ("WARNING", 401, "Invalid or expired token".into(), false)
        } else if rejected_by_child {
            ("INFO", 401, "Request rejected: unauthorized".into(), false)
        } else {
            (
                "INFO",
                200,
                system.success_message(call.service, &call.op).into(),
                false,
            )
        };
        let stats = &mut self.stats[call.service];
        stats.requests_total += 1;
        stats.errors_total += u64::from(failed);
        stats.busy_ms += self_ms;

        let elapsed_ms = (end - start) as f64 / 1000.0;
        let mut line = String::with_capacity(400);
        self.head(&mut line, end, level, call.service, req, (&span_id, parent));
        match req.user_id {
            Some(u) => {
                let _ = write!(line, "\"user_id\":\"user-{u}\",");
            }
            None => line.push_str("\"user_id\":\"anonymized-if-applicable\","),
        }
        let _ = write!(
            line,
            "\"message\":\"{message}\",\"additional_data\":{{\"processing_time_ms\":{elapsed_ms:.1},"
        );
        if status != 0 {
            let _ = write!(line, "\"status_code\":{status},");
        }
        let _ = write!(line, "\"operation\":\"{}\"", call.op);
        if parent.is_none() {
            let _ = write!(
                line,
                ",\"endpoint\":\"{}\",\"method\":\"{}\"",
                req.endpoint, req.method
            );
        }
        match system.services[call.service].as_str() {
            "deal-analysis-service" => {
                let _ = write!(line, ",\"deal_id\":\"deal-{}\"", req.deal_id);
            }
            "ai-service" => {
                let tokens = 200 + self.rng.below(1800);
                let _ = write!(
                    line,
                    ",\"deal_id\":\"deal-{}\",\"ai_model_used\":\"gpt-4\",\"tokens_used\":{tokens}",
                    req.deal_id
                );
            }
            "database" => {
                let _ = write!(line, ",\"rows\":{}", self.rng.below(50));
            }
            _ => {}
        }
        line.push_str("}}");
        self.pending.push((self.cfg.start_micros + end, line));
        Outcome {
            end,
            failed: failed || silent,
            rejected: rejected || rejected_by_child,
        }
    }

    /// A call from `caller` to `callee` as OpenTelemetry instrumentation shows it: a client
    /// span in the caller (`HTTP <op>`) whose child is the callee's span, with the time on
    /// the wire split either side of it.
    fn client_span(
        &mut self,
        caller: &Node,
        callee: &Node,
        req: &Request<'_>,
        parent: &str,
        start: i64,
    ) -> Outcome {
        let mut span_id = String::with_capacity(16);
        self.rng.hex(&mut span_id, 16);
        let wire_ms = self.rng.lognormal(0.8, 0.3) + self.network_delay_ms(callee, start);
        let half = (wire_ms * 500.0) as i64;
        let r = self.span(callee, req, Some(&span_id), start + half);
        let end = ((r.end + half) / 1000 + 1) * 1000;
        let (level, status) = if r.failed {
            ("ERROR", 500)
        } else if r.rejected {
            ("INFO", 401)
        } else {
            ("INFO", 200)
        };
        let mut line = String::with_capacity(300);
        self.head(
            &mut line,
            end,
            level,
            caller.service,
            req,
            (&span_id, Some(parent)),
        );
        let _ = write!(
            line,
            "\"message\":\"HTTP call to {} returned {status}\",\"additional_data\":{{\"processing_time_ms\":{:.1},\"status_code\":{status},\"operation\":\"HTTP {}\",\"span_kind\":\"client\"}}}}",
            self.system.services[callee.service],
            (end - start) as f64 / 1000.0,
            callee.op
        );
        self.pending.push((self.cfg.start_micros + end, line));
        Outcome { end, ..r }
    }

    /// Milliseconds a `network` incident adds to a call to `callee` at `at`.
    fn network_delay_ms(&self, callee: &Node, at: i64) -> f64 {
        self.active(callee.service, at)
            .filter(|i| i.kind == IncidentKind::Network)
            .map(|i| i.intensity)
            .sum()
    }

    /// The start of a record: timestamp, level, service and the trace's ids (span, parent).
    fn head(
        &self,
        line: &mut String,
        at: i64,
        level: &str,
        service: usize,
        req: &Request<'_>,
        (span_id, parent): (&str, Option<&str>),
    ) {
        line.push_str("{\"timestamp\":\"");
        write_rfc3339(line, self.cfg.start_micros + at);
        let _ = write!(
            line,
            "\",\"level\":\"{level}\",\"service\":\"{}\",\"trace_id\":\"{}\",\"span_id\":\"{span_id}\",",
            self.system.services[service], req.trace_id
        );
        if let Some(p) = parent {
            let _ = write!(line, "\"parent_span_id\":\"{p}\",");
        }
    }

    fn debug_line(
        &mut self,
        call: &Node,
        req: &Request<'_>,
        span_id: &str,
        parent: Option<&str>,
        at: i64,
    ) {
        let ts = (at / 1000) * 1000;
        let mut line = String::with_capacity(300);
        self.head(&mut line, ts, "DEBUG", call.service, req, (span_id, parent));
        let _ = write!(
            line,
            "\"message\":\"Processing deal with ID: deal-{}\",\"additional_data\":{{\"deal_id\":\"deal-{}\",\"operation\":\"{}\"}}}}",
            req.deal_id, req.deal_id, call.op
        );
        self.pending.push((self.cfg.start_micros + ts, line));
    }

    fn metrics(&mut self, at: i64, interval: i64, out: &mut Vec<u8>) {
        let ts = self.cfg.start_micros + at;
        let mut stamp = String::with_capacity(24);
        write_rfc3339(&mut stamp, ts);
        let interval_ms = interval as f64 / 1000.0;
        let system = Arc::clone(&self.system);
        for (s, service) in system.services.iter().enumerate() {
            let st = self.stats[s];
            // Busy time over the interval, spread over a few workers per service.
            let utilisation = (st.busy_ms / (interval_ms * 4.0)).min(1.0);
            let saturated = self
                .active(s, at)
                .filter(|i| i.kind == IncidentKind::Cpu)
                .map(|i| i.intensity)
                .last();
            let cpu = saturated.unwrap_or(12.0 + 3.0 * (s % 6) as f64 + 45.0 * utilisation)
                + 2.0 * self.rng.normal();
            let cpu = cpu.clamp(0.5, 100.0);
            self.memory_mb[s] += self.rng.normal() * 2.0;
            let mut line = |name: &str, kind: &str, value: f64| {
                let _ = writeln!(
                    StringSink(out),
                    "{{\"timestamp\":\"{stamp}\",\"name\":\"{name}\",\"type\":\"{kind}\",\"service\":\"{service}\",\"value\":{value:.2},\"labels\":{{\"instance\":\"{service}-0\",\"region\":\"us-east-1\"}}}}"
                );
            };
            line("cpu_percent", "gauge", cpu);
            line("memory_mb", "gauge", self.memory_mb[s]);
            line("requests_total", "counter", st.requests_total as f64);
            line("errors_total", "counter", st.errors_total as f64);
            if system.database[s] {
                line(
                    "db_connections_active",
                    "gauge",
                    (8.0 + 30.0 * utilisation).round(),
                );
            }
            self.records += if system.database[s] { 5 } else { 4 };
            self.stats[s].busy_ms = 0.0;
        }
    }
}

/// `fmt::Write` into a byte vector.
struct StringSink<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for StringSink<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cfg: Config) -> (Vec<u8>, Vec<u8>) {
        let mut g = Generator::new(cfg);
        let (mut logs, mut metrics) = (Vec::new(), Vec::new());
        while g.next_tick(&mut logs, &mut metrics) {}
        (logs, metrics)
    }

    fn short() -> Config {
        Config {
            duration: Duration::from_secs(120),
            ..Config::default()
        }
    }

    /// The spans (every log line but DEBUG) of two minutes with client spans and `incident`.
    fn client_span_run(incident: &str) -> Vec<serde_json::Value> {
        let cfg = Config {
            client_spans: true,
            incidents: vec![incident.parse().unwrap()],
            ..short()
        };
        let (logs, _) = run(cfg);
        logs.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .filter(|v: &serde_json::Value| v["level"] != "DEBUG")
            .collect()
    }

    #[test]
    fn deterministic_for_a_seed() {
        assert_eq!(run(short()), run(short()));
        assert_ne!(run(short()).0, run(Config { seed: 1, ..short() }).0);
    }

    #[test]
    fn an_exception_is_logged_by_the_callers_only() {
        let spans = client_span_run("exception:database@0m+2m*0.5");
        let database = |v: &&serde_json::Value| v["service"] == "database";
        let silent = spans
            .iter()
            .filter(database)
            .filter(|v| v["additional_data"].get("status_code").is_none())
            .count();
        let logged = spans
            .iter()
            .filter(database)
            .filter(|v| v["level"] == "ERROR")
            .count();
        let seen = spans
            .iter()
            .filter(|v| v["message"] == "HTTP call to database returned 500")
            .count();
        // Half the database's spans throw silently; its callers' client spans record each.
        assert!(silent > 100, "{silent}");
        assert!(logged * 50 < silent, "{logged} {silent}");
        assert!(seen >= silent, "{seen} {silent}");
    }

    #[test]
    fn client_spans_sit_between_caller_and_callee_and_carry_the_network_delay() {
        let spans = client_span_run("network:database@0m+2m*50");
        let by_id: std::collections::HashMap<&str, &serde_json::Value> = spans
            .iter()
            .map(|v| (v["span_id"].as_str().unwrap(), v))
            .collect();
        let ms =
            |v: &serde_json::Value| v["additional_data"]["processing_time_ms"].as_f64().unwrap();
        let mut calls_to_database = 0;
        for v in &spans {
            let Some(parent) = v["parent_span_id"].as_str().and_then(|p| by_id.get(p)) else {
                continue;
            };
            let client = |s: &serde_json::Value| s["additional_data"]["span_kind"] == "client";
            if client(v) {
                // A client span is its caller's, under one of the caller's own spans.
                assert_eq!(v["service"], parent["service"], "{v}");
            } else {
                // Every span of another service hangs under a client span of its caller.
                assert!(client(parent), "{v}");
                assert!(ms(parent) >= ms(v), "{parent} {v}");
                if v["service"] == "database" {
                    calls_to_database += 1;
                    assert!(
                        ms(parent) - ms(v) > 45.0,
                        "the delay is on the wire: {parent} {v}"
                    );
                }
            }
        }
        assert!(calls_to_database > 100, "{calls_to_database}");
    }

    #[test]
    fn logs_are_seed_format_and_time_ordered() {
        let (logs, metrics) = run(short());
        let mut last = i64::MIN;
        let mut services = std::collections::BTreeSet::new();
        for line in logs.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            let ts = parse_rfc3339_micros(v["timestamp"].as_str().unwrap().as_bytes()).unwrap();
            assert!(ts >= last, "out of order");
            last = ts;
            services.insert(v["service"].as_str().unwrap().to_string());
            assert!(v["trace_id"].as_str().unwrap().len() == 24);
            assert!(v["additional_data"].is_object());
        }
        assert_eq!(services.len(), crate::SERVICES.len());
        // 6 services report every 10 s over 120 s inclusive of both ends: 13 samples each.
        let samples = metrics
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        assert_eq!(samples, 13 * (6 * 4 + 1));
    }

    #[test]
    fn a_mesh_sends_traffic_through_every_service_and_its_faults_fail_its_callers() {
        let cfg = Config {
            duration: Duration::from_secs(300),
            rate: 40.0,
            topology: Topology::Mesh(40),
            incidents: vec!["exception:backend-07@150s+150s*0.5".parse().unwrap()],
            client_spans: true,
            ..Config::default()
        };
        cfg.check().unwrap();
        let start = cfg.start_micros;
        let (logs, metrics) = run(cfg);
        let mut services = std::collections::BTreeSet::new();
        let mut spans = Spans::new();
        let mut failed_calls = [0u32; 2];
        for line in logs.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            let service = v["service"].as_str().unwrap().to_string();
            services.insert(service.clone());
            if let Some(id) = v["span_id"].as_str() {
                let parent = v["parent_span_id"].as_str().map(str::to_string);
                spans.insert(id.to_string(), (service, parent));
            }
            // Client spans to the faulty backend, before and during its fault.
            let message = v["message"].as_str().unwrap();
            if message.starts_with("HTTP call to backend-07 returned 500") {
                let ts = parse_rfc3339_micros(v["timestamp"].as_str().unwrap().as_bytes()).unwrap();
                failed_calls[usize::from(ts - start >= 150_000_000)] += 1;
            }
        }
        assert_eq!(services.len(), 40, "{services:?}");
        // The deepest server span: gateway, edge, internal service, backend, database.
        type Spans = std::collections::HashMap<String, (String, Option<String>)>;
        fn depth<'a>(spans: &'a Spans, mut id: &'a str) -> usize {
            let mut hops = std::collections::BTreeSet::new();
            while let Some((service, parent)) = spans.get(id) {
                hops.insert(service.as_str());
                match parent {
                    Some(p) => id = p,
                    None => break,
                }
            }
            hops.len()
        }
        assert_eq!(spans.keys().map(|id| depth(&spans, id)).max(), Some(5));
        // Before it the backend fails at the base rate (and with its database).
        assert!(
            failed_calls[1] > 10 * (failed_calls[0] + 2),
            "{failed_calls:?}"
        );
        // Every service reports its metrics; the databases their connections too.
        let text = String::from_utf8(metrics).unwrap();
        assert!(text.contains("\"service\":\"svc-12\""));
        assert!(text.contains(
            "\"name\":\"db_connections_active\",\"type\":\"gauge\",\"service\":\"db-06\""
        ));
    }

    #[test]
    fn an_incident_on_a_service_the_system_lacks_is_an_error() {
        let cfg = Config {
            incidents: vec!["errors:svc-03@1m+1m".parse().unwrap()],
            ..Config::default()
        };
        assert!(
            cfg.check()
                .unwrap_err()
                .to_string()
                .contains("unknown service `svc-03`")
        );
        let mesh = Config {
            topology: Topology::Mesh(40),
            ..cfg
        };
        mesh.check().unwrap();
    }

    #[test]
    fn an_incident_that_starts_after_the_end_is_an_error() {
        let at = |start: &str| Config {
            incidents: vec![format!("errors:token-service@{start}+15m").parse().unwrap()],
            ..Config::default()
        };
        // The default hour: one starting in its last minute happens (in part), one at its end
        // would not.
        at("59m").check().unwrap();
        let e = at("1h").check().unwrap_err().to_string();
        assert!(
            e.contains("starts at 1h, not within the 1h generated"),
            "{e}"
        );
    }

    #[test]
    fn an_incident_raises_the_error_share_of_the_failing_service_and_its_callers() {
        let cfg = Config {
            duration: Duration::from_secs(600),
            incidents: vec!["errors:token-service@300s+300s*0.5".parse().unwrap()],
            ..Config::default()
        };
        let start = cfg.start_micros;
        let (logs, _) = run(cfg);
        let mut counts = std::collections::HashMap::<(String, bool, bool), u64>::new();
        for line in logs.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            let ts = parse_rfc3339_micros(v["timestamp"].as_str().unwrap().as_bytes()).unwrap();
            let during = ts - start >= 300 * MICROS_PER_SECOND;
            let error = v["level"] == "ERROR";
            *counts
                .entry((v["service"].as_str().unwrap().into(), during, error))
                .or_default() += 1;
        }
        let share = |svc: &str, during: bool| {
            let e = counts
                .get(&(svc.into(), during, true))
                .copied()
                .unwrap_or(0) as f64;
            let ok = counts
                .get(&(svc.into(), during, false))
                .copied()
                .unwrap_or(0) as f64;
            e / (e + ok)
        };
        assert!(share("token-service", false) < 0.02);
        assert!(share("token-service", true) > 0.3);
        assert!(share("api-gateway", true) > share("api-gateway", false) + 0.05);
    }
}
