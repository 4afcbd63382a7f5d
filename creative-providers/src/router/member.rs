//! One member of a router: its provider, the guard the engine keeps around a
//! provider, and what the router has observed about it.
//!
//! The observations are plain counters and discounted evidence behind one
//! mutex per member, so a call to one member never waits on another's; the
//! router's ranking, waiting and learning read and write them through
//! [`Member::observed`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use creative_core::resilience::ProviderGuard;
use creative_core::Provider;
use tokio::time::Instant;

use super::bandit::{ChangeTest, Evidence};
#[cfg(doc)]
use super::Strategy;

#[derive(Debug, Default)]
pub(super) struct Observed {
    pub(super) calls: u64,
    pub(super) successes: u64,
    pub(super) failures: u64,
    pub(super) latency_ema_s: Option<f64>,
    // Decayed counts: each new observation multiplies the old ones by `decay`, so
    // the rates follow the member's recent behaviour (a recovery shows quickly).
    pub(super) ok_w: f64,
    pub(super) total_w: f64,
    pub(super) pass_w: f64,
    pub(super) verdicts_w: f64,
    pub(super) verdicts: u64,
    pub(super) rate_limited_until: Option<Instant>,
    /// Accepted-per-attempt evidence, discounted by the router's global tick.
    pub(super) accept: Evidence,
    /// The change-point test on the latest accepted-or-not outcomes.
    pub(super) change: ChangeTest,
    /// Billed cost (`yes`) and attempts (`no`), discounted the same way.
    pub(super) billed: Evidence,
    /// Successful outputs whose verdicts are still to come.
    pub(super) pending: u64,
    pub(super) accepted: u64,
    pub(super) rejected: u64,
    /// Latencies of the latest successful calls, for the p95.
    pub(super) latencies: VecDeque<f64>,
    /// The tick of the latest latency sample ([`Strategy::Fastest`] re-measures
    /// a member whose sample is older than the window).
    pub(super) latency_tick: u64,
    pub(super) in_flight: usize,
    /// Calls waiting for this member now.
    pub(super) queued: usize,
    /// Calls that were in flight when it last said "rate limited": how many it
    /// serves at once, for the wait estimate.
    pub(super) parallel: usize,
    /// Evidence gathered since the last save, undiscounted.
    pub(super) fresh: Fresh,
}

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Fresh {
    pub(super) accepted: f64,
    pub(super) rejected: f64,
    pub(super) attempts: f64,
    pub(super) cost_usd: f64,
}

/// Latencies kept per member for the p95.
pub(super) const LATENCY_SAMPLES: usize = 64;

impl Observed {
    /// One accepted-or-not outcome: into the evidence, and through the change
    /// test, which restarts the evidence from the outcomes after a change.
    /// Returns whether a change was found.
    pub(super) fn observe(&mut self, tick: u64, gamma: f64, yes: bool) -> bool {
        self.accept.add(tick, gamma, yes);
        match self.change.push(yes) {
            Some((yes, no)) => {
                self.accept = Evidence { yes, no, tick };
                true
            }
            None => false,
        }
    }

    pub(super) fn success_rate(&self) -> f64 {
        // Optimistic prior (an unmeasured member counts as reliable) so new and
        // recovered members are tried.
        (self.ok_w + 1.0) / (self.total_w + 1.0)
    }

    pub(super) fn gate_pass_rate(&self) -> f64 {
        (self.pass_w + 1.0) / (self.verdicts_w + 1.0)
    }

    pub(super) fn p95(&self) -> Option<f64> {
        if self.latencies.len() < 5 {
            return None;
        }
        let mut v: Vec<f64> = self.latencies.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        let k = ((v.len() as f64) * 0.95).ceil() as usize;
        Some(v[k.clamp(1, v.len()) - 1])
    }

    /// Mean billed cost per attempt, with the list price as one prior attempt.
    pub(super) fn cost_per_attempt(&self, tick: u64, gamma: f64, price: f64) -> f64 {
        let (cost, attempts) = self.billed.at(tick, gamma);
        (cost + price) / (attempts + 1.0)
    }
}

pub(super) struct Member {
    pub(super) provider: Arc<dyn Provider>,
    /// The same guard the engine keeps around a provider.
    pub(super) guard: ProviderGuard,
    pub(super) observed: Mutex<Observed>,
}

impl Member {
    pub(super) fn observed(&self) -> std::sync::MutexGuard<'_, Observed> {
        // Plain counters: a panic elsewhere cannot leave them torn.
        self.observed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Counts a call in flight to a member for as long as it lives, so a call
/// dropped mid-way (cancelled) is not counted forever.
pub(super) struct InFlight<'a>(&'a Member);

impl<'a> InFlight<'a> {
    pub(super) fn new(m: &'a Member) -> Self {
        m.observed().in_flight += 1;
        InFlight(m)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut o = self.0.observed();
        o.in_flight = o.in_flight.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decayed_rates_follow_recent_behaviour() {
        let mut o = Observed::default();
        assert_eq!(o.success_rate(), 1.0, "optimistic before any observation");
        for _ in 0..20 {
            o.ok_w *= 0.9;
            o.total_w = o.total_w * 0.9 + 1.0;
        }
        assert!(o.success_rate() < 0.15, "{}", o.success_rate());
        for _ in 0..10 {
            o.ok_w = o.ok_w * 0.9 + 1.0;
            o.total_w = o.total_w * 0.9 + 1.0;
        }
        assert!(o.success_rate() > 0.6, "{}", o.success_rate());
    }
}
