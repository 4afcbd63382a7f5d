//! Video steps: transcode, renditions, trim, poster frame, burned-in captions,
//! subtitles (SRT / WebVTT), and muxing an audio track onto a video.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use creative_core::cancel::CancellationToken;
use creative_core::{Artifact, MediaKind, MediaType, Meta, Provenance, Step, StepCtx, StepError, StepInputs};

use super::audio::{json_f, range_f64, range_u32};
use super::{
    args, finish, inputs_of, progress_events, rgb_raster, stage, webm, Control, Ffmpeg, Made, MediaInfo, Scratch, VIDEO,
};
use crate::attention::{self, Attention};
use crate::caption::{self, Align, FitRules, Font, VAlign};
use crate::color::Color;
use crate::error::OpsError;
use crate::geometry::{Aspect, Rect};
use crate::raster::{EncodeSettings, Format, Raster};
use crate::steps::{record, RenditionSpec, TextBox};

/// A video codec and its container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VideoCodec {
    /// H.264 video and AAC audio in MP4 (libx264; the default).
    #[default]
    H264,
    /// VP9 video and Opus audio in WebM (libvpx).
    Vp9,
}

/// How a video step encodes its output.
///
/// `quality` (1..=100, higher is better) maps onto the codec's constant-quality
/// scale (see [`VideoOutput::crf`]): 70 is x264's default CRF 23.
///
/// ```toml
/// output = { codec = "vp9", quality = 70, preset = "fast", audio_bitrate_kbps = 96 }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VideoOutput {
    /// Codec and container.
    #[serde(default)]
    pub codec: VideoCodec,
    /// Constant quality, 1..=100.
    #[serde(default = "q70")]
    pub quality: u32,
    /// Encoder speed: x264 preset names (`ultrafast` ... `veryslow`); for VP9
    /// they map onto `-cpu-used` (ultrafast 8 ... veryslow 0). Default `medium`.
    #[serde(default = "medium")]
    pub preset: String,
    /// Audio bit rate, 16..=512 kbit/s (default 128 AAC, 96 Opus).
    #[serde(default)]
    pub audio_bitrate_kbps: Option<u32>,
}

fn q70() -> u32 {
    70
}
fn medium() -> String {
    "medium".into()
}

impl Default for VideoOutput {
    fn default() -> Self {
        VideoOutput {
            codec: VideoCodec::H264,
            quality: q70(),
            preset: medium(),
            audio_bitrate_kbps: None,
        }
    }
}

const PRESETS: &[&str] = &[
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
];

impl VideoOutput {
    /// Check the ranges and names.
    pub fn validate(&self) -> Result<(), OpsError> {
        range_u32("output.quality", Some(self.quality), 1, 100)?;
        range_u32("output.audio_bitrate_kbps", self.audio_bitrate_kbps, 16, 512)?;
        if !PRESETS.contains(&self.preset.as_str()) {
            return Err(OpsError::settings(
                "output.preset",
                format!("`{}` is not one of {}", self.preset, PRESETS.join(", ")),
            ));
        }
        Ok(())
    }

    /// The codec's constant-rate factor for this quality.
    ///
    /// ```
    /// use creative_ops::media::video::{VideoCodec, VideoOutput};
    /// let o = VideoOutput { quality: 70, ..VideoOutput::default() };
    /// assert_eq!(o.crf(), 23); // x264's own default
    /// let o = VideoOutput { codec: VideoCodec::Vp9, quality: 70, ..VideoOutput::default() };
    /// assert_eq!(o.crf(), 33);
    /// ```
    pub fn crf(&self) -> u32 {
        let q = f64::from(self.quality.clamp(1, 100));
        match self.codec {
            // 70 -> 23 (x264's default), 100 -> 14, 1 -> 46.
            VideoCodec::H264 => (46.3 - q / 3.0).round() as u32,
            // 70 -> 33 (libvpx's usual good-quality point), 100 -> 21, 1 -> 61.
            VideoCodec::Vp9 => (61.4 - q * 0.4).round() as u32,
        }
    }

    /// The media type of its files.
    pub fn media(&self) -> MediaType {
        match self.codec {
            VideoCodec::H264 => MediaType::Mp4,
            VideoCodec::Vp9 => webm(),
        }
    }

