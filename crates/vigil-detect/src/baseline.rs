//! The default baseline detector: how far a sample strays from what the series normally does
//! at this level, this scale and (where the series has one) this point of its daily or weekly
//! pattern.
//!
//! # Contract
//!
//! Feed one series' samples in time order to [`BaselineDetector::score`]; each call returns
//! an anomaly score in `[0, 1]` for that sample and then learns from it. There is no
//! threshold to set: the score is `1 - p`, where `p` is the probability of a deviation at
//! least this large under what the detector has learned, so `0.999` means "one in a
//! thousand". Memory is fixed (a few hundred numbers) and a sample costs O(`sustained`).
//! Non-finite values score 0 and are not learned. Timestamps only place a sample in its
//! day and week; they may repeat or step back (clock changes) without harm.
//!
//! # How a sample is scored
//!
//! 1. **Jump.** A fast EWMA level and the EWMA of absolute residuals around it give a
//!    robust `z` for a sudden step, spike or drop (a request rate falling to zero).
//! 2. **Baseline.** The best of three baselines predicts the sample: a slow EWMA level, or a
//!    profile by hour of day or hour of week, each taken only once it has seen three days
//!    (three weeks) and only if its residuals are clearly smaller than the slow level's.
//!    Its residual gives a `z` for this sample and one for the mean of the last few samples,
//!    which catches a sustained shift that no single sample shows.
//! 3. **Surprise.** Each `z` becomes a tail probability `p`, and surprise is the largest
//!    `-log10 p`. A single sample's `z` (jump, baseline) is read under a Student t with two
//!    degrees of freedom: real metrics have heavy tails, and a Gaussian would call every
//!    burst of a bursty series a one-in-a-billion event. The mean of the last few residuals
//!    is read under a Gaussian with a small share of that heavy tail mixed in
//!    (`SUSTAINED_OUTLIER_SHARE`): averaging tames single bursts, so a mean that stays
//!    several of its own usual widths away is a real shift and should not be judged as
//!    leniently as one sample, while the heavy-tailed share keeps the surprise of a mean
//!    that is hundreds of widths out (a series that jumps from idle to busy) to a few
//!    orders of magnitude instead of thousands, so it does not swamp the memories below.
//! 4. **Recurrence.** A surprise that the same time of day produced on earlier days (a
//!    nightly batch job) is discounted by that earlier surprise.
//! 5. **Hold.** A sample scores only by how far its surprise exceeds the largest recent one
//!    (decaying), so one regime change raises one alarm rather than one per sample until the
//!    baselines adapt.
//!
//! Residuals are clipped before they update a scale, so an anomaly barely widens what the
//! detector accepts as normal; the levels do follow it, so a lasting change becomes normal.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// The largest `|value|` a detector learns from: squares and sums of squares stay finite.
pub const MAX_MAGNITUDE: f64 = 1e150;

const HOUR: i64 = 3_600_000_000;
const DAY: i64 = 24 * HOUR;
const WEEK: i64 = 7 * DAY;

/// `sigma = GAUSS_MAD * E|x - mean|` for a normal distribution: turns a mean absolute
/// residual into a standard deviation.
const GAUSS_MAD: f64 = 1.253_314;

/// How far a sample must lie from its baseline, in standard deviations, to be away from it
/// itself (see [`BaselineDetector::departs`]).
pub const DEPARTS: f64 = 1.0;

/// Time-of-day slots of the recurrence memory (15 minutes each).
const PHASE_SLOTS: usize = 96;

/// Share of the heavy (t2) tail in the model of the sustained-shift statistic, whose body is
/// Gaussian: below about four of its widths a mean of residuals is judged as a Gaussian, far
/// beyond that as one sample in `1 / SUSTAINED_OUTLIER_SHARE` drawn from the heavy tail.
const SUSTAINED_OUTLIER_SHARE: f64 = 0.002;

