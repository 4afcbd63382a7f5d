use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use creative_core::{Artifact, MediaKind, Provenance, Step, StepCtx, StepError, StepInputs};

use super::{image_inputs, IMAGE};
use crate::error::OpsError;
use crate::metadata;
use crate::raster::Format;

/// What the `metadata` step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetadataMode {
    /// Embed the input's id and provenance (JSON) in the file: PNG `iTXt`, JPEG
    /// `COM`, WebP XMP. The default.
    #[default]
    Write,
    /// Remove text and camera metadata, keeping colour profiles.
    Strip,
}

/// Settings of the `metadata` step. The pixels are never re-encoded.
///
/// ```toml
/// [[steps]]
/// name = "tagged"
/// kind = "metadata"
/// inputs = ["branded"]
/// mode = "write"      # write | strip
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetadataSettings {
    /// Write or strip.
    #[serde(default)]
    pub mode: MetadataMode,
}

/// Write provenance into image files, or strip their metadata.
#[derive(Debug, Clone)]
pub struct MetadataStep {
    s: MetadataSettings,
}

impl MetadataStep {
    /// Build from settings.
    pub fn new(s: MetadataSettings) -> Self {
        MetadataStep { s }
    }

    /// The bytes of `input` with its provenance written (or its metadata
    /// stripped).
    pub fn apply(&self, input: &Artifact) -> Result<Vec<u8>, OpsError> {
        let format = Format::from_media(input.media())
            .ok_or_else(|| OpsError::Unfit(format!("metadata: {} is not PNG, JPEG or WebP", input.media())))?;
        match self.s.mode {
            MetadataMode::Strip => metadata::strip(input.data(), format),
            MetadataMode::Write => {
                let doc = serde_json::json!({
                    "artifact": input.id(),
                    "media": input.media(),
                    "provenance": input.provenance(),
                    "meta": input.meta(),
                });
                metadata::embed(input.data(), format, &doc.to_string())
            }
        }
    }
}

#[async_trait]
impl Step for MetadataStep {
    fn kind(&self) -> &str {
        "metadata"
    }
    fn accepts(&self) -> Option<&[MediaKind]> {
        Some(IMAGE)
    }
    fn produces(&self) -> Option<MediaKind> {
        Some(MediaKind::Image)
    }
    fn min_inputs(&self) -> usize {
        1
    }
    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let images = image_inputs(inputs.all(), ctx, "metadata")?;
        let me = self.clone();
        let step = ctx.step.to_string();
        // Byte surgery only, but on possibly large files: keep it off the async threads.
        tokio::task::spawn_blocking(move || {
            images
                .iter()
                .map(|input| {
                    let bytes = me.apply(input)?;
                    let provenance = Provenance {
                        step: step.clone(),
                        params: serde_json::json!({ "op": "metadata", "settings": me.s }),
                        parents: vec![input.id().clone()],
                        ..Provenance::default()
                    };
                    Ok(Artifact::new(input.media().clone(), bytes)
                        .with_meta(input.meta().clone())
                        .with_provenance(provenance))
                })
                .collect::<Result<Vec<_>, OpsError>>()
        })
        .await
        .map_err(|e| StepError::from(OpsError::Worker(e.to_string())))?
        .map_err(StepError::from)
    }
}
