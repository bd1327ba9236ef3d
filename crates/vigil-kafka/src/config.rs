//! librdkafka client settings: vigil's defaults, then the user's properties on top.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;

/// What a consumer needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSettings {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// `group.id`.
    pub group_id: String,
    /// Topics to subscribe to.
    pub topics: Vec<String>,
    /// Where a partition with no archived offset starts: earliest (else latest).
    pub start_earliest: bool,
    /// Fetched-but-unprocessed bytes before fetching pauses (the consumer's one queue, across
    /// its partitions).
    pub max_fetch_buffer: usize,
    /// How often librdkafka reports statistics (lag, throughput).
    pub stats_interval: Duration,
    /// Any librdkafka property; applied last.
    pub properties: BTreeMap<String, String>,
}

impl Default for ConsumerSettings {
    /// Brokers and topics are the user's to give; the rest: group `vigil`, start from the
    /// earliest offset, 16 MiB of fetched messages, statistics every 5 s.
    fn default() -> Self {
        Self {
            brokers: String::new(),
            group_id: "vigil".into(),
            topics: Vec::new(),
            start_earliest: true,
            max_fetch_buffer: 16 << 20,
            stats_interval: Duration::from_secs(5),
            properties: BTreeMap::new(),
        }
    }
}

/// How long librdkafka waits before fetching again for a partition whose fetch queue was full.
pub const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// A client config of `brokers` with `properties` applied over vigil's `defaults`.
pub fn client_config(
    brokers: &str,
    defaults: &[(&str, String)],
    properties: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (k, v) in defaults {
        c.set(*k, v);
    }
    for (k, v) in properties {
        c.set(k, v);
    }
    c
}

impl ConsumerSettings {
    /// The librdkafka configuration. Offsets are never committed or stored automatically: the
    /// archive is the source of truth. The fetch queue is bounded, so a slow archive pauses
    /// fetching instead of growing memory.
    pub fn client_config(&self) -> ClientConfig {
        let kbytes = (self.max_fetch_buffer / 1024).max(1);
        let defaults = [
            ("group.id", self.group_id.clone()),
            ("enable.auto.commit", "false".into()),
            ("enable.auto.offset.store", "false".into()),
            (
                "auto.offset.reset",
                if self.start_earliest {
                    "earliest"
                } else {
                    "latest"
                }
                .into(),
            ),
            ("queued.max.messages.kbytes", kbytes.to_string()),
            // When the queue is full, librdkafka postpones the partition's next fetch by this
            // much; its default (1 s) left the queue empty for most of each second once the
            // consumer drained it, capping a consumer near one queue per second (16 MiB/s:
            // 49k records/s in `benches/scripts/kafka.sh`, 181k/s at 10 ms, same CPU).
            ("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS.into()),
            (
                "fetch.max.bytes",
                (self.max_fetch_buffer.clamp(1 << 20, 50 << 20)).to_string(),
            ),
            (
                "statistics.interval.ms",
                self.stats_interval.as_millis().to_string(),
            ),
            ("client.id", "vigil".into()),
        ];
        let mut c = client_config(&self.brokers, &defaults, &self.properties);
        // Set last so a passed-through property cannot undo them (the config layer also
        // rejects them with a clear message).
        c.set("enable.auto.commit", "false");
        c.set("enable.auto.offset.store", "false");
        c.set("group.id", &self.group_id);
        c
    }
}

/// The connection-level properties of a consumer's configuration (security, SASL, TLS,
/// sockets), for a producer talking to the same cluster; consumer-only ones would only draw
/// librdkafka warnings.
pub fn connection_properties(properties: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    const PREFIXES: [&str; 7] = [
        "security.",
        "sasl.",
        "ssl.",
        "socket.",
        "broker.",
        "client.",
        "reconnect.",
    ];
    properties
        .iter()
        .filter(|(k, _)| PREFIXES.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_fetch_queue_is_refilled_soon_unless_the_user_says_otherwise() {
        let settings = ConsumerSettings {
            brokers: "b:9092".into(),
            ..ConsumerSettings::default()
        };
        let c = settings.client_config();
        assert_eq!(
            c.get("fetch.queue.backoff.ms"),
            Some(FETCH_QUEUE_BACKOFF_MS)
        );
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("16384"));

        let mut settings = settings;
        settings
            .properties
            .insert("fetch.queue.backoff.ms".into(), "250".into());
        assert_eq!(
            settings.client_config().get("fetch.queue.backoff.ms"),
            Some("250")
        );
    }
}
