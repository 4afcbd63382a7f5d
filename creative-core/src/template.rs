//! Prompt and file-name templates over job variables.
//!
//! Templates use minijinja (Jinja2 syntax: `{{ product }}`, filters, conditionals)
//! in strict mode: a variable the job does not have is an error that names it,
//! never an empty string.
//!
//! Rendering is bounded: every render runs with [`FUEL`] (minijinja's count of
//! executed instructions) and may write at most [`MAX_OUTPUT_BYTES`], so a
//! template with nested loops fails with [`TemplateError::TooCostly`] or
//! [`TemplateError::TooLarge`] instead of hanging `check`, a dry run or a run.

use std::collections::BTreeSet;
use std::io;
use std::sync::Arc;

use minijinja::{Environment, ErrorKind, UndefinedBehavior};

use crate::job::Vars;

/// Instructions one render may execute. A prompt that loops over a palette or a
/// list of a few hundred items uses a few thousand; a million still renders in
/// well under a second, and a loop of loops ends at once with an error.
pub const FUEL: u64 = 1_000_000;

/// Bytes one render may write (1 MiB). Prompts and file names are a few
/// kilobytes at most; a larger output is a runaway template.
pub const MAX_OUTPUT_BYTES: usize = 1 << 20;

/// The variable under which a step's templates read its input steps' outputs:
/// `{{ steps.copy.text }}`, `{{ steps.copy.json.headline }}`,
/// `{{ steps.hero.meta.width }}` (see [`crate::step::StepInputs::upstream`]).
pub const UPSTREAM: &str = "steps";

/// A template error: the message names the missing variable or the syntax problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
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
    /// Rendering ran out of fuel: the template executes more than [`FUEL`]
    /// instructions (usually a loop of loops).
    #[error(
        "template `{source_text}` takes too long to render: it ran more than {fuel} instructions (a loop of loops?)"
    )]
    TooCostly {
        /// The template source.
        source_text: String,
        /// The fuel it was given.
        fuel: u64,
    },
    /// Rendering wrote more than [`MAX_OUTPUT_BYTES`].
    #[error("template `{source_text}` renders more than {limit} bytes")]
    TooLarge {
        /// The template source.
        source_text: String,
        /// The limit in bytes.
        limit: usize,
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
    /// Dotted attribute chains the template reads (`steps.copy.json.headline`).
    paths: Arc<BTreeSet<String>>,
    literal: bool,
    /// The template as text and variables, when it is nothing more (see [`Piece`]).
    pieces: Option<Arc<[Piece]>>,
}

/// A piece of a template made only of text and `{{ name }}` substitutions, the
/// shape of nearly every file name and most prompts. Such a template renders by
/// joining its pieces (string and integer values; any other value goes through
/// minijinja), without converting the job's variables into minijinja values on
/// every render: on a 10,000-job campaign that conversion was 5% of the run's
/// CPU for four renders a job.
#[derive(Debug)]
enum Piece {
    Text(Box<str>),
    Var(Box<str>),
}

