//! The sink against a local archive: positions ride in the commits of their rows, a fenced
//! commit repositions its source and drops what that source read before, a revoked source
//! loses only its own rows, and dead letters the archive has are not written twice.

use std::sync::Arc;
use std::sync::mpsc;

use futures::StreamExt;
use vigil_core::Partition;
use vigil_core::schema::{LogSchema, RecordKind, dead_letter_schema};
use vigil_decode::{DecodedBatch, Decoder, DecoderOptions};
use vigil_store::{AppTxn, Archive, FlushPolicy, TableSpec, TableWriter};

use super::*;
use crate::source::CheckpointDelta;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A log record at second `s` of 2025-06-02, or a malformed one.
fn record(s: u32, good: bool) -> Vec<u8> {
    if good {
        format!(r#"{{"timestamp":"2025-06-02T09:00:{s:02}Z","service":"api-gateway","level":"INFO","message":"m{s}"}}"#)
            .into_bytes()
    } else {
        b"{not json".to_vec()
    }
}

/// Messages `offsets` of partition `p` (a `false` makes that one malformed), decoded.
fn decode(p: &Partition, messages: &[(i64, bool)]) -> DecodedBatch {
    let mut d = Decoder::logs(LogSchema::seed(), DecoderOptions::default());
    let bytes: Vec<(Vec<u8>, i64)> = messages
        .iter()
        .map(|&(o, good)| (record(o as u32 % 60, good), o))
        .collect();
    d.decode_messages(
        &p.source,
        Some(p.partition),
        bytes.iter().map(|(b, o)| (b.as_slice(), *o)),
    );
    d.flush().unwrap_or_else(DecodedBatch::empty)
}

fn batch(p: &Partition, messages: &[(i64, bool)], from: Option<i64>, epoch: u64) -> Step {
    Step::Batch(SourceBatch {
        kind: RecordKind::Logs,
        stream: Arc::from(p.to_string()),
        batch: decode(p, messages),
        delta: Some(CheckpointDelta {
            partition: p.clone(),
            from,
            to: messages.last().unwrap().0 + 1,
            epoch,
        }),
    })
}

/// Rows of a file source (no positions).
fn file_rows(n: u32) -> Step {
    let mut d = Decoder::logs(LogSchema::seed(), DecoderOptions::default());
    let text: Vec<u8> = (0..n)
        .flat_map(|s| {
            let mut r = record(s, true);
            r.push(b'\n');
            r
        })
        .collect();
    d.decode_all(&text, drop);
    d.end_of_input();
    Step::Batch(SourceBatch {
        kind: RecordKind::Logs,
        stream: Arc::from("file"),
        batch: d.flush().unwrap(),
        delta: None,
    })
}

fn sink(archive: &Archive, sources: usize) -> Sink {
    Sink::new(
        archive.clone(),
        LogSchema::seed(),
        FlushPolicy::manual(),
        None,
        sources,
    )
}

/// A local archive in a fresh directory, a runtime, and partition `t:0`.
struct Fixture {
    _dir: tempfile::TempDir,
    archive: Archive,
    rt: tokio::runtime::Runtime,
    p: Partition,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::new(dir.path().to_str().unwrap(), &Default::default()).unwrap();
    Fixture {
        _dir: dir,
        archive,
        rt: rt(),
        p: Partition::new("t", 0),
    }
}

/// A sink of one source, connected, with `p` assigned.
fn assigned(f: &Fixture) -> (Sink, mpsc::Receiver<Feedback>) {
    let mut sink = sink(&f.archive, 1);
    let (tx, rx) = mpsc::channel();
    sink.connect(0, tx);
    f.rt.block_on(sink.handle(0, Step::Assigned(vec![(f.p.clone(), RecordKind::Logs)])))
        .unwrap();
    (sink, rx)
}

/// The messages of the archive's `logs` table, sorted.
fn messages(rt: &tokio::runtime::Runtime, archive: &Archive) -> Vec<String> {
    let schema = TableSpec::logs(&LogSchema::seed()).schema;
    let mut out: Vec<String> = rt.block_on(async {
        let mut s = archive
            .scan_since("logs", "timestamp", i64::MIN, schema)
            .await
            .unwrap();
        let mut out = Vec::new();
        while let Some(b) = s.next().await {
            let b = b.unwrap();
            let m = b.column_by_name("message").unwrap();
            let m = arrow::array::AsArray::as_string::<i32>(m);
            out.extend(m.iter().map(|v| v.unwrap().to_string()));
        }
        out
    });
    out.sort();
    out
}

fn version(
    rt: &tokio::runtime::Runtime,
    archive: &Archive,
    table: &str,
    p: &Partition,
) -> Option<i64> {
    rt.block_on(archive.app_versions(table, &[p.app_id()]))
        .unwrap()[0]
}

#[test]
fn positions_are_committed_with_their_rows_and_reported_to_the_source() {
    let f = fixture();
    let Fixture { archive, rt, p, .. } = &f;
    let (mut sink, rx) = assigned(&f);
    rt.block_on(async {
        sink.handle(0, batch(p, &[(0, true), (1, true)], None, 0))
            .await
            .unwrap();
        sink.handle(0, batch(p, &[(2, true)], Some(2), 0))
            .await
            .unwrap();
        sink.commit(true).await.unwrap();
    });
    assert_eq!(version(rt, archive, "logs", p), Some(3));
    assert_eq!(messages(rt, archive), ["m0", "m1", "m2"]);
    assert_eq!(
        rx.try_recv().unwrap(),
        Feedback::Committed(vec![(p.clone(), 3)])
    );
}

#[test]
fn a_fenced_commit_repositions_the_source_and_drops_what_it_read_before() {
    let f = fixture();
    let Fixture { archive, rt, p, .. } = &f;
    let (mut sink, rx) = assigned(&f);
    rt.block_on(async {
        sink.handle(0, batch(p, &[(0, true)], None, 0))
            .await
            .unwrap();
        sink.commit(true).await.unwrap();
        // Another replica archives offsets 1..5 of the same partition.
        let mut other = TableWriter::open(
            archive,
            TableSpec::logs(&LogSchema::seed()),
            FlushPolicy::manual(),
        )
        .await
        .unwrap();
        let txn = AppTxn {
            app_id: p.app_id(),
            from: Some(1),
            to: 5,
        };
        other.commit(&[txn]).await.unwrap();
        // Ours overlap: fenced, dropped, and the source told where the archive ends.
        sink.handle(0, batch(p, &[(1, true), (2, true)], Some(1), 0))
            .await
            .unwrap();
        sink.commit(true).await.unwrap();
    });
    let _committed = rx.try_recv().unwrap();
    assert_eq!(rx.try_recv().unwrap(), Feedback::Reposition { epoch: 1 });
    assert_eq!(sink.stats().fenced, 1);
    rt.block_on(async {
        // Read before the reposition: stale, whatever its offsets.
        sink.handle(0, batch(p, &[(5, true)], Some(3), 0))
            .await
            .unwrap();
        // Read after it.
        sink.handle(0, batch(p, &[(5, true), (6, true)], Some(5), 1))
            .await
            .unwrap();
        sink.commit(true).await.unwrap();
    });
    assert_eq!(sink.stats().stale_batches, 1);
    assert_eq!(version(rt, archive, "logs", p), Some(7));
    assert_eq!(messages(rt, archive), ["m0", "m5", "m6"]);
}

#[test]
fn a_revoked_source_loses_its_rows_and_another_source_keeps_its_own() {
    let f = fixture();
    let Fixture { archive, rt, p, .. } = &f;
    let mut sink = sink(archive, 2);
    let (tx, _rx) = mpsc::channel();
    sink.connect(1, tx);
    rt.block_on(async {
        sink.handle(0, file_rows(2)).await.unwrap();
        sink.handle(1, Step::Assigned(vec![(p.clone(), RecordKind::Logs)]))
            .await
            .unwrap();
        sink.handle(1, batch(p, &[(30, true)], None, 0))
            .await
            .unwrap();
        sink.handle(1, Step::Revoked).await.unwrap();
        sink.commit(true).await.unwrap();
    });
    assert_eq!(messages(rt, archive), ["m0", "m1"]);
    assert_eq!(version(rt, archive, "logs", p), None);
}

#[test]
fn dead_letters_the_archive_has_are_not_written_again() {
    let f = fixture();
    let Fixture { archive, rt, p, .. } = &f;
    let run = |messages: &[(i64, bool)]| {
        let (mut sink, _rx) = assigned(&f);
        rt.block_on(sink.handle(0, batch(p, messages, None, 0)))
            .unwrap();
        sink
    };
    // A first run commits its dead letters, then dies before the records commit.
    let mut first = run(&[(0, true), (1, false), (2, true), (3, false)]);
    rt.block_on(async {
        let txns = first.positions.dead_txns();
        let dead = first.writer(None).await.unwrap();
        dead.commit(&txns).await.unwrap();
    });
    assert_eq!(version(rt, archive, "dead_letters", p), Some(4));
    assert_eq!(version(rt, archive, "logs", p), None);
    // The next run reads the same messages again, and one more bad one.
    let mut second = run(&[(0, true), (1, false), (2, true), (3, false), (4, false)]);
    rt.block_on(second.commit(true)).unwrap();
    let offsets: Vec<i64> = rt.block_on(async {
        let mut s = archive
            .scan_since(
                "dead_letters",
                "received_at",
                i64::MIN,
                dead_letter_schema(),
            )
            .await
            .unwrap();
        let mut out = Vec::new();
        while let Some(b) = s.next().await {
            let b = b.unwrap();
            let o = b.column_by_name("offset").unwrap();
            out.extend(
                arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(o)
                    .values()
                    .iter()
                    .copied(),
            );
        }
        out.sort();
        out
    });
    assert_eq!(offsets, [1, 3, 4]);
    assert_eq!(version(rt, archive, "dead_letters", p), Some(5));
    assert_eq!(version(rt, archive, "logs", p), Some(5));
    assert_eq!(messages(rt, archive), ["m0", "m2"]);
}
