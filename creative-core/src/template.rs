//! Prompt and file-name templates over job variables.
//!
//! Templates use minijinja (Jinja2 syntax: `{{ product }}`, filters, conditionals)
//! in strict mode: a variable the job does not have is an error that names it,
//! never an empty string.

use std::collections::BTreeSet;
use std::sync::Arc;

use minijinja::{Environment, UndefinedBehavior};

use crate::job::Vars;

/// A template error: the message names the missing variable or the syntax problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    /// The source does not parse.
    #[error("template `{source_text}` does not parse: {message}")]
    Syntax {
        /// The template source.
        source_text: String,
        /// What is wrong.
        message: String,
    },
    /// A variable is missing from the job.
    #[error("missing variable `{name}` in template `{source_text}`")]
    Missing {
        /// The missing variable.
        name: String,
        /// The template source.
        source_text: String,
    },
    /// Rendering failed for another reason.
    #[error("template `{source_text}` failed: {message}")]
    Render {
        /// The template source.
        source_text: String,
        /// What went wrong.
        message: String,
    },
}

/// A compiled template.
///
/// ```
/// use creative_core::{Template, Vars};
/// let t = Template::new("a {{ color }} mug on {{ surface | default('a table') }}").unwrap();
/// let mut vars = Vars::new();
/// vars.insert("color".into(), "red".into());
/// assert_eq!(t.render(&vars).unwrap(), "a red mug on a table");
/// let err = Template::new("{{ product }}").unwrap().render(&Vars::new()).unwrap_err();
/// assert_eq!(err.to_string(), "missing variable `product` in template `{{ product }}`");
/// ```
#[derive(Clone)]
pub struct Template {
    source: Arc<str>,
    env: Arc<Environment<'static>>,
    variables: Arc<BTreeSet<String>>,
    literal: bool,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Template").field(&self.source).finish()
    }
}

impl Template {
    /// Compile a template.
    pub fn new(source: &str) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.add_template_owned("t", source.to_string())
            .map_err(|e| TemplateError::Syntax {
                source_text: source.to_string(),
                message: e.to_string(),
            })?;
        let variables = env
            .get_template("t")
            .map(|t| t.undeclared_variables(false).into_iter().collect())
            .unwrap_or_default();
        let literal = !source.contains("{{") && !source.contains("{%");
        Ok(Template {
            source: Arc::from(source),
            env: Arc::new(env),
            variables: Arc::new(variables),
            literal,
        })
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The variables the template reads.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.variables.iter().map(String::as_str)
    }

    /// Render with the job's variables.
    pub fn render(&self, vars: &Vars) -> Result<String, TemplateError> {
        if self.literal {
            return Ok(self.source.to_string());
        }
        if let Some(missing) = self.variables.iter().find(|v| !vars.contains_key(*v)) {
            // `default(...)` makes a missing variable fine; only fail if rendering does.
            let t = self.env.get_template("t").map_err(|e| self.render_err(e))?;
            return t.render(vars).map_err(|_| TemplateError::Missing {
                name: missing.clone(),
                source_text: self.source.to_string(),
            });
        }
        let t = self.env.get_template("t").map_err(|e| self.render_err(e))?;
        t.render(vars).map_err(|e| self.render_err(e))
    }

    fn render_err(&self, e: minijinja::Error) -> TemplateError {
        TemplateError::Render {
            source_text: self.source.to_string(),
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_are_reported_at_compile_time() {
        assert!(matches!(Template::new("{{ oops "), Err(TemplateError::Syntax { .. })));
    }

    #[test]
    fn literal_text_renders_as_is() {
        assert_eq!(Template::new("plain").unwrap().render(&Vars::new()).unwrap(), "plain");
    }
}
