//! The OTLP/HTTP receiver: a source fed by OpenTelemetry SDKs and collectors.
//!
//! ```text
//! POST /v1/{logs,traces,metrics} ─► [auth, content type, gzip, size] ─► bounded queue ─► next()
//!        ◄── 200 + partial success ◄────────── decoded (OtlpDecoder) ◄──────────────┘
//! ```
//!
//! The HTTP server runs on the pipeline's I/O runtime; requests wait in a bounded queue for the
//! source's thread, which decodes them and answers. Answers follow the OTLP/HTTP spec: 200 with
//! an `Export*ServiceResponse` (its `partial_success` counting the records rejected as dead
//! letters, and why the first was), in the request's encoding; 400 with a `google.rpc.Status`
//! for a body that is not an OTLP request; 401 without the bearer token; 404, 405; 413 over the
//! size limit (checked before and after gunzip); 415 for a content type or encoding other than
//! protobuf, JSON and gzip; 503 with `Retry-After` when the queue is full (the pipeline is
//! behind) or the pipeline is stopping, which SDKs retry.
//!
//! Forwarding: when the pipeline also reads a signal from a Kafka topic of OTLP protobuf
//! (`format = "otlp_proto"`), the receiver does not decode that signal itself: it checks each
//! request, applies the privacy policies to it, and produces it there (traces one message per
//! trace, keyed by trace id), answering 200 once the broker has acknowledged it, 503 if it
//! did not. Kafka then shards the work among the replicas, and a 200 is durable.
//!
//! Delivery: 200 means decoded and handed to the sink; the rows are archived at the next commit
//! (`archive.flush` interval). A crash in between loses them, as in any receiver with a memory
//! queue: put Kafka in front (the collector's Kafka exporter and a `format = "otlp_proto"`
//! topic) where that matters.

use std::collections::VecDeque;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message as _;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use vigil_core::metrics::Counter;
use vigil_core::schema::RecordKind;
use vigil_decode::privacy::Privacy;
use vigil_decode::{Accepted, OtlpDecoder, OtlpEncoding, Rejection, parse_otlp};

use super::{Source, SourceBatch, Step};
use crate::config::{OtlpSourceConfig, Pipeline, SourceKind};
use crate::error::PipelineError;
use crate::summary::{Counters, Summary};

/// The signals, in the order of the source's decoders and streams.
const SIGNALS: [RecordKind; 3] = [RecordKind::Logs, RecordKind::Spans, RecordKind::Metrics];

/// Rows decoded before the source hands a batch over without waiting for more requests.
const BATCH_ROWS: usize = 8192;

/// A request waiting for the source's thread.
struct Export {
    kind: RecordKind,
    encoding: OtlpEncoding,
    body: Bytes,
    reply: oneshot::Sender<Reply>,
}

/// How a request went.
enum Reply {
    /// Decoded (or forwarded): 200, with the records rejected as a partial success.
    Done(Accepted),
    /// Not an OTLP request of its signal: 400.
    Invalid(Rejection),
    /// Kafka did not take it: 503, the client retries.
    Unavailable(String),
}

/// Where a signal's requests go when the pipeline reads it from Kafka.
struct Forward {
    producer: vigil_kafka::Producer,
    /// Per signal (in [`SIGNALS`] order), the topic, if forwarded.
    topics: [Option<String>; 3],
}

/// An OTLP/HTTP receiver.
pub struct OtlpSource {
    name: String,
    queue: Receiver<Export>,
    decoders: [OtlpDecoder; 3],
    streams: [Arc<str>; 3],
    forward: Option<Forward>,
    privacy: Option<Arc<Privacy>>,
    ready: VecDeque<Step>,
    accepting: Arc<AtomicBool>,
    server: tokio::task::JoinHandle<()>,
    counters: Arc<Counters>,
    bytes: Counter,
    stop: Arc<AtomicBool>,
}

