//! The generation cache on disk: an index of entries in one SQLite file beside
//! the payloads, optionally capped in size with least-recently-used eviction.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::store::blobs::BlobStore;
use crate::store::gc::{id_key, PayloadPins};
use crate::store::journal::ArtifactRecord;
use crate::store::{GenerationCache, StoreError};
use creative_core::artifact::{Artifact, ArtifactId};
use creative_core::request::{Generation, Usage};

/// A content-addressed cache of generations in a folder: `cache.sqlite` indexes
/// the entries (the artifacts and usage of one generation, by cache key),
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

/// The index file and what this process keeps beside it.
#[derive(Debug)]
struct Index {
    path: PathBuf,
    db: Mutex<Connection>,
    /// Payloads a put of this process is writing: an eviction that finds one
    /// of them named by no entry leaves its file, which the put is about to name.
    writing: Mutex<HashMap<[u8; 16], u32>>,
    /// The last recency stamp given, so stamps only grow within a process.
    clock: AtomicU64,
}

/// The index file's name in the cache folder.
pub(crate) const INDEX_FILE: &str = "cache.sqlite";

/// The layout of the index; a file of another version is moved aside.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entries(
    key TEXT PRIMARY KEY NOT NULL,
    body BLOB NOT NULL,
    bytes INTEGER NOT NULL,
    used INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_by_use ON entries(used);
CREATE TABLE IF NOT EXISTS names(
    payload TEXT NOT NULL,
    entry TEXT NOT NULL,
    PRIMARY KEY(payload, entry)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS totals(id INTEGER PRIMARY KEY CHECK(id = 0), bytes INTEGER NOT NULL);
INSERT OR IGNORE INTO totals VALUES(0, 0);
";

/// How long a put or hit waits for another process writing the index.
const BUSY_WAIT: Duration = Duration::from_secs(30);

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

fn sql_err<'a>(what: &'a str, path: &'a Path) -> impl Fn(rusqlite::Error) -> StoreError + 'a {
    move |e| StoreError(format!("{what} {}: {e}", path.display()))
}

/// Whether `e` says the file is not a usable SQLite database.
fn is_damaged(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

impl Index {
    fn open(dir: &Path) -> Result<Index, StoreError> {
        let path = dir.join(INDEX_FILE);
        let db = match Self::connect(&path) {
            Ok(db) => db,
            Err(e) if is_damaged(&e) || matches!(e, rusqlite::Error::InvalidQuery) => {
                let aside = path.with_extension(format!(
                    "sqlite.damaged-{}",
                    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
                ));
                tracing::warn!(path = %path.display(), aside = %aside.display(), error = %e,
                    "the cache index is damaged or of another version; starting a new one (its entries are misses)");
                std::fs::rename(&path, &aside)
                    .map_err(|e| StoreError(format!("move {} aside: {e}", path.display())))?;
                for side in ["sqlite-wal", "sqlite-shm"] {
                    let _ = std::fs::remove_file(path.with_extension(side));
                }
                Self::connect(&path).map_err(sql_err("open", &path))?
            }
            Err(e) => return Err(sql_err("open", &path)(e)),
        };
        let index = Index {
            path,
            db: Mutex::new(db),
            writing: Mutex::default(),
            clock: AtomicU64::new(0),
        };
        index.import_entry_files(dir)?;
        Ok(index)
    }

    fn connect(path: &Path) -> Result<Connection, rusqlite::Error> {
        let db = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        db.busy_timeout(BUSY_WAIT)?;
        // The write-ahead log: a put appends, readers are not blocked, and with
        // NORMAL only checkpoints sync (a power cut may lose the last puts,
        // never the file's integrity).
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        // Checkpoints (the only syncs) every 8,192 pages of log (32 MiB)
        // rather than SQLite's 1,000: a busy run's puts sync a few times a
        // minute, not every second.
        db.pragma_update(None, "wal_autocheckpoint", 8192)?;
        let version: i64 = db.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let has_tables: bool = db.query_row(
            "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table')",
            [],
            |r| r.get(0),
        )?;
        if has_tables && version != SCHEMA_VERSION {
            return Err(rusqlite::Error::InvalidQuery);
        }
        db.execute_batch(SCHEMA)?;
        db.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(db)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A recency stamp: microseconds since the epoch, never below the last one given.
    fn stamp(&self) -> i64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let mut last = self.clock.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1);
            match self
                .clock
                .compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return i64::try_from(next).unwrap_or(i64::MAX),
                Err(seen) => last = seen,
            }
        }
    }

    /// Bring the entry files of a cache written before the index (one file per
    /// entry under `entries/`) into it, then remove them: once per folder.
    fn import_entry_files(&self, dir: &Path) -> Result<(), StoreError> {
        let entries = dir.join("entries");
        let Ok(prefixes) = std::fs::read_dir(&entries) else {
            return Ok(());
        };
        let mut db = self.lock();
        let tx = db.transaction().map_err(sql_err("import into", &self.path))?;
        let mut files = Vec::new();
        for p in prefixes.flatten() {
            let Ok(inner) = std::fs::read_dir(p.path()) else {
                continue;
            };
            for e in inner.flatten() {
                let path = e.path();
                files.push(path.clone());
                let name = e.file_name();
                let Some(key) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                    continue;
                };
                if !is_key(key) {
                    continue;
                }
                let Ok(body) = std::fs::read(&path) else { continue };
                let Ok(entry) = serde_json::from_slice::<CacheEntry>(&body) else {
                    continue;
                };
                let used = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_micros() as i64);
                let ids: Vec<ArtifactId> = entry.artifacts.iter().map(|a| a.id.clone()).collect();
                replace(
                    &tx,
                    key,
                    &body,
                    entry_bytes(body.len() as u64, &entry.artifacts),
                    used,
                    &ids,
                )
                .map_err(sql_err("import into", &self.path))?;
            }
        }
        tx.commit().map_err(sql_err("import into", &self.path))?;
        drop(db);
        for f in files {
            let _ = std::fs::remove_file(f);
        }
        if let Ok(prefixes) = std::fs::read_dir(&entries) {
            for p in prefixes.flatten() {
                let _ = std::fs::remove_dir(p.path());
            }
        }
        let _ = std::fs::remove_dir(&entries);
        Ok(())
    }

    fn begin_put(&self, ids: &[ArtifactId]) {
        let mut w = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            *w.entry(id_key(id.as_str())).or_insert(0) += 1;
        }
    }

    fn end_put(&self, ids: &[ArtifactId]) {
        let mut w = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            let k = id_key(id.as_str());
            if let Some(n) = w.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    w.remove(&k);
                }
            }
        }
    }
}

