//! Artifacts: the values that flow between steps.
//!
//! An [`Artifact`] is immutable. Its payload is a [`bytes::Bytes`], so handing an
//! artifact to the next step, to a gate, to a sink or across the C ABI clones a
//! reference count, never the pixels.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::provenance::Provenance;

/// The media type of an artifact's payload.
///
/// Common types have their own variant so matching on them is cheap; anything
/// else is kept verbatim in [`MediaType::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MediaType {
    /// `image/png`
    Png,
    /// `image/jpeg`
    Jpeg,
    /// `image/webp`
    Webp,
    /// `text/plain`
    Text,
    /// `application/json`
    Json,
    /// `audio/mpeg`
    Mp3,
    /// `audio/wav`
    Wav,
    /// `video/mp4`
    Mp4,
    /// `model/gltf-binary`
    Glb,
    /// Any other MIME type, kept as given.
    Other(Arc<str>),
}

/// The broad family of a media type, used to check that a step's output can feed
/// another step's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// Raster images.
    Image,
    /// Plain or structured text.
    Text,
    /// Audio.
    Audio,
    /// Video.
    Video,
    /// 3D models.
    Model3d,
    /// Anything else.
    Other,
}

impl MediaType {
    /// The MIME string, such as `image/png`.
    pub fn as_str(&self) -> &str {
        match self {
            MediaType::Png => "image/png",
            MediaType::Jpeg => "image/jpeg",
            MediaType::Webp => "image/webp",
            MediaType::Text => "text/plain",
            MediaType::Json => "application/json",
            MediaType::Mp3 => "audio/mpeg",
            MediaType::Wav => "audio/wav",
            MediaType::Mp4 => "video/mp4",
            MediaType::Glb => "model/gltf-binary",
            MediaType::Other(s) => s,
        }
    }

    /// The family this type belongs to.
    pub fn kind(&self) -> MediaKind {
        let s = self.as_str();
        if s.starts_with("image/") {
            MediaKind::Image
        } else if s.starts_with("text/") || s == "application/json" {
            MediaKind::Text
        } else if s.starts_with("audio/") {
            MediaKind::Audio
        } else if s.starts_with("video/") {
            MediaKind::Video
        } else if s.starts_with("model/") {
            MediaKind::Model3d
        } else {
            MediaKind::Other
        }
    }

    /// The usual file extension, without the dot.
    pub fn extension(&self) -> &str {
        match self {
            MediaType::Png => "png",
            MediaType::Jpeg => "jpg",
            MediaType::Webp => "webp",
            MediaType::Text => "txt",
            MediaType::Json => "json",
            MediaType::Mp3 => "mp3",
            MediaType::Wav => "wav",
            MediaType::Mp4 => "mp4",
            MediaType::Glb => "glb",
            MediaType::Other(s) => s.rsplit('/').next().unwrap_or("bin"),
        }
    }
}

impl FromStr for MediaType {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        Ok(match lower.as_str() {
            "image/png" => MediaType::Png,
            "image/jpeg" | "image/jpg" => MediaType::Jpeg,
            "image/webp" => MediaType::Webp,
            "text/plain" => MediaType::Text,
            "application/json" => MediaType::Json,
            "audio/mpeg" | "audio/mp3" => MediaType::Mp3,
            "audio/wav" | "audio/x-wav" | "audio/wave" => MediaType::Wav,
            "video/mp4" => MediaType::Mp4,
            "model/gltf-binary" => MediaType::Glb,
            _ => MediaType::Other(Arc::from(lower.as_str())),
        })
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for MediaType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MediaType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(s.parse().unwrap_or(MediaType::Other(Arc::from(&*s))))
    }
}

/// The content-hash id of an artifact: BLAKE3 of media type and payload, hex.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ArtifactId(Arc<str>);

impl ArtifactId {
    /// Hash `media` and `data` into an id.
    pub fn of(media: &MediaType, data: &[u8]) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(media.as_str().as_bytes());
        h.update(&[0]);
        h.update(data);
        ArtifactId(Arc::from(h.finalize().to_hex().as_str()))
    }

    /// Wrap an id read back from a manifest or journal.
    pub fn from_hex(hex: &str) -> Self {
        ArtifactId(Arc::from(hex))
    }

    /// The hex string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, handy in file names.
    pub fn short(&self) -> &str {
        &self.0[..self.0.len().min(12)]
    }
}

impl fmt::Debug for ArtifactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ArtifactId({})", self.short())
    }
}