    /// ffmpeg's arguments for the video and audio codecs and the container (not
    /// the stream maps or the output file).
    pub fn args(&self) -> Vec<String> {
        let crf = self.crf().to_string();
        let mut a: Vec<String> = match self.codec {
            VideoCodec::H264 => [
                "-c:v",
                "libx264",
                "-preset",
                &self.preset,
                "-crf",
                &crf,
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            VideoCodec::Vp9 => {
                let speed = 8 - PRESETS.iter().position(|p| *p == self.preset).unwrap_or(5);
                [
                    "-c:v",
                    "libvpx-vp9",
                    "-crf",
                    &crf,
                    "-b:v",
                    "0",
                    "-deadline",
                    "good",
                    "-cpu-used",
                    &speed.to_string(),
                    "-row-mt",
                    "1",
                    "-pix_fmt",
                    "yuv420p",
                    "-c:a",
                    "libopus",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect()
            }
        };
        let kbps = self.audio_bitrate_kbps.unwrap_or(match self.codec {
            VideoCodec::H264 => 128,
            VideoCodec::Vp9 => 96,
        });
        a.extend(["-b:a".into(), format!("{kbps}k")]);
        a.extend([
            "-map_metadata".into(),
            "-1".into(),
            "-fflags".into(),
            "+bitexact".into(),
        ]);
        match self.codec {
            VideoCodec::H264 => a.extend(["-movflags".into(), "+faststart".into(), "-f".into(), "mp4".into()]),
            VideoCodec::Vp9 => a.extend(["-f".into(), "webm".into()]),
        }
        a
    }
}

/// Sample `n` frames evenly through a video (at the starts of `n` equal
/// spans), each as an RGB raster at `size` (default: the video's own size).
/// Returns (time in seconds, frame).
///
/// One ffmpeg pass decodes the clip once and keeps the frames nearest those
/// times; it skips decoding non-reference frames, which nothing else depends
/// on, so sampling costs well under a full decode.
pub async fn sample_frames(
    ff: &Ffmpeg,
    path: &Path,
    info: &MediaInfo,
    n: u32,
    size: Option<(u32, u32)>,
    cancel: &CancellationToken,
) -> Result<Vec<(f64, Raster)>, OpsError> {
    let (Some(w0), Some(h0)) = (info.width, info.height) else {
        return Err(OpsError::Unfit("no video stream to sample".into()));
    };
    let (w, h) = size.unwrap_or((w0, h0));
    let d = info.duration_s.unwrap_or(0.0).max(0.0);
    if d <= 0.0 || n == 1 {
        return Ok(vec![(0.0, frame_at(ff, path, 0.0, w, h, cancel).await?)]);
    }
    let rate = f64::from(n) / d;
    let mut a = args(["-skip_frame", "noref", "-i"]);
    a.push(path.into());
    a.extend(args([
        "-an".to_string(),
        "-vf".into(),
        format!("fps={rate:.6},scale={w}:{h}:flags=area"),
        "-frames:v".into(),
        n.to_string(),
        "-f".into(),
        "rawvideo".into(),
        "-pix_fmt".into(),
        "rgb24".into(),
        "pipe:1".into(),
    ]));
    let bytes = ff.run(a, &Control::cancel_only(cancel)).await?;
    let size = (w * h * 3) as usize;
    let mut out = Vec::with_capacity(n as usize);
    for (i, chunk) in bytes.chunks_exact(size).enumerate() {
        out.push((i as f64 / rate, rgb_raster(w, h, chunk.to_vec())?));
    }
    if out.is_empty() {
        return Err(OpsError::Decode {
            what: path.display().to_string(),
            message: "no frames decoded".into(),
        });
    }
    Ok(out)
}

/// Up to `n` keyframes of a video, spread through it (for each of `n` even
/// times, the first keyframe at or after it not already kept), as RGB rasters at
/// `w`x`h`. The decoder skips every other frame (`-skip_frame nokey`), and
/// only the kept keyframes are scaled, so this costs a fraction of a decode.
/// Falls back to [`sample_frames`] when the decoder marks no keyframe.
pub async fn sample_keyframes(
    ff: &Ffmpeg,
    path: &Path,
    info: &MediaInfo,
    n: u32,
    (w, h): (u32, u32),
    cancel: &CancellationToken,
) -> Result<Vec<Raster>, OpsError> {
    let d = info.duration_s.unwrap_or(0.0).max(0.0);
    // A hair under d/n, so keyframes placed at exactly the sample times are kept.
    let span = d / f64::from(n.max(1)) * 0.999;
    let mut a = args(["-skip_frame", "nokey", "-i"]);
    a.push(path.into());
    a.extend(args([
        "-an".to_string(),
        "-vf".into(),
        format!("select='gte(t\\,selected_n*{span:.6})',scale={w}:{h}:flags=area"),
        // Each kept frame once: no duplicates to fill a constant rate.
        "-fps_mode".into(),
        "passthrough".into(),
        "-frames:v".into(),
        n.to_string(),
        "-f".into(),
        "rawvideo".into(),
        "-pix_fmt".into(),
        "rgb24".into(),
        "pipe:1".into(),
    ]));
    let bytes = ff.run(a, &Control::cancel_only(cancel)).await?;
    let size = (w * h * 3) as usize;
    let frames = bytes
        .chunks_exact(size)
        .map(|c| rgb_raster(w, h, c.to_vec()))
        .collect::<Result<Vec<_>, _>>()?;
    if frames.is_empty() {
        return Ok(sample_frames(ff, path, info, n, Some((w, h)), cancel)
            .await?
            .into_iter()
            .map(|(_, f)| f)
            .collect());
    }
    Ok(frames)
}

/// One frame at `t` seconds, scaled to `w`x`h`. Seeking before the input is
/// fast (from the nearest keyframe) and exact (ffmpeg decodes up to `t`).
pub(crate) async fn frame_at(
    ff: &Ffmpeg,
    path: &Path,
    t: f64,
    w: u32,
    h: u32,
    cancel: &CancellationToken,
) -> Result<Raster, OpsError> {
    let mut a = args(["-ss".to_string(), format!("{t:.3}"), "-i".into()]);
    a.push(path.into());
    a.extend(args([
        "-an".to_string(),
        "-frames:v".into(),
        "1".into(),
        "-vf".into(),
        format!("scale={w}:{h}:flags=area"),
        "-f".into(),
        "rawvideo".into(),
        "-pix_fmt".into(),
        "rgb24".into(),
        "pipe:1".into(),
    ]));
    let mut bytes = ff.run(a, &Control::cancel_only(cancel)).await?;
    if bytes.is_empty() && t > 0.0 {
        // Past the last frame (a duration rounded up): take the last one.
        return Box::pin(frame_at(ff, path, (t - 0.1).max(0.0), w, h, cancel)).await;
    }
    bytes.truncate((w * h * 3) as usize);
    rgb_raster(w, h, bytes)
}

macro_rules! video_step {
    ($kind:literal, $accepts:expr, $produces:expr) => {
        video_step!($kind, $accepts, $produces, 1);
    };
    ($kind:literal, $accepts:expr, $produces:expr, $min:expr) => {
        fn kind(&self) -> &str {
            $kind
        }
        fn accepts(&self) -> Option<&[MediaKind]> {
            Some($accepts)
        }
        fn produces(&self) -> Option<MediaKind> {
            $produces
        }
        fn min_inputs(&self) -> usize {
            $min
        }
    };
}

/// Run one ffmpeg encode with progress events over `total_s` of output.
async fn encode(
    ff: &Ffmpeg,
    ctx: &StepCtx,
    stage_name: &str,
    a: Vec<std::ffi::OsString>,
    total_s: Option<f64>,
) -> Result<(), OpsError> {
    let report = progress_events(ctx, stage_name);
    let ctl = Control {
        cancel: &ctx.cancel,
        progress: Some(&report),
        total_us: total_s.map_or(0, |d| (d.max(0.0) * 1e6) as u64),
    };
    ff.run(a, &ctl).await.map(drop)
}

/// The input's duration: from its `Meta`, else read from the staged file,
/// so progress can be told against it.
async fn duration_of(ff: &Ffmpeg, input: &Artifact, staged: &Path, cancel: &CancellationToken) -> Option<f64> {
    match input.meta().duration_s {
        Some(d) => Some(d),
        None => ff.probe_file(staged, cancel).await.ok()?.duration_s,
    }
}

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
            let src = stage(&scratch, "in", &input).await?;
            let info = self.ff.probe_file(&src, &ctx.cancel).await?;
            let (Some(w), Some(h)) = (info.width, info.height) else {
                return Err(OpsError::Unfit(format!("input {} has no video stream", input.id().short())).into());
            };
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

/// Settings of the `video_trim` step: keep a span of each video (frame
/// accurate: the span is re-encoded).
///
/// ```toml
/// [[steps]]
/// name = "cut"
/// kind = "video_trim"
/// inputs = ["clip"]
/// start_s = 0.5          # 0..=86400
/// duration_s = 4.0       # optional, 0.04..=86400; default to the end
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VideoTrimSettings {
    /// Start of the kept span, seconds.
    #[serde(default)]
    pub start_s: f64,
    /// Its length, seconds.
    #[serde(default)]
    pub duration_s: Option<f64>,
    /// Output encoding.
    #[serde(default)]
    pub output: VideoOutput,
}

/// Trim video. See [`VideoTrimSettings`].
pub struct VideoTrimStep {
    s: VideoTrimSettings,
    ff: Arc<Ffmpeg>,
}

impl VideoTrimStep {
    /// Build from settings, checking them.
    pub fn new(s: VideoTrimSettings, ff: Arc<Ffmpeg>) -> Result<Self, OpsError> {
        range_f64("start_s", s.start_s, 0.0, 86_400.0)?;
        if let Some(d) = s.duration_s {
            range_f64("duration_s", d, 0.04, 86_400.0)?;
        }
        s.output.validate()?;
        Ok(VideoTrimStep { s, ff })
    }
}

#[async_trait]
impl Step for VideoTrimStep {
    video_step!("video_trim", VIDEO, Some(MediaKind::Video));

    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let settings = record(&self.s);
        let mut out = Vec::new();
        for input in inputs_of(inputs, ctx, "video_trim", MediaKind::Video)? {
            if let Some(d) = input.meta().duration_s {
                if self.s.start_s >= d {
                    return Err(OpsError::Unfit(format!(
                        "start_s {} is past the end of input {} ({d:.2} s)",
                        self.s.start_s,
                        input.id().short()
                    ))
                    .into());
                }
            }
            let scratch = Scratch::new()?;
            let src = stage(&scratch, "in", &input).await?;
            let mut a = args(["-ss".to_string(), self.s.start_s.to_string(), "-i".into()]);
            a.push(src.into());
            if let Some(d) = self.s.duration_s {
                a.extend(args(["-t".to_string(), d.to_string()]));
            }
            a.extend(args(["-map", "0:v:0", "-map", "0:a:0?"]));
            a.extend(args(self.s.output.args()));
            a.push(scratch.path("out").into());
            let total = self
                .s
                .duration_s
                .or(input.meta().duration_s.map(|d| d - self.s.start_s));
            encode(&self.ff, ctx, "video_trim", a, total).await?;
            let made = Made {
                media: self.s.output.media(),
                bytes: scratch.read("out").await?,
                rendition: None,
                detail: Map::new(),
            };
            out.push(finish(&self.ff, ctx, "video_trim", &settings, &[&input], made).await?);
        }
        Ok(out)
    }
}

/// Settings of the `poster` step: one frame of each video as an image, for the
/// image steps and gates.
///
/// ```toml
/// [[steps]]
/// name = "poster"
/// kind = "poster"
/// inputs = ["clip"]
/// at_s = 1.0          # optional; default the middle of the clip
/// output = { format = "jpeg", quality = 88 }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PosterSettings {
    /// When, in seconds (0..=86400); clamped to the clip.
    #[serde(default)]
    pub at_s: Option<f64>,
    /// Image encoding (default PNG).
    #[serde(default)]
    pub output: EncodeSettings,
}

