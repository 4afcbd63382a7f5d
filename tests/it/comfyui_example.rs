//! The shipped ComfyUI example (`examples/specs/comfyui_campaign.toml` and its
//! workflow), run by the runner end to end against a loopback server that speaks
//! ComfyUI's HTTP API: `GET /system_stats`, `POST /prompt` (answering with a
//! `prompt_id` and empty `node_errors`), `GET /history/{id}` (first "not yet",
//! then the outputs of the SaveImage node), `GET /queue` and `GET /view`. The
//! server "renders" each queued workflow by reading the values injected into its
//! nodes (text, seed, size, batch size) and drawing that many images with the
//! procedural stand-in, so the example's gates judge real pictures.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use creative::engine::{CallCtx, Provider, Request, Task};
use creative::providers::procedural::Procedural;
use serde_json::{json, Value};

use crate::common;
use common::temp_dir;

const BIN: &str = env!("CARGO_BIN_EXE_creative");

#[derive(Default)]
struct Fake {
    /// Every queued workflow, in order.
    prompts: Vec<Value>,
    /// Rendered files by name.
    files: HashMap<String, Vec<u8>>,
    /// prompt id -> (file names, history polls answered so far).
    history: HashMap<String, (Vec<String>, u32)>,
}

fn read_request(s: &mut TcpStream) -> Option<(String, String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head, start, len) = loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_string();
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            break (head, i + 4, len);
        }
    };
    while buf.len() < start + len {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut first = head.lines().next()?.split_whitespace();
    let (method, target) = (first.next()?.to_string(), first.next()?.to_string());
    Some((method, target, buf[start..].to_vec()))
}

fn reply(s: &mut TcpStream, status: &str, media: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {media}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
}

/// Draw what ComfyUI would for this API-format workflow.
fn render(rt: &tokio::runtime::Runtime, wf: &Value) -> Vec<Vec<u8>> {
    let mut req = Request::new(Task::Image, wf["6"]["inputs"]["text"].as_str().unwrap_or_default());
    req.params.seed = wf["3"]["inputs"]["seed"].as_u64();
    req.params.width = wf["5"]["inputs"]["width"].as_u64().map(|v| v as u32);
    req.params.height = wf["5"]["inputs"]["height"].as_u64().map(|v| v as u32);
    req.params.count = wf["5"]["inputs"]["batch_size"].as_u64().map(|v| v as u32);
    let g = rt
        .block_on(Procedural::new("gpu").generate(&req, &CallCtx::detached()))
        .expect("the stand-in renders");
    g.artifacts.iter().map(|a| a.data().to_vec()).collect()
}

fn serve(listener: TcpListener, state: Arc<Mutex<Fake>>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut counter = 0u32;
    for conn in listener.incoming() {
        let Ok(mut s) = conn else { continue };
        let Some((method, target, body)) = read_request(&mut s) else {
            continue;
        };
        let path = target.split('?').next().unwrap_or_default().to_string();
        let mut st = state.lock().unwrap();
        match (method.as_str(), path.as_str()) {
            ("GET", "/system_stats") => {
                let b = json!({"system": {"os": "posix", "comfyui_version": "0.3.40"}, "devices": []});
                reply(&mut s, "200 OK", "application/json", b.to_string().as_bytes());
            }
            ("POST", "/prompt") => {
                let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                let wf = v["prompt"].clone();
                let pid = v["prompt_id"].as_str().map(str::to_string).unwrap_or_else(|| {
                    counter += 1;
                    format!("p-{counter}")
                });
                let prefix = wf["9"]["inputs"]["filename_prefix"]
                    .as_str()
                    .unwrap_or("ComfyUI")
                    .to_string();
                let mut names = Vec::new();
                for (i, png) in render(&rt, &wf).into_iter().enumerate() {
                    let name = format!("{prefix}_{:05}_{i}.png", st.files.len() + 1);
                    st.files.insert(name.clone(), png);
                    names.push(name);
                }
                st.prompts.push(wf);
                st.history.insert(pid.clone(), (names, 0));
                let b = json!({"prompt_id": pid, "number": st.prompts.len(), "node_errors": {}});
                reply(&mut s, "200 OK", "application/json", b.to_string().as_bytes());
            }
            ("GET", "/queue") => {
                let running: Vec<Value> = st
                    .history
                    .iter()
                    .filter(|(_, (_, polls))| *polls == 0)
                    .map(|(pid, _)| json!([0, pid, {}, {}, ["9"]]))
                    .collect();
                let b = json!({"queue_running": running, "queue_pending": []});
                reply(&mut s, "200 OK", "application/json", b.to_string().as_bytes());
            }
            ("GET", p) if p.starts_with("/history/") => {
                let pid = p.trim_start_matches("/history/").to_string();
                let b = match st.history.get_mut(&pid) {
                    // The first poll finds it still running.
                    Some((_, polls)) if *polls == 0 => {
                        *polls += 1;
                        json!({})
                    }
                    Some((names, _)) => {
                        let images: Vec<Value> = names
                            .iter()
                            .map(|n| json!({"filename": n, "subfolder": "", "type": "output"}))
                            .collect();
                        json!({ pid.clone(): {
                            "prompt": [0, pid, {}, {}, ["9"]],
                            "outputs": {"9": {"images": images}},
                            "status": {"status_str": "success", "completed": true, "messages": [
                                ["execution_start", {"prompt_id": pid, "timestamp": 1}],
                                ["execution_cached", {"nodes": [], "prompt_id": pid, "timestamp": 2}],
                                ["execution_success", {"prompt_id": pid, "timestamp": 3}]
                            ]},
                            "meta": {"9": {"node_id": "9", "display_node": "9"}}
                        }})
                    }
                    None => json!({}),
                };
                reply(&mut s, "200 OK", "application/json", b.to_string().as_bytes());
            }
            ("GET", "/view") => {
                let name = target
                    .split(['?', '&'])
                    .find_map(|kv| kv.strip_prefix("filename="))
                    .unwrap_or_default()
                    .to_string();
                match st.files.get(&name) {
                    Some(png) => reply(&mut s, "200 OK", "image/png", png),
                    None => reply(&mut s, "404 Not Found", "text/plain", b"no such file"),
                }
            }
            _ => reply(&mut s, "404 Not Found", "text/plain", b"not found"),
        }
    }
}

