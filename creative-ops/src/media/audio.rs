//! Audio steps: loudness normalisation, transcode, trim and fade, concatenate;
//! and the loudness measure (EBU R128 / ITU-R BS.1770 via `ebur128`).

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use creative_core::{Artifact, MediaKind, MediaType, Step, StepCtx, StepError, StepInputs};

use super::{args, finish, inputs_of, pcm, progress_events, stage, Control, Ffmpeg, Made, Scratch, AUDIO};
use crate::error::OpsError;
use crate::steps::record;

/// The rate loudness is measured at: BS.1770's filters are defined for any
/// rate, and 48 kHz keeps true-peak oversampling cheap.
const MEASURE_RATE: u32 = 48_000;

/// An audio encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AudioFormat {
    /// 16-bit PCM WAV (lossless; the default).
    #[default]
    Wav,
    /// FLAC (lossless).
    Flac,
    /// MP3 (LAME).
    Mp3,
    /// AAC in an M4A container.
    Aac,
    /// Opus in an Ogg container.
    Opus,
}

impl AudioFormat {
    /// The media type of its files.
    pub fn media(self) -> MediaType {
        match self {
            AudioFormat::Wav => MediaType::Wav,
            AudioFormat::Mp3 => MediaType::Mp3,
            AudioFormat::Flac => MediaType::Other(Arc::from("audio/flac")),
            AudioFormat::Aac => MediaType::Other(Arc::from("audio/mp4")),
            AudioFormat::Opus => MediaType::Other(Arc::from("audio/ogg")),
        }
    }

    fn codec_args(self, bitrate_kbps: Option<u32>) -> Vec<String> {
        let (codec, container, default_kbps) = match self {
            AudioFormat::Wav => ("pcm_s16le", "wav", None),
            AudioFormat::Flac => ("flac", "flac", None),
            AudioFormat::Mp3 => ("libmp3lame", "mp3", Some(192)),
            AudioFormat::Aac => ("aac", "ipod", Some(160)),
            AudioFormat::Opus => ("libopus", "ogg", Some(96)),
        };
        let mut a = vec!["-c:a".into(), codec.into()];
        if let Some(k) = bitrate_kbps.or(default_kbps).filter(|_| default_kbps.is_some()) {
            a.extend(["-b:a".into(), format!("{k}k")]);
        }
        // No encoder version tags: the same input gives the same bytes.
        a.extend([
            "-map_metadata".into(),
            "-1".into(),
            "-fflags".into(),
            "+bitexact".into(),
        ]);
        a.extend(["-f".into(), container.into()]);
        a
    }
}

/// How an audio step encodes its output.
///
/// ```toml
/// output = { format = "mp3", bitrate_kbps = 192, sample_rate = 48000, channels = 2 }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AudioOutput {
    /// The encoding (default WAV).
    #[serde(default)]
    pub format: AudioFormat,
    /// Bit rate for lossy formats, 16..=512 kbit/s (default: 192 MP3, 160 AAC, 96 Opus).
    #[serde(default)]
    pub bitrate_kbps: Option<u32>,
    /// Sample rate, 8000..=192000 Hz (default: the input's; Opus always 48000).
    #[serde(default)]
    pub sample_rate: Option<u32>,
    /// Channels, 1..=8 (default: the input's).
    #[serde(default)]
    pub channels: Option<u32>,
}

impl AudioOutput {
    /// Check the ranges.
    pub fn validate(&self) -> Result<(), OpsError> {
        range_u32("output.bitrate_kbps", self.bitrate_kbps, 16, 512)?;
        range_u32("output.sample_rate", self.sample_rate, 8000, 192_000)?;
        range_u32("output.channels", self.channels, 1, 8)
    }

    pub(crate) fn args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(r) = self.sample_rate {
            let r = if self.format == AudioFormat::Opus { 48_000 } else { r };
            a.extend(["-ar".into(), r.to_string()]);
        } else if self.format == AudioFormat::Opus {
            a.extend(["-ar".into(), "48000".into()]);
        }
        if let Some(c) = self.channels {
            a.extend(["-ac".into(), c.to_string()]);
        }
        a.extend(self.format.codec_args(self.bitrate_kbps));
        a
    }
}

pub(crate) fn range_u32(field: &'static str, v: Option<u32>, lo: u32, hi: u32) -> Result<(), OpsError> {
    match v {
        Some(v) if !(lo..=hi).contains(&v) => Err(OpsError::settings(
            field,
            format!("{v} is out of range: allowed {lo} to {hi}"),
        )),
        _ => Ok(()),
    }
}

