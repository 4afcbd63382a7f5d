//! The router as a [`Provider`]: what it answers for its members together
//! (capabilities, price, availability, warnings) and the dispatch of one call,
//! from ranking through waiting or spilling to the member that answers, with
//! fallback to the next member on failure.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use creative_core::resilience::BreakerState;
use creative_core::{
    Artifact, CallCtx, Capabilities, ErrorKind, Generation, MemberCall, Provider, ProviderError, Request, RouteReason,
};
use tokio::time::Instant;

use super::member::InFlight;
use super::wait::Blocked;
use super::{Router, Strategy, ROUTED_PROVIDER};

#[async_trait]
impl Provider for Router {
    fn id(&self) -> &str {
        &self.id
    }

    /// The strategy and, in order, each member's id and fingerprint: a changed
    /// member setting, an added or removed member or another strategy is another
    /// fingerprint.
    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        for m in &self.members {
            let c = m.provider.capabilities();
            for t in c.tasks {
                if !caps.tasks.contains(&t) {
                    caps.tasks.push(t);
                }
            }
            caps.seed |= c.seed;
            caps.negative_prompt |= c.negative_prompt;
            caps.max_count = caps.max_count.max(c.max_count);
        }
        caps
    }

    /// The highest estimate among the members able to do the task: the router may
    /// pick any of them (exploration, spill-over, fallback), and a budget must
    /// reserve enough for the dearest.
    fn estimate_cost(&self, request: &Request) -> f64 {
        self.members
            .iter()
            .filter(|m| m.provider.capabilities().supports(request.task))
            .map(|m| m.provider.estimate_cost(request))
            .fold(0.0, f64::max)
    }

    /// Priced when every member able to do the task is.
    fn has_price(&self, request: &Request) -> bool {
        self.members
            .iter()
            .filter(|m| m.provider.capabilities().supports(request.task))
            .all(|m| m.provider.has_price(request))
    }

    /// The engine reports each judged artifact here; it goes to the member that made it.
    fn record_verdict(&self, artifact: &Artifact, accepted: bool) {
        Router::record_verdict(self, artifact, accepted);
    }

    /// A router keeps a breaker and a down detector per member; the engine keeps
    /// none of its own on it.
    fn is_composite(&self) -> bool {
        true
    }

    /// Every member is down and none is due for a probe (its circuit is open):
    /// a call would only fail, so the engine falls back or fails at once.
    fn unavailable(&self) -> Option<ProviderError> {
        let all = (0..self.members.len()).collect::<Vec<_>>();
        let every_down = self
            .members
            .iter()
            .all(|m| m.guard.health.down().is_some() && m.guard.breaker.state() == BreakerState::Open);
        every_down.then(|| self.all_down(&all))
    }

    /// Each member's concerns, named by member.
    fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .members
            .iter()
            .flat_map(|m| {
                let id = m.provider.id().to_string();
                m.provider
                    .warnings()
                    .into_iter()
                    .map(move |w| format!("member `{id}`: {w}"))
            })
            .collect();
        if self.exploration > 0.0 && !self.strategy.learns() {
            out.push(format!(
                "`exploration` is ignored: strategy `{}` is deterministic and learns nothing from exploring",
                self.strategy
            ));
        }
        out
    }

    /// Reachable when any member is: the router routes around the others.
    async fn preflight(&self, ctx: &CallCtx) -> Result<(), ProviderError> {
        let mut errors = Vec::new();
        for m in &self.members {
            match m.provider.preflight(ctx).await {
                Ok(()) => return Ok(()),
                Err(e) => errors.push(e.to_string()),
            }
        }
        if errors.is_empty() {
            return Ok(());
        }
        Err(ProviderError::transient(
            self.id.clone(),
            format!("no member is reachable: {}", errors.join("; ")),
        ))
    }

    async fn generate(&self, request: &Request, ctx: &CallCtx) -> Result<Generation, ProviderError> {
        let mut changes_seen = self.changes.load(Ordering::Relaxed);
        let mut ranked = self.rank(request, true);
        let mut order = ranked.order.clone();
        if order.is_empty() {
            return Err(ProviderError::invalid(
                self.id.clone(),
                format!("no provider of this router can do task `{}`", request.task.as_str()),
            ));
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        if ranked.explored {
            self.explorations.fetch_add(1, Ordering::Relaxed);
        }
        // Members report nothing of their own: this router reports each call it
        // makes to them (a router inside a router would count them twice).
        let member_ctx = if ctx.observer.is_some() {
            ctx.unobserved()
        } else {
            ctx.clone()
        };
        let mut tried = vec![false; self.members.len()];
        let mut failed_once = vec![false; self.members.len()];
        let mut attempts = 0usize;
        let mut last_err: Option<ProviderError> = None;
        let mut waited = Duration::ZERO;
        let (mut did_wait, mut did_spill) = (false, false);
        loop {
            if ctx.cancel.is_cancelled() {
                return Err(ProviderError::cancelled(self.id.clone()));
            }
            // A call that waited may have been ranked on evidence the change
            // test has since thrown out (a member collapsed meanwhile): rank
            // it again rather than keep queueing for that member.
            let changes = self.changes.load(Ordering::Relaxed);
            if changes != changes_seen {
                changes_seen = changes;
                ranked = self.rank(request, true);
                order = ranked.order.clone();
            }
            let now = Instant::now();
            let mut soonest: Option<Duration> = None;
            let mut slot: Option<usize> = None;
            let mut picked = None;
            // A busy member worth waiting for, and for how long at most.
            let mut wait_for: Option<(usize, Option<Duration>)> = None;
            let mut passed_busy = false;
            // Members not worth waiting for this round: open circuits once a member
            // has failed this call, and down members' circuits at any time.
            let mut skipped = vec![false; self.members.len()];
            let candidates: Vec<usize> = order.iter().copied().filter(|&i| !tried[i]).collect();
            for (pos, &i) in candidates.iter().enumerate() {
                match self.try_take(i, now) {
                    Ok(permit) => {
                        picked = Some((i, permit));
                        break;
                    }
                    Err(Blocked::Open(d)) => {
                        if last_err.is_some() || self.members[i].guard.health.down().is_some() {
                            skipped[i] = true;
                        } else {
                            soonest = Some(soonest.map_or(d, |s| s.min(d)));
                        }
                    }
                    Err(busy) => {
                        let delay = match busy {
                            Blocked::After(d) => Some(d),
                            _ => None,
                        };
                        let next = candidates.get(pos + 1).copied();
                        if next.is_some_and(|j| self.worth_waiting(i, delay, j, &ranked, ctx, waited)) {
                            wait_for = Some((i, delay));
                            break;
                        }
                        passed_busy = true;
                        match busy {
                            Blocked::After(d) => soonest = Some(soonest.map_or(d, |s| s.min(d))),
                            Blocked::Slot(j) => {
                                slot.get_or_insert(j);
                            }
                            Blocked::Open(_) => {}
                        }
                    }
                }
            }
            if let Some((i, delay)) = wait_for {
                if !did_wait {
                    did_wait = true;
                    self.waits.fetch_add(1, Ordering::Relaxed);
                }
                let left = self.remaining(ctx, waited);
                let started = Instant::now();
                self.members[i].observed().queued += 1;
                let r = match delay {
                    Some(d) => self.pause(d.min(left), ctx).await,
                    None => self.wait_slot(i, left, ctx).await,
                };
                let mut o = self.members[i].observed();
                o.queued = o.queued.saturating_sub(1);
                drop(o);
                r?;
                waited += started.elapsed();
                continue;
            }
            let Some((i, permit)) = picked else {
                if order.iter().all(|&i| tried[i] || skipped[i]) {
                    // Every member failed this call or is open with nothing to wait
                    // for: the last failure speaks for the call, at once.
                    return Err(last_err.unwrap_or_else(|| self.all_down(&order)));
                }
                let left = self.remaining(ctx, waited);
                let wait = soonest.unwrap_or(left);
                if left.is_zero() || (slot.is_none() && wait > left) {
                    let msg = "no member can take the call before the router's wait limit or the call's deadline";
                    return Err(match last_err {
                        Some(e) if e.kind() != ErrorKind::RateLimited => e,
                        _ => ProviderError::rate_limited(self.id.clone(), msg, soonest),
                    });
                }
                let started = Instant::now();
                match slot {
                    Some(j) => self.wait_slot(j, wait.min(left), ctx).await?,
                    None => self.pause(wait, ctx).await?,
                }
                waited += started.elapsed();
                continue;
            };
            if passed_busy && !did_spill {
                did_spill = true;
                self.spills.fetch_add(1, Ordering::Relaxed);
            }
            let reason = if last_err.is_some() {
                RouteReason::Fallback
            } else if passed_busy {
                RouteReason::Spilled
            } else if order.first() != Some(&i) {
                // Members ranked before it are unavailable (open circuits).
                RouteReason::Fallback
            } else if did_wait {
                RouteReason::Waited
            } else if ranked.explored {
                RouteReason::Explored
            } else {
                RouteReason::Exploited
            };
            let flight = InFlight::new(&self.members[i]);
            // `max_attempts` bounds the members a call tries, not the tries.
            let first_try = !failed_once[i];
            if first_try {
                attempts += 1;
            }
            let member = &self.members[i];
            let started = Instant::now();
            let call = member.provider.generate(request, &member_ctx);
            let result = match member.guard.timeout {
                Some(t) => tokio::time::timeout(t, call)
                    .await
                    .unwrap_or_else(|_| Err(ProviderError::timeout(member.provider.id(), t))),
                None => call.await,
            };
            drop(permit);
            let elapsed = started.elapsed();
            self.record_outcome(i, elapsed, &result);
            drop(flight);
            match result {
                Ok(mut generation) => {
                    let id = serde_json::Value::String(member.provider.id().to_string());
                    // The engine records a composite's seed only where the
                    // composite says one was sent: here, when the member sends seeds.
                    let sent = (!member.provider.is_composite() && member.provider.capabilities().seed)
                        .then_some(request.params.seed)
                        .flatten();
                    // The model the member used: the step's, else the one its
                    // answer names, else its default; every artifact names it,
                    // as the report does.
                    let model = request
                        .model
                        .clone()
                        .or_else(|| generation.artifacts.iter().find_map(|a| a.provenance().model.clone()))
                        .or_else(|| member.provider.model(request));
                    for a in &mut generation.artifacts {
                        a.meta_mut().extra.insert(ROUTED_PROVIDER.into(), id.clone());
                        if a.provenance().seed.is_none() && sent.is_some() {
                            a.provenance_mut().seed = sent;
                        }
                        if a.provenance().model.is_none() {
                            a.provenance_mut().model.clone_from(&model);
                        }
                    }
                    ctx.report_member(MemberCall {
                        member: member.provider.id().to_string(),
                        model,
                        latency: elapsed,
                        cost_usd: generation.usage.cost_usd,
                        error: None,
                        reason: Some(reason),
                    });
                    return Ok(generation);
                }
                Err(e) => {
                    ctx.report_member(MemberCall {
                        member: member.provider.id().to_string(),
                        model: member.provider.model(request),
                        latency: elapsed,
                        cost_usd: 0.0,
                        error: Some(e.clone()),
                        reason: Some(reason),
                    });
                    tracing::debug!(router = %self.id, member = member.provider.id(), error = %e, "member failed");
                    if e.kind() == ErrorKind::RateLimited && !ctx.cancel.is_cancelled() {
                        // Not a failure of the member: it is busy until its
                        // Retry-After, and the next round weighs waiting for it
                        // against spilling, as for any busy member. The wait
                        // limit bounds the rounds.
                        if first_try {
                            attempts -= 1;
                        }
                        continue;
                    }
                    let retry_here = self.strategy == Strategy::CostPerAccepted
                        && e.kind() == ErrorKind::Transient
                        && !failed_once[i];
                    if !e.kind().allows_fallback() || (attempts >= self.max_attempts && !retry_here) {
                        return Err(e);
                    }
                    // Cost per accepted asset already counts a member's
                    // failures: after a one-off server error the member is as
                    // good a bet as it was, and the next in rank is dearer per
                    // accepted asset. So it keeps its place for one more try; a
                    // second failure in the same call is more than chance, and
                    // the call moves on.
                    failed_once[i] = true;
                    tried[i] = !retry_here;
                    last_err = Some(e);
                }
            }
        }
    }
}
