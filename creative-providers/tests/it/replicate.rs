//! The `replicate` backend against a loopback mock of Replicate's predictions API
//! (model and version forms, `Prefer: wait`, polling `urls.get`, cancel, output
//! URLs, problem+json errors).

use crate::support;

use std::time::Duration;

use creative_core::{CallCtx, ErrorKind, Request, Task};
use serde_json::{json, Value};
use support::{build, failure_suite, Conformance, MockServer, Reply};

const PATH: &str = "/models/black-forest-labs/flux-schnell/predictions";
const KEY: &str = "r8_secret_token_abc";
const PNG_B64: &str = "iVBORw0KGgpmYWtl";

fn prediction(id: &str, status: &str, base: &str, output: Value, error: Value) -> Value {
    json!({
        "id": id, "model": "black-forest-labs/flux-schnell", "version": "dp-1", "status": status,
        "input": {"prompt": "x"}, "output": output, "error": error, "logs": "",
        "metrics": {"predict_time": 1.5}, "created_at": "2026-01-01T00:00:00Z",
        "urls": {"get": format!("{base}/predictions/{id}"), "cancel": format!("{base}/predictions/{id}/cancel")}
    })
}

fn req() -> Request {
    let mut r = Request::new(Task::Image, "a paper boat");
    r.params.seed = Some(5);
    r.params.aspect_ratio = Some("1:1".into());
    r
}

#[tokio::test]
async fn conformance_failure_suite() {
    let data_url = format!("data:image/png;base64,{PNG_B64}");
    failure_suite(Conformance {
        kind: "replicate",
        settings: json!({"api_key": KEY}),
        request: req(),
        method: "POST",
        path: PATH,
        ok: Reply::json(201, prediction("p1", "succeeded", "http://unused", json!([data_url]), Value::Null)),
        malformed: Reply::raw_json(201, "{\"id\": \"p1\", \"status\":"),
        content_policy: Some(Reply::json(
            201,
            prediction("p1", "failed", "http://unused", Value::Null, json!("NSFW content detected. Try running it again, or try a different prompt.")),
        )),
        auth: Reply::json(401, json!({"title": "Unauthenticated", "detail": "You did not pass a valid authentication token", "status": 401})),
        rate_limited: Reply::json(429, json!({"title": "Request was throttled.", "detail": "Request was throttled. Your rate limit resets in ~7s.", "status": 429})),
        secret: KEY,
        routes: vec![],
    })
    .await;
}

