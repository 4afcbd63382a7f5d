//! One provider call with every policy around it: cache, breaker, rate limit,
//! concurrency limit, budget, timeout, cancellation, retry, fallback along the
//! step's provider chain, and waiting when every provider is unavailable.
//!
//! A retry is an attempt like any other: it takes a rate-limit token, a breaker
//! permit and a budget reservation, so their state stays true.
//!
//! # Bounded failure
//!
//! Each provider of the chain keeps its attempt counts for the whole call: a
//! provider whose retries are spent is not asked again after a wait, and a wait
//! does not give it a fresh set. The step waits only when every provider left is
//! merely unavailable (circuit open), and only for as long as its allowance of
//! waiting on open circuits (`ExecutorBuilder::max_open_wait`, total time, kept
//! on the `StepCtx`) and the run's deadline allow.
//!
//! A provider that has failed every call for `ExecutorBuilder::down_after` is
//! down (see [`crate::resilience::DownDetector`]): its jobs do not wait on its
//! circuit and stop retrying it; they fall back or fail at once with an error
//! that names it and its last failure, and a `ProviderDown` event says so once.
//! Its circuit's half-open probes still go through, so it comes back on the
//! first success.
//!
//! A composite provider (a router, `Provider::is_composite`) has its members'
//! breakers and down detectors inside it: the engine keeps none of its own for
//! it (one dead member must not trip the router as a whole) and asks
//! `Provider::unavailable` instead, before a call and before a retry.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::artifact::probe;
use crate::error::{ErrorKind, ProviderError, StepError};
use crate::events::EventKind;
use crate::exec::shared::{Claim, Counters, ProviderSlot, RunShared};
use crate::provider::{CallCtx, CallObserver, CallProgress, MemberCall};
use crate::request::{Generation, Request};
use crate::resilience::RetryPolicy;
use crate::step::StepCtx;
use crate::store::cache_key;

/// A successful call.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    /// What the provider returned.
    pub generation: Generation,
    /// The provider that answered.
    pub provider: String,
    /// Its position in the chain that was given.
    pub chain_index: usize,
    /// 1-based attempt number on that provider.
    pub attempt: u32,
    /// Wall time of the successful call.
    pub latency: Duration,
    /// Whether it came from the cache.
    pub cached: bool,
    /// The answering provider's settings fingerprint ([`crate::Provider::fingerprint`]).
    pub fingerprint: String,
}

// One per provider tried, moved once. CallOutcome grows past clippy's limit
// when serde_json keeps maps in insertion order (the `c2pa` feature's SDK
// turns that on workspace-wide); boxing it would cost an allocation per call.
#[allow(clippy::large_enum_variant)]
enum Tried {
    Done(CallOutcome),
    /// Give up on this provider for this call; try the next.
    Next(ProviderError),
    /// Circuit open: try the next, and remember how long until this one reopens.
    Open(Duration),
    /// Stop the whole call.
    Stop(StepError),
}

/// Where one provider of the chain stands within a call; kept across waits.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    attempt: u32,
    failures: u32,
    rate_limited: u32,
}

/// The error of a call none of whose providers could answer: the provider's own
/// when there was one, else one naming every provider and why each was left.
fn all_failed(chain: &[String], why: &[Option<ProviderError>]) -> ProviderError {
    let errs: Vec<&ProviderError> = why.iter().flatten().collect();
    match errs.as_slice() {
        [] => ProviderError::new(
            ErrorKind::Unavailable,
            chain.join(","),
            "no provider could take the call",
        ),
        [only] if chain.len() == 1 => (*only).clone(),
        _ => {
            let last = errs[errs.len() - 1];
            let each: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            ProviderError::new(
                last.kind(),
                chain.join(","),
                format!("every provider of the step failed: {}", each.join("; ")),
            )
            .with_retry_after(last.retry_after())
        }
    }
}

