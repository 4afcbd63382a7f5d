//! The `fal` backend against a loopback mock of fal's queue API: submit, status
//! (`IN_QUEUE`, `IN_PROGRESS`, `COMPLETED`), result, cancel, typed `detail` errors.

use crate::support;

use std::time::Duration;

use creative_core::{CallCtx, ErrorKind, Request, Task};
use serde_json::{json, Value};
use support::{build, with, MockServer, Reply};

const KEY: &str = "fal-key-id:fal-key-secret";
const RID: &str = "80e732af-660e";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\nfal-image";

fn submitted(base: &str) -> Value {
    json!({
        "request_id": RID,
        "response_url": format!("{base}/fal-ai/flux/requests/{RID}"),
        "status_url": format!("{base}/fal-ai/flux/requests/{RID}/status"),
        "cancel_url": format!("{base}/fal-ai/flux/requests/{RID}/cancel"),
        "queue_position": 2
    })
}

fn status(s: &str) -> Reply {
    Reply::json(
        if s == "COMPLETED" { 200 } else { 202 },
        json!({"status": s, "queue_position": 0, "response_url": "x"}),
    )
}

fn result(base: &str, nsfw: &[bool]) -> Value {
    let images: Vec<Value> = nsfw
        .iter()
        .enumerate()
        .map(|(i, _)| json!({"url": format!("{base}/files/{i}.png"), "width": 1024, "height": 768, "content_type": "image/png"}))
        .collect();
    json!({"images": images, "seed": 4242, "has_nsfw_concepts": nsfw, "timings": {"inference": 0.4}, "prompt": "x"})
}

fn settings(mock: &MockServer) -> Value {
    json!({"api_key": KEY, "base_url": mock.url(), "model": "fal-ai/flux/dev", "poll_interval_ms": 5, "poll_max_ms": 10})
}

fn happy(mock: &MockServer) {
    let base = mock.url();
    mock.route("POST", "/fal-ai/flux/dev", Reply::json(200, submitted(&base)));
    mock.route(
        "GET",
        &format!("/fal-ai/flux/requests/{RID}/status"),
        status("COMPLETED"),
    );
    mock.route(
        "GET",
        &format!("/fal-ai/flux/requests/{RID}"),
        Reply::json(200, result(&base, &[false])),
    );
    mock.route("GET", "/files/0.png", Reply::bytes(200, "image/png", PNG.to_vec()));
    mock.route("GET", "/files/1.png", Reply::bytes(200, "image/png", PNG.to_vec()));
}

fn req() -> Request {
    let mut r = Request::new(Task::Image, "a koi pond");
    r.params.width = Some(1024);
    r.params.height = Some(768);
    r.params.seed = Some(11);
    r.params.steps = Some(28);
    r
}

#[tokio::test]
async fn submits_walks_the_queue_states_and_reads_the_result() {
    let mock = MockServer::start().await;
    let st = format!("/fal-ai/flux/requests/{RID}/status");
    mock.route_once("GET", &st, status("IN_QUEUE"));
    mock.route_once("GET", &st, status("IN_QUEUE"));
    mock.route_once("GET", &st, status("IN_PROGRESS"));
    happy(&mock);
    let p = build("fal", settings(&mock)).unwrap();
    let mut r = req();
    r.raw.insert("enable_safety_checker".into(), json!(false));
    let g = p.generate(&r, &CallCtx::detached()).await.unwrap();
    assert_eq!(g.artifacts.len(), 1);
    assert_eq!(g.artifacts[0].data().as_ref(), PNG);
    assert_eq!(g.artifacts[0].meta().width, Some(1024));
    assert_eq!(g.artifacts[0].meta().extra["seed"], 4242);
    assert!((g.usage.cost_usd - 0.025).abs() < 1e-9);

    let reqs = mock.requests();
    let submit = &reqs[0];
    assert_eq!(submit.path(), "/fal-ai/flux/dev");
    assert_eq!(submit.header("authorization"), Some(format!("Key {KEY}").as_str()));
    let body = submit.json();
    assert_eq!(body["prompt"], "a koi pond");
    assert_eq!(body["image_size"], json!({"width": 1024, "height": 768}));
    assert_eq!(body["seed"], 11);
    assert_eq!(body["num_inference_steps"], 28);
    assert_eq!(body["enable_safety_checker"], false, "raw reaches the wire unchanged");
    assert_eq!(reqs.iter().filter(|q| q.path() == st).count(), 4);
    assert!(reqs
        .iter()
        .all(|q| q.path() != format!("/fal-ai/flux/requests/{RID}/cancel")));
}

