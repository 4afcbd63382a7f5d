use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use creative_core::{Artifact, GateCtx, GateError, MediaType, QualityGate, Verdict};

use super::verdict_from_rules;
use crate::error::OpsError;
use crate::geometry::Aspect;

/// Settings of the `format` gate; every rule is optional.
///
/// Score: the share of rules that hold.
///
/// ```toml
/// [[gates]]
/// name = "fits-story"
/// kind = "format"
/// media = ["image/jpeg", "image/png"]
/// min_width = 1080
/// min_height = 1920
/// max_width = 4096
/// max_height = 4096
/// aspect = "9:16"
/// aspect_tolerance = 0.01     # relative (default 1%)
/// min_bytes = 10_000
/// max_bytes = 5_000_000
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FormatSettings {
    /// Allowed media types; empty allows any.
    #[schemars(with = "Vec<String>")]
    #[serde(default)]
    pub media: Vec<MediaType>,
    /// Smallest width.
    #[serde(default)]
    pub min_width: Option<u32>,
    /// Largest width.
    #[serde(default)]
    pub max_width: Option<u32>,
    /// Smallest height.
    #[serde(default)]
    pub min_height: Option<u32>,
    /// Largest height.
    #[serde(default)]
    pub max_height: Option<u32>,
    /// Required aspect ratio.
    #[serde(default)]
    pub aspect: Option<Aspect>,
    /// Relative tolerance on the aspect ratio (default 0.01).
    #[serde(default)]
    pub aspect_tolerance: Option<f64>,
    /// Smallest file size in bytes.
    #[serde(default)]
    pub min_bytes: Option<u64>,
    /// Largest file size in bytes.
    #[serde(default)]
    pub max_bytes: Option<u64>,
}

/// Checks media type, dimensions (read from the file header, not trusted from
/// metadata), aspect ratio and file size.
#[derive(Debug, Clone)]
pub struct FormatGate {
    name: String,
    s: FormatSettings,
}

impl FormatGate {
    /// Build from settings, checking them.
    pub fn new(s: FormatSettings) -> Result<Self, OpsError> {
        let pairs = [
            ("min_width", s.min_width.map(u64::from), s.max_width.map(u64::from)),
            ("min_height", s.min_height.map(u64::from), s.max_height.map(u64::from)),
            ("min_bytes", s.min_bytes, s.max_bytes),
        ];
        for (field, lo, hi) in pairs {
            if let (Some(lo), Some(hi)) = (lo, hi) {
                if lo > hi {
                    return Err(OpsError::settings(field, format!("{lo} is above the maximum {hi}")));
                }
            }
        }
        if let Some(t) = s.aspect_tolerance {
            if !(0.0..1.0).contains(&t) {
                return Err(OpsError::settings("aspect_tolerance", "must be within 0..1"));
            }
        }
        Ok(FormatGate {
            name: "format".into(),
            s,
        })
    }

    /// Rename the gate.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

fn dimensions(data: &[u8]) -> Option<(u32, u32)> {
    crate::raster::declared_dimensions(data, "image").ok()
}

#[async_trait]
impl QualityGate for FormatGate {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self, a: &Artifact, _ctx: &GateCtx) -> Result<Verdict, GateError> {
        let s = &self.s;
        let mut rules = Vec::new();
        if !s.media.is_empty() {
            let allowed: Vec<&str> = s.media.iter().map(MediaType::as_str).collect();
            rules.push((
                s.media.contains(a.media()),
                format!("media {} is not one of [{}]", a.media(), allowed.join(", ")),
            ));
        }
        let len = a.data().len() as u64;
        if let Some(min) = s.min_bytes {
            rules.push((len >= min, format!("{len} bytes is below the minimum {min}")));
        }
        if let Some(max) = s.max_bytes {
            rules.push((len <= max, format!("{len} bytes is above the maximum {max}")));
        }
        let wants_dims = s.min_width.is_some()
            || s.max_width.is_some()
            || s.min_height.is_some()
            || s.max_height.is_some()
            || s.aspect.is_some();
        if wants_dims {
            match dimensions(a.data()) {
                None => rules.push((false, format!("cannot read image dimensions from {}", a.media()))),
                Some((w, h)) => {
                    // A header can claim any size: one beyond what the engine
                    // would ever decode is a decompression bomb, not a candidate.
                    if let Err(m) = crate::raster::check_image_size(w, h) {
                        rules.push((false, format!("the image declares {m} (decompression-bomb guard)")));
                    }
                    let checks = [
                        (s.min_width, w >= s.min_width.unwrap_or(0), "width", "below the minimum"),
                        (
                            s.max_width,
                            w <= s.max_width.unwrap_or(u32::MAX),
                            "width",
                            "above the maximum",
                        ),
                        (
                            s.min_height,
                            h >= s.min_height.unwrap_or(0),
                            "height",
                            "below the minimum",
                        ),
                        (
                            s.max_height,
                            h <= s.max_height.unwrap_or(u32::MAX),
                            "height",
                            "above the maximum",
                        ),
                    ];
                    for (limit, ok, what, how) in checks {
                        if let Some(l) = limit {
                            let v = if what == "width" { w } else { h };
                            rules.push((ok, format!("{what} {v} is {how} {l}")));
                        }
                    }
                    if let Some(asp) = s.aspect {
                        let tol = s.aspect_tolerance.unwrap_or(0.01);
                        rules.push((
                            asp.matches(w, h, tol),
                            format!("{w}x{h} is not {asp} (tolerance {:.1}%)", tol * 100.0),
                        ));
                    }
                }
            }
        }
        Ok(verdict_from_rules(rules))
    }
}
