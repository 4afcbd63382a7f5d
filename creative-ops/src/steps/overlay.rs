use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use creative_core::{Artifact, MediaKind, Step, StepCtx, StepError, StepInputs, Template};

use super::{image_inputs, record, run_each, OpInfo, Produced};
use crate::caption::{self, Align, FitRules, Font, VAlign};
use crate::color::Color;
use crate::error::OpsError;
use crate::geometry::Rect;
use crate::raster::{EncodeSettings, Raster};

/// A box given as fractions (0..=1) of the image's width and height, so one
/// setting works for every rendition.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "a table such as { x = 0.1, y = 0.7, width = 0.8, height = 0.2 } (fractions of the image)"
)]
pub struct TextBox {
    /// Left edge.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Width.
    pub width: f64,
    /// Height.
    pub height: f64,
}

impl Default for TextBox {
    fn default() -> Self {
        // A band across the lower fifth, the usual place for a caption.
        TextBox {
            x: 0.05,
            y: 0.75,
            width: 0.9,
            height: 0.2,
        }
    }
}

impl TextBox {
    pub(crate) fn validate(&self) -> Result<(), OpsError> {
        let ok = |v: f64| (0.0..=1.0).contains(&v);
        if !(ok(self.x) && ok(self.y) && ok(self.width) && ok(self.height))
            || self.x + self.width > 1.0 + 1e-9
            || self.y + self.height > 1.0 + 1e-9
            || self.width <= 0.0
            || self.height <= 0.0
        {
            return Err(OpsError::settings(
                "box",
                "x, y, width, height are fractions of the image (0..=1) and the box must lie inside it",
            ));
        }
        Ok(())
    }

    pub(crate) fn pixels(&self, w: u32, h: u32) -> Rect {
        let x = (self.x * f64::from(w)).round() as u32;
        let y = (self.y * f64::from(h)).round() as u32;
        let bw = ((self.width * f64::from(w)).round() as u32).min(w - x.min(w)).max(1);
        let bh = ((self.height * f64::from(h)).round() as u32).min(h - y.min(h)).max(1);
        Rect::new(x.min(w - 1), y.min(h - 1), bw, bh)
    }
}

/// Settings of the `overlay` step: draw a caption from a template over the job's
/// variables, wrapped and shrunk to fit a box.
///
/// The template sees the job's variables, plus `input_text` when a text artifact
/// is among the inputs (a caption written by a text step).
///
/// ```toml
/// [[steps]]
/// name = "captioned"
/// kind = "overlay"
/// inputs = ["channels", "tagline"]   # images, and optionally a text step
/// text = "{{ product | upper }}: {{ input_text }}"
/// box = { x = 0.05, y = 0.75, width = 0.9, height = 0.2 }   # fractions; this is the default
/// color = "#ffffff"
/// background = "#00000099"   # optional fill behind the text
/// align = "centre"           # left | centre | right
/// valign = "middle"          # top | middle | bottom
/// max_font_px = 96           # default: the box height
/// min_font_px = 12           # smaller than this and the step fails
/// line_spacing = 1.15
/// padding = 0.08             # inside the box, fraction of its smaller side
/// font = "fonts/NotoSansJP-Regular.otf"   # default: bundled DejaVu Sans
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OverlaySettings {
    /// The caption template.
    pub text: String,
    /// Where the caption goes.
    #[serde(default, rename = "box")]
    pub text_box: TextBox,
    /// Text colour (alpha allowed).
    #[serde(default = "white")]
    pub color: Color,
    /// Fill behind the text, over the whole box.
    #[serde(default)]
    pub background: Option<Color>,
    /// Horizontal alignment.
    #[serde(default)]
    pub align: Align,
    /// Vertical alignment.
    #[serde(default)]
    pub valign: VAlign,
    /// Largest font size in pixels; default the box's inner height.
    #[serde(default)]
    pub max_font_px: Option<f32>,
    /// Smallest font size in pixels.
    #[serde(default = "min_px")]
    pub min_font_px: f32,
    /// Line height as a multiple of the font's.
    #[serde(default = "spacing")]
    pub line_spacing: f32,
    /// Inner padding, fraction of the box's smaller side.
    #[serde(default = "padding")]
    pub padding: f64,
    /// A font file (resolved against the spec's folder); default the bundled font.
    #[serde(default)]
    pub font: Option<String>,
    /// Rendition name for the output's metadata; default keep the input's.
    #[serde(default)]
    pub rendition: Option<String>,
    /// Output encoding.
    #[serde(default)]
    pub output: EncodeSettings,
}

