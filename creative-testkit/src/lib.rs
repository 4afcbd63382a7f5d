//! Test and benchmark support for `creative`: a fast loopback server for the
//! OpenAI images API, a loopback ComfyUI ([`comfyui::FakeComfyUi`]: its HTTP
//! API, websocket and one-prompt-at-a-time queue) for the pool's tests, a
//! scriptable fake provider ([`fake`]) driven from the test, and condition
//! waits ([`wait`]) instead of sleep-then-assert.
//!
//! [`LoopbackServer`] answers `POST /v1/images/generations` with
//! `{"created": .., "data": [{"b64_json": ..}]}` holding a PNG of the requested
//! `size` (or of a forced size), `POST /v1/chat/completions` with what a test's
//! responder writes ([`LoopbackServer::respond_to_chat`]), and `GET /v1/models` (the `openai` provider's
//! preflight). Each size's PNG is encoded once and its base64 cached, so the
//! server's own cost per request is a copy: a benchmark measures the client,
//! not the mock. Every request waits the configured latency (a tokio sleep, so
//! thousands wait at once), and a share of them can be answered 429 or 500 to
//! exercise retries.
//!
//! The picture is the one `py_campaign.py` (the Python comparison) builds for its
//! `--client none` mode: a red/green gradient with a xor pattern in blue, so both
//! sides of a comparison decode and resize the same pixels.
//!
//! The HTTP/1.1 server is hand-written on tokio (keep-alive, `Content-Length`
//! bodies), which is all an HTTP client such as reqwest or aiohttp needs here.
//!
//! [`measure`] (Linux) runs a child process and reads its wall time, CPU and peak
//! RSS from the kernel, for benchmarks and memory tests of the `creative` binary.
#![warn(missing_docs)]

pub mod comfyui;
pub mod fake;
#[cfg(target_os = "linux")]
pub mod measure;
pub mod wait;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Largest side the server renders: a typo'd size must not take the machine's memory.
pub const MAX_SIDE: u32 = 4096;

/// Largest request head or body accepted.
const MAX_REQUEST_BYTES: usize = 1 << 20;

/// Why the server could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// Binding or accepting failed.
    #[error("loopback server: {0}")]
    Io(#[from] std::io::Error),
    /// A command-line argument was wrong.
    #[error("loopback-openai: {0}")]
    Usage(String),
    /// The PNG encoder refused the picture.
    #[error("loopback server: encoding a {0}x{1} PNG: {2}")]
    Encode(u32, u32, String),
}

/// How the server answers.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Time every request waits before its answer.
    pub latency: Duration,
    /// Serve this size whatever the request asks (a benchmark's tiny images).
    pub size: Option<(u32, u32)>,
    /// Share of generations answered `429 Too Many Requests` (0 to 1).
    pub rate_429: f64,
    /// Share of generations answered `500 Internal Server Error` (0 to 1).
    pub rate_500: f64,
    /// Share of generations that stall for [`Config::stall`] before their answer,
    /// so that a client with a shorter timeout times out (0 to 1).
    pub rate_stall: f64,
    /// How long a stalled generation waits. Default 0 (no stall).
    pub stall: Duration,
}

/// What the server has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted.
    pub connections: u64,
    /// Generations answered with images.
    pub generations: u64,
    /// Images sent (a generation with `n = 4` counts 4).
    pub images: u64,
    /// Answers that were injected 429s or 500s.
    pub injected_errors: u64,
    /// Other requests (models, unknown paths, bad requests).
    pub other: u64,
    /// Generation requests received (answered or not: stalled, injected errors,
    /// cut by a kill).
    pub requests: u64,
    /// Generations that were made to stall.
    pub stalled: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    generations: AtomicU64,
    images: AtomicU64,
    injected_errors: AtomicU64,
    other: AtomicU64,
    requests: AtomicU64,
    stalled: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> Stats {
        Stats {
            connections: self.connections.load(Ordering::Relaxed),
            generations: self.generations.load(Ordering::Relaxed),
            images: self.images.load(Ordering::Relaxed),
            injected_errors: self.injected_errors.load(Ordering::Relaxed),
            other: self.other.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            stalled: self.stalled.load(Ordering::Relaxed),
        }
    }
}

