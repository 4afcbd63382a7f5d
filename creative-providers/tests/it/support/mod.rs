//! Test support: a loopback HTTP/1.1 mock server that records every request and
//! answers from scripted replies (including the broken ones real servers send:
//! truncated bodies, stalls, oversized bodies), and the conformance suite every
//! HTTP backend runs.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use creative_core::registry::{BuildCtx, Registry};
use creative_core::{CallCtx, ConfigError, ErrorKind, Provider, ProviderError, Request};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `GET`, `POST`...
    pub method: String,
    /// The path with its query.
    pub target: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Recorded {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or(&self.target)
    }

    /// A query parameter.
    pub fn query(&self, k: &str) -> Option<String> {
        let q = self.target.split_once('?')?.1;
        q.split('&').find_map(|kv| {
            let (a, b) = kv.split_once('=').unwrap_or((kv, ""));
            (a == k).then(|| b.replace("%2F", "/").replace("%3A", ":"))
        })
    }

    /// A header, by lowercase name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == &name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics in the test if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "request body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How the mock answers.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    delay: Duration,
    /// Declare this Content-Length but send only `body`, then close.
    declared_len: Option<usize>,
    /// Send the body with chunked transfer encoding (no Content-Length).
    chunked: bool,
}

impl Reply {
    /// A reply with a content type and body.
    pub fn bytes(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Reply {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
            delay: Duration::ZERO,
            declared_len: None,
            chunked: false,
        }
    }

    /// A JSON reply.
    pub fn json(status: u16, v: Value) -> Self {
        Reply::bytes(status, "application/json", serde_json::to_vec(&v).unwrap())
    }

    /// A text reply, sent as JSON content type (for malformed-JSON cases).
    pub fn raw_json(status: u16, body: &str) -> Self {
        Reply::bytes(status, "application/json", body.as_bytes().to_vec())
    }

    /// Add a header.
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_ascii_lowercase(), v.into()));
        self
    }

    /// Wait before answering.
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }

    /// Promise more bytes than are sent, then close the connection.
    pub fn truncated(mut self) -> Self {
        self.declared_len = Some(self.body.len() + 100);
        self
    }

    /// Send the body in chunks without a Content-Length.
    pub fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }

    /// The body length.
    pub fn len(&self) -> usize {
        self.body.len()
    }
}

struct Route {
    method: String,
    path: String,
    reply: Reply,
    once: bool,
}

#[derive(Default)]
struct State {
    connections: usize,
    routes: VecDeque<Route>,
    requests: Vec<Recorded>,
    /// Whether `GET /ws` upgrades to a websocket (ComfyUI's `/ws?clientId=`).
    websocket: bool,
    /// Killed: no more connections are accepted and open ones are closed.
    dead: bool,
    /// Open websockets by client id: what to send them (`None` closes).
    sockets: std::collections::HashMap<String, tokio::sync::mpsc::UnboundedSender<Option<String>>>,
}

/// The loopback mock server.
#[derive(Clone)]
pub struct MockServer {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<State>>,
    accept: tokio::task::AbortHandle,
}

