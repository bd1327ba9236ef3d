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

//!
//! The module is split the way the work is: [`score`] holds the rules (sweep, thresholds,
//! normalisation), [`corpus`] reads NAB's files and scores a directory of results.

mod corpus;
mod score;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;

pub use corpus::*;
pub use score::*;

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
