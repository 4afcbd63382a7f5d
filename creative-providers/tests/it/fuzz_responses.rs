//! Fuzzing every HTTP backend's response handling, in CI, for a bounded time:
//! each backend is called against the loopback mock of `support`, which answers
//! every request of the call (submit, poll, result, download) with a reply made
//! from a seed corpus of that backend's real answers, mutated structurally (values
//! swapped for other types and extremes, keys dropped, arrays emptied or
//! repeated) or as bytes (cut, flipped), under a random status code and content
//! type. Every call ends with an `Ok` or a classified `ProviderError`, never a
//! panic and never a hang: a call has a 1 s deadline, as the engine gives, and
//! must end on its own within 20 s.
//!
//! Deterministic: the seed is fixed and the case count bounded
//! (`CASES_PER_BACKEND`), so the whole harness costs a few seconds.

use crate::support;

use std::time::Duration;

use creative_core::{CallCtx, Request, Task};
use serde_json::{json, Value};
use support::{build, MockServer, Reply};

const CASES_PER_BACKEND: usize = 120;
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0\x90wS\xde";
const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1Pe";

/// A body and its content type.
type Seed = (&'static str, Vec<u8>);

struct Backend {
    kind: &'static str,
    settings: fn(&str) -> Value,
    requests: fn() -> Vec<Request>,
    /// Real answers: JSON documents or raw bodies with their content type.
    seeds: fn(&str) -> Vec<Seed>,
}

fn j(v: Value) -> Seed {
    ("application/json", serde_json::to_vec(&v).unwrap())
}

fn image_and_text() -> Vec<Request> {
    vec![Request::new(Task::Image, "a cat"), Request::new(Task::Text, "hello")]
}

fn image() -> Vec<Request> {
    vec![Request::new(Task::Image, "a cat")]
}

fn backends() -> Vec<Backend> {
    vec![
        Backend {
            kind: "openai",
            settings: |url| json!({"api_key": "sk-fuzz", "base_url": url}),
            requests: image_and_text,
            seeds: |url| {
                vec![
                    j(
                        json!({"created": 1, "data": [{"b64_json": PNG_B64, "revised_prompt": "a cat"}],
                        "output_format": "png", "size": "1024x1024", "quality": "high",
                        "usage": {"input_tokens": 10, "output_tokens": 100, "total_tokens": 110,
                                  "input_tokens_details": {"text_tokens": 10, "image_tokens": 0}}}),
                    ),
                    j(json!({"created": 1, "data": [{"url": format!("{url}/img.png")}]})),
                    j(
                        json!({"id": "c1", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                        "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}),
                    ),
                    j(
                        json!({"error": {"message": "bad", "type": "invalid_request_error", "code": "content_policy_violation"}}),
                    ),
                    ("image/png", PNG.to_vec()),
                ]
            },
        },
        Backend {
            kind: "stability",
            settings: |url| json!({"api_key": "sk-fuzz", "base_url": url}),
            requests: image,
            seeds: |_| {
                vec![
                    ("image/png", PNG.to_vec()),
                    j(json!({"image": PNG_B64, "finish_reason": "SUCCESS", "seed": 1})),
                    j(json!({"name": "content_moderation", "errors": ["flagged"]})),
                    j(json!({"id": "gen-1"})),
                ]
            },
        },
        Backend {
            kind: "replicate",
            settings: |url| json!({"api_key": "r8_fuzz", "base_url": url, "poll_interval_ms": 5, "poll_max_ms": 10}),
            requests: image,
            seeds: |url| {
                let pred = |status: &str, output: Value| {
                    json!({"id": "p1", "model": "black-forest-labs/flux-schnell", "version": "dp-1", "status": status,
                        "input": {"prompt": "x"}, "output": output, "error": null, "logs": "",
                        "metrics": {"predict_time": 1.5}, "created_at": "2026-01-01T00:00:00Z",
                        "urls": {"get": format!("{url}/predictions/p1"), "cancel": format!("{url}/predictions/p1/cancel")}})
                };
                vec![
                    j(pred("succeeded", json!([format!("data:image/png;base64,{PNG_B64}")]))),
                    j(pred("succeeded", json!(format!("{url}/out.png")))),
                    j(pred("processing", Value::Null)),
                    j(pred("failed", Value::Null)),
                    ("image/png", PNG.to_vec()),
                ]
            },
        },
        Backend {
            kind: "fal",
            settings: |url| {
                json!({"api_key": "fal-fuzz", "base_url": url, "model": "fal-ai/flux/dev",
                       "poll_interval_ms": 5, "poll_max_ms": 10})
            },
            requests: image,
            seeds: |url| {
                vec![
                    j(json!({"request_id": "r1", "status": "IN_QUEUE", "queue_position": 0,
                        "status_url": format!("{url}/requests/r1/status"), "response_url": format!("{url}/requests/r1"),
                        "cancel_url": format!("{url}/requests/r1/cancel")})),
                    j(json!({"status": "COMPLETED", "request_id": "r1", "response_url": format!("{url}/requests/r1")})),
                    j(
                        json!({"images": [{"url": format!("data:image/png;base64,{PNG_B64}"), "width": 1, "height": 1,
                        "content_type": "image/png"}], "seed": 11, "has_nsfw_concepts": [false], "timings": {"inference": 0.5}}),
                    ),
                    j(json!({"detail": [{"loc": ["body", "prompt"], "msg": "field required", "type": "value_error"}]})),
                    ("image/png", PNG.to_vec()),
                ]
            },
        },
        Backend {
            kind: "comfyui",
            settings: |url| {
                json!({"base_url": url, "poll_interval_ms": 5, "poll_max_ms": 20, "workflow": {
                    "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20, "cfg": 7.0, "sampler_name": "euler",
                        "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0],
                        "negative": ["7", 0], "latent_image": ["5", 0]}},
                    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
                    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
                    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "old", "clip": ["4", 1]}},
                    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
                    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
                    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}}}})
            },
            requests: image,
            seeds: |_| {
                vec![
                    j(json!({"prompt_id": "p-1", "number": 1, "node_errors": {}})),
                    j(
                        json!({"p-1": {"outputs": {"9": {"images": [{"filename": "a.png", "subfolder": "", "type": "output"}]}},
                        "status": {"status_str": "success", "completed": true, "messages": []}}}),
                    ),
                    j(
                        json!({"error": {"type": "prompt_outputs_failed_validation", "message": "bad"},
                        "node_errors": {"3": {"errors": [{"message": "x"}]}}}),
                    ),
                    j(json!({"queue_running": [], "queue_pending": []})),
                    ("image/png", PNG.to_vec()),
                ]
            },
        },
        Backend {
            kind: "ollama",
            settings: |url| json!({"base_url": url}),
            requests: || vec![Request::new(Task::Text, "hello")],
            seeds: |_| {
                vec![
                    j(
                        json!({"model": "llama3", "response": "hi", "done": true, "prompt_eval_count": 3, "eval_count": 1}),
                    ),
                    j(json!({"model": "llama3", "message": {"role": "assistant", "content": "hi"}, "done": true})),
                    j(
                        json!({"choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}),
                    ),
                    j(json!({"error": "model not found"})),
                ]
            },
        },
        Backend {
            kind: "gemini",
            settings: |url| json!({"api_key": "AIza-fuzz", "base_url": url, "image_model": "imagen-3.0-generate-002"}),
            requests: image_and_text,
            seeds: |_| {
                vec![
                    j(
                        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "hi"},
                        {"inlineData": {"mimeType": "image/png", "data": PNG_B64}}]}, "finishReason": "STOP"}],
                        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1, "totalTokenCount": 4}}),
                    ),
                    j(json!({"predictions": [{"bytesBase64Encoded": PNG_B64, "mimeType": "image/png"}]})),
                    j(json!({"promptFeedback": {"blockReason": "SAFETY"}})),
                    j(
                        json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED",
                        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]}}),
                    ),
                ]
            },
        },
        Backend {
            kind: "elevenlabs",
            settings: |url| json!({"api_key": "el-fuzz", "base_url": url}),
            requests: || {
                let mut r = Request::new(Task::Audio, "hello");
                r.params.voice = Some("JBFqnCBsd6RMkjVDRZzb".into());
                vec![r]
            },
            seeds: |_| {
                vec![
                    ("audio/mpeg", b"ID3\x04\0\0\0\0\0\0\xff\xfb\x90\x00fake-mp3".to_vec()),
                    j(json!({"detail": {"status": "quota_exceeded", "message": "no credits"}})),
                    j(json!({"detail": [{"loc": ["body", "text"], "msg": "field required"}]})),
                ]
            },
        },
    ]
}

