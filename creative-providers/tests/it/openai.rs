//! `openai` against a loopback mock of the OpenAI API.
#![cfg(feature = "openai")]

use crate::support;

use base64::Engine as _;
use creative_core::{Artifact, CallCtx, ErrorKind, MediaType, Request, Task};
use serde_json::json;
use support::{build, failure_suite, Conformance, MockServer, Reply};

const KEY: &str = "sk-openai-test-7f3a";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDRfake-image-bytes";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn settings(mock: &MockServer, extra: serde_json::Value) -> serde_json::Value {
    support::with(json!({"base_url": format!("{}/v1", mock.url()), "api_key": KEY}), extra)
}

fn images_ok() -> Reply {
    Reply::json(
        200,
        json!({
            "created": 1713833628,
            "background": "transparent",
            "output_format": "png",
            "quality": "high",
            "size": "1024x1024",
            "data": [{"b64_json": b64(PNG)}, {"b64_json": b64(PNG)}],
            "usage": {
                "total_tokens": 8350, "input_tokens": 50, "output_tokens": 8300,
                "input_tokens_details": {"text_tokens": 50, "image_tokens": 0}
            }
        }),
    )
}

#[tokio::test]
async fn gpt_image_generation_sends_the_documented_body_and_prices_by_tokens() {
    let mock = MockServer::start().await;
    mock.route("POST", "/v1/images/generations", images_ok());
    let p = build("openai", settings(&mock, json!({}))).unwrap();
    let mut req = Request::new(Task::Image, "a lighthouse at dusk");
    req.params.width = Some(1024);
    req.params.height = Some(1024);
    req.params.quality = Some("high".into());
    req.params.count = Some(2);
    req.params.format = Some("png".into());
    req.raw.insert("background".into(), json!("transparent"));
    req.raw.insert("x_vendor".into(), json!({"nested": [1, "two", null]}));
    let g = p.generate(&req, &CallCtx::detached()).await.unwrap();

    let r = mock.last();
    assert_eq!(r.path(), "/v1/images/generations");
    assert_eq!(r.header("authorization"), Some(&*format!("Bearer {KEY}")));
    let body = r.json();
    assert_eq!(body["model"], "gpt-image-1");
    assert_eq!(body["prompt"], "a lighthouse at dusk");
    assert_eq!(body["n"], 2);
    assert_eq!(body["size"], "1024x1024");
    assert_eq!(body["quality"], "high");
    assert_eq!(body["output_format"], "png");
    assert!(
        body.get("response_format").is_none(),
        "gpt-image-1 rejects response_format"
    );
    // The escape hatch reaches the wire unchanged.
    assert_eq!(body["background"], "transparent");
    assert_eq!(body["x_vendor"], json!({"nested": [1, "two", null]}));

    assert_eq!(g.artifacts.len(), 2);
    assert_eq!(g.artifacts[0].media(), &MediaType::Png);
    assert_eq!(&g.artifacts[0].data()[..], PNG);
    assert_eq!(g.artifacts[0].meta().width, Some(1024));
    assert_eq!(g.artifacts[0].provenance().model.as_deref(), Some("gpt-image-1"));
    assert_eq!(g.usage.input_tokens, Some(50));
    assert_eq!(g.usage.output_tokens, Some(8300));
    // 50 text tokens at $5/M + 8300 output tokens at $40/M.
    let expect = (50.0 * 5.0 + 8300.0 * 40.0) / 1e6;
    assert!((g.usage.cost_usd - expect).abs() < 1e-12, "{}", g.usage.cost_usd);
}

#[tokio::test]
async fn dall_e_url_outputs_are_downloaded_and_priced_per_image() {
    let mock = MockServer::start().await;
    let url = format!("{}/files/img-1.png", mock.url());
    mock.route(
        "POST",
        "/v1/images/generations",
        Reply::json(
            200,
            json!({"created": 1, "data": [{"url": url, "revised_prompt": "A detailed fox"}]}),
        ),
    );
    mock.route("GET", "/files/img-1.png", Reply::bytes(200, "image/png", PNG.to_vec()));
    let p = build(
        "openai",
        settings(&mock, json!({"model": "dall-e-3", "response_format": "url"})),
    )
    .unwrap();
    let mut req = Request::new(Task::Image, "a fox");
    req.params.aspect_ratio = Some("16:9".into());
    req.params.quality = Some("hd".into());
    req.params.style = Some("natural".into());
    let g = p.generate(&req, &CallCtx::detached()).await.unwrap();
    let body = mock.requests()[0].json();
    assert_eq!(body["model"], "dall-e-3");
    assert_eq!(body["size"], "1792x1024");
    assert_eq!(body["style"], "natural");
    assert_eq!(body["response_format"], "url");
    assert_eq!(mock.last().path(), "/files/img-1.png");
    assert_eq!(&g.artifacts[0].data()[..], PNG);
    assert_eq!(g.artifacts[0].meta().extra["revised_prompt"], "A detailed fox");
    assert_eq!(g.usage.cost_usd, 0.12);
    assert_eq!(p.estimate_cost(&req), 0.12);
}

