//! Delivery: sinks that put finished assets somewhere, the manifest that says
//! what was delivered with its full provenance, the report that says what it
//! cost and how well each provider did, and the HTML contact sheet.
//!
//! Everything here is computed from journal records (and, for the report, the
//! run's events), so a resumed run, a sharded run merged by concatenating
//! journals, and an uninterrupted run give the same manifest.

mod html;
mod manifest;
mod path;
mod report;

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::artifact::{Artifact, ArtifactId};

pub use html::{contact_sheet, make_thumbnail, sheet_page_name, thumbnail_path, write_contact_sheet, SHEET_PAGE};
pub use manifest::{job_entries, AssetEntry, JobEntry, Manifest, ManifestSummary, SourceEntry};
pub use path::{FileNameTemplate, PathError};
pub use report::{FailureRow, GateRow, JobCounts, ProviderRow, Report, ReportBuilder, Totals};

/// A failed delivery.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("sink `{sink}`: {message}")]
pub struct SinkError {
    /// The sink's name.
    pub sink: String,
    /// What went wrong.
    pub message: String,
}

impl SinkError {
    /// A new error.
    pub fn new(sink: impl Into<String>, message: impl Into<String>) -> Self {
        SinkError {
            sink: sink.into(),
            message: message.into(),
        }
    }
}

/// Somewhere finished assets go: a folder, a webhook, a DAM, a host's own.
///
/// `deliver` is called once per delivered asset (after the directory sink has
/// written it, so `asset.path` is set), for a few assets at once and in no
/// particular order, then `finish` once with the manifest's summary and the report. A failing sink does not fail the run: its errors are listed in the
/// report. When the run is cancelled, a call in progress is dropped at its next
/// await and no further calls are made (files and manifest are still written);
/// a resume delivers the rest, so sinks should be idempotent.
#[async_trait]
pub trait Sink: Send + Sync {
    /// A name for reports.
    fn name(&self) -> &str;

    /// Deliver one asset.
    async fn deliver(&self, asset: &AssetEntry, artifact: &Artifact) -> Result<(), SinkError>;

    /// Called once when every asset has been delivered, with the manifest
    /// counted (`manifest.path` names `manifest.json`, for a sink that wants
    /// every entry) and the report.
    async fn finish(&self, _manifest: &ManifestSummary, _report: &Report) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Writes assets into a folder, under names from a [`FileNameTemplate`].
///
/// Files are written to a temporary name and renamed, so a file either is whole or
/// is not there; a file already holding the same bytes is left alone.
#[derive(Debug, Clone)]
pub struct DirectorySink {
    root: PathBuf,
    names: FileNameTemplate,
}

impl DirectorySink {
    /// A sink writing under `root`.
    pub fn new(root: impl Into<PathBuf>, names: FileNameTemplate) -> Self {
        DirectorySink {
            root: root.into(),
            names,
        }
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The relative path an asset gets (before any collision suffix).
    pub fn path_for(&self, asset: &AssetEntry) -> Result<String, PathError> {
        self.names.render(&asset.name_vars())
    }

    /// Write one artifact at `rel` (relative to the root; already checked).
    pub fn write(&self, rel: &str, artifact: &Artifact) -> Result<(), SinkError> {
        let path = self.root.join(rel);
        if let Ok(existing) = std::fs::read(&path) {
            if ArtifactId::of(artifact.media(), &existing) == *artifact.id() {
                return Ok(());
            }
        }
        crate::store::write_atomic(&path, artifact.data(), false)
            .map_err(|e| SinkError::new("directory", format!("write {}: {e}", path.display())))
    }

    /// Write one artifact at `rel` unless a file is already there; returns
    /// whether the file now holds the artifact. Used while a run is going, when
    /// another asset may own the name until the final pass settles collisions.
    pub fn write_unless_taken(&self, rel: &str, artifact: &Artifact) -> Result<bool, SinkError> {
        let path = self.root.join(rel);
        if let Ok(existing) = std::fs::read(&path) {
            return Ok(ArtifactId::of(artifact.media(), &existing) == *artifact.id());
        }
        self.write(rel, artifact).map(|()| true)
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
        media: &crate::artifact::MediaType,
        bytes: u64,
    ) -> Result<bool, SinkError> {
        let err = |what: &str, p: &Path, e: std::io::Error| {
            SinkError::new("directory", format!("{what} {}: {e}", p.display()))
        };
        let path = self.root.join(rel);
        let blob = blobs.path_of(id);
        let Ok(meta) = std::fs::metadata(&blob) else {
            return Ok(false);
        };
        if meta.len() != bytes {
            return Ok(false);
        }
        if let Ok(existing) = std::fs::symlink_metadata(&path) {
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
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err("create", dir, e))?;
        }
        let tmp = crate::store::temp_path(&path);
        if std::fs::hard_link(&blob, &tmp).is_err() {
            std::fs::copy(&blob, &tmp).map_err(|e| err("copy to", &tmp, e))?;
        }
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            err("rename to", &path, e)
        })?;
        Ok(true)
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
