//! Privacy at ingest: per-field policies applied to every decoded batch before anything is
//! archived, detected on or sent on.
//!
//! A policy names a field; it applies wherever that field appears in a record:
//! - a column of that name (`user_id`, a promoted column, `message`);
//! - a key of that name, at any depth, inside the JSON text columns (`additional_data`,
//!   `extra`, the spans' `attributes`), for scalar values (strings, numbers, booleans);
//! - a label of that name in the metrics' `labels`;
//! - the raw bytes of dead letters, as JSON keys. A dead letter whose raw bytes are not text
//!   (a protobuf payload) cannot be searched, so its raw bytes are withheld (`raw` empty,
//!   `raw_len` kept, the reason says so).
//!
//! A receiver that forwards OTLP to Kafka applies the same policies to the requests themselves
//! ([`Privacy::otlp_logs`] and its siblings): attributes at any depth, and log bodies under a
//! policy on `message`.
//!
//! Actions:
//! - `pseudonymize`: HMAC-SHA-256 under a secret key, `p_` and the first 16 bytes as hex (a
//!   value already of that form is kept, so applying the policies twice changes nothing). The same value
//!   gets the same pseudonym in every table and every run with the same key, so joins and
//!   group-bys still work; without the key it cannot be reversed or guessed by hashing
//!   candidates. A non-string column cannot hold the pseudonym and is emptied (null) instead.
//! - `drop`: the value becomes null.
//! - `redact`: every match of a regular expression in the value is replaced.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, MapArray, RecordBatch, StringArray, StructArray,
    new_null_array,
};
use arrow::datatypes::DataType;
use hmac::{Hmac, Mac};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use regex::Regex;
use sha2::Sha256;
use vigil_core::schema::dead;

use crate::DecodedBatch;

/// What a policy does to a value.
#[derive(Debug, Clone)]
pub enum Action {
    /// Replace by a keyed pseudonym.
    Pseudonymize,
    /// Replace by null.
    Drop,
    /// Replace every match of `pattern` by `replacement` (`$1` etc. refer to groups).
    Redact {
        /// What to find.
        pattern: Regex,
        /// What to put instead.
        replacement: String,
    },
}

/// The policies of a pipeline.
#[derive(Debug, Clone)]
pub struct Privacy {
    key: Vec<u8>,
    fields: Vec<Field>,
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    action: Action,
    /// `"name": <scalar>` inside JSON text.
    in_json: Regex,
    quoted: String,
}

/// Pseudonyms are `p_` and 32 lower-case hex digits (the first 16 bytes of the HMAC).
const PSEUDONYM_PREFIX: &str = "p_";
const PSEUDONYM_LEN: usize = 34;

