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

pub use html::contact_sheet;
pub use manifest::{AssetEntry, JobEntry, Manifest, SourceEntry};
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
/// particular order, then `finish` once with the manifest and the report. A failing sink does not fail the run: its errors are listed in the
/// report. When the run is cancelled, a call in progress is dropped at its next
/// await and no further calls are made (files and manifest are still written);
/// a resume delivers the rest, so sinks should be idempotent.
#[async_trait]
pub trait Sink: Send + Sync {
    /// A name for reports.
    fn name(&self) -> &str;

    /// Deliver one asset.
    async fn deliver(&self, asset: &AssetEntry, artifact: &Artifact) -> Result<(), SinkError>;

    /// Called once when every asset has been delivered.
    async fn finish(&self, _manifest: &Manifest, _report: &Report) -> Result<(), SinkError> {
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
}
