//! The `Provider` trait: one generative backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::artifact::Artifact;
use crate::cancel::CancellationToken;
use crate::error::ProviderError;
use crate::request::{Generation, Request, Task};

/// What a provider can do, so the engine can check a pipeline before running it
/// and a router can pick among providers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    /// The tasks it performs.
    pub tasks: Vec<Task>,
    /// Whether it sends `Params::seed` to its backend on every call.
    ///
    /// The engine records a call's seed in provenance only when this is true (or
    /// when the provider put the seed it sent in the artifact's provenance
    /// itself), so a backend whose API takes no seed must say `false`: a seed in
    /// provenance is a claim that the output can be reproduced with it.
    pub seed: bool,
    /// Whether it honours a negative prompt.
    pub negative_prompt: bool,
    /// The most candidates one call may ask for (`Params::count`).
    pub max_count: u32,
}

impl Capabilities {
    /// Whether the provider performs `task`.
    pub fn supports(&self, task: Task) -> bool {
        self.tasks.contains(&task)
    }
}

/// Per-call context handed to a provider.
///
/// The cancellation token must be honoured at every await that can last: a backend
/// that polls an async job checks it between polls and cancels the remote job. The
/// engine also drops the call's future on cancellation, so a backend that forgets is
/// still stopped, just less politely.
#[derive(Debug, Clone)]
pub struct CallCtx {
    /// Cancelled when the run is cancelled or the call's deadline passes.
    pub cancel: CancellationToken,
    /// 1-based attempt number of this call.
    pub attempt: u32,
    /// When the engine will give up on this call.
    pub deadline: Option<Instant>,
    /// Where a composite provider (a router) reports each call it makes to one
    /// of its members ([`CallCtx::report_member`]); the engine sets it so those
    /// calls appear in events and the report. `None` outside the engine.
    pub observer: Option<Arc<dyn CallObserver>>,
}

/// One call a composite provider made to one of its members.
#[derive(Debug, Clone)]
pub struct MemberCall {
    /// The member's provider id.
    pub member: String,
    /// The model the member used: the one its answer names, else
    /// [`Provider::model`] of the member for the request.
    pub model: Option<String>,
    /// Wall time of the call.
    pub latency: Duration,
    /// What the call cost (0 when it failed).
    pub cost_usd: f64,
    /// The failure, when it failed.
    pub error: Option<ProviderError>,
    /// Why the composite chose this member for the call, when it says.
    pub reason: Option<RouteReason>,
}

/// Why a router sent a call to the member it did, as counted in the report.
///
/// One reason per member call, the first that applies in this order:
/// `fallback`, `spilled`, `waited`, `explored`, `exploited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteReason {
    /// The call's first choice, and the best member by the router's current
    /// estimates.
    Exploited,
    /// The call's first choice, but not the best by the current estimates: a
    /// learning router's draw (or its exploration share) picked it to learn.
    Explored,
    /// The call waited for this member (rate limited or full) rather than go
    /// to another.
    Waited,
    /// A member ranked before this one was busy and waiting for it cost more,
    /// so the call went here.
    Spilled,
    /// A member failed this call earlier (this one, for a retry on the same
    /// member), or the members ranked before this one were unavailable
    /// (circuit open), so the router went on to this one.
    Fallback,
}

impl RouteReason {
    /// The name used in events and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteReason::Exploited => "exploited",
            RouteReason::Explored => "explored",
            RouteReason::Waited => "waited",
            RouteReason::Spilled => "spilled",
            RouteReason::Fallback => "fallback",
        }
    }
}

/// How far a long call has come: `done` of `total` units of its current `stage`
/// (a ComfyUI node's sampling steps, say), so a long generation shows progress
/// rather than silence.
#[derive(Debug, Clone, PartialEq)]
pub struct CallProgress {
    /// What is being worked on, in the backend's words (`node 3 (KSampler)`).
    pub stage: String,
    /// Units done.
    pub done: u64,
    /// Units in all; 0 when unknown.
    pub total: u64,
}

/// Told about the member calls of a composite provider and the progress of a
/// long call; see [`CallCtx::observer`].
pub trait CallObserver: Send + Sync {
    /// One member call ended.
    fn member_call(&self, call: MemberCall);

    /// The call made progress (see [`CallCtx::report_progress`]). Ignored unless
    /// the observer cares.
    fn progress(&self, _progress: CallProgress) {}
}

impl std::fmt::Debug for dyn CallObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallObserver")
    }
}

impl CallCtx {
    /// A context for a single call outside the engine (tests, tools).
    pub fn detached() -> Self {
        CallCtx {
            cancel: CancellationToken::new(),
            attempt: 1,
            deadline: None,
            observer: None,
        }
    }

