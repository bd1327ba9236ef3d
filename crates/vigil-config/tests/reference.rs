//! `docs/pipeline.md`, the pipeline file's reference, is generated from the `///` docs of the
//! structs in `src/raw.rs`, so it cannot drift from what the loader reads: this test fails when
//! the committed file is stale. `VIGIL_BLESS=1 cargo test --workspace the_pipeline_reference`
//! writes it again.

use std::fmt::Write;

/// One struct or enum of raw.rs: its doc and its fields (name, type, doc).
struct Item {
    name: String,
    doc: String,
    fields: Vec<(String, String, String)>,
}

fn items(source: &str) -> Vec<Item> {
    let mut out = Vec::new();
    let mut doc = Vec::new();
    let mut current: Option<Item> = None;
    let mut rename: Option<String> = None;
    for line in source.lines() {
        let t = line.trim();
        if let Some(d) = t.strip_prefix("///") {
            doc.push(d.trim().to_string());
        } else if let Some(r) = t
            .strip_prefix("#[serde(rename = \"")
            .and_then(|r| r.strip_suffix("\")]"))
        {
            rename = Some(r.to_string());
        } else if t.starts_with("#[") || t.starts_with("//") {
        } else if let Some(rest) = t
            .strip_prefix("pub struct ")
            .or_else(|| t.strip_prefix("pub enum "))
        {
            out.extend(current.take());
            current = Some(Item {
                name: rest.trim_end_matches(" {").to_string(),
                doc: doc.join(" "),
                fields: Vec::new(),
            });
            doc.clear();
        } else if let Some(rest) = t.strip_prefix("pub ").filter(|r| r.contains(": "))
            && let Some(item) = current.as_mut()
        {
            let (name, ty) = rest.split_once(": ").unwrap();
            let name = rename.take().unwrap_or_else(|| name.to_string());
            item.fields
                .push((name, ty.trim_end_matches(',').to_string(), doc.join(" ")));
            doc.clear();
        } else if t == "}" && line.starts_with('}') {
            out.extend(current.take());
            doc.clear();
            rename = None;
        } else {
            // A line the reference does not show (an enum variant's field, say) takes its
            // doc and rename with it.
            doc.clear();
            rename = None;
        }
    }
    out.extend(current);
    out
}

/// A Rust field type as a pipeline file writes it.
fn toml_type(ty: &str) -> String {
    let mut t = ty.to_string();
    for wrapper in ["Option<", "Spanned<"] {
        while let Some(inner) = t.strip_prefix(wrapper) {
            t = inner.strip_suffix('>').unwrap_or(inner).to_string();
        }
    }
    let t = t.replace("Spanned<", "").replace('>', "");
    match t.as_str() {
        "String" => "string".into(),
        "bool" => "boolean".into(),
        "f64" => "number".into(),
        "u64" | "usize" | "i64" | "u32" => "integer".into(),
        "RawSize" => "size (`\"128MiB\"` or bytes)".into(),
        s if s.starts_with("Vec<String") => "array of strings".into(),
        s if s.starts_with("Vec<Raw") => format!("array of tables (`{}`)", &s[4..]),
        s if s.starts_with("BTreeMap<String, String") => "table of strings".into(),
        s if s.starts_with("BTreeMap<String, ") => format!("table of {}", toml_type(&s[17..])),
        s if s.starts_with("Raw") => format!("table (`{s}`)"),
        s => format!("`{s}`"),
    }
}

fn reference(source: &str) -> String {
    let mut md = String::from(
        "# Pipeline file reference\n\n\
         Generated from the docs of `crates/vigil-config/src/raw.rs` by \
         `crates/vigil-config/tests/reference.rs`; do not edit by hand (`VIGIL_BLESS=1 cargo \
         test --workspace the_pipeline_reference` writes it again). Any value can come from the \
         environment as `${VAR}` or `${VAR:-default}`; `vigil validate FILE` reports every \
         problem with its line and column.\n",
    );
    for item in items(source) {
        if item.doc.is_empty() {
            continue;
        }
        // "`[archive.flush]`: a table is ..." → heading "`[archive.flush]`", then the rest.
        let (title, body) = match item.doc.starts_with('`') {
            true => item
                .doc
                .split_once(": ")
                .map_or((item.doc.clone(), String::new()), |(t, b)| {
                    (t.to_string(), b.to_string())
                }),
            false => (format!("`{}`", item.name), item.doc.clone()),
        };
        let _ = write!(md, "\n## {title}\n");
        if !body.is_empty() {
            let _ = write!(md, "\n{}{}\n", body[..1].to_uppercase(), &body[1..]);
        }
        let fields: Vec<_> = item
            .fields
            .iter()
            .filter(|(_, _, d)| !d.is_empty())
            .collect();
        if fields.is_empty() {
            continue;
        }
        md.push_str("\n| key | type | meaning |\n| --- | --- | --- |\n");
        for (name, ty, doc) in fields {
            let _ = writeln!(
                md,
                "| `{name}` | {} | {} |",
                toml_type(ty),
                doc.replace('|', "\\|")
            );
        }
    }
    md
}

#[test]
fn the_pipeline_reference_is_generated_from_the_config_structs() {
    let root = vigil_core::manifest_dir!();
    let source = std::fs::read_to_string(root.join("src/raw.rs")).unwrap();
    let want = reference(&source);
    let path = root.join("../../docs/pipeline.md");
    if std::env::var_os("VIGIL_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/pipeline.md is stale: run `VIGIL_BLESS=1 cargo test --workspace the_pipeline_reference` and commit it"
    );
    // Every section the loader reads has its heading.
    for section in [
        "[pipeline]",
        "[[sources]]",
        "[archive]",
        "[retention]",
        "[decode]",
        "[[rules]]",
        "[detect]",
    ] {
        assert!(
            want.contains(&format!("## `{section}")),
            "{section} missing"
        );
    }
}
