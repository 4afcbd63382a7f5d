//! The shapes of Gemini's answers to `:generateContent` and Imagen's
//! `:predict`, read leniently (every field optional or defaulted, counts that
//! may come as strings), so an answer with a field more or less still maps.

use serde::Deserialize;

use crate::http::{lenient_block, lenient_count};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GenerateContentResponse {
    #[serde(default)]
    pub(super) candidates: Vec<Candidate>,
    #[serde(default)]
    pub(super) prompt_feedback: Option<PromptFeedback>,
    #[serde(default, deserialize_with = "lenient_block")]
    pub(super) usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    pub(super) model_version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Candidate {
    #[serde(default)]
    pub(super) content: Option<Content>,
    #[serde(default)]
    pub(super) finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Content {
    #[serde(default)]
    pub(super) parts: Vec<Part>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Part {
    #[serde(default)]
    pub(super) text: Option<String>,
    #[serde(default, alias = "inline_data")]
    pub(super) inline_data: Option<InlineData>,
    #[serde(default)]
    pub(super) thought: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InlineData {
    #[serde(alias = "mime_type")]
    pub(super) mime_type: String,
    pub(super) data: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PromptFeedback {
    #[serde(default)]
    pub(super) block_reason: Option<String>,
    #[serde(default)]
    pub(super) block_reason_message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UsageMetadata {
    #[serde(default, deserialize_with = "lenient_count")]
    pub(super) prompt_token_count: Option<u64>,
    #[serde(default, deserialize_with = "lenient_count")]
    pub(super) candidates_token_count: Option<u64>,
    #[serde(default, deserialize_with = "lenient_count")]
    pub(super) thoughts_token_count: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub(super) struct PredictResponse {
    #[serde(default)]
    pub(super) predictions: Vec<Prediction>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Prediction {
    #[serde(default)]
    pub(super) bytes_base64_encoded: Option<String>,
    #[serde(default)]
    pub(super) mime_type: Option<String>,
    #[serde(default)]
    pub(super) rai_filtered_reason: Option<String>,
}
