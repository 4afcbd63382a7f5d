//! Gates on audio and video: duration, loudness, silence, clipping,
//! resolution, frame rate, black and frozen frames, and image gates on sampled
//! frames.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use creative_core::{Artifact, GateCtx, GateError, MediaKind, MediaType, QualityGate, Verdict};

use super::audio::{measure_file, range_f64};
use super::{frames, pcm, Ffmpeg, MediaInfo, Scratch, AUDIO, AUDIO_VIDEO, VIDEO};
use crate::error::OpsError;
use crate::gates::verdict_from_rules;
use crate::geometry::Aspect;
use crate::raster::{EncodeSettings, Format};

/// The size frames are decoded at for the black and frozen frame checks:
/// enough to see a frame's content, small enough to decode a minute in a blink.
const CHECK_W: u32 = 64;
const CHECK_H: u32 = 36;
/// Frames per second the black and frozen checks sample.
const CHECK_FPS: f64 = 10.0;

/// An artifact staged in a scratch directory for a gate, with its probe.
struct Staged {
    _scratch: Scratch,
    path: PathBuf,
    info: MediaInfo,
}

async fn staged(ff: &Ffmpeg, gate: &str, a: &Artifact, want: &[MediaKind], ctx: &GateCtx) -> Result<Staged, GateError> {
    if !want.contains(&a.media().kind()) {
        let names: Vec<&str> = want
            .iter()
            .map(|k| match k {
                MediaKind::Audio => "audio",
                MediaKind::Video => "video",
                _ => "image",
            })
            .collect();
        return Err(GateError::new(
            gate,
            format!("needs {}; got {}", names.join(" or "), a.media()),
        ));
    }
    let g = |e: OpsError| e.into_gate(gate);
    let scratch = Scratch::new().map_err(g)?;
    let path = scratch
        .write(&format!("in.{}", a.media().extension()), a.data())
        .await
        .map_err(g)?;
    let info = ff.probe_file(&path, &ctx.cancel).await.map_err(g)?;
    Ok(Staged {
        _scratch: scratch,
        path,
        info,
    })
}

macro_rules! gate_common {
    ($accepts:expr) => {
        fn name(&self) -> &str {
            &self.name
        }
        fn accepts(&self) -> Option<&[MediaKind]> {
            Some($accepts)
        }
    };
}

/// Settings of the `duration` gate (audio or video).
///
/// Score: 1 inside the range, falling with the distance outside it.
///
/// ```toml
/// [[gates]]
/// kind = "duration"
/// min_s = 5.0     # 0..=86400
/// max_s = 15.0
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DurationSettings {
    /// Shortest allowed, seconds.
    #[serde(default)]
    pub min_s: Option<f64>,
    /// Longest allowed, seconds.
    #[serde(default)]
    pub max_s: Option<f64>,
}

/// Checks a duration range. See [`DurationSettings`].
pub struct DurationGate {
    name: String,
    s: DurationSettings,
    ff: Arc<Ffmpeg>,
}

impl DurationGate {
    /// Build from settings, checking them.
    pub fn new(s: DurationSettings, ff: Arc<Ffmpeg>) -> Result<Self, OpsError> {
        for (f, v) in [("min_s", s.min_s), ("max_s", s.max_s)] {
            if let Some(v) = v {
                range_f64(f, v, 0.0, 86_400.0)?;
            }
        }
        if let (Some(lo), Some(hi)) = (s.min_s, s.max_s) {
            if lo > hi {
                return Err(OpsError::settings("max_s", format!("{hi} is below min_s {lo}")));
            }
        }
        Ok(DurationGate {
            name: "duration".into(),
            s,
            ff,
        })
    }

    /// Judge a duration in seconds.
    pub fn judge(&self, d: f64) -> Verdict {
        let mut rules = Vec::new();
        if let Some(lo) = self.s.min_s {
            rules.push((d >= lo, format!("duration {d:.2} s is below {lo} s")));
        }
        if let Some(hi) = self.s.max_s {
            rules.push((d <= hi, format!("duration {d:.2} s is above {hi} s")));
        }
        verdict_from_rules(rules)
    }
}

