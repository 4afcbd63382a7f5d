//! Spec errors: what is wrong, in which file, at which field, on which line.

use std::fmt;

/// The class of a spec error, for hosts that act on it (tests, editors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecErrorKind {
    /// The file could not be read.
    Io,
    /// The text is not valid TOML or JSON.
    Syntax,
    /// A field has the wrong type, an unknown name, or a value out of range.
    Invalid,
    /// A `kind` that no registered factory builds.
    UnknownKind,
    /// A step names a provider the spec does not declare.
    UnknownProvider,
    /// A step takes input from a step that does not exist.
    UnknownStep,
    /// Steps form a cycle.
    Cycle,
    /// A template uses a variable that a job does not have.
    MissingVariable,
    /// A file-name template would write outside the output folder.
    PathEscape,
    /// A provider, step or gate factory refused its settings.
    Settings,
}

/// Why a spec could not be read or built.
///
/// Its message names the file, the line (for TOML, when known), the field path
/// (`steps[2].providers[0]`) and the problem:
///
/// ```text
/// campaign.toml:14: steps[1].inputs[0]: unknown step `heroo`; steps are: hero, square
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The class.
    pub kind: SpecErrorKind,
    /// The file (or origin label) the spec came from.
    pub origin: String,
    /// The field path, empty for the whole document.
    pub path: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl SpecError {
    pub(crate) fn new(kind: SpecErrorKind, path: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError {
            kind,
            origin: String::new(),
            path: path.into(),
            line: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.origin.is_empty() { "<spec>" } else { &self.origin })?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for SpecError {}

/// 1-based line of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Find the line of a field path (`steps[2].inputs[0]`) in a TOML document, by
/// walking its spans down the path as far as it goes.
pub(crate) fn toml_line(text: &str, path: &str) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).ok()?;
    let mut span = None;
    let mut table: Option<&DeTable> = Some(doc.get_ref());
    let mut value: Option<&DeValue> = None;
    for seg in split_path(path) {
        match seg {
            Seg::Key(k) => {
                let t = match (table, value) {
                    (Some(t), _) => t,
                    (None, Some(v)) => match v.as_table() {
                        Some(t) => t,
                        None => break,
                    },
                    _ => break,
                };
                let Some((key, v)) = t.iter().find(|(key, _)| key.get_ref().as_ref() == k) else {
                    break;
                };
                // Point at the key: for a table header, the value's span starts
                // at its first entry, which reads oddly.
                span = Some(key.span().start);
                value = Some(v.get_ref());
                table = None;
            }
            Seg::Index(i) => {
                let Some(arr) = value.and_then(|v| v.as_array()) else {
                    break;
                };
                let Some(item) = arr.get(i) else { break };
                span = Some(item.span().start);
                value = Some(item.get_ref());
                table = None;
            }
        }
    }
    span.map(|s| line_of(text, s))
}

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn split_path(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Seg::Key(key));
        }
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            if let Ok(i) = idx.trim_end_matches(']').parse() {
                out.push(Seg::Index(i));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_lines_of_nested_fields() {
        let text = "name = \"x\"\n\n[[steps]]\nname = \"a\"\n\n[[steps]]\nname = \"b\"\ninputs = [\"a\",\n  \"zz\"]\n";
        assert_eq!(toml_line(text, "name"), Some(1));
        assert_eq!(toml_line(text, "steps[1].name"), Some(7));
        assert_eq!(toml_line(text, "steps[1].inputs[1]"), Some(9));
        assert_eq!(
            toml_line(text, "steps[1].nope"),
            Some(6).or(toml_line(text, "steps[1]"))
        );
    }

    #[test]
    fn display_names_file_line_and_path() {
        let mut e = SpecError::new(SpecErrorKind::UnknownStep, "steps[1].inputs[0]", "unknown step `x`");
        e.origin = "c.toml".into();
        e.line = Some(9);
        assert_eq!(e.to_string(), "c.toml:9: steps[1].inputs[0]: unknown step `x`");
    }
}
