//! One module per command.

mod backtest;
mod demo;
mod detect_series;
mod generate;
mod ingest;
mod maintain;
mod produce;
mod run;
mod serve;
mod sql;
mod trace;
mod validate;

use std::process::ExitCode;

use crate::cli::{ArchiveArgs, Command};

pub fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Ingest(a) => ingest::run(a),
        Command::Sql(a) => sql::run(a),
        Command::Run(a) => run::run(a),
        Command::Validate(a) => validate::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Produce(a) => produce::run(a),
        Command::Backtest(a) => backtest::run(a),
        Command::DetectSeries(a) => detect_series::run(a),
        Command::Trace(a) => trace::run(a),
        Command::Maintain(a) => maintain::run(a),
        Command::Serve(a) => serve::run(a),
    }
}

/// Whether two paths name the same existing file (an output that is also an input would be
/// truncated before it is read).
pub fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// A query's limits from the `--timeout` and `--memory` flags of `vigil sql` and `vigil serve`.
pub fn query_limits(timeout: &str, memory: &str) -> anyhow::Result<vigil_query::QueryLimits> {
    Ok(vigil_query::QueryLimits {
        timeout: vigil_core::units::parse_duration(timeout)?,
        memory: usize::try_from(vigil_core::units::parse_bytes(memory)?)?,
        ..vigil_query::QueryLimits::default()
    })
}

/// A multi-threaded runtime for object-store I/O and DataFusion.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// The runtime for a pipeline run: with `--threads 1`, a current-thread runtime, so the
/// archive's async work (Parquet encoding, uploads) also stays on the one thread.
pub fn pipeline_runtime(threads: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    match threads {
        Some(1) => Ok(tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?),
        _ => runtime(),
    }
}

impl ArchiveArgs {
    pub fn open(&self) -> anyhow::Result<vigil_store::Archive> {
        let options = self.storage_options.iter().cloned().collect();
        Ok(vigil_store::Archive::new(&self.archive, &options)?)
    }
}

/// Sets `stop` on Ctrl-C / SIGTERM so a run commits what it has and exits cleanly.
pub fn stop_on_signal(
    rt: &tokio::runtime::Runtime,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    rt.spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        eprintln!("stopping: committing buffered data");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}
