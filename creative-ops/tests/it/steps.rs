//! Transform steps on images made inside the tests.

use crate::common;

use std::sync::Arc;

use common::*;
use creative_core::registry::{BuildCtx, Registry};
use creative_core::{Artifact, MediaType, Step};
use creative_ops::{metadata, Aspect, Attention, Format, Raster};
use serde_json::json;

fn build(kind: &str, settings: serde_json::Value) -> Arc<dyn Step> {
    let mut reg = Registry::new();
    creative_ops::register(&mut reg);
    let f = reg.step_factory(kind).expect("kind registered");
    f(&settings, &BuildCtx::default()).unwrap_or_else(|e| panic!("{kind}: {e}"))
}

fn build_err(kind: &str, settings: serde_json::Value) -> String {
    let mut reg = Registry::new();
    creative_ops::register(&mut reg);
    let f = reg.step_factory(kind).expect("kind registered");
    f(&settings, &BuildCtx::default())
        .err()
        .expect("settings should be rejected")
        .to_string()
}

async fn run(kind: &str, settings: serde_json::Value, input: Artifact) -> Vec<Artifact> {
    let step = build(kind, settings);
    step.run(&inputs("src", vec![input]), &step_ctx(kind))
        .await
        .unwrap_or_else(|e| panic!("{kind}: {e}"))
}

fn dims(a: &Artifact) -> (u32, u32) {
    let r = decode(a);
    (r.width(), r.height())
}

#[test]
fn every_kind_is_registered() {
    let mut reg = Registry::new();
    creative_ops::register(&mut reg);
    let steps: Vec<&str> = reg.step_kinds().collect();
    let gates: Vec<&str> = reg.gate_kinds().collect();
    assert_eq!(steps, creative_ops::STEP_KINDS);
    assert_eq!(gates, creative_ops::GATE_KINDS);
}

#[test]
fn bad_settings_are_named() {
    assert!(build_err("resize", json!({ "mode": "fill", "width": 10 })).contains("`width`"));
    assert!(build_err("reframe", json!({ "aspect": "wide" })).contains("`wide` is not an aspect ratio"));
    assert!(build_err("reframe", json!({ "aspect": "9:16", "width": 100, "height": 100 })).contains("is not 9:16"));
    let e = build_err("convert", json!({ "format": "webp", "quality": 0 }));
    assert!(e.contains("`quality`") && e.contains("outside 1..=100"), "{e}");
    let e = build_err("convert", json!({ "format": "png", "quality": 80 }));
    assert!(e.contains("PNG is lossless"), "{e}");
    assert!(build_err("convert", json!({ "format": "gif" })).contains("unknown variant `gif`"));
    assert!(build_err("pad", json!({})).contains("`aspect`"));
    assert!(build_err("overlay", json!({ "text": "{{ oops" })).contains("`text`"));
    let e = build_err("overlay", json!({ "text": "hi", "font": "/nonexistent/font.ttf" }));
    assert!(e.contains("/nonexistent/font.ttf"), "{e}");
    let e = build_err("watermark", json!({ "path": "logo.png", "from": "x" }));
    assert!(
        e.contains("exactly one of `path` and `from`") || e.contains("logo.png"),
        "{e}"
    );
    let e = build_err(
        "renditions",
        json!({ "renditions": [{ "aspect": "1:1" }, { "aspect": "1x1" }] }),
    );
    assert!(e.contains("two renditions are named `1x1`"), "{e}");
    assert!(build_err("crop", json!({ "width": 10, "height": 10, "colour": "red" })).contains("unknown field `colour`"));
}

