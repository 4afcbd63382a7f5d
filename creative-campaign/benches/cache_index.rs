//! What the cache index's writer pays per put: CPU time of its thread, and
//! the bytes and write calls it makes (the write-ahead log's frames and the
//! checkpoints), for entries shaped like a campaign's, in transactions of the
//! size the writer gathers in a run.
//!
//! `cargo bench -p creative-campaign --bench cache_index -- [entries] [rounds] [batch]`
//! (defaults 10000, 3, 49: in the 10,000-job loopback campaign the writer
//! committed about 205 transactions of 49 puts). Each batch is its puts then
//! a flush, and the payloads are written before the clock starts (a put then
//! finds its payload there, so a batch is queued well within the writer's
//! gathering time): the transactions are that size however loaded the
//! machine is.
//! Linux only: the figures come from the writer thread's
//! `/proc/self/task/<tid>/{schedstat,io}`.
//!
//! Then the one-time cost of the upgrade: the time to open a cache whose
//! index is of version 1 and holds that many entries (its migration).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use creative_campaign::store::CACHE_SCHEMA_V1 as SCHEMA_V1;
use creative_campaign::store::{ArtifactRecord, BlobStore, DiskCache};
use creative_core::artifact::{Artifact, MediaType, Meta};
use creative_core::provenance::Provenance;
use creative_core::request::{Generation, Usage};
use creative_core::GenerationCache;

/// A writer thread's counters.
#[derive(Clone, Copy, Default)]
struct Counters {
    cpu_ns: u64,
    written: u64,
    writes: u64,
}

fn counters(tid: &str) -> Counters {
    let task = Path::new("/proc/self/task").join(tid);
    let cpu_ns = std::fs::read_to_string(task.join("schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    let io = std::fs::read_to_string(task.join("io")).unwrap_or_default();
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    Counters {
        cpu_ns,
        written: field("wchar:"),
        writes: field("syscw:"),
    }
}

fn tasks() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The thread the cache started: the one task named `creative-cache…` that
/// was not there before (a new thread names itself once running, so this
/// waits for the name a while).
fn writer_tid(before: &[String]) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = tasks().into_iter().find(|t| {
            !before.contains(t)
                && std::fs::read_to_string(format!("/proc/self/task/{t}/comm"))
                    .is_ok_and(|c| c.starts_with("creative-cache"))
        });
        if found.is_some() || Instant::now() > deadline {
            return found;
        }
        std::thread::yield_now();
    }
}

/// A generation like the loopback campaign's: one small PNG (distinct bytes,
/// so a distinct payload per entry, as real images are), its size and the
/// model in the record, a cost in the usage.
fn generation(i: u64) -> Generation {
    let mut data = vec![0u8; 268];
    data[..8].copy_from_slice(&i.to_le_bytes());
    let artifact = Artifact::new(MediaType::Png, data)
        .with_meta(Meta {
            width: Some(8),
            height: Some(8),
            ..Meta::default()
        })
        .with_provenance(Provenance {
            model: Some("gpt-image-1".into()),
            ..Provenance::default()
        });
    Generation {
        artifacts: vec![artifact],
        usage: Usage {
            cost_usd: 0.167,
            units: Some(1.0),
            ..Usage::default()
        },
        raw: None,
    }
}

fn key(round: u64, i: u64) -> String {
    blake3::hash(format!("{round}/{i}").as_bytes()).to_hex().to_string()
}

struct Figures {
    secs: f64,
    counters: Counters,
    page_size: u64,
    /// The process's CPU time to close the cache: the writer's last commit,
    /// its checkpoint and the removal of the write-ahead log.
    close_ns: u64,
}

/// CPU time of the whole process (every thread, the ended ones included).
fn process_cpu_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given and nothing else.
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) } != 0 {
        return 0;
    }
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

