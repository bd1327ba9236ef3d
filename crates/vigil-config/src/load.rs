//! Loading: substitute, parse with spans, deserialize table by table, validate.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use vigil_core::schema::{FieldType, LogSchema, PromotedField, RecordKind};
use vigil_core::time::parse_rfc3339_micros;
use vigil_core::units::{format_duration, parse_bytes, parse_duration};

use crate::env::substitute;
use crate::model::{
    Archive, Comparison, Condition, Correlation, Decode, Detect, Flush, Kafka, Pipeline, Retention,
    RuleSpec, Severity, Source, SourceKind,
};
use crate::raw::{
    RawArchive, RawDecode, RawDetect, RawField, RawFileSource, RawGeneratorSource, RawKafkaSource,
    RawMeta, RawRetention, RawRule, RawSchema, RawSize, RawStdinSource,
};

/// One problem in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line; 0 when the problem is not tied to a place (e.g. unreadable file).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong and, where possible, what would fix it.
    pub message: String,
}

/// Every problem found in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File path or other origin of the text.
    pub origin: String,
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{}: {n} problem{}",
            self.origin,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            if p.line == 0 {
                writeln!(f, "  {}: {}", self.origin, p.message)?;
            } else {
                writeln!(
                    f,
                    "  {}:{}:{}: {}",
                    self.origin, p.line, p.column, p.message
                )?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// The error kind: always a user error.
    pub fn kind(&self) -> vigil_core::ErrorKind {
        vigil_core::ErrorKind::User
    }
}

/// Reads and validates a pipeline file, substituting variables from the process environment.
/// Relative paths in the file (file sources) are resolved against the current directory.
pub fn load(path: &Path) -> Result<Pipeline, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        origin: origin.clone(),
        problems: vec![Problem {
            line: 0,
            column: 0,
            message: format!("cannot read the pipeline file: {e}"),
        }],
    })?;
    parse(&text, &origin, |name| std::env::var(name).ok())
}

/// Validates pipeline text; `origin` names it in messages, `env` resolves variables.
pub fn parse(
    text: &str,
    origin: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Pipeline, ConfigError> {
    let (text, missing) = substitute(text, env);
    let mut v = Validator {
        text: &text,
        problems: Vec::new(),
    };
    for m in missing {
        v.problems.push(Problem {
            line: m.line,
            column: m.column,
            message: format!(
                "environment variable `{}` is not set and has no default; set it or write `${{{}:-default}}`",
                m.name, m.name
            ),
        });
    }
    let (doc, syntax) = DeTable::parse_recoverable(&text);
    for e in syntax {
        v.problem(e.span(), e.message().trim_end().to_string());
    }
    let pipeline = v.pipeline(doc.into_inner());
    let mut problems = v.problems;
    problems.sort_by_key(|p| (p.line, p.column));
    problems.dedup();
    match pipeline {
        Some(p) if problems.is_empty() => Ok(p),
        _ => Err(ConfigError {
            origin: origin.to_string(),
            problems,
        }),
    }
}

struct Validator<'t> {
    text: &'t str,
    problems: Vec<Problem>,
}

const TOP_LEVEL: [&str; 8] = [
    "pipeline",
    "sources",
    "schema",
    "archive",
    "retention",
    "decode",
    "rules",
    "detect",
];

