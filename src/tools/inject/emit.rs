//! Writing documents back as YAML that means the same to `kubectl`.
//!
//! serde_norway quotes a string only when YAML 1.2 would read it as something else,
//! but `kubectl` reads manifests with a YAML 1.1 parser, for which a plain `yes`,
//! `on`, `n` or `1_000` is a boolean or a number: `value: "on"` written back as
//! `value: on` would no longer be a string. So strings are written plain only when
//! no YAML version reads them as anything but a string, and quoted otherwise.
//!
//! Layout: block style, two-space indent, sequences at their key's indent (as
//! `kubectl get -o yaml` prints), multi-line strings as `|` literals.
//! [`document`] returns `None` for what this writer does not handle (tags,
//! complex keys); the caller then falls back to serde_norway's writer.

use serde_norway::{Mapping, Value};

/// The document as YAML text ending in a newline, or `None` if it holds a tag
/// or a key that is not a scalar.
pub(crate) fn document(doc: &Value) -> Option<String> {
    let mut out = String::new();
    match doc {
        Value::Mapping(m) if !m.is_empty() => mapping(&mut out, m, 0)?,
        Value::Sequence(s) if !s.is_empty() => sequence(&mut out, s, 0)?,
        scalar_value => {
            scalar(&mut out, scalar_value, 0)?;
            out.push('\n');
        }
    }
    Some(out)
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn mapping(out: &mut String, m: &Mapping, indent: usize) -> Option<()> {
    for (i, (k, v)) in m.iter().enumerate() {
        // The first entry of a mapping inside a sequence item follows the `- `.
        if i > 0 || !out.ends_with("- ") {
            pad(out, indent);
        }
        key(out, k)?;
        out.push(':');
        match v {
            Value::Mapping(inner) if !inner.is_empty() => {
                out.push('\n');
                mapping(out, inner, indent + 2)?;
            }
            Value::Sequence(items) if !items.is_empty() => {
                out.push('\n');
                sequence(out, items, indent)?;
            }
            _ => {
                out.push(' ');
                scalar(out, v, indent + 2)?;
                out.push('\n');
            }
        }
    }
    Some(())
}

fn sequence(out: &mut String, items: &[Value], indent: usize) -> Option<()> {
    for (i, item) in items.iter().enumerate() {
        // The first item of a sequence nested in a sequence follows the `- `.
        if i > 0 || !out.ends_with("- ") {
            pad(out, indent);
        }
        out.push('-');
        match item {
            Value::Mapping(m) if !m.is_empty() => {
                out.push(' ');
                mapping(out, m, indent + 2)?;
            }
            Value::Sequence(inner) if !inner.is_empty() => {
                out.push(' ');
                sequence(out, inner, indent + 2)?;
            }
            _ => {
                out.push(' ');
                scalar(out, item, indent + 2)?;
                out.push('\n');
            }
        }
    }
    Some(())
}

fn key(out: &mut String, k: &Value) -> Option<()> {
    match k {
        // A key must fit on its line: no block literal.
        Value::String(s) if s.contains('\n') => double_quoted(out, s),
        Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null => scalar(out, k, 0)?,
        _ => return None,
    }
    Some(())
}

/// A scalar (or an empty collection); `indent` is where a literal's lines go.
fn scalar(out: &mut String, v: &Value, indent: usize) -> Option<()> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => string(out, s, indent),
        Value::Mapping(m) if m.is_empty() => out.push_str("{}"),
        Value::Sequence(s) if s.is_empty() => out.push_str("[]"),
        _ => return None,
    }
    Some(())
}

fn string(out: &mut String, s: &str, indent: usize) {
    if is_plain_safe(s) {
        out.push_str(s);
    } else if s.chars().any(needs_escape) || s.starts_with([' ', '\n']) {
        double_quoted(out, s);
    } else if s.contains('\n') {
        literal(out, s, indent);
    } else {
        out.push('\'');
        out.push_str(&s.replace('\'', "''"));
        out.push('\'');
    }
}

/// Characters that only a double-quoted scalar can carry as they are: controls
/// (tab and newline aside) and what YAML 1.1 treats as line breaks or a BOM.
fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}')
}

