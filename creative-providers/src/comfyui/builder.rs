//! The [`ComfyUiBuilder`]: every setting checked (the workflow read and
//! validated, the injection map parsed or detected, the ranges, the pool's
//! URLs) and the provider built, with its settings fingerprint. Apart from the
//! provider so the settings read as one piece; a spec's table reaches it through
//! [`ComfyUi::from_settings`].

use std::collections::BTreeMap;
use std::time::Duration;

use creative_core::ConfigError;
use serde_json::{json, Map, Value};

use super::pool::{Pool, Server};
use super::workflow::{detect_inject, parse_inject, validate_workflow};
use super::{millis, random_hex, ComfyUi, Extra};
use crate::http::{http_setters, Auth, HttpSettingsBuilder};

/// Builds a [`ComfyUi`] provider. Setters never fail; [`build`](Self::build)
/// reports the first bad value, naming the field as a spec's settings table
/// spells it (the ranges are listed at [`register`](super::register)). Debug never shows a key.
///
/// ```
/// # fn main() -> Result<(), creative_core::ConfigError> {
/// use serde_json::json;
/// use creative_providers::comfyui::ComfyUi;
/// let workflow = json!({
///     "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20}},
///     "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "x"}},
///     "9": {"class_type": "SaveImage", "inputs": {"images": ["3", 0]}}
/// });
/// let comfy = ComfyUi::builder()
///     .base_url("http://127.0.0.1:8188")
///     .workflow(workflow)
///     .inject("prompt", "6.inputs.text")
///     .build()?;
/// assert_eq!(comfy.injection_map()["prompt"][0].node, "6");
/// let e = ComfyUi::builder().build().unwrap_err();
/// assert_eq!(e.field(), "workflow");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ComfyUiBuilder {
    pub(super) id: String,
    pub(super) http: HttpSettingsBuilder,
    pub(super) extra: Extra,
}

impl ComfyUiBuilder {
    http_setters!("comfyui");

    /// The workflow, in ComfyUI's "Export (API)" format (a JSON object of nodes).
    pub fn workflow(mut self, workflow: Value) -> Self {
        self.extra.workflow = Some(workflow);
        self
    }

    /// Or the path of the workflow file (relative to the working directory).
    pub fn workflow_path(mut self, path: impl AsRef<std::path::Path>) -> Self {
        self.extra.workflow_path = Some(path.as_ref().to_string_lossy().into_owned());
        self
    }

    /// Inject a request field (`prompt`, `seed`, `width`, ... or any key of
    /// `Request::raw`) at `node_id.inputs.field`; call again to add more paths.
    /// Without any, the injection points are detected from the workflow.
    pub fn inject(mut self, name: impl Into<String>, path: impl Into<String>) -> Self {
        let map = self.extra.inject.get_or_insert_with(Map::new);
        let name = name.into();
        let path = Value::String(path.into());
        match map.get_mut(&name) {
            Some(Value::Array(a)) => a.push(path),
            Some(one) => *one = Value::Array(vec![one.clone(), path]),
            None => {
                map.insert(name, path);
            }
        }
        self
    }

