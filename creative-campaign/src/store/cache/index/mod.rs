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

mod upgrade;

use super::EntryIds;
use crate::store::blobs::BlobStore;
use crate::store::gc::{id_key, lower_hex_digit, PayloadPins};
use crate::store::StoreError;
use creative_core::artifact::ArtifactId;
pub use upgrade::SCHEMA_V1;
use upgrade::{import_entry_files, migrate_v1};

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
}

impl Index {
    pub fn open(dir: &Path) -> Result<Index, StoreError> {
        let path = dir.join(INDEX_FILE);
        let mut db = match connect(&path) {
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
                connect(&path).map_err(sql_err("open", &path))?
            }
            Err(e) => return Err(sql_err("open", &path)(e)),
        };
        import_entry_files(&mut db, &path, dir)?;
        let shared = Arc::new(Shared::default());
        let (queue, rx) = mpsc::channel(QUEUE);
        let writer = {
            let (path, shared) = (path.clone(), shared.clone());
            std::thread::Builder::new()
                .name("creative-cache-index".into())
                .spawn(move || Writer { db, path, shared }.run(rx))
                .map_err(|e| StoreError(format!("start the writer of {}: {e}", dir.display())))?
        };
        Ok(Index {
            path,
            readers: Mutex::default(),
            shared,
            clock: AtomicU64::new(0),
            queue: Some(queue),
            writer: Some(writer),
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

fn connect(path: &Path) -> Result<Connection, rusqlite::Error> {
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
    tx.commit()?;
    Ok(db)
}

/// The thread that owns the write connection.
struct Writer {
    db: Connection,
    path: PathBuf,
    shared: Arc<Shared>,
}

/// Payloads an applied put's evictions left named by no entry.
struct Freed<'a> {
    by: &'a Put,
    ids: Vec<ArtifactId>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(op) = rx.blocking_recv() {
            // Nobody waits for a put's row, so the writer lets a batch gather
            // (a commit costs little more for hundreds of rows than for one);
            // a flush is waited for, so it ends the gathering.
            let mut flush = matches!(op, Op::Flush(_));
            batch.push(op);
            let mut waited = Duration::ZERO;
            loop {
                let mut closed = false;
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(op) => {
                            flush |= matches!(op, Op::Flush(_));
                            batch.push(op);
                        }
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                }
                if flush || closed || batch.len() >= BATCH || waited >= GATHER {
                    break;
                }
                std::thread::sleep(GATHER_SLICE);
                waited += GATHER_SLICE;
            }
            self.apply(&mut batch);
        }
    }

    /// Apply `batch` in one transaction (one per operation if that fails, so
    /// one bad row costs only itself), then release what the puts held and
    /// answer the flushes.
    fn apply(&mut self, batch: &mut Vec<Op>) {
        let path = &self.path;
        let warn = |e: rusqlite::Error| {
            tracing::warn!(path = %path.display(), error = %e, "cache index write failed; the entry is a miss");
        };
        let freed = match transact(&mut self.db, batch) {
            Ok(freed) => freed,
            Err(e) if batch.len() == 1 => {
                warn(e);
                Vec::new()
            }
            Err(_) => {
                let mut all = Vec::new();
                for op in batch.iter() {
                    match transact(&mut self.db, std::slice::from_ref(op)) {
                        Ok(f) => all.extend(f),
                        Err(e) => warn(e),
                    }
                }
                all
            }
        };
        let puts = || {
            batch.iter().filter_map(|op| match op {
                Op::Put(p) => Some(&**p),
                _ => None,
            })
        };
        for p in puts() {
            self.shared.end_put(&p.ids);
        }
        // After the puts' own claims are released and before any later put is
        // applied: nothing can name a freed payload in between but a put still
        // queued, whose claim keeps the file.
        {
            let writing = self.shared.writing.lock().unwrap_or_else(|p| p.into_inner());
            for f in &freed {
                let pinned = f.by.pins.as_ref().map(|p| p.hold());
                for id in &f.ids {
                    let k = id_key(id.as_str());
                    if pinned.as_ref().is_some_and(|p| p.contains(&k)) || writing.contains_key(&k) {
                        continue;
                    }
                    if let Err(e) = f.by.blobs.remove(id) {
                        let blob = f.by.blobs.path_of(id);
                        tracing::warn!(path = %blob.display(), error = %e, "cache eviction could not remove a payload");
                    }
                }
            }
        }
        for p in puts() {
            self.shared.clear_pending(&p.key, &p.body);
        }
        for op in batch.drain(..) {
            if let Op::Flush(done) = op {
                let _ = done.send(());
            }
        }
    }
}

/// Apply `ops` in one immediate transaction; the payloads evictions freed.
fn transact<'a>(db: &mut Connection, ops: &'a [Op]) -> Result<Vec<Freed<'a>>, rusqlite::Error> {
    let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // The transaction holds the write lock, so the total read here stays true
    // while it runs: it is kept in step here and written once at the end.
    let mut total = Total::read(&tx)?;
    let mut freed = Vec::new();
    for op in ops {
        match op {
            Op::Put(p) => {
                let (entry, mut ids) = replace(&tx, &mut total, &p.key, &p.body, p.bytes, p.used, &p.ids)?;
                if let Some(cap) = p.cap {
                    ids.extend(evict(&tx, &mut total, cap, entry)?);
                }
                if !ids.is_empty() {
                    freed.push(Freed { by: p, ids });
                }
            }
            Op::Touch { key, used } => {
                tx.prepare_cached("UPDATE entries SET used = ?1 WHERE key = ?2")?
                    .execute(params![used, SqlKey::of(key)])?;
            }
            Op::Flush(_) => {}
        }
    }
    total.write(&tx)?;
    tx.commit()?;
    Ok(freed)
}

