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
#[non_exhaustive]
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

    /// The usual file extension, without the dot: from a table of registered
    /// and common media types; `bin` for any other (never a name made up from
    /// the type, which no tool would open).
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
            MediaType::Other(s) => extension_of(s),
        }
    }
}

/// The file extension of a media type outside the built-in variants.
fn extension_of(media: &str) -> &'static str {
    let essence = media.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "image/gif" => "gif",
        "image/bmp" | "image/x-bmp" | "image/x-ms-bmp" => "bmp",
        "image/tiff" | "image/tiff-fx" => "tif",
        "image/x-exr" | "image/aces" => "exr",
        "image/vnd.radiance" | "image/x-hdr" => "hdr",
        "image/x-portable-pixmap" => "ppm",
        "image/x-portable-graymap" => "pgm",
        "image/x-portable-bitmap" => "pbm",
        "image/x-portable-anymap" => "pnm",
        "image/x-portable-floatmap" => "pfm",
        "image/avif" => "avif",
        "image/heic" | "image/heif" => "heic",
        "image/jxl" => "jxl",
        "image/svg+xml" => "svg",
        "image/x-tga" | "image/x-targa" => "tga",
        "image/vnd.adobe.photoshop" => "psd",
        "image/x-icon" | "image/vnd.microsoft.icon" => "ico",
        "image/vnd.ms-dds" | "image/x-dds" => "dds",
        "image/ktx2" => "ktx2",
        "audio/ogg" => "ogg",
        "audio/flac" | "audio/x-flac" => "flac",
        "audio/aac" => "aac",
        "audio/opus" => "opus",
        "audio/mp4" | "audio/x-m4a" => "m4a",
        "audio/aiff" | "audio/x-aiff" => "aiff",
        "audio/webm" => "weba",
        "video/webm" => "webm",
        "video/quicktime" => "mov",
        "video/x-matroska" => "mkv",
        "video/mpeg" => "mpg",
        "video/ogg" => "ogv",
        "model/gltf+json" => "gltf",
        "model/obj" => "obj",
        "model/stl" => "stl",
        "model/vnd.usdz+zip" => "usdz",
        "model/vnd.usda" => "usda",
        "model/x-fbx" => "fbx",
        "text/html" => "html",
        "text/markdown" => "md",
        "text/csv" => "csv",
        "text/vtt" => "vtt",
        "application/x-subrip" | "text/srt" => "srt",
        "text/css" => "css",
        "text/xml" | "application/xml" => "xml",
        "text/yaml" | "application/yaml" | "application/x-yaml" => "yaml",
        "application/pdf" => "pdf",
        "application/zip" => "zip",
        "application/x-tar" => "tar",
        "application/gzip" => "gz",
        _ => "bin",
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
    /// Decoded pixels, shared by every clone (see [`crate::pixels`]).
    pixels: Arc<crate::pixels::Memo>,
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
            pixels: Arc::default(),
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
            pixels: Arc::default(),
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

    /// The decoded pixels kept beside this image, if a step drew or decoded
    /// them and the process's budget allowed keeping them.
    pub fn pixels(&self) -> Option<Arc<crate::pixels::Pixels>> {
        self.pixels.get()
    }

    /// Keep `pixels`, the decoded form of this image's bytes, beside it for the
    /// steps and gates after this one (when the budget allows). The caller
    /// vouches that they are what decoding [`data`](Self::data) gives.
    pub fn with_pixels(self, pixels: crate::pixels::Pixels) -> Self {
        self.pixels.offer(pixels);
        self
    }

    /// The decoded pixels: the kept ones, else `decode`'s, kept for the next
    /// caller. Concurrent callers on clones of one artifact wait for one decode
    /// instead of each decoding the same bytes.
    pub fn pixels_or_decode<E>(
        &self,
        decode: impl FnOnce(&Bytes) -> Result<crate::pixels::Pixels, E>,
    ) -> Result<Arc<crate::pixels::Pixels>, E> {
        self.pixels.get_or_decode(|| decode(&self.data))
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

/// What a probe of a payload's bytes found: facts read from the bytes, not from
/// what was asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Probe {
    /// Pixel width read from an image header.
    pub width: Option<u32>,
    /// Pixel height read from an image header.
    pub height: Option<u32>,
    /// Whether the bytes were checked against the media type at all: false for
    /// text, JSON and media types no probe knows (raw PCM, SVG, custom types).
    pub checked: bool,
}

