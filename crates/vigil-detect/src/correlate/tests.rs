use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};

use super::*;
use crate::event::{IncidentView, PendingAnomaly, Status};

const SEC: i64 = 1_000_000;

/// One log record: (time s, level, service, trace, span, parent, duration ms).
type Rec = (
    f64,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<f64>,
);

fn batch(recs: &[Rec]) -> RecordBatch {
    let text = |f: &dyn Fn(&Rec) -> Option<&'static str>| -> ArrayRef {
        Arc::new(StringArray::from_iter(recs.iter().map(f)))
    };
    RecordBatch::try_from_iter([
        (
            "timestamp",
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(
                    recs.iter().map(|r| (r.0 * SEC as f64) as i64),
                )
                .with_timezone("UTC"),
            ) as ArrayRef,
        ),
        ("level", text(&|r| Some(r.1))),
        ("service", text(&|r| Some(r.2))),
        ("trace_id", text(&|r| Some(r.3))),
        ("span_id", text(&|r| Some(r.4))),
        ("parent_span_id", text(&|r| r.5)),
        (
            "processing_time_ms",
            Arc::new(Float64Array::from_iter(recs.iter().map(|r| r.6))) as ArrayRef,
        ),
    ])
    .unwrap()
}

fn assembler() -> Assembler {
    Assembler::new(AssembleConfig {
        timeout: 10 * SEC,
        max_open: 1000,
        duration_column: Some("processing_time_ms".into()),
        status_column: Some("status_code".into()),
    })
}

/// gateway → token → database; the database fails first, then token and gateway.
fn failing_trace(trace: &'static str, at: f64, parents: bool) -> Vec<Rec> {
    let p = |s: &'static str| parents.then_some(s);
    vec![
        (
            at + 0.010,
            "ERROR",
            "database",
            trace,
            "s3",
            p("s2"),
            Some(5.0),
        ),
        (
            at + 0.020,
            "ERROR",
            "token-service",
            trace,
            "s2",
            p("s1"),
            Some(18.0),
        ),
        (
            at + 0.025,
            "ERROR",
            "api-gateway",
            trace,
            "s1",
            None,
            Some(25.0),
        ),
    ]
}

fn names(a: &Assembler, ids: &[u32]) -> Vec<String> {
    ids.iter().map(|&i| a.service_name(i).to_string()).collect()
}

fn closed(a: &mut Assembler, batches: &[Vec<Rec>], watermark: i64) -> Vec<ClosedTrace> {
    let mut out = Vec::new();
    for b in batches {
        a.push(&batch(b), &mut out);
    }
    out.extend(a.close(watermark));
    out
}

#[test]
fn the_deepest_failing_span_is_the_origin() {
    let mut a = assembler();
    let t = closed(&mut a, &[failing_trace("t1", 100.0, true)], 200 * SEC);
    assert_eq!(t.len(), 1);
    assert_eq!(a.service_name(t[0].origin.unwrap()), "database");
    assert_eq!(
        names(&a, &t[0].failing),
        ["database", "token-service", "api-gateway"]
    );
    let calls: Vec<(String, String, bool)> = t[0]
        .calls
        .iter()
        .map(|c| {
            (
                a.service_name(c.caller).to_string(),
                a.service_name(c.callee).to_string(),
                c.failed,
            )
        })
        .collect();
    assert!(calls.contains(&("api-gateway".into(), "token-service".into(), true)));
    assert!(calls.contains(&("token-service".into(), "database".into(), true)));
    assert_eq!(calls.len(), 2);
    // Each service's own time: its span less the span it called.
    let own: Vec<(String, f64)> = t[0]
        .self_ms
        .iter()
        .map(|&(s, ms)| (a.service_name(s).to_string(), ms))
        .collect();
    let expect = [
        ("api-gateway", 7.0),
        ("token-service", 13.0),
        ("database", 5.0),
    ];
    assert_eq!(own.len(), 3, "{own:?}");
    for (service, ms) in expect {
        let got = own.iter().find(|(s, _)| s == service).expect(service).1;
        assert!((got - ms).abs() < 0.01, "{service}: {got} ms, not {ms}");
    }
}

#[test]
fn spans_out_of_order_and_split_across_batches_give_the_same_trace() {
    let mut recs = failing_trace("t1", 100.0, true);
    let mut a = assembler();
    let in_order = closed(&mut a, std::slice::from_ref(&recs), 200 * SEC);
    recs.reverse();
    let mut b = assembler();
    let shuffled = closed(
        &mut b,
        &[vec![recs[0]], vec![recs[2]], vec![recs[1]]],
        200 * SEC,
    );
    assert_eq!(shuffled.len(), 1);
    assert_eq!(
        b.service_name(shuffled[0].origin.unwrap()),
        a.service_name(in_order[0].origin.unwrap())
    );
    assert_eq!(shuffled[0].calls.len(), in_order[0].calls.len());
}

#[test]
fn without_parent_ids_timing_places_the_spans() {
    let mut a = assembler();
    let t = closed(&mut a, &[failing_trace("t1", 100.0, false)], 200 * SEC);
    assert_eq!(a.service_name(t[0].origin.unwrap()), "database");
    assert_eq!(t[0].calls.len(), 2, "{:?}", t[0].calls);
}

#[test]
fn without_any_tree_the_earliest_error_is_the_origin() {
    let mut recs = failing_trace("t1", 100.0, false);
    for r in &mut recs {
        r.6 = None;
    }
    // The gateway's error is logged first this time.
    recs[2].0 = 100.001;
    let mut a = assembler();
    let t = closed(&mut a, &[recs], 200 * SEC);
    assert_eq!(a.service_name(t[0].origin.unwrap()), "api-gateway");
    assert!(t[0].calls.is_empty());
}

#[test]
fn a_trace_waits_for_its_timeout_and_late_records_are_counted() {
    let mut a = assembler();
    let recs = failing_trace("t1", 100.0, true);
    let mut out = Vec::new();
    a.push(&batch(&recs[..2]), &mut out);
    // 100.01 + 10 s timeout: still open at 105 s.
    assert!(a.close(105 * SEC).is_empty());
    a.push(&batch(&recs[2..]), &mut out);
    let t = a.close(111 * SEC);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].failing.len(), 3);
    // A record of the closed trace from before the watermark is late.
    a.push(&batch(&recs[..1]), &mut out);
    assert_eq!(a.late_records(), 1);
    assert_eq!(a.open_traces(), 0);
}

#[test]
fn the_open_trace_cap_closes_the_oldest_early() {
    let mut a = Assembler::new(AssembleConfig {
        max_open: 2,
        ..assembler().config().clone()
    });
    let mut out = Vec::new();
    for (i, t) in ["t1", "t2", "t3"].into_iter().enumerate() {
        a.push(&batch(&failing_trace(t, 100.0 + i as f64, true)), &mut out);
    }
    assert_eq!(a.open_traces(), 2);
    assert_eq!(a.forced_closes(), 1);
    assert_eq!(&*out[0].trace_id, "t1");
}

