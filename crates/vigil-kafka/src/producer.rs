//! An idempotent producer that retries failed deliveries with backoff and counts them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::Message as _;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::message::{Header, Headers as _, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::types::RDKafkaErrorCode;

use crate::config::client_config;
use crate::error::KafkaError;
use crate::quiet::Quiet;

/// Delivery totals, for logs and the metrics endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    /// Messages acknowledged by the broker.
    pub delivered: u64,
    /// Failed delivery attempts (each retried until `max_attempts`).
    pub failed_attempts: u64,
    /// Messages given up on after `max_attempts`.
    pub dropped: u64,
}

/// Message headers, owned.
pub type OwnedHeaderList = Vec<(String, Vec<u8>)>;

struct Retry {
    topic: String,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: OwnedHeaderList,
    attempt: u32,
    due: Instant,
    error: String,
}

#[derive(Default)]
struct Context {
    delivered: AtomicU64,
    failed_attempts: AtomicU64,
    failures: Mutex<Vec<Retry>>,
    quiet: Quiet,
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.quiet.log(level, fac, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.quiet.error(&error, reason);
    }
}

impl ProducerContext for Context {
    /// The attempt number of the message.
    type DeliveryOpaque = Box<u32>;

    fn delivery(&self, result: &DeliveryResult<'_>, attempt: Box<u32>) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, m)) => {
                self.failed_attempts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(topic = m.topic(), error = %e, attempt = *attempt, "delivery failed");
                self.failures
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Retry {
                        topic: m.topic().to_string(),
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().unwrap_or_default().to_vec(),
                        headers: m
                            .headers()
                            .map(|h| {
                                h.iter()
                                    .map(|h| {
                                        (h.key.to_string(), h.value.unwrap_or_default().to_vec())
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                        attempt: *attempt,
                        due: Instant::now(),
                        error: e.to_string(),
                    });
            }
        }
    }
}

/// An idempotent producer (`enable.idempotence=true`: no duplicates or reordering from
/// librdkafka's own retries). A message that still fails — e.g. the broker was unreachable for
/// longer than `message.timeout.ms` — is sent again with exponential backoff, up to
/// `max_attempts`; [`flush`](Self::flush) reports one that never made it.
pub struct Producer {
    inner: ThreadedProducer<Context>,
    retries: VecDeque<Retry>,
    max_attempts: u32,
    base_backoff: Duration,
    dropped: u64,
    lost: Option<KafkaError>,
}

impl Producer {
    /// A producer to `brokers` with librdkafka `properties` applied over vigil's defaults.
    pub fn new(brokers: &str, properties: &BTreeMap<String, String>) -> Result<Self, KafkaError> {
        let defaults = [
            ("enable.idempotence", "true".to_string()),
            ("acks", "all".into()),
            ("linger.ms", "5".into()),
            ("compression.type", "lz4".into()),
            ("message.timeout.ms", "30000".into()),
            ("client.id", "vigil".into()),
        ];
        let inner =
            client_config(brokers, &defaults, properties).create_with_context(Context::default())?;
        Ok(Self {
            inner,
            retries: VecDeque::new(),
            max_attempts: 5,
            base_backoff: Duration::from_millis(500),
            dropped: 0,
            lost: None,
        })
    }

    /// Queues a message. Blocks (serving delivery reports) while librdkafka's queue is full.
    pub fn send(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<(), KafkaError> {
        self.send_with_headers(topic, key, payload, &[])
    }

    /// Queues a message with headers.
    pub fn send_with_headers(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: &[(&str, &[u8])],
    ) -> Result<(), KafkaError> {
        self.send_attempt(topic, key, payload, headers, 1)?;
        self.pump();
        Ok(())
    }

    fn send_attempt(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: &[(&str, &[u8])],
        attempt: u32,
    ) -> Result<(), KafkaError> {
        let mut record: BaseRecord<'_, [u8], [u8], Box<u32>> =
            BaseRecord::with_opaque_to(topic, Box::new(attempt)).payload(payload);
        if let Some(k) = key {
            record = record.key(k);
        }
        if !headers.is_empty() {
            let owned = headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(*v),
                })
            });
            record = record.headers(owned);
        }
        loop {
            match self.inner.send(record) {
                Ok(()) => return Ok(()),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }

    /// Re-sends failed messages whose backoff has passed.
    fn pump(&mut self) {
        let failed = std::mem::take(
            &mut *self
                .inner
                .context()
                .failures
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for mut r in failed {
            if r.attempt >= self.max_attempts {
                self.dropped += 1;
                tracing::error!(topic = %r.topic, attempts = r.attempt, error = %r.error, "message dropped after every retry");
                self.lost.get_or_insert(KafkaError::Delivery {
                    topic: r.topic,
                    attempts: r.attempt,
                    reason: r.error,
                });
                continue;
            }
            r.due = Instant::now() + self.base_backoff * 2u32.pow(r.attempt - 1);
            self.retries.push_back(r);
        }
        let now = Instant::now();
        let mut later = VecDeque::new();
        while let Some(r) = self.retries.pop_front() {
            if r.due > now {
                later.push_back(r);
                continue;
            }
            let headers: Vec<(&str, &[u8])> = r
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect();
            if let Err(e) = self.send_attempt(
                &r.topic,
                r.key.as_deref(),
                &r.payload,
                &headers,
                r.attempt + 1,
            ) {
                tracing::warn!(error = %e, "re-send failed");
                later.push_back(Retry {
                    attempt: r.attempt + 1,
                    ..r
                });
            }
        }
        self.retries = later;
    }

    /// Whether a broker answers within `timeout` (a metadata request): a batch of messages
    /// sent to an unreachable cluster would otherwise wait out every retry before saying so.
    pub fn reachable(&self, timeout: Duration) -> Result<(), KafkaError> {
        use rdkafka::producer::Producer as _;
        self.inner.client().fetch_metadata(None, timeout)?;
        Ok(())
    }

    /// Waits until every queued message is delivered or given up on, or `timeout` passes.
    /// Errors if a message was given up on, or if messages are still pending at the timeout.
    pub fn flush(&mut self, timeout: Duration) -> Result<(), KafkaError> {
        let deadline = Instant::now() + timeout;
        loop {
            let _ = self.inner.flush(Duration::from_millis(100));
            self.pump();
            let pending = self.inner.in_flight_count() > 0 || !self.retries.is_empty();
            if !pending || Instant::now() >= deadline {
                if let Some(e) = self.lost.take() {
                    return Err(e);
                }
                if pending {
                    return Err(KafkaError::Delivery {
                        topic: "*".into(),
                        attempts: 0,
                        reason: format!(
                            "{} messages still undelivered after {timeout:?}",
                            self.inner.in_flight_count() as usize + self.retries.len()
                        ),
                    });
                }
                return Ok(());
            }
        }
    }

    /// Delivery totals so far.
    pub fn stats(&self) -> DeliveryStats {
        let c = self.inner.context();
        DeliveryStats {
            delivered: c.delivered.load(Ordering::Relaxed),
            failed_attempts: c.failed_attempts.load(Ordering::Relaxed),
            dropped: self.dropped,
        }
    }
}
