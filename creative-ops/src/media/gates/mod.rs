//! Gates on audio and video: duration, loudness, silence, clipping,
//! resolution, frame rate, black and frozen frames, and image gates on sampled
//! frames.
//!
//! This file holds what they share (staging an artifact with its probe) and
//! the `duration` gate, which takes either; the rest live by sense,
//! re-exported here so their paths stay `media::gates::*`:
//! - `audio`: loudness, silence, clipping;
//! - `video`: resolution, frame rate, black and frozen frames, sampled frames.

// The `QualityGate` methods every media gate shares; defined before the gate
// modules, as a macro is visible only below its definition.
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

mod audio;
mod video;

pub use audio::{
    clipped_share, longest_silence, ClippingGate, ClippingSettings, LoudnessGate, LoudnessSettings, SilenceGate,
    SilenceSettings,
};
pub use video::{
    BlackFramesGate, BlackFramesSettings, FrameRateGate, FrameRateSettings, FramesGate, FrozenFramesGate,
    FrozenFramesSettings, ResolutionGate, ResolutionSettings,
};

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use creative_core::{Artifact, GateCtx, GateError, MediaKind, QualityGate, Verdict};

use super::audio::range_f64;
use super::{Ffmpeg, MediaInfo, Scratch, AUDIO_VIDEO};
use crate::error::OpsError;
use crate::gates::verdict_from_rules;

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