fn is_pseudonym(v: &str) -> bool {
    v.len() == PSEUDONYM_LEN
        && v.starts_with(PSEUDONYM_PREFIX)
        && v[2..]
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// JSON text columns searched for keys.
const JSON_COLUMNS: [&str; 3] = ["additional_data", "extra", "attributes"];

impl Privacy {
    /// Policies for `fields`; `key` is the pseudonymization key (required when a field is
    /// pseudonymized).
    pub fn new(key: Option<Vec<u8>>, fields: Vec<(String, Action)>) -> Result<Self, String> {
        let needs_key = fields
            .iter()
            .any(|(_, a)| matches!(a, Action::Pseudonymize));
        let key = match key {
            Some(k) if k.len() >= 16 => k,
            Some(_) => return Err("the pseudonymization key must be at least 16 bytes".into()),
            None if needs_key => {
                return Err("a field is pseudonymized but no key is set".into());
            }
            None => Vec::new(),
        };
        let fields = fields
            .into_iter()
            .map(|(name, action)| {
                let in_json = Regex::new(&format!(
                    r#""{}"\s*:\s*("(?:[^"\\]|\\.)*"|-?[0-9][0-9.eE+\-]*|true|false)"#,
                    regex::escape(&name)
                ))
                .expect("an escaped key makes a valid pattern");
                Field {
                    quoted: format!("\"{name}\""),
                    name,
                    action,
                    in_json,
                }
            })
            .collect();
        Ok(Self { key, fields })
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The pseudonym of `value`.
    ///
    /// A value that already is a pseudonym is kept: a record pseudonymized by a receiver that
    /// forwards it, read back by a pipeline with the same policies, keeps the one pseudonym
    /// every other path gives the raw value.
    pub fn pseudonym(&self, value: &str) -> String {
        if is_pseudonym(value) {
            return value.to_owned();
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(PSEUDONYM_LEN);
        out.push_str(PSEUDONYM_PREFIX);
        for b in &digest[..16] {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// Applies every policy to the records and dead letters of `batch`.
    pub fn apply(&self, batch: &mut DecodedBatch) {
        if self.is_empty() {
            return;
        }
        for b in &mut batch.records {
            *b = self.records(b);
        }
        if batch.dead_letters.num_rows() > 0 {
            batch.dead_letters = self.dead_letters(&batch.dead_letters);
        }
    }

    /// A records batch with every policy applied.
    pub fn records(&self, batch: &RecordBatch) -> RecordBatch {
        let schema = batch.schema();
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        for (i, f) in schema.fields().iter().enumerate() {
            let name = f.name().as_str();
            let c = &columns[i];
            let new = if let Some(p) = self.fields.iter().find(|p| p.name == name) {
                match c.data_type() {
                    DataType::Utf8 => Some(map_strings(c.as_string::<i32>(), |v| {
                        self.value(&p.action, v)
                    })),
                    _ if f.is_nullable() => Some(new_null_array(c.data_type(), c.len())),
                    _ => None,
                }
            } else if JSON_COLUMNS.contains(&name) && c.data_type() == &DataType::Utf8 {
                let c = c.as_string::<i32>();
                let named = |v: Option<&str>| {
                    v.is_some_and(|v| self.fields.iter().any(|p| v.contains(&p.quoted)))
                };
                // Rebuilt only when a row names a field.
                c.iter()
                    .any(named)
                    .then(|| map_strings(c, |v| Some(self.json(v).into_owned())))
            } else if let DataType::Map(..) = c.data_type() {
                Some(self.labels(c.as_map()))
            } else {
                None
            };
            if let Some(new) = new {
                columns[i] = new;
            }
        }
        RecordBatch::try_new(schema, columns).expect("same types, same lengths")
    }

    /// Dead letters with raw text scrubbed, or withheld when it is not text.
    fn dead_letters(&self, batch: &RecordBatch) -> RecordBatch {
        let schema = batch.schema();
        let (Some(raw_i), Some(reason_i)) = (
            schema.index_of(dead::RAW).ok(),
            schema.index_of(dead::REASON).ok(),
        ) else {
            return batch.clone();
        };
        let raw = batch.column(raw_i).as_binary::<i32>();
        let reason = batch.column(reason_i).as_string::<i32>();
        let mut raws: Vec<Option<Vec<u8>>> = Vec::with_capacity(raw.len());
        let mut reasons: Vec<Option<String>> = Vec::with_capacity(raw.len());
        for i in 0..raw.len() {
            let why = reason.is_valid(i).then(|| reason.value(i).to_owned());
            if raw.is_null(i) {
                raws.push(None);
                reasons.push(why);
                continue;
            }
            match std::str::from_utf8(raw.value(i)) {
                Ok(text) => {
                    raws.push(Some(self.json(text).into_owned().into_bytes()));
                    reasons.push(why);
                }
                Err(_) => {
                    raws.push(Some(Vec::new()));
                    reasons.push(why.map(|w| {
                        format!("{w} (raw bytes withheld: the privacy policy cannot search bytes that are not text)")
                    }));
                }
            }
        }
        let mut columns = batch.columns().to_vec();
        columns[raw_i] = Arc::new(BinaryArray::from_iter(raws));
        columns[reason_i] = Arc::new(StringArray::from_iter(reasons));
        RecordBatch::try_new(schema, columns).expect("same types, same lengths")
    }

    /// A column value under `action`; `None` is null.
    fn value(&self, action: &Action, v: &str) -> Option<String> {
        match action {
            Action::Pseudonymize => Some(self.pseudonym(v)),
            Action::Drop => None,
            Action::Redact {
                pattern,
                replacement,
            } => Some(pattern.replace_all(v, replacement.as_str()).into_owned()),
        }
    }

    /// JSON text with every policy applied to the scalar values of its keys; borrowed when
    /// no key is there (most rows: nothing is copied).
    fn json<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out = Cow::Borrowed(text);
        for p in &self.fields {
            if !out.contains(&p.quoted) {
                continue;
            }
            let replaced = p.in_json.replace_all(&out, |c: &regex::Captures<'_>| {
                let whole = c.get(0).expect("a match").as_str();
                let literal = c.get(1).expect("the value").as_str();
                let key_part = &whole[..whole.len() - literal.len()];
                let value: String = if literal.starts_with('"') {
                    serde_json::from_str(literal).unwrap_or_else(|_| literal.to_owned())
                } else {
                    literal.to_owned()
                };
                let new = match self.value(&p.action, &value) {
                    Some(v) => serde_json::to_string(&v).expect("a string serializes"),
                    None => "null".to_owned(),
                };
                format!("{key_part}{new}")
            });
            out = Cow::Owned(replaced.into_owned());
        }
        out
    }

    /// Metric labels with every policy applied to the values of its keys.
    fn labels(&self, map: &MapArray) -> ArrayRef {
        let entries = map.entries();
        let keys = entries.column(0).as_string::<i32>();
        let values = entries.column(1).as_string::<i32>();
        let mut touched = false;
        let new_values: StringArray = (0..keys.len())
            .map(|i| {
                let v = values.is_valid(i).then(|| values.value(i));
                match (self.fields.iter().find(|p| p.name == keys.value(i)), v) {
                    (Some(p), Some(v)) => {
                        touched = true;
                        self.value(&p.action, v)
                    }
                    (_, v) => v.map(str::to_owned),
                }
            })
            .collect();
        if !touched {
            return Arc::new(map.clone());
        }
        let DataType::Struct(fields) = entries.data_type() else {
            unreachable!("map entries are a struct");
        };
        let entries = StructArray::new(
            fields.clone(),
            vec![entries.column(0).clone(), Arc::new(new_values)],
            entries.nulls().cloned(),
        );
        let DataType::Map(field, sorted) = map.data_type() else {
            unreachable!("a map");
        };
        Arc::new(MapArray::new(
            field.clone(),
            map.offsets().clone(),
            entries,
            map.nulls().cloned(),
            *sorted,
        ))
    }
}

/// Policies on OTLP requests, for a receiver that forwards them: every attribute (resource,
/// scope, record, span, event, link, data point) named by a policy at any depth, and log
/// bodies under a policy on `message`.
impl Privacy {
    /// Applies the policies to OTLP attributes, recursing into lists and maps.
    pub fn otlp_attributes(&self, kvs: &mut [KeyValue]) {
        for kv in kvs {
            let policy = self.fields.iter().find(|p| p.name == kv.key);
            let Some(v) = kv.value.as_mut() else {
                continue;
            };
            match policy {
                Some(p) => self.otlp_value(&p.action, v),
                None => self.otlp_nested(v),
            }
        }
    }

    fn otlp_nested(&self, v: &mut AnyValue) {
        match v.value.as_mut() {
            Some(any_value::Value::KvlistValue(l)) => self.otlp_attributes(&mut l.values),
            Some(any_value::Value::ArrayValue(a)) => {
                for x in &mut a.values {
                    self.otlp_nested(x);
                }
            }
            _ => {}
        }
    }

    /// A value under `action`: scalars by their text, containers element by element.
    fn otlp_value(&self, action: &Action, v: &mut AnyValue) {
        use any_value::Value as V;
        let text = match v.value.as_ref() {
            None => return,
            Some(V::StringValue(s)) => s.clone(),
            Some(V::IntValue(i)) => i.to_string(),
            Some(V::DoubleValue(d)) => d.to_string(),
            Some(V::BoolValue(b)) => b.to_string(),
            Some(V::BytesValue(_)) => {
                // Bytes cannot be searched or pseudonymized as text: dropped.
                v.value = None;
                return;
            }
            Some(V::ArrayValue(_) | V::KvlistValue(_)) => {
                if let Some(V::ArrayValue(a)) = v.value.as_mut() {
                    for x in &mut a.values {
                        self.otlp_value(action, x);
                    }
                } else if let Some(V::KvlistValue(l)) = v.value.as_mut() {
                    for kv in &mut l.values {
                        if let Some(x) = kv.value.as_mut() {
                            self.otlp_value(action, x);
                        }
                    }
                }
                return;
            }
        };
        v.value = self.value(action, &text).map(V::StringValue);
    }

    /// The policy on `message`, if any: log bodies are the `message` column.
    fn message_action(&self) -> Option<&Action> {
        self.fields
            .iter()
            .find(|p| p.name == "message")
            .map(|p| &p.action)
    }

    /// Applies the policies to an OTLP logs request.
    pub fn otlp_logs(&self, req: &mut ExportLogsServiceRequest) {
        for rl in &mut req.resource_logs {
            if let Some(r) = rl.resource.as_mut() {
                self.otlp_attributes(&mut r.attributes);
            }
            for sl in &mut rl.scope_logs {
                if let Some(s) = sl.scope.as_mut() {
                    self.otlp_attributes(&mut s.attributes);
                }
                for rec in &mut sl.log_records {
                    self.otlp_attributes(&mut rec.attributes);
                    if let (Some(a), Some(body)) = (self.message_action(), rec.body.as_mut()) {
                        self.otlp_value(a, body);
                    }
                }
            }
        }
    }

    /// Applies the policies to an OTLP traces request.
    pub fn otlp_traces(&self, req: &mut ExportTraceServiceRequest) {
        for rs in &mut req.resource_spans {
            if let Some(r) = rs.resource.as_mut() {
                self.otlp_attributes(&mut r.attributes);
            }
            for ss in &mut rs.scope_spans {
                if let Some(s) = ss.scope.as_mut() {
                    self.otlp_attributes(&mut s.attributes);
                }
                for span in &mut ss.spans {
                    self.otlp_attributes(&mut span.attributes);
                    for e in &mut span.events {
                        self.otlp_attributes(&mut e.attributes);
                    }
                    for l in &mut span.links {
                        self.otlp_attributes(&mut l.attributes);
                    }
                }
            }
        }
    }

    /// Applies the policies to an OTLP metrics request (data point attributes are labels).
    pub fn otlp_metrics(&self, req: &mut ExportMetricsServiceRequest) {
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        for rm in &mut req.resource_metrics {
            if let Some(r) = rm.resource.as_mut() {
                self.otlp_attributes(&mut r.attributes);
            }
            for sm in &mut rm.scope_metrics {
                if let Some(s) = sm.scope.as_mut() {
                    self.otlp_attributes(&mut s.attributes);
                }
                for m in &mut sm.metrics {
                    match m.data.as_mut() {
                        Some(Data::Gauge(g)) => g
                            .data_points
                            .iter_mut()
                            .for_each(|p| self.otlp_attributes(&mut p.attributes)),
                        Some(Data::Sum(s)) => s
                            .data_points
                            .iter_mut()
                            .for_each(|p| self.otlp_attributes(&mut p.attributes)),
                        Some(Data::Histogram(h)) => h
                            .data_points
                            .iter_mut()
                            .for_each(|p| self.otlp_attributes(&mut p.attributes)),
                        Some(Data::ExponentialHistogram(h)) => h
                            .data_points
                            .iter_mut()
                            .for_each(|p| self.otlp_attributes(&mut p.attributes)),
                        Some(Data::Summary(s)) => s
                            .data_points
                            .iter_mut()
                            .for_each(|p| self.otlp_attributes(&mut p.attributes)),
                        None => {}
                    }
                }
            }
        }
    }
}

fn map_strings(c: &StringArray, f: impl Fn(&str) -> Option<String>) -> ArrayRef {
    Arc::new(c.iter().map(|v| v.and_then(&f)).collect::<StringArray>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn privacy() -> Privacy {
        Privacy::new(
            Some(b"0123456789abcdef-test-key".to_vec()),
            vec![
                ("user_id".into(), Action::Pseudonymize),
                ("email".into(), Action::Drop),
                (
                    "message".into(),
                    Action::Redact {
                        pattern: Regex::new(r"\b\d{4}-\d{4}-\d{4}-\d{4}\b").unwrap(),
                        replacement: "[card]".into(),
                    },
                ),
            ],
        )
        .unwrap()
    }

    #[test]
    fn json_values_are_replaced_at_any_depth_and_keep_valid_json() {
        let p = privacy();
        let text = r#"{"a":{"user_id":"u-1","email":"x@y.z","n":1},"user_id" : 42,"message":"card 1234-5678-9012-3456 \"q\""}"#;
        let out = p.json(text);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["a"]["user_id"], p.pseudonym("u-1"));
        assert_eq!(v["a"]["email"], serde_json::Value::Null);
        assert_eq!(v["user_id"], p.pseudonym("42"));
        assert_eq!(v["message"], "card [card] \"q\"");
        assert!(!out.contains("u-1") && !out.contains("x@y.z"));
    }

    #[test]
    fn dead_letters_keep_scrubbed_text_and_withhold_bytes_that_are_not_text() {
        use crate::dead::{DeadLetters, ReasonCode, Rejection};
        use vigil_core::schema::RecordKind;
        let p = privacy();
        let mut dead = DeadLetters::new(RecordKind::Logs, 1 << 10);
        let why = Rejection::new(ReasonCode::InvalidJson, "bad");
        let text = br#"{"service":"a","user_id":"u-1","#;
        dead.push("t", None, 0, text, text.len(), &why);
        let bytes = b"\x0a\xffu-1\x00";
        dead.push("t", None, 1, bytes, bytes.len(), &why);
        let out = p.dead_letters(&dead.finish());
        let raw = out.column_by_name(dead::RAW).unwrap().as_binary::<i32>();
        let text = std::str::from_utf8(raw.value(0)).unwrap();
        assert!(
            text.contains(&p.pseudonym("u-1")) && !text.contains("u-1"),
            "{text}"
        );
        assert!(raw.value(1).is_empty());
        let reason = out.column_by_name(dead::REASON).unwrap().as_string::<i32>();
        assert!(reason.value(1).contains("withheld"));
        let len = out.column_by_name(dead::RAW_LEN).unwrap();
        assert_eq!(
            len.as_primitive::<arrow::datatypes::Int64Type>().value(1),
            6
        );
    }

    #[test]
    fn columns_json_and_labels_of_records_are_covered() {
        use arrow::array::{MapBuilder, StringBuilder};
        use arrow::datatypes::{Field, Schema};
        let p = privacy();
        let mut labels = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        labels.keys().append_value("user_id");
        labels.values().append_value("u-9");
        labels.append(true).unwrap();
        let labels = labels.finish();
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, true),
            Field::new("email", DataType::Utf8, true),
            Field::new("additional_data", DataType::Utf8, true),
            Field::new("labels", labels.data_type().clone(), true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["u-9"])),
                Arc::new(StringArray::from(vec!["a@b.c"])),
                Arc::new(StringArray::from(vec![r#"{"user_id":"u-9"}"#])),
                Arc::new(labels),
            ],
        )
        .unwrap();
        let out = p.records(&batch);
        let pseudonym = p.pseudonym("u-9");
        assert_eq!(out.column(0).as_string::<i32>().value(0), pseudonym);
        assert!(out.column(1).is_null(0));
        assert!(
            out.column(2)
                .as_string::<i32>()
                .value(0)
                .contains(&pseudonym)
        );
        let entry = out.column(3).as_map().value(0);
        assert_eq!(entry.column(1).as_string::<i32>().value(0), pseudonym);
    }

    #[test]
    fn pseudonyms_are_stable_keyed_and_need_a_key() {
        let p = privacy();
        assert_eq!(p.pseudonym("u-1"), p.pseudonym("u-1"));
        assert_ne!(p.pseudonym("u-1"), p.pseudonym("u-2"));
        assert_eq!(p.pseudonym(&p.pseudonym("u-1")), p.pseudonym("u-1"));
        assert_eq!(p.pseudonym("u-1").len(), 34);
        let other = Privacy::new(Some(b"another key, 16+ bytes".to_vec()), vec![]).unwrap();
        assert_ne!(p.pseudonym("u-1"), other.pseudonym("u-1"));
        assert!(Privacy::new(None, vec![("user_id".into(), Action::Pseudonymize)]).is_err());
        assert!(Privacy::new(Some(b"short".to_vec()), vec![]).is_err());
    }
}
