//! Two writers recording the same application transaction (a Kafka partition's offset) into one
//! table: whichever commits second is fenced, whether the other's commit raced it or already sat
//! in the snapshot it builds on, and a writer's own consecutive commits are never fenced.

mod common;

use std::path::Path;

use common::{local_archive, samples};
use vigil_core::schema::{FieldType, LogSchema, PromotedField};
use vigil_store::{AppTxn, FlushPolicy, TableSpec, TableWriter};

fn txn(app_id: &str, from: Option<i64>, to: i64) -> AppTxn {
    AppTxn {
        app_id: app_id.to_string(),
        from,
        to,
    }
}

/// Two writers of the same table, opened before either commits.
async fn writers(dir: &Path) -> (TableWriter, TableWriter) {
    let archive = local_archive(dir);
    let open = || TableWriter::open(&archive, TableSpec::metrics(), FlushPolicy::default());
    let a = open().await.unwrap();
    let b = open().await.unwrap();
    (a, b)
}

#[tokio::test]
async fn a_partition_another_writer_recorded_under_our_snapshot_is_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b) = writers(dir.path()).await;
    a.commit(&[txn("p0", None, 10)]).await.unwrap();
    // B's commit of another partition is rebased over A's: no conflict, but B's snapshot now
    // holds A's record of p0, which B has never seen.
    b.commit(&[txn("p1", None, 5)]).await.unwrap();
    assert_eq!(b.app_version("p0").await.unwrap(), Some(10));
    let err = b.commit(&[txn("p0", None, 10)]).await.unwrap_err();
    assert!(err.is_fenced(), "{err}");
    assert_eq!(b.app_version("p0").await.unwrap(), Some(10));
    // A refreshed snapshot does not help either: the check is against what the writer saw.
    b.refresh().await.unwrap();
    let err = b.commit(&[txn("p0", Some(3), 12)]).await.unwrap_err();
    assert!(err.is_fenced(), "{err}");
    // From where the table is, B may go on.
    b.commit(&[txn("p0", Some(10), 12)]).await.unwrap();
    assert_eq!(b.app_version("p0").await.unwrap(), Some(12));
}

#[tokio::test]
async fn a_concurrent_commit_of_the_same_partition_is_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b) = writers(dir.path()).await;
    a.commit(&[txn("p0", None, 10)]).await.unwrap();
    // B's snapshot predates A's commit: Delta's conflict check on the txn fences it.
    let err = b.commit(&[txn("p0", None, 7)]).await.unwrap_err();
    assert!(err.is_fenced(), "{err}");
    a.refresh().await.unwrap();
    assert_eq!(a.app_version("p0").await.unwrap(), Some(10));
}

/// The Parquet files under `dir`, recursively.
fn parquet_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| match p.is_dir() {
            true => parquet_files(&p),
            false => usize::from(p.extension().is_some_and(|e| e == "parquet")),
        })
        .sum()
}

#[tokio::test]
async fn a_fenced_commit_leaves_no_files_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b) = writers(dir.path()).await;
    a.push(samples(10));
    let committed = a.commit(&[txn("p0", None, 10)]).await.unwrap().unwrap();
    // B wrote its Parquet file before Delta's conflict check fenced the commit.
    b.push(samples(20));
    let err = b.commit(&[txn("p0", None, 7)]).await.unwrap_err();
    assert!(err.is_fenced(), "{err}");
    assert_eq!(parquet_files(dir.path()), committed.files);
}

#[tokio::test]
async fn what_a_writer_knew_of_a_partition_is_read_again_once_another_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b) = writers(dir.path()).await;
    b.commit(&[txn("p0", None, 5)]).await.unwrap();
    // A (a zombie that once saw p0 at 5) moves p0 on; B's next commit, of p1, is rebased over
    // it, so B's snapshot holds p0 at 10 while B last recorded 5 itself.
    a.refresh().await.unwrap();
    a.commit(&[txn("p0", Some(5), 10)]).await.unwrap();
    b.commit(&[txn("p1", None, 1)]).await.unwrap();
    let err = b.commit(&[txn("p0", Some(5), 8)]).await.unwrap_err();
    assert!(err.is_fenced(), "{err}");
}

#[tokio::test]
async fn a_writers_own_consecutive_commits_go_through() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b) = writers(dir.path()).await;
    let mut at = None;
    for to in [10, 20, 30] {
        a.commit(&[txn("p0", at, to), txn("p1", at.map(|v| v + 1), to + 1)])
            .await
            .unwrap();
        at = Some(to);
    }
    // Another writer's commits of other partitions, interleaved, do not fence A's.
    b.commit(&[txn("p2", None, 1)]).await.unwrap();
    a.commit(&[txn("p0", Some(30), 40)]).await.unwrap();
    b.commit(&[txn("p2", Some(1), 2)]).await.unwrap();
    a.commit(&[txn("p0", Some(40), 50)]).await.unwrap();
    a.refresh().await.unwrap();
    assert_eq!(a.app_version("p0").await.unwrap(), Some(50));
    assert_eq!(a.app_version("p1").await.unwrap(), Some(31));
    assert_eq!(a.app_version("p2").await.unwrap(), Some(2));
}

/// A writer whose table gained a column after it opened it (another pipeline promoting one
/// more field) fails one commit on the metadata change and goes through on the retry, built on
/// the table as it is now.
#[tokio::test]
async fn a_writer_goes_on_after_another_adds_a_column() {
    let dir = tempfile::tempdir().unwrap();
    let archive = local_archive(dir.path());
    let seed = TableSpec::logs(&LogSchema::seed());
    let mut old = TableWriter::open(&archive, seed, FlushPolicy::default())
        .await
        .unwrap();
    let mut fields = LogSchema::seed().promoted().to_vec();
    fields.push(PromotedField::nested("span_kind", FieldType::Utf8));
    let wider = TableSpec::logs(&LogSchema::new(fields).unwrap());
    let mut new = TableWriter::open(&archive, wider, FlushPolicy::default())
        .await
        .unwrap();
    new.commit(&[txn("p1", None, 1)]).await.unwrap();
    let err = old.commit(&[txn("p0", None, 10)]).await.unwrap_err();
    assert!(!err.is_fenced(), "{err}");
    assert!(err.to_string().contains("Metadata changed"), "{err}");
    old.commit(&[txn("p0", None, 10)]).await.unwrap();
    new.refresh().await.unwrap();
    assert_eq!(new.app_version("p0").await.unwrap(), Some(10));
}
