//! The executor: runs many jobs of one pipeline with bounded concurrency.
//!
//! # Design
//!
//! One driver task owns the run: it pulls jobs lazily from the job source (a
//! queued job costs only its variables until it starts), keeps at most
//! `concurrency` jobs active, and collects each job's result as it ends; a failed
//! job never stops the others. Each active job is a task of its own that walks its
//! DAG with a pure ready-queue ([`crate::dag::ReadyQueue`]) and runs ready steps
//! concurrently; every step takes a permit of the concurrency limit (steps that
//! call providers from one pool, steps that call none from another of the same
//! size, so CPU work on finished generations never holds back the next calls), and
//! every provider call goes through the resilience layer (`call.rs`) and its
//! per-provider limits. Cancellation is one token that every await races against;
//! on cancel or budget exhaustion, running work stops or drains, nothing new
//! starts, and finished artifacts stay in the results.
//!
//! Per-job tasks instead of one global step loop (cargo's shape) keep each job's
//! state private to its task, so the hot path takes no lock, and spread CPU-bound
//! steps over all worker threads.

pub(crate) mod call;
mod ctx;
pub(crate) mod job;
pub(crate) mod shared;
pub(crate) mod walk;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::cancel::CancellationToken;
use crate::error::{ConfigError, StepError};
use crate::events::{EventBus, EventKind, EventStream, Progress, Status};
use crate::job::Job;
use crate::limits::{check_float, check_int, MAX_BURST, MAX_CALL_TIMEOUT_S, MAX_CONCURRENCY, MAX_REQUESTS_PER_MINUTE};
use crate::pipeline::Pipeline;
use crate::provider::{IntoProvider, Provider};
use crate::resilience::{BreakerConfig, Budget, DownConfig, RetryPolicy};
use crate::store::{GenerationCache, Journal};

pub use call::CallOutcome;
pub use ctx::{GateCtx, StepCtx};
pub use job::{JobCtx, JobResult, StepResult, StepState};
pub use shared::{Degradation, ProviderLimits, RunStats};

use shared::{Counters, ProviderSlot, RunShared};

/// Why a run could not start.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A step calls a provider the executor does not know.
    #[error("pipeline `{pipeline}` uses unknown provider `{provider}`; registered: {registered}")]
    UnknownProvider {
        /// The pipeline.
        pipeline: String,
        /// The missing provider id.
        provider: String,
        /// The registered ids.
        registered: String,
    },
}

/// Runs pipelines. Build one with [`Executor::builder`]; share it freely (it is
/// cheap to clone), and start as many runs as you like: provider guards (circuit
/// breakers, rate limits, concurrency limits) are shared by all of them.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<ExecInner>,
}

struct ExecInner {
    providers: Arc<HashMap<String, Arc<ProviderSlot>>>,
    concurrency: usize,
    retry: RetryPolicy,
    call_timeout: Option<Duration>,
    max_open_wait: Duration,
}

/// Configures an [`Executor`]. Every setter documents its default.
pub struct ExecutorBuilder {
    providers: Vec<(Arc<dyn Provider>, ProviderLimits)>,
    concurrency: usize,
    retry: RetryPolicy,
    breaker: BreakerConfig,
    down: DownConfig,
    call_timeout: Option<Duration>,
    max_open_wait: Duration,
}

impl Default for ExecutorBuilder {
    fn default() -> Self {
        ExecutorBuilder {
            providers: Vec::new(),
            concurrency: crate::limits::DEFAULT_CONCURRENCY,
            retry: RetryPolicy::default(),
            breaker: BreakerConfig::default(),
            down: DownConfig::default(),
            call_timeout: Some(Duration::from_secs(300)),
            max_open_wait: Duration::from_secs(300),
        }
    }
}