impl OtlpSource {
    /// Binds `config.listen` (failing now if it cannot) and serves on `rt`.
    pub fn new(
        name: &str,
        config: &OtlpSourceConfig,
        pipeline: &Pipeline,
        counters: Arc<Counters>,
        stop: Arc<AtomicBool>,
        rt: &Handle,
    ) -> Result<Self, PipelineError> {
        let listen_error = |error| PipelineError::Listen {
            source_name: name.to_owned(),
            addr: config.listen.clone(),
            error,
        };
        let listener = std::net::TcpListener::bind(&config.listen).map_err(listen_error)?;
        listener.set_nonblocking(true).map_err(listen_error)?;
        let addr = listener.local_addr().map_err(listen_error)?;
        tracing::info!(source = %name, %addr, "OTLP/HTTP receiver listening");
        let (tx, queue) = std::sync::mpsc::sync_channel(config.queue.max(1));
        let accepting = Arc::new(AtomicBool::new(true));
        let server = Arc::new(Server {
            queue: tx,
            token: config.token.clone(),
            max_body: config.max_body_bytes,
            accepting: Arc::clone(&accepting),
        });
        let server = rt.spawn(async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => serve(l, server).await,
                Err(e) => tracing::error!(error = %e, "OTLP receiver cannot listen"),
            }
        });
        let decoder = |k| {
            OtlpDecoder::new(
                k,
                OtlpEncoding::Protobuf,
                pipeline.log_schema.clone(),
                pipeline.decode.clone(),
            )
        };
        Ok(Self {
            forward: forward_of(pipeline)?,
            privacy: pipeline.privacy.clone(),
            name: name.to_owned(),
            queue,
            decoders: SIGNALS.map(decoder),
            streams: SIGNALS.map(|k| Arc::from(format!("{name}:{}", k.table()))),
            ready: VecDeque::new(),
            accepting,
            server,
            counters,
            bytes: Counters::bytes_of(name),
            stop,
        })
    }

    /// Decodes (or forwards) one request and answers it.
    fn export(&mut self, e: Export) {
        let i = SIGNALS.iter().position(|&k| k == e.kind).expect("a signal");
        self.counters.add_bytes(&self.bytes, e.body.len());
        let topic = self.forward.as_ref().and_then(|f| f.topics[i].clone());
        let reply = match topic {
            Some(topic) => self.forward_one(e.kind, e.encoding, &e.body, &topic),
            None => match self.decoders[i].decode_payload(&e.body, e.encoding, &self.name, None, 0)
            {
                Ok(a) => Reply::Done(a),
                Err(r) => Reply::Invalid(r),
            },
        };
        // The client may have gone; what was decoded is kept all the same.
        let _ = e.reply.send(reply);
    }

    /// Validates a request, applies the privacy policies to it and produces it to `topic` as
    /// protobuf (traces one message per trace, keyed by its id, as the collector's
    /// `partition_traces_by_id` does), waiting for the broker's acknowledgement.
    fn forward_one(
        &mut self,
        kind: RecordKind,
        enc: OtlpEncoding,
        body: &[u8],
        topic: &str,
    ) -> Reply {
        let privacy = self.privacy.as_deref();
        let (records, messages) = match forwarded(kind, enc, body, privacy) {
            Ok(m) => m,
            Err(r) => return Reply::Invalid(r),
        };
        let producer = &mut self.forward.as_mut().expect("forwarding").producer;
        for (key, payload) in &messages {
            if let Err(e) = producer.send(topic, key.as_deref(), payload) {
                return Reply::Unavailable(format!("producing to {topic}: {e}"));
            }
        }
        match producer.flush(Duration::from_secs(20)) {
            Ok(()) => Reply::Done(Accepted {
                records,
                ..Accepted::default()
            }),
            Err(e) => Reply::Unavailable(format!("producing to {topic}: {e}")),
        }
    }

    fn hand_over(&mut self) {
        for (d, (kind, stream)) in self
            .decoders
            .iter_mut()
            .zip(SIGNALS.iter().zip(&self.streams))
        {
            if let Some(batch) = d.flush() {
                self.ready.push_back(Step::Batch(SourceBatch {
                    kind: *kind,
                    stream: Arc::clone(stream),
                    batch,
                    delta: None,
                }));
            }
        }
    }
}

