//! Provenance: everything needed to explain and reproduce an artifact.

use serde::{Deserialize, Serialize};

use crate::artifact::{ArtifactId, MediaType};
use crate::gate::Verdict;

/// Most rejected candidates an artifact's provenance keeps a reference to
/// (the latest ones): a regeneration loop may judge hundreds, and provenance
/// lands in every journal line and manifest entry.
pub const MAX_REJECTED_KEPT: usize = 32;

/// Longest gate reason kept in a rejected candidate's record, in characters.
pub const MAX_REJECTED_REASON_CHARS: usize = 300;

/// The version [`RejectedCandidate`] records are written with.
pub const REJECTED_RECORD_VERSION: u32 = 1;

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
    /// The candidates a gate refused before this artifact was accepted (or
    /// flagged), oldest first, at most [`MAX_REJECTED_KEPT`]: references
    /// only, since their payloads were paid for and are in the store under
    /// their ids (the generation cache keeps them). Absent in records written
    /// before it existed, which load with none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<RejectedCandidate>,
}

/// A reference to a candidate the gates refused: enough for a reviewer to see
/// what was paid for and why it was refused, and for the payload to be found
/// in the store. Every field has a default, so a record written by another
/// version of this type still loads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectedCandidate {
    /// The record's version ([`REJECTED_RECORD_VERSION`] when written).
    #[serde(default)]
    pub v: u32,
    /// The candidate's artifact id (its payload's key in the store).
    pub artifact: ArtifactId,
    /// Its media type.
    pub media: MediaType,
    /// 0-based regeneration round that made it.
    #[serde(default)]
    pub round: u32,
    /// 1-based attempt of the provider call that made it.
    #[serde(default)]
    pub attempt: u32,
    /// The provider that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The seed it was made with, where one was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// What it cost, in US dollars.
    #[serde(default)]
    pub cost_usd: f64,
    /// Every gate's verdict on it (reasons cut to
    /// [`MAX_REJECTED_REASON_CHARS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<GateRecord>,
}

impl RejectedCandidate {
    /// The reference for a judged candidate, from its id, media and provenance.
    pub fn of(artifact: &crate::artifact::Artifact) -> Self {
        let p = artifact.provenance();
        let gates = p
            .gates
            .iter()
            .map(|g| GateRecord {
                gate: g.gate.clone(),
                verdict: Verdict {
                    passed: g.verdict.passed,
                    score: g.verdict.score,
                    reasons: g.verdict.reasons.iter().map(|r| cut(r)).collect(),
                },
            })
            .collect();
        RejectedCandidate {
            v: REJECTED_RECORD_VERSION,
            artifact: artifact.id().clone(),
            media: artifact.media().clone(),
            round: p.regeneration,
            attempt: p.attempt,
            provider: p.provider.clone(),
            seed: p.seed,
            cost_usd: p.cost_usd,
            gates,
        }
    }
}

fn cut(s: &str) -> String {
    match s.char_indices().nth(MAX_REJECTED_REASON_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provenance_written_before_rejected_candidates_existed_loads_with_none() {
        let p: Provenance = serde_json::from_str(r#"{"step": "hero", "attempt": 1, "cost_usd": 0.04}"#).unwrap();
        assert!(p.rejected.is_empty());
        assert!(!serde_json::to_string(&p).unwrap().contains("rejected"));
    }

    #[test]
    fn a_rejected_candidate_record_from_another_version_loads() {
        let r: RejectedCandidate =
            serde_json::from_str(r#"{"artifact": "ab12", "media": "image/png", "added_later": {"x": 1}}"#).unwrap();
        assert_eq!(r.v, 0);
        assert_eq!(r.artifact.as_str(), "ab12");
        assert!(r.gates.is_empty());
    }

    #[test]
    fn a_long_gate_reason_is_cut_in_the_reference() {
        let mut a = crate::artifact::Artifact::text_plain("x");
        a.provenance_mut().gates = vec![GateRecord {
            gate: "g".into(),
            verdict: Verdict::fail(0.0, "é".repeat(1000)),
        }];
        let r = RejectedCandidate::of(&a);
        assert_eq!(
            r.gates[0].verdict.reasons[0].chars().count(),
            MAX_REJECTED_REASON_CHARS + 1
        );
    }
}