fn window(start_s: i64, edges: &[(&str, &str)], blame: &[(&str, &str, i64)]) -> WindowEvidence {
    let mut w = WindowEvidence {
        start: start_s * SEC,
        end: (start_s + 60) * SEC,
        ..Default::default()
    };
    for (caller, callee) in edges {
        w.edges.push(evidence::Edge {
            caller: caller.to_string(),
            callee: callee.to_string(),
            calls: 100,
            errors: 0,
            latency_avg_ms: 10.0,
            latency_p95_ms: 20.0,
            latency_max_ms: 30.0,
        });
    }
    for (service, origin, n) in blame {
        w.blame
            .entry(service.to_string())
            .or_default()
            .insert(origin.to_string(), *n);
        if service == origin {
            w.origins
                .entry(origin.to_string())
                .or_default()
                .failing_traces += n;
        }
    }
    w
}

fn event(
    service: &str,
    rule: &str,
    starts_s: i64,
    detected_s: i64,
    status: Status,
) -> AnomalyEvent {
    let fp = crate::rules::fingerprint(rule, service);
    AnomalyEvent {
        id: format!("{fp}-{starts_s}"),
        fingerprint: fp,
        status,
        rule: rule.into(),
        kind: "threshold".into(),
        severity: crate::Severity::P2,
        service: service.into(),
        value: Some(1.0),
        threshold: Some(0.5),
        window: "1m".into(),
        for_: "2m".into(),
        starts_at: starts_s * SEC,
        ends_at: (status == Status::Resolved).then_some(detected_s * SEC),
        detected_at: detected_s * SEC,
        labels: Default::default(),
        annotations: Default::default(),
        incident: None,
    }
}

fn incident(e: &AnomalyEvent) -> IncidentView {
    e.incident.clone().expect("annotated")
}

/// Files one event and returns its incident.
fn filed(inc: &mut Incidents, e: AnomalyEvent) -> IncidentView {
    let mut e = [e];
    inc.annotate(&mut e);
    incident(&e[0])
}

/// Each service's own time (ms, to the µs) in a closed trace.
fn own_times(a: &Assembler, t: &ClosedTrace) -> BTreeMap<String, f64> {
    t.self_ms
        .iter()
        .map(|(s, ms)| {
            (
                a.service_name(*s).to_string(),
                (ms * 1000.0).round() / 1000.0,
            )
        })
        .collect()
}

/// Incidents (10-minute gap) that have seen one quiet window of [`GRAPH`].
fn learned() -> Incidents {
    let mut inc = Incidents::new(600 * SEC);
    inc.observe(&window(0, &GRAPH, &[]));
    inc
}

/// Observes a window of [`GRAPH`] a minute, from minute 1 to `minutes`, with `blame(start)`'s
/// failing traces (by the window's start, in seconds), and files the events detected at each
/// window's end together, as one evaluation of the rules does; the last event filed. Events
/// detected at the same instant must be next to each other in `events`.
fn replay(
    inc: &mut Incidents,
    minutes: i64,
    blame: impl Fn(i64) -> Vec<(&'static str, &'static str, i64)>,
    events: &mut [AnomalyEvent],
) -> Option<AnomalyEvent> {
    let mut last = None;
    for m in 1..=minutes {
        let start = m * 60;
        inc.observe(&window(start, &GRAPH, &blame(start)));
        let now = (start + 60) * SEC;
        let run: Vec<usize> = (0..events.len())
            .filter(|&i| events[i].detected_at == now)
            .collect();
        if let (Some(&a), Some(&b)) = (run.first(), run.last()) {
            inc.annotate(&mut events[a..=b]);
            last = Some(events[b].clone());
        }
    }
    last
}

const GRAPH: [(&str, &str); 5] = [
    ("api-gateway", "auth-service"),
    ("api-gateway", "token-service"),
    ("token-service", "database"),
    ("shop-front", "shop-payments"),
    ("auth-service", "database"),
];

#[test]
fn callers_failing_because_of_a_dependency_share_its_incident() {
    let mut inc = learned();
    inc.observe(&window(
        60,
        &GRAPH,
        &[
            ("database", "database", 40),
            ("token-service", "database", 30),
            ("api-gateway", "database", 38),
        ],
    ));
    let mut events = [
        event("api-gateway", "errors", 60, 180, Status::Firing),
        event("token-service", "errors", 60, 180, Status::Firing),
    ];
    events
        .iter_mut()
        .for_each(|e| inc.annotate(std::slice::from_mut(e)));
    let (a, b) = (incident(&events[0]), incident(&events[1]));
    assert_eq!(a.id, b.id);
    // The database has no anomaly of its own, but the failing traces started there.
    assert_eq!(b.root_cause_service, "database");
    assert!(b.confidence > 0.5, "{b:?}");
    assert_eq!(b.related.len(), 2);
}

#[test]
fn anomalies_detected_at_once_are_one_incident_from_its_first_event() {
    // A caller and its dependency fire in the same evaluation, the caller first in the rules'
    // order, with no failing traces to go by (e.g. latency): the caller's event must not stand
    // alone and name itself.
    let both = || {
        [
            event("api-gateway", "latency", 60, 240, Status::Firing),
            event("token-service", "latency", 60, 240, Status::Firing),
        ]
    };
    let mut inc = learned();
    let mut events = both();
    inc.annotate(&mut events);
    let (a, b) = (incident(&events[0]), incident(&events[1]));
    assert_eq!(a.id, b.id);
    assert_eq!(a.root_cause_service, "token-service", "{a:?}");
    assert_eq!(b.root_cause_service, "token-service");
    assert_eq!(a.related.len(), 2);
    // Filed one by one, the first event could only name the caller.
    let mut alone = learned();
    let mut events = both();
    alone.annotate(std::slice::from_mut(&mut events[0]));
    assert_eq!(incident(&events[0]).root_cause_service, "api-gateway");
}

#[test]
fn the_front_service_failing_on_its_own_is_its_own_root_cause() {
    let mut inc = learned();
    inc.observe(&window(60, &GRAPH, &[("api-gateway", "api-gateway", 50)]));
    let mut events = [
        event("api-gateway", "errors", 60, 180, Status::Firing),
        // Its callee sees less traffic: connected, but not the cause.
        event("token-service", "rate", 120, 300, Status::Firing),
    ];
    events
        .iter_mut()
        .for_each(|e| inc.annotate(std::slice::from_mut(e)));
    let v = incident(&events[1]);
    assert_eq!(v.id, incident(&events[0]).id);
    assert_eq!(v.root_cause_service, "api-gateway");
}

