use async_trait::async_trait;
use image::{RgbImage, RgbaImage};
use serde::{Deserialize, Serialize};

use creative_core::{Artifact, MediaKind, Step, StepCtx, StepError, StepInputs};

use super::{image_to_image, map_images, record, Produced};
use crate::color::Color;
use crate::error::OpsError;
use crate::geometry::{Anchor, Aspect};
use crate::raster::{EncodeSettings, Raster};

/// Settings of the `pad` step: extend the canvas to an aspect ratio (the
/// smallest canvas of that ratio around the image) or to an exact size, without
/// scaling. Give `aspect`, or both `width` and `height`.
///
/// ```toml
/// [[steps]]
/// name = "letterbox"
/// kind = "pad"
/// inputs = ["hero"]
/// aspect = "16:9"          # or width = 1920, height = 1080 (must hold the image)
/// color = "#000000"        # default white; an alpha below ff makes an RGBA canvas
/// anchor = "centre"        # where the image sits: top_left ... bottom_right
/// rendition = "16x9"       # default: the aspect's name when `aspect` is given
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PadSettings {
    /// Target aspect ratio.
    #[serde(default)]
    pub aspect: Option<Aspect>,
    /// Exact canvas width.
    #[serde(default)]
    pub width: Option<u32>,
    /// Exact canvas height.
    #[serde(default)]
    pub height: Option<u32>,
    /// Canvas colour.
    #[serde(default = "white")]
    pub color: Color,
    /// Where the image sits on the canvas.
    #[serde(default)]
    pub anchor: Anchor,
    /// Rendition name for the output's metadata.
    #[serde(default)]
    pub rendition: Option<String>,
    /// Output encoding.
    #[serde(default)]
    pub output: EncodeSettings,
}

fn white() -> Color {
    Color::WHITE
}

/// Pad images to an aspect ratio or size.
#[derive(Debug, Clone)]
pub struct PadStep {
    s: PadSettings,
}

impl PadStep {
    /// Build from settings, checking them.
    pub fn new(s: PadSettings) -> Result<Self, OpsError> {
        match (s.aspect.is_some(), s.width, s.height) {
            (true, None, None) => {}
            (false, Some(w), Some(h)) if w > 0 && h > 0 => {
                crate::raster::check_image_size(w, h).map_err(|m| OpsError::settings("width", m.to_string()))?;
            }
            (true, _, _) => {
                return Err(OpsError::settings(
                    "aspect",
                    "give `aspect` or `width` and `height`, not both",
                ))
            }
            _ => {
                return Err(OpsError::settings(
                    "aspect",
                    "give `aspect`, or both `width` and `height` (at least 1)",
                ))
            }
        }
        s.output.validate()?;
        Ok(PadStep { s })
    }

    /// Apply to one decoded image.
    pub fn apply(&self, img: &Raster) -> Result<Produced, OpsError> {
        let s = &self.s;
        let (w, h) = (img.width(), img.height());
        let (cw, ch) = match (s.aspect, s.width, s.height) {
            (Some(a), _, _) => a.smallest_around(w, h),
            (None, Some(cw), Some(ch)) => (cw, ch),
            _ => (w, h),
        };
        if cw < w || ch < h {
            return Err(OpsError::Unfit(format!(
                "cannot pad a {w}x{h} image to {cw}x{ch}: the canvas is smaller; resize first"
            )));
        }
        crate::raster::check_image_size(cw, ch)
            .map_err(|m| OpsError::Unfit(format!("cannot pad a {w}x{h} image to {cw}x{ch}: {m}")))?;
        let (x, y) = s.anchor.place(cw, ch, w, h, 0);
        let c = s.color;
        // Copy, not blend: the image's own pixels (and alpha) are kept as they are.
        let canvas = match img {
            Raster::Rgb(src) if c.a == 255 => {
                let mut dst = RgbImage::from_pixel(cw, ch, image::Rgb([c.r, c.g, c.b]));
                image::imageops::replace(&mut dst, src, x, y);
                Raster::Rgb(dst)
            }
            _ => {
                let mut dst = RgbaImage::from_pixel(cw, ch, image::Rgba([c.r, c.g, c.b, c.a]));
                image::imageops::replace(&mut dst, &img.to_rgba(), x, y);
                Raster::Rgba(dst)
            }
        };
        let mut p = Produced::new(canvas);
        p.rendition = s.rendition.clone().or_else(|| s.aspect.map(|a| a.name()));
        p.detail.insert("offset".into(), serde_json::json!([x, y]));
        Ok(p)
    }
}

#[async_trait]
impl Step for PadStep {
    image_to_image!("pad");

    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let me = self.clone();
        map_images(
            inputs,
            ctx,
            "pad",
            record(&self.s),
            self.s.output.clone(),
            move |img, _| Ok(vec![me.apply(&img)?]),
        )
        .await
    }
}
