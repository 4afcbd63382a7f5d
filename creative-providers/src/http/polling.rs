//! Waiting on a remote job: [`PollBackoff`] and [`sleep_or_cancel`], which
//! honour cancellation and the call's deadline.

use std::time::{Duration, Instant};

use creative_core::{CallCtx, ErrorKind, ProviderError};

/// Sleep for `d`, or stop early with a `Cancelled` error when the call is
/// cancelled, or with a `Timeout` error when the call's deadline comes first.
pub async fn sleep_or_cancel(d: Duration, ctx: &CallCtx, provider: &str) -> Result<(), ProviderError> {
    let (d, hits_deadline) = match ctx.deadline {
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            (d.min(left), left <= d)
        }
        None => (d, false),
    };
    tokio::select! {
        biased;
        _ = ctx.cancel.cancelled() => Err(ProviderError::cancelled(provider)),
        _ = tokio::time::sleep(d) => {
            if hits_deadline {
                Err(ProviderError::new(
                    ErrorKind::Timeout,
                    provider,
                    "the call's time limit (the provider's `call_timeout_s`) ran out while waiting on the job",
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// The delays between polls of an async job: starts at `initial`, grows by
/// `factor` up to `max`, and gives up after `limit` in total.
///
/// ```
/// use std::time::Duration;
/// use creative_providers::http::PollBackoff;
/// let mut p = PollBackoff::new(Duration::from_millis(500), Duration::from_secs(5));
/// assert_eq!(p.next_delay(), Duration::from_millis(500));
/// assert_eq!(p.next_delay(), Duration::from_millis(750));
/// ```
#[derive(Debug, Clone)]
pub struct PollBackoff {
    next: Duration,
    max: Duration,
    factor: f64,
    waited: Duration,
    limit: Option<Duration>,
    polls: u32,
}

impl PollBackoff {
    /// Delays from `initial` growing by 1.5x up to `max`, with no total limit (the
    /// call's deadline still applies).
    pub fn new(initial: Duration, max: Duration) -> Self {
        PollBackoff {
            next: initial,
            max: max.max(initial),
            factor: 1.5,
            waited: Duration::ZERO,
            limit: None,
            polls: 0,
        }
    }

    /// Change the growth factor (at least 1).
    pub fn factor(mut self, f: f64) -> Self {
        self.factor = if f.is_finite() { f.max(1.0) } else { 1.0 };
        self
    }

    /// Give up (with a `Timeout` error) after waiting `total` in all.
    pub fn limit(mut self, total: Duration) -> Self {
        self.limit = Some(total);
        self
    }

    /// How many waits so far.
    pub fn polls(&self) -> u32 {
        self.polls
    }

    /// The next delay, advancing the schedule.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = self.next.mul_f64(self.factor).min(self.max);
        self.polls += 1;
        d
    }

    /// Wait the next delay, racing cancellation and the call's deadline.
    pub async fn wait(&mut self, ctx: &CallCtx, provider: &str) -> Result<(), ProviderError> {
        let d = self.next_delay();
        if let Some(limit) = self.limit {
            if self.waited >= limit {
                return Err(ProviderError::new(
                    ErrorKind::Timeout,
                    provider,
                    format!("job not finished after polling for {} s", self.waited.as_secs_f64()),
                ));
            }
        }
        self.waited += d;
        sleep_or_cancel(d, ctx, provider).await
    }
}
