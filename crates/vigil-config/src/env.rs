//! `${VAR}`, `${VAR:-default}` and `$$` substitution in pipeline files.
//!
//! Substitution runs on the file's text before TOML parsing, line by line, so every line keeps
//! its number and error locations still point at the right line. Comments are left alone. A
//! `${VAR}` with no value and no default is an error naming the variable and the line.

/// A variable that is referenced without a default and is not set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingVar {
    /// 1-based line of the reference.
    pub line: usize,
    /// 1-based column of the `$`.
    pub column: usize,
    /// Variable name.
    pub name: String,
}

/// Substitutes variables in `text` using `lookup`. Returns the new text and every variable
/// that was required but unset (those are replaced by nothing).
pub fn substitute(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> (String, Vec<MissingVar>) {
    let mut out = String::with_capacity(text.len());
    let mut missing = Vec::new();
    for (line_no, full) in text.split_inclusive('\n').enumerate() {
        let (line, comment) = full.split_at(comment_start(full));
        let mut rest = line;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(body_end) = after.strip_prefix('{').and_then(|b| b.find('}')) {
                let body = &after[1..1 + body_end];
                let (name, default) = match body.split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (body, None),
                };
                // An empty value counts as unset when a default is given, as in POSIX shells.
                match (
                    lookup(name).filter(|v| !v.is_empty() || default.is_none()),
                    default,
                ) {
                    (Some(v), _) => out.push_str(&v),
                    (None, Some(d)) => out.push_str(d),
                    (None, None) => missing.push(MissingVar {
                        line: line_no + 1,
                        column: line.len() - rest.len() + i + 1,
                        name: name.to_string(),
                    }),
                }
                rest = &after[2 + body_end..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
        out.push_str(comment);
    }
    (out, missing)
}

/// Byte offset where a TOML comment starts on `line` (its length if none): the first `#`
/// outside a basic (`"`) or literal (`'`) string.
fn comment_start(line: &str) -> usize {
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    for (i, b) in line.bytes().enumerate() {
        match (quote, b) {
            (Some(b'"'), b'\\') if !escaped => {
                escaped = true;
                continue;
            }
            (Some(q), _) if b == q && !escaped => quote = None,
            (None, b'"' | b'\'') => quote = Some(b),
            (None, b'#') => return i,
            _ => {}
        }
        escaped = false;
    }
    line.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("value".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_values_and_defaults() {
        let (out, missing) = substitute(
            "a = \"${SET}\"\nb = \"${UNSET:-d}\"\nc = \"${EMPTY:-e}\"\n",
            env,
        );
        assert_eq!(out, "a = \"value\"\nb = \"d\"\nc = \"e\"\n");
        assert!(missing.is_empty());
    }

    #[test]
    fn escapes_and_plain_dollars_pass_through() {
        let (out, _) = substitute("price = \"$$5 and $HOME\"", env);
        assert_eq!(out, "price = \"$5 and $HOME\"");
    }

    #[test]
    fn comments_are_not_substituted() {
        let (out, missing) = substitute("a = \"#${SET}\" # uses ${NOPE}\n", env);
        assert_eq!(out, "a = \"#value\" # uses ${NOPE}\n");
        assert!(missing.is_empty());
    }

    #[test]
    fn reports_missing_with_location() {
        let (_, missing) = substitute("x = 1\n  url = \"${NOPE}\"\n", env);
        assert_eq!(
            missing,
            vec![MissingVar {
                line: 2,
                column: 10,
                name: "NOPE".into()
            }]
        );
    }
}
