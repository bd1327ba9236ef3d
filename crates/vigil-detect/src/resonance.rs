//! The resonance detector: a series is cut into short shapes, the shapes are clustered as they
//! come by adaptive resonance (fuzzy ART with two vigilance levels), and a shape that fits no
//! cluster it has seen is an anomaly, scored by how far it falls below the vigilance.
//!
//! The method is ARTime's (Mark Hampton, 2021; NAB's leader), written anew here from its
//! description: its constants are kept, because they are the published method (its author
//! chose them on NAB's whole corpus, which is why its own hold-out score is no independent
//! evidence for them; see BENCHMARKS.md). Two things are vigil's: the memory holds at most
//! [`MAX_CATEGORIES`] categories (the least recently matched one makes room), so the state is
//! bounded whatever the series' length, and the alarm memory keeps a sum instead of a list.
//!
//! # Contract
//!
//! The detector is told the series' range up front ([`SeriesShape`]), as the Numenta Anomaly
//! Benchmark tells every detector (`inputMin`, `inputMax`), and optionally its length, which
//! sets the learning period as NAB's does (15%, at most [`MAX_PROBATION`] samples). It then
//! sees the samples in order through [`ResonanceDetector::score`] and answers each at once
//! with a score in `[0, 1]`, without looking ahead. Values outside the range are clamped to
//! it. Non-finite values score 0 and are skipped. Without the range, the method loses most of
//! its edge (BENCHMARKS.md): a stream whose range is unknown belongs to the
//! [`baseline`](crate::baseline) detector.
//!
//! # How a sample is scored
//!
//! 1. **Blocks.** Samples are taken in blocks of `step` (so that the learning period holds
//!    about thirteen shapes' worth of blocks). A block is summed up by its mean, or by its
//!    extreme on the side away from the recent block means when that extreme strays 10% or
//!    more from the mean, so a spike survives the summary.
//! 2. **Levels.** The summary is placed on one of [`LEVELS`] levels of the range and pulled
//!    to the running median level when it is within [`SNAP`] of it, so small wobbles around
//!    the usual level are one value.
//! 3. **Shapes.** The last [`WINDOW`] levels (in `[0, 1]` of the range) and their Haar
//!    wavelet coefficients (of the levels rescaled to `[0, 1]`, then rescaled themselves)
//!    are the shape's features: its form whatever its size, and where it lies.
//! 4. **Resonance.** The features, complement coded, are matched against every category: the
//!    match is the fuzzy-AND overlap raised to the third power times the overlap of the
//!    newest level's pair squared (its "energy"). A match above the upper vigilance teaches
//!    its category (fast commit); one above the lower vigilance only adds the shape as a
//!    category of a known cluster; below both, the shape founds a new cluster.
//! 5. **Alarm.** A new cluster after the learning period raises a score: how far the best
//!    match falls below each vigilance, relative to its distance from a perfect match, and
//!    how badly the newest level's energy matched. For a while after an alarm or a new
//!    cluster, only a clearly worse match raises another one.
//! 6. **Vigilance.** Both levels are retuned every half learning period and after each
//!    alarm: the upper one to the running mean of the best matches, the lower one towards
//!    the worst recent match, and down (by the recent shortfalls) while matches fall short.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Levels (blocks) in a shape.
pub const WINDOW: usize = 8;
/// Levels the range is cut into.
pub const LEVELS: usize = 80;
/// A level within this much (of the range) of the running median level is taken as it.
pub const SNAP: f64 = 0.075;
/// The longest learning period, in samples.
pub const MAX_PROBATION: u64 = 750;
/// Categories the memory holds at most; the least recently matched one makes room.
pub const MAX_CATEGORIES: usize = 256;

