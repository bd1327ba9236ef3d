use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Float64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use vigil_core::time::format_rfc3339;

use super::*;
use crate::spec::{Condition, Severity};

const MIN: i64 = 60_000_000;
const T0: i64 = 1_748_854_800_000_000; // 2025-06-02T09:00:00Z

fn spec(name: &str, signal: &str, window: u64, hop: u64, condition: (&str, f64)) -> RuleSpec {
    RuleSpec {
        name: name.into(),
        table: RecordKind::Metrics,
        window: Duration::from_secs(window),
        hop: Duration::from_secs(hop),
        signal: signal.into(),
        filter: None,
        reads: None,
        cause: false,
        condition: Condition::Threshold {
            comparison: condition.0.parse().unwrap(),
            threshold: condition.1,
        },
        no_data: None,
        for_: Duration::ZERO,
        keep_firing_for: Duration::ZERO,
        severity: Severity::P3,
        annotations: BTreeMap::new(),
        labels: BTreeMap::new(),
    }
}

fn batch(rows: &[(i64, &str, f64)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("service", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.0))
                    .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ],
    )
    .unwrap()
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

/// Deterministic pseudo-random values (xorshift), for rows no test can tune to.
fn noise(n: usize, seed: u64) -> Vec<f64> {
    let mut x = crate::testing::Xorshift(seed | 1);
    (0..n)
        .map(|_| (x.next_u64() % 10_000) as f64 / 10.0)
        .collect()
}

/// (window start, service, value) of the firing events.
fn values_of(events: &[AnomalyEvent]) -> Vec<(i64, String, f64)> {
    events
        .iter()
        .filter(|e| e.status == crate::Status::Firing)
        .map(|e| (e.starts_at, e.service.clone(), e.value.unwrap()))
        .collect()
}

#[test]
fn folded_partial_states_give_the_same_signal_as_one_query_over_all_rows() {
    // 3 services, 20 000 rows over one minute, pushed in bites of 1 000 and folded every
    // 2 500 rows: many partial states per window must merge to the whole-window value.
    let values = noise(20_000, 7);
    let services = ["a", "b", "c"];
    let rows: Vec<(i64, &str, f64)> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| (T0 + (i as i64 * 3_000) % MIN, services[i % 3], v))
        .collect();
    let signal = "sum(value) / count(*) + max(value) - min(value) + count(DISTINCT value)";
    let mut specs = vec![spec("mix", signal, 60, 60, (">", -1e18))];
    specs.push(spec(
        "p95",
        "approx_percentile_cont(value, 0.95)",
        60,
        60,
        (">", -1e18),
    ));
    let mut folded = WindowedRules::new(&specs).with_fold_rows(2_500);
    let mut whole = WindowedRules::new(&specs).with_fold_rows(usize::MAX);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    run(async {
        for chunk in rows.chunks(1_000) {
            folded.push(RecordKind::Metrics, &batch(chunk));
            whole.push(RecordKind::Metrics, &batch(chunk));
            a.extend(folded.advance(T0).await.unwrap());
            assert!(folded.raw_rows() < 2_500 + 1_000, "raw rows are folded");
        }
        assert!(
            folded.state_rows() >= 6 * 2,
            "several partial states per service"
        );
        a.extend(folded.advance(T0 + MIN).await.unwrap());
        b.extend(whole.advance(T0 + MIN).await.unwrap());
    });
    assert_eq!(a.len(), 6, "{a:?}");
    assert_eq!(values_of(&a).len(), values_of(&b).len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (&x.rule, &x.service, &x.starts_at),
            (&y.rule, &y.service, &y.starts_at)
        );
        let p95 = x.rule == "p95";
        let (x, y) = (x.value.unwrap(), y.value.unwrap());
        // A t-digest merged from parts is within its error of one built at once; the
        // other aggregates are exact.
        let tolerance = if p95 { 0.02 } else { 1e-9 } * y.abs();
        assert!((x - y).abs() <= tolerance, "{x} vs {y}");
    }
    // And the exact signal matches arithmetic done here.
    let a_rows: Vec<f64> = rows.iter().filter(|r| r.1 == "a").map(|r| r.2).collect();
    let mean = a_rows.iter().sum::<f64>() / a_rows.len() as f64;
    let max = a_rows.iter().cloned().fold(f64::MIN, f64::max);
    let min = a_rows.iter().cloned().fold(f64::MAX, f64::min);
    let mut distinct = a_rows.clone();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    let mix_a = a
        .iter()
        .find(|e| e.rule == "mix" && e.service == "a")
        .and_then(|e| e.value)
        .unwrap();
    let expected = mean + max - min + distinct.len() as f64;
    assert!((mix_a - expected).abs() < 1e-6, "{mix_a} vs {expected}");
}

