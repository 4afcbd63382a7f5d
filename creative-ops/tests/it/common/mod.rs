//! Images made inside the tests, and helpers to run steps and gates.
#![allow(dead_code)]

use std::sync::Arc;

use creative_core::{Artifact, GateCtx, Job, MediaType, StepCtx, StepInputs};
use creative_ops::{EncodeSettings, Format, Raster};
use image::{Rgb, RgbImage};

/// A deterministic pseudo-random generator (xorshift), so test images are the
/// same on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn byte(&mut self) -> u8 {
        (self.next() >> 24) as u8
    }
}

/// A detailed scene: a checkerboard of 8-pixel squares in two colours, with noise.
pub fn detailed(w: u32, h: u32, seed: u64) -> RgbImage {
    let mut rng = Rng::new(seed);
    RgbImage::from_fn(w, h, |x, y| {
        let n = rng.byte() / 8;
        if (x / 8 + y / 8) % 2 == 0 {
            Rgb([200 + n / 2, 60 + n, 40])
        } else {
            Rgb([30, 80 + n, 160 + n])
        }
    })
}

/// A box blur of radius `r`, applied `passes` times (separable).
pub fn blur(img: &RgbImage, r: i64, passes: usize) -> RgbImage {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let mut cur = img.clone();
    for _ in 0..passes {
        for horizontal in [true, false] {
            let src = cur.clone();
            for y in 0..h {
                for x in 0..w {
                    let mut acc = [0u32; 3];
                    let mut n = 0;
                    for d in -r..=r {
                        let (sx, sy) = if horizontal { (x + d, y) } else { (x, y + d) };
                        if sx >= 0 && sy >= 0 && sx < w && sy < h {
                            let p = src.get_pixel(sx as u32, sy as u32);
                            for k in 0..3 {
                                acc[k] += u32::from(p[k]);
                            }
                            n += 1;
                        }
                    }
                    cur.put_pixel(
                        x as u32,
                        y as u32,
                        Rgb([(acc[0] / n) as u8, (acc[1] / n) as u8, (acc[2] / n) as u8]),
                    );
                }
            }
        }
    }
    cur
}

/// A flat grey background with a detailed subject (red/blue checks) in the
/// columns `sx..sx + sw`, full height.
pub fn subject_at(w: u32, h: u32, sx: u32, sw: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        if x >= sx && x < sx + sw {
            if (x / 6 + y / 6) % 2 == 0 {
                Rgb([250, 30, 30])
            } else {
                Rgb([20, 20, 200])
            }
        } else {
            Rgb([128, 128, 128])
        }
    })
}

pub fn encode(img: &RgbImage, format: Format) -> Vec<u8> {
    Raster::Rgb(img.clone())
        .encode(format, &EncodeSettings::default())
        .expect("encode test image")
}

pub fn png(img: &RgbImage) -> Artifact {
    Artifact::new(MediaType::Png, encode(img, Format::Png))
}

pub fn decode(a: &Artifact) -> Raster {
    Raster::decode(a.data(), "test output").expect("decode output").0
}

pub fn inputs(step: &str, arts: Vec<Artifact>) -> StepInputs {
    StepInputs::new(vec![(Arc::from(step), Arc::from(arts))])
}

pub fn job() -> Job {
    Job::new([("product", "mug"), ("brand", "Acme")])
}

pub fn step_ctx(name: &str) -> StepCtx {
    StepCtx::detached(job(), name)
}

pub fn gate_ctx(job_key: &str) -> GateCtx {
    let j = job();
    GateCtx::new(Default::default(), j.vars().clone(), job_key)
}