impl MockServer {
    /// Start on an ephemeral loopback port.
    pub async fn start() -> MockServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else { return };
                st.lock().unwrap().connections += 1;
                let st = st.clone();
                tokio::spawn(async move {
                    let _ = serve(sock, st).await;
                });
            }
        });
        MockServer {
            addr,
            state,
            accept: accept.abort_handle(),
        }
    }

    /// Die as a crashed server does: the port stops listening (connections are
    /// refused), kept-alive connections are closed at their next request, and
    /// websockets are closed.
    pub fn kill(&self) {
        self.accept.abort();
        let mut s = self.state.lock().unwrap();
        s.dead = true;
        for (_, tx) in s.sockets.drain() {
            let _ = tx.send(None);
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer every `method path` (path without query) with `reply`.
    pub fn route(&self, method: &str, path: &str, reply: Reply) {
        self.push(method, path, reply, false);
    }

    /// Answer the next `method path` with `reply`, once; once-routes are used in
    /// the order given and before standing routes.
    pub fn route_once(&self, method: &str, path: &str, reply: Reply) {
        self.push(method, path, reply, true);
    }

    fn push(&self, method: &str, path: &str, reply: Reply, once: bool) {
        self.state.lock().unwrap().routes.push_back(Route {
            method: method.into(),
            path: path.into(),
            reply,
            once,
        });
    }

    /// Forget routes and recorded requests.
    pub fn reset(&self) {
        let mut s = self.state.lock().unwrap();
        s.routes.clear();
        s.requests.clear();
    }

    /// How many TCP connections were accepted.
    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Wait (up to 10 s) until `n` requests matching `what` have arrived, and
    /// give them: how a test sees a request it caused without sleeping a guess.
    pub async fn wait_for_requests(&self, n: usize, what: impl Fn(&Recorded) -> bool) -> Vec<Recorded> {
        let matching = || self.requests().into_iter().filter(|r| what(r)).collect::<Vec<_>>();
        creative_testkit::wait::wait_for(
            &format!("{n} matching requests at the mock"),
            Duration::from_secs(10),
            || matching().len() >= n,
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e}; saw {:?}",
                self.requests()
                    .iter()
                    .map(|r| format!("{} {}", r.method, r.target))
                    .collect::<Vec<_>>()
            )
        });
        matching()
    }

    /// Wait (up to 10 s) for the first request to `path` (query aside).
    pub async fn wait_for_path(&self, path: &str) -> Recorded {
        self.wait_for_requests(1, |r| r.path() == path).await.remove(0)
    }

    /// The last request.
    pub fn last(&self) -> Recorded {
        self.requests().pop().expect("no request reached the mock")
    }

    /// Accept websocket upgrades on `GET /ws?clientId=...` from now on (the
    /// handshake of RFC 6455, as ComfyUI's aiohttp server answers it).
    pub fn enable_websocket(&self) {
        self.state.lock().unwrap().websocket = true;
    }

    /// The client ids with an open websocket.
    pub fn websocket_clients(&self) -> Vec<String> {
        self.state.lock().unwrap().sockets.keys().cloned().collect()
    }

    /// Send a text frame to `client_id`'s websocket; false when it has none.
    pub fn ws_send(&self, client_id: &str, v: &Value) -> bool {
        let s = self.state.lock().unwrap();
        s.sockets
            .get(client_id)
            .is_some_and(|tx| tx.send(Some(v.to_string())).is_ok())
    }

    /// Close `client_id`'s websocket from the server's side.
    pub fn ws_close(&self, client_id: &str) {
        if let Some(tx) = self.state.lock().unwrap().sockets.remove(client_id) {
            let _ = tx.send(None);
        }
    }
}

/// Complete a websocket handshake on `sock` and pump frames from the mock's
/// per-client channel until either side closes.
#[cfg(feature = "comfyui")]
async fn serve_websocket(
    sock: TcpStream,
    key: &str,
    client_id: String,
    state: Arc<Mutex<State>>,
) -> std::io::Result<()> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{handshake::derive_accept_key, protocol::Role, Message};
    let mut sock = sock;
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    sock.write_all(head.as_bytes()).await?;
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(sock, Role::Server, None).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    state.lock().unwrap().sockets.insert(client_id.clone(), tx);
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(Some(text)) => {
                    if ws.send(Message::text(text)).await.is_err() {
                        break;
                    }
                }
                _ => {
                    let _ = ws.close(None).await;
                    break;
                }
            },
            incoming = ws.next() => match incoming {
                Some(Ok(_)) => {}
                _ => break,
            },
        }
    }
    state.lock().unwrap().sockets.remove(&client_id);
    Ok(())
}

fn pick(state: &Mutex<State>, req: &Recorded) -> Reply {
    let mut s = state.lock().unwrap();
    s.requests.push(req.clone());
    // `*` as a route's method or path matches any (the fuzzers answer every request).
    let matches = |r: &Route| (r.method == "*" || r.method == req.method) && (r.path == "*" || r.path == req.path());
    if let Some(i) = s.routes.iter().position(|r| r.once && matches(r)) {
        return s.routes.remove(i).map(|r| r.reply).unwrap();
    }
    if let Some(r) = s.routes.iter().find(|r| !r.once && matches(r)) {
        return r.reply.clone();
    }
    Reply::json(
        404,
        serde_json::json!({"error": {"message": format!("no mock route for {} {}", req.method, req.path())}}),
    )
}

