//! NAB's scoring rules: the sigmoid, probation, the threshold sweep and normalisation.

use super::{
    MAX_PROBATION_ROWS, NO_DETECTION_THRESHOLD, NabError, PROBATION_PERCENT, Timestamp,
    format_timestamp,
};

/// NAB's scaled sigmoid of a relative position `y`: `2 / (1 + e^(5y)) - 1`, or `-1` when
/// `y > 3` (a false positive far behind its window).
///
/// `sigma(-1) ≈ 0.98661` (a window's first row), `sigma(-0.5) ≈ 0.84828`, `sigma(0) = 0` (just
/// past the window's end), `sigma(1) ≈ -0.98661`.
pub fn scaled_sigmoid(y: f64) -> f64 {
    if y > 3.0 {
        -1.0
    } else {
        // NAB: 2 * sigmoid(-5y) - 1 with sigmoid(x) = 1 / (1 + e^-x).
        2.0 * (1.0 / (1.0 + (5.0 * y).exp())) - 1.0
    }
}

/// Rows at the start of a series of `rows` rows that are not scored:
/// `min(floor(0.15 * rows), 750)` (NAB's `getProbationPeriod`).
pub fn probation_length(rows: usize) -> usize {
    ((PROBATION_PERCENT * rows as f64).floor() as usize).min(MAX_PROBATION_ROWS)
}

/// The weights of one application profile (NAB's `CostMatrix`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostMatrix {
    /// Value of a detection at the first row of a window.
    pub tp_weight: f64,
    /// Cost of a detection far from any window (scaled down right after a window).
    pub fp_weight: f64,
    /// Cost of a window without a detection.
    pub fn_weight: f64,
    /// Carried for completeness; NAB's score does not use it.
    pub tn_weight: f64,
}

/// A named application profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// The profile's name, e.g. `standard`.
    pub name: String,
    /// Its weights.
    pub costs: CostMatrix,
}

impl Profile {
    /// NAB's three published profiles, as in its `config/profiles.json`: `standard`,
    /// `reward_low_FP_rate` and `reward_low_FN_rate`.
    pub fn nab_defaults() -> Vec<Profile> {
        let p = |name: &str, fp_weight, fn_weight| Profile {
            name: name.into(),
            costs: CostMatrix {
                tp_weight: 1.0,
                fp_weight,
                fn_weight,
                tn_weight: 1.0,
            },
        };
        vec![
            p("standard", 0.11, 1.0),
            p("reward_low_FP_rate", 0.22, 1.0),
            p("reward_low_FN_rate", 0.11, 2.0),
        ]
    }
}

/// A labelled anomaly window: the rows with `start <= timestamp <= end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First timestamp in the window.
    pub start: Timestamp,
    /// Last timestamp in the window.
    pub end: Timestamp,
}

/// One series of the corpus: its rows' timestamps, in file order (in time order, but NAB's
/// data repeats a few timestamps), and its windows (in time order, disjoint).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledSeries {
    /// The series' name, e.g. `realKnownCause/nyc_taxi.csv`; used in error messages.
    pub name: String,
    /// The timestamp of every row.
    pub timestamps: Vec<Timestamp>,
    /// The labelled windows.
    pub windows: Vec<Window>,
}

/// Detection counts at one threshold, over the scored (post-probation) rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Windows with at least one detection.
    pub tp_windows: usize,
    /// Scorable windows (at least one row after probation) without a detection.
    pub fn_windows: usize,
    /// Detections outside every window.
    pub fp_rows: usize,
    /// Detections inside windows, counting every row (NAB's per-row `TP` column).
    pub tp_rows: usize,
}

/// Where a scored row falls, with its profile-independent ("unit") value.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// Inside the window with this corpus-wide id; `unit = sigma(y) / sigma(-1)`, in `(0, 1]`.
    Window { id: usize, unit: f64 },
    /// Outside every window; `unit` is the FP's sigma, in `[-1, 0)`.
    Outside { unit: f64 },
}

#[derive(Debug, Clone, Copy)]
struct Point {
    anomaly_score: f64,
    target: Target,
}

/// The scored rows of a corpus for one detector, ready to be swept over thresholds.
///
/// Add each series with [`Sweep::add_series`], then call [`Sweep::curve`]. The values of
/// rows are kept independent of the profile (a TP's `sigma(y) / sigma(-1)`, a FP's `sigma`),
/// so one sweep serves every profile.
#[derive(Debug, Clone, Default)]
pub struct Sweep {
    points: Vec<Point>,
    labelled_windows: usize,
    scorable_windows: usize,
}

