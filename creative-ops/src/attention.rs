//! Where to cut: placing a crop window so the subject stays in frame.
//!
//! The measure is computed on a luma thumbnail (at most 256 pixels a side) so it
//! costs well under a millisecond for any input size; the window slides along the
//! axis the crop leaves free and the best position is mapped back to full size.

use serde::{Deserialize, Serialize};

use crate::geometry::Rect;
use crate::raster::{Filter, RasterRef};

/// How a crop window is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Attention {
    /// In the middle.
    #[serde(alias = "center")]
    Centre,
    /// Where the luma histogram inside the window has the most Shannon entropy:
    /// detail and contrast attract the window, flat background repels it. The
    /// default.
    #[default]
    Entropy,
    /// Where the window holds the most edge energy (Sobel magnitude).
    Edges,
}

const THUMB: u32 = 256;
const BINS: usize = 32;

/// Place a `cw`x`ch` window inside `img` by `attention`.
///
/// Positions that score the same (within 1e-9) resolve to the one nearest the
/// centre, so a uniform image crops like `Centre` and the result is deterministic.
pub fn place<'a>(img: impl Into<RasterRef<'a>>, cw: u32, ch: u32, attention: Attention) -> Rect {
    let img = img.into();
    let thumb = if attention == Attention::Centre {
        None
    } else {
        Thumb::of(img)
    };
    place_with(thumb.as_ref(), img.width(), img.height(), cw, ch, attention)
}

/// [`place`] with a thumbnail computed once for several windows of one image.
pub(crate) fn place_with(thumb: Option<&Thumb>, w: u32, h: u32, cw: u32, ch: u32, attention: Attention) -> Rect {
    let (cw, ch) = (cw.clamp(1, w.max(1)), ch.clamp(1, h.max(1)));
    let centre = Rect::new((w - cw) / 2, (h - ch) / 2, cw, ch);
    if attention == Attention::Centre || (cw == w && ch == h) {
        return centre;
    }
    let Some(thumb) = thumb else {
        return centre;
    };
    let sx = f64::from(thumb.w) / f64::from(w);
    let sy = f64::from(thumb.h) / f64::from(h);
    let map =
        |start: usize, s: f64, full: u32, win: u32| -> u32 { ((start as f64 / s).round() as u32).min(full - win) };
    let x = if cw < w {
        let win = ((f64::from(cw) * sx).round() as usize).clamp(1, thumb.w as usize);
        map(thumb.best(true, win, attention), sx, w, cw)
    } else {
        0
    };
    let y = if ch < h {
        let win = ((f64::from(ch) * sy).round() as usize).clamp(1, thumb.h as usize);
        map(thumb.best(false, win, attention), sy, h, ch)
    } else {
        0
    };
    Rect::new(x, y, cw, ch)
}

/// A small luma copy of an image, what attention is measured on.
pub(crate) struct Thumb {
    w: u32,
    h: u32,
    luma: Vec<u8>,
}

