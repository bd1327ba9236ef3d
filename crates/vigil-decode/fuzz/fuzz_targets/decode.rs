//! `cargo +nightly fuzz run decode` (from crates/vigil-decode)
//!
//! Any bytes, split at any point: the decoder must not panic, and every line must end up as
//! exactly what the serde_json reference model says (row or dead letter with its reason).

#![no_main]

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use libfuzzer_sys::fuzz_target;
use vigil_core::schema::{FieldType, LogSchema, PromotedField};
use vigil_decode::{Decoder, DecoderOptions};

#[path = "../../tests/common/oracle.rs"]
mod oracle;

fuzz_target!(|data: &[u8]| {
    let (split, input) = match data.split_first() {
        Some((s, rest)) => (usize::from(*s).max(1), rest),
        None => return,
    };
    let promoted = vec![PromotedField::nested("status_code", FieldType::Int32)];
    let limits = oracle::Limits {
        max_record_bytes: 512,
        max_depth: 8,
    };
    let mut dec = Decoder::logs(
        LogSchema::new(promoted.clone()).unwrap(),
        DecoderOptions {
            batch_size: 16,
            batch_bytes: 4096,
            max_record_bytes: limits.max_record_bytes,
            max_depth: limits.max_depth,
            dead_letter_raw_limit: 64,
            max_future_skew: None,
            max_past: None,
            default_service: None,
            coerce: false,
        },
    );
    let (mut rows, mut dead) = (0usize, Vec::new());
    let mut take = |d: &mut Decoder| {
        if let Some(b) = d.flush() {
            rows += b.num_records();
            let dl = &b.dead_letters;
            for r in 0..dl.num_rows() {
                dead.push((
                    dl.column(4).as_primitive::<Int64Type>().value(r),
                    dl.column(5).as_string::<i32>().value(r).to_string(),
                ));
            }
        }
    };
    for mut chunk in input.chunks(split) {
        while !chunk.is_empty() {
            let n = dec.decode(chunk);
            chunk = &chunk[n..];
            if !chunk.is_empty() {
                take(&mut dec);
            }
        }
    }
    dec.end_of_input();
    take(&mut dec);

    let mut want_rows = 0;
    let mut want_dead = Vec::new();
    let body = input.strip_suffix(b"\n").unwrap_or(input);
    if !input.is_empty() {
        for (i, line) in body.split(|&b| b == b'\n').enumerate() {
            match oracle::expect(line, &promoted, &limits) {
                oracle::Expected::Blank => {}
                oracle::Expected::Row(_) => want_rows += 1,
                oracle::Expected::Dead(code) => want_dead.push((i as i64 + 1, code, line)),
            }
        }
    }
    assert_eq!(rows, want_rows);
    assert_eq!(dead.len(), want_dead.len());
    for ((line, code), (want_line, want_code, raw)) in dead.iter().zip(&want_dead) {
        assert_eq!(line, want_line);
        assert!(oracle::acceptable(code, *want_code, raw, &limits), "{code} {want_code:?}");
    }
});