#[tokio::test]
async fn edits_go_as_multipart_with_images_and_mask() {
    let mock = MockServer::start().await;
    mock.route("POST", "/v1/images/edits", images_ok());
    let p = build("openai", settings(&mock, json!({}))).unwrap();
    let mut req = Request::new(Task::ImageEdit, "add a hat");
    req.inputs.push(Artifact::new(MediaType::Png, PNG.to_vec()));
    req.inputs
        .push(Artifact::new(MediaType::Jpeg, b"\xFF\xD8\xFFjpeg".to_vec()));
    let mut mask = Artifact::new(MediaType::Png, b"\x89PNG\r\n\x1a\nMASK".to_vec());
    mask.meta_mut().extra.insert("role".into(), json!("mask"));
    req.inputs.push(mask);
    req.params.count = Some(1);
    req.raw.insert("input_fidelity".into(), json!("high"));
    let g = p.generate(&req, &CallCtx::detached()).await.unwrap();
    assert_eq!(g.artifacts.len(), 2);
    let r = mock.last();
    assert!(r.header("content-type").unwrap().starts_with("multipart/form-data"));
    let body = r.text();
    assert!(body.contains("name=\"prompt\"\r\n\r\nadd a hat"), "{body}");
    assert!(body.contains("name=\"model\"\r\n\r\ngpt-image-1"));
    assert!(body.contains("name=\"n\"\r\n\r\n1"));
    assert!(body.contains("name=\"input_fidelity\"\r\n\r\nhigh"));
    assert!(body.contains("name=\"image[]\"; filename=\"image0.png\"\r\nContent-Type: image/png"));
    assert!(body.contains("name=\"image[]\"; filename=\"image1.jpg\"\r\nContent-Type: image/jpeg"));
    assert!(body.contains("name=\"mask\"; filename=\"mask.png\"\r\nContent-Type: image/png\r\n\r\n"));
    assert!(body.contains("MASK"));
}

#[tokio::test]
async fn an_edit_without_an_input_image_is_invalid() {
    let mock = MockServer::start().await;
    let p = build("openai", settings(&mock, json!({}))).unwrap();
    let e = p
        .generate(&Request::new(Task::ImageEdit, "x"), &CallCtx::detached())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(mock.requests().is_empty());
}

fn chat_ok() -> Reply {
    Reply::json(
        200,
        json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Bright mugs for bright mornings.", "refusal": null}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 2000, "total_tokens": 3000}
        }),
    )
}

#[tokio::test]
async fn chat_completions_map_messages_params_and_usage() {
    let mock = MockServer::start().await;
    mock.route("POST", "/v1/chat/completions", chat_ok());
    let p = build("openai", settings(&mock, json!({}))).unwrap();
    let mut req = Request::new(Task::Text, "a tagline for a mug");
    req.params.system = Some("You write taglines.".into());
    req.params.temperature = Some(0.5);
    req.params.max_tokens = Some(40);
    req.params.seed = Some(7);
    req.raw.insert("response_format".into(), json!({"type": "text"}));
    let g = p.generate(&req, &CallCtx::detached()).await.unwrap();
    let body = mock.last().json();
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["stream"], false);
    assert_eq!(
        body["messages"],
        json!([{"role": "system", "content": "You write taglines."}, {"role": "user", "content": "a tagline for a mug"}])
    );
    assert_eq!(body["temperature"], 0.5);
    assert_eq!(body["max_tokens"], 40);
    assert_eq!(body["seed"], 7);
    assert_eq!(body["response_format"], json!({"type": "text"}));
    assert_eq!(g.artifacts[0].text(), Some("Bright mugs for bright mornings."));
    assert_eq!(g.usage.input_tokens, Some(1000));
    assert_eq!(g.usage.output_tokens, Some(2000));
    let expect = (1000.0 * 0.15 + 2000.0 * 0.6) / 1e6;
    assert!((g.usage.cost_usd - expect).abs() < 1e-12);
}