    /// Take outputs only from these nodes.
    pub fn output_nodes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, nodes: I) -> Self {
        self.extra.output_nodes = Some(nodes.into_iter().map(Into::into).collect());
        self
    }

    /// The websocket client id (default: random per provider).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.extra.client_id = Some(id.into());
        self
    }

    /// First wait between polls of a prompt (default 250 ms; 1 ms to 60 s).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.extra.poll_interval_ms = Some(millis(every));
        self
    }

    /// Longest wait between polls (default 2 s; 1 ms to 600 s).
    pub fn poll_max(mut self, most: Duration) -> Self {
        self.extra.poll_max_ms = Some(millis(most));
        self
    }

    /// Dollars per output image, for reports (default 0; not negative).
    pub fn cost_per_image(mut self, usd: f64) -> Self {
        self.extra.cost_per_image = Some(usd);
        self
    }

    /// Dollars per second of run time, for reports (default 0; not negative).
    pub fn cost_per_second(mut self, usd: f64) -> Self {
        self.extra.cost_per_second = Some(usd);
        self
    }

    /// Most images in one prompt (default 16; 1 to 4096).
    pub fn max_batch(mut self, n: u32) -> Self {
        self.extra.max_batch = Some(n);
        self
    }

    /// Follow prompts on the websocket (default true; polling stays the fallback).
    pub fn websocket(mut self, on: bool) -> Self {
        self.extra.websocket = Some(on);
        self
    }

    /// While on the websocket, check history and queue this often anyway
    /// (default 10 s; 10 ms to an hour).
    pub fn ws_check(mut self, every: Duration) -> Self {
        self.extra.ws_check_ms = Some(millis(every));
        self
    }

    /// Leave finished prompts in ComfyUI's history (default false).
    pub fn keep_history(mut self, keep: bool) -> Self {
        self.extra.keep_history = Some(keep);
        self
    }

    /// A pool of interchangeable servers in place of one `base_url`.
    pub fn base_urls<I: IntoIterator<Item = S>, S: Into<String>>(mut self, urls: I) -> Self {
        self.extra.base_urls = Some(urls.into_iter().map(Into::into).collect());
        self
    }

    /// How long a pool server that stopped answering is passed over, in
    /// seconds (default 30; 1 to 3600).
    pub fn server_down_s(mut self, seconds: u64) -> Self {
        self.extra.server_down_s = Some(seconds);
        self
    }

    /// Check every value, read the workflow and build the provider.
    pub fn build(self) -> Result<ComfyUi, ConfigError> {
        let ComfyUiBuilder { id, http, extra } = self;
        let one_base_url = http.has_base_url();
        let http = http.build()?;
        let (workflow, workflow_hash) = match (extra.workflow, extra.workflow_path) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "workflow",
                    "give `workflow` or `workflow_path`, not both",
                ))
            }
            (Some(w), None) => {
                let hash = creative_core::settings_fingerprint("comfyui-workflow", &w);
                (w, hash)
            }
            (None, Some(p)) => {
                let path = std::path::PathBuf::from(p);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| ConfigError::new("workflow_path", format!("cannot read `{}`: {e}", path.display())))?;
                // The file's own hash, so `b3sum` on the file finds it in a manifest.
                let hash = blake3::hash(text.as_bytes()).to_hex().to_string();
                let w = serde_json::from_str(&text)
                    .map_err(|e| ConfigError::new("workflow_path", format!("`{}` is not JSON: {e}", path.display())))?;
                (w, hash)
            }
            (None, None) => {
                return Err(ConfigError::new(
                    "workflow",
                    "a ComfyUI provider needs `workflow` or `workflow_path`",
                ))
            }
        };
        let Value::Object(workflow) = workflow else {
            return Err(ConfigError::new(
                "workflow",
                "must be a JSON object of nodes (ComfyUI's \"Export (API)\" format)",
            ));
        };
        validate_workflow(&workflow)?;
        let inject = match extra.inject {
            Some(m) => parse_inject(&m, &workflow)?,
            None => detect_inject(&workflow),
        };
        if let Some(nodes) = &extra.output_nodes {
            for n in nodes {
                if !workflow.contains_key(n) {
                    return Err(ConfigError::new(
                        "output_nodes",
                        format!("node `{n}` is not in the workflow"),
                    ));
                }
            }
        }
        let poll_interval_ms = extra.poll_interval_ms.unwrap_or(250);
        let poll_max_ms = extra.poll_max_ms.unwrap_or(2000);
        let ws_check_ms = extra.ws_check_ms.unwrap_or(10_000);
        let max_batch = extra.max_batch.unwrap_or(16);
        let cost_per_image = extra.cost_per_image.unwrap_or(0.0);
        let cost_per_second = extra.cost_per_second.unwrap_or(0.0);
        let server_down_s = extra.server_down_s.unwrap_or(30);
        for (k, v, lo, hi) in [
            ("poll_interval_ms", poll_interval_ms, 1, 60_000),
            ("poll_max_ms", poll_max_ms, 1, 600_000),
            ("ws_check_ms", ws_check_ms, 10, 3_600_000),
            ("max_batch", u64::from(max_batch), 1, 4096),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(ConfigError::new(k, format!("must be between {lo} and {hi}, not {v}")));
            }
        }
        for (k, v) in [("cost_per_image", cost_per_image), ("cost_per_second", cost_per_second)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(ConfigError::new(k, format!("must be a non-negative number, not {v}")));
            }
        }
        let auth = || http.api_key.clone().map(Auth::Bearer).unwrap_or(Auth::None);
        let servers = match &extra.base_urls {
            None => vec![Server::new(http.transport(&id, auth()).build()?)],
            Some(_) if one_base_url => {
                return Err(ConfigError::new(
                    "base_urls",
                    "give `base_url` (one server) or `base_urls` (a pool), not both",
                ))
            }
            Some(urls) if urls.is_empty() => {
                return Err(ConfigError::new("base_urls", "is empty: name at least one server"))
            }
            Some(urls) => {
                let mut out = Vec::with_capacity(urls.len());
                for (i, u) in urls.iter().enumerate() {
                    let mut one = http.clone();
                    one.base_url = crate::http::Url::parse(u)
                        .ok()
                        .filter(|x| matches!(x.scheme(), "http" | "https"))
                        .ok_or_else(|| {
                            ConfigError::new(format!("base_urls[{i}]"), format!("`{u}` is not an http or https URL"))
                        })?;
                    out.push(Server::new(one.transport(&id, auth()).build()?));
                }
                out
            }
        };
        if !(1..=3600).contains(&server_down_s) {
            return Err(ConfigError::new(
                "server_down_s",
                format!("must be between 1 and 3600, not {server_down_s}"),
            ));
        }
        let inject_json: BTreeMap<&str, Vec<String>> = inject
            .iter()
            .map(|(k, paths)| {
                (
                    k.as_str(),
                    paths.iter().map(|p| format!("{}.inputs.{}", p.node, p.field)).collect(),
                )
            })
            .collect();
        let mut fp_http = http.clone();
        if extra.base_urls.is_some() {
            // A pool's servers are interchangeable (they hold the same models):
            // adding or replacing one must not make finished work look stale.
            fp_http.base_url = crate::http::Url::parse("http://comfyui-pool")
                .map_err(|e| ConfigError::new("base_urls", e.to_string()))?;
        }
        let fingerprint = fp_http.fingerprint(
            "comfyui",
            json!({
                "workflow": workflow_hash,
                "inject": inject_json,
                "output_nodes": extra.output_nodes,
            }),
        );
        Ok(ComfyUi {
            id,
            workflow_hash,
            fingerprint,
            pool: Pool::new(servers),
            server_down: Duration::from_secs(server_down_s),
            workflow,
            inject,
            output_nodes: extra.output_nodes,
            client_id: extra.client_id.unwrap_or_else(random_hex),
            poll: (
                Duration::from_millis(poll_interval_ms.max(1)),
                Duration::from_millis(poll_max_ms.max(poll_interval_ms).max(1)),
            ),
            cost_per_image,
            cost_per_second,
            max_batch: max_batch.max(1),
            websocket: extra.websocket.unwrap_or(true),
            ws_check: Duration::from_millis(ws_check_ms),
            keep_history: extra.keep_history.unwrap_or(false),
        })
    }
}