struct Shared {
    config: Config,
    /// Set by [`LoopbackServer::kill`]: every connection drops, no new one is accepted.
    killed: tokio::sync::watch::Sender<bool>,
    counters: Counters,
    /// base64 of each size's PNG, made on first use.
    images: Mutex<HashMap<(u32, u32), Arc<str>>>,
    /// Writes the answer of each chat completion from its request body.
    chat: Mutex<Option<ChatResponder>>,
    /// Bodies of the chat completions received, in order.
    chat_log: Mutex<Vec<serde_json::Value>>,
}

/// Writes a chat completion's answer (the assistant message's content) from the
/// request body: the test's script of what the model says.
pub type ChatResponder = Arc<dyn Fn(&serde_json::Value) -> String + Send + Sync>;

impl Shared {
    fn image_b64(&self, w: u32, h: u32) -> Result<Arc<str>, TestkitError> {
        // A poisoned lock only means another connection panicked mid-insert; the map is still usable.
        let mut map = self.images.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(&(w, h)) {
            return Ok(s.clone());
        }
        let png = gradient_png(w, h)?;
        let b64: Arc<str> = base64::engine::general_purpose::STANDARD.encode(png).into();
        map.insert((w, h), b64.clone());
        Ok(b64)
    }
}

/// The picture served, as PNG bytes: red follows x, green follows y, blue is
/// `((x ^ y) * 7) & 255` (the same pixels as `py_campaign.py`'s `mock_png`).
pub fn gradient_png(w: u32, h: u32) -> Result<Vec<u8>, TestkitError> {
    if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
        return Err(TestkitError::Encode(
            w,
            h,
            format!("each side must be within 1..={MAX_SIDE}"),
        ));
    }
    let mut rgb = Vec::with_capacity(w as usize * h as usize * 3);
    for y in 0..h {
        for x in 0..w {
            rgb.push(((x * 255) / w) as u8);
            rgb.push(((y * 255) / h) as u8);
            rgb.push(((x ^ y).wrapping_mul(7) & 255) as u8);
        }
    }
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let err = |e: png::EncodingError| TestkitError::Encode(w, h, e.to_string());
    let mut writer = enc.write_header().map_err(err)?;
    writer.write_image_data(&rgb).map_err(err)?;
    writer.finish().map_err(err)?;
    Ok(out)
}

/// Parse `512`, `512x512` or `1024x576` into a width and height.
pub fn parse_size(s: &str) -> Option<(u32, u32)> {
    let (w, h) = match s.split_once('x') {
        Some((w, h)) => (w.trim().parse().ok()?, h.trim().parse().ok()?),
        None => {
            let n = s.trim().parse().ok()?;
            (n, n)
        }
    };
    (w > 0 && h > 0 && w <= MAX_SIDE && h <= MAX_SIDE).then_some((w, h))
}

