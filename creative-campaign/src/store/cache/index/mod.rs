//! The cache's index: one SQLite file, written by one thread of its own.
//!
//! # Why a writer thread
//!
//! A put used to run its transaction on a blocking-pool thread and wait for
//! it: two thread hand-offs and one transaction per generation, which with
//! fast providers was a large share of a campaign's CPU. The index is not the
//! durable record (the journal is), so a put now queues its row and returns;
//! the writer applies whatever has queued meanwhile in one transaction, as the
//! journal's committer does. A row not yet applied is still visible to this
//! process (see [`Shared::pending`]); another process sees it once committed,
//! at most `GATHER` (20 ms) later. [`Index::flush`] waits for every queued row.
//!
//! Lookups read through connections of their own: with the write-ahead log a
//! reader is never blocked by the writer, so a miss costs a point query on the
//! caller's thread and no hand-off at all.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, ToSql, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

mod known;
mod upgrade;
mod writer;

use crate::store::blobs::BlobStore;
use crate::store::gc::{id_key, lower_hex_digit, PayloadPins};
use crate::store::StoreError;
use creative_core::artifact::ArtifactId;
use known::Known;
pub use upgrade::SCHEMA_V1;
use upgrade::{import_entry_files, migrate_v1};
use writer::{data_version, total, Writer};

/// The index file's name in the cache folder.
pub(crate) const INDEX_FILE: &str = "cache.sqlite";

/// The layout of the index. A file of version 1 is migrated on open; one of
/// any other version is moved aside.
const SCHEMA_VERSION: i64 = 2;

/// Version 2: why this shape.
///
/// A put used to write four to five pages of log (3.9 in the `cache_index`
/// bench's transactions of 49 puts, 5.5 in a 10,000-job campaign): the bodies lived in the leaves of a `WITHOUT ROWID`
/// table keyed by hex text, so every put landed on a random leaf holding a
/// handful of rows, which split often, and `names` repeated both hex ids.
/// Now the bodies sit in a rowid table in put order (consecutive puts share
/// its last page), and the two trees a put must touch at a random place, the
/// key index and `names`, hold short rows (a key as its bytes, a payload as
/// the 16-byte key gc uses, an entry as its row id), so many fit a page and a
/// batch's random inserts share pages.
///
/// `key` holds the bytes a lowercase hex key of even length spells, and any
/// other key as text (see [`SqlKey`]): a blob never equals a text, so every
/// key still has exactly one row.
const TABLES: &str = "
CREATE TABLE IF NOT EXISTS entries(
    id INTEGER PRIMARY KEY,
    key NOT NULL,
    body BLOB NOT NULL,
    bytes INTEGER NOT NULL,
    used INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS names(
    payload BLOB NOT NULL,
    entry INTEGER NOT NULL,
    PRIMARY KEY(payload, entry)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS totals(id INTEGER PRIMARY KEY CHECK(id = 0), bytes INTEGER NOT NULL);
INSERT OR IGNORE INTO totals VALUES(0, 0);
";

/// The indexes of version 2's `entries` (apart, so a migration builds them
/// once its rows are in).
const INDEXES: &str = "
CREATE UNIQUE INDEX IF NOT EXISTS entries_by_key ON entries(key);
CREATE INDEX IF NOT EXISTS entries_by_use ON entries(used);
";

/// How long the writer waits for another process writing the index.
const BUSY_WAIT: Duration = Duration::from_secs(30);

/// How long a lookup waits for another process; it runs on the caller's
/// thread, so it gives up sooner and counts as a miss.
const READ_WAIT: Duration = Duration::from_secs(2);

/// Rows queued for the writer before a put waits for room: a few hundred
/// bytes each, so the queue stays under a megabyte.
const QUEUE: usize = 2048;

/// Operations applied in one transaction at most.
const BATCH: usize = 512;

/// How long the writer lets puts gather before a commit, at most.
///
/// A transaction pays a fixed cost (the pages every commit rewrites: the
/// total, the last pages of the bodies and of the recency index, the file
/// header) and each put a random leaf of the key index and of `names`, which
/// the puts of one transaction share more the more of them there are. The
/// `cache_index` bench, writer CPU and pages written per put by transaction
/// size: 49 puts 17 us and 1.5 pages, 150 puts 10 us and 0.74, 500 puts 8.5 us
/// and 0.47. 5 ms gathered about 49 puts in a fast campaign; 20 ms gathers a
/// few hundred, and only delays what other processes see.
const GATHER: Duration = Duration::from_millis(20);

/// The writer gathers in slices of this, so that a flush, a full batch or a
/// closed queue ends the wait early.
const GATHER_SLICE: Duration = Duration::from_millis(4);

/// Idle reader connections kept for reuse.
const READERS: usize = 8;

fn sql_err<'a>(what: &'a str, path: &'a Path) -> impl Fn(rusqlite::Error) -> StoreError + 'a {
    move |e| StoreError(format!("{what} {}: {e}", path.display()))
}

/// A cache key as the index stores it: the bytes of a lowercase hex key of
/// even length (a BLAKE3 key is 32 bytes instead of 64 characters), any
/// other key as its text. The mapping is one-to-one, so lookups stay exact.
pub(super) enum SqlKey<'a> {
    Bytes([u8; SqlKey::MAX], usize),
    Text(&'a str),
}

impl<'a> SqlKey<'a> {
    /// The longest key stored as bytes; a longer one is stored as text.
    const MAX: usize = 64;

    pub(super) fn of(key: &'a str) -> SqlKey<'a> {
        let hex = key.as_bytes();
        if hex.is_empty() || !hex.len().is_multiple_of(2) || hex.len() > 2 * Self::MAX {
            return SqlKey::Text(key);
        }
        let mut out = [0u8; Self::MAX];
        for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            match (lower_hex_digit(pair[0]), lower_hex_digit(pair[1])) {
                (Some(hi), Some(lo)) => *o = (hi << 4) | lo,
                _ => return SqlKey::Text(key),
            }
        }
        SqlKey::Bytes(out, hex.len() / 2)
    }
}

impl ToSql for SqlKey<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            SqlKey::Bytes(b, n) => ValueRef::Blob(&b[..*n]),
            SqlKey::Text(t) => ValueRef::Text(t.as_bytes()),
        }))
    }
}