#[test]
fn unrelated_anomalies_at_the_same_time_stay_apart_and_incidents_end() {
    let mut inc = learned();
    let mut events = [
        event("token-service", "errors", 60, 180, Status::Firing),
        event("shop-payments", "errors", 60, 180, Status::Firing),
        // Siblings under the gateway: not connected unless the gateway is in the incident.
        event("auth-service", "latency", 60, 200, Status::Firing),
    ];
    // The first two are detected at once and filed together: still apart.
    inc.annotate(&mut events);
    let ids: Vec<String> = events.iter().map(|e| incident(e).id).collect();
    assert_ne!(ids[0], ids[1]);
    assert_ne!(ids[0], ids[2]);
    assert_eq!(incident(&events[1]).root_cause_service, "shop-payments");
    assert_eq!(inc.open(), 3);
    // The gateway joins the token and auth incidents into one.
    let mut gw = event("api-gateway", "errors", 120, 240, Status::Firing);
    inc.annotate(std::slice::from_mut(&mut gw));
    assert_eq!(incident(&gw).id, ids[0]);
    assert_eq!(inc.open(), 2);
    // Resolved, then the gap passes: the incident ends.
    let mut done = event("shop-payments", "errors", 60, 300, Status::Resolved);
    inc.annotate(std::slice::from_mut(&mut done));
    assert_eq!(incident(&done).id, ids[1]);
    let mut later = event("token-service", "other", 1000, 1000, Status::Firing);
    inc.annotate(std::slice::from_mut(&mut later));
    assert_eq!(
        inc.open(),
        1,
        "shop's incident ended 700 s after it resolved"
    );
}

#[test]
fn a_latency_incident_points_downstream() {
    let mut inc = learned();
    let mut events = [
        event("api-gateway", "latency", 60, 240, Status::Firing),
        event("token-service", "latency", 60, 240, Status::Firing),
    ];
    events
        .iter_mut()
        .for_each(|e| inc.annotate(std::slice::from_mut(e)));
    assert_eq!(incident(&events[1]).root_cause_service, "token-service");
}

#[test]
fn incident_state_survives_a_checkpoint() {
    let mut inc = learned();
    let mut first = event("token-service", "errors", 60, 180, Status::Firing);
    inc.annotate(std::slice::from_mut(&mut first));
    let json = serde_json::to_string(inc.state()).unwrap();
    let mut resumed = Incidents::new(600 * SEC);
    resumed.restore(serde_json::from_str(&json).unwrap());
    let mut gw = event("api-gateway", "errors", 60, 200, Status::Firing);
    resumed.annotate(std::slice::from_mut(&mut gw));
    assert_eq!(incident(&gw).id, incident(&first).id);
}

#[test]
fn a_blip_of_failures_elsewhere_does_not_explain_a_long_latency_incident() {
    let mut inc = learned();
    for m in 1..=10 {
        // Minute 3: a short burst of failing traces starting at the database.
        let blame: &[(&str, &str, i64)] = if m == 3 {
            &[
                ("api-gateway", "database", 40),
                ("token-service", "database", 40),
            ]
        } else {
            &[]
        };
        inc.observe(&window(m * 60, &GRAPH, blame));
    }
    let mut events = [
        event("api-gateway", "latency", 60, 660, Status::Firing),
        event("token-service", "latency", 60, 660, Status::Firing),
    ];
    events
        .iter_mut()
        .for_each(|e| inc.annotate(std::slice::from_mut(e)));
    assert_eq!(incident(&events[1]).root_cause_service, "token-service");
}

/// `w` with each service's own time per trace: 200 traces around `mean` ms (spread 30%).
/// The trace evidence's own alarms over minutes 1 to 66, each minute's window made by
/// `window_at`, with the minute they came at.
fn slow_alarms_over(window_at: impl Fn(i64) -> WindowEvidence) -> Vec<(i64, SlowAlarm)> {
    let mut inc = learned();
    let mut out = Vec::new();
    for m in 1..=66 {
        let w = window_at(m);
        inc.observe(&w);
        out.extend(inc.slow_alarms(&w).into_iter().map(|a| (m, a)));
    }
    out
}

/// Twenty client spans that each added `ms` to their callee's span, as `gap_log` and
/// `edge_gap_log` keep them (`ln(1 + ms)` moments).
fn calls_of(ms: f64) -> evidence::Moments {
    let v = ms.ln_1p();
    evidence::Moments {
        n: 20.0,
        sum: 20.0 * v,
        sumsq: 20.0 * v * v,
    }
}

fn timed(mut w: WindowEvidence, own: &[(&str, f64)]) -> WindowEvidence {
    for &(service, mean) in own {
        let (n, sd) = (200.0, 0.3 * mean);
        w.self_ms.insert(
            service.to_string(),
            evidence::Moments {
                n,
                sum: n * mean,
                sumsq: n * (mean * mean + sd * sd),
            },
        );
    }
    w
}

#[test]
fn latency_is_traced_to_the_service_whose_own_time_grew() {
    // Only the gateway's latency fires; the time was added in the database, which it reaches
    // through the token service. The shop's payments slow down at the same time, but nothing
    // in the incident calls them.
    let usual = [
        ("api-gateway", 2.0),
        ("token-service", 8.0),
        ("database", 3.0),
        ("shop-payments", 20.0),
    ];
    let slow = [
        ("api-gateway", 2.0),
        ("token-service", 8.0),
        ("database", 12.0),
        ("shop-payments", 90.0),
    ];
    // The gateway's latency anomaly from minute 61, seen at 66.
    let gateway = |inc: &mut Incidents| {
        let gw = event("api-gateway", "latency", 61 * 60, 66 * 60, Status::Firing);
        filed(inc, gw)
    };
    let mut inc = learned();
    for m in 1..=65 {
        let own: &[(&str, f64)] = if m > 60 { &slow } else { &usual };
        inc.observe(&timed(window(m * 60, &GRAPH, &[]), own));
    }
    let v = gateway(&mut inc);
    assert_eq!(v.root_cause_service, "database", "{v:?}");
    let added = &v.evidence.self_time_added_ms;
    assert!((added["database"] - 9.0).abs() < 0.01, "{added:?}");
    assert!(!added.contains_key("shop-payments"), "{added:?}");
    assert!(!added.contains_key("token-service"), "{added:?}");
    // Without the usual to compare with, the same windows say nothing.
    let mut fresh = learned();
    for m in 61..=65 {
        fresh.observe(&timed(window(m * 60, &GRAPH, &[]), &slow));
    }
    assert_eq!(gateway(&mut fresh).root_cause_service, "api-gateway");
}

