//! The workflow graph: where a request's fields go (an `inject` table parsed,
//! or the usual nodes found by class), the request written into a copy of the
//! workflow, and the graph walks the cached-output check needs. No I/O: all of
//! it is plain functions over the workflow's JSON, so it is tested alone.

use std::collections::{BTreeMap, BTreeSet};

use creative_core::{ConfigError, ErrorKind, ProviderError, Request, Task};
use serde_json::{Map, Value};

use super::ComfyUi;
use crate::http::wire_f32;

/// The request fields that can be injected, besides any key of `Request.raw`.
const KNOWN_NAMES: &[&str] = &[
    "prompt",
    "negative_prompt",
    "seed",
    "width",
    "height",
    "steps",
    "guidance",
    "batch_size",
    "image",
];

/// A `node_id.inputs.field` location in a workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePath {
    /// The node id.
    pub node: String,
    /// The input field.
    pub field: String,
}

impl NodePath {
    /// Parse `node.inputs.field` (or the short `node.field`).
    pub fn parse(s: &str) -> Option<NodePath> {
        let (node, rest) = s.split_once('.')?;
        let field = rest.strip_prefix("inputs.").unwrap_or(rest);
        (!node.is_empty() && !field.is_empty() && !field.contains('.')).then(|| NodePath {
            node: node.to_string(),
            field: field.to_string(),
        })
    }
}

impl ComfyUi {
    /// The workflow with the request injected (input images given by their uploaded names).
    pub fn build_workflow(&self, req: &Request, image_names: &[String]) -> Result<Map<String, Value>, ProviderError> {
        let mut wf = self.workflow.clone();
        let p = &req.params;
        let mut values: Vec<(&str, Value)> = vec![("prompt", Value::String(req.prompt.clone()))];
        if let Some(n) = &req.negative_prompt {
            values.push(("negative_prompt", n.clone().into()));
        }
        if let Some(s) = p.seed {
            values.push(("seed", s.into()));
        }
        if let Some(w) = p.width {
            values.push(("width", w.into()));
        }
        if let Some(h) = p.height {
            values.push(("height", h.into()));
        }
        if let Some(s) = p.steps {
            values.push(("steps", s.into()));
        }
        if let Some(g) = p.guidance.and_then(wire_f32) {
            values.push(("guidance", g));
        }
        if let Some(c) = p.count {
            values.push(("batch_size", c.into()));
        }
        if let Some(first) = image_names.first() {
            values.push(("image", first.clone().into()));
        }
        for (name, v) in values {
            if let Some(paths) = self.inject.get(name) {
                for path in paths {
                    set_input(&mut wf, path, v.clone()).map_err(|e| self.err(ErrorKind::Invalid, e.to_string()))?;
                }
            } else if name == "image" {
                return Err(self.err(
                    ErrorKind::Invalid,
                    "the request has an input image but the workflow has no `LoadImage` node and `inject.image` is not set",
                ));
            }
        }
        // Further images: `image_1`, `image_2`... when mapped.
        for (i, n) in image_names.iter().enumerate().skip(1) {
            if let Some(paths) = self.inject.get(&format!("image_{i}")) {
                for path in paths {
                    set_input(&mut wf, path, n.clone().into())
                        .map_err(|e| self.err(ErrorKind::Invalid, e.to_string()))?;
                }
            }
        }
        // Spec variables passed through `raw`: injection names first, node paths last.
        for (k, v) in &req.raw {
            if let Some(paths) = self.inject.get(k) {
                for path in paths {
                    set_input(&mut wf, path, v.clone()).map_err(|e| self.err(ErrorKind::Invalid, e.to_string()))?;
                }
            }
        }
        for (k, v) in &req.raw {
            if self.inject.contains_key(k) {
                continue;
            }
            let path = NodePath::parse(k).ok_or_else(|| {
                self.err(
                    ErrorKind::Invalid,
                    format!("raw key `{k}` is neither an `inject` name nor a `node_id.inputs.field` path"),
                )
            })?;
            set_input(&mut wf, &path, v.clone()).map_err(|e| self.err(ErrorKind::Invalid, e.to_string()))?;
        }
        Ok(wf)
    }

    pub(super) fn workflow_for(
        &self,
        request: &Request,
        names: &[String],
    ) -> Result<Map<String, Value>, ProviderError> {
        match request.task {
            Task::Image | Task::ImageEdit => self.build_workflow(request, names),
            t => Err(self.err(
                ErrorKind::Invalid,
                format!("comfyui runs image workflows, not `{}`", t.as_str()),
            )),
        }
    }
}

pub(super) fn validate_workflow(wf: &Map<String, Value>) -> Result<(), ConfigError> {
    let bad = |reason: String| Err(ConfigError::new("workflow", reason));
    if wf.is_empty() {
        return bad("the workflow has no nodes".into());
    }
    for (id, node) in wf {
        if node.get("class_type").and_then(Value::as_str).is_none() {
            return bad(format!(
                "workflow node `{id}` has no `class_type`: export the workflow with \"Export (API)\", not \"Save\""
            ));
        }
        if !node.get("inputs").is_some_and(Value::is_object) {
            return bad(format!("workflow node `{id}` has no `inputs` table"));
        }
    }
    Ok(())
}