/// Settings of a [`BaselineDetector`]. The defaults are meant for every series; nothing here
/// is a threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct BaselineConfig {
    /// Samples learned before the detector scores anything above 0.
    pub warmup: u64,
    /// Half-life, in samples, of the fast level that jumps are measured from: a short mean of
    /// the last few samples, so a bursty series' sample-to-sample noise is no jump while a
    /// step or spike still is (8; with 1, NAB's leave-one-category-out score was 52.4
    /// against 62.4: BENCHMARKS.md).
    pub level_half_life: f64,
    /// Half-life, in samples, of the residual scales.
    pub scale_half_life: f64,
    /// Half-life, in samples, of the slow (non-seasonal) level.
    pub long_half_life: f64,
    /// Half-life, in days (weeks), of the hour-of-day (hour-of-week) profiles.
    pub seasonal_half_life: f64,
    /// A seasonal profile is used only if its mean absolute residual is below this fraction
    /// of the slow level's.
    pub seasonal_gain: f64,
    /// Samples averaged for the sustained-shift statistic.
    pub sustained: usize,
    /// Residuals are clipped at this many standard deviations before they update a scale.
    pub clip: f64,
    /// Half-life, in samples, of the alarm hold.
    pub hold_half_life: f64,
    /// Cap on the alarm hold, in units of surprise (`-log10 p`).
    pub hold_cap: f64,
    /// Half-life, in days, of the memory of surprises by time of day.
    pub recurrence_half_life_days: f64,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        Self {
            warmup: 64,
            level_half_life: 8.0,
            scale_half_life: 200.0,
            long_half_life: 1000.0,
            seasonal_half_life: 3.0,
            seasonal_gain: 0.8,
            sustained: 6,
            clip: 8.0,
            hold_half_life: 100.0,
            hold_cap: 10.0,
            recurrence_half_life_days: 7.0,
        }
    }
}

/// The EWMA weight of a new sample for a half-life in samples.
fn alpha(half_life: f64) -> f64 {
    1.0 - 0.5f64.powf(1.0 / half_life.max(1e-9))
}

/// An exponentially weighted mean that is a plain mean while it has seen fewer than
/// `1 / alpha` samples, so it is not biased towards its starting value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Ewma {
    value: f64,
    n: f64,
}

impl Ewma {
    fn learn(&mut self, x: f64, alpha: f64) {
        self.n += 1.0;
        self.value += alpha.max(1.0 / self.n) * (x - self.value);
    }

    fn is_empty(&self) -> bool {
        self.n == 0.0
    }
}

/// A prediction and the mean absolute residual it usually has.
#[derive(Debug, Clone, Copy)]
struct Prediction {
    value: f64,
    error: f64,
}

impl Prediction {
    /// The residual of `x` in standard deviations (at least `floor` wide).
    fn z(&self, x: f64, floor: f64) -> f64 {
        (x - self.value) / (GAUSS_MAD * self.error + floor)
    }
}

/// Learns the mean absolute residual of a predictor, with residuals clipped at `clip`
/// standard deviations so that anomalies barely move it.
fn learn_error(error: &mut Ewma, residual: f64, floor: f64, config: &BaselineConfig) {
    let limit = config.clip * (GAUSS_MAD * error.value + floor);
    error.learn(residual.abs().min(limit), alpha(config.scale_half_life));
}

/// A level: an EWMA of the value and of the absolute residual around it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Level {
    mean: Ewma,
    error: Ewma,
}

impl Level {
    fn predict(&self) -> Option<Prediction> {
        (!self.mean.is_empty()).then_some(Prediction {
            value: self.mean.value,
            error: self.error.value,
        })
    }

    fn learn(&mut self, x: f64, half_life: f64, floor: f64, config: &BaselineConfig) {
        if !self.mean.is_empty() {
            learn_error(&mut self.error, x - self.mean.value, floor, config);
        }
        self.mean.learn(x, alpha(half_life));
    }
}

/// A profile by hour of the day or of the week: one EWMA of the value per hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Seasonal {
    period: i64,
    hours: Vec<Ewma>,
    error: Ewma,
}

impl Seasonal {
    fn new(period: i64) -> Self {
        Self {
            period,
            hours: vec![Ewma::default(); (period / HOUR) as usize],
            error: Ewma::default(),
        }
    }