#[tokio::test]
async fn flagged_images_are_dropped_and_all_flagged_is_a_refusal() {
    let mock = MockServer::start().await;
    happy(&mock);
    let base = mock.url();
    mock.route_once(
        "GET",
        &format!("/fal-ai/flux/requests/{RID}"),
        Reply::json(200, result(&base, &[true, false])),
    );
    let p = build("fal", settings(&mock)).unwrap();
    let g = p.generate(&req(), &CallCtx::detached()).await.unwrap();
    assert_eq!(g.artifacts.len(), 1);
    mock.route_once(
        "GET",
        &format!("/fal-ai/flux/requests/{RID}"),
        Reply::json(200, result(&base, &[true])),
    );
    let e = p.generate(&req(), &CallCtx::detached()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ContentPolicy);
}

#[tokio::test]
async fn failures_are_classified_at_submit_status_and_result() {
    let policy = Reply::json(
        422,
        json!({"detail": [{"loc": ["body", "prompt"], "msg": "The content was flagged by a content checker.",
                           "type": "content_policy_violation", "url": "https://docs.fal.ai/errors#content_policy_violation"}]}),
    );
    let stages = [
        "/fal-ai/flux/dev".to_string(),
        format!("/fal-ai/flux/requests/{RID}/status"),
        format!("/fal-ai/flux/requests/{RID}"),
    ];
    for (i, path) in stages.iter().enumerate() {
        let method = if i == 0 { "POST" } else { "GET" };
        let ok = || -> Reply {
            let mock_base = "http://unused";
            match i {
                0 => Reply::json(200, submitted(mock_base)),
                1 => status("COMPLETED"),
                _ => Reply::json(200, result(mock_base, &[false])),
            }
        };
        let cases: Vec<(Reply, Value, ErrorKind)> = vec![
            (
                Reply::json(429, json!({"detail": "Too many requests"})).header("retry-after", "7"),
                json!({}),
                ErrorKind::RateLimited,
            ),
            (
                Reply::json(500, json!({"detail": "Internal error"})),
                json!({}),
                ErrorKind::Transient,
            ),
            (
                ok().delay(Duration::from_secs(3)),
                json!({"timeout_s": 0.3}),
                ErrorKind::Timeout,
            ),
            (
                Reply::raw_json(200, "{\"request_id\": "),
                json!({}),
                ErrorKind::Protocol,
            ),
            (ok().truncated(), json!({}), ErrorKind::Transient),
            (ok(), json!({"max_response_bytes": 8}), ErrorKind::Invalid),
            (
                Reply::json(401, json!({"detail": "No user found for Key ID and Secret"})),
                json!({}),
                ErrorKind::Auth,
            ),
            (policy.clone(), json!({}), ErrorKind::ContentPolicy),
        ];
        for (reply, extra, kind) in cases {
            let mock = MockServer::start().await;
            mock.route_once(method, path, reply);
            happy(&mock);
            let p = build("fal", with(settings(&mock), extra.clone())).unwrap();
            let e = p.generate(&req(), &CallCtx::detached()).await.unwrap_err();
            assert_eq!(e.kind(), kind, "stage {path} with {extra}: {e}");
            assert!(!format!("{e} {e:?} {}", e.body().unwrap_or("")).contains("fal-key-secret"));
            if kind == ErrorKind::RateLimited {
                assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
            }
        }
    }
}