#[test]
fn a_delay_to_a_service_nothing_in_the_wave_calls_is_named_when_it_rose_far() {
    // A network delay to the shop's payments (minutes 61-63: its callers' client spans take
    // a hundred times their usual there) fires nothing of its own; the first anomaly after
    // it is the auth service's latency from minute 65, and auth does not call the shop. The
    // delay, just before the wave and far beyond anything usual, is named; a payments
    // slowdown of five times is not (ordinary slowness elsewhere is no explanation), nor a
    // delay over ten minutes before the wave, nor one that began over five minutes after the
    // wave's anomaly started (filed late, as when detection runs behind).
    let root_of = |rise: f64, from_minute: i64, auth_from: i64| {
        let mut inc = learned();
        for m in 1..=67 {
            let payments = if (from_minute..from_minute + 3).contains(&m) {
                3.0 * rise
            } else {
                3.0
            };
            let own = [
                ("api-gateway", 2.0),
                ("auth-service", 5.0),
                ("shop-front", 4.0),
                ("shop-payments", payments),
            ];
            inc.observe(&timed(window(m * 60, &GRAPH, &[]), &own));
        }
        let auth = event(
            "auth-service",
            "latency",
            auth_from * 60,
            68 * 60,
            Status::Firing,
        );
        filed(&mut inc, auth).root_cause_service
    };
    let root = |rise: f64, from_minute: i64| root_of(rise, from_minute, 65);
    assert_eq!(root(100.0, 61), "shop-payments");
    assert_eq!(root(5.0, 61), "auth-service");
    assert_eq!(root(100.0, 50), "auth-service");
    assert_eq!(root_of(100.0, 61, 55), "auth-service");
    assert_eq!(root_of(100.0, 61, 57), "shop-payments");
}

#[test]
fn a_service_whose_own_time_stands_far_out_for_two_windows_fires_by_itself() {
    // Network delay to the shop's payments in minutes 61-63 (a hundredfold its usual own
    // time, its callers' client spans included): nothing of its own would fire, its spans
    // are no slower. The trace evidence fires at the second window and resolves at the
    // first window back to normal; a single window, or a fivefold rise, fires nothing.
    let alarms = |rise: f64, minutes: std::ops::Range<i64>| {
        slow_alarms_over(|m| {
            let payments = if minutes.contains(&m) {
                3.0 * rise
            } else {
                3.0
            };
            timed(window(m * 60, &GRAPH, &[]), &[("shop-payments", payments)])
        })
    };
    let fired = alarms(100.0, 61..64);
    assert_eq!(fired.len(), 2, "{fired:?}");
    let (at, firing) = &fired[0];
    assert_eq!((*at, firing.service.as_str()), (62, "shop-payments"));
    assert_eq!((firing.since, firing.until), (61 * 60 * SEC, None));
    assert!((firing.rise - 297.0 / 4.0).abs() < 1e-9, "{firing:?}");
    let (at, resolved) = &fired[1];
    assert_eq!((*at, resolved.until), (64, Some(64 * 60 * SEC)));
    assert!(alarms(100.0, 61..62).is_empty());
    assert!(alarms(5.0, 61..64).is_empty());
}

#[test]
fn a_delay_on_the_calls_to_a_service_fires_though_its_time_per_trace_moves_little() {
    // A busy service's own time per trace barely moves when one call in its traces is
    // delayed; the time its callers' client spans add to its spans, call by call, shows the
    // delay undiluted: from 2 ms to 300 ms in minutes 61-63 fires at 62. Twice the usual
    // does not; nor anything in the first minutes, with no history to call usual.
    let alarms = |delayed: f64, minutes: std::ops::Range<i64>| {
        slow_alarms_over(|m| {
            let mut w = timed(window(m * 60, &GRAPH, &[]), &[("shop-payments", 50.0)]);
            let ms = if minutes.contains(&m) { delayed } else { 2.0 };
            w.gap_log.insert("shop-payments".into(), calls_of(ms));
            w
        })
        .into_iter()
        .map(|(m, a)| (m, a.service, a.until))
        .collect::<Vec<_>>()
    };
    let fired = alarms(300.0, 61..64);
    assert_eq!(
        fired,
        [
            (62, "shop-payments".to_string(), None),
            (64, "shop-payments".to_string(), Some(64 * 60 * SEC))
        ]
    );
    assert!(alarms(4.0, 61..64).is_empty());
    assert!(alarms(300.0, 3..6).is_empty());
}

#[test]
fn a_caller_short_of_time_fires_nothing_on_its_callees_a_delay_to_a_callee_fires_on_it() {
    // Minutes 61-63: the time client spans add rises from 2 ms to 300 ms on some calls.
    // Starved: the gateway's calls to all three of its callees (it is slow to send and to
    // take back every call, short of CPU): that is the gateway's, and nothing fires on the
    // callees. Delayed: every caller's calls to the database (a delay on the network to it):
    // that fires on the database. Before edges were told apart, both fired on every callee
    // whose calls slowed.
    let edges = [
        ("api-gateway", "auth-service"),
        ("api-gateway", "token-service"),
        ("api-gateway", "database"),
        ("token-service", "database"),
        ("auth-service", "database"),
        ("auth-service", "token-service"),
    ];
    let fired = |slow: &dyn Fn(&str, &str) -> bool| {
        slow_alarms_over(|m| {
            let mut w = timed(window(m * 60, &GRAPH, &[]), &[("shop-payments", 50.0)]);
            for (caller, callee) in edges {
                let ms = if (61..64).contains(&m) && slow(caller, callee) {
                    300.0
                } else {
                    2.0
                };
                w.gap_log
                    .entry(callee.into())
                    .or_default()
                    .merge(&calls_of(ms));
                w.edge_gap_log
                    .entry(caller.into())
                    .or_default()
                    .insert(callee.into(), calls_of(ms));
            }
            w
        })
        .into_iter()
        .filter(|(_, a)| a.until.is_none())
        .map(|(_, a)| a.service)
        .collect::<BTreeSet<_>>()
    };
    assert_eq!(fired(&|caller, _| caller == "api-gateway"), BTreeSet::new());
    assert_eq!(
        fired(&|_, callee| callee == "database"),
        BTreeSet::from(["database".to_string()])
    );
}

#[test]
fn time_a_starved_caller_adds_to_its_callees_is_evidence_against_the_caller() {
    // Minutes 61-63: the gateway is starved of CPU; its client spans to the auth and token
    // services take 300 ms more, and since a callee's own time includes its callers' client
    // spans to it, both callees' own time rises sixtyfold, the gateway's own spans little.
    // The auth service's latency fires. Starved: every call from the gateway slowed (and
    // only those): the gateway is named. Delayed: the calls to the auth service from every
    // caller slowed (a network delay to it): the auth service is named.
    let root = |starved: bool| {
        let mut inc = learned();
        for m in 1..=64 {
            let hit = (61..64).contains(&m);
            let own = [
                ("api-gateway", 2.0),
                ("auth-service", if hit { 300.0 } else { 5.0 }),
                ("token-service", if hit && starved { 300.0 } else { 8.0 }),
                ("database", 3.0),
            ];
            let mut w = timed(window(m * 60, &GRAPH, &[]), &own);
            for (caller, callee) in [
                ("api-gateway", "auth-service"),
                ("api-gateway", "token-service"),
                ("api-gateway", "database"),
                ("token-service", "auth-service"),
            ] {
                let slow = hit
                    && if starved {
                        caller == "api-gateway"
                    } else {
                        callee == "auth-service"
                    };
                w.edge_gap_log
                    .entry(caller.into())
                    .or_default()
                    .insert(callee.into(), calls_of(if slow { 300.0 } else { 2.0 }));
            }
            inc.observe(&w);
        }
        let auth = event("auth-service", "latency", 62 * 60, 64 * 60, Status::Firing);
        filed(&mut inc, auth).root_cause_service
    };
    assert_eq!(root(true), "api-gateway");
    assert_eq!(root(false), "auth-service");
}

