//! `router`: one [`Provider`] over several, choosing per call which one answers.
//!
//! A campaign wants the right model for each call without a person watching a
//! dashboard: the cheapest that works, the fastest, the one that fails least, or
//! the one whose outputs pass the quality gates most often for the money. The
//! router keeps what it observes about each member (latency, success rate, gate
//! pass rate) and ranks the members on every call by its [`Strategy`]:
//!
//! | strategy | ranks by (best first) |
//! |---|---|
//! | [`Strategy::Fallback`] | the order the members were given |
//! | [`Strategy::Cheapest`] | [`Provider::estimate_cost`] of this request |
//! | [`Strategy::Fastest`] | moving average of observed latency (unmeasured members count as instant) |
//! | [`Strategy::MostReliable`] | recent success rate (failures that count against a provider's health) |
//! | [`Strategy::CostPerAccepted`] | estimated price divided by the recent gate pass rate |
//!
//! Around each member sit the engine's own resilience pieces: a
//! [`CircuitBreaker`], an optional [`RateLimiter`] (requests per minute) and an
//! optional concurrency limit. A member whose breaker is open, whose limiter has
//! no token free, whose concurrency is full, or that answered "rate limited" a
//! moment ago is skipped for this call and the next member in rank takes it (the
//! work spills over instead of queueing). Only when no member can take the call
//! does the router wait, for the earliest moment one can, bounded by the call's
//! deadline, its cancellation and [`RouterBuilder::max_wait`]: being told to wait is
//! not a failure.
//!
//! A member that fails a call is not the end of it: the router tries the next
//! member in rank (up to [`RouterBuilder::max_attempts`] members per call) for
//! every failure class except cancellation and budget.
//!
//! ## Failure is bounded
//!
//! Once a member has failed a call, the router does not wait for the others'
//! circuits: when every member left is open, the call returns its failure at
//! once, and the engine's retry policy decides what comes next. A member that
//! has failed every call for [`RouterBuilder::down_after`] is down (a
//! [`DownDetector`] per member, next to its breaker): no call waits for its
//! circuit, while its half-open probes still go through, so it comes back on the
//! first success. The router is a composite provider ([`Provider::is_composite`]):
//! the engine keeps no breaker of its own on it (one dead member would trip the
//! whole router) and asks [`Provider::unavailable`], which answers when every
//! member is down and none is due for a probe.
//!
//! ## Exploration
//!
//! Rankings come from observations, and a member that is never called is never
//! observed: a provider that failed an hour ago and has since recovered would get
//! no traffic back. So with probability [`RouterBuilder::exploration`] (default
//! 0.1) a call goes first to a randomly chosen member other than the best one,
//! and measured statistics decay (recent calls weigh most), so a few good calls
//! to a recovered member are enough to move traffic back.
//!
//! ## Gate outcomes
//!
//! The engine judges the artifacts after the call returns. Every artifact the
//! router returns carries the id of the member that made it in
//! `meta.extra["routed_provider"]`, and a generate step with gates reports each
//! verdict back through [`Provider::record_verdict`], which the router credits to
//! that member. A host judging outside the engine reports with
//! [`Router::record_gate`] (by member id) or [`Router::record_verdict`] (by
//! artifact). [`Strategy::CostPerAccepted`] ranks on these reports; until a member
//! has verdicts its pass rate is taken as 1 (optimistic, so it gets tried).
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

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use creative_core::registry::{BuildCtx, Registry};
use creative_core::resilience::{BreakerConfig, BreakerState, CircuitBreaker, DownConfig, DownDetector, RateLimiter};
use creative_core::{
    Artifact, CallCtx, Capabilities, ErrorKind, Generation, MemberCall, Provider, ProviderError, Request,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

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
    /// Highest recent success rate first. Spec name `most_reliable`.
    MostReliable,
    /// Lowest expected cost per accepted asset first: the estimated price divided by
    /// the recent gate pass rate. Spec name `cost_per_accepted`.
    CostPerAccepted,
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

/// Per-member limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemberLimits {
    /// Requests per minute; `None` for no limit.
    pub rpm: Option<u32>,
    /// Requests allowed at once after an idle spell (rate-limit burst). Default 1.
    pub burst: u32,
    /// Calls in flight at once; `None` for no limit.
    pub concurrency: Option<usize>,
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
}