/// The bytes the cap counts, as a transaction changes them.
struct Total {
    bytes: i64,
    changed: bool,
}

impl Total {
    fn read(tx: &rusqlite::Transaction<'_>) -> Result<Total, rusqlite::Error> {
        Ok(Total {
            bytes: total(tx)? as i64,
            changed: false,
        })
    }

    fn add(&mut self, n: i64) {
        self.bytes = self.bytes.saturating_add(n).max(0);
        self.changed = true;
    }

    fn write(&self, tx: &rusqlite::Transaction<'_>) -> Result<(), rusqlite::Error> {
        if self.changed {
            tx.prepare_cached("UPDATE totals SET bytes = ?1 WHERE id = 0")?
                .execute(params![self.bytes])?;
        }
        Ok(())
    }
}

/// Put (or replace) the row of `key`, keeping the names and the total in step.
/// Returns the new row's id and the payloads the replaced row named that no
/// entry names any more.
fn replace(
    tx: &rusqlite::Transaction<'_>,
    total: &mut Total,
    key: &str,
    body: &[u8],
    bytes: u64,
    used: i64,
    ids: &[ArtifactId],
) -> Result<(i64, Vec<ArtifactId>), rusqlite::Error> {
    let key = SqlKey::of(key);
    let mut insert = tx.prepare_cached(
        "INSERT INTO entries(key, body, bytes, used) VALUES(?1, ?2, ?3, ?4) ON CONFLICT(key) DO NOTHING",
    )?;
    // A new key (the common case) is one statement; only a key already there
    // pays for reading and unnaming the row it replaces.
    let old = if insert.execute(params![key, body, bytes as i64, used])? == 0 {
        let old = tx
            .prepare_cached("SELECT id FROM entries WHERE key = ?1")?
            .query_row(params![key], |r| r.get(0))
            .optional()?;
        let old = match old {
            Some(id) => remove(tx, total, id)?,
            None => Vec::new(),
        };
        insert.execute(params![key, body, bytes as i64, used])?;
        old
    } else {
        Vec::new()
    };
    let entry = tx.last_insert_rowid();
    let mut name = tx.prepare_cached("INSERT OR IGNORE INTO names(payload, entry) VALUES(?1, ?2)")?;
    for id in ids {
        name.execute(params![id_key(id.as_str()), entry])?;
    }
    total.add(bytes as i64);
    if old.is_empty() {
        return Ok((entry, old));
    }
    Ok((entry, unnamed(tx, old)?))
}

/// Remove the row `entry`; returns the payloads it named (maybe still named by others).
fn remove(tx: &rusqlite::Transaction<'_>, total: &mut Total, entry: i64) -> Result<Vec<ArtifactId>, rusqlite::Error> {
    let old: Option<(Vec<u8>, i64)> = tx
        .prepare_cached("DELETE FROM entries WHERE id = ?1 RETURNING body, bytes")?
        .query_row(params![entry], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((body, bytes)) = old else {
        return Ok(Vec::new());
    };
    total.add(-bytes);
    let ids: Vec<ArtifactId> = serde_json::from_slice::<EntryIds>(&body)
        .map(|e| e.artifacts.into_iter().map(|a| a.id).collect())
        .unwrap_or_default();
    let mut unname = tx.prepare_cached("DELETE FROM names WHERE payload = ?1 AND entry = ?2")?;
    for id in &ids {
        unname.execute(params![id_key(id.as_str()), entry])?;
    }
    Ok(ids)
}

/// Those of `ids` no entry names. Names are 16-byte keys of the ids, so two
/// ids alike in those bytes keep each other's file: the safe way to err.
fn unnamed(tx: &rusqlite::Transaction<'_>, mut ids: Vec<ArtifactId>) -> Result<Vec<ArtifactId>, rusqlite::Error> {
    let mut named = tx.prepare_cached("SELECT EXISTS(SELECT 1 FROM names WHERE payload = ?1)")?;
    let mut keep = Vec::with_capacity(ids.len());
    for id in ids.drain(..) {
        let is_named: bool = named.query_row(params![id_key(id.as_str())], |r| r.get(0))?;
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

/// Evict least recently used entries, never the row `keep`, until the total
/// is under `cap`; returns the payloads no entry names any more.
fn evict(
    tx: &rusqlite::Transaction<'_>,
    total: &mut Total,
    cap: u64,
    keep: i64,
) -> Result<Vec<ArtifactId>, rusqlite::Error> {
    let cap = i64::try_from(cap).unwrap_or(i64::MAX);
    let mut freed = Vec::new();
    while total.bytes > cap {
        let victims: Vec<i64> = tx
            .prepare_cached("SELECT id FROM entries WHERE id != ?1 ORDER BY used LIMIT 16")?
            .query_map(params![keep], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if victims.is_empty() {
            break;
        }
        for v in victims {
            if total.bytes <= cap {
                break;
            }
            let ids = remove(tx, total, v)?;
            freed.extend(unnamed(tx, ids)?);
        }
    }
    Ok(freed)
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