impl ExecutorBuilder {
    /// Register a provider (a provider value, or one shared behind an `Arc`)
    /// with no limits of its own. Ids must be unique: [`build`](Self::build)
    /// refuses a second provider with an id already registered.
    pub fn provider(self, p: impl IntoProvider) -> Self {
        self.provider_with_limits(p, ProviderLimits::default())
    }

    /// Register a provider with its own concurrency, rate limit and timeout;
    /// [`build`](Self::build) checks the limits (`concurrency` 1 to
    /// [`MAX_CONCURRENCY`], `requests_per_minute` 1 to
    /// [`MAX_REQUESTS_PER_MINUTE`], `burst` 1 to [`MAX_BURST`], a timeout above
    /// zero and at most [`MAX_CALL_TIMEOUT_S`] seconds).
    pub fn provider_with_limits(mut self, p: impl IntoProvider, limits: ProviderLimits) -> Self {
        self.providers.push((p.into_provider(), limits));
        self
    }

    /// Most jobs active at once, and most steps running at once across the run:
    /// up to `n` steps that call providers, and up to `n` that call none (image
    /// operations, gates), so CPU work on finished generations never holds back
    /// the next calls.
    /// Default [`crate::limits::DEFAULT_CONCURRENCY`] (8, as in a spec);
    /// [`build`](Self::build) refuses 0 and values above [`MAX_CONCURRENCY`] (a
    /// semaphore cannot hold more than `usize::MAX >> 3` permits, and no host
    /// runs more steps at once).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Retry policy for provider calls. Default: [`RetryPolicy::default`].
    pub fn retry(mut self, r: RetryPolicy) -> Self {
        self.retry = r;
        self
    }

    /// Circuit breaker settings for every provider. Default: 5 failures, 30 s.
    pub fn breaker(mut self, b: BreakerConfig) -> Self {
        self.breaker = b;
        self
    }

    /// Per-call timeout. Default 300 s; `None` for none.
    pub fn call_timeout(mut self, t: Option<Duration>) -> Self {
        self.call_timeout = t;
        self
    }

    /// The most time, in all, a step waits for circuits to reopen when every
    /// provider of its chain is open (and none is down); past it the step fails
    /// naming the providers. The run's deadline also bounds it. Default 300 s.
    pub fn max_open_wait(mut self, d: Duration) -> Self {
        self.max_open_wait = d;
        self
    }

    /// When a provider that fails every call is declared down, so that its jobs
    /// fall back or fail at once instead of waiting on its circuit. Default: 60 s
    /// of failures only, at least 5 of them.
    pub fn down_after(mut self, d: DownConfig) -> Self {
        self.down = d;
        self
    }

    /// Build the executor, or say which setting is wrong: a provider id
    /// registered twice, or a limit out of its range (a zero concurrency or
    /// rate would otherwise silently mean "one" or "unlimited").
    ///
    /// ```
    /// # use creative_core::{Executor, ProviderLimits};
    /// let e = Executor::builder().concurrency(0).build().err().unwrap();
    /// assert_eq!(e.field(), "concurrency");
    /// ```
    pub fn build(self) -> Result<Executor, ConfigError> {
        check_int(self.concurrency, 1, MAX_CONCURRENCY).map_err(|e| e.at("concurrency"))?;
        if let Some(t) = self.call_timeout {
            check_timeout(t).map_err(|e| e.at("call_timeout"))?;
        }
        let (breaker, down) = (self.breaker, self.down);
        let mut providers = HashMap::with_capacity(self.providers.len());
        for (p, limits) in self.providers {
            let id = p.id().to_string();
            let at = format!("providers.{id}");
            check_limits(&limits).map_err(|e| e.at(&at))?;
            if providers.contains_key(&id) {
                return Err(ConfigError::new(
                    at,
                    "registered twice: every provider needs its own id",
                ));
            }
            let slot = Arc::new(ProviderSlot::new(p, &limits, breaker, down));
            providers.insert(id, slot);
        }
        Ok(Executor {
            inner: Arc::new(ExecInner {
                providers: Arc::new(providers),
                concurrency: self.concurrency,
                retry: self.retry,
                call_timeout: self.call_timeout,
                max_open_wait: self.max_open_wait,
            }),
        })
    }
}