impl Sweep {
    /// An empty sweep.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one series with the detector's anomaly score for each of its rows.
    ///
    /// Errors if the lengths differ, a score is not a number in `[0, 1]`, or a window is
    /// reversed, overlaps or precedes the previous one, or covers no row.
    pub fn add_series(&mut self, series: &LabelledSeries, scores: &[f64]) -> Result<(), NabError> {
        let name = &series.name;
        let ts = &series.timestamps;
        if ts.len() != scores.len() {
            return Err(NabError::new(format!(
                "{name}: {} anomaly scores for {} rows",
                scores.len(),
                ts.len()
            )));
        }
        if let Some(i) = scores.iter().position(|s| !(0.0..=1.0).contains(s)) {
            return Err(NabError::new(format!(
                "{name}: anomaly score {} at row {i} is not in [0, 1]",
                scores[i]
            )));
        }

        // Each window as the (first, last) row it covers, found by scanning forward from the
        // end of the previous window, as NAB walks the rows: the first row at or after
        // `start`, up to the row before the first one after `end`. (NAB's data is in time
        // order but not strictly: DST changes repeat timestamps, and one series steps back
        // an hour; none of that is at a window's edge.)
        let mut ranges: Vec<(usize, usize)> = Vec::with_capacity(series.windows.len());
        let mut prev_end: Option<Timestamp> = None;
        for w in &series.windows {
            let describe = || {
                format!(
                    "{name}: window [{}, {}]",
                    format_timestamp(w.start),
                    format_timestamp(w.end)
                )
            };
            if w.start > w.end || prev_end.is_some_and(|e| w.start <= e) {
                return Err(NabError::new(format!(
                    "{}: windows must be in order, disjoint, with start <= end",
                    describe()
                )));
            }
            prev_end = Some(w.end);
            let from = ranges.last().map_or(0, |&(_, last)| last + 1);
            let first = from
                + ts[from..]
                    .iter()
                    .position(|&t| t >= w.start)
                    .unwrap_or(ts.len() - from);
            let end = first
                + ts[first..]
                    .iter()
                    .position(|&t| t > w.end)
                    .unwrap_or(ts.len() - first);
            if first == end {
                return Err(NabError::new(format!("{} covers no rows", describe())));
            }
            ranges.push((first, end - 1));
        }

        let probation = probation_length(ts.len());
        let max_tp = scaled_sigmoid(-1.0);
        let base_id = self.labelled_windows;
        let mut next = 0; // the first window not yet left behind
        let mut prev: Option<(usize, usize)> = None; // the last window left behind
        for (i, &anomaly_score) in scores.iter().enumerate() {
            while next < ranges.len() && i > ranges[next].1 {
                prev = Some(ranges[next]);
                next += 1;
            }
            let target = match ranges.get(next) {
                Some(&(first, last)) if i >= first => {
                    let width = (last - first + 1) as f64;
                    let y = -((last - i + 1) as f64) / width;
                    Target::Window {
                        id: base_id + next,
                        unit: scaled_sigmoid(y) / max_tp,
                    }
                }
                _ => Target::Outside {
                    unit: match prev {
                        None => -1.0,
                        // (w - 1) is 0 for a one-row window: y = inf, sigma = -1.
                        Some((first, last)) => {
                            scaled_sigmoid((i - last) as f64 / (last - first) as f64)
                        }
                    },
                },
            };
            if i >= probation {
                self.points.push(Point {
                    anomaly_score,
                    target,
                });
            }
        }
        self.labelled_windows += ranges.len();
        self.scorable_windows += ranges
            .iter()
            .filter(|&&(_, last)| last >= probation)
            .count();
        Ok(())
    }

    /// Windows labelled in the series added so far.
    pub fn labelled_windows(&self) -> usize {
        self.labelled_windows
    }

    /// Labelled windows with at least one row after probation: the ones a FN can be
    /// charged for.
    pub fn scorable_windows(&self) -> usize {
        self.scorable_windows
    }

    /// The detections and their profile-independent values at every candidate threshold:
    /// [`NO_DETECTION_THRESHOLD`], then every distinct anomaly score, highest first.
    pub fn curve(&self) -> ThresholdCurve {
        let mut order: Vec<&Point> = self.points.iter().collect();
        order.sort_by(|a, b| b.anomaly_score.total_cmp(&a.anomaly_score));

        let mut best: Vec<Option<f64>> = vec![None; self.labelled_windows];
        let mut cur = ThresholdPoint {
            threshold: NO_DETECTION_THRESHOLD,
            tp_value: 0.0,
            fp_value: 0.0,
            counts: Counts {
                fn_windows: self.scorable_windows,
                ..Counts::default()
            },
        };
        let mut points = vec![cur];
        for (k, p) in order.iter().enumerate() {
            match p.target {
                Target::Outside { unit } => {
                    cur.fp_value += unit;
                    cur.counts.fp_rows += 1;
                }
                Target::Window { id, unit } => {
                    cur.counts.tp_rows += 1;
                    match best[id] {
                        None => {
                            best[id] = Some(unit);
                            cur.tp_value += unit;
                            cur.counts.tp_windows += 1;
                            cur.counts.fn_windows -= 1;
                        }
                        // An earlier row of the window: it replaces the later detection.
                        Some(b) if unit > b => {
                            best[id] = Some(unit);
                            cur.tp_value += unit - b;
                        }
                        Some(_) => {}
                    }
                }
            }
            let group_ends = order
                .get(k + 1)
                .is_none_or(|n| n.anomaly_score != p.anomaly_score);
            if group_ends {
                cur.threshold = p.anomaly_score;
                points.push(cur);
            }
        }
        ThresholdCurve {
            points,
            labelled_windows: self.labelled_windows,
            scorable_windows: self.scorable_windows,
        }
    }
}