pub(crate) fn range_f64(field: &'static str, v: f64, lo: f64, hi: f64) -> Result<(), OpsError> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(OpsError::settings(
            field,
            format!("{v} is out of range: allowed {lo} to {hi}"),
        ))
    }
}

/// The loudness of a piece of audio.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Loudness {
    /// Integrated loudness, LUFS (`-inf` for silence, as BS.1770 gates it out).
    pub integrated_lufs: f64,
    /// The highest true peak over all channels, dBTP (4x oversampled).
    pub true_peak_dbtp: f64,
    /// The highest sample magnitude over all channels (1.0 is full scale).
    pub sample_peak: f64,
}

/// Measure interleaved samples: `channels` channels at `rate` Hz.
///
/// ```
/// // A full-scale 1 kHz sine reads -3.01 LUFS in one channel (BS.1770's
/// // reference), so in both channels of a stereo pair, 0 LUFS.
/// let rate = 48_000;
/// let s: Vec<f32> = (0..rate * 2).flat_map(|i| {
///     let v = (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / rate as f32).sin();
///     [v, v]
/// }).collect();
/// let l = creative_ops::media::audio::measure(&s, 2, rate).unwrap();
/// assert!(l.integrated_lufs.abs() < 0.05, "{l:?}");
/// ```
pub fn measure(samples: &[f32], channels: u32, rate: u32) -> Result<Loudness, OpsError> {
    let err = |e: ebur128::Error| OpsError::Unfit(format!("loudness measurement: {e}"));
    let mut m = ebur128::EbuR128::new(
        channels,
        rate,
        ebur128::Mode::I | ebur128::Mode::TRUE_PEAK | ebur128::Mode::SAMPLE_PEAK,
    )
    .map_err(err)?;
    m.add_frames_f32(samples).map_err(err)?;
    let integrated_lufs = m.loudness_global().map_err(err)?;
    let (mut tp, mut sp) = (0f64, 0f64);
    for c in 0..channels {
        tp = tp.max(m.true_peak(c).map_err(err)?);
        sp = sp.max(m.sample_peak(c).map_err(err)?);
    }
    Ok(Loudness {
        integrated_lufs,
        true_peak_dbtp: 20.0 * tp.log10(),
        sample_peak: sp,
    })
}

/// Decode an audio (or video's audio) file and measure it, keeping its channels.
pub(crate) async fn measure_file(
    ff: &Ffmpeg,
    path: &std::path::Path,
    channels: u32,
    cancel: &creative_core::cancel::CancellationToken,
) -> Result<Loudness, OpsError> {
    let channels = channels.clamp(1, 8);
    let s = pcm(ff, path, MEASURE_RATE, channels, cancel).await?;
    tokio::task::spawn_blocking(move || measure(&s, channels, MEASURE_RATE))
        .await
        .map_err(|e| OpsError::Worker(e.to_string()))?
}

/// Run a one-input audio operation on every audio input: `filter` (an ffmpeg
/// `-af` chain, or none) and the output encoding.
async fn per_input<F>(
    ff: &Ffmpeg,
    inputs: &StepInputs,
    ctx: &StepCtx,
    kind: &'static str,
    settings: &Value,
    output: &AudioOutput,
    plan: F,
) -> Result<Vec<Artifact>, StepError>
where
    F: Fn(&Artifact) -> Result<(Vec<String>, Map<String, Value>), OpsError>,
{
    let mut out = Vec::new();
    for input in inputs_of(inputs, ctx, kind, MediaKind::Audio)? {
        let scratch = Scratch::new()?;
        let src = stage(&scratch, "in", &input).await?;
        let (pre, detail) = plan(&input)?;
        let dst = scratch.path("out");
        let mut a = args(["-i"]);
        a.push(src.into());
        a.extend(args(pre));
        a.extend(args(["-vn".to_string()]));
        a.extend(args(output.args()));
        a.push(dst.clone().into());
        let report = progress_events(ctx, kind);
        let total = input.meta().duration_s.map_or(0, |d| (d * 1e6) as u64);
        let ctl = Control {
            cancel: &ctx.cancel,
            progress: Some(&report),
            total_us: total,
        };
        ff.run(a, &ctl).await?;
        let bytes = scratch.read("out").await?;
        let made = Made {
            media: output.format.media(),
            bytes,
            rendition: None,
            detail,
        };
        out.push(finish(ff, ctx, kind, settings, &[&input], made).await?);
    }
    Ok(out)
}