#[tokio::test]
async fn cancellation_cancels_the_queued_request() {
    let mock = MockServer::start().await;
    let base = mock.url();
    mock.route("POST", "/fal-ai/flux/dev", Reply::json(200, submitted(&base)));
    mock.route(
        "GET",
        &format!("/fal-ai/flux/requests/{RID}/status"),
        status("IN_QUEUE"),
    );
    mock.route(
        "PUT",
        &format!("/fal-ai/flux/requests/{RID}/cancel"),
        Reply::json(202, json!({"status": "CANCELLATION_REQUESTED"})),
    );
    let p = build("fal", settings(&mock)).unwrap();
    let ctx = CallCtx::detached();
    let cancel = ctx.cancel.clone();
    let watcher = mock.clone();
    tokio::spawn(async move {
        watcher
            .wait_for_path(&format!("/fal-ai/flux/requests/{RID}/status"))
            .await;
        cancel.cancel();
    });
    let e = p.generate(&req(), &ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled);
    // The cancel goes out after the call has returned.
    let c = mock.wait_for_path(&format!("/fal-ai/flux/requests/{RID}/cancel")).await;
    assert_eq!(c.method, "PUT");
}

#[tokio::test]
async fn status_and_result_urls_fall_back_to_the_app_root() {
    let mock = MockServer::start().await;
    happy(&mock);
    mock.route(
        "POST",
        "/fal-ai/flux/dev/image-to-image",
        Reply::json(200, json!({"request_id": RID})),
    );
    let p = build("fal", settings(&mock)).unwrap();
    let mut r = req();
    r.model = Some("fal-ai/flux/dev/image-to-image".into());
    p.generate(&r, &CallCtx::detached()).await.unwrap();
    assert!(mock
        .requests()
        .iter()
        .any(|q| q.path() == format!("/fal-ai/flux/requests/{RID}/status")));
}

#[tokio::test]
async fn the_key_never_shows_in_errors_that_echo_it() {
    let mock = MockServer::start().await;
    let p = build("fal", settings(&mock)).unwrap();
    mock.route(
        "POST",
        "/fal-ai/flux/dev",
        Reply::json(401, json!({"detail": format!("bad key {KEY}")})),
    );
    let e = p.generate(&req(), &CallCtx::detached()).await.unwrap_err();
    let shown = format!("{e} {e:?} {} {}", e.body().unwrap_or(""), e.message());
    assert!(!shown.contains("fal-key-secret"), "{shown}");
    assert_eq!(mock.last().header("authorization"), Some(format!("Key {KEY}").as_str()));
}

fn sized_result(base: &str, file: &str, w: u32, h: u32) -> Value {
    json!({"images": [{"url": format!("{base}/files/{file}"), "width": w, "height": h, "content_type": "image/png"}],
           "seed": 1, "has_nsfw_concepts": [false], "timings": {"inference": 0.4}})
}

fn route_result(mock: &MockServer, app: &str, result: Value) {
    let base = mock.url();
    mock.route("POST", &format!("/{app}"), Reply::json(200, submitted(&base)));
    mock.route(
        "GET",
        &format!("/fal-ai/flux/requests/{RID}/status"),
        status("COMPLETED"),
    );
    mock.route("GET", &format!("/fal-ai/flux/requests/{RID}"), Reply::json(200, result));
}

#[tokio::test]
async fn flux_dev_is_priced_per_megapixel_rounded_up_and_billed_from_the_decoded_size() {
    let mock = MockServer::start().await;
    let base = mock.url();
    // Asked 1024x1024 (one fal megapixel), but the image's header says 2048x1536:
    // three megapixels are billed, whatever the answer's JSON claims.
    route_result(&mock, "fal-ai/flux/dev", sized_result(&base, "big.png", 1024, 1024));
    mock.route(
        "GET",
        "/files/big.png",
        Reply::bytes(200, "image/png", support::png_sized(2048, 1536)),
    );
    let p = build("fal", settings(&mock)).unwrap();
    let mut r = req();
    r.params.width = Some(1024);
    r.params.height = Some(1024);
    assert!((p.estimate_cost(&r) - 0.025).abs() < 1e-12, "{}", p.estimate_cost(&r));
    let g = p.generate(&r, &CallCtx::detached()).await.unwrap();
    assert!((g.usage.cost_usd - 3.0 * 0.025).abs() < 1e-12, "{}", g.usage.cost_usd);

    // Estimates follow the requested size: 1536x1024 is 1.5 megapixels, billed as 2.
    r.params.width = Some(1536);
    assert!((p.estimate_cost(&r) - 0.05).abs() < 1e-12);
    r.params.width = Some(2048);
    r.params.height = Some(2048);
    r.params.count = Some(2);
    assert!((p.estimate_cost(&r) - 2.0 * 4.0 * 0.025).abs() < 1e-12);
    // No size named: the app's default (about one megapixel).
    r.params.width = None;
    r.params.height = None;
    r.params.count = None;
    assert!((p.estimate_cost(&r) - 0.025).abs() < 1e-12);
}

