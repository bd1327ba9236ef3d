//! Hand-computed cases. The base series has 100 rows one minute apart, so probation is
//! floor(0.15 * 100) = 15 rows (rows 0..=14), and one window over rows 50..=54
//! (width w = 5). Values used below:
//!
//! * sigma(-1) = 2 / (1 + e^-5) - 1 = 0.986614 (maxTP).
//! * TP unit at row i = sigma(-(54 - i + 1) / 5) / sigma(-1):
//!   row 50: y = -1.0 -> 1.0 exactly; row 51: y = -0.8, sigma = 2/(1 + e^-4) - 1 =
//!   0.964028 -> 0.977107; row 53: y = -0.4, sigma = 2/(1 + e^-2) - 1 = 0.761594 ->
//!   0.771927.
//! * FP at row 55 (just after the window): y = (55 - 54) / (5 - 1) = 0.25,
//!   sigma = 2/(1 + e^1.25) - 1 = -0.554600. FP at row 99: y = 45 / 4 = 11.25 > 3 ->
//!   sigma = -1. FP at row 20 (before any window): -1.
//! * null (never detects) = -fnWeight * 1; perfect = tpWeight * 1.
use super::*;

const T0: &str = "2014-01-01 00:00:00";
const EPS: f64 = 1e-5;

fn minute(i: i64) -> Timestamp {
    parse_timestamp(T0).unwrap() + i * 60_000_000
}

fn series(name: &str) -> LabelledSeries {
    LabelledSeries {
        name: name.into(),
        timestamps: (0..100).map(minute).collect(),
        windows: vec![Window {
            start: minute(50),
            end: minute(54),
        }],
    }
}

/// Scores of 0 everywhere except `hits` (row, score).
fn scores(hits: &[(usize, f64)]) -> Vec<f64> {
    let mut s = vec![0.0; 100];
    for &(i, v) in hits {
        s[i] = v;
    }
    s
}

fn curve(per_series: &[Vec<f64>]) -> ThresholdCurve {
    let mut sweep = Sweep::new();
    for (k, s) in per_series.iter().enumerate() {
        sweep.add_series(&series(&format!("s{k}")), s).unwrap();
    }
    sweep.curve()
}

fn profile(name: &str) -> Profile {
    Profile::nab_defaults()
        .into_iter()
        .find(|p| p.name == name)
        .unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < EPS
}

#[test]
fn nab_sigmoid_and_probation_values() {
    // The values quoted in NAB's scaledSigmoid docstring.
    assert!(close(scaled_sigmoid(-1.0), 0.98661));
    assert!(close(scaled_sigmoid(-0.5), 0.848283));
    assert_eq!(scaled_sigmoid(0.0), 0.0);
    assert!(close(scaled_sigmoid(1.0), -0.98661));
    assert_eq!(scaled_sigmoid(3.5), -1.0);
    // min(floor(0.15 * n), 750).
    assert_eq!(probation_length(100), 15);
    assert_eq!(probation_length(4032), 604);
    assert_eq!(probation_length(5000), 750);
    assert_eq!(probation_length(22695), 750);
}

#[test]
fn perfect_detector_scores_100() {
    // Two series, each with one detection at its window's first row (row 50).
    // Threshold 1.0: raw = 2 TPs * tpWeight * 1.0 = 2; null = -2 * fnWeight,
    // perfect = 2 * tpWeight -> 100 * (2 + 2fn) / (2 + 2fn) = 100 for every profile.
    // (Threshold 0 would add 2 * 35 FPs before the windows and is worse.)
    let c = curve(&[scores(&[(50, 1.0)]), scores(&[(50, 1.0)])]);
    for p in Profile::nab_defaults() {
        let s = c.optimise(&p);
        assert_eq!(s.threshold, 1.0, "{}", p.name);
        assert!(close(s.raw, 2.0), "{}: {}", p.name, s.raw);
        assert!(close(s.normalised, 100.0), "{}: {}", p.name, s.normalised);
        assert_eq!(
            s.counts,
            Counts {
                tp_windows: 2,
                fn_windows: 0,
                fp_rows: 0,
                tp_rows: 2
            }
        );
    }
}

#[test]
fn null_detector_scores_0() {
    // All scores 0. Threshold 1.1 (no detections): raw = -fnWeight = null -> 0.
    // Threshold 0 (every scored row): TP 1.0, 35 FPs before the window (rows 15..=49)
    // at -fpWeight each, 45 after it; e.g. standard: 1 - 0.11 * (35 + ~43.3) < -1, so the
    // optimiser keeps 1.1.
    let c = curve(&[scores(&[])]);
    for p in Profile::nab_defaults() {
        let s = c.optimise(&p);
        assert_eq!(s.threshold, NO_DETECTION_THRESHOLD, "{}", p.name);
        assert!(close(s.raw, -p.costs.fn_weight), "{}: {}", p.name, s.raw);
        assert!(close(s.normalised, 0.0), "{}: {}", p.name, s.normalised);
        assert_eq!(s.counts.fn_windows, 1);
        // And at an explicit threshold above every score.
        assert!(close(c.score_at(&p, 0.5).normalised, 0.0));
    }
}

