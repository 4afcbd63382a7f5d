//! The generation cache on disk, optionally capped in size with
//! least-recently-used eviction.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::store::blobs::{write_atomic, BlobStore};
use crate::store::gc::{id_key, PayloadPins};
use crate::store::journal::ArtifactRecord;
use crate::store::{GenerationCache, StoreError};
use creative_core::artifact::{Artifact, ArtifactId};
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
///
/// # A size cap
///
/// [`with_max_bytes`](Self::with_max_bytes) caps the cache: when a put takes it
/// over the cap, the least recently used entries are evicted (their entry file
/// removed, and each payload no other entry names and no [`PayloadPins`] holds)
/// until it is under the cap again; the entry just put is never evicted, so
/// the cache exceeds its cap by at most that one entry (one per put under way
/// at once: an entry being written is not evicted). An entry's size is its
/// file plus the payloads it names (a payload two entries share counts twice,
/// so the cap errs towards evicting more).
///
/// Recency is the entry file's modification time: a hit sets it to now (one
/// `futimens` on the file just read, no extra file to keep consistent, and it
/// survives a kill), and the cap's bookkeeping, made on first use by one pass
/// over the entries, orders them by it. In memory it keeps the order and size of
/// each entry, the payloads it names and a count of the entries naming each
/// payload: about 300 bytes an entry. Many tasks may get and put at once; the bookkeeping is one mutex,
/// held for the few file removals an eviction makes. Entries another process
/// writes meanwhile are counted from the next open (or their first hit).
#[derive(Debug, Clone)]
pub struct DiskCache {
    entries: PathBuf,
    blobs: BlobStore,
    lru: Option<Arc<Lru>>,
    /// Payloads eviction keeps (the journal's).
    pins: Option<Arc<PayloadPins>>,
}

/// The cap's bookkeeping.
#[derive(Debug)]
struct Lru {
    max_bytes: u64,
    state: Mutex<LruState>,
}

#[derive(Debug, Default)]
struct LruState {
    /// Whether the entries on disk have been counted.
    loaded: bool,
    /// The next recency stamp.
    tick: u64,
    /// The size of every entry known.
    total: u64,
    entries: HashMap<Arc<str>, Slot>,
    /// Entries by recency, oldest first.
    order: BTreeMap<u64, Arc<str>>,
    /// How many known entries (and puts under way) name each payload.
    refs: HashMap<[u8; 16], u32>,
    /// Keys a put of this process is writing, with how many puts: never
    /// evicted until the put has counted them, so an eviction cannot remove
    /// the file a put has just written and leave it counted.
    writing: HashMap<Arc<str>, u32>,
}

#[derive(Debug, Clone)]
struct Slot {
    tick: u64,
    bytes: u64,
    /// The payloads the entry names, as counted in `refs`: eviction and
    /// replacement release exactly these, whatever the file says by then.
    payloads: Box<[ArtifactId]>,
}

impl LruState {
    /// Make `key` the most recently used; false when it is not known.
    fn touch(&mut self, key: &str) -> bool {
        let tick = self.tick;
        let Some(slot) = self.entries.get_mut(key) else {
            return false;
        };
        self.tick += 1;
        if let Some(k) = self.order.remove(&slot.tick) {
            self.order.insert(tick, k);
        }
        slot.tick = tick;
        true
    }

    /// Count `key` as the most recently used entry, of `bytes`, naming
    /// `payloads`, in place of what was counted for it before. Returns the
    /// payloads no entry names any more (those of a replaced entry).
    fn set(&mut self, key: &str, bytes: u64, payloads: Box<[ArtifactId]>) -> Vec<ArtifactId> {
        self.add_refs(payloads.iter());
        let old = self.forget(key);
        let tick = self.tick;
        self.tick += 1;
        let k: Arc<str> = Arc::from(key);
        self.order.insert(tick, k.clone());
        self.entries.insert(k, Slot { tick, bytes, payloads });
        self.total += bytes;
        let mut unnamed = Vec::new();
        for id in old.iter().flat_map(|s| s.payloads.iter()) {
            if self.drop_ref(id) {
                unnamed.push(id.clone());
            }
        }
        unnamed
    }