/// Why a payload is not the media it claims to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// No bytes at all for a media type that has content.
    #[error("empty payload for {media}")]
    Empty {
        /// The claimed media type.
        media: String,
    },
    /// The bytes are not of the claimed type (they may be of another).
    #[error("the bytes are not {media}: {found}")]
    Mismatch {
        /// The claimed media type.
        media: String,
        /// What the bytes look like instead.
        found: String,
    },
    /// An image header that names a size of zero or beyond the engine's limits.
    #[error("the {media} header claims {width}x{height} px, outside 1..={max_side} a side and {max_pixels} px in all")]
    Dimensions {
        /// The claimed media type.
        media: String,
        /// Width in the header.
        width: u64,
        /// Height in the header.
        height: u64,
        /// Largest side allowed.
        max_side: u32,
        /// Most pixels allowed.
        max_pixels: u64,
    },
}

/// Check that `data` is the media `media` claims, and read what its header says.
///
/// Images (`image/png`, `jpeg`, `webp`, `gif`, `bmp`, `tiff`, `avif`, `heic`):
/// the header is read (never the pixels), must be of the claimed format and name
/// a size within [`crate::limits::MAX_IMAGE_SIDE`] and
/// [`crate::limits::MAX_IMAGE_PIXELS`]; the size is returned. Audio and video:
/// the container's magic bytes must match (WAV `RIFF`/`WAVE`, MP3 `ID3` or a
/// frame sync, MP4/MOV/M4A `ftyp`, WebM/Matroska EBML, Ogg `OggS`, FLAC
/// `fLaC`). Text and unknown types are not checked (`Probe::checked` is
/// false), except that an image, audio or video payload may never be empty.
///
/// ```
/// use creative_core::artifact::{probe, MediaType};
/// // 4 bytes of base64 "string" are no PNG.
/// assert!(probe(&MediaType::Png, b"stri").is_err());
/// assert!(probe(&MediaType::Text, b"stri").is_ok());
/// ```
pub fn probe(media: &MediaType, data: &[u8]) -> Result<Probe, ProbeError> {
    let kind = media.kind();
    if matches!(kind, MediaKind::Image | MediaKind::Audio | MediaKind::Video) && data.is_empty() {
        return Err(ProbeError::Empty {
            media: media.to_string(),
        });
    }
    match kind {
        MediaKind::Image => probe_image(media, data),
        MediaKind::Audio | MediaKind::Video => probe_container(media, data),
        _ => Ok(Probe::default()),
    }
}

/// The family of image formats a media type claims, as `imagesize` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImageFamily {
    Png,
    Jpeg,
    Webp,
    Gif,
    Bmp,
    Tiff,
    Heif,
}

fn image_family(media: &MediaType) -> Option<ImageFamily> {
    Some(match media.as_str() {
        "image/png" | "image/apng" => ImageFamily::Png,
        "image/jpeg" | "image/jpg" | "image/pjpeg" => ImageFamily::Jpeg,
        "image/webp" => ImageFamily::Webp,
        "image/gif" => ImageFamily::Gif,
        "image/bmp" | "image/x-bmp" | "image/x-ms-bmp" => ImageFamily::Bmp,
        "image/tiff" => ImageFamily::Tiff,
        "image/avif" | "image/heic" | "image/heif" | "image/avif-sequence" | "image/heic-sequence" => ImageFamily::Heif,
        _ => return None,
    })
}

fn found_family(t: imagesize::ImageType) -> Option<ImageFamily> {
    use imagesize::ImageType as T;
    Some(match t {
        T::Png => ImageFamily::Png,
        T::Jpeg => ImageFamily::Jpeg,
        T::Webp => ImageFamily::Webp,
        T::Gif => ImageFamily::Gif,
        T::Bmp => ImageFamily::Bmp,
        T::Tiff => ImageFamily::Tiff,
        T::Heif(_) => ImageFamily::Heif,
        _ => return None,
    })
}