/// What a detector scores at one threshold, before the profile's weights are applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdPoint {
    /// Rows with `anomaly_score >= threshold` are detections.
    pub threshold: f64,
    /// Sum over detected windows of the earliest detection's `sigma(y) / sigma(-1)`.
    pub tp_value: f64,
    /// Sum over false positives of their (negative) sigma.
    pub fp_value: f64,
    /// Detection counts.
    pub counts: Counts,
}

impl ThresholdPoint {
    /// The raw NAB score under `costs`:
    /// `tpWeight * tp_value + fpWeight * fp_value - fnWeight * fn_windows`.
    pub fn raw_score(&self, costs: &CostMatrix) -> f64 {
        costs.tp_weight * self.tp_value + costs.fp_weight * self.fp_value
            - costs.fn_weight * self.counts.fn_windows as f64
    }
}

/// A detector's result for one profile.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileScore {
    /// The profile's name.
    pub profile: String,
    /// The threshold used (chosen by [`ThresholdCurve::optimise`], or given).
    pub threshold: f64,
    /// The raw score at that threshold.
    pub raw: f64,
    /// `100 * (raw - null) / (perfect - null)`; NaN if the corpus has no windows.
    pub normalised: f64,
    /// The raw score of a detector that never fires.
    pub null: f64,
    /// The raw score of a detector that fires exactly at the first row of every window.
    pub perfect: f64,
    /// Detection counts at that threshold.
    pub counts: Counts,
}

/// The result of [`Sweep::curve`]: one [`ThresholdPoint`] per candidate threshold.
#[derive(Debug, Clone)]
pub struct ThresholdCurve {
    /// Highest threshold first; the first is [`NO_DETECTION_THRESHOLD`].
    pub points: Vec<ThresholdPoint>,
    labelled_windows: usize,
    scorable_windows: usize,
}

impl ThresholdCurve {
    /// The raw score of a detector that never fires: `-fnWeight` per scorable window.
    pub fn null_score(&self, costs: &CostMatrix) -> f64 {
        -costs.fn_weight * self.scorable_windows as f64
    }

    /// The raw score NAB normalises against: `tpWeight` per labelled window.
    pub fn perfect_score(&self, costs: &CostMatrix) -> f64 {
        costs.tp_weight * self.labelled_windows as f64
    }

    /// `100 * (raw - null) / (perfect - null)`.
    pub fn normalise(&self, costs: &CostMatrix, raw: f64) -> f64 {
        let null = self.null_score(costs);
        100.0 * (raw - null) / (self.perfect_score(costs) - null)
    }

    /// The point for detections `anomaly_score >= threshold`.
    pub fn point_at(&self, threshold: f64) -> &ThresholdPoint {
        // Points run from the highest threshold down; take the last one still >= threshold.
        let n = self.points.partition_point(|p| p.threshold >= threshold);
        &self.points[n.saturating_sub(1)]
    }

    /// The profile's score with detections `anomaly_score >= threshold`.
    pub fn score_at(&self, profile: &Profile, threshold: f64) -> ProfileScore {
        let p = self.point_at(threshold);
        self.profile_score(profile, threshold, p)
    }

    /// The profile's score at the threshold that maximises its raw score (the highest such
    /// threshold on ties, as NAB's optimiser).
    pub fn optimise(&self, profile: &Profile) -> ProfileScore {
        let mut best = &self.points[0];
        let mut best_raw = best.raw_score(&profile.costs);
        for p in &self.points[1..] {
            let raw = p.raw_score(&profile.costs);
            if raw > best_raw {
                best = p;
                best_raw = raw;
            }
        }
        self.profile_score(profile, best.threshold, best)
    }

    fn profile_score(&self, profile: &Profile, threshold: f64, p: &ThresholdPoint) -> ProfileScore {
        let raw = p.raw_score(&profile.costs);
        ProfileScore {
            profile: profile.name.clone(),
            threshold,
            raw,
            normalised: self.normalise(&profile.costs, raw),
            null: self.null_score(&profile.costs),
            perfect: self.perfect_score(&profile.costs),
            counts: p.counts,
        }
    }
}
