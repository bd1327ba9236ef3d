//! `cargo +nightly fuzz run time` (from crates/vigil-core), or `benches/scripts/fuzz.sh`.
//!
//! Any bytes as an RFC 3339 time, a duration and an epoch number: no panic, and every time
//! accepted is one vigil can write back as RFC 3339 and read again unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_core::time::{format_rfc3339, micros_from_epoch, parse_rfc3339_micros};
use vigil_core::units::parse_duration;

fuzz_target!(|data: &[u8]| {
    if let Some(t) = parse_rfc3339_micros(data) {
        assert_eq!(parse_rfc3339_micros(format_rfc3339(t).as_bytes()), Some(t));
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = parse_duration(s);
    }
    if let Ok(bytes) = <[u8; 8]>::try_from(data.get(..8).unwrap_or_default()) {
        let _ = micros_from_epoch(f64::from_le_bytes(bytes));
    }
});
