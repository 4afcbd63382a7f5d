use std::sync::Arc;

use async_trait::async_trait;
use regex::Regex;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use unicode_segmentation::UnicodeSegmentation;

use creative_core::{Artifact, GateCtx, GateError, MediaKind, QualityGate, Verdict};

use super::{verdict_from_rules, TEXT};
use crate::error::OpsError;

/// Settings of the `text` gate; every rule is optional.
///
/// Score: the share of rules that hold.
///
/// Terms are matched Unicode-aware: text and terms are normalised (NFKC, full
/// case folding, NFKC again) and split into words (UAX #29), and a term matches
/// when its words appear consecutively, so `free` matches `FREE` and `ｆｒｅｅ`
/// but not `freedom`, and `straße` matches `STRASSE`. Lengths count grapheme
/// clusters (what a reader sees as characters) and UAX #29 words. Regular
/// expressions run on the text as written (add `(?i)` for case-insensitivity).
///
/// ```toml
/// [[gates]]
/// kind = "text"
/// min_chars = 10
/// max_chars = 90
/// min_words = 2
/// max_words = 15
/// required = ["{{ product }}"]       # terms are literal; see note below
/// banned = ["free", "guaranteed", "best in the world"]
/// patterns = ["^[A-Z]"]              # must all match
/// forbidden_patterns = ["https?://"] # must not match
/// json_schema = { type = "object", required = ["headline"] }   # the text must be JSON valid against it
/// schema_path = "schemas/copy.json"  # or a schema file (resolved against the spec's folder)
/// ```
/// (`required` and `banned` terms are literal strings, not templates.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TextSettings {
    /// Fewest grapheme clusters.
    #[serde(default)]
    pub min_chars: Option<usize>,
    /// Most grapheme clusters.
    #[serde(default)]
    pub max_chars: Option<usize>,
    /// Fewest words.
    #[serde(default)]
    pub min_words: Option<usize>,
    /// Most words.
    #[serde(default)]
    pub max_words: Option<usize>,
    /// Terms that must appear.
    #[serde(default)]
    pub required: Vec<String>,
    /// Terms that must not appear.
    #[serde(default)]
    pub banned: Vec<String>,
    /// Regular expressions that must all match.
    #[serde(default)]
    pub patterns: Vec<String>,
    /// Regular expressions that must not match.
    #[serde(default)]
    pub forbidden_patterns: Vec<String>,
    /// A JSON Schema the text, parsed as JSON, must satisfy.
    #[serde(default)]
    pub json_schema: Option<serde_json::Value>,
    /// A JSON Schema file (the factory reads it into `json_schema`).
    #[serde(default)]
    pub schema_path: Option<String>,
}

/// Normalise for matching: NFKC, full case folding, NFKC again.
///
/// ```
/// assert_eq!(creative_ops::gates::normalize("ＳＴＲＡßＥ"), "strasse");
/// ```
pub fn normalize(s: &str) -> String {
    let nfkc: String = s.nfkc().collect();
    caseless::default_case_fold_str(&nfkc).nfkc().collect()
}

fn words(normalized: &str) -> Vec<&str> {
    normalized.unicode_words().collect()
}

fn contains_term(text_words: &[&str], term_words: &[&str]) -> bool {
    !term_words.is_empty() && text_words.windows(term_words.len()).any(|w| w == term_words)
}

/// Checks text artifacts: lengths, required and banned terms, regular
/// expressions, and a JSON Schema for structured output.
#[derive(Clone)]
pub struct TextGate {
    name: String,
    s: Arc<TextSettings>,
    required: Vec<(String, Vec<String>)>,
    banned: Vec<(String, Vec<String>)>,
    patterns: Vec<Regex>,
    forbidden: Vec<Regex>,
    schema: Option<Arc<jsonschema::Validator>>,
}

impl std::fmt::Debug for TextGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextGate")
            .field("name", &self.name)
            .field("settings", &self.s)
            .finish()
    }
}

