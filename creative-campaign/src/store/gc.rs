//! Store housekeeping: remove the payloads nothing needs any more.
//!
//! An output folder's state folder (`.creative/`) keeps every payload a run
//! ever stored: the journal's, the cache's (which shares `objects/` unless the
//! spec names a `cache_dir`), and those of runs since replaced (a fresh run
//! moves the journal aside to `journal.jsonl.prev`), of steps re-run after an
//! edit, and of cache entries evicted by a size cap. [`collect_garbage`] keeps
//! what is still named and removes the rest.
//!
//! # What is kept
//!
//! A payload under `objects/` stays when it is named by
//! - the latest record of a step in `journal.jsonl` (a resume needs it), as
//!   outputs or as candidates their gates refused (a reviewer sees them),
//! - a cache entry in the cache's index `cache.sqlite` (a hit needs it), or
//!   in `entries/` (a cache written before the index),
//! - a line of `assets.jsonl` or `artifacts.jsonl` (what the last run
//!   delivered and what hosts read artifacts back from).
//!
//! Everything else under `objects/` that is named like a payload is removed, as
//! are the temporaries a killed writer left (`.<name>.<pid>.<n>.tmp`) in the
//! state folder, `objects/` and `entries/`, and `journal.jsonl.prev`. Files
//! that are neither (anything a user put there) are left alone.
//!
//! # Safety
//!
//! It takes the output folder's lock first, so it never runs while a run
//! writes the folder (it refuses, naming the run's pid). A delivered file made
//! as a hard link of a payload is another name for the same file: removing the
//! payload's name leaves the delivered file whole (the report counts the bytes
//! that are actually freed apart from those still held by such links).
//!
//! # Memory
//!
//! Nothing is held but a set of the live payloads' ids (16 bytes of each id
//! in a hash set: about 20 to 40 bytes a payload, with the table's slack) and,
//! while the journal is read, its index (about 40 bytes a step). Records,
//! entries and lines are streamed, one at a time.

use std::collections::HashSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard};

use serde::{Deserialize, Serialize};

use crate::store::blobs::{is_temp_name, lock_out_dir, LockError};
use crate::store::{FileJournal, StoreError};
use creative_core::artifact::ArtifactId;

/// The value of a lowercase hex digit; `None` for anything else.
pub(crate) fn lower_hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// The short key a live set holds for a payload id: its first 16 bytes when
/// it is a hex digest (as every stored id is), else a hash of it. Two ids
/// sharing a key would both be kept, never both removed.
pub(crate) fn id_key(id: &str) -> [u8; 16] {
    let mut key = [0u8; 16];
    let hex = id.as_bytes();
    if hex.len() >= 32 && hex.iter().all(u8::is_ascii_hexdigit) {
        let nibble = |b: u8| lower_hex_digit(b.to_ascii_lowercase()).unwrap_or(0);
        for (i, k) in key.iter_mut().enumerate() {
            *k = (nibble(hex[2 * i]) << 4) | nibble(hex[2 * i + 1]);
        }
    } else {
        key.copy_from_slice(&blake3::hash(hex).as_bytes()[..16]);
    }
    key
}

/// Payloads the journal of a running campaign needs, which the cache's
/// eviction must not delete when the two share a payload folder.
///
/// The journal pins every output before it stores it
/// ([`FileJournal::with_pins`]); the cache checks a payload is unpinned and
/// deletes it while holding the set (`hold`), so a payload is never
/// removed between the journal naming it and the journal's line being written.
/// About 20 to 40 bytes a pinned payload.
#[derive(Debug, Default)]
pub struct PayloadPins {
    ids: RwLock<HashSet<[u8; 16]>>,
}

