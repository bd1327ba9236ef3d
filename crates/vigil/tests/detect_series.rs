//! `vigil detect-series` through the real binary: NAB-format output, one row per input row,
//! and the step in a generated series as the highest score.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Output};

fn detect(input: &Path, output: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["detect-series", "--input"])
        .arg(input)
        .arg("--output")
        .arg(output)
        .args(extra)
        .output()
        .expect("run vigil")
}

/// `detect` over `csv` written to a fresh directory (kept while the result is used): the run
/// and where its output goes.
fn detect_text(csv: &str) -> (tempfile::TempDir, Output, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.csv"), dir.path().join("out.csv"));
    std::fs::write(&input, csv).unwrap();
    let out = detect(&input, &output, &[]);
    (dir, out, output)
}

/// `rows` samples every 5 minutes from 2014-04-10 00:00:00, in NAB's timestamp format: a
/// noisy level of 40 that steps to 90 at row `step`.
fn series_with_step(rows: usize, step: usize) -> String {
    let mut csv = String::from("timestamp,value\n");
    for i in 0..rows {
        let minutes = i * 5;
        let (day, hour, minute) = (10 + minutes / 1440, minutes / 60 % 24, minutes % 60);
        // A fixed, irregular wobble of about ±2 (no randomness: the test must not flake).
        let wobble = ((i * 7919) % 41) as f64 / 10.0 - 2.0;
        let value = if i < step { 40.0 } else { 90.0 } + wobble;
        writeln!(csv, "2014-04-{day:02} {hour:02}:{minute:02}:00,{value}").unwrap();
    }
    csv
}

#[test]
fn detect_series_writes_a_score_per_row_and_the_step_scores_highest() {
    // The default (ensemble) detector and each of its parts.
    for extra in [
        &[][..],
        &["--detector", "resonance"],
        &["--detector", "baseline"],
    ] {
        step_scores_highest(extra);
    }
}

fn step_scores_highest(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.csv"), dir.path().join("out.csv"));
    let (rows, step) = (800, 600);
    let csv = series_with_step(rows, step);
    std::fs::write(&input, &csv).unwrap();

    let out = detect(&input, &output, extra);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let text = std::fs::read_to_string(&output).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("timestamp,value,anomaly_score"));
    let body: Vec<&str> = lines.collect();
    assert_eq!(body.len(), rows);
    let mut scores = Vec::with_capacity(rows);
    for (row, (got, want)) in body.iter().zip(csv.lines().skip(1)).enumerate() {
        let (prefix, score) = got.rsplit_once(',').unwrap();
        assert_eq!(
            prefix, want,
            "row {row}: timestamp and value are copied unchanged"
        );
        let score: f64 = score.parse().unwrap();
        assert!((0.0..=1.0).contains(&score), "row {row}: score {score}");
        scores.push(score);
    }
    let top = (0..rows)
        .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
        .unwrap();
    assert_eq!(
        top, step,
        "{extra:?}: the step scores {}, row {top} {}",
        scores[step], scores[top]
    );
    assert!(
        scores[step] > 0.99,
        "{extra:?}: the step scores {}",
        scores[step]
    );
}

#[test]
fn detect_series_names_the_line_of_a_bad_timestamp() {
    let (_dir, out, output) =
        detect_text("timestamp,value\n2014-04-10 00:00:00,1\n2014-04-10 00:05,2\n");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in.csv:3: bad timestamp \"2014-04-10 00:05\""),
        "{stderr}"
    );
    assert!(!output.exists(), "no partial output is left behind");
}

#[test]
fn detect_series_reads_a_spreadsheet_s_csv() {
    // A byte order mark before the header and CRLF line ends, as spreadsheets save CSV.
    let (_dir, out, output) = detect_text(
        "\u{feff}timestamp,value\r\n2014-04-10 00:00:00,1\r\n2014-04-10 00:05:00,2\r\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&output).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
}

#[test]
fn detect_series_reads_a_pipe_only_with_the_baseline_detector() {
    // The default detector reads its input twice (the range first), which a pipe cannot
    // give; it says so. The baseline detector reads a pipe once.
    let csv = series_with_step(100, 60);
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.csv");
    for (extra, works) in [(&[][..], false), (&["--detector", "baseline"][..], true)] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["detect-series", "--input", "/dev/stdin", "--output"])
            .arg(&output)
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // The refusal may come before all is written: a broken pipe then is expected.
        let _ = std::io::Write::write_all(&mut stdin, csv.as_bytes());
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), works, "{extra:?}: {stderr}");
        if works {
            let text = std::fs::read_to_string(&output).unwrap();
            assert_eq!(text.lines().count(), 101, "{text}");
        } else {
            assert!(stderr.contains("is not a regular file"), "{stderr}");
        }
    }
}
