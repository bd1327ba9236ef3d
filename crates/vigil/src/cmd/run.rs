//! `vigil run`

use std::process::ExitCode;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use vigil_pipeline::{RunOptions, StatsBook};
use vigil_query::ops::{Check, Probe, archive_check};

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
    let grace = vigil_core::units::parse_duration(&args.grace)?;
    super::stop_on_signal(opts.stop.clone(), Some(grace))?;
    if let Some(addr) = &args.listen {
        let probe = RunProbe {
            archive: pipeline.archive.open()?,
            running: opts.running.clone(),
            stop: opts.stop.clone(),
            kafka: pipeline.first_kafka().map(|_| opts.kafka_stats.clone()),
        };
        super::serve_ops(addr, Arc::new(probe))?;
    }
    if let Some(every) = pipeline.archive.maintain_every {
        // Every replica tries; the one that takes the archive's maintenance lock runs the
        // pass, the others skip it. On one thread: the cores are ingestion's.
        let (pipeline, stop) = (pipeline.clone(), opts.stop.clone());
        rt.spawn(async move {
            if let Err(e) = super::maintain::passes(&pipeline, None, Some(every), 1, &stop).await {
                tracing::error!(error = %e, "background maintenance stopped");
            }
        });
    }
    tracing::info!(pipeline = %pipeline.name, sources = pipeline.sources.len(), archive = %pipeline.archive.url, "starting");
    let progress = Progress::start(opts.counters.clone(), None);
    let result = vigil_pipeline::run(&pipeline, &opts, &rt);
    progress.finish();
    let summary = result?;
    crate::logs::say(format_args!(
        "pipeline `{}`: {}",
        pipeline.name,
        summary_line(&summary)
    ));
    Ok(ExitCode::SUCCESS)
}

/// `vigil run`'s readiness: the pipeline is reading (not starting, not stopping), its archive
/// answers, and with Kafka sources, each consumer has a broker and holds its group assignment.
struct RunProbe {
    archive: vigil_store::Archive,
    running: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    kafka: Option<StatsBook>,
}

#[async_trait::async_trait]
impl Probe for RunProbe {
    async fn checks(&self) -> Vec<Check> {
        let (running, stopping) = (
            self.running.load(Ordering::Relaxed),
            self.stop.load(Ordering::Relaxed),
        );
        let state = match (running, stopping) {
            (_, true) => "stopping",
            (true, false) => "reading",
            (false, false) => "starting",
        };
        let mut checks = vec![
            Check::new("pipeline", running && !stopping, state),
            archive_check(&self.archive).await,
        ];
        if let Some(stats) = &self.kafka {
            checks.push(match stats.brokers_up() {
                Some(true) => Check::new("kafka", true, "connected"),
                Some(false) => Check::new("kafka", false, "no broker is up"),
                None => Check::new("kafka", false, "no statistics from the consumer yet"),
            });
            let groups = stats.memberships();
            let steady = !groups.is_empty() && groups.iter().all(|g| g.steady);
            let detail = match groups.as_slice() {
                [] => "not in its group yet".to_string(),
                gs => gs
                    .iter()
                    .map(|g| format!("{} ({} partitions)", g.state, g.partitions))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            checks.push(Check::new("group", steady, detail));
        }
        checks
    }
}
