//! The archive on a real S3 server (moto), through the binary: two `vigil ingest` processes
//! writing the same tables at once, then `vigil sql` over `s3://`, see every record once.

mod common;

#[path = "../../vigil-store/tests/common/s3.rs"]
mod s3;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use common::{generate, json_rows, vigil_ok};
use s3::S3;

#[test]
fn two_ingests_into_one_s3_archive_then_sql_sees_every_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, _) = generate(dir.path(), "20m", "10", &[]);
    let text = std::fs::read_to_string(&logs).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        *want
            .entry(v["service"].as_str().unwrap().into())
            .or_default() += 1;
    }

    let s3 = S3::start();
    let archive = format!("s3://{}/vigil", s3.bucket());
    let mut archive_args = vec!["--archive".to_string(), archive];
    for (k, v) in s3.options() {
        archive_args.extend(["--storage-option".into(), format!("{k}={v}")]);
    }
    // Two writers at once, each committing every 500 rows: their commits interleave.
    let ingests: Vec<_> = lines
        .chunks(lines.len().div_ceil(2))
        .enumerate()
        .map(|(i, half)| {
            let path = dir.path().join(format!("half{i}.ndjson"));
            std::fs::write(&path, half.join("\n") + "\n").unwrap();
            Command::new(env!("CARGO_BIN_EXE_vigil"))
                .args(["ingest", "--max-rows", "500"])
                .args(&archive_args)
                .arg(&path)
                .env_remove("VIGIL_ARCHIVE")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("vigil runs")
        })
        .collect();
    for ingest in ingests {
        let out = ingest.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "ingest failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let mut args = vec!["sql", "--format", "json"];
    args.extend(archive_args.iter().map(String::as_str));
    args.push("SELECT service, count(*) AS n FROM logs GROUP BY service ORDER BY service");
    let got: BTreeMap<String, u64> = json_rows(&vigil_ok(&args))
        .iter()
        .map(|r| {
            (
                r["service"].as_str().unwrap().into(),
                r["n"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, want);
    // The archive has no metrics or dead letters yet: no error says otherwise.
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(&args)
        .env_remove("VIGIL_ARCHIVE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("ERROR"),
        "{stderr}"
    );
}
