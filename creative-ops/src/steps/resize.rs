use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use creative_core::{Artifact, MediaKind, Step, StepCtx, StepError, StepInputs};

use super::{image_to_image, map_images, record, Produced};
use crate::attention::{self, Attention};
use crate::error::OpsError;
use crate::geometry::Aspect;
use crate::raster::{EncodeSettings, Filter, RasterRef};

/// How `resize` treats the aspect ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// Scale to fit inside `width` x `height`, keeping the aspect ratio (the
    /// output may be smaller on one side). With only one of the two, scale to it.
    #[default]
    Fit,
    /// Scale and crop to fill exactly `width` x `height`, keeping the aspect ratio;
    /// the cut is placed by `attention`.
    Fill,
    /// Stretch to exactly `width` x `height`.
    Exact,
}

/// Settings of the `resize` step.
///
/// ```toml
/// [[steps]]
/// name = "thumb"
/// kind = "resize"
/// inputs = ["hero"]
/// width = 512            # pixels; fit needs at least one, fill and exact both
/// height = 512
/// mode = "fit"           # fit | fill | exact (default fit)
/// filter = "lanczos3"    # nearest | box | bilinear | catmull_rom | mitchell | lanczos3
/// attention = "centre"   # for fill: centre | entropy | edges (default centre)
/// upscale = true         # allow enlarging (default true)
/// rendition = "thumb"    # optional Meta.extra.rendition of the output
/// output = { format = "jpeg", quality = 85 }   # optional, see EncodeSettings
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResizeSettings {
    /// Target width in pixels.
    #[serde(default)]
    pub width: Option<u32>,
    /// Target height in pixels.
    #[serde(default)]
    pub height: Option<u32>,
    /// How the aspect ratio is treated.
    #[serde(default)]
    pub mode: ResizeMode,
    /// Resampling filter.
    #[serde(default)]
    pub filter: Filter,
    /// Where `fill` cuts.
    #[serde(default = "centre")]
    pub attention: Attention,
    /// Whether the image may be enlarged.
    #[serde(default = "yes")]
    pub upscale: bool,
    /// Rendition name for the output's metadata.
    #[serde(default)]
    pub rendition: Option<String>,
    /// Output encoding.
    #[serde(default)]
    pub output: EncodeSettings,
}

fn centre() -> Attention {
    Attention::Centre
}

fn yes() -> bool {
    true
}

/// Resize images (fit, fill or exact) with the SIMD resizer.
#[derive(Debug, Clone)]
pub struct ResizeStep {
    s: ResizeSettings,
}

impl ResizeStep {
    /// Build from settings, checking them.
    pub fn new(s: ResizeSettings) -> Result<Self, OpsError> {
        for (field, v) in [("width", s.width), ("height", s.height)] {
            if v == Some(0) {
                return Err(OpsError::settings(field, "must be at least 1"));
            }
            crate::steps::check_side(field, v)?;
        }
        match s.mode {
            ResizeMode::Fit if s.width.is_none() && s.height.is_none() => {
                return Err(OpsError::settings("width", "fit needs `width`, `height` or both"))
            }
            ResizeMode::Fill | ResizeMode::Exact if s.width.is_none() || s.height.is_none() => {
                return Err(OpsError::settings(
                    "width",
                    "fill and exact need both `width` and `height`",
                ))
            }
            _ => {}
        }
        s.output.validate()?;
        Ok(ResizeStep { s })
    }

    /// Apply to one decoded image (a `&Raster` or a borrowed view).
    pub fn apply<'a>(&self, img: impl Into<RasterRef<'a>>) -> Result<Produced, OpsError> {
        let img = img.into();
        let s = &self.s;
        let (w, h) = (img.width(), img.height());
        let mut p = match s.mode {
            ResizeMode::Fit => {
                let sx = s.width.map(|tw| f64::from(tw) / f64::from(w));
                let sy = s.height.map(|th| f64::from(th) / f64::from(h));
                let mut scale = match (sx, sy) {
                    (Some(a), Some(b)) => a.min(b),
                    (Some(a), None) | (None, Some(a)) => a,
                    (None, None) => 1.0,
                };
                if !s.upscale {
                    scale = scale.min(1.0);
                }
                let tw = ((f64::from(w) * scale).round() as u32).max(1);
                let th = ((f64::from(h) * scale).round() as u32).max(1);
                Produced::new(img.resize(None, tw, th, s.filter)?)
            }
            ResizeMode::Fill => {
                let (tw, th) = (s.width.unwrap_or(w), s.height.unwrap_or(h));
                let aspect = Aspect::new(f64::from(tw), f64::from(th))
                    .ok_or_else(|| OpsError::settings("width", "zero size"))?;
                let (cw, ch) = aspect.largest_in(w, h);
                let rect = attention::place(img, cw, ch, s.attention);
                let (tw, th) = if !s.upscale && (tw > cw || th > ch) {
                    (cw, ch)
                } else {
                    (tw, th)
                };
                let mut p = Produced::new(img.resize(Some(rect), tw, th, s.filter)?);
                p.detail
                    .insert("crop".into(), serde_json::to_value(rect).unwrap_or_default());
                p
            }
            ResizeMode::Exact => {
                let (tw, th) = (s.width.unwrap_or(w), s.height.unwrap_or(h));
                Produced::new(img.resize(None, tw, th, s.filter)?)
            }
        };
        p.rendition.clone_from(&s.rendition);
        Ok(p)
    }
}

#[async_trait]
impl Step for ResizeStep {
    image_to_image!("resize");

    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let me = self.clone();
        map_images(
            inputs,
            ctx,
            "resize",
            record(&self.s),
            self.s.output.clone(),
            move |img, _| Ok(vec![me.apply(img.view())?]),
        )
        .await
    }
}