impl Source for OtlpSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn next(&mut self) -> Result<Step, PipelineError> {
        if let Some(step) = self.ready.pop_front() {
            return Ok(step);
        }
        if self.stop.load(Ordering::Relaxed) {
            // New requests get 503 from now on; those queued are still decoded and archived.
            self.accepting.store(false, Ordering::Relaxed);
            while let Ok(e) = self.queue.try_recv() {
                self.export(e);
            }
            self.hand_over();
            self.ready.push_back(Step::Stopped);
            return Ok(self.ready.pop_front().expect("just pushed"));
        }
        match self.queue.recv_timeout(Duration::from_millis(100)) {
            Ok(e) => self.export(e),
            Err(RecvTimeoutError::Timeout) => return Ok(Step::Idle),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(PipelineError::Panicked(format!(
                    "source `{}`: the OTLP receiver stopped",
                    self.name
                )));
            }
        }
        while self
            .decoders
            .iter()
            .map(OtlpDecoder::buffered)
            .sum::<usize>()
            < BATCH_ROWS
        {
            match self.queue.try_recv() {
                Ok(e) => self.export(e),
                Err(_) => break,
            }
        }
        self.hand_over();
        Ok(self.ready.pop_front().unwrap_or(Step::Idle))
    }

    fn close(&mut self) {
        self.accepting.store(false, Ordering::Relaxed);
        self.server.abort();
    }

    fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for d in &self.decoders {
            s.add_decoded(d.stats(), d.dead_letter_counts());
        }
        s
    }
}

/// What the HTTP side shares.
struct Server {
    queue: SyncSender<Export>,
    token: Option<String>,
    max_body: usize,
    accepting: Arc<AtomicBool>,
}

async fn serve(listener: tokio::net::TcpListener, server: Arc<Server>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "OTLP receiver: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let server = Arc::clone(&server);
                async move { Ok::<_, std::convert::Infallible>(handle(&server, req, peer).await) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "OTLP connection ended");
            }
        });
    }
}

type Answer = Response<Full<Bytes>>;

async fn handle(server: &Server, req: Request<Incoming>, peer: SocketAddr) -> Answer {
    let kind = match req.uri().path() {
        "/v1/logs" => RecordKind::Logs,
        "/v1/traces" => RecordKind::Spans,
        "/v1/metrics" => RecordKind::Metrics,
        other => {
            let msg =
                format!("no OTLP endpoint at {other}: POST to /v1/logs, /v1/traces or /v1/metrics");
            return status(StatusCode::NOT_FOUND, OtlpEncoding::Json, &msg);
        }
    };
    if req.method() != Method::POST {
        let mut r = status(
            StatusCode::METHOD_NOT_ALLOWED,
            OtlpEncoding::Json,
            "OTLP endpoints take POST",
        );
        r.headers_mut()
            .insert("allow", HeaderValue::from_static("POST"));
        return r;
    }
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let content_type = header(CONTENT_TYPE).unwrap_or("");
    let encoding = match content_type.split(';').next().unwrap_or("").trim() {
        "application/x-protobuf" | "application/protobuf" => OtlpEncoding::Protobuf,
        "application/json" => OtlpEncoding::Json,
        other => {
            let msg = format!(
                "unsupported content type {other:?}: send application/x-protobuf or application/json"
            );
            return status(StatusCode::UNSUPPORTED_MEDIA_TYPE, OtlpEncoding::Json, &msg);
        }
    };
    if let Some(token) = &server.token
        && !authorized(header(AUTHORIZATION), token)
    {
        let mut r = status(
            StatusCode::UNAUTHORIZED,
            encoding,
            "missing or wrong bearer token: send `Authorization: Bearer <token>`",
        );
        r.headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("Bearer"));
        return r;
    }
    let gzip = match header(CONTENT_ENCODING).map(str::trim) {
        None | Some("" | "identity") => false,
        Some("gzip") => true,
        Some(other) => {
            let msg = format!("unsupported content encoding {other:?}: send gzip or none");
            return status(StatusCode::UNSUPPORTED_MEDIA_TYPE, encoding, &msg);
        }
    };
    let too_large = || {
        let msg = format!("the request body is larger than {} bytes", server.max_body);
        status(StatusCode::PAYLOAD_TOO_LARGE, encoding, &msg)
    };
    let body = match Limited::new(req.into_body(), server.max_body)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return too_large();
        }
        Err(e) => {
            tracing::debug!(%peer, error = %e, "OTLP request body not read");
            return status(
                StatusCode::BAD_REQUEST,
                encoding,
                &format!("reading the body: {e}"),
            );
        }
    };
    let body = if gzip {
        let mut out = Vec::new();
        let limit = server.max_body as u64 + 1;
        match flate2::read::MultiGzDecoder::new(&body[..])
            .take(limit)
            .read_to_end(&mut out)
        {
            Ok(n) if n as u64 >= limit => return too_large(),
            Ok(_) => Bytes::from(out),
            Err(e) => {
                let msg = format!("the body is not valid gzip: {e}");
                return status(StatusCode::BAD_REQUEST, encoding, &msg);
            }
        }
    } else {
        body
    };
    let busy = |why: &str| {
        let mut r = status(StatusCode::SERVICE_UNAVAILABLE, encoding, why);
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        r
    };
    if !server.accepting.load(Ordering::Relaxed) {
        return busy("the pipeline is stopping; retry against another replica");
    }
    let (reply, answer) = oneshot::channel();
    let export = Export {
        kind,
        encoding,
        body,
        reply,
    };
    match server.queue.try_send(export) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            vigil_core::metrics::metrics().otlp_throttled.inc(&[]);
            return busy("the pipeline is behind; retry later");
        }
        Err(TrySendError::Disconnected(_)) => return busy("the pipeline is stopping"),
    }
    match answer.await {
        Ok(Reply::Done(accepted)) => exported(kind, encoding, &accepted),
        Ok(Reply::Invalid(rejection)) => {
            status(StatusCode::BAD_REQUEST, encoding, &rejection.message)
        }
        Ok(Reply::Unavailable(why)) => busy(&why),
        Err(_) => busy("the pipeline stopped before decoding the request"),
    }
}

