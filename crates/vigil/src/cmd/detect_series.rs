//! `vigil detect-series`: one metric series from a CSV file through an anomaly detector
//! (by default the resonance and baseline detectors together, the resonance detector told
//! the file's range and length first, as NAB tells every detector), written in the result
//! format of the Numenta Anomaly Benchmark.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use vigil_detect::{
    BaselineConfig, BaselineDetector, EnsembleDetector, ResonanceDetector, SeriesShape,
};

use crate::cli::{DetectSeriesArgs, SeriesDetector};

pub fn run(args: DetectSeriesArgs) -> anyhow::Result<ExitCode> {
    if super::same_file(&args.input, &args.output) {
        bail!(
            "--output {} is the --input file: it would be overwritten before it is read",
            args.output.display()
        );
    }
    let input = File::open(&args.input)
        .with_context(|| format!("cannot open --input {}", args.input.display()))?;
    let output = File::create(&args.output)
        .with_context(|| format!("cannot create --output {}", args.output.display()))?;
    let result = score(
        BufReader::new(input),
        BufWriter::new(output),
        &args.input,
        args.detector,
    );
    match result {
        Ok(rows) => {
            println!(
                "{}: {rows} rows scored into {}",
                args.input.display(),
                args.output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            // No half-written result that a later step could mistake for a whole one.
            let _ = std::fs::remove_file(&args.output);
            Err(e)
        }
    }
}

/// One input row: its text for the output, when it was and its value.
struct Row {
    ts: String,
    value: String,
    micros: i64,
    x: f64,
}

/// Reads `timestamp,value` rows (after a header naming both columns, in any order; no
/// quoting), writes `timestamp,value,anomaly_score` with the input's text for the first two,
/// and returns the number of rows. Blank lines are skipped; a value of `nan` or `inf` is a
/// missing sample and scores 0. The whole file is read before the first score: the
/// resonance detector is told its range and length.
fn score(
    input: impl BufRead,
    mut out: impl Write,
    path: &Path,
    detector: SeriesDetector,
) -> anyhow::Result<u64> {
    let mut lines = input.lines().enumerate().map(|(i, l)| (i + 1, l));
    let at = |line: usize| format!("{}:{line}", path.display());
    let header = match lines.next() {
        Some((n, l)) => l.with_context(|| at(n))?,
        None => bail!(
            "{}: empty file: want a header line `timestamp,value`",
            at(1)
        ),
    };
    // Spreadsheets save CSV with a byte order mark before the header.
    let names: Vec<&str> = header
        .trim_start_matches('\u{feff}')
        .trim_end_matches('\r')
        .split(',')
        .map(str::trim)
        .collect();
    let column = |name: &str| {
        names.iter().position(|h| *h == name).with_context(|| {
            format!(
                "{}: header `{}` has no `{name}` column: want `timestamp,value`",
                at(1),
                names.join(",")
            )
        })
    };
    let (tc, vc) = (column("timestamp")?, column("value")?);

    let mut rows = Vec::new();
    for (n, line) in lines {
        let line = line.with_context(|| at(n))?;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != names.len() {
            bail!(
                "{}: {} fields, but the header has {}",
                at(n),
                fields.len(),
                names.len()
            );
        }
        let (ts, value) = (fields[tc], fields[vc]);
        let micros = vigil_core::time::parse_rfc3339_micros(ts.as_bytes()).with_context(|| {
            format!(
                "{}: bad timestamp {ts:?}: want `YYYY-MM-DD HH:MM:SS` or RFC 3339",
                at(n)
            )
        })?;
        let x: f64 = value
            .parse()
            .with_context(|| format!("{}: bad value {value:?}: want a number", at(n)))?;
        rows.push(Row {
            ts: ts.to_owned(),
            value: value.to_owned(),
            micros,
            x,
        });
    }

    let finite = rows.iter().map(|r| r.x).filter(|x| x.is_finite());
    let shape = SeriesShape {
        min: finite.clone().fold(f64::INFINITY, f64::min),
        max: finite.fold(f64::NEG_INFINITY, f64::max),
        len: Some(rows.len() as u64),
    };
    let mut scorer: Box<dyn FnMut(&Row) -> f64> = match detector {
        SeriesDetector::Ensemble => {
            let mut d = EnsembleDetector::new(shape);
            Box::new(move |r| d.score(r.micros, r.x))
        }
        SeriesDetector::Resonance => {
            let mut d = ResonanceDetector::new(shape);
            Box::new(move |r| d.score(r.x))
        }
        SeriesDetector::Baseline => {
            let mut d = BaselineDetector::new(BaselineConfig::default());
            Box::new(move |r| d.score(r.micros, r.x))
        }
    };
    writeln!(out, "timestamp,value,anomaly_score")?;
    for r in &rows {
        let s = scorer(r);
        writeln!(out, "{},{},{s}", r.ts, r.value)?;
    }
    out.flush()?;
    Ok(rows.len() as u64)
}