const FEATURES: usize = 2 * WINDOW;
const CODED: usize = 2 * FEATURES;
/// Shapes in the learning period.
const SHAPES_PER_PROBATION: u64 = 13;
/// Vigilance the learning period's shapes are clustered at to find the first one.
const INITIAL_VIGILANCE: f64 = 0.8;
/// Shapes after an alarm during which only a worse match raises another.
const QUIET: u64 = WINDOW as u64 * 3 / 2;
/// A block's extreme stands for it when it strays at least this share of the block's mean.
const SPIKE_SHARE: f64 = 0.1;
/// The upper vigilance never rises above this.
const MAX_UPPER: f64 = 0.97;
/// How far the lower vigilance moves towards the worst recent match at a retune.
const LOWER_RISE: f64 = 0.19;
/// Shortfalls below the upper vigilance that count when the lower one is lowered, and
/// the most one counts for.
const SHORTFALL_MIN: f64 = 0.05;
const SHORTFALL_MAX: f64 = 0.37;
/// The smallest step down of the lower vigilance.
const MIN_LOWERING: f64 = 0.01;

/// What the detector is told about a series before its first sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesShape {
    /// The smallest value the series takes.
    pub min: f64,
    /// The largest value the series takes.
    pub max: f64,
    /// Samples in the series, when known: sets the learning period to 15% of it (NAB's
    /// probationary period), at most [`MAX_PROBATION`]. Unknown: [`MAX_PROBATION`].
    pub len: Option<u64>,
}

impl SeriesShape {
    /// Nothing seen yet: [`include`](Self::include) each value.
    pub fn empty() -> Self {
        Self {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            len: Some(0),
        }
    }

    /// The shape of `values`: the range of the finite ones, and how many there are in all.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut shape = Self::empty();
        values.into_iter().for_each(|x| shape.include(x));
        shape
    }

    /// Counts `x` and, if it is finite, widens the range to it.
    pub fn include(&mut self, x: f64) {
        self.len = self.len.map(|n| n + 1);
        if x.is_finite() {
            (self.min, self.max) = (self.min.min(x), self.max.max(x));
        }
    }
}

/// The resonance detector of one series (see the module's documentation).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResonanceDetector {
    min: f64,
    span: f64,
    /// Samples per block.
    step: usize,
    /// Shapes (blocks) in the learning period.
    learning: u64,
    block: Vec<f64>,
    /// Blocks summed up so far.
    blocks: u64,
    /// Running average of the blocks' means (each new mean weighs a half).
    mean_trend: f64,
    median: LevelMedian,
    /// The last WINDOW levels, oldest first.
    levels: [f64; WINDOW],
    /// The learning period's features, until it ends.
    learnt: Vec<[f64; FEATURES]>,
    memory: Memory,
    judge: Judge,
}

impl ResonanceDetector {
    /// A detector for a series of this shape.
    pub fn new(shape: SeriesShape) -> Self {
        let probation = match shape.len {
            Some(n) if n < 5000 => n * 15 / 100,
            _ => MAX_PROBATION,
        };
        let probation = probation - probation % 2;
        let step = (probation / (WINDOW as u64 * SHAPES_PER_PROBATION)).max(1);
        // At least two shapes' worth, so a very short series still has one to learn from.
        let learning = (probation / step).max(2 * WINDOW as u64);
        let (min, max) = if shape.min.is_finite() && shape.max.is_finite() {
            (shape.min.min(shape.max), shape.max.max(shape.min))
        } else {
            (0.0, 0.0)
        };
        Self {
            min,
            span: max - min,
            step: step as usize,
            learning,
            block: Vec::with_capacity(step as usize),
            blocks: 0,
            mean_trend: 0.0,
            median: LevelMedian::default(),
            levels: [0.0; WINDOW],
            learnt: Vec::new(),
            memory: Memory::default(),
            judge: Judge::new(learning),
        }
    }

    /// Scores one sample in `[0, 1]` and learns from it; only the last sample of a block can
    /// score above 0.
    pub fn score(&mut self, x: f64) -> f64 {
        if !x.is_finite() {
            return 0.0;
        }
        self.block.push(x);
        if self.block.len() < self.step {
            return 0.0;
        }
        let level = self.summarise();
        self.block.clear();
        self.blocks += 1;
        self.levels.rotate_left(1);
        self.levels[WINDOW - 1] = level;
        let features = if self.blocks >= WINDOW as u64 {
            shape_features(&self.levels)
        } else {
            [0.0; FEATURES]
        };
        self.shape(features)
    }

