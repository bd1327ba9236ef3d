//! A scorer for the [Numenta Anomaly Benchmark](https://github.com/numenta/NAB) (NAB),
//! written from NAB v1.x's published scoring rules (Lavin & Ahmad, "Evaluating Real-time
//! Anomaly Detection Algorithms – the Numenta Anomaly Benchmark", 2015) and the behaviour of
//! its reference scorer (`nab/sweeper.py`, `nab/optimizer.py`, `nab/runner.py`).
//!
//! # The rules
//!
//! A detector gives every row of every series an anomaly score in `[0, 1]`; for a threshold
//! `t`, the rows with `score >= t` are *detections*.
//!
//! * **Probation.** The first [`probation_length`]`(rows)` = `min(floor(0.15 * rows), 750)` rows
//!   of a series are not scored: detections there are neither TPs nor FPs. A window with no
//!   row after probation cannot be a FN (NAB only sees windows through their scored rows),
//!   though it still counts towards `perfect` below.
//! * **Windows.** Each labelled window `[start, end]` covers the rows with
//!   `start <= timestamp <= end`. Only the earliest detection in a window counts (a TP);
//!   later ones in the same window are ignored. A window without a detection is a FN worth
//!   `-fnWeight`.
//! * **Scaled sigmoid.** [`scaled_sigmoid`]`(y) = 2 / (1 + e^(5y)) - 1` (and `-1` for
//!   `y > 3`). For row `i` of a window with rows `l..=r` (width `w = r - l + 1`) the
//!   relative position is `y = -(r - i + 1) / w`, from `-1` at the window's first row to
//!   `-1/w` at its last. A TP is worth `tpWeight * sigma(y) / sigma(-1)`: NAB divides by
//!   `sigma(-1) ≈ 0.98661` so that a detection at a window's first row is worth exactly
//!   `tpWeight`.
//! * **False positives.** A detection outside every window, after the previous window
//!   (rows `l..=r`), is worth `fpWeight * sigma((i - r) / (w - 1))`, which is negative and
//!   close to `0` right after the window and `-fpWeight` far from it. A detection before the
//!   first window of its series is worth `-fpWeight`. (After a one-row window `w - 1 = 0`,
//!   where NAB would divide by zero; here `y = inf` and the FP costs the full `-fpWeight`.)
//! * **Raw score** (per profile, for a threshold) = sum of TP values + sum of FP values
//!   `- fnWeight * (windows without a detection)`, over the whole corpus.
//! * **Threshold.** One threshold for the whole corpus, per profile, chosen to maximise the
//!   raw score: the candidates are `1.1` (no detections) and every distinct anomaly score, as
//!   in NAB's `Sweeper.calcScoreByThreshold`. Ties go to the highest threshold (NAB sorts the
//!   candidates, highest threshold first, with a stable sort by score).
//! * **Normalisation.** `100 * (raw - null) / (perfect - null)`, where `null` is the raw score
//!   of a detector that never fires (`-fnWeight` per scorable window) and `perfect` is
//!   `tpWeight` per labelled window (NAB's `runner.normalize`), so a detector firing exactly
//!   at the first row of every window scores 100 and one that never fires scores 0.
//!
//! [`score_directory`] runs all of this over an on-disk NAB corpus and a directory of
//! detector results; [`Sweep`] and [`ThresholdCurve`] are the in-memory core.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use simd_json::prelude::*;

/// Fraction of each series' rows in the probationary period (NAB's `probationPercent`).
pub const PROBATION_PERCENT: f64 = 0.15;

/// Cap on the probationary period, in rows: NAB's `probationPercent * 5000`.
pub const MAX_PROBATION_ROWS: usize = 750;

/// The threshold NAB's sweep starts from: above every score, so nothing is detected.
pub const NO_DETECTION_THRESHOLD: f64 = 1.1;

/// A timestamp in microseconds since `1970-01-01 00:00:00`. NAB's timestamps carry no time
/// zone; they are only compared with each other.
pub type Timestamp = i64;