impl fmt::Display for ArtifactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Descriptive facts about a payload that steps and gates want without decoding
/// it again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Pixel width, for images and video.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Pixel height, for images and video.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Duration in seconds, for audio and video.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    /// Free-form extra facts (`rendition = "9x16"`, a file name hint...).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// An immutable piece of media with its full history.
///
/// ```
/// use creative_core::{Artifact, MediaType};
/// let a = Artifact::new(MediaType::Text, "hello".as_bytes().to_vec());
/// let b = a.clone(); // clones a reference count, not the payload
/// assert_eq!(a.id(), b.id());
/// assert_eq!(a.text(), Some("hello"));
/// ```
#[derive(Clone)]
pub struct Artifact {
    id: ArtifactId,
    media: MediaType,
    data: Bytes,
    meta: Arc<Meta>,
    provenance: Arc<Provenance>,
}

impl Artifact {
    /// A new artifact with empty provenance; its id is the hash of `media` and `data`.
    pub fn new(media: MediaType, data: impl Into<Bytes>) -> Self {
        let data = data.into();
        Artifact {
            id: ArtifactId::of(&media, &data),
            media,
            data,
            meta: Arc::new(Meta::default()),
            provenance: Arc::new(Provenance::default()),
        }
    }

    /// A text artifact.
    pub fn text_plain(text: impl Into<String>) -> Self {
        Artifact::new(MediaType::Text, Bytes::from(text.into()))
    }

    /// Rebuild an artifact read back from storage, keeping a known id.
    ///
    /// The caller vouches that `id` is the hash of `media` and `data`; the cache and
    /// the journal use it to avoid hashing large payloads twice.
    pub fn from_parts(id: ArtifactId, media: MediaType, data: Bytes, meta: Meta, provenance: Provenance) -> Self {
        Artifact {
            id,
            media,
            data,
            meta: Arc::new(meta),
            provenance: Arc::new(provenance),
        }
    }

    /// Replace the metadata.
    pub fn with_meta(mut self, meta: Meta) -> Self {
        self.meta = Arc::new(meta);
        self
    }

    /// Replace the provenance.
    pub fn with_provenance(mut self, provenance: Provenance) -> Self {
        self.provenance = Arc::new(provenance);
        self
    }

    /// Change the provenance in place (copy-on-write: other clones keep theirs).
    pub fn provenance_mut(&mut self) -> &mut Provenance {
        Arc::make_mut(&mut self.provenance)
    }

    /// Change the metadata in place (copy-on-write).
    pub fn meta_mut(&mut self) -> &mut Meta {
        Arc::make_mut(&mut self.meta)
    }

    /// The content-hash id.
    pub fn id(&self) -> &ArtifactId {
        &self.id
    }

    /// The media type.
    pub fn media(&self) -> &MediaType {
        &self.media
    }

    /// The payload. Cloning the returned `Bytes` is cheap.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The metadata.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The provenance.
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// The payload as UTF-8 text, when the media is textual and valid UTF-8.
    pub fn text(&self) -> Option<&str> {
        if self.media.kind() == MediaKind::Text {
            std::str::from_utf8(&self.data).ok()
        } else {
            None
        }
    }
}

impl fmt::Debug for Artifact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Artifact")
            .field("id", &self.id)
            .field("media", &self.media)
            .field("len", &self.data.len())
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Artifact {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_depends_on_media_and_bytes() {
        let a = Artifact::new(MediaType::Text, &b"x"[..]);
        let b = Artifact::new(MediaType::Json, &b"x"[..]);
        let c = Artifact::new(MediaType::Text, &b"y"[..]);
        assert_ne!(a.id(), b.id());
        assert_ne!(a.id(), c.id());
        assert_eq!(a.id(), Artifact::new(MediaType::Text, &b"x"[..]).id());
    }

    #[test]
    fn clone_shares_the_payload() {
        let a = Artifact::new(MediaType::Png, vec![1u8; 1024]);
        let b = a.clone();
        assert_eq!(a.data().as_ptr(), b.data().as_ptr());
    }

    #[test]
    fn media_types_round_trip() {
        for s in ["image/png", "image/jpeg", "text/plain", "video/mp4", "x/custom"] {
            let m: MediaType = s.parse().unwrap();
            assert_eq!(m.as_str(), s);
        }
        assert_eq!("image/webp".parse::<MediaType>().unwrap().kind(), MediaKind::Image);
    }
}
