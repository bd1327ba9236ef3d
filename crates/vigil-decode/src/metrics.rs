//! Metric records → columns of the `metrics` schema.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, Date32Builder, Float64Builder, MapBuilder, MapFieldNames, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::SchemaRef;
use arrow::datatypes::{DataType, Field};
use simd_json::{Node, StaticNode};
use vigil_core::schema::metric_schema;
use vigil_core::time::date32_from_micros;

use crate::aliases::{self, Slot};
use crate::dead::{ReasonCode, Rejection};
use crate::groups::{Columns, Groups};
use crate::rows::{
    ABSENT, Rows, TimeBounds, number_text, optional_str, required_service, required_str,
    required_timestamp, unreadable,
};
use crate::tape::{as_f64, type_name, write_members, write_static, wrong_type};
use crate::verbatim::{Member, Raw};

/// Metric types vigil knows; anything else is rejected so a typo does not create a new type.
const METRIC_TYPES: [&str; 4] = ["gauge", "counter", "histogram", "summary"];

/// The builders of one service's samples.
pub(crate) struct MetricColumns {
    schema: SchemaRef,
    timestamp: TimestampMicrosecondBuilder,
    name: StringBuilder,
    kind: StringBuilder,
    service: StringBuilder,
    value: Float64Builder,
    labels: MapBuilder<StringBuilder, StringBuilder>,
    extra: StringBuilder,
    date: Date32Builder,
}

impl MetricColumns {
    pub(crate) fn new(schema: &SchemaRef) -> Self {
        let names = MapFieldNames {
            entry: "key_value".into(),
            key: "key".into(),
            value: "value".into(),
        };
        let labels = MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new())
            .with_values_field(Field::new("value", DataType::Utf8, true));
        Self {
            schema: schema.clone(),
            timestamp: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            name: StringBuilder::new(),
            kind: StringBuilder::new(),
            service: StringBuilder::new(),
            value: Float64Builder::new(),
            labels,
            extra: StringBuilder::new(),
            date: Date32Builder::new(),
        }
    }
}

impl MetricColumns {
    /// Appends one sample of typed values (OTLP data points); `labels` in the order given.
    pub(crate) fn append_sample(&mut self, sample: &Sample<'_>, labels: &[(&str, String)]) {
        self.timestamp.append_value(sample.timestamp);
        self.date.append_value(date32_from_micros(sample.timestamp));
        self.name.append_value(sample.name);
        self.kind.append_value(sample.kind);
        self.service.append_value(sample.service);
        self.value.append_value(sample.value);
        for (k, v) in labels {
            self.labels.keys().append_value(k);
            self.labels.values().append_value(v);
        }
        self.labels
            .append(!labels.is_empty())
            .expect("keys and values have equal length");
        self.extra.append_option(sample.extra);
    }
}

/// One metric sample from typed values.
pub(crate) struct Sample<'a> {
    pub(crate) timestamp: i64,
    pub(crate) name: &'a str,
    pub(crate) kind: &'a str,
    pub(crate) service: &'a str,
    pub(crate) value: f64,
    pub(crate) extra: Option<&'a str>,
}

impl Columns for MetricColumns {
    fn len(&self) -> usize {
        self.timestamp.len()
    }

    fn finish(&mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.timestamp.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.service.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.labels.finish()),
            Arc::new(self.extra.finish()),
            Arc::new(self.date.finish()),
        ];
        RecordBatch::try_new(self.schema.clone(), columns).expect("metric columns match the schema")
    }
}

/// Validates metric samples and routes them to their service's builders.
pub(crate) struct MetricRows {
    schema: SchemaRef,
    groups: Groups<MetricColumns>,
    /// The record's members that are not known fields.
    extras: Vec<Member>,
    json: String,
    /// `decode.default_service`.
    default_service: Option<String>,
    /// `decode.coerce`: a `value` written as a string of a number is read as that number.
    coerce: bool,
}

impl MetricRows {
    pub(crate) fn new(opts: &crate::DecoderOptions) -> Self {
        Self {
            default_service: opts.default_service.clone(),
            coerce: opts.coerce,
            schema: metric_schema(),
            groups: Groups::new(),
            extras: Vec::new(),
            json: String::new(),
        }
    }
}

