//! What the router learns as calls go: each outcome and gate verdict into the
//! member's evidence, the evidence out to and in from other routers and the
//! statistics file, and the reports of it ([`MemberStats`], [`Decisions`]).
//!
//! The ranking reads this evidence (`rank.rs`); the model it is kept in (a
//! discounted Beta posterior and a change test) is in `bandit.rs`, and the file
//! in `learned.rs`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use creative_core::resilience::BreakerState;
use creative_core::{Artifact, ErrorKind, Generation, ProviderError, Request};
use tokio::time::Instant;

use super::learned::{self, Learned};
use super::member::{Observed, LATENCY_SAMPLES};
use super::{Router, ROUTED_PROVIDER};
#[cfg(doc)]
use super::{RouterBuilder, Strategy};

/// What the router decided beyond its ranking, counted per call; see
/// [`Router::decisions`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decisions {
    /// Calls that went to a member other than their first choice because the
    /// first choice was busy (rate limited or full) and waiting cost more.
    pub spills: u64,
    /// Calls that waited for a busy first choice rather than spill.
    pub waits: u64,
    /// Calls whose first choice was not the best by the current estimates
    /// (a Thompson draw or the `exploration` share favoured another).
    pub explorations: u64,
    /// Changes in a member's acceptance found by the change test, each of which
    /// restarted that member's evidence from the outcomes after the change.
    pub changes: u64,
}

/// What the router has observed about one member, as reported by [`Router::stats`].
#[derive(Debug, Clone, PartialEq)]
pub struct MemberStats {
    /// The member's provider id.
    pub id: String,
    /// Calls made to it through this router.
    pub calls: u64,
    /// Calls that succeeded.
    pub successes: u64,
    /// Calls that failed (any class).
    pub failures: u64,
    /// Moving average of observed latency, in milliseconds; `None` before the first
    /// measured call.
    pub latency_ms: Option<f64>,
    /// Recent success rate (decayed; 1 before any observation).
    pub success_rate: f64,
    /// Recent gate pass rate (decayed; 1 before any verdict).
    pub gate_pass_rate: f64,
    /// Gate verdicts reported.
    pub gate_verdicts: u64,
    /// Attempts counted as accepted (every gate passed, or a success when
    /// nothing is judged).
    pub accepted: u64,
    /// Attempts counted as rejected (a gate rejected the output, the call failed
    /// or was refused).
    pub rejected: u64,
    /// The posterior mean of the accepted-per-attempt rate (prior included).
    pub accept_rate: f64,
    /// Expected cost per accepted asset in US dollars, from the billed cost per
    /// attempt and `accept_rate`.
    pub cost_per_accepted_usd: f64,
    /// 95th percentile of the latest successful calls' latency, in milliseconds;
    /// `None` before five of them.
    pub latency_p95_ms: Option<f64>,
    /// The member's circuit breaker state.
    pub breaker: BreakerState,
    /// Whether it is declared down (failed every call for [`RouterBuilder::down_after`]).
    pub down: bool,
}

/// Observations between two saves of the statistics file.
const SAVE_EVERY: u64 = 64;

impl Router {
    /// Report a gate verdict on an artifact made by member `provider_id`: `passed`
    /// is true when the artifact was accepted (every gate passed).
    ///
    /// [`Strategy::CostPerAccepted`] ranks on these reports; the other strategies
    /// only show them in [`Router::stats`]. Returns false when `provider_id` is not a
    /// member of this router (the report is ignored).
    pub fn record_gate(&self, provider_id: &str, passed: bool) -> bool {
        let Some(m) = self.members.iter().find(|m| m.provider.id() == provider_id) else {
            return false;
        };
        self.gated.store(true, Ordering::Relaxed);
        let tick = self.tick.fetch_add(1, Ordering::Relaxed) + 1;
        {
            let mut o = m.observed();
            o.pass_w = o.pass_w * self.decay + if passed { 1.0 } else { 0.0 };
            o.verdicts_w = o.verdicts_w * self.decay + 1.0;
            o.verdicts += 1;
            o.pending = o.pending.saturating_sub(1);
            if o.observe(tick, self.gamma, passed) {
                self.changes.fetch_add(1, Ordering::Relaxed);
            }
            if passed {
                o.accepted += 1;
                o.fresh.accepted += 1.0;
            } else {
                o.rejected += 1;
                o.fresh.rejected += 1.0;
            }
        }
        self.observed_one();
        true
    }

    /// What the router decided beyond its rankings: spills, waits and
    /// explorations, counted per call.
    pub fn decisions(&self) -> Decisions {
        Decisions {
            spills: self.spills.load(Ordering::Relaxed),
            waits: self.waits.load(Ordering::Relaxed),
            explorations: self.explorations.load(Ordering::Relaxed),
            changes: self.changes.load(Ordering::Relaxed),
        }
    }

