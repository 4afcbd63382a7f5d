//! One call: the request's candidates split into prompts (each seeded past the
//! one before), each prompt placed on the pool's server with the shortest queue
//! and placed again when that server stops answering, and one attempt on one
//! server run from upload to artifacts, re-running stale cached outputs once.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use creative_core::{
    Artifact, CallCtx, ErrorKind, Generation, MediaType, MemberCall, Provider, ProviderError, Request, Usage,
};
use serde_json::{json, Value};

use super::outputs::{cached_nodes, execution_span_s, file_matches, media_from_name};
use super::pool::Server;
use super::prompt::{take_back, Finished, Forget};
use super::workflow::{set_input, NodePath};
use super::{random_hex, ComfyUi};
use crate::http::{sniff_media, HttpRequest, LongJob, PollBackoff};

impl ComfyUi {
    /// How a request's candidates are split into prompts: `(first candidate,
    /// how many)` each. One prompt when they fit a batch (`batch_size`
    /// injected, at most `max_batch`), or when the seed cannot be injected
    /// (every prompt would then make the same images).
    pub(super) fn chunks(&self, request: &Request) -> Vec<(u32, u32)> {
        let count = request.params.count.unwrap_or(1).max(1);
        let per = if self.inject.contains_key("batch_size") {
            self.max_batch
        } else {
            1
        };
        if count <= per || !self.inject.contains_key("seed") {
            return vec![(0, count)];
        }
        (0..count)
            .step_by(per as usize)
            .map(|k| (k, per.min(count - k)))
            .collect()
    }

    /// The request for candidates `k..k + n`: `n` of them, seeded `k` past the
    /// request's seed (or the workflow's, when the request has none), so no two
    /// prompts make the same images.
    pub(super) fn chunk_request(&self, request: &Request, k: u32, n: u32) -> Request {
        let mut r = request.clone();
        r.params.count = Some(n);
        if k > 0 {
            let base = request.params.seed.unwrap_or_else(|| {
                self.inject
                    .get("seed")
                    .and_then(|paths| paths.first())
                    .and_then(|p| self.workflow.get(&p.node)?.get("inputs")?.get(&p.field)?.as_u64())
                    .unwrap_or(0)
            });
            r.params.seed = Some(base.wrapping_add(u64::from(k)));
        }
        r
    }

    /// Run one prompt on the pool: on the server with the shortest queue, and
    /// again on another when that one stops answering. On a pool each server's
    /// attempt is reported as a member call (the report's per-server rows).
    pub(super) async fn place(&self, request: &Request, ctx: &CallCtx) -> Result<Generation, ProviderError> {
        let pooled = self.is_composite();
        let mut given_up: Vec<usize> = Vec::new();
        loop {
            let claim = self.pool.claim(&given_up).ok_or_else(|| {
                self.err(
                    ErrorKind::Unavailable,
                    "every ComfyUI server of the pool stopped answering during this call",
                )
            })?;
            let srv = claim.server;
            let started = std::time::Instant::now();
            let result = self.run_on(srv, request, ctx).await;
            if pooled {
                ctx.report_member(MemberCall {
                    member: srv.name(),
                    model: self.model(request),
                    latency: started.elapsed(),
                    cost_usd: result.as_ref().map_or(0.0, |g| g.usage.cost_usd),
                    error: result.as_ref().err().cloned(),
                    // The pool places by queue length, not by learned estimates:
                    // its first placement is its best choice, a requeue a fallback.
                    reason: Some(if given_up.is_empty() {
                        creative_core::RouteReason::Exploited
                    } else {
                        creative_core::RouteReason::Fallback
                    }),
                });
            }
            let err = match result {
                Ok(g) => return Ok(g),
                Err(e) => e,
            };
            // One server: nowhere else to go, and the engine's breaker keeps its health.
            if !pooled || !self.server_died(srv, &err, ctx).await {
                return Err(err);
            }
            srv.mark_down(self.server_down);
            let requeue = self.pool.servers.len() > given_up.len() + 1;
            srv.record(|s| {
                s.failures += 1;
                s.requeued += u64::from(requeue);
            });
            if !requeue {
                return Err(if self.pool.servers.len() > 1 {
                    self.err(
                        ErrorKind::Transient,
                        format!(
                            "every ComfyUI server of the pool stopped answering; the last, {}: {}",
                            srv.name(),
                            err.message()
                        ),
                    )
                } else {
                    err
                });
            }
            tracing::warn!(provider = %self.id, server = %srv.name(), error = %err, "a ComfyUI server stopped answering; queueing the prompt on another");
            given_up.push(claim.index);
        }
    }
}

