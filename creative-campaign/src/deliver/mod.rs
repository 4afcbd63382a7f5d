//! Delivery: sinks that put finished assets somewhere, the manifest that says
//! what was delivered with its full provenance, the report that says what it
//! cost and how well each provider did, and the HTML contact sheet.
//!
//! Everything here is computed from journal records (and, for the report, the
//! run's events), so a resumed run, a sharded run merged by concatenating
//! journals, and an uninterrupted run give the same manifest but for what each
//! run recorded of itself: an asset's latency, attempt, cache hit and finish
//! time (kept from the journal record, so a resume does not change them) and
//! the manifest's start and end.

#[cfg(feature = "c2pa")]
mod c2pa;
mod html;
mod ledger;
mod manifest;
mod mark;
mod path;
mod report;
mod xmp;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::store::BlobStore;
use creative_core::artifact::{Artifact, ArtifactId};

#[cfg(feature = "c2pa")]
pub use c2pa::{C2paError, C2paSigner, PROVENANCE_LABEL};
pub use creative_core::deliver::{
    AssetEntry, FailureRow, GateRow, JobCounts, JobEntry, Manifest, ManifestSummary, ProviderRow, Report, Sink,
    SinkError, SourceEntry, Totals,
};
pub(crate) use html::SheetCards;
pub use html::{contact_sheet, make_thumbnail, sheet_page_name, thumbnail_path, write_contact_sheet, SHEET_PAGE};
pub(crate) use ledger::Sinks;
pub use ledger::{asset_key, DeliveryLedger, DELIVERIES_FILE};
pub(crate) use manifest::delivered_assets;
pub use manifest::{job_entries, manifest_from_records};
pub use mark::{MarkError, Marking};
pub use path::{FileNameTemplate, PathError};
pub use report::ReportBuilder;
pub use xmp::{packet as xmp_packet, TRAINED_ALGORITHMIC_MEDIA};

/// Writes assets into a folder, under names from a [`FileNameTemplate`].
///
/// Files are written to a temporary name and renamed, so a file either is whole or
/// is not there; a file already holding the same bytes is left alone.
///
/// With [`with_blobs`](Self::with_blobs), a file is not copied from memory but
/// made from the content-addressed store's blob of the same bytes: a reflink
/// (FICLONE, on file systems that share extents: Btrfs, XFS, ...), else a hard
/// link, else the bytes are written. A reflink is an independent copy. A hard
/// link shares its inode with the blob: editing the delivered file in place edits
/// the blob too. That is detected, never served: [`BlobStore::get`] checks every
/// payload against its hash and treats a changed one as missing (the step runs
/// again), and [`BlobStore::put`] replaces a blob that no longer holds its bytes
/// with a new file, leaving the edited asset alone.
///
/// The sink never follows a symbolic link planted inside its folder: a path
/// whose components under the root include a link is refused with an error
/// naming it (the root itself may be a link).
#[derive(Debug, Clone)]
pub struct DirectorySink {
    root: PathBuf,
    names: FileNameTemplate,
    blobs: Option<BlobStore>,
    /// Cleared on the first reflink the file system refuses, so a file system
    /// without them costs one failed attempt per sink, not one per file.
    reflinks: Arc<AtomicBool>,
    /// Folders under the root this sink made or found, and found not to be
    /// links (a few per campaign: its step folders), so each file costs no
    /// more checks of its folders.
    ready: Arc<Mutex<HashSet<PathBuf>>>,
    /// Marks put on files as they are written (C2PA or XMP); `None`: files
    /// are the store's bytes.
    marking: Option<Marking>,
}

impl DirectorySink {
    /// A sink writing under `root`.
    pub fn new(root: impl Into<PathBuf>, names: FileNameTemplate) -> Self {
        DirectorySink {
            root: root.into(),
            names,
            blobs: None,
            reflinks: Arc::new(AtomicBool::new(cfg!(target_os = "linux"))),
            ready: Arc::default(),
            marking: None,
        }
    }