    /// Each member's evidence as it stands, keyed by provider, model and gate
    /// set, for [`Router::learn`] in another router (another run, a shard).
    pub fn learned(&self) -> Vec<Learned> {
        let tick = self.tick.load(Ordering::Relaxed);
        (0..self.members.len())
            .map(|i| {
                let o = self.members[i].observed();
                let (accepted, rejected) = o.accept.at(tick, self.gamma);
                let (cost_usd, attempts) = o.billed.at(tick, self.gamma);
                Learned {
                    provider: self.members[i].provider.id().to_string(),
                    model: self.model_key(i),
                    gate_set: self.gate_set.clone(),
                    accepted,
                    rejected,
                    attempts,
                    cost_usd,
                    latency_s: o.latency_ema_s,
                }
            })
            .collect()
    }

    /// Start from evidence learned elsewhere: each entry whose provider, model
    /// and gate set match a member is added to that member's evidence (capped at
    /// the window, so a long history does not freeze the estimates). Returns how
    /// many entries matched.
    pub fn learn(&self, entries: &[Learned]) -> usize {
        let tick = self.tick.load(Ordering::Relaxed);
        let mut matched = 0;
        for (i, m) in self.members.iter().enumerate() {
            let model = self.model_key(i);
            let Some(e) = entries
                .iter()
                .find(|e| e.provider == m.provider.id() && e.model == model && e.gate_set == self.gate_set)
            else {
                continue;
            };
            let e = e.clone().capped(self.window);
            let mut o = m.observed();
            o.accept.decay_to(tick, self.gamma);
            o.accept.yes += e.accepted;
            o.accept.no += e.rejected;
            o.billed.decay_to(tick, self.gamma);
            o.billed.yes += e.cost_usd;
            o.billed.no += e.attempts;
            if o.latency_ema_s.is_none() {
                o.latency_ema_s = e.latency_s;
            }
            matched += 1;
        }
        matched
    }

    /// The model a member's learned statistics are keyed by: its default for
    /// the first task it does.
    fn model_key(&self, i: usize) -> Option<String> {
        let p = &self.members[i].provider;
        let task = p.capabilities().tasks.first().copied()?;
        p.model(&Request::new(task, ""))
    }

    /// One observation made: save the statistics every [`SAVE_EVERY`].
    fn observed_one(&self) {
        if self.stats_file.is_some() && self.unsaved.fetch_add(1, Ordering::Relaxed) + 1 >= SAVE_EVERY {
            self.unsaved.store(0, Ordering::Relaxed);
            self.save();
        }
    }

    /// Merge the evidence gathered since the last save into the statistics file.
    pub(super) fn save(&self) {
        let Some(path) = &self.stats_file else { return };
        let fresh: Vec<Learned> = (0..self.members.len())
            .filter_map(|i| {
                let f = std::mem::take(&mut self.members[i].observed().fresh);
                (f.attempts + f.accepted + f.rejected > 0.0).then(|| Learned {
                    provider: self.members[i].provider.id().to_string(),
                    model: self.model_key(i),
                    gate_set: self.gate_set.clone(),
                    accepted: f.accepted,
                    rejected: f.rejected,
                    attempts: f.attempts,
                    cost_usd: f.cost_usd,
                    latency_s: self.members[i].observed().latency_ema_s,
                })
            })
            .collect();
        if fresh.is_empty() {
            return;
        }
        if let Err(e) = learned::merge_into(path, &fresh, self.window) {
            // Learning lost is not a failed run: say so and carry on.
            tracing::warn!(router = %self.id, error = %e, "could not save learned statistics");
        }
    }

    /// Report a verdict on an artifact this router returned, finding the member from
    /// the artifact's `meta.extra["routed_provider"]`. Returns false when the
    /// artifact does not name one of this router's members.
    pub fn record_verdict(&self, artifact: &Artifact, passed: bool) -> bool {
        match artifact.meta().extra.get(ROUTED_PROVIDER).and_then(|v| v.as_str()) {
            Some(id) => self.record_gate(id, passed),
            None => false,
        }
    }