#[tokio::test]
async fn polls_through_starting_and_processing_then_downloads_outputs() {
    let mock = MockServer::start().await;
    let base = mock.url();
    let out = json!([format!("{base}/files/out-0.png"), format!("{base}/files/out-1.png")]);
    mock.route(
        "POST",
        PATH,
        Reply::json(201, prediction("p9", "starting", &base, Value::Null, Value::Null)),
    );
    mock.route_once(
        "GET",
        "/predictions/p9",
        Reply::json(200, prediction("p9", "processing", &base, Value::Null, Value::Null)),
    );
    mock.route(
        "GET",
        "/predictions/p9",
        Reply::json(200, prediction("p9", "succeeded", &base, out, Value::Null)),
    );
    mock.route(
        "GET",
        "/files/out-0.png",
        Reply::bytes(200, "image/png", b"\x89PNG\r\n\x1a\nzero".to_vec()),
    );
    mock.route(
        "GET",
        "/files/out-1.png",
        Reply::bytes(200, "image/png", b"\x89PNG\r\n\x1a\none".to_vec()),
    );
    let p = build(
        "replicate",
        json!({"api_key": KEY, "base_url": base, "poll_interval_ms": 5}),
    )
    .unwrap();
    let mut r = req();
    r.params.count = Some(2);
    r.raw.insert("go_fast".into(), json!(true));
    let g = p.generate(&r, &CallCtx::detached()).await.unwrap();
    assert_eq!(g.artifacts.len(), 2);
    assert!(g.artifacts[1].data().ends_with(b"one"));
    assert!(
        (g.usage.cost_usd - 0.006).abs() < 1e-9,
        "flux-schnell per image: {}",
        g.usage.cost_usd
    );

    let reqs = mock.requests();
    let create = &reqs[0];
    assert_eq!(create.header("prefer"), Some("wait=60"));
    assert_eq!(create.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    let body = create.json();
    assert_eq!(body["input"]["prompt"], "a paper boat");
    assert_eq!(body["input"]["seed"], 5);
    assert_eq!(body["input"]["num_outputs"], 2);
    assert_eq!(body["input"]["aspect_ratio"], "1:1");
    assert_eq!(body["input"]["go_fast"], true, "raw reaches the input unchanged");
    assert_eq!(reqs.iter().filter(|q| q.path() == "/predictions/p9").count(), 2);
}

#[tokio::test]
async fn version_form_and_per_gpu_second_pricing() {
    let mock = MockServer::start().await;
    let base = mock.url();
    mock.route(
        "POST",
        "/predictions",
        Reply::json(
            201,
            prediction(
                "v1",
                "succeeded",
                &base,
                json!(format!("data:image/png;base64,{PNG_B64}")),
                Value::Null,
            ),
        ),
    );
    let p = build(
        "replicate",
        json!({"api_key": KEY, "base_url": base, "model": "stability-ai/sdxl:39ed52f2a78e", "wait_s": 0,
               "prices": {"stability-ai/sdxl": {"per_gpu_second": 0.001}}}),
    )
    .unwrap();
    let g = p.generate(&req(), &CallCtx::detached()).await.unwrap();
    assert!(
        (g.usage.cost_usd - 0.0015).abs() < 1e-12,
        "1.5 s of GPU: {}",
        g.usage.cost_usd
    );
    let create = mock.last();
    assert_eq!(create.json()["version"], "39ed52f2a78e");
    assert_eq!(create.header("prefer"), None);
}

#[tokio::test]
async fn failed_and_canceled_predictions_are_classified() {
    for (error, kind) in [
        (json!("CUDA out of memory"), ErrorKind::Transient),
        (json!("NSFW content detected."), ErrorKind::ContentPolicy),
    ] {
        let mock = MockServer::start().await;
        let base = mock.url();
        mock.route(
            "POST",
            PATH,
            Reply::json(201, prediction("f", "processing", &base, Value::Null, Value::Null)),
        );
        mock.route(
            "GET",
            "/predictions/f",
            Reply::json(200, prediction("f", "failed", &base, Value::Null, error)),
        );
        let p = build(
            "replicate",
            json!({"api_key": KEY, "base_url": base, "poll_interval_ms": 5}),
        )
        .unwrap();
        let e = p.generate(&req(), &CallCtx::detached()).await.unwrap_err();
        assert_eq!(e.kind(), kind, "{e}");
    }
}

#[tokio::test]
async fn text_output_tokens_are_joined() {
    let mock = MockServer::start().await;
    let base = mock.url();
    mock.route(
        "POST",
        "/models/meta/llama/predictions",
        Reply::json(
            201,
            prediction("t", "succeeded", &base, json!(["Hel", "lo", "!"]), Value::Null),
        ),
    );
    let p = build(
        "replicate",
        json!({"api_key": KEY, "base_url": base, "model": "meta/llama"}),
    )
    .unwrap();
    let g = p
        .generate(&Request::new(Task::Text, "say hello"), &CallCtx::detached())
        .await
        .unwrap();
    assert_eq!(g.artifacts[0].text(), Some("Hello!"));
}

#[tokio::test]
async fn cancellation_cancels_the_prediction() {
    let mock = MockServer::start().await;
    let base = mock.url();
    mock.route(
        "POST",
        PATH,
        Reply::json(201, prediction("c", "starting", &base, Value::Null, Value::Null)),
    );
    mock.route(
        "GET",
        "/predictions/c",
        Reply::json(200, prediction("c", "processing", &base, Value::Null, Value::Null)),
    );
    mock.route(
        "POST",
        "/predictions/c/cancel",
        Reply::json(200, prediction("c", "canceled", &base, Value::Null, Value::Null)),
    );
    let p = build(
        "replicate",
        json!({"api_key": KEY, "base_url": base, "poll_interval_ms": 10}),
    )
    .unwrap();
    let ctx = CallCtx::detached();
    let cancel = ctx.cancel.clone();
    let watcher = mock.clone();
    tokio::spawn(async move {
        watcher.wait_for_path("/predictions/c").await;
        cancel.cancel();
    });
    let e = p.generate(&req(), &ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled);
    // The cancel goes out after the call has returned.
    let c = mock.wait_for_path("/predictions/c/cancel").await;
    assert_eq!(c.method, "POST");
    assert_eq!(c.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
}

#[tokio::test]
async fn output_urls_outside_https_and_the_api_host_are_refused() {
    let mock = MockServer::start().await;
    let base = mock.url();
    mock.route(
        "POST",
        PATH,
        Reply::json(
            201,
            prediction(
                "x",
                "succeeded",
                &base,
                json!(["http://169.254.169.254/latest/meta-data"]),
                Value::Null,
            ),
        ),
    );
    let p = build("replicate", json!({"api_key": KEY, "base_url": base})).unwrap();
    let e = p.generate(&req(), &CallCtx::detached()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(e.message().contains("refusing"), "{e}");
}

#[tokio::test]
async fn the_key_never_shows_in_errors_that_echo_it() {
    let mock = MockServer::start().await;
    let p = build("replicate", json!({"api_key": KEY, "base_url": mock.url()})).unwrap();
    mock.route(
        "POST",
        PATH,
        Reply::json(
            401,
            json!({"title": "Unauthenticated", "detail": format!("token {KEY} is invalid"), "status": 401}),
        ),
    );
    let e = p.generate(&req(), &CallCtx::detached()).await.unwrap_err();
    let shown = format!("{e} {e:?} {} {}", e.body().unwrap_or(""), e.message());
    assert!(!shown.contains(KEY), "{shown}");
}

#[tokio::test]
async fn video_models_are_estimated_from_the_duration_and_billed_from_the_container() {
    let mock = MockServer::start().await;
    let base = mock.url();
    let model = "google/veo-3-fast";
    mock.route(
        "POST",
        &format!("/models/{model}/predictions"),
        Reply::json(
            201,
            prediction(
                "vid",
                "succeeded",
                &base,
                json!(format!("{base}/files/v.mp4")),
                Value::Null,
            ),
        ),
    );
    mock.route(
        "GET",
        "/files/v.mp4",
        Reply::bytes(200, "video/mp4", support::mp4_of(4)),
    );
    let p = build(
        "replicate",
        json!({"api_key": KEY, "base_url": base, "model": model,
               "prices": {model: {"per_second": 0.4, "default_s": 8.0}}}),
    )
    .unwrap();
    let mut r = Request::new(Task::Video, "surf at dawn");
    assert!(
        (p.estimate_cost(&r) - 8.0 * 0.4).abs() < 1e-12,
        "{}",
        p.estimate_cost(&r)
    );
    r.params.duration_s = Some(6.0);
    assert!((p.estimate_cost(&r) - 6.0 * 0.4).abs() < 1e-12);
    let g = p.generate(&r, &CallCtx::detached()).await.unwrap();
    assert!(
        (g.usage.cost_usd - 4.0 * 0.4).abs() < 1e-12,
        "the container says 4 s: {}",
        g.usage.cost_usd
    );
}

#[tokio::test]
async fn size_and_gpu_time_prices_estimate_honestly() {
    let mock = MockServer::start().await;
    let base = mock.url();
    let p = build(
        "replicate",
        json!({"api_key": KEY, "base_url": base,
               "prices": {"black-forest-labs/flux-schnell": {"per_megapixel": 0.01},
                          "me/sdxl-gpu": {"per_gpu_second": 0.001},
                          "me/sdxl-typical": {"per_gpu_second": 0.001, "est_gpu_s": 6.0}}}),
    )
    .unwrap();
    let mut r = req();
    r.params.width = Some(2000);
    r.params.height = Some(1000);
    assert!(
        (p.estimate_cost(&r) - 0.02).abs() < 1e-12,
        "two megapixels: {}",
        p.estimate_cost(&r)
    );
    // No size asked: the model's per-output price still applies.
    assert!((p.estimate_cost(&req()) - 0.003).abs() < 1e-12);
    // Priced by GPU time with no typical duration: nothing to estimate from.
    let mut g = req();
    g.model = Some("me/sdxl-gpu".into());
    assert!(!p.has_price(&g));
    g.model = Some("me/sdxl-typical".into());
    assert!(p.has_price(&g));
    assert!((p.estimate_cost(&g) - 0.006).abs() < 1e-12);
}

/// Wait (up to 5 s) until the mock has seen a request to `path`.
async fn seen(mock: &MockServer, path: &str) -> support::Recorded {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(r) = mock.requests().into_iter().find(|q| q.path() == path) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no request to {path}"))
}

#[tokio::test]
async fn an_aborted_prediction_is_final_and_is_not_polled_again() {
    let mock = MockServer::start().await;
    let base = mock.url();
    mock.route(
        "POST",
        PATH,
        Reply::json(201, prediction("ab", "starting", &base, Value::Null, Value::Null)),
    );
    mock.route(
        "GET",
        "/predictions/ab",
        Reply::json(200, prediction("ab", "aborted", &base, Value::Null, Value::Null)),
    );
    let p = build(
        "replicate",
        json!({"api_key": KEY, "base_url": base, "poll_interval_ms": 5, "poll_max_ms": 5}),
    )
    .unwrap();
    let mut ctx = CallCtx::detached();
    // Before the fix the poll ran on to the deadline.
    ctx.deadline = Some(std::time::Instant::now() + Duration::from_secs(2));
    let e = p.generate(&req(), &ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    assert!(e.message().contains("aborted"), "{e}");
    let polls = mock.requests().iter().filter(|q| q.path() == "/predictions/ab").count();
    assert_eq!(polls, 1);
}

#[tokio::test]
async fn cancel_is_a_post_without_a_body_or_a_content_type() {
    let mock = MockServer::start().await;
    let base = mock.url();
    mock.route(
        "POST",
        PATH,
        Reply::json(201, prediction("c2", "starting", &base, Value::Null, Value::Null)),
    );
    mock.route(
        "GET",
        "/predictions/c2",
        Reply::json(200, prediction("c2", "processing", &base, Value::Null, Value::Null)),
    );
    mock.route(
        "POST",
        "/predictions/c2/cancel",
        Reply::json(200, prediction("c2", "canceled", &base, Value::Null, Value::Null)),
    );
    let p = build(
        "replicate",
        json!({"api_key": KEY, "base_url": base, "poll_interval_ms": 5}),
    )
    .unwrap();
    let ctx = CallCtx::detached();
    let cancel = ctx.cancel.clone();
    let watcher = mock.clone();
    tokio::spawn(async move {
        seen(&watcher, "/predictions/c2").await;
        cancel.cancel();
    });
    let e = p.generate(&req(), &ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled);
    let c = seen(&mock, "/predictions/c2/cancel").await;
    assert_eq!(c.method, "POST");
    assert!(c.body.is_empty(), "cancel body: {:?}", c.text());
    assert_eq!(c.header("content-type"), None);
    assert_eq!(c.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
}

#[tokio::test]
async fn polls_and_cancels_stay_on_the_configured_base_url_behind_a_gateway() {
    // `origin` stands for api.replicate.com: the prediction's URLs name it, but the
    // configuration says to go through `gateway`, which holds the key.
    let origin = MockServer::start().await;
    let gateway = MockServer::start().await;
    let base = format!("{}/replicate/v1", gateway.url());
    let own = format!("{}/v1", origin.url());
    let path = "/replicate/v1/models/black-forest-labs/flux-schnell/predictions";
    gateway.route(
        "POST",
        path,
        Reply::json(201, prediction("g1", "starting", &own, Value::Null, Value::Null)),
    );
    gateway.route_once(
        "GET",
        "/replicate/v1/predictions/g1",
        Reply::json(200, prediction("g1", "processing", &own, Value::Null, Value::Null)),
    );
    gateway.route(
        "GET",
        "/replicate/v1/predictions/g1",
        Reply::json(
            200,
            prediction(
                "g1",
                "succeeded",
                &own,
                json!([format!("data:image/png;base64,{PNG_B64}")]),
                Value::Null,
            ),
        ),
    );
    let p = build(
        "replicate",
        json!({"api_key": KEY, "base_url": base, "poll_interval_ms": 5}),
    )
    .unwrap();
    let g = p.generate(&req(), &CallCtx::detached()).await.unwrap();
    assert_eq!(g.artifacts.len(), 1);
    assert!(
        origin.requests().is_empty(),
        "went around the gateway: {:?}",
        origin.requests()
    );
    let polls: Vec<_> = gateway
        .requests()
        .into_iter()
        .filter(|q| q.path() == "/replicate/v1/predictions/g1")
        .collect();
    assert_eq!(polls.len(), 2);
    assert!(polls
        .iter()
        .all(|q| q.header("authorization") == Some(format!("Bearer {KEY}").as_str())));
}

#[tokio::test]
async fn preflight_asks_the_account_endpoint_with_the_token() {
    let mock = MockServer::start().await;
    mock.route(
        "GET",
        "/v1/account",
        Reply::json(
            200,
            json!({"type": "user", "username": "u", "name": "U", "github_url": null}),
        ),
    );
    let p = build(
        "replicate",
        json!({"api_key": KEY, "base_url": format!("{}/v1", mock.url())}),
    )
    .unwrap();
    p.preflight(&CallCtx::detached()).await.unwrap();
    let r = mock.last();
    assert_eq!((r.method.as_str(), r.path()), ("GET", "/v1/account"));
    assert_eq!(r.header("authorization"), Some(format!("Bearer {KEY}").as_str()));

    // A base URL that misses the version answers 404 at preflight, not on every job.
    let wrong = build("replicate", json!({"api_key": KEY, "base_url": mock.url()})).unwrap();
    let e = wrong.preflight(&CallCtx::detached()).await.unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
}

#[tokio::test]
async fn unusable_metrics_do_not_fail_a_finished_prediction() {
    let mock = MockServer::start().await;
    let base = mock.url();
    let mut body = prediction(
        "m1",
        "succeeded",
        &base,
        json!([format!("data:image/png;base64,{PNG_B64}")]),
        Value::Null,
    );
    body["metrics"] = json!({"predict_time": "1.5s", "total_time": -3});
    mock.route("POST", PATH, Reply::json(201, body));
    let p = build("replicate", json!({"api_key": KEY, "base_url": base})).unwrap();
    let g = p.generate(&req(), &CallCtx::detached()).await.unwrap();
    assert_eq!(g.artifacts.len(), 1);
}

#[tokio::test]
async fn floats_go_out_as_written_and_raw_merges_into_the_input() {
    let mock = MockServer::start().await;
    let base = mock.url();
    mock.route(
        "POST",
        PATH,
        Reply::json(
            201,
            prediction(
                "f1",
                "succeeded",
                &base,
                json!([format!("data:image/png;base64,{PNG_B64}")]),
                Value::Null,
            ),
        ),
    );
    let p = build("replicate", json!({"api_key": KEY, "base_url": base})).unwrap();
    let mut r = req();
    r.params.guidance = Some(3.3);
    r.raw.insert("seed".into(), Value::Null);
    p.generate(&r, &CallCtx::detached()).await.unwrap();
    let sent = mock.last().text();
    assert!(sent.contains("\"guidance_scale\":3.3"), "{sent}");
    assert!(!sent.contains("\"seed\""), "a raw null removes the key: {sent}");
}
