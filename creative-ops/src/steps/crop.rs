use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use creative_core::{Artifact, MediaKind, Step, StepCtx, StepError, StepInputs};

use super::{image_to_image, map_images, record, Produced};
use crate::error::OpsError;
use crate::geometry::Rect;
use crate::raster::{EncodeSettings, RasterRef};

/// Settings of the `crop` step: a pixel rectangle that must lie inside the input.
///
/// ```toml
/// [[steps]]
/// name = "square"
/// kind = "crop"
/// inputs = ["hero"]
/// x = 128
/// y = 0
/// width = 768
/// height = 768
/// rendition = "1x1"      # optional
/// output = { format = "png" }   # optional
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CropSettings {
    /// Left edge.
    #[serde(default)]
    pub x: u32,
    /// Top edge.
    #[serde(default)]
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Rendition name for the output's metadata.
    #[serde(default)]
    pub rendition: Option<String>,
    /// Output encoding.
    #[serde(default)]
    pub output: EncodeSettings,
}

/// Cut a fixed rectangle out of images.
#[derive(Debug, Clone)]
pub struct CropStep {
    s: CropSettings,
}

impl CropStep {
    /// Build from settings, checking them.
    pub fn new(s: CropSettings) -> Result<Self, OpsError> {
        if s.width == 0 || s.height == 0 {
            return Err(OpsError::settings("width", "width and height must be at least 1"));
        }
        s.output.validate()?;
        Ok(CropStep { s })
    }

    /// Apply to one decoded image (a `&Raster` or a borrowed view): only the
    /// rectangle's pixels are copied.
    pub fn apply<'a>(&self, img: impl Into<RasterRef<'a>>) -> Result<Produced, OpsError> {
        let img = img.into();
        let r = Rect::new(self.s.x, self.s.y, self.s.width, self.s.height);
        let mut p = Produced::new(img.crop(r)?);
        p.rendition.clone_from(&self.s.rendition);
        Ok(p)
    }
}

#[async_trait]
impl Step for CropStep {
    image_to_image!("crop");

    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let me = self.clone();
        map_images(
            inputs,
            ctx,
            "crop",
            record(&self.s),
            self.s.output.clone(),
            move |img, _| Ok(vec![me.apply(img.view())?]),
        )
        .await
    }
}