    fn hour(&self, t: i64) -> usize {
        (t.rem_euclid(self.period) / HOUR) as usize
    }

    fn predict(&self, t: i64) -> Option<Prediction> {
        let h = &self.hours[self.hour(t)];
        (!h.is_empty()).then_some(Prediction {
            value: h.value,
            error: self.error.value,
        })
    }

    /// `samples_per_hour` turns the half-life in periods into one in samples of an hour.
    fn learn(&mut self, t: i64, x: f64, samples_per_hour: f64, floor: f64, c: &BaselineConfig) {
        if let Some(p) = self.predict(t) {
            learn_error(&mut self.error, x - p.value, floor, c);
        }
        let h = self.hour(t);
        self.hours[h].learn(x, alpha(c.seasonal_half_life * samples_per_hour));
    }
}

/// The largest surprise seen in each 15-minute slot of the day, decaying over days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Recurrence {
    /// `(surprise, when)` per slot (`PHASE_SLOTS` of them); decayed when read.
    slots: Vec<(f64, i64)>,
}

impl Recurrence {
    fn slot(t: i64) -> usize {
        (t.rem_euclid(DAY) * PHASE_SLOTS as i64 / DAY) as usize
    }

    fn decayed(&self, slot: usize, t: i64, half_life_days: f64) -> f64 {
        let (s, when) = self.slots[slot];
        let days = (t - when).max(0) as f64 / DAY as f64;
        s * 0.5f64.powf(days / half_life_days)
    }

    /// The surprise this time of day (± one slot, as jobs drift) produced on earlier days.
    fn expected(&self, t: i64, half_life_days: f64) -> f64 {
        let slot = Self::slot(t);
        [PHASE_SLOTS - 1, 0, 1]
            .iter()
            .map(|d| self.decayed((slot + d) % PHASE_SLOTS, t, half_life_days))
            .fold(0.0, f64::max)
    }

    fn learn(&mut self, t: i64, surprise: f64, half_life_days: f64) {
        let slot = Self::slot(t);
        if surprise >= self.decayed(slot, t, half_life_days) {
            self.slots[slot] = (surprise, t);
        }
    }
}

/// The default online anomaly detector for one metric series; see the [module docs](self).
///
/// It serialises (serde) for checkpoints: everything it has learned, not its configuration,
/// which a deserialised detector takes from [`BaselineConfig::default`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineDetector {
    #[serde(skip)]
    config: BaselineConfig,
    /// Finite samples seen.
    seen: u64,
    first_t: Option<i64>,
    last_t: Option<i64>,
    /// Typical time between samples, in microseconds.
    interval: Ewma,
    /// Typical `|value|`: sets the smallest scale, so a constant series still has one.
    magnitude: Ewma,
    fast: Level,
    slow: Level,
    daily: Seasonal,
    weekly: Seasonal,
    /// Residuals from the chosen baseline, for the sustained-shift statistic.
    recent: VecDeque<f64>,
    /// Mean absolute value of the mean of `recent`.
    recent_error: Ewma,
    recurrence: Recurrence,
    hold: f64,
    /// The last sample's score without the hold: see [`BaselineDetector::deviation`].
    deviation: f64,
    /// Whether the last sample itself lay away from its baseline: see
    /// [`BaselineDetector::departs`].
    #[serde(default)]
    departs: bool,
}

impl BaselineDetector {
    /// A detector that has seen nothing yet.
    pub fn new(config: BaselineConfig) -> Self {
        Self {
            recent: VecDeque::with_capacity(config.sustained.max(1)),
            config,
            seen: 0,
            first_t: None,
            last_t: None,
            interval: Ewma::default(),
            magnitude: Ewma::default(),
            fast: Level::default(),
            slow: Level::default(),
            daily: Seasonal::new(DAY),
            weekly: Seasonal::new(WEEK),
            recent_error: Ewma::default(),
            recurrence: Recurrence {
                slots: vec![(0.0, 0); PHASE_SLOTS],
            },
            hold: 0.0,
            deviation: 0.0,
            departs: false,
        }
    }

