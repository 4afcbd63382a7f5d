use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use creative_core::{Artifact, MediaKind, Step, StepCtx, StepError, StepInputs};

use super::{all, image_inputs, record, run_each, OpInfo, Produced, IMAGE};
use crate::color::Color;
use crate::error::OpsError;
use crate::raster::{EncodeSettings, Format, PngCompression};

/// Settings of the `convert` step: re-encode images.
///
/// ```toml
/// [[steps]]
/// name = "web"
/// kind = "convert"
/// inputs = ["story"]
/// format = "jpeg"          # png | jpeg | webp (webp is lossless only)
/// quality = 85             # JPEG only, 1..=100 (default 90)
/// png_compression = "best" # PNG only: fast | balanced | high | best
/// background = "#ffffff"   # JPEG: colour under transparent pixels
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvertSettings {
    /// Target format.
    pub format: Format,
    /// JPEG quality.
    #[serde(default)]
    pub quality: Option<u8>,
    /// PNG deflate effort.
    #[serde(default)]
    pub png_compression: PngCompression,
    /// Colour under transparent pixels when the format has no alpha.
    #[serde(default)]
    pub background: Option<Color>,
}

impl ConvertSettings {
    fn encode(&self) -> EncodeSettings {
        EncodeSettings {
            format: Some(self.format),
            quality: self.quality,
            png_compression: self.png_compression,
            background: self.background,
        }
    }
}

/// Re-encode images as PNG, JPEG or lossless WebP.
#[derive(Debug, Clone)]
pub struct ConvertStep {
    s: ConvertSettings,
}

impl ConvertStep {
    /// Build from settings, checking them.
    pub fn new(s: ConvertSettings) -> Result<Self, OpsError> {
        s.encode().validate()?;
        Ok(ConvertStep { s })
    }
}

#[async_trait]
impl Step for ConvertStep {
    fn kind(&self) -> &str {
        "convert"
    }
    fn accepts(&self) -> Option<&[MediaKind]> {
        Some(IMAGE)
    }
    fn produces(&self) -> Option<MediaKind> {
        Some(MediaKind::Image)
    }
    fn min_inputs(&self) -> usize {
        1
    }
    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let images = image_inputs(all(inputs), ctx, "convert")?;
        let info = OpInfo {
            kind: "convert",
            settings: record(&self.s),
            output: self.s.encode(),
            extra_parents: Vec::new(),
        };
        run_each(images, ctx, info, |img, _| Ok(vec![Produced::new(img)])).await
    }
}
