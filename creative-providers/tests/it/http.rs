//! The shared HTTP layer against a loopback mock server.
#![cfg(feature = "http")]

use crate::support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use creative_core::{CallCtx, ErrorKind, MediaType};
use creative_providers::http::{Auth, FormPart, HttpRequest, Transport};
use creative_providers::secret::ApiKey;
use serde_json::json;
use support::{MockServer, Reply};

fn transport(mock: &MockServer) -> Transport {
    Transport::builder("test", format!("{}/v1", mock.url()))
        .auth(Auth::Bearer(ApiKey::new("sk-test-secret")))
        .timeout(Duration::from_millis(500))
        .max_response_bytes(4096)
        .build()
        .unwrap()
}

#[tokio::test]
async fn json_round_trip_sends_auth_content_type_and_body() {
    let mock = MockServer::start().await;
    mock.route("POST", "/v1/things", Reply::json(200, json!({"ok": true})));
    let t = transport(&mock);
    let v: serde_json::Value = t
        .send_json(
            HttpRequest::post_json("things", json!({"a": 1})).query("q", "x y"),
            &CallCtx::detached(),
        )
        .await
        .unwrap();
    assert_eq!(v, json!({"ok": true}));
    let r = mock.last();
    assert_eq!(r.method, "POST");
    assert_eq!(r.path(), "/v1/things");
    assert_eq!(r.query("q").as_deref(), Some("x+y"));
    assert_eq!(r.header("authorization"), Some("Bearer sk-test-secret"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), json!({"a": 1}));
}

#[tokio::test]
async fn multipart_forms_carry_text_and_files() {
    let mock = MockServer::start().await;
    mock.route("POST", "/v1/upload", Reply::json(200, json!({})));
    let t = transport(&mock);
    let parts = vec![
        FormPart::text("prompt", "a cat"),
        FormPart::file("image", Bytes::from_static(b"PNGDATA"), "in.png", "image/png"),
    ];
    t.send(HttpRequest::post_multipart("upload", parts), &CallCtx::detached())
        .await
        .unwrap();
    let r = mock.last();
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("multipart/form-data; boundary="));
    let body = r.text();
    assert!(body.contains("name=\"prompt\"\r\n\r\na cat"), "{body}");
    assert!(
        body.contains("name=\"image\"; filename=\"in.png\"\r\nContent-Type: image/png\r\n\r\nPNGDATA"),
        "{body}"
    );
}

#[tokio::test]
async fn rate_limits_carry_the_delay_message_and_request_id() {
    let mock = MockServer::start().await;
    mock.route(
        "GET",
        "/v1/x",
        Reply::json(
            429,
            json!({"error": {"message": "Rate limit reached for requests", "type": "requests"}}),
        )
        .header("x-ratelimit-reset-requests", "1m30s")
        .header("x-request-id", "req_42"),
    );
    let e = transport(&mock)
        .send(HttpRequest::get("x"), &CallCtx::detached())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(90)));
    assert_eq!(e.request_id(), Some("req_42"));
    assert_eq!(e.status(), Some(429));
    assert!(e.message().starts_with("Rate limit reached for requests"), "{e}");
}

#[tokio::test]
async fn an_http_date_retry_after_is_honoured() {
    let mock = MockServer::start().await;
    let when = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
    mock.route("GET", "/v1/x", Reply::json(429, json!({})).header("retry-after", &when));
    let e = transport(&mock)
        .send(HttpRequest::get("x"), &CallCtx::detached())
        .await
        .unwrap_err();
    let d = e.retry_after().unwrap();
    assert!(d > Duration::from_secs(27) && d <= Duration::from_secs(30), "{d:?}");
}

