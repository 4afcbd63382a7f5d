//! `comfyui`: run a user's API-format ComfyUI workflow.
//!
//! The workflow is the JSON ComfyUI's "Export (API)" writes: `{ node_id: {
//! class_type, inputs } }`. Each call:
//!
//! 1. copies the workflow and *injects* the request into it: each name of the
//!    `inject` table (`prompt`, `negative_prompt`, `seed`, `width`, `height`,
//!    `steps`, `guidance`, `batch_size`, `image`, or any key of `Request.raw`) names
//!    one or more `node_id.inputs.field` paths. Without an `inject` table the usual
//!    nodes are found by class (`KSampler*` for seed, steps and cfg and, through
//!    its `positive`/`negative` links, the prompt nodes; `Empty*LatentImage` for the
//!    size and batch; `LoadImage` for input images). `Request.raw` keys written as
//!    paths (`"12.inputs.strength"`) are set last: the escape hatch;
//! 2. uploads input images (`POST /upload/image`, multipart) and injects their
//!    names;
//! 3. opens ComfyUI's websocket (`/ws?clientId=`, with a client id of the call's
//!    own, since the server keeps one socket per id) and queues the prompt (`POST
//!    /prompt` with our own `prompt_id`, that `client_id`, and `output_nodes` as
//!    `partial_execution_targets`, so a server that knows the key runs only those
//!    outputs). Validation errors are reported per node. ComfyUI answers 200 when
//!    *some* outputs validate and silently drops the others, listing them in
//!    `node_errors`: that is an error here too, and the half-prompt is removed from
//!    the queue;
//! 4. waits for completion on the websocket (see the `ws` module): node
//!    progress becomes [`CallProgress`] reports (engine `Progress` events), and
//!    `executing` with no node says the history entry is stored. Every
//!    `ws_check_ms` (10 s) the history and queue are asked anyway. Without a
//!    websocket (setting `websocket = false`, a proxy that refuses the upgrade,
//!    a socket that closes) `GET /history/{prompt_id}` is polled with backoff.
//!    ComfyUI answers `{}` both for "not finished" and for "never heard of it", so
//!    an empty history is checked against `GET /queue`: a prompt in neither is
//!    *lost* (server restarted, history cleared) and fails with that reason
//!    instead of waiting forever ("unknown is not pending");
//! 5. fetches every output file of the prompt's output nodes with `GET /view`;
//! 6. deletes the prompt's history entry (`POST /history {delete}`; ComfyUI keeps
//!    up to 10,000 in memory, each with its workflow) unless `keep_history` is
//!    set. Uploaded inputs cannot be deleted through ComfyUI's API; they are named
//!    by their content (`creative_{id}`) and overwritten, so a campaign leaves one
//!    file per distinct input, not one per call.
//!
//! **Cached re-runs.** ComfyUI caches node results: a prompt identical to an earlier
//! one executes nothing (`execution_cached` lists the nodes) and its history points
//! at the files the earlier run wrote. Those files may since have been deleted, or
//! (after the output folder was cleaned and the file counter restarted) replaced by
//! another run's image under the same name. So for cached output nodes each
//! fetched PNG's embedded `prompt` metadata is compared with the inputs of the node
//! and its ancestors in our workflow; a missing or mismatching file makes the
//! backend queue the workflow once more with the stale output nodes'
//! `filename_prefix` changed (only those nodes re-run; the rest stays cached), or
//! ask the server to drop its cache (`POST /free`) when a node has no prefix.
//!
//! **Cancellation.** When the call is cancelled, times out or is dropped, the
//! queue is read: a prompt of ours that is running is interrupted (`POST
//! /interrupt {prompt_id}`), one still pending is removed from the queue (`POST
//! /queue {delete}`). `/interrupt` never goes out otherwise: servers before
//! September 2025 ignore its `prompt_id` and stop whatever runs, another
//! client's prompt included.
//!
//! **Candidates.** A request's `count` goes out as the workflow's `batch_size`,
//! one prompt for all, up to `max_batch`. More than that, or any count when the
//! workflow has no batch size, is split into several prompts run at once, each
//! seeded past the one before (`seed + k` for the prompt starting at candidate
//! `k`), so no two make the same images; a workflow whose seed cannot be
//! injected gets one prompt (its images could not differ).
//!
//! **A pool of servers** (`base_urls` in place of `base_url`; see [`pool`]):
//! each prompt goes to the server with the shortest queue, a server that stops
//! answering mid-prompt is marked down for `server_down_s` and the prompt is
//! queued again on another, and each server's attempts are reported as member
//! calls (`MemberAttemptFinished` events, so the run's report has a row per
//! server under the provider). A pool is a composite for the engine: no breaker
//! for the whole, and it is unavailable only when every server is marked down.
//! Preflight passes when one server answers. The settings fingerprint leaves
//! the servers out, so adding one does not make finished work stale. The
//! engine's `concurrency` for the provider bounds the whole pool: two calls
//! per server keep each one's queue fed while the last prompt's outputs are
//! fetched.
//!
//! Cost: ComfyUI is the user's own GPU; `cost_per_image` (default 0) prices
//! outputs, `cost_per_second` (default 0) prices the time the prompt executed,
//! not the time it waited in the queue: the span from the `execution_start`
//! message to the `execution_success` one in the history entry's
//! `status.messages` (ComfyUI's `PromptExecutor.add_message` stamps each with
//! `timestamp`, milliseconds since the epoch). A server that stamps no times is
//! billed the span from `execution_start` to the end as heard on the websocket,
//! else the wall time from queueing the prompt to finding it in the history,
//! less the time the queue polls saw it still pending. A cached re-run's
//! prompts add up. Estimates count `cost_per_image` only (no run time is known
//! before the call).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use creative_core::registry::BuildCtx;
use creative_core::{
    Artifact, CallCtx, CallProgress, Capabilities, ConfigError, ErrorKind, Generation, MediaType, MemberCall, Provider,
    ProviderError, Request, Task, Usage,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

pub mod pool;
mod ws;

use pool::{Pool, Server, ServerStats};

use crate::http::{
    backend_settings, cleanup_ctx, http_setters, sniff_media, wire_f32, Auth, CancelGuard, FormPart, HttpRequest,
    HttpSettings, HttpSettingsBuilder, LongJob, PollBackoff, SettingsDefaults, Transport,
};

const DEFAULTS: SettingsDefaults = SettingsDefaults {
    base_url: "http://127.0.0.1:8188",
    key_env: None,
    model: "workflow",
    timeout: Duration::from_secs(60),
};

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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Extra {
    /// The workflow inline.
    workflow: Option<Value>,
    /// Or a path to the workflow file, relative to the spec.
    workflow_path: Option<String>,
    /// name -> path or [paths].
    inject: Option<Map<String, Value>>,
    /// Only take outputs of these nodes.
    output_nodes: Option<Vec<String>>,
    client_id: Option<String>,
    poll_interval_ms: Option<u64>,
    poll_max_ms: Option<u64>,
    cost_per_image: Option<f64>,
    cost_per_second: Option<f64>,
    max_batch: Option<u32>,
    /// Follow prompts on ComfyUI's websocket (polling stays the fallback).
    websocket: Option<bool>,
    /// While following a prompt on the websocket, ask the history and queue
    /// this often anyway (a missed message, a restarted server).
    ws_check_ms: Option<u64>,
    /// Leave finished prompts in ComfyUI's history instead of deleting them.
    keep_history: Option<bool>,
    /// A pool of servers instead of one `base_url`.
    base_urls: Option<Vec<String>>,
    /// How long a pool server that stopped answering is passed over.
    server_down_s: Option<u64>,
}

/// Whole milliseconds of a duration, saturating (the ranges checked at build are far below).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

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

/// The ComfyUI backend. See the [module docs](self).
pub struct ComfyUi {
    id: String,
    /// BLAKE3 hex of the workflow: the file's bytes, or the inline workflow's canonical JSON.
    workflow_hash: String,
    /// The settings fingerprint, computed once.
    fingerprint: String,
    /// The servers (one for `base_url`, several for `base_urls`).
    pool: Pool,
    /// How long a server that stopped answering is passed over.
    server_down: Duration,
    workflow: Map<String, Value>,
    inject: BTreeMap<String, Vec<NodePath>>,
    output_nodes: Option<Vec<String>>,
    client_id: String,
    poll: (Duration, Duration),
    cost_per_image: f64,
    cost_per_second: f64,
    max_batch: u32,
    websocket: bool,
    ws_check: Duration,
    keep_history: bool,
}

impl std::fmt::Debug for ComfyUi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComfyUi")
            .field("id", &self.id)
            .field(
                "servers",
                &self
                    .pool
                    .servers
                    .iter()
                    .map(|s| s.transport.clone())
                    .collect::<Vec<_>>(),
            )
            .field("nodes", &self.workflow.len())
            .field("inject", &self.inject.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn random_hex() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// Builds a [`ComfyUi`] provider. Setters never fail; [`build`](Self::build)
/// reports the first bad value, naming the field as a spec's settings table
/// spells it (the ranges are listed at [`register`]). Debug never shows a key.
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
    id: String,
    http: HttpSettingsBuilder,
    extra: Extra,
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

impl ComfyUi {
    /// A builder with every default (see [`register`] for the settings).
    pub fn builder() -> ComfyUiBuilder {
        ComfyUiBuilder {
            id: "comfyui".into(),
            http: HttpSettings::builder(DEFAULTS),
            extra: Extra::default(),
        }
    }

    /// Build from a spec's settings (see [`register`]): the table fills a
    /// [`ComfyUiBuilder`], with `workflow_path` resolved against the spec's
    /// folder. The error's field is the refused key.
    pub fn from_settings(id: &str, settings: &Value, ctx: &BuildCtx) -> Result<Self, ConfigError> {
        let (http, rest) = HttpSettingsBuilder::parse(settings, DEFAULTS)?;
        let mut extra: Extra = backend_settings(rest)?;
        if let Some(p) = &extra.workflow_path {
            extra.workflow_path = Some(ctx.resolve(p).to_string_lossy().into_owned());
        }
        ComfyUiBuilder {
            id: id.to_string(),
            http,
            extra,
        }
        .build()
    }

    /// BLAKE3 hex of the workflow: the bytes of the `workflow_path` file, or the
    /// canonical JSON of an inline `workflow`. Recorded in every output's
    /// provenance (`workflow_hash`).
    pub fn workflow_hash(&self) -> &str {
        &self.workflow_hash
    }

    /// Where each injectable name goes.
    pub fn injection_map(&self) -> &BTreeMap<String, Vec<NodePath>> {
        &self.inject
    }

    fn err(&self, kind: ErrorKind, msg: impl Into<String>) -> ProviderError {
        ProviderError::new(kind, self.id.clone(), msg)
    }

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
                    set_input(&mut wf, path, v.clone()).map_err(|m| self.err(ErrorKind::Invalid, m))?;
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
                    set_input(&mut wf, path, n.clone().into()).map_err(|m| self.err(ErrorKind::Invalid, m))?;
                }
            }
        }
        // Spec variables passed through `raw`: injection names first, node paths last.
        for (k, v) in &req.raw {
            if let Some(paths) = self.inject.get(k) {
                for path in paths {
                    set_input(&mut wf, path, v.clone()).map_err(|m| self.err(ErrorKind::Invalid, m))?;
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
            set_input(&mut wf, &path, v.clone()).map_err(|m| self.err(ErrorKind::Invalid, m))?;
        }
        Ok(wf)
    }

    async fn upload(&self, srv: &Server, a: &Artifact, ctx: &CallCtx) -> Result<String, ProviderError> {
        let name = format!("creative_{}.{}", a.id().short(), a.media().extension());
        let parts = vec![
            FormPart::file("image", a.data().clone(), name, a.media().as_str()),
            FormPart::text("type", "input"),
            FormPart::text("overwrite", "true"),
        ];
        let v: Value = srv
            .transport
            .send_json(HttpRequest::post_multipart("upload/image", parts), ctx)
            .await?;
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| self.err(ErrorKind::Protocol, format!("upload answer without `name`: {v}")))?;
        Ok(match v.get("subfolder").and_then(Value::as_str) {
            Some(s) if !s.is_empty() => format!("{s}/{name}"),
            _ => name.to_string(),
        })
    }

    /// Queue the prompt; returns the id the server filed it under (ours, unless an
    /// older server ignores the `prompt_id` we suggest).
    async fn queue_prompt(
        &self,
        srv: &Server,
        wf: &Map<String, Value>,
        prompt_id: &str,
        client_id: &str,
        ctx: &CallCtx,
    ) -> Result<String, ProviderError> {
        let mut body = json!({ "prompt": wf, "client_id": client_id, "prompt_id": prompt_id });
        if let Some(nodes) = &self.output_nodes {
            // Servers since mid-2025 run only these outputs (and what they need);
            // older ones ignore the key and run every output, of which only
            // these are fetched.
            body["partial_execution_targets"] = json!(nodes);
        }
        let resp = match srv.transport.send(HttpRequest::post_json("prompt", body), ctx).await {
            Ok(r) => r,
            Err(e) => return Err(self.explain_prompt_error(e, wf)),
        };
        let v: Value = resp.json(&self.id)?;
        let prompt_id = v.get("prompt_id").and_then(Value::as_str).unwrap_or(prompt_id);
        if let Some(errs) = v
            .get("node_errors")
            .and_then(Value::as_object)
            .filter(|m| !m.is_empty())
        {
            // Valid outputs were queued and the invalid ones silently dropped: the
            // result would be incomplete, so take the prompt back and fail.
            spawn_cleanup(srv.transport.clone(), prompt_id.to_string());
            // Not an HTTP failure (ComfyUI answered 200), so no status is kept.
            return Err(self.err(
                ErrorKind::Invalid,
                format!(
                    "ComfyUI accepted the prompt but dropped outputs that failed validation: {}",
                    describe_node_errors(errs, wf)
                ),
            ));
        }
        Ok(prompt_id.to_string())
    }

    /// Replace the generic 400 message by the per-node validation errors.
    fn explain_prompt_error(&self, e: ProviderError, wf: &Map<String, Value>) -> ProviderError {
        let Some(body) = e
            .body()
            .and_then(|b| serde_json::from_str::<Value>(b).ok())
            .filter(|b| b.get("node_errors").is_some())
        else {
            return e;
        };
        let message = body
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or(e.message());
        let details = body.pointer("/error/details").and_then(Value::as_str);
        let mut msg = with_details(message, details);
        if let Some(errs) = body
            .get("node_errors")
            .and_then(Value::as_object)
            .filter(|m| !m.is_empty())
        {
            msg = format!("{msg}; {}", describe_node_errors(errs, wf));
        }
        let mut out = self.err(e.kind(), msg).with_retry_after(e.retry_after());
        if let Some(id) = e.request_id() {
            out = out.with_request_id(id);
        }
        if let Some(s) = e.status() {
            out = out.with_status(s);
        }
        if let Some(b) = e.body() {
            out = out.with_body(b);
        }
        out
    }

    /// Wait until the prompt is in the history: over the websocket when one is
    /// open, falling back to polling when it closes; `Err` when the prompt is
    /// lost, the call is cancelled or its time runs out.
    async fn wait(
        &self,
        srv: &Server,
        job: &mut LongJob,
        prompt_id: &str,
        ctx: &CallCtx,
        sock: Option<ws::Socket>,
    ) -> Result<Finished, ProviderError> {
        let since = tokio::time::Instant::now();
        let mut started = None;
        if let Some(mut sock) = sock {
            match self.listen(srv, &mut sock, prompt_id, ctx, since, &mut started).await? {
                Some(done) => return Ok(done),
                None => tracing::debug!(provider = %self.id, prompt_id, "websocket closed; polling instead"),
            }
        }
        self.poll(srv, job, prompt_id, ctx, since, started).await
    }

    /// Follow the prompt on the websocket. Every `ws_check` without the end, the
    /// history and queue are asked once (a message the socket missed, a prompt
    /// lost to a restart). `Ok(None)` when the socket closed first.
    async fn listen(
        &self,
        srv: &Server,
        sock: &mut ws::Socket,
        prompt_id: &str,
        ctx: &CallCtx,
        since: tokio::time::Instant,
        started: &mut Option<tokio::time::Instant>,
    ) -> Result<Option<Finished>, ProviderError> {
        let mut ended: Option<tokio::time::Instant> = None;
        let mut stage = String::new();
        let mut next_check = since + self.ws_check;
        loop {
            let ev = tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => return Err(ProviderError::cancelled(&self.id)),
                _ = until_deadline(ctx) => return Err(self.out_of_time(prompt_id, since, started.is_some())),
                ev = sock.next_for(prompt_id) => ev,
                _ = tokio::time::sleep_until(next_check) => {
                    next_check = tokio::time::Instant::now() + self.ws_check;
                    match self.check(srv, prompt_id, ctx).await.map_err(|e| self.timed_out(e, ctx, prompt_id, since, started.is_some()))? {
                        Check::Done(entry) => return Ok(Some(self.finished(entry, since, *started, ended))),
                        Check::Pending | Check::Running => continue,
                    }
                }
            };
            let now = tokio::time::Instant::now();
            match ev {
                None => return Ok(None),
                Some(ws::WsEvent::Queue(n)) => srv.set_queue(n),
                Some(ws::WsEvent::Started) => *started = Some(now),
                Some(ws::WsEvent::Executing(node)) => {
                    stage = self.stage(&node);
                    ctx.report_progress(CallProgress {
                        stage: stage.clone(),
                        done: 0,
                        total: 0,
                    });
                }
                Some(ws::WsEvent::Progress { node, value, max }) => {
                    if let Some(n) = node {
                        stage = self.stage(&n);
                    }
                    ctx.report_progress(CallProgress {
                        stage: stage.clone(),
                        done: value,
                        total: max,
                    });
                }
                // The history entry is stored just after: look soon.
                Some(ws::WsEvent::Ended) => {
                    ended.get_or_insert(now);
                    next_check = now + self.poll.0;
                }
                Some(ws::WsEvent::Stored) => {
                    ended.get_or_insert(now);
                    let h: Value = srv
                        .transport
                        .send_json(HttpRequest::get(format!("history/{prompt_id}")), ctx)
                        .await
                        .map_err(|e| self.timed_out(e, ctx, prompt_id, since, true))?;
                    if let Some(entry) = h.get(prompt_id) {
                        return Ok(Some(self.finished(entry.clone(), since, *started, ended)));
                    }
                    next_check = now + self.poll.0;
                }
            }
        }
    }

    /// `node 3 (KSampler)`, for progress events.
    fn stage(&self, node: &str) -> String {
        match self
            .workflow
            .get(node)
            .and_then(|n| n.get("class_type"))
            .and_then(Value::as_str)
        {
            Some(class) => format!("node {node} ({class})"),
            None => format!("node {node}"),
        }
    }

    fn finished(
        &self,
        entry: Value,
        since: tokio::time::Instant,
        started: Option<tokio::time::Instant>,
        ended: Option<tokio::time::Instant>,
    ) -> Finished {
        let now = tokio::time::Instant::now();
        Finished {
            entry,
            queued: started.map_or(Duration::ZERO, |s| s.saturating_duration_since(since)),
            heard_run_s: started.map(|s| ended.unwrap_or(now).saturating_duration_since(s).as_secs_f64()),
        }
    }

    /// Poll the history (and, while it is empty, the queue) with backoff until
    /// the prompt is done.
    async fn poll(
        &self,
        srv: &Server,
        job: &mut LongJob,
        prompt_id: &str,
        ctx: &CallCtx,
        since: tokio::time::Instant,
        started: Option<tokio::time::Instant>,
    ) -> Result<Finished, ProviderError> {
        let mut queued = started.map(|s| s.saturating_duration_since(since));
        let mut running = started.is_some();
        loop {
            job.wait(ctx)
                .await
                .map_err(|e| self.timed_out(e, ctx, prompt_id, since, running))?;
            match self
                .check(srv, prompt_id, ctx)
                .await
                .map_err(|e| self.timed_out(e, ctx, prompt_id, since, running))?
            {
                Check::Done(entry) => {
                    return Ok(Finished {
                        entry,
                        queued: queued.unwrap_or(Duration::ZERO),
                        heard_run_s: None,
                    })
                }
                Check::Pending => queued = Some(since.elapsed()),
                Check::Running => running = true,
            }
        }
    }

    /// Where the prompt is: done (its history entry), pending or running; `Err`
    /// when it is lost. ComfyUI answers `{}` both for "not finished" and for
    /// "never heard of it", so an empty history is checked against the queue.
    async fn check(&self, srv: &Server, prompt_id: &str, ctx: &CallCtx) -> Result<Check, ProviderError> {
        let history_path = format!("history/{prompt_id}");
        let h: Value = srv.transport.send_json(HttpRequest::get(&history_path), ctx).await?;
        if let Some(entry) = h.get(prompt_id) {
            return Ok(Check::Done(entry.clone()));
        }
        let q: Value = srv.transport.send_json(HttpRequest::get("queue"), ctx).await?;
        // Without a websocket this is how a pool learns the server's queue.
        let len = |k: &str| q.get(k).and_then(Value::as_array).map_or(0, |a| a.len() as u64);
        srv.set_queue(len("queue_running") + len("queue_pending"));
        if queue_in(&q, "queue_pending", prompt_id) {
            return Ok(Check::Pending);
        }
        if queue_in(&q, "queue_running", prompt_id) {
            return Ok(Check::Running);
        }
        // It left the queue: it is in the history now, or it is lost. (A prompt
        // moves from the queue to the history under one lock, so the history is
        // read again after the queue.)
        let h: Value = srv.transport.send_json(HttpRequest::get(&history_path), ctx).await?;
        if let Some(entry) = h.get(prompt_id) {
            return Ok(Check::Done(entry.clone()));
        }
        Err(self.err(
            ErrorKind::Unavailable,
            format!(
                "prompt {prompt_id} is lost: ComfyUI has it neither in its queue nor in its history \
                 (the server restarted, or the queue or history was cleared)"
            ),
        ))
    }

    /// `e`, or when it is a timeout because the call's deadline passed (not a
    /// slow answer), the error that says so (see [`ComfyUi::out_of_time`]).
    fn timed_out(
        &self,
        e: ProviderError,
        ctx: &CallCtx,
        prompt_id: &str,
        since: tokio::time::Instant,
        running: bool,
    ) -> ProviderError {
        let deadline_passed = ctx.deadline.is_some_and(|d| std::time::Instant::now() >= d);
        if e.kind() == ErrorKind::Timeout && deadline_passed {
            self.out_of_time(prompt_id, since, running)
        } else {
            e
        }
    }

    /// The error for a call whose time ran out while the prompt was queued or
    /// running, naming how long it waited.
    fn out_of_time(&self, prompt_id: &str, since: tokio::time::Instant, running: bool) -> ProviderError {
        let state = if running { "still running" } else { "still queued" };
        self.err(
            ErrorKind::Timeout,
            format!(
                "prompt {prompt_id} did not finish within the call's time limit: after {:.1} s it was {state} \
                 (raise the provider's `call_timeout_s`)",
                since.elapsed().as_secs_f64()
            ),
        )
    }

    fn check_status(&self, entry: &Value) -> Result<(), ProviderError> {
        let status = entry.get("status");
        let str_ = status.and_then(|s| s.get("status_str")).and_then(Value::as_str);
        let messages = status
            .and_then(|s| s.get("messages"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for m in &messages {
            let (Some(kind), Some(data)) = (m.get(0).and_then(Value::as_str), m.get(1)) else {
                continue;
            };
            match kind {
                "execution_error" => {
                    let node = data.get("node_id").and_then(Value::as_str).unwrap_or("?");
                    let ty = data.get("node_type").and_then(Value::as_str).unwrap_or("?");
                    let ex = data.get("exception_type").and_then(Value::as_str).unwrap_or("");
                    let msg = data
                        .get("exception_message")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .trim();
                    let oom = ex.contains("OutOfMemory")
                        || ex.contains("OOM")
                        || msg.to_lowercase().contains("out of memory");
                    let kind = if oom { ErrorKind::Transient } else { ErrorKind::Invalid };
                    return Err(self.err(kind, format!("node {node} ({ty}) failed: {ex}: {msg}")));
                }
                "execution_interrupted" => {
                    let node = data.get("node_id").and_then(Value::as_str).unwrap_or("?");
                    return Err(self.err(
                        ErrorKind::Transient,
                        format!("the prompt was interrupted at node {node}"),
                    ));
                }
                _ => {}
            }
        }
        if str_ == Some("error") {
            return Err(self.err(
                ErrorKind::Transient,
                "ComfyUI reports the prompt failed without details",
            ));
        }
        Ok(())
    }

    /// The output files of an entry, by node, restricted to the prompt's output nodes.
    fn outputs(&self, entry: &Value) -> Vec<(String, OutputFile)> {
        let executed: Option<BTreeSet<String>> = entry
            .get("prompt")
            .and_then(|p| p.get(4))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect());
        let mut files = Vec::new();
        let Some(outputs) = entry.get("outputs").and_then(Value::as_object) else {
            return files;
        };
        for (node, out) in outputs {
            // History holds the UI outputs of every node in the executor's cache,
            // including nodes this prompt did not run: keep only our output nodes.
            if !self.workflow.contains_key(node) || executed.as_ref().is_some_and(|e| !e.contains(node)) {
                continue;
            }
            if self.output_nodes.as_ref().is_some_and(|o| !o.contains(node)) {
                continue;
            }
            let Some(out) = out.as_object() else { continue };
            for list in out.values().filter_map(Value::as_array) {
                for f in list {
                    if let Ok(file) = serde_json::from_value::<OutputFile>(f.clone()) {
                        files.push((node.clone(), file));
                    }
                }
            }
        }
        // Saved outputs win over previews when both exist.
        if files.iter().any(|(_, f)| f.kind == "output") {
            files.retain(|(_, f)| f.kind == "output");
        }
        files
    }

    async fn fetch(
        &self,
        srv: &Server,
        f: &OutputFile,
        ctx: &CallCtx,
    ) -> Result<Option<(Bytes, Option<MediaType>)>, ProviderError> {
        let req = HttpRequest::get("view")
            .query("filename", &f.filename)
            .query("subfolder", &f.subfolder)
            .query("type", &f.kind);
        match srv.transport.send(req, ctx).await {
            Ok(r) => {
                let media = r.media_type();
                Ok(Some((r.body, media)))
            }
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
struct OutputFile {
    filename: String,
    #[serde(default)]
    subfolder: String,
    #[serde(rename = "type", default = "default_type")]
    kind: String,
}

fn default_type() -> String {
    "output".into()
}

/// Whether `GET /queue`'s list `key` (`queue_running`, `queue_pending`) holds
/// the prompt (items are `[number, prompt_id, prompt, extra, outputs]`).
fn queue_in(q: &Value, key: &str, prompt_id: &str) -> bool {
    q.get(key).and_then(Value::as_array).is_some_and(|items| {
        items
            .iter()
            .any(|it| it.get(1).and_then(Value::as_str) == Some(prompt_id))
    })
}

/// Seconds the prompt executed, from the `timestamp`s (milliseconds) of its
/// `execution_start` and `execution_success` messages; `None` when either is
/// missing or they run backwards.
fn execution_span_s(entry: &Value) -> Option<f64> {
    let messages = entry.pointer("/status/messages").and_then(Value::as_array)?;
    let stamp = |event: &str| {
        messages
            .iter()
            .filter(|m| m.get(0).and_then(Value::as_str) == Some(event))
            .find_map(|m| m.get(1).and_then(|d| d.get("timestamp")).and_then(Value::as_f64))
    };
    let (start, end) = (stamp("execution_start")?, stamp("execution_success")?);
    (end >= start && (end - start).is_finite()).then(|| (end - start) / 1000.0)
}

/// ComfyUI's `message` and `details` as one sentence: `Required input is
/// missing (images)`, `Cannot execute because node Foo does not exist (Node ID
/// '#2')`, without the period ComfyUI ends some messages with.
fn with_details(message: &str, details: Option<&str>) -> String {
    let m = message.trim().trim_end_matches('.');
    match details.map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) => format!("{m} ({d})"),
        None => m.to_string(),
    }
}

fn describe_node_errors(errs: &Map<String, Value>, wf: &Map<String, Value>) -> String {
    let mut parts = Vec::new();
    for (node, e) in errs {
        let class = e
            .get("class_type")
            .and_then(Value::as_str)
            .or_else(|| wf.get(node).and_then(|n| n.get("class_type")).and_then(Value::as_str))
            .unwrap_or("?");
        let reasons: Vec<String> = e
            .get("errors")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|r| {
                        let m = r.get("message").and_then(Value::as_str).unwrap_or("failed validation");
                        with_details(m, r.get("details").and_then(Value::as_str))
                    })
                    .collect()
            })
            .unwrap_or_default();
        parts.push(format!("node {node} ({class}): {}", reasons.join("; ")));
    }
    parts.join(" | ")
}

