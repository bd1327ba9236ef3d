//! A writer's buffer remembers where each batch came from: dropping one source's rows (its
//! partitions were revoked) keeps every other source's, and their age.

mod common;

use common::{local_archive, samples};
use vigil_store::{FlushPolicy, TableSpec, TableWriter};

#[tokio::test]
async fn discarding_one_origin_keeps_the_rows_of_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let archive = local_archive(dir.path());
    let mut w = TableWriter::open(&archive, TableSpec::metrics(), FlushPolicy::default())
        .await
        .unwrap();
    w.push_from(1, samples(3));
    w.push_from(2, samples(5));
    w.push_from(1, samples(7));
    let due = w.due_in();
    w.discard_from(1);
    assert_eq!(w.pending_rows(), 5);
    assert!(w.due_in() <= due, "the kept rows keep their age");
    w.discard_from(3);
    assert_eq!(w.pending_rows(), 5);
    let committed = w.commit(&[]).await.unwrap().unwrap();
    assert_eq!(committed.rows, 5);
}
