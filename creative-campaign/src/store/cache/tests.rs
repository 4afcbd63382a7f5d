use super::index::INDEX_FILE;
use super::*;
use creative_core::artifact::Artifact;
use creative_core::artifact::MediaType;
use std::sync::atomic::Ordering;
use std::time::Duration;

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
        .read(|db| db.query_row("SELECT coalesce(sum(length(body)), 0) FROM entries", [], |r| r.get(0)))
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
    c.flush().await.unwrap();
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
        c.flush().await.unwrap();
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
    c.flush().await.unwrap();
    assert!(c.get(&key(0)).await.unwrap().is_none());
    assert!(on_disk(&c) <= 20_000 + 1000);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Put entries `0..n` of `len` bytes each, and wait until the index has them.
async fn put_flushed(c: &DiskCache, n: usize, len: usize) {
    for i in 0..n {
        c.put(&key(i), &payload(i, len)).await.unwrap();
    }
    c.flush().await.unwrap();
}

#[tokio::test]
async fn closing_leaves_the_log_beside_the_index_and_a_reopen_reads_every_entry_from_it() {
    let dir = tmp("wal");
    {
        let c = DiskCache::open(&dir).unwrap();
        put_flushed(&c, 50, 100).await;
        assert!(c.get(&key(0)).await.unwrap().is_some());
    }
    // Not checkpointed at close: the entries are still in the log.
    let wal = std::fs::metadata(dir.join("cache.sqlite-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(wal > 0, "the log was checkpointed into the file and emptied at close");
    let c = DiskCache::open(&dir).unwrap();
    for i in 0..50 {
        assert!(c.get(&key(i)).await.unwrap().is_some(), "{i} is found after a reopen");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn recency_outlives_the_process_in_the_index() {
    let dir = tmp("mtime");
    {
        let c = DiskCache::open(&dir).unwrap();
        put_flushed(&c, 3, 1000).await;
        let c = DiskCache::open(&dir).unwrap().with_max_bytes(1_000_000);
        assert!(c.get(&key(0)).await.unwrap().is_some(), "a hit makes 0 the most recent");
    }
    let c = DiskCache::open(&dir).unwrap().with_max_bytes(4000);
    let three = c.size().unwrap().unwrap();
    assert!(three > 3000 && three < 4000, "{three}");
    c.put(&key(3), &payload(3, 1000)).await.unwrap();
    c.flush().await.unwrap();
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
    c.flush().await.unwrap();
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
    // Shared or owned: an owned cache knows the imported keys as its own.
    for owned in [false, true] {
        imported_entry_files_hit(owned).await;
    }
}

async fn imported_entry_files_hit(owned: bool) {
    let dir = tmp(&format!("import-{owned}"));
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
    let c = if owned {
        DiskCache::open_owned(&dir).unwrap()
    } else {
        DiskCache::open(&dir).unwrap()
    };
    assert!(!dir.join("entries").exists(), "the entry files are gone");
    let hit = c.get("abcd").await.unwrap().expect("the imported entry hits");
    assert_eq!((hit.artifacts[0].id(), hit.usage.cost_usd), (g.artifacts[0].id(), 0.5));
    assert!(c.get("abce").await.unwrap().is_none(), "a torn entry file is a miss");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Write a version 1 index in `dir` holding `entries` (key, generation,
/// recency), their payloads in the store, as a version 1 put did.
fn write_v1(dir: &Path, entries: &[(&str, &Generation, i64)]) {
    std::fs::create_dir_all(dir).unwrap();
    let blobs = BlobStore::new(dir.join("objects"));
    let db = rusqlite::Connection::open(dir.join(INDEX_FILE)).unwrap();
    db.execute_batch(super::SCHEMA_V1).unwrap();
    let mut total = 0;
    for (key, g, used) in entries {
        for a in &g.artifacts {
            blobs.put(a.id(), a.data(), false).unwrap();
        }
        let records: Vec<ArtifactRecord> = g.artifacts.iter().map(ArtifactRecord::of).collect();
        let body = serde_json::to_vec(&CacheEntry {
            artifacts: records.clone(),
            usage: g.usage.clone(),
            raw: None,
        })
        .unwrap();
        let bytes = entry_bytes(body.len() as u64, &records) as i64;
        total += bytes;
        db.execute(
            "INSERT INTO entries VALUES(?1, ?2, ?3, ?4)",
            rusqlite::params![key, body, bytes, used],
        )
        .unwrap();
        for r in &records {
            db.execute(
                "INSERT INTO names VALUES(?1, ?2)",
                rusqlite::params![r.id.as_str(), key],
            )
            .unwrap();
        }
    }
    db.execute("UPDATE totals SET bytes = ?1", [total]).unwrap();
}

fn named_payloads(dir: &Path) -> std::collections::BTreeSet<[u8; 16]> {
    let mut named = std::collections::BTreeSet::new();
    for_each_named_payload(dir, |k| {
        named.insert(k);
    })
    .unwrap();
    named
}

#[tokio::test]
async fn a_version_1_index_is_migrated_on_open_and_its_entries_still_hit_with_their_size_recency_and_names() {
    let dir = tmp("v1");
    let (a, b, c) = (payload(1, 1000), payload(2, 1000), payload(3, 1000));
    // b is the least recently used, then c, then a; d names c's payload too.
    write_v1(
        &dir,
        &[
            (&key(1), &a, 300),
            (&key(2), &b, 100),
            (&key(3), &c, 200),
            (&key(4), &c, 250),
        ],
    );
    let id = |g: &Generation| crate::store::gc::id_key(g.artifacts[0].id().as_str());
    let want: std::collections::BTreeSet<_> = [id(&a), id(&b), id(&c)].into();
    assert_eq!(named_payloads(&dir), want, "gc reads a version 1 index as it is");
    let v1 = rusqlite::Connection::open(dir.join(INDEX_FILE)).unwrap();
    // A row no version 1 put wrote (a text body) is left behind, not fatal.
    v1.execute("INSERT INTO entries VALUES('abcdef', 'text', 4, 50)", [])
        .unwrap();
    let before: i64 = v1.query_row("SELECT bytes FROM totals", [], |r| r.get(0)).unwrap();
    drop(v1);

    // Capped at what it holds, so the next put evicts the least recently
    // used entry as version 1 recorded it: b.
    let cache = DiskCache::open(&dir).unwrap().with_max_bytes(before as u64);
    assert_eq!(cache.size().unwrap(), Some(before as u64), "the total is kept");
    assert_eq!(named_payloads(&dir), want, "and the names, migrated");
    let version: i64 = cache
        .index
        .read(|db| db.query_row("PRAGMA user_version", [], |r| r.get(0)))
        .unwrap();
    assert_eq!(version, 2);
    cache.put(&key(5), &payload(5, 10)).await.unwrap();
    cache.flush().await.unwrap();
    assert!(
        cache.get(&key(2)).await.unwrap().is_none(),
        "b was the least recently used"
    );
    assert!(
        !cache.blobs.path_of(b.artifacts[0].id()).exists(),
        "its payload went with it"
    );
    assert!(
        cache.get("abcdef").await.unwrap().is_none(),
        "the unreadable row is a miss"
    );
    for (k, g) in [(key(1), &a), (key(3), &c), (key(4), &c), (key(5), &payload(5, 10))] {
        let hit = cache.get(&k).await.unwrap().expect("a migrated entry hits");
        assert_eq!(hit.artifacts[0].data(), g.artifacts[0].data(), "{k}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn two_caches_opening_one_version_1_index_at_once_migrate_it_once() {
    let dir = tmp("v1-race");
    let gens: Vec<Generation> = (0..50).map(|i| payload(i, 100)).collect();
    let keys: Vec<String> = (0..50).map(key).collect();
    let rows: Vec<(&str, &Generation, i64)> = keys
        .iter()
        .zip(&gens)
        .enumerate()
        .map(|(i, (k, g))| (k.as_str(), g, i as i64))
        .collect();
    write_v1(&dir, &rows);
    let opens: Vec<_> = (0..2)
        .map(|_| {
            let dir = dir.clone();
            std::thread::spawn(move || DiskCache::open(&dir))
        })
        .collect();
    let caches: Vec<DiskCache> = opens.into_iter().map(|t| t.join().unwrap().unwrap()).collect();
    let count: i64 = caches[0]
        .index
        .read(|db| db.query_row("SELECT count(*) FROM entries", [], |r| r.get(0)))
        .unwrap();
    assert_eq!(count, 50, "each entry once");
    for c in &caches {
        for (k, g) in keys.iter().zip(&gens) {
            let hit = c.get(k).await.unwrap().expect("a migrated entry hits");
            assert_eq!(hit.artifacts[0].data(), g.artifacts[0].data());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn keys_stored_as_bytes_or_text_stay_distinct_and_exact() {
    let dir = tmp("keys");
    let c = DiskCache::open(&dir).unwrap();
    // Lowercase hex is stored as its bytes; upper case, an odd length and
    // a very long key as text: none may answer for another.
    let long = "ab".repeat(80);
    let keys = ["abcd", "ABCD", "abc", "00abcd", long.as_str()];
    for (i, k) in keys.iter().enumerate() {
        c.put(k, &payload(i, 10)).await.unwrap();
    }
    c.flush().await.unwrap();
    let reopened = DiskCache::open(&dir).unwrap();
    for (i, k) in keys.iter().enumerate() {
        let hit = reopened.get(k).await.unwrap().expect("each key hits");
        assert_eq!(hit.artifacts[0].data(), payload(i, 10).artifacts[0].data(), "{k}");
    }
    assert!(reopened.get("abcdef").await.unwrap().is_none());
    assert!(reopened.get("ab").await.unwrap().is_none());
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
    a.flush().await.unwrap();
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
    c.flush().await.unwrap();
    let size = on_disk(&c);
    let counted = c.size().unwrap().unwrap_or(0);
    assert_eq!(counted, size, "what the cap counts is what is on disk");
    // Each task's last put may land over the cap by its own entry.
    assert!(size <= cap + 8 * 1100, "{size}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Lookups of `c` that queried its index.
fn queries(c: &DiskCache) -> u64 {
    c.index.queries.load(Ordering::Relaxed)
}

async fn assert_misses(c: &DiskCache, keys: std::ops::Range<usize>) {
    for i in keys {
        assert!(c.get(&digest(i)).await.unwrap().is_none(), "key {i}");
    }
}

/// A BLAKE3-like key, as campaigns' cache keys are.
fn digest(i: usize) -> String {
    blake3::hash(&i.to_le_bytes()).to_hex().to_string()
}

#[tokio::test]
async fn a_cache_that_was_empty_answers_misses_without_a_query_and_finds_its_own_puts() {
    let dir = tmp("known");
    let c = DiskCache::open_owned(&dir).unwrap();
    assert!(c.get(&digest(1)).await.unwrap().is_none());
    c.put(&digest(1), &payload(1, 100)).await.unwrap();
    assert!(c.get(&digest(1)).await.unwrap().is_some(), "queued");
    c.flush().await.unwrap();
    assert!(c.get(&digest(1)).await.unwrap().is_some(), "committed");
    assert_misses(&c, 2..200).await;
    assert_eq!(queries(&c), 1, "only the key put was looked up");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_reopened_cache_finds_the_entries_it_had_and_answers_other_misses_without_a_query() {
    let dir = tmp("known-reopen");
    let c = DiskCache::open_owned(&dir).unwrap();
    for i in 0..100 {
        c.put(&digest(i), &payload(i, 100)).await.unwrap();
    }
    // A key stored as text, not bytes, is read back the same way.
    c.put("abc", &payload(100, 100)).await.unwrap();
    drop(c);
    let c = DiskCache::open_owned(&dir).unwrap();
    for i in 0..100 {
        assert!(c.get(&digest(i)).await.unwrap().is_some(), "entry {i}");
    }
    assert!(c.get("abc").await.unwrap().is_some());
    assert_misses(&c, 100..300).await;
    assert_eq!(queries(&c), 101, "only the entries it had were looked up");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_cache_not_owned_queries_its_index_for_every_miss() {
    let dir = tmp("known-shared");
    let shared = DiskCache::open(&dir).unwrap();
    assert_misses(&shared, 2..3).await;
    assert_eq!(queries(&shared), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn another_cache_s_entry_is_found_once_the_idle_writer_has_seen_its_commit() {
    let dir = tmp("known-idle");
    // `a` was promised the folder, and answers misses from what it knows.
    let (a, b) = (DiskCache::open_owned(&dir).unwrap(), DiskCache::open(&dir).unwrap());
    assert!(a.get(&digest(1)).await.unwrap().is_none());
    b.put(&digest(1), &payload(1, 100)).await.unwrap();
    b.flush().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while a.get(&digest(1)).await.unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "b's entry never seen by a");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn another_cache_s_entry_is_found_at_once_after_a_flush() {
    let dir = tmp("known-flush");
    let (a, b) = (DiskCache::open_owned(&dir).unwrap(), DiskCache::open(&dir).unwrap());
    b.put(&digest(1), &payload(1, 100)).await.unwrap();
    b.flush().await.unwrap();
    a.flush().await.unwrap();
    assert!(a.get(&digest(1)).await.unwrap().is_some());
    let _ = std::fs::remove_dir_all(&dir);
}