/// An error reading or scoring a corpus, with enough context (file, line) to fix it.
#[derive(Debug, Clone, PartialEq)]
pub struct NabError(String);

impl NabError {
    fn new(msg: impl Into<String>) -> Self {
        NabError(msg.into())
    }

    fn in_file(path: &Path, err: NabError) -> Self {
        NabError(format!("{}: {}", path.display(), err.0))
    }
}

impl fmt::Display for NabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NabError {}

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

/// The result of [`score_directory`].
#[derive(Debug, Clone)]
pub struct CorpusReport {
    /// Series scored.
    pub series: usize,
    /// Labelled windows over all series.
    pub windows: usize,
    /// One score per profile, at its optimised threshold.
    pub scores: Vec<ProfileScore>,
}

/// Scores a detector's results against an on-disk NAB corpus.
///
/// `nab_dir` holds `data/<category>/<name>.csv` (`timestamp,value`),
/// `labels/combined_windows.json` and `config/profiles.json`; `results_dir` holds one
/// `<category>/<name>.csv` per labelled series, with `timestamp` and `anomaly_score` columns
/// and the same rows as the data file. Every series in `combined_windows.json` is scored.
pub fn score_directory(nab_dir: &Path, results_dir: &Path) -> Result<CorpusReport, NabError> {
    let profiles_path = nab_dir.join("config/profiles.json");
    let profiles = parse_profiles(&read_text(&profiles_path)?)
        .map_err(|e| NabError::in_file(&profiles_path, e))?;
    let labels_path = nab_dir.join("labels/combined_windows.json");
    let labels =
        parse_windows(&read_text(&labels_path)?).map_err(|e| NabError::in_file(&labels_path, e))?;
    if labels.is_empty() {
        return Err(NabError::new(format!(
            "{}: no series labelled",
            labels_path.display()
        )));
    }

    let mut sweep = Sweep::new();
    for (name, windows) in &labels {
        let data_path = nab_dir.join("data").join(name);
        let timestamps = parse_data_csv(&read_text(&data_path)?)
            .map_err(|e| NabError::in_file(&data_path, e))?;
        let results_path = results_dir.join(name);
        if !results_path.is_file() {
            return Err(NabError::new(format!(
                "missing result file {} for series {name}",
                results_path.display()
            )));
        }
        let results = parse_results_csv(&read_text(&results_path)?)
            .map_err(|e| NabError::in_file(&results_path, e))?;
        check_rows_match(&timestamps, &results.timestamps)
            .map_err(|e| NabError::in_file(&results_path, e))?;
        let series = LabelledSeries {
            name: name.clone(),
            timestamps,
            windows: windows.clone(),
        };
        sweep.add_series(&series, &results.scores)?;
    }

    let curve = sweep.curve();
    Ok(CorpusReport {
        series: labels.len(),
        windows: sweep.labelled_windows(),
        scores: profiles.iter().map(|p| curve.optimise(p)).collect(),
    })
}

fn read_text(path: &Path) -> Result<String, NabError> {
    std::fs::read_to_string(path).map_err(|e| NabError::new(format!("{}: {e}", path.display())))
}

fn check_rows_match(data: &[Timestamp], results: &[Timestamp]) -> Result<(), NabError> {
    if data.len() != results.len() {
        return Err(NabError::new(format!(
            "{} rows, but the data file has {}",
            results.len(),
            data.len()
        )));
    }
    if let Some(i) = data.iter().zip(results).position(|(a, b)| a != b) {
        return Err(NabError::new(format!(
            "data row {} has timestamp {}, but the data file has {}",
            i + 1,
            format_timestamp(results[i]),
            format_timestamp(data[i])
        )));
    }
    Ok(())
}

