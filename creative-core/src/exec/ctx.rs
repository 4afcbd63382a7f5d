//! The contexts the executor hands to a running step ([`StepCtx`]) and to a
//! gate judging for it ([`GateCtx`]): the job, the cancellation token, and the
//! run's services (providers behind every resilience policy, events,
//! counters). The traits (`Step`, `QualityGate`) only name them.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::cancel::CancellationToken;
use crate::error::StepError;
use crate::events::EventKind;
use crate::exec::shared::{Counters, RunShared};
use crate::exec::CallOutcome;
use crate::job::{derive_seed, Job, Vars};
use crate::provider::Provider;
use crate::request::Request;
use crate::resilience::RetryPolicy;

/// What a running step may see and use: its job, its name, the cancellation token,
/// and the run's services (providers behind every resilience policy, events).
#[derive(Clone)]
pub struct StepCtx {
    /// The job being run.
    pub job: Job,
    /// The step's name in the pipeline.
    pub step: Arc<str>,
    /// Cancelled when the run is cancelled. Long local work checks it.
    pub cancel: CancellationToken,
    pub(crate) run: Arc<RunShared>,
    /// Time this step has waited on open circuits, in microseconds: its waits
    /// count against one allowance (`ExecutorBuilder::max_open_wait`), however
    /// many provider calls the step makes.
    pub(crate) open_waited: Arc<AtomicU64>,
}

impl std::fmt::Debug for StepCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepCtx")
            .field("job", &self.job.key())
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

impl StepCtx {
    /// A context outside any run, for using a step on its own (tests, tools). It has
    /// no providers registered and its events go nowhere.
    pub fn detached(job: Job, step: &str) -> Self {
        StepCtx {
            job,
            step: Arc::from(step),
            cancel: CancellationToken::new(),
            run: RunShared::detached(),
            open_waited: Arc::default(),
        }
    }

    /// The reproducible seed of this job and step: derived from the job key and the
    /// step name, unless the job sets a `seed` variable.
    pub fn derived_seed(&self) -> u64 {
        match self.job.vars().get("seed").and_then(|v| v.as_u64()) {
            Some(s) => s,
            None => derive_seed(0, &[self.job.key(), &self.step]),
        }
    }

    /// A gate context for this job.
    pub fn gate_ctx(&self) -> GateCtx {
        GateCtx::for_step(self)
    }

    /// Send an event on the run's stream, stamped with this job and step.
    pub fn emit(&self, kind: EventKind) {
        self.run.events.emit(kind);
    }

    /// The provider registered on the run's executor under `id`, to ask it
    /// what it is (its capabilities, its default model) without calling it;
    /// calls go through [`StepCtx::call_provider`]. `None` outside a run.
    pub fn provider(&self, id: &str) -> Option<&Arc<dyn Provider>> {
        self.run.providers.get(id).map(|slot| &slot.provider)
    }

    /// Record that a gate judged one candidate of this step, so the run's
    /// figures (`gate_checks`, `gate_failures`) count it as they count the
    /// built-in generate step's.
    pub fn record_gate_check(&self, passed: bool) {
        Counters::add(&self.run.counters.gate_checks, 1);
        if !passed {
            Counters::add(&self.run.counters.gate_failures, 1);
        }
    }

    /// Record that the step generated again because its candidates failed
    /// their gates (`regenerations` in the run's figures).
    pub fn record_regeneration(&self) {
        Counters::add(&self.run.counters.regenerations, 1);
    }

    /// Record that the step moved on to its next provider after a gate
    /// failure (`fallbacks`).
    pub fn record_fallback(&self) {
        Counters::add(&self.run.counters.fallbacks, 1);
    }

    /// Record `n` outputs passed on flagged for review (`flagged`).
    pub fn record_flagged(&self, n: u64) {
        Counters::add(&self.run.counters.flagged, n);
    }

    /// The run's shared services.
    pub(crate) fn shared(&self) -> &Arc<RunShared> {
        &self.run
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
