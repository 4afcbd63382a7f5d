//! Bad specs fail before anything runs, each with an error that names the file,
//! the field path, the line (TOML) and the problem.

use creative::campaign::spec::{Format, Registry, Spec, SpecError, SpecErrorKind};

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

fn build(text: &str) -> SpecError {
    let spec = match Spec::parse(text, Format::Toml, "campaign.toml") {
        Ok(s) => s,
        Err(e) => return e,
    };
    match spec.build(&registry(), ".") {
        Ok(_) => panic!("the spec should not build:\n{text}"),
        Err(e) => e,
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).expect("needle in text") + 1
}

#[test]
fn a_cycle_names_its_steps_and_line() {
    let text = format!(
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
    );
    let e = build(&text);
    assert_eq!(e.kind, SpecErrorKind::Cycle);
    assert_eq!(e.path, "steps[0].inputs");
    assert!(e.message.contains("a -> b -> a"), "{e}");
    assert_eq!(e.line, Some(line_of(&text, "inputs = [\"b\"]")));
    assert!(e.to_string().starts_with("campaign.toml:"), "{e}");
}

#[test]
fn an_unknown_input_step_is_named_with_the_known_ones() {
    let text = format!(
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
    );
    let e = build(&text);
    assert_eq!(e.kind, SpecErrorKind::UnknownStep);
    assert_eq!(e.path, "steps[1].inputs[1]");
    assert_eq!(e.line, Some(line_of(&text, "\"heroo\"")));
    assert!(
        e.message.contains("unknown step `heroo`; steps are: hero, caption"),
        "{e}"
    );
}

#[test]
fn an_unknown_provider_is_named_with_the_declared_ones() {
    let text = format!(
        r#"{BASE}
[[steps]]
name = "hero"
kind = "generate"
providers = ["art", "dalle"]
prompt = "a {{{{ product }}}}"
"#
    );
    let e = build(&text);
    assert_eq!(e.kind, SpecErrorKind::UnknownProvider);
    assert_eq!(e.path, "steps[0].providers[1]");
    assert!(
        e.message
            .contains("unknown provider `dalle`; [providers] declares: art"),
        "{e}"
    );
    assert_eq!(e.line, Some(line_of(&text, "providers = [")));
}

#[test]
fn an_unknown_provider_kind_lists_the_registered_kinds() {
    let text = BASE.replace("kind = \"procedural\"", "kind = \"procedurall\"")
        + "\n[[steps]]\nname = \"s\"\nkind = \"generate\"\nproviders = [\"art\"]\nprompt = \"x\"\n";
    let e = build(&text);
    assert_eq!(e.kind, SpecErrorKind::UnknownKind);
    assert_eq!(e.path, "providers.art.kind");
    assert!(e.message.contains("procedural"), "{e}");
    assert_eq!(e.line, Some(line_of(&text, "procedurall")));
}

