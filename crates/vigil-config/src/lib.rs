//! The pipeline file: TOML with `${VAR:-default}` substitution, parsed and validated into a
//! [`Pipeline`].
//!
//! ```text
//! pipelines/*.toml ─► [config] ─► Pipeline ─► vigil-pipeline runs it
//! ```
//!
//! Validation reports every problem it finds, each with its line and column: syntax errors,
//! unknown keys anywhere in the file, wrong types per table, and semantic errors (bad
//! durations, unknown field types, colliding columns, unset variables).
#![warn(missing_docs)]

mod env;
mod load;
mod model;
pub mod raw;

pub use env::{MissingVar, substitute};
pub use load::{ConfigError, Problem, load, parse};
pub use model::{
    Archive, Comparison, Condition, Correlation, Decode, Detect, Flush, Kafka, Pipeline, Retention,
    RuleSpec, Severity, Source, SourceKind,
};
