//! `vigil run`

use std::process::ExitCode;

use vigil_pipeline::RunOptions;

use crate::cli::RunArgs;
use crate::output::{Progress, summary_line};

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let pipeline = match vigil_config::load(&args.pipeline) {
        Ok(p) => p,
        Err(e) => {
            eprint!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let rt = super::pipeline_runtime(args.threads)?;
    let mut opts = RunOptions::default();
    if let Some(t) = args.threads {
        opts.threads = t;
    }
    opts.until_end = args.until_end;
    opts.replica = std::env::var("VIGIL_REPLICA_ID")
        .ok()
        .filter(|r| !r.is_empty());
    super::stop_on_signal(&rt, opts.stop.clone());
    if let Some(every) = pipeline.archive.maintain_every {
        // Every replica tries; the one that takes the archive's maintenance lock runs the
        // pass, the others skip it.
        let (pipeline, stop) = (pipeline.clone(), opts.stop.clone());
        rt.spawn(async move {
            if let Err(e) = super::maintain::passes(&pipeline, None, Some(every), &stop).await {
                tracing::error!(error = %e, "background maintenance stopped");
            }
        });
    }
    tracing::info!(pipeline = %pipeline.name, sources = pipeline.sources.len(), archive = %pipeline.archive.url, "starting");
    let progress = Progress::start(opts.counters.clone(), None);
    let result = vigil_pipeline::run(&pipeline, &opts, &rt);
    progress.finish();
    let summary = result?;
    eprintln!("pipeline `{}`: {}", pipeline.name, summary_line(&summary));
    Ok(ExitCode::SUCCESS)
}
