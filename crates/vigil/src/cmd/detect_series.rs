//! `vigil detect-series`: one metric series from a CSV file through the default baseline
//! detector, written in the result format of the Numenta Anomaly Benchmark.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use vigil_detect::{BaselineConfig, BaselineDetector};

use crate::cli::DetectSeriesArgs;

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
    let result = score(BufReader::new(input), BufWriter::new(output), &args.input);
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

/// Reads `timestamp,value` rows (after a header naming both columns, in any order; no
/// quoting), writes `timestamp,value,anomaly_score` with the input's text for the first two,
/// and returns the number of rows. Blank lines are skipped; a value of `nan` or `inf` is a
/// missing sample and scores 0.
fn score(input: impl BufRead, mut out: impl Write, path: &Path) -> anyhow::Result<u64> {
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

    writeln!(out, "timestamp,value,anomaly_score")?;
    let mut detector = BaselineDetector::new(BaselineConfig::default());
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
        let s = detector.score(micros, x);
        writeln!(out, "{ts},{value},{s}")?;
        rows += 1;
    }
    out.flush()?;
    Ok(rows)
}
