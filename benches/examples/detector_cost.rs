//! The cost of each series detector per point (baseline, resonance, and the two as the
//! ensemble), and the size of its state:
//!
//! ```sh
//! cargo run --release -p vigil-benches --example detector_cost
//! ```
//!
//! A week of one-minute points with a daily pattern, noise and a few spikes (a week, so the
//! baseline's daily and weekly profiles are in use), scored five times by each detector;
//! prints the best time per point and the JSON size of one detector's checkpointed state.
//! The resonance detector's cost grows with the categories it has learnt, up to its cap: the
//! daily pattern fills its memory within the week (the worst case); white noise, mostly
//! snapped to its median level, does not. A service mesh of 10k series at one point per
//! minute per series is 167 points a second: the time per point times
//! that is the share of a core that detection takes.

use std::hint::black_box;
use std::time::Instant;

use serde::Serialize;
use vigil_detect::{
    BaselineConfig, BaselineDetector, EnsembleDetector, ResonanceDetector, SeriesShape,
};
use vigil_gen::Rng;

const MINUTE: i64 = 60_000_000;
const POINTS: usize = 7 * 24 * 60;

fn main() {
    let mut rng = Rng::new(7);
    let daily: Vec<(i64, f64)> = (0..POINTS)
        .map(|i| {
            let day = (i as f64 / 1440.0) * std::f64::consts::TAU;
            let spike = if rng.chance(0.001) { 400.0 } else { 0.0 };
            let v = 200.0 + 80.0 * day.sin() + 10.0 * rng.normal() + spike;
            (1_700_000_000_000_000 + i as i64 * MINUTE, v)
        })
        .collect();
    let noise: Vec<(i64, f64)> = daily.iter().map(|&(t, _)| (t, rng.normal())).collect();
    // As on a stream: the range told, the length not.
    let shape = |points: &[(i64, f64)]| SeriesShape {
        len: None,
        ..SeriesShape::of(points.iter().map(|p| p.1))
    };
    measure("baseline, daily pattern", &daily, || {
        BaselineDetector::new(BaselineConfig::default())
    });
    for (name, points) in [("daily pattern", &daily), ("white noise", &noise)] {
        let s = shape(points);
        measure(&format!("resonance, {name}"), points, || {
            ResonanceDetector::new(s)
        });
        measure(&format!("ensemble, {name}"), points, || {
            EnsembleDetector::new(s)
        });
    }
}

/// A series detector, as each scores.
trait Series: Serialize {
    fn score(&mut self, t: i64, v: f64) -> f64;
}

impl Series for BaselineDetector {
    fn score(&mut self, t: i64, v: f64) -> f64 {
        BaselineDetector::score(self, t, v)
    }
}

impl Series for EnsembleDetector {
    fn score(&mut self, t: i64, v: f64) -> f64 {
        EnsembleDetector::score(self, t, v)
    }
}

impl Series for ResonanceDetector {
    fn score(&mut self, _: i64, v: f64) -> f64 {
        ResonanceDetector::score(self, v)
    }
}

/// Scores `points` five times with fresh detectors from `new`; prints the best time per
/// point and the size of the last detector's state as JSON.
fn measure<D: Series>(name: &str, points: &[(i64, f64)], new: impl Fn() -> D) {
    let mut best = f64::INFINITY;
    let mut state = 0;
    for _ in 0..5 {
        let started = Instant::now();
        let mut d = new();
        for &(t, v) in points {
            black_box(d.score(t, v));
        }
        best = best.min(started.elapsed().as_secs_f64() / points.len() as f64);
        state = serde_json::to_vec(&d).expect("serialisable").len();
    }
    let mesh = 10_000.0 / 60.0;
    println!(
        "{name}: {} points: {:.0} ns per point (best of 5); state {state} bytes as JSON; \
         10k series at 1 point/min: {:.1e} of a core",
        points.len(),
        best * 1e9,
        best * mesh
    );
}