    /// Whether a deserialised detector has the shape this build expects (a checkpoint from
    /// another version may not); use a new one otherwise.
    pub fn is_consistent(&self) -> bool {
        self.recurrence.slots.len() == PHASE_SLOTS
            && self.daily.hours.len() == (DAY / HOUR) as usize
            && self.weekly.hours.len() == (WEEK / HOUR) as usize
            && self.daily.period == DAY
            && self.weekly.period == WEEK
    }

    /// How unusual the last scored sample is, in `[0, 1]` like the score, but without the
    /// hold (step 5): it stays high for as long as the series stays away from its baselines,
    /// until they adapt, where the score raises one alarm per change. Alerting rules use it
    /// to say whether an anomaly is still going on. 0 during warm-up and for non-finite
    /// samples.
    pub fn deviation(&self) -> f64 {
        self.deviation
    }

    /// Whether the last scored sample itself lies at least [`DEPARTS`] standard deviations
    /// from its baseline, on the side the recent samples stray to. A deviation can stay
    /// high for a few samples after a single spike (the sustained-shift statistic averages
    /// the last few residuals, the spike among them) while the samples are back to normal:
    /// an alert whose condition must hold for a while asks this of every sample, so one
    /// spike does not fire it.
    pub fn departs(&self) -> bool {
        self.departs
    }

    /// Scores a sample in `[0, 1]` (see the [module docs](self)), then learns from it.
    /// Non-finite values, and values beyond ±[`MAX_MAGNITUDE`] (whose squares would overflow
    /// the learned variability and poison the state, and its checkpoint), score 0 and are
    /// not learned.
    pub fn score(&mut self, timestamp_micros: i64, value: f64) -> f64 {
        self.deviation = 0.0;
        self.departs = false;
        if !value.is_finite() || value.abs() > MAX_MAGNITUDE {
            return 0.0;
        }
        let (t, x) = (timestamp_micros, value);
        let c = &self.config;
        if let Some(last) = self.last_t
            && t > last
        {
            self.interval.learn((t - last) as f64, alpha(50.0));
        }
        self.last_t = Some(t);
        let history = t - *self.first_t.get_or_insert(t);
        self.magnitude.learn(x.abs(), alpha(c.long_half_life));
        let floor = 1e-3 * self.magnitude.value + 1e-12;

        // 1. Jump away from the fast level.
        let z_jump = self.fast.predict().map_or(0.0, |p| p.z(x, floor));

        // 2. Deviation from the best baseline, for this sample and the last few.
        let mut baseline = self.slow.predict();
        for (season, needs) in [(&self.daily, 3 * DAY), (&self.weekly, 3 * WEEK)] {
            if history < needs {
                continue;
            }
            if let (Some(p), Some(b)) = (season.predict(t), baseline)
                && p.error < c.seasonal_gain * b.error
            {
                baseline = Some(p);
            }
        }
        let (mut z_point, mut z_sustained) = (0.0, 0.0);
        if let Some(p) = baseline {
            z_point = p.z(x, floor);
            if self.recent.len() == c.sustained.max(1) {
                self.recent.pop_front();
            }
            self.recent.push_back(x - p.value);
            let mean = self.recent.iter().sum::<f64>() / self.recent.len() as f64;
            self.departs = z_point.abs() >= DEPARTS && z_point * mean >= 0.0;
            z_sustained = mean / (GAUSS_MAD * self.recent_error.value + floor);
            learn_error(&mut self.recent_error, mean, floor, c);
        }

        // Learn.
        let samples_per_hour = if self.interval.is_empty() {
            1.0
        } else {
            (HOUR as f64 / self.interval.value).max(1.0)
        };
        self.fast.learn(x, c.level_half_life, floor, c);
        self.slow.learn(x, c.long_half_life, floor, c);
        self.daily.learn(t, x, samples_per_hour, floor, c);
        self.weekly.learn(t, x, samples_per_hour, floor, c);
        self.seen += 1;

        // 3-5. Surprise, discounted by recurrence and by the hold.
        let z = z_jump.abs().max(z_point.abs());
        let surprise = (-log10_t2_tail(z)).max(-log10_sustained_tail(z_sustained));
        let half_life_days = c.recurrence_half_life_days;
        let recurring = if history >= DAY {
            self.recurrence.expected(t, half_life_days)
        } else {
            0.0
        };
        self.recurrence.learn(t, surprise, half_life_days);
        if self.seen <= c.warmup {
            return 0.0;
        }
        let surprise = surprise - recurring;
        self.deviation = (1.0 - 10f64.powf(-surprise.max(0.0))).clamp(0.0, 1.0);
        let out = (surprise - self.hold).max(0.0);
        self.hold = (self.hold * (1.0 - alpha(c.hold_half_life))).max(surprise.min(c.hold_cap));
        (1.0 - 10f64.powf(-out)).clamp(0.0, 1.0)
    }
}

