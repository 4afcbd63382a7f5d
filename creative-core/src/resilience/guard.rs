//! One provider's guard: the breaker, down detector, rate limiter,
//! concurrency limit and timeout around its calls, built from one
//! [`ProviderLimits`]. The engine keeps one per provider, and a router one per
//! member, so both are assembled here, once.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::{BreakerConfig, CircuitBreaker, DownConfig, DownDetector, RateLimiter};

/// Limits for one provider.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProviderLimits {
    /// Most calls in flight at once; `None` for no limit beyond the global one.
    /// Values are clamped to `1..=`[`crate::limits::MAX_CONCURRENCY`].
    pub concurrency: Option<usize>,
    /// Requests per minute; `None` for no rate limit.
    pub requests_per_minute: Option<u32>,
    /// Requests allowed at once after an idle spell (token bucket size). Default 1.
    pub burst: Option<u32>,
    /// Per-call timeout, overriding the executor's.
    #[serde(default, with = "opt_ms")]
    pub timeout: Option<Duration>,
}

mod opt_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

/// The guards around one provider's calls. Lives as long as its owner (the
/// executor, a router), so breaker and down state carry across runs.
#[derive(Debug)]
pub struct ProviderGuard {
    /// Stops calling a provider that keeps failing.
    pub breaker: CircuitBreaker,
    /// Tells a provider that is down from one failing for a moment.
    pub health: DownDetector,
    /// Requests per minute, when limited.
    pub limiter: Option<RateLimiter>,
    /// Calls in flight at once, when limited.
    pub concurrency: Option<Arc<Semaphore>>,
    /// Per-call timeout, when set.
    pub timeout: Option<Duration>,
}

impl ProviderGuard {
    /// The guard of provider `id` with these limits.
    pub fn new(id: &str, limits: &ProviderLimits, breaker: BreakerConfig, down: DownConfig) -> Self {
        ProviderGuard {
            health: DownDetector::new(id, down),
            breaker: CircuitBreaker::new(breaker),
            limiter: limits
                .requests_per_minute
                .and_then(|rpm| RateLimiter::per_minute(rpm, limits.burst.unwrap_or(1))),
            // Clamped like the executor's own limit: a semaphore panics above
            // `usize::MAX >> 3` permits.
            concurrency: limits
                .concurrency
                .map(|n| Arc::new(Semaphore::new(n.clamp(1, crate::limits::MAX_CONCURRENCY)))),
            timeout: limits.timeout,
        }
    }
}
