//! `cargo +nightly fuzz run pipeline` (from crates/vigil-config), or `benches/scripts/fuzz.sh`.
//!
//! Any text as a pipeline file, with every `${VAR}` set to the same fuzzed value: the loader
//! returns a pipeline or its problems, each with a location inside the file; it never panics.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The first line is the environment's value for every variable; the rest is the file.
    let (var, file) = text.split_once('\n').unwrap_or(("", text));
    if let Err(e) = vigil_config::parse(file, "fuzz.toml", |_| Some(var.to_string())) {
        let lines = file.lines().count().max(1);
        for p in &e.problems {
            assert!(p.line <= lines + 1, "line {} of {lines}: {}", p.line, p.message);
        }
    }
});