/// What the first bytes of a payload look like, for error messages.
fn describe(data: &[u8]) -> String {
    let head = &data[..data.len().min(8)];
    let hex: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
    format!("{} bytes starting {}", data.len(), hex.join(" "))
}

/// Run a header parser, turning a panic in it into `None`: bad bytes must never
/// take the engine down.
fn guarded<T>(f: impl FnOnce() -> Option<T> + std::panic::UnwindSafe) -> Option<T> {
    std::panic::catch_unwind(f).ok().flatten()
}

fn probe_image(media: &MediaType, data: &[u8]) -> Result<Probe, ProbeError> {
    let Some(claimed) = image_family(media) else {
        return Ok(Probe::default());
    };
    let mismatch = |found: String| ProbeError::Mismatch {
        media: media.to_string(),
        found,
    };
    let found = guarded(|| imagesize::image_type(data).ok());
    match found {
        Some(t) if found_family(t) == Some(claimed) => {}
        Some(t) => return Err(mismatch(format!("a {t:?} image header ({})", describe(data)))),
        None => return Err(mismatch(format!("no image header ({})", describe(data)))),
    }
    let Some(size) = guarded(|| imagesize::blob_size(data).ok()) else {
        return Err(mismatch(format!("a truncated or corrupt header ({})", describe(data))));
    };
    let (w, h) = (size.width as u64, size.height as u64);
    let max_side = crate::limits::MAX_IMAGE_SIDE;
    let max_pixels = crate::limits::MAX_IMAGE_PIXELS;
    if w == 0 || h == 0 || w > u64::from(max_side) || h > u64::from(max_side) || w.saturating_mul(h) > max_pixels {
        return Err(ProbeError::Dimensions {
            media: media.to_string(),
            width: w,
            height: h,
            max_side,
            max_pixels,
        });
    }
    Ok(Probe {
        // Both fit: they are at most MAX_IMAGE_SIDE.
        width: u32::try_from(w).ok(),
        height: u32::try_from(h).ok(),
        checked: true,
    })
}

/// A container a media type claims, recognised by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Wav,
    Mp3,
    /// ISO base media (MP4, MOV, M4A, 3GP).
    Iso,
    /// EBML (WebM, Matroska).
    Ebml,
    Ogg,
    Flac,
}

fn container_for(media: &MediaType) -> Option<Container> {
    Some(match media.as_str() {
        "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => Container::Wav,
        "audio/mpeg" | "audio/mp3" | "audio/mpeg3" => Container::Mp3,
        "video/mp4" | "video/quicktime" | "video/3gpp" | "audio/mp4" | "audio/m4a" | "audio/x-m4a" => Container::Iso,
        "video/webm" | "audio/webm" | "video/x-matroska" | "audio/x-matroska" => Container::Ebml,
        "audio/ogg" | "video/ogg" | "audio/opus" | "audio/vorbis" => Container::Ogg,
        "audio/flac" | "audio/x-flac" => Container::Flac,
        _ => return None,
    })
}

fn sniff_container(d: &[u8]) -> Option<Container> {
    if d.len() >= 12 && &d[..4] == b"RIFF" && &d[8..12] == b"WAVE" {
        Some(Container::Wav)
    } else if d.starts_with(b"ID3") || (d.len() >= 2 && d[0] == 0xFF && d[1] & 0xE0 == 0xE0 && d[1] & 0x06 != 0) {
        // An ID3 tag, or an MPEG audio frame sync with a layer set (ADTS AAC has layer 0).
        Some(Container::Mp3)
    } else if d.len() >= 8 && matches!(&d[4..8], b"ftyp" | b"moov" | b"mdat" | b"wide" | b"free" | b"skip") {
        Some(Container::Iso)
    } else if d.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        Some(Container::Ebml)
    } else if d.starts_with(b"OggS") {
        Some(Container::Ogg)
    } else if d.starts_with(b"fLaC") {
        Some(Container::Flac)
    } else {
        None
    }
}