    /// Mark each file as it is written (see [`Marking`]). A marked file is
    /// written, never linked to its blob: the store keeps the unmarked bytes.
    /// Deliver marked files with [`place_marked`](Self::place_marked) and
    /// [`write_marked_unless_taken`](Self::write_marked_unless_taken).
    pub fn with_marking(mut self, marking: Marking) -> Self {
        self.marking = Some(marking);
        self
    }

    /// The marking set by [`with_marking`](Self::with_marking).
    pub fn marking(&self) -> Option<&Marking> {
        self.marking.as_ref()
    }

    /// Make files from the blobs of `blobs` (reflink or hard link) where the
    /// file system allows, instead of writing their bytes. Default: no store,
    /// every file is written.
    pub fn with_blobs(mut self, blobs: BlobStore) -> Self {
        self.blobs = Some(blobs);
        self
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The relative path an asset gets (before any collision suffix).
    pub fn path_for(&self, asset: &AssetEntry) -> Result<String, PathError> {
        self.names.render(&asset.name_vars())
    }

    fn error(&self, message: String) -> SinkError {
        SinkError::new("directory", message)
    }

    /// `root/rel`, once it is known not to lead through a link.
    fn checked(&self, rel: &str) -> Result<PathBuf, SinkError> {
        crate::store::refuse_links(&self.root, Path::new(rel)).map_err(|e| self.error(format!("write {rel}: {e}")))?;
        Ok(self.root.join(rel))
    }

    /// Write one artifact at `rel` (relative to the root; already checked).
    pub fn write(&self, rel: &str, artifact: &Artifact) -> Result<(), SinkError> {
        let path = self.checked_in_ready_folder(rel)?;
        let absent = match std::fs::read(&path) {
            Ok(existing) if ArtifactId::of(artifact.media(), &existing) == *artifact.id() => return Ok(()),
            Ok(_) => false,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        };
        self.write_at(&path, artifact, absent)
    }

    fn write_at(&self, path: &Path, artifact: &Artifact, absent: bool) -> Result<(), SinkError> {
        if self.link_from_blob(path, artifact, absent) {
            return Ok(());
        }
        crate::store::write_atomic(path, artifact.data(), false)
            .map_err(|e| self.error(format!("write {}: {e}", path.display())))
    }

    /// Make `path` from the artifact's blob; whether that worked. Anything short
    /// of a whole file under `path` (no store, no blob, a blob that no longer
    /// holds the bytes, a file system that links nothing) leaves the caller to
    /// write the bytes. `absent`: nothing was at `path` a moment ago.
    fn link_from_blob(&self, path: &Path, artifact: &Artifact, absent: bool) -> bool {
        let Some(blobs) = &self.blobs else { return false };
        let blob = blobs.path_of(artifact.id());
        // Only a regular file with exactly these bytes: linking a damaged blob
        // would deliver a damaged asset. One the store wrote a moment ago (the
        // usual case: this job's own output) is known to hold them.
        if !blobs.holds_lately(artifact.id()) {
            match std::fs::symlink_metadata(&blob) {
                Ok(m) if m.is_file() && m.len() == artifact.data().len() as u64 => {}
                _ => return false,
            }
            if !std::fs::read(&blob).is_ok_and(|b| b[..] == artifact.data()[..]) {
                return false;
            }
        }
        // A hard link made under the final name appears whole at once: no
        // temporary to rename when nothing is there to replace.
        if absent && !self.reflinks.load(Ordering::Relaxed) && std::fs::hard_link(&blob, path).is_ok() {
            return true;
        }
        let tmp = crate::store::temp_path(path);
        let made = (self.reflinks.load(Ordering::Relaxed) && self.reflink(&blob, &tmp))
            || std::fs::hard_link(&blob, &tmp).is_ok();
        if made && std::fs::rename(&tmp, path).is_ok() {
            return true;
        }
        let _ = std::fs::remove_file(&tmp);
        false
    }

    /// Clone `blob`'s extents into a new file at `tmp`.
    #[cfg(target_os = "linux")]
    fn reflink(&self, blob: &Path, tmp: &Path) -> bool {
        let cloned = (|| {
            let src = std::fs::File::open(blob)?;
            let dst = std::fs::File::create_new(tmp)?;
            rustix::fs::ioctl_ficlone(&dst, &src).map_err(std::io::Error::from)
        })();
        match cloned {
            Ok(()) => true,
            Err(e) => {
                let _ = std::fs::remove_file(tmp);
                tracing::debug!(error = %e, "no reflinks here; hard links or copies from now on");
                self.reflinks.store(false, Ordering::Relaxed);
                false
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn reflink(&self, _blob: &Path, _tmp: &Path) -> bool {
        false
    }

    /// Write one artifact at `rel` unless a file is already there; returns
    /// whether the file now holds the artifact. Used while a run is going, when
    /// another asset may own the name until the final pass settles collisions.
    pub fn write_unless_taken(&self, rel: &str, artifact: &Artifact) -> Result<bool, SinkError> {
        let path = self.checked_in_ready_folder(rel)?;
        // The usual case, a fresh name and a blob this process just wrote:
        // the link itself says whether the name was free (one call, where
        // looking first costs a failed open as well).
        if let Some(blobs) = self.blobs.as_ref().filter(|b| b.holds_lately(artifact.id())) {
            if !self.reflinks.load(Ordering::Relaxed) && std::fs::hard_link(blobs.path_of(artifact.id()), &path).is_ok()
            {
                return Ok(true);
            }
        }
        match std::fs::read(&path) {
            Ok(existing) => Ok(ArtifactId::of(artifact.media(), &existing) == *artifact.id()),
            Err(e) => self
                .write_at(&path, artifact, e.kind() == std::io::ErrorKind::NotFound)
                .map(|()| true),
        }
    }

    /// Put the stored payload `id` at `rel` without reading it: a hard link to
    /// the content-addressed blob (renamed into place, so the file appears
    /// whole), or a copy where the file system cannot link. A file that already
    /// is that blob (same inode) is left alone. Returns `false` when the blob is
    /// missing or is not `bytes` long (damaged), so the caller can report it.
    ///
    /// A linked asset shares its inode with the blob: edit a delivered file by
    /// writing a new one (as image editors do), not in place; the store checks
    /// hashes when it reads, so an edited blob is never served as the original.
    pub fn place(
        &self,
        rel: &str,
        blobs: &crate::store::BlobStore,
        id: &ArtifactId,
        media: &creative_core::artifact::MediaType,
        bytes: u64,
    ) -> Result<bool, SinkError> {
        let err = |what: &str, p: &Path, e: std::io::Error| {
            SinkError::new("directory", format!("{what} {}: {e}", p.display()))
        };
        let path = self.checked_in_ready_folder(rel)?;
        let blob = blobs.path_of(id);
        let Ok(meta) = std::fs::metadata(&blob) else {
            return Ok(false);
        };
        if meta.len() != bytes {
            return Ok(false);
        }
        match std::fs::symlink_metadata(&path) {
            Ok(existing) => {
                if same_file(&existing, &meta) {
                    return Ok(true);
                }
                if existing.is_file() && existing.len() == bytes {
                    if let Ok(data) = std::fs::read(&path) {
                        if ArtifactId::of(media, &data) == *id {
                            return Ok(true);
                        }
                    }
                }
            }
            // Nothing there: a hard link made under the final name appears
            // whole at once, with no temporary to rename.
            Err(_) if !self.reflinks.load(Ordering::Relaxed) => match std::fs::hard_link(&blob, &path) {
                Ok(()) => return Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // A folder went since it was checked: check and make it
                    // again (once), then go the long way below.
                    self.forget_ready(rel);
                    self.checked_in_ready_folder(rel)?;
                    if std::fs::hard_link(&blob, &path).is_ok() {
                        return Ok(true);
                    }
                }
                // Made meanwhile, or no links here: replace it below.
                Err(_) => {}
            },
            Err(_) => {}
        }
        let tmp = crate::store::temp_path(&path);
        let linked = (self.reflinks.load(Ordering::Relaxed) && self.reflink(&blob, &tmp))
            || std::fs::hard_link(&blob, &tmp).is_ok();
        if !linked {
            let _ = std::fs::remove_file(&tmp);
            std::fs::copy(&blob, &tmp).map_err(|e| err("copy to", &tmp, e))?;
        }
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            err("rename to", &path, e)
        })?;
        Ok(true)
    }

    /// `root/rel`, its folders made and checked for links once per sink. The
    /// file's own name is not checked: a link there is replaced by a rename,
    /// never followed.
    fn checked_in_ready_folder(&self, rel: &str) -> Result<PathBuf, SinkError> {
        let parent = Path::new(rel).parent().unwrap_or(Path::new(""));
        let ready = self.ready.lock().unwrap_or_else(|p| p.into_inner()).contains(parent);
        if ready {
            // The relative path's own shape is still checked: no `..`, not absolute.
            if Path::new(rel)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir))
            {
                return Ok(self.root.join(rel));
            }
        }
        let path = self.checked(rel)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| SinkError::new("directory", format!("create {}: {e}", dir.display())))?;
        }
        self.ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(parent.to_path_buf());
        Ok(path)
    }

    /// Put `asset` at `rel`, marked (see [`with_marking`](Self::with_marking)):
    /// its payload comes from `blobs`, as do the sources its credentials record
    /// as ingredients. Returns `false` when the payload is missing from the
    /// store, so the caller can report it. A file this run already marked for
    /// the same asset is left alone; anything else at `rel` is replaced.
    pub fn place_marked(&self, rel: &str, blobs: &BlobStore, asset: &AssetEntry) -> Result<bool, SinkError> {
        let data = blobs
            .get(&asset.id, &asset.media)
            .map_err(|e| self.error(format!("read payload {} for {rel}: {e}", asset.id)))?;
        let Some(data) = data else { return Ok(false) };
        let from_store = |s: &SourceEntry| blobs.get(&s.id, &s.media).ok().flatten();
        self.deliver_marked(rel, asset, &data, &from_store, false)
    }

    /// Write `asset` (payload `data`) at `rel`, marked, unless a file is
    /// already there; returns whether the file now holds this asset. `source`
    /// gives the payload of each of the asset's sources (its ingredients).
    /// Used while a run is going, when another asset may own the name.
    pub fn write_marked_unless_taken(
        &self,
        rel: &str,
        asset: &AssetEntry,
        data: &[u8],
        source: &dyn Fn(&SourceEntry) -> Option<bytes::Bytes>,
    ) -> Result<bool, SinkError> {
        self.deliver_marked(rel, asset, data, source, true)
    }

    fn deliver_marked(
        &self,
        rel: &str,
        asset: &AssetEntry,
        data: &[u8],
        source: &dyn Fn(&SourceEntry) -> Option<bytes::Bytes>,
        only_if_free: bool,
    ) -> Result<bool, SinkError> {
        let path = self.checked_in_ready_folder(rel)?;
        let existing = match std::fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.error(format!("read {}: {e}", path.display()))),
        };
        if let (Some(m), Some(old)) = (&self.marking, &existing) {
            if m.wrote(&path, &asset.id, old) {
                return Ok(true);
            }
            // Signing again cannot give the same bytes: whatever is there
            // was not written by this run for this asset.
            if only_if_free && !m.deterministic() {
                return Ok(false);
            }
        }
        let title = Path::new(rel)
            .file_name()
            .map_or_else(|| rel.to_string(), |n| n.to_string_lossy().into_owned());
        let marked = match &self.marking {
            Some(m) => m
                .mark(asset, &title, data, source)
                .map_err(|e| self.error(format!("mark {}: {e}", path.display())))?,
            None => None,
        };
        let bytes: &[u8] = marked.as_deref().unwrap_or(data);
        if existing.as_deref() != Some(bytes) {
            if only_if_free && existing.is_some() {
                return Ok(false);
            }
            crate::store::write_atomic(&path, bytes, false)
                .map_err(|e| self.error(format!("write {}: {e}", path.display())))?;
        }
        if let Some(m) = &self.marking {
            m.remember(&path, &asset.id, bytes);
        }
        Ok(true)
    }

    fn forget_ready(&self, rel: &str) {
        let parent = Path::new(rel).parent().unwrap_or(Path::new(""));
        self.ready.lock().unwrap_or_else(|p| p.into_inner()).remove(parent);
    }
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    false
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use creative_core::artifact::MediaType;
    use std::os::unix::fs::MetadataExt;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("creative-dirsink-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn names() -> FileNameTemplate {
        FileNameTemplate::new("{{ step }}/{{ job }}.{{ ext }}").unwrap()
    }

    #[test]
    fn a_file_delivered_from_the_store_is_a_link_to_its_blob_and_whole() {
        let dir = tmp("link");
        let blobs = BlobStore::new(dir.join(".creative").join("objects"));
        let a = Artifact::new(MediaType::Png, vec![7u8; 300]);
        blobs.put(a.id(), a.data(), false).unwrap();
        let sink = DirectorySink::new(&dir, names()).with_blobs(blobs.clone());
        sink.write("hero/mug.png", &a).unwrap();
        let (file, blob) = (dir.join("hero/mug.png"), blobs.path_of(a.id()));
        assert_eq!(std::fs::read(&file).unwrap(), a.data().as_ref());
        let reflinked = sink.reflinks.load(Ordering::Relaxed);
        let shared = std::fs::metadata(&file).unwrap().ino() == std::fs::metadata(&blob).unwrap().ino();
        assert!(reflinked || shared, "neither a reflink nor a hard link");
        // Written again: the same file is kept as it is.
        sink.write("hero/mug.png", &a).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), a.data().as_ref());
        let left: Vec<_> = std::fs::read_dir(dir.join("hero"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["mug.png"], "no temporary left");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn without_a_matching_blob_the_bytes_are_written() {
        let dir = tmp("copy");
        let blobs = BlobStore::new(dir.join("objects"));
        let a = Artifact::new(MediaType::Png, vec![1u8, 2, 3]);
        // The blob holds other bytes of the same length: never linked.
        std::fs::create_dir_all(blobs.path_of(a.id()).parent().unwrap()).unwrap();
        std::fs::write(blobs.path_of(a.id()), [9u8, 9, 9]).unwrap();
        let sink = DirectorySink::new(dir.join("out"), names()).with_blobs(blobs.clone());
        sink.write("a.png", &a).unwrap();
        let file = dir.join("out/a.png");
        assert_eq!(std::fs::read(&file).unwrap(), [1u8, 2, 3]);
        assert_ne!(
            std::fs::metadata(&file).unwrap().ino(),
            std::fs::metadata(blobs.path_of(a.id())).unwrap().ino()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_sink_refuses_a_folder_or_file_planted_as_a_link_naming_it() {
        let dir = tmp("links");
        let (root, outside) = (dir.join("out"), dir.join("outside"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("hero")).unwrap();
        std::os::unix::fs::symlink(outside.join("x.png"), root.join("x.png")).unwrap();
        let sink = DirectorySink::new(&root, names());
        let a = Artifact::new(MediaType::Png, vec![1u8]);
        for rel in ["hero/mug.png", "x.png"] {
            let err = sink.write(rel, &a).unwrap_err();
            let link = root.join(rel.split('/').next().unwrap());
            assert!(err.message.contains(&link.display().to_string()), "{err}");
            assert!(sink.write_unless_taken(rel, &a).is_err());
        }
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "nothing written outside"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