#[test]
fn a_fault_still_pending_explains_what_fired() {
    // The gateway's own time rises from minute 61 (CPU starved): its latency rule holds but
    // its `for` has not passed. What fires is the token service's request rate, which falls
    // because the gateway forwards less. The token service does not call the gateway, so
    // without the pending anomaly the gateway is not even a candidate.
    let usual = [
        ("api-gateway", 2.0),
        ("token-service", 8.0),
        ("database", 3.0),
    ];
    let slow = [
        ("api-gateway", 30.0),
        ("token-service", 8.0),
        ("database", 3.0),
    ];
    let fired = |inc: &mut Incidents| {
        let rate = event(
            "token-service",
            "request rate",
            62 * 60,
            64 * 60,
            Status::Firing,
        );
        filed(inc, rate)
    };
    let run = |pending: Vec<PendingAnomaly>| {
        let mut inc = learned();
        for m in 1..=63 {
            let own: &[(&str, f64)] = if m > 60 { &slow } else { &usual };
            inc.observe(&timed(window(m * 60, &GRAPH, &[]), own));
        }
        inc.set_pending(pending, 64 * 60 * SEC);
        fired(&mut inc)
    };
    let gateway = PendingAnomaly {
        service: "api-gateway".into(),
        since: 61 * 60 * SEC,
        rule: "latency".into(),
    };
    let v = run(vec![gateway.clone()]);
    assert_eq!(v.root_cause_service, "api-gateway", "{v:?}");
    assert_eq!(
        v.services,
        ["token-service"],
        "pending is evidence, not a member"
    );
    assert_eq!(run(Vec::new()).root_cause_service, "token-service");
    // Pending in an unconnected service, or long before the wave, it is not evidence.
    let far = PendingAnomaly {
        service: "shop-front".into(),
        ..gateway.clone()
    };
    assert_eq!(run(vec![far]).root_cause_service, "token-service");
    let old = PendingAnomaly {
        since: 50 * 60 * SEC,
        ..gateway
    };
    assert_eq!(run(vec![old]).root_cause_service, "token-service");
}

/// One trace of `n` spans, each the child of the one before: span `i` on service `s{i % 3}`
/// (or one of `services` distinct services, when given), one record each.
fn chain(trace: &str, n: usize, services: usize) -> RecordBatch {
    let ids: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    let names: Vec<String> = (0..n).map(|i| format!("svc-{}", i % services)).collect();
    RecordBatch::try_from_iter([
        (
            "timestamp",
            Arc::new(
                TimestampMicrosecondArray::from_iter_values((0..n).map(|i| 100 * SEC + i as i64))
                    .with_timezone("UTC"),
            ) as ArrayRef,
        ),
        (
            "level",
            Arc::new(StringArray::from(vec!["INFO"; n])) as ArrayRef,
        ),
        (
            "service",
            Arc::new(StringArray::from_iter_values(&names)) as ArrayRef,
        ),
        (
            "trace_id",
            Arc::new(StringArray::from(vec![trace; n])) as ArrayRef,
        ),
        (
            "span_id",
            Arc::new(StringArray::from_iter_values(&ids)) as ArrayRef,
        ),
        (
            "parent_span_id",
            Arc::new(StringArray::from_iter(
                (0..n).map(|i| i.checked_sub(1).map(|p| ids[p].as_str())),
            )) as ArrayRef,
        ),
        (
            "processing_time_ms",
            Arc::new(Float64Array::from(vec![1.0; n])) as ArrayRef,
        ),
    ])
    .unwrap()
}

#[test]
fn a_trace_holds_at_most_its_cap_of_spans_and_counts_the_rest() {
    let mut a = assembler();
    let mut out = Vec::new();
    a.push(
        &chain("deep", assemble::MAX_SPANS_PER_TRACE + 2_500, 3),
        &mut out,
    );
    assert_eq!(a.dropped_spans(), 2_500);
    let closed = a.close(i64::MAX);
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].self_ms.len(), 3, "the spans kept are assembled");
}

#[test]
fn services_beyond_the_cap_share_one_name() {
    let mut a = assembler();
    let mut out = Vec::new();
    a.push(
        &chain("wide", assemble::MAX_SERVICES + 50, usize::MAX),
        &mut out,
    );
    a.close(i64::MAX);
    assert_eq!(a.other_service_records(), 50);
}

#[test]
fn span_depths_take_one_step_per_span_even_on_a_deep_chain() {
    // A quadratic walk would take 5·10¹¹ steps here; the linear one is instant.
    let n = 1_000_000;
    let parent: Vec<Option<usize>> = (0..n).map(|i| (i + 1 < n).then_some(i + 1)).collect();
    let mut depth = Vec::new();
    assemble::depths(&parent, &mut depth);
    assert!(depth.iter().enumerate().all(|(i, &d)| d == n - 1 - i));
    // Parent links that loop (bad input) end the walk instead of looping with it.
    let parent = vec![Some(1), Some(2), Some(0), Some(0)];
    assemble::depths(&parent, &mut depth);
    assert_eq!(depth.len(), 4);
    assert!(depth[..3].iter().all(|&d| d < 3), "{depth:?}");
    assert_eq!(depth[3], depth[0] + 1);
}

