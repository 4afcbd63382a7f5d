//! The local-folder stores: [`DiskCache`] (content-addressed generations on
//! disk) and [`FileJournal`] (an append-only JSON-lines journal, committed in
//! batches, each line durable after the payloads it names), both over a
//! [`BlobStore`]. [`JournalIndex`] reads a journal back without holding it in
//! memory.
//!
//! They implement the engine's seams ([`GenerationCache`], [`Journal`]), which
//! are re-exported here, so a shared store (an object store, a shared file
//! system) can replace them without touching the executor.

mod blobs;
mod cache;
mod gc;
mod journal;

pub use blobs::BlobStore;
pub(crate) use blobs::{lock_out_dir, refuse_links, remove_stale_temps, sync_dir, temp_path, write_atomic, LockError};
pub use cache::DiskCache;
#[doc(hidden)]
pub use cache::SCHEMA_V1 as CACHE_SCHEMA_V1;
pub use creative_core::store::{cache_key, GenerationCache, Journal, Recorded, StoreError};
pub use gc::{collect_garbage, GcError, GcReport, PayloadPins};
pub(crate) use journal::LiveRecords;
pub use journal::{ArtifactRecord, FileJournal, JournalIndex, JournalRecord, SyncMethod};

/// `t` as UTC RFC 3339 with milliseconds (`2026-12-07T13:14:12.345Z`), the
/// form every timestamp in the journal and the manifest takes: sortable as
/// text, and read by any JSON consumer's date parser.
pub(crate) fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Now, as [`rfc3339`].
pub(crate) fn utc_now() -> String {
    rfc3339(std::time::SystemTime::now())
}