/// Take a poster frame. See [`PosterSettings`].
pub struct PosterStep {
    s: PosterSettings,
    ff: Arc<Ffmpeg>,
}

impl PosterStep {
    /// Build from settings, checking them.
    pub fn new(s: PosterSettings, ff: Arc<Ffmpeg>) -> Result<Self, OpsError> {
        if let Some(t) = s.at_s {
            range_f64("at_s", t, 0.0, 86_400.0)?;
        }
        s.output.validate()?;
        Ok(PosterStep { s, ff })
    }
}

#[async_trait]
impl Step for PosterStep {
    video_step!("poster", VIDEO, Some(MediaKind::Image));

    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let settings = record(&self.s);
        let mut out = Vec::new();
        for input in inputs_of(inputs, ctx, "poster", MediaKind::Video)? {
            let scratch = Scratch::new()?;
            let src = stage(&scratch, "in", &input).await?;
            let info = self.ff.probe_file(&src, &ctx.cancel).await?;
            let (Some(w), Some(h)) = (info.width, info.height) else {
                return Err(OpsError::Unfit(format!("input {} has no video stream", input.id().short())).into());
            };
            let d = info.duration_s.unwrap_or(0.0);
            let t = self.s.at_s.unwrap_or(d / 2.0).clamp(0.0, (d - 0.05).max(0.0));
            let frame = frame_at(&self.ff, &src, t, w, h, &ctx.cancel).await?;
            let format = self.s.output.resolve(Format::Png);
            let output = self.s.output.clone();
            let bytes = tokio::task::spawn_blocking(move || frame.encode(format, &output))
                .await
                .map_err(|e| StepError::from(OpsError::Worker(e.to_string())))??;
            let mut detail = Map::new();
            detail.insert("at_s".into(), json_f(t));
            let mut a = finish(
                &self.ff,
                ctx,
                "poster",
                &settings,
                &[&input],
                Made {
                    media: format.media(),
                    bytes,
                    rendition: None,
                    detail,
                },
            )
            .await?;
            let m = a.meta_mut();
            m.width = Some(w);
            m.height = Some(h);
            out.push(a);
        }
        Ok(out)
    }
}

