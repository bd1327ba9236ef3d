//! Golden SQL: every `fixtures/sql/*.sql` runs over an archive of `fixtures/deals` and must
//! print exactly `fixtures/sql/*.out`. Regenerate the expectations with `VIGIL_BLESS=1 cargo
//! test --test golden_sql`, read the diff, and commit it; never edit `.out` files by hand.

mod common;

use common::vigil_ok;

#[test]
fn golden_sql() {
    let root = vigil_core::manifest_dir!().join("../..");
    let fixtures = root.join("fixtures");
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let archive = archive.to_str().unwrap();
    let logs = fixtures.join("deals/logs.ndjson");
    let metrics = fixtures.join("deals/metrics.ndjson");
    vigil_ok(&["ingest", "--archive", archive, logs.to_str().unwrap()]);
    vigil_ok(&[
        "ingest",
        "--archive",
        archive,
        "--kind",
        "metrics",
        metrics.to_str().unwrap(),
    ]);

    let bless = std::env::var_os("VIGIL_BLESS").is_some();
    let mut queries: Vec<_> = std::fs::read_dir(fixtures.join("sql"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    queries.sort();
    assert!(!queries.is_empty());
    let mut failures = Vec::new();
    for q in &queries {
        let sql = std::fs::read_to_string(q).unwrap();
        let got = vigil_ok(&["sql", "--archive", archive, &sql]);
        let expected_path = q.with_extension("out");
        if bless {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != want {
            failures.push(format!(
                "{}:\n--- want\n{want}\n--- got\n{got}",
                q.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "golden SQL mismatches (VIGIL_BLESS=1 to accept):\n{}",
        failures.join("\n")
    );
}
