use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// A run's limits: money, provider attempts, and a deadline.
///
/// Money is counted in micro-dollars in atomics so that reserving is lock-free. A
/// call reserves its estimated price before it is made; when it ends, the
/// reservation is settled to the real cost (zero when the provider did not bill a
/// failure). Once any limit is reached the budget is exhausted: calls in flight
/// finish, no new call or job starts, and the run ends with status
/// `budget_exhausted`.
///
/// ```
/// use creative_core::resilience::Budget;
/// let b = Budget::new().max_cost_usd(1.0);
/// let r = b.reserve(0.6).unwrap();
/// assert!(b.reserve(0.6).is_err(), "0.6 + 0.6 would exceed 1.0");
/// b.settle(r, 0.5);
/// assert!((b.spent_usd() - 0.5).abs() < 1e-9);
/// ```
#[derive(Debug, Default)]
pub struct Budget {
    max_cost_micros: Option<u64>,
    max_attempts: Option<u64>,
    deadline: Option<Instant>,
    reserved_micros: AtomicU64,
    spent_micros: AtomicU64,
    attempts: AtomicU64,
    exhausted: AtomicBool,
}

/// Why the budget refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BudgetExceeded {
    /// Money.
    #[error(
        "cost limit of ${limit:.2} reached: ${spent:.4} spent, ${reserved:.4} held by calls in flight{}",
        if *needed > 0.0 { format!(", ${needed:.4} more needed") } else { String::new() }
    )]
    Cost {
        /// The limit.
        limit: f64,
        /// Settled so far.
        spent: f64,
        /// Reserved by calls still in flight.
        reserved: f64,
        /// What the refused call would have added (0 when the budget was already
        /// exhausted before it asked).
        needed: f64,
    },
    /// Attempts.
    #[error("attempt limit of {0} reached")]
    Attempts(u64),
    /// Time.
    #[error("deadline passed")]
    Deadline,
}

/// Money set aside for one call; settle it with [`Budget::settle`].
#[derive(Debug)]
#[must_use = "a reservation must be settled"]
pub struct Reservation {
    micros: u64,
}

fn micros(usd: f64) -> u64 {
    (usd.max(0.0) * 1e6).round() as u64
}

impl Budget {
    /// No limits.
    pub fn new() -> Self {
        Budget::default()
    }

    /// Limit spending.
    pub fn max_cost_usd(mut self, usd: f64) -> Self {
        self.max_cost_micros = Some(micros(usd));
        self
    }

    /// Count what earlier sessions of the same run spent (a resumed campaign's
    /// ledger), so the limits hold across sessions instead of restarting: a
    /// budget already spent is exhausted from the start.
    ///
    /// ```
    /// use creative_core::resilience::Budget;
    /// let b = Budget::new().max_cost_usd(0.20).already_spent(0.20, 5);
    /// assert!(b.is_exhausted());
    /// assert!(b.reserve(0.01).is_err());
    /// ```
    pub fn already_spent(self, usd: f64, attempts: u64) -> Self {
        self.spent_micros.store(micros(usd), Ordering::Relaxed);
        self.attempts.store(attempts, Ordering::Relaxed);
        let money_gone = self.max_cost_micros.is_some_and(|max| micros(usd) >= max);
        let attempts_gone = self.max_attempts.is_some_and(|max| attempts >= max);
        if money_gone || attempts_gone {
            self.exhausted.store(true, Ordering::Relaxed);
        }
        self
    }

    /// Limit provider attempts (retries included).
    pub fn max_attempts(mut self, n: u64) -> Self {
        self.max_attempts = Some(n);
        self
    }

    /// Stop starting work after `d` from now. A `d` so long that the clock
    /// cannot represent its end (`Duration::MAX`) is no deadline at all.
    pub fn deadline_in(mut self, d: Duration) -> Self {
        self.deadline = Instant::now().checked_add(d);
        self
    }

