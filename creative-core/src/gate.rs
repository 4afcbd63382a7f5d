//! The `QualityGate` trait and what a gate decides.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::artifact::{Artifact, MediaKind};
use crate::cancel::CancellationToken;
use crate::error::{GateError, StepError};
use crate::exec::CallOutcome;
use crate::job::Vars;
use crate::request::Request;
use crate::resilience::RetryPolicy;
use crate::step::StepCtx;

/// A gate's judgement of one artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Whether the artifact is good enough.
    pub passed: bool,
    /// A score, higher is better; its scale is the gate's (documented per gate).
    pub score: f64,
    /// Why, in words a reviewer understands; empty when there is nothing to say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

impl Verdict {
    /// A passing verdict with a score.
    pub fn pass(score: f64) -> Self {
        Verdict {
            passed: true,
            score,
            reasons: Vec::new(),
        }
    }

    /// A failing verdict with a score and a reason.
    pub fn fail(score: f64, reason: impl Into<String>) -> Self {
        Verdict {
            passed: false,
            score,
            reasons: vec![reason.into()],
        }
    }
}

/// Context handed to a gate.
///
/// A gate running inside a run (its context made by [`StepCtx::gate_ctx`]) can
/// call a provider through the engine with [`GateCtx::call_provider`], so that
/// the call is budgeted, billed and reported like a generation.
#[derive(Debug, Clone)]
pub struct GateCtx {
    /// Cancelled with the run.
    pub cancel: CancellationToken,
    /// The job's variables (a gate may check text against a locale, say).
    pub vars: std::sync::Arc<Vars>,
    /// The job's stable key.
    pub job_key: String,
    /// The step the gate judges for; `None` outside a run.
    step: Option<StepCtx>,
}

impl GateCtx {
    /// A context outside any run, for using a gate on its own (tests, tools): it
    /// has no engine to call providers through ([`GateCtx::in_run`] is false).
    pub fn new(cancel: CancellationToken, vars: std::sync::Arc<Vars>, job_key: impl Into<String>) -> Self {
        GateCtx {
            cancel,
            vars,
            job_key: job_key.into(),
            step: None,
        }
    }

    /// The context of a gate judging for `step`.
    pub(crate) fn for_step(step: &StepCtx) -> Self {
        GateCtx {
            cancel: step.cancel.clone(),
            vars: step.job.vars().clone(),
            job_key: step.job.key().to_string(),
            step: Some(step.clone()),
        }
    }

    /// Whether the gate runs inside a run, so that [`GateCtx::call_provider`]
    /// can call providers.
    pub fn in_run(&self) -> bool {
        self.step.is_some()
    }

    /// Call `provider` (registered on the run's executor) on behalf of the gate
    /// named `gate`, through the engine's call path, as a generate step does
    /// ([`StepCtx::call_provider`]): the call is reserved against the run's
    /// budget before it is made (and refused with [`StepErrorKind::Budget`](crate::error::StepErrorKind::Budget) once the
    /// budget is exhausted), settled to the provider's reported cost, and
    /// emitted as `Attempt`/`AttemptFinished` events (so the report, the
    /// campaign's ledger and the runner's progress count it), under the run's
    /// breaker, rate limit, concurrency, timeout, cache and cancellation.
    ///
    /// The events name the step `<step>:<gate>` (`hero:judge`), so a report
    /// keeps the judge's calls apart from the generation it judges. Retries
    /// follow the run's policy, with at most `max_attempts` calls (for failures
    /// and for rate limits alike) when given.
    ///
    /// Outside a run (a context made by [`GateCtx::new`]) this is an
    /// [`StepErrorKind::InvalidInput`](crate::error::StepErrorKind::InvalidInput); so is a provider not registered on the
    /// executor.
    pub async fn call_provider(
        &self,
        gate: &str,
        provider: &str,
        request: &Request,
        max_attempts: Option<u32>,
    ) -> Result<CallOutcome, StepError> {
        let Some(step) = &self.step else {
            return Err(StepError::invalid_input(format!(
                "gate `{gate}` runs outside a run: there is no engine to call provider `{provider}` through"
            )));
        };
        let mut ctx = step.clone();
        ctx.step = std::sync::Arc::from(format!("{}:{gate}", step.step));
        let retry = max_attempts.map(|n| RetryPolicy {
            max_attempts: n.max(1),
            max_rate_limited: n.max(1),
            ..step.shared().retry.clone()
        });
        ctx.call_chain(&[provider.to_string()], request, retry.as_ref()).await
    }
}

/// A gate as an API that attaches one takes it: a concrete gate, moved in,
/// or one already shared behind an [`Arc`](std::sync::Arc).
pub trait IntoGate {
    /// The gate, shared.
    fn into_gate(self) -> std::sync::Arc<dyn QualityGate>;
}

impl<G: QualityGate + 'static> IntoGate for G {
    fn into_gate(self) -> std::sync::Arc<dyn QualityGate> {
        std::sync::Arc::new(self)
    }
}

impl<G: QualityGate + 'static> IntoGate for std::sync::Arc<G> {
    fn into_gate(self) -> std::sync::Arc<dyn QualityGate> {
        self
    }
}

impl IntoGate for std::sync::Arc<dyn QualityGate> {
    fn into_gate(self) -> std::sync::Arc<dyn QualityGate> {
        self
    }
}

/// A check on an artifact: format, sharpness, palette, duplicates, text rules, an
/// LLM judge... A failing verdict is a normal answer; an `Err` means the gate could
/// not judge (a malformed judge answer, an undecodable image) and is treated as a
/// failure that names the gate, never as a pass.
#[async_trait]
pub trait QualityGate: Send + Sync {
    /// The gate's name, used in provenance and reports.
    fn name(&self) -> &str;

    /// The media families it can judge; `None` means any. The pipeline checks this
    /// when it is built.
    fn accepts(&self) -> Option<&[MediaKind]> {
        None
    }

    /// Judge one artifact.
    async fn check(&self, artifact: &Artifact, ctx: &GateCtx) -> Result<Verdict, GateError>;

    /// The paid provider calls one check makes, known before any artifact is:
    /// each the provider's id and a request like the one it sends for a job
    /// with these variables (the artifact itself left out). A dry run adds
    /// their estimates, and a money budget refuses a provider with no price
    /// for them. Default: none, for gates that call no provider.
    fn planned_calls(&self, vars: &Vars) -> Vec<(String, Request)> {
        let _ = vars;
        Vec::new()
    }
}

/// What a generate step does when its output fails a gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
#[non_exhaustive]
pub enum OnGateFail {
    /// Generate again with a new seed derived from the first, up to `max` more times;
    /// then fail the step.
    Regenerate {
        /// How many extra rounds at most.
        max: u32,
    },
    /// Try the next provider of the step's chain.
    Fallback,
    /// Keep the artifact, mark it flagged for review, and go on.
    Flag,
    /// Fail the step (and so the job).
    Fail,
}

impl Default for OnGateFail {
    fn default() -> Self {
        OnGateFail::Regenerate { max: 2 }
    }
}