/// Parses `YYYY-MM-DD HH:MM:SS` with an optional fraction (`.000000`) and optionally `T` for
/// the space, into microseconds since 1970 (no time zone, read as UTC): vigil's own RFC 3339
/// parser, which `vigil detect-series` uses on the same files.
pub fn parse_timestamp(s: &str) -> Result<Timestamp, NabError> {
    vigil_core::time::parse_rfc3339_micros(s.trim().as_bytes()).ok_or_else(|| {
        NabError::new(format!(
            "bad timestamp {s:?}: want YYYY-MM-DD HH:MM:SS[.ffffff]"
        ))
    })
}

/// Formats a [`Timestamp`] as `YYYY-MM-DD HH:MM:SS` (with `.ffffff` if not whole seconds).
pub fn format_timestamp(t: Timestamp) -> String {
    let (days, rem) = (t.div_euclid(86_400_000_000), t.rem_euclid(86_400_000_000));
    let (y, m, d) = vigil_core::time::civil_from_days(days);
    let secs = rem / 1_000_000;
    let micros = rem % 1_000_000;
    let base = format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if micros == 0 {
        base
    } else {
        format!("{base}.{micros:06}")
    }
}

/// A data line of a CSV file: its 1-based line number and its fields.
type CsvRow<'a> = (usize, Vec<&'a str>);

/// Splits a CSV file (no quoting, as NAB's files) into its header's columns and data lines.
fn split_csv(text: &str) -> Result<(Vec<&str>, Vec<CsvRow<'_>>), NabError> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')));
    let header = match lines.next() {
        Some((_, h)) if !h.trim().is_empty() => h.split(',').map(str::trim).collect(),
        _ => return Err(NabError::new("empty file: want a CSV header line")),
    };
    let rows = lines
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| (n, l.split(',').map(str::trim).collect()))
        .collect();
    Ok((header, rows))
}

fn column(header: &[&str], name: &str) -> Result<usize, NabError> {
    header.iter().position(|h| *h == name).ok_or_else(|| {
        NabError::new(format!(
            "no {name:?} column in header {:?}",
            header.join(",")
        ))
    })
}

fn field<'a>(
    line: usize,
    fields: &[&'a str],
    col: usize,
    ncols: usize,
) -> Result<&'a str, NabError> {
    if fields.len() != ncols {
        return Err(NabError::new(format!(
            "line {line}: {} fields, but the header has {ncols}",
            fields.len()
        )));
    }
    Ok(fields[col])
}

/// Parses a NAB data file (`timestamp,value`, with a header) into its timestamps.
pub fn parse_data_csv(text: &str) -> Result<Vec<Timestamp>, NabError> {
    let (header, rows) = split_csv(text)?;
    let tc = column(&header, "timestamp")?;
    rows.iter()
        .map(|(n, f)| {
            parse_timestamp(field(*n, f, tc, header.len())?)
                .map_err(|e| NabError::new(format!("line {n}: {e}")))
        })
        .collect()
}

/// A detector's output for one series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesResults {
    /// Each row's timestamp.
    pub timestamps: Vec<Timestamp>,
    /// Each row's anomaly score.
    pub scores: Vec<f64>,
}

/// Parses a detector's result file: a CSV with a header naming (at least) `timestamp` and
/// `anomaly_score` columns, e.g. `timestamp,value,anomaly_score`. Scores must be numbers in
/// `[0, 1]`.
pub fn parse_results_csv(text: &str) -> Result<SeriesResults, NabError> {
    let (header, rows) = split_csv(text)?;
    let (tc, sc) = (
        column(&header, "timestamp")?,
        column(&header, "anomaly_score")?,
    );
    let mut out = SeriesResults {
        timestamps: Vec::with_capacity(rows.len()),
        scores: Vec::with_capacity(rows.len()),
    };
    for (n, f) in &rows {
        let t = parse_timestamp(field(*n, f, tc, header.len())?)
            .map_err(|e| NabError::new(format!("line {n}: {e}")))?;
        let raw = f[sc];
        let s: f64 = raw.parse().map_err(|_| {
            NabError::new(format!("line {n}: anomaly_score {raw:?} is not a number"))
        })?;
        if !(0.0..=1.0).contains(&s) {
            return Err(NabError::new(format!(
                "line {n}: anomaly_score {raw} is not in [0, 1]"
            )));
        }
        out.timestamps.push(t);
        out.scores.push(s);
    }
    if out.scores.is_empty() {
        return Err(NabError::new("no rows"));
    }
    Ok(out)
}

