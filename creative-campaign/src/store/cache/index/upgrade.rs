//! Bringing older caches into the index: a version 1 index migrated to the
//! current layout when it opens, and the entry files of a cache written before
//! there was an index (one JSON file per entry) imported once.

use std::path::Path;
use std::time::UNIX_EPOCH;

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, TransactionBehavior};

use super::writer::{replace, Total};
use super::{sql_err, SqlKey, INDEXES, TABLES};
use crate::store::cache::{entry_bytes, is_key, CacheEntry, EntryIds};
use crate::store::gc::id_key;
use crate::store::StoreError;
use creative_core::artifact::ArtifactId;

/// Version 1 of the index, as the release before version 2 wrote it: what [`migrate_v1`]
/// reads. Public (and hidden) only so the tests and the
/// `cache_index` bench can write one.
#[doc(hidden)]
pub const SCHEMA_V1: &str = "
    CREATE TABLE entries(key TEXT PRIMARY KEY NOT NULL, body BLOB NOT NULL,
        bytes INTEGER NOT NULL, used INTEGER NOT NULL) WITHOUT ROWID;
    CREATE INDEX entries_by_use ON entries(used);
    CREATE TABLE names(payload TEXT NOT NULL, entry TEXT NOT NULL,
        PRIMARY KEY(payload, entry)) WITHOUT ROWID;
    CREATE TABLE totals(id INTEGER PRIMARY KEY CHECK(id = 0), bytes INTEGER NOT NULL);
    INSERT INTO totals VALUES(0, 0);
    PRAGMA user_version = 1;";

/// Version 1's tables, renamed while their rows move into version 2's.
const V1_ASIDE: &str = "
DROP INDEX IF EXISTS entries_by_use;
ALTER TABLE entries RENAME TO entries_v1;
DROP TABLE IF EXISTS names;
DROP TABLE IF EXISTS totals;
";

/// Move a version 1 index's entries into version 2's tables with their
/// recency stamps, rebuilding the names and the total from the bodies as a
/// put does.
/// One transaction: a crash leaves the file as it was, migrated at next open.
/// A row that does not read as an entry (never written so by this crate) is
/// left behind: a miss, as a damaged entry is.
///
/// A bulk load rather than a put per row: the rows are read in the order
/// they are stored (not by recency, which jumps about the old file), the
/// names are inserted in their order, and the key and recency indexes are
/// built at the end by sorting. A million entries (`cache_index` bench):
/// 21 s as a put per row in recency order, 6.3 s so.
pub(super) fn migrate_v1(tx: &rusqlite::Transaction<'_>) -> Result<(), rusqlite::Error> {
    tx.execute_batch(V1_ASIDE)?;
    tx.execute_batch(TABLES)?;
    tx.execute_batch("CREATE TEMP TABLE names_v1(payload BLOB NOT NULL, entry INTEGER NOT NULL)")?;
    let mut total = Total::read(tx)?;
    let mut skipped = 0u64;
    {
        let mut insert = tx.prepare("INSERT INTO entries(key, body, bytes, used) VALUES(?1, ?2, ?3, ?4)")?;
        let mut name = tx.prepare("INSERT INTO temp.names_v1(payload, entry) VALUES(?1, ?2)")?;
        let mut rows = tx.prepare("SELECT key, body, bytes, used FROM entries_v1")?;
        let mut rows = rows.query([])?;
        while let Some(r) = rows.next()? {
            let row = (r.get_ref(0)?, r.get_ref(1)?, r.get_ref(2)?, r.get_ref(3)?);
            let (ValueRef::Text(key), ValueRef::Blob(body), ValueRef::Integer(bytes), ValueRef::Integer(used)) = row
            else {
                skipped += 1;
                continue;
            };
            let Some(key) = std::str::from_utf8(key).ok().filter(|k| is_key(k)) else {
                skipped += 1;
                continue;
            };
            // Version 1's keys are unique and `SqlKey` maps them one to one,
            // so the unique index built below cannot fail.
            insert.execute(params![SqlKey::of(key), body, bytes.max(0), used])?;
            let entry = tx.last_insert_rowid();
            if let Ok(e) = serde_json::from_slice::<EntryIds>(body) {
                for a in e.artifacts {
                    name.execute(params![id_key(a.id.as_str()), entry])?;
                }
            }
            total.add(bytes.max(0));
        }
    }
    if skipped > 0 {
        tracing::warn!(
            skipped,
            "cache index migration left behind rows it could not read; they are misses"
        );
    }
    tx.execute_batch(
        "INSERT OR IGNORE INTO names SELECT payload, entry FROM temp.names_v1 ORDER BY payload, entry;
         DROP TABLE temp.names_v1;
         DROP TABLE entries_v1;",
    )?;
    tx.execute_batch(INDEXES)?;
    total.write(tx)?;
    Ok(())
}

/// Bring the entry files of a cache written before the index (one file per
/// entry under `entries/`) into it, then remove them: once per folder. Returns
/// how many entries it brought in.
pub(super) fn import_entry_files(db: &mut Connection, path: &Path, dir: &Path) -> Result<i64, StoreError> {
    let entries = dir.join("entries");
    let Ok(prefixes) = std::fs::read_dir(&entries) else {
        return Ok(0);
    };
    let err = sql_err("import into", path);
    let tx = db
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&err)?;
    let mut total = Total::read(&tx).map_err(&err)?;
    let mut files = Vec::new();
    let mut imported = 0;
    for p in prefixes.flatten() {
        let Ok(inner) = std::fs::read_dir(p.path()) else {
            continue;
        };
        for e in inner.flatten() {
            let file = e.path();
            files.push(file.clone());
            let name = e.file_name();
            let Some(key) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if !is_key(key) {
                continue;
            }
            let Ok(body) = std::fs::read(&file) else { continue };
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
                &mut total,
                key,
                &body,
                entry_bytes(body.len() as u64, &entry.artifacts),
                used,
                &ids,
            )
            .map_err(&err)?;
            imported += 1;
        }
    }
    total.write(&tx).map_err(&err)?;
    tx.commit().map_err(&err)?;
    for f in files {
        let _ = std::fs::remove_file(f);
    }
    if let Ok(prefixes) = std::fs::read_dir(&entries) {
        for p in prefixes.flatten() {
            let _ = std::fs::remove_dir(p.path());
        }
    }
    let _ = std::fs::remove_dir(&entries);
    Ok(imported)
}