impl Rows for MetricRows {
    fn append(
        &mut self,
        tape: &[Node<'_>],
        idx: usize,
        raw: Raw<'_>,
        bounds: &TimeBounds,
    ) -> Result<(), Rejection> {
        let Node::Object { len, .. } = tape[idx] else {
            return Err(Rejection::new(
                ReasonCode::NotAnObject,
                format!(
                    "a metric record must be a JSON object, found {}",
                    type_name(&tape[idx])
                ),
            ));
        };
        let (mut ts, mut name, mut kind, mut service, mut value, mut labels) =
            (ABSENT, ABSENT, ABSENT, ABSENT, ABSENT, ABSENT);
        self.extras.clear();
        for (m, key) in Member::of_object(tape, idx, len) {
            let v = m.key + 1;
            match key {
                "timestamp" => ts = v,
                "name" => name = v,
                "type" => kind = v,
                "service" => service = v,
                "value" => value = v,
                "labels" => labels = v,
                _ => self.extras.push(m),
            }
        }

        let mut ts_name = "timestamp";
        if !self.extras.is_empty() && (ts == ABSENT || name == ABSENT || labels == ABSENT) {
            let mut slots = [
                (Slot::Timestamp, &mut ts),
                (Slot::Name, &mut name),
                (Slot::Labels, &mut labels),
            ];
            aliases::fill(tape, &mut self.extras, &mut slots, |slot, found| {
                if slot == Slot::Timestamp {
                    ts_name = found;
                }
            });
        }
        let micros = required_timestamp(tape, ts, ts_name, bounds)?;
        let name = required_str(tape, name, "name")?;
        let service = required_service(tape, service, self.default_service.as_deref())?;
        let kind = match optional_str(tape, kind, "type")? {
            None => None,
            Some(k) => Some(
                *METRIC_TYPES
                    .iter()
                    .find(|t| t.eq_ignore_ascii_case(k))
                    .ok_or_else(|| {
                        Rejection::new(
                            ReasonCode::InvalidValue,
                            format!("field `type` = {k:?} is not one of gauge, counter, histogram, summary"),
                        )
                    })?,
            ),
        };
        let value = match tape.get(value) {
            None | Some(Node::Static(StaticNode::Null)) => {
                return Err(Rejection::new(
                    ReasonCode::MissingField,
                    "required field `value` is missing",
                ));
            }
            Some(Node::String(s)) if self.coerce => {
                number_text(s).ok_or_else(|| unreadable("value", s, "a number"))?
            }
            Some(node) => as_f64(node).ok_or_else(|| wrong_type("value", "a number", node))?,
        };
        let labels_len = match tape.get(labels) {
            None | Some(Node::Static(StaticNode::Null)) => None,
            Some(Node::Object { len, .. }) => {
                let mut next = labels + 1;
                for _ in 0..*len {
                    let v = &tape[next + 1];
                    if matches!(v, Node::Object { .. } | Node::Array { .. }) {
                        let Node::String(k) = tape[next] else {
                            unreachable!()
                        };
                        return Err(wrong_type(
                            &format!("labels.{k}"),
                            "a string, number or boolean",
                            v,
                        ));
                    }
                    next += 2;
                }
                Some(*len)
            }
            Some(other) => return Err(wrong_type("labels", "an object", other)),
        };
        self.json.clear();
        if !self.extras.is_empty()
            && !raw.write_object(&mut self.json, tape, &self.extras, raw.end())
        {
            write_members(&mut self.json, tape, self.extras.iter().map(|m| m.key));
        }

        let schema = &self.schema;
        let c = self.groups.get(service, 0, |_| MetricColumns::new(schema));
        c.timestamp.append_value(micros);
        c.date.append_value(date32_from_micros(micros));
        c.name.append_value(name);
        c.kind.append_option(kind);
        c.service.append_value(service);
        c.value.append_value(value);
        if let Some(len) = labels_len {
            let mut next = labels + 1;
            for _ in 0..len {
                if let Node::String(k) = tape[next] {
                    c.labels.keys().append_value(k);
                }
                match tape[next + 1] {
                    Node::String(v) => c.labels.values().append_value(v),
                    Node::Static(StaticNode::Null) => c.labels.values().append_null(),
                    Node::Static(s) => {
                        // Numbers and booleans become their JSON text: `{"port": 8080}` → "8080".
                        let mut text = String::new();
                        write_static(&mut text, s);
                        c.labels.values().append_value(text);
                    }
                    _ => unreachable!("nested label values were rejected above"),
                }
                next += 2;
            }
            c.labels
                .append(true)
                .expect("keys and values have equal length");
        } else {
            c.labels
                .append(false)
                .expect("keys and values have equal length");
        }
        if self.json.is_empty() {
            c.extra.append_null();
        } else {
            c.extra.append_value(&self.json);
        }
        Ok(())
    }

    fn overflowed(&self) -> u64 {
        self.groups.overflowed()
    }

    fn len(&self) -> usize {
        self.groups.len()
    }

    fn finish(&mut self) -> Vec<RecordBatch> {
        self.groups.finish()
    }
}
