//! Decompression bombs and oversized outputs: an image header may claim any
//! size, and a step's settings may ask for any size; neither reaches an
//! allocation beyond the engine's image limits.

use crate::common;

use common::*;
use creative_core::limits::MAX_IMAGE_SIDE;
use creative_core::registry::{BuildCtx, Registry};
use creative_core::{Artifact, MediaType};
use creative_ops::{Filter, OpsError, Raster};
use image::{Rgb, RgbImage};
use serde_json::json;

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

/// A real PNG of 1x1 pixel whose header is rewritten to claim `w`x`h` (CRC
/// fixed, so decoders believe it): the shape of a decompression bomb.
fn claiming(w: u32, h: u32) -> Vec<u8> {
    let mut png = encode(&RgbImage::from_pixel(1, 1, Rgb([1, 2, 3])), creative_ops::Format::Png);
    // Signature (8), length (4), "IHDR" (4), then width and height.
    assert_eq!(&png[12..16], b"IHDR");
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

#[test]
fn a_tiny_png_claiming_50000x50000_is_refused_before_decoding() {
    let bomb = claiming(50_000, 50_000);
    assert!(bomb.len() < 100, "{} bytes", bomb.len());
    assert_eq!(
        creative_ops::raster::declared_dimensions(&bomb, "bomb").unwrap(),
        (50_000, 50_000)
    );
    let e = Raster::decode(&bomb, "bomb.png").unwrap_err();
    assert!(matches!(e, OpsError::Decode { .. }), "{e}");
    assert!(e.to_string().contains("decompression-bomb guard"), "{e}");
    assert!(e.to_string().contains("50000x50000"), "{e}");
    // The same 1x1 picture with its true header decodes.
    let (r, _) = Raster::decode(&claiming(1, 1), "ok.png").unwrap();
    assert_eq!((r.width(), r.height()), (1, 1));
}

#[tokio::test]
async fn a_format_gate_with_min_width_fails_a_decompression_bomb() {
    let mut reg = Registry::new();
    creative_ops::register(&mut reg);
    let gate = reg.gate_factory("format").unwrap()(&json!({ "min_width": 100 }), &BuildCtx::default()).unwrap();
    let bomb = Artifact::new(MediaType::Png, claiming(50_000, 50_000));
    let v = gate.check(&bomb, &gate_ctx("job-1")).await.unwrap();
    assert!(!v.passed, "{v:?}");
    assert!(
        v.reasons.iter().any(|r| r.contains("decompression-bomb guard")),
        "{v:?}"
    );
    let honest = png(&RgbImage::from_pixel(200, 100, Rgb([9, 9, 9])));
    assert!(gate.check(&honest, &gate_ctx("job-1")).await.unwrap().passed);
}

#[tokio::test]
async fn a_step_decoding_a_bomb_fails_its_input_instead_of_allocating() {
    let mut reg = Registry::new();
    creative_ops::register(&mut reg);
    let step = reg.step_factory("resize").unwrap()(&json!({ "width": 64 }), &BuildCtx::default()).unwrap();
    let bomb = Artifact::new(MediaType::Png, claiming(50_000, 50_000));
    let e = step
        .run(&inputs("src", vec![bomb]), &step_ctx("resize"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("decompression-bomb guard"), "{e}");
}

#[test]
fn steps_refuse_output_sizes_beyond_the_image_limits() {
    let mut reg = Registry::new();
    creative_ops::register(&mut reg);
    let build = |kind: &str, s: serde_json::Value| {
        reg.step_factory(kind).unwrap()(&s, &BuildCtx::default())
            .err()
            .map(|e| e.to_string())
    };
    let e = build("resize", json!({ "width": 4_000_000_000u32 })).expect("refused");
    assert!(e.contains(&format!("allowed 1 to {MAX_IMAGE_SIDE}")), "{e}");
    let e = build("pad", json!({ "width": 16_384, "height": 16_384 })).expect("refused");
    assert!(e.contains("pixels"), "{e}");
    let e = build("reframe", json!({ "aspect": "1:1", "width": 20_000 })).expect("refused");
    assert!(e.contains(&format!("allowed 1 to {MAX_IMAGE_SIDE}")), "{e}");
    assert!(build("resize", json!({ "width": MAX_IMAGE_SIDE })).is_none());
}

#[test]
fn a_resize_beyond_the_pixel_limit_is_refused_without_allocating() {
    let r = Raster::Rgb(RgbImage::from_pixel(4, 4, Rgb([0, 0, 0])));
    let e = r.resize(None, 16_384, 16_384, Filter::default()).unwrap_err();
    assert!(matches!(e, OpsError::Unfit(_)), "{e}");
    assert!(r.resize(None, 8, 8, Filter::default()).is_ok());
}
