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
//!    progress becomes [`CallProgress`](creative_core::CallProgress) reports (engine `Progress` events), and
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
//!
//! **Where things are.** This file holds the settings, the provider and its
//! registration, in the order every backend uses; the rest is one file per concern:
//! `builder.rs` ([`ComfyUiBuilder`]: the settings checked into a provider),
//! `workflow.rs` (the node graph: injection points found or given, the request
//! written into a copy), `prompt.rs` (one prompt's life on a server: upload,
//! queue, follow on the websocket or by polling, take back), `outputs.rs` (a
//! finished prompt's history entry: its status, its files, whether a cached
//! file is ours), `run.rs` (one call: candidates split into prompts, placed on
//! the pool, run on one server) and [`pool`] (the servers).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use creative_core::registry::BuildCtx;
use creative_core::{
    CallCtx, Capabilities, ConfigError, ErrorKind, Generation, Provider, ProviderError, Request, Task, Usage,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

mod builder;
mod outputs;
pub mod pool;
mod prompt;
mod run;
mod workflow;
mod ws;

pub use builder::ComfyUiBuilder;
use pool::{Pool, Server, ServerStats};
pub use workflow::NodePath;

use crate::http::{backend_settings, HttpRequest, HttpSettings, HttpSettingsBuilder, SettingsDefaults};

// ---------------------------------------------------------------------------------
// Settings (checked and built in `builder.rs`)
// ---------------------------------------------------------------------------------

const DEFAULTS: SettingsDefaults = SettingsDefaults {
    base_url: "http://127.0.0.1:8188",
    key_env: None,
    model: "workflow",
    timeout: Duration::from_secs(60),
};

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

    /// What each server has done in this process (one entry without a pool).
    pub fn server_stats(&self) -> Vec<ServerStats> {
        self.pool.servers.iter().map(Server::stats).collect()
    }
}

// ---------------------------------------------------------------------------------
// Wire types: ComfyUI speaks loose JSON (a workflow, a history entry), read with
// `serde_json::Value` where it is written; `outputs.rs` holds the one typed shape.
// ---------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------
// Request mapping: `workflow.rs` (the request injected into the workflow).
// ---------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------
// Response mapping: `outputs.rs` (a history entry's files become artifacts).
// ---------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------
// Error mapping: `prompt.rs` (a refused prompt's per-node validation errors) and
// `outputs.rs` (a failed prompt's `execution_error` and friends).
// ---------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------
// The provider (one call's run in `run.rs`)
// ---------------------------------------------------------------------------------

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
