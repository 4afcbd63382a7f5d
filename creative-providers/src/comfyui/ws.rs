//! ComfyUI's websocket (`GET /ws?clientId=...`): how a prompt's progress and end
//! are heard without polling.
//!
//! The server sends each message about a prompt to the socket of the client id
//! the prompt was queued with (`server.py`'s `send_sync(event, data, client_id)`),
//! as a text frame `{"type": ..., "data": {...}}`. Binary frames are previews and
//! are skipped. The messages read here, as `execution.py` and `main.py` send them:
//!
//! - `status` `{status: {exec_info: {queue_remaining}}}`: the server's queue
//!   length, sent on connecting and whenever it changes (for a pool's choice);
//! - `execution_start` `{prompt_id, timestamp}`: the prompt left the queue;
//! - `executing` `{node, display_node, prompt_id}`: a node started; `node: null`
//!   is sent by the worker loop after the history entry is stored, so it is the
//!   signal to read `/history`;
//! - `progress` `{value, max, prompt_id, node}`: a node's steps (samplers);
//! - `executed` `{node, output, prompt_id}`: a node finished with outputs;
//! - `execution_success`, `execution_error`, `execution_interrupted`
//!   `{prompt_id, ...}`: the end, before the history entry is stored.
//!
//! Older servers omit `prompt_id` from `progress`; since each call listens on a
//! client id of its own, such messages are taken as the call's.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::HeaderMap;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::http::Url;

/// One message about our prompt.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum WsEvent {
    /// `status`: the server's queue length (every client's prompts).
    Queue(u64),
    /// `execution_start`: the prompt began executing.
    Started,
    /// `executing` with a node: that node began.
    Executing(String),
    /// `progress`: `value` of `max` steps of `node` (when named).
    Progress {
        /// The node, when the server names it.
        node: Option<String>,
        /// Steps done.
        value: u64,
        /// Steps in all.
        max: u64,
    },
    /// `execution_success`, `execution_error` or `execution_interrupted`: the
    /// prompt ended (the history entry follows).
    Ended,
    /// `executing` with `node: null`: the history entry is stored.
    Stored,
}

/// Why no websocket was opened. Never fatal: the call polls instead, and
/// says why in a debug log, which prints the message only (so the cause is
/// part of it).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// The base URL's scheme has no websocket counterpart.
    #[error("the base URL is not http or https")]
    NotHttp,
    /// The URL could not become a handshake request.
    #[error("cannot build the websocket request: {0}")]
    Request(tokio_tungstenite::tungstenite::Error),
    /// The server refused the upgrade or the connection failed.
    #[error("websocket handshake failed: {0}")]
    Handshake(tokio_tungstenite::tungstenite::Error),
    /// Nothing answered within the connect timeout.
    #[error("no websocket answer within {} ms", .0.as_millis())]
    NoAnswer(Duration),
}

/// A connected websocket for one client id.
pub(crate) struct Socket {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// The websocket URL for `base` (`http` -> `ws`, `https` -> `wss`, path `/ws`
/// under the base path) and `client_id`.
pub(crate) fn ws_url(base: &Url, client_id: &str) -> Option<Url> {
    let mut u = base.clone();
    let scheme = match base.scheme() {
        "http" => "ws",
        "https" => "wss",
        _ => return None,
    };
    u.set_scheme(scheme).ok()?;
    let path = format!("{}/ws", base.path().trim_end_matches('/'));
    u.set_path(&path);
    u.set_query(None);
    u.query_pairs_mut().append_pair("clientId", client_id);
    Some(u)
}

impl Socket {
    /// Connect within `timeout`, sending `headers` (the transport's credential)
    /// with the handshake. The error says why, for a debug log: a server without
    /// a websocket is served by polling instead.
    pub(crate) async fn connect(
        base: &Url,
        client_id: &str,
        headers: HeaderMap,
        timeout: Duration,
    ) -> Result<Socket, ConnectError> {
        let url = ws_url(base, client_id).ok_or(ConnectError::NotHttp)?;
        let mut req = url.as_str().into_client_request().map_err(ConnectError::Request)?;
        for (k, v) in headers.iter() {
            req.headers_mut().insert(k.clone(), v.clone());
        }
        match tokio::time::timeout(timeout, tokio_tungstenite::connect_async(req)).await {
            Ok(Ok((stream, _))) => Ok(Socket { stream }),
            Ok(Err(e)) => Err(ConnectError::Handshake(e)),
            Err(_) => Err(ConnectError::NoAnswer(timeout)),
        }
    }