fn parse_json(text: &str) -> Result<simd_json::OwnedValue, NabError> {
    let mut bytes = text.as_bytes().to_vec();
    simd_json::to_owned_value(&mut bytes).map_err(|e| NabError::new(format!("invalid JSON: {e}")))
}

/// Parses NAB's `labels/combined_windows.json`: `{"<category>/<name>.csv": [[start, end],
/// ...], ...}` with timestamp strings like `2014-04-10 07:15:00.000000`. Keys come back
/// sorted.
pub fn parse_windows(text: &str) -> Result<BTreeMap<String, Vec<Window>>, NabError> {
    let v = parse_json(text)?;
    let obj = v
        .as_object()
        .ok_or_else(|| NabError::new("want an object mapping series to windows"))?;
    let mut out = BTreeMap::new();
    for (name, wins) in obj.iter() {
        let bad = || {
            NabError::new(format!(
                "{name}: want a list of [start, end] timestamp pairs"
            ))
        };
        let mut windows = Vec::new();
        for w in wins.as_array().ok_or_else(bad)? {
            let pair = w.as_array().filter(|p| p.len() == 2).ok_or_else(bad)?;
            let ts = |i: usize| -> Result<Timestamp, NabError> {
                let s = pair[i].as_str().ok_or_else(bad)?;
                parse_timestamp(s).map_err(|e| NabError::new(format!("{name}: {e}")))
            };
            windows.push(Window {
                start: ts(0)?,
                end: ts(1)?,
            });
        }
        out.insert(name.to_string(), windows);
    }
    Ok(out)
}

/// Parses NAB's `config/profiles.json`: `{"<name>": {"CostMatrix": {"tpWeight": ..,
/// "fpWeight": .., "fnWeight": .., "tnWeight": ..}}, ...}` (`tnWeight` optional). NAB's three
/// profiles come first in their usual order, any others after by name.
pub fn parse_profiles(text: &str) -> Result<Vec<Profile>, NabError> {
    let v = parse_json(text)?;
    let obj = v
        .as_object()
        .ok_or_else(|| NabError::new("want an object mapping profile names to cost matrices"))?;
    let mut out = Vec::new();
    for (name, p) in obj.iter() {
        let cm = p
            .as_object()
            .and_then(|o| o.get("CostMatrix"))
            .and_then(|c| c.as_object())
            .ok_or_else(|| NabError::new(format!("profile {name}: no CostMatrix object")))?;
        let weight = |key: &str, required: bool| -> Result<f64, NabError> {
            match cm.get(key) {
                Some(w) => w
                    .cast_f64()
                    .filter(|w| w.is_finite())
                    .ok_or_else(|| NabError::new(format!("profile {name}: {key} is not a number"))),
                None if required => Err(NabError::new(format!("profile {name}: no {key}"))),
                None => Ok(0.0),
            }
        };
        out.push(Profile {
            name: name.to_string(),
            costs: CostMatrix {
                tp_weight: weight("tpWeight", true)?,
                fp_weight: weight("fpWeight", true)?,
                fn_weight: weight("fnWeight", true)?,
                tn_weight: weight("tnWeight", false)?,
            },
        });
    }
    if out.is_empty() {
        return Err(NabError::new("no profiles"));
    }
    const ORDER: [&str; 3] = ["standard", "reward_low_FP_rate", "reward_low_FN_rate"];
    let rank = |n: &str| ORDER.iter().position(|o| *o == n).unwrap_or(ORDER.len());
    out.sort_by(|a, b| {
        rank(&a.name)
            .cmp(&rank(&b.name))
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
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
}
