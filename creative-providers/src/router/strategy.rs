//! How the router ranks its members: the [`Strategy`] named in a spec, and the
//! [`Weights`] that [`Strategy::CostPerAccepted`] trades cost, latency and
//! reliability by.
//!
//! Both are plain values a caller chooses; what each strategy does with the
//! evidence is in `rank.rs`, and why, in the [router docs](super).

use std::fmt;
use std::str::FromStr;

#[cfg(doc)]
use creative_core::Provider;

use super::RouterError;

/// How the router ranks its members on each call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// The members in the order given; later ones only when earlier ones cannot
    /// take the call or fail it. Spec name `fallback`.
    #[default]
    Fallback,
    /// Lowest [`Provider::estimate_cost`] for this request first. Spec name `cheapest`.
    Cheapest,
    /// Lowest moving average of observed latency first. Spec name `fastest`.
    Fastest,
    /// Highest success rate first, by a Thompson draw from each member's
    /// (discounted) success posterior. Spec name `most_reliable`.
    MostReliable,
    /// Lowest cost per accepted asset first, by a Thompson draw from each
    /// member's accepted-per-attempt posterior (see the [module docs](super)).
    /// Spec name `cost_per_accepted`.
    CostPerAccepted,
}

impl Strategy {
    /// Whether the strategy learns from its observations and so explores;
    /// the others are deterministic.
    pub fn learns(self) -> bool {
        matches!(self, Strategy::MostReliable | Strategy::CostPerAccepted)
    }
}

impl Strategy {
    /// The spec name.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Fallback => "fallback",
            Strategy::Cheapest => "cheapest",
            Strategy::Fastest => "fastest",
            Strategy::MostReliable => "most_reliable",
            Strategy::CostPerAccepted => "cost_per_accepted",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Strategy {
    type Err = RouterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "fallback" | "ordered" | "ordered_fallback" => Strategy::Fallback,
            "cheapest" => Strategy::Cheapest,
            "fastest" => Strategy::Fastest,
            "most_reliable" | "reliable" => Strategy::MostReliable,
            "cost_per_accepted" | "cost_per_accepted_asset" => Strategy::CostPerAccepted,
            _ => return Err(RouterError::UnknownStrategy(s.to_string())),
        })
    }
}

/// How [`Strategy::CostPerAccepted`] weighs cost, latency and reliability.
///
/// Each term is a member's figure relative to the best member's, so the terms are
/// comparable: `cost * (cost per accepted / lowest) + latency * (latency per
/// accepted / lowest) + reliability * (attempts per accepted / lowest)`. The
/// default, cost alone, ranks by cost per accepted asset. Each weight is in
/// [0, 1000] and at least one is above 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    /// Weight of the expected cost per accepted asset. Default 1.
    pub cost: f64,
    /// Weight of the expected latency per accepted asset. Default 0.
    pub latency: f64,
    /// Weight of the expected attempts per accepted asset. Default 0.
    pub reliability: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            cost: 1.0,
            latency: 0.0,
            reliability: 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_names_round_trip() {
        for s in [
            Strategy::Fallback,
            Strategy::Cheapest,
            Strategy::Fastest,
            Strategy::MostReliable,
            Strategy::CostPerAccepted,
        ] {
            assert_eq!(s.as_str().parse::<Strategy>().unwrap(), s);
        }
        assert_eq!("Most-Reliable".parse::<Strategy>().unwrap(), Strategy::MostReliable);
        let e = "quickest".parse::<Strategy>().unwrap_err();
        assert!(e.to_string().contains("quickest"), "{e}");
    }
}
