//! Every backend's typed builder makes the provider its settings table makes:
//! the same fingerprint and, against the loopback server, the same requests.
//! A bad value is refused with its field named as the table spells it.

use std::sync::Arc;
use std::time::Duration;

use crate::support::{self, build, with, MockServer};
use creative_core::{CallCtx, ConfigError, Provider, Request, Task};
use serde_json::{json, Value};

/// One backend: its kind, its own settings (besides the shared ones every
/// case gets), the same values through its builder, and a request it serves.
struct Case {
    kind: &'static str,
    own: Value,
    builder: fn(&str) -> Result<Arc<dyn Provider>, ConfigError>,
    request: Request,
}

/// The shared settings every case sets, through the table and the builder alike.
fn shared(base_url: &str) -> Value {
    json!({
        "base_url": base_url,
        "api_key": "k-builder-test",
        "timeout_s": 5,
        "headers": {"x-org": "acme"},
        "prices": {"m-test": {"image": {"*": 0.5}}}
    })
}

macro_rules! shared_setters {
    ($b:expr, $url:expr) => {
        $b.id("p")
            .base_url($url)
            .api_key("k-builder-test")
            .timeout(Duration::from_secs(5))
            .header("x-org", "acme")
            .prices(json!({"m-test": {"image": {"*": 0.5}}}))
    };
}

fn image() -> Request {
    let mut r = Request::new(Task::Image, "a mug");
    r.params.width = Some(512);
    r.params.height = Some(512);
    r.params.seed = Some(7);
    r
}

fn cases() -> Vec<Case> {
    use creative_providers::{comfyui, elevenlabs, fal, gemini, ollama, openai, replicate, stability};
    vec![
        Case {
            kind: "openai",
            own: json!({"model": "dall-e-3", "text_model": "gpt-4o", "response_format": "url", "max_count": 2}),
            builder: |u| {
                let b = shared_setters!(openai::OpenAi::builder(), u)
                    .model("dall-e-3")
                    .text_model("gpt-4o")
                    .response_format("url")
                    .max_count(2);
                Ok(Arc::new(b.build()?))
            },
            request: image(),
        },
        Case {
            kind: "ollama",
            own: json!({"model": "qwen3", "endpoint": "generate"}),
            builder: |u| {
                Ok(Arc::new(
                    shared_setters!(ollama::Ollama::builder(), u)
                        .model("qwen3")
                        .endpoint("generate")
                        .build()?,
                ))
            },
            request: Request::new(Task::Text, "a tagline"),
        },
        Case {
            kind: "gemini",
            own: json!({"image_model": "imagen-4", "poll_interval_s": 0.5}),
            builder: |u| {
                let b = shared_setters!(gemini::Gemini::builder(), u)
                    .image_model("imagen-4")
                    .poll_interval(Duration::from_millis(500));
                Ok(Arc::new(b.build()?))
            },
            request: image(),
        },
        Case {
            kind: "elevenlabs",
            own: json!({"voice_id": "v1", "output_format": "pcm_16000"}),
            builder: |u| {
                let b = shared_setters!(elevenlabs::ElevenLabs::builder(), u)
                    .voice_id("v1")
                    .output_format("pcm_16000");
                Ok(Arc::new(b.build()?))
            },
            request: Request::new(Task::Audio, "hello"),
        },
        Case {
            kind: "stability",
            own: json!({"model": "ultra", "accept": "json", "max_count": 2}),
            builder: |u| {
                let b = shared_setters!(stability::Stability::builder(), u)
                    .model("ultra")
                    .accept("json")
                    .max_count(2);
                Ok(Arc::new(b.build()?))
            },
            request: image(),
        },
        Case {
            kind: "replicate",
            own: json!({"model": "owner/name", "wait_s": 0, "poll_interval_ms": 5, "poll_max_ms": 10}),
            builder: |u| {
                let b = shared_setters!(replicate::Replicate::builder(), u)
                    .model("owner/name")
                    .wait_s(0)
                    .poll_interval(Duration::from_millis(5))
                    .poll_max(Duration::from_millis(10));
                Ok(Arc::new(b.build()?))
            },
            request: image(),
        },
        Case {
            kind: "fal",
            own: json!({"model": "fal-ai/flux/dev", "poll_interval_ms": 5, "max_count": 3}),
            builder: |u| {
                let b = shared_setters!(fal::Fal::builder(), u)
                    .model("fal-ai/flux/dev")
                    .poll_interval(Duration::from_millis(5))
                    .max_count(3);
                Ok(Arc::new(b.build()?))
            },
            request: image(),
        },
        Case {
            kind: "comfyui",
            own: json!({
                "workflow": support::comfyui_workflow(),
                "inject": {"prompt": "6.inputs.text", "seed": ["3.inputs.seed"]},
                "client_id": "c-1",
                "websocket": false,
                "poll_interval_ms": 5,
                "max_batch": 4
            }),
            builder: |u| {
                let b = shared_setters!(comfyui::ComfyUi::builder(), u)
                    .workflow(support::comfyui_workflow())
                    .inject("prompt", "6.inputs.text")
                    .inject("seed", "3.inputs.seed")
                    .client_id("c-1")
                    .websocket(false)
                    .poll_interval(Duration::from_millis(5))
                    .max_batch(4);
                Ok(Arc::new(b.build()?))
            },
            request: image(),
        },
    ]
}