#[test]
fn detection_in_probation_is_ignored() {
    // Row 5 is in probation (rows 0..=14): no FP, so raw = FN only = -1.0 (standard).
    let std = profile("standard");
    let s = curve(&[scores(&[(5, 1.0)])]).score_at(&std, 1.0);
    assert!(close(s.raw, -1.0), "{}", s.raw);
    assert_eq!(s.counts.fp_rows, 0);
    // The same detection at row 20 (after probation, before any window) costs
    // -fpWeight: raw = -1 - 0.11 = -1.11.
    let s = curve(&[scores(&[(20, 1.0)])]).score_at(&std, 1.0);
    assert!(close(s.raw, -1.11), "{}", s.raw);
    assert_eq!(s.counts.fp_rows, 1);
}

#[test]
fn window_in_probation_is_not_a_false_negative() {
    // A window over rows 2..=4 lies wholly in probation: it cannot be charged as a FN
    // (NAB only knows windows through their post-probation rows), but it still counts
    // towards `perfect`. Never detecting: raw = -1 (the window at 50..=54 only), null =
    // -1, perfect = 2.
    let mut s = series("s");
    s.windows.insert(
        0,
        Window {
            start: minute(2),
            end: minute(4),
        },
    );
    let mut sweep = Sweep::new();
    sweep.add_series(&s, &scores(&[])).unwrap();
    let c = sweep.curve();
    let r = c.score_at(&profile("standard"), 1.0);
    assert!(close(r.raw, -1.0) && close(r.null, -1.0) && close(r.perfect, 2.0));
    assert_eq!(sweep.scorable_windows(), 1);
}

#[test]
fn only_earliest_detection_in_window_counts() {
    // Detections at rows 51 and 53: only row 51 counts, raw = 0.977107 (no FN, no FP,
    // and no second TP), the same as row 51 alone.
    let std = profile("standard");
    let both = curve(&[scores(&[(51, 1.0), (53, 1.0)])]).score_at(&std, 1.0);
    let first = curve(&[scores(&[(51, 1.0)])]).score_at(&std, 1.0);
    assert!(close(both.raw, 0.977107), "{}", both.raw);
    assert!(close(both.raw, first.raw));
    assert_eq!(both.counts.tp_windows, 1);
    assert_eq!(both.counts.tp_rows, 2);
    assert_eq!(both.counts.fp_rows, 0);
    // The same when the later row has the higher score (and is met first by the sweep):
    // at threshold 0.5 both are detections and the earlier one still wins.
    let c = curve(&[scores(&[(51, 0.6), (53, 0.9)])]);
    assert!(close(c.score_at(&std, 0.9).raw, 0.771927));
    assert!(close(c.score_at(&std, 0.5).raw, 0.977107));
}

#[test]
fn later_detection_in_window_is_worth_less() {
    // Row 50: 1.0, row 51: 0.977107, row 53: 0.771927 (see the module comment).
    let std = profile("standard");
    let at = |row| curve(&[scores(&[(row, 1.0)])]).score_at(&std, 1.0).raw;
    let (r50, r51, r53) = (at(50), at(51), at(53));
    assert!(close(r50, 1.0) && close(r51, 0.977107) && close(r53, 0.771927));
    assert!(r50 > r51 && r51 > r53);
}

#[test]
fn fp_right_after_window_costs_less_than_far_fp() {
    // TP at row 50 (+1.0) plus one FP. Standard (fpWeight 0.11):
    // FP at row 55: 0.11 * -0.554600 = -0.061006 -> raw 0.938994.
    // FP at row 99: 0.11 * -1 -> raw 0.89. FP at row 20 (before the window): also 0.89.
    let std = profile("standard");
    let raw = |fp| {
        curve(&[scores(&[(50, 1.0), (fp, 1.0)])])
            .score_at(&std, 1.0)
            .raw
    };
    let (near, far, before) = (raw(55), raw(99), raw(20));
    assert!(close(near, 0.938994), "{near}");
    assert!(close(far, 0.89), "{far}");
    assert!(close(before, 0.89), "{before}");
    assert!(near > far);
}