#[test]
fn a_tumbling_window_from_its_rows_is_what_folding_then_finishing_gives_exactly() {
    // The usual close (a tumbling window, nothing folded yet) runs the rule's plan once
    // over the rows; folding them into one partial state first and finishing from it must
    // give the same values to the bit, the percentile's t-digest included.
    let values = noise(6_000, 11);
    let services = ["a", "b", "c", "d"];
    let rows: Vec<(i64, &str, f64)> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| (T0 + (i as i64 * 9_973) % MIN, services[i % 4], v))
        .collect();
    let specs = [
        spec("avg", "avg(value)", 60, 60, (">", -1e18)),
        spec(
            "p95",
            "approx_percentile_cont(value, 0.95)",
            60,
            60,
            (">", -1e18),
        ),
        spec("n", "count(*)", 60, 60, (">", -1e18)),
    ];
    let mut direct = WindowedRules::new(&specs);
    let mut folded = WindowedRules::new(&specs).with_fold_rows(rows.len());
    let (a, b) = run(async {
        for chunk in rows.chunks(1_500) {
            direct.push(RecordKind::Metrics, &batch(chunk));
            folded.push(RecordKind::Metrics, &batch(chunk));
        }
        assert!(direct.advance(T0).await.unwrap().is_empty());
        assert!(folded.advance(T0).await.unwrap().is_empty());
        assert_eq!(
            direct.state_rows(),
            0,
            "nothing folded: closed from the rows"
        );
        assert_eq!(folded.state_rows(), 3 * 4, "one state per rule and service");
        (
            direct.advance(T0 + MIN).await.unwrap(),
            folded.advance(T0 + MIN).await.unwrap(),
        )
    });
    assert_eq!(a.len(), 12);
    let bits = |e: &[AnomalyEvent]| -> Vec<(String, String, u64)> {
        e.iter()
            .map(|e| {
                (
                    e.rule.clone(),
                    e.service.clone(),
                    e.value.unwrap().to_bits(),
                )
            })
            .collect()
    };
    assert_eq!(bits(&a), bits(&b));
}

#[test]
fn hopping_windows_overlap_and_each_counts_its_own_rows() {
    // One row per minute for ten minutes; 3-minute windows every minute count 3 rows
    // once full, and the first ones (which start before the data) fewer.
    let rows: Vec<(i64, &str, f64)> = (0..10).map(|i| (T0 + i * MIN + 1, "a", 1.0)).collect();
    let mut w = WindowedRules::new(&[spec("n", "count(*)", 180, 60, (">", 2.5))]);
    let (mut events, mut counts) = (Vec::new(), Vec::new());
    let mut every = WindowedRules::new(&[spec("n", "count(*)", 180, 60, (">", -1.0))]);
    run(async {
        w.push(RecordKind::Metrics, &batch(&rows));
        every.push(RecordKind::Metrics, &batch(&rows));
        events = w.advance(T0 + 20 * MIN).await.unwrap();
        counts = every.advance(T0 + 20 * MIN).await.unwrap();
    });
    // Windows start every minute from T0-2m; their counts are 1, 2, then 3 (from T0),
    // then 2 and 1 as the data ends. `> 2.5` fires at the first window of 3 rows and
    // resolves at the first window of 2 (starting at T0+8m, ending at T0+11m).
    let statuses: Vec<_> = events
        .iter()
        .map(|e| (e.status, format_rfc3339(e.starts_at), e.value))
        .collect();
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    assert_eq!(statuses[0].0, crate::Status::Firing);
    assert_eq!(statuses[0].1, "2025-06-02T09:00:00.000Z");
    assert_eq!(statuses[0].2, Some(3.0));
    assert_eq!(statuses[1].0, crate::Status::Resolved);
    assert_eq!(
        events[1].ends_at.map(format_rfc3339).as_deref(),
        Some("2025-06-02T09:11:00.000Z")
    );
    assert_eq!(statuses[1].2, Some(2.0));
    // The always-holding rule fires at the first window, which starts 2 minutes before
    // the first row (hopping windows containing it) with a count of 1.
    assert_eq!(
        format_rfc3339(counts[0].starts_at),
        "2025-06-02T08:58:00.000Z"
    );
    assert_eq!(counts[0].value, Some(1.0));
    // Nothing kept once every window closed.
    assert_eq!(w.raw_rows() + w.state_rows(), 0);
}