#[tokio::test]
async fn chat_refusals_and_filtered_outputs_are_content_policy() {
    let mock = MockServer::start().await;
    let p = build("openai", settings(&mock, json!({}))).unwrap();
    mock.route(
        "POST",
        "/v1/chat/completions",
        Reply::json(200, json!({"choices": [{"message": {"content": null, "refusal": "I can't help with that."}, "finish_reason": "stop"}]})),
    );
    let e = p
        .generate(&Request::new(Task::Text, "x"), &CallCtx::detached())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ContentPolicy);
    assert!(e.message().contains("can't help"));
    mock.reset();
    mock.route(
        "POST",
        "/v1/chat/completions",
        Reply::json(
            200,
            json!({"choices": [{"message": {"content": ""}, "finish_reason": "content_filter"}]}),
        ),
    );
    let e = p
        .generate(&Request::new(Task::Text, "x"), &CallCtx::detached())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ContentPolicy);
}

#[tokio::test]
async fn a_compatible_server_without_a_key_gets_no_auth_header() {
    let mock = MockServer::start().await;
    mock.route("POST", "/v1/chat/completions", chat_ok());
    std::env::remove_var("OPENAI_API_KEY");
    let p = build(
        "openai",
        json!({"base_url": format!("{}/v1", mock.url()), "text_model": "llama3"}),
    )
    .unwrap();
    p.generate(&Request::new(Task::Text, "hi"), &CallCtx::detached())
        .await
        .unwrap();
    assert_eq!(mock.last().header("authorization"), None);
    assert_eq!(mock.last().json()["model"], "llama3");
}

fn error(status: u16, message: &str, code: &str) -> Reply {
    Reply::json(
        status,
        json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}}),
    )
}

#[tokio::test]
async fn image_generation_passes_the_failure_suite() {
    failure_suite(Conformance {
        kind: "openai",
        settings: json!({"api_key": KEY}),
        request: Request::new(Task::Image, "a cat"),
        method: "POST",
        path: "/images/generations",
        ok: images_ok(),
        malformed: Reply::raw_json(200, "{\"created\": 1, \"data\": [{\"b64_json\": "),
        content_policy: Some(error(
            400,
            "Your request was rejected as a result of our safety system.",
            "content_policy_violation",
        )),
        auth: error(401, "Incorrect API key provided: sk-open***7f3a.", "invalid_api_key"),
        rate_limited: error(429, "Rate limit reached for images per minute", "rate_limit_exceeded"),
        secret: KEY,
        routes: vec![],
    })
    .await;
}

#[tokio::test]
async fn gpt_image_moderation_blocks_are_content_policy() {
    let mock = MockServer::start().await;
    mock.route(
        "POST",
        "/v1/images/generations",
        error(
            400,
            "Your request was rejected by the safety system.",
            "moderation_blocked",
        ),
    );
    let p = build("openai", settings(&mock, json!({}))).unwrap();
    let e = p
        .generate(&Request::new(Task::Image, "x"), &CallCtx::detached())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ContentPolicy);
    assert!(e.message().contains("safety system"));
}

#[tokio::test]
async fn chat_passes_the_failure_suite() {
    failure_suite(Conformance {
        kind: "openai",
        settings: json!({"api_key": KEY}),
        request: Request::new(Task::Text, "hello"),
        method: "POST",
        path: "/chat/completions",
        ok: chat_ok(),
        malformed: Reply::raw_json(200, "{\"choices\": [{\"message\""),
        content_policy: Some(error(
            400,
            "The response was filtered due to the prompt triggering content management policy.",
            "content_filter",
        )),
        auth: error(401, "Incorrect API key provided.", "invalid_api_key"),
        rate_limited: error(429, "Rate limit reached for requests", "rate_limit_exceeded"),
        secret: KEY,
        routes: vec![],
    })
    .await;
}