/// One caption cue: the text and when it shows, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cue {
    /// Start, seconds.
    pub start: f64,
    /// End, seconds.
    pub end: f64,
    /// The text.
    pub text: String,
}

/// Split a script into cues of at most `max_chars` characters (at sentence
/// ends, then at word boundaries) and spread them over `duration` seconds in
/// proportion to their length, as speech takes time in proportion to text.
///
/// ```
/// let cues = creative_ops::media::video::cues("One. Two three four.", 6.0, 40);
/// assert_eq!(cues.len(), 2);
/// assert_eq!(cues[0].text, "One.");
/// assert!((cues[1].end - 6.0).abs() < 1e-9);
/// ```
pub fn cues(script: &str, duration: f64, max_chars: usize) -> Vec<Cue> {
    let mut parts: Vec<String> = Vec::new();
    for sentence in split_sentences(script) {
        let mut cur = String::new();
        for word in sentence.split_whitespace() {
            if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > max_chars {
                parts.push(std::mem::take(&mut cur));
            }
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(word);
        }
        if !cur.is_empty() {
            parts.push(cur);
        }
    }
    let total: usize = parts.iter().map(|p| p.chars().count()).sum();
    let mut t = 0.0;
    parts
        .into_iter()
        .map(|text| {
            let len = text.chars().count() as f64 / total.max(1) as f64 * duration;
            let c = Cue {
                start: t,
                end: t + len,
                text,
            };
            t += len;
            c
        })
        .collect()
}