macro_rules! audio_step {
    ($kind:literal) => {
        fn kind(&self) -> &str {
            $kind
        }
        fn accepts(&self) -> Option<&[MediaKind]> {
            Some(AUDIO)
        }
        fn produces(&self) -> Option<MediaKind> {
            Some(MediaKind::Audio)
        }
        fn min_inputs(&self) -> usize {
            1
        }
    };
}

/// Settings of the `loudness_normalize` step: measure each input's integrated
/// loudness (BS.1770) and apply the gain that brings it to the target.
///
/// A gain that would push the true peak above `max_true_peak_db` is applied
/// through a true-peak limiter (ffmpeg `alimiter`) so the output stays below the
/// ceiling; the measured input, the gain and the output's loudness are recorded
/// in provenance.
///
/// ```toml
/// [[steps]]
/// name = "voice_norm"
/// kind = "loudness_normalize"
/// inputs = ["voice"]
/// target_lufs = -16.0        # -70..=-5; -16 social, -23 broadcast (EBU R128)
/// max_true_peak_db = -1.0    # -9..=0 dBTP
/// output = { format = "wav" }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoudnessNormalizeSettings {
    /// Target integrated loudness, LUFS.
    #[serde(default = "social")]
    pub target_lufs: f64,
    /// True-peak ceiling, dBTP.
    #[serde(default = "ceiling")]
    pub max_true_peak_db: f64,
    /// Output encoding.
    #[serde(default)]
    pub output: AudioOutput,
}

fn social() -> f64 {
    -16.0
}
fn ceiling() -> f64 {
    -1.0
}

/// Normalise loudness to a target. See [`LoudnessNormalizeSettings`].
pub struct LoudnessNormalizeStep {
    s: LoudnessNormalizeSettings,
    ff: Arc<Ffmpeg>,
}

impl LoudnessNormalizeStep {
    /// Build from settings, checking them.
    pub fn new(s: LoudnessNormalizeSettings, ff: Arc<Ffmpeg>) -> Result<Self, OpsError> {
        range_f64("target_lufs", s.target_lufs, -70.0, -5.0)?;
        range_f64("max_true_peak_db", s.max_true_peak_db, -9.0, 0.0)?;
        s.output.validate()?;
        Ok(LoudnessNormalizeStep { s, ff })
    }
}

#[async_trait]
impl Step for LoudnessNormalizeStep {
    audio_step!("loudness_normalize");

    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let kind = "loudness_normalize";
        let settings = record(&self.s);
        let mut out = Vec::new();
        for input in inputs_of(inputs, ctx, kind, MediaKind::Audio)? {
            let scratch = Scratch::new()?;
            let src = stage(&scratch, "in", &input).await?;
            let info = self.ff.probe_file(&src, &ctx.cancel).await?;
            let channels = info.channels.unwrap_or(1);
            let before = measure_file(&self.ff, &src, channels, &ctx.cancel).await?;
            if !before.integrated_lufs.is_finite() {
                return Err(StepError::from(OpsError::Unfit(format!(
                    "input {} is silent (no loudness to normalise)",
                    input.id().short()
                ))));
            }
            let gain = self.s.target_lufs - before.integrated_lufs;
            let mut filter = format!("volume={gain:.3}dB");
            let limited = before.true_peak_dbtp + gain > self.s.max_true_peak_db;
            if limited {
                // alimiter works on sample peaks: keep 0.5 dB of room for the
                // inter-sample overshoot the true-peak measure sees.
                let limit = 10f64.powf((self.s.max_true_peak_db - 0.5) / 20.0).clamp(0.0625, 1.0);
                filter.push_str(&format!(",alimiter=limit={limit:.4}:level=false:attack=1:release=50"));
            }
            let dst = scratch.path("out");
            let mut a = args(["-i"]);
            a.push(src.into());
            a.extend(args(["-vn", "-af", &filter]));
            // The limiter may upsample; pin the output to the input's rate unless set.
            let mut output = self.s.output.clone();
            if output.sample_rate.is_none() {
                output.sample_rate = info.sample_rate;
            }
            a.extend(args(output.args()));
            a.push(dst.clone().into());
            self.ff.run(a, &Control::cancel_only(&ctx.cancel)).await?;
            let after = measure_file(&self.ff, &dst, channels, &ctx.cancel).await?;
            let bytes = scratch.read("out").await?;
            let mut detail = Map::new();
            detail.insert("measured_lufs".into(), json_f(before.integrated_lufs));
            detail.insert("measured_true_peak_db".into(), json_f(before.true_peak_dbtp));
            detail.insert("gain_db".into(), json_f(gain));
            detail.insert("limited".into(), Value::Bool(limited));
            detail.insert("output_lufs".into(), json_f(after.integrated_lufs));
            detail.insert("output_true_peak_db".into(), json_f(after.true_peak_dbtp));
            let made = Made {
                media: output.format.media(),
                bytes,
                rendition: None,
                detail,
            };
            out.push(finish(&self.ff, ctx, kind, &settings, &[&input], made).await?);
        }
        Ok(out)
    }
}

