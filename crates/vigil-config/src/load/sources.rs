//! `[[sources]]`: files, stdin, Kafka, the generator.

use std::collections::BTreeMap;
use std::path::PathBuf;

use toml::Spanned;
use toml::de::DeValue;
use vigil_core::schema::RecordKind;
use vigil_core::time::parse_rfc3339_micros;
use vigil_kafka::ConsumerSettings;
use vigil_pipeline::{KafkaSourceConfig, OtlpSourceConfig, SourceConfig, SourceKind};

use super::Validator;
use crate::raw::{
    RawFileSource, RawGeneratorSource, RawKafkaSource, RawOtlpSource, RawStdinSource,
};

impl Validator<'_> {
    pub(super) fn source(&mut self, item: Spanned<DeValue<'_>>, i: usize) -> Option<SourceConfig> {
        let path = format!("sources[{i}]");
        let span = item.span();
        let DeValue::Table(mut table) = item.into_inner() else {
            self.problem(Some(span), format!("`{path}` must be a table"));
            return None;
        };
        let Some(kind) = table.remove("type") else {
            self.problem(
                Some(span),
                format!("`{path}` has no `type`; expected file, stdin, kafka, otlp or generator"),
            );
            return None;
        };
        let kind_span = kind.span();
        let kind_name = kind.get_ref().as_str().unwrap_or_default().to_string();
        let value = Spanned::new(span.clone(), DeValue::Table(table));
        let (name, kind) = match kind_name.as_str() {
            "file" => {
                let raw: RawFileSource = self.de(value, &path)?;
                let records = self.lines_kind(&raw.kind)?;
                if raw.paths.is_empty() {
                    self.problem(
                        Some(span),
                        format!("`{path}.paths` is empty; list at least one file"),
                    );
                }
                let paths = raw
                    .paths
                    .iter()
                    .map(|p| PathBuf::from(p.get_ref()))
                    .collect();
                (
                    raw.name.unwrap_or_else(|| format!("file-{i}")),
                    SourceKind::File { records, paths },
                )
            }
            "stdin" => {
                let raw: RawStdinSource = self.de(value, &path)?;
                let records = self.lines_kind(&raw.kind)?;
                (
                    raw.name.unwrap_or_else(|| "stdin".into()),
                    SourceKind::Stdin { records },
                )
            }
            "kafka" => {
                let raw: RawKafkaSource = self.de(value, &path)?;
                let name = raw.name.clone().unwrap_or_else(|| "kafka".into());
                (name, SourceKind::Kafka(self.kafka(raw, &path)?))
            }
            "otlp" => {
                let raw: RawOtlpSource = self.de(value, &path)?;
                let d = OtlpSourceConfig::default();
                let max_body_bytes = self.size(&raw.max_body_bytes, d.max_body_bytes)?;
                let config = OtlpSourceConfig {
                    listen: raw.listen.unwrap_or(d.listen),
                    max_body_bytes: max_body_bytes.max(1024),
                    token: raw.token.filter(|t| !t.is_empty()),
                    queue: raw.queue.unwrap_or(d.queue).max(1),
                };
                (
                    raw.name.unwrap_or_else(|| "otlp".into()),
                    SourceKind::Otlp(config),
                )
            }
            "generator" => {
                let raw: RawGeneratorSource = self.de(value, &path)?;
                let name = raw.name.clone().unwrap_or_else(|| "generator".into());
                let (config, realtime) = self.generator(raw)?;
                (name, SourceKind::Generator { config, realtime })
            }
            other => {
                self.problem(
                    Some(kind_span),
                    format!("unknown source type `{other}` in `{path}`, expected file, stdin, kafka, otlp or generator"),
                );
                return None;
            }
        };
        Some(SourceConfig { name, kind })
    }

    /// The records of a JSON lines source: logs or metrics (spans come as OTLP).
    fn lines_kind(&mut self, kind: &Spanned<String>) -> Option<RecordKind> {
        match self.record_kind(kind)? {
            RecordKind::Spans => {
                self.problem(
                    Some(kind.span()),
                    "spans are read from OTLP only (a Kafka topic with `format = \"otlp_proto\"`, or an `otlp` source), not from JSON lines".into(),
                );
                None
            }
            k => Some(k),
        }
    }

    fn kafka(&mut self, raw: RawKafkaSource, path: &str) -> Option<KafkaSourceConfig> {
        let brokers = raw.brokers.get_ref().trim().to_string();
        if brokers.is_empty() {
            self.problem(
                Some(raw.brokers.span()),
                format!("`{path}.brokers` is empty; set it (e.g. from ${{KAFKA_BROKERS}})"),
            );
        }
        if raw.topics.is_empty() {
            self.problem(
                None,
                format!("`{path}.topics` is empty; list at least one topic"),
            );
        }
        let mut topics = Vec::new();
        let mut formats = BTreeMap::new();
        for t in &raw.topics {
            let kind = self.record_kind(&t.kind);
            let format = match t.format.as_ref().map(|f| (f.span(), f.get_ref().as_str())) {
                None | Some((_, "json")) => None,
                Some((span, f)) => {
                    match f.parse::<vigil_decode::OtlpEncoding>() {
                        Ok(enc) => Some(enc),
                        Err(()) => {
                            self.problem(
                            Some(span),
                            format!("unknown topic format `{f}`, expected json, otlp_proto or otlp_json"),
                        );
                            None
                        }
                    }
                }
            };
            if kind == Some(RecordKind::Spans) && format.is_none() && t.format.is_none() {
                self.problem(
                    Some(t.kind.span()),
                    format!(
                        "topic `{}` holds spans, which vigil reads as OTLP only: set `format = \"otlp_proto\"` (the collector's default) or `\"otlp_json\"`",
                        t.name.get_ref()
                    ),
                );
            }
            if let Some(enc) = format {
                formats.insert(t.name.get_ref().clone(), enc);
            }
            if t.name.get_ref().is_empty() {
                self.problem(Some(t.name.span()), "a topic name is empty".into());
            } else if topics.iter().any(|(n, _)| n == t.name.get_ref()) {
                self.problem(
                    Some(t.name.span()),
                    format!("topic `{}` is listed twice", t.name.get_ref()),
                );
            } else if let Some(kind) = kind {
                topics.push((t.name.get_ref().clone(), kind));
            }
        }
        let start_earliest = match raw
            .start_from
            .as_ref()
            .map(|s| (s.span(), s.get_ref().as_str()))
        {
            None | Some((_, "earliest")) => true,
            Some((_, "latest")) => false,
            Some((span, other)) => {
                self.problem(
                    Some(span),
                    format!("`start_from` is `{other}`, expected `earliest` or `latest`"),
                );
                true
            }
        };
        let defaults = KafkaSourceConfig::default();
        let max_batch_wait = self.duration(&raw.max_batch_wait, defaults.max_batch_wait);
        let max_fetch_buffer = self.size(&raw.max_fetch_buffer, defaults.consumer.max_fetch_buffer);
        let max_batch_bytes = self.size(&raw.max_batch_bytes, defaults.max_batch_bytes);
        let mut properties = BTreeMap::new();
        for (key, value) in &raw.properties {
            // vigil owns these: its exactly-once protocol depends on them.
            let value_text = value.get_ref().to_property();
            let managed = match key.as_str() {
                "enable.auto.commit" | "enable.auto.offset.store" | "group.id" => true,
                "partition.assignment.strategy" => value_text.contains("cooperative"),
                _ => false,
            };
            if managed {
                self.problem(
                    Some(value.span()),
                    format!(
                        "`{path}.properties.{key}` is managed by vigil: offsets are committed with \
                         the archive, the group id is `group_id`, and only eager assignors \
                         (range, roundrobin) are supported"
                    ),
                );
                continue;
            }
            properties.insert(key.clone(), value_text);
        }
        let max_batch_records = raw.max_batch_records.unwrap_or(defaults.max_batch_records);
        if max_batch_records == 0 {
            self.problem(
                None,
                format!("`{path}.max_batch_records` must be at least 1"),
            );
        }
        Some(KafkaSourceConfig {
            consumer: ConsumerSettings {
                brokers,
                group_id: raw.group_id.unwrap_or(defaults.consumer.group_id),
                topics: topics.iter().map(|(t, _)| t.clone()).collect(),
                start_earliest,
                max_fetch_buffer: max_fetch_buffer?.max(1024),
                properties,
                ..defaults.consumer
            },
            topics,
            formats,
            max_batch_records: max_batch_records.max(1),
            max_batch_bytes: max_batch_bytes?.max(1),
            max_batch_wait: max_batch_wait?,
            dead_letter_topic: raw.dead_letter_topic.filter(|t| !t.is_empty()),
        })
    }

    fn generator(&mut self, raw: RawGeneratorSource) -> Option<(vigil_gen::Config, bool)> {
        let defaults = vigil_gen::Config::default();
        let realtime = raw.realtime.unwrap_or(false);
        let start = match &raw.start {
            Some(s) => parse_rfc3339_micros(s.get_ref().as_bytes()).or_else(|| {
                self.problem(
                    Some(s.span()),
                    format!("`start` = {:?} is not an RFC 3339 timestamp", s.get_ref()),
                );
                None
            }),
            None if realtime => Some(vigil_core::time::now_micros()),
            None => Some(defaults.start_micros),
        };
        let duration = self.duration(&raw.duration, defaults.duration);
        let interval = self.duration(&raw.metrics_interval, defaults.metrics_interval);
        let rate = raw.rate.as_ref().map_or(defaults.rate, |r| *r.get_ref());
        let topology = match &raw.topology {
            None => vigil_gen::Topology::default(),
            Some(t) => match t.get_ref().parse::<vigil_gen::Topology>() {
                Ok(t) => t,
                Err(e) => {
                    self.problem(Some(t.span()), e.to_string());
                    vigil_gen::Topology::default()
                }
            },
        };
        let mut incidents = Vec::new();
        for i in &raw.incidents {
            match i
                .get_ref()
                .parse::<vigil_gen::Incident>()
                .and_then(|inc| inc.check_service(topology).map(|()| inc))
            {
                Ok(inc) => incidents.push(inc),
                Err(e) => self.problem(Some(i.span()), e.to_string()),
            }
        }
        let config = vigil_gen::Config {
            seed: raw.seed.unwrap_or(defaults.seed),
            start_micros: start?,
            duration: duration?,
            rate,
            metrics_interval: interval?,
            incidents,
            client_spans: raw.client_spans.unwrap_or(defaults.client_spans),
            topology,
            ..defaults
        };
        if let Err(e) = config.check() {
            let rate_ok = rate.is_finite() && rate > 0.0 && rate <= vigil_gen::MAX_RATE;
            let span = if rate_ok {
                raw.metrics_interval.as_ref().map(Spanned::span)
            } else {
                raw.rate.as_ref().map(Spanned::span)
            };
            self.problem(span, e.to_string());
            return None;
        }
        Some((config, realtime))
    }
}
