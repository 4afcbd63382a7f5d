//! `gemini` against a loopback mock of the Gemini API.
#![cfg(feature = "gemini")]

use crate::support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use creative_core::{CallCtx, ErrorKind, MediaType, Request, Task};
use serde_json::json;
use support::{build, failure_suite, Conformance, MockServer, Reply};

const KEY: &str = "AIza-gemini-test-91c2";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDRgemini";
const MP4: &[u8] = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isomVIDEO";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn settings(mock: &MockServer, extra: serde_json::Value) -> serde_json::Value {
    support::with(
        json!({"base_url": format!("{}/v1beta", mock.url()), "api_key": KEY, "poll_interval_s": 0.02}),
        extra,
    )
}

fn text_ok() -> Reply {
    Reply::json(
        200,
        json!({
            "candidates": [{"content": {"parts": [{"text": "Warm mugs, warm hearts."}], "role": "model"}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 200, "totalTokenCount": 300},
            "modelVersion": "gemini-2.5-flash", "responseId": "abc"
        }),
    )
}

fn image_ok() -> Reply {
    Reply::json(
        200,
        json!({
            "candidates": [{"content": {"parts": [
                {"text": "Here is your lighthouse."},
                {"inlineData": {"mimeType": "image/png", "data": b64(PNG)}}
            ], "role": "model"}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 1290, "totalTokenCount": 1300},
            "modelVersion": "gemini-2.5-flash-image"
        }),
    )
}

#[tokio::test]
async fn text_uses_generate_content_with_the_key_header_and_config() {
    let mock = MockServer::start().await;
    mock.route("POST", "/v1beta/models/gemini-2.5-flash:generateContent", text_ok());
    let p = build("gemini", settings(&mock, json!({}))).unwrap();
    let mut req = Request::new(Task::Text, "a tagline");
    req.params.system = Some("Be short.".into());
    req.params.temperature = Some(0.5);
    req.params.max_tokens = Some(50);
    req.params.seed = Some(9);
    req.raw.insert(
        "safetySettings".into(),
        json!([{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]),
    );
    let g = p.generate(&req, &CallCtx::detached()).await.unwrap();
    let r = mock.last();
    assert_eq!(r.header("x-goog-api-key"), Some(KEY));
    assert_eq!(r.header("authorization"), None);
    let b = r.json();
    assert_eq!(
        b["contents"],
        json!([{"role": "user", "parts": [{"text": "a tagline"}]}])
    );
    assert_eq!(b["systemInstruction"], json!({"parts": [{"text": "Be short."}]}));
    assert_eq!(b["generationConfig"]["maxOutputTokens"], 50);
    assert_eq!(b["generationConfig"]["seed"], 9);
    assert_eq!(
        b["safetySettings"][0]["threshold"], "BLOCK_NONE",
        "raw reaches the wire"
    );
    assert_eq!(g.artifacts[0].text(), Some("Warm mugs, warm hearts."));
    let expect = (100.0 * 0.3 + 200.0 * 2.5) / 1e6;
    assert!((g.usage.cost_usd - expect).abs() < 1e-12, "{}", g.usage.cost_usd);
}

#[tokio::test]
async fn image_output_comes_back_inline_and_is_priced_per_token() {
    let mock = MockServer::start().await;
    mock.route(
        "POST",
        "/v1beta/models/gemini-2.5-flash-image:generateContent",
        image_ok(),
    );
    let p = build("gemini", settings(&mock, json!({}))).unwrap();
    let mut req = Request::new(Task::Image, "a lighthouse");
    req.params.aspect_ratio = Some("16:9".into());
    let g = p.generate(&req, &CallCtx::detached()).await.unwrap();
    let b = mock.last().json();
    assert_eq!(b["generationConfig"]["responseModalities"], json!(["TEXT", "IMAGE"]));
    assert_eq!(b["generationConfig"]["imageConfig"]["aspectRatio"], "16:9");
    assert_eq!(g.artifacts.len(), 1);
    assert_eq!(g.artifacts[0].media(), &MediaType::Png);
    assert_eq!(&g.artifacts[0].data()[..], PNG);
    assert_eq!(g.artifacts[0].meta().extra["text"], "Here is your lighthouse.");
    let expect = (10.0 * 0.3 + 1290.0 * 30.0) / 1e6;
    assert!((g.usage.cost_usd - expect).abs() < 1e-12);
}

#[tokio::test]
async fn blocked_prompts_and_safety_stops_are_content_policy() {
    let mock = MockServer::start().await;
    let p = build("gemini", settings(&mock, json!({}))).unwrap();
    mock.route(
        "POST",
        "/v1beta/models/gemini-2.5-flash:generateContent",
        Reply::json(
            200,
            json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 5}}),
        ),
    );
    let e = p
        .generate(&Request::new(Task::Text, "x"), &CallCtx::detached())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ContentPolicy);
    mock.reset();
    mock.route(
        "POST",
        "/v1beta/models/gemini-2.5-flash-image:generateContent",
        Reply::json(
            200,
            json!({"candidates": [{"content": {"parts": []}, "finishReason": "IMAGE_SAFETY"}]}),
        ),
    );
    let e = p
        .generate(&Request::new(Task::Image, "x"), &CallCtx::detached())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ContentPolicy, "{e}");
    assert!(e.message().contains("IMAGE_SAFETY"));
}

