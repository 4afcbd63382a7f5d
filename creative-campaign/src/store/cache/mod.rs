//! The generation cache on disk: an index of entries in one SQLite file beside
//! the payloads, optionally capped in size with least-recently-used eviction.

mod index;

#[doc(hidden)]
pub use index::SCHEMA_V1;

use std::path::Path;
#[cfg(test)]
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::store::blobs::BlobStore;
use crate::store::gc::PayloadPins;
use crate::store::journal::ArtifactRecord;
use crate::store::{GenerationCache, StoreError};
use creative_core::artifact::ArtifactId;
use creative_core::request::{Generation, Usage};
pub(crate) use index::for_each_named_payload;
use index::{Index, Op, Put};

/// A content-addressed cache of generations in a folder: `cache.sqlite` indexes
/// the entries (the artifacts and usage of one generation, by cache key),
/// `objects/` holds the payloads. The index's write-ahead log,
/// `cache.sqlite-wal` (up to 32 MiB) and `cache.sqlite-shm`, stays beside it
/// between runs and is part of it: to clear the cache, remove all three.
///
/// A hit needs the entry and every payload it names, each matching its hash;
/// anything less is a miss, so a cache damaged by a crash costs a provider call,
/// never a wrong asset.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use creative_campaign::store::DiskCache;
/// use creative_core::{Artifact, Generation, GenerationCache};
/// let dir = std::env::temp_dir().join(format!("creative-doc-cache-{}", std::process::id()));
/// let cache = DiskCache::open(&dir).unwrap();
/// let g = Generation { artifacts: vec![Artifact::text_plain("hi")], ..Default::default() };
/// cache.put("00aa", &g).await.unwrap();
/// assert_eq!(cache.get("00aa").await.unwrap().unwrap().artifacts[0].text(), Some("hi"));
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # }
/// ```
///
/// # Why an index file
///
/// An entry is a few hundred bytes; as a file of its own it cost a new inode
/// per generation, which on ext4 was the largest single cost of a campaign
/// (measured: about half of the CPU of 10,000 fast generations). In one SQLite
/// file (write-ahead log, no fsync per put: an entry lost to a power cut is a
/// miss) a put is a few appends. SQLite because the index is shared: several
/// processes may use one cache folder at once (each waits its turn to write),
/// and the cap's bookkeeping (sizes, recency, which entries name a payload)
/// lives in its tables, so memory stays flat however large the cache grows.
/// A cache file SQLite finds damaged is moved aside and a new one started.
///
/// # Misses without a query
///
/// A cache opened with [`open_owned`](Self::open_owned), as a campaign opens
/// its own (inside the output folder its run holds locked), answers a miss from
/// memory: a Bloom filter of the keys its index had at open and of its own
/// puts. A first run of a campaign misses on every generation, and those point
/// queries were 6% of a 10,000-job run's CPU. Another writer is noticed and
/// ends this; see [`open_owned`](Self::open_owned).
///
/// # A size cap
///
/// [`with_max_bytes`](Self::with_max_bytes) caps the cache: when a put takes it
/// over the cap, the least recently used entries are evicted (their index row
/// removed, and each payload no other entry names and no [`PayloadPins`] holds)
/// until it is under the cap again; the entry just put is never evicted, so
/// the cache exceeds its cap by at most that one entry. An entry's size is its
/// encoded length plus the payloads it names (a payload two entries share
/// counts twice, so the cap errs towards evicting more). Recency is a stamp a
/// hit refreshes; it is kept whether or not a cap is set, so a cap set later
/// evicts in the right order.
#[derive(Debug, Clone)]
pub struct DiskCache {
    blobs: BlobStore,
    index: Arc<Index>,
    max_bytes: Option<u64>,
    /// Payloads eviction keeps (the journal's).
    pins: Option<Arc<PayloadPins>>,
}

/// An entry's size as the cap counts it.
fn entry_bytes(body_len: u64, artifacts: &[ArtifactRecord]) -> u64 {
    artifacts.iter().fold(body_len, |n, a| n.saturating_add(a.bytes))
}

#[derive(Serialize, Deserialize)]
struct CacheEntry {
    artifacts: Vec<ArtifactRecord>,
    #[serde(default)]
    usage: Usage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    raw: Option<serde_json::Value>,
}

/// Just the payload ids of an entry.
#[derive(Deserialize)]
struct EntryIds {
    artifacts: Vec<IdOnly>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: ArtifactId,
}

fn is_key(key: &str) -> bool {
    key.len() >= 2 && key.bytes().all(|b| b.is_ascii_hexdigit())
}

