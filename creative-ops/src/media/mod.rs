//! Audio and video: probing, steps and gates, driven through ffmpeg.
//!
//! ffmpeg and ffprobe are found once, when a spec is built ([`Ffmpeg::locate`]:
//! `CREATIVE_FFMPEG` / `CREATIVE_FFPROBE`, else `PATH`), so a missing tool fails
//! before any job runs, with an error that names it. Every run is a child
//! process in its own process group, killed when the run is cancelled (or the
//! step's future is dropped); long encodes report progress as engine
//! `Progress` events (provider `ffmpeg`). Inputs and outputs pass through a
//! scratch directory that is removed when the step ends.
//!
//! Every output is probed (an MP4 from its header, [`MediaInfo::from_mp4_header`];
//! anything else by ffprobe), so its `Meta` carries duration, resolution, frame
//! rate, codecs, sample rate and channels (see [`MediaInfo::record`]), and its
//! provenance the step's settings and resolved values (gain applied, crop
//! chosen).

pub mod audio;
pub mod ffmpeg;
pub mod gates;
pub mod probe;
pub mod video;

use std::ffi::OsString;
use std::sync::Arc;

use serde_json::{Map, Value};

use creative_core::{Artifact, EventKind, MediaKind, MediaType, Meta, Provenance, StepCtx, StepError, StepInputs};

use crate::error::OpsError;
use crate::raster::Raster;

pub use ffmpeg::{Control, Ffmpeg, Scratch, ENV_FFMPEG, ENV_FFPROBE};
pub use probe::MediaInfo;

pub(crate) const AUDIO: &[MediaKind] = &[MediaKind::Audio];
pub(crate) const VIDEO: &[MediaKind] = &[MediaKind::Video];
pub(crate) const AUDIO_VIDEO: &[MediaKind] = &[MediaKind::Audio, MediaKind::Video];

/// `video/webm`, which has no variant of its own in [`MediaType`].
pub fn webm() -> MediaType {
    MediaType::Other(Arc::from("video/webm"))
}

/// Arguments from string pieces and paths.
pub(crate) fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(items: I) -> Vec<OsString> {
    items.into_iter().map(Into::into).collect()
}

/// The inputs of a step of one media family, or an error naming the step.
pub(crate) fn inputs_of(
    inputs: &StepInputs,
    ctx: &StepCtx,
    kind: &str,
    want: MediaKind,
) -> Result<Vec<Artifact>, StepError> {
    let (mut out, mut seen) = (Vec::new(), Vec::new());
    for a in inputs.all() {
        if a.media().kind() == want {
            out.push(a.clone());
        } else {
            seen.push(a.media().to_string());
        }
    }
    if out.is_empty() {
        let want = match want {
            MediaKind::Audio => "an audio",
            MediaKind::Video => "a video",
            MediaKind::Text => "a text",
            _ => "an image",
        };
        return Err(StepError::invalid_input(format!(
            "step `{}` ({kind}) needs {want} input; got [{}]",
            ctx.step,
            seen.join(", ")
        )));
    }
    Ok(out)
}

/// A progress reporter that turns ffmpeg's figures into engine events.
pub(crate) fn progress_events(ctx: &StepCtx, stage: &str) -> impl Fn(u64, u64) + Send + Sync {
    let (job, step, stage) = (ctx.job.key().to_string(), ctx.step.to_string(), stage.to_string());
    let ctx = ctx.clone();
    move |done, total| {
        ctx.emit(EventKind::Progress {
            job: job.clone(),
            step: step.clone(),
            provider: "ffmpeg".into(),
            stage: stage.clone(),
            // Milliseconds of media written, of the expected total.
            done: done / 1000,
            total: total / 1000,
        })
    }
}

/// Write an artifact into the scratch directory as `name.<ext>`.
pub(crate) async fn stage(scratch: &Scratch, name: &str, a: &Artifact) -> Result<std::path::PathBuf, OpsError> {
    scratch
        .write(&format!("{name}.{}", a.media().extension()), a.data())
        .await
}

/// What one output of a media step is: its bytes, type, and what to record.
pub(crate) struct Made {
    pub media: MediaType,
    pub bytes: Vec<u8>,
    pub rendition: Option<String>,
    pub detail: Map<String, Value>,
}

