//! SQL over HTTP: `POST /sql` with the query as the body (and [`crate::ops`]' endpoints).
//!
//! The answer is JSON (an array of row objects) unless `Accept` asks for CSV (`text/csv`) or
//! an Arrow IPC stream (`application/vnd.apache.arrow.stream`). Every request reads the
//! archive as it is when it starts (its latest commits, its tier layout: [`Sessions`]), so a
//! long-running server never serves a stale snapshot, and runs under the server's
//! [`QueryLimits`] and row cap. Errors are JSON, `{"error": "...", "kind": "user" | "external"
//! | "internal"}`, with a status that says who has to act: 400 for the query, 401 for a missing or wrong token, 413 for a body over 1 MiB
//! or a result over the row cap, 503 when the archive's store cannot be reached or the time
//! limit ran out, 500 for a bug.

use std::net::SocketAddr;
use std::sync::Arc;

use arrow::array::RecordBatch;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use vigil_core::ErrorKind;
use vigil_store::Archive;

use crate::{QueryError, QueryLimits, Sessions};

/// The largest query text accepted.
const MAX_BODY: usize = 1 << 20;

/// What the HTTP server serves and how.
#[derive(Clone)]
pub struct HttpConfig {
    /// The archive every query reads.
    pub archive: Archive,
    /// Each query's limits.
    pub limits: QueryLimits,
    /// A result with more rows fails and asks for a `LIMIT`.
    pub max_rows: usize,
    /// The bearer token every request must carry; `None` only with `--insecure-no-auth`.
    /// `/metrics`, `/healthz` and `/readyz` need none (see [`crate::ops`]).
    pub token: Option<String>,
}

/// The server is ready when its archive answers.
#[async_trait::async_trait]
impl crate::ops::Probe for HttpConfig {
    async fn checks(&self) -> Vec<crate::ops::Check> {
        vec![crate::ops::archive_check(&self.archive).await]
    }
}

/// Serves `config` on `listener` until the future is dropped.
pub async fn serve_http(listener: TcpListener, config: HttpConfig) -> std::io::Result<()> {
    let sessions = Sessions::new(config.archive.clone(), config.limits, |_| Ok(()));
    let server = Arc::new((config, sessions));
    loop {
        let (stream, peer) = listener.accept().await?;
        let server = server.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let server = server.clone();
                async move {
                    let (config, sessions) = &*server;
                    Ok::<_, std::convert::Infallible>(handle(config, sessions, req, peer).await)
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

/// The result formats, by `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Json,
    Csv,
    Arrow,
}

impl Answer {
    fn from_accept(accept: Option<&HeaderValue>) -> Self {
        let accept = accept.and_then(|a| a.to_str().ok()).unwrap_or("");
        if accept.contains("application/vnd.apache.arrow.stream") {
            Answer::Arrow
        } else if accept.contains("text/csv") {
            Answer::Csv
        } else {
            Answer::Json
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Answer::Json => "application/json",
            Answer::Csv => "text/csv; charset=utf-8",
            Answer::Arrow => "application/vnd.apache.arrow.stream",
        }
    }
}

async fn handle(
    config: &HttpConfig,
    sessions: &Sessions,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    if let Some(r) = crate::ops::answer(&req, config).await {
        return r;
    }
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/sql") => {
            if let Some(token) = &config.token
                && !authorized(req.headers().get(AUTHORIZATION), token)
            {
                let mut r = error(
                    StatusCode::UNAUTHORIZED,
                    "user",
                    "missing or wrong bearer token: send `Authorization: Bearer <VIGIL_SQL_TOKEN>`",
                );
                r.headers_mut()
                    .insert("www-authenticate", HeaderValue::from_static("Bearer"));
                return r;
            }
            let answer = Answer::from_accept(req.headers().get(ACCEPT));
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "user",
                        "the query is larger than 1 MiB",
                    );
                }
            };
            let Ok(query) = std::str::from_utf8(&body) else {
                return error(StatusCode::BAD_REQUEST, "user", "the query is not UTF-8");
            };
            let started = std::time::Instant::now();
            let served = crate::Served::start("http");
            let result = run(config, sessions, query, answer).await;
            served.end(&result);
            tracing::info!(%peer, ms = started.elapsed().as_millis() as u64, ok = result.is_ok(), "sql over http");
            match result {
                Ok(bytes) => {
                    let mut r = Response::new(Full::new(Bytes::from(bytes)));
                    r.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static(answer.content_type()),
                    );
                    r
                }
                Err(e) => {
                    let (status, kind) = status_of(&e);
                    error(status, kind, &e.to_string())
                }
            }
        }
        (_, "/sql") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "user",
            "use POST /sql with the query as the body",
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            "user",
            "no such endpoint: POST /sql; GET /metrics, /healthz, /readyz",
        ),
    }
}

