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

/// The boxes of an ISO BMFF (MP4) byte range: (type, body). Stops at the first
/// box whose size does not fit.
fn boxes(mut data: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    std::iter::from_fn(move || {
        let size = u32::from_be_bytes(data.get(0..4)?.try_into().ok()?) as u64;
        let kind: [u8; 4] = data.get(4..8)?.try_into().ok()?;
        let (head, size) = match size {
            0 => (8, data.len() as u64),
            1 => (16, u64::from_be_bytes(data.get(8..16)?.try_into().ok()?)),
            s => (8, s),
        };
        let size = usize::try_from(size).ok()?;
        if size < head || size > data.len() {
            return None;
        }
        let body = &data[head..size];
        data = &data[size..];
        Some((kind, body))
    })
}

fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes(data).find(|(k, _)| k == kind).map(|(_, b)| b)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// (timescale, duration) of an `mvhd` or `mdhd` body, either version.
fn time_box(b: &[u8]) -> Option<(u32, u64)> {
    match b.first()? {
        0 => Some((be32(b, 12)?, u64::from(be32(b, 16)?))),
        1 => Some((be32(b, 20)?, be64(b, 24)?)),
        _ => None,
    }
}

/// The channels and sample rate of an `mp4a` entry holding AAC-LC, from its
/// `esds` (the entry's own channel field says 2 whatever the stream has).
/// `None` for anything else: MP3 in MP4, HE-AAC (whose rate ffprobe doubles),
/// descriptors with optional fields.
fn aac_lc(entry: &[u8]) -> Option<(u32, u32)> {
    // The audio sample entry's fields take 28 bytes before its child boxes.
    let esds = child(entry.get(28..)?, b"esds")?;
    let mut i = 4; // version and flags
                   // A descriptor: its tag, then a length of 1 to 4 bytes.
    let open = |tag: u8, i: &mut usize| -> Option<()> {
        (*esds.get(*i)? == tag).then_some(())?;
        *i += 1;
        for _ in 0..4 {
            let b = *esds.get(*i)?;
            *i += 1;
            if b & 0x80 == 0 {
                return Some(());
            }
        }
        None
    };
    open(3, &mut i)?; // ES_Descriptor: ES_ID, then flags
    (*esds.get(i + 2)? == 0).then_some(())?;
    i += 3;
    open(4, &mut i)?; // DecoderConfigDescriptor
    (*esds.get(i)? == 0x40).then_some(())?; // MPEG-4 audio
    i += 13;
    open(5, &mut i)?; // DecoderSpecificInfo: the AudioSpecificConfig
    let (b0, b1) = (*esds.get(i)?, *esds.get(i + 1)?);
    (b0 >> 3 == 2).then_some(())?; // AAC-LC
    const RATES: [u32; 13] = [
        96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000, 7_350,
    ];
    let rate = *RATES.get(usize::from(((b0 & 7) << 1) | (b1 >> 7)))?;
    let channels = match (b1 >> 3) & 0xF {
        c @ 1..=6 => u32::from(c),
        7 => 8,
        _ => return None,
    };
    Some((channels, rate))
}

impl MediaInfo {
    /// The facts of an MP4 read from its header (`moov`) alone, without
    /// running ffprobe: the first video and audio tracks' codec, size, frame
    /// rate, sample rate and channels, and the movie's duration. `None` for
    /// anything it does not read with certainty (a fragmented file, a codec
    /// it does not name, an unusual descriptor), so the caller asks ffprobe.
    ///
    /// Used on files the media steps write, for which it agrees with ffprobe
    /// (the media tests check both on every step's output).
    pub fn from_mp4_header(data: &[u8]) -> Option<Self> {
        let moov = child(data, b"moov")?;
        if child(moov, b"mvex").is_some() {
            return None;
        }
        let (scale, duration) = time_box(child(moov, b"mvhd")?)?;
        if scale == 0 {
            return None;
        }
        let mut info = MediaInfo {
            container: "mov,mp4,m4a,3gp,3g2,mj2".into(),
            duration_s: Some(duration as f64 / f64::from(scale)),
            ..MediaInfo::default()
        };
        for (kind, trak) in boxes(moov) {
            if &kind != b"trak" {
                continue;
            }
            let mdia = child(trak, b"mdia")?;
            let handler: [u8; 4] = child(mdia, b"hdlr")?.get(8..12)?.try_into().ok()?;
            let (tscale, tduration) = time_box(child(mdia, b"mdhd")?)?;
            let stbl = child(child(mdia, b"minf")?, b"stbl")?;
            let stsd = child(stbl, b"stsd")?;
            let (codec, entry) = boxes(stsd.get(8..)?).next()?;
            match &handler {
                b"vide" if info.width.is_none() => {
                    info.video_codec = Some(
                        match &codec {
                            b"avc1" | b"avc3" => "h264",
                            b"hvc1" | b"hev1" => "hevc",
                            b"vp09" => "vp9",
                            b"av01" => "av1",
                            _ => return None,
                        }
                        .into(),
                    );
                    // The visual sample entry: 24 bytes, then width and height.
                    info.width = Some(u32::from(be16(entry, 24)?));
                    info.height = Some(u32::from(be16(entry, 26)?));
                    // Frames over the track's duration, as ffprobe's average rate.
                    let stts = child(stbl, b"stts")?;
                    let mut frames = 0u64;
                    for e in 0..be32(stts, 4)? as usize {
                        frames += u64::from(be32(stts, 8 + e * 8)?);
                    }
                    if tscale > 0 && tduration > 0 && frames > 0 {
                        info.fps = Some(frames as f64 * f64::from(tscale) / tduration as f64);
                    }
                }
                b"soun" if info.audio_codec.is_none() => {
                    // AAC only: the steps write nothing else into MP4.
                    if &codec != b"mp4a" {
                        return None;
                    }
                    let (channels, rate) = aac_lc(entry)?;
                    info.audio_codec = Some("aac".into());
                    info.channels = Some(channels);
                    info.sample_rate = Some(rate);
                }
                _ => {}
            }
        }
        (info.has_video() || info.has_audio()).then_some(info)
    }
}