impl Validator<'_> {
    fn problem(&mut self, span: Option<Range<usize>>, message: String) {
        let (line, column) = match span {
            Some(s) => {
                let before = &self.text[..s.start.min(self.text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                (line, column)
            }
            None => (0, 0),
        };
        self.problems.push(Problem {
            line,
            column,
            message,
        });
    }

    /// Deserializes one table, reporting its unknown keys and its first type error.
    fn de<T: DeserializeOwned>(&mut self, value: Spanned<DeValue<'_>>, path: &str) -> Option<T> {
        let span = value.span();
        let copy = value.clone();
        let mut unknown: Vec<Vec<String>> = Vec::new();
        let result = serde_ignored::deserialize(ValueDeserializer::from(value), |p| {
            unknown.push(segments(&p))
        });
        for segs in unknown {
            let (key_span, name) = locate(&copy, &segs);
            let at = if path.is_empty() {
                String::new()
            } else {
                format!(" in `{path}`")
            };
            self.problem(
                Some(key_span.unwrap_or(span.clone())),
                format!("unknown key `{name}`{at}"),
            );
        }
        match result {
            Ok(t) => Some(t),
            Err(e) => {
                let msg = e.message().trim_end().replace('\n', " ");
                let at = if path.is_empty() {
                    String::new()
                } else {
                    format!("in `{path}`: ")
                };
                self.problem(e.span().or(Some(span)), format!("{at}{msg}"));
                None
            }
        }
    }

    fn pipeline(&mut self, root: DeTable<'_>) -> Option<Pipeline> {
        let mut meta = RawMeta::default();
        let mut sources = Vec::new();
        let mut schema = RawSchema::default();
        let mut archive = RawArchive::default();
        let mut retention = RawRetention::default();
        let mut decode = RawDecode::default();
        let mut rules = Vec::new();
        let mut detect = RawDetect::default();
        let mut ok = true;
        for (key, value) in root {
            let name = key.get_ref().to_string();
            match name.as_str() {
                "pipeline" => ok &= self.de(value, "pipeline").map(|m| meta = m).is_some(),
                "sources" => match value.get_ref() {
                    DeValue::Array(items) => {
                        for (i, item) in items.iter().enumerate() {
                            sources.push(self.source(item.clone(), i));
                        }
                    }
                    _ => {
                        ok = false;
                        self.problem(
                            Some(value.span()),
                            "`sources` must be an array of tables: write `[[sources]]`".into(),
                        );
                    }
                },
                "schema" => ok &= self.de(value, "schema").map(|s| schema = s).is_some(),
                "archive" => ok &= self.de(value, "archive").map(|a| archive = a).is_some(),
                "retention" => ok &= self.de(value, "retention").map(|r| retention = r).is_some(),
                "decode" => ok &= self.de(value, "decode").map(|d| decode = d).is_some(),
                "detect" => ok &= self.de(value, "detect").map(|d| detect = d).is_some(),
                "rules" => match value.get_ref() {
                    DeValue::Array(items) => {
                        for (i, item) in items.iter().enumerate() {
                            let path = format!("rules[{i}]");
                            let raw: Option<RawRule> = self.de(item.clone(), &path);
                            rules.push(raw.and_then(|r| self.rule(r)));
                        }
                    }
                    _ => {
                        ok = false;
                        self.problem(
                            Some(value.span()),
                            "`rules` must be an array of tables: write `[[rules]]`".into(),
                        );
                    }
                },
                other => {
                    ok = false;
                    self.problem(
                        Some(key.span()),
                        format!(
                            "unknown table `{other}`, expected one of {}",
                            TOP_LEVEL.join(", ")
                        ),
                    );
                }
            }
        }
        if sources.is_empty() {
            self.problem(
                Some(0..0),
                "no `[[sources]]`: a pipeline needs at least one source".into(),
            );
        }
        let sources: Vec<Source> = sources.into_iter().flatten().collect();
        let log_schema = self.log_schema(schema);
        let archive = self.archive(archive);
        let retention = self.retention(retention);
        let decode = self.decode(decode);
        let allowed_lateness = self.duration(&detect.allowed_lateness, Duration::from_secs(30));
        let correlation = self.correlation(&detect);
        ok &= rules.iter().all(Option::is_some);
        let rules: Vec<RuleSpec> = rules.into_iter().flatten().collect();
        let mut names = std::collections::HashSet::new();
        for s in &sources {
            if !names.insert(s.name.clone()) {
                self.problem(
                    None,
                    format!(
                        "two sources are named `{}`; give each a unique `name`",
                        s.name
                    ),
                );
            }
        }
        ok.then_some(())?;
        Some(Pipeline {
            name: meta.name.unwrap_or_else(|| "vigil".into()),
            sources,
            log_schema: log_schema?,
            decode: decode?,
            archive: archive?,
            retention: retention?,
            rules,
            detect: Detect {
                allowed_lateness: allowed_lateness?,
                anomalies_file: detect
                    .anomalies_file
                    .filter(|f| !f.is_empty())
                    .map(PathBuf::from),
                anomaly_topic: detect.anomaly_topic.filter(|t| !t.is_empty()),
                correlation: correlation?,
            },
        })
    }

    /// `Some(None)`: correlation turned off.
    fn correlation(&mut self, d: &RawDetect) -> Option<Option<Correlation>> {
        let default = Correlation::default();
        let trace_timeout = self.duration(&d.trace_timeout, default.trace_timeout);
        let window = self.duration(&d.correlation_window, default.window);
        let incident_gap = self.duration(&d.incident_gap, default.incident_gap);
        let mut ok = true;
        for (name, parsed, span) in [
            ("trace_timeout", trace_timeout, &d.trace_timeout),
            ("correlation_window", window, &d.correlation_window),
        ] {
            if parsed.is_some_and(|p| p.is_zero()) {
                self.problem(
                    span.as_ref().map(|s| s.span()),
                    format!("`detect.{name}` must be longer than 0"),
                );
                ok = false;
            }
        }
        if d.max_open_traces == Some(0) {
            self.problem(None, "`detect.max_open_traces` must be at least 1".into());
            ok = false;
        }
        ok.then_some(())?;
        let (trace_timeout, window, incident_gap) = (trace_timeout?, window?, incident_gap?);
        Some(d.correlate.unwrap_or(true).then(|| Correlation {
            trace_timeout,
            window,
            incident_gap,
            max_open_traces: d.max_open_traces.unwrap_or(default.max_open_traces),
            duration_column: d.duration_column.clone().unwrap_or(default.duration_column),
            status_column: d.status_column.clone().unwrap_or(default.status_column),
        }))
    }

    fn rule(&mut self, raw: RawRule) -> Option<RuleSpec> {
        let table = self.record_kind(&raw.table);
        let window = self.duration(&Some(raw.window.clone()), Duration::ZERO);
        let for_ = self.duration(&raw.for_, Duration::ZERO);
        if window.is_some_and(|w| w.is_zero()) {
            self.problem(
                Some(raw.window.span()),
                "`window` must be longer than 0".into(),
            );
        }
        let hop = match (&raw.hop, window) {
            (None, w) => w,
            (Some(h), Some(w)) => {
                let hop = self.duration(&raw.hop, w)?;
                if hop.is_zero() || hop > w || w.as_micros() % hop.as_micros() != 0 {
                    self.problem(
                        Some(h.span()),
                        format!(
                            "`hop` must be longer than 0 and divide the window ({}) evenly",
                            format_duration(w)
                        ),
                    );
                    return None;
                }
                Some(hop)
            }
            (Some(_), None) => None,
        };
        let cond = raw.condition.get_ref().trim();
        let condition = if cond == "baseline" {
            Some(Condition::Baseline)
        } else {
            let split = cond
                .find(|c: char| !matches!(c, '<' | '>' | '='))
                .unwrap_or(cond.len());
            let (op, number) = cond.split_at(split);
            let threshold = number.trim().parse::<f64>().ok().filter(|t| t.is_finite());
            match (op.parse::<Comparison>(), threshold) {
                (Ok(comparison), Some(threshold)) => Some(Condition::Threshold {
                    comparison,
                    threshold,
                }),
                _ => {
                    self.problem(
                        Some(raw.condition.span()),
                        format!(
                            "condition `{cond}` should be a comparison and a number, e.g. `> 0.05`, or `baseline`"
                        ),
                    );
                    None
                }
            }
        };
        if let Some(v) = &raw.no_data
            && !v.get_ref().is_finite()
        {
            self.problem(Some(v.span()), "`no_data` must be a finite number".into());
        }
        let severity = match raw.severity.get_ref().parse::<Severity>() {
            Ok(s) => s,
            Err(e) => {
                self.problem(Some(raw.severity.span()), e);
                return None;
            }
        };
        let mut annotations = BTreeMap::new();
        if let Some(s) = raw.summary {
            annotations.insert("summary".to_string(), s);
        }
        if let Some(u) = raw.runbook_url {
            annotations.insert("runbook_url".to_string(), u);
        }
        Some(RuleSpec {
            name: raw.name,
            table: table?,
            window: window.filter(|w| !w.is_zero())?,
            hop: hop?,
            signal: raw.signal,
            filter: raw.filter,
            condition: condition?,
            no_data: raw.no_data.map(Spanned::into_inner),
            for_: for_?,
            severity,
            annotations,
            labels: raw.labels,
        })
    }

    fn source(&mut self, item: Spanned<DeValue<'_>>, i: usize) -> Option<Source> {
        let path = format!("sources[{i}]");
        let span = item.span();
        let DeValue::Table(mut table) = item.into_inner() else {
            self.problem(Some(span), format!("`{path}` must be a table"));
            return None;
        };
        let Some(kind) = table.remove("type") else {
            self.problem(
                Some(span),
                format!("`{path}` has no `type`; expected file, stdin, kafka or generator"),
            );
            return None;
        };
        let kind_span = kind.span();
        let kind_name = kind.get_ref().as_str().unwrap_or_default().to_string();
        let value = Spanned::new(span.clone(), DeValue::Table(table));
        let (name, kind) = match kind_name.as_str() {
            "file" => {
                let raw: RawFileSource = self.de(value, &path)?;
                let records = self.record_kind(&raw.kind)?;
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
                let records = self.record_kind(&raw.kind)?;
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
            "generator" => {
                let raw: RawGeneratorSource = self.de(value, &path)?;
                let name = raw.name.clone().unwrap_or_else(|| "generator".into());
                let (config, realtime) = self.generator(raw)?;
                (name, SourceKind::Generator { config, realtime })
            }
            other => {
                self.problem(
                    Some(kind_span),
                    format!("unknown source type `{other}` in `{path}`, expected file, stdin, kafka or generator"),
                );
                return None;
            }
        };
        Some(Source { name, kind })
    }

    fn kafka(&mut self, raw: RawKafkaSource, path: &str) -> Option<Kafka> {
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
        for t in &raw.topics {
            let kind = self.record_kind(&t.kind);
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
        let max_batch_wait = self.duration(&raw.max_batch_wait, Duration::from_secs(1));
        let max_fetch_buffer = self.size(&raw.max_fetch_buffer, 16 << 20);
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
        let max_batch_records = raw.max_batch_records.unwrap_or(8192);
        if max_batch_records == 0 {
            self.problem(
                None,
                format!("`{path}.max_batch_records` must be at least 1"),
            );
        }
        Some(Kafka {
            brokers,
            group_id: raw.group_id.unwrap_or_else(|| "vigil".into()),
            topics,
            start_earliest,
            max_batch_records: max_batch_records.max(1),
            max_batch_wait: max_batch_wait?,
            max_fetch_buffer: max_fetch_buffer?.max(1024),
            properties,
            dead_letter_topic: raw.dead_letter_topic.filter(|t| !t.is_empty()),
        })
    }

    fn record_kind(&mut self, kind: &Spanned<String>) -> Option<RecordKind> {
        kind.get_ref()
            .parse()
            .map_err(|e| self.problem(Some(kind.span()), e))
            .ok()
    }

    fn duration(&mut self, d: &Option<Spanned<String>>, default: Duration) -> Option<Duration> {
        match d {
            None => Some(default),
            Some(d) => parse_duration(d.get_ref())
                .map_err(|e| self.problem(Some(d.span()), e))
                .ok(),
        }
    }

    fn size(&mut self, s: &Option<Spanned<RawSize>>, default: usize) -> Option<usize> {
        match s.as_ref().map(|s| (s.span(), s.get_ref())) {
            None => Some(default),
            Some((_, RawSize::Bytes(b))) => Some(*b as usize),
            Some((span, RawSize::Text(t))) => parse_bytes(t)
                .map(|b| b as usize)
                .map_err(|e| self.problem(Some(span), e))
                .ok(),
        }
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
            None if realtime => Some(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros() as i64),
            ),
            None => Some(defaults.start_micros),
        };
        let duration = self.duration(&raw.duration, defaults.duration);
        let interval = self.duration(&raw.metrics_interval, defaults.metrics_interval);
        let rate = match &raw.rate {
            Some(r) if !(r.get_ref().is_finite() && *r.get_ref() > 0.0) => {
                self.problem(
                    Some(r.span()),
                    "`rate` must be a positive number of requests per second".into(),
                );
                None
            }
            Some(r) => Some(*r.get_ref()),
            None => Some(defaults.rate),
        };
        let mut incidents = Vec::new();
        for i in &raw.incidents {
            match i.get_ref().parse() {
                Ok(inc) => incidents.push(inc),
                Err(e) => self.problem(Some(i.span()), e),
            }
        }
        Some((
            vigil_gen::Config {
                seed: raw.seed.unwrap_or(defaults.seed),
                start_micros: start?,
                duration: duration?,
                rate: rate?,
                metrics_interval: interval?,
                incidents,
                ..defaults
            },
            realtime,
        ))
    }

    fn log_schema(&mut self, raw: RawSchema) -> Option<LogSchema> {
        let mut promoted = Vec::new();
        let mut ok = true;
        for (key, field) in &raw.logs.fields {
            // Problems with a key are reported at its value, on the same line.
            let Some(name) = key.strip_prefix("additional_data.") else {
                ok = false;
                self.problem(
                    Some(field.span()),
                    format!(
                        "schema field `{key}` must name a field of additional_data, e.g. `additional_data.status_code`"
                    ),
                );
                continue;
            };
            if name.is_empty() || name.contains('.') {
                ok = false;
                self.problem(
                    Some(field.span()),
                    format!("`{key}`: only direct children of additional_data can be promoted"),
                );
                continue;
            }
            let (type_name, column) = match field.get_ref() {
                RawField::Type(t) => (t.as_str(), None),
                RawField::Full { field_type, column } => (field_type.as_str(), column.clone()),
            };
            match type_name.parse::<FieldType>() {
                Ok(field_type) => promoted.push(PromotedField {
                    key: name.to_string(),
                    column: column.unwrap_or_else(|| name.to_string()),
                    field_type,
                }),
                Err(e) => {
                    ok = false;
                    self.problem(Some(field.span()), e);
                }
            }
        }
        if !ok {
            return None;
        }
        LogSchema::new(promoted)
            .map_err(|e| self.problem(None, e))
            .ok()
    }

    fn archive(&mut self, raw: RawArchive) -> Option<Archive> {
        let url = raw
            .url
            .as_ref()
            .map_or_else(|| "./vigil-data".to_string(), |u| u.get_ref().clone());
        if url.trim().is_empty() {
            self.problem(
                raw.url.as_ref().map(Spanned::span),
                "`archive.url` is empty".into(),
            );
        }
        let defaults = Flush::default();
        let max_rows = raw.flush.max_rows.unwrap_or(defaults.max_rows);
        if max_rows == 0 {
            self.problem(None, "`archive.flush.max_rows` must be at least 1".into());
        }
        let max_bytes = self.size(&raw.flush.max_bytes, defaults.max_bytes);
        let interval = self.duration(&raw.flush.interval, defaults.interval);
        Some(Archive {
            url,
            storage_options: raw.storage_options.into_iter().collect::<BTreeMap<_, _>>(),
            flush: Flush {
                max_rows,
                max_bytes: max_bytes?,
                interval: interval?,
            },
        })
    }

    fn retention(&mut self, raw: RawRetention) -> Option<Retention> {
        let d = Retention::default();
        let hot = self.duration(&raw.hot, d.hot)?;
        let warm = self.duration(&raw.warm, d.warm)?;
        let cold = self.duration(&raw.cold, d.cold)?;
        if !(hot <= warm && warm <= cold) {
            self.problem(
                raw.hot.as_ref().map(Spanned::span),
                "retention ages must grow: hot ≤ warm ≤ cold".into(),
            );
            return None;
        }
        Some(Retention { hot, warm, cold })
    }

    fn decode(&mut self, raw: RawDecode) -> Option<Decode> {
        let d = Decode::default();
        let max_record_bytes = self.size(&raw.max_record_bytes, d.max_record_bytes);
        let dead_letter_raw_limit = self.size(&raw.dead_letter_raw_limit, d.dead_letter_raw_limit);
        let batch_size = raw.batch_size.unwrap_or(d.batch_size);
        if batch_size == 0 {
            self.problem(None, "`decode.batch_size` must be at least 1".into());
            return None;
        }
        Some(Decode {
            batch_size,
            max_record_bytes: max_record_bytes?,
            max_depth: raw.max_depth.unwrap_or(d.max_depth),
            dead_letter_raw_limit: dead_letter_raw_limit?,
        })
    }
}

/// The key path of a `serde_ignored` path, outermost first.
fn segments(p: &serde_ignored::Path<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = p;
    loop {
        match cur {
            serde_ignored::Path::Root => break,
            serde_ignored::Path::Seq { parent, index } => {
                out.push(index.to_string());
                cur = parent;
            }
            serde_ignored::Path::Map { parent, key } => {
                out.push(key.clone());
                cur = parent;
            }
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => cur = parent,
        }
    }
    out.reverse();
    out
}

/// The span of the key at `path` inside `value`, and the dotted key name.
fn locate(value: &Spanned<DeValue<'_>>, path: &[String]) -> (Option<Range<usize>>, String) {
    let mut cur = value;
    let mut span = None;
    for seg in path {
        match cur.get_ref() {
            DeValue::Table(t) => match t.get_key_value(seg.as_str()) {
                Some((k, v)) => {
                    span = Some(k.span());
                    cur = v;
                }
                None => break,
            },
            DeValue::Array(a) => match seg.parse::<usize>().ok().and_then(|i| a.get(i)) {
                Some(v) => cur = v,
                None => break,
            },
            _ => break,
        }
    }
    (span, path.join("."))
}
