//! `creative review OUT`: a local page where a person approves or rejects each
//! delivered asset (with a note); decisions land in `OUT/.creative/review.jsonl`
//! and in `manifest.json`, and `creative run --resume` acts on them.
//!
//! The server binds 127.0.0.1 only and answers only requests that carry the
//! random token printed with its address, so another local user or a web page
//! in the reviewer's browser cannot read the assets or forge decisions.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use creative::campaign::review::{self, Decision, Verdict};
use creative::campaign::spec::STATE_DIR;
use creative::campaign::store::BlobStore;
use creative::engine::ArtifactId;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::args::ReviewArgs;
use super::run::DID_NOT_START;

/// Largest request accepted (head and body): a bulk decision on a few
/// thousand assets with notes fits well within it.
const MAX_REQUEST: usize = 4 << 20;

/// 128 random bits as hex. `RandomState` is seeded from the operating
/// system's random source, which is all a local one-session token needs.
fn token() -> String {
    let word = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0);
        h.finish()
    };
    format!("{:016x}{:016x}", word(), word())
}

/// What the page shows and the server checks decisions against.
struct State {
    out: PathBuf,
    token: String,
    manifest: Value,
    /// Asset id -> (job, step, path in the output folder).
    assets: HashMap<String, (String, String, String)>,
    /// Rejected candidates' artifact ids -> their media type, from the
    /// provenance of the assets and of their sources.
    candidates: HashMap<String, creative::engine::MediaType>,
    page: String,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(DID_NOT_START)
}

/// `creative review OUT [--port P]`.
pub fn review(a: ReviewArgs) -> ExitCode {
    let path = a.out.join("manifest.json");
    let manifest: Value = match std::fs::read(&path) {
        Ok(b) => match serde_json::from_slice(&b) {
            Ok(v) => v,
            Err(e) => return fail(format!("{}: {e}", path.display())),
        },
        Err(e) => {
            return fail(format!(
                "{}: {e} (review a folder a run delivered into)",
                path.display()
            ))
        }
    };
    if let Err(e) = review::read(&a.out) {
        return fail(e);
    }
    let mut assets = HashMap::new();
    for x in manifest["assets"].as_array().into_iter().flatten() {
        let s = |k: &str| x[k].as_str().unwrap_or_default().to_string();
        assets.insert(s("id"), (s("job"), s("step"), s("path")));
    }
    let mut candidates = HashMap::new();
    for x in manifest["assets"].as_array().into_iter().flatten() {
        let sources = x["sources"].as_array().into_iter().flatten();
        for p in std::iter::once(&x["provenance"]).chain(sources.map(|s| &s["provenance"])) {
            for r in p["rejected"].as_array().into_iter().flatten() {
                let media = serde_json::from_value(r["media"].clone());
                if let (Some(id), Ok(media)) = (r["artifact"].as_str(), media) {
                    candidates.insert(id.to_string(), media);
                }
            }
        }
    }
    let report = std::fs::read(a.out.join("report.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .unwrap_or(Value::Null);
    let page = page(&manifest, &report);
    let state = Arc::new(State {
        out: a.out.clone(),
        token: token(),
        manifest,
        assets,
        candidates,
        page,
    });
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    rt.block_on(async move {
        let listener = match TcpListener::bind(("127.0.0.1", a.port)).await {
            Ok(l) => l,
            Err(e) => return fail(format!("cannot listen on 127.0.0.1:{}: {e}", a.port)),
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => return fail(e),
        };
        super::out::println(&format!(
            "review {} assets at http://{addr}/?token={} (Ctrl-C to stop)",
            state.assets.len(),
            state.token
        ));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
                c = listener.accept() => {
                    if let Ok((stream, _)) = c {
                        tokio::spawn(serve(stream, state.clone()));
                    }
                }
            }
        }
    })
}