#[tokio::test]
async fn resize_fit_fill_exact() {
    let src = png(&detailed(400, 200, 1));
    let fit = run("resize", json!({ "width": 100, "height": 100 }), src.clone()).await;
    assert_eq!(dims(&fit[0]), (100, 50));
    let fit_w = run("resize", json!({ "width": 300 }), src.clone()).await;
    assert_eq!(dims(&fit_w[0]), (300, 150));
    let no_up = run("resize", json!({ "width": 800, "upscale": false }), src.clone()).await;
    assert_eq!(dims(&no_up[0]), (400, 200));
    let fill = run(
        "resize",
        json!({ "width": 100, "height": 100, "mode": "fill" }),
        src.clone(),
    )
    .await;
    assert_eq!(dims(&fill[0]), (100, 100));
    assert_eq!(
        fill[0].provenance().params["crop"],
        json!({ "x": 100, "y": 0, "width": 200, "height": 200 })
    );
    let exact = run(
        "resize",
        json!({ "width": 123, "height": 45, "mode": "exact" }),
        src.clone(),
    )
    .await;
    assert_eq!(dims(&exact[0]), (123, 45));
    assert_eq!(exact[0].meta().width, Some(123));
    assert_eq!(exact[0].meta().height, Some(45));
    assert_eq!(exact[0].media(), &MediaType::Png);
}

#[tokio::test]
async fn outputs_carry_provenance_and_meta() {
    let src = png(&detailed(320, 240, 2));
    let out = run(
        "reframe",
        json!({ "aspect": "9:16", "width": 90, "output": { "format": "jpeg", "quality": 80 } }),
        src.clone(),
    )
    .await;
    let a = &out[0];
    assert_eq!(a.media(), &MediaType::Jpeg);
    assert_eq!(dims(a), (90, 160));
    assert_eq!(a.meta().extra["rendition"], json!("9x16"));
    let p = a.provenance();
    assert_eq!(p.step, "reframe");
    assert_eq!(p.parents, vec![src.id().clone()]);
    assert_eq!(p.params["op"], json!("reframe"));
    assert_eq!(p.params["format"], json!("jpeg"));
    assert_eq!(p.params["settings"]["aspect"], json!("9:16"));
    assert_eq!(p.params["settings"]["output"]["quality"], json!(80));
    assert!(p.params["crop"].is_object());
}

#[tokio::test]
async fn the_same_input_gives_the_same_bytes() {
    let src = png(&detailed(300, 300, 3));
    for (kind, settings) in [
        (
            "resize",
            json!({ "width": 150, "height": 80, "mode": "fill", "attention": "edges" }),
        ),
        ("reframe", json!({ "aspect": "16:9", "width": 160 })),
        ("pad", json!({ "aspect": "16:9", "color": "#102030" })),
        ("convert", json!({ "format": "jpeg", "quality": 75 })),
        ("convert", json!({ "format": "webp" })),
        (
            "overlay",
            json!({ "text": "A {{ product }} by {{ brand }}", "background": "#00000099" }),
        ),
        ("metadata", json!({ "mode": "write" })),
    ] {
        let a = run(kind, settings.clone(), src.clone()).await;
        let b = run(kind, settings, src.clone()).await;
        assert_eq!(a[0].data(), b[0].data(), "{kind}");
        assert_eq!(a[0].id(), b[0].id(), "{kind}");
    }
}

#[tokio::test]
async fn attention_reframe_keeps_an_off_centre_subject_in_frame() {
    // Subject at x 40..200 of a 900x300 image; a centred 1:1 crop (x 300..600)
    // would miss it entirely.
    let img = subject_at(900, 300, 40, 160);
    let src = png(&img);
    for attention in ["entropy", "edges"] {
        let out = run(
            "reframe",
            json!({ "aspect": "1:1", "attention": attention }),
            src.clone(),
        )
        .await;
        let crop = &out[0].provenance().params["crop"];
        let x = crop["x"].as_u64().unwrap();
        assert_eq!(crop["width"], json!(300));
        assert!(x <= 40 && x + 300 >= 200, "{attention}: crop at x={x} cuts the subject");
        // Every subject pixel is inside the output: count the red pixels.
        let red = |r: &Raster| r.pixels().filter(|p| p[0] > 200 && p[1] < 80).count();
        assert_eq!(red(&decode(&out[0])), red(&Raster::Rgb(img.clone())), "{attention}");
    }
    let centre = run(
        "reframe",
        json!({ "aspect": "1:1", "attention": "centre" }),
        src.clone(),
    )
    .await;
    assert_eq!(centre[0].provenance().params["crop"]["x"], json!(300));
    // The same holds vertically (rotating clockwise puts the subject at rows 40..200).
    let tall = image::imageops::rotate90(&img);
    let out = run("reframe", json!({ "aspect": "1:1" }), png(&tall)).await;
    let y = out[0].provenance().params["crop"]["y"].as_u64().unwrap();
    assert!(y <= 40 && y + 300 >= 200, "vertical crop at y={y}");
}

