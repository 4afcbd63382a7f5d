//! One prompt's life on one server: input images uploaded, the prompt queued
//! (a refusal explained node by node), followed on the websocket or by polling
//! the history and queue until it is done, lost or out of time, and taken back
//! (interrupted or dequeued) when the call ends first. The history entries of
//! finished prompts are deleted when the call ends.

use std::time::Duration;

use creative_core::{Artifact, CallCtx, CallProgress, ErrorKind, ProviderError};
use serde_json::{json, Map, Value};

use super::pool::Server;
use super::{ws, ComfyUi};
use crate::http::{cleanup_ctx, CancelGuard, FormPart, HttpRequest, LongJob, Transport};

impl ComfyUi {
    pub(super) async fn upload(&self, srv: &Server, a: &Artifact, ctx: &CallCtx) -> Result<String, ProviderError> {
        let name = format!("creative_{}.{}", a.id().short(), a.media().extension());
        let parts = vec![
            FormPart::file("image", a.data().clone(), name, a.media().as_str()),
            FormPart::text("type", "input"),
            FormPart::text("overwrite", "true"),
        ];
        let v: Value = srv
            .transport
            .send_json(HttpRequest::post_multipart("upload/image", parts), ctx)
            .await?;
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| self.err(ErrorKind::Protocol, format!("upload answer without `name`: {v}")))?;
        Ok(match v.get("subfolder").and_then(Value::as_str) {
            Some(s) if !s.is_empty() => format!("{s}/{name}"),
            _ => name.to_string(),
        })
    }

    /// Queue the prompt; returns the id the server filed it under (ours, unless an
    /// older server ignores the `prompt_id` we suggest).
    pub(super) async fn queue_prompt(
        &self,
        srv: &Server,
        wf: &Map<String, Value>,
        prompt_id: &str,
        client_id: &str,
        ctx: &CallCtx,
    ) -> Result<String, ProviderError> {
        let mut body = json!({ "prompt": wf, "client_id": client_id, "prompt_id": prompt_id });
        if let Some(nodes) = &self.output_nodes {
            // Servers since mid-2025 run only these outputs (and what they need);
            // older ones ignore the key and run every output, of which only
            // these are fetched.
            body["partial_execution_targets"] = json!(nodes);
        }
        let resp = match srv.transport.send(HttpRequest::post_json("prompt", body), ctx).await {
            Ok(r) => r,
            Err(e) => return Err(self.explain_prompt_error(e, wf)),
        };
        let v: Value = resp.json(&self.id)?;
        let prompt_id = v.get("prompt_id").and_then(Value::as_str).unwrap_or(prompt_id);
        if let Some(errs) = v
            .get("node_errors")
            .and_then(Value::as_object)
            .filter(|m| !m.is_empty())
        {
            // Valid outputs were queued and the invalid ones silently dropped: the
            // result would be incomplete, so take the prompt back and fail.
            spawn_cleanup(srv.transport.clone(), prompt_id.to_string());
            // Not an HTTP failure (ComfyUI answered 200), so no status is kept.
            return Err(self.err(
                ErrorKind::Invalid,
                format!(
                    "ComfyUI accepted the prompt but dropped outputs that failed validation: {}",
                    describe_node_errors(errs, wf)
                ),
            ));
        }
        Ok(prompt_id.to_string())
    }

    /// Replace the generic 400 message by the per-node validation errors.
    fn explain_prompt_error(&self, e: ProviderError, wf: &Map<String, Value>) -> ProviderError {
        let Some(body) = e
            .body()
            .and_then(|b| serde_json::from_str::<Value>(b).ok())
            .filter(|b| b.get("node_errors").is_some())
        else {
            return e;
        };
        let message = body
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or(e.message());
        let details = body.pointer("/error/details").and_then(Value::as_str);
        let mut msg = with_details(message, details);
        if let Some(errs) = body
            .get("node_errors")
            .and_then(Value::as_object)
            .filter(|m| !m.is_empty())
        {
            msg = format!("{msg}; {}", describe_node_errors(errs, wf));
        }
        let mut out = self.err(e.kind(), msg).with_retry_after(e.retry_after());
        if let Some(id) = e.request_id() {
            out = out.with_request_id(id);
        }
        if let Some(s) = e.status() {
            out = out.with_status(s);
        }
        if let Some(b) = e.body() {
            out = out.with_body(b);
        }
        out
    }

    /// Wait until the prompt is in the history: over the websocket when one is
    /// open, falling back to polling when it closes; `Err` when the prompt is
    /// lost, the call is cancelled or its time runs out.
    pub(super) async fn wait(
        &self,
        srv: &Server,
        job: &mut LongJob,
        prompt_id: &str,
        ctx: &CallCtx,
        sock: Option<ws::Socket>,
    ) -> Result<Finished, ProviderError> {
        let since = tokio::time::Instant::now();
        let mut started = None;
        if let Some(mut sock) = sock {
            match self.listen(srv, &mut sock, prompt_id, ctx, since, &mut started).await? {
                Some(done) => return Ok(done),
                None => tracing::debug!(provider = %self.id, prompt_id, "websocket closed; polling instead"),
            }
        }
        self.poll(srv, job, prompt_id, ctx, since, started).await
    }

    /// Follow the prompt on the websocket. Every `ws_check` without the end, the
    /// history and queue are asked once (a message the socket missed, a prompt
    /// lost to a restart). `Ok(None)` when the socket closed first.
    async fn listen(
        &self,
        srv: &Server,
        sock: &mut ws::Socket,
        prompt_id: &str,
        ctx: &CallCtx,
        since: tokio::time::Instant,
        started: &mut Option<tokio::time::Instant>,
    ) -> Result<Option<Finished>, ProviderError> {
        let mut ended: Option<tokio::time::Instant> = None;
        let mut stage = String::new();
        let mut next_check = since + self.ws_check;
        loop {
            let ev = tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => return Err(ProviderError::cancelled(&self.id)),
                _ = until_deadline(ctx) => return Err(self.out_of_time(prompt_id, since, started.is_some())),
                ev = sock.next_for(prompt_id) => ev,
                _ = tokio::time::sleep_until(next_check) => {
                    next_check = tokio::time::Instant::now() + self.ws_check;
                    match self.check(srv, prompt_id, ctx).await.map_err(|e| self.timed_out(e, ctx, prompt_id, since, started.is_some()))? {
                        Check::Done(entry) => return Ok(Some(self.finished(entry, since, *started, ended))),
                        Check::Pending | Check::Running => continue,
                    }
                }
            };
            let now = tokio::time::Instant::now();
            match ev {
                None => return Ok(None),
                Some(ws::WsEvent::Queue(n)) => srv.set_queue(n),
                Some(ws::WsEvent::Started) => *started = Some(now),
                Some(ws::WsEvent::Executing(node)) => {
                    stage = self.stage(&node);
                    ctx.report_progress(CallProgress {
                        stage: stage.clone(),
                        done: 0,
                        total: 0,
                    });
                }
                Some(ws::WsEvent::Progress { node, value, max }) => {
                    if let Some(n) = node {
                        stage = self.stage(&n);
                    }
                    ctx.report_progress(CallProgress {
                        stage: stage.clone(),
                        done: value,
                        total: max,
                    });
                }
                // The history entry is stored just after: look soon.
                Some(ws::WsEvent::Ended) => {
                    ended.get_or_insert(now);
                    next_check = now + self.poll.0;
                }
                Some(ws::WsEvent::Stored) => {
                    ended.get_or_insert(now);
                    let h: Value = srv
                        .transport
                        .send_json(HttpRequest::get(format!("history/{prompt_id}")), ctx)
                        .await
                        .map_err(|e| self.timed_out(e, ctx, prompt_id, since, true))?;
                    if let Some(entry) = h.get(prompt_id) {
                        return Ok(Some(self.finished(entry.clone(), since, *started, ended)));
                    }
                    next_check = now + self.poll.0;
                }
            }
        }
    }

    /// `node 3 (KSampler)`, for progress events.
    fn stage(&self, node: &str) -> String {
        match self
            .workflow
            .get(node)
            .and_then(|n| n.get("class_type"))
            .and_then(Value::as_str)
        {
            Some(class) => format!("node {node} ({class})"),
            None => format!("node {node}"),
        }
    }

    fn finished(
        &self,
        entry: Value,
        since: tokio::time::Instant,
        started: Option<tokio::time::Instant>,
        ended: Option<tokio::time::Instant>,
    ) -> Finished {
        let now = tokio::time::Instant::now();
        Finished {
            entry,
            queued: started.map_or(Duration::ZERO, |s| s.saturating_duration_since(since)),
            heard_run_s: started.map(|s| ended.unwrap_or(now).saturating_duration_since(s).as_secs_f64()),
        }
    }

    /// Poll the history (and, while it is empty, the queue) with backoff until
    /// the prompt is done.
    async fn poll(
        &self,
        srv: &Server,
        job: &mut LongJob,
        prompt_id: &str,
        ctx: &CallCtx,
        since: tokio::time::Instant,
        started: Option<tokio::time::Instant>,
    ) -> Result<Finished, ProviderError> {
        let mut queued = started.map(|s| s.saturating_duration_since(since));
        let mut running = started.is_some();
        loop {
            job.wait(ctx)
                .await
                .map_err(|e| self.timed_out(e, ctx, prompt_id, since, running))?;
            match self
                .check(srv, prompt_id, ctx)
                .await
                .map_err(|e| self.timed_out(e, ctx, prompt_id, since, running))?
            {
                Check::Done(entry) => {
                    return Ok(Finished {
                        entry,
                        queued: queued.unwrap_or(Duration::ZERO),
                        heard_run_s: None,
                    })
                }
                Check::Pending => queued = Some(since.elapsed()),
                Check::Running => running = true,
            }
        }
    }

    /// Where the prompt is: done (its history entry), pending or running; `Err`
    /// when it is lost. ComfyUI answers `{}` both for "not finished" and for
    /// "never heard of it", so an empty history is checked against the queue.
    async fn check(&self, srv: &Server, prompt_id: &str, ctx: &CallCtx) -> Result<Check, ProviderError> {
        let history_path = format!("history/{prompt_id}");
        let h: Value = srv.transport.send_json(HttpRequest::get(&history_path), ctx).await?;
        if let Some(entry) = h.get(prompt_id) {
            return Ok(Check::Done(entry.clone()));
        }
        let q: Value = srv.transport.send_json(HttpRequest::get("queue"), ctx).await?;
        // Without a websocket this is how a pool learns the server's queue.
        let len = |k: &str| q.get(k).and_then(Value::as_array).map_or(0, |a| a.len() as u64);
        srv.set_queue(len("queue_running") + len("queue_pending"));
        if queue_in(&q, "queue_pending", prompt_id) {
            return Ok(Check::Pending);
        }
        if queue_in(&q, "queue_running", prompt_id) {
            return Ok(Check::Running);
        }
        // It left the queue: it is in the history now, or it is lost. (A prompt
        // moves from the queue to the history under one lock, so the history is
        // read again after the queue.)
        let h: Value = srv.transport.send_json(HttpRequest::get(&history_path), ctx).await?;
        if let Some(entry) = h.get(prompt_id) {
            return Ok(Check::Done(entry.clone()));
        }
        Err(self.err(
            ErrorKind::Unavailable,
            format!(
                "prompt {prompt_id} is lost: ComfyUI has it neither in its queue nor in its history \
                 (the server restarted, or the queue or history was cleared)"
            ),
        ))
    }

    /// `e`, or when it is a timeout because the call's deadline passed (not a
    /// slow answer), the error that says so (see [`ComfyUi::out_of_time`]).
    fn timed_out(
        &self,
        e: ProviderError,
        ctx: &CallCtx,
        prompt_id: &str,
        since: tokio::time::Instant,
        running: bool,
    ) -> ProviderError {
        let deadline_passed = ctx.deadline.is_some_and(|d| std::time::Instant::now() >= d);
        if e.kind() == ErrorKind::Timeout && deadline_passed {
            self.out_of_time(prompt_id, since, running)
        } else {
            e
        }
    }

    /// The error for a call whose time ran out while the prompt was queued or
    /// running, naming how long it waited.
    fn out_of_time(&self, prompt_id: &str, since: tokio::time::Instant, running: bool) -> ProviderError {
        let state = if running { "still running" } else { "still queued" };
        self.err(
            ErrorKind::Timeout,
            format!(
                "prompt {prompt_id} did not finish within the call's time limit: after {:.1} s it was {state} \
                 (raise the provider's `call_timeout_s`)",
                since.elapsed().as_secs_f64()
            ),
        )
    }

    /// The websocket for `client_id`, when enabled and the server offers one;
    /// `None` means polling (logged at debug: a proxy without websockets, an
    /// old server).
    pub(super) async fn open_socket(&self, srv: &Server, client_id: &str) -> Option<ws::Socket> {
        if !self.websocket {
            return None;
        }
        let timeout = srv.transport.timeout().min(Duration::from_secs(5));
        match ws::Socket::connect(
            srv.transport.base_url(),
            client_id,
            srv.transport.origin_headers(),
            timeout,
        )
        .await
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!(provider = %self.id, error = %e, "no ComfyUI websocket; polling instead");
                None
            }
        }
    }
}

