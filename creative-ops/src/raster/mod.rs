//! Decoded images, and the codecs and resizer behind every operation.
//!
//! Pixels are kept as 8-bit RGB, or RGBA when the source has an alpha channel, so
//! an opaque photograph never pays for a fourth channel in the resizer or the
//! encoder. Decoding, resizing and encoding are synchronous and CPU-bound: callers
//! in async code run them on tokio's blocking pool.

use std::io::Cursor;

use creative_core::limits::{MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE};
use fast_image_resize as fir;
use image::{ImageEncoder, RgbImage, RgbaImage};
use serde::{Deserialize, Serialize};

use creative_core::MediaType;

use crate::color::Color;
use crate::error::OpsError;
use crate::geometry::Rect;

mod resizer;
mod view;

pub use view::{Decoded, RasterRef};

/// An output image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// PNG (lossless).
    Png,
    /// JPEG (lossy; no alpha: transparent pixels are flattened on `background`).
    #[serde(alias = "jpg")]
    Jpeg,
    /// WebP: lossless, or lossy when a `quality` is set.
    Webp,
}

impl Format {
    /// The media type.
    pub fn media(self) -> MediaType {
        match self {
            Format::Png => MediaType::Png,
            Format::Jpeg => MediaType::Jpeg,
            Format::Webp => MediaType::Webp,
        }
    }

    /// The format of a media type, when it is one this crate writes.
    pub fn from_media(m: &MediaType) -> Option<Format> {
        match m {
            MediaType::Png => Some(Format::Png),
            MediaType::Jpeg => Some(Format::Jpeg),
            MediaType::Webp => Some(Format::Webp),
            _ => None,
        }
    }

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Jpeg => "jpeg",
            Format::Webp => "webp",
        }
    }

    fn codec(self) -> image::ImageFormat {
        match self {
            Format::Png => image::ImageFormat::Png,
            Format::Jpeg => image::ImageFormat::Jpeg,
            Format::Webp => image::ImageFormat::WebP,
        }
    }
}

/// PNG deflate effort. Deflate runs on zlib-rs (a pure-Rust port of zlib-ng)
/// except `fast`, which uses fdeflate.
///
/// Measured on three photo-like renditions (800x800, 540x960, 960x540) of a
/// noisy 1024x1024 picture: `fast` 7 ms and 2.97 MB, `balanced` 31 ms and
/// 1.60 MB, `high` 106 ms and 1.54 MB (see `benches/renditions.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PngCompression {
    /// Fastest (fdeflate); files much larger on photographs.
    Fast,
    /// Deflate level 3: within a few percent of `high`'s size at a third of its
    /// time. The default.
    #[default]
    Balanced,
    /// Deflate level 6, zlib's own default.
    High,
    /// Deflate level 9: smallest, slowest.
    Best,
}

impl PngCompression {
    fn codec(self) -> image::codecs::png::CompressionType {
        use image::codecs::png::CompressionType as C;
        match self {
            PngCompression::Fast => C::Fast,
            PngCompression::Balanced => C::Level(3),
            PngCompression::High => C::Level(6),
            PngCompression::Best => C::Level(9),
        }
    }
}

/// How an operation encodes its output.
///
/// Spec form (every field optional), as the `output` table of an image step or
/// the settings of `convert`:
///
/// ```toml
/// format = "jpeg"          # png | jpeg | webp; default: the input's format
/// quality = 85             # JPEG (default 90) or lossy WebP (default lossless), 1..=100
/// png_compression = "balanced" # fast | balanced | high | best
/// background = "#ffffff"   # what transparent pixels become in a JPEG
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "a table such as { format = \"jpeg\", quality = 85 }"
)]
pub struct EncodeSettings {
    /// Output format; `None` keeps the input's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// Quality 1..=100: for JPEG (default 90), and for WebP, where setting it
    /// selects lossy encoding (without it WebP is lossless). Refused for PNG.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<u8>,
    /// PNG deflate effort (default `balanced`).
    #[serde(default)]
    pub png_compression: PngCompression,
    /// Colour under transparent pixels when the output has no alpha (JPEG);
    /// default white.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<Color>,
}

impl EncodeSettings {
    /// Check the settings; called when a step is built.
    pub fn validate(&self) -> Result<(), OpsError> {
        if let Some(q) = self.quality {
            if !(1..=100).contains(&q) {
                return Err(OpsError::settings("quality", format!("{q} is outside 1..=100")));
            }
            if self.format == Some(Format::Png) {
                return Err(OpsError::settings(
                    "quality",
                    "PNG is lossless; use `png_compression` instead",
                ));
            }
        }
        Ok(())
    }

