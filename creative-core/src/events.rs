//! Events: what a run tells the world while it runs.
//!
//! Every event is a typed value that serializes to JSON with a `type` tag, so the
//! same stream feeds a Rust `futures::Stream`, a C callback and a progress bar.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Progress counts carried by job and run events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The number of jobs: the announced one (`RunOptions::jobs_hint`, or the job
    /// source's exact size) while jobs are still being pulled, at least those
    /// pulled so far, and the exact count once the source is exhausted.
    pub jobs_total: u64,
    /// Jobs that ended, in any state.
    pub jobs_done: u64,
    /// Jobs that ended failed.
    pub jobs_failed: u64,
    /// Steps that finished successfully.
    pub steps_done: u64,
}

/// How a job or run ended.
///
/// A job ends `Succeeded`, `Failed`, `Cancelled` or `BudgetExhausted`. A run
/// ends in one of those or, to say what happened truthfully, `Degraded` (every
/// job succeeded, but a fallback served work a primary provider failed to do)
/// or `Partial` (some jobs succeeded, some failed); `Failed` then means no job
/// succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Status {
    /// Everything finished.
    Succeeded,
    /// A job failed; for a run, every job failed (other jobs went on).
    Failed,
    /// Cancelled; finished work is kept.
    Cancelled,
    /// A budget ran out; no new work was started.
    BudgetExhausted,
    /// Every job succeeded, but some work was served by a fallback provider
    /// because the one before it in the chain failed (auth, unreachable, a
    /// refusal, errors past the retries): the run names them
    /// ([`RunOutcome::degraded`](crate::exec::RunOutcome::degraded)). Runs only.
    Degraded,
    /// Some jobs succeeded and some failed. Runs only.
    Partial,
}

impl Status {
    /// The name used in JSON, reports and the C ABI's messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::BudgetExhausted => "budget_exhausted",
            Status::Degraded => "degraded",
            Status::Partial => "partial",
        }
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Sequence number within the run, from 0, in delivery order.
    pub seq: u64,
    /// Milliseconds since the run started.
    pub at_ms: f64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The run began.
    RunStarted {
        /// The pipeline's name.
        pipeline: String,
        /// Steps per job.
        steps: usize,
        /// Jobs, when the source knows its size.
        jobs_hint: Option<u64>,
    },
    /// A job began.
    JobStarted {
        /// Job key.
        job: String,
        /// 0-based position in the job source.
        index: u64,
    },
    /// A step began.
    StepStarted {
        /// Job key.
        job: String,
        /// Step name.
        step: String,
    },
    /// A step's outputs were found in the journal; it was not run again.
    StepResumed {
        /// Job key.
        job: String,
        /// Step name.
        step: String,
        /// How many outputs were restored.
        outputs: usize,
    },
    /// A step the journal recorded was run again: its definition (an edited
    /// spec) or its inputs changed since.
    StepChanged {
        /// Job key.
        job: String,
        /// Step name.
        step: String,
    },
    /// A provider call is about to be made.
    Attempt {
        /// Job key.
        job: String,
        /// Step name.
        step: String,
        /// Provider id.
        provider: String,
        /// Model, when set.
        model: Option<String>,
        /// 1-based attempt number on this provider.
        attempt: u32,
    },
    /// A provider call ended.
    AttemptFinished {
        /// Job key.
        job: String,
        /// Step name.
        step: String,
        /// Provider id.
        provider: String,
        /// Model, when set.
        model: Option<String>,
        /// 1-based attempt number.
        attempt: u32,
        /// Wall time of the call.
        latency_ms: f64,
        /// Cost of the call.
        cost_usd: f64,
        /// Error class when it failed.
        error_kind: Option<String>,
        /// Error message when it failed.
        error: Option<String>,
    },
    /// A composite provider (a router) made one call to one of its members,
    /// within the engine's attempt on it (which its own `AttemptFinished`
    /// reports): every member call is one of these, so they add up to what the
    /// members' servers saw.
    MemberAttemptFinished {
        /// Job key.
        job: String,
        /// Step name.
        step: String,
        /// The composite provider's id.
        router: String,
        /// The member's provider id.
        member: String,
        /// The model the member used, when it has models.
        model: Option<String>,
        /// The engine's attempt number on the router this call belongs to.
        attempt: u32,
        /// Wall time of the call.
        latency_ms: f64,
        /// Cost of the call.
        cost_usd: f64,
        /// Error class when it failed.
        error_kind: Option<String>,
        /// Error message when it failed.
        error: Option<String>,
        /// Why the router chose this member (`exploited`, `explored`,
        /// `waited`, `spilled`, `fallback`), when it says.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<crate::RouteReason>,
    },
    /// A provider call in flight made progress (a ComfyUI node's sampling
    /// steps): sent as the backend reports it, between `Attempt` and
    /// `AttemptFinished`.
    Progress {
        /// Job key.
        job: String,
        /// Step name.
        step: String,
        /// Provider id.
        provider: String,
        /// What is being worked on, in the backend's words.
        stage: String,
        /// Units done.
        done: u64,
        /// Units in all; 0 when unknown.
        total: u64,
    },
    /// A generation came from the cache; no provider was called.
    CacheHit {
        /// Job key.
        job: String,
        /// Step name.
        step: String,
        /// Provider id.
        provider: String,
        /// The model that made the cached generation, when it said.
        #[serde(default)]
        model: Option<String>,
        /// Money the hit saved.
        saved_usd: f64,
    },
    /// A failed call will be retried after a delay.
    Retry {
        /// Job key.
        job: String,
        /// Step name.
        step: String,
        /// Provider id.
        provider: String,
        /// The attempt that failed.
        attempt: u32,
        /// How long we wait.
        delay_ms: u64,
        /// Why.
        reason: String,
    },
    /// The step moves to the next provider of its chain.
    Fallback {
        /// Job key.
        job: String,
        /// Step name.
        step: String,
        /// The provider given up on.
        from: String,
        /// The provider tried next.
        to: String,
        /// Why.
        reason: String,
    },
    /// Every provider of the step is unavailable (circuit open); the step waits for
    /// the earliest reopening instead of failing.
    Waiting {
        /// Job key.
        job: String,
        /// Step name.
        step: String,
        /// How long.
        delay_ms: u64,
        /// Why.
        reason: String,
    },
    /// A provider failed every call for the configured window
    /// (`ExecutorBuilder::down_after`) and is declared down: jobs stop waiting for
    /// its circuit and fall back or fail at once. It is probed again when its
    /// circuit half-opens; a success brings it back.
    ProviderDown {
        /// Provider id.
        provider: String,
        /// Failed calls since its last success.
        failures: u32,
        /// Time since the first of them.
        over_ms: u64,
        /// The class of the last failure.
        last_error_kind: String,
        /// The last failure.
        last_error: String,
    },
    /// A gate judged an artifact.
    GateVerdict {
        /// Job key.
        job: String,
        /// Step name.
        step: String,
        /// Gate name.
        gate: String,
        /// Artifact id.
        artifact: String,
        /// Passed or not.
        passed: bool,
        /// The gate's score.
        score: f64,
        /// Reasons.
        reasons: Vec<String>,
        /// 0-based regeneration round.
        round: u32,
    },
    /// A gate failure led to a new generation with a derived seed.
    Regenerate {
        /// Job key.
        job: String,
        /// Step name.
        step: String,
        /// The new round (1-based).
        round: u32,
        /// The new seed.
        seed: u64,
    },
    /// A step ended.
    StepFinished {
        /// Job key.
        job: String,
        /// Step name.
        step: String,
        /// Whether it succeeded.
        ok: bool,
        /// How many artifacts it produced.
        outputs: usize,
        /// Wall time.
        elapsed_ms: f64,
        /// The error, when it failed.
        error: Option<String>,
    },
    /// A delivered asset's file was written into the output folder (campaign runs
    /// deliver each job's files as the job ends, just before its `JobFinished`).
    /// The pass at the end of the run may still rename a file whose name another
    /// asset also took; the manifest has the final paths.
    AssetWritten {
        /// Job key.
        job: String,
        /// The step that made it.
        step: String,
        /// Its position among the step's outputs.
        index: usize,
        /// Path relative to the output folder.
        path: String,
    },
    /// A job ended.
    JobFinished {
        /// Job key.
        job: String,
        /// How.
        status: Status,
        /// Counts so far.
        progress: Progress,
    },
    /// The run ended. Always the last event.
    RunFinished {
        /// How.
        status: Status,
        /// Final counts.
        progress: Progress,
        /// Wall time of the run.
        elapsed_ms: f64,
    },
}