/// Whether `e` says the file is not a usable SQLite database.
fn is_damaged(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

/// What the callers and the writer share.
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// Payloads a put of this process is writing or has queued: an eviction
    /// that finds one of them named by no entry leaves its file, which the put
    /// is about to name.
    writing: Mutex<HashMap<[u8; 16], u32>>,
    /// Entries queued but not yet in the index, so this process reads its own
    /// puts at once.
    pending: Mutex<HashMap<String, Arc<[u8]>>>,
    /// Keys the index cannot hold, while no other connection writes it.
    known: Known,
}

impl Shared {
    pub(super) fn begin_put(&self, ids: &[ArtifactId]) {
        let mut w = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            *w.entry(id_key(id.as_str())).or_insert(0) += 1;
        }
    }

    pub(super) fn end_put(&self, ids: &[ArtifactId]) {
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

    pub(super) fn pending(&self, key: &str) -> Option<Arc<[u8]>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }

    pub(super) fn set_pending(&self, key: &str, body: Arc<[u8]>) {
        self.known.put(key);
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string(), body);
    }

    /// Forget `key`'s pending body, unless a later put replaced it.
    pub(super) fn clear_pending(&self, key: &str, body: &Arc<[u8]>) {
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if p.get(key).is_some_and(|b| Arc::ptr_eq(b, body)) {
            p.remove(key);
        }
    }
}

/// A row for the writer.
pub(super) struct Put {
    pub key: String,
    pub body: Arc<[u8]>,
    pub bytes: u64,
    pub used: i64,
    pub ids: Vec<ArtifactId>,
    /// The cap of the cache that put it, if any.
    pub cap: Option<u64>,
    /// Where its evictions remove payloads, and which to keep.
    pub blobs: BlobStore,
    pub pins: Option<Arc<PayloadPins>>,
}

pub(super) enum Op {
    Put(Box<Put>),
    /// A hit refreshes the entry's recency.
    Touch {
        key: String,
        used: i64,
    },
    /// Answered once everything queued before it is committed.
    Flush(oneshot::Sender<()>),
}

/// The index of one cache folder: reader connections, the writer's queue and
/// the state both share.
#[derive(Debug)]
pub(super) struct Index {
    pub path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    pub shared: Arc<Shared>,
    /// The last recency stamp given, so stamps only grow within a process.
    clock: AtomicU64,
    queue: Option<mpsc::Sender<Op>>,
    writer: Option<JoinHandle<()>>,
    /// Lookups that queried the index (the tests' window on [`Known`]).
    #[cfg(test)]
    pub queries: AtomicU64,
}

