//! The gates that listen: `loudness` (BS.1770 integrated loudness and true
//! peak), `silence` (no silent stretch longer than allowed) and `clipping`
//! (few samples at full scale).

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use creative_core::{Artifact, GateCtx, GateError, MediaKind, QualityGate, Verdict};

use super::staged;
use crate::error::OpsError;
use crate::gates::verdict_from_rules;
use crate::media::audio::{measure_file, range_f64};
use crate::media::{pcm, Ffmpeg, AUDIO, AUDIO_VIDEO};

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
pub(super) fn one() -> f64 {
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
    pub fn judge(&self, l: &crate::media::audio::Loudness) -> Verdict {
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
