//! `vigil maintain`: tiering, retention and vacuum passes over a pipeline's archive; also run
//! in the background by `vigil run` when `[archive] maintain_every` is set.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use vigil_pipeline::Pipeline;
use vigil_store::{MaintainOptions, StoreError, TableSpec};

use crate::cli::MaintainArgs;
use crate::output::thousands;

pub fn run(args: MaintainArgs) -> anyhow::Result<ExitCode> {
    let pipeline = match vigil_config::load(&args.pipeline) {
        Ok(p) => p,
        Err(e) => {
            eprint!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let now = match &args.now {
        Some(t) => Some(
            DateTime::parse_from_rfc3339(t)
                .map_err(|e| anyhow::anyhow!("--now `{t}` is not an RFC 3339 time: {e}"))?
                .to_utc(),
        ),
        None => None,
    };
    let every = vigil_core::units::parse_duration(&args.every)?;
    let rt = super::runtime()?;
    if args.dry_run {
        rt.block_on(dry_run(&pipeline, now))?;
        return Ok(ExitCode::SUCCESS);
    }
    let stop = Arc::new(AtomicBool::new(false));
    super::stop_on_signal(stop.clone(), None)?;
    // A process of its own: compaction may use every core.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    rt.block_on(passes(
        &pipeline,
        now,
        (!args.once).then_some(every),
        threads,
        &stop,
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// Prints what one pass over `pipeline`'s archive would do at `now` (the clock if `None`).
async fn dry_run(pipeline: &Pipeline, now: Option<DateTime<Utc>>) -> anyhow::Result<()> {
    let archive = pipeline.archive.open()?;
    let specs = TableSpec::all(&pipeline.log_schema);
    let opts = MaintainOptions::new(pipeline.retention, now.unwrap_or_else(Utc::now));
    let reports = archive.plan_maintenance(&specs, &opts).await?;
    for r in &reports {
        println!(
            "{}: would move {} rows to warm, {} rows to cold, delete {} files past retention, vacuum {} files",
            r.table,
            thousands(r.to_warm),
            thousands(r.to_cold),
            r.expired_files,
            r.vacuumed_files
        );
    }
    if reports.is_empty() {
        println!("no table in {}", pipeline.archive.url);
    }
    println!("dry run: nothing was changed");
    Ok(())
}

/// Maintenance passes over `pipeline`'s archive: one, or one every `every` until `stop`,
/// encoding compacted files on `threads` threads. A pass another process is running (it holds
/// the lock) is skipped when passes repeat, an error otherwise.
pub async fn passes(
    pipeline: &Pipeline,
    now: Option<DateTime<Utc>>,
    every: Option<Duration>,
    threads: usize,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let archive = pipeline.archive.open()?;
    let specs = TableSpec::all(&pipeline.log_schema);
    loop {
        let mut opts = MaintainOptions::new(pipeline.retention, now.unwrap_or_else(Utc::now));
        opts.threads = threads;
        match archive.maintain(&specs, &opts).await {
            Ok(reports) => {
                for r in reports {
                    let line = format!(
                        "{}: {} rows to warm, {} rows to cold, {} files past retention, {} files vacuumed",
                        r.table, r.to_warm, r.to_cold, r.expired_files, r.vacuumed_files
                    );
                    match every {
                        None => println!("{line}"),
                        Some(_) => tracing::info!(table = %r.table, "{line}"),
                    }
                }
            }
            Err(e @ StoreError::MaintenanceBusy { .. }) if every.is_some() => {
                tracing::info!("skipping this maintenance pass: {e}");
            }
            Err(e) if every.is_some() && e.kind() != vigil_core::ErrorKind::User => {
                tracing::warn!(error = %e, "maintenance pass failed; the next one retries");
            }
            Err(e) => return Err(e.into()),
        }
        let Some(every) = every else { return Ok(()) };
        let deadline = tokio::time::Instant::now() + every;
        while tokio::time::Instant::now() < deadline {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