/// A number rounded to 0.01 for provenance (non-finite as null).
pub(crate) fn json_f(v: f64) -> Value {
    if v.is_finite() {
        Value::from((v * 100.0).round() / 100.0)
    } else {
        Value::Null
    }
}

/// Settings of the `audio_transcode` step: re-encode each audio input.
///
/// ```toml
/// [[steps]]
/// name = "voice_mp3"
/// kind = "audio_transcode"
/// inputs = ["voice"]
/// output = { format = "mp3", bitrate_kbps = 128, sample_rate = 44100 }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AudioTranscodeSettings {
    /// Output encoding.
    #[serde(default)]
    pub output: AudioOutput,
}

/// Re-encode audio. See [`AudioTranscodeSettings`].
pub struct AudioTranscodeStep {
    s: AudioTranscodeSettings,
    ff: Arc<Ffmpeg>,
}

impl AudioTranscodeStep {
    /// Build from settings, checking them.
    pub fn new(s: AudioTranscodeSettings, ff: Arc<Ffmpeg>) -> Result<Self, OpsError> {
        s.output.validate()?;
        Ok(AudioTranscodeStep { s, ff })
    }
}

#[async_trait]
impl Step for AudioTranscodeStep {
    audio_step!("audio_transcode");

    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let settings = record(&self.s);
        per_input(
            &self.ff,
            inputs,
            ctx,
            "audio_transcode",
            &settings,
            &self.s.output,
            |_| Ok((Vec::new(), Map::new())),
        )
        .await
    }
}

/// Settings of the `audio_trim` step: keep a span of each audio input and fade
/// its ends.
///
/// ```toml
/// [[steps]]
/// name = "sting"
/// kind = "audio_trim"
/// inputs = ["music"]
/// start_s = 1.5            # 0..=86400
/// duration_s = 6.0         # optional; default to the end
/// fade_in_s = 0.2          # 0..=60
/// fade_out_s = 0.5         # 0..=60
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AudioTrimSettings {
    /// Where the kept span starts, seconds.
    #[serde(default)]
    pub start_s: f64,
    /// How long it is, seconds; default to the end.
    #[serde(default)]
    pub duration_s: Option<f64>,
    /// Fade-in length, seconds.
    #[serde(default)]
    pub fade_in_s: f64,
    /// Fade-out length, seconds.
    #[serde(default)]
    pub fade_out_s: f64,
    /// Output encoding.
    #[serde(default)]
    pub output: AudioOutput,
}

/// Trim and fade audio. See [`AudioTrimSettings`].
pub struct AudioTrimStep {
    s: AudioTrimSettings,
    ff: Arc<Ffmpeg>,
}

impl AudioTrimStep {
    /// Build from settings, checking them.
    pub fn new(s: AudioTrimSettings, ff: Arc<Ffmpeg>) -> Result<Self, OpsError> {
        range_f64("start_s", s.start_s, 0.0, 86_400.0)?;
        if let Some(d) = s.duration_s {
            range_f64("duration_s", d, 0.01, 86_400.0)?;
        }
        range_f64("fade_in_s", s.fade_in_s, 0.0, 60.0)?;
        range_f64("fade_out_s", s.fade_out_s, 0.0, 60.0)?;
        s.output.validate()?;
        Ok(AudioTrimStep { s, ff })
    }
}