impl PayloadPins {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keep the payload `id`.
    pub fn pin(&self, id: &ArtifactId) {
        self.ids
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id_key(id.as_str()));
    }

    /// Whether `id` is pinned.
    pub fn is_pinned(&self, id: &ArtifactId) -> bool {
        self.hold().contains(&id_key(id.as_str()))
    }

    /// How many payloads are pinned.
    pub fn len(&self) -> usize {
        self.hold().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The set, held against new pins while a deletion is decided and done.
    pub(crate) fn hold(&self) -> RwLockReadGuard<'_, HashSet<[u8; 16]>> {
        self.ids.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// What [`collect_garbage`] removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Whether this was a dry run (nothing was removed).
    pub dry_run: bool,
    /// The state folder collected.
    pub state_dir: PathBuf,
    /// Distinct payloads named by the journal, the cache and the last run's
    /// lists.
    pub live: u64,
    /// Payloads removed.
    pub payloads_removed: u64,
    /// Their size.
    pub payload_bytes_removed: u64,
    /// Of that size, what is no longer on disk: payloads whose only name was in
    /// the store (a payload also delivered as a hard link lives on as the
    /// delivered file).
    pub bytes_freed: u64,
    /// Payloads kept.
    pub payloads_kept: u64,
    /// Their size.
    pub payload_bytes_kept: u64,
    /// Temporaries left by killed writers, removed.
    pub temps_removed: u64,
    /// Their size.
    pub temp_bytes_removed: u64,
    /// Size of the `journal.jsonl.prev` removed (`None`: there was none).
    pub prev_journal_bytes: Option<u64>,
}

impl GcReport {
    /// Every byte removed: payloads, temporaries and the previous journal.
    pub fn bytes_removed(&self) -> u64 {
        self.payload_bytes_removed + self.temp_bytes_removed + self.prev_journal_bytes.unwrap_or(0)
    }

    /// One line for people: what was (or would be) removed and what is kept.
    pub fn summary_line(&self) -> String {
        let verb = if self.dry_run { "would remove" } else { "removed" };
        let mut s = format!(
            "{verb} {} payloads ({}",
            self.payloads_removed,
            human_bytes(self.payload_bytes_removed)
        );
        if self.bytes_freed != self.payload_bytes_removed {
            s += &format!(
                ", {} of it freed; the rest lives on as delivered files",
                human_bytes(self.bytes_freed)
            );
        }
        s += &format!(
            "), {} temporaries ({})",
            self.temps_removed,
            human_bytes(self.temp_bytes_removed)
        );
        if let Some(b) = self.prev_journal_bytes {
            s += &format!(" and {} ({})", PREV_JOURNAL, human_bytes(b));
        }
        s += &format!(
            " from {}; kept {} payloads ({}) that the journal, the cache or the last run's lists name",
            self.state_dir.display(),
            self.payloads_kept,
            human_bytes(self.payload_bytes_kept)
        );
        s
    }
}

