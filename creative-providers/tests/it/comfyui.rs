//! The `comfyui` backend against a loopback mock of ComfyUI's HTTP API (`/prompt`,
//! `/history/{id}`, `/queue`, `/view`, `/upload/image`, `/interrupt`, `/free`),
//! answering with the bodies ComfyUI's `server.py` and `execution.py` produce.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use creative_core::{Artifact, CallCtx, ErrorKind, MediaType, Request, Task};
use serde_json::{json, Value};
use support::{build, comfyui_workflow as workflow, with, MockServer, Reply};

const PID: &str = "p-1";

fn settings(mock: &MockServer) -> Value {
    json!({"base_url": mock.url(), "workflow": workflow(), "poll_interval_ms": 5, "poll_max_ms": 20})
}

/// A PNG-looking payload with ComfyUI's `prompt` metadata chunk.
fn png(tag: &str, prompt: Option<&Value>) -> Vec<u8> {
    fn chunk(ty: &[u8], body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(ty);
        v.extend_from_slice(body);
        v.extend_from_slice(&[0, 0, 0, 0]);
        v
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(chunk(b"IHDR", tag.as_bytes()));
    if let Some(p) = prompt {
        let mut t = b"prompt\0".to_vec();
        t.extend_from_slice(p.to_string().as_bytes());
        out.extend(chunk(b"tEXt", &t));
    }
    out.extend(chunk(b"IEND", b""));
    out
}

fn history(pid: &str, files: &[&str], cached: &[&str], status: &str, extra_messages: Vec<Value>) -> Value {
    let images: Vec<Value> = files
        .iter()
        .map(|f| json!({"filename": f, "subfolder": "", "type": "output"}))
        .collect();
    let mut messages = vec![
        json!(["execution_start", {"prompt_id": pid, "timestamp": 1}]),
        json!(["execution_cached", {"nodes": cached, "prompt_id": pid, "timestamp": 2}]),
    ];
    messages.extend(extra_messages);
    if status == "success" {
        messages.push(json!(["execution_success", {"prompt_id": pid, "timestamp": 3}]));
    }
    json!({ pid: {
        "prompt": [0, pid, workflow(), {"client_id": "c"}, ["9"]],
        "outputs": {"9": {"images": images}},
        "status": {"status_str": status, "completed": status == "success", "messages": messages},
        "meta": {"9": {"node_id": "9", "display_node": "9"}}
    }})
}

fn queued(pid: &str) -> Reply {
    Reply::json(200, json!({"prompt_id": pid, "number": 3, "node_errors": {}}))
}

fn req() -> Request {
    let mut r = Request::new(Task::Image, "a red fox in snow");
    r.negative_prompt = Some("blurry".into());
    r.params.seed = Some(42);
    r.params.width = Some(768);
    r.params.height = Some(512);
    r.params.steps = Some(8);
    r.params.count = Some(2);
    r
}

#[tokio::test]
async fn injects_the_request_waits_through_queue_states_and_fetches_outputs() {
    let mock = MockServer::start().await;
    mock.route("POST", "/prompt", queued(PID));
    // Pending, then running, then finished.
    mock.route_once("GET", &format!("/history/{PID}"), Reply::json(200, json!({})));
    mock.route_once("GET", &format!("/history/{PID}"), Reply::json(200, json!({})));
    mock.route_once(
        "GET",
        "/queue",
        Reply::json(
            200,
            json!({"queue_running": [], "queue_pending": [[3, PID, {}, {}, ["9"]]]}),
        ),
    );
    mock.route_once(
        "GET",
        "/queue",
        Reply::json(
            200,
            json!({"queue_running": [[3, PID, {}, {}, ["9"]]], "queue_pending": []}),
        ),
    );
    mock.route(
        "GET",
        &format!("/history/{PID}"),
        Reply::json(
            200,
            history(
                PID,
                &["ComfyUI_00001_.png", "ComfyUI_00002_.png"],
                &[],
                "success",
                vec![],
            ),
        ),
    );
    mock.route_once("GET", "/view", Reply::bytes(200, "image/png", png("one", None)));
    mock.route_once("GET", "/view", Reply::bytes(200, "image/png", png("two", None)));
    let p = build("comfyui", settings(&mock)).unwrap();
    let g = p.generate(&req(), &CallCtx::detached()).await.unwrap();

    assert_eq!(g.artifacts.len(), 2);
    assert_eq!(g.artifacts[0].media(), &MediaType::Png);
    assert_eq!(g.artifacts[0].data().as_ref(), png("one", None).as_slice());
    assert_eq!(g.artifacts[1].data().as_ref(), png("two", None).as_slice());
    assert_eq!(g.artifacts[0].meta().extra["comfyui_node"], "9");

    let reqs = mock.requests();
    let post = reqs.iter().find(|r| r.path() == "/prompt").unwrap().json();
    let wf = &post["prompt"];
    assert_eq!(wf["3"]["inputs"]["seed"], 42);
    assert_eq!(wf["3"]["inputs"]["steps"], 8);
    assert_eq!(wf["6"]["inputs"]["text"], "a red fox in snow");
    assert_eq!(wf["7"]["inputs"]["text"], "blurry");
    assert_eq!(wf["5"]["inputs"]["width"], 768);
    assert_eq!(wf["5"]["inputs"]["height"], 512);
    assert_eq!(wf["5"]["inputs"]["batch_size"], 2);
    assert_eq!(wf["3"]["inputs"]["model"], json!(["4", 0]), "links are left alone");
    assert!(post["client_id"].is_string() && post["prompt_id"].is_string());
    let views: Vec<_> = reqs.iter().filter(|r| r.path() == "/view").collect();
    assert_eq!(views[0].query("filename").as_deref(), Some("ComfyUI_00001_.png"));
    assert_eq!(views[0].query("type").as_deref(), Some("output"));
    assert_eq!(reqs.iter().filter(|r| r.path() == "/queue").count(), 2);
}

#[tokio::test]
async fn explicit_injection_raw_paths_and_uploaded_inputs_reach_the_workflow() {
    let mock = MockServer::start().await;
    let mut wf = workflow();
    wf["10"] = json!({"class_type": "LoadImage", "inputs": {"image": "placeholder.png"}});
    wf["11"] = json!({"class_type": "LoraLoader", "inputs": {"strength_model": 1.0, "lora_name": "x"}});
    mock.route(
        "POST",
        "/upload/image",
        Reply::json(
            200,
            json!({"name": "creative_abc.png", "subfolder": "", "type": "input"}),
        ),
    );
    mock.route("POST", "/prompt", queued(PID));
    mock.route(
        "GET",
        &format!("/history/{PID}"),
        Reply::json(200, history(PID, &["a.png"], &[], "success", vec![])),
    );
    mock.route("GET", "/view", Reply::bytes(200, "image/png", png("a", None)));
    let s = json!({
        "base_url": mock.url(), "workflow": wf, "poll_interval_ms": 5,
        "inject": {"prompt": ["6.inputs.text", "7.inputs.text"], "image": "10.inputs.image", "lora": "11.inputs.strength_model"}
    });
    let p = build("comfyui", s).unwrap();
    let mut r = Request::new(Task::ImageEdit, "make it blue");
    r.inputs.push(Artifact::new(MediaType::Png, png("input", None)));
    r.raw.insert("lora".into(), json!(0.4));
    r.raw.insert("4.inputs.ckpt_name".into(), json!("sdxl.safetensors"));
    p.generate(&r, &CallCtx::detached()).await.unwrap();

    let reqs = mock.requests();
    let up = reqs.iter().find(|r| r.path() == "/upload/image").unwrap();
    assert!(up.header("content-type").unwrap().starts_with("multipart/form-data"));
    assert!(up.text().contains("name=\"image\"") && up.text().contains("name=\"overwrite\""));
    let wf = reqs.iter().find(|r| r.path() == "/prompt").unwrap().json()["prompt"].clone();
    assert_eq!(wf["6"]["inputs"]["text"], "make it blue");
    assert_eq!(wf["7"]["inputs"]["text"], "make it blue");
    assert_eq!(wf["10"]["inputs"]["image"], "creative_abc.png");
    assert_eq!(wf["11"]["inputs"]["strength_model"], 0.4);
    assert_eq!(
        wf["4"]["inputs"]["ckpt_name"], "sdxl.safetensors",
        "raw node paths reach the wire unchanged"
    );

    let mut bad = Request::new(Task::Image, "x");
    bad.raw.insert("not_a_path".into(), json!(1));
    let e = p.generate(&bad, &CallCtx::detached()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(e.message().contains("not_a_path"), "{e}");
}

#[tokio::test]
async fn accepted_prompt_with_node_errors_is_an_error_and_is_taken_back() {
    let mock = MockServer::start().await;
    mock.route(
        "POST",
        "/prompt",
        Reply::json(
            200,
            json!({"prompt_id": PID, "number": 1, "node_errors": {
                "12": {"errors": [{"type": "value_not_in_list", "message": "Value not in list",
                        "details": "ckpt_name: 'missing.safetensors' not in ['sd15.safetensors']", "extra_info": {}}],
                       "dependent_outputs": ["13"], "class_type": "CheckpointLoaderSimple"}
            }}),
        ),
    );
    mock.route("POST", "/queue", Reply::bytes(200, "text/plain", ""));
    mock.route("POST", "/interrupt", Reply::bytes(200, "text/plain", ""));
    let p = build("comfyui", settings(&mock)).unwrap();
    let e = p.generate(&req(), &CallCtx::detached()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    for needle in [
        "node 12",
        "CheckpointLoaderSimple",
        "missing.safetensors",
        "dropped outputs",
    ] {
        assert!(e.message().contains(needle), "`{needle}` missing in: {e}");
    }
    // The queue delete goes out after the call has returned.
    mock.wait_for_requests(1, |r| r.path() == "/queue" && r.method == "POST")
        .await;
    let reqs = mock.requests();
    let del = reqs
        .iter()
        .find(|r| r.path() == "/queue" && r.method == "POST")
        .expect("queue delete sent");
    assert_eq!(del.json()["delete"], json!([PID]));
    assert!(
        reqs.iter().all(|r| r.path() != "/history/p-1"),
        "no waiting on a half prompt"
    );
}

#[tokio::test]
async fn refused_prompt_reports_each_node() {
    let mock = MockServer::start().await;
    mock.route(
        "POST",
        "/prompt",
        Reply::json(400, json!({
            "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}},
            "node_errors": {"3": {"errors": [{"type": "value_smaller_than_min", "message": "Value 0 smaller than min of 1", "details": "steps", "extra_info": {}}],
                                   "dependent_outputs": ["9"], "class_type": "KSampler"}}
        })),
    );
    let p = build("comfyui", settings(&mock)).unwrap();
    let e = p.generate(&req(), &CallCtx::detached()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert_eq!(e.status(), Some(400));
    assert!(
        e.message()
            .contains("Prompt outputs failed validation; node 3 (KSampler): Value 0 smaller than min of 1 (steps)"),
        "{e}"
    );
}

#[tokio::test]
async fn a_prompt_neither_queued_nor_in_history_is_lost_not_pending() {
    let mock = MockServer::start().await;
    mock.route("POST", "/prompt", queued(PID));
    mock.route("GET", &format!("/history/{PID}"), Reply::json(200, json!({})));
    mock.route(
        "GET",
        "/queue",
        Reply::json(
            200,
            json!({"queue_running": [], "queue_pending": [[1, "someone-else", {}, {}, []]]}),
        ),
    );
    let p = build("comfyui", settings(&mock)).unwrap();
    let t0 = std::time::Instant::now();
    let e = p.generate(&req(), &CallCtx::detached()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.message().contains("lost"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn execution_errors_name_the_node_and_oom_is_transient() {
    for (ex, kind) in [
        ("RuntimeError", ErrorKind::Invalid),
        ("torch.OutOfMemoryError", ErrorKind::Transient),
    ] {
        let mock = MockServer::start().await;
        mock.route("POST", "/prompt", queued(PID));
        let err = json!(["execution_error", {"prompt_id": PID, "node_id": "3", "node_type": "KSampler",
            "exception_type": ex, "exception_message": "mat1 and mat2 shapes cannot be multiplied", "traceback": []}]);
        mock.route(
            "GET",
            &format!("/history/{PID}"),
            Reply::json(200, history(PID, &[], &[], "error", vec![err])),
        );
        let p = build("comfyui", settings(&mock)).unwrap();
        let e = p.generate(&req(), &CallCtx::detached()).await.unwrap_err();
        assert_eq!(e.kind(), kind, "{e}");
        assert!(e.message().contains("node 3 (KSampler)"), "{e}");
    }
}

#[tokio::test]
async fn cached_rerun_with_existing_matching_files_returns_them() {
    let mock = MockServer::start().await;
    mock.route("POST", "/prompt", queued(PID));
    let cached = ["3", "4", "5", "6", "7", "8", "9"];
    mock.route(
        "GET",
        &format!("/history/{PID}"),
        Reply::json(200, history(PID, &["ComfyUI_00001_.png"], &cached, "success", vec![])),
    );
    // The file embeds the workflow that made it: ours, as injected.
    let mut ours = workflow();
    let r = req();
    ours["3"]["inputs"]["seed"] = json!(42);
    ours["3"]["inputs"]["steps"] = json!(8);
    ours["6"]["inputs"]["text"] = json!(r.prompt.clone());
    ours["7"]["inputs"]["text"] = json!("blurry");
    ours["5"]["inputs"] = json!({"width": 768, "height": 512, "batch_size": 2});
    mock.route(
        "GET",
        "/view",
        Reply::bytes(200, "image/png", png("old-but-right", Some(&ours))),
    );
    let p = build("comfyui", settings(&mock)).unwrap();
    let g = p.generate(&r, &CallCtx::detached()).await.unwrap();
    assert_eq!(g.artifacts.len(), 1);
    assert_eq!(g.artifacts[0].meta().extra["comfyui_cached"], true);
    assert_eq!(g.raw.unwrap()["reruns"], 0);
    assert_eq!(mock.requests().iter().filter(|r| r.path() == "/prompt").count(), 1);
}

#[tokio::test]
async fn cached_rerun_pointing_at_missing_or_foreign_files_reruns_the_output_node() {
    for stale in [
        Reply::json(404, json!({})),
        Reply::bytes(
            200,
            "image/png",
            png(
                "foreign",
                Some(&json!({
                    "3": {"class_type": "KSampler", "inputs": {"seed": 999}}
                })),
            ),
        ),
    ] {
        let mock = MockServer::start().await;
        mock.route_once("POST", "/prompt", queued("p-1"));
        mock.route_once("POST", "/prompt", queued("p-2"));
        let all = ["3", "4", "5", "6", "7", "8", "9"];
        mock.route(
            "GET",
            "/history/p-1",
            Reply::json(200, history("p-1", &["ComfyUI_00001_.png"], &all, "success", vec![])),
        );
        // The re-run: only the save node executes again, under a new file name.
        mock.route(
            "GET",
            "/history/p-2",
            Reply::json(
                200,
                history("p-2", &["ComfyUI_x_00001_.png"], &all[..6], "success", vec![]),
            ),
        );
        mock.route_once("GET", "/view", stale);
        mock.route_once("GET", "/view", Reply::bytes(200, "image/png", png("fresh", None)));
        let p = build("comfyui", settings(&mock)).unwrap();
        let g = p.generate(&req(), &CallCtx::detached()).await.unwrap();
        assert_eq!(g.artifacts.len(), 1);
        assert_eq!(g.artifacts[0].data().as_ref(), png("fresh", None).as_slice());
        assert_eq!(g.raw.as_ref().unwrap()["reruns"], 1);
        let posts: Vec<Value> = mock
            .requests()
            .iter()
            .filter(|r| r.path() == "/prompt")
            .map(|r| r.json())
            .collect();
        assert_eq!(posts.len(), 2);
        let prefix = posts[1]["prompt"]["9"]["inputs"]["filename_prefix"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            prefix.starts_with("ComfyUI_") && prefix != "ComfyUI",
            "save node re-keyed: {prefix}"
        );
        assert_eq!(
            posts[1]["prompt"]["3"], posts[0]["prompt"]["3"],
            "sampler unchanged: stays cached"
        );
    }
}

/// Wait (up to 5 s) until the mock has seen `method path`.
async fn seen(mock: &MockServer, method: &str, path: &str) -> support::Recorded {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(r) = mock
                .requests()
                .into_iter()
                .find(|q| q.method == method && q.path() == path)
            {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {method} {path}"))
}

/// Queue the prompt, cancel the call while `/queue` answers `queue`, and return
/// what the server saw once the cleanup's last request (`method path`) came.
async fn cancel_while(queue: Value, method: &str, path: &str) -> Vec<support::Recorded> {
    let mock = MockServer::start().await;
    mock.route("POST", "/prompt", queued(PID));
    mock.route("GET", &format!("/history/{PID}"), Reply::json(200, json!({})));
    mock.route("GET", "/queue", Reply::json(200, queue));
    mock.route("POST", "/queue", Reply::bytes(200, "text/plain", ""));
    mock.route("POST", "/interrupt", Reply::bytes(200, "text/plain", ""));
    let p = build("comfyui", settings(&mock)).unwrap();
    let ctx = CallCtx::detached();
    let cancel = ctx.cancel.clone();
    let watcher = mock.clone();
    tokio::spawn(async move {
        seen(&watcher, "GET", "/queue").await;
        cancel.cancel();
    });
    let e = p.generate(&req(), &ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled);
    seen(&mock, method, path).await;
    // The cleanup sends one request after its look at the queue; give a stray
    // second one the time the first took.
    tokio::time::sleep(Duration::from_millis(50)).await;
    mock.requests()
}

#[tokio::test]
async fn cancelling_a_running_prompt_interrupts_it_and_nothing_else() {
    let reqs = cancel_while(
        json!({"queue_running": [[1, PID, {}, {}, ["9"]]], "queue_pending": []}),
        "POST",
        "/interrupt",
    )
    .await;
    let int = reqs.iter().find(|r| r.path() == "/interrupt").unwrap();
    assert_eq!(int.json()["prompt_id"], PID);
    assert!(!reqs.iter().any(|r| r.path() == "/queue" && r.method == "POST"));
}

#[tokio::test]
async fn cancelling_a_queued_prompt_deletes_it_and_never_interrupts_another_clients_prompt() {
    // Another client's prompt runs; ours waits behind it.
    let reqs = cancel_while(
        json!({"queue_running": [[1, "theirs", {}, {}, ["9"]]], "queue_pending": [[2, PID, {}, {}, ["9"]]]}),
        "POST",
        "/queue",
    )
    .await;
    let del = reqs
        .iter()
        .find(|r| r.path() == "/queue" && r.method == "POST")
        .unwrap();
    assert_eq!(del.json(), json!({"delete": [PID]}));
    assert!(
        !reqs.iter().any(|r| r.path() == "/interrupt"),
        "an interrupt would have stopped the other client's prompt"
    );
}

#[tokio::test]
async fn http_failures_are_classified_at_every_stage() {
    let hist = history(PID, &["a.png"], &[], "success", vec![]);
    // (stage route, failing reply, extra settings, expected class)
    let cases: Vec<(&str, &str, Reply, Value, ErrorKind)> = vec![
        (
            "POST",
            "/prompt",
            Reply::json(429, json!({"error": "busy"})).header("retry-after", "7"),
            json!({}),
            ErrorKind::RateLimited,
        ),
        (
            "POST",
            "/prompt",
            Reply::json(500, json!({"error": "boom"})),
            json!({}),
            ErrorKind::Transient,
        ),
        (
            "POST",
            "/prompt",
            Reply::json(401, json!({"error": "bad token"})),
            json!({"api_key": "sk-comfy-secret"}),
            ErrorKind::Auth,
        ),
        (
            "GET",
            "/history/p-1",
            Reply::raw_json(200, "{\"p-1\": {"),
            json!({}),
            ErrorKind::Protocol,
        ),
        (
            "GET",
            "/history/p-1",
            Reply::json(200, hist.clone()).delay(Duration::from_secs(3)),
            json!({"timeout_s": 0.3}),
            ErrorKind::Timeout,
        ),
        (
            "GET",
            "/view",
            Reply::bytes(200, "image/png", png("a", None)).truncated(),
            json!({}),
            ErrorKind::Transient,
        ),
        (
            "GET",
            "/view",
            Reply::bytes(200, "image/png", vec![7u8; 4096]),
            json!({"max_response_bytes": 2048}),
            ErrorKind::Invalid,
        ),
    ];
    for (method, path, reply, extra, kind) in cases {
        let mock = MockServer::start().await;
        mock.route_once(method, path, reply);
        mock.route("POST", "/prompt", queued(PID));
        mock.route("GET", "/history/p-1", Reply::json(200, hist.clone()));
        mock.route("GET", "/view", Reply::bytes(200, "image/png", png("a", None)));
        let p = build("comfyui", with(settings(&mock), extra)).unwrap();
        let e = p.generate(&req(), &CallCtx::detached()).await.unwrap_err();
        assert_eq!(e.kind(), kind, "{method} {path}: {e}");
        assert!(!format!("{e} {e:?} {}", e.body().unwrap_or("")).contains("sk-comfy-secret"));
        if kind == ErrorKind::RateLimited {
            assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        }
    }
}

#[test]
fn settings_errors_name_the_problem() {
    let bad = |s: Value| build("comfyui", s).err().unwrap().to_string();
    assert!(bad(json!({})).contains("needs `workflow`"));
    assert!(bad(json!({"workflow": {"1": {"inputs": {}}}})).contains("class_type"));
    assert!(bad(json!({"workflow": workflow(), "inject": {"seed": "99.inputs.seed"}})).contains("node `99`"));
    assert!(bad(json!({"workflow": workflow(), "inject": {"seed": "seed"}})).contains("not a `node_id.inputs.field`"));
    assert!(bad(json!({"workflow": workflow(), "colour": 1})).contains("colour"));
}

#[tokio::test]
async fn preflight_asks_system_stats_and_a_closed_port_is_transient() {
    let mock = MockServer::start().await;
    mock.route(
        "GET",
        "/system_stats",
        Reply::json(
            200,
            json!({"system": {"os": "posix", "comfyui_version": "0.3.40"}, "devices": []}),
        ),
    );
    let p = build("comfyui", settings(&mock)).unwrap();
    p.preflight(&CallCtx::detached()).await.expect("the server is up");
    assert_eq!(mock.requests().last().unwrap().path(), "/system_stats");

    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = build(
        "comfyui",
        json!({"base_url": format!("http://127.0.0.1:{port}"), "workflow": workflow()}),
    )
    .unwrap();
    let e = down.preflight(&CallCtx::detached()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    assert!(e.to_string().contains("system_stats"), "{e}");
}

/// A prompt that waits in the queue (two pending answers of `wait` each), then runs.
fn queue_wait(mock: &MockServer, wait: Duration, entry: Value) {
    mock.route("POST", "/prompt", queued(PID));
    mock.route_once("GET", &format!("/history/{PID}"), Reply::json(200, json!({})));
    mock.route_once("GET", &format!("/history/{PID}"), Reply::json(200, json!({})));
    mock.route_once("GET", &format!("/history/{PID}"), Reply::json(200, json!({})));
    let pending = json!({"queue_running": [[1, "other", {}, {}, ["9"]]], "queue_pending": [[3, PID, {}, {}, ["9"]]]});
    mock.route_once("GET", "/queue", Reply::json(200, pending.clone()).delay(wait));
    mock.route_once("GET", "/queue", Reply::json(200, pending).delay(wait));
    mock.route_once(
        "GET",
        "/queue",
        Reply::json(
            200,
            json!({"queue_running": [[3, PID, {}, {}, ["9"]]], "queue_pending": []}),
        ),
    );
    mock.route("GET", &format!("/history/{PID}"), Reply::json(200, entry));
    mock.route("GET", "/view", Reply::bytes(200, "image/png", png("one", None)));
}

#[tokio::test]
async fn cost_per_second_bills_the_execution_span_not_the_queue_wait() {
    let mock = MockServer::start().await;
    // Executed from t=1000.000 s to t=1000.250 s by the server's clock, after
    // about 0.6 s in the queue.
    let mut entry = history(PID, &["ComfyUI_00001_.png"], &[], "success", vec![]);
    let messages = entry[PID]["status"]["messages"].as_array_mut().unwrap();
    messages[0][1]["timestamp"] = json!(1_000_000);
    messages[2][1]["timestamp"] = json!(1_000_250);
    queue_wait(&mock, Duration::from_millis(300), entry);
    let p = build(
        "comfyui",
        with(settings(&mock), json!({"cost_per_second": 1.0, "cost_per_image": 0.5})),
    )
    .unwrap();
    let g = p.generate(&req(), &CallCtx::detached()).await.unwrap();
    assert!(
        (g.usage.cost_usd - (0.5 + 0.25)).abs() < 1e-9,
        "one image and 0.25 s of execution: {}",
        g.usage.cost_usd
    );
}

#[tokio::test]
async fn without_timestamps_cost_per_second_bills_wall_time_less_the_queue_wait() {
    let mock = MockServer::start().await;
    let mut entry = history(PID, &["ComfyUI_00001_.png"], &[], "success", vec![]);
    for m in entry[PID]["status"]["messages"].as_array_mut().unwrap() {
        m[1].as_object_mut().unwrap().remove("timestamp");
    }
    queue_wait(&mock, Duration::from_millis(300), entry);
    let p = build("comfyui", with(settings(&mock), json!({"cost_per_second": 1.0}))).unwrap();
    let started = std::time::Instant::now();
    let g = p.generate(&req(), &CallCtx::detached()).await.unwrap();
    let wall = started.elapsed().as_secs_f64();
    assert!(wall >= 0.6, "the prompt waited in the queue: {wall}");
    assert!(
        g.usage.cost_usd < wall - 0.5,
        "the queue wait is not billed: {} of {wall} s",
        g.usage.cost_usd
    );
    assert!(g.usage.cost_usd >= 0.0);
}

/// Collects the progress a call reports.
#[derive(Default)]
struct Progress(std::sync::Mutex<Vec<(String, u64, u64)>>);

impl creative_core::CallObserver for Progress {
    fn member_call(&self, _: creative_core::MemberCall) {}
    fn progress(&self, p: creative_core::CallProgress) {
        self.0.lock().unwrap().push((p.stage, p.done, p.total));
    }
}

/// The client id the call queued its prompt with, once it has.
async fn queued_client(mock: &MockServer) -> String {
    let post = seen(mock, "POST", "/prompt").await;
    post.json()["client_id"].as_str().unwrap().to_string()
}

fn ws_msg(kind: &str, data: Value) -> Value {
    json!({"type": kind, "data": data})
}

#[tokio::test]
async fn completion_is_heard_on_the_websocket_and_node_progress_becomes_events() {
    let mock = MockServer::start().await;
    mock.enable_websocket();
    mock.route("POST", "/prompt", queued(PID));
    mock.route("GET", "/view", Reply::bytes(200, "image/png", png("one", None)));
    mock.route("POST", "/history", Reply::bytes(200, "text/plain", ""));
    let server = mock.clone();
    tokio::spawn(async move {
        let client = queued_client(&server).await;
        assert!(
            server.websocket_clients().contains(&client),
            "the socket opens before the prompt is queued"
        );
        let send = |k: &str, d: Value| assert!(server.ws_send(&client, &ws_msg(k, d)));
        send("status", json!({"status": {"exec_info": {"queue_remaining": 1}}}));
        send("execution_start", json!({"prompt_id": PID, "timestamp": 1}));
        send(
            "execution_cached",
            json!({"nodes": ["4"], "prompt_id": PID, "timestamp": 1}),
        );
        // Another prompt's message on a shared server is not ours.
        send(
            "progress",
            json!({"value": 9, "max": 9, "prompt_id": "other", "node": "3"}),
        );
        send("executing", json!({"node": "3", "display_node": "3", "prompt_id": PID}));
        for v in 1..=3 {
            send("progress", json!({"value": v, "max": 3, "prompt_id": PID, "node": "3"}));
        }
        send("executed", json!({"node": "9", "output": {}, "prompt_id": PID}));
        send("execution_success", json!({"prompt_id": PID, "timestamp": 3}));
        // The worker stores the history entry, then says `executing: null`.
        server.route(
            "GET",
            &format!("/history/{PID}"),
            Reply::json(200, history(PID, &["a.png"], &[], "success", vec![])),
        );
        send("executing", json!({"node": null, "prompt_id": PID}));
    });
    let p = build("comfyui", settings(&mock)).unwrap();
    let observer = Arc::new(Progress::default());
    let ctx = CallCtx {
        observer: Some(observer.clone()),
        ..CallCtx::detached()
    };
    let g = p.generate(&req(), &ctx).await.unwrap();
    assert_eq!(g.artifacts.len(), 1);
    let reqs = mock.requests();
    let ws = reqs.iter().find(|r| r.path() == "/ws").expect("a websocket was opened");
    assert_eq!(ws.query("clientId"), Some(queued_client(&mock).await));
    assert_eq!(
        reqs.iter().filter(|r| r.path() == format!("/history/{PID}")).count(),
        1,
        "the history is read once, when the socket says it is stored"
    );
    assert!(!reqs.iter().any(|r| r.path() == "/queue"), "no queue polls");
    let stage = "node 3 (KSampler)".to_string();
    assert_eq!(
        *observer.0.lock().unwrap(),
        vec![
            (stage.clone(), 0, 0),
            (stage.clone(), 1, 3),
            (stage.clone(), 2, 3),
            (stage, 3, 3)
        ]
    );
}

#[tokio::test]
async fn a_websocket_closed_mid_prompt_falls_back_to_polling() {
    let mock = MockServer::start().await;
    mock.enable_websocket();
    mock.route("POST", "/prompt", queued(PID));
    mock.route("GET", "/view", Reply::bytes(200, "image/png", png("one", None)));
    mock.route("POST", "/history", Reply::bytes(200, "text/plain", ""));
    mock.route(
        "GET",
        "/queue",
        Reply::json(
            200,
            json!({"queue_running": [[1, PID, {}, {}, ["9"]]], "queue_pending": []}),
        ),
    );
    mock.route_once("GET", &format!("/history/{PID}"), Reply::json(200, json!({})));
    mock.route(
        "GET",
        &format!("/history/{PID}"),
        Reply::json(200, history(PID, &["a.png"], &[], "success", vec![])),
    );
    let server = mock.clone();
    tokio::spawn(async move {
        let client = queued_client(&server).await;
        server.ws_send(
            &client,
            &ws_msg("execution_start", json!({"prompt_id": PID, "timestamp": 1})),
        );
        server.ws_close(&client);
    });
    let p = build("comfyui", settings(&mock)).unwrap();
    let g = p.generate(&req(), &CallCtx::detached()).await.unwrap();
    assert_eq!(g.artifacts.len(), 1);
    let polls = mock
        .requests()
        .iter()
        .filter(|r| r.path() == format!("/history/{PID}"))
        .count();
    assert_eq!(polls, 2, "polled until the history had it");
}

#[tokio::test]
async fn without_history_timestamps_the_run_time_billed_is_the_one_heard_on_the_websocket() {
    let mock = MockServer::start().await;
    mock.enable_websocket();
    mock.route("POST", "/prompt", queued(PID));
    mock.route("GET", "/view", Reply::bytes(200, "image/png", png("one", None)));
    mock.route("POST", "/history", Reply::bytes(200, "text/plain", ""));
    let mut entry = history(PID, &["a.png"], &[], "success", vec![]);
    entry[PID]["status"]["messages"] = json!([]);
    let server = mock.clone();
    let queue_wait = Duration::from_millis(800);
    let run = Duration::from_millis(150);
    tokio::spawn(async move {
        let client = queued_client(&server).await;
        tokio::time::sleep(queue_wait).await;
        server.ws_send(&client, &ws_msg("execution_start", json!({"prompt_id": PID})));
        tokio::time::sleep(run).await;
        server.ws_send(&client, &ws_msg("execution_success", json!({"prompt_id": PID})));
        server.route("GET", &format!("/history/{PID}"), Reply::json(200, entry));
        server.ws_send(&client, &ws_msg("executing", json!({"node": null, "prompt_id": PID})));
    });
    let p = build("comfyui", with(settings(&mock), json!({"cost_per_second": 1.0}))).unwrap();
    let g = p.generate(&req(), &CallCtx::detached()).await.unwrap();
    let billed = g.usage.cost_usd;
    assert!(billed >= run.as_secs_f64(), "billed {billed} s, ran at least {run:?}");
    assert!(
        billed < queue_wait.as_secs_f64(),
        "billed {billed} s: the queue wait is not billed"
    );
}

#[tokio::test]
async fn output_nodes_are_sent_as_partial_execution_targets() {
    let mock = MockServer::start().await;
    mock.route("POST", "/prompt", queued(PID));
    mock.route(
        "GET",
        &format!("/history/{PID}"),
        Reply::json(200, history(PID, &["a.png"], &[], "success", vec![])),
    );
    mock.route("GET", "/view", Reply::bytes(200, "image/png", png("one", None)));
    mock.route("POST", "/history", Reply::bytes(200, "text/plain", ""));
    let p = build("comfyui", with(settings(&mock), json!({"output_nodes": ["9"]}))).unwrap();
    p.generate(&req(), &CallCtx::detached()).await.unwrap();
    let post = seen(&mock, "POST", "/prompt").await.json();
    assert_eq!(post["partial_execution_targets"], json!(["9"]));

    // Without `output_nodes` every output runs, and the key is not sent.
    let mock = MockServer::start().await;
    mock.route("POST", "/prompt", queued(PID));
    let p = build("comfyui", settings(&mock)).unwrap();
    let _ = p.generate(&req(), &CallCtx::detached()).await;
    assert!(seen(&mock, "POST", "/prompt")
        .await
        .json()
        .get("partial_execution_targets")
        .is_none());
}

#[tokio::test]
async fn finished_prompts_are_deleted_from_the_history_unless_kept() {
    for keep in [false, true] {
        let mock = MockServer::start().await;
        mock.route("POST", "/prompt", queued(PID));
        mock.route(
            "GET",
            &format!("/history/{PID}"),
            Reply::json(200, history(PID, &["a.png"], &[], "success", vec![])),
        );
        mock.route("GET", "/view", Reply::bytes(200, "image/png", png("one", None)));
        mock.route("POST", "/history", Reply::bytes(200, "text/plain", ""));
        let p = build("comfyui", with(settings(&mock), json!({"keep_history": keep}))).unwrap();
        p.generate(&req(), &CallCtx::detached()).await.unwrap();
        if keep {
            // The delete is sent after the call returns, if at all: wait as long
            // as it takes when it is sent.
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(!mock.requests().iter().any(|r| r.path() == "/history"));
        } else {
            let del = seen(&mock, "POST", "/history").await;
            assert_eq!(del.json(), json!({"delete": [PID]}));
        }
    }
}

#[tokio::test]
async fn a_failed_prompt_is_deleted_from_the_history_too() {
    let mock = MockServer::start().await;
    mock.route("POST", "/prompt", queued(PID));
    let err = json!(["execution_error", {"prompt_id": PID, "node_id": "3", "node_type": "KSampler",
        "exception_type": "RuntimeError", "exception_message": "boom"}]);
    mock.route(
        "GET",
        &format!("/history/{PID}"),
        Reply::json(200, history(PID, &[], &[], "error", vec![err])),
    );
    mock.route("POST", "/history", Reply::bytes(200, "text/plain", ""));
    let p = build("comfyui", settings(&mock)).unwrap();
    p.generate(&req(), &CallCtx::detached()).await.unwrap_err();
    assert_eq!(seen(&mock, "POST", "/history").await.json(), json!({"delete": [PID]}));
}

#[tokio::test]
async fn a_call_out_of_time_names_how_long_the_prompt_waited_and_where() {
    let mock = MockServer::start().await;
    mock.route("POST", "/prompt", queued(PID));
    mock.route("GET", &format!("/history/{PID}"), Reply::json(200, json!({})));
    mock.route(
        "GET",
        "/queue",
        Reply::json(
            200,
            json!({"queue_running": [], "queue_pending": [[1, PID, {}, {}, ["9"]]]}),
        ),
    );
    mock.route("POST", "/queue", Reply::bytes(200, "text/plain", ""));
    let p = build("comfyui", settings(&mock)).unwrap();
    let mut ctx = CallCtx::detached();
    ctx.deadline = Some(std::time::Instant::now() + Duration::from_millis(300));
    let e = p.generate(&req(), &ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    let m = e.message();
    assert!(
        m.starts_with(&format!(
            "prompt {PID} did not finish within the call's time limit: after "
        )) && m.contains(" s it was still queued (raise the provider's `call_timeout_s`)"),
        "{m}"
    );
}

#[tokio::test]
async fn a_web_page_on_the_port_is_named_not_dumped() {
    let mock = MockServer::start().await;
    mock.route(
        "GET",
        "/system_stats",
        Reply::bytes(
            404,
            "text/html",
            "<!DOCTYPE html><html><head><title>Error 404 (Not Found)</title></head><body><p>That is an error.</p></body></html>",
        ),
    );
    let p = build("comfyui", settings(&mock)).unwrap();
    let e = p.preflight(&CallCtx::detached()).await.unwrap_err();
    assert!(
        e.message()
            .starts_with("Not Found: the server answered with a web page (\"Error 404 (Not Found)\")"),
        "{e}"
    );
    assert!(!e.message().contains("<p>"), "{e}");
}

#[tokio::test]
async fn validation_messages_read_as_sentences() {
    let mock = MockServer::start().await;
    mock.route(
        "POST",
        "/prompt",
        Reply::json(400, json!({
            "error": {"type": "invalid_prompt", "message": "Cannot execute because node Foo does not exist.", "details": "Node ID '#2'", "extra_info": {}},
            "node_errors": {}
        })),
    );
    let p = build("comfyui", settings(&mock)).unwrap();
    let e = p.generate(&req(), &CallCtx::detached()).await.unwrap_err();
    assert_eq!(
        e.message(),
        "Cannot execute because node Foo does not exist (Node ID '#2')"
    );

    // Accepted with dropped outputs: no `(HTTP 200)`, and a reason without a message says so.
    mock.reset();
    mock.route(
        "POST",
        "/prompt",
        Reply::json(
            200,
            json!({"prompt_id": PID, "number": 1, "node_errors": {"9": {"errors": [{}], "class_type": "SaveImage"}}}),
        ),
    );
    mock.route("POST", "/queue", Reply::bytes(200, "text/plain", ""));
    mock.route(
        "GET",
        "/queue",
        Reply::json(200, json!({"queue_running": [], "queue_pending": []})),
    );
    let e = p.generate(&req(), &CallCtx::detached()).await.unwrap_err();
    assert!(!e.to_string().contains("HTTP 200"), "{e}");
    assert!(e.message().ends_with("node 9 (SaveImage): failed validation"), "{e}");
}

#[tokio::test]
async fn conformance_failure_suite() {
    // A ComfyUI server behind an authenticating proxy (the key), answering
    // `POST /prompt` in each case's way; ComfyUI has no content policy.
    const KEY: &str = "comfy-proxy-token-123";
    support::failure_suite(support::Conformance {
        kind: "comfyui",
        settings: json!({"api_key": KEY, "workflow": workflow(), "poll_interval_ms": 5, "poll_max_ms": 10}),
        request: Request::new(Task::Image, "a lighthouse at dusk"),
        method: "POST",
        path: "/prompt",
        ok: Reply::json(200, json!({"prompt_id": PID, "number": 1, "node_errors": {}})),
        malformed: Reply::raw_json(200, "{\"prompt_id\": "),
        content_policy: None,
        auth: Reply::json(401, json!({"error": {"message": "invalid bearer token"}})),
        rate_limited: Reply::json(429, json!({"error": {"message": "too many requests"}})),
        secret: KEY,
        routes: vec![
            (
                "GET",
                format!("/history/{PID}"),
                Reply::json(200, history(PID, &["a.png"], &[], "success", vec![])),
            ),
            (
                "GET",
                "/view".into(),
                Reply::bytes(200, "image/png", b"\x89PNG\r\n\x1a\nimg".to_vec()),
            ),
            ("POST", "/history".into(), Reply::bytes(200, "text/plain", "")),
            (
                "GET",
                "/queue".into(),
                Reply::json(200, json!({"queue_running": [], "queue_pending": []})),
            ),
            ("POST", "/queue".into(), Reply::bytes(200, "text/plain", "")),
        ],
    })
    .await;
}
