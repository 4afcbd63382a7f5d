//! The index's writer: the thread that owns the write connection, applying
//! what the puts and hits queue in gathered transactions, evicting past the
//! cap, and watching for other connections' writes (see [`Known`](super::known::Known)).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::mpsc;

use super::super::EntryIds;
use super::known::WATCH_EVERY;
use super::{Op, Put, Shared, SqlKey, BATCH, GATHER, GATHER_SLICE};
use crate::store::gc::id_key;
use creative_core::artifact::ArtifactId;

/// The index's `data_version` as `db` sees it: it changes exactly when
/// another connection has committed.
pub(super) fn data_version(db: &Connection) -> rusqlite::Result<i64> {
    db.pragma_query_value(None, "data_version", |r| r.get(0))
}

/// The thread that owns the write connection.
pub(super) struct Writer {
    pub(super) db: Connection,
    pub(super) path: PathBuf,
    pub(super) shared: Arc<Shared>,
    /// `data_version` at open, while no other connection has written.
    pub(super) version: i64,
}

/// Payloads an applied put's evictions left named by no entry.
struct Freed<'a> {
    by: &'a Put,
    ids: Vec<ArtifactId>,
}

impl Writer {
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        let mut batch = Vec::with_capacity(BATCH);
        // While lookups trust what this process knows, an idle writer wakes
        // every WATCH_EVERY to look for other connections' writes (a cache
        // that never trusted it needs no timer).
        let timer = self
            .shared
            .known
            .trusted()
            .then(|| tokio::runtime::Builder::new_current_thread().enable_time().build().ok())
            .flatten();
        loop {
            let op = match &timer {
                Some(rt) if self.shared.known.trusted() => {
                    match rt.block_on(async { tokio::time::timeout(WATCH_EVERY, rx.recv()).await }) {
                        Ok(op) => op,
                        Err(_) => {
                            self.watch();
                            continue;
                        }
                    }
                }
                _ => rx.blocking_recv(),
            };
            let Some(op) = op else { break };
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

    /// Stop lookups trusting [`Known`] once another connection has written
    /// the index (or its version cannot be read).
    fn watch(&mut self) {
        if !self.shared.known.trusted() {
            return;
        }
        match data_version(&self.db) {
            Ok(v) if v == self.version => {}
            seen => {
                tracing::debug!(path = %self.path.display(), ?seen, "another connection wrote the cache index; lookups query it from now on");
                self.shared.known.distrust();
            }
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
        // Before a flush is answered, so a flush shows the waiter every other
        // connection's commits made before it.
        self.watch();
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
pub(super) struct Total {
    bytes: i64,
    changed: bool,
}

impl Total {
    pub(super) fn read(tx: &rusqlite::Transaction<'_>) -> Result<Total, rusqlite::Error> {
        Ok(Total {
            bytes: total(tx)? as i64,
            changed: false,
        })
    }

    pub(super) fn add(&mut self, n: i64) {
        self.bytes = self.bytes.saturating_add(n).max(0);
        self.changed = true;
    }

    pub(super) fn write(&self, tx: &rusqlite::Transaction<'_>) -> Result<(), rusqlite::Error> {
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
pub(super) fn replace(
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

pub(super) fn total(db: &Connection) -> Result<u64, rusqlite::Error> {
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