async fn serve(sock: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 || state.lock().unwrap().dead {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            r.read_line(&mut h).await?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        #[cfg(feature = "comfyui")]
        if get("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")) && state.lock().unwrap().websocket {
            let rec = Recorded {
                method,
                target,
                headers: headers.clone(),
                body: Vec::new(),
            };
            let client_id = rec.query("clientId").unwrap_or_default();
            state.lock().unwrap().requests.push(rec);
            let key = get("sec-websocket-key").unwrap_or_default();
            let sock = r.into_inner().reunite(w).expect("halves of one socket");
            return serve_websocket(sock, &key, client_id, state).await;
        }
        let mut body = Vec::new();
        if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            body.resize(n, 0);
            r.read_exact(&mut body).await?;
        } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let mut size = String::new();
                r.read_line(&mut size).await?;
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        let rec = Recorded {
            method,
            target,
            headers,
            body,
        };
        let reply = pick(&state, &rec);
        if !reply.delay.is_zero() {
            tokio::time::sleep(reply.delay).await;
        }
        let reason = match reply.status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            429 => "Too Many Requests",
            500 => "Internal Server Error",
            _ => "Status",
        };
        let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason);
        for (k, v) in &reply.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if reply.chunked {
            head.push_str("transfer-encoding: chunked\r\n\r\n");
            w.write_all(head.as_bytes()).await?;
            for chunk in reply.body.chunks(1024) {
                w.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await?;
                w.write_all(chunk).await?;
                w.write_all(b"\r\n").await?;
            }
            w.write_all(b"0\r\n\r\n").await?;
            w.flush().await?;
            continue;
        }
        let len = reply.declared_len.unwrap_or(reply.body.len());
        head.push_str(&format!("content-length: {len}\r\n\r\n"));
        w.write_all(head.as_bytes()).await?;
        w.write_all(&reply.body).await?;
        w.flush().await?;
        if reply.declared_len.is_some() {
            // Close mid-body: the client sees a truncated response.
            w.shutdown().await?;
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------------------------
// Building providers through the registry
// ---------------------------------------------------------------------------------

/// Build a provider of `kind` from settings through the crate's registry.
pub fn build(kind: &str, settings: Value) -> Result<Arc<dyn Provider>, ConfigError> {
    let mut reg = Registry::new();
    creative_providers::register(&mut reg);
    let f = reg
        .provider_factory(kind)
        .unwrap_or_else(|| panic!("kind `{kind}` is not registered"))
        .clone();
    f(kind, &settings, &BuildCtx::default())
}

/// Merge `extra` into `base` (both JSON objects).
pub fn with(mut base: Value, extra: Value) -> Value {
    if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
        b.extend(e);
    }
    base
}

// ---------------------------------------------------------------------------------
// The conformance suite: the same failures for every backend
// ---------------------------------------------------------------------------------

/// What the failure suite needs to know about a backend.
pub struct Conformance {
    /// The registry kind.
    pub kind: &'static str,
    /// Settings besides `base_url`, `timeout_s` and `max_response_bytes` (the key...).
    pub settings: Value,
    /// A request that goes to `method path`.
    pub request: Request,
    /// The method of the call.
    pub method: &'static str,
    /// The path of the call.
    pub path: &'static str,
    /// A successful answer (used for the timeout, truncated and oversized cases).
    pub ok: Reply,
    /// A malformed answer with a 200 status.
    pub malformed: Reply,
    /// The provider's refusal of the content; `None` for a backend that has
    /// no content policy (a ComfyUI server).
    pub content_policy: Option<Reply>,
    /// The provider's answer to a bad key.
    pub auth: Reply,
    /// The provider's rate-limit answer (the suite adds `Retry-After: 7`).
    pub rate_limited: Reply,
    /// A secret that must never show in errors (the key in `settings`).
    pub secret: &'static str,
    /// The job's other endpoints (`method`, `path`, reply), for a backend whose
    /// call is a submit followed by polls: answered in every case, behind the
    /// case's answer to `method path`.
    pub routes: Vec<(&'static str, String, Reply)>,
}

async fn call(c: &Conformance, mock: &MockServer, extra: Value) -> Result<creative_core::Generation, ProviderError> {
    let settings = with(
        with(c.settings.clone(), serde_json::json!({"base_url": mock.url()})),
        extra,
    );
    let p = build(c.kind, settings).map_err(|e| ProviderError::invalid("build", e.to_string()))?;
    let r = p.generate(&c.request, &CallCtx::detached()).await;
    if let Err(e) = &r {
        let shown = format!("{e} {e:?} {}", e.body().unwrap_or(""));
        assert!(!shown.contains(c.secret), "secret leaked in error: {shown}");
    }
    r
}

fn expect_kind(case: &str, r: Result<creative_core::Generation, ProviderError>, kind: ErrorKind) -> ProviderError {
    match r {
        Ok(g) => panic!(
            "{case}: expected {kind}, got success with {} artifacts",
            g.artifacts.len()
        ),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{case}: {e}");
            e
        }
    }
}

