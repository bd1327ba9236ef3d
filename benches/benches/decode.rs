//! `cargo bench -p vigil-benches --bench decode`
//!
//! vigil's decoder against arrow-json's `ReaderBuilder` decoder on the same seed-format NDJSON,
//! both producing Arrow `RecordBatch`es of 8192 rows, plus simd-json's tape alone (per line and
//! grouped) as the ceiling a tape-based decoder works under.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vigil_core::schema::LogSchema;
use vigil_decode::{Decoder, DecoderOptions};

const BATCH: usize = 8192;

fn decode_vigil(input: &[u8]) -> usize {
    let mut d = Decoder::logs(
        LogSchema::seed(),
        DecoderOptions {
            batch_size: BATCH,
            ..Default::default()
        },
    );
    let mut rows = 0;
    d.decode_all(input, |b| rows += b.num_records());
    d.end_of_input();
    if let Some(b) = d.flush() {
        rows += b.num_records();
    }
    rows
}

fn decode_arrow_json(input: &[u8], schema: &arrow::datatypes::SchemaRef) -> usize {
    let mut d = arrow_json::ReaderBuilder::new(schema.clone())
        .with_batch_size(BATCH)
        .build_decoder()
        .unwrap();
    let mut rows = 0;
    let mut rest = input;
    while !rest.is_empty() {
        let n = d.decode(rest).unwrap();
        rest = &rest[n..];
        if let Some(b) = d.flush().unwrap() {
            rows += b.num_rows();
        }
    }
    if let Some(b) = d.flush().unwrap() {
        rows += b.num_rows();
    }
    rows
}

fn tape_per_line(input: &[u8], scratch: &mut Vec<u8>, buffers: &mut simd_json::Buffers) -> usize {
    let mut tape = simd_json::Tape::null().reset();
    let mut nodes = 0;
    for line in input.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        scratch.clear();
        scratch.extend_from_slice(line);
        let len = scratch.len();
        scratch.resize(len + simd_json::INPUT_PADDING, b' ');
        let mut t = tape.reset();
        simd_json::fill_tape_padded(scratch, len, buffers, &mut t).unwrap();
        nodes += t.0.len();
        tape = t.reset();
    }
    nodes
}

fn tape_grouped(input: &[u8], scratch: &mut Vec<u8>, buffers: &mut simd_json::Buffers) -> usize {
    let mut tape = simd_json::Tape::null().reset();
    let mut nodes = 0;
    let mut lines = input
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .peekable();
    while lines.peek().is_some() {
        scratch.clear();
        scratch.push(b'[');
        while let Some(l) = lines.next_if(|_| scratch.len() < 64 << 10) {
            if scratch.len() > 1 {
                scratch.extend_from_slice(b",\n");
            }
            scratch.extend_from_slice(l);
        }
        scratch.push(b']');
        let len = scratch.len();
        scratch.resize(len + simd_json::INPUT_PADDING, b' ');
        let mut t = tape.reset();
        simd_json::fill_tape_padded(scratch, len, buffers, &mut t).unwrap();
        nodes += t.0.len();
        tape = t.reset();
    }
    nodes
}

fn bench(c: &mut Criterion) {
    let input = vigil_benches::seed_logs(32 << 20);
    let lines = input.iter().filter(|&&b| b == b'\n').count();
    let schema = vigil_benches::arrow_json_log_schema();
    assert_eq!(decode_vigil(&input), lines);
    assert_eq!(decode_arrow_json(&input, &schema), lines);

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.sample_size(20);
    g.bench_function("vigil", |b| b.iter(|| black_box(decode_vigil(&input))));
    g.bench_function("arrow-json", |b| {
        b.iter(|| black_box(decode_arrow_json(&input, &schema)))
    });
    let mut scratch = Vec::new();
    let mut buffers = simd_json::Buffers::new(1 << 16);
    g.bench_function("simd-json-tape-per-line", |b| {
        b.iter(|| black_box(tape_per_line(&input, &mut scratch, &mut buffers)))
    });
    g.bench_function("simd-json-tape-grouped", |b| {
        b.iter(|| black_box(tape_grouped(&input, &mut scratch, &mut buffers)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