impl Index {
    /// The index in `dir`; `owned`: only this index writes it while it is
    /// open (see [`Known`]).
    pub fn open(dir: &Path, owned: bool) -> Result<Index, StoreError> {
        let path = dir.join(INDEX_FILE);
        let (mut db, (entries, version)) = match connect_patiently(&path) {
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
                connect_patiently(&path).map_err(sql_err("open", &path))?
            }
            Err(e) => return Err(sql_err("open", &path)(e)),
        };
        // Imported by this connection, so its version does not move: the
        // entries are read into the filter below like any others.
        let entries = entries + import_entry_files(&mut db, &path, dir)?;
        let knowable = owned && entries <= LOAD_KEYS;
        let known = Known::new(knowable);
        if knowable && entries > 0 {
            // Read outside the write lock: an entry another connection adds
            // meanwhile changes the version the writer watches.
            load_keys(&db, &known).map_err(sql_err("read", &path))?;
        }
        let shared = Arc::new(Shared {
            known,
            ..Shared::default()
        });
        let (queue, rx) = mpsc::channel(QUEUE);
        let writer = {
            let (path, shared) = (path.clone(), shared.clone());
            std::thread::Builder::new()
                .name("creative-cache-index".into())
                .spawn(move || {
                    Writer {
                        db,
                        path,
                        shared,
                        version,
                    }
                    .run(rx)
                })
                .map_err(|e| StoreError(format!("start the writer of {}: {e}", dir.display())))?
        };
        Ok(Index {
            path,
            readers: Mutex::default(),
            shared,
            clock: AtomicU64::new(0),
            queue: Some(queue),
            writer: Some(writer),
            #[cfg(test)]
            queries: AtomicU64::new(0),
        })
    }

    /// A recency stamp: microseconds since the epoch, never below the last one given.
    pub fn stamp(&self) -> i64 {
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

    /// Run `f` on a reader connection of the pool (opened when none is idle).
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let err = sql_err("read", &self.path);
        let idle = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let db = match idle {
            Some(db) => db,
            None => {
                let db = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(&err)?;
                db.busy_timeout(READ_WAIT).map_err(&err)?;
                // Lookups touch a few pages each: a small page cache per reader.
                db.pragma_update(None, "cache_size", -256).map_err(&err)?;
                no_checkpoint_on_close(&db).map_err(&err)?;
                db
            }
        };
        let out = f(&db).map_err(&err);
        let mut idle = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < READERS {
            idle.push(db);
        }
        out
    }

    /// The body of `key`'s entry: this process's queued put, else the index's row.
    pub fn body(&self, key: &str) -> Result<Option<Arc<[u8]>>, StoreError> {
        if let Some(body) = self.shared.pending(key) {
            return Ok(Some(body));
        }
        if self.shared.known.absent(key) {
            return Ok(None);
        }
        #[cfg(test)]
        self.queries.fetch_add(1, Ordering::Relaxed);
        let body: Option<Vec<u8>> = self.read(|db| {
            db.prepare_cached("SELECT body FROM entries WHERE key = ?1")?
                .query_row(params![SqlKey::of(key)], |r| r.get(0))
                .optional()
        })?;
        Ok(body.map(Arc::from))
    }

    /// The total the cap counts, as of the last committed put.
    pub fn total(&self) -> Result<u64, StoreError> {
        self.read(total)
    }

    /// Hand `op` to the writer, waiting only while its queue is full.
    pub async fn send(&self, op: Op) -> Result<(), StoreError> {
        let stopped = || StoreError(format!("the writer of {} has stopped", self.path.display()));
        self.queue
            .as_ref()
            .ok_or_else(stopped)?
            .send(op)
            .await
            .map_err(|_| stopped())
    }

    /// Wait until every row queued so far is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Flush(tx)).await?;
        rx.await
            .map_err(|_| StoreError(format!("the writer of {} has stopped", self.path.display())))
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        // Closing the queue lets the writer apply what is left, then return.
        self.queue.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// Leave the write-ahead log as it is when `db` closes (see [`connect`]).
fn no_checkpoint_on_close(db: &Connection) -> Result<(), rusqlite::Error> {
    db.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map(drop)
}

/// [`connect`], again while another connection's hold makes SQLite refuse
/// at once rather than wait (two processes opening a version 1 index
/// together: one switching it to the write-ahead log, the other reading its
/// header), for up to [`BUSY_WAIT`].
fn connect_patiently(path: &Path) -> Result<(Connection, (i64, i64)), rusqlite::Error> {
    let started = std::time::Instant::now();
    loop {
        match connect(path) {
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                ) && started.elapsed() < BUSY_WAIT =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            r => return r,
        }
    }
}