/// The ranges of one provider's limits (see [`ExecutorBuilder::provider_with_limits`]).
fn check_limits(l: &ProviderLimits) -> Result<(), ConfigError> {
    if let Some(n) = l.concurrency {
        check_int(n, 1, MAX_CONCURRENCY).map_err(|e| e.at("concurrency"))?;
    }
    if let Some(n) = l.requests_per_minute {
        check_int(n, 1, MAX_REQUESTS_PER_MINUTE).map_err(|e| e.at("requests_per_minute"))?;
    }
    if let Some(n) = l.burst {
        check_int(n, 1, MAX_BURST).map_err(|e| e.at("burst"))?;
    }
    if let Some(t) = l.timeout {
        check_timeout(t).map_err(|e| e.at("timeout"))?;
    }
    Ok(())
}

fn check_timeout(t: Duration) -> Result<(), ConfigError> {
    check_float(t.as_secs_f64(), 0.0, true, MAX_CALL_TIMEOUT_S)
}

/// Per-run options.
#[derive(Default, Clone)]
pub struct RunOptions {
    /// Limits for this run (money, attempts, deadline).
    pub budget: Option<Arc<Budget>>,
    /// Generation cache.
    pub cache: Option<Arc<dyn GenerationCache>>,
    /// Bypass cache lookups (results are still stored).
    pub force: bool,
    /// Journal for resumable runs.
    pub journal: Option<Arc<dyn Journal>>,
    /// Cancel the run when this token is cancelled.
    pub cancel: Option<CancellationToken>,
    /// The number of jobs, if known, for progress.
    pub jobs_hint: Option<u64>,
    /// What the outcome keeps of each finished job. Default: everything.
    pub retain: Retain,
}

/// What a run's [`RunOutcome::jobs`] keeps of each finished job.
///
/// A campaign of a hundred thousand images cannot hold every result until the
/// end: with a journal, the journal is the record, and the outcome needs only
/// the counts and what went wrong.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retain {
    /// Every job's result with its artifacts (the default; memory grows with
    /// the run).
    #[default]
    All,
    /// Only the jobs that did not succeed, without their artifacts; a finished
    /// job leaves memory as it ends. The counts in [`RunOutcome::counts`] are
    /// complete either way.
    Failures,
}

/// How many jobs ended each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct JobTally {
    /// Jobs in all.
    pub total: u64,
    /// Jobs whose every step finished.
    pub succeeded: u64,
    /// Jobs that failed.
    pub failed: u64,
    /// Jobs stopped by a cancel.
    pub cancelled: u64,
    /// Jobs stopped by the budget or the deadline.
    pub budget_exhausted: u64,
    /// Artifacts the jobs produced (kept outputs of every step).
    pub artifacts: u64,
}

impl JobTally {
    fn add(&mut self, r: &JobResult) {
        self.total += 1;
        match r.status {
            // A job is never degraded or partial; those describe runs.
            Status::Succeeded | Status::Degraded => self.succeeded += 1,
            Status::Failed | Status::Partial => self.failed += 1,
            Status::Cancelled => self.cancelled += 1,
            Status::BudgetExhausted => self.budget_exhausted += 1,
        }
        self.artifacts += r.artifacts().count() as u64;
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// How the run ended.
    pub status: Status,
    /// One result per job, in job-source order: every job, or with
    /// [`Retain::Failures`] only those that did not succeed.
    pub jobs: Vec<JobResult>,
    /// How many jobs ended each way (every job, whatever was retained).
    pub counts: JobTally,
    /// Counters.
    pub stats: RunStats,
    /// Final progress.
    pub progress: Progress,
    /// Wall time.
    pub elapsed: Duration,
    /// Providers whose failures a fallback covered (the run is then
    /// [`Status::Degraded`] when every job succeeded), by provider id.
    pub degraded: Vec<Degradation>,
}

/// A short summary, for printing.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// How the run ended.
    pub status: Status,
    /// Jobs in all.
    pub jobs: u64,
    /// Jobs by status.
    pub succeeded: u64,
    /// Failed jobs.
    pub failed: u64,
    /// Artifacts produced.
    pub artifacts: u64,
    /// The counters.
    #[serde(flatten)]
    pub stats: RunStats,
    /// Wall time.
    pub elapsed_ms: f64,
}

