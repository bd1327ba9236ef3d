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
    // The resonance detector is told the series' range and length before its first sample,
    // as NAB tells every detector: a first read finds them (and any bad row, before an
    // output file exists), a second one scores, so memory stays flat whatever the length.
    let (mut scorer, surveyed): (Scorer, Option<u64>) = match args.detector {
        SeriesDetector::Ensemble => {
            let shape = survey(&args.input, args.detector)?;
            let mut d = EnsembleDetector::new(shape);
            (Box::new(move |t, x| d.score(t, x)), shape.len)
        }
        SeriesDetector::Resonance => {
            let shape = survey(&args.input, args.detector)?;
            let mut d = ResonanceDetector::new(shape);
            (Box::new(move |_, x| d.score(x)), shape.len)
        }
        SeriesDetector::Baseline => {
            let mut d = BaselineDetector::new(BaselineConfig::default());
            (Box::new(move |t, x| d.score(t, x)), None)
        }
    };
    let input = open(&args.input)?;
    let output = File::create(&args.output)
        .with_context(|| format!("cannot create --output {}", args.output.display()))?;
    let result = score(
        input,
        BufWriter::new(output),
        &args.input,
        &mut scorer,
        surveyed,
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

/// A detector as `score` runs it: a sample's time (µs) and value in, its score out.
type Scorer = Box<dyn FnMut(i64, f64) -> f64>;

fn open(path: &Path) -> anyhow::Result<BufReader<File>> {
    File::open(path)
        .map(BufReader::new)
        .with_context(|| format!("cannot open --input {}", path.display()))
}

/// The series' range (of its finite values) and length, from a first read of the file.
fn survey(path: &Path, detector: SeriesDetector) -> anyhow::Result<SeriesShape> {
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        bail!(
            "--input {} is not a regular file: the {} detector reads it twice (its range \
             first); save it to a file, or use --detector baseline",
            path.display(),
            format!("{detector:?}").to_lowercase()
        );
    }
    let mut shape = SeriesShape::empty();
    read_rows(open(path)?, path, |r| {
        shape.include(r.x);
        Ok(())
    })?;
    Ok(shape)
}

/// Writes `timestamp,value,anomaly_score` with the input's text for the first two, and
/// returns the number of rows. A missing sample scores 0. `surveyed` is the number of rows
/// a first read found, if there was one: the second must find as many.
fn score(
    input: impl BufRead,
    mut out: impl Write,
    path: &Path,
    scorer: &mut Scorer,
    surveyed: Option<u64>,
) -> anyhow::Result<u64> {
    writeln!(out, "timestamp,value,anomaly_score")?;
    let rows = read_rows(input, path, |r| {
        let s = scorer(r.micros, r.x);
        writeln!(out, "{},{},{s}", r.ts, r.value)?;
        Ok(())
    })?;
    if let Some(len) = surveyed
        && len != rows
    {
        bail!(
            "{}: {rows} rows on the second read, {len} on the first: the file changed while \
             it was scored",
            path.display()
        );
    }
    out.flush()?;
    Ok(rows)
}