    /// Bytes in memory (the state and the scratch space of a match), for the cost figures:
    /// grows with the categories learnt, up to [`MAX_CATEGORIES`].
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.block.capacity() * 8
            + self.median.counts.len() * 4
            + (self.judge.matches.capacity() + self.judge.shortfalls.capacity()) * 8
            + self.learnt.capacity() * FEATURES * 8
            + self.memory.weights.capacity() * 8
            + self.memory.last_used.capacity() * 8
            + self.memory.scratch.capacity() * 16
            + self.memory.order.capacity() * 8
    }

    /// The block's summary, placed on a level and snapped to the running median level.
    fn summarise(&mut self) -> f64 {
        let n = self.block.len() as f64;
        let mean = self.block.iter().sum::<f64>() / n;
        let (lo, hi) = self
            .block
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        if self.blocks == 0 {
            self.mean_trend = mean;
        }
        self.mean_trend = (self.mean_trend + mean) / 2.0;
        let mut v = if (hi - self.mean_trend).abs() < (lo - self.mean_trend).abs() {
            lo
        } else {
            hi
        };
        if (v - mean).abs() < SPIKE_SHARE * mean {
            v = mean;
        }
        let mut v = v - self.min;
        if self.span != 0.0 {
            v /= self.span;
        }
        let level = ((v * LEVELS as f64)
            .round_ties_even()
            .clamp(0.0, LEVELS as f64)) as usize;
        let median = self.median.add(level, self.blocks) as f64 / LEVELS as f64;
        let v = level as f64 / LEVELS as f64;
        if (v - median).abs() < SNAP { median } else { v }
    }

    /// Learns the shape and scores it: during the learning period the shapes are kept, and
    /// clustered at its end at a vigilance found from them.
    fn shape(&mut self, features: [f64; FEATURES]) -> f64 {
        let n = self.blocks;
        if n < self.learning {
            self.learnt.push(features);
            return 0.0;
        }
        if n == self.learning {
            self.learnt.push(features);
            let learnt = std::mem::take(&mut self.learnt);
            let vigilance = initial_vigilance(&learnt[WINDOW - 1..], self.learning);
            self.memory.lower = vigilance;
            self.memory.upper = vigilance;
            for (i, f) in learnt.iter().enumerate() {
                self.judge.judge(&mut self.memory, f, i as u64 + 1);
            }
            return 0.0;
        }
        self.judge.judge(&mut self.memory, &features, n)
    }
}

/// The features of a shape: the Haar coefficients of its levels scaled to `[0, 1]`, then
/// scaled to `[0, 1]` themselves, followed by the levels as they are.
fn shape_features(levels: &[f64; WINDOW]) -> [f64; FEATURES] {
    let mut scaled = *levels;
    unit_scale(&mut scaled);
    let mut coefficients = haar(scaled);
    unit_scale(&mut coefficients);
    let mut f = [0.0; FEATURES];
    f[..WINDOW].copy_from_slice(&coefficients);
    f[WINDOW..].copy_from_slice(levels);
    f
}

/// Shifts to a minimum of 0 and, unless all are equal, scales to a maximum of 1.
fn unit_scale(v: &mut [f64]) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    v.iter_mut().for_each(|x| *x -= lo);
    let hi = v.iter().copied().fold(0.0, f64::max);
    if hi != 0.0 {
        v.iter_mut().for_each(|x| *x /= hi);
    }
}

/// The full Haar decomposition: the overall average, then the details from the coarsest to
/// the finest, each the later half less the earlier. (The sign is a convention, but the
/// features are scaled to `[0, 1]` after, so it matters: the other sign scores 75.9 leave one
/// category out, with Ad exchange 14 points higher and known cause and AWS 4–6 lower, and
/// every fold chooses this one on its six training categories; BENCHMARKS.md.)
fn haar(mut a: [f64; WINDOW]) -> [f64; WINDOW] {
    let mut out = [0.0; WINDOW];
    let mut len = WINDOW;
    while len > 1 {
        let half = len / 2;
        let mut averages = [0.0; WINDOW];
        for k in 0..half {
            let (even, odd) = (a[2 * k], a[2 * k + 1]);
            averages[k] = (even + odd) / std::f64::consts::SQRT_2;
            out[half + k] = (odd - even) / std::f64::consts::SQRT_2;
        }
        a = averages;
        len = half;
    }
    out[0] = a[0];
    out
}

