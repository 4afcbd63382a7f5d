//! Quality gates on images and texts made inside the tests, with exact expectations.

use crate::common;

use std::sync::Arc;

use common::*;
use creative_core::registry::{BuildCtx, Registry};
use creative_core::{Artifact, MediaType, Provider, ProviderError, QualityGate, Task, Verdict};
use creative_ops::gates::*;
use creative_ops::{Format, Raster};
use creative_testkit::fake::{Answer, FakeProvider};
use image::{Rgb, RgbImage};
use serde_json::json;

fn registry() -> Registry {
    let mut reg = Registry::new();
    creative_ops::register(&mut reg);
    reg
}

fn gate(kind: &str, settings: serde_json::Value) -> Arc<dyn QualityGate> {
    gate_with(kind, settings, &BuildCtx::default())
}

fn gate_with(kind: &str, settings: serde_json::Value, ctx: &BuildCtx) -> Arc<dyn QualityGate> {
    let reg = registry();
    let f = reg.gate_factory(kind).expect("kind registered");
    f(&settings, ctx).unwrap_or_else(|e| panic!("{kind}: {e}"))
}

fn gate_err(kind: &str, settings: serde_json::Value, ctx: &BuildCtx) -> String {
    let reg = registry();
    let f = reg.gate_factory(kind).expect("kind registered");
    f(&settings, ctx)
        .err()
        .expect("settings should be rejected")
        .to_string()
}

async fn check(g: &Arc<dyn QualityGate>, a: &Artifact) -> Verdict {
    g.check(a, &gate_ctx("job-1"))
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", g.name()))
}

/// A still life: sky gradient, dark table, bright disc at (`cx`, 0.4).
fn still_life(w: u32, h: u32, cx: f32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        if (fx - cx).powi(2) + (fy - 0.4).powi(2) < 0.04 {
            Rgb([240, 200, 40])
        } else if fy > 0.7 {
            Rgb([60, 40, 30])
        } else {
            Rgb([90, 140, (200.0 - 80.0 * fy) as u8])
        }
    })
}

fn grey_rows(w: u32, h: u32, rows: &[(u32, u8)]) -> RgbImage {
    RgbImage::from_fn(w, h, |_, y| {
        let v = rows.iter().find(|(end, _)| y < *end).map_or(0, |r| r.1);
        Rgb([v, v, v])
    })
}

#[tokio::test]
async fn sharp_passes_and_blurred_fails() {
    let sharp = detailed(256, 256, 11);
    let blurred = blur(&sharp, 3, 2);
    let g = gate("sharpness", json!({ "min_variance": 100.0 }));
    let vs = check(&g, &png(&sharp)).await;
    let vb = check(&g, &png(&blurred)).await;
    assert!(vs.passed, "{vs:?}");
    assert!(!vb.passed, "{vb:?}");
    assert!(vb.reasons[0].contains("(blurry)"), "{:?}", vb.reasons);
    assert!(vs.score > 0.5 && vb.score < 0.5);
    // The score is v / (v + min): recover v exactly from the measure.
    let r = decode(&png(&sharp));
    let v = laplacian_variance(&r.luma(), 256, 256);
    assert!((vs.score - v / (v + 100.0)).abs() < 1e-12);
    // A flat image has no edges at all.
    let flat = RgbImage::from_pixel(64, 64, Rgb([120, 120, 120]));
    let vf = check(&g, &png(&flat)).await;
    assert_eq!((vf.passed, vf.score), (false, 0.0));
}

#[tokio::test]
async fn exposure_catches_both_ends_and_flat_images() {
    let g = gate("exposure", json!({}));
    // Half black, half mid grey: 50% clipped shadows.
    let under = grey_rows(100, 100, &[(50, 0), (100, 128)]);
    let v = check(&g, &png(&under)).await;
    assert!(!v.passed);
    assert_eq!(
        v.reasons,
        vec!["under-exposed: 50.0% of pixels are clipped shadows (max 5.0%)".to_string()]
    );
    assert_eq!(v.score, 0.5);
    // A quarter pure white.
    let over = grey_rows(100, 100, &[(25, 255), (100, 100)]);
    let v = check(&g, &png(&over)).await;
    assert_eq!(
        v.reasons,
        vec!["over-exposed: 25.0% of pixels are clipped highlights (max 5.0%)".to_string()]
    );
    assert_eq!(v.score, 0.75);
    // One flat grey.
    let flat = grey_rows(100, 100, &[(100, 128)]);
    let v = check(&g, &png(&flat)).await;
    assert_eq!(v.reasons, vec!["flat: RMS contrast 0.000 is below 0.08".to_string()]);
    assert_eq!(v.score, 0.0);
    // A full ramp from 20 to 235: nothing clipped, enough contrast.
    let ramp = RgbImage::from_fn(216, 10, |x, _| Rgb([20 + x as u8, 20 + x as u8, 20 + x as u8]));
    let v = check(&g, &png(&ramp)).await;
    assert!(v.passed, "{v:?}");
    assert_eq!(v.score, 1.0);
    let stats = ExposureGate::new(ExposureSettings::default())
        .unwrap()
        .measure(&decode(&png(&under)));
    assert_eq!(
        (stats.shadows, stats.highlights, stats.contrast),
        (0.5, 0.0, 64.0 / 255.0)
    );
}

