//! Taking a member for a call, and waiting when none can take it: whether a
//! busy member is worth waiting for or the call spills to the next in rank,
//! and the cancellable, deadline-bounded waits themselves.
//!
//! See *Wait or spill* and *Failure is bounded* in the [router docs](super).

use std::time::Duration;

use creative_core::{CallCtx, ErrorKind, ProviderError};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::rank::Ranked;
use super::{Router, Strategy};

/// Why no member could take a call right now.
pub(super) enum Blocked {
    /// The member's circuit is open: it may let a call through after this long.
    Open(Duration),
    /// Come back after this long (limiter, "rate limited" answer).
    After(Duration),
    /// Every candidate's concurrency is full: wait for a slot of this member.
    Slot(usize),
}

impl Router {
    /// The expected wait for busy member `i`: what is left of its delay, plus
    /// the calls queued ahead of this one at its pace.
    fn expected_wait(&self, i: usize, delay: Option<Duration>) -> Duration {
        let m = &self.members[i];
        let o = m.observed();
        let parallel = m
            .guard
            .concurrency
            .as_ref()
            .map_or(o.parallel.max(1), |_| o.in_flight.max(1)) as f64;
        let ahead = o.queued as f64 + if delay.is_none() { 1.0 } else { 0.0 };
        let queue = ahead / parallel * o.latency_ema_s.unwrap_or(0.0);
        delay.unwrap_or(Duration::ZERO) + Duration::try_from_secs_f64(queue).unwrap_or(Duration::MAX)
    }

    /// Whether a call should wait for busy member `i` rather than spill to `next`.
    pub(super) fn worth_waiting(
        &self,
        i: usize,
        delay: Option<Duration>,
        next: usize,
        ranked: &Ranked,
        ctx: &CallCtx,
        waited: Duration,
    ) -> bool {
        if matches!(self.strategy, Strategy::Fallback | Strategy::MostReliable) {
            return false;
        }
        let wait = self.expected_wait(i, delay);
        if wait >= self.remaining(ctx, waited) {
            return false;
        }
        if let Some(cap) = self.latency_cap {
            let o = self.members[i].observed();
            let lat = o.p95().or(o.latency_ema_s).unwrap_or(0.0);
            if wait.as_secs_f64() + lat > cap.as_secs_f64() {
                return false;
            }
        }
        let w = wait.as_secs_f64();
        match self.strategy {
            Strategy::Fastest => w < ranked.latency[next] - ranked.latency[i],
            _ => w * self.wait_cost < ranked.cost[next] - ranked.cost[i],
        }
    }

    /// Try to take member `i` for one call now.
    pub(super) fn try_take(&self, i: usize, now: Instant) -> Result<Option<OwnedSemaphorePermit>, Blocked> {
        let m = &self.members[i];
        if let Some(until) = m.observed().rate_limited_until {
            if until > now {
                return Err(Blocked::After(until - now));
            }
        }
        let permit = match &m.guard.concurrency {
            Some(sem) => match sem.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => return Err(Blocked::Slot(i)),
            },
            None => None,
        };
        m.guard.breaker.try_acquire().map_err(Blocked::Open)?;
        if let Some(l) = &m.guard.limiter {
            if let Err(d) = l.try_acquire() {
                // Release a half-open probe we took but will not use.
                m.guard.breaker.on_neutral();
                return Err(Blocked::After(d));
            }
        }
        Ok(permit)
    }

    /// The error of a call whose every candidate is down (with its circuit open).
    pub(super) fn all_down(&self, order: &[usize]) -> ProviderError {
        let why: Vec<String> = order
            .iter()
            .map(|&i| match self.members[i].guard.health.down() {
                Some(r) => r.to_string(),
                None => format!("`{}` has an open circuit", self.members[i].provider.id()),
            })
            .collect();
        ProviderError::new(
            ErrorKind::Unavailable,
            self.id.clone(),
            format!("every member of router `{}` is down: {}", self.id, why.join("; ")),
        )
    }

    /// Sleep `d`, or until the call is cancelled.
    pub(super) async fn pause(&self, d: Duration, ctx: &CallCtx) -> Result<(), ProviderError> {
        tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => Err(ProviderError::cancelled(self.id.clone())),
            _ = tokio::time::sleep(d) => Ok(()),
        }
    }

    /// Wait for a free slot of member `i` (or `cap`, whichever first).
    pub(super) async fn wait_slot(&self, i: usize, cap: Duration, ctx: &CallCtx) -> Result<(), ProviderError> {
        let Some(sem) = self.members[i].guard.concurrency.clone() else {
            return self.pause(cap, ctx).await;
        };
        tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => Err(ProviderError::cancelled(self.id.clone())),
            // The permit is dropped at once: the next round takes one properly.
            _ = sem.acquire_owned() => Ok(()),
            _ = tokio::time::sleep(cap) => Ok(()),
        }
    }

    pub(super) fn remaining(&self, ctx: &CallCtx, waited: Duration) -> Duration {
        let mut left = self.max_wait.saturating_sub(waited);
        if let Some(deadline) = ctx.deadline {
            left = left.min(deadline.saturating_duration_since(std::time::Instant::now()));
        }
        left
    }
}