/// The gateway's entry span (s1) calls the auth service (s3) through a client span (s2): their
/// levels and durations (ms), in that order of records (callee first, as spans end).
fn gateway_calls_auth(levels: [&'static str; 3], ms: [f64; 3]) -> Vec<Rec> {
    vec![
        (
            100.044,
            levels[0],
            "auth-service",
            "t",
            "s3",
            Some("s2"),
            Some(ms[0]),
        ),
        // The client span's parent is the gateway's entry span, in the same service.
        (
            100.045,
            levels[1],
            "api-gateway",
            "t",
            "s2",
            Some("s1"),
            Some(ms[1]),
        ),
        (
            100.050,
            levels[2],
            "api-gateway",
            "t",
            "s1",
            None,
            Some(ms[2]),
        ),
    ]
}

#[test]
fn the_time_a_client_span_adds_to_its_callee_counts_on_the_callee_side() {
    // The gateway's client span (s2) takes 40 ms for a call the auth service served in 10:
    // 30 ms of network (a delay injected at auth-service's side) are auth-service's, not the
    // gateway's own time.
    let mut a = assembler();
    let mut out = Vec::new();
    let recs = gateway_calls_auth(["INFO"; 3], [10.0, 40.0, 50.0]);
    a.push(&batch(&recs), &mut out);
    let closed = a.close(i64::MAX);
    let own = own_times(&a, &closed[0]);
    assert_eq!(own["auth-service"], 40.0, "{own:?}");
    assert_eq!(own["api-gateway"], 10.0, "{own:?}");
    // And, call by call, the time the client span added to the callee's span.
    let gaps: Vec<(Option<&str>, &str, f64)> = closed[0]
        .gaps
        .iter()
        .map(|&(c, s, ms)| (c.map(|c| a.service_name(c)), a.service_name(s), ms))
        .collect();
    assert_eq!(gaps, [(Some("api-gateway"), "auth-service", 30.0)]);
}

#[test]
fn a_failing_client_span_whose_callee_logged_nothing_points_at_the_callee() {
    // The gateway's client span (s2) to the auth service failed; the auth service's span
    // (s3) says nothing went wrong (no status, INFO): it threw without logging. The origin
    // is the auth service. Had the auth service logged its failure, it would be anyway; had
    // the gateway's entry span (no client span in between) failed alone, the gateway is.
    let trace = |auth: &'static str, client: &'static str| {
        gateway_calls_auth([auth, client, "ERROR"], [10.0, 12.0, 20.0])
    };
    let origin = |recs: Vec<Rec>| {
        let mut a = assembler();
        let mut out = Vec::new();
        a.push(&batch(&recs), &mut out);
        let closed = a.close(i64::MAX);
        closed[0].origin.map(|o| a.service_name(o).to_string())
    };
    assert_eq!(
        origin(trace("INFO", "ERROR")).as_deref(),
        Some("auth-service")
    );
    assert_eq!(
        origin(trace("ERROR", "ERROR")).as_deref(),
        Some("auth-service")
    );
    assert_eq!(
        origin(trace("INFO", "INFO")).as_deref(),
        Some("api-gateway")
    );
}

#[test]
fn a_duration_longer_than_time_since_the_epoch_does_not_overflow() {
    // A record from before 1970 with an absurd duration: the span starts at the earliest
    // time there is, and the trace closes.
    let mut a = assembler();
    let mut out = Vec::new();
    let recs: Vec<Rec> = vec![(-100.0, "INFO", "api-gateway", "t", "s1", None, Some(1e300))];
    a.push(&batch(&recs), &mut out);
    assert_eq!(a.close(i64::MAX).len(), 1);
}

#[test]
fn calls_made_concurrently_count_once_against_the_callers_own_time() {
    // The gateway (100 ms) calls three services at once, each for 40 ms, from 20 ms on, then
    // one more from 70 to 80 ms: 50 ms are covered by calls, 50 are its own. Summing the
    // calls (130 ms) would leave it no own time at all.
    let mut a = assembler();
    let mut out = Vec::new();
    let mut recs: Vec<Rec> = ["auth-service", "deals-service", "user-service"]
        .into_iter()
        .zip(["s2", "s3", "s4"])
        .map(|(service, span)| (100.060, "INFO", service, "t", span, Some("s1"), Some(40.0)))
        .collect();
    recs.push((
        100.080,
        "INFO",
        "auth-service",
        "t",
        "s5",
        Some("s1"),
        Some(10.0),
    ));
    recs.push((100.100, "INFO", "api-gateway", "t", "s1", None, Some(100.0)));
    a.push(&batch(&recs), &mut out);
    let closed = a.close(i64::MAX);
    let own = own_times(&a, &closed[0]);
    assert_eq!(own["api-gateway"], 50.0, "{own:?}");
    assert_eq!(own["auth-service"], 50.0, "{own:?}");
}

#[test]
fn a_service_failing_steadily_does_not_take_the_blame_for_a_new_fault() {
    // The gateway fails steadily (10 failing traces a minute, starting there) and its
    // error rule flaps all along: fires for two minutes, quiet for four, fires again. That
    // keeps one incident open for hours. At minute 100 the database starts failing and
    // token-service's rule fires, joining the gateway's incident (the gateway calls it):
    // judged by the incident's whole life, the gateway's steady failures outnumber the
    // database's; judged by what changed in the new wave against the
    // hour before it, the database is the root.
    let mut inc = learned();
    let mut events: Vec<AnomalyEvent> = Vec::new();
    for k in 0..17 {
        let start = 60 + k * 360;
        events.push(event(
            "api-gateway",
            "errors",
            start,
            start + 60,
            Status::Firing,
        ));
        events.push(event(
            "api-gateway",
            "errors",
            start,
            start + 120,
            Status::Resolved,
        ));
    }
    events.push(event("token-service", "errors", 6000, 6120, Status::Firing));
    let blame = |start| {
        let mut blame = vec![("api-gateway", "api-gateway", 10)];
        if (6000..6300).contains(&start) {
            blame.extend([
                ("database", "database", 40),
                ("token-service", "database", 30),
                ("api-gateway", "database", 35),
            ]);
        }
        blame
    };
    let token = replay(&mut inc, 103, blame, &mut events).expect("token-service's event");
    assert_eq!(token.service, "token-service");
    let view = incident(&token);
    assert_eq!(
        view.related.len(),
        2,
        "joined the gateway's incident: {view:?}"
    );
    assert_eq!(view.root_cause_service, "database", "{view:?}");
}

#[test]
fn an_incident_s_earlier_wave_is_not_the_usual_its_next_wave_is_judged_against() {
    // The database fails for twenty minutes (30 failing traces a minute, starting there, seen
    // by token-service and the gateway), both their rules fire and resolve. Seven minutes
    // later, inside the incident's gap, it fails again, half as hard, and the gateway fires
    // again: a new wave of the same incident. Judged against an hour that holds the first
    // wave, 15 failures a minute are less than usual; against the quiet time, they are the
    // database's.
    let mut inc = learned();
    let mut events = [
        event("token-service", "errors", 60, 180, Status::Firing),
        event("api-gateway", "errors", 60, 180, Status::Firing),
        event("token-service", "errors", 60, 1260, Status::Resolved),
        event("api-gateway", "errors", 60, 1260, Status::Resolved),
        event("api-gateway", "errors", 1680, 1800, Status::Firing),
    ];
    let blame = |start| {
        let failing = match start {
            60..1260 => 30,
            1680..1860 => 15,
            _ => 0,
        };
        vec![
            ("database", "database", failing),
            ("token-service", "database", failing),
            ("api-gateway", "database", failing),
        ]
    };
    let again = replay(&mut inc, 30, blame, &mut events).expect("the gateway's second firing");
    assert_eq!(again.starts_at, 1680 * SEC);
    let view = incident(&again);
    assert_eq!(view.related.len(), 2, "both rules, one incident: {view:?}");
    assert_eq!(view.root_cause_service, "database", "{view:?}");
    assert!(
        view.evidence.error_origins.contains_key("database"),
        "{view:?}"
    );
}

#[test]
fn an_anomaly_joining_a_fault_still_firing_is_judged_with_that_fault() {
    // auth-service is down from minute 1 (its failing traces and the gateway's start there);
    // eight minutes in, a one-minute burst of token-service errors joins the incident. The
    // outage is still firing: the burst belongs to its wave, and auth-service stays the root.
    let mut inc = learned();
    let mut events = [
        event("auth-service", "errors", 60, 180, Status::Firing),
        event("api-gateway", "errors", 60, 180, Status::Firing),
        event("token-service", "errors", 540, 660, Status::Firing),
    ];
    let blame = |start| {
        let mut blame = vec![
            ("auth-service", "auth-service", 30),
            ("api-gateway", "auth-service", 25),
        ];
        if start == 540 {
            blame.extend([
                ("token-service", "token-service", 40),
                ("api-gateway", "token-service", 30),
            ]);
        }
        blame
    };
    let token = replay(&mut inc, 11, blame, &mut events).expect("token-service's event");
    assert_eq!(token.service, "token-service");
    let view = incident(&token);
    assert_eq!(view.related.len(), 3, "{view:?}");
    assert_eq!(view.root_cause_service, "auth-service", "{view:?}");
}

#[test]
fn a_saturated_service_is_the_root_cause_of_what_it_slows() {
    // The database's CPU saturates from minute 61 (its rule watches a cause). The time it
    // costs shows up as the token service's own time (waiting on a starved connection pool),
    // so the traces alone point at the token service; the saturation names the database,
    // and keeps naming it once the CPU is back to normal while the slowness lasts.
    let usual = [("token-service", 8.0), ("database", 3.0)];
    let slow = [("token-service", 30.0), ("database", 3.0)];
    let run = |causes: &[&str]| {
        let mut inc = learned();
        inc.set_causes(causes.iter().map(|c| c.to_string()).collect());
        let mut views = Vec::new();
        let events = [
            event("database", "cpu", 61 * 60, 62 * 60, Status::Firing),
            event("token-service", "latency", 61 * 60, 64 * 60, Status::Firing),
            event("database", "cpu", 61 * 60, 65 * 60, Status::Resolved),
            event(
                "token-service",
                "latency",
                61 * 60,
                67 * 60,
                Status::Resolved,
            ),
        ];
        for m in 1..=66 {
            let own: &[(&str, f64)] = if m > 60 { &slow } else { &usual };
            inc.observe(&timed(window(m * 60, &GRAPH, &[]), own));
            for e in events
                .iter()
                .filter(|e| e.detected_at == (m + 1) * 60 * SEC)
            {
                views.push(filed(&mut inc, e.clone()));
            }
        }
        views
    };
    let traced = run(&[]);
    assert_eq!(traced[1].root_cause_service, "token-service", "{traced:?}");
    let saturated = run(&["cpu"]);
    assert_eq!(saturated.len(), 4);
    for v in &saturated {
        assert_eq!(v.root_cause_service, "database", "{v:?}");
    }
    assert_eq!(saturated[0].id, saturated[3].id, "one incident");
}

#[test]
fn the_cause_active_last_explains_the_wave() {
    // The database's CPU spiked for a minute and recovered; three minutes later the token
    // service's saturates and the gateway slows. Both causes are in the wave, and the
    // database, called by both others and first, would win on dependency and timing; the
    // cause still active explains the wave.
    let mut inc = learned();
    inc.set_causes(BTreeSet::from(["cpu".to_string()]));
    for m in 1..=66 {
        inc.observe(&window(m * 60, &GRAPH, &[]));
    }
    let events = [
        event("database", "cpu", 60 * 60, 61 * 60, Status::Firing),
        event("database", "cpu", 60 * 60, 62 * 60, Status::Resolved),
        event("token-service", "cpu", 64 * 60, 65 * 60, Status::Firing),
        event("api-gateway", "latency", 64 * 60, 66 * 60, Status::Firing),
    ];
    let views: Vec<IncidentView> = events.into_iter().map(|e| filed(&mut inc, e)).collect();
    assert_eq!(views[0].root_cause_service, "database");
    assert_eq!(views[0].id, views[3].id, "one incident");
    assert_eq!(
        views[3].root_cause_service, "token-service",
        "{:?}",
        views[3]
    );
}

#[test]
fn a_saturation_over_before_its_for_still_explains_what_fires_after() {
    // The database's CPU is saturated from minute 61 to 63, shorter than its rule's `for`: it
    // never fires, it is only pending. The token service's latency fires at minute 66, when
    // nothing is pending any more; the saturation seen pending is remembered as its cause.
    let usual = [("token-service", 8.0), ("database", 3.0)];
    let slow = [("token-service", 30.0), ("database", 3.0)];
    let run = |cause: bool| {
        let mut inc = learned();
        if cause {
            inc.set_causes(BTreeSet::from(["cpu".to_string()]));
        }
        for m in 1..=65 {
            let own: &[(&str, f64)] = if m > 60 { &slow } else { &usual };
            inc.observe(&timed(window(m * 60, &GRAPH, &[]), own));
            let cpu = PendingAnomaly {
                service: "database".into(),
                since: 61 * 60 * SEC,
                rule: "cpu".into(),
            };
            let pending = if (62..=64).contains(&m) {
                vec![cpu]
            } else {
                Vec::new()
            };
            inc.set_pending(pending, m * 60 * SEC);
        }
        let latency = event("token-service", "latency", 62 * 60, 66 * 60, Status::Firing);
        filed(&mut inc, latency)
    };
    assert_eq!(run(false).root_cause_service, "token-service");
    let v = run(true);
    assert_eq!(v.root_cause_service, "database", "{v:?}");
    assert_eq!(v.services, ["token-service"], "remembered, not a member");
}

#[test]
fn traces_closed_on_other_replicas_give_the_same_evidence_and_count_once() {
    // Two replicas each assemble their own traces (keyed by trace id); a third files both.
    let cfg = crate::CorrelationConfig {
        duration_column: "processing_time_ms".into(),
        ..Default::default()
    };
    let mut traces: Vec<Vec<Rec>> = ["t1", "t2", "t3", "t4"]
        .iter()
        .enumerate()
        .map(|(i, t)| failing_trace(t, 1.0 + i as f64, true))
        .collect();
    // And one with a client span: what it adds is kept per caller and callee.
    traces.push(gateway_calls_auth(["INFO"; 3], [10.0, 40.0, 50.0]));
    let end = 3_600 * SEC;
    let mut one = Correlator::new(&cfg);
    for t in &traces {
        one.push(&batch(t));
    }
    let whole = one.advance(end);

    let (mut a, mut b) = (Correlator::new(&cfg), Correlator::new(&cfg));
    // Replica b learns the services in another order: numbers differ, names do not.
    for (i, t) in traces.iter().enumerate().rev() {
        let replica = if i % 2 == 0 { &mut a } else { &mut b };
        replica.push(&batch(t));
    }
    let (from_a, from_b) = (a.hand_on(end), b.hand_on(end));
    assert_eq!(from_a.traces.len() + from_b.traces.len(), 5);
    let from_b_len = from_b.traces.len() as u64;
    let mut merged = Correlator::new(&cfg);
    merged.receive(from_b.clone());
    merged.receive(from_a);
    // b's traces again, as after its replica died before the archive had their records.
    merged.receive(from_b);
    assert_eq!(merged.repeated_traces(), from_b_len);
    // Samples are the first traces to arrive, which differs between the two: all else is
    // the same.
    let samples_apart = |mut w: Vec<WindowEvidence>| {
        for w in &mut w {
            for o in w.origins.values_mut() {
                o.samples.sort();
            }
            for s in w.slowest.values_mut() {
                s.1.clear();
            }
        }
        w
    };
    let split = samples_apart(merged.advance(end));
    assert_eq!(split, samples_apart(whole));
    assert_eq!(split[0].origins["database"].failing_traces, 4);
    let gap = split
        .iter()
        .find_map(|w| w.edge_gap_log.get("api-gateway")?.get("auth-service"))
        .expect("the client span's time, by caller and callee");
    assert_eq!((gap.n, gap.mean()), (1.0, 30f64.ln_1p()));
}

#[test]
fn assembling_from_its_log_columns_alone_gives_the_same_traces() {
    // Traces with and without parent ids, a failure only a status code shows, and columns
    // traces do not need (message, user, span kind, the JSON rest).
    let mut recs = failing_trace("t1", 1.0, true);
    recs.extend(failing_trace("t2", 1.5, false));
    recs.extend(gateway_calls_auth(
        ["INFO", "INFO", "INFO"],
        [40.0, 30.0, 25.0],
    ));
    let base = batch(&recs);
    let n = base.num_rows();
    let status: ArrayRef = Arc::new(arrow::array::Int32Array::from_iter(
        (0..n).map(|i| Some(if i == n - 1 { 503 } else { 200 })),
    ));
    let text = |v: &str| -> ArrayRef { Arc::new(StringArray::from_iter_values((0..n).map(|_| v))) };
    let schema = base.schema();
    let mut columns: Vec<(&str, ArrayRef)> = schema
        .fields()
        .iter()
        .zip(base.columns())
        .map(|(f, c)| (f.name().as_str(), Arc::clone(c)))
        .collect();
    columns.extend([
        ("status_code", status),
        ("message", text("ERROR in a message")),
        ("user_id", text("u1")),
        ("span_kind", text("client")),
        ("additional_data", text(r#"{"level":"ERROR"}"#)),
    ]);
    let whole = RecordBatch::try_from_iter(columns.iter().cloned()).unwrap();
    let a = assembler();
    let cfg = a.config();
    let read = assemble::log_columns(
        cfg.duration_column.as_deref().unwrap(),
        cfg.status_column.as_deref().unwrap(),
    );
    let only = RecordBatch::try_from_iter(
        columns
            .iter()
            .filter(|(name, _)| read.contains(name))
            .cloned(),
    )
    .unwrap();
    assert!(only.num_columns() < whole.num_columns());
    let traces = |b: &RecordBatch| {
        let mut a = assembler();
        let mut out = Vec::new();
        a.push(b, &mut out);
        out.extend(a.close(i64::MAX));
        out.sort_by(|x, y| x.trace_id.cmp(&y.trace_id));
        out
    };
    let from_whole = traces(&whole);
    assert_eq!(from_whole.len(), 3);
    assert!(
        from_whole
            .iter()
            .any(|t| &*t.trace_id == "t" && t.origin.is_some()),
        "the status code makes the gateway's trace fail: {from_whole:?}"
    );
    assert_eq!(traces(&only), from_whole);
}

#[test]
fn edges_are_what_the_sql_aggregate_gives() {
    // Calls between services of one window, skewed latencies (so the percentile is a
    // t-digest's estimate over compressed centroids, not a value it kept), some failing; the
    // edges are held to the aggregate DataFusion computed them with before: the same counts,
    // the same sums in the same order, the same t-digest.
    use arrow::array::AsArray;
    use datafusion::prelude::SessionContext;
    let names = ["api", "auth", "db", "cache", "zeta"];
    let mut rng = crate::testing::Xorshift(0x2545_f491_4f6c_dd1d);
    let mut next = || rng.next_u64();
    let mut evidence = Evidence::new(60 * SEC, 10 * SEC);
    let mut rows: Vec<(&str, &str, f64, bool)> = Vec::new();
    let mut traces = Vec::new();
    for i in 0..3_000 {
        let mut calls = Vec::new();
        for _ in 0..1 + next() % 4 {
            let (caller, callee) = ((next() % 5) as u32, (next() % 5) as u32);
            let u = (next() % 1_000_000) as f64 / 1_000_000.0;
            let latency_ms = (-u.max(1e-9).ln() * 20.0 * (1 + callee) as f64).round() / 4.0;
            let failed = next() % 17 == 0;
            rows.push((
                names[caller as usize],
                names[callee as usize],
                latency_ms,
                failed,
            ));
            calls.push(assemble::Call {
                caller,
                callee,
                latency_ms,
                failed,
            });
        }
        traces.push(ClosedTrace {
            trace_id: format!("t{i}").into(),
            time: i * 10_000,
            calls,
            origin: None,
            failing: Vec::new(),
            self_ms: Vec::new(),
            gaps: Vec::new(),
        });
    }
    evidence.add(traces);
    let windows = evidence.finalise(3_600 * SEC, &|id| names[id as usize].to_string());
    assert_eq!(windows.len(), 1);

    let calls = RecordBatch::try_from_iter([
        (
            "caller",
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef,
        ),
        (
            "callee",
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
        ),
        (
            "latency_ms",
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ),
        (
            "failed",
            Arc::new(arrow::array::BooleanArray::from_iter(
                rows.iter().map(|r| Some(r.3)),
            )),
        ),
    ])
    .unwrap();
    let sql = "SELECT caller, callee, count(*) AS calls, \
         sum(CASE WHEN failed THEN 1 ELSE 0 END) AS errors, avg(latency_ms), \
         approx_percentile_cont(latency_ms, 0.95), max(latency_ms) \
         FROM calls GROUP BY caller, callee ORDER BY caller, callee";
    let expected = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(async {
            let ctx = SessionContext::new();
            ctx.register_batch("calls", calls).unwrap();
            ctx.sql(sql).await.unwrap().collect().await.unwrap()
        });
    let expected = arrow::compute::concat_batches(&expected[0].schema(), &expected).unwrap();
    let text = |i: usize| expected.column(i).as_string::<i32>().clone();
    let int = |i: usize| {
        arrow::compute::cast(expected.column(i), &arrow::datatypes::DataType::Int64)
            .unwrap()
            .as_primitive::<arrow::datatypes::Int64Type>()
            .clone()
    };
    let float = |i: usize| {
        expected
            .column(i)
            .as_primitive::<arrow::datatypes::Float64Type>()
            .clone()
    };
    let want: Vec<evidence::Edge> = (0..expected.num_rows())
        .map(|r| evidence::Edge {
            caller: text(0).value(r).to_string(),
            callee: text(1).value(r).to_string(),
            calls: int(2).value(r),
            errors: int(3).value(r),
            latency_avg_ms: float(4).value(r),
            latency_p95_ms: float(5).value(r),
            latency_max_ms: float(6).value(r),
        })
        .collect();
    assert_eq!(want.len(), 25, "every pair of five services");
    assert!(want.iter().any(|e| e.calls > 300), "edges with many calls");
    assert_eq!(windows[0].edges, want);
}