#[async_trait]
impl QualityGate for DurationGate {
    gate_common!(AUDIO_VIDEO);

    async fn check(&self, a: &Artifact, ctx: &GateCtx) -> Result<Verdict, GateError> {
        let st = staged(&self.ff, &self.name, a, AUDIO_VIDEO, ctx).await?;
        let d = st
            .info
            .duration_s
            .ok_or_else(|| GateError::new(&self.name, "the container states no duration"))?;
        Ok(self.judge(d))
    }
}

/// Settings of the `loudness` gate: integrated loudness (BS.1770) within a
/// tolerance of a target, and true peak under a ceiling. Audio, or a video's
/// first audio track.
///
/// Score: 1 on target, 0.5 at the tolerance's edge, 0 at twice it.
///
/// ```toml
/// [[gates]]
/// kind = "loudness"
/// target_lufs = -16.0       # -70..=-5
/// tolerance_lu = 1.0        # 0.1..=10
/// max_true_peak_db = -1.0   # -9..=0
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoudnessSettings {
    /// Target integrated loudness, LUFS.
    #[serde(default = "minus16")]
    pub target_lufs: f64,
    /// Allowed distance from the target, LU.
    #[serde(default = "one")]
    pub tolerance_lu: f64,
    /// True-peak ceiling, dBTP.
    #[serde(default = "minus1")]
    pub max_true_peak_db: f64,
}

fn minus16() -> f64 {
    -16.0
}
fn one() -> f64 {
    1.0
}
fn minus1() -> f64 {
    -1.0
}

/// Checks loudness and true peak. See [`LoudnessSettings`].
pub struct LoudnessGate {
    name: String,
    s: LoudnessSettings,
    ff: Arc<Ffmpeg>,
}

impl LoudnessGate {
    /// Build from settings, checking them.
    pub fn new(s: LoudnessSettings, ff: Arc<Ffmpeg>) -> Result<Self, OpsError> {
        range_f64("target_lufs", s.target_lufs, -70.0, -5.0)?;
        range_f64("tolerance_lu", s.tolerance_lu, 0.1, 10.0)?;
        range_f64("max_true_peak_db", s.max_true_peak_db, -9.0, 0.0)?;
        Ok(LoudnessGate {
            name: "loudness".into(),
            s,
            ff,
        })
    }

    /// Judge a measurement.
    pub fn judge(&self, l: &super::audio::Loudness) -> Verdict {
        let (t, tol) = (self.s.target_lufs, self.s.tolerance_lu);
        if !l.integrated_lufs.is_finite() {
            return Verdict::fail(0.0, "the audio is silent (no integrated loudness)");
        }
        let off = (l.integrated_lufs - t).abs();
        let score = (1.0 - off / (2.0 * tol)).clamp(0.0, 1.0);
        let mut v = verdict_from_rules(vec![
            (
                off <= tol,
                format!(
                    "integrated loudness {:.1} LUFS is {off:.1} LU from the target {t} (tolerance {tol})",
                    l.integrated_lufs
                ),
            ),
            (
                l.true_peak_dbtp <= self.s.max_true_peak_db,
                format!(
                    "true peak {:.1} dBTP is above {} dBTP",
                    l.true_peak_dbtp, self.s.max_true_peak_db
                ),
            ),
        ]);
        v.score = if v.passed { score.max(0.5) } else { score.min(0.49) };
        v
    }
}

#[async_trait]
impl QualityGate for LoudnessGate {
    gate_common!(AUDIO_VIDEO);

    async fn check(&self, a: &Artifact, ctx: &GateCtx) -> Result<Verdict, GateError> {
        let st = staged(&self.ff, &self.name, a, AUDIO_VIDEO, ctx).await?;
        let Some(ch) = st.info.channels else {
            return Ok(Verdict::fail(0.0, "no audio track"));
        };
        let l = measure_file(&self.ff, &st.path, ch, &ctx.cancel)
            .await
            .map_err(|e| e.into_gate(&self.name))?;
        Ok(self.judge(&l))
    }
}