/// A running loopback server; dropping it stops accepting connections.
pub struct LoopbackServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl LoopbackServer {
    /// Bind `127.0.0.1:port` (0 picks a free port) and serve on the current tokio runtime.
    pub async fn start(port: u16, config: Config) -> Result<Self, TestkitError> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            killed: tokio::sync::watch::channel(false).0,
            counters: Counters::default(),
            images: Mutex::new(HashMap::new()),
            chat: Mutex::new(None),
            chat_log: Mutex::new(Vec::new()),
        });
        if let Some((w, h)) = shared.config.size {
            // Encode the forced size before the first request, so no request pays for it.
            shared.image_b64(w, h)?;
        }
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(LoopbackServer { addr, shared, task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the root `py_campaign.py` takes.
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/v1`, the `base_url` of an `openai` provider.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Encode a size's PNG now rather than on its first request.
    pub fn prewarm(&self, w: u32, h: u32) -> Result<(), TestkitError> {
        self.shared.image_b64(w, h).map(|_| ())
    }

    /// Answer `POST /v1/chat/completions` too: `respond` writes the assistant's
    /// message from the request body (OpenAI chat completions wire format, with
    /// usage counted at four characters a token). Without a responder the route
    /// answers 404.
    pub fn respond_to_chat(&self, respond: impl Fn(&serde_json::Value) -> String + Send + Sync + 'static) {
        *self.shared.chat.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(respond));
    }

    /// The bodies of the chat completions received so far, in order.
    pub fn chat_requests(&self) -> Vec<serde_json::Value> {
        self.shared.chat_log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Counts so far.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Die as a crashed server does: the listening socket closes (new connections
    /// are refused) and every open connection is dropped, requests in flight
    /// included, without an answer.
    pub fn kill(&self) {
        self.shared.killed.send_replace(true);
        self.task.abort();
    }

    /// Serve until the task is aborted (for the binary: forever).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                shared.counters.connections.fetch_add(1, Ordering::Relaxed);
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
            // Out of file descriptors or a reset before accept: wait a moment rather than spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// One parsed request.
struct Req {
    method: String,
    path: String,
    /// The query string (after `?`), empty when none.
    query: String,
    body: Vec<u8>,
    close: bool,
    /// `Sec-WebSocket-Key` of a request asking to upgrade to a websocket.
    ws_key: Option<String>,
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Read one request; `Ok(None)` when the client closed the connection between requests.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<Req>> {
    let mut chunk = [0u8; 16 * 1024];
    let mut scanned: usize = 0;
    let head_end = loop {
        // Re-scan only the new bytes (plus three for a terminator split across reads).
        if let Some(i) = find_head_end(&buf[scanned.saturating_sub(3)..]) {
            break scanned.saturating_sub(3) + i;
        }
        scanned = buf.len();
        if buf.len() > MAX_REQUEST_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let target = first.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (path, query) = (path.to_string(), query.to_string());
    let http10 = first.next().is_some_and(|v| v == "HTTP/1.0");
    let mut len = 0usize;
    let mut close = http10;
    let mut upgrade = false;
    let mut ws_key = None;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else { continue };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        match k.as_str() {
            "content-length" => {
                len = v
                    .parse()
                    .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad content-length"))?
            }
            "connection" => close = v.eq_ignore_ascii_case("close"),
            "upgrade" => upgrade = v.eq_ignore_ascii_case("websocket"),
            "sec-websocket-key" => ws_key = Some(v.to_string()),
            "transfer-encoding" => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "chunked request bodies are not supported",
                ))
            }
            _ => {}
        }
    }
    if len > MAX_REQUEST_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "request body too large",
        ));
    }
    while buf.len() < head_end + len {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..head_end + len].to_vec();
    // Keep any pipelined bytes of the next request.
    buf.drain(..head_end + len);
    Ok(Some(Req {
        method,
        path,
        query,
        body,
        close,
        ws_key: ws_key.filter(|_| upgrade),
    }))
}

/// Write one HTTP/1.1 response (status line, headers, body); `extra` holds
/// further header lines, each ending in CRLF. `false` when the peer is gone.
pub(crate) async fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    extra: &str,
    body: &[u8],
    close: bool,
) -> bool {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Unknown",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n{extra}{}\r\n",
        body.len(),
        if close { "connection: close\r\n" } else { "" }
    );
    stream.write_all(head.as_bytes()).await.is_ok() && stream.write_all(body).await.is_ok()
}

async fn serve_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let req = match read_request(&mut stream, &mut buf).await {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => return,
        };
        let (status, extra, body) = answer(&req, &shared).await;
        if !respond(&mut stream, status, "application/json", extra, &body, req.close).await {
            return;
        }
        if req.close {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

fn error_body(message: &str, kind: &str, code: &str) -> Vec<u8> {
    serde_json::json!({"error": {"message": message, "type": kind, "code": code}})
        .to_string()
        .into_bytes()
}

/// A chat completion from the test's responder.
fn chat_answer(req: &Req, shared: &Shared) -> (u16, &'static str, Vec<u8>) {
    let c = &shared.counters;
    c.other.fetch_add(1, Ordering::Relaxed);
    let respond = shared.chat.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let Some(respond) = respond else {
        return (
            404,
            "",
            error_body("no chat responder", "invalid_request_error", "not_found"),
        );
    };
    let body: serde_json::Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => {
            return (
                400,
                "",
                error_body(&format!("body is not JSON: {e}"), "invalid_request_error", "bad_json"),
            )
        }
    };
    shared
        .chat_log
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(body.clone());
    let content = respond(&body);
    let prompt_chars: usize = body["messages"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["content"].as_str()).map(str::len).sum())
        .unwrap_or(0);
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let reply = serde_json::json!({
        "id": format!("chatcmpl-{created}"),
        "object": "chat.completion",
        "created": created,
        "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_chars.div_ceil(4),
            "completion_tokens": content.len().div_ceil(4),
            "total_tokens": prompt_chars.div_ceil(4) + content.len().div_ceil(4),
        },
    });
    (200, "", reply.to_string().into_bytes())
}

/// Status, extra header lines, body.
async fn answer(req: &Req, shared: &Shared) -> (u16, &'static str, Vec<u8>) {
    let c = &shared.counters;
    match (req.method.as_str(), req.path.trim_end_matches('/')) {
        ("POST", "/v1/images/generations") => {}
        ("POST", "/v1/chat/completions") => return chat_answer(req, shared),
        ("GET", "/v1/models") => {
            c.other.fetch_add(1, Ordering::Relaxed);
            let body = serde_json::json!({
                "object": "list",
                "data": [{"id": "gpt-image-1", "object": "model", "owned_by": "loopback"}]
            });
            return (200, "", body.to_string().into_bytes());
        }
        _ => {
            c.other.fetch_add(1, Ordering::Relaxed);
            return (
                404,
                "",
                error_body("no such route", "invalid_request_error", "not_found"),
            );
        }
    }
    let parsed: serde_json::Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => {
            c.other.fetch_add(1, Ordering::Relaxed);
            return (
                400,
                "",
                error_body(&format!("body is not JSON: {e}"), "invalid_request_error", "bad_json"),
            );
        }
    };
    let (w, h) = match shared.config.size {
        Some(s) => s,
        None => match parsed.get("size").and_then(|s| s.as_str()) {
            None | Some("auto") => (1024, 1024),
            Some(s) => match parse_size(s) {
                Some(wh) => wh,
                None => {
                    c.other.fetch_add(1, Ordering::Relaxed);
                    return (
                        400,
                        "",
                        error_body(&format!("invalid size `{s}`"), "invalid_request_error", "bad_size"),
                    );
                }
            },
        },
    };
    let n = parsed.get("n").and_then(|n| n.as_u64()).unwrap_or(1).clamp(1, 10) as usize;
    c.requests.fetch_add(1, Ordering::Relaxed);
    if !shared.config.latency.is_zero() {
        tokio::time::sleep(shared.config.latency).await;
    }
    if fastrand::f64() < shared.config.rate_stall {
        c.stalled.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(shared.config.stall).await;
    }
    let roll = fastrand::f64();
    if roll < shared.config.rate_429 {
        c.injected_errors.fetch_add(1, Ordering::Relaxed);
        return (
            429,
            "retry-after: 0\r\n",
            error_body("Rate limit reached (injected)", "requests", "rate_limit_exceeded"),
        );
    }
    if roll < shared.config.rate_429 + shared.config.rate_500 {
        c.injected_errors.fetch_add(1, Ordering::Relaxed);
        return (
            500,
            "",
            error_body("The server had an error (injected)", "server_error", "server_error"),
        );
    }
    let b64 = match shared.image_b64(w, h) {
        Ok(b) => b,
        Err(e) => {
            c.other.fetch_add(1, Ordering::Relaxed);
            return (500, "", error_body(&e.to_string(), "server_error", "encode"));
        }
    };
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    // Assembled by hand: re-serialising megabytes of base64 through serde per request would
    // make the mock, not the client, the thing measured.
    let mut body = Vec::with_capacity(64 + n * (b64.len() + 20));
    body.extend_from_slice(format!("{{\"created\":{created},\"data\":[").as_bytes());
    for i in 0..n {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"{\"b64_json\":\"");
        body.extend_from_slice(b64.as_bytes());
        body.extend_from_slice(b"\"}");
    }
    body.extend_from_slice(b"]}");
    c.generations.fetch_add(1, Ordering::Relaxed);
    c.images.fetch_add(n as u64, Ordering::Relaxed);
    (200, "", body)
}

/// Usage of the `loopback-openai` binary.
pub const USAGE: &str = "usage: loopback-openai [--port P] [--latency-ms MS] [--size N|WxH] [--error-429 RATE]
                       [--error-500 RATE] [--workers N]
Serves the OpenAI images API on 127.0.0.1:P (0 = any free port; the first line printed is
`listening http://127.0.0.1:PORT`, so a parent can read the port). --size forces every image
to that size (default: the request's `size`); --error-429/--error-500 answer that share of
generations with an error; --workers sets tokio's worker threads (default 1, so the server
takes at most one core from what it serves).";

/// Parsed command line of `loopback-openai`.
#[derive(Debug, Clone)]
pub struct CliArgs {
    /// Port (0 = any).
    pub port: u16,
    /// Answers.
    pub config: Config,
    /// tokio worker threads.
    pub workers: usize,
}

/// Parse `loopback-openai`'s arguments (without the program name).
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<CliArgs, TestkitError> {
    let mut out = CliArgs {
        port: 0,
        config: Config::default(),
        workers: 1,
    };
    let mut it = args.into_iter();
    let usage = |m: String| TestkitError::Usage(format!("{m}\n{USAGE}"));
    while let Some(a) = it.next() {
        let (k, inline) = match a.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        if k == "-h" || k == "--help" {
            return Err(TestkitError::Usage(USAGE.to_string()));
        }
        let v = match inline.or_else(|| it.next()) {
            Some(v) => v,
            None => return Err(usage(format!("{k} needs a value"))),
        };
        let rate = |v: &str| -> Result<f64, TestkitError> {
            v.parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| usage(format!("{k} takes a share between 0 and 1, got `{v}`")))
        };
        match k.as_str() {
            "--port" => out.port = v.parse().map_err(|_| usage(format!("bad --port `{v}`")))?,
            "--latency-ms" => {
                let ms: u64 = v.parse().map_err(|_| usage(format!("bad --latency-ms `{v}`")))?;
                out.config.latency = Duration::from_millis(ms);
            }
            "--size" => {
                out.config.size =
                    Some(parse_size(&v).ok_or_else(|| usage(format!("bad --size `{v}` (N or WxH, 1..={MAX_SIDE})")))?)
            }
            "--error-429" => out.config.rate_429 = rate(&v)?,
            "--error-500" => out.config.rate_500 = rate(&v)?,
            "--workers" => {
                out.workers = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| usage(format!("bad --workers `{v}`")))?
            }
            _ => return Err(usage(format!("unknown argument `{a}`"))),
        }
    }
    Ok(out)
}