/// Split `source` into [`Piece`]s, or `None` when any part of it is more than
/// text and a bare variable name, so minijinja renders it exactly as written.
fn pieces(source: &str) -> Option<Arc<[Piece]>> {
    const MARKS: [&str; 6] = ["{{", "}}", "{%", "%}", "{#", "#}"];
    // minijinja drops one trailing newline; leave that to it.
    if source.ends_with('\n') {
        return None;
    }
    let text = |t: &str| (!MARKS.iter().any(|m| t.contains(m))).then(|| Piece::Text(t.into()));
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            out.push(text(&rest[..open])?);
        }
        let after = &rest[open + 2..];
        let close = after.find("}}")?;
        let name = after[..close].trim_matches(' ');
        let ident = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        // Literals, not variables, in a Jinja expression.
        let keyword = matches!(name, "true" | "false" | "none" | "True" | "False" | "None");
        if !ident || keyword {
            return None;
        }
        out.push(Piece::Var(name.into()));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        out.push(text(rest)?);
    }
    Some(out.into())
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
        env.set_fuel(Some(FUEL));
        env.add_template_owned("t", source.to_string())
            .map_err(|e| TemplateError::Syntax {
                source_text: source.to_string(),
                message: e.to_string(),
            })?;
        let (variables, paths) = env
            .get_template("t")
            .map(|t| {
                (
                    t.undeclared_variables(false).into_iter().collect(),
                    t.undeclared_variables(true).into_iter().collect(),
                )
            })
            .unwrap_or_default();
        let literal = !source.contains("{{") && !source.contains("{%");
        let pieces = if literal { None } else { pieces(source) };
        Ok(Template {
            source: Arc::from(source),
            env: Arc::new(env),
            variables: Arc::new(variables),
            paths: Arc::new(paths),
            literal,
            pieces,
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

    /// The attribute chains the template reads, dotted: `steps.copy.json.headline`
    /// for `{{ steps.copy.json.headline }}`, `product` for `{{ product }}`. A
    /// lookup by subscript (`steps[name]`) stops the chain where it starts.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.paths.iter().map(String::as_str)
    }

    /// The upstream steps the template reads through `steps.NAME`, in name order.
    /// `None` when it reads `steps` whole or by subscript, so the names cannot be
    /// known before rendering.
    pub fn upstream_steps(&self) -> Option<BTreeSet<&str>> {
        let mut names = BTreeSet::new();
        for p in self.paths() {
            if p == UPSTREAM {
                return None;
            }
            if let Some(rest) = p.strip_prefix(UPSTREAM).and_then(|r| r.strip_prefix('.')) {
                names.insert(rest.split('.').next().unwrap_or(rest));
            }
        }
        Some(names)
    }

    /// Whether the template reads upstream outputs (`steps`).
    pub fn reads_upstream(&self) -> bool {
        self.variables.contains(UPSTREAM)
    }

    /// Render with the job's variables.
    pub fn render(&self, vars: &Vars) -> Result<String, TemplateError> {
        if self.literal {
            return Ok(self.source.to_string());
        }
        if let Some(out) = self.pieces.as_deref().and_then(|p| join(p, vars)) {
            return if out.len() > MAX_OUTPUT_BYTES {
                Err(TemplateError::TooLarge {
                    source_text: self.source.to_string(),
                    limit: MAX_OUTPUT_BYTES,
                })
            } else {
                Ok(out)
            };
        }
        let missing = self.variables.iter().find(|v| !vars.contains_key(*v));
        let t = self.env.get_template("t").map_err(|e| self.render_err(e))?;
        let mut out = Capped::default();
        match t.render_captured_to(vars, &mut out) {
            Ok(_) => String::from_utf8(out.buf).map_err(|e| TemplateError::Render {
                source_text: self.source.to_string(),
                message: e.to_string(),
            }),
            Err(_) if out.overflowed => Err(TemplateError::TooLarge {
                source_text: self.source.to_string(),
                limit: MAX_OUTPUT_BYTES,
            }),
            Err(e) if e.kind() == ErrorKind::OutOfFuel => Err(TemplateError::TooCostly {
                source_text: self.source.to_string(),
                fuel: FUEL,
            }),
            // `default(...)` makes a missing variable fine; only fail if rendering does.
            Err(e) => Err(match missing {
                Some(name) => TemplateError::Missing {
                    name: name.clone(),
                    source_text: self.source.to_string(),
                },
                None => self.render_err(e),
            }),
        }
    }

    fn render_err(&self, e: minijinja::Error) -> TemplateError {
        TemplateError::Render {
            source_text: self.source.to_string(),
            message: e.to_string(),
        }
    }
}

/// Join `pieces` with the values of `vars`, or `None` when a variable is
/// missing or holds anything but a string or an integer (minijinja then renders
/// it, with its own formatting and errors).
fn join(pieces: &[Piece], vars: &Vars) -> Option<String> {
    use std::fmt::Write as _;
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(name) => match vars.get(&**name)? {
                serde_json::Value::String(s) => out.push_str(s),
                serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => {
                    let _ = write!(out, "{n}");
                }
                _ => return None,
            },
        }
        if out.len() > MAX_OUTPUT_BYTES {
            break;
        }
    }
    Some(out)
}

/// A sink that refuses to grow past [`MAX_OUTPUT_BYTES`]; the refusal stops the
/// render at once.
#[derive(Default)]
struct Capped {
    buf: Vec<u8>,
    overflowed: bool,
}

