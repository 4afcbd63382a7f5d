use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Circuit breaker settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit. Default 5.
    pub failure_threshold: u32,
    /// How long the circuit stays open before one probe call is let through.
    /// Default 30 s.
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            cool_down: Duration::from_secs(30),
        }
    }
}

/// The state of a breaker, as seen from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// Calls are refused until the cool-down ends.
    Open,
    /// One probe call is allowed; its result closes or reopens the circuit.
    HalfOpen,
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// A circuit breaker for one provider: it opens after `failure_threshold`
/// consecutive failures, refuses calls during the cool-down, then lets one probe
/// through (half-open); the probe's success closes it, its failure reopens it.
///
/// Only failures that say something about the provider's health count (see
/// `ErrorKind::counts_against_provider`); the engine reports them with
/// [`CircuitBreaker::on_failure`].
///
/// ```
/// use std::time::Duration;
/// use creative_core::resilience::{BreakerConfig, BreakerState, CircuitBreaker};
/// let b = CircuitBreaker::new(BreakerConfig { failure_threshold: 2, cool_down: Duration::from_secs(1) });
/// b.on_failure();
/// b.on_failure();
/// assert_eq!(b.state(), BreakerState::Open);
/// assert!(b.try_acquire().is_err());
/// ```
#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: Mutex<State>,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        CircuitBreaker {
            config,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a few plain fields; a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ask to make a call. `Ok` lets it through; `Err(wait)` tells how long until the
    /// circuit may let a call through again.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        let now = Instant::now();
        let mut s = self.lock();
        match &mut *s {
            State::Closed { .. } => Ok(()),
            State::Open { until } => {
                if now >= *until {
                    *s = State::HalfOpen { probing: true };
                    Ok(())
                } else {
                    Err(*until - now)
                }
            }
            State::HalfOpen { probing } => {
                if *probing {
                    // A probe is out; others wait a short while for its answer.
                    Err(self.config.cool_down.min(Duration::from_millis(100)))
                } else {
                    *probing = true;
                    Ok(())
                }
            }
        }
    }

    /// A call succeeded.
    pub fn on_success(&self) {
        *self.lock() = State::Closed { failures: 0 };
    }

    /// A call failed in a way that counts against the provider.
    pub fn on_failure(&self) {
        let mut s = self.lock();
        let open = match &mut *s {
            State::Closed { failures } => {
                *failures += 1;
                *failures >= self.config.failure_threshold
            }
            State::HalfOpen { .. } => true,
            State::Open { .. } => false,
        };
        if open {
            *s = State::Open {
                until: Instant::now() + self.config.cool_down,
            };
        }
    }

    /// A call was let through but ended without saying anything about the
    /// provider's health (cancelled, invalid input): release a half-open probe.
    pub fn on_neutral(&self) {
        let mut s = self.lock();
        if let State::HalfOpen { probing } = &mut *s {
            *probing = false;
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        match &*self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if Instant::now() >= *until => BreakerState::HalfOpen,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            failure_threshold: 3,
            cool_down: Duration::from_secs(10),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_only() {
        let b = breaker();
        b.on_failure();
        b.on_failure();
        b.on_success();
        b.on_failure();
        b.on_failure();
        assert_eq!(b.state(), BreakerState::Closed);
        b.on_failure();
        assert_eq!(b.state(), BreakerState::Open);
        let wait = b.try_acquire().unwrap_err();
        assert_eq!(wait, Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn half_opens_after_cool_down_with_a_single_probe() {
        let b = breaker();
        for _ in 0..3 {
            b.on_failure();
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.try_acquire().is_ok(), "the probe goes through");
        assert!(b.try_acquire().is_err(), "a second caller waits for the probe");
        b.on_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.try_acquire().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probe_reopens() {
        let b = breaker();
        for _ in 0..3 {
            b.on_failure();
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        b.try_acquire().unwrap();
        b.on_failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.try_acquire().unwrap_err(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn neutral_outcome_releases_the_probe() {
        let b = breaker();
        for _ in 0..3 {
            b.on_failure();
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        b.try_acquire().unwrap();
        b.on_neutral();
        assert!(b.try_acquire().is_ok());
    }
}
