//! Decoded images borrowed rather than owned: a [`Raster`]'s pixels or those
//! kept beside an artifact, and [`Decoded`], what an operation receives.

use fast_image_resize as fir;
use image::{RgbImage, RgbaImage};

use super::resizer::with_resizer;
use super::{check_image_size, Filter, Format, Raster};
use crate::error::OpsError;
use crate::geometry::Rect;

/// A decoded 8-bit image borrowed, not owned: a [`Raster`]'s pixels or those
/// kept beside an artifact (see [`creative_core::pixels`]).
///
/// The operations that only read an image (resize, crop, the attention
/// thumbnail) work on a view, so that the three renditions of one memoised hero
/// read its pixels in place instead of each copying the whole buffer first.
///
/// ```
/// use creative_ops::raster::{Filter, Raster, RasterRef};
/// use image::{Rgb, RgbImage};
///
/// let img = Raster::Rgb(RgbImage::from_pixel(40, 20, Rgb([10, 20, 30])));
/// let view = RasterRef::new(40, 20, false, img.view().data()).unwrap();
/// assert_eq!(view.resize(None, 20, 10, Filter::Lanczos3).unwrap(), img.resize(None, 20, 10, Filter::Lanczos3).unwrap());
/// assert!(RasterRef::new(40, 21, false, img.view().data()).is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RasterRef<'a> {
    width: u32,
    height: u32,
    alpha: bool,
    data: &'a [u8],
}

