//! One trace across services, read from the archive's `logs` table: `vigil trace`.
//!
//! The records with the trace id are found by the Parquet readers' pruning (row-group
//! statistics and the bloom filter every `trace_id` column chunk carries), grouped into spans
//! (`span_id`) and the spans into a tree by `parent_span_id`. A span whose parent is not in
//! the archive (lost, late, or never logged) becomes a root of its own, marked as such, so
//! nothing read is left out.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimestampMicrosecondType};
use datafusion::prelude::{col, lit};
use serde::Serialize;
use vigil_core::time::format_rfc3339;

use crate::{Engine, QueryError};

/// One log record of a span.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// RFC 3339.
    pub timestamp: String,
    /// Log level.
    pub level: Option<String>,
    /// Log message.
    pub message: Option<String>,
    #[serde(skip)]
    micros: i64,
}

/// A span and the spans it called.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Span {
    /// The service that logged it.
    pub service: String,
    /// Its id (null for records without one: each is a span of its own).
    pub span_id: Option<String>,
    /// Its parent's id as logged, if any.
    pub parent_span_id: Option<String>,
    /// The parent is named but not in the archive.
    pub parent_missing: bool,
    /// Its parent ids lead back to it (its own parent, or a cycle): shown as a root.
    pub parent_loops: bool,
    /// Its records, in time order.
    pub entries: Vec<Entry>,
    /// Spans whose parent it is, by start time.
    pub children: Vec<Span>,
}

impl Span {
    fn start(&self) -> i64 {
        self.entries.first().map_or(i64::MAX, |e| e.micros)
    }
}

/// A whole trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trace {
    /// The trace id.
    pub trace_id: String,
    /// Records read.
    pub records: usize,
    /// Root spans (the entry point, and any span whose parent is missing), by start time.
    pub roots: Vec<Span>,
}

/// Reads trace `trace_id` from the archive. An unknown id gives a trace with no records.
pub async fn read_trace(engine: &Engine, trace_id: &str) -> Result<Trace, QueryError> {
    let df = engine
        .context()
        .table("logs")
        .await?
        .filter(col("trace_id").eq(lit(trace_id)))?
        .select_columns(&[
            "timestamp",
            "service",
            "span_id",
            "parent_span_id",
            "level",
            "message",
        ])?;
    let batches = df.collect().await?;
    assemble(trace_id, &batches).map_err(|e| QueryError::DataFusion(e.into()))
}

/// Spans from the rows of `read_trace`'s query, as a tree.
fn assemble(trace_id: &str, batches: &[RecordBatch]) -> Result<Trace, arrow::error::ArrowError> {
    // span id (or a row's own key when it has none) → span without children.
    let mut spans: BTreeMap<String, Span> = BTreeMap::new();
    let mut records = 0;
    for b in batches {
        let text = |i: usize| cast(b.column(i), &DataType::Utf8);
        let ts = b.column(0).as_primitive::<TimestampMicrosecondType>();
        let (service, span, parent, level, message) =
            (text(1)?, text(2)?, text(3)?, text(4)?, text(5)?);
        let get = |a: &dyn Array, row: usize| {
            let s = a.as_string::<i32>();
            (!s.is_null(row)).then(|| s.value(row).to_string())
        };
        for row in 0..b.num_rows() {
            records += 1;
            let span_id = get(&span, row);
            let key = span_id
                .clone()
                .unwrap_or_else(|| format!("\u{0}row-{records}"));
            let micros = ts.value(row);
            let s = spans.entry(key).or_insert_with(|| Span {
                service: get(&service, row).unwrap_or_default(),
                span_id,
                parent_span_id: get(&parent, row),
                parent_missing: false,
                parent_loops: false,
                entries: Vec::new(),
                children: Vec::new(),
            });
            s.entries.push(Entry {
                timestamp: format_rfc3339(micros),
                level: get(&level, row),
                message: get(&message, row),
                micros,
            });
        }
    }
    for s in spans.values_mut() {
        s.entries.sort_by_key(|e| e.micros);
    }
    // Parent → children, then build from the roots down.
    let ids: Vec<String> = spans.keys().cloned().collect();
    let mut children: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut roots = Vec::new();
    for id in &ids {
        let s = &spans[id];
        match &s.parent_span_id {
            Some(p) if p != id && spans.contains_key(p) => {
                children.entry(p.clone()).or_default().push(id.clone());
            }
            _ => roots.push(id.clone()),
        }
    }
    fn build(
        id: &str,
        spans: &mut BTreeMap<String, Span>,
        children: &BTreeMap<String, Vec<String>>,
        depth: usize,
    ) -> Option<Span> {
        let mut s = spans.remove(id)?;
        // A cycle in the parent ids cannot recurse forever: a span is taken once.
        if depth < 256 {
            for c in children.get(id).into_iter().flatten() {
                if let Some(child) = build(c, spans, children, depth + 1) {
                    s.children.push(child);
                }
            }
        }
        s.children.sort_by_key(Span::start);
        Some(s)
    }
    let mut tree = Vec::new();
    for id in roots {
        if let Some(mut s) = build(&id, &mut spans, &children, 0) {
            // A root's parent is either its own id or not among the trace's spans.
            s.parent_loops = s.parent_span_id.as_ref() == Some(&id);
            s.parent_missing = s.parent_span_id.is_some() && !s.parent_loops;
            tree.push(s);
        }
    }
    // Spans left over sit on a cycle of parent ids: show them as roots rather than lose them.
    let rest: Vec<String> = spans.keys().cloned().collect();
    for id in rest {
        if let Some(mut s) = build(&id, &mut spans, &children, 0) {
            s.parent_loops = true;
            tree.push(s);
        }
    }
    tree.sort_by_key(Span::start);
    Ok(Trace {
        trace_id: trace_id.to_string(),
        records,
        roots: tree,
    })
}