#[tokio::test]
async fn reframe_takes_each_jobs_aspect_from_a_variable() {
    let step = build("reframe", json!({ "aspect_var": "aspect", "width": 90 }));
    let src = png(&detailed(160, 160, 3));
    for (aspect, want) in [("1:1", (90, 90)), ("9:16", (90, 160)), ("16:9", (90, 51))] {
        let job = creative_core::Job::new([("channel", "x"), ("aspect", aspect)]);
        let ctx = creative_core::StepCtx::detached(job, "frame");
        let out = step.run(&inputs("src", vec![src.clone()]), &ctx).await.unwrap();
        assert_eq!(dims(&out[0]), want, "{aspect}");
    }
    let job = creative_core::Job::new([("aspect", "wide")]);
    let e = step
        .run(
            &inputs("src", vec![src]),
            &creative_core::StepCtx::detached(job, "frame"),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("job variable `aspect`"), "{e}");
    assert!(build_err("reframe", json!({ "aspect_var": "a", "width": 9, "height": 16 })).contains("at most one"));
}

#[tokio::test]
async fn renditions_make_one_output_per_channel() {
    let src = png(&detailed(1024, 1024, 4));
    let out = run(
        "renditions",
        json!({
            "renditions": [
                { "aspect": "1:1", "width": 512 },
                { "aspect": "9:16", "width": 360 },
                { "aspect": "16:9", "width": 640, "name": "landscape" },
            ],
            "output": { "format": "png" }
        }),
        src,
    )
    .await;
    let got: Vec<_> = out
        .iter()
        .map(|a| (dims(a), a.meta().extra["rendition"].clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            ((512, 512), json!("1x1")),
            ((360, 640), json!("9x16")),
            ((640, 360), json!("landscape"))
        ]
    );
}

#[tokio::test]
async fn crop_and_pad() {
    let img = detailed(200, 100, 5);
    let out = run(
        "crop",
        json!({ "x": 10, "y": 20, "width": 50, "height": 40 }),
        png(&img),
    )
    .await;
    let r = decode(&out[0]);
    assert_eq!((r.width(), r.height()), (50, 40));
    let Raster::Rgb(c) = &r else {
        panic!("opaque input stays RGB")
    };
    assert_eq!(c.get_pixel(0, 0), img.get_pixel(10, 20));
    assert_eq!(c.get_pixel(49, 39), img.get_pixel(59, 59));

    let step = build("crop", json!({ "x": 180, "y": 0, "width": 50, "height": 10 }));
    let e = step
        .run(&inputs("src", vec![png(&img)]), &step_ctx("crop"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("does not fit in a 200x100 image"), "{e}");

    let padded = run("pad", json!({ "aspect": "1:1", "color": "#ff00ff" }), png(&img)).await;
    let Raster::Rgb(p) = decode(&padded[0]) else {
        panic!("opaque pad stays RGB")
    };
    assert_eq!(p.dimensions(), (200, 200));
    assert_eq!(p.get_pixel(0, 0), &image::Rgb([255, 0, 255]));
    assert_eq!(p.get_pixel(0, 50), img.get_pixel(0, 0));
    assert_eq!(padded[0].meta().extra["rendition"], json!("1x1"));

    let clear = run(
        "pad",
        json!({ "width": 220, "height": 100, "color": "#00000000", "anchor": "left" }),
        png(&img),
    )
    .await;
    let Raster::Rgba(t) = decode(&clear[0]) else {
        panic!("transparent pad gives RGBA")
    };
    assert_eq!(t.get_pixel(219, 50)[3], 0);
    assert_eq!(t.get_pixel(0, 0)[3], 255);
}

#[tokio::test]
async fn convert_writes_each_format() {
    let img = detailed(64, 48, 6);
    for (format, media) in [
        ("png", MediaType::Png),
        ("jpeg", MediaType::Jpeg),
        ("webp", MediaType::Webp),
    ] {
        let out = run("convert", json!({ "format": format }), png(&img)).await;
        assert_eq!(out[0].media(), &media);
        let (r, f) = Raster::decode(out[0].data(), "converted").unwrap();
        assert_eq!(f.as_str(), format);
        assert_eq!((r.width(), r.height()), (64, 48));
        if format != "jpeg" {
            assert_eq!(r, Raster::Rgb(img.clone()), "{format} is lossless");
        }
    }
    let hi = run("convert", json!({ "format": "jpeg", "quality": 95 }), png(&img)).await;
    let lo = run("convert", json!({ "format": "jpeg", "quality": 30 }), png(&img)).await;
    assert!(lo[0].data().len() < hi[0].data().len());
}

/// Mean absolute difference per channel between two same-sized images.
fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| f64::from(x.abs_diff(*y))).sum::<f64>() / a.len() as f64
}