#[test]
fn the_shipped_comfyui_example_runs_end_to_end_against_comfyuis_api() {
    let dir = temp_dir("comfy-example");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(Mutex::new(Fake::default()));
    {
        let state = state.clone();
        std::thread::spawn(move || serve(listener, state));
    }
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/specs");
    let spec = std::fs::read_to_string(examples.join("comfyui_campaign.toml"))
        .unwrap()
        .replace("http://127.0.0.1:8188", &format!("http://{addr}"));
    std::fs::write(dir.join("comfyui_campaign.toml"), spec).unwrap();
    std::fs::copy(
        examples.join("comfyui_workflow.json"),
        dir.join("comfyui_workflow.json"),
    )
    .unwrap();
    let out = dir.join("out");
    let o = Command::new(BIN)
        .args([
            "run",
            "comfyui_campaign.toml",
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "the example failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // What reached "ComfyUI": the example's values injected into the workflow.
    let st = state.lock().unwrap();
    assert!(
        st.prompts.len() >= 6,
        "one prompt per job at least: {}",
        st.prompts.len()
    );
    let wf = &st.prompts[0];
    let text = wf["6"]["inputs"]["text"].as_str().unwrap();
    assert!(text.starts_with("fashion lookbook photo, a model wearing a "), "{text}");
    assert_eq!(wf["7"]["inputs"]["text"], "lowres, bad anatomy, text, watermark");
    assert_eq!(
        (
            wf["5"]["inputs"]["width"].as_u64(),
            wf["5"]["inputs"]["height"].as_u64()
        ),
        (Some(512), Some(768))
    );
    assert_eq!(wf["5"]["inputs"]["batch_size"], 4, "four candidates per call");
    assert_eq!(wf["3"]["inputs"]["steps"], 24);
    assert_eq!(wf["3"]["inputs"]["cfg"], 6.0);
    assert_eq!(
        wf["4"]["inputs"]["ckpt_name"], "v1-5-pruned-emaonly.safetensors",
        "nodes the spec does not touch are sent as exported"
    );
    let seeds: std::collections::HashSet<u64> = st
        .prompts
        .iter()
        .filter_map(|w| w["3"]["inputs"]["seed"].as_u64())
        .collect();
    assert_eq!(seeds.len(), st.prompts.len(), "every prompt has its own seed");

    // What came out: one gated look and its web JPEG per job, with provenance.
    let manifest: Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let assets = manifest["assets"].as_array().unwrap();
    assert_eq!(assets.len(), 6, "{manifest}");
    for a in assets {
        assert_eq!(a["media"], "image/jpeg");
        assert!(out.join(a["path"].as_str().unwrap()).is_file());
        let look = &a["sources"][0]["provenance"];
        assert_eq!(look["provider"], "comfy", "{a}");
        let verdicts = look["gates"].as_array().unwrap();
        assert_eq!(verdicts.len(), 4, "format, sharpness, exposure, dedupe: {a}");
        assert!(verdicts.iter().all(|v| v["passed"] == true), "{a}");
    }
    drop(st);
    let _ = std::fs::remove_dir_all(&dir);
}
