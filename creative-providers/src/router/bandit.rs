//! The learning parts of the router: a discounted Beta posterior on each
//! member's accepted-per-attempt rate and the Beta sampler Thompson sampling
//! draws from.
//!
//! The sampler is written here on `fastrand` (already the router's source of
//! randomness) rather than pulling in `rand` and `rand_distr` for one
//! distribution: Marsaglia and Tsang's gamma method, two gammas per Beta draw.

/// Discounted evidence about one Bernoulli rate (accepted or not per attempt).
///
/// Every observation the router makes, to any member, multiplies every
/// member's evidence by `gamma` (applied lazily from a global tick): evidence
/// fades whether or not the member is called, so a member that lost its traffic
/// drifts back towards its prior and is sampled again, and one whose quality
/// collapsed loses its lead within about `1 / (1 - gamma)` observations.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Evidence {
    /// Discounted successes (accepted attempts).
    pub yes: f64,
    /// Discounted failures (rejected or failed attempts).
    pub no: f64,
    /// The global tick this evidence was last brought up to date at.
    pub tick: u64,
}

impl Evidence {
    /// Bring the evidence up to `tick`, discounting by `gamma` per tick passed.
    pub fn decay_to(&mut self, tick: u64, gamma: f64) {
        if tick > self.tick {
            // Whole-tick exponent: clamp so a huge gap cannot overflow `powi`.
            let k = (tick - self.tick).min(i32::MAX as u64) as i32;
            let f = gamma.powi(k);
            self.yes *= f;
            self.no *= f;
            self.tick = tick;
        }
    }

    /// Add one observation at `tick`.
    pub fn add(&mut self, tick: u64, gamma: f64, yes: bool) {
        self.decay_to(tick, gamma);
        if yes {
            self.yes += 1.0;
        } else {
            self.no += 1.0;
        }
    }

    /// The evidence as seen at `tick`, without changing it.
    pub fn at(&self, tick: u64, gamma: f64) -> (f64, f64) {
        let mut e = *self;
        e.decay_to(tick, gamma);
        (e.yes, e.no)
    }
}

/// A change-point test on one member's latest outcomes (accepted or not): the
/// Bernoulli generalized likelihood ratio (GLR) test of Besson, Kaufmann,
/// Maillard and Seznec, "Efficient change-point detection for tackling
/// piecewise-stationary bandits" (JMLR 2022).
///
/// Discounting alone trades memory for reaction: a window short enough to
/// drop a collapsed member within a few dozen attempts also forgets, about
/// every member, what made exploring it pointless, so the router keeps paying
/// for the same experiments. The test lets the memory be long: after each
/// outcome it asks whether the latest outcomes are better explained by two
/// rates (before and after some split) than by one, and when they are, the
/// member's evidence restarts from the outcomes after the split.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChangeTest {
    outcomes: std::collections::VecDeque<bool>,
}

/// Outcomes the test looks back on.
const CHANGE_HISTORY: usize = 64;
/// The fewest outcomes on either side of a split: fewer say nothing.
const CHANGE_MIN_SIDE: usize = 4;
/// The false-alarm probability the threshold is set for.
const CHANGE_DELTA: f64 = 0.01;

impl ChangeTest {
    /// Add an outcome. When the test finds a change, the outcomes before it are
    /// forgotten and the (accepted, rejected) counts after it are returned: the
    /// member's evidence should restart from them.
    pub fn push(&mut self, yes: bool) -> Option<(f64, f64)> {
        if self.outcomes.len() == CHANGE_HISTORY {
            self.outcomes.pop_front();
        }
        self.outcomes.push_back(yes);
        let split = self.change_at()?;
        self.outcomes.drain(..split);
        let after_yes = self.outcomes.iter().filter(|&&y| y).count() as f64;
        Some((after_yes, self.outcomes.len() as f64 - after_yes))
    }

