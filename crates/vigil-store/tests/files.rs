//! vigil writes its Parquet files and `add` actions itself, encoding column chunks on several
//! threads: the archive must read back exactly as it did when delta-rs's `RecordBatchWriter`
//! wrote the same rows — same rows in the same order, same row groups, same column statistics
//! in the footer and in the Delta log, same bloom filters — whatever the thread count.

mod common;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use common::local_archive;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::properties::ReaderProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::serialized_reader::ReadOptionsBuilder;
use vigil_core::schema::LogSchema;
use vigil_decode::{Decoder, DecoderOptions};
use vigil_store::{FlushPolicy, TableSpec, TableWriter};

/// ~300k generated log records over two days (several row groups per partition, both sort
/// paths: the decoder's per-service batches arrive presorted, shuffled ones do not).
fn logs(shuffle: bool) -> Vec<RecordBatch> {
    let cfg = vigil_gen::Config {
        seed: 11,
        rate: 0.7,
        duration: std::time::Duration::from_secs(26 * 3600),
        incidents: vec!["errors:database@10h+20m".parse().unwrap()],
        ..Default::default()
    };
    let mut g = vigil_gen::Generator::new(cfg);
    let (mut lines, mut metrics) = (Vec::new(), Vec::new());
    while g.next_tick(&mut lines, &mut metrics) {
        metrics.clear();
    }
    let mut d = Decoder::logs(LogSchema::seed(), DecoderOptions::default());
    let mut batches = Vec::new();
    d.decode_all(&lines, |b| batches.extend(b.records));
    d.end_of_input();
    batches.extend(d.flush().into_iter().flat_map(|b| b.records));
    if shuffle {
        // Every batch with its rows in reverse: services interleaved, times going back.
        let all = concat_batches(&batches[0].schema(), &batches).unwrap();
        let idx = arrow::array::UInt32Array::from_iter_values((0..all.num_rows() as u32).rev());
        batches = vec![arrow::compute::take_record_batch(&all, &idx).unwrap()];
    }
    batches
}

/// Every data file of a table: (partition directory, rows, footer summary, stats of the add).
fn files(table: &std::path::Path) -> Vec<(String, Vec<RecordBatch>, String)> {
    let mut out = Vec::new();
    for part in std::fs::read_dir(table).unwrap() {
        let part = part.unwrap().path();
        let name = part.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with('_') {
            continue;
        }
        for f in std::fs::read_dir(&part).unwrap() {
            let f = f.unwrap().path();
            let rows = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&f).unwrap())
                .unwrap()
                .build()
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let options = ReadOptionsBuilder::new()
                .with_reader_properties(
                    ReaderProperties::builder()
                        .set_read_bloom_filter(true)
                        .build(),
                )
                .build();
            let reader =
                SerializedFileReader::new_with_options(std::fs::File::open(&f).unwrap(), options)
                    .unwrap();
            let meta = reader.metadata();
            let mut footer = String::new();
            for (i, rg) in meta.row_groups().iter().enumerate() {
                footer += &format!("row group {i}: {} rows\n", rg.num_rows());
                for c in rg.columns() {
                    footer += &format!(
                        "  {} {:?} {:?} bloom:{}\n",
                        c.column_path(),
                        c.statistics(),
                        c.encodings().collect::<Vec<_>>(),
                        c.bloom_filter_offset().is_some()
                    );
                }
                let group = reader.get_row_group(i).unwrap();
                for c in 0..rg.num_columns() {
                    if let Some(b) = group.get_column_bloom_filter(c) {
                        // The same filter answers the same to values that are not there.
                        let hits = (0..4000)
                            .filter(|i| b.check(format!("absent-{i}").as_str()))
                            .count();
                        footer += &format!("  bloom {c}: {hits} false positives in 4000\n");
                    }
                }
            }
            footer += &format!("kv: {:?}\n", meta.file_metadata().key_value_metadata());
            out.push((name.clone(), rows, footer));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The `add` actions' partition values and statistics (without the modification time).
fn adds(table: &std::path::Path) -> Vec<serde_json::Value> {
    let mut adds = Vec::new();
    for f in std::fs::read_dir(table.join("_delta_log")).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "json") {
            for line in std::fs::read_to_string(&f).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                if let Some(add) = v.get("add") {
                    let stats: serde_json::Value =
                        serde_json::from_str(add["stats"].as_str().unwrap()).unwrap();
                    adds.push(serde_json::json!({
                        "partitionValues": add["partitionValues"],
                        "dataChange": add["dataChange"],
                        "stats": stats,
                    }));
                }
            }
        }
    }
    adds.sort_by_key(|a| a["partitionValues"].to_string());
    adds
}

