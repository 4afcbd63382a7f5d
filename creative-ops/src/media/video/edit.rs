//! The steps that take a part of a video or add to one: `video_trim` (a span),
//! `poster` (one frame as an image) and `mux` (an audio track onto the video).

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Map;

use creative_core::{Artifact, MediaKind, MediaType, Step, StepCtx, StepError, StepInputs};

use super::{encode, frame_at, staged_video, VideoOutput};
use crate::error::OpsError;
use crate::media::audio::{json_f, range_f64, range_u32};
use crate::media::{args, finish, inputs_of, stage, Ffmpeg, Made, Scratch, VIDEO};
use crate::raster::{EncodeSettings, Format};
use crate::steps::record;

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
            let (src, info, w, h) = staged_video(&self.ff, &scratch, &input, &ctx.cancel).await?;
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