/// Run every failure case against a fresh mock: 429 with Retry-After, 500,
/// timeout, malformed JSON, truncated body, oversized body, auth failure,
/// content-policy refusal, and cancellation. Also checks the success reply works.
pub async fn failure_suite(c: Conformance) {
    let mock = MockServer::start().await;
    let none = serde_json::json!({});

    let route = |reply: Reply| {
        mock.route(c.method, c.path, reply);
        for (m, p, r) in &c.routes {
            mock.route(m, p, r.clone());
        }
    };

    route(c.ok.clone());
    let g = call(&c, &mock, none.clone())
        .await
        .expect("the success reply should succeed");
    assert!(!g.artifacts.is_empty(), "success gave no artifacts");
    if c.routes.is_empty() {
        assert_eq!(mock.last().path(), c.path);
    } else {
        assert!(
            mock.requests()
                .iter()
                .any(|r| r.method == c.method && r.path() == c.path),
            "the call went to {} {}",
            c.method,
            c.path
        );
    }

    mock.reset();
    route(c.rate_limited.clone().header("retry-after", "7"));
    let e = expect_kind("429", call(&c, &mock, none.clone()).await, ErrorKind::RateLimited);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)), "429: {e:?}");
    assert_eq!(e.status(), Some(429));
    assert!(e.is_retryable());

    mock.reset();
    route(
        Reply::json(
            500,
            serde_json::json!({"error": {"message": "The server had an error"}}),
        )
        .header("x-request-id", "req_500"),
    );
    let e = expect_kind("500", call(&c, &mock, none.clone()).await, ErrorKind::Transient);
    assert_eq!(e.status(), Some(500));
    assert_eq!(e.request_id(), Some("req_500"));
    assert!(e.message().contains("The server had an error"), "500 message kept: {e}");

    mock.reset();
    route(c.ok.clone().delay(Duration::from_secs(3)));
    let t0 = Instant::now();
    expect_kind(
        "timeout",
        call(&c, &mock, serde_json::json!({"timeout_s": 0.3})).await,
        ErrorKind::Timeout,
    );
    assert!(t0.elapsed() < Duration::from_secs(2), "timeout took {:?}", t0.elapsed());

    mock.reset();
    route(c.malformed.clone());
    expect_kind("malformed", call(&c, &mock, none.clone()).await, ErrorKind::Protocol);

    mock.reset();
    route(c.ok.clone().truncated());
    expect_kind("truncated", call(&c, &mock, none.clone()).await, ErrorKind::Transient);

    mock.reset();
    route(c.ok.clone());
    let limit = (c.ok.len() / 2).max(1);
    let e = expect_kind(
        "oversized",
        call(&c, &mock, serde_json::json!({"max_response_bytes": limit})).await,
        ErrorKind::Invalid,
    );
    assert!(e.message().contains("limit"), "oversized: {e}");

    mock.reset();
    route(c.auth.clone());
    expect_kind("auth", call(&c, &mock, none.clone()).await, ErrorKind::Auth);

    mock.reset();
    if let Some(refusal) = &c.content_policy {
        route(refusal.clone());
        expect_kind(
            "content policy",
            call(&c, &mock, none.clone()).await,
            ErrorKind::ContentPolicy,
        );
    }

    mock.reset();
    route(c.ok.clone().delay(Duration::from_secs(5)));
    let settings = with(c.settings.clone(), serde_json::json!({"base_url": mock.url()}));
    let p = build(c.kind, settings).unwrap();
    let ctx = CallCtx::detached();
    let cancel = ctx.cancel.clone();
    let watcher = mock.clone();
    tokio::spawn(async move {
        // Cancel once the request is in flight (its answer waits 5 s).
        watcher.wait_for_requests(1, |_| true).await;
        cancel.cancel();
    });
    let t0 = Instant::now();
    let e = p.generate(&c.request, &ctx).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled, "cancel: {e}");
    assert!(t0.elapsed() < Duration::from_secs(2));
}

// ---------------------------------------------------------------------------------
// Media whose headers say their size or duration
// ---------------------------------------------------------------------------------

/// A PNG whose header says `w` x `h` (signature and IHDR; no pixels).
pub fn png_sized(w: u32, h: u32) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    v.extend_from_slice(&w.to_be_bytes());
    v.extend_from_slice(&h.to_be_bytes());
    v.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    v
}

/// An MP4 whose movie header (`moov/mvhd`, version 0) says `seconds` long.
pub fn mp4_of(seconds: u32) -> Vec<u8> {
    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }
    let mut mvhd = vec![0u8; 4]; // version 0, flags
    mvhd.extend_from_slice(&[0; 8]); // creation, modification
    mvhd.extend_from_slice(&1000u32.to_be_bytes()); // timescale
    mvhd.extend_from_slice(&(seconds * 1000).to_be_bytes()); // duration
    mvhd.extend_from_slice(&[0; 80]);
    let mut out = bx(b"ftyp", b"mp42\0\0\0\0mp42isom");
    out.extend(bx(b"mdat", b"frames"));
    out.extend(bx(b"moov", &bx(b"mvhd", &mvhd)));
    out
}

/// A txt2img workflow as ComfyUI's "Export (API)" writes it.
pub fn comfyui_workflow() -> Value {
    serde_json::json!({
        "3": {"class_type": "KSampler", "inputs": {
            "seed": 1, "steps": 20, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
            "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "old", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}}
    })
}
