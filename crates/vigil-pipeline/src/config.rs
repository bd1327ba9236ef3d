//! What a pipeline is made of, validated: its sources, the decoder's limits, the archive, the
//! rules and where detection's events go. `vigil-config` reads pipeline files into a
//! [`Pipeline`]; the option types of each part live in the crate that uses it
//! ([`DecoderOptions`], [`FlushPolicy`], [`ConsumerSettings`], [`vigil_gen::Config`],
//! [`RuleSpec`], [`CorrelationConfig`]) with their defaults, and the ones only the pipeline
//! uses live here.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use vigil_core::schema::{LogSchema, RecordKind};
use vigil_decode::DecoderOptions;
use vigil_detect::{CorrelationConfig, RuleSpec, SeriesLimits};
use vigil_kafka::ConsumerSettings;
use vigil_store::{FlushPolicy, Retention};

/// A validated pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Pipeline name (logs, the detection checkpoint's name).
    pub name: String,
    /// Where records come from.
    pub sources: Vec<SourceConfig>,
    /// The `logs` schema, with promoted fields.
    pub log_schema: LogSchema,
    /// Decoder limits.
    pub decode: DecoderOptions,
    /// Where records go.
    pub archive: ArchiveConfig,
    /// Tier ages.
    pub retention: Retention,
    /// Alerting rules.
    pub rules: Vec<RuleSpec>,
    /// Window closing, correlation, and where anomaly events go.
    pub detect: DetectConfig,
    /// Per-field privacy policies applied to every batch before it is archived or sent on.
    pub privacy: Option<Arc<vigil_decode::privacy::Privacy>>,
}

impl Pipeline {
    /// A pipeline named `name` with no sources or rules, the seed's log schema and every
    /// default: what `vigil ingest` runs without a pipeline file.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            sources: Vec::new(),
            log_schema: LogSchema::seed(),
            decode: DecoderOptions::default(),
            archive: ArchiveConfig::default(),
            retention: Retention::default(),
            rules: Vec::new(),
            detect: DetectConfig::default(),
            privacy: None,
        }
    }

    /// The table traces are assembled from: `spans` when a source brings spans (OTLP), which
    /// say exactly when each span started and ended and whether it failed; `logs` otherwise.
    pub fn traces_from(&self) -> RecordKind {
        let spans = self.sources.iter().any(|s| match &s.kind {
            SourceKind::Otlp(_) => true,
            SourceKind::Kafka(k) => k.topics.iter().any(|(_, kind)| *kind == RecordKind::Spans),
            _ => false,
        });
        if spans {
            RecordKind::Spans
        } else {
            RecordKind::Logs
        }
    }

    /// Its first Kafka source, if any: the anomaly topic is published through its brokers,
    /// and its group names the detection checkpoint.
    pub fn first_kafka(&self) -> Option<&KafkaSourceConfig> {
        self.sources.iter().find_map(|s| match &s.kind {
            SourceKind::Kafka(k) => Some(k),
            _ => None,
        })
    }
}

/// The archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveConfig {
    /// Root URL or path.
    pub url: String,
    /// object_store options.
    pub storage_options: BTreeMap<String, String>,
    /// Exactly one process ever commits to the archive: only then may a store without
    /// conditional PUT be used (`vigil_store::Archive::check_commits`).
    pub single_writer: bool,
    /// Root of the warm tier; `None`: `warm/` under `url`.
    pub warm: Option<String>,
    /// Root of the cold tier; `None`: `cold/` under `url`.
    pub cold: Option<String>,
    /// `vigil run` runs a maintenance pass (tiers, retention, vacuum) this often; `None`: never
    /// (`vigil maintain` does it).
    pub maintain_every: Option<Duration>,
    /// When buffered rows are written and committed.
    pub flush: FlushPolicy,
}

impl ArchiveConfig {
    /// The archive these settings describe (nothing is created until a table is written).
    pub fn open(&self) -> Result<vigil_store::Archive, vigil_store::StoreError> {
        vigil_store::Archive::new(&self.url, &self.storage_options)?
            .with_single_writer(self.single_writer)
            .with_tiers(self.warm.as_deref(), self.cold.as_deref())
    }
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self {
            url: "./vigil-data".into(),
            storage_options: BTreeMap::new(),
            single_writer: false,
            warm: None,
            cold: None,
            maintain_every: None,
            flush: FlushPolicy::default(),
        }
    }
}

