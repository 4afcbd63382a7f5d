//! Ranking the members for one call: by the strategy's estimates, or by a
//! Thompson draw from each member's posterior for the learning strategies,
//! with the p95 latency cap and the `exploration` share on top.
//!
//! [`Ranked`] also carries each member's expected cost and latency, which the
//! wait-or-spill decision (`wait.rs`) compares.

use std::sync::atomic::Ordering;

use creative_core::{Request, Task};

use super::bandit::{sample_beta, Prior};
use super::member::Member;
use super::{Router, Strategy};

/// Every member's prior mean accepted-per-attempt rate.
const PRIOR_MEAN: f64 = 0.8;

/// A call's ranking and what the wait-or-spill decision compares.
pub(super) struct Ranked {
    /// Member indices, best first.
    pub(super) order: Vec<usize>,
    /// Per member index: expected cost per accepted asset (posterior mean for
    /// the learning strategies, the estimate for the others).
    pub(super) cost: Vec<f64>,
    /// Per member index: observed latency in seconds (0 when unmeasured).
    pub(super) latency: Vec<f64>,
    /// Whether the first choice is not the best by the current estimates.
    pub(super) explored: bool,
}

impl Router {
    /// The members able to do `request`'s task, best first by the strategy's
    /// current estimates (posterior means: no draw, no exploration).
    pub fn ranking(&self, request: &Request) -> Vec<&str> {
        self.rank(request, false)
            .order
            .into_iter()
            .map(|i| self.members[i].provider.id())
            .collect()
    }

    /// A member's price for `request` (or for its first task), never negative or NaN.
    pub(super) fn list_price(&self, m: &Member, request: Option<&Request>) -> f64 {
        let p = match request {
            Some(r) => m.provider.estimate_cost(r),
            None => {
                let task = m.provider.capabilities().tasks.first().copied().unwrap_or(Task::Image);
                m.provider.estimate_cost(&Request::new(task, ""))
            }
        };
        if p.is_finite() && p >= 0.0 {
            p
        } else {
            0.0
        }
    }

    /// The prior on every member's accepted-per-attempt rate.
    pub(super) fn prior(&self) -> Prior {
        Prior::common(PRIOR_MEAN, self.prior_strength)
    }

