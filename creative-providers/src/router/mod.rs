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
//!
//! ## Where things are
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | this design, [`Router`] and [`RouterError`] |
//! | `strategy.rs` | [`Strategy`] and [`Weights`] |
//! | `builder.rs` | [`RouterBuilder`]: the settings, their defaults and checks |
//! | `settings.rs` | the `router` kind in the registry: a spec's table into a builder |
//! | `member.rs` | a member: its provider, its guard and what was observed of it |
//! | `rank.rs` | ranking the members for a call (estimates or Thompson draws) |
//! | `wait.rs` | taking a member, and waiting or spilling when it is busy |
//! | `provider.rs` | the [`Provider`] impl and the dispatch of one call |
//! | `learning.rs` | outcomes and verdicts into the evidence; [`MemberStats`], [`Decisions`] |
//! | `bandit.rs` | the discounted Beta posterior, the Beta sampler and the change test |
//! | `learned.rs` | [`Learned`] evidence and the statistics file |

mod bandit;
mod builder;
mod learned;
mod learning;
mod member;
mod provider;
mod rank;
mod settings;
mod strategy;
mod wait;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[cfg(doc)]
use creative_core::resilience::{ProviderGuard, ProviderLimits};
#[cfg(doc)]
use creative_core::{Provider, RouteReason};

pub use builder::RouterBuilder;
pub use learned::{Learned, StatsFileError};
pub use learning::{Decisions, MemberStats};
use member::Member;
pub use settings::register;
pub use strategy::{Strategy, Weights};

/// The key under which a routed artifact's `meta.extra` names the member that made it.
pub const ROUTED_PROVIDER: &str = "routed_provider";

/// A router configuration that cannot work.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
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
    /// The learned statistics file could not be read: which file, and the io
    /// error or the parser's reason (shared, so the error stays `Clone`).
    #[error(transparent)]
    StatsFile(Arc<StatsFileError>),
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

impl Router {
    /// The strategy.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }
}