#[test]
fn rows_of_closed_windows_are_late_and_counted_not_evaluated() {
    let mut w = WindowedRules::new(&[spec("n", "count(*)", 60, 60, (">", 1.5))]);
    let events = run(async {
        w.push(RecordKind::Metrics, &batch(&[(T0 + 1, "a", 1.0)]));
        let mut e = w.advance(T0 + MIN).await.unwrap();
        // Three rows for the closed window: late, so the count stays 1 and nothing fires.
        w.push(RecordKind::Metrics, &batch(&[(T0 + 2, "a", 1.0); 3]));
        e.extend(w.advance(T0 + 3 * MIN).await.unwrap());
        e
    });
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(w.late_rows(), 3);
}

#[test]
fn a_far_future_watermark_skips_empty_windows_instead_of_closing_each() {
    let mut w = WindowedRules::new(&[spec("n", "count(*)", 1, 1, (">", 0.5))]);
    let events = run(async {
        w.push(RecordKind::Metrics, &batch(&[(T0, "a", 1.0)]));
        // A hundred years of one-second windows: only the first holds data.
        w.advance(T0 + 100 * 365 * 24 * 60 * MIN).await.unwrap()
    });
    let statuses: Vec<_> = events.iter().map(|e| e.status).collect();
    assert_eq!(statuses, [crate::Status::Firing, crate::Status::Resolved]);
    // With `no_data` every empty window counts, up to a week of them; beyond, the gap is
    // skipped (this would otherwise close 3 billion windows).
    let mut counted = spec("n", "count(*)", 1, 1, ("<", 0.5));
    counted.no_data = Some(0.0);
    let mut w = WindowedRules::new(&[counted]);
    let events = run(async {
        w.push(RecordKind::Metrics, &batch(&[(T0, "a", 1.0)]));
        w.advance(T0 + 100 * 365 * 24 * 60 * MIN).await.unwrap()
    });
    assert_eq!(
        events.len(),
        1,
        "fires at the first empty window: {events:?}"
    );
    assert_eq!(events[0].value, Some(0.0));
}

#[test]
fn a_checkpoint_restores_rule_state_and_the_clock() {
    let specs = [spec("n", "count(*)", 60, 60, (">", 0.5))];
    let mut w = WindowedRules::new(&specs);
    let first = run(async {
        w.push(RecordKind::Metrics, &batch(&[(T0, "a", 1.0)]));
        w.advance(T0 + MIN).await.unwrap()
    });
    assert_eq!(first.len(), 1, "fires");
    let saved: Checkpoint =
        serde_json::from_str(&serde_json::to_string(&w.checkpoint()).unwrap()).unwrap();
    let mut r = WindowedRules::new(&specs);
    r.restore(&saved);
    assert_eq!(r.open_since(), Some(T0 + MIN));
    let after = run(async {
        // The closed window's row again (a replay): late, not a second firing.
        r.push(
            RecordKind::Metrics,
            &batch(&[(T0, "a", 1.0), (T0 + MIN, "a", 1.0)]),
        );
        let mut e = r.advance(T0 + 2 * MIN).await.unwrap();
        e.extend(r.advance(T0 + 3 * MIN).await.unwrap());
        e
    });
    let statuses: Vec<_> = after.iter().map(|e| e.status).collect();
    assert_eq!(statuses, [crate::Status::Resolved], "{after:?}");
    assert_eq!(r.late_rows(), 1);
}