/// The HTTP status and `kind` of a failed query: by whose the error is, except 413 past
/// `--max-rows` and 503 for a query stopped at `--timeout`, as the README gives them (an
/// archive not opened in time is the store's: 503 by its kind).
fn status_of(e: &QueryError) -> (StatusCode, &'static str) {
    let (status, kind) = match e.kind() {
        ErrorKind::User => (StatusCode::BAD_REQUEST, "user"),
        ErrorKind::External => (StatusCode::SERVICE_UNAVAILABLE, "external"),
        ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    let status = match e {
        QueryError::TooManyRows(_) => StatusCode::PAYLOAD_TOO_LARGE,
        QueryError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => status,
    };
    (status, kind)
}

/// Whether `header` is `Bearer <token>`, compared in constant time.
fn authorized(header: Option<&HeaderValue>, token: &str) -> bool {
    let Some(given) = header
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Runs one query and renders its whole result.
async fn run(
    config: &HttpConfig,
    sessions: &Sessions,
    query: &str,
    answer: Answer,
) -> Result<Vec<u8>, QueryError> {
    let engine = sessions.engine().await?;
    let mut rows = engine.sql_stream(query).await?;
    let schema = rows.schema();
    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut n = 0usize;
    while let Some(batch) = rows.next().await {
        let batch = batch?;
        n += batch.num_rows();
        if n > config.max_rows {
            return Err(QueryError::TooManyRows(config.max_rows));
        }
        batches.push(batch);
    }
    let mut out = Vec::new();
    let encoded = match answer {
        Answer::Json => {
            let mut w = arrow::json::ArrayWriter::new(&mut out);
            batches
                .iter()
                .try_for_each(|b| w.write(b))
                .and_then(|()| w.finish())
        }
        // `vigil sql`'s CSV: nested values (the metrics' `labels` map) as their text, and a
        // header line for a result without rows.
        Answer::Csv => {
            let mut w = crate::ResultWriter::new(crate::Format::Csv, &mut out, false);
            batches
                .iter()
                .try_for_each(|b| w.write(b))
                .and_then(|()| w.finish(&schema))
        }
        Answer::Arrow => {
            arrow::ipc::writer::StreamWriter::try_new(&mut out, &schema).and_then(|mut w| {
                batches.iter().try_for_each(|b| w.write(b))?;
                w.finish()
            })
        }
    };
    encoded.map_err(|e| QueryError::DataFusion(e.into()))?;
    if answer == Answer::Json && out.is_empty() {
        out.extend_from_slice(b"[]");
    }
    Ok(out)
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response<Full<Bytes>> {
    crate::ops::json_response(
        status,
        serde_json::json!({ "error": message, "kind": kind }),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The statuses the module docs and the README give: by whose the error is, except 413
    /// past the row cap and 503 for either timeout. An archive that does not open in time is
    /// not served by an end-to-end test (its store would have to hang for `vigil serve`).
    #[test]
    fn a_failed_query_answers_with_the_status_of_whose_it_is_and_the_limits_own() {
        let second = Duration::from_secs(1);
        assert_eq!(
            status_of(&QueryError::TooManyRows(100)),
            (StatusCode::PAYLOAD_TOO_LARGE, "user")
        );
        assert_eq!(
            status_of(&QueryError::Timeout(second)),
            (StatusCode::SERVICE_UNAVAILABLE, "user")
        );
        assert_eq!(
            status_of(&QueryError::OpenTimeout(second)),
            (StatusCode::SERVICE_UNAVAILABLE, "external")
        );
        assert_eq!(
            status_of(&QueryError::ReadOnly("DELETE".into())),
            (StatusCode::BAD_REQUEST, "user")
        );
    }
}