impl RunOutcome {
    /// Summarize.
    pub fn summary(&self) -> RunSummary {
        RunSummary {
            status: self.status,
            jobs: self.counts.total,
            succeeded: self.counts.succeeded,
            failed: self.counts.failed,
            artifacts: self.counts.artifacts,
            stats: self.stats.clone(),
            elapsed_ms: self.elapsed.as_secs_f64() * 1e3,
        }
    }
}

/// A running run. Dropping it does not stop the run; call [`RunHandle::cancel`].
pub struct RunHandle {
    cancel: CancellationToken,
    events: Option<EventStream>,
    join: tokio::task::JoinHandle<RunOutcome>,
    shared: Arc<RunShared>,
}

impl RunHandle {
    /// Cancel: nothing new starts, running steps stop at their next await, finished
    /// artifacts are kept in the outcome.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// The run's cancellation token.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Take the event stream (once; `None` when already taken).
    ///
    /// Every run has one. Events wait in the stream until read, so a caller
    /// that will not read them drops the stream (`drop(handle.events())`):
    /// from then on the run builds no event at all.
    pub fn events(&mut self) -> Option<EventStream> {
        self.events.take()
    }

    /// Progress so far.
    pub fn progress(&self) -> Progress {
        self.shared.counters.progress()
    }

    /// Counters so far.
    pub fn stats(&self) -> RunStats {
        self.shared.counters.snapshot()
    }

    /// Whether the run has ended.
    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// Wait for the end.
    pub async fn wait(self) -> RunOutcome {
        match self.join.await {
            Ok(o) => o,
            // The driver never panics by design (job panics are caught per job), but
            // if it did, say so rather than hang or abort the host.
            Err(e) => RunOutcome {
                status: Status::Failed,
                jobs: Vec::new(),
                counts: JobTally::default(),
                stats: self.shared.counters.snapshot(),
                progress: self.shared.counters.progress(),
                elapsed: Duration::ZERO,
                degraded: Vec::new(),
            }
            .tap_log(&e.to_string()),
        }
    }
}

impl RunOutcome {
    fn tap_log(self, msg: &str) -> Self {
        tracing::error!(error = msg, "run driver failed");
        self
    }
}

impl Executor {
    /// Start configuring.
    pub fn builder() -> ExecutorBuilder {
        ExecutorBuilder::default()
    }