    /// Rank the members able to do `request`. With `draw`, the learning
    /// strategies rank by a Thompson draw (and the `exploration` share applies);
    /// without, by their estimates.
    pub(super) fn rank(&self, request: &Request, draw: bool) -> Ranked {
        let n = self.members.len();
        let tick = self.tick.load(Ordering::Relaxed);
        let eligible: Vec<usize> = (0..n)
            .filter(|&i| self.members[i].provider.capabilities().supports(request.task))
            .collect();
        let mut cost = vec![f64::INFINITY; n];
        let mut latency = vec![0.0; n];
        let mut over_cap = vec![false; n];
        // Scores, lower is better: by the estimates, and by this call's draws.
        let mut estimated = vec![f64::INFINITY; n];
        let mut drawn = vec![f64::INFINITY; n];
        let learning = draw && self.strategy.learns();
        let mut rng = learning.then(|| self.rng.lock().unwrap_or_else(|p| p.into_inner()));
        // Cost per accepted, latency per accepted, attempts per accepted.
        let mut terms_est: Vec<(usize, [f64; 3])> = Vec::new();
        let mut terms_draw: Vec<(usize, [f64; 3])> = Vec::new();
        for &i in &eligible {
            let m = &self.members[i];
            let o = m.observed();
            let price = self.list_price(m, Some(request));
            latency[i] = o.latency_ema_s.unwrap_or(0.0);
            over_cap[i] = self
                .latency_cap
                .is_some_and(|cap| o.p95().is_some_and(|p| p > cap.as_secs_f64()));
            cost[i] = price;
            let (est, drw) = match self.strategy {
                Strategy::Fallback => (i as f64, i as f64),
                Strategy::Cheapest => (price, price),
                Strategy::Fastest => {
                    // A sample older than the window may be stale: count the
                    // member as unmeasured so one call measures it again.
                    let stale = tick.saturating_sub(o.latency_tick) as f64 > self.window;
                    let l = if stale { 0.0 } else { latency[i] };
                    (l, l)
                }
                Strategy::MostReliable => {
                    let (a, b) = (o.ok_w + 1.0, (o.total_w - o.ok_w).max(0.0) + 1.0);
                    let theta = match rng.as_deref_mut() {
                        Some(r) => sample_beta(r, a, b),
                        None => a / (a + b),
                    };
                    (-a / (a + b), -theta)
                }
                Strategy::CostPerAccepted => {
                    let prior = self.prior();
                    let (yes, no) = o.accept.at(tick, self.gamma);
                    let (a, b) = (prior.alpha + yes, prior.beta + no);
                    let mean = a / (a + b);
                    let theta = match rng.as_deref_mut() {
                        Some(r) => sample_beta(r, a, b).max(1e-6),
                        None => mean,
                    };
                    let per_attempt = o.cost_per_attempt(tick, self.gamma, price);
                    cost[i] = per_attempt / mean;
                    terms_est.push((i, [per_attempt / mean, latency[i] / mean, 1.0 / mean]));
                    terms_draw.push((i, [per_attempt / theta, latency[i] / theta, 1.0 / theta]));
                    (0.0, 0.0)
                }
            };
            estimated[i] = est;
            drawn[i] = drw;
        }
        if self.strategy == Strategy::CostPerAccepted {
            for (i, s) in self.weighted(&terms_est) {
                estimated[i] = s;
            }
            for (i, s) in self.weighted(&terms_draw) {
                drawn[i] = s;
            }
        }
        let key = |score: &[f64], i: usize| (over_cap[i], if score[i].is_nan() { f64::INFINITY } else { score[i] });
        let mut order = eligible.clone();
        // Stable: equal scores keep the order the members were given.
        order.sort_by(|&x, &y| {
            let (kx, ky) = (key(&drawn, x), key(&drawn, y));
            kx.0.cmp(&ky.0).then(kx.1.total_cmp(&ky.1))
        });
        let best = eligible.iter().copied().min_by(|&x, &y| {
            let (kx, ky) = (key(&estimated, x), key(&estimated, y));
            kx.0.cmp(&ky.0).then(kx.1.total_cmp(&ky.1)).then(x.cmp(&y))
        });
        let mut explored = order.first().copied() != best;
        if let Some(r) = rng.as_deref_mut() {
            if order.len() >= 2 && self.exploration > 0.0 {
                let calls = self.calls.load(Ordering::Relaxed) as f64;
                let share = self.exploration / (1.0 + calls / (10.0 * order.len() as f64));
                if r.f64() < share {
                    let pick = r.usize(1..order.len());
                    order[..=pick].rotate_right(1);
                    explored = true;
                }
            }
        }
        Ranked {
            order,
            cost,
            latency,
            explored,
        }
    }

    /// The weighted score of each member from its per-accepted figures, each
    /// taken relative to the lowest among the members.
    fn weighted(&self, terms: &[(usize, [f64; 3])]) -> Vec<(usize, f64)> {
        let w = [self.weights.cost, self.weights.latency, self.weights.reliability];
        let mut lowest = [f64::INFINITY; 3];
        for (_, t) in terms {
            for k in 0..3 {
                lowest[k] = lowest[k].min(t[k]);
            }
        }
        // A tiny offset keeps a free or unmeasured member (a zero) from making
        // every ratio infinite.
        const EPS: f64 = 1e-9;
        terms
            .iter()
            .map(|(i, t)| {
                let score = (0..3)
                    .filter(|&k| w[k] > 0.0)
                    .map(|k| w[k] * (t[k] + EPS) / (lowest[k] + EPS))
                    .sum();
                (*i, score)
            })
            .collect()
    }
}
