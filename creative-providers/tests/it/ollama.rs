//! `ollama` against a loopback mock of Ollama's native API.
#![cfg(feature = "ollama")]

use crate::support;

use creative_core::{Artifact, CallCtx, ErrorKind, MediaType, Request, Task};
use serde_json::json;
use support::{build, failure_suite, Conformance, MockServer, Reply};

const KEY: &str = "ollama-cloud-key-5d1e";

fn chat_ok() -> Reply {
    Reply::json(
        200,
        json!({
            "model": "llama3.2", "created_at": "2025-10-26T17:21:21.196249Z",
            "message": {"role": "assistant", "content": "A mug that warms mornings."},
            "done": true, "done_reason": "stop",
            "total_duration": 4883583458u64, "load_duration": 1334875, "prompt_eval_count": 26,
            "prompt_eval_duration": 342546000, "eval_count": 282, "eval_duration": 4535599000u64
        }),
    )
}

fn generate_ok() -> Reply {
    Reply::json(
        200,
        json!({
            "model": "llama3.2", "created_at": "2023-08-04T19:22:45.499127Z",
            "response": "The sky is blue because of Rayleigh scattering.", "done": true, "done_reason": "stop",
            "context": [1, 2, 3], "prompt_eval_count": 10, "eval_count": 20
        }),
    )
}

#[tokio::test]
async fn chat_sends_messages_images_and_options_without_streaming() {
    let mock = MockServer::start().await;
    mock.route("POST", "/api/chat", chat_ok());
    let p = build(
        "ollama",
        json!({"base_url": mock.url(), "model": "llava", "prices": {"llava": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}}),
    )
    .unwrap();
    let mut req = Request::new(Task::Text, "describe this mug");
    req.params.system = Some("Be brief.".into());
    req.params.temperature = Some(0.2);
    req.params.seed = Some(42);
    req.inputs
        .push(Artifact::new(MediaType::Png, b"\x89PNG\r\n\x1a\n".to_vec()));
    req.raw.insert("think".into(), json!(false));
    let g = p.generate(&req, &CallCtx::detached()).await.unwrap();
    let r = mock.last();
    assert_eq!(r.path(), "/api/chat");
    assert_eq!(r.header("authorization"), None, "no key configured, no header");
    let b = r.json();
    assert_eq!(b["model"], "llava");
    assert_eq!(b["stream"], false);
    assert_eq!(b["messages"][0], json!({"role": "system", "content": "Be brief."}));
    assert_eq!(b["messages"][1]["content"], "describe this mug");
    assert_eq!(b["messages"][1]["images"], json!(["iVBORw0KGgo="]));
    assert_eq!(b["options"]["seed"], 42);
    assert!((b["options"]["temperature"].as_f64().unwrap() - 0.2).abs() < 1e-6);
    assert_eq!(b["think"], false, "raw reaches the wire");
    assert_eq!(g.artifacts[0].text(), Some("A mug that warms mornings."));
    assert_eq!(g.usage.input_tokens, Some(26));
    assert_eq!(g.usage.output_tokens, Some(282));
    // llama3.2 answered although llava was asked: the price follows the answering model.
    assert_eq!(g.usage.cost_usd, 0.0);
}

#[tokio::test]
async fn generate_endpoint_and_cloud_key() {
    let mock = MockServer::start().await;
    mock.route("POST", "/api/generate", generate_ok());
    let p = build(
        "ollama",
        json!({"base_url": mock.url(), "endpoint": "generate", "api_key": KEY,
               "prices": {"llama3.2": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}}),
    )
    .unwrap();
    let mut req = Request::new(Task::Text, "Why is the sky blue?");
    req.params.max_tokens = Some(64);
    let g = p.generate(&req, &CallCtx::detached()).await.unwrap();
    let r = mock.last();
    assert_eq!(r.header("authorization"), Some(&*format!("Bearer {KEY}")));
    let b = r.json();
    assert_eq!(b["prompt"], "Why is the sky blue?");
    assert_eq!(b["options"]["num_predict"], 64);
    assert_eq!(
        g.artifacts[0].text(),
        Some("The sky is blue because of Rayleigh scattering.")
    );
    assert!((g.usage.cost_usd - (10.0 + 40.0) / 1e6).abs() < 1e-12);
}

#[tokio::test]
async fn an_error_inside_a_200_answer_is_a_failure() {
    let mock = MockServer::start().await;
    mock.route(
        "POST",
        "/api/chat",
        Reply::json(
            200,
            json!({"error": "an error was encountered while running the model"}),
        ),
    );
    let p = build("ollama", json!({"base_url": mock.url()})).unwrap();
    let e = p
        .generate(&Request::new(Task::Text, "x"), &CallCtx::detached())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient);
    assert!(e.message().contains("running the model"));
}