/// Run the server as `loopback-openai` does: print the listening line, serve forever.
/// The benchmark calls this in a child process of its own, so the server's CPU is
/// not counted as the client's.
pub fn run_cli(args: CliArgs) -> Result<(), TestkitError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let server = LoopbackServer::start(args.port, args.config).await?;
        {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            writeln!(out, "listening {}", server.root_url())?;
            out.flush()?;
        }
        server.wait().await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_n_or_w_by_h_within_the_limit() {
        assert_eq!(parse_size("8"), Some((8, 8)));
        assert_eq!(parse_size("1024x576"), Some((1024, 576)));
        assert_eq!(parse_size("0x5"), None);
        assert_eq!(parse_size("99999x1"), None);
        assert_eq!(parse_size("big"), None);
    }

    async fn post(addr: SocketAddr, body: &str) -> (String, serde_json::Value) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "POST /v1/images/generations HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await.unwrap();
        let text = String::from_utf8(resp).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head.to_string(), serde_json::from_str(body).unwrap())
    }

    #[tokio::test]
    async fn a_generation_returns_a_png_of_the_requested_size() {
        let server = LoopbackServer::start(0, Config::default()).await.unwrap();
        let (head, v) = post(server.addr(), r#"{"prompt":"p","size":"16x8","n":2}"#).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 2);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data[0]["b64_json"].as_str().unwrap())
            .unwrap();
        let info = png::Decoder::new(std::io::Cursor::new(png)).read_info().unwrap();
        assert_eq!((info.info().width, info.info().height), (16, 8));
        assert_eq!(server.stats().images, 2);
    }

    #[tokio::test]
    async fn a_killed_server_drops_requests_in_flight_and_refuses_new_connections() {
        let config = Config {
            rate_stall: 1.0,
            stall: Duration::from_secs(3600),
            ..Config::default()
        };
        let server = LoopbackServer::start(0, config).await.unwrap();
        let addr = server.addr();
        let mut s = TcpStream::connect(addr).await.unwrap();
        let body = r#"{"prompt":"p"}"#;
        let req = format!(
            "POST /v1/images/generations HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        while server.stats().stalled == 0 {
            tokio::task::yield_now().await;
        }
        server.kill();
        let mut resp = Vec::new();
        // The stalled request ends without an answer (EOF or reset), not after an hour.
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut resp)).await;
        assert!(read.is_ok(), "the connection was dropped");
        assert!(resp.is_empty(), "no answer: {:?}", String::from_utf8_lossy(&resp));
        let mut refused = false;
        for _ in 0..100 {
            if TcpStream::connect(addr).await.is_err() {
                refused = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(refused, "the port no longer accepts connections");
    }

    #[tokio::test]
    async fn an_error_rate_of_one_answers_every_generation_429() {
        let config = Config {
            rate_429: 1.0,
            ..Config::default()
        };
        let server = LoopbackServer::start(0, config).await.unwrap();
        let (head, v) = post(server.addr(), r#"{"prompt":"p"}"#).await;
        assert!(head.starts_with("HTTP/1.1 429"), "{head}");
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
        assert_eq!(server.stats().injected_errors, 1);
    }
}
