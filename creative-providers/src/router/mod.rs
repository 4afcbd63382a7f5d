//! `router`: one [`Provider`] over several, choosing per call which one answers.
//!
//! A campaign wants the right model for each call without a person watching a
//! dashboard: the cheapest that works, the fastest, the one that fails least, or
//! the one whose outputs pass the quality gates most often for the money. The
//! router keeps what it observes about each member (latency, success rate, gate
//! pass rate) and ranks the members on every call by its [`Strategy`]:
//!
//! | strategy | ranks by (best first) | learns, so explores |
//! |---|---|---|
//! | [`Strategy::Fallback`] | the order the members were given | no |
//! | [`Strategy::Cheapest`] | [`Provider::estimate_cost`] of this request | no |
//! | [`Strategy::Fastest`] | moving average of observed latency (unmeasured or stale members count as instant) | no |
//! | [`Strategy::MostReliable`] | a Thompson draw of the success rate | yes |
//! | [`Strategy::CostPerAccepted`] | a Thompson draw of the cost per accepted asset (or a weighted score, see [`Weights`]) | yes |
//!
//! Around each member sits the guard the engine keeps around a provider
//! ([`ProviderGuard`], built from the member's [`ProviderLimits`]): a circuit
//! breaker, an optional rate limiter (requests per minute), an optional
//! concurrency limit and an optional per-call timeout. A member whose breaker is open is skipped for this
//! call. A member that is merely busy (no rate-limit token, concurrency full, or
//! answered "rate limited" a moment ago) is weighed: see *Wait or spill* below.
//! Only when no member can take the call does the router wait, for the earliest
//! moment one can, bounded by the call's deadline, its cancellation and
//! [`RouterBuilder::max_wait`]: being told to wait is not a failure.
//!
//! A member that fails a call is not the end of it: the router tries the next
//! member in rank (up to [`RouterBuilder::max_attempts`] attempts per call) for
//! every failure class except cancellation and budget. Under
//! [`Strategy::CostPerAccepted`] a member that answered a one-off server error
//! (`transient`) is tried once more first: its failure rate is already in its
//! cost per accepted asset, so the next in rank is the dearer bet.
//!
//! ## Failure is bounded
//!
//! Once a member has failed a call, the router does not wait for the others'
//! circuits: when every member left is open, the call returns its failure at
//! once, and the engine's retry policy decides what comes next. A member that
//! has failed every call for [`RouterBuilder::down_after`] is down (a
//! [`DownDetector`](creative_core::resilience::DownDetector) per member, next to its breaker): no call waits for its
//! circuit, while its half-open probes still go through, so it comes back on the
//! first success. The router is a composite provider ([`Provider::is_composite`]):
//! the engine keeps no breaker of its own on it (one dead member would trip the
//! whole router) and asks [`Provider::unavailable`], which answers when every
//! member is down and none is due for a probe.
//!
//! ## Cost per accepted asset: Thompson sampling
//!
//! A member's price per call is not its cost: a call that fails or whose output
//! a gate rejects buys nothing. [`Strategy::CostPerAccepted`] keeps for each
//! member a Beta posterior on its *accepted-per-attempt* rate (an attempt is a
//! call that was not refused for rate; it counts as accepted when its output
//! passes every gate, as rejected when it fails or a gate rejects it) and the
//! mean cost it was billed per attempt. On every call it draws a rate from each
//! posterior and ranks the members by `cost per attempt / drawn rate`: a member
//! is chosen as often as it is likely to be the cheapest per accepted asset, so
//! exploration is where the uncertainty is and shrinks as evidence grows.
//!
//! Every member starts believed accepted equally often (a weak prior, see
//! [`RouterBuilder::prior_strength`]), so before any verdict the list price
//! ranks: the first experiments are the cheap ones, and a dearer member is
//! tried once the cheaper ones' evidence leaves room for it to be better value.
//!
//! Evidence is discounted ([`RouterBuilder::window`]): every observation, to
//! any member, multiplies all members' evidence by `1 - 1/window`, so a member
//! that lost its traffic drifts back towards its prior until a draw tries it
//! again, which is how a recovered member gets its traffic back. The window is
//! long (1000 observations by default) because forgetting is what keeps a
//! router exploring: with 100, the router kept re-trying a member it had
//! already found 15% dearer per accepted asset on a third of its calls.
//!
//! A sudden change is found by a change-point test instead (the Bernoulli GLR
//! test on each member's latest 64 outcomes, see `bandit::ChangeTest`): when a
//! member's acceptance collapses, its evidence restarts from the outcomes after
//! the change, within a dozen or two of its attempts, and the calls waiting
//! for it are ranked again. [`Decisions::changes`] counts the changes found.
//!
//! [`RouterBuilder::latency_cap`] ranks members whose observed p95 latency is
//! above the cap after every member under it, and [`Weights`] trades cost per
//! accepted asset against latency per accepted asset and attempts per accepted
//! asset in one score.
//!
//! The deterministic strategies never explore: the same observations give the
//! same ranking. [`RouterBuilder::exploration`] adds a uniform share of calls
//! on top of the learning strategies' own, decaying with the evidence (half the
//! setting after ten calls per member, a tenth after a hundred).
//!
//! ## Wait or spill
//!
//! When the first member in rank is busy (rate limited, concurrency full), the
//! router estimates the wait: what is left of its `Retry-After` or limiter
//! delay plus the calls queued for it ahead of this one. It spills the call to
//! the next member only when waiting costs more: when the wait would pass the
//! call's deadline or [`RouterBuilder::max_wait`], when it would break the
//! latency cap, or when the wait priced by [`RouterBuilder::wait_cost`] (US
//! dollars per second of waiting, default 0) is more than the difference in
//! expected cost per accepted asset. [`Strategy::Fastest`] compares the wait with
//! the difference in latency instead; [`Strategy::Fallback`] and
//! [`Strategy::MostReliable`] always spill. [`Router::decisions`] counts the
//! spills, waits and explorations, and every call to a member reports to the
//! engine why it went there ([`RouteReason`]:
//! exploited, explored, waited, spilled or fallback), which the campaign
//! report counts per member.
//!
//! ## What was learned is kept
//!
//! [`Router::learned`] exports each member's evidence keyed by provider, model
//! and gate set ([`RouterBuilder::gate_set`]) and [`Router::learn`] imports it;
//! with [`RouterBuilder::stats_file`] the router loads the file when it is built
//! and merges what it learned into it every few dozen observations and when it
//! is dropped, so the next run, and every shard writing the same file, starts
//! from it.
//!
//! ## Gate outcomes
//!
//! The engine judges the artifacts after the call returns. Every artifact the
//! router returns carries the id of the member that made it in
//! `meta.extra["routed_provider"]`, and a generate step with gates reports each
//! verdict back through [`Provider::record_verdict`], which the router credits to
//! that member. A host judging outside the engine reports with
//! [`Router::record_gate`] (by member id) or [`Router::record_verdict`] (by
//! artifact). A router that is told its outputs are judged
//! ([`RouterBuilder::gated`], or from the first verdict on) waits for the verdict
//! before counting a successful call as accepted.
//!
//! ```
//! use std::sync::Arc;
//! use creative_core::{CallCtx, Provider, Request, Task};
//! use creative_providers::procedural::Procedural;
//! use creative_providers::router::{Router, Strategy};
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let router = Arc::new(
//!     Router::builder("images")
//!         .member(Arc::new(Procedural::new("a")))
//!         .member(Arc::new(Procedural::new("b")))
//!         .strategy(Strategy::CostPerAccepted)
//!         .build()
//!         .unwrap(),
//! );
//! let out = router.generate(&Request::new(Task::Image, "a teapot"), &CallCtx::detached()).await.unwrap();
//! let made_by = out.artifacts[0].meta().extra["routed_provider"].as_str().unwrap().to_string();
//! // ... the engine judges the artifact; the host reports the verdict:
//! router.record_gate(&made_by, true);
//! # }
//! ```

mod bandit;
mod learned;

use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use creative_core::registry::{BuildCtx, Registry};
use creative_core::resilience::{BreakerConfig, BreakerState, DownConfig, ProviderGuard, ProviderLimits};
use creative_core::{
    Artifact, CallCtx, Capabilities, ConfigError, ErrorKind, Generation, MemberCall, Provider, ProviderError, Request,
    RouteReason, Task,
};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use bandit::{sample_beta, ChangeTest, Evidence, Prior};
pub use learned::{Learned, StatsFileError};

/// The key under which a routed artifact's `meta.extra` names the member that made it.
pub const ROUTED_PROVIDER: &str = "routed_provider";

/// How the router ranks its members on each call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// The members in the order given; later ones only when earlier ones cannot
    /// take the call or fail it. Spec name `fallback`.
    #[default]
    Fallback,
    /// Lowest [`Provider::estimate_cost`] for this request first. Spec name `cheapest`.
    Cheapest,
    /// Lowest moving average of observed latency first. Spec name `fastest`.
    Fastest,
    /// Highest success rate first, by a Thompson draw from each member's
    /// (discounted) success posterior. Spec name `most_reliable`.
    MostReliable,
    /// Lowest cost per accepted asset first, by a Thompson draw from each
    /// member's accepted-per-attempt posterior (see the [module docs](self)).
    /// Spec name `cost_per_accepted`.
    CostPerAccepted,
}

