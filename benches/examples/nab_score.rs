//! Scores an anomaly detector's output on the Numenta Anomaly Benchmark with
//! [`vigil_benches::nab`]:
//!
//! ```sh
//! nab_score --nab /work/shared/data/nab --results DIR
//! ```
//!
//! `--nab` is a NAB checkout (`data/`, `labels/combined_windows.json`,
//! `config/profiles.json`). `DIR` holds one `<category>/<name>.csv` per labelled series, the
//! same relative paths as NAB's `data/`, with columns `timestamp,value,anomaly_score` (any
//! column order; extra columns are ignored) and the data file's rows. For each profile it
//! prints the normalised score at the threshold that maximises the raw score over the corpus,
//! that threshold, the raw score, and the counts of detected windows (TP), missed windows (FN)
//! and detections outside windows (FP); then, per profile, the leave-one-category-out score:
//! each category that has windows scored at the threshold optimised on the other categories,
//! and their mean. Exits with status 1 on a missing or malformed file.

use std::path::PathBuf;
use std::process::ExitCode;

use vigil_benches::nab;

const USAGE: &str = "usage: nab_score --nab NAB_DIR --results RESULTS_DIR";

fn main() -> ExitCode {
    let (nab_dir, results_dir) = match parse_args(std::env::args().skip(1)) {
        Ok(dirs) => dirs,
        Err(msg) => {
            eprintln!("nab_score: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let report = match nab::score_directory(&nab_dir, &results_dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("nab_score: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "NAB: {} series, {} windows, results from {}",
        report.series,
        report.windows,
        results_dir.display()
    );
    println!(
        "{:<20} {:>10} {:>10} {:>10} {:>5} {:>5} {:>7}",
        "profile", "score", "threshold", "raw", "TP", "FN", "FP"
    );
    for s in &report.scores {
        println!(
            "{:<20} {:>10.2} {:>10.6} {:>10.4} {:>5} {:>5} {:>7}",
            s.profile,
            s.normalised,
            s.threshold,
            s.raw,
            s.counts.tp_windows,
            s.counts.fn_windows,
            s.counts.fp_rows
        );
    }
    println!(
        "\nleave one category out: each category at the threshold optimised on the others \
         (band: its mean over seven thresholds within ±0.15 of it in -log10(1 - threshold), those above 0)"
    );
    for l in &report.loco {
        println!(
            "{:<20} {:>10.2}  (mean of {} categories; over the threshold band {:.2})",
            l.profile,
            l.mean(),
            l.categories.len(),
            l.banded_mean()
        );
        for ((c, s), banded) in l.categories.iter().zip(&l.banded) {
            println!(
                "  {:<26} {:>10.2} {:>10.6} {:>5} {:>5} {:>7}  band {:>6.2}",
                c,
                s.normalised,
                s.threshold,
                s.counts.tp_windows,
                s.counts.fn_windows,
                s.counts.fp_rows,
                banded
            );
        }
    }
    ExitCode::SUCCESS
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<(PathBuf, PathBuf), String> {
    let (mut nab_dir, mut results_dir) = (None, None);
    while let Some(a) = args.next() {
        let slot = match a.as_str() {
            "--nab" => &mut nab_dir,
            "--results" => &mut results_dir,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unexpected argument {other:?}")),
        };
        let v = args
            .next()
            .ok_or_else(|| format!("{a} needs a directory"))?;
        *slot = Some(PathBuf::from(v));
    }
    match (nab_dir, results_dir) {
        (Some(n), Some(r)) => Ok((n, r)),
        _ => Err("both --nab and --results are required".into()),
    }
}
