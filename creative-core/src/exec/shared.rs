//! State shared by every task of a run: providers with their guards, policies,
//! budget, stores, events, counters.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::cancel::CancellationToken;
use crate::error::ProviderError;
use crate::events::EventBus;
use crate::provider::Provider;
pub use crate::resilience::ProviderLimits;
use crate::resilience::{BreakerConfig, Budget, DownConfig, ProviderGuard, RetryPolicy};
use crate::store::{GenerationCache, Journal};

/// A provider with the guards the engine keeps for it. Lives as long as the
/// executor, so breaker and down state carry across runs.
///
/// For a composite provider (a router) the breaker and the down detector stay
/// unused: its members keep their own, and the engine asks the provider itself
/// whether it can take a call (`Provider::unavailable`).
pub(crate) struct ProviderSlot {
    pub provider: Arc<dyn Provider>,
    pub guard: ProviderGuard,
}

impl ProviderSlot {
    pub fn new(provider: Arc<dyn Provider>, limits: &ProviderLimits, breaker: BreakerConfig, down: DownConfig) -> Self {
        ProviderSlot {
            guard: ProviderGuard::new(provider.id(), limits, breaker, down),
            provider,
        }
    }
}

/// Counters a run keeps while it goes; the outcome reports them.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub attempts: AtomicU64,
    pub retries: AtomicU64,
    pub fallbacks: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub gate_checks: AtomicU64,
    pub gate_failures: AtomicU64,
    pub regenerations: AtomicU64,
    pub flagged: AtomicU64,
    pub cache_hits: AtomicU64,
    pub saved_micros: AtomicU64,
    pub cost_micros: AtomicU64,
    pub steps_done: AtomicU64,
    pub steps_resumed: AtomicU64,
    pub steps_changed: AtomicU64,
    pub jobs_total: AtomicU64,
    /// The job source's announced size, until the source runs dry: progress shows
    /// "3 of 24" from the start rather than "3 of 4" while jobs are pulled lazily.
    pub jobs_hint: AtomicU64,
    pub jobs_done: AtomicU64,
    pub jobs_failed: AtomicU64,
}

/// The figures of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunStats {
    /// Provider calls made (retries included, cache hits excluded).
    pub attempts: u64,
    /// Calls that failed.
    pub failed_attempts: u64,
    /// Retries scheduled.
    pub retries: u64,
    /// Moves to a next provider.
    pub fallbacks: u64,
    /// Gate checks made.
    pub gate_checks: u64,
    /// Gate checks that failed.
    pub gate_failures: u64,
    /// New generations made because of a gate failure.
    pub regenerations: u64,
    /// Artifacts passed on flagged for review.
    pub flagged: u64,
    /// Generations served from the cache.
    pub cache_hits: u64,
    /// Money the cache saved.
    pub saved_usd: f64,
    /// Money spent.
    pub cost_usd: f64,
    /// Steps finished (resumed ones included).
    pub steps_done: u64,
    /// Steps restored from the journal instead of run.
    pub steps_resumed: u64,
    /// Steps the journal recorded that ran again because their definition or
    /// inputs changed since (a resume after an edit).
    pub steps_changed: u64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_usd(c: &AtomicU64, usd: f64) {
        c.fetch_add((usd.max(0.0) * 1e6).round() as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> RunStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RunStats {
            attempts: g(&self.attempts),
            failed_attempts: g(&self.failed_attempts),
            retries: g(&self.retries),
            fallbacks: g(&self.fallbacks),
            gate_checks: g(&self.gate_checks),
            gate_failures: g(&self.gate_failures),
            regenerations: g(&self.regenerations),
            flagged: g(&self.flagged),
            cache_hits: g(&self.cache_hits),
            saved_usd: g(&self.saved_micros) as f64 / 1e6,
            cost_usd: g(&self.cost_micros) as f64 / 1e6,
            steps_done: g(&self.steps_done),
            steps_resumed: g(&self.steps_resumed),
            steps_changed: g(&self.steps_changed),
        }
    }

    pub fn progress(&self) -> crate::events::Progress {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        crate::events::Progress {
            jobs_total: g(&self.jobs_total).max(g(&self.jobs_hint)),
            jobs_done: g(&self.jobs_done),
            jobs_failed: g(&self.jobs_failed),
            steps_done: g(&self.steps_done),
        }
    }
}