impl Strategy {
    /// Whether the strategy learns from its observations and so explores;
    /// the others are deterministic.
    pub fn learns(self) -> bool {
        matches!(self, Strategy::MostReliable | Strategy::CostPerAccepted)
    }
}

impl Strategy {
    /// The spec name.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Fallback => "fallback",
            Strategy::Cheapest => "cheapest",
            Strategy::Fastest => "fastest",
            Strategy::MostReliable => "most_reliable",
            Strategy::CostPerAccepted => "cost_per_accepted",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Strategy {
    type Err = RouterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "fallback" | "ordered" | "ordered_fallback" => Strategy::Fallback,
            "cheapest" => Strategy::Cheapest,
            "fastest" => Strategy::Fastest,
            "most_reliable" | "reliable" => Strategy::MostReliable,
            "cost_per_accepted" | "cost_per_accepted_asset" => Strategy::CostPerAccepted,
            _ => return Err(RouterError::UnknownStrategy(s.to_string())),
        })
    }
}

/// A router configuration that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RouterError {
    /// No member was given.
    #[error("router `{0}` has no providers")]
    NoMembers(String),
    /// Two members share an id.
    #[error("router `{router}` lists provider `{member}` twice")]
    DuplicateMember {
        /// The router.
        router: String,
        /// The repeated member id.
        member: String,
    },
    /// The strategy name is not one of the known ones.
    #[error(
        "unknown router strategy `{0}` (expected fallback, cheapest, fastest, most_reliable or cost_per_accepted)"
    )]
    UnknownStrategy(String),
    /// The learned statistics file could not be read.
    #[error("{0}")]
    StatsFile(String),
    /// A numeric setting is out of its range.
    #[error("router setting `{name}` = {value} is out of range: {expected}")]
    OutOfRange {
        /// The setting.
        name: &'static str,
        /// The value given.
        value: f64,
        /// The allowed range, in words.
        expected: &'static str,
    },
}

/// How [`Strategy::CostPerAccepted`] weighs cost, latency and reliability.
///
/// Each term is a member's figure relative to the best member's, so the terms are
/// comparable: `cost * (cost per accepted / lowest) + latency * (latency per
/// accepted / lowest) + reliability * (attempts per accepted / lowest)`. The
/// default, cost alone, ranks by cost per accepted asset. Each weight is in
/// [0, 1000] and at least one is above 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    /// Weight of the expected cost per accepted asset. Default 1.
    pub cost: f64,
    /// Weight of the expected latency per accepted asset. Default 0.
    pub latency: f64,
    /// Weight of the expected attempts per accepted asset. Default 0.
    pub reliability: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            cost: 1.0,
            latency: 0.0,
            reliability: 0.0,
        }
    }
}

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

