use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use creative_core::{Artifact, GateCtx, GateError, MediaKind, QualityGate, Verdict};

use super::{on_pixels, IMAGE};
use crate::error::OpsError;
use crate::raster::Raster;

/// Settings of the `sharpness` gate.
///
/// Score: `v / (v + min_variance)` for a measured variance `v`, so it is 0.5 at
/// the threshold and approaches 1 for very sharp images.
///
/// ```toml
/// [[gates]]
/// kind = "sharpness"
/// min_variance = 100.0   # variance of the Laplacian of luma (0..255 scale)
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SharpnessSettings {
    /// Images whose Laplacian variance is below this fail as blurry.
    #[serde(default = "min_variance")]
    pub min_variance: f64,
}

impl Default for SharpnessSettings {
    fn default() -> Self {
        SharpnessSettings {
            min_variance: min_variance(),
        }
    }
}

fn min_variance() -> f64 {
    100.0
}

/// The variance of the 4-neighbour Laplacian of luma over the interior pixels
/// (a `w`x`h` luma plane); 0 for images smaller than 3x3.
///
/// ```
/// // One white pixel on black: Laplacian -1020 at it, 255 at its 4 neighbours.
/// let mut luma = vec![0u8; 25];
/// luma[12] = 255;
/// assert_eq!(creative_ops::gates::laplacian_variance(&luma, 5, 5), 1_300_500.0 / 9.0);
/// ```
pub fn laplacian_variance(luma: &[u8], w: usize, h: usize) -> f64 {
    if w < 3 || h < 3 || luma.len() < w * h {
        return 0.0;
    }
    let (mut sum, mut sum_sq) = (0i64, 0i64);
    for y in 1..h - 1 {
        let row = y * w;
        for x in 1..w - 1 {
            let i = row + x;
            let l = i64::from(luma[i - w]) + i64::from(luma[i + w]) + i64::from(luma[i - 1]) + i64::from(luma[i + 1])
                - 4 * i64::from(luma[i]);
            sum += l;
            sum_sq += l * l;
        }
    }
    let n = ((w - 2) * (h - 2)) as f64;
    let mean = sum as f64 / n;
    sum_sq as f64 / n - mean * mean
}

/// Rejects blurry images by the variance of the Laplacian: edges give large
/// second derivatives, blur flattens them.
///
/// The measure depends on scale (downscaling sharpens, upscaling blurs), so set
/// the threshold for the size the gate sees.
#[derive(Debug, Clone)]
pub struct SharpnessGate {
    name: String,
    s: SharpnessSettings,
}

impl SharpnessGate {
    /// Build from settings, checking them.
    pub fn new(s: SharpnessSettings) -> Result<Self, OpsError> {
        if !(s.min_variance > 0.0 && s.min_variance.is_finite()) {
            return Err(OpsError::settings("min_variance", "must be a positive number"));
        }
        Ok(SharpnessGate {
            name: "sharpness".into(),
            s,
        })
    }

    /// Rename the gate.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Judge a decoded image.
    pub fn judge(&self, img: &Raster) -> Verdict {
        let v = laplacian_variance(&img.luma(), img.width() as usize, img.height() as usize);
        let min = self.s.min_variance;
        let score = v / (v + min);
        if v >= min {
            Verdict::pass(score)
        } else {
            Verdict::fail(score, format!("variance of Laplacian {v:.1} is below {min} (blurry)"))
        }
    }
}

#[async_trait]
impl QualityGate for SharpnessGate {
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