async fn round(dir: &Path, round: u64, entries: u64, batch: u64) -> Figures {
    let _ = std::fs::remove_dir_all(dir);
    let blobs = BlobStore::new(dir.join("objects"));
    let generations: Vec<Generation> = (0..entries).map(generation).collect();
    for g in &generations {
        for a in &g.artifacts {
            blobs.put(a.id(), a.data(), false).expect("write a payload");
        }
    }
    let keys: Vec<String> = (0..entries).map(|i| key(round, i)).collect();
    let before = tasks();
    let cache = DiskCache::open(dir).expect("open the cache").with_blob_store(&blobs);
    let tid = writer_tid(&before).expect("the cache's writer thread");
    let page_size: i64 = rusqlite::Connection::open(dir.join("cache.sqlite"))
        .and_then(|db| db.pragma_query_value(None, "page_size", |r| r.get(0)))
        .expect("read the page size");
    let start = counters(&tid);
    let t0 = Instant::now();
    let mut i = 0;
    while i < entries {
        for _ in 0..batch.min(entries - i) {
            cache
                .put(&keys[i as usize], &generations[i as usize])
                .await
                .expect("put");
            i += 1;
        }
        cache.flush().await.expect("flush");
    }
    let secs = t0.elapsed().as_secs_f64();
    let end = counters(&tid);
    let closing = process_cpu_ns();
    drop(cache);
    let close_ns = process_cpu_ns() - closing;
    Figures {
        secs,
        counters: Counters {
            cpu_ns: end.cpu_ns - start.cpu_ns,
            written: end.written - start.written,
            writes: end.writes - start.writes,
        },
        page_size: page_size as u64,
        close_ns,
    }
}

/// Seconds to open a cache whose version 1 index holds `entries` entries.
fn migration(dir: &Path, entries: u64) -> f64 {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("create the folder");
    let mut db = rusqlite::Connection::open(dir.join("cache.sqlite")).expect("open a v1 index");
    db.execute_batch(SCHEMA_V1).expect("the v1 schema");
    db.pragma_update(None, "journal_mode", "WAL")
        .expect("the v1 journal mode");
    let tx = db.transaction().expect("a transaction");
    for i in 0..entries {
        let g = generation(i);
        let records: Vec<ArtifactRecord> = g.artifacts.iter().map(ArtifactRecord::of).collect();
        let body = serde_json::to_vec(&serde_json::json!({ "artifacts": records, "usage": g.usage }))
            .expect("encode an entry");
        let key = key(u64::MAX, i);
        let bytes = body.len() as i64 + 268;
        tx.execute(
            "INSERT INTO entries VALUES(?1, ?2, ?3, ?4)",
            rusqlite::params![key, body, bytes, i as i64],
        )
        .expect("a v1 entry");
        tx.execute(
            "INSERT INTO names VALUES(?1, ?2)",
            rusqlite::params![records[0].id.as_str(), key],
        )
        .expect("a v1 name");
    }
    tx.commit().expect("commit the v1 index");
    drop(db);
    let t0 = Instant::now();
    let cache = DiskCache::open(dir).expect("open and migrate");
    let secs = t0.elapsed().as_secs_f64();
    drop(cache);
    secs
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .filter_map(|a| a.parse().ok())
        .collect();
    let entries = args.first().copied().unwrap_or(10_000);
    let rounds = args.get(1).copied().unwrap_or(3);
    let batch = args.get(2).copied().unwrap_or(49).max(1);
    let dir: PathBuf = std::env::temp_dir().join(format!("creative-bench-cache-index-{}", std::process::id()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    println!("cache index: {entries} puts in transactions of {batch}, {rounds} rounds");
    for r in 0..rounds {
        let f = rt.block_on(round(&dir, r, entries, batch));
        let n = entries as f64;
        let c = f.counters;
        println!(
            "round {r}: writer {:.1} µs CPU/put, {:.2} pages written/put ({} B pages), {:.2} write calls/put, {:.0} B/put; close {:.1} ms CPU; {:.2} s",
            c.cpu_ns as f64 / 1e3 / n,
            c.written as f64 / (f.page_size + 24) as f64 / n,
            f.page_size,
            c.writes as f64 / n,
            c.written as f64 / n,
            f.close_ns as f64 / 1e6,
            f.secs,
        );
    }
    println!(
        "opening a version 1 index of {entries} entries (its migration): {:.2} s",
        migration(&dir, entries)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
