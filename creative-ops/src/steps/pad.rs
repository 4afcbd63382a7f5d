use async_trait::async_trait;
use image::{RgbImage, RgbaImage};
use serde::{Deserialize, Serialize};

use creative_core::{Artifact, MediaKind, Step, StepCtx, StepError, StepInputs};

use super::{image_to_image, map_images, record, Produced};
use crate::color::Color;
use crate::error::OpsError;
use crate::geometry::{Anchor, Aspect};
use crate::raster::{EncodeSettings, Raster, RasterRef};

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

    /// Apply to one decoded image (a `&Raster` or a borrowed view).
    pub fn apply<'a>(&self, img: impl Into<RasterRef<'a>>) -> Result<Produced, OpsError> {
        let img = img.into();
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
        let canvas = paste(img, cw, ch, x, y, s.color)?;
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
            move |img, _| Ok(vec![me.apply(img.view())?]),
        )
        .await
    }
}

/// `img` copied (not blended: its own pixels and alpha are kept as they are)
/// onto a `cw`x`ch` canvas of `c` at (`x`, `y`), clipped to the canvas. The
/// canvas is RGB when both the image and the colour are opaque, else RGBA.
fn paste(img: RasterRef<'_>, cw: u32, ch: u32, x: i64, y: i64, c: Color) -> Result<Raster, OpsError> {
    let rgb = !img.has_alpha() && c.a == 255;
    let (ic, oc) = (if img.has_alpha() { 4 } else { 3 }, if rgb { 3 } else { 4 });
    let fill: &[u8] = if rgb { &[c.r, c.g, c.b] } else { &[c.r, c.g, c.b, c.a] };
    let mut out = fill.repeat(cw as usize * ch as usize);
    // The columns and rows of the image that land on the canvas.
    let span = |at: i64, len: u32, outer: u32| -> (usize, usize, usize) {
        let first = (-at).clamp(0, i64::from(len)) as usize;
        let last = (i64::from(outer) - at).clamp(0, i64::from(len)) as usize;
        (first, last.max(first), (at + first as i64).max(0) as usize)
    };
    let (x0, x1, dx) = span(x, img.width(), cw);
    let (y0, y1, dy) = span(y, img.height(), ch);
    let (iw, ow) = (img.width() as usize, cw as usize);
    for (row, oy) in (y0..y1).zip(dy..) {
        let src = &img.data()[(row * iw + x0) * ic..(row * iw + x1) * ic];
        let dst = &mut out[(oy * ow + dx) * oc..(oy * ow + dx + (x1 - x0)) * oc];
        if ic == oc {
            dst.copy_from_slice(src);
        } else {
            for (d, p) in dst.chunks_exact_mut(4).zip(src.chunks_exact(3)) {
                d[..3].copy_from_slice(p);
                d[3] = 255;
            }
        }
    }
    let bad = || OpsError::Worker(format!("pad: pixel buffer does not match {cw}x{ch}"));
    Ok(if rgb {
        Raster::Rgb(RgbImage::from_raw(cw, ch, out).ok_or_else(bad)?)
    } else {
        Raster::Rgba(RgbaImage::from_raw(cw, ch, out).ok_or_else(bad)?)
    })
}
