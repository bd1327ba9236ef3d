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
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
/// archive's async work (Parquet encoding, uploads) also stays on the one thread, and the
/// allocator is told so.
pub fn pipeline_runtime(threads: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    match threads {
        Some(1) => {
            crate::alloc::single_threaded();
            Ok(tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?)
        }
        _ => runtime(),
    }
}

impl ArchiveArgs {
    pub fn open(&self) -> anyhow::Result<vigil_store::Archive> {
        let options = self.storage_options.iter().cloned().collect();
        Ok(vigil_store::Archive::new(&self.archive, &options)?)
    }
}

/// Sets `stop` on SIGTERM or Ctrl-C, so a run stops reading, commits what it has and exits
/// cleanly. A second signal, or `grace` passing first, ends the process at once: what was not
/// committed was not acknowledged either (Kafka offsets move only with archive commits), and
/// the next start reads it again. Signals are handled on a thread of their own, so they are
/// heard whatever the pipeline's runtime is doing.
pub fn stop_on_signal(stop: Arc<AtomicBool>, grace: Option<Duration>) -> anyhow::Result<()> {
    let (ready, handlers) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("vigil-signals".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return drop(ready.send(Err(e))),
            };
            rt.block_on(async move {
                let mut signals = match Signals::new() {
                    Ok(s) => s,
                    Err(e) => return drop(ready.send(Err(e))),
                };
                let _ = ready.send(Ok(()));
                let name = signals.next().await;
                let within = grace.map_or(String::new(), |g| format!(" (at most {g:?})"));
                crate::logs::say(format_args!(
                    "{name}: stopping; committing what is in flight{within}"
                ));
                stop.store(true, Ordering::Relaxed);
                let deadline = async move {
                    match grace {
                        Some(g) => tokio::time::sleep(g).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    name = signals.next() => tracing::error!("{name} again: exiting now; what was not committed is read again on the next start"),
                    () = deadline => tracing::error!("still not stopped after the grace period of {:?}: exiting now; what was not committed is read again on the next start", grace.unwrap_or_default()),
                }
                std::process::exit(1);
            });
        })?;
    handlers.recv()??;
    Ok(())
}

/// SIGTERM and SIGINT, as one stream.
pub struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Listens from now on; needs a Tokio runtime.
    pub fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// The next signal's name.
    pub async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` (answered by `probe`) on `addr`, on a thread of
/// its own so a busy pipeline never delays a probe. Fails at once if `addr` cannot be bound.
pub fn serve_ops(addr: &str, probe: Arc<dyn vigil_query::ops::Probe>) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("vigil-ops".into())
        .spawn(move || {
            let served = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .and_then(|rt| {
                    rt.block_on(async {
                        let listener = tokio::net::TcpListener::from_std(listener)?;
                        vigil_query::ops::serve_ops(listener, probe).await
                    })
                });
            if let Err(e) = served {
                tracing::error!(error = %e, "the metrics and health endpoints stopped");
            }
        })?;
    crate::logs::say(format_args!(
        "metrics at http://{local}/metrics, health at /healthz and /readyz"
    ));
    Ok(())
}