    /// What the router has observed about each member, in the order given.
    pub fn stats(&self) -> Vec<MemberStats> {
        self.members
            .iter()
            .map(|m| {
                let o = m.observed();
                let tick = self.tick.load(Ordering::Relaxed);
                let (yes, no) = o.accept.at(tick, self.gamma);
                let prior = self.prior();
                let accept_rate = (prior.alpha + yes) / (prior.alpha + prior.beta + yes + no);
                let price = self.list_price(m, None);
                MemberStats {
                    accepted: o.accepted,
                    rejected: o.rejected,
                    accept_rate,
                    cost_per_accepted_usd: o.cost_per_attempt(tick, self.gamma, price) / accept_rate,
                    latency_p95_ms: o.p95().map(|s| s * 1e3),
                    id: m.provider.id().to_string(),
                    calls: o.calls,
                    successes: o.successes,
                    failures: o.failures,
                    latency_ms: o.latency_ema_s.map(|s| s * 1e3),
                    success_rate: o.success_rate(),
                    gate_pass_rate: o.gate_pass_rate(),
                    gate_verdicts: o.verdicts,
                    breaker: m.guard.breaker.state(),
                    down: m.guard.health.down().is_some(),
                }
            })
            .collect()
    }

    pub(super) fn record_outcome(&self, i: usize, elapsed: Duration, result: &Result<Generation, ProviderError>) {
        let m = &self.members[i];
        let mut o = m.observed();
        // A sample older than the window is no evidence of today's latency: a
        // re-measured member starts its average afresh.
        let stale = self.tick.load(Ordering::Relaxed).saturating_sub(o.latency_tick) as f64 > self.window;
        // This call is still counted in flight (its guard drops after this).
        let in_flight = o.in_flight;
        o.calls += 1;
        let quality_signal = match result {
            Ok(_) => true,
            // A refusal buys nothing, like a failure; a rate limit, a bad
            // request or a cancellation says nothing about the member's outputs.
            Err(e) => e.kind().counts_against_provider() || e.kind() == ErrorKind::ContentPolicy,
        };
        if quality_signal {
            let tick = self.tick.fetch_add(1, Ordering::Relaxed) + 1;
            let gated = self.gated.load(Ordering::Relaxed);
            match result {
                Ok(g) => {
                    let outputs = g.artifacts.len().max(1) as f64;
                    let cost = if g.usage.cost_usd.is_finite() {
                        g.usage.cost_usd.max(0.0)
                    } else {
                        0.0
                    };
                    o.billed.decay_to(tick, self.gamma);
                    o.billed.yes += cost;
                    o.billed.no += outputs;
                    o.fresh.cost_usd += cost;
                    o.fresh.attempts += outputs;
                    if gated {
                        // Accepted or not is the gates' to say.
                        o.pending += g.artifacts.len() as u64;
                    } else {
                        for _ in 0..g.artifacts.len().max(1) {
                            if o.observe(tick, self.gamma, true) {
                                self.changes.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        o.accepted += 1;
                        o.fresh.accepted += outputs;
                    }
                    o.latencies.push_back(elapsed.as_secs_f64());
                    if o.latencies.len() > LATENCY_SAMPLES {
                        o.latencies.pop_front();
                    }
                    o.latency_tick = tick;
                }
                Err(_) => {
                    if o.observe(tick, self.gamma, false) {
                        self.changes.fetch_add(1, Ordering::Relaxed);
                    }
                    o.billed.decay_to(tick, self.gamma);
                    o.billed.no += 1.0;
                    o.rejected += 1;
                    o.fresh.rejected += 1.0;
                    o.fresh.attempts += 1.0;
                }
            }
        }
        let sample = |o: &mut Observed, alpha: f64| {
            let s = elapsed.as_secs_f64();
            o.latency_ema_s = Some(match o.latency_ema_s {
                Some(prev) if !stale => prev + alpha * (s - prev),
                _ => s,
            });
        };
        match result {
            Ok(_) => {
                m.guard.breaker.on_success();
                m.guard.health.on_success();
                o.successes += 1;
                o.ok_w = o.ok_w * self.decay + 1.0;
                o.total_w = o.total_w * self.decay + 1.0;
                sample(&mut o, self.latency_alpha);
            }
            Err(e) => {
                o.failures += 1;
                if e.kind().counts_against_provider() {
                    m.guard.breaker.on_failure();
                    m.guard.health.on_failure(e);
                    o.ok_w *= self.decay;
                    o.total_w = o.total_w * self.decay + 1.0;
                    if e.kind() == ErrorKind::Timeout {
                        // A timeout is a latency observation too: at least this slow.
                        sample(&mut o, self.latency_alpha);
                    }
                } else {
                    m.guard.breaker.on_neutral();
                }
                if e.kind() == ErrorKind::RateLimited {
                    // Respect the member's own request to wait. The floor keeps a
                    // `Retry-After: 0` from turning into a busy loop.
                    let wait = e
                        .retry_after()
                        .unwrap_or(Duration::from_secs(1))
                        .max(Duration::from_millis(20))
                        .min(self.max_wait);
                    o.rate_limited_until = Some(Instant::now() + wait);
                    o.parallel = in_flight.max(1);
                }
            }
        }
        drop(o);
        if quality_signal {
            self.observed_one();
        }
    }
}