#[tokio::test]
async fn imagen_predict_maps_parameters_and_filtered_outputs() {
    let mock = MockServer::start().await;
    let path = "/v1beta/models/imagen-4.0-generate-001:predict";
    mock.route(
        "POST",
        path,
        Reply::json(
            200,
            json!({"predictions": [
                {"mimeType": "image/png", "bytesBase64Encoded": b64(PNG)},
                {"mimeType": "image/png", "bytesBase64Encoded": b64(PNG)}
            ]}),
        ),
    );
    let p = build(
        "gemini",
        settings(&mock, json!({"image_model": "imagen-4.0-generate-001"})),
    )
    .unwrap();
    let mut req = Request::new(Task::Image, "robot holding a red skateboard");
    req.params.count = Some(2);
    req.params.aspect_ratio = Some("1:1".into());
    req.raw.insert(
        "parameters".into(),
        json!({"sampleCount": 2, "personGeneration": "dont_allow"}),
    );
    let g = p.generate(&req, &CallCtx::detached()).await.unwrap();
    let b = mock.last().json();
    assert_eq!(b["instances"], json!([{"prompt": "robot holding a red skateboard"}]));
    assert_eq!(
        b["parameters"],
        json!({"sampleCount": 2, "aspectRatio": "1:1", "personGeneration": "dont_allow"}),
        "raw merges into the typed parameters"
    );
    assert_eq!(g.artifacts.len(), 2);
    assert!((g.usage.cost_usd - 0.08).abs() < 1e-12);
    assert!((p.estimate_cost(&req) - 0.08).abs() < 1e-12);

    mock.reset();
    mock.route(
        "POST",
        path,
        Reply::json(200, json!({"predictions": [{"raiFilteredReason": "Unable to show generated images. Some images were filtered."}]})),
    );
    let e = p.generate(&req, &CallCtx::detached()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ContentPolicy);
    assert!(e.message().contains("filtered"));
}

fn operation(name: &str, done: bool) -> serde_json::Value {
    json!({"name": name, "done": done, "metadata": {"@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningMetadata"}})
}

