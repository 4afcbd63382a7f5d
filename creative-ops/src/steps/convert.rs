use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use creative_core::{Artifact, MediaKind, Step, StepCtx, StepError, StepInputs};

use super::{image_to_image, map_images, record, Produced};
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
    image_to_image!("convert");

    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        map_images(inputs, ctx, "convert", record(&self.s), self.s.encode(), |img, _| {
            Ok(vec![Produced::new(img.into_raster())])
        })
        .await
    }
}
