//! HTTP layer benchmarks: the cost of one provider call through the shared
//! transport against a loopback keep-alive server on a plain thread.
//!
//! - `transport_get_json`: `Transport::send_json` of a small JSON answer: the
//!   floor of the layer (request build, pooled connection, size-limited body read,
//!   JSON parse).
//! - `openai_chat_call`: a full `openai` text call (request mapping, send, response
//!   mapping, usage and cost).
//! - `openai_image_call_64k`: an `openai` image call whose answer carries a 64 KiB
//!   image in base64 (decode and hashing of the artifact included).
//!
//! Figures are wall time per call on one tokio thread, and include the loopback
//! server's own work and both sides' syscalls, so they bound the client's CPU
//! from above. Target: tens of microseconds per call.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;

use creative::engine::{CallCtx, Provider, Request, Task};
use creative::providers::http::{HttpRequest, Transport};
use creative::providers::openai::OpenAi;
use criterion::{criterion_group, criterion_main, Criterion};

/// Serve `body` (JSON) to every request on every connection, keeping connections
/// alive. Runs until the process ends.
fn serve(body: Vec<u8>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = l.local_addr().expect("local addr");
    let body = Arc::new(body);
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(conn) = conn else { return };
            let body = body.clone();
            std::thread::spawn(move || {
                let _ = conn.set_nodelay(true);
                let mut w = conn.try_clone().expect("clone socket");
                let mut r = BufReader::new(conn);
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match r.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        let t = line.trim_end();
                        if t.is_empty() {
                            break;
                        }
                        if let Some(v) = t.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut req_body = vec![0u8; len];
                    if r.read_exact(&mut req_body).is_err() {
                        return;
                    }
                    let mut out = Vec::with_capacity(head.len() + body.len());
                    out.extend_from_slice(head.as_bytes());
                    out.extend_from_slice(&body);
                    if w.write_all(&out).is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let small = serve(br#"{"ok": true, "id": "x1", "n": [1, 2, 3]}"#.to_vec());
    let t = Transport::builder("bench", small.as_str()).build().expect("transport");
    let ctx = CallCtx::detached();
    c.bench_function("transport_get_json", |b| {
        b.to_async(&rt).iter(|| async {
            let v: serde_json::Value = t.send_json(HttpRequest::get("v1/x"), &ctx).await.expect("call");
            v
        })
    });

    let chat = serve(
        serde_json::to_vec(&serde_json::json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Bright mugs for bright mornings."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}
        }))
        .expect("json"),
    );
    let p =
        OpenAi::from_settings("openai", &serde_json::json!({"base_url": chat, "api_key": "sk-bench"})).expect("openai");
    let req = Request::new(Task::Text, "a tagline for a mug");
    c.bench_function("openai_chat_call", |b| {
        b.to_async(&rt)
            .iter(|| async { p.generate(&req, &ctx).await.expect("call") })
    });

    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.resize(64 * 1024, 0x5a);
    let b64 = creative::providers::http::encode_base64(&png);
    let image =
        serve(serde_json::to_vec(&serde_json::json!({"created": 1, "data": [{"b64_json": b64}]})).expect("json"));
    let p = OpenAi::from_settings(
        "openai",
        &serde_json::json!({"base_url": image, "api_key": "sk-bench", "model": "dall-e-3"}),
    )
    .expect("openai");
    let req = Request::new(Task::Image, "a lighthouse");
    c.bench_function("openai_image_call_64k", |b| {
        b.to_async(&rt)
            .iter(|| async { p.generate(&req, &ctx).await.expect("call") })
    });
}

criterion_group!(http, benches);
criterion_main!(http);
