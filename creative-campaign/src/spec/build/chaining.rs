//! Prompt chaining at build time: which upstream steps a template may read
//! (`{{ steps.NAME... }}` names an ancestor), and the placeholders a dry run
//! shows for their outputs.

use crate::spec::error::{SpecError, SpecErrorKind as K};
use crate::spec::schema::StepSpec;
use crate::spec::Spec;
use creative_core::template::{Template, UPSTREAM};

use super::{err, list};

impl Spec {
    /// Whether step `name` is upstream of `s`: one of its inputs, or of theirs,
    /// and so on (a cycle, refused elsewhere, ends the walk).
    pub(super) fn is_ancestor(&self, name: &str, s: &StepSpec) -> bool {
        let mut seen = std::collections::BTreeSet::new();
        let mut stack: Vec<&str> = s.inputs.iter().map(String::as_str).collect();
        while let Some(x) = stack.pop() {
            if x == name {
                return true;
            }
            if seen.insert(x) {
                if let Some(up) = self.doc.steps.iter().find(|t| t.name == x) {
                    stack.extend(up.inputs.iter().map(String::as_str));
                }
            }
        }
        false
    }

    /// Prompt chaining, checked: every `steps.NAME` a template reads names a
    /// step upstream of this one, an input or an input's ancestor (so it has
    /// run, and the executor hands its output to the template),
    /// and every `steps.NAME.json.FIELD` names a field the upstream step's text
    /// gate schema declares, when it declares fields. Returns placeholders for
    /// what the template reads, for the render check and estimates.
    pub(super) fn upstream_placeholder(
        &self,
        t: &Template,
        s: &StepSpec,
        path: &str,
    ) -> Result<Option<serde_json::Value>, SpecError> {
        if !t.reads_upstream() {
            return Ok(None);
        }
        let names: Vec<&str> = self.doc.steps.iter().map(|s| s.name.as_str()).collect();
        let mut tree = serde_json::Map::new();
        // Every input is there whole, as it will be at run time.
        for input in &s.inputs {
            let ph = |field: &str| serde_json::Value::String(format!("‹steps.{input}.{field}›"));
            tree.insert(
                input.clone(),
                serde_json::json!({
                    "text": ph("text"), "texts": [ph("text")], "json": {}, "meta": {},
                    "id": ph("id"), "media": ph("media"), "provider": ph("provider"),
                    "model": ph("model"), "count": 1,
                }),
            );
        }
        for p in t.paths() {
            let Some(rest) = p.strip_prefix(UPSTREAM).and_then(|r| r.strip_prefix('.')) else {
                continue;
            };
            let parts: Vec<&str> = rest.split('.').collect();
            let name = parts[0];
            let shown = format!("{{{{ {p} }}}}");
            if name == s.name {
                return Err(err(
                    K::Invalid,
                    path,
                    format!("`{shown}` reads step `{name}`'s own output; a step can read only the outputs of the steps upstream of it"),
                ));
            }
            if !names.contains(&name) {
                return Err(err(
                    K::UnknownStep,
                    path,
                    format!("`{shown}` names no step `{name}`; steps are: {}", list(&names)),
                ));
            }
            if !self.is_ancestor(name, s) {
                return Err(err(
                    K::UnknownStep,
                    path,
                    format!(
                        "`{shown}` reads step `{name}`, which is not upstream of step `{}`: add \"{name}\" to its inputs (or to an input's) so it runs first and its output reaches the prompt (inputs: {})",
                        s.name,
                        list(&s.inputs)
                    ),
                ));
            }
            if parts.get(1) == Some(&"json") {
                if let (Some(field), Some(fields)) = (parts.get(2), self.json_fields(name)) {
                    if !fields.iter().any(|f| f == field) {
                        return Err(err(
                            K::Invalid,
                            path,
                            format!(
                                "`{shown}`: step `{name}`'s text gate schema declares no field `{field}`; it declares: {}",
                                list(&fields)
                            ),
                        ));
                    }
                }
            }
            // The leaf read gets a placeholder; the objects on the way exist.
            let mut node = tree.entry(name.to_string()).or_insert_with(|| serde_json::json!({}));
            for part in &parts[1..] {
                if !node.is_object() {
                    *node = serde_json::json!({});
                }
                let Some(obj) = node.as_object_mut() else { break };
                node = obj
                    .entry(part.to_string())
                    .or_insert_with(|| serde_json::Value::String(format!("‹{p}›")));
            }
        }
        Ok(Some(serde_json::Value::Object(tree)))
    }

    /// The top-level fields a step's output JSON has, as the `json_schema` of
    /// its text gate declares them (`properties`); `None` when it has no such
    /// gate or the schema lists no properties.
    pub(super) fn json_fields(&self, step: &str) -> Option<Vec<String>> {
        let s = self.doc.steps.iter().find(|s| s.name == step)?;
        s.gates.iter().filter(|g| g.kind == "text").find_map(|g| {
            let schema = g.settings.get("json_schema")?;
            // A schema that allows more fields than it lists cannot rule one out.
            if schema
                .get("additionalProperties")
                .is_some_and(|a| a != &serde_json::Value::Bool(false))
            {
                return None;
            }
            let props = schema.get("properties")?.as_object()?;
            Some(props.keys().cloned().collect())
        })
    }
}