#[tokio::test]
async fn video_apps_are_estimated_from_the_duration_and_billed_from_the_container() {
    let mock = MockServer::start().await;
    let base = mock.url();
    let app = "fal-ai/kling-video/v2/text-to-video";
    route_result(
        &mock,
        app,
        json!({"video": {"url": format!("{base}/files/v.mp4"), "content_type": "video/mp4"}, "timings": {"inference": 40.0}}),
    );
    mock.route(
        "GET",
        "/files/v.mp4",
        Reply::bytes(200, "video/mp4", support::mp4_of(6)),
    );
    let prices = json!({app: {"per_second": 0.05, "default_s": 5.0}});
    let p = build("fal", with(settings(&mock), json!({"model": app, "prices": prices}))).unwrap();
    let mut r = Request::new(Task::Video, "a heron takes off");
    assert!(p.has_price(&r));
    assert!(
        (p.estimate_cost(&r) - 5.0 * 0.05).abs() < 1e-12,
        "the app's default duration"
    );
    r.params.duration_s = Some(10.0);
    assert!(
        (p.estimate_cost(&r) - 10.0 * 0.05).abs() < 1e-12,
        "{}",
        p.estimate_cost(&r)
    );
    let g = p.generate(&r, &CallCtx::detached()).await.unwrap();
    assert!(
        (g.usage.cost_usd - 6.0 * 0.05).abs() < 1e-12,
        "the container says 6 s: {}",
        g.usage.cost_usd
    );

    // Priced per second but with no default duration: unpriced until a duration is asked.
    let p = build(
        "fal",
        with(
            settings(&mock),
            json!({"model": app, "prices": {app: {"per_second": 0.05}}}),
        ),
    )
    .unwrap();
    let mut r = Request::new(Task::Video, "a heron takes off");
    assert!(!p.has_price(&r));
    r.params.duration_s = Some(4.0);
    assert!(p.has_price(&r));
    assert!((p.estimate_cost(&r) - 0.2).abs() < 1e-12);
}

#[tokio::test]
async fn conformance_failure_suite() {
    // Without status/response URLs in the submit answer, fal's paths under the
    // app root are used (so the answers need not know the mock's port).
    let png = format!("data:image/png;base64,{}", creative_providers::http::encode_base64(PNG));
    support::failure_suite(support::Conformance {
        kind: "fal",
        settings: json!({"api_key": KEY, "model": "fal-ai/flux/dev", "poll_interval_ms": 5, "poll_max_ms": 10}),
        request: req(),
        method: "POST",
        path: "/fal-ai/flux/dev",
        ok: Reply::json(200, json!({"request_id": RID, "queue_position": 0})),
        malformed: Reply::raw_json(200, "{\"request_id\": "),
        content_policy: Some(Reply::json(
            422,
            json!({"detail": [{"loc": ["body", "prompt"], "msg": "The content could not be processed because it contained material flagged by a content checker.",
                               "type": "content_policy_violation", "url": "https://docs.fal.ai/errors#content_policy_violation"}]}),
        )),
        auth: Reply::json(401, json!({"detail": "No user found for Key ID and Secret"})),
        rate_limited: Reply::json(429, json!({"detail": "Too many requests"})),
        secret: KEY,
        routes: vec![
            ("GET", format!("/fal-ai/flux/requests/{RID}/status"), status("COMPLETED")),
            (
                "GET",
                format!("/fal-ai/flux/requests/{RID}"),
                Reply::json(200, json!({"images": [{"url": png, "content_type": "image/png"}], "seed": 1})),
            ),
        ],
    })
    .await;
}