    /// The deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the deadline has passed (as opposed to the money or attempts
    /// running out).
    pub fn deadline_passed(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Whether a limit was reached.
    pub fn is_exhausted(&self) -> bool {
        if self.exhausted.load(Ordering::Relaxed) {
            return true;
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.exhausted.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Check the deadline and attempt limit without reserving money.
    pub fn check(&self) -> Result<(), BudgetExceeded> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.exhausted.store(true, Ordering::Relaxed);
            return Err(BudgetExceeded::Deadline);
        }
        if let Some(max) = self.max_attempts {
            if self.attempts.load(Ordering::Relaxed) >= max {
                self.exhausted.store(true, Ordering::Relaxed);
                return Err(BudgetExceeded::Attempts(max));
            }
        }
        if self.exhausted.load(Ordering::Relaxed) {
            if let Some(limit) = self.max_cost_micros {
                return Err(BudgetExceeded::Cost {
                    limit: limit as f64 / 1e6,
                    spent: self.spent_micros.load(Ordering::Relaxed) as f64 / 1e6,
                    reserved: self.reserved_micros.load(Ordering::Relaxed) as f64 / 1e6,
                    needed: 0.0,
                });
            }
        }
        Ok(())
    }

    /// Reserve the estimated cost of one call and count the attempt.
    pub fn reserve(&self, estimate_usd: f64) -> Result<Reservation, BudgetExceeded> {
        self.check()?;
        if let Some(max) = self.max_attempts {
            let prev = self.attempts.fetch_add(1, Ordering::Relaxed);
            if prev >= max {
                self.attempts.fetch_sub(1, Ordering::Relaxed);
                self.exhausted.store(true, Ordering::Relaxed);
                return Err(BudgetExceeded::Attempts(max));
            }
        } else {
            self.attempts.fetch_add(1, Ordering::Relaxed);
        }
        let need = micros(estimate_usd);
        if let Some(limit) = self.max_cost_micros {
            let prev = self.reserved_micros.fetch_add(need, Ordering::AcqRel);
            let spent = self.spent_micros.load(Ordering::Acquire);
            if prev + need + spent > limit {
                self.reserved_micros.fetch_sub(need, Ordering::AcqRel);
                self.attempts.fetch_sub(1, Ordering::Relaxed);
                self.exhausted.store(true, Ordering::Relaxed);
                return Err(BudgetExceeded::Cost {
                    limit: limit as f64 / 1e6,
                    spent: spent as f64 / 1e6,
                    reserved: prev as f64 / 1e6,
                    needed: estimate_usd,
                });
            }
        } else {
            self.reserved_micros.fetch_add(need, Ordering::AcqRel);
        }
        Ok(Reservation { micros: need })
    }

    /// Replace a reservation by the real cost of the call.
    pub fn settle(&self, r: Reservation, actual_usd: f64) {
        self.reserved_micros.fetch_sub(r.micros, Ordering::AcqRel);
        self.spent_micros.fetch_add(micros(actual_usd), Ordering::AcqRel);
        if let Some(limit) = self.max_cost_micros {
            if self.spent_micros.load(Ordering::Acquire) >= limit {
                self.exhausted.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Money spent so far (settled calls).
    pub fn spent_usd(&self) -> f64 {
        self.spent_micros.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// Attempts counted so far.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_capped() {
        let b = Budget::new().max_attempts(2);
        let r1 = b.reserve(0.0).unwrap();
        let r2 = b.reserve(0.0).unwrap();
        assert_eq!(b.reserve(0.0).unwrap_err(), BudgetExceeded::Attempts(2));
        b.settle(r1, 0.0);
        b.settle(r2, 0.0);
        assert!(b.is_exhausted());
    }

    #[test]
    fn unbilled_failures_cost_nothing() {
        let b = Budget::new().max_cost_usd(0.10);
        for _ in 0..100 {
            let r = b.reserve(0.04).unwrap();
            b.settle(r, 0.0);
        }
        assert_eq!(b.spent_usd(), 0.0);
        assert!(!b.is_exhausted());
    }

    #[test]
    fn spending_the_limit_exhausts() {
        let b = Budget::new().max_cost_usd(0.10);
        let r = b.reserve(0.04).unwrap();
        b.settle(r, 0.10);
        assert!(b.is_exhausted());
        assert!(matches!(b.reserve(0.0), Err(BudgetExceeded::Cost { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_exhausts() {
        let b = Budget::new().deadline_in(Duration::from_secs(5));
        assert!(b.check().is_ok());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.check().unwrap_err(), BudgetExceeded::Deadline);
        assert!(b.is_exhausted());
    }
}
