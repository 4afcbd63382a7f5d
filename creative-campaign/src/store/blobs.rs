//! A content-addressed folder of payloads, shared by the cache and the journal.
//!
//! A blob lives at `objects/<first two hex digits>/<artifact id>`. A new blob is
//! written under its final name, created exclusively (no temporary and rename:
//! that pair cost as much as the write); a blob that is there but wrong (a
//! kill mid-write, an edit through a hard link) is replaced by a temporary
//! renamed over it. Reading checks the hash, so a payload half written or
//! damaged on disk is treated as missing, never served; and the journal makes
//! the payloads of a batch durable before the lines that name them.
//!
//! Writes never follow a symbolic link planted under the store's root: a prefix
//! folder or a blob that is a link is refused (see [`refuse_links`]).

use std::collections::{HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::store::StoreError;
use creative_core::artifact::{ArtifactId, MediaType};

/// A folder of payloads named by their content hash.
///
/// Clones share what the store has learned in this process (which prefix
/// folders exist and are not links, which payloads it wrote lately), so the
/// journal, the cache and delivery given one store skip checks already made.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    known: Arc<Known>,
}

/// What a store learned in this process.
#[derive(Debug, Default)]
struct Known {
    /// Prefix folders made and found not to be links, one bit per prefix.
    ready: [AtomicU64; 4],
    /// Payloads this store wrote or checked lately (at most [`RECENT`]).
    recent: Mutex<Recent>,
}

/// How many payloads a store remembers writing: enough for the journal's
/// put of a step's outputs right after the cache's.
const RECENT: usize = 4096;

#[derive(Debug, Default)]
struct Recent {
    set: HashSet<[u8; 16]>,
    order: VecDeque<[u8; 16]>,
}

impl Known {
    fn is_ready(&self, prefix: u8) -> bool {
        self.ready[usize::from(prefix / 64)].load(Ordering::Relaxed) & (1 << (prefix % 64)) != 0
    }

    fn set_ready(&self, prefix: u8, ready: bool) {
        let word = &self.ready[usize::from(prefix / 64)];
        let bit = 1u64 << (prefix % 64);
        if ready {
            word.fetch_or(bit, Ordering::Relaxed);
        } else {
            word.fetch_and(!bit, Ordering::Relaxed);
        }
    }

    fn remember(&self, key: [u8; 16]) {
        let mut r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if r.set.insert(key) {
            r.order.push_back(key);
            if r.order.len() > RECENT {
                if let Some(old) = r.order.pop_front() {
                    r.set.remove(&old);
                }
            }
        }
    }

    /// Stop trusting a payload found damaged.
    fn forget(&self, key: &[u8; 16]) {
        let mut r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if r.set.remove(key) {
            r.order.retain(|k| k != key);
        }
    }

    fn wrote(&self, key: &[u8; 16]) -> bool {
        self.recent.lock().unwrap_or_else(|p| p.into_inner()).set.contains(key)
    }
}

/// The prefix folder's number: its two hex digits as a byte.
fn prefix_byte(hex: &str) -> Option<u8> {
    hex.get(..2).and_then(|p| u8::from_str_radix(p, 16).ok())
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique temporary name next to `path` (same folder, so the rename is atomic).
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().and_then(|s| s.to_str()).unwrap_or("blob");
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Why an output folder could not be held.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    /// Another run holds it.
    #[error("busy")]
    Busy(Option<u32>),
    /// The lock file could not be made or locked.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Hold the output folder whose state folder is `state_dir` for this run: two
/// runs writing one journal and one set of files at once would corrupt both.
/// The lock is released when the returned file is dropped (or the process dies).
pub(crate) fn lock_out_dir(state_dir: &Path) -> Result<File, LockError> {
    fs::create_dir_all(state_dir).map_err(|e| StoreError(format!("create {}: {e}", state_dir.display())))?;
    let path = state_dir.join("lock");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError(format!("open {}: {e}", path.display())))?;
    match f.try_lock() {
        Ok(()) => {
            // The holder's pid, for the message another run gets.
            let _ = f.set_len(0);
            let _ = f.write_all(std::process::id().to_string().as_bytes());
            Ok(f)
        }
        Err(fs::TryLockError::WouldBlock) => {
            let holder = fs::read_to_string(&path).ok().and_then(|s| s.trim().parse().ok());
            Err(LockError::Busy(holder))
        }
        Err(fs::TryLockError::Error(e)) => Err(StoreError(format!("lock {}: {e}", path.display())).into()),
    }
}