impl<'a> RasterRef<'a> {
    /// A view of `width` x `height` pixels, 3 bytes each (4 with `alpha`), rows
    /// top to bottom. `None` when `data` is not exactly that long.
    pub fn new(width: u32, height: u32, alpha: bool, data: &'a [u8]) -> Option<RasterRef<'a>> {
        let channels: u64 = if alpha { 4 } else { 3 };
        let want = u64::from(width) * u64::from(height) * channels;
        (want == data.len() as u64).then_some(RasterRef {
            width,
            height,
            alpha,
            data,
        })
    }

    /// Width in pixels.
    pub fn width(self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(self) -> u32 {
        self.height
    }

    /// Whether the pixels carry alpha.
    pub fn has_alpha(self) -> bool {
        self.alpha
    }

    /// The pixel bytes.
    pub fn data(self) -> &'a [u8] {
        self.data
    }

    fn channels(self) -> usize {
        if self.alpha {
            4
        } else {
            3
        }
    }

    /// A raster of its own (a copy of every pixel).
    pub fn to_raster(self) -> Raster {
        let data = self.data.to_vec();
        // `new` and the `From` impls checked the length, so this cannot fail;
        // an empty image of the same size stands in rather than a panic.
        Raster::from_raw(self.width, self.height, self.alpha, data).unwrap_or_else(|_| {
            if self.alpha {
                Raster::Rgba(RgbaImage::new(self.width, self.height))
            } else {
                Raster::Rgb(RgbImage::new(self.width, self.height))
            }
        })
    }

    /// Copy out a rectangle, which must lie inside the image: only its rows
    /// are read.
    pub fn crop(self, r: Rect) -> Result<Raster, OpsError> {
        if !r.fits_in(self.width, self.height) || r.width == 0 || r.height == 0 {
            return Err(OpsError::Unfit(format!(
                "crop {r} does not fit in a {}x{} image",
                self.width, self.height
            )));
        }
        let ch = self.channels();
        let stride = self.width as usize * ch;
        let row = r.width as usize * ch;
        let mut out = Vec::with_capacity(row * r.height as usize);
        for y in r.y..r.y + r.height {
            let start = y as usize * stride + r.x as usize * ch;
            out.extend_from_slice(&self.data[start..start + row]);
        }
        Raster::from_raw(r.width, r.height, self.alpha, out)
    }

    /// Resize the `src` rectangle of the image (the whole image when `None`) to
    /// `w`x`h`, with the SIMD resizer. Alpha is premultiplied while filtering so
    /// transparent pixels do not bleed their colour.
    pub fn resize(self, src: Option<Rect>, w: u32, h: u32, filter: Filter) -> Result<Raster, OpsError> {
        if let Err(m) = check_image_size(w, h) {
            return Err(OpsError::Unfit(format!("cannot resize to {w}x{h}: {m}")));
        }
        let src = src.unwrap_or(Rect::full(self.width, self.height));
        if !src.fits_in(self.width, self.height) || src.width == 0 || src.height == 0 {
            return Err(OpsError::Unfit(format!(
                "source rectangle {src} does not fit in a {}x{} image",
                self.width, self.height
            )));
        }
        if (src.width, src.height) == (w, h) {
            return self.crop(src);
        }
        let pt = if self.alpha {
            fir::PixelType::U8x4
        } else {
            fir::PixelType::U8x3
        };
        let worker = |e: String| OpsError::Worker(format!("resize: {e}"));
        let src_view =
            fir::images::ImageRef::new(self.width, self.height, self.data, pt).map_err(|e| worker(e.to_string()))?;
        let mut dst = fir::images::Image::new(w, h, pt);
        let opts = fir::ResizeOptions::new().resize_alg(filter.alg()).crop(
            f64::from(src.x),
            f64::from(src.y),
            f64::from(src.width),
            f64::from(src.height),
        );
        with_resizer(|r| r.resize(&src_view, &mut dst, &opts)).map_err(|e| worker(e.to_string()))?;
        Raster::from_raw(w, h, self.alpha, dst.into_vec())
    }

    /// Luma (Rec. 601 weights, integer), one byte a pixel, row-major.
    pub fn luma(self) -> Vec<u8> {
        self.data
            .chunks_exact(self.channels())
            .map(|p| ((299 * u32::from(p[0]) + 587 * u32::from(p[1]) + 114 * u32::from(p[2]) + 500) / 1000) as u8)
            .collect()
    }
}

impl<'a> From<&'a Raster> for RasterRef<'a> {
    fn from(r: &'a Raster) -> RasterRef<'a> {
        RasterRef {
            width: r.width(),
            height: r.height(),
            alpha: r.has_alpha(),
            data: r.raw(),
        }
    }
}

impl<'a> From<&'a creative_core::pixels::Pixels> for RasterRef<'a> {
    fn from(p: &'a creative_core::pixels::Pixels) -> RasterRef<'a> {
        // `Pixels::new` checked the length against the size and channels.
        RasterRef {
            width: p.width(),
            height: p.height(),
            alpha: p.has_alpha(),
            data: p.data(),
        }
    }
}

/// An artifact's decoded image as an operation receives it: the pixels kept
/// beside the artifact, shared with every other step reading it, or a raster
/// decoded for this operation alone.
#[derive(Debug)]
pub enum Decoded {
    /// The artifact's kept pixels (read-only: other steps share them).
    Kept(std::sync::Arc<creative_core::pixels::Pixels>),
    /// Pixels decoded for this operation.
    Own(Raster),
}

impl Decoded {
    /// Decode an artifact's image, or take the pixels kept beside it (see
    /// [`creative_core::pixels`]): the first of several steps or gates on one
    /// image decodes it, the others reuse its pixels without copying them.
    /// `what` names the input in errors.
    pub fn of_artifact(a: &creative_core::artifact::Artifact, what: &str) -> Result<(Decoded, Format), OpsError> {
        let Some(format) = Format::from_media(a.media()) else {
            return Raster::decode(a.data(), what).map(|(r, f)| (Decoded::Own(r), f));
        };
        let pixels = a.pixels_or_decode(|bytes| Raster::decode(bytes, what).map(|(r, _)| r.into_pixels()))?;
        Ok((Decoded::Kept(pixels), format))
    }

    /// The pixels, borrowed.
    pub fn view(&self) -> RasterRef<'_> {
        match self {
            Decoded::Kept(p) => RasterRef::from(&**p),
            Decoded::Own(r) => r.view(),
        }
    }

    /// A raster of its own, for an operation that changes pixels in place (a
    /// copy when the pixels are kept and shared).
    pub fn into_raster(self) -> Raster {
        match self {
            Decoded::Kept(p) => RasterRef::from(&*p).to_raster(),
            Decoded::Own(r) => r,
        }
    }
}

impl From<Raster> for Decoded {
    fn from(r: Raster) -> Decoded {
        Decoded::Own(r)
    }
}
