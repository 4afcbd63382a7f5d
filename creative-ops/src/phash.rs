//! Perceptual hashes: 64-bit fingerprints that stay close when an image is
//! resized, re-encoded or slightly retouched, and differ when its content does.

use fast_image_resize as fir;
use serde::{Deserialize, Serialize};

use crate::raster::Raster;

/// Which perceptual hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HashKind {
    /// DCT hash: the signs of the 8x8 lowest frequencies of a 32x32 thumbnail
    /// against their median. Robust to scaling, compression and mild colour
    /// changes. The default.
    #[default]
    Phash,
    /// Difference hash: whether each pixel of a 9x8 thumbnail is brighter than
    /// its right neighbour. Cheaper, a little less robust.
    Dhash,
}

/// The 64-bit hash of an image.
pub fn hash(img: &Raster, kind: HashKind) -> u64 {
    match kind {
        HashKind::Phash => phash(img),
        HashKind::Dhash => dhash(img),
    }
}

/// Hamming distance between two hashes (0 identical, 64 opposite).
pub fn distance(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

fn thumbnail(img: &Raster, w: u32, h: u32) -> Vec<f64> {
    let luma = img.luma();
    let resized = fir::images::ImageRef::new(img.width(), img.height(), &luma, fir::PixelType::U8)
        .ok()
        .and_then(|src| {
            let mut dst = fir::images::Image::new(w, h, fir::PixelType::U8);
            let opts = fir::ResizeOptions::new().resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Box));
            fir::Resizer::new().resize(&src, &mut dst, &opts).ok()?;
            Some(dst.into_vec())
        });
    match resized {
        Some(v) => v.into_iter().map(f64::from).collect(),
        // Only an empty image fails to resize; it hashes as flat grey.
        None => vec![128.0; (w * h) as usize],
    }
}

fn phash(img: &Raster) -> u64 {
    const N: usize = 32;
    const K: usize = 8;
    let px = thumbnail(img, N as u32, N as u32);
    let mut cos = [[0f64; N]; K];
    for (u, row) in cos.iter_mut().enumerate() {
        for (x, c) in row.iter_mut().enumerate() {
            *c = (std::f64::consts::PI * (2 * x + 1) as f64 * u as f64 / (2 * N) as f64).cos();
        }
    }
    // Separable DCT-II, keeping only the K x K lowest frequencies.
    let mut rows = [[0f64; N]; K]; // rows[u][y]
    for y in 0..N {
        for u in 0..K {
            rows[u][y] = (0..N).map(|x| px[y * N + x] * cos[u][x]).sum();
        }
    }
    let mut coef = [0f64; K * K];
    for v in 0..K {
        for u in 0..K {
            coef[v * K + u] = (0..N).map(|y| rows[u][y] * cos[v][y]).sum();
        }
    }
    // Median of the AC coefficients (the DC term only tracks overall brightness).
    let mut ac: Vec<f64> = coef[1..].to_vec();
    ac.sort_by(f64::total_cmp);
    let median = (ac[ac.len() / 2] + ac[(ac.len() - 1) / 2]) / 2.0;
    coef.iter()
        .enumerate()
        .fold(0u64, |h, (i, &c)| if c > median { h | (1 << i) } else { h })
}

fn dhash(img: &Raster) -> u64 {
    let px = thumbnail(img, 9, 8);
    let mut h = 0u64;
    for y in 0..8 {
        for x in 0..8 {
            if px[y * 9 + x] < px[y * 9 + x + 1] {
                h |= 1 << (y * 8 + x);
            }
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::RgbImage;

    /// A still life: a sky gradient, a dark "table" and a bright disc.
    fn scene(w: u32, h: u32) -> Raster {
        Raster::Rgb(RgbImage::from_fn(w, h, |x, y| {
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            if (fx - 0.35).powi(2) + (fy - 0.4).powi(2) < 0.04 {
                image::Rgb([240, 200, 40])
            } else if fy > 0.7 {
                image::Rgb([60, 40, 30])
            } else {
                image::Rgb([90, 140, (200.0 - 80.0 * fy) as u8])
            }
        }))
    }

    #[test]
    fn a_resized_copy_is_close_and_a_different_scene_is_far() {
        for kind in [HashKind::Phash, HashKind::Dhash] {
            let a = scene(256, 256);
            let small = a.resize(None, 97, 97, crate::raster::Filter::Lanczos3).unwrap();
            let other = Raster::Rgb(RgbImage::from_fn(256, 256, |x, y| {
                let c = if (x / 32 + y / 32) % 2 == 0 { 255 } else { 0 };
                image::Rgb([c, c, c])
            }));
            let d_same = distance(hash(&a, kind), hash(&small, kind));
            let d_other = distance(hash(&a, kind), hash(&other, kind));
            assert!(d_same <= 4, "{kind:?}: resized copy at {d_same}");
            assert!(d_other >= 20, "{kind:?}: other scene at {d_other}");
        }
    }
}