/// Probe every artifact of a provider's answer ([`crate::artifact::probe`]):
/// bytes that are not the media they claim make the answer a protocol error
/// (an invalid answer: retried per the policy, counted against the provider),
/// and an image's width and height are taken from its header, whatever size
/// was asked or the provider said.
fn verify(provider: &str, mut generation: Generation) -> Result<Generation, ProviderError> {
    for (i, a) in generation.artifacts.iter_mut().enumerate() {
        let probed = probe(a.media(), a.data()).map_err(|e| {
            ProviderError::new(
                ErrorKind::Protocol,
                provider,
                format!("output {i} is not a valid answer: {e}"),
            )
        })?;
        if probed.width.is_some() || probed.height.is_some() {
            let meta = a.meta_mut();
            meta.width = probed.width;
            meta.height = probed.height;
        }
    }
    Ok(generation)
}

/// An attempt's error class and message, as its event carries them.
fn error_fields(e: Option<&ProviderError>) -> (Option<String>, Option<String>) {
    e.map(|e| (e.kind().as_str().to_string(), e.to_string())).unzip()
}

impl StepCtx {
    /// Call the first provider of `chain` that succeeds, with the run's retry,
    /// timeout, breaker, rate-limit, concurrency, budget and cache policies.
    ///
    /// Provider ids must be registered on the executor. Events (`Attempt`, `Retry`,
    /// `Fallback`, `Waiting`, `CacheHit`) are emitted for this job and step.
    pub async fn call_provider(&self, chain: &[String], request: &Request) -> Result<CallOutcome, StepError> {
        self.call_chain(chain, request, None).await
    }

