//! The steps that re-encode a whole video: `video_transcode` (one output per
//! input) and `video_renditions` (several aspect reframes of each input, the
//! crop placed by attention measured on sampled frames).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use creative_core::{Artifact, MediaKind, Step, StepCtx, StepError, StepInputs};

use super::{duration_of, encode, sample_frames, sample_keyframes, staged_video, VideoOutput};
use crate::attention::{self, Attention};
use crate::error::OpsError;
use crate::geometry::{Aspect, Rect};
use crate::media::audio::{range_f64, range_u32};
use crate::media::{args, finish, inputs_of, stage, Ffmpeg, Made, Scratch, VIDEO};
use crate::raster::{EncodeSettings, Raster};
use crate::steps::{record, RenditionSpec};

/// Settings of the `video_transcode` step: re-encode each video input.
///
/// ```toml
/// [[steps]]
/// name = "web"
/// kind = "video_transcode"
/// inputs = ["clip"]
/// width = 1280            # optional; with one side the other keeps the aspect
/// fps = 30                # optional, 1..=240
/// output = { codec = "vp9", quality = 70 }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VideoTranscodeSettings {
    /// Output width (even); `None` keeps it.
    #[serde(default)]
    pub width: Option<u32>,
    /// Output height (even); `None` keeps it.
    #[serde(default)]
    pub height: Option<u32>,
    /// Output frame rate.
    #[serde(default)]
    pub fps: Option<f64>,
    /// Output encoding.
    #[serde(default)]
    pub output: VideoOutput,
}

/// Re-encode video. See [`VideoTranscodeSettings`].
pub struct VideoTranscodeStep {
    s: VideoTranscodeSettings,
    ff: Arc<Ffmpeg>,
}

impl VideoTranscodeStep {
    /// Build from settings, checking them.
    pub fn new(s: VideoTranscodeSettings, ff: Arc<Ffmpeg>) -> Result<Self, OpsError> {
        let max = creative_core::limits::MAX_IMAGE_SIDE;
        range_u32("width", s.width, 2, max)?;
        range_u32("height", s.height, 2, max)?;
        if let Some(f) = s.fps {
            range_f64("fps", f, 1.0, 240.0)?;
        }
        s.output.validate()?;
        Ok(VideoTranscodeStep { s, ff })
    }
}

#[async_trait]
impl Step for VideoTranscodeStep {
    video_step!("video_transcode", VIDEO, Some(MediaKind::Video));

    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let settings = record(&self.s);
        let mut out = Vec::new();
        for input in inputs_of(inputs, ctx, "video_transcode", MediaKind::Video)? {
            let scratch = Scratch::new()?;
            let src = stage(&scratch, "in", &input).await?;
            let mut filters = Vec::new();
            match (self.s.width, self.s.height) {
                (None, None) => {}
                (w, h) => filters.push(format!(
                    "scale={}:{}",
                    w.map_or("-2".into(), |w| (w & !1).to_string()),
                    h.map_or("-2".into(), |h| (h & !1).to_string())
                )),
            }
            if let Some(f) = self.s.fps {
                filters.push(format!("fps={f}"));
            }
            let mut a = args(["-i"]);
            let total = duration_of(&self.ff, &input, &src, &ctx.cancel).await;
            a.push(src.into());
            if !filters.is_empty() {
                a.extend(args(["-vf".to_string(), filters.join(",")]));
            }
            a.extend(args(["-map", "0:v:0", "-map", "0:a:0?"]));
            a.extend(args(self.s.output.args()));
            a.push(scratch.path("out").into());
            encode(&self.ff, ctx, "video_transcode", a, total).await?;
            let made = Made {
                media: self.s.output.media(),
                bytes: scratch.read("out").await?,
                rendition: None,
                detail: Map::new(),
            };
            out.push(finish(&self.ff, ctx, "video_transcode", &settings, &[&input], made).await?);
        }
        Ok(out)
    }
}

