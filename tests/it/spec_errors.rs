//! Bad specs fail before anything runs, each with an error that names the file,
//! the field path, the line (TOML) and the problem.
//!
//! One table: each case is a bad spec, the sentence it proves, and what its
//! error must say. A new case is a new row.

use creative::campaign::spec::{Format, Registry, Spec, SpecError, SpecErrorKind as K};

fn registry() -> Registry {
    let mut reg = Registry::new();
    creative::providers::register(&mut reg);
    reg
}

const BASE: &str = r#"name = "t"

[providers.art]
kind = "procedural"

[matrix]
product = ["mug", "lamp"]
"#;

/// A generate step named `s` over `art`, to append to [`BASE`].
const STEP: &str = "\n[[steps]]\nname = \"s\"\nkind = \"generate\"\nproviders = [\"art\"]\nprompt = \"x\"\n";

/// Where the error's line must point.
#[derive(Clone, Copy)]
enum Line {
    /// Not checked.
    Any,
    /// This line number.
    At(usize),
    /// The first line of the text containing this.
    Of(&'static str),
}

/// One bad spec and what its error must say.
struct Case {
    /// The sentence the case proves.
    proves: &'static str,
    text: String,
    format: Format,
    file: &'static str,
    kind: Option<K>,
    path: Option<&'static str>,
    line: Line,
    /// Phrases the message must contain.
    message_has: &'static [&'static str],
    /// How the whole error (file, path, line, message) must start.
    shown_starts: Option<&'static str>,
    /// What the whole error must never show.
    shown_lacks: &'static [&'static str],
}

impl Case {
    fn toml(proves: &'static str, text: String) -> Self {
        Case {
            proves,
            text,
            format: Format::Toml,
            file: "campaign.toml",
            kind: None,
            path: None,
            line: Line::Any,
            message_has: &[],
            shown_starts: None,
            shown_lacks: &[],
        }
    }
    fn json(proves: &'static str, file: &'static str, text: &str) -> Self {
        Case {
            format: Format::Json,
            file,
            ..Case::toml(proves, text.to_string())
        }
    }
    fn kind(mut self, k: K) -> Self {
        self.kind = Some(k);
        self
    }
    fn path(mut self, p: &'static str) -> Self {
        self.path = Some(p);
        self
    }
    fn line(mut self, l: Line) -> Self {
        self.line = l;
        self
    }
    fn says(mut self, phrases: &'static [&'static str]) -> Self {
        self.message_has = phrases;
        self
    }
    fn shown_starts(mut self, s: &'static str) -> Self {
        self.shown_starts = Some(s);
        self
    }
    fn never_shows(mut self, s: &'static [&'static str]) -> Self {
        self.shown_lacks = s;
        self
    }

    /// The error the spec fails with, parsing or building.
    fn error(&self) -> Result<SpecError, String> {
        let spec = match Spec::parse(&self.text, self.format, self.file) {
            Ok(s) => s,
            Err(e) => return Ok(e),
        };
        match spec.build(&registry(), ".") {
            Ok(_) => Err("the spec built".into()),
            Err(e) => Ok(e),
        }
    }

    /// What is wrong with the error, if anything.
    fn check(&self) -> Vec<String> {
        let e = match self.error() {
            Ok(e) => e,
            Err(why) => return vec![why],
        };
        let shown = e.to_string();
        let mut wrong = Vec::new();
        if let Some(k) = self.kind {
            if e.kind != k {
                wrong.push(format!("kind {:?}, expected {k:?}", e.kind));
            }
        }
        if let Some(p) = self.path {
            if e.path != p {
                wrong.push(format!("path `{}`, expected `{p}`", e.path));
            }
        }
        let line = match self.line {
            Line::Any => None,
            Line::At(n) => Some(n),
            Line::Of(needle) => match self.text.lines().position(|l| l.contains(needle)) {
                Some(i) => Some(i + 1),
                None => {
                    wrong.push(format!("the case's text has no line with `{needle}`"));
                    None
                }
            },
        };
        if let Some(n) = line {
            if e.line != Some(n) {
                wrong.push(format!("line {:?}, expected {n}", e.line));
            }
        }
        for p in self.message_has {
            if !e.message.contains(p) {
                wrong.push(format!("message lacks `{p}`"));
            }
        }
        if let Some(s) = self.shown_starts {
            if !shown.starts_with(s) {
                wrong.push(format!("shown error does not start with `{s}`"));
            }
        }
        for s in self.shown_lacks {
            if shown.contains(s) {
                wrong.push(format!("shown error shows `{s}`"));
            }
        }
        wrong.into_iter().map(|w| format!("{w} (error: {shown})")).collect()
    }
}

