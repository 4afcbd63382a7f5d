//! The `stability` backend against a loopback mock of the v2beta stable-image
//! generate endpoints (multipart in; image bytes with `finish-reason`/`seed`
//! headers, or JSON, out; `{name, errors[]}` error bodies).

use crate::support;

use creative_core::{Artifact, CallCtx, ErrorKind, MediaType, Request, Task};
use serde_json::json;
use support::{build, failure_suite, Conformance, MockServer, Reply};

const PATH: &str = "/v2beta/stable-image/generate/core";
const KEY: &str = "sk-stab-secret-123";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\nfake-image-bytes";

fn ok() -> Reply {
    Reply::bytes(200, "image/png", PNG.to_vec())
        .header("finish-reason", "SUCCESS")
        .header("seed", "1234")
}

fn req() -> Request {
    let mut r = Request::new(Task::Image, "a lighthouse at dusk");
    r.negative_prompt = Some("people".into());
    r.params.seed = Some(7);
    r.params.width = Some(1920);
    r.params.height = Some(1080);
    r
}

#[tokio::test]
async fn conformance_failure_suite() {
    failure_suite(Conformance {
        kind: "stability",
        settings: json!({"api_key": KEY}),
        request: req(),
        method: "POST",
        path: PATH,
        ok: ok(),
        malformed: Reply::raw_json(200, "{\"image\": \"iVBOR"),
        content_policy: Some(Reply::json(
            403,
            json!({"id": "e1", "name": "content_moderation",
                   "errors": ["Your request was flagged by our content moderation system, as a result your request was denied and you were not charged."]}),
        )),
        auth: Reply::json(401, json!({"id": "e2", "name": "unauthorized", "errors": ["authorization: invalid or missing header value"]})),
        rate_limited: Reply::json(
            429,
            json!({"id": "e3", "name": "rate_limit_exceeded", "errors": ["You have exceeded the rate limit of 150 requests within a 10 second period"]}),
        ),
        secret: KEY,
        routes: vec![],
    })
    .await;
}

