//! Static checks: what a spec says that can only be wrong (an error) or is
//! silently dropped (a warning), found before any job runs. Building the spec
//! already checks types, ranges, templates and file-name collisions at index 0;
//! these are the cases it lets through.

use serde_json::Value;

use creative::campaign::spec::{Campaign, Layer, Registry, Spec};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The spec cannot do what it says: `check` and `run` refuse it.
    Error,
    /// Something in the spec has no effect.
    Warning,
}

/// One finding, its message naming the field path.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Error or warning.
    pub level: Level,
    /// What and where.
    pub message: String,
}

/// Parameters a text generation does not use.
const NOT_FOR_TEXT: &[&str] = &[
    "size",
    "width",
    "height",
    "aspect_ratio",
    "steps",
    "guidance",
    "style",
    "negative_prompt",
    "duration_s",
    "voice",
];

/// Parameters an image generation does not use.
const NOT_FOR_IMAGES: &[&str] = &["temperature", "max_tokens", "system", "duration_s", "voice"];

/// The static checks of a spec that built.
pub fn check(spec: &Spec, campaign: &Campaign, _reg: &Registry) -> Vec<Finding> {
    let mut out = Vec::new();
    let doc = &spec.doc;
    let vars: Vec<String> = campaign
        .jobs()
        .get(0)
        .map(|j| j.vars().keys().cloned().collect())
        .unwrap_or_default();
    for (i, step) in doc.steps.iter().enumerate() {
        let at = format!("{}: steps[{i}] `{}`", spec.origin, step.name);
        variables_named(&mut out, &at, &step.settings, &vars);
        for (g, gate) in step.gates.iter().enumerate() {
            variables_named(
                &mut out,
                &format!("{at}: gates[{g}] `{}`", gate.kind),
                &gate.settings,
                &vars,
            );
        }
        if step.kind == "generate" {
            ignored_params(&mut out, spec, i, &at);
        }
    }
    several_outputs_one_name(&mut out, spec, campaign);
    out
}

/// A setting that names a job variable (`aspect_var`, any `*_var`) must name
/// one the matrix defines: otherwise every job silently takes the fallback.
fn variables_named(out: &mut Vec<Finding>, at: &str, settings: &serde_json::Map<String, Value>, vars: &[String]) {
    for (key, v) in settings {
        let (true, Some(name)) = (key.ends_with("_var"), v.as_str()) else {
            continue;
        };
        if vars.iter().any(|x| x == name) {
            continue;
        }
        let near = super::schema::nearest(name, vars)
            .map(|n| format!(" (did you mean `{n}`?)"))
            .unwrap_or_default();
        out.push(Finding {
            level: Level::Error,
            message: format!(
                "{at}: {key} = \"{name}\" names a variable no job defines{near}; the jobs' variables are: {}",
                if vars.is_empty() {
                    "none".to_string()
                } else {
                    vars.join(", ")
                }
            ),
        });
    }
}

/// The layers a generate step's parameters come from, each with its path.
fn layers(spec: &Spec, i: usize) -> Vec<(String, Layer)> {
    let doc = &spec.doc;
    let step = &doc.steps[i];
    let mut v = vec![("[defaults]".to_string(), doc.defaults.clone())];
    if let Some(Value::String(p)) = step.settings.get("preset") {
        if let Some(l) = doc.presets.get(p) {
            v.push((format!("[presets.{p}]"), l.clone()));
        }
    }
    let own: serde_json::Map<String, Value> = step
        .settings
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "providers" | "prompt" | "task" | "preset" | "keep"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Ok(l) = serde_json::from_value::<Layer>(Value::Object(own)) {
        v.push((format!("steps[{i}]"), l));
    }
    v.push(("[overrides]".to_string(), doc.overrides.clone()));
    v
}

/// Parameters set for a generate step whose task does not use them (`steps =
/// 30` in [defaults] reaching a text model): a warning naming where each was set.
fn ignored_params(out: &mut Vec<Finding>, spec: &Spec, i: usize, at: &str) {
    let task = spec.doc.steps[i]
        .settings
        .get("task")
        .and_then(Value::as_str)
        .unwrap_or("image");
    let ignored: &[&str] = match task {
        "text" => NOT_FOR_TEXT,
        "image" | "image_edit" => NOT_FOR_IMAGES,
        _ => return,
    };
    for (from, layer) in layers(spec, i) {
        let Ok(Value::Object(set)) = serde_json::to_value(&layer) else {
            continue;
        };
        let names: Vec<&str> = set.keys().map(String::as_str).filter(|k| ignored.contains(k)).collect();
        if !names.is_empty() {
            out.push(Finding {
                level: Level::Warning,
                message: format!(
                    "{at} (task {task}): {task} generation does not use {} (set in {from})",
                    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                ),
            });
        }
    }
}

/// A delivered step that makes several outputs per job (renditions, count or
/// keep above 1) with a file-name template that cannot tell them apart.
fn several_outputs_one_name(out: &mut Vec<Finding>, spec: &Spec, campaign: &Campaign) {
    let Some(template) = &spec.doc.output.file_name else {
        return;
    };
    let tells_apart = ["index", "id", "rendition"].iter().any(|v| template_uses(template, v));
    if tells_apart {
        return;
    }
    for name in campaign.deliver_steps() {
        let Some((i, step)) = spec.doc.steps.iter().enumerate().find(|(_, s)| &s.name == name) else {
            continue;
        };
        let n = |k: &str| step.settings.get(k).and_then(Value::as_u64).unwrap_or(1);
        let several = match step.kind.as_str() {
            "renditions" => step
                .settings
                .get("renditions")
                .and_then(Value::as_array)
                .is_some_and(|r| r.len() > 1),
            "generate" => n("count") > 1 || n("keep") > 1,
            _ => false,
        };
        if several {
            out.push(Finding {
                level: Level::Error,
                message: format!(
                    "{}: output.file_name `{template}` gives every output of steps[{i}] `{name}` the same name (it makes several per job); add `{{{{ index }}}}`",
                    spec.origin
                ),
            });
        }
    }
}

/// Whether a template reads the variable `name` (in `{{ }}` or `{% %}`).
fn template_uses(template: &str, name: &str) -> bool {
    template
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .any(|w| w == name)
}

#[cfg(test)]
mod tests {
    use super::template_uses;

    #[test]
    fn a_template_uses_a_variable_by_whole_word_only() {
        assert!(template_uses("{{ product }}-{{ index }}.png", "index"));
        assert!(!template_uses("{{ product }}-{{ reindex }}.png", "index"));
    }
}