/// Settings of the `video_renditions` step: several reframes of each video
/// from one decode (an ffmpeg `split` into one crop-and-scale chain per
/// rendition), each crop placed by an attention measure over frames sampled
/// through the clip (the median of the per-frame placements, so the window
/// holds still and follows where the subject mostly is).
///
/// By default attention looks at keyframes only (`sampling`): decoding them
/// costs a small share of decoding the clip, which matters because the
/// renditions' own encode is the only other work the step does.
///
/// ```toml
/// [[steps]]
/// name = "cuts"
/// kind = "video_renditions"
/// inputs = ["clip"]
/// attention = "entropy"    # centre | entropy | edges
/// samples = 5              # frames sampled for attention, 1..=60
/// sampling = "keyframes"   # keyframes | even
/// renditions = [
///   { aspect = "9:16", width = 1080 },
///   { aspect = "1:1",  width = 1080 },
///   { aspect = "16:9", width = 1920 },
/// ]
/// output = { codec = "h264", quality = 70 }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VideoRenditionsSettings {
    /// The renditions (sizes are rounded down to even numbers, as 4:2:0 needs).
    pub renditions: Vec<RenditionSpec>,
    /// How each window is placed.
    #[serde(default)]
    pub attention: Attention,
    /// How many frames attention is measured on (at most, with keyframe
    /// sampling).
    #[serde(default = "five")]
    pub samples: u32,
    /// Which frames are sampled.
    #[serde(default)]
    pub sampling: Sampling,
    /// Output encoding, shared by all renditions.
    #[serde(default)]
    pub output: VideoOutput,
}

fn five() -> u32 {
    5
}

/// Which frames of a video attention is measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Up to `samples` keyframes spread through the clip (the default). Only
    /// keyframes are decoded, so sampling costs a fraction of a decode; an
    /// encoder also places keyframes at scene cuts, so each shot is seen. A
    /// clip with fewer keyframes than `samples` is measured on all it has
    /// (the count is recorded as `samples` in each output's provenance).
    #[default]
    Keyframes,
    /// Exactly `samples` frames evenly through the clip, for clips with too
    /// few keyframes to follow a moving subject; decodes the whole clip once,
    /// which adds about a tenth to the CPU of three 1080p renditions.
    Even,
}

/// Make several aspect renditions of each video. See [`VideoRenditionsSettings`].
pub struct VideoRenditionsStep {
    s: VideoRenditionsSettings,
    ff: Arc<Ffmpeg>,
}

/// The ffmpeg filter graph and output arguments of a renditions run: one
/// `split`, then per rendition `crop` + `scale` into its own output file.
/// `plans` are (crop, output size) per rendition; `outputs` the file paths.
pub fn renditions_args(
    input: &Path,
    plans: &[(Rect, (u32, u32))],
    outputs: &[std::path::PathBuf],
    output: &VideoOutput,
    has_audio: bool,
) -> Vec<std::ffi::OsString> {
    let n = plans.len();
    let mut graph = format!("[0:v]split={n}");
    for i in 0..n {
        graph.push_str(&format!("[s{i}]"));
    }
    for (i, (r, (w, h))) in plans.iter().enumerate() {
        graph.push_str(&format!(
            ";[s{i}]crop={}:{}:{}:{},scale={w}:{h}:flags=lanczos,setsar=1[o{i}]",
            r.width, r.height, r.x, r.y
        ));
    }
    let mut a = args(["-i"]);
    a.push(input.into());
    a.extend(args(["-filter_complex".to_string(), graph]));
    for (i, path) in outputs.iter().enumerate() {
        a.extend(args(["-map".to_string(), format!("[o{i}]")]));
        if has_audio {
            a.extend(args(["-map", "0:a:0"]));
        }
        a.extend(args(output.args()));
        a.push(path.into());
    }
    a
}

fn even(v: u32) -> u32 {
    (v & !1).max(2)
}

impl VideoRenditionsStep {
    /// Build from settings, checking them.
    pub fn new(s: VideoRenditionsSettings, ff: Arc<Ffmpeg>) -> Result<Self, OpsError> {
        // The image renditions' checks: sizes, names, aspects.
        crate::steps::RenditionsStep::new(crate::steps::RenditionsSettings {
            renditions: s.renditions.clone(),
            attention: s.attention,
            filter: Default::default(),
            output: EncodeSettings::default(),
        })?;
        range_u32("samples", Some(s.samples), 1, 60)?;
        s.output.validate()?;
        Ok(VideoRenditionsStep { s, ff })
    }