impl ComfyUi {
    /// Whether `err` came from `srv` no longer answering: a failure that could
    /// be the server's (not the prompt's, not a cancellation or the call's
    /// deadline) and a `GET /system_stats` probe that fails too.
    async fn server_died(&self, srv: &Server, err: &ProviderError, ctx: &CallCtx) -> bool {
        let deadline_passed = ctx.deadline.is_some_and(|d| std::time::Instant::now() >= d);
        let maybe = match err.kind() {
            ErrorKind::Transient | ErrorKind::Unavailable => true,
            ErrorKind::Timeout => !deadline_passed,
            _ => false,
        };
        if !maybe || ctx.cancel.is_cancelled() {
            return false;
        }
        let probe = CallCtx {
            deadline: Some(std::time::Instant::now() + Duration::from_secs(3)),
            ..CallCtx::detached()
        };
        srv.transport
            .send(HttpRequest::get("system_stats"), &probe)
            .await
            .is_err()
    }

    /// One attempt at the call on one server.
    async fn run_on(&self, srv: &Server, request: &Request, ctx: &CallCtx) -> Result<Generation, ProviderError> {
        // Seconds the server spent executing our prompts (see the module docs).
        let mut run_s = 0.0f64;
        let mut names = Vec::with_capacity(request.inputs.len());
        for a in &request.inputs {
            names.push(self.upload(srv, a, ctx).await?);
        }
        let mut wf = self.workflow_for(request, &names)?;
        let mut reruns = 0u32;
        // Finished prompts' history entries are deleted however the call ends.
        let mut forget = Forget {
            transport: (!self.keep_history).then(|| srv.transport.clone()),
            prompt_ids: Vec::new(),
        };
        loop {
            let suggested = random_hex();
            // A client id of the call's own: ComfyUI sends a prompt's messages to
            // the socket of the client id it was queued with, and one socket per id.
            let client_id = format!("{}-{}", self.client_id, &suggested[..12]);
            let sock = self.open_socket(srv, &client_id).await;
            // Takes the prompt back if the call ends first (cancelled, out of
            // time, dropped by the engine); polls when there is no websocket.
            let mut job = LongJob::new(&self.id, PollBackoff::new(self.poll.0, self.poll.1));
            job.guard().arm(take_back(srv.transport.clone(), suggested.clone()));
            let queued_at = tokio::time::Instant::now();
            let prompt_id = match self.queue_prompt(srv, &wf, &suggested, &client_id, ctx).await {
                Ok(id) => id,
                Err(e) => {
                    // A refused prompt was never queued; an accepted-then-dropped one
                    // is cleaned up already. A lost answer may hide a queued prompt.
                    if !matches!(
                        e.kind(),
                        ErrorKind::Cancelled | ErrorKind::Timeout | ErrorKind::Transient
                    ) {
                        job.done();
                    }
                    return Err(e);
                }
            };
            if prompt_id != suggested {
                job.guard().arm(take_back(srv.transport.clone(), prompt_id.clone()));
            }
            let Finished {
                entry,
                queued,
                heard_run_s,
            } = self.wait(srv, &mut job, &prompt_id, ctx, sock).await?;
            job.done();
            forget.prompt_ids.push(prompt_id.clone());
            self.check_status(&entry)?;
            run_s += execution_span_s(&entry)
                .or(heard_run_s)
                .unwrap_or_else(|| queued_at.elapsed().saturating_sub(queued).as_secs_f64());
            let cached: BTreeSet<String> = cached_nodes(&entry);
            let files = self.outputs(&entry);
            if files.is_empty() {
                return Err(self.err(
                    ErrorKind::Protocol,
                    format!("prompt {prompt_id} finished without output files (does the workflow save its result?)"),
                ));
            }
            let mut artifacts = Vec::with_capacity(files.len());
            let mut stale: BTreeSet<String> = BTreeSet::new();
            for (node, f) in &files {
                let got = self.fetch(srv, f, ctx).await?;
                let Some((data, declared)) = got else {
                    if cached.contains(node) {
                        stale.insert(node.clone());
                        continue;
                    }
                    return Err(self.err(
                        ErrorKind::Protocol,
                        format!(
                            "output `{}` of node {node} is listed in the history but missing on the server",
                            f.filename
                        ),
                    ));
                };
                if cached.contains(node) && file_matches(&data, &wf, node) == Some(false) {
                    stale.insert(node.clone());
                    continue;
                }
                let media = sniff_media(&data)
                    .or_else(|| media_from_name(&f.filename))
                    .or(declared)
                    .unwrap_or(MediaType::Other(Arc::from("application/octet-stream")));
                let mut a = Artifact::new(media, data);
                a.provenance_mut().workflow_hash = Some(self.workflow_hash.clone());
                let extra = &mut a.meta_mut().extra;
                extra.insert("comfyui_node".into(), node.clone().into());
                extra.insert("comfyui_filename".into(), f.filename.clone().into());
                extra.insert("comfyui_prompt_id".into(), prompt_id.clone().into());
                extra.insert("comfyui_server".into(), srv.name().into());
                if cached.contains(node) {
                    extra.insert("comfyui_cached".into(), true.into());
                }
                artifacts.push(a);
            }
            if !stale.is_empty() {
                if reruns >= 1 {
                    return Err(self.err(
                        ErrorKind::Transient,
                        format!(
                            "cached outputs of node(s) {} are missing or belong to another run, even after a re-run",
                            stale.iter().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
                reruns += 1;
                tracing::debug!(provider = %self.id, nodes = ?stale, "cached outputs are stale; re-running those nodes");
                let nonce = &random_hex()[..8];
                let mut need_free = false;
                for n in &stale {
                    let prefix = wf
                        .get(n)
                        .and_then(|x| x.pointer("/inputs/filename_prefix"))
                        .and_then(Value::as_str)
                        .map(String::from);
                    match prefix {
                        Some(p) => {
                            let path = NodePath {
                                node: n.clone(),
                                field: "filename_prefix".into(),
                            };
                            set_input(&mut wf, &path, format!("{p}_{nonce}").into())
                                .map_err(|e| self.err(ErrorKind::Invalid, e.to_string()))?;
                        }
                        None => need_free = true,
                    }
                }
                if need_free {
                    srv.transport
                        .send(HttpRequest::post_json("free", json!({"free_memory": true})), ctx)
                        .await?;
                }
                continue;
            }
            let n = artifacts.len() as f64;
            srv.record(|s| {
                s.outputs += artifacts.len() as u64;
                s.run_s += run_s;
            });
            return Ok(Generation {
                usage: Usage {
                    cost_usd: self.cost_per_image * n + self.cost_per_second * run_s,
                    units: Some(n),
                    ..Usage::default()
                },
                artifacts,
                raw: Some(json!({
                    "prompt_id": prompt_id, "cached_nodes": cached, "reruns": reruns, "run_s": run_s,
                    "server": srv.name(),
                })),
            });
        }
    }
}
