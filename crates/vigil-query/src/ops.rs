//! What an orchestrator and a Prometheus server ask of any vigil process: `GET /metrics` (the
//! process's metrics, text exposition format), `GET /healthz` (alive: answers while the process
//! serves requests at all) and `GET /readyz` (ready: every check of its [`Probe`] passes; 503
//! with the failing checks otherwise). `vigil serve` answers them beside `/sql`; `vigil run`
//! serves only these, on `--listen`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use vigil_store::Archive;

/// How long one readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// One readiness check's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked, e.g. `archive`.
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What was seen, or why it failed.
    pub detail: String,
}

impl Check {
    /// A check that passed when `ok`.
    pub fn new(name: &'static str, ok: bool, detail: impl Into<String>) -> Self {
        Self {
            name,
            ok,
            detail: detail.into(),
        }
    }
}

/// What `/readyz` checks.
#[async_trait]
pub trait Probe: Send + Sync {
    /// Every check, run now.
    async fn checks(&self) -> Vec<Check>;
}

/// Whether the archive's object store answers: one small read (the tier layout, which may
/// well not exist), within [`CHECK_TIMEOUT`].
pub async fn archive_check(archive: &Archive) -> Check {
    match tokio::time::timeout(CHECK_TIMEOUT, archive.layout()).await {
        Ok(Ok(_)) => Check::new("archive", true, archive.root().to_string()),
        Ok(Err(e)) => Check::new("archive", false, format!("{}: {e}", archive.root())),
        Err(_) => Check::new(
            "archive",
            false,
            format!("{}: no answer within {CHECK_TIMEOUT:?}", archive.root()),
        ),
    }
}

/// The answer to `/metrics`, `/healthz` or `/readyz`; `None` for any other request.
pub async fn answer<B>(req: &Request<B>, probe: &dyn Probe) -> Option<Response<Full<Bytes>>> {
    if req.method() != Method::GET {
        return None;
    }
    Some(match req.uri().path() {
        "/metrics" => {
            let text = vigil_core::metrics::metrics().encode();
            let mut r = Response::new(Full::new(Bytes::from(text)));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(vigil_core::metrics::CONTENT_TYPE),
            );
            r
        }
        "/healthz" => json_response(StatusCode::OK, json!({ "status": "ok" })),
        "/readyz" => {
            let checks = probe.checks().await;
            let ready = checks.iter().all(|c| c.ok);
            let body: serde_json::Map<String, serde_json::Value> = checks
                .into_iter()
                .map(|c| {
                    (
                        c.name.to_string(),
                        json!({ "ok": c.ok, "detail": c.detail }),
                    )
                })
                .collect();
            let (status, word) = if ready {
                (StatusCode::OK, "ready")
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "not ready")
            };
            json_response(status, json!({ "status": word, "checks": body }))
        }
        _ => return None,
    })
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until the future is dropped.
pub async fn serve_ops(listener: TcpListener, probe: Arc<dyn Probe>) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let probe = probe.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let probe = probe.clone();
                async move {
                    let r = match answer(&req, probe.as_ref()).await {
                        Some(r) => r,
                        None => json_response(
                            StatusCode::NOT_FOUND,
                            json!({ "error": "no such endpoint: GET /metrics, /healthz, /readyz", "kind": "user" }),
                        ),
                    };
                    Ok::<_, std::convert::Infallible>(r)
                }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "http connection ended");
            }
        });
    }
}

pub(crate) fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