/// The pipeline's Kafka topics of OTLP protobuf, per signal: the receiver forwards there
/// rather than decoding itself, so Kafka shards what replicas read.
fn forward_of(pipeline: &Pipeline) -> Result<Option<Forward>, PipelineError> {
    for s in &pipeline.sources {
        let SourceKind::Kafka(k) = &s.kind else {
            continue;
        };
        let topics = SIGNALS.map(|signal| {
            k.topics
                .iter()
                .find(|(t, kind)| {
                    *kind == signal && k.formats.get(t) == Some(&OtlpEncoding::Protobuf)
                })
                .map(|(t, _)| t.clone())
        });
        if topics.iter().any(Option::is_some) {
            let producer = vigil_kafka::Producer::new(
                &k.consumer.brokers,
                &vigil_kafka::connection_properties(&k.consumer.properties),
            )
            .map_err(PipelineError::kafka)?;
            return Ok(Some(Forward { producer, topics }));
        }
    }
    Ok(None)
}

/// A request's records and the messages it becomes: checked, policies applied, protobuf.
type Messages = (u64, Vec<(Option<Vec<u8>>, Vec<u8>)>);

fn forwarded(
    kind: RecordKind,
    enc: OtlpEncoding,
    body: &[u8],
    privacy: Option<&Privacy>,
) -> Result<Messages, Rejection> {
    Ok(match kind {
        RecordKind::Logs => {
            let mut req: ExportLogsServiceRequest = parse_otlp(body, enc, "logs")?;
            if let Some(p) = privacy {
                p.otlp_logs(&mut req);
            }
            let n = req
                .resource_logs
                .iter()
                .flat_map(|r| &r.scope_logs)
                .map(|s| s.log_records.len() as u64)
                .sum();
            (n, vec![(None, req.encode_to_vec())])
        }
        RecordKind::Metrics => {
            let mut req: ExportMetricsServiceRequest = parse_otlp(body, enc, "metrics")?;
            if let Some(p) = privacy {
                p.otlp_metrics(&mut req);
            }
            let n = req
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .map(|s| s.metrics.len() as u64)
                .sum();
            (n, vec![(None, req.encode_to_vec())])
        }
        RecordKind::Spans => {
            let mut req: ExportTraceServiceRequest = parse_otlp(body, enc, "traces")?;
            if let Some(p) = privacy {
                p.otlp_traces(&mut req);
            }
            let traces = by_trace(req);
            let n = traces.iter().map(|(_, _, n)| *n).sum();
            let messages = traces
                .into_iter()
                .map(|(id, req, _)| {
                    let mut key = String::new();
                    vigil_decode::write_hex(&mut key, &id);
                    (Some(key.into_bytes()), req.encode_to_vec())
                })
                .collect();
            (n, messages)
        }
    })
}