impl TextGate {
    /// Build from settings, compiling patterns and the schema. A `schema_path`
    /// must already have been read into `json_schema` (the registry factory does).
    pub fn new(s: TextSettings) -> Result<Self, OpsError> {
        if let (Some(a), Some(b)) = (s.min_chars, s.max_chars) {
            if a > b {
                return Err(OpsError::settings("min_chars", format!("{a} is above `max_chars` {b}")));
            }
        }
        if let (Some(a), Some(b)) = (s.min_words, s.max_words) {
            if a > b {
                return Err(OpsError::settings("min_words", format!("{a} is above `max_words` {b}")));
            }
        }
        let terms = |field: &'static str, list: &[String]| -> Result<Vec<(String, Vec<String>)>, OpsError> {
            list.iter()
                .map(|t| {
                    let n = normalize(t);
                    let w: Vec<String> = words(&n).into_iter().map(str::to_string).collect();
                    if w.is_empty() {
                        Err(OpsError::settings(field, format!("term `{t}` has no words")))
                    } else {
                        Ok((t.clone(), w))
                    }
                })
                .collect()
        };
        let regexes = |field: &'static str, list: &[String]| -> Result<Vec<Regex>, OpsError> {
            list.iter()
                .map(|p| Regex::new(p).map_err(|e| OpsError::settings(field, format!("`{p}`: {e}"))))
                .collect()
        };
        let schema = match (&s.json_schema, &s.schema_path) {
            (Some(v), _) => Some(Arc::new(
                jsonschema::validator_for(v).map_err(|e| OpsError::settings("json_schema", e.to_string()))?,
            )),
            (None, Some(p)) => {
                return Err(OpsError::settings("schema_path", format!("`{p}` was not loaded")));
            }
            (None, None) => None,
        };
        Ok(TextGate {
            name: "text".into(),
            required: terms("required", &s.required)?,
            banned: terms("banned", &s.banned)?,
            patterns: regexes("patterns", &s.patterns)?,
            forbidden: regexes("forbidden_patterns", &s.forbidden_patterns)?,
            schema,
            s: Arc::new(s),
        })
    }

    /// Rename the gate.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Judge a piece of text.
    pub fn judge(&self, text: &str) -> Verdict {
        let s = &self.s;
        let mut rules = Vec::new();
        let chars = text.graphemes(true).count();
        let norm = normalize(text);
        let tw = words(&norm);
        let n_words = tw.len();
        if let Some(m) = s.min_chars {
            rules.push((chars >= m, format!("{chars} characters, fewer than {m}")));
        }
        if let Some(m) = s.max_chars {
            rules.push((chars <= m, format!("{chars} characters, more than {m}")));
        }
        if let Some(m) = s.min_words {
            rules.push((n_words >= m, format!("{n_words} words, fewer than {m}")));
        }
        if let Some(m) = s.max_words {
            rules.push((n_words <= m, format!("{n_words} words, more than {m}")));
        }
        for (term, w) in &self.required {
            let w: Vec<&str> = w.iter().map(String::as_str).collect();
            rules.push((contains_term(&tw, &w), format!("required term `{term}` is missing")));
        }
        for (term, w) in &self.banned {
            let w: Vec<&str> = w.iter().map(String::as_str).collect();
            rules.push((!contains_term(&tw, &w), format!("banned term `{term}` appears")));
        }
        for r in &self.patterns {
            rules.push((r.is_match(text), format!("does not match /{}/", r.as_str())));
        }
        for r in &self.forbidden {
            let found = r.find(text);
            rules.push((
                found.is_none(),
                format!(
                    "matches forbidden /{}/ at `{}`",
                    r.as_str(),
                    found.map_or("", |m| m.as_str())
                ),
            ));
        }
        if let Some(schema) = &self.schema {
            // A fenced code block is unwrapped, as `{{ steps.NAME.json }}` reads it.
            let parsed = creative_core::step::parse_json_text(text).ok_or(());
            match parsed.or_else(|()| serde_json::from_str::<serde_json::Value>(text)) {
                Err(e) => rules.push((false, format!("not valid JSON: {e}"))),
                Ok(v) => {
                    let errors: Vec<String> = schema
                        .iter_errors(&v)
                        .take(5)
                        .map(|e| {
                            let at = e.instance_path().to_string();
                            format!("schema: {} at `{}`", e, if at.is_empty() { "/".into() } else { at })
                        })
                        .collect();
                    if errors.is_empty() {
                        rules.push((true, String::new()));
                    } else {
                        for e in errors {
                            rules.push((false, e));
                        }
                    }
                }
            }
        }
        verdict_from_rules(rules)
    }
}

#[async_trait]
impl QualityGate for TextGate {
    fn name(&self) -> &str {
        &self.name
    }
    fn accepts(&self) -> Option<&[MediaKind]> {
        Some(TEXT)
    }
    async fn check(&self, a: &Artifact, _ctx: &GateCtx) -> Result<Verdict, GateError> {
        let text = a.text().ok_or_else(|| {
            GateError::new(
                &self.name,
                format!("needs UTF-8 text; got {} of {} bytes", a.media(), a.data().len()),
            )
        })?;
        Ok(self.judge(text))
    }
}