/// Bytes as people read them (`1.5 MiB`).
pub(crate) fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Why [`collect_garbage`] did not run or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// A run holds the output folder.
    #[error(
        "output folder {} is in use by a run (pid {}); gc removes nothing while a run may need it: run gc again once it has ended",
        out_dir.display(),
        holder.map_or_else(|| "unknown".to_string(), |p| p.to_string())
    )]
    Busy {
        /// The folder.
        out_dir: PathBuf,
        /// The pid of the run holding it, when it could be read.
        holder: Option<u32>,
    },
    /// The folder holds no campaign state.
    #[error("{} holds no campaign state (no {} folder); there is nothing to collect", out_dir.display(), STATE)]
    NoState {
        /// The folder.
        out_dir: PathBuf,
    },
    /// Reading or removing a file failed.
    #[error("gc: cannot {what} {}: {source}", path.display())]
    Io {
        /// What was being done (`read`, `remove`...).
        what: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The journal could not be read.
    #[error("gc: {0}")]
    Store(#[from] StoreError),
    /// The output folder is one no run may write (an empty path, a root).
    #[error("gc: {0}")]
    OutDir(#[from] crate::spec::UnsafeOutputDir),
}

const STATE: &str = crate::spec::STATE_DIR;
const PREV_JOURNAL: &str = "journal.jsonl.prev";

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> GcError + 'a {
    move |source| GcError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Remove, from the state folder of the output folder `out_dir`, the payloads
/// nothing names, the temporaries of killed writers and `journal.jsonl.prev`
/// (see the module doc); with `dry_run`, only count them. Refuses while a run
/// holds the folder.
///
/// A dry run removes nothing; like a resume, it does cut a last journal line
/// torn by a kill.
pub fn collect_garbage(out_dir: &Path, dry_run: bool) -> Result<GcReport, GcError> {
    let state_dir = out_dir.join(STATE);
    if !state_dir.is_dir() {
        return Err(GcError::NoState {
            out_dir: out_dir.to_path_buf(),
        });
    }
    let _lock = lock_out_dir(&state_dir).map_err(|e| match e {
        LockError::Busy(holder) => GcError::Busy {
            out_dir: out_dir.to_path_buf(),
            holder,
        },
        LockError::Store(e) => GcError::Store(e),
    })?;
    let mut report = GcReport {
        dry_run,
        state_dir: state_dir.clone(),
        ..GcReport::default()
    };
    let mut live: HashSet<[u8; 16]> = HashSet::new();

    // The journal: the latest record of each step, read back one at a time.
    let index = FileJournal::index(&state_dir.join(FileJournal::FILE))?;
    index.for_each_output_id(|id| {
        live.insert(id_key(id));
    })?;
    drop(index);

    // The cache's entries, when the cache lives in the state folder: its
    // index, and the entry files of a cache written before the index.
    crate::store::cache::for_each_named_payload(&state_dir, |key| {
        live.insert(key);
    })?;
    let mut temps: Vec<PathBuf> = Vec::new();
    let entries = state_dir.join("entries");
    for_each_file_in_prefixes(&entries, |path, name| {
        if is_temp_name(name) {
            temps.push(path.to_path_buf());
        } else if name.ends_with(".json") {
            match fs::read(path) {
                Ok(bytes) => match serde_json::from_slice::<EntryIds>(&bytes) {
                    Ok(e) => e.artifacts.iter().for_each(|a| {
                        live.insert(id_key(&a.id));
                    }),
                    // A hit needs a readable entry: this one is a miss already.
                    Err(e) => tracing::warn!(path = %path.display(), error = %e, "unreadable cache entry"),
                },
                Err(e) => return Err(io("read", path)(e)),
            }
        }
        Ok(())
    })?;

    // The last run's lists of delivered assets and of artifacts.
    for list in [crate::spec::ASSETS_FILE, crate::spec::ARTIFACTS_FILE] {
        for_each_line(&state_dir.join(list), |line| {
            if let Ok(l) = serde_json::from_slice::<ListIds>(line) {
                for id in [l.id, l.artifact.map(|a| a.id)].into_iter().flatten() {
                    live.insert(id_key(&id));
                }
            }
        })?;
    }
    report.live = live.len() as u64;

    // The payloads themselves.
    let objects = state_dir.join("objects");
    let mut prefixes: Vec<PathBuf> = Vec::new();
    for_each_file_in_prefixes(&objects, |path, name| {
        if is_temp_name(name) {
            temps.push(path.to_path_buf());
            return Ok(());
        }
        let in_its_prefix = path
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|p| p.to_str())
            .is_some_and(|p| name.get(..2) == Some(p));
        if !(in_its_prefix && name.len() >= 32 && name.bytes().all(|b| b.is_ascii_hexdigit())) {
            // Not a payload's name: not ours to remove.
            return Ok(());
        }
        let meta = fs::symlink_metadata(path).map_err(io("read", path))?;
        if live.contains(&id_key(name)) {
            report.payloads_kept += 1;
            report.payload_bytes_kept += meta.len();
            return Ok(());
        }
        if !dry_run {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io("remove", path)(e)),
            }
            if let Some(p) = path.parent() {
                if prefixes.last().map(PathBuf::as_path) != Some(p) {
                    prefixes.push(p.to_path_buf());
                }
            }
        }
        report.payloads_removed += 1;
        report.payload_bytes_removed += meta.len();
        if sole_name(&meta) {
            report.bytes_freed += meta.len();
        }
        Ok(())
    })?;
    // A prefix folder left empty goes too (one that is not empty stays).
    for p in prefixes {
        let _ = fs::remove_dir(p);
    }

    // Temporaries: the state folder's own, then those found above.
    for e in fs::read_dir(&state_dir).map_err(io("read", &state_dir))? {
        let e = e.map_err(io("read", &state_dir))?;
        if e.file_type().is_ok_and(|t| t.is_file()) && e.file_name().to_str().is_some_and(is_temp_name) {
            temps.push(e.path());
        }
    }
    for t in temps {
        let Ok(meta) = fs::symlink_metadata(&t) else { continue };
        if !dry_run {
            match fs::remove_file(&t) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io("remove", &t)(e)),
            }
        }
        report.temps_removed += 1;
        report.temp_bytes_removed += meta.len();
    }

    let prev = state_dir.join(PREV_JOURNAL);
    if let Ok(meta) = fs::symlink_metadata(&prev) {
        if !dry_run {
            fs::remove_file(&prev).map_err(io("remove", &prev))?;
        }
        report.prev_journal_bytes = Some(meta.len());
    }
    Ok(report)
}