/// Similarity of two feature vectors: their cosine, or one minus the other's norm where one
/// is all zeros.
fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    match (na == 0.0, nb == 0.0) {
        (true, _) => 1.0 - nb,
        (false, true) => 1.0 - na,
        _ => a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / (na * nb),
    }
}

/// The first vigilance: the learning period's shapes are clustered at
/// [`INITIAL_VIGILANCE`], the least typical first, and the vigilance is the mean best match
/// of the later half of them.
fn initial_vigilance(shapes: &[[f64; FEATURES]], learning: u64) -> f64 {
    let n = shapes.len();
    let mut typical = vec![0.0; n];
    for i in 0..n {
        typical[i] += 1.0;
        for j in 0..i {
            let s = cosine(&shapes[i], &shapes[j]);
            typical[i] += s;
            typical[j] += s;
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| typical[a].total_cmp(&typical[b]));
    let mut memory = Memory {
        lower: INITIAL_VIGILANCE,
        upper: INITIAL_VIGILANCE,
        ..Memory::default()
    };
    let matches: Vec<f64> = order
        .iter()
        .map(|&i| memory.present(&shapes[i], true).similarity)
        .collect();
    let from = ((learning / 2) as usize)
        .saturating_sub(1)
        .min(n.saturating_sub(1));
    let tail = &matches[from..];
    tail.iter().sum::<f64>() / tail.len().max(1) as f64
}

/// An approximate running median of the levels seen, kept by counts per level.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LevelMedian {
    counts: Vec<u32>,
    level: usize,
    below: u64,
    above: u64,
}

impl Default for LevelMedian {
    fn default() -> Self {
        Self {
            counts: vec![0; LEVELS + 1],
            level: 0,
            below: 0,
            above: 0,
        }
    }
}

impl LevelMedian {
    /// Counts `level` (the `seen`-th, from 0) and returns the median level, moved by at most
    /// one occupied level.
    fn add(&mut self, level: usize, seen: u64) -> usize {
        self.counts[level] += 1;
        if seen == 0 {
            self.level = level;
        }
        match self.level.cmp(&level) {
            std::cmp::Ordering::Greater => self.below += 1,
            std::cmp::Ordering::Less => self.above += 1,
            std::cmp::Ordering::Equal => {}
        }
        let counted = seen + 1;
        let half = counted / 2;
        if half < self.above && self.level < LEVELS {
            self.below += u64::from(self.counts[self.level]);
            self.level += 1;
            while self.level < LEVELS && self.counts[self.level] == 0 {
                self.level += 1;
            }
            self.above = self
                .above
                .saturating_sub(u64::from(self.counts[self.level]));
        } else if half < self.below && self.level > 0 {
            self.above += u64::from(self.counts[self.level]);
            self.level -= 1;
            while self.level > 0 && self.counts[self.level] == 0 {
                self.level -= 1;
            }
            self.below = self
                .below
                .saturating_sub(u64::from(self.counts[self.level]));
        }
        self.level
    }
}

/// The categories: complement-coded weights, each with when it last matched best. (Which
/// cluster a category belongs to decides no score, so it is not kept.)
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Memory {
    weights: Vec<f64>,
    last_used: Vec<u64>,
    clock: u64,
    lower: f64,
    upper: f64,
    #[serde(skip)]
    scratch: Vec<(f64, f64)>,
    #[serde(skip)]
    order: Vec<usize>,
}

/// How a shape met the memory.
#[derive(Debug, Clone, Copy)]
struct Met {
    /// No category within the lower vigilance: the shape founded a new cluster.
    novel: bool,
    /// The best match.
    similarity: f64,
    /// The best-matching category's energy overlap.
    energy: f64,
}

impl Memory {
    fn categories(&self) -> usize {
        self.last_used.len()
    }