    /// Stop counting `key`; its payloads' references are the caller's to drop.
    fn forget(&mut self, key: &str) -> Option<Slot> {
        let slot = self.entries.remove(key)?;
        self.order.remove(&slot.tick);
        self.total -= slot.bytes;
        Some(slot)
    }

    fn add_refs<'a>(&mut self, ids: impl IntoIterator<Item = &'a ArtifactId>) {
        for id in ids {
            *self.refs.entry(id_key(id.as_str())).or_insert(0) += 1;
        }
    }

    /// Drop one reference to `id`; true when nothing counted names it any more.
    fn drop_ref(&mut self, id: &ArtifactId) -> bool {
        let k = id_key(id.as_str());
        match self.refs.get_mut(&k) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                self.refs.remove(&k);
                true
            }
            // Not counted (written by another process): keep it; gc decides.
            None => false,
        }
    }

    /// A put of `key` naming `payloads` begins: its key is not evicted and
    /// its payloads not deleted until [`end_put`](Self::end_put).
    fn begin_put(&mut self, key: &str, payloads: &[ArtifactId]) {
        *self.writing.entry(Arc::from(key)).or_insert(0) += 1;
        self.add_refs(payloads);
    }

    /// The put [`begin_put`](Self::begin_put) began has ended (counted, or
    /// failed). Returns the payloads nothing names any more.
    fn end_put(&mut self, key: &str, payloads: &[ArtifactId]) -> Vec<ArtifactId> {
        if let Some(n) = self.writing.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.writing.remove(key);
            }
        }
        payloads.iter().filter(|id| self.drop_ref(id)).cloned().collect()
    }

    /// The least recently used entry other than `except` and those being written.
    fn oldest_but(&self, except: &str) -> Option<Arc<str>> {
        self.order
            .values()
            .find(|k| &***k != except && !self.writing.contains_key(&***k))
            .cloned()
    }
}

