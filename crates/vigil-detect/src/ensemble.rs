//! The resonance and baseline detectors together: the resonance detector's score plus the
//! baseline's evidence, each unit of its surprise (a deviation of one in ten, one in a
//! hundred, …) worth [`BASELINE_WEIGHT`], up to [`SURPRISE_CAP`] units.
//!
//! The two see different things. The resonance detector flags a shape of the series it has
//! never seen, however small; the baseline flags a value far from the series' level or its
//! time of day, however familiar its shape. Added, each keeps its own scale: a sample both
//! flag scores higher than one either flags alone, and the baseline's least surprising
//! alarms count for little next to a new shape. On NAB's 42 series this scores 78.5 leave
//! one category out against the resonance detector's 75.3 alone, and stays there over the
//! threshold band; the weight is the one five of six folds choose on their training
//! categories, on a plateau (0.02–0.05 per unit all score 78.46–78.49). BENCHMARKS.md.

use serde::{Deserialize, Serialize};

use crate::baseline::{BaselineConfig, BaselineDetector};
use crate::resonance::{ResonanceDetector, SeriesShape};

/// Score per unit of the baseline's surprise (`-log10 p`).
pub const BASELINE_WEIGHT: f64 = 0.05;
/// Units of surprise beyond which the baseline adds nothing more (its alarm hold's cap).
pub const SURPRISE_CAP: f64 = 10.0;

/// A resonance and a baseline detector over the same series (see the module docs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnsembleDetector {
    resonance: ResonanceDetector,
    baseline: BaselineDetector,
}

impl EnsembleDetector {
    /// Both detectors for a series of this shape (the resonance detector is told it).
    pub fn new(shape: SeriesShape) -> Self {
        Self {
            resonance: ResonanceDetector::new(shape),
            baseline: BaselineDetector::new(BaselineConfig::default()),
        }
    }

    /// Scores a sample in `[0, 1]` and learns from it.
    pub fn score(&mut self, timestamp_micros: i64, value: f64) -> f64 {
        let resonance = self.resonance.score(value);
        let baseline = self.baseline.score(timestamp_micros, value);
        (resonance + BASELINE_WEIGHT * surprise(baseline)).min(1.0)
    }
}

/// The baseline's score `1 - p` as `-log10 p`, at most [`SURPRISE_CAP`].
fn surprise(score: f64) -> f64 {
    if score >= 1.0 {
        return SURPRISE_CAP;
    }
    (-(1.0 - score).max(1e-300).log10()).clamp(0.0, SURPRISE_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_baseline_adds_its_surprise_and_the_sum_stays_a_score() {
        assert_eq!(surprise(0.0), 0.0);
        assert!((surprise(0.999) - 3.0).abs() < 1e-9);
        assert_eq!(surprise(1.0 - 1e-12), SURPRISE_CAP);
        assert_eq!(surprise(1.0), SURPRISE_CAP);
        // A step on a series: each sample scores the resonance detector's score plus the
        // baseline's evidence, from detectors that each saw every sample in order; the step
        // scores high and nothing before it comes close.
        let values: Vec<f64> = (0..3000)
            .map(|i| if i < 2500 { 10.0 } else { 16.0 } + (i % 3) as f64)
            .collect();
        let shape = SeriesShape {
            min: 10.0,
            max: 18.0,
            len: Some(3000),
        };
        let mut both = EnsembleDetector::new(shape);
        let mut resonance = ResonanceDetector::new(shape);
        let mut baseline = BaselineDetector::new(BaselineConfig::default());
        let (mut before, mut step, mut from_baseline) = (0.0f64, 0.0f64, 0);
        for (i, &v) in values.iter().enumerate() {
            let t = 1_400_000_000_000_000 + i as i64 * 300_000_000;
            let got = both.score(t, v);
            let (r, b) = (resonance.score(v), baseline.score(t, v));
            let want = (r + BASELINE_WEIGHT * surprise(b)).min(1.0);
            assert!((got - want).abs() < 1e-12, "sample {i}: {got}, want {want}");
            from_baseline += usize::from(r == 0.0 && got > 0.0);
            if i < 2500 {
                before = before.max(got);
            } else {
                step = step.max(got);
            }
        }
        assert!(step > 0.9, "the step scores {step}");
        assert!(before < 0.3, "before the step {before}");
        assert!(
            from_baseline > 0,
            "the baseline flags samples the resonance detector does not"
        );
    }
}
