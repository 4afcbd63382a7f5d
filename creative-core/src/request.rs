//! What a provider is asked for, and what it answers.

use serde::{Deserialize, Serialize};

use crate::artifact::{Artifact, MediaKind};

/// The kind of generation asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Task {
    /// Text from a prompt.
    Text,
    /// An image from a prompt.
    #[default]
    Image,
    /// An image from input images and a prompt.
    ImageEdit,
    /// A video.
    Video,
    /// Speech or other audio.
    Audio,
    /// A 3D model.
    Model3d,
}

impl Task {
    /// The media family this task produces.
    pub fn media_kind(&self) -> MediaKind {
        match self {
            Task::Text => MediaKind::Text,
            Task::Image | Task::ImageEdit => MediaKind::Image,
            Task::Video => MediaKind::Video,
            Task::Audio => MediaKind::Audio,
            Task::Model3d => MediaKind::Model3d,
        }
    }

    /// The snake-case name used in specs and capabilities.
    pub fn as_str(&self) -> &'static str {
        match self {
            Task::Text => "text",
            Task::Image => "image",
            Task::ImageEdit => "image_edit",
            Task::Video => "video",
            Task::Audio => "audio",
            Task::Model3d => "model3d",
        }
    }
}

/// The typed parameters common to most providers. Every field is optional: a
/// backend maps what it supports and ignores the rest (its capabilities say which).
///
/// Anything a backend supports that is not here goes in [`Request::raw`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Params {
    /// Output width in pixels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Output height in pixels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Aspect ratio such as `16:9`, for providers that take ratios instead of sizes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<String>,
    /// Seed for reproducible sampling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Number of candidates asked for in one call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Provider quality tier (`standard`, `hd`, `low`, `medium`, `high`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    /// Sampling steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    /// Classifier-free guidance scale.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "f32_as_written")]
    pub guidance: Option<f32>,
    /// Named style or style preset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub style: Option<String>,
    /// Output format such as `png`, `jpeg`, `webp`, `mp3_44100_128`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Duration in seconds, for audio and video.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "f32_as_written")]
    pub duration_s: Option<f32>,
    /// Voice id, for speech.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    /// Sampling temperature, for text.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "f32_as_written")]
    pub temperature: Option<f32>,
    /// Maximum output tokens, for text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// System prompt, for text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
}

/// An `f32` parameter serialised as the shortest decimal that reads back as the
/// same `f32` (the value the user wrote), so a JSON value built from it (the
/// provenance in a manifest) says `0.7`, not the `f64` widening
/// `0.699999988079071`.
fn f32_as_written<S: serde::Serializer>(v: &Option<f32>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(x) if x.is_finite() => match x.to_string().parse::<f64>() {
            Ok(f) => s.serialize_f64(f),
            Err(_) => s.serialize_f32(*x),
        },
        Some(x) => s.serialize_f32(*x),
        None => s.serialize_none(),
    }
}

impl Params {
    /// Overlay `other` on `self`: every field set in `other` wins.
    ///
    /// This is how parameter precedence is applied (defaults < preset < step <
    /// job variables < overrides): merge each layer over the one below.
    pub fn merge_from(&mut self, other: &Params) {
        macro_rules! take {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f.clone(); } )* };
        }
        take!(
            width,
            height,
            aspect_ratio,
            seed,
            count,
            quality,
            steps,
            guidance,
            style,
            format,
            duration_s,
            voice,
            temperature,
            max_tokens,
            system
        );
    }
}

/// A request to a provider.
///
/// ```
/// use creative_core::{Request, Task};
/// let mut req = Request::new(Task::Image, "a red bicycle on a beach");
/// req.params.width = Some(512);
/// req.params.height = Some(512);
/// req.params.seed = Some(7);
/// // Anything the typed params do not cover goes in `raw`, merged last into the wire body.
/// req.raw.insert("output_compression".into(), 80.into());
/// assert_eq!(req.prompt, "a red bicycle on a beach");
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Request {
    /// What kind of output.
    pub task: Task,
    /// The model; `None` lets the provider use its default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The prompt.
    #[serde(default)]
    pub prompt: String,
    /// The negative prompt, where supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// Input artifacts (images to edit, references, audio to transcribe...).
    #[serde(skip)]
    pub inputs: Vec<Artifact>,
    /// Typed common parameters.
    #[serde(default)]
    pub params: Params,
    /// The escape hatch: provider-specific fields merged last into the provider's
    /// request body, unchanged.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub raw: serde_json::Map<String, serde_json::Value>,
}

impl Request {
    /// A request with the given task and prompt and default everything else.
    pub fn new(task: Task, prompt: impl Into<String>) -> Self {
        Request {
            task,
            prompt: prompt.into(),
            ..Request::default()
        }
    }

    /// The request as JSON, as recorded in provenance (input artifacts by id).
    pub fn resolved_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let serde_json::Value::Object(m) = &mut v {
            if !self.inputs.is_empty() {
                m.insert(
                    "inputs".into(),
                    self.inputs
                        .iter()
                        .map(|a| serde_json::Value::String(a.id().to_string()))
                        .collect(),
                );
            }
        }
        v
    }
}

/// Usage reported by a provider for one call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    /// Cost in US dollars, from the provider's report or the price table.
    pub cost_usd: f64,
    /// Input tokens, for text models.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    /// Output tokens, for text models.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    /// Billable units other than tokens: images, seconds of audio or video, characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub units: Option<f64>,
}

/// What a provider returns: the artifacts and the usage of the call.
#[derive(Debug, Clone, Default)]
pub struct Generation {
    /// The outputs; more than one when several candidates were asked for.
    pub artifacts: Vec<Artifact>,
    /// Usage and cost.
    pub usage: Usage,
    /// The provider's raw response, when the backend keeps it (never holds secrets).
    pub raw: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_params_are_recorded_as_written_not_widened() {
        let mut req = Request::new(Task::Text, "x");
        req.params.temperature = Some(0.7);
        req.params.guidance = Some(3.3);
        req.params.duration_s = Some(4.1);
        let v = req.resolved_json();
        let text = serde_json::to_string(&v).unwrap();
        assert!(text.contains("\"temperature\":0.7"), "{text}");
        assert!(text.contains("\"guidance\":3.3"), "{text}");
        assert!(text.contains("\"duration_s\":4.1"), "{text}");
        // And it reads back as the same f32.
        let back: Request = serde_json::from_value(v).unwrap();
        assert_eq!(back.params.temperature, Some(0.7));
    }
}