mod hostile {
    //! Detection fed whatever records come: times anywhere in the i64 range, values of any
    //! float, services without end, watermarks jumping to the end of time. No panic, and the
    //! series remembered stay within their limits. (The cargo-fuzz target `detect` in
    //! `crates/vigil-detect/fuzz` runs the same longer.)

    use proptest::prelude::*;

    use super::*;

    fn time() -> impl Strategy<Value = i64> {
        prop_oneof![
            4 => (0i64..120).prop_map(|m| T0 + m * MIN / 2),
            1 => any::<i64>(),
            1 => Just(i64::MAX),
            1 => Just(i64::MIN),
        ]
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            4 => -1e3f64..1e3,
            1 => any::<f64>(),
            1 => Just(f64::MAX),
            1 => Just(f64::NAN),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn any_records_and_watermarks_leave_detection_running_and_bounded(
            pushes in proptest::collection::vec(
                (proptest::collection::vec((time(), 0u32..400, value()), 1..40), time()),
                1..6,
            ),
        ) {
            let mut baseline = spec("rate", "count(*)", 60, 60, (">", 0.0));
            baseline.condition = Condition::Baseline;
            baseline.no_data = Some(0.0);
            let mut threshold = spec("big", "max(value)", 120, 60, (">", 100.0));
            threshold.for_ = Duration::from_secs(120);
            let limits = SeriesLimits { max: 50, ttl: Duration::from_secs(600) };
            let mut rules = WindowedRules::new(&[baseline, threshold]).with_series_limits(limits);
            run(async {
                for (rows, watermark) in &pushes {
                    let names: Vec<String> = rows.iter().map(|r| format!("s{}", r.1)).collect();
                    let rows: Vec<(i64, &str, f64)> = rows
                        .iter()
                        .zip(&names)
                        .map(|(r, n)| (r.0, n.as_str(), r.2))
                        .collect();
                    rules.push(RecordKind::Metrics, &batch(&rows));
                    let events = rules.advance(*watermark).await.unwrap();
                    for e in &events {
                        assert!(serde_json::to_string(e).is_ok());
                    }
                }
            });
            for r in &rules.rules {
                let firing = r.evaluator.state().len();
                assert!(
                    r.evaluator.remembered() <= 50 + firing,
                    "{} remembers {}",
                    r.evaluator.rule().name,
                    r.evaluator.remembered()
                );
            }
        }
    }
}

/// A bite of one stream's rows: (stream, first offset, rows).
type Bite = (u32, i64, Vec<(i64, &'static str, f64)>);

/// Rows of three streams over five minutes, in bites of 50.
fn streams_of_rows() -> Vec<Bite> {
    let services = ["a", "b", "c", "d"];
    let mut out = Vec::new();
    for stream in 0..3u32 {
        let values = noise(3_000, 11 + u64::from(stream));
        let rows: Vec<(i64, &str, f64)> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                (
                    T0 + i as i64 * 100_000,
                    services[(i + stream as usize) % 4],
                    v,
                )
            })
            .collect();
        for (n, chunk) in rows.chunks(50).enumerate() {
            out.push((stream, n as i64 * 50, chunk.to_vec()));
        }
    }
    out
}

fn distributed_specs() -> Vec<RuleSpec> {
    vec![
        spec("mean", "avg(value)", 60, 30, (">", 480.0)),
        spec(
            "p95",
            "approx_percentile_cont(value, 0.95)",
            60,
            60,
            (">", 940.0),
        ),
        spec("rows", "count(*)", 60, 60, ("<", 1e9)),
    ]
}

/// The events of one replica seeing every row, in order.
fn single_replica_events() -> Vec<AnomalyEvent> {
    let mut one = WindowedRules::new(&distributed_specs());
    run(async {
        for (_, _, rows) in streams_of_rows() {
            one.push(RecordKind::Metrics, &batch(&rows));
        }
        one.advance(T0 + 10 * MIN).await.unwrap()
    })
}

