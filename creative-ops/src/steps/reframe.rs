use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use creative_core::{Artifact, MediaKind, Step, StepCtx, StepError, StepInputs};

use super::{image_to_image, map_images, record, Produced};
use crate::attention::{self, Attention};
use crate::error::OpsError;
use crate::geometry::Aspect;
use crate::raster::{EncodeSettings, Filter, RasterRef};

/// Settings of the `reframe` step: cut the largest window of an aspect ratio,
/// placed by an attention measure so the subject stays in frame, and optionally
/// scale it.
///
/// ```toml
/// [[steps]]
/// name = "story"
/// kind = "reframe"
/// inputs = ["hero"]
/// aspect = "9:16"          # 9:16, 9x16 or 0.5625
/// # aspect_var = "aspect"  # or per job: the aspect in this job variable
/// attention = "entropy"    # centre | entropy | edges (default entropy)
/// width = 1080             # optional output size; with one side the other
/// height = 1920            # follows the aspect; both must agree with it (1%)
/// filter = "lanczos3"
/// rendition = "story"      # default: the aspect's name, e.g. "9x16"
/// output = { format = "jpeg", quality = 88 }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReframeSettings {
    /// Target aspect ratio (the fallback when `aspect_var` is set).
    #[serde(default = "square")]
    pub aspect: Aspect,
    /// Name of a job variable that holds the aspect ratio for that job (a
    /// campaign whose `channel` advances together with an `aspect`); a job
    /// without the variable uses `aspect`. With it, give at most one of `width`
    /// and `height`, since the other follows each job's aspect.
    #[serde(default)]
    pub aspect_var: Option<String>,
    /// Where the window goes.
    #[serde(default)]
    pub attention: Attention,
    /// Output width; `None` keeps the crop's size (or follows `height`).
    #[serde(default)]
    pub width: Option<u32>,
    /// Output height; `None` keeps the crop's size (or follows `width`).
    #[serde(default)]
    pub height: Option<u32>,
    /// Resampling filter.
    #[serde(default)]
    pub filter: Filter,
    /// Rendition name; default the aspect's name (`9x16`).
    #[serde(default)]
    pub rendition: Option<String>,
    /// Output encoding.
    #[serde(default)]
    pub output: EncodeSettings,
}

fn check_size(aspect: Aspect, width: Option<u32>, height: Option<u32>) -> Result<(), OpsError> {
    for (field, v) in [("width", width), ("height", height)] {
        if v == Some(0) {
            return Err(OpsError::settings(field, "must be at least 1"));
        }
        crate::steps::check_side(field, v)?;
    }
    if let (Some(w), Some(h)) = (width, height) {
        if !aspect.matches(w, h, 0.01) {
            return Err(OpsError::settings(
                "height",
                format!("{w}x{h} is not {aspect} (within 1%); give one side and the other follows"),
            ));
        }
    }
    Ok(())
}

/// Reframe one image: returns the output and the crop rectangle used.
pub(crate) fn reframe(
    img: RasterRef<'_>,
    thumb: Option<&attention::Thumb>,
    aspect: Aspect,
    attention: Attention,
    width: Option<u32>,
    height: Option<u32>,
    filter: Filter,
) -> Result<Produced, OpsError> {
    let (cw, ch) = aspect.largest_in(img.width(), img.height());
    let rect = match thumb {
        Some(t) => attention::place_with(Some(t), img.width(), img.height(), cw, ch, attention),
        None => attention::place(img, cw, ch, attention),
    };
    let (tw, th) = match (width, height) {
        (Some(w), Some(h)) => (w, h),
        (Some(w), None) => (w, ((f64::from(w) / aspect.ratio()).round() as u32).max(1)),
        (None, Some(h)) => (((f64::from(h) * aspect.ratio()).round() as u32).max(1), h),
        (None, None) => (cw, ch),
    };
    let mut p = Produced::new(img.resize(Some(rect), tw, th, filter)?);
    p.rendition = Some(aspect.name());
    p.detail
        .insert("crop".into(), serde_json::to_value(rect).unwrap_or_default());
    Ok(p)
}

/// Reframe images to an aspect ratio, keeping the subject in frame.
#[derive(Debug, Clone)]
pub struct ReframeStep {
    s: ReframeSettings,
}

impl ReframeStep {
    /// Build from settings, checking them.
    pub fn new(s: ReframeSettings) -> Result<Self, OpsError> {
        if s.aspect_var.is_some() && s.width.is_some() && s.height.is_some() {
            return Err(OpsError::settings(
                "aspect_var",
                "with a per-job aspect give at most one of width and height",
            ));
        }
        check_size(s.aspect, s.width, s.height)?;
        s.output.validate()?;
        Ok(ReframeStep { s })
    }

    /// The aspect for a job: its `aspect_var` variable when set and present.
    pub fn aspect_for(&self, job: &creative_core::Job) -> Result<Aspect, OpsError> {
        match &self.s.aspect_var {
            Some(var) => match job.var_str(var) {
                Some(v) => v.parse().map_err(|e: crate::geometry::AspectParseError| {
                    OpsError::settings("aspect_var", format!("job variable `{var}`: {e}"))
                }),
                None => Ok(self.s.aspect),
            },
            None => Ok(self.s.aspect),
        }
    }

