//! The `Pipeline` trait: what to run for one job. The main implementation is
//! the DAG ([`crate::dag::Dag`]); its per-job walk lives in `exec/walk.rs`.

use std::sync::Arc;

use async_trait::async_trait;

use crate::exec::job::{JobCtx, JobResult};

/// A pipeline: what to run for one job.
///
/// The executor runs many jobs of one pipeline. [`Dag`](crate::dag::Dag) is the main
/// implementation; a host may write its own (a fixed script, a pipeline that
/// decides its next step from what came back) and still get the engine's
/// concurrency, journal, events and cancellation by running each step through
/// [`JobCtx::run_step`].
#[async_trait]
pub trait Pipeline: Send + Sync {
    /// The pipeline's name, for events and reports.
    fn name(&self) -> &str;

    /// The names of its steps, in a stable order.
    fn step_names(&self) -> Vec<Arc<str>>;

    /// The provider ids its steps will call, so a run can check them first.
    fn providers(&self) -> Vec<String>;

    /// Run one job to the end. Never fails as a whole: the result says which steps
    /// finished, failed, or were skipped.
    async fn run_job(&self, ctx: &JobCtx) -> JobResult;
}