    /// The split (outcomes before it) with the largest GLR statistic, when that
    /// is above the threshold `ln(3 n^1.5 / delta)`.
    fn change_at(&self) -> Option<usize> {
        let n = self.outcomes.len();
        if n < 2 * CHANGE_MIN_SIDE {
            return None;
        }
        let total = self.outcomes.iter().filter(|&&y| y).count() as f64;
        let p = total / n as f64;
        let threshold = (3.0 * (n as f64).powf(1.5) / CHANGE_DELTA).ln();
        let mut before = 0.0;
        let mut best: Option<(usize, f64)> = None;
        for (k, &y) in self.outcomes.iter().enumerate().take(n - CHANGE_MIN_SIDE) {
            before += if y { 1.0 } else { 0.0 };
            let n1 = (k + 1) as f64;
            if k + 1 < CHANGE_MIN_SIDE {
                continue;
            }
            let n2 = n as f64 - n1;
            let glr = n1 * kl(before / n1, p) + n2 * kl((total - before) / n2, p);
            if glr > threshold && best.is_none_or(|(_, g)| glr > g) {
                best = Some((k + 1, glr));
            }
        }
        best.map(|(k, _)| k)
    }
}

/// Kullback-Leibler divergence between Bernoulli(p) and Bernoulli(q).
fn kl(p: f64, q: f64) -> f64 {
    const EPS: f64 = 1e-12;
    let q = q.clamp(EPS, 1.0 - EPS);
    let term = |a: f64, b: f64| if a <= 0.0 { 0.0 } else { a * (a / b).ln() };
    term(p, q) + term(1.0 - p, 1.0 - q)
}

/// A Beta prior as (alpha, beta) pseudo-counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Prior {
    pub alpha: f64,
    pub beta: f64,
}

impl Prior {
    /// The same prior for every member: accepted with mean `mean` (kept inside
    /// [0.05, 0.95] so that no member starts certain either way), with the
    /// weight of `strength` attempts, so a dozen real observations outweigh it.
    ///
    /// Nothing about acceptance is known before the first verdict, but the
    /// price is: with equal acceptance believed, the cheapest list price leads
    /// and the first experiments are the cheap ones. A dearer member is tried
    /// once the cheaper ones' evidence leaves room for it to be better value.
    /// (A prior that believed acceptance to grow with price made the dearest
    /// member as likely a first choice as any, and a call to it is the dearest
    /// experiment there is.)
    pub fn common(mean: f64, strength: f64) -> Prior {
        let mean = mean.clamp(0.05, 0.95);
        Prior {
            alpha: mean * strength,
            beta: (1.0 - mean) * strength,
        }
    }
}

/// One draw from Beta(a, b), a and b > 0.
pub(crate) fn sample_beta(rng: &mut fastrand::Rng, a: f64, b: f64) -> f64 {
    let x = sample_gamma(rng, a);
    let y = sample_gamma(rng, b);
    if x + y > 0.0 {
        x / (x + y)
    } else {
        // Both gammas underflowed (tiny shapes): the mean is the best answer.
        a / (a + b)
    }
}

/// One draw from Gamma(shape, 1), by Marsaglia and Tsang (2000); shapes below 1
/// use the boost Gamma(k) = Gamma(k + 1) * U^(1/k).
fn sample_gamma(rng: &mut fastrand::Rng, shape: f64) -> f64 {
    if shape < 1.0 {
        let u = rng.f64().max(f64::MIN_POSITIVE);
        return sample_gamma(rng, shape + 1.0) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = std_normal(rng);
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u = rng.f64();
        if u < 1.0 - 0.0331 * x * x * x * x || u.max(f64::MIN_POSITIVE).ln() < 0.5 * x * x + d * (1.0 - v + v.ln()) {
            return d * v;
        }
    }
}