fn split_sentences(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    for (k, &(i, c)) in chars.iter().enumerate() {
        let next_ws = chars.get(k + 1).is_none_or(|(_, n)| n.is_whitespace());
        if c == '\n' || (matches!(c, '.' | '!' | '?' | '。') && next_ws) {
            let end = i + c.len_utf8();
            let piece = s[start..end].trim();
            if !piece.is_empty() {
                out.push(piece);
            }
            start = end;
        }
    }
    let rest = s[start..].trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

fn stamp(t: f64, sep: char) -> String {
    let ms = (t.max(0.0) * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}{sep}{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// Cues as SubRip (SRT).
pub fn to_srt(cues: &[Cue]) -> String {
    let mut s = String::new();
    for (i, c) in cues.iter().enumerate() {
        s.push_str(&format!(
            "{}\n{} --> {}\n{}\n\n",
            i + 1,
            stamp(c.start, ','),
            stamp(c.end, ','),
            c.text
        ));
    }
    s
}

/// Cues as WebVTT.
pub fn to_vtt(cues: &[Cue]) -> String {
    let mut s = String::from("WEBVTT\n\n");
    for c in cues {
        // "-->" inside a cue would end its timing line early.
        let text = c.text.replace("-->", "->");
        s.push_str(&format!(
            "{} --> {}\n{text}\n\n",
            stamp(c.start, '.'),
            stamp(c.end, '.')
        ));
    }
    s
}

/// The script for captions: the first text input, trimmed.
fn script_of(inputs: &StepInputs, ctx: &StepCtx, kind: &str) -> Result<(Artifact, String), StepError> {
    let t = inputs_of(inputs, ctx, kind, MediaKind::Text)?.remove(0);
    let text = t.text().unwrap_or_default().trim().to_string();
    if text.is_empty() {
        return Err(StepError::invalid_input(format!(
            "step `{}` ({kind}): the text input {} is empty",
            ctx.step,
            t.id().short()
        )));
    }
    Ok((t, text))
}

/// Settings of the `captions` step: burn the script from a text input into
/// each video input, one cue at a time, timed over the clip (see [`cues`]).
/// Text is drawn with the bundled font (or `font`), fitted into `box`.
///
/// ```toml
/// [[steps]]
/// name = "captioned"
/// kind = "captions"
/// inputs = ["cuts", "script"]
/// box = { x = 0.05, y = 0.78, width = 0.9, height = 0.16 }
/// color = "#ffffff"
/// background = "#00000099"
/// max_chars = 60          # per cue, 8..=500
/// min_font_px = 10
/// output = { codec = "h264", quality = 70 }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptionsSettings {
    /// Where captions go, as fractions of the frame.
    #[serde(default = "caption_box", rename = "box")]
    pub text_box: TextBox,
    /// Text colour.
    #[serde(default = "white")]
    pub color: Color,
    /// A band behind the text, if any.
    #[serde(default = "shade")]
    pub background: Option<Color>,
    /// Longest cue, characters.
    #[serde(default = "sixty")]
    pub max_chars: u32,
    /// Smallest font size, pixels (1..=500).
    #[serde(default = "ten")]
    pub min_font_px: f32,
    /// A TrueType/OpenType font file; default the bundled DejaVu Sans.
    #[serde(default)]
    pub font: Option<String>,
    /// Output encoding.
    #[serde(default)]
    pub output: VideoOutput,
}

fn caption_box() -> TextBox {
    TextBox {
        x: 0.05,
        y: 0.78,
        width: 0.9,
        height: 0.16,
    }
}
fn white() -> Color {
    Color::WHITE
}
fn shade() -> Option<Color> {
    Some(Color {
        r: 0,
        g: 0,
        b: 0,
        a: 0x99,
    })
}
fn sixty() -> u32 {
    60
}
fn ten() -> f32 {
    10.0
}

/// Burn captions into video. See [`CaptionsSettings`].
pub struct CaptionsStep {
    s: CaptionsSettings,
    font: Font,
    ff: Arc<Ffmpeg>,
}

impl CaptionsStep {
    /// Build from settings, checking them; `font` is the loaded `font` file.
    pub fn new(s: CaptionsSettings, font: Option<Font>, ff: Arc<Ffmpeg>) -> Result<Self, OpsError> {
        s.text_box.validate()?;
        range_u32("max_chars", Some(s.max_chars), 8, 500)?;
        range_f64("min_font_px", f64::from(s.min_font_px), 1.0, 500.0)?;
        s.output.validate()?;
        let font = match font {
            Some(f) => f,
            None => Font::bundled()?,
        };
        Ok(CaptionsStep { s, font, ff })
    }

    /// One cue drawn on a transparent frame of `w`x`h`.
    pub fn render_cue(&self, text: &str, w: u32, h: u32) -> Result<Raster, OpsError> {
        let mut img = Raster::Rgba(image::RgbaImage::new(w, h));
        let area = self.s.text_box.pixels(w, h);
        let pad = (0.08 * f64::from(area.height)).round() as u32;
        let inner = Rect::new(
            area.x + pad,
            area.y + pad,
            area.width.saturating_sub(2 * pad).max(1),
            area.height.saturating_sub(2 * pad).max(1),
        );
        let rules = FitRules {
            max_px: (inner.height as f32 / 2.2).max(self.s.min_font_px),
            min_px: self.s.min_font_px,
            line_spacing: 1.1,
        };
        let layout = caption::fit(&self.font, text, inner.width, inner.height, &rules)?;
        if let Some(bg) = self.s.background {
            // Only behind the text's lines, like broadcast captions.
            let top = inner.y as f32 + (inner.height as f32 - layout.height) / 2.0;
            let widest = layout.widths.iter().cloned().fold(0.0, f32::max);
            let x0 = (inner.x as f32 + (inner.width as f32 - widest) / 2.0 - pad as f32).max(0.0) as u32;
            let x1 = ((inner.x as f32 + (inner.width as f32 + widest) / 2.0 + pad as f32) as u32).min(w);
            let y0 = (top - pad as f32).max(0.0) as u32;
            let y1 = ((top + layout.height + pad as f32) as u32).min(h);
            for y in y0..y1 {
                for x in x0..x1 {
                    img.blend_pixel(x, y, [bg.r, bg.g, bg.b], bg.a);
                }
            }
        }
        caption::draw(
            &mut img,
            &self.font,
            &layout,
            inner,
            self.s.color,
            Align::Centre,
            VAlign::Middle,
        );
        Ok(img)
    }
}

#[async_trait]
impl Step for CaptionsStep {
    video_step!("captions", &[MediaKind::Video, MediaKind::Text], Some(MediaKind::Video));

    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let (script_a, script) = script_of(inputs, ctx, "captions")?;
        let settings = record(&self.s);
        let mut out = Vec::new();
        for input in inputs_of(inputs, ctx, "captions", MediaKind::Video)? {
            let scratch = Scratch::new()?;
            let src = stage(&scratch, "in", &input).await?;
            let info = self.ff.probe_file(&src, &ctx.cancel).await?;
            let (Some(w), Some(h)) = (info.width, info.height) else {
                return Err(OpsError::Unfit(format!("input {} has no video stream", input.id().short())).into());
            };
            let d = info.duration_s.unwrap_or(0.0);
            let cues = cues(&script, d, self.s.max_chars as usize);
            let mut a = args(["-i"]);
            a.push(src.into());
            let mut graph = String::new();
            let mut last = "0:v".to_string();
            for (i, c) in cues.iter().enumerate() {
                let png = self
                    .render_cue(&c.text, w, h)?
                    .encode(Format::Png, &EncodeSettings::default())?;
                let p = scratch.write(&format!("cue{i}.png"), &png).await?;
                a.extend(args(["-i"]));
                a.push(p.into());
                let next = format!("c{i}");
                if !graph.is_empty() {
                    graph.push(';');
                }
                graph.push_str(&format!(
                    "[{last}][{}:v]overlay=0:0:enable='between(t,{:.3},{:.3})'[{next}]",
                    i + 1,
                    c.start,
                    c.end
                ));
                last = next;
            }
            a.extend(args([
                "-filter_complex".to_string(),
                graph,
                "-map".into(),
                format!("[{last}]"),
            ]));
            if info.has_audio() {
                a.extend(args(["-map", "0:a:0"]));
            }
            a.extend(args(self.s.output.args()));
            a.push(scratch.path("out").into());
            encode(&self.ff, ctx, "captions", a, info.duration_s).await?;
            let mut detail = Map::new();
            detail.insert("cues".into(), serde_json::to_value(&cues).unwrap_or_default());
            let made = Made {
                media: self.s.output.media(),
                bytes: scratch.read("out").await?,
                rendition: None,
                detail,
            };
            out.push(finish(&self.ff, ctx, "captions", &settings, &[&input, &script_a], made).await?);
        }
        Ok(out)
    }
}

/// Subtitle formats the `subtitles` step writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubtitleFormat {
    /// SubRip, `application/x-subrip`.
    Srt,
    /// WebVTT, `text/vtt`.
    Vtt,
}

