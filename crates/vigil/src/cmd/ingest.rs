//! `vigil ingest`

use std::process::ExitCode;

use vigil_core::schema::{LogSchema, PromotedField, RecordKind};
use vigil_pipeline::{Input, Pipeline, RunOptions, SourceConfig, SourceKind};

use crate::cli::IngestArgs;
use crate::output::{Progress, none_archived_hint, summary_line};

pub fn run(args: IngestArgs) -> anyhow::Result<ExitCode> {
    let kind: RecordKind = args.kind.parse().map_err(anyhow::Error::msg)?;
    let mut pipeline = match &args.pipeline {
        Some(path) => vigil_config::load(path)?,
        None => Pipeline::new("ingest"),
    };
    if !args.fields.is_empty() {
        pipeline.log_schema = schema_from_flags(&args.fields)?;
    }
    if let Some(service) = &args.service {
        pipeline.decode.default_service = Some(service.clone());
    }
    if let Some(rows) = args.max_rows {
        pipeline.archive.flush.max_rows = rows;
    }
    if args.pipeline.is_none() || args.archive_given {
        pipeline.archive.url = args.archive.archive.clone();
    }
    pipeline
        .archive
        .storage_options
        .extend(args.archive.storage_options.iter().cloned());
    let inputs = Input::from_args(&args.files)?;
    let total_bytes = inputs.iter().map(Input::file_size).sum::<Option<u64>>();
    pipeline.sources = vec![SourceConfig {
        name: "ingest".into(),
        kind: if args.files.is_empty() {
            SourceKind::Stdin { records: kind }
        } else {
            SourceKind::File {
                records: kind,
                paths: args.files.clone(),
            }
        },
    }];

    let rt = super::pipeline_runtime(args.threads)?;
    let mut opts = RunOptions::default();
    if let Some(t) = args.threads {
        opts.threads = t;
    }
    super::stop_on_signal(opts.stop.clone(), None)?;
    let progress = Progress::start(opts.counters.clone(), total_bytes);
    let result = vigil_pipeline::run(&pipeline, &opts, &rt);
    progress.finish();
    let summary = result?;
    eprintln!("ingested {}", summary_line(&summary));
    if let Some(hint) = none_archived_hint(&summary, kind.table(), &pipeline.archive.url) {
        eprintln!("{hint}");
    }
    Ok(ExitCode::SUCCESS)
}

fn schema_from_flags(fields: &[(String, String)]) -> anyhow::Result<LogSchema> {
    let mut promoted = Vec::new();
    for (key, ty) in fields {
        let key = key.strip_prefix("additional_data.").unwrap_or(key);
        promoted.push(PromotedField::nested(
            key,
            ty.parse().map_err(anyhow::Error::msg)?,
        ));
    }
    LogSchema::new(promoted).map_err(anyhow::Error::msg)
}