fn white() -> Color {
    Color::WHITE
}
fn min_px() -> f32 {
    12.0
}
fn spacing() -> f32 {
    1.15
}
fn padding() -> f64 {
    0.08
}

/// Draw a templated caption on images.
#[derive(Debug, Clone)]
pub struct OverlayStep {
    s: Arc<OverlaySettings>,
    template: Template,
    font: Font,
}

impl OverlayStep {
    /// Build from settings with the font already loaded (see
    /// [`Font::from_file`]); `None` uses the bundled font.
    pub fn new(s: OverlaySettings, font: Option<Font>) -> Result<Self, OpsError> {
        s.text_box.validate()?;
        if !(s.min_font_px >= 1.0 && s.min_font_px.is_finite()) {
            return Err(OpsError::settings("min_font_px", "must be at least 1"));
        }
        if let Some(m) = s.max_font_px {
            if !(m >= s.min_font_px && m.is_finite()) {
                return Err(OpsError::settings("max_font_px", "must be at least `min_font_px`"));
            }
        }
        if !(0.5..=4.0).contains(&s.line_spacing) {
            return Err(OpsError::settings("line_spacing", "must be within 0.5..=4"));
        }
        if !(0.0..0.5).contains(&s.padding) {
            return Err(OpsError::settings("padding", "must be within 0..0.5"));
        }
        s.output.validate()?;
        let template = Template::new(&s.text).map_err(|e| OpsError::settings("text", e.to_string()))?;
        let font = match font {
            Some(f) => f,
            None => Font::bundled()?,
        };
        Ok(OverlayStep {
            s: Arc::new(s),
            template,
            font,
        })
    }

    /// Draw `text` on one decoded image.
    pub fn apply(&self, mut img: Raster, text: &str) -> Result<Produced, OpsError> {
        let s = &self.s;
        let area = s.text_box.pixels(img.width(), img.height());
        if let Some(bg) = s.background {
            for y in area.y..area.y + area.height {
                for x in area.x..area.x + area.width {
                    img.blend_pixel(x, y, [bg.r, bg.g, bg.b], bg.a);
                }
            }
        }
        let pad = (s.padding * f64::from(area.width.min(area.height))).round() as u32;
        let inner = Rect::new(
            area.x + pad,
            area.y + pad,
            area.width.saturating_sub(2 * pad).max(1),
            area.height.saturating_sub(2 * pad).max(1),
        );
        let rules = FitRules {
            max_px: s.max_font_px.unwrap_or(inner.height as f32),
            min_px: s.min_font_px,
            line_spacing: s.line_spacing,
        };
        let layout = caption::fit(&self.font, text, inner.width, inner.height, &rules)?;
        caption::draw(&mut img, &self.font, &layout, inner, s.color, s.align, s.valign);
        let mut p = Produced::new(img);
        p.rendition.clone_from(&s.rendition);
        p.detail.insert("text".into(), text.into());
        p.detail.insert("font".into(), self.font.name().into());
        p.detail.insert("font_px".into(), f64::from(layout.px).into());
        p.detail.insert("lines".into(), layout.lines.len().into());
        Ok(p)
    }
}

#[async_trait]
impl Step for OverlayStep {
    fn kind(&self) -> &str {
        "overlay"
    }
    fn produces(&self) -> Option<MediaKind> {
        Some(MediaKind::Image)
    }
    fn min_inputs(&self) -> usize {
        1
    }
    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let mut vars = (**ctx.job.vars()).clone();
        if let Some(t) = inputs.all().find_map(|a| a.text()) {
            vars.insert("input_text".into(), t.trim().into());
        }
        let text = self
            .template
            .render(&vars)
            .map_err(|e| StepError::template(format!("step `{}` (overlay): {e}", ctx.step)))?;
        let images = image_inputs(inputs.all(), ctx, "overlay")?;
        let info = OpInfo {
            kind: "overlay",
            settings: record(&*self.s),
            output: self.s.output.clone(),
            extra_parents: inputs
                .all()
                .filter(|a| a.text().is_some())
                .map(|a| a.id().clone())
                .collect(),
        };
        let me = self.clone();
        run_each(images, ctx, info, move |img, _| {
            Ok(vec![me.apply(img.into_raster(), &text)?])
        })
        .await
    }
}
