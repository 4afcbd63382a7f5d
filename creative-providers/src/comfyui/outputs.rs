//! A finished prompt's history entry read: its status (a node's failure
//! becomes a classified error), its output files (only our output nodes',
//! saved outputs before previews), the files fetched, the run time and the
//! cached nodes, and whether a cached file was written by our graph (the PNG's
//! embedded workflow compared with ours).

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use creative_core::{CallCtx, ErrorKind, MediaType, ProviderError};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::pool::Server;
use super::workflow::ancestors;
use super::ComfyUi;
use crate::http::HttpRequest;

impl ComfyUi {
    pub(super) fn check_status(&self, entry: &Value) -> Result<(), ProviderError> {
        let status = entry.get("status");
        let str_ = status.and_then(|s| s.get("status_str")).and_then(Value::as_str);
        let messages = status
            .and_then(|s| s.get("messages"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for m in &messages {
            let (Some(kind), Some(data)) = (m.get(0).and_then(Value::as_str), m.get(1)) else {
                continue;
            };
            match kind {
                "execution_error" => {
                    let node = data.get("node_id").and_then(Value::as_str).unwrap_or("?");
                    let ty = data.get("node_type").and_then(Value::as_str).unwrap_or("?");
                    let ex = data.get("exception_type").and_then(Value::as_str).unwrap_or("");
                    let msg = data
                        .get("exception_message")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .trim();
                    let oom = ex.contains("OutOfMemory")
                        || ex.contains("OOM")
                        || msg.to_lowercase().contains("out of memory");
                    let kind = if oom { ErrorKind::Transient } else { ErrorKind::Invalid };
                    return Err(self.err(kind, format!("node {node} ({ty}) failed: {ex}: {msg}")));
                }
                "execution_interrupted" => {
                    let node = data.get("node_id").and_then(Value::as_str).unwrap_or("?");
                    return Err(self.err(
                        ErrorKind::Transient,
                        format!("the prompt was interrupted at node {node}"),
                    ));
                }
                _ => {}
            }
        }
        if str_ == Some("error") {
            return Err(self.err(
                ErrorKind::Transient,
                "ComfyUI reports the prompt failed without details",
            ));
        }
        Ok(())
    }

    /// The output files of an entry, by node, restricted to the prompt's output nodes.
    pub(super) fn outputs(&self, entry: &Value) -> Vec<(String, OutputFile)> {
        let executed: Option<BTreeSet<String>> = entry
            .get("prompt")
            .and_then(|p| p.get(4))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect());
        let mut files = Vec::new();
        let Some(outputs) = entry.get("outputs").and_then(Value::as_object) else {
            return files;
        };
        for (node, out) in outputs {
            // History holds the UI outputs of every node in the executor's cache,
            // including nodes this prompt did not run: keep only our output nodes.
            if !self.workflow.contains_key(node) || executed.as_ref().is_some_and(|e| !e.contains(node)) {
                continue;
            }
            if self.output_nodes.as_ref().is_some_and(|o| !o.contains(node)) {
                continue;
            }
            let Some(out) = out.as_object() else { continue };
            for list in out.values().filter_map(Value::as_array) {
                for f in list {
                    if let Ok(file) = serde_json::from_value::<OutputFile>(f.clone()) {
                        files.push((node.clone(), file));
                    }
                }
            }
        }
        // Saved outputs win over previews when both exist.
        if files.iter().any(|(_, f)| f.kind == "output") {
            files.retain(|(_, f)| f.kind == "output");
        }
        files
    }

    pub(super) async fn fetch(
        &self,
        srv: &Server,
        f: &OutputFile,
        ctx: &CallCtx,
    ) -> Result<Option<(Bytes, Option<MediaType>)>, ProviderError> {
        let req = HttpRequest::get("view")
            .query("filename", &f.filename)
            .query("subfolder", &f.subfolder)
            .query("type", &f.kind);
        match srv.transport.send(req, ctx).await {
            Ok(r) => {
                let media = r.media_type();
                Ok(Some((r.body, media)))
            }
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct OutputFile {
    pub(super) filename: String,
    #[serde(default)]
    pub(super) subfolder: String,
    #[serde(rename = "type", default = "default_type")]
    pub(super) kind: String,
}

fn default_type() -> String {
    "output".into()
}

/// Seconds the prompt executed, from the `timestamp`s (milliseconds) of its
/// `execution_start` and `execution_success` messages; `None` when either is
/// missing or they run backwards.
pub(super) fn execution_span_s(entry: &Value) -> Option<f64> {
    let messages = entry.pointer("/status/messages").and_then(Value::as_array)?;
    let stamp = |event: &str| {
        messages
            .iter()
            .filter(|m| m.get(0).and_then(Value::as_str) == Some(event))
            .find_map(|m| m.get(1).and_then(|d| d.get("timestamp")).and_then(Value::as_f64))
    };
    let (start, end) = (stamp("execution_start")?, stamp("execution_success")?);
    (end >= start && (end - start).is_finite()).then(|| (end - start) / 1000.0)
}

pub(super) fn cached_nodes(entry: &Value) -> BTreeSet<String> {
    entry
        .pointer("/status/messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|m| m.get(0).and_then(Value::as_str) == Some("execution_cached"))
        .filter_map(|m| m.get(1).and_then(|d| d.get("nodes")).and_then(Value::as_array))
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect()
}

/// The uncompressed text chunk `key` of a PNG (`tEXt` or `iTXt`).
fn png_text(data: &[u8], key: &str) -> Option<String> {
    if !data.starts_with(b"\x89PNG\r\n\x1a\n") {
        return None;
    }
    let mut i = 8usize;
    while i + 8 <= data.len() {
        let len = u32::from_be_bytes(data[i..i + 4].try_into().ok()?) as usize;
        let ty = &data[i + 4..i + 8];
        let body = data.get(i + 8..i + 8 + len)?;
        if ty == b"tEXt" || ty == b"iTXt" {
            if let Some(z) = body.iter().position(|b| *b == 0) {
                if &body[..z] == key.as_bytes() {
                    if ty == b"tEXt" {
                        return Some(body[z + 1..].iter().map(|&b| b as char).collect());
                    }
                    // iTXt: flag, method, language\0, translated keyword\0, text.
                    let rest = body.get(z + 1..)?;
                    if rest.first() != Some(&0) {
                        return None;
                    }
                    let rest = rest.get(2..)?;
                    let lang_end = rest.iter().position(|b| *b == 0)?;
                    let rest = rest.get(lang_end + 1..)?;
                    let tk_end = rest.iter().position(|b| *b == 0)?;
                    return String::from_utf8(rest.get(tk_end + 1..)?.to_vec()).ok();
                }
            }
        }
        if ty == b"IEND" {
            break;
        }
        i += 12 + len;
    }
    None
}

/// Whether a cached output file was written by a run of the same node graph:
/// `Some(false)` when its embedded workflow disagrees with ours on the node or one
/// of its ancestors, `None` when it carries no workflow to compare.
pub(super) fn file_matches(data: &[u8], wf: &Map<String, Value>, node: &str) -> Option<bool> {
    let embedded: Value = serde_json::from_str(&png_text(data, "prompt")?).ok()?;
    let emb = embedded.as_object()?;
    Some(ancestors(wf, node).iter().all(|n| {
        let ours = wf.get(n);
        let theirs = emb.get(n);
        match (ours, theirs) {
            (Some(a), Some(b)) => a.get("class_type") == b.get("class_type") && a.get("inputs") == b.get("inputs"),
            _ => false,
        }
    }))
}

pub(super) fn media_from_name(name: &str) -> Option<MediaType> {
    let ext = name.rsplit('.').next()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => MediaType::Png,
        "jpg" | "jpeg" => MediaType::Jpeg,
        "webp" => MediaType::Webp,
        "mp4" => MediaType::Mp4,
        "wav" => MediaType::Wav,
        "mp3" => MediaType::Mp3,
        "flac" => MediaType::Other(Arc::from("audio/flac")),
        "gif" => MediaType::Other(Arc::from("image/gif")),
        "webm" => MediaType::Other(Arc::from("video/webm")),
        "glb" => MediaType::Glb,
        "txt" => MediaType::Text,
        "json" => MediaType::Json,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_text_reads_text_and_itxt_chunks() {
        fn chunk(ty: &[u8], body: &[u8]) -> Vec<u8> {
            let mut v = (body.len() as u32).to_be_bytes().to_vec();
            v.extend_from_slice(ty);
            v.extend_from_slice(body);
            v.extend_from_slice(&[0, 0, 0, 0]);
            v
        }
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(chunk(b"tEXt", b"workflow\0{}"));
        png.extend(chunk(b"iTXt", "prompt\0\0\0\0\0{\"a\":\"é\"}".as_bytes()));
        png.extend(chunk(b"IEND", b""));
        assert_eq!(png_text(&png, "prompt").as_deref(), Some("{\"a\":\"é\"}"));
        assert_eq!(png_text(&png, "workflow").as_deref(), Some("{}"));
        assert_eq!(png_text(&png, "other"), None);
    }
}
