use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use creative_core::{Artifact, GateCtx, GateError, QualityGate, Verdict};

use crate::error::OpsError;

/// How a composite gate combines its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CompositeMode {
    /// Pass when every member passes. The default.
    #[default]
    All,
    /// Pass when at least one member passes.
    Any,
    /// Pass when the weighted mean of member scores reaches `min_score`.
    Weighted,
}

/// Combines gates: all, any, or a weighted score.
///
/// Members are judged in order. Score: the mean of member scores (`all`, `any`)
/// or their weighted mean (`weighted`). Reasons are the members' reasons,
/// prefixed with the member's name. A member that cannot judge (`GateError`)
/// makes the composite unable to judge too, whatever the mode: an error is never
/// read as a pass or quietly outvoted.
///
/// Spec form (see `creative_ops::register` for how members are built):
///
/// ```toml
/// [[gates]]
/// kind = "composite"
/// mode = "weighted"     # all | any | weighted
/// min_score = 0.6       # weighted only
/// gates = [
///   { kind = "sharpness", min_variance = 80.0, weight = 2.0 },
///   { kind = "exposure", weight = 1.0, name = "light" },
/// ]
/// ```
#[derive(Clone)]
pub struct CompositeGate {
    name: String,
    mode: CompositeMode,
    min_score: f64,
    members: Vec<(Arc<dyn QualityGate>, f64)>,
}

impl std::fmt::Debug for CompositeGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompositeGate")
            .field("name", &self.name)
            .field("mode", &self.mode)
            .field(
                "members",
                &self
                    .members
                    .iter()
                    .map(|(g, w)| (g.name().to_string(), *w))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl CompositeGate {
    /// Combine `members` (gate, weight) by `mode`; `min_score` is used by
    /// `weighted` only.
    pub fn new(
        mode: CompositeMode,
        min_score: f64,
        members: Vec<(Arc<dyn QualityGate>, f64)>,
    ) -> Result<Self, OpsError> {
        if members.is_empty() {
            return Err(OpsError::settings("gates", "list at least one member gate"));
        }
        if members.iter().any(|(_, w)| !(w.is_finite() && *w >= 0.0)) {
            return Err(OpsError::settings("weight", "weights must be finite and not negative"));
        }
        if mode == CompositeMode::Weighted {
            if members.iter().map(|(_, w)| w).sum::<f64>() <= 0.0 {
                return Err(OpsError::settings("weight", "at least one weight must be positive"));
            }
            if !(0.0..=1.0).contains(&min_score) {
                return Err(OpsError::settings("min_score", "must be within 0..=1"));
            }
        }
        Ok(CompositeGate {
            name: "composite".into(),
            mode,
            min_score,
            members,
        })
    }

    /// Rename the gate.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

#[async_trait]
impl QualityGate for CompositeGate {
    fn name(&self) -> &str {
        &self.name
    }

    /// Every member's calls: a check runs every member.
    fn planned_calls(&self, vars: &creative_core::Vars) -> Vec<(String, creative_core::Request)> {
        self.members.iter().flat_map(|(g, _)| g.planned_calls(vars)).collect()
    }

    async fn check(&self, a: &Artifact, ctx: &GateCtx) -> Result<Verdict, GateError> {
        let mut verdicts = Vec::with_capacity(self.members.len());
        for (g, w) in &self.members {
            let v = g
                .check(a, ctx)
                .await
                .map_err(|e| GateError::new(&self.name, format!("member `{}`: {}", e.gate, e.message)))?;
            verdicts.push((g.name().to_string(), v, *w));
        }
        let mut reasons = Vec::new();
        for (n, v, _) in &verdicts {
            reasons.extend(v.reasons.iter().map(|r| format!("{n}: {r}")));
        }
        let n = verdicts.len() as f64;
        let (passed, score) = match self.mode {
            CompositeMode::All => (
                verdicts.iter().all(|(_, v, _)| v.passed),
                verdicts.iter().map(|(_, v, _)| v.score).sum::<f64>() / n,
            ),
            CompositeMode::Any => (
                verdicts.iter().any(|(_, v, _)| v.passed),
                verdicts.iter().map(|(_, v, _)| v.score).sum::<f64>() / n,
            ),
            CompositeMode::Weighted => {
                let total: f64 = verdicts.iter().map(|(_, _, w)| w).sum();
                let s = verdicts
                    .iter()
                    .map(|(_, v, w)| v.score.clamp(0.0, 1.0) * w)
                    .sum::<f64>()
                    / total;
                if s < self.min_score {
                    reasons.insert(0, format!("weighted score {s:.3} is below {}", self.min_score));
                }
                (s >= self.min_score, s)
            }
        };
        if passed && self.mode == CompositeMode::Any {
            // The members that failed are not why the composite passed.
            reasons.clear();
        }
        Ok(Verdict { passed, score, reasons })
    }
}
