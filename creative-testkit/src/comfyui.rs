//! A loopback ComfyUI server: the HTTP API and websocket a real server speaks
//! (as ComfyUI's `server.py` and `execution.py` do), with a queue that runs one
//! prompt at a time for a configured time instead of a model.
//!
//! What it serves:
//!
//! - `POST /prompt {prompt, client_id, prompt_id?, partial_execution_targets?}`:
//!   queues the prompt (our `prompt_id`, else one of its own) and answers
//!   `{prompt_id, number, node_errors}`; a prompt that is not an object of
//!   nodes with `class_type`, or has no `SaveImage` output, is refused with 400
//!   and ComfyUI's error body;
//! - `GET /queue`, `POST /queue {delete | clear}`, `POST /interrupt
//!   {prompt_id?}` (only the running prompt, or any when no id is given);
//! - `GET /history/{id}` (`{}` until the prompt is done), `POST /history
//!   {delete | clear}`;
//! - `GET /view?filename=..` (a small PNG per output image), `GET /system_stats`,
//!   `POST /upload/image` (multipart; answers the uploaded file's name);
//! - `GET /ws?clientId=..`: a websocket that gets `status` (the queue length) on
//!   connecting and whenever the queue changes, and its own prompts'
//!   `execution_start`, one `progress` (of the sampler), `executing` per output
//!   node, `executed`,
//!   `execution_success` and finally `executing` with `node: null`.
//!
//! A prompt makes `batch_size` images (the first node input so named, else 1)
//! per output node, and takes [`ComfyConfig::per_prompt`] plus
//! [`ComfyConfig::per_image`] for each image. [`FakeComfyUi::kill`] dies as a
//! crashed server does: the port stops listening, every connection (websockets
//! included) drops, and the running prompt never finishes.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use crate::{gradient_png, read_request, Req, TestkitError};

/// How the fake server runs prompts.
#[derive(Debug, Clone, Default)]
pub struct ComfyConfig {
    /// Time each prompt runs, whatever its size.
    pub per_prompt: Duration,
    /// Time each image of a prompt adds (a batch of 8 takes 8 of these).
    pub per_image: Duration,
}

/// What the fake server has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ComfyStats {
    /// Prompts accepted by `POST /prompt`.
    pub queued: u64,
    /// Prompts that ran to the end.
    pub executed: u64,
    /// Images those prompts made.
    pub images: u64,
    /// Prompts stopped by `/interrupt`.
    pub interrupted: u64,
    /// Pending prompts removed by `POST /queue {delete}`.
    pub deleted: u64,
}

struct Prompt {
    number: u64,
    id: String,
    prompt: Value,
    client_id: String,
    outputs: Vec<String>,
    batch: u64,
}

impl Prompt {
    fn queue_item(&self) -> Value {
        json!([self.number, self.id, self.prompt, {"client_id": self.client_id}, self.outputs])
    }
}

#[derive(Default)]
struct State {
    pending: VecDeque<Prompt>,
    running: Option<Prompt>,
    interrupt: bool,
    history: HashMap<String, Value>,
    /// Output files made so far (what `/view` serves).
    files: std::collections::HashSet<String>,
    sockets: HashMap<String, mpsc::UnboundedSender<String>>,
    next_number: u64,
    /// Every prompt accepted, in order (its workflow).
    received: Vec<Value>,
}

impl State {
    fn remaining(&self) -> usize {
        self.pending.len() + usize::from(self.running.is_some())
    }

    fn status(&self, sid: Option<&str>) -> String {
        let mut data = json!({"status": {"exec_info": {"queue_remaining": self.remaining()}}});
        if let Some(sid) = sid {
            data["sid"] = sid.into();
        }
        json!({"type": "status", "data": data}).to_string()
    }

    /// Tell every socket the queue's length, as ComfyUI does when it changes.
    fn broadcast_status(&self) {
        let msg = self.status(None);
        for tx in self.sockets.values() {
            let _ = tx.send(msg.clone());
        }
    }

    fn send(&self, client_id: &str, kind: &str, data: Value) {
        if let Some(tx) = self.sockets.get(client_id) {
            let _ = tx.send(json!({"type": kind, "data": data}).to_string());
        }
    }
}

#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    executed: AtomicU64,
    images: AtomicU64,
    interrupted: AtomicU64,
    deleted: AtomicU64,
}

struct Shared {
    config: ComfyConfig,
    state: Mutex<State>,
    work: Notify,
    killed: tokio::sync::watch::Sender<bool>,
    counters: Counters,
    png: Vec<u8>,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock means a connection task panicked; the state is still whole.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running fake ComfyUI server; dropping it stops it.
pub struct FakeComfyUi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
    worker: JoinHandle<()>,
}