/// Settings of the `silence` gate: no silent stretch longer than allowed.
/// Silence is a 10 ms window whose RMS level is under `threshold_db` (dBFS).
///
/// Score: 1 with no silence, 0.5 at the limit, towards 0 beyond.
///
/// ```toml
/// [[gates]]
/// kind = "silence"
/// threshold_db = -50.0   # -100..=-10 dBFS
/// max_silence_s = 1.5    # 0.01..=3600
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceSettings {
    /// Level under which a window is silent, dBFS.
    #[serde(default = "minus50")]
    pub threshold_db: f64,
    /// Longest silent stretch allowed, seconds.
    #[serde(default = "two")]
    pub max_silence_s: f64,
}

fn minus50() -> f64 {
    -50.0
}
fn two() -> f64 {
    2.0
}

/// The rate the sample-level gates decode at.
const GATE_RATE: u32 = 16_000;

/// The longest run of 10 ms windows of mono `samples` (at `rate`) whose RMS is
/// under `threshold_db` dBFS, in seconds.
pub fn longest_silence(samples: &[f32], rate: u32, threshold_db: f64) -> f64 {
    let win = (rate / 100).max(1) as usize;
    let limit = 10f64.powf(threshold_db / 20.0);
    let (mut run, mut best) = (0usize, 0usize);
    for w in samples.chunks(win) {
        let rms = (w.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>() / w.len() as f64).sqrt();
        if rms < limit {
            run += w.len();
            best = best.max(run);
        } else {
            run = 0;
        }
    }
    best as f64 / f64::from(rate)
}

/// Checks for silent stretches. See [`SilenceSettings`].
pub struct SilenceGate {
    name: String,
    s: SilenceSettings,
    ff: Arc<Ffmpeg>,
}

impl SilenceGate {
    /// Build from settings, checking them.
    pub fn new(s: SilenceSettings, ff: Arc<Ffmpeg>) -> Result<Self, OpsError> {
        range_f64("threshold_db", s.threshold_db, -100.0, -10.0)?;
        range_f64("max_silence_s", s.max_silence_s, 0.01, 3600.0)?;
        Ok(SilenceGate {
            name: "silence".into(),
            s,
            ff,
        })
    }
}

#[async_trait]
impl QualityGate for SilenceGate {
    gate_common!(AUDIO_VIDEO);

    async fn check(&self, a: &Artifact, ctx: &GateCtx) -> Result<Verdict, GateError> {
        let st = staged(&self.ff, &self.name, a, AUDIO_VIDEO, ctx).await?;
        if !st.info.has_audio() {
            return Ok(Verdict::fail(0.0, "no audio track"));
        }
        let s = pcm(&self.ff, &st.path, GATE_RATE, 1, &ctx.cancel)
            .await
            .map_err(|e| e.into_gate(&self.name))?;
        let longest = longest_silence(&s, GATE_RATE, self.s.threshold_db);
        let max = self.s.max_silence_s;
        let score = 1.0 / (1.0 + longest / max);
        Ok(if longest <= max {
            Verdict::pass(score)
        } else {
            Verdict::fail(
                score,
                format!(
                    "{longest:.2} s of silence (under {} dBFS) is longer than {max} s",
                    self.s.threshold_db
                ),
            )
        })
    }
}

/// Settings of the `clipping` gate: few samples at full scale.
///
/// Score: 1 with none, 0.5 at the limit.
///
/// ```toml
/// [[gates]]
/// kind = "clipping"
/// max_clipped_share = 0.001   # 0..=1 of samples at or above 0.999 full scale
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClippingSettings {
    /// Largest share of samples allowed at full scale.
    #[serde(default = "milli")]
    pub max_clipped_share: f64,
}

fn milli() -> f64 {
    0.001
}