/// Stage 1 over each bite: (stream, first offset, its partials).
fn stage_one() -> Vec<(u32, i64, Vec<Partial>)> {
    let mut stage1 = WindowedRules::new(&distributed_specs());
    run(async {
        let mut out = Vec::new();
        for (stream, from, rows) in streams_of_rows() {
            let p = stage1
                .partials(RecordKind::Metrics, &[batch(&rows)])
                .await
                .unwrap();
            out.push((stream, from, p));
        }
        out
    })
}

fn stage_two() -> WindowedRules {
    let mut merged = WindowedRules::new(&distributed_specs());
    run(merged.prepare(RecordKind::Metrics, &batch(&[]).schema())).unwrap();
    merged
}

fn merge_all(merged: &mut WindowedRules, parts: Vec<(u32, i64, Vec<Partial>)>) {
    for (stream, from, partials) in parts {
        for p in partials {
            assert!(merged.merge(p, Contribution { stream, from }).unwrap());
        }
    }
}

/// Same values, exactly for sums and counts; within the t-digest's error (which depends on the
/// order states merge in) for the percentile.
fn assert_close_values(a: &[AnomalyEvent], b: &[AnomalyEvent]) {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    for e in [&mut a, &mut b] {
        e.sort_by(|x, y| {
            (&x.rule, &x.service, x.starts_at, x.status.to_string()).cmp(&(
                &y.rule,
                &y.service,
                y.starts_at,
                y.status.to_string(),
            ))
        });
    }
    for (x, y) in a.iter().zip(&b) {
        let (Some(u), Some(v)) = (x.value, y.value) else {
            assert_eq!(x.value, y.value);
            continue;
        };
        let tolerance = if x.rule == "p95" { 5e-3 } else { 1e-9 };
        assert!(
            (u - v).abs() <= tolerance * v.abs().max(1.0),
            "{x:?} vs {y:?}"
        );
    }
}

fn event_keys(events: &[AnomalyEvent]) -> Vec<(String, String, String, i64, Option<i64>)> {
    let mut keys: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.rule.clone(),
                e.service.clone(),
                e.status.to_string(),
                e.starts_at,
                e.ends_at,
            )
        })
        .collect();
    keys.sort();
    keys
}

#[test]
fn merged_partials_give_the_single_replicas_events_whatever_their_order() {
    let one = single_replica_events();
    assert!(one.len() >= 4, "the rules fire: {one:?}");
    let mut parts = stage_one();
    // Streams interleaved and reordered: every stream's bites reversed, streams alternating.
    parts.reverse();
    parts.sort_by_key(|(stream, from, _)| (from / 500, *stream));
    let mut merged = stage_two();
    merge_all(&mut merged, parts);
    let events = run(merged.advance(T0 + 10 * MIN)).unwrap();
    assert_eq!(event_keys(&events), event_keys(&one));
    assert_close_values(&events, &one);
}

#[test]
fn a_stream_read_again_replaces_what_it_contributed_to_open_windows() {
    let one = single_replica_events();
    let parts = stage_one();
    let mut merged = stage_two();
    // Stream 1 is read to offset 1 000, its reader dies, and the next reader starts again
    // from offset 600 (where the archive ended): everything from 600 comes twice.
    let first: Vec<_> = parts
        .iter()
        .filter(|(s, from, _)| *s != 1 || *from < 1_000)
        .cloned()
        .collect();
    merge_all(&mut merged, first);
    assert!(merged.revert(1, 600) > 0);
    let again: Vec<_> = parts
        .iter()
        .filter(|(s, from, _)| *s == 1 && *from >= 600)
        .cloned()
        .collect();
    merge_all(&mut merged, again);
    let events = run(merged.advance(T0 + 10 * MIN)).unwrap();
    assert_eq!(event_keys(&events), event_keys(&one));
    assert_close_values(&events, &one);
}

