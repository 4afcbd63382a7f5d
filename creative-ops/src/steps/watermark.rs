use std::sync::Arc;

use async_trait::async_trait;
use image::RgbaImage;
use serde::{Deserialize, Serialize};

use creative_core::{Artifact, MediaKind, Step, StepCtx, StepError, StepInputs};

use super::{image_inputs, record, run_each, OpInfo, Produced};
use crate::error::OpsError;
use crate::geometry::Anchor;
use crate::raster::{EncodeSettings, Filter, Raster};

/// Settings of the `watermark` step: composite a logo over images. The logo is
/// a file (`path`) or the first image output of one of the step's inputs
/// (`from`, naming that input step); give exactly one.
///
/// ```toml
/// [[steps]]
/// name = "branded"
/// kind = "watermark"
/// inputs = ["captioned"]          # add "logo_step" and set from = "logo_step" to use an artifact
/// path = "brand/logo.png"         # resolved against the spec's folder
/// anchor = "bottom_right"         # top_left ... bottom_right (default bottom_right)
/// width = 0.2                     # logo width as a fraction of the image width
/// opacity = 0.8                   # 0..=1
/// margin = 0.03                   # fraction of the image's smaller side
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WatermarkSettings {
    /// Logo file.
    #[serde(default)]
    pub path: Option<String>,
    /// Input step whose first image is the logo.
    #[serde(default)]
    pub from: Option<String>,
    /// Where the logo goes.
    #[serde(default = "bottom_right")]
    pub anchor: Anchor,
    /// Logo width, fraction of the image width.
    #[serde(default = "width")]
    pub width: f64,
    /// Logo opacity.
    #[serde(default = "one")]
    pub opacity: f32,
    /// Distance from the edges, fraction of the image's smaller side.
    #[serde(default = "margin")]
    pub margin: f64,
    /// Output encoding.
    #[serde(default)]
    pub output: EncodeSettings,
}

fn bottom_right() -> Anchor {
    Anchor::BottomRight
}
fn width() -> f64 {
    0.2
}
fn one() -> f32 {
    1.0
}
fn margin() -> f64 {
    0.03
}

/// Composite a logo or watermark over images.
#[derive(Debug, Clone)]
pub struct WatermarkStep {
    s: Arc<WatermarkSettings>,
    logo: Option<Arc<Raster>>,
}

impl WatermarkStep {
    /// Build from settings; `logo` is the decoded `path` file (the registry
    /// factory loads it), `None` when the logo comes `from` an input.
    pub fn new(s: WatermarkSettings, logo: Option<Raster>) -> Result<Self, OpsError> {
        match (&s.path, &s.from, &logo) {
            (Some(_), None, Some(_)) | (None, Some(_), None) => {}
            (Some(_), Some(_), _) | (None, None, _) => {
                return Err(OpsError::settings("path", "give exactly one of `path` and `from`"))
            }
            (Some(p), None, None) => return Err(OpsError::settings("path", format!("logo `{p}` was not loaded"))),
            (None, Some(_), Some(_)) => return Err(OpsError::settings("from", "a logo was given along with `from`")),
        }
        if !(s.width > 0.0 && s.width <= 1.0) {
            return Err(OpsError::settings("width", "must be within (0, 1]"));
        }
        if !(0.0..=1.0).contains(&s.opacity) {
            return Err(OpsError::settings("opacity", "must be within 0..=1"));
        }
        if !(0.0..0.5).contains(&s.margin) {
            return Err(OpsError::settings("margin", "must be within 0..0.5"));
        }
        s.output.validate()?;
        Ok(WatermarkStep {
            s: Arc::new(s),
            logo: logo.map(Arc::new),
        })
    }

    /// Load a logo file.
    pub fn load_logo(path: &std::path::Path) -> Result<Raster, OpsError> {
        let bytes = std::fs::read(path).map_err(|e| OpsError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(Raster::decode(&bytes, &path.display().to_string())?.0)
    }

    /// Composite `logo` over one decoded image.
    pub fn apply(&self, mut img: Raster, logo: &Raster) -> Result<Produced, OpsError> {
        let s = &self.s;
        let (w, h) = (img.width(), img.height());
        let lw = ((s.width * f64::from(w)).round() as u32).max(1);
        let lh = ((f64::from(lw) * f64::from(logo.height()) / f64::from(logo.width())).round() as u32).max(1);
        let scaled: RgbaImage = logo.resize(None, lw, lh, Filter::Lanczos3)?.to_rgba();
        let m = (s.margin * f64::from(w.min(h))).round() as u32;
        let (x, y) = s.anchor.place(w, h, lw, lh, m);
        img.blend(&scaled, x, y, s.opacity);
        let mut p = Produced::new(img);
        p.detail.insert("logo_rect".into(), serde_json::json!([x, y, lw, lh]));
        Ok(p)
    }
}

#[async_trait]
impl Step for WatermarkStep {
    fn kind(&self) -> &str {
        "watermark"
    }
    fn produces(&self) -> Option<MediaKind> {
        Some(MediaKind::Image)
    }
    fn min_inputs(&self) -> usize {
        1
    }
    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let (logo, logo_id, targets): (Arc<Raster>, _, Vec<&Artifact>) = match (&self.logo, &self.s.from) {
            (Some(l), _) => (l.clone(), None, inputs.all().collect()),
            (None, Some(from)) => {
                let art = inputs
                    .from_step(from)
                    .and_then(|a| a.iter().find(|a| a.media().kind() == MediaKind::Image))
                    .ok_or_else(|| {
                        StepError::invalid_input(format!(
                            "step `{}` (watermark): input step `{from}` gave no image to use as the logo",
                            ctx.step
                        ))
                    })?
                    .clone();
                let what = format!("logo {} from `{from}`", art.id().short());
                let data = art.data().clone();
                let logo = tokio::task::spawn_blocking(move || Raster::decode(&data, &what).map(|r| r.0))
                    .await
                    .map_err(|e| StepError::from(OpsError::Worker(e.to_string())))??;
                let targets = inputs
                    .groups()
                    .iter()
                    .filter(|(name, _)| &**name != from.as_str())
                    .flat_map(|(_, a)| a.iter())
                    .collect();
                (Arc::new(logo), Some(art.id().clone()), targets)
            }
            (None, None) => return Err(StepError::internal("watermark without a logo")),
        };
        let images = image_inputs(targets.into_iter(), ctx, "watermark")?;
        let info = OpInfo {
            kind: "watermark",
            settings: record(&*self.s),
            output: self.s.output.clone(),
            extra_parents: logo_id.into_iter().collect(),
        };
        let me = self.clone();
        run_each(images, ctx, info, move |img, _| {
            Ok(vec![me.apply(img.into_raster(), &logo)?])
        })
        .await
    }
}
