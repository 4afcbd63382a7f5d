//! A spec written as TOML a person edits: tables in the order a reader wants
//! them, steps as `[[steps]]`, gates and policies inline, and a `#` comment
//! above each choice that comes with a reason.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value};

/// Top-level keys in reading order; any other key follows, by name.
const ORDER: &[&str] = &[
    "name",
    "description",
    "concurrency",
    "providers",
    "presets",
    "defaults",
    "overrides",
    "matrix",
    "steps",
    "budget",
    "retry",
    "output",
];

/// Keys of a step (or any `[[...]]` item) in reading order: what it is, what it
/// reads, what it says; gates and their policy last. Others sit before those two.
const ITEM_ORDER: &[&str] = &[
    "name",
    "kind",
    "task",
    "inputs",
    "providers",
    "preset",
    "prompt",
    "negative_prompt",
    "gates",
    "on_gate_fail",
];

/// Write `spec` (a spec as JSON) as TOML. `why` maps field paths (`matrix.locale`,
/// `steps[1].prompt`, `providers.writer`, `budget.max_cost_usd`) to the reason for
/// that choice, written as a comment above it; `header` is written first, as
/// comments.
///
/// ```
/// use std::collections::BTreeMap;
/// let spec = serde_json::json!({"name": "demo", "matrix": {"locale": ["en", "fr"]}});
/// let why = BTreeMap::from([("matrix.locale".to_string(), "the brief names two markets".to_string())]);
/// let toml = creative_agent::toml_out::to_commented_toml(&spec, &why, "");
/// assert_eq!(toml, "name = \"demo\"\n\n[matrix]\n# the brief names two markets\nlocale = [\"en\", \"fr\"]\n");
/// ```
pub fn to_commented_toml(spec: &Value, why: &BTreeMap<String, String>, header: &str) -> String {
    let mut out = String::new();
    for line in header.lines() {
        let _ = writeln!(out, "# {line}").map(|_| ());
    }
    if !header.is_empty() {
        out.push('\n');
    }
    let Some(obj) = spec.as_object() else {
        return out;
    };
    let mut keys: Vec<&String> = obj.keys().collect();
    keys.sort_by_key(|k| (ORDER.iter().position(|o| o == k).unwrap_or(ORDER.len()), k.as_str()));
    let w = Writer { why };
    // Plain values first: after a table header they would belong to the table.
    let plain: Vec<&String> = keys.iter().copied().filter(|k| is_plain(&obj[*k])).collect();
    for k in &plain {
        w.pair(&mut out, k, &obj[*k], k);
    }
    for k in keys.iter().copied().filter(|k| !is_plain(&obj[*k])) {
        match &obj[k] {
            Value::Object(m) => w.table(&mut out, &key(k), m, k),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Value::Object(m) = item {
                        w.array_item(&mut out, &key(k), m, &format!("{k}[{i}]"));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// A value written on one line (`key = value`), not as a table of its own.
fn is_plain(v: &Value) -> bool {
    match v {
        Value::Object(_) => false,
        Value::Array(a) => !(a.iter().any(Value::is_object)),
        _ => true,
    }
}

struct Writer<'a> {
    why: &'a BTreeMap<String, String>,
}

impl Writer<'_> {
    fn comment(&self, out: &mut String, path: &str) {
        if let Some(reason) = self.why.get(path) {
            for line in reason.lines() {
                out.push_str("# ");
                out.push_str(line.trim_end());
                out.push('\n');
            }
        }
    }

    fn pair(&self, out: &mut String, k: &str, v: &Value, path: &str) {
        if v.is_null() {
            return;
        }
        self.comment(out, path);
        let _ = writeln!(out, "{} = {}", key(k), inline(v)).map(|_| ());
    }

    /// `[header]`, its plain values, then its sub-tables.
    fn table(&self, out: &mut String, header: &str, m: &Map<String, Value>, path: &str) {
        let plain: Vec<(&String, &Value)> = m.iter().filter(|(_, v)| is_plain(v)).collect();
        let nested: Vec<(&String, &Value)> = m.iter().filter(|(_, v)| !is_plain(v)).collect();
        // A table with only sub-tables needs no header of its own.
        if !plain.is_empty() || nested.is_empty() || self.why.contains_key(path) {
            out.push('\n');
            self.comment(out, path);
            let _ = writeln!(out, "[{header}]").map(|_| ());
            for (k, v) in plain {
                self.pair(out, k, v, &format!("{path}.{k}"));
            }
        }
        for (k, v) in nested {
            let sub = format!("{header}.{}", key(k));
            let p = format!("{path}.{k}");
            match v {
                Value::Object(o) => self.table(out, &sub, o, &p),
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Value::Object(o) = item {
                            self.array_item(out, &sub, o, &format!("{p}[{i}]"));
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// `[[header]]` with every value on its own line, nested ones inline.
    fn array_item(&self, out: &mut String, header: &str, m: &Map<String, Value>, path: &str) {
        out.push('\n');
        self.comment(out, path);
        let _ = writeln!(out, "[[{header}]]").map(|_| ());
        let mut keys: Vec<&String> = m.keys().collect();
        keys.sort_by_key(|k| {
            (
                ITEM_ORDER.iter().position(|o| o == k).unwrap_or(ITEM_ORDER.len() - 2),
                k.as_str(),
            )
        });
        for k in keys {
            self.pair(out, k, &m[k], &format!("{path}.{k}"));
        }
    }
}

/// A key, bare when TOML allows it, else quoted.
fn key(k: &str) -> String {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        k.to_string()
    } else {
        Value::String(k.to_string()).to_string()
    }
}

/// A value on one line: JSON's string escapes are TOML's, arrays are the
/// same, objects become inline tables; nulls are dropped from tables.
fn inline(v: &Value) -> String {
    match v {
        Value::Null => "\"\"".into(),
        Value::Bool(_) | Value::Number(_) | Value::String(_) => v.to_string(),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().filter(|x| !x.is_null()).map(inline).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(m) => {
            let items: Vec<String> = m
                .iter()
                .filter(|(_, x)| !x.is_null())
                .map(|(k, x)| format!("{} = {}", key(k), inline(x)))
                .collect();
            if items.is_empty() {
                "{}".into()
            } else {
                format!("{{ {} }}", items.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_become_arrays_of_tables_with_gates_inline_and_comments_where_given() {
        let spec = serde_json::json!({
            "steps": [{"name": "hero", "kind": "generate", "gates": [{"kind": "text", "max_chars": 90}]}],
            "name": "x",
            "providers": {"art": {"kind": "procedural"}},
        });
        let why = BTreeMap::from([("steps[0].gates".to_string(), "keep it short".to_string())]);
        let t = to_commented_toml(&spec, &why, "written from brief.md");
        assert_eq!(
            t,
            "# written from brief.md\n\nname = \"x\"\n\n[providers.art]\nkind = \"procedural\"\n\n[[steps]]\nname = \"hero\"\nkind = \"generate\"\n# keep it short\ngates = [{ kind = \"text\", max_chars = 90 }]\n"
        );
    }

    #[test]
    fn keys_that_are_not_bare_are_quoted_and_strings_escaped() {
        let spec = serde_json::json!({"name": "a \"b\"\nc", "presets": {"brand kit": {"seed": 1}}});
        let t = to_commented_toml(&spec, &BTreeMap::new(), "");
        assert!(t.contains("name = \"a \\\"b\\\"\\nc\""), "{t}");
        assert!(t.contains("[presets.\"brand kit\"]"), "{t}");
    }
}