struct Req {
    method: String,
    path: String,
    query: HashMap<String, String>,
    body: Vec<u8>,
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match u8::from_str_radix(s.get(i + 1..i + 3).unwrap_or("zz"), 16) {
                Ok(v) => {
                    out.push(v);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn read(stream: &mut TcpStream) -> Option<Req> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_REQUEST {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?;
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let query = q
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (unescape(k), unescape(v)))
        .collect();
    let len: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    if len > MAX_REQUEST {
        return None;
    }
    while buf.len() < head_end + len {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(Req {
        method,
        path: path.to_string(),
        query,
        body: buf[head_end..head_end + len].to_vec(),
    })
}

async fn serve(mut stream: TcpStream, state: Arc<State>) {
    let Some(req) = read(&mut stream).await else { return };
    let (status, ctype, body) = answer(&req, &state).await;
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\ncache-control: no-store\r\nx-content-type-options: nosniff\r\nreferrer-policy: no-referrer\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&body).await;
    let _ = stream.shutdown().await;
}

fn json_reply(status: u16, v: Value) -> (u16, &'static str, Vec<u8>) {
    (status, "application/json", v.to_string().into_bytes())
}

async fn answer(req: &Req, s: &State) -> (u16, &'static str, Vec<u8>) {
    // Compared in full whatever the first difference: no timing hint.
    let given = req.query.get("token").map(String::as_bytes).unwrap_or_default();
    let ok =
        given.len() == s.token.len() && given.iter().zip(s.token.as_bytes()).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0;
    if !ok {
        return (
            403,
            "text/plain",
            b"missing or wrong token: use the address `creative review` printed".to_vec(),
        );
    }
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/") => (200, "text/html; charset=utf-8", s.page.clone().into_bytes()),
        ("GET", "/decisions") => match review::read(&s.out) {
            Ok(d) => json_reply(200, json!(review::latest(&d))),
            Err(e) => json_reply(500, json!({"error": e.to_string()})),
        },
        ("GET", "/file") => {
            let id = req.query.get("id").cloned().unwrap_or_default();
            // Only files the manifest lists, by asset id: no path from the request is opened.
            let Some((_, _, rel)) = s.assets.get(&id) else {
                return (404, "text/plain", b"no such asset".to_vec());
            };
            let media = s.manifest["assets"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["id"] == id.as_str()))
                .and_then(|x| x["media"].as_str())
                .unwrap_or("application/octet-stream");
            let ctype = content_type(media);
            match tokio::fs::read(s.out.join(rel)).await {
                Ok(b) => (200, ctype, b),
                Err(e) => (404, "text/plain", e.to_string().into_bytes()),
            }
        }
        ("GET", "/candidate") => {
            // Only candidates the manifest names, read from the output folder's
            // store by id (and checked against it): no path from the request.
            let id = req.query.get("id").cloned().unwrap_or_default();
            let Some(media) = s.candidates.get(&id) else {
                return (404, "text/plain", b"no such rejected candidate".to_vec());
            };
            let blobs = BlobStore::new(s.out.join(STATE_DIR).join("objects"));
            let (aid, m) = (ArtifactId::from_hex(&id), media.clone());
            let got = tokio::task::spawn_blocking(move || blobs.get(&aid, &m))
                .await
                .unwrap_or_else(|e| Err(creative::engine::StoreError(e.to_string())));
            match got {
                Ok(Some(b)) => (200, content_type(media.as_str()), b.to_vec()),
                Ok(None) => (
                    404,
                    "text/plain",
                    b"this candidate's payload is no longer in the store (removed by `creative gc` or a cache cap)"
                        .to_vec(),
                ),
                Err(e) => (500, "text/plain", e.to_string().into_bytes()),
            }
        }
        ("POST", "/decide") => decide(&req.body, s),
        _ => (404, "text/plain", b"not found".to_vec()),
    }
}

/// The content type a payload of `media` is served as: images as they are,
/// text as plain text, anything else as bytes to download.
fn content_type(media: &str) -> &'static str {
    match media {
        "image/png" => "image/png",
        "image/jpeg" => "image/jpeg",
        "image/webp" => "image/webp",
        m if m.starts_with("text/") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `{"decisions": [{"asset", "verdict": "approved"|"rejected", "note"}]}`.
fn decide(body: &[u8], s: &State) -> (u16, &'static str, Vec<u8>) {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return json_reply(400, json!({"error": format!("body is not JSON: {e}")})),
    };
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut out = Vec::new();
    for (i, d) in v["decisions"].as_array().into_iter().flatten().enumerate() {
        let id = d["asset"].as_str().unwrap_or_default();
        let Some((job, step, _)) = s.assets.get(id) else {
            return json_reply(
                400,
                json!({"error": format!("decisions[{i}].asset: no asset `{id}` in the manifest")}),
            );
        };
        let verdict = match d["verdict"].as_str() {
            Some("approved") => Verdict::Approved,
            Some("rejected") => Verdict::Rejected,
            other => {
                return json_reply(
                    400,
                    json!({"error": format!("decisions[{i}].verdict: `{}`; approved or rejected", other.unwrap_or(""))}),
                )
            }
        };
        let note = d["note"]
            .as_str()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        out.push(Decision {
            asset: id.to_string(),
            job: job.clone(),
            step: step.clone(),
            verdict,
            note,
            at,
        });
    }
    if out.is_empty() {
        return json_reply(400, json!({"error": "no decisions"}));
    }
    if let Err(e) = review::append(&s.out, &out) {
        return json_reply(400, json!({"error": e.to_string()}));
    }
    if let Err(e) = review::annotate_manifest(&s.out) {
        return json_reply(500, json!({"error": e.to_string(), "stored": out.len()}));
    }
    json_reply(200, json!({"stored": out.len()}))
}

/// The page: the assets as JSON (with `<` escaped, so no string in them can
/// close the script), drawn by a script that sets text, never HTML.
fn page(manifest: &Value, report: &Value) -> String {
    let data = json!({"campaign": manifest["campaign"], "assets": manifest["assets"], "status": report["status"]});
    let data = data.to_string().replace('<', "\\u003c");
    PAGE.replace("__DATA__", &data)
}

const PAGE: &str = include_str!("review.html");
