//! Lossy WebP through libwebp's simple encoding API (`libwebp-sys` builds the
//! vendored libwebp 1.6 from C source: a few seconds of build, no system library).
//!
//! The only unsafe code in this crate lives here: two calls into libwebp and the
//! copy of the buffer it returns. Decoding stays on the pure-Rust `image-webp`.

use std::ffi::c_int;

use crate::OpsError;

/// libwebp's largest width or height.
pub(crate) const MAX_DIMENSION: u32 = 16_383;

/// Encode tightly packed 8-bit RGB (`channels == 3`) or RGBA (`channels == 4`)
/// pixels as lossy WebP at `quality` (0..=100).
pub(crate) fn encode_lossy(
    pixels: &[u8],
    width: u32,
    height: u32,
    channels: usize,
    quality: u8,
) -> Result<Vec<u8>, OpsError> {
    let fail = |message: String| OpsError::Encode {
        format: "webp",
        message,
    };
    if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(fail(format!(
            "{width}x{height} is outside WebP's 1..={MAX_DIMENSION} per side"
        )));
    }
    if !matches!(channels, 3 | 4) {
        return Err(fail(format!("{channels} channels; expected RGB or RGBA")));
    }
    let stride = width as usize * channels;
    if pixels.len() != stride * height as usize {
        return Err(fail(format!(
            "{} bytes of pixels for {width}x{height}x{channels}",
            pixels.len()
        )));
    }
    let (w, h, s) = (width as c_int, height as c_int, stride as c_int);
    let q = f32::from(quality.min(100));
    let mut out: *mut u8 = std::ptr::null_mut();
    // SAFETY: `pixels` holds exactly `height` rows of `stride` bytes (checked
    // above, and the dimensions fit a c_int since they are at most 16383);
    // libwebp only reads them, and on success stores in `out` a buffer of the
    // returned length that it allocated and we own.
    #[allow(unsafe_code)]
    let len = unsafe {
        if channels == 4 {
            libwebp_sys::WebPEncodeRGBA(pixels.as_ptr(), w, h, s, q, &mut out)
        } else {
            libwebp_sys::WebPEncodeRGB(pixels.as_ptr(), w, h, s, q, &mut out)
        }
    };
    if out.is_null() {
        return Err(fail("libwebp could not encode the image (out of memory?)".into()));
    }
    // SAFETY: `out` is libwebp's buffer of `len` bytes (len is 0 on failure, which
    // gives an empty slice); it is copied, then freed exactly once by its allocator.
    #[allow(unsafe_code)]
    let bytes = unsafe {
        let v = std::slice::from_raw_parts(out, len).to_vec();
        libwebp_sys::WebPFree(out.cast());
        v
    };
    if bytes.is_empty() {
        return Err(fail("libwebp returned no data".into()));
    }
    Ok(bytes)
}