#[async_trait]
impl Step for AudioTrimStep {
    audio_step!("audio_trim");

    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let settings = record(&self.s);
        let s = self.s.clone();
        per_input(
            &self.ff,
            inputs,
            ctx,
            "audio_trim",
            &settings,
            &self.s.output,
            move |input| {
                let total = input.meta().duration_s;
                let end = match (s.duration_s, total) {
                    (Some(d), Some(t)) => (s.start_s + d).min(t),
                    (Some(d), None) => s.start_s + d,
                    (None, Some(t)) => t,
                    (None, None) => {
                        if s.fade_out_s > 0.0 {
                            return Err(OpsError::Unfit(format!(
                                "input {} has no known duration: probe it or give `duration_s` to fade out",
                                input.id().short()
                            )));
                        }
                        f64::INFINITY
                    }
                };
                if end <= s.start_s {
                    return Err(OpsError::Unfit(format!(
                        "start_s {} is at or past the end of input {} ({end:.2} s)",
                        s.start_s,
                        input.id().short()
                    )));
                }
                let mut f = vec![format!("atrim=start={}", s.start_s)];
                if end.is_finite() {
                    f[0].push_str(&format!(":end={end}"));
                }
                f.push("asetpts=PTS-STARTPTS".into());
                if s.fade_in_s > 0.0 {
                    f.push(format!("afade=t=in:st=0:d={}", s.fade_in_s));
                }
                if s.fade_out_s > 0.0 {
                    let len = end - s.start_s;
                    f.push(format!(
                        "afade=t=out:st={}:d={}",
                        (len - s.fade_out_s).max(0.0),
                        s.fade_out_s.min(len)
                    ));
                }
                Ok((vec!["-af".into(), f.join(",")], Map::new()))
            },
        )
        .await
    }
}

/// Settings of the `audio_concat` step: join every audio input, in input order,
/// into one.
///
/// ```toml
/// [[steps]]
/// name = "full_voice"
/// kind = "audio_concat"
/// inputs = ["intro", "voice", "outro"]
/// sample_rate = 48000     # what every part is resampled to (8000..=192000)
/// channels = 2            # and remixed to (1..=8)
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AudioConcatSettings {
    /// The common sample rate.
    #[serde(default = "rate48")]
    pub sample_rate: u32,
    /// The common channel count.
    #[serde(default = "stereo")]
    pub channels: u32,
    /// Output encoding.
    #[serde(default)]
    pub output: AudioOutput,
}

fn rate48() -> u32 {
    48_000
}
fn stereo() -> u32 {
    2
}

/// Concatenate audio. See [`AudioConcatSettings`].
pub struct AudioConcatStep {
    s: AudioConcatSettings,
    ff: Arc<Ffmpeg>,
}

impl AudioConcatStep {
    /// Build from settings, checking them.
    pub fn new(s: AudioConcatSettings, ff: Arc<Ffmpeg>) -> Result<Self, OpsError> {
        range_u32("sample_rate", Some(s.sample_rate), 8000, 192_000)?;
        range_u32("channels", Some(s.channels), 1, 8)?;
        s.output.validate()?;
        Ok(AudioConcatStep { s, ff })
    }
}

#[async_trait]
impl Step for AudioConcatStep {
    audio_step!("audio_concat");

    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let parts = inputs_of(inputs, ctx, "audio_concat", MediaKind::Audio)?;
        let scratch = Scratch::new()?;
        let mut a = Vec::new();
        let mut graph = String::new();
        for (i, p) in parts.iter().enumerate() {
            let path = stage(&scratch, &format!("in{i}"), p).await?;
            a.extend(args(["-i"]));
            a.push(path.into());
            let layout = match self.s.channels {
                1 => "mono".to_string(),
                2 => "stereo".to_string(),
                n => format!("{n}c"),
            };
            graph.push_str(&format!(
                "[{i}:a:0]aresample={},aformat=sample_fmts=fltp:channel_layouts={layout}[a{i}];",
                self.s.sample_rate
            ));
        }
        for i in 0..parts.len() {
            graph.push_str(&format!("[a{i}]"));
        }
        graph.push_str(&format!("concat=n={}:v=0:a=1[out]", parts.len()));
        a.extend(args(["-filter_complex", &graph, "-map", "[out]"]));
        a.extend(args(self.s.output.args()));
        let dst = scratch.path("out");
        a.push(dst.into());
        self.ff.run(a, &Control::cancel_only(&ctx.cancel)).await?;
        let bytes = scratch.read("out").await?;
        let made = Made {
            media: self.s.output.format.media(),
            bytes,
            rendition: None,
            detail: Map::new(),
        };
        let parents: Vec<&Artifact> = parts.iter().collect();
        Ok(vec![
            finish(&self.ff, ctx, "audio_concat", &record(&self.s), &parents, made).await?,
        ])
    }
}