/// Whether `GET /queue`'s list `key` (`queue_running`, `queue_pending`) holds
/// the prompt (items are `[number, prompt_id, prompt, extra, outputs]`).
fn queue_in(q: &Value, key: &str, prompt_id: &str) -> bool {
    q.get(key).and_then(Value::as_array).is_some_and(|items| {
        items
            .iter()
            .any(|it| it.get(1).and_then(Value::as_str) == Some(prompt_id))
    })
}

/// ComfyUI's `message` and `details` as one sentence: `Required input is
/// missing (images)`, `Cannot execute because node Foo does not exist (Node ID
/// '#2')`, without the period ComfyUI ends some messages with.
fn with_details(message: &str, details: Option<&str>) -> String {
    let m = message.trim().trim_end_matches('.');
    match details.map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) => format!("{m} ({d})"),
        None => m.to_string(),
    }
}

fn describe_node_errors(errs: &Map<String, Value>, wf: &Map<String, Value>) -> String {
    let mut parts = Vec::new();
    for (node, e) in errs {
        let class = e
            .get("class_type")
            .and_then(Value::as_str)
            .or_else(|| wf.get(node).and_then(|n| n.get("class_type")).and_then(Value::as_str))
            .unwrap_or("?");
        let reasons: Vec<String> = e
            .get("errors")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|r| {
                        let m = r.get("message").and_then(Value::as_str).unwrap_or("failed validation");
                        with_details(m, r.get("details").and_then(Value::as_str))
                    })
                    .collect()
            })
            .unwrap_or_default();
        parts.push(format!("node {node} ({class}): {}", reasons.join("; ")));
    }
    parts.join(" | ")
}