impl FakeComfyUi {
    /// Bind `127.0.0.1` on a free port and serve on the current tokio runtime.
    pub async fn start(config: ComfyConfig) -> Result<FakeComfyUi, TestkitError> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(State::default()),
            work: Notify::new(),
            killed: tokio::sync::watch::channel(false).0,
            counters: Counters::default(),
            png: gradient_png(8, 8)?,
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        let worker = tokio::spawn(worker(shared.clone()));
        Ok(FakeComfyUi {
            addr,
            shared,
            accept,
            worker,
        })
    }

    /// `http://127.0.0.1:PORT`, a `comfyui` provider's `base_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Counts so far.
    pub fn stats(&self) -> ComfyStats {
        let c = &self.shared.counters;
        ComfyStats {
            queued: c.queued.load(Ordering::Relaxed),
            executed: c.executed.load(Ordering::Relaxed),
            images: c.images.load(Ordering::Relaxed),
            interrupted: c.interrupted.load(Ordering::Relaxed),
            deleted: c.deleted.load(Ordering::Relaxed),
        }
    }

    /// The workflows of the prompts accepted so far, in order.
    pub fn prompts(&self) -> Vec<Value> {
        self.shared.state().received.clone()
    }

    /// Whether a prompt is running now.
    pub fn is_running(&self) -> bool {
        self.shared.state().running.is_some()
    }

    /// Die as a crashed server does: no new connections, every open one (and
    /// every websocket) dropped without an answer, the running prompt lost.
    pub fn kill(&self) {
        self.shared.killed.send_replace(true);
        self.accept.abort();
        self.worker.abort();
        self.shared.state().sockets.clear();
    }
}

impl Drop for FakeComfyUi {
    fn drop(&mut self) {
        self.kill();
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Run queued prompts one at a time, as ComfyUI's prompt worker does.
async fn worker(shared: Arc<Shared>) {
    loop {
        let notified = shared.work.notified();
        let next = {
            let mut s = shared.state();
            match s.pending.pop_front() {
                Some(p) => {
                    let (id, client) = (p.id.clone(), p.client_id.clone());
                    s.running = Some(p);
                    s.interrupt = false;
                    s.broadcast_status();
                    s.send(
                        &client,
                        "execution_start",
                        json!({"prompt_id": id, "timestamp": now_ms()}),
                    );
                    Some(id)
                }
                None => None,
            }
        };
        let Some(id) = next else {
            notified.await;
            continue;
        };
        let (batch, outputs) = {
            let s = shared.state();
            let p = s.running.as_ref().map(|p| (p.batch, p.outputs.len() as u64));
            p.unwrap_or((1, 0))
        };
        {
            // One `progress` message for the sampler (or the first node), as
            // ComfyUI sends for each step of a sampling node.
            let s = shared.state();
            if let Some(p) = &s.running {
                let nodes = p.prompt.as_object();
                let node = nodes
                    .and_then(|n| {
                        n.iter()
                            .find(|(_, v)| v["class_type"].as_str().is_some_and(|c| c.starts_with("KSampler")))
                            .or_else(|| n.iter().next())
                    })
                    .map(|(k, _)| k.clone());
                if let Some(node) = node {
                    s.send(
                        &p.client_id,
                        "progress",
                        json!({"value": 1, "max": 1, "prompt_id": id, "node": node}),
                    );
                }
            }
        }
        let took = shared.config.per_prompt + shared.config.per_image * (batch * outputs) as u32;
        let started = now_ms();
        // Interrupts are seen within a tick, as ComfyUI checks between steps.
        let tick = Duration::from_millis(2);
        let end = tokio::time::Instant::now() + took;
        while tokio::time::Instant::now() < end && !shared.state().interrupt {
            tokio::time::sleep(tick.min(end - tokio::time::Instant::now())).await;
        }
        let mut s = shared.state();
        let Some(p) = s.running.take() else { continue };
        let interrupted = std::mem::take(&mut s.interrupt);
        let mut outputs = Map::new();
        if interrupted {
            shared.counters.interrupted.fetch_add(1, Ordering::Relaxed);
            s.send(
                &p.client_id,
                "execution_interrupted",
                json!({"prompt_id": id, "timestamp": now_ms()}),
            );
        } else {
            for node in &p.outputs {
                let images: Vec<Value> = (0..p.batch)
                    .map(|i| {
                        let name = format!("ComfyUI_{:05}_{i}_.png", p.number);
                        json!({"filename": name, "subfolder": "", "type": "output"})
                    })
                    .collect();
                for i in &images {
                    if let Some(f) = i["filename"].as_str() {
                        s.files.insert(f.to_string());
                    }
                }
                s.send(
                    &p.client_id,
                    "executing",
                    json!({"node": node, "display_node": node, "prompt_id": id}),
                );
                s.send(
                    &p.client_id,
                    "executed",
                    json!({"node": node, "display_node": node, "output": {"images": images}, "prompt_id": id}),
                );
                outputs.insert(node.clone(), json!({"images": images}));
            }
            shared.counters.executed.fetch_add(1, Ordering::Relaxed);
            shared
                .counters
                .images
                .fetch_add(p.batch * p.outputs.len() as u64, Ordering::Relaxed);
        }
        let (status, last) = if interrupted {
            ("error", "execution_interrupted")
        } else {
            ("success", "execution_success")
        };
        let entry = json!({
            "prompt": p.queue_item(),
            "outputs": outputs,
            "status": {"status_str": status, "completed": !interrupted, "messages": [
                ["execution_start", {"prompt_id": id, "timestamp": started}],
                [last, {"prompt_id": id, "timestamp": now_ms()}]
            ]},
            "meta": {}
        });
        s.history.insert(id.clone(), entry);
        if !interrupted {
            s.send(
                &p.client_id,
                "execution_success",
                json!({"prompt_id": id, "timestamp": now_ms()}),
            );
        }
        // `executing` with no node: the history entry is stored.
        s.send(&p.client_id, "executing", json!({"node": null, "prompt_id": id}));
        s.broadcast_status();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let mut killed = shared.killed.subscribe();
        if *killed.borrow_and_update() {
            return;
        }
        let conn = serve_connection(stream, shared.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = killed.wait_for(|k| *k) => {}
                _ = conn => {}
            }
        });
    }
}