/// Settings of the `subtitles` step: the script of a text input as timed
/// subtitle files (the same cues the `captions` step burns in), timed over
/// the duration of the first audio or video input, or `duration_s`.
///
/// ```toml
/// [[steps]]
/// name = "subs"
/// kind = "subtitles"
/// inputs = ["script", "voice"]
/// formats = ["srt", "vtt"]
/// max_chars = 60
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubtitlesSettings {
    /// Which files to write (default both).
    #[serde(default = "both")]
    pub formats: Vec<SubtitleFormat>,
    /// Longest cue, characters (8..=500).
    #[serde(default = "sixty")]
    pub max_chars: u32,
    /// The duration to time over when no audio or video input has one (0.1..=86400).
    #[serde(default)]
    pub duration_s: Option<f64>,
}

fn both() -> Vec<SubtitleFormat> {
    vec![SubtitleFormat::Srt, SubtitleFormat::Vtt]
}

/// Write SRT / WebVTT subtitles. See [`SubtitlesSettings`].
pub struct SubtitlesStep {
    s: SubtitlesSettings,
    ff: Arc<Ffmpeg>,
}

impl SubtitlesStep {
    /// Build from settings, checking them.
    pub fn new(s: SubtitlesSettings, ff: Arc<Ffmpeg>) -> Result<Self, OpsError> {
        if s.formats.is_empty() {
            return Err(OpsError::settings("formats", "list at least one of srt, vtt"));
        }
        range_u32("max_chars", Some(s.max_chars), 8, 500)?;
        if let Some(d) = s.duration_s {
            range_f64("duration_s", d, 0.1, 86_400.0)?;
        }
        Ok(SubtitlesStep { s, ff })
    }
}

