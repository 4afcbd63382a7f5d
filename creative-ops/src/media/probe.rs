//! What a piece of audio or video is: ffprobe's answer, recorded in `Meta`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use creative_core::cancel::CancellationToken;
use creative_core::{Artifact, Meta};

use super::ffmpeg::{Ffmpeg, Scratch};
use crate::error::OpsError;

/// The facts ffprobe reports about an audio or video file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MediaInfo {
    /// The container (`mov,mp4,m4a,3gp,3g2,mj2`, `wav`, `matroska,webm`...).
    pub container: String,
    /// Duration in seconds.
    pub duration_s: Option<f64>,
    /// Width of the first video stream.
    pub width: Option<u32>,
    /// Height of the first video stream.
    pub height: Option<u32>,
    /// Frames per second of the first video stream.
    pub fps: Option<f64>,
    /// Codec of the first video stream (`h264`, `vp9`...).
    pub video_codec: Option<String>,
    /// Codec of the first audio stream (`aac`, `opus`, `pcm_s16le`...).
    pub audio_codec: Option<String>,
    /// Sample rate of the first audio stream, in hertz.
    pub sample_rate: Option<u32>,
    /// Channels of the first audio stream.
    pub channels: Option<u32>,
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|x: &f64| x.is_finite())
}

/// `30000/1001` or `25` as a number; `0/0` (unknown) as `None`.
fn rate(v: &Value) -> Option<f64> {
    let s = v.as_str()?;
    let r = match s.split_once('/') {
        Some((n, d)) => {
            let (n, d): (f64, f64) = (n.trim().parse().ok()?, d.trim().parse().ok()?);
            if d == 0.0 {
                return None;
            }
            n / d
        }
        None => s.trim().parse().ok()?,
    };
    (r.is_finite() && r > 0.0).then_some(r)
}

impl MediaInfo {
    /// Read ffprobe's JSON (`-show_format -show_streams -print_format json`).
    ///
    /// ```
    /// let json = br#"{"streams":[{"codec_type":"video","codec_name":"h264","width":640,
    ///   "height":360,"avg_frame_rate":"24/1"},{"codec_type":"audio","codec_name":"aac",
    ///   "sample_rate":"48000","channels":2}],"format":{"format_name":"mov,mp4","duration":"2.5"}}"#;
    /// let info = creative_ops::media::MediaInfo::from_ffprobe_json(json).unwrap();
    /// assert_eq!((info.width, info.height, info.fps), (Some(640), Some(360), Some(24.0)));
    /// assert_eq!((info.sample_rate, info.channels, info.duration_s), (Some(48000), Some(2), Some(2.5)));
    /// ```
    pub fn from_ffprobe_json(json: &[u8]) -> Result<Self, OpsError> {
        let v: Value = serde_json::from_slice(json).map_err(|e| OpsError::Tool {
            tool: "ffprobe",
            message: format!("unreadable JSON: {e}"),
        })?;
        let format = &v["format"];
        let mut info = MediaInfo {
            container: format["format_name"].as_str().unwrap_or_default().to_string(),
            duration_s: num(&format["duration"]),
            ..MediaInfo::default()
        };
        for s in v["streams"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let codec = s["codec_name"].as_str().map(str::to_string);
            match s["codec_type"].as_str() {
                // Cover art in an audio file is a one-frame "video" stream: skip it.
                Some("video") if s["disposition"]["attached_pic"].as_u64() != Some(1) && info.width.is_none() => {
                    info.width = s["width"].as_u64().and_then(|w| u32::try_from(w).ok());
                    info.height = s["height"].as_u64().and_then(|h| u32::try_from(h).ok());
                    info.fps = rate(&s["avg_frame_rate"]).or_else(|| rate(&s["r_frame_rate"]));
                    info.video_codec = codec;
                    if info.duration_s.is_none() {
                        info.duration_s = num(&s["duration"]);
                    }
                }
                Some("audio") if info.audio_codec.is_none() => {
                    info.audio_codec = codec;
                    info.sample_rate = num(&s["sample_rate"]).map(|r| r as u32);
                    info.channels = s["channels"].as_u64().and_then(|c| u32::try_from(c).ok());
                    if info.duration_s.is_none() {
                        info.duration_s = num(&s["duration"]);
                    }
                }
                _ => {}
            }
        }
        if info.width.is_none() && info.audio_codec.is_none() {
            return Err(OpsError::Decode {
                what: format!("`{}` container", info.container),
                message: "no audio or video stream".into(),
            });
        }
        Ok(info)
    }

    /// Whether there is a video stream.
    pub fn has_video(&self) -> bool {
        self.width.is_some()
    }

    /// Whether there is an audio stream.
    pub fn has_audio(&self) -> bool {
        self.audio_codec.is_some()
    }

    /// Record these facts in `meta`: width, height and duration in their
    /// fields, the rest under `extra` (`fps`, `video_codec`, `audio_codec`,
    /// `sample_rate`, `channels`, `container`); missing facts clear stale ones.
    pub fn record(&self, meta: &mut Meta) {
        meta.width = self.width;
        meta.height = self.height;
        meta.duration_s = self.duration_s;
        let mut put = |k: &str, v: Option<Value>| match v {
            Some(v) => {
                meta.extra.insert(k.into(), v);
            }
            None => {
                meta.extra.remove(k);
            }
        };
        put("fps", self.fps.map(|f| Value::from((f * 1000.0).round() / 1000.0)));
        put("video_codec", self.video_codec.clone().map(Value::from));
        put("audio_codec", self.audio_codec.clone().map(Value::from));
        put("sample_rate", self.sample_rate.map(Value::from));
        put("channels", self.channels.map(Value::from));
        put("container", Some(Value::from(self.container.clone())));
    }
}

impl Ffmpeg {
    /// Probe a file.
    pub async fn probe_file(&self, path: &std::path::Path, cancel: &CancellationToken) -> Result<MediaInfo, OpsError> {
        let mut args: Vec<std::ffi::OsString> =
            ["-v", "error", "-print_format", "json", "-show_format", "-show_streams"]
                .iter()
                .map(Into::into)
                .collect();
        args.push(path.into());
        let out = self.run_probe(args, cancel).await?;
        MediaInfo::from_ffprobe_json(&out)
    }

    /// Probe an artifact's bytes.
    pub async fn probe(&self, a: &Artifact, cancel: &CancellationToken) -> Result<MediaInfo, OpsError> {
        let scratch = Scratch::new()?;
        let p = scratch
            .write(&format!("in.{}", a.media().extension()), a.data())
            .await?;
        self.probe_file(&p, cancel).await.map_err(|e| match e {
            OpsError::Tool { tool, message } => OpsError::Decode {
                what: format!("{} ({})", a.id().short(), a.media()),
                message: format!("{tool}: {message}"),
            },
            e => e,
        })
    }
}