impl Observed {
    fn success_rate(&self) -> f64 {
        // Optimistic prior (an unmeasured member counts as reliable) so new and
        // recovered members are tried.
        (self.ok_w + 1.0) / (self.total_w + 1.0)
    }

    fn gate_pass_rate(&self) -> f64 {
        (self.pass_w + 1.0) / (self.verdicts_w + 1.0)
    }
}

struct Member {
    provider: Arc<dyn Provider>,
    limiter: Option<RateLimiter>,
    concurrency: Option<Arc<Semaphore>>,
    breaker: CircuitBreaker,
    health: DownDetector,
    observed: Mutex<Observed>,
}

impl Member {
    fn observed(&self) -> std::sync::MutexGuard<'_, Observed> {
        // Plain counters: a panic elsewhere cannot leave them torn.
        self.observed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Builds a [`Router`]. Setters never fail; [`RouterBuilder::build`] reports the
/// first bad setting.
pub struct RouterBuilder {
    id: String,
    members: Vec<(Arc<dyn Provider>, MemberLimits)>,
    strategy: Strategy,
    exploration: f64,
    latency_alpha: f64,
    decay: f64,
    breaker: BreakerConfig,
    down: DownConfig,
    max_wait: Duration,
    max_attempts: usize,
    seed: Option<u64>,
}

impl RouterBuilder {
    /// Add a member without limits.
    pub fn member(self, provider: Arc<dyn Provider>) -> Self {
        self.member_with_limits(provider, MemberLimits::default())
    }

    /// Add a member with per-member limits.
    pub fn member_with_limits(mut self, provider: Arc<dyn Provider>, limits: MemberLimits) -> Self {
        self.members.push((provider, limits));
        self
    }

    /// The ranking strategy. Default [`Strategy::Fallback`].
    pub fn strategy(mut self, s: Strategy) -> Self {
        self.strategy = s;
        self
    }

    /// Probability that a call goes first to a member other than the best ranked,
    /// so every member keeps being observed. Default 0.1; 0 disables exploration.
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
        let members = self
            .members
            .into_iter()
            .map(|(provider, limits)| Member {
                health: DownDetector::new(provider.id(), self.down),
                provider,
                limiter: limits
                    .rpm
                    .and_then(|rpm| RateLimiter::per_minute(rpm, limits.burst.max(1))),
                concurrency: limits.concurrency.map(|n| Arc::new(Semaphore::new(n.max(1)))),
                breaker: CircuitBreaker::new(self.breaker),
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
        Ok(Router {
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
        })
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
            exploration: 0.1,
            latency_alpha: 0.3,
            decay: 0.9,
            breaker: BreakerConfig::default(),
            down: DownConfig::default(),
            max_wait: Duration::from_secs(60),
            max_attempts: 0,
            seed: None,
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
        let mut o = m.observed();
        o.pass_w = o.pass_w * self.decay + if passed { 1.0 } else { 0.0 };
        o.verdicts_w = o.verdicts_w * self.decay + 1.0;
        o.verdicts += 1;
        true
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
                MemberStats {
                    id: m.provider.id().to_string(),
                    calls: o.calls,
                    successes: o.successes,
                    failures: o.failures,
                    latency_ms: o.latency_ema_s.map(|s| s * 1e3),
                    success_rate: o.success_rate(),
                    gate_pass_rate: o.gate_pass_rate(),
                    gate_verdicts: o.verdicts,
                    breaker: m.breaker.state(),
                    down: m.health.down().is_some(),
                }
            })
            .collect()
    }

