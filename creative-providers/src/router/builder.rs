//! [`RouterBuilder`]: a router's settings with their defaults, checked once in
//! [`RouterBuilder::build`].
//!
//! Setters never fail and each states its default; `build` reports the first
//! bad setting as a [`RouterError`], wraps each member in its guard and loads
//! the learned statistics file, if any.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use creative_core::resilience::{BreakerConfig, DownConfig, ProviderGuard, ProviderLimits};
use creative_core::Provider;

use super::learned;
use super::member::{Member, Observed};
use super::{Router, RouterError, Strategy, Weights};

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
            let entries = learned::load(path).map_err(|e| RouterError::StatsFile(Arc::new(e)))?;
            router.learn(&entries);
        }
        Ok(router)
    }
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
}