/// The share of `samples` at or above 0.999 of full scale.
pub fn clipped_share(samples: &[f32]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.iter().filter(|x| x.abs() >= 0.999).count() as f64 / samples.len() as f64
}

/// Checks for clipped samples. See [`ClippingSettings`].
pub struct ClippingGate {
    name: String,
    s: ClippingSettings,
    ff: Arc<Ffmpeg>,
}

impl ClippingGate {
    /// Build from settings, checking them.
    pub fn new(s: ClippingSettings, ff: Arc<Ffmpeg>) -> Result<Self, OpsError> {
        range_f64("max_clipped_share", s.max_clipped_share, 0.0, 1.0)?;
        Ok(ClippingGate {
            name: "clipping".into(),
            s,
            ff,
        })
    }
}

#[async_trait]
impl QualityGate for ClippingGate {
    gate_common!(AUDIO);

    async fn check(&self, a: &Artifact, ctx: &GateCtx) -> Result<Verdict, GateError> {
        let st = staged(&self.ff, &self.name, a, AUDIO, ctx).await?;
        let ch = st.info.channels.unwrap_or(1);
        // At the file's own rate: resampling would smear clipped runs.
        let rate = st.info.sample_rate.unwrap_or(48_000);
        let s = pcm(&self.ff, &st.path, rate, ch, &ctx.cancel)
            .await
            .map_err(|e| e.into_gate(&self.name))?;
        let share = clipped_share(&s);
        let max = self.s.max_clipped_share;
        let score = if max > 0.0 {
            1.0 / (1.0 + share / max)
        } else if share > 0.0 {
            0.0
        } else {
            1.0
        };
        Ok(if share <= max {
            Verdict::pass(score)
        } else {
            Verdict::fail(
                score,
                format!(
                    "{:.3}% of samples are clipped (allowed {:.3}%)",
                    share * 100.0,
                    max * 100.0
                ),
            )
        })
    }
}

/// Settings of the `resolution` gate: frame size and aspect of a video (or
/// the size of an image).
///
/// ```toml
/// [[gates]]
/// kind = "resolution"
/// min_width = 1080
/// min_height = 1080
/// aspect = "9:16"
/// aspect_tolerance = 0.01   # 0..=0.5, relative
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolutionSettings {
    /// Narrowest allowed.
    #[serde(default)]
    pub min_width: Option<u32>,
    /// Shortest allowed.
    #[serde(default)]
    pub min_height: Option<u32>,
    /// Widest allowed.
    #[serde(default)]
    pub max_width: Option<u32>,
    /// Tallest allowed.
    #[serde(default)]
    pub max_height: Option<u32>,
    /// Required aspect ratio.
    #[serde(default)]
    pub aspect: Option<Aspect>,
    /// Relative tolerance on the aspect (default 0.01).
    #[serde(default)]
    pub aspect_tolerance: Option<f64>,
}

/// Checks frame size and aspect. See [`ResolutionSettings`].
pub struct ResolutionGate {
    name: String,
    s: ResolutionSettings,
    ff: Arc<Ffmpeg>,
}

impl ResolutionGate {
    /// Build from settings, checking them.
    pub fn new(s: ResolutionSettings, ff: Arc<Ffmpeg>) -> Result<Self, OpsError> {
        let max = creative_core::limits::MAX_IMAGE_SIDE;
        for (f, v) in [
            ("min_width", s.min_width),
            ("min_height", s.min_height),
            ("max_width", s.max_width),
            ("max_height", s.max_height),
        ] {
            super::audio::range_u32(f, v, 1, max)?;
        }
        if let Some(t) = s.aspect_tolerance {
            range_f64("aspect_tolerance", t, 0.0, 0.5)?;
        }
        Ok(ResolutionGate {
            name: "resolution".into(),
            s,
            ff,
        })
    }