const STATUSES: &[u16] = &[
    200, 200, 200, 200, 201, 202, 204, 301, 400, 401, 402, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503, 504, 529,
];
const TYPES: &[&str] = &[
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "text/html",
    "image/png",
    "audio/mpeg",
    "application/octet-stream",
    "",
];

/// A value of a random type and size, edges included.
fn wild(rng: &mut fastrand::Rng, url: &str, depth: u32) -> Value {
    match rng.u8(0..16) {
        0 => Value::Null,
        1 => json!(rng.bool()),
        2 => json!(0),
        3 => json!(-1),
        4 => json!(u64::MAX),
        5 => json!(i64::MIN),
        6 => json!(1e300),
        7 => json!(""),
        8 => json!("x".repeat(rng.usize(0..3000))),
        9 => json!(format!("{url}/{}", rng.u32(..))),
        10 => json!(format!(
            "data:image/png;base64,{}",
            &PNG_B64[..rng.usize(0..PNG_B64.len())]
        )),
        11 => json!("\u{0}\u{ffff}\\..//%00"),
        12 if depth < 3 => Value::Array((0..rng.usize(0..4)).map(|_| wild(rng, url, depth + 1)).collect()),
        13 if depth < 3 => {
            let keys = [
                "data",
                "status",
                "output",
                "images",
                "error",
                "b64_json",
                "url",
                "id",
                "candidates",
            ];
            let mut m = serde_json::Map::new();
            for _ in 0..rng.usize(0..4) {
                m.insert(keys[rng.usize(0..keys.len())].into(), wild(rng, url, depth + 1));
            }
            Value::Object(m)
        }
        14 => json!(PNG_B64),
        _ => json!(rng.f64() * 1e6 - 5e5),
    }
}