/// Window closing and where anomaly events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectConfig {
    /// How late a record may be and still count in its window.
    pub allowed_lateness: Duration,
    /// NDJSON file for anomaly events.
    pub anomalies_file: Option<PathBuf>,
    /// Kafka topic for anomaly events (through the first Kafka source's brokers).
    pub anomaly_topic: Option<String>,
    /// Alertmanagers' base URLs the anomalies are posted to as alerts.
    pub alertmanagers: Vec<String>,
    /// How often firing alerts are posted again.
    pub alertmanager_resend: Duration,
    /// Cross-service correlation; `None` when turned off.
    pub correlation: Option<CorrelationConfig>,
    /// How many series each rule remembers, and how long.
    pub series: SeriesLimits,
    /// The internal topic replicas share detection through, when `[detect] distributed`.
    pub partials_topic: Option<String>,
}

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            allowed_lateness: Duration::from_secs(30),
            anomalies_file: None,
            anomaly_topic: None,
            alertmanagers: Vec::new(),
            alertmanager_resend: Duration::from_secs(60),
            correlation: Some(CorrelationConfig::default()),
            series: SeriesLimits::default(),
            partials_topic: None,
        }
    }
}

/// A source of records.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Name used in logs, metrics and dead letters.
    pub name: String,
    /// What it reads.
    pub kind: SourceKind,
}

/// The kinds of source.
#[derive(Debug, Clone)]
pub enum SourceKind {
    /// NDJSON files, plain or gzip.
    File {
        /// Which table the records go to.
        records: RecordKind,
        /// Files, read in order.
        paths: Vec<PathBuf>,
    },
    /// NDJSON on standard input.
    Stdin {
        /// Which table the records go to.
        records: RecordKind,
    },
    /// A Kafka consumer group.
    Kafka(KafkaSourceConfig),
    /// An OTLP/HTTP receiver: `/v1/logs`, `/v1/traces`, `/v1/metrics`.
    Otlp(OtlpSourceConfig),
    /// The built-in generator (logs and metrics).
    Generator {
        /// What to generate.
        config: vigil_gen::Config,
        /// Pace to the wall clock.
        realtime: bool,
    },
}

/// An OTLP/HTTP receiver.
#[derive(Debug, Clone)]
pub struct OtlpSourceConfig {
    /// Address to listen on. Default `127.0.0.1:4318` (OTLP/HTTP's port).
    pub listen: String,
    /// Largest request body accepted, compressed or not; larger ones get 413.
    pub max_body_bytes: usize,
    /// Requests must carry `Authorization: Bearer <token>` when set.
    pub token: Option<String>,
    /// Requests queued for decoding; when the queue is full (the pipeline is behind) new
    /// requests get 503 with `Retry-After`.
    pub queue: usize,
}

impl Default for OtlpSourceConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:4318".into(),
            max_body_bytes: 8 << 20,
            token: None,
            queue: 64,
        }
    }
}

/// A Kafka source: a consumer group over topics, each feeding one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSourceConfig {
    /// The consumer: brokers, group, where to start, fetch buffer, librdkafka properties.
    /// Its `topics` are the keys of `topics` below.
    pub consumer: ConsumerSettings,
    /// Topics, each with the table it feeds.
    pub topics: Vec<(String, RecordKind)>,
    /// Topics whose messages are OTLP requests (`format = "otlp_proto"` or `"otlp_json"`),
    /// with their encoding; the others hold vigil's JSON lines.
    pub formats: BTreeMap<String, vigil_decode::OtlpEncoding>,
    /// Records per decoded batch (one partition's run of messages).
    pub max_batch_records: usize,
    /// Message bytes per decoded batch: with large messages, the batch ends sooner.
    pub max_batch_bytes: usize,
    /// Longest a batch waits for more records.
    pub max_batch_wait: Duration,
    /// Send dead letters to this topic instead of the `dead_letters` table.
    pub dead_letter_topic: Option<String>,
}

impl Default for KafkaSourceConfig {
    fn default() -> Self {
        Self {
            consumer: ConsumerSettings::default(),
            topics: Vec::new(),
            formats: BTreeMap::new(),
            max_batch_records: 8192,
            max_batch_bytes: 16 << 20,
            max_batch_wait: Duration::from_secs(1),
            dead_letter_topic: None,
        }
    }
}
