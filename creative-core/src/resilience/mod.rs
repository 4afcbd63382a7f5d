//! Resilience as small pieces, each tested alone and composed around every
//! provider call by the engine (see [`crate::exec`]):
//!
//! - [`Backoff`] and [`RetryPolicy`]: when to try again, and after how long
//!   (exponential backoff with full jitter; a provider's Retry-After wins).
//! - [`CircuitBreaker`]: stop calling a provider that keeps failing; probe it again
//!   after a cool-down.
//! - [`RateLimiter`]: requests per minute per provider, as a token bucket that
//!   hands out waiting times instead of refusals.
//! - [`DownDetector`]: tell a provider that is down (it failed every call for a
//!   minute) from one failing for a moment, so jobs stop waiting for it.
//! - [`Budget`]: money, attempts and a deadline for a whole run; a call reserves its
//!   estimated price before it is made and settles the real one after.
//! - [`ProviderGuard`]: the breaker, down detector, limiter, concurrency limit
//!   and timeout of one provider, built from its [`ProviderLimits`]; the engine
//!   keeps one per provider and a router one per member.
//!
//! The call itself (timeout, cancellation, fallback along a provider chain, waiting
//! when every provider is unavailable) is composed in `exec::call`.
//!
//! Why waiting rather than failing: a campaign must not lose work to a transient
//! condition. A rate limit is a request to wait, not an error; a tripped breaker on
//! every provider of a step makes the step wait for the earliest reopening, bounded
//! by the run's deadline and budget, and say so in an event.
//!
//! Why not wait forever: a provider that stays down would hold every job for
//! breaker cycle after breaker cycle. So waiting is bounded twice: by the total
//! time a step may spend waiting on open circuits (a limit on time, which a
//! wait cannot reset), and by [`DownDetector`]: once a provider has failed every
//! call for [`DownConfig::after`], its jobs stop waiting for it and fall back or
//! fail at once, naming it and its last error.

mod backoff;
mod breaker;
mod budget;
mod guard;
mod health;
mod limiter;
mod retry;

pub use backoff::{Backoff, BackoffError};
pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker};
pub use budget::{Budget, BudgetExceeded, Reservation};
pub use guard::{ProviderGuard, ProviderLimits};
pub use health::{DownConfig, DownDetector, DownReport};
pub use limiter::RateLimiter;
pub use retry::RetryPolicy;
