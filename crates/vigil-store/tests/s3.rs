//! The archive on a real S3 server (moto): commits are conditional PUTs, so two writers
//! committing to one table at once lose and duplicate nothing, a writer fenced off a partition
//! stays fenced, and settings that would make concurrent commits unsafe are refused.

mod common;

use std::collections::BTreeMap;

use common::s3::S3;
use common::samples;
use futures::StreamExt;
use vigil_core::schema::metric_schema;
use vigil_store::{AppTxn, Archive, FlushPolicy, TableSpec, TableWriter};

const COMMITS: i64 = 8;
const ROWS: usize = 25;

async fn rows(archive: &Archive, table: &str) -> usize {
    let mut batches = archive
        .scan_since(table, "timestamp", i64::MIN, metric_schema())
        .await
        .unwrap();
    let mut n = 0;
    while let Some(b) = batches.next().await {
        n += b.unwrap().num_rows();
    }
    n
}

/// `COMMITS` commits of `ROWS` rows, each recording `app_id` one step further.
async fn commit_all(mut w: TableWriter, app_id: &str) -> TableWriter {
    for i in 0..COMMITS {
        w.push(samples(ROWS));
        let txn = AppTxn {
            app_id: app_id.into(),
            from: (i > 0).then_some(i),
            to: i + 1,
        };
        w.commit(&[txn]).await.unwrap();
    }
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_committing_at_once_on_s3_lose_and_duplicate_nothing() {
    let s3 = S3::start();
    let archive = Archive::new(&format!("s3://{}/archive", s3.bucket()), &s3.options()).unwrap();
    let open = || TableWriter::open(&archive, TableSpec::metrics(), FlushPolicy::manual());
    let (a, b) = tokio::join!(open(), open());
    let (a, b) = (a.unwrap(), b.unwrap());
    let (a, _b) = tokio::join!(commit_all(a, "a"), commit_all(b, "b"));

    // A reader that never wrote: every commit of both writers, each once.
    let reader = Archive::new(archive.root().as_str(), &s3.options()).unwrap();
    assert_eq!(rows(&reader, "metrics").await, 2 * COMMITS as usize * ROWS);
    let versions = reader
        .app_versions("metrics", &["a".into(), "b".into()])
        .await
        .unwrap();
    assert_eq!(versions, vec![Some(COMMITS), Some(COMMITS)]);
    let table = reader.open("metrics").await.unwrap().unwrap();
    // The creation, then one version per commit: none overwrote another.
    assert_eq!(table.version(), Some(2 * COMMITS as u64));
    drop(a);
}

#[tokio::test]
async fn a_writer_racing_for_the_same_partition_on_s3_is_fenced() {
    let s3 = S3::start();
    let archive = Archive::new(&format!("s3://{}/archive", s3.bucket()), &s3.options()).unwrap();
    let open = || TableWriter::open(&archive, TableSpec::metrics(), FlushPolicy::manual());
    let mut a = open().await.unwrap();
    let mut b = open().await.unwrap();
    a.push(samples(ROWS));
    a.commit(&[AppTxn {
        app_id: "p0".into(),
        from: None,
        to: 10,
    }])
    .await
    .unwrap();
    b.push(samples(ROWS));
    let err = b
        .commit(&[AppTxn {
            app_id: "p0".into(),
            from: None,
            to: 7,
        }])
        .await
        .unwrap_err();
    assert!(err.is_fenced(), "{err}");
    assert_eq!(rows(&archive, "metrics").await, ROWS);
}

#[tokio::test]
async fn settings_that_make_concurrent_commits_unsafe_are_refused() {
    let url = "s3://bucket/archive";
    for (key, value) in [
        ("AWS_S3_ALLOW_UNSAFE_RENAME", "true"),
        ("aws_conditional_put", "disabled"),
    ] {
        let options = BTreeMap::from([(key.to_string(), value.to_string())]);
        let archive = Archive::new(url, &options).unwrap();
        let err = archive.check_commits().unwrap_err();
        assert!(err.to_string().contains("single_writer"), "{err}");
        let err = TableWriter::open(&archive, TableSpec::metrics(), FlushPolicy::manual())
            .await
            .err()
            .expect("refused before touching the store");
        assert_eq!(err.kind(), vigil_core::ErrorKind::User, "{err}");
        // One declared writer may use a store without conditional PUT.
        archive.with_single_writer(true).check_commits().unwrap();
    }
    let safe = Archive::new(url, &BTreeMap::new()).unwrap();
    safe.check_commits().unwrap();
}