#[derive(Debug, Default)]
struct Observed {
    calls: u64,
    successes: u64,
    failures: u64,
    latency_ema_s: Option<f64>,
    // Decayed counts: each new observation multiplies the old ones by `decay`, so
    // the rates follow the member's recent behaviour (a recovery shows quickly).
    ok_w: f64,
    total_w: f64,
    pass_w: f64,
    verdicts_w: f64,
    verdicts: u64,
    rate_limited_until: Option<Instant>,
    /// Accepted-per-attempt evidence, discounted by the router's global tick.
    accept: Evidence,
    /// The change-point test on the latest accepted-or-not outcomes.
    change: ChangeTest,
    /// Billed cost (`yes`) and attempts (`no`), discounted the same way.
    billed: Evidence,
    /// Successful outputs whose verdicts are still to come.
    pending: u64,
    accepted: u64,
    rejected: u64,
    /// Latencies of the latest successful calls, for the p95.
    latencies: VecDeque<f64>,
    /// The tick of the latest latency sample ([`Strategy::Fastest`] re-measures
    /// a member whose sample is older than the window).
    latency_tick: u64,
    in_flight: usize,
    /// Calls waiting for this member now.
    queued: usize,
    /// Calls that were in flight when it last said "rate limited": how many it
    /// serves at once, for the wait estimate.
    parallel: usize,
    /// Evidence gathered since the last save, undiscounted.
    fresh: Fresh,
}

#[derive(Debug, Default, Clone, Copy)]
struct Fresh {
    accepted: f64,
    rejected: f64,
    attempts: f64,
    cost_usd: f64,
}

/// Latencies kept per member for the p95.
const LATENCY_SAMPLES: usize = 64;
/// Observations between two saves of the statistics file.
const SAVE_EVERY: u64 = 64;
/// Every member's prior mean accepted-per-attempt rate.
const PRIOR_MEAN: f64 = 0.8;

impl Observed {
    /// One accepted-or-not outcome: into the evidence, and through the change
    /// test, which restarts the evidence from the outcomes after a change.
    /// Returns whether a change was found.
    fn observe(&mut self, tick: u64, gamma: f64, yes: bool) -> bool {
        self.accept.add(tick, gamma, yes);
        match self.change.push(yes) {
            Some((yes, no)) => {
                self.accept = Evidence { yes, no, tick };
                true
            }
            None => false,
        }
    }

    fn success_rate(&self) -> f64 {
        // Optimistic prior (an unmeasured member counts as reliable) so new and
        // recovered members are tried.
        (self.ok_w + 1.0) / (self.total_w + 1.0)
    }

    fn gate_pass_rate(&self) -> f64 {
        (self.pass_w + 1.0) / (self.verdicts_w + 1.0)
    }

    fn p95(&self) -> Option<f64> {
        if self.latencies.len() < 5 {
            return None;
        }
        let mut v: Vec<f64> = self.latencies.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        let k = ((v.len() as f64) * 0.95).ceil() as usize;
        Some(v[k.clamp(1, v.len()) - 1])
    }

    /// Mean billed cost per attempt, with the list price as one prior attempt.
    fn cost_per_attempt(&self, tick: u64, gamma: f64, price: f64) -> f64 {
        let (cost, attempts) = self.billed.at(tick, gamma);
        (cost + price) / (attempts + 1.0)
    }
}

struct Member {
    provider: Arc<dyn Provider>,
    /// The same guard the engine keeps around a provider.
    guard: ProviderGuard,
    observed: Mutex<Observed>,
}

impl Member {
    fn observed(&self) -> std::sync::MutexGuard<'_, Observed> {
        // Plain counters: a panic elsewhere cannot leave them torn.
        self.observed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Counts a call in flight to a member for as long as it lives, so a call
/// dropped mid-way (cancelled) is not counted forever.
struct InFlight<'a>(&'a Member);