impl io::Write for Capped {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if self.buf.len().saturating_add(b.len()) > MAX_OUTPUT_BYTES {
            self.overflowed = true;
            return Err(io::Error::other("template output limit reached"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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
    fn a_loop_of_loops_runs_out_of_fuel_instead_of_hanging() {
        let t =
            Template::new("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}").unwrap();
        let started = std::time::Instant::now();
        let e = t.render(&Vars::new()).unwrap_err();
        assert!(matches!(e, TemplateError::TooCostly { fuel: FUEL, .. }), "{e}");
        assert!(e.to_string().contains("takes too long to render"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn output_beyond_the_size_limit_is_refused() {
        // 2,000 rounds of a 1,000-byte value: 2 MB, well within the fuel.
        let t = Template::new("{% for i in range(2000) %}{{ chunk }}{% endfor %}").unwrap();
        let mut vars = Vars::new();
        vars.insert("chunk".into(), "x".repeat(1000).into());
        let e = t.render(&vars).unwrap_err();
        assert!(
            matches!(
                e,
                TemplateError::TooLarge {
                    limit: MAX_OUTPUT_BYTES,
                    ..
                }
            ),
            "{e}"
        );
        // Half of it fits.
        let t = Template::new("{% for i in range(500) %}{{ chunk }}{% endfor %}").unwrap();
        assert_eq!(t.render(&vars).unwrap().len(), 500_000);
    }

    #[test]
    fn fuel_is_given_afresh_to_every_render() {
        let t = Template::new("{% for i in range(1000) %}{{ i }}{% endfor %}").unwrap();
        for _ in 0..3000 {
            t.render(&Vars::new()).unwrap();
        }
    }

    /// The same template rendered by minijinja alone.
    fn by_minijinja(t: &Template) -> Template {
        Template {
            pieces: None,
            ..t.clone()
        }
    }

    #[test]
    fn text_and_names_render_as_minijinja_renders_them() {
        let mut vars = Vars::new();
        vars.insert("product".into(), "mug {{ x }} é/\\ <b>&amp;".into());
        vars.insert("n".into(), 42.into());
        vars.insert("neg".into(), (-7).into());
        vars.insert("big".into(), u64::MAX.into());
        vars.insert("_under_1".into(), "u".into());
        vars.insert("empty".into(), "".into());
        let fast = [
            "{{ product }}",
            "{{product}}/{{ n }}-{{  neg  }}.{{ big }}",
            "a {{ _under_1 }} b {{ empty }}c",
            "{{ n }}{{ n }}",
            "x } {{ n }}",
            "} {{ n }} {",
        ];
        for source in fast {
            let t = Template::new(source).unwrap();
            assert!(t.pieces.is_some(), "{source} should render without minijinja");
            assert_eq!(
                t.render(&vars).unwrap(),
                by_minijinja(&t).render(&vars).unwrap(),
                "{source}"
            );
        }
        // Anything more than text and bare names is minijinja's, and so are values
        // other than strings and integers and missing names.
        let slow = [
            "{{ product | upper }}",
            "{{ steps.copy.text }}",
            "{{- n }}",
            "{{ n -}}",
            "{{ true }}",
            "{{ None }}",
            "{{ n }}\n",
            "{# note #}{{ n }}",
            "{% if n %}{{ n }}{% endif %}",
            "{{ n }} %}",
            "{{ 'a' }}",
            "{{ n + 1 }}",
        ];
        for source in slow {
            if let Ok(t) = Template::new(source) {
                assert!(t.pieces.is_none(), "{source} should go through minijinja");
            }
        }
        vars.insert("f".into(), 1.5.into());
        vars.insert("b".into(), true.into());
        vars.insert("list".into(), serde_json::json!([1, "two"]));
        for source in ["{{ f }}", "{{ b }}", "{{ list }}", "{{ n }}/{{ f }}"] {
            let t = Template::new(source).unwrap();
            assert_eq!(
                t.render(&vars).unwrap(),
                by_minijinja(&t).render(&vars).unwrap(),
                "{source}"
            );
        }
        let t = Template::new("{{ n }}/{{ missing }}").unwrap();
        assert_eq!(
            t.render(&vars).unwrap_err().to_string(),
            "missing variable `missing` in template `{{ n }}/{{ missing }}`"
        );
    }

    #[test]
    fn a_substitution_beyond_the_size_limit_is_refused() {
        let mut vars = Vars::new();
        vars.insert("chunk".into(), "x".repeat(MAX_OUTPUT_BYTES / 2 + 1).into());
        let t = Template::new("{{ chunk }}{{ chunk }}").unwrap();
        assert!(matches!(t.render(&vars), Err(TemplateError::TooLarge { .. })));
        assert!(matches!(
            by_minijinja(&t).render(&vars),
            Err(TemplateError::TooLarge { .. })
        ));
    }

    #[test]
    fn literal_text_renders_as_is() {
        assert_eq!(Template::new("plain").unwrap().render(&Vars::new()).unwrap(), "plain");
    }
}