    /// Judge a frame size.
    pub fn judge(&self, w: u32, h: u32) -> Verdict {
        let s = &self.s;
        let mut rules = Vec::new();
        if let Some(m) = s.min_width {
            rules.push((w >= m, format!("width {w} is below {m}")));
        }
        if let Some(m) = s.min_height {
            rules.push((h >= m, format!("height {h} is below {m}")));
        }
        if let Some(m) = s.max_width {
            rules.push((w <= m, format!("width {w} is above {m}")));
        }
        if let Some(m) = s.max_height {
            rules.push((h <= m, format!("height {h} is above {m}")));
        }
        if let Some(a) = s.aspect {
            let tol = s.aspect_tolerance.unwrap_or(0.01);
            rules.push((a.matches(w, h, tol), format!("{w}x{h} is not {a} (within {tol})")));
        }
        verdict_from_rules(rules)
    }
}

#[async_trait]
impl QualityGate for ResolutionGate {
    gate_common!(&[MediaKind::Video, MediaKind::Image]);

    async fn check(&self, a: &Artifact, ctx: &GateCtx) -> Result<Verdict, GateError> {
        if a.media().kind() == MediaKind::Image {
            let p = creative_core::artifact::probe(a.media(), a.data())
                .map_err(|e| GateError::new(&self.name, e.to_string()))?;
            return match (p.width, p.height) {
                (Some(w), Some(h)) => Ok(self.judge(w, h)),
                _ => Err(GateError::new(
                    &self.name,
                    format!("cannot read the size of {}", a.media()),
                )),
            };
        }
        let st = staged(&self.ff, &self.name, a, VIDEO, ctx).await?;
        match (st.info.width, st.info.height) {
            (Some(w), Some(h)) => Ok(self.judge(w, h)),
            _ => Ok(Verdict::fail(0.0, "no video track")),
        }
    }
}

/// Settings of the `frame_rate` gate.
///
/// ```toml
/// [[gates]]
/// kind = "frame_rate"
/// min_fps = 23.976    # 1..=240
/// max_fps = 60.0
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FrameRateSettings {
    /// Lowest allowed, frames a second.
    #[serde(default)]
    pub min_fps: Option<f64>,
    /// Highest allowed.
    #[serde(default)]
    pub max_fps: Option<f64>,
}

/// Checks the frame rate. See [`FrameRateSettings`].
pub struct FrameRateGate {
    name: String,
    s: FrameRateSettings,
    ff: Arc<Ffmpeg>,
}

impl FrameRateGate {
    /// Build from settings, checking them.
    pub fn new(s: FrameRateSettings, ff: Arc<Ffmpeg>) -> Result<Self, OpsError> {
        for (f, v) in [("min_fps", s.min_fps), ("max_fps", s.max_fps)] {
            if let Some(v) = v {
                range_f64(f, v, 1.0, 240.0)?;
            }
        }
        Ok(FrameRateGate {
            name: "frame_rate".into(),
            s,
            ff,
        })
    }
}

#[async_trait]
impl QualityGate for FrameRateGate {
    gate_common!(VIDEO);

    async fn check(&self, a: &Artifact, ctx: &GateCtx) -> Result<Verdict, GateError> {
        let st = staged(&self.ff, &self.name, a, VIDEO, ctx).await?;
        let Some(fps) = st.info.fps else {
            return Ok(Verdict::fail(0.0, "no video track with a frame rate"));
        };
        let mut rules = Vec::new();
        // 0.01 fps of slack: 23.976 is stored as 24000/1001.
        if let Some(m) = self.s.min_fps {
            rules.push((fps >= m - 0.01, format!("{fps:.3} fps is below {m}")));
        }
        if let Some(m) = self.s.max_fps {
            rules.push((fps <= m + 0.01, format!("{fps:.3} fps is above {m}")));
        }
        Ok(verdict_from_rules(rules))
    }
}