#[tokio::test]
async fn palette_on_and_off_brand() {
    let g = gate(
        "palette",
        json!({ "palette": ["#0b3d91", "#ffffff", "#fc3d21"], "max_delta_e": 10.0, "min_coverage": 0.75 }),
    );
    // 128 rows: 80 brand blue, 32 white, 16 brand red, exactly on palette.
    let on = RgbImage::from_fn(128, 128, |_, y| match y {
        0..80 => Rgb([0x0b, 0x3d, 0x91]),
        80..112 => Rgb([255, 255, 255]),
        _ => Rgb([0xfc, 0x3d, 0x21]),
    });
    let v = check(&g, &png(&on)).await;
    assert!(v.passed, "{v:?}");
    assert_eq!(v.score, 1.0);
    // Slightly off brand blue (ΔE2000 about 2) still counts.
    let near = RgbImage::from_pixel(128, 128, Rgb([0x0e, 0x40, 0x94]));
    assert!(check(&g, &png(&near)).await.passed);
    // 80 rows of green, 48 white: 37.5% on palette.
    let off = RgbImage::from_fn(
        128,
        128,
        |_, y| if y < 80 { Rgb([0, 160, 0]) } else { Rgb([255, 255, 255]) },
    );
    let v = check(&g, &png(&off)).await;
    assert!(!v.passed);
    assert_eq!(v.score, 0.375);
    assert_eq!(v.reasons[0], "only 37.5% of pixels are on-palette (min 75.0%)");
    assert!(
        v.reasons[1].starts_with("#00a000 covers 62.5% (nearest"),
        "{:?}",
        v.reasons
    );
    // The dominant colours themselves.
    let d = dominant_colors(&decode(&png(&on)), 5);
    let got: Vec<(String, f64)> = d.iter().map(|(c, s)| (c.to_string(), *s)).collect();
    assert_eq!(
        got,
        vec![
            ("#0b3d91".into(), 0.625),
            ("#ffffff".into(), 0.25),
            ("#fc3d21".into(), 0.125)
        ]
    );
}

#[tokio::test]
async fn dedupe_rejects_near_duplicates_across_jobs() {
    let g = gate("dedupe", json!({ "max_distance": 8 }));
    let a = still_life(256, 256, 0.35);
    let first = png(&a);
    let ctx = |k: &str| gate_ctx(k);
    let v = g.check(&first, &ctx("job-a")).await.unwrap();
    assert_eq!(v, Verdict::pass(1.0));
    // The same picture, smaller and as a JPEG, in another job: a near-duplicate.
    let copy = Raster::Rgb(a.clone())
        .resize(None, 180, 180, creative_ops::Filter::Lanczos3)
        .unwrap();
    let copy = Artifact::new(MediaType::Jpeg, copy.encode(Format::Jpeg, &Default::default()).unwrap());
    let v = g.check(&copy, &ctx("job-b")).await.unwrap();
    assert!(!v.passed, "{v:?}");
    assert!(
        v.reasons[0].starts_with(&format!("near-duplicate of {} from job job-a", first.id().short())),
        "{v:?}"
    );
    // A different picture passes; the same artifact judged again is not its own duplicate.
    let other = png(&detailed(256, 256, 5));
    let v = g.check(&other, &ctx("job-c")).await.unwrap();
    assert!(v.passed, "{v:?}");
    assert!(v.score > 8.0 / 64.0);
    assert!(g.check(&first, &ctx("job-a")).await.unwrap().passed);
    // Two near-identical images judged at the same time: exactly one passes.
    let g2 = gate("dedupe", json!({}));
    let x = png(&still_life(200, 200, 0.6));
    let y = Artifact::new(MediaType::Webp, encode(&still_life(200, 200, 0.6), Format::Webp));
    let (c1, c2) = (ctx("j1"), ctx("j2"));
    let (vx, vy) = tokio::join!(g2.check(&x, &c1), g2.check(&y, &c2));
    assert_eq!(u8::from(vx.unwrap().passed) + u8::from(vy.unwrap().passed), 1);
}

