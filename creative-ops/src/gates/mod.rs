//! Quality gates: checks that judge an artifact and say why.
//!
//! Every gate here scores on a 0..=1 scale, higher is better, so scores compare
//! across gates and a `composite` gate can weigh them; each gate's doc says what
//! its score means. A failing verdict is a normal answer; a `GateError` means the
//! gate could not judge (an undecodable image, a malformed judge answer) and the
//! engine treats it as a failure, never a pass. Pixel work runs on tokio's
//! blocking pool.

mod composite;
mod dedupe;
mod exposure;
mod format;
mod judge;
mod palette;
mod sharpness;
mod text;

use std::sync::Arc;

use async_trait::async_trait;

use creative_core::{Artifact, GateCtx, GateError, MediaKind, QualityGate, Verdict};

use crate::error::OpsError;
use crate::raster::Raster;

pub use composite::{CompositeGate, CompositeMode};
pub use dedupe::{ConsistencyGate, ConsistencySettings, DedupeGate, DedupeSettings};
pub use exposure::{ExposureGate, ExposureSettings, ExposureStats};
pub use format::{FormatGate, FormatSettings};
pub use judge::{JudgeGate, JudgeSettings};
pub use palette::{dominant_colors, PaletteGate, PaletteSettings};
pub use sharpness::{laplacian_variance, SharpnessGate, SharpnessSettings};
pub use text::{normalize, TextGate, TextSettings};

pub(crate) const IMAGE: &[MediaKind] = &[MediaKind::Image];
pub(crate) const TEXT: &[MediaKind] = &[MediaKind::Text];

/// Decode an artifact for a gate on the blocking pool, then run `f` there too.
pub(crate) async fn on_pixels<T, F>(gate: &str, a: &Artifact, f: F) -> Result<T, GateError>
where
    T: Send + 'static,
    F: FnOnce(Raster) -> T + Send + 'static,
{
    if a.media().kind() != MediaKind::Image {
        return Err(GateError::new(gate, format!("needs an image; got {}", a.media())));
    }
    let a = a.clone();
    let what = format!("{} ({})", a.id().short(), a.media());
    tokio::task::spawn_blocking(move || Raster::of_artifact(&a, &what).map(|(r, _)| f(r)))
        .await
        .map_err(|e| OpsError::Worker(e.to_string()).into_gate(gate))?
        .map_err(|e| e.into_gate(gate))
}

/// A verdict from a list of rule outcomes: passes when all hold; the score is
/// the share that hold (1 with no rules).
pub(crate) fn verdict_from_rules(rules: Vec<(bool, String)>) -> Verdict {
    let total = rules.len();
    let failed: Vec<String> = rules.into_iter().filter(|(ok, _)| !ok).map(|(_, why)| why).collect();
    let score = if total == 0 {
        1.0
    } else {
        (total - failed.len()) as f64 / total as f64
    };
    Verdict {
        passed: failed.is_empty(),
        score,
        reasons: failed,
    }
}

/// A gate under another name (a spec's gate `name`, or a composite's member).
pub struct Named {
    name: String,
    inner: Arc<dyn QualityGate>,
}

impl Named {
    /// Wrap `inner` so it reports as `name`.
    pub fn new(name: impl Into<String>, inner: Arc<dyn QualityGate>) -> Self {
        Named {
            name: name.into(),
            inner,
        }
    }
}

impl std::fmt::Debug for Named {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Named")
            .field("name", &self.name)
            .field("inner", &self.inner.name())
            .finish()
    }
}

#[async_trait]
impl QualityGate for Named {
    fn name(&self) -> &str {
        &self.name
    }
    fn accepts(&self) -> Option<&[MediaKind]> {
        self.inner.accepts()
    }
    async fn check(&self, artifact: &Artifact, ctx: &GateCtx) -> Result<Verdict, GateError> {
        self.inner.check(artifact, ctx).await.map_err(|mut e| {
            e.gate.clone_from(&self.name);
            e
        })
    }
    fn planned_calls(&self, vars: &creative_core::Vars) -> Vec<(String, creative_core::Request)> {
        self.inner.planned_calls(vars)
    }
}
