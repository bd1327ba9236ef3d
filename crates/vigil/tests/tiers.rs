//! Hot, warm and cold through the binary: telemetry spread over 400 days, `vigil maintain`
//! with `--now`, and queries that run while days move never see a row twice or miss one.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use common::{duckdb, json_rows, sql_rows, vigil_ok};

/// The newest day of the generated data.
const NEWEST: &str = "2026-06-01T09:00:00Z";

fn at(t: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(t).unwrap().to_utc()
}

/// Two minutes of telemetry every ten days, the newest on [`NEWEST`], 400 days back; ingested
/// into `<dir>/archive` through a pipeline file with those tiers' defaults and no grace, so
/// removed files are vacuumed at once.
fn archive_over_400_days(dir: &Path) -> (PathBuf, String) {
    let mut files = Vec::new();
    for i in 0..40 {
        let start = at(NEWEST) - Duration::days(10 * i);
        let logs = dir.join(format!("logs{i}.ndjson"));
        vigil_ok(&[
            "generate",
            "--logs",
            logs.to_str().unwrap(),
            "--start",
            &start.to_rfc3339(),
            "--duration",
            "2m",
            "--rate",
            "1",
            "--seed",
            &i.to_string(),
        ]);
        files.push(logs);
    }
    let archive = dir.join("archive").to_str().unwrap().to_string();
    let paths: Vec<String> = files
        .iter()
        .map(|f| format!("{:?}", f.to_str().unwrap()))
        .collect();
    let pipeline = dir.join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"[pipeline]
name = "tiers"

[[sources]]
type = "file"
kind = "logs"
paths = [{}]

[archive]
url = "{archive}"

[retention]
grace = "0s"
"#,
            paths.join(", ")
        ),
    )
    .unwrap();
    vigil_ok(&["run", "--pipeline", pipeline.to_str().unwrap()]);
    (pipeline, archive)
}

fn maintain(pipeline: &Path, now: DateTime<Utc>) -> String {
    vigil_ok(&[
        "maintain",
        "--pipeline",
        pipeline.to_str().unwrap(),
        "--now",
        &now.to_rfc3339(),
        "--once",
    ])
}

/// Rows per day of a table (or tier), e.g. `logs`, `logs_warm`.
fn per_day(archive: &str, table: &str) -> BTreeMap<NaiveDate, u64> {
    sql_rows(
        archive,
        &format!("SELECT CAST(date AS VARCHAR) AS d, count(*) AS n FROM {table} GROUP BY date"),
    )
    .iter()
    .map(|r| {
        (
            r["d"].as_str().unwrap().parse().unwrap(),
            r["n"].as_u64().unwrap(),
        )
    })
    .collect()
}

