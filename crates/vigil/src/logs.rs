//! vigil's own log lines as JSON (`--log-format json`), in the seed's log format: `timestamp`,
//! `level`, `service` (= `vigil`), `message`, `trace_id` where an event has one, and every other
//! field under `additional_data`. A log collector that reads the services' logs reads vigil's
//! the same way (vigil can archive its own).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Set once logs are JSON: then what vigil says on stderr is logged too (see [`say`]).
static JSON: AtomicBool = AtomicBool::new(false);

/// Logs go out as JSON lines from now on.
pub fn set_json() {
    JSON.store(true, Ordering::Relaxed);
}

/// Tells the operator something on stderr: a plain line, or an INFO log line when logs are
/// JSON, so a log collector never meets a line that is not JSON.
pub fn say(message: fmt::Arguments<'_>) {
    if JSON.load(Ordering::Relaxed) {
        tracing::info!(target: "vigil", "{message}");
    } else {
        eprintln!("{message}");
    }
}

/// Formats each event as one JSON object per line.
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("service".into(), "vigil".into());
        if let Some(t) = fields.trace_id {
            line.insert("trace_id".into(), t);
        }
        line.insert("message".into(), fields.message.unwrap_or_default().into());
        let mut data = fields.other;
        data.insert("target".into(), meta.target().into());
        line.insert("additional_data".into(), Value::Object(data));
        let text = serde_json::to_string(&Value::Object(line)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// An event's fields, sorted into the line's places.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    trace_id: Option<Value>,
    other: Map<String, Value>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        match field.name() {
            "message" => {
                self.message = Some(match value {
                    Value::String(s) => s,
                    v => v.to_string(),
                })
            }
            "trace_id" => self.trace_id = Some(value),
            name => {
                self.other.insert(name.to_string(), value);
            }
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }
}
