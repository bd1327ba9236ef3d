//! `vigil serve`: SQL over the archive for analysts, over HTTP.

use std::process::ExitCode;

use vigil_query::http::{HttpConfig, serve_http};

use crate::cli::ServeArgs;

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let token = args.token.filter(|t| !t.is_empty());
    if token.is_none() && !args.insecure_no_auth {
        anyhow::bail!(
            "no token: set VIGIL_SQL_TOKEN (or --token) for HTTP clients to send as `Authorization: Bearer ...`, or pass --insecure-no-auth on a trusted network"
        );
    }
    let limits = super::query_limits(&args.timeout, &args.memory)?;
    let archive = args.archive.open()?;
    let rt = super::runtime()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.http)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.http))?;
        eprintln!(
            "serving SQL over {} at http://{}/sql{}",
            archive.root(),
            listener.local_addr()?,
            if token.is_none() {
                " WITHOUT authentication"
            } else {
                ""
            }
        );
        let config = HttpConfig {
            archive,
            limits,
            max_rows: args.max_rows,
            token,
        };
        tokio::select! {
            served = serve_http(listener, config) => served?,
            _ = shutdown() => eprintln!("stopping"),
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM.
async fn shutdown() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
