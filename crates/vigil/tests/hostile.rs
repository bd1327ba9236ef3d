//! Hostile input (`fixtures/hostile/`): records, pipeline files, queries and command lines
//! crafted to crash, blind or exhaust vigil. Each class gets its bounded outcome: a dead letter
//! with its reason, an error with its location, a refusal, or a peak RSS under a stated bound
//! (`docs/robustness.md`).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{generate, json_rows, python, sql_rows as sql, vigil, vigil_ok, vigil_ok_with};

fn hostile(name: &str) -> PathBuf {
    vigil_core::manifest_dir!()
        .join("../../fixtures/hostile")
        .join(name)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `vigil args` under a Python parent that reports the child's peak RSS; returns the
/// output and the peak in MiB.
fn vigil_peak_rss(args: &[&str]) -> (Output, f64) {
    let script = "import resource, subprocess, sys\n\
                  r = subprocess.run(sys.argv[1:])\n\
                  kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n\
                  print(f'peak-rss-kib {kib}', file=sys.stderr)\n\
                  sys.exit(r.returncode)";
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .env_remove("VIGIL_ARCHIVE")
        .output()
        .expect("python runs");
    let err = stderr(&out);
    let kib: f64 = err
        .lines()
        .find_map(|l| l.strip_prefix("peak-rss-kib "))
        .unwrap_or_else(|| panic!("no peak RSS in {err}"))
        .parse()
        .unwrap();
    (out, kib / 1024.0)
}

/// Writes `lines` after the first `at` lines of `base` into `dir/name`.
fn splice(base: &Path, at: usize, lines: &str, dir: &Path, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(base).unwrap();
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        if i == at {
            out.push_str(lines);
        }
        out.push_str(line);
        out.push('\n');
    }
    let path = dir.join(name);
    std::fs::write(&path, out).unwrap();
    path
}

#[test]
fn implausible_event_times_are_dead_letters_and_detection_is_not_blinded() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, _) = generate(dir.path(), "40m", "10", &["errors:token-service@10m+20m"]);
    let times = std::fs::read_to_string(hostile("times.ndjson")).unwrap();
    let input = splice(&logs, 500, &times, dir.path(), "hostile.ndjson");
    let archive = dir.path().join("archive");
    let archive = archive.to_str().unwrap();
    let pipeline = hostile("pipelines/times.toml");
    vigil_ok_with(
        &["run", "--pipeline", pipeline.to_str().unwrap()],
        &[
            ("HOSTILE_INPUT", input.to_str().unwrap()),
            ("HOSTILE_ARCHIVE", archive),
        ],
    );
    let dead = sql(
        archive,
        "SELECT reason_code, reason FROM dead_letters ORDER BY \"offset\"",
    );
    assert_eq!(dead.len(), 3, "{dead:?}");
    for d in &dead {
        assert_eq!(d["reason_code"], "timestamp_out_of_range", "{d}");
    }
    assert!(
        dead[0]["reason"]
            .as_str()
            .unwrap()
            .contains("years 0001 to 9999")
    );
    assert!(
        dead[1]["reason"]
            .as_str()
            .unwrap()
            .contains("max_future_skew")
    );
    // The incident after the far-future record still fires, in its own time.
    let firing = sql(
        archive,
        "SELECT service, CAST(starts_at AS VARCHAR) AS s FROM anomalies \
         WHERE rule = 'Token Service Errors' AND status = 'firing'",
    );
    assert_eq!(firing.len(), 1, "detection was blinded: {firing:?}");
    for f in &firing {
        assert_eq!(f["service"], "token-service");
        assert!(f["s"].as_str().unwrap().starts_with("2025-06-02"), "{f}");
    }
}