/// What delta-rs's own writer makes of `batches` sorted the way the table writer sorts them:
/// the table writer with one thread writes the reference order, delta-rs then rewrites it.
async fn delta_rs_reference(dir: &std::path::Path, sorted: &std::path::Path) {
    let spec = TableSpec::logs(&LogSchema::seed());
    let archive = local_archive(dir);
    let table = archive.open_or_create(&spec).await.unwrap();
    let mut writer = RecordBatchWriter::for_table(&table)
        .unwrap()
        .with_writer_properties(spec.writer_properties());
    for (part, rows, _) in files(sorted) {
        let date = part.trim_start_matches("date=");
        let day = (chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap()
            - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
        .num_days() as i32;
        let values = indexmap::IndexMap::from([(
            "date".to_string(),
            delta_kernel::expressions::Scalar::Date(day),
        )]);
        for b in rows {
            // The file's columns plus the partition column, in the table's order.
            let n = b.num_rows();
            let mut columns = b.columns().to_vec();
            columns.push(Arc::new(arrow::array::Date32Array::from(vec![day; n])));
            let batch = RecordBatch::try_new(spec.schema.clone(), columns).unwrap();
            writer
                .write_partition(batch, &values, deltalake::writer::WriteMode::Default)
                .await
                .unwrap();
        }
    }
    let adds = writer.flush().await.unwrap();
    let actions = adds
        .into_iter()
        .map(deltalake::kernel::Action::Add)
        .collect();
    deltalake::kernel::transaction::CommitBuilder::default()
        .with_actions(actions)
        .build(
            Some(table.snapshot().unwrap()),
            table.log_store(),
            deltalake::protocol::DeltaOperation::Write {
                mode: deltalake::protocol::SaveMode::Append,
                partition_by: Some(vec!["date".into()]),
                predicate: None,
            },
        )
        .await
        .unwrap();
}

async fn write(dir: &std::path::Path, batches: &[RecordBatch], threads: usize) {
    let archive = local_archive(dir);
    let spec = TableSpec::logs(&LogSchema::seed());
    let mut w = TableWriter::open(&archive, spec, FlushPolicy::manual())
        .await
        .unwrap();
    w.set_threads(threads);
    for b in batches {
        w.push(b.clone());
    }
    w.commit(&[]).await.unwrap().unwrap();
}

#[tokio::test]
async fn files_are_those_delta_rs_writes_on_any_number_of_threads() {
    for shuffle in [false, true] {
        let batches = logs(shuffle);
        let one = tempfile::tempdir().unwrap();
        write(one.path(), &batches, 1).await;
        let three = tempfile::tempdir().unwrap();
        write(three.path(), &batches, 3).await;
        let reference = tempfile::tempdir().unwrap();
        delta_rs_reference(reference.path(), &one.path().join("logs")).await;

        let ours = files(&one.path().join("logs"));
        assert!(ours.len() >= 2, "two days, one file each");
        assert!(
            ours.iter().any(|(_, _, f)| f.contains("row group 1")),
            "several row groups in a file"
        );
        let stats = adds(&one.path().join("logs"));
        assert_eq!(stats.len(), ours.len());
        assert!(
            stats[0]["stats"]["minValues"]["timestamp"].is_string()
                && stats[0]["stats"]["nullCount"]["trace_id"].is_number(),
            "{}",
            stats[0]
        );
        for other in [three.path(), reference.path()] {
            let theirs = files(&other.join("logs"));
            assert_eq!(ours.len(), theirs.len());
            for (a, b) in ours.iter().zip(&theirs) {
                assert_eq!(a.0, b.0, "partition");
                assert_eq!(a.2, b.2, "footer of {} (shuffled: {shuffle})", a.0);
                let concat = |r: &[RecordBatch]| concat_batches(&r[0].schema(), r).unwrap();
                assert_eq!(concat(&a.1), concat(&b.1), "rows of {}", a.0);
            }
            assert_eq!(
                adds(&one.path().join("logs")),
                adds(&other.join("logs")),
                "add actions' statistics (shuffled: {shuffle})"
            );
        }
    }
}