fn is_key(key: &str) -> bool {
    key.len() >= 2 && key.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Put (or replace) the row of `key`, keeping the names and the total in step.
/// Returns the payloads the replaced row named that no entry names any more.
fn replace(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
    body: &[u8],
    bytes: u64,
    used: i64,
    ids: &[ArtifactId],
) -> Result<Vec<ArtifactId>, rusqlite::Error> {
    let old = remove(tx, key)?;
    tx.prepare_cached("INSERT INTO entries(key, body, bytes, used) VALUES(?1, ?2, ?3, ?4)")?
        .execute(params![key, body, bytes as i64, used])?;
    let mut name = tx.prepare_cached("INSERT OR IGNORE INTO names(payload, entry) VALUES(?1, ?2)")?;
    for id in ids {
        name.execute(params![id.as_str(), key])?;
    }
    tx.prepare_cached("UPDATE totals SET bytes = bytes + ?1 WHERE id = 0")?
        .execute(params![bytes as i64])?;
    unnamed(tx, old)
}

/// Remove the row of `key`; returns the payloads it named (maybe still named by others).
fn remove(tx: &rusqlite::Transaction<'_>, key: &str) -> Result<Vec<ArtifactId>, rusqlite::Error> {
    let old: Option<(Vec<u8>, i64)> = tx
        .prepare_cached("SELECT body, bytes FROM entries WHERE key = ?1")?
        .query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((body, bytes)) = old else {
        return Ok(Vec::new());
    };
    tx.prepare_cached("DELETE FROM entries WHERE key = ?1")?
        .execute(params![key])?;
    tx.prepare_cached("UPDATE totals SET bytes = max(bytes - ?1, 0) WHERE id = 0")?
        .execute(params![bytes])?;
    let ids: Vec<ArtifactId> = serde_json::from_slice::<EntryIds>(&body)
        .map(|e| e.artifacts.into_iter().map(|a| a.id).collect())
        .unwrap_or_default();
    let mut unname = tx.prepare_cached("DELETE FROM names WHERE payload = ?1 AND entry = ?2")?;
    for id in &ids {
        unname.execute(params![id.as_str(), key])?;
    }
    Ok(ids)
}

/// Those of `ids` no entry names.
fn unnamed(tx: &rusqlite::Transaction<'_>, mut ids: Vec<ArtifactId>) -> Result<Vec<ArtifactId>, rusqlite::Error> {
    let mut named = tx.prepare_cached("SELECT EXISTS(SELECT 1 FROM names WHERE payload = ?1)")?;
    let mut keep = Vec::with_capacity(ids.len());
    for id in ids.drain(..) {
        let is_named: bool = named.query_row(params![id.as_str()], |r| r.get(0))?;
        if !is_named {
            keep.push(id);
        }
    }
    Ok(keep)
}

fn total(db: &Connection) -> Result<u64, rusqlite::Error> {
    db.prepare_cached("SELECT bytes FROM totals WHERE id = 0")?
        .query_row([], |r| r.get::<_, i64>(0))
        .map(|n| n.max(0) as u64)
}

impl DiskCache {
    /// A cache in `dir` (created if needed). A cache folder written before the
    /// index existed (one file per entry under `entries/`) is brought into it.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| StoreError(format!("create {}: {e}", dir.display())))?;
        Ok(DiskCache {
            blobs: BlobStore::new(dir.join("objects")),
            index: Arc::new(Index::open(dir)?),
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
    /// name). `None` without a cap.
    pub fn size(&self) -> Result<Option<u64>, StoreError> {
        if self.max_bytes.is_none() {
            return Ok(None);
        }
        let db = self.index.lock();
        total(&db).map(Some).map_err(sql_err("read", &self.index.path))
    }

    /// Remove payloads no entry names, except those the journal pins and
    /// those a put of this process is writing.
    fn remove_payloads(&self, ids: &[ArtifactId]) {
        if ids.is_empty() {
            return;
        }
        let pinned = self.pins.as_ref().map(|p| p.hold());
        let writing = self.index.writing.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            let k = id_key(id.as_str());
            if pinned.as_ref().is_some_and(|p| p.contains(&k)) || writing.contains_key(&k) {
                continue;
            }
            if let Err(e) = self.blobs.remove(id) {
                let blob = self.blobs.path_of(id);
                tracing::warn!(path = %blob.display(), error = %e, "cache eviction could not remove a payload");
            }
        }
    }

    fn get_blocking(&self, key: &str) -> Result<Option<Generation>, StoreError> {
        if !is_key(key) {
            return Err(StoreError(format!("cache key `{key}` is not a hex digest")));
        }
        let body: Option<Vec<u8>> = {
            let db = self.index.lock();
            let read = sql_err("read", &self.index.path);
            let body = db
                .prepare_cached("SELECT body FROM entries WHERE key = ?1")
                .and_then(|mut q| q.query_row(params![key], |r| r.get(0)).optional())
                .map_err(&read)?;
            if body.is_some() {
                db.prepare_cached("UPDATE entries SET used = ?1 WHERE key = ?2")
                    .and_then(|mut q| q.execute(params![self.index.stamp(), key]))
                    .map_err(&read)?;
            }
            body
        };
        let Some(body) = body else { return Ok(None) };
        let Ok(entry) = serde_json::from_slice::<CacheEntry>(&body) else {
            tracing::warn!(key, "unreadable cache entry; treating it as a miss");
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
        if !is_key(key) {
            return Err(StoreError(format!("cache key `{key}` is not a hex digest")));
        }
        let entry = CacheEntry {
            artifacts: artifacts.iter().map(ArtifactRecord::of).collect(),
            usage: usage.clone(),
            raw: raw.clone(),
        };
        let body = serde_json::to_vec(&entry).map_err(|e| StoreError(format!("encode cache entry: {e}")))?;
        let ids: Vec<ArtifactId> = entry.artifacts.iter().map(|a| a.id.clone()).collect();
        // Announced first: until the entry names them, an eviction that finds
        // these payloads named by no entry must leave their files.
        self.index.begin_put(&ids);
        self.write_and_index(key, artifacts, &body, &entry, &ids)
    }

    fn write_and_index(
        &self,
        key: &str,
        artifacts: &[Artifact],
        body: &[u8],
        entry: &CacheEntry,
        ids: &[ArtifactId],
    ) -> Result<(), StoreError> {
        for a in artifacts {
            if let Err(e) = self.blobs.put(a.id(), a.data(), false) {
                self.index.end_put(ids);
                return Err(e);
            }
        }
        let err = sql_err("write", &self.index.path);
        let mut db = self.index.lock();
        let indexed = (|| {
            let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let bytes = entry_bytes(body.len() as u64, &entry.artifacts);
            let mut free = replace(&tx, key, body, bytes, self.index.stamp(), ids)?;
            if let Some(cap) = self.max_bytes {
                free.extend(evict(&tx, cap, key)?);
            }
            tx.commit()?;
            Ok(free)
        })()
        .map_err(&err);
        // Under the index's lock: once it is released, another put's eviction
        // may unname these payloads and must then be free to remove them.
        self.index.end_put(ids);
        // Still under it, so no put of this process names one of the freed
        // payloads between the check and the removal.
        self.remove_payloads(&indexed?);
        drop(db);
        Ok(())
    }
}

/// Evict least recently used entries, never `keep`, until the total is under
/// `cap`; returns the payloads no entry names any more.
fn evict(tx: &rusqlite::Transaction<'_>, cap: u64, keep: &str) -> Result<Vec<ArtifactId>, rusqlite::Error> {
    let mut freed = Vec::new();
    while total(tx)? > cap {
        let victims: Vec<String> = tx
            .prepare_cached("SELECT key FROM entries WHERE key != ?1 ORDER BY used LIMIT 16")?
            .query_map(params![keep], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if victims.is_empty() {
            break;
        }
        for v in victims {
            if total(tx)? <= cap {
                break;
            }
            let ids = remove(tx, &v)?;
            freed.extend(unnamed(tx, ids)?);
        }
    }
    Ok(freed)
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

/// Every payload id the cache folder's index names, one at a time (for gc).
/// Nothing when the folder has no index.
pub(crate) fn for_each_named_payload(dir: &Path, mut f: impl FnMut(&str)) -> Result<(), StoreError> {
    let path = dir.join(INDEX_FILE);
    if !path.exists() {
        return Ok(());
    }
    let err = sql_err("read", &path);
    let db = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(&err)?;
    db.busy_timeout(BUSY_WAIT).map_err(&err)?;
    let mut q = db.prepare("SELECT DISTINCT payload FROM names").map_err(&err)?;
    let mut rows = q.query([]).map_err(&err)?;
    while let Some(row) = rows.next().map_err(&err)? {
        let id: String = row.get(0).map_err(&err)?;
        f(&id);
    }
    Ok(())
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

    /// Every byte the cache holds: the payloads under `objects/` and the
    /// entries' encoded bodies in the index.
    fn on_disk(c: &DiskCache) -> u64 {
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
        let bodies: i64 = c
            .index
            .lock()
            .query_row("SELECT coalesce(sum(length(body)), 0) FROM entries", [], |r| r.get(0))
            .unwrap();
        walk(c.blobs.root()) + bodies as u64
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
            let size = on_disk(&c);
            largest = largest.max(size);
            assert_eq!(c.size().unwrap(), Some(size), "the count is what is on disk");
        }
        assert!(
            largest <= cap + entry,
            "{largest} bytes on disk, cap {cap} + one entry {entry}"
        );
        assert_eq!(on_disk(&c), fit as u64 * entry, "as many as fit");
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
        assert!(on_disk(&c) <= 20_000 + 1000);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn recency_outlives_the_process_in_the_index() {
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

    #[tokio::test]
    async fn a_cache_of_entry_files_is_brought_into_the_index_once_and_still_hits() {
        let dir = tmp("import");
        let g = payload(7, 100);
        let blobs = BlobStore::new(dir.join("objects"));
        blobs.put(g.artifacts[0].id(), g.artifacts[0].data(), false).unwrap();
        let body = serde_json::to_vec(&CacheEntry {
            artifacts: g.artifacts.iter().map(ArtifactRecord::of).collect(),
            usage: Usage {
                cost_usd: 0.5,
                ..Usage::default()
            },
            raw: None,
        })
        .unwrap();
        std::fs::create_dir_all(dir.join("entries/ab")).unwrap();
        std::fs::write(dir.join("entries/ab/abcd.json"), &body).unwrap();
        std::fs::write(dir.join("entries/ab/abce.json"), b"{ torn").unwrap();
        let c = DiskCache::open(&dir).unwrap();
        assert!(!dir.join("entries").exists(), "the entry files are gone");
        let hit = c.get("abcd").await.unwrap().expect("the imported entry hits");
        assert_eq!((hit.artifacts[0].id(), hit.usage.cost_usd), (g.artifacts[0].id(), 0.5));
        assert!(c.get("abce").await.unwrap().is_none(), "a torn entry file is a miss");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_damaged_index_is_moved_aside_and_the_cache_starts_empty() {
        let dir = tmp("damaged");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(INDEX_FILE), vec![b'x'; 8192]).unwrap();
        let c = DiskCache::open(&dir).unwrap();
        assert!(c.get("abcd").await.unwrap().is_none());
        c.put("abcd", &payload(1, 10)).await.unwrap();
        assert!(c.get("abcd").await.unwrap().is_some());
        let aside = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("damaged-"))
            .count();
        assert_eq!(aside, 1, "the damaged file is kept aside for a person to look at");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn two_caches_on_one_folder_see_each_others_entries() {
        let dir = tmp("shared");
        let (a, b) = (DiskCache::open(&dir).unwrap(), DiskCache::open(&dir).unwrap());
        a.put("abcd", &payload(1, 10)).await.unwrap();
        assert!(b.get("abcd").await.unwrap().is_some(), "one index, two connections");
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
        let size = on_disk(&c);
        let counted = c.size().unwrap().unwrap_or(0);
        assert_eq!(counted, size, "what the cap counts is what is on disk");
        // Each task's last put may land over the cap by its own entry.
        assert!(size <= cap + 8 * 1100, "{size}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