    /// Report a call made to a member (a composite provider does, for each member
    /// call); nothing happens when nobody observes.
    pub fn report_member(&self, call: MemberCall) {
        if let Some(o) = &self.observer {
            o.member_call(call);
        }
    }

    /// Report how far the call has come; nothing happens when nobody observes.
    pub fn report_progress(&self, progress: CallProgress) {
        if let Some(o) = &self.observer {
            o.progress(progress);
        }
    }

    /// This context without its observer: what a composite hands its members, so
    /// a composite inside a composite does not report its members twice.
    pub fn unobserved(&self) -> CallCtx {
        CallCtx {
            observer: None,
            ..self.clone()
        }
    }
}

/// A provider as an API that registers one takes it: a concrete provider,
/// moved in, or one already shared behind an [`Arc`] (to keep a handle on it).
///
/// ```
/// use std::sync::Arc;
/// use creative_core::provider::IntoProvider;
/// # use creative_core::{Provider, Capabilities, CallCtx, Request, Generation, ProviderError};
/// # struct Echo;
/// # #[async_trait::async_trait]
/// # impl Provider for Echo {
/// #     fn id(&self) -> &str { "echo" }
/// #     fn capabilities(&self) -> Capabilities { Capabilities::default() }
/// #     async fn generate(&self, _: &Request, _: &CallCtx) -> Result<Generation, ProviderError> { Ok(Generation::default()) }
/// # }
/// let owned = Echo.into_provider();
/// let shared: Arc<dyn Provider> = Arc::new(Echo);
/// assert_eq!(owned.id(), shared.clone().into_provider().id());
/// ```
pub trait IntoProvider {
    /// The provider, shared.
    fn into_provider(self) -> Arc<dyn Provider>;
}

impl<P: Provider + 'static> IntoProvider for P {
    fn into_provider(self) -> Arc<dyn Provider> {
        Arc::new(self)
    }
}

impl<P: Provider + 'static> IntoProvider for Arc<P> {
    fn into_provider(self) -> Arc<dyn Provider> {
        self
    }
}

impl IntoProvider for Arc<dyn Provider> {
    fn into_provider(self) -> Arc<dyn Provider> {
        self
    }
}

/// A generative backend: OpenAI, Stability, ComfyUI, the offline `procedural`
/// stand-in, a router over several, or a host's own renderer through the C ABI.
///
/// Implementations map a [`Request`] to their wire format and back, and classify
/// every failure into a [`ProviderError`]; they do not retry, time out or rate-limit
/// themselves: the engine wraps every call with those policies.
#[async_trait]
pub trait Provider: Send + Sync {
    /// A stable id, such as `openai` or `comfyui-farm-a`; used in events, provenance
    /// and reports.
    fn id(&self) -> &str;

    /// What it can do.
    fn capabilities(&self) -> Capabilities;

    /// The price this call is expected to cost, in US dollars, before it is made.
    ///
    /// Budgets reserve this amount before the call and settle to the real cost after
    /// it; routers compare it across providers. The default is
    /// [`price`](Self::price), `None` counting as free.
    fn estimate_cost(&self, request: &Request) -> f64 {
        self.price(request).unwrap_or(0.0)
    }

    /// What `request` costs by this provider's price table, `None` when the
    /// table has no price for it. A backend with a price table implements this
    /// one method, and [`estimate_cost`](Self::estimate_cost) and
    /// [`has_price`](Self::has_price) follow from it. Default: free.
    fn price(&self, _request: &Request) -> Option<f64> {
        Some(0.0)
    }

    /// A fingerprint of the resolved settings that shape this provider's
    /// output: a stable hex string (BLAKE3, see [`settings_fingerprint`]) that
    /// changes whenever a setting changes what the same request would return.
    ///
    /// The engine joins it into the cache key, so a changed model, base URL,
    /// workflow file or injection map is a cache miss instead of old outputs
    /// served as new, and records it in provenance (`provider_fingerprint`),
    /// so the manifest tells which settings made each asset.
    ///
    /// Cover the default model, the endpoint, workflow or template contents,
    /// sizes and anything else the backend sends that the [`Request`] does not
    /// carry. Never cover a secret (API key, token, header values that may hold
    /// one): the fingerprint is written in manifests. Timeouts, retry and price
    /// settings do not shape the output and belong out of it.
    ///
    /// The default, an empty string, declares that nothing but the provider id
    /// and the request shapes the output (a pure function of the request, or a
    /// host renderer whose settings the engine cannot see). A third-party
    /// provider with settings should return
    /// `settings_fingerprint("my-kind", &json!({ "model": ..., "endpoint": ... }))`,
    /// computed once at construction.
    fn fingerprint(&self) -> String {
        String::new()
    }

