use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{ErrorKind, ProviderError};

/// When a provider that keeps failing is declared down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownConfig {
    /// How long a provider must have failed every call (no success since its
    /// first failure) before it is declared down. Default 60 s.
    pub after: Duration,
    /// The fewest failed calls within that time: a provider called twice in a
    /// minute has not shown it is down. Default 5.
    pub min_failures: u32,
}

impl Default for DownConfig {
    fn default() -> Self {
        DownConfig {
            after: Duration::from_secs(60),
            min_failures: 5,
        }
    }
}

/// Why a provider was declared down: what a job that gives up on it says.
#[derive(Debug, Clone, PartialEq)]
pub struct DownReport {
    /// The provider.
    pub provider: String,
    /// Failed calls since its last success.
    pub failures: u32,
    /// Time since the first of them.
    pub over: Duration,
    /// The class of the last failure.
    pub last_kind: ErrorKind,
    /// The last failure, as displayed.
    pub last_error: String,
}

impl fmt::Display for DownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "provider `{}` is down: {} failed calls over {:.0} s and no success; last error {}: {}",
            self.provider,
            self.failures,
            self.over.as_secs_f64(),
            self.last_kind,
            self.last_error
        )
    }
}

impl DownReport {
    /// The report as an error of class `unavailable` from the provider.
    pub fn to_error(&self) -> ProviderError {
        ProviderError::new(ErrorKind::Unavailable, self.provider.clone(), self.to_string())
    }
}

#[derive(Debug, Default)]
struct Streak {
    since: Option<Instant>,
    failures: u32,
    last: Option<(ErrorKind, String)>,
    declared: bool,
}

/// Tells a provider that is down from one that is failing for a while: it is
/// down once it has failed every call for [`DownConfig::after`] with at least
/// [`DownConfig::min_failures`] failures. A success ends it.
///
/// The breaker decides when to call a provider; this decides whether to wait
/// for it. A job whose provider is down does not wait on its open circuit (it
/// falls back or fails at once), while the breaker's half-open probes keep
/// going through, so a provider that comes back is seen on its next probe.
///
/// Only failures that count against a provider's health are reported here
/// (`ErrorKind::counts_against_provider`); a rate limit, a refused prompt or a
/// cancelled call say nothing about whether it is down, and do not end a streak.
///
/// ```
/// use std::time::Duration;
/// use creative_core::ProviderError;
/// use creative_core::resilience::{DownConfig, DownDetector};
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let d = DownDetector::new("p", DownConfig { after: Duration::from_secs(10), min_failures: 2 });
/// d.on_failure(&ProviderError::transient("p", "500"));
/// tokio::time::advance(Duration::from_secs(10)).await;
/// d.on_failure(&ProviderError::transient("p", "500"));
/// assert!(d.declare().is_some(), "found down: the caller tells the world");
/// assert!(d.declare().is_none(), "once");
/// assert!(d.down().is_some());
/// d.on_success();
/// assert!(d.down().is_none());
/// # }
/// ```
#[derive(Debug)]
pub struct DownDetector {
    provider: String,
    config: DownConfig,
    streak: Mutex<Streak>,
}

impl DownDetector {
    /// A detector for `provider` that has seen nothing yet.
    pub fn new(provider: impl Into<String>, config: DownConfig) -> Self {
        DownDetector {
            provider: provider.into(),
            config,
            streak: Mutex::new(Streak::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Streak> {
        // A few plain fields: a panic elsewhere cannot leave them torn.
        self.streak.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_down(&self, s: &Streak, now: Instant) -> bool {
        match s.since {
            Some(since) => s.failures >= self.config.min_failures.max(1) && now - since >= self.config.after,
            None => false,
        }
    }

    /// A call succeeded: the provider is up.
    pub fn on_success(&self) {
        *self.lock() = Streak::default();
    }

    /// A call failed in a way that counts against the provider.
    pub fn on_failure(&self, e: &ProviderError) {
        let now = Instant::now();
        let mut s = self.lock();
        s.since.get_or_insert(now);
        s.failures = s.failures.saturating_add(1);
        s.last = Some((e.kind(), e.to_string()));
    }

    /// Like [`DownDetector::down`], but only the first time in a streak that the
    /// provider is found down (a streak turns into "down" with time passing, not
    /// only on a failure): whoever gets `Some` tells the world, once.
    pub fn declare(&self) -> Option<DownReport> {
        {
            let mut s = self.lock();
            if s.declared || !self.is_down(&s, Instant::now()) {
                return None;
            }
            s.declared = true;
        }
        self.down()
    }

    /// Why the provider is down, or `None` while it is not.
    pub fn down(&self) -> Option<DownReport> {
        let now = Instant::now();
        let s = self.lock();
        if !self.is_down(&s, now) {
            return None;
        }
        let (last_kind, last_error) = s.last.clone().unwrap_or((ErrorKind::Unavailable, String::new()));
        Some(DownReport {
            provider: self.provider.clone(),
            failures: s.failures,
            over: s.since.map_or(Duration::ZERO, |t| now - t),
            last_kind,
            last_error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector() -> DownDetector {
        DownDetector::new(
            "p",
            DownConfig {
                after: Duration::from_secs(60),
                min_failures: 3,
            },
        )
    }

    fn e500() -> ProviderError {
        ProviderError::transient("p", "internal error").with_status(500)
    }

    #[tokio::test(start_paused = true)]
    async fn needs_both_the_window_and_the_failure_count() {
        let d = detector();
        for _ in 0..10 {
            d.on_failure(&e500());
        }
        assert!(
            d.down().is_none(),
            "many failures in a moment are not a minute of failures"
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(d.down().is_some(), "a minute of failures and enough of them");
        assert!(
            d.declare().is_some() && d.declare().is_none(),
            "declared once per streak"
        );

        let d = detector();
        d.on_failure(&e500());
        tokio::time::advance(Duration::from_secs(120)).await;
        d.on_failure(&e500());
        assert!(d.down().is_none(), "two failures are not enough, however far apart");
        d.on_failure(&e500());
        assert!(d.declare().is_some(), "the third makes it down");
        d.on_success();
        for _ in 0..3 {
            d.on_failure(&e500());
        }
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(d.declare().is_some(), "a new streak is declared again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_ends_the_streak() {
        let d = detector();
        d.on_failure(&e500());
        d.on_failure(&e500());
        tokio::time::advance(Duration::from_secs(59)).await;
        d.on_success();
        tokio::time::advance(Duration::from_secs(2)).await;
        d.on_failure(&e500());
        d.on_failure(&e500());
        d.on_failure(&e500());
        assert!(
            d.down().is_none(),
            "the window starts again at the first failure after the success"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_report_names_the_provider_the_count_and_the_last_error() {
        let d = detector();
        for _ in 0..3 {
            d.on_failure(&e500());
        }
        tokio::time::advance(Duration::from_secs(61)).await;
        d.on_failure(&ProviderError::timeout("p", Duration::from_secs(5)));
        let r = d.down().unwrap();
        assert_eq!(r.failures, 4);
        assert_eq!(r.last_kind, ErrorKind::Timeout);
        let msg = r.to_string();
        assert!(
            msg.contains("`p` is down") && msg.contains("4 failed calls") && msg.contains("timeout"),
            "{msg}"
        );
        assert_eq!(r.to_error().kind(), ErrorKind::Unavailable);
    }
}
