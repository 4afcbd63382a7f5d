//! Video steps: transcode, renditions, trim, poster frame, burned-in captions,
//! subtitles (SRT / WebVTT), and muxing an audio track onto a video.
//!
//! This file holds what they share: the output codec and quality
//! ([`VideoCodec`], [`VideoOutput`]), frame sampling (also used by the video
//! gates) and the encode run. The steps live by concern, re-exported here so
//! their paths stay `media::video::*`:
//! - `transcode`: re-encoding a whole clip (`video_transcode`, `video_renditions`);
//! - `edit`: a part of a clip or an addition to it (`video_trim`, `poster`, `mux`);
//! - `captions`: cue timing, SRT / WebVTT, the `captions` and `subtitles` steps.

// The `Step` methods every video step shares; defined before the step
// modules, as a macro is visible only below its definition.
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

mod captions;
mod edit;
mod transcode;

pub use captions::{
    cues, to_srt, to_vtt, CaptionsSettings, CaptionsStep, Cue, SubtitleFormat, SubtitlesSettings, SubtitlesStep,
};
pub use edit::{MuxSettings, MuxStep, PosterSettings, PosterStep, VideoTrimSettings, VideoTrimStep};
pub use transcode::{
    renditions_args, Sampling, VideoRenditionsSettings, VideoRenditionsStep, VideoTranscodeSettings, VideoTranscodeStep,
};

use std::path::Path;

use serde::{Deserialize, Serialize};

use creative_core::cancel::CancellationToken;
use creative_core::{Artifact, MediaType, StepCtx};

use super::audio::range_u32;
use super::{args, progress_events, rgb_raster, webm, Control, Ffmpeg, MediaInfo};
use crate::error::OpsError;
use crate::raster::Raster;

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

/// A video input staged in `scratch` and probed: its file, its facts and its
/// frame size. An input without a video stream is refused, naming it.
async fn staged_video(
    ff: &Ffmpeg,
    scratch: &super::Scratch,
    input: &Artifact,
    cancel: &CancellationToken,
) -> Result<(std::path::PathBuf, MediaInfo, u32, u32), OpsError> {
    let src = super::stage(scratch, "in", input).await?;
    let info = ff.probe_file(&src, cancel).await?;
    let (Some(w), Some(h)) = (info.width, info.height) else {
        return Err(OpsError::Unfit(format!(
            "input {} has no video stream",
            input.id().short()
        )));
    };
    Ok((src, info, w, h))
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