/// Identical generations in flight, by cache key, so that concurrent jobs asking
/// for the same generation pay for it once: the first caller leads and calls the
/// provider, the others wait for it and then read the cache.
#[derive(Default)]
pub(crate) struct Inflight {
    calls: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// What a caller of [`Inflight::claim`] is.
pub(crate) enum Claim {
    /// Call the provider; waiters are released when the guard drops.
    Leader(InflightGuard),
    /// Another caller is making the same call: wait on this, then read the cache.
    Follower(Arc<Semaphore>),
}

/// Held by the leader of an in-flight generation.
pub(crate) struct InflightGuard {
    owner: Arc<Inflight>,
    key: String,
    done: Arc<Semaphore>,
}

impl Inflight {
    pub fn claim(self: &Arc<Self>, key: &str) -> Claim {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(done) = calls.get(key) {
            return Claim::Follower(done.clone());
        }
        // A semaphore with no permits that is closed when the call ends: waiters
        // that arrive after the close return at once, so no wake-up is missed.
        let done = Arc::new(Semaphore::new(0));
        calls.insert(key.to_string(), done.clone());
        Claim::Leader(InflightGuard {
            owner: self.clone(),
            key: key.to_string(),
            done,
        })
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.owner
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
        self.done.close();
    }
}

/// Everything a run's tasks share.
pub(crate) struct RunShared {
    pub providers: Arc<HashMap<String, Arc<ProviderSlot>>>,
    pub retry: RetryPolicy,
    pub call_timeout: Option<Duration>,
    /// The most a step waits in all on open circuits.
    pub max_open_wait: Duration,
    pub budget: Arc<Budget>,
    pub events: EventBus,
    pub cache: Option<Arc<dyn GenerationCache>>,
    pub force: bool,
    pub journal: Option<Arc<dyn Journal>>,
    pub inflight: Arc<Inflight>,
    /// Permits of steps that call providers.
    pub steps: Arc<Semaphore>,
    /// Permits of steps that call none (image operations, gates, custom
    /// steps): a pool of their own, so CPU work on finished generations never
    /// holds back the next calls.
    pub local_steps: Arc<Semaphore>,
    pub counters: Counters,
    pub cancel: CancellationToken,
    /// Providers that failed work a fallback then served, by provider.
    pub degraded: Mutex<BTreeMap<String, Degradation>>,
}

/// A provider whose failures a fallback covered during a run: the run succeeded
/// only thanks to the providers after it in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Degradation {
    /// The provider that failed.
    pub provider: String,
    /// The class of its last failure (`auth`, `transient`, `unavailable`, ...).
    pub class: String,
    /// Calls a fallback served in its place.
    pub calls: u64,
    /// The providers that served them.
    pub served_by: Vec<String>,
    /// Its last error message.
    pub sample: String,
}

impl RunShared {
    /// A call failed on `failed` (given up on with `error`) and `served_by`,
    /// later in the chain, did it.
    pub fn note_degraded(&self, error: &ProviderError, served_by: &str) {
        let mut d = self.degraded.lock().unwrap_or_else(|p| p.into_inner());
        let e = d.entry(error.provider().to_string()).or_insert_with(|| Degradation {
            provider: error.provider().to_string(),
            class: String::new(),
            calls: 0,
            served_by: Vec::new(),
            sample: String::new(),
        });
        e.calls += 1;
        e.class = error.kind().as_str().to_string();
        e.sample = error.to_string();
        if !e.served_by.iter().any(|s| s == served_by) {
            e.served_by.push(served_by.to_string());
            e.served_by.sort();
        }
    }
}

impl RunShared {
    /// A run with nothing registered, for steps used on their own.
    pub fn detached() -> Arc<Self> {
        Arc::new(RunShared {
            providers: Arc::new(HashMap::new()),
            retry: RetryPolicy::default(),
            call_timeout: None,
            max_open_wait: Duration::ZERO,
            budget: Arc::new(Budget::new()),
            events: EventBus::new(None),
            cache: None,
            force: false,
            journal: None,
            inflight: Arc::default(),
            steps: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
            local_steps: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
            counters: Counters::default(),
            cancel: CancellationToken::new(),
            degraded: Mutex::default(),
        })
    }
}