#[test]
fn partials_for_a_closed_window_are_late_and_a_checkpoint_keeps_open_states() {
    let parts = stage_one();
    let (early, late): (Vec<_>, Vec<_>) = parts.into_iter().partition(|(s, ..)| *s != 2);
    let mut merged = stage_two();
    merge_all(&mut merged, early);
    let closed = run(merged.advance(T0 + 2 * MIN)).unwrap();
    // A checkpoint now, restored elsewhere, carries on as the original does.
    let saved = (merged.checkpoint(), merged.saved_states());
    let mut restored = stage_two();
    restored.restore(&saved.0);
    restored.restore_states(&saved.1).unwrap();
    assert_eq!(restored.state_rows(), merged.state_rows());
    for m in [&mut merged, &mut restored] {
        let mut late_merges = 0;
        for (stream, from, partials) in late.clone() {
            for p in partials {
                if !m.merge(p, Contribution { stream, from }).unwrap() {
                    late_merges += 1;
                }
            }
        }
        assert!(late_merges > 0, "stream 2's first minutes are late");
        assert!(m.late_rows() > 0);
    }
    let a = run(merged.advance(T0 + 10 * MIN)).unwrap();
    let b = run(restored.advance(T0 + 10 * MIN)).unwrap();
    assert_eq!(event_keys(&a), event_keys(&b));
    assert!(!closed.is_empty() || !a.is_empty());
}

#[test]
fn partials_of_a_rule_this_pipeline_lacks_are_refused() {
    let mut parts = stage_one();
    let (stream, from, mut partials) = parts.remove(0);
    let mut p = partials.remove(0);
    p.rule = "nobody's rule".into();
    let mut merged = stage_two();
    let err = merged.merge(p, Contribution { stream, from }).unwrap_err();
    assert!(err.to_string().contains("same pipeline file"), "{err}");
}

#[test]
fn rows_in_time_order_are_split_into_panes_without_a_copy_and_rows_out_of_order_still_land_right() {
    let g = Group::new(RecordKind::Metrics, MIN, MIN);
    let values = |b: &RecordBatch| -> Vec<f64> {
        b.column(2)
            .as_primitive::<arrow::datatypes::Float64Type>()
            .values()
            .to_vec()
    };
    let in_order = batch(&[
        (T0, "a", 1.0),
        (T0 + 1, "a", 2.0),
        (T0 + MIN, "b", 3.0),
        (T0 + MIN + 5, "a", 4.0),
        (T0 + 3 * MIN, "a", 5.0),
    ]);
    let split = split_by_pane(&g, &in_order, time_range(&in_order).unwrap());
    let panes: Vec<(i64, Vec<f64>)> = split.iter().map(|(p, b)| (*p, values(b))).collect();
    assert_eq!(
        panes,
        [
            (g.pane(T0), vec![1.0, 2.0]),
            (g.pane(T0 + MIN), vec![3.0, 4.0]),
            (g.pane(T0 + 3 * MIN), vec![5.0]),
        ]
    );
    // Slices of the batch: the same value buffer, not a copy.
    let base = in_order.column(2).to_data().buffers()[0].as_ptr();
    let mut offset = 0;
    for (_, b) in &split {
        let at = b.column(2).to_data().buffers()[0].as_ptr();
        assert_eq!(at, base.wrapping_add(offset * size_of::<f64>()));
        offset += b.num_rows();
    }
    let back_in_time = batch(&[
        (T0 + MIN, "a", 1.0),
        (T0, "a", 2.0),
        (T0 + MIN + 1, "a", 3.0),
    ]);
    let panes: Vec<(i64, Vec<f64>)> =
        split_by_pane(&g, &back_in_time, time_range(&back_in_time).unwrap())
            .iter()
            .map(|(p, b)| (*p, values(b)))
            .collect();
    assert_eq!(
        panes,
        [(g.pane(T0), vec![2.0]), (g.pane(T0 + MIN), vec![1.0, 3.0])]
    );
    // Within one pane, in order or not: the batch whole, as it came.
    let one_pane = batch(&[(T0 + 5, "a", 1.0), (T0, "b", 2.0), (T0 + MIN - 1, "a", 3.0)]);
    let split = split_by_pane(&g, &one_pane, time_range(&one_pane).unwrap());
    assert_eq!(split.len(), 1);
    assert_eq!(
        (split[0].0, values(&split[0].1)),
        (g.pane(T0), vec![1.0, 2.0, 3.0])
    );
}

