//! `vigil serve`: SQL over the archive for analysts, over HTTP and the Postgres wire.

use std::process::ExitCode;

use tokio::net::TcpListener;
use vigil_query::http::{HttpConfig, serve_http};
use vigil_query::pg::{Login, PgConfig, serve_pg};

use crate::cli::ServeArgs;

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let http = match (&args.http, &args.pg) {
        (None, None) => Some("127.0.0.1:8080".to_owned()),
        (http, _) => http.clone(),
    };
    let token = args.token.filter(|t| !t.is_empty());
    if http.is_some() && token.is_none() && !args.insecure_no_auth {
        anyhow::bail!(
            "no token: set VIGIL_SQL_TOKEN (or --token) for HTTP clients to send as `Authorization: Bearer ...`, or pass --insecure-no-auth on a trusted network"
        );
    }
    let login = match (&args.user, std::env::var("VIGIL_SQL_PASSWORD")) {
        (Some(user), Ok(password)) if !user.is_empty() && !password.is_empty() => {
            Some(Login::new(user, &password))
        }
        _ if args.pg.is_some() && !args.insecure_no_auth => anyhow::bail!(
            "no Postgres login: set VIGIL_SQL_USER and VIGIL_SQL_PASSWORD for psql and other clients to log in with, or pass --insecure-no-auth on a trusted network"
        ),
        _ => None,
    };
    let limits = super::query_limits(&args.timeout, &args.memory)?;
    let grace = vigil_core::units::parse_duration(&args.grace)?;
    // Every statement opens the archive afresh; kept tables make that a listing of each log.
    let archive = args.archive.open()?.with_read_cache();
    let rt = super::runtime()?;
    rt.block_on(async {
        let mut signals = super::Signals::new()?;
        let unauthenticated = |auth: bool| if auth { "" } else { " WITHOUT authentication" };
        let http = match http {
            Some(addr) => {
                let listener = bind(&addr).await?;
                crate::logs::say(format_args!(
                    "serving SQL over {} at http://{}/sql{} (and /metrics, /healthz, /readyz)",
                    archive.root(),
                    listener.local_addr()?,
                    unauthenticated(token.is_some())
                ));
                let config = HttpConfig {
                    archive: archive.clone(),
                    limits,
                    max_rows: args.max_rows,
                    token,
                };
                Some(serve_http(listener, config))
            }
            None => None,
        };
        let pg = match &args.pg {
            Some(addr) => {
                let listener = bind(addr).await?;
                crate::logs::say(format_args!(
                    "serving SQL over {} at postgres://{}{}",
                    archive.root(),
                    listener.local_addr()?,
                    unauthenticated(login.is_some())
                ));
                let config = PgConfig {
                    archive: archive.clone(),
                    limits,
                    login,
                };
                Some(serve_pg(listener, config))
            }
            None => None,
        };
        let http = async move {
            match http {
                Some(served) => served.await,
                None => std::future::pending().await,
            }
        };
        let pg = async move {
            match pg {
                Some(served) => served.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            served = http => served?,
            served = pg => served?,
            name = signals.next() => crate::logs::say(format_args!("{name}: stopping")),
        }
        // The listeners are closed; statements already running may finish.
        let running = vigil_query::statements_in_flight();
        crate::logs::say(format_args!(
            "stopping: no new connections; waiting for {running} statements running (at most {grace:?})"
        ));
        let deadline = tokio::time::Instant::now() + grace;
        while vigil_query::statements_in_flight() > 0 {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(
                        running = vigil_query::statements_in_flight(),
                        "statements still running after the grace period: stopping them"
                    );
                    break;
                }
                () = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
                name = signals.next() => {
                    tracing::warn!("{name} again: stopping the statements still running");
                    break;
                }
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}