#[tokio::test]
async fn a_stalled_server_times_out() {
    let mock = MockServer::start().await;
    mock.route(
        "GET",
        "/v1/x",
        Reply::json(200, json!({})).delay(Duration::from_secs(3)),
    );
    let t0 = Instant::now();
    let e = transport(&mock)
        .send(HttpRequest::get("x"), &CallCtx::detached())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(t0.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn the_call_deadline_shortens_the_timeout() {
    let mock = MockServer::start().await;
    mock.route(
        "GET",
        "/v1/x",
        Reply::json(200, json!({})).delay(Duration::from_secs(3)),
    );
    let t = Transport::builder("test", mock.url()).build().unwrap();
    let mut ctx = CallCtx::detached();
    ctx.deadline = Some(Instant::now() + Duration::from_millis(200));
    let t0 = Instant::now();
    let e = t.send(HttpRequest::get("v1/x"), &ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(t0.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn cancellation_stops_a_request_in_flight() {
    let mock = MockServer::start().await;
    mock.route(
        "GET",
        "/v1/x",
        Reply::json(200, json!({})).delay(Duration::from_secs(3)),
    );
    let ctx = CallCtx::detached();
    let c = ctx.cancel.clone();
    let watcher = mock.clone();
    tokio::spawn(async move {
        // Cancel once the request is in flight (its answer waits 3 s).
        watcher.wait_for_path("/v1/x").await;
        c.cancel();
    });
    let t = Transport::builder("test", mock.url()).build().unwrap();
    let e = t.send(HttpRequest::get("v1/x"), &ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled);
}

#[tokio::test]
async fn truncated_bodies_are_transient() {
    let mock = MockServer::start().await;
    mock.route("GET", "/v1/x", Reply::json(200, json!({"data": "abc"})).truncated());
    let e = transport(&mock)
        .send(HttpRequest::get("x"), &CallCtx::detached())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
}

#[tokio::test]
async fn oversized_bodies_fail_while_streaming_without_content_length() {
    let mock = MockServer::start().await;
    mock.route(
        "GET",
        "/v1/big",
        Reply::bytes(200, "image/png", vec![7u8; 64 * 1024]).chunked(),
    );
    mock.route(
        "GET",
        "/v1/small",
        Reply::bytes(200, "image/png", vec![7u8; 3000]).chunked(),
    );
    let t = transport(&mock);
    let e = t.send(HttpRequest::get("big"), &CallCtx::detached()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(e.message().contains("4096"), "{e}");
    // Several chunks under the limit are joined.
    let ok = t.send(HttpRequest::get("small"), &CallCtx::detached()).await.unwrap();
    assert_eq!(ok.body.len(), 3000);
}

#[tokio::test]
async fn oversized_bodies_with_content_length_fail_before_reading() {
    let mock = MockServer::start().await;
    mock.route("GET", "/v1/big", Reply::bytes(200, "image/png", vec![7u8; 64 * 1024]));
    let e = transport(&mock)
        .send(HttpRequest::get("big"), &CallCtx::detached())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
}

#[tokio::test]
async fn malformed_json_is_a_protocol_error_with_the_body_kept() {
    let mock = MockServer::start().await;
    mock.route(
        "GET",
        "/v1/x",
        Reply::raw_json(200, "{\"data\": [").header("x-request-id", "r1"),
    );
    let e = transport(&mock)
        .send_json::<serde_json::Value>(HttpRequest::get("x"), &CallCtx::detached())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
    assert_eq!(e.body(), Some("{\"data\": ["));
    assert_eq!(e.request_id(), Some("r1"));
}

#[tokio::test]
async fn connection_refused_is_transient() {
    // Bind then drop to get a port nobody listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let t = Transport::builder("test", format!("http://127.0.0.1:{port}"))
        .build()
        .unwrap();
    let e = t.send(HttpRequest::get("x"), &CallCtx::detached()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
}

#[tokio::test]
async fn downloads_from_the_base_origin_work_and_plain_http_elsewhere_is_refused() {
    let mock = MockServer::start().await;
    let other = MockServer::start().await;
    mock.route(
        "GET",
        "/files/a.png",
        Reply::bytes(200, "image/png", b"\x89PNG\r\n\x1a\nxx".to_vec()),
    );
    other.route("GET", "/a.png", Reply::bytes(200, "image/png", b"stolen".to_vec()));
    let t = transport(&mock);
    let d = t
        .download(&format!("{}/files/a.png", mock.url()), &CallCtx::detached())
        .await
        .unwrap();
    assert_eq!(d.media, Some(MediaType::Png));
    assert_eq!(&d.data[..4], b"\x89PNG");
    assert_eq!(mock.last().header("authorization"), Some("Bearer sk-test-secret"));

    let e = t
        .download(&format!("{}/a.png", other.url()), &CallCtx::detached())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(other.requests().is_empty(), "no request may reach the other host");
}

#[tokio::test]
async fn redirects_never_carry_the_key_to_another_origin() {
    let mock = MockServer::start().await;
    let other = MockServer::start().await;
    mock.route(
        "GET",
        "/files/a",
        Reply::json(302, json!({})).header("location", "/files/b"),
    );
    mock.route("GET", "/files/b", Reply::bytes(200, "image/png", b"ok".to_vec()));
    mock.route(
        "GET",
        "/files/out",
        Reply::json(302, json!({})).header("location", &format!("{}/x", other.url())),
    );
    let t = transport(&mock);
    let d = t
        .download(&format!("{}/files/a", mock.url()), &CallCtx::detached())
        .await
        .unwrap();
    assert_eq!(&d.data[..], b"ok");
    assert_eq!(mock.last().header("authorization"), Some("Bearer sk-test-secret"));
    let e = t
        .download(&format!("{}/files/out", mock.url()), &CallCtx::detached())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    assert!(other.requests().is_empty());
}

#[tokio::test]
async fn data_urls_decode_in_place() {
    let mock = MockServer::start().await;
    let t = transport(&mock);
    let d = t
        .download("data:image/png;base64,iVBORw0KGgo=", &CallCtx::detached())
        .await
        .unwrap();
    assert_eq!(d.media, Some(MediaType::Png));
    assert_eq!(&d.data[..], b"\x89PNG\r\n\x1a\n");
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn connections_are_reused_across_calls() {
    let mock = MockServer::start().await;
    mock.route("GET", "/v1/x", Reply::json(200, json!({})));
    let t = transport(&mock);
    for _ in 0..20 {
        t.send(HttpRequest::get("x"), &CallCtx::detached()).await.unwrap();
    }
    assert_eq!(mock.requests().len(), 20);
    assert_eq!(mock.connections(), 1, "the pooled client keeps one connection alive");
}

#[tokio::test]
async fn a_refused_connection_names_the_address_and_the_cause_once() {
    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = Transport::builder("p", format!("http://127.0.0.1:{port}"))
        .build()
        .unwrap();
    let e = t
        .send(HttpRequest::get("prompt"), &CallCtx::detached())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient);
    let m = e.message();
    assert!(
        m.starts_with(&format!("cannot connect to http://127.0.0.1:{port}/prompt: ")),
        "{m}"
    );
    assert!(m.ends_with("; is the server running there?"), "{m}");
    assert!(!m.contains("error sending request"), "{m}");
}