/// Whether removing this name frees the file's bytes (no other hard link).
fn sole_name(meta: &fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        meta.nlink() <= 1
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        true
    }
}

/// Call `f` with every file of every folder under `root` (`root/<ab>/<file>`),
/// one at a time; a missing `root` has none.
fn for_each_file_in_prefixes(
    root: &Path,
    mut f: impl FnMut(&Path, &str) -> Result<(), GcError>,
) -> Result<(), GcError> {
    let prefixes = match fs::read_dir(root) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("read", root)(e)),
    };
    for p in prefixes {
        let p = p.map_err(io("read", root))?;
        if !p.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let dir = p.path();
        for e in fs::read_dir(&dir).map_err(io("read", &dir))? {
            let e = e.map_err(io("read", &dir))?;
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name();
            if let Some(name) = name.to_str() {
                f(&e.path(), name)?;
            }
        }
    }
    Ok(())
}

/// Call `f` with every line of a JSON-lines file (none if it does not exist).
fn for_each_line(path: &Path, mut f: impl FnMut(&[u8])) -> Result<(), GcError> {
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("read", path)(e)),
    };
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(io("read", path))? == 0 {
            return Ok(());
        }
        f(&line);
    }
}

/// Just the payload ids of a cache entry.
#[derive(Deserialize)]
struct EntryIds {
    #[serde(default)]
    artifacts: Vec<IdOnly>,
}

/// Just an artifact's id.
#[derive(Deserialize)]
pub(crate) struct IdOnly {
    pub(crate) id: String,
}

/// Just the ids of a line of `assets.jsonl` (`id`) or `artifacts.jsonl`
/// (`artifact.id`).
#[derive(Deserialize)]
struct ListIds {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    artifact: Option<IdOnly>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_key_is_its_leading_bytes_and_other_names_are_hashed() {
        let id = "00ff10ab".repeat(8);
        let k = id_key(&id);
        assert_eq!(&k[..4], &[0x00, 0xff, 0x10, 0xab]);
        assert_eq!(id_key(&id.to_uppercase()), k, "case does not matter");
        assert_ne!(id_key("short"), id_key("other"));
    }

