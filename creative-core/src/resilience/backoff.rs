use std::time::Duration;

/// Exponential backoff with full jitter: the n-th delay is drawn uniformly from
/// `[0, min(max, base * 2^(n-1))]`.
///
/// Full jitter spreads retries of many jobs that failed together, so they do not
/// come back together (see "Exponential Backoff And Jitter", AWS architecture blog).
///
/// ```
/// use std::time::Duration;
/// use creative_core::resilience::Backoff;
/// let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5)).unwrap();
/// assert!(b.delay(1) <= Duration::from_millis(100));
/// assert!(b.delay(20) <= Duration::from_secs(5));
/// assert!(Backoff::new(Duration::from_secs(2), Duration::from_secs(1)).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    jitter: bool,
}

/// A backoff configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackoffError {
    /// The base delay is zero.
    #[error("backoff base delay must be greater than zero")]
    ZeroBase,
    /// The cap is below the base.
    #[error("backoff max delay ({max:?}) must be at least the base delay ({base:?})")]
    MaxBelowBase {
        /// The base.
        base: Duration,
        /// The cap.
        max: Duration,
    },
}

impl Backoff {
    /// Backoff from `base`, doubling, capped at `max`, with full jitter.
    pub fn new(base: Duration, max: Duration) -> Result<Self, BackoffError> {
        if base.is_zero() {
            return Err(BackoffError::ZeroBase);
        }
        if max < base {
            return Err(BackoffError::MaxBelowBase { base, max });
        }
        Ok(Backoff {
            base,
            max,
            jitter: true,
        })
    }

    /// The same without jitter: the delay is the ceiling itself. For tests and for
    /// callers that jitter elsewhere.
    pub fn without_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    /// The ceiling of the `attempt`-th delay (1-based), before jitter.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let factor = 1u64 << exp;
        let base = u64::try_from(self.base.as_nanos()).unwrap_or(u64::MAX);
        let nanos = base.saturating_mul(factor);
        Duration::from_nanos(nanos).min(self.max)
    }

    /// The delay before retry number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceil = self.ceiling(attempt);
        if self.jitter {
            Duration::from_nanos(fastrand::u64(0..=u64::try_from(ceil.as_nanos()).unwrap_or(u64::MAX)))
        } else {
            ceil
        }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(250),
            max: Duration::from_secs(20),
            jitter: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_and_cap() {
        let b = Backoff::new(Duration::from_millis(10), Duration::from_millis(70)).unwrap();
        let c: Vec<u128> = (1..=5).map(|a| b.ceiling(a).as_millis()).collect();
        assert_eq!(c, vec![10, 20, 40, 70, 70]);
        assert_eq!(b.ceiling(1000), Duration::from_millis(70));
    }

    #[test]
    fn jitter_stays_in_range_and_varies() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1)).unwrap();
        let ds: Vec<Duration> = (0..200).map(|_| b.delay(3)).collect();
        assert!(ds.iter().all(|d| *d <= Duration::from_millis(400)));
        let distinct: std::collections::HashSet<_> = ds.iter().collect();
        assert!(distinct.len() > 100, "full jitter should spread delays");
    }

    #[test]
    fn bad_configs_say_why() {
        assert_eq!(
            Backoff::new(Duration::ZERO, Duration::from_secs(1)),
            Err(BackoffError::ZeroBase)
        );
        let e = Backoff::new(Duration::from_secs(2), Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains("at least the base"));
    }
}
