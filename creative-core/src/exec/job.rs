//! Running one job: the context a pipeline gets, and what a job leaves behind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use serde::Serialize;
use tracing::Instrument;

use crate::artifact::Artifact;
use crate::error::StepError;
use crate::events::{EventKind, Status};
use crate::exec::shared::{Counters, RunShared};
use crate::exec::walk::panic_message;
use crate::job::Job;
use crate::step::{Step, StepCtx, StepInputs};
use crate::store::Recorded;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepState {
    /// Finished; outputs are kept.
    Done,
    /// Failed; the error is kept.
    Failed,
    /// Not run because an input failed, or a budget stopped new work.
    Skipped,
    /// Not run, or stopped, because the run was cancelled.
    Cancelled,
}

/// One step's result within a job.
#[derive(Debug, Clone)]
pub struct StepResult {
    /// The step's name.
    pub step: Arc<str>,
    /// How it ended.
    pub state: StepState,
    /// Its outputs (empty unless done).
    pub outputs: Arc<[Artifact]>,
    /// The error, when failed or cancelled while running.
    pub error: Option<StepError>,
    /// Whether the outputs were restored from the journal.
    pub resumed: bool,
    /// Wall time.
    pub elapsed: Duration,
}

impl StepResult {
    pub(crate) fn not_run(step: Arc<str>, state: StepState) -> Self {
        StepResult {
            step,
            state,
            outputs: Arc::from(Vec::new()),
            error: None,
            resumed: false,
            elapsed: Duration::ZERO,
        }
    }
}

/// What one job left behind. Finished steps keep their artifacts whatever
/// happened to the rest of the job.
#[derive(Debug, Clone)]
pub struct JobResult {
    /// The job.
    pub job: Job,
    /// Its position in the job source.
    pub index: u64,
    /// How it ended.
    pub status: Status,
    /// Every step, in the pipeline's order.
    pub steps: Vec<StepResult>,
    /// Wall time.
    pub elapsed: Duration,
}

impl JobResult {
    /// The outputs of one step.
    pub fn outputs(&self, step: &str) -> &[Artifact] {
        self.steps
            .iter()
            .find(|s| &*s.step == step)
            .map(|s| &*s.outputs)
            .unwrap_or(&[])
    }

    /// Every artifact finished by this job.
    pub fn artifacts(&self) -> impl Iterator<Item = (&str, &Artifact)> {
        self.steps
            .iter()
            .flat_map(|s| s.outputs.iter().map(move |a| (&*s.step, a)))
    }

    /// The first error, if any step failed.
    pub fn error(&self) -> Option<&StepError> {
        self.steps.iter().find_map(|s| s.error.as_ref())
    }
}

/// The context a pipeline runs one job in.
pub struct JobCtx {
    pub(crate) job: Job,
    pub(crate) index: u64,
    pub(crate) run: Arc<RunShared>,
    pub(crate) started: Instant,
}

impl JobCtx {
    /// The job.
    pub fn job(&self) -> &Job {
        &self.job
    }

    /// Whether anyone listens to the run's events (so a pipeline can skip
    /// building events no one reads).
    pub fn events_listened(&self) -> bool {
        self.run.events.is_listened()
    }

    /// Emit an event on the run's stream, numbered in delivery order like the
    /// engine's own: how a [`Pipeline`](crate::Pipeline) wrapping the per-job
    /// walk reports what it did (for example `AssetWritten`).
    pub fn emit(&self, kind: crate::events::EventKind) {
        self.run.events.emit(kind);
    }

    /// Whether new steps should not start (run cancelled or budget exhausted).
    pub fn stopping(&self) -> bool {
        self.run.cancel.is_cancelled() || self.run.budget.is_exhausted()
    }

    /// Whether a step that calls no provider may still start although the run
    /// is stopping: yes when money or attempts ran out (the step is free, and
    /// it makes paid work upstream deliverable), no on a cancel or a passed
    /// deadline.
    pub fn free_steps_may_run(&self) -> bool {
        !self.run.cancel.is_cancelled() && !self.run.budget.deadline_passed()
    }

    pub(crate) fn stop_state(&self) -> StepState {
        if self.run.cancel.is_cancelled() {
            StepState::Cancelled
        } else {
            StepState::Skipped
        }
    }

    /// Run one step of this job under the engine's rules: the journal is consulted
    /// first (a finished step is never redone), the concurrency limit is
    /// respected (steps that call providers and steps that call none each have
    /// a pool of that many permits), cancellation stops it at once, a panic becomes the step's error,
    /// and success counts only once the journal has recorded it.
    ///
    /// `Ok` carries a done step; `Err` a failed or cancelled one.
    pub async fn run_step(
        &self,
        name: &Arc<str>,
        step: &dyn Step,
        inputs: StepInputs,
    ) -> Result<StepResult, StepResult> {
        self.run_step_as(name, step, step.providers().is_empty(), inputs).await
    }