#[tokio::test]
async fn webp_with_a_quality_is_lossy_and_the_quality_matters() {
    // Smooth shading with fine grain: what photographs look like to an encoder.
    let grain = detailed(256, 192, 11);
    let img = image::RgbImage::from_fn(256, 192, |x, y| {
        let g = grain.get_pixel(x, y)[1] % 8;
        image::Rgb([(x / 2) as u8 + g, (y + 30) as u8, (255 - x) as u8 / 2 + g])
    });
    let lossless = run("convert", json!({ "format": "webp" }), png(&img)).await;
    let hi = run("convert", json!({ "format": "webp", "quality": 90 }), png(&img)).await;
    let lo = run("convert", json!({ "format": "webp", "quality": 20 }), png(&img)).await;
    for out in [&hi, &lo] {
        assert_eq!(out[0].media(), &MediaType::Webp);
        assert!(
            out[0].data().starts_with(b"RIFF") && &out[0].data()[8..16] == b"WEBPVP8 ",
            "a lossy (VP8) bitstream"
        );
    }
    assert!(&lossless[0].data()[8..16] == b"WEBPVP8L", "no quality: lossless (VP8L)");
    let (hi_len, lo_len, ll_len) = (hi[0].data().len(), lo[0].data().len(), lossless[0].data().len());
    assert!(
        lo_len < hi_len && hi_len < ll_len,
        "q20 {lo_len} < q90 {hi_len} < lossless {ll_len} bytes"
    );
    let decoded = |a: &Artifact| match Raster::decode(a.data(), "webp").unwrap().0 {
        Raster::Rgb(r) => r,
        Raster::Rgba(_) => panic!("an opaque image stays RGB"),
    };
    let (h, l) = (decoded(&hi[0]), decoded(&lo[0]));
    assert_eq!(h.dimensions(), (256, 192));
    let (dh, dl) = (
        mean_abs_diff(h.as_raw(), img.as_raw()),
        mean_abs_diff(l.as_raw(), img.as_raw()),
    );
    assert!(dh > 0.0, "lossy, not lossless");
    assert!(dh < dl, "q90 is closer to the source ({dh:.2}) than q20 ({dl:.2})");
    assert!(dh < 4.0, "q90 stays close to the source: {dh:.2} per channel");
    // Provenance goes into a lossy file as into a lossless one, pixels untouched.
    let tagged = run("metadata", json!({ "mode": "write" }), hi[0].clone()).await;
    let text = metadata::read(tagged[0].data(), Format::Webp)
        .unwrap()
        .expect("embedded");
    assert!(text.contains(hi[0].id().as_str()), "{text}");
    assert_eq!(decoded(&tagged[0]), h);
}

