use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A token bucket for requests per minute that hands out waiting times.
///
/// `reserve()` takes a token now or books the next free one and returns how long
/// to wait for it, so callers queue fairly instead of spinning, and a retry takes a
/// token like any other call.
///
/// ```
/// use creative_core::resilience::RateLimiter;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let l = RateLimiter::per_minute(60, 1).unwrap();
/// assert!(l.reserve().is_zero());
/// assert!(!l.reserve().is_zero()); // the next token comes in about a second
/// # }
/// ```
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    burst: u32,
    state: Mutex<Instant>,
}

impl RateLimiter {
    /// `rpm` requests per minute, with up to `burst` at once after an idle spell.
    /// `None` when `rpm` is zero.
    pub fn per_minute(rpm: u32, burst: u32) -> Option<Self> {
        if rpm == 0 {
            return None;
        }
        let interval = Duration::from_secs(60) / rpm;
        let burst = burst.max(1);
        Some(RateLimiter {
            interval,
            burst,
            // "theoretical arrival time" of the next request (GCRA).
            state: Mutex::new(Instant::now()),
        })
    }

    /// Book the next request; returns how long to wait before making it.
    pub fn reserve(&self) -> Duration {
        let now = Instant::now();
        let mut tat = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let burst_window = self.interval * (self.burst - 1);
        let earliest = now.checked_sub(burst_window).unwrap_or(now);
        let start = (*tat).max(earliest);
        *tat = start + self.interval;
        start.saturating_duration_since(now)
    }

    /// Take a token only if one is free now; otherwise book nothing and return how
    /// long until one will be.
    ///
    /// A router uses this to spill a call over to another provider instead of
    /// queueing behind a busy one.
    ///
    /// ```
    /// use creative_core::resilience::RateLimiter;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let l = RateLimiter::per_minute(60, 1).unwrap();
    /// assert!(l.try_acquire().is_ok());
    /// let wait = l.try_acquire().unwrap_err();
    /// assert!(wait > std::time::Duration::ZERO);
    /// assert!(l.reserve() <= wait, "a refused try books nothing");
    /// # }
    /// ```
    pub fn try_acquire(&self) -> Result<(), Duration> {
        let now = Instant::now();
        let mut tat = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let burst_window = self.interval * (self.burst - 1);
        let earliest = now.checked_sub(burst_window).unwrap_or(now);
        let start = (*tat).max(earliest);
        if start > now {
            return Err(start - now);
        }
        *tat = start + self.interval;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_requests_evenly() {
        let l = RateLimiter::per_minute(120, 1).unwrap();
        let waits: Vec<u128> = (0..4).map(|_| l.reserve().as_millis()).collect();
        assert_eq!(waits, vec![0, 500, 1000, 1500]);
    }

    #[tokio::test(start_paused = true)]
    async fn allows_a_burst_after_idle() {
        let l = RateLimiter::per_minute(60, 3).unwrap();
        tokio::time::advance(Duration::from_secs(10)).await;
        let waits: Vec<u128> = (0..4).map(|_| l.reserve().as_millis()).collect();
        assert_eq!(waits, vec![0, 0, 0, 1000]);
    }

    #[tokio::test(start_paused = true)]
    async fn try_acquire_refuses_without_booking() {
        let l = RateLimiter::per_minute(60, 2).unwrap();
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(l.try_acquire().is_ok());
        assert!(l.try_acquire().is_ok());
        assert_eq!(l.try_acquire().unwrap_err(), Duration::from_secs(1));
        assert_eq!(l.try_acquire().unwrap_err(), Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(l.try_acquire().is_ok());
        assert!(l.try_acquire().is_err());
    }

    #[test]
    fn zero_rate_means_no_limiter() {
        assert!(RateLimiter::per_minute(0, 1).is_none());
    }
}
