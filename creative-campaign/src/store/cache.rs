//! The generation cache on disk.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::store::blobs::{write_atomic, BlobStore};
use crate::store::journal::ArtifactRecord;
use crate::store::{GenerationCache, StoreError};
use creative_core::artifact::Artifact;
use creative_core::request::{Generation, Usage};

/// A content-addressed cache of generations in a folder:
/// `entries/<ab>/<key>.json` names the artifacts and usage of one generation,
/// `objects/` holds the payloads.
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
#[derive(Debug, Clone)]
pub struct DiskCache {
    entries: PathBuf,
    blobs: BlobStore,
}

#[derive(Serialize, Deserialize)]
struct CacheEntry {
    artifacts: Vec<ArtifactRecord>,
    #[serde(default)]
    usage: Usage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    raw: Option<serde_json::Value>,
}

impl DiskCache {
    /// A cache in `dir` (created if needed).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| StoreError(format!("create {}: {e}", dir.display())))?;
        Ok(DiskCache {
            entries: dir.join("entries"),
            blobs: BlobStore::new(dir.join("objects")),
        })
    }

    fn entry_path(&self, key: &str) -> Result<PathBuf, StoreError> {
        if key.len() < 2 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError(format!("cache key `{key}` is not a hex digest")));
        }
        Ok(self.entries.join(&key[..2]).join(format!("{key}.json")))
    }

    fn get_blocking(&self, key: &str) -> Result<Option<Generation>, StoreError> {
        let path = self.entry_path(key)?;
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError(format!("read {}: {e}", path.display()))),
        };
        let Ok(entry) = serde_json::from_slice::<CacheEntry>(&text) else {
            tracing::warn!(path = %path.display(), "unreadable cache entry; treating it as a miss");
            return Ok(None);
        };
        let mut artifacts = Vec::with_capacity(entry.artifacts.len());
        for r in entry.artifacts {
            match self.blobs.get(&r.id, &r.media)? {
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

    fn put_blocking(
        &self,
        key: &str,
        artifacts: &[Artifact],
        usage: &Usage,
        raw: &Option<serde_json::Value>,
    ) -> Result<(), StoreError> {
        let path = self.entry_path(key)?;
        for a in artifacts {
            self.blobs.put(a.id(), a.data(), false)?;
        }
        let entry = CacheEntry {
            artifacts: artifacts.iter().map(ArtifactRecord::of).collect(),
            usage: usage.clone(),
            raw: raw.clone(),
        };
        let json = serde_json::to_vec(&entry).map_err(|e| StoreError(format!("encode cache entry: {e}")))?;
        // No fsync: a cache entry lost to a power cut is a miss, not an error.
        write_atomic(&path, &json, false).map_err(|e| StoreError(format!("write {}: {e}", path.display())))
    }
}

#[async_trait]
impl GenerationCache for DiskCache {
    async fn get(&self, key: &str) -> Result<Option<Generation>, StoreError> {
        let this = self.clone();
        let key = key.to_string();
        tokio::task::spawn_blocking(move || this.get_blocking(&key))
            .await
            .map_err(|e| StoreError(format!("cache read task failed: {e}")))?
    }

    async fn put(&self, key: &str, generation: &Generation) -> Result<(), StoreError> {
        let this = self.clone();
        let key = key.to_string();
        let artifacts = generation.artifacts.clone();
        let usage = generation.usage.clone();
        let raw = generation.raw.clone();
        tokio::task::spawn_blocking(move || this.put_blocking(&key, &artifacts, &usage, &raw))
            .await
            .map_err(|e| StoreError(format!("cache write task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use creative_core::artifact::MediaType;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("creative-cache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[tokio::test]
    async fn a_miss_then_a_hit_with_usage_kept() {
        let dir = tmp("hit");
        let c = DiskCache::open(&dir).unwrap();
        assert!(c.get("abcd").await.unwrap().is_none());
        let g = Generation {
            artifacts: vec![Artifact::new(MediaType::Png, vec![1u8, 2, 3])],
            usage: Usage {
                cost_usd: 0.04,
                ..Usage::default()
            },
            raw: None,
        };
        c.put("abcd", &g).await.unwrap();
        let back = c.get("abcd").await.unwrap().unwrap();
        assert_eq!(back.artifacts[0].id(), g.artifacts[0].id());
        assert_eq!(back.artifacts[0].data(), g.artifacts[0].data());
        assert_eq!(back.usage.cost_usd, 0.04);
        // A payload gone missing makes the whole entry a miss.
        std::fs::remove_file(c.blobs.path_of(g.artifacts[0].id())).unwrap();
        assert!(c.get("abcd").await.unwrap().is_none());
        assert!(c.get("../x").await.is_err(), "keys cannot name paths");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
