//! File names from templates, sanitized, never outside the output folder.

use creative_core::job::Vars;
use creative_core::template::{Template, TemplateError};

/// Why a file name could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PathError {
    /// The template failed (a missing variable is named).
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A variable's value would lead outside the output folder.
    #[error("variable `{variable}` = `{value}` would escape the output folder")]
    Escape {
        /// The variable.
        variable: String,
        /// Its value.
        value: String,
    },
    /// The rendered name is empty, absolute, or has an empty, `.` or `..` part.
    #[error("file name `{0}` is not a relative path inside the output folder")]
    Invalid(String),
}

/// A file-name template over job variables, relative to an output folder.
///
/// A `/` written in the template makes sub-folders; a variable's value may not
/// contain a path separator or be `.` or `..` (that would escape the folder or
/// move the file elsewhere), and every part of the result is sanitized to
/// letters, digits, `-`, `_` and `.`.
///
/// ```
/// use creative_campaign::deliver::FileNameTemplate;
/// use creative_core::Vars;
/// let t = FileNameTemplate::new("{{ product }}/{{ channel }}.{{ ext }}").unwrap();
/// let mut v = Vars::new();
/// v.insert("product".into(), "Mug Deluxe!".into());
/// v.insert("channel".into(), "story".into());
/// v.insert("ext".into(), "png".into());
/// assert_eq!(t.render(&v).unwrap(), "Mug_Deluxe_/story.png");
/// v.insert("product".into(), "../../etc".into());
/// assert!(t.render(&v).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct FileNameTemplate {
    template: Template,
}

impl FileNameTemplate {
    /// Compile a template.
    pub fn new(source: &str) -> Result<Self, TemplateError> {
        Ok(FileNameTemplate {
            template: Template::new(source)?,
        })
    }

    /// The source text.
    pub fn source(&self) -> &str {
        self.template.source()
    }

    /// Render a relative path (parts joined by `/`).
    pub fn render(&self, vars: &Vars) -> Result<String, PathError> {
        for name in self.template.variables() {
            if let Some(v) = vars.get(name) {
                let s: std::borrow::Cow<'_, str> = match v {
                    serde_json::Value::String(s) => s.into(),
                    other => other.to_string().into(),
                };
                let t = s.trim();
                if s.contains(['/', '\\', '\0']) || t == ".." || t == "." || s.starts_with('~') {
                    return Err(PathError::Escape {
                        variable: name.to_string(),
                        value: s.into_owned(),
                    });
                }
            }
        }
        let raw = self.template.render(vars)?;
        if raw.starts_with('/') || raw.starts_with('\\') {
            return Err(PathError::Invalid(raw));
        }
        let mut parts = Vec::new();
        for part in raw.split('/') {
            let p = part.trim();
            if p.is_empty() || p == "." || p == ".." {
                return Err(PathError::Invalid(raw.clone()));
            }
            parts.push(sanitize(p));
        }
        Ok(parts.join("/"))
    }
}

/// Keep letters, digits, `-`, `_` and `.`; anything else becomes `_`. A part
/// never starts with `.` (no hidden files) and is at most 120 bytes.
fn sanitize(part: &str) -> String {
    let mut s: String = part
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with('.') {
        s.replace_range(..1, "_");
    }
    if s.len() > 120 {
        let mut cut = 120;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs.iter().map(|(k, v)| (k.to_string(), (*v).into())).collect()
    }

    #[test]
    fn rejects_every_way_out() {
        let t = FileNameTemplate::new("{{ a }}.png").unwrap();
        for bad in ["../x", "..", "a/b", "a\\b", "~root", "."] {
            let e = t.render(&vars(&[("a", bad)])).unwrap_err();
            assert!(matches!(e, PathError::Escape { .. }), "{bad}: {e}");
        }
        let abs = FileNameTemplate::new("/etc/{{ a }}").unwrap();
        assert!(matches!(abs.render(&vars(&[("a", "x")])), Err(PathError::Invalid(_))));
        let dots = FileNameTemplate::new("{{ a }}/../x").unwrap();
        assert!(matches!(dots.render(&vars(&[("a", "x")])), Err(PathError::Invalid(_))));
    }

    #[test]
    fn missing_variables_are_named() {
        let t = FileNameTemplate::new("{{ product }}.png").unwrap();
        assert!(t.render(&Vars::new()).unwrap_err().to_string().contains("`product`"));
    }

    #[test]
    fn sanitizes_parts_but_keeps_folders() {
        let t = FileNameTemplate::new("{{ a }}/{{ b }}.txt").unwrap();
        assert_eq!(
            t.render(&vars(&[("a", ".hidden"), ("b", "é t:x")])).unwrap(),
            "_hidden/é_t_x.txt"
        );
    }
}