#[test]
fn low_fp_profile_penalises_fps_more_than_standard() {
    // TP at row 50, FP at row 99, threshold 1.0.
    // standard: raw = 1 - 0.11 = 0.89, normalised = 100 * (0.89 + 1) / (1 + 1) = 94.5.
    // reward_low_FP_rate: raw = 1 - 0.22 = 0.78, normalised = 100 * 1.78 / 2 = 89.0.
    let c = curve(&[scores(&[(50, 1.0), (99, 1.0)])]);
    let std = c.score_at(&profile("standard"), 1.0);
    let low_fp = c.score_at(&profile("reward_low_FP_rate"), 1.0);
    assert!(close(std.normalised, 94.5), "{}", std.normalised);
    assert!(close(low_fp.normalised, 89.0), "{}", low_fp.normalised);
    assert!(low_fp.normalised < std.normalised);
}

#[test]
fn optimiser_picks_the_best_threshold() {
    // TP at row 50 with score 0.9, FP at row 99 with score 0.95, the rest 0.
    // Candidates (standard): 1.1 -> -1; 0.95 -> -1 - 0.11 = -1.11; 0.9 -> 1 - 0.11 = 0.89;
    // 0.0 -> far worse (dozens of FPs). Best: 0.9, normalised 94.5.
    let c = curve(&[scores(&[(50, 0.9), (99, 0.95)])]);
    let thresholds: Vec<f64> = c.points.iter().map(|p| p.threshold).collect();
    assert_eq!(thresholds, [1.1, 0.95, 0.9, 0.0]);
    let s = c.optimise(&profile("standard"));
    assert_eq!(s.threshold, 0.9);
    assert!(close(s.raw, 0.89) && close(s.normalised, 94.5));
    assert_eq!(
        s.counts,
        Counts {
            tp_windows: 1,
            fn_windows: 0,
            fp_rows: 1,
            tp_rows: 1
        }
    );
}