#[tokio::test]
async fn veo_operations_are_polled_until_done_then_the_video_is_downloaded() {
    let mock = MockServer::start().await;
    let op = "models/veo-3.0-generate-001/operations/op123";
    mock.route(
        "POST",
        "/v1beta/models/veo-3.0-generate-001:predictLongRunning",
        Reply::json(200, operation(op, false)),
    );
    mock.route_once("GET", &format!("/v1beta/{op}"), Reply::json(200, operation(op, false)));
    mock.route_once("GET", &format!("/v1beta/{op}"), Reply::json(200, operation(op, false)));
    let video_uri = format!("{}/v1beta/files/vid1:download?alt=media", mock.url());
    mock.route_once(
        "GET",
        &format!("/v1beta/{op}"),
        Reply::json(
            200,
            json!({"name": op, "done": true, "response": {
                "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse",
                "generateVideoResponse": {"generatedSamples": [{"video": {"uri": video_uri}}]}
            }}),
        ),
    );
    mock.route(
        "GET",
        "/v1beta/files/vid1:download",
        Reply::bytes(200, "video/mp4", MP4.to_vec()),
    );
    let p = build("gemini", settings(&mock, json!({}))).unwrap();
    let mut req = Request::new(Task::Video, "a paper boat in the rain");
    req.params.duration_s = Some(8.0);
    req.params.aspect_ratio = Some("16:9".into());
    req.negative_prompt = Some("blurry".into());
    let g = p.generate(&req, &CallCtx::detached()).await.unwrap();
    let reqs = mock.requests();
    let b = reqs[0].json();
    assert_eq!(b["instances"], json!([{"prompt": "a paper boat in the rain"}]));
    assert_eq!(
        b["parameters"],
        json!({"aspectRatio": "16:9", "negativePrompt": "blurry", "durationSeconds": 8})
    );
    let polls: Vec<_> = reqs
        .iter()
        .filter(|r| r.method == "GET" && r.path().contains("/operations/"))
        .collect();
    assert_eq!(polls.len(), 3, "two pending answers then done");
    assert!(polls.iter().all(|r| r.header("x-goog-api-key") == Some(KEY)));
    let dl = reqs.last().unwrap();
    assert_eq!(dl.path(), "/v1beta/files/vid1:download");
    assert_eq!(dl.query("alt").as_deref(), Some("media"));
    assert_eq!(
        dl.header("x-goog-api-key"),
        Some(KEY),
        "the file endpoint needs the key on the same origin"
    );
    assert_eq!(g.artifacts[0].media(), &MediaType::Mp4);
    assert_eq!(&g.artifacts[0].data()[..], MP4);
    assert!((g.usage.cost_usd - 8.0 * 0.4).abs() < 1e-12);
    assert_eq!(g.usage.units, Some(8.0));
}

#[tokio::test]
async fn a_failed_or_filtered_operation_is_classified() {
    let mock = MockServer::start().await;
    let op = "models/veo-3.0-generate-001/operations/bad";
    mock.route(
        "POST",
        "/v1beta/models/veo-3.0-generate-001:predictLongRunning",
        Reply::json(200, operation(op, false)),
    );
    mock.route(
        "GET",
        &format!("/v1beta/{op}"),
        Reply::json(
            200,
            json!({"name": op, "done": true, "error": {"code": 3, "message": "Unsupported duration"}}),
        ),
    );
    let p = build("gemini", settings(&mock, json!({}))).unwrap();
    let e = p
        .generate(&Request::new(Task::Video, "x"), &CallCtx::detached())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(e.message().contains("Unsupported duration"));

    mock.reset();
    mock.route(
        "POST",
        "/v1beta/models/veo-3.0-generate-001:predictLongRunning",
        Reply::json(200, operation(op, false)),
    );
    mock.route(
        "GET",
        &format!("/v1beta/{op}"),
        Reply::json(
            200,
            json!({"name": op, "done": true, "response": {"generateVideoResponse": {
            "raiMediaFilteredCount": 1, "raiMediaFilteredReasons": ["The video was filtered for safety."]}}}),
        ),
    );
    let e = p
        .generate(&Request::new(Task::Video, "x"), &CallCtx::detached())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ContentPolicy);
}

#[tokio::test]
async fn cancelling_while_polling_cancels_the_operation() {
    let mock = MockServer::start().await;
    let op = "models/veo-3.0-generate-001/operations/slow";
    mock.route(
        "POST",
        "/v1beta/models/veo-3.0-generate-001:predictLongRunning",
        Reply::json(200, operation(op, false)),
    );
    mock.route("GET", &format!("/v1beta/{op}"), Reply::json(200, operation(op, false)));
    mock.route("POST", &format!("/v1beta/{op}:cancel"), Reply::json(200, json!({})));
    let p = build("gemini", settings(&mock, json!({"poll_interval_s": 0.05}))).unwrap();
    let ctx = CallCtx::detached();
    let c = ctx.cancel.clone();
    let watcher = mock.clone();
    tokio::spawn(async move {
        // Cancel once it has polled twice.
        watcher.wait_for_requests(2, |r| r.method == "GET").await;
        c.cancel();
    });
    let t0 = Instant::now();
    let e = p.generate(&Request::new(Task::Video, "x"), &ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled);
    assert!(t0.elapsed() < Duration::from_secs(3));
    let reqs = mock.requests();
    assert!(
        reqs.iter().filter(|r| r.method == "GET").count() >= 2,
        "it polled before the cancel"
    );
    let last = reqs.last().unwrap();
    assert_eq!(last.method, "POST");
    assert_eq!(last.path(), format!("/v1beta/{op}:cancel"));
    assert_eq!(last.header("x-goog-api-key"), Some(KEY));
}