/// Whether `name` is one of [`temp_path`]'s names: `.<name>.<pid>.<n>.tmp`.
pub(crate) fn is_temp_name(name: &str) -> bool {
    temp_pid(name).is_some()
}

/// The process id (its digits) in one of [`temp_path`]'s names, `None` for any
/// other name.
fn temp_pid(name: &str) -> Option<&str> {
    let rest = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let mut parts = rest.rsplitn(3, '.');
    parts.next().filter(|p| all_digits(p))?;
    let pid = parts.next().filter(|p| all_digits(p))?;
    parts.next().filter(|n| !n.is_empty()).map(|_| pid)
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Remove the temporaries a killed writer left in `dir` (not recursive); returns
/// how many. Only for folders no other process is writing: the caller holds
/// the output folder's lock. This process's own temporaries are writes in
/// progress (files delivered as jobs end, while the pass placing files cleans
/// the folders it reaches), so they stay.
pub(crate) fn remove_stale_temps(dir: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let ours = std::process::id().to_string();
    for e in entries {
        let e = e?;
        if e.file_type()?.is_file() && e.file_name().to_str().and_then(temp_pid).is_some_and(|p| p != ours) {
            fs::remove_file(e.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Write `data` to `path` atomically: temporary file, optional fsync, rename,
/// optional fsync of the folder.
pub(crate) fn write_atomic(path: &Path, data: &[u8], durable: bool) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
        drop(f);
        fs::rename(&tmp, path)?;
        if durable {
            sync_dir(path)?;
        }
        Ok(())
    })();
    if result.is_err() {
        // Leave no stray temporary behind; the error is what matters.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Write a new file at `path` (created exclusively, so an existing one is an
/// `AlreadyExists` error, never overwritten); a failed write removes what it
/// began.
fn write_new(path: &Path, data: &[u8], durable: bool) -> std::io::Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).open(path)?;
    let result = f
        .write_all(data)
        .and_then(|()| if durable { f.sync_all() } else { Ok(()) });
    drop(f);
    if let Err(e) = result {
        let _ = fs::remove_file(path);
        return Err(e);
    }
    if durable {
        sync_dir(path)?;
    }
    Ok(())
}

/// A path that a writer refuses: it leads through a symbolic link, or out of its root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UnsafePath {
    /// A component under the root is a symbolic link.
    #[error("{} is a symbolic link; writes under {} do not follow links", .link.display(), .root.display())]
    Link {
        /// The link.
        link: PathBuf,
        /// The root it was found under.
        root: PathBuf,
    },
    /// The relative path is absolute or climbs out with `..`.
    #[error("{} is not a plain relative path under {}", .rel.display(), .root.display())]
    NotBelow {
        /// The offending relative path.
        rel: PathBuf,
        /// The root.
        root: PathBuf,
    },
}

/// Check that `root/rel` can be written without following a link out of `root`:
/// `rel` is a plain relative path and none of its components that exist is a
/// symbolic link (the root itself may be one: the caller chose it).
///
/// The check and the write that follows are separate system calls, so this
/// guards against links planted before a run (a shared or copied output folder),
/// not against a process racing the writer.
pub(crate) fn refuse_links(root: &Path, rel: &Path) -> Result<(), UnsafePath> {
    let mut at = root.to_path_buf();
    for c in rel.components() {
        match c {
            std::path::Component::Normal(name) => at.push(name),
            std::path::Component::CurDir => continue,
            _ => {
                return Err(UnsafePath::NotBelow {
                    rel: rel.to_path_buf(),
                    root: root.to_path_buf(),
                })
            }
        }
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(UnsafePath::Link {
                    link: at,
                    root: root.to_path_buf(),
                })
            }
            Ok(_) => {}
            // Nothing there: the rest of the path does not exist either, and is
            // made as plain folders and files.
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// Make a rename or a new file in `path`'s folder durable.
pub(crate) fn sync_dir(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

impl BlobStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        BlobStore {
            root: root.into(),
            known: Arc::default(),
        }
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob of `id` lives.
    pub fn path_of(&self, id: &ArtifactId) -> PathBuf {
        let hex = id.as_str();
        let prefix = hex.get(..2).unwrap_or("xx");
        self.root.join(prefix).join(hex)
    }

    /// Store a payload under its id. With `durable`, the payload is on disk
    /// (fsync) when this returns, even if it was already there. Without, it is
    /// whole or absent after a kill (a half-written one fails its hash and is
    /// replaced by the next put), but a power cut may lose it: the journal
    /// makes a batch of them durable at once (see the journal's module doc).
    ///
    /// A blob already there is kept only if it still holds these bytes (it may
    /// share its inode with a delivered file someone edited; one this store
    /// wrote lately and of the right length is trusted without a read);
    /// otherwise it is replaced by a fresh file.
    pub fn put(&self, id: &ArtifactId, data: &[u8], durable: bool) -> Result<(), StoreError> {
        let hex = id.as_str();
        let Some(prefix) = prefix_byte(hex).filter(|_| is_hex(hex)) else {
            return Err(StoreError(format!("artifact id `{id}` is not a hex digest")));
        };
        let path = self.path_of(id);
        let write_err = |e: std::io::Error| StoreError(format!("write {}: {e}", path.display()));
        if !self.known.is_ready(prefix) {
            self.make_prefix(&path)?;
            self.known.set_ready(prefix, true);
        }
        let key = crate::store::gc::id_key(hex);
        // The usual case, a payload new to the store: creating it says whether
        // the name was free (and refuses a link there, which O_EXCL never
        // follows), where looking first costs a failed stat.
        if !self.known.wrote(&key) && self.create(&path, prefix, data, durable)? {
            self.known.remember(key);
            return Ok(());
        }
        // Something is there already: a link is refused, the same bytes are
        // kept, anything else is replaced whole.
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(StoreError(
                    UnsafePath::Link {
                        link: path.clone(),
                        root: self.root.clone(),
                    }
                    .to_string(),
                ))
            }
            Ok(m) if m.is_file() && m.len() == data.len() as u64 => {
                if self.known.wrote(&key) || fs::read(&path).is_ok_and(|on_disk| on_disk == data) {
                    if durable {
                        // It may have been written by the cache, which does not fsync.
                        OpenOptions::new()
                            .read(true)
                            .open(&path)
                            .and_then(|f| f.sync_all())
                            .map_err(|e| StoreError(format!("sync {}: {e}", path.display())))?;
                    }
                    self.known.remember(key);
                    return Ok(());
                }
                write_atomic(&path, data, durable).map_err(write_err)?;
            }
            Ok(_) => write_atomic(&path, data, durable).map_err(write_err)?,
            // Gone since this store wrote it. If another writer makes it
            // meanwhile, make sure it holds these bytes.
            Err(_) => {
                if !self.create(&path, prefix, data, durable)? && !fs::read(&path).is_ok_and(|on_disk| on_disk == data)
                {
                    write_atomic(&path, data, durable).map_err(write_err)?;
                }
            }
        }
        self.known.remember(key);
        Ok(())
    }

    /// Create `path` holding `data`; `false` when something is there already.
    /// A prefix folder that went (gc, by hand) since it was made is made again.
    fn create(&self, path: &Path, prefix: u8, data: &[u8], durable: bool) -> Result<bool, StoreError> {
        let write_err = |e: std::io::Error| StoreError(format!("write {}: {e}", path.display()));
        let made = |r: std::io::Result<()>| match r {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        };
        match made(write_new(path, data, durable)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.known.set_ready(prefix, false);
                self.make_prefix(path)?;
                self.known.set_ready(prefix, true);
                made(write_new(path, data, durable)).map_err(write_err)
            }
            r => r.map_err(write_err),
        }
    }

    /// Whether this store (or a clone) wrote or checked the payload `id` lately
    /// and has not removed it since: its bytes are there without a look at the
    /// disk (a file removed behind the store's back is found by the next read,
    /// which checks the hash, or by the journal's sync, which opens it).
    pub fn holds_lately(&self, id: &ArtifactId) -> bool {
        self.known.wrote(&crate::store::gc::id_key(id.as_str()))
    }

    /// Remove the payload `id` (absent already is not an error).
    pub fn remove(&self, id: &ArtifactId) -> std::io::Result<()> {
        self.known.forget(&crate::store::gc::id_key(id.as_str()));
        match fs::remove_file(self.path_of(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Make `path`'s prefix folder, refusing one that is (or leads through) a link.
    fn make_prefix(&self, path: &Path) -> Result<(), StoreError> {
        let Some(dir) = path.parent() else { return Ok(()) };
        if let Ok(rel) = dir.strip_prefix(&self.root) {
            refuse_links(&self.root, rel).map_err(|e| StoreError(e.to_string()))?;
        }
        fs::create_dir_all(dir).map_err(|e| StoreError(format!("create {}: {e}", dir.display())))
    }

    /// Read a payload back; `None` if it is absent or does not match its id.
    pub fn get(&self, id: &ArtifactId, media: &MediaType) -> Result<Option<Bytes>, StoreError> {
        let path = self.path_of(id);
        match fs::read(&path) {
            Ok(data) => {
                if ArtifactId::of(media, &data) == *id {
                    Ok(Some(Bytes::from(data)))
                } else {
                    tracing::warn!(path = %path.display(), "blob does not match its id; ignoring it");
                    self.known.forget(&crate::store::gc::id_key(id.as_str()));
                    Ok(None)
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError(format!("read {}: {e}", path.display()))),
        }
    }
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damaged_payloads() {
        let dir = std::env::temp_dir().join(format!("creative-blobs-{}", std::process::id()));
        let store = BlobStore::new(&dir);
        let id = ArtifactId::of(&MediaType::Text, b"hello");
        store.put(&id, b"hello", true).unwrap();
        assert_eq!(
            store.get(&id, &MediaType::Text).unwrap().unwrap(),
            Bytes::from_static(b"hello")
        );
        fs::write(store.path_of(&id), b"hellx").unwrap();
        assert!(
            store.get(&id, &MediaType::Text).unwrap().is_none(),
            "a damaged blob is a miss"
        );
        let bad = ArtifactId::from_hex("../../etc");
        assert!(store.put(&bad, b"x", false).is_err());
        let _ = fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod temp_tests {
    use super::*;

    #[test]
    fn temp_names_are_recognised_and_nothing_else() {
        let t = temp_path(Path::new("/x/hero/mug-square-en.png"));
        let name = t.file_name().unwrap().to_str().unwrap();
        assert!(is_temp_name(name), "{name}");
        for other in [
            "mug.png",
            ".mug.png",
            "mug.tmp",
            ".mug.12.tmp",
            ".mug.a.1.tmp",
            "..1.2.tmp",
            ".mug.png.1.x.tmp",
        ] {
            assert!(!is_temp_name(other), "{other}");
        }
    }

    #[test]
    fn stale_temps_are_removed_and_real_files_and_this_processs_writes_kept() {
        let dir = std::env::temp_dir().join(format!("creative-temps-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("a.png"), b"a").unwrap();
        let ours = temp_path(&dir.join("a.png"));
        fs::write(&ours, b"being written").unwrap();
        let other = std::process::id().wrapping_add(1);
        fs::write(dir.join(format!(".a.png.{other}.7.tmp")), b"half").unwrap();
        fs::write(dir.join(".b.png.1.3.tmp"), b"half").unwrap();
        assert_eq!(remove_stale_temps(&dir).unwrap(), 2);
        let mut left: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        left.sort();
        assert_eq!(left, [ours.file_name().unwrap(), "a.png".as_ref()]);
        assert_eq!(remove_stale_temps(&dir.join("missing")).unwrap(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_output_folder_is_held_by_one_run_at_a_time() {
        let dir = std::env::temp_dir().join(format!("creative-lock-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let held = lock_out_dir(&dir).unwrap();
        match lock_out_dir(&dir) {
            Err(LockError::Busy(pid)) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("{other:?}"),
        }
        drop(held);
        lock_out_dir(&dir).expect("free again once released");
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(all(test, unix))]
mod link_tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("creative-bloblinks-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_blob_write_does_not_follow_a_prefix_folder_planted_as_a_link() {
        let dir = tmp("prefix");
        let outside = dir.join("outside");
        fs::create_dir_all(&outside).unwrap();
        let store = BlobStore::new(dir.join("objects"));
        let id = ArtifactId::of(&MediaType::Text, b"hello");
        let prefix = store.path_of(&id).parent().unwrap().to_path_buf();
        fs::create_dir_all(store.root()).unwrap();
        std::os::unix::fs::symlink(&outside, &prefix).unwrap();
        let err = store.put(&id, b"hello", false).unwrap_err();
        assert!(err.0.contains(&prefix.display().to_string()), "{err}");
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            0,
            "nothing written through the link"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_blob_write_refuses_a_link_planted_at_the_blobs_own_name() {
        let dir = tmp("blob-link");
        let outside = dir.join("outside.txt");
        fs::write(&outside, b"theirs").unwrap();
        let store = BlobStore::new(dir.join("objects"));
        let id = ArtifactId::of(&MediaType::Text, b"hello");
        let blob = store.path_of(&id);
        fs::create_dir_all(blob.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&outside, &blob).unwrap();
        let err = store.put(&id, b"hello", false).unwrap_err();
        assert!(err.0.contains("symbolic link"), "{err}");
        assert_eq!(
            fs::read(&outside).unwrap(),
            b"theirs",
            "nothing written through the link"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_blob_that_no_longer_holds_its_bytes_is_replaced_by_a_new_file() {
        use std::os::unix::fs::MetadataExt;
        let dir = tmp("edited");
        let store = BlobStore::new(dir.join("objects"));
        let id = ArtifactId::of(&MediaType::Text, b"hello");
        store.put(&id, b"hello", false).unwrap();
        // A delivered file hard-linked to the blob, edited in place.
        let asset = dir.join("asset.txt");
        fs::hard_link(store.path_of(&id), &asset).unwrap();
        fs::write(&asset, b"HELLO").unwrap();
        assert!(
            store.get(&id, &MediaType::Text).unwrap().is_none(),
            "detected, never served"
        );
        store.put(&id, b"hello", false).unwrap();
        assert_eq!(
            store.get(&id, &MediaType::Text).unwrap().unwrap(),
            Bytes::from_static(b"hello")
        );
        assert_eq!(fs::read(&asset).unwrap(), b"HELLO", "the edit is left alone");
        let (a, b) = (fs::metadata(&asset).unwrap(), fs::metadata(store.path_of(&id)).unwrap());
        assert_ne!(a.ino(), b.ino());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_path_through_a_link_or_out_of_the_root_is_refused_and_the_root_may_be_a_link() {
        let dir = tmp("refuse");
        let real = dir.join("real");
        fs::create_dir_all(real.join("hero")).unwrap();
        std::os::unix::fs::symlink(&real, dir.join("root")).unwrap();
        let root = dir.join("root");
        refuse_links(&root, Path::new("hero/a.png")).expect("the root itself may be a link");
        refuse_links(&root, Path::new("new/deeper/a.png")).expect("missing folders are fine");
        std::os::unix::fs::symlink("/tmp", real.join("out")).unwrap();
        assert_eq!(
            refuse_links(&root, Path::new("out/a.png")),
            Err(UnsafePath::Link {
                link: root.join("out"),
                root: root.clone()
            })
        );
        assert!(matches!(
            refuse_links(&root, Path::new("../a.png")),
            Err(UnsafePath::NotBelow { .. })
        ));
        assert!(matches!(
            refuse_links(&root, Path::new("/etc/a.png")),
            Err(UnsafePath::NotBelow { .. })
        ));
        let _ = fs::remove_dir_all(&dir);
    }
}