#[async_trait]
impl Step for SubtitlesStep {
    fn kind(&self) -> &str {
        "subtitles"
    }
    fn accepts(&self) -> Option<&[MediaKind]> {
        Some(&[MediaKind::Text, MediaKind::Audio, MediaKind::Video])
    }
    fn min_inputs(&self) -> usize {
        1
    }

    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let (script_a, script) = script_of(inputs, ctx, "subtitles")?;
        let timed = inputs
            .all()
            .find(|a| matches!(a.media().kind(), MediaKind::Audio | MediaKind::Video));
        let mut parents = vec![script_a.id().clone()];
        let d = match timed {
            Some(a) => {
                parents.push(a.id().clone());
                match a.meta().duration_s {
                    Some(d) => d,
                    None => self.ff.probe(a, &ctx.cancel).await?.duration_s.unwrap_or_default(),
                }
            }
            None => self.s.duration_s.ok_or_else(|| {
                StepError::invalid_input(format!(
                    "step `{}` (subtitles) needs an audio or video input to time against, or `duration_s`",
                    ctx.step
                ))
            })?,
        };
        let cues = cues(&script, d, self.s.max_chars as usize);
        Ok(self
            .s
            .formats
            .iter()
            .map(|f| {
                let (media, body) = match f {
                    SubtitleFormat::Srt => ("application/x-subrip", to_srt(&cues)),
                    SubtitleFormat::Vtt => ("text/vtt", to_vtt(&cues)),
                };
                let mut params = Map::new();
                params.insert("op".into(), "subtitles".into());
                params.insert("settings".into(), record(&self.s));
                params.insert("cues".into(), Value::from(cues.len()));
                Artifact::new(MediaType::Other(Arc::from(media)), body.into_bytes())
                    .with_meta(Meta {
                        duration_s: Some(d),
                        ..Meta::default()
                    })
                    .with_provenance(Provenance {
                        step: ctx.step.to_string(),
                        params: Value::Object(params),
                        parents: parents.clone(),
                        ..Provenance::default()
                    })
            })
            .collect())
    }
}

