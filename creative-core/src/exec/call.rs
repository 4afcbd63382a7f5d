//! One provider call with every policy around it: cache, breaker, rate limit,
//! concurrency limit, budget, timeout, cancellation, retry, fallback along the
//! step's provider chain, and waiting when every provider is unavailable.
//!
//! A retry is an attempt like any other: it takes a rate-limit token, a breaker
//! permit and a budget reservation, so their state stays true.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::error::{ErrorKind, ProviderError, StepError};
use crate::events::EventKind;
use crate::exec::shared::{Claim, Counters, ProviderSlot, RunShared};
use crate::provider::CallCtx;
use crate::request::{Generation, Request};
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
}

enum Tried {
    Done(CallOutcome),
    /// Give up on this provider; try the next.
    Next(ProviderError),
    /// Circuit open: try the next, and remember how long until this one reopens.
    Open(Duration),
    /// Stop the whole call.
    Stop(StepError),
}

impl StepCtx {
    /// Call the first provider of `chain` that succeeds, with the run's retry,
    /// timeout, breaker, rate-limit, concurrency, budget and cache policies.
    ///
    /// Provider ids must be registered on the executor. Events (`Attempt`, `Retry`,
    /// `Fallback`, `Waiting`, `CacheHit`) are emitted for this job and step.
    pub async fn call_provider(&self, chain: &[String], request: &Request) -> Result<CallOutcome, StepError> {
        let run = self.shared().clone();
        if chain.is_empty() {
            return Err(StepError::InvalidInput("no provider given for this step".into()));
        }
        let mut waits = 0u32;
        loop {
            let mut earliest_reopen: Option<Duration> = None;
            let mut last_err: Option<ProviderError> = None;
            for (i, id) in chain.iter().enumerate() {
                let slot = run.providers.get(id).cloned().ok_or_else(|| {
                    StepError::InvalidInput(format!("unknown provider `{id}` (not registered on the executor)"))
                })?;
                if i > 0 {
                    let reason = match (&last_err, earliest_reopen) {
                        (Some(e), _) => e.to_string(),
                        (None, Some(_)) => format!("circuit open for `{}`", chain[i - 1]),
                        (None, None) => String::from("previous provider unavailable"),
                    };
                    Counters::add(&run.counters.fallbacks, 1);
                    self.emit(EventKind::Fallback {
                        job: self.job.key().to_string(),
                        step: self.step.to_string(),
                        from: chain[i - 1].clone(),
                        to: id.clone(),
                        reason,
                    });
                }
                match self.try_provider(&run, &slot, i, request).await {
                    Tried::Done(o) => return Ok(o),
                    Tried::Stop(e) => return Err(e),
                    Tried::Next(e) => last_err = Some(e),
                    Tried::Open(d) => earliest_reopen = Some(earliest_reopen.map_or(d, |e| e.min(d))),
                }
            }
            // Every provider failed. If at least one was only unavailable (circuit
            // open), wait for the earliest reopening instead of losing the work.
            match (earliest_reopen, last_err) {
                (Some(d), _) if waits < run.max_reopen_waits => {
                    waits += 1;
                    if let Some(deadline) = run.budget.deadline() {
                        if tokio::time::Instant::now() + d >= deadline {
                            return Err(StepError::Budget("deadline comes before any provider reopens".into()));
                        }
                    }
                    self.emit(EventKind::Waiting {
                        job: self.job.key().to_string(),
                        step: self.step.to_string(),
                        delay_ms: d.as_millis() as u64,
                        reason: "every provider of the step has an open circuit".into(),
                    });
                    self.sleep(d).await?;
                }
                (_, Some(e)) => return Err(StepError::Provider(e)),
                (Some(_), None) => {
                    return Err(StepError::Provider(ProviderError::new(
                        ErrorKind::Unavailable,
                        chain.join(","),
                        "every provider has an open circuit and waiting is exhausted",
                    )))
                }
                (None, None) => unreachable!("a non-empty chain yields an outcome"),
            }
        }
    }