    /// The next message about `prompt_id`; `None` when the socket closed or
    /// failed (the caller falls back to polling).
    pub(crate) async fn next_for(&mut self, prompt_id: &str) -> Option<WsEvent> {
        loop {
            let msg = match self.stream.next().await? {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(error = %e, "ComfyUI websocket failed");
                    return None;
                }
            };
            let text = match msg {
                Message::Text(t) => t,
                Message::Close(_) => return None,
                // Previews (binary), pings (answered by the library) and pongs.
                _ => continue,
            };
            let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            if let Some(ev) = parse(&v, prompt_id) {
                return Some(ev);
            }
        }
    }
}

/// The event a message carries for `prompt_id`, if it is about it.
pub(crate) fn parse(v: &Value, prompt_id: &str) -> Option<WsEvent> {
    let kind = v.get("type")?.as_str()?;
    let data = v.get("data")?;
    if kind == "status" {
        return data
            .pointer("/status/exec_info/queue_remaining")
            .and_then(Value::as_u64)
            .map(WsEvent::Queue);
    }
    match data.get("prompt_id").and_then(Value::as_str) {
        Some(p) if p != prompt_id => return None,
        None if kind != "progress" => return None,
        _ => {}
    }
    let node_of = |d: &Value| match d.get("node") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    Some(match kind {
        "execution_start" => WsEvent::Started,
        "executing" => match node_of(data) {
            Some(n) => WsEvent::Executing(n),
            None => WsEvent::Stored,
        },
        "progress" => WsEvent::Progress {
            node: node_of(data),
            value: data.get("value").and_then(Value::as_u64).unwrap_or(0),
            max: data.get("max").and_then(Value::as_u64).unwrap_or(0),
        },
        "execution_success" | "execution_error" | "execution_interrupted" => WsEvent::Ended,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_websocket_url_follows_the_base_url() {
        let b = Url::parse("http://127.0.0.1:8188").unwrap();
        assert_eq!(ws_url(&b, "c1").unwrap().as_str(), "ws://127.0.0.1:8188/ws?clientId=c1");
        let b = Url::parse("https://farm.example/comfy/").unwrap();
        assert_eq!(
            ws_url(&b, "c 2").unwrap().as_str(),
            "wss://farm.example/comfy/ws?clientId=c+2"
        );
    }

    #[test]
    fn messages_about_other_prompts_are_skipped() {
        let m = |t: &str, d: Value| json!({"type": t, "data": d});
        assert_eq!(
            parse(&m("execution_start", json!({"prompt_id": "p", "timestamp": 1})), "p"),
            Some(WsEvent::Started)
        );
        assert_eq!(parse(&m("execution_start", json!({"prompt_id": "q"})), "p"), None);
        assert_eq!(
            parse(&m("executing", json!({"node": "3", "prompt_id": "p"})), "p"),
            Some(WsEvent::Executing("3".into()))
        );
        assert_eq!(
            parse(&m("executing", json!({"node": null, "prompt_id": "p"})), "p"),
            Some(WsEvent::Stored)
        );
        assert_eq!(
            parse(&m("progress", json!({"value": 4, "max": 20})), "p"),
            Some(WsEvent::Progress {
                node: None,
                value: 4,
                max: 20
            }),
            "an older server's progress names no prompt"
        );
        assert_eq!(
            parse(
                &m("execution_interrupted", json!({"prompt_id": "p", "node_id": "3"})),
                "p"
            ),
            Some(WsEvent::Ended)
        );
        assert_eq!(parse(&m("status", json!({"status": {}})), "p"), None);
        assert_eq!(
            parse(
                &m(
                    "status",
                    json!({"status": {"exec_info": {"queue_remaining": 3}}, "sid": "x"})
                ),
                "p"
            ),
            Some(WsEvent::Queue(3))
        );
    }
}
