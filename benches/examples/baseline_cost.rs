//! The cost of the default baseline detector per point, and the size of its state:
//!
//! ```sh
//! cargo run --release -p vigil-benches --example baseline_cost
//! ```
//!
//! A week of one-minute points with a daily pattern, noise and a few spikes (a week, so the
//! daily and weekly profiles are in use), scored five times; prints the best time per point
//! and the JSON size of one detector's checkpointed state. A service mesh of 10k series at
//! one point per minute per series is 167 points a second: the time per point times that is
//! the share of a core that detection takes.

use std::hint::black_box;
use std::time::Instant;

use vigil_detect::{BaselineConfig, BaselineDetector};
use vigil_gen::Rng;

const MINUTE: i64 = 60_000_000;
const POINTS: usize = 7 * 24 * 60;

fn main() {
    let mut rng = Rng::new(7);
    let points: Vec<(i64, f64)> = (0..POINTS)
        .map(|i| {
            let day = (i as f64 / 1440.0) * std::f64::consts::TAU;
            let spike = if rng.chance(0.001) { 400.0 } else { 0.0 };
            let v = 200.0 + 80.0 * day.sin() + 10.0 * rng.normal() + spike;
            (1_700_000_000_000_000 + i as i64 * MINUTE, v)
        })
        .collect();
    let mut best = f64::INFINITY;
    let mut state = 0;
    for _ in 0..5 {
        let started = Instant::now();
        let mut d = BaselineDetector::new(BaselineConfig::default());
        for &(t, v) in &points {
            black_box(d.score(t, v));
        }
        best = best.min(started.elapsed().as_secs_f64() / POINTS as f64);
        state = serde_json::to_vec(&d).expect("serialisable").len();
    }
    let mesh = 10_000.0 / 60.0;
    println!(
        "{POINTS} points: {:.0} ns per point (best of 5); state {state} bytes as JSON; \
         10k series at 1 point/min: {:.1e} of a core",
        best * 1e9,
        best * mesh
    );
}