impl Thumb {
    /// The thumbnail of `img` (at most 256 pixels a side, area average).
    pub(crate) fn of<'a>(img: impl Into<RasterRef<'a>>) -> Option<Thumb> {
        let img = img.into();
        let (w, h) = (img.width(), img.height());
        let scale = (f64::from(THUMB) / f64::from(w.max(h))).min(1.0);
        let tw = ((f64::from(w) * scale).round() as u32).max(1);
        let th = ((f64::from(h) * scale).round() as u32).max(1);
        // Shrink the colour image first, then take luma of the few pixels left.
        let small = if (tw, th) == (w, h) {
            img.luma()
        } else {
            img.resize(None, tw, th, Filter::Box).ok()?.luma()
        };
        Some(Thumb {
            w: tw,
            h: th,
            luma: small,
        })
    }

    fn at(&self, x: usize, y: usize) -> i32 {
        i32::from(self.luma[y * self.w as usize + x])
    }

    /// The start of the best window of `win` lines along x (`horizontal`) or y.
    fn best(&self, horizontal: bool, win: usize, attention: Attention) -> usize {
        let (len, across) = if horizontal {
            (self.w as usize, self.h as usize)
        } else {
            (self.h as usize, self.w as usize)
        };
        let positions = len - win + 1;
        let scores: Vec<f64> = match attention {
            Attention::Centre => vec![0.0; positions],
            Attention::Edges => {
                let lines = self.edge_lines(horizontal, len);
                let mut prefix = vec![0f64; len + 1];
                for i in 0..len {
                    prefix[i + 1] = prefix[i] + lines[i];
                }
                (0..positions).map(|p| prefix[p + win] - prefix[p]).collect()
            }
            Attention::Entropy => {
                let hists = self.line_histograms(horizontal, len, across);
                let mut acc = [0u32; BINS];
                for h in &hists[..win] {
                    for (a, v) in acc.iter_mut().zip(h) {
                        *a += v;
                    }
                }
                let total = (win * across) as f64;
                let mut out = Vec::with_capacity(positions);
                for p in 0..positions {
                    if p > 0 {
                        for b in 0..BINS {
                            acc[b] = acc[b] - hists[p - 1][b] + hists[p + win - 1][b];
                        }
                    }
                    out.push(entropy(&acc, total));
                }
                out
            }
        };
        let mid = (positions - 1) as f64 / 2.0;
        let mut best = 0usize;
        for p in 1..positions {
            let (s, b) = (scores[p], scores[best]);
            if s > b + 1e-9 || ((s - b).abs() <= 1e-9 && (p as f64 - mid).abs() < (best as f64 - mid).abs()) {
                best = p;
            }
        }
        best
    }

    fn edge_lines(&self, horizontal: bool, len: usize) -> Vec<f64> {
        let (w, h) = (self.w as usize, self.h as usize);
        let mut lines = vec![0f64; len];
        if w < 3 || h < 3 {
            return lines;
        }
        for y in 1..h - 1 {
            for x in 1..w - 1 {
                let gx = (self.at(x + 1, y - 1) + 2 * self.at(x + 1, y) + self.at(x + 1, y + 1))
                    - (self.at(x - 1, y - 1) + 2 * self.at(x - 1, y) + self.at(x - 1, y + 1));
                let gy = (self.at(x - 1, y + 1) + 2 * self.at(x, y + 1) + self.at(x + 1, y + 1))
                    - (self.at(x - 1, y - 1) + 2 * self.at(x, y - 1) + self.at(x + 1, y - 1));
                let m = f64::from(gx.abs() + gy.abs());
                lines[if horizontal { x } else { y }] += m;
            }
        }
        lines
    }

    fn line_histograms(&self, horizontal: bool, len: usize, across: usize) -> Vec<[u32; BINS]> {
        let mut hists = vec![[0u32; BINS]; len];
        for (i, hist) in hists.iter_mut().enumerate() {
            for j in 0..across {
                let v = if horizontal { self.at(i, j) } else { self.at(j, i) };
                hist[v as usize * BINS / 256] += 1;
            }
        }
        hists
    }
}

fn entropy(hist: &[u32; BINS], total: f64) -> f64 {
    hist.iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / total;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raster::Raster;
    use image::RgbImage;

    fn subject_at(w: u32, h: u32, sx: u32, sw: u32) -> Raster {
        Raster::Rgb(RgbImage::from_fn(w, h, |x, y| {
            if x >= sx && x < sx + sw && (y / 6 + x / 6) % 2 == 0 {
                image::Rgb([250, 30, 30])
            } else if x >= sx && x < sx + sw {
                image::Rgb([20, 20, 200])
            } else {
                image::Rgb([128, 128, 128])
            }
        }))
    }

    #[test]
    fn uniform_images_crop_in_the_centre() {
        let img = Raster::Rgb(RgbImage::from_pixel(400, 200, image::Rgb([90, 90, 90])));
        for a in [Attention::Centre, Attention::Entropy, Attention::Edges] {
            assert_eq!(place(&img, 200, 200, a), Rect::new(100, 0, 200, 200), "{a:?}");
        }
    }

    #[test]
    fn attention_follows_an_off_centre_subject() {
        let img = subject_at(600, 300, 20, 120);
        for a in [Attention::Entropy, Attention::Edges] {
            let r = place(&img, 300, 300, a);
            assert!(r.x <= 20 && r.x + r.width >= 140, "{a:?}: {r}");
        }
        assert_eq!(place(&img, 300, 300, Attention::Centre).x, 150);
    }
}
