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
    /// Whether it honours `Params::seed`.
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
}

/// Told about the member calls of a composite provider; see [`CallCtx::observer`].
pub trait CallObserver: Send + Sync {
    /// One member call ended.
    fn member_call(&self, call: MemberCall);
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

    /// This context without its observer: what a composite hands its members, so
    /// a composite inside a composite does not report its members twice.
    pub fn unobserved(&self) -> CallCtx {
        CallCtx {
            observer: None,
            ..self.clone()
        }
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
    /// it; routers compare it across providers. The default is free.
    fn estimate_cost(&self, _request: &Request) -> f64 {
        0.0
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
}