#[test]
fn thousands_of_distinct_services_per_batch_keep_decoder_memory_bounded() {
    // Blocks of 8,192 records of one service alternating with 8,192 records of as many
    // distinct services: sized by the previous batch's largest group, the builders for each
    // new service once took 5.8 GB for this 6 MB input.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many-services.ndjson");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut n = 0;
    for block in 0..4 {
        for i in 0..8192 {
            let service = match block % 2 {
                0 => "api-gateway".to_string(),
                _ => format!("svc-{block}-{i}"),
            };
            writeln!(
                f,
                r#"{{"timestamp":"2025-06-02T09:{:02}:{:02}Z","service":"{service}","level":"INFO","message":"m"}}"#,
                block * 10 + i / 6000,
                i % 60
            )
            .unwrap();
            n += 1;
        }
    }
    drop(f);
    let archive = dir.path().join("archive");
    let archive = archive.to_str().unwrap();
    let (out, peak) = vigil_peak_rss(&["ingest", "--archive", archive, path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    eprintln!("peak RSS {peak:.0} MiB");
    assert!(peak < 400.0, "peak RSS {peak:.0} MiB");
    assert_eq!(sql(archive, "SELECT count(*) AS n FROM logs")[0]["n"], n);
}

#[test]
fn one_off_services_are_forgotten_and_rule_state_stays_bounded() {
    // 100,000 services seen once, then two hours of normal traffic, under a request-rate
    // baseline (state per service) capped at 1,000 series silent for at most 30 minutes.
    // Uncapped, the same with three hours took 773 MB and 31 s (release build).
    let dir = tempfile::tempdir().unwrap();
    let (logs, metrics) = generate(dir.path(), "2h", "5", &[]);
    let mut once = String::new();
    for i in 0..100_000 {
        once.push_str(&format!(
            r#"{{"timestamp":"2025-06-02T09:00:{:02}Z","service":"once-{i}","level":"INFO"}}"#,
            i % 60
        ));
        once.push('\n');
    }
    let input = splice(&logs, 0, &once, dir.path(), "one-off.ndjson");
    let events = dir.path().join("events.ndjson");
    let (out, peak) = vigil_peak_rss(&[
        "backtest",
        "--pipeline",
        hostile("pipelines/many-series.toml").to_str().unwrap(),
        "--logs",
        input.to_str().unwrap(),
        "--metrics",
        metrics.to_str().unwrap(),
        "--anomalies",
        events.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let forgotten: u64 = err
        .split(" rule series forgotten")
        .next()
        .and_then(|s| s.rsplit(", ").next())
        .map(|n| n.replace(',', "").parse().unwrap())
        .unwrap_or_else(|| panic!("no forgotten series reported: {err}"));
    assert!(forgotten >= 99_000, "{err}");
    eprintln!("peak RSS {peak:.0} MiB");
    assert!(peak < 300.0, "peak RSS {peak:.0} MiB");
}

#[test]
fn pipeline_files_that_run_would_reject_fail_validation_at_their_line() {
    for (file, line, needle) in [
        ("pipelines/unknown-column.toml", 14, "processing_tme_ms"),
        ("pipelines/huge-window.toml", 13, "at most"),
    ] {
        let path = hostile(file);
        let out = vigil(&["validate", path.to_str().unwrap()]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{file} validated");
        assert!(
            err.contains(&format!(":{line}:")) && err.contains(needle),
            "{file}: {err}"
        );
    }
}

/// A small archive holding the escapes record.
fn escapes_archive(dir: &Path) -> String {
    let archive = dir.join("archive");
    let archive = archive.to_str().unwrap().to_string();
    vigil_ok(&[
        "ingest",
        "--archive",
        &archive,
        hostile("escapes.ndjson").to_str().unwrap(),
    ]);
    archive
}

/// `vigil sql --timeout` bounds opening the archive too: an object store that accepts
/// connections and never answers held the command for `object_store`'s own retries, minutes
/// past the timeout asked for.
#[test]
fn an_archive_whose_store_never_answers_fails_at_the_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("aws_endpoint=http://{}", listener.local_addr().unwrap());
    // Accept every connection and hold it, answering nothing.
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().collect();
        drop(held);
    });
    let started = std::time::Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["sql", "--timeout", "2s", "--archive", "s3://bucket/archive"])
        .args(["--storage-option", &endpoint])
        .args(["--storage-option", "aws_access_key_id=test"])
        .args(["--storage-option", "aws_secret_access_key=test"])
        .args(["--storage-option", "aws_region=us-east-1"])
        .arg("SELECT 1")
        .env_remove("VIGIL_ARCHIVE")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Generous for a loaded machine, far below object_store's retries.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("vigil sql --timeout 2s still running after 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(
        err.contains("opening the archive took longer than the limit of 2s"),
        "{err}"
    );
}