/// Settings of the `black_frames` gate: no stretch of black frames longer
/// than allowed. A frame is black when at least `pixel_share` of its pixels
/// have luma under `luma_threshold`; frames are sampled 10 a second.
///
/// ```toml
/// [[gates]]
/// kind = "black_frames"
/// max_black_s = 0.5       # 0..=3600
/// luma_threshold = 32     # 1..=255 (8-bit luma)
/// pixel_share = 0.98      # 0.5..=1
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlackFramesSettings {
    /// Longest black stretch allowed, seconds.
    #[serde(default = "half")]
    pub max_black_s: f64,
    /// Luma under which a pixel is black.
    #[serde(default = "dark")]
    pub luma_threshold: u8,
    /// Share of black pixels that makes a frame black.
    #[serde(default = "most")]
    pub pixel_share: f64,
}

fn half() -> f64 {
    0.5
}
fn dark() -> u8 {
    32
}
fn most() -> f64 {
    0.98
}

/// The longest run of `pred`-true frames, as a count.
fn longest_run(flags: impl Iterator<Item = bool>) -> usize {
    let (mut run, mut best) = (0, 0);
    for f in flags {
        run = if f { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

/// Checks for black stretches. See [`BlackFramesSettings`].
pub struct BlackFramesGate {
    name: String,
    s: BlackFramesSettings,
    ff: Arc<Ffmpeg>,
}

impl BlackFramesGate {
    /// Build from settings, checking them.
    pub fn new(s: BlackFramesSettings, ff: Arc<Ffmpeg>) -> Result<Self, OpsError> {
        range_f64("max_black_s", s.max_black_s, 0.0, 3600.0)?;
        range_f64("luma_threshold", f64::from(s.luma_threshold), 1.0, 255.0)?;
        range_f64("pixel_share", s.pixel_share, 0.5, 1.0)?;
        Ok(BlackFramesGate {
            name: "black_frames".into(),
            s,
            ff,
        })
    }

    /// Whether one grey frame is black.
    pub fn is_black(&self, frame: &[u8]) -> bool {
        let dark = frame.iter().filter(|&&p| p < self.s.luma_threshold).count();
        dark as f64 >= self.s.pixel_share * frame.len() as f64
    }
}

#[async_trait]
impl QualityGate for BlackFramesGate {
    gate_common!(VIDEO);

    async fn check(&self, a: &Artifact, ctx: &GateCtx) -> Result<Verdict, GateError> {
        let st = staged(&self.ff, &self.name, a, VIDEO, ctx).await?;
        let f = frames(
            &self.ff,
            &st.path,
            CHECK_W,
            CHECK_H,
            Some(CHECK_FPS),
            false,
            &ctx.cancel,
        )
        .await
        .map_err(|e| e.into_gate(&self.name))?;
        if f.is_empty() {
            return Err(GateError::new(&self.name, "no frames decoded"));
        }
        let black = longest_run(f.iter().map(|fr| self.is_black(fr))) as f64 / CHECK_FPS;
        let max = self.s.max_black_s;
        let score = 1.0 / (1.0 + black / max.max(0.1));
        Ok(if black <= max {
            Verdict::pass(score)
        } else {
            Verdict::fail(score, format!("{black:.1} s of black frames is longer than {max} s"))
        })
    }
}

/// Settings of the `frozen_frames` gate: no stretch where the picture stands
/// still longer than allowed (sampled 10 frames a second; a frame is frozen
/// when its mean absolute luma difference from the previous is under
/// `max_change`).
///
/// ```toml
/// [[gates]]
/// kind = "frozen_frames"
/// max_frozen_s = 1.0   # 0.1..=3600
/// max_change = 0.5     # 0..=255 mean absolute luma difference
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FrozenFramesSettings {
    /// Longest still stretch allowed, seconds.
    #[serde(default = "one")]
    pub max_frozen_s: f64,
    /// Change under which a frame counts as unchanged.
    #[serde(default = "half")]
    pub max_change: f64,
}

/// Checks for frozen stretches. See [`FrozenFramesSettings`].
pub struct FrozenFramesGate {
    name: String,
    s: FrozenFramesSettings,
    ff: Arc<Ffmpeg>,
}

impl FrozenFramesGate {
    /// Build from settings, checking them.
    pub fn new(s: FrozenFramesSettings, ff: Arc<Ffmpeg>) -> Result<Self, OpsError> {
        range_f64("max_frozen_s", s.max_frozen_s, 0.1, 3600.0)?;
        range_f64("max_change", s.max_change, 0.0, 255.0)?;
        Ok(FrozenFramesGate {
            name: "frozen_frames".into(),
            s,
            ff,
        })
    }
}

#[async_trait]
impl QualityGate for FrozenFramesGate {
    gate_common!(VIDEO);

    async fn check(&self, a: &Artifact, ctx: &GateCtx) -> Result<Verdict, GateError> {
        let st = staged(&self.ff, &self.name, a, VIDEO, ctx).await?;
        let f = frames(
            &self.ff,
            &st.path,
            CHECK_W,
            CHECK_H,
            Some(CHECK_FPS),
            false,
            &ctx.cancel,
        )
        .await
        .map_err(|e| e.into_gate(&self.name))?;
        let still = f.windows(2).map(|w| {
            let d: u64 = w[0].iter().zip(&w[1]).map(|(a, b)| u64::from(a.abs_diff(*b))).sum();
            (d as f64 / w[0].len() as f64) <= self.s.max_change
        });
        // A run of n unchanged pairs spans n frame intervals.
        let frozen = longest_run(still) as f64 / CHECK_FPS;
        let max = self.s.max_frozen_s;
        let score = 1.0 / (1.0 + frozen / max);
        Ok(if frozen <= max {
            Verdict::pass(score)
        } else {
            Verdict::fail(
                score,
                format!("the picture is frozen for {frozen:.1} s (allowed {max} s)"),
            )
        })
    }
}

/// Image gates on frames sampled evenly through a video: the `frames` gate.
///
/// Passes when every member passes on every sampled frame; the score is the
/// lowest member score. Reasons name the frame's time.
///
/// ```toml
/// [[gates]]
/// kind = "frames"
/// samples = 5        # 1..=60
/// gates = [{ kind = "sharpness", min_variance = 50.0 }, { kind = "exposure" }]
/// ```
pub struct FramesGate {
    name: String,
    samples: u32,
    members: Vec<Arc<dyn QualityGate>>,
    ff: Arc<Ffmpeg>,
}

impl FramesGate {
    /// A gate that runs `members` (image gates) on `samples` frames.
    pub fn new(samples: u32, members: Vec<Arc<dyn QualityGate>>, ff: Arc<Ffmpeg>) -> Result<Self, OpsError> {
        super::audio::range_u32("samples", Some(samples), 1, 60)?;
        if members.is_empty() {
            return Err(OpsError::settings("gates", "list at least one image gate"));
        }
        Ok(FramesGate {
            name: "frames".into(),
            samples,
            members,
            ff,
        })
    }
}

#[async_trait]
impl QualityGate for FramesGate {
    gate_common!(VIDEO);

    async fn check(&self, a: &Artifact, ctx: &GateCtx) -> Result<Verdict, GateError> {
        let st = staged(&self.ff, &self.name, a, VIDEO, ctx).await?;
        let g = |e: OpsError| e.into_gate(&self.name);
        let sampled = super::video::sample_frames(&self.ff, &st.path, &st.info, self.samples, None, &ctx.cancel)
            .await
            .map_err(g)?;
        let mut v = Verdict::pass(1.0);
        for (t, frame) in sampled {
            let png = frame.encode(Format::Png, &EncodeSettings::default()).map_err(g)?;
            let img = Artifact::new(MediaType::Png, png);
            for m in &self.members {
                let r = m.check(&img, ctx).await?;
                v.score = v.score.min(r.score);
                if !r.passed {
                    v.passed = false;
                    v.reasons.extend(
                        r.reasons
                            .into_iter()
                            .map(|why| format!("frame at {t:.2} s: {}: {why}", m.name())),
                    );
                }
            }
        }
        Ok(v)
    }
}