fn double_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) => {
                let n = u32::from(c);
                if n <= 0xffff {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `|` block literal. The caller ruled out a leading space or newline, so the
/// indentation is detected from the first line; the chomping indicator keeps the
/// trailing newlines exactly.
fn literal(out: &mut String, s: &str, indent: usize) {
    let body = s.trim_end_matches('\n');
    let trailing = s.len() - body.len();
    out.push_str(match trailing {
        0 => "|-",
        1 => "|",
        _ => "|+",
    });
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            pad(out, indent);
            out.push_str(line);
        }
    }
    // The newline after the last line is written by the caller.
    for _ in 1..trailing {
        out.push('\n');
    }
}

/// True when `s` written without quotes reads back as this same string in
/// YAML 1.1 and 1.2 alike.
fn is_plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace) || s.ends_with(':') {
        return false;
    }
    if s.chars().any(|c| c.is_control() || needs_escape(c)) || s.contains(": ") || s.contains(" #")
    {
        return false;
    }
    // `-x` and `--flag` are fine; `- x` would be a sequence entry.
    let dash_ok = first == '-' && s.len() > 1 && !s[1..].starts_with(' ');
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) && !dash_ok {
        return false;
    }
    !reads_as_non_string(s)
}

/// Null, boolean and number spellings of YAML 1.1 (what kubectl's parser uses)
/// and 1.2, generously: a string that merely looks numeric is quoted too.
fn reads_as_non_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "~", "null", "Null", "NULL", "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
        "true", "True", "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
        "<<", "=",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    if matches!(unsigned.to_ascii_lowercase().as_str(), ".inf" | ".nan") {
        return true;
    }
    unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && unsigned
            .chars()
            .all(|c| c.is_ascii_hexdigit() || "xXoO_.:+-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `s` as a mapping value and as a sequence item, read back.
    fn round_trip(s: &str) -> Option<Value> {
        let mut m = Mapping::new();
        m.insert("k".into(), s.into());
        m.insert("l".into(), Value::Sequence(vec![s.into(), "after".into()]));
        let back: Value = serde_norway::from_str(&document(&Value::Mapping(m))?).ok()?;
        let (k, l) = (back.get("k")?, back.get("l")?.get(0)?);
        (k == l).then(|| k.clone())
    }

    #[test]
    fn yaml_1_1_booleans_and_numbers_should_be_quoted() {
        for s in [
            "yes", "on", "Off", "n", "1_000", "1:20", "012", "0x1F", ".inf", "~", "", "-1",
        ] {
            let text = document(&Value::String(s.into())).unwrap_or_default();
            assert!(text.starts_with(['\'', '"']), "{s:?} written as {text:?}");
        }
    }

    #[test]
    fn ordinary_strings_should_stay_plain() {
        for s in [
            "nginx:1.27",
            "--listen=127.0.0.1:9911",
            "http://127.0.0.1:9911",
            "10m",
            "32Mi",
            "a,b",
        ] {
            assert_eq!(document(&Value::String(s.into())), Some(format!("{s}\n")));
        }
    }

    #[test]
    fn every_kind_of_string_should_read_back_the_same() {
        for s in [
            "it's",
            "a: b",
            "x #y",
            "tab\there",
            "line\n",
            "two\nlines",
            "keep\n\n",
            "\n lead",
            " lead",
            "cr\r\n",
            "bell\u{7}",
            "-",
            "- x",
            "[a]",
            "{a}",
            "*ref",
            "@x",
            "ünïcode",
            "mid\n\n  indented\nend\n",
        ] {
            assert_eq!(round_trip(s), Some(Value::String(s.into())), "{s:?}");
        }
    }

    #[test]
    fn nested_collections_should_read_back_the_same() -> Result<(), serde_norway::Error> {
        let text = "a:\n- b: 1\n  c:\n  - - x\n    - z\n  - {}\n- []\n- script: |\n    echo hi\n    exit 0\nd: null\n";
        let doc: Value = serde_norway::from_str(text)?;
        assert_eq!(document(&doc).as_deref(), Some(text));
        Ok(())
    }
}