    async fn sleep(&self, d: Duration) -> Result<(), StepError> {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(StepError::Cancelled),
            _ = tokio::time::sleep(d) => Ok(()),
        }
    }

    async fn try_provider(&self, run: &Arc<RunShared>, slot: &ProviderSlot, index: usize, request: &Request) -> Tried {
        let provider = &slot.provider;
        let pid = provider.id().to_string();
        let estimate = provider.estimate_cost(request);

        let key = run.cache.as_ref().map(|_| cache_key(&pid, request));
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
                            model: generation
                                .artifacts
                                .first()
                                .and_then(|a| a.provenance().model.clone())
                                .or_else(|| request.model.clone()),
                            saved_usd: saved,
                        });
                        return Tried::Done(CallOutcome {
                            generation,
                            provider: pid,
                            chain_index: index,
                            attempt: 0,
                            latency: Duration::ZERO,
                            cached: true,
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
                            _ = self.cancel.cancelled() => return Tried::Stop(StepError::Cancelled),
                            _ = done.acquire() => {}
                        }
                    }
                }
            }
        }

        let mut attempt = 0u32;
        let mut failures = 0u32;
        let mut rate_limited = 0u32;
        loop {
            if self.cancel.is_cancelled() {
                return Tried::Stop(StepError::Cancelled);
            }
            if let Err(wait) = slot.breaker.try_acquire() {
                return Tried::Open(wait);
            }
            if let Some(l) = &slot.limiter {
                let d = l.reserve();
                if !d.is_zero() {
                    if let Err(e) = self.sleep(d).await {
                        slot.breaker.on_neutral();
                        return Tried::Stop(e);
                    }
                }
            }
            let _permit = match &slot.concurrency {
                Some(sem) => tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => { slot.breaker.on_neutral(); return Tried::Stop(StepError::Cancelled) }
                    p = sem.clone().acquire_owned() => p.ok(),
                },
                None => None,
            };
            let reservation = match run.budget.reserve(estimate) {
                Ok(r) => r,
                Err(e) => {
                    slot.breaker.on_neutral();
                    return Tried::Stop(StepError::Budget(e.to_string()));
                }
            };
            attempt += 1;
            Counters::add(&run.counters.attempts, 1);
            let listened = run.events.is_listened();
            if listened {
                self.emit(EventKind::Attempt {
                    job: self.job.key().to_string(),
                    step: self.step.to_string(),
                    provider: pid.clone(),
                    model: request.model.clone(),
                    attempt,
                });
            }
            let timeout = slot.timeout.or(run.call_timeout);
            let ctx = CallCtx {
                cancel: self.cancel.clone(),
                attempt,
                deadline: timeout.map(|t| Instant::now() + t),
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
            if listened {
                let (error_kind, error) = match &result {
                    Ok(_) => (None, None),
                    Err(e) => (Some(e.kind().as_str().to_string()), Some(e.to_string())),
                };
                self.emit(EventKind::AttemptFinished {
                    job: self.job.key().to_string(),
                    step: self.step.to_string(),
                    provider: pid.clone(),
                    model: request.model.clone(),
                    attempt,
                    latency_ms: latency.as_secs_f64() * 1e3,
                    cost_usd: cost,
                    error_kind,
                    error,
                });
            }
            match result {
                Ok(generation) => {
                    slot.breaker.on_success();
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
                    });
                }
                Err(e) => {
                    Counters::add(&run.counters.failed_attempts, 1);
                    if e.kind() == ErrorKind::Cancelled {
                        slot.breaker.on_neutral();
                        return Tried::Stop(StepError::Cancelled);
                    }
                    if e.kind().counts_against_provider() {
                        slot.breaker.on_failure();
                    } else {
                        slot.breaker.on_neutral();
                    }
                    let n = if e.kind() == ErrorKind::RateLimited {
                        rate_limited += 1;
                        rate_limited
                    } else {
                        failures += 1;
                        failures
                    };
                    let delay = run.retry.delay_for(n, &e);
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
                        None => return Tried::Stop(StepError::Provider(e)),
                    }
                }
            }
        }
    }
}
