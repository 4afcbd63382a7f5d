//! Renditions benchmark: per job, decode a 1024x1024 PNG, make three renditions
//! (1:1 at 800x800, 9:16 at 540x960, 16:9 at 960x540: crop to the aspect, then
//! Lanczos-3 downscale) and encode them. The time reported is per job.
//!
//! Cases:
//! - `step_png_balanced`: the `renditions` step as a pipeline runs it (decode,
//!   resize and encode on tokio's blocking pool), centre crops, PNG with the
//!   default `balanced` deflate (level 3).
//! - `step_png_fast`: PNG with fdeflate (fastest, largest files).
//! - `step_png_high`: PNG with deflate level 6, the same level as Pillow's default.
//! - `step_jpeg_q85`: JPEG quality 85.
//! - `step_webp_q80`: lossy WebP quality 80 (libwebp's default method 4).
//! - `step_png_balanced_entropy`: the default PNG with the entropy attention crop
//!   (the step's default placement) instead of centre crops.
//!
//! The input is also written to `target/bench-renditions/input.png`, so
//! `creative-ops/tools/pillow_renditions.py` can time the same work in Pillow.
//!
//! Measured on the project's 2-core machine (medians, ms per job; both sides
//! single-threaded per job; Pillow 13.0.0 with LANCZOS, same crops and sizes):
//!
//! | work                      | ours  | Pillow | output, ours / Pillow |
//! |---------------------------|-------|--------|-----------------------|
//! | PNG, deflate level 6      | 118.6 | 355.0  | 1.54 MB / 1.76 MB     |
//! | PNG, our default (level 3)| 41.8  | 355.0 (its default) | 1.60 MB / 1.76 MB |
//! | PNG, fastest of each      | 19.7 (fdeflate) | 124.9 (level 1) | 2.97 MB / 1.87 MB |
//! | JPEG quality 85           | 21.1  | 52.5   | 225 KB / 224 KB       |
//! | WebP lossy q80 (method 4) | 107.2 | 137.7  | 81 KB / 81 KB         |
//! | PNG default + entropy crop| 43.6  | n/a    | 1.60 MB               |
//!
//! Both sides encode WebP with the same libwebp, which takes most of that job's
//! time, so the gap there is only decode and resize.

use std::sync::Arc;

use creative::engine::{Artifact, Job, MediaType, Step, StepCtx, StepInputs};
use creative::ops::image;
use creative::ops::steps::{RenditionsSettings, RenditionsStep};
use creative::ops::{EncodeSettings, Format, Raster};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;

/// A photo-like 1024x1024 picture: soft gradients, a few shapes, fine grain.
fn input_png() -> Vec<u8> {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let img = image::RgbImage::from_fn(1024, 1024, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let grain = (seed >> 60) as i32 - 8;
        let (fx, fy) = (x as f32 / 1024.0, y as f32 / 1024.0);
        let base = if (fx - 0.62).powi(2) + (fy - 0.45).powi(2) < 0.05 {
            [230.0 - 60.0 * fy, 120.0 + 50.0 * fx, 40.0]
        } else if fy > 0.72 {
            [80.0 + 30.0 * fx, 55.0, 40.0 + 20.0 * fy]
        } else {
            [70.0 + 40.0 * fy, 120.0 + 60.0 * fy, 210.0 - 70.0 * fy]
        };
        image::Rgb(base.map(|c| (c as i32 + grain).clamp(0, 255) as u8))
    });
    Raster::Rgb(img)
        .encode(Format::Png, &EncodeSettings::default())
        .expect("encode bench input")
}

fn step(output: serde_json::Value, attention: &str) -> RenditionsStep {
    let s: RenditionsSettings = serde_json::from_value(json!({
        "renditions": [
            { "aspect": "1:1", "width": 800 },
            { "aspect": "9:16", "width": 540 },
            { "aspect": "16:9", "width": 960 },
        ],
        "attention": attention,
        "output": output,
    }))
    .expect("bench settings");
    RenditionsStep::new(s).expect("bench step")
}

fn bench(c: &mut Criterion) {
    let png = input_png();
    let dir = std::path::Path::new("target/bench-renditions");
    if std::fs::create_dir_all(dir).is_ok() {
        let _ = std::fs::write(dir.join("input.png"), &png);
    }
    let input = Artifact::new(MediaType::Png, png);
    let inputs = StepInputs::new(vec![(Arc::from("hero"), Arc::from(vec![input]))]);
    let ctx = StepCtx::detached(Job::new([("product", "mug")]), "channels");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");

    let cases = [
        ("step_png_balanced", step(json!({ "format": "png" }), "centre")),
        (
            "step_png_fast",
            step(json!({ "format": "png", "png_compression": "fast" }), "centre"),
        ),
        (
            "step_png_high",
            step(json!({ "format": "png", "png_compression": "high" }), "centre"),
        ),
        (
            "step_jpeg_q85",
            step(json!({ "format": "jpeg", "quality": 85 }), "centre"),
        ),
        (
            "step_webp_q80",
            step(json!({ "format": "webp", "quality": 80 }), "centre"),
        ),
        ("step_png_balanced_entropy", step(json!({ "format": "png" }), "entropy")),
    ];
    let mut g = c.benchmark_group("renditions");
    g.sample_size(30);
    for (name, s) in &cases {
        // Print the output sizes once, to compare with Pillow's.
        let out = rt.block_on(s.run(&inputs, &ctx)).expect("renditions");
        let sizes: Vec<String> = out.iter().map(|a| format!("{} B", a.data().len())).collect();
        println!("{name}: outputs {}", sizes.join(", "));
        g.bench_function(*name, |b| {
            b.to_async(&rt).iter(|| async {
                let out = s.run(&inputs, &ctx).await.expect("renditions");
                assert_eq!(out.len(), 3);
                out
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