/// Mutate a JSON document in place: pick a node by a random walk and change it.
fn mutate_json(rng: &mut fastrand::Rng, v: &mut Value, url: &str) {
    let mut node = v;
    loop {
        let descend = rng.u8(0..4) != 0;
        let next = match node {
            Value::Array(a) if descend && !a.is_empty() => {
                let i = rng.usize(0..a.len());
                Some(i)
            }
            Value::Object(m) if descend && !m.is_empty() => Some(rng.usize(0..m.len())),
            _ => None,
        };
        match (next, node) {
            (Some(i), Value::Array(a)) => node = &mut a[i],
            (Some(i), Value::Object(m)) => node = m.values_mut().nth(i).unwrap(),
            (_, n) => {
                match (rng.u8(0..5), &mut *n) {
                    (0, Value::Object(m)) if !m.is_empty() => {
                        let k = m.keys().nth(rng.usize(0..m.len())).unwrap().clone();
                        m.remove(&k);
                    }
                    (1, Value::Array(a)) => a.clear(),
                    (2, Value::Array(a)) if !a.is_empty() => {
                        let first = a[0].clone();
                        let n = rng.usize(1..200);
                        a.extend(std::iter::repeat_n(first, n));
                    }
                    _ => *n = wild(rng, url, 0),
                }
                return;
            }
        }
    }
}

fn mutate_bytes(rng: &mut fastrand::Rng, mut b: Vec<u8>) -> Vec<u8> {
    match rng.u8(0..4) {
        0 => b.truncate(rng.usize(0..=b.len())),
        1 => {
            for _ in 0..rng.usize(1..8) {
                if !b.is_empty() {
                    let i = rng.usize(0..b.len());
                    b[i] = rng.u8(..);
                }
            }
        }
        2 => b = (0..rng.usize(0..256)).map(|_| rng.u8(..)).collect(),
        _ => {
            let i = rng.usize(0..=b.len());
            b.splice(i..i, b"{\"\\u".iter().copied());
        }
    }
    b
}

