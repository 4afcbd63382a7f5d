//! Marking delivered files with what made them: C2PA content credentials (with
//! the `c2pa` feature and the user's own key), or else the IPTC digital source
//! type in XMP.
//!
//! Marks are made at delivery, on the way into the output folder: the
//! content-addressed store keeps the unmarked bytes, so the cache, resumes and
//! the manifest's hashes are those of what the steps made, and a marked file's
//! bytes differ from its manifest entry's hash.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use creative_core::artifact::{ArtifactId, MediaType};
use creative_core::deliver::{AssetEntry, SourceEntry};
use creative_core::provenance::Provenance;

use super::xmp::{self, XmpFormat};

/// Why a delivered file could not be marked. Each names the file through the
/// sink error that carries it; the class says what to do about it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MarkError {
    /// The payload is not a well-formed file of its media type (a damaged or
    /// mislabelled output): fix the step that made it.
    #[error("malformed {format}: {reason}")]
    Malformed {
        /// The format it claims to be.
        format: &'static str,
        /// What is wrong, and where.
        reason: String,
    },
    /// An input the asset was made from is not in the store, so it cannot be
    /// recorded as an ingredient: run again to make it.
    #[error("its source {id} is not in the store, so it cannot be recorded as an ingredient")]
    MissingSource {
        /// The missing artifact's id.
        id: ArtifactId,
    },
    /// The C2PA SDK refused to sign the file (a format it cannot embed in,
    /// a timestamp authority that did not answer).
    #[error("C2PA signing failed: {reason}")]
    Sign {
        /// The SDK's reason.
        reason: String,
    },
}

/// How delivered files are marked; shared by every sink a campaign makes, so
/// a file written as its job ends is not marked again by the final pass.
#[derive(Clone)]
pub struct Marking {
    inner: Arc<Inner>,
}

struct Inner {
    how: How,
    /// The files this run marked: path to (artifact, hash of what was
    /// written). Signing is not deterministic (times, ids, signatures), so a
    /// file is recognised by what was written, not by signing again.
    written: Mutex<HashMap<PathBuf, (ArtifactId, blake3::Hash)>>,
}

enum How {
    Xmp,
    #[cfg(feature = "c2pa")]
    C2pa(super::c2pa::C2paSigner),
}

impl std::fmt::Debug for Marking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner.how {
            How::Xmp => f.write_str("Marking::Xmp"),
            #[cfg(feature = "c2pa")]
            How::C2pa(s) => f.debug_tuple("Marking::C2pa").field(s).finish(),
        }
    }
}

/// Whether a generative model made the artifact or one it was made from.
pub(crate) fn generated(provenance: &Provenance, sources: &[SourceEntry]) -> bool {
    provenance.provider.is_some() || sources.iter().any(|s| s.provenance.provider.is_some())
}

pub(crate) fn xmp_format(media: &MediaType) -> Option<XmpFormat> {
    match media {
        MediaType::Png => Some(XmpFormat::Png),
        MediaType::Jpeg => Some(XmpFormat::Jpeg),
        MediaType::Webp => Some(XmpFormat::Webp),
        _ => None,
    }
}

impl Marking {
    /// Mark generated PNG, JPEG and WebP files with IPTC `DigitalSourceType`
    /// `trainedAlgorithmicMedia` in XMP; other files are delivered as made.
    pub fn xmp() -> Self {
        Self::with(How::Xmp)
    }

    /// Sign delivered JPEG, PNG, WebP and MP4 files with C2PA content
    /// credentials; other files are delivered as made.
    #[cfg(feature = "c2pa")]
    pub fn c2pa(signer: super::c2pa::C2paSigner) -> Self {
        Self::with(How::C2pa(signer))
    }

    fn with(how: How) -> Self {
        Marking {
            inner: Arc::new(Inner {
                how,
                written: Mutex::default(),
            }),
        }
    }

    /// The delivered bytes of `asset`, whose payload is `data`: marked, or
    /// `None` when its media type carries no mark (or, for XMP, when no model
    /// made it). `title` names the file in C2PA credentials; `source` gives the
    /// payload of one of [`AssetEntry::sources`] (its ingredients).
    // Without the `c2pa` feature, XMP needs neither a title nor sources.
    #[cfg_attr(not(feature = "c2pa"), allow(unused_variables))]
    pub fn mark(
        &self,
        asset: &AssetEntry,
        title: &str,
        data: &[u8],
        source: &dyn Fn(&SourceEntry) -> Option<Bytes>,
    ) -> Result<Option<Vec<u8>>, MarkError> {
        match &self.inner.how {
            How::Xmp => {
                let Some(format) = xmp_format(&asset.media) else {
                    return Ok(None);
                };
                if !generated(&asset.provenance, &asset.sources) {
                    return Ok(None);
                }
                xmp::add_source_type(data, format, xmp::TRAINED_ALGORITHMIC_MEDIA)
            }
            #[cfg(feature = "c2pa")]
            How::C2pa(signer) => signer.sign_asset(asset, title, data, source),
        }
    }

    /// Whether marking the same bytes twice gives the same file (XMP does;
    /// signing does not: times, ids and signatures differ).
    pub(crate) fn deterministic(&self) -> bool {
        matches!(self.inner.how, How::Xmp)
    }

    /// Whether `path` holds what this run wrote there for `id`.
    pub(crate) fn wrote(&self, path: &Path, id: &ArtifactId, on_disk: &[u8]) -> bool {
        let written = self.inner.written.lock().unwrap_or_else(|p| p.into_inner());
        written
            .get(path)
            .is_some_and(|(i, h)| i == id && *h == blake3::hash(on_disk))
    }

    pub(crate) fn remember(&self, path: &Path, id: &ArtifactId, written: &[u8]) {
        self.inner
            .written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path.to_path_buf(), (id.clone(), blake3::hash(written)));
    }
}