fn probe_container(media: &MediaType, data: &[u8]) -> Result<Probe, ProbeError> {
    let Some(claimed) = container_for(media) else {
        return Ok(Probe::default());
    };
    match sniff_container(data) {
        Some(c) if c == claimed => Ok(Probe {
            checked: true,
            ..Probe::default()
        }),
        Some(c) => Err(ProbeError::Mismatch {
            media: media.to_string(),
            found: format!("a {c:?} container ({})", describe(data)),
        }),
        None => Err(ProbeError::Mismatch {
            media: media.to_string(),
            found: format!("no {claimed:?} container ({})", describe(data)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_media_types_get_a_real_extension_or_bin() {
        let ext = |m: &str| m.parse::<MediaType>().unwrap().extension().to_string();
        assert_eq!(ext("image/x-portable-pixmap"), "ppm");
        assert_eq!(ext("image/x-exr"), "exr");
        assert_eq!(ext("image/TIFF"), "tif");
        assert_eq!(ext("model/gltf+json; charset=utf-8"), "gltf");
        assert_eq!(ext("image/x-made-up"), "bin");
        assert_eq!(ext("application/vnd.studio.thing"), "bin");
        assert_eq!(ext("image/png"), "png");
    }

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

    fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut v = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
        v.extend_from_slice(&w.to_be_bytes());
        v.extend_from_slice(&h.to_be_bytes());
        v.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
        v
    }

    #[test]
    fn a_png_header_gives_its_size() {
        let p = probe(&MediaType::Png, &png_header(256, 128)).unwrap();
        assert_eq!((p.width, p.height, p.checked), (Some(256), Some(128), true));
    }

    #[test]
    fn bytes_that_are_not_the_claimed_image_are_refused() {
        for bad in [&b"stri"[..], b"", b"<html>oops</html>", b"\x89PNG"] {
            assert!(probe(&MediaType::Png, bad).is_err(), "{bad:?}");
        }
        // A PNG labelled JPEG is refused too, naming what it is.
        let e = probe(&MediaType::Jpeg, &png_header(4, 4)).unwrap_err();
        assert!(e.to_string().contains("Png"), "{e}");
    }

    #[test]
    fn image_headers_beyond_the_limits_or_of_zero_size_are_refused() {
        assert!(matches!(
            probe(&MediaType::Png, &png_header(50_000, 50_000)),
            Err(ProbeError::Dimensions { .. })
        ));
        assert!(matches!(
            probe(&MediaType::Png, &png_header(0, 10)),
            Err(ProbeError::Dimensions { .. })
        ));
    }

    #[test]
    fn audio_and_video_containers_must_match_their_magic_bytes() {
        let wav = b"RIFF\x24\x00\x00\x00WAVEfmt ".to_vec();
        assert!(probe(&MediaType::Wav, &wav).unwrap().checked);
        assert!(probe(&MediaType::Mp3, b"ID3\x04\x00\x00\x00\x00").is_ok());
        assert!(probe(&MediaType::Mp3, &[0xFF, 0xFB, 0x90, 0x64]).is_ok());
        assert!(probe(&MediaType::Mp4, b"\x00\x00\x00\x18ftypisom").is_ok());
        let webm: MediaType = "video/webm".parse().unwrap();
        assert!(probe(&webm, &[0x1A, 0x45, 0xDF, 0xA3, 0x01]).is_ok());
        let ogg: MediaType = "audio/ogg".parse().unwrap();
        assert!(probe(&ogg, b"OggS\x00\x02").is_ok());
        assert!(probe(&MediaType::Mp3, &wav).is_err(), "a WAV is no MP3");
        assert!(probe(&MediaType::Mp4, b"{\"error\":\"x\"}").is_err());
        assert!(probe(&MediaType::Wav, b"").is_err());
    }

    #[test]
    fn text_and_unknown_types_are_not_checked() {
        assert_eq!(probe(&MediaType::Text, b"").unwrap(), Probe::default());
        let pcm: MediaType = "audio/pcm".parse().unwrap();
        assert!(!probe(&pcm, b"\x01\x02").unwrap().checked);
    }
}