#[tokio::test]
async fn consistency_against_a_reference() {
    let dir = std::env::temp_dir().join(format!("creative-ops-ref-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ref.png"), encode(&still_life(256, 256, 0.35), Format::Png)).unwrap();
    let ctx = BuildCtx {
        base_dir: dir.clone(),
        ..Default::default()
    };
    let g = gate_with(
        "consistency",
        json!({ "reference": "ref.png", "max_distance": 10 }),
        &ctx,
    );
    let base = still_life(256, 256, 0.35);
    let brighter = RgbImage::from_fn(256, 256, |x, y| {
        Rgb(base.get_pixel(x, y).0.map(|c| c.saturating_add(12)))
    });
    let v = check(&g, &png(&brighter)).await;
    assert!(v.passed, "{v:?}");
    let v = check(&g, &png(&detailed(256, 256, 9))).await;
    assert!(!v.passed);
    let d: u32 = v.reasons[0]
        .split("distance ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(v.score, 1.0 - f64::from(d) / 64.0);
    assert!(gate_err("consistency", json!({ "reference": "missing.png" }), &ctx).contains("missing.png"));
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn format_rules() {
    let g = gate(
        "format",
        json!({ "media": ["image/png"], "min_width": 1080, "aspect": "9:16", "max_bytes": 10_000_000 }),
    );
    let story = png(&RgbImage::from_pixel(1080, 1920, Rgb([1, 2, 3])));
    assert_eq!(check(&g, &story).await, Verdict::pass(1.0));
    let square = Artifact::new(
        MediaType::Jpeg,
        encode(&RgbImage::from_pixel(1000, 1000, Rgb([1, 2, 3])), Format::Jpeg),
    );
    let v = check(&g, &square).await;
    assert!(!v.passed);
    assert_eq!(v.score, 0.25);
    assert_eq!(
        v.reasons,
        vec![
            "media image/jpeg is not one of [image/png]".to_string(),
            "width 1000 is below the minimum 1080".to_string(),
            "1000x1000 is not 9:16 (tolerance 1.0%)".to_string(),
        ]
    );
    let v = check(&g, &Artifact::text_plain("hi")).await;
    assert!(v
        .reasons
        .contains(&"cannot read image dimensions from text/plain".to_string()));
    assert!(gate_err(
        "format",
        json!({ "min_width": 10, "max_width": 5 }),
        &BuildCtx::default()
    )
    .contains("min_width"));
}

#[tokio::test]
async fn text_rules_are_unicode_aware() {
    let g = gate(
        "text",
        json!({
            "min_chars": 5, "max_chars": 60, "max_words": 10,
            "required": ["straße"],
            "banned": ["free", "best in the world"],
            "patterns": ["^[A-ZÄÖÜ]"],
            "forbidden_patterns": ["https?://"]
        }),
    );
    let ok = check(&g, &Artifact::text_plain("Coffee on STRASSE 5, freedom included")).await;
    assert_eq!(ok, Verdict::pass(1.0));
    let v = check(&g, &Artifact::text_plain("totally ＦＲＥＥ coffee on the straße")).await;
    assert_eq!(
        v.reasons,
        vec![
            "banned term `free` appears".to_string(),
            "does not match /^[A-ZÄÖÜ]/".to_string()
        ]
    );
    assert_eq!(v.score, 6.0 / 8.0, "2 of 8 rules fail");
    let v = check(
        &g,
        &Artifact::text_plain("The BEST in  the World! see https://x.example on Straße"),
    )
    .await;
    assert_eq!(
        v.reasons,
        vec![
            "banned term `best in the world` appears".to_string(),
            "matches forbidden /https?:\\/\\// at `https://`".to_string()
        ]
        .into_iter()
        .map(|s| s.replace("\\/", "/"))
        .collect::<Vec<_>>()
    );
    // Grapheme clusters, not code points: "é" written as e + combining accent is one.
    let short = gate("text", json!({ "max_chars": 4 }));
    assert!(check(&short, &Artifact::text_plain("cafe\u{301}")).await.passed);
    assert!(!check(&short, &Artifact::text_plain("cafes")).await.passed);
    // Images are not text: the gate cannot judge.
    let e = g.check(&png(&detailed(8, 8, 1)), &gate_ctx("j")).await.unwrap_err();
    assert!(e.message.contains("needs UTF-8 text; got image/png"), "{e}");
}

#[tokio::test]
async fn json_schema_for_structured_output() {
    let schema = json!({
        "type": "object",
        "required": ["headline", "cta"],
        "properties": { "headline": { "type": "string", "maxLength": 20 }, "cta": { "type": "string" } },
        "additionalProperties": false
    });
    let g = gate("text", json!({ "json_schema": schema }));
    let good = Artifact::new(MediaType::Json, br#"{"headline":"Hot coffee","cta":"Buy"}"#.to_vec());
    assert_eq!(check(&g, &good).await, Verdict::pass(1.0));
    let bad = Artifact::new(
        MediaType::Json,
        br#"{"headline":"A headline that is far too long","extra":1}"#.to_vec(),
    );
    let v = check(&g, &bad).await;
    assert!(!v.passed);
    assert_eq!(v.reasons.len(), 3, "{:?}", v.reasons);
    assert!(v.reasons.iter().any(|r| r.contains("cta")), "{:?}", v.reasons);
    assert!(v.reasons.iter().any(|r| r.contains("/headline")), "{:?}", v.reasons);
    let v = check(&g, &Artifact::text_plain("headline: hi")).await;
    assert!(v.reasons[0].starts_with("not valid JSON"), "{v:?}");
    assert!(gate_err("text", json!({ "patterns": ["(unclosed"] }), &BuildCtx::default()).contains("`(unclosed`"));
    assert!(gate_err("text", json!({ "json_schema": { "type": 12 } }), &BuildCtx::default()).contains("json_schema"));
}

/// The kit's fake as a judge that answers with a fixed text (it records what
/// it was asked; `fail_next` makes outages before the answer).
fn fake_judge(answer: Result<String, ProviderError>) -> FakeProvider {
    FakeProvider::new("fake-judge", &[Task::Text]).respond(move |_, _| match &answer {
        Ok(text) => Answer::text(text.clone()),
        Err(e) => Answer::error(e.clone()),
    })
}

fn judge_with(answer: Result<&str, ProviderError>) -> (Arc<dyn QualityGate>, Arc<FakeProvider>) {
    let p = Arc::new(fake_judge(answer.map(str::to_string)));
    let mut ctx = BuildCtx::default();
    ctx.providers.insert("vision".into(), p.clone() as Arc<dyn Provider>);
    let g = gate_with(
        "judge",
        json!({ "provider": "vision", "rubric": "On brand for {{ brand }}", "min_score": 0.7 }),
        &ctx,
    );
    (g, p)
}

#[tokio::test]
async fn judge_parses_good_verdicts() {
    let img = png(&detailed(32, 32, 1));
    let (g, p) = judge_with(Ok(r#"{"score": 0.9, "pass": true, "reasons": ["clear product shot"]}"#));
    let v = check(&g, &img).await;
    assert_eq!(
        v,
        Verdict {
            passed: true,
            score: 0.9,
            reasons: vec!["clear product shot".into()]
        }
    );
    let req = p.requests()[0].clone();
    assert_eq!(req.task, Task::Text);
    assert_eq!(req.inputs.len(), 1);
    assert_eq!(req.inputs[0].id(), img.id());
    assert!(req.prompt.contains("On brand for Acme"), "{}", req.prompt);
    assert_eq!(req.params.temperature, Some(0.0));

    let (g, _) = judge_with(Ok(
        "Here you go:\n```json\n{\"score\": 0.4, \"reasons\": [\"logo cut off\"]}\n```",
    ));
    let v = check(&g, &img).await;
    assert!(!v.passed);
    assert_eq!(v.score, 0.4);
    assert_eq!(
        v.reasons,
        vec!["judge score 0.4 is below 0.7".to_string(), "logo cut off".to_string()]
    );

    let (g, _) = judge_with(Ok(r#"{"score": 0.95, "pass": false, "reasons": ["wrong product"]}"#));
    let v = check(&g, &img).await;
    assert_eq!(
        (v.passed, v.reasons.clone()),
        (false, vec!["wrong product".to_string()])
    );

    // Text artifacts go inside the prompt, not as inputs.
    let (g, p) = judge_with(Ok(r#"{"score": 0.8, "pass": true, "reasons": []}"#));
    assert!(check(&g, &Artifact::text_plain("Hot coffee all day")).await.passed);
    let req = p.requests()[0].clone();
    assert!(req.inputs.is_empty() && req.prompt.contains("<asset>\nHot coffee all day\n</asset>"));
}

#[tokio::test]
async fn judge_malformed_answers_are_errors_not_passes() {
    let img = png(&detailed(32, 32, 1));
    for (answer, why) in [
        ("Looks great to me!", "no JSON object"),
        (r#"{"score": 8, "reasons": []}"#, "score 8 is outside 0..=1"),
        (r#"{"score": "high"}"#, "not a verdict object"),
        (r#"{"score": 0.9, "confidence": 1}"#, "unknown field `confidence`"),
        (r#"{"pass": true}"#, "missing field `score`"),
    ] {
        let (g, _) = judge_with(Ok(answer));
        let e = g.check(&img, &gate_ctx("j")).await.expect_err(answer);
        assert_eq!(e.gate, "judge");
        assert!(e.message.contains(why), "{answer}: {}", e.message);
    }
    let (g, p) = judge_with(Err(ProviderError::transient("fake-judge", "upstream 503")));
    let e = g.check(&img, &gate_ctx("j")).await.unwrap_err();
    assert!(
        e.message.contains("judge call failed after 3 attempt(s)") && e.message.contains("upstream 503"),
        "{e}"
    );
    assert_eq!(p.requests().len(), 3, "transient failures are retried");
    let (g, p) = judge_with(Err(ProviderError::invalid("fake-judge", "bad rubric")));
    g.check(&img, &gate_ctx("j")).await.unwrap_err();
    assert_eq!(p.requests().len(), 1, "invalid requests are not");
    // A brief outage of the judge does not fail the artifact.
    let (g, p) = judge_with(Ok(r#"{"score": 0.9, "pass": true}"#));
    p.fail_next(1);
    assert!(g.check(&img, &gate_ctx("j")).await.unwrap().passed);
    assert_eq!(p.requests().len(), 2);
    let e = gate_err(
        "judge",
        json!({ "provider": "nobody", "rubric": "x" }),
        &BuildCtx::default(),
    );
    assert!(e.contains("no provider `nobody`"), "{e}");
}

#[tokio::test]
async fn composite_all_any_weighted() {
    let blurred = png(&blur(&still_life(128, 128, 0.4), 3, 2));
    let members = json!([
        { "kind": "sharpness", "min_variance": 100.0, "weight": 3.0 },
        { "kind": "exposure", "name": "light", "weight": 1.0 }
    ]);
    let sharp_v = check(&gate("sharpness", json!({ "min_variance": 100.0 })), &blurred).await;
    let light_v = check(&gate("exposure", json!({})), &blurred).await;
    assert!(!sharp_v.passed && light_v.passed, "{sharp_v:?} {light_v:?}");

    let all = check(&gate("composite", json!({ "mode": "all", "gates": members })), &blurred).await;
    assert!(!all.passed);
    assert_eq!(all.score, (sharp_v.score + light_v.score) / 2.0);
    assert_eq!(all.reasons, vec![format!("sharpness: {}", sharp_v.reasons[0])]);

    let any = check(&gate("composite", json!({ "mode": "any", "gates": members })), &blurred).await;
    assert!(any.passed);
    assert!(any.reasons.is_empty());

    let weighted = json!({ "mode": "weighted", "min_score": 0.5, "gates": members });
    let w = check(&gate("composite", weighted), &blurred).await;
    let want = (3.0 * sharp_v.score + light_v.score) / 4.0;
    assert!((w.score - want).abs() < 1e-12);
    assert_eq!(w.passed, want >= 0.5);

    // Nesting, and a member that cannot judge makes the composite an error.
    let nested =
        json!({ "gates": [ { "kind": "composite", "mode": "any", "gates": [ { "kind": "text", "max_chars": 3 } ] } ] });
    let e = gate("composite", nested)
        .check(&blurred, &gate_ctx("j"))
        .await
        .unwrap_err();
    assert!(e.message.contains("needs UTF-8 text"), "{e}");
    let e = gate_err(
        "composite",
        json!({ "gates": [ { "kind": "nope" } ] }),
        &BuildCtx::default(),
    );
    assert!(e.contains("gates[0]: unknown gate kind `nope`"), "{e}");
    let e = gate_err("composite", json!({ "gates": [] }), &BuildCtx::default());
    assert!(e.contains("at least one member"), "{e}");
}