    /// The format to write for an input of format `input`.
    pub fn resolve(&self, input: Format) -> Format {
        self.format.unwrap_or(input)
    }
}

/// Resampling filter for resizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    /// Nearest neighbour (pixel art, masks).
    Nearest,
    /// Box (area average).
    Box,
    /// Bilinear.
    Bilinear,
    /// Catmull-Rom bicubic.
    CatmullRom,
    /// Mitchell-Netravali bicubic.
    Mitchell,
    /// Lanczos with three lobes: the sharpest. The default.
    #[default]
    Lanczos3,
}

impl Filter {
    fn alg(self) -> fir::ResizeAlg {
        use fir::FilterType as F;
        match self {
            Filter::Nearest => fir::ResizeAlg::Nearest,
            Filter::Box => fir::ResizeAlg::Convolution(F::Box),
            Filter::Bilinear => fir::ResizeAlg::Convolution(F::Bilinear),
            Filter::CatmullRom => fir::ResizeAlg::Convolution(F::CatmullRom),
            Filter::Mitchell => fir::ResizeAlg::Convolution(F::Mitchell),
            Filter::Lanczos3 => fir::ResizeAlg::Convolution(F::Lanczos3),
        }
    }
}

/// The decoder's limits: no side above [`MAX_IMAGE_SIDE`], no allocation above
/// what [`MAX_IMAGE_PIXELS`] of 16-bit RGBA takes (the widest a PNG decodes to
/// before it is normalised to 8 bits).
pub fn decode_limits() -> image::Limits {
    let mut l = image::Limits::default();
    l.max_image_width = Some(MAX_IMAGE_SIDE);
    l.max_image_height = Some(MAX_IMAGE_SIDE);
    l.max_alloc = Some(MAX_IMAGE_PIXELS * 8);
    l
}

/// The width and height an image's header declares, read without decoding a
/// pixel. The error is [`OpsError::Decode`] of `what`.
pub fn declared_dimensions(bytes: &[u8], what: &str) -> Result<(u32, u32), OpsError> {
    let err = |e: image::ImageError| OpsError::Decode {
        what: what.to_string(),
        message: e.to_string(),
    };
    image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| err(e.into()))?
        .into_dimensions()
        .map_err(err)
}

/// `Ok` when an image of `w`x`h` may be decoded or produced: at most
/// [`MAX_IMAGE_SIDE`] a side and [`MAX_IMAGE_PIXELS`] in all.
///
/// ```
/// use creative_ops::raster::{check_image_size, ImageSizeError};
/// assert!(check_image_size(1920, 1080).is_ok());
/// assert!(matches!(check_image_size(0, 5), Err(ImageSizeError::Empty { .. })));
/// let e = check_image_size(50_000, 50_000).unwrap_err();
/// assert!(e.to_string().starts_with("50000x50000 is too large"), "{e}");
/// ```
pub fn check_image_size(w: u32, h: u32) -> Result<(), ImageSizeError> {
    let (width, height) = (w, h);
    if w == 0 || h == 0 {
        return Err(ImageSizeError::Empty { width, height });
    }
    if w > MAX_IMAGE_SIDE || h > MAX_IMAGE_SIDE {
        return Err(ImageSizeError::SideTooLong { width, height });
    }
    let pixels = u64::from(w) * u64::from(h);
    if pixels > MAX_IMAGE_PIXELS {
        return Err(ImageSizeError::TooManyPixels { width, height, pixels });
    }
    Ok(())
}

/// An image size refused by [`check_image_size`]; the message names the size
/// and the limit it breaks (the engine's own limits, the same words).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImageSizeError {
    /// A side is zero.
    #[error("{width}x{height} has no pixels")]
    Empty {
        /// The width asked for.
        width: u32,
        /// The height asked for.
        height: u32,
    },
    /// A side is longer than [`MAX_IMAGE_SIDE`].
    #[error("{width}x{height} is too large: each side may be at most {MAX_IMAGE_SIDE} pixels")]
    SideTooLong {
        /// The width asked for.
        width: u32,
        /// The height asked for.
        height: u32,
    },
    /// More than [`MAX_IMAGE_PIXELS`] in all.
    #[error("{width}x{height} is too large: {pixels} pixels, at most {MAX_IMAGE_PIXELS} allowed")]
    TooManyPixels {
        /// The width asked for.
        width: u32,
        /// The height asked for.
        height: u32,
        /// Their product.
        pixels: u64,
    },
}