#[tokio::test]
async fn the_call_deadline_bounds_the_polling() {
    let mock = MockServer::start().await;
    let op = "models/veo-3.0-generate-001/operations/forever";
    mock.route(
        "POST",
        "/v1beta/models/veo-3.0-generate-001:predictLongRunning",
        Reply::json(200, operation(op, false)),
    );
    mock.route("GET", &format!("/v1beta/{op}"), Reply::json(200, operation(op, false)));
    mock.route("POST", &format!("/v1beta/{op}:cancel"), Reply::json(200, json!({})));
    let p = build("gemini", settings(&mock, json!({}))).unwrap();
    let mut ctx = CallCtx::detached();
    ctx.deadline = Some(Instant::now() + Duration::from_millis(400));
    let e = p.generate(&Request::new(Task::Video, "x"), &ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(mock.last().path(), format!("/v1beta/{op}:cancel"));
}

fn google_error(code: u16, status: &str, message: &str) -> Reply {
    Reply::json(
        code,
        json!({"error": {"code": code, "message": message, "status": status}}),
    )
}

#[tokio::test]
async fn a_bad_key_answered_with_400_is_auth() {
    let mock = MockServer::start().await;
    mock.route(
        "POST",
        "/v1beta/models/gemini-2.5-flash:generateContent",
        Reply::json(
            400,
            json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}}),
        ),
    );
    let p = build("gemini", settings(&mock, json!({}))).unwrap();
    let e = p
        .generate(&Request::new(Task::Text, "x"), &CallCtx::detached())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth);
}

#[tokio::test]
async fn text_passes_the_failure_suite() {
    failure_suite(Conformance {
        kind: "gemini",
        settings: json!({"api_key": KEY}),
        request: Request::new(Task::Text, "hello"),
        method: "POST",
        path: "/models/gemini-2.5-flash:generateContent",
        ok: text_ok(),
        malformed: Reply::raw_json(200, "{\"candidates\": [{\"content\": "),
        content_policy: Some(google_error(
            400,
            "INVALID_ARGUMENT",
            "The prompt was blocked by safety filters (content policy).",
        )),
        auth: google_error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers."),
        rate_limited: google_error(
            429,
            "RESOURCE_EXHAUSTED",
            "Resource has been exhausted (e.g. check quota).",
        ),
        secret: KEY,
        routes: vec![],
    })
    .await;
}

#[tokio::test]
async fn imagen_passes_the_failure_suite() {
    failure_suite(Conformance {
        kind: "gemini",
        settings: json!({"api_key": KEY, "image_model": "imagen-3.0-generate-002"}),
        request: Request::new(Task::Image, "a cat"),
        method: "POST",
        path: "/models/imagen-3.0-generate-002:predict",
        ok: Reply::json(
            200,
            json!({"predictions": [{"mimeType": "image/png", "bytesBase64Encoded": b64(PNG)}]}),
        ),
        malformed: Reply::raw_json(200, "{\"predictions\": [{"),
        content_policy: Some(Reply::json(200, json!({}))),
        auth: google_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        ),
        rate_limited: google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded."),
        secret: KEY,
        routes: vec![],
    })
    .await;
}