/// `log10 P(|T| >= z)` for Student's t with two degrees of freedom, whose tail has the
/// closed form `1 - z / sqrt(2 + z^2)`, written here without cancellation.
fn log10_t2_tail(z: f64) -> f64 {
    let z = z.abs();
    if !z.is_finite() {
        return f64::NEG_INFINITY;
    }
    let q = (2.0 + z * z).sqrt();
    (2.0 / (q * (q + z))).log10().min(0.0)
}

/// `log10 P(|Z| >= z)` for a standard normal `Z`, from the complementary error function
/// (Numerical Recipes' `erfcc`, relative error below `1.2e-7` for every `z`, so its
/// logarithm stays accurate far into the tail where `1 - erf` would cancel to 0).
fn log10_gauss_tail(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    if !x.is_finite() {
        return f64::NEG_INFINITY;
    }
    let t = 1.0 / (1.0 + 0.5 * x);
    let poly = -1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    ((t.ln() - x * x + poly) / std::f64::consts::LN_10).min(0.0)
}

/// `log10 P(|M| >= z)` for the sustained-shift statistic `M`: a Gaussian with a
/// [`SUSTAINED_OUTLIER_SHARE`] of Student's t with two degrees of freedom mixed in.
fn log10_sustained_tail(z: f64) -> f64 {
    let e = SUSTAINED_OUTLIER_SHARE;
    let p = (1.0 - e) * 10f64.powf(log10_gauss_tail(z)) + e * 10f64.powf(log10_t2_tail(z));
    if p > 0.0 {
        p.log10().min(0.0)
    } else {
        f64::NEG_INFINITY
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Xorshift;

    const MINUTE: i64 = 60_000_000;

    fn run(values: &[f64], step: i64) -> Vec<f64> {
        let mut d = BaselineDetector::new(BaselineConfig::default());
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| d.score(1_400_000_000_000_000 + i as i64 * step, v))
            .collect()
    }

    fn max(scores: &[f64]) -> f64 {
        scores.iter().copied().fold(0.0, f64::max)
    }

    #[test]
    fn the_sustained_tail_is_gaussian_in_its_body_and_heavy_far_out() {
        // Gaussian tails: P(|Z| >= 1.96) = 0.05, P(|Z| >= 5) = 5.733e-7.
        assert!((log10_gauss_tail(1.96) - 0.05f64.log10()).abs() < 1e-4);
        assert!((log10_gauss_tail(5.0) - 5.733e-7f64.log10()).abs() < 1e-3);
        assert!(log10_gauss_tail(0.0).abs() < 1e-6);
        // Near the body the mixture is the Gaussian; a mean four widths out is far more
        // surprising than one sample four widths out under t2.
        assert!((log10_sustained_tail(2.0) - log10_gauss_tail(2.0)).abs() < 0.01);
        assert!(-log10_sustained_tail(4.0) > 2.0 * -log10_t2_tail(4.0));
        // Far out the heavy share bounds it: at most -log10(share) beyond the t2 surprise.
        for z in [10.0, 100.0, 1e6, f64::INFINITY] {
            let s = -log10_sustained_tail(z);
            let bound = -log10_t2_tail(z) - SUSTAINED_OUTLIER_SHARE.log10();
            assert!(s <= bound + 1e-9, "z {z}: {s} > {bound}");
            assert!(s >= -log10_t2_tail(z), "z {z}: {s}");
        }
    }

    #[test]
    fn a_step_after_a_constant_scores_high_there_and_low_before() {
        let values: Vec<f64> = (0..600)
            .map(|i| if i < 500 { 10.0 } else { 20.0 })
            .collect();
        let scores = run(&values, 5 * MINUTE);
        assert!(scores[500] > 0.99, "step scored {}", scores[500]);
        assert!(
            max(&scores[..500]) < 0.01,
            "before: {}",
            max(&scores[..500])
        );
    }

    #[test]
    fn a_rate_falling_to_zero_scores_high() {
        let mut noise = Xorshift(7);
        let values: Vec<f64> = (0..1500)
            .map(|i| {
                if i < 1400 {
                    200.0 + 30.0 * noise.uniform()
                } else {
                    noise.uniform().abs()
                }
            })
            .collect();
        let scores = run(&values, MINUTE);
        let normal = max(&scores[300..1400]);
        assert!(scores[1400] > 0.9, "drop scored {}", scores[1400]);
        assert!(
            scores[1400] > normal,
            "drop {} vs normal {normal}",
            scores[1400]
        );
    }

    #[test]
    fn a_clean_daily_sine_scores_low_once_learned() {
        // Hourly samples of a daily cycle with a little noise, for four weeks.
        let mut noise = Xorshift(11);
        let values: Vec<f64> = (0..24 * 28)
            .map(|i| {
                let phase = i as f64 / 24.0 * std::f64::consts::TAU;
                100.0 + 50.0 * phase.sin() + noise.uniform()
            })
            .collect();
        let scores = run(&values, 60 * MINUTE);
        let late = max(&scores[24 * 7..]);
        assert!(late < 0.5, "a learned sine scored {late}");
    }

    #[test]
    fn non_finite_values_score_zero_and_are_not_learned() {
        let mut d = BaselineDetector::new(BaselineConfig::default());
        let mut clean = BaselineDetector::new(BaselineConfig::default());
        for i in 0..300 {
            let t = i * MINUTE;
            let v = 5.0 + (i % 7) as f64;
            if i % 10 == 0 {
                for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                    assert_eq!(d.score(t, bad), 0.0);
                }
            }
            assert_eq!(d.score(t, v), clean.score(t, v), "sample {i}");
        }
    }

    #[test]
    fn scores_stay_in_the_unit_interval() {
        let mut noise = Xorshift(3);
        let mut d = BaselineDetector::new(BaselineConfig::default());
        for i in 0..5000i64 {
            let v = match i % 997 {
                0 => 1e300,
                1 => -1e300,
                2 => 0.0,
                _ => 1e6 * noise.uniform().powi(9),
            };
            // Time steps back now and then, as a clock change would.
            let t = i * MINUTE - (i % 500 == 0) as i64 * 90 * MINUTE;
            let s = d.score(t, v);
            assert!((0.0..=1.0).contains(&s), "sample {i}: {s}");
        }
    }

    #[test]
    fn a_surprise_repeating_at_the_same_time_each_day_fades() {
        // A nightly job from the third day on: a spike at the same time every day on a noisy
        // 5-minute series.
        let mut noise = Xorshift(5);
        let per_day = 288;
        let values: Vec<f64> = (0..per_day * 10)
            .map(|i| {
                let spike = if i >= 2 * per_day && i % per_day == 24 {
                    60.0
                } else {
                    0.0
                };
                10.0 + noise.uniform() + spike
            })
            .collect();
        let scores = run(&values, 5 * MINUTE);
        let first = scores[2 * per_day + 24];
        let last = scores[9 * per_day + 24];
        assert!(first > 0.9, "the first nightly spike scored {first}");
        assert!(last < first, "the ninth scored {last}, the first {first}");
    }
}
