//! Deterministic image and text operations and quality gates for `creative`.
//!
//! **Steps** (implement [`creative_core::Step`]; local, deterministic: the same
//! input gives the same bytes): `resize` (fit, fill, exact; SIMD Lanczos via
//! fast_image_resize), `crop`, `reframe` and `renditions` (cut to an aspect ratio
//! where an attention measure, entropy or edges, keeps the subject in frame),
//! `pad`, `convert`, `overlay` (a caption from a template, wrapped and shrunk to
//! fit a box, drawn with a bundled font), `watermark` (a logo from a file or an
//! input), `metadata` (write provenance into the file, or strip metadata). Decode,
//! pixel work and encode run on tokio's blocking pool, never on the async threads.
//! Every output records its step, its parents, the settings and resolved values
//! (such as the crop an attention reframe chose) in provenance, and its size and
//! `extra.rendition` in [`creative_core::Meta`].
//!
//! **Gates** (implement [`creative_core::QualityGate`]; scores on 0..=1):
//! `format`, `sharpness` (variance of the Laplacian), `exposure` (clipping at
//! both ends, RMS contrast), `palette` (dominant colours against a brand palette
//! by CIEDE2000), `dedupe` (perceptual hashes, shared across a run's jobs),
//! `consistency` (against a reference image), `text` (lengths, Unicode-aware
//! terms, regular expressions, JSON Schema), `judge` (a model scores against a
//! rubric; a malformed answer is an error, never a pass), `composite` (all, any,
//! weighted).
//!
//! **Audio and video** ([`media`], through ffmpeg): steps `probe`,
//! `loudness_normalize`, `audio_transcode`, `audio_trim`, `audio_concat`,
//! `video_transcode`, `video_renditions`, `video_trim`, `poster`, `captions`,
//! `subtitles`, `mux`; gates `duration`, `loudness`, `silence`, `clipping`,
//! `resolution`, `frame_rate`, `black_frames`, `frozen_frames`, `frames` (image
//! gates on sampled frames).
//!
//! [`register`] adds every kind to a spec registry; each settings struct's docs
//! show its spec form.
//!
//! **Formats.** Input: PNG, JPEG, WebP. Output: PNG (deflate on zlib-rs, or
//! fdeflate), JPEG (jpeg-encoder, quality 1..=100) and WebP: lossless by default
//! (the pure-Rust `image-webp`), lossy when a `quality` (1..=100) is given
//! (libwebp 1.6, vendored and built by `libwebp-sys`: there is no pure-Rust
//! lossy WebP encoder under a permissive licence).
//!
//! ```
//! use creative_ops::{steps::{ResizeSettings, ResizeStep}, EncodeSettings, Format, Raster};
//! use creative_ops::image::{Rgb, RgbImage};
//! let img = Raster::Rgb(RgbImage::from_pixel(400, 200, Rgb([200, 30, 30])));
//! let settings: ResizeSettings = serde_json::from_value(serde_json::json!({ "width": 100 })).unwrap();
//! let out = ResizeStep::new(settings).unwrap().apply(&img).unwrap();
//! assert_eq!((out.raster.width(), out.raster.height()), (100, 50));
//! let png = out.raster.encode(Format::Png, &EncodeSettings::default()).unwrap();
//! assert!(png.starts_with(b"\x89PNG"));
//! ```
//!
//! **Licences of bundled and linked work.** The caption font is DejaVu Sans
//! (Bitstream Vera licence, `assets/DejaVuSans-LICENSE.txt`). JPEG encoding
//! uses jpeg-encoder, whose DCT is derived from libjpeg: this software is based
//! in part on the work of the Independent JPEG Group.
#![warn(missing_docs)]
// Denied, not forbidden: the libwebp call in `webp` is the one allowed exception.
#![deny(unsafe_code)]

pub mod attention;
pub mod caption;
pub mod color;
pub mod error;
pub mod gates;
pub mod geometry;
pub mod media;
pub mod metadata;
pub mod phash;
pub mod raster;
mod registry;
pub mod steps;
mod webp;

/// The `image` crate this one decodes and encodes with (PNG, JPEG, WebP only),
/// re-exported so hosts can build a [`Raster`] without a version mismatch.
pub use image;

pub use attention::Attention;
pub use color::{Color, Lab};
pub use error::OpsError;
pub use geometry::{Anchor, Aspect, Rect};
pub use raster::{Decoded, EncodeSettings, Filter, Format, PngCompression, Raster, RasterRef};
pub use registry::{register, GATE_KINDS, STEP_KINDS};
pub use steps::Produced;
