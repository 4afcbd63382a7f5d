//! Storage seams: the generation cache and the run journal, as small traits.
//!
//! The engine only speaks to these traits, so the local-folder implementations can
//! be replaced by shared ones (an object store, a shared file system) when a
//! campaign is split across machines, without touching the executor.
//!
//! The local-folder implementations (a content-addressed blob store, a disk
//! cache and a group-committed journal) live in the `creative-campaign` crate.

use async_trait::async_trait;

use crate::artifact::Artifact;
use crate::job::Job;
use crate::request::{Generation, Request};

/// An error from a store. Stores are local or remote I/O; the message names the
/// path or key involved.
#[derive(Debug, Clone, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

/// The key of a cached generation: BLAKE3 over the provider, its settings and
/// the canonical request.
///
/// It covers the provider id, the provider's settings fingerprint
/// ([`crate::Provider::fingerprint`]: default model, base URL, workflow file,
/// injection map, default size...), and the request: model, prompt, negative
/// prompt, the fully resolved params (seed included), the raw escape-hatch
/// fields and the ids of the input artifacts. Any change to what the provider
/// would see or how it is set up is a different key.
pub fn cache_key(provider: &str, fingerprint: &str, request: &Request) -> String {
    let mut h = blake3::Hasher::new();
    // v2: keys join the provider fingerprint, and entries are probed media
    // (meta from the bytes); entries written under v1 are never read.
    h.update(b"creative-cache-v2\0");
    h.update(provider.as_bytes());
    h.update(&[0]);
    h.update(fingerprint.as_bytes());
    h.update(&[0]);
    // Canonical, not `serde_json::to_vec`: `raw` is a `serde_json::Map`, which
    // keeps insertion order in a build where anything turns on serde_json's
    // `preserve_order` (the `c2pa` feature does), and the key must not change
    // with the build.
    if let Ok(json) = crate::canonical::to_vec(request) {
        h.update(&json);
    }
    for a in &request.inputs {
        h.update(&[1]);
        h.update(a.id().as_str().as_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// A content-addressed cache of generations.
///
/// A hit returns the stored artifacts without calling the provider.
#[async_trait]
pub trait GenerationCache: Send + Sync {
    /// Look a generation up.
    async fn get(&self, key: &str) -> Result<Option<Generation>, StoreError>;
    /// Store a generation under its key.
    async fn put(&self, key: &str, generation: &Generation) -> Result<(), StoreError>;
}

/// What a journal holds for one step of one job.
#[derive(Debug)]
#[non_exhaustive]
pub enum Recorded {
    /// Finished, from the same definition and inputs: these are its outputs.
    Done(Vec<Artifact>),
    /// Finished, but its definition or its inputs have changed since (an edited
    /// spec, or an upstream step that ran again with other outputs): it runs
    /// again, and so does everything downstream whose inputs then change.
    Changed,
    /// Not finished (or its payloads are gone).
    Missing,
}

impl Recorded {
    /// The outputs, when the step is done and unchanged.
    pub fn into_done(self) -> Option<Vec<Artifact>> {
        match self {
            Recorded::Done(outputs) => Some(outputs),
            _ => None,
        }
    }
}

/// The append-only record of finished steps that makes a run resumable.
///
/// A step counts as done only once `record` has returned: implementations make the
/// outputs and the record durable before returning.
///
/// `inputs` is the engine's fingerprint of the step's inputs (the ids of the
/// artifacts it reads, by producing step; see
/// [`StepInputs::fingerprint`](crate::step::StepInputs::fingerprint)). A journal
/// records it with the outputs and answers [`Recorded::Changed`] when a later
/// lookup brings other inputs, so a resumed run re-runs exactly what an edit
/// touched. A journal may also fold in a fingerprint of each step's definition
/// (the campaign layer's does).
#[async_trait]
pub trait Journal: Send + Sync {
    /// What a previous run recorded for this step of this job.
    async fn lookup(&self, job: &Job, step: &str, inputs: &str) -> Result<Recorded, StoreError>;
    /// Record a finished step with its outputs.
    async fn record(&self, job: &Job, step: &str, inputs: &str, outputs: &[Artifact]) -> Result<(), StoreError>;
}