#[test]
fn queries_are_bounded_in_size_time_memory_and_rows() {
    let dir = tempfile::tempdir().unwrap();
    let archive = escapes_archive(dir.path());
    let query = |file: &str, extra: &[&str]| {
        let q = std::fs::read_to_string(hostile(file)).unwrap();
        let mut args = vec!["sql", "--archive", &archive];
        args.extend(extra);
        args.push(q.trim());
        let out = vigil(&args);
        assert!(!out.status.success(), "{file} succeeded");
        stderr(&out)
    };
    let err = query("queries/repeat.sql", &[]);
    assert!(err.contains("repeat would build a string"), "{err}");
    let err = query("queries/endless.sql", &["--timeout", "2s"]);
    assert!(err.contains("longer than its limit of 2s"), "{err}");
    let err = query("queries/array_agg.sql", &["--memory", "32MiB"]);
    assert!(err.to_lowercase().contains("resources exhausted"), "{err}");
    // Rows: capped unless asked for more, and the cap is said.
    let out = vigil(&[
        "sql",
        "--archive",
        &archive,
        "--format",
        "csv",
        "SELECT value FROM generate_series(1, 25000)",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 10_001);
    assert!(stderr(&out).contains("--max-rows"), "{}", stderr(&out));
    let all = vigil_ok(&[
        "sql",
        "--archive",
        &archive,
        "--format",
        "csv",
        "--max-rows",
        "0",
        "SELECT value FROM generate_series(1, 25000)",
    ]);
    assert_eq!(all.lines().count(), 25_001);
}

#[test]
fn terminal_escapes_in_logged_text_are_shown_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let archive = escapes_archive(dir.path());
    let table = vigil_ok(&["sql", "--archive", &archive, "SELECT message FROM logs"]);
    let tree = vigil_ok(&["trace", "--archive", &archive, "t-escape"]);
    for shown in [&table, &tree] {
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
            "{shown:?}"
        );
        assert!(shown.contains("\\u001b[31mpwned"), "{shown}");
    }
    // Machine formats into a pipe keep the exact text.
    let json = json_rows(&vigil_ok(&[
        "sql",
        "--archive",
        &archive,
        "--format",
        "json",
        "SELECT message FROM logs",
    ]));
    assert_eq!(json[0]["message"], "\u{1b}[2J\u{1b}[31mpwned\u{7}\r");
}

#[test]
fn command_lines_that_would_destroy_input_or_never_end_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let series = dir.path().join("series.csv");
    let text = "timestamp,value\n2025-06-02 09:00:00,1\n2025-06-02 09:05:00,2\n";
    std::fs::write(&series, text).unwrap();
    let s = series.to_str().unwrap();
    let out = vigil(&["detect-series", "--input", s, "--output", s]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is the --input file"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&series).unwrap(),
        text,
        "input intact"
    );
    for rate in ["nan", "inf", "-1", "1e12"] {
        let logs = dir.path().join("l.ndjson");
        let metrics = dir.path().join("m.ndjson");
        let out = vigil(&[
            "generate",
            "--logs",
            logs.to_str().unwrap(),
            "--metrics",
            metrics.to_str().unwrap(),
            &format!("--rate={rate}"),
        ]);
        assert!(!out.status.success(), "--rate {rate} accepted");
        assert!(stderr(&out).contains("rate"), "{}", stderr(&out));
    }
    // No threads at all was taken, and meant one.
    let archive = dir.path().join("a");
    let out = vigil(&[
        "ingest",
        "--threads",
        "0",
        "--archive",
        archive.to_str().unwrap(),
        series.to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "--threads 0 accepted");
    assert!(stderr(&out).contains("at least 1"), "{}", stderr(&out));
    assert!(!archive.exists(), "nothing written");
}