    /// The registered provider ids.
    pub fn provider_ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self.inner.providers.keys().cloned().collect();
        v.sort();
        v
    }

    /// Run every job and wait for the outcome.
    pub async fn run<I>(&self, pipeline: Arc<dyn Pipeline>, jobs: I) -> Result<RunOutcome, RunError>
    where
        I: IntoIterator<Item = Job>,
        I::IntoIter: Send + 'static,
    {
        let mut handle = self.start(pipeline, jobs, RunOptions::default())?;
        // Nobody can read this run's events: stop them at the source.
        drop(handle.events());
        Ok(handle.wait().await)
    }

    /// Start a run on the current tokio runtime and return at once.
    ///
    /// Jobs are pulled from `jobs` lazily, as slots free up. Must be called within a
    /// tokio runtime.
    pub fn start<I>(&self, pipeline: Arc<dyn Pipeline>, jobs: I, opts: RunOptions) -> Result<RunHandle, RunError>
    where
        I: IntoIterator<Item = Job>,
        I::IntoIter: Send + 'static,
    {
        for p in pipeline.providers() {
            if !self.inner.providers.contains_key(&p) {
                return Err(RunError::UnknownProvider {
                    pipeline: pipeline.name().to_string(),
                    provider: p,
                    registered: self.provider_ids().join(", "),
                });
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let cancel = opts.cancel.clone().unwrap_or_default();
        let shared = Arc::new(RunShared {
            providers: self.inner.providers.clone(),
            retry: self.inner.retry.clone(),
            call_timeout: self.inner.call_timeout,
            max_open_wait: self.inner.max_open_wait,
            budget: opts.budget.clone().unwrap_or_else(|| Arc::new(Budget::new())),
            events: EventBus::new(Some(tx)),
            cache: opts.cache.clone(),
            force: opts.force,
            journal: opts.journal.clone(),
            inflight: Arc::default(),
            steps: Arc::new(Semaphore::new(self.inner.concurrency)),
            local_steps: Arc::new(Semaphore::new(self.inner.concurrency)),
            counters: Counters::default(),
            cancel: cancel.clone(),
            degraded: Default::default(),
        });
        let span = tracing::info_span!("run", pipeline = pipeline.name());
        let join = tokio::spawn(
            drive(
                shared.clone(),
                pipeline,
                jobs.into_iter(),
                self.inner.concurrency,
                opts.jobs_hint,
                opts.retain,
            )
            .instrument(span),
        );
        Ok(RunHandle {
            cancel,
            events: Some(EventStream::new(rx)),
            join,
            shared,
        })
    }
}

async fn drive(
    run: Arc<RunShared>,
    pipeline: Arc<dyn Pipeline>,
    mut jobs: impl Iterator<Item = Job> + Send,
    max_active: usize,
    jobs_hint: Option<u64>,
    retain: Retain,
) -> RunOutcome {
    let started = Instant::now();
    let steps = pipeline.step_names();
    let jobs_hint = jobs_hint.or(match jobs.size_hint() {
        (lo, Some(hi)) if lo == hi => Some(lo as u64),
        _ => None,
    });
    run.counters.jobs_hint.store(jobs_hint.unwrap_or(0), Ordering::Relaxed);
    run.events.emit(EventKind::RunStarted {
        pipeline: pipeline.name().to_string(),
        steps: steps.len(),
        jobs_hint,
    });
    let mut active: JoinSet<JobResult> = JoinSet::new();
    // Job key and index by task id, to report a job whose task panicked.
    let mut in_flight: HashMap<tokio::task::Id, (Job, u64)> = HashMap::new();
    let mut results: Vec<JobResult> = Vec::new();
    let mut counts = JobTally::default();
    let mut keep = |mut r: JobResult, results: &mut Vec<JobResult>| {
        counts.add(&r);
        match retain {
            Retain::All => results.push(r),
            Retain::Failures if r.status != Status::Succeeded => {
                for s in &mut r.steps {
                    s.outputs = Arc::from(Vec::new());
                }
                results.push(r);
            }
            Retain::Failures => {}
        }
    };
    // A run with no failure decides its status without holding every result.
    let mut all_succeeded = true;
    let mut any_budget = false;
    let mut next_index = 0u64;
    let mut source_done = false;
    loop {
        while !source_done && active.len() < max_active && !run.cancel.is_cancelled() && !run.budget.is_exhausted() {
            let Some(job) = jobs.next() else {
                source_done = true;
                // From here the count is exact, even if the hint was wrong.
                run.counters.jobs_hint.store(0, Ordering::Relaxed);
                break;
            };
            let index = next_index;
            next_index += 1;
            Counters::add(&run.counters.jobs_total, 1);
            if jobs.size_hint().1 == Some(0) {
                run.counters.jobs_hint.store(0, Ordering::Relaxed);
            }
            if run.events.is_listened() {
                run.events.emit(EventKind::JobStarted {
                    job: job.key().to_string(),
                    index,
                });
            }
            let ctx = JobCtx {
                job: job.clone(),
                index,
                run: run.clone(),
                started: Instant::now(),
            };
            let p = pipeline.clone();
            let span = tracing::info_span!("job", job = %job.key(), index);
            let handle = active.spawn(async move { p.run_job(&ctx).await }.instrument(span));
            in_flight.insert(handle.id(), (job, index));
        }
        let Some(joined) = active.join_next_with_id().await else {
            break;
        };
        let result = match joined {
            Ok((id, r)) => {
                in_flight.remove(&id);
                r
            }
            Err(e) => {
                let (job, index) = in_flight.remove(&e.id()).expect("every task is tracked");
                let error = StepError::internal(format!("job task failed: {e}"));
                JobResult {
                    job,
                    index,
                    status: Status::Failed,
                    steps: vec![StepResult {
                        step: Arc::from("<job>"),
                        state: StepState::Failed,
                        outputs: Arc::from(Vec::new()),
                        error: Some(error),
                        resumed: false,
                        elapsed: Duration::ZERO,
                    }],
                    elapsed: Duration::ZERO,
                }
            }
        };
        finish_job(&run, &result);
        all_succeeded &= result.status == Status::Succeeded;
        any_budget |= result.status == Status::BudgetExhausted;
        keep(result, &mut results);
    }
    // Jobs never started because the run was cancelled or ran out of budget still
    // get a result, so every job of the source is accounted for.
    if !source_done {
        let state = if run.cancel.is_cancelled() {
            StepState::Cancelled
        } else {
            StepState::Skipped
        };
        let status = if run.cancel.is_cancelled() {
            Status::Cancelled
        } else {
            Status::BudgetExhausted
        };
        for job in jobs {
            Counters::add(&run.counters.jobs_total, 1);
            let r = JobResult {
                job,
                index: next_index,
                status,
                steps: steps.iter().map(|s| StepResult::not_run(s.clone(), state)).collect(),
                elapsed: Duration::ZERO,
            };
            next_index += 1;
            finish_job(&run, &r);
            all_succeeded &= r.status == Status::Succeeded;
            any_budget |= r.status == Status::BudgetExhausted;
            keep(r, &mut results);
        }
        run.counters.jobs_hint.store(0, Ordering::Relaxed);
    }
    results.sort_by_key(|r| r.index);
    let degraded: Vec<Degradation> = run
        .degraded
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect();
    let status = if run.cancel.is_cancelled() {
        Status::Cancelled
    } else if any_budget {
        // Also when the budget itself still has room but a job stopped because it
        // would run past the deadline (waiting on providers that reopen too late).
        Status::BudgetExhausted
    } else if all_succeeded && degraded.is_empty() {
        Status::Succeeded
    } else if all_succeeded {
        Status::Degraded
    } else if counts.succeeded > 0 {
        Status::Partial
    } else {
        Status::Failed
    };
    let progress = run.counters.progress();
    let elapsed = started.elapsed();
    run.events.emit(EventKind::RunFinished {
        status,
        progress,
        elapsed_ms: elapsed.as_secs_f64() * 1e3,
    });
    RunOutcome {
        status,
        jobs: results,
        counts,
        stats: run.counters.snapshot(),
        progress,
        elapsed,
        degraded,
    }
}

fn finish_job(run: &RunShared, r: &JobResult) {
    Counters::add(&run.counters.jobs_done, 1);
    if r.status == Status::Failed {
        Counters::add(&run.counters.jobs_failed, 1);
    }
    if run.events.is_listened() {
        run.events.emit(EventKind::JobFinished {
            job: r.job.key().to_string(),
            status: r.status,
            progress: run.counters.progress(),
        });
    }
}