    /// [`run_step`](Self::run_step) for a step known to call no provider
    /// (`local`) or some: the DAG works that out once per step, not once per
    /// job (`Step::providers` allocates).
    pub(crate) async fn run_step_as(
        &self,
        name: &Arc<str>,
        step: &dyn Step,
        local: bool,
        inputs: StepInputs,
    ) -> Result<StepResult, StepResult> {
        let run = &self.run;
        let started = Instant::now();
        let key = self.job.key();
        let fail = |state: StepState, e: StepError, elapsed: Duration| StepResult {
            step: name.clone(),
            state,
            outputs: Arc::from(Vec::new()),
            error: Some(e),
            resumed: false,
            elapsed,
        };

        let inputs_fp = run.journal.as_ref().map(|_| inputs.fingerprint());
        if let (Some(journal), Some(fp)) = (&run.journal, &inputs_fp) {
            match journal.lookup(&self.job, name, fp).await {
                Ok(Recorded::Done(outputs)) => {
                    Counters::add(&run.counters.steps_done, 1);
                    Counters::add(&run.counters.steps_resumed, 1);
                    run.events.emit(EventKind::StepResumed {
                        job: key.to_string(),
                        step: name.to_string(),
                        outputs: outputs.len(),
                    });
                    return Ok(StepResult {
                        step: name.clone(),
                        state: StepState::Done,
                        outputs: Arc::from(outputs),
                        error: None,
                        resumed: true,
                        elapsed: started.elapsed(),
                    });
                }
                Ok(Recorded::Changed) => {
                    Counters::add(&run.counters.steps_changed, 1);
                    run.events.emit(EventKind::StepChanged {
                        job: key.to_string(),
                        step: name.to_string(),
                    });
                }
                Ok(_) => {}
                Err(e) => {
                    let error = StepError::io(e.to_string()).with_source(e);
                    return Err(fail(StepState::Failed, error, started.elapsed()));
                }
            }
        }

        let permits = if local { &run.local_steps } else { &run.steps };
        let _permit = tokio::select! {
            biased;
            _ = run.cancel.cancelled() => return Err(fail(StepState::Cancelled, StepError::cancelled(), started.elapsed())),
            p = permits.clone().acquire_owned() => p.ok(),
        };
        if run.budget.is_exhausted() && !(local && self.free_steps_may_run()) {
            return Err(StepResult::not_run(name.clone(), StepState::Skipped));
        }
        if run.events.is_listened() {
            run.events.emit(EventKind::StepStarted {
                job: key.to_string(),
                step: name.to_string(),
            });
        }
        let ctx = StepCtx {
            job: self.job.clone(),
            step: name.clone(),
            cancel: run.cancel.clone(),
            run: run.clone(),
            open_waited: Arc::default(),
        };
        let span = tracing::info_span!("step", job = %key, step = %name, kind = step.kind());
        let fut = std::panic::AssertUnwindSafe(step.run(&inputs, &ctx))
            .catch_unwind()
            .instrument(span);
        let result = tokio::select! {
            biased;
            _ = run.cancel.cancelled() => Err(StepError::cancelled()),
            r = fut => r.unwrap_or_else(|p| Err(panic_message(p))),
        };
        let result = match result {
            Ok(outputs) => match (&run.journal, &inputs_fp) {
                (Some(j), Some(fp)) => j
                    .record(&self.job, name, fp, &outputs)
                    .await
                    .map(|_| outputs)
                    .map_err(|e| StepError::io(e.to_string()).with_source(e)),
                _ => Ok(outputs),
            },
            Err(e) => Err(e),
        };
        let elapsed = started.elapsed();
        if run.events.is_listened() {
            run.events.emit(EventKind::StepFinished {
                job: key.to_string(),
                step: name.to_string(),
                ok: result.is_ok(),
                outputs: result.as_ref().map(Vec::len).unwrap_or(0),
                elapsed_ms: elapsed.as_secs_f64() * 1e3,
                error: result.as_ref().err().map(|e| e.to_string()),
            });
        }
        match result {
            Ok(outputs) => {
                Counters::add(&run.counters.steps_done, 1);
                Ok(StepResult {
                    step: name.clone(),
                    state: StepState::Done,
                    outputs: Arc::from(outputs),
                    error: None,
                    resumed: false,
                    elapsed,
                })
            }
            Err(e) if e.is_cancelled() => Err(fail(StepState::Cancelled, e, elapsed)),
            Err(e) => Err(fail(StepState::Failed, e, elapsed)),
        }
    }

    pub(crate) fn finish(&self, steps: Vec<StepResult>) -> JobResult {
        let status = job_status(&steps);
        JobResult {
            job: self.job.clone(),
            index: self.index,
            status,
            steps,
            elapsed: self.started.elapsed(),
        }
    }
}

pub(crate) fn job_status(steps: &[StepResult]) -> Status {
    if steps.iter().all(|s| s.state == StepState::Done) {
        Status::Succeeded
    } else if steps.iter().any(|s| s.state == StepState::Cancelled) {
        Status::Cancelled
    } else if steps
        .iter()
        .any(|s| s.state == StepState::Failed && !s.error.as_ref().is_some_and(StepError::is_budget))
    {
        Status::Failed
    } else {
        Status::BudgetExhausted
    }
}