#[tokio::test]
async fn reasoning_models_get_max_completion_tokens() {
    let mock = MockServer::start().await;
    mock.route("POST", "/v1/chat/completions", chat_ok());
    for (model, key) in [
        ("o3-mini", "max_completion_tokens"),
        ("o1", "max_completion_tokens"),
        ("gpt-5-mini", "max_completion_tokens"),
        ("gpt-5.1", "max_completion_tokens"),
        ("gpt-4o-mini", "max_tokens"),
        ("omni-custom", "max_tokens"),
    ] {
        let p = build("openai", settings(&mock, json!({"text_model": model}))).unwrap();
        let mut req = Request::new(Task::Text, "a tagline");
        req.params.max_tokens = Some(64);
        p.generate(&req, &CallCtx::detached()).await.unwrap();
        let body = mock.last().json();
        assert_eq!(body["model"], model);
        assert_eq!(body[key], 64, "{model}: {body}");
        let other = if key == "max_tokens" {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        assert!(body.get(other).is_none(), "{model} gets only `{key}`: {body}");
    }
}

#[tokio::test]
async fn preflight_asks_a_compatible_server_for_its_models() {
    let mock = MockServer::start().await;
    mock.route(
        "GET",
        "/v1/models",
        Reply::json(200, json!({"object": "list", "data": []})),
    );
    let p = build("openai", settings(&mock, json!({}))).unwrap();
    p.preflight(&CallCtx::detached()).await.expect("up");
    assert_eq!(mock.last().path(), "/v1/models");
    // A server that wants a key is still there.
    mock.reset();
    mock.route(
        "GET",
        "/v1/models",
        Reply::json(
            401,
            json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}),
        ),
    );
    p.preflight(&CallCtx::detached())
        .await
        .expect("401 means a server answered");
    // A base URL without its /v1 finds nothing there.
    mock.reset();
    let e = p.preflight(&CallCtx::detached()).await.unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
    // OpenAI's own API is not asked (this would otherwise try the network).
    let official = build("openai", json!({"api_key": "not-a-real-key"})).unwrap();
    official.preflight(&CallCtx::detached()).await.expect("not checked");
}

#[tokio::test]
async fn temperature_goes_out_as_written_not_widened() {
    let mock = MockServer::start().await;
    mock.route("POST", "/v1/chat/completions", chat_ok());
    let p = build("openai", settings(&mock, json!({}))).unwrap();
    let mut req = Request::new(Task::Text, "a tagline");
    req.params.temperature = Some(0.7);
    p.generate(&req, &CallCtx::detached()).await.unwrap();
    let sent = mock.last().text();
    assert!(
        sent.contains("\"temperature\":0.7") && !sent.contains("0.6999"),
        "{sent}"
    );
}

#[tokio::test]
async fn a_surprising_usage_block_keeps_the_images_and_falls_back_to_the_image_price() {
    let mock = MockServer::start().await;
    let body = json!({
        "created": 1, "data": [{"b64_json": b64(PNG)}],
        "usage": {"input_tokens": -5, "output_tokens": "many", "input_tokens_details": "n/a"}
    });
    mock.route("POST", "/v1/images/generations", Reply::json(200, body));
    let p = build("openai", settings(&mock, json!({"model": "dall-e-3"}))).unwrap();
    let g = p
        .generate(&Request::new(Task::Image, "a lighthouse"), &CallCtx::detached())
        .await
        .unwrap();
    assert_eq!(g.artifacts.len(), 1);
    assert_eq!(g.usage.input_tokens, None);
    assert_eq!(g.usage.output_tokens, None);
    assert!(g.usage.cost_usd > 0.0, "priced per image instead: {}", g.usage.cost_usd);

    // A usage that is not an object at all is ignored too.
    mock.reset();
    let body = json!({"created": 1, "data": [{"b64_json": b64(PNG)}], "usage": "unavailable"});
    mock.route("POST", "/v1/images/generations", Reply::json(200, body));
    let g = p
        .generate(&Request::new(Task::Image, "a lighthouse"), &CallCtx::detached())
        .await
        .unwrap();
    assert_eq!(g.artifacts.len(), 1);
}

#[tokio::test]
async fn a_chat_usage_with_negative_counts_keeps_the_text() {
    let mock = MockServer::start().await;
    let body = json!({
        "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": -1}
    });
    mock.route("POST", "/v1/chat/completions", Reply::json(200, body));
    let p = build("openai", settings(&mock, json!({}))).unwrap();
    let g = p
        .generate(&Request::new(Task::Text, "hi"), &CallCtx::detached())
        .await
        .unwrap();
    assert_eq!(g.artifacts[0].text(), Some("ok"));
    assert_eq!(g.usage.input_tokens, Some(12));
    assert_eq!(g.usage.output_tokens, None);
}
