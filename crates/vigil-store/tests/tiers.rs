//! Tiers at the store's level: what a maintenance pass that died half-way left is invisible
//! to readers and undone by the next pass.

mod common;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use common::{T0, samples_at};
use datafusion::prelude::SessionContext;
use vigil_store::{Archive, FlushPolicy, MaintainOptions, Retention, TableSpec, TableWriter, Tier};

const DAY: i64 = 86_400_000_000;

/// Rows of `metrics` as a reader sees them: every tier, each row once.
async fn visible(archive: &Archive) -> usize {
    let ctx = SessionContext::new();
    let views = archive.tier_views("metrics").await.unwrap();
    let mut n = 0;
    for (_, provider) in views.providers(&ctx.state()).await.unwrap() {
        n += ctx.read_table(provider).unwrap().count().await.unwrap();
    }
    n
}

fn at(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap()
}

#[tokio::test]
async fn commits_of_a_pass_that_died_stay_invisible_and_are_undone() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::new(dir.path().to_str().unwrap(), &BTreeMap::new()).unwrap();
    let mut hot = TableWriter::open(&archive, TableSpec::metrics(), FlushPolicy::manual())
        .await
        .unwrap();
    hot.push(samples_at(T0 - 100 * DAY, 10));
    hot.push(samples_at(T0, 5));
    hot.commit(&[]).await.unwrap();
    let specs = [TableSpec::metrics()];
    let opts = MaintainOptions::new(Retention::default(), at(T0 + 3_600_000_000));
    let reports = archive.maintain(&specs, &opts).await.unwrap();
    assert_eq!(reports[0].to_cold, 10, "{reports:?}");
    assert_eq!(visible(&archive).await, 15);

    // A pass dies after committing into cold, before publishing the layout.
    let cold = archive.tier(Tier::Cold);
    let mut w = TableWriter::open(&cold, TableSpec::metrics(), FlushPolicy::manual())
        .await
        .unwrap();
    w.push(samples_at(T0 - 100 * DAY, 7));
    let orphan = w.commit(&[]).await.unwrap().unwrap();
    assert_eq!(
        visible(&archive).await,
        15,
        "readers see the published version only"
    );

    // The next pass undoes it; nothing else changes.
    archive.maintain(&specs, &opts).await.unwrap();
    assert_eq!(visible(&archive).await, 15);
    let restored = cold.open("metrics").await.unwrap().unwrap();
    assert!(restored.version().unwrap() > orphan.version);
    let ctx = SessionContext::new();
    restored.update_datafusion_session(&ctx.state()).unwrap();
    let provider = restored.table_provider().await.unwrap();
    assert_eq!(ctx.read_table(provider).unwrap().count().await.unwrap(), 10);
}

#[tokio::test]
async fn only_one_pass_runs_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::new(dir.path().to_str().unwrap(), &BTreeMap::new()).unwrap();
    let held = archive.lock_maintenance().await.unwrap();
    let opts = MaintainOptions::new(Retention::default(), at(T0));
    let err = archive
        .maintain(&[TableSpec::metrics()], &opts)
        .await
        .unwrap_err();
    assert!(
        matches!(err, vigil_store::StoreError::MaintenanceBusy { .. }),
        "{err}"
    );
    archive.unlock_maintenance(&held).await;
    archive
        .maintain(&[TableSpec::metrics()], &opts)
        .await
        .unwrap();
}