    use crate::store::{BlobStore, DiskCache, GenerationCache, Journal};
    use creative_core::artifact::{Artifact, MediaType};
    use creative_core::job::Job;
    use creative_core::request::Generation;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("creative-gc-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    /// Every payload file under `objects/`, by name.
    fn payloads(state: &Path) -> Vec<String> {
        let mut names = Vec::new();
        for_each_file_in_prefixes(&state.join("objects"), |_, n| {
            if !is_temp_name(n) {
                names.push(n.to_string());
            }
            Ok(())
        })
        .unwrap();
        names.sort();
        names
    }

    #[tokio::test]
    async fn gc_removes_what_nothing_names_keeps_what_the_journal_and_cache_name_and_spares_delivered_links() {
        let out = tmp("collect");
        let state = out.join(STATE);
        let (journaled, cached, orphan, delivered) = (
            Artifact::text_plain("journaled"),
            Artifact::new(MediaType::Png, vec![1u8; 100]),
            Artifact::new(MediaType::Png, vec![2u8; 300]),
            Artifact::new(MediaType::Png, vec![3u8; 500]),
        );
        {
            // A previous run, moved aside by a fresh one: its journal named
            // `orphan` and `delivered`.
            let old = FileJournal::open(&state, false).unwrap();
            old.record(&Job::new([("i", 0)]), "s", "in", &[orphan.clone(), delivered.clone()])
                .await
                .unwrap();
        }
        let j = FileJournal::open(&state, false).unwrap();
        j.record(&Job::new([("i", 1)]), "s", "in", std::slice::from_ref(&journaled))
            .await
            .unwrap();
        drop(j);
        let cache = DiskCache::open(&state).unwrap();
        let g = Generation {
            artifacts: vec![cached.clone()],
            ..Default::default()
        };
        cache.put("abcd", &g).await.unwrap();
        cache.flush().await.unwrap();
        // `delivered` was delivered as a hard link of its payload.
        let blobs = BlobStore::new(state.join("objects"));
        let file = out.join("hero.png");
        fs::hard_link(blobs.path_of(delivered.id()), &file).unwrap();
        // A writer killed mid-write left a temporary.
        let temp = crate::store::temp_path(&blobs.path_of(cached.id()));
        fs::write(&temp, b"half").unwrap();
        let before = payloads(&state);
        assert_eq!(before.len(), 4);

        let dry = collect_garbage(&out, true).unwrap();
        assert_eq!(
            (dry.payloads_removed, dry.payload_bytes_removed, dry.bytes_freed),
            (2, 800, 300)
        );
        assert_eq!((dry.payloads_kept, dry.temps_removed), (2, 1));
        assert!(dry.prev_journal_bytes.is_some());
        assert!(
            dry.summary_line().starts_with("would remove 2 payloads"),
            "{}",
            dry.summary_line()
        );
        assert_eq!(payloads(&state), before, "a dry run removes nothing");
        assert!(temp.exists() && state.join(PREV_JOURNAL).exists());

        let done = collect_garbage(&out, false).unwrap();
        assert_eq!(done, GcReport { dry_run: false, ..dry });
        let mut kept = vec![journaled.id().to_string(), cached.id().to_string()];
        kept.sort();
        assert_eq!(payloads(&state), kept);
        assert!(!temp.exists() && !state.join(PREV_JOURNAL).exists());
        assert_eq!(
            fs::read(&file).unwrap(),
            delivered.data().as_ref(),
            "the delivered link is whole"
        );
        // What is kept still serves a resume and a hit.
        let j = FileJournal::open(&state, true).unwrap();
        let got = j.lookup(&Job::new([("i", 1)]), "s", "in").await.unwrap();
        assert_eq!(got.into_done().unwrap()[0].text(), Some("journaled"));
        assert!(cache.get("abcd").await.unwrap().is_some());
        drop(j);
        let again = collect_garbage(&out, false).unwrap();
        assert_eq!(
            (again.payloads_removed, again.temps_removed, again.prev_journal_bytes),
            (0, 0, None)
        );
        let _ = fs::remove_dir_all(&out);
    }

    #[tokio::test]
    async fn gc_keeps_the_payload_of_a_candidate_the_journal_names_as_refused() {
        let out = tmp("refused");
        let state = out.join(STATE);
        let (refused, stray) = (
            Artifact::new(MediaType::Png, vec![3u8; 50]),
            Artifact::new(MediaType::Png, vec![4u8; 50]),
        );
        let mut kept = Artifact::text_plain("kept");
        kept.provenance_mut().rejected = vec![creative_core::provenance::RejectedCandidate::of(&refused)];
        let j = FileJournal::open(&state, false).unwrap();
        j.record(&Job::new([("i", 1)]), "s", "in", std::slice::from_ref(&kept))
            .await
            .unwrap();
        drop(j);
        // The refused candidate's payload was stored by the cache in its time.
        let blobs = BlobStore::new(state.join("objects"));
        blobs.put(refused.id(), refused.data(), false).unwrap();
        blobs.put(stray.id(), stray.data(), false).unwrap();
        let done = collect_garbage(&out, false).unwrap();
        assert_eq!(done.payloads_removed, 1, "only the stray");
        let mut want = vec![kept.id().to_string(), refused.id().to_string()];
        want.sort();
        assert_eq!(payloads(&state), want);
        let _ = fs::remove_dir_all(&out);
    }

    #[test]
    fn gc_refuses_a_folder_a_run_holds_and_one_without_state() {
        let out = tmp("busy");
        assert!(matches!(collect_garbage(&out, false), Err(GcError::NoState { .. })));
        let held = lock_out_dir(&out.join(STATE)).unwrap();
        let err = collect_garbage(&out, true).unwrap_err();
        assert!(
            matches!(err, GcError::Busy { holder: Some(p), .. } if p == std::process::id()),
            "{err}"
        );
        assert!(err.to_string().contains(&out.display().to_string()), "{err}");
        drop(held);
        collect_garbage(&out, true).expect("free once the run ends");
        let _ = fs::remove_dir_all(&out);
    }

    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
    }
}