/// An owned cache's index with at most this many entries at open has their
/// keys read into its [`Known`] filter (measured: 45 to 50 ms more to open
/// one of 250,000 entries); a larger one's lookups query.
const LOAD_KEYS: i64 = 250_000;

/// Put every key of the index into `known`, as lookups spell it (lowercase hex
/// for a key stored as bytes, see [`SqlKey`]).
fn load_keys(db: &Connection, known: &Known) -> Result<(), rusqlite::Error> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut st = db.prepare("SELECT key FROM entries")?;
    let mut rows = st.query([])?;
    let mut hex = String::new();
    while let Some(row) = rows.next()? {
        match row.get_ref(0)? {
            ValueRef::Blob(b) => {
                hex.clear();
                for &byte in b {
                    hex.push(HEX[usize::from(byte >> 4)] as char);
                    hex.push(HEX[usize::from(byte & 15)] as char);
                }
                known.put(&hex);
            }
            ValueRef::Text(t) => known.put(&String::from_utf8_lossy(t)),
            _ => {}
        }
    }
    Ok(())
}

/// Open (and create or migrate) the index; with how many entries it holds (up
/// to one past [`LOAD_KEYS`]) and its `data_version`, both read under the write
/// lock, so any later commit by another connection shows as a change of version.
fn connect(path: &Path) -> Result<(Connection, (i64, i64)), rusqlite::Error> {
    let mut db = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    db.busy_timeout(BUSY_WAIT)?;
    // The write-ahead log: the writer appends, readers are not blocked, and
    // with NORMAL only checkpoints sync (a power cut may lose the last puts,
    // never the file's integrity).
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "NORMAL")?;
    // Checkpoints (the only syncs) every 8,192 pages of log (32 MiB) rather
    // than SQLite's 1,000: a busy run syncs a few times a minute, not every second.
    db.pragma_update(None, "wal_autocheckpoint", 8192)?;
    // Nor does closing: the last connection of a run would copy the whole log
    // into the file and sync it as the run ends (34 ms after a 10,000-job run,
    // with nothing waiting on it). The log stays beside the file, bounded by
    // the automatic checkpoints, and the next open reads it as usual.
    no_checkpoint_on_close(&db)?;
    // Under the write lock, so a process opening the file at the same time
    // waits, then finds it migrated.
    let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let has_tables: bool = tx.query_row(
        "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table')",
        [],
        |r| r.get(0),
    )?;
    match (has_tables, version) {
        (false, _) | (true, SCHEMA_VERSION) => {
            tx.execute_batch(TABLES)?;
            tx.execute_batch(INDEXES)?;
        }
        (true, 1) => migrate_v1(&tx)?,
        (true, _) => return Err(rusqlite::Error::InvalidQuery),
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    let entries: i64 = tx.query_row(
        "SELECT count(*) FROM (SELECT 1 FROM entries LIMIT ?1)",
        [LOAD_KEYS + 1],
        |r| r.get(0),
    )?;
    let version = data_version(&tx)?;
    tx.commit()?;
    Ok((db, (entries, version)))
}

/// The key ([`id_key`]) of every payload the cache folder's index names, one
/// at a time (for gc). Nothing when the folder has no index. An index of
/// version 1 (not opened by a cache since the upgrade) is read as it is.
pub(crate) fn for_each_named_payload(dir: &Path, mut f: impl FnMut([u8; 16])) -> Result<(), StoreError> {
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
    let version: i64 = db
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(&err)?;
    let mut q = db.prepare("SELECT DISTINCT payload FROM names").map_err(&err)?;
    let mut rows = q.query([]).map_err(&err)?;
    while let Some(row) = rows.next().map_err(&err)? {
        match row.get_ref(0).map_err(&err)? {
            ValueRef::Blob(b) if version >= 2 => match <[u8; 16]>::try_from(b) {
                Ok(k) => f(k),
                Err(_) => {
                    return Err(StoreError(format!(
                        "read {}: a payload name of {} bytes",
                        path.display(),
                        b.len()
                    )))
                }
            },
            ValueRef::Text(t) => f(id_key(&String::from_utf8_lossy(t))),
            other => {
                return Err(StoreError(format!(
                    "read {}: a payload name of type {:?}",
                    path.display(),
                    other.data_type()
                )))
            }
        }
    }
    Ok(())
}
