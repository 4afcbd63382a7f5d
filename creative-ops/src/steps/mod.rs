//! Transform steps: local, deterministic image operations.
//!
//! Each step decodes every image input, applies its operation and encodes the
//! result, on tokio's blocking pool (one task per input, so the inputs of a step
//! are processed in parallel). Every output carries provenance (this step's name,
//! the input as parent, the settings and any resolved values such as the crop
//! rectangle an attention reframe chose) and `Meta` (width, height,
//! `extra.rendition`).

mod convert;
mod crop;
mod metadata;
mod overlay;
mod pad;
mod reframe;
mod resize;
mod watermark;

use std::sync::Arc;

use serde_json::{Map, Value};

use creative_core::{Artifact, ArtifactId, MediaKind, Meta, Provenance, StepCtx, StepError, StepInputs};

use crate::error::OpsError;
use crate::raster::{Decoded, EncodeSettings, Format, Raster};

pub use convert::{ConvertSettings, ConvertStep};
pub use crop::{CropSettings, CropStep};
pub use metadata::{MetadataMode, MetadataSettings, MetadataStep};
pub use overlay::{OverlaySettings, OverlayStep, TextBox};
pub use pad::{PadSettings, PadStep};
pub use reframe::{ReframeSettings, ReframeStep, RenditionSpec, RenditionsSettings, RenditionsStep};
pub use resize::{ResizeMode, ResizeSettings, ResizeStep};
pub use watermark::{WatermarkSettings, WatermarkStep};

pub(crate) const IMAGE: &[MediaKind] = &[MediaKind::Image];

/// One image an operation produced, before encoding.
#[derive(Debug, Clone)]
pub struct Produced {
    /// The pixels.
    pub raster: Raster,
    /// The rendition name for `Meta::extra.rendition`; `None` keeps the input's.
    pub rendition: Option<String>,
    /// Values resolved while running (crop rectangle, font size...), recorded in
    /// provenance next to the settings.
    pub detail: Map<String, Value>,
}

impl Produced {
    /// Pixels with no rendition and no details.
    pub fn new(raster: Raster) -> Self {
        Produced {
            raster,
            rendition: None,
            detail: Map::new(),
        }
    }
}

/// What every image step shares: its kind, settings (as recorded) and encoding.
pub(crate) struct OpInfo {
    pub kind: &'static str,
    pub settings: Value,
    pub output: EncodeSettings,
    pub extra_parents: Vec<ArtifactId>,
}

/// The image inputs of a step, or an error naming the step when there are none.
pub(crate) fn image_inputs<'a>(
    inputs: impl Iterator<Item = &'a Artifact>,
    ctx: &StepCtx,
    kind: &str,
) -> Result<Vec<Artifact>, StepError> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for a in inputs {
        if a.media().kind() == MediaKind::Image {
            out.push(a.clone());
        } else {
            seen.push(a.media().to_string());
        }
    }
    if out.is_empty() {
        return Err(StepError::invalid_input(format!(
            "step `{}` ({kind}) needs an image input; got [{}]",
            ctx.step,
            seen.join(", ")
        )));
    }
    Ok(out)
}

/// The shape every image-to-image step shares: it accepts and produces images
/// and needs at least one input.
macro_rules! image_to_image {
    ($kind:literal) => {
        fn kind(&self) -> &str {
            $kind
        }
        fn accepts(&self) -> Option<&[MediaKind]> {
            Some(crate::steps::IMAGE)
        }
        fn produces(&self) -> Option<MediaKind> {
            Some(MediaKind::Image)
        }
        fn min_inputs(&self) -> usize {
            1
        }
    };
}
pub(crate) use image_to_image;

/// Run `op` on each image input of a step (every input, in order; see
/// [`Decoded`] for how it gets the pixels), recording
/// `settings` and encoding with `output`. Fails naming the step when there is no
/// image input.
pub(crate) async fn map_images<F>(
    inputs: &StepInputs,
    ctx: &StepCtx,
    kind: &'static str,
    settings: Value,
    output: EncodeSettings,
    op: F,
) -> Result<Vec<Artifact>, StepError>
where
    F: Fn(Decoded, &Artifact) -> Result<Vec<Produced>, OpsError> + Send + Sync + 'static,
{
    let images = image_inputs(all(inputs), ctx, kind)?;
    let info = OpInfo {
        kind,
        settings,
        output,
        extra_parents: Vec::new(),
    };
    run_each(images, ctx, info, op).await
}