/// What a request says, minus what varies per call: a multipart boundary is
/// random, so it is replaced by a fixed word in the body and the header.
fn shape(r: &support::Recorded) -> (String, String, String, Vec<(String, String)>) {
    const KEPT: &[&str] = &[
        "authorization",
        "x-goog-api-key",
        "xi-api-key",
        "x-org",
        "content-type",
        "prefer",
    ];
    let boundary = r
        .header("content-type")
        .and_then(|c| c.split_once("boundary="))
        .map(|(_, b)| b.to_string());
    let fixed = |s: &str| match &boundary {
        Some(b) => s.replace(b.as_str(), "BOUNDARY"),
        None => s.to_string(),
    };
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(k, _)| KEPT.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), fixed(v)))
        .collect();
    headers.sort();
    (
        r.method.clone(),
        r.target.clone(),
        per_call_ids(&fixed(&r.text())),
        headers,
    )
}

/// ComfyUI's ids are fresh per call: its client id gets a suffix
/// (`c-1-<hex>`) and each prompt a random id; keep the configured part only.
fn per_call_ids(body: &str) -> String {
    let mut out = body.to_string();
    for marker in ["\"c-1-", "\"prompt_id\":\""] {
        if let Some((head, tail)) = out.split_once(marker) {
            let rest = tail.trim_start_matches(|c: char| c.is_ascii_hexdigit());
            out = format!("{head}{marker}{rest}");
        }
    }
    out
}

#[tokio::test]
async fn a_builder_made_provider_sends_what_the_settings_made_one_sends() {
    let mock = MockServer::start().await;
    for case in cases() {
        let from_table = build(case.kind, with(shared(&mock.url()), case.own.clone()))
            .unwrap_or_else(|e| panic!("{}: the table builds: {e}", case.kind));
        let from_builder =
            (case.builder)(&mock.url()).unwrap_or_else(|e| panic!("{}: the builder builds: {e}", case.kind));
        assert_eq!(
            from_table.fingerprint(),
            from_builder.fingerprint(),
            "{}: the same settings fingerprint",
            case.kind
        );
        assert_eq!(from_builder.id(), "p", "{}", case.kind);
        assert_eq!(
            from_table.estimate_cost(&case.request),
            from_builder.estimate_cost(&case.request),
            "{}: the same prices",
            case.kind
        );

        // Nothing is routed: the server answers 404, so each provider stops
        // after its first request, which is the one compared.
        let mut seen = Vec::new();
        for p in [&from_table, &from_builder] {
            mock.reset();
            let out = p.generate(&case.request, &CallCtx::detached()).await;
            let e = out
                .err()
                .unwrap_or_else(|| panic!("{}: a 404 fails the call", case.kind));
            assert!(!format!("{e} {e:?}").contains("k-builder-test"), "{}: {e}", case.kind);
            seen.push((mock.requests().iter().map(shape).collect::<Vec<_>>(), e.kind()));
        }
        assert!(!seen[0].0.is_empty(), "{}: a request reached the server", case.kind);
        assert_eq!(seen[0], seen[1], "{}: the same requests and failure", case.kind);
    }
}

#[test]
fn a_builder_names_the_field_it_refuses_and_never_prints_the_key() {
    use creative_providers::{comfyui, fal, gemini, ollama, openai, procedural, replicate, stability};
    let refused: Vec<(&str, Result<(), ConfigError>)> = vec![
        (
            "base_url",
            openai::OpenAi::builder().base_url("ftp://x").build().map(drop),
        ),
        (
            "timeout_s",
            openai::OpenAi::builder().timeout(Duration::ZERO).build().map(drop),
        ),
        (
            "max_response_bytes",
            ollama::Ollama::builder().max_response_bytes(0).build().map(drop),
        ),
        (
            "headers.bad header",
            ollama::Ollama::builder().header("bad header", "x").build().map(drop),
        ),
        (
            "response_format",
            openai::OpenAi::builder().response_format("png").build().map(drop),
        ),
        (
            "endpoint",
            ollama::Ollama::builder().endpoint("stream").build().map(drop),
        ),
        (
            "poll_interval_s",
            gemini::Gemini::builder()
                .poll_interval(Duration::from_secs(7200))
                .build()
                .map(drop),
        ),
        (
            "model",
            stability::Stability::builder()
                .api_key("k")
                .model("dalle")
                .build()
                .map(drop),
        ),
        (
            "wait_s",
            replicate::Replicate::builder()
                .api_key("k")
                .wait_s(61)
                .build()
                .map(drop),
        ),
        (
            "model",
            fal::Fal::builder().api_key("k").model("flux").build().map(drop),
        ),
        (
            "api_key_env",
            fal::Fal::builder()
                .api_key_env("CREATIVE_BUILDERS_TEST_UNSET")
                .build()
                .map(drop),
        ),
        (
            "max_batch",
            comfyui::ComfyUi::builder()
                .workflow(support::comfyui_workflow())
                .max_batch(0)
                .build()
                .map(drop),
        ),
        (
            "failure_rate",
            procedural::Procedural::builder().failure_rate(2.0).build().map(drop),
        ),
        (
            "failure_kind",
            procedural::Procedural::builder()
                .failure_kind(creative_core::ErrorKind::Budget)
                .build()
                .map(drop),
        ),
    ];
    for (field, result) in refused {
        let e = result.expect_err(field);
        assert_eq!(e.field(), field, "{e}");
        assert!(!e.reason().is_empty(), "{field}: a reason");
    }
    let b = openai::OpenAi::builder()
        .api_key("sk-never-shown")
        .header("x-org", "org-never-shown");
    let shown = format!("{b:?}");
    assert!(!shown.contains("never-shown"), "{shown}");
}