/// Probe `made` and build the output artifact: `parents[0]`'s extra meta,
/// probed facts, provenance with the step, settings and details.
pub(crate) async fn finish(
    ff: &Ffmpeg,
    ctx: &StepCtx,
    kind: &str,
    settings: &Value,
    parents: &[&Artifact],
    made: Made,
) -> Result<Artifact, OpsError> {
    let mut extra = parents.first().map(|p| p.meta().extra.clone()).unwrap_or_default();
    if let Some(r) = &made.rendition {
        extra.insert("rendition".into(), Value::String(r.clone()));
    }
    let mut meta = Meta {
        extra,
        ..Meta::default()
    };
    let a = Artifact::new(made.media.clone(), made.bytes);
    if made.media.kind() != MediaKind::Image && made.media.kind() != MediaKind::Text {
        // An MP4's facts are in its header: reading them here spares an
        // ffprobe process per output (a renditions step makes several).
        let header = (made.media == MediaType::Mp4)
            .then(|| MediaInfo::from_mp4_header(a.data()))
            .flatten();
        let info = match header {
            Some(info) => info,
            None => ff.probe(&a, &ctx.cancel).await?,
        };
        info.record(&mut meta);
    }
    let mut params = Map::new();
    params.insert("op".into(), Value::String(kind.into()));
    params.insert("settings".into(), settings.clone());
    params.extend(made.detail);
    let provenance = Provenance {
        step: ctx.step.to_string(),
        params: Value::Object(params),
        parents: parents.iter().map(|p| p.id().clone()).collect(),
        ..Provenance::default()
    };
    Ok(a.with_meta(meta).with_provenance(provenance))
}

/// Decode audio to interleaved 32-bit float samples at `rate` Hz and
/// `channels` channels (ffmpeg resamples and remixes as needed).
pub(crate) async fn pcm(
    ff: &Ffmpeg,
    path: &std::path::Path,
    rate: u32,
    channels: u32,
    cancel: &creative_core::cancel::CancellationToken,
) -> Result<Vec<f32>, OpsError> {
    let mut a = args(["-i"]);
    a.push(path.into());
    a.extend(args([
        "-vn".to_string(),
        "-f".into(),
        "f32le".into(),
        "-ac".into(),
        channels.to_string(),
        "-ar".into(),
        rate.to_string(),
        "pipe:1".into(),
    ]));
    let bytes = ff.run(a, &Control::cancel_only(cancel)).await?;
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Decode frames of a video scaled to `w`x`h`, as 8-bit grey (`gray`) or RGB
/// (`rgb24`) planes, at `fps` frames a second (`None`: every frame). Returns
/// the raw frames.
pub(crate) async fn frames(
    ff: &Ffmpeg,
    path: &std::path::Path,
    w: u32,
    h: u32,
    fps: Option<f64>,
    rgb: bool,
    cancel: &creative_core::cancel::CancellationToken,
) -> Result<Vec<Vec<u8>>, OpsError> {
    let mut filter = String::new();
    if let Some(f) = fps {
        filter.push_str(&format!("fps={f},"));
    }
    filter.push_str(&format!("scale={w}:{h}:flags=area"));
    let pix = if rgb { "rgb24" } else { "gray" };
    let mut a = args(["-i"]);
    a.push(path.into());
    a.extend(args([
        "-an", "-vf", &filter, "-f", "rawvideo", "-pix_fmt", pix, "pipe:1",
    ]));
    let bytes = ff.run(a, &Control::cancel_only(cancel)).await?;
    let size = (w * h) as usize * if rgb { 3 } else { 1 };
    Ok(bytes.chunks_exact(size).map(<[u8]>::to_vec).collect())
}

/// One RGB frame as a raster.
pub(crate) fn rgb_raster(w: u32, h: u32, data: Vec<u8>) -> Result<Raster, OpsError> {
    image::RgbImage::from_raw(w, h, data)
        .map(Raster::Rgb)
        .ok_or_else(|| OpsError::Decode {
            what: "a decoded video frame".into(),
            message: format!("not {w}x{h} RGB"),
        })
}

/// Locate ffmpeg for a step or gate being built.
pub(crate) fn tool() -> Result<Arc<Ffmpeg>, OpsError> {
    Ffmpeg::locate().map(Arc::new)
}

/// Settings of the `probe` step (none): pass each audio or video input on
/// unchanged, with what ffprobe reports recorded in its `Meta` (duration,
/// resolution, frame rate, codecs, sample rate, channels).
///
/// ```toml
/// [[steps]]
/// name = "clip_probed"
/// kind = "probe"
/// inputs = ["clip"]
/// ```
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProbeSettings {}

/// Record probed facts in each input's `Meta`. See [`ProbeSettings`].
pub struct ProbeStep {
    ff: Arc<Ffmpeg>,
}

impl ProbeStep {
    /// A probe step running `ff`.
    pub fn new(ff: Arc<Ffmpeg>) -> Self {
        ProbeStep { ff }
    }
}

#[async_trait::async_trait]
impl creative_core::Step for ProbeStep {
    fn kind(&self) -> &str {
        "probe"
    }
    fn accepts(&self) -> Option<&[MediaKind]> {
        Some(AUDIO_VIDEO)
    }
    fn min_inputs(&self) -> usize {
        1
    }
    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let mut out = Vec::new();
        for a in inputs.all() {
            if !AUDIO_VIDEO.contains(&a.media().kind()) {
                continue;
            }
            let info = self.ff.probe(a, &ctx.cancel).await?;
            let mut a = a.clone();
            info.record(a.meta_mut());
            out.push(a);
        }
        if out.is_empty() {
            return Err(StepError::invalid_input(format!(
                "step `{}` (probe) needs an audio or video input",
                ctx.step
            )));
        }
        Ok(out)
    }
}