fn cases() -> Vec<Case> {
    vec![
        Case::toml(
            "a cycle names its steps and line",
            format!(
                r#"{BASE}
[[steps]]
name = "a"
kind = "generate"
providers = ["art"]
prompt = "x"
inputs = ["b"]

[[steps]]
name = "b"
kind = "generate"
providers = ["art"]
prompt = "y"
inputs = ["a"]
"#
            ),
        )
        .kind(K::Cycle)
        .path("steps[0].inputs")
        .says(&["a -> b -> a"])
        .line(Line::Of("inputs = [\"b\"]"))
        .shown_starts("campaign.toml:"),
        Case::toml(
            "an unknown input step is named with the known ones",
            format!(
                r#"{BASE}
[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "a {{{{ product }}}}"

[[steps]]
name = "caption"
kind = "generate"
providers = ["art"]
prompt = "x"
inputs = ["hero", "heroo"]
"#
            ),
        )
        .kind(K::UnknownStep)
        .path("steps[1].inputs[1]")
        .line(Line::Of("\"heroo\""))
        .says(&["unknown step `heroo`; steps are: hero, caption"]),
        Case::toml(
            "an unknown provider is named with the declared ones",
            format!(
                r#"{BASE}
[[steps]]
name = "hero"
kind = "generate"
providers = ["art", "dalle"]
prompt = "a {{{{ product }}}}"
"#
            ),
        )
        .kind(K::UnknownProvider)
        .path("steps[0].providers[1]")
        .says(&["unknown provider `dalle`; [providers] declares: art"])
        .line(Line::Of("providers = [")),
        Case::toml(
            "an unknown provider kind lists the registered kinds",
            BASE.replace("kind = \"procedural\"", "kind = \"procedurall\"") + STEP,
        )
        .kind(K::UnknownKind)
        .path("providers.art.kind")
        .says(&["procedural"])
        .line(Line::Of("procedurall")),
        Case::toml(
            "a missing variable is named, not rendered empty",
            format!(
                r#"{BASE}
[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "a {{{{ product }}}} in {{{{ colour }}}}"
"#
            ),
        )
        .kind(K::MissingVariable)
        .path("steps[0].prompt")
        .says(&["missing variable `colour`", "the job has: product"]),
        // Top-level keys must come before tables in TOML: the bad one goes first.
        Case::toml(
            "a wrong type at the top names the field and line",
            format!("concurrency = \"many\"\n{BASE}{STEP}"),
        )
        .kind(K::Invalid)
        .path("concurrency")
        .line(Line::At(1))
        .says(&["invalid type"]),
        Case::toml(
            "a wrong type in a step names the field and line",
            format!(
                r#"{BASE}
[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "a {{{{ product }}}}"
width = "wide"
"#
            ),
        )
        .path("steps[0].width")
        .line(Line::Of("width = "))
        .says(&["invalid type"]),
        Case::toml(
            "a misspelt step field is an error naming it",
            format!(
                r#"{BASE}
[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "x"
widht = 512
"#
            ),
        )
        .kind(K::Invalid)
        .says(&["unknown field `widht`"]),
        Case::toml(
            "a misspelt budget field is an error naming it",
            format!("{BASE}\n[budget]\nmax_cost = 3\n"),
        )
        .path("budget.max_cost")
        .says(&["unknown field `max_cost`"]),
        Case::toml(
            "a file name that escapes the output folder is rejected",
            format!(
                r#"{BASE}
[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "a {{{{ product }}}}"

[output]
file_name = "{{{{ product }}}}.png"
"#
            )
            .replace(
                r#"product = ["mug", "lamp"]"#,
                r#"product = ["mug", "../../etc/passwd"]"#,
            ),
        )
        .kind(K::PathEscape)
        .path("output.file_name")
        .says(&["variable `product` = `../../etc/passwd` would escape the output folder"])
        .line(Line::Of("file_name")),
        Case::toml(
            "colliding file names are rejected",
            format!(
                r#"{BASE}
[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "a {{{{ product }}}}"

[output]
file_name = "hero.png"
"#
            ),
        )
        .says(&["is the same for"]),
        Case {
            file: "bad.toml",
            ..Case::toml(
                "a TOML syntax error carries a line",
                "name = \"x\"\n[[steps]\nname = 1\n".into(),
            )
        }
        .kind(K::Syntax)
        .line(Line::At(2)),
        Case::json(
            "a JSON syntax error carries a line",
            "bad.json",
            "{\"name\": \"x\",\n \"steps\": [}",
        )
        .kind(K::Syntax)
        .line(Line::At(2)),
        Case::json(
            "JSON specs get field paths too",
            "c.json",
            r#"{"name": "j", "providers": {"art": {"kind": "procedural"}},
      "steps": [{"name": "s", "kind": "generate", "providers": ["art"], "prompt": "x", "keep": "two"}]}"#,
        )
        .path("steps[0].keep")
        .shown_starts("c.json: steps[0].keep: invalid type"),
        Case::toml(
            "API keys inline are refused and never echoed",
            BASE.replace(
                "kind = \"procedural\"",
                "kind = \"procedural\"\napi_key = \"sk-secret-123\"",
            ) + STEP,
        )
        .path("providers.art.api_key")
        .says(&["api_key_env"])
        .never_shows(&["sk-secret-123"]),
        Case::toml(
            "zipped lists of unequal length are rejected",
            format!("{BASE}\n[[matrix.zip]]\nchannel = [\"a\", \"b\"]\nsize = [\"1x1\"]\n{STEP}"),
        )
        .path("matrix.zip[0].size")
        .line(Line::Of("size = [")),
        Case::toml(
            "an unknown preset is named",
            format!("{BASE}{STEP}preset = \"brand\"\n"),
        )
        .says(&["unknown preset `brand`"]),
        Case::toml(
            "a bad gate policy is named",
            format!("{BASE}{STEP}on_gate_fail = \"retry\"\n"),
        )
        .path("steps[0].on_gate_fail")
        .says(&["unknown policy `retry`"]),
    ]
}

#[test]
fn every_bad_spec_fails_with_an_error_naming_its_place_and_problem() {
    let failures: Vec<String> = cases()
        .iter()
        .flat_map(|c| c.check().into_iter().map(move |w| format!("{}: {w}", c.proves)))
        .collect();
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn a_case_that_builds_is_reported_not_passed() {
    // The table cannot pass vacuously: a good spec fails its check.
    let good = Case::toml("a good spec", format!("{BASE}{STEP}"));
    assert_eq!(good.check(), vec!["the spec built".to_string()]);
}

/// The image steps' and gates' factories refuse a setting by its key, which
/// the spec error places under the step (or gate) and points its line at.
#[test]
fn an_image_step_or_gate_setting_refused_by_its_factory_is_named_under_its_step_at_its_line() {
    let mut reg = registry();
    creative::ops::register(&mut reg);
    let build = |text: String| {
        Spec::parse(&text, Format::Toml, "campaign.toml")
            .and_then(|spec| spec.build(&reg, "."))
            .expect_err("refused")
    };
    let e = build(format!(
        "{BASE}{STEP}\n[[steps]]\nname = \"small\"\nkind = \"resize\"\ninputs = [\"s\"]\nwidth = 4000000000\n"
    ));
    assert_eq!((e.kind, e.path.as_str()), (K::Settings, "steps[1].width"), "{e}");
    assert_eq!(e.line, Some(19), "{e}");
    assert!(e.to_string().contains("allowed 1 to"), "{e}");
    let e = build(format!(
        "{BASE}\n[[steps]]\nname = \"s\"\nkind = \"generate\"\nproviders = [\"art\"]\nprompt = \"x\"\ngates = [{{ kind = \"sharpness\", min_varianse = 3 }}]\n"
    ));
    assert_eq!(
        (e.kind, e.path.as_str()),
        (K::Settings, "steps[0].gates[0].min_varianse"),
        "{e}"
    );
    assert!(e.to_string().contains("unknown field `min_varianse`"), "{e}");
}
