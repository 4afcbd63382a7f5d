//! Storage seams: the generation cache and the run journal, as small traits.
//!
//! The engine only speaks to these traits, so the local-folder implementations can
//! be replaced by shared ones (an object store, a shared file system) when a
//! campaign is split across machines, without touching the executor.
//!
//! The local implementations: [`DiskCache`] (content-addressed generations on
//! disk) and [`FileJournal`] (an append-only JSON-lines journal, committed in
//! batches, each line durable after the payloads it names), both over a
//! [`BlobStore`]. [`JournalIndex`] reads a journal back without holding it in
//! memory.

mod blobs;
mod cache;
mod journal;

pub use blobs::BlobStore;
pub(crate) use blobs::{lock_out_dir, refuse_links, remove_stale_temps, sync_dir, temp_path, write_atomic, LockError};
pub use cache::DiskCache;
pub use journal::{ArtifactRecord, FileJournal, JournalIndex, JournalRecord, SyncMethod};

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
    // serde_json writes struct fields in declaration order and `raw` is a sorted
    // map (no preserve_order feature), so this serialization is canonical.
    if let Ok(json) = serde_json::to_vec(request) {
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

/// The append-only record of finished steps that makes a run resumable.
///
/// A step counts as done only once `record` has returned: implementations make the
/// outputs and the record durable before returning.
#[async_trait]
pub trait Journal: Send + Sync {
    /// The outputs of a step that a previous run finished, if any.
    async fn lookup(&self, job: &Job, step: &str) -> Result<Option<Vec<Artifact>>, StoreError>;
    /// Record a finished step with its outputs.
    async fn record(&self, job: &Job, step: &str, outputs: &[Artifact]) -> Result<(), StoreError>;
}
