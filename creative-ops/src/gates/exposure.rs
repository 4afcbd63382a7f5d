use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use creative_core::{Artifact, GateCtx, GateError, MediaKind, QualityGate, Verdict};

use super::{on_pixels, IMAGE};
use crate::error::OpsError;
use crate::raster::Raster;

/// Settings of the `exposure` gate.
///
/// Score: `min(1 - shadows - highlights, contrast / min_contrast)`, clamped to
/// 0..=1, where `shadows` and `highlights` are the clipped shares of pixels.
///
/// ```toml
/// [[gates]]
/// kind = "exposure"
/// shadow_level = 8          # luma at or below this is a clipped shadow
/// highlight_level = 247     # luma at or above this is a clipped highlight
/// max_shadow_clip = 0.05    # largest share of clipped shadows
/// max_highlight_clip = 0.05 # largest share of clipped highlights
/// min_contrast = 0.08       # smallest RMS contrast (std dev of luma / 255)
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExposureSettings {
    /// Luma at or below which a pixel is a clipped shadow.
    #[serde(default = "shadow")]
    pub shadow_level: u8,
    /// Luma at or above which a pixel is a clipped highlight.
    #[serde(default = "highlight")]
    pub highlight_level: u8,
    /// Largest share of clipped shadows.
    #[serde(default = "clip")]
    pub max_shadow_clip: f64,
    /// Largest share of clipped highlights.
    #[serde(default = "clip")]
    pub max_highlight_clip: f64,
    /// Smallest RMS contrast.
    #[serde(default = "contrast")]
    pub min_contrast: f64,
}

impl Default for ExposureSettings {
    fn default() -> Self {
        ExposureSettings {
            shadow_level: shadow(),
            highlight_level: highlight(),
            max_shadow_clip: clip(),
            max_highlight_clip: clip(),
            min_contrast: contrast(),
        }
    }
}

fn shadow() -> u8 {
    8
}
fn highlight() -> u8 {
    247
}
fn clip() -> f64 {
    0.05
}
fn contrast() -> f64 {
    0.08
}

/// What the exposure gate measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExposureStats {
    /// Share of pixels at or below the shadow level.
    pub shadows: f64,
    /// Share of pixels at or above the highlight level.
    pub highlights: f64,
    /// RMS contrast: standard deviation of luma over 255.
    pub contrast: f64,
    /// Mean luma over 255.
    pub mean: f64,
}

/// Rejects under- and over-exposed images (histogram clipping at either end)
/// and flat ones (low contrast).
#[derive(Debug, Clone)]
pub struct ExposureGate {
    name: String,
    s: ExposureSettings,
}

impl ExposureGate {
    /// Build from settings, checking them.
    pub fn new(s: ExposureSettings) -> Result<Self, OpsError> {
        if s.shadow_level >= s.highlight_level {
            return Err(OpsError::settings("shadow_level", "must be below `highlight_level`"));
        }
        for (f, v) in [
            ("max_shadow_clip", s.max_shadow_clip),
            ("max_highlight_clip", s.max_highlight_clip),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(OpsError::settings(f, "must be within 0..=1"));
            }
        }
        if !(0.0..=0.5).contains(&s.min_contrast) {
            return Err(OpsError::settings("min_contrast", "must be within 0..=0.5"));
        }
        Ok(ExposureGate {
            name: "exposure".into(),
            s,
        })
    }

    /// Rename the gate.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Measure a decoded image.
    pub fn measure(&self, img: &Raster) -> ExposureStats {
        let mut hist = [0u64; 256];
        for v in img.luma() {
            hist[usize::from(v)] += 1;
        }
        let n = hist.iter().sum::<u64>().max(1) as f64;
        let shadows = hist[..=usize::from(self.s.shadow_level)].iter().sum::<u64>() as f64 / n;
        let highlights = hist[usize::from(self.s.highlight_level)..].iter().sum::<u64>() as f64 / n;
        let mean = hist.iter().enumerate().map(|(v, &c)| v as f64 * c as f64).sum::<f64>() / n;
        let var = hist
            .iter()
            .enumerate()
            .map(|(v, &c)| (v as f64 - mean).powi(2) * c as f64)
            .sum::<f64>()
            / n;
        ExposureStats {
            shadows,
            highlights,
            contrast: var.sqrt() / 255.0,
            mean: mean / 255.0,
        }
    }

    /// Judge a decoded image.
    pub fn judge(&self, img: &Raster) -> Verdict {
        let m = self.measure(img);
        let s = &self.s;
        let mut reasons = Vec::new();
        if m.shadows > s.max_shadow_clip {
            reasons.push(format!(
                "under-exposed: {:.1}% of pixels are clipped shadows (max {:.1}%)",
                m.shadows * 100.0,
                s.max_shadow_clip * 100.0
            ));
        }
        if m.highlights > s.max_highlight_clip {
            reasons.push(format!(
                "over-exposed: {:.1}% of pixels are clipped highlights (max {:.1}%)",
                m.highlights * 100.0,
                s.max_highlight_clip * 100.0
            ));
        }
        if m.contrast < s.min_contrast {
            reasons.push(format!(
                "flat: RMS contrast {:.3} is below {}",
                m.contrast, s.min_contrast
            ));
        }
        let by_contrast = if s.min_contrast > 0.0 {
            m.contrast / s.min_contrast
        } else {
            1.0
        };
        let score = (1.0 - m.shadows - m.highlights).min(by_contrast).clamp(0.0, 1.0);
        Verdict {
            passed: reasons.is_empty(),
            score,
            reasons,
        }
    }
}

#[async_trait]
impl QualityGate for ExposureGate {
    fn name(&self) -> &str {
        &self.name
    }
    fn accepts(&self) -> Option<&[MediaKind]> {
        Some(IMAGE)
    }
    async fn check(&self, a: &Artifact, _ctx: &GateCtx) -> Result<Verdict, GateError> {
        let me = self.clone();
        on_pixels(&self.name, a, move |img| me.judge(&img)).await
    }
}
