//! Unit tests of the request mapping (sizes, bodies), settings and estimates.

use super::*;

fn p(settings: Value) -> OpenAi {
    OpenAi::from_settings("openai", &settings).unwrap()
}

#[test]
fn sizes_follow_dimensions_then_aspect_ratio() {
    let mut r = Request::new(Task::Image, "x");
    r.params.aspect_ratio = Some("16:9".into());
    assert_eq!(size_for("gpt-image-1", &r).as_deref(), Some("1536x1024"));
    assert_eq!(size_for("dall-e-3", &r).as_deref(), Some("1792x1024"));
    r.params.aspect_ratio = Some("9:16".into());
    assert_eq!(size_for("gpt-image-1", &r).as_deref(), Some("1024x1536"));
    r.params.width = Some(512);
    r.params.height = Some(512);
    assert_eq!(size_for("gpt-image-1", &r).as_deref(), Some("512x512"));
}

#[test]
fn dall_e_gets_b64_and_style_gpt_image_gets_output_format() {
    let o = p(json!({"api_key": "k"}));
    let mut r = Request::new(Task::Image, "a fox");
    r.params.style = Some("vivid".into());
    r.params.format = Some("webp".into());
    let b = o.image_body("dall-e-3", &r);
    assert_eq!(b["response_format"], "b64_json");
    assert_eq!(b["style"], "vivid");
    assert!(b.get("output_format").is_none());
    let b = o.image_body("gpt-image-1", &r);
    assert!(b.get("response_format").is_none());
    assert!(b.get("style").is_none());
    assert_eq!(b["output_format"], "webp");
}

#[test]
fn unknown_settings_are_named() {
    let e = OpenAi::from_settings("openai", &json!({"api_key": "k", "qualty": "hd"})).unwrap_err();
    assert!(e.to_string().contains("qualty"), "{e}");
    assert!(
        e.to_string().contains("text_model") && e.to_string().contains("base_url"),
        "the known keys are listed: {e}"
    );
    let e = OpenAi::from_settings("openai", &json!({"response_format": "png"})).unwrap_err();
    assert!(e.to_string().contains("response_format"), "{e}");
}

#[test]
fn estimates_use_the_price_table() {
    let o = p(json!({"model": "dall-e-3"}));
    let mut r = Request::new(Task::Image, "x");
    r.params.quality = Some("hd".into());
    r.params.width = Some(1024);
    r.params.height = Some(1024);
    assert_eq!(o.estimate_cost(&r), 0.08);
    let o = p(json!({"model": "dall-e-3", "prices": {"dall-e-3": {"image": {"1024x1024/hd": 1.0}}}}));
    assert_eq!(o.estimate_cost(&r), 1.0);
}

#[test]
fn an_image_s_base64_is_read_in_place_from_the_body_unless_escaped() {
    let body = br#"{"data":[{"b64_json":"aGVsbG8="},{"b64_json":"aGV\/bG8="}]}"#;
    let resp: ImagesResponse<'_> = serde_json::from_slice(body).unwrap();
    let texts: Vec<&Cow<'_, str>> = resp.data.iter().map(|d| &d.b64_json.as_ref().unwrap().0).collect();
    assert!(matches!(texts[0], Cow::Borrowed("aGVsbG8=")), "{:?}", texts[0]);
    assert!(matches!(texts[1], Cow::Owned(s) if s == "aGV/bG8="), "{:?}", texts[1]);
}
