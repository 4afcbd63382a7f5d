use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use creative_core::{Artifact, ArtifactId, GateCtx, GateError, MediaKind, QualityGate, Verdict};

use super::{on_pixels, IMAGE};
use crate::error::OpsError;
use crate::phash::{self, HashKind};
use crate::raster::Raster;

/// Settings of the `dedupe` gate.
///
/// Score: the Hamming distance to the nearest earlier image over 64 (1 when
/// there is none).
///
/// ```toml
/// [[gates]]
/// kind = "dedupe"
/// max_distance = 8   # 64-bit hash distance at or below which two images are duplicates
/// hash = "phash"     # phash | dhash
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DedupeSettings {
    /// Distance at or below which two images are near-duplicates.
    #[serde(default = "dedupe_distance")]
    pub max_distance: u32,
    /// Which perceptual hash.
    #[serde(default)]
    pub hash: HashKind,
}

impl Default for DedupeSettings {
    fn default() -> Self {
        DedupeSettings {
            max_distance: dedupe_distance(),
            hash: HashKind::default(),
        }
    }
}

fn dedupe_distance() -> u32 {
    8
}

#[derive(Debug, Clone)]
struct Seen {
    hash: u64,
    id: ArtifactId,
    job: String,
}

/// Rejects near-duplicates within a campaign.
///
/// The gate keeps the perceptual hash of every image it passed, across all the
/// jobs of a run (one gate instance serves the whole run), and fails an image
/// whose hash is within `max_distance` of one of them. The check and the record
/// happen under one lock, so two near-identical images judged at the same time
/// cannot both pass. The same artifact judged twice is not its own duplicate.
/// An image that passes here and fails a later gate stays recorded: it was seen.
#[derive(Debug, Clone)]
pub struct DedupeGate {
    name: String,
    s: DedupeSettings,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl DedupeGate {
    /// Build from settings, checking them.
    pub fn new(s: DedupeSettings) -> Result<Self, OpsError> {
        if s.max_distance >= 32 {
            return Err(OpsError::settings(
                "max_distance",
                "must be below 32 (half the hash bits); unrelated images sit near 32",
            ));
        }
        Ok(DedupeGate {
            name: "dedupe".into(),
            s,
            seen: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// Rename the gate.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How many images the gate has recorded.
    pub fn seen(&self) -> usize {
        self.seen.lock().map(|s| s.len()).unwrap_or(0)
    }

    fn decide(&self, hash: u64, id: &ArtifactId, job: &str) -> Result<Verdict, GateError> {
        let mut seen = self
            .seen
            .lock()
            .map_err(|_| GateError::new(&self.name, "state poisoned by an earlier panic"))?;
        if seen.iter().any(|s| &s.id == id) {
            return Ok(Verdict::pass(1.0));
        }
        let nearest = seen
            .iter()
            .map(|s| (phash::distance(s.hash, hash), s))
            .min_by_key(|(d, _)| *d);
        match nearest {
            Some((d, s)) if d <= self.s.max_distance => Ok(Verdict::fail(
                f64::from(d) / 64.0,
                format!(
                    "near-duplicate of {} from job {} (hash distance {d} <= {})",
                    s.id.short(),
                    s.job,
                    self.s.max_distance
                ),
            )),
            other => {
                let score = other.map_or(1.0, |(d, _)| f64::from(d) / 64.0);
                seen.push(Seen {
                    hash,
                    id: id.clone(),
                    job: job.to_string(),
                });
                Ok(Verdict::pass(score))
            }
        }
    }
}

#[async_trait]
impl QualityGate for DedupeGate {
    fn name(&self) -> &str {
        &self.name
    }
    fn accepts(&self) -> Option<&[MediaKind]> {
        Some(IMAGE)
    }
    async fn check(&self, a: &Artifact, ctx: &GateCtx) -> Result<Verdict, GateError> {
        let kind = self.s.hash;
        let hash = on_pixels(&self.name, a, move |img| phash::hash(&img, kind)).await?;
        self.decide(hash, a.id(), &ctx.job_key)
    }
}

/// Settings of the `consistency` gate.
///
/// Score: `1 - distance / 64`.
///
/// ```toml
/// [[gates]]
/// kind = "consistency"
/// reference = "brand/hero-reference.png"   # resolved against the spec's folder
/// max_distance = 12
/// hash = "phash"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsistencySettings {
    /// The reference image file.
    pub reference: String,
    /// Largest hash distance that still counts as consistent.
    #[serde(default = "consistency_distance")]
    pub max_distance: u32,
    /// Which perceptual hash.
    #[serde(default)]
    pub hash: HashKind,
}

fn consistency_distance() -> u32 {
    12
}

/// Checks that an image stays close to a reference (same product, same layout)
/// by perceptual-hash distance.
#[derive(Debug, Clone)]
pub struct ConsistencyGate {
    name: String,
    max_distance: u32,
    kind: HashKind,
    reference: u64,
}

impl ConsistencyGate {
    /// A gate comparing with an already decoded reference image.
    pub fn new(reference: &Raster, max_distance: u32, kind: HashKind) -> Result<Self, OpsError> {
        if max_distance >= 64 {
            return Err(OpsError::settings("max_distance", "must be below 64"));
        }
        Ok(ConsistencyGate {
            name: "consistency".into(),
            max_distance,
            kind,
            reference: phash::hash(reference, kind),
        })
    }

    /// Rename the gate.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Judge a decoded image.
    pub fn judge(&self, img: &Raster) -> Verdict {
        let d = phash::distance(self.reference, phash::hash(img, self.kind));
        let score = 1.0 - f64::from(d) / 64.0;
        if d <= self.max_distance {
            Verdict::pass(score)
        } else {
            Verdict::fail(
                score,
                format!("drifted from the reference: hash distance {d} > {}", self.max_distance),
            )
        }
    }
}

#[async_trait]
impl QualityGate for ConsistencyGate {
    fn name(&self) -> &str {
        &self.name
    }
    fn accepts(&self) -> Option<&[MediaKind]> {
        Some(IMAGE)
    }
    async fn check(&self, a: &Artifact, _ctx: &GateCtx) -> Result<Verdict, GateError> {
        let me = self.clone();
        on_pixels(&self.name, a, move |img| me.judge(&img)).await
    }
}