/// Take a prompt of ours back in the background (see [`take_back`]).
fn spawn_cleanup(t: Transport, prompt_id: String) {
    // Dropped armed: the guard runs it on the runtime, bounded.
    CancelGuard::new().arm(take_back(t, prompt_id));
}

/// Take a queued or running prompt back (on cancellation: the call's own token
/// is cancelled, so a fresh context is used).
///
/// `/interrupt` stops whatever the server is running: servers before September
/// 2025 ignore the `prompt_id` it names, so interrupting a prompt that is not
/// running would kill another client's. So the queue is asked first: a running
/// prompt of ours is interrupted, a pending one deleted from the queue, and when
/// the queue cannot be read only the (harmless) delete is sent.
pub(super) async fn take_back(t: Transport, prompt_id: String) {
    let ctx = cleanup_ctx();
    let running = match t.send_json::<Value>(HttpRequest::get("queue"), &ctx).await {
        Ok(q) => queue_in(&q, "queue_running", &prompt_id),
        Err(_) => false,
    };
    if running {
        let _ = t
            .send(
                HttpRequest::post_json("interrupt", json!({ "prompt_id": prompt_id })),
                &ctx,
            )
            .await;
    } else {
        let _ = t
            .send(HttpRequest::post_json("queue", json!({ "delete": [prompt_id] })), &ctx)
            .await;
    }
}