    /// Matches the shape against every category and, if `learn`, learns it.
    fn present(&mut self, features: &[f64; FEATURES], learn: bool) -> Met {
        let mut x = [0.0; CODED];
        for (k, f) in features.iter().enumerate() {
            x[k] = *f;
            x[FEATURES + k] = 1.0 - f;
        }
        if self.categories() == 0 {
            // The first category starts as all ones and learns from what resonates with it.
            self.weights.extend_from_slice(&[1.0; CODED]);
            self.last_used.push(0);
            return Met {
                novel: false,
                similarity: 0.0,
                energy: 0.0,
            };
        }
        let energy_at = [FEATURES - 1, CODED - 1];
        self.scratch.clear();
        for w in self.weights.chunks_exact(CODED) {
            let (mut overlap, mut size) = (0.0, 0.0);
            for (xi, wi) in x.iter().zip(w) {
                overlap += xi.min(*wi);
                size += wi;
            }
            let size = if size == 0.0 { 0.001 } else { size };
            let e_size: f64 = energy_at.iter().map(|&k| w[k]).sum();
            let e_overlap: f64 = energy_at.iter().map(|&k| x[k].min(w[k])).sum();
            let energy = if e_size > 0.0 {
                e_overlap / e_size
            } else {
                0.0
            };
            let fit = overlap / size;
            self.scratch
                .push((fit * fit * fit * energy * energy, energy));
        }
        self.order.clear();
        self.order.extend(0..self.categories());
        let scratch = &self.scratch;
        self.order
            .sort_by(|&a, &b| scratch[b].0.total_cmp(&scratch[a].0));
        let best = self.order[0];
        self.clock += 1;
        self.last_used[best] = self.clock;
        let similarity = self.scratch[best].0;
        let energy = if similarity > 0.0 {
            self.scratch[best].1
        } else {
            0.0
        };
        let mut novel = true;
        if learn {
            for rank in 0..self.order.len() {
                let j = self.order[rank];
                let m = self.scratch[j].0;
                if m >= self.upper {
                    // Fast commit: the category shrinks to what it shares with the shape.
                    for (wi, xi) in self.weights[j * CODED..(j + 1) * CODED].iter_mut().zip(&x) {
                        *wi = wi.min(*xi);
                    }
                    novel = false;
                } else if m >= self.lower && novel {
                    // A new category of a cluster it resonates with.
                    self.add(&x);
                    novel = false;
                    break;
                } else {
                    break;
                }
            }
            if novel {
                self.add(&x);
            }
        }
        Met {
            novel,
            similarity,
            energy,
        }
    }

    fn add(&mut self, x: &[f64; CODED]) {
        if self.categories() >= MAX_CATEGORIES {
            let (j, _) = self
                .last_used
                .iter()
                .enumerate()
                .min_by_key(|(_, t)| **t)
                .expect("the memory is full, so not empty");
            self.weights[j * CODED..(j + 1) * CODED].copy_from_slice(x);
            self.last_used[j] = self.clock;
            return;
        }
        self.weights.extend_from_slice(x);
        self.last_used.push(self.clock);
    }
}

/// When a new cluster is an alarm, and how the vigilance follows the series.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Judge {
    learning: u64,
    last_alarm: u64,
    last_alarm_match: f64,
    last_retune: u64,
    /// Set by a new cluster or a retune; cleared once QUIET shapes pass without a new one.
    wary: bool,
    since_novel: u64,
    match_sum: f64,
    match_count: u64,
    /// The best matches of the last half learning period.
    matches: VecDeque<f64>,
    /// How far each of the last learning period's best matches fell below the upper
    /// vigilance.
    shortfalls: VecDeque<f64>,
    /// The worst match of each alarm's quiet time: their sum, count and the last one.
    alarm_match_sum: f64,
    alarms: u64,
    last_alarm_worst: f64,
}

impl Judge {
    fn new(learning: u64) -> Self {
        Self {
            learning,
            last_alarm: 0,
            last_alarm_match: 0.0,
            last_retune: 0,
            wary: false,
            since_novel: 0,
            match_sum: 0.0,
            match_count: 0,
            matches: VecDeque::from(vec![1.0; learning as usize / 2 + 1]),
            shortfalls: VecDeque::from(vec![0.0; learning as usize + 1]),
            alarm_match_sum: 0.0,
            alarms: 0,
            last_alarm_worst: 0.0,
        }
    }