#[tokio::test]
async fn veo_is_estimated_at_the_default_duration_and_billed_from_the_container() {
    let mock = MockServer::start().await;
    let op = "models/veo-3.0-fast-generate-001/operations/op9";
    mock.route(
        "POST",
        "/v1beta/models/veo-3.0-fast-generate-001:predictLongRunning",
        Reply::json(200, operation(op, false)),
    );
    let video_uri = format!("{}/v1beta/files/vid9:download?alt=media", mock.url());
    mock.route(
        "GET",
        &format!("/v1beta/{op}"),
        Reply::json(
            200,
            json!({"name": op, "done": true, "response": {
                "generateVideoResponse": {"generatedSamples": [{"video": {"uri": video_uri}}]}
            }}),
        ),
    );
    mock.route(
        "GET",
        "/v1beta/files/vid9:download",
        Reply::bytes(200, "video/mp4", support::mp4_of(5)),
    );
    let p = build(
        "gemini",
        settings(&mock, json!({"video_model": "veo-3.0-fast-generate-001"})),
    )
    .unwrap();
    let mut req = Request::new(Task::Video, "a kite over dunes");
    // No duration asked: the model's default, 8 s.
    assert!(
        (p.estimate_cost(&req) - 8.0 * 0.15).abs() < 1e-12,
        "{}",
        p.estimate_cost(&req)
    );
    req.params.duration_s = Some(6.0);
    assert!((p.estimate_cost(&req) - 6.0 * 0.15).abs() < 1e-12);
    let g = p.generate(&req, &CallCtx::detached()).await.unwrap();
    assert!(
        (g.usage.cost_usd - 5.0 * 0.15).abs() < 1e-12,
        "the container says 5 s: {}",
        g.usage.cost_usd
    );
    assert_eq!(g.usage.units, Some(5.0));
    assert_eq!(g.artifacts[0].meta().duration_s, Some(5.0));
}

#[tokio::test]
async fn a_raw_generation_config_keeps_the_typed_seed_and_temperature_as_written() {
    let mock = MockServer::start().await;
    mock.route("POST", "/v1beta/models/gemini-2.5-flash:generateContent", text_ok());
    let p = build("gemini", settings(&mock, json!({}))).unwrap();
    let mut req = Request::new(Task::Text, "a tagline");
    req.params.temperature = Some(0.7);
    req.params.max_tokens = Some(50);
    req.params.seed = Some(9);
    req.raw
        .insert("generationConfig".into(), json!({"topK": 40, "maxOutputTokens": 80}));
    p.generate(&req, &CallCtx::detached()).await.unwrap();
    let r = mock.last();
    let b = r.json();
    assert_eq!(
        b["generationConfig"],
        json!({"temperature": 0.7, "maxOutputTokens": 80, "seed": 9, "topK": 40}),
        "raw wins per key, the rest stays"
    );
    assert!(
        r.text().contains("\"temperature\":0.7") && !r.text().contains("0.6999"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn a_surprising_usage_metadata_keeps_the_text() {
    let mock = MockServer::start().await;
    mock.route(
        "POST",
        "/v1beta/models/gemini-2.5-flash:generateContent",
        Reply::json(
            200,
            json!({
                "candidates": [{"content": {"parts": [{"text": "ok"}], "role": "model"}, "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": -3, "thoughtsTokenCount": 2.5}
            }),
        ),
    );
    let p = build("gemini", settings(&mock, json!({}))).unwrap();
    let g = p
        .generate(&Request::new(Task::Text, "hi"), &CallCtx::detached())
        .await
        .unwrap();
    assert_eq!(g.artifacts[0].text(), Some("ok"));
    assert_eq!(g.usage.input_tokens, Some(10));
    assert_eq!(g.usage.output_tokens, None);
}

#[tokio::test]
async fn preflight_gets_the_model_and_a_base_url_without_v1beta_fails_there() {
    let mock = MockServer::start().await;
    mock.route(
        "GET",
        "/v1beta/models/gemini-2.5-flash",
        Reply::json(200, json!({"name": "models/gemini-2.5-flash", "version": "001"})),
    );
    let p = build("gemini", settings(&mock, json!({}))).unwrap();
    p.preflight(&CallCtx::detached()).await.unwrap();
    let r = mock.last();
    assert_eq!(
        (r.method.as_str(), r.path()),
        ("GET", "/v1beta/models/gemini-2.5-flash")
    );
    assert_eq!(r.header("x-goog-api-key"), Some(KEY));

    let wrong = build("gemini", json!({"base_url": mock.url(), "api_key": KEY})).unwrap();
    let e = wrong.preflight(&CallCtx::detached()).await.unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
}