#[tokio::test]
async fn lossy_webp_keeps_transparency() {
    let mut img = image::RgbaImage::from_pixel(64, 64, image::Rgba([200, 40, 40, 255]));
    for y in 0..64 {
        for x in 32..64 {
            img.put_pixel(x, y, image::Rgba([0, 0, 0, 0]));
        }
    }
    let src = Raster::Rgba(img).encode(Format::Png, &Default::default()).unwrap();
    let out = run(
        "convert",
        json!({ "format": "webp", "quality": 80 }),
        Artifact::new(MediaType::Png, src),
    )
    .await;
    let Raster::Rgba(r) = Raster::decode(out[0].data(), "webp").unwrap().0 else {
        panic!("alpha kept")
    };
    assert_eq!(r.get_pixel(60, 10)[3], 0, "transparent stays transparent");
    assert_eq!(r.get_pixel(4, 10)[3], 255, "opaque stays opaque");
    // The extended (VP8X + ALPH) layout takes provenance too.
    let tagged = run("metadata", json!({ "mode": "write" }), out[0].clone()).await;
    assert!(metadata::read(tagged[0].data(), Format::Webp).unwrap().is_some());
    assert_eq!(Raster::decode(tagged[0].data(), "tagged").unwrap().0, Raster::Rgba(r));
}

#[tokio::test]
async fn overlay_draws_inside_its_box_and_shrinks_long_copy() {
    let img = image::RgbImage::from_pixel(400, 300, image::Rgb([20, 20, 20]));
    let settings =
        json!({ "text": "{{ product | upper }}", "box": { "x": 0.1, "y": 0.5, "width": 0.8, "height": 0.4 } });
    let out = run("overlay", settings, png(&img)).await;
    let Raster::Rgb(r) = decode(&out[0]) else { panic!("RGB") };
    let lit: Vec<(u32, u32)> = r
        .enumerate_pixels()
        .filter(|(_, _, p)| p[0] > 100)
        .map(|(x, y, _)| (x, y))
        .collect();
    assert!(lit.len() > 500, "text drawn: {} pixels", lit.len());
    assert!(
        lit.iter()
            .all(|&(x, y)| (40..360).contains(&x) && (150..270).contains(&y)),
        "text stays in its box"
    );
    let p = out[0].provenance();
    assert_eq!(p.params["text"], json!("MUG"));
    let short_px = p.params["font_px"].as_f64().unwrap();

    let long = json!({ "text": "The {{ product }} that keeps your coffee hot through the longest meetings of the week",
                       "box": { "x": 0.1, "y": 0.5, "width": 0.8, "height": 0.4 } });
    let out = run("overlay", long, png(&img)).await;
    let p = out[0].provenance();
    assert!(p.params["font_px"].as_f64().unwrap() < short_px);
    assert!(p.params["lines"].as_u64().unwrap() >= 2);
}