/// Take a prompt of ours back in the background (see [`take_back`]).
fn spawn_cleanup(t: Transport, prompt_id: String) {
    // Dropped armed: the guard runs it on the runtime, bounded.
    CancelGuard::new().arm(take_back(t, prompt_id));
}

/// Take a queued or running prompt back (on cancellation: the call's own token
/// is cancelled, so a fresh context is used).
///
/// `/interrupt` stops whatever the server is running: servers before September
/// 2025 ignore the `prompt_id` it names, so interrupting a prompt that is not
/// running would kill another client's. So the queue is asked first: a running
/// prompt of ours is interrupted, a pending one deleted from the queue, and when
/// the queue cannot be read only the (harmless) delete is sent.
async fn take_back(t: Transport, prompt_id: String) {
    let ctx = cleanup_ctx();
    let running = match t.send_json::<Value>(HttpRequest::get("queue"), &ctx).await {
        Ok(q) => queue_in(&q, "queue_running", &prompt_id),
        Err(_) => false,
    };
    if running {
        let _ = t
            .send(
                HttpRequest::post_json("interrupt", json!({ "prompt_id": prompt_id })),
                &ctx,
            )
            .await;
    } else {
        let _ = t
            .send(HttpRequest::post_json("queue", json!({ "delete": [prompt_id] })), &ctx)
            .await;
    }
}

