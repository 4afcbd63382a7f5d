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

/// A Beta prior as (alpha, beta) pseudo-counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Prior {
    pub alpha: f64,
    pub beta: f64,
}

impl Prior {
    /// The prior from prices: every member is first believed to be equally good
    /// value for its price (a member at a third of the dearest's price is
    /// believed to be accepted a third as often), with the weight of `strength`
    /// attempts, so a dozen real observations outweigh it.
    ///
    /// The dearest member's prior mean is `top`; means are kept inside
    /// [0.05, 0.95] so that no member starts certain either way.
    pub fn from_price(price: f64, dearest: f64, top: f64, strength: f64) -> Prior {
        let mean = if dearest > 0.0 && price.is_finite() && price > 0.0 {
            top * price / dearest
        } else {
            // Free or unpriced members (or all of them): no reason to believe
            // one is better than another.
            top
        };
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
    fn the_price_prior_makes_every_member_equally_good_value() {
        let cheap = Prior::from_price(0.02, 0.08, 0.8, 2.0);
        let dear = Prior::from_price(0.08, 0.08, 0.8, 2.0);
        let value = |p: Prior, price: f64| price / (p.alpha / (p.alpha + p.beta));
        assert!((value(cheap, 0.02) - value(dear, 0.08)).abs() < 1e-9);
        assert!((cheap.alpha + cheap.beta - 2.0).abs() < 1e-12);
        let free = Prior::from_price(0.0, 0.0, 0.8, 2.0);
        assert!((free.alpha - 1.6).abs() < 1e-12);
    }
}