/// Settings of the `mux` step: put the first audio input onto each video
/// input, replacing any audio it had. The video stream is copied, not
/// re-encoded; the audio is encoded for the container (AAC in MP4, Opus in
/// WebM), padded with silence or cut to the video's length.
///
/// ```toml
/// [[steps]]
/// name = "with_voice"
/// kind = "mux"
/// inputs = ["captioned", "voice"]
/// audio_bitrate_kbps = 128     # 16..=512
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MuxSettings {
    /// Audio bit rate (default 128 AAC, 96 Opus).
    #[serde(default)]
    pub audio_bitrate_kbps: Option<u32>,
}

/// Mux audio onto video. See [`MuxSettings`].
pub struct MuxStep {
    s: MuxSettings,
    ff: Arc<Ffmpeg>,
}

impl MuxStep {
    /// Build from settings, checking them.
    pub fn new(s: MuxSettings, ff: Arc<Ffmpeg>) -> Result<Self, OpsError> {
        range_u32("audio_bitrate_kbps", s.audio_bitrate_kbps, 16, 512)?;
        Ok(MuxStep { s, ff })
    }
}

#[async_trait]
impl Step for MuxStep {
    video_step!("mux", &[MediaKind::Video, MediaKind::Audio], Some(MediaKind::Video), 2);

    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let audio = inputs_of(inputs, ctx, "mux", MediaKind::Audio)?.remove(0);
        let settings = record(&self.s);
        let mut out = Vec::new();
        for input in inputs_of(inputs, ctx, "mux", MediaKind::Video)? {
            let scratch = Scratch::new()?;
            let v = stage(&scratch, "video", &input).await?;
            let au = stage(&scratch, "audio", &audio).await?;
            let webm = input.media().as_str() == "video/webm";
            let (codec, kbps, fmt, media) = if webm {
                ("libopus", 96, "webm", super::webm())
            } else {
                ("aac", 128, "mp4", MediaType::Mp4)
            };
            let kbps = self.s.audio_bitrate_kbps.unwrap_or(kbps);
            let info = self.ff.probe_file(&v, &ctx.cancel).await?;
            let mut a = args(["-i"]);
            a.push(v.into());
            a.extend(args(["-i"]));
            a.push(au.into());
            a.extend(args(["-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", codec]));
            a.extend(args(["-b:a".to_string(), format!("{kbps}k")]));
            // Pad short audio with silence, then cut everything at the video's end.
            a.extend(args(["-af", "apad"]));
            if let Some(d) = info.duration_s {
                a.extend(args(["-t".to_string(), format!("{d:.3}")]));
            }
            a.extend(args(["-map_metadata", "-1", "-fflags", "+bitexact", "-f", fmt]));
            if !webm {
                a.extend(args(["-movflags", "+faststart"]));
            }
            a.push(scratch.path("out").into());
            encode(&self.ff, ctx, "mux", a, info.duration_s).await?;
            let made = Made {
                media: media.clone(),
                bytes: scratch.read("out").await?,
                rendition: None,
                detail: Map::new(),
            };
            out.push(finish(&self.ff, ctx, "mux", &settings, &[&input, &audio], made).await?);
        }
        Ok(out)
    }
}
