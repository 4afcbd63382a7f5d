//! The contact sheet's thumbnails: size rules and colour, from kept pixels and
//! from a PNG's bytes.

use std::path::PathBuf;

use creative_campaign::deliver::{make_thumbnail, thumbnail_path};
use creative_core::artifact::{Artifact, MediaType, Meta};
use creative_core::pixels::Pixels;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("creative-thumbs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `w`x`h` pixels of `ch` channels: `left` on the left half and `right` on the
/// right, each channel with up to ±24 of noise (so the PNG is large and its
/// thumbnail is worth writing). Alpha, when there is one, is not noisy.
fn halves(w: u32, h: u32, ch: usize, left: [u8; 4], right: [u8; 4]) -> Vec<u8> {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut out = Vec::with_capacity(w as usize * h as usize * ch);
    for _y in 0..h {
        for x in 0..w {
            let base = if x < w / 2 { left } else { right };
            for (c, b) in base.iter().enumerate().take(ch) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let noise = if c == 3 { 0 } else { (seed % 49) as i32 - 24 };
                out.push((i32::from(*b) + noise).clamp(0, 255) as u8);
            }
        }
    }
    out
}

fn encode_png(w: u32, h: u32, ch: usize, px: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(if ch == 4 {
        png::ColorType::Rgba
    } else {
        png::ColorType::Rgb
    });
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc.write_header().unwrap();
    wr.write_image_data(px).unwrap();
    drop(wr);
    out
}

fn artifact(w: u32, h: u32, ch: usize, px: Vec<u8>, keep: bool) -> Artifact {
    let a = Artifact::new(MediaType::Png, encode_png(w, h, ch, &px)).with_meta(Meta {
        width: Some(w),
        height: Some(h),
        ..Meta::default()
    });
    if keep {
        a.with_pixels(Pixels::new(w, h, ch == 4, px).unwrap())
    } else {
        a
    }
}

/// The thumbnail written for `a`: width, height, channels and pixels.
fn thumbnail(dir: &std::path::Path, a: &Artifact) -> (u32, u32, usize, Vec<u8>) {
    assert!(make_thumbnail(dir, a).unwrap(), "a thumbnail is written");
    let bytes = std::fs::read(dir.join(thumbnail_path(a.id()))).unwrap();
    assert!(bytes.len() < a.data().len(), "a thumbnail is smaller than its asset");
    let mut reader = png::Decoder::new(&bytes[..]).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, info.color_type.samples(), buf)
}

/// The mean of each channel over columns `x0..x1` of every row.
fn mean(px: &[u8], w: u32, ch: usize, x0: u32, x1: u32) -> Vec<f64> {
    let mut sum = vec![0f64; ch];
    let mut n = 0f64;
    for row in px.chunks_exact(w as usize * ch) {
        for p in row[x0 as usize * ch..x1 as usize * ch].chunks_exact(ch) {
            for (s, v) in sum.iter_mut().zip(p) {
                *s += f64::from(*v);
            }
            n += 1.0;
        }
    }
    sum.into_iter().map(|s| s / n).collect()
}

fn assert_near(got: &[f64], want: &[u8], what: &str) {
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - f64::from(*w)).abs() <= 2.0,
            "{what}: mean {got:?}, expected about {want:?}"
        );
    }
}

#[test]
fn a_thumbnail_fits_the_longest_side_to_256_and_keeps_each_halfs_colour() {
    let dir = tmp("rgb");
    let (left, right) = ([200, 40, 40, 255], [30, 60, 200, 255]);
    for keep in [true, false] {
        let a = artifact(1024, 512, 3, halves(1024, 512, 3, left, right), keep);
        let (w, h, ch, px) = thumbnail(&dir, &a);
        assert_eq!((w, h, ch), (256, 128, 3), "kept pixels: {keep}");
        // Away from the seam, where the box filter mixes the halves.
        assert_near(&mean(&px, w, ch, 0, 120), &left, &format!("left half, kept {keep}"));
        assert_near(&mean(&px, w, ch, 136, 256), &right, &format!("right half, kept {keep}"));
        let _ = std::fs::remove_file(dir.join(thumbnail_path(a.id())));
    }
}

#[test]
fn a_tall_thumbnail_with_alpha_keeps_its_alpha_and_colour() {
    let dir = tmp("rgba");
    let (left, right) = ([90, 180, 60, 255], [240, 240, 20, 128]);
    let a = artifact(600, 900, 4, halves(600, 900, 4, left, right), true);
    let (w, h, ch, px) = thumbnail(&dir, &a);
    // 600 * 256 / 900 = 170.7, rounded.
    assert_eq!((w, h, ch), (171, 256, 4));
    assert_near(&mean(&px, w, ch, 0, 80), &left, "opaque half");
    assert_near(&mean(&px, w, ch, 92, 171), &right, "translucent half");
}

#[test]
fn an_asset_no_larger_than_a_thumbnail_gets_none() {
    let dir = tmp("small");
    let a = artifact(256, 200, 3, halves(256, 200, 3, [1, 2, 3, 255], [4, 5, 6, 255]), true);
    assert!(!make_thumbnail(&dir, &a).unwrap());
    assert!(!dir.join(thumbnail_path(a.id())).exists());
}

#[test]
fn a_thumbnail_of_a_well_compressed_rendition_is_smaller_and_kept() {
    // A rendition as the image steps write them: per-row filters and a real
    // deflate level, so its file is small for its size. A thumbnail encoded
    // less carefully came out larger than it and was dropped.
    let (w, h) = (512u32, 512u32);
    // The loopback server's picture (creative-testkit's `gradient_png`): its
    // XOR pattern deflates well at full size and turns to noise when shrunk.
    let mut px = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            px.extend_from_slice(&[
                (x * 255 / w) as u8,
                (y * 255 / h) as u8,
                ((x ^ y).wrapping_mul(7) & 255) as u8,
            ]);
        }
    }
    let mut png_bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png_bytes, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
        enc.set_compression(png::Compression::Default);
        enc.write_header().unwrap().write_image_data(&px).unwrap();
    }
    let dir = tmp("rendition");
    for keep in [true, false] {
        let a = Artifact::new(MediaType::Png, png_bytes.clone()).with_meta(Meta {
            width: Some(w),
            height: Some(h),
            ..Meta::default()
        });
        let a = if keep {
            a.with_pixels(Pixels::new(w, h, false, px.clone()).unwrap())
        } else {
            a
        };
        let (tw, th, _, _) = thumbnail(&dir, &a);
        assert_eq!((tw, th), (256, 256), "kept pixels: {keep}");
        let _ = std::fs::remove_file(dir.join(thumbnail_path(a.id())));
    }
}