impl DiskCache {
    /// A cache in `dir` (created if needed). A cache folder written before the
    /// index existed (one file per entry under `entries/`) is brought into it.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(dir.as_ref(), false)
    }

    /// A cache in `dir` that only it writes while it is open: the campaign's
    /// own cache, inside an output folder the run holds locked. Its misses
    /// cost no query (a first run of a campaign finds none of its generations
    /// and looks up every one): it knows the keys its index had at open, when
    /// there are at most 250,000, and those it puts.
    /// Another writer is still noticed, within about 50 ms or at the next
    /// [`flush`](DiskCache::flush), and from then on every lookup queries
    /// the index, as [`open`](DiskCache::open)'s do.
    pub fn open_owned(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(dir.as_ref(), true)
    }

    fn open_with(dir: &Path, owned: bool) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError(format!("create {}: {e}", dir.display())))?;
        Ok(DiskCache {
            blobs: BlobStore::new(dir.join("objects")),
            index: Arc::new(Index::open(dir, owned)?),
            max_bytes: None,
            pins: None,
        })
    }

    /// Cap the cache at `max_bytes` (entries plus the payloads they name),
    /// evicting the least recently used entries when a put goes over it (see
    /// the type's doc). `0` keeps only the entry last put.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = Some(max_bytes);
        self
    }

    /// Never delete, when evicting, a payload `pins` holds: the journal's, when
    /// the cache shares its payload folder (an evicted entry goes; a payload a
    /// resume needs stays).
    pub fn with_pins(mut self, pins: Arc<PayloadPins>) -> Self {
        self.pins = Some(pins);
        self
    }

    /// Use `blobs` for the payloads when it is a store of this cache's own
    /// payload folder (the journal's, when the cache lives in the state
    /// folder), so the two share what each learned: the journal's put of a
    /// payload the cache just wrote is then a `stat`, not a read. A store of
    /// another folder is ignored.
    pub fn with_blob_store(mut self, blobs: &BlobStore) -> Self {
        if blobs.root() == self.blobs.root() {
            self.blobs = blobs.clone();
        }
        self
    }

    /// The cap, if any.
    pub fn max_bytes(&self) -> Option<u64> {
        self.max_bytes
    }

    /// The cache's size as the cap counts it (entries plus the payloads they
    /// name), as of the last put the index has applied ([`flush`](Self::flush)
    /// first for every put so far). `None` without a cap.
    pub fn size(&self) -> Result<Option<u64>, StoreError> {
        if self.max_bytes.is_none() {
            return Ok(None);
        }
        self.index.total().map(Some)
    }

    /// Wait until the index holds every entry put so far (and has made the
    /// evictions they call for). A put's entry is visible to this process at
    /// once; other processes see it after this.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.index.flush().await
    }

    /// The generation an entry's `body` names, its payloads read from the store.
    fn materialize(blobs: &BlobStore, key: &str, body: &[u8]) -> Result<Option<Generation>, StoreError> {
        let Ok(entry) = serde_json::from_slice::<CacheEntry>(body) else {
            tracing::warn!(key, "unreadable cache entry; treating it as a miss");
            return Ok(None);
        };
        let mut artifacts = Vec::with_capacity(entry.artifacts.len());
        for r in entry.artifacts {
            match blobs.get(&r.id, &r.media)? {
                Some(data) => artifacts.push(r.into_artifact(data)),
                None => return Ok(None),
            }
        }
        Ok(Some(Generation {
            artifacts,
            usage: entry.usage,
            raw: entry.raw,
        }))
    }
}

/// Payloads up to this size are written on the caller's thread: a hand-off
/// to a blocking thread costs more than the write (a file create and a copy
/// into the page cache); larger ones go to the blocking pool.
const WRITE_INLINE: usize = 256 * 1024;

#[async_trait]
impl GenerationCache for DiskCache {
    /// A miss is a point query on the caller's thread; a hit reads its
    /// payloads on a blocking thread and refreshes the entry's recency.
    async fn get(&self, key: &str) -> Result<Option<Generation>, StoreError> {
        if !is_key(key) {
            return Err(StoreError(format!("cache key `{key}` is not a hex digest")));
        }
        let Some(body) = self.index.body(key)? else {
            return Ok(None);
        };
        self.index
            .send(Op::Touch {
                key: key.to_string(),
                used: self.index.stamp(),
            })
            .await?;
        let (blobs, key) = (self.blobs.clone(), key.to_string());
        tokio::task::spawn_blocking(move || Self::materialize(&blobs, &key, &body))
            .await
            .map_err(|e| StoreError(format!("cache read task failed: {e}")))?
    }

    /// Returns once the payloads are written and the entry is queued for the
    /// index (see [`flush`](DiskCache::flush)).
    async fn put(&self, key: &str, generation: &Generation) -> Result<(), StoreError> {
        if !is_key(key) {
            return Err(StoreError(format!("cache key `{key}` is not a hex digest")));
        }
        let entry = CacheEntry {
            artifacts: generation.artifacts.iter().map(ArtifactRecord::of).collect(),
            usage: generation.usage.clone(),
            raw: generation.raw.clone(),
        };
        let body: Arc<[u8]> = serde_json::to_vec(&entry)
            .map_err(|e| StoreError(format!("encode cache entry: {e}")))?
            .into();
        let ids: Vec<ArtifactId> = entry.artifacts.iter().map(|a| a.id.clone()).collect();
        // Claimed first: until the entry names them, an eviction that finds
        // these payloads named by no entry must leave their files.
        let shared = &self.index.shared;
        shared.begin_put(&ids);
        let size: usize = generation.artifacts.iter().map(|a| a.data().len()).sum();
        let written = if size <= WRITE_INLINE {
            generation
                .artifacts
                .iter()
                .try_for_each(|a| self.blobs.put(a.id(), a.data(), false))
        } else {
            let (blobs, artifacts) = (self.blobs.clone(), generation.artifacts.clone());
            tokio::task::spawn_blocking(move || artifacts.iter().try_for_each(|a| blobs.put(a.id(), a.data(), false)))
                .await
                .map_err(|e| StoreError(format!("cache write task failed: {e}")))
                .and_then(|r| r)
        };
        if let Err(e) = written {
            shared.end_put(&ids);
            return Err(e);
        }
        shared.set_pending(key, body.clone());
        let put = Put {
            key: key.to_string(),
            bytes: entry_bytes(body.len() as u64, &entry.artifacts),
            body: body.clone(),
            used: self.index.stamp(),
            ids,
            cap: self.max_bytes,
            blobs: self.blobs.clone(),
            pins: self.pins.clone(),
        };
        let ids = put.ids.clone();
        if let Err(e) = self.index.send(Op::Put(Box::new(put))).await {
            shared.clear_pending(key, &body);
            shared.end_put(&ids);
            return Err(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