    /// [`StepCtx::call_provider`] with a retry policy of its own instead of the
    /// run's (a judge gate's `max_attempts`); every other policy is the run's.
    pub(crate) async fn call_chain(
        &self,
        chain: &[String],
        request: &Request,
        retry: Option<&RetryPolicy>,
    ) -> Result<CallOutcome, StepError> {
        let run = self.shared().clone();
        let retry = retry.unwrap_or(&run.retry);
        if chain.is_empty() {
            return Err(StepError::invalid_input("no provider given for this step"));
        }
        let mut tallies = vec![Tally::default(); chain.len()];
        // Why each provider was given up on for this call; those are not asked again.
        let mut given_up: Vec<Option<ProviderError>> = vec![None; chain.len()];
        loop {
            let mut earliest_reopen: Option<Duration> = None;
            let mut open: Vec<&str> = Vec::new();
            let mut prev: Option<(usize, String)> = None;
            for (i, id) in chain.iter().enumerate() {
                if given_up[i].is_some() {
                    continue;
                }
                let slot = run.providers.get(id).cloned().ok_or_else(|| {
                    StepError::invalid_input(format!("unknown provider `{id}` (not registered on the executor)"))
                })?;
                if let Some((p, reason)) = prev.take() {
                    Counters::add(&run.counters.fallbacks, 1);
                    self.emit(EventKind::Fallback {
                        job: self.job.key().to_string(),
                        step: self.step.to_string(),
                        from: chain[p].clone(),
                        to: id.clone(),
                        reason,
                    });
                }
                match self.try_provider(&run, &slot, i, request, retry, &mut tallies[i]).await {
                    Tried::Done(o) => {
                        // A provider earlier in the chain failed (or had its
                        // circuit open from failing) and this one served: the
                        // work got done, but not as configured.
                        for e in given_up.iter().flatten() {
                            run.note_degraded(e, id);
                        }
                        for p in &open {
                            run.note_degraded(
                                &ProviderError::new(ErrorKind::Unavailable, *p, "circuit open after repeated failures"),
                                id,
                            );
                        }
                        return Ok(o);
                    }
                    Tried::Stop(e) => return Err(e),
                    Tried::Next(e) => {
                        prev = Some((i, e.to_string()));
                        given_up[i] = Some(e);
                    }
                    Tried::Open(d) => {
                        prev = Some((i, format!("circuit open for `{id}`")));
                        open.push(id);
                        earliest_reopen = Some(earliest_reopen.map_or(d, |e| e.min(d)));
                    }
                }
            }
            // Every provider failed or is unavailable. If some are only unavailable
            // (circuit open), wait for the earliest reopening, within the step's
            // allowance and the run's deadline, instead of losing the work.
            let Some(d) = earliest_reopen else {
                return Err(StepError::from(all_failed(chain, &given_up)));
            };
            let waited = Duration::from_micros(self.open_waited.load(Ordering::Relaxed));
            if waited + d > run.max_open_wait {
                let mut why = given_up.clone();
                why.push(Some(ProviderError::new(
                    ErrorKind::Unavailable,
                    open.join(","),
                    format!(
                        "circuit open for {}: reopening in {:.1} s would take the step past its {:.0} s of waiting on open circuits ({:.1} s waited)",
                        open.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", "),
                        d.as_secs_f64(),
                        run.max_open_wait.as_secs_f64(),
                        waited.as_secs_f64()
                    ),
                )));
                return Err(StepError::from(all_failed(chain, &why)));
            }
            if let Some(deadline) = run.budget.deadline() {
                if tokio::time::Instant::now() + d >= deadline {
                    return Err(StepError::budget(format!(
                        "deadline comes before any provider reopens (circuit open for {})",
                        open.join(", ")
                    )));
                }
            }
            self.emit(EventKind::Waiting {
                job: self.job.key().to_string(),
                step: self.step.to_string(),
                delay_ms: d.as_millis() as u64,
                reason: "every provider of the step has an open circuit".into(),
            });
            let t0 = tokio::time::Instant::now();
            let slept = self.sleep(d).await;
            let micros = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.open_waited.fetch_add(micros, Ordering::Relaxed);
            slept?;
        }
    }

    /// The error a job gives up on `slot` with when its provider is down; the
    /// first job to find it down emits `ProviderDown`.
    fn down(&self, slot: &ProviderSlot) -> Option<ProviderError> {
        if let Some(r) = slot.guard.health.declare() {
            tracing::warn!(provider = %r.provider, "{r}");
            self.emit(EventKind::ProviderDown {
                provider: r.provider.clone(),
                failures: r.failures,
                over_ms: u64::try_from(r.over.as_millis()).unwrap_or(u64::MAX),
                last_error_kind: r.last_kind.as_str().to_string(),
                last_error: r.last_error.clone(),
            });
        }
        slot.guard.health.down().map(|r| r.to_error())
    }

    async fn sleep(&self, d: Duration) -> Result<(), StepError> {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(StepError::cancelled()),
            _ = tokio::time::sleep(d) => Ok(()),
        }
    }

    async fn try_provider(
        &self,
        run: &Arc<RunShared>,
        slot: &ProviderSlot,
        index: usize,
        request: &Request,
        retry: &RetryPolicy,
        tally: &mut Tally,
    ) -> Tried {
        let provider = &slot.provider;
        let pid = provider.id().to_string();
        // A composite keeps its members' health inside; see the module docs.
        let guarded = !provider.is_composite();
        let neutral = || {
            if guarded {
                slot.guard.breaker.on_neutral();
            }
        };
        let estimate = provider.estimate_cost(request);
        // The model the provider uses (its default when the request names none):
        // events and the report key attempts, cost and accepted assets by it.
        let model = provider.model(request);

        let fingerprint = provider.fingerprint();
        let key = run.cache.as_ref().map(|_| cache_key(&pid, &fingerprint, request));
        // Held while this call leads an identical in-flight generation.
        let mut _lead = None;
        if let (Some(cache), Some(key), false) = (&run.cache, &key, run.force) {
            loop {
                match cache.get(key).await {
                    Ok(Some(generation)) => {
                        let saved = generation.usage.cost_usd;
                        Counters::add(&run.counters.cache_hits, 1);
                        Counters::add_usd(&run.counters.saved_micros, saved);
                        self.emit(EventKind::CacheHit {
                            job: self.job.key().to_string(),
                            step: self.step.to_string(),
                            provider: pid.clone(),
                            // Keyed as the call's `AttemptFinished` was.
                            model: match generation.artifacts.first() {
                                Some(a) if guarded => request
                                    .model
                                    .clone()
                                    .or_else(|| a.provenance().model.clone())
                                    .or_else(|| model.clone()),
                                _ => model.clone(),
                            },
                            saved_usd: saved,
                        });
                        return Tried::Done(CallOutcome {
                            generation,
                            provider: pid,
                            chain_index: index,
                            attempt: 0,
                            latency: Duration::ZERO,
                            cached: true,
                            fingerprint,
                        });
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "cache lookup failed; calling the provider");
                        break;
                    }
                }
                match run.inflight.claim(key) {
                    Claim::Leader(guard) => {
                        _lead = Some(guard);
                        break;
                    }
                    // Someone is making this very call: wait for it, then read the
                    // cache again (if it failed, one of the waiters leads next).
                    Claim::Follower(done) => {
                        tokio::select! {
                            biased;
                            _ = self.cancel.cancelled() => return Tried::Stop(StepError::cancelled()),
                            _ = done.acquire() => {}
                        }
                    }
                }
            }
        }

        loop {
            if self.cancel.is_cancelled() {
                return Tried::Stop(StepError::cancelled());
            }
            if guarded {
                if let Err(wait) = slot.guard.breaker.try_acquire() {
                    // A provider that is down is not waited for.
                    return match self.down(slot) {
                        Some(e) => Tried::Next(e),
                        None => Tried::Open(wait),
                    };
                }
            } else if let Some(e) = provider.unavailable() {
                return Tried::Next(e);
            }
            if let Some(l) = &slot.guard.limiter {
                let d = l.reserve();
                if !d.is_zero() {
                    if let Err(e) = self.sleep(d).await {
                        neutral();
                        return Tried::Stop(e);
                    }
                }
            }
            let _permit = match &slot.guard.concurrency {
                Some(sem) => tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => { neutral(); return Tried::Stop(StepError::cancelled()) }
                    p = sem.clone().acquire_owned() => p.ok(),
                },
                None => None,
            };
            let reservation = match run.budget.reserve(estimate) {
                Ok(r) => r,
                Err(e) => {
                    neutral();
                    return Tried::Stop(StepError::budget(e.to_string()));
                }
            };
            tally.attempt += 1;
            let attempt = tally.attempt;
            Counters::add(&run.counters.attempts, 1);
            let listened = run.events.is_listened();
            if listened {
                self.emit(EventKind::Attempt {
                    job: self.job.key().to_string(),
                    step: self.step.to_string(),
                    provider: pid.clone(),
                    model: model.clone(),
                    attempt,
                });
            }
            let timeout = slot.guard.timeout.or(run.call_timeout);
            let ctx = CallCtx {
                cancel: self.cancel.clone(),
                attempt,
                deadline: timeout.map(|t| Instant::now() + t),
                // Every provider's: a composite reports its member calls, any
                // provider its progress (a ComfyUI prompt's nodes).
                observer: listened.then(|| {
                    Arc::new(MemberEvents {
                        run: run.clone(),
                        job: self.job.key().to_string(),
                        step: self.step.to_string(),
                        router: pid.clone(),
                        attempt,
                    }) as Arc<dyn CallObserver>
                }),
            };
            let started = Instant::now();
            let span = tracing::debug_span!("attempt", provider = %pid, attempt);
            let fut = provider.generate(request, &ctx).instrument(span);
            let result = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => Err(ProviderError::cancelled(&pid)),
                r = async {
                    match timeout {
                        Some(t) => tokio::time::timeout(t, fut).await.unwrap_or_else(|_| Err(ProviderError::timeout(&pid, t))),
                        None => fut.await,
                    }
                } => r,
            };
            let latency = started.elapsed();
            let cost = result.as_ref().map(|g| g.usage.cost_usd).unwrap_or(0.0);
            run.budget.settle(reservation, cost);
            Counters::add_usd(&run.counters.cost_micros, cost);
            // An answer counts only once its bytes are the media they claim; a
            // paid answer that is not is still paid (settled above).
            let result = result.and_then(|g| verify(&pid, g));
            if listened {
                let (error_kind, error) = error_fields(result.as_ref().err());
                // The step's model, else the one the answer names, else the
                // provider's default (a composite's answers name its members'
                // models: its own row keeps its key).
                let answered = match &result {
                    Ok(g) if guarded => g.artifacts.first().and_then(|a| a.provenance().model.clone()),
                    _ => None,
                };
                self.emit(EventKind::AttemptFinished {
                    job: self.job.key().to_string(),
                    step: self.step.to_string(),
                    provider: pid.clone(),
                    // As generate steps record it in provenance.
                    model: request.model.clone().or(answered).or_else(|| model.clone()),
                    attempt,
                    latency_ms: latency.as_secs_f64() * 1e3,
                    cost_usd: cost,
                    error_kind,
                    error,
                });
            }
            match result {
                Ok(generation) => {
                    if guarded {
                        slot.guard.breaker.on_success();
                        slot.guard.health.on_success();
                    }
                    if let (Some(cache), Some(key)) = (&run.cache, &key) {
                        if let Err(e) = cache.put(key, &generation).await {
                            tracing::warn!(error = %e, "cache write failed");
                        }
                    }
                    return Tried::Done(CallOutcome {
                        generation,
                        provider: pid,
                        chain_index: index,
                        attempt,
                        latency,
                        cached: false,
                        fingerprint,
                    });
                }
                Err(e) => {
                    Counters::add(&run.counters.failed_attempts, 1);
                    if e.kind() == ErrorKind::Cancelled {
                        neutral();
                        return Tried::Stop(StepError::cancelled());
                    }
                    if !guarded {
                        if let Some(down) = provider.unavailable() {
                            return Tried::Next(down);
                        }
                    } else if e.kind().counts_against_provider() {
                        slot.guard.breaker.on_failure();
                        slot.guard.health.on_failure(&e);
                        // Retrying a provider that is down only delays the fallback.
                        if let Some(down) = self.down(slot) {
                            return Tried::Next(down);
                        }
                    } else {
                        slot.guard.breaker.on_neutral();
                    }
                    let n = if e.kind() == ErrorKind::RateLimited {
                        tally.rate_limited += 1;
                        tally.rate_limited
                    } else {
                        tally.failures += 1;
                        tally.failures
                    };
                    let delay = retry.delay_for(n, &e);
                    match delay {
                        Some(d) => {
                            if let Some(deadline) = run.budget.deadline() {
                                if tokio::time::Instant::now() + d >= deadline {
                                    return Tried::Next(e);
                                }
                            }
                            Counters::add(&run.counters.retries, 1);
                            self.emit(EventKind::Retry {
                                job: self.job.key().to_string(),
                                step: self.step.to_string(),
                                provider: pid.clone(),
                                attempt,
                                delay_ms: d.as_millis() as u64,
                                reason: e.to_string(),
                            });
                            if let Err(e) = self.sleep(d).await {
                                return Tried::Stop(e);
                            }
                        }
                        None if e.kind().allows_fallback() => return Tried::Next(e),
                        None => return Tried::Stop(StepError::from(e)),
                    }
                }
            }
        }
    }
}

/// Turns a composite provider's member calls into `MemberAttemptFinished`
/// events, and any provider's progress reports into `Progress` events, of the
/// job and step whose attempt made them.
struct MemberEvents {
    run: Arc<RunShared>,
    job: String,
    step: String,
    router: String,
    attempt: u32,
}

impl CallObserver for MemberEvents {
    fn member_call(&self, call: MemberCall) {
        let (error_kind, error) = error_fields(call.error.as_ref());
        self.run.events.emit(EventKind::MemberAttemptFinished {
            job: self.job.clone(),
            step: self.step.clone(),
            router: self.router.clone(),
            member: call.member,
            model: call.model,
            attempt: self.attempt,
            latency_ms: call.latency.as_secs_f64() * 1e3,
            cost_usd: call.cost_usd,
            error_kind,
            error,
            reason: call.reason,
        });
    }

    fn progress(&self, p: CallProgress) {
        self.run.events.emit(EventKind::Progress {
            job: self.job.clone(),
            step: self.step.clone(),
            provider: self.router.clone(),
            stage: p.stage,
            done: p.done,
            total: p.total,
        });
    }
}
