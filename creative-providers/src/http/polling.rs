//! Waiting on a remote job: [`LongJob`], the submit / poll / cancel driver the
//! long-job backends share, its [`CancelGuard`], and [`PollBackoff`] and
//! [`sleep_or_cancel`], which honour cancellation and the call's deadline.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use creative_core::{CallCtx, ErrorKind, ProviderError};

use super::{HttpRequest, Transport};

/// Sleep for `d`, or stop early with a `Cancelled` error when the call is
/// cancelled, or with a `Timeout` error when the call's deadline comes first.
pub async fn sleep_or_cancel(d: Duration, ctx: &CallCtx, provider: &str) -> Result<(), ProviderError> {
    let (d, hits_deadline) = match ctx.deadline {
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            (d.min(left), left <= d)
        }
        None => (d, false),
    };
    tokio::select! {
        biased;
        _ = ctx.cancel.cancelled() => Err(ProviderError::cancelled(provider)),
        _ = tokio::time::sleep(d) => {
            if hits_deadline {
                Err(ProviderError::new(
                    ErrorKind::Timeout,
                    provider,
                    "the call's time limit (the provider's `call_timeout_s`) ran out while waiting on the job",
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// The delays between polls of an async job: starts at `initial`, grows by
/// `factor` up to `max`, and gives up after `limit` in total.
///
/// ```
/// use std::time::Duration;
/// use creative_providers::http::PollBackoff;
/// let mut p = PollBackoff::new(Duration::from_millis(500), Duration::from_secs(5));
/// assert_eq!(p.next_delay(), Duration::from_millis(500));
/// assert_eq!(p.next_delay(), Duration::from_millis(750));
/// ```
#[derive(Debug, Clone)]
pub struct PollBackoff {
    next: Duration,
    max: Duration,
    factor: f64,
    waited: Duration,
    limit: Option<Duration>,
    polls: u32,
}

impl PollBackoff {
    /// Delays from `initial` growing by 1.5x up to `max`, with no total limit (the
    /// call's deadline still applies).
    pub fn new(initial: Duration, max: Duration) -> Self {
        PollBackoff {
            next: initial,
            max: max.max(initial),
            factor: 1.5,
            waited: Duration::ZERO,
            limit: None,
            polls: 0,
        }
    }

    /// Change the growth factor (at least 1).
    pub fn factor(mut self, f: f64) -> Self {
        self.factor = if f.is_finite() { f.max(1.0) } else { 1.0 };
        self
    }

    /// Give up (with a `Timeout` error) after waiting `total` in all.
    pub fn limit(mut self, total: Duration) -> Self {
        self.limit = Some(total);
        self
    }

    /// How many waits so far.
    pub fn polls(&self) -> u32 {
        self.polls
    }

    /// The next delay, advancing the schedule.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = self.next.mul_f64(self.factor).min(self.max);
        self.polls += 1;
        d
    }

    /// Wait the next delay, racing cancellation and the call's deadline.
    pub async fn wait(&mut self, ctx: &CallCtx, provider: &str) -> Result<(), ProviderError> {
        let d = self.next_delay();
        if let Some(limit) = self.limit {
            if self.waited >= limit {
                return Err(ProviderError::new(
                    ErrorKind::Timeout,
                    provider,
                    format!("job not finished after polling for {} s", self.waited.as_secs_f64()),
                ));
            }
        }
        self.waited += d;
        sleep_or_cancel(d, ctx, provider).await
    }
}

/// How long taking a remote job back may take, on a context of its own.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The work that takes a remote job back.
type Cleanup = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Takes a remote job back (cancels a prediction, deletes a queued prompt)
/// when the call ends before the job does.
///
/// While armed, dropping it (the call cancelled, out of time, failed or
/// dropped by the engine) spawns the cleanup on the current runtime; the
/// cleanup runs on a context of its own, since the call's token is cancelled
/// by then, bounded by [`CLEANUP_TIMEOUT`]. A job that ended is disarmed.
#[derive(Default)]
pub struct CancelGuard {
    cleanup: Option<Cleanup>,
}

impl std::fmt::Debug for CancelGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelGuard").field("armed", &self.is_armed()).finish()
    }
}

impl CancelGuard {
    /// A guard with nothing to take back yet.
    pub fn new() -> CancelGuard {
        CancelGuard::default()
    }

    /// Take the job back with `cleanup` if the call ends first (replacing any
    /// earlier cleanup).
    pub fn arm(&mut self, cleanup: impl Future<Output = ()> + Send + 'static) {
        self.cleanup = Some(Box::pin(cleanup));
    }

    /// Take the job back by sending `request` through `transport`; its answer
    /// is not read (the call is failing already).
    pub fn arm_request(&mut self, transport: &Transport, request: HttpRequest) {
        let t = transport.clone();
        self.arm(async move {
            let _ = t.send(request, &cleanup_ctx()).await;
        });
    }

    /// The job ended: nothing to take back.
    pub fn disarm(&mut self) {
        self.cleanup = None;
    }

    /// Whether dropping the guard would take the job back.
    pub fn is_armed(&self) -> bool {
        self.cleanup.is_some()
    }

    /// Take the job back now and wait for it (at most [`CLEANUP_TIMEOUT`]),
    /// so the server has heard before the call returns its error.
    pub async fn cancel_now(&mut self) {
        if let Some(c) = self.cleanup.take() {
            let _ = tokio::time::timeout(CLEANUP_TIMEOUT, c).await;
        }
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if let (Some(c), Ok(rt)) = (self.cleanup.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(async move {
                let _ = tokio::time::timeout(CLEANUP_TIMEOUT, c).await;
            });
        }
    }
}

/// A context for cleanup work: the call's own token is cancelled by then.
pub fn cleanup_ctx() -> CallCtx {
    CallCtx {
        deadline: Some(Instant::now() + CLEANUP_TIMEOUT),
        ..CallCtx::detached()
    }
}

/// The submit / poll / cancel driver of a long-running remote job
/// (a Replicate prediction, a fal queue request, a Veo operation, a ComfyUI
/// prompt): the waits between polls ([`PollBackoff`], racing cancellation and
/// the call's deadline) and the [`CancelGuard`] that takes the job back when
/// the call ends first.
///
/// A backend submits the job, arms the guard with how to cancel it, then
/// alternates [`wait`](Self::wait) and [`poll`](Self::poll) until the job is
/// final, and calls [`done`](Self::done). A wait or a poll that fails takes
/// the job back before returning the error; a call dropped midway takes it
/// back in the background.
///
/// ```no_run
/// # use creative_core::{CallCtx, ProviderError};
/// # use creative_providers::http::{HttpRequest, LongJob, PollBackoff, Transport};
/// # use std::time::Duration;
/// # async fn f(t: &Transport, ctx: &CallCtx) -> Result<(), ProviderError> {
/// let mut job = LongJob::new("replicate", PollBackoff::new(Duration::from_millis(500), Duration::from_secs(5)));
/// let id = "abc";
/// job.guard().arm_request(t, HttpRequest::post(format!("predictions/{id}/cancel")));
/// loop {
///     job.wait(ctx).await?;
///     let p: serde_json::Value = job.poll(t.send_json(HttpRequest::get(format!("predictions/{id}")), ctx)).await?;
///     if p["status"] == "succeeded" {
///         break;
///     }
/// }
/// job.done();
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LongJob {
    provider: String,
    backoff: PollBackoff,
    guard: CancelGuard,
}

impl LongJob {
    /// A job of `provider`'s, polled on `backoff`'s schedule.
    pub fn new(provider: &str, backoff: PollBackoff) -> LongJob {
        LongJob {
            provider: provider.to_string(),
            backoff,
            guard: CancelGuard::new(),
        }
    }

    /// The guard: arm it with how to take the job back.
    pub fn guard(&mut self) -> &mut CancelGuard {
        &mut self.guard
    }

    /// Wait before the next poll; on cancellation or the deadline, take the
    /// job back and return the error.
    pub async fn wait(&mut self, ctx: &CallCtx) -> Result<(), ProviderError> {
        match self.backoff.wait(ctx, &self.provider).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e).await),
        }
    }

    /// Await one poll (or any request about the job); when it fails, take
    /// the job back and return the error.
    pub async fn poll<T>(
        &mut self,
        request: impl Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        match request.await {
            Ok(v) => Ok(v),
            Err(e) => Err(self.fail(e).await),
        }
    }

    /// Take the job back now and hand back `e`, the reason.
    pub async fn fail(&mut self, e: ProviderError) -> ProviderError {
        self.guard.cancel_now().await;
        e
    }

    /// The job is final: nothing to take back.
    pub fn done(&mut self) {
        self.guard.disarm();
    }

    /// How many waits so far.
    pub fn polls(&self) -> u32 {
        self.backoff.polls()
    }
}
