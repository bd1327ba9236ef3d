//! The pipeline file: TOML with `${VAR:-default}` substitution, parsed and validated into a
//! [`vigil_pipeline::Pipeline`].
//!
//! ```text
//! pipelines/*.toml ─► [config: raw tables ─► one validator per section] ─► Pipeline ─► vigil-pipeline runs it
//! ```
//!
//! Validation reports every problem it finds, each with its line and column: syntax errors,
//! unknown keys anywhere in the file, wrong types per table, and semantic errors (bad
//! durations, unknown field types, colliding columns, unset variables).
//!
//! This crate assembles; it owns no options. Each part's option type lives in the crate that
//! uses it, with its defaults beside its fields: the decoder's limits in `vigil-decode`, the
//! flush policy and retention in `vigil-store`, the consumer in `vigil-kafka`, rules and
//! correlation in `vigil-detect`, the generator's config in `vigil-gen` (which is why this
//! crate depends on it), sources and detection outputs in `vigil-pipeline`. The raw structs
//! in [`raw`] are the file as written; their `///` docs are the user reference.
#![warn(missing_docs)]

mod env;
mod load;
pub mod raw;

pub use env::{MissingVar, substitute};
pub use load::{ConfigError, Problem, load, parse};