/// The sending half, shared by every task of a run. Cheap when nobody listens.
pub(crate) struct EventBus {
    tx: Option<mpsc::UnboundedSender<Event>>,
    start: Instant,
}

impl EventBus {
    pub(crate) fn new(tx: Option<mpsc::UnboundedSender<Event>>) -> Self {
        EventBus {
            tx,
            start: Instant::now(),
        }
    }

    pub(crate) fn emit(&self, kind: EventKind) {
        if let Some(tx) = self.tx.as_ref().filter(|tx| !tx.is_closed()) {
            let at_ms = self.start.elapsed().as_secs_f64() * 1e3;
            // The stream numbers events as it delivers them: numbering here would
            // race with the send between tasks and deliver 6 before 5.
            // A dropped receiver means nobody listens any more; that is not an error.
            let _ = tx.send(Event { seq: 0, at_ms, kind });
        }
    }

    /// Whether an event would reach anyone: building one (formatting a job
    /// key, counting progress) is skipped when not.
    pub(crate) fn is_listened(&self) -> bool {
        self.tx.as_ref().is_some_and(|tx| !tx.is_closed())
    }
}

/// A run's events as a [`futures::Stream`]; it ends after [`EventKind::RunFinished`].
pub struct EventStream {
    rx: mpsc::UnboundedReceiver<Event>,
    // The run's shared state (and so the sender) may outlive the run, held by the
    // handle; the stream ends on the last event instead of on channel close.
    ended: bool,
    next_seq: u64,
}

impl EventStream {
    pub(crate) fn new(rx: mpsc::UnboundedReceiver<Event>) -> Self {
        EventStream {
            rx,
            ended: false,
            next_seq: 0,
        }
    }

    /// Wait for the next event without going through the `Stream` trait.
    pub async fn recv(&mut self) -> Option<Event> {
        futures::StreamExt::next(self).await
    }

    /// The next event if one is already waiting, else `None` at once: how a
    /// consumer takes a burst of events in one go (an event log writing them
    /// with one system call).
    pub fn try_recv(&mut self) -> Option<Event> {
        if self.ended {
            return None;
        }
        let e = self.rx.try_recv().ok()?;
        Some(self.number(e))
    }

    fn number(&mut self, mut e: Event) -> Event {
        e.seq = self.next_seq;
        self.next_seq += 1;
        if matches!(e.kind, EventKind::RunFinished { .. }) {
            self.ended = true;
        }
        e
    }
}

impl Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(e)) => Poll::Ready(Some(self.number(e))),
            other => other,
        }
    }
}
