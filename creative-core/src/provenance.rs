//! Provenance: everything needed to explain and reproduce an artifact.

use serde::{Deserialize, Serialize};

use crate::artifact::ArtifactId;
use crate::gate::Verdict;

/// Where an artifact came from.
///
/// A generated artifact records the provider, model, fully resolved request
/// parameters, seed and attempt; a transformed one records its step and parents.
/// The manifest is built from these records, so a field here is a field an
/// auditor can read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The step that produced the artifact.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub step: String,
    /// Provider id, for generated artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Model name, for generated artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The fingerprint of the settings of the provider that made the artifact
    /// ([`crate::Provider::fingerprint`]), for generated artifacts whose provider
    /// declares one: which default model, endpoint, workflow and injection map
    /// shaped it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_fingerprint: Option<String>,
    /// BLAKE3 hex of the workflow file's contents, for backends that run a
    /// workflow (ComfyUI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_hash: Option<String>,
    /// The fully resolved request parameters (typed params and raw escape hatch).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub params: serde_json::Value,
    /// The seed sent to the provider; `None` when the backend takes no seed
    /// (see [`crate::Capabilities::seed`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// 1-based attempt number of the provider call that produced the artifact.
    #[serde(default)]
    pub attempt: u32,
    /// 0-based regeneration round (a gate failure with a regenerate policy bumps it).
    #[serde(default)]
    pub regeneration: u32,
    /// Wall time of the successful provider call, in milliseconds.
    #[serde(default)]
    pub latency_ms: f64,
    /// Cost of the call that produced the artifact, in US dollars.
    #[serde(default)]
    pub cost_usd: f64,
    /// Verdicts of every gate that judged this artifact.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<GateRecord>,
    /// True when a gate failed and the policy was to flag and pass on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub flagged: bool,
    /// Ids of the artifacts this one was made from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<ArtifactId>,
    /// True when the artifact came from the cache instead of a provider call.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
}

/// One gate's verdict on one artifact, as recorded in provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateRecord {
    /// The gate's name.
    pub gate: String,
    /// The verdict.
    #[serde(flatten)]
    pub verdict: Verdict,
}