/// Delete finished prompts' history entries, without waiting for the answer
/// (ComfyUI keeps up to 10,000 in memory, each with its whole workflow).
fn spawn_forget(t: Transport, prompt_ids: Vec<String>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    rt.spawn(async move {
        let _ = t
            .send(
                HttpRequest::post_json("history", json!({ "delete": prompt_ids })),
                &cleanup_ctx(),
            )
            .await;
    });
}

/// What [`ComfyUi::check`] found.
enum Check {
    Done(Value),
    Pending,
    Running,
}

/// A prompt found in the history.
struct Finished {
    entry: Value,
    /// How long it waited in the queue, as far as was seen.
    queued: Duration,
    /// Seconds from `execution_start` to the end, as heard on the websocket.
    heard_run_s: Option<f64>,
}

/// Resolves when the call's deadline passes; never without one.
async fn until_deadline(ctx: &CallCtx) {
    match ctx.deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// Deletes finished prompts' history entries when the call ends, however it ends.
struct Forget {
    /// `None` when the history is kept (`keep_history`).
    transport: Option<Transport>,
    prompt_ids: Vec<String>,
}

impl Drop for Forget {
    fn drop(&mut self) {
        if let Some(t) = self.transport.take() {
            if !self.prompt_ids.is_empty() {
                spawn_forget(t, std::mem::take(&mut self.prompt_ids));
            }
        }
    }
}

fn validate_workflow(wf: &Map<String, Value>) -> Result<(), ConfigError> {
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

fn parse_inject(
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

fn detect_inject(wf: &Map<String, Value>) -> BTreeMap<String, Vec<NodePath>> {
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

fn set_input(wf: &mut Map<String, Value>, p: &NodePath, v: Value) -> Result<(), String> {
    let inputs = wf
        .get_mut(&p.node)
        .and_then(|n| n.get_mut("inputs"))
        .and_then(Value::as_object_mut)
        .ok_or_else(|| format!("workflow has no node `{}` with inputs", p.node))?;
    if inputs.get(&p.field).is_some_and(Value::is_array) {
        return Err(format!(
            "`{}.inputs.{}` is a link to another node; inject into a widget input instead",
            p.node, p.field
        ));
    }
    inputs.insert(p.field.clone(), v);
    Ok(())
}

/// The node and every node it reads from, in `wf`.
fn ancestors(wf: &Map<String, Value>, node: &str) -> BTreeSet<String> {
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

/// The uncompressed text chunk `key` of a PNG (`tEXt` or `iTXt`).
fn png_text(data: &[u8], key: &str) -> Option<String> {
    if !data.starts_with(b"\x89PNG\r\n\x1a\n") {
        return None;
    }
    let mut i = 8usize;
    while i + 8 <= data.len() {
        let len = u32::from_be_bytes(data[i..i + 4].try_into().ok()?) as usize;
        let ty = &data[i + 4..i + 8];
        let body = data.get(i + 8..i + 8 + len)?;
        if ty == b"tEXt" || ty == b"iTXt" {
            if let Some(z) = body.iter().position(|b| *b == 0) {
                if &body[..z] == key.as_bytes() {
                    if ty == b"tEXt" {
                        return Some(body[z + 1..].iter().map(|&b| b as char).collect());
                    }
                    // iTXt: flag, method, language\0, translated keyword\0, text.
                    let rest = body.get(z + 1..)?;
                    if rest.first() != Some(&0) {
                        return None;
                    }
                    let rest = rest.get(2..)?;
                    let lang_end = rest.iter().position(|b| *b == 0)?;
                    let rest = rest.get(lang_end + 1..)?;
                    let tk_end = rest.iter().position(|b| *b == 0)?;
                    return String::from_utf8(rest.get(tk_end + 1..)?.to_vec()).ok();
                }
            }
        }
        if ty == b"IEND" {
            break;
        }
        i += 12 + len;
    }
    None
}

/// Whether a cached output file was written by a run of the same node graph:
/// `Some(false)` when its embedded workflow disagrees with ours on the node or one
/// of its ancestors, `None` when it carries no workflow to compare.
fn file_matches(data: &[u8], wf: &Map<String, Value>, node: &str) -> Option<bool> {
    let embedded: Value = serde_json::from_str(&png_text(data, "prompt")?).ok()?;
    let emb = embedded.as_object()?;
    Some(ancestors(wf, node).iter().all(|n| {
        let ours = wf.get(n);
        let theirs = emb.get(n);
        match (ours, theirs) {
            (Some(a), Some(b)) => a.get("class_type") == b.get("class_type") && a.get("inputs") == b.get("inputs"),
            _ => false,
        }
    }))
}

fn media_from_name(name: &str) -> Option<MediaType> {
    let ext = name.rsplit('.').next()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => MediaType::Png,
        "jpg" | "jpeg" => MediaType::Jpeg,
        "webp" => MediaType::Webp,
        "mp4" => MediaType::Mp4,
        "wav" => MediaType::Wav,
        "mp3" => MediaType::Mp3,
        "flac" => MediaType::Other(Arc::from("audio/flac")),
        "gif" => MediaType::Other(Arc::from("image/gif")),
        "webm" => MediaType::Other(Arc::from("video/webm")),
        "glb" => MediaType::Glb,
        "txt" => MediaType::Text,
        "json" => MediaType::Json,
        _ => return None,
    })
}

#[async_trait]
impl Provider for ComfyUi {
    fn id(&self) -> &str {
        &self.id
    }

    /// `GET /system_stats` of each server: it answers as soon as the server is
    /// up, whatever its queue. A pool passes when one server answers; the others
    /// are marked down (and logged) until they answer a call.
    async fn preflight(&self, ctx: &CallCtx) -> Result<(), ProviderError> {
        let mut first_err = None;
        let mut up = 0usize;
        for srv in &self.pool.servers {
            match srv.transport.send(HttpRequest::get("system_stats"), ctx).await {
                Ok(_) => up += 1,
                Err(e) => {
                    if self.pool.servers.len() > 1 {
                        tracing::warn!(provider = %self.id, server = %srv.name(), error = %e, "a ComfyUI server of the pool does not answer");
                        srv.mark_down(self.server_down);
                    }
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) if up == 0 => Err(e),
            _ => Ok(()),
        }
    }

    /// The base URL, the workflow's hash, the resolved injection map (given or
    /// detected) and the output nodes.
    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    fn capabilities(&self) -> Capabilities {
        let mut tasks = vec![Task::Image];
        if self.inject.contains_key("image") {
            tasks.push(Task::ImageEdit);
        }
        Capabilities {
            tasks,
            seed: self.inject.contains_key("seed"),
            negative_prompt: self.inject.contains_key("negative_prompt"),
            // Candidates past one batch go out as more prompts, which needs
            // a seed of their own each (see `chunks`).
            max_count: if self.inject.contains_key("seed") {
                creative_core::limits::MAX_COUNT_PER_CALL
            } else if self.inject.contains_key("batch_size") {
                self.max_batch
            } else {
                1
            },
        }
    }

    fn estimate_cost(&self, request: &Request) -> f64 {
        self.cost_per_image * f64::from(request.params.count.unwrap_or(1).max(1))
    }

    /// A pool is a composite: the engine keeps no breaker for it as a whole
    /// (one dead server must not stop the live ones); each server is passed
    /// over while marked down instead, and [`unavailable`](Self::unavailable)
    /// says when every one is.
    fn is_composite(&self) -> bool {
        self.pool.servers.len() > 1
    }

    /// Every server of the pool marked down and none due to be tried again.
    fn unavailable(&self) -> Option<ProviderError> {
        if !self.is_composite() {
            return None;
        }
        let names = self.pool.all_down()?;
        Some(self.err(
            ErrorKind::Unavailable,
            format!(
                "every ComfyUI server of the pool stopped answering ({}); each is tried again {} s after it failed",
                names.join(", "),
                self.server_down.as_secs()
            ),
        ))
    }

    /// One prompt for the request's candidates when they fit one batch (or
    /// cannot be varied); otherwise one prompt per batch, each with its own
    /// seed, run at once (on a pool: on as many servers). Any prompt failing
    /// fails the call, and the others are taken back.
    async fn generate(&self, request: &Request, ctx: &CallCtx) -> Result<Generation, ProviderError> {
        let chunks = self.chunks(request);
        if chunks.len() <= 1 {
            return self.place(request, ctx).await;
        }
        let requests: Vec<Request> = chunks.iter().map(|&(k, n)| self.chunk_request(request, k, n)).collect();
        let parts = futures_util::future::try_join_all(requests.iter().map(|r| self.place(r, ctx))).await?;
        let mut out = Generation {
            artifacts: Vec::new(),
            usage: Usage::default(),
            raw: Some(json!({ "prompts": [] })),
        };
        let mut raws = Vec::with_capacity(parts.len());
        for g in parts {
            out.artifacts.extend(g.artifacts);
            out.usage.cost_usd += g.usage.cost_usd;
            out.usage.units = Some(out.usage.units.unwrap_or(0.0) + g.usage.units.unwrap_or(0.0));
            raws.extend(g.raw);
        }
        out.raw = Some(json!({ "prompts": raws }));
        Ok(out)
    }
}

impl ComfyUi {
    /// How a request's candidates are split into prompts: `(first candidate,
    /// how many)` each. One prompt when they fit a batch (`batch_size`
    /// injected, at most `max_batch`), or when the seed cannot be injected
    /// (every prompt would then make the same images).
    fn chunks(&self, request: &Request) -> Vec<(u32, u32)> {
        let count = request.params.count.unwrap_or(1).max(1);
        let per = if self.inject.contains_key("batch_size") {
            self.max_batch
        } else {
            1
        };
        if count <= per || !self.inject.contains_key("seed") {
            return vec![(0, count)];
        }
        (0..count)
            .step_by(per as usize)
            .map(|k| (k, per.min(count - k)))
            .collect()
    }

    /// The request for candidates `k..k + n`: `n` of them, seeded `k` past the
    /// request's seed (or the workflow's, when the request has none), so no two
    /// prompts make the same images.
    fn chunk_request(&self, request: &Request, k: u32, n: u32) -> Request {
        let mut r = request.clone();
        r.params.count = Some(n);
        if k > 0 {
            let base = request.params.seed.unwrap_or_else(|| {
                self.inject
                    .get("seed")
                    .and_then(|paths| paths.first())
                    .and_then(|p| self.workflow.get(&p.node)?.get("inputs")?.get(&p.field)?.as_u64())
                    .unwrap_or(0)
            });
            r.params.seed = Some(base.wrapping_add(u64::from(k)));
        }
        r
    }

    /// Run one prompt on the pool: on the server with the shortest queue, and
    /// again on another when that one stops answering. On a pool each server's
    /// attempt is reported as a member call (the report's per-server rows).
    async fn place(&self, request: &Request, ctx: &CallCtx) -> Result<Generation, ProviderError> {
        let pooled = self.is_composite();
        let mut given_up: Vec<usize> = Vec::new();
        loop {
            let claim = self.pool.claim(&given_up).ok_or_else(|| {
                self.err(
                    ErrorKind::Unavailable,
                    "every ComfyUI server of the pool stopped answering during this call",
                )
            })?;
            let srv = claim.server;
            let started = std::time::Instant::now();
            let result = self.run_on(srv, request, ctx).await;
            if pooled {
                ctx.report_member(MemberCall {
                    member: srv.name(),
                    model: self.model(request),
                    latency: started.elapsed(),
                    cost_usd: result.as_ref().map_or(0.0, |g| g.usage.cost_usd),
                    error: result.as_ref().err().cloned(),
                    // The pool places by queue length, not by learned estimates:
                    // its first placement is its best choice, a requeue a fallback.
                    reason: Some(if given_up.is_empty() {
                        creative_core::RouteReason::Exploited
                    } else {
                        creative_core::RouteReason::Fallback
                    }),
                });
            }
            let err = match result {
                Ok(g) => return Ok(g),
                Err(e) => e,
            };
            // One server: nowhere else to go, and the engine's breaker keeps its health.
            if !pooled || !self.server_died(srv, &err, ctx).await {
                return Err(err);
            }
            srv.mark_down(self.server_down);
            let requeue = self.pool.servers.len() > given_up.len() + 1;
            srv.record(|s| {
                s.failures += 1;
                s.requeued += u64::from(requeue);
            });
            if !requeue {
                return Err(if self.pool.servers.len() > 1 {
                    self.err(
                        ErrorKind::Transient,
                        format!(
                            "every ComfyUI server of the pool stopped answering; the last, {}: {}",
                            srv.name(),
                            err.message()
                        ),
                    )
                } else {
                    err
                });
            }
            tracing::warn!(provider = %self.id, server = %srv.name(), error = %err, "a ComfyUI server stopped answering; queueing the prompt on another");
            given_up.push(claim.index);
        }
    }
}

impl ComfyUi {
    /// What each server has done in this process (one entry without a pool).
    pub fn server_stats(&self) -> Vec<ServerStats> {
        self.pool.servers.iter().map(Server::stats).collect()
    }

    /// Whether `err` came from `srv` no longer answering: a failure that could
    /// be the server's (not the prompt's, not a cancellation or the call's
    /// deadline) and a `GET /system_stats` probe that fails too.
    async fn server_died(&self, srv: &Server, err: &ProviderError, ctx: &CallCtx) -> bool {
        let deadline_passed = ctx.deadline.is_some_and(|d| std::time::Instant::now() >= d);
        let maybe = match err.kind() {
            ErrorKind::Transient | ErrorKind::Unavailable => true,
            ErrorKind::Timeout => !deadline_passed,
            _ => false,
        };
        if !maybe || ctx.cancel.is_cancelled() {
            return false;
        }
        let probe = CallCtx {
            deadline: Some(std::time::Instant::now() + Duration::from_secs(3)),
            ..CallCtx::detached()
        };
        srv.transport
            .send(HttpRequest::get("system_stats"), &probe)
            .await
            .is_err()
    }

    /// One attempt at the call on one server.
    async fn run_on(&self, srv: &Server, request: &Request, ctx: &CallCtx) -> Result<Generation, ProviderError> {
        // Seconds the server spent executing our prompts (see the module docs).
        let mut run_s = 0.0f64;
        let mut names = Vec::with_capacity(request.inputs.len());
        for a in &request.inputs {
            names.push(self.upload(srv, a, ctx).await?);
        }
        let mut wf = self.workflow_for(request, &names)?;
        let mut reruns = 0u32;
        // Finished prompts' history entries are deleted however the call ends.
        let mut forget = Forget {
            transport: (!self.keep_history).then(|| srv.transport.clone()),
            prompt_ids: Vec::new(),
        };
        loop {
            let suggested = random_hex();
            // A client id of the call's own: ComfyUI sends a prompt's messages to
            // the socket of the client id it was queued with, and one socket per id.
            let client_id = format!("{}-{}", self.client_id, &suggested[..12]);
            let sock = self.open_socket(srv, &client_id).await;
            // Takes the prompt back if the call ends first (cancelled, out of
            // time, dropped by the engine); polls when there is no websocket.
            let mut job = LongJob::new(&self.id, PollBackoff::new(self.poll.0, self.poll.1));
            job.guard().arm(take_back(srv.transport.clone(), suggested.clone()));
            let queued_at = tokio::time::Instant::now();
            let prompt_id = match self.queue_prompt(srv, &wf, &suggested, &client_id, ctx).await {
                Ok(id) => id,
                Err(e) => {
                    // A refused prompt was never queued; an accepted-then-dropped one
                    // is cleaned up already. A lost answer may hide a queued prompt.
                    if !matches!(
                        e.kind(),
                        ErrorKind::Cancelled | ErrorKind::Timeout | ErrorKind::Transient
                    ) {
                        job.done();
                    }
                    return Err(e);
                }
            };
            if prompt_id != suggested {
                job.guard().arm(take_back(srv.transport.clone(), prompt_id.clone()));
            }
            let Finished {
                entry,
                queued,
                heard_run_s,
            } = self.wait(srv, &mut job, &prompt_id, ctx, sock).await?;
            job.done();
            forget.prompt_ids.push(prompt_id.clone());
            self.check_status(&entry)?;
            run_s += execution_span_s(&entry)
                .or(heard_run_s)
                .unwrap_or_else(|| queued_at.elapsed().saturating_sub(queued).as_secs_f64());
            let cached: BTreeSet<String> = cached_nodes(&entry);
            let files = self.outputs(&entry);
            if files.is_empty() {
                return Err(self.err(
                    ErrorKind::Protocol,
                    format!("prompt {prompt_id} finished without output files (does the workflow save its result?)"),
                ));
            }
            let mut artifacts = Vec::with_capacity(files.len());
            let mut stale: BTreeSet<String> = BTreeSet::new();
            for (node, f) in &files {
                let got = self.fetch(srv, f, ctx).await?;
                let Some((data, declared)) = got else {
                    if cached.contains(node) {
                        stale.insert(node.clone());
                        continue;
                    }
                    return Err(self.err(
                        ErrorKind::Protocol,
                        format!(
                            "output `{}` of node {node} is listed in the history but missing on the server",
                            f.filename
                        ),
                    ));
                };
                if cached.contains(node) && file_matches(&data, &wf, node) == Some(false) {
                    stale.insert(node.clone());
                    continue;
                }
                let media = sniff_media(&data)
                    .or_else(|| media_from_name(&f.filename))
                    .or(declared)
                    .unwrap_or(MediaType::Other(Arc::from("application/octet-stream")));
                let mut a = Artifact::new(media, data);
                a.provenance_mut().workflow_hash = Some(self.workflow_hash.clone());
                let extra = &mut a.meta_mut().extra;
                extra.insert("comfyui_node".into(), node.clone().into());
                extra.insert("comfyui_filename".into(), f.filename.clone().into());
                extra.insert("comfyui_prompt_id".into(), prompt_id.clone().into());
                extra.insert("comfyui_server".into(), srv.name().into());
                if cached.contains(node) {
                    extra.insert("comfyui_cached".into(), true.into());
                }
                artifacts.push(a);
            }
            if !stale.is_empty() {
                if reruns >= 1 {
                    return Err(self.err(
                        ErrorKind::Transient,
                        format!(
                            "cached outputs of node(s) {} are missing or belong to another run, even after a re-run",
                            stale.iter().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
                reruns += 1;
                tracing::debug!(provider = %self.id, nodes = ?stale, "cached outputs are stale; re-running those nodes");
                let nonce = &random_hex()[..8];
                let mut need_free = false;
                for n in &stale {
                    let prefix = wf
                        .get(n)
                        .and_then(|x| x.pointer("/inputs/filename_prefix"))
                        .and_then(Value::as_str)
                        .map(String::from);
                    match prefix {
                        Some(p) => {
                            let path = NodePath {
                                node: n.clone(),
                                field: "filename_prefix".into(),
                            };
                            set_input(&mut wf, &path, format!("{p}_{nonce}").into())
                                .map_err(|m| self.err(ErrorKind::Invalid, m))?;
                        }
                        None => need_free = true,
                    }
                }
                if need_free {
                    srv.transport
                        .send(HttpRequest::post_json("free", json!({"free_memory": true})), ctx)
                        .await?;
                }
                continue;
            }
            let n = artifacts.len() as f64;
            srv.record(|s| {
                s.outputs += artifacts.len() as u64;
                s.run_s += run_s;
            });
            return Ok(Generation {
                usage: Usage {
                    cost_usd: self.cost_per_image * n + self.cost_per_second * run_s,
                    units: Some(n),
                    ..Usage::default()
                },
                artifacts,
                raw: Some(json!({
                    "prompt_id": prompt_id, "cached_nodes": cached, "reruns": reruns, "run_s": run_s,
                    "server": srv.name(),
                })),
            });
        }
    }
}

impl ComfyUi {
    /// The websocket for `client_id`, when enabled and the server offers one;
    /// `None` means polling (logged at debug: a proxy without websockets, an
    /// old server).
    async fn open_socket(&self, srv: &Server, client_id: &str) -> Option<ws::Socket> {
        if !self.websocket {
            return None;
        }
        let timeout = srv.transport.timeout().min(Duration::from_secs(5));
        match ws::Socket::connect(
            srv.transport.base_url(),
            client_id,
            srv.transport.origin_headers(),
            timeout,
        )
        .await
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!(provider = %self.id, error = %e, "no ComfyUI websocket; polling instead");
                None
            }
        }
    }

    fn workflow_for(&self, request: &Request, names: &[String]) -> Result<Map<String, Value>, ProviderError> {
        match request.task {
            Task::Image | Task::ImageEdit => self.build_workflow(request, names),
            t => Err(self.err(
                ErrorKind::Invalid,
                format!("comfyui runs image workflows, not `{}`", t.as_str()),
            )),
        }
    }
}

fn cached_nodes(entry: &Value) -> BTreeSet<String> {
    entry
        .pointer("/status/messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|m| m.get(0).and_then(Value::as_str) == Some("execution_cached"))
        .filter_map(|m| m.get(1).and_then(|d| d.get("nodes")).and_then(Value::as_array))
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect()
}

/// Register the `comfyui` kind.
///
/// Settings: the shared HTTP ones (`base_url`, default `http://127.0.0.1:8188`;
/// `api_key_env` when the server sits behind an authenticating proxy), plus
/// `workflow` (inline) or `workflow_path` (relative to the spec), `inject` (name ->
/// `node_id.inputs.field` or a list of them), `output_nodes`, `client_id`,
/// `poll_interval_ms` (250, 1..=60000), `poll_max_ms` (2000, 1..=600000),
/// `websocket` (true), `ws_check_ms` (10000, 10..=3600000), `keep_history`
/// (false), `cost_per_image` (0), `cost_per_second` (0), `max_batch` (16,
/// 1..=4096); for a pool, `base_urls` (a list, in place of `base_url`) and
/// `server_down_s` (30, 1..=3600).
pub fn register(reg: &mut creative_core::registry::Registry) {
    reg.provider(
        "comfyui",
        Arc::new(|id: &str, settings: &Value, ctx: &BuildCtx| {
            ComfyUi::from_settings(id, settings, ctx).map(|p| Arc::new(p) as Arc<dyn Provider>)
        }),
    );
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

    #[test]
    fn png_text_reads_text_and_itxt_chunks() {
        fn chunk(ty: &[u8], body: &[u8]) -> Vec<u8> {
            let mut v = (body.len() as u32).to_be_bytes().to_vec();
            v.extend_from_slice(ty);
            v.extend_from_slice(body);
            v.extend_from_slice(&[0, 0, 0, 0]);
            v
        }
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(chunk(b"tEXt", b"workflow\0{}"));
        png.extend(chunk(b"iTXt", "prompt\0\0\0\0\0{\"a\":\"é\"}".as_bytes()));
        png.extend(chunk(b"IEND", b""));
        assert_eq!(png_text(&png, "prompt").as_deref(), Some("{\"a\":\"é\"}"));
        assert_eq!(png_text(&png, "workflow").as_deref(), Some("{}"));
        assert_eq!(png_text(&png, "other"), None);
    }
}