/// One standard normal draw (Box-Muller; the second value is discarded to keep
/// the sampler stateless).
fn std_normal(rng: &mut fastrand::Rng) -> f64 {
    let u1 = rng.f64().max(f64::MIN_POSITIVE);
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moments(a: f64, b: f64) -> (f64, f64) {
        let mut rng = fastrand::Rng::with_seed(42);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| sample_beta(&mut rng, a, b)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        (mean, var)
    }

    #[test]
    fn beta_draws_have_the_distributions_mean_and_variance() {
        for (a, b) in [(1.0, 1.0), (0.3, 0.7), (2.0, 8.0), (40.0, 10.0)] {
            let (mean, var) = moments(a, b);
            let want_mean = a / (a + b);
            let want_var = a * b / ((a + b) * (a + b) * (a + b + 1.0));
            assert!(
                (mean - want_mean).abs() < 0.005,
                "Beta({a},{b}) mean {mean} vs {want_mean}"
            );
            assert!(
                (var - want_var).abs() < 0.05 * want_var + 1e-4,
                "Beta({a},{b}) var {var} vs {want_var}"
            );
        }
    }

    #[test]
    fn evidence_fades_by_gamma_per_tick_whether_or_not_the_member_is_observed() {
        let mut e = Evidence::default();
        for t in 1..=10 {
            e.add(t, 0.5, true);
        }
        assert!(
            (e.yes - 2.0).abs() < 0.01,
            "geometric sum approaches 1/(1-gamma): {}",
            e.yes
        );
        let (yes, no) = e.at(12, 0.5);
        assert!((yes - e.yes / 4.0).abs() < 1e-12 && no == 0.0);
    }

    #[test]
    fn the_common_prior_ranks_members_by_price_until_evidence_comes() {
        let p = Prior::common(0.8, 2.0);
        assert!((p.alpha - 1.6).abs() < 1e-12 && (p.beta - 0.4).abs() < 1e-12);
        // Equal acceptance believed: cost per accepted follows the list price.
        let mean = p.alpha / (p.alpha + p.beta);
        assert!(0.02 / mean < 0.03 / mean);
        let sure = Prior::common(1.0, 10.0);
        assert!((sure.alpha - 9.5).abs() < 1e-12, "never certain: {sure:?}");
    }

    /// Push `n` outcomes from `accepted` and return after how many a change was
    /// found, if one was.
    fn first_change(t: &mut ChangeTest, n: usize, mut accepted: impl FnMut(usize) -> bool) -> Option<usize> {
        (0..n).find(|&i| t.push(accepted(i)).is_some()).map(|i| i + 1)
    }

    #[test]
    fn the_change_test_finds_a_collapse_within_a_dozen_or_two_outcomes() {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut t = ChangeTest::default();
        // 95% accepted for a long while: no change.
        assert_eq!(first_change(&mut t, 200, |_| rng.f64() < 0.95), None);
        // Then 20%: found quickly, and the evidence restarts from after the split.
        let found = first_change(&mut t, 60, |_| rng.f64() < 0.2).expect("a collapse is found");
        assert!(found <= 20, "found after {found} outcomes");
        let (yes, no) = (
            t.outcomes.iter().filter(|&&y| y).count(),
            t.outcomes.iter().filter(|&&y| !y).count(),
        );
        assert!(
            no > yes,
            "what is kept is mostly after the collapse: {yes} yes, {no} no"
        );
    }

    #[test]
    fn the_change_test_rarely_raises_a_false_alarm_on_a_steady_rate() {
        let mut alarms = 0;
        for seed in 0..50 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut t = ChangeTest::default();
            for _ in 0..500 {
                if t.push(rng.f64() < 0.55).is_some() {
                    alarms += 1;
                }
            }
        }
        // 25000 outcomes at a steady 55%: a false alarm costs a restart of
        // the evidence, so they must be rare.
        assert!(alarms <= 3, "{alarms} false alarms");
    }

    #[test]
    fn kl_is_zero_for_equal_rates_and_grows_with_the_gap() {
        assert!(kl(0.3, 0.3).abs() < 1e-12);
        assert!(kl(0.0, 0.5) > kl(0.3, 0.5) && kl(0.3, 0.5) > 0.0);
        assert!(kl(1.0, 0.0).is_finite());
    }
}