#[test]
fn maintenance_moves_days_through_the_tiers_and_deletes_what_is_past_retention() {
    let dir = tempfile::tempdir().unwrap();
    let (pipeline, archive) = archive_over_400_days(dir.path());
    let before = per_day(&archive, "logs");
    assert_eq!(before.len(), 40, "one day every ten days");

    let now = at(NEWEST) + Duration::hours(1);
    // A dry run says what the pass will do and changes nothing.
    let plan = vigil_ok(&[
        "maintain",
        "--pipeline",
        pipeline.to_str().unwrap(),
        "--now",
        &now.to_rfc3339(),
        "--dry-run",
    ]);
    assert_eq!(per_day(&archive, "logs"), before);
    assert!(!Path::new(&archive).join("warm").exists());
    let report = maintain(&pipeline, now);
    assert!(report.contains("logs: "), "{report}");
    // `logs: 1,234 rows to warm, 56 rows to cold, 7 files past retention, …`
    let numbers = |text: &str| -> Vec<u64> {
        let line = text.lines().find(|l| l.starts_with("logs: ")).unwrap();
        line.split(' ')
            .filter_map(|w| w.replace(',', "").parse().ok())
            .collect()
    };
    let (planned, done) = (numbers(&plan), numbers(&report));
    assert_eq!(planned[..3], done[..3], "{plan}\n{report}");
    assert!(done[..3].iter().all(|&n| n > 0), "{report}");
    assert!(plan.contains("dry run: nothing was changed"), "{plan}");
    let (hot_cut, warm_cut, drop_cut) = (
        (now - Duration::days(7)).date_naive(),
        (now - Duration::days(30)).date_naive(),
        (now - Duration::days(365)).date_naive(),
    );

    // Every day within retention is still there, whole; none past it is, in any tier.
    let kept: BTreeMap<NaiveDate, u64> = before
        .iter()
        .filter(|(d, _)| **d >= drop_cut)
        .map(|(d, n)| (*d, *n))
        .collect();
    assert!(kept.len() < before.len(), "some days are past retention");
    assert_eq!(per_day(&archive, "logs"), kept);
    // Each day sits in the tier its age says.
    let hot = per_day(&archive, "logs_hot");
    let warm = per_day(&archive, "logs_warm");
    let cold = per_day(&archive, "logs_cold");
    assert!(hot.keys().all(|d| *d >= hot_cut), "{hot:?}");
    assert!(
        warm.keys().all(|d| (warm_cut..hot_cut).contains(d)),
        "{warm:?}"
    );
    assert!(
        cold.keys().all(|d| (drop_cut..warm_cut).contains(d)),
        "{cold:?}"
    );
    assert!(!hot.is_empty() && !warm.is_empty() && !cold.is_empty());
    assert_eq!(hot.len() + warm.len() + cold.len(), kept.len());

    // Other engines read a tier as the Delta table it is.
    let duck = duckdb(&format!(
        "SELECT count(*) AS n FROM delta_scan('{archive}/cold/logs')"
    ));
    assert_eq!(duck[0]["n"].as_u64().unwrap(), cold.values().sum::<u64>());

    // A second pass at the same time has nothing to do and changes nothing.
    let again = maintain(&pipeline, now);
    assert!(
        again.contains("logs: 0 rows to warm, 0 rows to cold, 0 files past retention"),
        "{again}"
    );
    assert_eq!(per_day(&archive, "logs"), kept);

    // A query for the last hours opens no warm or cold file: with their data files gone (the
    // Delta logs kept), it still answers, from hot alone; a query over everything cannot.
    let recent = format!(
        "SELECT count(*) AS n FROM logs WHERE timestamp >= '{}'",
        (at(NEWEST) - Duration::hours(1)).to_rfc3339()
    );
    let want = sql_rows(&archive, &recent)[0]["n"].as_u64().unwrap();
    assert!(want > 0);
    for tier in ["warm", "cold"] {
        for day in std::fs::read_dir(format!("{archive}/{tier}/logs")).unwrap() {
            let day = day.unwrap().path();
            if !day.ends_with("_delta_log") {
                std::fs::remove_dir_all(day).unwrap();
            }
        }
    }
    assert_eq!(sql_rows(&archive, &recent)[0]["n"].as_u64().unwrap(), want);
    // (count(*) alone is answered from the Delta log's statistics: read the rows.)
    let everything = common::vigil(&[
        "sql",
        "--archive",
        &archive,
        "SELECT sum(length(message)) FROM logs",
    ]);
    assert!(
        !everything.status.success(),
        "warm and cold files were read"
    );
}

#[test]
fn queries_running_while_days_move_see_every_row_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (pipeline, archive) = archive_over_400_days(dir.path());
    // Days that stay within retention through every pass below.
    let from = (at(NEWEST) - Duration::days(290)).date_naive();
    let query = format!("SELECT count(*) AS n FROM logs WHERE date >= DATE '{from}'");
    let truth = sql_rows(&archive, &query)[0]["n"].as_u64().unwrap();
    assert!(truth > 0);

    let done = Arc::new(AtomicBool::new(false));
    // A server as well: it keeps the tables it opened and brings them up to date per
    // statement, across every move.
    let addr = format!("127.0.0.1:{}", common::free_port());
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "serve",
            "--archive",
            &archive,
            "--http",
            &addr,
            "--insecure-no-auth",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while common::try_http(&addr, "GET", "/healthz", &[], "").is_err() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let served = {
        let (done, addr, query) = (done.clone(), addr.clone(), query.clone());
        std::thread::spawn(move || {
            let mut counts = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let (status, body) = common::http(&addr, "POST", "/sql", &[], &query);
                assert_eq!(status, 200, "{body}");
                let rows: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
                counts.push(rows[0]["n"].as_u64().unwrap());
            }
            counts
        })
    };
    let reader = {
        let (done, archive, query) = (done.clone(), archive.clone(), query.clone());
        std::thread::spawn(move || {
            let mut counts = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let rows = json_rows(&vigil_ok(&[
                    "sql",
                    "--archive",
                    &archive,
                    "--format",
                    "json",
                    &query,
                ]));
                counts.push(rows[0]["n"].as_u64().unwrap());
            }
            counts
        })
    };
    // Passes that move days hot → warm → cold and delete the oldest, one after the other.
    for days in [0, 8, 20, 31, 45, 60] {
        maintain(
            &pipeline,
            at(NEWEST) + Duration::days(days) + Duration::hours(1),
        );
    }
    done.store(true, Ordering::Relaxed);
    let counts = reader.join().unwrap();
    let served = served.join().unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(served.len() >= 3, "only {} statements served", served.len());
    assert!(
        served.iter().all(|&n| n == truth),
        "the server saw a count other than {truth}: {served:?}"
    );
    assert!(
        counts.len() >= 3,
        "only {} queries ran during the passes",
        counts.len()
    );
    assert!(
        counts.iter().all(|&n| n == truth),
        "a query saw a count other than {truth}: {counts:?}"
    );
    assert_eq!(sql_rows(&archive, &query)[0]["n"].as_u64().unwrap(), truth);
    assert!(
        !per_day(&archive, "logs_cold").is_empty(),
        "days reached cold"
    );
}
