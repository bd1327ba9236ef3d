//! Reading a NAB corpus (data CSVs, labelled windows, profiles) and a directory of detector
//! results, and scoring them.

use std::collections::BTreeMap;
use std::path::Path;

use simd_json::prelude::*;

use super::*;

/// The result of [`score_directory`].
#[derive(Debug, Clone)]
pub struct CorpusReport {
    /// Series scored.
    pub series: usize,
    /// Labelled windows over all series.
    pub windows: usize,
    /// One score per profile, at its optimised threshold.
    pub scores: Vec<ProfileScore>,
    /// Leave-one-category-out, per profile: each category with windows scored at the
    /// threshold optimised on the other categories.
    pub loco: Vec<Loco>,
}

/// A profile's leave-one-category-out score: for each category (the first directory of a
/// series' name) that has windows, the threshold that maximises the raw score over every
/// *other* category, and the category's normalised score at it; their mean is the score.
/// No setting is chosen on the series it is scored on.
#[derive(Debug, Clone)]
pub struct Loco {
    /// The profile's name.
    pub profile: String,
    /// Per category: its score at the threshold chosen without it.
    pub categories: Vec<(String, ProfileScore)>,
    /// Per category: its mean normalised score over [`threshold_band`] around that threshold.
    /// One threshold among ~80 windows is a knife edge (a category's score can move by 20
    /// points when the threshold moves by 0.03); the band says how much of a difference
    /// between two detectors is where the threshold happened to fall.
    pub banded: Vec<f64>,
}

/// Up to seven thresholds around `t`, evenly spaced in surprise, `-log10(1 - t)`, from 0.15
/// below to 0.15 above (for `t` 0.99: 0.9859 to 0.9929); `t` itself in the middle. A
/// threshold of 1 or more (nothing detected) stays as it is. Those at or below 0 are left
/// out: they would flag every row, a threshold no detector has (a detector whose scores are
/// not probabilities, such as the resonance detector's, can be chosen a threshold near 0).
pub fn threshold_band(t: f64) -> Vec<f64> {
    if t >= 1.0 {
        return vec![t; 7];
    }
    let u = -(1.0 - t).log10();
    (0..7)
        .map(|i| {
            if i == 3 {
                t
            } else {
                1.0 - 10f64.powf(-(u + 0.05 * (i as f64 - 3.0)))
            }
        })
        .filter(|b| *b > 0.0)
        .collect()
}

impl Loco {
    /// The mean of the categories' banded scores.
    pub fn banded_mean(&self) -> f64 {
        self.banded.iter().sum::<f64>() / self.banded.len().max(1) as f64
    }

    /// The mean of the categories' normalised scores.
    pub fn mean(&self) -> f64 {
        let n = self.categories.len().max(1) as f64;
        self.categories
            .iter()
            .map(|(_, s)| s.normalised)
            .sum::<f64>()
            / n
    }
}

/// One series of a corpus with a detector's scores.
struct Scored {
    category: String,
    series: LabelledSeries,
    scores: Vec<f64>,
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

    let mut corpus = Vec::new();
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
        corpus.push(Scored {
            category: name.split('/').next().unwrap_or_default().to_string(),
            series: LabelledSeries {
                name: name.clone(),
                timestamps,
                windows: windows.clone(),
            },
            scores: results.scores,
        });
    }

    let sweep = |keep: &dyn Fn(&Scored) -> bool| -> Result<Sweep, NabError> {
        let mut sweep = Sweep::new();
        for s in corpus.iter().filter(|s| keep(s)) {
            sweep.add_series(&s.series, &s.scores)?;
        }
        Ok(sweep)
    };
    let all = sweep(&|_| true)?;
    let curve = all.curve();
    let mut categories: Vec<&str> = corpus
        .iter()
        .filter(|s| !s.series.windows.is_empty())
        .map(|s| s.category.as_str())
        .collect();
    categories.dedup();
    let mut held_out = Vec::new();
    for c in &categories {
        let train = sweep(&|s| s.category != *c)?.curve();
        let test = sweep(&|s| s.category == *c)?.curve();
        held_out.push((c.to_string(), train, test));
    }
    let loco = profiles
        .iter()
        .map(|p| {
            let chosen: Vec<(&String, f64, &ThresholdCurve)> = held_out
                .iter()
                .map(|(c, train, test)| (c, train.optimise(p).threshold, test))
                .collect();
            Loco {
                profile: p.name.clone(),
                categories: chosen
                    .iter()
                    .map(|(c, t, test)| (c.to_string(), test.score_at(p, *t)))
                    .collect(),
                banded: chosen
                    .iter()
                    .map(|(_, t, test)| {
                        let band = threshold_band(*t);
                        band.iter()
                            .map(|&b| test.score_at(p, b).normalised)
                            .sum::<f64>()
                            / band.len() as f64
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(CorpusReport {
        series: labels.len(),
        windows: all.labelled_windows(),
        scores: profiles.iter().map(|p| curve.optimise(p)).collect(),
        loco,
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