    /// The members able to do `request`'s task, best first by the strategy, before
    /// exploration.
    pub fn ranking(&self, request: &Request) -> Vec<&str> {
        self.rank(request)
            .into_iter()
            .map(|i| self.members[i].provider.id())
            .collect()
    }

    fn rank(&self, request: &Request) -> Vec<usize> {
        let mut scored: Vec<(f64, usize)> = self
            .members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.provider.capabilities().supports(request.task))
            .map(|(i, m)| {
                let o = m.observed();
                let score = match self.strategy {
                    Strategy::Fallback => i as f64,
                    Strategy::Cheapest => m.provider.estimate_cost(request),
                    // Unmeasured members count as instant, so they get measured.
                    Strategy::Fastest => o.latency_ema_s.unwrap_or(0.0),
                    Strategy::MostReliable => -o.success_rate(),
                    Strategy::CostPerAccepted => m.provider.estimate_cost(request) / o.gate_pass_rate(),
                };
                (if score.is_nan() { f64::INFINITY } else { score }, i)
            })
            .collect();
        // Stable: equal scores keep the order the members were given.
        scored.sort_by(|a, b| a.0.total_cmp(&b.0));
        scored.into_iter().map(|(_, i)| i).collect()
    }

    fn explore(&self, order: &mut [usize]) {
        if order.len() < 2 || self.exploration <= 0.0 {
            return;
        }
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        if rng.f64() < self.exploration {
            let pick = rng.usize(1..order.len());
            order[..=pick].rotate_right(1);
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
        let permit = match &m.concurrency {
            Some(sem) => match sem.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => return Err(Blocked::Slot(i)),
            },
            None => None,
        };
        m.breaker.try_acquire().map_err(Blocked::Open)?;
        if let Some(l) = &m.limiter {
            if let Err(d) = l.try_acquire() {
                // Release a half-open probe we took but will not use.
                m.breaker.on_neutral();
                return Err(Blocked::After(d));
            }
        }
        Ok(permit)
    }

    fn record_outcome(&self, i: usize, elapsed: Duration, result: &Result<Generation, ProviderError>) {
        let m = &self.members[i];
        let mut o = m.observed();
        o.calls += 1;
        let sample = |o: &mut Observed, alpha: f64| {
            let s = elapsed.as_secs_f64();
            o.latency_ema_s = Some(match o.latency_ema_s {
                Some(prev) => prev + alpha * (s - prev),
                None => s,
            });
        };
        match result {
            Ok(_) => {
                m.breaker.on_success();
                m.health.on_success();
                o.successes += 1;
                o.ok_w = o.ok_w * self.decay + 1.0;
                o.total_w = o.total_w * self.decay + 1.0;
                sample(&mut o, self.latency_alpha);
            }
            Err(e) => {
                o.failures += 1;
                if e.kind().counts_against_provider() {
                    m.breaker.on_failure();
                    m.health.on_failure(e);
                    o.ok_w *= self.decay;
                    o.total_w = o.total_w * self.decay + 1.0;
                    if e.kind() == ErrorKind::Timeout {
                        // A timeout is a latency observation too: at least this slow.
                        sample(&mut o, self.latency_alpha);
                    }
                } else {
                    m.breaker.on_neutral();
                }
                if e.kind() == ErrorKind::RateLimited {
                    // Respect the member's own request to wait; other members take
                    // the traffic meanwhile.
                    let wait = e.retry_after().unwrap_or(Duration::from_secs(1)).min(self.max_wait);
                    o.rate_limited_until = Some(Instant::now() + wait);
                }
            }
        }
    }

    /// The error of a call whose every candidate is down (with its circuit open).
    fn all_down(&self, order: &[usize]) -> ProviderError {
        let why: Vec<String> = order
            .iter()
            .map(|&i| match self.members[i].health.down() {
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
        let Some(sem) = self.members[i].concurrency.clone() else {
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
            .all(|m| m.health.down().is_some() && m.breaker.state() == BreakerState::Open);
        every_down.then(|| self.all_down(&all))
    }

    /// Each member's concerns, named by member.
    fn warnings(&self) -> Vec<String> {
        self.members
            .iter()
            .flat_map(|m| {
                let id = m.provider.id().to_string();
                m.provider
                    .warnings()
                    .into_iter()
                    .map(move |w| format!("member `{id}`: {w}"))
            })
            .collect()
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
        let mut order = self.rank(request);
        if order.is_empty() {
            return Err(ProviderError::invalid(
                self.id.clone(),
                format!("no provider of this router can do task `{}`", request.task.as_str()),
            ));
        }
        self.explore(&mut order);
        // Members report nothing of their own: this router reports each call it
        // makes to them (a router inside a router would count them twice).
        let member_ctx = if ctx.observer.is_some() {
            ctx.unobserved()
        } else {
            ctx.clone()
        };
        let mut tried = vec![false; self.members.len()];
        let mut attempts = 0usize;
        let mut last_err: Option<ProviderError> = None;
        let mut waited = Duration::ZERO;
        loop {
            if ctx.cancel.is_cancelled() {
                return Err(ProviderError::cancelled(self.id.clone()));
            }
            let now = Instant::now();
            let mut soonest: Option<Duration> = None;
            let mut slot: Option<usize> = None;
            let mut picked = None;
            // Members not worth waiting for this round: open circuits once a member
            // has failed this call, and down members' circuits at any time.
            let mut skipped = vec![false; self.members.len()];
            for &i in order.iter().filter(|&&i| !tried[i]) {
                match self.try_take(i, now) {
                    Ok(permit) => {
                        picked = Some((i, permit));
                        break;
                    }
                    Err(Blocked::Open(d)) => {
                        if last_err.is_some() || self.members[i].health.down().is_some() {
                            skipped[i] = true;
                        } else {
                            soonest = Some(soonest.map_or(d, |s| s.min(d)));
                        }
                    }
                    Err(Blocked::After(d)) => soonest = Some(soonest.map_or(d, |s| s.min(d))),
                    Err(Blocked::Slot(j)) => {
                        slot.get_or_insert(j);
                    }
                }
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
            attempts += 1;
            let member = &self.members[i];
            let started = Instant::now();
            let result = member.provider.generate(request, &member_ctx).await;
            drop(permit);
            let elapsed = started.elapsed();
            self.record_outcome(i, elapsed, &result);
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
                    });
                    tracing::debug!(router = %self.id, member = member.provider.id(), error = %e, "member failed");
                    if !e.kind().allows_fallback() || attempts >= self.max_attempts {
                        return Err(e);
                    }
                    tried[i] = true;
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
/// `down_after = { after_s, min_failures }`
/// and `limits = { <member id> = { rpm, burst, concurrency } }`.
pub fn register(reg: &mut Registry) {
    reg.provider(
        "router",
        Arc::new(|id: &str, settings: &serde_json::Value, ctx: &BuildCtx| {
            build_from_settings(id, settings, ctx).map(|r| Arc::new(r) as Arc<dyn Provider>)
        }),
    );
}

fn build_from_settings(id: &str, s: &serde_json::Value, ctx: &BuildCtx) -> Result<Router, String> {
    let obj = s.as_object().ok_or("router settings must be a table")?;
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
    ];
    if let Some(k) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!("unknown router setting `{k}` (known: {})", KNOWN.join(", ")));
    }
    let ids = obj
        .get("providers")
        .and_then(|v| v.as_array())
        .ok_or("`providers` must be a list of provider ids")?;
    let limits = match obj.get("limits") {
        None => serde_json::Map::new(),
        Some(serde_json::Value::Object(m)) => m.clone(),
        Some(_) => return Err("`limits` must be a table of member id -> { rpm, burst, concurrency }".into()),
    };
    let mut b = Router::builder(id);
    for (n, v) in ids.iter().enumerate() {
        let pid = v.as_str().ok_or_else(|| format!("`providers[{n}]` must be a string"))?;
        if pid == id {
            return Err(format!("`providers[{n}]`: a router cannot route to itself"));
        }
        let p = ctx.providers.get(pid).cloned().ok_or_else(|| {
            format!("`providers[{n}]`: provider `{pid}` is not defined (define it before the router)")
        })?;
        let lim = match limits.get(pid) {
            Some(l) => member_limits(pid, l)?,
            None => MemberLimits::default(),
        };
        b = b.member_with_limits(p, lim);
    }
    if let Some(k) = limits
        .keys()
        .find(|k| !ids.iter().any(|v| v.as_str() == Some(k.as_str())))
    {
        return Err(format!("`limits.{k}`: `{k}` is not one of the router's providers"));
    }
    if let Some(v) = obj.get("strategy") {
        let s = v.as_str().ok_or("`strategy` must be a string")?;
        b = b.strategy(s.parse().map_err(|e: RouterError| e.to_string())?);
    }
    let num = |k: &str| -> Result<Option<f64>, String> {
        match obj.get(k) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| format!("`{k}` must be a number")),
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
        let n = v.as_u64().ok_or("`max_attempts` must be a whole number")?;
        b = b.max_attempts(n as usize);
    }
    if let Some(v) = obj.get("seed") {
        b = b.seed(v.as_u64().ok_or("`seed` must be a whole number")?);
    }
    if let Some(v) = obj.get("breaker") {
        let t = v.as_object().ok_or("`breaker` must be a table")?;
        let mut c = BreakerConfig::default();
        if let Some(n) = t.get("failure_threshold") {
            let n = n
                .as_u64()
                .filter(|n| *n >= 1)
                .ok_or("`breaker.failure_threshold` must be a whole number >= 1")?;
            c.failure_threshold = u32::try_from(n).map_err(|_| "`breaker.failure_threshold` is too large")?;
        }
        if let Some(x) = t.get("cool_down_s") {
            let x = x.as_f64().ok_or("`breaker.cool_down_s` must be a number")?;
            c.cool_down = secs("breaker.cool_down_s", x)?;
        }
        b = b.breaker(c);
    }
    if let Some(v) = obj.get("down_after") {
        let t = v.as_object().ok_or("`down_after` must be a table")?;
        if let Some(k) = t.keys().find(|k| !["after_s", "min_failures"].contains(&k.as_str())) {
            return Err(format!(
                "unknown setting `down_after.{k}` (known: after_s, min_failures)"
            ));
        }
        let mut d = DownConfig::default();
        if let Some(x) = t.get("after_s") {
            let x = x.as_f64().ok_or("`down_after.after_s` must be a number")?;
            d.after = secs("down_after.after_s", x)?;
        }
        if let Some(n) = t.get("min_failures") {
            let n = n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n >= 1)
                .ok_or("`down_after.min_failures` must be a whole number from 1 to 4294967295")?;
            d.min_failures = n;
        }
        b = b.down_after(d);
    }
    b.build().map_err(|e| e.to_string())
}

fn secs(name: &str, x: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(x).map_err(|_| format!("`{name}` must be a non-negative number of seconds"))
}

fn member_limits(pid: &str, v: &serde_json::Value) -> Result<MemberLimits, String> {
    let t = v.as_object().ok_or_else(|| format!("`limits.{pid}` must be a table"))?;
    let mut l = MemberLimits {
        burst: 1,
        ..MemberLimits::default()
    };
    for (k, v) in t {
        let n = v
            .as_u64()
            .ok_or_else(|| format!("`limits.{pid}.{k}` must be a whole number"))?;
        match k.as_str() {
            "rpm" => l.rpm = Some(u32::try_from(n).map_err(|_| format!("`limits.{pid}.rpm` is too large"))?),
            "burst" => l.burst = u32::try_from(n).map_err(|_| format!("`limits.{pid}.burst` is too large"))?,
            "concurrency" => l.concurrency = Some(n as usize),
            _ => {
                return Err(format!(
                    "unknown setting `limits.{pid}.{k}` (known: rpm, burst, concurrency)"
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