impl<'a> InFlight<'a> {
    fn new(m: &'a Member) -> Self {
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

/// Builds a [`Router`]. Setters never fail; [`RouterBuilder::build`] reports the
/// first bad setting.
pub struct RouterBuilder {
    id: String,
    members: Vec<(Arc<dyn Provider>, ProviderLimits)>,
    strategy: Strategy,
    exploration: f64,
    latency_alpha: f64,
    decay: f64,
    breaker: BreakerConfig,
    down: DownConfig,
    max_wait: Duration,
    max_attempts: usize,
    seed: Option<u64>,
    window: Option<f64>,
    prior_strength: f64,
    wait_cost: f64,
    latency_cap: Option<Duration>,
    weights: Weights,
    gated: bool,
    gate_set: String,
    stats_file: Option<PathBuf>,
}

impl RouterBuilder {
    /// Add a member without limits.
    pub fn member(self, provider: Arc<dyn Provider>) -> Self {
        self.member_with_limits(provider, ProviderLimits::default())
    }

    /// Add a member with per-member limits: the engine's own limits type
    /// (requests per minute, burst, concurrency, a per-call timeout).
    pub fn member_with_limits(mut self, provider: Arc<dyn Provider>, limits: ProviderLimits) -> Self {
        self.members.push((provider, limits));
        self
    }

    /// The ranking strategy. Default [`Strategy::Fallback`].
    pub fn strategy(mut self, s: Strategy) -> Self {
        self.strategy = s;
        self
    }

    /// A share of calls, on top of the learning strategies' own exploration,
    /// that goes first to a random member other than the best ranked; it decays
    /// with the evidence (half after ten calls per member). In [0, 1]; default 0.
    /// The deterministic strategies ([`Strategy::learns`] false) ignore it.
    pub fn exploration(mut self, p: f64) -> Self {
        self.exploration = p;
        self
    }

    /// Weight of the newest latency sample in the moving average, in (0, 1].
    /// Default 0.3.
    pub fn latency_alpha(mut self, a: f64) -> Self {
        self.latency_alpha = a;
        self
    }

    /// How much older success and gate observations keep of their weight at each
    /// new one, in (0, 1). Default 0.9 (about the last ten calls matter).
    pub fn decay(mut self, d: f64) -> Self {
        self.decay = d;
        self
    }

    /// Circuit breaker settings for every member. Default: the engine's defaults
    /// (5 consecutive failures open it for 30 s).
    pub fn breaker(mut self, c: BreakerConfig) -> Self {
        self.breaker = c;
        self
    }

    /// When a member that fails every call is declared down (no call waits for
    /// its circuit any more). Default: the engine's default, 5 failures and no
    /// success for 60 s.
    pub fn down_after(mut self, d: DownConfig) -> Self {
        self.down = d;
        self
    }

    /// The longest the router waits for a member to become available (breaker
    /// reopening, rate-limit token, free concurrency slot) before giving up on the
    /// call with a retryable error. Default 60 s. The call's deadline also bounds it.
    pub fn max_wait(mut self, d: Duration) -> Self {
        self.max_wait = d;
        self
    }

    /// The most members one call tries before returning the last failure. Default:
    /// all of them.
    pub fn max_attempts(mut self, n: usize) -> Self {
        self.max_attempts = n;
        self
    }

    /// Seed the exploration draws, for reproducible tests. Default: random.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The learning strategies' memory, in observations: each observation
    /// multiplies all evidence by `1 - 1/window`, so a slow drift or a
    /// recovery of a member that lost its traffic shows within a fraction of
    /// it; [`Strategy::Fastest`] re-measures a member whose latency sample is
    /// older. In [2, 1000000]; default 1000 for [`Strategy::CostPerAccepted`],
    /// whose change test finds a sudden collapse sooner, 100 for the others.
    pub fn window(mut self, observations: f64) -> Self {
        self.window = Some(observations);
        self
    }

    /// How many attempts the prior on acceptance is worth. In (0, 1000];
    /// default 2.
    pub fn prior_strength(mut self, attempts: f64) -> Self {
        self.prior_strength = attempts;
        self
    }

    /// What a second of waiting for a busy member costs, in US dollars: the
    /// router spills a call to a dearer member when the expected wait times this
    /// is more than the difference in expected cost per accepted asset. In
    /// [0, 1000]; default 0 (waiting is free until a deadline, the wait limit or
    /// the latency cap says otherwise).
    pub fn wait_cost(mut self, usd_per_s: f64) -> Self {
        self.wait_cost = usd_per_s;
        self
    }

    /// Prefer members whose p95 latency is under `cap` (ranked before every
    /// member over it) and do not wait for a busy member longer than the cap
    /// allows. Between 1 ms and one day; default none.
    pub fn latency_cap(mut self, cap: Duration) -> Self {
        self.latency_cap = Some(cap);
        self
    }

    /// The weighted score of [`Strategy::CostPerAccepted`]. Default: cost alone.
    pub fn weights(mut self, w: Weights) -> Self {
        self.weights = w;
        self
    }

    /// Whether the router's outputs are judged by gates, so that a successful
    /// call counts as accepted only once its verdict arrives. Default false; the
    /// first verdict reported turns it on.
    pub fn gated(mut self, gated: bool) -> Self {
        self.gated = gated;
        self
    }

    /// A name for the gates judging the router's outputs (a campaign passes a
    /// fingerprint of them): learned statistics are kept per gate set. Default
    /// empty.
    pub fn gate_set(mut self, key: impl Into<String>) -> Self {
        self.gate_set = key.into();
        self
    }

    /// Load learned statistics from this file when built, and merge what is
    /// learned into it every few dozen observations and when the router is
    /// dropped. A missing file is created; a damaged one fails the build.
    pub fn stats_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.stats_file = Some(path.into());
        self
    }

    /// Check the settings and build the router.
    pub fn build(self) -> Result<Router, RouterError> {
        if self.members.is_empty() {
            return Err(RouterError::NoMembers(self.id));
        }
        for (i, (p, _)) in self.members.iter().enumerate() {
            if self.members[..i].iter().any(|(q, _)| q.id() == p.id()) {
                return Err(RouterError::DuplicateMember {
                    router: self.id,
                    member: p.id().to_string(),
                });
            }
        }
        if !(0.0..=1.0).contains(&self.exploration) {
            return Err(RouterError::OutOfRange {
                name: "exploration",
                value: self.exploration,
                expected: "between 0 and 1",
            });
        }
        if !(self.latency_alpha > 0.0 && self.latency_alpha <= 1.0) {
            return Err(RouterError::OutOfRange {
                name: "latency_alpha",
                value: self.latency_alpha,
                expected: "greater than 0 and at most 1",
            });
        }
        if !(self.decay > 0.0 && self.decay < 1.0) {
            return Err(RouterError::OutOfRange {
                name: "decay",
                value: self.decay,
                expected: "greater than 0 and less than 1",
            });
        }
        let check = |name: &'static str, value: f64, ok: bool, expected: &'static str| {
            if ok {
                Ok(())
            } else {
                Err(RouterError::OutOfRange { name, value, expected })
            }
        };
        // Cost per accepted asset has the change test for sudden changes, so
        // its memory can be long; the others have only the window.
        let window = self.window.unwrap_or(match self.strategy {
            Strategy::CostPerAccepted => 1000.0,
            _ => 100.0,
        });
        check(
            "window",
            window,
            (2.0..=1e6).contains(&window),
            "between 2 and 1000000 observations",
        )?;
        check(
            "prior_strength",
            self.prior_strength,
            self.prior_strength > 0.0 && self.prior_strength <= 1000.0,
            "greater than 0 and at most 1000",
        )?;
        check(
            "wait_cost",
            self.wait_cost,
            (0.0..=1000.0).contains(&self.wait_cost),
            "between 0 and 1000 US dollars per second",
        )?;
        if let Some(cap) = self.latency_cap {
            let s = cap.as_secs_f64();
            check(
                "latency_cap",
                s,
                (0.001..=86_400.0).contains(&s),
                "between 0.001 and 86400 seconds",
            )?;
        }
        let w = self.weights;
        for (name, v) in [
            ("weights.cost", w.cost),
            ("weights.latency", w.latency),
            ("weights.reliability", w.reliability),
        ] {
            check(name, v, (0.0..=1000.0).contains(&v), "between 0 and 1000")?;
        }
        check(
            "weights",
            w.cost + w.latency + w.reliability,
            w.cost + w.latency + w.reliability > 0.0,
            "at least one weight above 0",
        )?;
        let members = self
            .members
            .into_iter()
            .map(|(provider, limits)| Member {
                guard: ProviderGuard::new(provider.id(), &limits, self.breaker, self.down),
                provider,
                observed: Mutex::new(Observed::default()),
            })
            .collect::<Vec<_>>();
        let max_attempts = if self.max_attempts == 0 {
            members.len()
        } else {
            self.max_attempts.min(members.len())
        };
        let fingerprint = creative_core::settings_fingerprint(
            "router",
            &serde_json::json!({
                "strategy": self.strategy.as_str(),
                "members": members
                    .iter()
                    .map(|m| serde_json::json!([m.provider.id(), m.provider.fingerprint()]))
                    .collect::<Vec<_>>(),
            }),
        );
        let router = Router {
            id: self.id,
            fingerprint,
            members,
            strategy: self.strategy,
            exploration: self.exploration,
            latency_alpha: self.latency_alpha,
            decay: self.decay,
            max_wait: self.max_wait,
            max_attempts,
            rng: Mutex::new(self.seed.map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed)),
            window,
            gamma: 1.0 - 1.0 / window,
            prior_strength: self.prior_strength,
            wait_cost: self.wait_cost,
            latency_cap: self.latency_cap,
            weights: self.weights,
            gated: AtomicBool::new(self.gated),
            gate_set: self.gate_set,
            stats_file: self.stats_file,
            tick: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            unsaved: AtomicU64::new(0),
            spills: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            explorations: AtomicU64::new(0),
            changes: AtomicU64::new(0),
        };
        if let Some(path) = &router.stats_file {
            let entries = learned::load(path).map_err(|e| RouterError::StatsFile(e.to_string()))?;
            router.learn(&entries);
        }
        Ok(router)
    }
}