impl Trace {
    /// The tree as text: one line per record, indented under its parent span, with the
    /// time since the trace's first record.
    pub fn render(&self) -> String {
        let mut out = String::new();
        fn walk<'a>(s: &'a Span, f: &mut dyn FnMut(&'a Span)) {
            f(s);
            for c in &s.children {
                walk(c, f);
            }
        }
        let mut services: Vec<&str> = Vec::new();
        let mut spans = 0;
        let (mut t0, mut end) = (i64::MAX, i64::MIN);
        for r in &self.roots {
            walk(r, &mut |s| {
                spans += 1;
                if !services.contains(&s.service.as_str()) {
                    services.push(&s.service);
                }
                for e in &s.entries {
                    (t0, end) = (t0.min(e.micros), end.max(e.micros));
                }
            });
        }
        if spans == 0 {
            let _ = writeln!(out, "trace {}: no records in the archive", self.trace_id);
            return out;
        }
        let _ = writeln!(
            out,
            "trace {}: {} records, {} spans, {} services, from {} over {:.1} ms",
            self.trace_id,
            self.records,
            spans,
            services.len(),
            format_rfc3339(t0),
            (end - t0) as f64 / 1000.0
        );
        for (i, r) in self.roots.iter().enumerate() {
            line(&mut out, r, t0, "", i + 1 == self.roots.len());
        }
        // Messages are the input's: nothing in them may drive the terminal.
        crate::format::escape_controls(&out).into_owned()
    }
}

fn line(out: &mut String, s: &Span, t0: i64, prefix: &str, last: bool) {
    let branch = if last { "└─ " } else { "├─ " };
    let id = s
        .span_id
        .as_deref()
        .map_or(String::new(), |id| format!(" [{id}]"));
    let parent = s.parent_span_id.as_deref().unwrap_or_default();
    let missing = if s.parent_missing {
        format!(" (parent {parent} not in the archive)")
    } else if s.parent_loops {
        format!(" (parent {parent}: its parent ids loop back to it)")
    } else {
        String::new()
    };
    let under = format!("{prefix}{}", if last { "   " } else { "│  " });
    for (i, e) in s.entries.iter().enumerate() {
        let head = if i == 0 {
            format!("{prefix}{branch}{}{id}{missing}", s.service)
        } else {
            format!("{under}·")
        };
        let _ = writeln!(
            out,
            "{head}  +{:.1} ms  {}  {}",
            (e.micros - t0) as f64 / 1000.0,
            e.level.as_deref().unwrap_or("-"),
            e.message.as_deref().unwrap_or("")
        );
    }
    for (i, c) in s.children.iter().enumerate() {
        line(out, c, t0, &under, i + 1 == s.children.len());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema, TimeUnit};

    use super::*;

    /// One row of `read_trace`'s query: second, service, span id, parent id.
    type Row<'a> = (i64, &'a str, &'a str, Option<&'a str>);

    fn rows(spans: &[Row<'_>]) -> RecordBatch {
        let text = |f: &dyn Fn(&Row<'_>) -> Option<String>| {
            Arc::new(spans.iter().map(f).collect::<StringArray>()) as Arc<dyn Array>
        };
        let schema = Schema::new(vec![
            Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("service", DataType::Utf8, true),
            Field::new("span_id", DataType::Utf8, true),
            Field::new("parent_span_id", DataType::Utf8, true),
            Field::new("level", DataType::Utf8, true),
            Field::new("message", DataType::Utf8, true),
        ]);
        let ts: TimestampMicrosecondArray = spans.iter().map(|s| Some(s.0 * 1_000_000)).collect();
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(ts),
                text(&|s| Some(s.1.to_string())),
                text(&|s| Some(s.2.to_string())),
                text(&|s| s.3.map(str::to_string)),
                text(&|_| None),
                text(&|_| Some("m".to_string())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn a_span_whose_parents_loop_is_a_root_marked_so_not_a_missing_parent() {
        let trace = assemble(
            "t",
            &[rows(&[
                (0, "a", "s1", Some("s1")),
                (1, "b", "s2", Some("s3")),
                (2, "c", "s3", Some("s2")),
                (3, "d", "s4", Some("s2")),
                (4, "e", "s5", Some("gone")),
            ])],
        )
        .unwrap();
        let roots: Vec<(&str, bool, bool)> = trace
            .roots
            .iter()
            .map(|s| (s.service.as_str(), s.parent_missing, s.parent_loops))
            .collect();
        assert_eq!(
            roots,
            [("a", false, true), ("b", false, true), ("e", true, false)]
        );
        let text = trace.render();
        assert!(
            text.contains("a [s1] (parent s1: its parent ids loop back to it)"),
            "{text}"
        );
        assert!(
            text.contains("b [s2] (parent s3: its parent ids loop back to it)"),
            "{text}"
        );
        assert!(
            text.contains("e [s5] (parent gone not in the archive)"),
            "{text}"
        );
        // Every span is shown once.
        assert_eq!(text.matches(" [s").count(), 5, "{text}");
    }
}