/// A request split into one per trace, resources and scopes kept: (trace id, request, spans).
fn by_trace(req: ExportTraceServiceRequest) -> Vec<(Vec<u8>, ExportTraceServiceRequest, u64)> {
    let mut out: Vec<(Vec<u8>, ExportTraceServiceRequest, u64)> = Vec::new();
    let mut index: std::collections::HashMap<Vec<u8>, (usize, (usize, usize))> =
        std::collections::HashMap::new();
    for (ri, rs) in req.resource_spans.into_iter().enumerate() {
        for (si, ss) in rs.scope_spans.into_iter().enumerate() {
            for span in ss.spans {
                let at = (ri, si);
                let (i, last) = index.entry(span.trace_id.clone()).or_insert_with(|| {
                    out.push((
                        span.trace_id.clone(),
                        ExportTraceServiceRequest::default(),
                        0,
                    ));
                    (out.len() - 1, (usize::MAX, usize::MAX))
                });
                let (_, r, n) = &mut out[*i];
                *n += 1;
                if *last != at {
                    *last = at;
                    r.resource_spans.push(ResourceSpans {
                        resource: rs.resource.clone(),
                        scope_spans: vec![ScopeSpans {
                            scope: ss.scope.clone(),
                            spans: Vec::new(),
                            schema_url: ss.schema_url.clone(),
                        }],
                        schema_url: rs.schema_url.clone(),
                    });
                }
                let rs_out = r.resource_spans.last_mut().expect("just pushed");
                rs_out.scope_spans[0].spans.push(span);
            }
        }
    }
    out
}

/// 200 with the signal's `Export*ServiceResponse`, a partial success if records were rejected.
fn exported(kind: RecordKind, encoding: OtlpEncoding, a: &Accepted) -> Answer {
    let message = a.first_reason.clone().unwrap_or_default();
    let rejected = a.rejected as i64;
    let partial = a.rejected > 0;
    macro_rules! encode {
        ($resp:expr) => {
            match encoding {
                OtlpEncoding::Protobuf => $resp.encode_to_vec(),
                OtlpEncoding::Json => serde_json::to_vec(&$resp).unwrap_or_default(),
            }
        };
    }
    let body = match kind {
        RecordKind::Logs => encode!(ExportLogsServiceResponse {
            partial_success: partial.then_some(ExportLogsPartialSuccess {
                rejected_log_records: rejected,
                error_message: message,
            }),
        }),
        RecordKind::Spans => encode!(ExportTraceServiceResponse {
            partial_success: partial.then_some(ExportTracePartialSuccess {
                rejected_spans: rejected,
                error_message: message,
            }),
        }),
        RecordKind::Metrics => encode!(ExportMetricsServiceResponse {
            partial_success: partial.then_some(ExportMetricsPartialSuccess {
                rejected_data_points: rejected,
                error_message: message,
            }),
        }),
    };
    respond(StatusCode::OK, encoding, body)
}

/// An error answer: a `google.rpc.Status` (code, message) in `encoding`.
fn status(code: StatusCode, encoding: OtlpEncoding, message: &str) -> Answer {
    // gRPC codes: INVALID_ARGUMENT, UNAUTHENTICATED, UNAVAILABLE, RESOURCE_EXHAUSTED, ...
    let rpc: u8 = match code {
        StatusCode::UNAUTHORIZED => 16,
        StatusCode::SERVICE_UNAVAILABLE => 14,
        StatusCode::PAYLOAD_TOO_LARGE => 8,
        StatusCode::NOT_FOUND => 12,
        _ => 3,
    };
    let body = match encoding {
        OtlpEncoding::Json => serde_json::to_vec(&serde_json::json!({
            "code": rpc,
            "message": message,
        }))
        .unwrap_or_default(),
        OtlpEncoding::Protobuf => {
            // google.rpc.Status: field 1 (code, varint), field 2 (message, bytes).
            let mut b = vec![0x08, rpc, 0x12];
            prost::encoding::encode_varint(message.len() as u64, &mut b);
            b.extend_from_slice(message.as_bytes());
            b
        }
    };
    respond(code, encoding, body)
}

fn respond(code: StatusCode, encoding: OtlpEncoding, body: Vec<u8>) -> Answer {
    let content_type = match encoding {
        OtlpEncoding::Protobuf => "application/x-protobuf",
        OtlpEncoding::Json => "application/json",
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Whether `header` is `Bearer <token>`, compared in constant time.
fn authorized(header: Option<&str>, token: &str) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
