//! Rendering query results for people and programs.
//!
//! Text from the archive is the input's, and input can be hostile: control characters (an
//! ESC starting a terminal escape sequence, a carriage return hiding what came before) are
//! written as `\u001b`-style escapes in tables always, and in CSV and JSON when they go to a
//! terminal. Piped CSV and JSON keep the data as it is.

use std::borrow::Cow;
use std::io::Write;
use std::str::FromStr;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON object per row (NDJSON).
    Json,
}

impl FromStr for Format {
    type Err = vigil_core::InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            other => Err(vigil_core::InvalidInput(format!(
                "unknown format `{other}`, expected table, csv or json"
            ))),
        }
    }
}

/// `s` with every control character but newlines written as a `\u001b`-style escape: text
/// that can be shown on a terminal without driving it.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() && c != '\n') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if c.is_control() && c != '\n' {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Writes result batches as they come, in one format, to `out`. `terminal`: the output is a
/// terminal (control characters are escaped in every format).
pub struct ResultWriter<W: Write> {
    format: Format,
    terminal: bool,
    out: W,
    /// Tables are laid out once all rows are in.
    table: Vec<RecordBatch>,
    csv_header: bool,
}

impl<W: Write> ResultWriter<W> {
    /// A writer of `format` to `out`.
    pub fn new(format: Format, out: W, terminal: bool) -> Self {
        Self {
            format,
            terminal,
            out,
            table: Vec::new(),
            csv_header: true,
        }
    }

    /// Writes (or, for a table, keeps) one batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        if self.format == Format::Table {
            self.table.push(batch.clone());
            return Ok(());
        }
        let mut text = render_one(batch, self.format, self.csv_header)?;
        self.csv_header = false;
        if self.terminal {
            text = escape_controls(&text).into_owned();
        }
        self.out.write_all(text.as_bytes())?;
        Ok(())
    }

    /// Finishes the output: a table is laid out and written now. A result without a batch
    /// still shows its columns (`schema`): a table's header, CSV's header line.
    pub fn finish(mut self, schema: &SchemaRef) -> Result<(), ArrowError> {
        let empty = || RecordBatch::new_empty(schema.clone());
        match self.format {
            Format::Table if self.table.is_empty() => self.table.push(empty()),
            Format::Csv if self.csv_header => self.write(&empty())?,
            _ => {}
        }
        if self.format == Format::Table {
            let text = render(&self.table, Format::Table)?;
            writeln!(self.out, "{text}")?;
        }
        self.out.flush()?;
        Ok(())
    }
}

fn render_one(batch: &RecordBatch, format: Format, header: bool) -> Result<String, ArrowError> {
    match format {
        Format::Csv => {
            let mut out = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(header)
                    .build(&mut out);
                w.write(&flatten_for_csv(batch)?)?;
            }
            Ok(String::from_utf8(out).expect("CSV writer emits UTF-8"))
        }
        _ => render(std::slice::from_ref(batch), format),
    }
}

/// Renders batches in `format`. Tables have their control characters escaped.
pub fn render(batches: &[RecordBatch], format: Format) -> Result<String, ArrowError> {
    match format {
        Format::Table => {
            let text = arrow::util::pretty::pretty_format_batches(batches)?.to_string();
            Ok(escape_controls(&text).into_owned())
        }
        Format::Csv => {
            let mut out = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                for b in batches {
                    w.write(&flatten_for_csv(b)?)?;
                }
            }
            Ok(String::from_utf8(out).expect("CSV writer emits UTF-8"))
        }
        Format::Json => {
            let mut out = Vec::new();
            {
                let mut w = arrow::json::LineDelimitedWriter::new(&mut out);
                for b in batches {
                    w.write(b)?;
                }
                w.finish()?;
            }
            Ok(String::from_utf8(out).expect("JSON writer emits UTF-8"))
        }
    }
}

/// CSV has no nested values: maps, lists, structs and binary columns are written as their
/// display text (`{key: value}`, `[1, 2]`, hex).
fn flatten_for_csv(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, StringBuilder};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::util::display::{ArrayFormatter, FormatOptions};

    let nested = |t: &DataType| {
        matches!(
            t,
            DataType::Map(..)
                | DataType::List(_)
                | DataType::LargeList(_)
                | DataType::Struct(_)
                | DataType::Binary
                | DataType::LargeBinary
        )
    };
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| nested(f.data_type()))
    {
        return Ok(batch.clone());
    }
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        if nested(f.data_type()) {
            let fmt = ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default())?;
            let mut b = StringBuilder::new();
            for i in 0..c.len() {
                if c.is_null(i) {
                    b.append_null();
                } else {
                    b.append_value(fmt.value(i).to_string());
                }
            }
            fields.push(Field::new(f.name(), DataType::Utf8, true));
            columns.push(Arc::new(b.finish()));
        } else {
            fields.push(f.as_ref().clone());
            columns.push(c.clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}