    /// Apply to one decoded image (a `&Raster` or a borrowed view).
    pub fn apply<'a>(&self, img: impl Into<RasterRef<'a>>) -> Result<Produced, OpsError> {
        self.apply_with(img, self.s.aspect)
    }

    /// Apply to one decoded image with a given aspect.
    pub fn apply_with<'a>(&self, img: impl Into<RasterRef<'a>>, aspect: Aspect) -> Result<Produced, OpsError> {
        let img = img.into();
        let s = &self.s;
        let mut p = reframe(img, None, aspect, s.attention, s.width, s.height, s.filter)?;
        if let Some(r) = &s.rendition {
            p.rendition = Some(r.clone());
        }
        Ok(p)
    }
}

#[async_trait]
impl Step for ReframeStep {
    image_to_image!("reframe");

    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let aspect = self.aspect_for(&ctx.job)?;
        let me = self.clone();
        map_images(
            inputs,
            ctx,
            "reframe",
            record(&self.s),
            self.s.output.clone(),
            move |img, _| Ok(vec![me.apply_with(img.view(), aspect)?]),
        )
        .await
    }
}

fn square() -> Aspect {
    Aspect::new(1.0, 1.0).expect("1:1 is an aspect")
}

/// One rendition of a `renditions` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "a table such as { aspect = \"9:16\", name = \"story\", width = 1080 }"
)]
pub struct RenditionSpec {
    /// Name for `Meta.extra.rendition`; default the aspect's name (`9x16`).
    #[serde(default)]
    pub name: Option<String>,
    /// Aspect ratio.
    pub aspect: Aspect,
    /// Output width (see `reframe`).
    #[serde(default)]
    pub width: Option<u32>,
    /// Output height (see `reframe`).
    #[serde(default)]
    pub height: Option<u32>,
}

/// Settings of the `renditions` step: several reframes of each input from one
/// decode, one output per rendition, in the order given.
///
/// ```toml
/// [[steps]]
/// name = "channels"
/// kind = "renditions"
/// inputs = ["hero"]
/// attention = "entropy"
/// renditions = [
///   { aspect = "1:1",  width = 1080 },
///   { aspect = "9:16", width = 1080 },
///   { aspect = "16:9", width = 1920, name = "landscape" },
/// ]
/// output = { format = "jpeg", quality = 88 }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenditionsSettings {
    /// The renditions.
    pub renditions: Vec<RenditionSpec>,
    /// Where each window goes (default entropy).
    #[serde(default)]
    pub attention: Attention,
    /// Resampling filter.
    #[serde(default)]
    pub filter: Filter,
    /// Output encoding, shared by all renditions.
    #[serde(default)]
    pub output: EncodeSettings,
}

/// Make several renditions (1:1, 9:16, 16:9...) of each input image.
#[derive(Debug, Clone)]
pub struct RenditionsStep {
    s: RenditionsSettings,
}

impl RenditionsStep {
    /// Build from settings, checking them.
    pub fn new(s: RenditionsSettings) -> Result<Self, OpsError> {
        if s.renditions.is_empty() {
            return Err(OpsError::settings("renditions", "list at least one rendition"));
        }
        let mut names = std::collections::BTreeSet::new();
        for r in &s.renditions {
            check_size(r.aspect, r.width, r.height)?;
            let name = r.name.clone().unwrap_or_else(|| r.aspect.name());
            if !names.insert(name.clone()) {
                return Err(OpsError::settings(
                    "renditions",
                    format!("two renditions are named `{name}`; give them distinct `name`s"),
                ));
            }
        }
        s.output.validate()?;
        Ok(RenditionsStep { s })
    }

    /// Apply to one decoded image (a `&Raster` or a borrowed view): one output
    /// per rendition.
    pub fn apply<'a>(&self, img: impl Into<RasterRef<'a>>) -> Result<Vec<Produced>, OpsError> {
        let img = img.into();
        // One attention thumbnail serves every rendition of the image.
        let thumb = match self.s.attention {
            Attention::Centre => None,
            _ => attention::Thumb::of(img),
        };
        self.s
            .renditions
            .iter()
            .map(|r| {
                let mut p = reframe(
                    img,
                    thumb.as_ref(),
                    r.aspect,
                    self.s.attention,
                    r.width,
                    r.height,
                    self.s.filter,
                )?;
                if let Some(n) = &r.name {
                    p.rendition = Some(n.clone());
                }
                Ok(p)
            })
            .collect()
    }
}

#[async_trait]
impl Step for RenditionsStep {
    image_to_image!("renditions");

    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let me = self.clone();
        map_images(
            inputs,
            ctx,
            "renditions",
            record(&self.s),
            self.s.output.clone(),
            move |img, _| me.apply(img.view()),
        )
        .await
    }
}