#[tokio::test]
async fn image_mode_sends_the_form_and_reads_headers() {
    let mock = MockServer::start().await;
    mock.route("POST", PATH, ok());
    let p = build("stability", json!({"api_key": KEY, "base_url": mock.url()})).unwrap();
    let mut r = req();
    r.raw.insert("style_preset".into(), json!("cinematic"));
    let g = p.generate(&r, &CallCtx::detached()).await.unwrap();
    assert_eq!(g.artifacts.len(), 1);
    assert_eq!(g.artifacts[0].data().as_ref(), PNG);
    assert_eq!(g.artifacts[0].media(), &MediaType::Png);
    assert_eq!(g.artifacts[0].meta().extra["seed"], 1234);
    assert!(
        (g.usage.cost_usd - 0.03).abs() < 1e-9,
        "core is 3 credits: {}",
        g.usage.cost_usd
    );

    let sent = mock.last();
    assert_eq!(sent.header("accept"), Some("image/*"));
    assert_eq!(sent.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    assert!(sent.header("content-type").unwrap().starts_with("multipart/form-data"));
    let body = sent.text();
    for (k, v) in [
        ("prompt", "a lighthouse at dusk"),
        ("negative_prompt", "people"),
        ("seed", "7"),
        ("aspect_ratio", "16:9"),
        ("output_format", "png"),
        ("style_preset", "cinematic"),
    ] {
        assert!(
            body.contains(&format!("name=\"{k}\"\r\n\r\n{v}\r\n")),
            "field {k}={v} missing in:\n{body}"
        );
    }
}

#[tokio::test]
async fn json_mode_decodes_base64_and_finish_reason() {
    let mock = MockServer::start().await;
    let b64 = "iVBORw0KGgpmYWtl"; // PNG signature + "fake"
    mock.route(
        "POST",
        "/v2beta/stable-image/generate/sd3",
        Reply::json(200, json!({"image": b64, "finish_reason": "SUCCESS", "seed": 99})),
    );
    let p = build(
        "stability",
        json!({"api_key": KEY, "base_url": mock.url(), "accept": "json", "model": "sd3.5-large"}),
    )
    .unwrap();
    let g = p.generate(&req(), &CallCtx::detached()).await.unwrap();
    assert!(g.artifacts[0].data().starts_with(b"\x89PNG"));
    assert_eq!(g.artifacts[0].meta().extra["seed"], 99);
    let sent = mock.last();
    assert_eq!(sent.header("accept"), Some("application/json"));
    assert!(sent.text().contains("name=\"model\"\r\n\r\nsd3.5-large\r\n"));
    assert!(sent.text().contains("name=\"mode\"\r\n\r\ntext-to-image\r\n"));
    assert!((p.estimate_cost(&req()) - 0.065).abs() < 1e-9);
}

#[tokio::test]
async fn content_filtered_finish_reason_is_a_content_policy_refusal() {
    let mock = MockServer::start().await;
    mock.route(
        "POST",
        PATH,
        Reply::bytes(200, "image/png", PNG.to_vec()).header("finish-reason", "CONTENT_FILTERED"),
    );
    let p = build("stability", json!({"api_key": KEY, "base_url": mock.url()})).unwrap();
    let e = p.generate(&req(), &CallCtx::detached()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ContentPolicy, "{e}");
    let mock2 = MockServer::start().await;
    mock2.route(
        "POST",
        PATH,
        Reply::json(
            200,
            json!({"image": "", "finish_reason": "CONTENT_FILTERED", "seed": 1}),
        ),
    );
    let p = build(
        "stability",
        json!({"api_key": KEY, "base_url": mock2.url(), "accept": "json"}),
    )
    .unwrap();
    assert_eq!(
        p.generate(&req(), &CallCtx::detached()).await.unwrap_err().kind(),
        ErrorKind::ContentPolicy
    );
}

#[tokio::test]
async fn several_candidates_make_several_calls_with_successive_seeds_and_edits_send_the_image() {
    let mock = MockServer::start().await;
    mock.route("POST", "/v2beta/stable-image/generate/ultra", ok());
    let p = build(
        "stability",
        json!({"api_key": KEY, "base_url": mock.url(), "model": "ultra"}),
    )
    .unwrap();
    let mut r = req();
    r.params.count = Some(3);
    let g = p.generate(&r, &CallCtx::detached()).await.unwrap();
    assert_eq!(g.artifacts.len(), 3);
    assert!((g.usage.cost_usd - 0.24).abs() < 1e-9);
    let seeds: Vec<String> = mock
        .requests()
        .iter()
        .map(|q| {
            q.text()
                .split("name=\"seed\"\r\n\r\n")
                .nth(1)
                .unwrap()
                .split("\r\n")
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(seeds, vec!["7", "8", "9"]);
    let recorded: Vec<Option<u64>> = g.artifacts.iter().map(|a| a.provenance().seed).collect();
    assert_eq!(
        recorded,
        vec![Some(7), Some(8), Some(9)],
        "each image records the seed it was made with"
    );

    mock.reset();
    mock.route("POST", "/v2beta/stable-image/generate/ultra", ok());
    let mut edit = Request::new(Task::ImageEdit, "make it night");
    edit.inputs.push(Artifact::new(MediaType::Png, PNG.to_vec()));
    p.generate(&edit, &CallCtx::detached()).await.unwrap();
    let body = mock.last().text();
    assert!(body.contains("name=\"image\"; filename=\"input.png\""), "{body}");
    assert!(body.contains("name=\"strength\""));
}

#[test]
fn settings_need_a_key_and_a_known_model() {
    assert!(
        build("stability", json!({"api_key_env": "CREATIVE_TEST_UNSET_STABILITY"}))
            .err()
            .unwrap()
            .to_string()
            .contains("CREATIVE_TEST_UNSET_STABILITY")
    );
    let e = build("stability", json!({"api_key": "k", "model": "dalle"}))
        .err()
        .unwrap();
    assert!(e.field() == "model" && e.reason().contains("unknown model"), "{e}");
    let e = build("stability", json!({"api_key": "k", "accept": "xml"}))
        .err()
        .unwrap();
    assert_eq!(e.field(), "accept", "{e}");
}

#[tokio::test]
async fn the_key_never_shows_in_debug_or_in_errors_that_echo_it() {
    let mock = MockServer::start().await;
    let p = build("stability", json!({"api_key": KEY, "base_url": mock.url()})).unwrap();
    mock.route(
        "POST",
        PATH,
        Reply::json(
            401,
            json!({"name": "unauthorized", "errors": [format!("bad key {KEY}")]}),
        ),
    );
    let e = p.generate(&req(), &CallCtx::detached()).await.unwrap_err();
    let shown = format!("{e} {e:?} {} {}", e.body().unwrap_or(""), e.message());
    assert!(!shown.contains(KEY), "{shown}");
    assert_eq!(
        mock.last().header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
}

#[tokio::test]
async fn preflight_asks_the_balance_with_the_key() {
    let mock = MockServer::start().await;
    mock.route("GET", "/v1/user/balance", Reply::json(200, json!({"credits": 12.5})));
    let p = build("stability", json!({"api_key": KEY, "base_url": mock.url()})).unwrap();
    p.preflight(&CallCtx::detached()).await.unwrap();
    let r = mock.last();
    assert_eq!((r.method.as_str(), r.path()), ("GET", "/v1/user/balance"));
    assert_eq!(r.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    mock.reset();
    mock.route(
        "GET",
        "/v1/user/balance",
        Reply::json(
            401,
            json!({"id": "x", "name": "unauthorized", "message": "missing authorization header"}),
        ),
    );
    let e = p.preflight(&CallCtx::detached()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth);
}