/// An entry's size as the cap counts it.
fn entry_bytes(file_len: u64, artifacts: &[ArtifactRecord]) -> u64 {
    artifacts.iter().fold(file_len, |n, a| n.saturating_add(a.bytes))
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
            lru: None,
            pins: None,
        })
    }

    /// Cap the cache at `max_bytes` (entries plus the payloads they name),
    /// evicting the least recently used entries when a put goes over it (see
    /// the type's doc). `0` keeps only the entry last put.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.lru = Some(Arc::new(Lru {
            max_bytes,
            state: Mutex::default(),
        }));
        self
    }

    /// Never delete, when evicting, a payload `pins` holds: the journal's, when
    /// the cache shares its payload folder (an evicted entry's file goes; a
    /// payload a resume needs stays).
    pub fn with_pins(mut self, pins: Arc<PayloadPins>) -> Self {
        self.pins = Some(pins);
        self
    }

    /// The cap, if any.
    pub fn max_bytes(&self) -> Option<u64> {
        self.lru.as_ref().map(|l| l.max_bytes)
    }

    /// The cache's size as the cap counts it (entries plus the payloads they
    /// name), counting the entries on disk first if not done yet. `None`
    /// without a cap.
    pub fn size(&self) -> Result<Option<u64>, StoreError> {
        let Some(lru) = &self.lru else { return Ok(None) };
        let mut state = lru.state.lock().unwrap_or_else(|p| p.into_inner());
        self.load(&mut state)?;
        Ok(Some(state.total))
    }

    /// Count the entries on disk into the cap's bookkeeping, oldest first (by
    /// modification time), once.
    fn load(&self, state: &mut LruState) -> Result<(), StoreError> {
        if state.loaded {
            return Ok(());
        }
        let mut found: Vec<(SystemTime, String, u64, Box<[ArtifactId]>)> = Vec::new();
        let read_err = |p: &Path, e: std::io::Error| StoreError(format!("read {}: {e}", p.display()));
        let prefixes = match std::fs::read_dir(&self.entries) {
            Ok(d) => Some(d),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(read_err(&self.entries, e)),
        };
        for p in prefixes.into_iter().flatten() {
            let p = p.map_err(|e| read_err(&self.entries, e))?;
            if !p.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let dir = p.path();
            for e in std::fs::read_dir(&dir).map_err(|e| read_err(&dir, e))? {
                let e = e.map_err(|e| read_err(&dir, e))?;
                let name = e.file_name();
                let Some(key) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                    continue;
                };
                if key.len() < 2 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
                    continue;
                }
                let Ok(meta) = e.metadata() else { continue };
                let Ok(text) = std::fs::read(e.path()) else { continue };
                // An unreadable entry is a miss; the next put of its key replaces it.
                let Ok(entry) = serde_json::from_slice::<CacheEntry>(&text) else {
                    continue;
                };
                let when = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                let bytes = entry_bytes(meta.len(), &entry.artifacts);
                found.push((when, key.to_string(), bytes, payload_ids(&entry.artifacts)));
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        for (_, key, bytes, payloads) in found {
            // Loading is first use: nothing was counted, nothing is released.
            state.set(&key, bytes, payloads);
        }
        state.loaded = true;
        Ok(())
    }

    /// Evict least recently used entries, never `keep`, until the cache is
    /// under its cap. Holds the bookkeeping's lock throughout, so the removals
    /// of one eviction are not interleaved with another's.
    fn evict(&self, lru: &Lru, state: &mut LruState, keep: &str) {
        while state.total > lru.max_bytes {
            let Some(victim) = state.oldest_but(keep) else { break };
            let Some(slot) = state.forget(&victim) else { break };
            if let Ok(path) = self.entry_path(&victim) {
                if let Err(e) = std::fs::remove_file(&path) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(path = %path.display(), error = %e, "cache eviction could not remove an entry");
                    }
                }
            }
            let unnamed: Vec<ArtifactId> = slot.payloads.iter().filter(|id| state.drop_ref(id)).cloned().collect();
            self.remove_payloads(&unnamed);
        }
    }

    /// Remove payloads no counted entry names, except those the journal pins.
    fn remove_payloads(&self, ids: &[ArtifactId]) {
        if ids.is_empty() {
            return;
        }
        let pinned = self.pins.as_ref().map(|p| p.hold());
        for id in ids {
            if pinned.as_ref().is_some_and(|p| p.contains(&id_key(id.as_str()))) {
                continue;
            }
            let blob = self.blobs.path_of(id);
            if let Err(e) = std::fs::remove_file(&blob) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %blob.display(), error = %e, "cache eviction could not remove a payload");
                }
            }
        }
    }

    fn entry_path(&self, key: &str) -> Result<PathBuf, StoreError> {
        if key.len() < 2 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError(format!("cache key `{key}` is not a hex digest")));
        }
        Ok(self.entries.join(&key[..2]).join(format!("{key}.json")))
    }

    fn get_blocking(&self, key: &str) -> Result<Option<Generation>, StoreError> {
        let path = self.entry_path(key)?;
        let read_err = |e: std::io::Error| StoreError(format!("read {}: {e}", path.display()));
        let (file, text) = match File::open(&path) {
            Ok(mut f) => {
                let mut text = Vec::new();
                f.read_to_end(&mut text).map_err(read_err)?;
                (f, text)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(lru) = &self.lru {
                    // Evicted meanwhile, or removed by hand: stop counting it.
                    lru.state.lock().unwrap_or_else(|p| p.into_inner()).forget(key);
                }
                return Ok(None);
            }
            Err(e) => return Err(read_err(e)),
        };
        let Ok(entry) = serde_json::from_slice::<CacheEntry>(&text) else {
            tracing::warn!(path = %path.display(), "unreadable cache entry; treating it as a miss");
            return Ok(None);
        };
        let bytes = entry_bytes(text.len() as u64, &entry.artifacts);
        let payloads = self.lru.as_ref().map(|_| payload_ids(&entry.artifacts));
        let mut artifacts = Vec::with_capacity(entry.artifacts.len());
        for r in entry.artifacts {
            match self.blobs.get(&r.id, &r.media)? {
                Some(data) => artifacts.push(r.into_artifact(data)),
                None => return Ok(None),
            }
        }
        if let Some(lru) = &self.lru {
            let mut state = lru.state.lock().unwrap_or_else(|p| p.into_inner());
            self.load(&mut state)?;
            // Not counted: written by another process since the count, or
            // evicted by this one since it was read (the hit stands: its bytes
            // were read whole; but a removed entry must not be counted again).
            // Evictions hold the lock, so under it the file's presence is settled.
            if !state.touch(key) && path.exists() {
                let unnamed = state.set(key, bytes, payloads.unwrap_or_default());
                self.remove_payloads(&unnamed);
            }
            drop(state);
            // Recency that outlives the process; best effort (a read-only cache
            // still serves hits).
            let _ = file.set_modified(SystemTime::now());
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
        let entry = CacheEntry {
            artifacts: artifacts.iter().map(ArtifactRecord::of).collect(),
            usage: usage.clone(),
            raw: raw.clone(),
        };
        let Some(lru) = &self.lru else {
            return self.write_entry(&path, artifacts, &entry).map(|_| ());
        };
        // Announce the put first: until it is counted, no eviction may remove
        // its entry or the payloads it names (another entry may share them).
        let payloads = payload_ids(&entry.artifacts);
        {
            let mut state = lru.state.lock().unwrap_or_else(|p| p.into_inner());
            self.load(&mut state)?;
            state.begin_put(key, &payloads);
        }
        let written = self.write_entry(&path, artifacts, &entry);
        let mut state = lru.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut unnamed = match &written {
            Ok(len) => state.set(key, entry_bytes(*len, &entry.artifacts), payloads.clone()),
            Err(_) => Vec::new(),
        };
        unnamed.extend(state.end_put(key, &payloads));
        self.remove_payloads(&unnamed);
        if written.is_ok() {
            self.evict(lru, &mut state, key);
        }
        written.map(|_| ())
    }

    /// Write the payloads, then the entry naming them; returns the entry
    /// file's length.
    fn write_entry(&self, path: &Path, artifacts: &[Artifact], entry: &CacheEntry) -> Result<u64, StoreError> {
        for a in artifacts {
            self.blobs.put(a.id(), a.data(), false)?;
        }
        let json = serde_json::to_vec(entry).map_err(|e| StoreError(format!("encode cache entry: {e}")))?;
        // No fsync: a cache entry lost to a power cut is a miss, not an error.
        write_atomic(path, &json, false).map_err(|e| StoreError(format!("write {}: {e}", path.display())))?;
        Ok(json.len() as u64)
    }
}