    /// Presents the `i`-th shape (from 1) to the memory and returns its score.
    fn judge(&mut self, memory: &mut Memory, features: &[f64; FEATURES], i: u64) -> f64 {
        let since_alarm = i - self.last_alarm;
        let retune_for_alarm = since_alarm == QUIET;
        let retune_for_trend = i - self.last_retune >= self.learning / 2;
        let quiet = since_alarm <= QUIET;
        if i > self.learning + QUIET && self.wary && self.since_novel >= QUIET {
            self.wary = false;
        }
        // A shape before the first whole window is all zeros: matched, never learnt.
        let met = if i < WINDOW as u64 {
            Met {
                novel: true,
                ..memory.present(features, false)
            }
        } else {
            memory.present(features, true)
        };
        let s = met.similarity;
        self.since_novel = if met.novel { 0 } else { self.since_novel + 1 };
        self.match_sum += s;
        self.match_count += 1;
        self.matches.pop_front();
        self.matches.push_back(s);
        self.shortfalls.pop_front();
        self.shortfalls.push_back(memory.upper - s);
        if since_alarm < QUIET && self.alarms > 0 && s < self.last_alarm_worst {
            self.alarm_match_sum -= self.last_alarm_worst - s;
            self.last_alarm_worst = s;
        }
        let hushed = self.wary || quiet;
        let clearly_worse = s < self.last_alarm_match * if quiet { 0.90 } else { 0.70 };
        let mut score = 0.0;
        if i > self.learning && met.novel && (!hushed || clearly_worse) {
            score = confidence(s, met.energy, memory);
            self.alarm_match_sum += s;
            self.alarms += 1;
            self.last_alarm_worst = s;
            self.last_alarm_match = s;
            self.last_alarm = i;
        }
        self.wary |= met.novel;
        if i > self.learning && (retune_for_alarm || retune_for_trend) {
            self.retune(memory, i);
        }
        score
    }

    fn retune(&mut self, memory: &mut Memory, i: u64) {
        let worst = self.matches.iter().copied().fold(f64::INFINITY, f64::min);
        let upper = (self.match_sum / self.match_count as f64).min(MAX_UPPER);
        let mut lower = memory.lower;
        if lower <= worst {
            lower += (worst - lower) * LOWER_RISE;
        } else {
            let mut lowering = 0.0;
            if i > self.learning * 2 {
                let (sum, n) = self
                    .shortfalls
                    .iter()
                    .filter(|d| **d > SHORTFALL_MIN)
                    .fold((0.0, 0u32), |(s, n), d| (s + d.min(SHORTFALL_MAX), n + 1));
                if n > 0 {
                    lowering = sum / f64::from(n);
                }
            }
            lower -= lowering.max(MIN_LOWERING) / 2.0;
            if self.alarms > 0 {
                lower = lower.max(self.alarm_match_sum / self.alarms as f64);
            }
        }
        memory.lower = lower.min(upper);
        memory.upper = upper;
        self.last_retune = i;
        self.wary = true;
    }
}

