//! `[schema]` and `[decode]`: how records are read.

use vigil_core::schema::{FieldType, LogSchema, PromotedField};
use vigil_decode::DecoderOptions;

use toml::Spanned;

use super::Validator;
use crate::raw::{RawDecode, RawField, RawSchema};

impl Validator<'_> {
    pub(super) fn log_schema(&mut self, raw: RawSchema) -> Option<LogSchema> {
        let mut promoted = Vec::new();
        let mut ok = true;
        for (key, field) in &raw.logs.fields {
            // Problems with a key are reported at its value, on the same line.
            let (name, top_level) = match key.strip_prefix("additional_data.") {
                Some(name) => (name, false),
                None => (key.as_str(), true),
            };
            if top_level && PromotedField::is_record_field(name) {
                ok = false;
                self.problem(
                    Some(field.span()),
                    format!(
                        "`{key}` is a field every log record has; promote members of additional_data (`additional_data.status_code`) or other members of the record"
                    ),
                );
                continue;
            }
            if name.is_empty() || name.contains('.') {
                ok = false;
                self.problem(
                    Some(field.span()),
                    format!(
                        "`{key}`: only direct children of additional_data (`additional_data.status_code`) or members of the record itself (`latency_ms`) can be promoted"
                    ),
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
                    top_level,
                    column: column.unwrap_or_else(|| name.to_string()),
                    field_type,
                }),
                Err(e) => {
                    ok = false;
                    self.problem(Some(field.span()), e.to_string());
                }
            }
        }
        if !ok {
            return None;
        }
        LogSchema::new(promoted)
            .map_err(|e| self.problem(None, e.to_string()))
            .ok()
    }

    pub(super) fn decode(&mut self, raw: RawDecode) -> Option<DecoderOptions> {
        let d = DecoderOptions::default();
        let max_record_bytes = self.size(&raw.max_record_bytes, d.max_record_bytes);
        let dead_letter_raw_limit = self.size(&raw.dead_letter_raw_limit, d.dead_letter_raw_limit);
        let batch_size = raw.batch_size.unwrap_or(d.batch_size);
        if batch_size == 0 {
            self.problem(None, "`decode.batch_size` must be at least 1".into());
            return None;
        }
        let max_future_skew = self.optional_duration(&raw.max_future_skew, d.max_future_skew);
        let max_past = self.optional_duration(&raw.max_past, d.max_past);
        let default_service = match raw.default_service {
            Some(s) if s.get_ref().trim().is_empty() => {
                self.problem(
                    Some(s.span()),
                    "`decode.default_service` must name a service".into(),
                );
                None
            }
            s => Some(s.map(Spanned::into_inner)),
        };
        Some(DecoderOptions {
            max_future_skew: max_future_skew?,
            max_past: max_past?,
            batch_size,
            batch_bytes: d.batch_bytes,
            max_record_bytes: max_record_bytes?,
            max_depth: raw.max_depth.unwrap_or(d.max_depth),
            dead_letter_raw_limit: dead_letter_raw_limit?,
            default_service: default_service?,
            coerce: raw.coerce.unwrap_or(d.coerce),
        })
    }
}