pub(super) fn parse_inject(
    m: &Map<String, Value>,
    wf: &Map<String, Value>,
) -> Result<BTreeMap<String, Vec<NodePath>>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, v) in m {
        let field = || format!("inject.{name}");
        let list: Vec<&str> = match v {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .ok_or_else(|| ConfigError::new(field(), "paths must be strings"))
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(ConfigError::new(field(), "must be a path or a list of paths")),
        };
        let mut paths = Vec::new();
        for s in list {
            let p = NodePath::parse(s)
                .ok_or_else(|| ConfigError::new(field(), format!("`{s}` is not a `node_id.inputs.field` path")))?;
            if !wf.contains_key(&p.node) {
                return Err(ConfigError::new(
                    field(),
                    format!("node `{}` is not in the workflow", p.node),
                ));
            }
            paths.push(p);
        }
        out.insert(name.clone(), paths);
    }
    let _ = KNOWN_NAMES;
    Ok(out)
}

fn class_of<'a>(wf: &'a Map<String, Value>, id: &str) -> &'a str {
    wf.get(id)
        .and_then(|n| n.get("class_type"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn link_target(wf: &Map<String, Value>, node: &str, input: &str) -> Option<String> {
    wf.get(node)?
        .get("inputs")?
        .get(input)?
        .get(0)?
        .as_str()
        .map(String::from)
}

pub(super) fn detect_inject(wf: &Map<String, Value>) -> BTreeMap<String, Vec<NodePath>> {
    let mut out: BTreeMap<String, Vec<NodePath>> = BTreeMap::new();
    let mut add = |name: &str, node: &str, field: &str| {
        out.entry(name.to_string()).or_default().push(NodePath {
            node: node.to_string(),
            field: field.to_string(),
        });
    };
    let has = |id: &str, field: &str| {
        wf[id]
            .get("inputs")
            .and_then(|i| i.get(field))
            .is_some_and(|v| !v.is_array())
    };
    let mut load_images = Vec::new();
    for id in wf.keys() {
        let class = class_of(wf, id);
        if class.starts_with("KSampler") || class == "SamplerCustom" {
            for (name, fields) in [
                ("seed", &["seed", "noise_seed"][..]),
                ("steps", &["steps"][..]),
                ("guidance", &["cfg"][..]),
            ] {
                if let Some(f) = fields.iter().find(|f| has(id, f)) {
                    add(name, id, f);
                }
            }
            for (name, link) in [("prompt", "positive"), ("negative_prompt", "negative")] {
                if let Some(t) = link_target(wf, id, link) {
                    if class_of(wf, &t).starts_with("CLIPTextEncode") && has(&t, "text") {
                        add(name, &t, "text");
                    }
                }
            }
        } else if class.starts_with("Empty") && class.ends_with("LatentImage") {
            for f in ["width", "height", "batch_size"] {
                if has(id, f) {
                    add(f, id, f);
                }
            }
        } else if class == "LoadImage" && has(id, "image") {
            load_images.push(id.clone());
        }
    }
    for (i, id) in load_images.iter().enumerate() {
        add(if i == 0 { "image" } else { "" }, id, "image");
    }
    out.remove("");
    for (i, id) in load_images.iter().enumerate().skip(1) {
        out.insert(
            format!("image_{i}"),
            vec![NodePath {
                node: id.clone(),
                field: "image".into(),
            }],
        );
    }
    out
}

/// Why a value could not be written into the workflow: names the node and
/// the input.
#[derive(Debug, thiserror::Error)]
pub(super) enum SetInputError {
    /// The path names a node the workflow lacks, or one without inputs.
    #[error("workflow has no node `{node}` with inputs")]
    NoNode {
        /// The node id.
        node: String,
    },
    /// The input is wired to another node's output; only widget values can be set.
    #[error("`{node}.inputs.{field}` is a link to another node; inject into a widget input instead")]
    Link {
        /// The node id.
        node: String,
        /// The input field.
        field: String,
    },
}

pub(super) fn set_input(wf: &mut Map<String, Value>, p: &NodePath, v: Value) -> Result<(), SetInputError> {
    let inputs = wf
        .get_mut(&p.node)
        .and_then(|n| n.get_mut("inputs"))
        .and_then(Value::as_object_mut)
        .ok_or_else(|| SetInputError::NoNode { node: p.node.clone() })?;
    if inputs.get(&p.field).is_some_and(Value::is_array) {
        return Err(SetInputError::Link {
            node: p.node.clone(),
            field: p.field.clone(),
        });
    }
    inputs.insert(p.field.clone(), v);
    Ok(())
}

/// The node and every node it reads from, in `wf`.
pub(super) fn ancestors(wf: &Map<String, Value>, node: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![node.to_string()];
    while let Some(n) = stack.pop() {
        if !seen.insert(n.clone()) {
            continue;
        }
        if let Some(inputs) = wf.get(&n).and_then(|x| x.get("inputs")).and_then(Value::as_object) {
            for v in inputs.values() {
                if let Some(t) = v.get(0).and_then(Value::as_str).filter(|_| v.is_array()) {
                    stack.push(t.to_string());
                }
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_paths_parse() {
        assert_eq!(
            NodePath::parse("3.inputs.seed"),
            Some(NodePath {
                node: "3".into(),
                field: "seed".into()
            })
        );
        assert_eq!(NodePath::parse("3.seed").unwrap().field, "seed");
        assert!(NodePath::parse("seed").is_none());
        assert!(NodePath::parse("3.inputs.a.b").is_none());
    }
}