/// The payload ids an entry names.
fn payload_ids(artifacts: &[ArtifactRecord]) -> Box<[ArtifactId]> {
    artifacts.iter().map(|a| a.id.clone()).collect()
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

    fn ids(names: &[&str]) -> Box<[ArtifactId]> {
        names
            .iter()
            .map(|n| ArtifactId::of(&MediaType::Png, n.as_bytes()))
            .collect()
    }

    #[test]
    fn the_lru_order_puts_a_touched_entry_last_and_gives_the_oldest_first() {
        let mut s = LruState::default();
        for k in ["aa", "bb", "cc"] {
            assert!(s.set(k, 10, ids(&[k])).is_empty());
        }
        assert_eq!(s.total, 30);
        assert_eq!(s.oldest_but("").as_deref(), Some("aa"));
        assert!(s.touch("aa"), "known");
        assert!(!s.touch("dd"), "unknown");
        let order: Vec<&str> = s.order.values().map(|k| &**k).collect();
        assert_eq!(order, ["bb", "cc", "aa"]);
        assert_eq!(s.oldest_but("bb").as_deref(), Some("cc"), "the one kept is skipped");
        assert_eq!(s.forget("bb").map(|x| x.bytes), Some(10));
        assert_eq!((s.total, s.entries.len(), s.order.len()), (20, 2, 2));
    }

    #[test]
    fn replacing_an_entry_releases_the_payloads_only_it_named() {
        let mut s = LruState::default();
        s.set("aa", 10, ids(&["p", "q"]));
        s.set("bb", 10, ids(&["q"]));
        let freed = s.set("aa", 15, ids(&["r"]));
        assert_eq!(&freed[..], &ids(&["p"])[..], "q is still named by bb");
        assert_eq!((s.total, s.entries.len()), (25, 2));
        assert!(!s.drop_ref(&ids(&["unknown"])[0]), "a payload not counted is kept");
    }

    #[test]
    fn a_key_being_written_is_never_the_eviction_victim_and_its_payloads_stay_named() {
        let mut s = LruState::default();
        s.set("aa", 10, ids(&["p"]));
        s.set("bb", 10, ids(&["q"]));
        s.begin_put("aa", &ids(&["p"]));
        assert_eq!(s.oldest_but("").as_deref(), Some("bb"));
        let slot = s.forget("aa").unwrap();
        assert!(!s.drop_ref(&slot.payloads[0]), "the put under way still names p");
        assert!(s.set("aa", 10, ids(&["p"])).is_empty());
        assert!(s.end_put("aa", &ids(&["p"])).is_empty(), "the entry counted names p");
        assert_eq!(s.oldest_but("").as_deref(), Some("bb"));
        assert!(s.writing.is_empty());
    }

    /// Every byte under the cache's folder: entries and payloads.
    fn on_disk(dir: &Path) -> u64 {
        fn walk(p: &Path) -> u64 {
            std::fs::read_dir(p).map_or(0, |d| {
                d.flatten()
                    .map(|e| match e.file_type() {
                        Ok(t) if t.is_dir() => walk(&e.path()),
                        _ => e.metadata().map_or(0, |m| m.len()),
                    })
                    .sum()
            })
        }
        walk(&dir.join("entries")) + walk(&dir.join("objects"))
    }

    fn payload(i: usize, len: usize) -> Generation {
        let mut data = vec![0u8; len];
        data[..8].copy_from_slice(&(i as u64).to_le_bytes());
        Generation {
            artifacts: vec![Artifact::new(MediaType::Png, data)],
            ..Default::default()
        }
    }

    fn key(i: usize) -> String {
        format!("{i:04x}")
    }

    #[tokio::test]
    async fn a_capped_cache_never_exceeds_its_cap_by_more_than_one_entry_and_keeps_the_most_recently_used() {
        let dir = tmp("cap");
        let cap = 10_000;
        let c = DiskCache::open(&dir).unwrap().with_max_bytes(cap);
        c.put(&key(0), &payload(0, 1000)).await.unwrap();
        let entry = c.size().unwrap().unwrap();
        let fit = (cap / entry) as usize;
        let mut largest = 0;
        for i in 1..40 {
            c.put(&key(i), &payload(i, 1000)).await.unwrap();
            // Entry 0 is used after every put: it is never the least recent.
            assert!(
                c.get(&key(0)).await.unwrap().is_some(),
                "the hot entry is kept (put {i})"
            );
            let size = on_disk(&dir);
            largest = largest.max(size);
            assert_eq!(c.size().unwrap(), Some(size), "the count is what is on disk");
        }
        assert!(
            largest <= cap + entry,
            "{largest} bytes on disk, cap {cap} + one entry {entry}"
        );
        assert_eq!(on_disk(&dir), fit as u64 * entry, "as many as fit");
        // The most recent ones are kept, the oldest (but the hot one) evicted.
        for i in 40 - (fit - 1)..40 {
            assert!(c.get(&key(i)).await.unwrap().is_some(), "recent entry {i} kept");
        }
        for i in 1..40 - (fit - 1) {
            assert!(c.get(&key(i)).await.unwrap().is_none(), "old entry {i} evicted");
        }
        // An entry over the cap on its own is kept, alone.
        c.put("ffff", &payload(99, 20_000)).await.unwrap();
        assert!(c.get("ffff").await.unwrap().is_some());
        assert!(c.get(&key(0)).await.unwrap().is_none());
        assert!(on_disk(&dir) <= 20_000 + 1000);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn recency_outlives_the_process_through_the_entries_modification_times() {
        let dir = tmp("mtime");
        {
            let c = DiskCache::open(&dir).unwrap();
            for i in 0..3 {
                c.put(&key(i), &payload(i, 1000)).await.unwrap();
            }
            let c = DiskCache::open(&dir).unwrap().with_max_bytes(1_000_000);
            assert!(c.get(&key(0)).await.unwrap().is_some(), "a hit makes 0 the most recent");
        }
        let c = DiskCache::open(&dir).unwrap().with_max_bytes(4000);
        let three = c.size().unwrap().unwrap();
        assert!(three > 3000 && three < 4000, "{three}");
        c.put(&key(3), &payload(3, 1000)).await.unwrap();
        assert!(c.get(&key(1)).await.unwrap().is_none(), "1 was the least recently used");
        for i in [0, 2, 3] {
            assert!(c.get(&key(i)).await.unwrap().is_some(), "{i} kept");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn eviction_removes_the_entry_but_keeps_a_payload_the_journal_pins_or_another_entry_names() {
        let dir = tmp("pins");
        let pins = Arc::new(PayloadPins::new());
        let c = DiskCache::open(&dir)
            .unwrap()
            .with_max_bytes(2500)
            .with_pins(pins.clone());
        let (pinned, shared) = (payload(1, 1000), payload(2, 1000));
        pins.pin(pinned.artifacts[0].id());
        c.put(&key(1), &pinned).await.unwrap();
        c.put(&key(2), &shared).await.unwrap();
        c.put(&key(3), &shared).await.unwrap();
        c.put(&key(4), &payload(4, 1000)).await.unwrap();
        assert!(c.get(&key(1)).await.unwrap().is_none() && c.get(&key(2)).await.unwrap().is_none());
        assert!(
            c.blobs.path_of(pinned.artifacts[0].id()).exists(),
            "pinned payload kept"
        );
        assert!(
            c.blobs.path_of(shared.artifacts[0].id()).exists(),
            "entry 3 still names it"
        );
        assert!(c.get(&key(3)).await.unwrap().is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_puts_and_hits_keep_the_count_true_and_the_cap_within_the_puts_in_flight() {
        let dir = tmp("concurrent");
        let cap = 20_000;
        let c = DiskCache::open(&dir).unwrap().with_max_bytes(cap);
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let c = c.clone();
                tokio::spawn(async move {
                    for i in 0..50 {
                        let n = t * 1000 + i;
                        c.put(&key(n), &payload(n, 1000)).await.unwrap();
                        let _ = c.get(&key(t * 1000)).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let size = on_disk(&dir);
        let counted = c.size().unwrap().unwrap_or(0);
        assert_eq!(counted, size, "what the cap counts is what is on disk");
        // Each task's last put may land over the cap by its own entry.
        assert!(size <= cap + 8 * 1100, "{size}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