/// A decoded 8-bit image: RGB, or RGBA when the source had alpha.
#[derive(Debug, Clone, PartialEq)]
pub enum Raster {
    /// Opaque pixels.
    Rgb(RgbImage),
    /// Pixels with alpha (straight, not premultiplied).
    Rgba(RgbaImage),
}

impl Raster {
    /// Decode PNG, JPEG or WebP bytes; the format is sniffed from the bytes.
    /// `what` names the input in errors.
    ///
    /// A decompression-bomb guard: an image whose header declares more than
    /// [`MAX_IMAGE_SIDE`] pixels a side or [`MAX_IMAGE_PIXELS`] in all is refused
    /// before any pixel is allocated (a 74-byte PNG can claim 50000x50000, 10 GB
    /// of RGBA), and the decoder itself runs under the same limits.
    pub fn decode(bytes: &[u8], what: &str) -> Result<(Raster, Format), OpsError> {
        let err = |message: String| OpsError::Decode {
            what: what.to_string(),
            message,
        };
        let (w, h) = declared_dimensions(bytes, what)?;
        check_image_size(w, h).map_err(|m| err(format!("the image declares {m} (decompression-bomb guard)")))?;
        let mut reader = image::ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| err(e.to_string()))?;
        reader.limits(decode_limits());
        let format = match reader.format() {
            Some(image::ImageFormat::Png) => Format::Png,
            Some(image::ImageFormat::Jpeg) => Format::Jpeg,
            Some(image::ImageFormat::WebP) => Format::Webp,
            Some(other) => return Err(err(format!("{other:?} is not a supported input format"))),
            None => return Err(err("not a PNG, JPEG or WebP image".into())),
        };
        let img = reader.decode().map_err(|e| err(e.to_string()))?;
        Ok((Raster::from_dynamic(img), format))
    }

    /// Decode an artifact's image, or take the pixels kept beside it (see
    /// [`creative_core::pixels`]), as a raster of its own: a copy of kept
    /// pixels. An operation that only reads the image takes
    /// [`Decoded::of_artifact`] instead and borrows them.
    pub fn of_artifact(a: &creative_core::artifact::Artifact, what: &str) -> Result<(Raster, Format), OpsError> {
        Decoded::of_artifact(a, what).map(|(d, f)| (d.into_raster(), f))
    }

    /// The pixels to keep beside the artifact this raster is encoded into.
    pub fn into_pixels(self) -> creative_core::pixels::Pixels {
        let (w, h) = (self.width(), self.height());
        let (alpha, data) = match self {
            Raster::Rgb(i) => (false, i.into_raw()),
            Raster::Rgba(i) => (true, i.into_raw()),
        };
        creative_core::pixels::Pixels::new(w, h, alpha, data).expect("an image buffer holds width x height pixels")
    }

    /// A raster of kept pixels (a copy: the steps change their raster in place).
    pub fn from_pixels(p: &creative_core::pixels::Pixels) -> Raster {
        RasterRef::from(p).to_raster()
    }

    /// The pixels as a borrowed view.
    pub fn view(&self) -> RasterRef<'_> {
        RasterRef::from(self)
    }

    /// Normalise any decoded image to 8-bit RGB or RGBA.
    pub fn from_dynamic(img: image::DynamicImage) -> Raster {
        use image::DynamicImage as D;
        match img {
            D::ImageRgb8(i) => Raster::Rgb(i),
            D::ImageRgba8(i) => Raster::Rgba(i),
            other if other.color().has_alpha() => Raster::Rgba(other.to_rgba8()),
            other => Raster::Rgb(other.to_rgb8()),
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        match self {
            Raster::Rgb(i) => i.width(),
            Raster::Rgba(i) => i.width(),
        }
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        match self {
            Raster::Rgb(i) => i.height(),
            Raster::Rgba(i) => i.height(),
        }
    }

    /// Whether the pixels carry alpha.
    pub fn has_alpha(&self) -> bool {
        matches!(self, Raster::Rgba(_))
    }

    fn channels(&self) -> usize {
        if self.has_alpha() {
            4
        } else {
            3
        }
    }

    fn raw(&self) -> &[u8] {
        match self {
            Raster::Rgb(i) => i.as_raw(),
            Raster::Rgba(i) => i.as_raw(),
        }
    }

    fn from_raw(w: u32, h: u32, alpha: bool, data: Vec<u8>) -> Result<Raster, OpsError> {
        let bad = || OpsError::Worker(format!("pixel buffer does not match {w}x{h}"));
        Ok(if alpha {
            Raster::Rgba(RgbaImage::from_raw(w, h, data).ok_or_else(bad)?)
        } else {
            Raster::Rgb(RgbImage::from_raw(w, h, data).ok_or_else(bad)?)
        })
    }

    /// The RGBA pixels (converted when opaque).
    pub fn to_rgba(&self) -> RgbaImage {
        match self {
            Raster::Rgb(i) => image::DynamicImage::ImageRgb8(i.clone()).to_rgba8(),
            Raster::Rgba(i) => i.clone(),
        }
    }

    /// Drop alpha by compositing on `bg`.
    pub fn flatten(self, bg: Color) -> RgbImage {
        match self {
            Raster::Rgb(i) => i,
            Raster::Rgba(i) => {
                let (w, h) = i.dimensions();
                let mut out = Vec::with_capacity(w as usize * h as usize * 3);
                for p in i.as_raw().chunks_exact(4) {
                    let a = u32::from(p[3]);
                    for (c, b) in p[..3].iter().zip([bg.r, bg.g, bg.b]) {
                        out.push(((u32::from(*c) * a + u32::from(b) * (255 - a) + 127) / 255) as u8);
                    }
                }
                RgbImage::from_raw(w, h, out).unwrap_or_else(|| RgbImage::new(w, h))
            }
        }
    }

    /// Copy out a rectangle, which must lie inside the image.
    pub fn crop(&self, r: Rect) -> Result<Raster, OpsError> {
        self.view().crop(r)
    }

    /// Resize the `src` rectangle of the image (the whole image when `None`) to
    /// `w`x`h`, with the SIMD resizer. Alpha is premultiplied while filtering so
    /// transparent pixels do not bleed their colour.
    pub fn resize(&self, src: Option<Rect>, w: u32, h: u32, filter: Filter) -> Result<Raster, OpsError> {
        self.view().resize(src, w, h, filter)
    }

    /// Luma (Rec. 601 weights, integer), one byte a pixel, row-major.
    pub fn luma(&self) -> Vec<u8> {
        self.view().luma()
    }

    /// Pixels as `[r, g, b, a]` (a = 255 when opaque).
    pub fn pixels(&self) -> impl Iterator<Item = [u8; 4]> + '_ {
        let ch = self.channels();
        self.raw()
            .chunks_exact(ch)
            .map(move |p| [p[0], p[1], p[2], if ch == 4 { p[3] } else { 255 }])
    }

    /// Encode as `format`.
    pub fn encode(&self, format: Format, settings: &EncodeSettings) -> Result<Vec<u8>, OpsError> {
        let err = |e: image::ImageError| OpsError::Encode {
            format: format.as_str(),
            message: e.to_string(),
        };
        let mut out = Vec::new();
        let (w, h) = (self.width(), self.height());
        match format {
            Format::Png => {
                let enc = image::codecs::png::PngEncoder::new_with_quality(
                    &mut out,
                    settings.png_compression.codec(),
                    image::codecs::png::FilterType::Adaptive,
                );
                enc.write_image(self.raw(), w, h, self.color_type()).map_err(err)?;
            }
            Format::Jpeg => {
                // jpeg-encoder (SIMD where the CPU has AVX2) is about three times
                // faster than the `image` crate's own JPEG encoder, with smaller files.
                let (w16, h16) = match (u16::try_from(w), u16::try_from(h)) {
                    (Ok(a), Ok(b)) => (a, b),
                    _ => {
                        return Err(OpsError::Encode {
                            format: "jpeg",
                            message: format!("{w}x{h} is larger than JPEG's 65535x65535"),
                        })
                    }
                };
                let q = settings.quality.unwrap_or(90);
                let flat;
                let rgb = match self {
                    Raster::Rgb(i) => i.as_raw(),
                    Raster::Rgba(_) => {
                        flat = self.clone().flatten(settings.background.unwrap_or(Color::WHITE));
                        flat.as_raw()
                    }
                };
                jpeg_encoder::Encoder::new(&mut out, q)
                    .encode(rgb, w16, h16, jpeg_encoder::ColorType::Rgb)
                    .map_err(|e| OpsError::Encode {
                        format: "jpeg",
                        message: e.to_string(),
                    })?;
            }
            Format::Webp => match settings.quality {
                Some(q) => out = crate::webp::encode_lossy(self.raw(), w, h, self.channels(), q)?,
                None => {
                    let enc = image::codecs::webp::WebPEncoder::new_lossless(&mut out);
                    enc.write_image(self.raw(), w, h, self.color_type()).map_err(err)?;
                }
            },
        }
        debug_assert!(image::guess_format(&out).ok() == Some(format.codec()));
        Ok(out)
    }

    fn color_type(&self) -> image::ExtendedColorType {
        if self.has_alpha() {
            image::ExtendedColorType::Rgba8
        } else {
            image::ExtendedColorType::Rgb8
        }
    }

    /// Composite `top` (straight alpha) over this image at (`x`, `y`), with its
    /// alpha scaled by `opacity` (0..=1). Parts outside the image are clipped.
    pub fn blend(&mut self, top: &RgbaImage, x: i64, y: i64, opacity: f32) {
        let opacity = (opacity.clamp(0.0, 1.0) * 255.0).round() as u32;
        let (w, h) = (i64::from(self.width()), i64::from(self.height()));
        for (tx, ty, p) in top.enumerate_pixels() {
            let (px, py) = (x + i64::from(tx), y + i64::from(ty));
            if px < 0 || py < 0 || px >= w || py >= h {
                continue;
            }
            let a = u32::from(p[3]) * opacity / 255;
            if a == 0 {
                continue;
            }
            self.blend_pixel(px as u32, py as u32, [p[0], p[1], p[2]], a as u8);
        }
    }

    /// Composite one colour with coverage `a` (0..=255) over pixel (`x`, `y`).
    pub fn blend_pixel(&mut self, x: u32, y: u32, c: [u8; 3], a: u8) {
        let a = u32::from(a);
        let mix = |dst: u8, src: u8| ((u32::from(src) * a + u32::from(dst) * (255 - a) + 127) / 255) as u8;
        match self {
            Raster::Rgb(i) => {
                let d = i.get_pixel_mut(x, y);
                for k in 0..3 {
                    d[k] = mix(d[k], c[k]);
                }
            }
            Raster::Rgba(i) => {
                let d = i.get_pixel_mut(x, y);
                let da = u32::from(d[3]);
                // Porter-Duff "over" with straight alpha.
                let out_a = a + da * (255 - a) / 255;
                if out_a == 0 {
                    return;
                }
                for k in 0..3 {
                    let v = (u32::from(c[k]) * a + u32::from(d[k]) * da * (255 - a) / 255) / out_a;
                    d[k] = v.min(255) as u8;
                }
                d[3] = out_a.min(255) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::resizer::{resizers_kept, trimmed, RESIZER_SCRATCH_KEPT};
    use super::*;

    fn noisy(w: u32, h: u32, alpha: bool) -> Raster {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 56) as u8
        };
        if alpha {
            Raster::Rgba(RgbaImage::from_fn(w, h, |_, _| {
                image::Rgba([next(), next(), next(), next()])
            }))
        } else {
            Raster::Rgb(RgbImage::from_fn(w, h, |_, _| image::Rgb([next(), next(), next()])))
        }
    }

    #[test]
    fn a_reused_resizer_gives_the_pixels_of_a_fresh_one() {
        for alpha in [false, true] {
            let img = noisy(300, 200, alpha);
            let first = img.resize(None, 150, 100, Filter::Lanczos3).unwrap();
            // A larger job in between leaves larger scratch behind.
            noisy(900, 700, alpha).resize(None, 450, 600, Filter::Lanczos3).unwrap();
            let again = img.resize(None, 150, 100, Filter::Lanczos3).unwrap();
            assert_eq!(first, again, "alpha {alpha}");
        }
    }

    /// A resizer after resizing `src` to `w`x`h`.
    fn used(src: &Raster, w: u32, h: u32) -> fir::Resizer {
        let pt = if src.has_alpha() {
            fir::PixelType::U8x4
        } else {
            fir::PixelType::U8x3
        };
        let view = fir::images::ImageRef::new(src.width(), src.height(), src.raw(), pt).unwrap();
        let mut dst = fir::images::Image::new(w, h, pt);
        let mut r = fir::Resizer::new();
        r.resize(&view, &mut dst, &fir::ResizeOptions::new()).unwrap();
        r
    }

    #[test]
    fn an_idle_resizer_keeps_a_1024_px_scratch_but_not_a_larger_one() {
        // 2048 px RGBA: a 16 MB premultiplied copy, past the scratch kept.
        let big = used(&noisy(2048, 2048, true), 1000, 1000);
        assert!(big.size_of_internal_buffers() > RESIZER_SCRATCH_KEPT);
        assert_eq!(trimmed(big).size_of_internal_buffers(), 0);
        let hero = trimmed(used(&noisy(1024, 1024, false), 512, 512));
        assert!(hero.size_of_internal_buffers() > 1 << 20);
        assert!(resizers_kept() >= 2);
    }
}
