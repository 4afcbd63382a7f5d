//! The gates that look: `resolution`, `frame_rate`, `black_frames` and
//! `frozen_frames` on the video stream, and `frames`, which runs image gates
//! on frames sampled through the clip.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use creative_core::{Artifact, GateCtx, GateError, MediaKind, MediaType, QualityGate, Verdict};

use super::audio::one;
use super::staged;
use crate::error::OpsError;
use crate::gates::verdict_from_rules;
use crate::geometry::Aspect;
use crate::media::audio::range_f64;
use crate::media::{frames, Ffmpeg, VIDEO};
use crate::raster::{EncodeSettings, Format};

/// The size frames are decoded at for the black and frozen frame checks:
/// enough to see a frame's content, small enough to decode a minute in a blink.
const CHECK_W: u32 = 64;
const CHECK_H: u32 = 36;
/// Frames per second the black and frozen checks sample.
const CHECK_FPS: f64 = 10.0;

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
            crate::media::audio::range_u32(f, v, 1, max)?;
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
        crate::media::audio::range_u32("samples", Some(samples), 1, 60)?;
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
        let sampled = crate::media::video::sample_frames(&self.ff, &st.path, &st.info, self.samples, None, &ctx.cancel)
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