#[tokio::test]
async fn overlay_reads_a_text_input_and_names_missing_variables() {
    let img = png(&image::RgbImage::from_pixel(300, 200, image::Rgb([0, 0, 0])));
    let caption = Artifact::text_plain("  Hot coffee, all day  ");
    let step = build("overlay", json!({ "text": "{{ input_text }}" }));
    let ins = creative_core::StepInputs::new(vec![
        (Arc::from("hero"), Arc::from(vec![img.clone()])),
        (Arc::from("copy"), Arc::from(vec![caption.clone()])),
    ]);
    let out = step.run(&ins, &step_ctx("cap")).await.unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].provenance().params["text"], json!("Hot coffee, all day"));
    assert!(out[0].provenance().parents.contains(caption.id()));

    let step = build("overlay", json!({ "text": "{{ missing_var }}" }));
    let e = step
        .run(&inputs("hero", vec![img.clone()]), &step_ctx("cap"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("missing_var"), "{e}");

    let step = build("overlay", json!({ "text": "日本語のキャプション" }));
    let e = step
        .run(&inputs("hero", vec![img]), &step_ctx("cap"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no glyph"), "{e}");
}

#[tokio::test]
async fn watermark_from_file_and_from_an_input() {
    let dir = std::env::temp_dir().join(format!("creative-ops-wm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let logo = image::RgbImage::from_pixel(40, 20, image::Rgb([0, 255, 0]));
    std::fs::write(dir.join("logo.png"), encode(&logo, Format::Png)).unwrap();
    let mut reg = Registry::new();
    creative_ops::register(&mut reg);
    let ctx = BuildCtx {
        base_dir: dir.clone(),
        ..Default::default()
    };
    let f = reg.step_factory("watermark").unwrap();
    let step = f(&json!({ "path": "logo.png", "width": 0.25, "margin": 0.0 }), &ctx).unwrap();
    let base = image::RgbImage::from_pixel(200, 100, image::Rgb([0, 0, 0]));
    let out = step
        .run(&inputs("src", vec![png(&base)]), &step_ctx("wm"))
        .await
        .unwrap();
    let Raster::Rgb(r) = decode(&out[0]) else { panic!("RGB") };
    // A 50x25 logo in the bottom-right corner.
    assert_eq!(r.get_pixel(175, 80), &image::Rgb([0, 255, 0]));
    assert_eq!(r.get_pixel(199, 99), &image::Rgb([0, 255, 0]));
    assert_eq!(r.get_pixel(170, 70), &image::Rgb([0, 0, 0]));
    assert_eq!(out[0].provenance().params["logo_rect"], json!([150, 75, 50, 25]));

    let step = build(
        "watermark",
        json!({ "from": "logo", "anchor": "top_left", "width": 0.25, "margin": 0.0, "opacity": 0.5 }),
    );
    let ins = creative_core::StepInputs::new(vec![
        (Arc::from("hero"), Arc::from(vec![png(&base)])),
        (Arc::from("logo"), Arc::from(vec![png(&logo)])),
    ]);
    let out = step.run(&ins, &step_ctx("wm")).await.unwrap();
    assert_eq!(out.len(), 1, "the logo itself is not watermarked");
    let Raster::Rgb(r) = decode(&out[0]) else { panic!("RGB") };
    assert_eq!(r.get_pixel(10, 10), &image::Rgb([0, 128, 0]));
    assert_eq!(out[0].provenance().parents.len(), 2);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn metadata_round_trips_in_every_format_and_strips() {
    let img = detailed(40, 30, 7);
    for format in [Format::Png, Format::Jpeg, Format::Webp] {
        let mut src = Artifact::new(format.media(), encode(&img, format));
        src.provenance_mut().step = "hero".into();
        src.provenance_mut().provider = Some("procedural".into());
        src.provenance_mut().seed = Some(42);
        src.provenance_mut().params = json!({ "prompt": "a <red> mug & \"friends\"" });
        let out = run("metadata", json!({ "mode": "write" }), src.clone()).await;
        let text = metadata::read(out[0].data(), format)
            .unwrap()
            .expect("provenance embedded");
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["artifact"], json!(src.id().as_str()), "{format:?}");
        assert_eq!(doc["provenance"]["seed"], json!(42));
        assert_eq!(
            doc["provenance"]["params"]["prompt"],
            json!("a <red> mug & \"friends\"")
        );
        // Still a valid image with the same pixels.
        let (r, f) = Raster::decode(out[0].data(), "tagged").unwrap();
        assert_eq!(f, format);
        assert_eq!(
            r,
            Raster::decode(src.data(), "src").unwrap().0,
            "{format:?} pixels untouched"
        );
        // Writing twice replaces, never duplicates.
        let again = run("metadata", json!({}), out[0].clone()).await;
        let text2 = metadata::read(again[0].data(), format).unwrap().unwrap();
        assert!(text2.contains(out[0].id().as_str()));
        // Strip removes it and keeps the image.
        let stripped = run("metadata", json!({ "mode": "strip" }), out[0].clone()).await;
        assert_eq!(metadata::read(stripped[0].data(), format).unwrap(), None, "{format:?}");
        assert_eq!(Raster::decode(stripped[0].data(), "stripped").unwrap().0, r);
        assert!(stripped[0].data().len() < out[0].data().len());
    }
}

#[test]
fn aspect_helpers_used_by_steps() {
    let a: Aspect = "9:16".parse().unwrap();
    assert_eq!(a.largest_in(1024, 1024), (576, 1024));
    assert_eq!(
        creative_ops::attention::place(&Raster::Rgb(detailed(100, 50, 1)), 50, 50, Attention::Centre).x,
        25
    );
}

#[tokio::test]
async fn non_image_inputs_are_rejected_with_the_step_name() {
    let step = build("resize", json!({ "width": 10 }));
    let e = step
        .run(
            &inputs("copy", vec![Artifact::text_plain("hello")]),
            &step_ctx("thumbs"),
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid input: step `thumbs` (resize) needs an image input; got [text/plain]"
    );
    let bad = Artifact::new(MediaType::Png, b"not a png".to_vec());
    let e = step
        .run(&inputs("src", vec![bad]), &step_ctx("thumbs"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("cannot decode input"), "{e}");
}

#[tokio::test]
async fn a_png_output_carries_its_pixels_and_they_are_what_its_bytes_decode_to() {
    let input = png(&detailed(96, 64, 7));
    let out = run(
        "resize",
        json!({ "width": 48, "height": 32, "mode": "exact" }),
        input.clone(),
    )
    .await;
    let kept = out[0]
        .pixels()
        .expect("a PNG output keeps the pixels it was encoded from");
    let decoded = match Raster::decode(out[0].data(), "out").unwrap().0 {
        Raster::Rgb(i) => i.into_raw(),
        Raster::Rgba(i) => i.into_raw(),
    };
    assert_eq!((kept.width(), kept.height()), (48, 32));
    assert_eq!(kept.data(), &decoded[..]);
    // The step decoded its input once and kept those pixels for the next user.
    let source = input.pixels().expect("the input's decode is kept beside it");
    assert_eq!((source.width(), source.height()), (96, 64));
}

#[tokio::test]
async fn three_steps_on_one_image_reuse_one_decode_and_give_what_a_fresh_decode_gives() {
    let hero = png(&detailed(120, 80, 11));
    let settings = [
        ("resize", json!({ "width": 60, "height": 60, "mode": "exact" })),
        ("resize", json!({ "width": 30, "height": 20, "mode": "exact" })),
        ("crop", json!({ "x": 0, "y": 10, "width": 120, "height": 50 })),
    ];
    let tasks: Vec<_> = settings
        .iter()
        .map(|(k, s)| tokio::spawn(run(k, s.clone(), hero.clone())))
        .collect();
    let mut shared = Vec::new();
    for t in tasks {
        shared.push(t.await.unwrap());
    }
    assert!(hero.pixels().is_some());
    // The same steps on a fresh artifact of the same bytes (no pixels kept): same outputs.
    for ((k, s), out) in settings.iter().zip(&shared) {
        let fresh = Artifact::new(MediaType::Png, hero.data().clone());
        let again = run(k, s.clone(), fresh).await;
        assert_eq!(again[0].id(), out[0].id(), "{k}: kept pixels give the same bytes");
    }
}

/// `detailed` with an alpha that varies across the image (and some fully
/// transparent pixels), so premultiplied filtering is exercised.
fn detailed_rgba(w: u32, h: u32, seed: u64) -> image::RgbaImage {
    let rgb = detailed(w, h, seed);
    image::RgbaImage::from_fn(w, h, |x, y| {
        let p = rgb.get_pixel(x, y);
        let a = if x % 13 == 0 {
            0
        } else {
            (x * 255 / w.max(1)) as u8 | 0x10
        };
        image::Rgba([p[0], p[1], p[2], a])
    })
}

/// Resize an owned copy of the pixels the way the steps did before they
/// borrowed them: the reference the borrowed path must match byte for byte.
fn owned_resize(r: &Raster, w: u32, h: u32) -> Raster {
    use fast_image_resize as fir;
    let (pt, data) = match r {
        Raster::Rgb(i) => (fir::PixelType::U8x3, i.as_raw().clone()),
        Raster::Rgba(i) => (fir::PixelType::U8x4, i.as_raw().clone()),
    };
    let src = fir::images::Image::from_vec_u8(r.width(), r.height(), data, pt).unwrap();
    let mut dst = fir::images::Image::new(w, h, pt);
    let opts = fir::ResizeOptions::new().resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Lanczos3));
    fir::Resizer::new().resize(&src, &mut dst, &opts).unwrap();
    match r {
        Raster::Rgb(_) => Raster::Rgb(image::RgbImage::from_raw(w, h, dst.into_vec()).unwrap()),
        Raster::Rgba(_) => Raster::Rgba(image::RgbaImage::from_raw(w, h, dst.into_vec()).unwrap()),
    }
}

fn owned_crop(r: &Raster, x: u32, y: u32, w: u32, h: u32) -> Raster {
    use image::GenericImageView;
    match r {
        Raster::Rgb(i) => Raster::Rgb(i.view(x, y, w, h).to_image()),
        Raster::Rgba(i) => Raster::Rgba(i.view(x, y, w, h).to_image()),
    }
}

#[tokio::test]
async fn resize_and_crop_read_kept_pixels_in_place_and_give_the_bytes_of_an_owned_copy() {
    let settings = creative_ops::EncodeSettings::default();
    for img in [
        Raster::Rgb(detailed(160, 120, 21)),
        Raster::Rgba(detailed_rgba(160, 120, 22)),
    ] {
        let alpha = img.has_alpha();
        let hero = Artifact::new(MediaType::Png, img.encode(Format::Png, &settings).unwrap());
        // Decode once so every step below reads the kept pixels, as in a job.
        let (kept, _) = creative_ops::Decoded::of_artifact(&hero, "hero").unwrap();
        assert!(matches!(kept, creative_ops::Decoded::Kept(_)), "alpha {alpha}");
        let cases = [
            (
                json!({ "width": 64, "height": 64, "mode": "exact", "filter": "lanczos3" }),
                "resize",
                owned_resize(&img, 64, 64),
            ),
            (
                json!({ "width": 200, "height": 90, "mode": "exact", "filter": "lanczos3" }),
                "resize",
                owned_resize(&img, 200, 90),
            ),
            (
                json!({ "x": 10, "y": 24, "width": 150, "height": 60 }),
                "crop",
                owned_crop(&img, 10, 24, 150, 60),
            ),
            (
                json!({ "x": 0, "y": 0, "width": 160, "height": 120 }),
                "crop",
                img.clone(),
            ),
        ];
        for (s, kind, want) in cases {
            let out = run(kind, s.clone(), hero.clone()).await;
            let want = want.encode(Format::Png, &settings).unwrap();
            assert_eq!(out[0].data().as_ref(), &want[..], "{kind} {s} alpha {alpha}");
        }
    }
}

#[tokio::test]
async fn pad_on_kept_pixels_matches_a_paste_on_an_owned_canvas() {
    let rgb = detailed(50, 30, 31);
    let rgba = detailed_rgba(50, 30, 32);
    let cases = [
        (Raster::Rgb(rgb.clone()), "#ff00ff", "centre"),
        (Raster::Rgb(rgb.clone()), "#00000080", "bottom_right"),
        (Raster::Rgba(rgba.clone()), "#ffffff", "top_left"),
    ];
    for (img, color, anchor) in cases {
        let hero = Artifact::new(MediaType::Png, img.encode(Format::Png, &Default::default()).unwrap());
        let out = run(
            "pad",
            json!({ "width": 70, "height": 40, "color": color, "anchor": anchor }),
            hero,
        )
        .await;
        let c: creative_ops::Color = color.parse().unwrap();
        let anchor_v: creative_ops::Anchor = serde_json::from_value(json!(anchor)).unwrap();
        let (x, y) = anchor_v.place(70, 40, 50, 30, 0);
        let want = if img.has_alpha() || c.a < 255 {
            let mut canvas = image::RgbaImage::from_pixel(70, 40, image::Rgba([c.r, c.g, c.b, c.a]));
            image::imageops::replace(&mut canvas, &img.to_rgba(), x, y);
            Raster::Rgba(canvas)
        } else {
            let mut canvas = image::RgbImage::from_pixel(70, 40, image::Rgb([c.r, c.g, c.b]));
            image::imageops::replace(&mut canvas, &rgb, x, y);
            Raster::Rgb(canvas)
        };
        assert_eq!(decode(&out[0]), want, "{color} {anchor}");
    }
}