#[test]
fn a_filter_naming_services_is_found_and_any_other_filter_names_none() {
    let schema = batch(&[(T0, "a", 1.0)]).schema();
    let services = |filter: &str| {
        let sql = format!("SELECT service, count(*) FROM w WHERE {filter} GROUP BY service");
        let plan = run(Plan::new(&plan::session(), &sql, &schema))
            .ok()
            .unwrap();
        plan.services().map(<[String]>::to_vec)
    };
    let named = |s: &[&str]| Some(s.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(services("service = 'a'"), named(&["a"]));
    assert_eq!(services("'a' = service AND value > 1"), named(&["a"]));
    assert_eq!(
        services("value > 1 AND service IN ('a', 'b')"),
        named(&["a", "b"])
    );
    assert_eq!(
        services("service = 'a' OR service = 'b'"),
        named(&["a", "b"])
    );
    assert_eq!(services("service <> 'a'"), None);
    assert_eq!(services("service NOT IN ('a')"), None);
    assert_eq!(services("lower(service) = 'a'"), None);
    assert_eq!(services("service = 'a' OR value > 1"), None);
    assert_eq!(services("value > 1"), None);
}

#[test]
fn a_rule_naming_its_service_reads_only_batches_that_can_hold_it_and_its_values_are_the_same() {
    // Batches of one service each, as a decoder makes them, and one of several (its
    // overflow group): a rule whose filter names `a` skips the batches of `b` alone, not the
    // mixed one, and its value is what the whole query over every row gives.
    let only_a = batch(&[(T0, "a", 1.0), (T0 + 1, "a", 2.0)]);
    let only_b = batch(&[(T0 + 2, "b", 40.0), (T0 + 3, "b", 50.0)]);
    let mixed = batch(&[(T0 + 4, "b", 60.0), (T0 + 5, "a", 3.0)]);
    let rows = Batches::new(vec![only_a.clone(), only_b.clone(), mixed.clone()]);
    let a = vec!["a".to_string()];
    let kept = rows.of(Some(&a));
    assert_eq!(kept.to_vec(), vec![only_a.clone(), mixed.clone()]);
    assert_eq!(rows.of(None).len(), 3);
    let c = vec!["c".to_string()];
    assert_eq!(rows.of(Some(&c)).to_vec(), vec![mixed.clone()]);

    let mut named = spec("a", "sum(value)", 60, 60, (">", -1e18));
    named.filter = Some("service = 'a'".into());
    let mut unnamed = spec("a", "sum(value)", 60, 60, (">", -1e18));
    unnamed.filter = Some("service || '' = 'a'".into());
    let [x, y] = [named, unnamed].map(|s| {
        let mut rules = WindowedRules::new(&[s]);
        run(async {
            for b in [&only_a, &only_b, &mixed] {
                rules.push(RecordKind::Metrics, b);
            }
            rules.advance(T0 + MIN).await.unwrap()
        })
    });
    assert_eq!(values_of(&x), vec![(T0, "a".to_string(), 6.0)]);
    assert_eq!(values_of(&x), values_of(&y));
}

#[test]
fn a_batchs_time_range_spans_its_rows_and_skips_null_times() {
    assert_eq!(
        time_range(&batch(&[
            (T0 + 5, "a", 1.0),
            (T0, "b", 2.0),
            (T0 + 9, "a", 3.0)
        ])),
        Some((T0, T0 + 9))
    );
    assert_eq!(time_range(&batch(&[])), None);
    // A null time's slot holds 0: it must not count as the earliest.
    let nullable = Arc::new(Schema::new(
        batch(&[])
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    let with_null = RecordBatch::try_new(
        nullable,
        vec![
            Arc::new(
                TimestampMicrosecondArray::from(vec![Some(T0 + 1), None]).with_timezone("UTC"),
            ),
            Arc::new(StringArray::from(vec!["a", "a"])),
            Arc::new(Float64Array::from(vec![1.0, 2.0])),
        ],
    )
    .unwrap();
    assert_eq!(time_range(&with_null), Some((T0 + 1, T0 + 1)));
}

#[test]
fn a_count_of_rows_per_service_is_made_from_batches_of_one_service_without_reading_them() {
    let only_a = batch(&[(T0, "a", 1.0), (T0 + 1, "a", 2.0)]);
    let only_b = batch(&[(T0 + 2, "b", 40.0)]);
    let more_a = batch(&[(T0 + 3, "a", 3.0)]);
    let mixed = batch(&[(T0 + 4, "b", 60.0), (T0 + 5, "a", 3.0)]);
    let plan = |signal: &str, filter: Option<&str>| {
        let filter = filter.map_or(String::new(), |f| format!(" WHERE {f}"));
        let sql = format!(
            "SELECT service, CAST(({signal}) AS DOUBLE) AS value FROM w{filter} GROUP BY service"
        );
        run(Plan::new(&plan::session(), &sql, &only_a.schema())).unwrap_or_else(|_| panic!())
    };
    // What counts rows per service, whatever the arithmetic on the counts above them.
    for signal in [
        "count(*)",
        "count(1)",
        "CAST(count(*) AS DOUBLE) * 2",
        "count(*) - count(*)",
    ] {
        let p = plan(signal, None);
        let each_one = Batches::new(vec![only_a.clone(), only_b.clone(), more_a.clone()]);
        let counted = p.counted(&each_one).expect(signal);
        let read = run(p.partial(Input::Rows(&each_one.of(None)))).unwrap();
        assert_eq!(counted.num_rows(), 2, "{signal}");
        let states = counted.clone();
        // (service, value): `rows` is NaN here, the query does not count them.
        let values = |v: Vec<(String, f64, f64)>| -> Vec<(String, f64)> {
            v.into_iter().map(|(s, v, _)| (s, v)).collect()
        };
        assert_eq!(
            values(run(p.whole(Input::States(states))).unwrap()),
            values(run(p.whole(Input::Rows(&each_one.of(None)))).unwrap()),
            "{signal}"
        );
        assert_eq!(counted.columns(), read.columns(), "{signal}");
        // A batch of several services: only reading its rows says.
        let with_mixed = Batches::new(vec![only_a.clone(), mixed.clone()]);
        assert!(p.counted(&with_mixed).is_none(), "{signal}");
    }
    // What reads the rows: values, a filter, distinct values, a filter on the aggregate.
    for (signal, filter) in [
        ("count(value)", None),
        ("count(*)", Some("value > 1")),
        ("count(*)", Some("service = 'a'")),
        ("count(DISTINCT value)", None),
        ("count(*) FILTER (WHERE value > 1)", None),
        ("count(*) + sum(value)", None),
        ("sum(1)", None),
    ] {
        let each_one = Batches::new(vec![only_a.clone(), only_b.clone()]);
        assert!(
            plan(signal, filter).counted(&each_one).is_none(),
            "{signal} {filter:?}"
        );
    }
    // Through the rules, tumbling and hopping: the same values as a signal that reads rows.
    for (window, hop) in [(60, 60), (180, 60)] {
        let [counted, summed] =
            ["count(*)", "sum(CASE WHEN value IS NULL THEN 0 ELSE 1 END)"].map(|signal| {
                let mut rules = WindowedRules::new(&[spec("n", signal, window, hop, (">", -1.0))]);
                run(async {
                    let mut out = Vec::new();
                    for (k, b) in [&only_a, &only_b, &more_a, &mixed].into_iter().enumerate() {
                        let shifted = batch(
                            &(0..b.num_rows())
                                .map(|r| {
                                    let ts = b.column(0).as_primitive::<TimestampMicrosecondType>();
                                    let s = b.column(1).as_string::<i32>().value(r);
                                    (ts.value(r) + k as i64 * MIN, s, 1.0)
                                })
                                .collect::<Vec<_>>(),
                        );
                        rules.push(RecordKind::Metrics, &shifted);
                    }
                    out.extend(rules.advance(T0 + 10 * MIN).await.unwrap());
                    values_of(&out)
                })
            });
        assert!(!counted.is_empty());
        assert_eq!(counted, summed, "window {window} s, hop {hop} s");
    }
}