/// Run `op` on every input on the blocking pool and build the output artifacts.
pub(crate) async fn run_each<F>(
    inputs: Vec<Artifact>,
    ctx: &StepCtx,
    info: OpInfo,
    op: F,
) -> Result<Vec<Artifact>, StepError>
where
    F: Fn(Decoded, &Artifact) -> Result<Vec<Produced>, OpsError> + Send + Sync + 'static,
{
    let op = Arc::new(op);
    let info = Arc::new(info);
    let step: Arc<str> = ctx.step.clone();
    let mut handles = Vec::with_capacity(inputs.len());
    for input in inputs {
        if ctx.cancel.is_cancelled() {
            return Err(StepError::cancelled());
        }
        let (op, info, step) = (op.clone(), info.clone(), step.clone());
        handles.push(tokio::task::spawn_blocking(move || process(&input, &*op, &info, &step)));
    }
    let mut out = Vec::new();
    for h in handles {
        let produced = h
            .await
            .map_err(|e| StepError::from(OpsError::Worker(e.to_string())))??;
        out.extend(produced);
    }
    if ctx.cancel.is_cancelled() {
        return Err(StepError::cancelled());
    }
    Ok(out)
}

fn process<F>(input: &Artifact, op: &F, info: &OpInfo, step: &str) -> Result<Vec<Artifact>, StepError>
where
    F: Fn(Decoded, &Artifact) -> Result<Vec<Produced>, OpsError>,
{
    let what = format!("{} ({})", input.id().short(), input.media());
    // Borrowed when the input's pixels are kept: an operation that only reads
    // them (resize, crop) never copies the whole image.
    let (decoded, in_format) = Decoded::of_artifact(input, &what)?;
    let format = info.output.resolve(in_format);
    op(decoded, input)?
        .into_iter()
        .map(|p| {
            let bytes = p.raster.encode(format, &info.output)?;
            let a = build_artifact(input, info, step, format, bytes, &p);
            // The next step, gate or thumbnail on this output reuses these
            // pixels instead of decoding what was just encoded. Only for lossless
            // outputs: a JPEG's or lossy WebP's bytes decode to other pixels.
            Ok(if format == Format::Png {
                a.with_pixels(p.raster.into_pixels())
            } else {
                a
            })
        })
        .collect()
}

fn build_artifact(
    input: &Artifact,
    info: &OpInfo,
    step: &str,
    format: Format,
    bytes: Vec<u8>,
    p: &Produced,
) -> Artifact {
    let mut extra = input.meta().extra.clone();
    if let Some(r) = &p.rendition {
        extra.insert("rendition".into(), Value::String(r.clone()));
    }
    let meta = Meta {
        width: Some(p.raster.width()),
        height: Some(p.raster.height()),
        duration_s: None,
        extra,
    };
    let mut params = Map::new();
    params.insert("op".into(), Value::String(info.kind.into()));
    params.insert("settings".into(), info.settings.clone());
    params.insert("format".into(), Value::String(format.as_str().into()));
    for (k, v) in &p.detail {
        params.insert(k.clone(), v.clone());
    }
    let mut parents = vec![input.id().clone()];
    parents.extend(info.extra_parents.iter().cloned());
    let provenance = Provenance {
        step: step.to_string(),
        params: Value::Object(params),
        parents,
        ..Provenance::default()
    };
    Artifact::new(format.media(), bytes)
        .with_meta(meta)
        .with_provenance(provenance)
}

/// The settings as recorded in provenance.
pub(crate) fn record<S: serde::Serialize>(s: &S) -> Value {
    serde_json::to_value(s).unwrap_or(Value::Null)
}

/// The inputs as a flat list (for steps without special inputs).
pub(crate) fn all(inputs: &StepInputs) -> impl Iterator<Item = &Artifact> {
    inputs.all()
}

/// A target side from a step's settings, within the engine's image limits.
pub(crate) fn check_side(field: &'static str, v: Option<u32>) -> Result<(), OpsError> {
    match v {
        Some(v) if v > creative_core::limits::MAX_IMAGE_SIDE => Err(OpsError::settings(
            field,
            format!(
                "{v} is out of range: allowed 1 to {}",
                creative_core::limits::MAX_IMAGE_SIDE
            ),
        )),
        _ => Ok(()),
    }
}
