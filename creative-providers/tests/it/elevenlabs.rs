//! `elevenlabs` against a loopback mock of the ElevenLabs text-to-speech API.
#![cfg(feature = "elevenlabs")]

use crate::support;

use creative_core::{CallCtx, ErrorKind, MediaType, Request, Task};
use serde_json::json;
use support::{build, failure_suite, Conformance, MockServer, Reply};

const KEY: &str = "sk_eleven_test_0b9f";
const VOICE: &str = "JBFqnCBsd6RMkjVDRZzb";

fn mp3() -> Vec<u8> {
    let mut v = b"ID3\x04\0\0\0\0\0\0".to_vec();
    v.extend_from_slice(&[0xAAu8; 600]);
    v
}

fn audio_ok() -> Reply {
    Reply::bytes(200, "audio/mpeg", mp3()).header("request-id", "el-req-1")
}

fn detail(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(status, json!({"detail": {"status": code, "message": message}}))
}

#[tokio::test]
async fn speech_is_posted_to_the_voice_with_key_format_and_body() {
    let mock = MockServer::start().await;
    let path = format!("/v1/text-to-speech/{VOICE}");
    mock.route("POST", &path, audio_ok().header("x-character-count", "2000"));
    let p = build("elevenlabs", json!({"base_url": mock.url(), "api_key": KEY})).unwrap();
    let mut req = Request::new(Task::Audio, "The first move is what sets everything in motion.");
    req.params.voice = Some(VOICE.into());
    req.params.seed = Some(5);
    req.raw.insert(
        "voice_settings".into(),
        json!({"stability": 0.5, "similarity_boost": 0.75}),
    );
    let g = p.generate(&req, &CallCtx::detached()).await.unwrap();
    let r = mock.last();
    assert_eq!(r.path(), path);
    assert_eq!(r.query("output_format").as_deref(), Some("mp3_44100_128"));
    assert_eq!(r.header("xi-api-key"), Some(KEY));
    let b = r.json();
    assert_eq!(b["text"], "The first move is what sets everything in motion.");
    assert_eq!(b["model_id"], "eleven_multilingual_v2");
    assert_eq!(b["seed"], 5);
    assert_eq!(
        b["voice_settings"],
        json!({"stability": 0.5, "similarity_boost": 0.75}),
        "raw reaches the wire"
    );
    assert_eq!(g.artifacts[0].media(), &MediaType::Mp3);
    assert_eq!(&g.artifacts[0].data()[..], &mp3()[..]);
    assert_eq!(g.artifacts[0].meta().extra["request_id"], "el-req-1");
    // 2000 characters (the server's count) at $0.30 per thousand.
    assert_eq!(g.usage.units, Some(2000.0));
    assert!((g.usage.cost_usd - 0.6).abs() < 1e-12);
}

#[tokio::test]
async fn the_settings_voice_and_format_are_defaults_and_characters_are_counted_locally() {
    let mock = MockServer::start().await;
    mock.route(
        "POST",
        "/v1/text-to-speech/voice_b",
        Reply::bytes(200, "audio/pcm", vec![0u8; 320]),
    );
    let p = build(
        "elevenlabs",
        json!({"base_url": mock.url(), "api_key": KEY, "voice_id": "voice_b", "output_format": "pcm_16000",
               "model": "eleven_flash_v2_5"}),
    )
    .unwrap();
    let req = Request::new(Task::Audio, "héllo");
    let g = p.generate(&req, &CallCtx::detached()).await.unwrap();
    assert_eq!(mock.last().query("output_format").as_deref(), Some("pcm_16000"));
    assert_eq!(g.artifacts[0].media().as_str(), "audio/pcm");
    assert_eq!(g.usage.units, Some(5.0), "characters, not bytes");
    assert!((g.usage.cost_usd - 5.0 * 0.15 / 1000.0).abs() < 1e-12);
    assert!((p.estimate_cost(&req) - g.usage.cost_usd).abs() < 1e-12);
}

#[tokio::test]
async fn quota_and_validation_errors_keep_the_providers_words() {
    let mock = MockServer::start().await;
    let path = format!("/v1/text-to-speech/{VOICE}");
    mock.route(
        "POST",
        &path,
        detail(401, "quota_exceeded", "This request exceeds your quota."),
    );
    let p = build(
        "elevenlabs",
        json!({"base_url": mock.url(), "api_key": KEY, "voice_id": VOICE}),
    )
    .unwrap();
    let e = p
        .generate(&Request::new(Task::Audio, "x"), &CallCtx::detached())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth);
    assert!(e.message().contains("exceeds your quota"), "{e}");
    mock.reset();
    mock.route(
        "POST",
        &path,
        Reply::json(
            422,
            json!({"detail": [{"loc": ["body", "text"], "msg": "field required", "type": "value_error.missing"}]}),
        ),
    );
    let e = p
        .generate(&Request::new(Task::Audio, "x"), &CallCtx::detached())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert_eq!(e.message(), "field required");
}

#[tokio::test]
async fn other_tasks_and_bad_voices_never_reach_the_server() {
    let mock = MockServer::start().await;
    let p = build(
        "elevenlabs",
        json!({"base_url": mock.url(), "api_key": KEY, "voice_id": VOICE}),
    )
    .unwrap();
    let e = p
        .generate(&Request::new(Task::Image, "x"), &CallCtx::detached())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    let mut req = Request::new(Task::Audio, "x");
    req.params.voice = Some("../../v1/user".into());
    let e = p.generate(&req, &CallCtx::detached()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn speech_passes_the_failure_suite() {
    let mut request = Request::new(Task::Audio, "hello there");
    request.params.voice = Some(VOICE.into());
    failure_suite(Conformance {
        kind: "elevenlabs",
        settings: json!({"api_key": KEY}),
        request,
        method: "POST",
        path: "/v1/text-to-speech/JBFqnCBsd6RMkjVDRZzb",
        ok: audio_ok(),
        malformed: Reply::raw_json(200, "{\"detail\": {\"sta"),
        content_policy: Some(detail(
            400,
            "content_against_policy",
            "The text violates our terms of service.",
        )),
        auth: detail(401, "invalid_api_key", "Invalid API key"),
        rate_limited: detail(429, "too_many_concurrent_requests", "Too many concurrent requests."),
        secret: KEY,
        routes: vec![],
    })
    .await;
}

#[tokio::test]
async fn preflight_looks_up_the_configured_voice_else_the_models() {
    let mock = MockServer::start().await;
    mock.route(
        "GET",
        &format!("/v1/voices/{VOICE}"),
        Reply::json(200, json!({"voice_id": VOICE, "name": "George"})),
    );
    mock.route(
        "GET",
        "/v1/models",
        Reply::json(200, json!([{"model_id": "eleven_multilingual_v2"}])),
    );
    let p = build(
        "elevenlabs",
        json!({"api_key": KEY, "base_url": mock.url(), "voice_id": VOICE}),
    )
    .unwrap();
    p.preflight(&CallCtx::detached()).await.unwrap();
    let r = mock.last();
    assert_eq!(r.path(), format!("/v1/voices/{VOICE}"));
    assert_eq!(r.header("xi-api-key"), Some(KEY));
    let p = build("elevenlabs", json!({"api_key": KEY, "base_url": mock.url()})).unwrap();
    p.preflight(&CallCtx::detached()).await.unwrap();
    assert_eq!(mock.last().path(), "/v1/models");
}