fn reply(rng: &mut fastrand::Rng, seeds: &[Seed], url: &str) -> Reply {
    let (ty, body) = &seeds[rng.usize(0..seeds.len())];
    let body = match serde_json::from_slice::<Value>(body) {
        Ok(mut v) if rng.u8(0..4) != 0 => {
            for _ in 0..rng.usize(1..4) {
                mutate_json(rng, &mut v, url);
            }
            serde_json::to_vec(&v).unwrap()
        }
        _ if rng.bool() => mutate_bytes(rng, body.clone()),
        _ => body.clone(),
    };
    let status = if rng.u8(0..3) == 0 {
        STATUSES[rng.usize(0..STATUSES.len())]
    } else {
        200
    };
    let ty = if rng.u8(0..4) == 0 {
        TYPES[rng.usize(0..TYPES.len())]
    } else {
        ty
    };
    let mut r = Reply::bytes(status, ty, body);
    match rng.u8(0..8) {
        0 => {
            r = r.header(
                "retry-after",
                ["0", "7", "-1", "99999999999", "soon", "Wed, 21 Oct 2015 07:28:00 GMT"][rng.usize(0..6)],
            )
        }
        1 => r = r.header("location", &format!("{url}/elsewhere")),
        2 => r = r.chunked(),
        3 => r = r.truncated(),
        _ => {}
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_answers_mutated_responses_with_ok_or_a_classified_error_never_a_panic_or_a_hang() {
    let started = std::time::Instant::now();
    let mut rng = fastrand::Rng::with_seed(0xf022);
    let mut total = 0usize;
    for b in backends() {
        let (mut ok, mut errors) = (0usize, std::collections::BTreeMap::<String, usize>::new());
        for case in 0..CASES_PER_BACKEND {
            let mock = MockServer::start().await;
            let url = mock.url();
            let seeds = (b.seeds)(&url);
            // A few answers in order (submit, poll, result...), then one for everything after.
            for _ in 0..rng.usize(0..4) {
                mock.route_once("*", "*", reply(&mut rng, &seeds, &url));
            }
            let standing = reply(&mut rng, &seeds, &url);
            mock.route("*", "*", standing);
            let mut settings = (b.settings)(&url);
            settings["timeout_s"] = json!(0.5);
            let p = build(b.kind, settings).unwrap_or_else(|e| panic!("{}: settings: {e}", b.kind));
            let requests = (b.requests)();
            let req = requests[case % requests.len()].clone();
            // As the engine does: a deadline, which polling backends honour.
            let ctx = CallCtx {
                deadline: Some(std::time::Instant::now() + Duration::from_secs(1)),
                ..CallCtx::detached()
            };
            let call = tokio::spawn(async move { p.generate(&req, &ctx).await });
            let answer = tokio::time::timeout(Duration::from_secs(20), call)
                .await
                .unwrap_or_else(|_| panic!("{} case {case}: no answer within 20 s: {:?}", b.kind, mock.requests()))
                .unwrap_or_else(|e| panic!("{} case {case} panicked: {e}; requests: {:?}", b.kind, mock.requests()));
            match answer {
                Ok(g) => {
                    assert!(!g.artifacts.is_empty(), "{} case {case}: Ok without artifacts", b.kind);
                    ok += 1;
                }
                Err(e) => {
                    assert!(
                        !e.message().is_empty(),
                        "{} case {case}: an error that says nothing",
                        b.kind
                    );
                    *errors.entry(e.kind().as_str().to_string()).or_default() += 1;
                }
            }
            total += 1;
        }
        eprintln!("fuzz {}: {ok} ok, errors {errors:?}", b.kind);
        assert!(!errors.is_empty(), "{}: no mutation was refused", b.kind);
    }
    eprintln!("fuzzed {total} responses in {:.1} s", started.elapsed().as_secs_f64());
}