#[test]
fn a_missing_variable_is_named_not_rendered_empty() {
    let text = format!(
        r#"{BASE}
[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "a {{{{ product }}}} in {{{{ colour }}}}"
"#
    );
    let e = build(&text);
    assert_eq!(e.kind, SpecErrorKind::MissingVariable);
    assert_eq!(e.path, "steps[0].prompt");
    assert!(e.message.contains("missing variable `colour`"), "{e}");
    assert!(e.message.contains("the job has: product"), "{e}");
}

#[test]
fn a_wrong_type_names_the_field_and_line() {
    let text = format!("{BASE}concurrency = \"many\"\n").replace("[matrix]", "[matrix]");
    // Top-level keys must come before tables in TOML; put it first.
    let text = format!(
        "concurrency = \"many\"\n{}",
        text.replace("concurrency = \"many\"\n", "")
    );
    let text = text + "\n[[steps]]\nname = \"s\"\nkind = \"generate\"\nproviders = [\"art\"]\nprompt = \"x\"\n";
    let e = build(&text);
    assert_eq!(e.kind, SpecErrorKind::Invalid);
    assert_eq!(e.path, "concurrency");
    assert_eq!(e.line, Some(1));
    assert!(e.message.contains("invalid type"), "{e}");

    let text = format!(
        r#"{BASE}
[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "a {{{{ product }}}}"
width = "wide"
"#
    );
    let e = build(&text);
    assert_eq!(e.path, "steps[0].width");
    assert_eq!(e.line, Some(line_of(&text, "width = ")));
    assert!(e.message.contains("invalid type"), "{e}");
}

#[test]
fn a_misspelt_field_is_an_error_naming_it() {
    let text = format!(
        r#"{BASE}
[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "x"
widht = 512
"#
    );
    let e = build(&text);
    assert_eq!(e.kind, SpecErrorKind::Invalid);
    assert!(e.message.contains("unknown field `widht`"), "{e}");
    let e = build(&format!("{BASE}\n[budget]\nmax_cost = 3\n"));
    assert_eq!(e.path, "budget.max_cost");
    assert!(e.message.contains("unknown field `max_cost`"), "{e}");
}

#[test]
fn a_file_name_that_escapes_the_output_folder_is_rejected() {
    let text = format!(
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
    );
    let e = build(&text);
    assert_eq!(e.kind, SpecErrorKind::PathEscape);
    assert_eq!(e.path, "output.file_name");
    assert!(
        e.message
            .contains("variable `product` = `../../etc/passwd` would escape the output folder"),
        "{e}"
    );
    assert_eq!(e.line, Some(line_of(&text, "file_name")));
}

#[test]
fn colliding_file_names_are_rejected() {
    let text = format!(
        r#"{BASE}
[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "a {{{{ product }}}}"

[output]
file_name = "hero.png"
"#
    );
    let e = build(&text);
    assert!(e.message.contains("is the same for"), "{e}");
}

#[test]
fn syntax_errors_carry_a_line() {
    let e = Spec::parse("name = \"x\"\n[[steps]\nname = 1\n", Format::Toml, "bad.toml").unwrap_err();
    assert_eq!(e.kind, SpecErrorKind::Syntax);
    assert_eq!(e.line, Some(2));
    let e = Spec::parse("{\"name\": \"x\",\n \"steps\": [}", Format::Json, "bad.json").unwrap_err();
    assert_eq!(e.kind, SpecErrorKind::Syntax);
    assert_eq!(e.line, Some(2));
}

#[test]
fn json_specs_get_field_paths_too() {
    let text = r#"{"name": "j", "providers": {"art": {"kind": "procedural"}},
      "steps": [{"name": "s", "kind": "generate", "providers": ["art"], "prompt": "x", "keep": "two"}]}"#;
    let spec = Spec::parse(text, Format::Json, "c.json").unwrap();
    let e = spec.build(&registry(), ".").unwrap_err();
    assert_eq!(e.path, "steps[0].keep");
    assert!(e.to_string().starts_with("c.json: steps[0].keep: invalid type"), "{e}");
}

#[test]
fn api_keys_inline_are_refused_and_never_echoed() {
    let text = BASE.replace(
        "kind = \"procedural\"",
        "kind = \"procedural\"\napi_key = \"sk-secret-123\"",
    ) + "\n[[steps]]\nname = \"s\"\nkind = \"generate\"\nproviders = [\"art\"]\nprompt = \"x\"\n";
    let e = build(&text);
    assert_eq!(e.path, "providers.art.api_key");
    assert!(e.message.contains("api_key_env"), "{e}");
    assert!(!e.to_string().contains("sk-secret-123"));
}

#[test]
fn zipped_lists_of_unequal_length_are_rejected() {
    let text = format!(
        "{BASE}\n[[matrix.zip]]\nchannel = [\"a\", \"b\"]\nsize = [\"1x1\"]\n\n[[steps]]\nname = \"s\"\nkind = \"generate\"\nproviders = [\"art\"]\nprompt = \"x\"\n"
    );
    let e = build(&text);
    assert_eq!(e.path, "matrix.zip[0].size");
    assert_eq!(e.line, Some(line_of(&text, "size = [")));
}

#[test]
fn an_unknown_preset_and_a_bad_gate_policy_are_named() {
    let text = format!(
        "{BASE}\n[[steps]]\nname = \"s\"\nkind = \"generate\"\nproviders = [\"art\"]\nprompt = \"x\"\npreset = \"brand\"\n"
    );
    assert!(build(&text).message.contains("unknown preset `brand`"));
    let text = format!(
        "{BASE}\n[[steps]]\nname = \"s\"\nkind = \"generate\"\nproviders = [\"art\"]\nprompt = \"x\"\non_gate_fail = \"retry\"\n"
    );
    let e = build(&text);
    assert_eq!(e.path, "steps[0].on_gate_fail");
    assert!(e.message.contains("unknown policy `retry`"), "{e}");
}