/// A provider over several providers; see the [module docs](self).
pub struct Router {
    id: String,
    /// The settings fingerprint (members' fingerprints and the strategy), computed at build.
    fingerprint: String,
    members: Vec<Member>,
    strategy: Strategy,
    exploration: f64,
    latency_alpha: f64,
    decay: f64,
    max_wait: Duration,
    max_attempts: usize,
    rng: Mutex<fastrand::Rng>,
    window: f64,
    /// `1 - 1/window`: what evidence keeps of its weight per observation.
    gamma: f64,
    prior_strength: f64,
    wait_cost: f64,
    latency_cap: Option<Duration>,
    weights: Weights,
    gated: AtomicBool,
    gate_set: String,
    stats_file: Option<PathBuf>,
    /// Observations so far, to any member: the clock of the discounting.
    tick: AtomicU64,
    /// Calls routed, for the decay of the `exploration` share.
    calls: AtomicU64,
    /// Observations since the statistics file was last written.
    unsaved: AtomicU64,
    spills: AtomicU64,
    waits: AtomicU64,
    explorations: AtomicU64,
    changes: AtomicU64,
}

/// A call's ranking and what the wait-or-spill decision compares.
struct Ranked {
    /// Member indices, best first.
    order: Vec<usize>,
    /// Per member index: expected cost per accepted asset (posterior mean for
    /// the learning strategies, the estimate for the others).
    cost: Vec<f64>,
    /// Per member index: observed latency in seconds (0 when unmeasured).
    latency: Vec<f64>,
    /// Whether the first choice is not the best by the current estimates.
    explored: bool,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("id", &self.id)
            .field("strategy", &self.strategy)
            .field(
                "members",
                &self.members.iter().map(|m| m.provider.id()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Drop for Router {
    /// Merge what was learned since the last save into the statistics file.
    fn drop(&mut self) {
        self.save();
    }
}

/// Why no member could take a call right now.
enum Blocked {
    /// The member's circuit is open: it may let a call through after this long.
    Open(Duration),
    /// Come back after this long (limiter, "rate limited" answer).
    After(Duration),
    /// Every candidate's concurrency is full: wait for a slot of this member.
    Slot(usize),
}

impl Router {
    /// Start building a router with the id it answers to.
    pub fn builder(id: impl Into<String>) -> RouterBuilder {
        RouterBuilder {
            id: id.into(),
            members: Vec::new(),
            strategy: Strategy::default(),
            exploration: 0.0,
            latency_alpha: 0.3,
            decay: 0.9,
            breaker: BreakerConfig::default(),
            down: DownConfig::default(),
            max_wait: Duration::from_secs(60),
            max_attempts: 0,
            seed: None,
            window: None,
            prior_strength: 2.0,
            wait_cost: 0.0,
            latency_cap: None,
            weights: Weights::default(),
            gated: false,
            gate_set: String::new(),
            stats_file: None,
        }
    }

    /// The strategy.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

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
    fn save(&self) {
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

    /// The members able to do `request`'s task, best first by the strategy's
    /// current estimates (posterior means: no draw, no exploration).
    pub fn ranking(&self, request: &Request) -> Vec<&str> {
        self.rank(request, false)
            .order
            .into_iter()
            .map(|i| self.members[i].provider.id())
            .collect()
    }

    /// A member's price for `request` (or for its first task), never negative or NaN.
    fn list_price(&self, m: &Member, request: Option<&Request>) -> f64 {
        let p = match request {
            Some(r) => m.provider.estimate_cost(r),
            None => {
                let task = m.provider.capabilities().tasks.first().copied().unwrap_or(Task::Image);
                m.provider.estimate_cost(&Request::new(task, ""))
            }
        };
        if p.is_finite() && p >= 0.0 {
            p
        } else {
            0.0
        }
    }

    /// The prior on every member's accepted-per-attempt rate.
    fn prior(&self) -> Prior {
        Prior::common(PRIOR_MEAN, self.prior_strength)
    }

    /// Rank the members able to do `request`. With `draw`, the learning
    /// strategies rank by a Thompson draw (and the `exploration` share applies);
    /// without, by their estimates.
    fn rank(&self, request: &Request, draw: bool) -> Ranked {
        let n = self.members.len();
        let tick = self.tick.load(Ordering::Relaxed);
        let eligible: Vec<usize> = (0..n)
            .filter(|&i| self.members[i].provider.capabilities().supports(request.task))
            .collect();
        let mut cost = vec![f64::INFINITY; n];
        let mut latency = vec![0.0; n];
        let mut over_cap = vec![false; n];
        // Scores, lower is better: by the estimates, and by this call's draws.
        let mut estimated = vec![f64::INFINITY; n];
        let mut drawn = vec![f64::INFINITY; n];
        let learning = draw && self.strategy.learns();
        let mut rng = learning.then(|| self.rng.lock().unwrap_or_else(|p| p.into_inner()));
        // Cost per accepted, latency per accepted, attempts per accepted.
        let mut terms_est: Vec<(usize, [f64; 3])> = Vec::new();
        let mut terms_draw: Vec<(usize, [f64; 3])> = Vec::new();
        for &i in &eligible {
            let m = &self.members[i];
            let o = m.observed();
            let price = self.list_price(m, Some(request));
            latency[i] = o.latency_ema_s.unwrap_or(0.0);
            over_cap[i] = self
                .latency_cap
                .is_some_and(|cap| o.p95().is_some_and(|p| p > cap.as_secs_f64()));
            cost[i] = price;
            let (est, drw) = match self.strategy {
                Strategy::Fallback => (i as f64, i as f64),
                Strategy::Cheapest => (price, price),
                Strategy::Fastest => {
                    // A sample older than the window may be stale: count the
                    // member as unmeasured so one call measures it again.
                    let stale = tick.saturating_sub(o.latency_tick) as f64 > self.window;
                    let l = if stale { 0.0 } else { latency[i] };
                    (l, l)
                }
                Strategy::MostReliable => {
                    let (a, b) = (o.ok_w + 1.0, (o.total_w - o.ok_w).max(0.0) + 1.0);
                    let theta = match rng.as_deref_mut() {
                        Some(r) => sample_beta(r, a, b),
                        None => a / (a + b),
                    };
                    (-a / (a + b), -theta)
                }
                Strategy::CostPerAccepted => {
                    let prior = self.prior();
                    let (yes, no) = o.accept.at(tick, self.gamma);
                    let (a, b) = (prior.alpha + yes, prior.beta + no);
                    let mean = a / (a + b);
                    let theta = match rng.as_deref_mut() {
                        Some(r) => sample_beta(r, a, b).max(1e-6),
                        None => mean,
                    };
                    let per_attempt = o.cost_per_attempt(tick, self.gamma, price);
                    cost[i] = per_attempt / mean;
                    terms_est.push((i, [per_attempt / mean, latency[i] / mean, 1.0 / mean]));
                    terms_draw.push((i, [per_attempt / theta, latency[i] / theta, 1.0 / theta]));
                    (0.0, 0.0)
                }
            };
            estimated[i] = est;
            drawn[i] = drw;
        }
        if self.strategy == Strategy::CostPerAccepted {
            for (i, s) in self.weighted(&terms_est) {
                estimated[i] = s;
            }
            for (i, s) in self.weighted(&terms_draw) {
                drawn[i] = s;
            }
        }
        let key = |score: &[f64], i: usize| (over_cap[i], if score[i].is_nan() { f64::INFINITY } else { score[i] });
        let mut order = eligible.clone();
        // Stable: equal scores keep the order the members were given.
        order.sort_by(|&x, &y| {
            let (kx, ky) = (key(&drawn, x), key(&drawn, y));
            kx.0.cmp(&ky.0).then(kx.1.total_cmp(&ky.1))
        });
        let best = eligible.iter().copied().min_by(|&x, &y| {
            let (kx, ky) = (key(&estimated, x), key(&estimated, y));
            kx.0.cmp(&ky.0).then(kx.1.total_cmp(&ky.1)).then(x.cmp(&y))
        });
        let mut explored = order.first().copied() != best;
        if let Some(r) = rng.as_deref_mut() {
            if order.len() >= 2 && self.exploration > 0.0 {
                let calls = self.calls.load(Ordering::Relaxed) as f64;
                let share = self.exploration / (1.0 + calls / (10.0 * order.len() as f64));
                if r.f64() < share {
                    let pick = r.usize(1..order.len());
                    order[..=pick].rotate_right(1);
                    explored = true;
                }
            }
        }
        Ranked {
            order,
            cost,
            latency,
            explored,
        }
    }

    /// The weighted score of each member from its per-accepted figures, each
    /// taken relative to the lowest among the members.
    fn weighted(&self, terms: &[(usize, [f64; 3])]) -> Vec<(usize, f64)> {
        let w = [self.weights.cost, self.weights.latency, self.weights.reliability];
        let mut lowest = [f64::INFINITY; 3];
        for (_, t) in terms {
            for k in 0..3 {
                lowest[k] = lowest[k].min(t[k]);
            }
        }
        // A tiny offset keeps a free or unmeasured member (a zero) from making
        // every ratio infinite.
        const EPS: f64 = 1e-9;
        terms
            .iter()
            .map(|(i, t)| {
                let score = (0..3)
                    .filter(|&k| w[k] > 0.0)
                    .map(|k| w[k] * (t[k] + EPS) / (lowest[k] + EPS))
                    .sum();
                (*i, score)
            })
            .collect()
    }

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
    fn worth_waiting(
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
    fn try_take(&self, i: usize, now: Instant) -> Result<Option<OwnedSemaphorePermit>, Blocked> {
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

    fn record_outcome(&self, i: usize, elapsed: Duration, result: &Result<Generation, ProviderError>) {
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

    /// The error of a call whose every candidate is down (with its circuit open).
    fn all_down(&self, order: &[usize]) -> ProviderError {
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
    async fn pause(&self, d: Duration, ctx: &CallCtx) -> Result<(), ProviderError> {
        tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => Err(ProviderError::cancelled(self.id.clone())),
            _ = tokio::time::sleep(d) => Ok(()),
        }
    }

    /// Wait for a free slot of member `i` (or `cap`, whichever first).
    async fn wait_slot(&self, i: usize, cap: Duration, ctx: &CallCtx) -> Result<(), ProviderError> {
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

    fn remaining(&self, ctx: &CallCtx, waited: Duration) -> Duration {
        let mut left = self.max_wait.saturating_sub(waited);
        if let Some(deadline) = ctx.deadline {
            left = left.min(deadline.saturating_duration_since(std::time::Instant::now()));
        }
        left
    }
}

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

/// Register the `router` kind.
///
/// Settings: `providers` (member ids, defined earlier in the spec), `strategy`
/// (`fallback`, `cheapest`, `fastest`, `most_reliable`, `cost_per_accepted`;
/// default `fallback`), and optionally `exploration`, `latency_alpha`, `decay`,
/// `max_wait_s`, `max_attempts`, `breaker = { failure_threshold, cool_down_s }`,
/// `down_after = { after_s, min_failures }`,
/// `limits = { <member id> = { rpm, burst, concurrency } }`, and for learning:
/// `window`, `prior_strength`, `wait_cost_usd_per_s`, `latency_cap_s` (p95),
/// `weights = { cost, latency, reliability }`, `gated`, `gate_set` and
/// `stats_file` (resolved against the spec's folder).
pub fn register(reg: &mut Registry) {
    reg.provider(
        "router",
        Arc::new(|id: &str, settings: &serde_json::Value, ctx: &BuildCtx| {
            build_from_settings(id, settings, ctx).map(|r| Arc::new(r) as Arc<dyn Provider>)
        }),
    );
}

fn build_from_settings(id: &str, s: &serde_json::Value, ctx: &BuildCtx) -> Result<Router, ConfigError> {
    let obj = s
        .as_object()
        .ok_or_else(|| bad("", "router settings must be a table"))?;
    const KNOWN: &[&str] = &[
        "providers",
        "strategy",
        "exploration",
        "latency_alpha",
        "decay",
        "max_wait_s",
        "max_attempts",
        "breaker",
        "down_after",
        "limits",
        "seed",
        "window",
        "prior_strength",
        "wait_cost_usd_per_s",
        "latency_cap_s",
        "weights",
        "gated",
        "gate_set",
        "stats_file",
    ];
    if let Some(k) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(bad(
            k,
            format!("unknown router setting `{k}` (known: {})", KNOWN.join(", ")),
        ));
    }
    let ids = obj
        .get("providers")
        .and_then(|v| v.as_array())
        .ok_or_else(|| bad("providers", "must be a list of provider ids"))?;
    let limits = match obj.get("limits") {
        None => serde_json::Map::new(),
        Some(serde_json::Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(bad(
                "limits",
                "must be a table of member id -> { rpm, burst, concurrency }",
            ))
        }
    };
    let mut b = Router::builder(id);
    for (n, v) in ids.iter().enumerate() {
        let pid = v
            .as_str()
            .ok_or_else(|| bad(&format!("providers[{n}]"), "must be a string"))?;
        if pid == id {
            return Err(bad(&format!("providers[{n}]"), "a router cannot route to itself"));
        }
        let p = ctx.providers.get(pid).cloned().ok_or_else(|| {
            bad(
                &format!("providers[{n}]"),
                format!("provider `{pid}` is not defined (define it before the router)"),
            )
        })?;
        let lim = match limits.get(pid) {
            Some(l) => member_limits(pid, l)?,
            None => ProviderLimits::default(),
        };
        b = b.member_with_limits(p, lim);
    }
    if let Some(k) = limits
        .keys()
        .find(|k| !ids.iter().any(|v| v.as_str() == Some(k.as_str())))
    {
        return Err(bad(
            &format!("limits.{k}"),
            format!("`{k}` is not one of the router's providers"),
        ));
    }
    if let Some(v) = obj.get("strategy") {
        let s = v.as_str().ok_or_else(|| bad("strategy", "must be a string"))?;
        b = b.strategy(s.parse().map_err(|e: RouterError| bad("strategy", e.to_string()))?);
    }
    let num = |k: &str| -> Result<Option<f64>, ConfigError> {
        match obj.get(k) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| bad(k, "must be a number")),
        }
    };
    if let Some(x) = num("exploration")? {
        b = b.exploration(x);
    }
    if let Some(x) = num("latency_alpha")? {
        b = b.latency_alpha(x);
    }
    if let Some(x) = num("decay")? {
        b = b.decay(x);
    }
    if let Some(x) = num("max_wait_s")? {
        b = b.max_wait(secs("max_wait_s", x)?);
    }
    if let Some(v) = obj.get("max_attempts") {
        let n = v
            .as_u64()
            .ok_or_else(|| bad("max_attempts", "must be a whole number"))?;
        b = b.max_attempts(n as usize);
    }
    if let Some(v) = obj.get("seed") {
        b = b.seed(v.as_u64().ok_or_else(|| bad("seed", "must be a whole number"))?);
    }
    if let Some(x) = num("window")? {
        b = b.window(x);
    }
    if let Some(x) = num("prior_strength")? {
        b = b.prior_strength(x);
    }
    if let Some(x) = num("wait_cost_usd_per_s")? {
        b = b.wait_cost(x);
    }
    if let Some(x) = num("latency_cap_s")? {
        if !(0.001..=86_400.0).contains(&x) {
            return Err(bad(
                "latency_cap_s",
                format!("{x} is out of range: between 0.001 and 86400 seconds"),
            ));
        }
        b = b.latency_cap(secs("latency_cap_s", x)?);
    }
    if let Some(v) = obj.get("weights") {
        let t = v
            .as_object()
            .ok_or_else(|| bad("weights", "must be a table of cost, latency, reliability"))?;
        let mut w = Weights {
            cost: 0.0,
            latency: 0.0,
            reliability: 0.0,
        };
        for (k, v) in t {
            let x = v
                .as_f64()
                .ok_or_else(|| bad(&format!("weights.{k}"), "must be a number"))?;
            match k.as_str() {
                "cost" => w.cost = x,
                "latency" => w.latency = x,
                "reliability" => w.reliability = x,
                _ => {
                    return Err(bad(
                        &format!("weights.{k}"),
                        "unknown setting (known: cost, latency, reliability)",
                    ))
                }
            }
        }
        b = b.weights(w);
    }
    if let Some(v) = obj.get("gated") {
        b = b.gated(v.as_bool().ok_or_else(|| bad("gated", "must be true or false"))?);
    }
    if let Some(v) = obj.get("gate_set") {
        b = b.gate_set(v.as_str().ok_or_else(|| bad("gate_set", "must be a string"))?);
    }
    if let Some(v) = obj.get("stats_file") {
        let path = v.as_str().ok_or_else(|| bad("stats_file", "must be a path"))?;
        b = b.stats_file(ctx.resolve(path));
    }
    if let Some(v) = obj.get("breaker") {
        let t = v.as_object().ok_or_else(|| bad("breaker", "must be a table"))?;
        let mut c = BreakerConfig::default();
        if let Some(n) = t.get("failure_threshold") {
            let n = n
                .as_u64()
                .filter(|n| *n >= 1)
                .ok_or_else(|| bad("breaker.failure_threshold", "must be a whole number >= 1"))?;
            c.failure_threshold = u32::try_from(n).map_err(|_| bad("breaker.failure_threshold", "is too large"))?;
        }
        if let Some(x) = t.get("cool_down_s") {
            let x = x
                .as_f64()
                .ok_or_else(|| bad("breaker.cool_down_s", "must be a number"))?;
            c.cool_down = secs("breaker.cool_down_s", x)?;
        }
        b = b.breaker(c);
    }
    if let Some(v) = obj.get("down_after") {
        let t = v.as_object().ok_or_else(|| bad("down_after", "must be a table"))?;
        if let Some(k) = t.keys().find(|k| !["after_s", "min_failures"].contains(&k.as_str())) {
            return Err(bad(
                &format!("down_after.{k}"),
                "unknown setting (known: after_s, min_failures)",
            ));
        }
        let mut d = DownConfig::default();
        if let Some(x) = t.get("after_s") {
            let x = x
                .as_f64()
                .ok_or_else(|| bad("down_after.after_s", "must be a number"))?;
            d.after = secs("down_after.after_s", x)?;
        }
        if let Some(n) = t.get("min_failures") {
            let n = n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n >= 1)
                .ok_or_else(|| bad("down_after.min_failures", "must be a whole number from 1 to 4294967295"))?;
            d.min_failures = n;
        }
        b = b.down_after(d);
    }
    b.build().map_err(|e| {
        // The builder's error names a setting; place it where the table has it.
        let field = match &e {
            RouterError::NoMembers(_) | RouterError::DuplicateMember { .. } => "providers",
            RouterError::UnknownStrategy(_) => "strategy",
            RouterError::StatsFile(_) => "stats_file",
            RouterError::OutOfRange { name, .. } => name,
        };
        bad(field, e.to_string())
    })
}

fn bad(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(field, reason)
}

fn secs(name: &str, x: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(x).map_err(|_| bad(name, "must be a non-negative number of seconds"))
}

fn member_limits(pid: &str, v: &serde_json::Value) -> Result<ProviderLimits, ConfigError> {
    let t = v
        .as_object()
        .ok_or_else(|| bad(&format!("limits.{pid}"), "must be a table"))?;
    let mut l = ProviderLimits::default();
    for (k, v) in t {
        let n = v
            .as_u64()
            .ok_or_else(|| bad(&format!("limits.{pid}.{k}"), "must be a whole number"))?;
        match k.as_str() {
            "rpm" => {
                l.requests_per_minute =
                    Some(u32::try_from(n).map_err(|_| bad(&format!("limits.{pid}.rpm"), "is too large"))?)
            }
            "burst" => {
                l.burst = Some(u32::try_from(n).map_err(|_| bad(&format!("limits.{pid}.burst"), "is too large"))?)
            }
            "concurrency" => l.concurrency = Some(n as usize),
            _ => {
                return Err(bad(
                    &format!("limits.{pid}.{k}"),
                    "unknown setting (known: rpm, burst, concurrency)",
                ))
            }
        }
    }
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_names_round_trip() {
        for s in [
            Strategy::Fallback,
            Strategy::Cheapest,
            Strategy::Fastest,
            Strategy::MostReliable,
            Strategy::CostPerAccepted,
        ] {
            assert_eq!(s.as_str().parse::<Strategy>().unwrap(), s);
        }
        assert_eq!("Most-Reliable".parse::<Strategy>().unwrap(), Strategy::MostReliable);
        let e = "quickest".parse::<Strategy>().unwrap_err();
        assert!(e.to_string().contains("quickest"), "{e}");
    }

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