#[tokio::test]
async fn a_missing_model_is_invalid_with_ollamas_message() {
    let mock = MockServer::start().await;
    mock.route(
        "POST",
        "/api/chat",
        Reply::json(404, json!({"error": "model \"nope\" not found, try pulling it first"})),
    );
    let p = build("ollama", json!({"base_url": mock.url(), "model": "nope"})).unwrap();
    let e = p
        .generate(&Request::new(Task::Text, "x"), &CallCtx::detached())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert_eq!(e.message(), "model \"nope\" not found, try pulling it first");
    assert_eq!(e.status(), Some(404));
}

#[tokio::test]
async fn image_tasks_are_refused_before_any_request() {
    let mock = MockServer::start().await;
    let p = build("ollama", json!({"base_url": mock.url()})).unwrap();
    let e = p
        .generate(&Request::new(Task::Image, "x"), &CallCtx::detached())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(mock.requests().is_empty());
}

fn conformance(endpoint: &'static str, path: &'static str, ok: Reply) -> Conformance {
    Conformance {
        kind: "ollama",
        settings: json!({"api_key": KEY, "endpoint": endpoint}),
        request: Request::new(Task::Text, "hello"),
        method: "POST",
        path,
        ok,
        malformed: Reply::raw_json(200, "{\"model\":\"llama3.2\",\"message\":{\"content\":"),
        content_policy: Some(Reply::json(
            400,
            json!({"error": "prompt rejected: content policy violation"}),
        )),
        auth: Reply::json(401, json!({"error": "unauthorized"})),
        rate_limited: Reply::json(429, json!({"error": "too many requests"})),
        secret: KEY,
        routes: vec![],
    }
}

#[tokio::test]
async fn chat_passes_the_failure_suite() {
    failure_suite(conformance("chat", "/api/chat", chat_ok())).await;
}

#[tokio::test]
async fn generate_passes_the_failure_suite() {
    failure_suite(conformance("generate", "/api/generate", generate_ok())).await;
}

#[tokio::test]
async fn preflight_asks_the_version_endpoint() {
    let mock = MockServer::start().await;
    mock.route("GET", "/api/version", Reply::json(200, json!({"version": "0.12.6"})));
    let p = build("ollama", json!({"base_url": mock.url(), "model": "llama3.2"})).unwrap();
    p.preflight(&CallCtx::detached()).await.expect("the server is up");
    assert_eq!(mock.requests().last().unwrap().path(), "/api/version");
    let empty = MockServer::start().await;
    let p = build("ollama", json!({"base_url": empty.url(), "model": "llama3.2"})).unwrap();
    assert!(
        p.preflight(&CallCtx::detached()).await.is_err(),
        "a server without the endpoint is not Ollama"
    );
}

#[tokio::test]
async fn a_raw_options_table_adds_to_the_typed_options() {
    let mock = MockServer::start().await;
    mock.route("POST", "/api/chat", chat_ok());
    let p = build("ollama", json!({"base_url": mock.url()})).unwrap();
    let mut req = Request::new(Task::Text, "hi");
    req.params.temperature = Some(0.7);
    req.params.seed = Some(42);
    req.params.max_tokens = Some(64);
    req.raw
        .insert("options".into(), json!({"num_ctx": 8192, "num_predict": 128}));
    p.generate(&req, &CallCtx::detached()).await.unwrap();
    let r = mock.last();
    assert_eq!(
        r.json()["options"],
        json!({"temperature": 0.7, "seed": 42, "num_predict": 128, "num_ctx": 8192})
    );
    assert!(
        r.text().contains("\"temperature\":0.7") && !r.text().contains("0.6999"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn odd_token_counts_are_ignored_not_fatal() {
    let mock = MockServer::start().await;
    mock.route(
        "POST",
        "/api/chat",
        Reply::json(
            200,
            json!({"model": "llama3.2", "message": {"role": "assistant", "content": "ok"}, "done": true,
                   "prompt_eval_count": -1, "eval_count": "20"}),
        ),
    );
    let p = build("ollama", json!({"base_url": mock.url()})).unwrap();
    let g = p
        .generate(&Request::new(Task::Text, "hi"), &CallCtx::detached())
        .await
        .unwrap();
    assert_eq!(g.artifacts[0].text(), Some("ok"));
    assert_eq!(g.usage.input_tokens, None);
    assert_eq!(g.usage.output_tokens, None);
}