#[test]
fn parses_nab_formats() {
    assert_eq!(
        parse_timestamp("2014-04-10 07:15:00.000000").unwrap(),
        parse_timestamp("2014-04-10 07:15:00").unwrap()
    );
    assert_eq!(
        parse_timestamp("1970-01-02 00:00:01").unwrap(),
        86_401_000_000
    );
    assert_eq!(
        format_timestamp(parse_timestamp("2016-02-29 23:59:59").unwrap()),
        "2016-02-29 23:59:59"
    );
    for bad in [
        "2014-02-30 00:00:00",
        "2014-04-10",
        "2014/04/10 00:00:00",
        "2014-04-10 07:15:00x",
    ] {
        assert!(parse_timestamp(bad).is_err(), "{bad}");
    }

    let w = parse_windows(r#"{"a/x.csv": [["2014-04-10 07:15:00.000000", "2014-04-10 07:20:00.000000"]], "b/y.csv": []}"#)
        .unwrap();
    assert_eq!(w.len(), 2);
    assert_eq!(w["a/x.csv"][0].end - w["a/x.csv"][0].start, 5 * 60_000_000);
    assert!(parse_windows(r#"{"a/x.csv": [["2014-04-10 07:15:00"]]}"#).is_err());

    let p = parse_profiles(
        r#"{"reward_low_FN_rate": {"CostMatrix": {"tpWeight": 1, "fnWeight": 2.0, "fpWeight": 0.11, "tnWeight": 1.0}},
            "standard": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0}},
            "reward_low_FP_rate": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.22, "tnWeight": 1.0}}}"#,
    )
    .unwrap();
    assert_eq!(p, Profile::nab_defaults());

    let r = parse_results_csv("timestamp,value,anomaly_score\r\n2014-01-01 00:00:00,1.5,0.25\r\n2014-01-01 00:05:00,2,1\r\n")
        .unwrap();
    assert_eq!(r.scores, [0.25, 1.0]);
    assert_eq!(
        parse_data_csv("timestamp,value\n2014-01-01 00:00:00,1\n")
            .unwrap()
            .len(),
        1
    );
    for bad in [
        "timestamp,value\n2014-01-01 00:00:00,1\n", // no anomaly_score column
        "timestamp,value,anomaly_score\n2014-01-01 00:00:00,1,1.5\n", // score > 1
        "timestamp,value,anomaly_score\n2014-01-01 00:00:00,1,nan\n", // not in [0, 1]
        "timestamp,value,anomaly_score\n2014-01-01 00:00:00,1\n", // missing field
        "timestamp,value,anomaly_score\n",          // no rows
        "",
    ] {
        assert!(parse_results_csv(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn rejects_inconsistent_series() {
    let mut sweep = Sweep::new();
    assert!(sweep.add_series(&series("s"), &[0.0; 99]).is_err()); // row count
    let mut s = series("s");
    s.windows[0] = Window {
        start: minute(200),
        end: minute(210),
    };
    assert!(sweep.add_series(&s, &scores(&[])).is_err()); // window covers no rows
    let mut s = series("s");
    s.windows.push(Window {
        start: minute(52),
        end: minute(60),
    });
    assert!(sweep.add_series(&s, &scores(&[])).is_err()); // overlapping windows
}

#[test]
fn tolerates_repeated_timestamps_outside_windows() {
    // NAB's data repeats timestamps at DST changes: rows 30 and 31 share one here. The
    // window is still rows 50..=54, so a detection at row 50 is worth exactly 1.0.
    let mut s = series("s");
    s.timestamps[31] = s.timestamps[30];
    let mut sweep = Sweep::new();
    sweep.add_series(&s, &scores(&[(50, 1.0)])).unwrap();
    let r = sweep.curve().score_at(&profile("standard"), 1.0);
    assert!(close(r.raw, 1.0) && close(r.normalised, 100.0));
}

#[test]
fn leave_one_category_out_scores_each_category_at_the_others_threshold() {
    // Category A detects its window at 0.6 and nothing else; B at 0.9, with two false
    // positives at 0.6. Alone, B's best threshold is 0.9, which misses A's window; A's
    // (anything down to 0.6) keeps B's false positives. Each is scored at the other's.
    let dir = std::env::temp_dir().join(format!("vigil-nab-loco-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let write = |rel: &str, text: &str| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    let stamp = |i: i64| format_timestamp(minute(i));
    let mut data = String::from("timestamp,value\n");
    for i in 0..100 {
        data.push_str(&format!("{},1\n", stamp(i)));
    }
    let results = |hits: &[(usize, f64)]| {
        let s = scores(hits);
        let mut text = String::from("timestamp,value,anomaly_score\n");
        for (i, v) in s.iter().enumerate() {
            text.push_str(&format!("{},1,{v}\n", stamp(i as i64)));
        }
        text
    };
    let window = format!("[[\"{}\", \"{}\"]]", stamp(50), stamp(54));
    for c in ["A", "B"] {
        write(&format!("nab/data/{c}/s.csv"), &data);
    }
    write(
        "nab/labels/combined_windows.json",
        &format!("{{\"A/s.csv\": {window}, \"B/s.csv\": {window}}}"),
    );
    write(
        "nab/config/profiles.json",
        r#"{"standard": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0}}}"#,
    );
    write("results/A/s.csv", &results(&[(50, 0.6)]));
    write(
        "results/B/s.csv",
        &results(&[(50, 0.9), (20, 0.6), (99, 0.6)]),
    );
    let report = score_directory(&dir.join("nab"), &dir.join("results")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    // Corpus-wide, 0.6 wins: both windows for two false positives.
    assert!(close(report.scores[0].threshold, 0.6), "{report:?}");
    let loco = &report.loco[0];
    let (a, b) = (&loco.categories[0], &loco.categories[1]);
    assert_eq!((a.0.as_str(), b.0.as_str()), ("A", "B"));
    assert!(
        close(a.1.threshold, 0.9) && close(a.1.normalised, 0.0),
        "{a:?}"
    );
    // B at 0.6: its window (1) and two far false positives (-0.11 each).
    assert!(close(b.1.threshold, 0.6), "{b:?}");
    assert!(
        close(b.1.normalised, 100.0 * (1.0 - 0.22 + 1.0) / 2.0),
        "{b:?}"
    );
    assert!(close(loco.mean(), (a.1.normalised + b.1.normalised) / 2.0));
    // Over the band: A's 0.6 lies below every threshold around 0.9, as at it. B's false
    // positives lie exactly at its threshold: the four thresholds up to 0.6 keep them, the
    // three above leave only its window (100).
    assert!(close(loco.banded[0], a.1.normalised), "{loco:?}");
    assert!(
        close(loco.banded[1], (4.0 * b.1.normalised + 3.0 * 100.0) / 7.0),
        "{loco:?}"
    );
    assert!(close(
        loco.banded_mean(),
        (loco.banded[0] + loco.banded[1]) / 2.0
    ));
}

#[test]
fn the_threshold_band_is_even_in_surprise_around_the_threshold() {
    let band = threshold_band(0.99);
    assert!(close(band[3], 0.99));
    assert!(band.windows(2).all(|w| w[0] < w[1]), "{band:?}");
    let surprise = |t: f64| -(1.0 - t).log10();
    assert!(
        close(surprise(band[0]), 1.85) && close(surprise(band[6]), 2.15),
        "{band:?}"
    );
    // Nothing detected stays nothing detected.
    assert_eq!(threshold_band(1.1), [1.1; 7]);
    // Near 0, the thresholds that would flag every row are left out.
    let low = threshold_band(0.25);
    assert_eq!(low.len(), 6, "{low:?}");
    assert!(
        low.iter().all(|b| *b > 0.0) && close(low[2], 0.25),
        "{low:?}"
    );
}
