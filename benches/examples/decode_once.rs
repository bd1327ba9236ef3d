//! Decodes generated seed-format logs once with one decoder, for instruction counting:
//!
//! ```sh
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!   target/release/examples/decode_once vigil 16
//! ```
//!
//! `valgrind` counts instructions, which repeat exactly run to run on this shared machine,
//! unlike wall time. Arguments: `vigil` or `arrow-json`, then MiB of input (default 16). The
//! input is generated before the decoder runs; `--toggle-collect=decode_once::run` limits the
//! count to decoding.

use std::hint::black_box;

use vigil_core::schema::LogSchema;
use vigil_decode::{Decoder, DecoderOptions};

#[inline(never)]
fn run(which: &str, input: &[u8]) -> usize {
    match which {
        "vigil" => {
            let mut d = Decoder::logs(LogSchema::seed(), DecoderOptions::default());
            let mut rows = 0;
            d.decode_all(input, |b| rows += b.num_records());
            d.end_of_input();
            rows + d.flush().map_or(0, |b| b.num_records())
        }
        "arrow-json" => {
            let mut d = arrow_json::ReaderBuilder::new(vigil_benches::arrow_json_log_schema())
                .with_batch_size(8192)
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
            rows + d.flush().unwrap().map_or(0, |b| b.num_rows())
        }
        other => panic!("unknown decoder {other}: use vigil or arrow-json"),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "vigil".into());
    let mib: usize = args.next().map_or(16, |a| a.parse().expect("MiB"));
    let input = vigil_benches::seed_logs(mib << 20);
    let rows = run(&which, black_box(&input));
    eprintln!("{which}: {rows} rows from {} bytes", input.len());
}