/// The alarm's score: how far the match falls below each vigilance, as a share of its
/// distance from a perfect match (the lower one weighs more), plus how badly the newest
/// level matched.
fn confidence(similarity: f64, energy: f64, memory: &Memory) -> f64 {
    let gap = 1.0 - similarity.min(0.999);
    let below_upper = (gap - (1.0 - memory.upper)) / gap;
    let below_lower = (gap - (1.0 - memory.lower)) / gap;
    (0.35 * below_upper + 0.65 * below_lower + 1.5 * (1.0 - energy)).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Xorshift;

    fn detector(values: &[f64]) -> ResonanceDetector {
        ResonanceDetector::new(SeriesShape::of(values.iter().copied()))
    }

    fn run(values: &[f64]) -> Vec<f64> {
        let mut d = detector(values);
        values.iter().map(|&v| d.score(v)).collect()
    }

    fn max(scores: &[f64]) -> f64 {
        scores.iter().copied().fold(0.0, f64::max)
    }

    /// A daily cycle sampled every five minutes, with a little noise.
    fn daily(days: usize, noise: &mut Xorshift) -> Vec<f64> {
        (0..288 * days)
            .map(|i| {
                let phase = i as f64 / 288.0 * std::f64::consts::TAU;
                100.0 + 50.0 * phase.sin() + 2.0 * noise.uniform()
            })
            .collect()
    }

    #[test]
    fn a_step_scores_in_its_block_and_nothing_scores_before() {
        let mut noise = Xorshift(9);
        let values: Vec<f64> = (0..4000)
            .map(|i| if i < 3000 { 40.0 } else { 90.0 } + 2.0 * noise.uniform())
            .collect();
        let d = detector(&values);
        let step = d.step;
        let scores = run(&values);
        // The block holding sample 3000 ends at the next multiple of the step.
        let block_end = 3000usize.div_ceil(step) * step + step - 1;
        let first = scores.iter().position(|s| *s > 0.0);
        assert!(
            first.is_some_and(|f| (3000..=block_end).contains(&f)),
            "first score at {first:?}, the step's block ends at {block_end}"
        );
        assert!(max(&scores) > 0.5, "the step scored {}", max(&scores));
    }

    #[test]
    fn a_learnt_daily_cycle_is_quiet_and_a_flat_day_in_it_is_not() {
        let mut noise = Xorshift(11);
        let mut values = daily(14, &mut noise);
        let clean = run(&values);
        let learnt = max(&clean[288 * 4..]);
        // Day 10 stays at its morning level instead of cycling.
        for v in &mut values[288 * 10..288 * 11] {
            *v = 100.0 + 2.0 * noise.uniform();
        }
        let flat = run(&values);
        let flat_day = max(&flat[288 * 10..288 * 11 + 288 / 4]);
        // Below the threshold NAB's 42 series choose for this detector (0.318,
        // BENCHMARKS.md), and the flat day well above it and above anything before it.
        assert!(learnt < 0.3, "the learnt cycle scored {learnt}");
        let before = max(&flat[288 * 4..288 * 10]);
        assert!(flat_day > 0.5, "the flat day scored {flat_day}");
        assert!(
            flat_day > 2.0 * before,
            "the flat day {flat_day}, before it {before}"
        );
    }

    #[test]
    fn non_finite_values_score_zero_and_are_skipped() {
        let mut noise = Xorshift(5);
        let values = daily(6, &mut noise);
        let mut d = detector(&values);
        let mut clean = detector(&values);
        for (i, &v) in values.iter().enumerate() {
            if i % 10 == 0 {
                for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                    assert_eq!(d.score(bad), 0.0);
                }
            }
            assert_eq!(d.score(v), clean.score(v), "sample {i}");
        }
    }

    #[test]
    fn scores_stay_in_the_unit_interval_whatever_the_values_and_the_range_told() {
        let mut noise = Xorshift(3);
        let values: Vec<f64> = (0..20_000)
            .map(|i| match i % 997 {
                0 => 1e300,
                1 => -1e300,
                2 => 0.0,
                _ => 1e6 * noise.uniform().powi(9),
            })
            .collect();
        // Told the right range, a far too narrow one, an empty one and a meaningless one.
        for (min, max) in [
            (-1e300, 1e300),
            (0.0, 1.0),
            (5.0, 5.0),
            (f64::NAN, f64::INFINITY),
        ] {
            let mut d = ResonanceDetector::new(SeriesShape {
                min,
                max,
                len: None,
            });
            for (i, &v) in values.iter().enumerate() {
                let s = d.score(v);
                assert!(
                    (0.0..=1.0).contains(&s),
                    "range {min}..{max}, sample {i}: {s}"
                );
            }
        }
    }

    #[test]
    fn the_memory_is_bounded_whatever_the_series_length() {
        let mut noise = Xorshift(17);
        let mut d = ResonanceDetector::new(SeriesShape {
            min: -1.0,
            max: 1.0,
            len: None,
        });
        let mut most = 0;
        for i in 0..150_000 {
            d.score(noise.uniform());
            if i % 1000 == 0 {
                most = most.max(d.state_bytes());
            }
        }
        assert_eq!(
            d.memory.categories(),
            MAX_CATEGORIES,
            "white noise fills the memory"
        );
        assert!(most < 100_000, "{most} bytes of state");
        assert_eq!(d.state_bytes(), most, "full, the state stops growing");
    }

    #[test]
    fn a_detector_restored_from_its_checkpoint_scores_as_if_never_stopped() {
        let mut noise = Xorshift(23);
        let mut values = daily(12, &mut noise);
        for v in &mut values[288 * 9..288 * 9 + 40] {
            *v += 80.0;
        }
        let whole = run(&values);
        let mut d = detector(&values);
        let cut = 288 * 6 + 3;
        let mut resumed: Vec<f64> = values[..cut].iter().map(|&v| d.score(v)).collect();
        let json = serde_json::to_string(&d).unwrap();
        let mut d: ResonanceDetector = serde_json::from_str(&json).unwrap();
        resumed.extend(values[cut..].iter().map(|&v| d.score(v)));
        assert_eq!(resumed, whole);
        assert!(max(&whole[288 * 9..]) > 0.0, "the burst scores");
    }

    #[test]
    fn the_haar_transform_keeps_the_energy_and_orders_coarse_to_fine() {
        let x = [1.0, 3.0, 2.0, 2.0, 0.0, 4.0, 5.0, 7.0];
        let c = haar(x);
        let energy = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>();
        assert!((energy(&c) - energy(&x)).abs() < 1e-9);
        // The average times sqrt(8); the coarsest detail is the later half less the earlier.
        assert!((c[0] - 24.0 / 8f64.sqrt()).abs() < 1e-9);
        assert!((c[1] - (16.0 - 8.0) / 8f64.sqrt()).abs() < 1e-9);
        // The finest details are the pairs' differences over sqrt(2).
        let pairs = [2.0, 0.0, 4.0, 2.0].map(|d: f64| d / 2f64.sqrt());
        for (got, want) in c[4..].iter().zip(pairs) {
            assert!((got - want).abs() < 1e-9);
        }
    }

    #[test]
    fn the_running_median_level_follows_the_levels() {
        let mut m = LevelMedian::default();
        let mut last = 0;
        for (seen, level) in [10, 10, 30, 30, 30, 30, 30, 30].into_iter().enumerate() {
            last = m.add(level, seen as u64);
        }
        assert_eq!(last, 30, "most levels are 30");
        let mut m = LevelMedian::default();
        for seen in 0..1000u64 {
            last = m.add((seen % 5) as usize * 10, seen);
        }
        assert_eq!(last, 20, "levels 0..40 evenly");
    }

    // NAB's classic failure modes.

    #[test]
    fn a_constant_series_never_scores() {
        assert!(run(&vec![7.0; 5000]).iter().all(|s| *s == 0.0));
    }

    #[test]
    fn counts_near_zero_rarely_score_and_a_burst_among_them_scores_above_them() {
        // Mostly 0, sometimes 1 or 2; at sample 6000, ten samples of 10.
        let mut noise = Xorshift(31);
        let counts: Vec<f64> = (0..8000)
            .map(|i| {
                let u = noise.uniform().abs();
                if (6000..6010).contains(&i) {
                    10.0
                } else if u < 0.8 {
                    0.0
                } else if u < 0.95 {
                    1.0
                } else {
                    2.0
                }
            })
            .collect();
        let scores = run(&counts);
        let noise_alarms: Vec<f64> = scores[..6000]
            .iter()
            .chain(&scores[6100..])
            .copied()
            .filter(|s| *s > 0.0)
            .collect();
        let burst = scores[6000..6100].iter().copied().fold(0.0, f64::max);
        let loudest = noise_alarms.iter().copied().fold(0.0, f64::max);
        assert!(burst > 0.5, "the burst scores {burst}");
        assert!(
            noise_alarms.len() < 20,
            "{} alarms on noise",
            noise_alarms.len()
        );
        assert!(
            burst > loudest,
            "the burst {burst}, the noise up to {loudest}"
        );
    }
}