    /// Where each rendition's window goes and its output size, from frames
    /// sampled at thumbnail size.
    pub fn plan(&self, w: u32, h: u32, thumbs: &[Raster]) -> Vec<(Rect, (u32, u32))> {
        let measured: Vec<attention::Thumb> = thumbs.iter().filter_map(attention::Thumb::of).collect();
        self.s
            .renditions
            .iter()
            .map(|r| {
                let (cw, ch) = r.aspect.largest_in(w, h);
                let (cw, ch) = (even(cw).min(w), even(ch).min(h));
                let rect = if self.s.attention == Attention::Centre || measured.is_empty() {
                    attention::place_with(None, w, h, cw, ch, Attention::Centre)
                } else {
                    let mut xs = Vec::new();
                    let mut ys = Vec::new();
                    for t in &measured {
                        let r = attention::place_with(Some(t), w, h, cw, ch, self.s.attention);
                        xs.push(r.x);
                        ys.push(r.y);
                    }
                    xs.sort_unstable();
                    ys.sort_unstable();
                    Rect::new(xs[xs.len() / 2], ys[ys.len() / 2], cw, ch)
                };
                let size = out_size(r.aspect, r.width, r.height, cw, ch);
                (rect, size)
            })
            .collect()
    }
}

fn out_size(aspect: Aspect, width: Option<u32>, height: Option<u32>, cw: u32, ch: u32) -> (u32, u32) {
    let (w, h) = match (width, height) {
        (Some(w), Some(h)) => (w, h),
        (Some(w), None) => (w, (f64::from(w) / aspect.ratio()).round() as u32),
        (None, Some(h)) => ((f64::from(h) * aspect.ratio()).round() as u32, h),
        (None, None) => (cw, ch),
    };
    (even(w), even(h))
}

/// The size attention thumbnails are decoded at: at most 256 a side.
fn thumb_size(w: u32, h: u32) -> (u32, u32) {
    let s = (256.0 / f64::from(w.max(h))).min(1.0);
    (
        ((f64::from(w) * s).round() as u32).max(1),
        ((f64::from(h) * s).round() as u32).max(1),
    )
}

#[async_trait]
impl Step for VideoRenditionsStep {
    video_step!("video_renditions", VIDEO, Some(MediaKind::Video));

    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let settings = record(&self.s);
        let mut out = Vec::new();
        for input in inputs_of(inputs, ctx, "video_renditions", MediaKind::Video)? {
            let scratch = Scratch::new()?;
            let (src, info, w, h) = staged_video(&self.ff, &scratch, &input, &ctx.cancel).await?;
            let thumbs = match (self.s.attention, self.s.sampling) {
                (Attention::Centre, _) => Vec::new(),
                (_, Sampling::Keyframes) => {
                    sample_keyframes(&self.ff, &src, &info, self.s.samples, thumb_size(w, h), &ctx.cancel).await?
                }
                (_, Sampling::Even) => sample_frames(
                    &self.ff,
                    &src,
                    &info,
                    self.s.samples,
                    Some(thumb_size(w, h)),
                    &ctx.cancel,
                )
                .await?
                .into_iter()
                .map(|(_, f)| f)
                .collect(),
            };
            let plans = self.plan(w, h, &thumbs);
            let ext = self.s.output.media().extension().to_string();
            let outputs: Vec<_> = (0..plans.len())
                .map(|i| scratch.path(&format!("out{i}.{ext}")))
                .collect();
            let a = renditions_args(&src, &plans, &outputs, &self.s.output, info.has_audio());
            encode(&self.ff, ctx, "video_renditions", a, info.duration_s).await?;
            for (i, (r, (rect, (ow, oh)))) in self.s.renditions.iter().zip(&plans).enumerate() {
                let mut detail = Map::new();
                detail.insert("crop".into(), serde_json::to_value(rect).unwrap_or_default());
                detail.insert("size".into(), Value::String(format!("{ow}x{oh}")));
                detail.insert("samples".into(), Value::from(thumbs.len()));
                let made = Made {
                    media: self.s.output.media(),
                    bytes: scratch.read(&format!("out{i}.{ext}")).await?,
                    rendition: Some(r.name.clone().unwrap_or_else(|| r.aspect.name())),
                    detail,
                };
                out.push(finish(&self.ff, ctx, "video_renditions", &settings, &[&input], made).await?);
            }
        }
        Ok(out)
    }
}
