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
    let open = || {
        File::open(&args.input)
            .map(BufReader::new)
            .with_context(|| format!("cannot open --input {}", args.input.display()))
    };
    // The resonance detector is told the series' range and length before its first sample,
    // as NAB tells every detector: a first read finds them (and any bad row, before an
    // output file exists), a second one scores, so memory stays flat whatever the length.
    let shape = match args.detector {
        SeriesDetector::Baseline => None,
        SeriesDetector::Ensemble | SeriesDetector::Resonance => {
            let regular = std::fs::metadata(&args.input).is_ok_and(|m| m.is_file());
            if !regular {
                bail!(
                    "--input {} is not a regular file: the {} detector reads it twice (its \
                     range first); save it to a file, or use --detector baseline",
                    args.input.display(),
                    format!("{:?}", args.detector).to_lowercase()
                );
            }
            Some(survey(open()?, &args.input)?)
        }
    };
    let input = open()?;
    let output = File::create(&args.output)
        .with_context(|| format!("cannot create --output {}", args.output.display()))?;
    let result = score(
        input,
        BufWriter::new(output),
        &args.input,
        args.detector,
        shape,
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
struct Row<'a> {
    ts: &'a str,
    value: &'a str,
    micros: i64,
    x: f64,
}

/// Reads `timestamp,value` rows (after a header naming both columns, in any order; no
/// quoting) and hands each to `each`; returns the number of rows. Blank lines are skipped; a
/// value of `nan` or `inf` is a missing sample.
fn read_rows(
    input: impl BufRead,
    path: &Path,
    mut each: impl FnMut(Row<'_>) -> anyhow::Result<()>,
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

    let mut rows = 0u64;
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
        each(Row {
            ts,
            value,
            micros,
            x,
        })?;
        rows += 1;
    }
    Ok(rows)
}

/// The series' range (of its finite values) and length.
fn survey(input: impl BufRead, path: &Path) -> anyhow::Result<SeriesShape> {
    let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
    let len = read_rows(input, path, |r| {
        if r.x.is_finite() {
            (min, max) = (min.min(r.x), max.max(r.x));
        }
        Ok(())
    })?;
    Ok(SeriesShape {
        min,
        max,
        len: Some(len),
    })
}

/// Writes `timestamp,value,anomaly_score` with the input's text for the first two, and
/// returns the number of rows. A missing sample scores 0. `shape` is what [`survey`] found
/// (for the detectors that are told it).
fn score(
    input: impl BufRead,
    mut out: impl Write,
    path: &Path,
    detector: SeriesDetector,
    shape: Option<SeriesShape>,
) -> anyhow::Result<u64> {
    let told = || shape.expect("the series was surveyed for this detector");
    let mut scorer: Box<dyn FnMut(&Row<'_>) -> f64> = match detector {
        SeriesDetector::Ensemble => {
            let mut d = EnsembleDetector::new(told());
            Box::new(move |r| d.score(r.micros, r.x))
        }
        SeriesDetector::Resonance => {
            let mut d = ResonanceDetector::new(told());
            Box::new(move |r| d.score(r.x))
        }
        SeriesDetector::Baseline => {
            let mut d = BaselineDetector::new(BaselineConfig::default());
            Box::new(move |r| d.score(r.micros, r.x))
        }
    };
    writeln!(out, "timestamp,value,anomaly_score")?;
    let rows = read_rows(input, path, |r| {
        let s = scorer(&r);
        writeln!(out, "{},{},{s}", r.ts, r.value)?;
        Ok(())
    })?;
    if let Some(SeriesShape { len: Some(len), .. }) = shape
        && len != rows
    {
        bail!(
            "{}: {rows} rows on the second read, {len} on the first: the file changed while \
             it was scored (or is a pipe, which detect-series cannot read twice)",
            path.display()
        );
    }
    out.flush()?;
    Ok(rows)
}
