//! The `QualityGate` trait and what a gate decides.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::artifact::{Artifact, MediaKind};
use crate::error::GateError;
use crate::job::Vars;
use crate::request::Request;

/// The context a gate gets (defined in `exec/`, which owns the run's state).
pub use crate::exec::GateCtx;

/// A gate's judgement of one artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Whether the artifact is good enough.
    pub passed: bool,
    /// A score, higher is better; its scale is the gate's (documented per gate).
    pub score: f64,
    /// Why, in words a reviewer understands; empty when there is nothing to say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

impl Verdict {
    /// A passing verdict with a score.
    pub fn pass(score: f64) -> Self {
        Verdict {
            passed: true,
            score,
            reasons: Vec::new(),
        }
    }

    /// A failing verdict with a score and a reason.
    pub fn fail(score: f64, reason: impl Into<String>) -> Self {
        Verdict {
            passed: false,
            score,
            reasons: vec![reason.into()],
        }
    }
}

/// A gate as an API that attaches one takes it: a concrete gate, moved in,
/// or one already shared behind an [`Arc`](std::sync::Arc).
pub trait IntoGate {
    /// The gate, shared.
    fn into_gate(self) -> std::sync::Arc<dyn QualityGate>;
}

impl<G: QualityGate + 'static> IntoGate for G {
    fn into_gate(self) -> std::sync::Arc<dyn QualityGate> {
        std::sync::Arc::new(self)
    }
}

impl<G: QualityGate + 'static> IntoGate for std::sync::Arc<G> {
    fn into_gate(self) -> std::sync::Arc<dyn QualityGate> {
        self
    }
}

impl IntoGate for std::sync::Arc<dyn QualityGate> {
    fn into_gate(self) -> std::sync::Arc<dyn QualityGate> {
        self
    }
}

/// A check on an artifact: format, sharpness, palette, duplicates, text rules, an
/// LLM judge... A failing verdict is a normal answer; an `Err` means the gate could
/// not judge (a malformed judge answer, an undecodable image) and is treated as a
/// failure that names the gate, never as a pass.
#[async_trait]
pub trait QualityGate: Send + Sync {
    /// The gate's name, used in provenance and reports.
    fn name(&self) -> &str;

    /// The media families it can judge; `None` means any. The pipeline checks this
    /// when it is built.
    fn accepts(&self) -> Option<&[MediaKind]> {
        None
    }

    /// Judge one artifact.
    async fn check(&self, artifact: &Artifact, ctx: &GateCtx) -> Result<Verdict, GateError>;

    /// The paid provider calls one check makes, known before any artifact is:
    /// each the provider's id and a request like the one it sends for a job
    /// with these variables (the artifact itself left out). A dry run adds
    /// their estimates, and a money budget refuses a provider with no price
    /// for them. Default: none, for gates that call no provider.
    fn planned_calls(&self, vars: &Vars) -> Vec<(String, Request)> {
        let _ = vars;
        Vec::new()
    }
}

/// What a generate step does when its output fails a gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
#[non_exhaustive]
pub enum OnGateFail {
    /// Generate again with a new seed derived from the first, up to `max` more times;
    /// then fail the step.
    Regenerate {
        /// How many extra rounds at most.
        max: u32,
    },
    /// Try the next provider of the step's chain.
    Fallback,
    /// Keep the artifact, mark it flagged for review, and go on.
    Flag,
    /// Fail the step (and so the job).
    Fail,
}

impl Default for OnGateFail {
    fn default() -> Self {
        OnGateFail::Regenerate { max: 2 }
    }
}