/// Delete finished prompts' history entries, without waiting for the answer
/// (ComfyUI keeps up to 10,000 in memory, each with its whole workflow).
fn spawn_forget(t: Transport, prompt_ids: Vec<String>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    rt.spawn(async move {
        let _ = t
            .send(
                HttpRequest::post_json("history", json!({ "delete": prompt_ids })),
                &cleanup_ctx(),
            )
            .await;
    });
}

/// What [`ComfyUi::check`] found.
enum Check {
    Done(Value),
    Pending,
    Running,
}

/// A prompt found in the history.
pub(super) struct Finished {
    pub(super) entry: Value,
    /// How long it waited in the queue, as far as was seen.
    pub(super) queued: Duration,
    /// Seconds from `execution_start` to the end, as heard on the websocket.
    pub(super) heard_run_s: Option<f64>,
}

/// Resolves when the call's deadline passes; never without one.
async fn until_deadline(ctx: &CallCtx) {
    match ctx.deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// Deletes finished prompts' history entries when the call ends, however it ends.
pub(super) struct Forget {
    /// `None` when the history is kept (`keep_history`).
    pub(super) transport: Option<Transport>,
    pub(super) prompt_ids: Vec<String>,
}

impl Drop for Forget {
    fn drop(&mut self) {
        if let Some(t) = self.transport.take() {
            if !self.prompt_ids.is_empty() {
                spawn_forget(t, std::mem::take(&mut self.prompt_ids));
            }
        }
    }
}