async fn serve_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let req = match read_request(&mut stream, &mut buf).await {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => return,
        };
        if req.path == "/ws" {
            if let Some(key) = &req.ws_key {
                let client_id = query_value(&req.query, "clientId").unwrap_or_default();
                websocket(stream, key, client_id, shared).await;
                return;
            }
        }
        let (status, kind, body) = answer(&req, &shared);
        if !crate::respond(&mut stream, status, kind, "", &body, req.close).await {
            return;
        }
        if req.close {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// `key`'s value in a query string (no percent-decoding: ids here are plain).
fn query_value(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
}

async fn websocket(mut stream: TcpStream, key: &str, client_id: String, shared: Arc<Shared>) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{handshake::derive_accept_key, protocol::Role, Message};
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    // Registered before the handshake's answer, as ComfyUI's handler does (no
    // await between `prepare` and `sockets[sid] = ws`): a client that queues a
    // prompt as soon as it is connected must not miss the prompt's messages.
    let (tx, mut rx) = mpsc::unbounded_channel();
    {
        let mut s = shared.state();
        // As ComfyUI: the first message names the client id (`sid`) and the queue.
        let _ = tx.send(s.status(Some(&client_id)));
        s.sockets.insert(client_id.clone(), tx);
    }
    if stream.write_all(head.as_bytes()).await.is_err() {
        shared.state().sockets.remove(&client_id);
        return;
    }
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(stream, Role::Server, None).await;
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(text) => {
                    if ws.send(Message::text(text)).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            incoming = ws.next() => match incoming {
                Some(Ok(_)) => {}
                _ => break,
            },
        }
    }
    // Closed now, so a newer socket under the same id (whose sender is open) stays.
    drop(rx);
    let mut s = shared.state();
    if s.sockets.get(&client_id).is_some_and(|tx| tx.is_closed()) {
        s.sockets.remove(&client_id);
    }
}

fn json_reply(status: u16, v: Value) -> (u16, &'static str, Vec<u8>) {
    (status, "application/json", v.to_string().into_bytes())
}

fn invalid(kind: &str, message: &str) -> (u16, &'static str, Vec<u8>) {
    json_reply(
        400,
        json!({"error": {"type": kind, "message": message, "details": "", "extra_info": {}}, "node_errors": {}}),
    )
}

