//! Loading: substitute, parse with spans, deserialize table by table, validate. One
//! validator per section, each in its own file: [`sources`], [`records`] (`[schema]`,
//! `[decode]`), [`archive`] (`[archive]`, `[retention]`), [`rules`] (`[[rules]]`, `[detect]`).
//! Every default comes from the option type that owns it.

mod archive;
mod records;
mod rules;
mod sources;

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use vigil_core::schema::{LogSchema, RecordKind};
use vigil_core::units::{parse_bytes, parse_duration};
use vigil_decode::privacy::{Action, Privacy};
use vigil_detect::RuleSpec;
use vigil_pipeline::{DetectConfig, Pipeline, SourceConfig, SourceKind};

use crate::env::substitute;
use crate::raw::{
    RawArchive, RawDecode, RawDetect, RawMeta, RawPrivacy, RawRetention, RawRule, RawSchema,
    RawSize,
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

const TOP_LEVEL: [&str; 9] = [
    "pipeline",
    "privacy",
    "sources",
    "schema",
    "archive",
    "retention",
    "decode",
    "rules",
    "detect",
];

impl Validator<'_> {
    pub(super) fn problem(&mut self, span: Option<Range<usize>>, message: String) {
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
    pub(super) fn de<T: DeserializeOwned>(
        &mut self,
        value: Spanned<DeValue<'_>>,
        path: &str,
    ) -> Option<T> {
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
        let mut privacy = None;
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
                "privacy" => {
                    let raw: Option<RawPrivacy> = self.de(value, "privacy");
                    ok &= raw.is_some();
                    privacy = raw.and_then(|p| self.privacy(p));
                }
                "rules" => match value.get_ref() {
                    DeValue::Array(items) => {
                        for (i, item) in items.iter().enumerate() {
                            let path = format!("rules[{i}]");
                            let raw: Option<RawRule> = self.de(item.clone(), &path);
                            rules.push(raw.and_then(|r| {
                                let at = r.signal.span();
                                self.rule(r).map(|spec| (spec, at))
                            }));
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
        let sources: Vec<SourceConfig> = sources.into_iter().flatten().collect();
        let log_schema = self.log_schema(schema);
        let archive = self.archive(archive);
        let retention = self.retention(retention);
        let decode = self.decode(decode);
        let detect_defaults = DetectConfig::default();
        let allowed_lateness =
            self.duration(&detect.allowed_lateness, detect_defaults.allowed_lateness);
        let correlation = self.correlation(&detect);
        let series = self.series_limits(&detect);
        let alertmanager_resend = self.duration(
            &detect.alertmanager_resend,
            detect_defaults.alertmanager_resend,
        );
        if alertmanager_resend.is_some_and(|d| d.is_zero())
            && let Some(d) = &detect.alertmanager_resend
        {
            self.problem(
                Some(d.span()),
                "alertmanager_resend must be more than 0s".into(),
            );
        }
        let mut alertmanagers = Vec::new();
        for url in detect.alertmanagers.iter().flatten() {
            let u = url.get_ref().trim();
            if u.is_empty() {
                continue;
            }
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                self.problem(
                    Some(url.span()),
                    format!("alertmanager `{u}`: give its base URL, e.g. http://alertmanager:9093"),
                );
                ok = false;
            }
            alertmanagers.push(u.to_string());
        }
        ok &= rules.iter().all(Option::is_some);
        let mut rules: Vec<(RuleSpec, Range<usize>)> = rules.into_iter().flatten().collect();
        if let Some(schema) = &log_schema {
            ok &= self.check_signals(&mut rules, schema);
        }
        let rules: Vec<RuleSpec> = rules.into_iter().map(|(r, _)| r).collect();
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
        let name = meta.name.unwrap_or_else(|| "vigil".into());
        let partials_topic = match detect.distributed {
            Some(true) => {
                if !sources
                    .iter()
                    .any(|s| matches!(s.kind, SourceKind::Kafka(_)))
                {
                    self.problem(
                        None,
                        "`[detect] distributed = true` needs a Kafka source: replicas share detection through Kafka".into(),
                    );
                    ok = false;
                }
                Some(
                    detect
                        .partials_topic
                        .clone()
                        .filter(|t| !t.is_empty())
                        .unwrap_or_else(|| format!("{name}.partials")),
                )
            }
            _ => None,
        };
        ok.then_some(())?;
        Some(Pipeline {
            name,
            sources,
            log_schema: log_schema?,
            decode: decode?,
            archive: archive?,
            retention: retention?,
            rules,
            detect: DetectConfig {
                allowed_lateness: allowed_lateness?,
                anomalies_file: detect
                    .anomalies_file
                    .filter(|f| !f.is_empty())
                    .map(PathBuf::from),
                anomaly_topic: detect.anomaly_topic.filter(|t| !t.is_empty()),
                alertmanagers,
                alertmanager_resend: alertmanager_resend.filter(|d| !d.is_zero())?,
                correlation: correlation?,
                series: series?,
                partials_topic,
            },
            privacy,
        })
    }

    /// `[privacy]` into its policies; problems reported at the field.
    fn privacy(&mut self, raw: RawPrivacy) -> Option<Arc<Privacy>> {
        let mut fields = Vec::new();
        for f in raw.fields {
            let action = match (f.action.get_ref().as_str(), &f.pattern) {
                ("pseudonymize", None) => Action::Pseudonymize,
                ("drop", None) => Action::Drop,
                ("redact", Some(p)) => match regex::Regex::new(p.get_ref()) {
                    Ok(pattern) => Action::Redact {
                        pattern,
                        replacement: f.replacement.unwrap_or_else(|| "[redacted]".into()),
                    },
                    Err(e) => {
                        self.problem(
                            Some(p.span()),
                            format!("`pattern` is not a valid regular expression: {e}"),
                        );
                        continue;
                    }
                },
                ("redact", None) => {
                    self.problem(Some(f.action.span()), "`redact` needs a `pattern`".into());
                    continue;
                }
                ("pseudonymize" | "drop", Some(p)) => {
                    self.problem(Some(p.span()), "`pattern` is only for `redact`".into());
                    continue;
                }
                (other, _) => {
                    self.problem(
                        Some(f.action.span()),
                        format!("unknown privacy action `{other}`, expected pseudonymize, drop or redact"),
                    );
                    continue;
                }
            };
            fields.push((f.field.into_inner(), action));
        }
        match Privacy::new(
            raw.key.filter(|k| !k.is_empty()).map(String::into_bytes),
            fields,
        ) {
            Ok(p) => Some(Arc::new(p)),
            Err(e) => {
                self.problem(None, format!("`[privacy]`: {e}; set `key = \"${{VIGIL_PRIVACY_KEY}}\"` to a secret of at least 16 bytes"));
                None
            }
        }
    }

    /// Plans every rule's SQL over its table's columns, as the pipeline will: an unknown
    /// column or function is reported here, at the rule's `signal`. Each rule keeps the
    /// columns it reads (`reads`): a backtest decodes only those, without planning again.
    fn check_signals(&mut self, rules: &mut [(RuleSpec, Range<usize>)], logs: &LogSchema) -> bool {
        let mut ok = true;
        for (rule, at) in rules {
            let schema = match rule.table {
                RecordKind::Logs => logs.schema().clone(),
                RecordKind::Metrics => vigil_core::schema::metric_schema(),
                RecordKind::Spans => vigil_core::schema::span_schema(),
            };
            match vigil_detect::windows::rule_columns(rule, &schema) {
                Ok(columns) => rule.reads = Some(columns),
                Err(e) => {
                    self.problem(Some(at.clone()), e.to_string());
                    ok = false;
                }
            }
        }
        ok
    }

    pub(super) fn record_kind(&mut self, kind: &Spanned<String>) -> Option<RecordKind> {
        kind.get_ref()
            .parse::<RecordKind>()
            .map_err(|e| self.problem(Some(kind.span()), e.to_string()))
            .ok()
    }

    pub(super) fn duration(
        &mut self,
        d: &Option<Spanned<String>>,
        default: Duration,
    ) -> Option<Duration> {
        match d {
            None => Some(default),
            Some(d) => parse_duration(d.get_ref())
                .map_err(|e| self.problem(Some(d.span()), e.to_string()))
                .ok(),
        }
    }

    /// A duration that can be `"off"` (`None`).
    pub(super) fn optional_duration(
        &mut self,
        d: &Option<Spanned<String>>,
        default: Option<Duration>,
    ) -> Option<Option<Duration>> {
        match d {
            Some(v) if v.get_ref().trim() == "off" => Some(None),
            Some(_) => self.duration(d, Duration::ZERO).map(Some),
            None => Some(default),
        }
    }

    pub(super) fn size(&mut self, s: &Option<Spanned<RawSize>>, default: usize) -> Option<usize> {
        match s.as_ref().map(|s| (s.span(), s.get_ref())) {
            None => Some(default),
            Some((_, RawSize::Bytes(b))) => Some(*b as usize),
            Some((span, RawSize::Text(t))) => parse_bytes(t)
                .map(|b| b as usize)
                .map_err(|e| self.problem(Some(span), e.to_string()))
                .ok(),
        }
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