    /// The model this provider uses for `request`: the request's when it names
    /// one, else the provider's default for the request's task. Events and the
    /// report key attempts, cost and accepted assets by it; `None` for a provider
    /// without models. The default returns the request's model.
    fn model(&self, request: &Request) -> Option<String> {
        request.model.clone()
    }

    /// Perform one call.
    async fn generate(&self, request: &Request, ctx: &CallCtx) -> Result<Generation, ProviderError>;

    /// Check, before a run starts, that the provider can be reached at all: a
    /// local server that is not running, a wrong base URL. Runners call it once
    /// per provider to fail fast, instead of retrying and waiting on an open
    /// circuit for minutes. It must be quick and cost nothing; the default
    /// assumes the provider is there.
    async fn preflight(&self, _ctx: &CallCtx) -> Result<(), ProviderError> {
        Ok(())
    }

    /// Told, after a generate step judged `artifact` (one this provider returned),
    /// whether it passed every gate. Only called when the step has gates.
    ///
    /// A router learns gate pass rates from it (cost per accepted asset); the
    /// default ignores it.
    fn record_verdict(&self, _artifact: &Artifact, _accepted: bool) {}

    /// Whether this provider is made of others that keep their own health (a
    /// router, whose members each have a circuit breaker and a down detector).
    ///
    /// The engine keeps no breaker and no down detection of its own for a
    /// composite provider: one dead member would otherwise trip the whole, and
    /// every job would wait on the composite's circuit while its live members sit
    /// idle. It asks [`Provider::unavailable`] instead. Default false.
    fn is_composite(&self) -> bool {
        false
    }

    /// For a composite provider: why it cannot take a call now, when none of its
    /// members can (every one declared down and none due for a probe). The engine
    /// then neither calls nor retries it: the step falls back or fails at once
    /// with this error. Default `None`.
    fn unavailable(&self) -> Option<ProviderError> {
        None
    }

    /// Whether [`estimate_cost`](Self::estimate_cost) knows what `request`
    /// costs. `false` when the provider has no price for the request's model, so
    /// its calls would be recorded as free: under a money budget a campaign
    /// refuses that unless the spec gives a price. Default: whether
    /// [`price`](Self::price) knows it (a provider that only overrides
    /// `estimate_cost` is priced: its estimate, zero included, is the price).
    fn has_price(&self, request: &Request) -> bool {
        self.price(request).is_some()
    }

    /// Configuration concerns that do not stop a build but will make calls
    /// fail, such as no API key for a hosted service: `creative check` and the
    /// runner print them before anything is spent. Default none.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A stable fingerprint of a provider's settings: BLAKE3 hex over `kind` and a
/// canonical encoding of `settings` (object keys sorted, whatever the order they
/// were written in), for [`Provider::fingerprint`].
///
/// Pass only the settings that shape the output, never a secret.
///
/// ```
/// use creative_core::provider::settings_fingerprint;
/// use serde_json::json;
/// let a = settings_fingerprint("openai", &json!({"model": "gpt-image-1", "base_url": "https://x/v1"}));
/// let b = settings_fingerprint("openai", &json!({"base_url": "https://x/v1", "model": "gpt-image-1"}));
/// let c = settings_fingerprint("openai", &json!({"model": "dall-e-3", "base_url": "https://x/v1"}));
/// assert_eq!(a, b);
/// assert_ne!(a, c);
/// assert_eq!(a.len(), 64);
/// ```
pub fn settings_fingerprint(kind: &str, settings: &serde_json::Value) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"creative-provider-settings-v1\0");
    h.update(kind.as_bytes());
    h.update(&[0]);
    hash_value(&mut h, settings);
    h.finalize().to_hex().to_string()
}

/// Feed `v` to `h` in a canonical, unambiguous form: a type tag, lengths before
/// contents, object keys sorted.
fn hash_value(h: &mut blake3::Hasher, v: &serde_json::Value) {
    use serde_json::Value;
    fn bytes(h: &mut blake3::Hasher, b: &[u8]) {
        h.update(&(b.len() as u64).to_le_bytes());
        h.update(b);
    }
    match v {
        Value::Null => {
            h.update(b"n");
        }
        Value::Bool(b) => {
            h.update(if *b { b"t" } else { b"f" });
        }
        Value::Number(n) => {
            h.update(b"#");
            bytes(h, n.to_string().as_bytes());
        }
        Value::String(s) => {
            h.update(b"s");
            bytes(h, s.as_bytes());
        }
        Value::Array(a) => {
            h.update(b"[");
            h.update(&(a.len() as u64).to_le_bytes());
            for x in a {
                hash_value(h, x);
            }
        }
        Value::Object(m) => {
            h.update(b"{");
            h.update(&(m.len() as u64).to_le_bytes());
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for k in keys {
                bytes(h, k.as_bytes());
                hash_value(h, &m[k]);
            }
        }
    }
}