fn ids(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn answer(req: &Req, shared: &Shared) -> (u16, &'static str, Vec<u8>) {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/system_stats") => json_reply(
            200,
            json!({"system": {"os": "posix", "comfyui_version": "0.3.60-loopback", "python_version": "3.12"}, "devices": []}),
        ),
        ("POST", "/prompt") => queue_prompt(&body, shared),
        ("GET", "/queue") => {
            let s = shared.state();
            let running: Vec<Value> = s.running.iter().map(Prompt::queue_item).collect();
            let pending: Vec<Value> = s.pending.iter().map(Prompt::queue_item).collect();
            json_reply(200, json!({"queue_running": running, "queue_pending": pending}))
        }
        ("POST", "/queue") => {
            let mut s = shared.state();
            let before = s.pending.len();
            if body.get("clear").and_then(Value::as_bool) == Some(true) {
                s.pending.clear();
            }
            let gone = ids(&body, "delete");
            s.pending.retain(|p| !gone.contains(&p.id));
            let n = (before - s.pending.len()) as u64;
            shared.counters.deleted.fetch_add(n, Ordering::Relaxed);
            s.broadcast_status();
            json_reply(200, json!({}))
        }
        ("POST", "/interrupt") => {
            let mut s = shared.state();
            let target = body.get("prompt_id").and_then(Value::as_str);
            let hit = match (&s.running, target) {
                (Some(p), Some(t)) => p.id == t,
                (Some(_), None) => true,
                (None, _) => false,
            };
            s.interrupt |= hit;
            json_reply(200, json!({}))
        }
        ("POST", "/history") => {
            let mut s = shared.state();
            if body.get("clear").and_then(Value::as_bool) == Some(true) {
                s.history.clear();
            }
            for id in ids(&body, "delete") {
                s.history.remove(&id);
            }
            json_reply(200, json!({}))
        }
        ("GET", p) if p.starts_with("/history/") => {
            let id = &p["/history/".len()..];
            let s = shared.state();
            match s.history.get(id) {
                Some(e) => json_reply(200, json!({ id: e })),
                None => json_reply(200, json!({})),
            }
        }
        ("GET", "/view") => {
            let name = query_value(&req.query, "filename").unwrap_or_default();
            if shared.state().files.contains(&name) {
                (200, "image/png", shared.png.clone())
            } else {
                (404, "text/plain", b"404: Not Found".to_vec())
            }
        }
        ("POST", "/upload/image") => {
            // The multipart part's `filename="..."` is the stored name.
            let text = String::from_utf8_lossy(&req.body);
            let name = text
                .split("filename=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("upload.png")
                .to_string();
            json_reply(200, json!({"name": name, "subfolder": "", "type": "input"}))
        }
        _ => (404, "text/plain", b"404: Not Found".to_vec()),
    }
}

fn queue_prompt(body: &Value, shared: &Shared) -> (u16, &'static str, Vec<u8>) {
    let Some(nodes) = body.get("prompt").and_then(Value::as_object) else {
        return invalid("invalid_prompt", "Invalid prompt: the prompt is not an object of nodes");
    };
    if let Some((id, _)) = nodes
        .iter()
        .find(|(_, n)| n.get("class_type").and_then(Value::as_str).is_none())
    {
        return invalid(
            "invalid_prompt",
            &format!("Cannot execute because a node is missing the class_type property.: Node ID '#{id}'"),
        );
    }
    let mut outputs: Vec<String> = nodes
        .iter()
        .filter(|(_, n)| n["class_type"] == "SaveImage")
        .map(|(id, _)| id.clone())
        .collect();
    let targets = ids(body, "partial_execution_targets");
    if !targets.is_empty() {
        outputs.retain(|o| targets.contains(o));
    }
    if outputs.is_empty() {
        return invalid("prompt_no_outputs", "Prompt has no outputs");
    }
    let batch = nodes
        .values()
        .find_map(|n| n.pointer("/inputs/batch_size").and_then(Value::as_u64))
        .unwrap_or(1)
        .max(1);
    let client_id = body.get("client_id").and_then(Value::as_str).unwrap_or("").to_string();
    let mut s = shared.state();
    let number = s.next_number;
    s.next_number += 1;
    let id = body
        .get("prompt_id")
        .and_then(Value::as_str)
        .map_or_else(|| format!("loopback-{number}"), str::to_string);
    s.received.push(Value::Object(nodes.clone()));
    s.pending.push_back(Prompt {
        number,
        id: id.clone(),
        prompt: Value::Object(nodes.clone()),
        client_id,
        outputs,
        batch,
    });
    shared.counters.queued.fetch_add(1, Ordering::Relaxed);
    s.broadcast_status();
    drop(s);
    shared.work.notify_one();
    json_reply(200, json!({"prompt_id": id, "number": number, "node_errors": {}}))
}
