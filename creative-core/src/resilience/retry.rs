use std::time::Duration;

use crate::error::{ErrorKind, ProviderError};

use super::Backoff;

/// When to retry a failed provider call, and after how long.
///
/// Decisions follow the error's class: invalid input, auth and content-policy
/// refusals are never retried; rate limits wait at least the provider's
/// Retry-After and have their own, larger allowance, because being told to wait is
/// not a failure.
///
/// ```
/// use std::time::Duration;
/// use creative_core::{ProviderError, resilience::RetryPolicy};
/// let p = RetryPolicy::default();
/// let e = ProviderError::rate_limited("p", "slow down", Some(Duration::from_secs(3)));
/// assert!(p.delay_for(1, &e).unwrap() >= Duration::from_secs(3));
/// assert!(p.delay_for(1, &ProviderError::invalid("p", "bad size")).is_none());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Most attempts per provider for failures other than rate limits (first call
    /// included). Default 3.
    pub max_attempts: u32,
    /// Most rate-limited answers tolerated per provider before moving on. Default 8.
    pub max_rate_limited: u32,
    /// The backoff between attempts.
    pub backoff: Backoff,
    /// The longest Retry-After honoured; a provider asking for more is given up on
    /// (and the step falls back). Default 120 s.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            max_rate_limited: 8,
            backoff: Backoff::default(),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            max_rate_limited: 1,
            ..RetryPolicy::default()
        }
    }

    /// The delay before retrying after `failures` failures of the same kind family
    /// (1-based), or `None` when the call must not be retried.
    pub fn delay_for(&self, failures: u32, err: &ProviderError) -> Option<Duration> {
        match err.kind() {
            ErrorKind::RateLimited => {
                if failures >= self.max_rate_limited {
                    return None;
                }
                let jittered = self.backoff.delay(failures);
                match err.retry_after() {
                    Some(ra) if ra > self.max_retry_after => None,
                    // Wait what was asked, plus a little jitter so that the jobs that
                    // were told the same instant do not come back all at once.
                    Some(ra) => Some(ra + jittered / 4),
                    None => Some(self.backoff.ceiling(failures).max(jittered)),
                }
            }
            k if k.is_retryable() => {
                if failures >= self.max_attempts {
                    None
                } else {
                    Some(self.backoff.delay(failures))
                }
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_retries_the_callers_mistakes() {
        let p = RetryPolicy::default();
        for k in [
            ErrorKind::Invalid,
            ErrorKind::Auth,
            ErrorKind::ContentPolicy,
            ErrorKind::Cancelled,
            ErrorKind::Budget,
        ] {
            assert!(p.delay_for(1, &ProviderError::new(k, "p", "m")).is_none(), "{k}");
        }
    }

    #[test]
    fn transient_failures_stop_at_max_attempts() {
        let p = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let e = ProviderError::transient("p", "503");
        assert!(p.delay_for(1, &e).is_some());
        assert!(p.delay_for(2, &e).is_some());
        assert!(p.delay_for(3, &e).is_none());
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let p = RetryPolicy::default();
        let e = ProviderError::rate_limited("p", "", Some(Duration::from_secs(7)));
        let d = p.delay_for(1, &e).unwrap();
        assert!(d >= Duration::from_secs(7) && d < Duration::from_secs(8), "{d:?}");
        let long = ProviderError::rate_limited("p", "", Some(Duration::from_secs(3600)));
        assert!(p.delay_for(1, &long).is_none());
    }
}
